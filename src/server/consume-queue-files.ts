/**
 * Consume-queue records in files, like RocketMQ's ConsumeQueue: fixed 24-byte records (f64
 * log index, u32 position, i32 tag id, f64 store time, little-endian), `recordsPerFile` to a
 * file named by its first offset, one directory per queue
 * (`<topic, URI-encoded>@<createdAt>-<queueId>/<first offset, 20 digits>.cq`).
 *
 * Memory does not grow with the retained messages: each written queue keeps one block of
 * 1,024 records (its tail, flushed to the file when full), and reads of older records go
 * through one LRU cache of blocks shared by all queues. Apply is synchronous, so is this I/O
 * (the page cache serves nearly all of it).
 *
 * Records are derived state, so nothing is synced on the hot path: `sync` (called just
 * before a snapshot records how far each queue reaches) writes the tails and fdatasyncs
 * what changed, so a snapshot never counts a record that a power cut could lose. Replay after
 * the snapshot rewrites everything past it. Released files and dropped queues are deleted one
 * sync late, so the previous snapshot stays restorable too.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { assert } from '../util/assert.js';
import {
  QueueRecordsError, queueRecordBytes, type QueueColumns, type QueueIdentity, type QueueRecordStore, type QueueRecords,
} from '../broker/core/consume-queue.js';

const blockRecords = 1024;
const blockBytes = blockRecords * queueRecordBytes;
/** 6 MiB files, as RocketMQ's (300,000 × 20 bytes). */
export const recordsPerFileDefault = 256 * blockRecords;
const cacheBlocksDefault = 256;
const fileSuffix = '.cq';

export interface QueueFileStoreOptions {
  readonly dir: string;
  /** A multiple of 1,024. */
  readonly recordsPerFile?: number;
  /** Blocks of 1,024 records (24 KiB) cached for reads, shared by every queue. */
  readonly cacheBlocks?: number;
  /**
   * Test mode (the jepsen harness's power cuts): remember how long each file was at its last
   * fdatasync, so `powerFail` can cut every file back to that plus a random part of what was
   * written since, as a power cut would.
   */
  readonly powerLossTestMode?: boolean;
}

export interface QueueFilesPowerFailReport {
  readonly queueFiles: number;
  readonly queueBytesDiscarded: number;
}

export function queueDirName(queue: QueueIdentity): string {
  return `${encodeURIComponent(queue.topic)}@${queue.topicCreatedAt}-${queue.queueId}`;
}

const fileName = (firstOffset: number): string => `${String(firstOffset).padStart(20, '0')}${fileSuffix}`;

function parseFileName(name: string): number | undefined {
  const match = /^(\d{20})\.cq$/.exec(name);
  return match === null ? undefined : Number(match[1]);
}

/** Names in `dir`; none if it does not exist yet (nothing was written). */
function listDir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

/**
 * Every failure of this store reaches apply as a QueueRecordsError, which stops the node: a
 * record not written on one node only would make its state differ from the others'.
 */
function failure(what: string, error: unknown): QueueRecordsError {
  return error instanceof QueueRecordsError ? error : new QueueRecordsError(`${what}: ${(error as Error).message}`, { cause: error });
}

function syncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Least-recently-used blocks of records, keyed by queue generation and block number. */
class BlockCache {
  private readonly blocks = new Map<string, Buffer>();
  constructor(private readonly capacity: number) {}

  get(key: string): Buffer | undefined {
    const block = this.blocks.get(key);
    if (block !== undefined) {
      this.blocks.delete(key);
      this.blocks.set(key, block);
    }
    return block;
  }

  put(key: string, block: Buffer): void {
    this.blocks.set(key, block);
    if (this.blocks.size > this.capacity) this.blocks.delete(this.blocks.keys().next().value as string);
  }
}

export class QueueFileStore implements QueueRecordStore {
  readonly recordsDurable = true;
  readonly recordsPerFile: number;
  /** Shared by every queue's reads; keys carry the queue's generation. */
  readonly cache: BlockCache;
  /** The writable records of each queue (by directory name): a restore replaces an entry. */
  private readonly openQueues = new Map<string, FileQueueRecords>();
  private generation = 0;
  /** Queue directories found not live at the previous sync: deleted at this one if still not live. */
  private notLiveAtLastSync = new Set<string>();
  /** Directories whose new entries the next sync must make durable (the data directory, once the store's own is made). */
  readonly pendingDirSyncs = new Set<string>();
  /** Power-loss test mode: each written file's size at its last fdatasync (or when first opened). */
  readonly durableSizes: Map<string, number> | undefined;

