/**
 * The NameServer process: the route registry (namesrv.proto) on one address and the access
 * point (apache.rocketmq.v2.MessagingService) on another. The access point is the stable
 * address official clients are given: it forwards each call to the current leader of the
 * right broker group and holds calls while a group elects (DESIGN §1).
 */
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { parseRecallHandle } from '../broker/core/recall-handle.js';
import { parseReceiptHandle } from '../broker/core/receipt-handle.js';
import { parseTransactionId } from '../broker/core/transaction-id.js';
import { stableHash } from '../broker/core/broker-state.js';
import { RouteRegistry, type GroupRoute, type Registration } from '../namesrv/route-registry.js';
import { loadProtoFile } from '../util/proto-files.js';
import { identityBytes, messagingServiceDefinition, okStatus, type V2Status } from '../util/rocketmq-v2.js';
import { callDeadlineMs, Forwarder } from './forwarder.js';
import { serverConnectionOptions } from './grpc-raft-transport.js';
import { RefusalLog } from './refusal-log.js';
import { callCertificate, certificateRefusal, TlsMaterial, type TlsFiles } from './tls.js';
import { splitAddress } from './messaging-service.js';
import { requestRouting, stringAt, WireFormatError, type FieldPath } from './v2-wire.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader objects are untyped at this edge */

const namesrvDefinition = (grpc.loadPackageDefinition(loadProtoFile('namesrv.proto')) as any).raftmq.namesrv.v1.NameServer.service as grpc.ServiceDefinition;

export interface NameServerConfig {
  readonly address: string;
  /** Empty: no access point. */
  readonly accessPointAddress: string;
  readonly expiryMs: number;
  readonly holdMs: number;
  readonly logLevel: string;
  /**
   * TLS on both listeners, and to the brokers; with it a broker registers only over a
   * connection whose certificate names the node it registers (tls.ts). Default plaintext.
   */
  readonly tls?: TlsFiles;
}

export const defaultNameServerSettings = { expiryMs: 6_000, holdMs: 2_500, logLevel: 'info' } as const;

/** Memoised per-group leader targets kept at most (see leaderOf). */
const leaderTargetsMax = 1_024;

/** Methods whose request the access point passes on as bytes (and the response back as bytes). */
const bytesMethods: ReadonlySet<string> = new Set([
  'SendMessage', 'ReceiveMessage', 'PullMessage', 'AckMessage', 'ChangeInvisibleDuration', 'ForwardMessageToDeadLetterQueue', 'RecallMessage',
  'UpdateOffset', 'GetOffset', 'QueryOffset', 'EndTransaction', 'Heartbeat', 'NotifyClientTermination',
]);

/** MessagingService with identity (de)serializers for {@link bytesMethods}; the rest decode as usual. */
const accessPointDefinition: grpc.ServiceDefinition = Object.fromEntries(Object.entries(messagingServiceDefinition).map(([method, definition]) => [
  method, bytesMethods.has(method) ? { ...definition, requestDeserialize: identityBytes, responseSerialize: identityBytes } : definition,
]));

function encodeResponse(method: string, response: unknown): Buffer {
  const definition = messagingServiceDefinition[method];
  if (definition === undefined) throw new RangeError(`MessagingService has no method ${method}`);
  return definition.responseSerialize(response);
}

/**
 * The leader itself refused the request's bytes (gRPC's own answer to input it cannot
 * decode): passed on to the client as it is, as the access point answered when it decoded
 * every request itself. Every other failure means no leader was reached.
 */
function isLeaderAnswer(error: Error): error is grpc.ServiceError {
  const { code, details } = error as Partial<grpc.ServiceError>;
  return code === grpc.status.INTERNAL && typeof details === 'string' && details.startsWith('Error deserializing request');
}

export class NameServerProcess {
  readonly registry: RouteRegistry;
  private readonly forwarder: Forwarder;
  private readonly servers: grpc.Server[] = [];
  private expiryTimer: NodeJS.Timeout | undefined;
  readonly logger: pino.Logger;
  private readonly tls: TlsMaterial | undefined;
  private readonly refusals: RefusalLog;

  private constructor(readonly config: NameServerConfig) {
    this.registry = new RouteRegistry(config.expiryMs);
    this.logger = pino({ level: config.logLevel, base: { role: 'namesrv', pid: process.pid } });
    this.refusals = new RefusalLog(this.logger);
    this.tls = config.tls === undefined ? undefined : new TlsMaterial(config.tls, this.logger);
    this.forwarder = new Forwarder(config.holdMs, this.tls?.channelCredentials());
  }

