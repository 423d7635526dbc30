/**
 * What a broker node does for clients, in protocol-neutral terms: sends (coalesced into one
 * Raft entry per event-loop turn), receive/ack/invisibility through log entries, queue-offset
 * pulls from committed state, offsets, topics and groups, and the leader-only services
 * (auto-renewal of push deliveries, release of deliveries held by clients that went away).
 * Every change goes through the log; reads are served only by a leader that has applied an
 * entry of its own term, so they include everything any earlier leader acknowledged.
 *
 * Delayed messages (F8): a send with a delivery time is checked here (not beyond the maximum
 * delay, not further in the past than `pastDeliveryToleranceMs`, no message group) and stored
 * in the timer store at apply. The leader watches the earliest pending delivery time and,
 * when its wall clock reaches it, proposes `timer.fire` through its clock (at most one fire in
 * flight, at least `timerFireIntervalMs` apart); applying it makes the due messages visible
 * on every node alike and wakes long polls. A new leader picks up where the old one stopped.
 *
 * Transactions (F9): a TRANSACTION send is stored as a half message (its own entries: kind
 * HalfMessages) and answered with a transaction id (transaction-id.ts); endTransaction
 * proposes `txn.end`. The leader looks for transactions due for a check-back every
 * `transactionCheckTickMs` and proposes `txn.check` with its check policy; the nodes holding
 * the producers' Telemetry streams do the asking (BrokerStateMachine.onTransactionChecks).
 */
import type { ProposalError } from '../raft/node/errors.js';
import type { Disposable, ServiceClock } from '../util/clock.js';
import { BrokerError } from './errors.js';
import type { ApplyResult, BrokerStateMachine, TransactionCheckRound } from './broker-state-machine.js';
import { validateAccessCommand, type AccessCommand, type AccessControlTable } from './core/access-control.js';
import type { BrokerCommand, CommandOutcome, Delivery, HandleRef, SendOutcome } from './core/broker-state.js';
import { formatRecallHandle, type RecallHandle } from './core/recall-handle.js';
import { encodeCommand, encodeMessages, type MessageInput, type StoredMessage } from './core/entry-codec.js';
import { filterToJson } from './core/filter.js';
import { sqlMatches, type SubscriptionFilter } from './core/subscription-filter.js';
import {
  defaultGroupConfig, defaultTopicConfig, dlqTopicPrefix, groupConfigProblem, permRead, topicAccepts, topicConfigProblem, type GroupConfig, type MessageKind, type TopicConfig,
} from './core/names.js';
import { formatReceiptHandle, type ReceiptHandle } from './core/receipt-handle.js';
import { formatTransactionId, type TransactionId } from './core/transaction-id.js';
import { PayloadCache, readQueueBatch } from './queue-reader.js';
import { checkPolicyProblem, defaultTransactionCheckPolicy, type TransactionCheckPolicy } from './core/transactions.js';

/** The Raft node as the broker service sees it. */
export interface RaftPort {
  /** Resolves with the entry's apply result once it is committed and applied on this node. */
  propose(payload: Uint8Array): Promise<{ readonly index: number; readonly term: number; readonly result: ApplyResult }>;
  readonly role: string;
  readonly term: number;
  /** The current leader's client address, when known. */
  leaderAddress(): string | undefined;
}

export interface LogReader {
  /** The payload of a committed entry. */
  payloadAt(index: number): Promise<Uint8Array>;
}

export interface BrokerServiceOptions {
  readonly brokerGroup: string;
  readonly autoCreateTopics: boolean;
  readonly autoCreateGroups: boolean;
  readonly maxBodyBytes: number;
  /**
   * Bodies of one SendMessage request (a client's batch), in total: refused as a whole with a
   * clear error well below gRPC's 64 MiB frame limit, which would answer RESOURCE_EXHAUSTED.
   */
  readonly requestBodyBytesMax: number;
  /**
   * Sends waiting for the quorum (queued or proposed, not yet answered), in bytes: beyond it a
   * request is refused with TOO_MANY_REQUESTS rather than queued, so a producer faster than
   * the disks meets back-pressure instead of growing the broker's memory.
   */
  readonly sendBacklogBytesMax: number;
  /** Messages and bytes per Raft entry when coalescing sends. */
  readonly batchMessagesMax: number;
  readonly batchBytesMax: number;
  /** Invisible time of auto-renewed (push) deliveries, renewed while the client lives. */
  readonly autoRenewInvisibleMs: number;
  /** A client not heard from (heartbeat, telemetry, any call) for this long is gone. */
  readonly clientExpiryMs: number;
  /** How long a new leader may take to apply its first entry before reads fail. */
  readonly readReadyWaitMs: number;
  /**
   * A delivery time this far in the past is still accepted (and delivered at once): a send
   * made for "now + 1 s" that arrives late, a client retry, or a client clock a little behind.
   * Further in the past it is ILLEGAL_DELIVERY_TIME.
   */
  readonly pastDeliveryToleranceMs: number;
  /** The leader proposes timer fires at most this often (each fire delivers everything due by then). */
  readonly timerFireIntervalMs: number;
  /** When open transactions are checked back, and how often before they are rolled back. */
  readonly transactionCheck: TransactionCheckPolicy;
  /** How often the leader looks for transactions due for a check-back. */
  readonly transactionCheckTickMs: number;
}

export const defaultBrokerServiceOptions: Omit<BrokerServiceOptions, 'brokerGroup'> = {
  autoCreateTopics: false,
  autoCreateGroups: true,
  maxBodyBytes: 4 * 1024 * 1024,
  requestBodyBytesMax: 32 * 1024 * 1024,
  sendBacklogBytesMax: 64 * 1024 * 1024,
  batchMessagesMax: 1024,
  batchBytesMax: 4 * 1024 * 1024,
  autoRenewInvisibleMs: 60_000,
  clientExpiryMs: 30_000,
  readReadyWaitMs: 2_500,
  pastDeliveryToleranceMs: 30_000,
  timerFireIntervalMs: 100,
  transactionCheck: defaultTransactionCheckPolicy,
  transactionCheckTickMs: 250,
};

