/**
 * Conversions between the client protocol's messages and the broker's: validation of what a
 * producer sends (Apache's proxy codes) and the full `Message` a consumer receives.
 */
import { createHash } from 'node:crypto';
import type { DeliveredMessage, PulledMessage } from '../broker/broker-service.js';
import { BrokerError } from '../broker/errors.js';
import type { MessageInput } from '../broker/core/entry-codec.js';
import { tagProblem, topicNameProblem, type MessageKind } from '../broker/core/names.js';
import { msToDuration, msToTimestamp, v2MessageTypeName } from '../util/rocketmq-v2.js';
import type { SendMessageIn } from './send-message-codec.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader objects are untyped at this edge */

const userPropertiesMax = 128;
const propertyBytesMax = 16 * 1024;
const messageGroupBytesMax = 64;
const controlCharacters = /[\x00-\x1f\x7f]/;

/**
 * Checks one message of a SendMessage request; throws a BrokerError with the protocol's code.
 * The message goes to the queue the client chose (`queue_id`, 0 when absent): the official
 * clients name that queue in their send receipt, with the offset the broker answers. (The
 * Node client 1.0.8 always chooses queue 0, upstream issue #1093: its messages share one
 * queue per broker group; our client and the Java client spread them.)
 */
export function messageFromV2(message: SendMessageIn, maxBodyBytes: number): { input: MessageInput; kind: MessageKind } {
  const { topic, messageId, tag, keys, messageGroup, body } = message;
  if (message.namespace !== '') throw new BrokerError('BAD_REQUEST', `namespaces are not supported (got ${JSON.stringify(message.namespace)})`);
  const topicProblem = topicNameProblem(topic);
  if (topicProblem !== undefined) throw new BrokerError('ILLEGAL_TOPIC', topicProblem);
  if (messageId.trim() === '' || messageId.length > 128) throw new BrokerError('ILLEGAL_MESSAGE_ID', 'every message needs a message id of 1-128 characters');
  if (body.byteLength === 0) throw new BrokerError('MESSAGE_BODY_EMPTY', 'message body is empty');
  if (body.byteLength > maxBodyBytes) throw new BrokerError('MESSAGE_BODY_TOO_LARGE', `message body of ${body.byteLength} bytes exceeds the limit of ${maxBodyBytes}`);
  if (tag !== undefined) {
    const problem = tagProblem(tag);
    if (problem !== undefined) throw new BrokerError('ILLEGAL_MESSAGE_TAG', problem);
  }
  if (keys.some((key) => key.trim() === '' || controlCharacters.test(key))) throw new BrokerError('ILLEGAL_MESSAGE_KEY', 'message keys must not be blank or contain control characters');
  if (messageGroup !== undefined && (messageGroup.trim() === '' || Buffer.byteLength(messageGroup) >= messageGroupBytesMax || controlCharacters.test(messageGroup))) {
    throw new BrokerError('ILLEGAL_MESSAGE_GROUP', `message group must be 1-63 bytes without control characters`);
  }
  const group = messageGroup ?? '';
  const type = v2MessageTypeName(message.messageType);
  if (type === 'LITE' || type === 'PRIORITY') {
    throw new BrokerError('UNSUPPORTED', `${type} messages are not supported yet`);
  }
  if (type === 'FIFO' && group === '') throw new BrokerError('ILLEGAL_MESSAGE_GROUP', 'a FIFO message needs a message group');
  if (type === 'TRANSACTION' && group !== '') throw new BrokerError('MESSAGE_PROPERTY_CONFLICT_WITH_TYPE', 'a TRANSACTION message cannot have a message group');
  // Delayed and scheduled messages (F8): type DELAY with an absolute delivery timestamp; the broker checks the time itself.
  const deliveryTimeMs = message.deliveryTimestampMs ?? 0;
  if (type === 'DELAY') {
    if (group !== '') throw new BrokerError('MESSAGE_PROPERTY_CONFLICT_WITH_TYPE', 'a DELAY message cannot have a message group: delayed messages are not ordered');
    if (deliveryTimeMs <= 0) throw new BrokerError('ILLEGAL_DELIVERY_TIME', 'a DELAY message needs a delivery timestamp');
  } else if (deliveryTimeMs !== 0) {
    throw new BrokerError('MESSAGE_PROPERTY_CONFLICT_WITH_TYPE', `a ${type} message cannot have a delivery timestamp (send it as type DELAY)`);
  }
  const properties = message.userProperties;
  let propertyBytes = tag === undefined ? 0 : Buffer.byteLength(tag);
  for (const key of keys) propertyBytes += Buffer.byteLength(key);
  for (const [key, value] of properties) {
    if (key === '' || controlCharacters.test(key)) throw new BrokerError('ILLEGAL_MESSAGE_PROPERTY_KEY', `property key ${JSON.stringify(key)} is invalid`);
    propertyBytes += Buffer.byteLength(key) + Buffer.byteLength(value);
  }
  if (properties.size > userPropertiesMax || propertyBytes > propertyBytesMax) {
    throw new BrokerError('MESSAGE_PROPERTIES_TOO_LARGE', `at most ${userPropertiesMax} user properties and ${propertyBytesMax} bytes of properties, tag and keys`);
  }
  const { queueId } = message;
  if (queueId < 0) throw new BrokerError('BAD_REQUEST', `queue id ${queueId} is not a queue`);
  const input: MessageInput = {
    topic, messageId, tag: tag ?? '', keys, messageGroup: group, queueId,
    bornTimestamp: message.bornTimestampMs ?? 0, bornHost: message.bornHost, properties, body,
  };
  if (type === 'DELAY') return { kind: 'DELAY', input: { ...input, deliveryTimeMs } };
  if (type === 'TRANSACTION') return { kind: 'TRANSACTION', input };
  return { kind: group !== '' ? 'FIFO' : 'NORMAL', input };
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
