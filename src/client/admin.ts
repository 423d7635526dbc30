/**
 * Admin (F20): topics and consumer groups on every broker group, offsets, the cluster view
 * from the NameServer, leadership transfer, and query and trace of messages (F12: by id, by
 * key or store time in a topic, each message's trace). Operator calls go to each group's leader.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { loadProtoFile } from '../util/proto-files.js';
import { queryLimitMax, type FoundMessage as MessageInfo, type MessageTrace as MessageTraceInfo, type QueryResult as MessageQueryResult, type TraceEvent as MessageTraceEvent } from '../util/message-query-shapes.js';
import { fromV2, type ReceivedMessage } from './messages.js';
import { MQClientError, MQConnection, statusError, type ConnectionOptions } from './mq-connection.js';
import { RaftNodeClient, signedRaftNodeClientOptions, type RaftNodeClientOptions } from './raft-node-client.js';
import { checkGroupName, checkTopicName } from './name-checks.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader objects are untyped at this edge */

const BrokerAdminClient = (grpc.loadPackageDefinition(loadProtoFile('admin.proto')) as any).raftmq.admin.v1.BrokerAdmin as grpc.ServiceClientConstructor;

/** One broker group's users (never their secrets) and policies. */
export interface AccessListing {
  readonly brokerGroup: string;
  readonly users: ReadonlyArray<{ readonly name: string; readonly kind: string }>;
  readonly policies: ReadonlyArray<{ readonly user: string; readonly resource: string; readonly decision: string; readonly actions: readonly string[] }>;
}

export interface TopicSettings {
  readonly readQueues?: number;
  readonly writeQueues?: number;
  /** 6 read+write, 4 read only, 2 write only, 0 none. */
  readonly perm?: number;
  readonly messageType?: 'NORMAL' | 'FIFO' | 'DELAY' | 'TRANSACTION' | 'MIXED';
}

export interface TopicInfo {
  readonly brokerGroup: string;
  readonly name: string;
  readonly readQueues: number;
  readonly writeQueues: number;
  readonly perm: number;
  readonly messageType: string;
  readonly maxOffsets: readonly number[];
}

export interface GroupInfo {
  readonly brokerGroup: string;
  readonly name: string;
  readonly maxDeliveryAttempts: number;
  /** Empty: RocketMQ's levels. */
  readonly retryBackoffMs: readonly number[];
  readonly fifo: boolean;
  readonly members: readonly string[];
  readonly queues: ReadonlyArray<{ topic: string; queueId: number; offset: number; maxOffset: number; inFlight: number; expired: number }>;
}

/** What `readQueue` found: messages in offset order, and where a next read would start. */
export interface QueueRead {
  readonly messages: readonly ReceivedMessage[];
  /** The offset after the last one scanned (references retention released are skipped). */
  readonly nextOffset: number;
}

export interface ClusterNodeInfo {
  readonly group: string;
  readonly nodeId: string;
  readonly address: string;
  readonly role: string;
  readonly isLeader: boolean;
  readonly term: number;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly lastIndex: number;
  readonly lag: number;
  readonly pid: number;
  readonly flushMode: string;
  /** The node stopped on a fatal error (empty if not). */
  readonly failed: string;
  /** Non-zero while the node abstains from elections after losing synced log entries. */
  readonly abstainingUntil: number;
  readonly lastSeenMsAgo: number;
}

/** A stored message as a query finds it (on one broker group), an event of its trace, a query's answer: the broker's shapes. */
export type { FoundMessage as MessageInfo, MessageTrace as MessageTraceInfo, QueryResult as MessageQueryResult, TraceEvent as MessageTraceEvent } from '../util/message-query-shapes.js';

export interface FindMessagesQuery {
  readonly topic: string;
  /** Messages sent with this key (newest first); without it, messages stored in the time range (oldest first). */
  readonly key?: string;
  /** Inclusive, ms since the epoch. */
  readonly fromMs?: number;
  readonly toMs?: number;
  /** 1..1000 (default 32), over all broker groups. */
  readonly limit?: number;
}

export class Admin {
  readonly connection: MQConnection;
  private readonly adminClients = new Map<string, any>();

  constructor(readonly options: ConnectionOptions) {
    this.connection = new MQConnection(options);
  }

