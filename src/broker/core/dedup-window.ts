/**
 * The send de-duplication window: which (topic, messageId) pairs were stored recently, and
 * where. A FIFO ring of records in typed-array columns (128-bit key hash, queue id, offset,
 * time: 36 bytes) plus an open-addressing table of ring slots (linear probing, two cells per
 * slot so at most half full: 8 bytes). No object per id: a million ids in 2^20 slots take
 * ~46 bytes each, and a snapshot is four bulk copies instead of a million strings. Capacity
 * doubles when full and shrinks when a quarter full, so memory follows the live count (which
 * the limits bound through expire), not the history.
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
 * The hash is part of the snapshot format (snapshots store it, not the strings): changing
 * the function, its seed or its input encoding needs a snapshot version bump.
 *
 * Pure and deterministic: the state and the encoded bytes depend only on the calls made.
 */
import { assert } from '../../util/assert.js';
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
  readonly hash: string;
  readonly timeMs: number;
}

/** Ring slots; a power of two, so a ring index is `& mask`. The table has twice as many. */
const initialCapacity = 64;
const hashWords = 4;
/** A table cell holding no ring slot. */
const empty = -1;
/** 4 × u32 hash + i32 queue id + f64 offset + f64 time, in the ring and in a snapshot. */
const bytesPerRecord = hashWords * Uint32Array.BYTES_PER_ELEMENT + Int32Array.BYTES_PER_ELEMENT + 2 * Float64Array.BYTES_PER_ELEMENT;
/** Fixed, so every node (and every snapshot) hashes alike. ("RMQD") */
const hashSeed = 0x524d_5144;
const maxQueueId = 0x7fff_ffff;

/** The hash of the last key given to hashKey, and that key (module scratch: no allocation per call). */
const keyHash = new Uint32Array(hashWords);
let hashedTopic: string | undefined;
let hashedMessageId: string | undefined;
/** The key's input as 32-bit words, reused (grown for long ids). */
let words = new Int32Array(64);

export class DedupWindow {
  /** hashWords per ring slot, record-major: a probe compares one cache line. */
  private hashes = new Uint32Array(initialCapacity * hashWords);
  private queueIds = new Int32Array(initialCapacity);
  private offsets = new Float64Array(initialCapacity);
  private timesMs = new Float64Array(initialCapacity);
  /** Ring slot of each occupied cell, else `empty`; always twice the ring capacity, so at most half full. */
  private table = new Int32Array(initialCapacity * 2).fill(empty);
  /** Ring slot of the oldest record. */
  private head = 0;
  private count = 0;

  constructor(private readonly limits: DedupWindowLimits) {
    assert(limits.dedupWindowMs >= 0, `dedup window of ${limits.dedupWindowMs} ms`);
    assert(limits.dedupEntriesMax >= 0, `dedup window of at most ${limits.dedupEntriesMax} entries`);
  }

  get size(): number {
    return this.count;
  }

  /** Bytes held in typed arrays (what memory follows: the ring's capacity, not the history). */
  get heapBytes(): number {
    return this.hashes.byteLength + this.queueIds.byteLength + this.offsets.byteLength + this.timesMs.byteLength + this.table.byteLength;
  }

  find(topic: string, messageId: string): DedupHit | undefined {
    hashKey(topic, messageId);
    const slot = this.table[this.probe()] as number;
    if (slot === empty) return undefined;
    return { queueId: this.queueIds[slot] as number, offset: this.offsets[slot] as number };
  }

  /**
   * Points a known id at a new store (its topic was deleted and created again with fewer
   * queues, so the old record names no queue); it keeps its place and time, as Map.set does.
   */
  replace(topic: string, messageId: string, queueId: number, offset: number): void {
    hashKey(topic, messageId);
    const slot = this.table[this.probe()] as number;
    assert(slot !== empty, `dedup window does not hold ${JSON.stringify(topic)} ${JSON.stringify(messageId)}`);
    assert(Number.isInteger(queueId) && queueId >= 0 && queueId <= maxQueueId && Number.isSafeInteger(offset) && offset >= 0, `dedup record with queue id ${queueId}, offset ${offset}`);
    this.queueIds[slot] = queueId;
    this.offsets[slot] = offset;
  }

