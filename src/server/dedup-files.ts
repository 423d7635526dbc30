/**
 * The send de-duplication window's records in files (src/broker/core/dedup-window.ts): fixed
 * 36-byte records (u32 × 4 key hash, i32 queue id, f64 offset, f64 time, little-endian),
 * `recordsPerFile` to a file named by its first sequence number, in one directory
 * (`<data>/dedup/<first sequence number, 20 digits>.dd`). The files are record-files.ts's
 * streams, as the consume-queue files are: a tail block of 1,024 records in memory, an LRU
 * cache of blocks for reads (a fixed byte bound, cacheBlocks × 36 KiB), sync I/O, fdatasync
 * only in `sync` just before a snapshot, released files deleted one sync late, every I/O
 * failure a DedupRecordsError (the node stops).
 *
 * What reads them: a duplicate send reads its record (usually in the tail or a cached block);
 * expiry reads the oldest records in order; a restore from a positions-only snapshot and a
 * resize of the window's table scan the hashes (straight from the files, past the cache); a
 * snapshot for a peer scans all of it.
 */
import { assert } from '../util/assert.js';
import { DedupRecordsError, dedupRecordBytes, type DedupColumns, type DedupRecordStore, type DedupRecords } from '../broker/core/dedup-window.js';
import { BlockCache, RecordStream, blockRecords, cutToDurable, failure, type RecordFileContext } from './record-files.js';

/** 4.5 MiB files: a window of a million ids is eight of them. */
export const dedupRecordsPerFileDefault = 128 * blockRecords;
/** 32 blocks of 36 KiB: 1.1 MiB. */
const cacheBlocksDefault = 32;
/** Records copied at a time by the scans (a scratch buffer of 288 KiB, made on the first scan). */
const scanRecords = 8192;

export interface DedupFileStoreOptions {
  readonly dir: string;
  /** A multiple of 1,024. */
  readonly recordsPerFile?: number;
  /** Blocks of 1,024 records (36 KiB) cached for reads. */
  readonly cacheBlocks?: number;
  /**
   * Test mode (the jepsen harness's power cuts): remember how long each file was at its last
   * fdatasync, so `powerFail` can cut every file back to that plus a random part of what was
   * written since, as a power cut would.
   */
  readonly powerLossTestMode?: boolean;
}

export interface DedupFilesPowerFailReport {
  readonly dedupFiles: number;
  readonly dedupBytesDiscarded: number;
}

export class DedupFileStore implements DedupRecordStore {
  readonly recordsDurable = true;
  readonly recordsPerFile: number;
  /** The records opened last: the ones the state writes (a restore replaces them). */
  private current: FileDedupRecords | undefined;
  private generation = 0;
  private readonly context: RecordFileContext;

  constructor(private readonly options: DedupFileStoreOptions) {
    this.recordsPerFile = options.recordsPerFile ?? dedupRecordsPerFileDefault;
    assert(Number.isSafeInteger(this.recordsPerFile) && this.recordsPerFile > 0 && this.recordsPerFile % blockRecords === 0, `records per dedup file must be a multiple of ${blockRecords}`);
    this.context = {
      recordBytes: dedupRecordBytes, recordsPerFile: this.recordsPerFile, suffix: '.dd', noun: 'dedup', numberName: 'sequence number',
      errorClass: DedupRecordsError, cache: new BlockCache(options.cacheBlocks ?? cacheBlocksDefault),
      durableSizes: options.powerLossTestMode === true ? new Map() : undefined, pendingDirSyncs: new Set(),
    };
    // The directory is made with the first flushed block: the node claims its data directory first.
  }

  get dir(): string {
    return this.options.dir;
  }

  /**
   * Power-loss test mode: cuts every file written since its last fdatasync back to its
   * durable size plus a random part of the rest. The caller ends the process right after.
   */
  powerFail(randomInt: (maxExclusive: number) => number): DedupFilesPowerFailReport {
    assert(this.context.durableSizes !== undefined, 'powerFail outside power-loss test mode');
    const cut = cutToDurable(this.context.durableSizes, randomInt);
    return { dedupFiles: cut.files, dedupBytesDiscarded: cut.bytesDiscarded };
  }

  open(from: number, to: number): DedupRecords {
    // A restore replaces the window: what the old records buffered is superseded.
    this.current?.close();
    this.current = new FileDedupRecords(new RecordStream(this.context, this.options.dir, this.generation++, from, to, false));
    return this.current;
  }

  sync(): void {
    try {
      this.current?.sync();
    } catch (error) {
      throw failure(this.context, `syncing the dedup files in ${this.options.dir}`, error);
    }
  }

