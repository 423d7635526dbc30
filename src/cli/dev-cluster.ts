import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { RaftNodeClient } from '../client/raft-node-client.js';

export interface DevClusterOptions {
  readonly dataDir: string;
  readonly basePort: number;
  readonly flushMode: 'sync' | 'async';
  readonly cliPath: string;
}

/**
 * `raftmq dev`: three `raftmq node` processes on 127.0.0.1 (each its own process, so a node
 * can be killed on its own), data under `<dataDir>/n1..n3`. Prints the endpoints once a
 * leader is elected; Ctrl-C stops every node and waits for them.
 */
export async function runDevCluster(options: DevClusterOptions): Promise<void> {
  const members = [1, 2, 3].map((i) => ({ id: `n${i}`, address: `127.0.0.1:${options.basePort + i - 1}` }));
  const memberList = members.map((m) => `${m.id}=${m.address}`).join(',');
  const children: ChildProcess[] = [];
  let stopping = false;
  for (const member of members) {
    const child = spawn(process.execPath, [
      options.cliPath, 'node', '--group', 'dev', '--id', member.id, '--members', memberList,
      '--data', path.join(options.dataDir, member.id), '--flush', options.flushMode, '--log-level', 'warn',
    ], { stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('exit', (code, signal) => {
      if (!stopping) console.error(`raftmq dev: node ${member.id} exited (${signal ?? `code ${code}`}); restart it with: npm start`);
    });
    children.push(child);
  }
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    console.log('\nraftmq dev: stopping...');
    for (const child of children) child.kill('SIGTERM');
    Promise.all(children.map((child) => new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve(undefined);
      else child.once('exit', resolve);
    }))).then(() => process.exit(0), () => process.exit(1));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  const client = new RaftNodeClient(members.map((m) => m.address));
  try {
    const leader = await client.findLeader(15_000);
    const status = await client.status(leader);
    console.log(`raftmq dev: 3-node Raft group "dev" up (SYNC_FLUSH=${options.flushMode === 'sync'}), data in ${path.resolve(options.dataDir)}`);
    for (const member of members) console.log(`  ${member.id}  ${member.address}${member.id === status.nodeId ? `  leader (term ${status.term})` : ''}`);
    console.log(`try:  npx raftmq status   |   npx raftmq propose --count 10000   |   Ctrl-C to stop`);
  } catch (error) {
    console.error(`raftmq dev: ${(error as Error).message}`);
    stop();
  } finally {
    client.close();
  }
}
