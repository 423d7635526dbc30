/**
 * The broker simulator's clients: producers that retry with the same message id after an
 * unknown outcome, pop consumers (receive / ack / nack / let the invisibility expire, so some
 * messages reach the DLQ), a FIFO producer and consumer, and a pull consumer that commits
 * queue offsets. Everything goes through the real `BrokerService` of whichever node the client
 * believes leads, and every answer is reported to the checker.
 *
 * With `delayed` (F8), `orders` is a MIXED topic and a third producer sends delayed messages
 * to it (due 0.2-2.5 s ahead, some already due), which the same consumers get once delivered,
 * and a recaller recalls some of them. Rules: no delayed message is stored (so seen) before
 * its delivery time; every acknowledged one not recalled is delivered (in the final queues,
 * or read before retention released it); one recalled (answered OK) is never delivered; once
 * the cluster is healed, one due after that is delivered within a bound of its due time.
 *
 * With `transactions` (F9), `orders` is a MIXED topic too, a transactional producer sends half
 * messages to it and commits, rolls back or abandons them, and a checker client plays the
 * producer's transaction checker: it hears every node's applied check-back rounds and answers
 * each check with the message's decision (or never). The rules are in
 * broker-sim-transactions.ts; the drain waits until the leader has no transaction open.
 */
import type { BrokerService } from '../broker/broker-service.js';
import type { TransactionCheckRound } from '../broker/broker-state-machine.js';
import { BrokerError } from '../broker/errors.js';
import { AccessControlTable, type AccessAction, type AccessCommand } from '../broker/core/access-control.js';
import type { BrokerState } from '../broker/core/broker-state.js';
import type { MessageInput } from '../broker/core/entry-codec.js';
import { matchEverything } from '../broker/core/subscription-filter.js';
import { dlqTopicOf, permReadWrite, type GroupConfig, type MessageKind, type TopicConfig } from '../broker/core/names.js';
import { parseRecallHandle } from '../broker/core/recall-handle.js';
import { parseReceiptHandle } from '../broker/core/receipt-handle.js';
import { parseTransactionId } from '../broker/core/transaction-id.js';
import { defaultTransactionCheckPolicy, type TransactionCheckPolicy } from '../broker/core/transactions.js';
import type { BrokerChecker, WatchedGroup } from './broker-sim-checker.js';
import { TransactionBook, type TransactionPlan, type TransactionRecord, type TransactionStats } from './broker-sim-transactions.js';
import type { Prng } from './prng.js';

/** A live broker node as a client reaches it. */
export interface BrokerEndpoint {
  readonly id: string;
  readonly service: BrokerService;
  readonly state: BrokerState;
  readonly commitIndex: number;
  /** False once the node crashed (its answers may still arrive, but its state is gone). */
  isCurrent(): boolean;
}

/** What the workload needs of the simulator. */
export interface WorkloadHost {
  /** Live, reachable nodes with a running service. */
  endpoints(): BrokerEndpoint[];
  sleep(ms: number): Promise<void>;
  after(ms: number, callback: () => void): { cancel(): void };
  trace(line: string): void;
  /** The true wall clock (the nodes' clocks are off from it by their skew): what a client sets delivery times by. */
  wallNowMs(): number;
}

export interface WorkloadOptions {
  /** Delayed messages (F8) on `orders`, which is then a MIXED topic. */
  readonly delayed: boolean;
  /** A delayed message due this long after the heal must be delivered within it (its store time − due time). */
  readonly latenessBoundMs: number;
  /** Transactional messages (F9) on `orders` (then a MIXED topic), and a checker client answering check-backs. */
  readonly transactions?: boolean;
  /** The nodes' check-back policy (what the rules hold the check rounds to). */
  readonly transactionCheck?: TransactionCheckPolicy;
  /**
   * Users and policies (issue 12): an operator client changes them during the faults, one
   * command at a time, each retried until it is answered definitely; the final table must be
   * what applying each command once, in that order, gives.
   */
  readonly accessControl?: boolean;
  /** Negative control of that rule: the model forgets every third command (the check must fail). */
  readonly unsafeAccessModelSkipsCommands?: boolean;
}

export type WorkloadPhase = 'faults' | 'drain' | 'done';

export const topics = {
  orders: { name: 'orders', readQueues: 2, writeQueues: 2, perm: permReadWrite, messageType: 'NORMAL' },
  fifo: { name: 'fifo', readQueues: 2, writeQueues: 2, perm: permReadWrite, messageType: 'FIFO' },
} as const satisfies Record<string, TopicConfig>;

export const groups = {
  pop: { name: 'g-pop', maxDeliveryAttempts: 3, fifo: false },
  fifo: { name: 'g-fifo', maxDeliveryAttempts: 4, fifo: true },
  pull: { name: 'g-pull', maxDeliveryAttempts: 17, fifo: false },
} as const satisfies Record<string, GroupConfig>;

export const watchedGroups: readonly WatchedGroup[] = [
  { group: groups.pop.name, topic: topics.orders.name, queues: 2, fifo: false, maxDeliveryAttempts: groups.pop.maxDeliveryAttempts, style: 'pop' },
  { group: groups.fifo.name, topic: topics.fifo.name, queues: 2, fifo: true, maxDeliveryAttempts: groups.fifo.maxDeliveryAttempts, style: 'pop' },
  { group: groups.pull.name, topic: topics.orders.name, queues: 2, fifo: false, maxDeliveryAttempts: groups.pull.maxDeliveryAttempts, style: 'pull' },
];
const [popWatch, fifoWatch, pullWatch] = watchedGroups as [WatchedGroup, WatchedGroup, WatchedGroup];

interface SentMessage {
  readonly input: MessageInput;
  readonly kind: MessageKind;
  /** Position of the first acknowledgement; every later one must name the same (offset -1: a pending delayed message). */
  acked: { queueId: number; offset: number } | undefined;
  unknownAttempts: number;
  definiteAttempts: number;
  /** Given up after a definite failure (fault phase only). */
  abandoned: boolean;
  /** A delayed message acknowledged while pending: its recall handle (the same on every acknowledgement). */
  recallHandle: string;
  /** Recall answers: OK (it will never be delivered), outcome unknown, NOT_FOUND (it was not pending then). */
  recall: { ok: number; unknown: number; notFound: number };
  /** A transactional message: its decision, what its producer does, and its transactions. */
  readonly txn?: TransactionPlan;
}

type Outcome<T> =
  | { readonly ok: true; readonly value: T; readonly via: BrokerEndpoint }
  | { readonly ok: false; readonly definite: boolean; readonly code: string };

export interface WorkloadStats {
  delayedAcked: number;
  /** Acknowledged delayed messages not stored at the end because a recall of them succeeded (or may have). */
  delayedRecalled: number;
  recalls: number;
  recalledOk: number;
  delayedDelivered: number;
  /** Greatest (store time − due time) of a delayed message due after the heal. */
  latenessMaxMs: number;
  sendCalls: number;
  sendsAcked: number;
  sendsUnknown: number;
  sendsDefinite: number;
  deliveries: number;
  acks: number;
  nacks: number;
  pulled: number;
  offsetCommits: number;
  transactions: TransactionStats;
  /** User and policy commands the operator client issued (each took effect once). */
  accessCommands: number;
}

