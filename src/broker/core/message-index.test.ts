/**
 * The message index's pure half: the key hash (checked byte for byte against a transcription
 * of MurmurHash3_x86_128), the chains of MemoryMessageIndex in directed cases (newest first,
 * across files, time and release bounds, bounded walks that resume), the snapshot encoding,
 * and a model-based property: random adds, finds, releases, snapshots and restores of an
 * older snapshot followed by a replay of the same adds, against a plain array filtered on
 * demand. The file implementation runs the same property beside this one, with crashes and
 * power cuts (src/server/message-index-files.test.ts).
 */
import fc from 'fast-check';
import { murmur3Reference } from '../../../test/support/murmur3-reference.js';
import { describe, expect, it } from 'vitest';
import { InvariantViolation } from '../../util/assert.js';
import {
  IndexKind, MemoryMessageIndex, MemoryMessageIndexStore, decodeMessageIndex, disabledMessageIndexStore, memoryIndexLayoutDefault, emptyIndexExtent, hitsPerFindMax, messageIdKey, messageLocationKey, topicKey,
  type IndexLayout, type KeyHash, type MessageIndex,
} from './message-index.js';
import { SnapshotReader, SnapshotWriter } from './state-snapshot.js';
import { findAll, IndexReference, type Added } from '../../../test/support/message-index-model.js';


/** The documented input: little-endian u32 header words, then UTF-16LE code units. */
function keyBytes(header: readonly number[], text: string): Uint8Array {
  const view = new DataView(new ArrayBuffer(4 * header.length + 2 * text.length));
  header.forEach((word, i) => view.setUint32(4 * i, word, true));
  for (let i = 0; i < text.length; i++) view.setUint16(4 * header.length + 2 * i, text.charCodeAt(i), true);
  return new Uint8Array(view.buffer);
}

/** Any JS string, lone surrogates included (generated as code units: fc's 'binary' strings are slow to make). */
const codeUnits = fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 50 }).map((units) => String.fromCharCode(...units));
const keyOf = (words: readonly number[]) => ((words[1] as number) & 0x1f_ffff) * 2 ** 32 + (words[0] as number);
const seed = 0x524d5149;

describe('the key hash', () => {
  it('is MurmurHash3_x86_128 (seed "RMQI") of the documented bytes, 53 bits of it', () => {
    fc.assert(fc.property(codeUnits, fc.nat({ max: Number.MAX_SAFE_INTEGER }), (text, createdAt) => {
      expect(messageIdKey(text)).toBe(keyOf(murmur3Reference(keyBytes([1, text.length], text), seed)));
      const high = Math.floor(createdAt / 2 ** 32);
      expect(topicKey(createdAt, text)).toBe(keyOf(murmur3Reference(keyBytes([2, createdAt >>> 0, high, text.length], text), seed)));
      expect(Number.isSafeInteger(messageIdKey(text))).toBe(true);
    }), { seed: 20_240_701, numRuns: 300 });
  });

  it('keys a message location by the documented bytes, apart from ids and keys', () => {
    fc.assert(fc.property(fc.nat({ max: Number.MAX_SAFE_INTEGER }), fc.nat({ max: 0xffff_ffff }), (logIndex, position) => {
      const high = Math.floor(logIndex / 2 ** 32);
      expect(messageLocationKey(logIndex, position)).toBe(keyOf(murmur3Reference(keyBytes([3, logIndex >>> 0, high, position], ''), seed)));
    }), { seed: 20_240_702, numRuns: 300 });
    expect(messageLocationKey(1, 0)).not.toBe(messageLocationKey(0, 1));
    expect(messageLocationKey(2 ** 32 + 1, 0)).not.toBe(messageLocationKey(1, 0));
    expect(() => messageLocationKey(-1, 0)).toThrow(InvariantViolation);
  });

  it('keeps ids, keys and topics apart, and spreads over the slots', () => {
    expect(messageIdKey('a')).not.toBe(topicKey(0, 'a'));
    expect(topicKey(1, 'a')).not.toBe(topicKey(2, 'a'));
    expect(topicKey(2 ** 32 + 1, 'a')).not.toBe(topicKey(1, 'a'));
    const seen = new Set<number>();
    const slots = new Uint32Array(256);
    for (let i = 0; i < 50_000; i++) {
      const key = messageIdKey(`msg-${i}`);
      seen.add(key);
      slots[key & 255] = (slots[key & 255] as number) + 1;
    }
    expect(seen.size).toBe(50_000);
    // ~195 a slot; a fair hash stays well within ±30%.
    expect(Math.min(...slots)).toBeGreaterThan(135);
    expect(Math.max(...slots)).toBeLessThan(255);
  });
});

