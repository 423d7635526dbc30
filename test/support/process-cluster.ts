import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RaftNodeClient } from '../../src/client/raft-node-client.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const cliPath = path.join(root, 'dist/src/cli/main.js');

/** Ports the OS says are free right now (bound to port 0, then released). */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: count }, () => new Promise<net.Server>((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  })));
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

export interface ProcessClusterOptions {
  readonly nodeCount: number;
  readonly flush?: 'sync' | 'async';
  readonly env?: Readonly<Record<string, string>>;
  readonly extraArgs?: readonly string[];
}

/**
 * Real `raftmq node` processes on 127.0.0.1 with real files, for integration tests. Every
 * process it starts is killed in `stop()`, which tests call from `afterEach`/`finally`.
 */
export class ProcessCluster {
  readonly members: Array<{ id: string; address: string }> = [];
  readonly processes = new Map<string, ChildProcess>();
  readonly output = new Map<string, string[]>();
  dataRoot = '';

  constructor(private readonly options: ProcessClusterOptions) {}

  async start(): Promise<void> {
    if (!existsSync(cliPath)) throw new Error(`${cliPath} is missing: run npm run build first (npm test does)`);
    this.dataRoot = await fs.mkdtemp(path.join(os.tmpdir(), 'raftmq-it-'));
    const ports = await freePorts(this.options.nodeCount);
    ports.forEach((port, i) => this.members.push({ id: `n${i + 1}`, address: `127.0.0.1:${port}` }));
    for (const member of this.members) this.startNode(member.id);
  }

  startNode(id: string): void {
    const memberList = this.members.map((m) => `${m.id}=${m.address}`).join(',');
    const child = spawn(process.execPath, [cliPath, 'node', '--group', 'it', '--id', id, '--members', memberList,
      '--data', path.join(this.dataRoot, id), '--flush', this.options.flush ?? 'sync', '--log-level', 'warn', ...(this.options.extraArgs ?? [])],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...this.options.env } });
    const lines: string[] = [];
    this.output.set(id, lines);
    const keep = (chunk: Buffer): void => {
      lines.push(chunk.toString());
      if (lines.length > 200) lines.splice(0, 100);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.processes.set(id, child);
  }

  address(id: string): string {
    return (this.members.find((m) => m.id === id) as { address: string }).address;
  }

  idOf(address: string): string {
    return (this.members.find((m) => m.address === address) as { id: string }).id;
  }

  /** Sends a signal and, for SIGKILL/SIGTERM, waits until the process is gone. */
  async signal(id: string, signal: NodeJS.Signals): Promise<void> {
    const child = this.processes.get(id);
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill(signal);
    if (signal === 'SIGKILL' || signal === 'SIGTERM') await exited;
  }

  client(): RaftNodeClient {
    return new RaftNodeClient(this.members.map((m) => m.address), { proposeTimeoutMs: 10_000 });
  }

  async stop(): Promise<void> {
    await Promise.all([...this.processes.keys()].map((id) => this.signal(id, 'SIGKILL')));
    if (this.dataRoot !== '') await fs.rm(this.dataRoot, { recursive: true, force: true });
  }
}

/** Polls `condition` until it holds or `timeoutMs` passes (never a bare sleep). */
export async function waitFor(what: string, condition: () => Promise<boolean> | boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}
