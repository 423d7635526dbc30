import * as path from 'node:path';
import { CommitLog } from '../commitlog/commit-log.js';
import { FileSnapshotStore } from '../commitlog/snapshot-store.js';
import { parseSegmentFileName } from '../commitlog/record-codec.js';
import { InvariantViolation } from '../util/assert.js';
import type { ProposalError } from '../raft/node/errors.js';
import { silentLogger, type Disposable } from '../raft/node/ports.js';
import { RaftNode, type RaftNodeOptions } from '../raft/node/raft-node.js';
import type { UnsafeSwitches } from '../raft/core/raft-core.js';
import type { Entry, HardState, InstallSnapshot, LogIndex, Member, NodeId, Term } from '../raft/types.js';
import { Prng } from './prng.js';
import { SafetyChecker } from './sim-checker.js';
import { SimDisk, SimDiskError } from './sim-disk.js';
import { SimNetwork, calmNetwork } from './sim-network.js';
import { SimScheduler } from './sim-scheduler.js';
import { SimTrace, simNodeClock } from './sim-clock.js';
import { simStableStore } from './sim-stable-store.js';

/** Fault mix for one seed; drawn from the seed (swarm testing) unless overridden. */
export interface FaultProfile {
  dropProbability: number;
  duplicateProbability: number;
  delayMaxMs: number;
  nemesisIntervalMs: number;
  partitionWeight: number;
  crashWeight: number;
  pauseWeight: number;
  /** A crash keeps a random prefix of unsynced writes (otherwise loses them all). */
  keepSomeUnsynced: boolean;
  tornWrites: boolean;
  restartDelayMaxMs: number;
  diskLatencyMaxMs: number;
  segmentBytesMax: number;
  appendEntriesMax: number;
  /** Probability that a datasync fails with EIO; the node must stop (fail-stop). */
  fsyncFailureProbability: number;
  /** Weight of single-server membership changes (remove a member, later add it back). */
  membershipWeight: number;
  /** Applied entries between snapshots; each snapshot compacts the log, so followers get InstallSnapshot. */
  snapshotEveryEntries: number;
}

export interface SimOptions {
  readonly seed: number;
  readonly nodeCount: number;
  readonly faultDurationMs?: number;
  readonly livenessBoundMs?: number;
  readonly opsMax?: number;
  readonly profile?: Partial<FaultProfile>;
  readonly unsafe?: UnsafeSwitches & { readonly ackBeforeFsync?: boolean };
  /** Turns off protocol features, to show a liveness scenario bites without them. */
  readonly withoutPreVoteAndCheckQuorum?: boolean;
  /** Keep the whole trace (for replay output); otherwise only the tail. */
  readonly keepTrace?: boolean;
  /** A scripted fault schedule instead of the random nemesis and client (directed scenarios). */
  readonly script?: (control: SimControl) => Promise<void>;
}

/** What a scripted scenario can do; every wait is bounded in simulated time. */
export interface SimControl {
  readonly ids: readonly NodeId[];
  node(id: NodeId): RaftNode | undefined;
  /** The live leader with the highest term, if any. */
  leader(): NodeId | undefined;
  waitFor(what: string, predicate: () => boolean, timeoutMs?: number): Promise<void>;
  sleep(ms: number): Promise<void>;
  /** Replaces all cuts with this partition. */
  partition(sides: ReadonlyArray<readonly NodeId[]>): void;
  /** Adds a cut between `id` and every other node, keeping existing cuts. */
  isolate(id: NodeId): void;
  heal(): void;
  crash(id: NodeId): void;
  restart(id: NodeId): void;
  /** Proposes on `id`; an acknowledgement is recorded and checked like any client op. */
  propose(id: NodeId): void;
  /** Client proposals started and not yet settled (acknowledged, failed or unknown). */
  inFlight(): number;
  /** Asks `id` (the leader) for a single-server membership change. */
  changeMembership(id: NodeId, change: { readonly add: Member } | { readonly remove: NodeId }): void;
  /** Cuts `bytes` of synced data off the end of a crashed node's newest segment (storage fault). */
  truncateLogTail(id: NodeId, bytes: number): void;
  /** Runs `action` synchronously inside the event where `id` first becomes leader. */
  onLeader(id: NodeId, action: () => void): void;
}

