/**
 * The message index in files (the layout of src/broker/core/message-index.ts), like
 * RocketMQ's IndexFile: in `dir`, one file per `entriesPerFile` entries, named by its first
 * entry's number (`<20 digits>.idx`):
 *
 *   entries:  entriesPerFile × 32 bytes (f64 key hash, f64 log index, f64 time, u32 previous, u32 kind << 24 | position)
 *   slots:    slotsPerFile × u32            written once, when the file is full
 *   footer:   "RMQI" | u32 version = 1 | u32 entriesPerFile | u32 slotsPerFile | f64 first entry | 8 zero bytes
 *
 * The file being written holds entries only (its slot table is in memory until it is
 * full); every file below it is sealed (slots and footer present). Nothing is rewritten in
 * place: entries append, a seal appends after them, so the files an earlier snapshot counted
 * stay as it saw them. (RocketMQ updates each file's slot table in place on every put, so
 * its files cannot be read back as of an earlier point; here the table of the file being
 * written is rebuilt on restore by scanning that file's entries, at most one file.)
 *
 * Default layout: 2^20 entries (32 MiB) and 2^18 slots (1 MiB, four entries a slot when full)
 * per file, against RocketMQ's 20M entries and 5M slots (400 MiB files): on a 2-core dev box
 * a restore scans at most 32 MiB to rebuild the slot table, the table in memory is 1 MiB, and
 * a file is about 300k messages (id, a key and two trace events each) — a few seconds of
 * full-speed sending, so retention frees space in small steps.
 *
 * Memory, fixed by the options, whatever the number of entries: the slot table (4 bytes a
 * slot), one tail block of `tailEntries` entries (flushed to the file when full), and an LRU
 * cache of `cachePages` pages of 4 KiB (`pageEntries` entries, or 1,024 slots) for queries,
 * plus 24 bytes per retained file. The defaults: 1 MiB + 32 KiB + 1 MiB.
 *
 * I/O is synchronous (apply is), and nothing is synced on the apply path: `sync` (just
 * before a snapshot records the extent) writes the tail and fdatasyncs what changed, so a
 * snapshot never counts an entry a power cut could lose; replay after the snapshot rewrites
 * everything past it. Released files are deleted one sync late, so the previous snapshot
 * stays restorable too. Every I/O failure is a MessageIndexError (the node must stop: a
 * write lost on one node only would make its index differ from the others').
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { assert } from '../util/assert.js';
import { cutToDurable, listDir, syncDir } from './record-files.js';
import {
  MessageIndexError, SegmentedIndex, indexEntryBytes, layoutProblem,
  type IndexExtent, type IndexFileStorage, type IndexLayout, type MessageIndex, type MessageIndexStore,
} from '../broker/core/message-index.js';

export const fileIndexLayoutDefault: IndexLayout = { entriesPerFile: 1 << 20, slotsPerFile: 1 << 18 };
const tailEntriesDefault = 1024;
const pageEntriesDefault = 128;
const cachePagesDefault = 256;
const footerBytes = 32;
/** "RMQI" as a little-endian u32. */
const footerMagic = 0x4951_4d52;
const footerVersion = 1;
const fileNamePattern = /^(\d{20})\.idx$/;

export interface MessageIndexFileOptions {
  readonly dir: string;
  /** The layout of a new index (a restored one keeps its snapshot's). */
  readonly layout?: IndexLayout;
  /** Entries buffered before a write (a power of two; at most entriesPerFile are used). */
  readonly tailEntries?: number;
  /** Entries per cached page (a power of two up to tailEntries; default 128, 4 KiB); a slot page is the same bytes. */
  readonly pageEntries?: number;
  readonly cachePages?: number;
  /**
   * Test mode (the jepsen harness's power cuts): remember how long each file was at its last
   * fdatasync, so `powerFail` can cut every file back to that plus a random part of what was
   * written since.
   */
  readonly powerLossTestMode?: boolean;
}

