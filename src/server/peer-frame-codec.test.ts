/**
 * The peer lane's frames: every message survives encode → split into arbitrary chunks →
 * FrameReader → decode unchanged; truncated, garbage and oversized input is refused with a
 * reason and never throws out of FrameReader.push (which runs inside a socket's 'data' handler).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EntryKind, type AppendRejectReason, type AppendRequest, type AppendResponse, type Entry } from '../raft/types.js';
import {
  FrameReader, FrameType, LaneProtocolError, decodeAppendRequest, decodeAppendResponse, decodeHello, decodeRefused, decodeWelcome,
  encodeAppendRequest, encodeAppendResponse, encodeHello, encodeRefused, encodeWelcome, ownedCopy,
} from './peer-frame-codec.js';

const u64 = fc.oneof(fc.nat({ max: 1000 }), fc.constant(0), fc.constant(Number.MAX_SAFE_INTEGER), fc.maxSafeNat());
const kind = fc.constantFrom(EntryKind.normal, EntryKind.noop, EntryKind.config);
const entry: fc.Arbitrary<Entry> = fc.record({ index: u64, term: u64, kind, payload: fc.uint8Array({ maxLength: 300 }) });
const appendRequest: fc.Arbitrary<AppendRequest> = fc.record({
  term: u64, prevIndex: u64, prevTerm: u64, commitIndex: u64, entries: fc.array(entry, { maxLength: 8 }),
}).map((m) => ({ type: 'append-request', from: 'n1', to: 'n2', ...m, entryCount: m.entries.length }));
const reason = fc.constantFrom<AppendRejectReason | undefined>(undefined, 'stale-term', 'log-mismatch', 'log-missing', 'compacted');
const appendResponse: fc.Arbitrary<AppendResponse> = fc.record({
  term: u64, success: fc.boolean(), matchIndex: u64, reason, conflictIndex: u64, conflictTerm: u64, lastIndex: u64, rejectedPrevIndex: u64,
}).map((m) => ({ type: 'append-response', from: 'n2', to: 'n1', ...m }));

type Decoded = AppendRequest | AppendResponse | { type: 'hello' | 'welcome' | 'refused'; value: unknown };

/** Decodes one frame the way the lane does; throws LaneProtocolError on garbage. */
function decodeFrame(type: number, body: Buffer): Decoded {
  switch (type) {
    case FrameType.appendRequest: return decodeAppendRequest(body, 'n1', 'n2');
    case FrameType.appendResponse: return decodeAppendResponse(body, 'n2', 'n1');
    case FrameType.hello: return { type: 'hello', value: decodeHello(body) };
    case FrameType.welcome: return { type: 'welcome', value: decodeWelcome(body) };
    case FrameType.refused: return { type: 'refused', value: decodeRefused(body) };
    default: throw new LaneProtocolError(`unknown frame type ${type}`);
  }
}

/** Feeds `bytes` in chunks cut at `cuts`; returns the decoded frames and the first problem. */
function readAll(bytes: Buffer, cuts: readonly number[], frameBytesMax = 1 << 20): { frames: Decoded[]; problem: string | undefined } {
  const reader = new FrameReader(frameBytesMax);
  const frames: Decoded[] = [];
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  let start = 0;
  for (const end of [...points, bytes.length]) {
    // Each chunk in memory of its own, as a socket delivers it.
    const chunk = ownedCopy(bytes.subarray(start, end));
    start = end;
    const problem = reader.push(chunk, (type, body) => {
      frames.push(decodeFrame(type, body));
      return true;
    });
    if (problem !== undefined) return { frames, problem };
  }
  return { frames, problem: undefined };
}

/** Payloads as plain arrays, so a Buffer view and a Uint8Array with the same bytes compare equal. */
function plain(value: unknown): unknown {
  if (value instanceof Uint8Array) return [...value];
  if (Array.isArray(value)) return value.map(plain);
  if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  return value;
}

