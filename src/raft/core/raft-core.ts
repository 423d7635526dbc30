import { assert } from '../../util/assert.js';
import { decodeMembership, encodeMembership, type ConfigAt } from '../membership.js';
import { TermRuns } from '../term-runs.js';
import {
  EntryKind, type AppendRequest, type AppendResponse, type Entry, type HardState, type InstallSnapshot,
  type LogIndex, type Member, type NodeId, type RaftMessage, type SnapshotMeta, type Term, type TimeoutNow,
  type VoteRequest, type VoteResponse,
} from '../types.js';
import { becomeProbe, becomeReplicate, becomeSnapshot, newProgress, type Progress } from './progress.js';

/**
 * The Raft protocol as a pure, synchronous state machine (etcd's RawNode shape): no I/O, no
 * clock, no randomness of its own. Time arrives as `tick()`, messages through `step()`,
 * proposals through `propose()`; the work to do comes out of `ready()` and is acknowledged
 * with `advance()`.
 *
 * Roles and transitions:
 *   follower --election timeout--> pre-candidate --quorum of pre-votes--> candidate
 *   candidate --quorum of votes--> leader;  any role --higher term--> follower
 *   leader --check-quorum fails / removed from config--> follower
 *   follower --TimeoutNow--> candidate (leadership transfer, skipping pre-vote)
 *
 * Contract with the driver: between `ready()` and `advance()` nothing else is called. The
 * driver must make `entries` (after `truncateFrom`) and `hardState` durable before sending
 * any of `messages`, and may apply entries up to `commitIndex` only after that.
 */

export type Role = 'follower' | 'pre-candidate' | 'candidate' | 'leader';

export interface RandomSource {
  /** Uniform integer in [0, maxExclusive). */
  nextInt(maxExclusive: number): number;
}

/** Switches that make the protocol unsafe on purpose, to prove the checkers catch it. */
export interface UnsafeSwitches {
  /** Count older-term entries toward commit (the Raft paper's Figure 8). */
  readonly commitOlderTerms?: boolean;
  /** Grant votes without checking that the candidate's log is up to date. */
  readonly voteWithoutLogCheck?: boolean;
  /** Commit (and so acknowledge) what the leader alone holds: ack before quorum. */
  readonly commitWithoutQuorum?: boolean;
}

export interface RaftCoreConfig {
  readonly id: NodeId;
  /** Base election timeout; each wait is drawn from [base, 2 × base). */
  readonly electionTimeoutTicks: number;
  readonly heartbeatIntervalTicks: number;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  readonly appendEntriesMax: number;
  readonly appendBytesMax: number;
  /** Append messages in flight per follower in the replicate state (pipelining). */
  readonly inflightAppendsMax: number;
  /** Proposals are refused once the leader holds this many uncommitted entries. */
  readonly uncommittedEntriesMax: number;
  readonly unsafe?: UnsafeSwitches;
}

export interface CoreInitialState {
  readonly hardState: HardState;
  /** The durable log's shape: first index, term before it, and term runs. */
  readonly log: { readonly firstIndex: LogIndex; readonly prevTerm: Term; readonly lastIndex: LogIndex; readonly runs: ReadonlyArray<readonly [LogIndex, Term]> };
  /** Configurations in the log (and the bootstrap one at index 0), oldest first. */
  readonly configs: readonly ConfigAt[];
  /** What the state machine has applied already; entries up to here are committed. */
  readonly appliedIndex: LogIndex;
  /** The newest local snapshot (the state machine was restored from it); it covers every entry before the log's first. */
  readonly snapshot?: SnapshotMeta | undefined;
  /**
   * Set when the log lost entries that were durable (and so possibly acknowledged) before a
   * restart, with the term the node had then. Such a node may have acknowledged entries it no
   * longer holds, so its vote could elect a leader without them: it grants no votes and never
   * campaigns until its log again holds every entry it may have acknowledged: a leader has
   * committed, into this log, either everything up to the old synced-through mark, or an entry
   * of a term after the one the node had (such a leader holds every earlier committed entry).
   */
  readonly lostLogTail?: { readonly term: Term; readonly syncedThrough: LogIndex } | undefined;
}

export type ProposeOutcome =
  | { readonly kind: 'appended'; readonly firstIndex: LogIndex; readonly lastIndex: LogIndex; readonly term: Term }
  | { readonly kind: 'not-leader'; readonly leaderHint: NodeId | undefined }
  | { readonly kind: 'dropped'; readonly reason: 'leadership-transfer' | 'uncommitted-entries-max' | 'config-change-pending' | 'leader-not-ready' | 'not-a-member' | 'already-a-member' };

export interface SoftState {
  readonly role: Role;
  readonly term: Term;
  readonly leaderId: NodeId | undefined;
}

export interface Ready {
  readonly hardState: HardState | undefined;
  /**
   * A snapshot received from the leader, already durable in the snapshot store: first of all,
   * reset the log to it (discarding every entry) and restore the state machine from it.
   */
  readonly snapshot: SnapshotMeta | undefined;
  /** Remove every durable entry `>= truncateFrom` before appending `entries`. */
  readonly truncateFrom: LogIndex | undefined;
  readonly entries: readonly Entry[];
  readonly messages: readonly RaftMessage[];
  /** Apply committed entries up to here (after persisting this ready). */
  readonly commitIndex: LogIndex;
  /** Set when the role, term or leader changed since the last ready. */
  readonly softState: SoftState | undefined;
}

