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
import { messagingServiceDefinition, okStatus, type V2Status } from '../util/rocketmq-v2.js';
import { callDeadlineMs, Forwarder } from './forwarder.js';
import { splitAddress } from './messaging-service.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader objects are untyped at this edge */

const namesrvDefinition = (grpc.loadPackageDefinition(loadProtoFile('namesrv.proto')) as any).raftmq.namesrv.v1.NameServer.service as grpc.ServiceDefinition;

export interface NameServerConfig {
  readonly address: string;
  /** Empty: no access point. */
  readonly accessPointAddress: string;
  readonly expiryMs: number;
  readonly holdMs: number;
  readonly logLevel: string;
}

export const defaultNameServerSettings = { expiryMs: 6_000, holdMs: 2_500, logLevel: 'info' } as const;

export class NameServerProcess {
  readonly registry: RouteRegistry;
  private readonly forwarder: Forwarder;
  private readonly servers: grpc.Server[] = [];
  private expiryTimer: NodeJS.Timeout | undefined;
  readonly logger: pino.Logger;

  private constructor(readonly config: NameServerConfig) {
    this.registry = new RouteRegistry(config.expiryMs);
    this.forwarder = new Forwarder(config.holdMs);
    this.logger = pino({ level: config.logLevel, base: { role: 'namesrv', pid: process.pid } });
  }

  static async start(config: NameServerConfig): Promise<NameServerProcess> {
    for (const address of [config.address, config.accessPointAddress]) {
      if (address !== '' && !/^[^:\s]+:\d{1,5}$/.test(address)) throw new Error(`address ${JSON.stringify(address)} is not host:port`);
    }
    if (!(config.expiryMs >= 100)) throw new Error(`expiryMs must be at least 100, not ${config.expiryMs}`);
    const instance = new NameServerProcess(config);
    const namesrv = new grpc.Server();
    namesrv.addService(namesrvDefinition, instance.namesrvHandlers());
    await bind(namesrv, config.address);
    instance.servers.push(namesrv);
    if (config.accessPointAddress !== '') {
      const access = new grpc.Server({ 'grpc.max_receive_message_length': 64 * 1024 * 1024, 'grpc.max_send_message_length': 64 * 1024 * 1024 });
      access.addService(messagingServiceDefinition, instance.accessPointHandlers());
      await bind(access, config.accessPointAddress);
      instance.servers.push(access);
    }
    instance.expiryTimer = setInterval(() => {
      for (const dropped of instance.registry.expire(Date.now())) instance.logger.info({ group: dropped.group, nodeId: dropped.nodeId, address: dropped.address }, 'broker registration expired');
    }, Math.max(100, Math.floor(config.expiryMs / 3)));
    instance.expiryTimer.unref();
    instance.logger.info({ namesrv: config.address, accessPoint: config.accessPointAddress }, 'NameServer listening');
    return instance;
  }

