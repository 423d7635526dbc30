/**
 * Query and trace (SPEC F12, F20), served by a broker group's leader: a message by id (in any
 * topic, or one), by key within a topic, by store time range within a topic, and the trace of
 * each message — sent (born host and time), stored (log index, term, queue and offset, store
 * time), delivered (group, attempt, client), acknowledged, nacked, dead-lettered, and for
 * delayed and transactional messages when they were stored, recalled or rolled back.
 *
 * Ids and keys go through the message index (core/message-index.ts), which apply builds from
 * committed entries (core/broker-state.ts says what is indexed when). The index keeps key
 * hashes: every candidate is checked against the log entry it names (the real id, topic and
 * key; a trace event against the command that made it) and a hash collision is dropped.
 * Store time ranges need no index: a topic's consume queues are in store-time order.
 *
 * Retention: the index answers nothing below what retention released. A candidate whose log
 * entry this node cannot read any more (it went between two retention rounds, or no peer
 * holds it after an install) is counted as `released`, never returned unchecked; a trace
 * event whose command entry went is returned without the command's details (group, client).
 *
 * Reads are served once the leader has applied an entry of its own term (as pull reads are):
 * they include everything acknowledged before. Each index walk is synchronous and bounded
 * (readsMax), and the state a query reads is the one it started with.
 */
import type { ServiceClock } from '../util/clock.js';
import { BrokerError } from './errors.js';
import type { BrokerStateMachine } from './broker-state-machine.js';
import type { RaftPort } from './broker-service.js';
import type { BrokerState } from './core/broker-state.js';
import type { ConsumeQueue } from './core/consume-queue.js';
import { PayloadKind, isMessagesKind, readCommand, readHeader, readMessageAt, type StoredMessage } from './core/entry-codec.js';
import {
  IndexKind, eventOf, hitsPerFindMax, messageIdKey, messageLocationKey, topicKey, type IndexCursor, type IndexHit, type KeyHash,
} from './core/message-index.js';
import { dlqTopicOf, dlqTopicPrefix } from './core/names.js';
import {
  queryLimitMax, type FoundMessage, type MessageState, type MessageTrace, type QueryResult, type TraceEvent, type TraceEventKind,
} from '../util/message-query-shapes.js';

export { queryLimitMax, type FoundMessage, type MessageState, type MessageTrace, type QueryResult, type TraceEvent, type TraceEventKind };

/** The log as queries read it. */
export interface QueryLog {
  /** The payload of committed entry `index` (this node's log, or a peer's); throws when none holds it. */
  payloadAt(index: number): Promise<Uint8Array>;
  /** The term of entry `index` if this node's log holds it. */
  termAt(index: number): number | undefined;
}

export const bodyPreviewBytes = 1024;
export const queryLimitDefault = 32;
/** Index entries a query may examine in all (hits and chain links). */
const queryReadsMax = 65_536;
/** Queue records with one store time a lookup scans for one message. */
const locateScanMax = 4096;
/** Trace events kept per message (the newest, when there are more). */
const traceEventsMax = 1024;

export interface MessageQueryOptions {
  readonly brokerGroup: string;
  /** How long a new leader may take to apply its first entry before a query fails. */
  readonly readReadyWaitMs: number;
}

interface Candidate {
  readonly hit: IndexHit;
}

interface ReadMessage {
  readonly message: StoredMessage;
  /** Its entry's header time (the leader's clock, before apply made it monotone). */
  readonly headerTimeMs: number;
}

export class MessageQuery {
  constructor(
    private readonly options: MessageQueryOptions,
    private readonly raft: Pick<RaftPort, 'role' | 'term' | 'leaderAddress'>,
    private readonly machine: BrokerStateMachine,
    private readonly log: QueryLog,
    private readonly clock: ServiceClock,
  ) {}

  /** The messages stored with id `messageId` (in `topic` only, if given), newest first. */
  async byId(messageId: string, options: { readonly topic?: string; readonly limit?: number } = {}): Promise<QueryResult<FoundMessage>> {
    if (typeof messageId !== 'string' || messageId === '') throw new BrokerError('ILLEGAL_MESSAGE_ID', 'a message id is needed');
    const limit = checkLimit(options.limit);
    const state = await this.readyState();
    const topic = options.topic === undefined || options.topic === '' ? undefined : options.topic;
    return this.collect(state, messageIdKey(messageId), -Infinity, Infinity, limit, IndexKind.MessageId,
      (message) => message.messageId === messageId && (topic === undefined || message.topic === topic));
  }

