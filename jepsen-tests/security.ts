/**
 * `--secure`: the cluster as `raftmq dev --tls --acl` runs it, under the same faults. TLS on
 * every port (the NameServer, each broker node's gRPC port, which also carries Raft, and its
 * peer lane), with throwaway certificates valid for the namespace addresses the processes are
 * reached at (hostname verification is on; a node's certificate also names it,
 * raftmq://jepsen/<id>). Authentication and ACL on (--auth-key-file, --auth-admin-file;
 * unsigned calls refused). Who signs what:
 * - the operator, the bootstrap super user of the admin file: topic creation, creating the
 *   users and their grants, the status poller (leader detection, the nemesis's view);
 * - `jepsen-client`, a normal user created with `raftmq user create` (the CLI, as an operator
 *   would), granted exactly what the workloads need: Pub and Sub on each workload topic, Sub
 *   on each of their consumer groups (the drains' fresh groups by their prefix). Every
 *   producer, consumer, the log reader, the drains, the check-back answerers;
 * - `jepsen-auditor`, a normal user granted only Admin on Cluster: the observers that read
 *   node internals (the replica audit and the log watcher read the Raft log, the transaction
 *   workload's settle asks BrokerAdmin for a half's state).
 * Neither user is super, so a grant the workload lacks shows as refused calls (counted from
 * the history, and checked before the grants by `provisionUsers`' probes).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { Admin } from '../src/client/admin.js';
import { clientChannelCredentials } from '../src/client/channel-security.js';
import { Producer } from '../src/client/producer.js';
import { RaftNodeClient, type RaftNodeClientOptions } from '../src/client/raft-node-client.js';
import { cliPath } from '../src/cli/local-cluster.js';
import { writeDevAuth, writeDevCertificates } from '../src/cli/dev-certificates.js';
import { readCredentialsFile } from '../src/server/access-gate.js';
import { signRequest, type Credentials } from '../src/util/request-signature.js';
import type { Op } from './history.js';
import { setTimeout as sleep } from 'node:timers/promises';

const run = promisify(execFile);

export const workloadUser = 'jepsen-client';
export const auditorUser = 'jepsen-auditor';

/** The files and credentials of a secure run. */
export interface Security {
  readonly tlsDir: string;
  readonly caFile: string;
  /** `raftmq broker` flags: the cluster key and the bootstrap super user. */
  readonly brokerArgs: readonly string[];
  readonly adminFile: string;
  readonly operator: Credentials;
  readonly workload: Credentials;
  readonly auditor: Credentials;
}

/** What a client signed as `user` is given beside its NameServers (nothing without `security`). */
export type ClientSecurity = { readonly tls?: { caFile: string }; readonly sessionCredentials?: Credentials };

export function clientSecurity(security: Security | undefined, user: 'operator' | 'workload' | 'auditor'): ClientSecurity {
  return security === undefined ? {} : { tls: { caFile: security.caFile }, sessionCredentials: security[user] };
}

/** For RaftNodeClient (the Raft admin service: status, ReadCommitted): TLS and a fresh signature per call. */
export function raftClientSecurity(security: Security | undefined, user: 'operator' | 'auditor'): RaftNodeClientOptions {
  if (security === undefined) return {};
  const credentials = security[user];
  return { credentials: clientChannelCredentials({ caFile: security.caFile }), callHeaders: () => signRequest(credentials, Date.now()) };
}

/**
 * Certificates for every process (`nodeIds` of `groupId`, the NameServer, the CLI) valid for
 * `hosts`, a cluster key and a bootstrap super user, and the two users' secrets, under `dir`.
 */
export async function prepareSecurity(dir: string, groupId: string, nodeIds: readonly string[], hosts: readonly string[]): Promise<Security> {
  const tlsDir = path.join(dir, 'tls');
  const files = await writeDevCertificates(tlsDir, groupId, nodeIds, ['namesrv', 'client'], [...new Set([...hosts, '127.0.0.1', 'localhost'])]);
  const auth = await writeDevAuth(path.join(dir, 'auth'));
  return {
    tlsDir, caFile: files.caFile, adminFile: auth.adminFile, brokerArgs: ['--auth-key-file', auth.keyFile, '--auth-admin-file', auth.adminFile],
    operator: readCredentialsFile(auth.adminFile, 'auth admin'),
    workload: { accessKey: workloadUser, accessSecret: randomBytes(18).toString('base64url') },
    auditor: { accessKey: auditorUser, accessSecret: randomBytes(18).toString('base64url') },
  };
}

/** A workload's topics and consumer groups (`groupPrefixes`: the fresh groups each drain makes, `<prefix><time>`). */
export interface Grants {
  readonly topics: readonly string[];
  readonly groups: readonly string[];
  readonly groupPrefixes: readonly string[];
}

const retry = async <T>(what: string, action: () => Promise<T>, attempts = 40): Promise<T> => {
  for (let attempt = 1; ; attempt++) {
    try {
      return await action();
    } catch (error) {
      if (attempt >= attempts) throw new Error(`${what}: ${(error as Error).message}`, { cause: error });
      await sleep(500);
    }
  }
};

/** Whether `action` was refused for the reason `expected` matches (anything else, success included, is a failed probe). */
async function refused(what: string, expected: RegExp, action: () => Promise<unknown>): Promise<string> {
  try {
    await action();
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    const message = `${typeof code === 'string' ? `${code} ` : ''}${(error as Error).message}`;
    if (expected.test(message)) return `${what}: refused (${message.slice(0, 160)})`;
    throw new Error(`secure probe "${what}" failed for another reason than ${expected}: ${message}`);
  }
  throw new Error(`secure probe "${what}" succeeded: the cluster does not enforce it`);
}

