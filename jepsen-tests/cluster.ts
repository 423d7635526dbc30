/**
 * The system under test: a NameServer in the root namespace and one broker group of real
 * `raftmq broker` processes, each in its own network namespace, all in power-loss test mode
 * (unsynced commitlog writes live in process memory, so every kill loses them). Every process
 * it starts is stopped by `stop()`.
 */
import { readFile } from 'node:fs/promises';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { RaftNodeClient, type NodeStatus } from '../src/client/raft-node-client.js';
import { LocalCluster, cliPath } from '../src/cli/local-cluster.js';
import type { PowerFailReport } from '../src/commitlog/lazy-file-system.js';
import { NamespaceNet } from './net.js';
import { prepareSecurity, raftClientSecurity, type Security } from './security.js';

export type UnsafeSwitch = 'ack-before-fsync' | 'ack-before-quorum';

export interface ClusterConfig {
  readonly nodes: number;
  readonly runDir: string;
  readonly unsafe?: UnsafeSwitch | undefined;
  /** Extra `raftmq broker` flags for every node (e.g. tiny segments, snapshots and retention). */
  readonly brokerArgs?: readonly string[] | undefined;
  /** TLS on every port and authentication + ACL on (security.ts); the cluster's `security` then says how to connect and sign. */
  readonly secure?: boolean | undefined;
}

const brokerPort = 10911;
const namesrvPort = 9876;
export const groupId = 'jepsen';

export class JepsenCluster {
  private readonly client: RaftNodeClient;
  readonly ids: string[];

  private constructor(readonly net: NamespaceNet, readonly local: LocalCluster, readonly namesrv: string, readonly security: Security | undefined) {
    this.ids = local.members.map((m) => m.id);
    // The status poller is the operator's: it signs as the bootstrap super user.
    this.client = new RaftNodeClient(local.members.map((m) => m.address), raftClientSecurity(security, 'operator'));
  }

  static async start(config: ClusterConfig): Promise<JepsenCluster> {
    const ids = Array.from({ length: config.nodes }, (_, i) => `n${i + 1}`);
    const net = await NamespaceNet.create(ids);
    try {
      const logDir = path.join(config.runDir, 'logs');
      await fs.mkdir(logDir, { recursive: true });
      const namesrv = `${net.hostIp}:${namesrvPort}`;
      const env: Record<string, string> = { RAFTMQ_TEST_POWER_LOSS: '1' };
      if (config.unsafe === 'ack-before-fsync') env.RAFTMQ_UNSAFE_ACK_BEFORE_FSYNC = '1';
      if (config.unsafe === 'ack-before-quorum') env.RAFTMQ_UNSAFE_ACK_BEFORE_QUORUM = '1';
      // Certificates for the addresses the processes are reached at: the nodes' namespace IPs and the host side (the NameServer).
      const security = config.secure === true ? await prepareSecurity(config.runDir, groupId, ids, [...net.nodes.map((n) => n.ip), net.hostIp]) : undefined;
      const local = new LocalCluster({
        groupId, dataRoot: path.join(config.runDir, 'data'), ports: ids.map(() => brokerPort), hosts: net.nodes.map((n) => n.ip),
        flush: 'sync', output: 'capture', cliPath, role: 'broker', namesrv: [namesrv], env, logDir, logLevel: 'info',
        launcher: (id) => (id === 'namesrv' ? [] : net.launcher(id)),
        extraArgs: ['--register-interval-ms', '500', ...(security?.brokerArgs ?? []), ...(config.brokerArgs ?? [])],
        ...(security === undefined ? {} : { tlsDir: security.tlsDir }),
      });
      local.startNameServer(namesrv, '', ['--expiry-ms', '3000']);
      local.startAll();
      return new JepsenCluster(net, local, namesrv, security);
    } catch (error) {
      await net.destroy();
      throw error;
    }
  }

  address(id: string): string { return this.local.address(id); }
  isRunning(id: string): boolean { return this.local.isRunning(id); }

  /** Every node's status; a node that is down, paused or slow reports an error instead. */
  async statuses(timeoutMs = 300): Promise<Map<string, NodeStatus | undefined>> {
    const answers = await this.client.statusAll(timeoutMs);
    return new Map(answers.map((a) => [this.local.idOf(a.address), a.status]));
  }

  /** The node claiming leadership in the highest term, if any answers. */
  async leader(): Promise<string | undefined> {
    let best: NodeStatus | undefined;
    for (const status of (await this.statuses()).values()) {
      if (status?.role === 'leader' && (best === undefined || status.term > best.term)) best = status;
    }
    return best?.nodeId;
  }

  async waitForLeader(timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const leader = await this.leader();
      if (leader !== undefined) return leader;
      await sleep(100);
    }
    throw new Error(`no leader within ${timeoutMs} ms`);
  }

  async kill(id: string): Promise<void> {
    await this.local.signal(id, 'SIGCONT');
    await this.local.signal(id, 'SIGKILL');
  }

  /** The power cut (SIGUSR2 in power-loss test mode); returns what the node says it lost. */
  async powerFail(id: string): Promise<PowerFailReport | undefined> {
    const child = this.local.processes.get(id);
    if (child === undefined || !this.isRunning(id)) return undefined;
    const reports = path.join(this.local.options.dataRoot, id, 'power-failures.jsonl');
    const before = (await readFile(reports, 'utf8').catch(() => '')).length;
    await this.local.signal(id, 'SIGCONT');
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGUSR2');
    const late = await Promise.race([exited.then(() => false), sleep(3_000).then(() => true)]);
    if (late) await this.local.signal(id, 'SIGKILL'); // it could not run its handler: a plain kill
    const text = (await readFile(reports, 'utf8').catch(() => '')).slice(before).trim();
    return text === '' ? undefined : JSON.parse(text.split('\n').pop() as string) as PowerFailReport;
  }

  pause(id: string): Promise<void> { return this.local.signal(id, 'SIGSTOP'); }
  resume(id: string): Promise<void> { return this.local.signal(id, 'SIGCONT'); }

  restart(id: string): void {
    if (!this.isRunning(id)) this.local.startNode(id);
  }

  /** Exit code of a node that stopped by itself, with its last output (e.g. a corruption report). */
  exitOf(id: string): { code: number | null; output: string } {
    const child = this.local.processes.get(id);
    return { code: child?.exitCode ?? null, output: (this.local.output.get(id) ?? []).join('').slice(-2_000) };
  }

  dataDir(id: string): string {
    return path.join(this.local.options.dataRoot, id);
  }

  async stop(): Promise<void> {
    this.client.close();
    try {
      await this.local.stop({ kill: true, removeData: false });
    } finally {
      await this.net.destroy();
    }
  }
}