  /** The messages of `topic` stored with key `key`, sent in [fromMs, toMs], newest first. */
  async byKey(topic: string, key: string, options: { readonly fromMs?: number | undefined; readonly toMs?: number | undefined; readonly limit?: number } = {}): Promise<QueryResult<FoundMessage>> {
    if (typeof key !== 'string' || key === '') throw new BrokerError('ILLEGAL_MESSAGE_KEY', 'a message key is needed');
    const limit = checkLimit(options.limit);
    const { fromMs, toMs } = checkRange(options.fromMs, options.toMs);
    const state = await this.readyState();
    const createdAt = this.requireTopic(state, topic);
    return this.collect(state, topicKey(createdAt, key), fromMs, toMs, limit, IndexKind.Key,
      (message) => message.topic === topic && message.keys.includes(key));
  }

  /** The messages of `topic` stored (made visible in a queue) in [fromMs, toMs], oldest first. */
  async byStoreTime(topic: string, options: { readonly fromMs?: number | undefined; readonly toMs?: number | undefined; readonly limit?: number }): Promise<QueryResult<FoundMessage>> {
    const limit = checkLimit(options.limit);
    const { fromMs, toMs } = checkRange(options.fromMs, options.toMs);
    if (fromMs === -Infinity && toMs === Infinity) throw new BrokerError('BAD_REQUEST', 'a store time range needs a start or an end');
    const state = await this.readyState();
    this.requireTopic(state, topic);
    // Each queue's records in the range, merged by store time, then log index and position (then queue id).
    const queues = queuesOf(state, topic);
    const cursors = queues.map((queue) => ({ queue, next: firstAtOrAfter(queue, fromMs), end: firstAfter(queue, toMs) }));
    const picked: { queueId: number; offset: number; timeMs: number }[] = [];
    let more = false;
    const before = (a: ConsumeQueue, at: number, b: ConsumeQueue, bt: number): boolean =>
      a.storeTimeAt(at) < b.storeTimeAt(bt) || (a.storeTimeAt(at) === b.storeTimeAt(bt)
        && (a.logIndexAt(at) < b.logIndexAt(bt) || (a.logIndexAt(at) === b.logIndexAt(bt) && a.positionAt(at) < b.positionAt(bt))));
    for (;;) {
      let best = -1;
      cursors.forEach((c, queueId) => {
        if (c.next >= c.end) return;
        const current = cursors[best];
        if (current === undefined || before(c.queue, c.next, current.queue, current.next)) best = queueId;
      });
      if (best < 0) break;
      const bestTime = (cursors[best] as (typeof cursors)[number]).queue.storeTimeAt((cursors[best] as (typeof cursors)[number]).next);
      if (picked.length === limit) {
        more = true;
        break;
      }
      const cursor = cursors[best] as (typeof cursors)[number];
      picked.push({ queueId: best, offset: cursor.next, timeMs: bestTime });
      cursor.next++;
    }
    const items: FoundMessage[] = [];
    let released = 0;
    for (const { queueId, offset, timeMs } of picked) {
      const queue = queues[queueId] as ConsumeQueue;
      const logIndex = queue.logIndexAt(offset);
      const position = queue.positionAt(offset);
      if (logIndex < state.retainedFrom && !queue.isDelayedAt(offset)) {
        released++; // a DLQ's reference to a released message
        continue;
      }
      const read = await this.readMessage(logIndex, position);
      if (read === undefined) {
        released++;
        continue;
      }
      if (read === 'none') throw new BrokerError('INTERNAL_SERVER_ERROR', `queue ${queueId} of ${topic} names message ${position} of entry ${logIndex}, which holds none`);
      // A message stored later than sent (delayed, transactional, or a DLQ's reference) was sent at its entry's time (as its leader's clock read).
      const later = topic.startsWith(dlqTopicPrefix) || read.message.transactional === true || (read.message.deliveryTimeMs ?? 0) > 0;
      items.push(this.describe(state, read, logIndex, position, later ? Math.min(read.headerTimeMs, timeMs) : timeMs, { queueId, offset, timeMs }));
    }
    return { items, more, released };
  }

