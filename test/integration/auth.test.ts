/**
 * Issue 12, client authentication and ACL, on real processes: brokers with --auth-key-file and
 * --auth-admin-file. Unsigned calls, unknown users, wrong secrets and skewed clocks are refused
 * with RocketMQ's codes; users and policies made with `raftmq user` / `raftmq acl` are
 * replicated (every node enforces them at once, a new leader after a SIGKILL and a restarted
 * group too); admin calls need Admin; no secret is kept in plain text in a data folder or shown
 * in a log; the official client signs with its sessionCredentials.
 */
import { execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Admin } from '../../src/client/admin.js';
import { MQConnection } from '../../src/client/mq-connection.js';
import { Producer } from '../../src/client/producer.js';
import { SimpleConsumer } from '../../src/client/simple-consumer.js';
import { MessagingClient } from '../../src/util/rocketmq-v2.js';
import { signRequest, type Credentials } from '../../src/util/request-signature.js';
import { BrokerCluster } from '../support/broker-cluster.js';
import { cliPath, waitFor } from '../support/process-cluster.js';

const run = promisify(execFile);
// Snapshots every 50 entries: the users and policies come back from snapshots at the restart below.
const cluster = new BrokerCluster({ auth: true, groupId: 'g1', extraArgs: ['--snapshot-entries', '50'] });
const alice: Credentials = { accessKey: 'alice', accessSecret: 'alice-secret-7f3a9c' };
let secretFile: string;

/** `raftmq <args>` as the super user (its credentials file), answering stdout; a failure rejects with stderr. */
async function cliAsAdmin(...args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [cliPath, '--credentials', cluster.authFiles?.adminFile as string, ...args, '--namesrv', cluster.namesrv], { timeout: 20_000 });
  return stdout;
}

async function sendAs(user: Credentials | undefined, topic: string): Promise<string> {
  const producer = new Producer({ ...cluster.clientOptions(user), sendTimeoutMs: 5_000 });
  try {
    return (await producer.send({ topic, body: Buffer.from(`to ${topic}`) })).messageId;
  } finally {
    producer.shutdown();
  }
}

/** The code of a refused send (as our client reports it), or 'OK'. */
async function sendOutcome(user: Credentials | undefined, topic: string): Promise<string> {
  return sendAs(user, topic).then(() => 'OK', (error: Error & { code?: string }) => `${error.code ?? '?'}: ${error.message}`);
}

/** One Telemetry stream to `address` signed by `user`: the status of the answer to its producer settings. */
function settingsOnce(address: string, user: Credentials): Promise<{ code: string; message: string }> {
  const client = new MessagingClient(address, grpc.credentials.createInsecure());
  return new Promise<{ code: string; message: string }>((resolve, reject) => {
    const metadata = new grpc.Metadata();
    for (const [key, value] of Object.entries(signRequest(user, Date.now()))) metadata.set(key, value);
    const stream = (client as unknown as Record<string, (m: grpc.Metadata) => grpc.ClientDuplexStream<object, { status: { code: string; message: string } }>>).Telemetry!(metadata);
    const timer = setTimeout(() => { stream.cancel(); reject(new Error('no settings answer')); }, 8_000);
    stream.on('data', (command) => { clearTimeout(timer); stream.cancel(); resolve(command.status); });
    stream.on('error', (error) => { clearTimeout(timer); reject(error); });
    stream.write({ settings: { clientType: 'PRODUCER', publishing: { topics: [{ name: 'orders', resourceNamespace: '' }] }, requestTimeout: { seconds: 3 } } });
  }).finally(() => client.close());
}

beforeAll(async () => {
  await cluster.start();
  secretFile = path.join(cluster.dataRoot, 'alice.secret');
  await fs.writeFile(secretFile, `${alice.accessSecret}\n`, { mode: 0o600 });
  await cliAsAdmin('topic', 'create', 'orders');
  await cliAsAdmin('topic', 'create', 'payments');
  await cliAsAdmin('user', 'create', 'alice', '--secret-file', secretFile);
  await cliAsAdmin('acl', 'grant', 'alice', 'Topic:orders', 'Pub');
}, 90_000);

afterAll(async () => {
  await cluster.stop();
});

