/**
 * The queue checker (FAULTS §5.7): a pure function of the history. Values are unique
 * `<process>-<counter>` strings, so each producer has a high-water mark and a lost value can be
 * placed before, between or after what was read of its producer.
 *
 * Retention: with `CheckInput.retention`, an acknowledged value the drain did not read is
 * *released*, not lost, only if both hold: its acknowledged offset is below its queue's first
 * offset at the end, and the committed-log watcher saw its entry committed by a majority of the
 * nodes at a log index below the first index retention kept. Anything else missing is lost
 * (`lostBelowFirstOffset` counts the lost values that sat below a first offset without that
 * proof), so a bug that drops data cannot pass for retention.
 *
 * Delayed messages (`CheckInput.delay`, the DelayWorkload's operations): see checkDelayed.
 * Transactional messages (`CheckInput.transactions`, the TransactionWorkload's): see
 * checkTransactions in transaction-checker.ts.
 */
import { completions, delayReadFunctions, faultWindows, readFunctions, type FaultWindow, type Op, type Read } from './history.js';
import { checkTransactions, type TransactionCheckOptions, type TransactionCheckResult } from './transaction-checker.js';

export interface LeaderObservation {
  readonly timeNs: number;
  readonly nodeId: string;
  readonly term: number;
}

export interface FaultEffects {
  /** Faults whose target included the leader and that lasted long enough to force an election. */
  readonly leaderFaults: number;
  readonly leaderFaultsWithoutLeaderChange: number;
  readonly partitions: number;
  readonly partitionsThatDroppedNothing: number;
  readonly packetsDropped: number;
  readonly powerFailures: number;
  readonly bytesDiscardedByPowerLoss: number;
  readonly corruptions: number;
  readonly corruptionDetected: number;
  readonly leaderChanges: number;
  readonly faultEvents: number;
}

export interface Recovery {
  readonly fault: string;
  readonly healAtS: number;
  /** From the end of the fault to the first acknowledged enqueue invoked after it; null if none. */
  readonly recoveryMs: number | null;
  /**
   * Another fault was in force before that first acknowledgement (still on at the heal, or
   * begun since): the time measures both, not this fault's recovery, and maxRecoveryMs skips it.
   */
  readonly interrupted: boolean;
}

export interface CheckResult {
  readonly verdict: 'pass' | 'fail' | 'unknown' | 'invalid';
  readonly reasons: string[];
  readonly attempted: number;
  readonly acked: number;
  readonly failed: number;
  readonly indeterminate: number;
  readonly read: number;
  readonly lost: number;
  readonly lostPrefix: number;
  readonly lostMiddle: number;
  readonly lostPostfix: number;
  /** The lost values (at most 5,000) with where each falls among what was read of its producer. */
  readonly lostValues: Array<{ value: string; where: LostPlace }>;
  readonly lostWrite: number;
  /** Acknowledged values retention released before the drain, with proof (see the module comment). */
  readonly released: number;
  /** Lost values that were below their queue's first offset without that proof (included in `lost`). */
  readonly lostBelowFirstOffset: number;
  /** Committed entries the log watcher saw change: two different entries reported committed at one index. */
  readonly committedLogConflicts: number;
  /** Reads of a reader that owns every queue that jumped over offsets released by the end (allowed). */
  readonly skipsOverReleased: number;
  readonly retention: RetentionResult | null;
  readonly unexpected: number;
  readonly abortedRead: number;
  readonly recovered: number;
  readonly inconsistentOffsets: Array<{ queue: number; offset: number; values: string[] }>;
  readonly duplicated: Array<{ value: string; positions: string[] }>;
  readonly redelivered: number;
  readonly redeliveryRate: number;
  readonly nonmonotonicSend: string[];
  readonly nonmonotonicPoll: string[];
  readonly pollSkip: string[];
  readonly electionSafety: string[];
  readonly divergence: number;
  readonly drainComplete: boolean;
  readonly producersBehind: string[];
  readonly recoveries: Recovery[];
  readonly maxRecoveryMs: number | null;
  /** From the end of the last fault to the first acknowledged enqueue invoked after it. */
  readonly finalRecoveryMs: number | null;
  /** Faults aimed at the leader: from their start to the first acknowledged enqueue invoked after it, within the fault. */
  readonly failovers: Array<{ fault: string; startS: number; failoverMs: number | null }>;
  readonly effects: FaultEffects;
  /** The delayed-message rules, when the run had the delay workload (else null). */
  readonly delay: DelayCheckResult | null;
  /** The transactional-message rules, when the run had the transaction workload (else null). */
  readonly transactions: TransactionCheckResult | null;
}