  reader(): DedupRecordStore {
    const openReadOnly = (from: number, to: number): DedupRecords =>
      new FileDedupRecords(new RecordStream(this.context, this.options.dir, this.generation++, from, to, true));
    return {
      recordsDurable: true,
      open: openReadOnly,
      sync(): void {
        throw new Error('a read-only view of the dedup files cannot sync');
      },
      reader(): DedupRecordStore {
        return this;
      },
    };
  }

  /** Closes the files (the node is stopping); unsynced records are lost, as after a crash. */
  close(): void {
    this.current?.close();
    this.current = undefined;
  }
}

/** Byte offsets in a record. */
const queueIdAt = 16;
const offsetAt = 20;
const timeAt = 28;

/** The window's records in one stream. */
class FileDedupRecords implements DedupRecords {
  private scratch: Buffer | undefined;

  constructor(private readonly stream: RecordStream) {}

  append(seq: number, hash: Uint32Array, queueId: number, offset: number, timeMs: number): void {
    const view = this.stream.appendView(seq);
    const at = this.stream.located;
    view.setUint32(at, hash[0] as number, true);
    view.setUint32(at + 4, hash[1] as number, true);
    view.setUint32(at + 8, hash[2] as number, true);
    view.setUint32(at + 12, hash[3] as number, true);
    view.setInt32(at + queueIdAt, queueId, true);
    view.setFloat64(at + offsetAt, offset, true);
    view.setFloat64(at + timeAt, timeMs, true);
  }

  appendColumns(from: number, columns: DedupColumns): void {
    assert(from === this.stream.next, `dedup records from ${from} written after ${this.stream.next - 1}`);
    const { hashes, queueIds, offsets, timesMs } = columns;
    for (let i = 0; i < queueIds.length; i++) {
      const view = this.stream.appendView(from + i);
      const at = this.stream.located;
      for (let w = 0; w < 4; w++) view.setUint32(at + 4 * w, hashes[4 * i + w] as number, true);
      view.setInt32(at + queueIdAt, queueIds[i] as number, true);
      view.setFloat64(at + offsetAt, offsets[i] as number, true);
      view.setFloat64(at + timeAt, timesMs[i] as number, true);
    }
  }

  readHash(seq: number, into: Uint32Array): void {
    const view = this.stream.locate(seq);
    const at = this.stream.located;
    into[0] = view.getUint32(at, true);
    into[1] = view.getUint32(at + 4, true);
    into[2] = view.getUint32(at + 8, true);
    into[3] = view.getUint32(at + 12, true);
  }

  queueIdAt(seq: number): number {
    return this.stream.locate(seq).getInt32(this.stream.located + queueIdAt, true);
  }

  offsetAt(seq: number): number {
    return this.stream.locate(seq).getFloat64(this.stream.located + offsetAt, true);
  }

  timeAt(seq: number): number {
    return this.stream.locate(seq).getFloat64(this.stream.located + timeAt, true);
  }

  readHashes(from: number, count: number, into: Uint32Array): void {
    this.scan(from, count, (view, at, i) => {
      into[4 * i] = view.getUint32(at, true);
      into[4 * i + 1] = view.getUint32(at + 4, true);
      into[4 * i + 2] = view.getUint32(at + 8, true);
      into[4 * i + 3] = view.getUint32(at + 12, true);
    });
  }

  readColumns(from: number, count: number): DedupColumns {
    const columns: DedupColumns = { hashes: new Uint32Array(count * 4), queueIds: new Int32Array(count), offsets: new Float64Array(count), timesMs: new Float64Array(count) };
    this.scan(from, count, (view, at, i) => {
      for (let w = 0; w < 4; w++) columns.hashes[4 * i + w] = view.getUint32(at + 4 * w, true);
      columns.queueIds[i] = view.getInt32(at + queueIdAt, true);
      columns.offsets[i] = view.getFloat64(at + offsetAt, true);
      columns.timesMs[i] = view.getFloat64(at + timeAt, true);
    });
    return columns;
  }

  releaseBelow(seq: number): void {
    this.stream.releaseBelow(seq);
  }

  sync(): void {
    this.stream.sync();
  }

  close(): void {
    this.stream.close();
  }

  /** Calls `visit` for each record of `[from, from + count)` in order, with its view, byte offset and index from `from`. */
  private scan(from: number, count: number, visit: (view: DataView, at: number, i: number) => void): void {
    this.scratch ??= Buffer.alloc(scanRecords * dedupRecordBytes);
    const scratch = this.scratch;
    const view = new DataView(scratch.buffer, scratch.byteOffset, scratch.byteLength);
    for (let done = 0; done < count; done += scanRecords) {
      const n = Math.min(scanRecords, count - done);
      this.stream.copyRange(from + done, n, scratch);
      for (let i = 0; i < n; i++) visit(view, i * dedupRecordBytes, done + i);
    }
  }
}