  /** The trace of every message stored with id `messageId` (in `topic` only, if given), newest message first. */
  async trace(messageId: string, options: { readonly topic?: string } = {}): Promise<QueryResult<MessageTrace>> {
    const found = await this.byId(messageId, { ...options, limit: queryLimitDefault });
    const state = this.machine.state;
    const traces: MessageTrace[] = [];
    for (const message of found.items) traces.push({ message, events: await this.eventsOf(state, message) });
    return { items: traces, more: found.more, released: found.released };
  }

  // ---- internals -------------------------------------------------------------------------------

  /** The state, once this node leads and has applied an entry of its term (everything acknowledged before is in it). */
  private async readyState(): Promise<BrokerState> {
    const until = this.clock.nowMs() + this.options.readReadyWaitMs;
    for (;;) {
      if (this.raft.role !== 'leader') {
        const leader = this.raft.leaderAddress();
        throw new BrokerError('HA_NOT_AVAILABLE', `this node is not the leader of broker group ${this.options.brokerGroup}${leader === undefined ? '; an election is in progress' : `; the leader is ${leader}`}`, true, leader);
      }
      if (this.machine.lastAppliedTerm === this.raft.term) return this.machine.state;
      if (this.clock.nowMs() >= until) throw new BrokerError('HA_NOT_AVAILABLE', 'the new leader has not applied its first entry yet');
      await new Promise<void>((resolve) => { this.clock.after(20, resolve); });
    }
  }

  private requireTopic(state: BrokerState, topic: string): number {
    if (typeof topic !== 'string' || topic === '') throw new BrokerError('BAD_REQUEST', 'a topic is needed');
    const createdAt = state.topicCreatedAt(topic);
    if (createdAt === undefined) throw new BrokerError('TOPIC_NOT_FOUND', `topic ${topic} does not exist in broker group ${this.options.brokerGroup}`);
    return createdAt;
  }

  /**
   * The index's `kind` entries of `key` in the range, newest first, each read from the log and
   * kept if `accept` says it is the one asked for (hash collisions are not), up to `limit`.
   */
  private async collect(
    state: BrokerState, key: KeyHash, fromMs: number, toMs: number, limit: number, kind: number, accept: (message: StoredMessage) => boolean,
  ): Promise<QueryResult<FoundMessage>> {
    const index = state.messageIndex;
    const items: FoundMessage[] = [];
    let released = 0;
    let resume: IndexCursor | undefined;
    let reads = queryReadsMax;
    for (;;) {
      // One bounded synchronous walk; the index may be replaced (a snapshot install) while the log is read.
      if (state.messageIndex !== index) throw new BrokerError('HA_NOT_AVAILABLE', 'this node installed a snapshot during the query; ask again');
      const readsMax = Math.min(reads, 4096);
      const found = index.find({ key, fromMs, toMs, limit: Math.min(hitsPerFindMax, limit - items.length + 8), readsMax, ...(resume === undefined ? {} : { resume }) });
      reads -= readsMax;
      for (const candidate of found.hits.filter((hit) => hit.kind === kind).map((hit): Candidate => ({ hit }))) {
        const { logIndex, position } = candidate.hit;
        const read = await this.readMessage(logIndex, position);
        if (read === undefined) {
          released++;
          continue;
        }
        if (read === 'none' || !accept(read.message)) continue; // another id or key of the same hash
        if (items.length === limit) return { items, more: true, released };
        items.push(this.describe(state, read, logIndex, position, candidate.hit.timeMs));
      }
      resume = found.resume;
      if (resume === undefined) return { items, more: false, released };
      if (reads <= 0) return { items, more: true, released };
    }
  }

  /**
   * The message at (logIndex, position) and its entry's header time; undefined when no log
   * holds that entry any more; 'none' when the entry holds no such message (not a candidate).
   */
  private async readMessage(logIndex: number, position: number): Promise<ReadMessage | 'none' | undefined> {
    let payload: Uint8Array;
    try {
      payload = await this.log.payloadAt(logIndex);
    } catch {
      return undefined;
    }
    try {
      const header = readHeader(payload);
      if (!isMessagesKind(header.kind)) return 'none';
      return { message: readMessageAt(payload, position), headerTimeMs: header.timeMs };
    } catch {
      return 'none';
    }
  }

