/**
 * The broker's replicated state: topics, groups, consume queues, send de-duplication,
 * consumer offsets and the receive/ack/invisibility state of pop-style consumption. Pure and
 * deterministic: every node applies the same committed entries in the same order and reaches
 * the same state; time is the leader's timestamp in each entry, made monotone here.
 *
 * All of it goes into Raft snapshots (snapshot/restore; the format is in state-snapshot.ts),
 * Map iteration orders included where they matter, so a restored node behaves like one that
 * applied the whole log.
 *
 * Delayed and scheduled messages (F8). A send whose delivery time is later than its entry's
 * time goes into the timer store (timer-store.ts) instead of its queue; the dedup window still
 * records it, so a retried send is stored once. The leader proposes `timer.fire`: applying it
 * moves every record due by then into its queue, in the store's order (due time, log index,
 * position), with the fire entry's time as its store time; a record whose topic was deleted
 * (or deleted and created again) is dropped. `timer.cancel` (RecallMessage) cancels a pending
 * one. A delivered message's queue record still points at its send entry, so a queue may hold
 * a record whose log index is below one before it: retention releases queue prefixes as ever
 * (a fired message goes with the prefix it sits in, counted as expired if unconsumed), and
 * `firstNeededLogIndex` keeps the log from the oldest pending timer and from the oldest
 * delivered message still held in a queue (`firedRuns`, a few runs per queue), so no held
 * record loses its body; readers skip a record below retainedFrom (a DLQ's reference to a
 * released message) unless it is such a delivered one (ConsumeQueue.isDelayedAt).
 *
 * Transactions (F9). A half message (entry kind HalfMessages) opens a transaction in the
 * transaction table (transactions.ts) with the queue it will go to; `txn.end` COMMIT puts it
 * there like a fired delayed message (stored at the commit's time, its body pinned by the
 * fired runs while the queue holds it; a message id the dedup window already holds is not
 * stored twice), ROLLBACK forgets it; `txn.check` (the leader's) counts a check-back for
 * every transaction due and rolls back those past the last check. Open transactions pin the
 * log like pending delayed messages.
 *
 * The message index (message-index.ts; SPEC F12, F20) is part of this state: apply adds its
 * entries, all at the applied entry's log index and (monotone) time, so every node builds
 * the same one, and it is in snapshots and the digest like the rest. What is indexed when:
 *  - a message stored, made pending (delayed) or opened as a half message by a send entry:
 *    MessageId under its id and Key under each of its keys (scoped to the topic's creation),
 *    at (send entry, position); a duplicate (the dedup window's) or refused one is not;
 *  - under the message's location (send entry, position): Delivered (receive: attempt and
 *    queue in the position), DeadLettered (a receive past the last attempt, or a dlq
 *    command), Acked, Nacked (invisible), Stored (a timer fire or a commit put it in its
 *    queue), RolledBack (EndTransaction or the last check-back), Recalled (timer.cancel).
 * Retention releases the index below `firstNeededLogIndex` (never above a body still read).
 * Entries are added after the state change they describe; an index write that fails throws
 * MessageIndexError, which stops the node (BrokerStateMachine rethrows it).
 */
import { assert } from '../../util/assert.js';
import { AccessControlTable, validateAccessCommand, type AccessCommand } from './access-control.js';
import { DedupWindow, memoryDedupRecordStore, type DedupRecordStore } from './dedup-window.js';
import { ConsumeQueue, memoryQueueRecordStore, type QueueIdentity, type QueueRecordStore } from './consume-queue.js';
import { filterFromJson, filterMatches, type TagFilter } from './filter.js';
import { decodeBrokerState, encodeBrokerState, sha256Hex, type FiredRun } from './state-snapshot.js';
import type { MessageRouting } from './entry-codec.js';
import { MemoryTimerStore, type TimerRecord, type TimerStore } from './timer-store.js';
import {
  IndexKind, MemoryMessageIndex, MemoryMessageIndexStore, emptyIndexExtent, eventPosition, messageIdKey, messageLocationKey, topicKey,
  type MessageIndex, type MessageIndexStore,
} from './message-index.js';
import {
  checkPolicyProblem, defaultTransactionLimits, TransactionTable, type HalfMessage, type TransactionCheckPolicy, type TransactionEnd, type TransactionLimits,
} from './transactions.js';
import {
  defaultGroupConfig, dlqTopicOf, dlqTopicPrefix, permRead, permReadWrite, permWrite, retryBackoffMs, type GroupConfig, type TopicConfig,
} from './names.js';

export type BrokerCommand =
  /** `mode` create: refused if the topic exists; update: refused if it does not (decided at apply, so no stale read races it); absent: either. */
  | { readonly op: 'topic.put'; readonly config: TopicConfig; readonly mode?: 'create' | 'update' }
  | { readonly op: 'topic.delete'; readonly name: string }
  | { readonly op: 'group.put'; readonly config: GroupConfig }
  | {
    readonly op: 'receive'; readonly group: string; readonly topic: string; readonly queueId: number; readonly tags: string[] | null;
    readonly batch: number; readonly invisibleMs: number; readonly autoRenew: boolean; readonly clientId: string;
  }
  | ({ readonly op: 'ack' } & HandleRef)
  | ({ readonly op: 'invisible'; readonly invisibleMs: number } & HandleRef)
  | ({ readonly op: 'dlq' } & HandleRef)
  | { readonly op: 'renew'; readonly items: readonly HandleRef[]; readonly invisibleMs: number }
  | { readonly op: 'release'; readonly clientId: string }
  | { readonly op: 'offset.update'; readonly group: string; readonly topic: string; readonly queueId: number; readonly offset: number }
  | { readonly op: 'offset.reset'; readonly group: string; readonly topic: string; readonly timeMs: number }
  /** Retention (proposed by the leader): every message stored at or before `throughIndex` goes. */
  | { readonly op: 'retention'; readonly throughIndex: number }
  /** Delayed messages (proposed by the leader): every pending one due by `throughMs` (and by the entry's own time) goes into its queue. */
  | { readonly op: 'timer.fire'; readonly throughMs: number }
  /** RecallMessage: the pending delayed message stored at (logIndex, position), due at dueMs, is never delivered. */
  | { readonly op: 'timer.cancel'; readonly logIndex: number; readonly position: number; readonly dueMs: number }
  /** EndTransaction: the transaction whose half message is at (logIndex, position), sent with `messageId`, is committed or rolled back. */
  | { readonly op: 'txn.end'; readonly topic: string; readonly logIndex: number; readonly position: number; readonly messageId: string; readonly commit: boolean }
  /** Transaction check-back (proposed by the leader): every open transaction due by `throughMs` under `policy` is checked once more, or rolled back after the last check. */
  | { readonly op: 'txn.check'; readonly throughMs: number; readonly policy: TransactionCheckPolicy }
  /** Changes nothing: a read that waits for it to apply sees everything committed before the read began (a linearizable read through the log). */
  | { readonly op: 'barrier' }
  /** Users and policies (access-control.ts); the secret in it is sealed by the proposing node. */
  | { readonly op: 'access'; readonly command: AccessCommand };

/** A message as apply takes it: its routing, and its keys for the message index (none when absent). */
export type IndexedRouting = MessageRouting & { readonly keys?: readonly string[] };

/** Positions in an entry's batch the index holds (every batch the broker proposes is far smaller). */
const indexPositionMax = 0xff_ffff;

/** What a receipt handle names: one delivery of one message to one group. */
export interface HandleRef {
  readonly group: string;
  readonly topic: string;
  readonly queueId: number;
  readonly offset: number;
  /** The log index of the entry that issued the handle: unique per delivery. */
  readonly seq: number;
}

