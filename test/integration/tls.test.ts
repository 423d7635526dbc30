/**
 * Issue 12, TLS and authenticated peers, on real processes: a NameServer with its access point
 * and three broker nodes, every port TLS with certificates from a throwaway CA. Our clients and
 * the official RocketMQ 5 client (sslEnabled) work over it; a plaintext client gets nowhere; a
 * process holding a valid certificate of another group, or none, cannot speak Raft to a member
 * (gRPC or lane) or register with the NameServer, is logged, and the group keeps its term; a
 * renewed certificate is served without a restart.
 */
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import * as tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificateAuthority, issueCertificate, type CertificateAuthority } from '../../src/cli/dev-certificates.js';
import { Producer } from '../../src/client/producer.js';
import { PullConsumer } from '../../src/client/pull-consumer.js';
import { raftPeerService } from '../../src/server/grpc-raft-transport.js';
import { encodeHello, FrameReader, FrameType, laneProtocolVersion } from '../../src/server/peer-frame-codec.js';
import { lanePortOffset } from '../../src/server/peer-lane.js';
import { nodeIdentityUri } from '../../src/server/tls.js';
import { loadProtoFile } from '../../src/util/proto-files.js';
import { BrokerCluster } from '../support/broker-cluster.js';
import { waitFor } from '../support/process-cluster.js';

const RaftPeerClient = grpc.makeGenericClientConstructor(raftPeerService, 'RaftPeer');
/* eslint-disable-next-line @typescript-eslint/no-explicit-any -- proto-loader objects are untyped at this edge */
const NameServerClient = (grpc.loadPackageDefinition(loadProtoFile('namesrv.proto')) as any).raftmq.namesrv.v1.NameServer as grpc.ServiceClientConstructor;

/** A method of a generic gRPC client, as these tests call it. */
type UnaryMethod<Name extends string> = Record<Name, (request: object, options: grpc.CallOptions, callback: (error: grpc.ServiceError | null) => void) => void>;

const cluster = new BrokerCluster({ tls: true, groupId: 'g1', extraArgs: ['--tls-refresh-ms', '200'] });
let ca: CertificateAuthority;
let caFile: string;

/** Writes a certificate the cluster's CA signs (or `authority`), naming `uris`; returns its files. */
async function certificate(name: string, uris: string[], authority = ca): Promise<{ cert: Buffer; key: Buffer }> {
  const issued = issueCertificate(authority, { commonName: name, hosts: ['127.0.0.1', 'localhost'], uris });
  return { cert: Buffer.from(issued.certificatePem), key: Buffer.from(issued.keyPem) };
}

function vote(address: string, credentials: grpc.ChannelCredentials, request: object): Promise<grpc.ServiceError | undefined> {
  const client = new RaftPeerClient(address, credentials);
  return new Promise((resolve) => {
    (client as unknown as UnaryMethod<'Vote'>).Vote(request, { deadline: Date.now() + 5_000 }, (error) => {
      client.close();
      resolve(error ?? undefined);
    });
  });
}

beforeAll(async () => {
  await cluster.start();
  caFile = cluster.certificates?.caFile as string;
  // The cluster's CA, to issue more certificates from (dev-certificates keeps its key beside it).
  ca = { certificatePem: await fs.readFile(caFile, 'utf8'), keyPem: await fs.readFile(path.join(path.dirname(caFile), 'ca-key.pem'), 'utf8') };
}, 60_000);

afterAll(async () => {
  await cluster.stop();
});