export type LostPlace = 'prefix' | 'middle' | 'postfix';

export interface RetentionResult {
  /** Per queue: the first offset the brokers still hold after the drain (the replica audit's lowest). */
  readonly firstOffsets: readonly number[];
  /** The first log index retention has not released (the replica audit's lowest). */
  readonly retainedFrom: number;
  /** Snapshots nodes installed from a leader (their logs say 'installed a snapshot from the leader'). */
  readonly snapshotsInstalled: number;
  /** Nodes whose log's first index was above 1 at the end (compacted under a snapshot). */
  readonly compactedNodes: number;
}

/** Below these a tiny-retention run is invalid: it did not exercise what it is for. */
export interface RetentionMinimums {
  readonly snapshotsInstalledMin: number;
  readonly compactedNodesMin: number;
}

export interface RetentionInput extends RetentionResult {
  /** Acknowledged value → the index of its entry, where a majority of nodes reported it committed (LogWatch). */
  readonly committedIndex: ReadonlyMap<string, number>;
  readonly required?: RetentionMinimums | undefined;
}

export interface CheckInput {
  readonly ops: readonly Op[];
  readonly leaders: readonly LeaderObservation[];
  /** Replica divergences found by the post-run audit. */
  readonly divergence: number;
  /** Faults aimed at the leader must outlast this to be expected to move leadership. */
  readonly leaderFaultMinMs: number;
  /** Require this many fault events for the run to count (nightly: 20). */
  readonly faultEventsMin: number;
  /**
   * When set, every fault aimed at the leader that lasts this long plus a second must see an
   * acknowledged enqueue within this many ms of its start: the majority keeps serving.
   */
  readonly failoverBoundMs?: number | undefined;
  /**
   * Liveness (FAULTS §6.3): after the last fault ends, an enqueue must be acknowledged within
   * this many ms, else the run fails even if everything acknowledged before was kept.
   */
  readonly finalHealBoundMs?: number | undefined;
  /** Tiny-retention runs: see RetentionInput and the module comment. */
  readonly retention?: RetentionInput | undefined;
  /** See CheckResult.committedLogConflicts (LogWatch). */
  readonly committedLogConflicts?: number | undefined;
  /** Check the delayed-message workload's operations with these settings (see checkDelayed). */
  readonly delay?: DelayCheckOptions | undefined;
  /** Check the transactional-message workload's operations with these settings (see checkTransactions). */
  readonly transactions?: TransactionCheckOptions | undefined;
}

const producerOf = (value: string): { producer: string; counter: number } => {
  const dash = value.lastIndexOf('-');
  return { producer: value.slice(0, dash), counter: Number(value.slice(dash + 1)) };
};

const limit = <T>(list: T[], max = 20): T[] => list.slice(0, max);