  /** Records a stored message; the caller has checked that `find` does not know it. Times need not be monotone. */
  add(topic: string, messageId: string, queueId: number, offset: number, timeMs: number): void {
    // The message is built only on failure (add is on the send path).
    if (!(Number.isInteger(queueId) && queueId >= 0 && queueId <= maxQueueId && Number.isSafeInteger(offset) && offset >= 0 && Number.isFinite(timeMs))) {
      assert(false, `dedup record with queue id ${queueId}, offset ${offset}, time ${timeMs}`);
    }
    if (this.count === this.queueIds.length) this.resize(this.queueIds.length * 2);
    hashKey(topic, messageId);
    const cell = this.probe();
    if (this.table[cell] !== empty) assert(false, `dedup window already holds ${JSON.stringify(topic)} ${JSON.stringify(messageId)} (or its hash)`);
    const slot = (this.head + this.count) & (this.queueIds.length - 1);
    this.hashes.set(keyHash, slot * hashWords);
    this.queueIds[slot] = queueId;
    this.offsets[slot] = offset;
    this.timesMs[slot] = timeMs;
    this.table[cell] = slot;
    this.count++;
  }

  /**
   * Drops records from the oldest while there are more than dedupEntriesMax or the oldest is
   * older than dedupWindowMs before `nowMs`; stops at the first that is neither (a younger
   * record behind an older one stays until it reaches the front: the Map version did the same).
   */
  expire(nowMs: number): void {
    assert(Number.isFinite(nowMs), `dedup expiry at ${nowMs}`);
    const cutoffMs = nowMs - this.limits.dedupWindowMs;
    const mask = this.queueIds.length - 1;
    while (this.count > 0) {
      if (this.count <= this.limits.dedupEntriesMax && (this.timesMs[this.head] as number) >= cutoffMs) break;
      this.unlink(this.head);
      this.head = (this.head + 1) & mask;
      this.count--;
    }
    // Memory follows the live count; halving at a quarter leaves room to grow without thrashing.
    const capacity = this.queueIds.length;
    if (capacity > initialCapacity && this.count < capacity / 4) this.resize(Math.max(initialCapacity, powerOfTwoAtLeast(this.count * 2)));
  }

  /** The live records, oldest first. */
  *entries(): IterableIterator<DedupEntry> {
    const mask = this.queueIds.length - 1;
    for (let i = 0; i < this.count; i++) {
      const slot = (this.head + i) & mask;
      let hash = '';
      for (let w = 0; w < hashWords; w++) hash += (this.hashes[slot * hashWords + w] as number).toString(16).padStart(8, '0');
      yield { hash, queueId: this.queueIds[slot] as number, offset: this.offsets[slot] as number, timeMs: this.timesMs[slot] as number };
    }
  }

  /**
   * u32 count, then the live records oldest first as four columns: count × 4 u32 hash words
   * (record-major), count × i32 queue id, count × f64 offset, count × f64 time. The bytes
   * depend only on the live records, not on capacity or where the ring starts. Big columns
   * are referenced until the writer's `finish` (snapshot() is synchronous).
   */
  encodeInto(writer: SnapshotWriter): void {
    writer.u32(this.count);
    this.writeColumn(writer, this.hashes, hashWords);
    this.writeColumn(writer, this.queueIds, 1);
    this.writeColumn(writer, this.offsets, 1);
    this.writeColumn(writer, this.timesMs, 1);
  }

  /** Reads what encodeInto wrote; throws on bytes that could not have come from it. */
  static decode(reader: SnapshotReader, limits: DedupWindowLimits): DedupWindow {
    const window = new DedupWindow(limits);
    const count = reader.u32();
    reader.need(count * bytesPerRecord, `a dedup window of ${count} records`);
    const capacity = Math.max(initialCapacity, powerOfTwoAtLeast(count));
    window.hashes = reader.column(Uint32Array, count * hashWords, capacity * hashWords);
    window.queueIds = reader.column(Int32Array, count, capacity);
    window.offsets = reader.column(Float64Array, count, capacity);
    window.timesMs = reader.column(Float64Array, count, capacity);
    window.count = count;
    for (let slot = 0; slot < count; slot++) {
      const queueId = window.queueIds[slot] as number;
      const offset = window.offsets[slot] as number;
      const timeMs = window.timesMs[slot] as number;
      if (queueId < 0) throw new Error(`a dedup record with queue id ${queueId}`);
      if (!Number.isSafeInteger(offset) || offset < 0) throw new Error(`a dedup record with offset ${offset}`);
      if (!Number.isFinite(timeMs)) throw new Error(`a dedup record with time ${timeMs}`);
    }
    if (!window.rebuildTable()) throw new Error('a dedup window that holds one key hash twice');
    return window;
  }

