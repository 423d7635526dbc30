/**
 * `raftmq message get|find|trace` (F12, F20): a stored message by id, the messages of a topic
 * by key or by store time, and the trace of a message — sent, stored, delivered, acknowledged,
 * nacked, dead-lettered (and for delayed and transactional messages stored, recalled or rolled
 * back) — from every broker group's message index, served by each group's leader. Read-only.
 *
 * Times are printed in UTC (ISO 8601); `--from`/`--to` take ms since the epoch, an ISO 8601
 * date, `now`, or a time back from now (`-30s`, `-15m`, `-2h`, `-1d`).
 */
import { Command, InvalidArgumentError } from 'commander';
import Table from 'cli-table3';
import { type MessageInfo, type MessageQueryResult, type MessageTraceEvent, type MessageTraceInfo } from '../client/admin.js';
import { MQClientError } from '../client/mq-connection.js';
import { dlqTopicOf } from '../broker/core/names.js';
import { topicName } from './name-arguments.js';
import { namesrvOption, withAdmin } from './admin-session.js';
import { integer } from './node-options.js';
import { plainWhenPiped } from './tables.js';

const previewBytes = 40;
const units: Readonly<Record<string, number>> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A `--from`/`--to` value as ms since the epoch. */
export function parseTime(name: string, nowMs: () => number = Date.now): (value: string) => number {
  return (value) => {
    const text = value.trim();
    let ms: number;
    const relative = /^-(\d+)([smhd])$/.exec(text);
    if (text === 'now') ms = nowMs();
    else if (relative !== null) ms = nowMs() - Number(relative[1]) * (units[relative[2] as string] as number);
    else if (/^\d+$/.test(text)) ms = Number(text);
    else ms = /\d{4}-\d{2}-\d{2}/.test(text) ? Date.parse(text) : NaN;
    if (!Number.isSafeInteger(ms) || ms <= 0) {
      throw new InvalidArgumentError(`${name} ${JSON.stringify(value)} is not a time: give ms since the epoch, an ISO 8601 date (2024-05-01T12:00:00Z), now, or -30s / -15m / -2h / -1d`);
    }
    return ms;
  };
}

function messageId(value: string): string {
  if (value.trim() === '') throw new InvalidArgumentError('a message id is needed');
  return value;
}

const time = (ms: number | undefined): string => (ms === undefined || ms <= 0 ? '' : new Date(ms).toISOString());
const printable = (text: string): string => text.replace(/[\x00-\x1f\x7f]/g, '.');
const preview = (m: MessageInfo): string => printable(Buffer.from(m.bodyPreview.subarray(0, previewBytes)).toString('utf8')) + (m.bodyBytes > previewBytes ? '…' : '');
const host = (m: MessageInfo): string => (m.bornHost === '' ? '(host not given)' : m.bornHost);
const queueCell = (m: MessageInfo): string => (m.queueId === undefined ? '' : `${m.queueId}@${m.offset ?? '?'}`);
const entryCell = (logIndex: number, term: number | undefined): string => `${logIndex}${term === undefined ? '' : ` (term ${term})`}`;

/** How a message stands, in words. */
function stateText(m: MessageInfo): string {
  switch (m.state) {
    case 'stored': return m.queueId === undefined ? 'stored (its queue released it since)' : 'stored';
    case 'pending': return `pending: due ${time(m.deliveryTimeMs)}`;
    case 'half': return 'half message: its transaction is open';
    case 'rolled-back': return 'rolled back: never delivered';
    case 'recalled': return 'recalled: never delivered';
    case 'ended': return 'transaction ended without storing it';
    default: return m.state;
  }
}

/** JSON for machines: the body preview as text. */
const messageJson = (m: MessageInfo): object => ({ ...m, bodyPreview: Buffer.from(m.bodyPreview).toString('utf8') });

function releasedNote(result: MessageQueryResult<unknown>): string {
  return result.released > 0 ? `; ${result.released} index entries name log entries retention released` : '';
}

function notFound(id: string, topic: string | undefined, result: MessageQueryResult<unknown>): MQClientError {
  return new MQClientError('NOT_FOUND', `no message ${id}${topic === undefined ? '' : ` in topic ${topic}`} on any broker group${releasedNote(result)}`, true);
}