export function check(input: CheckInput): CheckResult {
  const { ops, retention } = input;
  /** Offsets below this were released by retention (0 without retention). */
  const firstOffsetOf = (queue: number): number => retention?.firstOffsets[queue] ?? 0;
  const attempted = new Set<string>();
  const acked = new Map<string, { queue: number; offset: number }>();
  const failed = new Set<string>();
  const indeterminate = new Set<string>();
  const readValues = new Set<string>();
  // The drain reads every queue from offset 0 after the heal: what it misses is not in the
  // log any more, even if a consumer saw it earlier (from a leader whose tail was then cut).
  const drainValues = new Set<string>();
  let drained = false;
  const positionsByValue = new Map<string, Set<string>>();
  const valuesAt = new Map<string, Set<string>>();
  const note = (queue: number, offset: number, value: string): void => {
    const key = `${queue}:${offset}`;
    (valuesAt.get(key) ?? valuesAt.set(key, new Set()).get(key) as Set<string>).add(value);
    (positionsByValue.get(value) ?? positionsByValue.set(value, new Set()).get(value) as Set<string>).add(key);
  };
  const nonmonotonicSend: string[] = [];
  const nonmonotonicPoll: string[] = [];
  const pollSkip: string[] = [];
  const lastSendOffset = new Map<string, number>();
  const lastReadOffset = new Map<string, number>();
  const maxReadOffset = new Map<number, number>();
  let dequeueReads = 0;
  let skipsOverReleased = 0;
  const dequeuedPositions = new Set<string>();

  for (const op of ops) {
    if (op.process === 'nemesis') continue;
    if (op.f === 'enqueue') {
      const value = String(op.value);
      if (op.type === 'invoke') attempted.add(value);
      else if (op.type === 'fail') failed.add(value);
      else if (op.type === 'info') indeterminate.add(value);
      else if (op.queue !== undefined && op.offset !== undefined) {
        acked.set(value, { queue: op.queue, offset: op.offset });
        note(op.queue, op.offset, value);
        const key = `${op.process}/${op.queue}`;
        const previous = lastSendOffset.get(key);
        if (previous !== undefined && op.offset <= previous) nonmonotonicSend.push(`process ${op.process} queue ${op.queue}: offset ${op.offset} after ${previous} (${value})`);
        lastSendOffset.set(key, op.offset);
      }
    } else if (readFunctions.has(op.f) && op.type === 'ok' && op.reads !== undefined) {
      if (op.f === 'drain') drained = true;
      for (const [queue, offset, value] of op.reads as Read[]) {
        readValues.add(value);
        if (op.f === 'drain') drainValues.add(value);
        note(queue, offset, value);
        maxReadOffset.set(queue, Math.max(maxReadOffset.get(queue) ?? -1, offset));
        if (op.f === 'dequeue') {
          dequeueReads++;
          dequeuedPositions.add(`${queue}:${offset}`);
        }
        // Group consumers may rewind or jump when queues move between members; readers that
        // own every queue (the log reader and the drain) must read each queue gap-free, in order.
        if (op.f === 'dequeue') continue;
        const key = `${op.process}/${queue}`;
        const previous = lastReadOffset.get(key);
        if (previous !== undefined && offset <= previous) nonmonotonicPoll.push(`${op.f} ${op.process} queue ${queue}: offset ${offset} after ${previous}`);
        // A jump is allowed only over offsets that are released at the end (it lands at or below the first offset).
        const skipped = previous === undefined ? offset > 0 : offset > previous + 1;
        if (skipped && offset > firstOffsetOf(queue)) pollSkip.push(`${op.f} ${op.process} queue ${queue}: ${previous ?? 'start'} → ${offset}`);
        else if (skipped) skipsOverReleased++;
        lastReadOffset.set(key, offset);
      }
    }
  }

  // Lost, split per producer into before / between / after what was read of it.
  const finalValues = drained ? drainValues : readValues;
  const readCounters = new Map<string, { min: number; max: number }>();
  for (const value of finalValues) {
    const { producer, counter } = producerOf(value);
    const range = readCounters.get(producer);
    if (range === undefined) readCounters.set(producer, { min: counter, max: counter });
    else readCounters.set(producer, { min: Math.min(range.min, counter), max: Math.max(range.max, counter) });
  }
  const lost: Array<{ value: string; where: LostPlace }> = [];
  const released = new Set<string>();
  let lostBelowFirstOffset = 0;
  for (const [value, { queue, offset }] of acked) {
    if (finalValues.has(value)) continue;
    if (retention !== undefined && offset < firstOffsetOf(queue)) {
      const index = retention.committedIndex.get(value);
      if (index !== undefined && index < retention.retainedFrom) {
        released.add(value);
        continue;
      }
      lostBelowFirstOffset++;
    }
    const { producer, counter } = producerOf(value);
    const range = readCounters.get(producer);
    lost.push({ value, where: range === undefined || counter > range.max ? 'postfix' : counter < range.min ? 'prefix' : 'middle' });
  }
  const lostAt = (where: LostPlace): number => lost.filter((l) => l.where === where).length;
  let lostWrite = 0;
  for (const [value, { queue, offset }] of acked) {
    if (!readValues.has(value) && !released.has(value) && offset < (maxReadOffset.get(queue) ?? -1)) lostWrite++;
  }

  // Drain completeness: every producer's highest acknowledged value was read (or released).
  const highWater = new Map<string, number>();
  for (const value of acked.keys()) {
    const { producer, counter } = producerOf(value);
    highWater.set(producer, Math.max(highWater.get(producer) ?? -1, counter));
  }
  const producersBehind: string[] = [];
  for (const [producer, counter] of highWater) {
    if (!finalValues.has(`${producer}-${counter}`) && !released.has(`${producer}-${counter}`)) producersBehind.push(`${producer} (highest acked ${counter}, highest read ${readCounters.get(producer)?.max ?? 'none'})`);
  }

  const unexpected = [...readValues].filter((v) => !attempted.has(v)).length;
  const abortedRead = [...readValues].filter((v) => failed.has(v)).length;
  const recovered = [...readValues].filter((v) => indeterminate.has(v)).length;
  const inconsistentOffsets = [...valuesAt].filter(([, values]) => values.size > 1).map(([key, values]) => {
    const [queue, offset] = key.split(':').map(Number) as [number, number];
    return { queue, offset, values: [...values] };
  });
  const duplicated = [...positionsByValue].filter(([, positions]) => positions.size > 1).map(([value, positions]) => ({ value, positions: [...positions] }));
  const redelivered = dequeueReads - dequeuedPositions.size;

  const electionSafety: string[] = [];
  const leaderOfTerm = new Map<number, string>();
  for (const observation of input.leaders) {
    const known = leaderOfTerm.get(observation.term);
    if (known === undefined) leaderOfTerm.set(observation.term, observation.nodeId);
    else if (known !== observation.nodeId) electionSafety.push(`term ${observation.term} has two leaders: ${known} and ${observation.nodeId}`);
  }

  const endNs = ops.length === 0 ? 0 : (ops[ops.length - 1] as Op).time;
  const windows = faultWindows(ops, endNs);
  const acks = completions(ops, 'enqueue').filter((c) => c.op.type === 'ok');
  const recoveries = windows.map((window): Recovery => {
    const first = acks.find((c) => c.invokeNs >= window.stopNs);
    const recoveredAt = first === undefined ? endNs : first.op.time;
    const interrupted = windows.some((other) => other !== window && other.stopNs > window.stopNs && other.startNs < recoveredAt);
    return { fault: window.kind, healAtS: window.stopNs / 1e9, recoveryMs: first === undefined ? null : (first.op.time - window.stopNs) / 1e6, interrupted };
  });
  const lastRecovery = recoveries.reduce<Recovery | undefined>((last, r) => (last === undefined || r.healAtS > last.healAtS ? r : last), undefined);
  const finalRecoveryMs = lastRecovery?.recoveryMs ?? null;
  const measured = recoveries.filter((r) => !r.interrupted).map((r) => r.recoveryMs).filter((ms): ms is number => ms !== null);
  const failovers = windows.filter((w) => (w.value as EffectValue | undefined)?.targetsLeader === true).map((window) => {
    const first = acks.find((c) => c.op.time <= window.stopNs && c.invokeNs >= window.startNs);
    return { fault: window.kind, startS: window.startNs / 1e9, durationMs: (window.stopNs - window.startNs) / 1e6, failoverMs: first === undefined ? null : (first.op.time - window.startNs) / 1e6 };
  });
  const effects = faultEffects(windows, input);

  const reasons: string[] = [];
  const must = (count: number, what: string): void => { if (count > 0) reasons.push(`${count} ${what}`); };
  must(lost.length, 'lost');
  must(lostWrite, 'lost-write');
  must(unexpected, 'unexpected');
  must(abortedRead, 'aborted reads');
  must(inconsistentOffsets.length, 'inconsistent offsets');
  must(duplicated.length, 'duplicated (the broker de-duplicates sends)');
  must(nonmonotonicSend.length, 'nonmonotonic sends');
  must(nonmonotonicPoll.length, 'nonmonotonic polls');
  must(pollSkip.length, 'poll skips');
  must(electionSafety.length, 'election safety violations');
  must(input.divergence, 'replica divergences');
  const committedLogConflicts = input.committedLogConflicts ?? 0;
  must(committedLogConflicts, 'committed log entries that changed (seen by the log watcher)');
  const bound = input.failoverBoundMs;
  if (bound !== undefined) {
    const slow = failovers.filter((f) => f.durationMs >= bound + 1_000 && (f.failoverMs === null || f.failoverMs > bound));
    must(slow.length, `faults aimed at the leader without an acknowledged write within ${bound} ms (${slow.map((f) => `${f.fault} at ${f.startS.toFixed(1)} s`).join(', ')})`);
  }
  const finalBound = input.finalHealBoundMs;
  if (finalBound !== undefined && lastRecovery !== undefined && (finalRecoveryMs === null || finalRecoveryMs > finalBound)) {
    reasons.push(`liveness: no enqueue acknowledged within ${finalBound} ms of the last heal (${finalRecoveryMs === null ? 'none at all' : `first after ${finalRecoveryMs.toFixed(0)} ms`})`);
  }
  const delay = input.delay === undefined ? null : checkDelayed(ops, windows, input.delay);
  if (delay !== null) reasons.push(...delay.reasons.map((reason) => `delayed: ${reason}`));
  const transactions = input.transactions === undefined ? null : checkTransactions(ops, windows, input.transactions);
  if (transactions !== null) reasons.push(...transactions.reasons.map((reason) => `transactions: ${reason}`));
  let verdict: CheckResult['verdict'] = reasons.length > 0 ? 'fail' : 'pass';
  if (verdict === 'pass' && producersBehind.length > 0) {
    verdict = 'unknown';
    reasons.push(`drain incomplete: ${producersBehind.length} producers' highest acknowledged values were never read`);
  }
  if (verdict === 'pass') {
    const invalid = invalidReasons(effects, input.faultEventsMin);
    if (delay !== null && delay.acked === 0) invalid.push('no delayed send was acknowledged');
    if (transactions !== null) {
      const unexercised = Object.entries(transactions.ackedByFate).filter(([, n]) => n === 0).map(([fate]) => fate);
      if (unexercised.length > 0) invalid.push(`no transactional half send was acknowledged for fate ${unexercised.join(', ')}`);
      if (transactions.checkBacks === 0) invalid.push('no transaction was checked back');
    }
    const required = retention?.required;
    if (retention !== undefined && required !== undefined && retention.snapshotsInstalled < required.snapshotsInstalledMin) {
      invalid.push(`${retention.snapshotsInstalled} snapshots installed (at least ${required.snapshotsInstalledMin} required)`);
    }
    if (retention !== undefined && required !== undefined && retention.compactedNodes < required.compactedNodesMin) {
      invalid.push(`${retention.compactedNodes} nodes compacted their log (at least ${required.compactedNodesMin} required)`);
    }
    if (invalid.length > 0) {
      verdict = 'invalid';
      reasons.push(...invalid);
    }
  }
  return {
    verdict, reasons,
    attempted: attempted.size, acked: acked.size, failed: failed.size, indeterminate: indeterminate.size, read: readValues.size,
    lost: lost.length, lostPrefix: lostAt('prefix'), lostMiddle: lostAt('middle'), lostPostfix: lostAt('postfix'), lostValues: limit(lost, 5_000), lostWrite, unexpected, abortedRead, recovered,
    released: released.size, lostBelowFirstOffset, committedLogConflicts, skipsOverReleased,
    retention: retention === undefined ? null : { firstOffsets: retention.firstOffsets, retainedFrom: retention.retainedFrom, snapshotsInstalled: retention.snapshotsInstalled, compactedNodes: retention.compactedNodes },
    inconsistentOffsets: limit(inconsistentOffsets), duplicated: limit(duplicated), redelivered, redeliveryRate: dequeueReads === 0 ? 0 : redelivered / dequeueReads,
    nonmonotonicSend: limit(nonmonotonicSend), nonmonotonicPoll: limit(nonmonotonicPoll), pollSkip: limit(pollSkip), electionSafety: limit(electionSafety),
    divergence: input.divergence, drainComplete: producersBehind.length === 0, producersBehind: limit(producersBehind), recoveries,
    maxRecoveryMs: measured.length === 0 ? null : Math.max(...measured), finalRecoveryMs, effects,
    failovers: failovers.map(({ fault, startS, failoverMs }) => ({ fault, startS, failoverMs })),
    delay, transactions,
  };
}

