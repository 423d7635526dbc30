/**
 * The real broker in the simulator: a seeded, deterministic run of a 3-node broker group —
 * the real `BrokerStateMachine` and `BrokerService` on real `RaftNode`s, over `CommitLog` and
 * `FileSnapshotStore` on `SimDisk`, `SimNetwork` and `SimScheduler` time (the service's
 * `ServiceClock` is simulated too). A messaging workload (broker-sim-workload.ts) runs while
 * a nemesis crashes and restarts nodes (losing unsynced writes), partitions and pauses them,
 * and moves leadership; then faults stop, the clients drain everything, and the final reads
 * are checked against the whole history (broker-sim-checker.ts). The same seed gives the
 * same trace hash.
 *
 * The clients send delayed messages too (unless `delayed: false`), which the real timer store
 * (in memory, with a small wheel so that cascades happen) holds until the leader fires them.
 *
 * With `transactions`, the clients send transactional messages too (F9): the leader checks
 * open transactions back with a short policy (first after 300 ms, then every 300 ms, rolled
 * back after 3 checks), every node tells the workload's transaction checker of each check
 * round it applies, and the drain waits until no transaction is open.
 *
 * Some profiles run the real leader-only `RetentionService` with tiny limits (a few small
 * segments, or seconds of age), so retention entries release queue prefixes, nodes compact
 * their logs below their snapshots, and a follower that lagged or was down is sent an
 * InstallSnapshot, streamed through the simulated network (broker-sim-transfer.ts). A node so
 * restored reads retained message bodies before its log from a peer, as broker-node.ts does.
 * Targeted crashes cut snapshot writes and installs in progress.
 */
import { BrokerService, defaultBrokerServiceOptions } from '../broker/broker-service.js';
import { BrokerStateMachine, type ApplyResult } from '../broker/broker-state-machine.js';
import { BrokerError } from '../broker/errors.js';
import { PeerEntries } from '../broker/peer-entries.js';
import { RetentionService } from '../broker/retention-service.js';
import type { RetentionSettings } from '../broker/core/retention.js';
import { defaultBrokerStateLimits } from '../broker/core/broker-state.js';
import { MemoryTimerStore, timerStoreLimitsDefault } from '../broker/core/timer-store.js';
import { CommitLog } from '../commitlog/commit-log.js';
import { FileSnapshotStore } from '../commitlog/snapshot-store.js';
import { InvariantViolation } from '../util/assert.js';
import type { ServiceClock } from '../util/clock.js';
import { silentLogger, type Disposable, type LogStore, type SnapshotStore, type StateMachine } from '../raft/node/ports.js';
import { RaftNode } from '../raft/node/raft-node.js';
import type { HardState, Member, NodeId } from '../raft/types.js';
import { BrokerChecker } from './broker-sim-checker.js';
import { SimTransfers } from './broker-sim-transfer.js';
import { applyOnAppend, retentionAhead, transactionEndsFlipped, type TransactionEndsFlip } from './broker-sim-unsafe.js';
import { BrokerWorkload, watchedGroups, type BrokerEndpoint, type WorkloadStats } from './broker-sim-workload.js';
import { Prng } from './prng.js';
import { MemoryMessageIndexStore } from '../broker/core/message-index.js';
import { drawProfile, type FaultProfile } from './sim-cluster.js';
import { SimDisk, SimDiskError } from './sim-disk.js';
import { SimNetwork, calmNetwork } from './sim-network.js';
import { SimScheduler } from './sim-scheduler.js';
import { SimTrace, simNodeClock } from './sim-clock.js';
import { simStableStore } from './sim-stable-store.js';

/** sim-cluster's fault mix (without membership changes), plus leadership transfers and clock skew. */
export interface BrokerFaultProfile extends FaultProfile {
  transferWeight: number;
  /** Each node's wall clock is off by up to this much (the leader's stamps jump between leaders). */
  clockSkewMaxMs: number;
  /** Retention's size limit, in segments of `segmentBytesMax` (0: none). */
  retentionSegments: number;
  /** Retention's age limit (72 h: none within a run). */
  retentionMaxAgeMs: number;
  retentionIntervalMs: number;
  /**
   * While faults run, the chance that a snapshot write is cut by a crash of its node, just
   * before one of its next disk operations (at most one such crash per `targetedCrashGapMs`).
   */
  snapshotCrashProbability: number;
  /** The same for a snapshot install on the receiving node (its store, then its log's reset). */
  installCrashProbability: number;
}