const utf8 = new TextEncoder();
const callTimeoutMs = 3_000;

export class BrokerWorkload {
  phase: WorkloadPhase = 'faults';
  readonly stats: WorkloadStats;
  readonly sent = new Map<string, SentMessage>();
  /** Message ids each pop group was handed. */
  private readonly delivered = new Map<string, Set<string>>();
  /** Message ids the pull consumer read. */
  private readonly pulledIds = new Set<string>();
  /**
   * The lowest offset each watched group was ever handed on each queue ("group/topic/queueId"):
   * what was released below it went before the group read that queue at all.
   */
  private readonly firstReadOffsets = new Map<string, number>();
  /** Messages with a send call in flight (not sent again until it ends). */
  private readonly sending = new Set<SentMessage>();
  /** Message id → the store time of its first read (delayed messages only). */
  private readonly firstStoreTime = new Map<string, number>();
  /** When the drain (heal) began, on the true wall clock. */
  healWallMs = Infinity;
  private readonly orders: TopicConfig;
  private leaderGuess: string | undefined;
  /** Client sequence: orders every client event (an answer that arrives before a request was sent is ordered before it). */
  private sequence = 0;
  private nextOrder = 0;
  private readonly running: Promise<void>[] = [];
  private readonly book: TransactionBook;
  /** The users and policies the acknowledged access commands make (see accessOperator). */
  private accessModel = new AccessControlTable();
  /** Transactional producer tasks still running (the drain waits for them). */
  private transactionTasks = 0;
  /** Set by verify(). */
  storedMessages = 0;
  deadLettered = 0;
  /** Acknowledged messages retention released (with proof) before the final reads. */
  releasedMessages = 0;
  /** Released messages the watched groups never consumed, as the state counts them (groupProgress.expired). */
  expiredMessages = 0;

  constructor(
    private readonly host: WorkloadHost, private readonly checker: BrokerChecker, private readonly random: Prng,
    private readonly options: WorkloadOptions = { delayed: false, latenessBoundMs: Infinity },
  ) {
    this.orders = options.delayed || options.transactions === true ? { ...topics.orders, messageType: 'MIXED' } : topics.orders;
    this.book = new TransactionBook((id) => this.sent.get(id)?.txn, options.transactionCheck ?? defaultTransactionCheckPolicy, (message) => this.checker.violate(message));
    this.stats = {
      delayedAcked: 0, delayedRecalled: 0, recalls: 0, recalledOk: 0, delayedDelivered: 0, latenessMaxMs: 0, sendCalls: 0, sendsAcked: 0, sendsUnknown: 0, sendsDefinite: 0,
      deliveries: 0, acks: 0, nacks: 0, pulled: 0, offsetCommits: 0, transactions: this.book.stats, accessCommands: 0,
    };
  }

  /** A method, so that a loop re-reads the phase after its awaits. */
  private isDone(): boolean {
    return this.phase === 'done';
  }

  private tick(): number {
    return ++this.sequence;
  }

  /** Creates the topics and groups (retrying until a leader takes them); resolves when done. */
  async setUp(): Promise<void> {
    for (const config of [this.orders, topics.fifo]) await this.until(`create topic ${config.name}`, (e) => e.service.putTopic(config));
    for (const config of Object.values(groups)) await this.until(`create group ${config.name}`, (e) => e.service.putGroup(config));
  }

  start(): void {
    const clients: [string, Promise<void>][] = [
      ['orders producer', this.ordersProducer()], [`${popWatch.group} consumer`, this.popConsumer(popWatch)],
      [`${fifoWatch.group} consumer`, this.popConsumer(fifoWatch)], ['pull consumer', this.pullConsumer()],
    ];
    for (let g = 0; g < 3; g++) clients.push([`fifo producer k${g}`, this.fifoProducer(`k${g}`)]);
    if (this.options.delayed) clients.push(['delayed producer', this.delayedProducer()], ['recaller', this.recaller()]);
    if (this.options.transactions === true) clients.push(['transactional producer', this.transactionalProducer()]);
    if (this.options.accessControl === true) clients.push(['access operator', this.accessOperator()]);
    // A client that throws is a bug of the simulator (or a broker answer it cannot handle): say so.
    for (const [name, running] of clients) this.running.push(running.catch((error: unknown) => this.checker.violate(`${name} stopped: ${(error as Error).stack ?? String(error)}`)));
  }

  /** True once every wanted message is acknowledged, consumed by every group and every node's view agrees. */
  drained(leader: BrokerEndpoint | undefined): boolean {
    if (leader === undefined) return false;
    for (const message of this.sent.values()) if (message.acked === undefined && !message.abandoned) return false;
    const state = leader.state;
    if (state.pendingTimers > 0 || state.openTransactions > 0 || this.transactionTasks > 0) return false;
    for (const watch of [popWatch, fifoWatch]) {
      const rows = state.groupProgress(watch.group);
      for (let queueId = 0; queueId < watch.queues; queueId++) {
        const max = state.queue(watch.topic, queueId)?.maxOffset ?? 0;
        const row = rows.find((r) => r.topic === watch.topic && r.queueId === queueId);
        if (max > 0 && (row === undefined || row.offset < max || row.inFlight > 0)) return false;
      }
    }
    for (let queueId = 0; queueId < pullWatch.queues; queueId++) {
      const max = state.queue(pullWatch.topic, queueId)?.maxOffset ?? 0;
      if (max > 0 && (state.committedOffset(pullWatch.group, pullWatch.topic, queueId) ?? 0) < max) return false;
    }
    return true;
  }

  // ---- routing -----------------------------------------------------------------------------

  /** Calls the node the client believes leads (else any live one); a client deadline makes the outcome unknown. */
  private call<T>(what: (endpoint: BrokerEndpoint) => Promise<T>, late?: (value: T, via: BrokerEndpoint) => void): Promise<Outcome<T>> {
    const live = this.host.endpoints();
    if (live.length === 0) return this.host.sleep(20).then(() => ({ ok: false, definite: true, code: 'NO_NODE' }));
    const endpoint = live.find((e) => e.id === this.leaderGuess) ?? live[this.random.int(0, live.length - 1)] as BrokerEndpoint;
    return new Promise((resolve) => {
      let settled = false;
      const timer = this.host.after(callTimeoutMs, () => {
        settled = true;
        resolve({ ok: false, definite: false, code: 'CLIENT_TIMEOUT' });
      });
      what(endpoint).then(
        (value) => {
          this.leaderGuess = endpoint.id;
          if (settled) {
            late?.(value, endpoint);
            return;
          }
          settled = true;
          timer.cancel();
          resolve({ ok: true, value, via: endpoint });
        },
        (error: unknown) => {
          if (settled) return;
          settled = true;
          timer.cancel();
          if (error instanceof BrokerError) {
            if (error.code === 'HA_NOT_AVAILABLE') this.leaderGuess = error.leaderAddress;
            resolve({ ok: false, definite: error.definite, code: error.code });
          } else {
            this.leaderGuess = undefined;
            resolve({ ok: false, definite: false, code: (error as Error).name ?? 'Error' });
          }
        },
      );
    });
  }

