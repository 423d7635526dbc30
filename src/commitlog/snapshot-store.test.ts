/**
 * FileSnapshotStore on the real disk and on SimDisk (one conformance suite for both), then
 * SimDisk-only properties: any single bit flip or truncation is detected and loading falls
 * back to the previous snapshot, and a crash at any disk operation of `save` or of a receive
 * reopens with the old or the new snapshot loadable and no temporary file left.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { NodeFileSystem, type FileSystem } from './file-system.js';
import { FileSnapshotStore, SnapshotCorruptError, encodeSnapshotFile, parseSnapshotFile, snapshotFileName, snapshotOverheadBytes } from './snapshot-store.js';
import type { Logger, SnapshotMeta, StoredSnapshot } from '../raft/node/ports.js';
import { SimDisk, crashableSimDisk, simCrashModes, type SimCrashMode } from '../testing/sim-disk.js';
import { Prng } from '../testing/prng.js';

const members = [{ id: 'n1', address: '127.0.0.1:7001' }, { id: 'n2', address: '127.0.0.1:7002' }, { id: 'n3', address: '127.0.0.1:7003' }];
const metaAt = (index: number, term = 2): SnapshotMeta => ({ index, term, configIndex: Math.min(index, 1), members });
const stateFor = (index: number, bytes = 200): Uint8Array => {
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) out[i] = (index * 131 + i * 7) & 0xff;
  return out;
};

interface Warning { readonly fields: Record<string, unknown>; readonly message: string }
function recordingLogger(): Logger & { warnings: Warning[] } {
  const warnings: Warning[] = [];
  return { warnings, debug() {}, info() {}, warn(fields, message) { warnings.push({ fields: fields as Record<string, unknown>, message }); }, error() {} };
}

/** Streams `snapshot` from `from` into `to` in chunks of `chunkBytes`. */
async function transfer(from: FileSnapshotStore, snapshot: StoredSnapshot, to: FileSnapshotStore, chunkBytes: number) {
  const receiver = to.receive(snapshot.meta, snapshot.fileBytes);
  for (let offset = 0; offset < snapshot.fileBytes; offset += chunkBytes) {
    await receiver.write(offset, await from.readFileChunk(snapshot, offset, chunkBytes));
  }
  return receiver.finish();
}

interface Fixture {
  readonly fs: FileSystem;
  readonly dir: string;
  /** Cuts the last `bytes` bytes of a file (synced data lost). */
  truncate(file: string, bytes: number): Promise<void>;
  flipBit(file: string, byteOffset: number, bit: number): Promise<void>;
  /** Leaves a file behind as a crashed writer would. */
  plant(file: string, data: Uint8Array): Promise<void>;
}