  static async start(config: NameServerConfig): Promise<NameServerProcess> {
    for (const address of [config.address, config.accessPointAddress]) {
      if (address !== '' && !/^[^:\s]+:\d{1,5}$/.test(address)) throw new Error(`address ${JSON.stringify(address)} is not host:port`);
    }
    if (!(config.expiryMs >= 100)) throw new Error(`expiryMs must be at least 100, not ${config.expiryMs}`);
    const instance = new NameServerProcess(config);
    const namesrv = new grpc.Server(serverConnectionOptions);
    namesrv.addService(namesrvDefinition, instance.namesrvHandlers());
    const credentials = instance.tls?.serverCredentials() ?? grpc.ServerCredentials.createInsecure();
    await bind(namesrv, config.address, credentials);
    instance.servers.push(namesrv);
    if (config.accessPointAddress !== '') {
      const access = new grpc.Server({ 'grpc.max_receive_message_length': 64 * 1024 * 1024, 'grpc.max_send_message_length': 64 * 1024 * 1024, ...serverConnectionOptions });
      access.addService(accessPointDefinition, instance.accessPointHandlers());
      await bind(access, config.accessPointAddress, credentials);
      instance.servers.push(access);
    }
    instance.expiryTimer = setInterval(() => {
      for (const dropped of instance.registry.expire(Date.now())) instance.logger.info({ group: dropped.group, nodeId: dropped.nodeId, address: dropped.address }, 'broker registration expired');
    }, Math.max(100, Math.floor(config.expiryMs / 3)));
    instance.expiryTimer.unref();
    instance.logger.info({ namesrv: config.address, accessPoint: config.accessPointAddress, tls: instance.tls !== undefined }, 'NameServer listening');
    return instance;
  }

  async close(): Promise<void> {
    if (this.expiryTimer !== undefined) clearInterval(this.expiryTimer);
    this.forwarder.close();
    this.tls?.close();
    await Promise.all(this.servers.map((server) => new Promise<void>((resolve) => {
      const force = setTimeout(() => server.forceShutdown(), 500);
      server.tryShutdown(() => { clearTimeout(force); resolve(); });
    })));
  }

  private namesrvHandlers(): grpc.UntypedServiceImplementation {
    return {
      Register: (call: grpc.ServerUnaryCall<any, any>, callback: grpc.sendUnaryData<any>) => {
        const registration = call.request as Registration;
        if (registration.group === '' || registration.nodeId === '' || !/^[^:\s]+:\d{1,5}$/.test(registration.address)) {
          callback({ code: grpc.status.INVALID_ARGUMENT, details: 'a registration needs a group, a node id and a host:port address' });
          return;
        }
        const refusal = this.tls === undefined ? undefined : certificateRefusal(callCertificate(call), registration.group, registration.nodeId);
        if (refusal !== undefined) {
          this.refusals.warn({ group: registration.group, nodeId: registration.nodeId, peer: call.getPeer(), err: refusal }, 'broker registration refused');
          callback({ code: grpc.status.PERMISSION_DENIED, details: `registration refused: ${refusal}` });
          return;
        }
        const before = this.registry.group(registration.group, Date.now())?.leader?.nodeId;
        this.registry.register(registration, Date.now());
        const after = this.registry.group(registration.group, Date.now());
        if (after?.leader?.nodeId !== before) this.logger.info({ group: registration.group, leader: after?.leader?.nodeId, term: after?.term }, 'group leader changed');
        callback(null, { expiryMs: this.config.expiryMs });
      },
      GetRoutes: (call: grpc.ServerUnaryCall<any, any>, callback: grpc.sendUnaryData<any>) => {
        const topic = String(call.request.topic ?? '');
        const groups = topic === '' ? this.registry.groups(Date.now()) : this.registry.routesFor(topic, Date.now());
        callback(null, { groups: groups.map(groupRouteToProto) });
      },
      GetCluster: (_call: grpc.ServerUnaryCall<any, any>, callback: grpc.sendUnaryData<any>) => {
        callback(null, { nodes: this.registry.view(Date.now()).map((n) => ({ registration: n.registration, lastSeenMsAgo: n.ageMs, isLeader: n.isLeader })) });
      },
    };
  }

  // ---- access point ----------------------------------------------------------------------

  /** One target function per group, so that calls waiting on one group share its checks. */
  private readonly leaderTargets = new Map<string, () => string | undefined>();

