/**
 * The clients, all through our own client library against the real cluster:
 * - producers (queue workload): sequential senders of unique `<process>-<counter>` values,
 *   round robin over the queues; the first `orderedProducers` pin one queue each (ordered-
 *   producer workload: their offsets must grow in send order);
 * - group consumers: a clustering PullConsumer group that polls and commits offsets;
 * - a log reader (offset-log workload): a broadcasting PullConsumer reading every queue by
 *   offset from 0, so every (queue, offset, value) it sees is checked against the sends;
 * - the drain: after the heal, a fresh reader reads every queue from offset 0 until every
 *   producer's highest acknowledged value has been read.
 * Every loop is bounded by `running` and by time.
 */
import { MQClientError } from '../src/client/mq-connection.js';
import { Producer } from '../src/client/producer.js';
import { PullConsumer } from '../src/client/pull-consumer.js';
import type { ReceivedMessage } from '../src/client/messages.js';
import type { History, Read } from './history.js';
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
}

const toReads = (messages: readonly ReceivedMessage[]): Read[] => messages.map((m) => [m.queueId, m.offset, m.body.toString()] as const);

export class Workload {
  private producing = true;
  private consuming = true;
  private readonly loops: Promise<void>[] = [];
  private readonly consumerLoops: Promise<void>[] = [];
  readonly ackedValues = new Set<string>();

  constructor(private readonly history: History, private readonly config: WorkloadConfig) {}

  start(): void {
    for (let worker = 0; worker < this.config.producers; worker++) this.loops.push(this.produce(worker));
    for (let c = 0; c < this.config.consumers; c++) this.consumerLoops.push(this.consume(`consumer-${c}`, 'dequeue', 'jepsen-consumers', 'clustering', () => this.consuming));
    this.consumerLoops.push(this.consume('log-reader', 'read', 'jepsen-log-reader', 'broadcasting', () => this.consuming));
  }

  async stopProducers(): Promise<void> {
    this.producing = false;
    await Promise.all(this.loops);
  }

  async stopConsumers(): Promise<void> {
    this.consuming = false;
    await Promise.all(this.consumerLoops);
  }

  /** Reads everything from offset 0 until every acknowledged value was read (or time runs out). */
  async drain(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    const seen = new Set<string>();
    const missing = (): number => {
      let count = 0;
      for (const value of this.ackedValues) if (!seen.has(value)) count++;
      return count;
    };
    let idleSince = Date.now();
    await this.consume('drain', 'drain', `jepsen-drain-${Date.now()}`, 'broadcasting', () => {
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
    const ordered = worker < this.config.orderedProducers;
    const producer = new Producer({ nameServers: this.config.nameServers, sendTimeoutMs: 5_000, requestTimeoutMs: 2_000, faultAvoidanceMs: 0 });
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
          this.ackedValues.add(value);
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
    keepGoing: () => boolean, onReads?: (reads: Read[]) => void,
  ): Promise<void> {
    const consumer = new PullConsumer({
      nameServers: this.config.nameServers, group, mode, consumeFrom: 'first', autoCommitIntervalMs: mode === 'clustering' ? 500 : 0,
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
        const reads = toReads(messages);
        this.history.add({ type: 'ok', process: processId, f, reads });
        onReads?.(reads);
      }
    } finally {
      await consumer.shutdown();
    }
  }
}