  /** Retries until the call succeeds, or fails definitely with `giveUpOn` (then undefined). */
  private async until<T>(what: string, operation: (endpoint: BrokerEndpoint) => Promise<T>, giveUpOn?: string): Promise<T | undefined> {
    for (;;) {
      const outcome = await this.call(operation);
      if (outcome.ok) return outcome.value;
      if (outcome.definite && outcome.code === giveUpOn) return undefined;
      this.host.trace(`${what}: ${outcome.code}`);
      await this.host.sleep(50);
    }
  }

  private pause(faultsMs: readonly [number, number], drainMs = 20): Promise<void> {
    return this.host.sleep(this.phase === 'faults' ? this.random.int(faultsMs[0], faultsMs[1]) : drainMs);
  }

  // ---- producers -------------------------------------------------------------------------

  private newMessage(topic: string, kind: MessageKind, messageGroup: string, deliveryTimeMs = 0): SentMessage {
    const id = `${topic}-${++this.nextOrder}`;
    const body = utf8.encode(`${id}|${'x'.repeat(this.random.int(0, 200))}`);
    const input: MessageInput = { topic, messageId: id, tag: '', keys: [], messageGroup, queueId: -1, bornTimestamp: 0, bornHost: 'sim', properties: {}, body };
    const message: SentMessage = {
      input: kind === 'DELAY' ? { ...input, deliveryTimeMs } : input,
      kind, acked: undefined, unknownAttempts: 0, definiteAttempts: 0, abandoned: false, recallHandle: '', recall: { ok: 0, unknown: 0, notFound: 0 },
    };
    this.sent.set(id, message);
    return message;
  }

  /** One send call for `batch`; records each message's outcome. */
  private async sendBatch(batch: readonly SentMessage[]): Promise<void> {
    this.stats.sendCalls++;
    const kind = (batch[0] as SentMessage).kind;
    const record = (results: readonly { queueId: number; offset: number; messageId: string; recallHandle: string }[]): void => {
      results.forEach((result, i) => {
        const message = batch[i] as SentMessage;
        if (result.messageId !== message.input.messageId) this.checker.violate(`send of ${message.input.messageId} answered for ${result.messageId}`);
        if (message.acked === undefined) {
          message.acked = { queueId: result.queueId, offset: result.offset };
          message.recallHandle = result.recallHandle;
          this.stats.sendsAcked++;
          if (message.kind === 'DELAY') this.stats.delayedAcked++;
        } else if (message.acked.queueId !== result.queueId || message.acked.offset !== result.offset || message.recallHandle !== result.recallHandle) {
          this.checker.violate(`${message.input.messageId} acknowledged twice at different places: ${message.acked.queueId}/${message.acked.offset} ${message.recallHandle} and ${result.queueId}/${result.offset} ${result.recallHandle} (stored twice)`);
        }
        if (message.kind !== 'DELAY' && result.recallHandle !== '') this.checker.violate(`${message.input.messageId}, not delayed, was answered with a recall handle`);
        if (message.kind === 'DELAY' && (result.offset === -1) !== (result.recallHandle !== '')) this.checker.violate(`delayed ${message.input.messageId} answered at offset ${result.offset} with recall handle ${JSON.stringify(result.recallHandle)}`);
      });
    };
    for (const message of batch) this.sending.add(message);
    const outcome = await this.call((e) => e.service.send(batch.map((m) => m.input), kind), (late) => record(late));
    for (const message of batch) this.sending.delete(message);
    this.tick();
    if (outcome.ok) {
      record(outcome.value);
      return;
    }
    for (const message of batch) {
      if (outcome.definite) message.definiteAttempts++;
      else message.unknownAttempts++;
      // After only definite failures a client may give up on a normal message (while faults run).
      if (this.phase === 'faults' && message.kind === 'NORMAL' && message.unknownAttempts === 0 && this.random.chance(0.3)) message.abandoned = true;
    }
    if (outcome.definite) this.stats.sendsDefinite++;
    else this.stats.sendsUnknown++;
    this.host.trace(`send ${batch.map((m) => m.input.messageId).join(',')} ${outcome.definite ? 'failed' : 'unknown'} ${outcome.code}`);
  }

  private async ordersProducer(): Promise<void> {
    const inFlight = new Set<Promise<void>>();
    const unacknowledged = (): SentMessage[] => [...this.sent.values()].filter((m) => m.input.topic === topics.orders.name && m.kind === 'NORMAL' && m.acked === undefined && !m.abandoned);
    while (this.phase !== 'done') {
      const wanted = unacknowledged();
      if (inFlight.size < 3) {
        const retry = wanted.filter((m) => !this.sending.has(m)).slice(0, this.random.int(1, 3));
        const batch = retry.length > 0 && (this.phase === 'drain' || this.random.chance(0.5)) ? retry
          : this.phase === 'faults' ? Array.from({ length: this.random.int(1, 3) }, () => this.newMessage(topics.orders.name, 'NORMAL', '')) : [];
        if (batch.length > 0) {
          const sending = this.sendBatch(batch).finally(() => inFlight.delete(sending));
          inFlight.add(sending);
        }
      }
      await this.pause([5, 60], 30);
      // Looked at again: messages created just before the drain began (their send failed meanwhile) are wanted too.
      if (this.phase === 'drain' && inFlight.size === 0 && unacknowledged().length === 0) break;
    }
    await Promise.all(inFlight);
  }

  /** One message group, strictly in order: the next message only once the previous is acknowledged. */
  private async fifoProducer(messageGroup: string): Promise<void> {
    while (this.phase === 'faults') {
      const message = this.newMessage(topics.fifo.name, 'FIFO', messageGroup);
      while (message.acked === undefined && !this.isDone()) {
        await this.sendBatch([message]);
        if (message.acked === undefined) await this.pause([10, 100], 30);
      }
      await this.pause([20, 150]);
    }
  }

