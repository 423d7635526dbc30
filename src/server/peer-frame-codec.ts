/**
 * The peer lane's wire format: length-prefixed binary frames, no protobuf.
 *
 *   frame          = u32 length (bytes after this field) · u8 type · body
 *   hello      (1) = u8 version · str groupId · str from · str to        dialer → listener
 *   welcome    (2) = u8 version · str groupId · str nodeId               listener → dialer
 *   refused    (3) = str reason                                          listener → dialer, then close
 *   append     (4) = u64 term · u64 prevIndex · u64 prevTerm · u64 commitIndex · u32 entryCount
 *                    · entryCount × (u64 index · u64 term · u8 kind · u32 payloadBytes · payload)
 *   append-ack (5) = u64 term · u8 success · u8 reason · u64 matchIndex · u64 conflictIndex
 *                    · u64 conflictTerm · u64 lastIndex · u64 rejectedPrevIndex
 *
 * Integers are big-endian; a u64 must fit in 2^53 - 1 (a JS safe integer) or the frame is
 * refused. `str` is u16 byte length · UTF-8. Sender and receiver of the append frames are the
 * two ends named in the hello, so those frames carry no ids. Every body must be consumed
 * exactly: trailing bytes are garbage. Decoding never trusts a length it has not checked
 * against the bytes actually present, so a hostile frame cannot make it allocate more than
 * the frame itself.
 */
import type { AppendRejectReason, AppendRequest, AppendResponse, Entry, NodeId } from '../raft/types.js';
import { isEntryKind } from '../raft/types.js';

export const laneProtocolVersion = 1;

export const FrameType = { hello: 1, welcome: 2, refused: 3, appendRequest: 4, appendResponse: 5 } as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

const lengthBytes = 4;
const headerBytes = lengthBytes + 1;
/** An append body without entries (a heartbeat) is exactly this long. */
export const appendRequestFixedBytes = 8 * 4 + 4;
const entryFixedBytes = 8 + 8 + 1 + 4;
const appendResponseBodyBytes = 8 + 1 + 1 + 8 * 5;
const stringBytesMax = 0xffff;
/** A refusal's reason is cut to this many bytes on the wire. */
const reasonBytesMax = 1024;

/** Reason codes on the wire; 0 is "no reason" (a success). Append-only: never renumber. */
const rejectReasons: readonly AppendRejectReason[] = ['stale-term', 'log-mismatch', 'log-missing', 'compacted'];

/** A frame that is not what the protocol allows. Thrown by the decoders, caught by FrameReader's user. */
export class LaneProtocolError extends Error {
  override readonly name = 'LaneProtocolError';
}

export interface Hello {
  readonly version: number;
  readonly groupId: string;
  readonly from: NodeId;
  readonly to: NodeId;
}

export interface Welcome {
  readonly version: number;
  readonly groupId: string;
  readonly nodeId: NodeId;
}

// ---------------------------------------------------------------------------------------------
// Encoding: one Buffer per frame, sized first and allocated once.

export function encodeHello(hello: Hello): Buffer {
  return encodeStrings(FrameType.hello, hello.version, [hello.groupId, hello.from, hello.to]);
}

export function encodeWelcome(welcome: Welcome): Buffer {
  return encodeStrings(FrameType.welcome, welcome.version, [welcome.groupId, welcome.nodeId]);
}

export function encodeRefused(reason: string): Buffer {
  let bytes = Buffer.from(reason, 'utf8');
  if (bytes.length > reasonBytesMax) bytes = bytes.subarray(0, reasonBytesMax);
  const frame = Buffer.allocUnsafe(headerBytes + 2 + bytes.length);
  let offset = writeHeader(frame, FrameType.refused);
  offset = frame.writeUInt16BE(bytes.length, offset);
  bytes.copy(frame, offset);
  return frame;
}

