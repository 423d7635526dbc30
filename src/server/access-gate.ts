/**
 * Authentication and authorization of client calls on a broker node, once configured: every
 * call must be signed (RocketMQ 5's MQv2-HMAC-SHA1, util/request-signature.ts) by a user of the
 * group's replicated access-control table, or by the bootstrap user the configuration names
 * (RocketMQ's initAuthenticationUser, a super user), and that user must hold the permissions
 * the call needs (broker/core/access-control.ts). Without configuration every call passes, as
 * before.
 *
 * Secrets. HMAC needs the secret itself, so it cannot be stored hashed: users' secrets are
 * sealed with AES-256-GCM under the cluster key (a file every broker node of the cluster
 * holds), by the node that proposes the change, so the log, snapshots and data folders hold
 * only sealed bytes. Opened secrets are cached in memory per sealed value.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type * as grpc from '@grpc/grpc-js';
import { userNameProblem, type AccessControlTable, type RequestAction } from '../broker/core/access-control.js';
import { dlqTopicPrefix } from '../broker/core/names.js';
import { authorizationHeader, dateTimeHeader, signRequest, verifyRequest, type Credentials } from '../util/request-signature.js';
import { sealKeyBytes, sealNonceBytes, sealSecret, unsealSecret } from '../util/secret-seal.js';

export interface AuthSettings {
  /** The cluster key that seals users' secrets: 32 bytes, as 64 hex digits (or the raw bytes). The same on every broker node. */
  readonly keyFile: string;
  /** JSON `{ "accessKey": ..., "secretKey": ... }`: the bootstrap super user, which needs no entry in the table. */
  readonly adminFile: string;
  /** How far a request's x-mq-date-time may be from this node's clock (default 5 minutes). */
  readonly maxSkewMs?: number;
  /**
   * Calls that carry no signature at all act as this user of the table (its policies apply,
   * denied by default; without the user, they are refused). Default: an unsigned call is
   * UNAUTHORIZED. A signed call is always checked, so a wrong key or secret never falls back.
   */
  readonly anonymousUser?: string;
}

export const defaultMaxSkewMs = 5 * 60_000;

/** One permission a call needs: any of `actions` on `resource` (`Topic:<name>`, `Group:<name>`, `Cluster`). */
export interface Requirement {
  readonly resource: string;
  readonly actions: readonly RequestAction[];
}

export type AccessVerdict =
  | { readonly ok: true; readonly user: string }
  | { readonly ok: false; readonly code: 'UNAUTHORIZED' | 'FORBIDDEN'; readonly message: string };

export const clusterAdmin: readonly Requirement[] = [{ resource: 'Cluster', actions: ['Admin'] }];

/** Why a call a node would refuse by its table is answered "try again" instead: the table may be behind (see BrokerService.accessTableCurrent). */
export const notCurrentMessage = 'this node has not yet applied its group\'s current users and policies (it has just started or its group is electing); try again';

/**
 * What touching `topic` needs: `actions` on the topic, except that a group's dead-letter
 * topic is the group's (as in RocketMQ, a consumer group's own retry and DLQ topics go with
 * the group's permission).
 */
export function topicRequirement(topic: string, actions: readonly RequestAction[]): Requirement {
  if (topic.startsWith(dlqTopicPrefix)) return { resource: `Group:${topic.slice(dlqTopicPrefix.length)}`, actions: ['Sub'] };
  return { resource: `Topic:${topic}`, actions };
}

export const groupRequirement = (group: string): Requirement => ({ resource: `Group:${group}`, actions: ['Sub'] });

function readKey(file: string): Buffer {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (error) {
    throw new Error(`cannot read the auth key file ${file}: ${(error as Error).message}`);
  }
  if (bytes.length === sealKeyBytes) return bytes;
  const text = bytes.toString('utf8').trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  throw new Error(`the auth key file ${file} must hold ${sealKeyBytes} bytes as 64 hex digits (openssl rand -hex 32), not ${bytes.length} bytes of something else`);
}

/** Reads the bootstrap user's file; its content never reaches an error message. */
export function readCredentialsFile(file: string, what: string): Credentials {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new Error(`cannot read the ${what} file ${file}: ${error instanceof SyntaxError ? 'not JSON' : (error as Error).message}`);
  }
  const { accessKey, secretKey } = (parsed ?? {}) as { accessKey?: unknown; secretKey?: unknown };
  if (typeof accessKey !== 'string' || typeof secretKey !== 'string' || secretKey === '') {
    throw new Error(`the ${what} file ${file} must be JSON { "accessKey": "...", "secretKey": "..." }`);
  }
  const problem = userNameProblem(accessKey);
  if (problem !== undefined) throw new Error(`the ${what} file ${file}: accessKey ${problem}`);
  return { accessKey, accessSecret: secretKey };
}

