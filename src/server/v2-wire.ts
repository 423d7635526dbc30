/**
 * A small protobuf wire-format reader for the few fields a forwarding hop routes by (a topic
 * name, a receipt handle, a status code), so that the access point and a forwarding follower
 * can pass a call's bytes on without decoding and re-encoding the whole message.
 *
 * Semantics are those of the decoder every hop uses (proto-loader, i.e. protobufjs): a
 * singular field that occurs more than once is its last occurrence, a message field's too
 * (protobufjs replaces it rather than merging the occurrences as protobuf's specification
 * says); of a repeated field only the first element is ever asked for here. A field whose wire type is not the one its
 * declaration gives is skipped (protobufjs would misread or reject it; the hop that serves
 * the call decodes it and answers). Malformed input (a truncated varint or length, an
 * unknown wire type, an unbalanced group) throws {@link WireFormatError}.
 *
 * Compatibility rule: field numbers below are those of apache/rocketmq/v2 (service.proto,
 * definition.proto), which never renumber fields; a new routing field is a new path here.
 */

import { WireFormatError } from '../util/protobuf-wire.js';

export { WireFormatError };

/**
 * One step into a message: a singular field's number (its occurrences merge), or `[n]` for
 * the first element of repeated field n.
 */
export type Step = number | readonly [number];
export type FieldPath = readonly Step[];

const wireVarint = 0;
const wireFixed64 = 1;
const wireLengthDelimited = 2;
const wireStartGroup = 3;
const wireEndGroup = 4;
const wireFixed32 = 5;

/** Groups nest at most this deep (protobufjs allows about as much recursion). */
const groupDepthMax = 100;

/** Reads a varint at `at`; returns its low 32 bits as an unsigned number and the next position. */
function readVarint32(buf: Uint8Array, at: number, end: number): { value: number; next: number } {
  let value = 0;
  let shift = 0;
  let i = at;
  for (;;) {
    if (i >= end) throw new WireFormatError(`truncated varint at byte ${at}`);
    const byte = buf[i++] as number;
    if (shift < 32) value |= (byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) break;
    shift += 7;
    if (shift >= 70) throw new WireFormatError(`varint longer than 10 bytes at byte ${at}`);
  }
  return { value: value >>> 0, next: i };
}

/** The position after the value of a field with `wireType` that starts at `at`. */
function skipValue(buf: Uint8Array, at: number, end: number, wireType: number, fieldNumber: number, depth: number): number {
  switch (wireType) {
    case wireVarint:
      return readVarint32(buf, at, end).next;
    case wireFixed64:
      if (at + 8 > end) throw new WireFormatError(`truncated fixed64 at byte ${at}`);
      return at + 8;
    case wireFixed32:
      if (at + 4 > end) throw new WireFormatError(`truncated fixed32 at byte ${at}`);
      return at + 4;
    case wireLengthDelimited: {
      const { value: length, next } = readVarint32(buf, at, end);
      if (next + length > end) throw new WireFormatError(`length ${length} at byte ${at} runs past the end`);
      return next + length;
    }
    case wireStartGroup: {
      if (depth >= groupDepthMax) throw new WireFormatError('groups nested too deep');
      let i = at;
      for (;;) {
        if (i >= end) throw new WireFormatError(`group ${fieldNumber} at byte ${at} has no end`);
        const { value: tag, next } = readVarint32(buf, i, end);
        if ((tag & 7) === wireEndGroup) {
          if (tag >>> 3 !== fieldNumber) throw new WireFormatError(`group ${fieldNumber} ended as ${tag >>> 3}`);
          return next;
        }
        i = skipValue(buf, next, end, tag & 7, tag >>> 3, depth + 1);
      }
    }
    default:
      throw new WireFormatError(`wire type ${wireType} at byte ${at}`);
  }
}