  close(): void {
    for (const client of this.adminClients.values()) client.close();
    this.connection.close();
  }

  async cluster(): Promise<ClusterNodeInfo[]> {
    const view = await this.connection.nameServerCall('GetCluster', {});
    const nodes: any[] = view.nodes ?? [];
    const leaderCommit = new Map<string, number>();
    for (const n of nodes) if (n.isLeader) leaderCommit.set(n.registration.group, Number(n.registration.commitIndex));
    return nodes.map((n) => {
      const r = n.registration;
      return {
        group: r.group, nodeId: r.nodeId, address: r.address, role: r.role, isLeader: n.isLeader === true, term: Number(r.term),
        commitIndex: Number(r.commitIndex), appliedIndex: Number(r.appliedIndex), lastIndex: Number(r.lastIndex),
        lag: Math.max(0, (leaderCommit.get(r.group) ?? Number(r.commitIndex)) - Number(r.appliedIndex)), pid: r.pid, flushMode: r.flushMode,
        failed: r.failed ?? '', abstainingUntil: Number(r.abstainingUntil ?? 0), lastSeenMsAgo: Number(n.lastSeenMsAgo),
      };
    });
  }

  /** Broker groups known to the NameServer (all of them, or the named one). */
  private async brokerGroups(only?: string): Promise<string[]> {
    const until = Date.now() + 5_000;
    for (;;) {
      const groups = (await this.connection.routes('', true)).map((g) => g.group);
      const chosen = only === undefined ? groups : groups.filter((g) => g === only);
      if (chosen.length > 0) return chosen;
      if (Date.now() >= until) {
        throw new MQClientError('NOT_FOUND', only === undefined ? 'no broker group is registered with the NameServer' : `broker group ${only} is not registered with the NameServer`, true);
      }
      await sleep(200);
    }
  }

  /** Calls `method` on the leader of `group`, following not-leader answers for a few seconds. */
  private async call(group: string, method: string, request: object): Promise<any> {
    const until = Date.now() + 5_000;
    let hint: string | undefined;
    for (;;) {
      const address = hint ?? (await this.connection.routes('', true)).find((g) => g.group === group)?.leaderAddress;
      hint = undefined;
      if (address !== undefined && address !== '') {
        const response = await new Promise<any>((resolve, reject) => {
          this.admin(address)[method](request, this.connection.metadata(), { deadline: Date.now() + 5_000 }, (error: grpc.ServiceError | null, value: any) => (error === null ? resolve(value) : reject(error)));
        }).catch((error: grpc.ServiceError) => ({ ok: false, code: 'UNAVAILABLE', error: error.message, leaderAddress: '' }));
        const result = response.result ?? response;
        if (result.ok === true) return response;
        if (result.code !== 'NOT_LEADER' && result.code !== 'UNAVAILABLE') throw new MQClientError(result.code, `${group}: ${result.error}`, true);
        if (result.leaderAddress !== '') hint = result.leaderAddress;
      }
      if (Date.now() >= until) throw new MQClientError('NO_LEADER', `broker group ${group} has no reachable leader`, true);
      await sleep(100);
    }
  }

  private admin(address: string): any {
    let client = this.adminClients.get(address);
    if (client === undefined) {
      client = new BrokerAdminClient(address, this.connection.credentials);
      this.adminClients.set(address, client);
    }
    return client;
  }

  async createTopic(name: string, settings: TopicSettings = {}, brokerGroup?: string): Promise<void> {
    checkTopicName(name);
    const config = { name, readQueues: settings.readQueues ?? 8, writeQueues: settings.writeQueues ?? 8, perm: settings.perm ?? 6, messageType: settings.messageType ?? 'NORMAL' };
    for (const group of await this.brokerGroups(brokerGroup)) await this.call(group, 'PutTopic', { config, createOnly: true });
  }

  async updateTopic(name: string, settings: TopicSettings, brokerGroup?: string): Promise<void> {
    checkTopicName(name);
    const topics = await this.listTopics();
    const current = topics.filter((t) => t.name === name && (brokerGroup === undefined || t.brokerGroup === brokerGroup));
    if (current.length === 0) throw new MQClientError('TOPIC_NOT_FOUND', `topic ${name} does not exist`, true);
    for (const topic of current) {
      const config = {
        name, readQueues: settings.readQueues ?? topic.readQueues, writeQueues: settings.writeQueues ?? topic.writeQueues,
        perm: settings.perm ?? topic.perm, messageType: settings.messageType ?? topic.messageType,
      };
      await this.call(topic.brokerGroup, 'PutTopic', { config, createOnly: false });
    }
  }