describe('TLS on every port', () => {
  it('our Producer and PullConsumer send and read over TLS; a plaintext client is refused', async () => {
    const producer = new Producer({ nameServers: [cluster.namesrv], tls: { caFile } });
    const consumer = new PullConsumer({ nameServers: [cluster.namesrv], tls: { caFile }, group: 'tls-readers', mode: 'clustering' });
    try {
      const ids: string[] = [];
      for (let i = 0; i < 20; i++) ids.push((await producer.send({ topic: 'secure', body: Buffer.from(`m${i}`) })).messageId);
      const received = new Set<string>();
      consumer.subscribe('secure', '*');
      await consumer.start();
      await waitFor('every message read back over TLS', async () => {
        for (const message of await consumer.poll(1_000)) received.add(message.messageId);
        return ids.every((id) => received.has(id));
      }, 20_000);
    } finally {
      await consumer.shutdown();
      producer.shutdown();
    }
    const plain = new Producer({ nameServers: [cluster.namesrv], sendTimeoutMs: 2_000 });
    try {
      await expect(plain.send({ topic: 'secure', body: Buffer.from('x') })).rejects.toThrow(/NameServer|UNAVAILABLE/);
    } finally {
      plain.shutdown();
    }
    expect(() => new Producer({ nameServers: [cluster.namesrv], tls: { caFile: '/nonexistent/ca.pem' } })).toThrow(/cannot read the TLS CA file \/nonexistent\/ca\.pem/);
  }, 60_000);

  it('the official client with sslEnabled, through the access point', async () => {
    // A child process: grpc-js reads GRPC_DEFAULT_SSL_ROOTS_FILE_PATH when it first loads, and this one has loaded already.
    const script = `
      import { Producer, SimpleConsumer } from 'rocketmq-client-nodejs';
      const endpoints = ${JSON.stringify(cluster.accessPoint)};
      const producer = new Producer({ endpoints, sslEnabled: true, topics: ['secure-official'], requestTimeout: 3000 });
      await producer.startup();
      const sent = [];
      for (let i = 0; i < 10; i++) sent.push((await producer.send({ topic: 'secure-official', tag: 't', body: Buffer.from('o' + i) })).messageId);
      const consumer = new SimpleConsumer({ endpoints, sslEnabled: true, consumerGroup: 'tls-official', subscriptions: new Map([['secure-official', '*']]), awaitDuration: 2000, requestTimeout: 3000 });
      await consumer.startup();
      const received = new Set();
      const until = Date.now() + 20000;
      while (received.size < sent.length && Date.now() < until) {
        for (const message of await consumer.receive(16, 10000)) { received.add(message.messageId); await consumer.ack(message); }
      }
      console.log(JSON.stringify({ sent: sent.length, received: sent.filter((id) => received.has(id)).length }));
      await consumer.shutdown().catch(() => undefined);
      await producer.shutdown().catch(() => undefined);
      process.exit(0);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      cwd: process.cwd(), env: { ...process.env, GRPC_DEFAULT_SSL_ROOTS_FILE_PATH: caFile }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 50_000);
      child.on('exit', (exitCode) => { clearTimeout(timer); resolve(exitCode); });
    });
    expect(code, `stdout: ${stdout}\nstderr: ${stderr.slice(-3000)}`).toBe(0);
    const result = JSON.parse(stdout.trim().split('\n').pop() as string) as { sent: number; received: number };
    expect(result).toEqual({ sent: 10, received: 10 });
  }, 60_000);
});

describe('authenticated peers', () => {
  it('Raft over gRPC: a certificate of another group, or none, is refused and logged; a member\'s own passes; the term holds', async () => {
    const leader = await cluster.leader();
    const target = cluster.local.address(leader.nodeId);
    const claimant = cluster.local.members.find((m) => m.id !== leader.nodeId)?.id as string;
    const caPem = Buffer.from(ca.certificatePem);
    // A high term: were it taken, the leader would step down.
    const request = { groupId: 'g1', from: claimant, to: leader.nodeId, term: 1_000_000, preVote: false, lastIndex: 1_000_000_000, lastTerm: 999_999 };

    const foreign = await certificate('foreign', [nodeIdentityUri('other', claimant)]);
    const refusedForeign = await vote(target, grpc.credentials.createSsl(caPem, foreign.key, foreign.cert), request);
    expect(refusedForeign?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(refusedForeign?.details).toMatch(new RegExp(`names raftmq://other/${claimant}, not raftmq://g1/${claimant}`));

    const refusedNone = await vote(target, grpc.credentials.createSsl(caPem), request);
    expect(refusedNone?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(refusedNone?.details).toMatch(/no client certificate signed by this cluster's CA/);

    // Naming the right node but signed by another CA: the port takes clients without a certificate, so the call arrives unverified.
    const stranger = await certificate('stranger', [nodeIdentityUri('g1', claimant)], createCertificateAuthority('another CA'));
    const refusedStranger = await vote(target, grpc.credentials.createSsl(caPem, stranger.key, stranger.cert), request);
    expect(refusedStranger?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(refusedStranger?.details).toMatch(/no client certificate signed by this cluster's CA/);

    const plaintext = await vote(target, grpc.credentials.createInsecure(), request);
    expect(plaintext?.code).toBe(grpc.status.UNAVAILABLE);

    // Negative control: the claimant's own certificate passes the check (a stale term, so Raft ignores it).
    const own = { cert: await fs.readFile(cluster.certificates?.certFile(claimant) as string), key: await fs.readFile(cluster.certificates?.keyFile(claimant) as string) };
    expect(await vote(target, grpc.credentials.createSsl(caPem, own.key, own.cert), { ...request, term: 0, lastIndex: 0, lastTerm: 0 })).toBeUndefined();

    const after = await cluster.leader();
    expect({ leader: after.nodeId, term: after.term }).toEqual({ leader: leader.nodeId, term: leader.term });
    await waitFor('the refusal in the leader\'s log', () => (cluster.local.output.get(leader.nodeId) ?? []).join('').includes('raft message refused'), 5_000);
  }, 60_000);

  it('the peer lane: a hello from a certificate of another group is refused and logged; without a certificate no TLS session', async () => {
    const leader = await cluster.leader();
    const [host, port] = cluster.local.address(leader.nodeId).split(':') as [string, string];
    const lanePort = Number(port) + lanePortOffset;
    const claimant = cluster.local.members.find((m) => m.id !== leader.nodeId)?.id as string;
    const foreign = await certificate('foreign-lane', [nodeIdentityUri('other', claimant)]);
    const exchange = (options: tls.ConnectionOptions): Promise<string> => new Promise((resolve) => {
      const socket = tls.connect({ host, port: lanePort, ca: ca.certificatePem, checkServerIdentity: () => undefined, ...options });
      const reader = new FrameReader(1 << 20);
      socket.on('secureConnect', () => socket.write(encodeHello({ version: laneProtocolVersion, groupId: 'g1', from: claimant, to: leader.nodeId })));
      socket.on('data', (chunk: Buffer) => reader.push(chunk, (type, body) => {
        resolve(type === FrameType.refused ? `refused: ${body.toString()}` : `frame ${type}`);
        return true;
      }));
      socket.on('error', (error) => resolve(`error: ${error.message}`));
      socket.on('close', () => resolve('closed'));
      setTimeout(() => { socket.destroy(); resolve('timeout'); }, 5_000);
    });
    expect(await exchange({ cert: foreign.cert, key: foreign.key })).toMatch(new RegExp(`refused: .*names raftmq://other/${claimant}, not raftmq://g1/${claimant}`));
    expect(await exchange({})).toMatch(/^(error|closed)/);
    await waitFor('the lane refusal in the leader\'s log', () => (cluster.local.output.get(leader.nodeId) ?? []).join('').includes('peer lane: connection refused'), 5_000);
    const after = await cluster.leader();
    expect(after.term).toBe(leader.term);
  }, 30_000);

  it('the NameServer takes a registration only from the certificate of the node it names', async () => {
    const foreign = await certificate('foreign-registrar', [nodeIdentityUri('g1', 'n9')]);
    const client = new NameServerClient(cluster.namesrv, grpc.credentials.createSsl(Buffer.from(ca.certificatePem), foreign.key, foreign.cert));
    const registration = { group: 'g1', nodeId: 'n1', address: '127.0.0.1:1', role: 'leader', term: 1_000_000, leaderId: 'n1', leaderAddress: '127.0.0.1:1' };
    const error = await new Promise<grpc.ServiceError | null>((resolve) => {
      (client as unknown as UnaryMethod<'Register'>).Register(registration, { deadline: Date.now() + 5_000 }, (failure: grpc.ServiceError | null) => resolve(failure));
    });
    client.close();
    expect(error?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(error?.details).toMatch(/registration refused: the peer's certificate names raftmq:\/\/g1\/n9, not raftmq:\/\/g1\/n1/);
    const view = await cluster.admin.cluster();
    expect(view.find((n) => n.nodeId === 'n1')?.address).toBe(cluster.local.address('n1'));
  }, 30_000);
});

describe('certificate reload', () => {
  it('a renewed node certificate is served to new connections without a restart', async () => {
    const [host, port] = cluster.local.address('n1').split(':') as [string, string];
    const servedSerial = (): Promise<string> => new Promise((resolve, reject) => {
      const socket = tls.connect({ host, port: Number(port), ca: ca.certificatePem, ALPNProtocols: ['h2'] }, () => {
        const serial = socket.getPeerCertificate().serialNumber;
        socket.destroy();
        resolve(serial);
      });
      socket.on('error', reject);
    });
    const before = await servedSerial();
    const renewed = issueCertificate(ca, { commonName: 'g1/n1', hosts: ['127.0.0.1', 'localhost'], uris: [nodeIdentityUri('g1', 'n1')] });
    // Key first, then certificate: in between the pair does not match and the old one is kept.
    await fs.writeFile(cluster.certificates?.keyFile('n1') as string, renewed.keyPem);
    await fs.writeFile(cluster.certificates?.certFile('n1') as string, renewed.certificatePem);
    const expected = new X509Certificate(renewed.certificatePem).serialNumber;
    expect(expected).not.toBe(before);
    await waitFor('n1 serving the renewed certificate', async () => (await servedSerial()) === expected, 10_000);
    // The node keeps working with its peers and clients on the new certificate.
    const producer = new Producer({ nameServers: [cluster.namesrv], tls: { caFile } });
    try {
      await producer.send({ topic: 'secure', body: Buffer.from('after renewal') });
    } finally {
      producer.shutdown();
    }
  }, 30_000);
});
