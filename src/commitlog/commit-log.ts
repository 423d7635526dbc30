import * as path from 'node:path';
import { assert } from '../util/assert.js';
import { TermRuns } from '../raft/term-runs.js';
import { EntryKind, type Entry, type LogIndex, type Term } from '../raft/types.js';
import type { LogSegmentInfo, LogStore } from '../raft/node/ports.js';
import type { FileHandle, FileSystem } from './file-system.js';
import { CorruptLogError, LogFailedError } from './errors.js';
import {
  decodeRecord, decodeSegmentHeader, encodeRecord, encodeSegmentHeader, parseSegmentFileName,
  recordBytes, recordMagic, segmentFileName, segmentHeaderBytes, type SegmentHeader,
} from './record-codec.js';
import {
  decodeSegmentIndex, encodeSegmentIndex, segmentIndexable, segmentIndexFileName, segmentIndexLastTerm,
  segmentOfIndexFileName, type SegmentIndex,
} from './segment-index.js';

export interface CommitLogOptions {
  readonly fs: FileSystem;
  readonly dir: string;
  /** A segment is rolled when the next batch would push it past this size. */
  readonly segmentBytesMax?: number;
  /** Recently appended entries kept in memory so replication reads rarely touch the disk. */
  readonly cacheBytesMax?: number;
}

/** What recovery found and did; a torn tail is expected after a crash and reported here. */
export interface RecoveryReport {
  readonly segmentCount: number;
  readonly firstIndex: LogIndex;
  readonly lastIndex: LogIndex;
  readonly tornTail: { readonly file: string; readonly offset: number; readonly bytesDropped: number; readonly reason: string } | undefined;
  readonly removedTornSegment: string | undefined;
  /** A `resetTo` interrupted by a crash, finished by this recovery: the log now starts at `firstIndex`. */
  readonly completedReset: { readonly firstIndex: LogIndex; readonly prevTerm: Term } | undefined;
  /** Sealed segments taken from their index files (only header and last record read). */
  readonly segmentsFromIndex: number;
  /** Segments whose every record was read: the last one, and sealed ones without a usable index. */
  readonly segmentsScanned: number;
  /** Index files written by this recovery for sealed segments it had to scan. */
  readonly indexesWritten: number;
}

/**
 * The intent record of `resetTo`, written atomically before any segment is removed and
 * removed once the new empty segment is durable. While it exists the log directory may hold
 * any mix of old segments and the new one; recovery finishes the reset from it, so a crash
 * anywhere in `resetTo` reopens as either the old log or the new empty log. Its content is a
 * segment header (first index and prevTerm of the new segment, checksummed).
 */
const resetMarkerFileName = 'reset.pending';

export interface CommitLogStats {
  appendCalls: number;
  entriesAppended: number;
  bytesWritten: number;
  fsyncs: number;
}

interface Segment {
  readonly fileName: string;
  readonly handle: FileHandle;
  readonly firstIndex: LogIndex;
  readonly prevTerm: Term;
  /** positions[i] is the byte offset of the record for index firstIndex + i. */
  readonly positions: number[];
  /** Byte offset just past the last record. */
  endPosition: number;
  /** Holds writes or a truncation not yet covered by datasync. */
  dirty: boolean;
  /**
   * An index file for this segment may exist (it is sealed). It is removed before the segment
   * is removed or written to again, so no index outlives the content it describes.
   */
  indexFile: boolean;
}

const segmentLastIndex = (segment: Segment): LogIndex => segment.firstIndex + segment.positions.length - 1;

/**
 * The Raft log store: segmented append-only files of checksummed records.
 *
 * One operation at a time (the Raft node loop serialises them). Any I/O error marks the log
 * failed; every later call throws `LogFailedError` so the group stops instead of guessing.
 * Reads take an explicit upper bound: Raft passes its last index, the broker its commit index,
 * so nobody but Raft ever sees an uncommitted tail.
 *
 * Sealed segments (all but the last) get an index file when the log rolls past them, so a
 * restart reads a few small files instead of every record (see segment-index.ts). The price:
 * a bit flip inside a sealed segment is no longer found at open but when that record is read
 * (every read checks the record's CRC and throws `CorruptLogError` naming file and offset);
 * damage to a sealed segment's header or last record is still found at open.
 */
export class CommitLog implements LogStore {
  readonly stats: CommitLogStats = { appendCalls: 0, entriesAppended: 0, bytesWritten: 0, fsyncs: 0 };
  private readonly segmentList: Segment[] = [];
  private readonly termRuns: TermRuns;
  private readonly segmentBytesMax: number;
  private readonly cacheBytesMax: number;
  /** cache[i] is the entry at cacheFirstIndex + i; always a suffix of the log. */
  private cache: Entry[] = [];
  private cacheFirstIndex: LogIndex;
  private cacheBytes = 0;
  /** Indexes of membership (config) entries, ascending: the node rebuilds its config from them. */
  private configIndexList: LogIndex[] = [];
  private busy = false;
  private failure: Error | undefined;

