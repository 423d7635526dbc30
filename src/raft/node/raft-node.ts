import { assert, coerceError } from '../../util/assert.js';
import { decodeMembership, validateMembers, type ConfigAt } from '../membership.js';
import { RaftCore, type CoreInitialState, type ProposeOutcome, type RaftCoreConfig, type RandomSource, type Ready, type Role, type SoftState } from '../core/raft-core.js';
import type { Entry, HardState, InstallSnapshot, LogIndex, Member, NodeId, RaftMessage, SnapshotMeta, Term } from '../types.js';
import {
  NodeFailedError, NotLeaderError, OutcomeUnknownError, ProposalDroppedError, ProposalOverwrittenError,
} from './errors.js';
import type { Clock, Disposable, LogStore, Logger, SnapshotStore, StableStore, StateMachine, Transport } from './ports.js';

export type FlushMode = 'sync' | 'async';
/** The outcome of an operator command (transfer, membership), as the core decides it. */
export type { ProposeOutcome };

export interface RaftNodeOptions<Result = unknown> {
  readonly groupId: string;
  readonly core: RaftCoreConfig;
  /** The configuration the group was created with; the log's config entries override it. */
  readonly bootstrapMembers: readonly Member[];
  readonly log: LogStore;
  readonly stable: StableStore;
  readonly transport: Transport;
  readonly stateMachine: StateMachine<Result>;
  readonly snapshots: SnapshotStore;
  /** A snapshot is written after this many entries, or this many payload bytes, are applied since the last one. */
  readonly snapshotEveryEntries: number;
  readonly snapshotEveryBytes?: number;
  /**
   * Entries kept in the log behind a snapshot (etcd's SnapshotCatchUpEntries), so a follower
   * that is only a little behind catches up from the log rather than by a whole snapshot.
   */
  readonly snapshotCatchUpEntries: number;
  readonly clock: Clock;
  readonly random: RandomSource;
  readonly logger: Logger;
  readonly tickIntervalMs: number;
  /**
   * sync: fdatasync before an append is acknowledged (group commit);
   * async: appends are acknowledged once written and flushed every `flushIntervalMs`.
   */
  readonly flushMode: FlushMode;
  readonly flushIntervalMs: number;
  readonly inboxMessagesMax?: number;
  readonly queuedProposalsMax?: number;
  /** Test-only: answer appends before they are durable (negative control). */
  readonly unsafeAckBeforeFsync?: boolean;
  readonly onSoftState?: (state: SoftState) => void;
  readonly onFailed?: (error: Error) => void;
}

/** A committed proposal: where it landed and what the state machine's apply returned for it. */
export interface ProposalResult<Result = unknown> {
  readonly index: LogIndex;
  readonly term: Term;
  readonly result: Result;
}

export interface RaftNodeStatus {
  readonly groupId: string;
  readonly id: NodeId;
  readonly role: Role;
  readonly term: Term;
  readonly leaderId: NodeId | undefined;
  readonly commitIndex: LogIndex;
  readonly appliedIndex: LogIndex;
  readonly lastIndex: LogIndex;
  readonly members: readonly Member[];
  readonly followerMatch: Readonly<Record<NodeId, LogIndex>>;
  readonly failed: string | undefined;
  /** Set while the node abstains from elections after losing synced entries (see RaftCore.abstainingUntil). */
  readonly abstainingUntil: LogIndex | undefined;
  readonly stats: RaftNodeStats;
}

export interface RaftNodeStats {
  appendMessagesSent: number;
  entriesSent: number;
  messagesDropped: number;
  elections: number;
}

interface PendingProposal<Result> {
  readonly term: Term;
  readonly resolve: (result: ProposalResult<Result>) => void;
  readonly reject: (error: Error) => void;
}

interface QueuedProposal<Result> {
  readonly payload: Uint8Array;
  readonly resolve: (result: ProposalResult<Result>) => void;
  readonly reject: (error: Error) => void;
}