function describeSnapshotStore(label: string, makeFixture: () => Promise<Fixture>): void {
  describe(`FileSnapshotStore on ${label}`, () => {
    it('loads nothing from an empty (even missing) directory', async () => {
      const f = await makeFixture();
      const store = await FileSnapshotStore.open({ fs: f.fs, dir: f.dir });
      expect(store.newest()).toBeUndefined();
      expect(await store.loadNewest()).toBeUndefined();
      expect(store.newest()).toBeUndefined();
    });

    it('saves and loads a snapshot back (round trip through a reopen)', async () => {
      const f = await makeFixture();
      const store = await FileSnapshotStore.open({ fs: f.fs, dir: f.dir });
      const saved = await store.save(metaAt(1234, 7), stateFor(1234));
      expect(saved).toEqual({ meta: metaAt(1234, 7), fileName: 'snapshot-00000000000000001234.snap', fileBytes: encodeSnapshotFile(metaAt(1234, 7), stateFor(1234)).length });
      expect(store.newest()).toEqual(saved);

      const reopened = await FileSnapshotStore.open({ fs: f.fs, dir: f.dir });
      expect(reopened.newest()).toBeUndefined(); // nothing verified before loadNewest
      const loaded = await reopened.loadNewest();
      expect(loaded?.snapshot).toEqual(saved);
      expect(loaded?.data).toEqual(stateFor(1234));
      expect(reopened.newest()).toEqual(saved);
    });

    it('round-trips an empty state and a large one', async () => {
      const f = await makeFixture();
      const store = await FileSnapshotStore.open({ fs: f.fs, dir: f.dir });
      await store.save(metaAt(1), new Uint8Array(0));
      expect((await (await FileSnapshotStore.open({ fs: f.fs, dir: f.dir })).loadNewest())?.data).toEqual(new Uint8Array(0));
      const big = stateFor(9, 3 * 1024 * 1024 + 17);
      await store.save(metaAt(9), big);
      const loaded = await (await FileSnapshotStore.open({ fs: f.fs, dir: f.dir })).loadNewest();
      expect(loaded?.snapshot.meta.index).toBe(9);
      expect(Buffer.from(loaded?.data ?? []).equals(Buffer.from(big))).toBe(true);
    });

    it('keeps only the newest retainCount snapshots', async () => {
      const f = await makeFixture();
      const store = await FileSnapshotStore.open({ fs: f.fs, dir: f.dir, retainCount: 2 });
      for (const index of [10, 20, 30, 40, 50]) await store.save(metaAt(index), stateFor(index));
      expect((await f.fs.list(f.dir)).sort()).toEqual([snapshotFileName(40), snapshotFileName(50)]);
      expect(store.newest()?.meta.index).toBe(50);
      const defaults = await FileSnapshotStore.open({ fs: f.fs, dir: f.dir });
      for (const index of [60, 70]) await defaults.save(metaAt(index), stateFor(index));
      expect((await f.fs.list(f.dir)).sort()).toEqual([50, 60, 70].map(snapshotFileName));
    });

    it('falls back to the previous snapshot, with a warning, when the newest is truncated', async () => {
      const f = await makeFixture();
      const store = await FileSnapshotStore.open({ fs: f.fs, dir: f.dir });
      await store.save(metaAt(10), stateFor(10));
      await store.save(metaAt(20), stateFor(20));
      await f.truncate(snapshotFileName(20), 5);
      const logger = recordingLogger();
      const loaded = await (await FileSnapshotStore.open({ fs: f.fs, dir: f.dir, logger })).loadNewest();
      expect(loaded?.snapshot.meta).toEqual(metaAt(10));
      expect(loaded?.data).toEqual(stateFor(10));
      expect(logger.warnings).toHaveLength(1);
      expect(logger.warnings[0]?.fields).toMatchObject({ file: snapshotFileName(20) });
      expect(String(logger.warnings[0]?.fields.problem)).toMatch(/truncated/);
    });

    it('falls back to the previous snapshot, with a warning, when the newest has a flipped bit', async () => {
      const f = await makeFixture();
      const store = await FileSnapshotStore.open({ fs: f.fs, dir: f.dir });
      await store.save(metaAt(10), stateFor(10));
      const newest = await store.save(metaAt(20), stateFor(20));
      await f.flipBit(snapshotFileName(20), newest.fileBytes - 60, 3);
      const logger = recordingLogger();
      const reopened = await FileSnapshotStore.open({ fs: f.fs, dir: f.dir, logger });
      const loaded = await reopened.loadNewest();
      expect(loaded?.snapshot.meta.index).toBe(10);
      expect(reopened.newest()?.meta.index).toBe(10);
      expect(logger.warnings.map((w) => w.fields.file)).toEqual([snapshotFileName(20)]);
      expect(String(logger.warnings[0]?.fields.problem)).toMatch(/checksum mismatch/);
      // The next save supersedes the damaged file: it is pruned, whatever its index.
      await reopened.save(metaAt(15), stateFor(15));
      expect((await f.fs.list(f.dir)).sort()).toEqual([snapshotFileName(10), snapshotFileName(15)]);
    });

    it('throws SnapshotCorruptError naming every file and its problem when all are damaged', async () => {
      const f = await makeFixture();
      const store = await FileSnapshotStore.open({ fs: f.fs, dir: f.dir });
      await store.save(metaAt(10), stateFor(10));
      await store.save(metaAt(20), stateFor(20));
      await f.flipBit(snapshotFileName(10), 100, 0);
      await f.truncate(snapshotFileName(20), 1);
      const reopened = await FileSnapshotStore.open({ fs: f.fs, dir: f.dir });
      const error = await reopened.loadNewest().then(() => undefined, (e: unknown) => e);
      expect(error).toBeInstanceOf(SnapshotCorruptError);
      const corrupt = error as SnapshotCorruptError;
      expect(corrupt.files).toEqual([snapshotFileName(20), snapshotFileName(10)]);
      expect(corrupt.message).toContain(`${snapshotFileName(20)}: truncated`);
      expect(corrupt.message).toContain(`${snapshotFileName(10)}: checksum mismatch`);
      expect(reopened.newest()).toBeUndefined();
    });

    it('reports an unparsable file (garbage under a snapshot name) and a renamed one', async () => {
      const f = await makeFixture();
      await f.plant(snapshotFileName(5), new TextEncoder().encode('not a snapshot at all, just some text long enough to pass the minimum size check'));
      await f.plant(snapshotFileName(6), encodeSnapshotFile(metaAt(4), stateFor(4)));
      const error = await (await FileSnapshotStore.open({ fs: f.fs, dir: f.dir })).loadNewest().then(() => undefined, (e: unknown) => e);
      expect(error).toBeInstanceOf(SnapshotCorruptError);
      expect((error as Error).message).toMatch(/snapshot-00000000000000000006\.snap: the file name says index 6 but the header says 4/);
      expect((error as Error).message).toMatch(/snapshot-00000000000000000005\.snap: bad magic/);
    });

    it('deletes leftover temporary files at open and ignores unrelated files', async () => {
      const f = await makeFixture();
      const store = await FileSnapshotStore.open({ fs: f.fs, dir: f.dir });
      await store.save(metaAt(10), stateFor(10));
      await f.plant(`${snapshotFileName(20)}.tmp`, stateFor(20));
      await f.plant(`${snapshotFileName(30)}.1.receive.tmp`, stateFor(30));
      await f.plant('README', stateFor(1));
      const reopened = await FileSnapshotStore.open({ fs: f.fs, dir: f.dir });
      expect((await f.fs.list(f.dir)).sort()).toEqual(['README', snapshotFileName(10)]);
      expect((await reopened.loadNewest())?.snapshot.meta.index).toBe(10);
    });

    it('streams a snapshot in chunks to another store, which receives an identical file', async () => {
      const leader = await makeFixture();
      const follower = await makeFixture();
      const from = await FileSnapshotStore.open({ fs: leader.fs, dir: leader.dir });
      const to = await FileSnapshotStore.open({ fs: follower.fs, dir: follower.dir });
      const sent = await from.save(metaAt(500, 4), stateFor(500, 5000));
      const { snapshot, data } = await transfer(from, sent, to, 777);
      expect(snapshot).toEqual(sent);
      expect(data).toEqual(stateFor(500, 5000));
      expect(to.newest()).toEqual(sent);
      expect(await follower.fs.readFile(path.join(follower.dir, sent.fileName))).toEqual(await leader.fs.readFile(path.join(leader.dir, sent.fileName)));
      expect(await follower.fs.list(follower.dir)).toEqual([sent.fileName]);
      const loaded = await (await FileSnapshotStore.open({ fs: follower.fs, dir: follower.dir })).loadNewest();
      expect(loaded?.snapshot).toEqual(sent);
    });

    it('refuses an out-of-order chunk and an oversize one, naming the offsets, and can still finish', async () => {
      const f = await makeFixture();
      const store = await FileSnapshotStore.open({ fs: f.fs, dir: f.dir });
      const file = encodeSnapshotFile(metaAt(30), stateFor(30));
      const receiver = store.receive(metaAt(30), file.length);
      await receiver.write(0, file.subarray(0, 10));
      await expect(receiver.write(20, file.subarray(20, 30))).rejects.toThrow(/offset 20 is out of order: expected offset 10/);
      await expect(receiver.write(0, file.subarray(0, 10))).rejects.toThrow(/expected offset 10/);
      await expect(receiver.write(10, new Uint8Array(file.length))).rejects.toThrow(new RegExp(`more than the announced ${file.length}`));
      await receiver.write(10, file.subarray(10));
      expect((await receiver.finish()).data).toEqual(stateFor(30));
      await expect(receiver.write(file.length, new Uint8Array(1))).rejects.toThrow(/the receive is finished/);
    });

    it('refuses to finish a short file, a damaged one and one whose metadata differs, leaving no file', async () => {
      const f = await makeFixture();
      const store = await FileSnapshotStore.open({ fs: f.fs, dir: f.dir });
      await store.save(metaAt(10), stateFor(10));
      const file = encodeSnapshotFile(metaAt(30), stateFor(30));

      const short = store.receive(metaAt(30), file.length);
      await short.write(0, file.subarray(0, 50));
      await expect(short.finish()).rejects.toThrow(new RegExp(`received 50 of the announced ${file.length} bytes`));

      const damaged = file.slice();
      damaged[100] = (damaged[100] as number) ^ 0x10;
      const bad = store.receive(metaAt(30), file.length);
      await bad.write(0, damaged);
      const error = await bad.finish().then(() => undefined, (e: unknown) => e);
      expect(error).toBeInstanceOf(SnapshotCorruptError);
      expect((error as Error).message).toMatch(/checksum mismatch/);

      const wrongTerm = store.receive(metaAt(30, 3), file.length);
      await wrongTerm.write(0, file);
      await expect(wrongTerm.finish()).rejects.toThrow(/metadata does not match.*term 2, expected 3/);

      const otherMembers = store.receive({ ...metaAt(30), members: members.slice(0, 2) }, file.length);
      await otherMembers.write(0, file);
      await expect(otherMembers.finish()).rejects.toThrow(/metadata does not match.*members/);

      const wrongIndex = store.receive(metaAt(31), file.length);
      await wrongIndex.write(0, file);
      await expect(wrongIndex.finish()).rejects.toThrow(/index 30, expected 31/);

      expect(await f.fs.list(f.dir)).toEqual([snapshotFileName(10)]);
      expect(store.newest()?.meta.index).toBe(10);
      expect(() => store.receive(metaAt(30), 3)).toThrow(/cannot be a snapshot file/);
    });

    it('abort removes the temporary file', async () => {
      const f = await makeFixture();
      const store = await FileSnapshotStore.open({ fs: f.fs, dir: f.dir });
      const file = encodeSnapshotFile(metaAt(30), stateFor(30));
      const receiver = store.receive(metaAt(30), file.length);
      await receiver.write(0, file.subarray(0, 40));
      expect((await f.fs.list(f.dir)).some((name) => name.endsWith('.tmp'))).toBe(true);
      await receiver.abort();
      await receiver.abort();
      expect(await f.fs.list(f.dir)).toEqual([]);
      await expect(receiver.finish()).rejects.toThrow(/aborted/);
    });

    it('a received snapshot with the index of a stored one replaces it', async () => {
      const f = await makeFixture();
      const store = await FileSnapshotStore.open({ fs: f.fs, dir: f.dir });
      await store.save(metaAt(10), stateFor(10));
      const old = await store.save(metaAt(30, 2), stateFor(30));
      const file = encodeSnapshotFile(metaAt(30, 5), stateFor(31, 300));
      const receiver = store.receive(metaAt(30, 5), file.length);
      await receiver.write(0, file);
      const { snapshot } = await receiver.finish();
      expect(store.newest()).toEqual(snapshot);
      expect(snapshot.meta.term).toBe(5);
      await expect(store.readFileChunk(old, 0, 10)).rejects.toThrow(/no longer stored.*pruned or replaced/);
      expect((await f.fs.list(f.dir)).sort()).toEqual([snapshotFileName(10), snapshotFileName(30)]);
      const loaded = await (await FileSnapshotStore.open({ fs: f.fs, dir: f.dir })).loadNewest();
      expect(loaded?.snapshot.meta).toEqual(metaAt(30, 5));
      expect(loaded?.data).toEqual(stateFor(31, 300));
    });

    it('readFileChunk returns the raw file, short at its end, and refuses a pruned snapshot', async () => {
      const f = await makeFixture();
      const store = await FileSnapshotStore.open({ fs: f.fs, dir: f.dir, retainCount: 1 });
      const first = await store.save(metaAt(10), stateFor(10));
      const file = encodeSnapshotFile(metaAt(10), stateFor(10));
      expect(await store.readFileChunk(first, 0, file.length)).toEqual(file);
      expect(await store.readFileChunk(first, file.length - 4, 100)).toEqual(file.subarray(file.length - 4));
      expect(await store.readFileChunk(first, file.length, 100)).toEqual(new Uint8Array(0));
      await expect(store.readFileChunk(first, file.length + 1, 1)).rejects.toThrow(/outside/);
      await store.save(metaAt(20), stateFor(20));
      await expect(store.readFileChunk(first, 0, 10)).rejects.toThrow(/snapshot-00000000000000000010\.snap .* no longer stored/);
    });

    it('rejects invalid metadata and options before writing anything', async () => {
      const f = await makeFixture();
      await expect(FileSnapshotStore.open({ fs: f.fs, dir: f.dir, retainCount: 0 })).rejects.toThrow(/retainCount/);
      const store = await FileSnapshotStore.open({ fs: f.fs, dir: f.dir });
      await expect(async () => store.save({ ...metaAt(10), configIndex: 11 }, stateFor(1))).rejects.toThrow(/configIndex 11 is after index 10/);
      await expect(async () => store.save({ ...metaAt(10), term: 0 }, stateFor(1))).rejects.toThrow(/term 0/);
      expect(await f.fs.list(f.dir)).toEqual([]);
    });
  });
}

