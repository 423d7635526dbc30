/**
 * The send de-duplication window: which (topic, messageId) pairs were stored recently, and
 * where. A FIFO ring of records numbered by sequence number (the n-th record ever added is
 * number n), each record 36 bytes (128-bit key hash, queue id, offset, time) behind the
 * DedupRecords port: files on a broker node (src/server/dedup-files.ts), typed arrays in the
 * simulator and tests (MemoryDedupRecords).
 *
 * In memory the window keeps only what a lookup of a new id needs: an open-addressing table of
 * ring slots (linear probing, two cells per slot so at most half full: 8 bytes a slot) and, per
 * ring slot, a 16-bit fingerprint (bits 0..15 of hash word 1) and an 8-bit probe distance (how
 * far the slot's cell is from its home cell, `hash word 0 & mask`; 255 means "255 or more: ask
 * the record"). A probe passes a cell unless both the fingerprint and the distance match (so
 * the home cell matches too): only then does it read the record's full hash. A send of a new
 * id reads the records with probability ~2^-16 per probe; a duplicate reads its one record.
 * A million ids in 2^20 slots take 11.5 bytes each (2^21 × 4 + 2^20 × 3 bytes). Deleting
 * by backward shift needs the home of each entry it moves: the distance gives it without
 * reading the records (except for a saturated distance, which practically never happens at
 * half load). Capacity doubles when the ring is full and shrinks when it is a quarter full, so
 * memory follows the live count (which the limits bound through expire), not the history;
 * a resize rebuilds the table from the records' hashes (one sequential read).
 *
 * Replace does not change a record (an earlier positions-only snapshot may count it, and its
 * files must still read as that snapshot saw them): it drops the id's record from the table and
 * appends a new record for it at the end, with the current time, as Map.delete + Map.set does.
 * The old record stays in the ring, dead, until it reaches the front. Rebuilding the table
 * from the records therefore lets a later record of a hash replace an earlier one, which is
 * the same rule; the records alone define the window.
 *
 * Records are identified by their key's hash alone: the strings are not kept. Two live keys
 * with equal hashes would make the second send look like a duplicate of the first and
 * silently drop it. With 128 well-mixed bits the chance that any two of n live keys collide
 * is about n²/2^129 (~1.5e-27 for a million; ~N·n/2^128 for N sends over a window of n), far
 * below the rate of undetected memory or disk errors. (MurmurHash3 is not a cryptographic
 * hash: a client that knows another client's future messageId could craft a colliding id in
 * the same topic and get that send dropped. Ids are client-chosen anyway; a client can
 * already reuse someone's id outright.)
 *
 * The hash is part of the snapshot format (snapshots and dedup files store it, not the
 * strings): changing the function, its seed or its input encoding needs a snapshot version
 * bump.
 *
 * Pure and deterministic: the state, the records and the encoded bytes depend only on the calls
 * made, so record n is the same on every node (a restore may write a record again over the same
 * bytes).
 */
import { assert } from '../../util/assert.js';
import { murmur3x86x128 } from '../../util/murmur3.js';
import type { SnapshotReader, SnapshotWriter } from './state-snapshot.js';

export interface DedupWindowLimits {
  readonly dedupWindowMs: number;
  readonly dedupEntriesMax: number;
}

export interface DedupHit {
  readonly queueId: number;
  readonly offset: number;
}

/** One live record, for tests and debugging; `hash` is the four key-hash words as 32 hex digits. */
export interface DedupEntry extends DedupHit {
  readonly seq: number;
  readonly hash: string;
  readonly timeMs: number;
}

/** Records of sequence numbers `[from, from + queueIds.length)` as columns. */
export interface DedupColumns {
  /** Four words per record, record-major. */
  readonly hashes: Uint32Array;
  readonly queueIds: Int32Array;
  readonly offsets: Float64Array;
  readonly timesMs: Float64Array;
}

