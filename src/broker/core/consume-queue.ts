/**
 * One queue of one topic: offset → (log index, position in the entry's batch, tag, store
 * time), like RocketMQ's ConsumeQueue. Built only from committed entries (F14). Retention drops
 * a prefix: offsets below `minOffset` are gone, and the queue holds offsets
 * `[minOffset, maxOffset)`.
 *
 * A record's position field also says whether the message is a delayed one the timer store
 * delivered (bit 31, `delayedFlag`): such a message's log index may be below the one of the
 * record before it (its send entry is older than the messages stored while it waited).
 * `positionAt` gives the position without the flag.
 *
 * The queue itself is two numbers (its first offset and its count, which snapshots record);
 * its records live behind the QueueRecords port: in files on a broker node
 * (src/server/consume-queue-files.ts), so memory does not grow with the retained messages, or
 * in typed arrays (MemoryQueueRecords) in the simulator and tests.
 */
import { assert } from '../../util/assert.js';
import type { SnapshotReader, SnapshotWriter } from './state-snapshot.js';

/** Which queue: a topic is named by its name and the log index of the entry that created it (a re-created topic starts empty). */
export interface QueueIdentity {
  readonly topic: string;
  readonly topicCreatedAt: number;
  readonly queueId: number;
}

/** Records of offsets `[from, from + count)` as columns. */
export interface QueueColumns {
  readonly logIndexes: Float64Array;
  readonly positions: Uint32Array;
  readonly tagIds: Int32Array;
  readonly storeTimes: Float64Array;
}

/** The records of one queue. Reads are of offsets the queue holds; writes append at the end. */
export interface QueueRecords {
  /** Stores the record of `offset`, which is always the offset after the last one written. */
  write(offset: number, logIndex: number, position: number, tagId: number, storeTimeMs: number): void;
  /** Stores a run of records starting at `from`, the offset after the last one written (restoring a snapshot that carries them). */
  writeColumns(from: number, columns: QueueColumns): void;
  logIndexAt(offset: number): number;
  positionAt(offset: number): number;
  tagIdAt(offset: number): number;
  storeTimeAt(offset: number): number;
  /** Records of `[from, from + count)`, for a snapshot that carries them. */
  readColumns(from: number, count: number): QueueColumns;
  /** Nothing below `offset` will be read again (retention released it). */
  releaseBelow(offset: number): void;
}

/**
 * Where records live. A snapshot that does not carry the records (`recordsDurable`) relies on
 * `sync` having made every record it counts durable.
 */
export interface QueueRecordStore {
  /** True when records survive a restart (files): snapshots then record positions only. */
  readonly recordsDurable: boolean;
  /**
   * The records of a queue that holds `[from, to)`; those must already be stored (a restore
   * from a positions-only snapshot) — if not, it throws naming what is missing.
   */
  open(queue: QueueIdentity, from: number, to: number): QueueRecords;
  /**
   * Makes every record written so far durable, just before a snapshot records how far each
   * queue reaches. `live` are the queues the state still has. Records a queue released, and
   * queues not live, are deleted only at the sync after the one that first saw them so: the
   * previous snapshot, which may still be the newest durable one, can be restored.
   */
  sync(live: readonly QueueIdentity[]): void;
  /** The same records, read only: for reading an earlier snapshot's queues while this store keeps being written. */
  reader(): QueueRecordStore;
}

/** A queue's records are missing or damaged in their store (not a malformed snapshot: the snapshot is fine, the files are not). */
export class QueueRecordsError extends Error {
  override readonly name = 'QueueRecordsError';
}

const initialCapacity = 64;
/** f64 log index + u32 position + i32 tag id + f64 store time. */
export const queueRecordBytes = Float64Array.BYTES_PER_ELEMENT + Uint32Array.BYTES_PER_ELEMENT + Int32Array.BYTES_PER_ELEMENT + Float64Array.BYTES_PER_ELEMENT;

/** Records in typed-array columns that double when full and shrink when a quarter full: 24 bytes a message, no object per message. */
export class MemoryQueueRecords implements QueueRecords {
  private logIndexes = new Float64Array(initialCapacity);
  private positions = new Uint32Array(initialCapacity);
  private tagIds = new Int32Array(initialCapacity);
  private storeTimes = new Float64Array(initialCapacity);
  private count = 0;

