/**
 * Hostile input for every port of a real cluster (issue 12, item 5): generators of bytes an
 * attacker (or a confused client) may send, and small drivers that send them to one port and
 * always come back. Used by test/integration/hostile-input.test.ts (a bounded run that is part
 * of `npm test`); a longer nightly run can call the same drivers with a bigger budget and
 * other seeds.
 *
 * Rules: every generator is a pure function of its Prng (src/testing/prng.ts; never
 * Math.random), every attack is bounded in bytes, in connections and in time (each driver
 * settles within `budget.holdMs` plus a fixed slack, whatever the server does), and they talk
 * to the host they are given (the tests give 127.0.0.1 only).
 *
 * What each port speaks:
 * - gRPC ports (NameServer, access point, a broker node's one gRPC port, which serves the
 *   client protocol, the admin services and Raft): garbage, HTTP/1.1, a TLS ClientHello,
 *   truncated and oversized HTTP/2 frames and header blocks, gRPC messages whose length
 *   prefix lies, random protobufs shaped like each real request (valid gRPC framing, random or
 *   mutated field contents, sent with identity serializers), connection floods and streams
 *   that never read.
 * - the peer lane (raft port + 1000, peer-frame-codec.ts): garbage, truncated frames, lengths
 *   over the handshake limit and over 2^32 - 1, hellos that are malformed or claim the wrong
 *   group, node or version, frames of the wrong type, connection floods.
 */
import * as http2 from 'node:http2';
import { createRequire } from 'node:module';
import * as net from 'node:net';
import * as path from 'node:path';
import * as tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { encodeHello, FrameType, laneProtocolVersion } from '../server/peer-frame-codec.js';
import { loadProtoFile } from '../util/proto-files.js';
import type { Prng } from './prng.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader descriptors are untyped at this edge */

// ---------------------------------------------------------------------------------------------
// Budgets and targets.

export interface AttackBudget {
  /** Largest number of bytes one attack writes on one connection. */
  readonly bytesMax: number;
  /** How long an attack keeps a connection or stream open before giving up on it. */
  readonly holdMs: number;
  /** Connections opened by a flood. */
  readonly floodConnections: number;
  /** Streams that never read, per port. */
  readonly stalledStreams: number;
  /** Random requests per gRPC method. */
  readonly requestsPerMethod: number;
  /** Requests in flight at once on one port. */
  readonly concurrency: number;
}

/** The bounded run `npm test` does; a nightly run multiplies these. */
export const defaultBudget: AttackBudget = { bytesMax: 256 * 1024, holdMs: 1_500, floodConnections: 200, stalledStreams: 8, requestsPerMethod: 3, concurrency: 8 };

export interface GrpcTarget {
  readonly kind: 'grpc';
  readonly name: string;
  readonly host: string;
  readonly port: number;
  /** The methods this port serves (see {@link methodsOf}). */
  readonly methods: readonly MethodShape[];
  /** Strings the field generator prefers (names that exist, so requests get past the first check). */
  readonly strings: readonly string[];
  /** A method to open streams on that never read (a unary or server-streaming one that answers). */
  readonly stallMethod: { readonly path: string; readonly request: Buffer };
  /** The port speaks TLS: the protocol-level attacks (random requests, stalled streams) verify it with this CA; the raw ones stay plaintext. */
  readonly tlsCa?: Buffer;
  /** Headers that sign a request as some user; half the random requests carry them, half go unsigned. */
  readonly sign?: () => Record<string, string>;
}

export interface LaneTarget {
  readonly kind: 'lane';
  readonly name: string;
  readonly host: string;
  readonly port: number;
  /** The group the listener belongs to (hellos for it use node ids that are not members). */
  readonly groupId: string;
  readonly nodeId: string;
}

export type HostileTarget = GrpcTarget | LaneTarget;

/** What one attack saw: counts by outcome (`closed`, `held`, `refused`, a gRPC status name, …). */
export type Outcomes = Map<string, number>;

function count(outcomes: Outcomes, what: string): void {
  outcomes.set(what, (outcomes.get(what) ?? 0) + 1);
}

/** Slack a driver allows beyond its hold time before it gives up on a connection itself. */
const slackMs = 1_000;

// ---------------------------------------------------------------------------------------------
// Protobuf schemas: the request types of every real method, from the .proto files.

function rocketmqProtoDir(): string {
  const require = createRequire(import.meta.url);
  return path.join(path.dirname(require.resolve('rocketmq-client-nodejs/package.json')), 'proto');
}

const loaderOptions: protoLoader.Options = { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true };

/** Message descriptors by full name, across the protos every port serves. */
export class ProtoSchema {
  private readonly types = new Map<string, any>();
  readonly packages: ReadonlyMap<string, protoLoader.PackageDefinition>;

