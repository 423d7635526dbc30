/** Commander parsers for topic and group names: a bad name is refused before any connection, with what is wrong with it. */
import { InvalidArgumentError } from 'commander';
import { groupNameProblem, topicNameProblem } from '../util/resource-names.js';

export function topicName(value: string): string {
  const problem = topicNameProblem(value);
  if (problem !== undefined) throw new InvalidArgumentError(problem);
  return value;
}

export function groupName(value: string): string {
  const problem = groupNameProblem(value);
  if (problem !== undefined) throw new InvalidArgumentError(problem);
  return value;
}