/** One message as a two-column table. */
export function messageTable(m: MessageInfo): string {
  const table = new Table({ ...plainWhenPiped() });
  const rows: [string, string][] = [
    ['message id', m.messageId], ['topic', m.topic], ['broker group', m.brokerGroup], ['state', stateText(m)], ['type', m.type],
    ['tag', m.tag], ['keys', m.keys.join(' ')], ['message group', m.messageGroup],
    ['born', `${time(m.bornTimeMs)} on ${host(m)}`], ['sent (applied)', time(m.sentTimeMs)],
    ['stored', time(m.storeTimeMs)], ['queue@offset', queueCell(m)], ['log index', `${entryCell(m.logIndex, m.term)}, position ${m.position}`],
  ];
  if (m.type === 'DELAY') rows.push(['delivery time', time(m.deliveryTimeMs)]);
  const properties = Object.entries(m.properties).map(([k, v]) => `${k}=${v}`).join(' ');
  if (properties !== '') rows.push(['properties', properties]);
  rows.push(['body', `${m.bodyBytes} bytes: ${preview(m)}`]);
  for (const [name, value] of rows) if (value !== '') table.push({ [name]: value });
  return table.toString();
}

/** Messages as rows. */
export function messagesTable(messages: readonly MessageInfo[]): string {
  const table = new Table({ head: ['broker group', 'message id', 'queue@offset', 'tag', 'keys', 'stored', 'state', 'born host', 'bytes', 'body'], ...plainWhenPiped() });
  for (const m of messages) table.push([m.brokerGroup, m.messageId, queueCell(m), m.tag, m.keys.join(' '), time(m.storeTimeMs), m.state, m.bornHost, m.bodyBytes, preview(m)]);
  return table.toString();
}

/** Where an event happened: the queue (and offset) it names; a dead-lettering's DLQ record. */
function eventWhere(e: MessageTraceEvent): string {
  if (e.event === 'dead-lettered') return `${e.topic} ${e.queueId} → ${dlqTopicOf(e.group)} 0${e.offset === undefined ? '' : `@${e.offset}`}`;
  return `${e.topic} ${e.queueId}${e.offset === undefined ? '' : `@${e.offset}`}`;
}

/** A trace as rows: sent, stored, then every event in log order. */
export function traceTable(trace: MessageTraceInfo): string {
  const m = trace.message;
  const table = new Table({ head: ['time', 'event', 'where', 'group', 'client', 'attempt', 'entry', 'detail'], ...plainWhenPiped() });
  table.push([time(m.bornTimeMs), 'sent', host(m), '', '', '', '', `born on the producer; ${m.type === 'NORMAL' ? 'a normal message' : m.type === 'DELAY' ? `delayed until ${time(m.deliveryTimeMs)}` : 'a transactional half message'}`]);
  const storedAtSend = m.type === 'NORMAL' || m.sentTimeMs === m.storeTimeMs;
  table.push([time(m.sentTimeMs), storedAtSend ? 'stored' : 'accepted', `${m.brokerGroup} ${m.topic}${storedAtSend ? ` ${queueCell(m)}` : ''}`, '', '', '', entryCell(m.logIndex, m.term),
    storedAtSend ? `position ${m.position}` : m.type === 'DELAY' ? 'in the timer store until due' : 'its transaction opened']);
  for (const e of trace.events) {
    const where = e.event === 'stored' ? `${m.brokerGroup} ${m.topic} ${queueCell(m)}` : eventWhere(e);
    table.push([time(e.timeMs), e.event, where, e.group, e.clientId, e.attempt === 0 ? '' : e.attempt, entryCell(e.logIndex, e.term), e.detail]);
  }
  return `${m.messageId} in ${m.topic} on broker group ${m.brokerGroup}: ${stateText(m)}\n${table.toString()}`;
}

