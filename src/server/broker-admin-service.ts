/**
 * BrokerAdmin, the operator's service on a broker node (proto/admin.proto): topics, groups,
 * offsets, query and trace, users and policies. Served by the group's leader (a follower
 * answers NOT_LEADER with the leader's address); with authentication on, every call needs the
 * Cluster Admin permission.
 */
import * as grpc from '@grpc/grpc-js';
import type { BrokerService } from '../broker/broker-service.js';
import type { MessageQuery, FoundMessage, TraceEvent } from '../broker/message-query.js';
import { BrokerError } from '../broker/errors.js';
import { topicTypes, type GroupConfig, type TopicConfig, type TopicType } from '../broker/core/names.js';
import { loadProtoFile } from '../util/proto-files.js';
import { requestActions, type RequestAction } from '../broker/core/access-control.js';
import { clusterAdmin, notCurrentMessage, type AccessGate, type Requirement } from './access-gate.js';
import type { AccessJudge } from './access-judge.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader objects are untyped at this edge */

export const brokerAdminDefinition = (grpc.loadPackageDefinition(loadProtoFile('admin.proto')) as any).raftmq.admin.v1.BrokerAdmin.service as grpc.ServiceDefinition;

export interface BrokerAdminContext {
  readonly service: BrokerService;
  readonly query: MessageQuery;
  isLeader(): boolean;
  leaderAddress(): string | undefined;
  readonly access?: AccessJudge;
}

/** An AuthorizeRequest's requirements (actions among Pub, Sub, Admin). */
function requirementsFromProto(request: any): Requirement[] {
  return (request.requirements ?? []).map((requirement: any) => {
    const actions = (requirement.actions ?? []).map(String);
    if (actions.length === 0 || !actions.every((action: string) => (requestActions as readonly string[]).includes(action))) {
      throw new BrokerError('BAD_REQUEST', `a requirement's actions must be some of ${requestActions.join(', ')}`);
    }
    return { resource: String(requirement.resource ?? ''), actions: actions as RequestAction[] };
  });
}

export function brokerAdminHandlers(ctx: BrokerAdminContext): grpc.UntypedServiceImplementation {
  const { service, query, isLeader, leaderAddress, access } = ctx;
  const failure = (error: unknown): any => {
    if (error instanceof BrokerError) {
      const code = error.code === 'HA_NOT_AVAILABLE' ? 'NOT_LEADER' : error.code;
      return { ok: false, code, error: error.message, leaderAddress: error.leaderAddress ?? leaderAddress() ?? '' };
    }
    return { ok: false, code: 'INTERNAL_SERVER_ERROR', error: (error as Error).message, leaderAddress: '' };
  };
  const guard = (): void => {
    if (!isLeader()) {
      const leader = leaderAddress();
      throw new BrokerError('HA_NOT_AVAILABLE', `not the leader${leader === undefined ? '; election in progress' : `; leader is ${leader}`}`, true, leader);
    }
  };
  /** Throws unless the signer may do `requirements` (HA_NOT_AVAILABLE when this node cannot tell yet: access-judge.ts). */
  const requireAccess = async (call: { metadata: grpc.Metadata }, requirements: readonly Requirement[], skew: 'check' | 'ignore' = 'check'): Promise<void> => {
    if (access === undefined) return;
    const verdict = await access.judge(call.metadata, requirements, skew);
    if (verdict === undefined) throw new BrokerError('HA_NOT_AVAILABLE', notCurrentMessage);
    if (!verdict.ok) throw new BrokerError(verdict.code, verdict.message);
  };
  const unary = (run: (request: any) => Promise<any>, wrap: (result: any) => any = (result) => result) =>
    (call: grpc.ServerUnaryCall<any, any>, callback: grpc.sendUnaryData<any>): void => {
      requireAccess(call, clusterAdmin).then(() => { guard(); return run(call.request); }).then(
        (response) => callback(null, response),
        (error: unknown) => callback(null, wrap(failure(error))),
      );
    };
  const ok = { ok: true, code: 'OK', error: '', leaderAddress: '' };
  return {
    PutTopic: unary(async (request) => {
      const config = topicFromProto(request.config);
      // Decided when the entry applies: a new leader's state may not hold every topic yet.
      await service.putTopic(config, request.createOnly === true ? 'create' : 'update');
      return ok;
    }),
    DeleteTopic: unary(async (request) => {
      await service.deleteTopic(String(request.name));
      return ok;
    }),
    ListTopics: unary(async () => ({
      result: ok,
      topics: service.state.topicList().map((config) => ({ config, maxOffsets: service.state.maxOffsets(config.name) })),
    }), (result) => ({ result, topics: [] })),
    PutGroup: unary(async (request) => {
      const levels: number[] = (request.config?.retryBackoffMs ?? []).map(Number);
      const config: GroupConfig = {
        name: String(request.config?.name ?? ''), maxDeliveryAttempts: Number(request.config?.maxDeliveryAttempts ?? 0), fifo: request.config?.fifo === true,
        ...(levels.length === 0 ? {} : { retryBackoffMs: levels }),
      };
      await service.putGroup(config);
      return ok;
    }),
    ListGroups: unary(async () => ({
      result: ok,
      groups: service.state.groupList().map((config) => ({ config, queues: service.state.groupProgress(config.name), members: service.groupMembers(config.name) })),
    }), (result) => ({ result, groups: [] })),
    ResetOffset: unary(async (request) => {
      await service.resetOffset(String(request.group), String(request.topic), Number(request.timestampMs));
      return ok;
    }),
    QueryMessage: unary(async (request) => {
      const found = await queryMessages(query, request);
      return { result: ok, messages: found.items.map(messageToProto), more: found.more, released: found.released };
    }, (result) => ({ result, messages: [] })),
    ApplyAccessCommand: unary(async (request) => {
      await service.applyAccessCommand(accessCommandFromProto(request, access?.gate));
      return ok;
    }),
    ListAccess: unary(async () => {
      const table = await service.accessTable();
      return { result: ok, users: table.listUsers(), policies: table.listPolicies().map((policy) => ({ ...policy, actions: [...policy.actions] })) };
    }, (result) => ({ result, users: [], policies: [] })),
    // The leader's verdict on its caller's own signature, asked by a follower whose table may be behind (access-judge.ts).
    Authorize: (call: grpc.ServerUnaryCall<any, any>, callback: grpc.sendUnaryData<any>): void => {
      Promise.resolve().then(async () => {
        guard();
        await requireAccess(call, requirementsFromProto(call.request), call.request.streamSigned === true ? 'ignore' : 'check');
        return ok;
      }).then((response) => callback(null, response), (error: unknown) => callback(null, failure(error)));
    },
    TraceMessage: unary(async (request) => {
      const messageId = String(request.messageId ?? '');
      const topic = String(request.topic ?? '');
      const found = await query.trace(messageId, topic === '' ? {} : { topic });
      return {
        result: ok, more: found.more, released: found.released,
        traces: found.items.map((trace) => ({ message: messageToProto(trace.message), events: trace.events.map(eventToProto) })),
      };
    }, (result) => ({ result, traces: [] })),
  };
}

