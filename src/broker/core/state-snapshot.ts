/**
 * The binary format of a BrokerState snapshot, its byte-level writer and reader, and the
 * SHA-256 behind BrokerState.digest (written here: broker/core may not import node:crypto).
 *
 * Layout, version 7. Numbers are little-endian; `str` is u32 byte length + UTF-8, or, for a
 * string with lone surrogates, u32 (0x80000000 | code units) + UTF-16LE, so every JS string
 * comes back exactly; configs are JSON (the objects as applied, key order included).
 *
 *   "RMQS" | u8 version = 7 | u8 withRecords | f64 clockMs
 *   tags:          u32 n, n × str                    (tagNames in id order; tagIds is its inverse)
 *   topics:        u32 n, n × { str config JSON, f64 createdAt, f64 roundRobin, u32 queues, queues × ConsumeQueue }
 *                  ConsumeQueue = f64 first offset, u32 count, and when withRecords = 1 four
 *                  columns of `count` values: f64 logIndex, u32 position, i32 tagId, f64
 *                  storeTime (bulk typed-array bytes)
 *   groups:        u32 n, n × str config JSON
 *   popQueues:     u32 n, n × { str key, f64 ackOffset, f64 next,
 *                              u32 inFlight, inFlight × { f64 offset, f64 attempt, f64 deadlineMs, f64 seq, u8 autoRenew, str clientId },
 *                              u32 done, done × f64 offset }
 *   receiveCursor: u32 n, n × { str key, f64 cursor }
 *   offsets:       u32 n, n × { str group, u32 m, m × { str key, f64 offset } }
 *   dedup:         DedupWindow (dedup-window.ts): f64 first sequence number, u32 n records
 *                  in the ring, and when withRecords = 1 those records oldest first as bulk
 *                  columns n × 4 u32 (128-bit hash of topic and id), n × i32 queueId,
 *                  n × f64 offset, n × f64 timeMs
 *   retention:     f64 retainedFrom (first log index kept), u32 n, n × { str group\0topic\0queue, f64 expired }
 *   timers:        u8 timersWithRecords, then the TimerStore (timer-store.ts): with 1 its
 *                  pending records (canonical: sorted by due time, log index, position, as bulk
 *                  columns), with 0 the wheel's positions in the node's timer files. It is 1
 *                  when withRecords = 1, and when the timers are kept in memory.
 *   fired runs:    u32 n, n × { str topic\0queue, u32 m, m × { f64 firstOffset, f64 lastOffset, f64 minLogIndex } }
 *                  (delivered delayed messages still held in a queue; sorted by key)
 *   transactions:  the TransactionTable (transactions.ts): open transactions and those ended
 *                  lately, in their map orders (both are behaviour: log order, end order)
 *   message index: u8 indexWithRecords, then the MessageIndex (message-index.ts,
 *                  SegmentedIndex.encodeInto): its extent, and with 1 its entries oldest first;
 *                  with 0 the entries are in the node's index files (MessageIndex.sync). It is
 *                  1 when withRecords = 1, and when the index is kept in memory.
 *   access control: u32 n, n bytes of the AccessControlTable's own encoding (access-control.ts:
 *                  users with sealed secrets, policies; canonical order)
 *   (end: trailing bytes are an error)
 *
 * Map order. Where iteration order changes what the state does, it is written and restored
 * as is: topics (listings sort them, but later state may iterate them), popQueues
 * (renewalsDue output order), each pop queue's inFlight (renewalsDue, autoRenewClients
 * order), dedup (expiry stops at the first young record). Where it cannot be observed
 * (groups and offsets are read by key or through sorted listings; receiveCursor and the done
 * sets by key only) entries are written sorted by code units, so equal states give equal
 * bytes whatever their history.
 *
 * withRecords = 0 (a broker node's own snapshots): the consume-queue, dedup and timer records
 * are in the node's queue, dedup and timer files, made durable before the snapshot
 * (QueueRecordStore.sync, DedupRecordStore.sync, TimerStore.sync), and the snapshot says only
 * how far each queue, the dedup ring and the timer log reach. withRecords = 1 (the simulator's
 * snapshots, the digest, and every snapshot sent by InstallSnapshot, to a node that has no
 * such files): the records themselves follow each queue, the dedup range and the timers.
 * Version 1 carried the records always and no createdAt; version 2 carried the dedup records
 * always and no sequence number; version 3 had no timers and no fired runs (no delayed
 * messages); version 4 had no transactions; version 5 had no message index; version 6 had no
 * access control. This build writes version 7 and reads versions 4 (as a state without
 * transactions), 5 (as one whose message index is new and empty: messages applied before it
 * are not found by query or trace) and 6 (as one without users or policies), so a node upgraded
 * in place starts from its snapshot; an older one is refused with a SnapshotFormatError naming
 * the versions it reads.
 *
 * A later version appends its sections after the last one and bumps the version; the reader
 * reads the older sections the same way for every version it knows.
 */
