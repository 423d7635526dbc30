/**
 * The sealed-segment index: its codec rejects any damage; open takes sealed segments from
 * their indexes (reading only header and last record) and yields exactly what a scan yields;
 * a missing, damaged or stale index falls back to the scan and is rewritten; truncation,
 * retention and reset leave no index that would be trusted; and a crash at any disk
 * operation of a roll, a truncation, a retention step or an index-rewriting recovery reopens
 * as the acknowledged prefix.
 */
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CommitLog } from './commit-log.js';
import type { FileHandle, FileSystem } from './file-system.js';
import { parseSegmentFileName, recordBytes, segmentFileName, segmentHeaderBytes } from './record-codec.js';
import { decodeSegmentIndex, encodeSegmentIndex, segmentIndexFileName, segmentOfIndexFileName, type SegmentIndex } from './segment-index.js';
import { EntryKind, type Entry } from '../raft/types.js';
import { SimDisk, crashableSimDisk, simCrashModes } from '../testing/sim-disk.js';
import { Prng } from '../testing/prng.js';

const dir = '/log';
const segmentBytesMax = 600;

const payloadFor = (index: number, term: number, bytes: number): Uint8Array => {
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) out[i] = (index * 31 + term * 7 + i) & 0xff;
  return out;
};
/** Varying sizes, a config entry every 17 indexes and the given term. */
const entryAt = (index: number, term: number): Entry => ({
  index, term, kind: index % 17 === 0 ? EntryKind.config : EntryKind.normal, payload: payloadFor(index, term, (index * 13) % 70),
});
/** `[from, through]` with the term rising every `termEvery` indexes, from `baseTerm`. */
const entries = (from: number, through: number, baseTerm: number, termEvery = 23): Entry[] =>
  Array.from({ length: through - from + 1 }, (_, i) => entryAt(from + i, baseTerm + Math.floor((from + i) / termEvery)));
const readAll = (log: CommitLog): Promise<Entry[]> => log.read({ fromIndex: log.firstIndex, throughIndex: log.lastIndex, bytesMax: Infinity });
const indexPath = (segment: string): string => path.join(dir, segmentIndexFileName(segment));

/** Everything a caller can observe of a log, to compare an indexed open with a scan. */
async function observe(log: CommitLog): Promise<unknown> {
  const all = await readAll(log);
  return {
    firstIndex: log.firstIndex, lastIndex: log.lastIndex, lastTerm: log.lastTerm, prevTerm: log.termAt(log.firstIndex - 1),
    runs: log.runs(), configIndexes: log.configIndexes(), segments: log.segments(), entries: all,
    terms: all.map((entry) => log.termAt(entry.index)), payloadBytes: all.map((entry) => log.payloadBytesAt(entry.index)),
  };
}

/** Index files are exactly those of the sealed segments (all but the last). */
async function expectIndexesOfSealedSegments(fs: FileSystem, log: CommitLog): Promise<void> {
  const names = await fs.list(dir);
  const indexed = names.map(segmentOfIndexFileName).filter((name) => name !== undefined);
  expect(indexed).toEqual(log.segments().slice(0, -1).map((segment) => segment.fileName));
  expect(names.filter((name) => parseSegmentFileName(name) === undefined && segmentOfIndexFileName(name) === undefined)).toEqual([]);
}

/** A FileSystem that counts the bytes read from each file (by name). */
function countingFileSystem(inner: FileSystem): { fs: FileSystem; bytesRead: Map<string, number> } {
  const bytesRead = new Map<string, number>();
  const count = (filePath: string, bytes: number): void => { bytesRead.set(path.basename(filePath), (bytesRead.get(path.basename(filePath)) ?? 0) + bytes); };
  const fs: FileSystem = {
    mkdirp: (d) => inner.mkdirp(d),
    list: (d) => inner.list(d),
    remove: (p) => inner.remove(p),
    syncDir: (d) => inner.syncDir(d),
    writeFileAtomic: (p, data) => inner.writeFileAtomic(p, data),
    readFile: async (p) => {
      const data = await inner.readFile(p);
      count(p, data?.length ?? 0);
      return data;
    },
    open: async (p, options) => {
      const handle = await inner.open(p, options);
      const counted: FileHandle = {
        path: handle.path,
        size: () => handle.size(),
        read: async (target, position) => {
          const n = await handle.read(target, position);
          count(p, n);
          return n;
        },
        write: (data, position) => handle.write(data, position),
        datasync: () => handle.datasync(),
        truncate: (length) => handle.truncate(length),
        close: () => handle.close(),
      };
      return counted;
    },
  };
  return { fs, bytesRead };
}

