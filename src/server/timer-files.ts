/**
 * The timer log in files, under the wheel of src/broker/core/timer-store.ts: fixed 64-byte
 * records (the layout there, little-endian, each with a CRC-32), `recordsPerFile` to a file
 * named by its first seq (`<dir>/<first seq, 20 digits>.tl`). Seqs only grow; a file is
 * written only at its end, and records are never changed once written.
 *
 * Memory does not grow with the pending timers: the wheel (40 bytes a slot), one tail block of
 * 256 records (16 KiB, flushed when full) and an LRU cache of 4 KiB pages for reads of older
 * records (a fire reads the slot's chain; a snapshot with records reads every chain). While a
 * slot fires, the records due in it are sorted in a scratch that gives its memory back
 * afterwards. Apply is synchronous, so is this I/O (the page cache serves nearly all of it).
 *
 * Records are derived state, so nothing is synced on the hot path: `sync` (called just before
 * a snapshot records the wheel) writes the tail and fdatasyncs what changed, so a snapshot
 * never counts a record that a power cut could lose. Restoring a positions-only snapshot cuts
 * the log back to the snapshot's end; replay of the log after it then writes the same
 * records again, once. Files below what the chains still need are deleted one sync late, so
 * the previous snapshot stays restorable too. The log keeps everything from the oldest
 * pending record on (garbage included): disk follows the adds of the last maxDelayMs or so.
 *
 * Every I/O failure becomes a TimerRecordsError, which stops the node: a record written on one
 * node only would make its visits differ from the others'.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { assert } from '../util/assert.js';
import type { SnapshotReader } from '../broker/core/state-snapshot.js';
import { cutToDurable, listDir, syncDir } from './record-files.js';
import {
  TimerRecordsError, TimerWheel, decodeTimerPositions, readTimerLogRecord, timerRecordBytes, timerRecordChecksummedBytes,
  timerStoreLimitsDefault, writeTimerLogRecord, type TimerLog, type TimerLogEntry, type TimerRecord, type TimerStore,
  type TimerStoreLimits, type TimerWheelOptions,
} from '../broker/core/timer-store.js';

const pageRecords = 64;
const pageBytes = pageRecords * timerRecordBytes;
const tailRecords = 256;
const tailBytes = tailRecords * timerRecordBytes;
/** 16 MiB files. */
export const timerRecordsPerFileDefault = 1024 * tailRecords;
const cachePagesDefault = 1024;
const fileSuffix = '.tl';

export interface TimerFileStoreOptions extends TimerWheelOptions {
  readonly dir: string;
  readonly limits?: TimerStoreLimits;
  /** A multiple of 256. */
  readonly recordsPerFile?: number;
  /** Pages of 64 records (4 KiB) cached for reads. */
  readonly cachePages?: number;
  /**
   * Test mode (the jepsen harness's power cuts): remember how long each file was at its last
   * fdatasync, so `powerFail` can cut every file back to that plus a random part of what was
   * written since, as a power cut would.
   */
  readonly powerLossTestMode?: boolean;
}

export interface TimerFilesPowerFailReport {
  readonly timerFiles: number;
  readonly timerBytesDiscarded: number;
}

const fileName = (firstSeq: number): string => `${String(firstSeq).padStart(20, '0')}${fileSuffix}`;

function parseFileName(name: string): number | undefined {
  const match = /^(\d{20})\.tl$/.exec(name);
  return match === null ? undefined : Number(match[1]);
}

function failure(what: string, error: unknown): TimerRecordsError {
  return error instanceof TimerRecordsError ? error : new TimerRecordsError(`${what}: ${(error as Error).message}`, { cause: error });
}

/** CRC-32 (IEEE, zlib's) by table; inline because a native call per 60 bytes costs a Buffer view each. */
const crcTable = new Uint32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb8_8320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function checksumOf(bytes: Uint8Array, at: number): number {
  let crc = 0xffff_ffff;
  for (let i = at, end = at + timerRecordChecksummedBytes; i < end; i++) crc = (crcTable[(crc ^ (bytes[i] as number)) & 0xff] as number) ^ (crc >>> 8);
  return (crc ^ 0xffff_ffff) >>> 0;
}

/**
 * The log's files. Seqs [tailStart, end) are in `tail` (the part below `flushedEnd` also in
 * the file); seqs below tailStart are in files, read through the page cache. tailStart is a
 * multiple of 256, so the tail never spans two files.
 */
