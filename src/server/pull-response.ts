/**
 * The frames of a PullMessage answer: a status, one `message` frame per pulled message (the
 * protocol's `PullMessageResponse` is a oneof of the three), then the next offset.
 *
 * A message frame carries what messageToV2 (v2-messages.ts) gives a pulled message, built for
 * the serializer's sake: enums as their numbers (proto-loader's fromObject otherwise matches
 * every enum's name against its list), properties copied once, nothing a pulled message does
 * not have (receipt handle, attempt, invisible time). pull-response.test.ts checks that the
 * bytes decode to what messageToV2's object encodes to.
 */
import { hash } from 'node:crypto';
import type { PulledMessage } from '../broker/broker-service.js';
import { msToTimestamp, okStatus } from '../util/rocketmq-v2.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader objects are untyped at this edge */

/** apache.rocketmq.v2 enum numbers (definition.proto). */
const digestMd5 = 2;
const encodingIdentity = 1;
const messageType = { normal: 1, fifo: 2, delay: 3, transaction: 4 } as const;

const noMessageStatus = { code: 'MESSAGE_NOT_FOUND', message: 'no new message' } as const;

export function pullResponseFrames(messages: readonly PulledMessage[], nextOffset: number, storeHost: string): any[] {
  const frames: any[] = new Array(messages.length + 2);
  frames[0] = { status: messages.length > 0 ? okStatus : noMessageStatus };
  for (let i = 0; i < messages.length; i++) frames[i + 1] = { message: pulledMessageToV2(messages[i] as PulledMessage, storeHost) };
  frames[messages.length + 1] = { nextOffset };
  return frames;
}

/** The protocol's Message for a pulled message: the fields, names and values of messageToV2. */
export function pulledMessageToV2(pulled: PulledMessage, storeHost: string): any {
  const { message } = pulled;
  const userProperties: Record<string, string> = {};
  for (const [key, value] of message.properties) userProperties[key] = value;
  if (message.messageGroup !== '') userProperties.__SHARDINGKEY = message.messageGroup;
  if (pulled.topic !== message.topic) userProperties.__ORIGIN_TOPIC = message.topic;
  if (pulled.transactionId !== '') userProperties.__transactionId__ = pulled.transactionId;
  const system: Record<string, unknown> = {
    keys: message.keys,
    messageId: message.messageId,
    // bodyDigest's digest, with the one-shot hash (a third cheaper than createHash for 1 KiB).
    bodyDigest: { type: digestMd5, checksum: hash('md5', message.body, 'hex').toUpperCase() },
    bodyEncoding: encodingIdentity,
    messageType: message.transactional === true ? messageType.transaction : message.messageGroup !== '' ? messageType.fifo : message.deliveryTimeMs !== undefined ? messageType.delay : messageType.normal,
    bornTimestamp: msToTimestamp(message.bornTimestamp),
    bornHost: message.bornHost,
    storeTimestamp: msToTimestamp(pulled.storeTimeMs),
    storeHost,
    queueId: pulled.queueId,
    queueOffset: pulled.offset,
  };
  if (message.tag !== '') system.tag = message.tag;
  if (message.messageGroup !== '') system.messageGroup = message.messageGroup;
  if (message.deliveryTimeMs !== undefined) system.deliveryTimestamp = msToTimestamp(message.deliveryTimeMs);
  return { topic: { name: pulled.topic, resourceNamespace: '' }, userProperties, systemProperties: system, body: message.body };
}