  async deleteTopic(name: string, brokerGroup?: string): Promise<void> {
    checkTopicName(name);
    const hosting = (await this.listTopics()).filter((t) => t.name === name && (brokerGroup === undefined || t.brokerGroup === brokerGroup));
    if (hosting.length === 0) throw new MQClientError('TOPIC_NOT_FOUND', `topic ${name} does not exist`, true);
    for (const topic of hosting) await this.call(topic.brokerGroup, 'DeleteTopic', { name });
  }

  async listTopics(): Promise<TopicInfo[]> {
    const out: TopicInfo[] = [];
    for (const group of await this.brokerGroups()) {
      const response = await this.call(group, 'ListTopics', {});
      for (const t of response.topics ?? []) {
        out.push({ brokerGroup: group, ...t.config, maxOffsets: (t.maxOffsets ?? []).map(Number) });
      }
    }
    return out;
  }

  /** `retryBackoffMs`: the push retry back-off by attempt (absent: RocketMQ's levels 10 s, 30 s, 1 m …). */
  async createGroup(name: string, settings: { maxDeliveryAttempts?: number; fifo?: boolean; retryBackoffMs?: readonly number[] } = {}, brokerGroup?: string): Promise<void> {
    checkGroupName(name);
    const config = { name, maxDeliveryAttempts: settings.maxDeliveryAttempts ?? 17, fifo: settings.fifo ?? false, retryBackoffMs: settings.retryBackoffMs ?? [] };
    for (const group of await this.brokerGroups(brokerGroup)) await this.call(group, 'PutGroup', { config });
  }

  async listGroups(): Promise<GroupInfo[]> {
    const out: GroupInfo[] = [];
    for (const group of await this.brokerGroups()) {
      const response = await this.call(group, 'ListGroups', {});
      for (const g of response.groups ?? []) {
        out.push({
          brokerGroup: group, name: g.config.name, maxDeliveryAttempts: g.config.maxDeliveryAttempts, fifo: g.config.fifo, members: g.members ?? [],
          retryBackoffMs: (g.config.retryBackoffMs ?? []).map(Number),
          queues: (g.queues ?? []).map((q: any) => ({ topic: q.topic, queueId: q.queueId, offset: Number(q.offset), maxOffset: Number(q.maxOffset), inFlight: Number(q.inFlight), expired: Number(q.expired ?? 0) })),
        });
      }
    }
    return out;
  }

  /** Moves a group's offsets on a topic to the first message stored at or after `timeMs` (backtracking). */
  async resetOffset(group: string, topic: string, timeMs: number): Promise<void> {
    checkGroupName(group);
    checkTopicName(topic);
    const hosting = (await this.listTopics()).filter((t) => t.name === topic);
    if (hosting.length === 0) throw new MQClientError('TOPIC_NOT_FOUND', `topic ${topic} does not exist`, true);
    for (const t of hosting) await this.call(t.brokerGroup, 'ResetOffset', { group, topic, timestampMs: timeMs });
  }

  /** Hands leadership of `brokerGroup` to node `to`; resolves once it leads. */
  async transferLeader(brokerGroup: string, to: string): Promise<{ term: number }> {
    const members = (await this.cluster()).filter((n) => n.group === brokerGroup);
    if (members.length === 0) throw new MQClientError('NOT_FOUND', `broker group ${brokerGroup} is not registered`, true);
    if (!members.some((m) => m.nodeId === to)) throw new MQClientError('NOT_FOUND', `broker group ${brokerGroup} has no node ${to} (${members.map((m) => m.nodeId).join(', ')})`, true);
    const raft = new RaftNodeClient(members.map((m) => m.address), this.raftNodeClientOptions());
    try {
      await raft.transferLeadership(to);
      const until = Date.now() + 5_000;
      while (Date.now() < until) {
        const leader = await raft.findLeader();
        const status = await raft.status(leader);
        if (status.nodeId === to) return { term: status.term };
        await sleep(50);
      }
      throw new MQClientError('TIMEOUT', `${to} did not take over within 5 s`, true);
    } finally {
      raft.close();
    }
  }