/** The leader's append without its ends (from, to): those are the connection's. */
export function encodeAppendRequest(message: AppendRequest): Buffer {
  const entries = message.entries;
  let size = headerBytes + appendRequestFixedBytes;
  for (const entry of entries) size += entryFixedBytes + entry.payload.length;
  const frame = Buffer.allocUnsafe(size);
  let offset = writeHeader(frame, FrameType.appendRequest);
  offset = writeU64(frame, offset, message.term);
  offset = writeU64(frame, offset, message.prevIndex);
  offset = writeU64(frame, offset, message.prevTerm);
  offset = writeU64(frame, offset, message.commitIndex);
  offset = frame.writeUInt32BE(entries.length, offset);
  for (const entry of entries) {
    offset = writeU64(frame, offset, entry.index);
    offset = writeU64(frame, offset, entry.term);
    frame[offset++] = entry.kind;
    offset = frame.writeUInt32BE(entry.payload.length, offset);
    frame.set(entry.payload, offset);
    offset += entry.payload.length;
  }
  if (offset !== size) throw new RangeError(`append frame: wrote ${offset} of ${size} bytes`);
  return frame;
}

export function encodeAppendResponse(message: AppendResponse): Buffer {
  const frame = Buffer.allocUnsafe(headerBytes + appendResponseBodyBytes);
  let offset = writeHeader(frame, FrameType.appendResponse);
  offset = writeU64(frame, offset, message.term);
  frame[offset++] = message.success ? 1 : 0;
  frame[offset++] = message.reason === undefined ? 0 : rejectReasons.indexOf(message.reason) + 1;
  offset = writeU64(frame, offset, message.matchIndex);
  offset = writeU64(frame, offset, message.conflictIndex);
  offset = writeU64(frame, offset, message.conflictTerm);
  offset = writeU64(frame, offset, message.lastIndex);
  writeU64(frame, offset, message.rejectedPrevIndex);
  return frame;
}

function encodeStrings(type: FrameType, version: number, values: readonly string[]): Buffer {
  const encoded = values.map((value) => Buffer.from(value, 'utf8'));
  let size = headerBytes + 1;
  for (const bytes of encoded) {
    if (bytes.length > stringBytesMax) throw new RangeError(`a lane string of ${bytes.length} bytes exceeds ${stringBytesMax}`);
    size += 2 + bytes.length;
  }
  const frame = Buffer.allocUnsafe(size);
  let offset = writeHeader(frame, type);
  frame[offset++] = version;
  for (const bytes of encoded) {
    offset = frame.writeUInt16BE(bytes.length, offset);
    offset += bytes.copy(frame, offset);
  }
  return frame;
}

function writeHeader(frame: Buffer, type: FrameType): number {
  frame.writeUInt32BE(frame.length - lengthBytes, 0);
  frame[lengthBytes] = type;
  return headerBytes;
}

function writeU64(frame: Buffer, offset: number, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`lane u64 field ${value} is not a non-negative safe integer`);
  frame.writeUInt32BE(Math.floor(value / 0x1_0000_0000), offset);
  frame.writeUInt32BE(value >>> 0, offset + 4);
  return offset + 8;
}

// ---------------------------------------------------------------------------------------------
// Decoding a body (the bytes after the type). Throws LaneProtocolError on anything malformed.

/** A cursor over one frame's body that refuses to read past it. */
class BodyReader {
  private offset = 0;

  constructor(private readonly body: Buffer, private readonly what: string) {}

  get remaining(): number {
    return this.body.length - this.offset;
  }

  u8(): number {
    this.need(1);
    return this.body[this.offset++] as number;
  }

  u16(): number {
    this.need(2);
    const value = this.body.readUInt16BE(this.offset);
    this.offset += 2;
    return value;
  }

  u32(): number {
    this.need(4);
    const value = this.body.readUInt32BE(this.offset);
    this.offset += 4;
    return value;
  }

  u64(): number {
    this.need(8);
    const high = this.body.readUInt32BE(this.offset);
    if (high > 0x1f_ffff) throw new LaneProtocolError(`${this.what}: a u64 field exceeds 2^53 - 1`);
    const value = high * 0x1_0000_0000 + this.body.readUInt32BE(this.offset + 4);
    this.offset += 8;
    return value;
  }

