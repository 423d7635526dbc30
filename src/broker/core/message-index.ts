/**
 * The message index behind query and trace (SPEC F12, F20), like RocketMQ's IndexFile: apply
 * adds entries (a stored message under its id and under each of its keys; trace events —
 * delivered, acknowledged, nacked, dead-lettered, stored by a timer fire or a commit, rolled
 * back, recalled — under the message's location, `messageLocationKey`: apply knows a queue
 * record's log index and position, not the message id in that entry), and admin queries
 * later ask for the entries of one key in a time range. An entry says where to look (log
 * index, position in the entry's batch), what it is (kind) and when (store time); the caller
 * reads those log entries and drops hash collisions by comparing the real id or key, so the
 * index keeps a 53-bit key hash, not the key. A trace event's log index is the entry that
 * made it (a receive, an ack, a fire, …) and its position packs the delivery attempt and the
 * queue id (`eventPosition`): the caller checks the event against the command it reads there.
 *
 * Layout (shared by both implementations, and the on-disk format of src/server/message-index-files.ts).
 * Entries are numbered from 0 in add order (`seq`). They go to a run of fixed-size index
 * files: file `f` holds entries `[f·E, (f+1)·E)` (E = entriesPerFile) and a table of S
 * hash slots (S = slotsPerFile). An entry is 32 bytes, little-endian:
 *
 *   f64 key hash | f64 log index | f64 store time (ms) | u32 previous | u32 kind << 24 | position
 *
 * `previous` is 1 + the file-local number of the newest earlier entry of the same slot in
 * the same file (0: none), so each slot of a file is a chain from its newest entry back.
 * The slot table (u32 per slot: 1 + the local number of the slot's newest entry, 0 for none)
 * of the file being written is in memory; it is written to the file once, when the file is
 * full (sealed), after its entries. Nothing a file already holds is ever rewritten, so a
 * snapshot's files stay as it saw them while later adds append (see SegmentedIndex).
 *
 * A query walks the files newest first, each file's chain of the key's slot from its newest
 * entry, and collects entries whose hash is the key's. Store times and log indexes never
 * decrease in add order, so a walk stops at the first entry older than the range or below
 * the released log index, and skips whole files by their first and last times. Results are
 * newest first: the reverse of add order — descending log index, and within one log index
 * the reverse of the order the caller added them in (for a batch added in position order:
 * descending position).
 *
 * Memory does not grow with the entries in the file implementation: the slot table of the
 * file being written, one tail block and a page cache, all fixed by configuration, plus 24
 * bytes per retained file. The memory implementation (MemoryMessageIndex, for the simulator
 * and tests) keeps the files in typed arrays, so it grows with the retained entries.
 *
 * The key hash is part of the format (files store it): changing the function, its seed or
 * its input encoding needs a new format version.
 *
 * Pure: no I/O, time or randomness; the state and its encoding depend only on the calls made.
 */
import { assert } from '../../util/assert.js';
import { murmur3x86x128 } from '../../util/murmur3.js';
import type { SnapshotReader, SnapshotWriter } from './state-snapshot.js';

/**
 * What an entry records. Append-only: never renumber or reuse a value (files and snapshots
 * store it). Unknown kinds (1..255) are stored and returned as they are.
 */
export const IndexKind = {
  MessageId: 1, Key: 2, Delivered: 3, Acked: 4, Nacked: 5, DeadLettered: 6,
  /** A delayed message fired, or a transactional one committed: it went into its queue at this entry. */
  Stored: 7,
  /** A transaction's half message rolled back (by EndTransaction, or after its last check-back). */
  RolledBack: 8,
  /** A pending delayed message recalled. */
  Recalled: 9,
} as const;
export type IndexKind = (typeof IndexKind)[keyof typeof IndexKind];

/** Queue ids take the low 10 bits of an event's position (queueCountMax is 1024). */
const eventQueueBits = 10;
const eventAttemptMax = (1 << (24 - eventQueueBits)) - 1;

/** A trace event's position: the delivery attempt (capped at 16383; 0 where none) above the queue id. */
export function eventPosition(attempt: number, queueId: number): number {
  assert(Number.isInteger(queueId) && queueId >= 0 && queueId < 1 << eventQueueBits, `a trace event of queue ${queueId}`);
  return Math.min(Math.max(0, Math.floor(attempt)), eventAttemptMax) * (1 << eventQueueBits) + queueId;
}

/** What eventPosition packed. */
export function eventOf(position: number): { readonly attempt: number; readonly queueId: number } {
  return { attempt: Math.floor(position / (1 << eventQueueBits)), queueId: position & ((1 << eventQueueBits) - 1) };
}

/** A key's hash: a non-negative integer below 2^53 (messageIdKey, topicKey). */
export type KeyHash = number & { readonly __brand: 'KeyHash' };

/** One candidate: the log entry to read and check, and what the entry says about it. */
export interface IndexHit {
  readonly logIndex: number;
  /** The message's position in that entry's batch. */
  readonly position: number;
  readonly kind: number;
  readonly timeMs: number;
}

/** Where a walk stopped (IndexFindResult.resume): opaque to the caller. */
export interface IndexCursor {
  readonly slot: number;
  readonly file: number;
  /** 1 + the local number of the next entry to read in `file`; 0: the file's slot head is not read yet. */
  readonly pointer: number;
}

