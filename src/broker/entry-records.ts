/**
 * Random access to the messages of one message entry (the record format of
 * core/entry-codec.ts). `readMessageAt` walks the records before the one it reads, which is
 * right for one message but quadratic for a pull that reads most of an entry (an entry holds
 * up to `batchMessagesMax` messages): here the records' byte offsets are found in one pass,
 * the first time a message of the entry is read, and each message is then decoded where it
 * starts. entry-records.test.ts checks every message against `readMessageAt` for each entry
 * kind, so the two decoders cannot drift apart.
 */
import { assert } from '../util/assert.js';
import { isMessagesKind, PayloadKind, payloadHeaderBytes, type StoredMessage } from './core/entry-codec.js';

export class EntryRecords {
  readonly payload: Buffer;
  /** Byte offset of each record's length field; found on first use. */
  private starts: Uint32Array | undefined;

  constructor(payload: Uint8Array) {
    this.payload = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  }

  get byteLength(): number {
    return this.payload.byteLength;
  }

  /** The full message at `position` of the entry's batch. */
  messageAt(position: number): StoredMessage {
    const starts = this.starts ?? this.index();
    if (position < 0 || position >= starts.length) throw new Error(`message ${position} is outside a batch of ${starts.length}`);
    return this.decode(starts[position] as number);
  }

  private index(): Uint32Array {
    const buffer = this.payload;
    assert(buffer.byteLength >= payloadHeaderBytes + 4 && isMessagesKind(buffer.readUInt8(0) as PayloadKind), 'not a message entry');
    const count = buffer.readUInt32BE(payloadHeaderBytes);
    const starts = new Uint32Array(count);
    let at = payloadHeaderBytes + 4;
    for (let i = 0; i < count; i++) {
      starts[i] = at;
      at += 4 + buffer.readUInt32BE(at);
    }
    assert(at <= buffer.byteLength, `message records run ${at - buffer.byteLength} bytes past their entry`);
    this.starts = starts;
    return starts;
  }

  /** One record (see entry-codec.ts for the layout), as readMessageAt decodes it. */
  private decode(start: number): StoredMessage {
    const buffer = this.payload;
    const kind = buffer.readUInt8(0) as PayloadKind;
    let at = start + 4;
    const u16 = (): number => {
      at += 2;
      return buffer.readUInt16BE(at - 2);
    };
    const u32 = (): number => {
      at += 4;
      return buffer.readUInt32BE(at - 4);
    };
    const f64 = (): number => {
      at += 8;
      return buffer.readDoubleBE(at - 8);
    };
    const text = (length: number): string => {
      at += length;
      return length === 0 ? '' : buffer.toString('utf8', at - length, at);
    };
    const bodyLength = u32();
    const topic = text(u16());
    const messageId = text(u16());
    const tag = text(u16());
    const messageGroup = text(u16());
    const queueId = buffer.readInt32BE(at);
    at += 4;
    const deliveryTimeMs = kind === PayloadKind.TimedMessages ? f64() : 0;
    const bornTimestamp = f64();
    const bornHost = text(u16());
    const keys: string[] = [];
    for (let n = u16(); n > 0; n--) keys.push(text(u16()));
    const properties = new Map<string, string>();
    for (let n = u16(); n > 0; n--) {
      const key = text(u16());
      properties.set(key, text(u32()));
    }
    const body = buffer.subarray(at, at + bodyLength);
    const message: StoredMessage = { topic, messageId, tag, keys, messageGroup, queueId, bornTimestamp, bornHost, properties, body };
    if (kind === PayloadKind.HalfMessages) return { ...message, transactional: true };
    return deliveryTimeMs === 0 ? message : { ...message, deliveryTimeMs };
  }
}