type Command =
  | { readonly kind: 'transfer'; readonly target: NodeId; readonly done: (outcome: ProposeOutcome) => void }
  | { readonly kind: 'membership'; readonly change: { readonly add: Member } | { readonly remove: NodeId }; readonly done: (outcome: ProposeOutcome) => void }
  | { readonly kind: 'snapshot-sent'; readonly peer: NodeId; readonly ok: boolean };

const applyChunkBytes = 8 * 1024 * 1024;

/**
 * Drives one RaftCore: the only place where awaits happen around it. Inbound messages,
 * ticks and proposals are queued and handled by one loop, which gives natural batching: all
 * proposals that arrive during one fsync go into the next batch (group commit).
 *
 * Order per ready, enforced here and nowhere else: persist hard state → truncate and append
 * entries (fsync in sync mode) → send messages → apply committed entries → advance. Any
 * storage failure stops the node (fail-stop); it is never logged and ignored.
 */
export class RaftNode<Result = unknown> {
  readonly stats: RaftNodeStats = { appendMessagesSent: 0, entriesSent: 0, messagesDropped: 0, elections: 0 };
  private readonly core: RaftCore;
  private readonly inbox: RaftMessage[] = [];
  private proposals: QueuedProposal<Result>[] = [];
  private readonly commands: Command[] = [];
  private readonly pending = new Map<LogIndex, PendingProposal<Result>>();
  private pendingTicks = 0;
  private lastRole: SoftState['role'] | undefined;
  private flushDue = false;
  private wakeup: (() => void) | undefined;
  private readonly timers: Disposable[] = [];
  private state: 'running' | 'stopping' | 'stopped' | 'failed' = 'running';
  private failure: Error | undefined;
  private loopDone: Promise<void> = Promise.resolve();
  private closing: Promise<void> | undefined;
  private appliedIndexValue: LogIndex;
  /** A snapshot this node wrote, to tell the core about and compact the log under. */
  private snapshotSaved: SnapshotMeta | undefined;
  private snapshotSaving = false;
  /** Payload bytes applied since the last snapshot was taken (a cadence by bytes as well as entries). */
  private bytesSinceSnapshot = 0;
  /** Leaders' snapshots, durable in the store, by index: the core's ready names the one to install. */
  private readonly received = new Map<LogIndex, { readonly meta: SnapshotMeta; readonly data: Uint8Array }>();

  /** Term, vote and synced-through mark as last written to the stable store. */
  private durableHardState: HardState;

  private constructor(private readonly options: RaftNodeOptions<Result>, hardState: HardState, configs: ConfigAt[], lostLogTail: CoreInitialState['lostLogTail'], snapshot: SnapshotMeta | undefined) {
    const log = options.log;
    this.appliedIndexValue = snapshot?.index ?? 0;
    this.durableHardState = hardState;
    this.core = new RaftCore(options.core, {
      hardState: { term: hardState.term, votedFor: hardState.votedFor },
      log: { firstIndex: log.firstIndex, prevTerm: log.termAt(log.firstIndex - 1) ?? 0, lastIndex: log.lastIndex, runs: log.runs() },
      configs,
      appliedIndex: this.appliedIndexValue,
      snapshot,
      lostLogTail,
    }, options.random, (index) => log.payloadBytesAt(index));
  }

