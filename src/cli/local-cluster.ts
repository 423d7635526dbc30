import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { certificateFilesIn } from './dev-certificates.js';

/** The compiled CLI entry point that `raftmq node` processes run. */
export const cliPath = path.join(path.dirname(fileURLToPath(import.meta.url)), 'main.js');

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

export interface LocalClusterOptions {
  readonly groupId: string;
  readonly dataRoot: string;
  /** One port per node; their count is the group size. */
  readonly ports: readonly number[];
  readonly flush: 'sync' | 'async';
  readonly logLevel?: string;
  readonly extraArgs?: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  /** 'inherit' shows node output on this terminal; 'capture' keeps the last lines per node. */
  readonly output: 'inherit' | 'capture';
  /** The compiled CLI to run; defaults to the one beside this module (dist/src/cli/main.js). */
  readonly cliPath?: string;
  /** 'node': bare Raft members; 'broker': broker nodes registering with `namesrv`. */
  readonly role?: 'node' | 'broker';
  /** NameServer addresses for broker nodes. */
  readonly namesrv?: readonly string[];
  /** One host per node (default 127.0.0.1 for all), e.g. addresses in test network namespaces. */
  readonly hosts?: readonly string[];
  /** A command prefix per process id, e.g. `ip netns exec <ns>` (which execs, keeping the pid). */
  readonly launcher?: (id: string) => readonly string[];
  /** Also append every process's output to <logDir>/<id>.log. */
  readonly logDir?: string;
  /** TLS everywhere, with the certificates in this folder (dev-certificates.ts layout: ca.pem, <id>.pem, <id>-key.pem). */
  readonly tlsDir?: string;
}

/**
 * glibc malloc settings for every server process this launcher starts (the environment a
 * user sets wins), as RocketMQ's runbroker.sh sets the JVM's memory flags. Without them a
 * broker's RSS after 1M messages was 1.9–2.3× its RSS after 10k, with the JS heap the same:
 * glibc kept freed gRPC and log buffers in up to 8 arenas per core, and its mmap threshold,
 * which grows as large blocks are freed, put the ~270 KiB batch buffers on those heaps too. A fixed
 * 128 KiB threshold returns large buffers to the kernel at free; two arenas bound the rest.
 * Measured with `npm run bench:lifecycle -- --cases rss` (README, "Memory").
 */
export const serverAllocatorEnv: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '131072' };

/**
 * A group of `raftmq node` processes on 127.0.0.1, each its own OS process so it can be
 * killed (SIGKILL), paused (SIGSTOP) or restarted alone. Used by `raftmq dev`, the
 * benchmarks and the integration tests; `stop()` ends every process it started.
 */
export class LocalCluster {
  /** Grows with `addMember`; a node starts with the list as it is when it starts. */
  readonly members: Array<{ readonly id: string; readonly address: string }>;
  readonly processes = new Map<string, ChildProcess>();
  readonly output = new Map<string, string[]>();

  constructor(readonly options: LocalClusterOptions) {
    this.members = options.ports.map((port, i) => ({ id: `n${i + 1}`, address: `${options.hosts?.[i] ?? '127.0.0.1'}:${port}` }));
  }

  /** Adds a member on `port` (n<count+1>) for a membership change; returns its id. */
  addMember(port: number): string {
    const id = `n${this.members.length + 1}`;
    this.members.push({ id, address: `127.0.0.1:${port}` });
    return id;
  }

  startAll(): void {
    for (const member of this.members) this.startNode(member.id);
  }

  startNode(id: string): ChildProcess {
    const memberList = this.members.map((m) => `${m.id}=${m.address}`).join(',');
    const role = this.options.role ?? 'node';
    const brokerArgs = role === 'broker' ? ['--namesrv', (this.options.namesrv ?? []).join(',')] : [];
    return this.spawnProcess(id, [role, '--group', this.options.groupId, '--id', id, '--members', memberList,
      '--data', path.join(this.options.dataRoot, id), '--flush', this.options.flush, '--log-level', this.options.logLevel ?? 'warn', ...brokerArgs, ...this.tlsArgs(id), ...(this.options.extraArgs ?? [])]);
  }

