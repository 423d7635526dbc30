/**
 * Reading committed messages back out of the log for queue-offset pulls: the payload cache
 * every delivery path shares, and the batch read of one queue that PullMessage serves.
 *
 * A log entry holds a batch of up to `batchMessagesMax` messages, spread over the topic's
 * queues, so consecutive offsets of one queue usually point into the same entry and the
 * queues of a topic read the same entries. The cache keeps each entry's payload once (a
 * committed entry never changes) with the index of its records (entry-records.ts), loads each
 * entry at most once however many readers miss it at the same time, and evicts the least
 * recently used entries beyond its byte budget.
 *
 * A batch read walks the queue's records and decodes and filters the messages synchronously
 * while their entries are cached; at an entry that is not, it starts loading the next few the
 * batch needs as well and waits once: no await per message, about one per window of entries
 * read from the log.
 */
import { assert } from '../util/assert.js';
import type { StoredMessage } from './core/entry-codec.js';
import { filterMatches } from './core/filter.js';
import { sqlMatches, type SubscriptionFilter } from './core/subscription-filter.js';
import type { PulledMessage } from './broker-service.js';
import { EntryRecords } from './entry-records.js';

/** Bytes of entry payloads the cache keeps (beyond it the least recently used go). */
export const payloadCacheBytesMax = 64 * 1024 * 1024;
/** Entries a batch read loads at once when it reaches one that is not cached. */
export const entryLoadsPerWindowMax = 16;

/** Committed entries' payloads, by log index, within a byte budget. */
export class PayloadCache {
  /** In order of last use, oldest first (a Map iterates in insertion order; a use re-inserts). */
  private readonly payloads = new Map<number, EntryRecords>();
  private readonly loading = new Map<number, Promise<EntryRecords>>();
  private bytes = 0;

  constructor(
    private readonly load: (logIndex: number) => Promise<Uint8Array>,
    readonly bytesMax: number = payloadCacheBytesMax,
  ) {
    assert(bytesMax >= 0, `payload cache of ${bytesMax} bytes`);
  }

  get cachedBytes(): number {
    return this.bytes;
  }

  get cachedEntries(): number {
    return this.payloads.size;
  }

  /** Whether the payload is cached (not a use). */
  has(logIndex: number): boolean {
    return this.payloads.has(logIndex);
  }

  /** The entry when it is cached (counts as a use), without waiting. */
  peek(logIndex: number): EntryRecords | undefined {
    const payload = this.payloads.get(logIndex);
    if (payload !== undefined) {
      this.payloads.delete(logIndex);
      this.payloads.set(logIndex, payload);
    }
    return payload;
  }

  /** The entry, loaded from the log at most once for any number of concurrent callers. */
  get(logIndex: number): Promise<EntryRecords> {
    const cached = this.peek(logIndex);
    if (cached !== undefined) return Promise.resolve(cached);
    let pending = this.loading.get(logIndex);
    if (pending === undefined) {
      pending = this.load(logIndex).then(
        (payload) => {
          this.loading.delete(logIndex);
          const entry = new EntryRecords(payload);
          this.insert(logIndex, entry);
          return entry;
        },
        (error: unknown) => {
          this.loading.delete(logIndex);
          throw error;
        },
      );
      this.loading.set(logIndex, pending);
    }
    return pending;
  }

  async messageAt(logIndex: number, position: number): Promise<StoredMessage> {
    return (this.peek(logIndex) ?? await this.get(logIndex)).messageAt(position);
  }

  private insert(logIndex: number, payload: EntryRecords): void {
    // Only a load inserts, and a load runs only for an index that is neither cached nor loading.
    assert(!this.payloads.has(logIndex), `payload of entry ${logIndex} cached twice`);
    this.payloads.set(logIndex, payload);
    this.bytes += payload.byteLength;
    for (const [index, cached] of this.payloads) {
      if (this.bytes <= this.bytesMax) break;
      this.payloads.delete(index);
      this.bytes -= cached.byteLength;
    }
    assert(this.bytes >= 0, `payload cache holds ${this.bytes} bytes`);
  }
}

