/** The plain model the message index implementations are checked against, and a paging helper. */
import { expect } from 'vitest';
import type { IndexHit, IndexQuery, MessageIndex } from '../../src/broker/core/message-index.js';

export interface Added { readonly key: number; readonly kind: number; readonly logIndex: number; readonly position: number; readonly timeMs: number }

/** Every entry ever added, in order; a query filters and reverses (newest first = reverse add order). */
export class IndexReference {
  entries: Added[] = [];
  releasedBelow = 0;
  find(key: number, fromMs: number, toMs: number): IndexHit[] {
    return this.entries
      .filter((e) => e.key === key && e.timeMs >= fromMs && e.timeMs <= toMs && e.logIndex >= this.releasedBelow)
      .reverse()
      .map(({ logIndex, position, kind, timeMs }) => ({ logIndex, position, kind, timeMs }));
  }
}

/** Every hit of a query, paging with its `limit` and `readsMax` through `resume`. */
export function findAll(index: MessageIndex, query: IndexQuery): IndexHit[] {
  const hits: IndexHit[] = [];
  let result = index.find(query);
  for (let calls = 0; ; calls++) {
    expect(result.hits.length).toBeLessThanOrEqual(query.limit);
    hits.push(...result.hits);
    if (result.resume === undefined) return hits;
    expect(calls).toBeLessThan(10_000);
    result = index.find({ ...query, resume: result.resume });
  }
}
