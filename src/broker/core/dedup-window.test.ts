import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvariantViolation } from '../../util/assert.js';
import { DedupWindow, type DedupWindowLimits } from './dedup-window.js';
import { SnapshotReader, SnapshotWriter } from './state-snapshot.js';

const roomy: DedupWindowLimits = { dedupWindowMs: 1e12, dedupEntriesMax: 1e9 };

function encode(window: DedupWindow): Uint8Array {
  const writer = new SnapshotWriter();
  window.encodeInto(writer);
  return writer.finish();
}

function decode(bytes: Uint8Array, limits: DedupWindowLimits): DedupWindow {
  return DedupWindow.decode(new SnapshotReader(bytes), limits);
}

/** What a window holds, as BrokerState's Map held it (minus the keys, which the window does not keep). */
const recordsOf = (window: DedupWindow) => [...window.entries()].map(({ queueId, offset, timeMs }) => ({ queueId, offset, timeMs }));

/** The Map this replaces, verbatim from BrokerState (applyMessages, expireDedup). */
class MapModel {
  readonly records = new Map<string, { queueId: number; offset: number; timeMs: number }>();
  constructor(private readonly limits: DedupWindowLimits) {}
  find(topic: string, messageId: string) {
    const record = this.records.get(`${topic}\u0000${messageId}`);
    return record === undefined ? undefined : { queueId: record.queueId, offset: record.offset };
  }
  add(topic: string, messageId: string, queueId: number, offset: number, timeMs: number): void {
    this.records.set(`${topic}\u0000${messageId}`, { queueId, offset, timeMs });
  }
  expire(timeMs: number): void {
    for (const [k, record] of this.records) {
      if (this.records.size <= this.limits.dedupEntriesMax && record.timeMs >= timeMs - this.limits.dedupWindowMs) break;
      this.records.delete(k);
    }
  }
}

// ---- MurmurHash3_x86_128 over bytes, transcribed from SMHasher's MurmurHash3.cpp ----------

function murmur3x86x128(data: Uint8Array, seed: number): [number, number, number, number] {
  const rotl = (x: number, r: number) => (x << r) | (x >>> (32 - r));
  const fmix = (h: number) => {
    h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b); h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35); return h ^ (h >>> 16);
  };
  const c1 = 0x239b961b, c2 = 0xab0e9789, c3 = 0x38b34ae5, c4 = 0xa1e38b93;
  const byte = (i: number) => data[i] as number;
  const word = (i: number) => byte(i) | (byte(i + 1) << 8) | (byte(i + 2) << 16) | (byte(i + 3) << 24);
  let h1 = seed, h2 = seed, h3 = seed, h4 = seed;
  const blocks = data.length >>> 4;
  for (let b = 0; b < blocks; b++) {
    let k1 = word(16 * b), k2 = word(16 * b + 4), k3 = word(16 * b + 8), k4 = word(16 * b + 12);
    k1 = Math.imul(rotl(Math.imul(k1, c1), 15), c2); h1 ^= k1;
    h1 = rotl(h1, 19); h1 = (h1 + h2) | 0; h1 = (Math.imul(h1, 5) + 0x561ccd1b) | 0;
    k2 = Math.imul(rotl(Math.imul(k2, c2), 16), c3); h2 ^= k2;
    h2 = rotl(h2, 17); h2 = (h2 + h3) | 0; h2 = (Math.imul(h2, 5) + 0x0bcaa747) | 0;
    k3 = Math.imul(rotl(Math.imul(k3, c3), 17), c4); h3 ^= k3;
    h3 = rotl(h3, 15); h3 = (h3 + h4) | 0; h3 = (Math.imul(h3, 5) + 0x96cd1c35) | 0;
    k4 = Math.imul(rotl(Math.imul(k4, c4), 18), c1); h4 ^= k4;
    h4 = rotl(h4, 13); h4 = (h4 + h1) | 0; h4 = (Math.imul(h4, 5) + 0x32ac3b17) | 0;
  }
  // The C switch falls through from `len & 15` down; each lane's word takes the tail bytes it covers.
  const tail = blocks * 16;
  const rest = data.length & 15;
  const tailWord = (from: number) => {
    let k = 0;
    for (let i = Math.min(rest, from + 4) - 1; i >= from; i--) k ^= byte(tail + i) << (8 * (i - from));
    return k;
  };
  if (rest > 12) h4 ^= Math.imul(rotl(Math.imul(tailWord(12), c4), 18), c1);
  if (rest > 8) h3 ^= Math.imul(rotl(Math.imul(tailWord(8), c3), 17), c4);
  if (rest > 4) h2 ^= Math.imul(rotl(Math.imul(tailWord(4), c2), 16), c3);
  if (rest > 0) h1 ^= Math.imul(rotl(Math.imul(tailWord(0), c1), 15), c2);
  h1 ^= data.length; h2 ^= data.length; h3 ^= data.length; h4 ^= data.length;
  h1 = (h1 + h2 + h3 + h4) | 0; h2 = (h2 + h1) | 0; h3 = (h3 + h1) | 0; h4 = (h4 + h1) | 0;
  h1 = fmix(h1); h2 = fmix(h2); h3 = fmix(h3); h4 = fmix(h4);
  h1 = (h1 + h2 + h3 + h4) | 0; h2 = (h2 + h1) | 0; h3 = (h3 + h1) | 0; h4 = (h4 + h1) | 0;
  return [h1 >>> 0, h2 >>> 0, h3 >>> 0, h4 >>> 0];
}

