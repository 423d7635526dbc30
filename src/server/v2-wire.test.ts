/**
 * The wire-format routing reader (v2-wire.ts) against the decoder the rest of the code uses
 * (proto-loader/protobufjs, through the service definition's own serializers): for random
 * requests of every method the access point routes as bytes, the routing fields read from
 * the bytes equal the decoded object's, also for concatenated encodings (a repeated field's
 * elements add up; a singular field, a message one too, is its last occurrence, as protobufjs
 * decodes) and with unknown fields of every wire type around them; a response's status code reads as the decoder's;
 * truncated or random bytes either read or throw WireFormatError, nothing else.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { messagingServiceDefinition } from '../util/rocketmq-v2.js';
import { isNotLeaderAnswer } from './forwarder.js';
import { int32At, requestRouting, responseStatusCode, stringAt, WireFormatError } from './v2-wire.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader objects are untyped at this edge */

const method = (name: string) => {
  const definition = messagingServiceDefinition[name];
  if (definition === undefined) throw new Error(`no method ${name}`);
  return definition;
};
const encodeRequest = (name: string, request: unknown): Buffer => method(name).requestSerialize(request);
const decodeRequest = (name: string, bytes: Buffer): any => method(name).requestDeserialize(bytes);
const encodeResponse = (name: string, response: unknown): Buffer => method(name).responseSerialize(response);
const decodeResponse = (name: string, bytes: Buffer): any => method(name).responseDeserialize(bytes);

// ---- arbitraries --------------------------------------------------------------------------

/** Strings of any Unicode (no lone surrogates: they do not survive UTF-8 either way). */
const text = fc.oneof(fc.string({ unit: 'binary', maxLength: 12 }), fc.constantFrom('', 'g1', 'r1~ga~t~0~1~2', 'topic-a'));
const resource = fc.record({ resourceNamespace: text, name: text }, { requiredKeys: [] });
const timestamp = fc.record({ seconds: fc.integer({ min: 0, max: 2 ** 40 }), nanos: fc.integer({ min: 0, max: 999_999_999 }) });
const systemProperties = fc.record({
  tag: text, keys: fc.array(text, { maxLength: 3 }), messageId: text, messageGroup: text, bornHost: text, queueId: fc.integer({ min: -5, max: 1_000 }),
  bornTimestamp: timestamp, deliveryTimestamp: timestamp, messageType: fc.constantFrom('NORMAL', 'FIFO', 'DELAY', 'TRANSACTION'),
}, { requiredKeys: [] });
const message = fc.record({
  topic: resource, userProperties: fc.dictionary(text, text, { maxKeys: 3 }), systemProperties, body: fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
}, { requiredKeys: [] });
const endpoints = fc.record({ scheme: fc.constantFrom('IPv4', 'DOMAIN_NAME'), addresses: fc.array(fc.record({ host: text, port: fc.integer({ min: 0, max: 65_535 }) }), { maxLength: 2 }) });
const messageQueue = fc.record({
  topic: resource, id: fc.integer({ min: -1, max: 64 }), permission: fc.constantFrom('READ', 'WRITE', 'READ_WRITE'),
  broker: fc.record({ name: text, id: fc.integer({ min: 0, max: 3 }), endpoints }, { requiredKeys: [] }),
}, { requiredKeys: [] });
const duration = fc.record({ seconds: fc.integer({ min: 0, max: 100_000 }), nanos: fc.integer({ min: 0, max: 999_999_999 }) });
const filterExpression = fc.record({ type: fc.constantFrom('TAG', 'SQL'), expression: text });

