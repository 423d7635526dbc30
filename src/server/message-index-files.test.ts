/**
 * The message index in files. A model-based property runs the file store and the memory
 * implementation side by side against a plain array filtered on demand, under random adds,
 * bounded finds paged through their resume points, releases, snapshots, restores of the
 * newest or the previous snapshot followed by a replay of the same adds, and crashes (no
 * sync; with or without a power cut that keeps a random part of every unsynced write): the
 * answers must be the array's, and both implementations must encode the same bytes. A
 * negative control shows the property catches a walk that stops one entry early. Directed
 * cases: restart from a snapshot without records, the read-only view while the store goes
 * on, files deleted one sync late, missing, short and unsealed files, a power cut, a write
 * that fails, and memory that stays bounded over 500k entries.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  IndexKind, MemoryIndexFiles, MemoryMessageIndexStore, MessageIndexError, SegmentedIndex, decodeMessageIndex, emptyIndexExtent, hitsPerFindMax,
  messageIdKey, type IndexExtent, type IndexLayout, type KeyHash, type MessageIndex, type MessageIndexStore,
} from '../broker/core/message-index.js';
import { SnapshotReader, SnapshotWriter } from '../broker/core/state-snapshot.js';
import { MessageIndexFileStore, type MessageIndexFileOptions } from './message-index-files.js';
import { findAll, IndexReference, type Added } from '../../test/support/message-index-model.js';

let root: string;
beforeEach(() => { root = fs.mkdtempSync(path.join(os.tmpdir(), 'raftmq-mi-')); });
afterEach(() => { fs.rmSync(root, { recursive: true, force: true }); });

const tiny: IndexLayout = { entriesPerFile: 8, slotsPerFile: 4 };
/** Tail blocks of 4 entries and cached pages of 2 (3 pages): every boundary is crossed often. */
const tinyFiles = (dir: string, extra: Partial<MessageIndexFileOptions> = {}): MessageIndexFileStore =>
  new MessageIndexFileStore({ dir, layout: tiny, tailEntries: 4, pageEntries: 2, cachePages: 3, ...extra });
const all = { fromMs: -Infinity, toMs: Infinity, limit: hitsPerFindMax } as const;
const key = (n: number) => n as KeyHash;

function encode(index: MessageIndex, withRecords: boolean): Uint8Array {
  const writer = new SnapshotWriter();
  index.encodeInto(writer, withRecords);
  return writer.finish();
}

/** Bytes as hex, compared as strings (toEqual on typed arrays is slow, element by element). */
const hex = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');

const decode = (bytes: Uint8Array, withRecords: boolean, store: MessageIndexStore): MessageIndex => decodeMessageIndex(new SnapshotReader(bytes), withRecords, store);

const indexFiles = (dir: string): string[] => (fs.existsSync(dir) ? fs.readdirSync(dir).sort() : []);

/** One implementation under test: how it snapshots, restores and crashes. */
interface Subject {
  index: MessageIndex;
  /** A snapshot as a node takes it: after sync and without records when they are durable. */
  snapshot(): Uint8Array;
  restore(snapshot: Uint8Array): void;
  /** Stops without syncing (a power cut keeps a random part of each unsynced write), then restores `snapshot`. */
  crash(snapshot: Uint8Array, powerCut: boolean, randomInt: (maxExclusive: number) => number): void;
}

function memorySubject(store: MessageIndexStore = new MemoryMessageIndexStore(tiny)): Subject {
  const subject: Subject = {
    index: store.open(emptyIndexExtent(tiny)),
    snapshot: () => encode(subject.index, true),
    restore: (snapshot) => { subject.index = decode(snapshot, true, store); },
    crash: (snapshot) => subject.restore(snapshot),
  };
  return subject;
}

function fileSubject(dir: string): Subject {
  let store = tinyFiles(dir, { powerLossTestMode: true });
  const subject: Subject = {
    index: store.open(emptyIndexExtent(tiny)),
    snapshot: () => {
      subject.index.sync();
      return encode(subject.index, false);
    },
    restore: (snapshot) => { subject.index = decode(snapshot, false, store); },
    crash: (snapshot, powerCut, randomInt) => {
      if (powerCut) store.powerFail(randomInt);
      store.close();
      store = tinyFiles(dir, { powerLossTestMode: true });
      subject.restore(snapshot);
    },
  };
  return subject;
}

