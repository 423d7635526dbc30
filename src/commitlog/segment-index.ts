import { crc32 } from 'node:zlib';
import { assert } from '../util/assert.js';
import type { LogIndex, Term } from '../raft/types.js';
import { readU64, recordOverheadBytes, segmentHeaderBytes, writeU64 } from './record-codec.js';

/**
 * The persisted index of one sealed segment: what recovery would learn by scanning it
 * (record positions, term runs, config entries), so a restart reads only this small file
 * instead of every record. Written once, when the log rolls past the segment; the last
 * (open) segment never has one that recovery trusts. Layout (little-endian):
 *
 *   0  u32 magic 'RMQX'      4  u32 version          8  u64 firstIndex    16 u64 prevTerm
 *  24  u64 segmentBytes     32  u32 recordCount     36  u32 runCount     40  u32 configCount
 *  44  u32 zero             48  recordCount × u32 position
 *      then runCount × (u64 startIndex, u64 term), configCount × u64 index, u32 crc32 of all before
 *
 * It is a cache, never the authority: recovery uses it only when it is intact, consistent
 * with itself and agrees with the segment's header, size and last record; otherwise it scans
 * the segment and writes a new one. Positions are u32 because a record starts before
 * `segmentBytesMax`; a segment whose positions do not fit simply gets no index.
 * Compatibility: any layout change bumps `version`; an index of an unknown version counts as
 * damaged (one scan, then rewritten), so upgrades and downgrades need no migration, and a
 * log written before indexes existed gets them on its first open.
 */
export const segmentIndexMagic = 0x584d5152; // 'RMQX'
export const segmentIndexVersion = 1;
const fixedBytes = 48;
const positionBytes = 4;
const runBytes = 16;
const configBytes = 8;
const crcBytes = 4;
const u32Max = 0xffff_ffff;

export interface SegmentIndex {
  readonly firstIndex: LogIndex;
  readonly prevTerm: Term;
  /** The sealed segment's file size, header included. */
  readonly segmentBytes: number;
  /** positions[i] is the byte offset of the record for firstIndex + i. */
  readonly positions: readonly number[];
  /** `[startIndex, term]` runs covering the segment's records, terms ascending. */
  readonly runs: ReadonlyArray<readonly [LogIndex, Term]>;
  /** Indexes of config entries in the segment, ascending. */
  readonly configIndexes: readonly LogIndex[];
}

export function segmentIndexFileName(segmentFileName: string): string {
  return `${segmentFileName}.idx`;
}

/** The segment file an index file belongs to, or undefined if `name` is not an index file. */
export function segmentOfIndexFileName(name: string): string | undefined {
  const match = /^(\d{20}\.seg)\.idx$/.exec(name);
  return match === null ? undefined : match[1];
}

/** Whether an index can be written for this segment (its positions fit u32). */
export function segmentIndexable(positions: readonly number[]): boolean {
  return positions.length === 0 || (positions[positions.length - 1] as number) <= u32Max;
}

export function encodeSegmentIndex(index: SegmentIndex): Uint8Array {
  assert(segmentIndexable(index.positions), 'segment index: positions beyond u32');
  const { positions, runs, configIndexes } = index;
  const bytes = new Uint8Array(fixedBytes + positions.length * positionBytes + runs.length * runBytes + configIndexes.length * configBytes + crcBytes);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, segmentIndexMagic, true);
  view.setUint32(4, segmentIndexVersion, true);
  writeU64(view, 8, index.firstIndex);
  writeU64(view, 16, index.prevTerm);
  writeU64(view, 24, index.segmentBytes);
  view.setUint32(32, positions.length, true);
  view.setUint32(36, runs.length, true);
  view.setUint32(40, configIndexes.length, true);
  view.setUint32(44, 0, true);
  writePositions(bytes, positions);
  let offset = fixedBytes + positions.length * positionBytes;
  for (const [start, term] of runs) {
    writeU64(view, offset, start);
    writeU64(view, offset + 8, term);
    offset += runBytes;
  }
  for (const configIndex of configIndexes) {
    writeU64(view, offset, configIndex);
    offset += configBytes;
  }
  view.setUint32(offset, crc32(bytes.subarray(0, offset)), true);
  return bytes;
}

/** Little-endian hosts (all Node targets in practice) copy positions in bulk. */
const hostIsLittleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * Positions are most of an index (4 bytes per record, a quarter MB for a 64 MiB segment of
 * 1 KiB records) and are encoded while the append that rolled waits, so in one native copy.
 */