export interface DeliveredMessage {
  readonly message: StoredMessage;
  /** A committed transactional message: its transaction id; '' otherwise. */
  readonly transactionId: string;
  readonly topic: string;
  readonly queueId: number;
  readonly offset: number;
  readonly storeTimeMs: number;
  readonly attempt: number;
  readonly receiptHandle: string;
  readonly invisibleUntilMs: number;
}

export interface PulledMessage {
  readonly message: StoredMessage;
  readonly transactionId: string;
  readonly topic: string;
  readonly queueId: number;
  readonly offset: number;
  readonly storeTimeMs: number;
}

export interface SendResult {
  readonly messageId: string;
  readonly queueId: number;
  /** -1 for a delayed message (it gets an offset when it is delivered). */
  readonly offset: number;
  /** A pending delayed message: what RecallMessage takes to cancel it (recall-handle.ts); '' otherwise. */
  readonly recallHandle: string;
  /** A transactional message: its open transaction's id (transaction-id.ts); '' otherwise. */
  readonly transactionId: string;
}

/** One message of a send request: checked by the protocol layer, or refused by it already. */
export type SendItem = { readonly message: MessageInput; readonly kind: MessageKind } | { readonly problem: BrokerError };
/** A message's answer: where it is stored, or why it was not (definite unless INTERNAL_SERVER_ERROR). */
export type SendAnswer = SendResult | BrokerError;

/** One request's answers, completed when the last of its queued messages is answered. */
interface SendRequest {
  readonly answers: SendAnswer[];
  remaining: number;
  readonly resolve: (answers: SendAnswer[]) => void;
}

interface QueuedSend {
  readonly message: MessageInput;
  /** A transaction's half message (proposed in entries of its own kind). */
  readonly half: boolean;
  readonly bytes: number;
  readonly request: SendRequest;
  /** The message's place in its request. */
  readonly slot: number;
}

/** What a queued send is counted as beyond its body (routing fields, properties, bookkeeping). */
const queuedSendOverheadBytes = 256;

function answerSend(send: QueuedSend, answer: SendAnswer): void {
  const { request } = send;
  request.answers[send.slot] = answer;
  if (--request.remaining === 0) request.resolve(request.answers);
}

interface ClientRecord {
  lastSeenMs: number;
  readonly groups: Set<string>;
  kind: string;
}

export class BrokerService {
  private queued: QueuedSend[] = [];
  private flushScheduled = false;
  /** Bytes of sends queued or proposed and not yet answered (see sendBacklogBytesMax). */
  private backlogBytes = 0;
  private readonly clients = new Map<string, ClientRecord>();
  private readonly topicCreations = new Map<string, Promise<void>>();
  /** Entries' payloads for every read of messages (pull, receive, check-backs); see queue-reader.ts. */
  private readonly payloadCache = new PayloadCache((logIndex) => this.log.payloadAt(logIndex));
  private readonly changeWaiters = new Map<() => void, string>();
  private timer: Disposable | undefined;
  private checkTimer: Disposable | undefined;
  private checking = false;
  private closed = false;
  /** The leader's next timer fire: its timer and when it goes off (monotonic time). */
  private fireTimer: Disposable | undefined;
  private fireAtMs = Infinity;
  private firing = false;
  private lastFireMs = -Infinity;

  constructor(
    readonly options: BrokerServiceOptions,
    private readonly raft: RaftPort,
    private readonly machine: BrokerStateMachine,
    private readonly log: LogReader,
    /** The only way in to time and timers, so the simulator can run this service. */
    private readonly clock: ServiceClock,
  ) {
    machine.onApplied((topics) => {
      for (const [wake, topic] of [...this.changeWaiters]) if (topics.has(topic) || topics.has('*') || topic === '*') wake();
      this.scheduleTimerFire();
    });
  }

  /** Every applied check-back round (on every node; see BrokerStateMachine.onTransactionChecks). */
  onTransactionChecks(listener: (round: TransactionCheckRound, entryTimeMs: number) => void): () => void {
    return this.machine.onTransactionChecks(listener);
  }

  get state(): BrokerStateMachine['state'] {
    return this.machine.state;
  }

  /** Starts the leader-only services. */
  start(intervalMs = 2_000): void {
    const problem = checkPolicyProblem(this.options.transactionCheck);
    if (problem !== undefined) throw new Error(problem);
    this.timer = this.clock.every(intervalMs, () => { this.runLeaderServices().catch(() => undefined); });
    this.checkTimer = this.clock.every(this.options.transactionCheckTickMs, () => { void this.checkTransactions(); });
  }

  close(): void {
    this.closed = true;
    this.timer?.dispose();
    this.checkTimer?.dispose();
    this.fireTimer?.dispose();
    for (const wake of [...this.changeWaiters.keys()]) wake();
    for (const send of this.queued.splice(0)) answerSend(send, new BrokerError('HA_NOT_AVAILABLE', 'broker is shutting down'));
  }

  // ---- clients -------------------------------------------------------------------------

  /** Any sign of life from a client (heartbeat, telemetry, a call). */
  touchClient(clientId: string, kind: string, group?: string): void {
    if (clientId === '') return;
    let record = this.clients.get(clientId);
    if (record === undefined) {
      record = { lastSeenMs: this.clock.nowMs(), groups: new Set(), kind };
      this.clients.set(clientId, record);
    }
    record.lastSeenMs = this.clock.nowMs();
    if (kind !== '') record.kind = kind;
    if (group !== undefined && group !== '') record.groups.add(group);
  }