export interface BrokerSimOptions {
  readonly seed: number;
  readonly faultDurationMs?: number;
  /** After faults stop, the clients must drain and the nodes converge within this. */
  readonly drainBoundMs?: number;
  readonly profile?: Partial<BrokerFaultProfile>;
  /**
   * Negative controls: the broker state machine sees entries when appended, not committed;
   * retention entries release `retentionAhead` more entries than the policy chose; a timer
   * fire delivers every record of the slots it reaches, due or not; EndTransaction ROLLBACK
   * stores the message anyway ('rollback-stores'), or COMMIT drops it ('commit-drops').
   */
  readonly unsafe?: { readonly applyBeforeCommit?: boolean; readonly retentionAhead?: number; readonly fireIgnoresDue?: boolean; readonly transactionEnds?: TransactionEndsFlip };
  /** Delayed messages and recalls in the workload (default true; the regression seeds of before F8 run without). */
  readonly delayed?: boolean;
  /** Transactional messages, ended by the producer or through check-backs (default false: the seeds of before F9 replay as they were). */
  readonly transactions?: boolean;
  /**
   * An operator client changes users and policies during the faults; the final table must be
   * what each command applied once in order gives (default false: older seeds replay as they
   * were). `unsafeAccessModel`: the negative control, a model that forgets every third command.
   */
  readonly accessControl?: boolean;
  readonly unsafeAccessModel?: boolean;
  /**
   * Every node keeps the message index (query and trace) in memory, in its state and snapshots,
   * so the per-batch digest comparison covers it (default false: the seeds of before F12 replay as they were).
   */
  readonly messageIndex?: boolean;
  /** Check only what clients see (to show those checks alone catch a negative control). */
  readonly blackBoxOnly?: boolean;
  readonly keepTrace?: boolean;
}

export interface BrokerSimResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly violations: readonly string[];
  readonly traceHash: string;
  readonly traceTail: readonly string[];
  readonly stats: WorkloadStats & {
    readonly events: number;
    readonly simulatedMs: number;
    readonly messagesStored: number;
    /** Acknowledged messages retention released (with proof) before the final reads. */
    readonly messagesReleased: number;
    /** Released messages the watched groups never consumed, counted as expired by the state. */
    readonly messagesExpired: number;
    readonly deadLettered: number;
    readonly digestsCompared: number;
    readonly crashes: number;
    readonly partitions: number;
    readonly pauses: number;
    readonly transfers: number;
    readonly leaderChanges: number;
    readonly failStops: number;
    readonly snapshotsRestored: number;
    readonly snapshotsInstalled: number;
    /** Restarts from a node's own snapshot, and installs of a leader's, whose state held pending delayed messages. */
    readonly restoresWithTimers: number;
    readonly installsWithTimers: number;
    /** The same with open transactions in the state. */
    readonly restoresWithTransactions: number;
    readonly installsWithTransactions: number;
    readonly snapshotsSent: number;
    readonly snapshotSendsFailed: number;
    /** Requests for retained entries to peers (PeerEntries asks for runs of 512), and those that failed. */
    readonly peerReads: number;
    readonly peerReadsFailed: number;
    /** Crashes aimed at a snapshot write or install in progress. */
    readonly snapshotWriteCrashes: number;
    readonly installCrashes: number;
    /** Times a node's log dropped segments (compaction below a snapshot). */
    readonly compactions: number;
    /** Retention entries that released more of the log (distinct retainedFrom values). */
    readonly retentionReleases: number;
  };
  readonly profile: BrokerFaultProfile;
}

interface Slot {
  readonly id: NodeId;
  readonly disk: SimDisk;
  readonly skewMs: number;
  durableHardState: HardState | undefined;
  incarnation: number;
  alive: boolean;
  node: RaftNode<ApplyResult> | undefined;
  machine: BrokerStateMachine | undefined;
  service: BrokerService | undefined;
  commitLog: CommitLog | undefined;
  snapshots: FileSnapshotStore | undefined;
  retention: RetentionService | undefined;
  timers: Disposable[];
  /** A targeted crash of this incarnation, just before its `opsLeft`-th disk operation from now. */
  crashArm: { opsLeft: number; readonly why: 'snapshot write' | 'install'; readonly incarnation: number; readonly onceStored: boolean } | undefined;
}

const tickIntervalMs = 10;
/** Wall time of simulated time 0 (entries carry wall-clock stamps). */
const epochMs = 1_800_000_000_000;
/** Targeted crashes (snapshot write, install) are at least this far apart. */
const targetedCrashGapMs = 1_000;
const noAgeLimitMs = 72 * 3_600_000;
/** The simulator's timer wheel: 16 slots of 250 ms (4 s), cascade buckets of 4 slots, so longer delays cascade. */
const simTimerLimits = { ...timerStoreLimitsDefault, precisionMs: 250 };
const simTimerWheel = { wheelSlots: 16, cascadeSlots: 4 } as const;
/** Fires at most every 250 ms (fewer entries to simulate than the shipped 100 ms). */
const simTimerFireIntervalMs = 250;
/** Check-backs within a run (the shipped policy waits 6 s and asks 15 times): an abandoned transaction is rolled back ~1.2 s after its send. */
const simTransactionCheck = { checkAfterMs: 300, checkIntervalMs: 300, checksMax: 3 } as const;