describe('peer frame codec', () => {
  it('round-trips append requests and answers through arbitrarily split streams', () => {
    fc.assert(fc.property(fc.array(fc.oneof(appendRequest, appendResponse), { minLength: 1, maxLength: 6 }), fc.array(fc.nat(), { maxLength: 10 }), (messages, cuts) => {
      const stream = Buffer.concat(messages.map((m) => (m.type === 'append-request' ? encodeAppendRequest(m) : encodeAppendResponse(m))));
      const { frames, problem } = readAll(stream, cuts);
      expect(problem).toBeUndefined();
      expect(plain(frames)).toEqual(plain(messages));
    }));
  });

  it('round-trips hello, welcome and refused frames', () => {
    const text = fc.string({ maxLength: 40, unit: 'grapheme' });
    fc.assert(fc.property(text, text, text, fc.nat({ max: 255 }), (groupId, from, to, version) => {
      const stream = Buffer.concat([encodeHello({ version, groupId, from, to }), encodeWelcome({ version, groupId, nodeId: from }), encodeRefused(to)]);
      const { frames, problem } = readAll(stream, []);
      expect(problem).toBeUndefined();
      expect(frames).toEqual([
        { type: 'hello', value: { version, groupId, from, to } }, { type: 'welcome', value: { version, groupId, nodeId: from } }, { type: 'refused', value: to },
      ]);
    }));
  });

  it('hands out payloads as views of the received bytes, and marks frames in a mostly foreign buffer as shared', () => {
    const message: AppendRequest = {
      type: 'append-request', from: 'n1', to: 'n2', term: 3, prevIndex: 9, prevTerm: 2, commitIndex: 8, entryCount: 1,
      entries: [{ index: 10, term: 3, kind: EntryKind.normal, payload: new Uint8Array(2000).fill(7) }],
    };
    const alone = ownedCopy(encodeAppendRequest(message));
    const seen: boolean[] = [];
    let payload: Uint8Array | undefined;
    new FrameReader(1 << 20).push(alone, (type, body, shared) => {
      seen.push(shared);
      payload = decodeAppendRequest(body, 'n1', 'n2').entries[0]?.payload;
      return true;
    });
    expect(seen).toEqual([false]);
    expect(payload?.buffer).toBe(alone.buffer); // no copy
    const crowded = Buffer.concat([alone, encodeAppendResponse({
      type: 'append-response', from: 'n2', to: 'n1', term: 1, success: true, matchIndex: 1, reason: undefined, conflictIndex: 0, conflictTerm: 0, lastIndex: 1, rejectedPrevIndex: 0,
    }), Buffer.alloc(8192)]);
    const sharedFlags: boolean[] = [];
    new FrameReader(1 << 20).push(crowded.subarray(0, alone.length + 55), (_type, _body, shared) => { sharedFlags.push(shared); return true; });
    expect(sharedFlags).toEqual([true, true]);
  });

  it('waits on a truncated frame without a problem and delivers nothing of it', () => {
    fc.assert(fc.property(appendRequest, fc.nat(), (message, cut) => {
      const frame = encodeAppendRequest(message);
      const prefix = frame.subarray(0, cut % frame.length);
      const { frames, problem } = readAll(prefix, []);
      expect(problem).toBeUndefined();
      expect(frames).toEqual([]);
    }));
  });

  it('refuses garbage with a reason and never throws out of push', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), fc.array(fc.nat(), { maxLength: 5 }), (bytes, cuts) => {
      // readAll decodes inside the handler, as the lane does; push must catch whatever that throws.
      expect(() => readAll(Buffer.from(bytes), cuts, 4096)).not.toThrow();
    }));
  });

  it('refuses a body that a decoder cannot account for exactly', () => {
    const valid = encodeAppendRequest({ type: 'append-request', from: 'n1', to: 'n2', term: 1, prevIndex: 0, prevTerm: 0, commitIndex: 0, entryCount: 1, entries: [{ index: 1, term: 1, kind: EntryKind.normal, payload: new Uint8Array(4) }] });
    const body = valid.subarray(5);
    const cases: Array<[string, Buffer, RegExp]> = [
      ['trailing bytes', Buffer.concat([body, Buffer.from([0])]), /after the last field/],
      ['a cut entry', body.subarray(0, body.length - 1), /truncated/],
      ['a u64 beyond 2^53', Buffer.concat([Buffer.from([0x00, 0x20, 0, 0, 0, 0, 0, 0]), body.subarray(8)]), /2\^53/],
      ['an unknown entry kind', Buffer.from(body).fill(9, 36 + 16, 36 + 17), /kind 9/],
      ['more entries than bytes', Buffer.from(body).fill(0xff, 32, 36), /cannot fit/],
    ];
    for (const [what, garbage, expected] of cases) expect(() => decodeAppendRequest(garbage, 'n1', 'n2'), what).toThrow(expected);
    const answer = encodeAppendResponse({ type: 'append-response', from: 'n2', to: 'n1', term: 1, success: false, matchIndex: 0, reason: 'log-mismatch', conflictIndex: 1, conflictTerm: 1, lastIndex: 0, rejectedPrevIndex: 0 }).subarray(5);
    expect(() => decodeAppendResponse(Buffer.from(answer).fill(9, 9, 10), 'n2', 'n1')).toThrow(/reason code 9/);
    expect(() => decodeAppendResponse(Buffer.from(answer).fill(2, 8, 9), 'n2', 'n1')).toThrow(/success byte/);
    expect(() => decodeAppendResponse(answer.subarray(1), 'n2', 'n1')).toThrow(/expected 50/);
    expect(() => decodeHello(Buffer.from([1, 0xff, 0xff, 0x41]))).toThrow(/truncated/);
  });

  it('refuses a frame over the limit from its length field, before buffering its bytes', () => {
    const reader = new FrameReader(1024);
    const header = Buffer.alloc(5);
    header.writeUInt32BE(0xffff_ffff);
    expect(reader.push(header, () => true)).toMatch(/exceeds the limit of 1024/);
    expect(reader.push(Buffer.alloc(10_000), () => { throw new Error('no frame after a refusal'); })).toBeUndefined(); // stopped: ignores the rest

    // The length field split across chunks is checked as soon as it is complete.
    const split = new FrameReader(1024);
    expect(split.push(Buffer.from([0x00, 0x00]), () => true)).toBeUndefined();
    expect(split.push(Buffer.from([0x10, 0x00, 4]), () => true)).toMatch(/4096 bytes exceeds/);
    expect(new FrameReader(1024).push(Buffer.from([0, 0, 0, 0, 1]), () => true)).toMatch(/length 0/);
  });

  it('applies a limit raised by the handler to the frames after it in the same chunk', () => {
    const big = encodeRefused('x'.repeat(1000));
    const stream = Buffer.concat([encodeHello({ version: 1, groupId: 'g', from: 'a', to: 'b' }), big]);
    const reader = new FrameReader(100);
    const types: number[] = [];
    expect(reader.push(stream, (type) => {
      types.push(type);
      reader.frameBytesMax = 2000;
      return true;
    })).toBeUndefined();
    expect(types).toEqual([FrameType.hello, FrameType.refused]);
  });

  it('refuses to encode a value that is not a u64 it can represent', () => {
    const message: AppendRequest = { type: 'append-request', from: 'n1', to: 'n2', term: -1, prevIndex: 0, prevTerm: 0, commitIndex: 0, entryCount: 0, entries: [] };
    expect(() => encodeAppendRequest(message)).toThrow(RangeError);
    expect(() => encodeAppendRequest({ ...message, term: 2 ** 53 })).toThrow(RangeError);
  });
});