class FileTimerLog implements TimerLog {
  private started = false;
  private endSeq = 0;
  private tailStart = 0;
  private flushedEnd = 0;
  private tail = Buffer.alloc(tailBytes);
  private tailView = new DataView(this.tail.buffer, this.tail.byteOffset, tailBytes);
  /** Pages of records below tailStart, least recently used first. A record's checksum is checked each time it is read from one. */
  private readonly cache = new Map<number, Buffer>();
  private lastPageNo = -1;
  private lastPage: Buffer | undefined;
  private lastPageView: DataView | undefined;
  private readonly fds = new Map<number, number>();
  private readonly dirtyFiles = new Set<number>();
  private createdFiles = false;
  private dirCreated = false;
  /** Files entirely below this are deleted at the next sync: what the chains needed at the previous one. */
  private releaseBelow = 0;
  /** Power-loss test mode: each written file's size at its last fdatasync (or when first opened). */
  readonly durableSizes: Map<string, number> | undefined;

  constructor(
    readonly dir: string,
    readonly recordsPerFile: number,
    private readonly cachePages: number,
    private readonly readOnly: boolean,
    powerLossTestMode: boolean,
  ) {
    this.durableSizes = powerLossTestMode ? new Map() : undefined;
  }

  get end(): number {
    this.start();
    return this.endSeq;
  }

  /** Bytes held in buffers: the tail and the cached pages. */
  get bufferedBytes(): number {
    return tailBytes + this.cache.size * pageBytes;
  }

  append(record: TimerRecord, prevSeq: number, home: number): number {
    assert(!this.readOnly, 'appending to a read-only view of the timer files');
    this.start();
    if (this.endSeq - this.tailStart === tailRecords) this.rotateTail();
    const at = (this.endSeq - this.tailStart) * timerRecordBytes;
    writeTimerLogRecord(this.tailView, at, record, prevSeq, home);
    this.tailView.setUint32(at + timerRecordChecksummedBytes, checksumOf(this.tail, at), true);
    return this.endSeq++;
  }

  read(seq: number, into: TimerLogEntry): void {
    assert(seq >= 0 && seq < this.endSeq, `timer record ${seq} read, the log ends at ${this.endSeq}`);
    if (seq >= this.tailStart) {
      readTimerLogRecord(this.tailView, (seq - this.tailStart) * timerRecordBytes, into);
      return;
    }
    const pageNo = Math.floor(seq / pageRecords);
    if (pageNo !== this.lastPageNo || this.lastPage === undefined || this.lastPageView === undefined) {
      let page = this.cache.get(pageNo);
      if (page === undefined) {
        page = this.readPage(pageNo);
        this.cachePut(pageNo, page);
      } else {
        this.cache.delete(pageNo);
        this.cache.set(pageNo, page);
      }
      this.lastPageNo = pageNo;
      this.lastPage = page;
      this.lastPageView = new DataView(page.buffer, page.byteOffset, pageBytes);
    }
    const at = (seq - pageNo * pageRecords) * timerRecordBytes;
    this.checkRecord(this.lastPage, at, Math.floor(seq / this.recordsPerFile), seq);
    readTimerLogRecord(this.lastPageView, at, into);
  }

  restart(): void {
    this.start();
    // A new generation, past every file there is: nothing an earlier snapshot needs is overwritten.
    let next = this.endSeq;
    for (const name of listDir(this.dir)) {
      const first = parseFileName(name);
      if (first !== undefined) next = Math.max(next, first + this.recordsPerFile);
    }
    next = Math.ceil(next / this.recordsPerFile) * this.recordsPerFile;
    this.resetTail(next);
  }

  reopen(from: number, end: number): void {
    this.started = true;
    this.checkHeld(from, end);
    if (this.readOnly) {
      this.resetTail(end);
      this.tailStart = end; // no tail: every read goes to the files
      return;
    }
    // What was written after the snapshot goes: replay writes it again.
    const perFile = this.recordsPerFile;
    let removed = false;
    for (const name of listDir(this.dir)) {
      const first = parseFileName(name);
      if (first === undefined) continue;
      const filePath = path.join(this.dir, name);
      if (first >= end) {
        this.closeFile(first / perFile);
        fs.rmSync(filePath, { force: true });
        this.durableSizes?.delete(filePath);
        removed = true;
      } else if (first + perFile > end) {
        const bytes = (end - first) * timerRecordBytes;
        if (fs.statSync(filePath).size > bytes) {
          fs.truncateSync(filePath, bytes);
          this.durableSizes?.set(filePath, bytes);
        }
      }
    }
    if (removed) syncDir(this.dir);
    this.resetTail(end - (end % tailRecords));
    this.endSeq = end;
    this.flushedEnd = end;
    // The partly written tail block comes back into memory (below `from` it is not needed, and its file may be gone).
    const loadFrom = Math.max(from, this.tailStart);
    if (loadFrom < end) {
      const file = Math.floor(loadFrom / perFile);
      const fd = this.fd(file, false);
      const bytes = (end - loadFrom) * timerRecordBytes;
      const at = (loadFrom - this.tailStart) * timerRecordBytes;
      const read = fs.readSync(fd, this.tail, at, bytes, (loadFrom - file * perFile) * timerRecordBytes);
      if (read < bytes) throw new TimerRecordsError(`${this.pathOf(file)} ends early: timer records up to ${end - 1} should be there`);
      for (let seq = loadFrom; seq < end; seq++) this.checkRecord(this.tail, (seq - this.tailStart) * timerRecordBytes, file, seq);
    }
    this.releaseBelow = from;
  }