  /**
   * Loads durable state (the newest valid snapshot, then the log after it), checks the
   * configuration and starts the loop and timers.
   */
  static async start<R>(options: RaftNodeOptions<R>): Promise<RaftNode<R>> {
    validateMembers(options.bootstrapMembers);
    assert(Number.isInteger(options.snapshotEveryEntries) && options.snapshotEveryEntries >= 1, 'snapshotEveryEntries must be a positive integer');
    assert(Number.isInteger(options.snapshotCatchUpEntries) && options.snapshotCatchUpEntries >= 0, 'snapshotCatchUpEntries must be a non-negative integer');
    const snapshot = await RaftNode.restoreSnapshot(options);
    const configs: ConfigAt[] = [snapshot === undefined ? { index: 0, members: options.bootstrapMembers } : { index: snapshot.configIndex, members: snapshot.members }];
    for (const index of options.log.configIndexes()) {
      if (index <= (configs[configs.length - 1] as ConfigAt).index) continue;
      const [entry] = await options.log.read({ fromIndex: index, throughIndex: index, bytesMax: 1 });
      assert(entry !== undefined && entry.index === index, `config entry ${index} missing from the log`);
      configs.push({ index, members: decodeMembership(entry.payload).members });
    }
    const latest = configs[configs.length - 1] as ConfigAt;
    if (!latest.members.some((m) => m.id === options.core.id) && configs.length === 1 && snapshot === undefined) {
      throw new Error(`node id ${options.core.id} is not in the member list of group ${options.groupId} (${latest.members.map((m) => m.id).join(', ')})`);
    }
    let hardState: HardState = (await options.stable.load()) ?? { term: 0, votedFor: undefined };
    if (snapshot !== undefined && hardState.term < snapshot.term) {
      // A received snapshot is durable before the node takes the message that carried it (and
      // stores its term), so a crash in between leaves one from a term never stored. Moving to
      // that term without a vote is safe: a vote in it would have been stored before it was sent.
      options.logger.warn({ groupId: options.groupId, storedTerm: hardState.term, snapshotTerm: snapshot.term }, 'the newest snapshot is from a later term than the stored one (an install was cut short): moving to its term');
      hardState = { ...hardState, term: snapshot.term, votedFor: undefined };
      await options.stable.save(hardState);
    }
    assert(hardState.term >= options.log.termAt(options.log.lastIndex)!, 'stored term is below the log\'s last term: stable store and log disagree');
    // Entries that were durable are gone (the disk cut them, or recovery had to cut a damaged
    // last record): this node may have acknowledged what it no longer holds.
    const lostTail = hardState.syncedThrough !== undefined && options.log.lastIndex < hardState.syncedThrough && latest.members.length > 1;
    if (lostTail) {
      options.logger.warn({ groupId: options.groupId, nodeId: options.core.id, syncedThrough: hardState.syncedThrough, lastIndex: options.log.lastIndex, term: hardState.term },
        'the log lost entries that were durable: this node abstains from elections until a leader has caught it up');
    }
    const node = new RaftNode<R>(options, hardState, configs, lostTail ? { term: hardState.term, syncedThrough: hardState.syncedThrough ?? 0 } : undefined, snapshot);
    node.timers.push(options.clock.every(options.tickIntervalMs, () => node.enqueueTick()));
    if (options.flushMode === 'async') node.timers.push(options.clock.every(options.flushIntervalMs, () => { node.flushDue = true; node.wake(); }));
    node.loopDone = node.runLoop();
    node.wake();
    return node;
  }

  /**
   * Restores the state machine from the newest valid snapshot and makes the log continue
   * after it. A log that still ends before the snapshot, or disagrees with it, is what an
   * install interrupted by a crash leaves: it restarts after the snapshot.
   */
  private static async restoreSnapshot<R>(options: RaftNodeOptions<R>): Promise<SnapshotMeta | undefined> {
    const log = options.log;
    const loaded = await options.snapshots.loadNewest();
    if (loaded === undefined) {
      if (log.firstIndex > 1) throw new Error(`the log of group ${options.groupId} starts at entry ${log.firstIndex} but there is no snapshot to cover the entries before it; repair this node from its peers`);
      return undefined;
    }
    const meta = loaded.snapshot.meta;
    if (log.firstIndex - 1 > meta.index) {
      throw new Error(`the log of group ${options.groupId} starts at entry ${log.firstIndex} but the newest valid snapshot (${loaded.snapshot.fileName}) ends at ${meta.index}; repair this node from its peers`);
    }
    if (log.lastIndex < meta.index || log.termAt(meta.index) !== meta.term) {
      options.logger.warn({ groupId: options.groupId, snapshotIndex: meta.index, lastIndex: log.lastIndex }, 'the log does not continue the newest snapshot (an install was interrupted): restarting the log after it');
      await log.resetTo(meta.index, meta.term);
    }
    options.stateMachine.restore(loaded.data, meta);
    options.logger.info({ groupId: options.groupId, snapshot: loaded.snapshot.fileName, index: meta.index, term: meta.term }, 'state restored from snapshot');
    return meta;
  }

