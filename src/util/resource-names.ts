/**
 * The topic and consumer group name rules, in one place: the broker refuses a bad name with
 * them and our client (src/client/) checks names with them before any call, so a bad name is
 * answered with what is wrong with it rather than with a routing error.
 */

export const dlqTopicPrefix = '%DLQ%';

/** RocketMQ's charset for topics and groups; `%` only as the system prefix of DLQ topics. */
const nameCharacter = /^[A-Za-z0-9_-]$/;
const nameCharacters = /^[A-Za-z0-9_-]+$/;
export const topicNameLengthMax = 127;
export const groupNameLengthMax = 120;

function nameProblem(kind: string, name: string, lengthMax: number): string | undefined {
  // Our Producer checks every send's topic: a good name costs one regex test, no allocation.
  if (name.length <= lengthMax && nameCharacters.test(name)) return undefined;
  const characters = [...name];
  const bad = characters.find((c) => !nameCharacter.test(c));
  if (bad === undefined && name.length >= 1 && name.length <= lengthMax) return undefined;
  const why = name.length === 0 ? 'it is empty'
    : bad !== undefined ? `it contains ${JSON.stringify(bad)}${/\s/.test(bad) ? ' (white space)' : ''}, which a name may not contain`
      : `it is ${name.length} characters long, over ${lengthMax}`;
  return `${kind} name ${JSON.stringify(name)} is invalid: ${why}; use 1-${lengthMax} of A-Z a-z 0-9 _ -`;
}

export function groupNameProblem(name: string): string | undefined {
  return nameProblem('consumer group', name, groupNameLengthMax);
}

export function topicNameProblem(name: string): string | undefined {
  if (name.startsWith(dlqTopicPrefix) && groupNameProblem(name.slice(dlqTopicPrefix.length)) === undefined) return undefined;
  return nameProblem('topic', name, topicNameLengthMax);
}
