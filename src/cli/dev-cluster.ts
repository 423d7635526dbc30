import * as path from 'node:path';
import { RaftNodeClient } from '../client/raft-node-client.js';
import { LocalCluster } from './local-cluster.js';

export interface DevClusterOptions {
  readonly dataDir: string;
  readonly basePort: number;
  readonly flushMode: 'sync' | 'async';
}

/**
 * `raftmq dev`: three `raftmq node` processes on 127.0.0.1 (each its own process, so a node
 * can be killed on its own), data under `<dataDir>/n1..n3`. Prints the endpoints once a
 * leader is elected; Ctrl-C stops every node and waits for them.
 */
export async function runDevCluster(options: DevClusterOptions): Promise<void> {
  const cluster = new LocalCluster({
    groupId: 'dev', dataRoot: options.dataDir, ports: [0, 1, 2].map((i) => options.basePort + i),
    flush: options.flushMode, output: 'inherit',
  });
  let stopping = false;
  cluster.startAll();
  for (const [id, child] of cluster.processes) {
    child.on('exit', (code, signal) => {
      if (!stopping) console.error(`raftmq dev: node ${id} exited (${signal ?? `code ${code}`}); the other two keep the group available`);
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
  const client = new RaftNodeClient(cluster.members.map((m) => m.address));
  try {
    const leader = await client.findLeader(15_000);
    const status = await client.status(leader);
    console.log(`raftmq dev: 3-node Raft group "dev" up (${options.flushMode === 'sync' ? 'SYNC_FLUSH' : 'ASYNC_FLUSH'}), data in ${path.resolve(options.dataDir)}`);
    for (const member of cluster.members) console.log(`  ${member.id}  ${member.address}${member.id === status.nodeId ? `  leader (term ${status.term})` : ''}`);
    console.log('try:  npx raftmq status   |   npx raftmq propose --count 10000   |   Ctrl-C to stop');
  } catch (error) {
    console.error(`raftmq dev: ${(error as Error).message}`);
    stop();
  } finally {
    client.close();
  }
}