  /** For a RaftNodeClient of this admin's nodes: the same TLS and signature. */
  raftNodeClientOptions(): RaftNodeClientOptions {
    return signedRaftNodeClientOptions(this.connection.credentials, this.options.sessionCredentials);
  }

  /**
   * Creates a user on every broker group (or one): its secret goes to each group's leader,
   * which seals it before it enters the log. `kind` super may do everything.
   */
  async createUser(name: string, secret: string, kind: 'normal' | 'super' = 'normal', brokerGroup?: string): Promise<void> {
    for (const group of await this.brokerGroups(brokerGroup)) await this.call(group, 'ApplyAccessCommand', { commandJson: JSON.stringify({ type: 'user.create', name, kind }), secret });
  }

  /** A new secret (and optionally kind) for an existing user, on every broker group (or one). */
  async updateUser(name: string, secret: string, kind?: 'normal' | 'super', brokerGroup?: string): Promise<void> {
    const command = { type: 'user.update', name, ...(kind === undefined ? {} : { kind }) };
    for (const group of await this.brokerGroups(brokerGroup)) await this.call(group, 'ApplyAccessCommand', { commandJson: JSON.stringify(command), secret });
  }

  async deleteUser(name: string, brokerGroup?: string): Promise<void> {
    for (const group of await this.brokerGroups(brokerGroup)) await this.call(group, 'ApplyAccessCommand', { commandJson: JSON.stringify({ type: 'user.delete', name }) });
  }

  /** Allows (or denies) `actions` (Pub, Sub, Admin, All) on `resource` (Topic:t, Topic:prefix*, Group:g, Cluster, *) to `user`. */
  async grant(user: string, resource: string, actions: readonly string[], decision: 'Allow' | 'Deny' = 'Allow', brokerGroup?: string): Promise<void> {
    const command = { type: 'acl.grant', user, resource, decision, actions };
    for (const group of await this.brokerGroups(brokerGroup)) await this.call(group, 'ApplyAccessCommand', { commandJson: JSON.stringify(command) });
  }

  /** Takes back `actions` (all of the entry's when none are named) of `user`'s `decision` entry on `resource`. */
  async revoke(user: string, resource: string, actions: readonly string[] = [], decision: 'Allow' | 'Deny' = 'Allow', brokerGroup?: string): Promise<void> {
    const command = { type: 'acl.revoke', user, resource, decision, ...(actions.length === 0 ? {} : { actions }) };
    for (const group of await this.brokerGroups(brokerGroup)) await this.call(group, 'ApplyAccessCommand', { commandJson: JSON.stringify(command) });
  }

  /** Users (never their secrets) and policies, per broker group. */
  async listAccess(): Promise<AccessListing[]> {
    const listings: AccessListing[] = [];
    for (const group of await this.brokerGroups()) {
      const response = await this.call(group, 'ListAccess', {});
      listings.push({
        brokerGroup: group,
        users: (response.users ?? []).map((u: any) => ({ name: String(u.name), kind: String(u.kind) })),
        policies: (response.policies ?? []).map((p: any) => ({ user: String(p.user), resource: String(p.resource), decision: String(p.decision), actions: (p.actions ?? []).map(String) })),
      });
    }
    return listings;
  }

  /**
   * Up to `limit` messages of one queue from `fromOffset`, read with PullMessage: read-only (no
   * offset committed, no log entry), without waiting when the queue has nothing more.
   */
  async readQueue(brokerGroup: string, topic: string, queueId: number, fromOffset: number, limit: number): Promise<QueueRead> {
    if (!Number.isSafeInteger(fromOffset) || fromOffset < 0) throw new MQClientError('ILLEGAL_OFFSET', `offset ${fromOffset} is not a non-negative integer`, true);
    if (!Number.isSafeInteger(limit) || limit < 1) throw new MQClientError('BAD_REQUEST', `limit ${limit} must be a whole number ≥ 1`, true);
    const messages: ReceivedMessage[] = [];
    let offset = fromOffset;
    while (messages.length < limit) {
      const frames = await this.connection.stream(brokerGroup, 'PullMessage', {
        messageQueue: messageQueue(brokerGroup, topic, queueId), offset, batchSize: Math.min(limit - messages.length, 256),
        filterExpression: { type: 'TAG', expression: '*' }, longPollingTimeout: { seconds: 0, nanos: 0 },
      }, this.connection.requestTimeoutMs);
      const status = frames.find((f) => f.content === 'status')?.status;
      if (status !== undefined && status.code !== 'OK' && status.code !== 'MESSAGE_NOT_FOUND') throw statusError(`read ${topic}/${queueId} of ${brokerGroup}`, status);
      const batch = frames.filter((f) => f.content === 'message').map((f) => fromV2(f.message, brokerGroup));
      messages.push(...batch);
      const next = frames.find((f) => f.content === 'nextOffset');
      const nextOffset = next !== undefined ? Number(next.nextOffset) : batch.length > 0 ? (batch[batch.length - 1] as ReceivedMessage).offset + 1 : offset;
      if (nextOffset <= offset) break; // the end of the queue
      offset = nextOffset;
    }
    return { messages, nextOffset: offset };
  }

