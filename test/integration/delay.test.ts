/**
 * F8, delayed and scheduled messages, on real processes: our Producer (delay levels and
 * absolute times) and the official rocketmq-client-nodejs Producer (`delay`, through the
 * access point) send messages due in 1-3 s; a consumer sees none before its delivery time and
 * all after, and the lateness (due → first receive, on this host's clock, which the brokers
 * share) is printed. The leader is SIGKILLed while timers are pending: all are still delivered,
 * each stored once. The whole group is killed and restarted from its snapshots (whose timers
 * are positions in the timer files): the pending ones are still delivered. A recall cancels a
 * pending message (ours and the official client's); a recall of a delivered one, a bad handle,
 * and bad delivery times are refused with RocketMQ's codes.
 */
import { Producer as OfficialProducer } from 'rocketmq-client-nodejs';
import { afterAll, describe, expect, it, onTestFailed } from 'vitest';
import { Producer } from '../../src/client/producer.js';
import { SimpleConsumer } from '../../src/client/simple-consumer.js';
import { BrokerCluster } from '../support/broker-cluster.js';
import { waitFor } from '../support/process-cluster.js';
import { codeOf, percentile, Receiver } from '../support/receiver.js';
import { shutDownGuarded, UncaughtGuard } from '../support/uncaught-guard.js';

const maxDelayMs = 600_000;

