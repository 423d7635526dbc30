/**
 * SendMessage's hand-written codec (send-message-codec.ts) against proto-loader, the decoder
 * the rest of the code uses: for random requests (every field the broker reads, unknown
 * fields around them, repeated occurrences, negative int64s) the decoded messages equal
 * what proto-loader's object gives, field by field; a response encoded by hand decodes with
 * proto-loader to the entries it was given; truncated or random bytes either decode or
 * throw WireFormatError, nothing else.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { WireFormatError } from '../util/protobuf-wire.js';
import { messagingServiceDefinition, timestampToMs, v2CodeNumbers, type V2Code } from '../util/rocketmq-v2.js';
import { decodeSendMessageRequest, encodeSendMessageResponse, type SendMessageIn } from './send-message-codec.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader objects are untyped at this edge */

const definition = messagingServiceDefinition.SendMessage as NonNullable<typeof messagingServiceDefinition.SendMessage>;
const encodeRequest = (request: unknown): Buffer => definition.requestSerialize(request);
const decodeRequest = (bytes: Buffer): any => definition.requestDeserialize(bytes);
const decodeResponse = (bytes: Buffer): any => definition.responseDeserialize(bytes);

const text = fc.oneof(fc.string({ unit: 'binary', maxLength: 12 }), fc.constantFrom('', 'g1', 'topic-a', 'héllo wörld', '__SHARDINGKEY'));
// '__proto__' is left out: proto-loader's object cannot hold that key (it sets the prototype).
const propertyKey = text.filter((key) => key !== '__proto__');
const timestamp = fc.record({ seconds: fc.integer({ min: -(2 ** 40), max: 2 ** 40 }), nanos: fc.integer({ min: -999_999_999, max: 999_999_999 }) });
const systemProperties = fc.record({
  tag: text, keys: fc.array(text, { maxLength: 3 }), messageId: text, messageGroup: text, bornHost: text, storeHost: text, queueId: fc.integer({ min: -5, max: 100_000 }),
  bornTimestamp: timestamp, deliveryTimestamp: timestamp, storeTimestamp: timestamp,
  messageType: fc.constantFrom('MESSAGE_TYPE_UNSPECIFIED', 'NORMAL', 'FIFO', 'DELAY', 'TRANSACTION', 'LITE', 'PRIORITY'),
  bodyDigest: fc.record({ type: fc.constantFrom('CRC32', 'MD5', 'SHA1'), checksum: text }), bodyEncoding: fc.constantFrom('IDENTITY', 'GZIP'),
  traceContext: text, deliveryAttempt: fc.nat(20), queueOffset: fc.nat(),
}, { requiredKeys: [] });
const message = fc.record({
  topic: fc.record({ resourceNamespace: text, name: text }, { requiredKeys: [] }),
  userProperties: fc.dictionary(propertyKey, text, { maxKeys: 4 }), systemProperties, body: fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
}, { requiredKeys: [] });
const request = fc.record({ messages: fc.array(message, { maxLength: 4 }) }, { requiredKeys: [] });

/** An unknown field of every wire type: the decoder must skip it. */
const unknownField = fc.constantFrom(
  Buffer.from([0xf8, 0x07, 0x2a]), // field 127 varint
  Buffer.from([0xf9, 0x07, 1, 2, 3, 4, 5, 6, 7, 8]), // field 127 fixed64
  Buffer.from([0xfa, 0x07, 0x02, 0x61, 0x62]), // field 127 length-delimited
  Buffer.from([0xfd, 0x07, 1, 2, 3, 4]), // field 127 fixed32
);

/** What the broker read from proto-loader's object before the codec (messageFromV2's reads). */
function viewOf(m: any): SendMessageIn {
  const system = m.systemProperties ?? {};
  const present = (value: unknown): boolean => value !== undefined && value !== null;
  return {
    topic: String(m.topic?.name ?? ''), namespace: String(m.topic?.resourceNamespace ?? ''), messageId: String(system.messageId ?? ''),
    tag: present(system.tag) ? String(system.tag) : undefined, keys: (system.keys ?? []).map(String),
    messageGroup: present(system.messageGroup) ? String(system.messageGroup) : undefined,
    messageType: typeof system.messageType === 'number' ? system.messageType : messageTypeNumber(String(system.messageType ?? 'MESSAGE_TYPE_UNSPECIFIED')),
    bornTimestampMs: timestampToMs(system.bornTimestamp), deliveryTimestampMs: timestampToMs(system.deliveryTimestamp),
    bornHost: String(system.bornHost ?? ''), queueId: Number(system.queueId ?? 0),
    userProperties: new Map(Object.entries(m.userProperties ?? {}).map(([k, v]) => [k, String(v)])), body: new Uint8Array(m.body ?? []),
  };
}