const requests: Record<keyof typeof requestRouting, fc.Arbitrary<object>> = {
  SendMessage: fc.record({ messages: fc.array(message, { maxLength: 3 }) }, { requiredKeys: [] }),
  ReceiveMessage: fc.record({ group: resource, messageQueue, filterExpression, batchSize: fc.nat(64), invisibleDuration: duration, autoRenew: fc.boolean(), longPollingTimeout: duration, attemptId: text }, { requiredKeys: [] }),
  PullMessage: fc.record({ group: resource, messageQueue, offset: fc.nat(), batchSize: fc.nat(64), filterExpression, longPollingTimeout: duration }, { requiredKeys: [] }),
  UpdateOffset: fc.record({ group: resource, messageQueue, offset: fc.nat() }, { requiredKeys: [] }),
  GetOffset: fc.record({ group: resource, messageQueue }, { requiredKeys: [] }),
  QueryOffset: fc.record({ messageQueue, queryOffsetPolicy: fc.constantFrom('BEGINNING', 'END', 'TIMESTAMP'), timestamp }, { requiredKeys: [] }),
  AckMessage: fc.record({ group: resource, topic: resource, entries: fc.array(fc.record({ messageId: text, receiptHandle: text }, { requiredKeys: [] }), { maxLength: 3 }) }, { requiredKeys: [] }),
  ChangeInvisibleDuration: fc.record({ group: resource, topic: resource, receiptHandle: text, invisibleDuration: duration, messageId: text }, { requiredKeys: [] }),
  ForwardMessageToDeadLetterQueue: fc.record({ group: resource, topic: resource, receiptHandle: text, messageId: text, deliveryAttempt: fc.nat(20), maxDeliveryAttempts: fc.nat(20) }, { requiredKeys: [] }),
  RecallMessage: fc.record({ topic: resource, recallHandle: text }, { requiredKeys: [] }),
  EndTransaction: fc.record({ topic: resource, messageId: text, transactionId: text, resolution: fc.constantFrom('COMMIT', 'ROLLBACK'), source: fc.constantFrom('SOURCE_CLIENT', 'SOURCE_SERVER_CHECK'), traceContext: text }, { requiredKeys: [] }),
};

/** What the access point routed by when it decoded every request (its former accessors). */
const decodedRouting: { [M in keyof typeof requestRouting]: (request: any) => Record<keyof (typeof requestRouting)[M], string> } = {
  SendMessage: (r) => ({ topic: String(r.messages?.[0]?.topic?.name ?? ''), messageGroup: String(r.messages?.[0]?.systemProperties?.messageGroup ?? '') }),
  ReceiveMessage: (r) => byQueue(r),
  PullMessage: (r) => byQueue(r),
  UpdateOffset: (r) => byQueue(r),
  GetOffset: (r) => byQueue(r),
  QueryOffset: (r) => byQueue(r),
  AckMessage: (r) => ({ handle: String(r.entries?.[0]?.receiptHandle ?? ''), topic: String(r.topic?.name ?? '') }),
  ChangeInvisibleDuration: (r) => ({ handle: String(r.receiptHandle ?? ''), topic: String(r.topic?.name ?? '') }),
  ForwardMessageToDeadLetterQueue: (r) => ({ handle: String(r.receiptHandle ?? ''), topic: String(r.topic?.name ?? '') }),
  RecallMessage: (r) => ({ handle: String(r.recallHandle ?? ''), topic: String(r.topic?.name ?? '') }),
  EndTransaction: (r) => ({ handle: String(r.transactionId ?? ''), topic: String(r.topic?.name ?? '') }),
};
function byQueue(r: any): { queueBroker: string; queueTopic: string } {
  return { queueBroker: String(r.messageQueue?.broker?.name ?? ''), queueTopic: String(r.messageQueue?.topic?.name ?? '') };
}

function readRouting(name: keyof typeof requestRouting, bytes: Buffer): Record<string, string> {
  return Object.fromEntries(Object.entries(requestRouting[name]).map(([field, path]) => [field, stringAt(bytes, path)]));
}

// ---- unknown fields, hand-encoded -----------------------------------------------------------

function varint(value: number): number[] {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return out;
}
const tag = (field: number, wireType: number): number[] => varint(field * 8 + wireType);

/** A field no message of the service declares (numbers 1000+), of any wire type, groups included. */
const unknownField: fc.Arbitrary<number[]> = fc.letrec<{ field: number[] }>((tie) => ({
  field: fc.oneof(
    { depthSize: 'small' },
    fc.tuple(fc.integer({ min: 1000, max: 5000 }), fc.nat()).map(([f, v]) => [...tag(f, 0), ...varint(v)]),
    fc.tuple(fc.integer({ min: 1000, max: 5000 }), fc.uint8Array({ minLength: 8, maxLength: 8 })).map(([f, b]) => [...tag(f, 1), ...b]),
    fc.tuple(fc.integer({ min: 1000, max: 5000 }), fc.uint8Array({ minLength: 4, maxLength: 4 })).map(([f, b]) => [...tag(f, 5), ...b]),
    fc.tuple(fc.integer({ min: 1000, max: 5000 }), fc.uint8Array({ maxLength: 20 })).map(([f, b]) => [...tag(f, 2), ...varint(b.length), ...b]),
    fc.tuple(fc.integer({ min: 1000, max: 5000 }), fc.array(tie('field'), { maxLength: 3 })).map(([f, inner]) => [...tag(f, 3), ...inner.flat(), ...tag(f, 4)]),
  ),
})).field;

