import type { Entry, LogIndex, NodeId, Term } from '../raft/types.js';

/**
 * What the checker needs to see of a live node (a RaftNode is one). Compaction deletes a
 * prefix covered by a snapshot: `termAt` knows `[firstIndex - 1, lastIndex]`.
 */
export interface CheckedNode {
  readonly id: NodeId;
  readonly firstIndex: LogIndex;
  readonly lastIndex: LogIndex;
  termAt(index: LogIndex): Term | undefined;
}

interface CommittedEntry {
  readonly term: Term;
  readonly key: string;
  /** The lowest leader term seen applying it: it was committed in that term or earlier. */
  commitTerm: Term | undefined;
}

const entryKey = (entry: Entry): string => `${entry.kind}:${Buffer.from(entry.payload).toString('base64')}`;

/**
 * Raft's safety properties, checked as events happen:
 *  - election safety: at most one leader per term;
 *  - state machine safety: every node applies the same entry at each index;
 *  - leader completeness: a leader of term T holds every entry committed in a term < T
 *    (an entry committed in a later term is not required: a stale leader may still win
 *    an old term with votes delivered late);
 *  - log matching: two logs that agree on (index, term) agree on every earlier index;
 *  - commit index never decreases within one incarnation of a node;
 * and at the end, every acknowledged proposal is present in the committed log.
 */
export class SafetyChecker {
  readonly violations: string[] = [];
  private readonly leaderByTerm = new Map<Term, NodeId>();
  private readonly committed = new Map<LogIndex, CommittedEntry>();
  private readonly appliedThrough = new Map<string, LogIndex>();
  private readonly commitSeen = new Map<string, LogIndex>();
  maxCommittedIndex = 0;

  constructor(private readonly trace: (line: string) => void) {}

  private violate(message: string): void {
    if (this.violations.length < 20) this.violations.push(message);
    this.trace(`VIOLATION ${message}`);
  }

  onLeader(node: CheckedNode, term: Term): void {
    const existing = this.leaderByTerm.get(term);
    if (existing !== undefined && existing !== node.id) this.violate(`election safety: ${existing} and ${node.id} both led term ${term}`);
    this.leaderByTerm.set(term, node.id);
    // Entries a snapshot replaced were committed state when it was taken: only the log is compared.
    for (let index = Math.max(1, node.firstIndex - 1); index <= this.maxCommittedIndex; index++) {
      const committed = this.committed.get(index);
      if (committed === undefined || committed.commitTerm === undefined || committed.commitTerm >= term) continue;
      if (node.termAt(index) !== committed.term) {
        this.violate(`leader completeness: ${node.id} leads term ${term} but holds t${node.termAt(index)} at committed index ${index} (t${committed.term})`);
        return;
      }
    }
  }

  /**
   * `incarnation` distinguishes restarts: an in-memory state machine re-applies from 1.
   * `leaderTerm` is the node's term if it applies as leader (it committed these in that
   * term, or learned they were committed earlier).
   */
  onApply(nodeId: NodeId, incarnation: number, entries: readonly Entry[], leaderTerm: Term | undefined): void {
    const slot = `${nodeId}#${incarnation}`;
    let last = this.appliedThrough.get(slot) ?? 0;
    for (const entry of entries) {
      if (entry.index !== last + 1) this.violate(`${nodeId} applied index ${entry.index} after ${last}`);
      last = entry.index;
      const key = entryKey(entry);
      const committed = this.committed.get(entry.index);
      if (committed === undefined) {
        this.committed.set(entry.index, { term: entry.term, key, commitTerm: leaderTerm });
        if (entry.index > this.maxCommittedIndex) this.maxCommittedIndex = entry.index;
      } else if (committed.term !== entry.term || committed.key !== key) {
        this.violate(`state machine safety: ${nodeId} applied t${entry.term} at index ${entry.index}, another node applied t${committed.term}`);
      } else if (leaderTerm !== undefined && (committed.commitTerm === undefined || leaderTerm < committed.commitTerm)) {
        committed.commitTerm = leaderTerm;
      }
    }
    this.appliedThrough.set(slot, last);
  }

  /** A node replaced its state with a snapshot through `index` (`stateIndex`: what the snapshot says it holds). */
  onRestore(nodeId: NodeId, incarnation: number, index: LogIndex, stateIndex: LogIndex): void {
    if (stateIndex !== index) this.violate(`${nodeId} restored a snapshot labelled ${index} holding state through ${stateIndex}`);
    if (index > this.maxCommittedIndex) this.violate(`${nodeId} restored a snapshot through ${index}, beyond anything committed (${this.maxCommittedIndex})`);
    this.appliedThrough.set(`${nodeId}#${incarnation}`, index);
  }

  onCommitIndex(nodeId: NodeId, incarnation: number, commitIndex: LogIndex): void {
    const slot = `${nodeId}#${incarnation}`;
    const previous = this.commitSeen.get(slot) ?? 0;
    if (commitIndex < previous) this.violate(`${nodeId} commit index went from ${previous} to ${commitIndex}`);
    this.commitSeen.set(slot, commitIndex);
  }

  checkLogMatching(nodes: readonly CheckedNode[]): void {
    for (let i = 0; i < nodes.length; i++) {
      for (let j = i + 1; j < nodes.length; j++) this.checkPair(nodes[i] as CheckedNode, nodes[j] as CheckedNode);
    }
  }

  private checkPair(a: CheckedNode, b: CheckedNode): void {
    const low = Math.max(1, a.firstIndex - 1, b.firstIndex - 1);
    let high = Math.min(a.lastIndex, b.lastIndex);
    while (high >= low && a.termAt(high) !== b.termAt(high)) high--;
    for (let index = high - 1; index >= low; index--) {
      if (a.termAt(index) !== b.termAt(index)) {
        this.violate(`log matching: ${a.id} and ${b.id} agree at ${high} but differ at ${index}`);
        return;
      }
    }
  }

  /** An acknowledged proposal must be in the committed log at its index, unchanged. */
  checkAcknowledged(acked: ReadonlyMap<number, { readonly index: LogIndex; readonly term: Term; readonly payload: Uint8Array }>): void {
    for (const [op, ack] of acked) {
      const committed = this.committed.get(ack.index);
      const key = entryKey({ index: ack.index, term: ack.term, kind: 1, payload: ack.payload });
      if (committed === undefined) this.violate(`acknowledged op ${op} at index ${ack.index} was never applied after healing`);
      else if (committed.term !== ack.term || committed.key !== key) this.violate(`acknowledged op ${op} at index ${ack.index} was lost: index holds t${committed.term}`);
    }
  }
}