export interface DelayCheckOptions {
  /**
   * A receive more than this before the due time is early. Producers, brokers and consumers
   * run on one host and read the same system clock, the due time is whole milliseconds and
   * travels losslessly (seconds + nanos), the broker fires only when its clock has reached it
   * and the consumer takes its time after the response arrived: a correct broker is never
   * early by even 1 ms. The tolerance only absorbs a step of the system clock during the run
   * (NTP); a broker bug (a fire through the wrong time, a due time rounded to its 1 s timer
   * slot, a message that bypassed the timer store) is early by far more.
   */
  readonly toleranceMs: number;
  /** Every acknowledged value must first be received within this many ms of max(due, the heal of the faults begun by then). */
  readonly latenessBoundMs: number;
  /** Lost means missing from the final drain (false under retention, which may release the topic's prefix: then missing from every read). */
  readonly drainDecides?: boolean | undefined;
}

export interface Lateness {
  readonly count: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

export interface DelayCheckResult {
  readonly reasons: string[];
  readonly toleranceMs: number;
  readonly latenessBoundMs: number;
  readonly attempted: number;
  readonly acked: number;
  readonly failed: number;
  readonly indeterminate: number;
  /** Acknowledged values received (by any consumer or the drain). */
  readonly delivered: number;
  /** Values whose send outcome was unknown that were received (allowed). */
  readonly recovered: number;
  /** Values (acknowledged or unknown) received more than `toleranceMs` before their due time: a failure. */
  readonly early: number;
  readonly earlyValues: Array<{ value: string; dueMs: number; receivedMs: number; by: string }>;
  /** Values whose store timestamp (when the broker made them visible, by its own account) is before their due time beyond the tolerance: a failure. */
  readonly visibleEarly: number;
  /** Acknowledged values never received (missing from the final drain): a failure. */
  readonly lost: number;
  readonly lostValues: string[];
  /** Of `lost`: values a live consumer received that the final drain, reading every queue from offset 0, did not find. */
  readonly lostAfterReceive: number;
  /** Acknowledged values first received later than the bound after max(due, heal): a failure. */
  readonly late: number;
  readonly lateValues: Array<{ value: string; dueMs: number; fromMs: number; receivedMs: number }>;
  /** Values never sent, and definitely failed sends that were delivered: failures. */
  readonly unexpected: number;
  readonly abortedRead: number;
  /** One (queue, offset) with two values: a failure. */
  readonly inconsistentOffsets: number;
  /** Values stored at more than one (queue, offset): allowed, counted. */
  readonly duplicated: number;
  /** SimpleConsumer receives beyond the first of each value (a lost ack, a released delivery): allowed, counted. */
  readonly redelivered: number;
  /** First receive − due, over the acknowledged values received. */
  readonly lateness: Lateness | null;
  /** First receive − max(due, heal): what the bound applies to. */
  readonly latenessAfterHeal: Lateness | null;
  /** Store timestamp − due (the broker's fire lag), over the first receive of each acknowledged value. */
  readonly fireLag: Lateness | null;
  /** Whether the final drain ran. */
  readonly drained: boolean;
}

function lateness(values: readonly number[]): Lateness | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p: number): number => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
  return { count: sorted.length, p50Ms: rank(50), p99Ms: rank(99), maxMs: sorted[sorted.length - 1] as number };
}