  isClientAlive(clientId: string): boolean {
    const record = this.clients.get(clientId);
    return record !== undefined && this.clock.nowMs() - record.lastSeenMs < this.options.clientExpiryMs;
  }

  /** The client said goodbye: forget it and make its auto-renewed deliveries visible again. */
  async clientTerminated(clientId: string): Promise<void> {
    this.clients.delete(clientId);
    if (this.raft.role === 'leader' && this.machine.state.autoRenewClients().has(clientId)) await this.command({ op: 'release', clientId });
  }

  /** Live members of a consumer group, sorted (the input of rebalancing). */
  groupMembers(group: string): string[] {
    const now = this.clock.nowMs();
    return [...this.clients].filter(([, r]) => r.groups.has(group) && now - r.lastSeenMs < this.options.clientExpiryMs).map(([id]) => id).sort();
  }

  /** RocketMQ's AllocateMessageQueueAveragely: a contiguous share of the queues per member. */
  allocateQueues(group: string, topic: string, clientId: string): number[] {
    const config = this.requireTopic(topic);
    const members = this.groupMembers(group);
    if (!members.includes(clientId)) {
      members.push(clientId);
      members.sort();
    }
    const queues = Math.min(config.readQueues, this.state.maxOffsets(topic).length);
    const index = members.indexOf(clientId);
    const base = Math.floor(queues / members.length);
    const extra = queues % members.length;
    const count = base + (index < extra ? 1 : 0);
    const start = index * base + Math.min(index, extra);
    return Array.from({ length: count }, (_, i) => start + i);
  }

  // ---- topics and groups -------------------------------------------------------------------

  requireTopic(name: string): TopicConfig {
    const config = this.state.topic(name);
    if (config === undefined) throw new BrokerError('TOPIC_NOT_FOUND', `topic ${name} does not exist in broker group ${this.options.brokerGroup}`);
    return config;
  }

  /** `mode` create: BAD_REQUEST if it exists; update: TOPIC_NOT_FOUND if it does not; decided when the entry applies. */
  async putTopic(config: TopicConfig, mode?: 'create' | 'update'): Promise<void> {
    const problem = topicConfigProblem(config);
    if (problem !== undefined) throw new BrokerError('ILLEGAL_TOPIC', problem);
    await this.awaitReadReady();
    const existing = this.state.topic(config.name);
    if (existing !== undefined && Math.max(config.readQueues, config.writeQueues) < Math.max(existing.readQueues, existing.writeQueues)) {
      // Queue files are never dropped; fewer readable/writable queues are set via the counts.
      if (config.readQueues < 1 || config.writeQueues < 1) throw new BrokerError('BAD_REQUEST', 'queue counts must stay at least 1');
    }
    await this.handleCommand(mode === undefined ? { op: 'topic.put', config } : { op: 'topic.put', config, mode });
  }

  async deleteTopic(name: string): Promise<void> {
    this.requireTopic(name);
    await this.command({ op: 'topic.delete', name });
  }

  /**
   * A user or policy change (access-control.ts), its secret sealed by the caller; refused
   * (BAD_REQUEST with the table's reason) when apply refuses it, which leaves the table as it was.
   */
  async applyAccessCommand(command: AccessCommand): Promise<void> {
    const valid = validateAccessCommand(command);
    if (!valid.ok) throw new BrokerError('BAD_REQUEST', valid.reason);
    await this.handleCommand({ op: 'access', command: valid.command });
  }

  /**
   * On the leader: waits (at most readReadyWaitMs) until it has applied an entry of its term,
   * after which its table holds every user and policy committed before (a node that has just
   * been elected, or has just restarted, holds only what it has replayed so far, and would
   * answer a valid user FORBIDDEN). False on a follower, which cannot know how far behind it is
   * (its term and applied term match right after a restart, before it replays anything), or if
   * the leader is not ready by then.
   */
  async accessTableCurrent(): Promise<boolean> {
    const until = this.clock.nowMs() + this.options.readReadyWaitMs;
    for (;;) {
      if (this.raft.role !== 'leader') return false;
      if (this.machine.lastAppliedTerm === this.raft.term) return true;
      if (this.clock.nowMs() >= until) return false;
      await this.waitForChange('*', 20);
    }
  }

  /** The users and policies as of every command committed before the call (a read after this leader's own-term entry). */
  async accessTable(): Promise<AccessControlTable> {
    await this.awaitReadReady();
    return this.state.access;
  }

  async putGroup(config: GroupConfig): Promise<void> {
    const problem = groupConfigProblem(config);
    if (problem !== undefined) throw new BrokerError('ILLEGAL_CONSUMER_GROUP', problem);
    await this.command({ op: 'group.put', config });
  }

  /** The group's configuration; unknown groups are created on first use when allowed. */
  async requireGroup(name: string): Promise<GroupConfig> {
    const problem = groupConfigProblem(defaultGroupConfig(name));
    if (problem !== undefined) throw new BrokerError('ILLEGAL_CONSUMER_GROUP', problem);
    const config = this.state.group(name);
    if (config !== undefined) return config;
    if (!this.options.autoCreateGroups) throw new BrokerError('CONSUMER_GROUP_NOT_FOUND', `consumer group ${name} does not exist and auto-creation is off`);
    return defaultGroupConfig(name);
  }

  // ---- sending ---------------------------------------------------------------------------