  /**
   * Delayed messages to `orders`, due 0.2-2.5 s ahead (some already due), one or two a call,
   * each sent until acknowledged; in bursts of 1-3 s with pauses as long, so that retention
   * (which a pending delayed message holds back) also gets to compact the logs.
   */
  private async delayedProducer(): Promise<void> {
    const inFlight = new Set<Promise<void>>();
    const unacknowledged = (): SentMessage[] => [...this.sent.values()].filter((m) => m.kind === 'DELAY' && m.acked === undefined && !m.abandoned);
    let burstUntil = 0;
    let quietUntil = 0;
    while (this.phase !== 'done') {
      const now = this.host.wallNowMs();
      if (now >= quietUntil && now >= burstUntil) {
        burstUntil = now + this.random.int(1_000, 3_000);
        quietUntil = burstUntil + this.random.int(1_000, 3_000);
      }
      const quiet = now >= burstUntil;
      if (inFlight.size < 2) {
        const retry = unacknowledged().filter((m) => !this.sending.has(m)).slice(0, this.random.int(1, 2));
        const fresh = (): SentMessage => this.newMessage(topics.orders.name, 'DELAY', '', Math.round(this.host.wallNowMs()) + (this.random.chance(0.1) ? -300 : this.random.int(200, 2_500)));
        const batch = retry.length > 0 && (this.phase === 'drain' || quiet || this.random.chance(0.5)) ? retry
          : this.phase === 'faults' && !quiet ? Array.from({ length: this.random.int(1, 2) }, fresh) : [];
        if (batch.length > 0) {
          const sending = this.sendBatch(batch).finally(() => inFlight.delete(sending));
          inFlight.add(sending);
        }
      }
      await this.pause([40, 200], 30);
      if (this.phase === 'drain' && inFlight.size === 0 && unacknowledged().length === 0) break;
    }
    await Promise.all(inFlight);
  }

  /** Now and then recalls a delayed message acknowledged as pending (before or after it is due); a NOT_FOUND may be retried too. */
  private async recaller(): Promise<void> {
    while (this.phase === 'faults') {
      await this.pause([100, 400]);
      const candidates = [...this.sent.values()].filter((m) => m.recallHandle !== '' && m.recall.ok === 0 && (m.recall.unknown + m.recall.notFound === 0 || this.random.chance(0.2)));
      if (candidates.length === 0 || !this.random.chance(0.5)) continue;
      const message = this.random.pick(candidates) as SentMessage;
      const handle = parseRecallHandle(message.recallHandle);
      if (handle === undefined) {
        this.checker.violate(`send of ${message.input.messageId} returned an unreadable recall handle ${message.recallHandle}`);
        return;
      }
      this.stats.recalls++;
      const outcome = await this.call((e) => e.service.recall(handle.topic, handle), () => { message.recall.ok++; });
      this.tick();
      if (outcome.ok) {
        if (outcome.value !== message.input.messageId) this.checker.violate(`recall of ${message.input.messageId} answered for ${outcome.value}`);
        message.recall.ok++;
        this.stats.recalledOk++;
        if (this.firstStoreTime.has(message.input.messageId)) this.checker.violate(`recall of ${message.input.messageId} answered OK after it was delivered`);
      } else if (outcome.definite && outcome.code === 'NOT_FOUND') {
        message.recall.notFound++;
      } else if (!outcome.definite) {
        message.recall.unknown++;
      }
      this.host.trace(`recall ${message.input.messageId}: ${outcome.ok ? 'ok' : outcome.code}`);
    }
  }

  // ---- users and policies (issue 12) --------------------------------------------------------

  /**
   * Random user and policy commands while the faults run. Sequential and retried until a
   * definite answer, so each takes effect exactly once and in issue order: an attempt whose
   * outcome was unknown either committed before the retry or never will (a later leader holds
   * it only if it was in the log before its own entries), and a retry of a command that took
   * effect changes nothing (a second create, delete or revoke is refused, a second grant adds
   * nothing). The model applies each command once.
   */
  private async accessOperator(): Promise<void> {
    const users = ['u0', 'u1', 'u2'];
    const resources = ['Topic:orders', 'Topic:*', 'Topic:ord*', 'Group:g-pop', 'Cluster', '*'];
    const actionSets: AccessAction[][] = [['Pub'], ['Sub'], ['Pub', 'Sub'], ['Admin'], ['All']];
    let effective = 0;
    while (this.phase === 'faults') {
      await this.pause([50, 300]);
      const user = this.random.pick(users) as string;
      // Mostly commands that take effect: a user that does not exist is usually created first.
      const roll = this.accessModel.user(user) === undefined && this.random.chance(0.7) ? 0 : this.random.int(1, 9);
      const sealed = Buffer.from(`sealed-${this.random.int(0, 1_000_000)}-${'x'.repeat(32)}`).toString('base64');
      const command: AccessCommand = roll === 0 ? { type: 'user.create', name: user, secretSealed: sealed, kind: this.random.chance(0.2) ? 'super' : 'normal' }
        : roll === 1 ? { type: 'user.delete', name: user }
          : roll === 2 ? { type: 'user.update', name: user, secretSealed: sealed }
            : roll <= 6 ? { type: 'acl.grant', user, resource: this.random.pick(resources) as string, decision: this.random.chance(0.25) ? 'Deny' : 'Allow', actions: this.random.pick(actionSets) as AccessAction[] }
              : { type: 'acl.revoke', user, resource: this.random.pick(resources) as string, decision: this.random.chance(0.25) ? 'Deny' : 'Allow', ...(this.random.chance(0.5) ? {} : { actions: this.random.pick(actionSets) as AccessAction[] }) };
      const previous = this.accessModel.encode();
      for (;;) {
        const outcome = await this.call((e) => e.service.applyAccessCommand(command));
        if (outcome.ok || (outcome.definite && outcome.code === 'BAD_REQUEST')) break;
        await this.host.sleep(30);
      }
      this.stats.accessCommands++;
      if (this.options.unsafeAccessModelSkipsCommands === true && this.accessModel.apply(command).ok) {
        // The negative control: forget every third command that took effect.
        if (++effective % 3 === 0) this.accessModel = AccessControlTable.decode(previous);
      } else {
        this.accessModel.apply(command);
      }
    }
  }

  private async verifyAccess(): Promise<void> {
    const table = await this.until('access table', (e) => e.service.accessTable());
    if (table === undefined) return;
    const got = table.encode();
    if (!got.equals(this.accessModel.encode())) {
      this.checker.violate(`the access-control table after ${this.stats.accessCommands} commands is not what applying each once in order gives: users ${JSON.stringify(table.listUsers())}, policies ${JSON.stringify(table.listPolicies())}; expected users ${JSON.stringify(this.accessModel.listUsers())}, policies ${JSON.stringify(this.accessModel.listPolicies())}`);
    }
  }

  // ---- transactions (F9) ------------------------------------------------------------------

  /**
   * Transactions of one or two half messages a send call, up to three such calls' transactions
   * running at once while faults run; in the drain it finishes those it runs (their sends are
   * not retried then, their ends are, until answered).
   */
  private async transactionalProducer(): Promise<void> {
    const running = new Set<Promise<void>>();
    while (this.phase === 'faults') {
      if (running.size < 3) {
        this.transactionTasks++;
        const task = this.transactionalBatch().finally(() => {
          this.transactionTasks--;
          running.delete(task);
        });
        running.add(task);
      }
      await this.pause([50, 300]);
    }
    await Promise.all(running);
  }

