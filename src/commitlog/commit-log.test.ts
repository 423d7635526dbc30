/**
 * CommitLog behaviour on the real disk and on SimDisk (one conformance suite for both), then
 * crash properties on SimDisk: every entry appended with `sync: true` and not truncated
 * survives any crash, torn tails are cut and reported, corruption of durable data stops
 * recovery (or, inside an indexed sealed segment, the read that reaches it) with an error
 * naming the file and offset, and a crash at any step of `resetTo` reopens as the old log or
 * the new empty one. The segment index has its own tests in segment-index.test.ts.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CommitLog } from './commit-log.js';
import { CorruptLogError } from './errors.js';
import { NodeFileSystem, type FileSystem } from './file-system.js';
import { decodeRecord, encodeRecord, parseSegmentFileName, recordBytes, segmentFileName, segmentHeaderBytes } from './record-codec.js';
import { segmentIndexFileName, segmentOfIndexFileName } from './segment-index.js';
import { EntryKind, type Entry } from '../raft/types.js';
import { SimDisk, crashableSimDisk, simCrashModes, type SimCrashMode } from '../testing/sim-disk.js';
import { Prng } from '../testing/prng.js';

const payloadFor = (index: number, term: number, bytes = 16): Uint8Array => {
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) out[i] = (index * 31 + term * 7 + i) & 0xff;
  return out;
};
const entry = (index: number, term: number, bytes = 16): Entry => ({ index, term, kind: EntryKind.normal, payload: payloadFor(index, term, bytes) });
const range = (from: number, through: number, term: number, bytes = 16): Entry[] =>
  Array.from({ length: through - from + 1 }, (_, i) => entry(from + i, term, bytes));
const readAll = (log: CommitLog): Promise<Entry[]> => log.read({ fromIndex: log.firstIndex, throughIndex: log.lastIndex, bytesMax: Infinity });
const configEntry = (index: number, term: number): Entry => ({ index, term, kind: EntryKind.config, payload: payloadFor(index, term) });
const segmentIndexPath = (segmentPath: string): string => path.join(path.dirname(segmentPath), segmentIndexFileName(path.basename(segmentPath)));

/** The empty state `resetTo(index, term)` must leave, in memory and after every reopen. */
async function expectResetState(log: CommitLog, index: number, term: number): Promise<void> {
  expect(log.firstIndex).toBe(index + 1);
  expect(log.lastIndex).toBe(index);
  expect(log.lastTerm).toBe(term);
  expect(log.termAt(index)).toBe(term);
  expect(log.termAt(index + 1)).toBeUndefined();
  expect(log.termAt(index - 1)).toBeUndefined();
  expect(log.runs()).toEqual([]);
  expect(log.configIndexes()).toEqual([]);
  expect(await readAll(log)).toEqual([]);
  expect(await log.read({ fromIndex: index + 1, throughIndex: index + 10, bytesMax: Infinity })).toEqual([]);
  expect(log.segments()).toEqual([{ fileName: segmentFileName(index + 1), firstIndex: index + 1, lastIndex: index, bytes: segmentHeaderBytes }]);
}

/** segments() is oldest first, contiguous, and covers exactly [firstIndex, lastIndex]. */
function expectSegmentsCover(log: CommitLog): void {
  const segments = log.segments();
  expect(segments.length).toBeGreaterThan(0);
  expect(segments[0]?.firstIndex).toBe(log.firstIndex);
  expect(segments[segments.length - 1]?.lastIndex).toBe(log.lastIndex);
  for (const [i, segment] of segments.entries()) {
    expect(segment.fileName).toBe(segmentFileName(segment.firstIndex));
    expect(segment.bytes).toBeGreaterThanOrEqual(segmentHeaderBytes);
    if (i > 0) expect(segment.firstIndex).toBe((segments[i - 1]?.lastIndex as number) + 1);
  }
}

const tempDirs: string[] = [];
afterAll(async () => {
  for (const dir of tempDirs) await fs.rm(dir, { recursive: true, force: true });
});

