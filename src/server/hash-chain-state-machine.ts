import { createHash } from 'node:crypto';
import type { StateMachine } from '../raft/node/ports.js';
import type { Entry, LogIndex } from '../raft/types.js';

/**
 * The state machine of a bare Raft group (before the broker layer): a hash chain over every
 * applied entry, `hash = sha256(hash ‖ index ‖ term ‖ kind ‖ payload)`. Equal applied index
 * ⇒ equal hash on every healthy node, which makes divergence visible in `status`. It keeps
 * nothing on disk, so it re-applies the log from the start after a restart.
 */
export class HashChainStateMachine implements StateMachine {
  private applied: LogIndex = 0;
  private hash: Buffer = Buffer.alloc(32);
  private readonly header = Buffer.alloc(17);

  appliedIndex(): LogIndex {
    return 0;
  }

  get stateHash(): string {
    return this.hash.toString('hex');
  }

  get lastApplied(): LogIndex {
    return this.applied;
  }

  async apply(entries: readonly Entry[]): Promise<void> {
    for (const entry of entries) {
      if (entry.index !== this.applied + 1) throw new Error(`hash chain: applying ${entry.index} after ${this.applied}`);
      this.header.writeUIntBE(entry.index, 0, 6);
      this.header.writeUIntBE(entry.term, 8, 6);
      this.header.writeUInt8(entry.kind, 16);
      this.hash = createHash('sha256').update(this.hash).update(this.header).update(entry.payload).digest();
      this.applied = entry.index;
    }
  }
}
