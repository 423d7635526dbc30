/**
 * The pull path's reads: the payload cache (one load per entry however many readers miss it,
 * byte accounting that stays exact, least recently used out first) and the batch read of a
 * queue, checked against a deliberately plain reference (the per-message loop pull used to
 * run) over random queues whose batches span entries, with tag and SQL filters, released
 * records, delivered delayed messages, half messages and caches too small to hold a batch.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ConsumeQueue, memoryQueueRecordStore } from './core/consume-queue.js';
import { encodeMessages, readMessageAt, type MessageInput, type StoredMessage } from './core/entry-codec.js';
import { filterMatches } from './core/filter.js';
import { matchEverything, parseSubscriptionFilter, sqlMatches, type SubscriptionFilter } from './core/subscription-filter.js';
import { entryLoadsPerWindowMax, PayloadCache, readQueueBatch, type QueueBatchContext } from './queue-reader.js';

const tags = ['', 'a', 'b'] as const;

const input = (id: string, tag: string, region: string, deliveryTimeMs = 0): MessageInput => ({
  topic: 't', messageId: id, tag, keys: [`k-${id}`], messageGroup: '', queueId: 0, bornTimestamp: 1_000, bornHost: 'h',
  properties: { region }, body: Buffer.from(`body of ${id}`), ...(deliveryTimeMs === 0 ? {} : { deliveryTimeMs }),
});

interface Fixture {
  readonly payloads: Map<number, Uint8Array>;
  readonly queue: ConsumeQueue;
  readonly context: QueueBatchContext;
}

/** One spec per entry: how many of its messages go to our queue, and of what kind the entry is. */
interface EntrySpec {
  readonly messages: readonly { readonly tag: number; readonly region: string; readonly ours: boolean; readonly delayed: boolean }[];
  readonly kind: 'plain' | 'timed' | 'half';
}

function fixture(entries: readonly EntrySpec[], retainedFrom: number): Fixture {
  const payloads = new Map<number, Uint8Array>();
  const queue = ConsumeQueue.create(memoryQueueRecordStore, { topic: 't', topicCreatedAt: 1, queueId: 0 });
  entries.forEach((entry, e) => {
    const logIndex = 10 + e;
    const inputs = entry.messages.map((m, i) => input(`m${logIndex}-${i}`, tags[m.tag] as string, m.region, entry.kind === 'timed' ? 5_000 : 0));
    payloads.set(logIndex, encodeMessages({ timeMs: 2_000 }, inputs, entry.kind === 'half'));
    entry.messages.forEach((m, position) => {
      if (m.ours) queue.append(logIndex, position, m.tag, 2_000 + logIndex, m.delayed);
    });
  });
  const context: QueueBatchContext = {
    retainedFrom,
    tagName: (tagId) => tags[tagId] ?? '',
    transactionIdOf: (message, logIndex, position) => (message.transactional === true ? `txn-${logIndex}-${position}` : ''),
  };
  return { payloads, queue, context };
}

/** The plain loop pull ran before batch reads: one message read at a time. */
function reference(f: Fixture, from: number, batch: number, filter: SubscriptionFilter): { ids: string[]; nextOffset: number } {
  const ids: string[] = [];
  let offset = from;
  while (offset < f.queue.maxOffset && ids.length < batch) {
    const released = f.queue.logIndexAt(offset) < f.context.retainedFrom && !f.queue.isDelayedAt(offset);
    if (!released && filterMatches(filter.tags, f.context.tagName(f.queue.tagIdAt(offset)))) {
      const logIndex = f.queue.logIndexAt(offset);
      const message = readMessageAt(f.payloads.get(logIndex) as Uint8Array, f.queue.positionAt(offset));
      if (sqlMatches(filter, message)) ids.push(`${offset}:${message.messageId}:${f.context.transactionIdOf(message, logIndex, f.queue.positionAt(offset))}`);
    }
    offset++;
  }
  return { ids, nextOffset: offset };
}

function countingLoader(payloads: Map<number, Uint8Array>): { load: (logIndex: number) => Promise<Uint8Array>; loads: number[]; inFlightMax: () => number } {
  const loads: number[] = [];
  let inFlight = 0;
  let inFlightMax = 0;
  return {
    loads,
    inFlightMax: () => inFlightMax,
    load: async (logIndex) => {
      loads.push(logIndex);
      inFlight++;
      inFlightMax = Math.max(inFlightMax, inFlight);
      await new Promise((resolve) => setImmediate(resolve));
      inFlight--;
      const payload = payloads.get(logIndex);
      if (payload === undefined) throw new Error(`no entry ${logIndex}`);
      return payload;
    },
  };
}

