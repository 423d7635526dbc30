/**
 * Our Producer (F3): sync (`send`), async (the same promise, or a callback with
 * `sendAsync`), one-way (`sendOneway`), batches, round-robin queues or a sharding key /
 * selector for ordered messages, a send timeout and retries with fault avoidance. Concurrent
 * sends to one broker group are coalesced into one SendMessage request.
 *
 * Retries keep the message id, and the broker de-duplicates on (topic, message id), so a
 * retry after a lost answer does not store a message twice. An error is `definite` only when
 * no attempt can have stored the message.
 *
 * Delayed and scheduled messages (F8): `delayLevel` (RocketMQ's 18 levels, 1 s to 2 h) or an
 * absolute `deliveryTimeMs`; the topic must accept DELAY messages (type DELAY or MIXED). The
 * receipt's `recallHandle` cancels a pending one with `recallMessage`.
 *
 * Transactions (F9): `beginTransaction()`, then the transaction's `send` and `commit` or
 * `rollback` (transaction.ts); a `transactionChecker` answers the broker's check-backs for
 * transactions left open, on streams `start(topics)` opens (name the topics you send
 * transactional messages to). The topic must accept TRANSACTION messages (TRANSACTION or MIXED).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { MQClientError, MQConnection, statusError, type ConnectionOptions, type GroupRoute, type TopicRoute } from './mq-connection.js';
import { endTransaction, Transaction, TransactionCheckStreams, type TransactionalReceipt, type TransactionChecker, type TransactionResolution } from './transaction.js';
import { checkTopicName } from './name-checks.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader objects are untyped at this edge */

export interface Message {
  readonly topic: string;
  readonly body: Uint8Array | string;
  readonly tag?: string;
  readonly keys?: readonly string[];
  readonly properties?: Readonly<Record<string, string>>;
  /** Messages with the same key go to the same queue, in order (FIFO topics need one). */
  readonly shardingKey?: string;
  /** Deliver after RocketMQ delay level 1-18 (`delayLevels`: 1 s, 5 s, 10 s, 30 s, 1 m … 30 m, 1 h, 2 h), counted from the send. */
  readonly delayLevel?: number;
  /** Deliver at this time (ms since the epoch), at most the broker's maximum delay ahead (3 days by default). */
  readonly deliveryTimeMs?: number;
}

/** RocketMQ's delay levels 1-18, in ms (messageDelayLevel "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"). */
export const delayLevels: readonly number[] = [1, 5, 10, 30, 60, 120, 180, 240, 300, 360, 420, 480, 540, 600, 1_200, 1_800, 3_600, 7_200].map((s) => s * 1_000);

export interface SendReceipt {
  readonly messageId: string;
  readonly topic: string;
  readonly brokerGroup: string;
  readonly queueId: number;
  /** 0 for a delayed message (it gets its offset when it is delivered). */
  readonly offset: number;
  /** A delayed message still pending when it was stored: what `recallMessage` takes. '' otherwise. */
  readonly recallHandle: string;
}

/** Picks a queue among `queueCount` write queues (of all groups, in route order). */
export type QueueSelector = (queueCount: number, message: Message) => number;

export interface ProducerOptions extends ConnectionOptions {
  /** Budget for one send including retries (default 3 s). */
  readonly sendTimeoutMs?: number;
  /** Further attempts after a failure (default 2). */
  readonly retries?: number;
  /** How long a failed group is skipped when another can take the message (default 30 s). */
  readonly faultAvoidanceMs?: number;
  /** Messages per SendMessage request when coalescing (default 256). */
  readonly coalesceMax?: number;
  /** Bodies of one `sendBatch`, in total (default 32 MiB, the broker's own per-request limit). */
  readonly batchBodyBytesMax?: number;
  /** Answers the broker's check-backs of transactions this producer's application left open (see transaction.ts). */
  readonly transactionChecker?: TransactionChecker;
  /** Errors of the check-back side (a checker that threw, an answer that failed); default: ignored. */
  readonly onCheckError?: (error: Error) => void;
}

interface Target {
  readonly group: string;
  readonly queueId: number;
  /** False when a selector or sharding key chose the queue: the message may not move to another group. */
  readonly movable: boolean;
}

/** The longest a send waits for a leaderless group's election when another group could take the message. */
const movableLeaderWaitMs = 1_000;