/** Sizes of durable entries, answered synchronously from the log store's in-memory index. */
export type PayloadBytesOf = (index: LogIndex) => number;

export class RaftCore {
  readonly id: NodeId;
  private termValue: Term;
  private votedFor: NodeId | undefined;
  private roleValue: Role = 'follower';
  private leader: NodeId | undefined;
  private commit: LogIndex;
  private applied: LogIndex;
  private readonly log: TermRuns;
  /** Last index handed to the driver for persistence and acknowledged by advance(). */
  private stableLastIndex: LogIndex;
  /** unstable[i] has index unstableFrom + i; not yet handed to the driver. */
  private unstable: Entry[] = [];
  private unstableFrom: LogIndex;
  private pendingTruncateFrom: LogIndex | undefined;
  private configs: ConfigAt[];
  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  private readonly votes = new Map<NodeId, boolean>();
  private readonly progress = new Map<NodeId, Progress>();
  private transferTarget: NodeId | undefined;
  private pendingConfigIndex: LogIndex = 0;
  private leaderFirstIndex: LogIndex = 0;
  private outbox: RaftMessage[] = [];
  private hardStateDirty = false;
  /** The soft state last handed out in a ready; a change from it is reported once. */
  private reportedSoftState: SoftState | undefined;
  private readyOutstanding = false;
  private lostLogTail: { readonly term: Term; readonly syncedThrough: LogIndex } | undefined;
  /** The newest snapshot this node holds: what a follower behind the log's first index is sent. */
  private snapshotMeta: SnapshotMeta | undefined;
  /** A leader's snapshot to install in the next ready. */
  private pendingInstall: SnapshotMeta | undefined;

  constructor(
    private readonly config: RaftCoreConfig,
    initial: CoreInitialState,
    private readonly random: RandomSource,
    private readonly payloadBytesOf: PayloadBytesOf,
  ) {
    assert(config.electionTimeoutTicks > config.heartbeatIntervalTicks, 'election timeout must exceed the heartbeat interval');
    assert(config.heartbeatIntervalTicks >= 1 && config.inflightAppendsMax >= 1 && config.appendEntriesMax >= 1, 'bad raft config');
    this.id = config.id;
    this.termValue = initial.hardState.term;
    this.votedFor = initial.hardState.votedFor;
    this.log = TermRuns.fromRuns(initial.log.firstIndex, initial.log.prevTerm, initial.log.lastIndex, initial.log.runs);
    assert(initial.configs.length > 0, 'a core needs a bootstrap configuration');
    this.configs = [...initial.configs];
    assert(initial.appliedIndex <= this.log.lastIndex, `applied index ${initial.appliedIndex} beyond the log end ${this.log.lastIndex}`);
    this.snapshotMeta = initial.snapshot;
    assert(this.log.firstIndex === 1 || (initial.snapshot !== undefined && initial.snapshot.index >= this.log.firstIndex - 1),
      `the log starts at ${this.log.firstIndex} but no snapshot covers the entries before it`);
    this.commit = Math.max(initial.appliedIndex, this.log.firstIndex - 1);
    this.applied = this.commit;
    this.stableLastIndex = this.log.lastIndex;
    this.unstableFrom = this.log.lastIndex + 1;
    this.lostLogTail = initial.lostLogTail;
    this.resetRandomizedElectionTimeout();
  }

  /**
   * While this node abstains from elections after losing synced log entries: the old
   * synced-through mark it waits for a leader to commit into its log (or an entry of a later
   * term); undefined otherwise.
   */
  get abstainingUntil(): LogIndex | undefined { return this.lostLogTail?.syncedThrough; }

  get term(): Term { return this.termValue; }
  get role(): Role { return this.roleValue; }
  get leaderId(): NodeId | undefined { return this.leader; }
  get commitIndex(): LogIndex { return this.commit; }
  get lastIndex(): LogIndex { return this.log.lastIndex; }
  termAt(index: LogIndex): Term | undefined { return this.log.termAt(index); }
  get members(): readonly Member[] { return (this.configs[this.configs.length - 1] as ConfigAt).members; }
  isMember(id: NodeId): boolean { return this.members.some((m) => m.id === id); }
  /** Per-follower replication state, for status pages and tests. */
  followerMatch(id: NodeId): LogIndex | undefined { return this.progress.get(id)?.match; }

  /** The newest snapshot this node holds, if any. */
  get snapshot(): SnapshotMeta | undefined { return this.snapshotMeta; }
  get firstIndex(): LogIndex { return this.log.firstIndex; }

  /** The configuration in force at `index` (which must not be before the log's first configuration). */
  configAt(index: LogIndex): { readonly members: readonly Member[]; readonly configIndex: LogIndex } {
    let found: ConfigAt | undefined;
    for (const config of this.configs) if (config.index <= index) found = config;
    assert(found !== undefined, `no configuration known at ${index}`);
    return { members: found.members, configIndex: found.index };
  }

  /** The node wrote a snapshot of its state machine (at an applied index). */
  snapshotTaken(meta: SnapshotMeta): void {
    this.assertNoReadyOutstanding();
    // A snapshot that finished writing after a newer one was installed is simply older.
    if (this.snapshotMeta !== undefined && meta.index <= this.snapshotMeta.index) return;
    assert(meta.index <= this.applied, `snapshot at ${meta.index} beyond applied ${this.applied}`);
    assert(this.log.termAt(meta.index) === meta.term, `snapshot at ${meta.index}/t${meta.term} does not match the log`);
    this.snapshotMeta = meta;
  }