  constructor(private readonly options: QueueFileStoreOptions) {
    this.recordsPerFile = options.recordsPerFile ?? recordsPerFileDefault;
    assert(Number.isSafeInteger(this.recordsPerFile) && this.recordsPerFile > 0 && this.recordsPerFile % blockRecords === 0, `records per queue file must be a multiple of ${blockRecords}`);
    this.cache = new BlockCache(options.cacheBlocks ?? cacheBlocksDefault);
    this.durableSizes = options.powerLossTestMode === true ? new Map() : undefined;
    // The directory is made with the first record: the node claims its data directory first.
  }

  /**
   * Power-loss test mode: cuts every file written since its last fdatasync back to its
   * durable size plus a random part of the rest. The caller ends the process right after.
   */
  powerFail(randomInt: (maxExclusive: number) => number): QueueFilesPowerFailReport {
    assert(this.durableSizes !== undefined, 'powerFail outside power-loss test mode');
    let queueFiles = 0;
    let queueBytesDiscarded = 0;
    for (const [filePath, durable] of this.durableSizes) {
      let size: number;
      try {
        size = fs.statSync(filePath).size;
      } catch {
        continue; // deleted since
      }
      if (size <= durable) continue;
      const kept = durable + randomInt(size - durable + 1);
      fs.truncateSync(filePath, kept);
      queueFiles++;
      queueBytesDiscarded += size - kept;
    }
    return { queueFiles, queueBytesDiscarded };
  }

  get dir(): string {
    return this.options.dir;
  }

  open(queue: QueueIdentity, from: number, to: number): QueueRecords {
    const name = queueDirName(queue);
    // A restore replaces the queue: what the old object buffered is superseded.
    this.openQueues.get(name)?.close();
    const records = new FileQueueRecords(this, path.join(this.options.dir, name), this.generation++, from, to, false);
    this.openQueues.set(name, records);
    return records;
  }

  sync(live: readonly QueueIdentity[]): void {
    try {
      this.syncLive(live);
    } catch (error) {
      throw failure(`syncing the queue files in ${this.options.dir}`, error);
    }
  }

  private syncLive(live: readonly QueueIdentity[]): void {
    const liveNames = new Set(live.map(queueDirName));
    for (const [name, records] of this.openQueues) {
      if (liveNames.has(name)) {
        records.sync();
      } else {
        records.close();
        this.openQueues.delete(name);
      }
    }
    const notLive = new Set(listDir(this.options.dir).filter((name) => !liveNames.has(name)));
    let removed = false;
    for (const name of notLive) {
      if (!this.notLiveAtLastSync.has(name)) continue;
      fs.rmSync(path.join(this.options.dir, name), { recursive: true, force: true });
      notLive.delete(name);
      removed = true;
    }
    if (removed) syncDir(this.options.dir);
    this.notLiveAtLastSync = notLive;
  }

  reader(): QueueRecordStore {
    const openReadOnly = (queue: QueueIdentity, from: number, to: number): QueueRecords =>
      new FileQueueRecords(this, path.join(this.options.dir, queueDirName(queue)), this.generation++, from, to, true);
    return {
      recordsDurable: true,
      open: openReadOnly,
      sync(): void {
        throw new Error('a read-only view of the queue files cannot sync');
      },
      reader(): QueueRecordStore {
        return this;
      },
    };
  }

  /** Closes every file (the node is stopping); unsynced records are lost, as after a crash. */
  close(): void {
    for (const records of this.openQueues.values()) records.close();
    this.openQueues.clear();
  }
}

/** One queue's files: a tail block in memory, the rest read through the shared cache. */
class FileQueueRecords implements QueueRecords {
  private readonly fds = new Map<number, number>();
  private readonly dirtyFiles = new Set<number>();
  private createdFiles = false;
  private dirCreated = false;
  private next: number;
  /** The first offset of the block `tail` holds (a multiple of 1,024); records [tailStart, next) are in it. */
  private tailStart: number;
  private tail: Buffer | undefined;
  private tailView: DataView | undefined;
  /** The block read last, for the common run of reads of neighbouring offsets. */
  private lastBlockNo = -1;
  private lastBlock: DataView | undefined;
  private releasedBelow: number;
  private releasedBelowAtLastSync: number;
  private closed = false;
  private located = 0;

  constructor(
    private readonly store: QueueFileStore,
    private readonly dir: string,
    private readonly generation: number,
    from: number,
    to: number,
    private readonly readOnly: boolean,
  ) {
    assert(Number.isSafeInteger(from) && Number.isSafeInteger(to) && from >= 0 && to >= from, `queue records [${from}, ${to})`);
    this.next = to;
    this.tailStart = to - (to % blockRecords);
    this.releasedBelow = from;
    this.releasedBelowAtLastSync = from;
    if (to > from) this.checkHeld(from, to);
    if (!readOnly && this.tailStart < to && to > from) {
      // The tail block is partly written: keep writing it from memory (records below `from`
      // in it are released, but still in the file, which holds `from`).
      this.ensureTail();
      (this.tail as Buffer).set(this.readBlock(this.tailStart / blockRecords, to - this.tailStart).subarray(0, (to - this.tailStart) * queueRecordBytes));
    }
  }