/**
 * The delayed-message rules, on the DelayWorkload's operations (f `delay-send` and the reads
 * of delayReadFunctions), all times on the wall clock the processes share:
 * 1. no value, acknowledged or unknown, is received before its due time (less the tolerance),
 *    nor stamped visible by the broker before it (`early`, `visibleEarly`);
 * 2. every acknowledged value is received (`lost` = 0; with a drain, the drain must find it);
 * 3. each acknowledged value is first received within `latenessBoundMs` of max(due, H), where
 *    H is the latest heal (stop) of the fault windows that had begun by the due time: a value
 *    due while the group was cut or down is owed only once that fault is over (`late`).
 * A value whose send outcome is unknown may or may not appear. Duplicates (one value at two
 * offsets) and SimpleConsumer redeliveries are allowed and counted; a value never sent, a
 * definitely failed send that appears, and one offset with two values are failures.
 * Fault windows are in the history's monotonic time; they are put on the wall clock through
 * the (wall, monotonic) pairs the delayed operations carry (the median offset: a clock step
 * during the run moves it by no more than the step).
 */
export function checkDelayed(ops: readonly Op[], windows: readonly FaultWindow[], options: DelayCheckOptions): DelayCheckResult {
  const due = new Map<string, number>();
  const attempted = new Set<string>();
  const acked = new Set<string>();
  const failed = new Set<string>();
  const indeterminate = new Set<string>();
  const firstReceive = new Map<string, { atMs: number; storedMs: number }>();
  const drainValues = new Set<string>();
  const liveValues = new Set<string>();
  const positionsByValue = new Map<string, Set<string>>();
  const valuesAt = new Map<string, Set<string>>();
  const earlyValues: DelayCheckResult['earlyValues'] = [];
  const early = new Set<string>();
  const visibleEarly = new Set<string>();
  const simpleReceives = new Map<string, number>();
  const offsets: number[] = [];
  let drained = false;
  for (const op of ops) {
    if (op.wallMs !== undefined) offsets.push(op.wallMs - op.time / 1e6);
    if (op.f === 'delay-send') {
      const value = String(op.value);
      if (op.dueMs !== undefined) due.set(value, op.dueMs);
      if (op.type === 'invoke') attempted.add(value);
      else if (op.type === 'ok') acked.add(value);
      else if (op.type === 'fail') failed.add(value);
      else indeterminate.add(value);
      continue;
    }
    if (!delayReadFunctions.has(op.f) || op.type !== 'ok' || op.reads === undefined) continue;
    if (op.f === 'delay-drain') drained = true;
    const atMs = op.wallMs ?? Number.NaN;
    (op.reads as Read[]).forEach(([queue, offset, value], i) => {
      const storedMs = op.storedMs?.[i] ?? Number.NaN;
      const key = `${queue}:${offset}`;
      (valuesAt.get(key) ?? valuesAt.set(key, new Set()).get(key) as Set<string>).add(value);
      (positionsByValue.get(value) ?? positionsByValue.set(value, new Set()).get(value) as Set<string>).add(key);
      if (op.f === 'delay-drain') drainValues.add(value);
      else liveValues.add(value);
      if (op.f === 'delay-receive') simpleReceives.set(value, (simpleReceives.get(value) ?? 0) + 1);
      const first = firstReceive.get(value);
      if (first === undefined || atMs < first.atMs) firstReceive.set(value, { atMs, storedMs });
      const dueMs = due.get(value);
      if (dueMs === undefined) return;
      if (atMs < dueMs - options.toleranceMs && !early.has(value)) {
        early.add(value);
        if (earlyValues.length < 20) earlyValues.push({ value, dueMs, receivedMs: atMs, by: String(op.process) });
      }
      if (storedMs < dueMs - options.toleranceMs) visibleEarly.add(value);
    });
  }

  const sortedOffsets = [...offsets].sort((a, b) => a - b);
  const wallOffsetMs = sortedOffsets[Math.floor(sortedOffsets.length / 2)] ?? 0;
  const heals = windows.map((w) => ({ startMs: wallOffsetMs + w.startNs / 1e6, stopMs: wallOffsetMs + w.stopNs / 1e6 }));
  const owedFrom = (dueMs: number): number => heals.reduce((from, w) => (w.startMs <= dueMs ? Math.max(from, w.stopMs) : from), dueMs);

  const finalValues = drained && options.drainDecides !== false ? drainValues : new Set([...drainValues, ...liveValues]);
  const lostValues: string[] = [];
  let lostAfterReceive = 0;
  const latenessDue: number[] = [];
  const latenessHeal: number[] = [];
  const fireLags: number[] = [];
  const lateValues: DelayCheckResult['lateValues'] = [];
  let late = 0;
  let delivered = 0;
  for (const value of acked) {
    const dueMs = due.get(value) as number;
    const first = firstReceive.get(value);
    if (!finalValues.has(value)) {
      lostValues.push(value);
      if (first !== undefined) lostAfterReceive++;
      continue;
    }
    if (first === undefined) continue;
    delivered++;
    const fromMs = owedFrom(dueMs);
    latenessDue.push(first.atMs - dueMs);
    latenessHeal.push(first.atMs - fromMs);
    if (Number.isFinite(first.storedMs)) fireLags.push(first.storedMs - dueMs);
    if (first.atMs - fromMs > options.latenessBoundMs) {
      late++;
      if (lateValues.length < 20) lateValues.push({ value, dueMs, fromMs, receivedMs: first.atMs });
    }
  }
  const received = [...firstReceive.keys()];
  const unexpected = received.filter((v) => !attempted.has(v)).length;
  const abortedRead = received.filter((v) => failed.has(v)).length;
  const recovered = received.filter((v) => indeterminate.has(v)).length;
  const inconsistentOffsets = [...valuesAt.values()].filter((values) => values.size > 1).length;
  const duplicated = [...positionsByValue.values()].filter((positions) => positions.size > 1).length;
  const redelivered = [...simpleReceives.values()].reduce((sum, n) => sum + n - 1, 0);

  const reasons: string[] = [];
  const must = (count: number, what: string): void => { if (count > 0) reasons.push(`${count} ${what}`); };
  must(early.size, `early (received more than ${options.toleranceMs} ms before the due time: ${earlyValues.slice(0, 3).map((e) => `${e.value} ${e.dueMs - e.receivedMs} ms early`).join(', ')})`);
  must(visibleEarly.size, 'made visible early (store timestamp before the due time)');
  must(lostValues.length, `lost (acknowledged, never received${lostAfterReceive > 0 ? `; ${lostAfterReceive} received, then missing from the drain` : ''})`);
  must(late, `late (first received more than ${options.latenessBoundMs} ms after max(due, heal))`);
  must(unexpected, 'unexpected');
  must(abortedRead, 'aborted reads (failed send delivered)');
  must(inconsistentOffsets, 'inconsistent offsets');
  return {
    reasons, toleranceMs: options.toleranceMs, latenessBoundMs: options.latenessBoundMs,
    attempted: attempted.size, acked: acked.size, failed: failed.size, indeterminate: indeterminate.size, delivered, recovered,
    early: early.size, earlyValues, visibleEarly: visibleEarly.size, lost: lostValues.length, lostValues: limit(lostValues, 100), lostAfterReceive,
    late, lateValues, unexpected, abortedRead, inconsistentOffsets, duplicated, redelivered,
    lateness: lateness(latenessDue), latenessAfterHeal: lateness(latenessHeal), fireLag: lateness(fireLags), drained,
  };
}

