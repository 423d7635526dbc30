/**
 * What the broker simulator checks, as events happen and at the end. It sees the real
 * broker's state through `BrokerState` reads and its digest, and the clients' view through
 * what the workload reports (sends, reads, deliveries, acks, offsets).
 */
import type { BrokerState } from '../broker/core/broker-state.js';
import { isMessagesKind, readHeader, readRouting, type PayloadKind } from '../broker/core/entry-codec.js';
import { EntryKind, type Entry } from '../raft/types.js';

/** A consumer group the checker follows, on one topic. */
export interface WatchedGroup {
  readonly group: string;
  readonly topic: string;
  readonly queues: number;
  readonly fifo: boolean;
  readonly maxDeliveryAttempts: number;
  /** 'pop': receive/ack; 'pull': queue offsets. */
  readonly style: 'pop' | 'pull';
}

/** One delivery as the client saw it, with the state time of the receive that made it. */
export interface SeenDelivery {
  readonly queueId: number;
  readonly offset: number;
  readonly messageId: string;
  readonly attempt: number;
  readonly invisibleUntilMs: number;
  /**
   * The queue's first offset in the serving node's state when the answer arrived (0 when
   * unknown): retention released what is below it, in flight or not, so it no longer holds
   * back a FIFO queue.
   */
  readonly queueFirstOffset?: number;
}

/** What the client knows of one message's latest delivery to a pop group. */
interface Flight {
  /** The visibility deadline in state time; undefined once a nack or ack made it uncertain. */
  deadlineMs: number | undefined;
  attempt: number;
  /** Client sequence number at which an ack of it succeeded. */
  ackedAt: number | undefined;
}

const key = (...parts: (string | number)[]): string => parts.join('/');
/** deadline - invisibleMs recovers the receive's state time up to float rounding. */
const roundingMs = 0.01;

export class BrokerChecker {
  readonly violations: string[] = [];
  /** Applied index → digest of the first node seen there (and who). */
  private readonly digestAt = new Map<number, { readonly digest: string; readonly by: string }>();
  /** topic/queue/offset → message id, from every read and delivery. */
  private readonly reads = new Map<string, string>();
  /** node#incarnation → group/topic/queue → offset last seen in that node's state. */
  private readonly progress = new Map<string, Map<string, number>>();
  private readonly flights = new Map<string, Flight>();
  /** group/topic/queue → (the highest offset a getOffset returned, the highest an update acknowledged with its sequence). */
  private readonly offsetReads = new Map<string, number>();
  private readonly offsetCommits = new Map<string, { offset: number; at: number }[]>();
  /** Message id → index of the first committed entry seen to hold it (the committed-log watcher). */
  private readonly committedAt = new Map<string, number>();
  private committedThrough = 0;
  private retainedFromMax = 1;
  digestsCompared = 0;
  /** Retention entries that released more of the log (each new retainedFrom, seen on any node). */
  retentionReleases = 0;

  constructor(
    private readonly watched: readonly WatchedGroup[],
    private readonly trace: (line: string) => void,
    /** Only what clients can see: no node state (digests, offsets per node), no reads compared with the serving node's commit index. */
    private readonly blackBoxOnly = false,
  ) {}

  violate(message: string): void {
    if (this.violations.length < 20) this.violations.push(message);
    this.trace(`VIOLATION ${message}`);
  }

  // ---- per node, after every applied batch (and restore) -------------------------------

