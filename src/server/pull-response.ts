/**
 * The frames of a PullMessage answer, in the protobuf wire format: a status, one `message`
 * frame per pulled message (the protocol's `PullMessageResponse` is a oneof of the three),
 * then the next offset. PullMessage is registered with an identity response serializer
 * (brokerMessagingDefinition): the drain's frames are its most numerous bytes, and
 * proto-loader's fromObject + encode of each cost the leader more than reading the message.
 *
 * A message frame carries what messageToV2 (v2-messages.ts) gives a pulled message:
 * pull-response.test.ts checks that proto-loader decodes these bytes to what it decodes
 * messageToV2's object encoded by proto-loader to. Field numbers are apache/rocketmq/v2's
 * (service.proto, definition.proto).
 */
import { hash } from 'node:crypto';
import type { PulledMessage } from '../broker/broker-service.js';
import { WireWriter } from '../util/protobuf-wire.js';
import { okStatus, v2CodeNumber, type V2Status } from '../util/rocketmq-v2.js';

/** apache.rocketmq.v2 enum numbers (definition.proto). */
const digestMd5 = 2;
const encodingIdentity = 1;
const messageType = { normal: 1, fifo: 2, delay: 3, transaction: 4 } as const;

const noMessageStatus: V2Status = { code: 'MESSAGE_NOT_FOUND', message: 'no new message' };

/** PullMessageResponse fields. */
const statusField = 1;
const messageField = 2;
const nextOffsetField = 3;

export function pullResponseFrames(messages: readonly PulledMessage[], nextOffset: number, storeHost: string): Buffer[] {
  const frames: Buffer[] = new Array(messages.length + 2);
  frames[0] = pullStatusFrame(messages.length > 0 ? okStatus : noMessageStatus);
  for (let i = 0; i < messages.length; i++) frames[i + 1] = pulledMessageFrame(messages[i] as PulledMessage, storeHost);
  frames[messages.length + 1] = new WireWriter(16).uintPresent(nextOffsetField, nextOffset).finish();
  return frames;
}

/** A `status` frame: what a PullMessage call that failed answers, alone. */
export function pullStatusFrame(status: V2Status): Buffer {
  return new WireWriter(16 + status.message.length * 3).message(statusField, (w) => w.uint(1, v2CodeNumber(status.code)).string(2, status.message)).finish();
}

function timestamp(writer: WireWriter, field: number, ms: number): void {
  const seconds = Math.floor(ms / 1000);
  writer.message(field, (w) => w.int64(1, seconds).uint(2, Math.round((ms - seconds * 1000) * 1e6)));
}

/** One `message` frame: the fields, names and values of messageToV2 for a pulled message. */
export function pulledMessageFrame(pulled: PulledMessage, storeHost: string): Buffer {
  const { message } = pulled;
  const writer = new WireWriter(message.body.byteLength + 512);
  writer.message(messageField, (m) => {
    m.message(1, (topic) => topic.string(2, pulled.topic));
    const property = (key: string, value: string): void => { m.message(2, (entry) => entry.string(1, key).string(2, value)); };
    for (const [key, value] of message.properties) property(key, value);
    if (message.messageGroup !== '') property('__SHARDINGKEY', message.messageGroup);
    if (pulled.topic !== message.topic) property('__ORIGIN_TOPIC', message.topic);
    if (pulled.transactionId !== '') property('__transactionId__', pulled.transactionId);
    m.message(3, (system) => {
      if (message.tag !== '') system.stringPresent(1, message.tag);
      for (const key of message.keys) system.stringPresent(2, key);
      system.string(3, message.messageId);
      // bodyDigest's digest, with the one-shot hash (a third cheaper than createHash for 1 KiB).
      system.message(4, (digest) => digest.uint(1, digestMd5).string(2, hash('md5', message.body, 'hex').toUpperCase()));
      system.uint(5, encodingIdentity);
      system.uint(6, message.transactional === true ? messageType.transaction : message.messageGroup !== '' ? messageType.fifo : message.deliveryTimeMs !== undefined ? messageType.delay : messageType.normal);
      timestamp(system, 7, message.bornTimestamp);
      system.string(8, message.bornHost);
      timestamp(system, 9, pulled.storeTimeMs);
      system.string(10, storeHost);
      if (message.deliveryTimeMs !== undefined) timestamp(system, 11, message.deliveryTimeMs);
      system.uint(13, pulled.queueId);
      system.uintPresent(14, pulled.offset);
      if (message.messageGroup !== '') system.stringPresent(17, message.messageGroup);
    });
    m.bytes(4, message.body);
  });
  return writer.finish();
}