/** The records of one window. Reads are of sequence numbers it holds; writes append at the end. */
export interface DedupRecords {
  /** Stores record `seq`, which is always the number after the last one written; `hash` holds its four words. */
  append(seq: number, hash: Uint32Array, queueId: number, offset: number, timeMs: number): void;
  /** Stores a run of records from `from`, the number after the last one written (a snapshot that carries them). */
  appendColumns(from: number, columns: DedupColumns): void;
  /** The four hash words of record `seq` into `into[0..3]`. */
  readHash(seq: number, into: Uint32Array): void;
  queueIdAt(seq: number): number;
  offsetAt(seq: number): number;
  timeAt(seq: number): number;
  /** The hash words of `[from, from + count)` into `into`, four per record (a sequential scan). */
  readHashes(from: number, count: number, into: Uint32Array): void;
  /** Records of `[from, from + count)`, for a snapshot that carries them; fresh arrays or views the caller does not keep past the snapshot. */
  readColumns(from: number, count: number): DedupColumns;
  /** Nothing below `seq` will be read again (expiry passed it). */
  releaseBelow(seq: number): void;
}

/**
 * Where records live. A snapshot that does not carry the records (`recordsDurable`) relies
 * on `sync` having made every record it counts durable.
 */
export interface DedupRecordStore {
  /** True when records survive a restart (files): snapshots then record the range only. */
  readonly recordsDurable: boolean;
  /**
   * The records of a window that holds `[from, to)`; those must already be stored (a restore
   * from a positions-only snapshot) — if not, it throws a DedupRecordsError naming what is
   * missing. The store's writable records are the ones opened last.
   */
  open(from: number, to: number): DedupRecords;
  /**
   * Makes every record written so far durable, just before a snapshot records the window's
   * range. Records released below the range are deleted only at the sync after the one that
   * first saw them released: the previous snapshot, which may still be the newest durable
   * one, can be restored.
   */
  sync(): void;
  /** The same records, read only: for reading an earlier snapshot's window while this store keeps being written. */
  reader(): DedupRecordStore;
}

/** The window's records are missing or damaged in their store (not a malformed snapshot: the snapshot is fine, the files are not). */
export class DedupRecordsError extends Error {
  override readonly name = 'DedupRecordsError';
}

/** Ring slots; a power of two, so a ring slot is `seq & mask`. The table has twice as many. */
const initialCapacity = 64;
const hashWords = 4;
/** 4 × u32 hash + i32 queue id + f64 offset + f64 time, in a record file and in a snapshot. */
export const dedupRecordBytes = hashWords * Uint32Array.BYTES_PER_ELEMENT + Int32Array.BYTES_PER_ELEMENT + 2 * Float64Array.BYTES_PER_ELEMENT;
/** A table cell holding no ring slot. */
const empty = -1;
/** A stored probe distance of this or more: the real one is computed from the record's hash. */
const saturated = 255;
/** Records read at a time when the table is rebuilt from the records. */
const scanRecords = 8192;
/** Fixed, so every node (and every snapshot) hashes alike. ("RMQD") */
const hashSeed = 0x524d_5144;
const maxQueueId = 0x7fff_ffff;

/** The hash of the last key given to hashKey, and that key (module scratch: no allocation per call). */
const keyHash = new Uint32Array(hashWords);
let hashedTopic: string | undefined;
let hashedMessageId: string | undefined;
/** The key's input as 32-bit words, reused (grown for long ids). */
let words = new Int32Array(64);
/** A record's hash as read back (module scratch), and a second one for comparing two records. */
const recordHash = new Uint32Array(hashWords);
const otherHash = new Uint32Array(hashWords);

const validRecord = (queueId: number, offset: number, timeMs: number): boolean =>
  Number.isInteger(queueId) && queueId >= 0 && queueId <= maxQueueId && Number.isSafeInteger(offset) && offset >= 0 && Number.isFinite(timeMs);

// ---- records in memory -------------------------------------------------------------------

/**
 * Records in typed-array columns, a ring indexed by `seq & mask` that doubles when full and
 * shrinks when a quarter full: 36 bytes a record, no object per record. Nothing survives the
 * process, so snapshots carry them.
 */
export class MemoryDedupRecords implements DedupRecords {
  private hashes = new Uint32Array(initialCapacity * hashWords);
  private queueIds = new Int32Array(initialCapacity);
  private offsets = new Float64Array(initialCapacity);
  private timesMs = new Float64Array(initialCapacity);
  /** Records `[first, next)` are held, record `seq` in slot `seq & (capacity - 1)`. */
  private first: number;
  private next: number;

