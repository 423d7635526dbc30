/**
 * Forwards client-protocol calls to the leader of a broker group and *holds* them through an
 * election: a call that meets "not the leader" or an unreachable node is retried against the
 * freshly resolved leader until the hold budget runs out (official clients give each attempt
 * ~3 s and retry at once, so failing fast would burn their attempts). Used by followers and by
 * the access point.
 *
 * Calls travel as bytes: the access point hands over the request exactly as the client
 * encoded it and gets the leader's response bytes back ({@link Forwarder.unaryRaw},
 * {@link Forwarder.serverStreamRaw}); whether an answer means "not the leader" is read from
 * its status field on the wire (v2-wire.ts). A caller that holds a decoded request (a
 * follower's handlers) uses {@link Forwarder.unary} / {@link Forwarder.serverStream}, which
 * encode and decode around the same byte path.
 */
import * as grpc from '@grpc/grpc-js';
import { clientChannelOptions, forwardedHeader, identityBytes, messagingServiceDefinition } from '../util/rocketmq-v2.js';
import { int32At, responseStatusCode } from './v2-wire.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader objects are untyped at this edge */

export interface ForwardOptions {
  /**
   * Where to send the call now; undefined while no leader is known. Called again while the
   * call waits (every {@link retryPauseMs}); a caller that passes the same function for every
   * call to one group lets concurrent calls share one evaluation per check.
   */
  readonly target: () => string | undefined;
  readonly metadata: grpc.Metadata;
  /** The caller's own deadline (ms since epoch, Infinity when none). */
  readonly deadlineMs: number;
}

/** A unary answer: the response (bytes or decoded) and the trailers it came with. */
export interface Forwarded<T> {
  readonly response: T;
  readonly trailer: grpc.Metadata | undefined;
}

export class HoldExpiredError extends Error {
  override readonly name = 'HoldExpiredError';
}

const retryPauseMs = 50;
/** Deadlines of forwarded calls whose caller set none. */
const unaryDeadlineMsDefault = 30_000;
const streamDeadlineMsDefault = 60_000;

/** Status.code HA_NOT_AVAILABLE (definition.proto): the node is not the leader (or has none). */
const haNotAvailableCode = 50002;

/**
 * Calls that repeating has no further effect on: a send is de-duplicated by its message id
 * (a transactional one stores a second half message, which its check-backs end and whose
 * commit the message id de-duplicates), an ack by its receipt handle, an EndTransaction is
 * answered alike when repeated, the rest only read. Such a call that has no answer yet when
 * the group's leader changes is also sent to the new leader, and the first leader's answer
 * wins: a leader that stopped answering (paused, cut off) keeps its connections open, so
 * waiting on it would spend the client's whole attempt.
 */
const repeatableMethods: ReadonlySet<string> = new Set(['SendMessage', 'AckMessage', 'EndTransaction', 'QueryRoute', 'QueryAssignment', 'GetOffset', 'QueryOffset', 'Heartbeat']);

/** True when the response bytes mean "try the (new) leader", with no effect having happened. */
export function isNotLeaderAnswer(response: Uint8Array): boolean {
  return int32At(response, responseStatusCode) === haNotAvailableCode;
}

export interface MethodPath {
  readonly path: string;
  readonly definition: grpc.MethodDefinition<any, any>;
}

/** A MessagingService method's path and definition; an unknown method is a programming error. */
export function methodOf(method: string): MethodPath {
  const definition = messagingServiceDefinition[method];
  if (definition === undefined) throw new RangeError(`MessagingService has no method ${method}`);
  return { path: definition.path, definition };
}

/**
 * One check every {@link retryPauseMs} for all calls waiting on a leader change (rather than
 * a timer per call): each distinct target function is evaluated once per check.
 */
class LeaderWatch {
  private readonly watchers = new Set<{ readonly target: () => string | undefined; readonly onTarget: (address: string) => void }>();
  private timer: NodeJS.Timeout | undefined;

  /** Calls `onTarget` with each new value of `target()`; the returned function stops it. */
  add(target: () => string | undefined, onTarget: (address: string) => void): () => void {
    const watcher = { target, onTarget };
    this.watchers.add(watcher);
    if (this.timer === undefined) {
      this.timer = setInterval(() => this.check(), retryPauseMs);
      this.timer.unref();
    }
    return () => {
      this.watchers.delete(watcher);
      if (this.watchers.size === 0 && this.timer !== undefined) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    };
  }