const tempDirs: string[] = [];
afterAll(async () => {
  for (const dir of tempDirs) await fs.rm(dir, { recursive: true, force: true });
});

describeSnapshotStore('the real disk', async () => {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'raftmq-snapshots-'));
  tempDirs.push(root);
  const dir = path.join(root, 'snapshots');
  return {
    fs: new NodeFileSystem(),
    dir,
    async truncate(file, bytes) {
      const full = path.join(dir, file);
      await fs.truncate(full, Math.max(0, (await fs.stat(full)).size - bytes));
    },
    async flipBit(file, byteOffset, bit) {
      const full = path.join(dir, file);
      const bytes = await fs.readFile(full);
      bytes[byteOffset] = (bytes[byteOffset] as number) ^ (1 << bit);
      await fs.writeFile(full, bytes);
    },
    async plant(file, data) {
      await fs.mkdir(dir, { recursive: true });
      await fs.writeFile(path.join(dir, file), data);
    },
  };
});

describeSnapshotStore('SimDisk', () => {
  const disk = new SimDisk(new Prng(1));
  const dir = '/snapshots';
  return Promise.resolve({
    fs: disk,
    dir,
    truncate: (file, bytes) => Promise.resolve(disk.truncateDurable(path.join(dir, file), bytes)),
    flipBit: (file, byteOffset, bit) => Promise.resolve(disk.flipBit(path.join(dir, file), byteOffset, bit)),
    async plant(file, data) {
      const handle = await disk.open(path.join(dir, file), { create: true });
      await handle.write(data, 0);
      await handle.datasync();
      await handle.close();
      await disk.syncDir(dir);
    },
  });
});