  private newTransactional(): SentMessage {
    const decision = this.random.pick(['commit', 'commit', 'rollback', 'never'] as const);
    const producerEnd = decision === 'never' ? 'abandon' : this.random.pick(['decision', 'decision', 'decision', 'decision', 'decision', 'opposite', 'abandon', 'abandon'] as const);
    const txn: TransactionPlan = { decision, producerEnd, contradict: this.random.chance(0.2), resend: this.random.chance(0.15), transactions: [], commitSentAt: undefined, read: false };
    const id = `${topics.orders.name}-${++this.nextOrder}`;
    const body = utf8.encode(`${id}|${'x'.repeat(this.random.int(0, 200))}`);
    const input: MessageInput = { topic: topics.orders.name, messageId: id, tag: '', keys: [], messageGroup: '', queueId: -1, bornTimestamp: 0, bornHost: 'sim', properties: {}, body };
    const message: SentMessage = { input, kind: 'TRANSACTION', acked: undefined, unknownAttempts: 0, definiteAttempts: 0, abandoned: false, recallHandle: '', recall: { ok: 0, unknown: 0, notFound: 0 }, txn };
    this.sent.set(id, message);
    this.book.stats.transactional++;
    return message;
  }

  private async transactionalBatch(): Promise<void> {
    const batch = Array.from({ length: this.random.int(1, 2) }, () => this.newTransactional());
    for (let attempt = 0; ; attempt++) {
      const unacked = batch.filter((m) => m.acked === undefined);
      if (unacked.length === 0) break;
      await this.sendHalves(unacked);
      if (batch.every((m) => m.acked !== undefined) || this.phase !== 'faults' || attempt >= 3) break;
      await this.pause([20, 150]);
    }
    // A half message whose send never answered may still be stored: its check-back is answered.
    for (const message of batch) if (message.acked === undefined) message.abandoned = true;
    // A producer that lost the answer sends again: a second transaction of the message, which it ends, the first left to the check-back.
    const resend = batch.filter((m) => m.acked !== undefined && m.txn?.resend === true);
    if (resend.length > 0 && this.phase === 'faults') await this.sendHalves(resend);
    await Promise.all(batch.filter((m) => m.acked !== undefined).map((m) => this.endOwnTransaction(m)));
  }

  /** One send call of half messages; every answer names a new transaction (a late one too). */
  private async sendHalves(batch: readonly SentMessage[]): Promise<void> {
    this.stats.sendCalls++;
    const record = (results: readonly { messageId: string; queueId: number; offset: number; recallHandle: string; transactionId: string }[]): void => {
      results.forEach((result, i) => {
        const message = batch[i] as SentMessage;
        const id = parseTransactionId(result.transactionId);
        if (result.messageId !== message.input.messageId || id === undefined || result.offset !== -1 || result.recallHandle !== '') {
          this.checker.violate(`transactional send of ${message.input.messageId} answered ${JSON.stringify(result)}`);
          return;
        }
        if (message.acked === undefined) {
          message.acked = { queueId: result.queueId, offset: -1 };
          this.stats.sendsAcked++;
        }
        const transaction = this.book.onHalfAcked(message.input.messageId, id, result.queueId);
        if (transaction !== undefined) this.host.trace(`half ${message.input.messageId} = transaction ${transaction.key} (${message.txn?.decision}/${message.txn?.producerEnd})`);
      });
    };
    const outcome = await this.call((e) => e.service.send(batch.map((m) => m.input), 'TRANSACTION'), (late) => record(late));
    this.tick();
    if (outcome.ok) {
      record(outcome.value);
      return;
    }
    for (const message of batch) {
      if (outcome.definite) message.definiteAttempts++;
      else message.unknownAttempts++;
    }
    if (outcome.definite) this.stats.sendsDefinite++;
    else this.stats.sendsUnknown++;
    this.host.trace(`half ${batch.map((m) => m.input.messageId).join(',')} ${outcome.definite ? 'failed' : 'unknown'} ${outcome.code}`);
  }

  /** The producer ends the transaction its (last) send answered: retried until answered, or left to the check-back. */
  private async endOwnTransaction(message: SentMessage): Promise<void> {
    const plan = message.txn as TransactionPlan;
    const transaction = plan.transactions.filter((t) => t.id !== undefined).pop();
    if (transaction === undefined || plan.producerEnd === 'abandon') return;
    await this.pause([0, 500], 0); // the local transaction
    const commit = (plan.decision === 'commit') === (plan.producerEnd === 'decision');
    let status: 'ok' | 'unknown' | 'definite' = 'unknown';
    for (let tries = 1; !this.isDone(); tries++) {
      status = await this.endTransaction(transaction, commit, 'producer');
      if (status !== 'unknown' || (this.phase === 'faults' && tries >= 3 && this.random.chance(0.5))) break;
      await this.pause([20, 200], 50);
    }
    if (status !== 'ok' || !plan.contradict || this.isDone()) return;
    // A producer that changes its mind: the other end must not be answered OK.
    const other = await this.endTransaction(transaction, !commit, 'producer');
    if (other === 'definite') this.book.stats.contradictionsRefused++;
  }

  /** One EndTransaction call (through whichever node the client believes leads), recorded in the book. */
  private async endTransaction(transaction: TransactionRecord, commit: boolean, by: 'producer' | 'checker'): Promise<'ok' | 'unknown' | 'definite'> {
    const attempt = this.book.endStarted(transaction, commit, by, this.tick());
    const { logIndex, position, messageId } = transaction;
    const outcome = await this.call(
      (e) => e.service.endTransaction(topics.orders.name, transaction.id ?? { brokerGroup: e.service.options.brokerGroup, logIndex, position }, messageId, commit),
      () => this.book.endOk(transaction, attempt),
    );
    this.tick();
    if (outcome.ok) this.book.endOk(transaction, attempt);
    else this.book.endFailed(attempt, outcome.definite, outcome.code);
    this.host.trace(`end ${transaction.key} ${messageId} ${commit ? 'COMMIT' : 'ROLLBACK'} (${by}): ${outcome.ok ? 'ok' : outcome.code}`);
    return outcome.ok ? 'ok' : outcome.definite ? 'definite' : 'unknown';
  }

  /**
   * A check-back round that node `node` applied (every node tells of each round it applies,
   * replays at start-up too): the book records it; when `reachable` (the node could reach
   * the producer), the producer's transaction checker answers each check once, with the
   * application's decision, a little later.
   */
  onTransactionChecks(node: string, round: TransactionCheckRound, entryTimeMs: number, reachable: boolean): void {
    if (this.options.transactions !== true) return;
    const ask = this.book.onCheckRound(node, round, entryTimeMs);
    if (!reachable || this.phase === 'done') {
      // Not asked here: another node (or the next check) asks.
      for (const { record, check } of ask) record.asked.delete(check.checks);
      return;
    }
    for (const { record } of ask) {
      const decision = this.sent.get(record.messageId)?.txn?.decision;
      if (decision === undefined || decision === 'never') continue;
      this.book.stats.checksAnswered++;
      this.host.after(this.random.int(0, 100), () => {
        if (this.isDone()) return;
        this.endTransaction(record, decision === 'commit', 'checker').catch((error: unknown) => this.checker.violate(`transaction checker stopped: ${(error as Error).stack ?? String(error)}`));
      });
    }
  }