export interface IndexFilesPowerFailReport {
  readonly indexFiles: number;
  readonly indexBytesDiscarded: number;
}

function failure(what: string, error: unknown): MessageIndexError {
  return error instanceof MessageIndexError ? error : new MessageIndexError(`${what}: ${(error as Error).message}`, { cause: error });
}

const isPowerOfTwo = (n: number): boolean => Number.isInteger(n) && n >= 1 && (n & (n - 1)) === 0;

export class MessageIndexFileStore implements MessageIndexStore {
  readonly recordsDurable = true;
  readonly layout: IndexLayout;
  readonly tailEntries: number;
  readonly pageEntries: number;
  readonly cachePages: number;
  /** Power-loss test mode: each written file's size at its last fdatasync (or when first opened). */
  readonly durableSizes: Map<string, number> | undefined;
  /** The index written now: opening another closes it (a restore replaces it). */
  private live: SegmentedIndex | undefined;

  constructor(private readonly options: MessageIndexFileOptions) {
    this.layout = options.layout ?? fileIndexLayoutDefault;
    const problem = layoutProblem(this.layout);
    assert(problem === undefined, problem);
    this.tailEntries = options.tailEntries ?? tailEntriesDefault;
    this.pageEntries = options.pageEntries ?? Math.min(pageEntriesDefault, this.tailEntries);
    this.cachePages = options.cachePages ?? cachePagesDefault;
    assert(isPowerOfTwo(this.tailEntries) && isPowerOfTwo(this.pageEntries) && this.pageEntries <= this.tailEntries, `index tail of ${this.tailEntries} entries, pages of ${this.pageEntries}`);
    assert(Number.isInteger(this.cachePages) && this.cachePages >= 1, `an index cache of ${this.cachePages} pages`);
    this.durableSizes = options.powerLossTestMode === true ? new Map() : undefined;
    // Nothing is touched before the first write: the node claims its data directory first.
  }

  get dir(): string {
    return this.options.dir;
  }

  open(extent: IndexExtent): MessageIndex {
    this.live?.close();
    this.live = undefined;
    const files = new IndexFiles(this, extent, false);
    try {
      this.live = new SegmentedIndex(extent, files, { recordsDurable: true });
    } catch (error) {
      files.close();
      throw error;
    }
    return this.live;
  }

  reader(): MessageIndexStore {
    const open = (extent: IndexExtent): MessageIndex => new SegmentedIndex(extent, new IndexFiles(this, extent, true), { recordsDurable: true, readOnly: true });
    return { recordsDurable: true, layout: this.layout, open, reader(): MessageIndexStore { return this; } };
  }

  /**
   * Power-loss test mode: cuts every file written since its last fdatasync back to its
   * durable size plus a random part of the rest. The caller ends the process right after.
   */
  powerFail(randomInt: (maxExclusive: number) => number): IndexFilesPowerFailReport {
    assert(this.durableSizes !== undefined, 'powerFail outside power-loss test mode');
    const cut = cutToDurable(this.durableSizes, randomInt);
    return { indexFiles: cut.files, indexBytesDiscarded: cut.bytesDiscarded };
  }

  /** Closes the files (the node is stopping); what was not synced is lost, as after a crash. */
  close(): void {
    this.live?.close();
    this.live = undefined;
  }
}

/**
 * One index's files. Entries `[heldFrom, next)` are held: `[tailStart, next)` in the tail
 * block (tailStart a multiple of the block size, so every page below it is complete in its
 * file), the rest in the files.
 */
