/**
 * `npm run bench` — end-to-end produce and consume on one 3-node broker group (SYNC_FLUSH,
 * 1 KiB bodies, 1/64/256 in flight) through our client (straight to the leader) and through
 * the official rocketmq-client-nodejs Producer (straight to the leader, then through the access
 * point), side by side in the same run with two Raft-replicated peers: a 3-node NATS JetStream
 * R3 stream (file storage; bench/nats-peer.ts) and a 3-node RabbitMQ quorum queue (publisher
 * confirms; bench/rabbitmq-peer.ts). Both peers are installed from Debian's packages when
 * missing; a peer that cannot be had is skipped with a note. Each system runs alone: RaftMQ's
 * processes are stopped before NATS starts, NATS's before RabbitMQ's, since every row also
 * reports the CPU its servers and this client used per message. Every phase is bounded in
 * count and time.
 *
 * With --secure a second RaftMQ cluster follows the first (--secure-first: precedes it), alone, with TLS on every port
 * (client, NameServer, Raft gRPC and the peer lane) and authentication + ACL on: our Producer and
 * PullConsumer sign every call as a normal user granted only Pub and Sub on the bench topic and
 * Sub on the drain group, so each call pays the signature, the HMAC check and the ACL lookup a
 * production client pays. It runs our client's phases only (warm-up, 1/64/256 in flight, the
 * drain); its rows carry vs_plain, msgs/s over the plain RaftMQ row of the same phase and in flight.
 *
 *   npm run bench [-- --seconds 8 --size 1024 --inflight 1,64,256 --drain 50000 --warm-up 20
 *                     --json --no-nats --no-rabbitmq --no-official --secure --secure-first --cpu-prof DIR]
 *
 * Every system and client first gets --warm-up seconds of one send at a time, so that what is
 * measured is the steady state (bench-support's warmUp says why).
 *
 * With --cpu-prof DIR the RaftMQ server processes (brokers n1..n3 and the NameServer with its
 * access point) run under `node --cpu-prof`, writing DIR/<id>.<stamp>.cpuprofile when they stop;
 * the bench prints each phase's `--window` for `node dist/bench/profile-top.js`.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import Table from 'cli-table3';
import { Command, InvalidArgumentError } from 'commander';
import { Producer as OfficialProducer, type ProducerOptions } from 'rocketmq-client-nodejs';
import { Admin } from '../src/client/admin.js';
import type { ConnectionOptions } from '../src/client/mq-connection.js';
import { Producer } from '../src/client/producer.js';
import { PullConsumer } from '../src/client/pull-consumer.js';
import { writeDevAuth, writeDevCertificates } from '../src/cli/dev-certificates.js';
import { LocalCluster, freePorts } from '../src/cli/local-cluster.js';
import { readCredentialsFile } from '../src/server/access-gate.js';
import { plainWhenPiped } from '../src/cli/tables.js';
import { closedLoop, countCap, ensureDebianBinary, measure, onInterrupt, round, warmUp, type Row } from './bench-support.js';
import { NATS, benchNats } from './nats-peer.js';
import { RABBITMQ, benchRabbitMQ, ensureRabbitMQ } from './rabbitmq-peer.js';

const OURS = 'RaftMQ, our client';
const DIRECT = 'RaftMQ, official client direct to leader';
const VIA_AP = 'RaftMQ, official client via access point';
const SECURE = 'RaftMQ, our client, TLS + auth';
/** The normal user the --secure run's clients sign as, and what it is granted (nothing else). */
const BENCH_USER = 'bench-user';
const DRAIN_GROUP = 'bench-drain';

interface Options {
  readonly seconds: number;
  readonly size: number;
  readonly inflights: readonly number[];
  readonly drain: number;
  readonly warmUpSeconds: number;
  readonly official: boolean;
  readonly cpuProf?: string;
}

/** A phase's span on the monotonic clock V8 stamps its CPU profiles with (µs), to turn into a profile-top --window. */
interface PhaseSpan {
  readonly label: string;
  readonly startUs: number;
  readonly endUs: number;
}

const monotonicUs = (): number => Number(process.hrtime.bigint() / 1000n);

const positiveInteger = (name: string, max: number) => (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > max) throw new InvalidArgumentError(`${name} must be an integer from 1 to ${max}, not '${value}'`);
  return n;
};

