/**
 * Fixed-size records in files: the one mechanism under the consume-queue files
 * (consume-queue-files.ts) and the send de-duplication files (dedup-files.ts).
 *
 * A stream numbers its records 0, 1, 2, … (a queue's offsets, the dedup ring's sequence
 * numbers); record `n` lives in the file of the `recordsPerFile` records from
 * `floor(n / recordsPerFile) * recordsPerFile`, named by that first number in 20 digits plus
 * the format's suffix, at byte `(n mod recordsPerFile) * recordBytes`. Records are written in
 * order and never rewritten in place, except when a restore starts the stream again at a
 * number already written: then it writes the same records again (both stores' records are a
 * function of the committed log, so a record's bytes are the same on every node and every
 * replay).
 *
 * Memory does not grow with the records: a written stream keeps one block of 1,024 records
 * (its tail, flushed to the file when full), and reads of older records go through one LRU
 * cache of blocks shared by the store's streams (a fixed byte bound: cacheBlocks × 1,024 ×
 * recordBytes). Apply is synchronous, so is this I/O (the page cache serves nearly all of it).
 *
 * Nothing is synced on the hot path: `sync` (just before a snapshot records how far the stream
 * reaches) writes the tail and fdatasyncs what changed, so a snapshot never counts a record
 * that a power cut could lose. Files released below the stream's first live record are
 * deleted one sync late, so the previous snapshot stays restorable too. Every I/O failure is
 * the format's error class (the node must stop: a record lost on one node only would make its
 * state differ from the others').
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { assert } from '../util/assert.js';

/** Records per block: the unit of the tail, of file writes and of cached reads. */
export const blockRecords = 1024;

/** What a store's records are; the same for all its streams. */
export interface RecordFileFormat {
  readonly recordBytes: number;
  /** A multiple of blockRecords. */
  readonly recordsPerFile: number;
  /** The file name's suffix, with its dot (".cq"). */
  readonly suffix: string;
  /** The records' name in messages ("queue"), and their numbers' ("offset"). */
  readonly noun: string;
  readonly numberName: string;
  /** Every failure of the store is one of these. */
  readonly errorClass: new (message: string, options?: ErrorOptions) => Error;
}

/** A store's state that its streams share. */
export interface RecordFileContext extends RecordFileFormat {
  readonly cache: BlockCache;
  /** Power-loss test mode: each written file's size at its last fdatasync (or when first opened). */
  readonly durableSizes: Map<string, number> | undefined;
  /** Directories whose new entries the next sync must make durable (the data directory, once the store's own is made). */
  readonly pendingDirSyncs: Set<string>;
}

export interface PowerFailCut {
  readonly files: number;
  readonly bytesDiscarded: number;
}

/** Names in `dir`; none if it does not exist yet (nothing was written). */
export function listDir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

export function syncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** `error` as the format's error (unchanged if it already is one), prefixed with what failed. */
export function failure(format: RecordFileFormat, what: string, error: unknown): Error {
  return error instanceof format.errorClass ? error : new format.errorClass(`${what}: ${(error as Error).message}`, { cause: error });
}

/**
 * Power-loss test mode: cuts every file written since its last fdatasync back to its durable
 * size plus a random part of the rest, as a power cut would. The caller ends the process.
 */
export function cutToDurable(durableSizes: ReadonlyMap<string, number>, randomInt: (maxExclusive: number) => number): PowerFailCut {
  let files = 0;
  let bytesDiscarded = 0;
  for (const [filePath, durable] of durableSizes) {
    let size: number;
    try {
      size = fs.statSync(filePath).size;
    } catch {
      continue; // deleted since
    }
    if (size <= durable) continue;
    const kept = durable + randomInt(size - durable + 1);
    fs.truncateSync(filePath, kept);
    files++;
    bytesDiscarded += size - kept;
  }
  return { files, bytesDiscarded };
}