interface EffectValue {
  targetsLeader?: boolean;
  leader?: string | null;
  packetsDropped?: number;
  discardedBytes?: number;
  powerFailures?: number;
  corruptionDetected?: boolean;
  partition?: boolean;
  corruption?: boolean;
}

function faultEffects(windows: ReturnType<typeof faultWindows>, input: CheckInput): FaultEffects {
  const changes: number[] = [];
  let previous: LeaderObservation | undefined;
  for (const observation of input.leaders) {
    if (previous !== undefined && (observation.nodeId !== previous.nodeId || observation.term !== previous.term)) changes.push(observation.timeNs);
    previous = observation;
  }
  let leaderFaults = 0;
  let leaderFaultsWithoutLeaderChange = 0;
  let partitions = 0;
  let partitionsThatDroppedNothing = 0;
  let packetsDropped = 0;
  let powerFailures = 0;
  let bytesDiscarded = 0;
  let corruptions = 0;
  let corruptionDetected = 0;
  for (const window of windows) {
    const start = (window.value ?? {}) as EffectValue;
    const stop = (window.stopValue ?? {}) as EffectValue;
    // Count it only if the leader the nemesis aimed at is the one last seen leading (in a
    // mixed period a fault a moment earlier may already have moved leadership).
    const seenBefore = lastLeaderBefore(input.leaders, window.startNs);
    const aimedRight = start.leader === undefined || seenBefore === undefined || start.leader === seenBefore;
    if (start.targetsLeader === true && aimedRight && (window.stopNs - window.startNs) / 1e6 >= input.leaderFaultMinMs) {
      leaderFaults++;
      if (!leadershipMoved(input.leaders, window.startNs, window.stopNs)) leaderFaultsWithoutLeaderChange++;
    }
    if (start.partition === true) {
      partitions++;
      packetsDropped += stop.packetsDropped ?? 0;
      if ((stop.packetsDropped ?? 0) === 0) partitionsThatDroppedNothing++;
    }
    powerFailures += (start.powerFailures ?? 0) + (stop.powerFailures ?? 0);
    bytesDiscarded += (start.discardedBytes ?? 0) + (stop.discardedBytes ?? 0);
    if (start.corruption === true) corruptions++;
    if (stop.corruptionDetected === true || start.corruptionDetected === true) corruptionDetected++;
  }
  return {
    leaderFaults, leaderFaultsWithoutLeaderChange, partitions, partitionsThatDroppedNothing, packetsDropped, powerFailures,
    bytesDiscardedByPowerLoss: bytesDiscarded, corruptions, corruptionDetected, leaderChanges: changes.length, faultEvents: windows.length,
  };
}