  /**
   * Every node's broker state is identical at the same applied index, and within one
   * incarnation of a node, committed pull offsets and pop acknowledgement offsets never move
   * back (nothing in the workload resets them).
   */
  onApplied(node: string, incarnation: number, appliedIndex: number, state: BrokerState): void {
    if (state.retainedFrom > this.retainedFromMax) {
      this.retentionReleases++;
      this.retainedFromMax = state.retainedFrom;
    }
    if (this.blackBoxOnly) return;
    const digest = state.digest();
    const first = this.digestAt.get(appliedIndex);
    if (first === undefined) this.digestAt.set(appliedIndex, { digest, by: node });
    else {
      this.digestsCompared++;
      if (first.digest !== digest) this.violate(`broker state divergence at applied index ${appliedIndex}: ${first.by} has ${first.digest.slice(0, 12)}, ${node} has ${digest.slice(0, 12)}`);
    }
    const label = `${node}#${incarnation}`;
    let seen = this.progress.get(label);
    if (seen === undefined) {
      seen = new Map();
      this.progress.set(label, seen);
    }
    for (const watch of this.watched) {
      const rows = watch.style === 'pop' ? state.groupProgress(watch.group) : undefined;
      for (let queueId = 0; queueId < watch.queues; queueId++) {
        const offset = watch.style === 'pull'
          ? state.committedOffset(watch.group, watch.topic, queueId)
          : rows?.find((r) => r.topic === watch.topic && r.queueId === queueId)?.offset;
        if (offset === undefined) continue;
        const k = key(watch.group, watch.topic, queueId);
        const before = seen.get(k);
        if (before !== undefined && offset < before) this.violate(`${node}: ${watch.style} offset of ${k} moved back from ${before} to ${offset} at applied index ${appliedIndex}`);
        seen.set(k, offset);
      }
    }
  }

  // ---- the committed log ------------------------------------------------------------------

  /**
   * Entries a node's Raft hands its state machine (committed ones; every node applies the same
   * entry at an index, so the first node to get past an index is enough): which entry stored
   * each message, the proof a release needs (jepsen-tests/checker.ts: an acknowledged message
   * missing at the end was released only if its entry was committed below the first index
   * retention kept).
   */
  onCommitted(entries: readonly Entry[]): void {
    for (const entry of entries) {
      if (entry.index <= this.committedThrough) continue;
      this.committedThrough = entry.index;
      if (entry.kind !== EntryKind.normal) continue;
      let kind: PayloadKind;
      try {
        kind = readHeader(entry.payload).kind;
      } catch (error) {
        void error; // not a broker entry
        continue;
      }
      if (!isMessagesKind(kind)) continue;
      for (const message of readRouting(entry.payload)) if (!this.committedAt.has(message.messageId)) this.committedAt.set(message.messageId, entry.index);
    }
  }

  /** The index of the first committed entry that held `messageId`, if any was seen. */
  committedIndexOf(messageId: string): number | undefined {
    return this.committedAt.get(messageId);
  }

  // ---- reads ------------------------------------------------------------------------------

  /**
   * A read or delivery of `messageId` at (topic, queue, offset). `logIndex` is where the
   * serving node's state says the message is and `commitIndex` that node's commit index when
   * the answer arrived (undefined when the node is gone): a read beyond it saw an entry that
   * was not committed. Two reads of one position must agree.
   */
  onRead(how: string, topic: string, queueId: number, offset: number, messageId: string, served?: { node: string; logIndex: number | undefined; commitIndex: number }): void {
    if (!this.blackBoxOnly && served !== undefined && served.logIndex !== undefined && served.logIndex > served.commitIndex) {
      this.violate(`${how} of ${topic}/${queueId}/${offset} (${messageId}) from ${served.node} read log entry ${served.logIndex}, beyond its commit index ${served.commitIndex}`);
    }
    const k = key(topic, queueId, offset);
    const before = this.reads.get(k);
    if (before === undefined) this.reads.set(k, messageId);
    else if (before !== messageId) this.violate(`${how} of ${k} returned ${messageId}, an earlier read returned ${before}`);
  }

  /** Every position read or delivered, with the message id seen there. */
  allReads(): ReadonlyMap<string, string> {
    return this.reads;
  }

  // ---- pop deliveries --------------------------------------------------------------------

