/**
 * Issue 3's headline: our Producer sends 20,000 messages over 8 queues while the test
 * SIGKILLs the leader twice; a consumer group then drains everything. Every acknowledged
 * message is read, nothing that failed definitely appears, each queue reads back in offset
 * order at the offsets the sends were acknowledged with, and nothing is duplicated except
 * after an unknown-outcome send.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { MQClientError } from '../../src/client/mq-connection.js';
import { Producer, type SendReceipt } from '../../src/client/producer.js';
import { PullConsumer } from '../../src/client/pull-consumer.js';
import { BrokerCluster } from '../support/broker-cluster.js';
import { waitFor } from '../support/process-cluster.js';

const total = 20_000;
const inflight = 64;

describe('broker failover with real processes', () => {
  const cluster = new BrokerCluster({ autoCreateTopics: false });
  afterAll(() => cluster.stop());

  it('loses no acknowledged message across two leader SIGKILLs, and the group drains in queue order', async () => {
    await cluster.start();
    await cluster.admin.createTopic('orders', { readQueues: 8, writeQueues: 8 });
    const producer = new Producer({ nameServers: [cluster.namesrv], sendTimeoutMs: 15_000, retries: 5 });
    const acked = new Map<string, SendReceipt>();
    const failedDefinite = new Set<string>();
    const unknown = new Set<string>();
    let next = 0;
    const kills: string[] = [];
    const killer = (async () => {
      await waitFor('5,000 acknowledged sends', () => acked.size >= 5_000, 60_000);
      const first = await cluster.killLeader();
      kills.push(first);
      cluster.restart(first); // back as a follower, so the second kill still leaves a quorum
      await waitFor('12,000 acknowledged sends', () => acked.size >= 12_000, 60_000);
      kills.push(await cluster.killLeader());
    })();
    const worker = async (): Promise<void> => {
      while (next < total) {
        const body = `m-${next++}`;
        try {
          acked.set(body, await producer.send({ topic: 'orders', body }));
        } catch (error) {
          if (error instanceof MQClientError && error.definite) failedDefinite.add(body);
          else unknown.add(body);
        }
      }
    };
    await Promise.all(Array.from({ length: inflight }, worker));
    await killer;
    producer.shutdown();
    console.log(`failover run: ${acked.size} acknowledged, ${failedDefinite.size} failed, ${unknown.size} unknown; killed ${kills.join(', ')}`);
    expect(kills).toHaveLength(2);
    expect(acked.size + failedDefinite.size + unknown.size).toBe(total);
    expect(acked.size).toBeGreaterThan(total * 0.9);

    const consumer = new PullConsumer({ nameServers: [cluster.namesrv], group: 'drain', pullBatchSize: 256 });
    consumer.subscribe('orders');
    await consumer.start();
    const reads = new Map<string, { queueId: number; offset: number }[]>();
    const lastOffset = new Map<number, number>();
    let orderViolations = 0;
    const missing = (): number => [...acked.keys()].filter((body) => !reads.has(body)).length;
    const until = Date.now() + 60_000;
    while (missing() > 0 && Date.now() < until) {
      for (const message of await consumer.poll(500, 1024)) {
        const body = message.body.toString();
        if ((lastOffset.get(message.queueId) ?? -1) >= message.offset) orderViolations++;
        lastOffset.set(message.queueId, message.offset);
        reads.set(body, [...(reads.get(body) ?? []), { queueId: message.queueId, offset: message.offset }]);
      }
    }
    await consumer.shutdown();

    expect(missing()).toBe(0);
    expect([...failedDefinite].filter((body) => reads.has(body))).toEqual([]);
    expect(orderViolations).toBe(0);
    const misplaced = [...acked].filter(([body, receipt]) => !(reads.get(body) ?? []).some((r) => r.queueId === receipt.queueId && r.offset === receipt.offset));
    expect(misplaced).toEqual([]);
    const duplicated = [...reads].filter(([body, copies]) => copies.length > 1 && !unknown.has(body));
    expect(duplicated).toEqual([]);
    const unexpected = [...reads.keys()].filter((body) => !acked.has(body) && !unknown.has(body));
    expect(unexpected).toEqual([]);
  }, 180_000);
});
