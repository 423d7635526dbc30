/**
 * The clients, all through our own client library against the real cluster:
 * - producers (queue workload): sequential senders of unique `<process>-<counter>` values,
 *   round robin over the queues; the first `orderedProducers` pin one queue each (ordered-
 *   producer workload: their offsets must grow in send order);
 * - group consumers: a clustering PullConsumer group that polls and commits offsets;
 * - a log reader (offset-log workload): a broadcasting PullConsumer reading every queue by
 *   offset from 0, so every (queue, offset, value) it sees is checked against the sends;
 * - the drain: after the heal, a fresh reader reads every queue from offset 0 until every
 *   acknowledged value that retention has not released has been read.
 * Every loop is bounded by `running` and by time.
 *
 * Retention: a queue's first offset moves up as retention releases the log's prefix; a pull
 * below it reads from the oldest message kept, so a reader that fell behind jumps (the checker
 * accepts a jump only if it lands at or below the first offset the brokers still hold at the
 * end: everything skipped was released). The drain reads from offset 0 like any reader, and
 * waits only for acknowledged values at or above each queue's first offset when it began
 * (QueryOffset BEGINNING, recorded as `drain-first-offsets`); the checker decides whether the
 * values below were really released.
 */
import { MQClientError } from '../src/client/mq-connection.js';
import { Producer } from '../src/client/producer.js';
import { PullConsumer } from '../src/client/pull-consumer.js';
import { SimpleConsumer } from '../src/client/simple-consumer.js';
import type { ReceivedMessage } from '../src/client/messages.js';
import type { QueueRef } from '../src/client/pull-consumer.js';
import type { Prng } from '../src/testing/prng.js';
import type { History, Read } from './history.js';
import type { ClientSecurity } from './security.js';
import { setTimeout as sleep } from 'node:timers/promises';

export interface WorkloadConfig {
  readonly nameServers: readonly string[];
  readonly topic: string;
  readonly queues: number;
  readonly producers: number;
  readonly orderedProducers: number;
  readonly consumers: number;
  /** Sends per second per producer (each producer is sequential). */
  readonly ratePerProducer: number;
  /** A secure run's CA and the workload user's credentials, for every client (security.ts). */
  readonly security?: ClientSecurity | undefined;
}

/** The queue workload's consumer groups (a secure run grants exactly these, the drain's by its prefix: each drain is a fresh `<prefix><time>`). */
export const queueGroups = { consumers: 'jepsen-consumers', logReader: 'jepsen-log-reader', drainPrefix: 'jepsen-drain-' } as const;
/** The delay workload's consumer groups, as queueGroups. */
export const delayGroups = { reader: 'jepsen-delay-reader', consumers: 'jepsen-delay-consumers', drainPrefix: 'jepsen-delay-drain-' } as const;

const toReads = (messages: readonly ReceivedMessage[]): Read[] => messages.map((m) => [m.queueId, m.offset, m.body.toString()] as const);

export class Workload {
  private producing = true;
  private consuming = true;
  private readonly loops: Promise<void>[] = [];
  private readonly consumerLoops: Promise<void>[] = [];
  /** Acknowledged sends: value → where the broker said it stored it. */
  readonly ackedValues = new Map<string, { queue: number; offset: number }>();

  constructor(private readonly history: History, private readonly config: WorkloadConfig) {}

  start(): void {
    for (let worker = 0; worker < this.config.producers; worker++) this.loops.push(this.produce(worker));
    for (let c = 0; c < this.config.consumers; c++) this.consumerLoops.push(this.consume(`consumer-${c}`, 'dequeue', queueGroups.consumers, 'clustering', () => this.consuming));
    this.consumerLoops.push(this.consume('log-reader', 'read', queueGroups.logReader, 'broadcasting', () => this.consuming));
  }

  async stopProducers(): Promise<void> {
    this.producing = false;
    await Promise.all(this.loops);
  }

  async stopConsumers(): Promise<void> {
    this.consuming = false;
    await Promise.all(this.consumerLoops);
  }

