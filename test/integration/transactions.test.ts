/**
 * F9, transactional messages, on real processes: our Producer (`beginTransaction`, a
 * `transactionChecker`) and the official rocketmq-client-nodejs Producer (`beginTransaction`,
 * `checker`, through the access point). A half message is invisible until COMMIT and never
 * delivered after ROLLBACK; a transaction its producer abandons is checked back (after
 * `--txn-check-after-ms`) on the Telemetry stream of a live producer of its topic, whose
 * checker ends it; one nobody answers is rolled back after `--txn-checks-max` checks. The
 * leader is SIGKILLed with transactions open: the new leader resumes the checks, and commits
 * made with receipts from before the kill still work. The check-back latency (send →
 * delivery of a transaction only a check-back committed) is printed. Bad input: an unknown,
 * malformed or contradicting EndTransaction, a transactional message to a NORMAL topic.
 */
import { Producer as OfficialProducer } from 'rocketmq-client-nodejs';
import definition from 'rocketmq-client-nodejs/proto/apache/rocketmq/v2/definition_pb.js';
import { afterAll, describe, expect, it, onTestFailed } from 'vitest';
import type { ReceivedMessage } from '../../src/client/messages.js';
import { Producer } from '../../src/client/producer.js';
import { SimpleConsumer } from '../../src/client/simple-consumer.js';
import type { TransactionResolution } from '../../src/client/transaction.js';
import { BrokerCluster } from '../support/broker-cluster.js';
import { waitFor } from '../support/process-cluster.js';
import { codeOf, percentile, Receiver } from '../support/receiver.js';
import { shutDownGuarded, UncaughtGuard } from '../support/uncaught-guard.js';

const { TransactionResolution: OfficialResolution } = definition;

const checkAfterMs = 1_000;
const checkIntervalMs = 1_000;
const checksMax = 3;

/** The applications' shared knowledge of how each transaction should end: by the body's prefix. */
function decide(body: string): TransactionResolution | undefined {
  if (body.startsWith('commit')) return 'COMMIT';
  if (body.startsWith('rollback')) return 'ROLLBACK';
  return undefined; // 'unknown…': never answered
}