function getCommand(): Command {
  return new Command('get')
    .description('the message stored with this id, on every broker group (read-only)')
    .argument('<id>', 'message id', messageId)
    .option('--topic <topic>', 'only in this topic', topicName)
    .option('--json', 'one JSON document for machines')
    .addOption(namesrvOption())
    .action(async (id: string, o: { topic?: string; json?: boolean; namesrv: string }) => withAdmin(o.namesrv, async (admin) => {
      const result = await admin.getMessage(id, o.topic === undefined ? {} : { topic: o.topic });
      if (o.json === true) {
        console.log(JSON.stringify({ messages: result.items.map(messageJson), more: result.more, released: result.released }, null, 2));
        if (result.items.length === 0) process.exitCode = 1;
        return;
      }
      if (result.items.length === 0) throw notFound(id, o.topic, result);
      console.log(result.items.map(messageTable).join('\n'));
      if (result.items.length > 1) console.log(`${result.items.length} messages have id ${id} (sent to several topics, or again after the de-duplication window)`);
    }));
}

interface FindOptions { topic: string; key?: string; from?: number; to?: number; limit: number; json?: boolean; namesrv: string }

function findCommand(): Command {
  return new Command('find')
    .description('messages of a topic by key (newest first) or by store time (oldest first), on every broker group hosting it (read-only)')
    .requiredOption('--topic <topic>', 'the topic', topicName)
    .option('--key <key>', 'messages sent with this key (--from/--to then bound the send time)')
    .option('--from <time>', 'from this time (ms, ISO 8601, now, -15m …)', parseTime('--from'))
    .option('--to <time>', 'up to this time, inclusive', parseTime('--to'))
    .option('--limit <n>', 'at most this many (1..1000)', integer('--limit', 1), 32)
    .option('--json', 'one JSON document for machines')
    .addOption(namesrvOption())
    .action(async (o: FindOptions) => withAdmin(o.namesrv, async (admin) => {
      if (o.key === undefined && o.from === undefined && o.to === undefined) throw new InvalidArgumentError('give --key, or a time range with --from and/or --to');
      if (o.key !== undefined && o.key === '') throw new InvalidArgumentError('--key must not be empty');
      if (o.from !== undefined && o.to !== undefined && o.from > o.to) throw new InvalidArgumentError(`--from (${time(o.from)}) is after --to (${time(o.to)})`);
      if (o.limit > 1000) throw new InvalidArgumentError('--limit must be at most 1000');
      const result = await admin.findMessages({
        topic: o.topic, limit: o.limit, ...(o.key === undefined ? {} : { key: o.key }), ...(o.from === undefined ? {} : { fromMs: o.from }), ...(o.to === undefined ? {} : { toMs: o.to }),
      });
      if (o.json === true) {
        console.log(JSON.stringify({ topic: o.topic, key: o.key ?? null, messages: result.items.map(messageJson), more: result.more, released: result.released }, null, 2));
        return;
      }
      const what = o.key === undefined ? `stored ${o.from === undefined ? '' : `from ${time(o.from)} `}${o.to === undefined ? '' : `to ${time(o.to)}`}`.trim() : `with key ${o.key}`;
      if (result.items.length === 0) {
        console.log(`no messages in ${o.topic} ${what}${releasedNote(result)}`);
        return;
      }
      console.log(messagesTable(result.items));
      console.log(`${result.items.length} messages in ${o.topic} ${what}${result.more ? ` (more: raise --limit above ${o.limit} or narrow the range)` : ''}${releasedNote(result)}`);
    }));
}

function traceCommand(): Command {
  return new Command('trace')
    .description('what happened to a message: sent, stored, delivered, acknowledged, nacked, dead-lettered (read-only)')
    .argument('<id>', 'message id', messageId)
    .option('--topic <topic>', 'only in this topic', topicName)
    .option('--json', 'one JSON document for machines')
    .addOption(namesrvOption())
    .action(async (id: string, o: { topic?: string; json?: boolean; namesrv: string }) => withAdmin(o.namesrv, async (admin) => {
      const result = await admin.traceMessage(id, o.topic === undefined ? {} : { topic: o.topic });
      if (o.json === true) {
        console.log(JSON.stringify({ traces: result.items.map((t) => ({ message: messageJson(t.message), events: t.events })), more: result.more, released: result.released }, null, 2));
        if (result.items.length === 0) process.exitCode = 1;
        return;
      }
      if (result.items.length === 0) throw notFound(id, o.topic, result);
      console.log(result.items.map(traceTable).join('\n\n'));
    }));
}

export function messageCommand(): Command {
  return new Command('message')
    .description('query and trace messages: get one by id, find by key or store time, trace what happened to one')
    .addCommand(getCommand())
    .addCommand(findCommand())
    .addCommand(traceCommand());
}