  async close(): Promise<void> {
    if (this.expiryTimer !== undefined) clearInterval(this.expiryTimer);
    this.forwarder.close();
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

  private leaderOf(group: string): () => string | undefined {
    return () => this.registry.group(group, Date.now())?.leader?.address;
  }

  /** Groups for a topic; when no group hosts it yet, every group (one may auto-create it). */
  private groupsFor(topic: string): GroupRoute[] {
    const hosting = this.registry.routesFor(topic, Date.now());
    return hosting.length > 0 ? hosting : this.registry.groups(Date.now()).slice(0, 1);
  }

  private rewriteEndpoints(queue: any): any {
    const [host, port] = splitAddress(this.config.accessPointAddress);
    return { ...queue, broker: { ...queue.broker, endpoints: { scheme: /^\d+\.\d+\.\d+\.\d+$/.test(host) ? 'IPv4' : 'DOMAIN_NAME', addresses: [{ host, port }] } } };
  }

  private accessPointHandlers(): grpc.UntypedServiceImplementation {
    const noGroup = (what: string): V2Status => ({ code: 'HA_NOT_AVAILABLE', message: `no broker group is registered ${what}` });
    const forward = (method: string, pickGroup: (request: any) => string | undefined, errorShape: (status: V2Status) => any = (status) => ({ status })) =>
      (call: grpc.ServerUnaryCall<any, any>, callback: grpc.sendUnaryData<any>): void => {
        const group = pickGroup(call.request);
        if (group === undefined) {
          callback(null, errorShape(noGroup('for this request')));
          return;
        }
        this.forwarder.unary(method, call.request, { target: this.leaderOf(group), metadata: call.metadata, deadlineMs: callDeadlineMs(call) }).then(
          ({ response, trailer }) => callback(null, response, trailer),
          (error: Error) => callback(null, errorShape({ code: 'HA_NOT_AVAILABLE', message: `broker group ${group} has no reachable leader: ${error.message}` })),
        );
      };
    const forwardStream = (method: string, pickGroup: (request: any) => string | undefined) => (call: grpc.ServerWritableStream<any, any>): void => {
      const group = pickGroup(call.request);
      const finish = (frames: any[]): void => {
        for (const frame of frames) call.write(frame);
        call.end();
      };
      if (group === undefined) {
        finish([{ status: noGroup('for this request') }]);
        return;
      }
      this.forwarder.serverStream(method, call.request, { target: this.leaderOf(group), metadata: call.metadata, deadlineMs: callDeadlineMs(call) }).then(
        (frames) => finish(frames),
        (error: Error) => finish([{ status: { code: 'HA_NOT_AVAILABLE', message: `broker group ${group} has no reachable leader: ${error.message}` } }]),
      );
    };
    const byQueue = (request: any): string | undefined => request.messageQueue?.broker?.name || this.groupsFor(String(request.messageQueue?.topic?.name ?? ''))[0]?.group;
    const byHandle = (handle: string, topic: string): string | undefined => parseReceiptHandle(String(handle ?? ''))?.brokerGroup ?? this.groupsFor(topic)[0]?.group;
    const broadcast = (method: string) => (call: grpc.ServerUnaryCall<any, any>, callback: grpc.sendUnaryData<any>): void => {
      for (const group of this.registry.groups(Date.now())) {
        this.forwarder.unary(method, call.request, { target: this.leaderOf(group.group), metadata: call.metadata, deadlineMs: Date.now() + 2_000 }).catch(() => undefined);
      }
      callback(null, { status: okStatus });
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
      SendMessage: forward('SendMessage', (request) => {
        const first = request.messages?.[0];
        const groups = this.groupsFor(String(first?.topic?.name ?? ''));
        if (groups.length === 0) return undefined;
        const key = String(first?.systemProperties?.messageGroup ?? '');
        return groups[(key === '' ? Math.floor(Math.random() * groups.length) : stableHash(key) % groups.length)]?.group;
      }, (status) => ({ status, entries: [] })),
      ReceiveMessage: forwardStream('ReceiveMessage', byQueue),
      PullMessage: forwardStream('PullMessage', byQueue),
      AckMessage: forward('AckMessage', (request) => byHandle(request.entries?.[0]?.receiptHandle, String(request.topic?.name ?? ''))),
      ChangeInvisibleDuration: forward('ChangeInvisibleDuration', (request) => byHandle(request.receiptHandle, String(request.topic?.name ?? '')), (status) => ({ status, receiptHandle: '' })),
      ForwardMessageToDeadLetterQueue: forward('ForwardMessageToDeadLetterQueue', (request) => byHandle(request.receiptHandle, String(request.topic?.name ?? ''))),
      // A recall goes to the group that stored the delayed message (its recall handle names it).
      RecallMessage: forward('RecallMessage', (request) => parseRecallHandle(String(request.recallHandle ?? ''))?.brokerGroup ?? this.groupsFor(String(request.topic?.name ?? ''))[0]?.group,
        (status) => ({ status, messageId: '' })),
      UpdateOffset: forward('UpdateOffset', byQueue),
      GetOffset: forward('GetOffset', byQueue, (status) => ({ status, offset: 0 })),
      QueryOffset: forward('QueryOffset', byQueue, (status) => ({ status, offset: 0 })),
      // To the group holding the half message (its transaction id names it).
      EndTransaction: forward('EndTransaction', (request) => parseTransactionId(String(request.transactionId ?? ''))?.brokerGroup ?? this.groupsFor(String(request.topic?.name ?? ''))[0]?.group),
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

function bind(server: grpc.Server, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (error) => (error === null ? resolve() : reject(new Error(`cannot listen on ${address}: ${error.message}`))));
  });
}