class IndexFiles implements IndexFileStorage {
  private readonly dir: string;
  private readonly entriesPerFile: number;
  private readonly slotsPerFile: number;
  private readonly tailEntries: number;
  private readonly pageEntries: number;
  private readonly slotPageSlots: number;
  private readonly entryPagesPerFile: number;
  private readonly pagesPerFile: number;
  private next: number;
  private firstFile: number;
  private firstFileAtLastSync: number;
  /** Files from this one on are new to this index: created empty, whatever a file of that name held. */
  private freshFrom: number;
  private tailStart: number;
  private tail: Buffer | undefined;
  /** Write descriptors: the file being written, and sealed ones until the sync that makes them durable. */
  private readonly fds = new Map<number, number>();
  private readonly dirty = new Set<number>();
  private createdFiles = false;
  /** The first directory this index made (mkdir -p), whose entry and those below it the next sync makes durable. */
  private madeDir: string | undefined;
  /** Pages by file · pagesPerFile + page (entry pages, then slot pages); Map order is recency. */
  private readonly cache = new Map<number, Buffer>();
  private cacheBytes = 0;
  private closed = false;

  constructor(private readonly store: MessageIndexFileStore, extent: IndexExtent, private readonly readOnly: boolean) {
    this.dir = store.dir;
    this.entriesPerFile = extent.layout.entriesPerFile;
    this.slotsPerFile = extent.layout.slotsPerFile;
    this.tailEntries = Math.min(store.tailEntries, this.entriesPerFile);
    this.pageEntries = Math.min(store.pageEntries, this.tailEntries);
    this.slotPageSlots = Math.min(this.pageEntries * (indexEntryBytes / 4), this.slotsPerFile);
    this.entryPagesPerFile = this.entriesPerFile / this.pageEntries;
    this.pagesPerFile = this.entryPagesPerFile + this.slotsPerFile / this.slotPageSlots;
    this.next = extent.entryCount;
    this.firstFile = extent.firstFile;
    this.firstFileAtLastSync = extent.firstFile;
    this.freshFrom = Math.ceil(extent.entryCount / this.entriesPerFile);
    this.tailStart = this.next - (this.next % this.tailEntries);
    if (this.next > this.heldFrom) {
      this.checkHeld();
      if (!readOnly) this.cutAfterHeld();
      if (this.tailStart < this.next) {
        // The last block is partly written: keep writing it from memory.
        this.scanFromFiles(this.tailStart, this.next - this.tailStart, this.ensureTail());
      }
    }
  }

  get heldBytes(): number {
    return (this.tail?.byteLength ?? 0) + this.cacheBytes;
  }

  private get heldFrom(): number {
    return this.firstFile * this.entriesPerFile;
  }

  append(seq: number, entry: Uint8Array): void {
    assert(!this.readOnly && !this.closed, 'writing to a read-only or closed message index');
    assert(seq === this.next, `index entry ${seq} appended after ${this.next - 1}`);
    if (this.next - this.tailStart === this.tailEntries) {
      this.flushTail();
      this.tailStart = this.next;
    }
    this.ensureTail().set(entry, (this.next - this.tailStart) * indexEntryBytes);
    this.next++;
  }

  seal(file: number, slots: Uint32Array): void {
    assert(!this.readOnly && !this.closed, 'sealing in a read-only or closed message index');
    assert(this.next === (file + 1) * this.entriesPerFile, `sealing index file ${file} at entry ${this.next}`);
    this.flushTail();
    this.tailStart = this.next;
    const bytes = Buffer.alloc(this.slotsPerFile * 4 + footerBytes);
    for (let slot = 0; slot < this.slotsPerFile; slot++) bytes.writeUInt32LE(slots[slot] as number, slot * 4);
    const footer = this.slotsPerFile * 4;
    bytes.writeUInt32LE(footerMagic, footer);
    bytes.writeUInt32LE(footerVersion, footer + 4);
    bytes.writeUInt32LE(this.entriesPerFile, footer + 8);
    bytes.writeUInt32LE(this.slotsPerFile, footer + 12);
    bytes.writeDoubleLE(file * this.entriesPerFile, footer + 16);
    this.writeAt(file, bytes, bytes.byteLength, this.entriesPerFile * indexEntryBytes);
  }

