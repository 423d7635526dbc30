/**
 * Operator commands on real processes: leadership transfer hands over to the named member;
 * a fourth node joins by a single-server change and catches up; the leader removes itself,
 * steps down, and the remaining members elect a leader and keep committing.
 */
import { afterEach, expect, it } from 'vitest';
import { freePorts } from '../../src/cli/local-cluster.js';
import { ProcessCluster, waitFor } from '../support/process-cluster.js';

let cluster: ProcessCluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

it('transfers leadership, adds a member that catches up, and survives the leader removing itself', async () => {
  cluster = new ProcessCluster({ nodeCount: 3 });
  await cluster.start();
  const client = cluster.client();
  let step = 'start';
  try {
    const leader = cluster.idOf(await client.findLeader(10_000));
    for (let i = 0; i < 200; i++) await client.propose(new Uint8Array(100).fill(i));

    step = 'transfer';
    const target = cluster.members.find((m) => m.id !== leader)!.id;
    await client.transferLeadership(target);
    await waitFor(`${target} to lead`, async () => (await client.status(cluster!.address(target))).role === 'leader', 5_000);

    step = 'add';
    const [port] = await freePorts(1);
    const joiner = cluster.addMember(port!);
    cluster.startNode(joiner);
    await client.changeMembership({ add: { id: joiner, address: cluster.address(joiner) } });
    for (let i = 0; i < 100; i++) await client.propose(new Uint8Array(100).fill(i));
    const leaderStatus = await client.status(cluster.address(target));
    expect(leaderStatus.members.map((m) => m.id).sort()).toEqual(['n1', 'n2', 'n3', 'n4']);
    await waitFor(`${joiner} to catch up`, async () => (await client.status(cluster!.address(joiner))).appliedIndex >= leaderStatus.commitIndex, 10_000);

    step = 'remove';
    await client.changeMembership({ removeId: target });
    await waitFor('a new leader among the remaining members', async () => {
      const statuses = await client.statusAll();
      return statuses.some((s) => s.status?.role === 'leader' && s.status.nodeId !== target && s.status.members.length === 3);
    }, 10_000);
    const after = await client.propose(new Uint8Array(8));
    expect(after.index).toBeGreaterThan(leaderStatus.commitIndex);
    const removed = await client.status(cluster.address(target));
    expect(removed.role).not.toBe('leader');
  } catch (error) {
    throw new Error(`failed at step ${step}: ${(error as Error).message}\n${[...cluster.output].map(([id, lines]) => `${id}: ${lines.join('').slice(-2000)}`).join('\n')}`, { cause: error });
  } finally {
    client.close();
  }
}, 60_000);