  /**
   * What a query returns for the message stored at (logIndex, position). `sentTimeMs`: its
   * send entry's apply time (an index entry's time); `record`: its queue record, when the
   * caller knows it.
   */
  private describe(
    state: BrokerState, read: ReadMessage, logIndex: number, position: number, sentTimeMs: number, record?: { queueId: number; offset: number; timeMs: number },
  ): FoundMessage {
    const { message } = read;
    const type: FoundMessage['type'] = message.transactional === true ? 'TRANSACTION' : (message.deliveryTimeMs ?? 0) > sentTimeMs ? 'DELAY' : 'NORMAL';
    if (record !== undefined) return this.found(read, logIndex, position, sentTimeMs, type, 'stored', record, record.timeMs);
    if (type === 'NORMAL') {
      // Stored at once, at its send entry's time (undefined where: its queue released it, or the topic went).
      return this.found(read, logIndex, position, sentTimeMs, type, 'stored', locate(state, message.topic, logIndex, position, sentTimeMs), sentTimeMs);
    }
    const settled = this.settledBy(state, logIndex, position);
    if (settled.stored !== undefined) {
      const where = locate(state, message.topic, logIndex, position, settled.stored.timeMs, eventOf(settled.stored.position).queueId);
      return this.found(read, logIndex, position, sentTimeMs, type, 'stored', where, settled.stored.timeMs);
    }
    const ended: MessageState = settled.end !== undefined
      ? (settled.end.kind === IndexKind.Recalled ? 'recalled' : 'rolled-back')
      : type === 'TRANSACTION' ? (state.transactionOpen(logIndex, position) ? 'half' : 'ended') : 'pending';
    return this.found(read, logIndex, position, sentTimeMs, type, ended, undefined, undefined);
  }

  private found(
    { message }: ReadMessage, logIndex: number, position: number, sentTimeMs: number, type: FoundMessage['type'], state: MessageState,
    where: { queueId: number; offset: number } | undefined, storeTimeMs: number | undefined,
  ): FoundMessage {
    return {
      messageId: message.messageId, topic: message.topic, tag: message.tag, keys: message.keys, messageGroup: message.messageGroup,
      bornHost: message.bornHost, bornTimeMs: message.bornTimestamp, properties: Object.fromEntries(message.properties),
      bodyBytes: message.body.byteLength, bodyPreview: message.body.slice(0, bodyPreviewBytes), brokerGroup: this.options.brokerGroup, logIndex, position,
      term: this.log.termAt(logIndex), sentTimeMs, type, deliveryTimeMs: message.deliveryTimeMs ?? 0, state,
      queueId: where?.queueId, offset: where?.offset, storeTimeMs,
    };
  }

  /** The newest Stored event, and the newest Recalled or RolledBack one, of the message at (logIndex, position). */
  private settledBy(state: BrokerState, logIndex: number, position: number): { stored: IndexHit | undefined; end: IndexHit | undefined } {
    const hits = this.eventHits(state, logIndex, position);
    return {
      stored: hits.find((hit) => hit.kind === IndexKind.Stored),
      end: hits.find((hit) => hit.kind === IndexKind.Recalled || hit.kind === IndexKind.RolledBack),
    };
  }

  /** The trace events indexed under the message's location, newest first (at most traceEventsMax). */
  private eventHits(state: BrokerState, logIndex: number, position: number): IndexHit[] {
    const index = state.messageIndex;
    const key = messageLocationKey(logIndex, position);
    const hits: IndexHit[] = [];
    let resume: IndexCursor | undefined;
    for (let reads = 0; reads < queryReadsMax && hits.length < traceEventsMax; reads += 4096) {
      const found = index.find({ key, fromMs: -Infinity, toMs: Infinity, limit: Math.min(hitsPerFindMax, traceEventsMax - hits.length), readsMax: 4096, ...(resume === undefined ? {} : { resume }) });
      // Events are made after the message's send entry; one before it is another location's hash.
      hits.push(...found.hits.filter((hit) => hit.kind >= IndexKind.Delivered && hit.logIndex > logIndex));
      resume = found.resume;
      if (resume === undefined) break;
    }
    return hits;
  }

