/**
 * Queue-offset consumption (F4): clustering (the group's members share the queues; the
 * leader of each broker group allocates them, and members rebalance as they come and go) or
 * broadcasting (every member reads every queue and keeps its offsets locally). Messages are
 * fetched ahead per queue by long polls; offsets are committed to the broker (a Raft entry,
 * so they survive failover) by `commit()` and every `autoCommitIntervalMs`.
 *
 * `poll()` hands messages to the application and counts them consumed (at-least-once: what
 * was polled but not processed before a crash is read again by the next owner).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { filterExpressionToV2, type FilterExpression, type ReceivedMessage } from './messages.js';
import { MQClientError, MQConnection, statusError, type ConnectionOptions } from './mq-connection.js';
import { PullStreams } from './pull-stream.js';
import * as grpc from '@grpc/grpc-js';
import { rebalanceHeader } from '../util/rocketmq-v2.js';
import { checkGroupName, checkTopicName } from './name-checks.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader objects are untyped at this edge */

export interface PullConsumerOptions extends ConnectionOptions {
  readonly group: string;
  readonly mode?: 'clustering' | 'broadcasting';
  /** Where a queue without a committed offset starts (default: its first message). */
  readonly consumeFrom?: 'first' | 'last';
  readonly pullBatchSize?: number;
  readonly rebalanceIntervalMs?: number;
  /** 0 turns auto-commit off. */
  readonly autoCommitIntervalMs?: number;
  readonly bufferedPerQueueMax?: number;
  readonly longPollMs?: number;
}

export interface QueueRef {
  readonly brokerGroup: string;
  readonly topic: string;
  readonly queueId: number;
}

export class ProcessQueue {
  readonly buffer: ReceivedMessage[] = [];
  /** Offsets handed to the application and not finished yet (push consumers). */
  readonly inProgress = new Set<number>();
  nextPullOffset = 0;
  /** The offset after the last message handed out. */
  handedUpTo = 0;
  committed = -1;
  generation = 0;
  dropped = false;
  /** The fetch loop, waiting for room in a full buffer. */
  private spaceWaiter: (() => void) | undefined;

  constructor(readonly ref: QueueRef, readonly filter: FilterExpression) {}

  /** Everything below is finished: the offset to commit. */
  get committable(): number {
    let min = this.handedUpTo;
    for (const offset of this.inProgress) if (offset < min) min = offset;
    return min;
  }

  /** Resolves when messages leave the buffer (take), or after `ms` (PushConsumer's orderly dispatch takes them itself). */
  bufferSpace(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.wakeFetcher(), ms);
      this.spaceWaiter = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  wakeFetcher(): void {
    const wake = this.spaceWaiter;
    this.spaceWaiter = undefined;
    wake?.();
  }

  resetTo(offset: number): void {
    this.wakeFetcher();
    this.generation++;
    this.buffer.length = 0;
    this.inProgress.clear();
    this.nextPullOffset = offset;
    this.handedUpTo = offset;
  }
}

/** A fetch loop with a full buffer looks again this often even if take() did not wake it. */
const fullBufferRecheckMs = 20;

const queueKey = (ref: QueueRef): string => `${ref.brokerGroup}\u0000${ref.topic}\u0000${ref.queueId}`;

export class PullConsumer {
  readonly connection: MQConnection;
  /** PullMessage calls, decoded lean on channels of their own (pull-stream.ts). */
  private readonly pulls: PullStreams;
  protected readonly queues = new Map<string, ProcessQueue>();
  private readonly subscriptions = new Map<string, FilterExpression>();
  private readonly mode: 'clustering' | 'broadcasting';
  private running = false;
  private timers: NodeJS.Timeout[] = [];
  private rebalancing: Promise<void> | undefined;
  private readonly arrivals = new Set<() => void>();
  private pollCursor = 0;
  /** Broadcasting: offsets of queues that left the assignment, so a return resumes there. */
  private readonly localOffsets = new Map<string, number>();

  constructor(readonly options: PullConsumerOptions) {
    checkGroupName(options.group);
    this.connection = new MQConnection(options);
    this.pulls = new PullStreams(this.connection);
    this.mode = options.mode ?? 'clustering';
  }

  subscribe(topic: string, filter: FilterExpression = '*'): this {
    checkTopicName(topic);
    this.subscriptions.set(topic, filter);
    return this;
  }

  /** Joins the group and takes its first share of the queues before resolving. */
  async start(): Promise<void> {
    if (this.subscriptions.size === 0) throw new MQClientError('BAD_REQUEST', 'subscribe to at least one topic before start()', true);
    this.running = true;
    await this.rebalance();
    this.timers.push(setInterval(() => { this.rebalance().catch(() => undefined); }, this.options.rebalanceIntervalMs ?? 2_000));
    const autoCommit = this.options.autoCommitIntervalMs ?? 1_000;
    if (autoCommit > 0) this.timers.push(setInterval(() => { this.commit().catch(() => undefined); }, autoCommit));
  }