describe('client authentication', () => {
  it('refuses an unsigned call with UNAUTHORIZED, an unknown user or a wrong secret with FORBIDDEN', async () => {
    expect(await sendOutcome(undefined, 'orders')).toMatch(/^UNAUTHORIZED: .*authorization header is missing/);
    expect(await sendOutcome({ accessKey: 'mallory', accessSecret: 'x' }, 'orders')).toMatch(/^FORBIDDEN: .*Username is not matched/);
    expect(await sendOutcome({ ...alice, accessSecret: 'wrong' }, 'orders')).toMatch(/^FORBIDDEN: .*Check signature failed for accessKey "alice"/);
    expect(await sendOutcome(alice, 'orders')).toBe('OK');
  }, 60_000);

  it('refuses a call signed at a time too far from the broker\'s clock (a Telemetry stream: its signature only)', async () => {
    const leader = await cluster.leader();
    const client = new MessagingClient(leader.address, grpc.credentials.createInsecure());
    const heartbeatAt = (signedMs: number): Promise<{ code: string; message: string }> => new Promise((resolve, reject) => {
      const metadata = new grpc.Metadata();
      for (const [key, value] of Object.entries(signRequest(alice, signedMs))) metadata.set(key, value);
      (client as unknown as Record<string, (r: object, m: grpc.Metadata, o: object, cb: (e: Error | null, v: { status: { code: string; message: string } }) => void) => void>)
        .Heartbeat!({ clientType: 'PRODUCER' }, metadata, { deadline: Date.now() + 5_000 }, (error, value) => (error === null ? resolve(value.status) : reject(error)));
    });
    try {
      expect((await heartbeatAt(Date.now() - 10 * 60_000)).message).toMatch(/x-mq-date-time header is \d+ ms behind the broker's clock \(at most 300000 ms allowed\)/);
      expect((await heartbeatAt(Date.now() - 10 * 60_000)).code).toBe('UNAUTHORIZED');
      expect((await heartbeatAt(Date.now() + 10 * 60_000)).message).toMatch(/ahead of the broker's clock/);
      expect((await heartbeatAt(Date.now())).code).toBe('OK');
      // A Telemetry stream's headers are signed once, when it opens (the access point re-opens it
      // later with them): its signature is checked, not its time.
      const settingsAnswer = (signedMs: number, user: Credentials): Promise<{ code: string; message: string }> => new Promise((resolve, reject) => {
        const metadata = new grpc.Metadata();
        for (const [key, value] of Object.entries(signRequest(user, signedMs))) metadata.set(key, value);
        const stream = (client as unknown as Record<string, (m: grpc.Metadata) => grpc.ClientDuplexStream<object, { status: { code: string; message: string } }>>).Telemetry!(metadata);
        const timer = setTimeout(() => { stream.cancel(); reject(new Error('no settings answer')); }, 5_000);
        stream.on('data', (command) => { clearTimeout(timer); stream.cancel(); resolve(command.status); });
        stream.on('error', () => undefined);
        stream.write({ settings: { clientType: 'PRODUCER', publishing: { topics: [{ name: 'orders', resourceNamespace: '' }] }, requestTimeout: { seconds: 3 } } });
      });
      expect((await settingsAnswer(Date.now() - 60 * 60_000, alice)).code).toBe('OK');
      expect(await settingsAnswer(Date.now() - 60 * 60_000, { ...alice, accessSecret: 'wrong' })).toMatchObject({ code: 'FORBIDDEN', message: expect.stringMatching(/Check signature failed/) });
    } finally {
      client.close();
    }
  }, 30_000);
});

describe('authorization', () => {
  it('a user may do what its policies allow and nothing else; a grant and a revoke hold on every node at once', async () => {
    expect(await sendOutcome(alice, 'payments')).toMatch(/^FORBIDDEN: .*alice may not Pub on Topic:payments: no policy allows it \(denied by default\)/);
    const consumer = new SimpleConsumer({ ...cluster.clientOptions(alice), group: 'alice-readers', awaitMs: 1_000 });
    consumer.subscribe('orders');
    try {
      await expect(consumer.receive(4)).rejects.toThrow(/FORBIDDEN|may not Sub on/);
      await cliAsAdmin('acl', 'grant', 'alice', 'Topic:orders', 'Sub');
      await cliAsAdmin('acl', 'grant', 'alice', 'Group:alice-*', 'Sub');
      const id = await sendAs(alice, 'orders');
      const received = new Set<string>();
      await waitFor('alice reads her message', async () => {
        for (const message of await consumer.receive(16)) {
          received.add(message.messageId);
          await consumer.ack(message);
        }
        return received.has(id);
      }, 20_000);
    } finally {
      consumer.shutdown();
    }
    // Every node holds the same table: a call to each follower (forwarded to the leader) and a failover see the same answer.
    await cliAsAdmin('acl', 'revoke', 'alice', 'Topic:orders', 'Pub');
    expect(await sendOutcome(alice, 'orders')).toMatch(/^FORBIDDEN: .*may not Pub on Topic:orders/);
    await cliAsAdmin('acl', 'grant', 'alice', 'Topic:orders', 'Pub');
    const killed = await cluster.killLeader();
    await cluster.leader(15_000);
    await waitFor('alice sends through the new leader', async () => (await sendOutcome(alice, 'orders')) === 'OK', 20_000);
    expect(await sendOutcome(alice, 'payments')).toMatch(/^FORBIDDEN/);
    cluster.restart(killed);
  }, 90_000);

  it('a Deny beats every Allow, and admin calls need Admin', async () => {
    await cliAsAdmin('acl', 'grant', 'alice', 'Topic:*', 'Pub');
    expect(await sendOutcome(alice, 'payments')).toBe('OK');
    await cliAsAdmin('acl', 'grant', 'alice', 'Topic:pay*', 'Pub', '--deny');
    expect(await sendOutcome(alice, 'payments')).toMatch(/^FORBIDDEN: .*denied by Deny Topic:pay\*/);
    const admin = new Admin(cluster.clientOptions(alice));
    try {
      await expect(admin.createTopic('alices-topic')).rejects.toMatchObject({ code: 'FORBIDDEN', message: expect.stringMatching(/alice may not Admin on Cluster/) });
      await expect(admin.listAccess()).rejects.toMatchObject({ code: 'FORBIDDEN' });
    } finally {
      admin.close();
    }
    const unsigned = new Admin(cluster.clientOptions());
    try {
      await expect(unsigned.listTopics()).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    } finally {
      unsigned.close();
    }
    const listing = JSON.parse(await cliAsAdmin('acl', 'list', '--user', 'alice', '--json')) as { policies: Array<{ resource: string; decision: string; actions: string[] }> };
    expect(listing.policies.map((p) => `${p.decision} ${p.resource} ${p.actions.join(',')}`).sort()).toEqual(['Allow Group:alice-* Sub', 'Allow Topic:* Pub', 'Allow Topic:orders Pub,Sub', 'Deny Topic:pay* Pub']);
  }, 60_000);

  it('the Raft node admin service needs Admin too (status, proposals, reads of the log)', async () => {
    const leader = await cluster.leader();
    const unsigned = await run(process.execPath, [cliPath, 'status', '--nodes', leader.address, '--json'], { timeout: 20_000 });
    expect(unsigned.stdout).toMatch(/"error": ".*the authorization header is missing"/);
    expect(unsigned.stdout).not.toMatch(/"role"/);
    const asAdmin = await run(process.execPath, [cliPath, '--credentials', cluster.authFiles?.adminFile as string, 'status', '--nodes', leader.address, '--json'], { timeout: 20_000 });
    expect(asAdmin.stdout).toMatch(/"role"/);
  }, 30_000);
});

describe('restart', () => {
  it('users and policies survive a whole-group SIGKILL and restart (from snapshots)', async () => {
    for (let i = 0; i < 60; i++) await sendAs(alice, 'orders'); // entries enough for a snapshot on every node
    await waitFor('a snapshot on every node', async () => {
      const counts = await Promise.all(cluster.local.members.map(async (m) => (await fs.readdir(path.join(cluster.dataRoot, m.id, 'snapshots')).catch(() => [])).length));
      return counts.every((n) => n > 0);
    }, 20_000);
    // A user made after the snapshots: after the restart it exists only once the log is replayed.
    const late: Credentials = { accessKey: 'late', accessSecret: 'late-secret-5d1e' };
    await cluster.admin.createUser(late.accessKey, late.accessSecret);
    await cluster.admin.grant(late.accessKey, 'Topic:orders', ['Pub']);
    const ids = await cluster.killAll();
    for (const id of ids) cluster.restart(id);
    // Telemetry settings to a node that has just come back, before its group has a leader: it
    // must wait for its table rather than answer a valid user FORBIDDEN (a check-back stream
    // refused so stays useless: seen in the jepsen transactions workload after a whole-group restart).
    const firstNode = cluster.local.address(ids[0] as string);
    // It waits for its table, and while that is behind answers "try again" (HA_NOT_AVAILABLE), never FORBIDDEN.
    const answers: string[] = [];
    await waitFor('the first restarted node answers settings', async () => {
      const answer = await settingsOnce(firstNode, late).catch(() => undefined);
      if (answer !== undefined) answers.push(answer.code);
      return answer !== undefined && answer.code !== 'HA_NOT_AVAILABLE';
    }, 30_000);
    expect(answers.at(-1)).toBe('OK');
    expect(answers.filter((code) => code !== 'OK' && code !== 'HA_NOT_AVAILABLE')).toEqual([]);
    await cluster.leader(20_000);
    await waitFor('alice sends after the restart', async () => (await sendOutcome(alice, 'orders')) === 'OK', 20_000);
    expect(await sendOutcome(late, 'orders')).toBe('OK');
    expect(await sendOutcome({ ...alice, accessSecret: 'wrong' }, 'orders')).toMatch(/^FORBIDDEN: .*Check signature failed/);
    expect(await sendOutcome(alice, 'payments')).toMatch(/^FORBIDDEN: .*denied by Deny Topic:pay\*/);
  }, 90_000);
});

describe('secrets', () => {
  it('are in no data folder in plain text and in no log', async () => {
    const needles = [alice.accessSecret, 'late-secret-5d1e', cluster.superUser?.accessSecret as string].map((s) => Buffer.from(s));
    const found: string[] = [];
    const scan = async (dir: string): Promise<void> => {
      for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
        const file = path.join(dir, entry.name);
        if (entry.isDirectory()) await scan(file);
        else if (entry.isFile() && !file.startsWith(path.join(cluster.dataRoot, 'auth')) && file !== secretFile) {
          const bytes = await fs.readFile(file);
          if (needles.some((needle) => bytes.includes(needle))) found.push(path.relative(cluster.dataRoot, file));
        }
      }
    };
    await scan(cluster.dataRoot);
    expect(found).toEqual([]);
    const output = cluster.output();
    expect(output.includes(alice.accessSecret) || output.includes(cluster.superUser?.accessSecret as string)).toBe(false);
    // The listing names users and kinds, never a secret.
    const users = await cliAsAdmin('user', 'list', '--json');
    expect(JSON.parse(users)).toEqual({ users: [{ brokerGroup: 'g1', name: 'alice', kind: 'normal' }, { brokerGroup: 'g1', name: 'late', kind: 'normal' }] });
  }, 30_000);
});

describe('the official client', () => {
  it('signs with sessionCredentials: allowed, and a wrong secret fails startup with ForbiddenException', async () => {
    await cliAsAdmin('acl', 'grant', 'alice', 'Topic:orders', 'Pub');
    const script = (accessSecret: string): string => `
      import { Producer } from 'rocketmq-client-nodejs';
      const producer = new Producer({ endpoints: ${JSON.stringify(cluster.accessPoint)}, topics: ['orders'], requestTimeout: 3000, sessionCredentials: { accessKey: 'alice', accessSecret: ${JSON.stringify(accessSecret)} } });
      try {
        await producer.startup();
        const receipt = await producer.send({ topic: 'orders', tag: 't', body: Buffer.from('official') });
        console.log(JSON.stringify({ ok: true, id: receipt.messageId }));
      } catch (error) {
        console.log(JSON.stringify({ ok: false, error: String(error && error.message) }));
      }
      await producer.shutdown().catch(() => undefined);
      process.exit(0);
    `;
    const runScript = async (accessSecret: string): Promise<{ ok: boolean; error?: string }> => {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script(accessSecret)], { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => child.kill('SIGKILL'), 40_000);
        child.on('exit', () => { clearTimeout(timer); resolve(); });
      });
      return JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as { ok: boolean; error?: string };
    };
    expect(await runScript(alice.accessSecret)).toMatchObject({ ok: true });
    const refused = await runScript('wrong');
    expect(refused.ok).toBe(false);
    expect(refused.error).toMatch(/ForbiddenException.*Check signature failed for accessKey/);
  }, 90_000);

  it('our client puts RocketMQ 5\'s signature header on its calls', async () => {
    const connection = new MQConnection(cluster.clientOptions(alice));
    try {
      const metadata = connection.metadata();
      expect(metadata.get('authorization')[0]).toMatch(/^MQv2-HMAC-SHA1 Credential=alice, SignedHeaders=x-mq-date-time, Signature=[0-9A-F]{40}$/);
    } finally {
      connection.close();
    }
  });
});