  private constructor(private readonly fs: FileSystem, private readonly dir: string, options: CommitLogOptions, termRuns: TermRuns) {
    this.segmentBytesMax = options.segmentBytesMax ?? 64 * 1024 * 1024;
    this.cacheBytesMax = options.cacheBytesMax ?? 16 * 1024 * 1024;
    assert(this.segmentBytesMax > segmentHeaderBytes, 'segmentBytesMax too small');
    this.termRuns = termRuns;
    this.cacheFirstIndex = termRuns.lastIndex + 1;
  }

  /** Opens (creating if needed) the log in `dir` and recovers it. */
  static async open(options: CommitLogOptions): Promise<{ log: CommitLog; report: RecoveryReport }> {
    await options.fs.mkdirp(options.dir);
    const completedReset = await finishInterruptedReset(options.fs, options.dir);
    const recovery = await recoverSegments(options.fs, options.dir, completedReset);
    const log = new CommitLog(options.fs, options.dir, options, recovery.termRuns);
    log.segmentList.push(...recovery.segments);
    log.configIndexList = recovery.configIndexes;
    return { log, report: recovery.report };
  }

  get firstIndex(): LogIndex { return this.termRuns.firstIndex; }
  get lastIndex(): LogIndex { return this.termRuns.lastIndex; }
  get lastTerm(): Term { return this.termRuns.lastTerm; }
  /** Term at `index`, or undefined outside `[firstIndex - 1, lastIndex]`. */
  termAt(index: LogIndex): Term | undefined { return this.termRuns.termAt(index); }
  /** Indexes of config entries in the log, ascending. */
  configIndexes(): readonly LogIndex[] { return this.configIndexList; }

  /** Payload size of the entry at `index`, from memory (no disk access). */
  payloadBytesAt(index: LogIndex): number {
    if (index >= this.cacheFirstIndex && index <= this.lastIndex) return (this.cache[index - this.cacheFirstIndex] as Entry).payload.length;
    const segment = this.segmentContaining(index);
    const slot = index - segment.firstIndex;
    const end = slot + 1 < segment.positions.length ? (segment.positions[slot + 1] as number) : segment.endPosition;
    return end - (segment.positions[slot] as number) - recordBytes(0);
  }

  /** The `[startIndex, term]` runs of the log, for building the Raft core's view. */
  runs(): Array<readonly [LogIndex, Term]> { return this.termRuns.runs(); }

  /** The segment files, oldest first (from memory, no I/O); `bytes` includes the header. */
  /** How many segments the log has (without building the list segments() returns). */
  get segmentCount(): number {
    return this.segmentList.length;
  }

  segments(): readonly LogSegmentInfo[] {
    return this.segmentList.map((segment) => ({
      fileName: segment.fileName,
      firstIndex: segment.firstIndex,
      lastIndex: segmentLastIndex(segment),
      bytes: segment.endPosition,
    }));
  }

  /**
   * Appends contiguous entries after `lastIndex` with one write per segment touched and,
   * when `sync` is set, one datasync per segment touched (group commit).
   */
  async append(entries: readonly Entry[], options: { sync: boolean }): Promise<void> {
    if (entries.length === 0) {
      if (options.sync) await this.sync();
      return;
    }
    let expected = this.lastIndex + 1;
    let term = this.lastTerm;
    for (const entry of entries) {
      assert(entry.index === expected, `append: index ${entry.index}, expected ${expected}`);
      assert(entry.term >= term, `append: term ${entry.term} below ${term} at ${entry.index}`);
      expected++;
      term = entry.term;
    }
    await this.exclusive(async () => {
      this.stats.appendCalls++;
      let next = 0;
      while (next < entries.length) {
        const segment = await this.segmentForAppend(entries[next] as Entry);
        next = await this.appendToSegment(segment, entries, next);
      }
      if (options.sync) await this.syncDirtySegments();
    });
  }

  /** Makes every appended entry durable. */
  async sync(): Promise<void> {
    await this.exclusive(() => this.syncDirtySegments());
  }

  /**
   * Reads entries `[fromIndex, min(throughIndex, lastIndex)]`, stopping once `bytesMax`
   * payload bytes are collected (always at least one entry when any is in range).
   */
  async read(range: { fromIndex: LogIndex; throughIndex: LogIndex; bytesMax: number }): Promise<Entry[]> {
    this.throwIfFailed();
    assert(range.fromIndex >= this.firstIndex, `read: ${range.fromIndex} is before first index ${this.firstIndex}`);
    const through = Math.min(range.throughIndex, this.lastIndex);
    const out: Entry[] = [];
    let bytes = 0;
    let index = range.fromIndex;
    while (index <= through && (out.length === 0 || bytes < range.bytesMax)) {
      if (index >= this.cacheFirstIndex) {
        const entry = this.cache[index - this.cacheFirstIndex] as Entry;
        out.push(entry);
        bytes += entry.payload.length;
        index++;
        continue;
      }
      const fromDisk = await this.guard(() => this.readFromSegment(index, Math.min(through, this.cacheFirstIndex - 1), range.bytesMax - bytes));
      for (const entry of fromDisk) {
        out.push(entry);
        bytes += entry.payload.length;
      }
      index += fromDisk.length;
    }
    return out;
  }