describe('stringAt / requestRouting', () => {
  for (const name of Object.keys(requestRouting) as (keyof typeof requestRouting)[]) {
    it(`reads ${name}'s routing fields as the decoder does`, () => {
      fc.assert(fc.property(requests[name], (request) => {
        const bytes = encodeRequest(name, request);
        expect(readRouting(name, bytes)).toEqual(decodedRouting[name](decodeRequest(name, bytes)));
      }), { numRuns: 300 });
    });

    it(`reads ${name}'s routing fields of merged encodings, among unknown fields, as the decoder does`, () => {
      fc.assert(fc.property(fc.array(requests[name], { minLength: 1, maxLength: 3 }), fc.array(unknownField, { maxLength: 4 }), fc.nat(), (parts, unknown, seed) => {
        // Unknown fields go between the parts (and so between the parts' own fields).
        const chunks: Buffer[] = parts.map((part) => encodeRequest(name, part));
        unknown.forEach((field, i) => chunks.splice((seed + i) % (chunks.length + 1), 0, Buffer.from(field)));
        const bytes = Buffer.concat(chunks);
        expect(readRouting(name, bytes)).toEqual(decodedRouting[name](decodeRequest(name, bytes)));
      }), { numRuns: 200 });
    });
  }

  it('takes the first message of a send, not a later one', () => {
    const bytes = encodeRequest('SendMessage', { messages: [{ topic: { name: 'first' } }, { topic: { name: 'second' }, systemProperties: { messageGroup: 'k' } }] });
    expect(stringAt(bytes, requestRouting.SendMessage.topic)).toBe('first');
    expect(stringAt(bytes, requestRouting.SendMessage.messageGroup)).toBe('');
  });

  it('takes the last occurrence of a singular message field whole, as protobufjs does (not merged)', () => {
    const bytes = Buffer.concat([encodeRequest('RecallMessage', { topic: { name: 'a', resourceNamespace: 'ns' } }), encodeRequest('RecallMessage', { topic: { name: 'b' } })]);
    expect(stringAt(bytes, requestRouting.RecallMessage.topic)).toBe('b');
    expect(decodeRequest('RecallMessage', bytes).topic).toMatchObject({ name: 'b', resourceNamespace: '' });
    const nameless = Buffer.concat([encodeRequest('RecallMessage', { topic: { name: 'a' } }), encodeRequest('RecallMessage', { topic: { resourceNamespace: 'ns' } })]);
    expect(stringAt(nameless, requestRouting.RecallMessage.topic)).toBe('');
  });

  it('reads a body-heavy send without copying it (the routing fields of a 4 MiB send)', () => {
    const body = Buffer.alloc(4 * 1024 * 1024, 7);
    const bytes = encodeRequest('SendMessage', { messages: [{ topic: { name: 'big' }, systemProperties: { messageGroup: 'g' }, body }] });
    expect(readRouting('SendMessage', bytes)).toEqual({ topic: 'big', messageGroup: 'g' });
  });
});