import { InvariantViolation } from '../../util/assert.js';
import { AccessControlTable, AccessTableFormatError } from './access-control.js';
import { ConsumeQueue, QueueRecordsError, type QueueRecordStore } from './consume-queue.js';
import { DedupRecordsError, DedupWindow, type DedupRecordStore, type DedupWindowLimits } from './dedup-window.js';
import type { GroupConfig, TopicConfig } from './names.js';
import { TimerRecordsError, type TimerStore } from './timer-store.js';
import { MessageIndexError, decodeMessageIndex, emptyIndexExtent, type MessageIndex, type MessageIndexStore } from './message-index.js';
import { TransactionTable, type TransactionLimits } from './transactions.js';

export const snapshotMagic = 'RMQS';
export const snapshotVersion = 7;
/** The oldest version this build reads (see the layout). */
export const snapshotVersionMin = 4;

/** A snapshot that cannot be read: truncated, damaged, or of a format this build does not know. */
export class SnapshotFormatError extends Error {
  override readonly name = 'SnapshotFormatError';
}

// ---- the parts of a BrokerState, as the format sees them ---------------------------------

export interface InFlightRecord {
  attempt: number;
  deadlineMs: number;
  seq: number;
  autoRenew: boolean;
  clientId: string;
}

export interface PopQueueRecord {
  readonly ackOffset: number;
  readonly next: number;
  readonly inFlight: ReadonlyMap<number, InFlightRecord>;
  readonly done: ReadonlySet<number>;
}

export interface TopicRecord {
  readonly config: TopicConfig;
  /** The log index of the entry that created the topic: names its queue files. */
  readonly createdAt: number;
  readonly queues: readonly ConsumeQueue[];
  readonly roundRobin: number;
}

/** Offsets [firstOffset, lastOffset] of a queue hold delivered delayed messages (and maybe others); the least send-entry log index among them. */
export interface FiredRun {
  firstOffset: number;
  lastOffset: number;
  minLogIndex: number;
}

export interface BrokerStateParts {
  readonly clockMs: number;
  readonly tagNames: readonly string[];
  readonly topics: ReadonlyMap<string, TopicRecord>;
  readonly groups: ReadonlyMap<string, GroupConfig>;
  readonly popQueues: ReadonlyMap<string, PopQueueRecord>;
  readonly receiveCursor: ReadonlyMap<string, number>;
  readonly offsets: ReadonlyMap<string, ReadonlyMap<string, number>>;
  readonly dedup: DedupWindow;
  readonly retainedFrom: number;
  readonly expiredUnconsumed: ReadonlyMap<string, number>;
  /** Encoded by the store; decoding restores into the store given to it. */
  readonly timers: TimerStore;
  readonly firedRuns: ReadonlyMap<string, readonly FiredRun[]>;
  readonly transactions: TransactionTable;
  readonly index: MessageIndex;
  readonly access: AccessControlTable;
}

/** What decoding gives back: fresh objects and maps, owned by the caller. */
export interface DecodedBrokerState extends BrokerStateParts {
  readonly tagNames: string[];
  readonly topics: Map<string, { config: TopicConfig; readonly createdAt: number; readonly queues: ConsumeQueue[]; roundRobin: number }>;
  readonly groups: Map<string, GroupConfig>;
  readonly popQueues: Map<string, { ackOffset: number; next: number; readonly inFlight: Map<number, InFlightRecord>; readonly done: Set<number> }>;
  readonly receiveCursor: Map<string, number>;
  readonly offsets: Map<string, Map<string, number>>;
  readonly expiredUnconsumed: Map<string, number>;
  readonly firedRuns: Map<string, FiredRun[]>;
}