  // ---- query and trace (F12) --------------------------------------------------------------------

  /** The messages stored with id `messageId` on every broker group (in `topic` only, if given), newest first. */
  async getMessage(messageId: string, options: { readonly topic?: string; readonly limit?: number } = {}): Promise<MessageQueryResult<MessageInfo>> {
    if (messageId === '') throw new MQClientError('ILLEGAL_MESSAGE_ID', 'a message id is needed', true);
    const limit = checkQueryLimit(options.limit);
    const parts = [];
    for (const group of await this.brokerGroups()) {
      parts.push(await this.call(group, 'QueryMessage', { messageId, topic: options.topic ?? '', limit }));
    }
    return merge(parts.map((r) => ({ items: (r.messages ?? []).map(messageFromProto), more: r.more === true, released: Number(r.released ?? 0) })), limit, (a, b) => b.sentTimeMs - a.sentTimeMs);
  }

  /**
   * Messages of a topic on every broker group hosting it: with `key`, those sent with it
   * (newest first; `fromMs`/`toMs` bound the send time); without, those stored in the time
   * range (oldest first).
   */
  async findMessages(query: FindMessagesQuery): Promise<MessageQueryResult<MessageInfo>> {
    const limit = checkQueryLimit(query.limit);
    if (query.topic === '') throw new MQClientError('BAD_REQUEST', 'a topic is needed', true);
    if ((query.key ?? '') === '' && query.fromMs === undefined && query.toMs === undefined) throw new MQClientError('BAD_REQUEST', 'give a key or a time range', true);
    for (const [name, value] of [['start', query.fromMs], ['end', query.toMs]] as const) {
      if (value !== undefined && (!Number.isSafeInteger(value) || value <= 0)) throw new MQClientError('BAD_REQUEST', `the time range's ${name} ${value} is not a time (ms since the epoch)`, true);
    }
    if (query.fromMs !== undefined && query.toMs !== undefined && query.fromMs > query.toMs) {
      throw new MQClientError('BAD_REQUEST', `the time range starts (${new Date(query.fromMs).toISOString()}) after it ends (${new Date(query.toMs).toISOString()})`, true);
    }
    const hosting = [...new Set((await this.listTopics()).filter((t) => t.name === query.topic).map((t) => t.brokerGroup))];
    if (hosting.length === 0) throw new MQClientError('TOPIC_NOT_FOUND', `topic ${query.topic} does not exist`, true);
    const parts = [];
    for (const group of hosting) {
      parts.push(await this.call(group, 'QueryMessage', { topic: query.topic, key: query.key ?? '', fromMs: query.fromMs ?? 0, toMs: query.toMs ?? 0, limit }));
    }
    const byKey = (query.key ?? '') !== '';
    return merge(parts.map((r) => ({ items: (r.messages ?? []).map(messageFromProto), more: r.more === true, released: Number(r.released ?? 0) })), limit,
      byKey ? (a, b) => b.sentTimeMs - a.sentTimeMs : (a, b) => (a.storeTimeMs ?? 0) - (b.storeTimeMs ?? 0));
  }

