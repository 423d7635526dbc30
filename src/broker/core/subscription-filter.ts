/**
 * What a subscription selects (F11): a tag expression, or a SQL92 expression over the
 * message's user properties and its tag (`TAGS`). Tag filters are applied where messages
 * are handed out (the consume queue holds each message's tag); SQL filters need the
 * properties, which only the stored message has, so the leader evaluates them on the
 * messages it read before any of them leaves the broker.
 */
import { matchAll, parseTagFilter, type TagFilter } from './filter.js';
import { compileSqlFilter, type SqlFilter } from './sql-filter.js';

export interface SubscriptionFilter {
  /** Applied by the consume-queue read itself; `matchAll` for a SQL subscription. */
  readonly tags: TagFilter;
  readonly sql: SqlFilter | undefined;
}

export const matchEverything: SubscriptionFilter = { tags: matchAll, sql: undefined };

/** From the client protocol's `filter_expression`; throws FilterError (SqlFilterError naming the column) when bad. */
export function parseSubscriptionFilter(type: string, expression: string): SubscriptionFilter {
  if (type === 'SQL') return { tags: matchAll, sql: compileSqlFilter(expression) };
  return { tags: parseTagFilter(type, expression), sql: undefined };
}

interface FilteredMessage {
  readonly tag: string;
  readonly properties: ReadonlyMap<string, string> | Readonly<Record<string, string>>;
}

/** The message `lookup` reads; module scratch, so matching allocates nothing per message. */
let current: FilteredMessage = { tag: '', properties: new Map() };
const lookup = (name: string): string | undefined => {
  if (name === 'TAGS') return current.tag === '' ? undefined : current.tag;
  const { properties } = current;
  if (properties instanceof Map) return properties.get(name);
  return Object.hasOwn(properties, name) ? (properties as Readonly<Record<string, string>>)[name] : undefined;
};

/** The SQL part only (tags were applied by the read): true when there is none or it holds. */
export function sqlMatches(filter: SubscriptionFilter, message: FilteredMessage): boolean {
  if (filter.sql === undefined) return true;
  current = message;
  return filter.sql.matches(lookup);
}