function parseOptions(): Options & { json: boolean; nats: boolean; rabbitmq: boolean; secure: boolean; secureFirst: boolean } {
  const program = new Command('bench')
    .option('--seconds <s>', 'seconds per produce phase (each also stops at 5,000 messages at 1 in flight, 100,000 above)', (v) => {
      const n = Number(v);
      if (!Number.isFinite(n) || n <= 0 || n > 600) throw new InvalidArgumentError(`--seconds must be a number above 0 and at most 600, not '${v}'`);
      return n;
    }, 8)
    .option('--size <bytes>', 'body size', positiveInteger('--size', 4 * 1024 * 1024), 1024)
    .option('--inflight <list>', 'in-flight levels, comma-separated', (v) => v.split(',').map((part) => positiveInteger('each --inflight level', 4096)(part.trim())), [1, 64, 256])
    .option('--drain <n>', 'messages to consume in each drain phase (topped up first if the produce phases stored fewer)', positiveInteger('--drain', 1_000_000), 50_000)
    .option('--warm-up <s>', 'seconds of unmeasured sends, one at a time, each system and client gets first', (v) => {
      const n = Number(v);
      if (!Number.isFinite(n) || n < 0 || n > 600) throw new InvalidArgumentError(`--warm-up must be a number from 0 to 600, not '${v}'`);
      return n;
    }, 20)
    .option('--no-nats', 'skip the NATS JetStream comparison')
    .option('--no-rabbitmq', 'skip the RabbitMQ quorum queue comparison')
    .option('--no-official', 'skip the official client\'s RaftMQ rows (direct and via the access point)')
    .option('--secure', 'also run our client\'s phases against a RaftMQ cluster with TLS and auth + ACL on, signing as a normal user (rows with vs_plain)')
    .option('--secure-first', 'with --secure, run the secure cluster before the plain one (to see what the order does to the ratio)')
    .option('--cpu-prof <dir>', 'run the RaftMQ servers under node --cpu-prof, writing .cpuprofile files to <dir>')
    .option('--json', 'one JSON object per row')
    .allowExcessArguments(false);
  program.parse(process.argv);
  const o = program.opts<{ seconds: number; size: number; inflight: number[]; drain: number; warmUp: number; nats: boolean; rabbitmq: boolean; official: boolean; secure?: boolean; secureFirst?: boolean; cpuProf?: string; json?: boolean }>();
  return {
    seconds: o.seconds, size: o.size, inflights: o.inflight, drain: o.drain, warmUpSeconds: o.warmUp, nats: o.nats, rabbitmq: o.rabbitmq, official: o.official,
    secure: o.secure === true || o.secureFirst === true, secureFirst: o.secureFirst === true, json: o.json === true, ...(o.cpuProf === undefined ? {} : { cpuProf: path.resolve(o.cpuProf) }),
  };
}

/**
 * The official clients' logger: warnings and errors to stderr, the rest dropped. Its default
 * gives each client an egg-logger on the same ~/logs file, whose stream the first client's
 * shutdown closes, so the second client's shutdown logged "log stream had been closed" stacks.
 */
const officialLogger: NonNullable<ProducerOptions['logger']> = {
  info: () => undefined,
  warn: (...args: unknown[]) => console.error('official client:', ...args),
  error: (...args: unknown[]) => console.error('official client:', ...args),
};

/**
 * Every RaftMQ phase, with the cluster alone on the machine; the cluster is stopped before this
 * returns. `secure`: TLS on every port and auth + ACL on (certificates and keys made in `dir`
 * before anything is measured), our client's phases only, signed as BENCH_USER.
 */