/** The bytes the window hashes: u32 LE lengths, then the UTF-16LE code units of both strings. */
function keyBytes(topic: string, messageId: string): Uint8Array {
  const view = new DataView(new ArrayBuffer(8 + 2 * (topic.length + messageId.length)));
  view.setUint32(0, topic.length, true);
  view.setUint32(4, messageId.length, true);
  const units = topic + messageId;
  for (let i = 0; i < units.length; i++) view.setUint16(8 + 2 * i, units.charCodeAt(i), true);
  return new Uint8Array(view.buffer);
}

const hex = (words: readonly number[]) => words.map((w) => w.toString(16).padStart(8, '0')).join('');

describe('the key hash', () => {
  it('the byte-level reference passes SMHasher\'s verification value for MurmurHash3_x86_128', () => {
    // SMHasher VerificationTest: hash {}, {0}, {0,1}, … {0..254} with seed 256 - length, then hash the 256 results with seed 0.
    const key = new Uint8Array(256);
    const results = new DataView(new ArrayBuffer(16 * 256));
    for (let i = 0; i < 256; i++) {
      key[i] = i;
      murmur3x86x128(key.subarray(0, i), 256 - i).forEach((word, w) => results.setUint32(16 * i + 4 * w, word, true));
    }
    expect(murmur3x86x128(new Uint8Array(results.buffer), 0)[0]).toBe(0xb3ece62a);
  });

  it('is MurmurHash3_x86_128 (seed "RMQD") of the length-prefixed UTF-16LE key', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 40 }), (topic, messageId) => {
      const window = new DedupWindow(roomy);
      window.add(topic, messageId, 0, 0, 0);
      expect([...window.entries()][0]?.hash).toBe(hex(murmur3x86x128(keyBytes(topic, messageId), 0x524d5144)));
    }), { seed: 20_240_601, numRuns: 300 });
    // Lone surrogates hash as themselves (no UTF-8 replacement character).
    const window = new DedupWindow(roomy);
    window.add('t', '\ud800', 0, 0, 0);
    expect(window.find('t', '\udc00')).toBeUndefined();
    expect(window.find('t', '\ufffd')).toBeUndefined();
  });
});

