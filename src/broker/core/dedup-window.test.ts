/**
 * The dedup window against a plain Map model, with its records in memory and in files
 * (every behaviour test runs against both stores): the key hash is MurmurHash3_x86_128 of a
 * fixed encoding; adds, finds, replaces and expiries answer as the Map BrokerState used to
 * keep; a snapshot restores to a window that answers the same, in both modes (with the records
 * inline, as an InstallSnapshot carries them, and, for files, positions only after a restart);
 * a crash after a snapshot (unsynced records cut back, as a power cut does) followed by replay
 * answers the same; and the window's own memory is at most 12 bytes per live id at a million.
 */
import * as fs from 'node:fs';
import { murmur3Reference } from '../../../test/support/murmur3-reference.js';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InvariantViolation } from '../../util/assert.js';
import { DedupFileStore } from '../../server/dedup-files.js';
import { DedupWindow, MemoryDedupRecords, memoryDedupRecordStore, type DedupRecordStore, type DedupWindowLimits } from './dedup-window.js';
import { SnapshotReader, SnapshotWriter } from './state-snapshot.js';

const roomy: DedupWindowLimits = { dedupWindowMs: 1e12, dedupEntriesMax: 1e9 };

let root: string;
let dirs = 0;
beforeEach(() => { root = fs.mkdtempSync(path.join(os.tmpdir(), 'raftmq-dedup-')); });
afterEach(() => { fs.rmSync(root, { recursive: true, force: true }); });

function encode(window: DedupWindow, withRecords = true): Uint8Array {
  const writer = new SnapshotWriter();
  window.encodeInto(writer, withRecords);
  return writer.finish();
}

function decode(bytes: Uint8Array, limits: DedupWindowLimits, store: DedupRecordStore = memoryDedupRecordStore, withRecords = true): DedupWindow {
  return DedupWindow.decode(new SnapshotReader(bytes), withRecords, store, limits);
}

/** Small files and a small cache, so tests cross files and evict blocks. */
const fileStoreIn = (dir: string, powerLossTestMode = false): DedupFileStore => new DedupFileStore({ dir, recordsPerFile: 1024, cacheBlocks: 2, powerLossTestMode });

/** Where a test's windows keep their records. */
interface RecordsKind {
  readonly name: string;
  /** A store in a new place (a new directory for files), as on another node. */
  fresh(): DedupRecordStore;
  /**
   * A node's restart from its own snapshot taken now: memory carries the records in the
   * snapshot; files are synced first, the snapshot holds the range only, and the directory is
   * opened again by a new store (the old one closed, as by a crash right after the snapshot).
   */
  restart(window: DedupWindow, store: DedupRecordStore, limits: DedupWindowLimits): { window: DedupWindow; store: DedupRecordStore };
}

const memoryKind: RecordsKind = {
  name: 'memory',
  fresh: () => memoryDedupRecordStore,
  restart: (window, store, limits) => ({ window: decode(encode(window), limits), store }),
};

const fileKind: RecordsKind = {
  name: 'files',
  fresh: () => fileStoreIn(path.join(root, `d${dirs++}`), true),
  restart: (window, store, limits) => {
    const files = store as DedupFileStore;
    files.sync();
    const bytes = encode(window, false);
    files.close();
    const reopened = fileStoreIn(files.dir, true);
    return { window: decode(bytes, limits, reopened, false), store: reopened };
  },
};

const kinds: readonly RecordsKind[] = [memoryKind, fileKind];

/** What a window holds, as BrokerState's Map held it (minus the keys, which the window does not keep). */
const recordsOf = (window: DedupWindow) => [...window.entries()].map(({ queueId, offset, timeMs }) => ({ queueId, offset, timeMs }));

/** The Map this replaces, verbatim from BrokerState (applyMessages, expireDedup), with replace as delete + set. */
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
  replace(topic: string, messageId: string, queueId: number, offset: number, timeMs: number): void {
    this.records.delete(`${topic}\u0000${messageId}`);
    this.add(topic, messageId, queueId, offset, timeMs);
  }
  expire(timeMs: number): void {
    for (const [k, record] of this.records) {
      if (this.records.size <= this.limits.dedupEntriesMax && record.timeMs >= timeMs - this.limits.dedupWindowMs) break;
      this.records.delete(k);
    }
  }
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
  it('is MurmurHash3_x86_128 (seed "RMQD") of the length-prefixed UTF-16LE key', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 40 }), (topic, messageId) => {
      const window = DedupWindow.create(roomy);
      window.add(topic, messageId, 0, 0, 0);
      expect([...window.entries()][0]?.hash).toBe(hex(murmur3Reference(keyBytes(topic, messageId), 0x524d5144)));
    }), { seed: 20_240_601, numRuns: 300 });
    // Lone surrogates hash as themselves (no UTF-8 replacement character).
    const window = DedupWindow.create(roomy);
    window.add('t', '\ud800', 0, 0, 0);
    expect(window.find('t', '\udc00')).toBeUndefined();
    expect(window.find('t', '\ufffd')).toBeUndefined();
  });
});