/** A log of 1..300 over many segments, with term changes and config entries in them. */
async function manySegments(disk: SimDisk): Promise<Entry[]> {
  const { log } = await CommitLog.open({ fs: disk, dir, segmentBytesMax });
  const written = entries(1, 300, 1);
  for (let from = 0; from < written.length; from += 37) await log.append(written.slice(from, from + 37), { sync: true });
  await log.close();
  return written;
}

describe('segment index codec', () => {
  const sample: SegmentIndex = {
    firstIndex: 41, prevTerm: 3, segmentBytes: segmentHeaderBytes + 3 * recordBytes(10),
    positions: [32, 74, 116], runs: [[41, 3], [43, 5]], configIndexes: [42],
  };

  it('round-trips', () => {
    expect(decodeSegmentIndex(encodeSegmentIndex(sample))).toEqual(sample);
    const empty: SegmentIndex = { firstIndex: 7, prevTerm: 2, segmentBytes: segmentHeaderBytes, positions: [], runs: [], configIndexes: [] };
    expect(decodeSegmentIndex(encodeSegmentIndex(empty))).toEqual(empty);
  });

  it('rejects any bit flip and any truncation or extension', () => {
    const bytes = encodeSegmentIndex(sample);
    for (let at = 0; at < bytes.length; at++) {
      for (let bit = 0; bit < 8; bit++) {
        const damaged = bytes.slice();
        damaged[at] = (damaged[at] as number) ^ (1 << bit);
        expect(decodeSegmentIndex(damaged)).toBeUndefined();
      }
    }
    for (let length = 0; length < bytes.length; length++) expect(decodeSegmentIndex(bytes.subarray(0, length))).toBeUndefined();
    const longer = new Uint8Array(bytes.length + 1);
    longer.set(bytes);
    expect(decodeSegmentIndex(longer)).toBeUndefined();
  });

  it('rejects a checksummed index that cannot describe a segment', () => {
    const impossible: Array<Partial<SegmentIndex>> = [
      { positions: [40, 74, 116] }, // first record not right after the header
      { positions: [32, 50, 116] }, // records overlap
      { segmentBytes: 140 }, // last record runs past the end
      { runs: [[42, 3]] }, // runs do not start at the first index
      { runs: [[41, 2]] }, // term below prevTerm
      { runs: [[41, 3], [43, 3]] }, // terms not rising
      { runs: [[41, 3], [44, 5]] }, // run starts past the last record
      { configIndexes: [44] }, // config past the last record
      { configIndexes: [42, 42] },
      { runs: [] },
    ];
    for (const change of impossible) expect(decodeSegmentIndex(encodeSegmentIndex({ ...sample, ...change }))).toBeUndefined();
  });

  it('index files are not segments, and name their segment', () => {
    const segment = segmentFileName(12);
    expect(parseSegmentFileName(segmentIndexFileName(segment))).toBeUndefined();
    expect(parseSegmentFileName(`${segmentIndexFileName(segment)}.tmp`)).toBeUndefined();
    expect(segmentOfIndexFileName(segmentIndexFileName(segment))).toBe(segment);
    expect(segmentOfIndexFileName(segment)).toBeUndefined();
    expect(segmentOfIndexFileName(`${segmentIndexFileName(segment)}.tmp`)).toBeUndefined();
  });
});