const single = (metadata: grpc.Metadata, key: string): string | undefined => {
  const values = metadata.get(key);
  // Two values of a header are two claims: take neither.
  return values.length === 1 ? String(values[0]) : undefined;
};

export class AccessGate {
  /** Opened secrets by user, with the sealed value they came from (a change of secret re-opens). */
  private readonly opened = new Map<string, { sealed: Buffer; secret: string }>();

  private constructor(
    private readonly key: Buffer,
    readonly admin: Credentials,
    private readonly maxSkewMs: number,
    private readonly anonymousUser: string | undefined,
    private readonly table: () => AccessControlTable,
    private readonly nowMs: () => number,
  ) {}

  /** Reads the settings' files; a problem with them is a clear error before anything listens. */
  static open(settings: AuthSettings, table: () => AccessControlTable, nowMs: () => number = Date.now): AccessGate {
    const maxSkewMs = settings.maxSkewMs ?? defaultMaxSkewMs;
    if (!Number.isSafeInteger(maxSkewMs) || maxSkewMs < 1_000) throw new Error(`the allowed clock skew must be at least 1000 ms, not ${maxSkewMs}`);
    const anonymous = settings.anonymousUser;
    const anonymousProblem = anonymous === undefined ? undefined : userNameProblem(anonymous);
    if (anonymousProblem !== undefined) throw new Error(`the anonymous user: ${anonymousProblem}`);
    const admin = readCredentialsFile(settings.adminFile, 'auth admin');
    if (anonymous === admin.accessKey) throw new Error('the anonymous user may not be the bootstrap super user');
    return new AccessGate(readKey(settings.keyFile), admin, maxSkewMs, anonymous, table, nowMs);
  }

  /**
   * Who signed the call, or why it is refused. `skew` false: the signed time is not held to
   * the clock — for a Telemetry stream, signed once when the client opened it, which the access
   * point opens again to a broker group on the client's behalf (a new leader, a new group)
   * with the same headers, possibly hours later (Apache RocketMQ checks no time at all).
   */
  authenticate(metadata: grpc.Metadata, skew: 'check' | 'ignore' = 'check'): AccessVerdict {
    if (this.anonymousUser !== undefined && metadata.get(authorizationHeader).length === 0) return { ok: true, user: this.anonymousUser };
    const verified = verifyRequest(
      { authorization: single(metadata, authorizationHeader), dateTime: single(metadata, dateTimeHeader) },
      (accessKey) => this.secretOf(accessKey), this.nowMs(), skew === 'check' ? this.maxSkewMs : Number.MAX_SAFE_INTEGER,
    );
    return verified.ok ? { ok: true, user: verified.accessKey } : { ok: false, code: verified.code, message: verified.reason };
  }

  /** Whether `user` (authenticated already) holds every requirement: each one by any of its actions. */
  authorize(user: string, requirements: readonly Requirement[]): AccessVerdict {
    if (user === this.admin.accessKey) return { ok: true, user };
    const table = this.table();
    for (const requirement of requirements) {
      let reason = '';
      const allowed = requirement.actions.some((action) => {
        const result = table.authorize(user, requirement.resource, action);
        reason = result.reason;
        return result.allowed;
      });
      if (!allowed) return { ok: false, code: 'FORBIDDEN', message: `permission denied: ${reason}` };
    }
    return { ok: true, user };
  }

  /** authenticate, then authorize. */
  check(metadata: grpc.Metadata, requirements: readonly Requirement[], skew: 'check' | 'ignore' = 'check'): AccessVerdict {
    const who = this.authenticate(metadata, skew);
    return who.ok ? this.authorize(who.user, requirements) : who;
  }

  /** A new secret sealed for the log (base64), under a fresh nonce: GCM must never see a nonce twice. */
  seal(secret: string): string {
    return sealSecret(secret, this.key, randomBytes(sealNonceBytes)).toString('base64');
  }

  /** Headers signing an internal call as the bootstrap user (peers' reads without TLS). */
  adminHeaders(): Record<string, string> {
    return signRequest(this.admin, this.nowMs());
  }

  private secretOf(accessKey: string): string | undefined {
    if (accessKey === this.admin.accessKey) return this.admin.accessSecret;
    const user = this.table().user(accessKey);
    if (user === undefined) {
      this.opened.delete(accessKey);
      return undefined;
    }
    const sealed = user.secretSealed;
    const cached = this.opened.get(accessKey);
    if (cached !== undefined && cached.sealed.equals(sealed)) return cached.secret;
    const opened = unsealSecret(user.secretSealed, this.key);
    // Sealed under another cluster key (a node set up with the wrong key file): the user cannot sign in here.
    if (!opened.ok) return undefined;
    this.opened.set(accessKey, { sealed, secret: opened.secret });
    return opened.secret;
  }
}
