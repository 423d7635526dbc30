/**
 * The client protocol, `apache.rocketmq.v2.MessagingService`, loaded from the .proto files the
 * npm package `rocketmq-client-nodejs` ships (never copied here), with the loader options all
 * our code uses: camelCase fields, 64-bit numbers as JS numbers, enums as their names, oneofs
 * named. Also the small conversions every side needs (durations, timestamps, statuses).
 */
import { createRequire } from 'node:module';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader objects are untyped at this edge */

function packageProtoDir(): string {
  const require = createRequire(import.meta.url);
  return path.join(path.dirname(require.resolve('rocketmq-client-nodejs/package.json')), 'proto');
}

const definition = protoLoader.loadSync('apache/rocketmq/v2/service.proto', {
  keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true, includeDirs: [packageProtoDir()],
});

const loaded = (grpc.loadPackageDefinition(definition) as any).apache.rocketmq.v2;

export const messagingServiceDefinition: grpc.ServiceDefinition = loaded.MessagingService.service;
export const MessagingClient: grpc.ServiceClientConstructor = loaded.MessagingService;

/** Status codes of the protocol (a subset we use; names are the proto enum names). */
export type V2Code =
  | 'OK' | 'MULTIPLE_RESULTS' | 'BAD_REQUEST' | 'ILLEGAL_TOPIC' | 'ILLEGAL_CONSUMER_GROUP' | 'ILLEGAL_MESSAGE_TAG' | 'ILLEGAL_MESSAGE_KEY'
  | 'ILLEGAL_MESSAGE_GROUP' | 'ILLEGAL_MESSAGE_PROPERTY_KEY' | 'ILLEGAL_MESSAGE_ID' | 'ILLEGAL_FILTER_EXPRESSION' | 'ILLEGAL_INVISIBLE_TIME'
  | 'ILLEGAL_DELIVERY_TIME' | 'INVALID_RECEIPT_HANDLE' | 'INVALID_TRANSACTION_ID' | 'MESSAGE_PROPERTY_CONFLICT_WITH_TYPE' | 'CLIENT_ID_REQUIRED' | 'ILLEGAL_POLLING_TIME'
  | 'ILLEGAL_OFFSET' | 'UNAUTHORIZED' | 'FORBIDDEN' | 'NOT_FOUND' | 'MESSAGE_NOT_FOUND' | 'TOPIC_NOT_FOUND' | 'CONSUMER_GROUP_NOT_FOUND' | 'OFFSET_NOT_FOUND'
  | 'MESSAGE_BODY_TOO_LARGE' | 'MESSAGE_BODY_EMPTY' | 'MESSAGE_PROPERTIES_TOO_LARGE' | 'TOO_MANY_REQUESTS' | 'INTERNAL_ERROR'
  | 'INTERNAL_SERVER_ERROR' | 'HA_NOT_AVAILABLE' | 'PROXY_TIMEOUT' | 'UNSUPPORTED';

export interface V2Status {
  code: V2Code;
  message: string;
}

export const okStatus: V2Status = { code: 'OK', message: 'OK' };

export function durationToMs(duration: { seconds?: number | string; nanos?: number } | null | undefined): number | undefined {
  if (duration === null || duration === undefined) return undefined;
  return Number(duration.seconds ?? 0) * 1000 + Math.floor((duration.nanos ?? 0) / 1e6);
}

export function msToDuration(ms: number): { seconds: number; nanos: number } {
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

export const timestampToMs = durationToMs;
export const msToTimestamp = msToDuration;

/** Metadata keys a hop passes on: the client's identity and our own routing hints. */
export function forwardableMetadata(incoming: grpc.Metadata): grpc.Metadata {
  const out = new grpc.Metadata();
  for (const [key, value] of Object.entries(incoming.getMap())) {
    if (key.startsWith('x-mq-') || key.startsWith('x-raftmq-') || key === 'authorization') out.set(key, value);
  }
  return out;
}

/** Our own client sets this: queue ids in requests are its choice and must be honoured. */
export const queueSelectedHeader = 'x-raftmq-queue-selected';
/** Our own client sets this: answer "not the leader" instead of forwarding, so it can go direct. */
export const noForwardHeader = 'x-raftmq-no-forward';
/** QueryAssignment from our client: give this member its share of the queues (rebalance). */
export const rebalanceHeader = 'x-raftmq-rebalance';
/** Set on calls one of our servers forwards, so a call is forwarded at most once per hop. */
export const forwardedHeader = 'x-raftmq-forwarded';
/** Trailer (and status message) naming the leader's address on a not-leader answer. */
export const leaderHeader = 'x-raftmq-leader';
/** Trailer: 'unknown' when a failed write may still have happened. */
export const outcomeHeader = 'x-raftmq-outcome';

export const clientChannelOptions: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': 64 * 1024 * 1024,
  'grpc.max_send_message_length': 64 * 1024 * 1024,
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 1_000,
};

/** An enum of the protocol as (name → number), read from the .proto definition itself. */
function enumNumbers(name: string): ReadonlyMap<string, number> {
  const type = definition[`apache.rocketmq.v2.${name}`] as protoLoader.EnumTypeDefinition | undefined;
  if (type === undefined || type.format !== 'Protocol Buffer 3 EnumDescriptorProto') throw new Error(`apache.rocketmq.v2.${name} is not an enum`);
  const values = (type.type as { value: Array<{ name: string; number: number }> }).value;
  return new Map(values.map((v) => [v.name, v.number]));
}

/** Status.code's numbers, for the hand-written encoders of the hot path. */
export const v2CodeNumbers: ReadonlyMap<string, number> = enumNumbers('Code');

/** A status code's number; a code the protocol does not have is a programming error. */
export function v2CodeNumber(code: string): number {
  const number = v2CodeNumbers.get(code);
  if (number === undefined) throw new RangeError(`status code ${code} is not in apache.rocketmq.v2.Code`);
  return number;
}

/** The (de)serializer of a method passed on as bytes (forwarded, or coded by hand). */
export const identityBytes = (bytes: Buffer): Buffer => bytes;

/** MessageType's names by number ("7" for a number the definition does not know, as proto-loader gives it). */
const messageTypeNames: ReadonlyMap<number, string> = new Map([...enumNumbers('MessageType')].map(([name, number]) => [number, name]));
export const v2MessageTypeName = (number: number): string => messageTypeNames.get(number) ?? String(number);