export interface IndexQuery {
  readonly key: KeyHash;
  /** Entries with fromMs <= timeMs <= toMs (both inclusive; ±Infinity for no bound). */
  readonly fromMs: number;
  readonly toMs: number;
  /** At most this many hits, 1 to hitsPerFindMax. */
  readonly limit: number;
  /**
   * Reads this call may make (one per entry examined, one per sealed file whose slot head it
   * reads), 1 to readsPerFindMax; default readsPerFindDefault. Bounds the work of one call
   * however hot the key or its slot, so the admin path can page through a long chain
   * between applies.
   */
  readonly readsMax?: number;
  /** Continues the walk an earlier call with the same key and range stopped (its `resume`). */
  readonly resume?: IndexCursor;
}

export interface IndexFindResult {
  /** Newest first (see the module comment). */
  readonly hits: IndexHit[];
  /**
   * Set when the walk stopped before its end (it found `limit` hits or made `readsMax`
   * reads): pass it back as `resume` for the hits that follow these. Entries added since are
   * newer and not seen; entries released since are skipped. Undefined: there are no more.
   */
  readonly resume: IndexCursor | undefined;
}

/** The file shape: both powers of two, fixed when an index is created and kept in its snapshots. */
export interface IndexLayout {
  /** Entries per file, 1 to entriesPerFileMax. */
  readonly entriesPerFile: number;
  /** Hash slots per file, 1 to slotsPerFileMax; the table of the file being written is in memory (4 bytes a slot). */
  readonly slotsPerFile: number;
}

/** How far an index reaches: what a snapshot without the entries records. */
export interface IndexExtent {
  readonly layout: IndexLayout;
  /** Entries ever added: the next entry's seq. */
  readonly entryCount: number;
  /** The first file held; files below were released (every entry in them is below releasedBelow). */
  readonly firstFile: number;
  /** Entries below this log index are not returned (retention released that log prefix). */
  readonly releasedBelow: number;
  /** The last added entry's log index and time (0 before any): later adds may not be below them. */
  readonly lastLogIndex: number;
  readonly lastTimeMs: number;
}

export interface MessageIndex {
  /** True when the entries survive a restart (files): snapshots then record the extent only. */
  readonly recordsDurable: boolean;
  readonly extent: IndexExtent;
  /** The last added entry's log index and time (extent.lastLogIndex, lastTimeMs, without building the extent): an add may not be below them (Infinity: the index takes none). */
  readonly lastAddedLogIndex: number;
  readonly lastAddedTimeMs: number;
  /** Bytes held in memory (slot table, buffers, caches; all entries for the memory implementation). */
  readonly heldBytes: number;
  /**
   * Appends one entry, on the apply path (positional arguments: no object per call). logIndex
   * and timeMs never decrease between calls (asserted): they are the applied entry's. `kind`
   * is 1 to 255, `position` below 2^24.
   */
  add(key: KeyHash, kind: number, logIndex: number, position: number, timeMs: number): void;
  /** The entries of `query.key` in its time range, newest first; work bounded by `readsMax`. */
  find(query: IndexQuery): IndexFindResult;
  /**
   * Entries below `logIndex` are not asked for again (retention released that log prefix).
   * Whole files all of whose entries are below it are released (the file store deletes them
   * one sync late, so the previous snapshot stays restorable). Never lowers the mark.
   */
  releaseBelow(logIndex: number): void;
  /** Writes the index (format: SegmentedIndex.encodeInto; read by decodeMessageIndex); without records, only after `sync`. */
  encodeInto(writer: SnapshotWriter, withRecords: boolean): void;
  /** Makes every entry added so far durable, just before a snapshot records the extent. */
  sync(): void;
}

/** Where indexes live: one store per node; each restore opens a new index from it, replacing the last. */
export interface MessageIndexStore {
  readonly recordsDurable: boolean;
  /** The layout a new index gets. */
  readonly layout: IndexLayout;
  /**
   * The index `extent` describes. The entries it holds (`[firstFile·E, entryCount)`) must
   * already be stored — a restore from a snapshot without records: they are checked, and
   * anything stored after them is cut off, so replay writes it exactly once. An extent that
   * holds no entries (a new index, or one about to take a snapshot's records) needs nothing
   * and touches nothing until it is written. Throws MessageIndexError naming what is missing.
   */
  open(extent: IndexExtent): MessageIndex;
  /** The same files read-only: an earlier snapshot's index while the store keeps being written. */
  reader(): MessageIndexStore;
}

/** An index file is missing or damaged (the snapshot is fine, the files are not), or could not be written or read. */
export class MessageIndexError extends Error {
  override readonly name = 'MessageIndexError';
}

export const indexEntryBytes = 32;
export const entriesPerFileMax = 1 << 26;
export const slotsPerFileMax = 1 << 24;
export const hitsPerFindMax = 1024;
export const readsPerFindDefault = 1024;
export const readsPerFindMax = 65_536;
/** Small files for the simulator and tests: 2 MiB of entries, a 16 KiB slot table. */
export const memoryIndexLayoutDefault: IndexLayout = { entriesPerFile: 1 << 16, slotsPerFile: 1 << 12 };
const positionMax = 0xff_ffff;
const kindMax = 0xff;
const encodingVersion = 1;
/** An entry in a snapshot with records: f64 key, f64 log index, f64 time, u32 kind << 24 | position. */
const snapshotEntryBytes = 28;
/** Entries read at a time by scans (restore, snapshots with records). */
const scanEntries = 1024;