  write(offset: number, logIndex: number, position: number, tagId: number, storeTimeMs: number): void {
    assert(!this.readOnly && !this.closed, 'writing to a read-only or closed queue file');
    assert(offset === this.next, `queue record ${offset} written after ${this.next - 1}`);
    if (this.next - this.tailStart === blockRecords) {
      this.flushTail();
      this.tailStart = this.next;
    }
    const view = this.tailView ?? this.ensureTail();
    const at = (this.next - this.tailStart) * queueRecordBytes;
    view.setFloat64(at, logIndex, true);
    view.setUint32(at + 8, position, true);
    view.setInt32(at + 12, tagId, true);
    view.setFloat64(at + 16, storeTimeMs, true);
    this.next++;
  }

  writeColumns(from: number, columns: QueueColumns): void {
    assert(from === this.next, `queue records from ${from} written after ${this.next - 1}`);
    for (let i = 0; i < columns.logIndexes.length; i++) {
      this.write(from + i, columns.logIndexes[i] as number, columns.positions[i] as number, columns.tagIds[i] as number, columns.storeTimes[i] as number);
    }
  }

  logIndexAt(offset: number): number {
    return this.locate(offset).getFloat64(this.located, true);
  }

  positionAt(offset: number): number {
    return this.locate(offset).getUint32(this.located + 8, true);
  }

  tagIdAt(offset: number): number {
    return this.locate(offset).getInt32(this.located + 12, true);
  }

  storeTimeAt(offset: number): number {
    return this.locate(offset).getFloat64(this.located + 16, true);
  }

  readColumns(from: number, count: number): QueueColumns {
    const columns: QueueColumns = {
      logIndexes: new Float64Array(count), positions: new Uint32Array(count), tagIds: new Int32Array(count), storeTimes: new Float64Array(count),
    };
    for (let i = 0; i < count; i++) {
      const view = this.locate(from + i);
      const at = this.located;
      columns.logIndexes[i] = view.getFloat64(at, true);
      columns.positions[i] = view.getUint32(at + 8, true);
      columns.tagIds[i] = view.getInt32(at + 12, true);
      columns.storeTimes[i] = view.getFloat64(at + 16, true);
    }
    return columns;
  }

  releaseBelow(offset: number): void {
    if (offset > this.releasedBelow) this.releasedBelow = offset;
  }