const byCodeUnits = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

function sortedEntries<V>(map: ReadonlyMap<string, V>): [string, V][] {
  return [...map.entries()].sort((a, b) => byCodeUnits(a[0], b[0]));
}

/** Whether a snapshot carries its consume-queue, dedup and timer records (false for bytes that are not a snapshot of this version). */
export function snapshotHasRecords(data: Uint8Array): boolean {
  const versionAt = snapshotMagicBytes.length;
  const version = data[versionAt] ?? 0;
  return data.length > versionAt + 1 && version >= snapshotVersionMin && version <= snapshotVersion && data[versionAt + 1] === 1;
}

/** With `withRecords`, the consume-queue, dedup and timer records go into the snapshot too (see the layout above). */
export function encodeBrokerState(parts: BrokerStateParts, withRecords: boolean): Uint8Array {
  const w = new SnapshotWriter();
  w.raw(snapshotMagicBytes);
  w.u8(snapshotVersion);
  w.u8(withRecords ? 1 : 0);
  w.f64(parts.clockMs);

  w.u32(parts.tagNames.length);
  for (const name of parts.tagNames) w.string(name);

  w.u32(parts.topics.size);
  for (const topic of parts.topics.values()) {
    w.json(topic.config);
    w.f64(topic.createdAt);
    w.f64(topic.roundRobin);
    w.u32(topic.queues.length);
    for (const queue of topic.queues) queue.encodeInto(w, withRecords);
  }

  w.u32(parts.groups.size);
  for (const [, config] of sortedEntries(parts.groups)) w.json(config);

  w.u32(parts.popQueues.size);
  for (const [k, pop] of parts.popQueues) {
    w.string(k);
    w.f64(pop.ackOffset);
    w.f64(pop.next);
    w.u32(pop.inFlight.size);
    for (const [offset, flight] of pop.inFlight) {
      w.f64(offset);
      w.f64(flight.attempt);
      w.f64(flight.deadlineMs);
      w.f64(flight.seq);
      w.u8(flight.autoRenew ? 1 : 0);
      w.string(flight.clientId);
    }
    w.u32(pop.done.size);
    for (const offset of [...pop.done].sort((a, b) => a - b)) w.f64(offset);
  }

  writeNumberMap(w, parts.receiveCursor);

  w.u32(parts.offsets.size);
  for (const [group, offsets] of sortedEntries(parts.offsets)) {
    w.string(group);
    writeNumberMap(w, offsets);
  }

  parts.dedup.encodeInto(w, withRecords);

  w.f64(parts.retainedFrom);
  writeNumberMap(w, parts.expiredUnconsumed);

  const timersWithRecords = withRecords || !parts.timers.recordsDurable;
  w.u8(timersWithRecords ? 1 : 0);
  parts.timers.encodeInto(w, timersWithRecords);
  w.u32(parts.firedRuns.size);
  for (const [k, runs] of sortedEntries(parts.firedRuns)) {
    w.string(k);
    w.u32(runs.length);
    for (const run of runs) {
      w.f64(run.firstOffset);
      w.f64(run.lastOffset);
      w.f64(run.minLogIndex);
    }
  }
  parts.transactions.encodeInto(w);
  const indexWithRecords = withRecords || !parts.index.recordsDurable;
  w.u8(indexWithRecords ? 1 : 0);
  parts.index.encodeInto(w, indexWithRecords);
  const access = parts.access.encode();
  w.u32(access.length);
  w.raw(access);
  return w.finish();
}

/**
 * Reads a whole snapshot or throws SnapshotFormatError (QueueRecordsError, DedupRecordsError,
 * TimerRecordsError, MessageIndexError when the files it relies on are missing); never returns
 * part of one (records carried in it may have been written to the stores by then, `timers`
 * may hold part of its timers, and `indexStore` may have opened its index: the restore of
 * another snapshot writes them again).
 */