export function emptyIndexExtent(layout: IndexLayout): IndexExtent {
  return { layout, entryCount: 0, firstFile: 0, releasedBelow: 0, lastLogIndex: 0, lastTimeMs: 0 };
}

const isPowerOfTwo = (n: number): boolean => Number.isInteger(n) && n >= 1 && (n & (n - 1)) === 0;

/** Why `layout` is not one an index can have, or undefined. */
export function layoutProblem(layout: IndexLayout): string | undefined {
  if (!isPowerOfTwo(layout.entriesPerFile) || layout.entriesPerFile > entriesPerFileMax) return `${layout.entriesPerFile} entries per index file (a power of two up to ${entriesPerFileMax})`;
  if (!isPowerOfTwo(layout.slotsPerFile) || layout.slotsPerFile > slotsPerFileMax) return `${layout.slotsPerFile} slots per index file (a power of two up to ${slotsPerFileMax})`;
  return undefined;
}

/** Why `extent` is not one an index can have, or undefined. */
function extentProblem(extent: IndexExtent): string | undefined {
  const layoutIssue = layoutProblem(extent.layout);
  if (layoutIssue !== undefined) return layoutIssue;
  const { entryCount, firstFile, releasedBelow, lastLogIndex, lastTimeMs } = extent;
  if (!Number.isSafeInteger(entryCount) || entryCount < 0) return `an index of ${entryCount} entries`;
  if (!Number.isSafeInteger(firstFile) || firstFile < 0 || firstFile > Math.floor(entryCount / extent.layout.entriesPerFile)) return `first index file ${firstFile} of an index of ${entryCount} entries`;
  if (!Number.isSafeInteger(releasedBelow) || releasedBelow < 0) return `an index released below log index ${releasedBelow}`;
  if (!Number.isSafeInteger(lastLogIndex) || lastLogIndex < 0) return `an index whose last log index is ${lastLogIndex}`;
  if (!Number.isFinite(lastTimeMs) || lastTimeMs < 0) return `an index whose last time is ${lastTimeMs}`;
  return undefined;
}

/**
 * Where an index's files live; SegmentedIndex runs the chains over it. Entries and slot
 * tables are in the module comment's byte layout.
 */
export interface IndexFileStorage {
  /** Stores entry `seq`, always the one after the last stored; `entry` holds its bytes (valid during the call only). */
  append(seq: number, entry: Uint8Array): void;
  /** File `file` is full (its last entry was just appended); `slots` is its final slot table. */
  seal(file: number, slots: Uint32Array): void;
  /** Copies held entry `seq` into `into` (indexEntryBytes), through any cache: the query path. */
  readEntry(seq: number, into: Uint8Array): void;
  /** Copies held entries `[fromSeq, fromSeq + count)` into `into`, past any cache: scans. */
  scanEntries(fromSeq: number, count: number, into: Uint8Array): void;
  /** Slot `slot` of sealed file `file`'s table. */
  readSlot(file: number, slot: number): number;
  /** Files below `file` will not be read again. */
  releaseBelow(file: number): void;
  /** Makes every entry and seal durable. */
  sync(): void;
  /** Where file `file` is, for errors. */
  describe(file: number): string;
  readonly heldBytes: number;
  /** Drops buffers and descriptors; what was not synced is lost, as after a crash. */
  close(): void;
}

export interface SegmentedIndexOptions {
  readonly recordsDurable: boolean;
  readonly readOnly?: boolean;
}

/**
 * MessageIndex over IndexFileStorage: the chains, the walk, release and the snapshot
 * encoding, shared by the memory and the file implementation.
 *
 * Invariants: entries `[firstFile·E, entryCount)` are held; `heads` is the slot table of file
 * `activeFile = floor(entryCount / E)`, which holds `entryCount - activeFile·E` (< E) of
 * them; every file below it is sealed. `spans` describe files `[firstFile, lastFile]` with
 * entries. Restoring an older snapshot and replaying the same adds rebuilds the same bytes:
 * each file is a function of the adds it holds.
 */
export class SegmentedIndex implements MessageIndex {
  readonly recordsDurable: boolean;
  private readonly layout: IndexLayout;
  private readonly entriesPerFile: number;
  private readonly slotMask: number;
  private readonly readOnly: boolean;
  private entryCount: number;
  private firstFile: number;
  private releasedBelow: number;
  private lastLogIndex: number;
  private lastTimeMs: number;
  private readonly heads: Uint32Array;
  /** Per file with entries from firstFile on: its first entry's time, last entry's time and log index. */
  private spanFirstTimes: number[] = [];
  private spanLastTimes: number[] = [];
  private spanLastLogIndexes: number[] = [];
  /** Entries made durable by the last sync (all of them for an index opened from a snapshot without records). */
  private syncedCount: number;
  /** The first storage failure of a write: every later write throws it (the node is stopping). */
  private failure: Error | undefined;
  private readonly scratch = new Uint8Array(indexEntryBytes);
  private readonly view = new DataView(this.scratch.buffer);

