/**
 * Names checked before any call, with the broker's own rules: a bad topic would otherwise
 * be answered by routing ("no broker group hosts topic ..."), which hides the real cause.
 */
import { groupNameProblem, topicNameProblem } from '../util/resource-names.js';
import { MQClientError } from './mq-connection.js';

/** Throws ILLEGAL_TOPIC (definite: nothing was sent) naming what is wrong with `name`. */
export function checkTopicName(name: string): void {
  const problem = topicNameProblem(name);
  if (problem !== undefined) throw new MQClientError('ILLEGAL_TOPIC', problem, true);
}

/** Throws ILLEGAL_CONSUMER_GROUP (definite) naming what is wrong with `name`. */
export function checkGroupName(name: string): void {
  const problem = groupNameProblem(name);
  if (problem !== undefined) throw new MQClientError('ILLEGAL_CONSUMER_GROUP', problem, true);
}