/** A scripted scenario whose setup did not happen (a wait timed out); not a safety verdict. */
export class ScenarioStuck extends Error {
  override readonly name = 'ScenarioStuck';
}

export interface SimResult {
  readonly seed: number;
  readonly nodeCount: number;
  readonly ok: boolean;
  readonly violations: readonly string[];
  readonly traceHash: string;
  readonly traceTail: readonly string[];
  readonly stats: {
    readonly events: number;
    readonly simulatedMs: number;
    readonly acked: number;
    readonly failedDefinite: number;
    readonly unknown: number;
    readonly committedIndex: number;
    readonly crashes: number;
    readonly partitions: number;
    readonly pauses: number;
    readonly leaderChanges: number;
    readonly bytesDiscarded: number;
    readonly failStops: number;
    readonly membershipChanges: number;
    /** Snapshots a follower received and handed to its node (InstallSnapshot). */
    readonly snapshotsInstalled: number;
  };
  readonly profile: FaultProfile;
  /** Set when a scripted scenario could not set itself up. */
  readonly scenarioStuck: string | undefined;
}

/** Faults a scripted scenario does not get unless it asks: it schedules its own. */
const scriptedRunFaultsOff: Partial<FaultProfile> = { dropProbability: 0, duplicateProbability: 0, delayMaxMs: 10, fsyncFailureProbability: 0, membershipWeight: 0 };

export function drawProfile(random: Prng): FaultProfile {
  return {
    dropProbability: random.chance(0.5) ? 0 : random.float() * 0.1,
    duplicateProbability: random.chance(0.5) ? 0 : random.float() * 0.05,
    delayMaxMs: random.int(2, 40),
    nemesisIntervalMs: random.int(200, 2000),
    partitionWeight: random.int(0, 3),
    crashWeight: random.int(1, 3),
    pauseWeight: random.int(0, 2),
    keepSomeUnsynced: random.chance(0.5),
    tornWrites: random.chance(0.7),
    restartDelayMaxMs: random.int(0, 2000),
    diskLatencyMaxMs: random.pick([0.05, 0.5, 2]),
    segmentBytesMax: random.pick([2048, 16384, 1 << 20]),
    appendEntriesMax: random.pick([1, 4, 64]),
    fsyncFailureProbability: random.chance(0.2) ? 0.002 : 0,
    membershipWeight: random.chance(0.5) ? 0 : random.int(1, 2),
    snapshotEveryEntries: random.pick([16, 128, Number.MAX_SAFE_INTEGER]),
  };
}

interface Slot {
  readonly id: NodeId;
  readonly disk: SimDisk;
  durableHardState: HardState | undefined;
  incarnation: number;
  node: RaftNode | undefined;
  snapshots: FileSnapshotStore | undefined;
  timers: Disposable[];
  alive: boolean;
}

const tickIntervalMs = 10;

function encodeAppliedIndex(index: LogIndex): Uint8Array {
  const data = Buffer.alloc(8);
  data.writeDoubleBE(index, 0);
  return data;
}

function decodeAppliedIndex(data: Uint8Array): LogIndex {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).readDoubleBE(0);
}

/**
 * One seeded simulation: a group of real RaftNodes (real core, node loop and commitlog) over
 * SimDisk, a simulated stable store, SimNetwork and simulated time. A fault phase with a
 * client workload is followed by a liveness phase (faults stop, everything restarts and
 * heals) that must elect a leader and commit within a bound; then every acknowledged
 * proposal must be present.
 */