  constructor(extent: IndexExtent, private readonly storage: IndexFileStorage, options: SegmentedIndexOptions) {
    const problem = extentProblem(extent);
    assert(problem === undefined, problem);
    this.recordsDurable = options.recordsDurable;
    this.readOnly = options.readOnly === true;
    this.layout = { entriesPerFile: extent.layout.entriesPerFile, slotsPerFile: extent.layout.slotsPerFile };
    this.entriesPerFile = extent.layout.entriesPerFile;
    this.slotMask = extent.layout.slotsPerFile - 1;
    this.heads = new Uint32Array(extent.layout.slotsPerFile);
    this.entryCount = extent.entryCount;
    this.firstFile = extent.firstFile;
    this.releasedBelow = extent.releasedBelow;
    this.lastLogIndex = extent.lastLogIndex;
    this.lastTimeMs = extent.lastTimeMs;
    this.syncedCount = extent.entryCount;
    if (extent.entryCount > extent.firstFile * this.entriesPerFile) this.loadHeld(extent);
  }

  get extent(): IndexExtent {
    return {
      layout: this.layout, entryCount: this.entryCount, firstFile: this.firstFile, releasedBelow: this.releasedBelow,
      lastLogIndex: this.lastLogIndex, lastTimeMs: this.lastTimeMs,
    };
  }

  get lastAddedLogIndex(): number {
    return this.lastLogIndex;
  }

  get lastAddedTimeMs(): number {
    return this.lastTimeMs;
  }

  get heldBytes(): number {
    return this.heads.byteLength + this.spanFirstTimes.length * 3 * Float64Array.BYTES_PER_ELEMENT + this.storage.heldBytes;
  }

  private get activeFile(): number {
    return Math.floor(this.entryCount / this.entriesPerFile);
  }

  add(key: KeyHash, kind: number, logIndex: number, position: number, timeMs: number): void {
    if (this.failure !== undefined) throw this.failure;
    // Messages are built only on failure (add is on the apply path).
    if (!(Number.isSafeInteger(key) && key >= 0)) assert(false, `index key hash ${key}`);
    if (!(Number.isInteger(kind) && kind >= 1 && kind <= kindMax)) assert(false, `index entry kind ${kind}`);
    if (!(Number.isInteger(position) && position >= 0 && position <= positionMax)) assert(false, `index entry position ${position}`);
    if (!(Number.isSafeInteger(logIndex) && logIndex >= this.lastLogIndex)) assert(false, `index entry at log index ${logIndex} after ${this.lastLogIndex}`);
    if (!(Number.isFinite(timeMs) && timeMs >= this.lastTimeMs)) assert(false, `index entry at ${timeMs} ms after ${this.lastTimeMs} ms`);
    assert(!this.readOnly, 'adding to a read-only message index');
    const seq = this.entryCount;
    const file = this.activeFile;
    const local = seq - file * this.entriesPerFile;
    const slot = key & this.slotMask;
    const view = this.view;
    view.setFloat64(0, key, true);
    view.setFloat64(8, logIndex, true);
    view.setFloat64(16, timeMs, true);
    view.setUint32(24, this.heads[slot] as number, true);
    view.setUint32(28, ((kind << 24) | position) >>> 0, true);
    try {
      this.storage.append(seq, this.scratch);
    } catch (error) {
      throw this.fail(error);
    }
    this.heads[slot] = local + 1;
    this.entryCount = seq + 1;
    this.lastLogIndex = logIndex;
    this.lastTimeMs = timeMs;
    if (local === 0) {
      this.spanFirstTimes.push(timeMs);
      this.spanLastTimes.push(timeMs);
      this.spanLastLogIndexes.push(logIndex);
    } else {
      const last = this.spanLastTimes.length - 1;
      this.spanLastTimes[last] = timeMs;
      this.spanLastLogIndexes[last] = logIndex;
    }
    if (local + 1 === this.entriesPerFile) {
      try {
        this.storage.seal(file, this.heads);
      } catch (error) {
        throw this.fail(error);
      }
      this.heads.fill(0);
    }
  }