export function drawBrokerProfile(random: Prng): BrokerFaultProfile {
  return {
    ...drawProfile(random.fork('raft')),
    membershipWeight: 0,
    transferWeight: random.int(0, 2),
    clockSkewMaxMs: random.pick([0, 50, 1_000]),
    ...drawRetention(random.fork('retention')),
  };
}

/** Retention knobs, from their own stream (the others stay what they were without retention). */
function drawRetention(random: Prng): Pick<BrokerFaultProfile, 'retentionSegments' | 'retentionMaxAgeMs' | 'retentionIntervalMs' | 'snapshotCrashProbability' | 'installCrashProbability'> {
  return {
    retentionSegments: random.pick([0, 2, 4, 8]),
    retentionMaxAgeMs: random.pick([noAgeLimitMs, 1_500, 4_000]),
    retentionIntervalMs: random.pick([100, 500]),
    snapshotCrashProbability: random.pick([0, 0.1, 0.5]),
    installCrashProbability: random.pick([0, 0.5, 0.8]),
  };
}

/** The profile's retention settings, or undefined when it keeps everything. */
export function retentionSettingsOf(profile: BrokerFaultProfile): RetentionSettings | undefined {
  if (profile.retentionSegments === 0 && profile.retentionMaxAgeMs >= noAgeLimitMs) return undefined;
  return {
    maxAgeMs: profile.retentionMaxAgeMs,
    logBytesMax: profile.retentionSegments === 0 ? Infinity : profile.retentionSegments * profile.segmentBytesMax,
    diskUsedRatioMax: 1,
  };
}

export class BrokerSim {
  private readonly scheduler = new SimScheduler();
  private readonly random: Prng;
  private readonly nemesisRandom: Prng;
  private readonly network: SimNetwork;
  private readonly checker: BrokerChecker;
  private readonly workload: BrokerWorkload;
  private readonly slots: Slot[] = [];
  private readonly members: Member[];
  readonly profile: BrokerFaultProfile;
  private readonly trace: SimTrace;
  private readonly transfers: SimTransfers;
  private readonly targetRandom: Prng;
  private readonly retention: RetentionSettings | undefined;
  private faultsActive = false;
  private nextTargetedCrashMs = 0;
  private counts = {
    crashes: 0, partitions: 0, pauses: 0, transfers: 0, leaderChanges: 0, failStops: 0, snapshotsRestored: 0, snapshotsInstalled: 0, restoresWithTimers: 0, installsWithTimers: 0,
    restoresWithTransactions: 0, installsWithTransactions: 0,
    snapshotWriteCrashes: 0, installCrashes: 0, compactions: 0,
  };

  constructor(private readonly options: BrokerSimOptions) {
    this.trace = new SimTrace(options.keepTrace === true);
    this.random = new Prng(options.seed);
    this.nemesisRandom = this.random.fork('nemesis');
    this.profile = { ...drawBrokerProfile(this.random.fork('profile')), ...options.profile };
    this.retention = retentionSettingsOf(this.profile);
    this.targetRandom = this.random.fork('targeted-crash');
    const trace = (line: string): void => this.addTrace(line);
    this.network = new SimNetwork(this.scheduler, this.random.fork('network'), trace);
    this.network.faults = { dropProbability: this.profile.dropProbability, duplicateProbability: this.profile.duplicateProbability, delayMinMs: 1, delayMaxMs: this.profile.delayMaxMs };
    this.checker = new BrokerChecker(watchedGroups, trace, options.blackBoxOnly === true);
    this.workload = new BrokerWorkload({
      endpoints: () => this.endpoints(),
      sleep: (ms) => this.scheduler.sleep(ms),
      after: (ms, callback) => this.scheduler.after(ms, callback),
      trace,
      wallNowMs: () => epochMs + this.scheduler.nowMs,
    }, this.checker, this.random.fork('client'), {
      delayed: options.delayed !== false,
      transactions: options.transactions === true,
      transactionCheck: simTransactionCheck,
      accessControl: options.accessControl === true,
      unsafeAccessModelSkipsCommands: options.unsafeAccessModel === true,
      // The leader fires by its own clock (off by up to the skew), the state clock is the highest leader clock so far.
      latenessBoundMs: 2 * this.profile.clockSkewMaxMs + simTimerFireIntervalMs + 1_500,
    });
    this.members = ['n1', 'n2', 'n3'].map((id) => ({ id, address: id }));
    const diskRandom = this.random.fork('disk');
    const skewRandom = this.random.fork('skew');
    for (const member of this.members) {
      const disk = new SimDisk(diskRandom.fork(member.id), () => {
        this.onDiskOperation(member.id);
        return this.scheduler.sleep(diskRandom.float() * this.profile.diskLatencyMaxMs);
      });
      disk.syncFailureProbability = this.profile.fsyncFailureProbability;
      const skewMs = skewRandom.int(-this.profile.clockSkewMaxMs, this.profile.clockSkewMaxMs);
      this.slots.push({
        id: member.id, disk, skewMs, durableHardState: undefined, incarnation: 0, alive: false, node: undefined, machine: undefined, service: undefined,
        commitLog: undefined, snapshots: undefined, retention: undefined, timers: [], crashArm: undefined,
      });
    }
    this.transfers = new SimTransfers({
      scheduler: this.scheduler, network: this.network, slots: this.slots, trace,
      onInstallStart: (to) => this.maybeArmCrash(to as Slot, 'install', 40),
      onInstallStored: (to) => {
        const slot = to as Slot;
        if (slot.crashArm?.onceStored !== true) return false;
        this.targetedCrash(slot, slot.crashArm);
        return true;
      },
      onInstallFailed: (to) => this.disarm(to as Slot),
    }, this.random.fork('transfers'));
  }