  constructor() {
    const rocketmq = protoLoader.loadSync('apache/rocketmq/v2/service.proto', { ...loaderOptions, includeDirs: [rocketmqProtoDir()] });
    const packages = new Map<string, protoLoader.PackageDefinition>([
      ['rocketmq', rocketmq], ['raft', loadProtoFile('raft.proto')], ['raftnode', loadProtoFile('raftnode.proto')],
      ['namesrv', loadProtoFile('namesrv.proto')], ['admin', loadProtoFile('admin.proto')],
    ]);
    this.packages = packages;
    for (const definition of packages.values()) {
      for (const [name, value] of Object.entries(definition)) {
        const type = value as { format?: string; type?: any };
        if (type.format === 'Protocol Buffer 3 DescriptorProto') this.addType(name, type.type);
      }
    }
  }

  private addType(name: string, descriptor: any): void {
    this.types.set(name, descriptor);
    for (const nested of descriptor.nestedType ?? []) this.addType(`${name}.${nested.name as string}`, nested);
  }

  /** The descriptor `typeName` refers to from inside `scope` (a full message name), protobuf's scoping rules. */
  resolve(typeName: string, scope: string): { name: string; descriptor: any } | undefined {
    const wanted = typeName.startsWith('.') ? typeName.slice(1) : typeName;
    const parts = scope.split('.');
    for (let i = parts.length; i >= 0; i--) {
      const name = [...parts.slice(0, i), wanted].join('.');
      const descriptor = this.types.get(name);
      if (descriptor !== undefined) return { name, descriptor };
    }
    return undefined;
  }

  /** The services of one loaded package, by their short name. */
  service(pkg: string, fullName: string): grpc.ServiceDefinition {
    const definition = this.packages.get(pkg);
    if (definition === undefined) throw new Error(`no proto package ${pkg}`);
    const service = definition[fullName] as grpc.ServiceDefinition | undefined;
    if (service === undefined) throw new Error(`no service ${fullName} in ${pkg}`);
    return service;
  }
}

export interface MethodShape {
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
  /** Full name of the request message. */
  readonly requestType: string;
  /** A well-formed request (all defaults), for the mutation generator. */
  readonly sample: Buffer;
  /** Strings for this method's fields instead of the target's (e.g. never the real group id for Raft). */
  readonly strings?: readonly string[];
}

/** Every method of `service`, except those named in `skip` (see the test for why some are). */
export function methodsOf(service: grpc.ServiceDefinition, skip: ReadonlySet<string> = new Set(), strings?: readonly string[]): MethodShape[] {
  return Object.entries(service).filter(([name]) => !skip.has(name)).map(([, method]) => {
    const m = method as any;
    const pkg = (m.path as string).slice(1, (m.path as string).lastIndexOf('.'));
    const typeName = m.requestType.type.name as string;
    return { path: m.path, requestStream: m.requestStream, responseStream: m.responseStream, requestType: `${pkg}.${typeName}`, sample: m.requestSerialize({}), ...(strings === undefined ? {} : { strings }) };
  });
}

// ---------------------------------------------------------------------------------------------
// Protobuf generators: wire bytes shaped like a message type, and mutations of them.

const wire = { varint: 0, fixed64: 1, lengthDelimited: 2, startGroup: 3, endGroup: 4, fixed32: 5 } as const;

function varint(value: bigint): Buffer {
  const bytes: number[] = [];
  let v = BigInt.asUintN(64, value);
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    bytes.push(byte);
  } while (v > 0n);
  return Buffer.from(bytes);
}

function tag(field: number, wireType: number): Buffer {
  return varint(BigInt(field) * 8n + BigInt(wireType));
}

export function randomBytes(prng: Prng, length: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let i = 0; i < length; i++) bytes[i] = prng.int(0, 255);
  return bytes;
}

/** Integers that break decoders: zero, edges of 32 and 53 and 64 bits, negatives (10-byte varints). */
const edgeIntegers: readonly bigint[] = [0n, 1n, -1n, 127n, 128n, 0x7fff_ffffn, 0x8000_0000n, 0xffff_ffffn, 2n ** 53n - 1n, 2n ** 53n, 2n ** 63n - 1n, -(2n ** 63n), 2n ** 64n - 1n];

function randomInteger(prng: Prng): bigint {
  if (prng.chance(0.5)) return prng.pick(edgeIntegers);
  return BigInt(prng.int(0, 0xffff)) * BigInt(prng.chance(0.3) ? 0x1_0000_0000 : 1) + BigInt(prng.int(0, 0xffff));
}

function randomString(prng: Prng, strings: readonly string[], bytesMax: number): Buffer {
  const choice = prng.int(0, 9);
  if (choice <= 3 && strings.length > 0) return Buffer.from(prng.pick(strings), 'utf8');
  if (choice === 4) return Buffer.alloc(0);
  // Generated strings never hold ':' (only the caller's strings may look like host:port), so that
  // nothing the servers are fed makes them dial an address the caller did not choose.
  if (choice === 5) return Buffer.from(randomBytes(prng, prng.int(1, 32)).map((byte) => (byte === 0x3a ? 0x3b : byte))); // mostly invalid UTF-8
  if (choice === 6) return Buffer.alloc(prng.int(1, Math.max(1, bytesMax)), prng.pick(['a', '%', '~', '/', '\u00e9'])); // long
  if (choice === 7) return Buffer.from(prng.pick(['%DLQ%x', '%RETRY%x', '../../etc/passwd', 'a b', '\u0000', 'x'.repeat(256), '~g1~0~0~0', '*', '||', 'TAGS is not null']), 'utf8');
  let text = '';
  const length = prng.int(1, 24);
  for (let i = 0; i < length; i++) text += String.fromCharCode(prng.int(0x21, 0x7e));
  return Buffer.from(text.replaceAll(':', ';'), 'utf8');
}

