/** The message a consumer sees, converted from the protocol's `Message`. */
import { createHash } from 'node:crypto';

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader objects are untyped at this edge */

export interface ReceivedMessage {
  readonly messageId: string;
  readonly topic: string;
  readonly brokerGroup: string;
  readonly queueId: number;
  readonly offset: number;
  readonly tag: string;
  readonly keys: readonly string[];
  readonly shardingKey: string;
  readonly properties: Readonly<Record<string, string>>;
  readonly body: Buffer;
  readonly bornTimestampMs: number;
  /** For a delayed message, when it became visible (its delivery); else when it was stored. */
  readonly storeTimestampMs: number;
  /** A delayed or scheduled message's delivery time (ms since the epoch); 0 for others. */
  readonly deliveryTimeMs: number;
  /** Pop-style (SimpleConsumer) only. */
  readonly receiptHandle: string;
  readonly deliveryAttempt: number;
  /** False when the body does not match the broker's MD5 digest. */
  readonly intact: boolean;
}

/**
 * What a consumer subscribes to: a tag expression (`'*'`, `'TagA || TagB'`), or a SQL92
 * expression over user properties and `TAGS` (`{ sql: "region = 'eu' AND amount > 100" }`),
 * evaluated by the broker so that messages it rejects never cross the network.
 */
export type FilterExpression = string | { readonly sql: string };

export function filterExpressionToV2(filter: FilterExpression): { type: 'TAG' | 'SQL'; expression: string } {
  return typeof filter === 'string' ? { type: 'TAG', expression: filter } : { type: 'SQL', expression: filter.sql };
}

const ms = (t: any): number => (t === null || t === undefined ? 0 : Number(t.seconds ?? 0) * 1000 + Math.floor((t.nanos ?? 0) / 1e6));

export function fromV2(message: any, brokerGroup: string): ReceivedMessage {
  const system = message.systemProperties ?? {};
  const body: Buffer = message.body ?? Buffer.alloc(0);
  const digest = system.bodyDigest;
  const intact = digest?.type !== 'MD5' || createHash('md5').update(body).digest('hex').toUpperCase() === digest.checksum;
  return {
    messageId: String(system.messageId ?? ''), topic: String(message.topic?.name ?? ''), brokerGroup,
    queueId: Number(system.queueId ?? 0), offset: Number(system.queueOffset ?? 0), tag: system.tag ?? '', keys: system.keys ?? [],
    shardingKey: system.messageGroup ?? '', properties: message.userProperties ?? {}, body,
    bornTimestampMs: ms(system.bornTimestamp), storeTimestampMs: ms(system.storeTimestamp), deliveryTimeMs: ms(system.deliveryTimestamp),
    receiptHandle: system.receiptHandle ?? '', deliveryAttempt: Number(system.deliveryAttempt ?? 0), intact,
  };
}
