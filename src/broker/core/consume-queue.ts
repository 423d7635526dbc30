/**
 * One queue of one topic: offset → (log index, position in the entry's batch, tag, store
 * time). Columns of typed arrays that double when full, so a queue of millions of messages
 * costs 24 bytes each (up to twice that in spare capacity) and no object per message. Built
 * only from committed entries (F14). In a snapshot it is its count and the four columns as
 * raw bytes (see state-snapshot.ts).
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

  /** u32 count, then the used part of each column: f64 log index, u32 position, i32 tag id, f64 store time. */
  encodeInto(writer: SnapshotWriter): void {
    writer.u32(this.count);
    writer.column(this.logIndexes, this.count);
    writer.column(this.positions, this.count);
    writer.column(this.tagIds, this.count);
    writer.column(this.storeTimes, this.count);
  }

  /** Reads what encodeInto wrote; the reader throws if the bytes run out. */
  static decode(reader: SnapshotReader): ConsumeQueue {
    const queue = new ConsumeQueue();
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
    return this.count;
  }

  append(logIndex: number, position: number, tagId: number, storeTimeMs: number): number {
    if (this.count === this.logIndexes.length) this.grow();
    const offset = this.count++;
    this.logIndexes[offset] = logIndex;
    this.positions[offset] = position;
    this.tagIds[offset] = tagId;
    this.storeTimes[offset] = storeTimeMs;
    return offset;
  }

  logIndexAt(offset: number): number { return this.logIndexes[offset] as number; }
  positionAt(offset: number): number { return this.positions[offset] as number; }
  tagIdAt(offset: number): number { return this.tagIds[offset] as number; }
  storeTimeAt(offset: number): number { return this.storeTimes[offset] as number; }

  /** The first offset stored at or after `timeMs` (maxOffset when none): store times never decrease. */
  offsetAtTime(timeMs: number): number {
    let low = 0;
    let high = this.count;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if ((this.storeTimes[mid] as number) < timeMs) low = mid + 1;
      else high = mid;
    }
    return low;
  }

  private grow(): void {
    const size = this.logIndexes.length * 2;
    const logIndexes = new Float64Array(size);
    logIndexes.set(this.logIndexes);
    const positions = new Uint32Array(size);
    positions.set(this.positions);
    const tagIds = new Int32Array(size);
    tagIds.set(this.tagIds);
    const storeTimes = new Float64Array(size);
    storeTimes.set(this.storeTimes);
    this.logIndexes = logIndexes;
    this.positions = positions;
    this.tagIds = tagIds;
    this.storeTimes = storeTimes;
  }
}