function describeLogStore(name: string, makeDisk: () => Promise<{ fs: FileSystem; dir: string }>): void {
  describe(`CommitLog on ${name}`, () => {
    it('appends, reads back bounded by the caller and by bytes, and survives reopen', async () => {
      const { fs: disk, dir } = await makeDisk();
      const { log } = await CommitLog.open({ fs: disk, dir, segmentBytesMax: 1024 });
      await log.append(range(1, 40, 1), { sync: true });
      await log.append(range(41, 60, 2), { sync: true });
      expect(log.lastIndex).toBe(60);
      expect(log.termAt(40)).toBe(1);
      expect(log.termAt(41)).toBe(2);
      const bounded = await log.read({ fromIndex: 10, throughIndex: 20, bytesMax: Infinity });
      expect(bounded.map((e) => e.index)).toEqual(range(10, 20, 1).map((e) => e.index));
      const byBytes = await log.read({ fromIndex: 1, throughIndex: 60, bytesMax: 64 });
      expect(byBytes.length).toBe(4);
      await log.close();
      const { log: reopened, report } = await CommitLog.open({ fs: disk, dir, segmentBytesMax: 1024 });
      expect(report.segmentCount).toBeGreaterThan(1);
      expect(report.tornTail).toBeUndefined();
      const all = await readAll(reopened);
      expect(all).toEqual([...range(1, 40, 1), ...range(41, 60, 2)]);
      await reopened.close();
    });

    it('truncates a conflicting suffix across segments and appends after it', async () => {
      const { fs: disk, dir } = await makeDisk();
      const { log } = await CommitLog.open({ fs: disk, dir, segmentBytesMax: 512 });
      await log.append(range(1, 50, 1), { sync: true });
      await log.truncateSuffix(12);
      expect(log.lastIndex).toBe(11);
      await log.append(range(12, 20, 3), { sync: true });
      await log.close();
      const { log: reopened } = await CommitLog.open({ fs: disk, dir, segmentBytesMax: 512 });
      expect(await readAll(reopened)).toEqual([...range(1, 11, 1), ...range(12, 20, 3)]);
      await reopened.close();
    });

    it('deletes whole old segments for retention and keeps the boundary term', async () => {
      const { fs: disk, dir } = await makeDisk();
      const { log } = await CommitLog.open({ fs: disk, dir, segmentBytesMax: 512 });
      await log.append(range(1, 30, 2), { sync: true });
      await log.append(range(31, 60, 4), { sync: true });
      const first = await log.deletePrefix(35);
      expect(first).toBeGreaterThan(1);
      expect(first).toBeLessThanOrEqual(36);
      expect(log.termAt(first - 1)).toBe(first - 1 <= 30 ? 2 : 4);
      await log.close();
      const { log: reopened } = await CommitLog.open({ fs: disk, dir, segmentBytesMax: 512 });
      expect(reopened.firstIndex).toBe(first);
      expect(reopened.termAt(first - 1)).toBe(first - 1 <= 30 ? 2 : 4);
      expect((await readAll(reopened)).map((e) => e.index)[0]).toBe(first);
      await reopened.close();
    });

    it('reports its segments oldest first from memory', async () => {
      const { fs: disk, dir } = await makeDisk();
      const { log } = await CommitLog.open({ fs: disk, dir, segmentBytesMax: 512 });
      expect(log.segments()).toEqual([]);
      await log.append(range(1, 30, 1), { sync: true });
      expectSegmentsCover(log);
      // 16-byte payloads: 48-byte records, 10 per 512-byte segment after the 32-byte header.
      expect(log.segments()[0]).toEqual({ fileName: segmentFileName(1), firstIndex: 1, lastIndex: 10, bytes: segmentHeaderBytes + 10 * recordBytes(16) });
      const files = (await disk.list(dir)).filter((name) => parseSegmentFileName(name) !== undefined);
      expect(files).toEqual(log.segments().map((segment) => segment.fileName));
      await log.truncateSuffix(15);
      expectSegmentsCover(log);
      expect(log.segments().map((segment) => [segment.firstIndex, segment.lastIndex])).toEqual([[1, 10], [11, 14]]);
      await log.close();
    });

    // Before the (compacted) log, at a segment boundary (the new file has an old one's name),
    // inside a segment, at the last index, after the log, and a reset of a reset log.
    for (const [label, index, term] of [['before', 4, 1], ['at a segment boundary', 20, 1], ['inside', 25, 2], ['at the last index', 40, 2], ['after', 500, 7], ['of a reset log', -1, 9]] as const) {
      it(`resets to an empty log ${label} the current one, durably, and carries on after it`, async () => {
        const { fs: disk, dir } = await makeDisk();
        const options = { fs: disk, dir, segmentBytesMax: 512 };
        const { log } = await CommitLog.open(options);
        await log.append([...range(1, 4, 1), configEntry(5, 1), ...range(6, 30, 1)], { sync: true });
        await log.append(range(31, 40, 2), { sync: true });
        expect(await log.deletePrefix(10)).toBe(11);
        let at: number = index;
        if (index < 0) {
          await log.resetTo(60, 3);
          at = 70;
        }
        await log.resetTo(at, term);
        await expectResetState(log, at, term);
        expect(await disk.list(dir)).toEqual([segmentFileName(at + 1)]);
        await expect(log.append([entry(at + 2, term)], { sync: true })).rejects.toThrow(/expected/);
        await expect(log.append([entry(at + 1, term - 1)], { sync: true })).rejects.toThrow(/below/);
        await log.close();

        const { log: reopened, report } = await CommitLog.open(options);
        expect(report.segmentCount).toBe(1);
        expect(report.completedReset).toBeUndefined();
        await expectResetState(reopened, at, term);

        // Appends go into the reset segment, then roll into new ones continuing it.
        const after = [...range(at + 1, at + 3, term), configEntry(at + 4, term + 1), ...range(at + 5, at + 30, term + 1)];
        await reopened.append(after, { sync: true });
        expect(reopened.segments()[0]?.fileName).toBe(segmentFileName(at + 1));
        expectSegmentsCover(reopened);
        expect(reopened.runs()).toEqual([[at + 1, term], [at + 4, term + 1]]);
        expect(reopened.termAt(at)).toBe(term);
        expect(reopened.configIndexes()).toEqual([at + 4]);
        expect(reopened.payloadBytesAt(at + 7)).toBe(16);
        expect(await readAll(reopened)).toEqual(after);
        await reopened.close();

        const { log: third } = await CommitLog.open(options);
        expect(third.firstIndex).toBe(at + 1);
        expect(third.termAt(at)).toBe(term);
        expect(third.configIndexes()).toEqual([at + 4]);
        expect(await readAll(third)).toEqual(after);
        // Compaction after a reset: whole segments only, never the newest, boundary term kept.
        const first = await third.deletePrefix(at + 15);
        expect(first).toBeGreaterThan(at + 1);
        expect(first).toBeLessThanOrEqual(at + 16);
        expect(third.firstIndex).toBe(first);
        expect(third.segments()[0]?.firstIndex).toBe(first);
        expect(third.termAt(first - 1)).toBe(term + 1);
        expect(third.configIndexes()).toEqual([]);
        expectSegmentsCover(third);
        expect(await third.deletePrefix(at + 1000)).toBe(third.segments()[third.segments().length - 1]?.firstIndex);
        expect(third.segments().length).toBe(1);
        expect(third.lastIndex).toBe(at + 30);
        await third.close();

        const { log: fourth } = await CommitLog.open(options);
        expect(fourth.firstIndex).toBe(fourth.segments()[0]?.firstIndex);
        expect(await readAll(fourth)).toEqual(after.slice(fourth.firstIndex - at - 1));
        await fourth.close();
      });
    }

    it('never deletes the only segment of a reset log', async () => {
      const { fs: disk, dir } = await makeDisk();
      const { log } = await CommitLog.open({ fs: disk, dir });
      await log.append(range(1, 5, 1), { sync: true });
      await log.resetTo(100, 4);
      expect(await log.deletePrefix(1000)).toBe(101);
      await expectResetState(log, 100, 4);
      await log.close();
    });

    it('refuses appends that break index order or lower the term', async () => {
      const { fs: disk, dir } = await makeDisk();
      const { log } = await CommitLog.open({ fs: disk, dir });
      await log.append(range(1, 3, 5), { sync: true });
      await expect(log.append([entry(5, 5)], { sync: true })).rejects.toThrow(/expected 4/);
      await expect(log.append([entry(4, 4)], { sync: true })).rejects.toThrow(/below 5/);
      await log.close();
    });
  });
}

