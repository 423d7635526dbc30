import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { RaftNodeClient } from '../../src/client/raft-node-client.js';
import { LocalCluster, freePorts } from '../../src/cli/local-cluster.js';

/** The compiled CLI that test processes run (built by `npm test` before vitest starts). */
export const cliPath = path.resolve('dist/src/cli/main.js');

export interface ProcessClusterOptions {
  readonly nodeCount: number;
  readonly flush?: 'sync' | 'async';
  readonly env?: Readonly<Record<string, string>>;
  readonly extraArgs?: readonly string[];
}

/** A LocalCluster in a temp directory with free ports; tests call `stop()` in afterEach. */
export class ProcessCluster {
  private cluster: LocalCluster | undefined;
  dataRoot = '';

  constructor(private readonly options: ProcessClusterOptions) {}

  private get local(): LocalCluster {
    if (this.cluster === undefined) throw new Error('start() the cluster first');
    return this.cluster;
  }

  get members(): LocalCluster['members'] { return this.local.members; }
  get processes(): LocalCluster['processes'] { return this.local.processes; }
  get output(): LocalCluster['output'] { return this.local.output; }

  async start(): Promise<void> {
    await this.prepare();
    this.local.startAll();
  }

  /** Claims ports and a data root without starting any node (start them with `startNode`). */
  async prepare(): Promise<void> {
    if (!existsSync(cliPath)) throw new Error(`${cliPath} is missing: run npm run build first (npm test does)`);
    this.dataRoot = await fs.mkdtemp(path.join(os.tmpdir(), 'raftmq-it-'));
    this.cluster = new LocalCluster({
      groupId: 'it', dataRoot: this.dataRoot, ports: await freePorts(this.options.nodeCount), flush: this.options.flush ?? 'sync',
      output: 'capture', cliPath, ...(this.options.env === undefined ? {} : { env: this.options.env }), ...(this.options.extraArgs === undefined ? {} : { extraArgs: this.options.extraArgs }),
    });
  }

  startNode(id: string): void { this.local.startNode(id); }
  addMember(port: number): string { return this.local.addMember(port); }
  address(id: string): string { return this.local.address(id); }
  idOf(address: string): string { return this.local.idOf(address); }
  signal(id: string, signal: NodeJS.Signals): Promise<void> { return this.local.signal(id, signal); }

  client(): RaftNodeClient {
    return new RaftNodeClient(this.members.map((m) => m.address), { proposeTimeoutMs: 10_000 });
  }

  async stop(): Promise<void> {
    await this.cluster?.stop({ kill: true, removeData: true });
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

/** `count` consecutive ports that can all be bound right now (for `raftmq dev --base-port`). */
export async function freeConsecutivePorts(count: number): Promise<number> {
  const net = await import('node:net');
  const canBind = (port: number): Promise<boolean> => new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 40_000);
    let ok = true;
    for (let i = 0; i < count && ok; i++) ok = await canBind(base + i);
    if (ok) return base;
  }
  throw new Error(`no ${count} consecutive free ports found`);
}