describe('DedupWindow', () => {
  it('finds what was added, per topic', () => {
    const window = new DedupWindow(roomy);
    expect(window.find('t', 'm1')).toBeUndefined();
    window.add('t', 'm1', 2, 40, 1_000);
    expect(window.find('t', 'm1')).toEqual({ queueId: 2, offset: 40 });
    expect(window.find('u', 'm1')).toBeUndefined();
    window.add('u', 'm1', 0, 7, 1_001);
    expect(window.find('u', 'm1')).toEqual({ queueId: 0, offset: 7 });
    expect(window.find('t', 'm1')).toEqual({ queueId: 2, offset: 40 });
    expect(window.size).toBe(2);
    // No separator to confuse: the lengths are hashed too.
    window.add('ab', 'c', 1, 1, 1_002);
    expect(window.find('a', 'bc')).toBeUndefined();
    expect(window.find('ab\u0000', 'c')).toBeUndefined();
  });

  it('asserts on a key it already holds and on bad numbers', () => {
    const window = new DedupWindow(roomy);
    window.add('t', 'm', 0, 0, 0);
    expect(() => window.add('t', 'm', 1, 1, 1)).toThrow(InvariantViolation);
    expect(() => window.add('t', 'n', -1, 0, 0)).toThrow(InvariantViolation);
    expect(() => window.add('t', 'n', 1.5, 0, 0)).toThrow(InvariantViolation);
    expect(() => window.add('t', 'n', 0, 2 ** 53, 0)).toThrow(InvariantViolation);
    expect(() => window.add('t', 'n', 0, 0, Number.NaN)).toThrow(InvariantViolation);
    expect(() => window.expire(Number.POSITIVE_INFINITY)).toThrow(InvariantViolation);
    expect(window.size).toBe(1);
  });

  it('expires by count and by age from the oldest, stopping at the first record that is neither', () => {
    const window = new DedupWindow({ dedupWindowMs: 100, dedupEntriesMax: 3 });
    for (let i = 0; i < 5; i++) window.add('t', `m${i}`, 0, i, 1_000 + i);
    window.expire(1_004);
    expect(recordsOf(window).map((r) => r.offset)).toEqual([2, 3, 4]);
    window.expire(1_102); // cutoff 1002: m2 is not older than it
    expect(window.size).toBe(3);
    window.expire(1_103);
    expect(recordsOf(window).map((r) => r.offset)).toEqual([3, 4]);
    // Times are not asserted monotone: a young record in front shields an older one behind it.
    window.add('t', 'old', 0, 5, 900);
    window.expire(1_104);
    expect(recordsOf(window).map((r) => r.offset)).toEqual([4, 5]);
    window.expire(1_105);
    expect(window.size).toBe(0);
    expect(window.find('t', 'old')).toBeUndefined();
  });

  it('behaves as the Map it replaces under random adds, finds, expiries and snapshot round trips', () => {
    const topics = ['t', 'u', 'TopicTest'];
    const op = fc.oneof(
      { weight: 6, arbitrary: fc.record({ kind: fc.constant('add' as const), topic: fc.nat(topics.length - 1), id: fc.nat(299), queueId: fc.nat(7), dtMs: fc.integer({ min: -2, max: 5 }) }) },
      { weight: 3, arbitrary: fc.record({ kind: fc.constant('burst' as const), topic: fc.nat(topics.length - 1), from: fc.nat(299), count: fc.integer({ min: 1, max: 120 }) }) },
      { weight: 3, arbitrary: fc.record({ kind: fc.constant('expire' as const), dtMs: fc.integer({ min: 0, max: 60 }) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('roundTrip' as const) }) },
    );
    const limits = fc.record({ dedupWindowMs: fc.integer({ min: 0, max: 200 }), dedupEntriesMax: fc.integer({ min: 0, max: 300 }) });
    fc.assert(fc.property(limits, fc.array(op, { maxLength: 80 }), (limits, ops) => {
      let window = new DedupWindow(limits);
      const model = new MapModel(limits);
      let nowMs = 1_000;
      let offset = 0;
      // As applyMessages does: add only what is not found.
      const send = (topic: string, id: string, queueId: number) => {
        const expected = model.find(topic, id);
        expect(window.find(topic, id)).toEqual(expected);
        if (expected !== undefined) return;
        model.add(topic, id, queueId, offset, nowMs);
        window.add(topic, id, queueId, offset, nowMs);
        offset++;
      };
      for (const step of ops) {
        switch (step.kind) {
          case 'add':
            nowMs += step.dtMs;
            send(topics[step.topic] as string, `m${step.id}`, step.queueId);
            break;
          case 'burst':
            for (let i = 0; i < step.count; i++) send(topics[step.topic] as string, `m${(step.from + i) % 300}`, i % 4);
            break;
          case 'expire':
            nowMs += step.dtMs;
            model.expire(nowMs);
            window.expire(nowMs);
            break;
          case 'roundTrip': {
            const bytes = encode(window);
            window = decode(bytes, limits);
            expect(encode(window)).toEqual(bytes);
            break;
          }
        }
        expect(window.size).toBe(model.records.size);
        expect(recordsOf(window)).toEqual([...model.records.values()]);
      }
      for (const topic of topics) for (let id = 0; id < 300; id++) expect(window.find(topic, `m${id}`)).toEqual(model.find(topic, `m${id}`));
    }), { seed: 424_242, numRuns: 150 });
  });
});

