/**
 * `apache.rocketmq.v2.MessagingService` on a broker node. The leader serves every call from
 * its BrokerService; a follower forwards to its leader (holding the call through an election)
 * unless the caller asked for a direct "not the leader" answer (our client does, so it can go
 * straight to the leader next time). Telemetry is answered locally on every node.
 */
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { BrokerService, SendItem } from '../broker/broker-service.js';
import { BrokerError, type BrokerErrorCode } from '../broker/errors.js';
import { FilterError } from '../broker/core/filter.js';
import { parseSubscriptionFilter } from '../broker/core/subscription-filter.js';
import {
  acceptedMessageKinds, defaultGroupConfig, defaultRetryBackoffMs, groupNameProblem, permRead, permWrite, topicNameProblem, type GroupConfig, type TopicConfig,
} from '../broker/core/names.js';
import { parseRecallHandle } from '../broker/core/recall-handle.js';
import { parseReceiptHandle } from '../broker/core/receipt-handle.js';
import { parseTransactionId } from '../broker/core/transaction-id.js';
import {
  durationToMs, forwardedHeader, identityBytes, leaderHeader, messagingServiceDefinition, msToDuration, msToTimestamp, noForwardHeader, okStatus, outcomeHeader,
  queueSelectedHeader, rebalanceHeader, timestampToMs, type V2Status,
} from '../util/rocketmq-v2.js';
import { callDeadlineMs, Forwarder, methodOf, type ForwardOptions } from './forwarder.js';
import { groupRequirement, notCurrentMessage, topicRequirement, type Requirement } from './access-gate.js';
import type { AccessJudge } from './access-judge.js';
import type { ClientLimits } from './client-limits.js';
import type { TransactionChecks } from './transaction-checks.js';
import { pullResponseFrames, pullStatusFrame } from './pull-response.js';
import { decodeSendMessageRequest, encodeSendMessageResponse, type SendEntryOut, type SendMessageIn } from './send-message-codec.js';
import { messageFromV2, messageToV2 } from './v2-messages.js';
import { WireFormatError } from '../util/protobuf-wire.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader objects are untyped at this edge */

export interface BrokerEndpointContext {
  readonly brokerGroup: string;
  /** This node's client address: what QueryRoute advertises when a client asks this node. */
  readonly selfAddress: string;
  readonly service: BrokerService;
  isLeader(): boolean;
  leaderAddress(): string | undefined;
  readonly forwarder: Forwarder;
  readonly logger: Logger;
  /** The producers this node's Telemetry streams hold, for transaction check-backs. */
  readonly transactionChecks: TransactionChecks;
  /** Authentication and authorization of every call (undefined: every call passes). */
  readonly access?: AccessJudge;
  /** Per-client caps on calls served and long polls waiting at once on this node. */
  readonly limits: ClientLimits;
}

/**
 * MessagingService as a broker node registers it: SendMessage takes and answers bytes, which
 * its handler decodes and encodes itself (send-message-codec.ts), and a follower forwards as
 * they came; PullMessage's frames are encoded by hand (pull-response.ts); every other method
 * is decoded and encoded by proto-loader.
 */
export const brokerMessagingDefinition: grpc.ServiceDefinition = Object.fromEntries(Object.entries(messagingServiceDefinition).map(([method, definition]) => [
  method,
  method === 'SendMessage' ? { ...definition, requestDeserialize: identityBytes, responseSerialize: identityBytes }
    : method === 'PullMessage' ? { ...definition, responseSerialize: identityBytes } : definition,
]));

const receiveBatchMax = 32;
const invisibleMsMin = 1_000;
const invisibleMsMax = 12 * 3600_000;
const defaultPollMs = 20_000;

export function statusOf(error: unknown): { status: V2Status; definite: boolean; leader: string | undefined } {
  if (error instanceof BrokerError) return { status: { code: error.code, message: error.message }, definite: error.definite, leader: error.leaderAddress };
  if (error instanceof FilterError) return { status: { code: error.unsupported ? 'UNSUPPORTED' : 'ILLEGAL_FILTER_EXPRESSION', message: error.message }, definite: true, leader: undefined };
  return { status: { code: 'INTERNAL_SERVER_ERROR', message: (error as Error)?.message ?? String(error) }, definite: false, leader: undefined };
}

function trailerFor(definite: boolean, leader: string | undefined): grpc.Metadata {
  const trailer = new grpc.Metadata();
  if (!definite) trailer.set(outcomeHeader, 'unknown');
  if (leader !== undefined) trailer.set(leaderHeader, leader);
  return trailer;
}

