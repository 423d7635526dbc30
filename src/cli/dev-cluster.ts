import * as path from 'node:path';
import { Admin } from '../client/admin.js';
import { existsSync } from 'node:fs';
import { writeDevAuth, writeDevCertificates, type DevAuthFiles } from './dev-certificates.js';
import { LocalCluster } from './local-cluster.js';

export interface DevClusterOptions {
  readonly dataDir: string;
  readonly basePort: number;
  readonly flushMode: 'sync' | 'async';
  readonly namesrv: string;
  readonly accessPoint: string;
  readonly autoCreateTopics: boolean;
  /** TLS everywhere with throwaway certificates written to <dataDir>/tls. */
  readonly tls: boolean;
  /** Authentication and ACL on, with a throwaway cluster key and super user in <dataDir>/auth. */
  readonly acl: boolean;
  /** With `acl`: unsigned calls act as this user (see --auth-anonymous-user). */
  readonly anonymousUser?: string;
}

/**
 * `raftmq dev` (what `npm start` runs): a NameServer with the access point and three
 * `raftmq broker` processes forming broker group "dev" on 127.0.0.1 (each its own process,
 * so one can be killed alone), data under `<dataDir>/n1..n3`. Prints the endpoints once the
 * group has a leader; Ctrl-C stops every process and waits for them.
 */
export async function runDevCluster(options: DevClusterOptions): Promise<void> {
  const nodeIds = ['n1', 'n2', 'n3'];
  const tlsDir = path.join(options.dataDir, 'tls');
  // Fresh certificates on every start: they are throwaway, and the CA's key sits beside them.
  const certificates = options.tls ? await writeDevCertificates(tlsDir, 'dev', nodeIds, ['namesrv', 'client']) : undefined;
  // The key is kept across starts (users' secrets in the data are sealed with it); the admin's file too.
  const auth = options.acl ? await existingOrNewAuth(path.join(options.dataDir, 'auth')) : undefined;
  const cluster = new LocalCluster({
    groupId: 'dev', dataRoot: options.dataDir, ports: nodeIds.map((_, i) => options.basePort + i), flush: options.flushMode, output: 'inherit',
    role: 'broker', namesrv: [options.namesrv],
    extraArgs: [...(options.autoCreateTopics ? ['--auto-create-topics'] : []), ...(auth === undefined ? [] : ['--auth-key-file', auth.keyFile, '--auth-admin-file', auth.adminFile]),
      ...(auth === undefined || options.anonymousUser === undefined ? [] : ['--auth-anonymous-user', options.anonymousUser])],
    ...(options.tls ? { tlsDir } : {}),
  });
  let stopping = false;
  cluster.startNameServer(options.namesrv, options.accessPoint);
  cluster.startAll();
  for (const [id, child] of cluster.processes) {
    child.on('exit', (code, signal) => {
      if (!stopping) console.error(`raftmq dev: ${id} exited (${signal ?? `code ${code}`})${id === 'namesrv' ? '' : '; the other two keep the group available'}`);
    });
  }
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    console.log('\nraftmq dev: stopping...');
    cluster.stop({ kill: false, removeData: false }).then(() => process.exit(0), () => process.exit(1));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  const admin = new Admin({ nameServers: [options.namesrv], ...(certificates === undefined ? {} : { tls: { caFile: certificates.caFile } }) });
  try {
    const until = Date.now() + 20_000;
    let leader;
    while (leader === undefined) {
      leader = (await admin.cluster().catch(() => [])).find((n) => n.isLeader);
      if (leader === undefined && Date.now() > until) throw new Error('no leader was elected within 20 s');
      if (leader === undefined) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    console.log(`raftmq dev: broker group "dev" (3 nodes, ${options.flushMode === 'sync' ? 'SYNC_FLUSH' : 'ASYNC_FLUSH'}) up, data in ${path.resolve(options.dataDir)}`);
    console.log(`  NameServer    ${options.namesrv}`);
    console.log(`  access point  ${options.accessPoint}   (RocketMQ 5 clients: endpoints '${options.accessPoint}')`);
    for (const member of cluster.members) console.log(`  ${member.id}            ${member.address}${member.id === leader.nodeId ? `  leader (term ${leader.term})` : ''}`);
    console.log(`topics are ${options.autoCreateTopics ? 'created on first use' : 'not auto-created'}; try:`);
    const flags = [
      ...(certificates === undefined ? [] : [`--tls-ca ${path.resolve(certificates.caFile)}`]),
      ...(auth === undefined ? [] : [`--credentials ${path.resolve(auth.adminFile)}`]),
    ].map((flag) => `${flag} `).join('');
    console.log(`  npx raftmq ${flags}produce --topic demo --count 10000   |   npx raftmq ${flags}consume --topic demo --group g1   |   npx raftmq ${flags}cluster`);
    if (certificates !== undefined) {
      console.log(`TLS on every port, certificates in ${path.resolve(tlsDir)}; RocketMQ 5 clients: sslEnabled: true with GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=${path.resolve(certificates.caFile)}`);
    }
    if (auth !== undefined) {
      console.log(`authentication and ACL on: the super user's access key and secret are in ${path.resolve(auth.adminFile)} (RocketMQ 5 clients: sessionCredentials); add users with raftmq user create and raftmq acl grant`);
    }
  } catch (error) {
    console.error(`raftmq dev: ${(error as Error).message}`);
    stop();
  } finally {
    admin.close();
  }
}

async function existingOrNewAuth(dir: string): Promise<DevAuthFiles> {
  const files = { keyFile: path.join(dir, 'cluster.key'), adminFile: path.join(dir, 'admin.json') };
  return existsSync(files.keyFile) && existsSync(files.adminFile) ? files : writeDevAuth(dir);
}
