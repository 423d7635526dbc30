/**
 * The transactional-message workload, on a TRANSACTION topic of its own (so the queue
 * workload's checks never see it), through our client's transaction API:
 *
 * - senders: sequential producers without a transactionChecker. Each draws its value's fate
 *   first (transaction-checker.ts: commit, rollback, abandon-commit, abandon-rollback,
 *   unanswered) and makes it part of the value, `<fate>/<process>-<counter>`, which is the
 *   body; then `beginTransaction().send` (`txn-send` invoke / ok / fail / info, with the
 *   transaction id), and for commit and rollback, after a random hold, `commit()` or
 *   `rollback()` (`txn-end` invoke / ok / fail / info with the resolution). The others are
 *   never ended by their sender. An `info` retires the process, as in the queue workload.
 * - checkers: producers that send nothing and answer the broker's check-backs with a
 *   transactionChecker that reads the fate from the body, as an application knows from its
 *   own records how a transaction should end: COMMIT or ROLLBACK, and nothing at all for
 *   `unanswered` (which the broker must roll back after its last check). Every check-back is
 *   recorded before it is answered (`txn-check`, an `info` event of the checker's process with
 *   the resolution, 'none' when unanswered); errors of the check-back side too.
 * - consumers: a broadcasting PullConsumer reading every queue by offset from 0 (`txn-read`)
 *   and a SimpleConsumer group that receives and acks (`txn-receive`, 5 s invisibility).
 *
 * After the senders stop (and the faults healed), `finish` waits for the commit-decided
 * values to arrive, then settles: every acknowledged half's state is asked of the broker
 * (QueryMessage, by message id; the half the receipt's transaction id names) until none is
 * still open or the bound after the last check of the latest unanswered one has passed
 * (`txn-state` info events); a late COMMIT is then tried on every acknowledged
 * rollback-decided transaction the broker reports rolled back (`txn-late-commit`: it must be
 * refused, INVALID_TRANSACTION_ID). Then the consumers and checkers stop, and a fresh reader
 * drains every queue from offset 0 (`txn-drain`). Every loop is bounded by a flag and by
 * time, every send count by `sendsMax`.
 */
import { parseTransactionId } from '../src/broker/core/transaction-id.js';
import { Admin } from '../src/client/admin.js';
import type { ReceivedMessage } from '../src/client/messages.js';
import { MQClientError } from '../src/client/mq-connection.js';
import { Producer } from '../src/client/producer.js';
import { PullConsumer } from '../src/client/pull-consumer.js';
import { SimpleConsumer } from '../src/client/simple-consumer.js';
import { endTransaction, type TransactionalReceipt } from '../src/client/transaction.js';
import type { Prng } from '../src/testing/prng.js';
import type { History, Read } from './history.js';
import type { ClientSecurity } from './security.js';
import { decisionOf, fateOf, transactionFates, type TransactionFate } from './transaction-checker.js';
import { setTimeout as sleep } from 'node:timers/promises';

export interface TransactionWorkloadConfig {
  readonly nameServers: readonly string[];
  /** A topic of type TRANSACTION, used by nothing else. */
  readonly topic: string;
  readonly producers: number;
  /** Producers that answer check-backs (they send nothing). */
  readonly checkers: number;
  /** Transactions per second per sender (each sender is sequential). */
  readonly ratePerProducer: number;
  /** At most this many transactions per sender. */
  readonly sendsMax: number;
  /** Relative weights of the fates. */
  readonly fateWeights: Readonly<Record<TransactionFate, number>>;
  /** The hold between a half's acknowledgement and its sender's end, drawn from this range (ms). */
  readonly endHoldMs: readonly [number, number];
  /** The brokers' check-back policy (`--txn-check-after-ms`, `--txn-check-interval-ms`, `--txn-checks-max`). */
  readonly checkAfterMs: number;
  readonly checkIntervalMs: number;
  readonly checksMax: number;
  /** A secure run's CA and the workload user's credentials, for the senders, check-back answerers and consumers (security.ts). */
  readonly security?: ClientSecurity | undefined;
  /** The same for the settle phase's BrokerAdmin queries (the auditor, who holds Admin on Cluster). */
  readonly observerSecurity?: ClientSecurity | undefined;
}

/** The transaction workload's consumer groups (a secure run grants exactly these, the drain's by its prefix). */
export const txnGroups = { reader: 'jepsen-txn-reader', consumers: 'jepsen-txn-consumers', drainPrefix: 'jepsen-txn-drain-' } as const;

const toReads = (messages: readonly ReceivedMessage[]): Read[] => messages.map((m) => [m.queueId, m.offset, m.body.toString()] as const);