/** Least-recently-used blocks of records, keyed by stream generation and block number. */
export class BlockCache {
  private readonly blocks = new Map<string, Buffer>();
  constructor(private readonly capacity: number) {
    assert(Number.isSafeInteger(capacity) && capacity >= 0, `a block cache of ${capacity} blocks`);
  }

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

/**
 * One stream's files in `dir`: records `[releasedBelow, next)` are readable; a tail block in
 * memory, the rest read through the shared cache. Field writes go straight into the view
 * `appendView` returns, at byte `located` (no allocation per record).
 */
export class RecordStream {
  /** After `locate` or `appendView`: the record's byte offset in the view returned. */
  located = 0;
  private readonly fds = new Map<number, number>();
  private readonly dirtyFiles = new Set<number>();
  private readonly blockBytes: number;
  private createdFiles = false;
  private dirCreated = false;
  private nextValue: number;
  /** The first number of the block `tail` holds (a multiple of 1,024); records [tailStart, next) are in it. */
  private tailStart: number;
  private tail: Buffer | undefined;
  private tailView: DataView | undefined;
  /** The block read last, for the common run of reads of neighbouring records. */
  private lastBlockNo = -1;
  private lastBlock: DataView | undefined;
  private releasedBelow: number;
  private releasedBelowAtLastSync: number;
  private closed = false;
  private readonly fileNamePattern: RegExp;

