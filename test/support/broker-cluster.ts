import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Admin, type ClusterNodeInfo } from '../../src/client/admin.js';
import { writeDevAuth, writeDevCertificates, type CertificateFiles, type DevAuthFiles } from '../../src/cli/dev-certificates.js';
import { readCredentialsFile } from '../../src/server/access-gate.js';
import type { Credentials } from '../../src/util/request-signature.js';
import { LocalCluster, freePorts } from '../../src/cli/local-cluster.js';
import { cliPath, waitFor } from './process-cluster.js';

export interface BrokerClusterOptions {
  readonly nodeCount?: number;
  readonly groupId?: string;
  readonly autoCreateTopics?: boolean;
  readonly extraArgs?: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  /** TLS everywhere: throwaway certificates in <dataRoot>/tls (one per node, namesrv, client). */
  readonly tls?: boolean;
  /** Authentication and ACL on: a cluster key and the bootstrap super user in <dataRoot>/auth; `admin` signs as it. */
  readonly auth?: boolean;
}

/**
 * A NameServer with its access point and one broker group of real `raftmq broker` processes
 * in a temp directory, on free loopback ports. Tests call `stop()` in afterEach/afterAll.
 */
export class BrokerCluster {
  local!: LocalCluster;
  namesrv = '';
  accessPoint = '';
  admin!: Admin;
  dataRoot = '';
  /** Set when `tls`: where the certificates are. */
  certificates: CertificateFiles | undefined;
  /** Set when `auth`: the key and the super user's credentials files. */
  authFiles: DevAuthFiles | undefined;
  /** Set when `auth`: the super user's access key and secret. */
  superUser: Credentials | undefined;

  constructor(readonly options: BrokerClusterOptions = {}) {}

  async start(): Promise<void> {
    if (!existsSync(cliPath)) throw new Error(`${cliPath} is missing: run npm run build first (npm test does)`);
    this.dataRoot = await fs.mkdtemp(path.join(os.tmpdir(), 'raftmq-broker-it-'));
    const count = this.options.nodeCount ?? 3;
    const ports = await freePorts(count + 2);
    this.namesrv = `127.0.0.1:${ports[count]}`;
    this.accessPoint = `127.0.0.1:${ports[count + 1]}`;
    const tlsDir = path.join(this.dataRoot, 'tls');
    const groupId = this.options.groupId ?? 'g1';
    if (this.options.tls === true) this.certificates = await writeDevCertificates(tlsDir, groupId, Array.from({ length: count }, (_, i) => `n${i + 1}`), ['namesrv', 'client']);
    if (this.options.auth === true) {
      this.authFiles = await writeDevAuth(path.join(this.dataRoot, 'auth'));
      this.superUser = readCredentialsFile(this.authFiles.adminFile, 'admin');
    }
    const authArgs = this.authFiles === undefined ? [] : ['--auth-key-file', this.authFiles.keyFile, '--auth-admin-file', this.authFiles.adminFile];
    this.local = new LocalCluster({
      groupId, dataRoot: this.dataRoot, ports: ports.slice(0, count), flush: 'sync', output: 'capture', cliPath,
      role: 'broker', namesrv: [this.namesrv], extraArgs: [...(this.options.autoCreateTopics === false ? [] : ['--auto-create-topics']), '--register-interval-ms', '500', ...authArgs, ...(this.options.extraArgs ?? [])],
      ...(this.options.env === undefined ? {} : { env: this.options.env }),
      ...(this.certificates === undefined ? {} : { tlsDir }),
    });
    this.local.startNameServer(this.namesrv, this.accessPoint, ['--expiry-ms', '3000']);
    this.local.startAll();
    this.admin = new Admin(this.clientOptions(this.superUser));
    await this.leader(20_000);
  }

  /** Connection options for a client of this cluster: its NameServer, its CA when TLS, and `user`'s signature if given. */
  clientOptions(user?: Credentials): { nameServers: string[]; tls?: { caFile: string }; sessionCredentials?: Credentials } {
    return {
      nameServers: [this.namesrv], ...(this.certificates === undefined ? {} : { tls: { caFile: this.certificates.caFile } }),
      ...(user === undefined ? {} : { sessionCredentials: user }),
    };
  }

  /** The current leader as the NameServer sees it, waiting for one. */
  async leader(timeoutMs = 10_000): Promise<ClusterNodeInfo> {
    let found: ClusterNodeInfo | undefined;
    await waitFor('a leader registered with the NameServer', async () => {
      found = (await this.admin.cluster().catch(() => [])).find((n) => n.isLeader && this.local.isRunning(n.nodeId));
      return found !== undefined;
    }, timeoutMs);
    return found as ClusterNodeInfo;
  }

  /** SIGKILLs the leader; returns its id. */
  async killLeader(): Promise<string> {
    const leader = await this.leader();
    await this.local.signal(leader.nodeId, 'SIGKILL');
    return leader.nodeId;
  }

  restart(id: string): void {
    this.local.startNode(id);
  }

  /** SIGKILLs every node (a whole-group crash); returns their ids, for restart. */
  async killAll(): Promise<string[]> {
    const ids = this.local.members.map((m) => m.id).filter((id) => this.local.isRunning(id));
    for (const id of ids) await this.local.signal(id, 'SIGKILL');
    return ids;
  }

  output(): string {
    return [...this.local.output.entries()].map(([id, lines]) => `--- ${id}\n${lines.join('')}`).join('\n');
  }

  async stop(): Promise<void> {
    this.admin?.close();
    await this.local?.stop({ kill: true, removeData: true });
  }
}