interface Pending {
  readonly message: any;
  readonly resolve: (result: { offset: number; recallHandle: string; transactionId: string }) => void;
  readonly reject: (error: MQClientError) => void;
}

let sequence = 0;
const epoch2021 = Date.UTC(2021, 0, 1) / 1000;

/** RocketMQ's V1 message id layout: version, MAC (zeros), pid, seconds since 2021, sequence. */
export function newMessageId(): string {
  const buffer = Buffer.alloc(17);
  buffer.writeUInt8(1, 0);
  buffer.writeUInt16BE(process.pid % 65535, 7);
  buffer.writeUInt32BE((Math.floor(Date.now() / 1000) - epoch2021) >>> 0, 9);
  buffer.writeUInt32BE(sequence++ >>> 0, 13);
  return buffer.toString('hex').toUpperCase();
}

function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  return hash >>> 0;
}

export class Producer {
  readonly connection: MQConnection;
  private readonly sendTimeoutMs: number;
  private readonly retries: number;
  private readonly faultAvoidanceMs: number;
  private readonly coalesceMax: number;
  private readonly batchBodyBytesMax: number;
  private readonly avoidUntil = new Map<string, number>();
  private readonly roundRobin = new Map<string, number>();
  private readonly outgoing = new Map<string, Pending[]>();
  private readonly checkerOption: TransactionChecker | undefined;
  private readonly onCheckError: (error: Error) => void;
  private checkStreams: TransactionCheckStreams | undefined;

  constructor(options: ProducerOptions) {
    this.connection = new MQConnection(options);
    this.sendTimeoutMs = options.sendTimeoutMs ?? 3_000;
    this.retries = options.retries ?? 2;
    this.faultAvoidanceMs = options.faultAvoidanceMs ?? 30_000;
    this.coalesceMax = options.coalesceMax ?? 256;
    this.batchBodyBytesMax = options.batchBodyBytesMax ?? 32 * 1024 * 1024;
    this.checkerOption = options.transactionChecker;
    this.onCheckError = options.onCheckError ?? (() => undefined);
  }

  /**
   * Fetches routes for `topics` now so the first send does not pay for it; with a
   * transactionChecker, opens the check-back streams of these topics' broker groups.
   */
  async start(topics: readonly string[] = []): Promise<void> {
    topics.forEach(checkTopicName);
    for (const topic of topics) await this.connection.requireRoutes(topic);
    if (this.checkerOption !== undefined && topics.length > 0 && this.checkStreams === undefined) {
      this.checkStreams = new TransactionCheckStreams(this.connection, topics, this.checkerOption, this.onCheckError);
      await this.checkStreams.start();
    }
  }

  shutdown(): void {
    this.checkStreams?.close();
    this.connection.close();
  }

  /** A new transaction: its `send` stores half messages, its `commit` or `rollback` ends them. */
  beginTransaction(): Transaction {
    return new Transaction(
      async (message) => (await this.sendOne(message, {}, true)) as TransactionalReceipt,
      (receipt, resolution: TransactionResolution) => endTransaction(this.connection, receipt, resolution, 'SOURCE_CLIENT', this.sendTimeoutMs),
    );
  }

  send(message: Message, options: { selector?: QueueSelector; messageId?: string } = {}): Promise<SendReceipt> {
    return this.sendOne(message, options, false);
  }

