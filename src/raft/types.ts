/**
 * Vocabulary shared by the Raft core, the node driver and the commitlog.
 *
 * `LogIndex` is a Raft log position (1-based, 0 = before the first entry); never a byte
 * position or a queue offset. `Term` is a Raft term. `NodeId` is a member id that is never
 * reused (not an address).
 */
export type LogIndex = number;
export type Term = number;
export type NodeId = string;

/** Entry kinds are an append-only enum stored on disk: never renumber or reuse a value. */
export const EntryKind = {
  /** Application payload (the broker's commands, or opaque bytes for a bare group). */
  normal: 1,
  /** Appended by every new leader so it can commit entries of earlier terms (Raft §5.4.2). */
  noop: 2,
  /** A membership configuration: the full member list after a single-server change. */
  config: 3,
} as const;
export type EntryKind = (typeof EntryKind)[keyof typeof EntryKind];

export function isEntryKind(value: number): value is EntryKind {
  return value === EntryKind.normal || value === EntryKind.noop || value === EntryKind.config;
}

export interface Entry {
  readonly index: LogIndex;
  readonly term: Term;
  readonly kind: EntryKind;
  readonly payload: Uint8Array;
}

/** Durable per-node state; written with sync before any vote or append answer leaves. */
export interface HardState {
  readonly term: Term;
  readonly votedFor: NodeId | undefined;
  /**
   * How far the log was durable when last recorded (written by the node after each log sync,
   * never by the core). A log found shorter than this at start-up lost synced entries.
   */
  readonly syncedThrough?: LogIndex;
}

export interface Member {
  readonly id: NodeId;
  readonly address: string;
}

/** What a snapshot covers: everything through `index`, whose entry has `term`. */
export interface SnapshotMeta {
  readonly index: LogIndex;
  readonly term: Term;
  /** The configuration in force at `index`, and the index of its config entry (0: bootstrap). */
  readonly members: readonly Member[];
  readonly configIndex: LogIndex;
}

/** Why a vote (or pre-vote) was refused; names the exact branch taken. */
export type VoteRejectReason =
  | 'stale-term'
  | 'already-voted'
  | 'log-behind'
  | 'leader-alive'
  | 'not-a-member'
  | 'lost-log-tail';

/** Why an append was refused. */
export type AppendRejectReason = 'stale-term' | 'log-mismatch' | 'log-missing' | 'compacted';

export interface VoteRequest {
  readonly type: 'vote-request';
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: Term;
  readonly preVote: boolean;
  /** Set by a campaign started on a leader's TimeoutNow: peers ignore their leader lease. */
  readonly transfer: boolean;
  readonly lastIndex: LogIndex;
  readonly lastTerm: Term;
}

export interface VoteResponse {
  readonly type: 'vote-response';
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: Term;
  readonly preVote: boolean;
  readonly granted: boolean;
  readonly reason: VoteRejectReason | undefined;
}

/**
 * Leader → follower. The core names the range `[prevIndex + 1, prevIndex + entryCount]`;
 * the node fills `entries` from the log store before sending, so payloads never pass
 * through the core.
 */
export interface AppendRequest {
  readonly type: 'append-request';
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: Term;
  readonly prevIndex: LogIndex;
  readonly prevTerm: Term;
  readonly entryCount: number;
  readonly commitIndex: LogIndex;
  entries: readonly Entry[];
}

export interface AppendResponse {
  readonly type: 'append-response';
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: Term;
  readonly success: boolean;
  /** On success: the highest index known to match the leader's log. */
  readonly matchIndex: LogIndex;
  readonly reason: AppendRejectReason | undefined;
  /** On rejection: fast back-off hints (first index of the conflicting term, or log end + 1). */
  readonly conflictIndex: LogIndex;
  readonly conflictTerm: Term;
  /** The follower's last index, so the leader can skip probing. */
  readonly lastIndex: LogIndex;
  /** On rejection: the prevIndex of the refused request, so stale refusals can be ignored. */
  readonly rejectedPrevIndex: LogIndex;
}

/** Leadership transfer: the target starts an election at once, skipping pre-vote. */
export interface TimeoutNow {
  readonly type: 'timeout-now';
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: Term;
}

/**
 * Leader → follower whose next entry the leader no longer holds: "install my snapshot". The
 * node streams the snapshot file in checksummed chunks and hands this message to the
 * follower's core only once the whole file is durable there; the answer is an
 * append-response (success, matchIndex = snapshot index).
 */
export interface InstallSnapshot {
  readonly type: 'install-snapshot';
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: Term;
  readonly snapshot: SnapshotMeta;
}

export type RaftMessage = VoteRequest | VoteResponse | AppendRequest | AppendResponse | TimeoutNow | InstallSnapshot;

/** One line, stable and readable, for logs, traces and test transcripts. */
export function describeMessage(m: RaftMessage): string {
  switch (m.type) {
    case 'vote-request':
      return `${m.from}->${m.to} ${m.preVote ? 'PreVote' : 'Vote'} t${m.term} last=${m.lastIndex}/t${m.lastTerm}${m.transfer ? ' transfer' : ''}`;
    case 'vote-response':
      return `${m.from}->${m.to} ${m.preVote ? 'PreVoteResp' : 'VoteResp'} t${m.term} ${m.granted ? 'granted' : `rejected(${m.reason})`}`;
    case 'append-request':
      return `${m.from}->${m.to} App t${m.term} prev=${m.prevIndex}/t${m.prevTerm} n=${m.entryCount} commit=${m.commitIndex}`;
    case 'append-response':
      return `${m.from}->${m.to} AppResp t${m.term} ${m.success ? `ok match=${m.matchIndex}` : `rejected(${m.reason}) hint=${m.conflictIndex}/t${m.conflictTerm}`}`;
    case 'timeout-now':
      return `${m.from}->${m.to} TimeoutNow t${m.term}`;
    case 'install-snapshot':
      return `${m.from}->${m.to} InstallSnapshot t${m.term} snap=${m.snapshot.index}/t${m.snapshot.term}`;
  }
}
