/**
 * Real processes: three `raftmq node` processes over gRPC on 127.0.0.1 with real files.
 * 10,000 entries are proposed with 64 in flight; the leader is SIGKILLed mid-stream. A new
 * leader must commit within 2 s; every acknowledged entry must be on both survivors; the
 * killed node must rejoin after restart and catch up to the same log.
 */
import { afterEach, expect, it } from 'vitest';
import { RaftClientError } from '../../src/client/raft-node-client.js';
import { ProcessCluster, waitFor } from '../support/process-cluster.js';

let cluster: ProcessCluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

const payloadFor = (n: number): Uint8Array => {
  const payload = new Uint8Array(64);
  new DataView(payload.buffer).setUint32(0, n);
  payload.fill(n % 251, 4);
  return payload;
};

it('keeps every acknowledged entry when the leader is SIGKILLed mid-stream, and the killed node catches up', async () => {
  cluster = new ProcessCluster({ nodeCount: 3 });
  await cluster.start();
  const client = cluster.client();
  try {
    const firstLeaderAddress = await client.findLeader(10_000);
    const firstLeader = cluster.idOf(firstLeaderAddress);
    const firstTerm = (await client.status(firstLeaderAddress)).term;
    const total = 10_000;
    const acked = new Map<number, number>(); // value -> index
    let unknown = 0;
    let next = 0;
    let killedAt: number | undefined;
    let firstAckAfterKill: number | undefined;
    const kill = async (): Promise<void> => {
      killedAt = performance.now();
      await cluster?.signal(firstLeader, 'SIGKILL');
    };
    const worker = async (): Promise<void> => {
      while (next < total) {
        const value = next++;
        if (value === 3_000) void kill();
        for (;;) {
          try {
            const { index, term } = await client.propose(payloadFor(value));
            acked.set(value, index);
            // Only an entry of a newer term proves a new leader is committing.
            if (killedAt !== undefined && firstAckAfterKill === undefined && term > firstTerm) firstAckAfterKill = performance.now();
            break;
          } catch (error) {
            if (!(error instanceof RaftClientError)) throw error;
            if (!error.definite) {
              unknown++;
              break; // may or may not be committed: not counted as acknowledged
            }
            await new Promise((resolve) => setTimeout(resolve, 20)); // definite: safe to retry
          }
        }
      }
    };
    await Promise.all(Array.from({ length: 64 }, worker));
    expect(killedAt).toBeDefined();
    const recoveryMs = (firstAckAfterKill as number) - (killedAt as number);
    console.log(`acked ${acked.size}, unknown ${unknown}, first commit after SIGKILL of ${firstLeader}: ${recoveryMs.toFixed(0)} ms`);
    expect(acked.size + unknown).toBe(total);
    expect(recoveryMs).toBeLessThan(2_000);

    const survivors = cluster.members.filter((m) => m.id !== firstLeader);
    const expectAllAcked = async (address: string): Promise<void> => {
      const entries = await client.readAllCommitted(address);
      const byIndex = new Map(entries.map((e) => [e.index, e]));
      let missing = 0;
      for (const [value, index] of acked) {
        const entry = byIndex.get(index);
        if (entry === undefined || new DataView(entry.payload.buffer, entry.payload.byteOffset).getUint32(0) !== value) missing++;
      }
      expect(missing, `acknowledged entries missing or changed on ${address}`).toBe(0);
    };
    const lastAckedIndex = Math.max(...acked.values());
    for (const survivor of survivors) {
      await waitFor(`${survivor.id} to commit ${lastAckedIndex}`, async () => (await client.status(survivor.address)).commitIndex >= lastAckedIndex, 5_000);
      await expectAllAcked(survivor.address);
    }

    cluster.startNode(firstLeader);
    const leaderAddress = await client.findLeader(5_000);
    const target = (await client.status(leaderAddress)).commitIndex;
    await waitFor(`${firstLeader} to rejoin and apply ${target}`, async () => {
      try {
        return (await client.status(cluster!.address(firstLeader))).appliedIndex >= target;
      } catch {
        return false;
      }
    }, 15_000);
    await expectAllAcked(cluster.address(firstLeader));
    // With no new proposals all three converge on one applied index and one hash chain.
    await waitFor('all nodes to apply the same index', async () => {
      const statuses = await Promise.all(cluster!.members.map((m) => client.status(m.address)));
      return new Set(statuses.map((st) => st.appliedIndex)).size === 1;
    }, 5_000);
    const statuses = await Promise.all(cluster.members.map((m) => client.status(m.address)));
    expect(new Set(statuses.map((st) => st.stateHash)).size).toBe(1);

    // A graceful stop of one node while its peers keep streaming to it ends promptly.
    const follower = statuses.find((st) => st.role !== 'leader')!.nodeId;
    const child = cluster.processes.get(follower)!;
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    const stopStarted = performance.now();
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(performance.now() - stopStarted).toBeLessThan(3_000);
  } finally {
    client.close();
  }
}, 120_000);

it('ASYNC_FLUSH keeps every acknowledged entry when all nodes are SIGKILLed at once (the page cache survives a process crash)', async () => {
  cluster = new ProcessCluster({ nodeCount: 3, flush: 'async' });
  await cluster.start();
  const client = cluster.client();
  try {
    await client.findLeader(10_000);
    const acked = new Map<number, number>();
    await Promise.all(Array.from({ length: 32 }, async (_, worker) => {
      for (let i = 0; i < 60; i++) {
        const value = worker * 1000 + i;
        acked.set(value, (await client.propose(payloadFor(value))).index);
      }
    }));
    await Promise.all(cluster.members.map((m) => cluster!.signal(m.id, 'SIGKILL')));
    for (const member of cluster.members) cluster.startNode(member.id);
    const leader = await client.findLeader(10_000);
    const lastAcked = Math.max(...acked.values());
    await waitFor('the restarted group to commit past the last acknowledged entry', async () => (await client.status(leader)).commitIndex > lastAcked, 10_000);
    const entries = new Map((await client.readAllCommitted(leader)).map((e) => [e.index, e]));
    for (const [value, index] of acked) {
      const entry = entries.get(index);
      expect(entry === undefined ? undefined : new DataView(entry.payload.buffer, entry.payload.byteOffset).getUint32(0)).toBe(value);
    }
  } finally {
    client.close();
  }
}, 60_000);
