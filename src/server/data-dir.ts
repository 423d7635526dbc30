import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { FileSystem } from '../commitlog/file-system.js';
import { LevelStableStore } from './level-stable-store.js';

interface Identity {
  readonly format: 1;
  readonly groupId: string;
  readonly nodeId: string;
}

/**
 * Every data directory records which group and node it belongs to, so starting a node on
 * another node's or another group's data fails with a clear error instead of mixing logs.
 */
export async function claimDataDir(fs: FileSystem, dataDir: string, groupId: string, nodeId: string): Promise<void> {
  await fs.mkdirp(dataDir);
  const file = path.join(dataDir, 'identity.json');
  const raw = await fs.readFile(file);
  if (raw === undefined) {
    const entries = (await fs.list(dataDir)).filter((name) => !name.endsWith('.tmp'));
    if (entries.length > 0) throw new Error(`data directory ${dataDir} is not empty but has no identity.json; refusing to use it`);
    const identity: Identity = { format: 1, groupId, nodeId };
    await fs.writeFileAtomic(file, new TextEncoder().encode(`${JSON.stringify(identity)}\n`));
    return;
  }
  let identity: Identity;
  try {
    identity = JSON.parse(new TextDecoder().decode(raw)) as Identity;
  } catch {
    throw new Error(`data directory ${dataDir}: identity.json is unreadable`);
  }
  if (identity.groupId !== groupId || identity.nodeId !== nodeId) {
    throw new Error(`data directory ${dataDir} belongs to group ${identity.groupId} node ${identity.nodeId}, not group ${groupId} node ${nodeId}`);
  }
}

/**
 * Repair from peers (`raftmq repair`): moves this node's log, snapshots and derived files
 * (consume queues, dedup records, timers) aside (to
 * `<name>.damaged-<time>`, for forensics; delete them when done) and keeps its identity and
 * its term, vote and synced-through mark. Started again, the node has an empty log shorter
 * than its mark, so it abstains from elections until a leader has brought it back (by
 * InstallSnapshot and the log) past everything it may have acknowledged: no acknowledged
 * entry can be lost by the wipe. Refuses a directory that is not a node's, or one in use.
 */
export async function repairDataDir(dataDir: string, nowMs: number, isInUse: () => Promise<boolean>): Promise<string[]> {
  const raw = await fsp.readFile(path.join(dataDir, 'identity.json')).catch(() => undefined);
  if (raw === undefined) throw new Error(`${dataDir} is not a RaftMQ node's data directory (no identity.json)`);
  if (await isInUse()) throw new Error(`the node using ${dataDir} is running: stop it first`);
  const moved: string[] = [];
  const stamp = new Date(nowMs).toISOString().replace(/[:.]/g, '-');
  for (const name of ['log', 'snapshots', 'queues', 'dedup', 'timers']) {
    const from = path.join(dataDir, name);
    if (!(await fsp.stat(from).catch(() => undefined))?.isDirectory()) continue;
    const to = path.join(dataDir, `${name}.damaged-${stamp}`);
    await fsp.rename(from, to);
    moved.push(to);
  }
  const dir = await fsp.open(dataDir, 'r');
  try {
    await dir.sync(); // the renames are durable before the node starts again
  } finally {
    await dir.close();
  }
  return moved;
}

/** Whether a process holds the node's stable store open (LevelDB's lock on `meta/`). */
export async function dataDirInUse(dataDir: string): Promise<boolean> {
  try {
    await (await LevelStableStore.open(path.join(dataDir, 'meta'))).close();
    return false;
  } catch (error) {
    return /lock/i.test(String((error as Error).cause ?? error));
  }
}