/**
 * Whether leadership (node or term) moved between the last leader seen before `startNs` and
 * the first leader seen after `stopNs`, inclusive: restarted nodes may need seconds to elect,
 * and a paused leader learns of its successor only when it resumes.
 */
function leadershipMoved(leaders: readonly LeaderObservation[], startNs: number, stopNs: number): boolean {
  let before: LeaderObservation | undefined;
  for (const observation of leaders) {
    if (observation.timeNs < startNs) {
      before = observation;
      continue;
    }
    if (before === undefined || observation.nodeId !== before.nodeId || observation.term !== before.term) return true;
    if (observation.timeNs >= stopNs) return false;
  }
  return false;
}

function lastLeaderBefore(leaders: readonly LeaderObservation[], timeNs: number): string | undefined {
  let last: LeaderObservation | undefined;
  for (const observation of leaders) {
    if (observation.timeNs >= timeNs) break;
    if (last === undefined || observation.timeNs > last.timeNs || observation.term >= last.term) last = observation;
  }
  return last?.nodeId;
}

/** A run whose faults visibly did nothing proves nothing. */
function invalidReasons(effects: FaultEffects, faultEventsMin: number): string[] {
  const reasons: string[] = [];
  if (effects.faultEvents < faultEventsMin) reasons.push(`only ${effects.faultEvents} fault events (at least ${faultEventsMin} required)`);
  if (effects.leaderFaultsWithoutLeaderChange > 0) reasons.push(`${effects.leaderFaultsWithoutLeaderChange} of ${effects.leaderFaults} faults aimed at the leader changed no leader`);
  if (effects.partitionsThatDroppedNothing > 0) reasons.push(`${effects.partitionsThatDroppedNothing} of ${effects.partitions} partitions dropped no packets`);
  if (effects.powerFailures > 0 && effects.bytesDiscardedByPowerLoss === 0) reasons.push(`${effects.powerFailures} power failures discarded no bytes`);
  return reasons;
}