  find(query: IndexQuery): IndexFindResult {
    const { key, fromMs, toMs, limit } = query;
    const readsMax = query.readsMax ?? readsPerFindDefault;
    assert(Number.isInteger(limit) && limit >= 1 && limit <= hitsPerFindMax, `a find of ${limit} hits (1 to ${hitsPerFindMax})`);
    assert(Number.isInteger(readsMax) && readsMax >= 1 && readsMax <= readsPerFindMax, `a find of ${readsMax} reads (1 to ${readsPerFindMax})`);
    assert(Number.isSafeInteger(key) && key >= 0, `a find of key hash ${key}`);
    assert(!Number.isNaN(fromMs) && !Number.isNaN(toMs), 'a find with a NaN time bound');
    const slot = key & this.slotMask;
    const hits: IndexHit[] = [];
    const held = this.entryCount > this.firstFile * this.entriesPerFile;
    const lastFile = Math.ceil(this.entryCount / this.entriesPerFile) - 1;
    let file = lastFile;
    let pointer = 0;
    const resume = query.resume;
    if (resume !== undefined) {
      if (resume.slot !== slot || resume.file > lastFile || resume.pointer < 0 || resume.pointer > this.entriesInFile(resume.file)) {
        throw new Error(`resume point ${JSON.stringify(resume)} is not from a walk of this key in this index`);
      }
      file = resume.file;
      pointer = resume.pointer;
    }
    if (!held) return { hits, resume: undefined };
    const view = this.view;
    let reads = 0;
    for (; file >= this.firstFile; file--, pointer = 0) {
      const span = file - this.firstFile;
      if (pointer === 0) {
        // A new file: its span may end the walk or skip the file, before any read.
        if ((this.spanLastLogIndexes[span] as number) < this.releasedBelow || (this.spanLastTimes[span] as number) < fromMs) break;
        if ((this.spanFirstTimes[span] as number) > toMs) continue;
        if (file === this.activeFile) {
          pointer = this.heads[slot] as number;
        } else {
          if (reads === readsMax) return { hits, resume: { slot, file, pointer: 0 } };
          reads++;
          pointer = this.storage.readSlot(file, slot);
        }
      }
      while (pointer !== 0) {
        if (reads === readsMax) return { hits, resume: { slot, file, pointer } };
        reads++;
        this.storage.readEntry(file * this.entriesPerFile + pointer - 1, this.scratch);
        const logIndex = view.getFloat64(8, true);
        const timeMs = view.getFloat64(16, true);
        // Everything further is older or lower: the chain, then the older files.
        if (logIndex < this.releasedBelow || timeMs < fromMs) return { hits, resume: undefined };
        const previous = view.getUint32(24, true);
        if (previous >= pointer) throw new MessageIndexError(`${this.storage.describe(file)}: entry ${file * this.entriesPerFile + pointer - 1} links forward (to local entry ${previous - 1}): the file is damaged — repair this node from its peers (raftmq repair)`);
        if (view.getFloat64(0, true) === key && timeMs <= toMs) {
          const packed = view.getUint32(28, true);
          hits.push({ logIndex, position: packed & positionMax, kind: packed >>> 24, timeMs });
          if (hits.length === limit) {
            if (previous !== 0) return { hits, resume: { slot, file, pointer: previous } };
            return { hits, resume: file > this.firstFile ? { slot, file: file - 1, pointer: 0 } : undefined };
          }
        }
        pointer = previous;
      }
    }
    return { hits, resume: undefined };
  }

  releaseBelow(logIndex: number): void {
    assert(Number.isSafeInteger(logIndex) && logIndex >= 0, `releasing the index below log index ${logIndex}`);
    assert(!this.readOnly, 'releasing in a read-only message index');
    if (this.failure !== undefined) throw this.failure;
    if (logIndex <= this.releasedBelow) return;
    this.releasedBelow = logIndex;
    let released = 0;
    // Sealed files only: the one being written stays even when all of it is below.
    while (this.firstFile + released < this.activeFile && (this.spanLastLogIndexes[released] as number) < logIndex) released++;
    if (released === 0) return;
    this.firstFile += released;
    this.spanFirstTimes.splice(0, released);
    this.spanLastTimes.splice(0, released);
    this.spanLastLogIndexes.splice(0, released);
    try {
      this.storage.releaseBelow(this.firstFile);
    } catch (error) {
      throw this.fail(error);
    }
  }

  sync(): void {
    assert(!this.readOnly, 'syncing a read-only message index');
    if (this.failure !== undefined) throw this.failure;
    try {
      this.storage.sync();
    } catch (error) {
      throw this.fail(error);
    }
    this.syncedCount = this.entryCount;
  }

  /**
   * u8 version = 1 | u32 entriesPerFile | u32 slotsPerFile | f64 entryCount | f64 firstFile |
   * f64 releasedBelow | f64 lastLogIndex | f64 lastTimeMs; with records, then the held
   * entries `[firstFile·E, entryCount)` oldest first, each f64 key hash, f64 log index, f64
   * time, u32 kind << 24 | position (the links and slot tables follow from them). The bytes
   * depend only on the adds and releases made, not on the implementation.
   */
  encodeInto(writer: SnapshotWriter, withRecords: boolean): void {
    if (!withRecords) {
      assert(this.recordsDurable, 'a memory message index can only be written with its records');
      assert(this.syncedCount === this.entryCount, `message index snapshot without records of ${this.entryCount} entries, ${this.syncedCount} synced`);
    }
    writer.u8(encodingVersion);
    writer.u32(this.layout.entriesPerFile);
    writer.u32(this.layout.slotsPerFile);
    writer.f64(this.entryCount);
    writer.f64(this.firstFile);
    writer.f64(this.releasedBelow);
    writer.f64(this.lastLogIndex);
    writer.f64(this.lastTimeMs);
    if (!withRecords) return;
    const buffer = new Uint8Array(scanEntries * indexEntryBytes);
    const view = new DataView(buffer.buffer);
    for (let seq = this.firstFile * this.entriesPerFile; seq < this.entryCount;) {
      const count = Math.min(scanEntries, this.entryCount - seq);
      this.storage.scanEntries(seq, count, buffer);
      for (let i = 0; i < count; i++) {
        const at = i * indexEntryBytes;
        writer.f64(view.getFloat64(at, true));
        writer.f64(view.getFloat64(at + 8, true));
        writer.f64(view.getFloat64(at + 16, true));
        writer.u32(view.getUint32(at + 28, true));
      }
      seq += count;
    }
  }

  /** Drops what the storage buffered (the store opened another index, or is closing). */
  close(): void {
    this.storage.close();
  }

  /** Entries file `file` holds. */
  private entriesInFile(file: number): number {
    return Math.min(this.entriesPerFile, this.entryCount - file * this.entriesPerFile);
  }

  /** A storage write failed: that stays the index's error (a partly done write must not be built on). */
  private fail(error: unknown): Error {
    this.failure = error instanceof Error ? error : new MessageIndexError(String(error));
    return this.failure;
  }

