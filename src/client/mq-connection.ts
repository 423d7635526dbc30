/**
 * The shared plumbing of our client: routes from the NameServers, one v2 channel per broker
 * address, calls that go straight to a group's leader and follow "not the leader" answers,
 * and errors that say whether the outcome is definite or unknown.
 */
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { loadProtoFile } from '../util/proto-files.js';
import { clientChannelOptions, leaderHeader, MessagingClient, noForwardHeader, outcomeHeader, queueSelectedHeader } from '../util/rocketmq-v2.js';
import { clientChannelCredentials, type ClientTlsOptions } from './channel-security.js';
import { signRequest, type Credentials } from '../util/request-signature.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader objects are untyped at this edge */

const namesrvPackage = (grpc.loadPackageDefinition(loadProtoFile('namesrv.proto')) as any).raftmq.namesrv.v1;
const NameServerClient = namesrvPackage.NameServer as grpc.ServiceClientConstructor;

/**
 * Every client error says whether the operation certainly did not happen (`definite`) or may
 * have happened (`!definite`: a write whose answer was lost, a leader that died mid-call).
 */
export class MQClientError extends Error {
  override readonly name = 'MQClientError';
  constructor(readonly code: string, message: string, readonly definite: boolean, options?: ErrorOptions) {
    super(message, options);
  }
}

export interface TopicRoute {
  readonly name: string;
  readonly readQueues: number;
  readonly writeQueues: number;
  readonly perm: number;
  readonly messageType: string;
}

export interface GroupRoute {
  readonly group: string;
  readonly leaderAddress: string;
  readonly addresses: readonly string[];
  readonly topics: readonly TopicRoute[];
}

export interface ConnectionOptions {
  readonly nameServers: readonly string[];
  /** Per-call deadline (default 3 s). */
  readonly requestTimeoutMs?: number;
  /** How long to keep looking for a leader while a group elects (default 5 s). */
  readonly leaderWaitMs?: number;
  readonly clientId?: string;
  /** TLS to the NameServers and brokers (default plaintext). */
  readonly tls?: ClientTlsOptions;
  /** Sign every call as this user (RocketMQ 5's access key and secret, as the official client's sessionCredentials). */
  readonly sessionCredentials?: Credentials;
}

let clientCounter = 0;

export function newClientId(): string {
  return `${hostname()}@${process.pid}@${clientCounter++}@${Date.now().toString(36)}`;
}

const routeRefreshMs = 30_000;

export class MQConnection {
  readonly clientId: string;
  readonly requestTimeoutMs: number;
  /** For every channel this connection and its users (admin, pull streams) open. */
  readonly credentials: grpc.ChannelCredentials;
  private readonly leaderWaitMs: number;
  private readonly namesrv: any[];
  private readonly channels = new Map<string, any>();
  private readonly routeCache = new Map<string, { groups: GroupRoute[]; fetchedMs: number }>();
  /** Leaders learnt from not-leader answers, fresher than the NameServer's view. */
  private readonly leaders = new Map<string, string>();
  private closed = false;

  constructor(readonly options: ConnectionOptions) {
    if (options.nameServers.length === 0) throw new MQClientError('BAD_REQUEST', 'name at least one NameServer address', true);
    this.clientId = options.clientId ?? newClientId();
    this.requestTimeoutMs = options.requestTimeoutMs ?? 3_000;
    this.leaderWaitMs = options.leaderWaitMs ?? 5_000;
    this.credentials = clientChannelCredentials(options.tls);
    this.namesrv = options.nameServers.map((address) => new NameServerClient(address, this.credentials, { 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 1_000 }));
  }

  close(): void {
    this.closed = true;
    for (const channel of this.channels.values()) channel.close();
    for (const client of this.namesrv) client.close();
  }

  // ---- NameServer --------------------------------------------------------------------------