  /** A read of a transactional message: never before a COMMIT of it was sent (the rest is checked at the end). */
  private checkTransactional(how: string, messageId: string): void {
    const plan = this.sent.get(messageId)?.txn;
    if (plan !== undefined) this.book.onRead(how, plan, messageId);
  }

  /** A read of a message (any consumer, the final reads): a delayed one is never stored before its delivery time, nor at all once recalled. */
  private checkDelayed(how: string, messageId: string, storeTimeMs: number): void {
    const sent = this.sent.get(messageId);
    if (sent?.kind !== 'DELAY') return;
    const dueMs = sent.input.deliveryTimeMs ?? 0;
    if (storeTimeMs < dueMs) this.checker.violate(`${how} returned delayed ${messageId} stored at ${storeTimeMs}, before its delivery time ${dueMs}`);
    if (sent.recall.ok > 0) this.checker.violate(`${how} returned ${messageId}, whose recall was answered OK`);
    if (!this.firstStoreTime.has(messageId)) {
      this.firstStoreTime.set(messageId, storeTimeMs);
      this.stats.delayedDelivered++;
    }
  }

  // ---- consumers --------------------------------------------------------------------------

  private deliveredTo(group: string): Set<string> {
    let set = this.delivered.get(group);
    if (set === undefined) {
      set = new Set();
      this.delivered.set(group, set);
    }
    return set;
  }

  private served(endpoint: BrokerEndpoint, topic: string, queueId: number, offset: number): { node: string; logIndex: number | undefined; commitIndex: number } | undefined {
    if (!endpoint.isCurrent()) return undefined;
    const queue = endpoint.state.queue(topic, queueId);
    return { node: endpoint.id, logIndex: queue !== undefined && offset < queue.maxOffset ? queue.logIndexAt(offset) : undefined, commitIndex: endpoint.commitIndex };
  }

  private checkBody(how: string, messageId: string, body: Uint8Array): void {
    const sent = this.sent.get(messageId);
    if (sent === undefined) this.checker.violate(`${how} returned ${messageId}, which no client sent`);
    else if (Buffer.compare(Buffer.from(sent.input.body), Buffer.from(body)) !== 0) this.checker.violate(`${how} returned ${messageId} with a different body`);
  }

  private async popConsumer(watch: WatchedGroup): Promise<void> {
    const clientId = `c-${watch.group}`;
    while (this.phase !== 'done') {
      const invisibleMs = this.phase === 'faults' ? this.random.int(200, 1500) : 800;
      const sentAt = this.tick();
      const outcome = await this.call((e) => e.service.receive({
        group: watch.group, topic: watch.topic, queueId: -1, filter: matchEverything, batch: this.random.int(1, 4), invisibleMs,
        autoRenew: false, clientId, pollMs: this.random.int(0, 300),
      }));
      this.tick();
      if (!outcome.ok || outcome.value.length === 0) {
        await this.pause([10, 100], 20);
        continue;
      }
      const deliveries = outcome.value;
      this.stats.deliveries += deliveries.length;
      for (const d of deliveries) {
        this.checker.onRead(`receive(${watch.group})`, d.topic, d.queueId, d.offset, d.message.messageId, this.served(outcome.via, d.topic, d.queueId, d.offset));
        this.noteFirstRead(watch.group, d.topic, d.queueId, d.offset);
        this.checkBody(`receive(${watch.group})`, d.message.messageId, d.message.body);
        this.checkDelayed(`receive(${watch.group})`, d.message.messageId, d.storeTimeMs);
        this.checkTransactional(`receive(${watch.group})`, d.message.messageId);
        this.deliveredTo(watch.group).add(d.message.messageId);
      }
      this.checker.onDeliveries(watch, sentAt, invisibleMs, deliveries.map((d) => ({
        queueId: d.queueId, offset: d.offset, messageId: d.message.messageId, attempt: d.attempt, invisibleUntilMs: d.invisibleUntilMs,
        queueFirstOffset: outcome.via.state.queue(d.topic, d.queueId)?.minOffset ?? 0,
      })));
      await Promise.all(deliveries.map(async (d) => {
        const action = this.phase !== 'faults' ? 'ack' : this.random.pick(['ack', 'ack', 'ack', 'ack', 'nack', 'ignore']);
        if (action === 'ignore') return;
        const handle = parseReceiptHandle(d.receiptHandle);
        if (handle === undefined) {
          this.checker.violate(`receive returned an unreadable receipt handle ${d.receiptHandle}`);
          return;
        }
        this.checker.onSettleStart(watch, d.queueId, d.offset);
        if (action === 'ack') {
          const acked = await this.call((e) => e.service.ack(watch.group, handle));
          const at = this.tick();
          if (acked.ok) {
            this.stats.acks++;
            this.checker.onAcked(watch, d.queueId, d.offset, at);
          }
        } else {
          const nacked = await this.call((e) => e.service.changeInvisibleDuration(watch.group, handle, this.random.int(0, 400)));
          this.tick();
          if (nacked.ok) this.stats.nacks++;
        }
      }));
    }
  }

  private noteFirstRead(group: string, topic: string, queueId: number, offset: number): void {
    const k = `${group}/${topic}/${queueId}`;
    if (offset < (this.firstReadOffsets.get(k) ?? Infinity)) this.firstReadOffsets.set(k, offset);
  }

  private async pullConsumer(): Promise<void> {
    const watch = pullWatch;
    const local: (number | undefined)[] = Array.from({ length: watch.queues }, () => undefined);
    let queueId = 0;
    while (this.phase !== 'done') {
      queueId = (queueId + 1) % watch.queues;
      let offset = local[queueId];
      if (offset === undefined || this.random.chance(0.1)) {
        const sentAt = this.tick();
        const read = await this.call((e) => e.service.getOffset(watch.group, watch.topic, queueId));
        this.tick();
        if (!read.ok) {
          await this.pause([10, 100]);
          continue;
        }
        this.checker.onOffsetRead(watch, queueId, read.value, sentAt);
        offset = read.value ?? 0;
        local[queueId] = offset;
      }
      const from = offset;
      const pulled = await this.call((e) => e.service.pull({ topic: watch.topic, queueId, offset: from, batch: this.random.int(1, 8), filter: matchEverything, pollMs: this.random.int(0, 200) }));
      this.tick();
      if (!pulled.ok) {
        local[queueId] = undefined;
        await this.pause([10, 100]);
        continue;
      }
      for (const m of pulled.value.messages) {
        this.checker.onRead('pull', m.topic, m.queueId, m.offset, m.message.messageId, this.served(pulled.via, m.topic, m.queueId, m.offset));
        this.noteFirstRead(watch.group, m.topic, m.queueId, m.offset);
        this.checkBody('pull', m.message.messageId, m.message.body);
        this.checkDelayed('pull', m.message.messageId, m.storeTimeMs);
        this.checkTransactional('pull', m.message.messageId);
        this.pulledIds.add(m.message.messageId);
      }
      this.stats.pulled += pulled.value.messages.length;
      const next = pulled.value.nextOffset;
      if (next > from) {
        const committed = await this.call((e) => e.service.updateOffset(watch.group, watch.topic, queueId, next));
        const at = this.tick();
        if (committed.ok) {
          this.stats.offsetCommits++;
          this.checker.onOffsetCommitted(watch, queueId, next, at);
          local[queueId] = next;
        } else {
          local[queueId] = undefined;
        }
      }
      await this.pause([0, 50], 10);
    }
  }