export function decodeBrokerState(
  data: Uint8Array, store: QueueRecordStore, dedupStore: DedupRecordStore, timers: TimerStore, limits: DedupWindowLimits & { readonly transactions: TransactionLimits },
  indexStore: MessageIndexStore,
): DecodedBrokerState {
  try {
    return decodeUnchecked(new SnapshotReader(data), store, dedupStore, timers, limits, indexStore);
  } catch (error) {
    if (error instanceof SnapshotFormatError || error instanceof QueueRecordsError || error instanceof DedupRecordsError || error instanceof TimerRecordsError || error instanceof MessageIndexError) throw error;
    throw new SnapshotFormatError(`broker snapshot is malformed: ${(error as Error).message}`, { cause: error });
  }
}

function decodeUnchecked(
  r: SnapshotReader, store: QueueRecordStore, dedupStore: DedupRecordStore, timers: TimerStore, limits: DedupWindowLimits & { readonly transactions: TransactionLimits },
  indexStore: MessageIndexStore,
): DecodedBrokerState {
  r.need(snapshotMagicBytes.length, 'the format magic');
  if (!snapshotMagicBytes.every((byte, i) => r.peek(i) === byte)) {
    throw new SnapshotFormatError(`not a broker snapshot: it does not start with "${snapshotMagic}"`);
  }
  r.skip(snapshotMagicBytes.length);
  const version = r.u8();
  if (version < snapshotVersionMin || version > snapshotVersion) {
    throw new SnapshotFormatError(`broker snapshot format version ${version} is not supported (this build reads versions ${snapshotVersionMin} to ${snapshotVersion})`);
  }
  const withRecords = r.u8();
  if (withRecords > 1) throw new SnapshotFormatError(`broker snapshot has withRecords ${withRecords} (not 0 or 1)`);
  if (withRecords === 0 && !store.recordsDurable) {
    throw new SnapshotFormatError('broker snapshot relies on consume-queue files, and this state keeps its queues in memory');
  }
  if (withRecords === 0 && !dedupStore.recordsDurable) {
    throw new SnapshotFormatError('broker snapshot relies on dedup files, and this state keeps its dedup records in memory');
  }
  const clockMs = r.f64();

  const tagNames: string[] = [];
  const tagSeen = new Set<string>();
  for (let n = r.u32(); n > 0; n--) {
    const name = r.string();
    if (tagSeen.has(name)) throw new SnapshotFormatError(`broker snapshot names tag ${JSON.stringify(name)} twice`);
    tagSeen.add(name);
    tagNames.push(name);
  }
  if (tagNames[0] !== '') throw new SnapshotFormatError('broker snapshot tag table does not start with the empty tag');

  const topics: DecodedBrokerState['topics'] = new Map();
  for (let n = r.u32(); n > 0; n--) {
    const config = configObject(r.json(), 'topic config') as TopicConfig;
    const createdAt = r.f64();
    if (!Number.isSafeInteger(createdAt) || createdAt < 0) throw new SnapshotFormatError(`broker snapshot has a topic created at log index ${createdAt}`);
    const roundRobin = r.f64();
    unique(topics, config.name, 'topic');
    const queues: ConsumeQueue[] = [];
    for (let q = r.u32(), queueId = 0; q > 0; q--, queueId++) {
      queues.push(ConsumeQueue.decode(r, withRecords === 1, store, { topic: config.name, topicCreatedAt: createdAt, queueId }));
    }
    topics.set(config.name, { config, createdAt, queues, roundRobin });
  }

  const groups = new Map<string, GroupConfig>();
  for (let n = r.u32(); n > 0; n--) {
    const config = configObject(r.json(), 'group config') as GroupConfig;
    unique(groups, config.name, 'group');
    groups.set(config.name, config);
  }

  const popQueues: DecodedBrokerState['popQueues'] = new Map();
  for (let n = r.u32(); n > 0; n--) {
    const k = r.string();
    const ackOffset = r.f64();
    const next = r.f64();
    const inFlight = new Map<number, InFlightRecord>();
    for (let f = r.u32(); f > 0; f--) {
      const offset = r.f64();
      const attempt = r.f64();
      const deadlineMs = r.f64();
      const seq = r.f64();
      const autoRenew = r.u8();
      if (autoRenew > 1) throw new SnapshotFormatError(`broker snapshot has autoRenew ${autoRenew} (not 0 or 1)`);
      const clientId = r.string();
      unique(inFlight, offset, 'in-flight offset');
      inFlight.set(offset, { attempt, deadlineMs, seq, autoRenew: autoRenew === 1, clientId });
    }
    const done = new Set<number>();
    for (let d = r.u32(); d > 0; d--) {
      const offset = r.f64();
      if (done.has(offset)) throw new SnapshotFormatError(`broker snapshot lists done offset ${offset} twice`);
      done.add(offset);
    }
    unique(popQueues, k, 'pop queue');
    popQueues.set(k, { ackOffset, next, inFlight, done });
  }

  const receiveCursor = readNumberMap(r, 'receive cursor');

  const offsets = new Map<string, Map<string, number>>();
  for (let n = r.u32(); n > 0; n--) {
    const group = r.string();
    const ofGroup = readNumberMap(r, 'consumer offset');
    unique(offsets, group, 'offset group');
    offsets.set(group, ofGroup);
  }

  const dedup = DedupWindow.decode(r, withRecords === 1, dedupStore, limits);

  const retainedFrom = r.f64();
  if (!Number.isSafeInteger(retainedFrom) || retainedFrom < 1) throw new SnapshotFormatError(`broker snapshot retains from log index ${retainedFrom}`);
  const expiredUnconsumed = readNumberMap(r, 'expired count');

  const timersWithRecords = r.u8();
  if (timersWithRecords > 1 || (withRecords === 1 && timersWithRecords === 0)) throw new SnapshotFormatError(`broker snapshot has timersWithRecords ${timersWithRecords} (withRecords ${withRecords})`);
  if (timersWithRecords === 0 && !timers.recordsDurable) {
    throw new SnapshotFormatError('broker snapshot relies on timer files, and this state keeps its timers in memory');
  }
  timers.restore(r, timersWithRecords === 1);
  const firedRuns = new Map<string, FiredRun[]>();
  for (let n = r.u32(); n > 0; n--) {
    const k = r.string();
    unique(firedRuns, k, 'fired runs of');
    const runs: FiredRun[] = [];
    for (let m = r.u32(); m > 0; m--) {
      const firstOffset = r.f64();
      const lastOffset = r.f64();
      const minLogIndex = r.f64();
      const previous = runs[runs.length - 1];
      if (![firstOffset, lastOffset, minLogIndex].every((v) => Number.isSafeInteger(v) && v >= 0) || lastOffset < firstOffset || (previous !== undefined && firstOffset <= previous.lastOffset)) {
        throw new SnapshotFormatError(`broker snapshot has a fired run [${firstOffset}, ${lastOffset}] (least log index ${minLogIndex}) of ${JSON.stringify(k)} out of order`);
      }
      runs.push({ firstOffset, lastOffset, minLogIndex });
    }
    if (runs.length === 0) throw new SnapshotFormatError(`broker snapshot has no fired runs under ${JSON.stringify(k)}`);
    firedRuns.set(k, runs);
  }
  const transactions = version >= 5 ? TransactionTable.decode(r, limits.transactions) : new TransactionTable(limits.transactions);

  let index: MessageIndex;
  if (version >= 6) {
    const indexWithRecords = r.u8();
    if (indexWithRecords > 1 || (withRecords === 1 && indexWithRecords === 0)) throw new SnapshotFormatError(`broker snapshot has indexWithRecords ${indexWithRecords} (withRecords ${withRecords})`);
    if (indexWithRecords === 0 && !indexStore.recordsDurable) {
      throw new SnapshotFormatError('broker snapshot relies on message index files, and this state keeps its message index in memory');
    }
    index = decodeMessageIndex(r, indexWithRecords === 1, indexStore);
  } else {
    // No index yet: a new, empty one (the messages applied before are not indexed).
    index = indexStore.open(emptyIndexExtent(indexStore.layout));
  }

  let access = new AccessControlTable();
  if (version >= 7) {
    const length = r.u32();
    try {
      access = AccessControlTable.decode(Buffer.from(r.bytes(length, 'the access-control table')));
    } catch (error) {
      if (error instanceof AccessTableFormatError) throw new SnapshotFormatError(`broker snapshot's access-control table: ${error.message}`, { cause: error });
      throw error;
    }
  }

  if (r.remaining !== 0) throw new SnapshotFormatError(`broker snapshot has ${r.remaining} bytes after its end`);
  return { clockMs, tagNames, topics, groups, popQueues, receiveCursor, offsets, dedup, retainedFrom, expiredUnconsumed, timers, firedRuns, transactions, index, access };
}