export interface SendOutcome {
  readonly code: 'ok' | 'topic-not-found' | 'not-writable' | 'bad-queue' | 'illegal-delivery-time' | 'too-many-transactions';
  readonly queueId: number;
  /** -1 for a delayed message (it has no offset until it is delivered). */
  readonly offset: number;
  readonly duplicate: boolean;
  /** A delayed message, pending in the timer store: what names it for a recall. */
  readonly delayed?: { readonly logIndex: number; readonly position: number; readonly dueMs: number };
  /** A half message: its open transaction, named by where the half is stored. */
  readonly half?: { readonly logIndex: number; readonly position: number };
}

/** A transaction a check-back asks about, or one rolled back after its last check. */
export interface TransactionCheck {
  readonly logIndex: number;
  readonly position: number;
  readonly messageId: string;
  readonly topic: string;
  /** Check-backs so far, this one included. */
  readonly checks: number;
  readonly storeTimeMs: number;
}

export interface Delivery {
  readonly topic: string;
  readonly queueId: number;
  readonly offset: number;
  readonly logIndex: number;
  readonly position: number;
  readonly storeTimeMs: number;
  readonly attempt: number;
  readonly seq: number;
  readonly deadlineMs: number;
}

export type CommandOutcome =
  | { readonly kind: 'done' }
  | { readonly kind: 'error'; readonly code: 'topic-not-found' | 'invalid-handle' | 'bad-request' | 'not-pending' | 'already-ended' | 'topic-exists' | 'access-refused'; readonly message: string }
  | { readonly kind: 'received'; readonly deliveries: readonly Delivery[]; readonly deadLettered: number }
  | { readonly kind: 'handle'; readonly seq: number }
  /** A timer fire: how many due messages went into their queues (and which topics got them), how many were dropped with their topic. */
  | { readonly kind: 'fired'; readonly delivered: number; readonly dropped: number; readonly topics: readonly string[] }
  /** A transaction ended: `stored` when a commit put its message into a queue (false: a rollback, a repeated end, or a message id already stored). */
  | { readonly kind: 'txn-ended'; readonly topic: string; readonly stored: boolean }
  /** A check-back round: the transactions to ask about, and those rolled back after their last check. */
  | { readonly kind: 'txn-checked'; readonly checks: readonly TransactionCheck[]; readonly expired: readonly TransactionCheck[] };

interface InFlight {
  attempt: number;
  deadlineMs: number;
  seq: number;
  autoRenew: boolean;
  clientId: string;
}

/** Pop-style progress of one group on one queue: every offset below `next` is in flight or done. */
class PopQueue {
  constructor(
    /** Everything below is acknowledged (or filtered out, or dead-lettered). */
    public ackOffset = 0,
    /** The next offset never handed out. */
    public next = 0,
    /** Iteration order is behaviour (renewalsDue, autoRenewClients): snapshots keep it. */
    readonly inFlight = new Map<number, InFlight>(),
    readonly done = new Set<number>(),
  ) {}

  settle(offset: number): void {
    this.inFlight.delete(offset);
    if (offset < this.ackOffset) return;
    this.done.add(offset);
    while (this.done.delete(this.ackOffset)) this.ackOffset++;
  }

  isSettled(offset: number): boolean {
    return offset < this.ackOffset || this.done.has(offset);
  }

  /** Retention released everything below `offset`: nothing there is in flight or to be handed out. */
  releaseBelow(offset: number): void {
    for (const inFlight of [...this.inFlight.keys()]) if (inFlight < offset) this.inFlight.delete(inFlight);
    for (const done of [...this.done]) if (done < offset) this.done.delete(done);
    if (this.ackOffset < offset) this.ackOffset = offset;
    if (this.next < offset) this.next = offset;
    while (this.done.delete(this.ackOffset)) this.ackOffset++;
  }

  resetTo(offset: number): void {
    this.ackOffset = offset;
    this.next = offset;
    this.inFlight.clear();
    this.done.clear();
  }
}

interface TopicState {
  config: TopicConfig;
  /** The log index of the entry that created it: a topic deleted and created again is a new one. */
  readonly createdAt: number;
  readonly queues: ConsumeQueue[];
  roundRobin: number;
}

/** Limits that change what apply does: the same on every node of a group. */
export interface BrokerStateLimits {
  readonly dedupWindowMs: number;
  readonly dedupEntriesMax: number;
  readonly transactions?: TransactionLimits;
}

export const defaultBrokerStateLimits: BrokerStateLimits = { dedupWindowMs: 10 * 60_000, dedupEntriesMax: 1_000_000 };

const key = (...parts: (string | number)[]): string => parts.join('\u0000');

/**
 * A delayed send's dedup record names its send entry instead of a queue offset: queue id
 * field = delayedDedupFlag | queue id << 20 | position (positions above 2^20 - 1, which no
 * entry the broker proposes has, are cut to their low bits), offset field = the log index.
 */
const delayedDedupFlag = 0x4000_0000;
const delayedDedupPositionBits = 20;
const delayedDedupPositionMask = (1 << delayedDedupPositionBits) - 1;

/** Runs of delivered delayed messages kept per queue (adjacent runs merge beyond it). */
const firedRunsMax = 8;

/** The queue a message goes to: the one it names, or (-1) round robin, or by its message group's hash (FIFO). Advances the round robin. */
function chooseQueue(topic: TopicState, message: MessageRouting): number {
  if (message.queueId >= 0) return message.queueId;
  const writable = Math.min(topic.config.writeQueues, topic.queues.length);
  return message.messageGroup !== '' ? stableHash(message.messageGroup) % writable : topic.roundRobin++ % writable;
}

const minDefined = (a: number | undefined, b: number | undefined): number | undefined => (a === undefined ? b : b === undefined ? a : Math.min(a, b));

const checkOf = (half: HalfMessage): TransactionCheck => ({ logIndex: half.logIndex, position: half.position, messageId: half.messageId, topic: half.topic, checks: half.checks, storeTimeMs: half.storeTimeMs });

const endText = (end: TransactionEnd): string => (end === 'commit' ? 'committed' : end === 'rollback' ? 'rolled back' : 'rolled back after its last unanswered check-back');

/** localeCompare for people, code units to break its ties: listings never depend on Map order. */
const byName = (a: string, b: string): number => a.localeCompare(b) || (a < b ? -1 : a > b ? 1 : 0);

