import { describeMessage, type NodeId, type RaftMessage } from '../raft/types.js';
import type { Prng } from './prng.js';
import type { SimScheduler } from './sim-scheduler.js';

/** Per-seed network fault parameters (swarm testing: each seed gets its own mix). */
export interface NetworkFaults {
  dropProbability: number;
  duplicateProbability: number;
  delayMinMs: number;
  delayMaxMs: number;
}

export const calmNetwork: NetworkFaults = { dropProbability: 0, duplicateProbability: 0, delayMinMs: 1, delayMaxMs: 3 };

/**
 * Delivers Raft messages between simulated nodes with seeded delay (which reorders), drop and
 * duplication, and partitions as one-way "grudges": `blocked` holds `from>to` pairs.
 * A node registers a receiver per incarnation; messages to a dead or paused node are dropped
 * or held, as a TCP stream would.
 */
export class SimNetwork {
  faults: NetworkFaults = { ...calmNetwork };
  private readonly blocked = new Set<string>();
  private readonly receivers = new Map<NodeId, ((message: RaftMessage) => void) | undefined>();
  private readonly paused = new Map<NodeId, RaftMessage[]>();
  delivered = 0;
  dropped = 0;

  constructor(private readonly scheduler: SimScheduler, private readonly random: Prng, private readonly trace: (line: string) => void) {}

  attach(id: NodeId, receiver: ((message: RaftMessage) => void) | undefined): void {
    this.receivers.set(id, receiver);
  }

  send(message: RaftMessage): void {
    if (this.isBlocked(message.from, message.to) || this.random.chance(this.faults.dropProbability)) {
      this.dropped++;
      return;
    }
    const copies = this.random.chance(this.faults.duplicateProbability) ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      const delay = this.random.int(this.faults.delayMinMs, Math.max(this.faults.delayMinMs, this.faults.delayMaxMs));
      this.scheduler.after(delay, () => this.deliver(message));
    }
  }

  /** Blocks traffic from `from` to `to` (one direction). */
  cut(from: NodeId, to: NodeId): void { this.blocked.add(`${from}>${to}`); }
  isBlocked(from: NodeId, to: NodeId): boolean { return this.blocked.has(`${from}>${to}`); }
  /** Splits nodes into sides that cannot talk to each other (both directions). */
  partition(sides: ReadonlyArray<readonly NodeId[]>): void {
    for (const [i, side] of sides.entries()) {
      for (const [j, other] of sides.entries()) {
        if (i === j) continue;
        for (const a of side) for (const b of other) this.cut(a, b);
      }
    }
  }
  heal(): void { this.blocked.clear(); }
  describePartitions(): string { return [...this.blocked].sort().join(','); }

  pause(id: NodeId): void { if (!this.paused.has(id)) this.paused.set(id, []); }
  resume(id: NodeId): void {
    const held = this.paused.get(id);
    this.paused.delete(id);
    for (const message of held ?? []) this.deliver(message);
  }
  isPaused(id: NodeId): boolean { return this.paused.has(id); }

  private deliver(message: RaftMessage): void {
    if (this.isBlocked(message.from, message.to)) {
      this.dropped++;
      return;
    }
    const held = this.paused.get(message.to);
    if (held !== undefined) {
      if (held.length < 10_000) held.push(message);
      return;
    }
    const receiver = this.receivers.get(message.to);
    if (receiver === undefined) {
      this.dropped++;
      return;
    }
    this.delivered++;
    this.trace(describeMessage(message));
    receiver(message);
  }
}
