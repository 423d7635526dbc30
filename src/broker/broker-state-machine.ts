/**
 * The Raft StateMachine of a broker node: decodes committed entries and applies them to
 * BrokerState, hands each apply result to the local proposer that is waiting for it (matched
 * by the proposer nonce and sequence in the entry header, never by index), and wakes long polls.
 *
 * The state lives in memory and is rebuilt by replaying the log from its first entry at
 * start-up (appliedIndex() is 0): replay is exact because apply is deterministic.
 */
import { EntryKind, type Entry } from '../raft/types.js';
import type { StateMachine } from '../raft/node/ports.js';
import { BrokerState, type BrokerCommand, type BrokerStateLimits, type CommandOutcome, type SendOutcome } from './core/broker-state.js';
import { PayloadKind, readCommand, readHeader, readRouting } from './core/entry-codec.js';

export type ApplyResult =
  | { readonly kind: 'messages'; readonly outcomes: readonly SendOutcome[] }
  | { readonly kind: 'command'; readonly outcome: CommandOutcome }
  | { readonly kind: 'malformed'; readonly message: string };

interface Waiter {
  readonly resolve: (result: ApplyResult) => void;
}

export class BrokerStateMachine implements StateMachine {
  readonly state: BrokerState;
  /** Random per process: entries proposed by an earlier incarnation never match a waiter. */
  readonly nonce: number;
  private sequence = 0;
  private readonly waiters = new Map<number, Waiter>();
  private lastApplied = 0;
  private lastAppliedTermValue = 0;
  private readonly listeners = new Set<(topics: ReadonlySet<string>) => void>();

  constructor(nonce: number, limits?: BrokerStateLimits) {
    this.nonce = nonce >>> 0;
    this.state = new BrokerState(limits);
  }

  appliedIndex(): number {
    return 0;
  }

  get lastAppliedIndex(): number {
    return this.lastApplied;
  }

  /** The term of the last applied entry: equal to the leader's term once its no-op is applied. */
  get lastAppliedTerm(): number {
    return this.lastAppliedTermValue;
  }

  /** A sequence number for the next proposal, and the promise of its apply result. */
  expect(): { sequence: number; result: Promise<ApplyResult>; cancel: () => void } {
    this.sequence = (this.sequence + 1) >>> 0;
    const sequence = this.sequence;
    const result = new Promise<ApplyResult>((resolve) => this.waiters.set(sequence, { resolve }));
    return { sequence, result, cancel: () => this.waiters.delete(sequence) };
  }

  /** Called after every applied batch with the topics that received messages. */
  onApplied(listener: (topics: ReadonlySet<string>) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async apply(entries: readonly Entry[]): Promise<void> {
    const touched = new Set<string>();
    for (const entry of entries) {
      this.lastApplied = entry.index;
      this.lastAppliedTermValue = entry.term;
      if (entry.kind !== EntryKind.normal) continue;
      this.applyEntry(entry, touched);
    }
    for (const listener of this.listeners) listener(touched);
  }

  private applyEntry(entry: Entry, touched: Set<string>): void {
    let header;
    try {
      header = readHeader(entry.payload);
    } catch (error) {
      // Not a broker entry (for example written through the raw Raft admin API): skip it on
      // every node alike.
      void error;
      return;
    }
    const timeMs = this.state.advanceClock(header.timeMs);
    let result: ApplyResult;
    try {
      if (header.kind === PayloadKind.Messages) {
        const routing = readRouting(entry.payload);
        result = { kind: 'messages', outcomes: this.state.applyMessages(entry.index, timeMs, routing) };
        for (const message of routing) touched.add(message.topic);
      } else if (header.kind === PayloadKind.Command) {
        const command = readCommand(entry.payload) as BrokerCommand;
        result = { kind: 'command', outcome: this.state.applyCommand(entry.index, timeMs, command) };
        if (command.op === 'invisible' || command.op === 'release' || command.op === 'offset.reset' || command.op === 'topic.put') touched.add('*');
      } else {
        result = { kind: 'malformed', message: `unknown broker payload kind ${String(header.kind)}` };
      }
    } catch (error) {
      result = { kind: 'malformed', message: `entry ${entry.index} could not be applied: ${(error as Error).message}` };
    }
    if (header.nonce === this.nonce) {
      const waiter = this.waiters.get(header.sequence);
      if (waiter !== undefined) {
        this.waiters.delete(header.sequence);
        waiter.resolve(result);
      }
    }
  }
}
