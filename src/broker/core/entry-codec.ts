/**
 * The broker's Raft entry payloads. Every payload starts with a fixed header:
 *
 *   u8 kind | f64 leader time (ms since epoch)
 *
 * The time is the only clock apply ever sees. (Apply results reach the proposer through
 * RaftNode.propose, so entries carry no proposer fields.)
 *
 * Message batches (the hot path) are binary; each message record starts with its length and
 * its body's length, so apply reads the routing fields and skips the rest. Control commands (topic/group admin, receive,
 * ack, offsets) are JSON: small, and far rarer than messages per byte.
 *
 * A message record, in order: u32 record length (after this field) | u32 body length |
 * short topic | short message id | short tag | short message group | i32 queue id |
 * [TimedMessages only: f64 delivery time, ms since the epoch, 0 = none] | f64 born timestamp |
 * short born host | u16 n, n × short key | u16 n, n × { short key, long value } | body
 * (short = u16 length + UTF-8, long = u32 length + UTF-8, big-endian).
 *
 * A batch with a delivery time on any message (SPEC F8) is kind TimedMessages: every record
 * then carries the f64 after its queue id. Batches without one stay kind Messages, byte for
 * byte what they were before delayed messages existed, so logs written earlier read the same.
 * Readers of message entries test `isMessagesKind`.
 *
 * A batch of transactional half messages (SPEC F9) is kind HalfMessages: records exactly as
 * in Messages (a half message cannot be delayed), stored but not visible until its
 * transaction is committed (transactions.ts).
 */
import { assert } from '../../util/assert.js';

export enum PayloadKind {
  Messages = 1,
  Command = 2,
  /** Messages whose records each carry a delivery time (see above). */
  TimedMessages = 3,
  /** Half messages of transactions (see above). */
  HalfMessages = 4,
}

/** Whether an entry of this kind holds messages (readRouting and readMessageAt read both kinds). */
export const isMessagesKind = (kind: PayloadKind): boolean => kind === PayloadKind.Messages || kind === PayloadKind.TimedMessages || kind === PayloadKind.HalfMessages;

export const payloadHeaderBytes = 9;

export interface PayloadHeader {
  readonly kind: PayloadKind;
  readonly timeMs: number;
}

export interface MessageInput {
  readonly topic: string;
  readonly messageId: string;
  readonly tag: string;
  readonly keys: readonly string[];
  readonly messageGroup: string;
  /** -1: the broker chooses (round robin, or by message group for FIFO). */
  readonly queueId: number;
  readonly bornTimestamp: number;
  readonly bornHost: string;
  readonly properties: ReadonlyMap<string, string> | Readonly<Record<string, string>>;
  readonly body: Uint8Array;
  /** Delayed or scheduled (F8): not delivered before this time, ms since the epoch. Absent or 0: at once. */
  readonly deliveryTimeMs?: number;
}

/** What apply needs of a message: everything but keys, properties and body. */
export interface MessageRouting {
  readonly topic: string;
  readonly messageId: string;
  readonly tag: string;
  readonly messageGroup: string;
  readonly queueId: number;
  readonly bodyBytes: number;
  /** 0 (or absent): deliver at once. readRouting always sets it. */
  readonly deliveryTimeMs?: number;
}

export interface StoredMessage extends MessageInput {
  readonly properties: ReadonlyMap<string, string>;
  /** Stored as a transaction's half message (entry kind HalfMessages), delivered once committed. */
  readonly transactional?: true;
}

const utf8 = new TextEncoder();
const shortStringMax = 0xffff;

function entriesOf(properties: MessageInput['properties']): [string, string][] {
  return properties instanceof Map ? [...properties.entries()] : Object.entries(properties);
}

const deliveryTimeOf = (message: MessageInput): number => message.deliveryTimeMs ?? 0;

function messageBytes(message: MessageInput, props: [string, string][], timed: boolean): number {
  let bytes = 4 + 2 * 5 + 4 + (timed ? 8 : 0) + 8 + 2 + 2 + 4 + message.body.byteLength;
  bytes += Buffer.byteLength(message.topic) + Buffer.byteLength(message.messageId) + Buffer.byteLength(message.tag)
    + Buffer.byteLength(message.messageGroup) + Buffer.byteLength(message.bornHost);
  for (const key of message.keys) bytes += 2 + Buffer.byteLength(key);
  for (const [key, value] of props) bytes += 2 + Buffer.byteLength(key) + 4 + Buffer.byteLength(value);
  return bytes;
}

function writeHeader(buffer: Buffer, header: Omit<PayloadHeader, 'kind'>, kind: PayloadKind): void {
  buffer.writeUInt8(kind, 0);
  buffer.writeDoubleBE(header.timeMs, 1);
}

export function readHeader(payload: Uint8Array): PayloadHeader {
  if (payload.byteLength < payloadHeaderBytes) throw new Error(`broker payload of ${payload.byteLength} bytes is shorter than its header`);
  const view = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  return { kind: view.readUInt8(0) as PayloadKind, timeMs: view.readDoubleBE(1) };
}

