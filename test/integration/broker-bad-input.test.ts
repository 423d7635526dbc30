/**
 * Bad input gets a clear, definite error and changes nothing: unknown topics (auto-create
 * off), invalid topic and group names, oversize bodies (limit configurable), malformed,
 * stale and foreign receipt handles, SendMessage bytes that are not protobuf.
 */
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MQClientError } from '../../src/client/mq-connection.js';
import { Producer } from '../../src/client/producer.js';
import { SimpleConsumer } from '../../src/client/simple-consumer.js';
import { messagingServiceDefinition } from '../../src/util/rocketmq-v2.js';
import { BrokerCluster } from '../support/broker-cluster.js';

describe('broker bad input', () => {
  const cluster = new BrokerCluster({ autoCreateTopics: false, groupId: 'east', extraArgs: ['--max-body-bytes', '1024'] });
  let producer: Producer;
  beforeAll(async () => {
    await cluster.start();
    await cluster.admin.createTopic('known', { readQueues: 1, writeQueues: 1 });
    producer = new Producer({ nameServers: [cluster.namesrv], retries: 0 });
  }, 60_000);
  afterAll(async () => {
    producer?.shutdown();
    await cluster.stop();
  });

  const sendError = async (message: Parameters<Producer['send']>[0]): Promise<MQClientError> => {
    const error = await producer.send(message).then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(MQClientError);
    return error as MQClientError;
  };

  it('refuses a send to an unknown topic when auto-creation is off', async () => {
    const error = await sendError({ topic: 'nowhere', body: 'x' });
    expect(error.code).toBe('TOPIC_NOT_FOUND');
    expect(error.definite).toBe(true);
    expect((await cluster.admin.listTopics()).map((t) => t.name)).toEqual(['known']);
  });

  it('refuses invalid topic names and consumer group names', async () => {
    await expect(cluster.admin.createTopic('bad topic!')).rejects.toThrow(/invalid/);
    await expect(cluster.admin.createGroup('no/slashes')).rejects.toThrow(/invalid/);
    expect(() => new SimpleConsumer({ nameServers: [cluster.namesrv], group: 'bad group' })).toThrow(/invalid/);
  });

  it('refuses a body over the configured limit and stores nothing', async () => {
    const error = await sendError({ topic: 'known', body: Buffer.alloc(1025, 1) });
    expect(error.code).toBe('MESSAGE_BODY_TOO_LARGE');
    expect(error.definite).toBe(true);
    await producer.send({ topic: 'known', body: Buffer.alloc(1024, 1) });
    expect((await cluster.admin.listTopics()).find((t) => t.name === 'known')?.maxOffsets).toEqual([1]);
  });

  it('refuses an oversized batch with a clear error, in the client before sending and in the broker, and stores nothing', async () => {
    const big = Buffer.alloc(4 * 1024 * 1024, 1);
    const before = (await cluster.admin.listTopics()).find((t) => t.name === 'known')?.maxOffsets;
    await expect(producer.sendBatch(Array.from({ length: 20 }, () => ({ topic: 'known', body: big })))).rejects.toMatchObject({ code: 'MESSAGE_BODY_TOO_LARGE', definite: true, message: expect.stringMatching(/batch of 20 messages/) });
    // Past our client's check: the broker refuses the request as a whole (not gRPC's RESOURCE_EXHAUSTED).
    const raw = Array.from({ length: 9 }, (_, i) => ({ topic: { name: 'known' }, systemProperties: { messageId: `RAW-BATCH-${i}`, bodyEncoding: 'IDENTITY', messageType: 'NORMAL' }, body: big }));
    const response = await producer.connection.unary('east', 'SendMessage', { messages: raw }, { timeoutMs: 20_000 });
    expect(response.status).toMatchObject({ code: 'MESSAGE_BODY_TOO_LARGE', message: expect.stringMatching(/per request/) });
    expect(response.entries).toHaveLength(9);
    expect((await cluster.admin.listTopics()).find((t) => t.name === 'known')?.maxOffsets).toEqual(before);
  });

  it('answers a SendMessage request that is not valid protobuf with a definite BAD_REQUEST, on the leader and through a follower, and stores nothing', async () => {
    const before = (await cluster.admin.listTopics()).find((t) => t.name === 'known')?.maxOffsets;
    const definition = messagingServiceDefinition.SendMessage as NonNullable<typeof messagingServiceDefinition.SendMessage>;
    const valid = definition.requestSerialize({ messages: [{ topic: { name: 'known' }, systemProperties: { messageId: 'CUT-1', messageType: 'NORMAL' }, body: Buffer.from('x') }] });
    const truncated = valid.subarray(0, valid.length - 3);
    const nodes = await cluster.admin.cluster();
    for (const node of [nodes.find((n) => n.isLeader), nodes.find((n) => !n.isLeader)]) {
      const client = new grpc.Client(node?.address ?? '', grpc.credentials.createInsecure());
      try {
        const bytes = await new Promise<Buffer>((resolve, reject) => {
          client.makeUnaryRequest(definition.path, (b: Buffer) => b, (b: Buffer) => b, truncated, new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (error, value) => (error ? reject(error) : resolve(value as Buffer)));
        });
        const response = definition.responseDeserialize(bytes);
        expect(response.status, `answer of ${node?.nodeId}`).toMatchObject({ code: 'BAD_REQUEST', message: expect.stringMatching(/not a valid SendMessageRequest/) });
      } finally {
        client.close();
      }
    }
    expect((await cluster.admin.listTopics()).find((t) => t.name === 'known')?.maxOffsets).toEqual(before);
  });

  it('answers malformed, stale and foreign receipt handles with INVALID_RECEIPT_HANDLE', async () => {
    const consumer = new SimpleConsumer({ nameServers: [cluster.namesrv], group: 'handles', awaitMs: 1_000 }).subscribe('known');
    const [message] = await consumer.receive(1, 10_000);
    expect(message).toBeDefined();
    const m = message as NonNullable<typeof message>;
    await expect(consumer.ack({ ...m, receiptHandle: 'garbage' })).rejects.toMatchObject({ code: 'INVALID_RECEIPT_HANDLE', definite: true });
    await expect(consumer.ack({ ...m, receiptHandle: m.receiptHandle.replace('~east~', '~west~') })).rejects.toMatchObject({ code: 'INVALID_RECEIPT_HANDLE' });
    const renewed = await consumer.changeInvisibleDuration(m, 10_000);
    await expect(consumer.ack(m)).rejects.toMatchObject({ code: 'INVALID_RECEIPT_HANDLE' }); // superseded
    await consumer.ack(renewed);
    consumer.shutdown();
  });

  it('refuses a queue of another broker group sent to this group\'s nodes', async () => {
    const consumer = new SimpleConsumer({ nameServers: [cluster.namesrv], group: 'strays' });
    const response = await consumer.connection.unary('east', 'GetOffset', { group: { name: 'strays' }, messageQueue: { topic: { name: 'known' }, id: 0, broker: { name: 'west' } } });
    consumer.shutdown();
    expect(response.status).toMatchObject({ code: 'BAD_REQUEST', message: 'this node belongs to broker group east, not west' });
  });
});