/** A config as it was applied; its `name` is its map key (not checked further: apply does not check it either). */
function configObject(value: unknown, what: string): object {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new SnapshotFormatError(`broker snapshot has a ${what} that is not an object: ${JSON.stringify(value)}`);
  }
  return value;
}

/** A string → number map, sorted by key (its order is never observed). */
function writeNumberMap(w: SnapshotWriter, map: ReadonlyMap<string, number>): void {
  w.u32(map.size);
  for (const [k, value] of sortedEntries(map)) {
    w.string(k);
    w.f64(value);
  }
}

function readNumberMap(r: SnapshotReader, what: string): Map<string, number> {
  const map = new Map<string, number>();
  for (let n = r.u32(); n > 0; n--) {
    const k = r.string();
    unique(map, k, what);
    map.set(k, r.f64());
  }
  return map;
}

function unique<K>(map: ReadonlyMap<K, unknown>, k: K, what: string): void {
  if (map.has(k)) throw new SnapshotFormatError(`broker snapshot has ${what} ${JSON.stringify(k)} twice`);
}

// ---- bytes -------------------------------------------------------------------------------

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });
const snapshotMagicBytes = utf8.encode(snapshotMagic);
/** Typed arrays use the platform's byte order; the format is little-endian. */
const platformLittleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
/** Set on a string's length: its UTF-16 code units follow (a string with lone surrogates, which UTF-8 cannot hold). */
const utf16Flag = 0x8000_0000;
const scratchBytes = 1 << 16;
/** Columns at least this big are referenced, not copied, until `finish`. */
const bulkBytesMin = 4096;