  /** The message's trace events, oldest first, each checked against the command entry that made it. */
  private async eventsOf(state: BrokerState, message: FoundMessage): Promise<TraceEvent[]> {
    const events: TraceEvent[] = [];
    for (const hit of this.eventHits(state, message.logIndex, message.position).reverse()) {
      const event = await this.eventOf(state, message, hit);
      if (event !== undefined) events.push(event);
    }
    return events;
  }

  /** The event `hit` names, or undefined when its command is not about this message (a hash collision). */
  private async eventOf(state: BrokerState, message: FoundMessage, hit: IndexHit): Promise<TraceEvent | undefined> {
    const { attempt, queueId } = eventOf(hit.position);
    const kind = eventKinds[hit.kind];
    if (kind === undefined) return undefined; // a kind this build does not know
    const base = { event: kind, timeMs: hit.timeMs, logIndex: hit.logIndex, term: this.log.termAt(hit.logIndex), attempt, queueId };
    let command: Record<string, unknown>;
    try {
      const payload = await this.log.payloadAt(hit.logIndex);
      if (readHeader(payload).kind !== PayloadKind.Command) return undefined;
      command = readCommand(payload) as Record<string, unknown>;
    } catch {
      return { ...base, group: '', clientId: '', topic: message.topic, offset: undefined, detail: `entry ${hit.logIndex} was released: its details are gone` };
    }
    const op = command.op;
    const group = typeof command.group === 'string' ? command.group : '';
    const topic = typeof command.topic === 'string' ? command.topic : '';
    const ofMessage = (name: string): boolean => name === message.topic || name.startsWith(dlqTopicPrefix);
    // A receive names no offset: from the message's own queue it is the message's.
    const ownOffset = topic === message.topic && queueId === message.queueId ? message.offset : undefined;
    switch (hit.kind) {
      case IndexKind.Delivered:
        if (op !== 'receive' || !ofMessage(topic)) return undefined;
        return { ...base, group, clientId: String(command.clientId ?? ''), topic, offset: ownOffset, detail: topic === message.topic ? '' : `from ${topic}` };
      case IndexKind.Acked:
      case IndexKind.Nacked: {
        if (op !== (hit.kind === IndexKind.Acked ? 'ack' : 'invisible') || !this.handleNames(state, command, message)) return undefined;
        const detail = hit.kind === IndexKind.Nacked ? `invisible for ${Number(command.invisibleMs)} ms` : '';
        return { ...base, group, clientId: '', topic, offset: Number(command.offset), detail: topic === message.topic ? detail : `${detail}${detail === '' ? '' : ', '}from ${topic}` };
      }
      case IndexKind.DeadLettered: {
        if (op === 'dlq' ? !this.handleNames(state, command, message) : op !== 'receive' || !ofMessage(topic)) return undefined;
        const dlq = dlqTopicOf(group);
        const at = locate(state, dlq, message.logIndex, message.position, hit.timeMs, 0);
        return { ...base, group, clientId: '', topic, offset: at?.offset, detail: `to ${dlq}${op === 'dlq' ? ' (by the consumer)' : ` after ${attempt} attempts`}` };
      }
      case IndexKind.Stored:
        if (op !== 'timer.fire' && !(op === 'txn.end' && this.txnNames(command, message))) return undefined;
        return { ...base, group: '', clientId: '', topic: message.topic, offset: message.storeTimeMs === hit.timeMs ? message.offset : undefined, detail: op === 'timer.fire' ? 'delivery time reached' : 'transaction committed' };
      case IndexKind.RolledBack:
        if (!(op === 'txn.check' || (op === 'txn.end' && this.txnNames(command, message)))) return undefined;
        return { ...base, group: '', clientId: '', topic: message.topic, offset: undefined, detail: op === 'txn.check' ? `no answer after ${attempt} check-backs` : command.commit === true ? 'its topic was deleted' : 'rolled back by the producer' };
      case IndexKind.Recalled:
        if (op !== 'timer.cancel' || command.logIndex !== message.logIndex || command.position !== message.position) return undefined;
        return { ...base, group: '', clientId: '', topic: message.topic, offset: undefined, detail: 'recalled before its delivery time' };
      default:
        return undefined;
    }
  }