  async run(): Promise<BrokerSimResult> {
    const faultDurationMs = this.options.faultDurationMs ?? 8_000;
    const drainBoundMs = this.options.drainBoundMs ?? 20_000;
    for (const slot of this.slots) this.startNode(slot);
    let setUp = false;
    void this.workload.setUp().then(() => { setUp = true; });
    await this.runChecked(10_000, () => setUp);
    if (!setUp) this.checker.violate('set-up: topics and groups were not created within 10 s without faults');
    if (this.checker.violations.length === 0) {
      const faultsEndMs = this.scheduler.nowMs + faultDurationMs;
      this.faultsActive = true;
      this.workload.start();
      this.scheduleNemesis(faultsEndMs);
      await this.runChecked(faultsEndMs, () => false);
      if (this.checker.violations.length === 0) await this.drain(drainBoundMs);
    }
    this.workload.phase = 'done';
    for (const slot of this.slots) if (slot.alive) this.crash(slot, 'shutdown', false);
    await this.scheduler.runUntil(this.scheduler.nowMs + 100); // let the zombies' promises settle
    return this.result();
  }

  /** Faults stop; every node comes back; the clients must drain and every node converge; then the final reads. */
  private async drain(boundMs: number): Promise<void> {
    this.faultsActive = false;
    this.workload.phase = 'drain';
    const startMs = this.scheduler.nowMs;
    this.workload.healWallMs = epochMs + startMs;
    this.addTrace(`@${startMs} drain: heal, resume, restart`);
    this.network.heal();
    this.network.faults = { ...calmNetwork };
    for (const slot of this.slots) {
      slot.disk.syncFailureProbability = 0;
      if (this.network.isPaused(slot.id)) this.network.resume(slot.id);
      if (!slot.alive) this.startNode(slot);
    }
    const converged = (): boolean => {
      const leader = this.leader();
      if (leader === undefined || !this.workload.drained(leader)) return false;
      const commit = leader.commitIndex;
      return this.slots.every((s) => s.node !== undefined && s.node.appliedIndex === commit && s.machine?.lastAppliedIndex === commit);
    };
    await this.runChecked(startMs + boundMs, converged);
    if (this.checker.violations.length > 0) return;
    if (!converged()) {
      const states = this.slots.map((s) => `${s.id}:${s.node?.role ?? 'down'}/t${s.node?.term}/c${s.node?.commitIndex}/a${s.node?.appliedIndex}${s.node?.failed ? `/failed:${s.node.failed.message}` : ''}`).join(' ');
      const unacked = [...this.workload.sent.values()].filter((m) => m.acked === undefined && !m.abandoned).length;
      const open = this.options.transactions === true ? `, ${this.leader()?.state.openTransactions ?? '?'} transactions open on the leader` : '';
      this.checker.violate(`liveness: not drained within ${boundMs} ms after faults stopped (${unacked} sends unacknowledged${open}; ${states})`);
      return;
    }
    this.workload.phase = 'done';
    // The final reads see a state that no longer moves: retention stops proposing.
    for (const slot of this.slots) slot.retention?.close();
    let verified = false;
    this.workload.verify().then(
      () => { verified = true; },
      (error: unknown) => { verified = true; this.checker.violate(`final reads failed: ${String(error)}`); },
    );
    await this.runChecked(this.scheduler.nowMs + 10_000, () => verified);
    if (!verified) this.checker.violate('final reads did not complete within 10 s');
  }

