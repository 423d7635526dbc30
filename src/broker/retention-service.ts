/**
 * The leader-only retention service: on an interval, and as soon as the log has a new
 * segment (a fast producer fills one in seconds; waiting for the next tick would let the log
 * outgrow its limit by the writes of a whole interval), asks the pure policy (core/retention.ts)
 * how much of the log may go, judged on this leader's segments, disk and applied state, and
 * proposes it as a `retention` entry. Applying that entry on every node drops the consume-queue
 * entries it covers (consumers behind move up) and lets each node delete its segments once a
 * snapshot covers them (StateMachine.firstNeededIndex).
 */
import type { Disposable, LogSegmentInfo, Logger } from '../raft/node/ports.js';
import type { ServiceClock } from '../util/clock.js';
import type { BrokerStateMachine } from './broker-state-machine.js';
import type { RaftPort } from './broker-service.js';
import { encodeCommand } from './core/entry-codec.js';
import { retentionCut, retentionSettingsProblem, type RetentionSettings } from './core/retention.js';

export interface RetentionServiceOptions {
  readonly settings: RetentionSettings;
  readonly intervalMs: number;
  readonly raft: RaftPort;
  readonly machine: BrokerStateMachine;
  /** This node's log segments, oldest first. */
  readonly segments: () => readonly LogSegmentInfo[];
  /** How many there are: looked at after every applied batch, so it must be cheap. */
  readonly segmentCount: () => number;
  /** Fraction of the data disk in use, or undefined when unknown. */
  readonly diskUsedRatio: () => Promise<number | undefined>;
  /** Its wall time is what the age limit compares with (entries carry the leader's wall-clock stamps). */
  readonly clock: ServiceClock;
  readonly logger: Logger;
}

export class RetentionService {
  private timer: Disposable | undefined;
  private stopWatching: (() => void) | undefined;
  private running = false;
  private segmentCount = 0;

  constructor(private readonly options: RetentionServiceOptions) {
    const problem = retentionSettingsProblem(options.settings);
    if (problem !== undefined) throw new Error(problem);
  }

  start(): void {
    this.timer = this.options.clock.every(this.options.intervalMs, () => this.round());
    this.stopWatching = this.options.machine.onApplied(() => {
      if (this.options.raft.role !== 'leader') return;
      const count = this.options.segmentCount();
      if (count === this.segmentCount) return;
      this.segmentCount = count;
      this.round();
    });
  }

  close(): void {
    this.timer?.dispose();
    this.stopWatching?.();
  }

  private round(): void {
    if (this.running) return;
    this.running = true;
    this.runOnce().catch((error: unknown) => {
      // Not leader any more, or the proposal's outcome is unknown: the next round retries.
      this.options.logger.debug({ err: error }, 'retention round did not complete');
    }).finally(() => { this.running = false; });
  }

  /** One round; returns the index released (0: nothing). */
  async runOnce(): Promise<number> {
    const { raft, machine } = this.options;
    if (raft.role !== 'leader' || machine.lastAppliedTerm !== raft.term) return 0;
    const state = machine.state;
    const cut = retentionCut(this.options.settings, {
      segments: this.options.segments(),
      nowMs: this.options.clock.wallNowMs(),
      newestTimeThrough: (logIndex) => state.newestStoreTimeThrough(logIndex),
      diskUsedRatio: await this.options.diskUsedRatio(),
      pinnedFrom: state.pendingTimersFrom(),
    });
    if (cut < state.retainedFrom) return 0;
    const { result } = await raft.propose(encodeCommand({ timeMs: this.options.clock.wallNowMs() }, { op: 'retention', throughIndex: cut }));
    this.options.logger.info({ throughIndex: cut, result: result.kind }, 'retention released the log prefix');
    return cut;
  }
}