  /** Makes everything appended durable; deletes the files the previous sync found unneeded, then remembers `liveFrom` for the next. */
  sync(liveFrom: number): void {
    assert(!this.readOnly, 'a read-only view of the timer files cannot sync');
    this.start();
    if (this.endSeq > this.flushedEnd) this.flushTail();
    for (const file of this.dirtyFiles) {
      const fd = this.fd(file, false);
      fs.fdatasyncSync(fd);
      this.durableSizes?.set(this.pathOf(file), fs.fstatSync(fd).size);
    }
    this.dirtyFiles.clear();
    if (this.createdFiles) {
      syncDir(this.dir);
      this.createdFiles = false;
    }
    if (this.dirCreated) {
      syncDir(path.dirname(this.dir));
      this.dirCreated = false;
    }
    let removed = false;
    for (const name of listDir(this.dir)) {
      const first = parseFileName(name);
      if (first === undefined || first + this.recordsPerFile > this.releaseBelow) continue;
      this.closeFile(first / this.recordsPerFile);
      fs.rmSync(path.join(this.dir, name), { force: true });
      removed = true;
    }
    if (removed) syncDir(this.dir);
    this.releaseBelow = liveFrom;
  }

  /** Power-loss test mode: cuts every file back to its durable size plus a random part of the rest. */
  powerFail(randomInt: (maxExclusive: number) => number): TimerFilesPowerFailReport {
    assert(this.durableSizes !== undefined, 'powerFail outside power-loss test mode');
    const cut = cutToDurable(this.durableSizes, randomInt);
    return { timerFiles: cut.files, timerBytesDiscarded: cut.bytesDiscarded };
  }

  close(): void {
    for (const fd of this.fds.values()) fs.closeSync(fd);
    this.fds.clear();
  }

  /** A store that was never restored starts past every file there is (a fresh node finds none). */
  private start(): void {
    if (this.started) return;
    this.started = true;
    this.restart();
  }

  /** The log continues at `seq` with nothing buffered (what was not synced before is not needed any more). */
  private resetTail(seq: number): void {
    this.dirtyFiles.clear();
    this.endSeq = seq;
    this.tailStart = seq;
    this.flushedEnd = seq;
    this.tail = Buffer.alloc(tailBytes);
    this.tailView = new DataView(this.tail.buffer, this.tail.byteOffset, tailBytes);
    this.cache.clear();
    this.lastPageNo = -1;
    this.lastPage = undefined;
    this.lastPageView = undefined;
  }

  /** The tail block is full: write it, keep its pages in the cache (fires read recent records), start the next. */
  private rotateTail(): void {
    this.flushTail();
    for (let page = 0; page < tailRecords / pageRecords; page++) {
      this.cachePut(this.tailStart / pageRecords + page, this.tail.subarray(page * pageBytes, (page + 1) * pageBytes));
    }
    this.tail = Buffer.alloc(tailBytes);
    this.tailView = new DataView(this.tail.buffer, this.tail.byteOffset, tailBytes);
    this.tailStart = this.endSeq;
  }

  private flushTail(): void {
    const file = Math.floor(this.tailStart / this.recordsPerFile);
    const from = (this.flushedEnd - this.tailStart) * timerRecordBytes;
    const bytes = (this.endSeq - this.flushedEnd) * timerRecordBytes;
    const position = (this.flushedEnd - file * this.recordsPerFile) * timerRecordBytes;
    const fd = this.fd(file, true);
    let written = 0;
    try {
      while (written < bytes) written += fs.writeSync(fd, this.tail, from + written, bytes - written, position + written);
    } catch (error) {
      throw failure(`writing ${this.pathOf(file)} at byte ${position + written}`, error);
    }
    this.dirtyFiles.add(file);
    this.flushedEnd = this.endSeq;
  }

