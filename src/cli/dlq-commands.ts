/**
 * `raftmq dlq list|resend` (F10): the messages a consumer group gave up on, in `%DLQ%<group>`
 * on every broker group, and sending them back to their original topics.
 *
 * A DLQ entry is a reference to the stored message: it keeps its message id, and the broker
 * names the original topic in the user property `__ORIGIN_TOPIC` (the pulled message's topic
 * is the DLQ itself). A message a push consumer dead-lettered on the client side is a copy
 * with a new id and `__ORIGIN_MESSAGE_ID`. `list` only reads (PullMessage; no offsets). `resend`
 * keeps its progress as the committed offset of the group `<group>-dlq-resend` on each DLQ
 * queue, committed after each message's send is acknowledged, so a second run does not send
 * the same message again (a crash between the acknowledgement and the commit resends one).
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import Table from 'cli-table3';
import { Admin, type GroupInfo } from '../client/admin.js';
import type { ReceivedMessage } from '../client/messages.js';
import { MQClientError } from '../client/mq-connection.js';
import { Producer, type Message } from '../client/producer.js';
import { dlqTopicOf, groupNameProblem } from '../broker/core/names.js';
import { namesrvOption, withAdmin } from './admin-session.js';
import { clientConnection } from './connection-options.js';
import { integer } from './node-options.js';
import { plainWhenPiped } from './tables.js';
import { groupName } from './name-arguments.js';
import { ProgressBar, printLine } from './progress.js';

export const resendGroupOf = (group: string): string => `${group}-dlq-resend`;

/** Properties the broker or a client adds when dead-lettering; a resend does not carry them. */
const internalProperties: ReadonlySet<string> = new Set(['__ORIGIN_TOPIC', '__ORIGIN_MESSAGE_ID', '__SHARDINGKEY']);
const previewBytes = 40;
const scanBatch = 1024;

/** `resend` also needs `<group>-dlq-resend` to be a valid group name. */
function resendableGroupName(value: string): string {
  groupName(value);
  if (groupNameProblem(resendGroupOf(value)) !== undefined) {
    throw new InvalidArgumentError(`consumer group name ${JSON.stringify(value)} is too long for resending: its progress group ${resendGroupOf(value)} must be at most 120 characters`);
  }
  return value;
}

/** One DLQ queue of one broker group. */
interface DlqQueue {
  readonly brokerGroup: string;
  readonly queueId: number;
  readonly maxOffset: number;
  /** The committed offset of `<group>-dlq-resend` on it, as the group list shows it. */
  readonly resendOffset: number | undefined;
}

interface DlqLocation {
  readonly topic: string;
  readonly queues: readonly DlqQueue[];
  readonly groups: readonly GroupInfo[];
}

/** Every broker group's `%DLQ%<group>`; throws when neither the group nor its DLQ exists anywhere. */
async function locate(admin: Admin, group: string): Promise<DlqLocation> {
  const topic = dlqTopicOf(group);
  const resendGroup = resendGroupOf(group);
  const [topics, groups] = [await admin.listTopics(), await admin.listGroups()];
  const hosting = topics.filter((t) => t.name === topic).sort((a, b) => a.brokerGroup.localeCompare(b.brokerGroup));
  if (hosting.length === 0 && !groups.some((g) => g.name === group)) {
    throw new MQClientError('CONSUMER_GROUP_NOT_FOUND', `consumer group ${group} is unknown: no broker group has it or a ${topic} topic`, true);
  }
  const queues = hosting.flatMap((t) => t.maxOffsets.map((maxOffset, queueId) => ({
    brokerGroup: t.brokerGroup, queueId, maxOffset,
    resendOffset: groups.find((g) => g.brokerGroup === t.brokerGroup && g.name === resendGroup)?.queues.find((q) => q.topic === topic && q.queueId === queueId)?.offset,
  })));
  return { topic, queues, groups };
}

/** The original topic and message id of a DLQ message. */
function originOf(message: ReceivedMessage): { topic: string | undefined; messageId: string } {
  return { topic: message.properties.__ORIGIN_TOPIC, messageId: message.properties.__ORIGIN_MESSAGE_ID ?? message.messageId };
}