describe('FileSnapshotStore damage detection (properties on SimDisk)', () => {
  const dir = '/snapshots';

  async function twoSnapshots(seed: number, bytes: number) {
    const disk = new SimDisk(new Prng(seed));
    const store = await FileSnapshotStore.open({ fs: disk, dir });
    await store.save(metaAt(10), stateFor(10, bytes));
    const newest = await store.save(metaAt(20), stateFor(20, bytes));
    return { disk, newest };
  }

  it('any single bit flip anywhere in the newest file is detected and loading falls back to the previous', async () => {
    await fc.assert(fc.asyncProperty(fc.integer({ min: 0, max: 300 }), fc.nat(), fc.integer({ min: 0, max: 7 }), async (bytes, where, bit) => {
      const { disk, newest } = await twoSnapshots(bytes, bytes);
      const offset = where % newest.fileBytes;
      disk.flipBit(path.join(dir, newest.fileName), offset, bit);
      const logger = recordingLogger();
      const loaded = await (await FileSnapshotStore.open({ fs: disk, dir, logger })).loadNewest();
      expect(loaded?.snapshot.meta).toEqual(metaAt(10));
      expect(loaded?.data).toEqual(stateFor(10, bytes));
      expect(logger.warnings.map((w) => w.fields.file)).toEqual([newest.fileName]);
    }), { numRuns: 300 });
  });

  it('any truncation of the newest file is detected and loading falls back to the previous', async () => {
    await fc.assert(fc.asyncProperty(fc.integer({ min: 0, max: 300 }), fc.nat(), async (bytes, cut) => {
      const { disk, newest } = await twoSnapshots(bytes, bytes);
      disk.truncateDurable(path.join(dir, newest.fileName), 1 + (cut % newest.fileBytes));
      const loaded = await (await FileSnapshotStore.open({ fs: disk, dir })).loadNewest();
      expect(loaded?.snapshot.meta).toEqual(metaAt(10));
    }), { numRuns: 200 });
  });

  it('parse(encode(meta, data)) is the identity, and every proper prefix is refused', () => {
    const memberArb = fc.record({ id: fc.string({ maxLength: 12 }), address: fc.string({ maxLength: 30 }) });
    fc.assert(fc.property(
      fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), fc.array(memberArb, { maxLength: 7 }), fc.uint8Array({ maxLength: 400 }), fc.nat(),
      (index, term, someMembers, data, cut) => {
        const meta: SnapshotMeta = { index, term, configIndex: cut % (index + 1), members: someMembers };
        const file = encodeSnapshotFile(meta, data);
        expect(file.length).toBe(snapshotOverheadBytes + new TextEncoder().encode(JSON.stringify(someMembers)).length + data.length);
        const parsed = parseSnapshotFile(file, index);
        expect(parsed).toEqual({ ok: true, meta, data });
        expect(parseSnapshotFile(file.subarray(0, cut % file.length)).ok).toBe(false);
      },
    ));
  });

  it('streaming in chunks of any sizes reproduces the sent file', async () => {
    await fc.assert(fc.asyncProperty(fc.integer({ min: 0, max: 2000 }), fc.array(fc.integer({ min: 1, max: 600 }), { minLength: 1, maxLength: 20 }), async (bytes, sizes) => {
      const from = await FileSnapshotStore.open({ fs: new SimDisk(new Prng(1)), dir });
      const sent = await from.save(metaAt(77, 3), stateFor(77, bytes));
      const toDisk = new SimDisk(new Prng(2));
      const to = await FileSnapshotStore.open({ fs: toDisk, dir });
      const receiver = to.receive(sent.meta, sent.fileBytes);
      let offset = 0;
      for (let i = 0; offset < sent.fileBytes; i++) {
        const chunk = await from.readFileChunk(sent, offset, sizes[i % sizes.length] as number);
        await receiver.write(offset, chunk);
        offset += chunk.length;
      }
      const { snapshot, data } = await receiver.finish();
      expect(snapshot).toEqual(sent);
      expect(data).toEqual(stateFor(77, bytes));
      expect(await toDisk.readFile(path.join(dir, sent.fileName))).toEqual(encodeSnapshotFile(metaAt(77, 3), stateFor(77, bytes)));
    }), { numRuns: 100 });
  });
});