  private cachePut(pageNo: number, page: Buffer): void {
    this.cache.set(pageNo, page);
    if (this.cache.size > this.cachePages) this.cache.delete(this.cache.keys().next().value as number);
  }

  /** Reads page `pageNo`, which must hold every record of it below `end`. */
  private readPage(pageNo: number): Buffer {
    const firstSeq = pageNo * pageRecords;
    const file = Math.floor(firstSeq / this.recordsPerFile);
    const page = Buffer.allocUnsafe(pageBytes); // only records below `end` are read, and those are checked to be there
    const position = (firstSeq - file * this.recordsPerFile) * timerRecordBytes;
    const needed = Math.min(pageRecords, this.endSeq - firstSeq);
    // A read-only view keeps no descriptors open: nobody closes it.
    const fd = this.readOnly ? this.openForRead(file) : this.fd(file, false);
    let read: number;
    try {
      read = fs.readSync(fd, page, 0, pageBytes, position);
    } catch (error) {
      throw failure(`reading ${this.pathOf(file)} at byte ${position}`, error);
    } finally {
      if (this.readOnly) fs.closeSync(fd);
    }
    if (read < needed * timerRecordBytes) {
      throw new TimerRecordsError(`${this.pathOf(file)} ends at byte ${position + read}; timer records up to ${firstSeq + needed - 1} should be there`);
    }
    return page;
  }

  private checkRecord(bytes: Buffer, at: number, file: number, seq: number): void {
    if (bytes.readUInt32LE(at + timerRecordChecksummedBytes) !== checksumOf(bytes, at)) {
      const offset = (seq - file * this.recordsPerFile) * timerRecordBytes;
      throw new TimerRecordsError(`${this.pathOf(file)}: timer record ${seq} at byte ${offset} fails its checksum — repair this node from its peers (raftmq repair)`);
    }
  }

  /** Every file of [from, end) exists and is long enough; else the snapshot cannot be restored here. */
  private checkHeld(from: number, end: number): void {
    const perFile = this.recordsPerFile;
    for (let file = Math.floor(from / perFile); file * perFile < end; file++) {
      const needed = (Math.min(end, (file + 1) * perFile) - file * perFile) * timerRecordBytes;
      let size: number;
      try {
        size = fs.statSync(this.pathOf(file)).size;
      } catch (error) {
        throw new TimerRecordsError(`${this.pathOf(file)} is missing (${(error as Error).message}); the snapshot needs timer records [${from}, ${end}) — repair this node from its peers (raftmq repair)`);
      }
      if (size < needed) {
        throw new TimerRecordsError(`${this.pathOf(file)} holds ${size} bytes; the snapshot needs ${needed} (timer records up to ${end - 1}) — repair this node from its peers (raftmq repair)`);
      }
    }
  }

  private closeFile(file: number): void {
    const fd = this.fds.get(file);
    if (fd !== undefined) fs.closeSync(fd);
    this.fds.delete(file);
  }

  private openForRead(file: number): number {
    try {
      return fs.openSync(this.pathOf(file), 'r');
    } catch (error) {
      throw new TimerRecordsError(`cannot open ${this.pathOf(file)}: ${(error as Error).message}`);
    }
  }

  private fd(file: number, create: boolean): number {
    let fd = this.fds.get(file);
    if (fd !== undefined) return fd;
    const filePath = this.pathOf(file);
    try {
      fd = fs.openSync(filePath, 'r+');
      if (this.durableSizes !== undefined && !this.durableSizes.has(filePath)) this.durableSizes.set(filePath, fs.fstatSync(fd).size);
    } catch (error) {
      if (!create || (error as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new TimerRecordsError(`cannot open ${filePath}: ${(error as Error).message}`);
      }
      try {
        if (!fs.existsSync(this.dir)) {
          fs.mkdirSync(this.dir, { recursive: true });
          this.dirCreated = true;
        }
        fd = fs.openSync(filePath, 'w+');
      } catch (createError) {
        throw failure(`creating ${filePath}`, createError);
      }
      this.durableSizes?.set(filePath, 0);
      this.createdFiles = true;
    }
    this.fds.set(file, fd);
    return fd;
  }

  private pathOf(file: number): string {
    return path.join(this.dir, fileName(file * this.recordsPerFile));
  }
}

/** Wraps what the log throws, so apply sees a TimerRecordsError (an assertion stays what it is). */
class GuardedLog implements TimerLog {
  constructor(private readonly files: FileTimerLog) {}
  get end(): number {
    return this.guard('opening', () => this.files.end);
  }
  append(record: TimerRecord, prevSeq: number, home: number): number {
    return this.guard('appending to', () => this.files.append(record, prevSeq, home));
  }
  read(seq: number, into: TimerLogEntry): void {
    this.guard('reading', () => this.files.read(seq, into));
  }
  restart(): void {
    this.guard('restarting', () => this.files.restart());
  }
  reopen(from: number, end: number): void {
    this.guard('reopening', () => this.files.reopen(from, end));
  }
  private guard<T>(what: string, run: () => T): T {
    try {
      return run();
    } catch (error) {
      if ((error as Error).name === 'InvariantViolation') throw error;
      throw failure(`${what} the timer files in ${this.files.dir}`, error);
    }
  }
}

/**
 * The shipped TimerStore: the wheel in memory (and in each positions-only snapshot), the log
 * in files. The wheel defaults to 65,536 slots (18 hours at 1 s; 2.6 MiB).
 */
export class TimerFileStore extends TimerWheel {
  readonly recordsDurable = true;
  private readonly files: FileTimerLog;
  /** log.end at the last sync: a positions-only snapshot may count nothing after it. */
  private syncedEnd: number | undefined;