/**
 * The value `path` reaches in buf, as [start, end) (a length-delimited value without its
 * length prefix; a varint as its bytes), or undefined when a step's field is absent. `last`
 * is the wire type the last step's field must have; every other step is a message.
 */
function locate(buf: Uint8Array, path: FieldPath, last: number): { start: number; end: number } | undefined {
  if (path.length === 0) throw new RangeError('a field path needs at least one step');
  let start = 0;
  let end = buf.length;
  for (let depth = 0; depth < path.length; depth++) {
    const step = path[depth] as Step;
    const repeated = typeof step !== 'number';
    const field = repeated ? step[0] : step;
    const want = depth === path.length - 1 ? last : wireLengthDelimited;
    let found: { start: number; end: number } | undefined;
    let i = start;
    while (i < end) {
      const { value: tag, next } = readVarint32(buf, i, end);
      const wireType = tag & 7;
      const number = tag >>> 3;
      if (number === 0) throw new WireFormatError(`field number 0 at byte ${i}`);
      if (wireType === wireEndGroup) throw new WireFormatError(`unexpected end of group at byte ${i}`);
      const after = skipValue(buf, next, end, wireType, number, 0);
      if (number === field && wireType === want) {
        found = { start: wireType === wireLengthDelimited ? readVarint32(buf, next, end).next : next, end: after };
        if (repeated) break;
      }
      i = after;
    }
    if (found === undefined) return undefined;
    ({ start, end } = found);
  }
  return { start, end };
}

/** The string at `path` ('' when absent, as proto3 decodes a missing string). */
export function stringAt(buf: Uint8Array, path: FieldPath): string {
  const at = locate(buf, path, wireLengthDelimited);
  if (at === undefined) return '';
  return Buffer.from(buf.buffer, buf.byteOffset + at.start, at.end - at.start).toString('utf8');
}

/** The int32 or enum at `path`, as protobufjs reads it (the low 32 bits, signed); 0 when absent. */
export function int32At(buf: Uint8Array, path: FieldPath): number {
  const at = locate(buf, path, wireVarint);
  return at === undefined ? 0 : readVarint32(buf, at.start, at.end).value | 0;
}

/**
 * Where the fields a hop routes a request by are (service.proto, definition.proto), by
 * method: a topic name, the broker name of a message queue, a handle that names the broker
 * group (receipt handle, recall handle, transaction id).
 */
export const requestRouting = {
  /** messages[0].topic.name; messages[0].system_properties.message_group. */
  SendMessage: { topic: [[1], 1, 2], messageGroup: [[1], 3, 17] },
  /** message_queue (2): .broker.name, .topic.name. */
  ReceiveMessage: { queueBroker: [2, 4, 1], queueTopic: [2, 1, 2] },
  PullMessage: { queueBroker: [2, 4, 1], queueTopic: [2, 1, 2] },
  UpdateOffset: { queueBroker: [2, 4, 1], queueTopic: [2, 1, 2] },
  GetOffset: { queueBroker: [2, 4, 1], queueTopic: [2, 1, 2] },
  /** QueryOffsetRequest has its message_queue first (1). */
  QueryOffset: { queueBroker: [1, 4, 1], queueTopic: [1, 1, 2] },
  /** entries[0].receipt_handle; topic.name. */
  AckMessage: { handle: [[3], 2], topic: [2, 2] },
  /** receipt_handle; topic.name. */
  ChangeInvisibleDuration: { handle: [3], topic: [2, 2] },
  ForwardMessageToDeadLetterQueue: { handle: [3], topic: [2, 2] },
  /** recall_handle; topic.name. */
  RecallMessage: { handle: [2], topic: [1, 2] },
  /** transaction_id; topic.name. */
  EndTransaction: { handle: [3], topic: [1, 2] },
} as const satisfies Record<string, Record<string, FieldPath>>;

/** Every response of MessagingService, and every frame of its server streams, has `Status status = 1`. */
export const responseStatusCode: FieldPath = [1, 1];