  sync(): void {
    if (this.readOnly || this.closed) return;
    if (this.next > this.tailStart) this.flushTail();
    for (const file of this.dirtyFiles) {
      const fd = this.fd(file, false);
      fs.fdatasyncSync(fd);
      this.store.durableSizes?.set(this.pathOf(file), fs.fstatSync(fd).size);
    }
    this.dirtyFiles.clear();
    if (this.createdFiles) {
      syncDir(this.dir);
      this.createdFiles = false;
    }
    if (this.dirCreated) {
      syncDir(path.dirname(this.dir));
      for (const dir of this.store.pendingDirSyncs) syncDir(dir);
      this.store.pendingDirSyncs.clear();
      this.dirCreated = false;
    }
    this.deleteFilesBelow(this.releasedBelowAtLastSync);
    this.releasedBelowAtLastSync = this.releasedBelow;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const fd of this.fds.values()) fs.closeSync(fd);
    this.fds.clear();
  }

  private ensureTail(): DataView {
    if (this.tail === undefined || this.tailView === undefined) {
      this.tail = Buffer.alloc(blockBytes);
      this.tailView = new DataView(this.tail.buffer, this.tail.byteOffset, blockBytes);
    }
    return this.tailView;
  }

  /** The view holding `offset`; the record's byte offset in it goes to `located` (no allocation per read). */
  private locate(offset: number): DataView {
    assert(offset >= this.releasedBelow && offset < this.next, `queue record ${offset} is not held (holding [${this.releasedBelow}, ${this.next}))`);
    if (offset >= this.tailStart && this.tailView !== undefined) {
      this.located = (offset - this.tailStart) * queueRecordBytes;
      return this.tailView;
    }
    const blockNo = Math.floor(offset / blockRecords);
    if (blockNo !== this.lastBlockNo || this.lastBlock === undefined) {
      const key = `${this.generation}:${blockNo}`;
      let block = this.store.cache.get(key);
      if (block === undefined) {
        block = this.readBlock(blockNo, Math.min(blockRecords, this.next - blockNo * blockRecords));
        this.store.cache.put(key, block);
      }
      this.lastBlockNo = blockNo;
      this.lastBlock = new DataView(block.buffer, block.byteOffset, block.length);
    }
    this.located = (offset - blockNo * blockRecords) * queueRecordBytes;
    return this.lastBlock;
  }

  /** Reads block `blockNo`, which must hold at least `records` records on disk. */
  private readBlock(blockNo: number, records: number): Buffer {
    const firstOffset = blockNo * blockRecords;
    const file = Math.floor(firstOffset / this.store.recordsPerFile);
    const block = Buffer.alloc(blockBytes);
    const position = (firstOffset - file * this.store.recordsPerFile) * queueRecordBytes;
    // A read-only view keeps no descriptors open: nobody closes it.
    const fd = this.readOnly ? this.openForRead(file) : this.fd(file, false);
    let read: number;
    try {
      read = fs.readSync(fd, block, 0, blockBytes, position);
    } catch (error) {
      throw failure(`reading ${this.pathOf(file)} at byte ${position}`, error);
    } finally {
      if (this.readOnly) fs.closeSync(fd);
    }
    if (read < records * queueRecordBytes) {
      throw new QueueRecordsError(`${this.pathOf(file)} ends at byte ${position + read}; records up to offset ${firstOffset + records - 1} should be there`);
    }
    return block;
  }

  private flushTail(): void {
    const tail = this.tail;
    if (tail === undefined) return;
    const file = Math.floor(this.tailStart / this.store.recordsPerFile);
    const position = (this.tailStart - file * this.store.recordsPerFile) * queueRecordBytes;
    const bytes = (this.next - this.tailStart) * queueRecordBytes;
    let written = 0;
    const fd = this.fd(file, true);
    try {
      while (written < bytes) written += fs.writeSync(fd, tail, written, bytes - written, position + written);
    } catch (error) {
      throw failure(`writing ${this.pathOf(file)} at byte ${position + written}`, error);
    }
    this.dirtyFiles.add(file);
  }

  /** Every file of `[from, to)` exists and is long enough; else the snapshot cannot be restored here. */
  private checkHeld(from: number, to: number): void {
    const perFile = this.store.recordsPerFile;
    for (let file = Math.floor(from / perFile); file * perFile < to; file++) {
      const needed = (Math.min(to, (file + 1) * perFile) - file * perFile) * queueRecordBytes;
      let size: number;
      try {
        size = fs.statSync(this.pathOf(file)).size;
      } catch (error) {
        throw new QueueRecordsError(`${this.pathOf(file)} is missing (${(error as Error).message}); the snapshot needs queue records [${from}, ${to}) — repair this node from its peers (raftmq repair)`);
      }
      if (size < needed) {
        throw new QueueRecordsError(`${this.pathOf(file)} holds ${size} bytes; the snapshot needs ${needed} (queue records up to ${to - 1}) — repair this node from its peers (raftmq repair)`);
      }
    }
  }

  private deleteFilesBelow(offset: number): void {
    const perFile = this.store.recordsPerFile;
    let removed = false;
    for (const name of listDir(this.dir)) {
      const first = parseFileName(name);
      if (first === undefined || first + perFile > offset) continue;
      const file = first / perFile;
      const fd = this.fds.get(file);
      if (fd !== undefined) fs.closeSync(fd);
      this.fds.delete(file);
      fs.rmSync(path.join(this.dir, name), { force: true });
      removed = true;
    }
    if (removed) syncDir(this.dir);
  }

  private openForRead(file: number): number {
    try {
      return fs.openSync(this.pathOf(file), 'r');
    } catch (error) {
      throw new QueueRecordsError(`cannot open ${this.pathOf(file)}: ${(error as Error).message}`);
    }
  }

  private fd(file: number, create: boolean): number {
    let fd = this.fds.get(file);
    if (fd !== undefined) return fd;
    const filePath = this.pathOf(file);
    try {
      fd = fs.openSync(filePath, 'r+');
      if (this.store.durableSizes !== undefined && !this.store.durableSizes.has(filePath)) this.store.durableSizes.set(filePath, fs.fstatSync(fd).size);
    } catch (error) {
      if (!create || (error as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new QueueRecordsError(`cannot open ${filePath}: ${(error as Error).message}`);
      }
      try {
        if (!fs.existsSync(this.dir)) {
          // Made durable at the next sync: the store's directory in the data directory, the queue's in the store's.
          if (!fs.existsSync(path.dirname(this.dir))) this.store.pendingDirSyncs.add(path.dirname(path.dirname(this.dir)));
          fs.mkdirSync(this.dir, { recursive: true });
          this.dirCreated = true;
        }
        fd = fs.openSync(filePath, 'w+');
      } catch (createError) {
        throw failure(`creating ${filePath}`, createError);
      }
      this.store.durableSizes?.set(filePath, 0);
      this.createdFiles = true;
    }
    this.fds.set(file, fd);
    return fd;
  }

  private pathOf(file: number): string {
    return path.join(this.dir, fileName(file * this.store.recordsPerFile));
  }
}