describe('transactional messages on a real cluster', () => {
  const cluster = new BrokerCluster({
    autoCreateTopics: false,
    extraArgs: ['--snapshot-entries', '50', '--txn-check-after-ms', String(checkAfterMs), '--txn-check-interval-ms', String(checkIntervalMs), '--txn-checks-max', String(checksMax)],
  });
  const closers: (() => unknown)[] = [];
  // Late connection resets from the official client are tolerated after shutdown only (UncaughtGuard).
  const uncaught = new UncaughtGuard();
  afterAll(async () => {
    expect(await shutDownGuarded(uncaught, closers, () => cluster.stop())).toEqual([]);
  });

  it('commits, rolls back and checks back, through a leader kill, with both clients; refuses bad ends', async () => {
    onTestFailed(() => { console.log(`node output (tail):\n${cluster.output().slice(-8_000)}`); });
    await cluster.start();
    await cluster.admin.createTopic('orders', { readQueues: 4, writeQueues: 4, messageType: 'TRANSACTION' });
    await cluster.admin.createTopic('plain', { readQueues: 2, writeQueues: 2, messageType: 'NORMAL' });
    const checked: string[] = [];
    // The producer that answers check-backs (its checker); it also sends and ends its own transactions.
    const producer = new Producer({
      nameServers: [cluster.namesrv], sendTimeoutMs: 8_000,
      transactionChecker: (message) => { checked.push(message.messageId); return decide(message.body.toString()); },
    });
    closers.push(() => producer.shutdown());
    await producer.start(['orders']);
    const consumer = new SimpleConsumer({ nameServers: [cluster.namesrv], group: 'order-readers', awaitMs: 2_000 }).subscribe('orders');
    closers.push(() => consumer.shutdown());
    const receiver = new Receiver(consumer);
    closers.push(() => receiver.stop());
    const received = (id: string): boolean => receiver.firstSeen.has(id);
    const committed = new Set<string>();
    const rolledBack = new Set<string>();

    // 1. Commit and rollback by the application; a half is invisible until its commit.
    const held = producer.beginTransaction();
    const heldReceipt = await held.send({ topic: 'orders', body: 'commit-held' });
    expect(heldReceipt.transactionId).toMatch(/^t1~/);
    expect(heldReceipt.offset).toBe(0);
    await Promise.all(Array.from({ length: 10 }, async (_, i) => {
      const tx = producer.beginTransaction();
      const receipt = await tx.send({ topic: 'orders', body: i % 2 === 0 ? `commit-${i}` : `rollback-${i}`, keys: [`k${i}`] });
      if (i % 2 === 0) {
        await tx.commit();
        committed.add(receipt.messageId);
      } else {
        await tx.rollback();
        rolledBack.add(receipt.messageId);
      }
    }));
    await waitFor('the committed ones received', () => [...committed].every(received), 10_000);
    expect(received(heldReceipt.messageId)).toBe(false);
    await held.commit();
    committed.add(heldReceipt.messageId);
    await waitFor('the held one received after its commit', () => received(heldReceipt.messageId), 5_000);
    const heldMessage = receiver.firstSeen.get(heldReceipt.messageId)?.message as ReceivedMessage;
    expect(heldMessage.properties.__transactionId__).toBe(heldReceipt.transactionId);
    expect(heldMessage.body.toString()).toBe('commit-held');

    // 2. Bad ends: a repeat is OK, a contradiction, an unknown id and a malformed one are INVALID_TRANSACTION_ID; a wrong message id too.
    const [group] = (await producer.connection.requireRoutes('orders')).map((g) => g.group) as [string];
    const end = async (transactionId: string, messageId: string, resolution: string, topic = 'orders'): Promise<string> => {
      const response = await producer.connection.unary(group, 'EndTransaction', { topic: { name: topic, resourceNamespace: '' }, messageId, transactionId, resolution, source: 'SOURCE_CLIENT' });
      return String(response.status?.code);
    };
    expect(await end(heldReceipt.transactionId, heldReceipt.messageId, 'COMMIT')).toBe('OK');
    expect(await end(heldReceipt.transactionId, heldReceipt.messageId, 'ROLLBACK')).toBe('INVALID_TRANSACTION_ID');
    expect(await end(`t1~${group}~999999999~0`, 'nobody', 'COMMIT')).toBe('INVALID_TRANSACTION_ID');
    expect(await end('not-a-transaction', 'nobody', 'COMMIT')).toBe('INVALID_TRANSACTION_ID');
    expect(await end(heldReceipt.transactionId, heldReceipt.messageId, 'UNSPECIFIED')).toBe('BAD_REQUEST');
    const wrong = producer.beginTransaction();
    const wrongReceipt = await wrong.send({ topic: 'orders', body: 'rollback-wrong-id' });
    rolledBack.add(wrongReceipt.messageId);
    expect(await end(wrongReceipt.transactionId, 'someone-else', 'COMMIT')).toBe('INVALID_TRANSACTION_ID');
    expect(await end(wrongReceipt.transactionId, wrongReceipt.messageId, 'COMMIT', 'plain')).toBe('INVALID_TRANSACTION_ID');
    await wrong.rollback();
    expect(await codeOf(producer.beginTransaction().send({ topic: 'plain', body: 'typed' }))).toBe('MESSAGE_PROPERTY_CONFLICT_WITH_TYPE');
    expect(await codeOf(producer.beginTransaction().commit())).toBe('BAD_REQUEST');

    // 3. Abandoned transactions (their producer goes away after the send): the checker answers.
    const abandoning = new Producer({ nameServers: [cluster.namesrv], sendTimeoutMs: 8_000 });
    const sentAt = new Map<string, number>();
    const unanswered: { messageId: string; transactionId: string }[] = [];
    for (let i = 0; i < 12; i++) {
      const body = i % 3 === 0 ? `commit-orphan-${i}` : i % 3 === 1 ? `rollback-orphan-${i}` : `unknown-orphan-${i}`;
      const receipt = await abandoning.beginTransaction().send({ topic: 'orders', body });
      sentAt.set(receipt.messageId, Date.now());
      (body.startsWith('commit') ? committed : rolledBack).add(receipt.messageId);
      if (body.startsWith('unknown')) unanswered.push(receipt);
    }
    abandoning.shutdown();
    const orphansCommitted = [...sentAt.keys()].filter((id) => committed.has(id));
    await waitFor('the orphans the checker commits received', () => orphansCommitted.every(received), 15_000);
    const checkLatency = orphansCommitted.map((id) => (receiver.firstSeen.get(id)?.atMs ?? NaN) - (sentAt.get(id) as number));
    console.log(`check-back latency (send → delivery, check after ${checkAfterMs} ms): p50 ${percentile(checkLatency, 50)} ms, max ${Math.max(...checkLatency)} ms over ${checkLatency.length}`);
    expect(Math.min(...checkLatency)).toBeGreaterThanOrEqual(checkAfterMs - 50);
    // The unanswered ones are asked checksMax times, then rolled back: a late commit is refused.
    await waitFor('every unanswered orphan checked the maximum number of times', () => unanswered.every(({ messageId }) => checked.filter((c) => c === messageId).length >= checksMax), 15_000);
    await waitFor('the unanswered ones rolled back and logged', () => cluster.output().includes('no answer to its last check-back'), 10_000);
    for (const { messageId, transactionId } of unanswered) {
      await waitFor('rolled back', async () => (await end(transactionId, messageId, 'ROLLBACK')) === 'OK', 5_000);
      expect(await end(transactionId, messageId, 'COMMIT')).toBe('INVALID_TRANSACTION_ID');
    }

    // 4. The leader SIGKILLed with transactions open: receipts from before still commit, and abandoned ones are checked by the new leader.
    const beforeKill = await Promise.all(Array.from({ length: 8 }, async (_, i) => {
      const tx = producer.beginTransaction();
      const receipt = await tx.send({ topic: 'orders', body: `commit-kill-${i}` });
      return { tx, receipt };
    }));
    const abandonedBeforeKill = new Producer({ nameServers: [cluster.namesrv], sendTimeoutMs: 8_000 });
    for (let i = 0; i < 8; i++) committed.add((await abandonedBeforeKill.beginTransaction().send({ topic: 'orders', body: `commit-kill-orphan-${i}` })).messageId);
    abandonedBeforeKill.shutdown();
    const killed = await cluster.killLeader();
    for (const { tx, receipt } of beforeKill) {
      await tx.commit();
      committed.add(receipt.messageId);
    }
    cluster.restart(killed);

    // 5. The official client: commit, rollback, and an orphan its checker commits (through the access point).
    const official = new OfficialProducer({
      endpoints: cluster.accessPoint, topics: ['orders'], requestTimeout: 3000,
      checker: { check: async (view: { body: Buffer }) => (decide(view.body.toString()) === 'COMMIT' ? OfficialResolution.COMMIT : OfficialResolution.ROLLBACK) },
    } as never);
    await official.startup();
    closers.push(() => official.shutdown());
    for (const body of ['commit-official', 'rollback-official']) {
      const tx = official.beginTransaction();
      const receipt = await official.send({ topic: 'orders', body: Buffer.from(body) } as never, tx) as { messageId: string; transactionId: string };
      expect(receipt.transactionId).toMatch(/^t1~/);
      if (body.startsWith('commit')) {
        await tx.commit();
        committed.add(receipt.messageId);
      } else {
        await tx.rollback();
        rolledBack.add(receipt.messageId);
      }
    }
    // An official-client orphan: sent in a transaction that is never ended.
    const orphan = await official.send({ topic: 'orders', body: Buffer.from('commit-official-orphan') } as never, official.beginTransaction()) as { messageId: string };
    committed.add(orphan.messageId);

    await waitFor('every committed transaction delivered', () => [...committed].every(received), 30_000);
    await new Promise((resolve) => setTimeout(resolve, checkAfterMs + 2 * checkIntervalMs));
    await receiver.stop();
    for (const id of rolledBack) expect(received(id), `rolled back ${id} delivered`).toBe(false);
    for (const [id, places] of receiver.places) expect(places.size, `${id} stored once`).toBe(1);
    const officialView = receiver.firstSeen.get(orphan.messageId)?.message as ReceivedMessage;
    expect(officialView.properties.__transactionId__).toMatch(/^t1~/);
  }, 120_000);
});
