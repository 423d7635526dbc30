/** PullMessage's hand-encoded frames decode (with proto-loader) to what messageToV2's objects encoded by proto-loader decode to. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { PulledMessage } from '../broker/broker-service.js';
import { messagingServiceDefinition, okStatus } from '../util/rocketmq-v2.js';
import { pullResponseFrames, pullStatusFrame, pulledMessageFrame } from './pull-response.js';
import { messageToV2 } from './v2-messages.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader objects are untyped at this edge */

const method = messagingServiceDefinition.PullMessage as any;
const wire = (frame: object): any => method.responseDeserialize(method.responseSerialize(frame));
const decode = (bytes: Buffer): any => method.responseDeserialize(bytes);

const text = fc.string({ unit: 'grapheme', maxLength: 12 });
const pulled: fc.Arbitrary<PulledMessage> = fc.record({
  topic: fc.constantFrom('t', '%DLQ%g'),
  messageId: text, tag: text, keys: fc.array(fc.oneof(text, fc.constant('')), { maxLength: 3 }), messageGroup: fc.constantFrom('', 'g1'), queueId: fc.integer({ min: 0, max: 16 }),
  bornTimestamp: fc.integer({ min: -(2 ** 42), max: 2 ** 42 }), bornHost: text,
  properties: fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }), text, { maxKeys: 4 }).map((p) => new Map(Object.entries(p))),
  body: fc.uint8Array({ minLength: 1, maxLength: 200 }).map((b) => Buffer.from(b)),
  kind: fc.constantFrom('plain', 'delayed', 'half'),
  deliveryTimeMs: fc.integer({ min: 1, max: 2 ** 42 }),
  offset: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 2 ** 40 })), storeTimeMs: fc.integer({ min: 0, max: 2 ** 42 }),
}).map(({ kind, deliveryTimeMs, offset, storeTimeMs, topic, ...m }) => {
  const message = { ...m, topic: 't', ...(kind === 'delayed' ? { deliveryTimeMs } : {}), ...(kind === 'half' ? { transactional: true as const } : {}) };
  return { message, transactionId: kind === 'half' ? 'txn-id' : '', topic, queueId: m.queueId, offset, storeTimeMs };
});

describe('pullResponseFrames', () => {
  it('encodes each message as messageToV2 does', () => {
    fc.assert(fc.property(pulled, (p) => {
      expect(decode(pulledMessageFrame(p, '10.0.0.1:8081'))).toEqual(wire({ message: messageToV2(p, '10.0.0.1:8081') }));
    }), { numRuns: 300 });
  });

  it('frames a batch as status, messages, next offset', () => {
    const p = fc.sample(pulled, { numRuns: 2, seed: 7 });
    const frames = pullResponseFrames(p, 42, 'h:1').map(decode);
    expect(frames.map((f: any) => f.content)).toEqual(['status', 'message', 'message', 'nextOffset']);
    expect(frames[0].status).toEqual(okStatus);
    expect(frames[3].nextOffset).toBe(42);
    expect(pullResponseFrames([], 7, 'h:1').map(decode)).toEqual([
      { content: 'status', status: { code: 'MESSAGE_NOT_FOUND', message: 'no new message' } }, { content: 'nextOffset', nextOffset: 7 },
    ]);
    expect(decode(pullResponseFrames([], 0, 'h:1')[1] as Buffer)).toEqual({ content: 'nextOffset', nextOffset: 0 });
    expect(decode(pullStatusFrame({ code: 'TOPIC_NOT_FOUND', message: 'no such topic' }))).toEqual({ content: 'status', status: { code: 'TOPIC_NOT_FOUND', message: 'no such topic' } });
  });
});