  /**
   * Stores messages, all or none of them checked: resolves once a quorum holds them and they
   * are applied, or rejects with the first message's failure. See {@link sendEach}.
   */
  async send(messages: readonly MessageInput[], kind: MessageKind): Promise<SendResult[]> {
    await this.awaitReadReady();
    for (const message of messages) {
      const problem = await this.sendProblem(message, kind);
      if (problem !== undefined) throw problem;
    }
    const answers = await this.enqueueSends(messages.map((message) => ({ message, kind })));
    const failed = answers.find((answer) => answer instanceof BrokerError);
    if (failed !== undefined) throw failed;
    return answers as SendResult[];
  }

  /**
   * Stores one request's messages (a SendMessage call): each is checked and answered on its
   * own, and the request completes once every message is applied or refused. Concurrent
   * requests share Raft entries. A retried message id within the de-duplication window gets
   * the original queue and offset instead of being stored twice. While more than
   * `sendBacklogBytesMax` of sends wait for the quorum, a request is refused at once with
   * TOO_MANY_REQUESTS (nothing stored; the clients back off and retry) instead of queueing.
   */
  async sendEach(items: readonly SendItem[]): Promise<SendAnswer[]> {
    // The topic checks read the state: a new leader's may not hold every topic yet (it has
    // not applied the log it inherited), and would answer TOPIC_NOT_FOUND for one that
    // exists, or auto-create it again over its configuration.
    await this.awaitReadReady();
    const checked: Array<SendItem | undefined> = new Array(items.length);
    for (let i = 0; i < items.length; i++) {
      const item = items[i] as SendItem;
      checked[i] = 'problem' in item ? item : await this.sendProblem(item.message, item.kind).then((problem) => (problem === undefined ? item : { problem }));
    }
    return this.enqueueSends(checked as SendItem[]);
  }

  /** Why a message cannot be sent as `kind`, judged on this node's state; undefined when it can. */
  private async sendProblem(message: MessageInput, kind: MessageKind): Promise<BrokerError | undefined> {
    if (message.body.byteLength > this.options.maxBodyBytes) {
      return new BrokerError('MESSAGE_BODY_TOO_LARGE', `message body of ${message.body.byteLength} bytes exceeds the limit of ${this.options.maxBodyBytes}`);
    }
    const timeProblem = this.deliveryTimeProblem(message);
    if (timeProblem !== undefined) return timeProblem;
    let topic = this.state.topic(message.topic);
    if (topic === undefined) {
      try {
        topic = await this.ensureTopic(message.topic);
      } catch (error) {
        if (error instanceof BrokerError) return error;
        throw error;
      }
    }
    if (!topicAccepts(topic.messageType, kind)) {
      return new BrokerError('MESSAGE_PROPERTY_CONFLICT_WITH_TYPE', `topic ${topic.name} accepts ${topic.messageType} messages, not ${kind}`);
    }
    if (message.queueId >= Math.min(topic.writeQueues, this.state.maxOffsets(topic.name).length)) {
      return new BrokerError('BAD_REQUEST', `topic ${topic.name} has ${topic.writeQueues} write queues; queue ${message.queueId} does not exist`);
    }
    if (kind === 'TRANSACTION' && ((message.deliveryTimeMs ?? 0) !== 0 || message.messageGroup !== '')) {
      return new BrokerError('MESSAGE_PROPERTY_CONFLICT_WITH_TYPE', 'a transactional message cannot have a delivery time or a message group');
    }
    return undefined;
  }

