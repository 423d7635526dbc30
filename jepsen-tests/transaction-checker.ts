/**
 * The transactional-message rules (checkTransactions), a pure function of the history like
 * the rest of the checker, on the TransactionWorkload's operations (transaction-workload.ts).
 *
 * Every value's fate is decided before its half message is sent and is part of the value
 * (`<fate>/<process>-<counter>`), so the checker, like the application's transactionChecker,
 * knows how each transaction should end:
 * - `commit` / `rollback`: the sending producer ends it (EndTransaction COMMIT / ROLLBACK);
 * - `abandon-commit` / `abandon-rollback`: the sender never ends it; a check-back asks another
 *   producer, whose checker answers COMMIT / ROLLBACK;
 * - `unanswered`: never ended, and every check-back is left unanswered: the broker must roll
 *   it back after its last check (`--txn-checks-max`).
 * A transaction whose end failed or whose outcome was unknown is left to the check-backs,
 * which answer as its fate says (the application knows what it meant).
 *
 * Rules (each a failure when broken):
 * 1. no value whose transaction was rolled back is ever delivered (`rolledBackDelivered`):
 *    a ROLLBACK answered OK, or a fate that nobody ever commits (rollback, abandon-rollback,
 *    unanswered), whatever the outcome of its sends and ends;
 * 2. every value whose COMMIT was answered OK is in the final drain (`lostCommitted`), and so
 *    is every commit-decided value (commit, abandon-commit) whose half send was acknowledged,
 *    however its own end went: a check-back commits it (`lost` counts both); each is first
 *    delivered within `latenessBoundMs` of max(due, the heal of the faults begun by then),
 *    due being its COMMIT's OK, or its half's acknowledgement plus `checkAfterMs` when the
 *    check-back has to do it (`late`);
 * 3. a value delivered was stored once: one (queue, offset) per value (`duplicated`; the
 *    broker de-duplicates a commit by message id, so a retried half committed twice is stored
 *    once), and one value per (queue, offset) (`inconsistentOffsets`);
 * 4. a value never sent, or whose half send definitely failed, is never delivered
 *    (`unexpected`, `abortedRead`);
 * 5. a half message is invisible until committed: no value is delivered before the first
 *    commit of it was asked for, by its sender (the COMMIT's invoke) or by a check-back
 *    answered COMMIT, both recorded before the broker hears of them (`visibleBeforeCommit`);
 * 6. no check-back comes more than `toleranceMs` before `checkAfterMs` after the half's send
 *    was invoked (`checkedEarly`; one host, one clock);
 * 7. after the run (the workload's settle phase) the broker's own account of each acknowledged
 *    half (QueryMessage's state) must not contradict the deliveries (`stateMismatch`: stored
 *    but not in the drain, or rolled-back but delivered); an unanswered transaction still open
 *    after its last check plus the settle bound is `notRolledBack`; and a late COMMIT of a
 *    transaction the broker says was rolled back must be refused (`lateCommitAccepted`).
 *
 * Unknown outcomes, honestly: a commit-decided value whose half send was unknown may or may
 * not be delivered (if the half was stored, a check-back commits it: `recovered` counts those
 * delivered); a rollback-decided one must never be (rule 1 holds whatever was unknown). An
 * unknown or failed COMMIT changes nothing for rule 2 (the check-back finishes the job); an
 * unknown late-commit probe proves nothing either way and is counted only. SimpleConsumer
 * redeliveries (a lost ack) are counted, not failed.
 *
 * Times are the history's monotonic times: every event, the check-backs included, is
 * recorded by the harness process, so no wall clock is compared with another.
 */
import { txnReadFunctions, type FaultWindow, type Op, type Read } from './history.js';
import type { Lateness } from './checker.js';

export const transactionFates = ['commit', 'rollback', 'abandon-commit', 'abandon-rollback', 'unanswered'] as const;
export type TransactionFate = typeof transactionFates[number];

/** The value's fate (the text before its '/'), or undefined for a value the workload never makes. */
export function fateOf(value: string): TransactionFate | undefined {
  const slash = value.indexOf('/');
  const fate = slash < 0 ? '' : value.slice(0, slash);
  return (transactionFates as readonly string[]).includes(fate) ? fate as TransactionFate : undefined;
}