  string(): string {
    const length = this.u16();
    this.need(length);
    const value = this.body.toString('utf8', this.offset, this.offset + length);
    this.offset += length;
    return value;
  }

  bytes(length: number): Buffer {
    this.need(length);
    const value = this.body.subarray(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }

  end(): void {
    if (this.remaining !== 0) throw new LaneProtocolError(`${this.what}: ${this.remaining} bytes after the last field`);
  }

  private need(bytes: number): void {
    if (this.remaining < bytes) throw new LaneProtocolError(`${this.what}: truncated (needs ${bytes} more bytes, ${this.remaining} left)`);
  }
}

export function decodeHello(body: Buffer): Hello {
  const reader = new BodyReader(body, 'hello');
  const hello = { version: reader.u8(), groupId: reader.string(), from: reader.string(), to: reader.string() };
  reader.end();
  return hello;
}

export function decodeWelcome(body: Buffer): Welcome {
  const reader = new BodyReader(body, 'welcome');
  const welcome = { version: reader.u8(), groupId: reader.string(), nodeId: reader.string() };
  reader.end();
  return welcome;
}

export function decodeRefused(body: Buffer): string {
  const reader = new BodyReader(body, 'refused');
  const reason = reader.string();
  reader.end();
  return reason;
}

/**
 * Payloads are views into `body`, not copies: the caller passes a body that owns its memory
 * (not a slice of a pooled or reused buffer), or copies it first (see FrameReader).
 */
export function decodeAppendRequest(body: Buffer, from: NodeId, to: NodeId): AppendRequest {
  const reader = new BodyReader(body, 'append');
  const term = reader.u64();
  const prevIndex = reader.u64();
  const prevTerm = reader.u64();
  const commitIndex = reader.u64();
  const entryCount = reader.u32();
  // Checked before anything is allocated for them: a count the bytes cannot hold is garbage.
  if (entryCount * entryFixedBytes > reader.remaining) throw new LaneProtocolError(`append: ${entryCount} entries cannot fit in ${reader.remaining} bytes`);
  const entries: Entry[] = new Array<Entry>(entryCount);
  for (let i = 0; i < entryCount; i++) {
    const index = reader.u64();
    const entryTerm = reader.u64();
    const kind = reader.u8();
    if (!isEntryKind(kind)) throw new LaneProtocolError(`append: entry kind ${kind} is unknown`);
    const payload = reader.bytes(reader.u32());
    entries[i] = { index, term: entryTerm, kind, payload };
  }
  reader.end();
  return { type: 'append-request', from, to, term, prevIndex, prevTerm, commitIndex, entryCount, entries };
}

export function decodeAppendResponse(body: Buffer, from: NodeId, to: NodeId): AppendResponse {
  if (body.length !== appendResponseBodyBytes) throw new LaneProtocolError(`append-ack: ${body.length} bytes, expected ${appendResponseBodyBytes}`);
  const reader = new BodyReader(body, 'append-ack');
  const term = reader.u64();
  const successByte = reader.u8();
  if (successByte > 1) throw new LaneProtocolError(`append-ack: success byte ${successByte}`);
  const reasonCode = reader.u8();
  if (reasonCode > rejectReasons.length) throw new LaneProtocolError(`append-ack: reason code ${reasonCode} is unknown`);
  return {
    type: 'append-response', from, to, term, success: successByte === 1, matchIndex: reader.u64(),
    reason: reasonCode === 0 ? undefined : rejectReasons[reasonCode - 1], conflictIndex: reader.u64(),
    conflictTerm: reader.u64(), lastIndex: reader.u64(), rejectedPrevIndex: reader.u64(),
  };
}

/** A copy of `bytes` in memory of its own (never a slice of Node's shared allocation pool). */
export function ownedCopy(bytes: Buffer): Buffer {
  const copy = Buffer.allocUnsafeSlow(bytes.length);
  bytes.copy(copy);
  return copy;
}

// ---------------------------------------------------------------------------------------------
// Splitting a byte stream into frames.

/**
 * Called for each complete frame. `body` stays valid after the call (nothing is reused);
 * `shared` says it sits in a buffer mostly holding other bytes, so a decoder that keeps views
 * into it (payloads) should copy it first rather than pin the whole buffer. Return false to
 * stop reading (the connection is being closed).
 */
export type FrameHandler = (type: number, body: Buffer, shared: boolean) => boolean;

/**
 * Cuts socket chunks into frames. Frames inside one chunk are handed out as views of it (no
 * copy); a frame split across chunks is assembled once, in a buffer of its own. A length over
 * `frameBytesMax` (which the user may change between frames, e.g. after the handshake) is
 * refused before any of its bytes are buffered, so memory stays within one frame plus one chunk.
 */
export class FrameReader {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Bytes the frame at the head of `pending` needs (length field included), once known. */
  private needed: number | undefined;
  private stopped = false;