async function benchRaftMQ(dir: string, options: Options, spans: PhaseSpan[], secure: boolean): Promise<Row[]> {
  const variant = secure ? 'raftmq-secure' : 'raftmq';
  const ours = secure ? SECURE : OURS;
  const ports = await freePorts(5);
  const namesrv = `127.0.0.1:${ports[3]}`;
  const accessPoint = `127.0.0.1:${ports[4]}`;
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '');
  // --cpu-prof is refused in NODE_OPTIONS, so it goes on the command line: the launcher prefix
  // execs node (keeping the pid) with the flags before the script ($0 is node, $@ the script and its arguments).
  const profiling = options.cpuProf === undefined ? {} : {
    launcher: (id: string): readonly string[] => ['sh', '-c', `exec "$0" --cpu-prof --cpu-prof-dir "$RAFTMQ_BENCH_CPU_PROF_DIR" --cpu-prof-name ${variant}.${id}.${stamp}.cpuprofile "$@"`],
    env: { RAFTMQ_BENCH_CPU_PROF_DIR: options.cpuProf },
  };
  const dataRoot = path.join(dir, variant);
  let security: { clientOptions: Pick<ConnectionOptions, 'tls'>; superUser: NonNullable<ConnectionOptions['sessionCredentials']>; authArgs: string[]; tlsDir: string } | undefined;
  if (secure) {
    const tlsDir = path.join(dataRoot, 'tls');
    const certificates = await writeDevCertificates(tlsDir, 'bench', ['n1', 'n2', 'n3'], ['namesrv', 'client']);
    const auth = await writeDevAuth(path.join(dataRoot, 'auth'));
    security = {
      clientOptions: { tls: { caFile: certificates.caFile } }, superUser: readCredentialsFile(auth.adminFile, 'admin'),
      authArgs: ['--auth-key-file', auth.keyFile, '--auth-admin-file', auth.adminFile], tlsDir,
    };
  }
  const cluster = new LocalCluster({
    groupId: 'bench', dataRoot, ports: ports.slice(0, 3), flush: 'sync', output: 'capture', role: 'broker', namesrv: [namesrv], logLevel: 'warn', ...profiling,
    ...(security === undefined ? {} : { tlsDir: security.tlsDir, extraArgs: security.authArgs }),
  });
  // The bench user: a random secret, Pub and Sub on 'bench' and Sub on the drain group, nothing else.
  const benchUser = { accessKey: BENCH_USER, accessSecret: randomBytes(24).toString('base64url') };
  const clientOptions = (user: ConnectionOptions['sessionCredentials']): ConnectionOptions => ({
    nameServers: [namesrv], ...security?.clientOptions, ...(security === undefined || user === undefined ? {} : { sessionCredentials: user }),
  });
  const stop = (): Promise<void> => cluster.stop({ kill: false, removeData: false });
  const unregister = onInterrupt(stop);
  const rows: Row[] = [];
  const body = randomBytes(options.size);
  let pids: number[] = [];
  const phase = async (system: string, phaseName: Row['phase'], inflight: number, run: Parameters<typeof measure>[4]): Promise<void> => {
    const startUs = monotonicUs();
    const row = await measure(system, phaseName, inflight, pids, run);
    spans.push({ label: `${system}, ${phaseName}${phaseName === 'produce' ? ` at ${inflight} in flight` : ''}`, startUs, endUs: monotonicUs() });
    rows.push(row);
  };
  try {
    cluster.startNameServer(namesrv, accessPoint);
    cluster.startAll();
    pids = [...cluster.processes.values()].map((child) => child.pid).filter((pid): pid is number => pid !== undefined);
    const admin = new Admin(clientOptions(security?.superUser));
    try {
      const until = Date.now() + 30_000;
      while (!(await admin.cluster().catch(() => [])).some((n) => n.isLeader)) {
        if (Date.now() > until) throw new Error('no leader within 30 s');
        await new Promise((r) => setTimeout(r, 100));
      }
      await admin.createTopic('bench', { readQueues: 8, writeQueues: 8 });
      if (secure) {
        await admin.createUser(BENCH_USER, benchUser.accessSecret, 'normal');
        await admin.grant(BENCH_USER, 'Topic:bench', ['Pub', 'Sub']);
        await admin.grant(BENCH_USER, `Group:${DRAIN_GROUP}`, ['Sub']);
      }
      if (options.official && !secure) await admin.createTopic('bench-official', { readQueues: 8, writeQueues: 8 });

      const producer = new Producer({ ...clientOptions(benchUser), sendTimeoutMs: 10_000 });
      await producer.start(['bench']);
      const send = (): Promise<unknown> => producer.send({ topic: 'bench', body });
      const warmedUp = await warmUp(options.warmUpSeconds, send);
      for (const inflight of options.inflights) await phase(ours, 'produce', inflight, () => closedLoop(inflight, options.seconds, countCap(inflight), send));
      const stored = warmedUp + rows.reduce((sum, r) => sum + r.messages, 0);
      if (stored < options.drain) await closedLoop(256, 120, options.drain - stored, send); // top up: every system drains the same count
      producer.shutdown();
      const consumer = new PullConsumer({ ...clientOptions(benchUser), group: DRAIN_GROUP, pullBatchSize: 256, bufferedPerQueueMax: 4096 });
      consumer.subscribe('bench');
      try {
        await phase(ours, 'consume', 0, async () => {
          const started = performance.now();
          await consumer.start();
          let got = 0;
          while (got < options.drain && performance.now() - started < 120_000) got += (await consumer.poll(1_000, Math.min(4096, options.drain - got))).length;
          return { messages: got };
        });
      } finally {
        await consumer.shutdown();
      }

      // The official client reads its CA from an environment variable when grpc-js loads, so over TLS it would need its own process: plain cluster only.
      if (secure || !options.official) return rows;
      const leader = (await admin.cluster()).find((n) => n.isLeader && n.group === 'bench');
      if (leader === undefined) throw new Error('no leader of group bench for the official client');
      for (const [system, endpoints] of [[DIRECT, leader.address], [VIA_AP, accessPoint]] as const) {
        const official = new OfficialProducer({ endpoints, namespace: '', topics: ['bench-official'], logger: officialLogger });
        await official.startup();
        try {
          const officialSend = (): Promise<unknown> => official.send({ topic: 'bench-official', body });
          await warmUp(options.warmUpSeconds, officialSend);
          for (const inflight of options.inflights) await phase(system, 'produce', inflight, () => closedLoop(inflight, options.seconds, countCap(inflight), officialSend));
        } finally {
          await official.shutdown();
        }
      }
    } finally {
      admin.close();
    }
    return rows;
  } finally {
    unregister();
    await stop();
  }
}