  /** Removes every entry `>= fromIndex` (a Raft conflict); durable when this returns. */
  async truncateSuffix(fromIndex: LogIndex): Promise<void> {
    assert(fromIndex >= this.firstIndex, `truncate: ${fromIndex} is before first index ${this.firstIndex}`);
    if (fromIndex > this.lastIndex) return;
    await this.exclusive(async () => {
      let removedFiles = false;
      while (this.segmentList.length > 1 && (this.segmentList[this.segmentList.length - 1] as Segment).firstIndex >= fromIndex) {
        await this.removeSegment(this.segmentList.pop() as Segment);
        removedFiles = true;
      }
      const segment = this.segmentList[this.segmentList.length - 1] as Segment;
      // It becomes the open segment again, which has no index: the one it had describes
      // records about to be cut.
      if (segment.indexFile) {
        await this.removeIndexFile(segment);
        removedFiles = true;
      }
      // The removals are durable before the cut: otherwise a crash could bring back later
      // segments that no longer continue this one (corruption on recovery), or the index.
      if (removedFiles) {
        await this.fs.syncDir(this.dir);
        this.stats.fsyncs++;
      }
      const keep = Math.max(0, fromIndex - segment.firstIndex);
      const cut = keep < segment.positions.length ? (segment.positions[keep] as number) : segment.endPosition;
      segment.positions.length = keep;
      segment.endPosition = cut;
      await segment.handle.truncate(cut);
      // Made durable at once: a truncation that could come undone would let stale records
      // reappear behind newer ones and look like corruption on recovery.
      await segment.handle.datasync();
      this.stats.fsyncs++;
      segment.dirty = false;
      this.termRuns.truncateFrom(fromIndex);
      this.configIndexList = this.configIndexList.filter((index) => index < fromIndex);
      this.trimCacheFrom(fromIndex);
      assert(this.lastIndex === fromIndex - 1, 'truncate: last index after truncation');
    });
  }

  /**
   * Retention: deletes whole segments whose entries are all `<= throughIndex`, never the
   * last segment. Returns the new first index.
   */
  async deletePrefix(throughIndex: LogIndex): Promise<LogIndex> {
    await this.exclusive(async () => {
      let removed = false;
      while (this.segmentList.length > 1 && segmentLastIndex(this.segmentList[0] as Segment) <= throughIndex) {
        await this.removeSegment(this.segmentList.shift() as Segment);
        removed = true;
      }
      if (!removed) return;
      await this.fs.syncDir(this.dir);
      const newFirst = (this.segmentList[0] as Segment).firstIndex;
      this.termRuns.compactThrough(newFirst - 1);
      // Retention of config entries needs snapshot metadata (F16, with InstallSnapshot).
      this.configIndexList = this.configIndexList.filter((index) => index >= newFirst);
      if (this.cacheFirstIndex < newFirst) this.dropCacheBefore(newFirst);
    });
    return this.firstIndex;
  }

  /**
   * Discards every entry and leaves an empty log continuing after a snapshot at
   * (`index`, `term`): firstIndex = index + 1, termAt(index) = term. `index` may lie before,
   * inside or after the current log. Durable when this returns.
   *
   * Crash safety: an intent record (`reset.pending`) is written atomically first; then every
   * old segment and its index is removed, the new empty segment (header only, named index + 1) is written
   * and synced, and the record is removed. Recovery that finds the record finishes the reset,
   * so a crash at any step reopens as the old log (record not yet durable) or the new empty
   * log, never as a partial or non-contiguous set of segments.
   */
  async resetTo(index: LogIndex, term: Term): Promise<void> {
    assert(Number.isSafeInteger(index) && index >= 0, `resetTo: bad index ${index}`);
    assert(Number.isSafeInteger(term) && term >= 0, `resetTo: bad term ${term}`);
    await this.exclusive(async () => {
      const header = { firstIndex: index + 1, prevTerm: term };
      await this.fs.writeFileAtomic(path.join(this.dir, resetMarkerFileName), encodeSegmentHeader(header));
      this.stats.fsyncs += 2;
      // Newest first, so the in-memory list stays a contiguous prefix if an I/O error stops us.
      while (this.segmentList.length > 0) await this.removeSegment(this.segmentList.pop() as Segment);
      // The removals must be durable before a file of the same name can be created again.
      await this.fs.syncDir(this.dir);
      this.stats.fsyncs++;
      const segment = await createEmptySegment(this.fs, this.dir, header);
      this.stats.fsyncs += 2;
      await this.fs.remove(path.join(this.dir, resetMarkerFileName));
      await this.fs.syncDir(this.dir);
      this.stats.fsyncs++;
      this.segmentList.push(segment);
      this.termRuns.resetAfter(index, term);
      this.configIndexList = [];
      this.cache = [];
      this.cacheBytes = 0;
      this.cacheFirstIndex = index + 1;
      assert(this.firstIndex === index + 1 && this.lastIndex === index && this.termAt(index) === term, 'resetTo: state after reset');
    });
  }