  constructor(from = 0) {
    assert(Number.isSafeInteger(from) && from >= 0, `dedup records from ${from}`);
    this.first = from;
    this.next = from;
  }

  /** Bytes held in typed arrays. */
  get heapBytes(): number {
    return this.hashes.byteLength + this.queueIds.byteLength + this.offsets.byteLength + this.timesMs.byteLength;
  }

  append(seq: number, hash: Uint32Array, queueId: number, offset: number, timeMs: number): void {
    if (seq !== this.next) assert(false, `dedup record ${seq} written after ${this.next - 1}`);
    if (this.next - this.first === this.queueIds.length) this.resize(this.queueIds.length * 2);
    const slot = seq & (this.queueIds.length - 1);
    for (let w = 0; w < hashWords; w++) this.hashes[slot * hashWords + w] = hash[w] as number;
    this.queueIds[slot] = queueId;
    this.offsets[slot] = offset;
    this.timesMs[slot] = timeMs;
    this.next++;
  }

  appendColumns(from: number, columns: DedupColumns): void {
    assert(from === this.next, `dedup records from ${from} written after ${this.next - 1}`);
    const count = columns.queueIds.length;
    assert(columns.hashes.length === count * hashWords && columns.offsets.length === count && columns.timesMs.length === count, 'dedup columns of unequal lengths');
    const held = this.next - this.first;
    if (held + count > this.queueIds.length) this.resize(powerOfTwoAtLeast(Math.max(initialCapacity, held + count)));
    const mask = this.queueIds.length - 1;
    for (let i = 0; i < count; i++) {
      const slot = (from + i) & mask;
      for (let w = 0; w < hashWords; w++) this.hashes[slot * hashWords + w] = columns.hashes[i * hashWords + w] as number;
      this.queueIds[slot] = columns.queueIds[i] as number;
      this.offsets[slot] = columns.offsets[i] as number;
      this.timesMs[slot] = columns.timesMs[i] as number;
    }
    this.next += count;
  }

  readHash(seq: number, into: Uint32Array): void {
    const at = this.slot(seq) * hashWords;
    into[0] = this.hashes[at] as number;
    into[1] = this.hashes[at + 1] as number;
    into[2] = this.hashes[at + 2] as number;
    into[3] = this.hashes[at + 3] as number;
  }

  queueIdAt(seq: number): number { return this.queueIds[this.slot(seq)] as number; }
  offsetAt(seq: number): number { return this.offsets[this.slot(seq)] as number; }
  timeAt(seq: number): number { return this.timesMs[this.slot(seq)] as number; }

  readHashes(from: number, count: number, into: Uint32Array): void {
    this.checkRange(from, count);
    const mask = this.queueIds.length - 1;
    for (let i = 0; i < count; i++) {
      const at = ((from + i) & mask) * hashWords;
      for (let w = 0; w < hashWords; w++) into[i * hashWords + w] = this.hashes[at + w] as number;
    }
  }

  readColumns(from: number, count: number): DedupColumns {
    this.checkRange(from, count);
    const mask = this.queueIds.length - 1;
    const start = from & mask;
    if (start + count <= this.queueIds.length) {
      // One run: views, as the snapshot writer references them until it finishes.
      return {
        hashes: this.hashes.subarray(start * hashWords, (start + count) * hashWords), queueIds: this.queueIds.subarray(start, start + count),
        offsets: this.offsets.subarray(start, start + count), timesMs: this.timesMs.subarray(start, start + count),
      };
    }
    const columns: DedupColumns = { hashes: new Uint32Array(count * hashWords), queueIds: new Int32Array(count), offsets: new Float64Array(count), timesMs: new Float64Array(count) };
    this.readHashes(from, count, columns.hashes);
    for (let i = 0; i < count; i++) {
      const slot = (from + i) & mask;
      columns.queueIds[i] = this.queueIds[slot] as number;
      columns.offsets[i] = this.offsets[slot] as number;
      columns.timesMs[i] = this.timesMs[slot] as number;
    }
    return columns;
  }

  releaseBelow(seq: number): void {
    const upTo = Math.min(seq, this.next);
    if (upTo <= this.first) return;
    this.first = upTo;
    // Memory follows the live records, not the history.
    const count = this.next - this.first;
    if (this.queueIds.length > initialCapacity && count < this.queueIds.length / 4) this.resize(Math.max(initialCapacity, powerOfTwoAtLeast(count * 2)));
  }