/** One allocation per batch: sizes first, then one pass of writes. `half`: a batch of transactional half messages (none delayed). */
export function encodeMessages(header: Omit<PayloadHeader, 'kind'>, messages: readonly MessageInput[], half = false): Uint8Array {
  const timed = messages.some((m) => deliveryTimeOf(m) !== 0);
  assert(!(half && timed), 'a half message cannot have a delivery time');
  for (const m of messages) assert(Number.isFinite(deliveryTimeOf(m)) && deliveryTimeOf(m) >= 0, `message delivery time ${deliveryTimeOf(m)}`);
  const props = messages.map((m) => entriesOf(m.properties));
  let total = payloadHeaderBytes + 4;
  const sizes = messages.map((m, i) => messageBytes(m, props[i] as [string, string][], timed));
  for (const size of sizes) total += size;
  const buffer = Buffer.allocUnsafe(total);
  writeHeader(buffer, header, half ? PayloadKind.HalfMessages : timed ? PayloadKind.TimedMessages : PayloadKind.Messages);
  let at = payloadHeaderBytes;
  at = buffer.writeUInt32BE(messages.length, at);
  const short = (text: string): void => {
    const length = buffer.write(text, at + 2);
    assert(length <= shortStringMax, 'string too long for the message codec');
    buffer.writeUInt16BE(length, at);
    at += 2 + length;
  };
  messages.forEach((message, i) => {
    at = buffer.writeUInt32BE((sizes[i] as number) - 4, at);
    at = buffer.writeUInt32BE(message.body.byteLength, at);
    short(message.topic);
    short(message.messageId);
    short(message.tag);
    short(message.messageGroup);
    at = buffer.writeInt32BE(message.queueId, at);
    if (timed) at = buffer.writeDoubleBE(deliveryTimeOf(message), at);
    at = buffer.writeDoubleBE(message.bornTimestamp, at);
    short(message.bornHost);
    at = buffer.writeUInt16BE(message.keys.length, at);
    for (const key of message.keys) short(key);
    const entries = props[i] as [string, string][];
    at = buffer.writeUInt16BE(entries.length, at);
    for (const [key, value] of entries) {
      short(key);
      const length = buffer.write(value, at + 4);
      buffer.writeUInt32BE(length, at);
      at += 4 + length;
    }
    buffer.set(message.body, at);
    at += message.body.byteLength;
  });
  assert(at === total, `message batch encoded ${at} of ${total} bytes`);
  return buffer;
}

class Reader {
  at: number;
  constructor(readonly buffer: Buffer, at: number) {
    this.at = at;
  }
  u16(): number { const v = this.buffer.readUInt16BE(this.at); this.at += 2; return v; }
  u32(): number { const v = this.buffer.readUInt32BE(this.at); this.at += 4; return v; }
  i32(): number { const v = this.buffer.readInt32BE(this.at); this.at += 4; return v; }
  f64(): number { const v = this.buffer.readDoubleBE(this.at); this.at += 8; return v; }
  short(): string { const n = this.u16(); const v = this.buffer.toString('utf8', this.at, this.at + n); this.at += n; return v; }
  long(): string { const n = this.u32(); const v = this.buffer.toString('utf8', this.at, this.at + n); this.at += n; return v; }
}

function asBuffer(payload: Uint8Array): Buffer {
  return Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
}

const isTimed = (buffer: Buffer): boolean => buffer.readUInt8(0) === PayloadKind.TimedMessages;

/** The routing fields of every message of a batch, in order, without touching bodies. */
export function readRouting(payload: Uint8Array): MessageRouting[] {
  const buffer = asBuffer(payload);
  const timed = isTimed(buffer);
  const reader = new Reader(buffer, payloadHeaderBytes);
  const count = reader.u32();
  const out: MessageRouting[] = [];
  for (let i = 0; i < count; i++) {
    const length = reader.u32();
    const end = reader.at + length;
    const bodyBytes = reader.u32();
    const topic = reader.short();
    const messageId = reader.short();
    const tag = reader.short();
    const messageGroup = reader.short();
    const queueId = reader.i32();
    const deliveryTimeMs = timed ? reader.f64() : 0;
    out.push({ topic, messageId, tag, messageGroup, queueId, bodyBytes, deliveryTimeMs });
    reader.at = end;
  }
  return out;
}

/** The full message at `position` in a batch (for delivery). */
export function readMessageAt(payload: Uint8Array, position: number): StoredMessage {
  const buffer = asBuffer(payload);
  const timed = isTimed(buffer);
  const reader = new Reader(buffer, payloadHeaderBytes);
  const count = reader.u32();
  if (position < 0 || position >= count) throw new Error(`message ${position} is outside a batch of ${count}`);
  for (let i = 0; i < position; i++) {
    const length = reader.u32(); // read first: `at += u32()` would add to the old `at`
    reader.at += length;
  }
  reader.u32();
  const bodyLength = reader.u32();
  const topic = reader.short();
  const messageId = reader.short();
  const tag = reader.short();
  const messageGroup = reader.short();
  const queueId = reader.i32();
  const deliveryTimeMs = timed ? reader.f64() : 0;
  const bornTimestamp = reader.f64();
  const bornHost = reader.short();
  const keys: string[] = [];
  for (let n = reader.u16(); n > 0; n--) keys.push(reader.short());
  const properties = new Map<string, string>();
  for (let n = reader.u16(); n > 0; n--) {
    const key = reader.short();
    properties.set(key, reader.long());
  }
  const body = reader.buffer.subarray(reader.at, reader.at + bodyLength);
  const message: StoredMessage = { topic, messageId, tag, keys, messageGroup, queueId, bornTimestamp, bornHost, properties, body };
  if (buffer.readUInt8(0) === PayloadKind.HalfMessages) return { ...message, transactional: true };
  return deliveryTimeMs === 0 ? message : { ...message, deliveryTimeMs };
}

export function encodeCommand(header: Omit<PayloadHeader, 'kind'>, command: object): Uint8Array {
  const json = utf8.encode(JSON.stringify(command));
  const buffer = Buffer.allocUnsafe(payloadHeaderBytes + json.byteLength);
  writeHeader(buffer, header, PayloadKind.Command);
  buffer.set(json, payloadHeaderBytes);
  return buffer;
}

export function readCommand(payload: Uint8Array): unknown {
  return JSON.parse(asBuffer(payload).toString('utf8', payloadHeaderBytes));
}