  async close(): Promise<void> {
    const segments = this.segmentList.splice(0);
    for (const segment of segments) await segment.handle.close();
  }

  private async segmentForAppend(entry: Entry): Promise<Segment> {
    const last = this.segmentList[this.segmentList.length - 1];
    const needed = recordBytes(entry.payload.length);
    if (last !== undefined && (last.positions.length === 0 || last.endPosition + needed <= this.segmentBytesMax)) {
      return last;
    }
    if (last !== undefined) await this.seal(last);
    const segment = await createEmptySegment(this.fs, this.dir, { firstIndex: entry.index, prevTerm: this.lastTerm });
    this.stats.fsyncs += 2;
    this.segmentList.push(segment);
    return segment;
  }

  /**
   * Seals the segment the log rolls past. It is made durable first: older segments are always
   * fully durable, so damage in one is corruption, not a torn tail. Then its index is written,
   * before the next segment exists, so every segment that is not the newest on disk has an
   * index describing its final content or none at all. Costs two fsyncs per roll (a small
   * file written atomically), next to the three a roll already takes.
   */
  private async seal(segment: Segment): Promise<void> {
    if (segment.dirty) {
      await segment.handle.datasync();
      this.stats.fsyncs++;
      segment.dirty = false;
    }
    if (await writeIndexFile(this.fs, this.dir, segment, this.termRuns.runs(), this.configIndexList)) this.stats.fsyncs += 2;
  }

  /** Closes and removes a segment and its index (the caller syncs the directory). */
  private async removeSegment(segment: Segment): Promise<void> {
    await segment.handle.close();
    if (segment.indexFile) await this.removeIndexFile(segment);
    await this.fs.remove(path.join(this.dir, segment.fileName));
  }

  /** Removes a segment's index file (the caller syncs the directory). */
  private async removeIndexFile(segment: Segment): Promise<void> {
    await this.fs.remove(path.join(this.dir, segmentIndexFileName(segment.fileName)));
    segment.indexFile = false;
  }

  /** Writes as many entries from `entries[start]` as fit `segment`; returns the next start. */
  private async appendToSegment(segment: Segment, entries: readonly Entry[], start: number): Promise<number> {
    let end = start;
    let bytes = 0;
    while (end < entries.length) {
      const size = recordBytes((entries[end] as Entry).payload.length);
      const fits = segment.endPosition + bytes + size <= this.segmentBytesMax;
      if (!fits && (end > start || segment.positions.length > 0)) break;
      bytes += size;
      end++;
    }
    const batch = new Uint8Array(bytes);
    let offset = 0;
    const positions: number[] = [];
    for (let i = start; i < end; i++) {
      positions.push(segment.endPosition + offset);
      offset = encodeRecord(entries[i] as Entry, batch, offset);
    }
    assert(offset === bytes, 'append: batch size mismatch');
    await segment.handle.write(batch, segment.endPosition);
    segment.endPosition += bytes;
    segment.dirty = true;
    for (const position of positions) segment.positions.push(position);
    for (let i = start; i < end; i++) {
      const entry = entries[i] as Entry;
      this.termRuns.append(entry.index, entry.term);
      if (entry.kind === EntryKind.config) this.configIndexList.push(entry.index);
      this.addToCache(entry);
    }
    this.stats.entriesAppended += end - start;
    this.stats.bytesWritten += bytes;
    return end;
  }

