/**
 * The protobuf wire format, read and written by hand for the few messages that are numerous
 * on the hot path (a pulled message frame, a SendMessage request and its answer), where
 * proto-loader's generic decode + toObject (and fromObject + encode) cost more than the rest
 * of the call. Each user of these compares its result with proto-loader's in a property test.
 */

/** Malformed bytes: what a decoder built on {@link WireReader} throws. */
export class WireFormatError extends Error {
  override readonly name = 'WireFormatError';
}

/** Protobuf wire-format reading over `[at, end)` of a buffer; every read checks its bounds. */
export class WireReader {
  /** Bits 32..63 of the last varint64. */
  private high = 0;

  constructor(private readonly buffer: Buffer, public at: number, private readonly end: number) {}

  done(): boolean {
    return this.at >= this.end;
  }

  /** A varint of up to 64 bits as a number (exact below 2^53; larger ones round). */
  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.at >= this.end) throw new WireFormatError('truncated varint');
      const byte = this.buffer[this.at++] as number;
      result += (byte & 0x7f) * scale;
      if (byte < 0x80) return result;
      scale *= 128;
    }
    throw new WireFormatError('varint longer than 10 bytes');
  }

  /** int32 (a negative one is sent as the 10-byte varint of its 64-bit two's complement). */
  int32(): number {
    return this.varint64() | 0;
  }

  /** int64 as a number (exact within ±2^53; a negative one comes back negative). */
  int64(): number {
    const low = this.varint64();
    return (this.high | 0) * 2 ** 32 + low;
  }

  /** A varint's low 32 bits (returned, unsigned) and high 32 bits (in `high`), exactly. */
  private varint64(): number {
    let low = 0;
    let high = 0;
    for (let i = 0; i < 10; i++) {
      if (this.at >= this.end) throw new WireFormatError('truncated varint');
      const byte = this.buffer[this.at++] as number;
      if (i < 4) low |= (byte & 0x7f) << (7 * i);
      else if (i === 4) {
        low |= (byte & 0x0f) << 28;
        high |= (byte & 0x7f) >>> 4;
      } else high |= (byte & 0x7f) << (7 * i - 32);
      if (byte < 0x80) {
        this.high = high >>> 0;
        return low >>> 0;
      }
    }
    throw new WireFormatError('varint longer than 10 bytes');
  }

  /** The length of a length-delimited field; returns where it ends. */
  lengthDelimited(): number {
    const length = this.varint();
    const end = this.at + length;
    if (end > this.end) throw new WireFormatError('length-delimited field runs past its message');
    return end;
  }

  string(): string {
    const end = this.lengthDelimited();
    const text = end === this.at ? '' : this.buffer.toString('utf8', this.at, end);
    this.at = end;
    return text;
  }

  /** The bytes up to `end` (a view of the frame, not a copy). */
  bytes(end: number): Buffer {
    const bytes = this.buffer.subarray(this.at, end);
    this.at = end;
    return bytes;
  }

  /** google.protobuf.Timestamp up to `end`, as ms since the epoch (what timestampToMs computes). */
  timestampMs(end: number): number {
    let seconds = 0;
    let nanos = 0;
    while (this.at < end) {
      const tag = this.varint();
      if (tag === ((1 << 3) | 0)) seconds = this.int64();
      else if (tag === ((2 << 3) | 0)) nanos = this.int32();
      else this.skip(tag);
    }
    this.expectAt(end);
    return seconds * 1000 + Math.floor(nanos / 1e6);
  }

  /**
   * A message of two strings, fields 1 and 2, up to `end` (a map<string, string> entry's key and
   * value, or a Resource's namespace and name); '' for an absent one, the last of repeated ones.
   */
  stringPair(end: number): [string, string] {
    let first = '';
    let second = '';
    while (this.at < end) {
      const tag = this.varint();
      if (tag === ((1 << 3) | 2)) first = this.string();
      else if (tag === ((2 << 3) | 2)) second = this.string();
      else this.skip(tag);
    }
    this.expectAt(end);
    return [first, second];
  }

  skip(tag: number): void {
    switch (tag & 7) {
      case 0: this.varint(); return;
      case 1: this.advance(8); return;
      case 2: this.at = this.lengthDelimited(); return;
      case 5: this.advance(4); return;
      default: throw new WireFormatError(`wire type ${tag & 7} (field ${Math.floor(tag / 8)}) is not supported`);
    }
  }

  expectAt(end: number): void {
    if (this.at !== end) throw new WireFormatError('a field runs past its message');
  }

  private advance(bytes: number): void {
    if (this.at + bytes > this.end) throw new WireFormatError('truncated fixed-width field');
    this.at += bytes;
  }
}