  private async sendOne(message: Message, options: { selector?: QueueSelector; messageId?: string }, transactional: boolean): Promise<SendReceipt | TransactionalReceipt> {
    checkTopicName(message.topic);
    const messageId = options.messageId ?? newMessageId();
    // Fixed once: every retry asks for the same delivery time.
    const deliveryTimeMs = deliveryTimeOf(message);
    if (transactional && (deliveryTimeMs !== 0 || message.shardingKey !== undefined)) {
      throw new MQClientError('MESSAGE_PROPERTY_CONFLICT_WITH_TYPE', 'a transactional message cannot be delayed or have a sharding key', true);
    }
    const deadline = Date.now() + this.sendTimeoutMs;
    let unknownCause: MQClientError | undefined;
    let lastError: MQClientError | undefined;
    let previous: Target | undefined;
    for (let attempt = 0; attempt <= this.retries && Date.now() < deadline; attempt++) {
      // After an unknown outcome stay on the same queue: only that group can de-duplicate.
      const target = unknownCause !== undefined && previous !== undefined ? previous : await this.pick(message, options.selector, attempt > 0 ? previous : undefined);
      previous = target;
      try {
        // One attempt may not eat the whole budget: a node that stopped answering (paused,
        // cut off) must leave time to retry on the new leader.
        const attemptMs = Math.min(deadline - Date.now(), this.connection.requestTimeoutMs);
        // With another group able to take the message, a group without a leader gets a third
        // of the attempt (at most 1 s) before the send moves on; alone, it gets all of it.
        const elsewhere = unknownCause === undefined && target.movable && (await this.groupCount(message.topic)) > 1;
        const leaderWaitMs = elsewhere ? Math.min(attemptMs / 3, movableLeaderWaitMs) : attemptMs;
        const { offset, recallHandle, transactionId } = await this.enqueue(target.group, toV2(message, messageId, target.queueId, deliveryTimeMs, transactional), attemptMs, leaderWaitMs);
        this.avoidUntil.delete(target.group);
        const receipt = { messageId, topic: message.topic, brokerGroup: target.group, queueId: target.queueId, offset, recallHandle };
        return transactional ? { ...receipt, transactionId } : receipt;
      } catch (error) {
        const failure = error instanceof MQClientError ? error : new MQClientError('UNKNOWN', String(error), false);
        lastError = failure;
        if (!failure.definite) unknownCause ??= failure;
        if (!retryable(failure.code)) break;
        this.avoidUntil.set(target.group, Date.now() + this.faultAvoidanceMs);
        if (failure.code === 'TOO_MANY_REQUESTS') await sleep(50 * (attempt + 1));
      }
    }
    const final = lastError ?? new MQClientError('TIMEOUT', `send timed out after ${this.sendTimeoutMs} ms`, unknownCause === undefined);
    if (unknownCause !== undefined && final.definite) {
      throw new MQClientError(final.code, `${final.message} (an earlier attempt's outcome is unknown: ${unknownCause.message})`, false, { cause: final });
    }
    throw final;
  }

  /** Callback style; the promise form is `send`. */
  sendAsync(message: Message, callback: (error: MQClientError | undefined, receipt?: SendReceipt) => void): void {
    this.send(message).then((receipt) => callback(undefined, receipt), (error: MQClientError) => callback(error));
  }

  /** Fire and forget: no answer, no retry, errors are dropped. */
  sendOneway(message: Message): void {
    this.send(message).catch(() => undefined);
  }

  /** Many messages of one topic in one request, stored in one Raft entry; all go to one queue. */
  async sendBatch(messages: readonly Message[]): Promise<SendReceipt[]> {
    const first = messages[0];
    if (first === undefined) return [];
    checkTopicName(first.topic);
    if (messages.some((m) => m.topic !== first.topic)) throw new MQClientError('BAD_REQUEST', 'a batch holds messages of one topic', true);
    const bodyBytes = messages.reduce((sum, m) => sum + (typeof m.body === 'string' ? Buffer.byteLength(m.body) : m.body.byteLength), 0);
    if (bodyBytes > this.batchBodyBytesMax) {
      throw new MQClientError('MESSAGE_BODY_TOO_LARGE', `a batch of ${messages.length} messages with ${bodyBytes} body bytes is over the limit of ${this.batchBodyBytesMax}; send it in smaller batches`, true);
    }
    const deliveryTimes = messages.map(deliveryTimeOf);
    const target = await this.pick(first, undefined, undefined);
    const ids = messages.map(() => newMessageId());
    const response = await this.connection.unary(target.group, 'SendMessage', { messages: messages.map((m, i) => toV2(m, ids[i] as string, target.queueId, deliveryTimes[i] as number)) }, { timeoutMs: this.sendTimeoutMs });
    const entries: any[] = response.entries ?? [];
    const failed = entries.find((e) => e.status?.code !== 'OK');
    if (failed !== undefined || response.status?.code !== 'OK') throw statusError('batch send', failed?.status ?? response.status);
    return entries.map((e, i) => ({
      messageId: ids[i] as string, topic: first.topic, brokerGroup: target.group, queueId: target.queueId, offset: Number(e.offset), recallHandle: String(e.recallHandle ?? ''),
    }));
  }