  /**
   * Reads from disk and checks every record it returns (CRC, expected index). For a segment
   * recovered from its index this is where a damaged record is first noticed; it throws
   * `CorruptLogError` with the file and byte offset, as recovery would have.
   */
  private async readFromSegment(fromIndex: LogIndex, throughIndex: LogIndex, bytesBudget: number): Promise<Entry[]> {
    const segment = this.segmentContaining(fromIndex);
    const lastHere = Math.min(throughIndex, segmentLastIndex(segment));
    const startSlot = fromIndex - segment.firstIndex;
    let endSlot = startSlot + 1;
    const startPosition = segment.positions[startSlot] as number;
    const positionOf = (slot: number): number => (slot < segment.positions.length ? (segment.positions[slot] as number) : segment.endPosition);
    while (endSlot <= lastHere - segment.firstIndex && positionOf(endSlot) - startPosition < bytesBudget) endSlot++;
    const buffer = new Uint8Array(positionOf(endSlot) - startPosition);
    const bytesRead = await segment.handle.read(buffer, startPosition);
    const out: Entry[] = [];
    let offset = 0;
    for (let slot = startSlot; slot < endSlot; slot++) {
      const decoded = bytesRead === buffer.length ? decodeRecord(buffer, offset, { copyPayload: false }) : { kind: 'short' as const };
      const expectedIndex = segment.firstIndex + slot;
      if (decoded.kind !== 'ok' || decoded.entry.index !== expectedIndex) {
        const reason = decoded.kind === 'ok' ? `holds index ${decoded.entry.index}, expected ${expectedIndex}` : decoded.kind === 'bad' ? decoded.reason : 'short read';
        throw new CorruptLogError(segment.fileName, startPosition + offset, reason);
      }
      out.push(decoded.entry);
      offset += decoded.bytes;
    }
    return out;
  }

  private segmentContaining(index: LogIndex): Segment {
    let low = 0;
    let high = this.segmentList.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if ((this.segmentList[mid] as Segment).firstIndex <= index) low = mid;
      else high = mid - 1;
    }
    const segment = this.segmentList[low] as Segment;
    assert(index >= segment.firstIndex && index <= segmentLastIndex(segment), `no segment holds index ${index}`);
    return segment;
  }

  private async syncDirtySegments(): Promise<void> {
    for (const segment of this.segmentList) {
      if (!segment.dirty) continue;
      await segment.handle.datasync();
      this.stats.fsyncs++;
      segment.dirty = false;
    }
  }

  private addToCache(entry: Entry): void {
    assert(entry.index === this.cacheFirstIndex + this.cache.length, 'cache must stay a suffix of the log');
    this.cache.push(entry);
    this.cacheBytes += entry.payload.length;
    if (this.cacheBytes > this.cacheBytesMax) {
      let drop = 0;
      while (this.cacheBytes > this.cacheBytesMax / 2 && drop < this.cache.length - 1) {
        this.cacheBytes -= (this.cache[drop] as Entry).payload.length;
        drop++;
      }
      this.cache = this.cache.slice(drop);
      this.cacheFirstIndex += drop;
    }
  }

  private trimCacheFrom(fromIndex: LogIndex): void {
    if (fromIndex < this.cacheFirstIndex) {
      this.cache = [];
      this.cacheBytes = 0;
      this.cacheFirstIndex = fromIndex;
      return;
    }
    for (const entry of this.cache.splice(fromIndex - this.cacheFirstIndex)) this.cacheBytes -= entry.payload.length;
  }

  private dropCacheBefore(index: LogIndex): void {
    const drop = Math.min(index - this.cacheFirstIndex, this.cache.length);
    for (const entry of this.cache.splice(0, drop)) this.cacheBytes -= entry.payload.length;
    this.cacheFirstIndex = index;
  }

  private throwIfFailed(): void {
    if (this.failure !== undefined) throw new LogFailedError({ cause: this.failure });
  }

  private async guard<T>(operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (error) {
      if (!(error instanceof CorruptLogError) && this.failure === undefined) this.failure = error as Error;
      throw error;
    }
  }

  private async exclusive(operation: () => Promise<void>): Promise<void> {
    this.throwIfFailed();
    assert(!this.busy, 'commitlog: concurrent mutation (the node loop must serialise them)');
    this.busy = true;
    try {
      await this.guard(operation);
    } finally {
      this.busy = false;
    }
  }
}

/** Creates a header-only segment, durable (file datasync and directory sync) on return. */
async function createEmptySegment(fs: FileSystem, dir: string, header: { firstIndex: LogIndex; prevTerm: Term }): Promise<Segment> {
  const fileName = segmentFileName(header.firstIndex);
  const handle = await fs.open(path.join(dir, fileName), { create: true });
  await handle.truncate(0);
  await handle.write(encodeSegmentHeader(header), 0);
  await handle.datasync();
  await fs.syncDir(dir);
  return { fileName, handle, firstIndex: header.firstIndex, prevTerm: header.prevTerm, positions: [], endPosition: segmentHeaderBytes, dirty: false, indexFile: false };
}

/**
 * The part of the log's runs and config indexes that falls in `segment`, the newest segment
 * so far (so its runs and configs are at the ends of the lists, found by walking back).
 */
