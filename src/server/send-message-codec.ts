/**
 * SendMessage's request and answer in the protobuf wire format, decoded and encoded by hand:
 * the call every produced message arrives on, where proto-loader's decode + toObject of the
 * request and fromObject + encode of the answer cost the leader more than the rest of the
 * call. Only the fields the broker reads are decoded (of a Message: topic, user properties,
 * system properties, body); the rest are skipped by wire type.
 *
 * Semantics are proto-loader's (protobufjs with the options of rocketmq-v2.ts): a singular
 * field given more than once is its last occurrence, a message field's too (protobufjs
 * replaces rather than merges); `optional` fields (tag, message group, delivery time) are
 * undefined when absent; an enum is its number. send-message-codec.test.ts compares both
 * directions with proto-loader over random messages. Field numbers are apache/rocketmq/v2's
 * (service.proto, definition.proto), which never renumber fields.
 */
import { WireReader, WireWriter } from '../util/protobuf-wire.js';
import { v2CodeNumber, type V2Status } from '../util/rocketmq-v2.js';

/** One Message of a SendMessageRequest, as far as the broker reads it. */
export interface SendMessageIn {
  readonly topic: string;
  readonly namespace: string;
  readonly messageId: string;
  /** undefined: absent (proto3 `optional`). */
  readonly tag: string | undefined;
  readonly keys: readonly string[];
  readonly messageGroup: string | undefined;
  /** MessageType's number (0: unspecified). */
  readonly messageType: number;
  /** ms since the epoch; undefined when absent. */
  readonly bornTimestampMs: number | undefined;
  readonly deliveryTimestampMs: number | undefined;
  readonly bornHost: string;
  readonly queueId: number;
  /** In the order they came; a key given twice keeps its last value. */
  readonly userProperties: ReadonlyMap<string, string>;
  /** A view of the request's bytes, not a copy. */
  readonly body: Uint8Array;
}

/** One SendResultEntry of the answer. */
export interface SendEntryOut {
  readonly status: V2Status;
  readonly messageId: string;
  readonly transactionId: string;
  readonly offset: number;
  readonly recallHandle: string;
}

const lengthDelimited = 2;
const varint = 0;
const tag = (field: number, wireType: number): number => (field << 3) | wireType;

/** The messages of a SendMessageRequest; throws WireFormatError on bytes that are not one. */
export function decodeSendMessageRequest(bytes: Uint8Array): SendMessageIn[] {
  const buffer = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const reader = new WireReader(buffer, 0, buffer.byteLength);
  const messages: SendMessageIn[] = [];
  while (!reader.done()) {
    const field = reader.varint();
    if (field === tag(1, lengthDelimited)) messages.push(decodeMessage(reader, reader.lengthDelimited()));
    else reader.skip(field);
  }
  return messages;
}

interface SystemFields {
  messageId: string;
  tag: string | undefined;
  keys: string[];
  messageGroup: string | undefined;
  messageType: number;
  bornTimestampMs: number | undefined;
  deliveryTimestampMs: number | undefined;
  bornHost: string;
  queueId: number;
}

const noSystemFields = (): SystemFields => ({
  messageId: '', tag: undefined, keys: [], messageGroup: undefined, messageType: 0, bornTimestampMs: undefined, deliveryTimestampMs: undefined, bornHost: '', queueId: 0,
});

const emptyBody = new Uint8Array(0);

function decodeMessage(reader: WireReader, end: number): SendMessageIn {
  let namespace = '';
  let topic = '';
  const userProperties = new Map<string, string>();
  let system = noSystemFields();
  let body: Uint8Array = emptyBody;
  while (reader.at < end) {
    const field = reader.varint();
    switch (field) {
      case tag(1, lengthDelimited): [namespace, topic] = reader.stringPair(reader.lengthDelimited()); break;
      case tag(2, lengthDelimited): {
        // A key given again keeps its first place in the order (as an object's property would).
        const [key, value] = reader.stringPair(reader.lengthDelimited());
        userProperties.set(key, value);
        break;
      }
      case tag(3, lengthDelimited): system = decodeSystem(reader, reader.lengthDelimited()); break;
      case tag(4, lengthDelimited): body = reader.bytes(reader.lengthDelimited()); break;
      default: reader.skip(field);
    }
  }
  reader.expectAt(end);
  return { topic, namespace, ...system, userProperties, body };
}

function decodeSystem(reader: WireReader, end: number): SystemFields {
  const s = noSystemFields();
  while (reader.at < end) {
    const field = reader.varint();
    switch (field) {
      case tag(1, lengthDelimited): s.tag = reader.string(); break;
      case tag(2, lengthDelimited): s.keys.push(reader.string()); break;
      case tag(3, lengthDelimited): s.messageId = reader.string(); break;
      case tag(6, varint): s.messageType = reader.int32(); break;
      case tag(7, lengthDelimited): s.bornTimestampMs = reader.timestampMs(reader.lengthDelimited()); break;
      case tag(8, lengthDelimited): s.bornHost = reader.string(); break;
      case tag(11, lengthDelimited): s.deliveryTimestampMs = reader.timestampMs(reader.lengthDelimited()); break;
      case tag(13, varint): s.queueId = reader.int32(); break;
      case tag(17, lengthDelimited): s.messageGroup = reader.string(); break;
      default: reader.skip(field); // digest, encoding, store fields, receipt, durations, trace context, DLQ: not read on a send
    }
  }
  reader.expectAt(end);
  return s;
}

function writeStatus(writer: WireWriter, field: number, status: V2Status): void {
  writer.message(field, (w) => w.uint(1, v2CodeNumber(status.code)).string(2, status.message));
}

/** A SendMessageResponse: the request's status and one entry per message, in order. */
export function encodeSendMessageResponse(status: V2Status, entries: readonly SendEntryOut[]): Buffer {
  let bytes = 16 + status.message.length;
  for (const entry of entries) bytes += 48 + entry.status.message.length + entry.messageId.length + entry.transactionId.length + entry.recallHandle.length;
  const writer = new WireWriter(bytes);
  writeStatus(writer, 1, status);
  for (const entry of entries) {
    writer.message(2, (w) => {
      writeStatus(w, 1, entry.status);
      w.string(2, entry.messageId).string(3, entry.transactionId).uint(4, entry.offset).string(5, entry.recallHandle);
    });
  }
  return writer.finish();
}
