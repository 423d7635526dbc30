/**
 * Transactional messages (SPEC F9): the half messages of open transactions, and the
 * transactions ended lately, as part of the replicated broker state.
 *
 * A transactional send stores its message in the log as a half message (entry kind
 * HalfMessages) and opens a transaction here: the message is in no queue, so no consumer sees
 * it. EndTransaction COMMIT puts it into the queue chosen when it was sent (BrokerState does
 * that); ROLLBACK forgets it. A transaction left open is checked back: the leader proposes
 * `txn.check` with its check policy, and applying it marks every transaction due (first
 * `checkAfterMs` after it was stored, then every `checkIntervalMs`) as checked once more — each
 * node that holds a Telemetry stream of a producer of that topic then asks it for the outcome
 * — or, after `checksMax` checks, rolls it back. The policy rides in the command, not in each
 * node's configuration, so every node applies the same thing.
 *
 * An ended transaction is remembered for `endedKeepMs` (and at most `endedMax` of them), so an
 * EndTransaction repeated after a lost answer gets the same answer, and one that contradicts
 * the outcome (a COMMIT after a rollback) a clear error.
 *
 * Memory: open transactions are kept in memory (~200 bytes each), bounded by `openMax`; a send
 * beyond it is refused. Transactions are short-lived (a check-back resolves or rolls back an
 * abandoned one within checkAfterMs + checksMax · checkIntervalMs), unlike delayed messages,
 * which may wait for days and live in the timer store's files.
 *
 * A transaction is named by where its half message is stored: (log index, position in the
 * entry's batch), unique for the life of the log. Pure: no I/O, time or randomness.
 */
import { assert } from '../../util/assert.js';
import { SnapshotFormatError, type SnapshotReader, type SnapshotWriter } from './state-snapshot.js';

export interface HalfMessage {
  readonly logIndex: number;
  readonly position: number;
  readonly messageId: string;
  readonly topic: string;
  /** The topic's creation (its log index): a half of a topic deleted and created again is not the new topic's. */
  readonly topicCreatedAt: number;
  readonly queueId: number;
  readonly tagId: number;
  readonly storeTimeMs: number;
  /** Check-backs so far. */
  checks: number;
  /** Time of the last check-back (0: none yet). */
  lastCheckMs: number;
}

/** How a transaction ended: by its producer, or rolled back after its last unanswered check. */
export type TransactionEnd = 'commit' | 'rollback' | 'expired';

export interface EndedTransaction {
  readonly logIndex: number;
  readonly position: number;
  readonly messageId: string;
  readonly end: TransactionEnd;
  readonly endedMs: number;
}

export interface TransactionCheckPolicy {
  /** The first check-back, this long after the half message was stored. */
  readonly checkAfterMs: number;
  /** Later check-backs, this long after the previous one. */
  readonly checkIntervalMs: number;
  /** After this many unanswered check-backs the transaction is rolled back. */
  readonly checksMax: number;
}

export interface TransactionLimits {
  readonly openMax: number;
  readonly endedKeepMs: number;
  readonly endedMax: number;
}

export const defaultTransactionLimits: TransactionLimits = { openMax: 100_000, endedKeepMs: 10 * 60_000, endedMax: 100_000 };

/** RocketMQ's defaults: first check after 6 s, then every 6 s here (RocketMQ's default interval is 30 s of its check service; one check per period), 15 checks. */
export const defaultTransactionCheckPolicy: TransactionCheckPolicy = { checkAfterMs: 6_000, checkIntervalMs: 6_000, checksMax: 15 };

/** A policy's problem for a human, or undefined when it is usable. */
export function checkPolicyProblem(policy: TransactionCheckPolicy): string | undefined {
  const { checkAfterMs, checkIntervalMs, checksMax } = policy;
  if (!Number.isSafeInteger(checkAfterMs) || checkAfterMs < 0) return `transaction check-after ${checkAfterMs} ms is not a non-negative whole number`;
  if (!Number.isSafeInteger(checkIntervalMs) || checkIntervalMs < 1) return `transaction check interval ${checkIntervalMs} ms is not a positive whole number`;
  if (!Number.isSafeInteger(checksMax) || checksMax < 0 || checksMax > 1_000) return `transaction checks ${checksMax} is not a whole number from 0 to 1000`;
  return undefined;
}

const keyOf = (logIndex: number, position: number): string => `${logIndex}/${position}`;

export class TransactionTable {
  /** Insertion order is log order (halves are added as entries apply): the first is the oldest. */
  private readonly open = new Map<string, HalfMessage>();
  /** Insertion order is end order (entry times are monotone): expiry stops at the first young one. */
  private readonly ended = new Map<string, EndedTransaction>();

  constructor(readonly limits: TransactionLimits = defaultTransactionLimits) {}

  get openCount(): number {
    return this.open.size;
  }

  /** The least log index of an open transaction's half message (undefined: none). */
  firstOpenLogIndex(): number | undefined {
    for (const half of this.open.values()) return half.logIndex;
    return undefined;
  }

  /** False when `openMax` transactions are open already (the send is refused). */
  add(half: HalfMessage): boolean {
    const k = keyOf(half.logIndex, half.position);
    assert(!this.open.has(k) && !this.ended.has(k), `transaction ${k} opened twice`);
    const last = this.lastOpen();
    assert(last === undefined || last.logIndex <= half.logIndex, 'transactions open in log order');
    if (this.open.size >= this.limits.openMax) return false;
    this.open.set(k, half);
    return true;
  }

