import * as path from 'node:path';
import type { FileSystem } from '../commitlog/file-system.js';

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
