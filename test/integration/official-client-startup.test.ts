/**
 * The official Node client (1.0.8) sends its settings once the first topic's route is known
 * but only listens for the answer after all its topics' routes are fetched; an answer in
 * between is lost and `startup()` never resolves. A topic that does not exist makes the gap
 * certain (its route is retried for ~3 s). The broker repeats its settings answer, so the
 * producer still starts (and a send to the missing topic fails clearly).
 */
import { Producer } from 'rocketmq-client-nodejs';
import { afterAll, describe, expect, it } from 'vitest';
import { BrokerCluster } from '../support/broker-cluster.js';
import { isConnectionReset, UncaughtGuard } from '../support/uncaught-guard.js';

describe('official client startup', () => {
  const cluster = new BrokerCluster({ autoCreateTopics: false });
  let producer: Producer | undefined;
  const uncaught = new UncaughtGuard();
  afterAll(async () => {
    await Promise.race([producer?.shutdown().catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 10_000))]);
    await cluster.stop();
    await new Promise((resolve) => setTimeout(resolve, 500));
    uncaught.release();
  });

  it('starts a producer whose settings answer came while it was still fetching routes', async () => {
    await cluster.start();
    await cluster.admin.createTopic('exists', { readQueues: 1, writeQueues: 1 });
    producer = new Producer({ endpoints: cluster.accessPoint, topics: ['exists', 'missing'], requestTimeout: 3000 } as never);
    const startedAt = Date.now();
    await Promise.race([producer.startup(), new Promise((_, reject) => setTimeout(() => reject(new Error('startup did not finish within 40 s')), 40_000))]);
    console.log(`official producer started in ${Date.now() - startedAt} ms`);
    const receipt = await producer.send({ topic: 'exists', body: Buffer.from('after startup') });
    expect(receipt.messageId).not.toBe('');
    await expect(producer.send({ topic: 'missing', body: Buffer.from('x') })).rejects.toThrow();
    expect(uncaught.caught.map((u) => u.error).filter((e) => !isConnectionReset(e))).toEqual([]);
  }, 90_000);
});