  get id(): NodeId { return this.core.id; }
  get role(): Role { return this.core.role; }
  get term(): Term { return this.core.term; }
  get leaderId(): NodeId | undefined { return this.core.leaderId; }
  get commitIndex(): LogIndex { return this.core.commitIndex; }
  get appliedIndex(): LogIndex { return this.appliedIndexValue; }
  get members(): readonly Member[] { return this.core.members; }
  get failed(): Error | undefined { return this.failure; }
  /** The core's view of the log's terms, for checkers. */
  termAt(index: LogIndex): Term | undefined { return this.core.termAt(index); }
  get lastIndex(): LogIndex { return this.core.lastIndex; }
  /** The first entry still in the log (compaction deletes what a snapshot covers). */
  get firstIndex(): LogIndex { return this.core.firstIndex; }

  status(): RaftNodeStatus {
    const followerMatch: Record<NodeId, LogIndex> = {};
    for (const member of this.core.members) {
      const match = this.core.followerMatch(member.id);
      if (match !== undefined) followerMatch[member.id] = match;
    }
    return {
      groupId: this.options.groupId, id: this.id, role: this.role, term: this.term, leaderId: this.leaderId,
      commitIndex: this.commitIndex, appliedIndex: this.appliedIndexValue, lastIndex: this.core.lastIndex,
      members: this.core.members, followerMatch, failed: this.failure?.message, abstainingUntil: this.core.abstainingUntil, stats: { ...this.stats },
    };
  }

  /**
   * Proposes one entry. Resolves with its apply result once it is committed and applied here;
   * rejects with a `ProposalError` whose `definite` flag says whether it may still have been
   * committed.
   */
  propose(payload: Uint8Array): Promise<ProposalResult<Result>> {
    if (this.state !== 'running') return Promise.reject(this.stoppedError());
    if (this.core.role !== 'leader') return Promise.reject(new NotLeaderError(this.core.leaderId));
    if (this.proposals.length >= (this.options.queuedProposalsMax ?? 65_536)) return Promise.reject(new ProposalDroppedError('proposal queue full'));
    return new Promise((resolve, reject) => {
      this.proposals.push({ payload, resolve, reject });
      this.wake();
    });
  }

  transferLeadership(target: NodeId): Promise<ProposeOutcome> {
    return this.command((done) => ({ kind: 'transfer', target, done }));
  }

  changeMembership(change: { readonly add: Member } | { readonly remove: NodeId }): Promise<ProposeOutcome> {
    return this.command((done) => ({ kind: 'membership', change, done }));
  }

  /**
   * Called by the transport once a leader's snapshot is durable in the snapshot store; the
   * core decides (in order with every other message) whether to install it.
   */
  receiveSnapshot(message: InstallSnapshot, data: Uint8Array): void {
    if (this.state !== 'running') return;
    this.received.set(message.snapshot.index, { meta: message.snapshot, data });
    this.receive(message);
  }

  /** Called by the transport when streaming a snapshot to `peer` ended. */
  reportSnapshot(peer: NodeId, ok: boolean): void {
    if (this.state !== 'running') return;
    this.commands.push({ kind: 'snapshot-sent', peer, ok });
    this.wake();
  }

  /** Called by the transport for every inbound message; never blocks. */
  receive(message: RaftMessage): void {
    if (this.state !== 'running') return;
    if (this.inbox.length >= (this.options.inboxMessagesMax ?? 16_384)) {
      this.stats.messagesDropped++;
      return;
    }
    this.inbox.push(message);
    this.wake();
  }