  /** The log store deleted every entry before `firstIndex` (covered by the snapshot). */
  logCompacted(firstIndex: LogIndex): void {
    this.assertNoReadyOutstanding();
    const through = firstIndex - 1;
    if (through < this.log.firstIndex) return;
    assert(this.snapshotMeta !== undefined && through <= this.snapshotMeta.index, `compacting through ${through} beyond the snapshot`);
    assert(through <= this.applied && through < this.unstableFrom, `compacting through ${through}: not applied or not durable`);
    this.log.compactThrough(through);
    // The configuration in force at the new start stays; older ones are history.
    let keepFrom = 0;
    for (let i = 0; i < this.configs.length; i++) if ((this.configs[i] as ConfigAt).index <= through) keepFrom = i;
    this.configs = this.configs.slice(keepFrom);
  }

  /** The node's outcome of streaming a snapshot to `peer`: on failure, probe again (which may send it again). */
  reportSnapshot(peer: NodeId, ok: boolean): void {
    this.assertNoReadyOutstanding();
    const progress = this.progress.get(peer);
    if (this.roleValue !== 'leader' || progress === undefined || progress.state !== 'snapshot') return;
    becomeProbe(progress, ok ? Math.max(progress.match, progress.pendingSnapshot) + 1 : progress.match + 1);
    // A failed stream (the peer may be down) is retried after an election timeout, not at every heartbeat.
    if (!ok) progress.snapshotBackoffTicks = this.config.electionTimeoutTicks;
    if (ok) this.sendAppend(peer, false);
  }

  /** Advances logical time by one tick. */
  tick(): void {
    this.assertNoReadyOutstanding();
    if (this.roleValue === 'leader') this.tickLeader();
    else this.tickElection();
  }

  /** Appends normal entries if this node leads; otherwise says why not. */
  propose(payloads: readonly Uint8Array[]): ProposeOutcome {
    this.assertNoReadyOutstanding();
    assert(payloads.length > 0, 'propose needs at least one payload');
    const refusal = this.proposalRefusal(payloads.length);
    if (refusal !== undefined) return refusal;
    const firstIndex = this.log.lastIndex + 1;
    for (const payload of payloads) this.appendAsLeader(EntryKind.normal, payload);
    this.broadcastAppend();
    return { kind: 'appended', firstIndex, lastIndex: this.log.lastIndex, term: this.termValue };
  }

  /** Single-server membership change: add or remove one member. */
  proposeMembershipChange(change: { readonly add: Member } | { readonly remove: NodeId }): ProposeOutcome {
    this.assertNoReadyOutstanding();
    const refusal = this.proposalRefusal(1);
    if (refusal !== undefined) return refusal;
    // One change at a time, and only after this leader committed an entry of its own term
    // (the fix to the single-server change bug in Ongaro's thesis errata).
    if (this.pendingConfigIndex > this.commit) return { kind: 'dropped', reason: 'config-change-pending' };
    if (this.commit < this.leaderFirstIndex) return { kind: 'dropped', reason: 'leader-not-ready' };
    let members: Member[];
    if ('add' in change) {
      if (this.isMember(change.add.id)) return { kind: 'dropped', reason: 'already-a-member' };
      members = [...this.members, change.add];
    } else {
      if (!this.isMember(change.remove)) return { kind: 'dropped', reason: 'not-a-member' };
      members = this.members.filter((m) => m.id !== change.remove);
      if (members.length === 0) return { kind: 'dropped', reason: 'not-a-member' };
    }
    const index = this.appendAsLeader(EntryKind.config, encodeMembership({ members }));
    this.pendingConfigIndex = index;
    this.broadcastAppend();
    return { kind: 'appended', firstIndex: index, lastIndex: index, term: this.termValue };
  }

  /** Hands leadership to `target` once its log is caught up (TimeoutNow). */
  transferLeadership(target: NodeId): ProposeOutcome {
    this.assertNoReadyOutstanding();
    if (this.roleValue !== 'leader') return { kind: 'not-leader', leaderHint: this.leader };
    if (!this.isMember(target) || target === this.id) return { kind: 'dropped', reason: 'not-a-member' };
    this.transferTarget = target;
    this.electionElapsed = 0;
    const progress = this.progress.get(target) as Progress;
    if (progress.match === this.log.lastIndex) this.send({ type: 'timeout-now', from: this.id, to: target, term: this.termValue });
    else this.sendAppend(target, false);
    return { kind: 'appended', firstIndex: this.log.lastIndex, lastIndex: this.log.lastIndex, term: this.termValue };
  }

  /** Feeds one inbound message. Stale-term messages are answered or dropped, never errors. */
  step(message: RaftMessage): void {
    this.assertNoReadyOutstanding();
    assert(message.to === this.id, `message for ${message.to} delivered to ${this.id}`);
    if (message.term > this.termValue) {
      if (!this.acceptHigherTerm(message)) return;
    } else if (message.term < this.termValue) {
      this.answerStaleTerm(message);
      return;
    }
    switch (message.type) {
      case 'vote-request': this.handleVoteRequest(message); break;
      case 'vote-response': this.handleVoteResponse(message); break;
      case 'append-request': this.handleAppendRequest(message); break;
      case 'append-response': this.handleAppendResponse(message); break;
      case 'timeout-now': this.handleTimeoutNow(message); break;
      case 'install-snapshot': this.handleInstallSnapshot(message); break;
    }
  }