  /**
   * Reads every queue from offset 0 until every acknowledged value at or above the first
   * offset the brokers reported when the drain began was read (or time runs out). Values below
   * it were released by retention; the checker decides whether that is so.
   */
  async drain(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    const seen = new Set<string>();
    const firstAtStart = new Map<number, number>();
    const missing = (): number => {
      let count = 0;
      for (const [value, { queue, offset }] of this.ackedValues) if (!seen.has(value) && offset >= (firstAtStart.get(queue) ?? 0)) count++;
      return count;
    };
    let idleSince = Date.now();
    await this.consume('drain', 'drain', `${queueGroups.drainPrefix}${Date.now()}`, 'broadcasting', () => {
      if (Date.now() >= deadline) return false;
      // Once everything acknowledged is in, keep reading a little for late (unknown) sends.
      return missing() > 0 || Date.now() - idleSince < 2_000;
    }, (reads) => {
      if (reads.length > 0) idleSince = Date.now();
      for (const [, , value] of reads) seen.add(value);
    }, async (consumer) => {
      const firsts = await this.firstOffsets(consumer);
      for (const [queue, first] of firsts) firstAtStart.set(queue, first);
      this.history.add({ type: 'info', process: 'drain', f: 'drain-first-offsets', value: Object.fromEntries(firsts) });
    });
    return missing() === 0;
  }

  /** Each assigned queue's first offset (the first message retention kept). */
  private async firstOffsets(consumer: PullConsumer): Promise<Map<number, number>> {
    const out = new Map<number, number>();
    for (let attempt = 0; attempt < 10; attempt++) {
      for (const ref of consumer.assignment()) {
        if (out.has(ref.queueId)) continue;
        const response = await consumer.connection.unary(ref.brokerGroup, 'QueryOffset', {
          messageQueue: queueResource(ref), queryOffsetPolicy: 'BEGINNING',
        }).catch(() => undefined);
        if (response?.status?.code === 'OK') out.set(ref.queueId, Number(response.offset));
      }
      if (out.size >= this.config.queues) break;
      await sleep(500);
    }
    return out;
  }

  private async produce(worker: number): Promise<void> {
    const concurrency = this.config.producers;
    const ordered = worker < this.config.orderedProducers;
    const producer = new Producer({ nameServers: this.config.nameServers, ...this.config.security, sendTimeoutMs: 5_000, requestTimeoutMs: 2_000, faultAvoidanceMs: 0 });
    const intervalMs = 1_000 / this.config.ratePerProducer;
    let processId = worker;
    let counter = 0;
    try {
      while (this.producing) {
        const started = Date.now();
        const value = `${processId}-${counter++}`;
        this.history.add({ type: 'invoke', process: processId, f: 'enqueue', value });
        try {
          const receipt = await producer.send({ topic: this.config.topic, body: value }, ordered ? { selector: () => worker % this.config.queues } : {});
          this.ackedValues.set(value, { queue: receipt.queueId, offset: receipt.offset });
          this.history.add({ type: 'ok', process: processId, f: 'enqueue', value, queue: receipt.queueId, offset: receipt.offset });
        } catch (error) {
          const definite = error instanceof MQClientError && error.definite;
          this.history.add({ type: definite ? 'fail' : 'info', process: processId, f: 'enqueue', value, error: (error as Error).message.slice(0, 200) });
          if (!definite) {
            processId += concurrency; // Jepsen: a process with an unknown outcome is retired
            counter = 0;
          }
        }
        await sleep(Math.max(0, intervalMs - (Date.now() - started)));
      }
    } finally {
      producer.shutdown();
    }
  }