  private async runChecked(untilMs: number, stop: () => boolean): Promise<void> {
    await this.scheduler.runUntil(untilMs, () => this.checker.violations.length > 0 || stop());
  }

  private endpoints(): BrokerEndpoint[] {
    const out: BrokerEndpoint[] = [];
    for (const slot of this.slots) {
      const { node, machine, service } = slot;
      if (!slot.alive || node === undefined || machine === undefined || service === undefined || this.network.isPaused(slot.id)) continue;
      const incarnation = slot.incarnation;
      out.push({
        id: slot.id, service,
        get state() { return machine.state; },
        get commitIndex() { return node.commitIndex; },
        isCurrent: () => slot.alive && slot.incarnation === incarnation,
      });
    }
    return out;
  }

  /** The live leader of the highest term, as an endpoint. */
  private leader(): BrokerEndpoint | undefined {
    let best: Slot | undefined;
    for (const slot of this.slots) {
      if (slot.alive && slot.node?.role === 'leader' && (best === undefined || slot.node.term > (best.node as RaftNode<ApplyResult>).term)) best = slot;
    }
    return best === undefined ? undefined : this.endpoints().find((e) => e.id === best.id);
  }

  // ---- nodes -------------------------------------------------------------------------------

  private startNode(slot: Slot): void {
    slot.incarnation++;
    slot.alive = true;
    const incarnation = slot.incarnation;
    const isCurrent = (): boolean => slot.alive && slot.incarnation === incarnation;
    const fs = slot.disk.mount();
    const stable = simStableStore(slot, this.scheduler, () => this.nemesisRandom.float() * this.profile.diskLatencyMaxMs, isCurrent);
    const clock = this.clockFor(slot, isCurrent);
    const coreRandom = this.random.fork(`${slot.id}#${incarnation}`);
    const start = async (): Promise<void> => {
      const { log: commitLog, report } = await CommitLog.open({ fs, dir: '/data/log', segmentBytesMax: this.profile.segmentBytesMax });
      const snapshots = await FileSnapshotStore.open({ fs, dir: '/data/snapshots' });
      if (!isCurrent()) return;
      if (report.tornTail !== undefined) this.addTrace(`${slot.id} recovery cut torn tail: ${report.tornTail.bytesDropped} bytes`);
      slot.commitLog = commitLog;
      slot.snapshots = snapshots;
      const timers = new MemoryTimerStore(simTimerLimits, { ...simTimerWheel, ...(this.options.unsafe?.fireIgnoresDue === true ? { negativeControl: 'fire-slot-ignoring-due' as const } : {}) });
      const machine = new BrokerStateMachine(defaultBrokerStateLimits, undefined, undefined, timers, this.options.messageIndex === true ? new MemoryMessageIndexStore() : undefined);
      let restoring = true;
      // Every node tells of each check round it applies (replays at start-up too); a paused node reaches no producer.
      if (this.options.transactions === true) {
        machine.onTransactionChecks((round, entryTimeMs) => {
          if (isCurrent()) this.workload.onTransactionChecks(slot.id, round, entryTimeMs, !this.network.isPaused(slot.id));
        });
      }
      machine.onApplied(() => {
        if (!isCurrent()) return;
        if (restoring) this.counts.snapshotsRestored++;
        this.checker.onApplied(slot.id, incarnation, machine.lastAppliedIndex, machine.state);
      });
      let log: LogStore = this.countingCompactions(commitLog, isCurrent);
      let stateMachine: StateMachine<ApplyResult> = machine;
      if (this.options.unsafe?.applyBeforeCommit === true) ({ log, stateMachine } = applyOnAppend(log, machine));
      const inner = stateMachine;
      // What Raft commits, as a committed-log watcher sees it; installs counted.
      const observed: StateMachine<ApplyResult> = {
        apply: (entries) => {
          this.checker.onCommitted(entries);
          return inner.apply(entries);
        },
        snapshot: () => inner.snapshot(),
        restore: (data, meta) => {
          inner.restore(data, meta);
          if (isCurrent() && machine.state.pendingTimers > 0) this.counts[restoring ? 'restoresWithTimers' : 'installsWithTimers']++;
          if (isCurrent() && machine.state.openTransactions > 0) this.counts[restoring ? 'restoresWithTransactions' : 'installsWithTransactions']++;
          if (restoring || !isCurrent()) return;
          this.counts.snapshotsInstalled++;
          this.disarm(slot);
          this.addTrace(`${slot.id} installed snapshot ${meta.index}/t${meta.term}`);
        },
        firstNeededIndex: () => inner.firstNeededIndex(),
      };
      const node = await RaftNode.start<ApplyResult>({
        groupId: 'sim-broker',
        core: {
          id: slot.id, electionTimeoutTicks: 15, heartbeatIntervalTicks: 3, preVote: true, checkQuorum: true,
          appendEntriesMax: this.profile.appendEntriesMax, appendBytesMax: 64 * 1024, inflightAppendsMax: 8, uncommittedEntriesMax: 4096,
        },
        bootstrapMembers: this.members,
        log, stable, stateMachine: observed, snapshots: this.crashingSnapshotWrites(slot, incarnation, snapshots),
        snapshotEveryEntries: this.profile.snapshotEveryEntries, snapshotCatchUpEntries: 64,
        transport: {
          send: (message) => {
            if (!isCurrent()) return;
            if (message.type === 'install-snapshot') this.transfers.streamSnapshot(slot, incarnation, message);
            else this.network.send(message);
          },
        },
        clock,
        random: { nextInt: (max) => coreRandom.int(0, max - 1) },
        logger: silentLogger,
        tickIntervalMs, flushMode: 'sync', flushIntervalMs: 50,
        onFailed: (error) => {
          if (!isCurrent()) return;
          if (error.cause instanceof InvariantViolation) {
            this.checker.violate(`${slot.id} stopped on an invariant: ${error.cause.message}`);
            return;
          }
          this.failStop(slot, String(error.cause));
        },
        onSoftState: (soft) => {
          if (!isCurrent()) return;
          this.addTrace(`${slot.id} ${soft.role} t${soft.term} leader=${soft.leaderId ?? '-'}`);
          if (soft.role === 'leader') this.counts.leaderChanges++;
        },
      });
      restoring = false;
      if (!isCurrent()) {
        await node.close();
        return;
      }
      const nodeRaft = {
        propose: (payload: Uint8Array) => node.propose(payload),
        get role() { return node.role; },
        get term() { return node.term; },
        leaderAddress: () => node.leaderId,
      };
      const flip = this.options.unsafe?.transactionEnds;
      const raft = flip === undefined ? nodeRaft : transactionEndsFlipped(nodeRaft, flip);
      // As broker-node.ts: entries before this node's log (it was restored by InstallSnapshot) come from a peer.
      const peerEntries = new PeerEntries({
        readCommitted: (peer, fromIndex, maxEntries) => this.transfers.readCommitted(slot, peer.id, fromIndex, maxEntries),
        peers: () => node.members.filter((m) => m.id !== slot.id),
      });
      const service = new BrokerService({
        ...defaultBrokerServiceOptions, brokerGroup: 'sim-broker', readReadyWaitMs: 1_000, timerFireIntervalMs: simTimerFireIntervalMs, transactionCheck: simTransactionCheck,
      }, raft, machine, {
        payloadAt: async (index) => {
          if (index < commitLog.firstIndex) return peerEntries.payload(index);
          const [entry] = await commitLog.read({ fromIndex: index, throughIndex: index, bytesMax: 1 });
          if (entry === undefined) throw new BrokerError('INTERNAL_SERVER_ERROR', `log entry ${index} is missing (deleted by retention?)`);
          return entry.payload;
        },
      }, clock);
      service.start(500);
      if (this.retention !== undefined) {
        slot.retention = new RetentionService({
          settings: this.retention, intervalMs: this.profile.retentionIntervalMs, machine,
          raft: this.options.unsafe?.retentionAhead === undefined ? raft : retentionAhead(raft, this.options.unsafe.retentionAhead),
          segments: () => commitLog.segments(), segmentCount: () => commitLog.segmentCount, diskUsedRatio: () => Promise.resolve(undefined), clock, logger: silentLogger,
        });
        slot.retention.start();
      }
      slot.node = node;
      slot.machine = machine;
      slot.service = service;
      this.network.attach(slot.id, (message) => node.receive(message));
    };
    start().catch((error: unknown) => {
      if (!isCurrent()) return;
      if (error instanceof SimDiskError) {
        this.failStop(slot, `during start-up: ${error.message}`);
        return;
      }
      this.checker.violate(`${slot.id} failed to start: ${String(error)}`);
    });
  }