  hasReady(): boolean {
    return this.hardStateDirty || this.softStateChanged() || this.unstable.length > 0 || this.pendingTruncateFrom !== undefined
      || this.pendingInstall !== undefined
      || this.outbox.length > 0 || this.commit > this.applied;
  }

  ready(): Ready {
    this.assertNoReadyOutstanding();
    this.readyOutstanding = true;
    const entries = this.unstable;
    const ready: Ready = {
      hardState: this.hardStateDirty ? { term: this.termValue, votedFor: this.votedFor } : undefined,
      snapshot: this.pendingInstall,
      truncateFrom: this.pendingTruncateFrom,
      entries,
      messages: this.outbox,
      commitIndex: this.commit,
      softState: this.softStateChanged() ? { role: this.roleValue, term: this.termValue, leaderId: this.leader } : undefined,
    };
    this.outbox = [];
    return ready;
  }

  private softStateChanged(): boolean {
    const last = this.reportedSoftState;
    return last === undefined || last.role !== this.roleValue || last.term !== this.termValue || last.leaderId !== this.leader;
  }

  /** The driver persisted, sent and applied `ready`. */
  advance(ready: Ready): void {
    assert(this.readyOutstanding, 'advance without ready');
    this.readyOutstanding = false;
    if (ready.hardState !== undefined) this.hardStateDirty = false;
    if (ready.softState !== undefined) this.reportedSoftState = ready.softState;
    this.pendingTruncateFrom = undefined;
    if (ready.snapshot !== undefined) {
      if (this.pendingInstall === ready.snapshot) this.pendingInstall = undefined;
      this.stableLastIndex = ready.snapshot.index;
      if (this.snapshotMeta === undefined || ready.snapshot.index > this.snapshotMeta.index) this.snapshotMeta = ready.snapshot;
    }
    const last = ready.entries[ready.entries.length - 1];
    if (last !== undefined) this.stableLastIndex = last.index;
    else if (ready.truncateFrom !== undefined) this.stableLastIndex = Math.min(this.stableLastIndex, ready.truncateFrom - 1);
    this.unstable = [];
    this.unstableFrom = this.stableLastIndex + 1;
    assert(this.stableLastIndex === this.log.lastIndex, 'after advance every entry is durable');
    assert(ready.commitIndex >= this.applied, 'applied index went backwards');
    this.applied = ready.commitIndex;
    if (this.roleValue === 'leader') {
      // The leader's own copy counts toward a quorum only once it is durable.
      this.maybeCommit();
    }
  }

  // ---- elections ----------------------------------------------------------------------

  private tickElection(): void {
    if (this.lostLogTail !== undefined) return; // may not campaign: see CoreInitialState
    this.electionElapsed++;
    if (this.electionElapsed >= this.randomizedElectionTimeout && this.isMember(this.id)) {
      this.hup(false);
    }
  }

  private hup(transfer: boolean): void {
    if (this.config.preVote && !transfer) this.becomePreCandidate();
    else this.becomeCandidate(transfer);
  }

  private becomePreCandidate(): void {
    this.roleValue = 'pre-candidate';
    this.leader = undefined;
    this.resetElectionState();
    this.startVoting(true, false);
  }

  private becomeCandidate(transfer: boolean): void {
    this.termValue++;
    this.votedFor = this.id;
    this.hardStateDirty = true;
    this.roleValue = 'candidate';
    this.leader = undefined;
    this.resetElectionState();
    this.startVoting(false, transfer);
  }

  private startVoting(preVote: boolean, transfer: boolean): void {
    this.votes.set(this.id, true);
    if (this.tallyWon()) {
      if (preVote) this.becomeCandidate(false);
      else this.becomeLeader();
      return;
    }
    const term = preVote ? this.termValue + 1 : this.termValue;
    for (const member of this.members) {
      if (member.id === this.id) continue;
      this.send({ type: 'vote-request', from: this.id, to: member.id, term, preVote, transfer, lastIndex: this.log.lastIndex, lastTerm: this.log.lastTerm });
    }
  }

  private becomeFollower(term: Term, leader: NodeId | undefined): void {
    assert(term >= this.termValue, 'terms never decrease');
    if (term > this.termValue) {
      this.termValue = term;
      this.votedFor = undefined;
      this.hardStateDirty = true;
    }
    if (this.roleValue === 'leader') {
      // Appends emitted as leader name ranges of a log that may now be truncated: drop them.
      this.outbox = this.outbox.filter((m) => m.type !== 'append-request');
      this.progress.clear();
    }
    this.roleValue = 'follower';
    this.leader = leader;
    this.resetElectionState();
  }

  private becomeLeader(): void {
    assert(this.roleValue === 'candidate', 'only a candidate becomes leader');
    assert(this.votedFor === this.id, 'a leader voted for itself');
    this.roleValue = 'leader';
    this.leader = this.id;
    this.resetElectionState();
    this.progress.clear();
    for (const member of this.members) {
      if (member.id !== this.id) this.progress.set(member.id, newProgress(this.log.lastIndex + 1));
    }
    // Any config entry not yet known committed might be pending: be conservative.
    this.pendingConfigIndex = this.log.lastIndex;
    this.leaderFirstIndex = this.appendAsLeader(EntryKind.noop, new Uint8Array(0));
    this.broadcastAppend();
  }