  /** Commits, leaves the group (so the others rebalance at once) and closes connections. */
  async shutdown(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    for (const timer of this.timers.splice(0)) clearInterval(timer);
    // A background rebalance may be failing (the group is down): wait for it so that it adds
    // no queue after this, but a failure there is no reason not to close.
    await this.rebalancing?.catch(() => undefined);
    await this.commit().catch(() => undefined);
    for (const q of this.queues.values()) q.dropped = true;
    const groups = new Set([...this.queues.values()].map((q) => q.ref.brokerGroup));
    await Promise.all([...groups].map((g) => this.connection.unary(g, 'NotifyClientTermination', { group: { name: this.options.group, resourceNamespace: '' } }).catch(() => undefined)));
    for (const wake of this.arrivals) wake();
    for (const q of this.queues.values()) q.wakeFetcher();
    this.pulls.close();
    this.connection.close();
  }

  assignment(): QueueRef[] {
    return [...this.queues.values()].map((q) => q.ref);
  }

  /** Up to `max` buffered messages, waiting up to `timeoutMs` for the first. */
  async poll(timeoutMs = 1_000, max = 32): Promise<ReceivedMessage[]> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const out = this.take(max, true);
      if (out.length > 0 || Date.now() >= until || !this.running) return out;
      await new Promise<void>((resolve) => {
        const done = (): void => { clearTimeout(timer); this.arrivals.delete(done); resolve(); };
        const timer = setTimeout(done, Math.max(1, until - Date.now()));
        this.arrivals.add(done);
      });
    }
  }

  /** Commits every queue's consumed offset that moved since the last commit. */
  async commit(): Promise<void> {
    if (this.mode === 'broadcasting') return; // broadcasting offsets stay with this member
    await Promise.all([...this.queues.values()].map(async (q) => {
      const offset = q.committable;
      if (offset <= q.committed) return;
      const response = await this.connection.unary(q.ref.brokerGroup, 'UpdateOffset', { group: this.groupResource(), messageQueue: this.mq(q.ref), offset });
      if (response.status?.code !== 'OK') throw statusError('commit offset', response.status);
      q.committed = offset;
    }));
  }

  /** Moves one assigned queue to `offset`. */
  seek(ref: QueueRef, offset: number): void {
    const q = this.queues.get(queueKey(ref));
    if (q === undefined) throw new MQClientError('BAD_REQUEST', `queue ${ref.topic}/${ref.queueId} of ${ref.brokerGroup} is not assigned to this consumer`, true);
    q.resetTo(offset);
    q.committed = -1;
  }

  /** Moves every assigned queue of `topic` to the first message stored at or after `timeMs`, and commits. */
  async seekToTime(topic: string, timeMs: number): Promise<void> {
    checkTopicName(topic);
    for (const q of this.queues.values()) {
      if (q.ref.topic !== topic) continue;
      const response = await this.connection.unary(q.ref.brokerGroup, 'QueryOffset', { messageQueue: this.mq(q.ref), queryOffsetPolicy: 'TIMESTAMP', timestamp: { seconds: Math.floor(timeMs / 1000), nanos: (timeMs % 1000) * 1e6 } });
      if (response.status?.code !== 'OK') throw statusError('query offset', response.status);
      q.resetTo(Number(response.offset));
      q.committed = -1;
    }
    await this.commit();
  }

  // ---- internals shared with PushConsumer ----------------------------------------------------

  /** Takes buffered messages round-robin over queues; `finished` counts them consumed at once. */
  protected take(max: number, finished: boolean, perQueue?: (q: ProcessQueue) => boolean): ReceivedMessage[] {
    const out: ReceivedMessage[] = [];
    const all = [...this.queues.values()];
    for (let n = 0; n < all.length && out.length < max; n++) {
      const q = all[(this.pollCursor + n) % all.length] as ProcessQueue;
      if (perQueue !== undefined && !perQueue(q)) continue;
      while (q.buffer.length > 0 && out.length < max) {
        const message = q.buffer.shift() as ReceivedMessage;
        q.handedUpTo = message.offset + 1;
        if (!finished) q.inProgress.add(message.offset);
        out.push(message);
      }
      q.wakeFetcher();
    }
    this.pollCursor++;
    return out;
  }

  protected queueOf(message: ReceivedMessage): ProcessQueue | undefined {
    return this.queues.get(queueKey(message));
  }

  protected onArrival(): void {
    for (const wake of [...this.arrivals]) wake();
  }

  private groupResource(): object {
    return { name: this.options.group, resourceNamespace: '' };
  }

  private mq(ref: QueueRef): object {
    return { topic: { name: ref.topic, resourceNamespace: '' }, id: ref.queueId, broker: { name: ref.brokerGroup, id: 0 } };
  }

  private rebalance(): Promise<void> {
    this.rebalancing ??= this.rebalanceOnce().finally(() => { this.rebalancing = undefined; });
    return this.rebalancing;
  }

  private async rebalanceOnce(): Promise<void> {
    const wanted = new Map<string, { ref: QueueRef; filter: FilterExpression }>();
    // No route at all means the whole group is down or unregistered for a moment, not that
    // its queues are gone: keep them (and their offsets) until the routes come back.
    const unresolved = new Set<string>();
    for (const [topic, filter] of this.subscriptions) {
      let groups = await this.connection.routes(topic, true);
      // A topic created a moment ago may not be registered yet: ask the brokers themselves.
      if (groups.length === 0) groups = await this.connection.requireRoutes(topic).catch(() => []);
      if (groups.length === 0) unresolved.add(topic);
      for (const group of groups) {
        const route = group.topics.find((t) => t.name === topic);
        if (route === undefined) continue;
        let ids: number[];
        if (this.mode === 'broadcasting') {
          ids = Array.from({ length: route.readQueues }, (_, i) => i);
        } else {
          const extra = new grpc.Metadata();
          extra.set(rebalanceHeader, '1');
          const response = await this.connection.unary(group.group, 'QueryAssignment', { topic: { name: topic, resourceNamespace: '' }, group: this.groupResource(), endpoints: null }, { extra });
          if (response.status?.code !== 'OK') throw statusError('query assignment', response.status);
          ids = (response.assignments ?? []).map((a: any) => Number(a.messageQueue.id));
        }
        for (const queueId of ids) {
          const ref = { brokerGroup: group.group, topic, queueId };
          wanted.set(queueKey(ref), { ref, filter });
        }
      }
    }
    if (!this.running) return;
    for (const [key, q] of this.queues) {
      if (wanted.has(key) || unresolved.has(q.ref.topic)) continue;
      // Hand the queue over with its offset committed, so the next owner starts where we stopped.
      q.dropped = true;
      this.queues.delete(key);
      if (this.mode === 'broadcasting') this.localOffsets.set(key, q.committable);
      await this.commitOne(q).catch(() => undefined);
    }
    for (const [key, { ref, filter }] of wanted) {
      if (this.queues.has(key)) continue;
      const q = new ProcessQueue(ref, filter);
      q.resetTo(await this.initialOffset(ref));
      q.committed = q.nextPullOffset;
      this.queues.set(key, q);
      void this.fetchLoop(q);
    }
  }

  private async commitOne(q: ProcessQueue): Promise<void> {
    if (this.mode === 'broadcasting' || q.committable <= q.committed) return;
    const response = await this.connection.unary(q.ref.brokerGroup, 'UpdateOffset', { group: this.groupResource(), messageQueue: this.mq(q.ref), offset: q.committable });
    if (response.status?.code === 'OK') q.committed = q.committable;
  }

  private async initialOffset(ref: QueueRef): Promise<number> {
    const local = this.localOffsets.get(queueKey(ref));
    if (local !== undefined) return local; // broadcasting: where this member stopped reading it
    if (this.mode === 'clustering') {
      const response = await this.connection.unary(ref.brokerGroup, 'GetOffset', { group: this.groupResource(), messageQueue: this.mq(ref) });
      if (response.status?.code === 'OK') return Number(response.offset);
      if (response.status?.code !== 'OFFSET_NOT_FOUND') throw statusError('get offset', response.status);
    }
    if ((this.options.consumeFrom ?? 'first') === 'first') return 0;
    const response = await this.connection.unary(ref.brokerGroup, 'QueryOffset', { messageQueue: this.mq(ref), queryOffsetPolicy: 'END' });
    if (response.status?.code !== 'OK') throw statusError('query offset', response.status);
    return Number(response.offset);
  }

  /**
   * Keeps the queue's buffer filled ahead of the application: a long poll for the next batch
   * as soon as the last one is buffered, while the buffer is below `bufferedPerQueueMax`.
   */
  private async fetchLoop(q: ProcessQueue): Promise<void> {
    const bufferMax = this.options.bufferedPerQueueMax ?? 512;
    const longPollMs = this.options.longPollMs ?? 5_000;
    while (this.running && !q.dropped) {
      if (q.buffer.length >= bufferMax) {
        await q.bufferSpace(fullBufferRecheckMs);
        continue;
      }
      const generation = q.generation;
      try {
        const answer = await this.pulls.pull(q.ref.brokerGroup, {
          group: this.groupResource(), messageQueue: this.mq(q.ref), offset: q.nextPullOffset, batchSize: this.options.pullBatchSize ?? 32,
          filterExpression: filterExpressionToV2(q.filter), longPollingTimeout: { seconds: Math.floor(longPollMs / 1000), nanos: 0 },
        }, longPollMs + this.connection.requestTimeoutMs);
        if (generation !== q.generation || q.dropped) continue;
        const { status, messages } = answer;
        if (status !== undefined && status.code !== 'OK' && status.code !== 'MESSAGE_NOT_FOUND') throw statusError('pull', status);
        for (const message of messages) q.buffer.push(message);
        if (answer.nextOffset !== undefined) q.nextPullOffset = answer.nextOffset;
        else if (messages.length > 0) q.nextPullOffset = (messages[messages.length - 1] as ReceivedMessage).offset + 1;
        if (messages.length > 0) this.onArrival();
      } catch {
        await sleep(200);
      }
    }
  }
}