const keys = [0, 1, 4, 5, 2 ** 40 + 1, 3, 2 ** 52 + 3] as const; // slots (of 4): 0, 1, 0, 1, 1, 3, 3
type Op =
  | { readonly op: 'add'; readonly keys: readonly number[]; readonly kind: number; readonly logStep: number; readonly timeStep: number }
  | { readonly op: 'find'; readonly key: number; readonly fromMs: number; readonly spanMs: number; readonly limit: number; readonly readsMax: number }
  | { readonly op: 'release'; readonly back: number }
  | { readonly op: 'snapshot' }
  | { readonly op: 'restore'; readonly previous: boolean }
  | { readonly op: 'crash'; readonly powerCut: boolean; readonly seed: number };

const opArbitrary: fc.Arbitrary<Op> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ op: fc.constant('add' as const), keys: fc.array(fc.constantFrom(...keys), { minLength: 1, maxLength: 4 }), kind: fc.integer({ min: 1, max: 6 }), logStep: fc.integer({ min: 0, max: 2 }), timeStep: fc.integer({ min: 0, max: 3 }) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('find' as const), key: fc.constantFrom(...keys), fromMs: fc.integer({ min: -5, max: 150 }), spanMs: fc.integer({ min: 0, max: 200 }), limit: fc.integer({ min: 1, max: 6 }), readsMax: fc.integer({ min: 1, max: 12 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('release' as const), back: fc.integer({ min: 0, max: 25 }) }) },
  { weight: 2, arbitrary: fc.constant({ op: 'snapshot' as const }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('restore' as const), previous: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('crash' as const), powerCut: fc.boolean(), seed: fc.nat() }) },
);

/** A small deterministic PRNG for the power cut's random parts. */
function randomFrom(seed: number): (maxExclusive: number) => number {
  let state = seed >>> 0 || 1;
  return (maxExclusive) => {
    state ^= state << 13; state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5; state >>>= 0;
    return state % maxExclusive;
  };
}

/**
 * Runs `ops` on every subject in step with the reference. Snapshots: the newest two are kept
 * (the previous one is restorable until the sync of the one after the newest); restoring the
 * previous one abandons the newest. Every restore and crash replays the adds and releases
 * made since that snapshot, and must reach the same bytes.
 */
