/**
 * The README's promise: `raftmq dev` (what `npm start` runs) brings up a 3-node group with data
 * on disk, prints the endpoints and the leader, answers `raftmq status`, and stops every node
 * cleanly on Ctrl-C (SIGINT).
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { expect, it } from 'vitest';
import { cliPath, freeConsecutivePorts, waitFor } from '../support/process-cluster.js';

it('raftmq dev starts a 3-node group with data on disk and stops cleanly on SIGINT', async () => {
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'raftmq-dev-'));
  const basePort = await freeConsecutivePorts(3);
  const dev = spawn(process.execPath, [cliPath, 'dev', '--data', dataDir, '--base-port', String(basePort)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  dev.stdout.on('data', (chunk: Buffer) => { output += chunk.toString(); });
  dev.stderr.on('data', (chunk: Buffer) => { output += chunk.toString(); });
  try {
    await waitFor('the dev group to report its leader', () => /leader \(term \d+\)/.test(output), 20_000);
    expect(output).toMatch(/3-node Raft group "dev" up \(SYNC_FLUSH\)/);
    const nodes = [0, 1, 2].map((i) => `127.0.0.1:${basePort + i}`).join(',');
    const status = spawnSync(process.execPath, [cliPath, 'status', '--nodes', nodes, '--json'], { encoding: 'utf8' });
    expect(status.status).toBe(0);
    const report = JSON.parse(status.stdout) as { nodes: Array<{ role: string; pid: number }> };
    expect(report.nodes.filter((n) => n.role === 'leader').length).toBe(1);
    expect(report.nodes.every((n) => n.pid > 0)).toBe(true);
    expect((await fs.readdir(dataDir)).sort()).toEqual(['n1', 'n2', 'n3']);
    const exited = new Promise<number | null>((resolve) => dev.once('exit', resolve));
    dev.kill('SIGINT');
    expect(await exited).toBe(0);
    for (const node of report.nodes) expect(() => process.kill(node.pid, 0)).toThrow();
  } finally {
    if (dev.exitCode === null) dev.kill('SIGKILL');
    await fs.rm(dataDir, { recursive: true, force: true });
  }
}, 60_000);