const header = (call: { metadata: grpc.Metadata }, key: string): string => String(call.metadata.get(key)[0] ?? '');
export const clientIdOf = (call: { metadata: grpc.Metadata }): string => header(call, 'x-mq-client-id');
/** Whose slot a call takes (ClientLimits): its client id, or its connection's address when it names none. */
const limitKeyOf = (call: { metadata: grpc.Metadata; getPeer(): string }): string => clientIdOf(call) || `peer ${call.getPeer()}`;

/** The queues of a topic as the protocol lists them, all on one endpoint. */
export function routeQueues(topic: TopicConfig, brokerGroup: string, address: string): any[] {
  const [host, port] = splitAddress(address);
  const broker = { name: brokerGroup, id: 0, endpoints: { scheme: /^\d+\.\d+\.\d+\.\d+$/.test(host) ? 'IPv4' : 'DOMAIN_NAME', addresses: [{ host, port }] } };
  const count = Math.max(topic.readQueues, topic.writeQueues);
  return Array.from({ length: count }, (_, id) => {
    const read = id < topic.readQueues && (topic.perm & permRead) !== 0;
    const write = id < topic.writeQueues && (topic.perm & permWrite) !== 0;
    return {
      topic: { name: topic.name, resourceNamespace: '' }, id, broker,
      permission: read && write ? 'READ_WRITE' : read ? 'READ' : write ? 'WRITE' : 'NONE',
      acceptMessageTypes: acceptedMessageKinds(topic.messageType),
    };
  });
}

export function splitAddress(address: string): [string, number] {
  const at = address.lastIndexOf(':');
  return [address.slice(0, at), Number(address.slice(at + 1))];
}

/** What a Telemetry settings command needs: Pub on the topics a producer names, Sub on a consumer's group and topics. */
function settingsRequirements(settings: any): Requirement[] {
  if (settings.publishing !== null && settings.publishing !== undefined) {
    return (settings.publishing.topics ?? []).map((topic: any) => topicRequirement(String(topic?.name ?? ''), ['Pub']));
  }
  if (settings.subscription !== null && settings.subscription !== undefined) {
    const group = String(settings.subscription.group?.name ?? '');
    const topics = (settings.subscription.subscriptions ?? []).map((entry: any) => topicRequirement(String(entry?.topic?.name ?? ''), ['Sub']));
    return group === '' ? topics : [groupRequirement(group), ...topics];
  }
  return [];
}

/** What consuming needs: Sub on the group (when the request names one) and on the request's topic. */
function consumeRequirements(request: any, group: string | undefined, topic: string = String(request.topic?.name ?? '')): Requirement[] {
  const groupName = group ?? String(request.group?.name ?? '');
  return [...(groupName === '' ? [] : [groupRequirement(groupName)]), ...(topic === '' ? [] : [topicRequirement(topic, ['Sub'])])];
}

/** When a settings answer is repeated after the first (see Telemetry). */
const settingsEchoDelaysMs = [1_000, 3_000, 7_000, 15_000, 30_000] as const;

/** The Settings a client gets back on Telemetry: its own, completed with the server's values. */
export function settingsReply(settings: any, group: GroupConfig | undefined, maxBodyBytes: number): any {
  const reply: any = {
    clientType: settings.clientType, accessPoint: settings.accessPoint, requestTimeout: settings.requestTimeout, userAgent: settings.userAgent,
  };
  if (settings.publishing !== null && settings.publishing !== undefined) {
    reply.backoffPolicy = { maxAttempts: 3, exponentialBackoff: { initial: msToDuration(10), max: msToDuration(1_000), multiplier: 2 } };
    reply.publishing = { topics: settings.publishing.topics ?? [], maxBodySize: maxBodyBytes, validateMessageType: true };
  } else if (settings.subscription !== null && settings.subscription !== undefined) {
    // The group's retry levels (the broker enforces them on push nacks either way). The Node
    // client has no customized back-off (it would treat the policy as "no retries"), so it
    // gets the exponential curve through the first and last level.
    const levels = group?.retryBackoffMs ?? defaultRetryBackoffMs;
    const maxAttempts = group?.maxDeliveryAttempts ?? 17;
    reply.backoffPolicy = settings.userAgent?.language === 'NODE_JS' || settings.userAgent?.language === 'NODEJS'
      ? { maxAttempts, exponentialBackoff: { initial: msToDuration(levels[0] ?? 0), max: msToDuration(levels[levels.length - 1] ?? 0), multiplier: 2 } }
      : { maxAttempts, customizedBackoff: { next: levels.map(msToDuration) } };
    reply.subscription = {
      group: settings.subscription.group, subscriptions: settings.subscription.subscriptions ?? [], fifo: group?.fifo ?? false,
      receiveBatchSize: receiveBatchMax, longPollingTimeout: msToDuration(defaultPollMs),
    };
  }
  return reply;
}