  private leaderOf(group: string): () => string | undefined {
    let target = this.leaderTargets.get(group);
    if (target === undefined) {
      target = () => this.registry.group(group, Date.now())?.leader?.address;
      // Group names can come from requests (a queue's broker name): keep the memo bounded.
      if (this.leaderTargets.size >= leaderTargetsMax) this.leaderTargets.clear();
      this.leaderTargets.set(group, target);
    }
    return target;
  }

  /** Groups for a topic; when no group hosts it yet, every group (one may auto-create it). */
  private groupsFor(topic: string): readonly GroupRoute[] {
    const hosting = this.registry.routesFor(topic, Date.now());
    return hosting.length > 0 ? hosting : this.registry.groups(Date.now()).slice(0, 1);
  }

  private rewriteEndpoints(queue: any): any {
    const [host, port] = splitAddress(this.config.accessPointAddress);
    return { ...queue, broker: { ...queue.broker, endpoints: { scheme: /^\d+\.\d+\.\d+\.\d+$/.test(host) ? 'IPv4' : 'DOMAIN_NAME', addresses: [{ host, port }] } } };
  }

  /**
   * The access point's handlers. Calls that it passes on unchanged (every data path) are
   * handled as bytes: the routing fields are read from the wire (v2-wire.ts) and the request
   * and the leader's response travel as they are. QueryRoute and QueryAssignment (whose
   * answers advertise this address) and Telemetry (which fans out) are decoded.
   */
  private accessPointHandlers(): grpc.UntypedServiceImplementation {
    const noGroup = (what: string): V2Status => ({ code: 'HA_NOT_AVAILABLE', message: `no broker group is registered ${what}` });
    const unreachable = (group: string, error: Error): V2Status => ({ code: 'HA_NOT_AVAILABLE', message: `broker group ${group} has no reachable leader: ${error.message}` });
    /** Reads the group to route to; a request the wire reader cannot parse is answered as gRPC answers undecodable input. */
    const routeOf = (request: Buffer, pickGroup: (request: Buffer) => string | undefined): { group: string | undefined } | grpc.ServiceError => {
      try {
        return { group: pickGroup(request) };
      } catch (error) {
        if (!(error instanceof WireFormatError)) throw error;
        return Object.assign(new Error('Error deserializing request'), { code: grpc.status.INTERNAL, details: 'Error deserializing request', metadata: new grpc.Metadata() });
      }
    };
    const forward = (method: string, pickGroup: (request: Buffer) => string | undefined, errorShape: (status: V2Status) => any = (status) => ({ status })) => {
      const encode = (status: V2Status): Buffer => encodeResponse(method, errorShape(status));
      return (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>): void => {
        const route = routeOf(call.request, pickGroup);
        if (!('group' in route)) {
          callback(route);
          return;
        }
        const { group } = route;
        if (group === undefined) {
          callback(null, encode(noGroup('for this request')));
          return;
        }
        this.forwarder.unaryRaw(method, call.request, { target: this.leaderOf(group), metadata: call.metadata, deadlineMs: callDeadlineMs(call) }).then(
          ({ response, trailer }) => callback(null, response, trailer),
          (error: Error) => (isLeaderAnswer(error) ? callback(error) : callback(null, encode(unreachable(group, error)))),
        );
      };
    };
    const forwardStream = (method: string, pickGroup: (request: Buffer) => string | undefined) => {
      const encode = (status: V2Status): Buffer => encodeResponse(method, { status });
      return (call: grpc.ServerWritableStream<Buffer, Buffer>): void => {
        const finish = (frames: readonly Buffer[]): void => {
          for (const frame of frames) call.write(frame);
          call.end();
        };
        const route = routeOf(call.request, pickGroup);
        if (!('group' in route)) {
          call.emit('error', route);
          return;
        }
        const { group } = route;
        if (group === undefined) {
          finish([encode(noGroup('for this request'))]);
          return;
        }
        this.forwarder.serverStreamRaw(method, call.request, { target: this.leaderOf(group), metadata: call.metadata, deadlineMs: callDeadlineMs(call) }).then(
          (frames) => finish(frames),
          (error: Error) => (isLeaderAnswer(error) ? call.emit('error', error) : finish([encode(unreachable(group, error))])),
        );
      };
    };
    /** By the queue's broker name, else by its topic. */
    const byQueue = (paths: { readonly queueBroker: FieldPath; readonly queueTopic: FieldPath }) => (request: Buffer): string | undefined =>
      stringAt(request, paths.queueBroker) || this.groupsFor(stringAt(request, paths.queueTopic))[0]?.group;
    /** By the group a receipt handle names, else by the topic. */
    const byHandle = (paths: { readonly handle: FieldPath; readonly topic: FieldPath }) => (request: Buffer): string | undefined =>
      parseReceiptHandle(stringAt(request, paths.handle))?.brokerGroup ?? this.groupsFor(stringAt(request, paths.topic))[0]?.group;
    const okAnswer = (method: string): Buffer => encodeResponse(method, { status: okStatus });
    const broadcast = (method: string) => {
      const ok = okAnswer(method);
      return (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>): void => {
        for (const group of this.registry.groups(Date.now())) {
          this.forwarder.unaryRaw(method, call.request, { target: this.leaderOf(group.group), metadata: call.metadata, deadlineMs: Date.now() + 2_000 }).catch(() => undefined);
        }
        callback(null, ok);
      };
    };
    /** Calls every group that hosts the topic and merges their queue lists under our address. */
    const gather = (method: string, field: 'messageQueues' | 'assignments') => (call: grpc.ServerUnaryCall<any, any>, callback: grpc.sendUnaryData<any>): void => {
      const groups = this.groupsFor(String(call.request.topic?.name ?? ''));
      if (groups.length === 0) {
        callback(null, { status: noGroup('yet'), [field]: [] });
        return;
      }
      Promise.all(groups.map((g) => this.forwarder.unary(method, call.request, { target: this.leaderOf(g.group), metadata: call.metadata, deadlineMs: callDeadlineMs(call) })
        .then(({ response }) => response, (error: Error) => ({ status: { code: 'HA_NOT_AVAILABLE', message: error.message }, [field]: [] })))).then((responses) => {
        const ok = responses.filter((r) => r.status?.code === 'OK');
        if (ok.length === 0) {
          callback(null, responses[0]);
          return;
        }
        const items = ok.flatMap((r) => r[field] ?? []).map((item: any) => (field === 'messageQueues' ? this.rewriteEndpoints(item) : { messageQueue: this.rewriteEndpoints(item.messageQueue) }));
        callback(null, { status: okStatus, [field]: items });
      }, (error: Error) => callback(null, { status: { code: 'INTERNAL_SERVER_ERROR', message: error.message }, [field]: [] }));
    };
    return {
      QueryRoute: gather('QueryRoute', 'messageQueues'),
      QueryAssignment: gather('QueryAssignment', 'assignments'),
      Heartbeat: broadcast('Heartbeat'),
      NotifyClientTermination: broadcast('NotifyClientTermination'),
      // The first message's topic's groups, and among them the message group's (by hash) or any.
      SendMessage: forward('SendMessage', (request) => {
        const groups = this.groupsFor(stringAt(request, requestRouting.SendMessage.topic));
        if (groups.length === 0) return undefined;
        const key = stringAt(request, requestRouting.SendMessage.messageGroup);
        return groups[(key === '' ? Math.floor(Math.random() * groups.length) : stableHash(key) % groups.length)]?.group;
      }, (status) => ({ status, entries: [] })),
      ReceiveMessage: forwardStream('ReceiveMessage', byQueue(requestRouting.ReceiveMessage)),
      PullMessage: forwardStream('PullMessage', byQueue(requestRouting.PullMessage)),
      AckMessage: forward('AckMessage', byHandle(requestRouting.AckMessage)),
      ChangeInvisibleDuration: forward('ChangeInvisibleDuration', byHandle(requestRouting.ChangeInvisibleDuration), (status) => ({ status, receiptHandle: '' })),
      ForwardMessageToDeadLetterQueue: forward('ForwardMessageToDeadLetterQueue', byHandle(requestRouting.ForwardMessageToDeadLetterQueue)),
      // A recall goes to the group that stored the delayed message (its recall handle names it).
      RecallMessage: forward('RecallMessage', (request) => parseRecallHandle(stringAt(request, requestRouting.RecallMessage.handle))?.brokerGroup
        ?? this.groupsFor(stringAt(request, requestRouting.RecallMessage.topic))[0]?.group, (status) => ({ status, messageId: '' })),
      UpdateOffset: forward('UpdateOffset', byQueue(requestRouting.UpdateOffset)),
      GetOffset: forward('GetOffset', byQueue(requestRouting.GetOffset), (status) => ({ status, offset: 0 })),
      QueryOffset: forward('QueryOffset', byQueue(requestRouting.QueryOffset), (status) => ({ status, offset: 0 })),
      // To the group holding the half message (its transaction id names it).
      EndTransaction: forward('EndTransaction', (request) => parseTransactionId(stringAt(request, requestRouting.EndTransaction.handle))?.brokerGroup
        ?? this.groupsFor(stringAt(request, requestRouting.EndTransaction.topic))[0]?.group),
      Telemetry: (call: grpc.ServerDuplexStream<any, any>) => this.proxyTelemetry(call),
    };
  }