  /** Stops the loop and timers; pending proposals end with an unknown outcome. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.state === 'running') this.state = 'stopping';
      for (const timer of this.timers.splice(0)) timer.dispose();
      this.wake();
      await this.loopDone;
      if (this.state === 'stopping') this.state = 'stopped';
      this.rejectAllPending(new OutcomeUnknownError('node-stopped'));
    })();
    return this.closing;
  }

  private command(make: (done: (outcome: ProposeOutcome) => void) => Command): Promise<ProposeOutcome> {
    if (this.state !== 'running') return Promise.reject(this.stoppedError());
    return new Promise((resolve) => {
      this.commands.push(make(resolve));
      this.wake();
    });
  }

  private enqueueTick(): void {
    this.pendingTicks++;
    this.wake();
  }

  private wake(): void {
    const wakeup = this.wakeup;
    this.wakeup = undefined;
    wakeup?.();
  }

  private hasWork(): boolean {
    return this.inbox.length > 0 || this.proposals.length > 0 || this.commands.length > 0 || this.pendingTicks > 0 || this.flushDue
      || this.snapshotSaved !== undefined || this.core.hasReady();
  }

  private async runLoop(): Promise<void> {
    try {
      while (this.state === 'running') {
        if (!this.hasWork()) {
          await new Promise<void>((resolve) => { this.wakeup = resolve; });
          continue;
        }
        this.drainInbox();
        if (this.flushDue) {
          this.flushDue = false;
          await this.options.log.sync();
          await this.recordSynced();
        }
        while (this.core.hasReady() && this.state === 'running') await this.handleReady(this.core.ready());
        // Only between readies: appends already handed out name ranges that must stay readable.
        if (this.snapshotSaved !== undefined && this.state === 'running') await this.compact(this.snapshotSaved);
      }
    } catch (thrown) {
      this.fail(coerceError(thrown));
    }
  }

  private drainInbox(): void {
    for (; this.pendingTicks > 0; this.pendingTicks--) this.core.tick();
    for (const message of this.inbox.splice(0)) this.core.step(message);
    for (const command of this.commands.splice(0)) this.runCommand(command);
    if (this.proposals.length > 0) this.submitProposals(this.proposals.splice(0));
  }

  private runCommand(command: Command): void {
    switch (command.kind) {
      case 'transfer': command.done(this.core.transferLeadership(command.target)); break;
      case 'membership': command.done(this.core.proposeMembershipChange(command.change)); break;
      case 'snapshot-sent': this.core.reportSnapshot(command.peer, command.ok); break;
    }
  }

  private submitProposals(batch: QueuedProposal<Result>[]): void {
    const outcome = this.core.propose(batch.map((p) => p.payload));
    if (outcome.kind === 'appended') {
      assert(outcome.lastIndex - outcome.firstIndex + 1 === batch.length, 'one entry per proposal');
      batch.forEach((proposal, i) => this.pending.set(outcome.firstIndex + i, { term: outcome.term, resolve: proposal.resolve, reject: proposal.reject }));
      return;
    }
    const error = outcome.kind === 'not-leader' ? new NotLeaderError(outcome.leaderHint) : new ProposalDroppedError(outcome.reason);
    for (const proposal of batch) proposal.reject(error);
  }

  private async handleReady(ready: Ready): Promise<void> {
    const log = this.options.log;
    // The negative control writes but skips the fsync before answering (NATS 2.12's bug).
    const sync = this.options.flushMode === 'sync' && this.options.unsafeAckBeforeFsync !== true;
    if (this.core.role === 'leader' && ready.hardState === undefined && ready.snapshot === undefined && ready.truncateFrom === undefined && ready.entries.length > 0) {
      // Raft thesis §10.2.1: the leader may send its new entries before they are even written
      // on its own disk; the core counts the leader's copy toward commit only after advance(),
      // i.e. after the sync below. Followers still persist before they answer. What it
      // applies meanwhile was committed with its own durable copy (the core counts only
      // that), so the answers to clients need not wait for this ready's write and sync.
      const written = log.append(ready.entries, { sync: false });
      // A failed write must stop the node, not surface as an unhandled rejection while the
      // sends and applies below run: it is awaited right after them.
      written.catch(() => undefined);
      await this.sendMessages(ready.messages, ready.entries);
      await this.applyCommitted(ready.commitIndex);
      await written;
      if (sync) {
        await log.sync();
        await this.recordSynced();
      }
    } else {
      await this.persistThenSend(ready, sync);
      await this.applyCommitted(ready.commitIndex);
    }
    if (ready.softState !== undefined) this.noteSoftState(ready.softState);
    this.core.advance(ready);
    // Received snapshots at or below the commit index are installed, superseded or not needed.
    for (const index of this.received.keys()) if (index <= this.core.commitIndex) this.received.delete(index);
    this.maybeSnapshot();
  }

  /** Installs a leader's snapshot: the log restarts after it and the state machine takes its state. */
  private async installSnapshot(meta: SnapshotMeta): Promise<void> {
    const received = this.received.get(meta.index);
    assert(received !== undefined && received.meta.term === meta.term, `installing snapshot ${meta.index}/t${meta.term}, which was not received`);
    // Entries after the snapshot go, as in a truncation: lower the mark first.
    if ((this.durableHardState.syncedThrough ?? 0) > meta.index) await this.saveHardState({ syncedThrough: meta.index });
    await this.options.log.resetTo(meta.index, meta.term);
    this.rejectTruncatedProposals(meta.index + 1);
    this.options.stateMachine.restore(received.data, meta);
    this.appliedIndexValue = meta.index;
    this.options.logger.info({ groupId: this.options.groupId, nodeId: this.id, index: meta.index, term: meta.term }, 'installed a snapshot from the leader');
  }

