/**
 * F23: the official RocketMQ 5 Node client (`rocketmq-client-nodejs`), unchanged, against a
 * real cluster through the access point: Producer, SimpleConsumer and PushConsumer, normal
 * and FIFO, with the leader SIGKILLed in the middle of each send run. The application must
 * see no send error and every acknowledged message must be consumed.
 */
import { PushConsumer, Producer, SimpleConsumer } from 'rocketmq-client-nodejs';
import { afterAll, describe, expect, it, onTestFailed } from 'vitest';
import { Admin } from '../../src/client/admin.js';
import { BrokerCluster } from '../support/broker-cluster.js';
import { waitFor } from '../support/process-cluster.js';
import { UncaughtGuard } from '../support/uncaught-guard.js';

/** `promise`, or a clear failure naming `what` once `ms` have passed (a stalled step must not eat the whole test timeout silently). */
async function within<T>(what: string, ms: number, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms); });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

async function sendAll(count: number, concurrency: number, send: (i: number) => Promise<string>, onProgress: (done: number) => void): Promise<{ ids: Map<number, string>; errors: string[] }> {
  const ids = new Map<number, string>();
  const errors: string[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) {
      const i = next++;
      try {
        ids.set(i, await send(i));
      } catch (error) {
        errors.push(`${i}: ${(error as Error).message}`);
      }
      onProgress(ids.size);
    }
  }));
  return { ids, errors };
}