function runModel(ops: readonly Op[], subjects: readonly Subject[]): void {
  const reference = new IndexReference();
  const history: ({ readonly add: Added } | { readonly release: number })[] = [];
  let snapshots = [{ bytes: subjects.map((s) => s.snapshot()), at: 0 }];
  let logIndex = 1;
  let timeMs = 0;
  const apply = (step: (typeof history)[number]) => {
    for (const { index } of subjects) {
      if ('add' in step) index.add(key(step.add.key), step.add.kind, step.add.logIndex, step.add.position, step.add.timeMs);
      else index.releaseBelow(step.release);
    }
  };
  const sameRecords = () => {
    const records = subjects.map((s) => hex(encode(s.index, true)));
    for (const bytes of records) expect(bytes).toBe(records[0]);
    return records[0] as string;
  };
  const replayFrom = (snapshot: (typeof snapshots)[number], before: string) => {
    history.slice(snapshot.at).forEach(apply);
    expect(sameRecords()).toBe(before);
  };
  for (const op of ops) {
    switch (op.op) {
      case 'add':
        logIndex += op.logStep;
        timeMs += op.timeStep;
        op.keys.forEach((k, position) => {
          const add = { key: k, kind: op.kind, logIndex, position, timeMs };
          reference.entries.push(add);
          history.push({ add });
          apply({ add });
        });
        break;
      case 'find': {
        const query = { key: key(op.key), fromMs: op.fromMs, toMs: op.fromMs + op.spanMs, limit: op.limit, readsMax: op.readsMax };
        const expected = reference.find(op.key, query.fromMs, query.toMs);
        for (const { index } of subjects) expect(findAll(index, query)).toEqual(expected);
        break;
      }
      case 'release': {
        const release = Math.max(0, logIndex - op.back);
        reference.releasedBelow = Math.max(reference.releasedBelow, release);
        history.push({ release });
        apply({ release });
        break;
      }
      case 'snapshot':
        sameRecords();
        snapshots = [...snapshots.slice(-1), { bytes: subjects.map((s) => s.snapshot()), at: history.length }];
        break;
      case 'restore': {
        const before = sameRecords();
        const chosen = op.previous ? 0 : snapshots.length - 1;
        const snapshot = snapshots[chosen] as (typeof snapshots)[number];
        snapshots = [snapshot];
        subjects.forEach((s, i) => s.restore(snapshot.bytes[i] as Uint8Array));
        replayFrom(snapshot, before);
        break;
      }
      case 'crash': {
        const before = sameRecords();
        const snapshot = snapshots.at(-1) as (typeof snapshots)[number];
        snapshots = [snapshot];
        const randomInt = randomFrom(op.seed);
        subjects.forEach((s, i) => s.crash(snapshot.bytes[i] as Uint8Array, op.powerCut, randomInt));
        replayFrom(snapshot, before);
        break;
      }
    }
  }
  for (const k of keys) {
    for (const { index } of subjects) expect(index.find({ key: key(k), ...all }).hits).toEqual(reference.find(k, -Infinity, Infinity));
  }
}

/** A deliberately broken variant: the walk never reaches the first entry of a file's chain (it stops one entry early). */
class StopsOneEarly extends MemoryIndexFiles {
  override readEntry(seq: number, into: Uint8Array): void {
    super.readEntry(seq, into);
    const view = new DataView(into.buffer, into.byteOffset, into.byteLength);
    const previous = view.getUint32(24, true);
    if (previous !== 0) {
      const older = new Uint8Array(32);
      super.readEntry(seq - (seq % tiny.entriesPerFile) + previous - 1, older);
      if (new DataView(older.buffer).getUint32(24, true) === 0) view.setUint32(24, 0, true);
    }
  }
}

const brokenStore: MessageIndexStore = {
  recordsDurable: false,
  layout: tiny,
  open: (extent: IndexExtent) => new SegmentedIndex(extent, new StopsOneEarly(extent), { recordsDurable: false }),
  reader(): MessageIndexStore { return this; },
};