  // ---- ring and table --------------------------------------------------------------------

  /** The first `count` records from the head, as one or two slices (the ring may wrap). */
  private writeColumn(writer: SnapshotWriter, column: Uint32Array | Int32Array | Float64Array, width: number): void {
    const capacity = this.queueIds.length;
    const first = Math.min(this.count, capacity - this.head);
    writer.column(column.subarray(this.head * width), first * width);
    writer.column(column, (this.count - first) * width);
  }

  /** The table cell holding keyHash, or the empty cell where it would go (the table is never full). */
  private probe(): number {
    const { table, hashes } = this;
    const mask = table.length - 1;
    const a = keyHash[0] as number, b = keyHash[1] as number, c = keyHash[2] as number, d = keyHash[3] as number;
    for (let cell = a & mask; ; cell = (cell + 1) & mask) {
      const slot = table[cell] as number;
      if (slot === empty) return cell;
      const at = slot * hashWords;
      if (hashes[at] === a && hashes[at + 1] === b && hashes[at + 2] === c && hashes[at + 3] === d) return cell;
    }
  }

  /** Removes ring slot `slot` from the table by backward shift, so probes never need tombstones. */
  private unlink(slot: number): void {
    const { table, hashes } = this;
    const mask = table.length - 1;
    let hole = (hashes[slot * hashWords] as number) & mask;
    while (table[hole] !== slot) hole = (hole + 1) & mask;
    for (let cell = (hole + 1) & mask; ; cell = (cell + 1) & mask) {
      const moving = table[cell] as number;
      if (moving === empty) break;
      const home = (hashes[moving * hashWords] as number) & mask;
      // `moving` may fill the hole unless its home lies cyclically in (hole, cell].
      if (((cell - home) & mask) >= ((cell - hole) & mask)) {
        table[hole] = moving;
        hole = cell;
      }
    }
    table[hole] = empty;
  }

  /** Moves the live records to the front of new columns of `capacity` slots and rebuilds the table. */
  private resize(capacity: number): void {
    const oldCapacity = this.queueIds.length;
    const first = Math.min(this.count, oldCapacity - this.head);
    const rest = this.count - first;
    const move = <C extends Uint32Array | Int32Array | Float64Array>(old: C, fresh: C, width: number): C => {
      fresh.set(old.subarray(this.head * width, (this.head + first) * width));
      fresh.set(old.subarray(0, rest * width), first * width);
      return fresh;
    };
    this.hashes = move(this.hashes, new Uint32Array(capacity * hashWords), hashWords);
    this.queueIds = move(this.queueIds, new Int32Array(capacity), 1);
    this.offsets = move(this.offsets, new Float64Array(capacity), 1);
    this.timesMs = move(this.timesMs, new Float64Array(capacity), 1);
    this.head = 0;
    assert(this.rebuildTable(), 'dedup window holds one key hash twice');
  }

  /**
   * A table of twice the ring capacity for records in slots [0, count); false if two share a
   * hash. Records go in by home cell (a counting sort into 4096 runs), so the writes stay near
   * each other instead of one cache miss each: about 3× faster for a million (decode's cost).
   */
  private rebuildTable(): boolean {
    const { hashes, count } = this;
    const size = this.queueIds.length * 2;
    const mask = size - 1;
    const shift = Math.max(0, 31 - Math.clz32(size) - 12);
    const runStarts = new Int32Array((size >>> shift) + 1);
    for (let slot = 0; slot < count; slot++) {
      const run = (((hashes[slot * hashWords] as number) & mask) >>> shift) + 1;
      runStarts[run] = (runStarts[run] as number) + 1;
    }
    for (let run = 1; run < runStarts.length; run++) runStarts[run] = (runStarts[run] as number) + (runStarts[run - 1] as number);
    // Pairs (slot, first hash word), in run order.
    const order = new Uint32Array(2 * count);
    for (let slot = 0; slot < count; slot++) {
      const a = hashes[slot * hashWords] as number;
      const run = (a & mask) >>> shift;
      const k = runStarts[run] as number;
      runStarts[run] = k + 1;
      order[2 * k] = slot;
      order[2 * k + 1] = a;
    }
    const table = new Int32Array(size).fill(empty);
    // Each cell's first hash word, so a probe past an occupied cell rarely reads the ring.
    const cellWords = new Uint32Array(size);
    for (let k = 0; k < count; k++) {
      const slot = order[2 * k] as number;
      const a = order[2 * k + 1] as number;
      let cell = a & mask;
      for (let other = table[cell] as number; other !== empty; other = table[cell] as number) {
        if (cellWords[cell] === a && sameHashTail(hashes, slot, other)) return false;
        cell = (cell + 1) & mask;
      }
      table[cell] = slot;
      cellWords[cell] = a;
    }
    this.table = table;
    return true;
  }
}