describe('DedupWindow snapshots', () => {
  const limits: DedupWindowLimits = { dedupWindowMs: 1_000, dedupEntriesMax: 10_000 };

  /** Decodes, checks finds over `keys` and the re-encoded bytes against the original. */
  function expectRoundTrip(window: DedupWindow, keys: readonly string[]): DedupWindow {
    const bytes = encode(window);
    const copy = decode(bytes, limits);
    expect(copy.size).toBe(window.size);
    expect([...copy.entries()]).toEqual([...window.entries()]);
    for (const id of keys) expect(copy.find('t', id)).toEqual(window.find('t', id));
    expect(encode(copy)).toEqual(bytes);
    return copy;
  }

  it('an empty window is its count alone', () => {
    expect(encode(new DedupWindow(limits))).toEqual(new Uint8Array(4));
    expect(decode(new Uint8Array(4), limits).size).toBe(0);
  });

  it('round-trips after the ring wraps and after it shrinks', () => {
    const window = new DedupWindow({ dedupWindowMs: 1_000, dedupEntriesMax: 40 });
    const keys = Array.from({ length: 3_000 }, (_, i) => `m${i}`);
    // 64 slots: 50 in, trim to 40 (the head moves to slot 10), 20 more wrap past the end.
    for (let i = 0; i < 50; i++) window.add('t', keys[i] as string, i % 3, i, i);
    window.expire(50);
    for (let i = 50; i < 70; i++) window.add('t', keys[i] as string, i % 3, i, i);
    expect(window.heapBytes).toBe(new DedupWindow(limits).heapBytes);
    expectRoundTrip(window, keys.slice(0, 80));
    // Grow well past the initial capacity, then shrink by expiring most of it.
    for (let i = 70; i < 3_000; i++) window.add('t', keys[i] as string, i % 3, i, i);
    const grownBytes = window.heapBytes;
    window.expire(3_000);
    expect(window.size).toBe(40);
    expect(window.heapBytes).toBeLessThan(grownBytes / 8);
    const copy = expectRoundTrip(window, keys);
    // A window with the same live records encodes to the same bytes whatever its history.
    const fresh = new DedupWindow(limits);
    for (const record of copy.entries()) fresh.add('t', `m${record.offset}`, record.queueId, record.offset, record.timeMs);
    expect(encode(fresh)).toEqual(encode(window));
  });

  it('rejects truncated bytes, counts the bytes cannot hold, bad numbers and repeated hashes', () => {
    const window = new DedupWindow(limits);
    for (let i = 0; i < 5; i++) window.add('t', `m${i}`, i, 10 + i, 100 + i);
    const bytes = encode(window);
    expect(bytes.length).toBe(4 + 5 * 36);
    for (let cut = 0; cut < bytes.length; cut++) expect(() => decode(bytes.subarray(0, cut), limits)).toThrow(/truncated/);

    const records = [...window.entries()];
    const hashWords = (hash: string) => Array.from({ length: 4 }, (_, w) => Number.parseInt(hash.slice(8 * w, 8 * w + 8), 16));
    const craft = (count: number, rows: { hash: string; queueId: number; offset: number; timeMs: number }[]) => {
      const writer = new SnapshotWriter();
      writer.u32(count);
      writer.column(new Uint32Array(rows.flatMap((r) => hashWords(r.hash))), rows.length * 4);
      writer.column(new Int32Array(rows.map((r) => r.queueId)), rows.length);
      writer.column(new Float64Array(rows.map((r) => r.offset)), rows.length);
      writer.column(new Float64Array(rows.map((r) => r.timeMs)), rows.length);
      return writer.finish();
    };
    expect(craft(5, records)).toEqual(bytes);
    expect(() => decode(craft(6, records), limits)).toThrow(/truncated/);
    expect(() => decode(craft(0xffff_ffff, records), limits)).toThrow(/truncated/);
    const first = records[0] as (typeof records)[number];
    expect(() => decode(craft(1, [{ ...first, timeMs: Number.NaN }]), limits)).toThrow(/time/);
    expect(() => decode(craft(1, [{ ...first, timeMs: Number.POSITIVE_INFINITY }]), limits)).toThrow(/time/);
    expect(() => decode(craft(1, [{ ...first, offset: 1.5 }]), limits)).toThrow(/offset/);
    expect(() => decode(craft(1, [{ ...first, offset: -1 }]), limits)).toThrow(/offset/);
    expect(() => decode(craft(1, [{ ...first, queueId: -1 }]), limits)).toThrow(/queue id/);
    expect(() => decode(craft(3, [first, records[1] as typeof first, { ...first, offset: 99 }]), limits)).toThrow(/twice/);
  });
});

