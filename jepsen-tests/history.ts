/**
 * The run's history, Jepsen style: one JSON line per event in `history.jsonl`, written as it
 * happens. Every client `invoke` gets exactly one completion from the same process: `ok` (it
 * happened), `fail` (it certainly did not) or `info` (unknown). After an `info` the worker
 * continues under a new process id, so a process never has two operations open.
 */
import { createWriteStream, type WriteStream } from 'node:fs';

/** A message seen by a read: (queue, offset, value). */
export type Read = readonly [queue: number, offset: number, value: string];

export interface Op {
  readonly index: number;
  /** Nanoseconds since the start of the run (monotonic). */
  readonly time: number;
  readonly type: 'invoke' | 'ok' | 'fail' | 'info';
  readonly process: number | string;
  readonly f: string;
  readonly value?: unknown;
  /** Acknowledged enqueues: where the broker stored the value. */
  readonly queue?: number;
  readonly offset?: number;
  /** Reads: every message received. */
  readonly reads?: readonly Read[];
  readonly error?: string;
  readonly node?: string;
  /** Delayed messages (DelayWorkload): the wall clock (ms since the epoch) when the event happened. */
  readonly wallMs?: number;
  /** Delayed sends: the delivery time asked for (ms since the epoch, the same clock as wallMs). */
  readonly dueMs?: number;
  /** Delayed receives: per read, when the broker says the message became visible (its store timestamp). */
  readonly storedMs?: readonly number[];
  /** Transactional sends (TransactionWorkload): how the value's transaction is meant to end, decided before the send. */
  readonly fate?: string;
  /** Transaction ends and check-backs: COMMIT or ROLLBACK ('none': the check-back was left unanswered). */
  readonly resolution?: string;
  /** Transactional sends and check-backs: the transaction id (t1~<group>~<log index>~<position>). */
  readonly transactionId?: string;
  /** After the run: the broker's own account of a transactional message (QueryMessage state: half, stored, rolled-back, ended). */
  readonly state?: string;
}

export type OpInput = Omit<Op, 'index' | 'time'>;

/** The operations whose `reads` are messages received: group polls, the log reader, the drain. */
export const readFunctions: ReadonlySet<string> = new Set(['dequeue', 'read', 'drain']);

/**
 * The delayed-message workload's receives (its own topic, never mixed with the queue
 * workload's): a broadcasting pull reader, a SimpleConsumer group, the final drain.
 */
export const delayReadFunctions: ReadonlySet<string> = new Set(['delay-read', 'delay-receive', 'delay-drain']);

/**
 * The transactional-message workload's receives (its own topic): a broadcasting pull reader,
 * a SimpleConsumer group, the final drain.
 */
export const txnReadFunctions: ReadonlySet<string> = new Set(['txn-read', 'txn-receive', 'txn-drain']);

export class History {
  readonly ops: Op[] = [];
  private readonly start = process.hrtime.bigint();
  private readonly out: WriteStream | undefined;

  constructor(file?: string) {
    this.out = file === undefined ? undefined : createWriteStream(file);
  }

  nowNs(): number {
    return Number(process.hrtime.bigint() - this.start);
  }

  add(op: OpInput): Op {
    const full: Op = { index: this.ops.length, time: this.nowNs(), ...op };
    this.ops.push(full);
    this.out?.write(`${JSON.stringify(full)}\n`);
    return full;
  }

  async close(): Promise<void> {
    const out = this.out;
    if (out !== undefined) await new Promise<void>((resolve) => out.end(resolve));
  }
}

/** A completed client operation with the time it was invoked. */
export interface Completed {
  readonly invokeNs: number;
  readonly op: Op;
}

/** Every `ok`/`fail`/`info` of function `f`, paired with its invoke (same process, just before). */
export function completions(ops: readonly Op[], f: string): Completed[] {
  const open = new Map<number | string, number>();
  const out: Completed[] = [];
  for (const op of ops) {
    if (op.f !== f) continue;
    if (op.type === 'invoke') {
      open.set(op.process, op.time);
      continue;
    }
    const invokeNs = open.get(op.process);
    if (invokeNs === undefined) continue;
    open.delete(op.process);
    out.push({ invokeNs, op });
  }
  return out;
}

/** Nemesis operations are `info` events of process "nemesis" with f `start-<kind>` / `stop-<kind>`. */
export interface FaultWindow {
  readonly kind: string;
  readonly startNs: number;
  readonly stopNs: number;
  readonly value: unknown;
  readonly stopValue: unknown;
}

export function faultWindows(ops: readonly Op[], endNs: number): FaultWindow[] {
  const open = new Map<string, Op>();
  const windows: FaultWindow[] = [];
  for (const op of ops) {
    if (op.process !== 'nemesis') continue;
    if (op.f.startsWith('start-')) open.set(op.f.slice(6), op);
    else if (op.f.startsWith('stop-')) {
      const kind = op.f.slice(5);
      const started = open.get(kind);
      if (started === undefined) continue;
      open.delete(kind);
      windows.push({ kind, startNs: started.time, stopNs: op.time, value: started.value, stopValue: op.value });
    }
  }
  for (const [kind, started] of open) windows.push({ kind, startNs: started.time, stopNs: endNs, value: started.value, stopValue: undefined });
  return windows.sort((a, b) => a.startNs - b.startNs);
}