  constructor(public frameBytesMax: number) {}

  /** Feeds one chunk. Returns why the stream is malformed (and stops), or undefined. Never throws. */
  push(chunk: Buffer, onFrame: FrameHandler): string | undefined {
    if (this.stopped) return undefined;
    try {
      return this.consume(chunk, onFrame);
    } catch (error) {
      this.stop();
      return error instanceof LaneProtocolError ? error.message : `frame handler failed: ${(error as Error).message}`;
    }
  }

  /** Drops whatever is buffered; further chunks are ignored. */
  stop(): void {
    this.stopped = true;
    this.pending = [];
    this.pendingBytes = 0;
    this.needed = undefined;
  }

  private consume(chunk: Buffer, onFrame: FrameHandler): string | undefined {
    let data = chunk;
    if (this.pendingBytes > 0) {
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
      if (this.needed === undefined && this.pendingBytes >= headerBytes) {
        const problem = this.checkLength(this.peekLength());
        if (problem !== undefined) return problem;
        this.needed = lengthBytes + this.peekLength();
      }
      if (this.needed === undefined || this.pendingBytes < this.needed) return undefined;
      data = Buffer.allocUnsafeSlow(this.pendingBytes); // never pooled: payload views may be kept
      let at = 0;
      for (const part of this.pending) at += part.copy(data, at);
      this.pending = [];
      this.pendingBytes = 0;
      this.needed = undefined;
    }
    let offset = 0;
    while (data.length - offset >= headerBytes) {
      const length = data.readUInt32BE(offset);
      const problem = this.checkLength(length);
      if (problem !== undefined) return problem;
      const end = offset + lengthBytes + length;
      if (end > data.length) {
        this.needed = lengthBytes + length;
        break;
      }
      const type = data[offset + lengthBytes] as number;
      const body = data.subarray(offset + headerBytes, end);
      // Measured against the whole allocation, so a pooled buffer counts as shared too.
      const shared = 2 * (lengthBytes + length) < data.buffer.byteLength;
      offset = end;
      if (!onFrame(type, body, shared) || this.stopped) {
        this.stop();
        return undefined;
      }
    }
    if (offset < data.length) {
      this.pending = [data.subarray(offset)];
      this.pendingBytes = data.length - offset;
    }
    return undefined;
  }

  private checkLength(length: number): string | undefined {
    if (length < 1) {
      this.stop();
      return 'a frame of length 0 (no type byte)';
    }
    if (length > this.frameBytesMax) {
      this.stop();
      return `a frame of ${length} bytes exceeds the limit of ${this.frameBytesMax}`;
    }
    return undefined;
  }

  /** The length field at the head of `pending`, which may be split across chunks. */
  private peekLength(): number {
    let value = 0;
    let read = 0;
    for (const part of this.pending) {
      for (let i = 0; i < part.length && read < lengthBytes; i++, read++) value = value * 256 + (part[i] as number);
      if (read === lengthBytes) break;
    }
    return value;
  }
}
