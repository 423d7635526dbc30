/**
 * The one place a broker node decides a call's access: the gate's verdict (access-gate.ts),
 * except that a FORBIDDEN depends on the access table, which may be behind — right after a
 * restart a node holds only what it has replayed. So a FORBIDDEN is given only by a table known
 * to be current: the leader judges again once it has applied an entry of its term
 * (BrokerService.accessTableCurrent); a follower asks its leader (BrokerAdmin.Authorize, with the
 * client's own signed headers passed on). A node that cannot tell answers undefined, and the
 * caller says "try again" (notCurrentMessage), never a wrong FORBIDDEN.
 */
import * as grpc from '@grpc/grpc-js';
import { forwardableMetadata } from '../util/rocketmq-v2.js';
import type { AccessGate, AccessVerdict, Requirement } from './access-gate.js';
import { brokerAdminDefinition } from './broker-admin-service.js';

const BrokerAdminClient = grpc.makeGenericClientConstructor(brokerAdminDefinition, 'BrokerAdmin');
const askTimeoutMs = 3_000;

interface AuthorizeAnswer { ok?: boolean; code?: string; error?: string }

/** What the judge needs to know of its node. */
export interface JudgedNode {
  isLeader(): boolean;
  leaderAddress(): string | undefined;
  /** Leader: resolves true once its table is current (at most a wait); false otherwise. */
  tableCurrent(): Promise<boolean>;
}

export class AccessJudge {
  private readonly clients = new Map<string, grpc.Client>();

  constructor(readonly gate: AccessGate, private readonly node: JudgedNode, private readonly credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure()) {}

  /** The verdict on `metadata`'s signature for `requirements`, or undefined when this node cannot tell yet. */
  async judge(metadata: grpc.Metadata, requirements: readonly Requirement[], skew: 'check' | 'ignore' = 'check'): Promise<AccessVerdict | undefined> {
    const verdict = this.gate.check(metadata, requirements, skew);
    if (verdict.ok || verdict.code !== 'FORBIDDEN') return verdict;
    if (this.node.isLeader()) return (await this.node.tableCurrent()) ? this.gate.check(metadata, requirements, skew) : undefined;
    const leader = this.node.leaderAddress();
    return leader === undefined ? undefined : this.askLeader(leader, metadata, requirements, skew === 'ignore');
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }

  /** The leader's verdict, or undefined when it gave none (unreachable, not the leader, not ready). */
  private askLeader(leaderAddress: string, metadata: grpc.Metadata, requirements: readonly Requirement[], streamSigned: boolean): Promise<AccessVerdict | undefined> {
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
}