function segmentIndexOf(segment: Segment, runs: ReadonlyArray<readonly [LogIndex, Term]>, configIndexes: readonly LogIndex[]): SegmentIndex {
  const first = segment.firstIndex;
  const base = { firstIndex: first, prevTerm: segment.prevTerm, segmentBytes: segment.endPosition, positions: segment.positions };
  if (segment.positions.length === 0) return { ...base, runs: [], configIndexes: [] };
  let run = runs.length - 1;
  while (run > 0 && (runs[run] as readonly [LogIndex, Term])[0] > first) run--;
  let config = configIndexes.length;
  while (config > 0 && (configIndexes[config - 1] as LogIndex) >= first) config--;
  return {
    ...base,
    runs: runs.slice(run).map(([start, term]) => [Math.max(start, first), term] as const),
    configIndexes: configIndexes.slice(config),
  };
}

/**
 * Writes a sealed segment's index atomically (temporary file, fsync, rename, directory
 * fsync), so a crash leaves the old index, the new one or none, never a torn one. Returns
 * false when the segment cannot be indexed (its positions do not fit the format).
 */
async function writeIndexFile(fs: FileSystem, dir: string, segment: Segment, runs: ReadonlyArray<readonly [LogIndex, Term]>, configIndexes: readonly LogIndex[]): Promise<boolean> {
  if (!segmentIndexable(segment.positions)) return false;
  segment.indexFile = true;
  await fs.writeFileAtomic(path.join(dir, segmentIndexFileName(segment.fileName)), encodeSegmentIndex(segmentIndexOf(segment, runs, configIndexes)));
  return true;
}

/**
 * Files of the log proper (segments, their indexes, and temporaries `writeFileAtomic` left
 * behind when a crash cut an index write short): what a reset removes.
 */
function isLogDataFileName(name: string): boolean {
  return parseSegmentFileName(name) !== undefined || segmentOfIndexFileName(name) !== undefined || isIndexTemporary(name);
}

/** The temporary of an interrupted `writeFileAtomic` of an index (`<index file>.tmp`). */
function isIndexTemporary(name: string): boolean {
  return name.endsWith('.tmp') && segmentOfIndexFileName(name.slice(0, -'.tmp'.length)) !== undefined;
}

/**
 * Finishes a `resetTo` that a crash interrupted (its intent record is still there): removes
 * every segment, whatever mix of old and new ones survived, and writes the empty segment
 * again. Idempotent, so a crash during this repeats it on the next open.
 */
async function finishInterruptedReset(fs: FileSystem, dir: string): Promise<RecoveryReport['completedReset']> {
  const markerPath = path.join(dir, resetMarkerFileName);
  const marker = await fs.readFile(markerPath);
  if (marker === undefined) return undefined;
  const header = marker.length === segmentHeaderBytes ? decodeSegmentHeader(marker) : undefined;
  // Written atomically, so a damaged record is damage to durable data, not a torn write.
  if (header === undefined) throw new CorruptLogError(resetMarkerFileName, 0, 'bad reset record');
  for (const name of await fs.list(dir)) {
    if (isLogDataFileName(name)) await fs.remove(path.join(dir, name));
  }
  await fs.syncDir(dir);
  const segment = await createEmptySegment(fs, dir, header);
  await segment.handle.close();
  await fs.remove(markerPath);
  await fs.syncDir(dir);
  return { firstIndex: header.firstIndex, prevTerm: header.prevTerm };
}

interface Recovered {
  readonly segments: Segment[];
  readonly configIndexes: LogIndex[];
  readonly termRuns: TermRuns;
  readonly report: RecoveryReport;
}

/**
 * The log as recovery rebuilds it, segment by segment, kept as runs (the form a segment index
 * holds, so an indexed segment is added without walking its indexes); it becomes the log's
 * TermRuns at the end.
 */
class RecoveredLog {
  readonly segments: Segment[] = [];
  readonly runs: Array<readonly [LogIndex, Term]> = [];
  readonly configIndexes: LogIndex[] = [];
  private firstIndex: LogIndex = 1;
  private prevTerm: Term = 0;
  private lastIndex: LogIndex = 0;
  private lastTerm: Term = 0;

  /** Starts the log at the first segment; throws unless a later one continues it. */
  begin(fileName: string, header: SegmentHeader): void {
    if (this.segments.length === 0) {
      this.firstIndex = header.firstIndex;
      this.prevTerm = header.prevTerm;
      this.lastIndex = header.firstIndex - 1;
      this.lastTerm = header.prevTerm;
      return;
    }
    if (header.firstIndex !== this.lastIndex + 1 || header.prevTerm !== this.lastTerm) {
      throw new CorruptLogError(fileName, 0, `does not continue the log ending at ${this.lastIndex}/t${this.lastTerm}`);
    }
  }

  /** Why `entry` cannot be the next record, or undefined if it can. */
  refuses(entry: Entry): string | undefined {
    if (entry.index !== this.lastIndex + 1) return `index ${entry.index} breaks the sequence after ${this.lastIndex}`;
    if (entry.term < this.lastTerm) return `term ${entry.term} below ${this.lastTerm}`;
    return undefined;
  }