const messageTypes = ['MESSAGE_TYPE_UNSPECIFIED', 'NORMAL', 'FIFO', 'DELAY', 'TRANSACTION', 'LITE', 'PRIORITY'];
const messageTypeNumber = (name: string): number => messageTypes.indexOf(name);

/** Comparable: property order is not part of a message (an object puts integer-like keys first). */
function comparable(m: SendMessageIn): object {
  return { ...m, userProperties: [...m.userProperties].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)), body: Buffer.from(m.body).toString('hex') };
}

describe('SendMessage codec', () => {
  it('decodes every field the broker reads as proto-loader does, also around unknown fields and for concatenated encodings', () => {
    fc.assert(fc.property(request, request, fc.array(unknownField, { maxLength: 3 }), (first, second, unknown) => {
      const bytes = Buffer.concat([...unknown, encodeRequest(first), ...unknown, encodeRequest(second)]);
      const expected = (decodeRequest(bytes).messages ?? []).map(viewOf).map(comparable);
      expect(decodeSendMessageRequest(bytes).map(comparable)).toEqual(expected);
    }), { numRuns: 400 });
  });

  it('reads one message encoded as two concatenated halves as protobufjs does (a message field given twice is its last occurrence)', () => {
    /** A Message's own bytes: its request's encoding without the `messages` tag and length. */
    const inner = (m: object): Buffer => {
      const bytes = encodeRequest({ messages: [m] });
      let at = 1;
      while ((bytes[at] as number) >= 0x80) at++;
      return bytes.subarray(at + 1);
    };
    const wrap = (content: Buffer): Buffer => {
      const length: number[] = [];
      for (let n = content.length; ; n = Math.floor(n / 128)) {
        if (n < 128) { length.push(n); break; }
        length.push((n % 128) | 0x80);
      }
      return Buffer.concat([Buffer.from([0x0a, ...length]), content]);
    };
    fc.assert(fc.property(message, message, (a, b) => {
      const bytes = wrap(Buffer.concat([inner(a), inner(b)]));
      const expected = (decodeRequest(bytes).messages ?? []).map(viewOf).map(comparable);
      expect(decodeSendMessageRequest(bytes).map(comparable)).toEqual(expected);
    }), { numRuns: 300 });
  });

  it('encodes a response that proto-loader decodes to the given status and entries', () => {
    const codes = [...v2CodeNumbers.keys()] as V2Code[];
    const status = fc.record({ code: fc.constantFrom(...codes), message: text });
    const entry = fc.record({ status, messageId: text, transactionId: text, offset: fc.nat({ max: 2 ** 52 }), recallHandle: text });
    fc.assert(fc.property(status, fc.array(entry, { maxLength: 5 }), (top, entries) => {
      const decoded = decodeResponse(encodeSendMessageResponse(top, entries));
      expect({ code: decoded.status.code, message: decoded.status.message }).toEqual(top);
      expect(decoded.entries.map((e: any) => ({ status: { code: e.status.code, message: e.status.message }, messageId: e.messageId, transactionId: e.transactionId, offset: Number(e.offset), recallHandle: e.recallHandle })))
        .toEqual(entries);
    }), { numRuns: 300 });
  });

  it('refuses a status code the protocol does not have', () => {
    expect(() => encodeSendMessageResponse({ code: 'NO_SUCH_CODE' as V2Code, message: '' }, [])).toThrow(RangeError);
  });

  it('either decodes truncated or random bytes or throws WireFormatError', () => {
    fc.assert(fc.property(request, fc.nat(), (r, cut) => {
      const bytes = encodeRequest(r);
      const truncated = bytes.subarray(0, bytes.length === 0 ? 0 : cut % bytes.length);
      for (const input of [truncated, Buffer.from(truncated).reverse()]) {
        try {
          decodeSendMessageRequest(input);
        } catch (error) {
          expect(error).toBeInstanceOf(WireFormatError);
        }
      }
    }), { numRuns: 300 });
  });
});
