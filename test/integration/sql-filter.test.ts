/**
 * SQL92 subscriptions (F11) against real broker processes: our SimpleConsumer and
 * PullConsumer and the official client's SimpleConsumer get exactly the messages whose user
 * properties and tag satisfy the expression (the broker drops the rest, consumed by
 * skipping), and a bad expression is refused with ILLEGAL_FILTER_EXPRESSION naming the column.
 */
import { FilterExpression, SimpleConsumer as OfficialSimpleConsumer } from 'rocketmq-client-nodejs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MQClientError } from '../../src/client/mq-connection.js';
import { Producer } from '../../src/client/producer.js';
import { PullConsumer } from '../../src/client/pull-consumer.js';
import { SimpleConsumer } from '../../src/client/simple-consumer.js';
import { BrokerCluster } from '../support/broker-cluster.js';

const sqlType = 2; // apache.rocketmq.v2.FilterType.SQL
const expression = "region = 'eu' AND amount BETWEEN 10 AND 99 AND TAGS <> 'skip'";

/** What the expression selects, written out by hand for the 60 messages sent. */
function expectedBodies(): string[] {
  const out: string[] = [];
  for (let i = 0; i < 60; i++) {
    const region = i % 3 === 0 ? 'eu' : i % 3 === 1 ? 'us' : undefined;
    const amount = i * 2;
    const tag = i % 5 === 0 ? 'skip' : 'keep';
    if (region === 'eu' && amount >= 10 && amount <= 99 && tag !== 'skip') out.push(`m-${i}`);
  }
  return out;
}

describe('SQL92 subscriptions', () => {
  const cluster = new BrokerCluster({ autoCreateTopics: false });
  let producer: Producer;
  const closers: (() => Promise<unknown> | void)[] = [];
  beforeAll(async () => {
    await cluster.start();
    await cluster.admin.createTopic('orders', { readQueues: 2, writeQueues: 2 });
    producer = new Producer({ nameServers: [cluster.namesrv] });
    for (let i = 0; i < 60; i++) {
      const region = i % 3 === 0 ? 'eu' : i % 3 === 1 ? 'us' : undefined;
      await producer.send({ topic: 'orders', tag: i % 5 === 0 ? 'skip' : 'keep', body: `m-${i}`, properties: { ...(region === undefined ? {} : { region }), amount: String(i * 2) } });
    }
  }, 60_000);
  afterAll(async () => {
    for (const close of closers.reverse()) await Promise.race([Promise.resolve(close()).catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 15_000))]);
    producer?.shutdown();
    await cluster.stop();
  });

  it('delivers to our SimpleConsumer only what the expression selects', async () => {
    const consumer = new SimpleConsumer({ nameServers: [cluster.namesrv], group: 'sql-simple', awaitMs: 1_000 }).subscribe('orders', { sql: expression });
    closers.push(() => consumer.shutdown());
    const bodies: string[] = [];
    for (let round = 0; round < 20 && bodies.length < expectedBodies().length; round++) {
      for (const m of await consumer.receive(32, 10_000)) {
        bodies.push(m.body.toString());
        await consumer.ack(m);
      }
    }
    // The rest was consumed by skipping: nothing else ever arrives.
    expect(await consumer.receive(32, 10_000)).toEqual([]);
    expect(bodies.sort()).toEqual(expectedBodies().sort());
  });

  it('delivers to our PullConsumer only what the expression selects', async () => {
    const consumer = new PullConsumer({ nameServers: [cluster.namesrv], group: 'sql-pull' }).subscribe('orders', { sql: expression });
    closers.push(() => consumer.shutdown());
    await consumer.start();
    const bodies: string[] = [];
    const until = Date.now() + 20_000;
    while (bodies.length < expectedBodies().length && Date.now() < until) {
      for (const m of await consumer.poll(500, 64)) bodies.push(m.body.toString());
    }
    expect(bodies.sort()).toEqual(expectedBodies().sort());
  });

  it('delivers to the official SimpleConsumer only what the expression selects', async () => {
    const official = new OfficialSimpleConsumer({
      endpoints: cluster.accessPoint, consumerGroup: 'sql-official', subscriptions: new Map([['orders', new FilterExpression(expression, sqlType as never)]]), awaitDuration: 1000, requestTimeout: 3000,
    } as never);
    await official.startup();
    closers.push(() => official.shutdown());
    const bodies: string[] = [];
    const until = Date.now() + 30_000;
    while (bodies.length < expectedBodies().length && Date.now() < until) {
      for (const message of await official.receive(32, 10_000)) {
        bodies.push(message.body.toString());
        await official.ack(message);
      }
    }
    expect(bodies.sort()).toEqual(expectedBodies().sort());
  });

  it('filters the same after the leader is SIGKILLed: a new group of each client gets exactly the selection from the new leader', async () => {
    cluster.restart(await cluster.killLeader());
    await cluster.leader(20_000);
    const ours = new SimpleConsumer({ nameServers: [cluster.namesrv], group: 'sql-after-kill', awaitMs: 1_000 }).subscribe('orders', { sql: expression });
    closers.push(() => ours.shutdown());
    const official = new OfficialSimpleConsumer({
      endpoints: cluster.accessPoint, consumerGroup: 'sql-official-after-kill', subscriptions: new Map([['orders', new FilterExpression(expression, sqlType as never)]]), awaitDuration: 1000, requestTimeout: 3000,
    } as never);
    await official.startup();
    closers.push(() => official.shutdown());
    const fromOurs: string[] = [];
    const fromOfficial: string[] = [];
    const until = Date.now() + 40_000;
    while ((fromOurs.length < expectedBodies().length || fromOfficial.length < expectedBodies().length) && Date.now() < until) {
      for (const m of await ours.receive(32, 10_000).catch(() => [])) {
        fromOurs.push(m.body.toString());
        await ours.ack(m).catch(() => undefined);
      }
      for (const message of await official.receive(32, 10_000).catch(() => [])) {
        fromOfficial.push(message.body.toString());
        await official.ack(message).catch(() => undefined);
      }
    }
    expect(fromOurs.sort()).toEqual(expectedBodies().sort());
    expect(fromOfficial.sort()).toEqual(expectedBodies().sort());
  }, 90_000);

  it('refuses a bad expression with ILLEGAL_FILTER_EXPRESSION naming the column', async () => {
    const consumer = new SimpleConsumer({ nameServers: [cluster.namesrv], group: 'sql-bad', awaitMs: 500 }).subscribe('orders', { sql: 'amount > ' });
    closers.push(() => consumer.shutdown());
    const error = await consumer.receive(1).then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(MQClientError);
    expect(error).toMatchObject({ code: 'ILLEGAL_FILTER_EXPRESSION', definite: true, message: expect.stringMatching(/column 10/) });
  });
});
