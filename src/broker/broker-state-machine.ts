/**
 * The Raft StateMachine of a broker node: decodes committed entries, applies them to
 * BrokerState and returns each entry's result, which is what the proposer's promise resolves
 * with (one completion path: RaftNode.propose). Wakes long polls after every batch.
 *
 * The whole state is in a snapshot (BrokerState.snapshot), so start-up restores the newest
 * snapshot and replays only the log after it. With queue, dedup and timer files
 * (`queueRecords`, `dedupRecords`, `timers`), a snapshot records how far each queue's files,
 * the dedup ring and the timer log reach, synced before it is taken; one sent to another node
 * carries the records (snapshotWithRecords).
 *
 * Transaction check-backs are applied on every node alike, and every node tells its
 * `onTransactionChecks` listeners: the node holding a producer's Telemetry stream asks it.
 *
 * The message index (query and trace) is built by apply from each batch's ids and keys (the
 * keys read here, see readMessageKeys); its files (`messageIndexes`) are synced before each
 * snapshot like the others. A MessageIndexError (an index file that could not be written)
 * stops the node like a queue, dedup or timer file error.
 */
import { InvariantViolation } from '../util/assert.js';
import { EntryKind, type Entry } from '../raft/types.js';
import type { SnapshotMeta, StateMachine } from '../raft/node/ports.js';
import {
  BrokerState, defaultBrokerStateLimits, type BrokerCommand, type BrokerStateLimits, type CommandOutcome, type SendOutcome, type TransactionCheck,
} from './core/broker-state.js';
import { memoryQueueRecordStore, QueueRecordsError, type QueueRecordStore } from './core/consume-queue.js';
import { DedupRecordsError, memoryDedupRecordStore, type DedupRecordStore } from './core/dedup-window.js';
import { snapshotHasRecords } from './core/state-snapshot.js';
import { MemoryTimerStore, TimerRecordsError, type TimerStore } from './core/timer-store.js';
import { MessageIndexError, disabledMessageIndexStore, type MessageIndexStore } from './core/message-index.js';
import { PayloadKind, isMessagesKind, payloadHeaderBytes, readCommand, readHeader, readRouting } from './core/entry-codec.js';

export type ApplyResult =
  | { readonly kind: 'messages'; readonly outcomes: readonly SendOutcome[] }
  | { readonly kind: 'command'; readonly outcome: CommandOutcome }
  | { readonly kind: 'malformed'; readonly message: string }
  /** Raft's own entries (no-op, configuration) and payloads that are not the broker's. */
  | { readonly kind: 'none' };

const none: ApplyResult = { kind: 'none' };

/** One applied check-back round: the transactions to ask about, and those rolled back after their last check. */
export interface TransactionCheckRound {
  readonly checks: readonly TransactionCheck[];
  readonly expired: readonly TransactionCheck[];
}

export class BrokerStateMachine implements StateMachine<ApplyResult> {
  private stateValue: BrokerState;
  private lastApplied = 0;
  private lastAppliedTermValue = 0;
  private readonly listeners = new Set<(topics: ReadonlySet<string>) => void>();
  private readonly checkListeners = new Set<(round: TransactionCheckRound, entryTimeMs: number) => void>();

  constructor(
    private readonly limits: BrokerStateLimits = defaultBrokerStateLimits,
    private readonly queueRecords: QueueRecordStore = memoryQueueRecordStore,
    private readonly dedupRecords: DedupRecordStore = memoryDedupRecordStore,
    /** The pending delayed messages (the state owns its contents: a restore replaces them). */
    private readonly timers: TimerStore = new MemoryTimerStore(),
    /**
     * Where the message index lives (the state owns its contents: a restore replaces them):
     * files on a broker node, memory in tests. None by default (the broker simulator's
     * machines: their snapshots, install timings and seeded scenarios stay as they were).
     */
    private readonly messageIndexes: MessageIndexStore = disabledMessageIndexStore,
  ) {
    this.stateValue = new BrokerState(limits, queueRecords, dedupRecords, timers, messageIndexes);
  }

  get state(): BrokerState {
    return this.stateValue;
  }

  get lastAppliedIndex(): number {
    return this.lastApplied;
  }

  /** The term of the last applied entry: equal to the leader's term once its no-op is applied. */
  get lastAppliedTerm(): number {
    return this.lastAppliedTermValue;
  }