  /** The trace of every message stored with id `messageId` (in `topic` only, if given), on every broker group. */
  async traceMessage(messageId: string, options: { readonly topic?: string } = {}): Promise<MessageQueryResult<MessageTraceInfo>> {
    if (messageId === '') throw new MQClientError('ILLEGAL_MESSAGE_ID', 'a message id is needed', true);
    const parts = [];
    for (const group of await this.brokerGroups()) {
      const r = await this.call(group, 'TraceMessage', { messageId, topic: options.topic ?? '' });
      parts.push({
        items: (r.traces ?? []).map((t: any): MessageTraceInfo => ({ message: messageFromProto(t.message), events: (t.events ?? []).map(eventFromProto) })),
        more: r.more === true, released: Number(r.released ?? 0),
      });
    }
    return merge(parts, Infinity, (a, b) => b.message.sentTimeMs - a.message.sentTimeMs);
  }

  /** The offset `group` committed on one queue (a linearizable read), or undefined if none. */
  async committedOffset(group: string, brokerGroup: string, topic: string, queueId: number): Promise<number | undefined> {
    const response = await this.connection.unary(brokerGroup, 'GetOffset', { group: { name: group, resourceNamespace: '' }, messageQueue: messageQueue(brokerGroup, topic, queueId) });
    if (response.status?.code === 'OFFSET_NOT_FOUND') return undefined;
    if (response.status?.code !== 'OK') throw statusError(`get offset of ${group} on ${topic}/${queueId} of ${brokerGroup}`, response.status ?? {});
    return Number(response.offset);
  }

  /** Commits `offset` (the next message to consume) for `group` on one queue; resolves once it is replicated. */
  async commitOffset(group: string, brokerGroup: string, topic: string, queueId: number, offset: number): Promise<void> {
    const response = await this.connection.unary(brokerGroup, 'UpdateOffset', { group: { name: group, resourceNamespace: '' }, messageQueue: messageQueue(brokerGroup, topic, queueId), offset });
    if (response.status?.code !== 'OK') throw statusError(`commit offset ${offset} of ${group} on ${topic}/${queueId} of ${brokerGroup}`, response.status ?? {});
  }
}

function messageFromProto(m: any): MessageInfo {
  const optional = (value: unknown, none: number): number | undefined => (Number(value) === none ? undefined : Number(value));
  return {
    brokerGroup: m.brokerGroup, messageId: m.messageId, topic: m.topic, tag: m.tag, keys: m.keys ?? [], messageGroup: m.messageGroup, bornHost: m.bornHost,
    bornTimeMs: Number(m.bornTimestampMs), properties: m.properties ?? {}, bodyBytes: Number(m.bodyBytes), bodyPreview: Buffer.from(m.bodyPreview ?? []),
    logIndex: Number(m.logIndex), position: Number(m.position), term: optional(m.term, 0), sentTimeMs: Number(m.sentTimestampMs), type: m.messageType,
    deliveryTimeMs: Number(m.deliveryTimestampMs), state: m.state, queueId: optional(m.queueId, -1), offset: optional(m.queueOffset, -1),
    storeTimeMs: optional(m.storeTimestampMs, 0),
  };
}

function eventFromProto(e: any): MessageTraceEvent {
  return {
    event: e.event, timeMs: Number(e.timestampMs), logIndex: Number(e.logIndex), term: Number(e.term) === 0 ? undefined : Number(e.term), group: e.group,
    clientId: e.clientId, attempt: Number(e.attempt), topic: e.topic, queueId: Number(e.queueId), offset: Number(e.queueOffset) === -1 ? undefined : Number(e.queueOffset),
    detail: e.detail,
  };
}

function checkQueryLimit(limit: number | undefined): number {
  const value = limit ?? 32;
  if (!Number.isInteger(value) || value < 1 || value > queryLimitMax) throw new MQClientError('BAD_REQUEST', `limit ${value} must be a whole number in 1..${queryLimitMax}`, true);
  return value;
}

function messageQueue(brokerGroup: string, topic: string, queueId: number): object {
  return { topic: { name: topic, resourceNamespace: '' }, id: queueId, broker: { name: brokerGroup, id: 0 } };
}

function merge<T>(parts: readonly MessageQueryResult<T>[], limit: number, order: (a: T, b: T) => number): MessageQueryResult<T> {
  const all = parts.flatMap((p) => p.items).sort(order);
  return {
    items: all.slice(0, limit), more: all.length > limit || parts.some((p) => p.more), released: parts.reduce((sum, p) => sum + p.released, 0),
  };
}
