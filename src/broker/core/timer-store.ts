/**
 * Pending delayed and scheduled messages (SPEC F8), like RocketMQ's timer store: a wheel of
 * time slots whose records are linked lists running back through an append-only timer log.
 *
 * A delayed send is stored in the Raft log like any message; at apply, instead of entering its
 * topic's consume queue, it is `add`ed here. The leader proposes "fire through T" commands;
 * applying one calls `fireThrough(T, visit)`, and `visit` appends each due message to its
 * destination queue. Every replica applies the same commands in the same order, so what this
 * store visits depends only on the calls made: the pending set, ordered by (dueMs, logIndex,
 * position), and how far it has fired.
 *
 * ## How it is laid out
 *
 * Time is cut into slots of `precisionMs` (slot s covers [s·P, (s+1)·P)). Records live behind
 * the TimerLog port: append-only, numbered by a sequence number (seq) from 0, in typed arrays
 * (MemoryTimerLog, below) or in files (src/server/timer-files.ts). Each record carries the seq
 * of the previous record of its chain and the chain it belongs to (its home), so a slot is
 * just (newest seq, oldest seq, counts, minima) — nothing in the log is ever changed in place,
 * and an earlier snapshot's view of the log stays valid while the log grows.
 *
 *  - The wheel: `wheelSlots` buckets (a power of two), bucket = slot mod wheelSlots. It holds
 *    the slots [cursor, fineLimit) where `cursor` is the slot being fired (the one holding
 *    firedThroughMs) and fineLimit = (⌊cursor / G⌋ + wheelSlots / G)·G, so never more slots
 *    than buckets. A record due before the cursor (due already past when added) goes to the
 *    cursor's bucket: the next fire visits it.
 *  - Cascade buckets, for records due at or after fineLimit (beyond the wheel's span: up to
 *    maxDelayMs ahead, or further when fires lag, e.g. after the cluster was down): one chain
 *    per G = `cascadeSlots` slots, in a small map. When the cursor moves and fineLimit passes a
 *    cascade bucket, its pending records are appended again, into their wheel slots. (RocketMQ
 *    "rolls" a far record into the last slot of its window and re-puts it when that slot comes
 *    up; here the hand-over happens at a fixed boundary, so a record's place is a function of
 *    its due time and the cursor, which is what lets `cancel` find it.) Each record is copied
 *    at most once.
 *  - Per bucket, in typed arrays: newest seq, oldest seq, records in the chain, pending records
 *    and the least due time and log index of those — 40 bytes a bucket; per block of 256
 *    buckets their sums and minima, so nextDueMs and minPendingLogIndex read one number a
 *    block and firing skips empty blocks.
 *
 * Firing slot s reads its whole chain, keeps the records due by T, sorts them by (dueMs,
 * logIndex, position) and visits them; slots go in increasing order, so the visits are in
 * order overall. A fire that ends inside a slot (fires come every ~100 ms, slots are 1 s)
 * leaves the slot in place; which of its records were visited is not written anywhere: a
 * record was visited exactly when `seq < fireLogEnd && dueMs <= firedThroughMs` (it was in the
 * log at the last fire, and that fire, the latest and furthest, covered it). A slot fully
 * passed is dropped from the wheel; its records become garbage in the log.
 *
 * Cancellations (recalls) are rare: the cancelled (logIndex, position) pairs are kept in a map
 * until the record would have fired, and in the snapshot; the record itself is untouched.
 *
 * ## Snapshot encoding (a section of the broker snapshot; little-endian)
 *
 * With records (`withRecords`, an InstallSnapshot to a node without these files, and the
 * digest): canonical, so equal pending sets give equal bytes whatever the history or the
 * implementation:
 *
 *   f64 firedThroughMs (-Infinity before the first fire) | u32 n |
 *   n pending, uncancelled records sorted by (dueMs, logIndex, position), as bulk columns:
 *   n × f64 dueMs, n × f64 logIndex, n × u32 position, n × f64 topicCreatedAt,
 *   n × u32 queueId, n × i32 tagId, n × f64 storeTimeMs
 *
 * Positions only (a file store's own snapshot, after `sync`): what reopens the durable log:
 *
 *   f64 firedThroughMs | u32 wheelSlots | u32 cascadeSlots | f64 precisionMs |
 *   f64 cursor (-1: none yet) | f64 logEnd | f64 fireLogEnd |
 *   u32 m, m × { u32 bucket, f64 newest, f64 oldest, u32 chain, u32 pending, f64 minDueMs, f64 minLogIndex } |
 *   u32 c, c × { f64 cascade index, same fields } (ascending) |
 *   u32 k, k × { f64 logIndex, u32 position, f64 dueMs } (cancelled, sorted)
 *
 * ## Log record layout (the file store's records; the memory log keeps the same fields in columns)
 *
 *   0 f64 dueMs | 8 f64 logIndex | 16 f64 topicCreatedAt | 24 f64 storeTimeMs |
 *   32 f64 previous seq in the chain (-1: the chain's oldest) | 40 f64 home (slot s >= 0, or
 *   -(k + 1) for cascade bucket k) | 48 u32 position | 52 u32 queueId | 56 i32 tagId |
 *   60 u32 CRC-32 of bytes [0, 60) — 64 bytes, so a 4 KiB page holds 64 records.
 *
 * Pure: no I/O, no time, no randomness; the state depends only on the calls made.
 */
import { assert } from '../../util/assert.js';
import type { SnapshotReader, SnapshotWriter } from './state-snapshot.js';

/** One pending delivery. */
export interface TimerRecord {
  /** Delivery time, ms since the epoch. */
  readonly dueMs: number;
  /** The send entry holding the message body. */
  readonly logIndex: number;
  /** The message's index within that entry's batch (u32). */
  readonly position: number;
  /** Names the destination topic: the log index of the entry that created it. */
  readonly topicCreatedAt: number;
  /** Destination queue (u32). */
  readonly queueId: number;
  /** i32, as the consume queue stores it. */
  readonly tagId: number;
  readonly storeTimeMs: number;
}

export interface TimerStoreLimits {
  /** A record may be due at most this long after the entry that adds it (the broker refuses longer delays before proposing). */
  readonly maxDelayMs: number;
  /** The width of a slot: records due within one slot are read together. */
  readonly precisionMs: number;
}

/** RocketMQ's: 3 days, 1 s slots. */
export const timerStoreLimitsDefault: TimerStoreLimits = { maxDelayMs: 3 * 24 * 3600 * 1000, precisionMs: 1000 };

