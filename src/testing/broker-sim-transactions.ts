/**
 * Transactional messages (F9) in the broker simulator: what the clients know of every
 * transaction, and the rules checked against it (the clients that make the history are in
 * broker-sim-workload.ts: a transactional producer and the producer's transaction checker).
 *
 * Each transactional message has its application's decision, drawn up front: commit, roll
 * back, or never answer. Its producer sends it as a half message (kind TRANSACTION), then
 * ends the transaction the send answered with the decision, or with the opposite (an
 * application whose checker disagrees with what it did: the first end applied wins), or
 * abandons it; now and then, after an end answered OK, it sends the contradicting end too. A
 * send retried after an unknown outcome may open a second transaction of the same message
 * (half messages are not de-duplicated), and so does one sent again on purpose (as if its
 * answer was lost; the producer ends the second): the check-back asks about the other, and
 * the checker answers every check with the decision (or not at all). Two transactions of one
 * message both committed store it once.
 *
 * A transaction is named by where its half is stored (log index/position); the rules:
 *   - ends answered OK never contradict each other (COMMIT and ROLLBACK both OK), and no
 *     transaction rolled back after its last check has a COMMIT answered OK;
 *   - a transaction is rolled back after exactly `checksMax` checks, and first checked no
 *     earlier than `checkAfterMs` after its half was stored;
 *   - a message is read or stored only if a COMMIT of one of its transactions that was not
 *     rolled back (answered OK to a ROLLBACK, or rolled back after its last check) may have
 *     applied — so a rolled-back message is never delivered and a message never committed is
 *     never visible — and no read returns it before any COMMIT of it was sent;
 *   - a message whose COMMIT was answered OK is delivered: stored once in the final queues (in
 *     the queue its committed transaction chose), or released by retention with proof;
 *   - a transaction left to the check-back whose application never answers is rolled back
 *     after its last check, and an end is refused (INVALID_TRANSACTION_ID) only when its
 *     transaction ended already: after its last check, or the other way.
 * (The drain waits until the leader has no transaction open; with the simulator's short check
 * policy that must happen.)
 */
import type { TransactionCheckRound } from '../broker/broker-state-machine.js';
import type { TransactionCheck } from '../broker/core/broker-state.js';
import type { TransactionId } from '../broker/core/transaction-id.js';
import type { TransactionCheckPolicy } from '../broker/core/transactions.js';

export type TransactionDecision = 'commit' | 'rollback' | 'never';
/** What the producer does once its half message is acknowledged. */
export type ProducerEnd = 'decision' | 'opposite' | 'abandon';

export interface EndAttempt {
  readonly commit: boolean;
  readonly by: 'producer' | 'checker';
  /** pending: no answer yet (as unknown: it may still apply); definite: it certainly changed nothing. */
  status: 'pending' | 'ok' | 'unknown' | 'definite';
  code: string;
}

export interface TransactionRecord {
  /** logIndex/position of its half message. */
  readonly key: string;
  readonly logIndex: number;
  readonly position: number;
  readonly messageId: string;
  /** From the send answer (undefined: known only from a check-back). */
  id: TransactionId | undefined;
  queueId: number | undefined;
  readonly ends: EndAttempt[];
  /** Check-backs seen so far (the highest count). */
  checks: number;
  /** Check-back counts already answered (or decided not to be). */
  readonly asked: Set<number>;
  /** Rolled back after its last check (seen in an applied check round). */
  expired: boolean;
}

export interface TransactionPlan {
  readonly decision: TransactionDecision;
  readonly producerEnd: ProducerEnd;
  /** After an end answered OK, send the contradicting end too (it must not be answered OK). */
  readonly contradict: boolean;
  /** Send the half message again once it is acknowledged (as if the answer was lost), and end the second transaction. */
  readonly resend: boolean;
  readonly transactions: TransactionRecord[];
  /** Client sequence at which the first COMMIT of this message was sent. */
  commitSentAt: number | undefined;
  /** A consumer read it (at any time). */
  read: boolean;
}

export interface TransactionStats {
  transactional: number;
  halvesAcked: number;
  /** Transactions known only from a check-back (a send retried after an unknown outcome). */
  orphans: number;
  ends: number;
  commitsOk: number;
  rollbacksOk: number;
  checksAnswered: number;
  expired: number;
  contradictionsRefused: number;
  transactionalStored: number;
  /** Messages two of whose transactions were committed (answered OK): stored once all the same. */
  committedTwice: number;
}

export const emptyTransactionStats = (): TransactionStats => ({
  transactional: 0, halvesAcked: 0, orphans: 0, ends: 0, commitsOk: 0, rollbacksOk: 0, checksAnswered: 0, expired: 0, contradictionsRefused: 0, transactionalStored: 0, committedTwice: 0,
});

const rolledBack = (t: TransactionRecord): boolean => t.expired || t.ends.some((a) => !a.commit && a.status === 'ok');
const mayHaveCommitted = (t: TransactionRecord): boolean => !rolledBack(t) && t.ends.some((a) => a.commit && a.status !== 'definite');
const committedOk = (t: TransactionRecord): boolean => t.ends.some((a) => a.commit && a.status === 'ok');