describe('int32At / responseStatusCode', () => {
  const codes = ['OK', 'BAD_REQUEST', 'ILLEGAL_TOPIC', 'NOT_FOUND', 'TOO_MANY_REQUESTS', 'INTERNAL_SERVER_ERROR', 'HA_NOT_AVAILABLE', 'PROXY_TIMEOUT', 'UNSUPPORTED', 'MESSAGE_NOT_FOUND', 'CODE_UNSPECIFIED'];

  it('reads HA_NOT_AVAILABLE as 50002 (definition.proto) and nothing else as not-leader', () => {
    expect(int32At(encodeResponse('SendMessage', { status: { code: 'HA_NOT_AVAILABLE', message: 'x' } }), responseStatusCode)).toBe(50002);
    expect(isNotLeaderAnswer(encodeResponse('SendMessage', { status: { code: 'OK', message: 'OK' }, entries: [] }))).toBe(false);
    expect(isNotLeaderAnswer(Buffer.alloc(0))).toBe(false);
  });

  it('reads the status code of unary responses and stream frames as the decoder does', () => {
    const unaryResponse = fc.record({
      status: fc.record({ code: fc.constantFrom(...codes), message: text }, { requiredKeys: [] }),
      entries: fc.array(fc.record({ status: fc.record({ code: fc.constantFrom(...codes), message: text }), messageId: text, offset: fc.nat() }, { requiredKeys: [] }), { maxLength: 3 }),
    }, { requiredKeys: [] });
    const frame = fc.oneof(
      fc.record({ status: fc.record({ code: fc.constantFrom(...codes), message: text }, { requiredKeys: [] }) }),
      fc.record({ message }),
      fc.record({ deliveryTimestamp: timestamp }),
    );
    fc.assert(fc.property(unaryResponse, frame, (response, streamFrame) => {
      for (const [name, value] of [['SendMessage', response], ['ReceiveMessage', streamFrame]] as const) {
        const bytes = encodeResponse(name, value);
        const decoded = decodeResponse(name, bytes);
        const code = int32At(bytes, responseStatusCode);
        // The number read re-encodes to the decoder's name (0 when the status or its code is absent).
        expect(decodeResponse(name, encodeResponse(name, { status: { code } })).status.code).toBe(decoded.status?.code ?? 'CODE_UNSPECIFIED');
        expect(isNotLeaderAnswer(bytes)).toBe(decoded.status?.code === 'HA_NOT_AVAILABLE');
      }
    }), { numRuns: 300 });
  });

  it('reads a negative int32 (a 10-byte varint) as protobufjs does', () => {
    const bytes = encodeRequest('ReceiveMessage', { messageQueue: { id: -1 } });
    expect(int32At(bytes, [2, 2])).toBe(-1);
    expect(decodeRequest('ReceiveMessage', bytes).messageQueue.id).toBe(-1);
  });
});

describe('malformed input', () => {
  const readAll = (bytes: Buffer): void => {
    for (const paths of Object.values(requestRouting)) for (const path of Object.values(paths)) stringAt(bytes, path);
    int32At(bytes, responseStatusCode);
  };
  const onlyWireFormatErrors = (bytes: Buffer): void => {
    try {
      readAll(bytes);
    } catch (error) {
      expect(error).toBeInstanceOf(WireFormatError);
    }
  };

  it('reads or throws WireFormatError for every truncation of a valid request', () => {
    fc.assert(fc.property(requests.SendMessage, requests.AckMessage, fc.nat(), (send, ack, cut) => {
      for (const bytes of [encodeRequest('SendMessage', send), encodeRequest('AckMessage', ack)]) onlyWireFormatErrors(bytes.subarray(0, bytes.length === 0 ? 0 : cut % bytes.length));
    }), { numRuns: 300 });
  });

  it('reads or throws WireFormatError for random bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => onlyWireFormatErrors(Buffer.from(bytes))), { numRuns: 1_000 });
  });

  it('throws WireFormatError on a length that runs past the end, a bad wire type, a field number 0 and an unbalanced group', () => {
    expect(() => stringAt(Buffer.from([0x0a, 0x05, 0x01]), [1])).toThrow(WireFormatError);
    expect(() => stringAt(Buffer.from([0x0e]), [1])).toThrow(WireFormatError);
    expect(() => stringAt(Buffer.from([0x02, 0x00]), [1])).toThrow(WireFormatError);
    expect(() => stringAt(Buffer.from([0x0b, 0x08, 0x01]), [2])).toThrow(WireFormatError);
    expect(() => stringAt(Buffer.from([0x0b, 0x14]), [2])).toThrow(WireFormatError);
    expect(() => stringAt(Buffer.from([0x80, 0x80]), [1])).toThrow(WireFormatError);
  });

  it('skips a field whose wire type is not its declared one', () => {
    // topic (1) as a varint, then as the message it is.
    const bytes = Buffer.concat([Buffer.from([0x08, 0x05]), encodeRequest('RecallMessage', { topic: { name: 't' } })]);
    expect(stringAt(bytes, requestRouting.RecallMessage.topic)).toBe('t');
  });
});