export interface MessageGenerator {
  readonly schema: ProtoSchema;
  readonly strings: readonly string[];
  /** Upper bound of one generated message (strings and bytes are cut to fit). */
  readonly bytesMax: number;
  /** Only valid wire encodings (no field with a wrong wire type), so that the request decodes and reaches the handler. */
  readonly strict?: boolean;
}

/** Random wire bytes for message `typeName`: its fields with random values, sometimes with the wrong wire type or unknown fields. */
export function randomMessage(prng: Prng, generator: MessageGenerator, typeName: string, depth = 0): Buffer {
  const descriptor = generator.schema.resolve(typeName, '')?.descriptor;
  const parts: Buffer[] = [];
  let size = 0;
  const push = (bytes: Buffer): void => {
    if (size + bytes.length > generator.bytesMax) return;
    parts.push(bytes);
    size += bytes.length;
  };
  for (const field of (descriptor?.field ?? []) as any[]) {
    if (!prng.chance(depth === 0 ? 0.85 : 0.6)) continue;
    const repeats = field.label === 'LABEL_REPEATED' ? prng.int(0, depth === 0 ? 4 : 2) : prng.chance(0.1) ? 2 : 1;
    for (let r = 0; r < repeats; r++) push(randomField(prng, generator, field, typeName, depth, generator.bytesMax - size));
  }
  if (prng.chance(0.15)) push(unknownField(prng, generator.strict === true));
  return Buffer.concat(parts);
}

/** A field the message does not declare: well-formed (decoders skip it), or when not strict its tag followed by random bytes. */
function unknownField(prng: Prng, strict: boolean): Buffer {
  const number = prng.int(1, 536_870_911);
  if (!strict && prng.chance(0.5)) return Buffer.concat([tag(number, prng.pick([0, 1, 2, 5])), randomBytes(prng, prng.int(1, 16))]);
  switch (prng.pick([wire.varint, wire.fixed64, wire.lengthDelimited, wire.fixed32])) {
    case wire.varint: return Buffer.concat([tag(number, wire.varint), varint(BigInt(prng.int(0, 0x7fff_ffff)))]);
    case wire.fixed64: return Buffer.concat([tag(number, wire.fixed64), randomBytes(prng, 8)]);
    case wire.fixed32: return Buffer.concat([tag(number, wire.fixed32), randomBytes(prng, 4)]);
    case wire.lengthDelimited: {
      const payload = randomBytes(prng, prng.int(0, 32));
      return Buffer.concat([tag(number, wire.lengthDelimited), varint(BigInt(payload.length)), payload]);
    }
  }
}

function randomField(prng: Prng, generator: MessageGenerator, field: any, scope: string, depth: number, room: number): Buffer {
  const number = field.number as number;
  if (generator.strict !== true && prng.chance(0.05)) return Buffer.concat([tag(number, prng.pick([0, 1, 2, 3, 4, 5, 6, 7])), randomBytes(prng, prng.int(0, 9))]); // a wrong wire type
  const delimited = (payload: Buffer): Buffer => Buffer.concat([tag(number, wire.lengthDelimited), varint(BigInt(payload.length)), payload]);
  switch (field.type as string) {
    case 'TYPE_DOUBLE': case 'TYPE_FIXED64': case 'TYPE_SFIXED64':
      return Buffer.concat([tag(number, wire.fixed64), randomBytes(prng, 8)]);
    case 'TYPE_FLOAT': case 'TYPE_FIXED32': case 'TYPE_SFIXED32':
      return Buffer.concat([tag(number, wire.fixed32), randomBytes(prng, 4)]);
    case 'TYPE_STRING':
      return delimited(randomString(prng, generator.strings, Math.min(room - 16, 4096)).subarray(0, Math.max(0, room - 16)));
    case 'TYPE_BYTES':
      return delimited(randomBytes(prng, prng.int(0, Math.max(0, Math.min(room - 16, prng.chance(0.1) ? 64 * 1024 : 256)))));
    case 'TYPE_MESSAGE': {
      if (depth >= 4) return delimited(Buffer.alloc(0));
      const resolved = generator.schema.resolve(field.typeName as string, scope);
      if (resolved === undefined) return delimited(randomBytes(prng, prng.int(0, 16)));
      const nested = randomMessage(prng, { ...generator, bytesMax: Math.max(0, room - 16) }, resolved.name, depth + 1);
      return delimited(nested);
    }
    default: { // every varint type: ints, bools, enums
      let value = randomInteger(prng);
      // protobufjs reads a 32-bit varint as 5 bytes plus, if it goes on, 5 more skipped blindly
      // (the 10 bytes of a negative int32): a 6 to 9 byte one is undecodable there.
      const wide = BigInt.asUintN(64, value) >= 2n ** 35n;
      if (generator.strict === true && wide && !/64/.test(field.type as string)) value = prng.chance(0.5) ? -1n : BigInt.asUintN(32, value);
      return Buffer.concat([tag(number, wire.varint), varint(value)]);
    }
  }
}