export class TransactionBook {
  private readonly byKey = new Map<string, TransactionRecord>();
  readonly stats = emptyTransactionStats();

  constructor(
    private readonly plans: (messageId: string) => TransactionPlan | undefined,
    private readonly policy: TransactionCheckPolicy,
    private readonly violate: (message: string) => void,
  ) {}

  /** The transaction at (logIndex, position), of `messageId`: one we knew, or a new one. */
  transaction(logIndex: number, position: number, messageId: string, how: string): TransactionRecord | undefined {
    const key = `${logIndex}/${position}`;
    const known = this.byKey.get(key);
    if (known !== undefined) {
      if (known.messageId !== messageId) this.violate(`${how} names transaction ${key} of ${messageId}, which is the transaction of ${known.messageId}`);
      return known;
    }
    const plan = this.plans(messageId);
    if (plan === undefined) {
      this.violate(`${how} names transaction ${key} of ${messageId}, which no client sent as a transactional message`);
      return undefined;
    }
    const record: TransactionRecord = { key, logIndex, position, messageId, id: undefined, queueId: undefined, ends: [], checks: 0, asked: new Set(), expired: false };
    this.byKey.set(key, record);
    plan.transactions.push(record);
    return record;
  }

  /** A send answered with a transaction (its half message is stored). */
  onHalfAcked(messageId: string, id: TransactionId, queueId: number): TransactionRecord | undefined {
    const record = this.transaction(id.logIndex, id.position, messageId, `the send of ${messageId}`);
    if (record === undefined) return undefined;
    if (record.id === undefined) {
      if (record.checks > 0) this.stats.orphans--; // counted as an orphan when the check came first
      this.stats.halvesAcked++;
    } else if (record.queueId !== queueId) {
      this.violate(`transaction ${record.key} of ${messageId} answered for queue ${record.queueId} and for queue ${queueId}`);
    }
    record.id = id;
    record.queueId = queueId;
    return record;
  }

  endStarted(record: TransactionRecord, commit: boolean, by: 'producer' | 'checker', sequence: number): EndAttempt {
    const attempt: EndAttempt = { commit, by, status: 'pending', code: '' };
    record.ends.push(attempt);
    this.stats.ends++;
    const plan = this.plans(record.messageId) as TransactionPlan;
    if (commit) plan.commitSentAt ??= sequence;
    return attempt;
  }

  /** An end was answered OK (maybe after the client gave up on it): it must agree with every other OK, and a commit with no rollback after the last check. */
  endOk(record: TransactionRecord, attempt: EndAttempt): void {
    if (attempt.status === 'ok') return;
    attempt.status = 'ok';
    if (attempt.commit) this.stats.commitsOk++;
    else this.stats.rollbacksOk++;
    const what = attempt.commit ? 'COMMIT' : 'ROLLBACK';
    const other = record.ends.find((a) => a !== attempt && a.status === 'ok' && a.commit !== attempt.commit);
    if (other !== undefined) this.violate(`transaction ${record.key} of ${record.messageId}: ${what} (${attempt.by}) answered OK after ${other.commit ? 'COMMIT' : 'ROLLBACK'} (${other.by}) was answered OK`);
    if (attempt.commit && record.expired) this.violate(`transaction ${record.key} of ${record.messageId}: COMMIT (${attempt.by}) answered OK, but it was rolled back after its last check`);
  }

  endFailed(attempt: EndAttempt, definite: boolean, code: string): void {
    if (attempt.status === 'ok') return;
    attempt.status = definite ? 'definite' : 'unknown';
    attempt.code = code;
  }

  /**
   * One applied check-back round, as node `node` applied it at entry time `entryTimeMs`;
   * returns the checks to answer (each count of each transaction once).
   */
  onCheckRound(node: string, round: TransactionCheckRound, entryTimeMs: number): { record: TransactionRecord; check: TransactionCheck }[] {
    const ask: { record: TransactionRecord; check: TransactionCheck }[] = [];
    for (const check of round.checks) {
      const record = this.transaction(check.logIndex, check.position, check.messageId, `a check-back on ${node}`);
      if (record === undefined) continue;
      if (record.id === undefined && record.checks === 0) this.stats.orphans++;
      if (check.checks === 1 && entryTimeMs < check.storeTimeMs + this.policy.checkAfterMs) {
        this.violate(`transaction ${record.key} of ${record.messageId} first checked at ${entryTimeMs}, before ${check.storeTimeMs} + ${this.policy.checkAfterMs} ms (${node})`);
      }
      if (check.checks > this.policy.checksMax) this.violate(`transaction ${record.key} of ${record.messageId} checked for the ${check.checks}th time, beyond ${this.policy.checksMax} (${node})`);
      record.checks = Math.max(record.checks, check.checks);
      if (record.asked.has(check.checks)) continue;
      record.asked.add(check.checks);
      ask.push({ record, check });
    }
    for (const check of round.expired) {
      const record = this.transaction(check.logIndex, check.position, check.messageId, `an expiry on ${node}`);
      if (record === undefined || record.expired) continue;
      if (check.checks !== this.policy.checksMax) this.violate(`transaction ${record.key} of ${record.messageId} rolled back after ${check.checks} checks, not ${this.policy.checksMax} (${node})`);
      record.expired = true;
      this.stats.expired++;
      const commit = record.ends.find((a) => a.commit && a.status === 'ok');
      if (commit !== undefined) this.violate(`transaction ${record.key} of ${record.messageId} rolled back after its last check (${node}), but a COMMIT (${commit.by}) was answered OK`);
    }
    return ask;
  }