interface Acked {
  readonly receipt: TransactionalReceipt;
  readonly fate: TransactionFate;
  readonly ackedMs: number;
}

export class TransactionWorkload {
  private producing = true;
  private consuming = true;
  private checking = true;
  private readonly producerLoops: Promise<void>[] = [];
  private readonly consumerLoops: Promise<void>[] = [];
  private readonly checkerLoops: Promise<void>[] = [];
  private stopCheckers: () => void = () => undefined;
  private readonly checkersStopped = new Promise<void>((resolve) => { this.stopCheckers = resolve; });
  /** Acknowledged half sends: value → its receipt and fate. */
  readonly acked = new Map<string, Acked>();
  /** Commit-decided values: when they are owed (ms since the epoch: the COMMIT's OK, or the half's ack + checkAfterMs). */
  private readonly owedAt = new Map<string, number>();
  /** Values the live consumers (not the drain) received. */
  readonly received = new Set<string>();

  constructor(private readonly history: History, private readonly config: TransactionWorkloadConfig, private readonly rng: Prng) {}

  start(): void {
    for (let k = 0; k < this.config.checkers; k++) this.checkerLoops.push(this.answerCheckBacks(k));
    for (let worker = 0; worker < this.config.producers; worker++) this.producerLoops.push(this.produce(worker));
    const note = (reads: Read[]): void => { for (const [, , value] of reads) this.received.add(value); };
    this.consumerLoops.push(this.read('txn-reader', 'txn-read', txnGroups.reader, () => this.consuming, note));
    this.consumerLoops.push(this.receive('txn-consumer', txnGroups.consumers, () => this.consuming));
  }

  async stopProducers(): Promise<void> {
    this.producing = false;
    await Promise.all(this.producerLoops);
  }

  /**
   * After the senders stopped (and the faults healed): waits until the live consumers have
   * every commit-decided value (or `lateBoundMs` after the latest is owed), settles (see the
   * module comment; at most `settleMs` past the last check of the latest unanswered
   * transaction), stops consumers and checkers, then drains for up to `drainMs`. Resolves
   * true when the drain read every commit-decided acknowledged value.
   */
  async finish(lateBoundMs: number, settleMs: number, drainMs: number): Promise<boolean> {
    let latestOwed = Date.now();
    for (const at of this.owedAt.values()) latestOwed = Math.max(latestOwed, at);
    const waitUntil = Math.min(latestOwed + lateBoundMs, Date.now() + 120_000);
    while (Date.now() < waitUntil && [...this.owedAt.keys()].some((value) => !this.received.has(value))) await sleep(200);
    try {
      await this.settle(settleMs);
    } finally {
      this.consuming = false;
      this.checking = false;
      this.stopCheckers();
      await Promise.all([...this.consumerLoops, ...this.checkerLoops]);
    }
    const deadline = Date.now() + drainMs;
    const seen = new Set<string>();
    const missing = (): number => [...this.owedAt.keys()].filter((value) => !seen.has(value)).length;
    let idleSince = Date.now();
    await this.read('txn-drain', 'txn-drain', `${txnGroups.drainPrefix}${Date.now()}`, () => {
      if (Date.now() >= deadline) return false;
      // Once everything owed is in, keep reading a little for late (unknown) ones.
      return missing() > 0 || Date.now() - idleSince < 2_000;
    }, (reads) => {
      if (reads.length > 0) idleSince = Date.now();
      for (const [, , value] of reads) seen.add(value);
    });
    return missing() === 0;
  }