  appendEntry(entry: Entry): void {
    this.appendRun(entry.index, entry.term);
    if (entry.kind === EntryKind.config) this.configIndexes.push(entry.index);
    this.lastIndex = entry.index;
  }

  appendIndexed(index: SegmentIndex): void {
    for (const [start, term] of index.runs) this.appendRun(start, term);
    for (const configIndex of index.configIndexes) this.configIndexes.push(configIndex);
    this.lastIndex = index.firstIndex + index.positions.length - 1;
  }

  termRuns(): TermRuns {
    return TermRuns.fromRuns(this.firstIndex, this.prevTerm, this.lastIndex, this.runs);
  }

  /** A run continuing the last one's term merges into it (runs have strictly rising terms). */
  private appendRun(start: LogIndex, term: Term): void {
    if (this.runs.length === 0 || term !== this.lastTerm) this.runs.push([start, term]);
    this.lastTerm = term;
  }
}

/**
 * Rebuilds the log from its segments. A sealed segment with a trustworthy index is taken from
 * it (header and last record read, nothing else); the last segment, and any sealed one whose
 * index is missing, damaged or stale, is scanned, and a scanned sealed segment gets a new
 * index. A bad or short record is a torn tail only in the last segment and only when no
 * valid record follows it; anywhere else it is corruption of durable data.
 */
async function recoverSegments(fs: FileSystem, dir: string, completedReset: RecoveryReport['completedReset']): Promise<Recovered> {
  const names = await fs.list(dir);
  const files = segmentFilesIn(names);
  const indexedNames = new Set(names.map(segmentOfIndexFileName).filter((name) => name !== undefined));
  const log = new RecoveredLog();
  const counts = { segmentsFromIndex: 0, segmentsScanned: 0, indexesWritten: 0 };
  let tornTail: RecoveryReport['tornTail'];
  let removedTornSegment: string | undefined;
  for (const [position, file] of files.entries()) {
    const isLast = position === files.length - 1;
    const handle = await fs.open(path.join(dir, file.name), { create: false });
    const size = await handle.size();
    const header = await readSegmentHeader(handle);
    if (header === undefined) {
      await handle.close();
      if (isLast && size <= segmentHeaderBytes) {
        // Crashed while creating the segment: nothing in it was ever acknowledged.
        await fs.remove(path.join(dir, file.name));
        await fs.syncDir(dir);
        removedTornSegment = file.name;
        break;
      }
      throw new CorruptLogError(file.name, 0, 'bad segment header');
    }
    if (header.firstIndex !== file.firstIndex) throw new CorruptLogError(file.name, 0, `header says first index ${header.firstIndex}`);
    log.begin(file.name, header);
    const index = !isLast && indexedNames.has(file.name) ? await readTrustedIndex(fs, dir, file.name, handle, header, size) : undefined;
    if (index !== undefined) {
      log.appendIndexed(index);
      log.segments.push({ fileName: file.name, handle, firstIndex: header.firstIndex, prevTerm: header.prevTerm, positions: index.positions, endPosition: size, dirty: false, indexFile: true });
      counts.segmentsFromIndex++;
      continue;
    }
    const scanned = await scanSegment(handle, file.name, header, size, isLast, log);
    counts.segmentsScanned++;
    tornTail = scanned.tornTail;
    log.segments.push(scanned.segment);
    if (!isLast && await writeIndexFile(fs, dir, scanned.segment, log.runs, log.configIndexes)) counts.indexesWritten++;
  }
  await removeStaleIndexFiles(fs, dir, names, log.segments);
  const termRuns = log.termRuns();
  const report: RecoveryReport = { segmentCount: log.segments.length, firstIndex: termRuns.firstIndex, lastIndex: termRuns.lastIndex, tornTail, removedTornSegment, completedReset, ...counts };
  return { segments: log.segments, configIndexes: log.configIndexes, termRuns, report };
}

/** The segment files among `names`, oldest first (index files and others are not segments). */
function segmentFilesIn(names: readonly string[]): Array<{ name: string; firstIndex: LogIndex }> {
  return names
    .map((name) => ({ name, firstIndex: parseSegmentFileName(name) }))
    .filter((file): file is { name: string; firstIndex: number } => file.firstIndex !== undefined)
    .sort((a, b) => a.firstIndex - b.firstIndex);
}

/** The segment's header, or undefined if it is short or damaged. */
async function readSegmentHeader(handle: FileHandle): Promise<SegmentHeader | undefined> {
  const bytes = new Uint8Array(segmentHeaderBytes);
  const bytesRead = await handle.read(bytes, 0);
  return bytesRead === segmentHeaderBytes ? decodeSegmentHeader(bytes) : undefined;
}

/**
 * The segment's index if it can stand in for a scan: intact, written for this header and
 * this file size, and the segment's last record is the one it names. Anything else (missing,
 * damaged, stale) gives undefined and the caller scans: only the segment is authoritative.
 */