/** Bytes as hex, compared as strings (toEqual on typed arrays is slow, element by element). */
const hex = (bytes: Uint8Array): string => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
const tiny: IndexLayout = { entriesPerFile: 8, slotsPerFile: 4 };
const all = { fromMs: -Infinity, toMs: Infinity, limit: hitsPerFindMax } as const;
const key = (n: number) => n as KeyHash;

function encode(index: MessageIndex, withRecords = true): Uint8Array {
  const writer = new SnapshotWriter();
  index.encodeInto(writer, withRecords);
  return writer.finish();
}

describe('MemoryMessageIndex', () => {
  it('answers newest first across files, within the time range, and only for the key', () => {
    const index = new MemoryMessageIndex(emptyIndexExtent(tiny));
    // Keys 1 and 5 share slot 1 of 4: the walk passes the other's entries and drops them.
    for (let i = 0; i < 30; i++) index.add(key(i % 2 === 0 ? 1 : 5), IndexKind.MessageId, 10 + i, i % 3, 1_000 + i * 10);
    const ones = index.find({ key: key(1), ...all }).hits;
    expect(ones.map((h) => h.logIndex)).toEqual(Array.from({ length: 15 }, (_, i) => 38 - 2 * i));
    expect(ones[0]).toEqual({ logIndex: 38, position: 28 % 3, kind: IndexKind.MessageId, timeMs: 1_280 });
    expect(index.find({ key: key(1), fromMs: 1_100, toMs: 1_200, limit: 100 }).hits.map((h) => h.timeMs)).toEqual([1_200, 1_180, 1_160, 1_140, 1_120, 1_100]);
    expect(index.find({ key: key(9), ...all }).hits).toEqual([]); // slot 1, no entries of its own
    expect(index.find({ key: key(2), ...all }).hits).toEqual([]); // an empty slot
    expect(index.extent).toMatchObject({ entryCount: 30, firstFile: 0, lastLogIndex: 39, lastTimeMs: 1_290 });
  });

  it('releases whole files only when all of their entries are below, and never answers below the mark', () => {
    const index = new MemoryMessageIndex(emptyIndexExtent(tiny));
    for (let i = 0; i < 20; i++) index.add(key(3), IndexKind.Key, 1 + i, 0, i); // files 0, 1 full; 2 holds 4
    index.releaseBelow(8);
    expect(index.extent.firstFile).toBe(0); // file 0 holds log index 8
    expect(index.find({ key: key(3), ...all }).hits.map((h) => h.logIndex).at(-1)).toBe(8);
    index.releaseBelow(9);
    expect(index.extent.firstFile).toBe(1);
    index.releaseBelow(100);
    expect(index.extent.firstFile).toBe(2); // the file being written stays
    expect(index.find({ key: key(3), ...all }).hits).toEqual([]);
    index.releaseBelow(5); // never lowers
    expect(index.extent.releasedBelow).toBe(100);
  });

  it('bounds the walk of a hot key by reads, and resumes where it stopped', () => {
    const index = new MemoryMessageIndex(emptyIndexExtent(tiny));
    for (let i = 0; i < 200; i++) index.add(key(i % 3 === 0 ? 7 : 3), IndexKind.Delivered, i, 0, i); // one slot, two keys
    const first = index.find({ key: key(7), ...all, readsMax: 10 });
    expect(first.hits.length).toBeLessThan(10);
    expect(first.resume).toBeDefined();
    const expected = Array.from({ length: 67 }, (_, i) => 198 - 3 * i);
    expect(findAll(index, { key: key(7), ...all, readsMax: 10 }).map((h) => h.logIndex)).toEqual(expected);
    expect(findAll(index, { key: key(7), ...all, limit: 4 }).map((h) => h.logIndex)).toEqual(expected);
    expect(findAll(index, { key: key(7), ...all, limit: 1, readsMax: 1 }).map((h) => h.logIndex)).toEqual(expected);
    expect(() => index.find({ key: key(4), ...all, resume: first.resume as NonNullable<typeof first.resume> })).toThrow(/not from a walk of this key/);
  });

  it('stops a walk at the first entry older than the range or below the release mark, and skips newer files unread', () => {
    const index = new MemoryMessageIndex(emptyIndexExtent(tiny));
    for (let i = 0; i < 400; i++) index.add(key(2), IndexKind.Acked, 1 + i, 0, 10 * i); // 50 files, one chain each
    // Four reads (file 49's slot head, its three newest entries) find the two hits and end
    // the walk: no resume, though 397 older entries are left unread.
    expect(index.find({ key: key(2), fromMs: 3_975, toMs: Infinity, limit: 10, readsMax: 4 })).toEqual({
      hits: [{ logIndex: 400, position: 0, kind: IndexKind.Acked, timeMs: 3_990 }, { logIndex: 399, position: 0, kind: IndexKind.Acked, timeMs: 3_980 }],
      resume: undefined,
    });
    // An old window: the 49 newer files are skipped by their times, unread; nine reads walk file 0.
    expect(index.find({ key: key(2), fromMs: 0, toMs: 30, limit: 10, readsMax: 9 }).hits.map((h) => h.timeMs)).toEqual([30, 20, 10, 0]);
    index.releaseBelow(398); // file 49 holds 393..400: the walk ends at 397, the fifth read
    expect(index.find({ key: key(2), ...all, readsMax: 5 })).toMatchObject({ hits: [{ logIndex: 400 }, { logIndex: 399 }, { logIndex: 398 }], resume: undefined });
  });

  it('asserts on adds that go backwards or do not fit, and on unbounded finds', () => {
    const index = new MemoryMessageIndex(emptyIndexExtent(tiny));
    index.add(key(1), IndexKind.Acked, 5, 0, 100);
    expect(() => index.add(key(1), IndexKind.Acked, 4, 0, 100)).toThrow(InvariantViolation);
    expect(() => index.add(key(1), IndexKind.Acked, 5, 0, 99)).toThrow(InvariantViolation);
    expect(() => index.add(key(1), 0, 5, 0, 100)).toThrow(InvariantViolation);
    expect(() => index.add(key(1), IndexKind.Acked, 5, 2 ** 24, 100)).toThrow(InvariantViolation);
    expect(() => index.add(key(-1), IndexKind.Acked, 5, 0, 100)).toThrow(InvariantViolation);
    expect(() => index.find({ key: key(1), ...all, limit: hitsPerFindMax + 1 })).toThrow(InvariantViolation);
    expect(() => index.find({ key: key(1), ...all, readsMax: 0 })).toThrow(InvariantViolation);
    expect(index.extent.entryCount).toBe(1);
  });

  it('writes its records into snapshots and reads them back to the same bytes and answers', () => {
    const store = new MemoryMessageIndexStore(tiny);
    const index = store.open(emptyIndexExtent(tiny));
    for (let i = 0; i < 37; i++) index.add(messageIdKey(`m${i % 5}`), 1 + (i % 6), i, i % 4, i * 2);
    index.releaseBelow(12);
    const bytes = encode(index);
    expect(bytes.byteLength).toBe(1 + 8 + 40 + (37 - 8) * 28); // file 0 released
    const restored = decodeMessageIndex(new SnapshotReader(bytes), true, store);
    expect(hex(encode(restored))).toBe(hex(bytes));
    expect(restored.find({ key: messageIdKey('m3'), ...all })).toEqual(index.find({ key: messageIdKey('m3'), ...all }));
    expect(() => encode(index, false)).toThrow(/only be written with its records/);
    expect(() => decodeMessageIndex(new SnapshotReader(encode(index, true).subarray(0, 100)), true, store)).toThrow(/truncated/);
    const wrongVersion = bytes.slice();
    wrongVersion[0] = 9;
    expect(() => decodeMessageIndex(new SnapshotReader(wrongVersion), true, store)).toThrow(/format version 9/);
    const wrongLayout = bytes.slice();
    new DataView(wrongLayout.buffer).setUint32(1, 6, true);
    expect(() => decodeMessageIndex(new SnapshotReader(wrongLayout), true, store)).toThrow(/6 entries per index file/);
    // Positions only: memory holds nothing after a restart.
    expect(() => decodeMessageIndex(new SnapshotReader(bytes), false, store)).toThrow(/cannot hold entries/);
  });
});