type Column = Float64Array | Uint32Array | Int32Array;
type ColumnType<C extends Column> = { new(length: number): C; readonly BYTES_PER_ELEMENT: number };

const isWellFormed = (text: string): boolean => (text as unknown as { isWellFormed(): boolean }).isWellFormed();

/**
 * Appends to a 64 KiB scratch buffer, flushed into chunks; big columns are kept as views of
 * their typed arrays. `finish` copies everything once into one exactly sized buffer, so it
 * must be called before the columns change (snapshot() is synchronous).
 */
export class SnapshotWriter {
  private readonly chunks: Uint8Array[] = [];
  private scratch = new Uint8Array(scratchBytes);
  private view = new DataView(this.scratch.buffer);
  private at = 0;
  private flushed = 0;

  get length(): number {
    return this.flushed + this.at;
  }

  u8(value: number): void {
    if (!Number.isInteger(value) || value < 0 || value > 0xff) throw new InvariantViolation(`snapshot u8 out of range: ${value}`);
    this.ensure(1);
    this.view.setUint8(this.at, value);
    this.at += 1;
  }

  u32(value: number): void {
    if (!Number.isInteger(value) || value < 0 || value > 0xffff_ffff) throw new InvariantViolation(`snapshot u32 out of range: ${value}`);
    this.ensure(4);
    this.view.setUint32(this.at, value, true);
    this.at += 4;
  }

  f64(value: number): void {
    this.ensure(8);
    this.view.setFloat64(this.at, value, true);
    this.at += 8;
  }

  raw(bytes: Uint8Array): void {
    this.ensure(bytes.byteLength);
    this.scratch.set(bytes, this.at);
    this.at += bytes.byteLength;
  }

  /** u32 UTF-8 length + UTF-8; a string that is not well-formed UTF-16 goes as code units, so every string comes back exactly. */
  string(text: string): void {
    if (typeof text !== 'string') throw new InvariantViolation(`snapshot string field holds a ${typeof text}: ${String(text)}`);
    if (!isWellFormed(text)) {
      this.u32((utf16Flag | text.length) >>> 0);
      this.ensure(text.length * 2);
      for (let i = 0; i < text.length; i++) this.view.setUint16(this.at + 2 * i, text.charCodeAt(i), true);
      this.at += text.length * 2;
      return;
    }
    this.ensure(4 + text.length * 3);
    const { written } = utf8.encodeInto(text, this.scratch.subarray(this.at + 4));
    if (written >= utf16Flag) throw new InvariantViolation(`snapshot string of ${written} bytes is too long`);
    this.view.setUint32(this.at, written, true);
    this.at += 4 + written;
  }