  /**
   * The node's clocks in simulated time: monotonic time is the scheduler's, wall time is off
   * by the node's skew; timers of a crashed incarnation never fire, and `every` skips while
   * the node is paused (as sim-cluster's Raft clock does).
   */
  private clockFor(slot: Slot, isCurrent: () => boolean): ServiceClock {
    return simNodeClock({ scheduler: this.scheduler, isCurrent, isPaused: () => this.network.isPaused(slot.id), timers: slot.timers, wallOffsetMs: epochMs + slot.skewMs });
  }

  private crash(slot: Slot, why: string, loseUnsynced = true): void {
    this.addTrace(`@${this.scheduler.nowMs} crash ${slot.id} (${why})`);
    slot.alive = false;
    slot.incarnation++;
    this.network.attach(slot.id, undefined);
    for (const timer of slot.timers.splice(0)) timer.dispose();
    const { node, service, retention } = slot;
    slot.node = undefined;
    slot.machine = undefined;
    slot.service = undefined;
    slot.commitLog = undefined;
    slot.snapshots = undefined;
    slot.retention = undefined;
    slot.crashArm = undefined;
    retention?.close();
    if (loseUnsynced) slot.disk.crash({ keepSomeUnsynced: this.profile.keepSomeUnsynced, tear: this.profile.tornWrites });
    // Queued sends were never proposed (definite); proposals in the log end unknown.
    service?.close();
    if (node !== undefined) void node.close();
  }