describe('delayed and scheduled messages on a real cluster', () => {
  // Snapshots often, so that the restarted group restores its timers from snapshots.
  const cluster = new BrokerCluster({ autoCreateTopics: false, extraArgs: ['--snapshot-entries', '20', '--timer-max-delay-ms', String(maxDelayMs)] });
  const closers: (() => unknown)[] = [];
  // Late connection resets from the official client are tolerated after shutdown only (UncaughtGuard).
  const uncaught = new UncaughtGuard();
  afterAll(async () => {
    expect(await shutDownGuarded(uncaught, closers, () => cluster.stop())).toEqual([]);
  });

  it('delivers at the delivery time, through a leader kill and a whole-group restart; recalls; refuses bad times', async () => {
    onTestFailed(() => { console.log(`node output (tail):\n${cluster.output().slice(-8_000)}`); });
    await cluster.start();
    await cluster.admin.createTopic('later', { readQueues: 4, writeQueues: 4, messageType: 'MIXED' });
    await cluster.admin.createTopic('plain', { readQueues: 2, writeQueues: 2, messageType: 'NORMAL' });
    const producer = new Producer({ nameServers: [cluster.namesrv], sendTimeoutMs: 8_000 });
    closers.push(() => producer.shutdown());
    const consumer = new SimpleConsumer({ nameServers: [cluster.namesrv], group: 'delayed-readers', awaitMs: 2_000 }).subscribe('later');
    closers.push(() => consumer.shutdown());
    const receiver = new Receiver(consumer);
    closers.push(() => receiver.stop());
    const official = new OfficialProducer({ endpoints: cluster.accessPoint, topics: ['later'], requestTimeout: 3000 } as never);
    await official.startup();
    closers.push(() => official.shutdown());
    /** Message id → its delivery time. */
    const due = new Map<string, number>();

    // 1. Our client (level 1 = 1 s, and absolute times 1-3 s ahead) and the official client (`delay`).
    await Promise.all([
      ...Array.from({ length: 40 }, async (_, i) => {
        const deliveryTimeMs = i % 2 === 0 ? undefined : Date.now() + 1_000 + (i % 5) * 500;
        const sentAt = Date.now();
        const receipt = await producer.send({ topic: 'later', body: `ours-${i}`, ...(deliveryTimeMs === undefined ? { delayLevel: 1 } : { deliveryTimeMs }) });
        expect(receipt.recallHandle).toMatch(/^d1~/);
        due.set(receipt.messageId, deliveryTimeMs ?? sentAt + 1_000);
      }),
      ...Array.from({ length: 20 }, async (_, i) => {
        const delay = 1_000 + (i % 3) * 1_000;
        const sentAt = Date.now();
        const receipt = await official.send({ topic: 'later', body: Buffer.from(`official-${i}`), delay } as never) as { messageId: string; recallHandle: string };
        expect(receipt.recallHandle).toMatch(/^d1~/);
        due.set(receipt.messageId, sentAt + delay);
      }),
    ]);
    // Recalls: ours and the official client's (through the access point), while pending.
    const recalledOurs = await producer.send({ topic: 'later', body: 'recall-me', deliveryTimeMs: Date.now() + 3_000 });
    expect(await producer.recallMessage('later', recalledOurs.recallHandle)).toBe(recalledOurs.messageId);
    const recalledOfficial = await official.send({ topic: 'later', body: Buffer.from('recall-me-too'), delay: 3_000 } as never) as { messageId: string; recallHandle: string };
    expect((await official.recallMessage('later', recalledOfficial.recallHandle)).messageId).toBe(recalledOfficial.messageId);
    // A second recall finds nothing pending; a handle that is not one, or for another topic, is refused.
    expect(await codeOf(producer.recallMessage('later', recalledOurs.recallHandle))).toBe('NOT_FOUND');
    expect(await codeOf(producer.recallMessage('plain', recalledOurs.recallHandle))).toBe('INVALID_RECEIPT_HANDLE');
    expect(await codeOf(producer.recallMessage('later', `${recalledOurs.recallHandle.split('~').slice(0, 3).join('~')}~x`))).toBe('INVALID_RECEIPT_HANDLE');

    await waitFor('every delayed message of part 1 received', () => [...due.keys()].every((id) => receiver.firstSeen.has(id)), 15_000);
    const lateness = [...due].map(([id, dueMs]) => (receiver.firstSeen.get(id)?.atMs ?? NaN) - dueMs);
    expect(Math.min(...lateness)).toBeGreaterThanOrEqual(0);
    console.log(`lateness (due → first receive) over ${lateness.length} messages: p50 ${percentile(lateness, 50)} ms, p99 ${percentile(lateness, 99)} ms, max ${Math.max(...lateness)} ms`);
    for (const [id, { message }] of receiver.firstSeen) if (due.has(id)) expect(message.storeTimestampMs).toBeGreaterThanOrEqual(due.get(id) as number);
    // A recall of a delivered message: NOT_FOUND, and nothing changes.
    const late = await producer.send({ topic: 'later', body: 'soon', deliveryTimeMs: Date.now() + 300 });
    await waitFor('the 300 ms one received', () => receiver.firstSeen.has(late.messageId), 5_000);
    expect(await codeOf(producer.recallMessage('later', late.recallHandle))).toBe('NOT_FOUND');

    // 2. Bad input: beyond the maximum delay, in the past beyond the tolerance, a FIFO message with a delay, a DELAY message to a NORMAL topic.
    expect(await codeOf(producer.send({ topic: 'later', body: 'far', deliveryTimeMs: Date.now() + maxDelayMs + 60_000 }))).toBe('ILLEGAL_DELIVERY_TIME');
    expect(await codeOf(producer.send({ topic: 'later', body: 'past', deliveryTimeMs: Date.now() - 3_600_000 }))).toBe('ILLEGAL_DELIVERY_TIME');
    expect(await codeOf(producer.send({ topic: 'plain', body: 'typed', delayLevel: 2 }))).toBe('MESSAGE_PROPERTY_CONFLICT_WITH_TYPE');
    const [group] = (await producer.connection.requireRoutes('later')).map((g) => g.group);
    const raw = await producer.connection.unary(group as string, 'SendMessage', { messages: [{
      topic: { name: 'later', resourceNamespace: '' }, body: Buffer.from('fifo'), userProperties: {},
      systemProperties: { messageId: 'fifo-delayed', messageType: 'DELAY', messageGroup: 'g', deliveryTimestamp: { seconds: Math.floor(Date.now() / 1000) + 5, nanos: 0 } },
    }] });
    expect(raw.entries[0].status.code).toBe('MESSAGE_PROPERTY_CONFLICT_WITH_TYPE');
    await expect(official.send({ topic: 'later', body: Buffer.from('x'), deliveryTimestamp: new Date(Date.now() + 3 * 86_400_000) } as never)).rejects.toThrow();
    // A message a little in the past (a late send) is delivered at once.
    const skewed = await producer.send({ topic: 'later', body: 'skewed', deliveryTimeMs: Date.now() - 2_000 });
    expect(skewed.recallHandle).toBe('');
    await waitFor('the late one received at once', () => receiver.firstSeen.has(skewed.messageId), 5_000);

    // 3. The leader SIGKILLed while 30 timers are pending: all delivered, each stored once.
    const pending = new Map<string, number>();
    await Promise.all(Array.from({ length: 30 }, async (_, i) => {
      const deliveryTimeMs = Date.now() + 2_000 + (i % 4) * 300;
      pending.set((await producer.send({ topic: 'later', body: `failover-${i}`, deliveryTimeMs })).messageId, deliveryTimeMs);
    }));
    const killed = await cluster.killLeader();
    cluster.restart(killed);
    await waitFor('every delayed message sent before the leader kill received', () => [...pending.keys()].every((id) => receiver.firstSeen.has(id)), 20_000);
    for (const [id, dueMs] of pending) expect(receiver.firstSeen.get(id)?.atMs).toBeGreaterThanOrEqual(dueMs);

    // 4. The whole group killed and restarted: it restores its snapshots (timers as positions in
    // the timer files) and replays the rest; what was pending is delivered.
    const survivors = new Map<string, number>();
    await Promise.all(Array.from({ length: 20 }, async (_, i) => {
      const deliveryTimeMs = Date.now() + 6_000 + i * 50;
      survivors.set((await producer.send({ topic: 'later', body: `restart-${i}`, deliveryTimeMs })).messageId, deliveryTimeMs);
    }));
    for (let i = 0; i < 60; i++) await producer.send({ topic: 'later', body: `filler-${i}` }); // > 20 entries: every node snapshots after the delayed sends
    await receiver.stop();
    expect([...survivors.keys()].some((id) => receiver.firstSeen.has(id))).toBe(false);
    for (const id of await cluster.killAll()) cluster.restart(id);
    await cluster.leader(20_000);
    const again = new Receiver(consumer);
    closers.push(() => again.stop());
    await waitFor('every delayed message pending at the restart received', () => [...survivors.keys()].every((id) => again.firstSeen.has(id)), 20_000);
    for (const [id, dueMs] of survivors) expect(again.firstSeen.get(id)?.atMs).toBeGreaterThanOrEqual(dueMs);
    await again.stop();

    // Stored once each; the recalled ones never delivered.
    for (const receiverOf of [receiver, again]) {
      for (const [id, places] of receiverOf.places) expect(places.size, id).toBe(1);
      expect(receiverOf.firstSeen.has(recalledOurs.messageId) || receiverOf.firstSeen.has(recalledOfficial.messageId)).toBe(false);
    }
  }, 90_000);
});