// ---- the property --------------------------------------------------------------------------

const keys = [0, 1, 4, 5, 2 ** 40 + 1, 3, 2 ** 52 + 3] as const; // slots (of 4): 0, 1, 0, 1, 1, 3, 3
type Op =
  | { readonly op: 'add'; readonly keys: readonly number[]; readonly kind: number; readonly logStep: number; readonly timeStep: number }
  | { readonly op: 'find'; readonly key: number; readonly fromMs: number; readonly spanMs: number; readonly limit: number; readonly readsMax: number }
  | { readonly op: 'release'; readonly back: number }
  | { readonly op: 'snapshot' }
  | { readonly op: 'restore'; readonly which: number };

const opArbitrary: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant('add' as const), keys: fc.array(fc.constantFrom(...keys), { minLength: 1, maxLength: 4 }), kind: fc.integer({ min: 1, max: 6 }), logStep: fc.integer({ min: 0, max: 2 }), timeStep: fc.integer({ min: 0, max: 3 }) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('find' as const), key: fc.constantFrom(...keys), fromMs: fc.integer({ min: -5, max: 120 }), spanMs: fc.integer({ min: 0, max: 200 }), limit: fc.integer({ min: 1, max: 6 }), readsMax: fc.integer({ min: 1, max: 12 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('release' as const), back: fc.integer({ min: 0, max: 20 }) }) },
  { weight: 1, arbitrary: fc.constant({ op: 'snapshot' as const }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('restore' as const), which: fc.nat() }) },
);