describeLogStore('the real disk', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'raftmq-log-'));
  tempDirs.push(dir);
  return { fs: new NodeFileSystem(), dir };
});
describeLogStore('SimDisk', () => Promise.resolve({ fs: new SimDisk(new Prng(1)), dir: '/log' }));

describe('record codec', () => {
  it('detects any single bit flip in a record', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), fc.nat(), fc.integer({ min: 0, max: 7 }), (payload, at, bit) => {
      const bytes = new Uint8Array(recordBytes(payload.length));
      encodeRecord({ index: 7, term: 3, kind: EntryKind.normal, payload }, bytes, 0);
      bytes[at % bytes.length] = (bytes[at % bytes.length] as number) ^ (1 << bit);
      expect(decodeRecord(bytes, 0, { copyPayload: true }).kind).not.toBe('ok');
    }));
  });
});

describe('CommitLog crash recovery on SimDisk', () => {
  type Command =
    | { readonly op: 'append'; readonly count: number; readonly termBump: boolean; readonly sync: boolean; readonly bytes: number }
    | { readonly op: 'truncate'; readonly back: number }
    | { readonly op: 'compact'; readonly back: number }
    | { readonly op: 'reset'; readonly shift: number; readonly termChange: number }
    | { readonly op: 'crash'; readonly keepSome: boolean; readonly tear: boolean };
  const command: fc.Arbitrary<Command> = fc.oneof(
    { weight: 5, arbitrary: fc.record({ op: fc.constant('append' as const), count: fc.integer({ min: 1, max: 12 }), termBump: fc.boolean(), sync: fc.boolean(), bytes: fc.integer({ min: 0, max: 90 }) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('truncate' as const), back: fc.integer({ min: 0, max: 10 }) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('compact' as const), back: fc.integer({ min: 0, max: 20 }) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('reset' as const), shift: fc.integer({ min: -15, max: 15 }), termChange: fc.integer({ min: -1, max: 2 }) }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('crash' as const), keepSome: fc.boolean(), tear: fc.boolean() }) },
  );

  it('keeps every synced entry and returns a prefix-consistent log after any crash', async () => {
    await fc.assert(fc.asyncProperty(fc.integer(), fc.array(command, { maxLength: 40 }), async (seed, commands) => {
      const disk = new SimDisk(new Prng(seed));
      const options = { fs: disk, dir: '/log', segmentBytesMax: 600 };
      let { log } = await CommitLog.open(options);
      // The log starts after (base, baseTerm) (moved by compaction and reset); model[i] is the
      // entry at index base + 1 + i as last written; entries through durableThrough were
      // acknowledged with sync and not truncated since.
      let base = 0;
      let baseTerm = 0;
      let model: Entry[] = [];
      let durableThrough = 0;
      let term = 1;
      const last = (): number => base + model.length;
      for (const step of commands) {
        if (step.op === 'append') {
          if (step.termBump) term++;
          const batch = range(last() + 1, last() + step.count, term, step.bytes);
          await log.append(batch, { sync: step.sync });
          model = [...model, ...batch];
          if (step.sync) durableThrough = last();
        } else if (step.op === 'truncate') {
          const from = Math.max(base + 1, last() - step.back);
          if (from > last()) continue;
          await log.truncateSuffix(from);
          model = model.slice(0, from - base - 1);
          durableThrough = Math.min(durableThrough, last());
        } else if (step.op === 'compact') {
          const first = await log.deletePrefix(last() - step.back);
          expect(first).toBe(log.segments()[0]?.firstIndex ?? base + 1);
          if (first > base + 1) baseTerm = (model[first - base - 2] as Entry).term;
          model = model.slice(first - base - 1);
          base = first - 1;
          durableThrough = Math.max(durableThrough, base);
        } else if (step.op === 'reset') {
          const index = Math.max(0, last() + step.shift);
          const resetTerm = Math.max(index === 0 ? 0 : 1, term + step.termChange);
          await log.resetTo(index, resetTerm);
          base = index;
          baseTerm = resetTerm;
          model = [];
          durableThrough = index;
          term = Math.max(term, resetTerm, 1);
        } else {
          disk.crash({ keepSomeUnsynced: step.keepSome, tear: step.tear });
          const reopened = await CommitLog.open(options);
          log = reopened.log;
          expect(log.firstIndex).toBe(base + 1);
          expect(log.termAt(base)).toBe(baseTerm);
          const recovered = await readAll(log);
          expect(base + recovered.length).toBeGreaterThanOrEqual(durableThrough);
          expect(recovered).toEqual(model.slice(0, recovered.length));
          model = recovered;
          durableThrough = last();
          term = Math.max(term, log.lastTerm);
        }
      }
    }), { numRuns: 150 });
  });

  it('cuts a torn tail and reports how much it dropped', async () => {
    const disk = new SimDisk(new Prng(9));
    const { log } = await CommitLog.open({ fs: disk, dir: '/log' });
    await log.append(range(1, 5, 1), { sync: true });
    await log.append(range(6, 6, 1, 4000), { sync: false });
    let torn = false;
    for (let attempt = 0; attempt < 20 && !torn; attempt++) {
      const copy = new SimDisk(new Prng(attempt));
      const { log: source } = await CommitLog.open({ fs: copy, dir: '/log' });
      await source.append(range(1, 5, 1), { sync: true });
      await source.append(range(6, 6, 1, 4000), { sync: false });
      copy.crash({ keepSomeUnsynced: false, tear: true });
      if (copy.stats.tornWrites === 0) continue;
      torn = true;
      const { log: recovered, report } = await CommitLog.open({ fs: copy, dir: '/log' });
      expect(report.tornTail).toBeDefined();
      expect(report.tornTail?.bytesDropped).toBeGreaterThan(0);
      expect(recovered.lastIndex).toBe(5);
    }
    expect(torn).toBe(true);
  });

  // With its index a sealed segment's body is not read at open, so a bit flip in it is found
  // by the read that reaches the record (the trade-off of the segment index).
  it('reports a corrupt record of an indexed sealed segment, naming file and offset, when it is read', async () => {
    const disk = new SimDisk(new Prng(3));
    const { log } = await CommitLog.open({ fs: disk, dir: '/log', segmentBytesMax: 400 });
    await log.append(range(1, 40, 1), { sync: true });
    await log.close();
    const first = `/log/${segmentFileName(1)}`;
    disk.flipBit(first, 100, 3); // inside the record of index 2, which starts at byte 80
    const { log: reopened, report } = await CommitLog.open({ fs: disk, dir: '/log', segmentBytesMax: 400 });
    expect(report.segmentsFromIndex).toBeGreaterThan(0);
    expect(await reopened.read({ fromIndex: 3, throughIndex: 5, bytesMax: Infinity })).toEqual(range(3, 5, 1));
    const error = await reopened.read({ fromIndex: 1, throughIndex: 5, bytesMax: Infinity }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CorruptLogError);
    expect((error as CorruptLogError).file).toBe(segmentFileName(1));
    expect((error as CorruptLogError).offset).toBe(segmentHeaderBytes + recordBytes(16));
    expect(String((error as Error).message)).toMatch(/corrupt.*\.seg at byte 80/);
    // A corrupt record is not an I/O failure: the rest of the log stays readable.
    expect(await reopened.read({ fromIndex: 30, throughIndex: 31, bytesMax: Infinity })).toEqual(range(30, 31, 1));
  });

  it('stops with an error naming file and offset when a scanned segment is corrupt', async () => {
    const disk = new SimDisk(new Prng(3));
    const { log } = await CommitLog.open({ fs: disk, dir: '/log', segmentBytesMax: 400 });
    await log.append(range(1, 40, 1), { sync: true });
    await log.close();
    const first = `/log/${segmentFileName(1)}`;
    await disk.remove(segmentIndexPath(first));
    disk.flipBit(first, 100, 3);
    const error = await CommitLog.open({ fs: disk, dir: '/log', segmentBytesMax: 400 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CorruptLogError);
    expect((error as CorruptLogError).file).toBe(path.basename(first));
    expect((error as CorruptLogError).offset).toBe(80);
    expect(String((error as Error).message)).toMatch(/corrupt.*\.seg at byte/);
  });

  it('finds damage to an indexed sealed segment\'s header or last record at open', async () => {
    for (const at of [9, -5]) {
      const disk = new SimDisk(new Prng(3));
      const { log } = await CommitLog.open({ fs: disk, dir: '/log', segmentBytesMax: 400 });
      await log.append(range(1, 40, 1), { sync: true });
      const second = `/log/${log.segments()[1]?.fileName ?? ''}`;
      await log.close();
      disk.flipBit(second, at < 0 ? disk.fileSize(second) + at : at, 1);
      const error = await CommitLog.open({ fs: disk, dir: '/log', segmentBytesMax: 400 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(CorruptLogError);
      expect((error as CorruptLogError).file).toBe(path.basename(second));
    }
  });

  it('treats damage before a valid record in the last segment as corruption, not a torn tail', async () => {
    const disk = new SimDisk(new Prng(4));
    const { log } = await CommitLog.open({ fs: disk, dir: '/log' });
    await log.append(range(1, 10, 1), { sync: true });
    await log.close();
    const file = disk.fileNames()[0] as string;
    disk.flipBit(file, 40, 0);
    await expect(CommitLog.open({ fs: disk, dir: '/log' })).rejects.toBeInstanceOf(CorruptLogError);
  });

  it('fails stop after an fsync error instead of carrying on', async () => {
    const disk = new SimDisk(new Prng(5));
    const { log } = await CommitLog.open({ fs: disk, dir: '/log' });
    await log.append(range(1, 3, 1), { sync: true });
    disk.syncFailureProbability = 1;
    await expect(log.append(range(4, 5, 1), { sync: true })).rejects.toThrow(/EIO/);
    disk.syncFailureProbability = 0;
    await expect(log.append(range(6, 6, 1), { sync: true })).rejects.toThrow(/commitlog failed/);
  });
});

describe('CommitLog.resetTo crash safety on SimDisk', () => {
  const dir = '/log';
  const segmentBytesMax = 512;
  const crashModes = simCrashModes;

  const crashableDisk = (seed: number, mode: SimCrashMode) => crashableSimDisk(new Prng(seed), mode);


  // An old log of 1..40 in four segments, compacted to start at 11; unsynced entries past it
  // (which a crash may lose either way).
  async function oldLog(disk: SimDisk): Promise<{ log: CommitLog; entries: Entry[] }> {
    const { log } = await CommitLog.open({ fs: disk.mount(), dir, segmentBytesMax });
    const entries = [...range(1, 4, 1), configEntry(5, 1), ...range(6, 30, 1), ...range(31, 40, 2)];
    await log.append(entries, { sync: true });
    await log.deletePrefix(10);
    return { log, entries: entries.slice(10) };
  }

  type Outcome = 'old' | 'new';
  async function classify(disk: SimDisk, old: Entry[], index: number, term: number): Promise<{ outcome: Outcome; log: CommitLog; completedReset: boolean }> {
    const { log, report } = await CommitLog.open({ fs: disk.mount(), dir, segmentBytesMax });
    expect((await disk.list(dir)).every((name) => parseSegmentFileName(name) !== undefined || segmentOfIndexFileName(name) !== undefined)).toBe(true);
    expectSegmentsCover(log);
    const entries = await readAll(log);
    if (log.firstIndex === index + 1 && log.lastIndex === index) {
      await expectResetState(log, index, term);
      return { outcome: 'new', log, completedReset: report.completedReset !== undefined };
    }
    expect(log.firstIndex).toBe(11);
    expect(entries).toEqual(old);
    expect(log.configIndexes()).toEqual([]);
    return { outcome: 'old', log, completedReset: false };
  }

  for (const [label, index, term] of [['before', 3, 1], ['at a segment boundary', 20, 1], ['inside', 25, 2], ['at the last index', 40, 2], ['after', 90, 5]] as const) {
    it(`a crash before any disk operation of resetTo ${label} the log reopens as the old log or the new empty one`, async () => {
      // How many operations a reset takes.
      const probe = crashableDisk(0, crashModes[0]);
      const { log: probeLog } = await oldLog(probe.disk);
      probe.arm(undefined);
      await probeLog.resetTo(index, term);
      const steps = probe.operations();
      expect(steps).toBeGreaterThan(8);

      for (const [m, mode] of crashModes.entries()) {
        const outcomes: Outcome[] = [];
        for (let crashAt = 1; crashAt <= steps + 1; crashAt++) {
          const { disk, arm } = crashableDisk(crashAt * 7 + m, mode);
          const { log, entries } = await oldLog(disk);
          arm(crashAt);
          const result = await log.resetTo(index, term).then(() => 'done', (error: unknown) => error);
          if (crashAt <= steps) {
            expect(String(result)).toMatch(/crashed/);
          } else {
            expect(result).toBe('done');
            arm(undefined);
            disk.crash(mode);
          }
          const { outcome, log: reopened } = await classify(disk, entries, index, term);
          outcomes.push(outcome);
          // Whatever it reopened as, the log carries on and survives another reopen.
          const next = range(reopened.lastIndex + 1, reopened.lastIndex + 12, Math.max(reopened.lastTerm, 1));
          await reopened.append(next, { sync: true });
          const { log: again } = await CommitLog.open({ fs: disk.mount(), dir, segmentBytesMax });
          expect((await readAll(again)).slice(-12)).toEqual(next);
          expect(again.firstIndex).toBe(outcome === 'new' ? index + 1 : 11);
        }
        // Old until the intent record is durable (the first operation), new from then on.
        expect(outcomes[0]).toBe('old');
        expect(outcomes.slice(1)).toEqual(outcomes.slice(1).map(() => 'new'));
      }
    });
  }

  it('a crash while recovery finishes an interrupted reset is finished by the next recovery', async () => {
    const index = 25;
    const term = 3;
    const probe = crashableDisk(0, crashModes[0]);
    const { log: probeLog } = await oldLog(probe.disk);
    probe.arm(undefined);
    await probeLog.resetTo(index, term);
    const steps = probe.operations();
    // A reset interrupted before disk operation `crashAt` (the same seed replays the same disk).
    const interrupted = async (seed: number, mode: (typeof crashModes)[number], crashAt: number) => {
      const crashable = crashableDisk(seed, mode);
      const { log } = await oldLog(crashable.disk);
      crashable.arm(crashAt);
      await expect(log.resetTo(index, term)).rejects.toThrow(/crashed/);
      return crashable;
    };
    for (let crashAt = 2; crashAt <= steps; crashAt++) {
      for (const [m, mode] of crashModes.entries()) {
        const seed = crashAt * 3 + m;
        const counted = await interrupted(seed, mode, crashAt);
        counted.arm(undefined);
        const { log: finished, report } = await CommitLog.open({ fs: counted.disk.mount(), dir, segmentBytesMax });
        const recoverySteps = counted.operations();
        await expectResetState(finished, index, term);
        // The intent record is durable from operation 2 on; only its removal may outlive a
        // crash before the last operation (the SimDisk drops a removed file at once).
        if (crashAt < steps) expect(report.completedReset).toEqual({ firstIndex: index + 1, prevTerm: term });
        for (let recoveryCrashAt = 1; recoveryCrashAt <= recoverySteps; recoveryCrashAt++) {
          const { disk, arm } = await interrupted(seed, mode, crashAt);
          arm(recoveryCrashAt);
          await expect(CommitLog.open({ fs: disk.mount(), dir, segmentBytesMax })).rejects.toThrow(/crashed/);
          const { log: reopened } = await CommitLog.open({ fs: disk.mount(), dir, segmentBytesMax });
          await expectResetState(reopened, index, term);
        }
      }
    }
  });

  it('stops with an error naming the reset record when it is damaged', async () => {
    const { disk, arm } = crashableDisk(1, crashModes[0]);
    const { log } = await oldLog(disk);
    arm(3);
    await expect(log.resetTo(25, 3)).rejects.toThrow(/crashed/);
    disk.flipBit('/log/reset.pending', 9, 2);
    const error = await CommitLog.open({ fs: disk.mount(), dir, segmentBytesMax }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CorruptLogError);
    expect((error as CorruptLogError).file).toBe('reset.pending');
  });
});