  private resetElectionState(): void {
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.votes.clear();
    this.transferTarget = undefined;
    this.resetRandomizedElectionTimeout();
  }

  private resetRandomizedElectionTimeout(): void {
    const base = this.config.electionTimeoutTicks;
    this.randomizedElectionTimeout = base + this.random.nextInt(base);
  }

  /** Returns true if the message should be processed after adopting its term. */
  private acceptHigherTerm(message: RaftMessage): boolean {
    if (message.type === 'vote-request') {
      const leaseHeld = this.config.checkQuorum && this.leader !== undefined && this.electionElapsed < this.config.electionTimeoutTicks;
      if (leaseHeld && !message.transfer) {
        // We heard from a live leader within the election timeout: a disruptive candidate
        // (e.g. one that was partitioned away) must not depose it.
        this.send({ type: 'vote-response', from: this.id, to: message.from, term: this.termValue, preVote: message.preVote, granted: false, reason: 'leader-alive' });
        return false;
      }
      if (message.preVote) return true;
      this.becomeFollower(message.term, undefined);
      return true;
    }
    if (message.type === 'vote-response' && message.preVote && message.granted) return true;
    const leader = message.type === 'append-request' || message.type === 'timeout-now' || message.type === 'install-snapshot' ? message.from : undefined;
    this.becomeFollower(message.term, leader);
    return true;
  }

  private answerStaleTerm(message: RaftMessage): void {
    if (message.type === 'append-request') {
      // Tell a deposed leader about the newer term so it steps down.
      this.send(this.appendRejection(message, 'stale-term', 0, 0));
    } else if (message.type === 'install-snapshot') {
      this.send({ type: 'append-response', from: this.id, to: message.from, term: this.termValue, success: false, matchIndex: 0, reason: 'stale-term', conflictIndex: 0, conflictTerm: 0, lastIndex: this.log.lastIndex, rejectedPrevIndex: message.snapshot.index });
    } else if (message.type === 'vote-request') {
      this.send({ type: 'vote-response', from: this.id, to: message.from, term: this.termValue, preVote: message.preVote, granted: false, reason: 'stale-term' });
    }
  }

  private handleVoteRequest(request: VoteRequest): void {
    const canVote = this.votedFor === request.from
      || (this.votedFor === undefined && this.leader === undefined)
      || (request.preVote && request.term > this.termValue);
    const upToDate = this.config.unsafe?.voteWithoutLogCheck === true
      || request.lastTerm > this.log.lastTerm
      || (request.lastTerm === this.log.lastTerm && request.lastIndex >= this.log.lastIndex);
    const abstains = this.lostLogTail !== undefined;
    const granted = canVote && upToDate && !abstains;
    const reason = granted ? undefined : abstains ? 'lost-log-tail' : !canVote ? 'already-voted' : 'log-behind';
    if (granted && !request.preVote) {
      this.votedFor = request.from;
      this.hardStateDirty = true;
      this.electionElapsed = 0;
    }
    // A granted pre-vote carries the requested term so the candidate does not step down.
    const term = granted && request.preVote ? request.term : this.termValue;
    this.send({ type: 'vote-response', from: this.id, to: request.from, term, preVote: request.preVote, granted, reason });
  }

  private handleVoteResponse(response: VoteResponse): void {
    const expected = response.preVote ? 'pre-candidate' : 'candidate';
    if (this.roleValue !== expected) return;
    if (!this.isMember(response.from)) return;
    this.votes.set(response.from, response.granted);
    if (this.tallyWon()) {
      if (response.preVote) this.becomeCandidate(false);
      else this.becomeLeader();
    } else if (this.tallyLost()) {
      this.becomeFollower(this.termValue, undefined);
    }
  }

  private tallyWon(): boolean {
    let granted = 0;
    for (const member of this.members) if (this.votes.get(member.id) === true) granted++;
    return granted >= this.quorum();
  }

  private tallyLost(): boolean {
    let rejected = 0;
    for (const member of this.members) if (this.votes.get(member.id) === false) rejected++;
    return rejected > this.members.length - this.quorum();
  }

  private quorum(): number {
    return Math.floor(this.members.length / 2) + 1;
  }

  private handleTimeoutNow(message: TimeoutNow): void {
    if (this.roleValue === 'leader' || !this.isMember(this.id) || this.lostLogTail !== undefined) return;
    assert(message.term === this.termValue, 'timeout-now term');
    this.hup(true);
  }

  // ---- replication: follower side ----------------------------------------------------

