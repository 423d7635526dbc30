/**
 * Issue 12 item 6, per-client limits, on real processes: brokers started with
 * --client-requests-max 2 and --client-polls-max 2. A client with more calls in flight or more
 * long polls waiting than that is answered TOO_MANY_REQUESTS at once for the excess (definite:
 * nothing stored), another client is served meanwhile, and every send answered OK is stored.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer } from '../../src/client/producer.js';
import { SimpleConsumer } from '../../src/client/simple-consumer.js';
import { BrokerCluster } from '../support/broker-cluster.js';
import { waitFor } from '../support/process-cluster.js';

const cluster = new BrokerCluster({ extraArgs: ['--client-requests-max', '2', '--client-polls-max', '2'] });

beforeAll(async () => {
  await cluster.start();
  await cluster.admin.createTopic('limited', { readQueues: 1, writeQueues: 1 });
  await cluster.admin.createTopic('quiet', { readQueues: 1, writeQueues: 1 });
}, 60_000);

afterAll(async () => {
  await cluster.stop();
});

describe('per-client limits', () => {
  it('calls beyond a client\'s cap are refused with TOO_MANY_REQUESTS and store nothing; those served are stored', async () => {
    const producer = new Producer({ nameServers: [cluster.namesrv] });
    try {
      const [group] = (await producer.connection.requireRoutes('limited')).map((g) => g.group);
      const ids = Array.from({ length: 12 }, () => `LIMIT-${randomUUID()}`);
      const answers = await Promise.all(ids.map((messageId) => producer.connection.unary(group as string, 'SendMessage', {
        messages: [{ topic: { name: 'limited' }, systemProperties: { messageId, bodyEncoding: 'IDENTITY', messageType: 'NORMAL' }, body: Buffer.alloc(64 * 1024, 1) }],
      }, { timeoutMs: 10_000 })));
      const codes = answers.map((answer) => String(answer.status?.code));
      expect(codes.filter((code) => code === 'TOO_MANY_REQUESTS').length).toBeGreaterThan(0);
      expect(codes.every((code) => code === 'OK' || code === 'TOO_MANY_REQUESTS')).toBe(true);
      expect(answers.find((answer) => answer.status?.code === 'TOO_MANY_REQUESTS')?.status?.message).toMatch(/this client has 2 calls being served by this node already/);
      const stored = ids.filter((_, i) => codes[i] === 'OK');
      const found = await Promise.all(ids.map(async (id) => (await cluster.admin.getMessage(id, { topic: 'limited' })).items.length));
      expect(ids.filter((_, i) => (found[i] as number) > 0).sort()).toEqual([...stored].sort());
      // Once the calls are answered the client's slots are free again.
      await producer.send({ topic: 'limited', body: Buffer.from('after') });
    } finally {
      producer.shutdown();
    }
  }, 60_000);

  it('a third long poll of one client is refused at once while its two wait; another client polls meanwhile', async () => {
    const consumer = new SimpleConsumer({ nameServers: [cluster.namesrv], group: 'pollers', awaitMs: 4_000 });
    const other = new SimpleConsumer({ nameServers: [cluster.namesrv], group: 'pollers', awaitMs: 1_000 });
    consumer.subscribe('quiet');
    other.subscribe('quiet');
    try {
      await consumer.connection.requireRoutes('quiet');
      const waiting = [consumer.receive(1), consumer.receive(1)];
      await new Promise((resolve) => setTimeout(resolve, 500));
      const startedMs = Date.now();
      await expect(consumer.receive(1)).rejects.toThrow(/TOO_MANY_REQUESTS|long polls waiting/);
      expect(Date.now() - startedMs).toBeLessThan(1_500);
      expect(await other.receive(1)).toEqual([]);
      expect(await Promise.all(waiting)).toEqual([[], []]);
      await waitFor('the slots free again', async () => (await consumer.receive(1).then(() => true, () => false)), 10_000);
    } finally {
      consumer.shutdown();
      other.shutdown();
    }
  }, 60_000);
});