  // ---- the final reads and checks --------------------------------------------------------

  /**
   * Reads every queue of every topic from the leader and checks the whole history against it.
   * With retention, a queue starts at its first offset: an acknowledged message below it is
   * released, not lost, only if the committed-log watcher saw its entry committed below the
   * first log index retention kept (the jepsen harness's rule); a consumer that never got it
   * must have it counted as expired. Everything else missing is lost.
   */
  async verify(): Promise<void> {
    if (this.options.accessControl === true) await this.verifyAccess();
    const stored = new Map<string, { topic: string; queueId: number; offset: number; group: string }>();
    const contents = new Map<string, string>();
    /**
     * A queue's message ids by offset (none when the topic does not exist: a DLQ nobody
     * needed). Reading from offset 0 starts at the queue's first offset; a DLQ also skips
     * its references to released messages (DLQs are not in log order).
     */
    const readQueue = async (topic: string, queueId: number, dlq: boolean): Promise<Map<number, string>> => {
      const ids = new Map<number, string>();
      let next = 0;
      for (;;) {
        const from = next;
        const page = await this.until(`read ${topic}/${queueId}`, (e) => e.service.pull({ topic, queueId, offset: from, batch: 64, filter: matchEverything, pollMs: 0 }), 'TOPIC_NOT_FOUND');
        if (page === undefined) return ids;
        for (const m of page.messages) {
          if (m.offset < next || (m.offset > next && !dlq && ids.size > 0)) this.checker.violate(`final read of ${topic}/${queueId} went from offset ${next} to ${m.offset}`);
          ids.set(m.offset, m.message.messageId);
          next = m.offset + 1;
          this.checkBody('final read', m.message.messageId, m.message.body);
          this.checkDelayed('final read', m.message.messageId, m.storeTimeMs);
          this.checkTransactional('final read', m.message.messageId);
        }
        if (page.messages.length === 0 && page.nextOffset <= next) return ids;
        next = Math.max(next, page.nextOffset);
      }
    };
    const queueNames: [string, number][] = [];
    for (const topic of [topics.orders.name, topics.fifo.name]) for (let queueId = 0; queueId < 2; queueId++) queueNames.push([topic, queueId]);
    const firstRead = new Map<string, number>();
    for (const [topic, queueId] of queueNames) {
      const ids = await readQueue(topic, queueId, false);
      for (const [offset, id] of ids) {
        const k = `${topic}/${queueId}/${offset}`;
        if (!firstRead.has(`${topic}/${queueId}`)) firstRead.set(`${topic}/${queueId}`, offset);
        contents.set(k, id);
        const previous = stored.get(id);
        if (previous !== undefined) this.checker.violate(`${id} stored twice: at ${previous.topic}/${previous.queueId}/${previous.offset} and ${k}`);
        stored.set(id, { topic, queueId, offset, group: this.sent.get(id)?.input.messageGroup ?? '' });
      }
    }
    // What retention released by the end, from the leader (nothing proposes retention any more).
    const view = await this.until('retention view', async (e) => {
      const firsts = new Map<string, number>();
      for (const [topic, queueId] of queueNames) firsts.set(`${topic}/${queueId}`, await e.service.queryOffset(topic, queueId, 'BEGINNING', 0));
      const expired = new Map<string, number>();
      for (const watch of watchedGroups) {
        for (const row of e.state.groupProgress(watch.group)) if (row.topic === watch.topic) expired.set(`${watch.group}/${row.topic}/${row.queueId}`, row.expired);
      }
      return { firsts, expired, retainedFrom: e.state.retainedFrom };
    }) as { firsts: Map<string, number>; expired: Map<string, number>; retainedFrom: number };
    const firstOf = (topic: string, queueId: number): number => view.firsts.get(`${topic}/${queueId}`) ?? 0;
    for (const [topic, queueId] of queueNames) {
      const read = firstRead.get(`${topic}/${queueId}`);
      if (read !== undefined && read > firstOf(topic, queueId)) this.checker.violate(`final read of ${topic}/${queueId} started at offset ${read}, beyond its first offset ${firstOf(topic, queueId)}`);
    }
    const releaseProof = (id: string, topic: string, queueId: number, offset: number): string | undefined => {
      if (offset >= firstOf(topic, queueId)) return `not below its queue's first offset ${firstOf(topic, queueId)}`;
      const index = this.checker.committedIndexOf(id);
      if (index === undefined) return 'below its queue\'s first offset, but no committed entry held it';
      if (index >= view.retainedFrom) return `below its queue's first offset, but its entry ${index} is at or after the first retained index ${view.retainedFrom}`;
      return undefined;
    };
    // Every acknowledged send is where its acknowledgement said, or released; a message only ever failed definitely is nowhere.
    /** Released acknowledged messages: their queue, and their offset where the acknowledgement named one. */
    const released = new Map<string, { topic: string; queueId: number; offset?: number }>();
    for (const [id, message] of this.sent) {
      const at = stored.get(id);
      if (message.txn !== undefined) {
        const release = this.book.verify(id, message.txn, at, view.retainedFrom, (queueId) => firstOf(message.input.topic, queueId));
        if (release !== undefined) released.set(id, { topic: message.input.topic, queueId: release.releasedFrom });
        this.book.verifyEnds(id, message.txn);
        continue;
      }
      if (message.kind === 'DELAY' && message.acked !== undefined) {
        this.verifyDelayed(id, message, at, view.retainedFrom, firstOf, released);
        continue;
      }
      if (message.acked !== undefined) {
        if (at === undefined) {
          const { queueId, offset } = message.acked;
          const problem = releaseProof(id, message.input.topic, queueId, offset);
          if (problem === undefined) released.set(id, { topic: message.input.topic, queueId, offset });
          else this.checker.violate(`acknowledged ${id} (${queueId}/${offset}) was lost (${problem})`);
        } else if (at.queueId !== message.acked.queueId || at.offset !== message.acked.offset) this.checker.violate(`acknowledged ${id} at ${message.acked.queueId}/${message.acked.offset} is stored at ${at.queueId}/${at.offset}`);
      } else if (message.unknownAttempts === 0 && at !== undefined) {
        this.checker.violate(`${id} is stored although every send of it failed definitely`);
      }
    }
    this.releasedMessages = released.size;
    // Nothing was read that is not in the final, committed queues (or released from them).
    for (const [position, id] of this.checker.allReads()) {
      if (position.startsWith('%DLQ%')) continue;
      const final = contents.get(position);
      if (final === id) continue;
      const [topic, queueId, offset] = position.split('/') as [string, string, string];
      const sent = this.sent.get(id);
      // A transactional message's queue is its committed transaction's (book.verify checks it).
      const acked = sent?.txn === undefined ? sent?.acked : undefined;
      const ackedAt = acked === undefined ? undefined : acked.offset === -1 ? `${topic}/${acked.queueId}/${offset}` : `${topic}/${acked.queueId}/${acked.offset}`;
      if (final === undefined && stored.get(id) === undefined && (ackedAt === undefined || ackedAt === position)
        && releaseProof(id, topic, Number(queueId), Number(offset)) === undefined) continue;
      this.checker.violate(`a read returned ${id} at ${position}, which holds ${final ?? 'nothing'} in the end (an uncommitted message was delivered)`);
    }
    // FIFO: each message group is stored in the order it was sent (sends of one group are sequential).
    const lastOfGroup = new Map<string, number>();
    for (let queueId = 0; queueId < 2; queueId++) {
      for (let offset = firstOf(topics.fifo.name, queueId); ; offset++) {
        const id = contents.get(`${topics.fifo.name}/${queueId}/${offset}`);
        if (id === undefined) break;
        const group = this.sent.get(id)?.input.messageGroup ?? '?';
        const order = Number(id.slice(id.lastIndexOf('-') + 1));
        const previous = lastOfGroup.get(group);
        if (previous !== undefined && order < previous) this.checker.violate(`FIFO: message group ${group} stored ${id} after fifo-${previous}`);
        lastOfGroup.set(group, order);
      }
    }
    /**
     * A released message some group never consumed is counted as expired for that group and
     * queue (groupProgress), at least once per such message and at most once per released offset.
     */
    const checkExpired = (watch: WatchedGroup, consumed: (id: string) => boolean): void => {
      for (let queueId = 0; queueId < watch.queues; queueId++) {
        let unconsumed = 0;
        // A message released before the group had read anything of this queue is owed a count only
        // if the broker knew the group then (a position on the topic), which the checker cannot see:
        // those below the first offset it was ever handed are not required (the broker may count them).
        const firstRead = this.firstReadOffsets.get(`${watch.group}/${watch.topic}/${queueId}`) ?? Infinity;
        for (const [id, at] of released) if (at.topic === watch.topic && at.queueId === queueId && (at.offset ?? Infinity) >= firstRead && !consumed(id)) unconsumed++;
        const expired = view.expired.get(`${watch.group}/${watch.topic}/${queueId}`) ?? 0;
        this.expiredMessages += expired;
        if (expired < unconsumed) this.checker.violate(`${watch.group}: ${unconsumed} acknowledged messages of ${watch.topic}/${queueId} were released before it consumed them, but only ${expired} are counted as expired`);
        if (expired > firstOf(watch.topic, queueId)) this.checker.violate(`${watch.group}: ${expired} messages of ${watch.topic}/${queueId} counted as expired, more than the ${firstOf(watch.topic, queueId)} released`);
      }
    };
    // Every message reached every consumer: delivered to each pop group or dead-lettered there, pulled by the pull group.
    for (const watch of [popWatch, fifoWatch]) {
      const dlqIds = [...(await readQueue(dlqTopicOf(watch.group), 0, true)).values()];
      const dlq = new Set(dlqIds);
      this.deadLettered += dlq.size;
      if (dlqIds.length !== dlq.size) this.checker.violate(`${dlqTopicOf(watch.group)} holds a message twice`);
      for (const id of dlq) if (stored.get(id)?.topic !== watch.topic) this.checker.violate(`${dlqTopicOf(watch.group)} holds ${id}, which is not a stored ${watch.topic} message`);
      for (const [id, at] of stored) {
        if (at.topic === watch.topic && !dlq.has(id) && !this.deliveredTo(watch.group).has(id)) this.checker.violate(`${id} was settled for ${watch.group} but never delivered to it`);
      }
      checkExpired(watch, (id) => this.deliveredTo(watch.group).has(id));
    }
    this.storedMessages = stored.size;
    for (const [id, at] of stored) if (at.topic === topics.orders.name && !this.pulledIds.has(id)) this.checker.violate(`${id} was never pulled by ${groups.pull.name}`);
    checkExpired(pullWatch, (id) => this.pulledIds.has(id));
  }