export interface TimerStore {
  /** True when records survive a restart (files): the node's own snapshots then hold positions only. */
  readonly recordsDurable: boolean;
  readonly limits: TimerStoreLimits;
  /** Pending, uncancelled records. */
  readonly pendingCount: number;
  /** How far fires have gone (-Infinity before the first): the next fireThrough may not go below it. */
  readonly firedThroughMs: number;
  /**
   * `nowMs` is the applying entry's time; asserts dueMs <= nowMs + maxDelayMs. A dueMs
   * already past is fine: it fires at the next fireThrough. Each (logIndex, position) is
   * added once.
   */
  add(record: TimerRecord, nowMs: number): void;
  /** Cancels the pending record (logIndex, position) due at dueMs: true if it was pending, false if unknown, already fired or already cancelled. */
  cancel(logIndex: number, position: number, dueMs: number): boolean;
  /**
   * Visits, then removes, every pending, uncancelled record with dueMs <= throughMs, ordered
   * by (dueMs, logIndex, position). throughMs never goes back (asserted). `visit` must not call
   * back into this store.
   */
  fireThrough(throughMs: number, visit: (record: TimerRecord) => void): void;
  /** Earliest dueMs among pending records, undefined if none. */
  nextDueMs(): number | undefined;
  /** Smallest logIndex of any pending record (retention must not release the log below it), undefined if none. */
  minPendingLogIndex(): number | undefined;
  /**
   * With `withRecords` the pending records are inline (canonical bytes, see the layout);
   * without, only what reopens the durable files, which `sync()` must have made durable just
   * before (asserted).
   */
  encodeInto(writer: SnapshotWriter, withRecords: boolean): void;
  /**
   * Replaces this store's state with what encodeInto wrote. Positions only: the records must
   * be in this store's files (TimerRecordsError naming the file if not), and anything written
   * after the snapshot is dropped, so replaying the log after it writes it again exactly once.
   */
  restore(reader: SnapshotReader, withRecords: boolean): void;
  /** Makes every record written so far durable, just before a positions-only snapshot. */
  sync(): void;
  /** A read-only store over the same records: restores an earlier snapshot (positions only) and encodes it with its records while this store keeps being written. */
  reader(): TimerStore;
}

/** A snapshot's timer records are missing or damaged in their store (the snapshot is fine, the files are not). */
export class TimerRecordsError extends Error {
  override readonly name = 'TimerRecordsError';
}

// ---- the log port and its record layout --------------------------------------------------------

/** One record as read from a log: the fields, its chain link and its home. Reused by every read. */
export interface TimerLogEntry {
  dueMs: number;
  logIndex: number;
  position: number;
  topicCreatedAt: number;
  queueId: number;
  tagId: number;
  storeTimeMs: number;
  /** Seq of the previous (older) record of the same chain; -1 for the chain's oldest. */
  prevSeq: number;
  /** The chain: a wheel slot (>= 0), or -(k + 1) for cascade bucket k. */
  home: number;
}

/**
 * Where records live: appended, read by seq, never changed. Failures are TimerRecordsErrors
 * (which stop the node: a record lost on one node only would make it visit differently).
 */
export interface TimerLog {
  /** The seq the next append gets. */
  readonly end: number;
  append(record: TimerRecord, prevSeq: number, home: number): number;
  /** Reads record `seq` (< end, at or above every live chain's oldest) into `into`. */
  read(seq: number, into: TimerLogEntry): void;
  /** Forgets every record (a snapshot with its records replaces them); seqs keep increasing. */
  restart(): void;
  /** Positions-only restore: records [from, end) must be held; later ones are dropped and `end` becomes the next seq. */
  reopen(from: number, end: number): void;
}

/** Bytes of one record in a file (see the layout above); a 4 KiB page holds 64. */
export const timerRecordBytes = 64;
/** Bytes of a record covered by its CRC-32, which follows them. */
export const timerRecordChecksummedBytes = 60;

/** Writes the record's fields at `at` (not the CRC: the file store adds it). */
export function writeTimerLogRecord(view: DataView, at: number, record: TimerRecord, prevSeq: number, home: number): void {
  view.setFloat64(at, record.dueMs, true);
  view.setFloat64(at + 8, record.logIndex, true);
  view.setFloat64(at + 16, record.topicCreatedAt, true);
  view.setFloat64(at + 24, record.storeTimeMs, true);
  view.setFloat64(at + 32, prevSeq, true);
  view.setFloat64(at + 40, home, true);
  view.setUint32(at + 48, record.position, true);
  view.setUint32(at + 52, record.queueId, true);
  view.setInt32(at + 56, record.tagId, true);
}

export function readTimerLogRecord(view: DataView, at: number, into: TimerLogEntry): void {
  into.dueMs = view.getFloat64(at, true);
  into.logIndex = view.getFloat64(at + 8, true);
  into.topicCreatedAt = view.getFloat64(at + 16, true);
  into.storeTimeMs = view.getFloat64(at + 24, true);
  into.prevSeq = view.getFloat64(at + 32, true);
  into.home = view.getFloat64(at + 40, true);
  into.position = view.getUint32(at + 48, true);
  into.queueId = view.getUint32(at + 52, true);
  into.tagId = view.getInt32(at + 56, true);
}

export const newTimerLogEntry = (): TimerLogEntry => ({
  dueMs: 0, logIndex: 0, position: 0, topicCreatedAt: 0, queueId: 0, tagId: 0, storeTimeMs: 0, prevSeq: -1, home: 0,
});

// ---- record columns (scratch for fires, and snapshots) -----------------------------------------

const columnsInitial = 64;
/** Four f64 and three 32-bit fields: a record in columns, and in a snapshot with records. */
const timerColumnsRecordBytes = 4 * 8 + 3 * 4;

/** Records in typed-array columns, growing by doubling. */
export class TimerColumns {
  dueMs = new Float64Array(columnsInitial);
  logIndex = new Float64Array(columnsInitial);
  position = new Uint32Array(columnsInitial);
  topicCreatedAt = new Float64Array(columnsInitial);
  queueId = new Uint32Array(columnsInitial);
  tagId = new Int32Array(columnsInitial);
  storeTimeMs = new Float64Array(columnsInitial);
  length = 0;

  get capacity(): number {
    return this.dueMs.length;
  }

  /** Bytes held (what the store's accounting counts). */
  get heapBytes(): number {
    return this.capacity * timerColumnsRecordBytes;
  }

  push(record: TimerRecord): void {
    if (this.length === this.capacity) this.resize(this.capacity * 2);
    const i = this.length++;
    this.dueMs[i] = record.dueMs;
    this.logIndex[i] = record.logIndex;
    this.position[i] = record.position;
    this.topicCreatedAt[i] = record.topicCreatedAt;
    this.queueId[i] = record.queueId;
    this.tagId[i] = record.tagId;
    this.storeTimeMs[i] = record.storeTimeMs;
  }

  record(i: number): TimerRecord {
    return {
      dueMs: this.dueMs[i] as number, logIndex: this.logIndex[i] as number, position: this.position[i] as number,
      topicCreatedAt: this.topicCreatedAt[i] as number, queueId: this.queueId[i] as number, tagId: this.tagId[i] as number,
      storeTimeMs: this.storeTimeMs[i] as number,
    };
  }

  /** Indexes of the records in (dueMs, logIndex, position) order. */
  sortedOrder(): Uint32Array {
    const order = new Uint32Array(this.length);
    for (let i = 0; i < order.length; i++) order[i] = i;
    const { dueMs, logIndex, position } = this;
    order.sort((a, b) => (dueMs[a] as number) - (dueMs[b] as number)
      || (logIndex[a] as number) - (logIndex[b] as number)
      || (position[a] as number) - (position[b] as number));
    return order;
  }