  private check(): void {
    const now = new Map<() => string | undefined, string | undefined>();
    for (const watcher of [...this.watchers]) {
      if (!now.has(watcher.target)) now.set(watcher.target, watcher.target());
      const address = now.get(watcher.target);
      if (address !== undefined) watcher.onTarget(address);
    }
  }

  close(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.watchers.clear();
  }
}

export class Forwarder {
  /** One identity-serializer client (one HTTP/2 connection) per node address. */
  private readonly clients = new Map<string, grpc.Client>();
  private readonly watch = new LeaderWatch();

  constructor(private readonly holdMs: number, private readonly credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure()) {}

  private client(address: string): grpc.Client {
    let client = this.clients.get(address);
    if (client === undefined) {
      client = new grpc.Client(address, this.credentials, clientChannelOptions);
      this.clients.set(address, client);
    }
    return client;
  }

  /**
   * Forwards a unary call's request bytes. Resolves with the leader's response bytes, or with
   * the last not-leader answer when the hold budget ran out; rejects with the last transport
   * error otherwise.
   */
  unaryRaw(method: string, request: Buffer, options: ForwardOptions): Promise<Forwarded<Buffer>> {
    const { path } = methodOf(method);
    const once = (address: string, metadata: grpc.Metadata): Promise<Forwarded<Buffer>> => this.callOnce(address, path, request, metadata, options.deadlineMs);
    const notLeader = (result: Forwarded<Buffer>): boolean => isNotLeaderAnswer(result.response);
    return this.hold(options, repeatableMethods.has(method) ? (address, metadata) => this.untilLeaderChanges(address, metadata, options, once, notLeader) : once, notLeader);
  }

  /** {@link unaryRaw} for a decoded request; the response comes back decoded. */
  async unary(method: string, request: unknown, options: ForwardOptions): Promise<Forwarded<any>> {
    const { definition } = methodOf(method);
    const { response, trailer } = await this.unaryRaw(method, definition.requestSerialize(request), options);
    return { response: definition.responseDeserialize(response), trailer };
  }

  /** Forwards a server-streaming call's bytes; frames are collected and handed over only on success. */
  serverStreamRaw(method: string, request: Buffer, options: ForwardOptions): Promise<Buffer[]> {
    const { path } = methodOf(method);
    return this.hold(options, (address, metadata) => this.streamOnce(address, path, request, metadata, options.deadlineMs), (frames) => frames.some(isNotLeaderAnswer));
  }

  /** {@link serverStreamRaw} for a decoded request; the frames come back decoded. */
  async serverStream(method: string, request: unknown, options: ForwardOptions): Promise<any[]> {
    const { definition } = methodOf(method);
    const frames = await this.serverStreamRaw(method, definition.requestSerialize(request), options);
    return frames.map((frame) => definition.responseDeserialize(frame));
  }