  /** Asks each NameServer in turn (they are independent); the first answer wins. */
  async nameServerCall(method: 'GetRoutes' | 'GetCluster', request: object): Promise<any> {
    let lastError: Error | undefined;
    for (const client of this.namesrv) {
      try {
        return await new Promise((resolve, reject) => {
          client[method](request, { deadline: Date.now() + this.requestTimeoutMs }, (error: grpc.ServiceError | null, response: any) => (error === null ? resolve(response) : reject(error)));
        });
      } catch (error) {
        lastError = error as Error;
      }
    }
    throw new MQClientError('NAMESRV_UNAVAILABLE', `no NameServer answered (${this.options.nameServers.join(', ')}): ${lastError?.message}`, true);
  }

  /** Groups hosting `topic` (every group when topic is ''), cached for 30 s. */
  async routes(topic: string, refresh = false): Promise<GroupRoute[]> {
    const cached = this.routeCache.get(topic);
    if (!refresh && cached !== undefined && Date.now() - cached.fetchedMs < routeRefreshMs && cached.groups.length > 0) return cached.groups;
    const response = await this.nameServerCall('GetRoutes', { topic });
    const groups: GroupRoute[] = (response.groups ?? []).map((g: any) => ({
      group: g.group, leaderAddress: g.leaderAddress, addresses: g.addresses ?? [],
      topics: (g.topics ?? []).map((t: any) => ({ name: t.name, readQueues: t.readQueues, writeQueues: t.writeQueues, perm: t.perm, messageType: t.messageType })),
    }));
    for (const g of groups) if (g.leaderAddress !== '') this.leaders.set(g.group, g.leaderAddress);
    this.routeCache.set(topic, { groups, fetchedMs: Date.now() });
    return groups;
  }

  /** The groups that host `topic`, waiting briefly for a topic that was just created. */
  async requireRoutes(topic: string): Promise<GroupRoute[]> {
    let groups = await this.routes(topic);
    if (groups.length === 0) groups = await this.routes(topic, true);
    if (groups.length === 0) groups = await this.queryRouteFromBrokers(topic);
    if (groups.length === 0) throw new MQClientError('TOPIC_NOT_FOUND', `no broker group hosts topic ${topic} (create it with \`raftmq topic create ${topic}\`)`, true);
    return groups;
  }

  /**
   * Asks each group's leader directly (QueryRoute): a broker that creates topics on first use
   * creates it now, and its answer is fresher than the NameServer's next registration.
   */
  private async queryRouteFromBrokers(topic: string): Promise<GroupRoute[]> {
    const found: GroupRoute[] = [];
    for (const group of await this.routes('', true)) {
      const response = await this.unary(group.group, 'QueryRoute', { topic: { name: topic, resourceNamespace: '' }, endpoints: null }).catch(() => undefined);
      const queues: any[] = response?.status?.code === 'OK' ? response.messageQueues ?? [] : [];
      if (queues.length === 0) continue;
      const readable = queues.filter((q) => q.permission === 'READ' || q.permission === 'READ_WRITE').length;
      const writable = queues.filter((q) => q.permission === 'WRITE' || q.permission === 'READ_WRITE').length;
      const perm = (readable > 0 ? 4 : 0) | (writable > 0 ? 2 : 0);
      found.push({ ...group, topics: [{ name: topic, readQueues: readable, writeQueues: writable, perm, messageType: String(queues[0].acceptMessageTypes?.[0] ?? 'NORMAL') }] });
    }
    if (found.length > 0) this.routeCache.set(topic, { groups: found, fetchedMs: Date.now() - routeRefreshMs + 2_000 });
    return found;
  }

  // ---- broker calls ---------------------------------------------------------------------------

  private channel(address: string): any {
    let channel = this.channels.get(address);
    if (channel === undefined) {
      channel = new MessagingClient(address, this.credentials, clientChannelOptions);
      this.channels.set(address, channel);
    }
    return channel;
  }