  readEntry(seq: number, into: Uint8Array): void {
    assert(seq >= this.heldFrom && seq < this.next, `index entry ${seq} is not held (holding [${this.heldFrom}, ${this.next}))`);
    if (seq >= this.tailStart) {
      const at = (seq - this.tailStart) * indexEntryBytes;
      into.set((this.tail as Buffer).subarray(at, at + indexEntryBytes));
      return;
    }
    const file = Math.floor(seq / this.entriesPerFile);
    const local = seq - file * this.entriesPerFile;
    const page = Math.floor(local / this.pageEntries);
    const bytes = this.page(file, page, page * this.pageEntries * indexEntryBytes, this.pageEntries * indexEntryBytes);
    const at = (local - page * this.pageEntries) * indexEntryBytes;
    into.set(bytes.subarray(at, at + indexEntryBytes));
  }

  scanEntries(fromSeq: number, count: number, into: Uint8Array): void {
    assert(fromSeq >= this.heldFrom && fromSeq + count <= this.next, `index entries [${fromSeq}, ${fromSeq + count}) are not held`);
    const inFiles = Math.max(0, Math.min(count, this.tailStart - fromSeq));
    if (inFiles > 0) this.scanFromFiles(fromSeq, inFiles, into);
    if (inFiles < count) {
      const from = (fromSeq + inFiles - this.tailStart) * indexEntryBytes;
      into.set((this.tail as Buffer).subarray(from, from + (count - inFiles) * indexEntryBytes), inFiles * indexEntryBytes);
    }
  }

  readSlot(file: number, slot: number): number {
    assert(file >= this.firstFile && (file + 1) * this.entriesPerFile <= this.next, `index file ${file} is not sealed`);
    const page = Math.floor(slot / this.slotPageSlots);
    const bytes = this.page(file, this.entryPagesPerFile + page, this.entriesPerFile * indexEntryBytes + page * this.slotPageSlots * 4, this.slotPageSlots * 4);
    return bytes.readUInt32LE((slot - page * this.slotPageSlots) * 4);
  }

  releaseBelow(file: number): void {
    if (file > this.firstFile) this.firstFile = file;
  }

  sync(): void {
    assert(!this.readOnly && !this.closed, 'syncing a read-only or closed message index');
    try {
      this.syncFiles();
    } catch (error) {
      throw failure(`syncing the index files in ${this.dir}`, error);
    }
  }

