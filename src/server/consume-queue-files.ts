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
 * sync late, so the previous snapshot stays restorable too. The files themselves are
 * record-files.ts's streams (the mechanism the dedup files use too).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { assert } from '../util/assert.js';
import {
  QueueRecordsError, queueRecordBytes, type QueueColumns, type QueueIdentity, type QueueRecordStore, type QueueRecords,
} from '../broker/core/consume-queue.js';
import { BlockCache, RecordStream, blockRecords, cutToDurable, failure, listDir, syncDir, type RecordFileContext } from './record-files.js';

/** 6 MiB files, as RocketMQ's (300,000 × 20 bytes). */
export const recordsPerFileDefault = 256 * blockRecords;
const cacheBlocksDefault = 256;

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
  /** What every queue's stream shares: the record format, the cache, the power-loss sizes. */
  private readonly context: RecordFileContext;

  constructor(private readonly options: QueueFileStoreOptions) {
    this.recordsPerFile = options.recordsPerFile ?? recordsPerFileDefault;
    assert(Number.isSafeInteger(this.recordsPerFile) && this.recordsPerFile > 0 && this.recordsPerFile % blockRecords === 0, `records per queue file must be a multiple of ${blockRecords}`);
    this.cache = new BlockCache(options.cacheBlocks ?? cacheBlocksDefault);
    this.context = {
      recordBytes: queueRecordBytes, recordsPerFile: this.recordsPerFile, suffix: '.cq', noun: 'queue', numberName: 'offset',
      errorClass: QueueRecordsError, cache: this.cache,
      durableSizes: options.powerLossTestMode === true ? new Map() : undefined, pendingDirSyncs: new Set(),
    };
    // The directory is made with the first record: the node claims its data directory first.
  }

  /**
   * Power-loss test mode: cuts every file written since its last fdatasync back to its
   * durable size plus a random part of the rest. The caller ends the process right after.
   */
  powerFail(randomInt: (maxExclusive: number) => number): QueueFilesPowerFailReport {
    assert(this.context.durableSizes !== undefined, 'powerFail outside power-loss test mode');
    const cut = cutToDurable(this.context.durableSizes, randomInt);
    return { queueFiles: cut.files, queueBytesDiscarded: cut.bytesDiscarded };
  }

  get dir(): string {
    return this.options.dir;
  }

  open(queue: QueueIdentity, from: number, to: number): QueueRecords {
    const name = queueDirName(queue);
    // A restore replaces the queue: what the old object buffered is superseded.
    this.openQueues.get(name)?.close();
    const records = new FileQueueRecords(new RecordStream(this.context, path.join(this.options.dir, name), this.generation++, from, to, false));
    this.openQueues.set(name, records);
    return records;
  }

  sync(live: readonly QueueIdentity[]): void {
    try {
      this.syncLive(live);
    } catch (error) {
      throw failure(this.context, `syncing the queue files in ${this.options.dir}`, error);
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
      new FileQueueRecords(new RecordStream(this.context, path.join(this.options.dir, queueDirName(queue)), this.generation++, from, to, true));
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

/** One queue's records: 24 bytes each in its stream (f64 log index, u32 position, i32 tag id, f64 store time). */
class FileQueueRecords implements QueueRecords {
  constructor(private readonly stream: RecordStream) {}

  write(offset: number, logIndex: number, position: number, tagId: number, storeTimeMs: number): void {
    const view = this.stream.appendView(offset);
    const at = this.stream.located;
    view.setFloat64(at, logIndex, true);
    view.setUint32(at + 8, position, true);
    view.setInt32(at + 12, tagId, true);
    view.setFloat64(at + 16, storeTimeMs, true);
  }

  writeColumns(from: number, columns: QueueColumns): void {
    assert(from === this.stream.next, `queue records from ${from} written after ${this.stream.next - 1}`);
    for (let i = 0; i < columns.logIndexes.length; i++) {
      this.write(from + i, columns.logIndexes[i] as number, columns.positions[i] as number, columns.tagIds[i] as number, columns.storeTimes[i] as number);
    }
  }

  logIndexAt(offset: number): number {
    return this.stream.locate(offset).getFloat64(this.stream.located, true);
  }

  positionAt(offset: number): number {
    return this.stream.locate(offset).getUint32(this.stream.located + 8, true);
  }

  tagIdAt(offset: number): number {
    return this.stream.locate(offset).getInt32(this.stream.located + 12, true);
  }

  storeTimeAt(offset: number): number {
    return this.stream.locate(offset).getFloat64(this.stream.located + 16, true);
  }

  readColumns(from: number, count: number): QueueColumns {
    const columns: QueueColumns = {
      logIndexes: new Float64Array(count), positions: new Uint32Array(count), tagIds: new Int32Array(count), storeTimes: new Float64Array(count),
    };
    for (let i = 0; i < count; i++) {
      const view = this.stream.locate(from + i);
      const at = this.stream.located;
      columns.logIndexes[i] = view.getFloat64(at, true);
      columns.positions[i] = view.getUint32(at + 8, true);
      columns.tagIds[i] = view.getInt32(at + 12, true);
      columns.storeTimes[i] = view.getFloat64(at + 16, true);
    }
    return columns;
  }

  releaseBelow(offset: number): void {
    this.stream.releaseBelow(offset);
  }

  sync(): void {
    this.stream.sync();
  }

  close(): void {
    this.stream.close();
  }
}