/**
 * Creates the two users with `raftmq user create` (signed as the operator, over TLS), checks
 * that what has not been granted yet is refused (an unsigned send, a send by the new user, a
 * Raft status read by it), grants exactly `grants` to the workload user and Admin on Cluster to
 * the auditor, and writes the resulting table to <runDir>/access.json. Returns the probes' lines.
 */
export async function provisionUsers(security: Security, namesrv: string, raftAddresses: readonly string[], grants: Grants, runDir: string): Promise<string[]> {
  for (const user of [security.workload, security.auditor]) {
    // The secret travels in the environment, never as an argument (raftmq user create's rule).
    await retry(`raftmq user create ${user.accessKey}`, () => run(process.execPath, [cliPath, '--tls-ca', security.caFile, '--credentials', security.adminFile, 'user', 'create', user.accessKey, '--namesrv', namesrv], {
      env: { ...process.env, RAFTMQ_USER_SECRET: user.accessSecret }, timeout: 30_000,
    }), 10);
  }
  const probes: string[] = [];
  const probeTopic = grants.topics[0] as string;
  const producer = (credentials?: Credentials): Producer => new Producer({
    nameServers: [namesrv], tls: { caFile: security.caFile }, ...(credentials === undefined ? {} : { sessionCredentials: credentials }), sendTimeoutMs: 5_000, requestTimeoutMs: 2_000,
  });
  for (const [what, credentials, expected] of [
    ['unsigned send', undefined, /UNAUTHORIZED|unsigned|signature/i],
    [`send by ${workloadUser} before its grants`, security.workload, /FORBIDDEN|permission denied/i],
  ] as const) {
    const p = producer(credentials);
    try {
      // A follower may not have applied the new user yet ('Username is not matched'): wait for the refusal we mean.
      probes.push(await retry(what, () => refused(what, expected, () => p.send({ topic: probeTopic, body: `secure-probe-${what}` })), 20));
    } finally {
      p.shutdown();
    }
  }
  const raft = new RaftNodeClient(raftAddresses, raftClientSecurity(security, 'auditor'));
  try {
    probes.push(await retry('raft status by the auditor before its grant', () => refused(`raft status by ${auditorUser} before its grant`, /PERMISSION_DENIED|permission denied/i, () => raft.status(raftAddresses[0] as string, 2_000)), 20));
  } finally {
    raft.close();
  }
  const admin = new Admin({ nameServers: [namesrv], ...clientSecurity(security, 'operator') });
  try {
    const grant = (user: string, resource: string, actions: string[]): Promise<void> => retry(`grant ${resource} to ${user}`, () => admin.grant(user, resource, actions));
    for (const topic of grants.topics) await grant(workloadUser, `Topic:${topic}`, ['Pub', 'Sub']);
    for (const group of grants.groups) await grant(workloadUser, `Group:${group}`, ['Sub']);
    for (const prefix of grants.groupPrefixes) await grant(workloadUser, `Group:${prefix}*`, ['Sub']);
    await grant(auditorUser, 'Cluster', ['Admin']);
    const listing = await retry('list access', () => admin.listAccess());
    await writeFile(path.join(runDir, 'access.json'), `${JSON.stringify({ probes, listing }, null, 2)}\n`);
    const users = listing.flatMap((l) => l.users);
    if (users.some((u) => u.kind === 'super')) throw new Error(`a harness user is super: ${JSON.stringify(users)}`);
  } finally {
    admin.close();
  }
  return probes;
}

/** Refusals by the access gate in the history (a missing grant, or a node that has not applied the table yet). */
export function accessRefusals(ops: ReadonlyArray<{ readonly error?: unknown }>): number {
  return ops.filter((op) => typeof op.error === 'string' && /FORBIDDEN|UNAUTHORIZED|UNAUTHENTICATED|PERMISSION_DENIED|permission denied|not matched|Check signature/i.test(op.error)).length;
}

/**
 * The client roles of a secure run that never succeeded once: no acknowledged send, a reader
 * whose polls never returned a message, a settle phase that never learnt a half's state (a
 * consumer refused at start just retries, so a missing grant may show only here).
 */
export function silentClients(ops: readonly Op[], config: { readonly delay?: unknown; readonly transactions?: unknown }): string[] {
  const sent = (f: string) => (op: Op): boolean => op.f === f && op.type === 'ok';
  const read = (f: string) => (op: Op): boolean => op.f === f && op.type === 'ok' && (op.reads?.length ?? 0) > 0;
  const roles: Array<[string, (op: Op) => boolean]> = [['the producers', sent('enqueue')], ['the group consumers', read('dequeue')], ['the log reader', read('read')], ['the drain', read('drain')]];
  if (config.delay !== undefined) roles.push(['the delay producers', sent('delay-send')], ['the delay reader', read('delay-read')], ['the delay consumers', read('delay-receive')], ['the delay drain', read('delay-drain')]);
  if (config.transactions !== undefined) {
    roles.push(['the transaction senders', sent('txn-send')], ['the transaction reader', read('txn-read')], ['the transaction consumers', read('txn-receive')], ['the transaction drain', read('txn-drain')],
      ['the settle phase\'s state queries', (op) => op.f === 'txn-state' && op.state !== undefined && op.state !== 'unknown']);
  }
  return roles.filter(([, succeeded]) => !ops.some(succeeded)).map(([name]) => name);
}