  /**
   * `once` to `address`; when the target moves to another address before it answers, also
   * `once` there (and so on), and the first answer that is not "not the leader" wins. When
   * every attempt has failed, the last failure is the result.
   */
  private untilLeaderChanges<T>(address: string, metadata: grpc.Metadata, options: ForwardOptions, once: (address: string, metadata: grpc.Metadata) => Promise<T>, notLeader: (result: T) => boolean): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const tried = new Set<string>();
      let outstanding = 0;
      let settled = false;
      let notLeaderAnswer: { result: T } | undefined;
      // Assigned below, before any answer can come in (answers arrive in a later turn).
      let stopWatching = (): void => undefined;
      const finish = (): void => {
        settled = true;
        stopWatching();
      };
      const attempt = (to: string): void => {
        tried.add(to);
        outstanding++;
        once(to, metadata).then((result) => {
          outstanding--;
          if (settled) return;
          if (!notLeader(result)) {
            finish();
            resolve(result);
            return;
          }
          notLeaderAnswer = { result };
          if (outstanding === 0) {
            finish();
            resolve(result);
          }
        }, (error: unknown) => {
          outstanding--;
          if (settled) return;
          if (outstanding === 0) {
            finish();
            if (notLeaderAnswer !== undefined) resolve(notLeaderAnswer.result);
            else reject(error);
          }
        });
      };
      attempt(address);
      stopWatching = this.watch.add(options.target, (now) => {
        if (!settled && !tried.has(now)) attempt(now);
      });
    });
  }

  /** Tries the current target until it answers as leader or the hold budget runs out. */
  private async hold<T>(options: ForwardOptions, once: (address: string, metadata: grpc.Metadata) => Promise<T>, notLeader: (result: T) => boolean): Promise<T> {
    const holdUntil = Math.min(Date.now() + this.holdMs, options.deadlineMs - 100);
    const metadata = options.metadata.clone();
    metadata.set(forwardedHeader, '1');
    let last: T | undefined;
    let lastError: grpc.ServiceError | undefined;
    for (;;) {
      const address = options.target();
      if (address !== undefined) {
        try {
          const result = await once(address, metadata);
          if (!notLeader(result)) return result;
          last = result;
        } catch (error) {
          const serviceError = error as grpc.ServiceError;
          // UNAVAILABLE: the node is down or the connection broke. A write may have happened;
          // retrying is safe only because writes are idempotent (message ids, receipt handles).
          if (serviceError.code !== grpc.status.UNAVAILABLE) throw serviceError;
          lastError = serviceError;
        }
      }
      if (Date.now() + retryPauseMs >= holdUntil) {
        if (last !== undefined) return last;
        throw lastError ?? new HoldExpiredError('no leader was known for the whole hold period');
      }
      await new Promise((resolve) => setTimeout(resolve, retryPauseMs));
    }
  }

  /** A bidirectional Telemetry stream to `address` (decoded commands both ways). */
  telemetry(address: string, metadata: grpc.Metadata): grpc.ClientDuplexStream<any, any> {
    const forwarded = metadata.clone();
    forwarded.set(forwardedHeader, '1');
    const { path, definition } = methodOf('Telemetry');
    return this.client(address).makeBidiStreamRequest(path, definition.requestSerialize, definition.responseDeserialize, forwarded);
  }

  close(): void {
    this.watch.close();
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }

  private callOnce(address: string, path: string, request: Buffer, metadata: grpc.Metadata, deadlineMs: number): Promise<Forwarded<Buffer>> {
    return new Promise((resolve, reject) => {
      const deadline = deadlineMs === Infinity ? Date.now() + unaryDeadlineMsDefault : deadlineMs;
      const result: { response: Buffer; trailer: grpc.Metadata | undefined } = { response: Buffer.alloc(0), trailer: undefined };
      const call = this.client(address).makeUnaryRequest(path, identityBytes, identityBytes, request, metadata, { deadline }, (error, response) => {
        if (error !== null || response === undefined) {
          reject(error ?? new Error('no response'));
          return;
        }
        result.response = response;
        resolve(result);
      });
      // grpc-js calls the callback first and emits 'status' (with the trailers) right after, in
      // the same turn, so the trailers are in place before anyone awaiting `result` runs.
      call.on('status', (status: grpc.StatusObject) => { result.trailer = status.metadata; });
    });
  }

  private streamOnce(address: string, path: string, request: Buffer, metadata: grpc.Metadata, deadlineMs: number): Promise<Buffer[]> {
    return new Promise((resolve, reject) => {
      const frames: Buffer[] = [];
      const deadline = deadlineMs === Infinity ? Date.now() + streamDeadlineMsDefault : deadlineMs;
      const call = this.client(address).makeServerStreamRequest(path, identityBytes, identityBytes, request, metadata, { deadline });
      call.on('data', (frame: Buffer) => frames.push(frame));
      call.on('error', (error: grpc.ServiceError) => reject(error));
      call.on('end', () => resolve(frames));
    });
  }
}

/** The deadline of an incoming call in ms since epoch (Infinity when the caller set none). */
export function callDeadlineMs(call: { getDeadline(): grpc.Deadline }): number {
  const deadline = call.getDeadline();
  if (deadline instanceof Date) return deadline.getTime();
  return Number.isFinite(deadline) ? Number(deadline) : Infinity;
}