  /** Whether a handle command (ack, invisible, dlq) names this message: its queue record, if still held, is the message's. */
  private handleNames(state: BrokerState, command: Record<string, unknown>, message: FoundMessage): boolean {
    const topic = String(command.topic);
    if (topic !== message.topic && !topic.startsWith(dlqTopicPrefix)) return false;
    const queue = state.queue(topic, Number(command.queueId));
    const offset = Number(command.offset);
    if (queue === undefined || offset < queue.minOffset || offset >= queue.maxOffset) return true; // released since: the hash and topic agree
    return queue.logIndexAt(offset) === message.logIndex && queue.positionAt(offset) === message.position;
  }

  private txnNames(command: Record<string, unknown>, message: FoundMessage): boolean {
    return command.logIndex === message.logIndex && command.position === message.position && command.messageId === message.messageId;
  }
}

const eventKinds: Partial<Record<number, TraceEventKind>> = {
  [IndexKind.Delivered]: 'delivered', [IndexKind.Acked]: 'acked', [IndexKind.Nacked]: 'nacked', [IndexKind.DeadLettered]: 'dead-lettered',
  [IndexKind.Stored]: 'stored', [IndexKind.RolledBack]: 'rolled-back', [IndexKind.Recalled]: 'recalled',
};

function checkLimit(limit: number | undefined): number {
  if (limit === undefined || limit === 0) return queryLimitDefault;
  if (!Number.isInteger(limit) || limit < 1 || limit > queryLimitMax) throw new BrokerError('BAD_REQUEST', `limit ${limit} must be a whole number in 1..${queryLimitMax}`);
  return limit;
}

/** Inclusive bounds; undefined for none. */
function checkRange(fromMs: number | undefined, toMs: number | undefined): { fromMs: number; toMs: number } {
  const from = fromMs ?? -Infinity;
  const to = toMs ?? Infinity;
  for (const [name, value] of [['start', from], ['end', to]] as const) {
    if (Number.isNaN(value) || (Number.isFinite(value) && (!Number.isSafeInteger(value) || value < 0))) {
      throw new BrokerError('BAD_REQUEST', `the time range's ${name} ${value} is not a time (ms since the epoch)`);
    }
  }
  if (from > to) throw new BrokerError('BAD_REQUEST', `the time range starts (${from} ms since the epoch) after it ends (${to})`);
  return { fromMs: from, toMs: to };
}

function queuesOf(state: BrokerState, topic: string): ConsumeQueue[] {
  const queues: ConsumeQueue[] = [];
  for (let queueId = 0; ; queueId++) {
    const queue = state.queue(topic, queueId);
    if (queue === undefined) return queues;
    queues.push(queue);
  }
}

/** The first held offset stored at or after `timeMs` (maxOffset when none). */
function firstAtOrAfter(queue: ConsumeQueue, timeMs: number): number {
  return timeMs === -Infinity ? queue.minOffset : queue.offsetAtTime(timeMs);
}

/** The first held offset stored after `timeMs` (maxOffset when none): store times never decrease. */
function firstAfter(queue: ConsumeQueue, timeMs: number): number {
  let low = queue.minOffset;
  let high = queue.maxOffset;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (queue.storeTimeAt(mid) <= timeMs) low = mid + 1;
    else high = mid;
  }
  return low;
}

/**
 * The queue record of the message at (logIndex, position) in `topic`, stored at `timeMs`
 * (records of one store time are adjacent): in queue `queueId` if given, else in any; the
 * topic must be the one the message was sent to (not deleted and created again since).
 */
function locate(state: BrokerState, topic: string, logIndex: number, position: number, timeMs: number, queueId?: number): { queueId: number; offset: number; timeMs: number } | undefined {
  const createdAt = state.topicCreatedAt(topic);
  if (createdAt === undefined || (createdAt > logIndex && !topic.startsWith(dlqTopicPrefix))) return undefined;
  const queues = queuesOf(state, topic);
  const ids = queueId === undefined ? queues.map((_, id) => id) : [queueId];
  for (const id of ids) {
    const queue = queues[id];
    if (queue === undefined) continue;
    const end = Math.min(queue.maxOffset, queue.offsetAtTime(timeMs) + locateScanMax);
    for (let offset = queue.offsetAtTime(timeMs); offset < end && queue.storeTimeAt(offset) === timeMs; offset++) {
      if (queue.logIndexAt(offset) === logIndex && queue.positionAt(offset) === position) return { queueId: id, offset, timeMs };
    }
  }
  return undefined;
}