describe('CommitLog open from segment indexes', () => {
  it('reads only header and last record of each sealed segment, and yields what a scan yields', async () => {
    const disk = new SimDisk(new Prng(1));
    const written = await manySegments(disk);
    const { fs, bytesRead } = countingFileSystem(disk);
    const { log, report } = await CommitLog.open({ fs, dir, segmentBytesMax });
    const segments = log.segments();
    expect(segments.length).toBeGreaterThan(20);
    expect(report).toMatchObject({ segmentCount: segments.length, segmentsFromIndex: segments.length - 1, segmentsScanned: 1, indexesWritten: 0 });
    for (const segment of segments.slice(0, -1)) {
      const lastRecord = recordBytes(log.payloadBytesAt(segment.lastIndex));
      expect(bytesRead.get(segment.fileName)).toBe(segmentHeaderBytes + lastRecord);
      expect(bytesRead.get(segmentIndexFileName(segment.fileName))).toBeGreaterThan(0);
    }
    const last = segments[segments.length - 1];
    expect(bytesRead.get(last?.fileName ?? '')).toBe(segmentHeaderBytes + (last?.bytes ?? 0));
    const fromIndexes = await observe(log);
    expect(await readAll(log)).toEqual(written);
    expect(log.configIndexes()).toEqual(written.filter((entry) => entry.kind === EntryKind.config).map((entry) => entry.index));
    await expectIndexesOfSealedSegments(disk, log);
    await log.close();

    for (const name of await disk.list(dir)) if (segmentOfIndexFileName(name) !== undefined) await disk.remove(path.join(dir, name));
    const { log: scanned, report: scanReport } = await CommitLog.open({ fs: disk, dir, segmentBytesMax });
    expect(scanReport).toMatchObject({ segmentsFromIndex: 0, segmentsScanned: segments.length, indexesWritten: segments.length - 1 });
    expect(await observe(scanned)).toEqual(fromIndexes);
    await scanned.close();
  });

  it('carries a term run and the log across many indexed segments, then appends and rolls on', async () => {
    const disk = new SimDisk(new Prng(2));
    const { log } = await CommitLog.open({ fs: disk, dir, segmentBytesMax });
    // One term for 200 entries (a run spanning segments), then a term change at each append.
    const long = entries(1, 200, 4, 1000);
    await log.append(long, { sync: true });
    await log.append(entries(201, 230, 9, 10), { sync: true });
    const before = await observe(log);
    await log.close();
    const { log: reopened, report } = await CommitLog.open({ fs: disk, dir, segmentBytesMax });
    expect(report.segmentsFromIndex).toBe(reopened.segments().length - 1);
    expect(await observe(reopened)).toEqual(before);
    await reopened.append(entries(231, 300, 40, 1000), { sync: true });
    const after = await observe(reopened);
    await reopened.close();
    const { log: third, report: thirdReport } = await CommitLog.open({ fs: disk, dir, segmentBytesMax });
    expect(thirdReport.segmentsFromIndex).toBe(third.segments().length - 1);
    expect(await observe(third)).toEqual(after);
    await expectIndexesOfSealedSegments(disk, third);
    await third.close();
  });

  /** Damages the index of the third segment, reopens, and checks fallback and rewrite. */
  async function expectFallback(damage: (disk: SimDisk, index: string, segment: string) => Promise<void> | void): Promise<void> {
    const disk = new SimDisk(new Prng(3));
    const written = await manySegments(disk);
    const { log } = await CommitLog.open({ fs: disk, dir, segmentBytesMax });
    const reference = await observe(log);
    const segment = log.segments()[2]?.fileName as string;
    const sealedCount = log.segments().length - 1;
    await log.close();
    await damage(disk, indexPath(segment), segment);
    const { log: reopened, report } = await CommitLog.open({ fs: disk, dir, segmentBytesMax });
    expect(report).toMatchObject({ segmentsFromIndex: sealedCount - 1, segmentsScanned: 2, indexesWritten: 1 });
    expect(await observe(reopened)).toEqual(reference);
    expect(await readAll(reopened)).toEqual(written);
    await reopened.close();
    const { log: third, report: thirdReport } = await CommitLog.open({ fs: disk, dir, segmentBytesMax });
    expect(thirdReport).toMatchObject({ segmentsFromIndex: sealedCount, segmentsScanned: 1, indexesWritten: 0 });
    expect(await observe(third)).toEqual(reference);
    await third.close();
  }

  it('falls back to a scan when an index is missing, and rewrites it', async () => {
    await expectFallback((disk, index) => disk.remove(index));
  });

  it('falls back to a scan when an index is truncated, and rewrites it', async () => {
    await expectFallback((disk, index) => disk.truncateDurable(index, 5));
  });

  it('falls back to a scan when any byte of an index is flipped, and rewrites it', async () => {
    const probe = new SimDisk(new Prng(3));
    await manySegments(probe);
    const size = probe.fileSize(indexPath(segmentFileName(1)));
    for (const at of [0, 5, 9, 25, 37, 45, Math.floor(size / 2), size - 1]) {
      await expectFallback((disk, index) => disk.flipBit(index, at, at % 8));
    }
  });

  it('falls back to a scan when an index is another segment\'s or describes other content of the same size', async () => {
    await expectFallback(async (disk, index) => {
      const other = await disk.readFile(indexPath(segmentFileName(1)));
      await disk.writeFileAtomic(index, other as Uint8Array);
    });
    // Same header and size, other records: the index of a segment written with other terms.
    await expectFallback(async (disk, index, segment) => {
      const twin = new SimDisk(new Prng(4));
      const { log } = await CommitLog.open({ fs: twin, dir, segmentBytesMax });
      const written = entries(1, 300, 1);
      const first = parseSegmentFileName(segment) as number;
      for (let from = 0; from < written.length; from += 37) {
        const batch = written.slice(from, from + 37).map((entry) => (entry.index >= first ? { ...entry, term: entry.term + 100 } : entry));
        await log.append(batch, { sync: true });
      }
      await log.close();
      expect(twin.fileSize(path.join(dir, segment))).toBe(disk.fileSize(path.join(dir, segment)));
      await disk.writeFileAtomic(index, (await twin.readFile(index)) as Uint8Array);
    });
  });

  it('removes leftover temporaries of interrupted index writes', async () => {
    const disk = new SimDisk(new Prng(5));
    await manySegments(disk);
    const temporary = `${indexPath(segmentFileName(1))}.tmp`;
    await disk.writeFileAtomic(temporary, new Uint8Array([1, 2, 3]));
    const { log } = await CommitLog.open({ fs: disk, dir, segmentBytesMax });
    expect(await disk.readFile(temporary)).toBeUndefined();
    await expectIndexesOfSealedSegments(disk, log);
    await log.close();
  });
});

