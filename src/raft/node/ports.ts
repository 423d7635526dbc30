import type { Entry, HardState, LogIndex, RaftMessage, Term } from '../types.js';

/**
 * The ports the node driver needs. `src/server` wires real implementations (commitlog on
 * node:fs, LevelDB, gRPC, timers); the simulator wires simulated ones. Nothing here imports
 * an implementation.
 */

/** The Raft log. `CommitLog` implements it. One mutation at a time (the loop serialises). */
export interface LogStore {
  readonly firstIndex: LogIndex;
  readonly lastIndex: LogIndex;
  termAt(index: LogIndex): Term | undefined;
  runs(): Array<readonly [LogIndex, Term]>;
  configIndexes(): readonly LogIndex[];
  /** Synchronous, from the in-memory index. */
  payloadBytesAt(index: LogIndex): number;
  append(entries: readonly Entry[], options: { sync: boolean }): Promise<void>;
  truncateSuffix(fromIndex: LogIndex): Promise<void>;
  read(range: { fromIndex: LogIndex; throughIndex: LogIndex; bytesMax: number }): Promise<Entry[]>;
  sync(): Promise<void>;
}

/** Term and vote. `save` must be durable (fsync) when it resolves. */
export interface StableStore {
  load(): Promise<HardState | undefined>;
  save(state: HardState): Promise<void>;
}

/** Best-effort delivery: may drop (Raft tolerates loss); must never block the loop. */
export interface Transport {
  send(message: RaftMessage): void;
}

/** Applied on commit, in index order, on every node; must be deterministic. */
export interface StateMachine {
  /** The index the state machine has durably applied (0 for in-memory machines). */
  appliedIndex(): LogIndex;
  apply(entries: readonly Entry[]): Promise<void>;
}

/** Time, for the driver only (the core sees ticks); shared with the broker's service layer. */
export type { Clock, Disposable } from '../../util/clock.js';

export interface Logger {
  debug(fields: object, message: string): void;
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