  private handleAppendRequest(request: AppendRequest): void {
    if (this.roleValue !== 'follower' || this.leader !== request.from) this.becomeFollower(request.term, request.from);
    this.electionElapsed = 0;
    assert(request.entries.length === request.entryCount, 'append request entries were not filled');
    let prevIndex = request.prevIndex;
    let prevTerm = request.prevTerm;
    let entries = request.entries;
    if (prevIndex < this.commit) {
      // Everything up to our commit index matches any leader's log; skip that part (old or
      // duplicated messages land here).
      const skip = Math.min(this.commit - prevIndex, entries.length);
      entries = entries.slice(skip);
      prevIndex += skip;
      prevTerm = skip > 0 ? (request.entries[skip - 1] as Entry).term : prevTerm;
      if (prevIndex < this.commit) {
        this.send(this.appendSuccess(request, this.commit));
        return;
      }
    }
    const localPrevTerm = this.log.termAt(prevIndex);
    if (localPrevTerm === undefined) {
      const reason = prevIndex < this.log.firstIndex ? 'compacted' : 'log-missing';
      this.send(this.appendRejection(request, reason, this.log.lastIndex + 1, 0));
      return;
    }
    if (localPrevTerm !== prevTerm) {
      // The snapshot boundary has a term but no run to search.
      const conflictIndex = prevIndex < this.log.firstIndex ? prevIndex : this.log.firstIndexOfTermAt(prevIndex);
      this.send(this.appendRejection(request, 'log-mismatch', conflictIndex, localPrevTerm));
      return;
    }
    for (const entry of entries) {
      const existing = this.log.termAt(entry.index);
      if (existing === entry.term) continue;
      if (existing !== undefined) this.truncateFrom(entry.index);
      this.appendEntry(entry);
    }
    const matchIndex = prevIndex + entries.length;
    const newCommit = Math.min(request.commitIndex, matchIndex);
    if (newCommit > this.commit) this.commit = newCommit;
    // This log now matches a leader's through its commit index. If that covers the old mark,
    // every entry this node may have acknowledged is back or was never committed; so too if the
    // commit is an entry of a later term than the node had (its leader holds every entry
    // committed before). A stale message from the old term's leader proves neither.
    this.maybeEndAbstention();
    this.send(this.appendSuccess(request, matchIndex));
  }

  private maybeEndAbstention(): void {
    const lost = this.lostLogTail;
    if (lost !== undefined && (this.commit >= lost.syncedThrough || (this.termValue > lost.term && this.log.termAt(this.commit) === this.termValue))) {
      this.lostLogTail = undefined;
    }
  }

  /**
   * Raft §7: a snapshot whose last entry this log already holds (same index and term) only
   * moves the commit index, keeping what follows; any other discards the whole log, which
   * restarts after the snapshot. Either way the answer (sent after the ready is durable) says
   * the follower now matches through the snapshot.
   */
  private handleInstallSnapshot(message: InstallSnapshot): void {
    if (this.roleValue !== 'follower' || this.leader !== message.from) this.becomeFollower(message.term, message.from);
    this.electionElapsed = 0;
    const snapshot = message.snapshot;
    const answer = (matchIndex: LogIndex): AppendResponse => ({
      type: 'append-response', from: this.id, to: message.from, term: this.termValue, success: true, matchIndex, reason: undefined,
      conflictIndex: 0, conflictTerm: 0, lastIndex: Math.max(this.log.lastIndex, matchIndex), rejectedPrevIndex: 0,
    });
    if (snapshot.index <= this.commit) {
      this.send(answer(this.commit));
      return;
    }
    if (this.log.termAt(snapshot.index) === snapshot.term) {
      this.commit = snapshot.index;
      this.maybeEndAbstention();
      this.send(answer(snapshot.index));
      return;
    }
    this.log.resetAfter(snapshot.index, snapshot.term);
    this.unstable = [];
    this.unstableFrom = snapshot.index + 1;
    this.pendingTruncateFrom = undefined; // the reset removes everything
    this.configs = [{ index: snapshot.configIndex, members: snapshot.members }];
    this.pendingInstall = snapshot;
    this.commit = snapshot.index;
    this.maybeEndAbstention();
    this.send(answer(snapshot.index));
  }

  private appendSuccess(request: AppendRequest, matchIndex: LogIndex): AppendResponse {
    return { type: 'append-response', from: this.id, to: request.from, term: this.termValue, success: true, matchIndex, reason: undefined, conflictIndex: 0, conflictTerm: 0, lastIndex: this.log.lastIndex, rejectedPrevIndex: 0 };
  }

  private appendRejection(request: AppendRequest, reason: AppendResponse['reason'], conflictIndex: LogIndex, conflictTerm: Term): AppendResponse {
    return { type: 'append-response', from: this.id, to: request.from, term: this.termValue, success: false, matchIndex: 0, reason, conflictIndex, conflictTerm, lastIndex: this.log.lastIndex, rejectedPrevIndex: request.prevIndex };
  }

  private truncateFrom(index: LogIndex): void {
    // Committed entries are never removed: that would break state machine safety.
    assert(index > this.commit, `truncating committed index ${index} (commit ${this.commit}): was the log lost or corrupted?`);
    this.log.truncateFrom(index);
    if (index >= this.unstableFrom) {
      this.unstable.length = index - this.unstableFrom;
    } else {
      this.unstable = [];
      this.unstableFrom = index;
      this.pendingTruncateFrom = Math.min(this.pendingTruncateFrom ?? index, index);
    }
    while ((this.configs[this.configs.length - 1] as ConfigAt).index >= index) this.configs.pop();
    assert(this.configs.length > 0, 'the bootstrap configuration is never truncated');
  }

  private appendEntry(entry: Entry): void {
    assert(entry.index === this.log.lastIndex + 1, 'entries are appended in order');
    if (this.unstable.length === 0) this.unstableFrom = entry.index;
    this.log.append(entry.index, entry.term);
    this.unstable.push(entry);
    if (entry.kind === EntryKind.config) this.applyConfigEntry(entry);
  }