describe('DisabledMessageIndex', () => {
  it('keeps nothing, encodes as an empty index, and reads any index snapshot as one', () => {
    const disabled = disabledMessageIndexStore.open(emptyIndexExtent(memoryIndexLayoutDefault));
    disabled.add(key(1), IndexKind.MessageId, 5, 0, 10);
    expect(disabled.find({ key: key(1), ...all }).hits).toEqual([]);
    expect(hex(encode(disabled))).toBe(hex(encode(new MemoryMessageIndex())));
    const full = new MemoryMessageIndex();
    for (let i = 0; i < 10; i++) full.add(key(i), IndexKind.Key, i + 1, 0, 100 + i);
    const read = decodeMessageIndex(new SnapshotReader(encode(full)), true, disabledMessageIndexStore);
    expect(read.extent.entryCount).toBe(0);
    expect(read.lastAddedLogIndex).toBe(Infinity);
  });
});

describe('MemoryMessageIndex against the model', () => {
  it('answers as the filtered array does, through releases and restores of older snapshots replayed', () => {
    fc.assert(fc.property(fc.array(opArbitrary, { minLength: 10, maxLength: 150, size: 'max' }), (ops) => {
      const store = new MemoryMessageIndexStore(tiny);
      let index = store.open(emptyIndexExtent(tiny));
      const reference = new IndexReference();
      /** Every add and release, for replay; snapshots say how much of it they cover. */
      const history: ({ readonly add: Added } | { readonly release: number })[] = [];
      const snapshots: { readonly bytes: Uint8Array; readonly at: number }[] = [{ bytes: encode(index), at: 0 }];
      let logIndex = 1;
      let timeMs = 0;
      const apply = (step: (typeof history)[number]) => {
        if ('add' in step) index.add(key(step.add.key), step.add.kind, step.add.logIndex, step.add.position, step.add.timeMs);
        else index.releaseBelow(step.release);
      };
      for (const op of ops) {
        if (op.op === 'add') {
          logIndex += op.logStep;
          timeMs += op.timeStep;
          op.keys.forEach((k, position) => {
            const add = { key: k, kind: op.kind, logIndex, position, timeMs };
            reference.entries.push(add);
            history.push({ add });
            apply({ add });
          });
        } else if (op.op === 'find') {
          const query = { key: key(op.key), fromMs: op.fromMs, toMs: op.fromMs + op.spanMs, limit: op.limit, readsMax: op.readsMax };
          expect(findAll(index, query)).toEqual(reference.find(op.key, query.fromMs, query.toMs));
        } else if (op.op === 'release') {
          const release = Math.max(0, logIndex - op.back);
          reference.releasedBelow = Math.max(reference.releasedBelow, release);
          history.push({ release });
          apply({ release });
        } else if (op.op === 'snapshot') {
          snapshots.push({ bytes: encode(index), at: history.length });
        } else {
          const before = hex(encode(index));
          const snapshot = snapshots[op.which % snapshots.length] as (typeof snapshots)[number];
          index = decodeMessageIndex(new SnapshotReader(snapshot.bytes), true, store);
          history.slice(snapshot.at).forEach(apply);
          expect(hex(encode(index))).toBe(before);
        }
      }
      for (const k of keys) expect(index.find({ key: key(k), ...all }).hits).toEqual(reference.find(k, -Infinity, Infinity));
    }), { seed: 20_240_702, numRuns: 150 });
  });
});
