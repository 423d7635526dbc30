/**
 * `npm run bench` — end-to-end produce and consume on one 3-node broker group (SYNC_FLUSH,
 * 1 KiB bodies, 1/64/256 in flight) through our client (straight to the leader) and through
 * the official rocketmq-client-nodejs Producer (through the access point), side by side in
 * the same run with a 3-node NATS JetStream R3 stream (file storage). nats-server is
 * installed from Debian's packages when missing (as ../shared/peers/nats-bench.sh does);
 * without it, the NATS rows are skipped with a note. Every phase is bounded in count and time.
 *
 *   npm run bench [-- --seconds 8 --size 1024 --inflight 1,64,256 --json --no-nats]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import Table from 'cli-table3';
import { Command } from 'commander';
import { AckPolicy, connect, DeliverPolicy, StorageType } from 'nats';
import { Producer as OfficialProducer } from 'rocketmq-client-nodejs';
import { Admin } from '../src/client/admin.js';
import { Producer } from '../src/client/producer.js';
import { PullConsumer } from '../src/client/pull-consumer.js';
import { LocalCluster, freePorts } from '../src/cli/local-cluster.js';
import { plainWhenPiped } from '../src/cli/tables.js';

interface Row {
  system: string;
  phase: string;
  inflight: number;
  messages: number;
  seconds: number;
  msgs_s: number;
  p50_ms: number;
  p99_ms: number;
}

const percentile = (sorted: number[], p: number): number => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number);
const round = (n: number, digits = 2): number => Number(n.toFixed(digits));

/** Closed loop: `inflight` workers, each awaiting its send before the next; bounded in count and time. */
async function closedLoop(system: string, inflight: number, seconds: number, countMax: number, send: () => Promise<unknown>): Promise<Row> {
  const latencies: number[] = [];
  let issued = 0;
  const started = performance.now();
  const until = started + seconds * 1000;
  await Promise.all(Array.from({ length: inflight }, async () => {
    while (issued < countMax && performance.now() < until) {
      issued++;
      const t = performance.now();
      await send();
      latencies.push(performance.now() - t);
    }
  }));
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return { system, phase: 'produce', inflight, messages: latencies.length, seconds: round(elapsed), msgs_s: Math.round(latencies.length / elapsed), p50_ms: round(percentile(latencies, 50)), p99_ms: round(percentile(latencies, 99)) };
}