  /** A Telemetry stream to one node (any node of a group serves it). */
  telemetry(address: string): grpc.ClientDuplexStream<any, any> {
    return this.channel(address).Telemetry(this.metadata());
  }

  metadata(): grpc.Metadata {
    const metadata = new grpc.Metadata();
    metadata.set('x-mq-client-id', this.clientId);
    metadata.set('x-mq-protocol', 'v2');
    metadata.set('x-mq-language', 'NODE_JS');
    metadata.set(noForwardHeader, '1');
    metadata.set(queueSelectedHeader, '1');
    // Signed per call (the date is in the signature); a stream is signed when it opens.
    const credentials = this.options.sessionCredentials;
    if (credentials !== undefined) for (const [key, value] of Object.entries(signRequest(credentials, Date.now()))) metadata.set(key, value);
    return metadata;
  }

  private async leaderOf(group: string): Promise<string | undefined> {
    const known = this.leaders.get(group);
    if (known !== undefined) return known;
    const routes = await this.routes('', true);
    return routes.find((g) => g.group === group && g.leaderAddress !== '')?.leaderAddress;
  }

  /**
   * A unary call to the leader of `group`. Not-leader answers (definite) are followed and
   * retried until a leader answers or the leader wait passes (`leaderWaitMs`, never more than
   * `timeoutMs`); the caller decides about errors.
   * Resolves with the response; rejects with an MQClientError for transport failures.
   */
  async unary(group: string, method: string, request: object, options: { timeoutMs?: number; leaderWaitMs?: number; extra?: grpc.Metadata } = {}): Promise<any> {
    // Never wait for a leader longer than the call may take: a caller with another group to
    // try (a producer) passes a shorter wait so that it can still move there in time.
    const until = Date.now() + Math.min(options.leaderWaitMs ?? this.leaderWaitMs, options.timeoutMs ?? Infinity);
    let attempts = 0;
    for (;;) {
      if (this.closed) throw new MQClientError('CLIENT_CLOSED', 'the client was shut down', true);
      const address = await this.leaderOf(group).catch(() => undefined);
      if (address !== undefined) {
        const { response, trailer, error } = await this.callOnce(address, method, request, options);
        if (error === undefined && response?.status?.code !== 'HA_NOT_AVAILABLE') return response;
        // A refused call (not the leader) or a node we could not reach before sending.
        this.followLeaderHint(group, address, trailer);
        if (error !== undefined && error.code !== grpc.status.UNAVAILABLE) {
          throw new MQClientError(grpc.status[error.code] ?? 'UNKNOWN', `${method} to ${address}: ${error.message}`, false, { cause: error });
        }
        if (error !== undefined && mayHaveReached(error)) {
          throw new MQClientError('UNAVAILABLE', `${method} to ${address}: connection lost mid-call: ${error.message}`, false, { cause: error });
        }
      }
      attempts++;
      if (Date.now() >= until) throw new MQClientError('NO_LEADER', `broker group ${group} has no reachable leader after ${attempts} attempts`, true);
      await sleep(Math.min(20 * attempts, 200));
    }
  }

  /** A server-streaming call to the leader of `group`; frames are returned when it ends. */
  stream(group: string, method: string, request: object, timeoutMs: number): Promise<any[]> {
    return this.onLeader(group, method, async (address) => {
      const { frames, trailer } = await this.streamOnce(address, method, request, timeoutMs);
      return { value: frames, notLeader: frames.some((f) => f.status?.code === 'HA_NOT_AVAILABLE'), trailer };
    });
  }