  /** Queues the checked messages for the next Raft entries; one completion for the request. */
  private enqueueSends(items: readonly SendItem[]): Promise<SendAnswer[]> {
    this.requireLeader();
    const answers: SendAnswer[] = new Array(items.length);
    let bytes = 0;
    for (const item of items) if (!('problem' in item)) bytes += item.message.body.byteLength + queuedSendOverheadBytes;
    if (this.backlogBytes > 0 && this.backlogBytes + bytes > this.options.sendBacklogBytesMax) {
      const busy = new BrokerError('TOO_MANY_REQUESTS', `broker group ${this.options.brokerGroup} has ${this.backlogBytes} bytes of sends waiting for its quorum (the limit is ${this.options.sendBacklogBytesMax}); nothing of this request was stored: send it again after a short pause`);
      return Promise.resolve(items.map((item) => ('problem' in item ? item.problem : busy)));
    }
    return new Promise((resolve) => {
      const request: SendRequest = { answers, remaining: 0, resolve };
      for (let i = 0; i < items.length; i++) {
        const item = items[i] as SendItem;
        if ('problem' in item) {
          answers[i] = item.problem;
          continue;
        }
        request.remaining++;
        this.queued.push({ message: item.message, half: item.kind === 'TRANSACTION', bytes: item.message.body.byteLength + queuedSendOverheadBytes, request, slot: i });
      }
      if (request.remaining === 0) {
        resolve(answers);
        return;
      }
      this.backlogBytes += bytes;
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        this.clock.soon(() => this.flushSends());
      }
    });
  }

  /** A delivery time must be a whole number of ms, at most the maximum delay ahead and at most the tolerance behind; FIFO messages take none. */
  private deliveryTimeProblem(message: MessageInput): BrokerError | undefined {
    const dueMs = message.deliveryTimeMs ?? 0;
    if (dueMs === 0) return undefined;
    if (message.messageGroup !== '') {
      return new BrokerError('MESSAGE_PROPERTY_CONFLICT_WITH_TYPE', 'a FIFO message (one with a message group) cannot have a delivery time: delayed messages are not ordered');
    }
    if (!Number.isSafeInteger(dueMs) || dueMs < 0) return new BrokerError('ILLEGAL_DELIVERY_TIME', `delivery time ${dueMs} is not a whole number of milliseconds since the epoch`);
    const now = this.clock.wallNowMs();
    const maxDelayMs = this.state.timerMaxDelayMs;
    if (dueMs > now + maxDelayMs) {
      return new BrokerError('ILLEGAL_DELIVERY_TIME', `delivery time ${dueMs} (ms since the epoch) is ${Math.round(dueMs - now)} ms ahead; the maximum delay is ${maxDelayMs} ms`);
    }
    if (dueMs < now - this.options.pastDeliveryToleranceMs) {
      return new BrokerError('ILLEGAL_DELIVERY_TIME', `delivery time ${dueMs} (ms since the epoch) is ${Math.round(now - dueMs)} ms in the past (at most ${this.options.pastDeliveryToleranceMs} ms is tolerated)`);
    }
    return undefined;
  }

  /** The topic, created (MIXED, default queues) when it does not exist and auto-creation is on (or it is a DLQ). */
  async ensureTopic(name: string): Promise<TopicConfig> {
    const existing = this.state.topic(name);
    if (existing !== undefined) return existing;
    if (!this.options.autoCreateTopics && !name.startsWith(dlqTopicPrefix)) throw new BrokerError('TOPIC_NOT_FOUND', `topic ${name} does not exist and auto-creation is off; create it with \`raftmq topic create ${name}\``);
    const problem = topicConfigProblem(defaultTopicConfig(name, 'MIXED'));
    if (problem !== undefined) throw new BrokerError('ILLEGAL_TOPIC', problem);
    let creating = this.topicCreations.get(name);
    if (creating === undefined) {
      // Create-only: a topic someone else created meanwhile keeps its configuration.
      creating = this.command({ op: 'topic.put', config: defaultTopicConfig(name, 'MIXED'), mode: 'create' }).then(() => undefined).finally(() => this.topicCreations.delete(name));
      this.topicCreations.set(name, creating);
    }
    await creating;
    return this.requireTopic(name);
  }

  private flushSends(): void {
    this.flushScheduled = false;
    while (this.queued.length > 0) {
      let bytes = 0;
      let count = 0;
      const half = (this.queued[0] as QueuedSend).half;
      while (count < this.queued.length && count < this.options.batchMessagesMax && (this.queued[count] as QueuedSend).half === half
        && (count === 0 || bytes + (this.queued[count] as QueuedSend).bytes <= this.options.batchBytesMax)) {
        bytes += (this.queued[count] as QueuedSend).bytes;
        count++;
      }
      const batch = this.queued.splice(0, count);
      this.proposeBatch(batch, bytes);
    }
  }

  private proposeBatch(batch: QueuedSend[], bytes: number): void {
    const payload = encodeMessages({ timeMs: this.clock.wallNowMs() }, batch.map((s) => s.message), (batch[0] as QueuedSend).half);
    this.raft.propose(payload).then(
      ({ result }) => {
        this.backlogBytes -= bytes;
        if (result.kind !== 'messages') {
          const failure = new BrokerError('INTERNAL_SERVER_ERROR', result.kind === 'malformed' ? result.message : 'unexpected apply result');
          for (const send of batch) answerSend(send, failure);
          return;
        }
        batch.forEach((send, i) => {
          const outcome = result.outcomes[i] as SendOutcome;
          if (outcome.code !== 'ok') {
            answerSend(send, sendFailure(outcome, send.message));
            return;
          }
          const recallHandle = outcome.delayed === undefined ? '' : formatRecallHandle({
            brokerGroup: this.options.brokerGroup, topic: send.message.topic, messageId: send.message.messageId, ...outcome.delayed,
          });
          const transactionId = outcome.half === undefined ? '' : formatTransactionId({ brokerGroup: this.options.brokerGroup, ...outcome.half });
          answerSend(send, { messageId: send.message.messageId, queueId: outcome.queueId, offset: outcome.offset, recallHandle, transactionId });
        });
      },
      (error: ProposalError) => {
        this.backlogBytes -= bytes;
        const failure = this.proposalFailure(error);
        for (const send of batch) answerSend(send, failure);
      },
    );
  }

  // ---- pop-style consumption (receive / ack / change invisibility) ---------------------------

  async receive(request: {
    group: string; topic: string; queueId: number; filter: SubscriptionFilter; batch: number; invisibleMs: number;
    autoRenew: boolean; clientId: string; pollMs: number;
  }): Promise<DeliveredMessage[]> {
    await this.requireGroup(request.group);
    const topic = this.requireTopic(request.topic);
    if ((topic.perm & permRead) === 0) throw new BrokerError('FORBIDDEN', `topic ${topic.name} is not readable`);
    const invisibleMs = request.autoRenew ? this.options.autoRenewInvisibleMs : request.invisibleMs;
    const pollUntil = this.clock.nowMs() + request.pollMs;
    for (;;) {
      await this.awaitReadReady();
      if (this.state.mayDeliver(request.group, request.topic, request.queueId, this.clock.wallNowMs())) {
        const outcome = await this.command({
          op: 'receive', group: request.group, topic: request.topic, queueId: request.queueId, tags: filterToJson(request.filter.tags),
          batch: request.batch, invisibleMs, autoRenew: request.autoRenew, clientId: request.clientId,
        });
        if (outcome.kind === 'received' && outcome.deliveries.length > 0) {
          const delivered = await this.readDeliveries(outcome.deliveries);
          const matched = request.filter.sql === undefined ? delivered : await this.settleUnmatched(request.group, request.filter, outcome.deliveries, delivered);
          if (matched.length > 0) return matched;
          continue; // every one was filtered out: look again (the next ones may match)
        }
      }
      const remaining = pollUntil - this.clock.nowMs();
      if (remaining <= 0 || this.closed) return [];
      const nextDeadline = this.state.nextDeadline(request.group, request.topic);
      const wait = Math.min(remaining, 1_000, nextDeadline === undefined ? Infinity : Math.max(nextDeadline - this.clock.wallNowMs() + 5, 5));
      await this.waitForChange(request.topic, wait);
    }
  }

  /**
   * A SQL subscription's deliveries that its expression rejects are acknowledged here, on the
   * leader, so they never reach the client: consumed by skipping, as a tag filter does.
   */
  private async settleUnmatched(group: string, filter: SubscriptionFilter, deliveries: readonly Delivery[], delivered: readonly DeliveredMessage[]): Promise<DeliveredMessage[]> {
    const matched: DeliveredMessage[] = [];
    const settles: Promise<CommandOutcome>[] = [];
    delivered.forEach((message, i) => {
      if (sqlMatches(filter, message.message)) {
        matched.push(message);
        return;
      }
      const { topic, queueId, offset, seq } = deliveries[i] as Delivery;
      settles.push(this.command({ op: 'ack', group, topic, queueId, offset, seq }));
    });
    await Promise.all(settles);
    return matched;
  }

  async ack(group: string, handle: ReceiptHandle): Promise<void> {
    await this.handleCommand({ op: 'ack', ...this.handleRef(group, handle) });
  }

  /** Returns the new receipt handle. */
  async changeInvisibleDuration(group: string, handle: ReceiptHandle, invisibleMs: number): Promise<string> {
    const outcome = await this.handleCommand({ op: 'invisible', invisibleMs, ...this.handleRef(group, handle) });
    const seq = outcome.kind === 'handle' ? outcome.seq : handle.seq;
    return formatReceiptHandle({ ...handle, seq });
  }

  async forwardToDeadLetterQueue(group: string, handle: ReceiptHandle): Promise<void> {
    await this.handleCommand({ op: 'dlq', ...this.handleRef(group, handle) });
  }

  /**
   * RecallMessage: the delayed message `handle` names is cancelled if it is still pending
   * (resolves with its message id); NOT_FOUND if it was delivered or recalled already.
   */
  async recall(topic: string, handle: RecallHandle): Promise<string> {
    if (handle.brokerGroup !== this.options.brokerGroup) {
      throw new BrokerError('INVALID_RECEIPT_HANDLE', `the recall handle belongs to broker group ${handle.brokerGroup}, not ${this.options.brokerGroup}`);
    }
    if (handle.topic !== topic) throw new BrokerError('INVALID_RECEIPT_HANDLE', `the recall handle is for topic ${handle.topic}, not ${topic}`);
    this.requireTopic(topic);
    await this.handleCommand({ op: 'timer.cancel', logIndex: handle.logIndex, position: handle.position, dueMs: handle.dueMs });
    return handle.messageId;
  }

  /**
   * EndTransaction: commits (the message becomes visible) or rolls back the transaction `id`
   * names, sent with `messageId`. Repeating the same end is answered OK; ending an unknown
   * transaction, or one that ended the other way, is INVALID_TRANSACTION_ID.
   */
  async endTransaction(topic: string, id: TransactionId, messageId: string, commit: boolean): Promise<void> {
    if (id.brokerGroup !== this.options.brokerGroup) {
      throw new BrokerError('INVALID_TRANSACTION_ID', `the transaction id belongs to broker group ${id.brokerGroup}, not ${this.options.brokerGroup}`);
    }
    this.requireTopic(topic);
    const outcome = await this.command({ op: 'txn.end', topic, logIndex: id.logIndex, position: id.position, messageId, commit });
    if (outcome.kind === 'error') throw new BrokerError(outcome.code === 'topic-not-found' ? 'TOPIC_NOT_FOUND' : outcome.code === 'bad-request' ? 'BAD_REQUEST' : 'INVALID_TRANSACTION_ID', outcome.message);
  }

  private handleRef(group: string, handle: ReceiptHandle): HandleRef {
    if (handle.brokerGroup !== this.options.brokerGroup) {
      throw new BrokerError('INVALID_RECEIPT_HANDLE', `the receipt handle belongs to broker group ${handle.brokerGroup}, not ${this.options.brokerGroup}`);
    }
    return { group, topic: handle.topic, queueId: handle.queueId, offset: handle.offset, seq: handle.seq };
  }

  private async handleCommand(command: BrokerCommand): Promise<CommandOutcome> {
    const outcome = await this.command(command);
    if (outcome.kind === 'error') {
      const code = ({
        'invalid-handle': 'INVALID_RECEIPT_HANDLE', 'topic-not-found': 'TOPIC_NOT_FOUND', 'not-pending': 'NOT_FOUND', 'bad-request': 'BAD_REQUEST', 'already-ended': 'INVALID_TRANSACTION_ID', 'topic-exists': 'BAD_REQUEST',
        'access-refused': 'BAD_REQUEST',
      } as const)[outcome.code];
      throw new BrokerError(code, outcome.message);
    }
    return outcome;
  }

  private async readDeliveries(deliveries: readonly Delivery[]): Promise<DeliveredMessage[]> {
    const out: DeliveredMessage[] = [];
    for (const delivery of deliveries) {
      const message = await this.messageAt(delivery.logIndex, delivery.position);
      out.push({
        message, transactionId: this.transactionIdOf(message, delivery.logIndex, delivery.position),
        topic: delivery.topic, queueId: delivery.queueId, offset: delivery.offset, attempt: delivery.attempt,
        storeTimeMs: delivery.storeTimeMs,
        receiptHandle: formatReceiptHandle({ brokerGroup: this.options.brokerGroup, topic: delivery.topic, queueId: delivery.queueId, offset: delivery.offset, seq: delivery.seq }),
        invisibleUntilMs: delivery.deadlineMs,
      });
    }
    return out;
  }

  // ---- queue-offset consumption (pull) -------------------------------------------------------

  /** Messages of one queue from `offset` (read-only; no log entry), long-polling when none. */
  async pull(request: { topic: string; queueId: number; offset: number; batch: number; filter: SubscriptionFilter; pollMs: number }): Promise<{ messages: PulledMessage[]; nextOffset: number }> {
    const topic = this.requireTopic(request.topic);
    if ((topic.perm & permRead) === 0) throw new BrokerError('FORBIDDEN', `topic ${topic.name} is not readable`);
    if (this.state.queue(request.topic, request.queueId) === undefined || request.queueId >= topic.readQueues) throw new BrokerError('BAD_REQUEST', `topic ${topic.name} has no readable queue ${request.queueId}`);
    if (!Number.isSafeInteger(request.offset) || request.offset < 0) throw new BrokerError('ILLEGAL_OFFSET', `offset ${request.offset} is not a non-negative integer`);
    const pollUntil = this.clock.nowMs() + request.pollMs;
    for (;;) {
      await this.awaitReadReady();
      // Looked up each round: a snapshot install replaces the state.
      const queue = this.state.queue(request.topic, request.queueId);
      if (queue === undefined) throw new BrokerError('TOPIC_NOT_FOUND', `topic ${topic.name} was deleted`);
      // Below the first offset retention kept, reading starts at the oldest message kept.
      const fromOffset = Math.max(Math.min(request.offset, queue.maxOffset), queue.minOffset);
      const { messages, nextOffset: offset } = await readQueueBatch(queue, { topic: request.topic, queueId: request.queueId, fromOffset, batch: request.batch, filter: request.filter }, {
        retainedFrom: this.state.retainedFrom, tagName: (tagId) => this.state.tagName(tagId), transactionIdOf: (message, logIndex, position) => this.transactionIdOf(message, logIndex, position),
      }, this.payloadCache);
      const remaining = pollUntil - this.clock.nowMs();
      if (messages.length > 0 || offset > request.offset || remaining <= 0 || this.closed) return { messages, nextOffset: offset };
      await this.waitForChange(request.topic, Math.min(remaining, 1_000));
    }
  }

  async updateOffset(group: string, topic: string, queueId: number, offset: number): Promise<void> {
    await this.requireGroup(group);
    this.requireTopic(topic);
    if (!Number.isSafeInteger(offset) || offset < 0) throw new BrokerError('ILLEGAL_OFFSET', `offset ${offset} is not a non-negative integer`);
    await this.handleCommand({ op: 'offset.update', group, topic, queueId, offset });
  }

  /**
   * A consumer starts (or resumes after a rebalance) from this offset: it must not be one a
   * deposed leader still holds (it would consume again what was already committed past), so
   * the read waits for a barrier entry, which only a leader with a quorum can commit.
   */
  async getOffset(group: string, topic: string, queueId: number): Promise<number | undefined> {
    this.requireTopic(topic);
    await this.readBarrier();
    return this.state.committedOffset(group, topic, queueId);
  }

  async queryOffset(topic: string, queueId: number, policy: 'BEGINNING' | 'END' | 'TIMESTAMP', timeMs: number): Promise<number> {
    this.requireTopic(topic);
    await this.readBarrier();
    const queue = this.state.queue(topic, queueId);
    if (queue === undefined) throw new BrokerError('BAD_REQUEST', `topic ${topic} has no queue ${queueId}`);
    if (policy === 'BEGINNING') return queue.minOffset;
    if (policy === 'END') return queue.maxOffset;
    return queue.offsetAtTime(timeMs);
  }

  /** Moves the group's offsets (pull and pop) on every queue of the topic to the first message at or after `timeMs`. */
  async resetOffset(group: string, topic: string, timeMs: number): Promise<void> {
    await this.requireGroup(group);
    this.requireTopic(topic);
    await this.handleCommand({ op: 'offset.reset', group, topic, timeMs });
  }

  // ---- internals -----------------------------------------------------------------------------

  private async command(command: BrokerCommand): Promise<CommandOutcome> {
    this.requireLeader();
    let result: ApplyResult;
    try {
      ({ result } = await this.raft.propose(encodeCommand({ timeMs: this.clock.wallNowMs() }, command)));
    } catch (error) {
      throw this.proposalFailure(error as ProposalError);
    }
    if (result.kind === 'malformed') throw new BrokerError('BAD_REQUEST', result.message);
    if (result.kind !== 'command') throw new BrokerError('INTERNAL_SERVER_ERROR', 'unexpected apply result');
    return result.outcome;
  }

  private requireLeader(): void {
    if (this.closed) throw new BrokerError('HA_NOT_AVAILABLE', 'broker is shutting down');
    if (this.raft.role !== 'leader') {
      const leader = this.raft.leaderAddress();
      throw new BrokerError('HA_NOT_AVAILABLE', `this node is not the leader of broker group ${this.options.brokerGroup}${leader === undefined ? '; an election is in progress' : `; the leader is ${leader}`}`, true, leader);
    }
  }

  /** Waits until a barrier entry proposed now is applied: whatever was committed before the call is then in the state. */
  private async readBarrier(): Promise<void> {
    await this.awaitReadReady();
    await this.handleCommand({ op: 'barrier' });
  }

  /**
   * A leader serves reads once it has applied an entry of its own term (its no-op). That is
   * not proof that it still leads (a paused leader may not know it was deposed): reads whose
   * staleness a client would act on go through readBarrier.
   */
  private async awaitReadReady(): Promise<void> {
    const until = this.clock.nowMs() + this.options.readReadyWaitMs;
    for (;;) {
      this.requireLeader();
      if (this.machine.lastAppliedTerm === this.raft.term) return;
      if (this.clock.nowMs() >= until) throw new BrokerError('HA_NOT_AVAILABLE', 'the new leader has not applied its first entry yet');
      await this.waitForChange('*', 20);
    }
  }

  /** Resolves when messages arrive on `topic` ('*': anything is applied), or after `ms`. */
  private waitForChange(topic: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        timer.dispose();
        this.changeWaiters.delete(done);
        resolve();
      };
      const timer = this.clock.after(ms, done);
      this.changeWaiters.set(done, topic);
    });
  }

  private proposalFailure(error: ProposalError): BrokerError {
    if (error instanceof BrokerError) return error;
    if (error.code === 'NOT_LEADER') return new BrokerError('HA_NOT_AVAILABLE', error.message, true, this.raft.leaderAddress());
    if (error.definite === true) return new BrokerError('HA_NOT_AVAILABLE', error.message, true);
    return new BrokerError('INTERNAL_SERVER_ERROR', error.message ?? String(error), false);
  }

  private transactionIdOf(message: StoredMessage, logIndex: number, position: number): string {
    return message.transactional === true ? formatTransactionId({ brokerGroup: this.options.brokerGroup, logIndex, position }) : '';
  }

  messageAt(logIndex: number, position: number): Promise<StoredMessage> {
    return this.payloadCache.messageAt(logIndex, position);
  }

  // ---- delayed messages: the leader's timer fires ---------------------------------------------

  /** On the leader: makes sure a fire is scheduled for the earliest pending delivery time (called after every applied batch). */
  private scheduleTimerFire(): void {
    if (this.closed || this.firing || this.raft.role !== 'leader') return;
    const dueMs = this.state.nextTimerDueMs();
    if (dueMs === undefined) return;
    // When the wall clock reaches the due time, and not sooner than the interval after the last fire (monotonic time).
    const now = this.clock.nowMs();
    const atMs = now + Math.max(0, dueMs - this.clock.wallNowMs(), this.lastFireMs + this.options.timerFireIntervalMs - now);
    if (this.fireTimer !== undefined && this.fireAtMs <= atMs) return;
    this.fireTimer?.dispose();
    this.fireAtMs = atMs;
    this.fireTimer = this.clock.after(atMs - now, () => {
      this.fireTimer = undefined;
      this.fireAtMs = Infinity;
      void this.fireTimers();
    });
  }

  private async fireTimers(): Promise<void> {
    if (this.closed || this.raft.role !== 'leader') return;
    if (this.machine.lastAppliedTerm !== this.raft.term) {
      // A new leader fires once its own first entry is applied (its state then has every timer).
      this.fireTimer = this.clock.after(20, () => { this.fireTimer = undefined; void this.fireTimers(); });
      return;
    }
    const nowMs = Math.floor(this.clock.wallNowMs());
    const dueMs = this.state.nextTimerDueMs();
    if (dueMs === undefined) return;
    if (dueMs > nowMs) {
      this.scheduleTimerFire();
      return;
    }
    this.firing = true;
    this.lastFireMs = this.clock.nowMs();
    try {
      await this.command({ op: 'timer.fire', throughMs: nowMs });
    } catch {
      // Not the leader any more, or the outcome is unknown: whoever leads fires again.
    } finally {
      this.firing = false;
      this.scheduleTimerFire();
    }
  }

  // ---- transactions: the leader's check-back rounds --------------------------------------------

  private async checkTransactions(): Promise<void> {
    if (this.closed || this.checking || this.raft.role !== 'leader' || this.machine.lastAppliedTerm !== this.raft.term) return;
    const policy = this.options.transactionCheck;
    const nowMs = Math.floor(this.clock.wallNowMs());
    if (!this.state.transactionCheckDue(nowMs, policy)) return;
    this.checking = true;
    try {
      await this.command({ op: 'txn.check', throughMs: nowMs, policy });
    } catch {
      // Not the leader any more, or the outcome is unknown: whoever leads checks again.
    } finally {
      this.checking = false;
    }
  }

  private async runLeaderServices(): Promise<void> {
    if (this.closed || this.raft.role !== 'leader' || this.machine.lastAppliedTerm !== this.raft.term) return;
    const now = this.clock.nowMs();
    for (const [id, record] of this.clients) if (now - record.lastSeenMs > 4 * this.options.clientExpiryMs) this.clients.delete(id);
    const due = this.state.renewalsDue(this.clock.wallNowMs() + this.options.autoRenewInvisibleMs / 3, (id) => this.isClientAlive(id));
    for (let i = 0; i < due.length; i += 1000) {
      await this.command({ op: 'renew', items: due.slice(i, i + 1000), invisibleMs: this.options.autoRenewInvisibleMs });
    }
    for (const clientId of this.state.autoRenewClients()) {
      if (!this.isClientAlive(clientId)) await this.command({ op: 'release', clientId });
    }
  }
}

function sendFailure(outcome: SendOutcome, message: MessageInput): BrokerError {
  switch (outcome.code) {
    case 'topic-not-found': return new BrokerError('TOPIC_NOT_FOUND', `topic ${message.topic} was deleted`);
    case 'not-writable': return new BrokerError('FORBIDDEN', `topic ${message.topic} is not writable`);
    case 'bad-queue': return new BrokerError('BAD_REQUEST', `topic ${message.topic} has no queue ${message.queueId}`);
    case 'illegal-delivery-time': return new BrokerError('ILLEGAL_DELIVERY_TIME', `delivery time ${message.deliveryTimeMs ?? 0} is more than the maximum delay after the entry that stores it`);
    case 'too-many-transactions': return new BrokerError('TOO_MANY_REQUESTS', `too many open transactions in this broker group; end some (commit or roll back) and send again`);
    case 'ok': return new BrokerError('INTERNAL_SERVER_ERROR', 'not a failure');
  }
}