  /**
   * Writes a snapshot of the state machine when enough was applied since the last one, or
   * when the state machine released log entries that only a newer snapshot lets us delete.
   * The state is taken synchronously (between applies, so it is exactly the applied state);
   * the file is written while the loop goes on.
   */
  private maybeSnapshot(): void {
    if (this.snapshotSaving || this.state !== 'running') return;
    const segments = this.options.log.segments();
    const current = this.core.snapshot;
    // Retention released entries the snapshot we have already covers: compact now, no new snapshot needed.
    if (current !== undefined && segments.length > 1 && (segments[0] as { lastIndex: LogIndex }).lastIndex <= this.releasableThrough(current.index)) {
      this.snapshotSaved = current;
      return;
    }
    const applied = this.appliedIndexValue;
    const last = current?.index ?? 0;
    if (applied <= last) return;
    const releasable = this.releasableThrough(applied);
    const deletable = segments.length > 1 && releasable > last && (segments[0] as { lastIndex: LogIndex }).lastIndex <= releasable;
    const bytesDue = this.bytesSinceSnapshot >= (this.options.snapshotEveryBytes ?? Infinity);
    if (applied - last < this.options.snapshotEveryEntries && !bytesDue && !deletable) return;
    const term = this.core.termAt(applied);
    assert(term !== undefined, `no term for applied index ${applied}`);
    const meta: SnapshotMeta = { index: applied, term, ...this.core.configAt(applied) };
    const data = this.options.stateMachine.snapshot();
    this.bytesSinceSnapshot = 0;
    this.snapshotSaving = true;
    this.options.snapshots.save(meta, data).then(() => {
      this.snapshotSaving = false;
      this.snapshotSaved = meta;
      this.wake();
    }, (error: unknown) => this.fail(coerceError(error)));
  }

  /**
   * The last entry a snapshot through `snapshotIndex` lets go. A state machine that still
   * reads entries the snapshot covers (a broker's message bodies, until retention releases
   * them) decides: those entries are the catch-up window too, and retention's bound on disk
   * holds. One that reads none keeps a catch-up window behind the snapshot.
   */
  private releasableThrough(snapshotIndex: LogIndex): LogIndex {
    const needed = this.options.stateMachine.firstNeededIndex() - 1;
    return needed < snapshotIndex ? needed : snapshotIndex - this.options.snapshotCatchUpEntries;
  }