  /**
   * An acknowledged delayed message at the end: recalled (answered OK) → nowhere; else stored
   * in the queue it was acknowledged for, or read before retention released it, or released
   * with proof (its send entry below the first retained index, its queue's prefix released) —
   * unless a recall's outcome is unknown (then either). One due after the heal was delivered
   * within the bound.
   */
  private verifyDelayed(
    id: string, message: SentMessage, at: { topic: string; queueId: number; offset: number } | undefined, retainedFrom: number,
    firstOf: (topic: string, queueId: number) => number, released: Map<string, { topic: string; queueId: number }>,
  ): void {
    const acked = message.acked as { queueId: number; offset: number };
    const dueMs = message.input.deliveryTimeMs ?? 0;
    if (message.recall.ok > 0) {
      if (at !== undefined) this.checker.violate(`recalled ${id} (answered OK) is stored at ${at.topic}/${at.queueId}/${at.offset}`);
      this.stats.delayedRecalled++;
      return;
    }
    if (at !== undefined) {
      if (at.queueId !== acked.queueId || (acked.offset !== -1 && at.offset !== acked.offset)) this.checker.violate(`acknowledged delayed ${id} at ${acked.queueId}/${acked.offset} is stored at ${at.queueId}/${at.offset}`);
    } else if (message.recall.unknown > 0 && !this.firstStoreTime.has(id)) {
      this.stats.delayedRecalled++; // a recall whose outcome is unknown may have taken it
    } else {
      // Released with its queue's prefix: its send entry is below the first retained index (a
      // delivered delayed message goes with the prefix it sits in, after the messages before it).
      const index = this.checker.committedIndexOf(id);
      if (index !== undefined && index < retainedFrom && firstOf(message.input.topic, acked.queueId) > 0) released.set(id, { topic: message.input.topic, queueId: acked.queueId });
      else this.checker.violate(`acknowledged delayed ${id} (due ${dueMs}, queue ${acked.queueId}) was ${this.firstStoreTime.has(id) ? 'delivered, then lost' : 'never delivered'}${message.recall.notFound > 0 ? ' (a recall of it found it not pending)' : ''}`);
    }
    const storeTimeMs = this.firstStoreTime.get(id);
    if (storeTimeMs !== undefined && dueMs >= this.healWallMs + 500) {
      this.stats.latenessMaxMs = Math.max(this.stats.latenessMaxMs, storeTimeMs - dueMs);
      if (storeTimeMs - dueMs > this.options.latenessBoundMs) this.checker.violate(`delayed ${id} due ${dueMs}, after the heal, was delivered ${Math.round(storeTimeMs - dueMs)} ms late (bound ${this.options.latenessBoundMs} ms)`);
    }
  }
}