  /**
   * Cancels a delayed message that is still pending (its receipt's `recallHandle`); resolves
   * with its message id. A delivered, already recalled or unknown one is NOT_FOUND, a handle
   * that is not a recall handle of `topic` INVALID_RECEIPT_HANDLE (both definite: nothing changed).
   */
  async recallMessage(topic: string, recallHandle: string): Promise<string> {
    checkTopicName(topic);
    // d1~<broker group>~… (src/broker/core/recall-handle.ts): the group that stored the message.
    const group = recallHandle.startsWith('d1~') ? recallHandle.split('~')[1] : undefined;
    if (group === undefined || group === '') throw new MQClientError('INVALID_RECEIPT_HANDLE', `${JSON.stringify(recallHandle.slice(0, 80))} is not a recall handle`, true);
    const response = await this.connection.unary(group, 'RecallMessage', { topic: { name: topic, resourceNamespace: '' }, recallHandle }, { timeoutMs: this.sendTimeoutMs });
    if (response.status?.code !== 'OK') throw statusError('recall', response.status);
    return String(response.messageId ?? '');
  }

  private async pick(message: Message, selector: QueueSelector | undefined, avoid: Target | undefined): Promise<Target> {
    const groups = await this.connection.requireRoutes(message.topic);
    const queues = writableQueues(groups, message.topic);
    if (queues.length === 0) throw new MQClientError('FORBIDDEN', `topic ${message.topic} has no writable queue`, true);
    if (selector !== undefined || message.shardingKey !== undefined) {
      const index = selector !== undefined ? selector(queues.length, message) : fnv1a(message.shardingKey as string) % queues.length;
      const target = queues[((index % queues.length) + queues.length) % queues.length];
      if (target === undefined) throw new MQClientError('BAD_REQUEST', `the selector chose queue ${index} of ${queues.length}`, true);
      return { ...target, movable: false };
    }
    const now = Date.now();
    const healthy = queues.filter((q) => (this.avoidUntil.get(q.group) ?? 0) <= now && q.group !== avoid?.group);
    const candidates = healthy.length > 0 ? healthy : queues;
    const next = this.roundRobin.get(message.topic) ?? 0;
    this.roundRobin.set(message.topic, next + 1);
    return candidates[next % candidates.length] as Target;
  }

  /** How many broker groups can take messages of `topic` (routes are cached by the connection). */
  private async groupCount(topic: string): Promise<number> {
    return writable(await this.connection.requireRoutes(topic), topic).groupCount;
  }

  /** Queues the message for its group's next SendMessage request (one per event-loop turn). */
  private enqueue(group: string, message: any, timeoutMs: number, leaderWaitMs: number): Promise<{ offset: number; recallHandle: string; transactionId: string }> {
    return new Promise((resolve, reject) => {
      let queue = this.outgoing.get(group);
      if (queue === undefined) {
        queue = [];
        this.outgoing.set(group, queue);
        setImmediate(() => this.flush(group, Math.max(timeoutMs, 100), Math.max(leaderWaitMs, 100)));
      }
      queue.push({ message, resolve, reject });
    });
  }

  private flush(group: string, timeoutMs: number, leaderWaitMs: number): void {
    const queue = this.outgoing.get(group) ?? [];
    this.outgoing.delete(group);
    for (let i = 0; i < queue.length; i += this.coalesceMax) {
      const batch = queue.slice(i, i + this.coalesceMax);
      this.connection.unary(group, 'SendMessage', { messages: batch.map((p) => p.message) }, { timeoutMs, leaderWaitMs }).then((response) => {
        const entries: any[] = response.entries ?? [];
        batch.forEach((pending, j) => {
          const entry = entries[j];
          if (entry === undefined) pending.reject(statusError('send', response.status ?? { code: 'INTERNAL_SERVER_ERROR', message: 'no result entry' }));
          else if (entry.status?.code === 'OK') pending.resolve({ offset: Number(entry.offset), recallHandle: String(entry.recallHandle ?? ''), transactionId: String(entry.transactionId ?? '') });
          else pending.reject(statusError('send', entry.status));
        });
      }, (error: MQClientError) => { for (const pending of batch) pending.reject(error); });
    }
  }
}