  private slot(seq: number): number {
    if (!(seq >= this.first && seq < this.next)) assert(false, `dedup record ${seq} is not held (holding [${this.first}, ${this.next}))`);
    return seq & (this.queueIds.length - 1);
  }

  private checkRange(from: number, count: number): void {
    assert(from >= this.first && count >= 0 && from + count <= this.next, `dedup records [${from}, ${from + count}) are not held (holding [${this.first}, ${this.next}))`);
  }

  /** Moves the held records into columns of `capacity` slots (a power of two). */
  private resize(capacity: number): void {
    const oldMask = this.queueIds.length - 1;
    const mask = capacity - 1;
    const hashes = new Uint32Array(capacity * hashWords);
    const queueIds = new Int32Array(capacity);
    const offsets = new Float64Array(capacity);
    const timesMs = new Float64Array(capacity);
    for (let seq = this.first; seq < this.next; seq++) {
      const from = seq & oldMask;
      const to = seq & mask;
      for (let w = 0; w < hashWords; w++) hashes[to * hashWords + w] = this.hashes[from * hashWords + w] as number;
      queueIds[to] = this.queueIds[from] as number;
      offsets[to] = this.offsets[from] as number;
      timesMs[to] = this.timesMs[from] as number;
    }
    this.hashes = hashes;
    this.queueIds = queueIds;
    this.offsets = offsets;
    this.timesMs = timesMs;
  }
}

/** Records in memory: nothing survives the process, so snapshots carry the records themselves. */
export const memoryDedupRecordStore: DedupRecordStore = {
  recordsDurable: false,
  open(from: number, to: number): DedupRecords {
    assert(from === to, `memory dedup records cannot hold [${from}, ${to}) after a restart`);
    return new MemoryDedupRecords(from);
  },
  sync(): void {},
  reader(): DedupRecordStore { return memoryDedupRecordStore; },
};

// ---- the window ------------------------------------------------------------------------------

export class DedupWindow {
  /** Per ring slot (`seq & (capacity - 1)`): bits 0..15 of the record's hash word 1. */
  private fingerprints = new Uint16Array(0);
  /** Per ring slot: its cell's distance from its home cell, saturated at 255. */
  private distances = new Uint8Array(0);
  /** Ring slot of each occupied cell, else `empty`; twice the ring capacity, so at most half full. */
  private table = new Int32Array(0);
  /** Live ids: the records in [head, tail) the table points at (the others are dead: replaced). */
  private count = 0;
  /** Whether the table has been built from the records (a restore builds it at first use). */
  private built = false;
  /** Set by probe: the cell holding keyHash, or the empty cell where it would go, and its distance from home. */
  private probeCell = 0;
  private probeDistance = 0;

  private constructor(
    private readonly limits: DedupWindowLimits,
    private readonly records: DedupRecords,
    /** Sequence number of the oldest record in the ring (live or dead). */
    private head: number,
    /** The next sequence number: the ring holds records [head, tail). */
    private tail: number,
  ) {
    assert(limits.dedupWindowMs >= 0, `dedup window of ${limits.dedupWindowMs} ms`);
    assert(limits.dedupEntriesMax >= 0, `dedup window of at most ${limits.dedupEntriesMax} entries`);
    assert(Number.isSafeInteger(head) && head >= 0 && Number.isSafeInteger(tail) && tail >= head, `dedup window over [${head}, ${tail})`);
  }

  /** An empty window whose records go to `store` (from sequence number 0). */
  static create(limits: DedupWindowLimits, store: DedupRecordStore = memoryDedupRecordStore): DedupWindow {
    return new DedupWindow(limits, store.open(0, 0), 0, 0);
  }

  /** Live ids. */
  get size(): number {
    this.ensureBuilt();
    return this.count;
  }

  /** Sequence numbers of the ring: [first, next). */
  get range(): { readonly first: number; readonly next: number } {
    return { first: this.head, next: this.tail };
  }

  /** Bytes the window itself holds in typed arrays (the records are behind their port): what memory follows, the ring's capacity. */
  get heapBytes(): number {
    this.ensureBuilt();
    return this.fingerprints.byteLength + this.distances.byteLength + this.table.byteLength;
  }