describe.each(kinds)('DedupWindow, records in $name', (kind) => {
  const make = (limits: DedupWindowLimits): DedupWindow => DedupWindow.create(limits, kind.fresh());

  it('finds what was added, per topic', () => {
    const window = make(roomy);
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

  it('asserts on a key it already holds, a replace of one it does not, and on bad numbers', () => {
    const window = make(roomy);
    window.add('t', 'm', 0, 0, 0);
    expect(() => window.add('t', 'm', 1, 1, 1)).toThrow(InvariantViolation);
    expect(() => window.add('t', 'n', -1, 0, 0)).toThrow(InvariantViolation);
    expect(() => window.add('t', 'n', 1.5, 0, 0)).toThrow(InvariantViolation);
    expect(() => window.add('t', 'n', 0, 2 ** 53, 0)).toThrow(InvariantViolation);
    expect(() => window.add('t', 'n', 0, 0, Number.NaN)).toThrow(InvariantViolation);
    expect(() => window.replace('t', 'n', 0, 0, 0)).toThrow(InvariantViolation);
    expect(() => window.replace('t', 'm', 0, -1, 0)).toThrow(InvariantViolation);
    expect(() => window.expire(Number.POSITIVE_INFINITY)).toThrow(InvariantViolation);
    expect(window.size).toBe(1);
  });

  it('expires by count and by age from the oldest, stopping at the first record that is neither', () => {
    const window = make({ dedupWindowMs: 100, dedupEntriesMax: 3 });
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

  it('replace appends a new record with the new time and leaves the old one, dead, until it reaches the front', () => {
    const store = kind.fresh();
    const window = DedupWindow.create({ dedupWindowMs: 100, dedupEntriesMax: 10 }, store);
    for (let i = 0; i < 3; i++) window.add('t', `m${i}`, 1, i, 1_000 + i);
    store.sync();
    const before = encode(window, !store.recordsDurable);
    window.replace('t', 'm0', 0, 50, 1_050);
    expect(window.find('t', 'm0')).toEqual({ queueId: 0, offset: 50 });
    expect(window.size).toBe(3);
    expect(recordsOf(window)).toEqual([{ queueId: 1, offset: 1, timeMs: 1_001 }, { queueId: 1, offset: 2, timeMs: 1_002 }, { queueId: 0, offset: 50, timeMs: 1_050 }]);
    expect(window.range).toEqual({ first: 0, next: 4 });
    // The records an earlier snapshot counted are as it saw them (for files: a positions-only snapshot still reads the old record).
    store.sync();
    expect(decode(before, roomy, store.reader(), !store.recordsDurable).find('t', 'm0')).toEqual({ queueId: 1, offset: 0 });
    const copy = decode(encode(window), roomy);
    expect(copy.find('t', 'm0')).toEqual({ queueId: 0, offset: 50 });
    expect(copy.size).toBe(3);
    // Expiry passes the dead record (m0's first) with m1: m0 lives on by its new time.
    window.expire(1_102);
    expect(window.range).toEqual({ first: 2, next: 4 });
    expect(window.find('t', 'm0')).toEqual({ queueId: 0, offset: 50 });
    expect(window.find('t', 'm1')).toBeUndefined();
    // A dead record at the front goes even when the live ones behind it are young.
    window.replace('t', 'm2', 2, 60, 1_060);
    window.expire(1_103);
    expect(window.range).toEqual({ first: 3, next: 5 });
    expect(recordsOf(window)).toEqual([{ queueId: 0, offset: 50, timeMs: 1_050 }, { queueId: 2, offset: 60, timeMs: 1_060 }]);
  });

  it('behaves as the Map it replaces under random adds, finds, replaces, expiries, snapshots, restarts and crashes', () => {
    const topics = ['t', 'u', 'TopicTest'];
    const op = fc.oneof(
      { weight: 6, arbitrary: fc.record({ kind: fc.constant('add' as const), topic: fc.nat(topics.length - 1), id: fc.nat(299), queueId: fc.nat(7), dtMs: fc.integer({ min: -2, max: 5 }) }) },
      { weight: 3, arbitrary: fc.record({ kind: fc.constant('burst' as const), topic: fc.nat(topics.length - 1), from: fc.nat(299), count: fc.integer({ min: 1, max: 120 }) }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('replace' as const), pick: fc.nat(), queueId: fc.nat(7) }) },
      { weight: 3, arbitrary: fc.record({ kind: fc.constant('expire' as const), dtMs: fc.integer({ min: 0, max: 60 }) }) },
      // A snapshot as a node takes it (files: synced, positions only), continuing on the same window.
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('snapshot' as const) }) },
      // Restart from a snapshot taken now; install one (with the records) on another node.
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('restart' as const) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('install' as const) }) },
      // Crash (files: unsynced writes cut back at random) and restore the last snapshot, then replay what followed it.
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('crash' as const), cut: fc.nat() }) },
    );
    const limits = fc.record({ dedupWindowMs: fc.integer({ min: 0, max: 200 }), dedupEntriesMax: fc.integer({ min: 0, max: 300 }) });
    fc.assert(fc.property(limits, fc.array(op, { maxLength: 80 }), (limits, ops) => {
      let store = kind.fresh();
      let window = DedupWindow.create(limits, store);
      const model = new MapModel(limits);
      let nowMs = 1_000;
      let offset = 0;
      /** The window's calls since the last snapshot, to replay after a crash. */
      let since: ((w: DedupWindow) => void)[] = [];
      const call = (apply: (w: DedupWindow) => void) => {
        apply(window);
        since.push(apply);
      };
      const takeSnapshot = (): Uint8Array => {
        if (kind === memoryKind) return encode(window);
        store.sync();
        return encode(window, false);
      };
      let snapshot = takeSnapshot();
      // As applyMessages does: add only what is not found.
      const send = (topic: string, id: string, queueId: number) => {
        const expected = model.find(topic, id);
        expect(window.find(topic, id)).toEqual(expected);
        if (expected !== undefined) return;
        model.add(topic, id, queueId, offset, nowMs);
        const [o, t] = [offset, nowMs];
        call((w) => w.add(topic, id, queueId, o, t));
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
          case 'replace': {
            const keys = [...model.records.keys()];
            if (keys.length === 0) break;
            const [topic, id] = (keys[step.pick % keys.length] as string).split('\u0000') as [string, string];
            model.replace(topic, id, step.queueId, offset, nowMs);
            const [o, t] = [offset, nowMs];
            call((w) => w.replace(topic, id, step.queueId, o, t));
            offset++;
            break;
          }
          case 'expire': {
            nowMs += step.dtMs;
            model.expire(nowMs);
            const t = nowMs;
            call((w) => w.expire(t));
            break;
          }
          case 'snapshot':
            snapshot = takeSnapshot();
            since = [];
            break;
          case 'restart': {
            const bytes = encode(window);
            ({ window, store } = kind.restart(window, store, limits));
            expect(encode(window)).toEqual(bytes);
            snapshot = takeSnapshot();
            since = [];
            break;
          }
          case 'install': {
            const bytes = encode(window);
            store = kind.fresh();
            window = decode(bytes, limits, store);
            expect(encode(window)).toEqual(bytes);
            snapshot = takeSnapshot();
            since = [];
            break;
          }
          case 'crash': {
            if (kind === fileKind) {
              const files = store as DedupFileStore;
              files.powerFail((max) => step.cut % max);
              files.close();
              store = fileStoreIn(files.dir, true);
              window = decode(snapshot, limits, store, false);
            } else {
              window = decode(snapshot, limits);
            }
            for (const apply of since) apply(window);
            break;
          }
        }
        expect(window.size).toBe(model.records.size);
        expect(recordsOf(window)).toEqual([...model.records.values()]);
      }
      for (const topic of topics) for (let id = 0; id < 300; id++) expect(window.find(topic, `m${id}`)).toEqual(model.find(topic, `m${id}`));
    }), { seed: 424_242, numRuns: kind === memoryKind ? 150 : 60 });
  });

  describe('snapshots', () => {
    const limits: DedupWindowLimits = { dedupWindowMs: 1_000, dedupEntriesMax: 10_000 };

    /** Decodes with the records on a new store (an install), checks finds over `keys` and the re-encoded bytes against the original. */
    function expectRoundTrip(window: DedupWindow, keys: readonly string[], windowLimits = limits): DedupWindow {
      const bytes = encode(window);
      const entries = [...window.entries()];
      const finds = keys.map((id) => window.find('t', id));
      const copy = decode(bytes, windowLimits, kind.fresh());
      expect(copy.size).toBe(window.size);
      expect([...copy.entries()]).toEqual(entries);
      expect(keys.map((id) => copy.find('t', id))).toEqual(finds);
      expect(encode(copy)).toEqual(bytes);
      return copy;
    }

    it('an empty window is its range alone', () => {
      expect(encode(make(limits))).toEqual(new Uint8Array(12));
      expect(decode(new Uint8Array(12), limits, kind.fresh()).size).toBe(0);
    });

    it('round-trips after the ring wraps and after it shrinks', () => {
      const small = { dedupWindowMs: 1_000, dedupEntriesMax: 40 };
      const window = make(small);
      const keys = Array.from({ length: 3_000 }, (_, i) => `m${i}`);
      // 64 slots: 50 in, trim to 40 (the head moves to slot 10), 20 more wrap past the end.
      for (let i = 0; i < 50; i++) window.add('t', keys[i] as string, i % 3, i, i);
      window.expire(50);
      for (let i = 50; i < 70; i++) window.add('t', keys[i] as string, i % 3, i, i);
      expect(window.heapBytes).toBe(make(limits).heapBytes);
      expectRoundTrip(window, keys.slice(0, 80), small);
      // Grow well past the initial capacity, then shrink by expiring most of it.
      for (let i = 70; i < 3_000; i++) window.add('t', keys[i] as string, i % 3, i, i);
      const grownBytes = window.heapBytes;
      window.expire(3_000);
      expect(window.size).toBe(40);
      expect(window.range).toEqual({ first: 2_960, next: 3_000 });
      expect(window.heapBytes).toBeLessThan(grownBytes / 8);
      const copy = expectRoundTrip(window, keys, small);
      // The copy goes on as the original does (it has the same sequence numbers).
      for (const w of [window, copy]) {
        for (let i = 3_000; i < 3_100; i++) w.add('t', `n${i}`, 1, i, 2_000 + i);
        w.expire(3_050);
      }
      expect(encode(copy)).toEqual(encode(window));
    });

    it('rejects truncated bytes, counts the bytes cannot hold and bad numbers; a later record of a hash replaces an earlier one', () => {
      const window = make(limits);
      for (let i = 0; i < 5; i++) window.add('t', `m${i}`, i, 10 + i, 100 + i);
      const bytes = encode(window);
      expect(bytes.length).toBe(12 + 5 * 36);
      for (let cut = 0; cut < bytes.length; cut++) expect(() => decode(bytes.subarray(0, cut), limits)).toThrow(/truncated/);

      const records = [...window.entries()];
      const hashWords = (hash: string) => Array.from({ length: 4 }, (_, w) => Number.parseInt(hash.slice(8 * w, 8 * w + 8), 16));
      const craft = (first: number, count: number, rows: { hash: string; queueId: number; offset: number; timeMs: number }[]) => {
        const writer = new SnapshotWriter();
        writer.f64(first);
        writer.u32(count);
        writer.column(new Uint32Array(rows.flatMap((r) => hashWords(r.hash))), rows.length * 4);
        writer.column(new Int32Array(rows.map((r) => r.queueId)), rows.length);
        writer.column(new Float64Array(rows.map((r) => r.offset)), rows.length);
        writer.column(new Float64Array(rows.map((r) => r.timeMs)), rows.length);
        return writer.finish();
      };
      expect(craft(0, 5, records)).toEqual(bytes);
      expect(() => decode(craft(0, 6, records), limits)).toThrow(/truncated/);
      expect(() => decode(craft(0, 0xffff_ffff, records), limits)).toThrow(/truncated/);
      expect(() => decode(craft(-1, 5, records), limits)).toThrow(/sequence number/);
      expect(() => decode(craft(0.5, 5, records), limits)).toThrow(/sequence number/);
      expect(() => decode(craft(2 ** 53 - 2, 5, records), limits)).toThrow(/5 records from/);
      const first = records[0] as (typeof records)[number];
      expect(() => decode(craft(0, 1, [{ ...first, timeMs: Number.NaN }]), limits)).toThrow(/time/);
      expect(() => decode(craft(0, 1, [{ ...first, timeMs: Number.POSITIVE_INFINITY }]), limits)).toThrow(/time/);
      expect(() => decode(craft(0, 1, [{ ...first, offset: 1.5 }]), limits)).toThrow(/offset/);
      expect(() => decode(craft(0, 1, [{ ...first, offset: -1 }]), limits)).toThrow(/offset/);
      expect(() => decode(craft(0, 1, [{ ...first, queueId: -1 }]), limits)).toThrow(/queue id/);
      // Two records of one hash: the later one is the id's (replace appended it), the earlier one is dead.
      const replaced = decode(craft(7, 3, [first, records[1] as typeof first, { ...first, offset: 99 }]), limits, kind.fresh());
      expect(replaced.size).toBe(2);
      expect(replaced.find('t', 'm0')).toEqual({ queueId: 0, offset: 99 });
      expect([...replaced.entries()].map((e) => e.seq)).toEqual([8, 9]);
    });

    it('works at sequence numbers past 2^32 (ring slots are sequence numbers modulo the capacity)', () => {
      const window = make(limits);
      for (let i = 0; i < 5; i++) window.add('t', `m${i}`, i, 10 + i, 100 + i);
      const bytes = encode(window);
      const first = 2 ** 40 + 61; // the ring wraps at once
      new DataView(bytes.buffer, bytes.byteOffset).setFloat64(0, first, true);
      const far = decode(bytes, limits, kind.fresh());
      expect(far.range).toEqual({ first, next: first + 5 });
      for (let i = 5; i < 200; i++) far.add('t', `m${i}`, 1, 10 + i, 100 + i);
      far.replace('t', 'm3', 0, 7, 300);
      far.expire(1_103);
      expect(far.range).toEqual({ first: first + 4, next: first + 201 });
      expect(far.find('t', 'm3')).toEqual({ queueId: 0, offset: 7 });
      expect(far.find('t', 'm2')).toBeUndefined();
      expect(far.find('t', 'm199')).toEqual({ queueId: 1, offset: 209 });
      expect(far.size).toBe(197);
      expect(encode(decode(encode(far), limits, kind.fresh()))).toEqual(encode(far));
    });
  });
});