export class SimCluster {
  private readonly scheduler = new SimScheduler();
  private readonly random: Prng;
  private readonly nemesisRandom: Prng;
  private readonly clientRandom: Prng;
  private readonly network: SimNetwork;
  private readonly checker: SafetyChecker;
  private readonly slots: Slot[] = [];
  private readonly members: Member[];
  readonly profile: FaultProfile;
  private readonly trace: SimTrace;
  private readonly acked = new Map<number, { index: LogIndex; term: Term; payload: Uint8Array }>();
  private failedDefinite = 0;
  private unknown = 0;
  private opsStarted = 0;
  private opsInFlight = 0;
  private leaderGuess: NodeId | undefined;
  private counts = { crashes: 0, partitions: 0, pauses: 0, leaderChanges: 0, failStops: 0, membershipChanges: 0, snapshotsInstalled: 0 };
  private faultsActive = true;
  private waiters: Array<{ predicate: () => boolean; resolve: () => void }> = [];
  private leaderHooks: Array<{ id: NodeId; action: () => void }> = [];
  private scenarioStuck: string | undefined;

  constructor(private readonly options: SimOptions) {
    this.trace = new SimTrace(options.keepTrace === true);
    this.random = new Prng(options.seed);
    this.nemesisRandom = this.random.fork('nemesis');
    this.clientRandom = this.random.fork('client');
    // A scripted run brings its own faults: the random ones start switched off.
    this.profile = { ...drawProfile(this.random.fork('profile')), ...(options.script === undefined ? {} : scriptedRunFaultsOff), ...options.profile };
    const trace = (line: string): void => this.addTrace(line);
    this.network = new SimNetwork(this.scheduler, this.random.fork('network'), trace);
    this.network.faults = { dropProbability: this.profile.dropProbability, duplicateProbability: this.profile.duplicateProbability, delayMinMs: 1, delayMaxMs: this.profile.delayMaxMs };
    this.checker = new SafetyChecker(trace);
    this.members = Array.from({ length: options.nodeCount }, (_, i) => ({ id: `n${i + 1}`, address: `sim://n${i + 1}` }));
    const diskRandom = this.random.fork('disk');
    for (const member of this.members) {
      const latencyMax = this.profile.diskLatencyMaxMs;
      const disk = new SimDisk(diskRandom.fork(member.id), () => this.scheduler.sleep(diskRandom.float() * latencyMax));
      disk.syncFailureProbability = this.profile.fsyncFailureProbability;
      this.slots.push({ id: member.id, disk, durableHardState: undefined, incarnation: 0, node: undefined, snapshots: undefined, timers: [], alive: false });
    }
  }

  async run(): Promise<SimResult> {
    const faultDurationMs = this.options.faultDurationMs ?? 15_000;
    const livenessBoundMs = this.options.livenessBoundMs ?? 10_000;
    for (const slot of this.slots) this.startNode(slot);
    this.scheduler.afterEvent = () => this.wakeWaiters();
    let scriptDone = false;
    if (this.options.script === undefined) {
      this.scheduleClient();
      this.scheduleNemesis(faultDurationMs);
    } else {
      this.options.script(this.control()).then(
        () => { scriptDone = true; },
        (error: unknown) => {
          scriptDone = true;
          if (error instanceof ScenarioStuck) this.scenarioStuck = error.message;
          else this.checker.violations.push(`script failed: ${String(error)}`);
        },
      );
    }
    await this.runChecked(faultDurationMs, () => scriptDone);
    this.waiters = [];
    if (this.checker.violations.length === 0) await this.livenessPhase(Math.max(this.scheduler.nowMs, 1), livenessBoundMs);
    for (const slot of this.slots) if (slot.alive) this.crash(slot, 'shutdown', false);
    return this.result();
  }