  /** Empties the columns, and gives back memory beyond `capacityMax` records. */
  clear(capacityMax = Infinity): void {
    this.length = 0;
    if (this.capacity > capacityMax) this.resize(columnsInitial);
  }

  private resize(capacity: number): void {
    const grow = <C extends Float64Array | Uint32Array | Int32Array>(old: C, fresh: C): C => {
      fresh.set(old.subarray(0, Math.min(this.length, capacity)));
      return fresh;
    };
    this.dueMs = grow(this.dueMs, new Float64Array(capacity));
    this.logIndex = grow(this.logIndex, new Float64Array(capacity));
    this.position = grow(this.position, new Uint32Array(capacity));
    this.topicCreatedAt = grow(this.topicCreatedAt, new Float64Array(capacity));
    this.queueId = grow(this.queueId, new Uint32Array(capacity));
    this.tagId = grow(this.tagId, new Int32Array(capacity));
    this.storeTimeMs = grow(this.storeTimeMs, new Float64Array(capacity));
  }
}

// ---- validation ---------------------------------------------------------------------------------

const u32Max = 0xffff_ffff;
const isU32 = (n: number): boolean => Number.isInteger(n) && n >= 0 && n <= u32Max;
const isI32 = (n: number): boolean => Number.isInteger(n) && n >= -0x8000_0000 && n <= 0x7fff_ffff;
const isTimeMs = (n: number): boolean => Number.isSafeInteger(n) && n >= 0;

function recordProblem(record: TimerRecord): string | undefined {
  if (!isTimeMs(record.dueMs)) return `due at ${record.dueMs}`;
  if (!Number.isSafeInteger(record.logIndex) || record.logIndex < 0) return `log index ${record.logIndex}`;
  if (!isU32(record.position)) return `position ${record.position}`;
  if (!Number.isSafeInteger(record.topicCreatedAt) || record.topicCreatedAt < 0) return `topic created at ${record.topicCreatedAt}`;
  if (!isU32(record.queueId)) return `queue id ${record.queueId}`;
  if (!isI32(record.tagId)) return `tag id ${record.tagId}`;
  if (!Number.isFinite(record.storeTimeMs)) return `store time ${record.storeTimeMs}`;
  return undefined;
}

const cancelKey = (logIndex: number, position: number): string => `${logIndex}/${position}`;

// ---- the positions-only snapshot, decoded ---------------------------------------------------

/** One chain's summary. */
export interface TimerChainPositions {
  /** Wheel bucket, or cascade index. */
  readonly at: number;
  readonly newest: number;
  readonly oldest: number;
  readonly chain: number;
  readonly pending: number;
  readonly minDueMs: number;
  readonly minLogIndex: number;
}

export interface TimerPositions {
  readonly firedThroughMs: number;
  readonly wheelSlots: number;
  readonly cascadeSlots: number;
  readonly precisionMs: number;
  readonly cursor: number | undefined;
  readonly logEnd: number;
  readonly fireLogEnd: number;
  readonly buckets: readonly TimerChainPositions[];
  readonly cascades: readonly TimerChainPositions[];
  readonly cancelled: readonly { readonly logIndex: number; readonly position: number; readonly dueMs: number }[];
}

function readChainPositions(reader: SnapshotReader, cascade: boolean): TimerChainPositions {
  const at = cascade ? reader.f64() : reader.u32();
  const newest = reader.f64();
  const oldest = reader.f64();
  const chain = reader.u32();
  const pending = reader.u32();
  const minDueMs = reader.f64();
  const minLogIndex = reader.f64();
  return { at, newest, oldest, chain, pending, minDueMs, minLogIndex };
}

/** Reads the positions-only layout; throws on values that encodeInto could not have written. */
export function decodeTimerPositions(reader: SnapshotReader): TimerPositions {
  const firedThroughMs = reader.f64();
  const wheelSlots = reader.u32();
  const cascadeSlots = reader.u32();
  const precisionMs = reader.f64();
  const cursorValue = reader.f64();
  const logEnd = reader.f64();
  const fireLogEnd = reader.f64();
  const buckets: TimerChainPositions[] = [];
  for (let n = reader.u32(); n > 0; n--) buckets.push(readChainPositions(reader, false));
  const cascades: TimerChainPositions[] = [];
  for (let n = reader.u32(); n > 0; n--) cascades.push(readChainPositions(reader, true));
  const cancelled: { logIndex: number; position: number; dueMs: number }[] = [];
  for (let n = reader.u32(); n > 0; n--) {
    const logIndex = reader.f64();
    const position = reader.u32();
    cancelled.push({ logIndex, position, dueMs: reader.f64() });
  }
  const cursor = cursorValue === -1 ? undefined : cursorValue;
  const bad = (what: string): never => { throw new Error(`a timer store snapshot with ${what}`); };
  if (firedThroughMs !== -Infinity && !isTimeMs(firedThroughMs)) bad(`fired through ${firedThroughMs}`);
  checkWheelShape(wheelSlots, cascadeSlots, (what) => bad(what));
  if (!Number.isSafeInteger(precisionMs) || precisionMs < 1) bad(`precision ${precisionMs} ms`);
  if (cursor !== undefined && (!Number.isSafeInteger(cursor) || cursor < 0)) bad(`cursor slot ${cursor}`);
  if (cursor === undefined && (firedThroughMs !== -Infinity || buckets.length + cascades.length > 0)) bad('records but no cursor');
  if (!Number.isSafeInteger(logEnd) || logEnd < 0 || !Number.isSafeInteger(fireLogEnd) || fireLogEnd < 0 || fireLogEnd > logEnd) bad(`log end ${logEnd}, fired log end ${fireLogEnd}`);
  const seenBuckets = new Set<number>();
  for (const chain of [...buckets, ...cascades]) {
    if (!Number.isSafeInteger(chain.at) || chain.at < 0) bad(`a chain at ${chain.at}`);
    if (!(chain.chain >= 1 && chain.pending <= chain.chain)) bad(`a chain of ${chain.chain} records, ${chain.pending} pending`);
    if (!(Number.isSafeInteger(chain.oldest) && chain.oldest >= 0 && chain.newest >= chain.oldest && chain.newest < logEnd && chain.newest - chain.oldest + 1 >= chain.chain)) {
      bad(`a chain of seqs [${chain.oldest}, ${chain.newest}] (log end ${logEnd})`);
    }
    if ((chain.pending > 0) !== Number.isFinite(chain.minDueMs) || (chain.pending > 0) !== Number.isFinite(chain.minLogIndex)) bad('chain minima that do not match its pending count');
  }
  for (const bucket of buckets) {
    if (bucket.at >= wheelSlots || seenBuckets.has(bucket.at)) bad(`bucket ${bucket.at} (of ${wheelSlots}) twice or out of range`);
    seenBuckets.add(bucket.at);
  }
  if (cursor !== undefined) {
    const limit = fineLimitOf(cursor, wheelSlots, cascadeSlots);
    for (let i = 0; i < cascades.length; i++) {
      const index = (cascades[i] as TimerChainPositions).at;
      if (index * cascadeSlots < limit || (i > 0 && index <= (cascades[i - 1] as TimerChainPositions).at)) bad(`cascade bucket ${index} (wheel ends at slot ${limit})`);
    }
  }
  for (const { logIndex, position, dueMs } of cancelled) {
    if (!Number.isSafeInteger(logIndex) || logIndex < 0 || !isTimeMs(dueMs)) bad(`a cancelled record ${logIndex}/${position} due at ${dueMs}`);
  }
  return { firedThroughMs, wheelSlots, cascadeSlots, precisionMs, cursor, logEnd, fireLogEnd, buckets, cascades, cancelled };
}

