/**
 * Conversions between the client protocol's messages and the broker's: validation of what a
 * producer sends (Apache's proxy codes) and the full `Message` a consumer receives.
 */
import { createHash } from 'node:crypto';
import type { DeliveredMessage, PulledMessage } from '../broker/broker-service.js';
import { BrokerError } from '../broker/errors.js';
import type { MessageInput } from '../broker/core/entry-codec.js';
import { tagProblem, topicNameProblem, type MessageKind } from '../broker/core/names.js';
import { msToDuration, msToTimestamp, timestampToMs } from '../util/rocketmq-v2.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader objects are untyped at this edge */

const userPropertiesMax = 128;
const propertyBytesMax = 16 * 1024;
const messageGroupBytesMax = 64;

/**
 * Checks one message of a SendMessage request; throws a BrokerError with the protocol's code.
 * The message goes to the queue the client chose (`queue_id`, 0 when absent): the official
 * clients name that queue in their send receipt, with the offset the broker answers. (The
 * Node client 1.0.8 always chooses queue 0, upstream issue #1093: its messages share one
 * queue per broker group; our client and the Java client spread them.)
 */
export function messageFromV2(message: any, maxBodyBytes: number): { input: MessageInput; kind: MessageKind } {
  const topic = String(message?.topic?.name ?? '');
  const namespace = String(message?.topic?.resourceNamespace ?? '');
  if (namespace !== '') throw new BrokerError('BAD_REQUEST', `namespaces are not supported (got ${JSON.stringify(namespace)})`);
  const topicProblem = topicNameProblem(topic);
  if (topicProblem !== undefined) throw new BrokerError('ILLEGAL_TOPIC', topicProblem);
  const system = message.systemProperties ?? {};
  const messageId = String(system.messageId ?? '');
  if (messageId.trim() === '' || messageId.length > 128) throw new BrokerError('ILLEGAL_MESSAGE_ID', 'every message needs a message id of 1-128 characters');
  const body: Buffer = message.body ?? Buffer.alloc(0);
  if (body.byteLength === 0) throw new BrokerError('MESSAGE_BODY_EMPTY', 'message body is empty');
  if (body.byteLength > maxBodyBytes) throw new BrokerError('MESSAGE_BODY_TOO_LARGE', `message body of ${body.byteLength} bytes exceeds the limit of ${maxBodyBytes}`);
  const tag = system.tag === undefined || system.tag === null ? '' : String(system.tag);
  if (system.tag !== undefined && system.tag !== null) {
    const problem = tagProblem(tag);
    if (problem !== undefined) throw new BrokerError('ILLEGAL_MESSAGE_TAG', problem);
  }
  const keys: string[] = (system.keys ?? []).map(String);
  if (keys.some((key) => key.trim() === '' || /[\x00-\x1f\x7f]/.test(key))) throw new BrokerError('ILLEGAL_MESSAGE_KEY', 'message keys must not be blank or contain control characters');
  const messageGroup = system.messageGroup === undefined || system.messageGroup === null ? '' : String(system.messageGroup);
  if (system.messageGroup !== undefined && system.messageGroup !== null
    && (messageGroup.trim() === '' || Buffer.byteLength(messageGroup) >= messageGroupBytesMax || /[\x00-\x1f\x7f]/.test(messageGroup))) {
    throw new BrokerError('ILLEGAL_MESSAGE_GROUP', `message group must be 1-63 bytes without control characters`);
  }
  const type = String(system.messageType ?? 'NORMAL');
  if (type === 'LITE' || type === 'PRIORITY') {
    throw new BrokerError('UNSUPPORTED', `${type} messages are not supported yet`);
  }
  if (type === 'FIFO' && messageGroup === '') throw new BrokerError('ILLEGAL_MESSAGE_GROUP', 'a FIFO message needs a message group');
  if (type === 'TRANSACTION' && messageGroup !== '') throw new BrokerError('MESSAGE_PROPERTY_CONFLICT_WITH_TYPE', 'a TRANSACTION message cannot have a message group');
  // Delayed and scheduled messages (F8): type DELAY with an absolute delivery timestamp; the broker checks the time itself.
  const deliveryTimeMs = timestampToMs(system.deliveryTimestamp) ?? 0;
  if (type === 'DELAY') {
    if (messageGroup !== '') throw new BrokerError('MESSAGE_PROPERTY_CONFLICT_WITH_TYPE', 'a DELAY message cannot have a message group: delayed messages are not ordered');
    if (deliveryTimeMs <= 0) throw new BrokerError('ILLEGAL_DELIVERY_TIME', 'a DELAY message needs a delivery timestamp');
  } else if (deliveryTimeMs !== 0) {
    throw new BrokerError('MESSAGE_PROPERTY_CONFLICT_WITH_TYPE', `a ${type} message cannot have a delivery timestamp (send it as type DELAY)`);
  }
  const properties: Record<string, string> = message.userProperties ?? {};
  const propertyEntries = Object.entries(properties);
  let propertyBytes = Buffer.byteLength(tag) + keys.reduce((sum, key) => sum + Buffer.byteLength(key), 0);
  for (const [key, value] of propertyEntries) {
    if (key === '' || /[\x00-\x1f\x7f]/.test(key)) throw new BrokerError('ILLEGAL_MESSAGE_PROPERTY_KEY', `property key ${JSON.stringify(key)} is invalid`);
    propertyBytes += Buffer.byteLength(key) + Buffer.byteLength(value);
  }
  if (propertyEntries.length > userPropertiesMax || propertyBytes > propertyBytesMax) {
    throw new BrokerError('MESSAGE_PROPERTIES_TOO_LARGE', `at most ${userPropertiesMax} user properties and ${propertyBytesMax} bytes of properties, tag and keys`);
  }
  const queueId = Number(system.queueId ?? 0);
  if (!Number.isInteger(queueId) || queueId < 0) throw new BrokerError('BAD_REQUEST', `queue id ${String(system.queueId)} is not a queue`);
  const input: MessageInput = {
    topic, messageId, tag, keys, messageGroup, queueId,
    bornTimestamp: timestampToMs(system.bornTimestamp) ?? 0, bornHost: String(system.bornHost ?? ''), properties, body,
  };
  if (type === 'DELAY') return { kind: 'DELAY', input: { ...input, deliveryTimeMs } };
  if (type === 'TRANSACTION') return { kind: 'TRANSACTION', input };
  return { kind: messageGroup !== '' ? 'FIFO' : 'NORMAL', input };
}

