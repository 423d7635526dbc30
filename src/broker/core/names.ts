/** Names, limits and defaults shared by the broker's apply code and its services. */

import { dlqTopicPrefix, groupNameProblem, topicNameProblem } from '../../util/resource-names.js';

export { dlqTopicPrefix, groupNameProblem, topicNameProblem };
export const dlqTopicOf = (group: string): string => `${dlqTopicPrefix}${group}`;

/** The kind of one message: FIFO messages carry a message group (sharding key), DELAY ones a delivery time, TRANSACTION ones are half messages until committed. */
export type MessageKind = 'NORMAL' | 'FIFO' | 'DELAY' | 'TRANSACTION';
export const messageKinds: readonly MessageKind[] = ['NORMAL', 'FIFO', 'DELAY', 'TRANSACTION'];
/** What a topic accepts; MIXED (topics created on first use) takes every kind. */
export type TopicType = MessageKind | 'MIXED';
export const topicTypes: readonly TopicType[] = ['NORMAL', 'FIFO', 'DELAY', 'TRANSACTION', 'MIXED'];

export function topicAccepts(type: TopicType, kind: MessageKind): boolean {
  return type === 'MIXED' || type === kind;
}

/** The message types a route advertises for a topic (the official producer refuses to send any other type). */
export function acceptedMessageKinds(type: TopicType): readonly MessageKind[] {
  return type === 'MIXED' ? messageKinds : [type];
}

/** Queue permissions as in RocketMQ's PermName: 4 = read, 2 = write. */
export const permRead = 4;
export const permWrite = 2;
export const permReadWrite = permRead | permWrite;

export interface TopicConfig {
  readonly name: string;
  readonly readQueues: number;
  readonly writeQueues: number;
  readonly perm: number;
  /** NORMAL accepts normal messages; FIFO messages with a message group; DELAY messages with a delivery time; MIXED all three. */
  readonly messageType: TopicType;
}

export interface GroupConfig {
  readonly name: string;
  /** Deliveries of one message before it moves to %DLQ%<group> (RocketMQ: 16 retries + 1). */
  readonly maxDeliveryAttempts: number;
  /** FIFO groups never hand out a later message of a queue while an earlier one is in flight. */
  readonly fifo: boolean;
  /**
   * Retry back-off (F10): how long a message a push consumer failed stays invisible, by
   * attempt (entry i after the failure of attempt i + 1; the last entry repeats). Absent:
   * RocketMQ's levels, `defaultRetryBackoffMs`.
   */
  readonly retryBackoffMs?: readonly number[];
}

/** RocketMQ's consumer retry levels (delay levels 3-18): 10 s, 30 s, 1 m, 2 m … 10 m, 20 m, 30 m, 1 h, 2 h. */
export const defaultRetryBackoffMs: readonly number[] = [10, 30, 60, 120, 180, 240, 300, 360, 420, 480, 540, 600, 1_200, 1_800, 3_600, 7_200].map((s) => s * 1_000);

/** The back-off before redelivering a message whose attempt `attempt` (1-based) failed. */
export function retryBackoffMs(config: GroupConfig, attempt: number): number {
  const levels = config.retryBackoffMs ?? defaultRetryBackoffMs;
  return levels[Math.min(Math.max(attempt, 1), levels.length) - 1] ?? 0;
}

export const defaultQueueCount = 8;
export const defaultMaxDeliveryAttempts = 17;
export const queueCountMax = 1024;

export function topicConfigProblem(config: TopicConfig): string | undefined {
  const nameProblem = topicNameProblem(config.name);
  if (nameProblem !== undefined) return nameProblem;
  for (const [field, value] of [['readQueues', config.readQueues], ['writeQueues', config.writeQueues]] as const) {
    if (!Number.isInteger(value) || value < 1 || value > queueCountMax) return `${field} must be an integer in 1..${queueCountMax}, not ${value}`;
  }
  if (![0, permRead, permWrite, permReadWrite].includes(config.perm)) return `perm must be 0, 2 (write), 4 (read) or 6 (read+write), not ${config.perm}`;
  if (!topicTypes.includes(config.messageType)) return `message type must be one of ${topicTypes.join(', ')}, not ${String(config.messageType)}`;
  return undefined;
}

export function groupConfigProblem(config: GroupConfig): string | undefined {
  const nameProblem = groupNameProblem(config.name);
  if (nameProblem !== undefined) return nameProblem;
  if (!Number.isInteger(config.maxDeliveryAttempts) || config.maxDeliveryAttempts < 1 || config.maxDeliveryAttempts > 1000) {
    return `maxDeliveryAttempts must be an integer in 1..1000, not ${config.maxDeliveryAttempts}`;
  }
  const levels = config.retryBackoffMs;
  if (levels !== undefined && (!Array.isArray(levels) || levels.length < 1 || levels.length > 64 || !levels.every((ms) => Number.isSafeInteger(ms) && ms >= 0 && ms <= 12 * 3_600_000))) {
    return `retry back-off must be 1 to 64 whole numbers of milliseconds, each at most 12 h, not ${JSON.stringify(levels)}`;
  }
  return undefined;
}

export const defaultTopicConfig = (name: string, messageType: TopicType = 'NORMAL'): TopicConfig => ({
  name, readQueues: defaultQueueCount, writeQueues: defaultQueueCount, perm: permReadWrite, messageType,
});

export const defaultGroupConfig = (name: string): GroupConfig => ({ name, maxDeliveryAttempts: defaultMaxDeliveryAttempts, fifo: false });

/** Tag checks as Apache's proxy does them: not blank, no `|`, no control characters. */
export function tagProblem(tag: string): string | undefined {
  if (tag.trim() === '' || tag.includes('|') || /[\x00-\x1f\x7f]/.test(tag)) return `tag ${JSON.stringify(tag)} is invalid: not blank, no '|', no control characters`;
  return undefined;
}