/** A mutation of `bytes`: cut short, bytes flipped, garbage spliced in, a length that lies, or a group never closed. */
export function mutate(prng: Prng, bytes: Buffer): Buffer {
  switch (prng.int(0, 5)) {
    case 0: return bytes.subarray(0, prng.int(0, Math.max(0, bytes.length - 1)));
    case 1: {
      const copy = Buffer.from(bytes);
      for (let i = 0, n = prng.int(1, 8); i < n && copy.length > 0; i++) copy[prng.int(0, copy.length - 1)] = prng.int(0, 255);
      return copy;
    }
    case 2: {
      const at = prng.int(0, bytes.length);
      return Buffer.concat([bytes.subarray(0, at), randomBytes(prng, prng.int(1, 32)), bytes.subarray(at)]);
    }
    case 3: return Buffer.concat([bytes, tag(prng.int(1, 20), wire.lengthDelimited), varint(prng.pick([0x7fff_ffffn, 2n ** 64n - 1n, 1_000_000n]))]);
    case 4: return Buffer.concat([bytes, tag(prng.int(1, 20), wire.startGroup), randomBytes(prng, prng.int(0, 8))]);
    default: return Buffer.concat([bytes, bytes]);
  }
}

/**
 * One request for `method`: random field contents in a valid encoding (which reach the
 * handler), random fields in a loose one, a mutation of random fields, or a mutation of the
 * well-formed sample (which mostly stop at the decoder).
 */
export function randomRequest(prng: Prng, generator: MessageGenerator, method: MethodShape): Buffer {
  const choice = prng.int(0, 9);
  if (choice <= 3) return randomMessage(prng, { ...generator, strict: true }, method.requestType);
  if (choice <= 5) return randomMessage(prng, generator, method.requestType);
  if (choice <= 7) return mutate(prng, randomMessage(prng, generator, method.requestType));
  return mutate(prng, method.sample);
}

// ---------------------------------------------------------------------------------------------
// Byte generators for raw connections.

/** Random bytes; sometimes starting like a real protocol so a sniffer reads further. */
export function garbage(prng: Prng, bytesMax: number): Buffer {
  const body = randomBytes(prng, prng.int(1, Math.max(1, Math.min(bytesMax, 64 * 1024))));
  const prefix = prng.pick([Buffer.alloc(0), Buffer.from('PRI * HTTP/2.0'), Buffer.from([0x16, 0x03, 0x01]), Buffer.from([0, 0, 0, 9, 1])]);
  return Buffer.concat([prefix, body]).subarray(0, bytesMax);
}