function checkWheelShape(wheelSlots: number, cascadeSlots: number, fail: (what: string) => void): void {
  const powerOfTwo = (n: number): boolean => Number.isSafeInteger(n) && n >= 1 && (n & (n - 1)) === 0;
  if (!powerOfTwo(wheelSlots) || wheelSlots < 8) fail(`a wheel of ${wheelSlots} slots (a power of two >= 8)`);
  if (!powerOfTwo(cascadeSlots) || cascadeSlots * 2 > wheelSlots) fail(`cascade buckets of ${cascadeSlots} slots (a power of two, at most half the wheel)`);
}

/** The first slot past the wheel when it is at `cursor`. */
function fineLimitOf(cursor: number, wheelSlots: number, cascadeSlots: number): number {
  return (Math.floor(cursor / cascadeSlots) + wheelSlots / cascadeSlots) * cascadeSlots;
}

// ---- the wheel ------------------------------------------------------------------------------------

export interface TimerWheelOptions {
  /** Buckets of the wheel: a power of two >= 8; 40 bytes each. Its span (× precisionMs) should cover the common delays. */
  readonly wheelSlots?: number;
  /** Slots per cascade bucket: a power of two, at most half the wheel; default an eighth of it. */
  readonly cascadeSlots?: number;
  /**
   * Negative controls for the tests only; the store is wrong with one set.
   * 'drop-last-due-of-partial-slot': a fire that ends inside a slot drops the last record it
   * should visit there (lost, never visited). 'fire-slot-ignoring-due': a fire visits every
   * record of the slots it reaches, due or not (delivered up to a slot early, and again later).
   */
  readonly negativeControl?: 'drop-last-due-of-partial-slot' | 'fire-slot-ignoring-due';
}

interface CascadeBucket {
  newest: number;
  oldest: number;
  chain: number;
  pending: number;
  minDueMs: number;
  minLogIndex: number;
}

/** Buckets per summary block. */
const blockSlotsMax = 256;
/** The fire scratch gives back memory beyond this many records (a very full slot grows it only while it fires). */
const scratchRecordsMax = 4096;

/**
 * The wheel and its chains over a TimerLog: everything of a TimerStore but where the records
 * live. States of a record: pending → visited (by a fire) or cancelled; either way it stays in
 * the log as garbage until its chain is dropped. A cascade bucket's records move to the wheel
 * (appended again) when fineLimit passes it.
 */
export abstract class TimerWheel implements TimerStore {
  abstract readonly recordsDurable: boolean;
  readonly wheelSlots: number;
  readonly cascadeSlots: number;
  private readonly blockSlots: number;
  // Per bucket (index = slot mod wheelSlots); a bucket with chain 0 is empty and its other values are unset.
  private newest: Float64Array;
  private oldest: Float64Array;
  private chain: Uint32Array;
  private pending: Uint32Array;
  /** Least dueMs / logIndex of the bucket's pending records (Infinity if none). */
  private minDueMs: Float64Array;
  private minLogIndex: Float64Array;
  // Per block of blockSlots buckets: sums and minima of the above (oldest: over non-empty buckets).
  private blockChain: Uint32Array;
  private blockMinDueMs: Float64Array;
  private blockMinLogIndex: Float64Array;
  private blockMinOldest: Float64Array;
  /** Cascade buckets by index k (slots [k·G, (k+1)·G)); every k·G >= fineLimit. */
  private readonly cascades = new Map<number, CascadeBucket>();
  /** The slot being fired; undefined until the first add or fire. Never decreases. */
  private cursor: number | undefined;
  private firedThrough = -Infinity;
  /** log.end at the last fire: a record was visited iff seq < fireLogEnd && dueMs <= firedThroughMs. */
  private fireLogEnd = 0;
  private pendingTotal = 0;
  /**
   * Cancelled (logIndex/position) → dueMs, until the first fire through dueMs (after it the
   * record counts as visited, or its chain is gone). One due by firedThroughMs was added late,
   * after the last fire.
   */
  private readonly cancelled = new Map<string, number>();
  private firing = false;
  private readonly entry = newTimerLogEntry();
  private readonly scratch = new TimerColumns();

  protected constructor(
    protected readonly log: TimerLog,
    readonly limits: TimerStoreLimits,
    protected readonly options: TimerWheelOptions,
    wheelSlotsDefault: number,
  ) {
    assert(Number.isSafeInteger(limits.precisionMs) && limits.precisionMs >= 1, `timer precision of ${limits.precisionMs} ms`);
    assert(Number.isSafeInteger(limits.maxDelayMs) && limits.maxDelayMs >= 0, `timer maximum delay of ${limits.maxDelayMs} ms`);
    this.wheelSlots = options.wheelSlots ?? wheelSlotsDefault;
    this.cascadeSlots = options.cascadeSlots ?? Math.max(1, this.wheelSlots / 8);
    checkWheelShape(this.wheelSlots, this.cascadeSlots, (what) => assert(false, what));
    this.blockSlots = Math.min(blockSlotsMax, this.wheelSlots);
    const blocks = this.wheelSlots / this.blockSlots;
    this.newest = new Float64Array(this.wheelSlots);
    this.oldest = new Float64Array(this.wheelSlots);
    this.chain = new Uint32Array(this.wheelSlots);
    this.pending = new Uint32Array(this.wheelSlots);
    this.minDueMs = new Float64Array(this.wheelSlots).fill(Infinity);
    this.minLogIndex = new Float64Array(this.wheelSlots).fill(Infinity);
    this.blockChain = new Uint32Array(blocks);
    this.blockMinDueMs = new Float64Array(blocks).fill(Infinity);
    this.blockMinLogIndex = new Float64Array(blocks).fill(Infinity);
    this.blockMinOldest = new Float64Array(blocks).fill(Infinity);
  }

  abstract sync(): void;
  abstract restore(reader: SnapshotReader, withRecords: boolean): void;
  abstract reader(): TimerStore;

  get pendingCount(): number {
    return this.pendingTotal;
  }

  get firedThroughMs(): number {
    return this.firedThrough;
  }

  /** Bytes this object holds in typed arrays and maps (the wheel, the fire scratch, cascade buckets, cancellations); a file store adds its buffers. */
  get heapBytes(): number {
    const perBucket = 4 * 8 + 2 * 4;
    const perBlock = 3 * 8 + 4;
    return this.wheelSlots * perBucket + (this.wheelSlots / this.blockSlots) * perBlock + this.scratch.heapBytes
      + this.cascades.size * 96 + this.cancelled.size * 96;
  }