  /** Starts a NameServer (with an access point unless `accessPoint` is empty) as process `namesrv`. */
  startNameServer(address: string, accessPoint: string, extraArgs: readonly string[] = []): ChildProcess {
    return this.spawnProcess('namesrv', ['namesrv', '--listen', address, '--access-point', accessPoint === '' ? 'none' : accessPoint, '--log-level', this.options.logLevel ?? 'warn', ...this.tlsArgs('namesrv'), ...extraArgs]);
  }

  /** The root --tls-ca and the process's own --tls-cert / --tls-key (nothing without tlsDir). */
  private tlsArgs(id: string): string[] {
    if (this.options.tlsDir === undefined) return [];
    const files = certificateFilesIn(this.options.tlsDir);
    // --tls-ca is the root program's option; commander takes it after the command too.
    return ['--tls-ca', files.caFile, '--tls-cert', files.certFile(id), '--tls-key', files.keyFile(id)];
  }

  private spawnProcess(id: string, args: readonly string[]): ChildProcess {
    const command = [...(this.options.launcher?.(id) ?? []), process.execPath, this.options.cliPath ?? cliPath, ...args];
    const child = spawn(command[0] as string, command.slice(1),
    { stdio: ['ignore', this.options.output === 'inherit' ? 'inherit' : 'pipe', this.options.output === 'inherit' ? 'inherit' : 'pipe'], env: { ...serverAllocatorEnv, ...process.env, ...this.options.env } });
    const lines: string[] = [];
    this.output.set(id, lines);
    const logFile = this.options.logDir === undefined ? undefined : createWriteStream(path.join(this.options.logDir, `${id}.log`), { flags: 'a' });
    logFile?.write(`--- ${new Date().toISOString()} pid ${child.pid ?? '?'}: ${command.join(' ')}\n`);
    child.once('close', () => logFile?.end());
    const keep = (chunk: Buffer): void => {
      logFile?.write(chunk);
      lines.push(chunk.toString());
      if (lines.length > 200) lines.splice(0, 100);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.processes.set(id, child);
    return child;
  }

  address(id: string): string {
    const member = this.members.find((m) => m.id === id);
    if (member === undefined) throw new Error(`no member ${id}`);
    return member.address;
  }

  idOf(address: string): string {
    const member = this.members.find((m) => m.address === address);
    if (member === undefined) throw new Error(`no member at ${address}`);
    return member.id;
  }

  isRunning(id: string): boolean {
    const child = this.processes.get(id);
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  /** Sends a signal; for SIGKILL and SIGTERM waits until the process is gone. */
  async signal(id: string, signal: NodeJS.Signals): Promise<void> {
    const child = this.processes.get(id);
    if (child === undefined || !this.isRunning(id)) return;
    if (signal !== 'SIGKILL' && signal !== 'SIGTERM') {
      child.kill(signal); // SIGSTOP, SIGCONT, …: nothing to wait for (and no listener left behind per pause)
      return;
    }
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill(signal);
    await exited;
  }

  /** Ends every process (SIGTERM, or SIGKILL when `kill`), optionally deleting the data. */
  async stop(options: { kill: boolean; removeData: boolean }): Promise<void> {
    for (const id of this.processes.keys()) {
      const child = this.processes.get(id);
      if (child !== undefined && this.isRunning(id)) child.kill('SIGCONT'); // a paused process cannot exit
    }
    await Promise.all([...this.processes.keys()].map((id) => this.signal(id, options.kill ? 'SIGKILL' : 'SIGTERM')));
    if (options.removeData) await fs.rm(this.options.dataRoot, { recursive: true, force: true });
  }
}
