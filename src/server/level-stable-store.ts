import { Level } from 'level';
import type { StableStore } from '../raft/node/ports.js';
import type { HardState } from '../raft/types.js';

/** Key prefixes are versioned; never reuse one for a different meaning. */
const hardStateKey = 'raft/v1/hard-state';

/**
 * Term and vote in LevelDB, written with `sync: true` so a vote is durable before its answer
 * leaves the node. Failures propagate (the node stops); they are never swallowed.
 */
export class LevelStableStore implements StableStore {
  private constructor(private readonly db: Level<string, string>) {}

  static async open(dir: string): Promise<LevelStableStore> {
    const db = new Level<string, string>(dir, { valueEncoding: 'utf8' });
    await db.open();
    return new LevelStableStore(db);
  }

  async load(): Promise<HardState | undefined> {
    const raw = await this.db.get(hardStateKey);
    if (raw === undefined) return undefined;
    const parsed = JSON.parse(raw) as { term: number; votedFor: string | null; syncedThrough?: number };
    if (!Number.isSafeInteger(parsed.term) || parsed.term < 0) throw new Error(`stable store holds an invalid term: ${raw}`);
    if (parsed.syncedThrough !== undefined && (!Number.isSafeInteger(parsed.syncedThrough) || parsed.syncedThrough < 0)) throw new Error(`stable store holds an invalid synced-through index: ${raw}`);
    return { term: parsed.term, votedFor: parsed.votedFor ?? undefined, ...(parsed.syncedThrough === undefined ? {} : { syncedThrough: parsed.syncedThrough }) };
  }

  async save(state: HardState): Promise<void> {
    await this.db.put(hardStateKey, JSON.stringify({ term: state.term, votedFor: state.votedFor ?? null, syncedThrough: state.syncedThrough }), { sync: true });
  }

  close(): Promise<void> {
    return this.db.close();
  }
}