  find(topic: string, messageId: string): DedupHit | undefined {
    this.ensureBuilt();
    hashKey(topic, messageId);
    if (!this.probe()) return undefined;
    const seq = this.seqOf(this.table[this.probeCell] as number);
    return { queueId: this.records.queueIdAt(seq), offset: this.records.offsetAt(seq) };
  }

  /**
   * Points a known id at a new store (its topic was deleted and created again with fewer
   * queues, so the old record names no queue). The old record is not changed: the id's entry
   * moves to a new record at the end of the ring, with time `timeMs` (Map.delete + Map.set).
   */
  replace(topic: string, messageId: string, queueId: number, offset: number, timeMs: number): void {
    if (!validRecord(queueId, offset, timeMs)) assert(false, `dedup record with queue id ${queueId}, offset ${offset}, time ${timeMs}`);
    this.ensureRoom();
    hashKey(topic, messageId);
    if (!this.probe()) assert(false, `dedup window does not hold ${JSON.stringify(topic)} ${JSON.stringify(messageId)}`);
    this.unlink(this.probeCell);
    this.count--;
    this.probe();
    this.insert(queueId, offset, timeMs);
  }

  /** Records a stored message; the caller has checked that `find` does not know it. Times need not be monotone. */
  add(topic: string, messageId: string, queueId: number, offset: number, timeMs: number): void {
    // The message is built only on failure (add is on the send path).
    if (!validRecord(queueId, offset, timeMs)) assert(false, `dedup record with queue id ${queueId}, offset ${offset}, time ${timeMs}`);
    this.ensureRoom();
    hashKey(topic, messageId);
    if (this.probe()) assert(false, `dedup window already holds ${JSON.stringify(topic)} ${JSON.stringify(messageId)} (or its hash)`);
    this.insert(queueId, offset, timeMs);
  }

  /**
   * Drops records from the oldest while there are more than dedupEntriesMax live ids or the
   * oldest is older than dedupWindowMs before `nowMs`; stops at the first that is neither (a
   * younger record behind an older one stays until it reaches the front: the Map version did
   * the same). Dead records at the front go too. Reads the times, and hashes, of the oldest
   * records only: sequential.
   */
  expire(nowMs: number): void {
    assert(Number.isFinite(nowMs), `dedup expiry at ${nowMs}`);
    this.ensureBuilt();
    const cutoffMs = nowMs - this.limits.dedupWindowMs;
    const first = this.head;
    for (; this.head < this.tail; this.head++) {
      const seq = this.head;
      // With no dead record in the ring the oldest is live, and a young one needs no hash read.
      const cell = this.tail - this.head === this.count ? undefined : this.cellOf(seq);
      if (cell === empty) continue;
      if (this.count <= this.limits.dedupEntriesMax && this.records.timeAt(seq) >= cutoffMs) break;
      this.unlink(cell ?? this.cellOf(seq));
      this.count--;
    }
    if (this.head === first) return;
    this.records.releaseBelow(this.head);
    // Memory follows the ring; halving at a quarter leaves room to grow without thrashing.
    const capacity = this.fingerprints.length;
    const length = this.tail - this.head;
    if (capacity > initialCapacity && length < capacity / 4) this.build(Math.max(initialCapacity, powerOfTwoAtLeast(length * 2)));
  }

  /** The live records, oldest first. */
  *entries(): IterableIterator<DedupEntry> {
    this.ensureBuilt();
    for (let seq = this.head; seq < this.tail; seq++) {
      if (this.tail - this.head !== this.count && this.cellOf(seq) === empty) continue;
      this.records.readHash(seq, recordHash);
      let hash = '';
      for (let w = 0; w < hashWords; w++) hash += (recordHash[w] as number).toString(16).padStart(8, '0');
      yield { seq, hash, queueId: this.records.queueIdAt(seq), offset: this.records.offsetAt(seq), timeMs: this.records.timeAt(seq) };
    }
  }