describe('PayloadCache', () => {
  const payloads = new Map([1, 2, 3, 4].map((i) => [i, new Uint8Array(100 * i)]));

  it('loads an entry once for any number of readers that miss it at the same time, and counts its bytes once', async () => {
    const loader = countingLoader(payloads);
    const cache = new PayloadCache(loader.load, 10_000);
    const all = await Promise.all([cache.get(2), cache.get(2), cache.get(3), cache.get(2), cache.messageAt(3, 0).catch(() => undefined)]);
    expect(all[0]?.byteLength).toBe(200);
    expect(all[1]).toBe(all[0]);
    expect(loader.loads).toEqual([2, 3]);
    expect(cache.cachedBytes).toBe(500);
    expect(cache.cachedEntries).toBe(2);
    expect(cache.peek(2)).toBe(all[0]);
  });

  it('keeps its byte count exact through concurrent misses and evictions (a count that drifts up would evict every entry as it arrives)', async () => {
    const loader = countingLoader(payloads);
    const cache = new PayloadCache(loader.load, 700);
    for (let round = 0; round < 20; round++) await Promise.all([1, 2, 3, 4, 2, 1].map((i) => cache.get(i)));
    const held = [1, 2, 3, 4].filter((i) => cache.has(i));
    expect(cache.cachedBytes).toBe(held.reduce((sum, i) => sum + 100 * i, 0));
    expect(cache.cachedBytes).toBeLessThanOrEqual(700);
    expect(held.length).toBeGreaterThan(0);
  });

  it('evicts the least recently used entries first', async () => {
    const cache = new PayloadCache(countingLoader(payloads).load, 800);
    await cache.get(1);
    await cache.get(2);
    await cache.get(3);
    cache.peek(1); // 1 is now the most recently used: 2 goes first
    await cache.get(4); // 1,000 bytes: evicting 2 is enough
    expect([1, 2, 3, 4].filter((i) => cache.has(i))).toEqual([1, 3, 4]);
    expect(cache.cachedBytes).toBe(800);
  });

  it('does not cache a failed load: every waiter sees the error and the next read tries again', async () => {
    let fail = true;
    const cache = new PayloadCache(async (i) => {
      await new Promise((resolve) => setImmediate(resolve));
      if (fail) throw new Error('disk');
      return payloads.get(i) as Uint8Array;
    });
    const results = await Promise.allSettled([cache.get(1), cache.get(1)]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(cache.cachedEntries).toBe(0);
    fail = false;
    expect((await cache.get(1)).byteLength).toBe(100);
  });
});

describe('readQueueBatch', () => {
  it('serves a batch that spans entries, with the filter applied, the half message\'s transaction id and the next offset', async () => {
    const m = (tag: number, region: string, ours = true) => ({ tag, region, ours, delayed: false });
    const f = fixture([
      { kind: 'plain', messages: [m(1, 'eu'), m(2, 'us', false), m(1, 'us'), m(2, 'eu')] },
      { kind: 'half', messages: [m(1, 'eu'), m(0, 'eu', false)] },
      { kind: 'timed', messages: [m(2, 'eu'), m(1, 'eu')] },
    ], 0);
    const loader = countingLoader(f.payloads);
    const cache = new PayloadCache(loader.load);
    const sql = parseSubscriptionFilter('SQL', "region = 'eu'");
    const read = await readQueueBatch(f.queue, { topic: 't', queueId: 0, fromOffset: 0, batch: 3, filter: sql }, f.context, cache);
    expect(read.messages.map((p) => [p.offset, p.message.messageId, p.transactionId])).toEqual([[0, 'm10-0', ''], [2, 'm10-3', ''], [3, 'm11-0', 'txn-11-0']]);
    expect(read.nextOffset).toBe(4);
    expect(read.messages[2]?.message.transactional).toBe(true);
    const tagB = parseSubscriptionFilter('TAG', 'b');
    const rest = await readQueueBatch(f.queue, { topic: 't', queueId: 0, fromOffset: read.nextOffset, batch: 10, filter: tagB }, f.context, cache);
    expect(rest.messages.map((p) => [p.offset, p.message.messageId, p.message.deliveryTimeMs, p.storeTimeMs])).toEqual([[4, 'm12-0', 5_000, 2_012]]);
    expect(rest.nextOffset).toBe(6);
    expect(loader.loads).toEqual([10, 11, 12]); // each entry once, across both reads
  });

  it('waits about once for a batch whose entries are not cached: it loads the next ones in parallel, a bounded number at a time', async () => {
    const entries: EntrySpec[] = Array.from({ length: 40 }, () => ({ kind: 'plain', messages: [{ tag: 0, region: 'eu', ours: true, delayed: false }] }));
    const f = fixture(entries, 0);
    const loader = countingLoader(f.payloads);
    const read = await readQueueBatch(f.queue, { topic: 't', queueId: 0, fromOffset: 0, batch: 40, filter: matchEverything }, f.context, new PayloadCache(loader.load));
    expect(read.messages).toHaveLength(40);
    expect(new Set(loader.loads).size).toBe(40);
    expect(loader.loads).toHaveLength(40);
    expect(loader.inFlightMax()).toBe(entryLoadsPerWindowMax);
  });

  it('agrees with reading one message at a time, for any queue, start, batch, filter and cache size', async () => {
    const message = fc.record({ tag: fc.integer({ min: 0, max: 2 }), region: fc.constantFrom('eu', 'us'), ours: fc.boolean(), delayed: fc.boolean() });
    const entry = fc.record({ kind: fc.constantFrom('plain' as const, 'timed' as const, 'half' as const), messages: fc.array(message, { minLength: 1, maxLength: 12 }) });
    const filters = [matchEverything, parseSubscriptionFilter('TAG', 'a'), parseSubscriptionFilter('TAG', 'a || b'), parseSubscriptionFilter('SQL', "region = 'us'"), parseSubscriptionFilter('SQL', "TAGS = 'b' AND region = 'eu'")];
    await fc.assert(fc.asyncProperty(
      fc.array(entry, { minLength: 1, maxLength: 30 }), fc.integer({ min: 0, max: 45 }), fc.nat(200), fc.integer({ min: 1, max: 50 }),
      fc.integer({ min: 0, max: filters.length - 1 }), fc.constantFrom(0, 300, 1_000_000),
      async (entries, retainedFrom, fromSeed, batch, filterIndex, cacheBytes) => {
        const f = fixture(entries, retainedFrom);
        const from = f.queue.maxOffset === 0 ? 0 : fromSeed % (f.queue.maxOffset + 1);
        const filter = filters[filterIndex] as SubscriptionFilter;
        const cache = new PayloadCache(countingLoader(f.payloads).load, cacheBytes);
        const read = await readQueueBatch(f.queue, { topic: 't', queueId: 0, fromOffset: from, batch, filter }, f.context, cache);
        const expected = reference(f, from, batch, filter);
        expect(read.messages.map((p) => `${p.offset}:${p.message.messageId}:${p.transactionId}`)).toEqual(expected.ids);
        expect(read.nextOffset).toBe(expected.nextOffset);
        for (const p of read.messages) expect(p.message).toEqual(readMessageAt(f.payloads.get(f.queue.logIndexAt(p.offset)) as Uint8Array, f.queue.positionAt(p.offset)) as StoredMessage);
      },
    ), { numRuns: 300 });
  });

  it('stops at what retention released while it waited for an entry', async () => {
    const entries: EntrySpec[] = Array.from({ length: 4 }, () => ({ kind: 'plain', messages: [{ tag: 0, region: 'eu', ours: true, delayed: false }] }));
    const f = fixture(entries, 0);
    const cache = new PayloadCache(async (logIndex) => {
      await new Promise((resolve) => setImmediate(resolve));
      if (logIndex === 11) f.queue.releaseThrough(12);
      return f.payloads.get(logIndex) as Uint8Array;
    });
    await cache.get(10); // offset 0 is read at once; offset 1 waits for entry 11
    const read = await readQueueBatch(f.queue, { topic: 't', queueId: 0, fromOffset: 0, batch: 10, filter: matchEverything }, f.context, cache);
    expect(read.messages.map((p) => p.offset)).toEqual([0]);
    expect(read.nextOffset).toBe(1);
    expect(f.queue.minOffset).toBe(3);
  });
});