  /**
   * Telemetry is a long-lived bidi stream: pipe it to a leader (its answers need the group's
   * settings). When that leader goes away, reconnect to the next one and re-send the client's
   * last settings, so the client never sees its stream break (official clients treat a broken
   * stream badly). The client's own end or cancel ends everything.
   *
   * Every other group gets a stream too, with the same settings: a transaction check-back
   * (RecoverOrphanedTransactionCommand) comes from the group that holds the transaction, down
   * a stream of that group's. Only the first stream's settings answers go to the client (the
   * groups' answers may differ, and one is what the client asked for).
   */
  private proxyTelemetry(call: grpc.ServerDuplexStream<any, any>): void {
    let upstream: grpc.ClientDuplexStream<any, any> | undefined;
    let upstreamGroup: string | undefined;
    const others = new Map<string, grpc.ClientDuplexStream<any, any>>();
    let lastSettings: any;
    const pending: any[] = [];
    let ended = false;
    let connecting = false;
    const connectOthers = (): void => {
      if (ended || lastSettings === undefined) return;
      for (const group of this.registry.groups(Date.now())) {
        if (group.group === upstreamGroup || others.has(group.group) || group.leader === undefined) continue;
        const stream = this.forwarder.telemetry(group.leader.address, call.metadata);
        others.set(group.group, stream);
        const drop = (): void => {
          if (others.get(group.group) !== stream) return;
          others.delete(group.group);
          stream.cancel();
        };
        stream.on('data', (command: any) => {
          if (!ended && others.get(group.group) === stream && (command?.settings === undefined || command?.settings === null)) call.write(command);
        });
        stream.on('error', drop);
        stream.on('end', drop);
        stream.write(lastSettings);
      }
    };
    const othersTimer = setInterval(connectOthers, 1_000);
    othersTimer.unref();
    const finish = (): void => {
      if (ended) return;
      ended = true;
      clearInterval(othersTimer);
      upstream?.cancel();
      for (const stream of others.values()) stream.cancel();
      others.clear();
    };
    const connect = (): void => {
      if (ended || connecting) return;
      connecting = true;
      const attempt = (): void => {
        if (ended) return;
        const group = this.registry.groups(Date.now()).find((g) => g.leader !== undefined);
        if (group?.leader === undefined) {
          setTimeout(attempt, 100);
          return;
        }
        const stream = this.forwarder.telemetry(group.leader.address, call.metadata);
        upstream = stream;
        upstreamGroup = group.group;
        // This group's own secondary stream, if it had one, is the primary now.
        others.get(group.group)?.cancel();
        others.delete(group.group);
        connecting = false;
        const reconnect = (): void => {
          if (upstream !== stream || ended) return;
          upstream = undefined;
          stream.cancel();
          setTimeout(connect, 100);
        };
        stream.on('data', (command: any) => { if (!ended && upstream === stream) call.write(command); });
        stream.on('error', reconnect);
        stream.on('end', reconnect);
        if (lastSettings !== undefined && pending.length === 0) stream.write(lastSettings);
        for (const command of pending.splice(0)) stream.write(command);
      };
      attempt();
    };
    call.on('data', (command: any) => {
      if (command?.settings !== undefined && command?.settings !== null) lastSettings = command;
      if (upstream === undefined) pending.push(command);
      else upstream.write(command);
      for (const stream of others.values()) stream.write(command);
      connectOthers();
    });
    call.on('end', () => {
      upstream?.end();
      for (const stream of others.values()) stream.end();
      finish();
      call.end();
    });
    call.on('error', finish);
    call.on('cancelled', finish);
    connect();
  }
}

function groupRouteToProto(group: GroupRoute): object {
  return {
    group: group.group, leaderAddress: group.leader?.address ?? '', leaderId: group.leader?.nodeId ?? '', term: group.term,
    addresses: group.members.map((m) => m.address), topics: group.topics,
  };
}

function bind(server: grpc.Server, address: string, credentials: grpc.ServerCredentials): Promise<void> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, credentials, (error) => (error === null ? resolve() : reject(new Error(`cannot listen on ${address}: ${error.message}`))));
  });
}