async function readTrustedIndex(fs: FileSystem, dir: string, fileName: string, handle: FileHandle, header: SegmentHeader, size: number): Promise<(SegmentIndex & { readonly positions: number[] }) | undefined> {
  const bytes = await fs.readFile(path.join(dir, segmentIndexFileName(fileName)));
  const index = bytes === undefined ? undefined : decodeSegmentIndex(bytes);
  if (index === undefined || index.firstIndex !== header.firstIndex || index.prevTerm !== header.prevTerm || index.segmentBytes !== size) return undefined;
  return (await endsWithIndexedRecord(handle, index)) ? index : undefined;
}

/**
 * Whether the record at the index's last position decodes, fills the file to its end and has
 * the index, term and kind the index says: one small read that catches an index describing
 * other content of the same size, and damage to the last record (as a scan would).
 */
async function endsWithIndexedRecord(handle: FileHandle, index: SegmentIndex): Promise<boolean> {
  if (index.positions.length === 0) return true;
  const lastPosition = index.positions[index.positions.length - 1] as number;
  const buffer = new Uint8Array(index.segmentBytes - lastPosition);
  if ((await handle.read(buffer, lastPosition)) !== buffer.length) return false;
  const decoded = decodeRecord(buffer, 0, { copyPayload: false });
  if (decoded.kind !== 'ok' || decoded.bytes !== buffer.length) return false;
  const lastIndex = index.firstIndex + index.positions.length - 1;
  const lastIsConfig = index.configIndexes[index.configIndexes.length - 1] === lastIndex;
  return decoded.entry.index === lastIndex && decoded.entry.term === segmentIndexLastTerm(index) && (decoded.entry.kind === EntryKind.config) === lastIsConfig;
}

/** Reads every record of a segment into `log`; cuts a torn tail of the last segment. */
async function scanSegment(handle: FileHandle, fileName: string, header: SegmentHeader, size: number, isLast: boolean, log: RecoveredLog): Promise<{ segment: Segment; tornTail: RecoveryReport['tornTail'] }> {
  const bytes = new Uint8Array(size);
  await handle.read(bytes, 0);
  const positions: number[] = [];
  let tornTail: RecoveryReport['tornTail'];
  let offset = segmentHeaderBytes;
  while (offset < size) {
    const decoded = decodeRecord(bytes, offset, { copyPayload: false });
    const problem = decoded.kind === 'bad' ? decoded.reason : decoded.kind === 'short' ? 'incomplete record' : log.refuses(decoded.entry);
    if (problem !== undefined || decoded.kind !== 'ok') {
      if (!isLast || hasValidRecordAfter(bytes, offset + 1)) throw new CorruptLogError(fileName, offset, problem ?? 'bad record');
      await handle.truncate(offset);
      await handle.datasync();
      tornTail = { file: fileName, offset, bytesDropped: size - offset, reason: problem ?? 'bad record' };
      break;
    }
    positions.push(offset);
    log.appendEntry(decoded.entry);
    offset += decoded.bytes;
  }
  const segment: Segment = { fileName, handle, firstIndex: header.firstIndex, prevTerm: header.prevTerm, positions, endPosition: offset, dirty: false, indexFile: false };
  return { segment, tornTail };
}

/**
 * Removes the index files recovery must not leave behind, durably, before the log takes
 * appends: the open segment's (there is one when a crash came between writing it and
 * creating the next segment, or when recovery removed a torn newest segment), orphans whose
 * segment is gone, and temporaries of interrupted index writes.
 */
async function removeStaleIndexFiles(fs: FileSystem, dir: string, names: readonly string[], segments: Segment[]): Promise<void> {
  const sealed = new Set(segments.slice(0, -1).map((segment) => segment.fileName));
  const open = segments[segments.length - 1];
  const candidates = new Set(names);
  if (open?.indexFile === true) candidates.add(segmentIndexFileName(open.fileName));
  const stale = [...candidates].filter((name) => {
    const segmentName = segmentOfIndexFileName(name);
    return isIndexTemporary(name) || (segmentName !== undefined && !sealed.has(segmentName));
  });
  for (const name of stale) await fs.remove(path.join(dir, name));
  if (open !== undefined) open.indexFile = false;
  if (stale.length > 0) await fs.syncDir(dir);
}

/** True if any whole, checksum-valid record starts at or after `from`. */
function hasValidRecordAfter(bytes: Uint8Array, from: number): boolean {
  const magic = new Uint8Array(4);
  new DataView(magic.buffer).setUint32(0, recordMagic, true);
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  for (let at = buffer.indexOf(magic, from); at !== -1; at = buffer.indexOf(magic, at + 1)) {
    if (decodeRecord(bytes, at, { copyPayload: false }).kind === 'ok') return true;
  }
  return false;
}