  /** Called after every applied batch (and restore) with the topics that received messages ('*': anything). */
  onApplied(listener: (topics: ReadonlySet<string>) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Called for every applied check-back round that asks about a transaction or rolls one back,
   * with the entry's time (a node replaying old entries at start-up sees old times).
   */
  onTransactionChecks(listener: (round: TransactionCheckRound, entryTimeMs: number) => void): () => void {
    this.checkListeners.add(listener);
    return () => this.checkListeners.delete(listener);
  }

  apply(entries: readonly Entry[]): ApplyResult[] {
    const touched = new Set<string>();
    const results = entries.map((entry) => {
      this.lastApplied = entry.index;
      this.lastAppliedTermValue = entry.term;
      return entry.kind === EntryKind.normal ? this.applyEntry(entry, touched) : none;
    });
    for (const listener of this.listeners) listener(touched);
    return results;
  }

  /** Message bodies are read from the log: every entry is needed until retention releases it (and no pending or held delayed message needs it). */
  firstNeededIndex(): number {
    return this.stateValue.firstNeededLogIndex;
  }

  snapshot(): Uint8Array {
    return this.stateValue.snapshot();
  }

  /**
   * A snapshot of this node (`data`, taken at an index at or before the applied one) as a
   * node without this node's queue, dedup and timer files can restore it: with the records.
   * Reads the records the snapshot counts, which later applies never change (they append
   * after them, and files are deleted only below the previous snapshot, see
   * QueueRecordStore.sync, DedupRecordStore.sync and TimerStore.sync). The dedup table is not
   * built for this (only the records are copied).
   */
  snapshotWithRecords(data: Uint8Array): Uint8Array {
    if (snapshotHasRecords(data)) return data;
    return BrokerState.restore(data, this.limits, this.queueRecords.reader(), this.dedupRecords.reader(), this.timers.reader(), this.messageIndexes.reader()).snapshot({ withRecords: true });
  }

  restore(data: Uint8Array, meta: SnapshotMeta): void {
    this.stateValue = BrokerState.restore(data, this.limits, this.queueRecords, this.dedupRecords, this.timers, this.messageIndexes);
    this.lastApplied = meta.index;
    this.lastAppliedTermValue = meta.term;
    const everything = new Set(['*']);
    for (const listener of this.listeners) listener(everything);
  }

  private applyEntry(entry: Entry, touched: Set<string>): ApplyResult {
    let header;
    try {
      header = readHeader(entry.payload);
    } catch (error) {
      // Not a broker entry (for example written through the raw Raft admin API): skip it on
      // every node alike.
      void error;
      return none;
    }
    const timeMs = this.stateValue.advanceClock(header.timeMs);
    try {
      if (isMessagesKind(header.kind)) {
        const routing = readRouting(entry.payload);
        const keys = readMessageKeys(entry.payload);
        const messages = routing.map((message, i) => {
          touched.add(message.topic);
          const ofMessage = keys[i] as readonly string[];
          return ofMessage.length === 0 ? message : { ...message, keys: ofMessage };
        });
        return { kind: 'messages', outcomes: this.stateValue.applyMessages(entry.index, timeMs, messages, header.kind === PayloadKind.HalfMessages) };
      }
      if (header.kind === PayloadKind.Command) {
        const command = readCommand(entry.payload) as BrokerCommand;
        if (command.op === 'invisible' || command.op === 'release' || command.op === 'offset.reset' || command.op === 'topic.put' || command.op === 'retention') touched.add('*');
        const outcome = this.stateValue.applyCommand(entry.index, timeMs, command);
        if (outcome.kind === 'fired') for (const topic of outcome.topics) touched.add(topic);
        if (outcome.kind === 'txn-ended' && outcome.stored) touched.add(outcome.topic);
        if (outcome.kind === 'txn-checked' && outcome.checks.length + outcome.expired.length > 0) for (const listener of this.checkListeners) listener(outcome, timeMs);
        return { kind: 'command', outcome };
      }
      return { kind: 'malformed', message: `unknown broker payload kind ${String(header.kind)}` };
    } catch (error) {
      // A bug, not bad input, or a queue, dedup or timer file that could not be written or read:
      // the node must stop rather than continue in a state the other nodes do not have.
      if (error instanceof InvariantViolation || error instanceof QueueRecordsError || error instanceof DedupRecordsError || error instanceof TimerRecordsError || error instanceof MessageIndexError) throw error;
      return { kind: 'malformed', message: `entry ${entry.index} could not be applied: ${(error as Error).message}` };
    }
  }
}

const noKeys: readonly string[] = [];

/**
 * The keys of every message of a batch, in order, without touching properties or bodies (the
 * message index's input; readRouting leaves them out). Reads the record layout of
 * core/entry-codec.ts: u32 record length | u32 body length | 4 short strings (topic, id, tag,
 * message group) | i32 queue id | [TimedMessages: f64] | f64 born time | short born host |
 * u16 n, n × short key | …; a record too short for its keys throws (the entry is malformed).
 */
export function readMessageKeys(payload: Uint8Array): (readonly string[])[] {
  const buffer = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  const timed = buffer.readUInt8(0) === PayloadKind.TimedMessages;
  let at = payloadHeaderBytes;
  const count = buffer.readUInt32BE(at);
  at += 4;
  const out: (readonly string[])[] = [];
  const skipShort = (): void => { at += 2 + buffer.readUInt16BE(at); };
  for (let i = 0; i < count; i++) {
    const end = at + 4 + buffer.readUInt32BE(at);
    at += 8; // record length, body length
    for (let field = 0; field < 4; field++) skipShort();
    at += 4 + (timed ? 8 : 0) + 8; // queue id, delivery time, born time
    skipShort(); // born host
    const n = buffer.readUInt16BE(at);
    at += 2;
    if (n === 0) {
      out.push(noKeys);
    } else {
      const keys: string[] = [];
      for (let k = 0; k < n; k++) {
        const length = buffer.readUInt16BE(at);
        if (at + 2 + length > end) throw new RangeError(`message ${i}'s keys run past its record`);
        keys.push(buffer.toString('utf8', at + 2, at + 2 + length));
        at += 2 + length;
      }
      out.push(keys);
    }
    if (at > end) throw new RangeError(`message ${i}'s record is shorter than its fields`);
    at = end;
  }
  return out;
}
