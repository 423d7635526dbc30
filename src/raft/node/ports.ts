import type { Entry, HardState, LogIndex, RaftMessage, SnapshotMeta, Term } from '../types.js';

export type { SnapshotMeta };

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
  /**
   * Compaction: deletes whole segments whose entries are all `<= throughIndex` (never the
   * newest segment); returns the new first index.
   */
  deletePrefix(throughIndex: LogIndex): Promise<LogIndex>;
  /**
   * Discards every entry and leaves an empty log that continues after a snapshot at
   * (`index`, `term`): firstIndex = index + 1. Durable and crash-safe at every step.
   */
  resetTo(index: LogIndex, term: Term): Promise<void>;
  /** The segments, oldest first, for retention decisions (no I/O). */
  segments(): readonly LogSegmentInfo[];
}

export interface LogSegmentInfo {
  readonly fileName: string;
  readonly firstIndex: LogIndex;
  /** firstIndex - 1 for an empty segment. */
  readonly lastIndex: LogIndex;
  readonly bytes: number;
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

/**
 * Applied on commit, in index order, on every node; must be deterministic. The one completion
 * path of a proposal: `apply` returns one result per entry and the proposer's promise
 * resolves with its entry's result (hashicorp/raft's ApplyFuture.Response()).
 * An `InvariantViolation` thrown by apply stops the node; it is never turned into a result.
 */
export interface StateMachine<Result = unknown> {
  /** results[i] belongs to entries[i] (noop and config entries included). */
  apply(entries: readonly Entry[]): Promise<Result[]> | Result[];
  /** The whole replicated state after the last applied entry, as bytes (taken synchronously). */
  snapshot(): Uint8Array;
  /** Replaces the whole state with a snapshot's; the next entry applied is `meta.index + 1`. */
  restore(data: Uint8Array, meta: SnapshotMeta): void;
  /**
   * The first log entry the state machine still reads after applying it (a broker reads
   * message bodies from the log until retention releases them; a pure state machine needs
   * nothing it applied). The node deletes segments before it once a snapshot covers them.
   */
  firstNeededIndex(): LogIndex;
}

/** A snapshot file as the store knows it (its checksum verified when it was listed or written). */
export interface StoredSnapshot {
  readonly meta: SnapshotMeta;
  readonly fileName: string;
  /** Size of the whole file (header and state), which is what InstallSnapshot streams. */
  readonly fileBytes: number;
}

/**
 * Durable snapshots, the newest few kept. `src/commitlog/snapshot-store.ts` implements it on
 * the FileSystem port, so the simulator's disk can lose unsynced snapshot writes too.
 */
export interface SnapshotStore {
  /** Newest valid snapshot with its state; a damaged newer one is skipped (and reported). Throws naming the files if every snapshot is damaged. */
  loadNewest(): Promise<{ snapshot: StoredSnapshot; data: Uint8Array } | undefined>;
  /** Writes a snapshot durably (file fsync, atomic rename, directory fsync); prunes old ones. */
  save(meta: SnapshotMeta, data: Uint8Array): Promise<StoredSnapshot>;
  /** The newest snapshot written or received (no I/O). */
  newest(): StoredSnapshot | undefined;
  /** Raw file bytes of a stored snapshot, for streaming to a follower. */
  readFileChunk(snapshot: StoredSnapshot, offset: number, length: number): Promise<Uint8Array>;
  /** Receives a streamed snapshot file; chunks must arrive in order. */
  receive(meta: SnapshotMeta, fileBytes: number): SnapshotReceiver;
}

export interface SnapshotReceiver {
  /** Appends a chunk; `offset` must equal the bytes received so far, else it throws. */
  write(offset: number, chunk: Uint8Array): Promise<void>;
  /** Checks size, checksum and metadata, then makes it durable and the newest; returns its state. */
  finish(): Promise<{ snapshot: StoredSnapshot; data: Uint8Array }>;
  /** Discards a partial receive (its temporary file). */
  abort(): Promise<void>;
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
