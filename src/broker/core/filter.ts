/** Broker-side tag filters (F11): `*` (or empty) matches everything, `a || b` a set of tags. SQL92 is sql-filter.ts; subscription-filter.ts picks one. */
export interface TagFilter {
  /** undefined: every message matches. */
  readonly tags: ReadonlySet<string> | undefined;
}

export const matchAll: TagFilter = { tags: undefined };

export class FilterError extends Error {
  override readonly name = 'FilterError';
  constructor(message: string, readonly unsupported = false) {
    super(message);
  }
}

export function parseTagFilter(type: string, expression: string): TagFilter {
  if (type !== 'TAG' && type !== 'FILTER_TYPE_UNSPECIFIED' && type !== '') throw new FilterError(`unknown filter type ${type}`);
  const text = expression.trim();
  if (text === '' || text === '*') return matchAll;
  const tags = text.split('||').map((tag) => tag.trim());
  if (tags.some((tag) => tag === '' || /[\x00-\x1f\x7f]/.test(tag))) throw new FilterError(`tag expression ${JSON.stringify(expression)} is invalid: use '*' or 'TagA || TagB'`);
  return { tags: new Set(tags) };
}

export function filterMatches(filter: TagFilter, tag: string): boolean {
  return filter.tags === undefined || filter.tags.has(tag);
}

/** The filter as a JSON-safe value for log entries: null means match everything. */
export function filterToJson(filter: TagFilter): string[] | null {
  return filter.tags === undefined ? null : [...filter.tags].sort();
}

export function filterFromJson(tags: readonly string[] | null): TagFilter {
  return tags === null ? matchAll : { tags: new Set(tags) };
}