  private async livenessPhase(startMs: number, boundMs: number): Promise<void> {
    this.faultsActive = false;
    this.addTrace(`@${startMs} liveness phase: heal, resume, restart`);
    this.network.heal();
    this.network.faults = { ...calmNetwork };
    for (const slot of this.slots) slot.disk.syncFailureProbability = 0;
    for (const slot of this.slots) {
      if (this.network.isPaused(slot.id)) this.network.resume(slot.id);
      if (!slot.alive) this.startNode(slot);
    }
    // Progress: after faults stop, a leader must commit a fresh proposal and every node
    // must apply everything committed, within the bound.
    let probeCommitted = false;
    const deadline = startMs + boundMs;
    const probe = async (): Promise<void> => {
      while (!probeCommitted && this.scheduler.nowMs < deadline) {
        const leader = this.currentLeader();
        const missing = leader === undefined ? undefined : this.members.find((m) => !leader.members.some((x) => x.id === m.id));
        if (leader !== undefined && missing !== undefined) {
          await leader.changeMembership({ add: missing }).catch(() => undefined);
        } else if (leader !== undefined) {
          try {
            await leader.propose(new TextEncoder().encode('liveness-probe'));
            probeCommitted = true;
            return;
          } catch {
            // try again after a moment
          }
        }
        await this.scheduler.sleep(50);
      }
    };
    void probe();
    const converged = (): boolean => {
      if (!probeCommitted || this.opsInFlight > 0) return false;
      const nodes = this.slots.map((s) => s.node);
      const leader = nodes.find((n) => n?.role === 'leader');
      return leader !== undefined && leader.members.length === this.members.length
        && nodes.every((n) => n !== undefined && n.appliedIndex === leader.commitIndex && n.lastIndex === leader.lastIndex);
    };
    await this.runChecked(deadline, converged);
    this.checkContinuous();
    if (this.checker.violations.length > 0) return;
    if (!converged()) {
      const states = this.slots.map((s) => `${s.id}:${s.node?.role ?? 'down'}/t${s.node?.term}/c${s.node?.commitIndex}/a${s.node?.appliedIndex}/l${s.node?.lastIndex}${s.node?.failed ? '/failed:' + s.node.failed.message : ''}`).join(' ');
      this.checker.violations.push(`liveness: no convergence within ${boundMs} ms after faults stopped (probe committed: ${probeCommitted}, ops in flight: ${this.opsInFlight}; ${states})`);
      return;
    }
    this.checker.checkAcknowledged(this.acked);
  }

  private wakeWaiters(): boolean {
    let woke = false;
    for (const waiter of [...this.waiters]) {
      if (!waiter.predicate()) continue;
      this.waiters.splice(this.waiters.indexOf(waiter), 1);
      waiter.resolve();
      woke = true;
    }
    return woke;
  }

  private control(): SimControl {
    const slot = (id: NodeId): Slot => {
      const found = this.slots.find((s) => s.id === id);
      if (found === undefined) throw new Error(`no node ${id}`);
      return found;
    };
    return {
      ids: this.slots.map((s) => s.id),
      node: (id) => slot(id).node,
      leader: () => this.currentLeader()?.id,
      waitFor: (what, predicate, timeoutMs = 5_000) => new Promise<void>((resolve, reject) => {
        if (predicate()) {
          resolve();
          return;
        }
        const timer = this.scheduler.after(timeoutMs, () => reject(new ScenarioStuck(`timed out waiting for ${what}`)));
        this.waiters.push({ predicate, resolve: () => { timer.cancel(); resolve(); } });
      }),
      sleep: (ms) => this.scheduler.sleep(ms),
      partition: (sides) => {
        this.network.heal();
        this.network.partition(sides);
        this.addTrace(`@${this.scheduler.nowMs} partition ${this.network.describePartitions()}`);
      },
      isolate: (id) => {
        this.network.partition([[id], this.slots.map((s) => s.id).filter((other) => other !== id)]);
        this.addTrace(`@${this.scheduler.nowMs} isolate ${id}`);
      },
      heal: () => {
        this.network.heal();
        this.addTrace(`@${this.scheduler.nowMs} heal`);
      },
      crash: (id) => this.crash(slot(id), 'script'),
      restart: (id) => { if (!slot(id).alive) this.startNode(slot(id)); },
      truncateLogTail: (id, bytes) => {
        const disk = slot(id).disk;
        const newest = disk.fileNames().filter((name) => parseSegmentFileName(path.basename(name)) !== undefined).sort().pop();
        if (newest !== undefined) disk.truncateDurable(newest, bytes);
        this.addTrace(`@${this.scheduler.nowMs} truncate ${id} ${newest ?? '(no segment)'} by ${bytes} bytes`);
      },
      propose: (id) => {
        const target = slot(id);
        if (target.node !== undefined) this.proposeOn(target);
      },
      inFlight: () => this.opsInFlight,
      changeMembership: (id, change) => {
        const node = slot(id).node;
        if (node !== undefined) this.requestMembershipChange(node, change);
      },
      onLeader: (id, action) => { this.leaderHooks.push({ id, action }); },
    };
  }

