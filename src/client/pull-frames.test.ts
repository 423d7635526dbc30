/**
 * The lean decoder of PullMessageResponse frames against proto-loader's decode + fromV2, over
 * random messages the generic serializer encodes (every field of the protocol's Message the
 * broker could set, and some it never does), plus the other frame kinds and broken bytes.
 */
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { messagingServiceDefinition } from '../util/rocketmq-v2.js';
import { fromV2 } from './messages.js';
import { decodePullFrame } from './pull-frames.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader objects are untyped at this edge */

const method = messagingServiceDefinition.PullMessage as any;
const serialize = (frame: object): Buffer => method.responseSerialize(frame);
const genericDecode = (bytes: Buffer): any => method.responseDeserialize(bytes);

const text = fc.string({ unit: 'grapheme', maxLength: 16 });
const time = fc.record({ seconds: fc.integer({ min: 0, max: 2 ** 40 }), nanos: fc.integer({ min: 0, max: 999_999_999 }) });
const md5 = (body: Buffer): string => createHash('md5').update(body).digest('hex').toUpperCase();

const message = fc.record({
  topic: fc.option(fc.record({ name: text, resourceNamespace: text }), { nil: undefined }),
  userProperties: fc.dictionary(fc.string({ minLength: 1, maxLength: 10 }), text, { maxKeys: 5 }),
  body: fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes)),
  system: fc.record({
    tag: fc.option(text, { nil: undefined }),
    keys: fc.array(text, { maxLength: 3 }),
    messageId: text,
    digest: fc.constantFrom('right', 'wrong', 'crc32', 'none'),
    bodyEncoding: fc.constantFrom('IDENTITY', 'GZIP', 'ENCODING_UNSPECIFIED'),
    messageType: fc.constantFrom('NORMAL', 'FIFO', 'DELAY', 'TRANSACTION'),
    bornTimestamp: fc.option(time, { nil: undefined }),
    bornHost: text,
    storeTimestamp: fc.option(time, { nil: undefined }),
    storeHost: text,
    deliveryTimestamp: fc.option(time, { nil: undefined }),
    receiptHandle: fc.option(text, { nil: undefined }),
    queueId: fc.integer({ min: -5, max: 2 ** 31 - 1 }),
    queueOffset: fc.option(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), { nil: undefined }),
    invisibleDuration: fc.option(time, { nil: undefined }),
    deliveryAttempt: fc.option(fc.integer({ min: 0, max: 100 }), { nil: undefined }),
    messageGroup: fc.option(text, { nil: undefined }),
    traceContext: fc.option(text, { nil: undefined }),
  }),
}).map(({ topic, userProperties, body, system: { digest, ...system } }) => {
  const bodyDigest = digest === 'none' ? undefined : digest === 'crc32' ? { type: 'CRC32', checksum: '1234' } : { type: 'MD5', checksum: digest === 'right' ? md5(body) : md5(Buffer.concat([body, Buffer.from('x')])) };
  return { topic, userProperties, body, systemProperties: { ...system, bodyDigest } };
});

describe('decodePullFrame', () => {
  it('gives what proto-loader and fromV2 give for any message frame', () => {
    fc.assert(fc.property(message, (m) => {
      const bytes = serialize({ message: m });
      const frame = decodePullFrame(bytes, 'group-a');
      expect(frame.content).toBe('message');
      if (frame.content !== 'message') return;
      expect(frame.message).toEqual(fromV2(genericDecode(bytes).message, 'group-a'));
    }), { numRuns: 500 });
  });

  it('tells an intact body from one that does not match its MD5 digest', () => {
    const body = Buffer.from('hello');
    const frame = (checksum: string) => decodePullFrame(serialize({ message: { systemProperties: { messageId: 'm', bodyDigest: { type: 'MD5', checksum } }, body } }), 'g');
    const good = frame(md5(body));
    const bad = frame('00');
    expect(good.content === 'message' && good.message.intact).toBe(true);
    expect(bad.content === 'message' && bad.message.intact).toBe(false);
  });

  it('decodes the status and next-offset frames as proto-loader does', () => {
    expect(decodePullFrame(serialize({ status: { code: 'MESSAGE_NOT_FOUND', message: 'no new message' } }), 'g')).toEqual({ content: 'status', status: { code: 'MESSAGE_NOT_FOUND', message: 'no new message' } });
    expect(decodePullFrame(serialize({ status: { code: 'OK', message: 'OK' } }), 'g')).toEqual({ content: 'status', status: { code: 'OK', message: 'OK' } });
    expect(decodePullFrame(serialize({ nextOffset: 123_456_789_012 }), 'g')).toEqual({ content: 'nextOffset', nextOffset: 123_456_789_012 });
    expect(decodePullFrame(serialize({ nextOffset: 0 }), 'g')).toEqual({ content: 'nextOffset', nextOffset: 0 });
  });

  it('skips fields it does not know, in the message and in its system properties', () => {
    const base = serialize({ message: { topic: { name: 't' }, systemProperties: { messageId: 'm', queueId: 3 }, body: Buffer.from('b') } });
    // Re-wrap the message with unknown fields appended: varint field 40, fixed64 field 41, fixed32 field 42, bytes field 43.
    const inner = genericDecode(base).message;
    expect(inner.systemProperties.queueId).toBe(3);
    const unknown = Buffer.from([(40 << 3) | 0, 0x96, 0x01, (41 << 3) | 1, 1, 2, 3, 4, 5, 6, 7, 8, (42 << 3) | 5, 1, 2, 3, 4, (43 << 3) | 2, 2, 9, 9].map((b) => b & 0xff));
    const messageBytes = Buffer.concat([base.subarray(2), unknown]); // base = tag 0x12, a 1-byte length, the message
    expect(base[1]).toBe(base.byteLength - 2);
    const bytes = Buffer.concat([Buffer.from([0x12, messageBytes.byteLength]), messageBytes]);
    const frame = decodePullFrame(bytes, 'g');
    expect(frame.content === 'message' && [frame.message.topic, frame.message.messageId, frame.message.queueId, frame.message.body.toString()]).toEqual(['t', 'm', 3, 'b']);
  });

  it('throws on a truncated frame instead of making up a message', () => {
    const bytes = serialize({ message: { topic: { name: 'topic' }, systemProperties: { messageId: 'message-id' }, body: Buffer.from('body bytes') } });
    for (let cut = 1; cut < bytes.byteLength; cut++) expect(() => decodePullFrame(bytes.subarray(0, cut), 'g')).toThrow();
  });
});