  add(record: TimerRecord, nowMs: number): void {
    assert(!this.firing, 'timer add while firing');
    const problem = recordProblem(record);
    if (problem !== undefined) assert(false, `timer record with ${problem}`);
    assert(isTimeMs(nowMs), `timer added at ${nowMs}`);
    assert(record.dueMs <= nowMs + this.limits.maxDelayMs, `timer due at ${record.dueMs}, more than ${this.limits.maxDelayMs} ms after ${nowMs}`);
    this.cursor ??= this.slotOf(nowMs);
    this.insert(record);
  }

  cancel(logIndex: number, position: number, dueMs: number): boolean {
    assert(!this.firing, 'timer cancel while firing');
    assert(Number.isSafeInteger(logIndex) && logIndex >= 0 && isU32(position) && isTimeMs(dueMs), `timer cancel of ${logIndex}/${position} due at ${dueMs}`);
    if (this.cursor === undefined) return false;
    const key = cancelKey(logIndex, position);
    if (this.cancelled.has(key)) return false;
    const slot = this.slotOf(dueMs);
    let found = false;
    let minDueMs = Infinity;
    let minLogIndex = Infinity;
    const look = (seq: number, entry: TimerLogEntry): void => {
      if (this.wasVisited(seq, entry.dueMs) || this.isCancelled(entry)) return;
      if (!found && entry.logIndex === logIndex && entry.position === position && entry.dueMs === dueMs) {
        found = true;
        return;
      }
      minDueMs = Math.min(minDueMs, entry.dueMs);
      minLogIndex = Math.min(minLogIndex, entry.logIndex);
    };
    if (slot < this.fineLimit()) {
      const wheelSlot = Math.max(slot, this.cursor);
      const bucket = wheelSlot % this.wheelSlots;
      if (this.chain[bucket] === 0) return false;
      this.walk(this.newest[bucket] as number, this.oldest[bucket] as number, this.chain[bucket] as number, wheelSlot, look);
      if (!found) return false;
      this.pending[bucket] = (this.pending[bucket] as number) - 1;
      this.minDueMs[bucket] = minDueMs;
      this.minLogIndex[bucket] = minLogIndex;
      this.recomputeBlock(Math.floor(bucket / this.blockSlots));
    } else {
      const index = Math.floor(slot / this.cascadeSlots);
      const cascade = this.cascades.get(index);
      if (cascade === undefined) return false;
      this.walk(cascade.newest, cascade.oldest, cascade.chain, -(index + 1), look);
      if (!found) return false;
      cascade.pending--;
      cascade.minDueMs = minDueMs;
      cascade.minLogIndex = minLogIndex;
    }
    this.cancelled.set(key, dueMs);
    this.pendingTotal--;
    return true;
  }

  fireThrough(throughMs: number, visit: (record: TimerRecord) => void): void {
    assert(!this.firing, 'timer fire while firing');
    assert(isTimeMs(throughMs), `timers fired through ${throughMs}`);
    assert(throughMs >= this.firedThrough, `timers fired through ${throughMs} after ${this.firedThrough}`);
    const target = this.slotOf(throughMs);
    this.cursor ??= target;
    this.firing = true;
    try {
      for (;;) {
        const cursor = this.cursor;
        const limit = this.fineLimit();
        // Slots before the target are passed whole; the target (or the cursor, when the fire
        // ends before it: records due before the cursor sit there) only up to throughMs.
        this.fireSlots(cursor, Math.min(Math.max(target, cursor), limit - 1), target, throughMs, visit);
        if (target < limit) {
          this.moveCursor(Math.max(cursor, target));
          break;
        }
        // The whole wheel is passed: on to the first cascade bucket, or straight to the target.
        const next = this.firstCascadeIndex();
        this.moveCursor(next === undefined ? target : Math.min(target, next * this.cascadeSlots));
      }
    } finally {
      this.firing = false;
    }
    this.firedThrough = throughMs;
    this.fireLogEnd = this.log.end;
    if (this.cancelled.size > 0) {
      for (const [key, dueMs] of this.cancelled) if (dueMs <= throughMs) this.cancelled.delete(key);
    }
  }

  nextDueMs(): number | undefined {
    if (this.pendingTotal === 0) return undefined;
    let min = Infinity;
    for (const value of this.blockMinDueMs) if (value < min) min = value;
    for (const cascade of this.cascades.values()) if (cascade.minDueMs < min) min = cascade.minDueMs;
    assert(Number.isFinite(min), `${this.pendingTotal} timers pending but none has a due time`);
    return min;
  }

  minPendingLogIndex(): number | undefined {
    if (this.pendingTotal === 0) return undefined;
    let min = Infinity;
    for (const value of this.blockMinLogIndex) if (value < min) min = value;
    for (const cascade of this.cascades.values()) if (cascade.minLogIndex < min) min = cascade.minLogIndex;
    assert(Number.isFinite(min), `${this.pendingTotal} timers pending but none has a log index`);
    return min;
  }

  encodeInto(writer: SnapshotWriter, withRecords: boolean): void {
    assert(!this.firing, 'timer snapshot while firing');
    writer.f64(this.firedThrough);
    if (withRecords) {
      const records = this.collectPending();
      const order = records.sortedOrder();
      const n = records.length;
      writer.u32(n);
      const permuted = <C extends Float64Array | Uint32Array | Int32Array>(column: C, fresh: C): C => {
        for (let i = 0; i < n; i++) fresh[i] = column[order[i] as number] as number;
        return fresh;
      };
      writer.column(permuted(records.dueMs, new Float64Array(n)), n);
      writer.column(permuted(records.logIndex, new Float64Array(n)), n);
      writer.column(permuted(records.position, new Uint32Array(n)), n);
      writer.column(permuted(records.topicCreatedAt, new Float64Array(n)), n);
      writer.column(permuted(records.queueId, new Uint32Array(n)), n);
      writer.column(permuted(records.tagId, new Int32Array(n)), n);
      writer.column(permuted(records.storeTimeMs, new Float64Array(n)), n);
      return;
    }
    assert(this.recordsDurable, 'a timer store in memory encodes its records (its snapshots carry them)');
    this.checkSynced();
    writer.u32(this.wheelSlots);
    writer.u32(this.cascadeSlots);
    writer.f64(this.limits.precisionMs);
    writer.f64(this.cursor ?? -1);
    writer.f64(this.log.end);
    writer.f64(this.fireLogEnd);
    const buckets: number[] = [];
    for (let bucket = 0; bucket < this.wheelSlots; bucket++) if (this.chain[bucket] !== 0) buckets.push(bucket);
    writer.u32(buckets.length);
    for (const bucket of buckets) {
      writer.u32(bucket);
      this.writeChain(writer, this.newest[bucket] as number, this.oldest[bucket] as number, this.chain[bucket] as number,
        this.pending[bucket] as number, this.minDueMs[bucket] as number, this.minLogIndex[bucket] as number);
    }
    const cascades = [...this.cascades.keys()].sort((a, b) => a - b);
    writer.u32(cascades.length);
    for (const index of cascades) {
      const c = this.cascades.get(index) as CascadeBucket;
      writer.f64(index);
      this.writeChain(writer, c.newest, c.oldest, c.chain, c.pending, c.minDueMs, c.minLogIndex);
    }
    const cancelled = [...this.cancelled].map(([key, dueMs]) => {
      const [logIndex, position] = key.split('/').map(Number) as [number, number];
      return { logIndex, position, dueMs };
    }).sort((a, b) => a.logIndex - b.logIndex || a.position - b.position);
    writer.u32(cancelled.length);
    for (const { logIndex, position, dueMs } of cancelled) {
      writer.f64(logIndex);
      writer.u32(position);
      writer.f64(dueMs);
    }
  }