  /** `readOnly` is for reader(): it never writes, truncates or deletes. */
  constructor(private readonly fileOptions: TimerFileStoreOptions, private readonly readOnly = false) {
    const recordsPerFile = fileOptions.recordsPerFile ?? timerRecordsPerFileDefault;
    assert(Number.isSafeInteger(recordsPerFile) && recordsPerFile > 0 && recordsPerFile % tailRecords === 0, `timer records per file must be a multiple of ${tailRecords}`);
    const cachePages = fileOptions.cachePages ?? cachePagesDefault;
    assert(Number.isSafeInteger(cachePages) && cachePages >= 1, `a timer page cache of ${cachePages} pages`);
    const files = new FileTimerLog(fileOptions.dir, recordsPerFile, cachePages, readOnly, fileOptions.powerLossTestMode === true);
    super(new GuardedLog(files), fileOptions.limits ?? timerStoreLimitsDefault, fileOptions, 65_536);
    this.files = files;
  }

  get dir(): string {
    return this.fileOptions.dir;
  }

  /** What memory holds: the wheel, the scratch, the tail block and the page cache — not the pending records. */
  override get heapBytes(): number {
    return super.heapBytes + this.files.bufferedBytes;
  }

  sync(): void {
    assert(!this.readOnly, 'a read-only view of the timer files cannot sync');
    try {
      this.files.sync(this.minLiveSeq());
    } catch (error) {
      if ((error as Error).name === 'InvariantViolation') throw error;
      throw failure(`syncing the timer files in ${this.dir}`, error);
    }
    this.syncedEnd = this.files.end;
  }

  protected override checkSynced(): void {
    assert(this.readOnly || this.syncedEnd === this.files.end, `a positions-only timer snapshot without a sync of everything before it (synced to ${this.syncedEnd}, log at ${this.files.end})`);
  }

  restore(reader: SnapshotReader, withRecords: boolean): void {
    assert(!this.readOnly || !withRecords, 'a read-only view of the timer files restores positions only');
    if (withRecords) {
      this.restoreRecords(reader);
      return;
    }
    const positions = decodeTimerPositions(reader);
    if (positions.wheelSlots === this.wheelSlots && positions.cascadeSlots === this.cascadeSlots && positions.precisionMs === this.limits.precisionMs) {
      this.applyPositions(positions);
      this.syncedEnd = this.files.end;
      return;
    }
    // The wheel was configured otherwise when the snapshot was taken: read its records with
    // that shape, and place them again in this one (a new generation of files).
    const earlier = new TimerFileStore({
      ...this.fileOptions,
      limits: { ...this.limits, precisionMs: positions.precisionMs },
      wheelSlots: positions.wheelSlots,
      cascadeSlots: positions.cascadeSlots,
    }, true);
    earlier.applyPositions(positions);
    this.resetWithRecords(positions.firedThroughMs, earlier.collectPending());
  }

  reader(): TimerStore {
    return new TimerFileStore(this.fileOptions, true);
  }

  /**
   * Power-loss test mode: cuts every file written since its last fdatasync back to its
   * durable size plus a random part of the rest. The caller ends the store right after.
   */
  powerFail(randomInt: (maxExclusive: number) => number): TimerFilesPowerFailReport {
    return this.files.powerFail(randomInt);
  }

  /** Closes every file (the node is stopping); unsynced records are lost, as after a crash. */
  close(): void {
    this.files.close();
  }
}
