/**
 * The real broker in the simulator: a seeded, deterministic run of a 3-node broker group —
 * the real `BrokerStateMachine` and `BrokerService` on real `RaftNode`s, over `CommitLog` and
 * `FileSnapshotStore` on `SimDisk`, `SimNetwork` and `SimScheduler` time (the service's
 * `ServiceClock` is simulated too). A messaging workload (broker-sim-workload.ts) runs while
 * a nemesis crashes and restarts nodes (losing unsynced writes), partitions and pauses them,
 * and moves leadership; then faults stop, the clients drain everything, and the final reads
 * are checked against the whole history (broker-sim-checker.ts). The same seed gives the
 * same trace hash.
 */
import { BrokerService, defaultBrokerServiceOptions } from '../broker/broker-service.js';
import { BrokerStateMachine, type ApplyResult } from '../broker/broker-state-machine.js';
import { BrokerError } from '../broker/errors.js';
import { CommitLog } from '../commitlog/commit-log.js';
import { FileSnapshotStore } from '../commitlog/snapshot-store.js';
import { InvariantViolation } from '../util/assert.js';
import type { ServiceClock } from '../util/clock.js';
import { silentLogger, type Disposable, type LogStore, type StateMachine } from '../raft/node/ports.js';
import { RaftNode } from '../raft/node/raft-node.js';
import type { HardState, Member, NodeId } from '../raft/types.js';
import { BrokerChecker } from './broker-sim-checker.js';
import { applyOnAppend } from './broker-sim-unsafe.js';
import { BrokerWorkload, watchedGroups, type BrokerEndpoint, type WorkloadStats } from './broker-sim-workload.js';
import { Prng } from './prng.js';
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
}

export interface BrokerSimOptions {
  readonly seed: number;
  readonly faultDurationMs?: number;
  /** After faults stop, the clients must drain and the nodes converge within this. */
  readonly drainBoundMs?: number;
  readonly profile?: Partial<BrokerFaultProfile>;
  /** Negative control: the broker state machine sees entries when appended, not committed. */
  readonly unsafe?: { readonly applyBeforeCommit?: boolean };
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
    readonly deadLettered: number;
    readonly digestsCompared: number;
    readonly crashes: number;
    readonly partitions: number;
    readonly pauses: number;
    readonly transfers: number;
    readonly leaderChanges: number;
    readonly failStops: number;
    readonly snapshotsRestored: number;
    readonly snapshotInstallsRefused: number;
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
  timers: Disposable[];
}

const tickIntervalMs = 10;
/** Wall time of simulated time 0 (entries carry wall-clock stamps). */
const epochMs = 1_800_000_000_000;