describe('the message index against the model', () => {
  it('files and memory answer as the filtered array does, through releases, restores, crashes and power cuts', () => {
    let run = 0;
    fc.assert(fc.property(fc.array(opArbitrary, { minLength: 10, maxLength: 150, size: 'max' }), (ops) => {
      const dir = path.join(root, `run-${run++}`);
      try {
        runModel(ops, [fileSubject(dir), memorySubject()]);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }), { seed: 20_240_703, numRuns: 50 });
  });

  it('negative control: a walk that stops one entry early is caught', () => {
    const outcome = fc.check(fc.property(fc.array(opArbitrary, { minLength: 10, maxLength: 150, size: 'max' }), (ops) => runModel(ops, [memorySubject(brokenStore)])), { seed: 20_240_703, numRuns: 120 });
    expect(outcome.failed).toBe(true);
  });
});

// ---- directed cases ------------------------------------------------------------------------

/** Adds `count` entries over three keys (two sharing a slot), two per log index, one log index a ms. */
function fill(indexes: readonly MessageIndex[], from: number, count: number): void {
  for (let i = from; i < from + count; i++) {
    for (const index of indexes) index.add(key([1, 5, 2][i % 3] as number), IndexKind.Key, 1 + (i >> 1), i & 1, 1_000 + (i >> 1));
  }
}

describe('message index files', () => {
  it('a snapshot without records restores after a restart, and replay continues it exactly', () => {
    const dir = path.join(root, 'a');
    const files = tinyFiles(dir);
    const twin = new MemoryMessageIndexStore(tiny).open(emptyIndexExtent(tiny));
    const live = files.open(emptyIndexExtent(tiny));
    fill([live, twin], 0, 45); // five files sealed, five entries in the sixth
    live.sync();
    const snapshot = encode(live, false);
    expect(snapshot.byteLength).toBe(1 + 8 + 40);
    fill([live], 45, 30); // written after the snapshot: seals file 5, starts 6 and 7, unsynced
    files.close();

    const reopened = tinyFiles(dir);
    const restored = decode(snapshot, false, reopened);
    expect(restored.extent).toEqual(twin.extent);
    // Cut back: file 5 holds its five entries again (no seal), 6 and later are gone.
    expect(indexFiles(dir)).toEqual([0, 8, 16, 24, 32, 40].map((first) => `${String(first).padStart(20, '0')}.idx`));
    expect(fs.statSync(path.join(dir, `${'40'.padStart(20, '0')}.idx`)).size).toBe(5 * 32);
    fill([restored, twin], 45, 30);
    expect(hex(encode(restored, true))).toBe(hex(encode(twin, true)));
    for (const k of [1, 5, 2]) expect(restored.find({ key: key(k), ...all })).toEqual(twin.find({ key: key(k), ...all }));
    reopened.close();
  });

  it('the read-only view restores an earlier snapshot with its records while the store goes on', () => {
    const dir = path.join(root, 'r');
    const files = tinyFiles(dir);
    const live = files.open(emptyIndexExtent(tiny));
    fill([live], 0, 21);
    live.sync();
    const snapshot = encode(live, false);
    const withRecords = encode(live, true);
    fill([live], 21, 40); // seals the file the snapshot saw half written
    live.releaseBelow(8);
    live.sync();
    const view = decode(snapshot, false, files.reader());
    expect(hex(encode(view, true))).toBe(hex(withRecords));
    // And a node without the files installs it.
    const installed = decode(withRecords, true, tinyFiles(path.join(root, 'follower')));
    expect(installed.find({ key: key(1), ...all })).toEqual(view.find({ key: key(1), ...all }));
    expect(() => view.add(key(1), 1, 99, 0, 9_999)).toThrow(/read-only/);
  });

  it('deletes a released file at the sync after the one that saw it released, and only whole files', () => {
    const dir = path.join(root, 'd');
    const files = tinyFiles(dir);
    const live = files.open(emptyIndexExtent(tiny));
    fill([live], 0, 40); // files of log indexes 1-4, 5-8, 9-12, 13-16, 17-20
    live.sync();
    expect(indexFiles(dir)).toHaveLength(5);
    live.releaseBelow(8); // file 1 still holds log index 8
    live.sync();
    const first = encode(live, false);
    expect(live.extent.firstFile).toBe(1);
    expect(indexFiles(dir)).toHaveLength(5); // one sync late
    live.releaseBelow(13);
    live.sync();
    expect(indexFiles(dir)).toHaveLength(4); // file 0 went; 1 and 2 wait for the next sync
    // The previous snapshot (first) still restores.
    expect(decode(first, false, files.reader()).find({ key: key(1), ...all }).hits.at(-1)?.logIndex).toBe(8);
    fill([live], 40, 2);
    live.sync();
    expect(indexFiles(dir)).toHaveLength(3);
    expect(live.extent.firstFile).toBe(3);
  });

  it('names the missing, short or unsealed file a snapshot needs', () => {
    const dir = path.join(root, 'm');
    const files = tinyFiles(dir);
    const live = files.open(emptyIndexExtent(tiny));
    fill([live], 0, 20);
    live.sync();
    const snapshot = encode(live, false);
    files.close();
    const name = (first: number) => path.join(dir, `${String(first).padStart(20, '0')}.idx`);
    const restore = () => decode(snapshot, false, tinyFiles(dir));

    const active = fs.readFileSync(name(16));
    fs.truncateSync(name(16), 3 * 32);
    expect(restore).toThrow(MessageIndexError);
    expect(restore).toThrow(`${name(16)} holds 96 bytes; the snapshot needs 128`);
    fs.writeFileSync(name(16), active);

    const sealed = fs.readFileSync(name(8));
    fs.writeFileSync(name(8), sealed.subarray(0, 8 * 32 + 4 * 4 + 31));
    expect(restore).toThrow(`${name(8)} holds 303 bytes`);
    const unsealed = Buffer.from(sealed);
    unsealed.writeUInt32LE(0, 8 * 32 + 4 * 4);
    fs.writeFileSync(name(8), unsealed);
    expect(restore).toThrow(`${name(8)} has no valid seal`);
    fs.writeFileSync(name(8), sealed);

    fs.rmSync(name(0));
    expect(restore).toThrow(new RegExp(`${name(0)} is missing .*raftmq repair`));
    fs.writeFileSync(name(0), Buffer.alloc(8 * 32 + 4 * 4 + 32)); // zeros: links that do not hold
    expect(restore).toThrow(MessageIndexError);
  });

  it('a power cut after a snapshot loses only what the snapshot does not count', () => {
    const dir = path.join(root, 'p');
    const files = tinyFiles(dir, { powerLossTestMode: true });
    const twin = new MemoryMessageIndexStore(tiny).open(emptyIndexExtent(tiny));
    const live = files.open(emptyIndexExtent(tiny));
    fill([live, twin], 0, 30);
    live.sync();
    const snapshot = encode(live, false);
    const atSnapshot = encode(twin, true);
    fill([live], 30, 30); // flushed blocks and a seal reach the files, unsynced
    const report = files.powerFail(() => 0);
    expect(report.indexBytesDiscarded).toBeGreaterThan(0);
    files.close();
    const restored = decode(snapshot, false, tinyFiles(dir));
    expect(hex(encode(restored, true))).toBe(hex(atSnapshot));
  });

  it('a write that fails is a MessageIndexError naming the file, and stays the index\'s error', () => {
    const dir = path.join(root, 'blocked');
    fs.writeFileSync(dir, 'not a directory');
    const index = tinyFiles(dir).open(emptyIndexExtent(tiny));
    const add = (i: number) => () => index.add(key(1), IndexKind.MessageId, i, 0, i);
    for (let i = 0; i < 4; i++) add(i)(); // the tail block
    expect(add(4)).toThrow(MessageIndexError);
    expect(add(4)).toThrow(/blocked\/0{20}\.idx for writing: (EEXIST|ENOTDIR)/);
    expect(add(5)).toThrow(MessageIndexError);
    expect(() => index.sync()).toThrow(MessageIndexError);
  });

  it('holds a bounded number of bytes over 500k entries (slot table, tail, cache)', () => {
    const layout: IndexLayout = { entriesPerFile: 1 << 16, slotsPerFile: 1 << 12 };
    const options = { dir: path.join(root, 'big'), layout, tailEntries: 1024, pageEntries: 128, cachePages: 16 };
    const index = new MessageIndexFileStore(options).open(emptyIndexExtent(layout));
    const bound = layout.slotsPerFile * 4 + options.tailEntries * 32 + options.cachePages * options.pageEntries * 32 + 8 * 24;
    const ids = Array.from({ length: 1_000 }, (_, i) => messageIdKey(`m-${i}`));
    let held = 0;
    for (let i = 0; i < 500_000; i++) {
      index.add(ids[i % 1_000] as KeyHash, IndexKind.MessageId, 1 + (i >> 2), i & 3, 1_000 + (i >> 4));
      if (i % 25_000 === 24_999) {
        expect(index.find({ key: ids[i % 1_000] as KeyHash, ...all, limit: 20 }).hits).toHaveLength(20);
        if (i % 100_000 === 99_999) index.sync();
        held = Math.max(held, index.heldBytes);
      }
    }
    expect(held).toBeGreaterThan(layout.slotsPerFile * 4 + 16 * 4096 * 0.9); // the cache did fill
    expect(held).toBeLessThanOrEqual(bound);
    expect(bound).toBeLessThan(200 * 1024); // against 16 MB of entries
  });
});