/** Codes worth another attempt (maybe on another group); validation errors are final. */
function retryable(code: string): boolean {
  return ['INTERNAL_SERVER_ERROR', 'HA_NOT_AVAILABLE', 'NO_LEADER', 'UNAVAILABLE', 'DEADLINE_EXCEEDED', 'TOO_MANY_REQUESTS', 'PROXY_TIMEOUT', 'UNKNOWN', 'TIMEOUT'].includes(code);
}

/**
 * The writable queues of `topic`, computed once per routes answer (the connection hands out
 * the same array until it refreshes them): every send asks, twice.
 */
const writableQueuesCache = new WeakMap<readonly GroupRoute[], Map<string, { readonly queues: readonly Target[]; readonly groupCount: number }>>();

function writable(groups: readonly GroupRoute[], topic: string): { readonly queues: readonly Target[]; readonly groupCount: number } {
  let byTopic = writableQueuesCache.get(groups);
  if (byTopic === undefined) {
    byTopic = new Map();
    writableQueuesCache.set(groups, byTopic);
  }
  let found = byTopic.get(topic);
  if (found === undefined) {
    const queues = computeWritableQueues(groups, topic);
    found = { queues, groupCount: new Set(queues.map((q) => q.group)).size };
    byTopic.set(topic, found);
  }
  return found;
}

const writableQueues = (groups: readonly GroupRoute[], topic: string): readonly Target[] => writable(groups, topic).queues;

function computeWritableQueues(groups: readonly GroupRoute[], topic: string): Target[] {
  return groups.flatMap((g) => {
    const route: TopicRoute | undefined = g.topics.find((t) => t.name === topic);
    if (route === undefined || (route.perm & 2) === 0) return [];
    return Array.from({ length: route.writeQueues }, (_, queueId) => ({ group: g.group, queueId, movable: true }));
  });
}

/** The message's delivery time (0: at once); a local, definite error for a bad level or a FIFO message with a delay. */
function deliveryTimeOf(message: Message): number {
  if (message.delayLevel === undefined && message.deliveryTimeMs === undefined) return 0;
  if (message.delayLevel !== undefined && message.deliveryTimeMs !== undefined) throw new MQClientError('BAD_REQUEST', 'give a message delayLevel or deliveryTimeMs, not both', true);
  if (message.shardingKey !== undefined) throw new MQClientError('MESSAGE_PROPERTY_CONFLICT_WITH_TYPE', 'a FIFO message (with a sharding key) cannot be delayed', true);
  if (message.delayLevel !== undefined) {
    const delayMs = delayLevels[message.delayLevel - 1];
    if (!Number.isInteger(message.delayLevel) || delayMs === undefined) throw new MQClientError('ILLEGAL_DELIVERY_TIME', `delay level ${message.delayLevel} is not one of 1-${delayLevels.length}`, true);
    return Date.now() + delayMs;
  }
  const at = message.deliveryTimeMs as number;
  if (!Number.isSafeInteger(at) || at <= 0) throw new MQClientError('ILLEGAL_DELIVERY_TIME', `delivery time ${at} is not a whole number of ms since the epoch`, true);
  return at;
}

function toV2(message: Message, messageId: string, queueId: number, deliveryTimeMs: number, transactional = false): any {
  const now = Date.now();
  const system: Record<string, unknown> = {
    keys: message.keys ?? [], messageId, bodyEncoding: 'IDENTITY',
    messageType: transactional ? 'TRANSACTION' : message.shardingKey !== undefined ? 'FIFO' : deliveryTimeMs !== 0 ? 'DELAY' : 'NORMAL',
    bornTimestamp: { seconds: Math.floor(now / 1000), nanos: (now % 1000) * 1e6 }, bornHost: process.env.HOSTNAME ?? '', queueId,
  };
  if (message.tag !== undefined) system.tag = message.tag;
  if (message.shardingKey !== undefined) system.messageGroup = message.shardingKey;
  if (deliveryTimeMs !== 0) system.deliveryTimestamp = { seconds: Math.floor(deliveryTimeMs / 1000), nanos: (deliveryTimeMs % 1000) * 1e6 };
  return {
    topic: { name: message.topic, resourceNamespace: '' }, userProperties: message.properties ?? {}, systemProperties: system,
    body: typeof message.body === 'string' ? Buffer.from(message.body) : message.body,
  };
}