  /**
   * f64 first sequence number, u32 records in the ring (dead ones included); with
   * `withRecords`, then those records oldest first as four columns: n × 4 u32 hash words
   * (record-major), n × i32 queue id, n × f64 offset, n × f64 time. Without, the records are
   * in the store, made durable by its `sync` before the snapshot. The bytes depend only on the
   * calls made, not on capacity or the table. Big columns are referenced until the writer's
   * `finish` (snapshot() is synchronous).
   */
  encodeInto(writer: SnapshotWriter, withRecords: boolean): void {
    const length = this.tail - this.head;
    writer.f64(this.head);
    writer.u32(length);
    if (!withRecords) return;
    const columns = this.records.readColumns(this.head, length);
    writer.column(columns.hashes, length * hashWords);
    writer.column(columns.queueIds, length);
    writer.column(columns.offsets, length);
    writer.column(columns.timesMs, length);
  }

  /**
   * Reads what encodeInto wrote; throws on bytes that could not have come from it. Records
   * carried in the snapshot are written to `store`; otherwise `store` must already hold them
   * (a DedupRecordsError names what it lacks). The table is built from the records' hashes
   * at the first use (a restore that only re-encodes never builds it).
   */
  static decode(reader: SnapshotReader, withRecords: boolean, store: DedupRecordStore, limits: DedupWindowLimits): DedupWindow {
    const first = reader.f64();
    if (!Number.isSafeInteger(first) || first < 0) throw new Error(`a dedup window starting at sequence number ${first}`);
    const length = reader.u32();
    if (!Number.isSafeInteger(first + length)) throw new Error(`a dedup window of ${length} records from ${first}`);
    if (!withRecords) return new DedupWindow(limits, store.open(first, first + length), first, first + length);
    reader.need(length * dedupRecordBytes, `a dedup window of ${length} records`);
    const columns: DedupColumns = {
      hashes: reader.column(Uint32Array, length * hashWords, length * hashWords),
      queueIds: reader.column(Int32Array, length, length),
      offsets: reader.column(Float64Array, length, length),
      timesMs: reader.column(Float64Array, length, length),
    };
    for (let i = 0; i < length; i++) {
      const queueId = columns.queueIds[i] as number;
      const offset = columns.offsets[i] as number;
      const timeMs = columns.timesMs[i] as number;
      if (queueId < 0) throw new Error(`a dedup record with queue id ${queueId}`);
      if (!Number.isSafeInteger(offset) || offset < 0) throw new Error(`a dedup record with offset ${offset}`);
      if (!Number.isFinite(timeMs)) throw new Error(`a dedup record with time ${timeMs}`);
    }
    const records = store.open(first, first);
    records.appendColumns(first, columns);
    return new DedupWindow(limits, records, first, first + length);
  }

  // ---- ring and table --------------------------------------------------------------------

  private ensureBuilt(): void {
    if (!this.built) this.build(Math.max(initialCapacity, powerOfTwoAtLeast(this.tail - this.head)));
  }

  /** The sequence number in ring slot `slot` (the ring holds fewer than capacity records). */
  private seqOf(slot: number): number {
    return this.head + ((slot - this.head) & (this.fingerprints.length - 1));
  }

  /**
   * Whether keyHash is held; sets probeCell to its cell, or to the empty cell where it would
   * go, and probeDistance to that cell's distance from home. Reads a record only for a cell
   * whose fingerprint and distance both match (the table is never full).
   */
  private probe(): boolean {
    const { table, fingerprints, distances } = this;
    const mask = table.length - 1;
    const fingerprint = (keyHash[1] as number) & 0xffff;
    let cell = (keyHash[0] as number) & mask;
    for (let distance = 0; ; distance++, cell = (cell + 1) & mask) {
      const slot = table[cell] as number;
      if (slot === empty) break;
      if (fingerprints[slot] !== fingerprint || distances[slot] !== (distance < saturated ? distance : saturated)) continue;
      this.records.readHash(this.seqOf(slot), recordHash);
      if (recordHash[0] === keyHash[0] && recordHash[1] === keyHash[1] && recordHash[2] === keyHash[2] && recordHash[3] === keyHash[3]) {
        this.probeCell = cell;
        this.probeDistance = distance;
        return true;
      }
    }
    this.probeCell = cell;
    this.probeDistance = (cell - ((keyHash[0] as number) & mask)) & mask;
    return false;
  }

  /** A built table with a free ring slot (grown before a probe: growing rebuilds the table, so the probe's cell would be stale). */
  private ensureRoom(): void {
    this.ensureBuilt();
    if (this.tail - this.head === this.fingerprints.length) this.build(this.fingerprints.length * 2);
  }

