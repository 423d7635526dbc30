/**
 * F4/F10 with real processes: broadcasting, rebalance as members join and leave, offset
 * reset by time, dead-lettering after max delivery attempts, and committed consumer offsets
 * surviving a leader SIGKILL (no rewind beyond the last commit), and a consumer that shuts
 * down cleanly while its whole broker group is down.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer } from '../../src/client/producer.js';
import { PullConsumer } from '../../src/client/pull-consumer.js';
import { SimpleConsumer } from '../../src/client/simple-consumer.js';
import { BrokerCluster } from '../support/broker-cluster.js';
import { waitFor } from '../support/process-cluster.js';

async function drain(consumer: PullConsumer, count: number, timeoutMs = 20_000): Promise<string[]> {
  const bodies: string[] = [];
  const until = Date.now() + timeoutMs;
  while (bodies.length < count && Date.now() < until) {
    for (const m of await consumer.poll(300, 256)) bodies.push(m.body.toString());
  }
  return bodies;
}

describe('consumers against real processes', () => {
  const cluster = new BrokerCluster({ autoCreateTopics: false });
  let producer: Producer;
  beforeAll(async () => {
    await cluster.start();
    producer = new Producer({ nameServers: [cluster.namesrv], sendTimeoutMs: 10_000 });
  }, 60_000);
  afterAll(async () => {
    producer?.shutdown();
    await cluster.stop();
  });

  const sendBodies = async (topic: string, prefix: string, count: number): Promise<void> => {
    for (let i = 0; i < count; i += 50) {
      await Promise.all(Array.from({ length: Math.min(50, count - i) }, (_, j) => producer.send({ topic, body: `${prefix}-${i + j}` })));
    }
  };

  it('broadcasting: every member reads every message', async () => {
    await cluster.admin.createTopic('news', { readQueues: 4, writeQueues: 4 });
    const members = [0, 1].map(() => new PullConsumer({ nameServers: [cluster.namesrv], group: 'readers', mode: 'broadcasting' }).subscribe('news'));
    for (const m of members) await m.start();
    await sendBodies('news', 'n', 200);
    const [a, b] = await Promise.all(members.map((m) => drain(m, 200)));
    for (const m of members) await m.shutdown();
    expect(new Set(a).size).toBe(200);
    expect(new Set(b).size).toBe(200);
  }, 60_000);

  it('clustering: queues are shared when a member joins and handed back when it leaves', async () => {
    await cluster.admin.createTopic('jobs', { readQueues: 8, writeQueues: 8 });
    const first = new PullConsumer({ nameServers: [cluster.namesrv], group: 'workers', rebalanceIntervalMs: 300 }).subscribe('jobs');
    await first.start();
    expect(first.assignment()).toHaveLength(8);
    const second = new PullConsumer({ nameServers: [cluster.namesrv], group: 'workers', rebalanceIntervalMs: 300 }).subscribe('jobs');
    await second.start();
    await waitFor('an even split', () => first.assignment().length === 4 && second.assignment().length === 4, 10_000);
    const owned = new Set([...first.assignment(), ...second.assignment()].map((q) => q.queueId));
    expect(owned.size).toBe(8);
    await second.shutdown();
    await waitFor('the remaining member to own every queue again', () => first.assignment().length === 8, 10_000);
    await sendBodies('jobs', 'j', 80);
    expect(new Set(await drain(first, 80)).size).toBe(80);
    await first.shutdown();
  }, 60_000);

  it('resets a group to a time and reads from there again', async () => {
    await cluster.admin.createTopic('history', { readQueues: 2, writeQueues: 2 });
    await sendBodies('history', 'old', 20);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const cut = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 50));
    await sendBodies('history', 'new', 20);
    const consumer = new PullConsumer({ nameServers: [cluster.namesrv], group: 'auditors' }).subscribe('history');
    await consumer.start();
    expect((await drain(consumer, 40)).length).toBe(40);
    await consumer.seekToTime('history', cut);
    const again = await drain(consumer, 20);
    await consumer.shutdown();
    expect(again.sort()).toEqual(Array.from({ length: 20 }, (_, i) => `new-${i}`).sort());
    // The admin command does the same for a group that is not running.
    await cluster.admin.resetOffset('auditors', 'history', cut);
    const groups = await cluster.admin.listGroups();
    const committed = groups.find((g) => g.name === 'auditors')?.queues.reduce((sum, q) => sum + q.offset, 0);
    expect(committed).toBe(20);
  }, 60_000);

  it('moves a message to %DLQ%<group> after the group\'s max delivery attempts', async () => {
    await cluster.admin.createTopic('fragile', { readQueues: 1, writeQueues: 1 });
    await cluster.admin.createGroup('picky', { maxDeliveryAttempts: 2 });
    await producer.send({ topic: 'fragile', body: 'poison' });
    const consumer = new SimpleConsumer({ nameServers: [cluster.namesrv], group: 'picky', awaitMs: 1_000 }).subscribe('fragile');
    const attempts: number[] = [];
    const until = Date.now() + 20_000;
    while (attempts.length < 2 && Date.now() < until) {
      for (const m of await consumer.receive(1, 1_000)) attempts.push(m.deliveryAttempt); // never acknowledged
    }
    expect(attempts).toEqual([1, 2]);
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    expect(await consumer.receive(1, 1_000)).toEqual([]); // the third receive dead-letters it
    consumer.shutdown();
    const dlq = new SimpleConsumer({ nameServers: [cluster.namesrv], group: 'dlq-inspector', awaitMs: 2_000 }).subscribe('%DLQ%picky');
    const dead = await dlq.receive(1, 10_000);
    dlq.shutdown();
    expect(dead.map((m) => [m.body.toString(), m.properties.__ORIGIN_TOPIC])).toEqual([['poison', 'fragile']]);
  }, 60_000);

  it('keeps committed offsets across a leader SIGKILL: no rewind beyond the last commit', async () => {
    await cluster.admin.createTopic('ledger', { readQueues: 4, writeQueues: 4 });
    await sendBodies('ledger', 'l', 100);
    const consumer = new PullConsumer({ nameServers: [cluster.namesrv], group: 'bookkeepers', autoCommitIntervalMs: 0 }).subscribe('ledger');
    await consumer.start();
    expect((await drain(consumer, 60, 10_000)).length).toBeGreaterThanOrEqual(60);
    await consumer.commit();
    const committed = (await cluster.admin.listGroups()).find((g) => g.name === 'bookkeepers')?.queues.reduce((sum, q) => sum + q.offset, 0) ?? 0;
    await consumer.shutdown();
    const killed = await cluster.killLeader();
    cluster.restart(killed);
    await cluster.leader();
    const after = (await cluster.admin.listGroups()).find((g) => g.name === 'bookkeepers')?.queues.reduce((sum, q) => sum + q.offset, 0);
    expect(after).toBe(committed);
    const resumed = new PullConsumer({ nameServers: [cluster.namesrv], group: 'bookkeepers' }).subscribe('ledger');
    await resumed.start();
    const rest = await drain(resumed, 100 - committed, 10_000);
    await resumed.shutdown();
    expect(rest.length).toBe(100 - committed);
  }, 90_000);

  // A smoke run's drain once died here: the group was down, a background rebalance failed,
  // and shutdown() rethrew that failure instead of closing.
  it('shuts down cleanly while a background rebalance fails because the whole group is down', async () => {
    await cluster.admin.createTopic('outage', { readQueues: 2, writeQueues: 2 });
    const consumer = new PullConsumer({ nameServers: [cluster.namesrv], group: 'outage-readers', rebalanceIntervalMs: 100, leaderWaitMs: 1_500, requestTimeoutMs: 500 }).subscribe('outage');
    await consumer.start();
    const killed = await cluster.killAll();
    await new Promise((resolve) => setTimeout(resolve, 300)); // a rebalance is under way, bound to fail
    await expect(consumer.shutdown()).resolves.toBeUndefined();
    for (const id of killed) cluster.restart(id);
    await cluster.leader(30_000);
  }, 60_000);
});