  /** `base` is the offset of the first element of each column. */
  constructor(private base = 0) {}

  write(offset: number, logIndex: number, position: number, tagId: number, storeTimeMs: number): void {
    assert(offset === this.base + this.count, `queue record ${offset} written after ${this.base + this.count - 1}`);
    if (this.count === this.logIndexes.length) this.resize(this.logIndexes.length * 2);
    const slot = this.count++;
    this.logIndexes[slot] = logIndex;
    this.positions[slot] = position;
    this.tagIds[slot] = tagId;
    this.storeTimes[slot] = storeTimeMs;
  }

  writeColumns(from: number, columns: QueueColumns): void {
    assert(from === this.base + this.count, `queue records from ${from} written after ${this.base + this.count - 1}`);
    const count = columns.logIndexes.length;
    if (this.count + count > this.logIndexes.length) this.resize(Math.max(initialCapacity, (this.count + count) * 2));
    this.logIndexes.set(columns.logIndexes, this.count);
    this.positions.set(columns.positions, this.count);
    this.tagIds.set(columns.tagIds, this.count);
    this.storeTimes.set(columns.storeTimes, this.count);
    this.count += count;
  }

  logIndexAt(offset: number): number { return this.logIndexes[offset - this.base] as number; }
  positionAt(offset: number): number { return this.positions[offset - this.base] as number; }
  tagIdAt(offset: number): number { return this.tagIds[offset - this.base] as number; }
  storeTimeAt(offset: number): number { return this.storeTimes[offset - this.base] as number; }

  readColumns(from: number, count: number): QueueColumns {
    const start = from - this.base;
    assert(start >= 0 && start + count <= this.count, `queue records [${from}, ${from + count}) are not held`);
    return {
      logIndexes: this.logIndexes.subarray(start, start + count),
      positions: this.positions.subarray(start, start + count),
      tagIds: this.tagIds.subarray(start, start + count),
      storeTimes: this.storeTimes.subarray(start, start + count),
    };
  }