  json(value: unknown): void {
    this.string(JSON.stringify(value));
  }

  /** The first `count` values of a column, as raw little-endian bytes (no length: the caller writes it). */
  column(values: Column, count: number): void {
    const bytes = count * values.BYTES_PER_ELEMENT;
    if (!platformLittleEndian) {
      this.ensure(bytes);
      for (let i = 0; i < count; i++) setElement(this.view, values, this.at + i * values.BYTES_PER_ELEMENT, values[i] as number);
      this.at += bytes;
      return;
    }
    const view = new Uint8Array(values.buffer, values.byteOffset, bytes);
    if (bytes < bulkBytesMin) {
      this.raw(view);
      return;
    }
    this.flush();
    this.chunks.push(view);
    this.flushed += bytes;
  }

  finish(): Uint8Array {
    this.flush();
    const out = new Uint8Array(this.flushed);
    let at = 0;
    for (const chunk of this.chunks) {
      out.set(chunk, at);
      at += chunk.byteLength;
    }
    this.chunks.length = 0;
    this.flushed = 0;
    return out;
  }

  private ensure(bytes: number): void {
    if (this.at + bytes <= this.scratch.byteLength) return;
    this.flush();
    if (bytes > this.scratch.byteLength) {
      this.scratch = new Uint8Array(bytes);
      this.view = new DataView(this.scratch.buffer);
    }
  }

  private flush(): void {
    if (this.at === 0) return;
    this.chunks.push(this.scratch.slice(0, this.at));
    this.flushed += this.at;
    this.at = 0;
  }
}

function setElement(view: DataView, values: Column, at: number, value: number): void {
  if (values instanceof Float64Array) view.setFloat64(at, value, true);
  else if (values instanceof Uint32Array) view.setUint32(at, value, true);
  else view.setInt32(at, value, true);
}

/** Bounds-checked reads; running out of bytes is a SnapshotFormatError naming the offset. */
export class SnapshotReader {
  private readonly view: DataView;
  private at = 0;

  constructor(private readonly data: Uint8Array) {
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }

  get offset(): number {
    return this.at;
  }

  get remaining(): number {
    return this.data.byteLength - this.at;
  }

  peek(ahead: number): number | undefined {
    return this.data[this.at + ahead];
  }

  skip(bytes: number): void {
    this.need(bytes, 'bytes');
    this.at += bytes;
  }

  /** The next `length` bytes (a view of the snapshot). */
  bytes(length: number, what: string): Uint8Array {
    this.need(length, what);
    const view = this.data.subarray(this.at, this.at + length);
    this.at += length;
    return view;
  }

  /** Throws unless `bytes` more bytes are there. */
  need(bytes: number, what: string): void {
    if (bytes > this.remaining) {
      throw new SnapshotFormatError(`broker snapshot is truncated: ${what} needs ${bytes} bytes at offset ${this.at} but only ${this.remaining} remain`);
    }
  }

  u8(): number {
    this.need(1, 'a u8');
    return this.view.getUint8(this.at++);
  }

  u32(): number {
    this.need(4, 'a u32');
    const value = this.view.getUint32(this.at, true);
    this.at += 4;
    return value;
  }

  f64(): number {
    this.need(8, 'an f64');
    const value = this.view.getFloat64(this.at, true);
    this.at += 8;
    return value;
  }

  string(): string {
    const header = this.u32();
    if (header >= utf16Flag) {
      const units = header - utf16Flag;
      this.need(units * 2, 'a UTF-16 string');
      let text = '';
      for (let i = 0; i < units; i++) text += String.fromCharCode(this.view.getUint16(this.at + 2 * i, true));
      this.at += units * 2;
      return text;
    }
    this.need(header, 'a string');
    const start = this.at;
    this.at += header;
    if (header <= 64) {
      let ascii = '';
      for (let i = start; i < this.at; i++) {
        const byte = this.data[i] as number;
        if (byte >= 0x80) return this.decodeUtf8(start);
        ascii += String.fromCharCode(byte);
      }
      return ascii;
    }
    return this.decodeUtf8(start);
  }

  json(): unknown {
    const text = this.string();
    try {
      return JSON.parse(text) as unknown;
    } catch (error) {
      throw new SnapshotFormatError(`broker snapshot holds bad JSON before offset ${this.at}: ${(error as Error).message}`, { cause: error });
    }
  }