describe('CommitLog keeps no stale segment index', () => {
  it('truncating into a sealed segment and appending other entries reopens as the new entries', async () => {
    for (const cutBack of [0, 1, 5, 40]) {
      const disk = new SimDisk(new Prng(6));
      const { log } = await CommitLog.open({ fs: disk, dir, segmentBytesMax });
      await log.append(entries(1, 200, 1), { sync: true });
      // The first index of the third-last segment, minus `cutBack`: into a sealed segment.
      const target = (log.segments()[log.segments().length - 3]?.firstIndex as number) - cutBack;
      await log.truncateSuffix(target);
      await expectIndexesOfSealedSegments(disk, log);
      // Same indexes, other terms and the same sizes: only the records say which is which.
      const replacement = entries(target, 200, 50);
      await log.append(replacement, { sync: true });
      const expected = [...entries(1, target - 1, 1), ...replacement];
      expect(await readAll(log)).toEqual(expected);
      await log.close();
      const { log: reopened, report } = await CommitLog.open({ fs: disk, dir, segmentBytesMax });
      expect(report.segmentsFromIndex).toBe(reopened.segments().length - 1);
      expect(await readAll(reopened)).toEqual(expected);
      expect(reopened.termAt(target)).toBe(replacement[0]?.term);
      await expectIndexesOfSealedSegments(disk, reopened);
      await reopened.close();
    }
  });

  it('retention removes the indexes of the segments it deletes', async () => {
    const disk = new SimDisk(new Prng(7));
    await manySegments(disk);
    const { log } = await CommitLog.open({ fs: disk, dir, segmentBytesMax });
    const first = await log.deletePrefix(150);
    await expectIndexesOfSealedSegments(disk, log);
    const reference = await observe(log);
    await log.close();
    const { log: reopened, report } = await CommitLog.open({ fs: disk, dir, segmentBytesMax });
    expect(reopened.firstIndex).toBe(first);
    expect(report.segmentsFromIndex).toBe(reopened.segments().length - 1);
    expect(await observe(reopened)).toEqual(reference);
    await reopened.close();
  });

  it('a reset removes every index, and a log rebuilt under the same names reopens as the new entries', async () => {
    const disk = new SimDisk(new Prng(8));
    await manySegments(disk);
    const { log } = await CommitLog.open({ fs: disk, dir, segmentBytesMax });
    await log.resetTo(0, 0);
    expect(await disk.list(dir)).toEqual([segmentFileName(1)]);
    // Segment names repeat those of the old log; the contents differ.
    const replacement = entries(1, 300, 70);
    await log.append(replacement, { sync: true });
    await log.close();
    const { log: reopened, report } = await CommitLog.open({ fs: disk, dir, segmentBytesMax });
    expect(report.segmentsFromIndex).toBe(reopened.segments().length - 1);
    expect(await readAll(reopened)).toEqual(replacement);
    await reopened.close();
  });

  it('a reset interrupted by a crash and finished by recovery removes the indexes too', async () => {
    const probe = crashableSimDisk(new Prng(9), simCrashModes[0]);
    await manySegments(probe.disk);
    const { log: probeLog } = await CommitLog.open({ fs: probe.disk.mount(), dir, segmentBytesMax });
    probe.arm(undefined);
    await probeLog.resetTo(150, 3);
    const steps = probe.operations();
    for (let crashAt = 2; crashAt <= steps; crashAt++) {
      const { disk, arm } = crashableSimDisk(new Prng(9), simCrashModes[0]);
      await manySegments(disk);
      const { log } = await CommitLog.open({ fs: disk.mount(), dir, segmentBytesMax });
      arm(crashAt);
      await expect(log.resetTo(150, 3)).rejects.toThrow(/crashed/);
      const { log: reopened } = await CommitLog.open({ fs: disk.mount(), dir, segmentBytesMax });
      expect(reopened.firstIndex).toBe(151);
      expect(await disk.list(dir)).toEqual([segmentFileName(151)]);
      await reopened.close();
    }
  });
});

