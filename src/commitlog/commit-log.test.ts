/**
 * CommitLog behaviour on the real disk and on SimDisk (one conformance suite for both), then
 * crash properties on SimDisk: every entry appended with `sync: true` and not truncated
 * survives any crash, torn tails are cut and reported, and corruption of durable data stops
 * recovery with an error naming the file and offset.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CommitLog } from './commit-log.js';
import { CorruptLogError } from './errors.js';
import { NodeFileSystem, type FileSystem } from './file-system.js';
import { decodeRecord, encodeRecord, recordBytes } from './record-codec.js';
import { EntryKind, type Entry } from '../raft/types.js';
import { SimDisk } from '../testing/sim-disk.js';
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
    | { readonly op: 'crash'; readonly keepSome: boolean; readonly tear: boolean };
  const command: fc.Arbitrary<Command> = fc.oneof(
    { weight: 5, arbitrary: fc.record({ op: fc.constant('append' as const), count: fc.integer({ min: 1, max: 12 }), termBump: fc.boolean(), sync: fc.boolean(), bytes: fc.integer({ min: 0, max: 90 }) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('truncate' as const), back: fc.integer({ min: 0, max: 10 }) }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('crash' as const), keepSome: fc.boolean(), tear: fc.boolean() }) },
  );

  it('keeps every synced entry and returns a prefix-consistent log after any crash', async () => {
    await fc.assert(fc.asyncProperty(fc.integer(), fc.array(command, { maxLength: 40 }), async (seed, commands) => {
      const disk = new SimDisk(new Prng(seed));
      const options = { fs: disk, dir: '/log', segmentBytesMax: 600 };
      let { log } = await CommitLog.open(options);
      // model[i] is the entry at index i + 1 as last written; durableThrough covers what was
      // acknowledged with sync and not truncated since.
      let model: Entry[] = [];
      let durableThrough = 0;
      let term = 1;
      for (const step of commands) {
        if (step.op === 'append') {
          if (step.termBump) term++;
          const batch = range(model.length + 1, model.length + step.count, term, step.bytes);
          await log.append(batch, { sync: step.sync });
          model = [...model, ...batch];
          if (step.sync) durableThrough = model.length;
        } else if (step.op === 'truncate') {
          const from = Math.max(1, model.length - step.back);
          if (from > model.length) continue;
          await log.truncateSuffix(from);
          model = model.slice(0, from - 1);
          durableThrough = Math.min(durableThrough, model.length);
        } else {
          disk.crash({ keepSomeUnsynced: step.keepSome, tear: step.tear });
          const reopened = await CommitLog.open(options);
          log = reopened.log;
          const recovered = await readAll(log);
          expect(recovered.length).toBeGreaterThanOrEqual(durableThrough);
          expect(recovered).toEqual(model.slice(0, recovered.length));
          model = recovered;
          durableThrough = recovered.length;
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

  it('stops with an error naming file and offset when durable data is corrupt', async () => {
    const disk = new SimDisk(new Prng(3));
    const { log } = await CommitLog.open({ fs: disk, dir: '/log', segmentBytesMax: 400 });
    await log.append(range(1, 40, 1), { sync: true });
    await log.close();
    const first = disk.fileNames().sort()[0] as string;
    disk.flipBit(first, 100, 3);
    const error = await CommitLog.open({ fs: disk, dir: '/log', segmentBytesMax: 400 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CorruptLogError);
    expect((error as CorruptLogError).file).toBe(path.basename(first));
    expect((error as CorruptLogError).offset).toBeGreaterThan(0);
    expect(String((error as Error).message)).toMatch(/corrupt.*\.seg at byte/);
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