function pollMsFor(request: any, call: { getDeadline(): grpc.Deadline }): number {
  const requested = durationToMs(request.longPollingTimeout) ?? defaultPollMs;
  const deadline = callDeadlineMs(call);
  const room = deadline === Infinity ? 30_000 : deadline - Date.now() - 500;
  return Math.max(0, Math.min(requested, room, 30_000));
}

export function brokerMessagingHandlers(ctx: BrokerEndpointContext): grpc.UntypedServiceImplementation {
  const { service } = ctx;
  const mustForward = (call: { metadata: grpc.Metadata }): 'serve' | 'forward' | 'refuse' => {
    if (ctx.isLeader()) return 'serve';
    return header(call, noForwardHeader) === '1' || header(call, forwardedHeader) === '1' ? 'refuse' : 'forward';
  };
  const notLeader = (): { status: V2Status; leader: string | undefined } => {
    const leader = ctx.leaderAddress();
    return { status: { code: 'HA_NOT_AVAILABLE', message: `not the leader of broker group ${ctx.brokerGroup}${leader === undefined ? '; election in progress' : `; leader is ${leader}`}` }, leader };
  };

  /**
   * A unary method: served here on the leader, forwarded to it from a follower, or refused
   * with the leader's address. `forward` passes the request on (decoded, or as bytes for a
   * method registered with identity serializers: see brokerMessagingDefinition).
   */
  const unaryWith = <Req, Res>(
    method: string,
    forward: (request: Req, options: ForwardOptions) => Promise<{ response: Res; trailer: grpc.Metadata | undefined }>,
    serve: (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>,
    errorShape: (status: V2Status) => Res,
  ) => (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>): void => {
    const route = mustForward(call);
    if (route === 'forward') {
      forward(call.request, { target: () => ctx.leaderAddress(), metadata: call.metadata, deadlineMs: callDeadlineMs(call) }).then(
        ({ response, trailer }) => callback(null, response, trailer),
        (error: grpc.ServiceError) => callback(null, errorShape({ code: 'HA_NOT_AVAILABLE', message: `leader of broker group ${ctx.brokerGroup} unreachable: ${error.message}` }), trailerFor(false, undefined)),
      );
      return;
    }
    if (route === 'refuse') {
      const { status, leader } = notLeader();
      callback(null, errorShape(status), trailerFor(true, leader));
      return;
    }
    const client = limitKeyOf(call);
    if (!ctx.limits.tryEnter(client, 'request')) {
      callback(null, errorShape({ code: 'TOO_MANY_REQUESTS', message: ctx.limits.refusal('request') }), trailerFor(true, undefined));
      return;
    }
    serve(call.request, call).then(
      (response) => {
        ctx.limits.leave(client, 'request');
        callback(null, response);
      },
      (error: unknown) => {
        ctx.limits.leave(client, 'request');
        const { status, definite, leader } = statusOf(error);
        if (status.code === 'INTERNAL_SERVER_ERROR') ctx.logger.warn({ err: error, method }, 'call failed');
        callback(null, errorShape(status), trailerFor(definite, leader));
      },
    );
  };
  const unary = (method: string, serve: (request: any, call: grpc.ServerUnaryCall<any, any>) => Promise<any>, errorShape: (status: V2Status) => any = (status) => ({ status })) =>
    unaryWith<any, any>(method, (request, options) => ctx.forwarder.unary(method, request, options), serve, errorShape);
  const unaryBytes = (method: string, serve: (request: Buffer, call: grpc.ServerUnaryCall<Buffer, Buffer>) => Promise<Buffer>, errorShape: (status: V2Status) => Buffer) =>
    unaryWith<Buffer, Buffer>(method, (request, options) => ctx.forwarder.unaryRaw(method, request, options), serve, errorShape);

  /**
   * A server-streaming method, routed as {@link unaryWith} routes; `statusFrame` is the one
   * frame a failed call answers. `forward` passes the request on and collects the frames
   * (decoded, or as bytes for a method registered with an identity response serializer).
   */
  const serverStreamWith = <Frame>(
    method: string,
    forward: (request: any, options: ForwardOptions) => Promise<Frame[]>,
    serve: (request: any, call: grpc.ServerWritableStream<any, Frame>) => Promise<Frame[]>,
    statusFrame: (status: V2Status) => Frame,
  ) => (call: grpc.ServerWritableStream<any, Frame>): void => {
    const route = mustForward(call);
    const finish = (frames: Frame[], trailer?: grpc.Metadata): void => {
      for (const frame of frames) call.write(frame);
      call.end(trailer);
    };
    if (route === 'forward') {
      forward(call.request, { target: () => ctx.leaderAddress(), metadata: call.metadata, deadlineMs: callDeadlineMs(call) }).then(
        (frames) => finish(frames),
        (error: grpc.ServiceError) => finish([statusFrame({ code: 'HA_NOT_AVAILABLE', message: `leader unreachable: ${error.message}` })]),
      );
      return;
    }
    if (route === 'refuse') {
      const { status, leader } = notLeader();
      finish([statusFrame(status)], trailerFor(true, leader));
      return;
    }
    // Both server-streaming methods (ReceiveMessage, PullMessage) are long polls.
    const client = limitKeyOf(call);
    if (!ctx.limits.tryEnter(client, 'poll')) {
      finish([statusFrame({ code: 'TOO_MANY_REQUESTS', message: ctx.limits.refusal('poll') })], trailerFor(true, undefined));
      return;
    }
    serve(call.request, call).then(
      (frames) => {
        ctx.limits.leave(client, 'poll');
        finish(frames);
      },
      (error: unknown) => {
        ctx.limits.leave(client, 'poll');
        const { status, definite, leader } = statusOf(error);
        finish([statusFrame(status)], trailerFor(definite, leader));
      },
    );
  };
  const serverStream = (method: string, serve: (request: any, call: grpc.ServerWritableStream<any, any>) => Promise<any[]>) =>
    serverStreamWith<any>(method, (request, options) => ctx.forwarder.serverStream(method, request, options), serve, (status) => ({ status }));
  const serverStreamBytes = (method: string, serve: (request: any, call: grpc.ServerWritableStream<any, Buffer>) => Promise<Buffer[]>, statusFrame: (status: V2Status) => Buffer) =>
    serverStreamWith<Buffer>(method, (request, options) => ctx.forwarder.serverStreamRaw(method, methodOf(method).definition.requestSerialize(request), options), serve, statusFrame);

  /**
   * The access verdict on a call. A FORBIDDEN depends on the table (an unknown user, a changed
   * secret, a missing permission), so it is judged again once this node's table is current (a
   * restarted node replays its users; a new leader applies its own-term entry first).
   */
  const accessStatus = async (metadata: grpc.Metadata, requirements: readonly Requirement[], skew: 'check' | 'ignore' = 'check'): Promise<V2Status | undefined> => {
    if (ctx.access === undefined) return undefined;
    const verdict = await ctx.access.judge(metadata, requirements, skew);
    // Behind its group, a node does not refuse: it says to try again (HA_NOT_AVAILABLE).
    if (verdict === undefined) return { code: 'HA_NOT_AVAILABLE', message: notCurrentMessage };
    return verdict.ok ? undefined : { code: verdict.code, message: verdict.message };
  };
  /** Refuses the call (UNAUTHORIZED / FORBIDDEN) unless its signer holds `requirements`; checked where a call is served. */
  const requireAccess = async (call: { metadata: grpc.Metadata }, requirements: readonly Requirement[]): Promise<void> => {
    const refused = await accessStatus(call.metadata, requirements);
    if (refused !== undefined) throw new BrokerError(refused.code as BrokerErrorCode, refused.message);
  };
  /** The same as a status, for calls that answer gRPC OK whatever happens (Heartbeat, NotifyClientTermination). */
  const signerStatus = (call: { metadata: grpc.Metadata }, requirements: readonly Requirement[]): Promise<V2Status | undefined> => accessStatus(call.metadata, requirements);
  const groupOf = (request: any): string => {
    const name = String(request.group?.name ?? '');
    const problem = groupNameProblem(name);
    if (problem !== undefined) throw new BrokerError('ILLEGAL_CONSUMER_GROUP', problem);
    return name;
  };
  /** A queue named for another broker group was sent to the wrong node: refuse, do not guess. */
  const checkQueueGroup = (request: any): void => {
    const named = String(request.messageQueue?.broker?.name ?? '');
    if (named !== '' && named !== ctx.brokerGroup) throw new BrokerError('BAD_REQUEST', `this node belongs to broker group ${ctx.brokerGroup}, not ${named}`);
  };
  const handleOf = (text: string) => {
    const handle = parseReceiptHandle(String(text ?? ''));
    if (handle === undefined) throw new BrokerError('INVALID_RECEIPT_HANDLE', `malformed receipt handle ${JSON.stringify(String(text ?? '').slice(0, 80))}`);
    return handle;
  };

  return {
    QueryRoute: unary('QueryRoute', async (request, call) => {
      const name = String(request.topic?.name ?? '');
      // Routes are public, as the NameServer's are (and the official client fetches them before
      // it sends its credentials' settings, whose refusal is what its startup reports); creating
      // a topic on first use is not: that needs Pub.
      let topic = service.state.topic(name);
      if (topic === undefined && service.options.autoCreateTopics) {
        await requireAccess(call, [topicRequirement(name, ['Pub'])]);
        await service.ensureTopic(name);
        topic = service.state.topic(name);
      }
      if (topic === undefined) return { status: { code: 'TOPIC_NOT_FOUND', message: `topic ${name} does not exist` }, messageQueues: [] };
      return { status: okStatus, messageQueues: routeQueues(topic, ctx.brokerGroup, ctx.selfAddress) };
    }),

    Heartbeat: (call: grpc.ServerUnaryCall<any, any>, callback: grpc.sendUnaryData<any>) => {
      const groupName = call.request.group?.name;
      void signerStatus(call, typeof groupName === 'string' && groupName !== '' ? [groupRequirement(groupName)] : []).then((refused) => {
        if (refused !== undefined) {
          callback(null, { status: refused });
          return;
        }
        service.touchClient(clientIdOf(call), String(call.request.clientType ?? ''), groupName ?? undefined);
        if (!ctx.isLeader() && header(call, forwardedHeader) !== '1') {
          const leader = ctx.leaderAddress();
          if (leader !== undefined) ctx.forwarder.unary('Heartbeat', call.request, { target: () => leader, metadata: call.metadata, deadlineMs: Date.now() + 2_000 }).catch(() => undefined);
        }
        callback(null, { status: okStatus });
      });
    },

    Telemetry: (call: grpc.ServerDuplexStream<any, any>) => {
      const clientId = clientIdOf(call);
      // The official Node client (1.0.8) sends its settings as soon as the first topic's route
      // names a new endpoint, but only starts listening for the answer after it has fetched the
      // routes of all its topics: an answer that comes in between is lost and its startup()
      // waits for good (or until its 5-minute settings sync). So the answer is repeated a
      // little later; a client takes each as the same settings.
      const echoes = new Set<NodeJS.Timeout>();
      // The stream's headers are signed once, when the client opens it: the signature is checked
      // then (not its time: see AccessGate.authenticate), the signer's permissions at each settings
      // (a client re-sends them on the same stream for hours).
      const answerSettings = async (settings: any): Promise<void> => {
        const refused = await accessStatus(call.metadata, settingsRequirements(settings), 'ignore');
        if (call.writableEnded || call.destroyed) return;
        if (refused !== undefined) {
          // A status-only command: the official client's startup() fails with its exception (FORBIDDEN: ForbiddenException).
          call.write({ status: refused });
          return;
        }
        const groupName = settings.subscription?.group?.name;
        service.touchClient(clientId, String(settings.clientType ?? ''), groupName ?? undefined);
        const group = groupName === undefined ? undefined : service.state.group(groupName) ?? defaultGroupConfig(groupName);
        const reply = { status: okStatus, settings: settingsReply(settings, group, service.options.maxBodyBytes) };
        ctx.transactionChecks.noteSettings(clientId, call, settings);
        call.write(reply);
        for (const afterMs of settingsEchoDelaysMs) {
          const echo = setTimeout(() => {
            echoes.delete(echo);
            if (!call.writableEnded && !call.destroyed) call.write(reply);
          }, afterMs);
          echoes.add(echo);
        }
      };
      call.on('data', (command: any) => {
        const settings = command?.settings;
        if (settings !== null && settings !== undefined) void answerSettings(settings);
      });
      const stopEchoes = (): void => {
        for (const echo of echoes) clearTimeout(echo);
        echoes.clear();
        ctx.transactionChecks.streamClosed(clientId, call);
      };
      call.on('end', () => {
        stopEchoes();
        call.end();
      });
      call.on('error', stopEchoes);
      call.on('cancelled', stopEchoes);
    },

    NotifyClientTermination: (call: grpc.ServerUnaryCall<any, any>, callback: grpc.sendUnaryData<any>) => {
      // gRPC OK whatever the body says: a gRPC error makes the official client's shutdown() fail half-way.
      void signerStatus(call, []).then((refused) => {
        if (refused !== undefined) {
          callback(null, { status: refused });
          return;
        }
        const clientId = clientIdOf(call);
        if (ctx.isLeader()) {
          service.clientTerminated(clientId).catch(() => undefined);
        } else if (header(call, forwardedHeader) !== '1') {
          const leader = ctx.leaderAddress();
          if (leader !== undefined) ctx.forwarder.unary('NotifyClientTermination', call.request, { target: () => leader, metadata: call.metadata, deadlineMs: Date.now() + 2_000 }).catch(() => undefined);
        }
        callback(null, { status: okStatus });
      });
    },

    SendMessage: unaryBytes('SendMessage', async (request, call) => {
      let messages: SendMessageIn[];
      try {
        messages = decodeSendMessageRequest(request);
      } catch (error) {
        if (error instanceof WireFormatError) throw new BrokerError('BAD_REQUEST', `the SendMessage request is not a valid SendMessageRequest: ${error.message}`);
        throw error;
      }
      if (messages.length === 0) return encodeSendMessageResponse({ code: 'BAD_REQUEST', message: 'no messages to send' }, []);
      if (ctx.access !== undefined) await requireAccess(call, [...new Set(messages.map((message) => message.topic))].map((topic) => topicRequirement(topic, ['Pub'])));
      let requestBodyBytes = 0;
      for (const message of messages) requestBodyBytes += message.body.byteLength;
      if (requestBodyBytes > service.options.requestBodyBytesMax) {
        const status: V2Status = { code: 'MESSAGE_BODY_TOO_LARGE', message: `the request's ${messages.length} message bodies total ${requestBodyBytes} bytes, over the limit of ${service.options.requestBodyBytesMax} per request; send them in smaller batches` };
        return encodeSendMessageResponse(status, messages.map((message) => ({ status, messageId: message.messageId, transactionId: '', offset: 0, recallHandle: '' })));
      }
      const items = messages.map((message): SendItem => {
        try {
          const { input, kind } = messageFromV2(message, service.options.maxBodyBytes);
          return { message: input, kind };
        } catch (error) {
          if (error instanceof BrokerError) return { problem: error };
          throw error;
        }
      });
      const answers = await service.sendEach(items);
      let failed: V2Status | undefined;
      const entries = answers.map((answer, i): SendEntryOut => {
        const messageId = (messages[i] as SendMessageIn).messageId;
        if (answer instanceof BrokerError) {
          const status: V2Status = { code: answer.code, message: answer.message };
          failed ??= status;
          return { status, messageId, transactionId: '', offset: 0, recallHandle: '' };
        }
        // A delayed message has no offset until it is delivered: 0 (the protocol's offset is never negative).
        // Apache answers the message id as the transaction id of a message that is not transactional.
        return { status: okStatus, messageId, transactionId: answer.transactionId || messageId, offset: Math.max(0, answer.offset), recallHandle: answer.recallHandle };
      });
      // An entry's INTERNAL_SERVER_ERROR means its outcome is unknown; every other code is definite.
      return encodeSendMessageResponse(failed ?? okStatus, entries);
    }, (status) => encodeSendMessageResponse(status, [])),

    ReceiveMessage: serverStream('ReceiveMessage', async (request, call) => {
      checkQueueGroup(request);
      const group = groupOf(request);
      const topic = String(request.messageQueue?.topic?.name ?? '');
      await requireAccess(call, [topicRequirement(topic, ['Sub']), groupRequirement(group)]);
      const filter = parseSubscriptionFilter(String(request.filterExpression?.type ?? 'TAG'), String(request.filterExpression?.expression ?? '*'));
      const autoRenew = request.autoRenew === true;
      const groupConfig = await service.requireGroup(group);
      const honourQueue = header(call, queueSelectedHeader) === '1' || (autoRenew && groupConfig.fifo);
      const queueId = honourQueue ? Number(request.messageQueue?.id ?? -1) : -1;
      const batch = Math.min(Math.max(Number(request.batchSize) || receiveBatchMax, 1), receiveBatchMax);
      const invisibleMs = durationToMs(request.invisibleDuration) ?? 30_000;
      if (!autoRenew && (invisibleMs < invisibleMsMin || invisibleMs > invisibleMsMax)) {
        throw new BrokerError('ILLEGAL_INVISIBLE_TIME', `invisible duration must be between ${invisibleMsMin} ms and 12 h, not ${invisibleMs} ms`);
      }
      const clientId = clientIdOf(call);
      service.touchClient(clientId, autoRenew ? 'PUSH_CONSUMER' : 'SIMPLE_CONSUMER', group);
      const delivered = await service.receive({ group, topic, queueId, filter, batch, invisibleMs, autoRenew, clientId, pollMs: pollMsFor(request, call) });
      if (delivered.length === 0) return [{ status: { code: 'MESSAGE_NOT_FOUND', message: 'no new message' } }];
      return [{ status: okStatus }, ...delivered.map((d) => ({ message: messageToV2(d, ctx.selfAddress) })), { deliveryTimestamp: msToTimestamp(Date.now()) }];
    }),

    AckMessage: unary('AckMessage', async (request, call) => {
      const group = groupOf(request);
      await requireAccess(call, consumeRequirements(request, group));
      const entries = await Promise.all((request.entries ?? []).map(async (entry: any) => {
        try {
          await service.ack(group, handleOf(entry.receiptHandle));
          return { messageId: entry.messageId, receiptHandle: entry.receiptHandle, status: okStatus };
        } catch (error) {
          return { messageId: entry.messageId, receiptHandle: entry.receiptHandle, status: statusOf(error).status };
        }
      }));
      const failed = entries.find((entry: { status: V2Status }) => entry.status.code !== 'OK');
      return { status: failed?.status ?? (entries.length > 1 ? { code: 'OK', message: 'OK' } : okStatus), entries };
    }),

    ChangeInvisibleDuration: unary('ChangeInvisibleDuration', async (request, call) => {
      const group = groupOf(request);
      await requireAccess(call, consumeRequirements(request, group));
      const invisibleMs = durationToMs(request.invisibleDuration) ?? 0;
      if (invisibleMs < 0 || invisibleMs > invisibleMsMax) throw new BrokerError('ILLEGAL_INVISIBLE_TIME', `invisible duration must be between 0 and 12 h, not ${invisibleMs} ms`);
      const receiptHandle = await service.changeInvisibleDuration(group, handleOf(request.receiptHandle), invisibleMs);
      return { status: okStatus, receiptHandle };
    }, (status) => ({ status, receiptHandle: '' })),

    ForwardMessageToDeadLetterQueue: unary('ForwardMessageToDeadLetterQueue', async (request, call) => {
      const group = groupOf(request);
      await requireAccess(call, consumeRequirements(request, group));
      await service.forwardToDeadLetterQueue(group, handleOf(request.receiptHandle));
      return { status: okStatus };
    }),

    QueryAssignment: unary('QueryAssignment', async (request, call) => {
      const group = groupOf(request);
      await requireAccess(call, [topicRequirement(String(request.topic?.name ?? ''), ['Sub']), groupRequirement(group)]);
      const topic = service.requireTopic(String(request.topic?.name ?? ''));
      const groupConfig = await service.requireGroup(group);
      const queues = routeQueues(topic, ctx.brokerGroup, ctx.selfAddress).filter((q) => q.permission === 'READ' || q.permission === 'READ_WRITE');
      if (queues.length === 0) return { status: { code: 'FORBIDDEN', message: `topic ${topic.name} has no readable queue` }, assignments: [] };
      if (header(call, rebalanceHeader) === '1') {
        const clientId = clientIdOf(call);
        service.touchClient(clientId, 'PUSH_CONSUMER', group);
        const mine = new Set(service.allocateQueues(group, topic.name, clientId));
        return { status: okStatus, assignments: queues.filter((q) => mine.has(q.id)).map((messageQueue) => ({ messageQueue })) };
      }
      // Pop-style consumers share every queue; FIFO groups get one assignment per queue so
      // the official push consumer runs one ordered receive loop per queue.
      if (groupConfig.fifo) return { status: okStatus, assignments: queues.map((messageQueue) => ({ messageQueue })) };
      return { status: okStatus, assignments: [{ messageQueue: { ...queues[0], id: -1 } }] };
    }, (status) => ({ status, assignments: [] })),

    PullMessage: serverStreamBytes('PullMessage', async (request, call) => {
      checkQueueGroup(request);
      const topic = String(request.messageQueue?.topic?.name ?? '');
      await requireAccess(call, consumeRequirements(request, undefined, topic));
      const filter = parseSubscriptionFilter(String(request.filterExpression?.type ?? 'TAG'), String(request.filterExpression?.expression ?? '*'));
      const batch = Math.min(Math.max(Number(request.batchSize) || 32, 1), 1024);
      const { messages, nextOffset } = await service.pull({
        topic, queueId: Number(request.messageQueue?.id ?? 0), offset: Number(request.offset ?? 0), batch, filter, pollMs: pollMsFor(request, call),
      });
      return pullResponseFrames(messages, nextOffset, ctx.selfAddress);
    }, pullStatusFrame),

    UpdateOffset: unary('UpdateOffset', async (request, call) => {
      checkQueueGroup(request);
      await requireAccess(call, consumeRequirements(request, groupOf(request), String(request.messageQueue?.topic?.name ?? '')));
      await service.updateOffset(groupOf(request), String(request.messageQueue?.topic?.name ?? ''), Number(request.messageQueue?.id ?? 0), Number(request.offset));
      return { status: okStatus };
    }),

    GetOffset: unary('GetOffset', async (request, call) => {
      checkQueueGroup(request);
      await requireAccess(call, consumeRequirements(request, groupOf(request), String(request.messageQueue?.topic?.name ?? '')));
      const offset = await service.getOffset(groupOf(request), String(request.messageQueue?.topic?.name ?? ''), Number(request.messageQueue?.id ?? 0));
      if (offset === undefined) return { status: { code: 'OFFSET_NOT_FOUND', message: 'the group has committed no offset for this queue' }, offset: 0 };
      return { status: okStatus, offset };
    }, (status) => ({ status, offset: 0 })),

    QueryOffset: unary('QueryOffset', async (request, call) => {
      checkQueueGroup(request);
      await requireAccess(call, [topicRequirement(String(request.messageQueue?.topic?.name ?? ''), ['Sub'])]);
      const policy = String(request.queryOffsetPolicy ?? 'BEGINNING') as 'BEGINNING' | 'END' | 'TIMESTAMP';
      const offset = await service.queryOffset(String(request.messageQueue?.topic?.name ?? ''), Number(request.messageQueue?.id ?? 0), policy, timestampToMs(request.timestamp) ?? 0);
      return { status: okStatus, offset };
    }, (status) => ({ status, offset: 0 })),

    RecallMessage: unary('RecallMessage', async (request, call) => {
      const topic = String(request.topic?.name ?? '');
      await requireAccess(call, [topicRequirement(topic, ['Pub'])]);
      const problem = topicNameProblem(topic);
      if (problem !== undefined) throw new BrokerError('ILLEGAL_TOPIC', problem);
      const text = String(request.recallHandle ?? '');
      const handle = parseRecallHandle(text);
      if (handle === undefined) throw new BrokerError('INVALID_RECEIPT_HANDLE', `malformed recall handle ${JSON.stringify(text.slice(0, 80))}`);
      return { status: okStatus, messageId: await service.recall(topic, handle) };
    }, (status) => ({ status, messageId: '' })),

    EndTransaction: unary('EndTransaction', async (request, call) => {
      const topic = String(request.topic?.name ?? '');
      await requireAccess(call, [topicRequirement(topic, ['Pub'])]);
      const problem = topicNameProblem(topic);
      if (problem !== undefined) throw new BrokerError('ILLEGAL_TOPIC', problem);
      const text = String(request.transactionId ?? '');
      const id = parseTransactionId(text);
      if (id === undefined) throw new BrokerError('INVALID_TRANSACTION_ID', `malformed transaction id ${JSON.stringify(text.slice(0, 80))}`);
      const messageId = String(request.messageId ?? '');
      if (messageId === '') throw new BrokerError('ILLEGAL_MESSAGE_ID', 'EndTransaction needs the message id of the transaction');
      const resolution = String(request.resolution ?? '');
      if (resolution !== 'COMMIT' && resolution !== 'ROLLBACK') throw new BrokerError('BAD_REQUEST', `transaction resolution must be COMMIT or ROLLBACK, not ${JSON.stringify(resolution)}`);
      await service.endTransaction(topic, id, messageId, resolution === 'COMMIT');
      return { status: okStatus };
    }),
  };
}