describe('CommitLog segment index crash safety on SimDisk', () => {
  type Step = (log: CommitLog) => Promise<void>;

  /**
   * Runs `step` on a fresh log (built by `setup`) crashing before each of its disk
   * operations in turn, in every crash mode, and checks the reopened log: each entry it holds
   * is the one at that index in `before` or (all of them) in `after`, it reaches at least
   * `acknowledgedThrough`, the indexes are those of the sealed segments, and after more
   * appends (rolling on) and another reopen, everything is read back from the indexes.
   */
  async function crashAtEveryOperation(options: {
    setup: (log: CommitLog) => Promise<void>;
    step: Step;
    before: Entry[];
    after: Entry[];
    acknowledgedThrough: number;
  }): Promise<void> {
    const probe = crashableSimDisk(new Prng(0), simCrashModes[0]);
    const { log: probeLog } = await CommitLog.open({ fs: probe.disk.mount(), dir, segmentBytesMax });
    await options.setup(probeLog);
    probe.arm(undefined);
    await options.step(probeLog);
    const steps = probe.operations();
    expect(steps).toBeGreaterThan(3);
    for (const [m, mode] of simCrashModes.entries()) {
      for (let crashAt = 1; crashAt <= steps + 1; crashAt++) {
        const { disk, arm } = crashableSimDisk(new Prng(crashAt * 5 + m), mode);
        const { log } = await CommitLog.open({ fs: disk.mount(), dir, segmentBytesMax });
        await options.setup(log);
        arm(crashAt);
        const result = await options.step(log).then(() => 'done', (error: unknown) => error);
        if (crashAt <= steps) expect(String(result)).toMatch(/crashed/);
        else disk.crash(mode);
        arm(undefined);
        const { log: reopened } = await CommitLog.open({ fs: disk.mount(), dir, segmentBytesMax });
        const recovered = await readAll(reopened);
        expect(reopened.lastIndex).toBeGreaterThanOrEqual(options.acknowledgedThrough);
        // Models start at index 1, so entry i of a model is the one at index i + 1.
        const matches = (model: Entry[]): boolean => recovered.every((entry) => JSON.stringify(entry) === JSON.stringify(model[entry.index - 1]));
        expect(matches(options.before) || matches(options.after), `crash at ${crashAt}, mode ${m}`).toBe(true);
        await expectIndexesOfSealedSegments(disk, reopened);
        const more = entries(reopened.lastIndex + 1, reopened.lastIndex + 25, reopened.lastTerm + 1);
        await reopened.append(more, { sync: true });
        const expected = [...recovered, ...more];
        await reopened.close();
        const { log: again, report } = await CommitLog.open({ fs: disk.mount(), dir, segmentBytesMax });
        expect(report.segmentsFromIndex).toBe(again.segments().length - 1);
        expect(report.indexesWritten).toBe(0);
        expect(await readAll(again)).toEqual(expected);
        await again.close();
      }
    }
  }

  it('a crash at any operation of an append that rolls (seal, index write, new segment) keeps the acknowledged prefix', async () => {
    const first = entries(1, 40, 1);
    const batch = entries(41, 60, 3);
    await crashAtEveryOperation({
      setup: (log) => log.append(first, { sync: true }),
      step: (log) => log.append(batch, { sync: true }),
      before: first, after: [...first, ...batch], acknowledgedThrough: first.length,
    });
  });

  it('a crash at any operation of an unsynced append that rolls keeps the synced prefix', async () => {
    const first = entries(1, 40, 1);
    const batch = entries(41, 60, 3);
    await crashAtEveryOperation({
      setup: async (log) => {
        await log.append(first.slice(0, 30), { sync: true });
        await log.append(first.slice(30), { sync: false });
      },
      step: (log) => log.append(batch, { sync: false }),
      before: first, after: [...first, ...batch], acknowledgedThrough: 30,
    });
  });

  it('a crash at any operation of a truncation into a sealed segment reopens as the old log or a prefix of the cut one', async () => {
    const old = entries(1, 120, 1);
    const cut = 50;
    await crashAtEveryOperation({
      setup: (log) => log.append(old, { sync: true }),
      step: (log) => log.truncateSuffix(cut),
      before: old, after: old.slice(0, cut - 1), acknowledgedThrough: cut - 1,
    });
  });

  it('a crash at any operation of a truncation and re-append with other terms never mixes old and new records', async () => {
    const old = entries(1, 120, 1);
    const cut = 50;
    const replacement = entries(cut, 75, 30);
    await crashAtEveryOperation({
      setup: (log) => log.append(old, { sync: true }),
      step: async (log) => {
        await log.truncateSuffix(cut);
        await log.append(replacement, { sync: true });
      },
      before: old, after: [...old.slice(0, cut - 1), ...replacement], acknowledgedThrough: cut - 1,
    });
  });

  it('a crash at any operation of recovery that rewrites missing indexes is recovered by the next open', async () => {
    const written = entries(1, 60, 1);
    // A log written before indexes existed (or that lost them): recovery scans and writes them.
    const probe = crashableSimDisk(new Prng(0), simCrashModes[0]);
    await writeWithoutIndexes(probe.disk, written);
    probe.arm(undefined);
    const { report } = await CommitLog.open({ fs: probe.disk.mount(), dir, segmentBytesMax });
    expect(report.indexesWritten).toBeGreaterThan(3);
    const steps = probe.operations();
    for (const [m, mode] of simCrashModes.entries()) {
      for (let crashAt = 1; crashAt <= steps; crashAt++) {
        const { disk, arm } = crashableSimDisk(new Prng(crashAt * 3 + m), mode);
        await writeWithoutIndexes(disk, written);
        arm(crashAt);
        await expect(CommitLog.open({ fs: disk.mount(), dir, segmentBytesMax })).rejects.toThrow(/crashed/);
        arm(undefined);
        const { log: reopened } = await CommitLog.open({ fs: disk.mount(), dir, segmentBytesMax });
        expect(await readAll(reopened)).toEqual(written);
        await expectIndexesOfSealedSegments(disk, reopened);
        await reopened.close();
        const { log: again, report: againReport } = await CommitLog.open({ fs: disk.mount(), dir, segmentBytesMax });
        expect(againReport.segmentsFromIndex).toBe(again.segments().length - 1);
        expect(await readAll(again)).toEqual(written);
        await again.close();
      }
    }
  });

  it('a crash at any operation of retention keeps the log and its indexes consistent', async () => {
    const written = entries(1, 120, 1);
    await crashAtEveryOperation({
      setup: (log) => log.append(written, { sync: true }),
      step: async (log) => { await log.deletePrefix(70); },
      before: written, after: written, acknowledgedThrough: written.length,
    });
  });

  it('keeps every synced entry and consistent indexes under random appends, truncations, retention, resets and crashes', async () => {
    await fc.assert(fc.asyncProperty(fc.integer(), fc.array(fc.nat(99), { minLength: 5, maxLength: 30 }), async (seed, draws) => {
      const disk = new SimDisk(new Prng(seed));
      let { log } = await CommitLog.open({ fs: disk, dir, segmentBytesMax });
      let model: Entry[] = [];
      let base = 0;
      let durable = 0;
      let term = 1;
      for (const draw of draws) {
        const last = base + model.length;
        if (draw < 55) {
          if (draw % 3 === 0) term++;
          const batch = entries(last + 1, last + 1 + (draw % 13), term, 1_000_000);
          await log.append(batch, { sync: draw % 2 === 0 });
          model = [...model, ...batch];
          if (draw % 2 === 0) durable = base + model.length;
        } else if (draw < 70 && model.length > 0) {
          const from = Math.max(base + 1, last - (draw % 25));
          await log.truncateSuffix(from);
          model = model.slice(0, from - base - 1);
          durable = Math.min(durable, from - 1);
        } else if (draw < 78) {
          const first = await log.deletePrefix(last - (draw % 30));
          model = model.slice(first - base - 1);
          base = first - 1;
        } else if (draw < 82) {
          await log.resetTo(last + (draw % 5), term);
          base = last + (draw % 5);
          model = [];
          durable = base;
        } else {
          disk.crash({ keepSomeUnsynced: draw % 2 === 0, tear: draw % 4 === 0 });
          ({ log } = await CommitLog.open({ fs: disk, dir, segmentBytesMax }));
          const recovered = await readAll(log);
          expect(log.firstIndex).toBe(base + 1);
          expect(base + recovered.length).toBeGreaterThanOrEqual(durable);
          expect(recovered).toEqual(model.slice(0, recovered.length));
          model = recovered;
          durable = base + model.length;
          term = Math.max(term, log.lastTerm);
        }
        await expectIndexesOfSealedSegments(disk, log);
      }
      const expected = await observe(log);
      await log.close();
      const { log: reopened, report } = await CommitLog.open({ fs: disk, dir, segmentBytesMax });
      expect(report.segmentsFromIndex).toBe(Math.max(0, reopened.segments().length - 1));
      expect(await observe(reopened)).toEqual(expected);
      await reopened.close();
    }), { numRuns: 60 });
  });
});

/** A log of `written` whose index files are removed, as an old log without indexes. */
async function writeWithoutIndexes(disk: SimDisk, written: Entry[]): Promise<void> {
  const { log } = await CommitLog.open({ fs: disk.mount(), dir, segmentBytesMax });
  await log.append(written, { sync: true });
  await log.close();
  for (const name of await disk.list(dir)) if (segmentOfIndexFileName(name) !== undefined) await disk.remove(path.join(dir, name));
  await disk.syncDir(dir);
}
