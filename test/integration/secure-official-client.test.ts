/**
 * Issue 12's first done-means, on real processes: the official RocketMQ 5 client's Producer,
 * SimpleConsumer and PushConsumer over TLS (sslEnabled, the test CA through
 * GRPC_DEFAULT_SSL_ROOTS_FILE_PATH) with sessionCredentials, through the access point of a
 * cluster with TLS on every port and authentication and ACL on. A user granted what it needs
 * sends and reads everything with both consumers; a wrong secret and a missing permission fail
 * with ForbiddenException and say why.
 */
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerCluster } from '../support/broker-cluster.js';

const cluster = new BrokerCluster({ tls: true, auth: true, groupId: 'g1' });
const user = { accessKey: 'shop', accessSecret: 'shop-secret-41c2' };

/** Runs an official-client script in a child (grpc-js reads the CA path when it first loads); answers its last JSON line. */
async function official(body: string): Promise<Record<string, unknown>> {
  const script = `
    import { Producer, SimpleConsumer, PushConsumer } from 'rocketmq-client-nodejs';
    const endpoints = ${JSON.stringify(cluster.accessPoint)};
    const common = { endpoints, sslEnabled: true, requestTimeout: 3000 };
    const out = {};
    try {
      ${body}
    } catch (error) {
      out.error = String(error && error.message);
    }
    console.log(JSON.stringify(out));
    process.exit(0);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    cwd: process.cwd(), env: { ...process.env, GRPC_DEFAULT_SSL_ROOTS_FILE_PATH: cluster.certificates?.caFile as string }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('exit', () => { clearTimeout(timer); resolve(); });
  });
  const last = stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(last) as Record<string, unknown>;
  } catch {
    throw new Error(`no result from the official client: ${stdout}\n${stderr.slice(-2_000)}`);
  }
}

beforeAll(async () => {
  await cluster.start();
  await cluster.admin.createTopic('shop-orders');
  await cluster.admin.createTopic('shop-audit');
  await cluster.admin.createUser(user.accessKey, user.accessSecret);
  await cluster.admin.grant(user.accessKey, 'Topic:shop-orders', ['Pub', 'Sub']);
  await cluster.admin.grant(user.accessKey, 'Group:shop-*', ['Sub']);
}, 60_000);

afterAll(async () => {
  await cluster.stop();
});

describe('the official client over TLS with credentials', () => {
  it('Producer, SimpleConsumer and PushConsumer: everything sent is read by both consumer groups', async () => {
    const result = await official(`
      const credentials = ${JSON.stringify(user)};
      const producer = new Producer({ ...common, sessionCredentials: credentials, topics: ['shop-orders'] });
      await producer.startup();
      const sent = [];
      for (let i = 0; i < 20; i++) sent.push((await producer.send({ topic: 'shop-orders', tag: 't', body: Buffer.from('order-' + i) })).messageId);
      const pushed = new Set();
      const push = new PushConsumer({ ...common, sessionCredentials: credentials, consumerGroup: 'shop-push', subscriptions: new Map([['shop-orders', '*']]),
        messageListener: { consume: async (message) => { pushed.add(message.messageId); return 'SUCCESS'; } } });
      await push.startup();
      const simple = new SimpleConsumer({ ...common, sessionCredentials: credentials, consumerGroup: 'shop-simple', subscriptions: new Map([['shop-orders', '*']]), awaitDuration: 2000 });
      await simple.startup();
      const pulled = new Set();
      const until = Date.now() + 30000;
      while ((pulled.size < sent.length || pushed.size < sent.length) && Date.now() < until) {
        for (const message of await simple.receive(16, 10000)) { pulled.add(message.messageId); await simple.ack(message); }
      }
      out.sent = sent.length;
      out.simple = sent.filter((id) => pulled.has(id)).length;
      out.push = sent.filter((id) => pushed.has(id)).length;
      await simple.shutdown().catch(() => undefined);
      await push.shutdown().catch(() => undefined);
      await producer.shutdown().catch(() => undefined);
    `);
    expect(result).toEqual({ sent: 20, simple: 20, push: 20 });
  }, 90_000);

  it('a wrong secret fails startup with ForbiddenException', async () => {
    const result = await official(`
      const producer = new Producer({ ...common, sessionCredentials: { accessKey: 'shop', accessSecret: 'not-it' }, topics: ['shop-orders'] });
      await producer.startup();
      out.started = true;
    `);
    expect(String(result.error)).toMatch(/ForbiddenException.*Check signature failed for accessKey "shop"/);
  }, 60_000);

  it('a missing permission: startup for a topic it may not publish to fails with ForbiddenException naming it', async () => {
    const result = await official(`
      const producer = new Producer({ ...common, sessionCredentials: ${JSON.stringify(user)}, topics: ['shop-audit'] });
      await producer.startup();
      out.started = true;
    `);
    expect(String(result.error)).toMatch(/ForbiddenException.*shop may not Pub on Topic:shop-audit/);
  }, 60_000);
});