  /** Appends keyHash's record at the tail and links it at probeCell; the caller's probe (after ensureRoom) found no record of it. */
  private insert(queueId: number, offset: number, timeMs: number): void {
    assert(this.tail - this.head < this.fingerprints.length, 'dedup insert into a full ring');
    const seq = this.tail;
    this.records.append(seq, keyHash, queueId, offset, timeMs);
    this.tail++;
    const slot = seq & (this.fingerprints.length - 1);
    assert(this.table[this.probeCell] === empty, 'dedup insert into an occupied cell');
    this.table[this.probeCell] = slot;
    this.fingerprints[slot] = (keyHash[1] as number) & 0xffff;
    this.distances[slot] = Math.min(this.probeDistance, saturated);
    this.count++;
  }

  /** The cell holding record `seq`, or `empty` if none does (the record is dead: a later one replaced it). Reads its hash. */
  private cellOf(seq: number): number {
    const { table, distances } = this;
    const mask = table.length - 1;
    const slot = seq & (this.fingerprints.length - 1);
    this.records.readHash(seq, recordHash);
    const home = (recordHash[0] as number) & mask;
    const distance = distances[slot] as number;
    // A dead slot's distance is stale, but no cell holds the slot (it is reused only after its record expired).
    if (distance < saturated) {
      const cell = (home + distance) & mask;
      return table[cell] === slot ? cell : empty;
    }
    for (let cell = (home + saturated) & mask; table[cell] !== empty; cell = (cell + 1) & mask) if (table[cell] === slot) return cell;
    return empty;
  }

  /** The distance of ring slot `slot`, held in `cell`, from its home (read from the record when saturated). */
  private distanceOf(slot: number, cell: number): number {
    const distance = this.distances[slot] as number;
    if (distance < saturated) return distance;
    this.records.readHash(this.seqOf(slot), recordHash);
    return (cell - (recordHash[0] as number)) & (this.table.length - 1);
  }

  /** Empties `hole` by backward shift, so probes never need tombstones; the distances give each moved entry's home. */
  private unlink(hole: number): void {
    const { table, distances } = this;
    const mask = table.length - 1;
    assert(table[hole] !== empty, 'dedup unlink of an empty cell');
    for (let cell = (hole + 1) & mask; ; cell = (cell + 1) & mask) {
      const moving = table[cell] as number;
      if (moving === empty) break;
      const distance = this.distanceOf(moving, cell);
      const gap = (cell - hole) & mask;
      // `moving` may fill the hole unless its home lies cyclically in (hole, cell].
      if (distance >= gap) {
        table[hole] = moving;
        distances[moving] = Math.min(distance - gap, saturated);
        hole = cell;
      }
    }
    table[hole] = empty;
  }