function writePositions(bytes: Uint8Array, positions: readonly number[]): void {
  if (hostIsLittleEndian) {
    new Uint32Array(bytes.buffer, bytes.byteOffset + fixedBytes, positions.length).set(positions);
    return;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  for (const [i, position] of positions.entries()) view.setUint32(fixedBytes + i * positionBytes, position, true);
}

/**
 * Decodes an index file; undefined when it is damaged (checksum, length, magic, version) or
 * not a possible description of a segment (see `describesSegment`). Never throws on bad
 * input: a damaged index only costs a scan. The positions array is fresh, for the caller to own.
 */
export function decodeSegmentIndex(bytes: Uint8Array): (SegmentIndex & { readonly positions: number[] }) | undefined {
  if (bytes.length < fixedBytes + crcBytes) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  if (view.getUint32(0, true) !== segmentIndexMagic || view.getUint32(4, true) !== segmentIndexVersion) return undefined;
  const recordCount = view.getUint32(32, true);
  const runCount = view.getUint32(36, true);
  const configCount = view.getUint32(40, true);
  const crcOffset = fixedBytes + recordCount * positionBytes + runCount * runBytes + configCount * configBytes;
  if (bytes.length !== crcOffset + crcBytes) return undefined;
  if (view.getUint32(crcOffset, true) !== crc32(bytes.subarray(0, crcOffset))) return undefined;
  let offset = fixedBytes;
  const positions = new Array<number>(recordCount);
  for (let i = 0; i < recordCount; i++, offset += positionBytes) positions[i] = view.getUint32(offset, true);
  const runs: Array<readonly [LogIndex, Term]> = [];
  for (let i = 0; i < runCount; i++, offset += runBytes) runs.push([readU64(view, offset), readU64(view, offset + 8)]);
  const configIndexes: LogIndex[] = [];
  for (let i = 0; i < configCount; i++, offset += configBytes) configIndexes.push(readU64(view, offset));
  const index = { firstIndex: readU64(view, 8), prevTerm: readU64(view, 16), segmentBytes: readU64(view, 24), positions, runs, configIndexes };
  return describesSegment(index) ? index : undefined;
}

/**
 * Internal consistency, so an index that passed its checksum but was written wrongly can
 * never hand recovery an impossible log: positions start after the header, leave room for a
 * record each and end inside the segment; runs start at the first index, ascend in index and
 * term and stay within the records; config indexes ascend within the records.
 */
function describesSegment(index: SegmentIndex): boolean {
  const { positions, runs, configIndexes, firstIndex, prevTerm, segmentBytes } = index;
  if (!Number.isSafeInteger(firstIndex) || firstIndex < 1 || !Number.isSafeInteger(segmentBytes)) return false;
  if (positions.length === 0) return segmentBytes === segmentHeaderBytes && runs.length === 0 && configIndexes.length === 0;
  const lastIndex = firstIndex + positions.length - 1;
  if (positions[0] !== segmentHeaderBytes) return false;
  for (let i = 1; i < positions.length; i++) {
    if ((positions[i] as number) < (positions[i - 1] as number) + recordOverheadBytes) return false;
  }
  if ((positions[positions.length - 1] as number) + recordOverheadBytes > segmentBytes) return false;
  if (runs.length === 0 || (runs[0] as readonly [LogIndex, Term])[0] !== firstIndex) return false;
  let previousStart = firstIndex - 1;
  let previousTerm = prevTerm;
  for (const [i, [start, term]] of runs.entries()) {
    if (start <= previousStart || start > lastIndex || !Number.isSafeInteger(term)) return false;
    if (i === 0 ? term < previousTerm : term <= previousTerm) return false;
    previousStart = start;
    previousTerm = term;
  }
  let previousConfig = firstIndex - 1;
  for (const configIndex of configIndexes) {
    if (configIndex <= previousConfig || configIndex > lastIndex) return false;
    previousConfig = configIndex;
  }
  return true;
}

/** The term of the segment's last record, from its runs (the segment must not be empty). */
export function segmentIndexLastTerm(index: SegmentIndex): Term {
  assert(index.runs.length > 0, 'segment index: no runs');
  return (index.runs[index.runs.length - 1] as readonly [LogIndex, Term])[1];
}