describe('FileSnapshotStore crash safety on SimDisk', () => {
  const dir = '/snapshots';
  const crashModes = simCrashModes;

  const crashableDisk = (seed: number, mode: SimCrashMode) => crashableSimDisk(new Prng(seed), mode);


  /** The store of a fresh incarnation after the crash: never a temporary file, old or new snapshot. */
  async function reopen(disk: SimDisk): Promise<'old' | 'new'> {
    const store = await FileSnapshotStore.open({ fs: disk.mount(), dir, retainCount: 2 });
    expect((await disk.list(dir)).filter((name) => name.endsWith('.tmp'))).toEqual([]);
    const loaded = await store.loadNewest();
    expect(loaded).toBeDefined();
    if (loaded?.snapshot.meta.index === 30) {
      expect(loaded.data).toEqual(stateFor(30, 2000));
      return 'new';
    }
    expect(loaded?.snapshot.meta).toEqual(metaAt(20));
    expect(loaded?.data).toEqual(stateFor(20));
    return 'old';
  }

  async function oldStore(disk: SimDisk): Promise<FileSnapshotStore> {
    const store = await FileSnapshotStore.open({ fs: disk.mount(), dir, retainCount: 2 });
    await store.save(metaAt(10), stateFor(10));
    await store.save(metaAt(20), stateFor(20));
    return store;
  }

  it('a crash at any disk operation of save leaves the previous snapshot (or the new one) loadable and no tmp', async () => {
    const probe = crashableDisk(0, crashModes[0]);
    const probeStore = await oldStore(probe.disk);
    probe.arm(undefined);
    await probeStore.save(metaAt(30), stateFor(30, 2000));
    const steps = probe.operations();
    expect(steps).toBeGreaterThanOrEqual(3); // write atomically, remove the oldest, sync the directory

    for (const [m, mode] of crashModes.entries()) {
      const outcomes: string[] = [];
      for (let crashAt = 1; crashAt <= steps + 1; crashAt++) {
        const { disk, arm } = crashableDisk(crashAt * 7 + m, mode);
        const store = await oldStore(disk);
        arm(crashAt);
        const result = await store.save(metaAt(30), stateFor(30, 2000)).then(() => 'done', (error: unknown) => error);
        if (crashAt <= steps) expect(String(result)).toMatch(/crashed/);
        else {
          expect(result).toBe('done');
          arm(undefined);
          disk.crash(mode);
        }
        outcomes.push(await reopen(disk));
      }
      // Old until the atomic write ran (the first operation), new from then on.
      expect(outcomes).toEqual(outcomes.map((_, i) => (i === 0 ? 'old' : 'new')));
    }
  });

  it('a crash at any disk operation of a receive leaves the previous snapshot (or the new one) loadable and no tmp', async () => {
    const file = encodeSnapshotFile(metaAt(30), stateFor(30, 2000));
    const chunk = 512;
    const receiveAll = async (store: FileSnapshotStore): Promise<void> => {
      const receiver = store.receive(metaAt(30), file.length);
      for (let offset = 0; offset < file.length; offset += chunk) await receiver.write(offset, file.subarray(offset, offset + chunk));
      await receiver.finish();
    };
    const probe = crashableDisk(0, crashModes[0]);
    const probeStore = await oldStore(probe.disk);
    probe.arm(undefined);
    await receiveAll(probeStore);
    const steps = probe.operations();
    expect(steps).toBeGreaterThan(8);

    for (const [m, mode] of crashModes.entries()) {
      const outcomes: string[] = [];
      for (let crashAt = 1; crashAt <= steps + 1; crashAt++) {
        const { disk, arm } = crashableDisk(crashAt * 11 + m, mode);
        const store = await oldStore(disk);
        arm(crashAt);
        const result = await receiveAll(store).then(() => 'done', (error: unknown) => error);
        // The last step, deleting the temporary file, is best effort: a crash there still reports success.
        if (crashAt < steps) expect(String(result)).toMatch(/crashed/);
        else expect(result).toBe('done');
        arm(undefined);
        if (crashAt > steps) disk.crash(mode);
        const outcome = await reopen(disk);
        if (result === 'done') expect(outcome).toBe('new');
        outcomes.push(outcome);
      }
      // Old until the atomic write of the verified file ran, new from then on.
      const firstNew = outcomes.indexOf('new');
      expect(firstNew).toBeGreaterThan(0);
      expect(outcomes).toEqual(outcomes.map((_, i) => (i < firstNew ? 'old' : 'new')));
    }
  });

  it('a durable leftover tmp from a crashed incarnation is deleted at open, durably', async () => {
    const disk = new SimDisk(new Prng(3));
    const store = await FileSnapshotStore.open({ fs: disk.mount(), dir });
    await store.save(metaAt(10), stateFor(10));
    const handle = await disk.open(path.join(dir, `${snapshotFileName(20)}.tmp`), { create: true });
    await handle.write(stateFor(20), 0);
    await handle.datasync();
    await disk.syncDir(dir);
    disk.crash({ keepSomeUnsynced: true, tear: true });
    await FileSnapshotStore.open({ fs: disk.mount(), dir });
    disk.crash({ keepSomeUnsynced: true, tear: true });
    expect(await disk.list(dir)).toEqual([snapshotFileName(10)]);
  });

  it('pruning is durable: a crash after save does not bring back pruned snapshots', async () => {
    const disk = new SimDisk(new Prng(4));
    const store = await FileSnapshotStore.open({ fs: disk.mount(), dir, retainCount: 1 });
    for (const index of [10, 20, 30]) await store.save(metaAt(index), stateFor(index));
    disk.crash({ keepSomeUnsynced: false, tear: false });
    expect(await disk.list(dir)).toEqual([snapshotFileName(30)]);
  });
});