  /**
   * A ring of `capacity` slots (a power of two, at least the records in [head, tail)) and its
   * table, from the records' hash words 0 and 1 (one sequential read). A later record with the
   * same hash as an earlier one replaces it (replace appended it). Records go in by home cell
   * (a counting sort into 4096 runs, stable, so a key's records stay in order), so the writes
   * stay near each other instead of one cache miss each.
   */
  private build(capacity: number): void {
    const { head, records } = this;
    const length = this.tail - head;
    assert(capacity >= length && (capacity & (capacity - 1)) === 0, `dedup ring of ${capacity} slots for ${length} records`);
    const words0 = new Uint32Array(length);
    const words1 = new Uint32Array(length);
    const chunk = new Uint32Array(Math.min(length, scanRecords) * hashWords);
    for (let at = 0; at < length; at += scanRecords) {
      const n = Math.min(scanRecords, length - at);
      records.readHashes(head + at, n, chunk);
      for (let i = 0; i < n; i++) {
        words0[at + i] = chunk[i * hashWords] as number;
        words1[at + i] = chunk[i * hashWords + 1] as number;
      }
    }
    const size = capacity * 2;
    const mask = size - 1;
    const ringMask = capacity - 1;
    const shift = Math.max(0, 31 - Math.clz32(size) - 12);
    const runStarts = new Int32Array((size >>> shift) + 1);
    for (let i = 0; i < length; i++) {
      const run = (((words0[i] as number) & mask) >>> shift) + 1;
      runStarts[run] = (runStarts[run] as number) + 1;
    }
    for (let run = 1; run < runStarts.length; run++) runStarts[run] = (runStarts[run] as number) + (runStarts[run - 1] as number);
    const order = new Uint32Array(length);
    for (let i = 0; i < length; i++) {
      const run = ((words0[i] as number) & mask) >>> shift;
      const k = runStarts[run] as number;
      runStarts[run] = k + 1;
      order[k] = i;
    }
    const table = new Int32Array(size).fill(empty);
    const fingerprints = new Uint16Array(capacity);
    const distances = new Uint8Array(capacity);
    let live = 0;
    for (let k = 0; k < length; k++) {
      const i = order[k] as number;
      const a = words0[i] as number;
      const b = words1[i] as number;
      const slot = (head + i) & ringMask;
      let cell = a & mask;
      let distance = 0;
      let replaced = false;
      for (let other = table[cell] as number; other !== empty; other = table[cell] as number) {
        const j = (other - head) & ringMask;
        if (words0[j] === a && words1[j] === b && sameHashTail(records, head + i, head + j)) {
          // The same key again: this later record replaced the earlier one, which stays dead.
          table[cell] = slot;
          replaced = true;
          break;
        }
        cell = (cell + 1) & mask;
        distance++;
      }
      if (!replaced) {
        table[cell] = slot;
        live++;
      }
      fingerprints[slot] = b & 0xffff;
      distances[slot] = Math.min(distance, saturated);
    }
    this.table = table;
    this.fingerprints = fingerprints;
    this.distances = distances;
    this.count = live;
    this.built = true;
  }
}

/** Whether records `x` and `y` agree on hash words 2 and 3 (the caller compared words 0 and 1). */
function sameHashTail(records: DedupRecords, x: number, y: number): boolean {
  records.readHash(x, recordHash);
  records.readHash(y, otherHash);
  return recordHash[2] === otherHash[2] && recordHash[3] === otherHash[3];
}

function powerOfTwoAtLeast(n: number): number {
  let power = 1;
  while (power < n) power *= 2;
  return power;
}

// ---- the key hash ----------------------------------------------------------------------------

/**
 * MurmurHash3_x86_128 (Austin Appleby, SMHasher) with hashSeed, of the little-endian bytes
 *   u32 topic.length | u32 messageId.length | topic's UTF-16 code units | messageId's code units
 * into keyHash. The lengths make the encoding injective (no separator that a name could
 * contain); code units, not UTF-8, so any JS string hashes, lone surrogates included.
 */
function hashKey(topic: string, messageId: string): void {
  // BrokerState calls find then add with the same strings: hash once.
  if (topic === hashedTopic && messageId === hashedMessageId) return;
  const topicUnits = topic.length;
  const idUnits = messageId.length;
  const lengthBytes = 8 + 2 * (topicUnits + idUnits);
  // Whole 16-byte blocks, so the tail reads as zero-padded words.
  const paddedWords = ((lengthBytes + 15) >>> 4) * 4;
  if (words.length < paddedWords) words = new Int32Array(powerOfTwoAtLeast(paddedWords));
  // Two code units a word, low one first, assembled by arithmetic: the platform's byte order does not matter.
  const u = words;
  u[0] = topicUnits;
  u[1] = idUnits;
  let w = 2;
  let i = 0;
  for (; i + 1 < topicUnits; i += 2) u[w++] = topic.charCodeAt(i) | (topic.charCodeAt(i + 1) << 16);
  let j = 0;
  if (i < topicUnits) {
    // An odd topic: its last unit shares a word with the id's first.
    u[w++] = topic.charCodeAt(i) | (idUnits > 0 ? messageId.charCodeAt(0) << 16 : 0);
    j = 1;
  }
  for (; j + 1 < idUnits; j += 2) u[w++] = messageId.charCodeAt(j) | (messageId.charCodeAt(j + 1) << 16);
  if (j < idUnits) u[w++] = messageId.charCodeAt(j);
  u.fill(0, w, paddedWords);

  murmur3x86x128(u, lengthBytes, hashSeed, keyHash);
  hashedTopic = topic;
  hashedMessageId = messageId;
}
