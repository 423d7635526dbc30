import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { dataDirInUse, repairDataDir } from './data-dir.js';
import { LevelStableStore } from './level-stable-store.js';

const dirs: string[] = [];
afterEach(async () => { for (const dir of dirs.splice(0)) await fs.rm(dir, { recursive: true, force: true }); });

async function nodeDir(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'raftmq-repair-'));
  dirs.push(dir);
  await fs.writeFile(path.join(dir, 'identity.json'), '{"format":1,"groupId":"g","nodeId":"n1"}\n');
  await fs.mkdir(path.join(dir, 'log'));
  await fs.writeFile(path.join(dir, 'log', '00000000000000000001.seg'), 'damaged');
  await fs.mkdir(path.join(dir, 'snapshots'));
  const store = await LevelStableStore.open(path.join(dir, 'meta'));
  await store.save({ term: 7, votedFor: 'n2', syncedThrough: 42 });
  await store.close();
  return dir;
}

const inUse = (dir: string) => (): Promise<boolean> => dataDirInUse(dir);

describe('raftmq repair', () => {
  it('moves the log and snapshots aside and keeps term, vote and the synced-through mark (so the node abstains until restored)', async () => {
    const dir = await nodeDir();
    const moved = await repairDataDir(dir, Date.UTC(2026, 11, 1), inUse(dir));
    expect(moved.map((p) => path.basename(p))).toEqual(['log.damaged-2026-12-01T00-00-00-000Z', 'snapshots.damaged-2026-12-01T00-00-00-000Z']);
    expect((await fs.readdir(dir)).sort()).toEqual(['identity.json', 'log.damaged-2026-12-01T00-00-00-000Z', 'meta', 'snapshots.damaged-2026-12-01T00-00-00-000Z']);
    const store = await LevelStableStore.open(path.join(dir, 'meta'));
    expect(await store.load()).toEqual({ term: 7, votedFor: 'n2', syncedThrough: 42 });
    await store.close();
  });

  it('also moves the derived files (queues, dedup records, timers) aside: a restored node rebuilds them', async () => {
    const dir = await nodeDir();
    for (const name of ['queues', 'dedup', 'timers']) await fs.mkdir(path.join(dir, name));
    const moved = await repairDataDir(dir, Date.UTC(2026, 11, 1), inUse(dir));
    expect(moved.map((p) => path.basename(p).split('.')[0]).sort()).toEqual(['dedup', 'log', 'queues', 'snapshots', 'timers']);
    expect((await fs.readdir(dir)).filter((name) => !name.includes('.damaged-')).sort()).toEqual(['identity.json', 'meta']);
  });

  it('refuses while the node is running, and a directory that is not a node\'s', async () => {
    const dir = await nodeDir();
    const running = await LevelStableStore.open(path.join(dir, 'meta'));
    await expect(repairDataDir(dir, 0, inUse(dir))).rejects.toThrow(/is running: stop it first/);
    await running.close();
    expect(await fs.readdir(path.join(dir, 'log'))).toEqual(['00000000000000000001.seg']);
    const stranger = await fs.mkdtemp(path.join(os.tmpdir(), 'raftmq-repair-'));
    dirs.push(stranger);
    await expect(repairDataDir(stranger, 0, inUse(stranger))).rejects.toThrow(/not a RaftMQ node's data directory/);
  });
});