  private async consume(
    processId: string, f: 'dequeue' | 'read' | 'drain', group: string, mode: 'clustering' | 'broadcasting',
    keepGoing: () => boolean, onReads?: (reads: Read[]) => void, onStarted?: (consumer: PullConsumer) => Promise<void>,
  ): Promise<void> {
    const consumer = new PullConsumer({
      nameServers: this.config.nameServers, ...this.config.security, group, mode, consumeFrom: 'first', autoCommitIntervalMs: mode === 'clustering' ? 500 : 0,
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
      if (started) await onStarted?.(consumer).catch(() => undefined);
      while (started && keepGoing()) {
        this.history.add({ type: 'invoke', process: processId, f });
        const messages = await consumer.poll(500, 128);
        const reads = toReads(messages);
        this.history.add({ type: 'ok', process: processId, f, reads });
        onReads?.(reads);
      }
    } finally {
      await consumer.shutdown();
    }
  }
}

/** The protocol's MessageQueue resource for one queue. */
function queueResource(ref: QueueRef): object {
  return { topic: { name: ref.topic, resourceNamespace: '' }, id: ref.queueId, broker: { name: ref.brokerGroup, id: 0 } };
}

export interface DelayWorkloadConfig {
  readonly nameServers: readonly string[];
  /** A topic of type DELAY, used by nothing else. */
  readonly topic: string;
  readonly producers: number;
  /** Sends per second per producer (each producer is sequential). */
  readonly ratePerProducer: number;
  /** Each delivery time is drawn uniformly from this many ms after the send. */
  readonly delayMs: readonly [number, number];
  /** At most this many sends per producer. */
  readonly sendsMax: number;
  /** A secure run's CA and the workload user's credentials, for every client (security.ts). */
  readonly security?: ClientSecurity | undefined;
}

/**
 * The delayed-message workload, on its own DELAY topic (so the queue workload's checks never
 * see it): sequential producers send unique `d<process>-<counter>` values, each with a
 * delivery time drawn from `delayMs` ahead (invoke / ok / fail / info with `dueMs`, and
 * `info` retires the process as in the queue workload); a broadcasting PullConsumer reads
 * every queue by offset from 0 (`delay-read`) and a SimpleConsumer group receives and acks
 * (`delay-receive`, 5 s invisibility), both recording the wall clock when the client handed
 * over the messages (`wallMs`) and the broker's store timestamp of each (`storedMs`: when the
 * timer made it visible). Producers, brokers and consumers run on this host and read the same
 * system clock, so a receive time is directly comparable with a due time. After the
 * producers stop, `finish` keeps the consumers going until every acknowledged value has been
 * received or the lateness bound has passed for the latest due time, then a fresh reader
 * drains every queue from offset 0 (`delay-drain`): what it does not find is lost. Every loop
 * is bounded by a flag and by time, every send count by `sendsMax`.
 */
export class DelayWorkload {
  private producing = true;
  private consuming = true;
  private readonly producerLoops: Promise<void>[] = [];
  private readonly consumerLoops: Promise<void>[] = [];
  /** Acknowledged sends: value → due time (ms since the epoch). */
  readonly acked = new Map<string, number>();
  /** Values the live consumers (not the drain) received. */
  readonly received = new Set<string>();

  constructor(private readonly history: History, private readonly config: DelayWorkloadConfig, private readonly rng: Prng) {}

  start(): void {
    for (let worker = 0; worker < this.config.producers; worker++) this.producerLoops.push(this.produce(worker));
    this.consumerLoops.push(this.read('delay-reader', 'delay-read', delayGroups.reader, () => this.consuming, (reads) => { for (const [, , value] of reads) this.received.add(value); }));
    this.consumerLoops.push(this.receive('delay-consumer', delayGroups.consumers, () => this.consuming));
  }

  async stopProducers(): Promise<void> {
    this.producing = false;
    await Promise.all(this.producerLoops);
  }