/** Whether ring slots `x` and `y` agree on hash words 1..3 (the caller compared word 0). */
function sameHashTail(hashes: Uint32Array, x: number, y: number): boolean {
  const i = x * hashWords, j = y * hashWords;
  return hashes[i + 1] === hashes[j + 1] && hashes[i + 2] === hashes[j + 2] && hashes[i + 3] === hashes[j + 3];
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

  let h1 = hashSeed, h2 = hashSeed, h3 = hashSeed, h4 = hashSeed;
  let at = 0;
  for (const end = (lengthBytes >>> 4) * 4; at < end; at += 4) {
    h1 ^= mixK1(u[at] as number);
    h1 = (rotl(h1, 19) + h2) | 0;
    h1 = (Math.imul(h1, 5) + 0x561ccd1b) | 0;
    h2 ^= mixK2(u[at + 1] as number);
    h2 = (rotl(h2, 17) + h3) | 0;
    h2 = (Math.imul(h2, 5) + 0x0bcaa747) | 0;
    h3 ^= mixK3(u[at + 2] as number);
    h3 = (rotl(h3, 15) + h4) | 0;
    h3 = (Math.imul(h3, 5) + 0x96cd1c35) | 0;
    h4 ^= mixK4(u[at + 3] as number);
    h4 = (rotl(h4, 13) + h1) | 0;
    h4 = (Math.imul(h4, 5) + 0x32ac3b17) | 0;
  }
  // The tail (up to 15 bytes): each word it starts is mixed into its lane, without the lane step.
  const tailBytes = lengthBytes & 15;
  if (tailBytes > 12) h4 ^= mixK4(u[at + 3] as number);
  if (tailBytes > 8) h3 ^= mixK3(u[at + 2] as number);
  if (tailBytes > 4) h2 ^= mixK2(u[at + 1] as number);
  if (tailBytes > 0) h1 ^= mixK1(u[at] as number);

  h1 ^= lengthBytes;
  h2 ^= lengthBytes;
  h3 ^= lengthBytes;
  h4 ^= lengthBytes;
  h1 = (h1 + h2 + h3 + h4) | 0;
  h2 = (h2 + h1) | 0;
  h3 = (h3 + h1) | 0;
  h4 = (h4 + h1) | 0;
  h1 = fmix(h1);
  h2 = fmix(h2);
  h3 = fmix(h3);
  h4 = fmix(h4);
  h1 = (h1 + h2 + h3 + h4) | 0;
  h2 = (h2 + h1) | 0;
  h3 = (h3 + h1) | 0;
  h4 = (h4 + h1) | 0;
  keyHash[0] = h1;
  keyHash[1] = h2;
  keyHash[2] = h3;
  keyHash[3] = h4;
  hashedTopic = topic;
  hashedMessageId = messageId;
}

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

// The per-lane word mixes of MurmurHash3_x86_128 (constants c1..c4 of the reference).
function mixK1(k: number): number {
  return Math.imul(rotl(Math.imul(k, 0x239b961b), 15), 0xab0e9789);
}
function mixK2(k: number): number {
  return Math.imul(rotl(Math.imul(k, 0xab0e9789), 16), 0x38b34ae5);
}
function mixK3(k: number): number {
  return Math.imul(rotl(Math.imul(k, 0x38b34ae5), 17), 0xa1e38b93);
}
function mixK4(k: number): number {
  return Math.imul(rotl(Math.imul(k, 0xa1e38b93), 18), 0x239b961b);
}

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}