  /** A configuration takes effect as soon as it is in the log (Raft thesis §4.1). */
  private applyConfigEntry(entry: Entry): void {
    const membership = decodeMembership(entry.payload);
    this.configs.push({ index: entry.index, members: membership.members });
    if (this.roleValue !== 'leader') return;
    for (const member of membership.members) {
      if (member.id !== this.id && !this.progress.has(member.id)) this.progress.set(member.id, newProgress(this.log.lastIndex + 1));
    }
    for (const id of [...this.progress.keys()]) if (!this.isMember(id)) this.progress.delete(id);
  }

  // ---- replication: leader side ------------------------------------------------------

  private proposalRefusal(count: number): ProposeOutcome | undefined {
    if (this.roleValue !== 'leader') return { kind: 'not-leader', leaderHint: this.leader };
    if (this.transferTarget !== undefined) return { kind: 'dropped', reason: 'leadership-transfer' };
    if (this.log.lastIndex - this.commit + count > this.config.uncommittedEntriesMax) return { kind: 'dropped', reason: 'uncommitted-entries-max' };
    return undefined;
  }

  private appendAsLeader(kind: EntryKind, payload: Uint8Array): LogIndex {
    const entry: Entry = { index: this.log.lastIndex + 1, term: this.termValue, kind, payload };
    this.appendEntry(entry);
    return entry.index;
  }

  private handleAppendResponse(response: AppendResponse): void {
    if (this.roleValue !== 'leader') return;
    const progress = this.progress.get(response.from);
    if (progress === undefined) return;
    progress.recentActive = true;
    if (progress.state === 'snapshot') {
      // Answers to heartbeats sent meanwhile say nothing about the snapshot; its own answer does.
      if (!response.success) return;
      if (response.matchIndex > progress.match) progress.match = response.matchIndex;
      if (progress.match < progress.pendingSnapshot) return;
      becomeProbe(progress, progress.match + 1);
    }
    if (response.success) {
      if (response.matchIndex > progress.match) {
        progress.match = response.matchIndex;
        while (progress.inflight.length > 0 && (progress.inflight[0] as number) <= progress.match) progress.inflight.shift();
      }
      if (progress.state === 'probe') becomeReplicate(progress);
      else if (progress.next <= progress.match) progress.next = progress.match + 1;
      this.maybeCommit();
      if (this.transferTarget === response.from && progress.match === this.log.lastIndex) {
        this.send({ type: 'timeout-now', from: this.id, to: response.from, term: this.termValue });
      }
    } else {
      if (response.rejectedPrevIndex <= progress.match) {
        if (response.lastIndex >= progress.match) return; // stale: a later answer matched more
        // The follower lost entries it had acknowledged (power loss under ASYNC_FLUSH):
        // lower match so replication resumes from what it really holds.
        progress.match = response.lastIndex;
      }
      becomeProbe(progress, Math.max(progress.match + 1, Math.min(this.backOffIndex(response), response.rejectedPrevIndex)));
    }
    if (this.roleValue === 'leader') this.sendAppend(response.from, false);
  }

  /** Fast conflict back-off: skip a whole conflicting term per round trip. */
  private backOffIndex(response: AppendResponse): LogIndex {
    if (response.conflictTerm === 0) return response.conflictIndex;
    const leaderLast = this.log.lastIndexOfTerm(response.conflictTerm);
    return leaderLast === undefined ? response.conflictIndex : leaderLast + 1;
  }

  /**
   * Commit only by counting entries of the current term (Raft §5.4.2). A leader removed by a
   * configuration that is now committed steps down (thesis §4.2.2).
   */
  private maybeCommit(): void {
    const matches: LogIndex[] = [];
    for (const member of this.members) {
      if (member.id === this.id) matches.push(this.stableLastIndex);
      else matches.push(this.progress.get(member.id)?.match ?? 0);
    }
    matches.sort((a, b) => b - a);
    const quorumIndex = this.config.unsafe?.commitWithoutQuorum === true ? this.stableLastIndex : matches[this.quorum() - 1] as LogIndex;
    if (quorumIndex <= this.commit) return;
    const countsTowardCommit = this.log.termAt(quorumIndex) === this.termValue || this.config.unsafe?.commitOlderTerms === true;
    if (!countsTowardCommit) return;
    this.commit = quorumIndex;
    const latest = this.configs[this.configs.length - 1] as ConfigAt;
    if (latest.index <= this.commit && !this.isMember(this.id)) this.becomeFollower(this.termValue, undefined);
  }

  private broadcastAppend(): void {
    for (const id of this.progress.keys()) this.sendAppend(id, false);
  }

  /** Sends what `peer` is missing, within the pipeline bounds; `heartbeat` forces a message. */
  private sendAppend(peer: NodeId, heartbeat: boolean): void {
    const progress = this.progress.get(peer);
    if (progress === undefined) return;
    if (progress.state === 'snapshot') {
      // Keep the follower's election timer quiet while the snapshot streams; its answers are ignored.
      if (heartbeat) this.sendHeartbeat(peer, progress);
      return;
    }
    // Entries deleted by compaction can only be sent as a snapshot.
    if (progress.next < this.log.firstIndex) {
      if (progress.snapshotBackoffTicks > 0) return;
      this.sendSnapshot(peer, progress);
      return;
    }
    if (progress.state === 'probe') {
      if (progress.probeSent) {
        // The probe's entries may still be on their way (a slow follower): ask again without
        // them. Its answer finds the match point either way; entries follow once it is known.
        if (heartbeat) this.sendEmptyProbe(peer, progress);
        return;
      }
      this.sendAppendRange(peer, progress.next);
      progress.probeSent = true;
      return;
    }
    let sent = false;
    while (progress.inflight.length < this.config.inflightAppendsMax && progress.next <= this.log.lastIndex) {
      const last = this.sendAppendRange(peer, progress.next);
      progress.inflight.push(last);
      progress.next = last + 1;
      sent = true;
    }
    if (!sent && heartbeat) this.sendHeartbeat(peer, progress);
  }

