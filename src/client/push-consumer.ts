/**
 * PushConsumer (F4): a listener fed from the PullConsumer's queues. Concurrent mode runs up
 * to `concurrency` listeners at once; orderly mode runs one message at a time per queue, in
 * queue order. Offsets are committed only below the oldest unfinished message, so a crash
 * redelivers what was not finished. A message whose listener keeps failing is retried with a
 * growing delay and, after `maxReconsumeTimes`, sent to the group's %DLQ% topic.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { ReceivedMessage } from './messages.js';
import { statusError } from './mq-connection.js';
import { newMessageId } from './producer.js';
import { PullConsumer, type ProcessQueue, type PullConsumerOptions } from './pull-consumer.js';

export type ConsumeResult = 'SUCCESS' | 'FAILURE';

export interface PushConsumerOptions extends PullConsumerOptions {
  readonly listener: (message: ReceivedMessage) => Promise<ConsumeResult> | ConsumeResult;
  readonly orderly?: boolean;
  readonly concurrency?: number;
  readonly maxReconsumeTimes?: number;
  readonly retryDelayMs?: number;
}

export class PushConsumer extends PullConsumer {
  private inflight = 0;
  private dispatching = false;
  private stopped = false;
  private readonly busyQueues = new Set<ProcessQueue>();
  private readonly finished = new Set<() => void>();

  constructor(readonly pushOptions: PushConsumerOptions) {
    super(pushOptions);
  }

  override async start(): Promise<void> {
    await super.start();
    this.dispatching = true;
    void this.dispatchLoop();
  }

  /** Stops taking messages, waits for running listeners, commits and leaves the group. */
  override async shutdown(): Promise<void> {
    this.stopped = true;
    this.dispatching = false;
    while (this.inflight > 0) await new Promise<void>((resolve) => this.finished.add(resolve));
    await super.shutdown();
  }

  private async dispatchLoop(): Promise<void> {
    const concurrency = this.pushOptions.concurrency ?? 20;
    while (this.dispatching) {
      let started = 0;
      if (this.pushOptions.orderly === true) {
        for (const q of this.queues.values()) {
          if (this.busyQueues.has(q) || q.buffer.length === 0) continue;
          this.busyQueues.add(q);
          started++;
          void this.drainOrderly(q);
        }
      } else if (this.inflight < concurrency) {
        for (const message of this.take(concurrency - this.inflight, false)) {
          started++;
          this.inflight++;
          void this.consume(message).finally(() => this.settle());
        }
      }
      if (started === 0) await this.poll(50, 0);
    }
  }

  private settle(): void {
    this.inflight--;
    for (const wake of [...this.finished]) { this.finished.delete(wake); wake(); }
  }

  private async drainOrderly(q: ProcessQueue): Promise<void> {
    this.inflight++;
    try {
      while (this.dispatching && !q.dropped && q.buffer.length > 0) {
        const generation = q.generation;
        const message = q.buffer.shift() as ReceivedMessage;
        q.handedUpTo = message.offset + 1;
        q.inProgress.add(message.offset);
        await this.consume(message);
        if (generation !== q.generation) break;
      }
    } finally {
      this.busyQueues.delete(q);
      this.settle();
    }
  }

  private async consume(message: ReceivedMessage): Promise<void> {
    const maxAttempts = (this.pushOptions.maxReconsumeTimes ?? 16) + 1;
    for (let attempt = 1; ; attempt++) {
      let result: ConsumeResult;
      try {
        result = await this.pushOptions.listener({ ...message, deliveryAttempt: attempt });
      } catch {
        result = 'FAILURE';
      }
      if (result === 'SUCCESS') break;
      if (attempt >= maxAttempts) {
        await this.deadLetter(message);
        break;
      }
      if (this.stopped) return; // unfinished: its offset stays uncommitted, so it is redelivered
      await sleep(Math.min((this.pushOptions.retryDelayMs ?? 1_000) * attempt, 60_000));
    }
    this.queueOf(message)?.inProgress.delete(message.offset);
  }

  private async deadLetter(message: ReceivedMessage): Promise<void> {
    const topic = `%DLQ%${this.options.group}`;
    const messageId = newMessageId(); // one id for every attempt: the broker de-duplicates retries
    for (let attempt = 0; ; attempt++) {
      try {
        const response = await this.connection.unary(message.brokerGroup, 'SendMessage', {
          messages: [{
            topic: { name: topic, resourceNamespace: '' }, body: message.body,
            userProperties: { ...message.properties, __ORIGIN_TOPIC: message.topic, __ORIGIN_MESSAGE_ID: message.messageId },
            systemProperties: { messageId, keys: message.keys, bodyEncoding: 'IDENTITY', messageType: 'NORMAL', queueId: 0, bornHost: '', ...(message.tag === '' ? {} : { tag: message.tag }) },
          }],
        });
        if (response.status?.code === 'OK') return;
        throw statusError('dead-letter', response.status);
      } catch (error) {
        if (attempt >= 5 || this.stopped) throw error;
        await sleep(500);
      }
    }
  }
}
