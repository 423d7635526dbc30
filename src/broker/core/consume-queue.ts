/**
 * One queue of one topic: offset → (log index, position in the entry's batch, tag, store
 * time). Columns of typed arrays that double when full, so a queue of millions of messages
 * costs 24 bytes each (up to twice that in spare capacity) and no object per message. Built
 * only from committed entries (F14). Retention drops a prefix: offsets below `minOffset` are
 * gone, and the columns hold offsets `[minOffset, maxOffset)`. In a snapshot it is its first
 * offset, its count and the four columns as raw bytes (see state-snapshot.ts).
 */
import type { SnapshotReader, SnapshotWriter } from './state-snapshot.js';

const initialCapacity = 64;
/** f64 log index + u32 position + i32 tag id + f64 store time. */
const bytesPerMessage = Float64Array.BYTES_PER_ELEMENT + Uint32Array.BYTES_PER_ELEMENT + Int32Array.BYTES_PER_ELEMENT + Float64Array.BYTES_PER_ELEMENT;

export class ConsumeQueue {
  private logIndexes = new Float64Array(initialCapacity);
  private positions = new Uint32Array(initialCapacity);
  private tagIds = new Int32Array(initialCapacity);
  private storeTimes = new Float64Array(initialCapacity);
  private count = 0;
  /** The offset of the first element of each column (everything before was released by retention). */
  private base = 0;

  /** f64 first offset, u32 count, then the used part of each column: f64 log index, u32 position, i32 tag id, f64 store time. */
  encodeInto(writer: SnapshotWriter): void {
    writer.f64(this.base);
    writer.u32(this.count);
    writer.column(this.logIndexes, this.count);
    writer.column(this.positions, this.count);
    writer.column(this.tagIds, this.count);
    writer.column(this.storeTimes, this.count);
  }

  /** Reads what encodeInto wrote; the reader throws if the bytes run out. */
  static decode(reader: SnapshotReader): ConsumeQueue {
    const queue = new ConsumeQueue();
    const base = reader.f64();
    if (!Number.isSafeInteger(base) || base < 0) throw new Error(`a consume queue starting at offset ${base}`);
    queue.base = base;
    const count = reader.u32();
    reader.need(count * bytesPerMessage, `a consume queue of ${count} messages`);
    const capacity = Math.max(initialCapacity, count);
    queue.logIndexes = reader.column(Float64Array, count, capacity);
    queue.positions = reader.column(Uint32Array, count, capacity);
    queue.tagIds = reader.column(Int32Array, count, capacity);
    queue.storeTimes = reader.column(Float64Array, count, capacity);
    queue.count = count;
    return queue;
  }

  /** The next offset to be written; equal to the number of messages ever stored. */
  get maxOffset(): number {
    return this.base + this.count;
  }

  /** The first offset still held (retention released everything before it). */
  get minOffset(): number {
    return this.base;
  }

  append(logIndex: number, position: number, tagId: number, storeTimeMs: number): number {
    if (this.count === this.logIndexes.length) this.grow();
    const slot = this.count++;
    this.logIndexes[slot] = logIndex;
    this.positions[slot] = position;
    this.tagIds[slot] = tagId;
    this.storeTimes[slot] = storeTimeMs;
    return this.base + slot;
  }

  // Callers read offsets in [minOffset, maxOffset) only (BrokerState clamps every cursor to it).
  logIndexAt(offset: number): number { return this.logIndexes[offset - this.base] as number; }
  positionAt(offset: number): number { return this.positions[offset - this.base] as number; }
  tagIdAt(offset: number): number { return this.tagIds[offset - this.base] as number; }
  storeTimeAt(offset: number): number { return this.storeTimes[offset - this.base] as number; }

  /** The first offset stored at or after `timeMs` (maxOffset when none): store times never decrease. */
  offsetAtTime(timeMs: number): number {
    let low = 0;
    let high = this.count;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if ((this.storeTimes[mid] as number) < timeMs) low = mid + 1;
      else high = mid;
    }
    return this.base + low;
  }

  /**
   * The last offset whose entry is at or before `logIndex`, or undefined. Log indexes increase
   * with the offset in a topic's queues (not in a DLQ, whose entries point back at old ones).
   */
  lastOffsetThroughLogIndex(logIndex: number): number | undefined {
    let low = 0;
    let high = this.count;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if ((this.logIndexes[mid] as number) <= logIndex) low = mid + 1;
      else high = mid;
    }
    return low === 0 ? undefined : this.base + low - 1;
  }

  /**
   * Retention: releases the leading entries whose log entry is at or before `logIndex` and
   * returns how many went. Stops at the first later one (a DLQ's out-of-order references
   * stay until the entries before them go; readers skip the released ones).
   */
  releaseThrough(logIndex: number): number {
    let released = 0;
    while (released < this.count && (this.logIndexes[released] as number) <= logIndex) released++;
    if (released === 0) return 0;
    this.logIndexes.copyWithin(0, released, this.count);
    this.positions.copyWithin(0, released, this.count);
    this.tagIds.copyWithin(0, released, this.count);
    this.storeTimes.copyWithin(0, released, this.count);
    this.count -= released;
    this.base += released;
    if (this.count < this.logIndexes.length / 4 && this.logIndexes.length > initialCapacity) this.shrink();
    return released;
  }

  private grow(): void {
    this.resize(this.logIndexes.length * 2);
  }

  /** Memory follows the retained messages, not the history. */
  private shrink(): void {
    this.resize(Math.max(initialCapacity, this.count * 2));
  }

  private resize(size: number): void {
    const logIndexes = new Float64Array(size);
    logIndexes.set(this.logIndexes.subarray(0, this.count));
    const positions = new Uint32Array(size);
    positions.set(this.positions.subarray(0, this.count));
    const tagIds = new Int32Array(size);
    tagIds.set(this.tagIds.subarray(0, this.count));
    const storeTimes = new Float64Array(size);
    storeTimes.set(this.storeTimes.subarray(0, this.count));
    this.logIndexes = logIndexes;
    this.positions = positions;
    this.tagIds = tagIds;
    this.storeTimes = storeTimes;
  }
}