  /** The lowest seq any chain still needs (log.end if none): the log may drop everything below. */
  minLiveSeq(): number {
    let min = Infinity;
    for (const value of this.blockMinOldest) if (value < min) min = value;
    for (const cascade of this.cascades.values()) if (cascade.oldest < min) min = cascade.oldest;
    return Number.isFinite(min) ? min : this.log.end;
  }

  /** A positions-only snapshot requires that everything is durable: the file store checks it. */
  protected checkSynced(): void {}

  // ---- restore ----------------------------------------------------------------------------------

  /** Reads the with-records layout and replaces the state with it (the log starts over). */
  protected restoreRecords(reader: SnapshotReader): void {
    const firedThroughMs = reader.f64();
    const n = reader.u32();
    reader.need(n * timerColumnsRecordBytes, `a timer store of ${n} records`);
    const records = new TimerColumns();
    records.dueMs = reader.column(Float64Array, n, n);
    records.logIndex = reader.column(Float64Array, n, n);
    records.position = reader.column(Uint32Array, n, n);
    records.topicCreatedAt = reader.column(Float64Array, n, n);
    records.queueId = reader.column(Uint32Array, n, n);
    records.tagId = reader.column(Int32Array, n, n);
    records.storeTimeMs = reader.column(Float64Array, n, n);
    records.length = n;
    if (firedThroughMs !== -Infinity && !isTimeMs(firedThroughMs)) throw new Error(`a timer store fired through ${firedThroughMs}`);
    for (let i = 0; i < n; i++) {
      const problem = recordProblem(records.record(i));
      if (problem !== undefined) throw new Error(`a timer record with ${problem}`);
      if (i > 0) {
        const order = (records.dueMs[i] as number) - (records.dueMs[i - 1] as number)
          || (records.logIndex[i] as number) - (records.logIndex[i - 1] as number)
          || (records.position[i] as number) - (records.position[i - 1] as number);
        if (!(order > 0)) throw new Error(`timer records out of order at ${i}`);
      }
    }
    this.resetWithRecords(firedThroughMs, records);
  }

  /** Replaces the state with these records (in any order) pending, fired through `firedThroughMs`; the log starts over. */
  protected resetWithRecords(firedThroughMs: number, records: TimerColumns): void {
    this.log.restart();
    this.clear();
    this.firedThrough = firedThroughMs;
    this.fireLogEnd = this.log.end;
    let first = Infinity;
    for (let i = 0; i < records.length; i++) first = Math.min(first, records.dueMs[i] as number);
    this.cursor = firedThroughMs !== -Infinity ? this.slotOf(firedThroughMs) : records.length > 0 ? this.slotOf(first) : undefined;
    for (let i = 0; i < records.length; i++) this.insert(records.record(i));
  }

  /** Replaces the state with a positions-only snapshot's; the log must hold its records (it throws TimerRecordsError if not). */
  protected applyPositions(positions: TimerPositions): void {
    assert(positions.wheelSlots === this.wheelSlots && positions.cascadeSlots === this.cascadeSlots && positions.precisionMs === this.limits.precisionMs,
      'a positions-only timer snapshot applied to a wheel of another shape');
    let from = positions.logEnd;
    for (const chain of [...positions.buckets, ...positions.cascades]) from = Math.min(from, chain.oldest);
    this.log.reopen(from, positions.logEnd);
    this.clear();
    this.firedThrough = positions.firedThroughMs;
    this.cursor = positions.cursor;
    this.fireLogEnd = positions.fireLogEnd;
    for (const c of positions.buckets) {
      this.newest[c.at] = c.newest;
      this.oldest[c.at] = c.oldest;
      this.chain[c.at] = c.chain;
      this.pending[c.at] = c.pending;
      this.minDueMs[c.at] = c.minDueMs;
      this.minLogIndex[c.at] = c.minLogIndex;
      this.pendingTotal += c.pending;
    }
    for (let block = 0; block < this.blockChain.length; block++) this.recomputeBlock(block);
    for (const c of positions.cascades) {
      this.cascades.set(c.at, { newest: c.newest, oldest: c.oldest, chain: c.chain, pending: c.pending, minDueMs: c.minDueMs, minLogIndex: c.minLogIndex });
      this.pendingTotal += c.pending;
    }
    for (const { logIndex, position, dueMs } of positions.cancelled) this.cancelled.set(cancelKey(logIndex, position), dueMs);
  }

  /** Every pending, uncancelled record, read from the chains (in no particular order). */
  protected collectPending(): TimerColumns {
    const records = new TimerColumns();
    const take = (seq: number, entry: TimerLogEntry): void => {
      if (!this.wasVisited(seq, entry.dueMs) && !this.isCancelled(entry)) records.push(entry);
    };
    if (this.cursor !== undefined) {
      for (let bucket = 0; bucket < this.wheelSlots; bucket++) {
        if (this.pending[bucket] === 0) continue;
        this.walk(this.newest[bucket] as number, this.oldest[bucket] as number, this.chain[bucket] as number, this.slotOfBucket(bucket), take);
      }
    }
    for (const [index, c] of this.cascades) if (c.pending > 0) this.walk(c.newest, c.oldest, c.chain, -(index + 1), take);
    assert(records.length === this.pendingTotal, `timer chains hold ${records.length} pending records, the count says ${this.pendingTotal}`);
    return records;
  }

  // ---- internals ----------------------------------------------------------------------------------

  private slotOf(timeMs: number): number {
    return Math.floor(timeMs / this.limits.precisionMs);
  }

  private fineLimit(): number {
    return fineLimitOf(this.cursor as number, this.wheelSlots, this.cascadeSlots);
  }

  /** The slot bucket `bucket` holds: the one in [cursor, cursor + wheelSlots) congruent to it. */
  private slotOfBucket(bucket: number): number {
    const cursor = this.cursor as number;
    return cursor + ((bucket - (cursor % this.wheelSlots) + this.wheelSlots) % this.wheelSlots);
  }

  private wasVisited(seq: number, dueMs: number): boolean {
    return seq < this.fireLogEnd && dueMs <= this.firedThrough;
  }

  private isCancelled(entry: TimerLogEntry): boolean {
    return this.cancelled.size > 0 && this.cancelled.get(cancelKey(entry.logIndex, entry.position)) === entry.dueMs;
  }

  /** Places a record: in the wheel (at the cursor if already due before it), else in its cascade bucket. */
  private insert(record: TimerRecord): void {
    const cursor = this.cursor as number;
    const slot = this.slotOf(record.dueMs);
    if (slot < this.fineLimit()) this.appendToWheel(Math.max(slot, cursor), record);
    else this.appendToCascade(Math.floor(slot / this.cascadeSlots), record);
    this.pendingTotal++;
  }

