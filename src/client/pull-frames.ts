/**
 * Our PullConsumer's reading of `PullMessageResponse` frames: the protobuf wire format of
 * the one frame kind that is numerous (`message`, one per pulled message) decoded straight
 * into a ReceivedMessage, without proto-loader's generic decode and toObject (about half of
 * the client's CPU per message in a drain). The other frames (one `status` and one
 * `next_offset` per call) go through proto-loader as before.
 *
 * The decoder takes any valid encoding (fields in any order, repeated scalars, unknown fields
 * skipped by wire type) and gives what `fromV2` gives for proto-loader's object (with the
 * loader options of rocketmq-v2.ts: defaults on, 64-bit numbers as numbers);
 * pull-frames.test.ts compares the two over random messages.
 */
import { hash } from 'node:crypto';
import { WireReader } from '../util/protobuf-wire.js';
import { messagingServiceDefinition } from '../util/rocketmq-v2.js';
import type { ReceivedMessage } from './messages.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader objects are untyped at this edge */

export type PullFrame =
  | { readonly content: 'message'; readonly message: ReceivedMessage }
  | { readonly content: 'status'; readonly status: { readonly code: string; readonly message: string } }
  | { readonly content: 'nextOffset'; readonly nextOffset: number };

const genericDeserialize = messagingServiceDefinition.PullMessage?.responseDeserialize as (bytes: Buffer) => any;

/** PullMessageResponse.message: field 2, length-delimited. */
const messageFieldTag = (2 << 3) | 2;

/** A frame as our PullConsumer uses it; throws on bytes that are not a PullMessageResponse. */
export function decodePullFrame(bytes: Buffer, brokerGroup: string): PullFrame {
  if (bytes.byteLength > 0 && bytes[0] === messageFieldTag) {
    const reader = new WireReader(bytes, 0, bytes.byteLength);
    let message: ReceivedMessage | undefined;
    while (!reader.done()) {
      const tag = reader.varint();
      // A oneof field given more than once: the last one wins. Any other field means the
      // frame is not (only) a message: decode it the generic way.
      if (tag !== messageFieldTag) return genericFrame(bytes);
      const end = reader.lengthDelimited();
      message = decodeMessage(reader, end, brokerGroup);
    }
    if (message !== undefined) return { content: 'message', message };
  }
  return genericFrame(bytes);
}

function genericFrame(bytes: Buffer): PullFrame {
  const frame = genericDeserialize(bytes);
  if (frame.content === 'status') return { content: 'status', status: { code: String(frame.status?.code ?? 'CODE_UNSPECIFIED'), message: String(frame.status?.message ?? '') } };
  if (frame.content === 'nextOffset') return { content: 'nextOffset', nextOffset: Number(frame.nextOffset) };
  throw new Error(`a PullMessageResponse with content ${String(frame.content)}`);
}

/** The protocol's DigestType.MD5. */
const digestMd5 = 2;

interface SystemFields {
  tag: string;
  keys: string[];
  messageId: string;
  digestType: number | undefined;
  checksum: string;
  bornTimestampMs: number;
  storeTimestampMs: number;
  deliveryTimeMs: number;
  receiptHandle: string;
  queueId: number;
  queueOffset: number;
  deliveryAttempt: number;
  messageGroup: string;
}

function decodeMessage(reader: WireReader, end: number, brokerGroup: string): ReceivedMessage {
  let topic = '';
  const properties: Record<string, string> = {};
  let system: SystemFields | undefined;
  let body: Buffer = emptyBody;
  while (reader.at < end) {
    const tag = reader.varint();
    switch (tag) {
      case (1 << 3) | 2: topic = reader.stringPair(reader.lengthDelimited())[1]; break;
      case (2 << 3) | 2: decodeMapEntry(reader, reader.lengthDelimited(), properties); break;
      case (3 << 3) | 2: system = decodeSystem(reader, reader.lengthDelimited(), system); break;
      case (4 << 3) | 2: body = reader.bytes(reader.lengthDelimited()); break;
      default: reader.skip(tag);
    }
  }
  reader.expectAt(end);
  const s = system ?? newSystemFields();
  const intact = s.digestType !== digestMd5 || hash('md5', body, 'hex').toUpperCase() === s.checksum;
  return {
    messageId: s.messageId, topic, brokerGroup, queueId: s.queueId, offset: s.queueOffset, tag: s.tag, keys: s.keys,
    shardingKey: s.messageGroup, properties, body, bornTimestampMs: s.bornTimestampMs, storeTimestampMs: s.storeTimestampMs,
    deliveryTimeMs: s.deliveryTimeMs, receiptHandle: s.receiptHandle, deliveryAttempt: s.deliveryAttempt, intact,
  };
}

const emptyBody = Buffer.alloc(0);

function newSystemFields(): SystemFields {
  return {
    tag: '', keys: [], messageId: '', digestType: undefined, checksum: '', bornTimestampMs: 0, storeTimestampMs: 0, deliveryTimeMs: 0,
    receiptHandle: '', queueId: 0, queueOffset: 0, deliveryAttempt: 0, messageGroup: '',
  };
}

/** A message field given twice is merged (protobuf's rule), so fields decode onto `into`. */
function decodeSystem(reader: WireReader, end: number, into: SystemFields | undefined): SystemFields {
  const s = into ?? newSystemFields();
  while (reader.at < end) {
    const tag = reader.varint();
    switch (tag) {
      case (1 << 3) | 2: s.tag = reader.string(); break;
      case (2 << 3) | 2: s.keys.push(reader.string()); break;
      case (3 << 3) | 2: s.messageId = reader.string(); break;
      case (4 << 3) | 2: decodeDigest(reader, reader.lengthDelimited(), s); break;
      case (7 << 3) | 2: s.bornTimestampMs = reader.timestampMs(reader.lengthDelimited()); break;
      case (9 << 3) | 2: s.storeTimestampMs = reader.timestampMs(reader.lengthDelimited()); break;
      case (11 << 3) | 2: s.deliveryTimeMs = reader.timestampMs(reader.lengthDelimited()); break;
      case (12 << 3) | 2: s.receiptHandle = reader.string(); break;
      case (13 << 3) | 0: s.queueId = reader.int32(); break;
      case (14 << 3) | 0: s.queueOffset = reader.int64(); break;
      case (16 << 3) | 0: s.deliveryAttempt = reader.int32(); break;
      case (17 << 3) | 2: s.messageGroup = reader.string(); break;
      default: reader.skip(tag); // encoding, type, hosts, durations, trace context, DLQ: not in a ReceivedMessage
    }
  }
  reader.expectAt(end);
  return s;
}

function decodeDigest(reader: WireReader, end: number, s: SystemFields): void {
  s.digestType ??= 0;
  while (reader.at < end) {
    const tag = reader.varint();
    if (tag === ((1 << 3) | 0)) s.digestType = reader.int32();
    else if (tag === ((2 << 3) | 2)) s.checksum = reader.string();
    else reader.skip(tag);
  }
  reader.expectAt(end);
}

function decodeMapEntry(reader: WireReader, end: number, into: Record<string, string>): void {
  const [key, value] = reader.stringPair(end);
  // A plain assignment of '__proto__' would set the prototype instead of a property.
  if (key === '__proto__') Object.defineProperty(into, key, { value, enumerable: true, writable: true, configurable: true });
  else into[key] = value;
}