/** Upper-case hex MD5: the only digest both the Node and the Java client read the same way. */
export function bodyDigest(body: Uint8Array): { type: 'MD5'; checksum: string } {
  return { type: 'MD5', checksum: createHash('md5').update(body).digest('hex').toUpperCase() };
}

export function messageToV2(delivered: DeliveredMessage | PulledMessage, storeHost: string): any {
  const { message } = delivered;
  const userProperties: Record<string, string> = Object.fromEntries(message.properties);
  if (message.messageGroup !== '') userProperties.__SHARDINGKEY = message.messageGroup;
  if (delivered.topic !== message.topic) userProperties.__ORIGIN_TOPIC = message.topic;
  // Apache RocketMQ's own property: applications (and the official client's tests) read it.
  if (delivered.transactionId !== '') userProperties.__transactionId__ = delivered.transactionId;
  const system: Record<string, unknown> = {
    keys: message.keys,
    messageId: message.messageId,
    bodyDigest: bodyDigest(message.body),
    bodyEncoding: 'IDENTITY',
    messageType: message.transactional === true ? 'TRANSACTION' : message.messageGroup !== '' ? 'FIFO' : message.deliveryTimeMs !== undefined ? 'DELAY' : 'NORMAL',
    bornTimestamp: msToTimestamp(message.bornTimestamp),
    bornHost: message.bornHost,
    storeTimestamp: msToTimestamp(delivered.storeTimeMs),
    storeHost,
    queueId: delivered.queueId,
    queueOffset: delivered.offset,
  };
  if (message.tag !== '') system.tag = message.tag;
  if (message.messageGroup !== '') system.messageGroup = message.messageGroup;
  if (message.deliveryTimeMs !== undefined) system.deliveryTimestamp = msToTimestamp(message.deliveryTimeMs);
  if ('receiptHandle' in delivered) {
    system.receiptHandle = delivered.receiptHandle;
    system.deliveryAttempt = delivered.attempt;
    system.invisibleDuration = msToDuration(Math.max(0, delivered.invisibleUntilMs - Date.now()));
  }
  return { topic: { name: delivered.topic, resourceNamespace: '' }, userProperties, systemProperties: system, body: message.body };
}