export function http1Request(prng: Prng): Buffer {
  const method = prng.pick(['GET', 'POST', 'PRI', 'OPTIONS', 'CONNECT']);
  const target = prng.pick(['/', '/apache.rocketmq.v2.MessagingService/SendMessage', '*', `/${'x'.repeat(prng.int(1, 8192))}`]);
  const headers = ['Host: 127.0.0.1', 'Content-Type: application/grpc'];
  if (prng.chance(0.5)) headers.push('Connection: Upgrade, HTTP2-Settings', 'Upgrade: h2c', 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA');
  if (prng.chance(0.3)) headers.push(`X-Long: ${'y'.repeat(prng.int(1, 32 * 1024))}`);
  const body = method === 'POST' ? randomBytes(prng, prng.int(0, 512)) : Buffer.alloc(0);
  return Buffer.concat([Buffer.from(`${method} ${target} HTTP/1.1\r\n${headers.join('\r\n')}\r\nContent-Length: ${body.length}\r\n\r\n`), body]);
}

export const http2Preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
export const H2 = { data: 0, headers: 1, priority: 2, rstStream: 3, settings: 4, pushPromise: 5, ping: 6, goaway: 7, windowUpdate: 8, continuation: 9 } as const;

/** One HTTP/2 frame; `declaredLength` (default the payload's) may lie. */
export function h2Frame(type: number, flags: number, streamId: number, payload: Buffer, declaredLength = payload.length): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(declaredLength & 0xff_ffff, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(streamId & 0x7fff_ffff, 5);
  return Buffer.concat([header, payload]);
}

function hpackInteger(value: number, prefixBits: number, firstByte: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([firstByte | value]);
  const bytes = [firstByte | max];
  let rest = value - max;
  while (rest >= 128) {
    bytes.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  bytes.push(rest);
  return Buffer.from(bytes);
}

/** An HPACK literal header field without indexing, with a new name (no Huffman). */
export function hpackLiteral(name: string, value: string | Buffer): Buffer {
  const n = Buffer.from(name);
  const v = typeof value === 'string' ? Buffer.from(value) : value;
  return Buffer.concat([Buffer.from([0x00]), hpackInteger(n.length, 7, 0), n, hpackInteger(v.length, 7, 0), v]);
}

/** The request headers of a gRPC call to `pathName`, HPACK-encoded (literals only). */
export function grpcHeaderBlock(pathName: string): Buffer {
  return Buffer.concat([[':method', 'POST'], [':scheme', 'http'], [':path', pathName], [':authority', '127.0.0.1'], ['content-type', 'application/grpc'], ['te', 'trailers']]
    .map(([name, value]) => hpackLiteral(name as string, value as string)));
}

const emptySettings = h2Frame(H2.settings, 0, 0, Buffer.alloc(0));

/** A prefix of the client preface (and sometimes of the first SETTINGS frame), then silence. */
export function http2TruncatedPreface(prng: Prng): Buffer {
  const full = Buffer.concat([http2Preface, h2Frame(H2.settings, 0, 0, Buffer.from([0, 4, 0, 0, 0xff, 0xff]))]);
  return full.subarray(0, prng.int(1, full.length - 1));
}

/** A valid preface, then frames with random types, flags, stream ids and payloads, the last one cut short. */
export function http2RandomFrames(prng: Prng, bytesMax: number): Buffer {
  const frames: Buffer[] = [http2Preface, emptySettings];
  let size = http2Preface.length + emptySettings.length;
  for (let i = 0, n = prng.int(1, 24); i < n; i++) {
    const type = prng.chance(0.8) ? prng.int(0, 9) : prng.int(10, 255);
    const frame = h2Frame(type, prng.int(0, 255), prng.chance(0.3) ? 0 : prng.int(1, 99) * (prng.chance(0.8) ? 2 : 1) + 1, randomBytes(prng, prng.int(0, 512)));
    if (size + frame.length > bytesMax) break;
    frames.push(frame);
    size += frame.length;
  }
  const all = Buffer.concat(frames);
  return prng.chance(0.5) ? all.subarray(0, prng.int(http2Preface.length, all.length)) : all;
}

/** Frames longer than the 16 KiB SETTINGS_MAX_FRAME_SIZE every server starts with (declared up to 2^24 - 1; at most `bytesMax` sent). */
export function http2OversizedFrame(prng: Prng, bytesMax: number): Buffer {
  const declared = prng.pick([16_385, 65_536, 0xff_ffff]);
  const type = prng.pick([H2.data, H2.headers, H2.settings, H2.ping, H2.windowUpdate, H2.continuation]);
  const room = Math.max(0, bytesMax - http2Preface.length - emptySettings.length - 9);
  return Buffer.concat([http2Preface, emptySettings, h2Frame(type, 0, type === H2.settings || type === H2.ping ? 0 : 1, randomBytes(prng, Math.min(declared, room)), declared)]);
}

/**
 * A header block that never ends (HEADERS without END_HEADERS, then CONTINUATION frames up
 * to `bytesMax`: the 2024 "CONTINUATION flood"), or one whose header list is far over any
 * sane limit, in frames of legal size.
 */
export function http2HeaderFlood(prng: Prng, bytesMax: number, pathName: string): Buffer {
  const frames: Buffer[] = [http2Preface, emptySettings];
  let size = http2Preface.length + emptySettings.length;
  const endsHeaders = prng.chance(0.3); // an oversized but complete block, else never complete
  const first = Buffer.concat([grpcHeaderBlock(pathName), hpackLiteral('x-big', 'z'.repeat(8_000))]);
  frames.push(h2Frame(H2.headers, 0, 1, first));
  size += first.length + 9;
  while (size + 16_384 + 9 <= bytesMax) {
    const block = prng.chance(0.5) ? hpackLiteral(`x-${prng.int(0, 1e6)}`, 'z'.repeat(16_000)) : Buffer.alloc(16_384, 0x40); // 0x40: "literal with incremental indexing", repeated
    frames.push(h2Frame(H2.continuation, 0, 1, block.subarray(0, 16_384)));
    size += Math.min(block.length, 16_384) + 9;
  }
  if (endsHeaders) frames.push(h2Frame(H2.continuation, 0x4, 1, hpackLiteral('x-end', '1')));
  return Buffer.concat(frames);
}

/** A well-formed gRPC call whose message length prefix claims far more than is sent (or than any limit allows). */
export function grpcLyingLength(prng: Prng, pathName: string, bytesMax: number): Buffer {
  const declared = prng.pick([0xffff_ffff, 0x7fff_ffff, 64 * 1024 * 1024 + 1, 4 * 1024 * 1024]);
  const prefix = Buffer.alloc(5);
  prefix[0] = prng.chance(0.2) ? 1 : 0; // 1: "compressed" with no grpc-encoding agreed
  prefix.writeUInt32BE(declared >>> 0, 1);
  const sent = randomBytes(prng, Math.min(prng.int(0, 16_000), Math.max(0, bytesMax - 200)));
  return Buffer.concat([http2Preface, emptySettings, h2Frame(H2.headers, 0x4, 1, grpcHeaderBlock(pathName)), h2Frame(H2.data, 0, 1, Buffer.concat([prefix, sent]))]);
}

// ---------------------------------------------------------------------------------------------
// Peer lane generators (peer-frame-codec.ts: u32 length · u8 type · body; 4 KiB before the hello).

function laneFrame(type: number, body: Buffer, declaredLength = body.length + 1): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt32BE(declaredLength >>> 0, 0);
  header[4] = type;
  return Buffer.concat([header, body]);
}

/** Byte streams the lane listener must refuse (or, for the hellos, answer with a refusal) without harm. */
export function laneAttack(prng: Prng, target: LaneTarget, bytesMax: number): { readonly name: string; readonly bytes: Buffer } {
  const stranger = `hx-${prng.int(0, 1e9)}`;
  const hello = (groupId: string, from: string, to: string, version = laneProtocolVersion): Buffer => encodeHello({ version, groupId, from, to });
  const attacks: Array<() => { name: string; bytes: Buffer }> = [
    () => ({ name: 'garbage', bytes: garbage(prng, bytesMax) }),
    () => ({ name: 'zero-length', bytes: Buffer.from([0, 0, 0, 0, 1]) }),
    () => ({ name: 'length-2^32-1', bytes: laneFrame(FrameType.hello, randomBytes(prng, 64), 0xffff_ffff) }),
    () => ({ name: 'over-handshake-limit', bytes: laneFrame(FrameType.hello, randomBytes(prng, Math.min(bytesMax, 8_192)), prng.pick([4_097, 8_193, 64 * 1024 * 1024])) }),
    () => {
      const full = hello(target.groupId, stranger, target.nodeId);
      return { name: 'truncated-hello', bytes: full.subarray(0, prng.int(1, full.length - 1)) };
    },
    () => ({ name: 'hello-wrong-group', bytes: hello(stranger, stranger, target.nodeId) }),
    () => ({ name: 'hello-non-member', bytes: hello(target.groupId, stranger, target.nodeId) }),
    () => ({ name: 'hello-wrong-target', bytes: hello(target.groupId, stranger, stranger) }),
    () => ({ name: 'hello-bad-version', bytes: hello(target.groupId, stranger, target.nodeId, prng.pick([0, 2, 255])) }),
    () => ({ name: 'hello-lying-strings', bytes: laneFrame(FrameType.hello, Buffer.concat([Buffer.from([laneProtocolVersion, 0xff, 0xff]), randomBytes(prng, prng.int(0, 64))])) }),
    () => ({ name: 'hello-trailing-bytes', bytes: laneFrame(FrameType.hello, Buffer.concat([hello(target.groupId, stranger, target.nodeId).subarray(5), randomBytes(prng, 8)])) }),
    () => ({ name: 'append-before-hello', bytes: laneFrame(FrameType.appendRequest, randomBytes(prng, prng.int(36, 512))) }),
    () => ({ name: 'unknown-type', bytes: laneFrame(prng.int(6, 255), randomBytes(prng, prng.int(0, 512))) }),
    () => {
      const frames: Buffer[] = [];
      for (let i = 0; i < 20; i++) frames.push(laneFrame(prng.int(0, 255), randomBytes(prng, prng.int(0, 100))));
      return { name: 'random-frames', bytes: Buffer.concat(frames).subarray(0, bytesMax) };
    },
  ];
  return prng.pick(attacks)();
}

/** Every lane attack kind once (the generator above picks one at random; this walks them all). */
export const laneAttackKinds = 14;

// ---------------------------------------------------------------------------------------------
// Drivers: each connects, writes, waits (bounded), and always settles.

export interface RawResult {
  /** 'closed' (the server closed it), 'held' (still open at the end of the hold), 'error:<code>'. */
  readonly outcome: string;
  readonly bytesRead: number;
  readonly firstBytes: Buffer;
}

/** Writes `bytes` on a fresh TCP connection and waits up to `holdMs` for the server to close it. Never rejects. */
export function sendRaw(host: string, port: number, bytes: Buffer, holdMs: number): Promise<RawResult> {
  return new Promise((resolve) => {
    let bytesRead = 0;
    const first: Buffer[] = [];
    let settled = false;
    const socket = net.connect({ host, port });
    const finish = (outcome: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ outcome, bytesRead, firstBytes: Buffer.concat(first).subarray(0, 256) });
    };
    const timer = setTimeout(() => finish('held'), holdMs + slackMs);
    socket.setTimeout(holdMs, () => finish('held'));
    socket.on('connect', () => socket.write(bytes, () => undefined));
    socket.on('data', (chunk: Buffer) => {
      if (bytesRead < 256) first.push(chunk);
      bytesRead += chunk.length;
      if (bytesRead > 1024 * 1024) finish('flooded'); // an answer this large to a hostile input is a finding
    });
    socket.on('error', (error: NodeJS.ErrnoException) => finish(`error:${error.code ?? 'unknown'}`));
    socket.on('close', () => finish('closed'));
  });
}