  private checkContinuous(): void {
    const live = this.slots.filter((s) => s.alive && s.node !== undefined);
    for (const slot of live) this.checker.onCommitIndex(slot.id, slot.incarnation, (slot.node as RaftNode).commitIndex);
    this.checker.checkLogMatching(live.map((slot) => slot.node as RaftNode));
  }

  /** Runs events until `untilMs` or `stop()`, checking the continuous invariants as it goes. */
  private async runChecked(untilMs: number, stop: () => boolean): Promise<void> {
    let events = 0;
    await this.scheduler.runUntil(untilMs, () => {
      if (++events % 64 === 0) this.checkContinuous();
      return this.checker.violations.length > 0 || stop();
    });
  }

  /** The live node that leads the highest term, if any. */
  private currentLeader(): RaftNode | undefined {
    let leader: RaftNode | undefined;
    for (const slot of this.slots) {
      const node = slot.node;
      if (slot.alive && node?.role === 'leader' && (leader === undefined || node.term > leader.term)) leader = node;
    }
    return leader;
  }

  /** A node stopped itself on an injected disk fault: like a supervisor, restart it later. */
  private failStop(slot: Slot, what: string): void {
    this.counts.failStops++;
    this.addTrace(`@${this.scheduler.nowMs} ${slot.id} fail-stop: ${what}`);
    this.crash(slot, 'fail-stop');
    this.scheduler.after(this.nemesisRandom.int(10, 500), () => { if (!slot.alive) this.startNode(slot); });
  }

