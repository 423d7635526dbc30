/**
 * Transaction check-backs with two broker groups behind one access point: the official
 * client's Telemetry stream is piped to one group, and the access point keeps a stream to
 * the other as well, so a transaction the client abandoned in either group is checked back
 * and committed by its checker.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Producer as OfficialProducer } from 'rocketmq-client-nodejs';
import definition from 'rocketmq-client-nodejs/proto/apache/rocketmq/v2/definition_pb.js';
import { afterAll, describe, expect, it, onTestFailed } from 'vitest';
import { Admin } from '../../src/client/admin.js';
import { SimpleConsumer } from '../../src/client/simple-consumer.js';
import { LocalCluster, freePorts } from '../../src/cli/local-cluster.js';
import { cliPath, waitFor } from '../support/process-cluster.js';
import { Receiver } from '../support/receiver.js';
import { shutDownGuarded, UncaughtGuard } from '../support/uncaught-guard.js';

const { TransactionResolution } = definition;

describe('transaction check-backs across two broker groups', () => {
  const clusters: LocalCluster[] = [];
  const closers: (() => unknown)[] = [];
  let dataRoot = '';
  const uncaught = new UncaughtGuard();
  afterAll(async () => {
    expect(await shutDownGuarded(uncaught, closers, async () => {
      for (const cluster of clusters) await cluster.stop({ kill: true, removeData: true });
      if (dataRoot !== '') await fs.rm(dataRoot, { recursive: true, force: true });
    })).toEqual([]);
  });

  it('commits abandoned transactions of both groups through the checker of a client of the access point', async () => {
    onTestFailed(() => { for (const cluster of clusters) for (const lines of cluster.output.values()) console.log(lines.slice(-40).join("\n")); });
    dataRoot = await fs.mkdtemp(path.join(os.tmpdir(), 'raftmq-txn-groups-it-'));
    const [portA, portB, namesrvPort, accessPort] = await freePorts(4) as [number, number, number, number];
    const namesrv = `127.0.0.1:${namesrvPort}`;
    const shape = (groupId: string, port: number): LocalCluster => new LocalCluster({
      groupId, dataRoot: path.join(dataRoot, groupId), ports: [port], flush: 'sync', output: 'capture', cliPath,
      role: 'broker', namesrv: [namesrv], extraArgs: ['--register-interval-ms', '300', '--txn-check-after-ms', '1000', '--txn-check-interval-ms', '1000'],
    });
    const groupA = shape('ga', portA);
    const groupB = shape('gb', portB);
    clusters.push(groupA, groupB);
    groupA.startNameServer(namesrv, `127.0.0.1:${accessPort}`, ['--expiry-ms', '60000']);
    groupA.startAll();
    groupB.startAll();
    const admin = new Admin({ nameServers: [namesrv] });
    closers.push(() => admin.close());
    await waitFor('both groups to register a leader', async () => (await admin.cluster().catch(() => [])).filter((n) => n.isLeader).length === 2, 20_000);
    await admin.createTopic('pay', { readQueues: 1, writeQueues: 1, messageType: 'TRANSACTION' });
    await waitFor('both groups to advertise the topic', async () => (await admin.connection.routes('pay', true)).length === 2, 10_000);

    const official = new OfficialProducer({
      endpoints: `127.0.0.1:${accessPort}`, topics: ['pay'], requestTimeout: 3000,
      checker: { check: async () => TransactionResolution.COMMIT },
    } as never);
    await official.startup();
    closers.push(() => official.shutdown());
    const consumer = new SimpleConsumer({ nameServers: [namesrv], group: 'payers', awaitMs: 1_000 }).subscribe('pay');
    closers.push(() => consumer.shutdown());
    const receiver = new Receiver(consumer);
    closers.push(() => receiver.stop());

    // Abandoned: sent in transactions that are never ended; the access point spreads them over both groups.
    const ids: string[] = [];
    for (let i = 0; i < 16; i++) ids.push((await official.send({ topic: 'pay', body: Buffer.from(`p${i}`) } as never, official.beginTransaction()) as { messageId: string }).messageId);
    await waitFor('every abandoned transaction committed by a check-back', () => ids.every((id) => receiver.firstSeen.has(id)), 20_000);
    const groups = new Set(ids.map((id) => receiver.firstSeen.get(id)?.message.brokerGroup));
    expect(groups).toEqual(new Set(['ga', 'gb']));
  }, 60_000);
});