  /**
   * Runs one call (`once`) against the leader of `group`: follows not-leader answers and
   * retries nodes it cannot reach until the leader wait passes. Any other gRPC error ends it.
   */
  async onLeader<T>(group: string, method: string, once: (address: string) => Promise<{ value: T; notLeader: boolean; trailer: grpc.Metadata | undefined }>): Promise<T> {
    const until = Date.now() + this.leaderWaitMs;
    let attempts = 0;
    for (;;) {
      if (this.closed) throw new MQClientError('CLIENT_CLOSED', 'the client was shut down', true);
      const address = await this.leaderOf(group).catch(() => undefined);
      if (address !== undefined) {
        try {
          const { value, notLeader, trailer } = await once(address);
          if (!notLeader) return value;
          this.followLeaderHint(group, address, trailer);
        } catch (error) {
          if (error instanceof MQClientError) throw error;
          const serviceError = error as grpc.ServiceError;
          this.leaders.delete(group);
          if (serviceError.code !== grpc.status.UNAVAILABLE) throw new MQClientError(grpc.status[serviceError.code] ?? 'UNKNOWN', `${method} to ${address}: ${serviceError.message}`, false, { cause: error });
        }
      }
      attempts++;
      if (Date.now() >= until) throw new MQClientError('NO_LEADER', `broker group ${group} has no reachable leader after ${attempts} attempts`, true);
      await sleep(Math.min(20 * attempts, 200));
    }
  }

  /** After a not-leader answer: go where the node pointed, or ask the NameServer again. */
  private followLeaderHint(group: string, address: string, trailer: grpc.Metadata | undefined): void {
    const hinted = trailer?.get(leaderHeader)[0];
    if (hinted !== undefined && String(hinted) !== address) this.leaders.set(group, String(hinted));
    else this.leaders.delete(group);
  }

  private callOnce(address: string, method: string, request: object, options: { timeoutMs?: number; extra?: grpc.Metadata }): Promise<{ response?: any; trailer?: grpc.Metadata; error?: grpc.ServiceError }> {
    return new Promise((resolve) => {
      const metadata = this.metadata();
      if (options.extra !== undefined) metadata.merge(options.extra);
      let trailer: grpc.Metadata | undefined;
      const call = this.channel(address)[method](request, metadata, { deadline: Date.now() + (options.timeoutMs ?? this.requestTimeoutMs) }, (error: grpc.ServiceError | null, response: any) => {
        if (error !== null) resolve({ error, ...(trailer === undefined ? {} : { trailer }) });
        else resolve({ response, ...(trailer === undefined ? {} : { trailer }) });
      });
      call.on('status', (status: grpc.StatusObject) => { trailer = status.metadata; });
    });
  }

  private streamOnce(address: string, method: string, request: object, timeoutMs: number): Promise<{ frames: any[]; trailer: grpc.Metadata | undefined }> {
    return new Promise((resolve, reject) => {
      const frames: any[] = [];
      let trailer: grpc.Metadata | undefined;
      const call = this.channel(address)[method](request, this.metadata(), { deadline: Date.now() + timeoutMs });
      call.on('data', (frame: any) => frames.push(frame));
      call.on('status', (status: grpc.StatusObject) => { trailer = status.metadata; });
      call.on('error', reject);
      call.on('end', () => setImmediate(() => resolve({ frames, trailer })));
    });
  }
}

/**
 * UNAVAILABLE can mean "never connected" (nothing happened) or "connection dropped after the
 * request went out" (anything may have happened). grpc-js says which only in the details.
 */
function mayHaveReached(error: grpc.ServiceError): boolean {
  return !/No connection established|connect ECONNREFUSED|Connection refused|Name resolution failed|failed to connect/i.test(error.details ?? error.message);
}

/** A status code that means the outcome of a write is unknown (the broker's unknown marker). */
export function isUnknownOutcome(status: { code?: string } | undefined, trailer?: grpc.Metadata): boolean {
  return status?.code === 'INTERNAL_SERVER_ERROR' || trailer?.get(outcomeHeader)[0] === 'unknown';
}

export function statusError(what: string, status: { code?: string; message?: string }): MQClientError {
  return new MQClientError(status.code ?? 'UNKNOWN', `${what}: ${status.message ?? status.code}`, !isUnknownOutcome(status));
}

