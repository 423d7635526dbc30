/**
 * The admin client's connection handling. A node that starts late: calls made while nothing
 * listened put the channel into reconnect back-off; once the node listens, the next call must
 * reach it within its own deadline instead of failing at once with the stale "connection
 * refused". A node that is down: leader discovery must not wait out its deadline every round.
 */
import * as net from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { ProcessCluster, waitFor } from '../support/process-cluster.js';

let cluster: ProcessCluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

const listens = (address: string): Promise<boolean> => new Promise((resolve) => {
  const [host, port] = address.split(':');
  const socket = net.connect(Number(port), host, () => { socket.destroy(); resolve(true); });
  socket.once('error', () => resolve(false));
});

it('reaches a node that started after earlier calls to it were refused', async () => {
  cluster = new ProcessCluster({ nodeCount: 3 });
  await cluster.prepare();
  const client = cluster.client();
  const address = cluster.address('n1');
  try {
    // ~4 s of refused connections: grpc's default back-off would have grown past 2.5 s by now.
    const probeUntil = Date.now() + 4_000;
    while (Date.now() < probeUntil) await expect(client.status(address, 300)).rejects.toThrow();
    cluster.startNode('n1');
    await waitFor('n1 to listen', () => listens(address), 10_000);
    const status = await client.status(address, 1_500);
    expect(status.role).not.toBe('leader'); // alone of three, it cannot win an election
  } finally {
    client.close();
  }
});

it('finds the leader without waiting out a member that is down', async () => {
  cluster = new ProcessCluster({ nodeCount: 3 });
  await cluster.start();
  const client = cluster.client();
  try {
    const leader = cluster.idOf(await client.findLeader(10_000));
    await cluster.signal(cluster.members.find((m) => m.id !== leader)!.id, 'SIGKILL');
    const took: number[] = [];
    for (let i = 0; i < 5; i++) {
      const started = Date.now();
      expect(cluster.idOf(await client.findLeader(5_000))).toBe(leader);
      took.push(Date.now() - started);
    }
    // One probe round has a 500 ms deadline: waiting it out for the dead node would take that long.
    expect(took.sort((a, b) => a - b)[2]).toBeLessThan(250);
  } finally {
    client.close();
  }
});