  /** prevIndex = match is known to be on the follower, so reordering cannot make a heartbeat look like a gap. */
  private sendHeartbeat(peer: NodeId, progress: Progress): void {
    const prevTerm = this.log.termAt(progress.match);
    if (prevTerm === undefined && progress.state !== 'snapshot') {
      // Everything the follower is known to hold was compacted away here: it needs the snapshot.
      if (progress.snapshotBackoffTicks === 0) this.sendSnapshot(peer, progress);
      return;
    }
    // In the snapshot state the answers are ignored: the heartbeat only keeps the follower's election timer quiet.
    this.send({ type: 'append-request', from: this.id, to: peer, term: this.termValue, prevIndex: progress.match, prevTerm: prevTerm ?? 0, entryCount: 0, commitIndex: Math.min(this.commit, progress.match), entries: [] });
  }

  /** An append with no entries at `next - 1`: answered with success (the match point) or a refusal with back-off hints. */
  private sendEmptyProbe(peer: NodeId, progress: Progress): void {
    const prevIndex = progress.next - 1;
    const prevTerm = this.log.termAt(prevIndex);
    assert(prevTerm !== undefined, `no term for probe prevIndex ${prevIndex}`);
    this.send({ type: 'append-request', from: this.id, to: peer, term: this.termValue, prevIndex, prevTerm, entryCount: 0, commitIndex: Math.min(this.commit, prevIndex), entries: [] });
  }

  private sendSnapshot(peer: NodeId, progress: Progress): void {
    const snapshot = this.snapshotMeta;
    assert(snapshot !== undefined && snapshot.index >= this.log.firstIndex - 1, `${peer} needs entry ${progress.next}, compacted away, and no snapshot covers it`);
    becomeSnapshot(progress, snapshot.index);
    this.send({ type: 'install-snapshot', from: this.id, to: peer, term: this.termValue, snapshot });
  }

  /** Emits one append starting at `from`; returns its last index (from - 1 if empty). */
  private sendAppendRange(peer: NodeId, from: LogIndex): LogIndex {
    const prevIndex = from - 1;
    const prevTerm = this.log.termAt(prevIndex);
    assert(prevTerm !== undefined, `no term for prevIndex ${prevIndex}`);
    let count = 0;
    let bytes = 0;
    while (from + count <= this.log.lastIndex && count < this.config.appendEntriesMax) {
      const size = this.entryBytes(from + count);
      if (count > 0 && bytes + size > this.config.appendBytesMax) break;
      bytes += size;
      count++;
    }
    this.send({ type: 'append-request', from: this.id, to: peer, term: this.termValue, prevIndex, prevTerm, entryCount: count, commitIndex: this.commit, entries: [] });
    return prevIndex + count;
  }

  private entryBytes(index: LogIndex): number {
    if (index >= this.unstableFrom) return (this.unstable[index - this.unstableFrom] as Entry).payload.length;
    return this.payloadBytesOf(index);
  }

  private tickLeader(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.config.electionTimeoutTicks) {
      this.electionElapsed = 0;
      if (this.transferTarget !== undefined) this.transferTarget = undefined; // transfer timed out
      if (this.config.checkQuorum && !this.quorumActive()) {
        this.becomeFollower(this.termValue, undefined);
        return;
      }
    }
    if (this.heartbeatElapsed >= this.config.heartbeatIntervalTicks) {
      this.heartbeatElapsed = 0;
      for (const [peer, progress] of this.progress) {
        progress.snapshotBackoffTicks = Math.max(0, progress.snapshotBackoffTicks - this.config.heartbeatIntervalTicks);
        if (progress.state === 'replicate' && progress.inflight.length > 0 && progress.match === progress.matchAtLastHeartbeat) {
          progress.stalledTicks += this.config.heartbeatIntervalTicks;
          // An election timeout without progress: appends were lost (a broken stream), so
          // resume by probing from the known match.
          if (progress.stalledTicks >= this.config.electionTimeoutTicks) becomeProbe(progress, progress.match + 1);
        } else {
          progress.stalledTicks = 0;
        }
        progress.matchAtLastHeartbeat = progress.match;
        this.sendAppend(peer, true);
      }
    }
  }

  /** Check-quorum: did a majority talk to us during the last election timeout? */
  private quorumActive(): boolean {
    let active = 0;
    for (const member of this.members) {
      if (member.id === this.id) active++;
      else if (this.progress.get(member.id)?.recentActive === true) active++;
    }
    for (const progress of this.progress.values()) progress.recentActive = false;
    return active >= this.quorum();
  }

  private send(message: RaftMessage): void {
    this.outbox.push(message);
  }

  private assertNoReadyOutstanding(): void {
    assert(!this.readyOutstanding, 'the core was called between ready() and advance()');
  }
}