  private startNode(slot: Slot): void {
    slot.incarnation++;
    slot.alive = true;
    const incarnation = slot.incarnation;
    const isCurrent = (): boolean => slot.alive && slot.incarnation === incarnation;
    const fs = slot.disk.mount();
    const stable = simStableStore(slot, this.scheduler, () => this.nemesisRandom.float() * this.profile.diskLatencyMaxMs, isCurrent);
    const clock = simNodeClock({ scheduler: this.scheduler, isCurrent, isPaused: () => this.network.isPaused(slot.id), timers: slot.timers, wallOffsetMs: 0 });
    const coreRandom = this.random.fork(`${slot.id}#${incarnation}`);
    let appliedThrough = 0;
    const start = async (): Promise<void> => {
      const { log, report } = await CommitLog.open({ fs, dir: '/data/log', segmentBytesMax: this.profile.segmentBytesMax });
      const snapshots = await FileSnapshotStore.open({ fs, dir: '/data/snapshots' });
      if (!isCurrent()) return;
      slot.snapshots = snapshots;
      if (report.tornTail !== undefined) this.addTrace(`${slot.id} recovery cut torn tail: ${report.tornTail.bytesDropped} bytes`);
      const options: RaftNodeOptions = {
        groupId: 'sim',
        core: {
          id: slot.id, electionTimeoutTicks: 15, heartbeatIntervalTicks: 3,
          preVote: this.options.withoutPreVoteAndCheckQuorum !== true, checkQuorum: this.options.withoutPreVoteAndCheckQuorum !== true,
          appendEntriesMax: this.profile.appendEntriesMax, appendBytesMax: 64 * 1024, inflightAppendsMax: 8, uncommittedEntriesMax: 4096,
          ...(this.options.unsafe === undefined ? {} : { unsafe: this.options.unsafe }),
        },
        bootstrapMembers: this.members,
        log, stable,
        transport: {
          send: (message) => {
            if (!isCurrent()) return;
            if (message.type === 'install-snapshot') this.streamSnapshot(slot, incarnation, message);
            else this.network.send(message);
          },
        },
        snapshots, snapshotEveryEntries: this.profile.snapshotEveryEntries,
        // A tiny catch-up window, so a follower that fell behind is sent a snapshot.
        snapshotCatchUpEntries: 2,
        stateMachine: {
          apply: (entries) => {
            if (isCurrent()) this.checker.onApply(slot.id, incarnation, entries, slot.node?.role === 'leader' ? slot.node.term : undefined);
            if (entries.length > 0) appliedThrough = (entries[entries.length - 1] as Entry).index;
            return entries.map(() => undefined);
          },
          firstNeededIndex: () => appliedThrough + 1,
          // The checker keeps what was applied; the state itself is how far this node got.
          snapshot: () => encodeAppliedIndex(appliedThrough),
          restore: (data, meta) => {
            appliedThrough = decodeAppliedIndex(data);
            if (isCurrent()) this.checker.onRestore(slot.id, incarnation, meta.index, appliedThrough);
          },
        },
        clock,
        random: { nextInt: (max) => coreRandom.int(0, max - 1) },
        logger: silentLogger,
        tickIntervalMs, flushMode: 'sync', flushIntervalMs: 50,
        unsafeAckBeforeFsync: this.options.unsafe?.ackBeforeFsync === true,
        onFailed: (error) => {
          if (!isCurrent()) return;
          // An assertion inside a node is a found bug.
          if (error.cause instanceof InvariantViolation) {
            this.checker.violations.push(`${slot.id} stopped on an invariant: ${error.cause.message}`);
            return;
          }
          this.failStop(slot, String(error.cause));
        },
        onSoftState: (soft) => {
          if (!isCurrent()) return;
          this.addTrace(`${slot.id} ${soft.role} t${soft.term} leader=${soft.leaderId ?? '-'}`);
          if (soft.role !== 'leader') return;
          for (const hook of this.leaderHooks.filter((h) => h.id === slot.id)) {
            this.leaderHooks.splice(this.leaderHooks.indexOf(hook), 1);
            hook.action();
          }
          if (slot.node !== undefined) {
            this.counts.leaderChanges++;
            this.checker.onLeader(slot.node, soft.term);
          }
        },
      };
      const node = await RaftNode.start(options);
      if (!isCurrent()) {
        await node.close();
        return;
      }
      slot.node = node;
      this.network.attach(slot.id, (message) => node.receive(message));
    };
    start().catch((error: unknown) => {
      if (!isCurrent()) return;
      if (error instanceof SimDiskError) {
        this.failStop(slot, `during start-up: ${error.message}`); // an injected fault in recovery
        return;
      }
      this.checker.violations.push(`${slot.id} failed to start: ${String(error)}`);
    });
  }

  /**
   * InstallSnapshot between simulated nodes: the leader's newest snapshot file is read and
   * written into the follower's store in chunks after a network delay, as the gRPC stream
   * does; a partition, drop or crash on either side fails the transfer (the leader retries).
   */
  private streamSnapshot(from: Slot, fromIncarnation: number, message: InstallSnapshot): void {
    const to = this.slots.find((s) => s.id === message.to);
    const sender = from.node;
    const source = from.snapshots;
    const stored = source?.newest();
    const report = (ok: boolean): void => { if (from.alive && from.incarnation === fromIncarnation) sender?.reportSnapshot(message.to, ok); };
    if (to === undefined || sender === undefined || source === undefined || stored === undefined) {
      report(false);
      return;
    }
    const transfer = async (): Promise<void> => {
      await this.scheduler.sleep(this.random.int(1, Math.max(1, this.profile.delayMaxMs)));
      const targetIncarnation = to.incarnation;
      const target = to.node;
      const store = to.snapshots;
      const reachable = (): boolean => to.alive && to.incarnation === targetIncarnation && !this.network.isBlocked(message.from, message.to) && !this.network.isPaused(message.to);
      if (target === undefined || store === undefined || !reachable() || this.random.chance(this.profile.dropProbability)) return report(false);
      const receiver = store.receive(stored.meta, stored.fileBytes);
      try {
        const chunkBytes = 4096;
        for (let offset = 0; offset < stored.fileBytes; offset += chunkBytes) {
          const chunk = await source.readFileChunk(stored, offset, Math.min(chunkBytes, stored.fileBytes - offset));
          if (!reachable()) throw new Error('snapshot stream broken');
          await receiver.write(offset, chunk);
        }
        const { data } = await receiver.finish();
        if (!reachable()) return report(false);
        this.addTrace(`${message.from}->${message.to} snapshot ${stored.meta.index}/t${stored.meta.term} (${stored.fileBytes} bytes) received`);
        this.counts.snapshotsInstalled++;
        target.receiveSnapshot({ ...message, snapshot: stored.meta }, data);
        report(true);
      } catch (error) {
        await receiver.abort().catch(() => undefined);
        void error;
        report(false);
      }
    };
    transfer().catch(() => report(false));
  }