describe('official rocketmq-client-nodejs through the access point', () => {
  const cluster = new BrokerCluster({ autoCreateTopics: false });
  const closers: (() => Promise<unknown>)[] = [];
  // Late connection resets from the official client are tolerated after shutdown only (UncaughtGuard).
  const uncaught = new UncaughtGuard();
  afterAll(async () => {
    uncaught.shutdownBegins();
    // The official PushConsumer's shutdown waits out its long polls (≤ 23 s); never let it hang the suite.
    for (const close of closers.reverse()) await Promise.race([close().catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 30_000))]);
    await cluster.stop();
    await new Promise((resolve) => setTimeout(resolve, 500));
    uncaught.release();
    expect(uncaught.unexpected()).toEqual([]);
  });

  it('sends normal and FIFO messages across leader kills without an application error, and the consumers get every one', async () => {
    // Stage marks go to stdout so that a run that stalls says where.
    const startedAt = Date.now();
    const stages: string[] = [];
    const stage = (what: string): void => { stages.push(`+${Date.now() - startedAt} ms: ${what}`); console.log(`official-client ${stages.at(-1)}`); };
    onTestFailed(() => { console.log(`official-client stages:\n${stages.join('\n')}\nnode output (tail):\n${cluster.output().slice(-8_000)}`); });
    await cluster.start();
    stage('cluster started');
    await cluster.admin.createTopic('plain', { readQueues: 4, writeQueues: 4 });
    await cluster.admin.createTopic('ordered', { readQueues: 4, writeQueues: 4, messageType: 'FIFO' });
    await cluster.admin.createGroup('fifo-readers', { fifo: true });
    const endpoints = cluster.accessPoint;

    const producer = new Producer({ endpoints, topics: ['plain', 'ordered'], requestTimeout: 3000 } as never);
    await within('producer startup', 20_000, producer.startup());
    closers.push(() => producer.shutdown());
    stage('producer started');

    // Normal messages, leader killed after 150 acknowledgements.
    let killed: string | undefined;
    const normal = await within('600 normal sends', 60_000, sendAll(600, 8, async (i) => (await producer.send({ topic: 'plain', tag: i % 2 === 0 ? 'even' : 'odd', body: Buffer.from(`plain-${i}`) })).messageId, (done) => {
      if (done >= 150 && killed === undefined) {
        killed = 'pending';
        void cluster.killLeader().then((id) => { killed = id; });
      }
    }));
    await waitFor('the kill to finish', () => killed !== 'pending' && killed !== undefined, 10_000);
    expect(normal.errors).toEqual([]);
    stage(`normal sends done, killed ${killed}`);
    cluster.restart(killed as string);

    // FIFO messages: 4 message groups, each sent in order; the leader is killed mid-run again.
    let killedAgain: string | undefined;
    const perGroup = 75;
    const fifo = await within('300 FIFO sends', 60_000, sendAll(4, 4, async (g) => {
      for (let n = 0; n < perGroup; n++) {
        await producer.send({ topic: 'ordered', messageGroup: `group-${g}`, body: Buffer.from(`${g}:${n}`) });
        if (g === 0 && n === 30 && killedAgain === undefined) {
          killedAgain = 'pending';
          await waitFor('the restarted node to rejoin', async () => (await cluster.admin.cluster()).filter((node) => node.lag === 0).length === 3, 20_000).catch(() => undefined);
          killedAgain = await cluster.killLeader();
        }
      }
      return `group-${g}`;
    }, () => undefined));
    expect(fifo.errors).toEqual([]);
    expect(killedAgain).toMatch(/^n\d$/);
    stage(`FIFO sends done, killed ${killedAgain}`);

    // SimpleConsumer reads every acknowledged normal message, filtered by tag.
    const simple = new SimpleConsumer({ endpoints, consumerGroup: 'simple-readers', subscriptions: new Map([['plain', 'even || odd']]), awaitDuration: 2000, requestTimeout: 3000 } as never);
    await within('simple consumer startup', 20_000, simple.startup());
    closers.push(() => simple.shutdown());
    stage('simple consumer started');
    const seen = new Set<string>();
    const expected = new Set(normal.ids.values());
    const until = Date.now() + 60_000;
    while ([...expected].some((id) => !seen.has(id)) && Date.now() < until) {
      for (const message of await within('a receive', 30_000, simple.receive(32, 20_000))) {
        seen.add(message.messageId);
        await within('an ack', 10_000, simple.ack(message));
      }
    }
    expect([...expected].filter((id) => !seen.has(id))).toEqual([]);
    stage('simple consumer read every message');

    // PushConsumer (FIFO group): every message, and each message group in order.
    const received = new Map<string, number[]>();
    const push = new PushConsumer({
      endpoints, consumerGroup: 'fifo-readers', subscriptions: new Map([['ordered', '*']]), requestTimeout: 3000,
      messageListener: {
        consume: async (message: { body: Buffer }) => {
          const [group, n] = message.body.toString().split(':') as [string, string];
          received.set(group, [...(received.get(group) ?? []), Number(n)]);
          return 'SUCCESS';
        },
      },
    } as never);
    await within('push consumer startup', 20_000, push.startup());
    closers.push(() => push.shutdown());
    stage('push consumer started');
    await waitFor('every FIFO message pushed', () => [...received.values()].reduce((sum, list) => sum + new Set(list).size, 0) >= 4 * perGroup, 60_000);
    for (let g = 0; g < 4; g++) {
      const list = received.get(String(g)) ?? [];
      const firstSeen = list.filter((n, i) => list.indexOf(n) === i);
      expect(firstSeen).toEqual(Array.from({ length: perGroup }, (_, n) => n));
    }
    expect(uncaught.caught).toEqual([]);
  }, 180_000);

  it('stores each message in the queue its send receipt names, at the receipt\'s offset', async () => {
    if (cluster.namesrv === '') await cluster.start();
    await cluster.admin.createTopic('receipts', { readQueues: 4, writeQueues: 4 });
    const producer = new Producer({ endpoints: cluster.accessPoint, topics: ['receipts'], requestTimeout: 3000 } as never);
    await producer.startup();
    closers.push(() => producer.shutdown());
    const receipts = new Map<string, { queueId: number; offset: number }>();
    for (let i = 0; i < 12; i++) {
      const receipt = await producer.send({ topic: 'receipts', body: Buffer.from(`r${i}`) } as never) as { messageId: string; offset: number; messageQueue: { queueId: number } };
      receipts.set(receipt.messageId, { queueId: receipt.messageQueue.queueId, offset: Number(receipt.offset) });
    }
    const reader = new Admin({ nameServers: [cluster.namesrv] });
    const stored = new Map<string, { queueId: number; offset: number }>();
    for (let queueId = 0; queueId < 4; queueId++) {
      for (const message of (await reader.readQueue('g1', 'receipts', queueId, 0, 100)).messages) stored.set(message.messageId, { queueId, offset: message.offset });
    }
    reader.close();
    expect(stored).toEqual(receipts);
  }, 60_000);
});