function ensureNatsServer(): string | undefined {
  const found = spawnSync('sh', ['-c', 'command -v nats-server'], { encoding: 'utf8' }).stdout.trim();
  if (found !== '') return found;
  if (process.getuid?.() !== 0) return undefined;
  console.error('bench: installing nats-server from Debian packages (apt-get) for the same-run comparison...');
  spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore' });
  spawnSync('apt-get', ['install', '-y', '-qq', 'nats-server'], { stdio: 'ignore', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  const again = spawnSync('sh', ['-c', 'command -v nats-server'], { encoding: 'utf8' }).stdout.trim();
  return again === '' ? undefined : again;
}

async function benchNats(binary: string, dir: string, options: { inflights: number[]; seconds: number; size: number; drain: number }): Promise<Row[]> {
  const ports = await freePorts(6);
  const client = ports.slice(0, 3);
  const routes = ports.slice(3).map((p) => `nats-route://127.0.0.1:${p}`).join(', ');
  const processes: ChildProcess[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const conf = path.join(dir, `nats-n${i + 1}.conf`);
      await fs.writeFile(conf, `server_name: n${i + 1}\nlisten: 127.0.0.1:${client[i]}\njetstream { store_dir: "${path.join(dir, `nats-n${i + 1}`)}", max_memory_store: 256MB, max_file_store: 20GB }\ncluster { name: bench, listen: 127.0.0.1:${ports[3 + i]}, routes: [ ${routes} ] }\n`);
      processes.push(spawn(binary, ['-c', conf], { stdio: 'ignore' }));
    }
    const servers = client.map((p) => `127.0.0.1:${p}`);
    const retry = async <T>(fn: () => Promise<T>): Promise<T> => {
      for (let i = 0; ; i++) {
        try { return await fn(); } catch (error) { if (i > 60) throw error; await new Promise((r) => setTimeout(r, 500)); }
      }
    };
    const admin = await retry(() => connect({ servers }));
    const jsm = await retry(() => admin.jetstreamManager({ timeout: 2000 }));
    await retry(() => jsm.streams.add({ name: 'BENCH', subjects: ['bench'], storage: StorageType.File, num_replicas: 3 }));
    const info = await jsm.streams.info('BENCH');
    const leaderName = info.cluster?.leader ?? 'n1';
    const leader = servers[Number(leaderName.slice(1)) - 1] as string;
    await admin.close();
    const nc = await connect({ servers: leader });
    const js = nc.jetstream();
    const payload = randomBytes(options.size);
    const rows: Row[] = [];
    for (const inflight of options.inflights) rows.push(await closedLoop('NATS JetStream R3', inflight, options.seconds, inflight === 1 ? 5_000 : 100_000, () => js.publish('bench', payload)));
    const jsm2 = await nc.jetstreamManager();
    const total = (await jsm2.streams.info('BENCH')).state.messages;
    await jsm2.consumers.add('BENCH', { durable_name: 'drain', ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All });
    const consumer = await js.consumers.get('BENCH', 'drain');
    const want = Math.min(total, options.drain);
    const started = performance.now();
    let got = 0;
    while (got < want && performance.now() - started < 120_000) {
      const batch = await consumer.fetch({ max_messages: 1000, expires: 2000 });
      for await (const m of batch) {
        m.ack();
        got++;
        if (got >= want) break;
      }
    }
    const seconds = (performance.now() - started) / 1000;
    rows.push({ system: 'NATS JetStream R3', phase: 'consume', inflight: 0, messages: got, seconds: round(seconds), msgs_s: Math.round(got / seconds), p50_ms: 0, p99_ms: 0 });
    await nc.close();
    return rows;
  } finally {
    for (const p of processes) p.kill('SIGKILL');
  }
}

async function main(): Promise<void> {
  const program = new Command('bench')
    .option('--seconds <s>', 'seconds per produce phase', (v) => Number(v), 8)
    .option('--size <bytes>', 'body size', (v) => Number(v), 1024)
    .option('--inflight <list>', 'in-flight levels', '1,64,256')
    .option('--drain <n>', 'messages to consume in the drain phase', (v) => Number(v), 50_000)
    .option('--no-nats', 'skip the NATS JetStream comparison')
    .option('--json', 'one JSON object per row');
  program.parse(process.argv);
  const options = program.opts<{ seconds: number; size: number; inflight: string; drain: number; nats: boolean; json?: boolean }>();
  const inflights = options.inflight.split(',').map(Number);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'raftmq-bench-'));
  const ports = await freePorts(5);
  const namesrv = `127.0.0.1:${ports[3]}`;
  const accessPoint = `127.0.0.1:${ports[4]}`;
  const cluster = new LocalCluster({ groupId: 'bench', dataRoot: dir, ports: ports.slice(0, 3), flush: 'sync', output: 'capture', role: 'broker', namesrv: [namesrv], logLevel: 'warn' });
  const rows: Row[] = [];
  const body = randomBytes(options.size);
  try {
    cluster.startNameServer(namesrv, accessPoint);
    cluster.startAll();
    const admin = new Admin({ nameServers: [namesrv] });
    const until = Date.now() + 30_000;
    while (!(await admin.cluster().catch(() => [])).some((n) => n.isLeader)) {
      if (Date.now() > until) throw new Error('no leader within 30 s');
      await new Promise((r) => setTimeout(r, 100));
    }
    await admin.createTopic('bench', { readQueues: 8, writeQueues: 8 });
    await admin.createTopic('bench-official', { readQueues: 8, writeQueues: 8 });
    admin.close();

    const producer = new Producer({ nameServers: [namesrv], sendTimeoutMs: 10_000 });
    await producer.start(['bench']);
    for (let i = 0; i < 500; i++) await producer.send({ topic: 'bench', body }); // warm-up
    for (const inflight of inflights) rows.push(await closedLoop('RaftMQ, our client', inflight, options.seconds, inflight === 1 ? 5_000 : 100_000, () => producer.send({ topic: 'bench', body })));
    producer.shutdown();
    const consumer = new PullConsumer({ nameServers: [namesrv], group: 'bench-drain', pullBatchSize: 256, bufferedPerQueueMax: 4096 });
    consumer.subscribe('bench');
    const started = performance.now();
    await consumer.start();
    let got = 0;
    while (got < options.drain && performance.now() - started < 120_000) got += (await consumer.poll(1_000, 4096)).length;
    const seconds = (performance.now() - started) / 1000;
    rows.push({ system: 'RaftMQ, our client', phase: 'consume', inflight: 0, messages: got, seconds: round(seconds), msgs_s: Math.round(got / seconds), p50_ms: 0, p99_ms: 0 });
    await consumer.shutdown();

    const official = new OfficialProducer({ endpoints: accessPoint, topics: ['bench-official'] } as never);
    await official.startup();
    for (const inflight of inflights) rows.push(await closedLoop('RaftMQ, official client via access point', inflight, options.seconds, inflight === 1 ? 5_000 : 100_000, () => official.send({ topic: 'bench-official', body })));
    await official.shutdown();
  } finally {
    await cluster.stop({ kill: false, removeData: false });
  }
  let natsNote = '';
  if (options.nats) {
    const binary = ensureNatsServer();
    if (binary === undefined) natsNote = 'nats-server is not installed and could not be installed (needs root and Debian packages): NATS rows skipped';
    else rows.push(...await benchNats(binary, dir, { inflights, seconds: options.seconds, size: options.size, drain: options.drain }));
  }
  await fs.rm(dir, { recursive: true, force: true });
  const nats = new Map(rows.filter((r) => r.system.startsWith('NATS')).map((r) => [`${r.phase}/${r.inflight}`, r.msgs_s]));
  const withRatio = rows.map((r) => ({ ...r, vs_nats: nats.has(`${r.phase}/${r.inflight}`) && !r.system.startsWith('NATS') ? round(r.msgs_s / (nats.get(`${r.phase}/${r.inflight}`) as number)) : null }));
  if (options.json === true) {
    for (const row of withRatio) console.log(JSON.stringify(row));
  } else {
    const table = new Table({ head: ['system', 'phase', 'in flight', 'messages', 'msgs/s', 'p50 ms', 'p99 ms', '× NATS R3'], ...plainWhenPiped() });
    for (const r of withRatio) table.push([r.system, r.phase, r.phase === 'consume' ? '-' : r.inflight, r.messages, r.msgs_s, r.phase === 'consume' ? '-' : r.p50_ms, r.phase === 'consume' ? '-' : r.p99_ms, r.vs_nats ?? '']);
    console.log(table.toString());
    console.log(`1 KiB bodies; RaftMQ: 3 broker processes, SYNC_FLUSH (fdatasync on a quorum before the ack); NATS JetStream R3: file storage, which acknowledges before fsync. All on this machine in this run.${natsNote === '' ? '' : `\n${natsNote}`}`);
  }
  process.exit(0);
}

main().catch((error: unknown) => {
  console.error(`bench: ${(error as Error).stack ?? String(error)}`);
  process.exit(1);
});