  /**
   * After the producers stopped (and the faults healed): waits until the live consumers have
   * received every acknowledged value, or until `lateBoundMs` after the latest due time (what
   * is not in by then is late or lost anyway), stops them, then drains for up to `drainMs`.
   * Resolves true when the drain read every acknowledged value.
   */
  async finish(lateBoundMs: number, drainMs: number): Promise<boolean> {
    let latestDue = Date.now();
    for (const dueMs of this.acked.values()) latestDue = Math.max(latestDue, dueMs);
    const waitUntil = Math.min(latestDue + lateBoundMs, Date.now() + 120_000);
    while (Date.now() < waitUntil && [...this.acked.keys()].some((value) => !this.received.has(value))) await sleep(200);
    this.consuming = false;
    await Promise.all(this.consumerLoops);
    const deadline = Date.now() + drainMs;
    const seen = new Set<string>();
    const missing = (): number => [...this.acked.keys()].filter((value) => !seen.has(value)).length;
    let idleSince = Date.now();
    await this.read('delay-drain', 'delay-drain', `${delayGroups.drainPrefix}${Date.now()}`, () => {
      if (Date.now() >= deadline) return false;
      // Once everything acknowledged is in, keep reading a little for late (unknown) sends.
      return missing() > 0 || Date.now() - idleSince < 2_000;
    }, (reads) => {
      if (reads.length > 0) idleSince = Date.now();
      for (const [, , value] of reads) seen.add(value);
    });
    return missing() === 0;
  }

  private async produce(worker: number): Promise<void> {
    const concurrency = this.config.producers;
    const producer = new Producer({ nameServers: this.config.nameServers, ...this.config.security, sendTimeoutMs: 5_000, requestTimeoutMs: 2_000, faultAvoidanceMs: 0 });
    const intervalMs = 1_000 / this.config.ratePerProducer;
    const [delayMin, delayMax] = this.config.delayMs;
    let processNo = worker;
    let counter = 0;
    try {
      for (let sends = 0; this.producing && sends < this.config.sendsMax; sends++) {
        const started = Date.now();
        const process = `delay-${processNo}`;
        const value = `d${processNo}-${counter++}`;
        const dueMs = started + this.rng.int(delayMin, delayMax);
        this.history.add({ type: 'invoke', process, f: 'delay-send', value, dueMs, wallMs: started });
        try {
          const receipt = await producer.send({ topic: this.config.topic, body: value, deliveryTimeMs: dueMs });
          this.acked.set(value, dueMs);
          this.history.add({ type: 'ok', process, f: 'delay-send', value, dueMs, queue: receipt.queueId, wallMs: Date.now() });
        } catch (error) {
          const definite = error instanceof MQClientError && error.definite;
          this.history.add({ type: definite ? 'fail' : 'info', process, f: 'delay-send', value, dueMs, wallMs: Date.now(), error: (error as Error).message.slice(0, 200) });
          if (!definite) {
            processNo += concurrency; // a process with an unknown outcome is retired
            counter = 0;
          }
        }
        await sleep(Math.max(0, intervalMs - (Date.now() - started)));
      }
    } finally {
      producer.shutdown();
    }
  }

  /** A broadcasting PullConsumer that reads every queue of the topic by offset from 0. */
  private async read(processId: string, f: 'delay-read' | 'delay-drain', group: string, keepGoing: () => boolean, onReads: (reads: Read[]) => void): Promise<void> {
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
        const messages = await consumer.poll(500, 128);
        const wallMs = Date.now();
        const reads = toReads(messages);
        this.history.add({ type: 'ok', process: processId, f, reads, storedMs: messages.map((m) => m.storeTimestampMs), wallMs });
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
        this.history.add({ type: 'invoke', process: processId, f: 'delay-receive' });
        let messages: ReceivedMessage[];
        try {
          messages = await consumer.receive(32, 5_000);
        } catch (error) {
          this.history.add({ type: 'fail', process: processId, f: 'delay-receive', error: (error as Error).message.slice(0, 200), wallMs: Date.now() });
          await sleep(250);
          continue;
        }
        const wallMs = Date.now();
        const reads = toReads(messages);
        this.history.add({ type: 'ok', process: processId, f: 'delay-receive', reads, storedMs: messages.map((m) => m.storeTimestampMs), wallMs });
        for (const [, , value] of reads) this.received.add(value);
        // A lost ack makes the message visible again after 5 s: a redelivery, counted by the checker.
        for (const message of messages) await consumer.ack(message).catch(() => undefined);
      }
    } finally {
      consumer.shutdown();
    }
  }
}