  private crash(slot: Slot, why: string, loseUnsynced = true): void {
    this.addTrace(`@${this.scheduler.nowMs} crash ${slot.id} (${why})`);
    slot.alive = false;
    slot.incarnation++;
    this.network.attach(slot.id, undefined);
    for (const timer of slot.timers.splice(0)) timer.dispose();
    const node = slot.node;
    slot.node = undefined;
    if (loseUnsynced) slot.disk.crash({ keepSomeUnsynced: this.profile.keepSomeUnsynced, tear: this.profile.tornWrites });
    // The old node object is a zombie now: its disk mount and stable store refuse every call.
    if (node !== undefined) void node.close();
  }

  private scheduleNemesis(untilMs: number): void {
    const step = (): void => {
      if (!this.faultsActive || this.scheduler.nowMs >= untilMs) return;
      this.nemesisStep();
      this.scheduler.after(this.nemesisRandom.int(this.profile.nemesisIntervalMs / 2, this.profile.nemesisIntervalMs), step);
    };
    this.scheduler.after(this.profile.nemesisIntervalMs, step);
  }

  private nemesisStep(): void {
    const random = this.nemesisRandom;
    const ids = this.slots.map((s) => s.id);
    const weights = [this.profile.partitionWeight, this.profile.crashWeight, this.profile.pauseWeight, 2, this.profile.membershipWeight ?? 0];
    let pick = random.int(0, weights.reduce((a, b) => a + b, 0) - 1);
    let kind = 0;
    while (pick >= (weights[kind] as number)) pick -= weights[kind++] as number;
    const leader = this.currentLeader();
    if (kind === 0) {
      this.counts.partitions++;
      this.network.heal();
      const shape = random.int(0, 2);
      if (shape === 0 && leader !== undefined) {
        this.network.partition([[leader.id], ids.filter((id) => id !== leader.id)]);
      } else if (shape === 1) {
        const shuffled = random.shuffle(ids);
        const cut = random.int(1, ids.length - 1);
        this.network.partition([shuffled.slice(0, cut), shuffled.slice(cut)]);
      } else {
        const [a, b] = random.shuffle(ids);
        this.network.cut(a as NodeId, b as NodeId);
      }
      this.addTrace(`@${this.scheduler.nowMs} partition ${this.network.describePartitions()}`);
    } else if (kind === 1) {
      const leaderSlot = this.slots.find((s) => s.node === leader);
    const target = leaderSlot !== undefined && random.chance(0.4) ? leaderSlot : random.pick(this.slots.filter((s) => s.alive));
      if (target === undefined) return;
      this.counts.crashes++;
      this.crash(target, 'nemesis');
      this.scheduler.after(random.int(0, this.profile.restartDelayMaxMs), () => {
        if (!target.alive && this.faultsActive) this.startNode(target);
      });
    } else if (kind === 2) {
      const target = random.pick(this.slots.filter((s) => s.alive && !this.network.isPaused(s.id)));
      if (target === undefined) return;
      this.counts.pauses++;
      this.network.pause(target.id);
      this.addTrace(`@${this.scheduler.nowMs} pause ${target.id}`);
      this.scheduler.after(random.int(50, 3000), () => {
        this.addTrace(`@${this.scheduler.nowMs} resume ${target.id}`);
        this.network.resume(target.id);
      });
    } else if (kind === 3) {
      this.network.heal();
      this.addTrace(`@${this.scheduler.nowMs} heal`);
    } else {
      this.changeMembership(leader);
    }
  }