/** For each profile the servers wrote, each phase as a profile-top --window (seconds from the profile's start). */
async function profileWindows(dir: string, spans: readonly PhaseSpan[]): Promise<string[]> {
  const lines: string[] = [];
  const files = (await fs.readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith('.cpuprofile')).sort();
  for (const file of files) {
    const profile = JSON.parse(await fs.readFile(path.join(dir, file), 'utf8')) as { startTime?: unknown; endTime?: unknown };
    if (typeof profile.startTime !== 'number') continue;
    const start = profile.startTime;
    const end = typeof profile.endTime === 'number' ? profile.endTime : Infinity;
    lines.push(`  ${path.join(dir, file)}`);
    // Only the phases this profile's process lived through (the plain and the secure cluster are different processes).
    for (const span of spans.filter((s) => s.startUs >= start && s.endUs <= end)) lines.push(`    --window ${round((span.startUs - start) / 1e6, 1)},${round((span.endUs - span.startUs) / 1e6, 1)}  ${span.label}`);
  }
  return lines;
}

/**
 * Adds the ratio columns: msgs/s of a RaftMQ row over each peer's (an access-point row over the
 * direct one, a TLS + auth row over plain RaftMQ with our client) at the same phase and in flight.
 */
function withRatios(rows: readonly Row[]): Array<Row & { vs_nats: number | null; vs_rabbitmq: number | null; vs_direct: number | null; vs_plain: number | null }> {
  const rate = (system: string, r: Row): number | undefined => rows.find((o) => o.system === system && o.phase === r.phase && o.inflight === r.inflight)?.msgs_s;
  const ratio = (r: Row, system: string, applies: boolean): number | null => {
    const base = applies ? rate(system, r) : undefined;
    return base === undefined || base === 0 ? null : round(r.msgs_s / base);
  };
  return rows.map((r) => {
    const peer = r.system === NATS || r.system === RABBITMQ;
    return { ...r, vs_nats: ratio(r, NATS, !peer), vs_rabbitmq: ratio(r, RABBITMQ, !peer), vs_direct: ratio(r, DIRECT, r.system === VIA_AP), vs_plain: ratio(r, OURS, r.system === SECURE) };
  });
}