/**
 * A TLS handshake without a client certificate: against a plaintext port it must fail, not
 * hang beyond the hold. Against a TLS port that requires a certificate the client may see the
 * handshake finish (TLS 1.3 ends the client's part first) and must then be closed:
 * `handshake-then-closed` / `handshake-then-error:…`; `handshake-succeeded` means it was held open.
 */
export function tlsClientHello(host: string, port: number, holdMs: number): Promise<string> {
  return new Promise((resolve) => {
    let settled = false;
    const socket = tls.connect({ host, port, rejectUnauthorized: false, servername: 'raftmq.invalid', ALPNProtocols: ['h2'] });
    const finish = (outcome: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(outcome);
    };
    let secured = false;
    let timer = setTimeout(() => finish('held'), holdMs + slackMs);
    socket.setTimeout(holdMs, () => finish(secured ? 'handshake-succeeded' : 'held'));
    socket.on('secureConnect', () => {
      secured = true;
      // Held open for the rest of the hold: does the server close it?
      clearTimeout(timer);
      timer = setTimeout(() => finish('handshake-succeeded'), holdMs);
    });
    socket.on('error', (error: NodeJS.ErrnoException) => finish(`${secured ? 'handshake-then-' : ''}error:${error.code ?? 'unknown'}`));
    socket.on('close', () => finish(secured ? 'handshake-then-closed' : 'closed'));
  });
}