  /**
   * Opening held entries: the spans of the sealed files from their first and last entries;
   * the file being written scanned to rebuild its slot table, each link checked against it;
   * the last entry checked against the extent.
   */
  private loadHeld(extent: IndexExtent): void {
    const E = this.entriesPerFile;
    const active = this.activeFile;
    const view = this.view;
    let previousLogIndex = 0;
    let previousTimeMs = 0;
    for (let file = this.firstFile; file < active; file++) {
      this.storage.scanEntries(file * E, 1, this.scratch);
      const firstTimeMs = view.getFloat64(16, true);
      const firstLogIndex = view.getFloat64(8, true);
      this.storage.scanEntries(file * E + E - 1, 1, this.scratch);
      const lastLogIndex = view.getFloat64(8, true);
      const lastTimeMs = view.getFloat64(16, true);
      if (!(firstLogIndex >= previousLogIndex && lastLogIndex >= firstLogIndex && firstTimeMs >= previousTimeMs && lastTimeMs >= firstTimeMs)) {
        throw new MessageIndexError(`${this.storage.describe(file)} holds entries out of order (log index ${firstLogIndex}..${lastLogIndex}, time ${firstTimeMs}..${lastTimeMs} after ${previousLogIndex}, ${previousTimeMs}) — repair this node from its peers (raftmq repair)`);
      }
      this.spanFirstTimes.push(firstTimeMs);
      this.spanLastTimes.push(lastTimeMs);
      this.spanLastLogIndexes.push(lastLogIndex);
      previousLogIndex = lastLogIndex;
      previousTimeMs = lastTimeMs;
    }
    const inActive = this.entryCount - active * E;
    if (inActive > 0) {
      const buffer = new Uint8Array(Math.min(scanEntries, inActive) * indexEntryBytes);
      const scan = new DataView(buffer.buffer);
      for (let local = 0; local < inActive;) {
        const count = Math.min(scanEntries, inActive - local);
        this.storage.scanEntries(active * E + local, count, buffer);
        for (let i = 0; i < count; i++, local++) {
          const at = i * indexEntryBytes;
          const key = scan.getFloat64(at, true);
          const logIndex = scan.getFloat64(at + 8, true);
          const timeMs = scan.getFloat64(at + 16, true);
          const slot = key & this.slotMask;
          const linked = scan.getUint32(at + 24, true);
          if (!(Number.isSafeInteger(key) && key >= 0 && linked === this.heads[slot] && logIndex >= previousLogIndex && timeMs >= previousTimeMs)) {
            throw new MessageIndexError(`${this.storage.describe(active)}: entry ${active * E + local} is damaged (key ${key}, link ${linked} where ${this.heads[slot]} was expected, log index ${logIndex}, time ${timeMs}) — repair this node from its peers (raftmq repair)`);
          }
          this.heads[slot] = local + 1;
          if (local === 0) this.spanFirstTimes.push(timeMs);
          previousLogIndex = logIndex;
          previousTimeMs = timeMs;
        }
      }
      this.spanLastTimes.push(previousTimeMs);
      this.spanLastLogIndexes.push(previousLogIndex);
    }
    if (previousLogIndex !== extent.lastLogIndex || previousTimeMs !== extent.lastTimeMs) {
      throw new MessageIndexError(`${this.storage.describe(Math.ceil(this.entryCount / E) - 1)}: its last entry (log index ${previousLogIndex}, ${previousTimeMs} ms) is not the snapshot's (log index ${extent.lastLogIndex}, ${extent.lastTimeMs} ms) — repair this node from its peers (raftmq repair)`);
    }
  }
}

/**
 * Reads what encodeInto wrote (the reader throws if the bytes run out; bytes that could not
 * have come from encodeInto throw Error). Without records, `store` must hold the entries;
 * with them, they are added to a new index of `store` and must rebuild the same extent.
 */
export function decodeMessageIndex(reader: SnapshotReader, withRecords: boolean, store: MessageIndexStore): MessageIndex {
  const version = reader.u8();
  if (version !== encodingVersion) throw new Error(`a message index of format version ${version} (this build reads ${encodingVersion})`);
  const layout: IndexLayout = { entriesPerFile: reader.u32(), slotsPerFile: reader.u32() };
  const extent: IndexExtent = {
    layout, entryCount: reader.f64(), firstFile: reader.f64(), releasedBelow: reader.f64(), lastLogIndex: reader.f64(), lastTimeMs: reader.f64(),
  };
  const problem = extentProblem(extent);
  if (problem !== undefined) throw new Error(`a message index snapshot with ${problem}`);
  const firstSeq = extent.firstFile * layout.entriesPerFile;
  const held = extent.entryCount - firstSeq;
  if (!withRecords || held === 0) return store.open(extent);
  reader.need(held * snapshotEntryBytes, `a message index of ${held} entries`);
  const index = store.open({ ...extent, entryCount: firstSeq, lastLogIndex: 0, lastTimeMs: 0 });
  let lastLogIndex = 0;
  let lastTimeMs = 0;
  for (let i = 0; i < held; i++) {
    const key = reader.f64();
    const logIndex = reader.f64();
    const timeMs = reader.f64();
    const packed = reader.u32();
    const kind = packed >>> 24;
    if (!Number.isSafeInteger(key) || key < 0 || kind === 0 || !Number.isSafeInteger(logIndex) || logIndex < lastLogIndex || !Number.isFinite(timeMs) || timeMs < lastTimeMs) {
      throw new Error(`a message index entry (key ${key}, kind ${kind}, log index ${logIndex}, time ${timeMs}) after log index ${lastLogIndex}, time ${lastTimeMs}`);
    }
    index.add(key as KeyHash, kind, logIndex, packed & positionMax, timeMs);
    lastLogIndex = logIndex;
    lastTimeMs = timeMs;
  }
  if (lastLogIndex !== extent.lastLogIndex || lastTimeMs !== extent.lastTimeMs) {
    throw new Error(`a message index whose last entry (log index ${lastLogIndex}, ${lastTimeMs} ms) is not the one it names (${extent.lastLogIndex}, ${extent.lastTimeMs} ms)`);
  }
  return index;
}

