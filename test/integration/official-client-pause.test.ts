/**
 * The official RocketMQ 5 Node client through the access point while the leader is paused
 * (SIGSTOP: its sockets stay open, it just stops answering). A new leader is elected within
 * about a second; sends in flight to the paused one must reach it within the client's own
 * attempt (none may wait out its 3 s), so the application sees no error at all.
 */
import { Producer } from 'rocketmq-client-nodejs';
import { afterAll, describe, expect, it, onTestFailed } from 'vitest';
import { BrokerCluster } from '../support/broker-cluster.js';
import { UncaughtGuard } from '../support/uncaught-guard.js';

describe('official client and a paused leader', () => {
  const cluster = new BrokerCluster({ autoCreateTopics: false });
  let producer: Producer | undefined;
  let paused: string | undefined;
  // Late connection resets from the official client are tolerated after shutdown only (UncaughtGuard).
  const uncaught = new UncaughtGuard();
  afterAll(async () => {
    uncaught.shutdownBegins();
    if (paused !== undefined) await cluster.local.signal(paused, 'SIGCONT').catch(() => undefined);
    await Promise.race([producer?.shutdown().catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 10_000))]);
    await cluster.stop();
    await new Promise((resolve) => setTimeout(resolve, 500));
    uncaught.release();
    expect(uncaught.unexpected()).toEqual([]);
  });

  it('sends with no application error across an 8 s SIGSTOP of the leader', async () => {
    onTestFailed(() => { console.log(`node output (tail):\n${cluster.output().slice(-8_000)}`); });
    await cluster.start();
    await cluster.admin.createTopic('paused', { readQueues: 4, writeQueues: 4 });
    producer = new Producer({ endpoints: cluster.accessPoint, topics: ['paused'], requestTimeout: 3000 } as never);
    await producer.startup();

    const total = 1_500;
    const errors: string[] = [];
    let acked = 0;
    let slowestMs = 0;
    let next = 0;
    let resumed: Promise<void> | undefined;
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (next < total) {
        const i = next++;
        const startedAt = Date.now();
        try {
          await producer!.send({ topic: 'paused', body: Buffer.from(`paused-${i}`) });
          acked++;
          slowestMs = Math.max(slowestMs, Date.now() - startedAt);
        } catch (error) {
          errors.push(`${i}: ${(error as Error).message}`);
        }
        if (acked >= 200 && paused === undefined) {
          paused = (await cluster.leader()).nodeId;
          await cluster.local.signal(paused, 'SIGSTOP');
          const id = paused;
          resumed = new Promise((resolve) => setTimeout(resolve, 8_000)).then(() => cluster.local.signal(id, 'SIGCONT'));
        }
      }
    }));
    await resumed;
    expect(paused).toMatch(/^n\d$/);
    expect(errors).toEqual([]);
    expect(acked).toBe(total);
    console.log(`paused ${paused}: ${acked} acknowledged, slowest send ${slowestMs} ms`);
    // No send spent a whole attempt (3 s) waiting on the paused node before trying again.
    expect(slowestMs).toBeLessThan(3_000);
    expect(uncaught.caught).toEqual([]);
  }, 120_000);
});
