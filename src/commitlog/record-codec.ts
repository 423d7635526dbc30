import { crc32 } from 'node:zlib';
import { assert } from '../util/assert.js';
import { isEntryKind, type Entry } from '../raft/types.js';

/**
 * On-disk frame of one entry (little-endian):
 *
 *   0  u32 magic 'RMQ1'     4  u32 payloadBytes   8  u8 kind   9  u8 version  10 u16 zero
 *  12  u64 index           20  u64 term          28  payload   28+n  u32 crc32(bytes 0..28+n)
 *
 * The CRC covers header and payload, so a torn write anywhere in a record is detected.
 * Compatibility: `version` is bumped for any layout change; readers reject unknown versions.
 */
export const recordMagic = 0x31514d52; // 'RMQ1'
export const recordVersion = 1;
export const recordHeaderBytes = 28;
export const recordOverheadBytes = recordHeaderBytes + 4;
/** Upper bound on one payload; larger lengths in a header are treated as damage. */
export const recordPayloadBytesMax = 64 * 1024 * 1024;

export function recordBytes(payloadBytes: number): number {
  return recordOverheadBytes + payloadBytes;
}

export function writeU64(view: DataView, offset: number, value: number): void {
  assert(Number.isSafeInteger(value) && value >= 0, `u64 out of range: ${value}`);
  view.setUint32(offset, value % 0x1_0000_0000, true);
  view.setUint32(offset + 4, Math.floor(value / 0x1_0000_0000), true);
}

export function readU64(view: DataView, offset: number): number {
  return view.getUint32(offset, true) + view.getUint32(offset + 4, true) * 0x1_0000_0000;
}

/** Encodes `entry` into `target` at `offset`; returns the offset after the record. */
export function encodeRecord(entry: Entry, target: Uint8Array, offset: number): number {
  const total = recordBytes(entry.payload.length);
  assert(offset + total <= target.length, 'record does not fit the batch buffer');
  const view = new DataView(target.buffer, target.byteOffset + offset, total);
  view.setUint32(0, recordMagic, true);
  view.setUint32(4, entry.payload.length, true);
  view.setUint8(8, entry.kind);
  view.setUint8(9, recordVersion);
  view.setUint16(10, 0, true);
  writeU64(view, 12, entry.index);
  writeU64(view, 20, entry.term);
  target.set(entry.payload, offset + recordHeaderBytes);
  const checksum = crc32(target.subarray(offset, offset + recordHeaderBytes + entry.payload.length));
  view.setUint32(recordHeaderBytes + entry.payload.length, checksum, true);
  return offset + total;
}

export type DecodeResult =
  | { readonly kind: 'ok'; readonly entry: Entry; readonly bytes: number }
  /** Not enough bytes for a whole record: a torn tail if this is the end of the data. */
  | { readonly kind: 'short' }
  | { readonly kind: 'bad'; readonly reason: string };

/** Decodes the record at `offset`, verifying magic, version, kind and checksum. */
export function decodeRecord(source: Uint8Array, offset: number, options: { copyPayload: boolean }): DecodeResult {
  if (source.length - offset < recordOverheadBytes) return { kind: 'short' };
  const view = new DataView(source.buffer, source.byteOffset + offset, source.length - offset);
  if (view.getUint32(0, true) !== recordMagic) return { kind: 'bad', reason: 'bad magic' };
  const payloadBytes = view.getUint32(4, true);
  if (payloadBytes > recordPayloadBytesMax) return { kind: 'bad', reason: `payload length ${payloadBytes} too large` };
  if (source.length - offset < recordBytes(payloadBytes)) return { kind: 'short' };
  const stored = view.getUint32(recordHeaderBytes + payloadBytes, true);
  const actual = crc32(source.subarray(offset, offset + recordHeaderBytes + payloadBytes));
  if (stored !== actual) return { kind: 'bad', reason: 'checksum mismatch' };
  const version = view.getUint8(9);
  if (version !== recordVersion) return { kind: 'bad', reason: `unknown record version ${version}` };
  const kind = view.getUint8(8);
  if (!isEntryKind(kind)) return { kind: 'bad', reason: `unknown entry kind ${kind}` };
  const start = offset + recordHeaderBytes;
  const payload = options.copyPayload
    ? source.slice(start, start + payloadBytes)
    : source.subarray(start, start + payloadBytes);
  const entry: Entry = { index: readU64(view, 12), term: readU64(view, 20), kind, payload };
  return { kind: 'ok', entry, bytes: recordBytes(payloadBytes) };
}

/**
 * Segment file header: u32 magic 'RMQS', u32 version, u64 firstIndex, u64 prevTerm (term of
 * firstIndex - 1, so the log stays checkable after older segments are deleted), u32 crc32
 * of bytes 0..24, u32 zero. Segments are named by their first index.
 */
export const segmentMagic = 0x53514d52; // 'RMQS'
export const segmentHeaderBytes = 32;

export interface SegmentHeader {
  readonly firstIndex: number;
  readonly prevTerm: number;
}

export function encodeSegmentHeader(header: SegmentHeader): Uint8Array {
  const bytes = new Uint8Array(segmentHeaderBytes);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, segmentMagic, true);
  view.setUint32(4, 1, true);
  writeU64(view, 8, header.firstIndex);
  writeU64(view, 16, header.prevTerm);
  view.setUint32(24, crc32(bytes.subarray(0, 24)), true);
  return bytes;
}

export function decodeSegmentHeader(bytes: Uint8Array): SegmentHeader | undefined {
  if (bytes.length < segmentHeaderBytes) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, segmentHeaderBytes);
  if (view.getUint32(0, true) !== segmentMagic || view.getUint32(4, true) !== 1) return undefined;
  if (view.getUint32(24, true) !== crc32(bytes.subarray(0, 24))) return undefined;
  return { firstIndex: readU64(view, 8), prevTerm: readU64(view, 16) };
}

export function segmentFileName(firstIndex: number): string {
  return `${String(firstIndex).padStart(20, '0')}.seg`;
}

export function parseSegmentFileName(name: string): number | undefined {
  const match = /^(\d{20})\.seg$/.exec(name);
  return match === null ? undefined : Number(match[1]);
}