/** FNV-1a: a stable hash so that every node maps a message group to the same queue. */
export function stableHash(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

export interface GroupProgressRow {
  readonly topic: string;
  readonly queueId: number;
  readonly offset: number;
  readonly maxOffset: number;
  readonly inFlight: number;
  /** Messages retention released before this group consumed them (its offset was moved past them). */
  readonly expired: number;
}

export class BrokerState {
  // Every field below is in snapshot()/restore(). A new one needs a new snapshot format
  // version in state-snapshot.ts (and the field list in state-snapshot.test.ts).
  private readonly topics = new Map<string, TopicState>();
  private readonly groups = new Map<string, GroupConfig>();
  private readonly popQueues = new Map<string, PopQueue>();
  private readonly receiveCursor = new Map<string, number>();
  /** Committed consume offsets of queue-offset (pull) consumers: group → topic\0queue → offset. */
  private readonly offsets = new Map<string, Map<string, number>>();
  /** Send de-duplication by (topic, message id): ids as 128-bit hashes, oldest first; its records are in `dedupRecords`. */
  private dedup: DedupWindow;
  private readonly tagIds = new Map<string, number>([['', 0]]);
  private readonly tagNames: string[] = [''];
  private clockMs = 0;
  /** The first log index retention has not released: message bodies before it are gone. */
  private retainedFromIndex = 1;
  /** Messages a consumer never saw because retention released them first: group\0topic\0queue → count. */
  private readonly expiredUnconsumed = new Map<string, number>();
  /**
   * Delivered delayed messages still held in queues, as runs of offsets with the least log
   * index in each (topic\0queue → runs by offset): their send entries must stay in the log.
   */
  private readonly firedRuns = new Map<string, FiredRun[]>();
  private transactions: TransactionTable;
  /** The message index (query and trace): its entries are a function of the applied entries. */
  private index: MessageIndex;
  /** Users and their policies: who may do what once authentication is on. */
  private accessTable = new AccessControlTable();

  constructor(
    private readonly limits: BrokerStateLimits = defaultBrokerStateLimits,
    /** Where consume-queue records live: files on a broker node, memory in the simulator. */
    private readonly queueRecords: QueueRecordStore = memoryQueueRecordStore,
    /** Where the dedup window's records live: files on a broker node, memory in the simulator. */
    private readonly dedupRecords: DedupRecordStore = memoryDedupRecordStore,
    /** Pending delayed messages (its state is this state's: a restore replaces it). Files on a broker node, memory in the simulator. */
    private readonly timers: TimerStore = new MemoryTimerStore(),
    /** Where the message index lives: files on a broker node, memory in the simulator and tests. */
    private readonly indexStore: MessageIndexStore = new MemoryMessageIndexStore(),
    /** An index to start from instead of a new empty one of `indexStore` (restore: a placeholder the snapshot's replaces). */
    index?: MessageIndex,
  ) {
    this.dedup = DedupWindow.create(limits, dedupRecords);
    this.transactions = new TransactionTable(limits.transactions ?? defaultTransactionLimits);
    this.index = index ?? indexStore.open(emptyIndexExtent(indexStore.layout));
  }

  /**
   * The whole state as deterministic bytes (format: state-snapshot.ts); equal states give
   * equal bytes. With durable queue and dedup records, they are synced first and the snapshot
   * records only how far each queue and the dedup ring reach; otherwise (or `withRecords`, for
   * a node that has no such files) the records are in the snapshot.
   */
  snapshot(options: { readonly withRecords?: boolean } = {}): Uint8Array {
    const withRecords = options.withRecords === true || !this.queueRecords.recordsDurable || !this.dedupRecords.recordsDurable;
    if (!withRecords) {
      this.queueRecords.sync(this.queueIdentities());
      this.dedupRecords.sync();
      // Timers and an index in memory are carried whatever the rest does (their sections say which).
      if (this.timers.recordsDurable) this.timers.sync();
      if (this.index.recordsDurable) this.index.sync();
    }
    return encodeBrokerState({
      clockMs: this.clockMs, tagNames: this.tagNames, topics: this.topics, groups: this.groups, popQueues: this.popQueues,
      receiveCursor: this.receiveCursor, offsets: this.offsets, dedup: this.dedup,
      retainedFrom: this.retainedFromIndex, expiredUnconsumed: this.expiredUnconsumed, timers: this.timers, firedRuns: this.firedRuns,
      transactions: this.transactions, index: this.index, access: this.accessTable,
    }, withRecords);
  }

  /**
   * A state equal to the one that took the snapshot; throws SnapshotFormatError on bytes it
   * cannot read, QueueRecordsError, DedupRecordsError, TimerRecordsError or MessageIndexError
   * when the files it relies on are missing. `timers` takes the snapshot's timers (its own
   * state is replaced); `indexStore` opens the snapshot's message index (a snapshot of
   * version 4 or 5 has none: a new empty one).
   */
  static restore(
    data: Uint8Array, limits: BrokerStateLimits = defaultBrokerStateLimits,
    queueRecords: QueueRecordStore = memoryQueueRecordStore, dedupRecords: DedupRecordStore = memoryDedupRecordStore,
    timers: TimerStore = new MemoryTimerStore(), indexStore: MessageIndexStore = new MemoryMessageIndexStore(),
  ): BrokerState {
    // The state first: its empty window opens the dedup store, which the decoded window's records then replace.
    // Its index is a placeholder in memory (opening one of `indexStore` would close the index in use, should decoding fail).
    const state = new BrokerState(limits, queueRecords, dedupRecords, timers, indexStore, new MemoryMessageIndex());
    const parts = decodeBrokerState(data, queueRecords, dedupRecords, timers, { ...limits, transactions: limits.transactions ?? defaultTransactionLimits }, indexStore);
    state.clockMs = parts.clockMs;
    state.tagNames.length = 0;
    state.tagIds.clear();
    for (const name of parts.tagNames) state.tagIds.set(name, state.tagNames.push(name) - 1);
    for (const [name, topic] of parts.topics) state.topics.set(name, topic);
    for (const [name, config] of parts.groups) state.groups.set(name, config);
    for (const [k, pop] of parts.popQueues) state.popQueues.set(k, new PopQueue(pop.ackOffset, pop.next, pop.inFlight, pop.done));
    for (const [k, cursor] of parts.receiveCursor) state.receiveCursor.set(k, cursor);
    for (const [group, offsets] of parts.offsets) state.offsets.set(group, offsets);
    state.dedup = parts.dedup;
    state.retainedFromIndex = parts.retainedFrom;
    for (const [k, count] of parts.expiredUnconsumed) state.expiredUnconsumed.set(k, count);
    for (const [k, runs] of parts.firedRuns) state.firedRuns.set(k, runs);
    state.transactions = parts.transactions;
    state.index = parts.index;
    state.accessTable = parts.access;
    return state;
  }

  /** SHA-256 (hex) of the snapshot with its records: equal on two nodes exactly when their states are. */
  digest(): string {
    return sha256Hex(this.snapshot({ withRecords: true }));
  }

  /** Every queue the state holds (the rest of a queue store's files may go). */
  private queueIdentities(): QueueIdentity[] {
    const queues: QueueIdentity[] = [];
    for (const topic of this.topics.values()) for (const queue of topic.queues) queues.push(queue.identity);
    return queues;
  }

  /** The first log index retention has not released: every message stored before it went (a delivered delayed message goes with its queue's prefix). */
  get retainedFrom(): number {
    return this.retainedFromIndex;
  }

  /**
   * The first log entry a message body may still be read from: retainedFrom, or earlier while
   * a pending delayed message or a delivered one still held in a queue has its body there.
   */
  get firstNeededLogIndex(): number {
    return Math.min(this.retainedFromIndex, this.timerPinnedFrom() ?? Infinity);
  }

  /** The least log index of a pending delayed message, an open transaction's half, or a delivered one of those still held in a queue (undefined: none). */
  timerPinnedFrom(): number | undefined {
    let least = this.pendingTimersFrom() ?? Infinity;
    for (const runs of this.firedRuns.values()) for (const run of runs) if (run.minLogIndex < least) least = run.minLogIndex;
    return Number.isFinite(least) ? least : undefined;
  }

  /**
   * The least log index of a pending delayed message or an open transaction's half message
   * (undefined: none). Retention does not release past it for size or disk: nothing there can
   * be deleted until the message is delivered or its transaction ends. (A delivered one still held in a queue also pins the log, but releasing the
   * prefix it sits in is what lets it go, so that pin does not hold retention back.)
   */
  pendingTimersFrom(): number | undefined {
    return minDefined(this.timers.minPendingLogIndex(), this.transactions.firstOpenLogIndex());
  }

  /** Transactions whose half message is stored and not yet committed or rolled back. */
  get openTransactions(): number {
    return this.transactions.openCount;
  }

  /** Users and policies, as applied (read it, never change it: commands do). */
  get access(): AccessControlTable {
    return this.accessTable;
  }

  /** The open transactions, oldest first (for listings). */
  openTransactionList(): readonly HalfMessage[] {
    return this.transactions.openList();
  }

  /** Whether a check-back round under `policy` at `throughMs` would find a transaction due (the leader proposes one only then). */
  transactionCheckDue(throughMs: number, policy: TransactionCheckPolicy): boolean {
    return this.transactions.anyDue(throughMs, policy);
  }

  /** Delayed messages waiting for their delivery time (not recalled). */
  get pendingTimers(): number {
    return this.timers.pendingCount;
  }

  /** The earliest delivery time of a pending delayed message (undefined: none): the leader fires when its clock reaches it. */
  nextTimerDueMs(): number | undefined {
    return this.timers.nextDueMs();
  }

  /** The longest delay apply accepts (the same on every node: apply refuses longer ones). */
  get timerMaxDelayMs(): number {
    return this.timers.limits.maxDelayMs;
  }

  /** The message index (query and trace): read it, never add to it (apply does). A restore replaces it. */
  get messageIndex(): MessageIndex {
    return this.index;
  }

  /** The log index of the entry that created topic `name` (what scopes its keys in the index), or undefined. */
  topicCreatedAt(name: string): number | undefined {
    return this.topics.get(name)?.createdAt;
  }

  /** Whether the transaction whose half message is at (logIndex, position) is open. */
  transactionOpen(logIndex: number, position: number): boolean {
    return this.transactions.get(logIndex, position) !== undefined;
  }

  /**
   * Store time of the newest message at or before `logIndex` in any topic's queue (for
   * retention by age). A delivered delayed message counts with its delivery (store) time, so
   * it is not released by age right after it became visible: as far as the fired runs tell,
   * from the first delivery of its run (exact for a run of one fire; a run that merged several
   * counts from its oldest, so the runs never hold retention back for good).
   */
  newestStoreTimeThrough(logIndex: number): number | undefined {
    let newest: number | undefined;
    const consider = (time: number): void => {
      if (newest === undefined || time > newest) newest = time;
    };
    for (const [name, topic] of this.topics) {
      if (name.startsWith(dlqTopicPrefix)) continue; // references, not stores
      topic.queues.forEach((queue, queueId) => {
        // Exact for queues in log order; with delivered delayed messages (lower log indexes
        // after higher ones) the search only lands later, and the runs cover those messages.
        const offset = queue.lastOffsetThroughLogIndex(logIndex);
        if (offset !== undefined && offset >= queue.minOffset) consider(queue.storeTimeAt(offset));
        for (const run of this.firedRuns.get(key(name, queueId)) ?? []) {
          if (run.minLogIndex <= logIndex && run.lastOffset >= queue.minOffset) consider(queue.storeTimeAt(Math.max(run.firstOffset, queue.minOffset)));
        }
      });
    }
    return newest;
  }

  /** The monotone time of the last applied entry. */
  get nowMs(): number {
    return this.clockMs;
  }

  /** Apply's only clock: the leader's stamp, never moving backwards across leader changes. */
  advanceClock(timeMs: number): number {
    if (timeMs > this.clockMs) this.clockMs = timeMs;
    return this.clockMs;
  }

  // ---- reads -------------------------------------------------------------------------

  topic(name: string): TopicConfig | undefined {
    return this.topics.get(name)?.config;
  }

  topicList(): TopicConfig[] {
    return [...this.topics.values()].map((t) => t.config).sort((a, b) => byName(a.name, b.name));
  }

  group(name: string): GroupConfig | undefined {
    return this.groups.get(name);
  }

  groupList(): GroupConfig[] {
    return [...this.groups.values()].sort((a, b) => byName(a.name, b.name));
  }

  queue(topic: string, queueId: number): ConsumeQueue | undefined {
    return this.topics.get(topic)?.queues[queueId];
  }

  tagName(tagId: number): string {
    return this.tagNames[tagId] ?? '';
  }

  maxOffsets(topic: string): number[] {
    return this.topics.get(topic)?.queues.map((q) => q.maxOffset) ?? [];
  }

  committedOffset(group: string, topic: string, queueId: number): number | undefined {
    return this.offsets.get(group)?.get(key(topic, queueId));
  }

  /** Per queue of every topic the group touched: its committed (or acknowledged) offset and lag. */
  groupProgress(group: string): GroupProgressRow[] {
    const rows = new Map<string, GroupProgressRow>();
    for (const [k, offset] of this.offsets.get(group) ?? []) {
      const [topic, queueId] = k.split('\u0000') as [string, string];
      rows.set(k, { topic, queueId: Number(queueId), offset, maxOffset: this.queue(topic, Number(queueId))?.maxOffset ?? 0, inFlight: 0, expired: this.expiredUnconsumed.get(key(group, topic, queueId)) ?? 0 });
    }
    for (const [k, pop] of this.popQueues) {
      const [g, topic, queueId] = k.split('\u0000') as [string, string, string];
      if (g !== group) continue;
      const rowKey = key(topic, queueId);
      const previous = rows.get(rowKey);
      rows.set(rowKey, {
        topic, queueId: Number(queueId), offset: Math.max(previous?.offset ?? 0, pop.ackOffset),
        maxOffset: this.queue(topic, Number(queueId))?.maxOffset ?? 0, inFlight: pop.inFlight.size,
        expired: this.expiredUnconsumed.get(key(group, topic, queueId)) ?? 0,
      });
    }
    // A queue the group never reached but lost messages on (retention released them first).
    for (const [k, expired] of this.expiredUnconsumed) {
      const [g, topic, queueId] = k.split('\u0000') as [string, string, string];
      const rowKey = key(topic, queueId);
      if (g !== group || rows.has(rowKey)) continue;
      const queue = this.queue(topic, Number(queueId));
      rows.set(rowKey, { topic, queueId: Number(queueId), offset: queue?.minOffset ?? 0, maxOffset: queue?.maxOffset ?? 0, inFlight: 0, expired });
    }
    return [...rows.values()].sort((a, b) => byName(a.topic, b.topic) || a.queueId - b.queueId);
  }

  /**
   * Whether a receive could hand out something now (new messages or expired deliveries); a
   * cheap over-estimate used to decide between proposing a receive and long-polling.
   */
  mayDeliver(group: string, topic: string, queueId: number, nowMs: number): boolean {
    const state = this.topics.get(topic);
    if (state === undefined) return false;
    const fifo = this.groups.get(group)?.fifo === true;
    for (const id of this.readQueueIds(state, queueId)) {
      const pop = this.popQueues.get(key(group, topic, id));
      const queue = state.queues[id] as ConsumeQueue;
      if (pop === undefined) {
        if (queue.maxOffset > queue.minOffset) return true;
        continue;
      }
      let blocked = false;
      for (const flight of pop.inFlight.values()) {
        if (flight.deadlineMs <= nowMs) return true;
        blocked = true;
      }
      if (fifo && blocked) continue;
      if (pop.next < queue.maxOffset) return true;
    }
    return false;
  }

  /** The earliest visibility deadline of the group's deliveries on a topic (for long-poll wake-ups). */
  nextDeadline(group: string, topic: string): number | undefined {
    let earliest: number | undefined;
    const state = this.topics.get(topic);
    if (state === undefined) return undefined;
    for (let id = 0; id < state.queues.length; id++) {
      for (const flight of this.popQueues.get(key(group, topic, id))?.inFlight.values() ?? []) {
        if (earliest === undefined || flight.deadlineMs < earliest) earliest = flight.deadlineMs;
      }
    }
    return earliest;
  }

  /** In-flight deliveries of auto-renewing clients whose deadline falls before `beforeMs`. */
  renewalsDue(beforeMs: number, isAlive: (clientId: string) => boolean): HandleRef[] {
    const due: HandleRef[] = [];
    for (const [k, pop] of this.popQueues) {
      const [group, topic, queueId] = k.split('\u0000') as [string, string, string];
      for (const [offset, flight] of pop.inFlight) {
        if (flight.autoRenew && flight.deadlineMs < beforeMs && flight.deadlineMs > this.clockMs && isAlive(flight.clientId)) {
          due.push({ group, topic, queueId: Number(queueId), offset, seq: flight.seq });
        }
      }
    }
    return due;
  }

  /** Client ids holding auto-renewed deliveries (to release those of clients that went away). */
  autoRenewClients(): Set<string> {
    const clients = new Set<string>();
    for (const pop of this.popQueues.values()) {
      for (const flight of pop.inFlight.values()) if (flight.autoRenew && flight.deadlineMs > this.clockMs) clients.add(flight.clientId);
    }
    return clients;
  }

  // ---- apply -------------------------------------------------------------------------

  /**
   * Stores a batch of messages; `logIndex` is the entry's index, `timeMs` its (monotone) time.
   * A message due after `timeMs` goes into the timer store (refused if due more than the
   * store's maximum delay after it); one due by then is stored at once.
   */
  applyMessages(logIndex: number, timeMs: number, messages: readonly IndexedRouting[], half = false): SendOutcome[] {
    this.dedup.expire(timeMs);
    return messages.map((message, position) => {
      const outcome = this.applyMessage(logIndex, timeMs, message, position, half);
      if (outcome.code === 'ok' && !outcome.duplicate) this.indexMessage(logIndex, timeMs, message, position);
      return outcome;
    });
  }

  /** A stored (or pending, or half) message under its id and each of its keys. */
  private indexMessage(logIndex: number, timeMs: number, message: IndexedRouting, position: number): void {
    if (position > indexPositionMax || !this.indexable(logIndex, timeMs)) return; // no entry the broker proposes has that many messages
    this.index.add(messageIdKey(message.messageId), IndexKind.MessageId, logIndex, position, timeMs);
    const keys = message.keys;
    if (keys === undefined || keys.length === 0) return;
    const createdAt = (this.topics.get(message.topic) as TopicState).createdAt;
    keys.forEach((k, i) => {
      if (k !== '' && keys.indexOf(k) === i) this.index.add(topicKey(createdAt, k), IndexKind.Key, logIndex, position, timeMs);
    });
  }

  /** A trace event of the message stored at (at, position), made by entry `logIndex`. */
  private traceEvent(kind: IndexKind, at: number, position: number, logIndex: number, timeMs: number, attempt: number, queueId: number): void {
    if (!this.indexable(logIndex, timeMs)) return;
    this.index.add(messageLocationKey(at, position), kind, logIndex, eventPosition(attempt, queueId), timeMs);
  }

  /**
   * Whether an entry at (logIndex, timeMs) may be added: never below the last one. Applied
   * entries always may (the log only goes up, and apply's clock is monotone); a caller that
   * applies an older history again to a restored state (tests do) gets no index entries for it.
   */
  private indexable(logIndex: number, timeMs: number): boolean {
    return logIndex >= this.index.lastAddedLogIndex && timeMs >= this.index.lastAddedTimeMs;
  }

  /** A trace event of the message a delivery's handle names (its queue holds it: in-flight offsets are never released). */
  private traceAt(kind: IndexKind, ref: HandleRef, logIndex: number, timeMs: number, attempt: number): void {
    const queue = this.queue(ref.topic, ref.queueId) as ConsumeQueue;
    this.traceEvent(kind, queue.logIndexAt(ref.offset), queue.positionAt(ref.offset), logIndex, timeMs, attempt, ref.queueId);
  }

  private applyMessage(logIndex: number, timeMs: number, message: IndexedRouting, position: number, half: boolean): SendOutcome {
    const topic = this.topics.get(message.topic);
    if (topic === undefined) return { code: 'topic-not-found', queueId: -1, offset: -1, duplicate: false };
    if ((topic.config.perm & permWrite) === 0) return { code: 'not-writable', queueId: -1, offset: -1, duplicate: false };
    if (half) return this.openTransaction(logIndex, timeMs, position, message, topic);
    const dueMs = message.deliveryTimeMs ?? 0;
    const delayed = dueMs > timeMs;
    if (delayed && !(Number.isSafeInteger(dueMs) && dueMs <= Math.floor(timeMs) + this.timers.limits.maxDelayMs)) {
      return { code: 'illegal-delivery-time', queueId: -1, offset: -1, duplicate: false };
    }
    const previous = this.dedup.find(message.topic, message.messageId);
    if (previous !== undefined && previous.queueId >= delayedDedupFlag) {
      // A delayed send, sent again: the same send entry, if it was made since the topic was (re)created.
      if (previous.offset >= topic.createdAt) {
        const packed = previous.queueId - delayedDedupFlag;
        return {
          code: 'ok', queueId: packed >>> delayedDedupPositionBits, offset: -1, duplicate: true,
          delayed: { logIndex: previous.offset, position: packed & delayedDedupPositionMask, dueMs },
        };
      }
    } else if (previous !== undefined && topic.queues[previous.queueId] !== undefined) {
      // A topic deleted and created again with fewer queues: its old ids are no duplicates.
      return { code: 'ok', queueId: previous.queueId, offset: previous.offset, duplicate: true };
    }
    const queueId = chooseQueue(topic, message);
    if (queueId >= topic.queues.length) return { code: 'bad-queue', queueId, offset: -1, duplicate: false };
    if (delayed) {
      const record: TimerRecord = { dueMs, logIndex, position, topicCreatedAt: topic.createdAt, queueId, tagId: this.tagId(message.tag), storeTimeMs: timeMs };
      this.timers.add(record, Math.floor(timeMs));
      const packed = delayedDedupFlag + (queueId << delayedDedupPositionBits) + (position & delayedDedupPositionMask);
      if (previous === undefined) this.dedup.add(message.topic, message.messageId, packed, logIndex, timeMs);
      else this.dedup.replace(message.topic, message.messageId, packed, logIndex, timeMs);
      return { code: 'ok', queueId, offset: -1, duplicate: false, delayed: { logIndex, position, dueMs } };
    }
    const offset = (topic.queues[queueId] as ConsumeQueue).append(logIndex, position, this.tagId(message.tag), timeMs);
    if (previous === undefined) this.dedup.add(message.topic, message.messageId, queueId, offset, timeMs);
    else this.dedup.replace(message.topic, message.messageId, queueId, offset, timeMs);
    return { code: 'ok', queueId, offset, duplicate: false };
  }

  /**
   * A half message opens a transaction (whatever the dedup window holds: a commit checks it).
   * Its queue is chosen now, as for any send, so a FIFO message's group keeps its queue.
   */
  private openTransaction(logIndex: number, timeMs: number, position: number, message: MessageRouting, topic: TopicState): SendOutcome {
    const queueId = chooseQueue(topic, message);
    if (queueId >= topic.queues.length) return { code: 'bad-queue', queueId, offset: -1, duplicate: false };
    const opened = this.transactions.add({
      logIndex, position, messageId: message.messageId, topic: topic.config.name, topicCreatedAt: topic.createdAt, queueId, tagId: this.tagId(message.tag),
      storeTimeMs: timeMs, checks: 0, lastCheckMs: 0,
    });
    if (!opened) return { code: 'too-many-transactions', queueId: -1, offset: -1, duplicate: false };
    return { code: 'ok', queueId, offset: -1, duplicate: false, half: { logIndex, position } };
  }

  applyCommand(logIndex: number, timeMs: number, command: BrokerCommand): CommandOutcome {
    switch (command.op) {
      case 'txn.end': return this.endTransaction(logIndex, timeMs, command);
      case 'txn.check': return this.checkTransactions(logIndex, timeMs, command.throughMs, command.policy);
      case 'topic.put': {
        const exists = this.topics.has(command.config.name);
        if (command.mode === 'create' && exists) return { kind: 'error', code: 'topic-exists', message: `topic ${command.config.name} already exists` };
        if (command.mode === 'update' && !exists) return { kind: 'error', code: 'topic-not-found', message: `topic ${command.config.name} does not exist` };
        return this.putTopic(command.config, logIndex);
      }
      case 'topic.delete':
        this.topics.delete(command.name);
        for (const k of [...this.popQueues.keys()]) if (k.split('\u0000')[1] === command.name) this.popQueues.delete(k);
        // Its pending timers stay until they are due, then are dropped (they name the topic by its creation).
        for (const k of [...this.firedRuns.keys()]) if (k.split('\u0000')[0] === command.name) this.firedRuns.delete(k);
        return { kind: 'done' };
      case 'group.put':
        this.groups.set(command.config.name, command.config);
        return { kind: 'done' };
      case 'receive': return this.receive(logIndex, timeMs, command);
      case 'retention': return this.release(command.throughIndex);
      case 'timer.fire': return this.fire(logIndex, timeMs, command.throughMs);
      case 'timer.cancel': {
        const { logIndex: at, position, dueMs } = command;
        if (!Number.isSafeInteger(at) || at < 0 || !Number.isInteger(position) || position < 0 || position > 0xffff_ffff || !Number.isSafeInteger(dueMs) || dueMs < 0) {
          return { kind: 'error', code: 'bad-request', message: `timer cancel of ${at}/${position} due at ${dueMs}` };
        }
        if (this.timers.cancel(at, position, dueMs)) {
          if (position <= indexPositionMax) this.traceEvent(IndexKind.Recalled, at, position, logIndex, timeMs, 0, 0);
          return { kind: 'done' };
        }
        return { kind: 'error', code: 'not-pending', message: 'no pending delayed message for this recall handle: it was delivered or recalled already (or never stored)' };
      }
      case 'barrier': return { kind: 'done' };
      case 'access': {
        // Validated again here: an entry is whatever was proposed, and a refused command changes nothing.
        const valid = validateAccessCommand(command.command);
        const result = valid.ok ? this.accessTable.apply(valid.command) : valid;
        return result.ok ? { kind: 'done' } : { kind: 'error', code: 'access-refused', message: result.reason };
      }
      case 'ack': return this.withFlight(command, (pop, flight) => {
        pop.settle(command.offset);
        this.traceAt(IndexKind.Acked, command, logIndex, timeMs, flight.attempt);
        return { kind: 'done' };
      }, true);
      case 'invisible': return this.withFlight(command, (pop, flight) => {
        flight.deadlineMs = timeMs + this.nackDelay(command.invisibleMs, flight, this.groups.get(command.group) ?? defaultGroupConfig(command.group));
        flight.seq = logIndex;
        // The client set this deadline itself (a push consumer's nack, a simple consumer's
        // extension): leader-side renewal must not push it back, or a nacked message would
        // never come back.
        flight.autoRenew = false;
        void pop;
        this.traceAt(IndexKind.Nacked, command, logIndex, timeMs, flight.attempt);
        return { kind: 'handle', seq: logIndex };
      }, false);
      case 'dlq': return this.withFlight(command, (pop, flight) => {
        this.deadLetter(logIndex, command.group, command.topic, command.queueId, command.offset, timeMs, flight.attempt);
        pop.settle(command.offset);
        return { kind: 'done' };
      }, true);
      case 'renew':
        for (const item of command.items) {
          const flight = this.popQueues.get(key(item.group, item.topic, item.queueId))?.inFlight.get(item.offset);
          if (flight !== undefined && flight.autoRenew && flight.seq === item.seq && flight.deadlineMs > timeMs) flight.deadlineMs = timeMs + command.invisibleMs;
        }
        return { kind: 'done' };
      case 'release':
        for (const pop of this.popQueues.values()) {
          for (const flight of pop.inFlight.values()) {
            if (flight.clientId === command.clientId && flight.autoRenew && flight.deadlineMs > timeMs) flight.deadlineMs = timeMs;
          }
        }
        return { kind: 'done' };
      case 'offset.update': {
        const queue = this.queue(command.topic, command.queueId);
        if (queue === undefined) return { kind: 'error', code: 'topic-not-found', message: `topic ${command.topic} has no queue ${command.queueId}` };
        this.ensureGroup(command.group);
        this.offsetsOf(command.group).set(key(command.topic, command.queueId), Math.min(Math.max(command.offset, queue.minOffset), queue.maxOffset));
        return { kind: 'done' };
      }
      case 'offset.reset': {
        const topic = this.topics.get(command.topic);
        if (topic === undefined) return { kind: 'error', code: 'topic-not-found', message: `topic ${command.topic} does not exist` };
        this.ensureGroup(command.group);
        topic.queues.forEach((queue, queueId) => {
          const offset = queue.offsetAtTime(command.timeMs);
          this.offsetsOf(command.group).set(key(command.topic, queueId), offset);
          this.popQueue(command.group, command.topic, queueId).resetTo(offset);
        });
        return { kind: 'done' };
      }
    }
  }

  // ---- internals -----------------------------------------------------------------------

  private endTransaction(entryIndex: number, timeMs: number, command: Extract<BrokerCommand, { op: 'txn.end' }>): CommandOutcome {
    const { logIndex, position, messageId, commit } = command;
    if (!Number.isSafeInteger(logIndex) || logIndex < 1 || !Number.isInteger(position) || position < 0 || typeof messageId !== 'string' || typeof commit !== 'boolean') {
      return { kind: 'error', code: 'bad-request', message: `transaction end of ${String(logIndex)}/${String(position)}` };
    }
    this.transactions.expire(timeMs);
    const half = this.transactions.get(logIndex, position);
    if (half === undefined) {
      const ended = this.transactions.endedAs(logIndex, position);
      if (ended === undefined || ended.messageId !== messageId) {
        return { kind: 'error', code: 'not-pending', message: `no transaction of message ${messageId} is open here: unknown, or ended too long ago to remember` };
      }
      if ((ended.end === 'commit') === commit) return { kind: 'txn-ended', topic: '', stored: false };
      return { kind: 'error', code: 'already-ended', message: `the transaction of message ${messageId} was already ${endText(ended.end)}; it cannot be ${commit ? 'committed' : 'rolled back'}` };
    }
    if (half.messageId !== messageId || half.topic !== command.topic) {
      return { kind: 'error', code: 'invalid-handle', message: `the transaction id names message ${half.messageId} of topic ${half.topic}, not ${messageId} of ${String(command.topic)}` };
    }
    const topic = this.topics.get(half.topic);
    const queue = topic?.createdAt === half.topicCreatedAt ? topic.queues[half.queueId] : undefined;
    this.transactions.end(half, commit && queue !== undefined ? 'commit' : 'rollback', timeMs);
    if (!commit || queue === undefined) this.traceEvent(IndexKind.RolledBack, half.logIndex, half.position, entryIndex, timeMs, half.checks, half.queueId);
    if (!commit) return { kind: 'txn-ended', topic: half.topic, stored: false };
    if (topic === undefined || queue === undefined) {
      return { kind: 'error', code: 'topic-not-found', message: `topic ${half.topic} was deleted while the transaction of message ${messageId} was open; it is rolled back` };
    }
    const previous = this.dedup.find(half.topic, messageId);
    if (previous !== undefined && previous.queueId < delayedDedupFlag && topic.queues[previous.queueId] !== undefined) return { kind: 'txn-ended', topic: half.topic, stored: false };
    const offset = queue.append(half.logIndex, half.position, half.tagId, timeMs, true);
    this.noteFired(key(half.topic, half.queueId), offset, half.logIndex);
    this.traceEvent(IndexKind.Stored, half.logIndex, half.position, entryIndex, timeMs, 0, half.queueId);
    if (previous === undefined) this.dedup.add(half.topic, messageId, half.queueId, offset, timeMs);
    else this.dedup.replace(half.topic, messageId, half.queueId, offset, timeMs);
    return { kind: 'txn-ended', topic: half.topic, stored: true };
  }

  private checkTransactions(logIndex: number, timeMs: number, throughMs: number, policy: TransactionCheckPolicy): CommandOutcome {
    const problem = typeof policy === 'object' && policy !== null ? checkPolicyProblem(policy) : 'no transaction check policy';
    if (problem !== undefined || typeof throughMs !== 'number' || Number.isNaN(throughMs)) return { kind: 'error', code: 'bad-request', message: problem ?? `transaction check through ${String(throughMs)}` };
    this.transactions.expire(timeMs);
    const checks: TransactionCheck[] = [];
    const expired: TransactionCheck[] = [];
    for (const half of this.transactions.due(Math.min(throughMs, timeMs), policy)) {
      if (half.checks >= policy.checksMax) {
        this.transactions.end(half, 'expired', timeMs);
        this.traceEvent(IndexKind.RolledBack, half.logIndex, half.position, logIndex, timeMs, half.checks, half.queueId);
        expired.push(checkOf(half));
        continue;
      }
      half.checks++;
      half.lastCheckMs = timeMs;
      checks.push(checkOf(half));
    }
    return { kind: 'txn-checked', checks, expired };
  }

  /**
   * Retention: every queue drops its messages stored at or before `throughIndex`; a consumer
   * whose offset was below the new first offset moves up to it (and the skipped messages are
   * counted as expired for `group list`).
   */
  private release(throughIndex: number): CommandOutcome {
    if (!Number.isSafeInteger(throughIndex) || throughIndex < 0) return { kind: 'error', code: 'bad-request', message: `retention through ${throughIndex}` };
    if (throughIndex < this.retainedFromIndex) return { kind: 'done' };
    this.retainedFromIndex = throughIndex + 1;
    for (const [name, topic] of this.topics) {
      topic.queues.forEach((queue, queueId) => {
        const released = queue.releaseThrough(throughIndex);
        if (released === 0) return;
        this.moveConsumersUp(name, queueId, queue.minOffset, released);
        const runsKey = key(name, queueId);
        const runs = this.firedRuns.get(runsKey);
        if (runs === undefined) return;
        const held = runs.filter((run) => run.lastOffset >= queue.minOffset);
        if (held.length === 0) this.firedRuns.delete(runsKey);
        else this.firedRuns.set(runsKey, held);
      });
    }
    // Not above a body still read (a pending or held delayed message's send entry).
    this.index.releaseBelow(this.firstNeededLogIndex);
    return { kind: 'done' };
  }

  /**
   * Moves every pending delayed message due by min(throughMs, the entry's time) — never less
   * than an earlier fire reached — into its queue, in the store's order, stored at `timeMs`.
   */
  private fire(logIndex: number, timeMs: number, throughMs: number): CommandOutcome {
    if (typeof throughMs !== 'number' || Number.isNaN(throughMs)) return { kind: 'error', code: 'bad-request', message: `timer fire through ${String(throughMs)}` };
    const through = Math.max(this.timers.firedThroughMs, Math.floor(Math.min(throughMs, timeMs)));
    if (!Number.isSafeInteger(through) || through < 0) return { kind: 'error', code: 'bad-request', message: `timer fire through ${through}` };
    let byCreation: Map<number, TopicState> | undefined;
    const topics = new Set<string>();
    let delivered = 0;
    let dropped = 0;
    this.timers.fireThrough(through, (record) => {
      byCreation ??= new Map([...this.topics.values()].map((topic) => [topic.createdAt, topic]));
      const topic = byCreation.get(record.topicCreatedAt);
      const queue = topic?.queues[record.queueId];
      if (topic === undefined || queue === undefined) {
        dropped++;
        return;
      }
      const offset = queue.append(record.logIndex, record.position, record.tagId, timeMs, true);
      this.noteFired(key(topic.config.name, record.queueId), offset, record.logIndex);
      this.traceEvent(IndexKind.Stored, record.logIndex, record.position, logIndex, timeMs, 0, record.queueId);
      topics.add(topic.config.name);
      delivered++;
    });
    return { kind: 'fired', delivered, dropped, topics: [...topics].sort(byName) };
  }

  /** A delivered delayed message went to `offset` of a queue: its send entry is pinned while the queue holds it. */
  private noteFired(runsKey: string, offset: number, logIndex: number): void {
    let runs = this.firedRuns.get(runsKey);
    if (runs === undefined) {
      runs = [];
      this.firedRuns.set(runsKey, runs);
    }
    const last = runs[runs.length - 1];
    if (last !== undefined && last.lastOffset === offset - 1) {
      last.lastOffset = offset;
      last.minLogIndex = Math.min(last.minLogIndex, logIndex);
      return;
    }
    runs.push({ firstOffset: offset, lastOffset: offset, minLogIndex: logIndex });
    if (runs.length <= firedRunsMax) return;
    // Merge the two adjacent runs spanning the fewest offsets (the earliest such pair): the
    // least log index of the merged run covers both, so the pin only gets more cautious.
    let best = 0;
    for (let i = 1; i + 1 < runs.length; i++) {
      const span = (runs[i + 1] as FiredRun).lastOffset - (runs[i] as FiredRun).firstOffset;
      if (span < (runs[best + 1] as FiredRun).lastOffset - (runs[best] as FiredRun).firstOffset) best = i;
    }
    const [a, b] = [runs[best] as FiredRun, runs[best + 1] as FiredRun];
    runs.splice(best, 2, { firstOffset: a.firstOffset, lastOffset: b.lastOffset, minLogIndex: Math.min(a.minLogIndex, b.minLogIndex) });
  }

  /**
   * `released` offsets below `minOffset` just went. A group that consumes the topic (a pop
   * position or a committed offset on any of its queues) but has no position on this queue
   * cannot have consumed any of them: all count as expired for it.
   */
  private moveConsumersUp(topic: string, queueId: number, minOffset: number, released: number): void {
    const count = (group: string, skipped: number): void => {
      if (skipped <= 0) return;
      const k = key(group, topic, queueId);
      this.expiredUnconsumed.set(k, (this.expiredUnconsumed.get(k) ?? 0) + skipped);
    };
    const onTopic = new Set<string>();
    const onQueue = new Set<string>();
    for (const [k, pop] of this.popQueues) {
      const [group, popTopic, popQueueId] = k.split('\u0000') as [string, string, string];
      if (popTopic !== topic) continue;
      onTopic.add(group);
      if (Number(popQueueId) !== queueId) continue;
      onQueue.add(group);
      if (pop.ackOffset >= minOffset) continue;
      let unconsumed = 0;
      for (let offset = pop.ackOffset; offset < minOffset; offset++) if (!pop.isSettled(offset)) unconsumed++;
      count(group, unconsumed);
      pop.releaseBelow(minOffset);
    }
    const queueKey = key(topic, queueId);
    const topicPrefix = key(topic, '');
    for (const [group, offsets] of this.offsets) {
      for (const k of offsets.keys()) {
        if (k.startsWith(topicPrefix)) {
          onTopic.add(group);
          break;
        }
      }
      const offset = offsets.get(queueKey);
      if (offset === undefined) continue;
      onQueue.add(group);
      if (offset >= minOffset) continue;
      count(group, minOffset - offset);
      offsets.set(queueKey, minOffset);
    }
    for (const group of onTopic) if (!onQueue.has(group)) count(group, released);
  }

  private putTopic(config: TopicConfig, logIndex: number): CommandOutcome {
    const existing = this.topics.get(config.name);
    const queueCount = Math.max(config.readQueues, config.writeQueues);
    const topic = existing ?? { config, createdAt: logIndex, queues: [], roundRobin: 0 };
    if (existing === undefined) this.topics.set(config.name, topic);
    topic.config = config;
    // Queues are never removed while they may hold messages; more can be added.
    while (topic.queues.length < queueCount) {
      topic.queues.push(ConsumeQueue.create(this.queueRecords, { topic: config.name, topicCreatedAt: topic.createdAt, queueId: topic.queues.length }));
    }
    return { kind: 'done' };
  }

  private ensureGroup(name: string): GroupConfig {
    let group = this.groups.get(name);
    if (group === undefined) {
      group = defaultGroupConfig(name);
      this.groups.set(name, group);
    }
    return group;
  }

  private offsetsOf(group: string): Map<string, number> {
    let offsets = this.offsets.get(group);
    if (offsets === undefined) {
      offsets = new Map();
      this.offsets.set(group, offsets);
    }
    return offsets;
  }

  private popQueue(group: string, topic: string, queueId: number): PopQueue {
    const k = key(group, topic, queueId);
    let pop = this.popQueues.get(k);
    if (pop === undefined) {
      // A new group starts at the first message retention kept.
      const first = this.queue(topic, queueId)?.minOffset ?? 0;
      pop = new PopQueue(first, first);
      this.popQueues.set(k, pop);
    }
    return pop;
  }

  private tagId(tag: string): number {
    let id = this.tagIds.get(tag);
    if (id === undefined) {
      id = this.tagNames.length;
      this.tagNames.push(tag);
      this.tagIds.set(tag, id);
    }
    return id;
  }

  private readQueueIds(state: TopicState, queueId: number): number[] {
    if ((state.config.perm & permRead) === 0) return [];
    const readable = Math.min(state.config.readQueues, state.queues.length);
    if (queueId >= 0) return queueId < readable ? [queueId] : [];
    return Array.from({ length: readable }, (_, i) => i);
  }

  private receive(logIndex: number, timeMs: number, command: Extract<BrokerCommand, { op: 'receive' }>): CommandOutcome {
    const state = this.topics.get(command.topic);
    if (state === undefined) return { kind: 'error', code: 'topic-not-found', message: `topic ${command.topic} does not exist` };
    const group = this.ensureGroup(command.group);
    const filter = filterFromJson(command.tags);
    const ids = this.readQueueIds(state, command.queueId);
    const deliveries: Delivery[] = [];
    let deadLettered = 0;
    // Start where the last receive of this group left off, so queues share the batches.
    const cursorKey = key(command.group, command.topic);
    const start = this.receiveCursor.get(cursorKey) ?? 0;
    for (let n = 0; n < ids.length && deliveries.length < command.batch; n++) {
      const queueId = ids[(start + n) % ids.length] as number;
      const before = deliveries.length;
      deadLettered += this.receiveFromQueue(logIndex, timeMs, group, state, queueId, filter, command, deliveries);
      if (group.fifo && deliveries.length > before) {
        this.receiveCursor.set(cursorKey, start + n + 1);
        break;
      }
      this.receiveCursor.set(cursorKey, start + n + 1);
    }
    return { kind: 'received', deliveries, deadLettered };
  }

  /** Expired deliveries first (oldest offset first), then new messages; returns how many were dead-lettered. */
  private receiveFromQueue(
    logIndex: number, timeMs: number, group: GroupConfig, state: TopicState, queueId: number, filter: TagFilter,
    command: Extract<BrokerCommand, { op: 'receive' }>, out: Delivery[],
  ): number {
    const pop = this.popQueue(group.name, state.config.name, queueId);
    const queue = state.queues[queueId] as ConsumeQueue;
    let deadLettered = 0;
    const expired: number[] = [];
    for (const [offset, flight] of pop.inFlight) {
      if (flight.deadlineMs > timeMs) {
        if (group.fifo) return 0; // an earlier message of this queue is still being consumed
        continue;
      }
      expired.push(offset);
    }
    expired.sort((a, b) => a - b);
    const deliver = (offset: number, attempt: number): void => {
      const deadlineMs = timeMs + command.invisibleMs;
      pop.inFlight.set(offset, { attempt, deadlineMs, seq: logIndex, autoRenew: command.autoRenew, clientId: command.clientId });
      this.traceEvent(IndexKind.Delivered, queue.logIndexAt(offset), queue.positionAt(offset), logIndex, timeMs, attempt, queueId);
      out.push({
        topic: state.config.name, queueId, offset, logIndex: queue.logIndexAt(offset), position: queue.positionAt(offset), storeTimeMs: queue.storeTimeAt(offset),
        attempt, seq: logIndex, deadlineMs,
      });
    };
    for (const offset of expired) {
      if (out.length >= command.batch) return deadLettered;
      const flight = pop.inFlight.get(offset) as InFlight;
      if (flight.attempt >= group.maxDeliveryAttempts) {
        this.deadLetter(logIndex, group.name, state.config.name, queueId, offset, timeMs, flight.attempt);
        pop.settle(offset);
        deadLettered++;
        continue;
      }
      if (!filterMatches(filter, this.tagName(queue.tagIdAt(offset)))) continue;
      deliver(offset, flight.attempt + 1);
    }
    while (out.length < command.batch && pop.next < queue.maxOffset) {
      const offset = pop.next++;
      // A DLQ reference to a message retention released (DLQs are not in log order). A
      // delivered delayed message below retainedFrom is not released: its body is kept
      // (firstNeededLogIndex) until the prefix it sits in goes.
      if (queue.logIndexAt(offset) < this.retainedFromIndex && !queue.isDelayedAt(offset)) {
        pop.settle(offset);
        continue;
      }
      if (!filterMatches(filter, this.tagName(queue.tagIdAt(offset)))) {
        pop.settle(offset); // not for this subscription: consumed by skipping, as RocketMQ does
        continue;
      }
      deliver(offset, 1);
    }
    return deadLettered;
  }

  /** The group's DLQ gets a reference to the same stored message (no copy of the body). */
  private deadLetter(logIndex: number, group: string, topic: string, queueId: number, offset: number, timeMs: number, attempt: number): void {
    const source = this.queue(topic, queueId);
    assert(source !== undefined, 'dead-lettering from a missing queue');
    this.traceEvent(IndexKind.DeadLettered, source.logIndexAt(offset), source.positionAt(offset), logIndex, timeMs, attempt, queueId);
    const dlqName = dlqTopicOf(group);
    if (!this.topics.has(dlqName)) this.putTopic({ name: dlqName, readQueues: 1, writeQueues: 1, perm: permReadWrite, messageType: 'NORMAL' }, logIndex);
    const dlq = this.topics.get(dlqName) as TopicState;
    (dlq.queues[0] as ConsumeQueue).append(source.logIndexAt(offset), source.positionAt(offset), source.tagIdAt(offset), timeMs);
  }

  /**
   * A push consumer's nack (of an auto-renewed delivery) backs off by the group's retry levels:
   * the official Node client asks for ~0-10 ms (it reads the settings' back-off seconds as
   * milliseconds), so a longer request is honoured and a shorter one gets the level. A simple
   * consumer sets its own invisible time, which is taken as it is.
   */
  private nackDelay(requestedMs: number, flight: InFlight, group: GroupConfig): number {
    if (!flight.autoRenew) return Math.max(0, requestedMs);
    return Math.max(requestedMs, retryBackoffMs(group, flight.attempt));
  }

  private withFlight(ref: HandleRef, act: (pop: PopQueue, flight: InFlight) => CommandOutcome, settledIsDone: boolean): CommandOutcome {
    const pop = this.popQueues.get(key(ref.group, ref.topic, ref.queueId));
    if (pop !== undefined && settledIsDone && pop.isSettled(ref.offset)) return { kind: 'done' };
    const flight = pop?.inFlight.get(ref.offset);
    if (pop === undefined || flight === undefined || flight.seq !== ref.seq) {
      return { kind: 'error', code: 'invalid-handle', message: 'the receipt handle is stale: the message was acknowledged, redelivered or its handle replaced' };
    }
    return act(pop, flight);
  }
}