describe('DedupWindow memory', () => {
  it('grows to 200k and shrinks back when they all expire', () => {
    const window = new DedupWindow({ dedupWindowMs: 1_000, dedupEntriesMax: 1_000_000 });
    const empty = window.heapBytes;
    for (let i = 0; i < 200_000; i++) window.add('TopicTest', `id-${i}`, i & 3, i, 0);
    expect(window.size).toBe(200_000);
    // 2^18 ring slots of 36 bytes and 2^19 table cells of 4.
    expect(window.heapBytes).toBe(2 ** 18 * 36 + 2 ** 19 * 4);
    expect(window.find('TopicTest', 'id-123456')).toEqual({ queueId: 0, offset: 123_456 });
    window.expire(1_000);
    expect(window.size).toBe(200_000);
    window.expire(1_001);
    expect(window.size).toBe(0);
    expect(window.heapBytes).toBe(empty);
    expect(window.find('TopicTest', 'id-123456')).toBeUndefined();
  });

  it('holds a million ids in about 46 bytes each, and restores them from a snapshot', () => {
    const limits = { dedupWindowMs: 600_000, dedupEntriesMax: 1_000_000 };
    const window = new DedupWindow(limits);
    const n = 1_000_000;
    for (let i = 0; i < n; i++) window.add('TopicTest', `C0A8000100002A9F0000${i.toString(16).padStart(12, '0')}`, i & 7, i, i);
    const bytes = encode(window);
    expect(bytes.length).toBe(4 + n * 36);
    const copy = decode(bytes, limits);
    // Decoded at 1M: 2^20 ring slots × 36 bytes + 2^21 table cells × 4, ≈ 46.1 bytes per id.
    expect(copy.heapBytes / copy.size).toBeLessThan(47);
    for (let i = 0; i < n; i += 997) {
      expect(copy.find('TopicTest', `C0A8000100002A9F0000${i.toString(16).padStart(12, '0')}`)).toEqual({ queueId: i & 7, offset: i });
    }
    expect(copy.find('TopicTest', 'C0A8000100002A9F0000ffffffffffff')).toBeUndefined();
  });
});