/** Bytes for a varint of `value` (a non-negative integer below 2^53). */
function varintBytes(value: number): number {
  let bytes = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    bytes++;
  }
  return bytes;
}

/**
 * Protobuf wire-format writing into one growing buffer. Proto3 defaults (0, '', empty) are
 * left out, as every encoder does; a nested message is written in place and its length
 * inserted in front of it when it ends.
 */
export class WireWriter {
  private buffer: Buffer;
  private at = 0;

  constructor(initialBytes = 256) {
    this.buffer = Buffer.allocUnsafe(initialBytes);
  }

  /** A varint field (int32 ≥ 0, enum, bool, uint64 ≥ 0 below 2^53). */
  uint(field: number, value: number): this {
    if (value === 0) return this;
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`field ${field}: ${value} is not a non-negative safe integer`);
    this.varint(field << 3);
    return this.varint(value);
  }

  /** A varint field written even when 0 (a proto3 `optional` or oneof member that is present). */
  uintPresent(field: number, value: number): this {
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`field ${field}: ${value} is not a non-negative safe integer`);
    this.varint(field << 3);
    return this.varint(value);
  }

  /** An int64 field (a negative value as the 10-byte two's complement varint). */
  int64(field: number, value: number): this {
    if (value >= 0) return this.uint(field, value);
    if (!Number.isSafeInteger(value)) throw new RangeError(`field ${field}: ${value} is not a safe integer`);
    this.varint(field << 3).reserve(10);
    // Two's complement over 64 bits, seven bits at a time: the low 32 bits, then the high ones (all ones above 2^53).
    let low = value % 4294967296 >>> 0;
    let high = Math.floor(value / 4294967296) >>> 0;
    for (let i = 0; i < 9; i++) {
      this.buffer[this.at++] = (low & 0x7f) | 0x80;
      low = (low >>> 7) | ((high & 0x7f) << 25);
      high >>>= 7;
    }
    this.buffer[this.at++] = low & 0x01;
    return this;
  }

  /** A string field written even when empty (present). */
  stringPresent(field: number, value: string): this {
    const length = Buffer.byteLength(value);
    this.varint((field << 3) | 2).varint(length).reserve(length);
    this.at += this.buffer.write(value, this.at, 'utf8');
    return this;
  }

  string(field: number, value: string): this {
    if (value === '') return this;
    const length = Buffer.byteLength(value);
    this.varint((field << 3) | 2).varint(length).reserve(length);
    this.at += this.buffer.write(value, this.at, 'utf8');
    return this;
  }

  bytes(field: number, value: Uint8Array): this {
    if (value.byteLength === 0) return this;
    this.varint((field << 3) | 2).varint(value.byteLength).reserve(value.byteLength);
    this.buffer.set(value, this.at);
    this.at += value.byteLength;
    return this;
  }

  /** A message field whose content `write` writes (an empty message is still written: it is present). */
  message(field: number, write: (writer: this) => void): this {
    this.varint((field << 3) | 2);
    const start = this.at;
    write(this);
    const length = this.at - start;
    const prefix = varintBytes(length);
    this.reserve(prefix);
    this.buffer.copyWithin(start + prefix, start, this.at);
    const end = this.at + prefix;
    this.at = start;
    this.varint(length);
    this.at = end;
    return this;
  }

  /** The bytes written (a view of the writer's buffer: the writer is done). */
  finish(): Buffer {
    return this.buffer.subarray(0, this.at);
  }

  private varint(value: number): this {
    this.reserve(10);
    while (value >= 0x80) {
      this.buffer[this.at++] = (value % 128) | 0x80;
      value = Math.floor(value / 128);
    }
    this.buffer[this.at++] = value;
    return this;
  }

  private reserve(bytes: number): this {
    if (this.at + bytes <= this.buffer.byteLength) return this;
    const grown = Buffer.allocUnsafe(Math.max(this.buffer.byteLength * 2, this.at + bytes));
    this.buffer.copy(grown, 0, 0, this.at);
    this.buffer = grown;
    return this;
  }
}