  private appendToWheel(slot: number, record: TimerRecord): void {
    const bucket = slot % this.wheelSlots;
    const empty = this.chain[bucket] === 0;
    const seq = this.log.append(record, empty ? -1 : (this.newest[bucket] as number), slot);
    if (empty) this.oldest[bucket] = seq;
    this.newest[bucket] = seq;
    this.chain[bucket] = (this.chain[bucket] as number) + 1;
    this.pending[bucket] = (this.pending[bucket] as number) + 1;
    this.minDueMs[bucket] = Math.min(this.minDueMs[bucket] as number, record.dueMs);
    this.minLogIndex[bucket] = Math.min(this.minLogIndex[bucket] as number, record.logIndex);
    const block = Math.floor(bucket / this.blockSlots);
    this.blockChain[block] = (this.blockChain[block] as number) + 1;
    this.blockMinDueMs[block] = Math.min(this.blockMinDueMs[block] as number, record.dueMs);
    this.blockMinLogIndex[block] = Math.min(this.blockMinLogIndex[block] as number, record.logIndex);
    this.blockMinOldest[block] = Math.min(this.blockMinOldest[block] as number, this.oldest[bucket] as number);
  }

  private appendToCascade(index: number, record: TimerRecord): void {
    let cascade = this.cascades.get(index);
    const seq = this.log.append(record, cascade === undefined ? -1 : cascade.newest, -(index + 1));
    if (cascade === undefined) {
      cascade = { newest: seq, oldest: seq, chain: 0, pending: 0, minDueMs: Infinity, minLogIndex: Infinity };
      this.cascades.set(index, cascade);
    }
    cascade.newest = seq;
    cascade.chain++;
    cascade.pending++;
    cascade.minDueMs = Math.min(cascade.minDueMs, record.dueMs);
    cascade.minLogIndex = Math.min(cascade.minLogIndex, record.logIndex);
  }

  /** Fires the non-empty slots of [from, last] in order, skipping empty blocks. */
  private fireSlots(from: number, last: number, target: number, throughMs: number, visit: (record: TimerRecord) => void): void {
    for (let slot = from; slot <= last;) {
      const bucket = slot % this.wheelSlots;
      if (this.blockChain[Math.floor(bucket / this.blockSlots)] === 0) {
        slot += this.blockSlots - (bucket % this.blockSlots);
        continue;
      }
      if (this.chain[bucket] !== 0) this.fireSlot(slot, bucket, slot < target, throughMs, visit);
      slot++;
    }
  }

  /** Visits the slot's records due by throughMs; `whole`: the fire passes the slot, which then leaves the wheel. */
  private fireSlot(slot: number, bucket: number, passed: boolean, throughMs: number, visit: (record: TimerRecord) => void): void {
    const ignoringDue = this.options.negativeControl === 'fire-slot-ignoring-due';
    const whole = passed || ignoringDue;
    const due = this.scratch;
    due.clear();
    let remaining = 0;
    let minDueMs = Infinity;
    let minLogIndex = Infinity;
    this.walk(this.newest[bucket] as number, this.oldest[bucket] as number, this.chain[bucket] as number, slot, (seq, entry) => {
      if (this.wasVisited(seq, entry.dueMs) || this.isCancelled(entry)) return;
      if (entry.dueMs <= throughMs || ignoringDue) {
        due.push(entry);
        return;
      }
      // A slot passed whole holds nothing due later: its records are due within it or before it.
      assert(!whole, `timer record due at ${entry.dueMs} in slot ${slot}, passed by a fire through ${throughMs}`);
      remaining++;
      minDueMs = Math.min(minDueMs, entry.dueMs);
      minLogIndex = Math.min(minLogIndex, entry.logIndex);
    });
    assert(due.length + remaining === this.pending[bucket], `timer slot ${slot} holds ${due.length + remaining} pending records, its count says ${this.pending[bucket]}`);
    if (whole) {
      this.chain[bucket] = 0;
      this.pending[bucket] = 0;
      this.minDueMs[bucket] = Infinity;
      this.minLogIndex[bucket] = Infinity;
    } else {
      this.pending[bucket] = remaining;
      this.minDueMs[bucket] = minDueMs;
      this.minLogIndex[bucket] = minLogIndex;
    }
    this.recomputeBlock(Math.floor(bucket / this.blockSlots));
    this.pendingTotal -= due.length;
    const order = due.sortedOrder();
    const visited = this.options.negativeControl === 'drop-last-due-of-partial-slot' && !whole ? Math.max(0, order.length - 1) : order.length;
    for (let i = 0; i < visited; i++) visit(due.record(order[i] as number));
    due.clear(scratchRecordsMax);
  }

  /** Moves the cursor forward; cascade buckets the wheel now reaches move into it. */
  private moveCursor(next: number): void {
    const cursor = this.cursor as number;
    assert(next >= cursor, `timer cursor moved back from slot ${cursor} to ${next}`);
    if (next === cursor) return;
    const oldLimit = this.fineLimit();
    if (next >= oldLimit) {
      for (const count of this.blockChain) assert(count === 0, `timer cursor jumped past the wheel (slot ${cursor} to ${next}) with records in it`);
    }
    this.cursor = next;
    const limit = this.fineLimit();
    if (limit === oldLimit || this.cascades.size === 0) return;
    const reached = [...this.cascades.keys()].filter((index) => index * this.cascadeSlots < limit).sort((a, b) => a - b);
    for (const index of reached) this.cascade(index, limit);
  }

  /** Appends cascade bucket `index`'s pending records again, into the wheel; cancelled ones are dropped for good. */
  private cascade(index: number, limit: number): void {
    const cascade = this.cascades.get(index) as CascadeBucket;
    let moved = 0;
    this.walk(cascade.newest, cascade.oldest, cascade.chain, -(index + 1), (_seq, entry) => {
      if (this.isCancelled(entry)) {
        this.cancelled.delete(cancelKey(entry.logIndex, entry.position));
        return;
      }
      const slot = this.slotOf(entry.dueMs);
      assert(slot >= (this.cursor as number) && slot < limit, `timer record due in slot ${slot} cascades into a wheel at [${this.cursor}, ${limit})`);
      this.appendToWheel(slot, entry);
      moved++;
    });
    assert(moved === cascade.pending, `timer cascade bucket ${index} held ${moved} pending records, its count says ${cascade.pending}`);
    // Dropped only now: while it was read, its chain had to count as live (a memory log makes room by minLiveSeq).
    this.cascades.delete(index);
  }

  private firstCascadeIndex(): number | undefined {
    let first: number | undefined;
    for (const index of this.cascades.keys()) if (first === undefined || index < first) first = index;
    return first;
  }