  /** The log as Raft sees it, counting compactions (deletePrefix calls that dropped segments). */
  private countingCompactions(log: CommitLog, isCurrent: () => boolean): LogStore {
    const counts = this.counts;
    return new Proxy(log, {
      get(target, property) {
        if (property === 'deletePrefix') {
          return async (throughIndex: number) => {
            const before = target.firstIndex;
            const first = await target.deletePrefix(throughIndex);
            if (first > before && isCurrent()) counts.compactions++;
            return first;
          };
        }
        const value: unknown = Reflect.get(target, property, target);
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
  }

  /** The snapshot store as Raft sees it: a write may be cut by a targeted crash. */
  private crashingSnapshotWrites(slot: Slot, incarnation: number, store: FileSnapshotStore): SnapshotStore {
    return {
      loadNewest: () => store.loadNewest(),
      save: (meta, data) => {
        const armed = this.maybeArmCrash(slot, 'snapshot write', 8);
        const saving = store.save(meta, data);
        if (armed) {
          const done = (): void => { if (slot.incarnation === incarnation) this.disarm(slot); };
          saving.then(done, done);
        }
        return saving;
      },
      newest: () => store.newest(),
      readFileChunk: (snapshot, offset, length) => store.readFileChunk(snapshot, offset, length),
      receive: (meta, fileBytes) => store.receive(meta, fileBytes),
    };
  }

  /**
   * While faults run, now and then: crash `slot` just before one of its next `opsMax` disk
   * operations (the snapshot write or install it is starting is then likely cut short).
   */
  private maybeArmCrash(slot: Slot, why: 'snapshot write' | 'install', opsMax: number): boolean {
    if (!this.faultsActive || !slot.alive || slot.crashArm !== undefined || this.scheduler.nowMs < this.nextTargetedCrashMs) return false;
    if (!this.targetRandom.chance(why === 'install' ? this.profile.installCrashProbability : this.profile.snapshotCrashProbability)) return false;
    this.nextTargetedCrashMs = this.scheduler.nowMs + targetedCrashGapMs;
    // An install is cut at one of its disk operations, or just after its file is stored.
    const onceStored = why === 'install' && this.targetRandom.chance(0.5);
    slot.crashArm = { opsLeft: onceStored ? Infinity : this.targetRandom.int(1, opsMax), why, incarnation: slot.incarnation, onceStored };
    return true;
  }

  private disarm(slot: Slot): void {
    slot.crashArm = undefined;
  }

  /** Before each disk operation of `id`'s disk: an armed crash goes off on its count. */
  private onDiskOperation(id: NodeId): void {
    const slot = this.slots.find((s) => s.id === id);
    const arm = slot?.crashArm;
    if (slot === undefined || arm === undefined || --arm.opsLeft > 0) return;
    // Synchronously, so the operation about to run fails (its mount is gone) and none after it runs.
    this.targetedCrash(slot, arm);
  }

  private targetedCrash(slot: Slot, arm: NonNullable<Slot['crashArm']>): void {
    slot.crashArm = undefined;
    if (!this.faultsActive || !slot.alive || slot.incarnation !== arm.incarnation) return;
    if (arm.why === 'install') this.counts.installCrashes++;
    else this.counts.snapshotWriteCrashes++;
    this.crash(slot, arm.why === 'snapshot write' ? 'during a snapshot write' : arm.onceStored ? 'with a received snapshot stored, not yet installed' : 'during an install');
    this.scheduler.after(this.targetRandom.int(0, this.profile.restartDelayMaxMs), () => { if (!slot.alive && this.faultsActive) this.startNode(slot); });
  }

  private failStop(slot: Slot, what: string): void {
    this.counts.failStops++;
    this.addTrace(`@${this.scheduler.nowMs} ${slot.id} fail-stop: ${what}`);
    this.crash(slot, 'fail-stop');
    this.scheduler.after(this.nemesisRandom.int(10, 500), () => { if (!slot.alive) this.startNode(slot); });
  }

  // ---- nemesis -----------------------------------------------------------------------------

  private scheduleNemesis(untilMs: number): void {
    const step = (): void => {
      if (!this.faultsActive || this.scheduler.nowMs >= untilMs) return;
      this.nemesisStep();
      this.scheduler.after(this.nemesisRandom.int(this.profile.nemesisIntervalMs / 2, this.profile.nemesisIntervalMs), step);
    };
    this.scheduler.after(this.nemesisRandom.int(100, this.profile.nemesisIntervalMs), step);
  }

  private nemesisStep(): void {
    const random = this.nemesisRandom;
    const ids = this.slots.map((s) => s.id);
    const weights = [this.profile.partitionWeight, this.profile.crashWeight, this.profile.pauseWeight, 2, this.profile.transferWeight];
    let pick = random.int(0, weights.reduce((a, b) => a + b, 0) - 1);
    let kind = 0;
    while (pick >= (weights[kind] as number)) pick -= weights[kind++] as number;
    const leaderSlot = this.slots.find((s) => s.alive && s.node?.role === 'leader');
    if (kind === 0) {
      this.counts.partitions++;
      this.network.heal();
      const shape = random.int(0, 2);
      if (shape === 0 && leaderSlot !== undefined) this.network.partition([[leaderSlot.id], ids.filter((id) => id !== leaderSlot.id)]);
      else if (shape === 1) {
        const shuffled = random.shuffle(ids);
        this.network.partition([shuffled.slice(0, 1), shuffled.slice(1)]);
      } else {
        const [a, b] = random.shuffle(ids);
        this.network.cut(a as NodeId, b as NodeId);
      }
      this.addTrace(`@${this.scheduler.nowMs} partition ${this.network.describePartitions()}`);
    } else if (kind === 1) {
      const target = leaderSlot !== undefined && random.chance(0.4) ? leaderSlot : random.pick(this.slots.filter((s) => s.alive));
      if (target === undefined) return;
      this.counts.crashes++;
      this.crash(target, 'nemesis');
      this.scheduler.after(random.int(0, this.profile.restartDelayMaxMs), () => { if (!target.alive && this.faultsActive) this.startNode(target); });
    } else if (kind === 2) {
      const target = random.pick(this.slots.filter((s) => s.alive && !this.network.isPaused(s.id)));
      if (target === undefined) return;
      this.counts.pauses++;
      this.network.pause(target.id);
      this.addTrace(`@${this.scheduler.nowMs} pause ${target.id}`);
      this.scheduler.after(random.int(50, 2000), () => {
        this.addTrace(`@${this.scheduler.nowMs} resume ${target.id}`);
        this.network.resume(target.id);
      });
    } else if (kind === 3) {
      this.network.heal();
      this.addTrace(`@${this.scheduler.nowMs} heal`);
    } else {
      const node = leaderSlot?.node;
      if (node === undefined) return;
      const target = random.pick(ids.filter((id) => id !== node.id));
      this.counts.transfers++;
      this.addTrace(`@${this.scheduler.nowMs} transfer leadership ${node.id} -> ${target}`);
      node.transferLeadership(target).then((outcome) => this.addTrace(`transfer ${outcome.kind}`), () => undefined);
    }
  }

  // ---- trace and result ----------------------------------------------------------------------

  private addTrace(line: string): void {
    this.trace.add(line);
  }

  private result(): BrokerSimResult {
    const violations = this.checker.violations;
    return {
      seed: this.options.seed,
      ok: violations.length === 0,
      violations,
      traceHash: this.trace.hash,
      traceTail: this.trace.tail(),
      stats: {
        ...this.workload.stats,
        events: this.scheduler.eventsRun,
        simulatedMs: this.scheduler.nowMs,
        messagesStored: this.workload.storedMessages,
        messagesReleased: this.workload.releasedMessages,
        messagesExpired: this.workload.expiredMessages,
        deadLettered: this.workload.deadLettered,
        digestsCompared: this.checker.digestsCompared,
        ...this.counts,
        ...this.transfers.stats,
        retentionReleases: this.checker.retentionReleases,
      },
      profile: this.profile,
    };
  }
}

export function runBrokerSimulation(options: BrokerSimOptions): Promise<BrokerSimResult> {
  return new BrokerSim(options).run();
}
