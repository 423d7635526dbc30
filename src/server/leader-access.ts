/**
 * A follower's second opinion on a refusal: a node judges calls by its own copy of the access
 * table, which on a follower may be behind (right after a restart it holds only what it has
 * replayed). Before a follower refuses a call FORBIDDEN it asks its leader, whose table is
 * current once it has applied an entry of its term (BrokerAdmin.Authorize, with the client's
 * own signed headers passed on). No answer: undefined, and the follower says "try again".
 */
import * as grpc from '@grpc/grpc-js';
import { forwardableMetadata } from '../util/rocketmq-v2.js';
import type { AccessVerdict, Requirement } from './access-gate.js';
import { brokerAdminDefinition } from './broker-admin-service.js';

const BrokerAdminClient = grpc.makeGenericClientConstructor(brokerAdminDefinition, 'BrokerAdmin');
const askTimeoutMs = 3_000;

interface AuthorizeAnswer { ok?: boolean; code?: string; error?: string }

export class LeaderAccessCheck {
  private readonly clients = new Map<string, grpc.Client>();

  constructor(private readonly credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure()) {}

  /** The leader's verdict on `metadata`'s signature, or undefined when it gave none (unreachable, not the leader, not ready). */
  ask(leaderAddress: string, metadata: grpc.Metadata, requirements: readonly Requirement[], streamSigned: boolean): Promise<AccessVerdict | undefined> {
    let client = this.clients.get(leaderAddress);
    if (client === undefined) {
      client = new BrokerAdminClient(leaderAddress, this.credentials);
      this.clients.set(leaderAddress, client);
    }
    const request = { requirements: requirements.map((r) => ({ resource: r.resource, actions: [...r.actions] })), streamSigned };
    return new Promise((resolve) => {
      (client as unknown as Record<string, (r: object, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, v?: AuthorizeAnswer) => void) => void>)
        .Authorize!(request, forwardableMetadata(metadata), { deadline: Date.now() + askTimeoutMs }, (error, answer) => {
          if (error !== null || answer === undefined) return resolve(undefined);
          if (answer.ok === true) return resolve({ ok: true, user: '' });
          if (answer.code === 'UNAUTHORIZED' || answer.code === 'FORBIDDEN') return resolve({ ok: false, code: answer.code, message: String(answer.error ?? '') });
          resolve(undefined);
        });
    });
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}