/** Opens `connections` TCP connections at once, holds them `holdMs`, closes them. Returns how many connected. */
export async function connectionFlood(host: string, port: number, connections: number, holdMs: number, firstBytes?: Buffer): Promise<number> {
  const sockets: net.Socket[] = [];
  const connected = await Promise.all(Array.from({ length: connections }, () => new Promise<boolean>((resolve) => {
    const socket = net.connect({ host, port });
    sockets.push(socket);
    const timer = setTimeout(() => resolve(false), holdMs + slackMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      if (firstBytes !== undefined) socket.write(firstBytes, () => undefined);
      resolve(true);
    });
    socket.on('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
  })));
  await new Promise((resolve) => setTimeout(resolve, holdMs));
  for (const socket of sockets) socket.destroy();
  return connected.filter(Boolean).length;
}

/**
 * `streams` gRPC calls on one HTTP/2 connection that announces a receive window of 0 and
 * never reads: the server cannot send a byte of its answers. Held `holdMs`, then destroyed.
 * Returns how many streams the server accepted (got as far as answering headers or not).
 */
export async function stalledStreams(host: string, port: number, pathName: string, request: Buffer, streams: number, holdMs: number, tlsCa?: Buffer): Promise<number> {
  const session = tlsCa === undefined
    ? http2.connect(`http://${host}:${port}`, { settings: { initialWindowSize: 0, enablePush: false } })
    : http2.connect(`https://${host}:${port}`, { ca: tlsCa, settings: { initialWindowSize: 0, enablePush: false } });
  session.on('error', () => undefined);
  let opened = 0;
  const message = Buffer.alloc(5 + request.length);
  message.writeUInt32BE(request.length, 1);
  request.copy(message, 5);
  for (let i = 0; i < streams; i++) {
    try {
      const stream = session.request({ ':method': 'POST', ':path': pathName, 'content-type': 'application/grpc', te: 'trailers' });
      stream.on('error', () => undefined);
      stream.pause(); // never read
      stream.end(message);
      opened++;
    } catch {
      break; // the session was closed by the server
    }
  }
  await new Promise((resolve) => setTimeout(resolve, holdMs));
  session.destroy();
  return opened;
}

/** Random requests to every method of `target` with a raw grpc.Client and identity serializers; outcomes by status name. */
export async function randomGrpcRequests(prng: Prng, target: GrpcTarget, generator: MessageGenerator, budget: AttackBudget, outcomes: Outcomes): Promise<void> {
  const credentials = target.tlsCa === undefined ? grpc.credentials.createInsecure() : grpc.credentials.createSsl(target.tlsCa);
  const client = new grpc.Client(`${target.host}:${target.port}`, credentials, { 'grpc.max_receive_message_length': 8 * 1024 * 1024 });
  const metadata = (): grpc.Metadata => {
    const headers = new grpc.Metadata();
    if (target.sign !== undefined && prng.chance(0.5)) for (const [key, value] of Object.entries(target.sign())) headers.set(key, value);
    return headers;
  };
  const identity = (bytes: Buffer): Buffer => bytes;
  const statusName = (code: number): string => grpc.status[code] ?? `status-${code}`;
  const jobs: Array<() => Promise<void>> = [];
  for (const method of target.methods) {
    for (let i = 0; i < budget.requestsPerMethod; i++) {
      const forMethod = method.strings === undefined ? generator : { ...generator, strings: method.strings };
      const requests = Array.from({ length: method.requestStream ? prng.int(1, 4) : 1 }, () => randomRequest(prng, forMethod, method));
      const name = method.path.slice(method.path.lastIndexOf('/') + 1);
      jobs.push(() => new Promise<void>((resolve) => {
        const deadline = Date.now() + budget.holdMs + 1_000;
        let settled = false;
        const done = (what: string): void => {
          if (settled) return;
          settled = true;
          count(outcomes, `${name}:${what}`);
          resolve();
        };
        // A status other than the usual ones keeps a prefix of its details: that is where a handler that threw shows.
        const describe = (code: number, details: string): string => (code === grpc.status.OK || /^(Error deserializing request|Deadline exceeded|Call cancelled)/.test(details) ? statusName(code) : `${statusName(code)}(${details.slice(0, 60)})`);
        const onStatus = (status: grpc.StatusObject): void => done(describe(status.code, status.details));
        if (!method.requestStream && !method.responseStream) {
          client.makeUnaryRequest(method.path, identity, identity, requests[0] as Buffer, metadata(), { deadline }, (error) => done(error === null ? 'OK' : describe(error.code, error.details)));
        } else if (!method.requestStream) {
          const call = client.makeServerStreamRequest(method.path, identity, identity, requests[0] as Buffer, metadata(), { deadline });
          let frames = 0;
          call.on('data', () => { if (++frames >= 16) call.cancel(); });
          call.on('error', () => undefined);
          call.on('status', onStatus);
        } else if (!method.responseStream) {
          const call = client.makeClientStreamRequest(method.path, identity, identity, metadata(), { deadline }, (error) => done(error === null ? 'OK' : describe(error.code, error.details)));
          for (const request of requests) call.write(request);
          call.end();
        } else {
          const call = client.makeBidiStreamRequest(method.path, identity, identity, metadata(), { deadline });
          let frames = 0;
          call.on('data', () => { if (++frames >= 16) call.cancel(); });
          call.on('error', () => undefined);
          call.on('status', onStatus);
          for (const request of requests) call.write(request);
          if (prng.chance(0.5)) call.end(); // else left open until the deadline
        }
      }));
    }
  }
  await runLimited(prng.shuffle(jobs), budget.concurrency);
  client.close();
}