// ---- the memory implementation ---------------------------------------------------------------

/** Files as typed arrays that double as they fill: for the simulator and tests. */
export class MemoryIndexFiles implements IndexFileStorage {
  /** files[i] holds file firstFile + i's entries; sealed[i] its slot table once sealed. */
  private files: Uint8Array[] = [];
  private sealed: (Uint32Array | undefined)[] = [];
  private firstFile: number;
  private next: number;
  private readonly entriesPerFile: number;

  constructor(extent: IndexExtent) {
    assert(extent.entryCount === extent.firstFile * extent.layout.entriesPerFile, `a memory message index cannot hold entries [${extent.firstFile * extent.layout.entriesPerFile}, ${extent.entryCount}) after a restart`);
    this.entriesPerFile = extent.layout.entriesPerFile;
    this.firstFile = extent.firstFile;
    this.next = extent.entryCount;
  }

  get heldBytes(): number {
    let bytes = 0;
    for (const file of this.files) bytes += file.byteLength;
    for (const slots of this.sealed) bytes += slots?.byteLength ?? 0;
    return bytes;
  }

  append(seq: number, entry: Uint8Array): void {
    assert(seq === this.next, `index entry ${seq} appended after ${this.next - 1}`);
    const index = Math.floor(seq / this.entriesPerFile) - this.firstFile;
    const at = (seq % this.entriesPerFile) * indexEntryBytes;
    let file = this.files[index];
    if (file === undefined) {
      assert(index === this.files.length, `index file ${index + this.firstFile} started out of order`);
      file = new Uint8Array(Math.min(64, this.entriesPerFile) * indexEntryBytes);
      this.files.push(file);
      this.sealed.push(undefined);
    } else if (at === file.byteLength) {
      const grown = new Uint8Array(file.byteLength * 2);
      grown.set(file);
      file = grown;
      this.files[index] = file;
    }
    file.set(entry, at);
    this.next++;
  }

  seal(file: number, slots: Uint32Array): void {
    this.sealed[file - this.firstFile] = slots.slice();
  }

  readEntry(seq: number, into: Uint8Array): void {
    this.scanEntries(seq, 1, into);
  }

  scanEntries(fromSeq: number, count: number, into: Uint8Array): void {
    assert(fromSeq >= this.firstFile * this.entriesPerFile && fromSeq + count <= this.next, `index entries [${fromSeq}, ${fromSeq + count}) are not held`);
    for (let done = 0; done < count;) {
      const seq = fromSeq + done;
      const file = this.files[Math.floor(seq / this.entriesPerFile) - this.firstFile] as Uint8Array;
      const local = seq % this.entriesPerFile;
      const run = Math.min(count - done, this.entriesPerFile - local);
      into.set(file.subarray(local * indexEntryBytes, (local + run) * indexEntryBytes), done * indexEntryBytes);
      done += run;
    }
  }

  readSlot(file: number, slot: number): number {
    const slots = this.sealed[file - this.firstFile];
    assert(slots !== undefined, `index file ${file} is not sealed`);
    return slots[slot] as number;
  }

  releaseBelow(file: number): void {
    const released = file - this.firstFile;
    if (released <= 0) return;
    assert(released <= this.files.length, `releasing index files below ${file}, past the last one held`);
    this.files.splice(0, released);
    this.sealed.splice(0, released);
    this.firstFile = file;
  }

  sync(): void {}

  describe(file: number): string {
    return `memory index file ${file}`;
  }

  close(): void {}
}

/** A message index in memory: snapshots carry its entries. */
export class MemoryMessageIndex extends SegmentedIndex {
  constructor(extent: IndexExtent = emptyIndexExtent(memoryIndexLayoutDefault)) {
    super(extent, new MemoryIndexFiles(extent), { recordsDurable: false });
  }
}

/** Indexes in memory: nothing survives the process, so snapshots carry the entries. */
export class MemoryMessageIndexStore implements MessageIndexStore {
  readonly recordsDurable = false;
  constructor(readonly layout: IndexLayout = memoryIndexLayoutDefault) {
    const problem = layoutProblem(layout);
    assert(problem === undefined, problem);
  }

  open(extent: IndexExtent): MessageIndex {
    return new MemoryMessageIndex(extent);
  }

  reader(): MessageIndexStore {
    return this;
  }
}

// ---- no index ------------------------------------------------------------------------------

/**
 * An index that keeps nothing: adds are dropped, finds answer nothing, and it encodes as an
 * empty index of its layout (a snapshot of it reads back into any store as an empty index).
 * For states that need no query or trace — the broker simulator's machines, whose snapshot
 * sizes (and so their install timings, and the scenarios its seeds replay) stay as they were.
 */