  /** A read of a transactional message (any consumer, the final reads): not before any COMMIT of it was sent. */
  onRead(how: string, plan: TransactionPlan, messageId: string): void {
    if (plan.commitSentAt === undefined) this.violate(`${how} returned transactional ${messageId}, before any COMMIT of it was sent`);
    plan.read = true;
  }

  /**
   * A transactional message at the end (`at`: where the final reads found it). Returns the
   * queue it was released from, when retention released it with proof.
   */
  verify(
    messageId: string, plan: TransactionPlan, at: { topic: string; queueId: number; offset: number } | undefined,
    retainedFrom: number, firstOf: (queueId: number) => number,
  ): { releasedFrom: number } | undefined {
    const candidates = plan.transactions.filter(mayHaveCommitted);
    if (plan.transactions.filter(committedOk).length > 1) this.stats.committedTwice++;
    const names = (list: readonly TransactionRecord[]): string => list.map((t) => `${t.key} [${t.expired ? 'expired' : ''}${t.ends.map((a) => `${a.by[0]}:${a.commit ? 'C' : 'R'}:${a.status}`).join(' ')}]`).join(', ');
    if ((at !== undefined || plan.read) && candidates.length === 0) {
      const where = at !== undefined ? `stored at ${at.topic}/${at.queueId}/${at.offset}` : 'read';
      const backed = plan.transactions.filter(rolledBack);
      this.violate(backed.length > 0
        ? `${messageId}, whose transaction was rolled back (${names(backed)}), is ${where}`
        : `${messageId} was never committed (transactions: ${names(plan.transactions) || 'none known'}), but is ${where}`);
    }
    if (at !== undefined) {
      this.stats.transactionalStored++;
      if (candidates.length > 0 && candidates.every((t) => t.queueId !== undefined && t.queueId !== at.queueId)) {
        this.violate(`${messageId} is stored in queue ${at.queueId}, but its committed transaction chose queue ${candidates.map((t) => t.queueId).join('/')} (${names(candidates)})`);
      }
      return undefined;
    }
    const committed = plan.transactions.find(committedOk);
    if (committed === undefined) return undefined;
    // Released with its queue's prefix (a committed message is held like a delivered delayed
    // one), by whichever of its transactions stored it: when two may have, in which queue is
    // not known, and it is not counted for one (the expired counts are checked as lower bounds).
    const releasable = (t: TransactionRecord): boolean => t.logIndex < retainedFrom && (t.queueId === undefined ? firstOf(0) + firstOf(1) > 0 : firstOf(t.queueId) > 0);
    if (!candidates.some(releasable)) {
      this.violate(`${messageId} was committed (answered OK: ${names([committed])}) but ${plan.read ? 'delivered, then lost' : 'never delivered'}`);
      return undefined;
    }
    const queues = new Set(candidates.map((t) => t.queueId));
    const [queueId] = queues;
    return queues.size === 1 && queueId !== undefined ? { releasedFrom: queueId } : undefined;
  }

  /**
   * How a message's transactions ended: one left to the check-back whose application never
   * answers was rolled back after its last check; an end refused as INVALID_TRANSACTION_ID
   * found its transaction ended already — rolled back after its last check, or ended the other
   * way by an end that may have applied (a transaction the broker lost, or never knew by that
   * id, is refused too, but then neither holds).
   */
  verifyEnds(messageId: string, plan: TransactionPlan): void {
    for (const t of plan.transactions) {
      if (plan.decision === 'never' && !t.expired && !t.ends.some((a) => !a.commit && a.status === 'ok')) {
        this.violate(`transaction ${t.key} of ${messageId}, left to the check-back and never answered, was not rolled back after its last check (${t.checks} checks seen)`);
      }
      for (const attempt of t.ends) {
        if (attempt.status !== 'definite' || attempt.code !== 'INVALID_TRANSACTION_ID') continue;
        if (t.expired || t.ends.some((a) => a.commit !== attempt.commit && a.status !== 'definite')) continue;
        this.violate(`transaction ${t.key} of ${messageId}: ${attempt.commit ? 'COMMIT' : 'ROLLBACK'} (${attempt.by}) refused as INVALID_TRANSACTION_ID, `
          + `but it was neither rolled back after its last check nor ended the other way (${t.ends.map((a) => `${a.by[0]}:${a.commit ? 'C' : 'R'}:${a.status}:${a.code}`).join(' ')})`);
      }
    }
  }
}