/** Runs `jobs` with at most `limit` at a time. */
export async function runLimited(jobs: ReadonlyArray<() => Promise<unknown>>, limit: number): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, async () => {
    while (next < jobs.length) await (jobs[next++] as () => Promise<unknown>)();
  }));
}

/**
 * The whole bounded attack on one port: the raw byte attacks (in parallel batches), the
 * protocol-specific ones, a connection flood and (gRPC) streams that never read. Every step
 * settles within its hold time; the outcomes say what the server did.
 */
export async function attackPort(prng: Prng, target: HostileTarget, budget: AttackBudget, schema: ProtoSchema): Promise<Outcomes> {
  const outcomes: Outcomes = new Map();
  const raw = async (name: string, bytes: Buffer): Promise<void> => {
    if (bytes.length > budget.bytesMax) bytes = bytes.subarray(0, budget.bytesMax);
    const result = await sendRaw(target.host, target.port, bytes, budget.holdMs);
    count(outcomes, `${name}:${result.outcome}`);
  };
  const jobs: Array<() => Promise<void>> = [
    () => raw('garbage', garbage(prng, budget.bytesMax)),
    () => raw('garbage', garbage(prng, budget.bytesMax)),
    () => raw('http1', http1Request(prng)),
    () => raw('http1', http1Request(prng)),
    async () => { count(outcomes, `tls:${await tlsClientHello(target.host, target.port, budget.holdMs)}`); },
  ];
  if (target.kind === 'grpc') {
    const pathName = target.stallMethod.path;
    jobs.push(
      () => raw('h2-truncated-preface', http2TruncatedPreface(prng)),
      () => raw('h2-truncated-preface', http2TruncatedPreface(prng)),
      () => raw('h2-random-frames', http2RandomFrames(prng, budget.bytesMax)),
      () => raw('h2-random-frames', http2RandomFrames(prng, budget.bytesMax)),
      () => raw('h2-random-frames', http2RandomFrames(prng, budget.bytesMax)),
      () => raw('h2-oversized-frame', http2OversizedFrame(prng, budget.bytesMax)),
      () => raw('h2-oversized-frame', http2OversizedFrame(prng, budget.bytesMax)),
      () => raw('h2-header-flood', http2HeaderFlood(prng, budget.bytesMax, pathName)),
      () => raw('h2-header-flood', http2HeaderFlood(prng, budget.bytesMax, pathName)),
      () => raw('grpc-lying-length', grpcLyingLength(prng, pathName, budget.bytesMax)),
      () => raw('grpc-lying-length', grpcLyingLength(prng, prng.pick(target.methods).path, budget.bytesMax)),
    );
  } else {
    for (let i = 0; i < laneAttackKinds; i++) {
      const attack = laneAttack(prng, target, budget.bytesMax);
      jobs.push(() => raw(`lane-${attack.name}`, attack.bytes));
    }
  }
  await runLimited(prng.shuffle(jobs), budget.concurrency);
  if (target.kind === 'grpc') {
    await randomGrpcRequests(prng, target, { schema, strings: target.strings, bytesMax: Math.min(budget.bytesMax, 128 * 1024) }, budget, outcomes);
    const stalled = stalledStreams(target.host, target.port, target.stallMethod.path, target.stallMethod.request, budget.stalledStreams, budget.holdMs * 2, target.tlsCa);
    const flood = connectionFlood(target.host, target.port, budget.floodConnections, budget.holdMs, prng.chance(0.5) ? http2Preface : undefined);
    const [opened, connected] = await Promise.all([stalled, flood]);
    count(outcomes, `stalled-streams-opened:${opened}`);
    count(outcomes, `flood-connected:${connected}`);
  } else {
    count(outcomes, `flood-connected:${await connectionFlood(target.host, target.port, budget.floodConnections, budget.holdMs)}`);
  }
  return outcomes;
}