  /**
   * Reads a chain from its newest record to its oldest, checking that it is the chain the
   * wheel describes (a damaged log shows here, if its checksums did not catch it).
   */
  private walk(newest: number, oldest: number, count: number, home: number, onRecord: (seq: number, entry: TimerLogEntry) => void): void {
    const entry = this.entry;
    let seq = newest;
    for (let read = 0; read < count; read++) {
      this.log.read(seq, entry);
      const prev = entry.prevSeq;
      const last = read === count - 1;
      if (entry.home !== home || (last ? prev !== -1 || seq !== oldest : !(prev < seq && prev >= oldest))) {
        throw new TimerRecordsError(`timer log record ${seq} (home ${entry.home}, previous ${prev}) does not continue the chain of ${home} [${oldest}, ${newest}] of ${count} records: the timer log is damaged`);
      }
      onRecord(seq, entry);
      seq = prev;
    }
  }

  private writeChain(writer: SnapshotWriter, newest: number, oldest: number, chain: number, pending: number, minDueMs: number, minLogIndex: number): void {
    writer.f64(newest);
    writer.f64(oldest);
    writer.u32(chain);
    writer.u32(pending);
    writer.f64(minDueMs);
    writer.f64(minLogIndex);
  }

  private recomputeBlock(block: number): void {
    let chain = 0;
    let minDueMs = Infinity;
    let minLogIndex = Infinity;
    let minOldest = Infinity;
    for (let bucket = block * this.blockSlots, end = bucket + this.blockSlots; bucket < end; bucket++) {
      if (this.chain[bucket] === 0) continue;
      chain += this.chain[bucket] as number;
      minDueMs = Math.min(minDueMs, this.minDueMs[bucket] as number);
      minLogIndex = Math.min(minLogIndex, this.minLogIndex[bucket] as number);
      minOldest = Math.min(minOldest, this.oldest[bucket] as number);
    }
    this.blockChain[block] = chain;
    this.blockMinDueMs[block] = minDueMs;
    this.blockMinLogIndex[block] = minLogIndex;
    this.blockMinOldest[block] = minOldest;
  }

  private clear(): void {
    this.chain.fill(0);
    this.pending.fill(0);
    this.minDueMs.fill(Infinity);
    this.minLogIndex.fill(Infinity);
    this.blockChain.fill(0);
    this.blockMinDueMs.fill(Infinity);
    this.blockMinLogIndex.fill(Infinity);
    this.blockMinOldest.fill(Infinity);
    this.cascades.clear();
    this.cancelled.clear();
    this.cursor = undefined;
    this.firedThrough = -Infinity;
    this.fireLogEnd = 0;
    this.pendingTotal = 0;
  }
}

// ---- in memory ------------------------------------------------------------------------------------

/**
 * The log in typed-array columns (60 bytes a record), holding seqs [base, end). When full, it
 * drops what no chain needs (below the wheel's minLiveSeq) if that frees half, else doubles;
 * it never shrinks below what is live, so memory follows the log since the oldest pending
 * record, not the history.
 */
export class MemoryTimerLog implements TimerLog {
  private base = 0;
  private count = 0;
  private f64 = new Float64Array(6 * columnsInitial);
  private u32 = new Uint32Array(2 * columnsInitial);
  private i32 = new Int32Array(columnsInitial);
  /** The lowest seq still needed; set by the store that owns this log. */
  liveFrom: () => number = () => this.base;

  get end(): number {
    return this.base + this.count;
  }

  get heapBytes(): number {
    return this.f64.byteLength + this.u32.byteLength + this.i32.byteLength;
  }

  append(record: TimerRecord, prevSeq: number, home: number): number {
    if (this.count === this.i32.length) this.makeRoom();
    const i = this.count++;
    const f = 6 * i;
    this.f64[f] = record.dueMs;
    this.f64[f + 1] = record.logIndex;
    this.f64[f + 2] = record.topicCreatedAt;
    this.f64[f + 3] = record.storeTimeMs;
    this.f64[f + 4] = prevSeq;
    this.f64[f + 5] = home;
    this.u32[2 * i] = record.position;
    this.u32[2 * i + 1] = record.queueId;
    this.i32[i] = record.tagId;
    return this.base + i;
  }

  read(seq: number, into: TimerLogEntry): void {
    const i = seq - this.base;
    assert(i >= 0 && i < this.count, `timer log record ${seq} is not held (holding [${this.base}, ${this.end}))`);
    const f = 6 * i;
    into.dueMs = this.f64[f] as number;
    into.logIndex = this.f64[f + 1] as number;
    into.topicCreatedAt = this.f64[f + 2] as number;
    into.storeTimeMs = this.f64[f + 3] as number;
    into.prevSeq = this.f64[f + 4] as number;
    into.home = this.f64[f + 5] as number;
    into.position = this.u32[2 * i] as number;
    into.queueId = this.u32[2 * i + 1] as number;
    into.tagId = this.i32[i] as number;
  }

  restart(): void {
    this.base = this.end;
    this.count = 0;
    this.resize(columnsInitial, 0);
  }

  reopen(from: number, end: number): void {
    assert(from === end && end === this.end, `timer records [${from}, ${end}) cannot be reopened from memory`);
  }

  /** Drops what no chain needs and leaves as much room as is kept (so each record is copied O(1) times on average). */
  private makeRoom(): void {
    const dropped = Math.min(this.liveFrom(), this.end) - this.base;
    assert(dropped >= 0, `timer log asked to keep seq ${this.base + dropped}, below what it holds (${this.base})`);
    this.resize(Math.max(columnsInitial, 2 * (this.count - dropped)), dropped);
  }

  /** New columns of `capacity` records holding the current ones from `drop` on. */
  private resize(capacity: number, drop: number): void {
    const kept = this.count - drop;
    const f64 = new Float64Array(6 * capacity);
    f64.set(this.f64.subarray(6 * drop, 6 * this.count));
    const u32 = new Uint32Array(2 * capacity);
    u32.set(this.u32.subarray(2 * drop, 2 * this.count));
    const i32 = new Int32Array(capacity);
    i32.set(this.i32.subarray(drop, this.count));
    this.f64 = f64;
    this.u32 = u32;
    this.i32 = i32;
    this.base += drop;
    this.count = kept;
  }
}

/**
 * Timers in memory (the simulator and unit tests): the same wheel over a MemoryTimerLog.
 * Nothing survives the process, so snapshots carry the records.
 */
export class MemoryTimerStore extends TimerWheel {
  readonly recordsDurable = false;
  private readonly memoryLog: MemoryTimerLog;

  /** The wheel defaults to 4,096 slots (68 minutes at 1 s; 160 KiB). */
  constructor(limits: TimerStoreLimits = timerStoreLimitsDefault, options: TimerWheelOptions = {}) {
    const log = new MemoryTimerLog();
    super(log, limits, options, 4096);
    this.memoryLog = log;
    log.liveFrom = () => this.minLiveSeq();
  }

  /** The wheel's bytes plus the log's. */
  override get heapBytes(): number {
    return super.heapBytes + this.memoryLog.heapBytes;
  }

  sync(): void {}

  restore(reader: SnapshotReader, withRecords: boolean): void {
    if (!withRecords) throw new Error('timer store snapshot relies on timer files, and this store keeps its timers in memory');
    this.restoreRecords(reader);
  }

  reader(): TimerStore {
    return new MemoryTimerStore(this.limits, this.options);
  }
}