  describe(file: number): string {
    return path.join(this.dir, `${String(file * this.entriesPerFile).padStart(20, '0')}.idx`);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const fd of this.fds.values()) fs.closeSync(fd);
    this.fds.clear();
    this.tail = undefined;
    this.cache.clear();
    this.cacheBytes = 0;
  }

  // ---- writing ---------------------------------------------------------------------------

  private ensureTail(): Buffer {
    this.tail ??= Buffer.alloc(this.tailEntries * indexEntryBytes);
    return this.tail;
  }

  private flushTail(): void {
    if (this.tail === undefined || this.next === this.tailStart) return;
    const file = Math.floor(this.tailStart / this.entriesPerFile);
    this.writeAt(file, this.tail, (this.next - this.tailStart) * indexEntryBytes, (this.tailStart - file * this.entriesPerFile) * indexEntryBytes);
  }

  private writeAt(file: number, bytes: Buffer, length: number, position: number): void {
    const fd = this.writeFd(file);
    let written = 0;
    try {
      while (written < length) written += fs.writeSync(fd, bytes, written, length - written, position + written);
    } catch (error) {
      throw failure(`writing ${this.describe(file)} at byte ${position + written}`, error);
    }
    this.dirty.add(file);
  }

  /** The write descriptor of `file`: a new file is created empty (truncating any stale one); a held one must exist. */
  private writeFd(file: number): number {
    let fd = this.fds.get(file);
    if (fd !== undefined) return fd;
    const filePath = this.describe(file);
    const durableSizes = this.store.durableSizes;
    try {
      if (file >= this.freshFrom) {
        assert(file === this.freshFrom, `index file ${file} started before ${this.freshFrom}`);
        const made = fs.mkdirSync(this.dir, { recursive: true });
        this.madeDir ??= made;
        fd = fs.openSync(filePath, 'w+');
        this.freshFrom = file + 1;
        this.createdFiles = true;
        durableSizes?.set(filePath, 0);
      } else {
        fd = fs.openSync(filePath, 'r+');
        if (durableSizes !== undefined && !durableSizes.has(filePath)) durableSizes.set(filePath, fs.fstatSync(fd).size);
      }
    } catch (error) {
      throw failure(`opening ${filePath} for writing`, error);
    }
    this.fds.set(file, fd);
    return fd;
  }

  private syncFiles(): void {
    this.flushTail();
    const writing = Math.floor(this.next / this.entriesPerFile);
    for (const file of this.dirty) {
      const fd = this.fds.get(file) as number;
      fs.fdatasyncSync(fd);
      this.store.durableSizes?.set(this.describe(file), fs.fstatSync(fd).size);
      // A sealed file is never written again.
      if (file !== writing) {
        fs.closeSync(fd);
        this.fds.delete(file);
      }
    }
    this.dirty.clear();
    if (this.madeDir !== undefined) {
      // mkdir -p made madeDir and everything below it down to dir: each entry, in its parent.
      for (let dir = this.dir; ; dir = path.dirname(dir)) {
        syncDir(path.dirname(dir));
        if (dir === this.madeDir || path.dirname(dir) === dir) break;
      }
      this.madeDir = undefined;
    }
    if (this.createdFiles) {
      syncDir(this.dir);
      this.createdFiles = false;
    }
    this.removeFiles((file) => file < this.firstFileAtLastSync, true);
    this.firstFileAtLastSync = this.firstFile;
  }

  /**
   * Deletes the index files `below` selects, and every file no held entry is in (written
   * after the extent this index was opened at, or of another layout); `durably`: then syncs
   * the directory.
   */
  private removeFiles(below: (file: number) => boolean, durably: boolean): void {
    let removed = false;
    for (const name of listDir(this.dir)) {
      const match = fileNamePattern.exec(name);
      if (match === null) continue;
      const first = Number(match[1]);
      const file = first / this.entriesPerFile;
      if (Number.isInteger(file) && first < this.next && !below(file)) continue;
      const fd = this.fds.get(file);
      if (fd !== undefined) fs.closeSync(fd);
      this.fds.delete(file);
      fs.rmSync(path.join(this.dir, name), { force: true });
      removed = true;
    }
    if (removed && durably) syncDir(this.dir);
  }

  // ---- opening ---------------------------------------------------------------------------

  /** Every held file exists and is long enough, and every sealed one has its seal; else the snapshot cannot be restored here. */
  private checkHeld(): void {
    const perFile = this.entriesPerFile;
    const sealedBytes = perFile * indexEntryBytes + this.slotsPerFile * 4 + footerBytes;
    for (let file = this.firstFile; file * perFile < this.next; file++) {
      const filePath = this.describe(file);
      const sealed = (file + 1) * perFile <= this.next;
      const needed = sealed ? sealedBytes : (this.next - file * perFile) * indexEntryBytes;
      let size: number;
      try {
        size = fs.statSync(filePath).size;
      } catch (error) {
        throw new MessageIndexError(`${filePath} is missing (${(error as Error).message}); the snapshot needs index entries [${Math.max(this.heldFrom, file * perFile)}, ${Math.min(this.next, (file + 1) * perFile)}) — repair this node from its peers (raftmq repair)`);
      }
      if (size < needed) {
        throw new MessageIndexError(`${filePath} holds ${size} bytes; the snapshot needs ${needed} (index entries up to ${Math.min(this.next, (file + 1) * perFile) - 1}${sealed ? ', sealed' : ''}) — repair this node from its peers (raftmq repair)`);
      }
      if (sealed) this.checkSeal(file, sealedBytes - footerBytes);
    }
  }

  private checkSeal(file: number, at: number): void {
    const footer = this.readFromFile(file, at, footerBytes);
    const magic = footer.readUInt32LE(0);
    const version = footer.readUInt32LE(4);
    const entries = footer.readUInt32LE(8);
    const slots = footer.readUInt32LE(12);
    const first = footer.readDoubleLE(16);
    if (magic !== footerMagic || version !== footerVersion || entries !== this.entriesPerFile || slots !== this.slotsPerFile || first !== file * this.entriesPerFile) {
      throw new MessageIndexError(`${this.describe(file)} has no valid seal (magic ${magic.toString(16)}, version ${version}, ${entries} entries, ${slots} slots, first entry ${first}) — repair this node from its peers (raftmq repair)`);
    }
  }

  /** A restore: whatever was written after the extent goes, so replay writes it exactly once. */
  private cutAfterHeld(): void {
    const writing = Math.floor(this.next / this.entriesPerFile);
    const inWriting = this.next - writing * this.entriesPerFile;
    try {
      if (inWriting > 0) {
        const filePath = this.describe(writing);
        if (fs.statSync(filePath).size > inWriting * indexEntryBytes) fs.truncateSync(filePath, inWriting * indexEntryBytes);
      }
      // Not made durable: a file that comes back after a power cut is past any later
      // snapshot's extent, so the next open or sync deletes it again.
      this.removeFiles(() => false, false);
    } catch (error) {
      throw failure(`cutting the index files in ${this.dir} back to entry ${this.next}`, error);
    }
  }

  // ---- reading ---------------------------------------------------------------------------

  /** Page `page` of `file` (`bytes` at byte `position`), through the cache. */
  private page(file: number, page: number, position: number, bytes: number): Buffer {
    const key = file * this.pagesPerFile + page;
    let cached = this.cache.get(key);
    if (cached !== undefined) {
      this.cache.delete(key);
      this.cache.set(key, cached);
      return cached;
    }
    cached = this.readFromFile(file, position, bytes);
    this.cache.set(key, cached);
    this.cacheBytes += cached.byteLength;
    if (this.cache.size > this.store.cachePages) {
      const [oldestKey, oldest] = this.cache.entries().next().value as [number, Buffer];
      this.cache.delete(oldestKey);
      this.cacheBytes -= oldest.byteLength;
    }
    return cached;
  }

  /** Entries `[fromSeq, fromSeq + count)`, all in files, into `into` from byte 0. */
  private scanFromFiles(fromSeq: number, count: number, into: Uint8Array): void {
    for (let done = 0; done < count;) {
      const seq = fromSeq + done;
      const file = Math.floor(seq / this.entriesPerFile);
      const local = seq - file * this.entriesPerFile;
      const run = Math.min(count - done, this.entriesPerFile - local);
      this.readInto(file, local * indexEntryBytes, run * indexEntryBytes, into, done * indexEntryBytes);
      done += run;
    }
  }

  private readFromFile(file: number, position: number, bytes: number): Buffer {
    const buffer = Buffer.alloc(bytes);
    this.readInto(file, position, bytes, buffer, 0);
    return buffer;
  }

  /** Reads exactly `bytes` at `position` of `file`; a short file is a MessageIndexError naming it. */
  private readInto(file: number, position: number, bytes: number, into: Uint8Array, offset: number): void {
    const filePath = this.describe(file);
    const own = this.fds.get(file);
    let fd: number;
    try {
      // A read-only view, and reads of files not being written, keep no descriptor open.
      fd = own ?? fs.openSync(filePath, 'r');
    } catch (error) {
      throw new MessageIndexError(`cannot open ${filePath}: ${(error as Error).message}`, { cause: error });
    }
    let read = 0;
    try {
      for (let got = -1; read < bytes && got !== 0; read += got) got = fs.readSync(fd, into, offset + read, bytes - read, position + read);
    } catch (error) {
      throw failure(`reading ${filePath} at byte ${position + read}`, error);
    } finally {
      if (own === undefined) fs.closeSync(fd);
    }
    if (read < bytes) throw new MessageIndexError(`${filePath} ends at byte ${position + read}; bytes up to ${position + bytes} should be there — repair this node from its peers (raftmq repair)`);
  }
}