  /** Tells the core about a written snapshot and deletes the segments it and the state machine no longer need. */
  private async compact(meta: SnapshotMeta): Promise<void> {
    this.snapshotSaved = undefined;
    this.core.snapshotTaken(meta);
    const through = this.releasableThrough(meta.index);
    if (through < this.options.log.firstIndex) return;
    const firstIndex = await this.options.log.deletePrefix(through);
    this.core.logCompacted(firstIndex);
  }

  /** Persist before send: every answer depends on state that is durable when it leaves. */
  private async persistThenSend(ready: Ready, sync: boolean): Promise<void> {
    const log = this.options.log;
    if (ready.hardState !== undefined) await this.saveHardState({ term: ready.hardState.term, votedFor: ready.hardState.votedFor });
    if (ready.snapshot !== undefined) await this.installSnapshot(ready.snapshot);
    if (ready.truncateFrom !== undefined) {
      // Lower the mark first: a crash between the two must not look like a lost tail.
      if ((this.durableHardState.syncedThrough ?? 0) >= ready.truncateFrom) await this.saveHardState({ syncedThrough: ready.truncateFrom - 1 });
      await log.truncateSuffix(ready.truncateFrom);
      this.rejectTruncatedProposals(ready.truncateFrom);
    }
    if (ready.entries.length > 0) {
      await log.append(ready.entries, { sync });
      if (sync) await this.recordSynced();
    }
    await this.sendMessages(ready.messages);
  }

  private async saveHardState(change: Partial<HardState>): Promise<void> {
    this.durableHardState = { ...this.durableHardState, ...change };
    await this.options.stable.save(this.durableHardState);
  }

  /**
   * Records, durably and before anything durable is acknowledged, how far the log is synced:
   * at start-up a log shorter than this lost synced entries (see RaftNode.start).
   */
  private async recordSynced(): Promise<void> {
    const last = this.options.log.lastIndex;
    if (last !== this.durableHardState.syncedThrough) await this.saveHardState({ syncedThrough: last });
  }

  /**
   * Fills each append with its entries and sends it: entries of this ready (`fresh`, which a
   * leader sends while its own write is still under way) from memory, older ones from the log.
   */
  private async sendMessages(messages: readonly RaftMessage[], fresh: readonly Entry[] = []): Promise<void> {
    // In steady state every follower gets the same range: read each range once per ready.
    const ranges = new Map<string, Entry[]>();
    for (const message of messages) {
      if (message.type === 'append-request' && message.entryCount > 0) {
        const fromIndex = message.prevIndex + 1;
        const throughIndex = message.prevIndex + message.entryCount;
        const key = `${fromIndex}-${throughIndex}`;
        let entries = ranges.get(key);
        if (entries === undefined) {
          entries = await this.entriesFor(fromIndex, throughIndex, fresh);
          ranges.set(key, entries);
        }
        message.entries = entries;
        assert(message.entries.length === message.entryCount, `append ${fromIndex}..${throughIndex}: read ${message.entries.length} entries`);
        this.stats.appendMessagesSent++;
        this.stats.entriesSent += message.entryCount;
      }
      this.options.transport.send(message);
    }
  }

  private async entriesFor(fromIndex: LogIndex, throughIndex: LogIndex, fresh: readonly Entry[]): Promise<Entry[]> {
    const firstFresh = fresh.length === 0 ? Infinity : (fresh[0] as Entry).index;
    const older = fromIndex < firstFresh
      ? await this.options.log.read({ fromIndex, throughIndex: Math.min(throughIndex, firstFresh - 1), bytesMax: Infinity })
      : [];
    if (throughIndex < firstFresh) return older;
    const start = Math.max(fromIndex, firstFresh) - firstFresh;
    return older.concat(fresh.slice(start, throughIndex - firstFresh + 1));
  }