/** QueryMessage: by id (topic optional), or in a topic by key (and a send-time range) or by a store-time range. */
async function queryMessages(query: MessageQuery, request: any): ReturnType<MessageQuery['byId']> {
  const messageId = String(request.messageId ?? '');
  const topic = String(request.topic ?? '');
  const key = String(request.key ?? '');
  const bound = (value: unknown): number | undefined => (Number(value ?? 0) === 0 ? undefined : Number(value));
  const range = { fromMs: bound(request.fromMs), toMs: bound(request.toMs) };
  const limit = Number(request.limit ?? 0);
  if (messageId !== '') {
    if (key !== '' || range.fromMs !== undefined || range.toMs !== undefined) throw new BrokerError('BAD_REQUEST', 'a query names a message id, or a key or a time range in a topic, not both');
    return query.byId(messageId, { limit, ...(topic === '' ? {} : { topic }) });
  }
  if (topic === '') throw new BrokerError('BAD_REQUEST', 'a query by key or time range needs a topic');
  if (key !== '') return query.byKey(topic, key, { limit, ...range });
  if (range.fromMs === undefined && range.toMs === undefined) throw new BrokerError('BAD_REQUEST', 'a query needs a message id, a key or a time range');
  return query.byStoreTime(topic, { limit, ...range });
}

function messageToProto(m: FoundMessage): object {
  return {
    messageId: m.messageId, topic: m.topic, tag: m.tag, keys: m.keys, messageGroup: m.messageGroup, bornHost: m.bornHost, bornTimestampMs: m.bornTimeMs,
    properties: m.properties, bodyBytes: m.bodyBytes, bodyPreview: Buffer.from(m.bodyPreview.buffer, m.bodyPreview.byteOffset, m.bodyPreview.byteLength), brokerGroup: m.brokerGroup,
    logIndex: m.logIndex, position: m.position, term: m.term ?? 0, sentTimestampMs: m.sentTimeMs, messageType: m.type, deliveryTimestampMs: m.deliveryTimeMs,
    state: m.state, queueId: m.queueId ?? -1, queueOffset: m.offset ?? -1, storeTimestampMs: m.storeTimeMs ?? 0,
  };
}

function eventToProto(e: TraceEvent): object {
  return {
    event: e.event, timestampMs: e.timeMs, logIndex: e.logIndex, term: e.term ?? 0, group: e.group, clientId: e.clientId, attempt: e.attempt,
    topic: e.topic, queueId: e.queueId, queueOffset: e.offset ?? -1, detail: e.detail,
  };
}

/**
 * An access command from its request: the command as JSON, and for user.create / user.update
 * the new secret beside it, sealed here so that only sealed bytes enter the log.
 */
function accessCommandFromProto(request: any, access: AccessGate | undefined): any {
  if (access === undefined) throw new BrokerError('BAD_REQUEST', 'authentication is not configured on this broker group (--auth-key-file, --auth-admin-file): users and policies cannot be changed');
  let command: any;
  try {
    command = JSON.parse(String(request.commandJson ?? ''));
  } catch {
    throw new BrokerError('BAD_REQUEST', 'the access command is not JSON');
  }
  if (command === null || typeof command !== 'object' || Array.isArray(command)) throw new BrokerError('BAD_REQUEST', 'the access command must be a JSON object');
  if ('secretSealed' in command) throw new BrokerError('BAD_REQUEST', 'send the secret in the request\'s secret field; the leader seals it');
  const secret = String(request.secret ?? '');
  if (command.type === 'user.create' || command.type === 'user.update') {
    if (secret === '') throw new BrokerError('BAD_REQUEST', `${String(command.type)} needs a secret`);
    return { ...command, secretSealed: access.seal(secret) };
  }
  if (secret !== '') throw new BrokerError('BAD_REQUEST', `${String(command.type)} takes no secret`);
  return command;
}

function topicFromProto(config: any): TopicConfig {
  const messageType = String(config?.messageType || 'NORMAL') as TopicType;
  if (!topicTypes.includes(messageType)) throw new BrokerError('BAD_REQUEST', `message type must be one of ${topicTypes.join(', ')}`);
  return {
    name: String(config?.name ?? ''), readQueues: Number(config?.readQueues ?? 0), writeQueues: Number(config?.writeQueues ?? 0),
    perm: Number(config?.perm ?? 6), messageType,
  };
}

