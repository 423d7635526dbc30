import { describe, expect, it } from 'vitest';
import { Admin } from './admin.js';
import { MQClientError } from './mq-connection.js';
import { Producer } from './producer.js';
import { PullConsumer } from './pull-consumer.js';
import { SimpleConsumer } from './simple-consumer.js';

// Nothing listens on port 1: a check that reached the network would fail with a routing or connection error instead.
const nowhere = { nameServers: ['127.0.0.1:1'], requestTimeoutMs: 10_000, leaderWaitMs: 10_000 };

/** The MQClientError `action` throws or rejects with. */
async function failure(action: () => unknown): Promise<MQClientError> {
  try {
    await action();
  } catch (error) {
    if (error instanceof MQClientError) return error;
    throw error;
  }
  throw new Error('expected an MQClientError');
}

describe('client-side name checks', () => {
  it('refuses a bad topic before any call, naming the character', async () => {
    const producer = new Producer(nowhere);
    try {
      const started = Date.now();
      const send = await failure(() => producer.send({ topic: 'bad topic!', body: 'x' }));
      expect(send).toMatchObject({ code: 'ILLEGAL_TOPIC', definite: true });
      expect(send.message).toBe('topic name "bad topic!" is invalid: it contains " " (white space), which a name may not contain; use 1-127 of A-Z a-z 0-9 _ -');
      expect((await failure(() => producer.start(['ok', 'why?']))).message).toMatch(/it contains "\?"/);
      expect((await failure(() => producer.sendBatch([{ topic: 'a/b', body: 'x' }]))).code).toBe('ILLEGAL_TOPIC');
      expect((await failure(() => producer.recallMessage('', 'd1~g~1'))).message).toMatch(/topic name "" is invalid: it is empty/);
      expect(Date.now() - started).toBeLessThan(1_000);
    } finally {
      producer.shutdown();
    }
  });

  it('refuses bad group and topic names in the consumers and Admin', async () => {
    expect((await failure(() => new SimpleConsumer({ ...nowhere, group: 'g 1' }))).code).toBe('ILLEGAL_CONSUMER_GROUP');
    expect((await failure(() => new PullConsumer({ ...nowhere, group: 'x'.repeat(121) }))).message).toMatch(/it is 121 characters long, over 120/);
    const consumer = new SimpleConsumer({ ...nowhere, group: 'g1' });
    expect((await failure(() => consumer.subscribe('t*'))).message).toMatch(/it contains "\*"/);
    consumer.subscribe('%DLQ%g1'); // a DLQ topic is a valid name
    consumer.shutdown();
    const admin = new Admin(nowhere);
    try {
      expect((await failure(() => admin.createTopic('bad topic!'))).code).toBe('ILLEGAL_TOPIC');
      expect((await failure(() => admin.createGroup('bad:group'))).message).toMatch(/consumer group name "bad:group" is invalid: it contains ":"/);
      expect((await failure(() => admin.resetOffset('g1', 'no topic', 0))).code).toBe('ILLEGAL_TOPIC');
    } finally {
      admin.close();
    }
  });
});