export function drawBrokerProfile(random: Prng): BrokerFaultProfile {
  return {
    ...drawProfile(random.fork('raft')),
    membershipWeight: 0,
    transferWeight: random.int(0, 2),
    clockSkewMaxMs: random.pick([0, 50, 1_000]),
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
  private faultsActive = false;
  private counts = { crashes: 0, partitions: 0, pauses: 0, transfers: 0, leaderChanges: 0, failStops: 0, snapshotsRestored: 0, snapshotInstallsRefused: 0 };

  constructor(private readonly options: BrokerSimOptions) {
    this.trace = new SimTrace(options.keepTrace === true);
    this.random = new Prng(options.seed);
    this.nemesisRandom = this.random.fork('nemesis');
    this.profile = { ...drawBrokerProfile(this.random.fork('profile')), ...options.profile };
    const trace = (line: string): void => this.addTrace(line);
    this.network = new SimNetwork(this.scheduler, this.random.fork('network'), trace);
    this.network.faults = { dropProbability: this.profile.dropProbability, duplicateProbability: this.profile.duplicateProbability, delayMinMs: 1, delayMaxMs: this.profile.delayMaxMs };
    this.checker = new BrokerChecker(watchedGroups, trace, options.blackBoxOnly === true);
    this.workload = new BrokerWorkload({
      endpoints: () => this.endpoints(),
      sleep: (ms) => this.scheduler.sleep(ms),
      after: (ms, callback) => this.scheduler.after(ms, callback),
      trace,
    }, this.checker, this.random.fork('client'));
    this.members = ['n1', 'n2', 'n3'].map((id) => ({ id, address: id }));
    const diskRandom = this.random.fork('disk');
    const skewRandom = this.random.fork('skew');
    for (const member of this.members) {
      const disk = new SimDisk(diskRandom.fork(member.id), () => this.scheduler.sleep(diskRandom.float() * this.profile.diskLatencyMaxMs));
      disk.syncFailureProbability = this.profile.fsyncFailureProbability;
      const skewMs = skewRandom.int(-this.profile.clockSkewMaxMs, this.profile.clockSkewMaxMs);
      this.slots.push({ id: member.id, disk, skewMs, durableHardState: undefined, incarnation: 0, alive: false, node: undefined, machine: undefined, service: undefined, timers: [] });
    }
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
      this.checker.violate(`liveness: not drained within ${boundMs} ms after faults stopped (${unacked} sends unacknowledged; ${states})`);
      return;
    }
    this.workload.phase = 'done';
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
      const machine = new BrokerStateMachine();
      let restoring = true;
      machine.onApplied(() => {
        if (!isCurrent()) return;
        if (restoring) this.counts.snapshotsRestored++;
        this.checker.onApplied(slot.id, incarnation, machine.lastAppliedIndex, machine.state);
      });
      let log: LogStore = commitLog;
      let stateMachine: StateMachine<ApplyResult> = machine;
      if (this.options.unsafe?.applyBeforeCommit === true) ({ log, stateMachine } = applyOnAppend(commitLog, machine));
      const node = await RaftNode.start<ApplyResult>({
        groupId: 'sim-broker',
        core: {
          id: slot.id, electionTimeoutTicks: 15, heartbeatIntervalTicks: 3, preVote: true, checkQuorum: true,
          appendEntriesMax: this.profile.appendEntriesMax, appendBytesMax: 64 * 1024, inflightAppendsMax: 8, uncommittedEntriesMax: 4096,
        },
        bootstrapMembers: this.members,
        log, stable, stateMachine, snapshots, snapshotEveryEntries: this.profile.snapshotEveryEntries, snapshotCatchUpEntries: 64,
        transport: {
          send: (message) => {
            if (!isCurrent()) return;
            if (message.type === 'install-snapshot') {
              // The broker never releases its log (firstNeededIndex is 1 without retention), so
              // a follower never falls behind the first entry; were it to, it is reported here.
              this.counts.snapshotInstallsRefused++;
              this.addTrace(`${message.from}->${message.to} install-snapshot refused (not simulated)`);
              slot.node?.reportSnapshot(message.to, false);
              return;
            }
            this.network.send(message);
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
      const service = new BrokerService({ ...defaultBrokerServiceOptions, brokerGroup: 'sim-broker', readReadyWaitMs: 1_000 }, {
        propose: (payload) => node.propose(payload),
        get role() { return node.role; },
        get term() { return node.term; },
        leaderAddress: () => node.leaderId,
      }, machine, {
        payloadAt: async (index) => {
          const [entry] = await commitLog.read({ fromIndex: index, throughIndex: index, bytesMax: 1 });
          if (entry === undefined) throw new BrokerError('INTERNAL_SERVER_ERROR', `log entry ${index} is missing`);
          return entry.payload;
        },
      }, clock);
      service.start(500);
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
    const { node, service } = slot;
    slot.node = undefined;
    slot.machine = undefined;
    slot.service = undefined;
    if (loseUnsynced) slot.disk.crash({ keepSomeUnsynced: this.profile.keepSomeUnsynced, tear: this.profile.tornWrites });
    // Queued sends were never proposed (definite); proposals in the log end unknown.
    service?.close();
    if (node !== undefined) void node.close();
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
        deadLettered: this.workload.deadLettered,
        digestsCompared: this.checker.digestsCompared,
        ...this.counts,
      },
      profile: this.profile,
    };
  }
}

export function runBrokerSimulation(options: BrokerSimOptions): Promise<BrokerSimResult> {
  return new BrokerSim(options).run();
}