function userProperties(message: ReceivedMessage): Record<string, string> {
  return Object.fromEntries(Object.entries(message.properties).filter(([key]) => !internalProperties.has(key)));
}

const printable = (text: string): string => text.replace(/[\x00-\x1f\x7f]/g, '.');

export interface DlqEntry {
  readonly brokerGroup: string;
  readonly queueId: number;
  readonly offset: number;
  /** The id as the DLQ holds it (the original id, unless a client dead-lettered a copy). */
  readonly messageId: string;
  readonly originMessageId: string;
  /** Empty if the message does not say (it was not dead-lettered by a broker or our client). */
  readonly originTopic: string;
  readonly tag: string;
  readonly keys: readonly string[];
  readonly properties: Readonly<Record<string, string>>;
  readonly storeTime: string;
  readonly bodyBytes: number;
  readonly bodyPreview: string;
  /** Below the committed offset of `<group>-dlq-resend`: a `dlq resend` run has sent it back. */
  readonly resent: boolean;
}

function entryOf(queue: DlqQueue, message: ReceivedMessage): DlqEntry {
  const origin = originOf(message);
  return {
    brokerGroup: queue.brokerGroup, queueId: queue.queueId, offset: message.offset, messageId: message.messageId, originMessageId: origin.messageId,
    originTopic: origin.topic ?? '', tag: message.tag, keys: message.keys, properties: userProperties(message),
    storeTime: new Date(message.storeTimestampMs).toISOString(), bodyBytes: message.body.byteLength,
    bodyPreview: printable(message.body.subarray(0, previewBytes).toString('utf8')), resent: queue.resendOffset !== undefined && message.offset < queue.resendOffset,
  };
}

function listCommand(): Command {
  return new Command('list')
    .description('the dead-lettered messages of a consumer group on every broker group (read-only)')
    .requiredOption('--group <group>', 'consumer group whose %DLQ%<group> to read', groupName)
    .option('--limit <n>', 'at most this many messages', integer('--limit', 1), 100)
    .option('--json', 'one JSON document for machines')
    .addOption(namesrvOption())
    .action(async (o: { group: string; limit: number; json?: boolean; namesrv: string }) => withAdmin(o.namesrv, async (admin) => {
      const { topic, queues } = await locate(admin, o.group);
      const entries: DlqEntry[] = [];
      let more = false;
      for (const queue of queues) {
        if (queue.maxOffset === 0) continue;
        if (entries.length >= o.limit) {
          more = true;
          continue;
        }
        const read = await admin.readQueue(queue.brokerGroup, topic, queue.queueId, 0, o.limit - entries.length);
        entries.push(...read.messages.map((m) => entryOf(queue, m)));
        if (read.nextOffset < queue.maxOffset) more = true;
      }
      if (o.json === true) {
        console.log(JSON.stringify({ group: o.group, topic, resendGroup: resendGroupOf(o.group), messages: entries, more }, null, 2));
        return;
      }
      if (entries.length === 0) {
        console.log(`no dead-lettered messages for group ${o.group}`);
        return;
      }
      const table = new Table({ head: ['broker group', 'offset', 'message id', 'topic', 'tag', 'keys', 'stored', 'bytes', 'body', 'resent'], ...plainWhenPiped() });
      for (const e of entries) {
        const body = e.bodyPreview + (e.bodyBytes > previewBytes ? '…' : '');
        table.push([e.brokerGroup, e.offset, e.messageId, e.originTopic === '' ? '?' : e.originTopic, e.tag, e.keys.join(' '), e.storeTime, e.bodyBytes, body, e.resent ? 'yes' : '']);
      }
      console.log(table.toString());
      console.log(`${entries.length} messages in ${topic}${more ? ` (more: raise --limit above ${o.limit})` : ''}`);
    }));
}

interface ResendOptions { group: string; limit?: number; messageId?: string[]; namesrv: string }

class ResendRun {
  sent = 0;
  skipped = 0;
  failed = false;

  /** Shown on a terminal for long runs; counts every message handled (sent, skipped or failed). */
  bar: ProgressBar | undefined;
  private handled = 0;

