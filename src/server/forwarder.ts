/**
 * Forwards client-protocol calls to the leader of a broker group and *holds* them through an
 * election: a call that meets "not the leader" or an unreachable node is retried against the
 * freshly resolved leader until the hold budget runs out (official clients give each attempt
 * ~3 s and retry at once, so failing fast would burn their attempts). Used by followers and by
 * the access point.
 */
import * as grpc from '@grpc/grpc-js';
import { clientChannelOptions, forwardedHeader, MessagingClient } from '../util/rocketmq-v2.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader objects are untyped at this edge */

export interface ForwardOptions {
  /** Where to send the call now; undefined while no leader is known. */
  readonly target: () => string | undefined;
  readonly metadata: grpc.Metadata;
  /** The caller's own deadline (ms since epoch, Infinity when none). */
  readonly deadlineMs: number;
}

export class HoldExpiredError extends Error {
  override readonly name = 'HoldExpiredError';
}

const retryPauseMs = 50;

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

/** True when the response or error means "try the (new) leader", with no effect having happened. */
function isNotLeaderAnswer(response: any): boolean {
  return response?.status?.code === 'HA_NOT_AVAILABLE';
}

export class Forwarder {
  private readonly clients = new Map<string, grpc.Client>();

  constructor(private readonly holdMs: number) {}

  private client(address: string): any {
    let client = this.clients.get(address);
    if (client === undefined) {
      client = new MessagingClient(address, grpc.credentials.createInsecure(), clientChannelOptions);
      this.clients.set(address, client);
    }
    return client;
  }

  /**
   * Forwards a unary call. Resolves with the leader's response, or with the last not-leader
   * answer when the hold budget ran out; rejects with the last transport error otherwise.
   */
  unary(method: string, request: unknown, options: ForwardOptions): Promise<{ response: any; trailer: grpc.Metadata | undefined }> {
    const once = (address: string, metadata: grpc.Metadata): Promise<{ response: any; trailer: grpc.Metadata | undefined }> => this.callOnce(address, method, request, metadata, options.deadlineMs);
    const notLeader = (result: { response: any }): boolean => isNotLeaderAnswer(result.response);
    return this.hold(options, repeatableMethods.has(method) ? (address, metadata) => this.untilLeaderChanges(address, metadata, options, once, notLeader) : once, notLeader);
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
      const finish = (): void => {
        settled = true;
        clearInterval(watch);
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
      const watch = setInterval(() => {
        const now = options.target();
        if (!settled && now !== undefined && !tried.has(now)) attempt(now);
      }, retryPauseMs);
      attempt(address);
    });
  }

  /** Forwards a server-streaming call; frames are collected and handed over only on success. */
  serverStream(method: string, request: unknown, options: ForwardOptions): Promise<any[]> {
    return this.hold(options, (address, metadata) => this.streamOnce(address, method, request, metadata, options.deadlineMs), (frames) => frames.some(isNotLeaderAnswer));
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

  /** A bidirectional Telemetry stream to `address`. */
  telemetry(address: string, metadata: grpc.Metadata): grpc.ClientDuplexStream<any, any> {
    const forwarded = metadata.clone();
    forwarded.set(forwardedHeader, '1');
    return this.client(address).Telemetry(forwarded);
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }

  private callOnce(address: string, method: string, request: unknown, metadata: grpc.Metadata, deadlineMs: number): Promise<{ response: any; trailer: grpc.Metadata | undefined }> {
    return new Promise((resolve, reject) => {
      let trailer: grpc.Metadata | undefined;
      const call = this.client(address)[method](request, metadata, { deadline: deadlineMs === Infinity ? Date.now() + 30_000 : deadlineMs }, (error: grpc.ServiceError | null, response: any) => {
        if (error !== null) reject(error);
        else resolve({ response, trailer });
      });
      call.on('status', (status: grpc.StatusObject) => { trailer = status.metadata; });
    });
  }

  private streamOnce(address: string, method: string, request: unknown, metadata: grpc.Metadata, deadlineMs: number): Promise<any[]> {
    return new Promise((resolve, reject) => {
      const frames: any[] = [];
      const call = this.client(address)[method](request, metadata, { deadline: deadlineMs === Infinity ? Date.now() + 60_000 : deadlineMs });
      call.on('data', (frame: any) => frames.push(frame));
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