describe('DedupWindow memory', () => {
  it('grows to 200k and shrinks back when they all expire', () => {
    const records = new MemoryDedupRecords();
    const window = DedupWindow.create({ dedupWindowMs: 1_000, dedupEntriesMax: 1_000_000 }, { ...memoryDedupRecordStore, open: () => records });
    const empty = window.heapBytes;
    for (let i = 0; i < 200_000; i++) window.add('TopicTest', `id-${i}`, i & 3, i, 0);
    expect(window.size).toBe(200_000);
    // 2^18 ring slots of 3 bytes (fingerprint, distance) and 2^19 table cells of 4; the records (36 bytes each) are behind their port.
    expect(window.heapBytes).toBe(2 ** 18 * 3 + 2 ** 19 * 4);
    expect(records.heapBytes).toBe(2 ** 18 * 36);
    expect(window.find('TopicTest', 'id-123456')).toEqual({ queueId: 0, offset: 123_456 });
    window.expire(1_000);
    expect(window.size).toBe(200_000);
    window.expire(1_001);
    expect(window.size).toBe(0);
    expect(window.heapBytes).toBe(empty);
    expect(records.heapBytes).toBe(64 * 36);
    expect(window.find('TopicTest', 'id-123456')).toBeUndefined();
  });

  it('holds a million ids in at most 12 bytes each of its own (the records behind their port), and restores them from a snapshot', () => {
    const limits = { dedupWindowMs: 600_000, dedupEntriesMax: 1_000_000 };
    const window = DedupWindow.create(limits);
    const n = 1_000_000;
    const id = (i: number) => `C0A8000100002A9F0000${i.toString(16).padStart(12, '0')}`;
    for (let i = 0; i < n; i++) window.add('TopicTest', id(i), i & 7, i, i);
    // 2^21 table cells × 4 bytes + 2^20 ring slots × (2-byte fingerprint + 1-byte distance) ≈ 11.5 bytes per id.
    expect(window.heapBytes).toBe(2 ** 21 * 4 + 2 ** 20 * 3);
    expect(window.heapBytes / window.size).toBeLessThanOrEqual(12);
    const bytes = encode(window);
    expect(bytes.length).toBe(12 + n * 36);
    const copy = decode(bytes, limits);
    expect(copy.heapBytes / copy.size).toBeLessThanOrEqual(12);
    for (let i = 0; i < n; i += 997) expect(copy.find('TopicTest', id(i))).toEqual({ queueId: i & 7, offset: i });
    expect(copy.find('TopicTest', 'C0A8000100002A9F0000ffffffffffff')).toBeUndefined();
  });
});