  /** The broker's account of every acknowledged half, then the late COMMITs (see the module comment). */
  private async settle(settleMs: number): Promise<void> {
    const { checkAfterMs, checkIntervalMs, checksMax } = this.config;
    let lastUnanswered = 0;
    for (const { fate, ackedMs } of this.acked.values()) if (fate === 'unanswered') lastUnanswered = Math.max(lastUnanswered, ackedMs);
    const until = Math.min(Math.max(Date.now(), lastUnanswered + checkAfterMs + checksMax * checkIntervalMs) + settleMs, Date.now() + 180_000);
    const admin = new Admin({ nameServers: this.config.nameServers, ...this.config.observerSecurity, requestTimeoutMs: 2_000 });
    const prober = new Producer({ nameServers: this.config.nameServers, ...this.config.security, sendTimeoutMs: 5_000, requestTimeoutMs: 2_000 });
    const pending = new Map(this.acked);
    const last = new Map<string, string>();
    try {
      while (pending.size > 0) {
        const batch = [...pending];
        for (let i = 0; i < batch.length; i += 16) {
          await Promise.all(batch.slice(i, i + 16).map(async ([value, { receipt }]) => {
            const state = await this.stateOf(admin, receipt);
            if (state !== undefined) last.set(value, state);
            if (state === undefined || state === 'half') return;
            pending.delete(value);
            this.history.add({ type: 'info', process: 'txn-settle', f: 'txn-state', value, state, transactionId: receipt.transactionId });
          }));
        }
        if (pending.size === 0 || Date.now() >= until) break;
        await sleep(1_000);
      }
      for (const [value, { receipt }] of pending) this.history.add({ type: 'info', process: 'txn-settle', f: 'txn-state', value, state: last.get(value) ?? 'unknown', transactionId: receipt.transactionId });
      // A late COMMIT of what the broker says it rolled back: it must be refused.
      const rolledBack = [...this.acked].filter(([value, { fate }]) => decisionOf(fate) !== 'COMMIT' && !pending.has(value) && last.get(value) === 'rolled-back');
      for (let i = 0; i < rolledBack.length; i += 16) {
        await Promise.all(rolledBack.slice(i, i + 16).map(async ([value, { receipt }]) => {
          const process = `txn-probe-${value}`;
          this.history.add({ type: 'invoke', process, f: 'txn-late-commit', value, resolution: 'COMMIT', transactionId: receipt.transactionId });
          try {
            await endTransaction(prober.connection, receipt, 'COMMIT', 'SOURCE_CLIENT', 5_000);
            this.history.add({ type: 'ok', process, f: 'txn-late-commit', value, resolution: 'COMMIT' });
          } catch (error) {
            const refused = error instanceof MQClientError && error.definite && error.code === 'INVALID_TRANSACTION_ID';
            this.history.add({ type: refused ? 'fail' : 'info', process, f: 'txn-late-commit', value, resolution: 'COMMIT', error: (error as Error).message.slice(0, 200) });
          }
        }));
      }
    } finally {
      admin.close();
      prober.shutdown();
    }
  }

  /** The state of the half `receipt` names (QueryMessage by message id), or undefined if the query failed. */
  private async stateOf(admin: Admin, receipt: TransactionalReceipt): Promise<string | undefined> {
    const id = parseTransactionId(receipt.transactionId);
    if (id === undefined) return 'unknown';
    try {
      const found = await admin.getMessage(receipt.messageId, { topic: this.config.topic, limit: 16 });
      return found.items.find((m) => m.logIndex === id.logIndex && m.position === id.position)?.state ?? 'missing';
    } catch {
      return undefined;
    }
  }

  private pickFate(): TransactionFate {
    const weights = this.config.fateWeights;
    const total = transactionFates.reduce((sum, fate) => sum + weights[fate], 0);
    let draw = this.rng.float() * total;
    for (const fate of transactionFates) {
      draw -= weights[fate];
      if (draw < 0) return fate;
    }
    return 'commit';
  }

  private async produce(worker: number): Promise<void> {
    const concurrency = this.config.producers;
    const producer = new Producer({ nameServers: this.config.nameServers, ...this.config.security, sendTimeoutMs: 5_000, requestTimeoutMs: 2_000, faultAvoidanceMs: 0 });
    const intervalMs = 1_000 / this.config.ratePerProducer;
    let processNo = worker;
    let counter = 0;
    try {
      for (let sends = 0; this.producing && sends < this.config.sendsMax; sends++) {
        const started = Date.now();
        const process = `txn-${processNo}`;
        const fate = this.pickFate();
        const value = `${fate}/${processNo}-${counter++}`;
        this.history.add({ type: 'invoke', process, f: 'txn-send', value, fate });
        const tx = producer.beginTransaction();
        let receipt: TransactionalReceipt;
        try {
          receipt = await tx.send({ topic: this.config.topic, body: value });
        } catch (error) {
          const definite = error instanceof MQClientError && error.definite;
          this.history.add({ type: definite ? 'fail' : 'info', process, f: 'txn-send', value, fate, error: (error as Error).message.slice(0, 200) });
          if (!definite) {
            processNo += concurrency; // a process with an unknown outcome is retired
            counter = 0;
          }
          await sleep(Math.max(0, intervalMs - (Date.now() - started)));
          continue;
        }
        const ackedMs = Date.now();
        this.acked.set(value, { receipt, fate, ackedMs });
        this.history.add({ type: 'ok', process, f: 'txn-send', value, fate, queue: receipt.queueId, transactionId: receipt.transactionId });
        if (decisionOf(fate) === 'COMMIT') this.owedAt.set(value, ackedMs + this.config.checkAfterMs);
        if (fate === 'commit' || fate === 'rollback') {
          const resolution = fate === 'commit' ? 'COMMIT' : 'ROLLBACK';
          await sleep(this.rng.int(this.config.endHoldMs[0], this.config.endHoldMs[1]));
          this.history.add({ type: 'invoke', process, f: 'txn-end', value, resolution });
          try {
            await (fate === 'commit' ? tx.commit() : tx.rollback());
            this.history.add({ type: 'ok', process, f: 'txn-end', value, resolution });
            if (fate === 'commit') this.owedAt.set(value, Date.now());
          } catch (error) {
            // Left to the check-backs, which answer as the fate says.
            const definite = error instanceof MQClientError && error.definite;
            this.history.add({ type: definite ? 'fail' : 'info', process, f: 'txn-end', value, resolution, error: (error as Error).message.slice(0, 200) });
            if (!definite) {
              processNo += concurrency;
              counter = 0;
            }
          }
        }
        await sleep(Math.max(0, intervalMs - (Date.now() - started)));
      }
    } finally {
      producer.shutdown();
    }
  }