  constructor(private readonly producer: Producer, private readonly topic: string) {}

  async resend(queue: DlqQueue, message: ReceivedMessage): Promise<boolean> {
    const sent = await this.resendOne(queue, message);
    this.bar?.update(++this.handled);
    return sent;
  }

  /** Sends one DLQ message back to its original topic with a new id; false if it cannot be or failed. */
  private async resendOne(queue: DlqQueue, message: ReceivedMessage): Promise<boolean> {
    const origin = originOf(message);
    const where = `${queue.brokerGroup} ${this.topic}@${message.offset}`;
    if (origin.topic === undefined) {
      console.error(`${where} ${message.messageId}: skipped: the message does not name its original topic (no __ORIGIN_TOPIC property)`);
      this.skipped++;
      return false;
    }
    const resent: Message = {
      topic: origin.topic, body: message.body, properties: userProperties(message),
      ...(message.tag === '' ? {} : { tag: message.tag }), ...(message.keys.length === 0 ? {} : { keys: message.keys }),
      ...(message.shardingKey === '' ? {} : { shardingKey: message.shardingKey }),
    };
    try {
      const receipt = await this.producer.send(resent);
      printLine(this.bar, `${where} ${origin.messageId} → ${receipt.messageId} to ${origin.topic}`);
      this.sent++;
      return true;
    } catch (error) {
      const unknown = error instanceof MQClientError && !error.definite;
      console.error(`${where} ${origin.messageId}: sending to ${origin.topic} failed${unknown ? ' (it may have been stored: a later resend may duplicate it)' : ''}: ${(error as Error).message}`);
      this.failed = true;
      return false;
    }
  }
}

/** Resends from each queue's committed `<group>-dlq-resend` offset, committing after each message. */
async function resendFromOffsets(admin: Admin, run: ResendRun, location: DlqLocation, group: string, limit: number): Promise<{ more: boolean; before: number }> {
  const resendGroup = resendGroupOf(group);
  let remaining = limit;
  let more = false;
  let before = 0;
  for (const queue of location.queues) {
    if (queue.maxOffset === 0) continue;
    // The progress group must exist for UpdateOffset on brokers that do not create groups on use.
    if (!location.groups.some((g) => g.brokerGroup === queue.brokerGroup && g.name === resendGroup)) await admin.createGroup(resendGroup, {}, queue.brokerGroup);
    let from = (await admin.committedOffset(resendGroup, queue.brokerGroup, location.topic, queue.queueId)) ?? 0;
    before += from;
    while (!run.failed) {
      if (remaining <= 0) {
        if (from < queue.maxOffset) more = true;
        break;
      }
      const read = await admin.readQueue(queue.brokerGroup, location.topic, queue.queueId, from, Math.min(remaining, scanBatch));
      for (const message of read.messages) {
        if (!(await run.resend(queue, message)) && run.failed) break;
        await admin.commitOffset(resendGroup, queue.brokerGroup, location.topic, queue.queueId, message.offset + 1);
        from = message.offset + 1;
        remaining--;
      }
      if (run.failed) break;
      // References retention released were skipped by the read: move past them as well.
      if (read.nextOffset > from) {
        await admin.commitOffset(resendGroup, queue.brokerGroup, location.topic, queue.queueId, read.nextOffset);
        from = read.nextOffset;
      }
      if (read.messages.length === 0) break;
    }
    if (run.failed) break;
  }
  return { more, before };
}