  releaseBelow(offset: number): void {
    const released = Math.min(offset - this.base, this.count);
    if (released <= 0) return;
    this.logIndexes.copyWithin(0, released, this.count);
    this.positions.copyWithin(0, released, this.count);
    this.tagIds.copyWithin(0, released, this.count);
    this.storeTimes.copyWithin(0, released, this.count);
    this.count -= released;
    this.base += released;
    // Memory follows the retained messages, not the history.
    if (this.count < this.logIndexes.length / 4 && this.logIndexes.length > initialCapacity) this.resize(Math.max(initialCapacity, this.count * 2));
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

/** Records in memory: nothing survives the process, so snapshots carry the records themselves. */
export const memoryQueueRecordStore: QueueRecordStore = {
  recordsDurable: false,
  open(queue: QueueIdentity, from: number, to: number): QueueRecords {
    assert(from === to, `queue ${queue.topic}/${queue.queueId}: memory records cannot hold [${from}, ${to}) after a restart`);
    return new MemoryQueueRecords(from);
  },
  sync(): void {},
  reader(): QueueRecordStore { return memoryQueueRecordStore; },
};

/** Set in a stored position: the message is a delivered delayed one (F8). */
const delayedFlag = 0x8000_0000;

export class ConsumeQueue {
  private constructor(
    readonly identity: QueueIdentity,
    private readonly records: QueueRecords,
    /** The first offset still held (everything before was released by retention). */
    private base: number,
    private count: number,
  ) {}

  /** A new, empty queue. */
  static create(store: QueueRecordStore, identity: QueueIdentity): ConsumeQueue {
    return new ConsumeQueue(identity, store.open(identity, 0, 0), 0, 0);
  }

  /**
   * f64 first offset, u32 count; with `withRecords`, then the four columns of `count` values
   * (f64 log index, u32 position, i32 tag id, f64 store time) as bulk bytes.
   */
  encodeInto(writer: SnapshotWriter, withRecords: boolean): void {
    writer.f64(this.base);
    writer.u32(this.count);
    if (!withRecords) return;
    const columns = this.records.readColumns(this.base, this.count);
    writer.column(columns.logIndexes, this.count);
    writer.column(columns.positions, this.count);
    writer.column(columns.tagIds, this.count);
    writer.column(columns.storeTimes, this.count);
  }

  /**
   * Reads what encodeInto wrote; the reader throws if the bytes run out. Records carried in
   * the snapshot are written to `store`; otherwise `store` must already hold them.
   */
  static decode(reader: SnapshotReader, withRecords: boolean, store: QueueRecordStore, identity: QueueIdentity): ConsumeQueue {
    const base = reader.f64();
    if (!Number.isSafeInteger(base) || base < 0) throw new Error(`a consume queue starting at offset ${base}`);
    const count = reader.u32();
    if (!withRecords) return new ConsumeQueue(identity, store.open(identity, base, base + count), base, count);
    reader.need(count * queueRecordBytes, `a consume queue of ${count} messages`);
    const columns: QueueColumns = {
      logIndexes: reader.column(Float64Array, count, count),
      positions: reader.column(Uint32Array, count, count),
      tagIds: reader.column(Int32Array, count, count),
      storeTimes: reader.column(Float64Array, count, count),
    };
    const records = store.open(identity, base, base);
    records.writeColumns(base, columns);
    return new ConsumeQueue(identity, records, base, count);
  }

  /** The next offset to be written; equal to the number of messages ever stored. */
  get maxOffset(): number {
    return this.base + this.count;
  }

  /** The first offset still held (retention released everything before it). */
  get minOffset(): number {
    return this.base;
  }

  /** `delayed`: a delayed message delivered by the timer store (its send entry may be older than earlier records'). */
  append(logIndex: number, position: number, tagId: number, storeTimeMs: number, delayed = false): number {
    assert(Number.isInteger(position) && position >= 0 && position < delayedFlag, `queue record position ${position}`);
    const offset = this.base + this.count;
    this.records.write(offset, logIndex, delayed ? (position | delayedFlag) >>> 0 : position, tagId, storeTimeMs);
    this.count++;
    return offset;
  }

  // Callers read offsets in [minOffset, maxOffset) only (BrokerState clamps every cursor to it).
  logIndexAt(offset: number): number { return this.records.logIndexAt(offset); }
  positionAt(offset: number): number { return (this.records.positionAt(offset) & ~delayedFlag) >>> 0; }
  /** Whether the message at `offset` is a delayed one the timer store delivered. */
  isDelayedAt(offset: number): boolean { return this.records.positionAt(offset) >= delayedFlag; }
  tagIdAt(offset: number): number { return this.records.tagIdAt(offset); }
  storeTimeAt(offset: number): number { return this.records.storeTimeAt(offset); }

  /** The first offset stored at or after `timeMs` (maxOffset when none): store times never decrease. */
  offsetAtTime(timeMs: number): number {
    let low = this.base;
    let high = this.base + this.count;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.records.storeTimeAt(mid) < timeMs) low = mid + 1;
      else high = mid;
    }
    return low;
  }

  /**
   * The last offset whose entry is at or before `logIndex`, or undefined. Log indexes increase
   * with the offset in a topic's queues (not in a DLQ, whose entries point back at old ones,
   * nor at delivered delayed messages, which point back at their send entries).
   */
  lastOffsetThroughLogIndex(logIndex: number): number | undefined {
    let low = this.base;
    let high = this.base + this.count;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.records.logIndexAt(mid) <= logIndex) low = mid + 1;
      else high = mid;
    }
    return low === this.base ? undefined : low - 1;
  }

  /**
   * Retention: releases the leading entries whose log entry is at or before `logIndex` and
   * returns how many went. Stops at the first later one (a DLQ's out-of-order references
   * stay until the entries before them go; readers skip the released ones).
   */
  releaseThrough(logIndex: number): number {
    const end = this.base + this.count;
    let first = this.base;
    while (first < end && this.records.logIndexAt(first) <= logIndex) first++;
    const released = first - this.base;
    if (released === 0) return 0;
    this.base = first;
    this.count -= released;
    this.records.releaseBelow(first);
    return released;
  }
}