  /** A producer that only answers check-backs, until the settle is over. */
  private async answerCheckBacks(k: number): Promise<void> {
    const process = `txn-checker-${k}`;
    const producer = new Producer({
      nameServers: this.config.nameServers, ...this.config.security, sendTimeoutMs: 5_000, requestTimeoutMs: 2_000,
      transactionChecker: (message) => {
        const value = message.body.toString();
        const fate = fateOf(value);
        const resolution = fate === undefined ? undefined : decisionOf(fate);
        this.history.add({ type: 'info', process, f: 'txn-check', value, resolution: resolution ?? 'none', transactionId: message.properties.__transactionId__ ?? '' });
        return resolution;
      },
      onCheckError: (error) => { this.history.add({ type: 'info', process, f: 'txn-check-error', error: error.message.slice(0, 200) }); },
    });
    try {
      for (let started = false; !started && this.checking;) {
        try {
          await producer.start([this.config.topic]);
          started = true;
        } catch {
          await sleep(250); // no route yet: keep trying while the run lasts
        }
      }
      await this.checkersStopped;
    } finally {
      producer.shutdown();
    }
  }

  /** A broadcasting PullConsumer that reads every queue of the topic by offset from 0. */
  private async read(processId: string, f: 'txn-read' | 'txn-drain', group: string, keepGoing: () => boolean, onReads: (reads: Read[]) => void): Promise<void> {
    const consumer = new PullConsumer({
      nameServers: this.config.nameServers, ...this.config.security, group, mode: 'broadcasting', consumeFrom: 'first', autoCommitIntervalMs: 0,
      rebalanceIntervalMs: 1_000, requestTimeoutMs: 2_000, longPollMs: 500,
    });
    consumer.subscribe(this.config.topic);
    let started = false;
    try {
      while (!started && keepGoing()) {
        try {
          await consumer.start();
          started = true;
        } catch {
          await sleep(250); // no leader yet: keep trying while the run lasts
        }
      }
      while (started && keepGoing()) {
        this.history.add({ type: 'invoke', process: processId, f });
        const reads = toReads(await consumer.poll(500, 128));
        this.history.add({ type: 'ok', process: processId, f, reads });
        onReads(reads);
      }
    } finally {
      await consumer.shutdown();
    }
  }

  /** A SimpleConsumer group member: receive (long poll), then ack each message. */
  private async receive(processId: string, group: string, keepGoing: () => boolean): Promise<void> {
    const consumer = new SimpleConsumer({ nameServers: this.config.nameServers, ...this.config.security, group, awaitMs: 1_000, requestTimeoutMs: 2_000 }).subscribe(this.config.topic);
    try {
      while (keepGoing()) {
        this.history.add({ type: 'invoke', process: processId, f: 'txn-receive' });
        let messages: ReceivedMessage[];
        try {
          messages = await consumer.receive(32, 5_000);
        } catch (error) {
          this.history.add({ type: 'fail', process: processId, f: 'txn-receive', error: (error as Error).message.slice(0, 200) });
          await sleep(250);
          continue;
        }
        const reads = toReads(messages);
        this.history.add({ type: 'ok', process: processId, f: 'txn-receive', reads });
        for (const [, , value] of reads) this.received.add(value);
        // A lost ack makes the message visible again after 5 s: a redelivery, counted by the checker.
        for (const message of messages) await consumer.ack(message).catch(() => undefined);
      }
    } finally {
      consumer.shutdown();
    }
  }
}