  /** Removes a random member (possibly the leader) or adds the missing one back. */
  private changeMembership(leader: RaftNode | undefined): void {
    if (leader === undefined || this.members.length < 2) return;
    const missing = this.members.find((m) => !leader.members.some((x) => x.id === m.id));
    this.requestMembershipChange(leader, missing !== undefined ? { add: missing } : { remove: this.nemesisRandom.pick(leader.members).id });
  }

  private requestMembershipChange(leader: RaftNode, change: { readonly add: Member } | { readonly remove: NodeId }): void {
    this.counts.membershipChanges++;
    this.addTrace(`@${this.scheduler.nowMs} membership ${'add' in change ? `add ${change.add.id}` : `remove ${change.remove}`} via ${leader.id}`);
    leader.changeMembership(change).then(
      (outcome) => this.addTrace(`membership change ${outcome.kind}${outcome.kind === 'dropped' ? ` (${outcome.reason})` : ''}`),
      () => { /* the leader stopped; nothing to do */ },
    );
  }

  private scheduleClient(): void {
    const opsMax = this.options.opsMax ?? 400;
    const step = (): void => {
      if (this.opsStarted < opsMax && this.opsInFlight < 8 && this.faultsActive) this.startOp();
      if (this.faultsActive) this.scheduler.after(this.clientRandom.int(2, 25), step);
    };
    this.scheduler.after(50, step);
  }

  private startOp(): void {
    const candidates = this.slots.filter((s) => s.alive && s.node !== undefined && !this.network.isPaused(s.id));
    if (candidates.length === 0) return;
    this.proposeOn(candidates.find((s) => s.id === this.leaderGuess) ?? this.clientRandom.pick(candidates));
  }

  private proposeOn(target: Slot): void {
    const op = ++this.opsStarted;
    const payload = new Uint8Array(4 + this.clientRandom.int(0, 120));
    new DataView(payload.buffer).setUint32(0, op);
    for (let i = 4; i < payload.length; i++) payload[i] = this.clientRandom.int(0, 255);
    this.opsInFlight++;
    (target.node as RaftNode).propose(payload).then(
      (result) => {
        this.opsInFlight--;
        this.acked.set(op, { index: result.index, term: result.term, payload });
        this.leaderGuess = target.id;
        this.addTrace(`op ${op} ok ${result.index}/t${result.term}`);
      },
      (error: ProposalError) => {
        this.opsInFlight--;
        if (error.definite) this.failedDefinite++;
        else this.unknown++;
        if (error.code === 'NOT_LEADER') this.leaderGuess = (error as ProposalError & { leaderHint?: NodeId }).leaderHint;
        this.addTrace(`op ${op} ${error.definite ? 'fail' : 'info'} ${error.code}`);
      },
    );
  }

  private addTrace(line: string): void {
    this.trace.add(line);
  }

  private result(): SimResult {
    const violations = this.checker.violations;
    return {
      seed: this.options.seed,
      nodeCount: this.options.nodeCount,
      ok: violations.length === 0,
      violations,
      traceHash: this.trace.hash,
      traceTail: this.trace.tail(),
      stats: {
        events: this.scheduler.eventsRun,
        simulatedMs: this.scheduler.nowMs,
        acked: this.acked.size,
        failedDefinite: this.failedDefinite,
        unknown: this.unknown,
        committedIndex: this.checker.maxCommittedIndex,
        crashes: this.counts.crashes,
        partitions: this.counts.partitions,
        pauses: this.counts.pauses,
        leaderChanges: this.counts.leaderChanges,
        bytesDiscarded: this.slots.reduce((sum, s) => sum + s.disk.stats.bytesDiscarded, 0),
        failStops: this.counts.failStops,
        membershipChanges: this.counts.membershipChanges,
        snapshotsInstalled: this.counts.snapshotsInstalled,
      },
      profile: this.profile,
      scenarioStuck: this.scenarioStuck,
    };
  }
}

export function runSimulation(options: SimOptions): Promise<SimResult> {
  return new SimCluster(options).run();
}