export class DisabledMessageIndex implements MessageIndex {
  readonly recordsDurable = false;
  /** Infinity: no add is ever due (BrokerState asks before computing a key). */
  readonly lastAddedLogIndex = Infinity;
  readonly lastAddedTimeMs = Infinity;
  readonly heldBytes = 0;
  readonly extent: IndexExtent;
  constructor(layout: IndexLayout = memoryIndexLayoutDefault) {
    this.extent = emptyIndexExtent(layout);
  }

  add(): void {}

  find(): IndexFindResult {
    return { hits: [], resume: undefined };
  }

  releaseBelow(): void {}

  encodeInto(writer: SnapshotWriter): void {
    const { layout } = this.extent;
    writer.u8(encodingVersion);
    writer.u32(layout.entriesPerFile);
    writer.u32(layout.slotsPerFile);
    for (let i = 0; i < 5; i++) writer.f64(0);
  }

  sync(): void {}
}

/** Indexes that keep nothing (DisabledMessageIndex); a snapshot's index is read and dropped. */
export const disabledMessageIndexStore: MessageIndexStore = {
  recordsDurable: false,
  layout: memoryIndexLayoutDefault,
  open: (extent) => new DisabledMessageIndex(extent.layout),
  reader: () => disabledMessageIndexStore,
};

// ---- the key hash ----------------------------------------------------------------------------

/** Fixed, so every node hashes alike. ("RMQI") */
const hashSeed = 0x524d_5149;
const domainMessageId = 1;
const domainTopicKey = 2;
const domainLocation = 3;
/** The input as 32-bit words, reused (grown for long keys). */
let words = new Int32Array(64);

/**
 * A message id's key (ids are global: the same id in two topics shares a key; the caller
 * compares the real message). The hash of the little-endian bytes
 *   u32 1 | u32 id.length | the id's UTF-16 code units
 */
export function messageIdKey(messageId: string): KeyHash {
  const units = messageId.length;
  const w = packUnits(messageId, 2, 8 + 2 * units);
  words[0] = domainMessageId;
  words[1] = units;
  return murmur(w, 8 + 2 * units);
}

/**
 * A user key's key, scoped to its topic by the log index that created the topic (a topic
 * created again is another topic). The hash of the little-endian bytes
 *   u32 2 | u32 topicCreatedAt mod 2^32 | u32 floor(topicCreatedAt / 2^32) | u32 key.length | the key's code units
 */
export function topicKey(topicCreatedAt: number, key: string): KeyHash {
  assert(Number.isSafeInteger(topicCreatedAt) && topicCreatedAt >= 0, `a topic created at log index ${topicCreatedAt}`);
  const units = key.length;
  const w = packUnits(key, 4, 16 + 2 * units);
  words[0] = domainTopicKey;
  words[1] = topicCreatedAt >>> 0;
  words[2] = Math.floor(topicCreatedAt / 0x1_0000_0000);
  words[3] = units;
  return murmur(w, 16 + 2 * units);
}

/**
 * A stored message's key by where it is stored: the entry (log index) and its position in
 * the batch, which name one message for good (a delayed or transactional one keeps its send
 * entry's location when it is stored later; a DLQ holds references to it). The hash of the
 * little-endian bytes
 *   u32 3 | u32 logIndex mod 2^32 | u32 floor(logIndex / 2^32) | u32 position
 */
export function messageLocationKey(logIndex: number, position: number): KeyHash {
  assert(Number.isSafeInteger(logIndex) && logIndex >= 0, `a message location at log index ${logIndex}`);
  assert(Number.isInteger(position) && position >= 0 && position <= 0xffff_ffff, `a message location at position ${position}`);
  words[0] = domainLocation;
  words[1] = logIndex >>> 0;
  words[2] = Math.floor(logIndex / 0x1_0000_0000);
  words[3] = position | 0;
  return murmur(words, 16);
}

/** Writes `text`'s code units, two a word (low one first), from word `from`; zero-pads to whole 16-byte blocks. */
function packUnits(text: string, from: number, lengthBytes: number): Int32Array {
  const paddedWords = ((lengthBytes + 15) >>> 4) * 4;
  if (words.length < paddedWords) {
    let size = words.length;
    while (size < paddedWords) size *= 2;
    words = new Int32Array(size);
  }
  const u = words;
  let w = from;
  let i = 0;
  for (; i + 1 < text.length; i += 2) u[w++] = text.charCodeAt(i) | (text.charCodeAt(i + 1) << 16);
  if (i < text.length) u[w++] = text.charCodeAt(i);
  u.fill(0, w, paddedWords);
  return u;
}

/**
 * MurmurHash3_x86_128 (Austin Appleby, SMHasher) of `lengthBytes` bytes held as words in
 * `u`, seed hashSeed; the key is the first output word plus the low 21 bits of the second,
 * so the slot (low bits) comes from a fully mixed word.
 */
function murmur(u: Int32Array, lengthBytes: number): KeyHash {
  murmur3x86x128(u, lengthBytes, hashSeed, hashOut);
  return (((hashOut[1] as number) & 0x1f_ffff) * 0x1_0000_0000 + ((hashOut[0] as number) >>> 0)) as KeyHash;
}

/** murmur's output words (module scratch). */
const hashOut = new Int32Array(4);