/** Resends exactly the messages with the given ids (original or DLQ ids); offsets are not moved. */
async function resendByIds(admin: Admin, run: ResendRun, location: DlqLocation, ids: readonly string[]): Promise<void> {
  const found = new Map<string, { queue: DlqQueue; message: ReceivedMessage }>();
  for (const queue of location.queues) {
    let from = 0;
    while (from < queue.maxOffset && found.size < ids.length) {
      const read = await admin.readQueue(queue.brokerGroup, location.topic, queue.queueId, from, scanBatch);
      for (const message of read.messages) {
        for (const id of new Set([message.messageId, originOf(message).messageId])) {
          if (ids.includes(id) && !found.has(id)) found.set(id, { queue, message });
        }
      }
      if (read.nextOffset <= from) break;
      from = read.nextOffset;
    }
  }
  const missing = ids.filter((id) => !found.has(id));
  if (missing.length > 0) throw new MQClientError('MESSAGE_NOT_FOUND', `${location.topic} holds no message ${missing.join(', ')}; nothing was resent`, true);
  const unnamed = ids.filter((id) => originOf((found.get(id) as { message: ReceivedMessage }).message).topic === undefined);
  if (unnamed.length > 0) throw new MQClientError('BAD_REQUEST', `message ${unnamed.join(', ')} does not name its original topic (no __ORIGIN_TOPIC property); nothing was resent`, true);
  const done = new Set<ReceivedMessage>();
  for (const id of ids) {
    const { queue, message } = found.get(id) as { queue: DlqQueue; message: ReceivedMessage };
    if (done.has(message)) continue; // the same message named by both of its ids
    done.add(message);
    await run.resend(queue, message);
    if (run.failed) break;
  }
}

function resendCommand(): Command {
  return new Command('resend')
    .description('send dead-lettered messages back to their original topics as new messages; progress is kept in group <group>-dlq-resend')
    .requiredOption('--group <group>', 'consumer group whose %DLQ%<group> to resend', resendableGroupName)
    .option('--limit <n>', 'resend at most this many (the oldest not resent yet)', integer('--limit', 1))
    .addOption(new Option('--message-id <id...>', 'resend exactly these messages (found by scanning the DLQ); the progress offset is not moved').conflicts('limit'))
    .addOption(namesrvOption())
    .action(async (o: ResendOptions) => withAdmin(o.namesrv, async (admin) => {
      const location = await locate(admin, o.group);
      const resendGroup = resendGroupOf(o.group);
      const total = location.queues.reduce((sum, q) => sum + q.maxOffset, 0);
      if (total === 0) {
        if (o.messageId !== undefined) throw new MQClientError('MESSAGE_NOT_FOUND', `${location.topic} is empty: no message ${o.messageId.join(', ')}; nothing was resent`, true);
        console.log(`no dead-lettered messages for group ${o.group}`);
        return;
      }
      const producer = new Producer({ ...clientConnection(o.namesrv), sendTimeoutMs: 10_000 });
      const run = new ResendRun(producer, location.topic);
      // What this run will handle: the named messages, or those after each queue's resend offset (up to --limit).
      const pending = o.messageId !== undefined ? new Set(o.messageId).size : Math.min(o.limit ?? Infinity, location.queues.reduce((sum, q) => sum + Math.max(0, q.maxOffset - (q.resendOffset ?? 0)), 0));
      run.bar = ProgressBar.start(pending, 'resend');
      let summary: string;
      try {
        if (o.messageId !== undefined) {
          await resendByIds(admin, run, location, [...new Set(o.messageId)]);
          summary = `resent ${run.sent} of ${o.messageId.length} named messages of ${location.topic}; the offset of ${resendGroup} was not moved`;
        } else {
          const { more, before } = await resendFromOffsets(admin, run, location, o.group, o.limit ?? Infinity);
          const earlier = before > 0 ? `; ${before} passed by earlier runs` : '';
          const skipped = run.skipped > 0 ? `, skipped ${run.skipped} without an original topic` : '';
          summary = run.sent === 0 && run.skipped === 0 && !run.failed
            ? `nothing to resend: every message of ${location.topic} was resent already (progress in group ${resendGroup})`
            : `resent ${run.sent} messages of ${location.topic}${skipped}${earlier}; progress is kept in group ${resendGroup}${more ? '; more are left: run again' : ''}`;
        }
      } finally {
        run.bar?.stop();
        producer.shutdown();
      }
      console.log(summary);
      if (run.failed || run.skipped > 0) process.exitCode = 1;
    }));
}

export function dlqCommand(): Command {
  return new Command('dlq')
    .description('dead-letter queues: list a consumer group\'s %DLQ%<group> and resend its messages')
    .addCommand(listCommand())
    .addCommand(resendCommand());
}