async function main(): Promise<void> {
  const options = parseOptions();
  if (options.cpuProf !== undefined) await fs.mkdir(options.cpuProf, { recursive: true });
  // Installs first, so apt-get never runs while something is measured.
  const notes: string[] = [];
  const natsBinary = options.nats ? ensureNatsServer(notes) : undefined;
  const rabbitScripts = options.rabbitmq ? ensureRabbitMQPeer(notes) : undefined;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'raftmq-bench-'));
  const rows: Row[] = [];
  const spans: PhaseSpan[] = [];
  let peerFailed = false;
  const unregister = onInterrupt(() => fs.rm(dir, { recursive: true, force: true }));
  try {
    // The secure cluster right after the plain one (or before it), alone as well: the ratio is of two runs a minute apart.
    const secureRows = options.secureFirst ? await benchRaftMQ(dir, options, spans, true) : [];
    rows.push(...await benchRaftMQ(dir, options, spans, false));
    if (options.secure && !options.secureFirst) secureRows.push(...await benchRaftMQ(dir, options, spans, true));
    rows.push(...secureRows);
    const peer = async (name: string, run: () => Promise<Row[]>): Promise<void> => {
      try {
        rows.push(...await run());
      } catch (error) {
        peerFailed = true;
        notes.push(`${name} rows missing: the run failed: ${(error as Error).message}`);
      }
    };
    if (natsBinary !== undefined) await peer('NATS', () => benchNats(natsBinary, dir, options));
    if (rabbitScripts !== undefined) await peer('RabbitMQ', () => benchRabbitMQ(rabbitScripts, dir, options));
  } finally {
    unregister();
    await fs.rm(dir, { recursive: true, force: true });
  }
  const table = withRatios(rows);
  if (options.json) {
    for (const row of table) console.log(JSON.stringify(row));
    for (const note of notes) console.error(`bench: ${note}`);
  } else {
    const dash = (r: Row, value: number): number | string => (r.phase === 'consume' ? '-' : value);
    const out = new Table({ head: ['system', 'phase', 'in flight', 'messages', 'msgs/s', 'p50 ms', 'p99 ms', 'server CPU µs/msg', 'client CPU µs/msg', '× NATS R3', '× RabbitMQ', '× direct', ...(options.secure ? ['× plain'] : [])], ...plainWhenPiped() });
    for (const r of table) out.push([r.system, r.phase, dash(r, r.inflight), r.messages, r.msgs_s, dash(r, r.p50_ms), dash(r, r.p99_ms), r.server_cpu_us_per_msg, r.client_cpu_us_per_msg, r.vs_nats ?? '', r.vs_rabbitmq ?? '', r.vs_direct ?? '', ...(options.secure ? [r.vs_plain ?? ''] : [])]);
    console.log(out.toString());
    console.log([
      `${options.size} B bodies. RaftMQ: 3 broker processes, SYNC_FLUSH (fdatasync on a quorum before the ack); server CPU counts the brokers and the NameServer with its access point.`,
      ...(options.secure ? [`${SECURE}: a second cluster with TLS on every port (client, NameServer, Raft gRPC, peer lane) and auth + ACL on; every call signed by a normal user granted Pub/Sub on the topic; × plain is its msgs/s over ${OURS}'s.`] : []),
      ...(rows.some((r) => r.system === NATS) ? ['NATS JetStream R3: file storage, which acknowledges before fsync; server CPU counts the 3 nats-server processes.'] : []),
      ...(rows.some((r) => r.system === RABBITMQ) ? ['RabbitMQ: quorum queue with 3 replicas, publisher confirms (fsync on a quorum before the confirm); server CPU counts the 3 Erlang VMs.'] : []),
      'Each system ran alone, one after the other, all on this machine in this run; × columns are msgs/s ratios at the same phase and in flight.',
      ...notes,
    ].join('\n'));
  }
  if (options.cpuProf !== undefined) {
    const windows = await profileWindows(options.cpuProf, spans);
    console.error(windows.length === 0 ? `bench: no .cpuprofile files in ${options.cpuProf}` : ['bench: CPU profiles (node dist/bench/profile-top.js FILE --window start,len):', ...windows].join('\n'));
  }
  process.exit(peerFailed ? 1 : 0);
}

function ensureNatsServer(notes: string[]): string | undefined {
  const binary = ensureDebianBinary('nats-server', 'nats-server');
  if (binary === undefined) notes.push('nats-server is not installed and could not be installed (needs root and Debian packages): NATS rows skipped');
  return binary;
}

function ensureRabbitMQPeer(notes: string[]): string | undefined {
  const scripts = ensureRabbitMQ();
  if (scripts === undefined) notes.push('rabbitmq-server is not installed and could not be installed (needs root and Debian packages): RabbitMQ rows skipped');
  return scripts;
}

main().catch((error: unknown) => {
  console.error(`bench: ${(error as Error).stack ?? String(error)}`);
  process.exit(1);
});