  get(logIndex: number, position: number): HalfMessage | undefined {
    return this.open.get(keyOf(logIndex, position));
  }

  endedAs(logIndex: number, position: number): EndedTransaction | undefined {
    return this.ended.get(keyOf(logIndex, position));
  }

  /** Closes an open transaction and remembers how it ended. */
  end(half: HalfMessage, end: TransactionEnd, timeMs: number): void {
    const k = keyOf(half.logIndex, half.position);
    assert(this.open.get(k) === half, `transaction ${k} is not open`);
    this.open.delete(k);
    this.ended.set(k, { logIndex: half.logIndex, position: half.position, messageId: half.messageId, end, endedMs: timeMs });
    this.expire(timeMs);
  }

  /** Forgets ended transactions older than endedKeepMs, and the oldest beyond endedMax. */
  expire(nowMs: number): void {
    for (const [k, ended] of this.ended) {
      if (this.ended.size <= this.limits.endedMax && ended.endedMs > nowMs - this.limits.endedKeepMs) break;
      this.ended.delete(k);
    }
  }

  /** When an open transaction is next checked (by `policy`). */
  static dueMs(half: HalfMessage, policy: TransactionCheckPolicy): number {
    return half.checks === 0 ? half.storeTimeMs + policy.checkAfterMs : half.lastCheckMs + policy.checkIntervalMs;
  }

  /** Whether any open transaction is due for a check by `throughMs`. */
  anyDue(throughMs: number, policy: TransactionCheckPolicy): boolean {
    for (const half of this.open.values()) if (TransactionTable.dueMs(half, policy) <= throughMs) return true;
    return false;
  }

  /** The open transactions due by `throughMs`, in log order (a copy: the caller may end them). */
  due(throughMs: number, policy: TransactionCheckPolicy): HalfMessage[] {
    return [...this.open.values()].filter((half) => TransactionTable.dueMs(half, policy) <= throughMs);
  }

  /** Open transactions, oldest first (for listings). */
  openList(): readonly HalfMessage[] {
    return [...this.open.values()];
  }

  private lastOpen(): HalfMessage | undefined {
    let last: HalfMessage | undefined;
    for (const half of this.open.values()) last = half;
    return last;
  }

  /** Snapshot section: u32 n open × { f64 logIndex, u32 position, str messageId, str topic, f64 topicCreatedAt, u32 queueId, u32 tagId, f64 storeTimeMs, u32 checks, f64 lastCheckMs }, u32 m ended × { f64 logIndex, u32 position, str messageId, u8 end, f64 endedMs }, both in map order. */
  encodeInto(w: SnapshotWriter): void {
    w.u32(this.open.size);
    for (const half of this.open.values()) {
      w.f64(half.logIndex);
      w.u32(half.position);
      w.string(half.messageId);
      w.string(half.topic);
      w.f64(half.topicCreatedAt);
      w.u32(half.queueId);
      w.u32(half.tagId);
      w.f64(half.storeTimeMs);
      w.u32(half.checks);
      w.f64(half.lastCheckMs);
    }
    w.u32(this.ended.size);
    for (const ended of this.ended.values()) {
      w.f64(ended.logIndex);
      w.u32(ended.position);
      w.string(ended.messageId);
      w.u8(endCodes.indexOf(ended.end));
      w.f64(ended.endedMs);
    }
  }

  static decode(r: SnapshotReader, limits: TransactionLimits): TransactionTable {
    const table = new TransactionTable(limits);
    let previous = -Infinity;
    for (let n = r.u32(); n > 0; n--) {
      const logIndex = r.f64();
      const position = r.u32();
      const messageId = r.string();
      const topic = r.string();
      const topicCreatedAt = r.f64();
      const queueId = r.u32();
      const tagId = r.u32();
      const storeTimeMs = r.f64();
      const checks = r.u32();
      const lastCheckMs = r.f64();
      if (!Number.isSafeInteger(logIndex) || logIndex < 1 || logIndex < previous) throw new SnapshotFormatError(`broker snapshot has an open transaction at log index ${logIndex} after ${previous}`);
      previous = logIndex;
      const k = keyOf(logIndex, position);
      if (table.open.has(k)) throw new SnapshotFormatError(`broker snapshot opens transaction ${k} twice`);
      table.open.set(k, { logIndex, position, messageId, topic, topicCreatedAt, queueId, tagId, storeTimeMs, checks, lastCheckMs });
    }
    for (let n = r.u32(); n > 0; n--) {
      const logIndex = r.f64();
      const position = r.u32();
      const messageId = r.string();
      const code = r.u8();
      const endedMs = r.f64();
      const end = endCodes[code];
      if (end === undefined) throw new SnapshotFormatError(`broker snapshot has transaction end code ${code}`);
      const k = keyOf(logIndex, position);
      if (table.ended.has(k) || table.open.has(k)) throw new SnapshotFormatError(`broker snapshot ends transaction ${k} twice`);
      table.ended.set(k, { logIndex, position, messageId, end, endedMs });
    }
    return table;
  }
}

/** Snapshot codes of TransactionEnd: append only. */
const endCodes: readonly TransactionEnd[] = ['commit', 'rollback', 'expired'];