/** How the application ends a transaction of this fate, and so what a check-back answers (undefined: left unanswered). */
export function decisionOf(fate: TransactionFate): 'COMMIT' | 'ROLLBACK' | undefined {
  if (fate === 'commit' || fate === 'abandon-commit') return 'COMMIT';
  return fate === 'unanswered' ? undefined : 'ROLLBACK';
}

const commitDecided = (fate: TransactionFate | undefined): boolean => fate === 'commit' || fate === 'abandon-commit';

export interface TransactionCheckOptions {
  /** The brokers' `--txn-check-after-ms`: the first check-back of an open transaction, this long after its half was stored. */
  readonly checkAfterMs: number;
  readonly checkIntervalMs: number;
  readonly checksMax: number;
  /** See rule 2: the bound on a commit-decided value's first delivery after max(due, heal). */
  readonly latenessBoundMs: number;
  /** See rule 6 (default 50 ms: only a clock step; the host clock is shared). */
  readonly toleranceMs?: number | undefined;
}

export interface TransactionCheckResult {
  readonly reasons: string[];
  readonly checkAfterMs: number;
  readonly latenessBoundMs: number;
  /** Half sends attempted / acknowledged / definitely failed / unknown. */
  readonly attempted: number;
  readonly acked: number;
  readonly failed: number;
  readonly indeterminate: number;
  /** Acknowledged half sends per fate. */
  readonly ackedByFate: Record<TransactionFate, number>;
  /** Ends by the sender: COMMIT answered OK, ROLLBACK answered OK, definitely failed, unknown. */
  readonly committed: number;
  readonly rolledBack: number;
  readonly endFailed: number;
  readonly endUnknown: number;
  /** Distinct values delivered (live consumers or the drain). */
  readonly delivered: number;
  /** Acknowledged abandon-commit values in the drain: committed by a check-back. */
  readonly abandonedCommitted: number;
  /** Acknowledged commit values whose own COMMIT failed or was unknown, in the drain: finished by a check-back. */
  readonly commitFinishedByCheckBack: number;
  /** Acknowledged abandon-rollback values the broker reports rolled back. */
  readonly abandonedRolledBack: number;
  /** Acknowledged unanswered values the broker reports rolled back and whose late COMMIT it refused: rolled back after the last check. */
  readonly unansweredRolledBack: number;
  /** Commit-decided values whose half send was unknown, delivered (allowed). */
  readonly recovered: number;
  readonly rolledBackDelivered: number;
  readonly rolledBackDeliveredValues: string[];
  readonly lost: number;
  /** Of `lost`: values whose COMMIT had been answered OK. */
  readonly lostCommitted: number;
  readonly lostValues: string[];
  readonly late: number;
  readonly lateValues: Array<{ value: string; dueS: number; owedFromS: number; deliveredS: number }>;
  readonly duplicated: number;
  readonly duplicatedValues: Array<{ value: string; positions: string[] }>;
  readonly inconsistentOffsets: number;
  readonly unexpected: number;
  readonly abortedRead: number;
  readonly visibleBeforeCommit: number;
  readonly visibleBeforeCommitValues: string[];
  readonly checkedEarly: number;
  readonly notRolledBack: number;
  /** Acknowledged halves with no state recorded after the run (the query failed): no verdict. */
  readonly stateUnknown: number;
  readonly stateMismatch: number;
  readonly stateMismatchValues: Array<{ value: string; state: string; delivered: boolean; drained: boolean }>;
  /** Late COMMITs of transactions the broker reports rolled back: accepted (a failure), refused, unknown. */
  readonly lateCommitAccepted: number;
  readonly lateCommitRefused: number;
  readonly lateCommitUnknown: number;
  /** SimpleConsumer receives beyond the first of each value. */
  readonly redelivered: number;
  /** Check-backs the checkers were asked (all), and the values asked about. */
  readonly checkBacks: number;
  readonly valuesCheckedBack: number;
  /** Per unanswered value: how many times it was asked (p50 / max), against checksMax. */
  readonly unansweredAsks: Lateness | null;
  /** First check-back − the half's acknowledgement (ms), over the values asked. */
  readonly checkBackLatency: Lateness | null;
  /** abandon-commit: first delivery − the half's acknowledgement (ms). */
  readonly checkBackDelivery: Lateness | null;
  /** Committed by the sender: first delivery − the COMMIT's OK (ms). */
  readonly deliveryAfterCommit: Lateness | null;
  /** First delivery − max(due, heal), what the lateness bound applies to (ms). */
  readonly latenessAfterHeal: Lateness | null;
  readonly drained: boolean;
}