  /** `count` values into a new column of `capacity` (>= count) elements. */
  column<C extends Column>(type: ColumnType<C>, count: number, capacity: number): C {
    const bytes = count * type.BYTES_PER_ELEMENT;
    this.need(bytes, `a column of ${count} values`);
    const values = new type(capacity);
    if (platformLittleEndian) {
      new Uint8Array(values.buffer, 0, bytes).set(this.data.subarray(this.at, this.at + bytes));
    } else {
      for (let i = 0; i < count; i++) values[i] = getElement(this.view, values, this.at + i * type.BYTES_PER_ELEMENT);
    }
    this.at += bytes;
    return values;
  }

  private decodeUtf8(start: number): string {
    try {
      return utf8Strict.decode(this.data.subarray(start, this.at));
    } catch (error) {
      throw new SnapshotFormatError(`broker snapshot holds invalid UTF-8 at offset ${start}`, { cause: error });
    }
  }
}

function getElement(view: DataView, values: Column, at: number): number {
  if (values instanceof Float64Array) return view.getFloat64(at, true);
  if (values instanceof Uint32Array) return view.getUint32(at, true);
  return view.getInt32(at, true);
}

// ---- SHA-256 (FIPS 180-4) ------------------------------------------------------------------

const roundConstants = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/** SHA-256 of `data` as 64 lower-case hex digits. */
export function sha256Hex(data: Uint8Array): string {
  const hash = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
  const w = new Uint32Array(64);
  const input = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const fullBlocks = Math.floor(data.byteLength / 64);
  for (let block = 0; block < fullBlocks; block++) compress(hash, w, input, block * 64);
  // The tail: the last partial block, 0x80, zeros and the bit length (one or two blocks).
  const tailBytes = data.byteLength - fullBlocks * 64;
  const tail = new Uint8Array(tailBytes < 56 ? 64 : 128);
  tail.set(data.subarray(fullBlocks * 64));
  tail[tailBytes] = 0x80;
  const tailView = new DataView(tail.buffer);
  const bits = data.byteLength * 8;
  tailView.setUint32(tail.byteLength - 8, Math.floor(bits / 0x1_0000_0000));
  tailView.setUint32(tail.byteLength - 4, bits >>> 0);
  for (let at = 0; at < tail.byteLength; at += 64) compress(hash, w, tailView, at);
  let hex = '';
  for (const word of hash) hex += word.toString(16).padStart(8, '0');
  return hex;
}

function compress(hash: Uint32Array, w: Uint32Array, input: DataView, at: number): void {
  for (let i = 0; i < 16; i++) w[i] = input.getUint32(at + 4 * i);
  for (let i = 16; i < 64; i++) {
    const w15 = w[i - 15] as number;
    const w2 = w[i - 2] as number;
    const s0 = ((w15 >>> 7) | (w15 << 25)) ^ ((w15 >>> 18) | (w15 << 14)) ^ (w15 >>> 3);
    const s1 = ((w2 >>> 17) | (w2 << 15)) ^ ((w2 >>> 19) | (w2 << 13)) ^ (w2 >>> 10);
    w[i] = (w[i - 16] as number) + s0 + (w[i - 7] as number) + s1;
  }
  let a = hash[0] as number, b = hash[1] as number, c = hash[2] as number, d = hash[3] as number;
  let e = hash[4] as number, f = hash[5] as number, g = hash[6] as number, h = hash[7] as number;
  for (let i = 0; i < 64; i++) {
    const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const choice = (e & f) ^ (~e & g);
    const t1 = (h + s1 + choice + (roundConstants[i] as number) + (w[i] as number)) | 0;
    const s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const majority = (a & b) ^ (a & c) ^ (b & c);
    const t2 = (s0 + majority) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  hash[0] = (hash[0] as number) + a;
  hash[1] = (hash[1] as number) + b;
  hash[2] = (hash[2] as number) + c;
  hash[3] = (hash[3] as number) + d;
  hash[4] = (hash[4] as number) + e;
  hash[5] = (hash[5] as number) + f;
  hash[6] = (hash[6] as number) + g;
  hash[7] = (hash[7] as number) + h;
}
