/**
 * The README's promise: `raftmq dev` (what `npm start` runs) brings up a NameServer with the
 * access point and a 3-node broker group with data on disk, prints the endpoints and the
 * leader; the CLI then produces, consumes and shows the cluster (with pids); Ctrl-C (SIGINT)
 * stops every process cleanly.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { expect, it } from 'vitest';
import { freePorts } from '../../src/cli/local-cluster.js';
import { cliPath, freeConsecutivePorts, waitFor } from '../support/process-cluster.js';

it('raftmq dev starts NameServer, access point and a 3-node broker group; produce, consume and cluster work; SIGINT stops it', async () => {
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'raftmq-dev-'));
  const basePort = await freeConsecutivePorts(3);
  const [namesrvPort, accessPort] = await freePorts(2);
  const namesrv = `127.0.0.1:${namesrvPort}`;
  const dev = spawn(process.execPath, [cliPath, 'dev', '--data', dataDir, '--base-port', String(basePort), '--namesrv', namesrv, '--access-point', `127.0.0.1:${accessPort}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  dev.stdout.on('data', (chunk: Buffer) => { output += chunk.toString(); });
  dev.stderr.on('data', (chunk: Buffer) => { output += chunk.toString(); });
  const cli = (...args: string[]) => spawnSync(process.execPath, [cliPath, ...args, '--namesrv', namesrv], { encoding: 'utf8' });
  try {
    await waitFor('the dev group to report its leader', () => /leader \(term \d+\)/.test(output), 30_000);
    expect(output).toMatch(/broker group "dev" \(3 nodes, SYNC_FLUSH\) up/);
    expect(output).toContain(`access point  127.0.0.1:${accessPort}`);
    const produced = cli('produce', '--topic', 'smoke', '--count', '500', '--inflight', '32');
    expect(produced.stdout).toMatch(/^500 acknowledged, 0 failed, 0 outcome unknown/m);
    const consumed = cli('consume', '--topic', 'smoke', '--group', 'cli', '--count', '500', '--idle-ms', '5000');
    expect(consumed.stdout).toMatch(/^500 messages in/m);
    const cluster = cli('cluster', '--json');
    expect(cluster.status).toBe(0);
    const report = JSON.parse(cluster.stdout) as { nodes: Array<{ isLeader: boolean; pid: number; group: string }> };
    expect(report.nodes.filter((n) => n.isLeader).length).toBe(1);
    expect(report.nodes.every((n) => n.pid > 0 && n.group === 'dev')).toBe(true);
    expect((await fs.readdir(dataDir)).sort()).toEqual(['n1', 'n2', 'n3']);
    const exited = new Promise<number | null>((resolve) => dev.once('exit', resolve));
    dev.kill('SIGINT');
    expect(await exited).toBe(0);
    for (const node of report.nodes) expect(() => process.kill(node.pid, 0)).toThrow();
  } finally {
    if (dev.exitCode === null) dev.kill('SIGKILL');
    await fs.rm(dataDir, { recursive: true, force: true });
  }
}, 90_000);