  private async applyCommitted(commitIndex: LogIndex): Promise<void> {
    while (this.appliedIndexValue < commitIndex) {
      const entries = await this.options.log.read({ fromIndex: this.appliedIndexValue + 1, throughIndex: commitIndex, bytesMax: applyChunkBytes });
      assert(entries.length > 0 && (entries[0] as Entry).index === this.appliedIndexValue + 1, 'apply: committed entries missing from the log');
      const results = await this.options.stateMachine.apply(entries);
      assert(results.length === entries.length, `apply returned ${results.length} results for ${entries.length} entries`);
      entries.forEach((entry, i) => {
        this.bytesSinceSnapshot += entry.payload.byteLength;
        this.settleProposal(entry, results[i] as Result);
      });
      this.appliedIndexValue = (entries[entries.length - 1] as Entry).index;
    }
  }

  /**
   * A truncated entry was not committed yet, but another node may still hold it, win an
   * election and commit it: the outcome is unknown, not failed.
   */
  private rejectTruncatedProposals(fromIndex: LogIndex): void {
    for (const [index, proposal] of this.pending) {
      if (index < fromIndex) continue;
      this.pending.delete(index);
      proposal.reject(new OutcomeUnknownError('entry-truncated'));
    }
  }

  private settleProposal(entry: Entry, result: Result): void {
    const proposal = this.pending.get(entry.index);
    if (proposal === undefined) return;
    this.pending.delete(entry.index);
    if (proposal.term === entry.term) proposal.resolve({ index: entry.index, term: entry.term, result });
    else proposal.reject(new ProposalOverwrittenError(entry.index));
  }

  /** The core reports each change of role, term or leader exactly once. */
  private noteSoftState(soft: SoftState): void {
    if (soft.role === 'candidate') this.stats.elections++;
    this.options.logger.info({ groupId: this.options.groupId, nodeId: this.id, role: soft.role, term: soft.term, leaderId: soft.leaderId, commitIndex: this.core.commitIndex }, `became ${soft.role} at term ${soft.term}`);
    // A leader that loses leadership settles what it was proposing as unknown at once
    // (hashicorp/raft's ErrLeadershipLost). Waiting to learn the outcome from the log is
    // exact but can last as long as a partition does: an isolated old leader would hold its
    // clients until the heal instead of letting them retry on the new leader (found by
    // jepsen-tests, leader isolation). A retry cannot double-store: sends are de-duplicated.
    if (this.lastRole === 'leader' && soft.role !== 'leader') this.rejectAppended(new OutcomeUnknownError('leadership-lost'));
    this.lastRole = soft.role;
    // A node removed from the group hears nothing more, so it can never learn: unknown, now.
    if (!this.core.isMember(this.id)) this.rejectAllPending(new OutcomeUnknownError('removed-from-group'));
    this.options.onSoftState?.(soft);
  }

  private fail(error: Error): void {
    if (this.state === 'failed') return;
    this.state = 'failed';
    this.failure = error;
    for (const timer of this.timers.splice(0)) timer.dispose();
    this.options.logger.error({ groupId: this.options.groupId, nodeId: this.id, err: error }, 'raft node stopped after a failure');
    this.rejectAllPending(new OutcomeUnknownError('node-failed', { cause: error }));
    this.options.onFailed?.(new NodeFailedError({ cause: error }));
  }

  private rejectAllPending(error: Error): void {
    this.rejectAppended(error);
    for (const proposal of this.proposals.splice(0)) proposal.reject(error);
  }

  /** Settles the proposals already in the log (not the ones still queued for the core). */
  private rejectAppended(error: Error): void {
    for (const proposal of this.pending.values()) proposal.reject(error);
    this.pending.clear();
  }

  private stoppedError(): Error {
    return this.failure !== undefined ? new NodeFailedError({ cause: this.failure }) : new OutcomeUnknownError('node-stopped');
  }
}