  /**
   * One receive's deliveries. `sentAt` is the client sequence number when the receive was
   * sent; an ack that succeeded before it was committed before the receive was proposed.
   * State time of the receive = deadline - invisibleMs (apply sets the deadline that way).
   */
  onDeliveries(watch: WatchedGroup, sentAt: number, invisibleMs: number, deliveries: readonly SeenDelivery[]): void {
    for (const d of deliveries) {
      const at = d.invisibleUntilMs - invisibleMs;
      const where = `${watch.group} ${watch.topic}/${d.queueId}/${d.offset} (${d.messageId})`;
      if (d.attempt > watch.maxDeliveryAttempts) this.violate(`${where} delivered for attempt ${d.attempt}, beyond the group's ${watch.maxDeliveryAttempts}: it should be in the DLQ`);
      const flight = this.flights.get(key(watch.group, watch.topic, d.queueId, d.offset));
      if (flight !== undefined) {
        if (flight.ackedAt !== undefined && flight.ackedAt < sentAt) this.violate(`${where} redelivered (attempt ${d.attempt}) after its ack succeeded`);
        if (flight.deadlineMs !== undefined && at < flight.deadlineMs - roundingMs) this.violate(`${where} redelivered at ${at}, while invisible until ${flight.deadlineMs}`);
        if (d.attempt <= flight.attempt) this.violate(`${where} redelivered as attempt ${d.attempt} after attempt ${flight.attempt}`);
      }
      if (watch.fifo) {
        // No later message of a queue while an earlier one is in flight and visible to nobody.
        for (let earlier = d.queueFirstOffset ?? 0; earlier < d.offset; earlier++) {
          const other = this.flights.get(key(watch.group, watch.topic, d.queueId, earlier));
          if (other === undefined || other.deadlineMs === undefined || (other.ackedAt !== undefined && other.ackedAt < sentAt)) continue;
          if (at < other.deadlineMs - roundingMs) this.violate(`FIFO: ${where} delivered at ${at} while offset ${earlier} is in flight until ${other.deadlineMs}`);
        }
      }
    }
    for (const d of deliveries) {
      this.flights.set(key(watch.group, watch.topic, d.queueId, d.offset), { deadlineMs: d.invisibleUntilMs, attempt: d.attempt, ackedAt: undefined });
    }
  }

  /** An ack or nack was sent: its delivery's deadline is no longer known. */
  onSettleStart(watch: WatchedGroup, queueId: number, offset: number): void {
    const flight = this.flights.get(key(watch.group, watch.topic, queueId, offset));
    if (flight !== undefined) flight.deadlineMs = undefined;
  }

  onAcked(watch: WatchedGroup, queueId: number, offset: number, at: number): void {
    const flight = this.flights.get(key(watch.group, watch.topic, queueId, offset));
    if (flight !== undefined) flight.ackedAt ??= at;
  }

  // ---- pull offsets ----------------------------------------------------------------------

  onOffsetCommitted(watch: WatchedGroup, queueId: number, offset: number, at: number): void {
    const k = key(watch.group, watch.topic, queueId);
    const list = this.offsetCommits.get(k) ?? [];
    list.push({ offset, at });
    this.offsetCommits.set(k, list);
  }

  /** A getOffset sent at `sentAt` returned `offset`: never below an earlier answer or an earlier acknowledged commit. */
  onOffsetRead(watch: WatchedGroup, queueId: number, offset: number | undefined, sentAt: number): void {
    const k = key(watch.group, watch.topic, queueId);
    const value = offset ?? 0;
    const before = this.offsetReads.get(k);
    if (before !== undefined && value < before) this.violate(`committed offset of ${k} moved back: read ${value} after ${before}`);
    this.offsetReads.set(k, Math.max(before ?? 0, value));
    for (const commit of this.offsetCommits.get(k) ?? []) {
      if (commit.at < sentAt && value < commit.offset) this.violate(`committed offset of ${k} read as ${value} after a commit of ${commit.offset} succeeded`);
    }
  }
}