/** What a batch read needs of one consume queue (ConsumeQueue). */
export interface QueueRecordsView {
  readonly minOffset: number;
  readonly maxOffset: number;
  logIndexAt(offset: number): number;
  positionAt(offset: number): number;
  isDelayedAt(offset: number): boolean;
  tagIdAt(offset: number): number;
  storeTimeAt(offset: number): number;
}

export interface QueueBatchRequest {
  readonly topic: string;
  readonly queueId: number;
  /** Already clamped to the queue's `[minOffset, maxOffset]`. */
  readonly fromOffset: number;
  /** Messages at most. */
  readonly batch: number;
  readonly filter: SubscriptionFilter;
}

export interface QueueBatchContext {
  /** Entries below this were released by retention (BrokerState.retainedFrom). */
  readonly retainedFrom: number;
  tagName(tagId: number): string;
  /** A committed transactional message's id ('' for others). */
  transactionIdOf(message: StoredMessage, logIndex: number, position: number): string;
}

/**
 * Up to `batch` messages of the queue from `fromOffset`, in offset order, that the filter
 * selects, and the offset after the last record examined. Records skipped (released by
 * retention, or not selected) advance the offset too, so a filter that selects nothing still
 * moves the reader to the end of the queue.
 */
export async function readQueueBatch(
  queue: QueueRecordsView, request: QueueBatchRequest, context: QueueBatchContext, cache: PayloadCache,
): Promise<{ messages: PulledMessage[]; nextOffset: number }> {
  assert(request.batch >= 1, `batch of ${request.batch}`);
  assert(request.fromOffset >= queue.minOffset && request.fromOffset <= queue.maxOffset, `offset ${request.fromOffset} outside [${queue.minOffset}, ${queue.maxOffset}]`);
  const messages: PulledMessage[] = [];
  let offset = request.fromOffset;
  for (; offset < queue.maxOffset && messages.length < request.batch; offset++) {
    if (!selectedByRecord(queue, offset, context, request.filter)) continue;
    const logIndex = queue.logIndexAt(offset);
    let entry = cache.peek(logIndex);
    if (entry === undefined) {
      prefetch(queue, offset + 1, Math.min(queue.maxOffset, offset + request.batch - messages.length), logIndex, context, request.filter, cache);
      entry = await cache.get(logIndex);
      // Retention may have released records while we waited: the next read starts at what the queue holds.
      if (offset < queue.minOffset) break;
    }
    const position = queue.positionAt(offset);
    const message = entry.messageAt(position);
    if (!sqlMatches(request.filter, message)) continue;
    messages.push({
      message, transactionId: context.transactionIdOf(message, logIndex, position),
      topic: request.topic, queueId: request.queueId, offset, storeTimeMs: queue.storeTimeAt(offset),
    });
  }
  return { messages, nextOffset: offset };
}

/**
 * Starts loading the entries that the selected records of `[from, to)` need, besides
 * `missing` (which the caller is about to wait for), up to `entryLoadsPerWindowMax` entries
 * in all: a batch that spans entries not cached waits about once, not once per entry. Only
 * the cache keeps what they load; a failed load is the caller's to see when it gets there.
 */
function prefetch(queue: QueueRecordsView, from: number, to: number, missing: number, context: QueueBatchContext, filter: SubscriptionFilter, cache: PayloadCache): void {
  const started = new Set<number>([missing]);
  for (let at = from; at < to && started.size < entryLoadsPerWindowMax; at++) {
    if (!selectedByRecord(queue, at, context, filter)) continue;
    const logIndex = queue.logIndexAt(at);
    if (started.has(logIndex)) continue;
    started.add(logIndex);
    if (!cache.has(logIndex)) cache.get(logIndex).catch(() => undefined);
  }
}

/** What the record alone decides: not released by retention, and the tag filter takes its tag. */
function selectedByRecord(queue: QueueRecordsView, offset: number, context: QueueBatchContext, filter: SubscriptionFilter): boolean {
  // A DLQ's reference to a message retention released (DLQs are not in log order); a
  // delivered delayed message's body is kept while its queue holds it.
  const released = queue.logIndexAt(offset) < context.retainedFrom && !queue.isDelayedAt(offset);
  return !released && filterMatches(filter.tags, context.tagName(queue.tagIdAt(offset)));
}