  constructor(
    private readonly context: RecordFileContext,
    readonly dir: string,
    private readonly generation: number,
    from: number,
    to: number,
    private readonly readOnly: boolean,
  ) {
    assert(Number.isSafeInteger(from) && Number.isSafeInteger(to) && from >= 0 && to >= from, `${context.noun} records [${from}, ${to})`);
    assert(context.recordsPerFile % blockRecords === 0, `${context.noun} records per file must be a multiple of ${blockRecords}`);
    this.blockBytes = blockRecords * context.recordBytes;
    this.fileNamePattern = new RegExp(`^(\\d{20})${context.suffix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);
    this.nextValue = to;
    this.tailStart = to - (to % blockRecords);
    this.releasedBelow = from;
    this.releasedBelowAtLastSync = from;
    if (to > from) this.checkHeld(from, to);
    if (!readOnly && this.tailStart < to && to > from) {
      // The tail block is partly written: keep writing it from memory (records below `from`
      // in it are released, but still in the file, which holds `from`).
      this.ensureTail();
      (this.tail as Buffer).set(this.readBlock(this.tailStart / blockRecords, to - this.tailStart).subarray(0, (to - this.tailStart) * context.recordBytes));
    }
  }

  /** The number the next record written gets. */
  get next(): number {
    return this.nextValue;
  }

  /** The view to write record `index` (always `next`) into, at byte `located`; counts the record written. */
  appendView(index: number): DataView {
    if (this.readOnly || this.closed) assert(false, `writing to a read-only or closed ${this.context.noun} file`);
    if (index !== this.nextValue) assert(false, `${this.context.noun} record ${index} written after ${this.nextValue - 1}`);
    if (this.nextValue - this.tailStart === blockRecords) {
      this.flushTail();
      this.tailStart = this.nextValue;
    }
    const view = this.tailView ?? this.ensureTail();
    this.located = (this.nextValue - this.tailStart) * this.context.recordBytes;
    this.nextValue++;
    return view;
  }

  /** The view holding record `index`; the record's byte offset in it goes to `located` (no allocation per read). */
  locate(index: number): DataView {
    if (!(index >= this.releasedBelow && index < this.nextValue)) {
      assert(false, `${this.context.noun} record ${index} is not held (holding [${this.releasedBelow}, ${this.nextValue}))`);
    }
    if (index >= this.tailStart && this.tailView !== undefined) {
      this.located = (index - this.tailStart) * this.context.recordBytes;
      return this.tailView;
    }
    const blockNo = Math.floor(index / blockRecords);
    if (blockNo !== this.lastBlockNo || this.lastBlock === undefined) {
      const key = `${this.generation}:${blockNo}`;
      let block = this.context.cache.get(key);
      if (block === undefined) {
        block = this.readBlock(blockNo, Math.min(blockRecords, this.nextValue - blockNo * blockRecords));
        this.context.cache.put(key, block);
      }
      this.lastBlockNo = blockNo;
      this.lastBlock = new DataView(block.buffer, block.byteOffset, block.length);
    }
    this.located = (index - blockNo * blockRecords) * this.context.recordBytes;
    return this.lastBlock;
  }

  /**
   * The bytes of records `[from, from + count)` into `into` (at least count × recordBytes
   * long), read straight from the files and the tail, past the cache: for scans, which would
   * only push out of the cache what the reads of single records need.
   */
  copyRange(from: number, count: number, into: Uint8Array): void {
    const { recordBytes, recordsPerFile } = this.context;
    assert(from >= this.releasedBelow && count >= 0 && from + count <= this.nextValue, `${this.context.noun} records [${from}, ${from + count}) are not held (holding [${this.releasedBelow}, ${this.nextValue}))`);
    assert(into.byteLength >= count * recordBytes, `${count} ${this.context.noun} records into ${into.byteLength} bytes`);
    const end = from + count;
    // Below the tail: from the files, a file at a time.
    const fileEnd = this.tailView === undefined ? end : Math.min(end, this.tailStart);
    for (let at = from; at < fileEnd;) {
      const file = Math.floor(at / recordsPerFile);
      const upTo = Math.min(fileEnd, (file + 1) * recordsPerFile);
      this.readFully(file, (at - file * recordsPerFile) * recordBytes, into.subarray((at - from) * recordBytes, (upTo - from) * recordBytes), upTo - 1);
      at = upTo;
    }
    const tailFrom = Math.max(from, fileEnd);
    if (tailFrom < end) {
      const tail = this.tail as Buffer;
      into.set(tail.subarray((tailFrom - this.tailStart) * recordBytes, (end - this.tailStart) * recordBytes), (tailFrom - from) * recordBytes);
    }
  }

  /** Nothing below `index` will be read again. */
  releaseBelow(index: number): void {
    if (index > this.releasedBelow) this.releasedBelow = index;
  }

  sync(): void {
    if (this.readOnly || this.closed) return;
    if (this.nextValue > this.tailStart) this.flushTail();
    for (const file of this.dirtyFiles) {
      const fd = this.fd(file, false);
      fs.fdatasyncSync(fd);
      this.context.durableSizes?.set(this.pathOf(file), fs.fstatSync(fd).size);
    }
    this.dirtyFiles.clear();
    if (this.createdFiles) {
      syncDir(this.dir);
      this.createdFiles = false;
    }
    if (this.dirCreated) {
      syncDir(path.dirname(this.dir));
      for (const dir of this.context.pendingDirSyncs) syncDir(dir);
      this.context.pendingDirSyncs.clear();
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
      this.tail = Buffer.alloc(this.blockBytes);
      this.tailView = new DataView(this.tail.buffer, this.tail.byteOffset, this.blockBytes);
    }
    return this.tailView;
  }

  /** Reads block `blockNo`, which must hold at least `records` records on disk. */
  private readBlock(blockNo: number, records: number): Buffer {
    const first = blockNo * blockRecords;
    const file = Math.floor(first / this.context.recordsPerFile);
    const block = Buffer.alloc(this.blockBytes);
    const position = (first - file * this.context.recordsPerFile) * this.context.recordBytes;
    const read = this.readAt(file, block, position);
    if (read < records * this.context.recordBytes) {
      throw new this.context.errorClass(`${this.pathOf(file)} ends at byte ${position + read}; records up to ${this.context.numberName} ${first + records - 1} should be there`);
    }
    return block;
  }

  /** Fills `into` from `file` at `position`; its last record is number `last`. */
  private readFully(file: number, position: number, into: Uint8Array, last: number): void {
    let done = 0;
    while (done < into.byteLength) {
      const read = this.readAt(file, into.subarray(done), position + done);
      if (read === 0) {
        throw new this.context.errorClass(`${this.pathOf(file)} ends at byte ${position + done}; records up to ${this.context.numberName} ${last} should be there`);
      }
      done += read;
    }
  }

  private readAt(file: number, into: Uint8Array, position: number): number {
    // A read-only view keeps no descriptors open: nobody closes it.
    const fd = this.readOnly ? this.openForRead(file) : this.fd(file, false);
    try {
      return fs.readSync(fd, into, 0, into.byteLength, position);
    } catch (error) {
      throw failure(this.context, `reading ${this.pathOf(file)} at byte ${position}`, error);
    } finally {
      if (this.readOnly) fs.closeSync(fd);
    }
  }

  private flushTail(): void {
    const tail = this.tail;
    if (tail === undefined) return;
    const { recordBytes, recordsPerFile } = this.context;
    const file = Math.floor(this.tailStart / recordsPerFile);
    const position = (this.tailStart - file * recordsPerFile) * recordBytes;
    const bytes = (this.nextValue - this.tailStart) * recordBytes;
    let written = 0;
    const fd = this.fd(file, true);
    try {
      while (written < bytes) written += fs.writeSync(fd, tail, written, bytes - written, position + written);
    } catch (error) {
      throw failure(this.context, `writing ${this.pathOf(file)} at byte ${position + written}`, error);
    }
    this.dirtyFiles.add(file);
  }

  /** Every file of `[from, to)` exists and is long enough; else the snapshot cannot be restored here. */
  private checkHeld(from: number, to: number): void {
    const { recordBytes, recordsPerFile, noun, errorClass } = this.context;
    for (let file = Math.floor(from / recordsPerFile); file * recordsPerFile < to; file++) {
      const needed = (Math.min(to, (file + 1) * recordsPerFile) - file * recordsPerFile) * recordBytes;
      let size: number;
      try {
        size = fs.statSync(this.pathOf(file)).size;
      } catch (error) {
        throw new errorClass(`${this.pathOf(file)} is missing (${(error as Error).message}); the snapshot needs ${noun} records [${from}, ${to}) — repair this node from its peers (raftmq repair)`);
      }
      if (size < needed) {
        throw new errorClass(`${this.pathOf(file)} holds ${size} bytes; the snapshot needs ${needed} (${noun} records up to ${to - 1}) — repair this node from its peers (raftmq repair)`);
      }
    }
  }

  private deleteFilesBelow(index: number): void {
    const perFile = this.context.recordsPerFile;
    let removed = false;
    for (const name of listDir(this.dir)) {
      const match = this.fileNamePattern.exec(name);
      if (match === null) continue;
      const first = Number(match[1]);
      if (first + perFile > index) continue;
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
      throw new this.context.errorClass(`cannot open ${this.pathOf(file)}: ${(error as Error).message}`);
    }
  }

  private fd(file: number, create: boolean): number {
    let fd = this.fds.get(file);
    if (fd !== undefined) return fd;
    const { durableSizes, errorClass } = this.context;
    const filePath = this.pathOf(file);
    try {
      fd = fs.openSync(filePath, 'r+');
      if (durableSizes !== undefined && !durableSizes.has(filePath)) durableSizes.set(filePath, fs.fstatSync(fd).size);
    } catch (error) {
      if (!create || (error as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new errorClass(`cannot open ${filePath}: ${(error as Error).message}`);
      }
      try {
        if (!fs.existsSync(this.dir)) {
          // Made durable at the next sync: the store's directory in the data directory, the stream's in the store's.
          if (!fs.existsSync(path.dirname(this.dir))) this.context.pendingDirSyncs.add(path.dirname(path.dirname(this.dir)));
          fs.mkdirSync(this.dir, { recursive: true });
          this.dirCreated = true;
        }
        fd = fs.openSync(filePath, 'w+');
      } catch (createError) {
        throw failure(this.context, `creating ${filePath}`, createError);
      }
      durableSizes?.set(filePath, 0);
      this.createdFiles = true;
    }
    this.fds.set(file, fd);
    return fd;
  }

  private pathOf(file: number): string {
    return path.join(this.dir, `${String(file * this.context.recordsPerFile).padStart(20, '0')}${this.context.suffix}`);
  }
}