function distribution(values: readonly number[]): Lateness | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p: number): number => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
  return { count: sorted.length, p50Ms: rank(50), p99Ms: rank(99), maxMs: sorted[sorted.length - 1] as number };
}

const ms = (ns: number): number => ns / 1e6;

export function checkTransactions(ops: readonly Op[], windows: readonly FaultWindow[], options: TransactionCheckOptions): TransactionCheckResult {
  const toleranceMs = options.toleranceMs ?? 50;
  const fates = new Map<string, TransactionFate | undefined>();
  const attempted = new Set<string>();
  const sendInvokedNs = new Map<string, number>();
  const ackedNs = new Map<string, number>();
  const failed = new Set<string>();
  const indeterminate = new Set<string>();
  const commitOkNs = new Map<string, number>();
  const rollbackOk = new Set<string>();
  const endFailed = new Set<string>();
  const endUnknown = new Set<string>();
  /** The op index of the first commit asked for: the sender's COMMIT invoke or a check-back answered COMMIT. */
  const commitAskedAt = new Map<string, number>();
  const asks = new Map<string, { firstNs: number; count: number }>();
  let checkBacks = 0;
  const states = new Map<string, string>();
  const probes = new Map<string, Op['type']>();
  const firstDelivery = new Map<string, { ns: number; index: number }>();
  const drainValues = new Set<string>();
  const positionsByValue = new Map<string, Set<string>>();
  const valuesAt = new Map<string, Set<string>>();
  const simpleReceives = new Map<string, number>();
  let drained = false;
  const noteCommitAsked = (value: string, index: number): void => {
    if (!commitAskedAt.has(value)) commitAskedAt.set(value, index);
  };

  for (const op of ops) {
    const value = op.value === undefined ? '' : String(op.value);
    switch (op.f) {
      case 'txn-send':
        if (!fates.has(value)) fates.set(value, fateOf(value));
        if (op.type === 'invoke') {
          attempted.add(value);
          if (!sendInvokedNs.has(value)) sendInvokedNs.set(value, op.time);
        } else if (op.type === 'ok') ackedNs.set(value, op.time);
        else if (op.type === 'fail') failed.add(value);
        else indeterminate.add(value);
        continue;
      case 'txn-end':
        if (op.type === 'invoke') {
          if (op.resolution === 'COMMIT') noteCommitAsked(value, op.index);
        } else if (op.type === 'ok') {
          if (op.resolution === 'COMMIT') commitOkNs.set(value, op.time);
          else rollbackOk.add(value);
        } else if (op.type === 'fail') endFailed.add(value);
        else endUnknown.add(value);
        continue;
      case 'txn-check':
        checkBacks++;
        if (op.resolution === 'COMMIT') noteCommitAsked(value, op.index);
        asks.set(value, { firstNs: asks.get(value)?.firstNs ?? op.time, count: (asks.get(value)?.count ?? 0) + 1 });
        continue;
      case 'txn-state':
        if (op.state !== undefined) states.set(value, op.state);
        continue;
      case 'txn-late-commit':
        if (op.type !== 'invoke') probes.set(value, op.type);
        continue;
    }
    if (!txnReadFunctions.has(op.f) || op.type !== 'ok' || op.reads === undefined) continue;
    if (op.f === 'txn-drain') drained = true;
    for (const [queue, offset, read] of op.reads as Read[]) {
      const key = `${queue}:${offset}`;
      (valuesAt.get(key) ?? valuesAt.set(key, new Set()).get(key) as Set<string>).add(read);
      (positionsByValue.get(read) ?? positionsByValue.set(read, new Set()).get(read) as Set<string>).add(key);
      if (op.f === 'txn-drain') drainValues.add(read);
      if (op.f === 'txn-receive') simpleReceives.set(read, (simpleReceives.get(read) ?? 0) + 1);
      if (!firstDelivery.has(read)) firstDelivery.set(read, { ns: op.time, index: op.index });
    }
  }

  const finalValues = drained ? drainValues : new Set(firstDelivery.keys());
  const delivered = [...firstDelivery.keys()];
  const owedFrom = (dueNs: number): number => windows.reduce((from, w) => (w.startNs <= dueNs ? Math.max(from, w.stopNs) : from), dueNs);

  // Rule 1: rolled back, never delivered.
  const rolledBackValues = delivered.filter((v) => rollbackOk.has(v) || (fates.get(v) !== undefined && !commitDecided(fates.get(v))));
  // Rule 2: commit-decided with an acknowledged half, or committed OK: in the drain, in time.
  const lostValues: string[] = [];
  let lostCommitted = 0;
  const lateValues: TransactionCheckResult['lateValues'] = [];
  let late = 0;
  const latenessHeal: number[] = [];
  const checkBackDelivery: number[] = [];
  const deliveryAfterCommit: number[] = [];
  let abandonedCommitted = 0;
  let commitFinishedByCheckBack = 0;
  const owed = new Set<string>([...commitOkNs.keys(), ...[...ackedNs.keys()].filter((v) => commitDecided(fates.get(v)))]);
  for (const value of owed) {
    if (!finalValues.has(value)) {
      lostValues.push(value);
      if (commitOkNs.has(value)) lostCommitted++;
      continue;
    }
    const first = firstDelivery.get(value) as { ns: number };
    const ack = ackedNs.get(value);
    const committedAt = commitOkNs.get(value);
    if (fates.get(value) === 'abandon-commit' && ack !== undefined) {
      abandonedCommitted++;
      checkBackDelivery.push(ms(first.ns - ack));
    }
    if (fates.get(value) === 'commit' && committedAt === undefined) commitFinishedByCheckBack++;
    if (committedAt !== undefined) deliveryAfterCommit.push(Math.max(0, ms(first.ns - committedAt)));
    const dueNs = committedAt ?? (ack as number) + options.checkAfterMs * 1e6;
    const fromNs = owedFrom(dueNs);
    latenessHeal.push(ms(first.ns - fromNs));
    if (ms(first.ns - fromNs) > options.latenessBoundMs) {
      late++;
      if (lateValues.length < 20) lateValues.push({ value, dueS: dueNs / 1e9, owedFromS: fromNs / 1e9, deliveredS: first.ns / 1e9 });
    }
  }
  // Rule 3.
  const duplicatedValues = [...positionsByValue].filter(([, positions]) => positions.size > 1).map(([value, positions]) => ({ value, positions: [...positions] }));
  const inconsistentOffsets = [...valuesAt.values()].filter((values) => values.size > 1).length;
  // Rule 4.
  const unexpected = delivered.filter((v) => !attempted.has(v)).length;
  const abortedRead = delivered.filter((v) => failed.has(v)).length;
  const recovered = delivered.filter((v) => indeterminate.has(v) && commitDecided(fates.get(v))).length;
  // Rule 5: delivered before any commit was asked for (rolled-back deliveries are rule 1's).
  const visibleBeforeCommitValues = delivered.filter((v) => commitDecided(fates.get(v)) && !rollbackOk.has(v)
    && (commitAskedAt.get(v) === undefined || (firstDelivery.get(v) as { index: number }).index < (commitAskedAt.get(v) as number)));
  // Rule 6.
  let checkedEarly = 0;
  const checkBackLatency: number[] = [];
  for (const [value, ask] of asks) {
    const invoked = sendInvokedNs.get(value);
    if (invoked !== undefined && ms(ask.firstNs - invoked) < options.checkAfterMs - toleranceMs) checkedEarly++;
    const ack = ackedNs.get(value);
    if (ack !== undefined) checkBackLatency.push(ms(ask.firstNs - ack));
  }
  // Rule 7: the broker's account after the run, and the late COMMITs.
  const stateMismatchValues: TransactionCheckResult['stateMismatchValues'] = [];
  let stateMismatch = 0;
  let notRolledBack = 0;
  let stateUnknown = 0;
  let abandonedRolledBack = 0;
  let unansweredRolledBack = 0;
  const unansweredAsks: number[] = [];
  for (const value of ackedNs.keys()) {
    const state = states.get(value);
    const fate = fates.get(value);
    if (fate === 'unanswered') unansweredAsks.push(asks.get(value)?.count ?? 0);
    if (state === undefined || state === 'unknown') {
      stateUnknown++;
      continue;
    }
    const wasDelivered = firstDelivery.has(value);
    if ((state === 'stored' && !finalValues.has(value)) || (state === 'rolled-back' && wasDelivered)) {
      stateMismatch++;
      if (stateMismatchValues.length < 20) stateMismatchValues.push({ value, state, delivered: wasDelivered, drained: finalValues.has(value) });
    }
    if (fate === 'unanswered' && state === 'half') notRolledBack++;
    if (fate === 'abandon-rollback' && state === 'rolled-back') abandonedRolledBack++;
    if (fate === 'unanswered' && state === 'rolled-back' && probes.get(value) === 'fail') unansweredRolledBack++;
  }
  const probeOutcomes = [...probes.values()];
  const lateCommitAccepted = probeOutcomes.filter((t) => t === 'ok').length;
  const redelivered = [...simpleReceives.values()].reduce((sum, n) => sum + n - 1, 0);

  const ackedByFate = Object.fromEntries(transactionFates.map((f) => [f, 0])) as Record<TransactionFate, number>;
  for (const value of ackedNs.keys()) {
    const fate = fates.get(value);
    if (fate !== undefined) ackedByFate[fate]++;
  }

  const reasons: string[] = [];
  const must = (count: number, what: string): void => { if (count > 0) reasons.push(`${count} ${what}`); };
  must(rolledBackValues.length, `rolled-back values delivered (${rolledBackValues.slice(0, 3).join(', ')})`);
  must(lostValues.length, `lost (commit-decided with an acknowledged half, or committed OK, and not in the drain; ${lostCommitted} of them committed OK: ${lostValues.slice(0, 3).join(', ')})`);
  must(late, `late (first delivered more than ${options.latenessBoundMs} ms after max(due, heal))`);
  must(duplicatedValues.length, 'duplicated (stored at two offsets; a commit is de-duplicated by message id)');
  must(inconsistentOffsets, 'inconsistent offsets');
  must(unexpected, 'unexpected (never sent)');
  must(abortedRead, 'aborted reads (a definitely failed half send delivered)');
  must(visibleBeforeCommitValues.length, `delivered before any commit was asked for (${visibleBeforeCommitValues.slice(0, 3).join(', ')})`);
  must(checkedEarly, `checked back more than ${toleranceMs} ms before ${options.checkAfterMs} ms after the half send`);
  must(notRolledBack, 'unanswered transactions still open after their last check (not rolled back)');
  must(stateMismatch, 'halves whose broker state (QueryMessage) contradicts the deliveries');
  must(lateCommitAccepted, 'late COMMITs accepted for transactions the broker reported rolled back');
  return {
    reasons, checkAfterMs: options.checkAfterMs, latenessBoundMs: options.latenessBoundMs,
    attempted: attempted.size, acked: ackedNs.size, failed: failed.size, indeterminate: indeterminate.size, ackedByFate,
    committed: commitOkNs.size, rolledBack: rollbackOk.size, endFailed: endFailed.size, endUnknown: endUnknown.size,
    delivered: delivered.length, abandonedCommitted, commitFinishedByCheckBack, abandonedRolledBack, unansweredRolledBack, recovered,
    rolledBackDelivered: rolledBackValues.length, rolledBackDeliveredValues: rolledBackValues.slice(0, 100),
    lost: lostValues.length, lostCommitted, lostValues: lostValues.slice(0, 100), late, lateValues,
    duplicated: duplicatedValues.length, duplicatedValues: duplicatedValues.slice(0, 20), inconsistentOffsets, unexpected, abortedRead,
    visibleBeforeCommit: visibleBeforeCommitValues.length, visibleBeforeCommitValues: visibleBeforeCommitValues.slice(0, 20), checkedEarly,
    notRolledBack, stateUnknown, stateMismatch, stateMismatchValues,
    lateCommitAccepted, lateCommitRefused: probeOutcomes.filter((t) => t === 'fail').length, lateCommitUnknown: probeOutcomes.filter((t) => t === 'info').length,
    redelivered, checkBacks, valuesCheckedBack: asks.size, unansweredAsks: distribution(unansweredAsks),
    checkBackLatency: distribution(checkBackLatency), checkBackDelivery: distribution(checkBackDelivery), deliveryAfterCommit: distribution(deliveryAfterCommit),
    latenessAfterHeal: distribution(latenessHeal), drained,
  };
}
