/**
 * `npm run bench:lifecycle` — what a broker node costs over its life, on the dev cluster shape
 * (a NameServer with its access point and three `raftmq broker` processes, SYNC_FLUSH, each
 * node its own data dir under a temp dir), after `messages` acknowledged 1 KiB sends from our
 * Producer at high concurrency:
 *
 * - `restart`   SIGKILL a follower and restart it: `restart_s` from the spawn until its Raft
 *               status reports applied index ≥ the group's commit index at the kill, its
 *               `rss_mb` once serving, `data_mb` of the three data dirs; then SIGKILL all three,
 *               restart them and time the first acknowledged send of a fresh Producer
 *               (`first_send_s`) and the moment all three have applied the old commit index
 *               (`all_serving_s`). `startup` breaks the follower's restart down by the times of
 *               its own log lines, in seconds after the spawn: `recovered` ('commitlog recovered':
 *               process start, data dir claim and the commitlog's open: sealed segments from
 *               their index files, a scan of the open one),
 *               `restored` ('state restored from snapshot': LevelDB, snapshot load and decode),
 *               `listening` (gRPC bound), `became` (first 'became …' line naming a leader: it
 *               heard from one, or won);
 *               from there to `restart_s` is catching up (`replayed` entries after the snapshot
 *               plus what the leader sends). A node with an almost empty log reaches
 *               `recovered` in about 0.4 s: that is process start and module loading.
 * - `rss`       VmRSS of the largest broker process after `messages`, after a short settle.
 * - `retention` brokers with `--retention-bytes <retention-mb MiB>` (snapshot cadence at the
 *               broker's defaults: a node writes a snapshot as soon as one would let it delete a
 *               segment); 3× the limit produced, every node's data dir sampled every second.
 *               `--retention-bytes` limits the log's segments (the newest segment, being
 *               written, never goes; the leader's retention service judges every 10 s and at each new segment, and each
 *               node deletes once a snapshot covers the cut, keeping a catch-up window of
 *               entries), so the largest log sample (`log_mb`) is held to about `limit_mb` +
 *               `segment_mb`; `data_mb` adds snapshots, queue files and metadata.
 * - `install`   the same flags; a follower is stopped and its data dir deleted, 3× the limit is
 *               produced so the others compact (`leader_first_index` > 1), then it is restarted
 *               empty: `install_s` until it serves (`installed` says whether its log shows an
 *               InstallSnapshot, `snapshot_mb` how large), then it is made leader and every
 *               queue is read back through it from the first offset: `lost` acknowledged
 *               messages missing (those below the first offset it serves are counted
 *               `compacted`, not lost).
 *
 * Contention: `cpu_*` say how many cores the machine was busy on average during a restart,
 * an install or the RSS settle (`busy_cores`) and how many of them went to processes that are
 * not this bench's (`other_cores`, from /proc); `load1_max` is the largest 1-minute load
 * average seen during the point (it includes our own load phase).
 *
 * `--broker-args "…"` adds `raftmq broker` flags to every broker of every case (after the
 * case's own, so they win), e.g. `--broker-args "--snapshot-bytes 33554432"`; they are checked
 * against `raftmq broker --help` first. Brokers log at `--node-log-level` (default info: only
 * lifecycle lines) to files under the temp dir, or under `--log-dir` to keep them.
 *
 * Points are cumulative within a case (the large point continues the small point's cluster);
 * each case has its own cluster. Every load loop is bounded in count and time; every process
 * is killed and every temp dir removed at exit (also on errors and SIGINT; `--keep-data`
 * keeps the data dirs of finished cases for inspection).
 *
 *   npm run bench:lifecycle [-- --small 10000 --large 1000000 --body-bytes 1024
 *                              --cases restart,rss,retention,install --retention-mb 256
 *                              --broker-args "--snapshot-bytes 33554432" --json]
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Table from 'cli-table3';
import { Command } from 'commander';
import { Admin } from '../src/client/admin.js';
import { MQClientError } from '../src/client/mq-connection.js';
import { Producer, type SendReceipt } from '../src/client/producer.js';
import { PullConsumer } from '../src/client/pull-consumer.js';
import { RaftNodeClient, type NodeStatus } from '../src/client/raft-node-client.js';
import { LocalCluster, cliPath, freePorts } from '../src/cli/local-cluster.js';
import { plainWhenPiped } from '../src/cli/tables.js';

const MiB = 1024 * 1024;
const TOPIC = 'lifecycle';
const GROUP = 'lc';
const BROKERS = ['n1', 'n2', 'n3'] as const;
const CASES = ['restart', 'rss', 'retention', 'install'] as const;
type CaseName = (typeof CASES)[number];

interface Options {
  json?: boolean;
  small: number;
  large: number;
  bodyBytes: number;
  cases: string;
  retentionMb: number;
  inflight: number;
  maxLoadSeconds?: number;
  serveTimeoutS: number;
  brokerArgs: string;
  nodeLogLevel: string;
  logDir?: string;
  keepData?: boolean;
}

type Row = { case: CaseName; messages: number | null; restart_s: number | null; rss_mb: number | null; data_mb: number | null; error?: string } & Record<string, unknown>;

const round = (n: number, digits = 2): number => Number(n.toFixed(digits));
const mb = (bytes: number): number => round(bytes / MiB, 1);
const log = (line: string): void => { process.stderr.write(`lifecycle: ${line}\n`); };

// ---- cleanup: every process we started dies with us, every temp dir goes ------------------

const liveClusters = new Set<LocalCluster>();
const tempDirs = new Set<string>();

function killEverythingNow(): void {
  for (const cluster of liveClusters) {
    for (const child of cluster.processes.values()) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  for (const dir of tempDirs) {
    try { fs.rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 }); } catch { /* best effort at exit */ }
  }
  tempDirs.clear();
}
process.on('exit', killEverythingNow);
for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const) {
  process.on(signal, () => {
    log(`${signal}: killing every process and removing the temp dirs`);
    killEverythingNow();
    process.exit(code);
  });
}

// ---- measuring a process and a directory ------------------------------------------------

/** 1-minute load averages every 5 s, so a row can say how busy the machine was while it ran. */
const loadSamples: Array<{ at: number; load1: number }> = [];
const loadTimer = setInterval(() => loadSamples.push({ at: performance.now(), load1: os.loadavg()[0] as number }), 5_000);
loadTimer.unref();
/** The largest 1-minute load average sampled since `since` (performance.now()), or now. */
function loadMaxSince(since: number): number {
  return round(Math.max(os.loadavg()[0] as number, ...loadSamples.filter((s) => s.at >= since).map((s) => s.load1)));
}

const CLOCK_TICKS = 100; // USER_HZ of /proc on Linux

/** Seconds of CPU the whole machine spent busy (all cores), from /proc/stat; undefined off Linux. */
function machineBusyS(): number | undefined {
  try {
    const fields = (fs.readFileSync('/proc/stat', 'utf8').split('\n')[0] as string).trim().split(/\s+/).slice(1).map(Number);
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields;
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}

/** CPU seconds (user + system) of process `pid` so far, or undefined. */
function processCpuS(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}

/**
 * How busy the machine was in a window, and how much of it was not us (the bench, its
 * NameServer and brokers): cores in use on average. `other_cores` well above 0 means someone
 * else's work (tests, builds) competed with the brokers for this 2-core machine.
 */
function cpuWindow(group: Group): () => { busy_cores: number; other_cores: number } | undefined {
  const ids = ['namesrv', ...BROKERS];
  const started = performance.now();
  const machine = machineBusyS();
  const pids = new Map(ids.map((id) => [id, group.pid(id)]));
  const ours = new Map(ids.map((id) => [id, processCpuS(pids.get(id))]));
  const self = process.cpuUsage();
  return () => {
    const machineNow = machineBusyS();
    if (machine === undefined || machineNow === undefined) return undefined;
    let oursS = (process.cpuUsage().user - self.user + process.cpuUsage().system - self.system) / 1e6;
    for (const id of ids) {
      const pid = group.pid(id);
      const now = processCpuS(pid);
      if (now === undefined) continue;
      // The same process: what it used in the window; a process started in it: all it used.
      oursS += pid === pids.get(id) ? now - (ours.get(id) ?? now) : now;
    }
    const wallS = (performance.now() - started) / 1000;
    return { busy_cores: round((machineNow - machine) / wallS), other_cores: round(Math.max(0, machineNow - machine - oursS) / wallS) };
  };
}

function rssBytes(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match === null ? null : Number(match[1]) * 1024;
  } catch {
    return null;
  }
}

/** Bytes of every file under `dir` (files deleted while we look count 0). */
function dirBytes(dir: string): number {
  let entries: fs.Dirent[];
  try { entries = fs.readdirSync(dir, { withFileTypes: true }); } catch { return 0; }
  let total = 0;
  for (const entry of entries) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) total += dirBytes(file);
    else {
      try { total += fs.statSync(file).size; } catch { /* compacted away meanwhile */ }
    }
  }
  return total;
}

/** What this build's `raftmq broker` accepts: unknown options make it exit at once. */
function brokerHelp(): { text: string; segmentBytes: number; seconds: number } {
  const started = performance.now();
  const run = spawnSync(process.execPath, [cliPath, 'broker', '--help'], { encoding: 'utf8' });
  const seconds = (performance.now() - started) / 1000;
  const text = `${run.stdout}${run.stderr}`;
  const match = /--segment-bytes[\s\S]*?\(default:\s*(\d+)\)/.exec(text);
  return { text, segmentBytes: match === null ? 64 * MiB : Number(match[1]), seconds };
}

let warnedUnlisted = false;

/** `--broker-args` as argv words, each `--flag` checked against `raftmq broker --help`. */
function brokerArgs(options: Options): string[] {
  const words = options.brokerArgs.split(/\s+/).filter((w) => w !== '');
  const help = brokerHelp().text;
  const known = new Set(help.split(/[\s,]+/).filter((w) => w.startsWith('--')));
  const unlisted = words.filter((w) => w.startsWith('--')).map((w) => w.split('=')[0] as string).filter((flag) => !known.has(flag));
  // Hidden flags (--retention-interval-ms) are not listed; a flag the broker does not take makes it exit at start, with its message.
  if (unlisted.length > 0 && !warnedUnlisted) log(`--broker-args: ${unlisted.join(', ')} not in raftmq broker --help (a hidden flag, or the brokers will exit at start)`);
  warnedUnlisted ||= unlisted.length > 0;
  return words;
}

/** The value of the last `flag` in `args`, if any. */
function argValue(args: readonly string[], flag: string): string | undefined {
  let value: string | undefined;
  args.forEach((word, i) => {
    if (word === flag) value = args[i + 1];
    else if (word.startsWith(`${flag}=`)) value = word.slice(flag.length + 1);
  });
  return value;
}

/** One pino line of a broker's log. */
interface LogLine { time: number; pid: number; msg: string; [key: string]: unknown }

/** Lines of process `pid` in `file` at or after `sinceMs` (epoch ms). */
function logLines(file: string, pid: number | undefined, sinceMs = 0): LogLine[] {
  let text: string;
  try { text = fs.readFileSync(file, 'utf8'); } catch { return []; }
  const lines: LogLine[] = [];
  for (const raw of text.split('\n')) {
    if (!raw.startsWith('{')) continue;
    try {
      const line = JSON.parse(raw) as LogLine;
      if (typeof line.time === 'number' && line.time >= sinceMs && (pid === undefined || line.pid === pid)) lines.push(line);
    } catch { /* a line being written */ }
  }
  return lines;
}

/** Where a broker's start-up went, from its log lines: seconds after `spawnedAtMs` (epoch ms). */
interface Startup {
  recovered?: number; restored?: number; listening?: number; became?: number; became_role?: string; installed?: number;
  segments?: number; log_first?: number; log_last?: number; snapshot_index?: number; snapshot_received_mb?: number;
}

function startupOf(lines: readonly LogLine[], spawnedAtMs: number): Startup {
  const at = (line: LogLine | undefined): number | undefined => (line === undefined ? undefined : round((line.time - spawnedAtMs) / 1000));
  const find = (msg: string | RegExp): LogLine | undefined => lines.find((l) => (typeof msg === 'string' ? l.msg === msg : msg.test(l.msg)));
  const recovered = find('commitlog recovered');
  const restored = find('state restored from snapshot');
  const became = lines.find((l) => /^became /.test(l.msg) && typeof l.leaderId === 'string' && l.leaderId !== '');
  const received = find('snapshot received');
  const installed = find('installed a snapshot from the leader');
  const out: Startup = {};
  const put = <K extends keyof Startup>(key: K, value: Startup[K] | undefined): void => { if (value !== undefined) out[key] = value; };
  put('recovered', at(recovered));
  put('restored', at(restored));
  put('listening', at(find('raft node listening')));
  put('became', at(became));
  put('became_role', became === undefined ? undefined : String(became.role));
  put('installed', at(installed));
  put('segments', recovered?.segments as number | undefined);
  put('log_first', recovered?.firstIndex as number | undefined);
  put('log_last', recovered?.lastIndex as number | undefined);
  put('snapshot_index', (installed?.index ?? restored?.index) as number | undefined);
  put('snapshot_received_mb', typeof received?.bytes === 'number' ? mb(received.bytes) : undefined);
  return out;
}

// ---- one broker group on this machine ---------------------------------------------------

class Group {
  readonly admin: Admin;
  readonly down = new Set<string>();
  /** Epoch ms of each broker's last spawn. */
  readonly spawnedAtMs = new Map<string, number>();
  private constructor(readonly cluster: LocalCluster, readonly dir: string, readonly namesrv: string, readonly logDir: string, private readonly keepData: boolean) {
    this.admin = new Admin({ nameServers: [namesrv] });
  }

  /** A NameServer and three brokers with `args` (the case's flags, then `--broker-args`). */
  static async create(label: string, args: readonly string[], options: Options): Promise<Group> {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), `raftmq-lifecycle-${label}-`));
    tempDirs.add(dir);
    const logDir = options.logDir === undefined ? path.join(dir, 'logs') : await fsp.mkdtemp(path.join(path.resolve(options.logDir), `${label}-`));
    await fsp.mkdir(logDir, { recursive: true });
    const extraArgs = [...args, ...brokerArgs(options)];
    log(`${label}: brokers with ${extraArgs.length === 0 ? 'default flags' : extraArgs.join(' ')}; logs in ${logDir}`);
    const ports = await freePorts(5);
    const namesrv = `127.0.0.1:${ports[3]}`;
    const cluster = new LocalCluster({ groupId: GROUP, dataRoot: dir, ports: ports.slice(0, 3), flush: 'sync', output: 'capture', role: 'broker', namesrv: [namesrv], logLevel: options.nodeLogLevel, logDir, extraArgs });
    liveClusters.add(cluster);
    cluster.startNameServer(namesrv, `127.0.0.1:${ports[4]}`);
    const group = new Group(cluster, dir, namesrv, logDir, options.keepData === true);
    for (const id of BROKERS) group.start(id);
    return group;
  }

  /** `id`'s log lines since its last spawn (its current process). */
  linesOf(id: string): LogLine[] {
    return logLines(path.join(this.logDir, `${id}.log`), this.pid(id), this.spawnedAtMs.get(id) ?? 0);
  }

  /** Where `id`'s last start-up went (see Startup). */
  startup(id: string): Startup {
    return startupOf(this.linesOf(id), this.spawnedAtMs.get(id) ?? 0);
  }

  /** Waits for a leader the NameServer knows, then creates the topic (8 queues). */
  async ready(): Promise<void> {
    for (const deadline = Date.now() + 30_000; ; await sleep(100)) {
      this.assertAlive();
      if ((await this.admin.cluster().catch(() => [])).some((n) => n.isLeader)) break;
      if (Date.now() > deadline) throw new Error('no leader registered with the NameServer within 30 s');
    }
    await this.admin.createTopic(TOPIC, { readQueues: 8, writeQueues: 8 });
  }

  /** Throws with the process's last output when one that should run has exited. */
  assertAlive(): void {
    for (const id of ['namesrv', ...BROKERS]) {
      if (this.down.has(id) || this.cluster.isRunning(id)) continue;
      const child = this.cluster.processes.get(id);
      const output = (this.cluster.output.get(id) ?? []).join('').trim().split('\n').slice(-5).join(' | ');
      throw new Error(`${id} exited (${child?.signalCode ?? `code ${child?.exitCode}`}): ${output.slice(-600)}`);
    }
  }

  address(id: string): string { return this.cluster.address(id); }
  pid(id: string): number | undefined { return this.cluster.processes.get(id)?.pid; }
  dataDir(id: string): string { return path.join(this.dir, id); }
  dataBytes(ids: readonly string[] = BROKERS): number { return ids.reduce((sum, id) => sum + dirBytes(this.dataDir(id)), 0); }

  /** One node's Raft status on a fresh channel (no reconnect back-off), or undefined. */
  async statusOf(id: string, timeoutMs = 500): Promise<NodeStatus | undefined> {
    const client = new RaftNodeClient([this.address(id)]);
    try {
      return (await client.statusAll(timeoutMs))[0]?.status;
    } finally {
      client.close();
    }
  }

  /** The leader's id and status (the highest term among the nodes that say they lead). */
  async leader(timeoutMs = 30_000): Promise<NodeStatus> {
    for (const deadline = Date.now() + timeoutMs; ; await sleep(50)) {
      this.assertAlive();
      const statuses = await Promise.all(BROKERS.filter((id) => !this.down.has(id)).map((id) => this.statusOf(id)));
      const leaders = statuses.filter((s): s is NodeStatus => s?.role === 'leader').sort((a, b) => b.term - a.term);
      if (leaders[0] !== undefined) return leaders[0];
      if (Date.now() > deadline) throw new Error(`no leader within ${timeoutMs / 1000} s`);
    }
  }

  /** Seconds from `since` until node `id` has applied `index`. */
  async waitServing(id: string, index: number, since: number, timeoutS: number): Promise<number> {
    let lastReport = performance.now();
    for (const deadline = since + timeoutS * 1000; ; await sleep(20)) {
      this.assertAlive();
      const status = await this.statusOf(id, 300);
      if (status !== undefined && status.appliedIndex >= index) return (performance.now() - since) / 1000;
      if (performance.now() - lastReport > 5_000) {
        lastReport = performance.now();
        log(`  ${id} after ${((lastReport - since) / 1000).toFixed(1)} s: ${status === undefined ? 'unreachable' : `${status.role}, applied ${status.appliedIndex}, log ${status.firstIndex}..${status.lastIndex}, commit ${status.commitIndex}`} (waiting for ${index})`);
      }
      if (performance.now() > deadline) throw new Error(`${id} did not apply index ${index} within ${timeoutS} s (last status: ${status === undefined ? 'unreachable' : `applied ${status.appliedIndex}`})`);
    }
  }

  async kill(id: string): Promise<void> {
    this.down.add(id);
    await this.cluster.signal(id, 'SIGKILL');
  }

  start(id: string): void {
    this.spawnedAtMs.set(id, Date.now());
    this.cluster.startNode(id);
    this.down.delete(id);
  }

  rssMb(id: string): number | null {
    const bytes = rssBytes(this.pid(id));
    return bytes === null ? null : mb(bytes);
  }

  async stop(): Promise<void> {
    this.admin.close();
    await this.cluster.stop({ kill: true, removeData: !this.keepData });
    liveClusters.delete(this.cluster);
    tempDirs.delete(this.dir);
    if (this.keepData) log(`kept ${this.dir}`);
  }
}

// ---- load ---------------------------------------------------------------------------------

interface Load { acked: number; failed: number; unknown: number; seconds: number; msgs_s: number; truncated: boolean }

/**
 * `count` acknowledged sends (failures are retried with new messages), `inflight` at a time,
 * for at most `maxSeconds`. Each body starts with its sequence number (4 bytes, big endian).
 */
async function produce(group: Group, producer: Producer, count: number, options: Options, onAck?: (receipt: SendReceipt, seq: number) => void): Promise<Load> {
  const template = randomBytes(options.bodyBytes);
  const maxSeconds = options.maxLoadSeconds ?? Math.max(120, count / 1000);
  const started = performance.now();
  const until = started + maxSeconds * 1000;
  let acked = 0;
  let pending = 0;
  let failed = 0;
  let unknown = 0;
  let seq = 0;
  let lastReport = started;
  let stop: Error | undefined;
  await Promise.all(Array.from({ length: Math.max(1, options.inflight) }, async () => {
    while (stop === undefined && acked + pending < count && performance.now() < until) {
      pending++;
      const mySeq = seq++;
      const body = Buffer.from(template);
      if (body.length >= 4) body.writeUInt32BE(mySeq >>> 0, 0);
      try {
        const receipt = await producer.send({ topic: TOPIC, body });
        acked++;
        onAck?.(receipt, mySeq);
      } catch (error) {
        if (error instanceof MQClientError && error.definite) failed++;
        else unknown++;
        if (failed + unknown > 1_000) stop ??= new Error(`more than 1000 failed sends (last: ${(error as Error).message})`);
        else await sleep(20);
      } finally {
        pending--;
      }
      const now = performance.now();
      if (now - lastReport > 10_000) {
        lastReport = now;
        try { group.assertAlive(); } catch (error) { stop ??= error as Error; }
        log(`  ${acked}/${count} acknowledged (${Math.round(acked / ((now - started) / 1000))} msg/s)`);
      }
    }
  }));
  if (stop !== undefined) throw stop;
  const seconds = (performance.now() - started) / 1000;
  return { acked, failed, unknown, seconds: round(seconds), msgs_s: Math.round(acked / seconds), truncated: acked < count };
}

const newProducer = (group: Group, sendTimeoutMs = 15_000, retries = 10): Producer => new Producer({ nameServers: [group.namesrv], sendTimeoutMs, retries });

/** Seconds from `since` to the first acknowledged send of a fresh Producer (retried until `timeoutS`). */
async function firstSend(group: Group, since: number, timeoutS: number): Promise<{ seconds: number; attempts: number }> {
  const producer = newProducer(group, 3_000, 30);
  try {
    let attempts = 0;
    for (const deadline = since + timeoutS * 1000; ; await sleep(10)) {
      attempts++;
      try {
        await producer.send({ topic: TOPIC, body: randomBytes(1024) });
        return { seconds: (performance.now() - since) / 1000, attempts };
      } catch (error) {
        if (performance.now() > deadline) throw new Error(`no acknowledged send within ${timeoutS} s of the restart (last: ${(error as Error).message})`);
      }
    }
  } finally {
    producer.shutdown();
  }
}

function points(options: Options): number[] {
  return [...new Set([options.small, options.large])].filter((n) => n > 0).sort((a, b) => a - b);
}

// ---- the cases --------------------------------------------------------------------------

async function restartCase(options: Options, emit: (row: Row) => void): Promise<void> {
  const group = await Group.create('restart', [], options);
  try {
    await group.ready();
    let producer = newProducer(group);
    await producer.start([TOPIC]);
    let total = 0;
    for (const target of points(options)) {
      const pointStarted = performance.now();
      log(`restart: producing to ${target} messages`);
      const load = await produce(group, producer, target - total, options);
      total += load.acked;
      producer.shutdown();
      await sleep(2_000); // let followers apply the tail
      const leader = await group.leader();
      const follower = BROKERS.find((id) => id !== leader.nodeId) as string;
      const commitAtKill = leader.commitIndex;
      await group.kill(follower);
      const spawnedAt = performance.now();
      const cpuFollower = cpuWindow(group);
      group.start(follower);
      const restartS = await group.waitServing(follower, commitAtKill, spawnedAt, options.serveTimeoutS);
      const cpuRestart = cpuFollower();
      await sleep(1_000); // its log lines reach the file through a pipe
      const startup = group.startup(follower);
      const replayed = startup.snapshot_index === undefined ? undefined : commitAtKill - startup.snapshot_index;
      log(`restart: ${follower} (follower) serving ${restartS.toFixed(2)} s after spawn, commit index ${commitAtKill}; start-up ${JSON.stringify(startup)}`);
      const rss = group.rssMb(follower);
      const dataMb = mb(group.dataBytes());
      const snapshotMb = mb(dirBytes(path.join(group.dataDir(follower), 'snapshots')));
      const load1 = loadMaxSince(spawnedAt);

      // The whole group: every node SIGKILLed, then all three started at once.
      const commitAll = (await group.leader()).commitIndex;
      await Promise.all(BROKERS.map((id) => group.kill(id)));
      const allSpawnedAt = performance.now();
      const cpuAllWindow = cpuWindow(group);
      for (const id of BROKERS) group.start(id);
      const [first, serving] = await Promise.all([
        firstSend(group, allSpawnedAt, options.serveTimeoutS),
        Promise.all(BROKERS.map((id) => group.waitServing(id, commitAll, allSpawnedAt, options.serveTimeoutS))),
      ]);
      const cpuAll = cpuAllWindow();
      total += 1;
      await sleep(500); // the log lines reach the files through pipes
      const all = BROKERS.map((id) => group.startup(id));
      const latest = (key: 'recovered' | 'restored' | 'listening'): number | undefined => {
        const values = all.map((s) => s[key]).filter((v): v is number => v !== undefined);
        return values.length === BROKERS.length ? Math.max(...values) : undefined;
      };
      const leaderAt = all.filter((s) => s.became_role === 'leader').map((s) => s.became as number);
      const allStartup = { recovered: latest('recovered'), restored: latest('restored'), listening: latest('listening'), ...(leaderAt.length > 0 ? { leader: Math.min(...leaderAt) } : {}) };
      log(`restart: all three restarted: first acknowledged send after ${first.seconds.toFixed(2)} s, all serving after ${Math.max(...serving).toFixed(2)} s; slowest start-up ${JSON.stringify(allStartup)}`);
      emit({
        case: 'restart', messages: total, restart_s: round(restartS), first_send_s: round(first.seconds), all_serving_s: round(Math.max(...serving)),
        rss_mb: rss, data_mb: dataMb, snapshot_mb: snapshotMb, commit_index: commitAtKill, restarted: follower, startup, ...(replayed === undefined ? {} : { replayed }),
        all_startup: allStartup, cpu_restart: cpuRestart, cpu_all_restart: cpuAll, load1_restart_max: load1, load1_max: loadMaxSince(pointStarted), produce_msgs_s: load.msgs_s, ...(load.truncated ? { truncated: true } : {}),
      });
      producer = newProducer(group);
      await producer.start([TOPIC]);
    }
    producer.shutdown();
  } finally {
    await group.stop();
  }
}

async function rssCase(options: Options, emit: (row: Row) => void): Promise<void> {
  const group = await Group.create('rss', [], options);
  try {
    await group.ready();
    const producer = newProducer(group);
    await producer.start([TOPIC]);
    let total = 0;
    for (const target of points(options)) {
      const pointStarted = performance.now();
      log(`rss: producing to ${target} messages`);
      const load = await produce(group, producer, target - total, options);
      total += load.acked;
      const cpuSettleWindow = cpuWindow(group);
      await sleep(3_000); // settle: followers apply, timers run, the GC gets a turn
      const cpuSettle = cpuSettleWindow();
      const perNode = Object.fromEntries(BROKERS.map((id) => [id, group.rssMb(id)]));
      const leader = await group.leader();
      const largest = Math.max(...Object.values(perNode).map((v) => v ?? 0));
      emit({
        case: 'rss', messages: total, restart_s: null, rss_mb: largest, data_mb: mb(group.dataBytes()),
        rss_mb_nodes: perNode, leader: leader.nodeId, cpu_settle: cpuSettle, load1_max: loadMaxSince(pointStarted), produce_msgs_s: load.msgs_s, ...(load.truncated ? { truncated: true } : {}),
      });
    }
    producer.shutdown();
  } finally {
    await group.stop();
  }
}

/**
 * The retention flags (`--retention-bytes` is the log's size limit in bytes; snapshots stay at
 * the broker's cadence, which also writes one whenever it would let a segment go), or why this
 * build's broker does not take them.
 */
function retentionArgs(options: Options): { args: string[]; unsupported?: string } {
  const help = brokerHelp().text;
  const missing = ['--retention-bytes'].filter((flag) => !help.includes(flag));
  const args = ['--retention-bytes', String(options.retentionMb * MiB)];
  return missing.length === 0 ? { args } : { args, unsupported: `raftmq broker rejects ${missing.join(' and ')} (this build does not have ${missing.length === 1 ? 'it' : 'them'})` };
}

/** The segment size the brokers run with: the last `--segment-bytes` of `--broker-args`, else the default. */
function segmentBytesOf(options: Options): number {
  const given = argValue(brokerArgs(options), '--segment-bytes');
  return given === undefined ? brokerHelp().segmentBytes : Number(given);
}

/** Waits for a retention round and a snapshot after the last send (the service runs every 10 s unless --retention-interval-ms says otherwise). */
function retentionSettleMs(options: Options): number {
  const interval = Number(argValue(brokerArgs(options), '--retention-interval-ms') ?? 10_000);
  return Math.max(25_000, 2.5 * interval);
}

/** Samples every node's data dir (and its log/ within) once a second until stopped; keeps the largest sample per node. */
function dataSampler(group: Group): { stop: () => Promise<{ data: Record<string, number>; log: Record<string, number> }>; samples: () => number } {
  const data: Record<string, number> = Object.fromEntries(BROKERS.map((id) => [id, 0]));
  const logs: Record<string, number> = Object.fromEntries(BROKERS.map((id) => [id, 0]));
  let running = true;
  let count = 0;
  const loop = (async () => {
    while (running) {
      for (const id of BROKERS) {
        data[id] = Math.max(data[id] ?? 0, dirBytes(group.dataDir(id)));
        logs[id] = Math.max(logs[id] ?? 0, dirBytes(path.join(group.dataDir(id), 'log')));
      }
      count++;
      await sleep(1_000);
    }
  })();
  return { stop: async () => { running = false; await loop; return { data, log: logs }; }, samples: () => count };
}

const mbOf = (bytes: Record<string, number>): Record<string, number> => Object.fromEntries(Object.entries(bytes).map(([id, b]) => [id, mb(b)]));

/** How many retention entries the leaders proposed (their 'retention released the log prefix' lines). */
function retentionRounds(group: Group): number {
  return BROKERS.reduce((sum, id) => sum + logLines(path.join(group.logDir, `${id}.log`), undefined).filter((l) => l.msg === 'retention released the log prefix').length, 0);
}

async function retentionCase(options: Options, emit: (row: Row) => void): Promise<void> {
  const { args, unsupported } = retentionArgs(options);
  const limitBytes = options.retentionMb * MiB;
  const messages = Math.ceil((3 * limitBytes) / options.bodyBytes);
  if (unsupported !== undefined) {
    emit({ case: 'retention', messages: null, restart_s: null, rss_mb: null, data_mb: null, error: unsupported, limit_mb: options.retentionMb, unsupported: true });
    return;
  }
  const caseStarted = performance.now();
  const group = await Group.create('retention', args, options);
  try {
    await group.ready();
    const producer = newProducer(group);
    await producer.start([TOPIC]);
    const sampler = dataSampler(group);
    log(`retention: producing ${messages} messages (3 × ${options.retentionMb} MiB)`);
    let load: Load;
    try {
      load = await produce(group, producer, messages, options);
      await sleep(retentionSettleMs(options)); // compaction may trail the last send by a retention round and a snapshot
    } finally {
      producer.shutdown();
    }
    const max = await sampler.stop();
    const segmentBytes = segmentBytesOf(options);
    const firstIndex = Object.fromEntries(await Promise.all(BROKERS.map(async (id) => [id, (await group.statusOf(id))?.firstIndex ?? null] as const)));
    const logMb = mb(Math.max(...Object.values(max.log)));
    emit({
      case: 'retention', messages: load.acked, restart_s: null, rss_mb: Math.max(...BROKERS.map((id) => group.rssMb(id) ?? 0)),
      data_mb: mb(Math.max(...Object.values(max.data))), log_mb: logMb, limit_mb: options.retentionMb, segment_mb: mb(segmentBytes),
      produced_mb: mb(load.acked * options.bodyBytes), retention_rounds: retentionRounds(group),
      data_mb_nodes: mbOf(max.data), log_mb_nodes: mbOf(max.log),
      final_data_mb_nodes: Object.fromEntries(BROKERS.map((id) => [id, mb(dirBytes(group.dataDir(id)))])),
      final_log_mb_nodes: Object.fromEntries(BROKERS.map((id) => [id, mb(dirBytes(path.join(group.dataDir(id), 'log')))])),
      first_index_nodes: firstIndex, samples: sampler.samples(), load1_max: loadMaxSince(caseStarted), produce_msgs_s: load.msgs_s, ...(load.truncated ? { truncated: true } : {}),
    });
  } finally {
    await group.stop();
  }
}

async function installCase(options: Options, emit: (row: Row) => void): Promise<void> {
  const { args, unsupported } = retentionArgs(options);
  if (unsupported !== undefined) {
    emit({ case: 'install', messages: null, restart_s: null, rss_mb: null, data_mb: null, error: unsupported, unsupported: true });
    return;
  }
  const limitBytes = options.retentionMb * MiB;
  const caseStarted = performance.now();
  const group = await Group.create('install', args, options);
  // Every acknowledged message: queue → offset → sequence number (the body's first 4 bytes).
  const acked = new Map<number, Map<number, number>>();
  const record = (receipt: SendReceipt, seq: number): void => {
    let queue = acked.get(receipt.queueId);
    if (queue === undefined) acked.set(receipt.queueId, (queue = new Map()));
    queue.set(receipt.offset, seq >>> 0);
  };
  try {
    await group.ready();
    let producer = newProducer(group);
    await producer.start([TOPIC]);
    log(`install: producing ${options.small} messages`);
    const before = await produce(group, producer, options.small, options, record);
    const leader = await group.leader();
    const follower = BROKERS.find((id) => id !== leader.nodeId) as string;
    await group.kill(follower);
    await fsp.rm(group.dataDir(follower), { recursive: true, force: true });
    const more = Math.ceil((3 * limitBytes) / options.bodyBytes);
    log(`install: ${follower} stopped and wiped; producing ${more} more messages (3 × ${options.retentionMb} MiB) so the others compact`);
    producer.shutdown();
    producer = newProducer(group);
    await producer.start([TOPIC]);
    const after = await produce(group, producer, more, options, record);
    producer.shutdown();
    await sleep(retentionSettleMs(options)); // compaction may trail the last send by a retention round and a snapshot
    const others = BROKERS.filter((id) => id !== follower);
    const peersDataMb = Object.fromEntries(others.map((id) => [id, mb(dirBytes(group.dataDir(id)))]));
    const leaderNow = await group.leader();
    const commitAt = leaderNow.commitIndex;
    const leaderFirstIndex = leaderNow.firstIndex;
    if (leaderFirstIndex <= 1) log(`install: the leader's log still starts at ${leaderFirstIndex}: ${follower} can catch up from the log, no InstallSnapshot needed`);
    const spawnedAt = performance.now();
    const cpuInstallWindow = cpuWindow(group);
    group.start(follower);
    const installS = await group.waitServing(follower, commitAt, spawnedAt, options.serveTimeoutS);
    const cpuInstall = cpuInstallWindow();
    await sleep(1_000); // its log lines reach the file through a pipe
    const startup = group.startup(follower);
    log(`install: ${follower} (wiped) serving ${installS.toFixed(2)} s after spawn, commit index ${commitAt}; start-up ${JSON.stringify(startup)}`);
    const rss = group.rssMb(follower);
    const dataMb = mb(group.dataBytes());
    const victimDataMb = mb(dirBytes(group.dataDir(follower)));
    const load1 = loadMaxSince(spawnedAt);

    const audit = await readBackThrough(group, follower, acked);
    emit({
      case: 'install', messages: before.acked + after.acked, restart_s: round(installS), install_s: round(installS), rss_mb: rss, data_mb: dataMb,
      restarted: follower, installed: startup.installed !== undefined, ...(startup.snapshot_received_mb === undefined ? {} : { snapshot_mb: startup.snapshot_received_mb }),
      leader_first_index: leaderFirstIndex, startup, restarted_data_mb: victimDataMb, peers_data_mb: peersDataMb, limit_mb: options.retentionMb, commit_index: commitAt, cpu_install: cpuInstall, load1_install_max: load1,
      lost: audit.lost, compacted: audit.compacted, read: audit.read, corrupt: audit.corrupt, read_via: audit.readVia, read_s: audit.seconds, ...(Object.keys(audit.readErrors).length > 0 ? { read_errors: audit.readErrors } : {}), load1_max: loadMaxSince(caseStarted),
      ...(before.truncated || after.truncated ? { truncated: true } : {}),
    });
    if (audit.lost > 0 || audit.corrupt > 0) process.exitCode = 1;
  } finally {
    await group.stop();
  }
}

/**
 * Makes `id` the leader (reads go to the leader) and reads every queue from its first offset.
 * An acknowledged message at or above the first offset `id` serves in its queue that is not
 * read back (or reads back with another body) is lost; below it, retention removed it.
 */
async function readBackThrough(group: Group, id: string, acked: Map<number, Map<number, number>>): Promise<{ lost: number; compacted: number; read: number; corrupt: number; readVia: string; seconds: number; readErrors: Record<string, string> }> {
  const raft = new RaftNodeClient(BROKERS.map((n) => group.address(n)));
  try {
    for (const deadline = Date.now() + 30_000; (await group.leader()).nodeId !== id; await sleep(200)) {
      if (Date.now() > deadline) throw new Error(`${id} did not take leadership within 30 s`);
      await raft.transferLeadership(id).catch(() => undefined);
    }
  } finally {
    raft.close();
  }
  for (const deadline = Date.now() + 30_000; ; await sleep(100)) {
    const leader = (await group.admin.cluster().catch(() => [])).find((n) => n.isLeader);
    if (leader?.nodeId === id) break;
    if (Date.now() > deadline) throw new Error(`the NameServer did not name ${id} leader within 30 s`);
  }
  const started = performance.now();
  const total = [...acked.values()].reduce((sum, q) => sum + q.size, 0);
  const tail = new Map([...acked].map(([q, offsets]) => [q, Math.max(...offsets.keys())]));
  const firstSeen = new Map<number, number>();
  const seen = new Map<number, Map<number, number>>();
  const highest = new Map<number, number>();
  let corrupt = 0;
  let read = 0;
  const consumer = new PullConsumer({ nameServers: [group.namesrv], group: 'lifecycle-audit', consumeFrom: 'first', pullBatchSize: 512, bufferedPerQueueMax: 4096, autoCommitIntervalMs: 0 });
  consumer.subscribe(TOPIC);
  await consumer.start();
  // Start at the first offset each queue still holds (the first message stored at or after
  // time 0), the same one the audit below counts from; not on the broker moving a pull from 0 up.
  await consumer.seekToTime(TOPIC, 0);
  const mq = (queueId: number): object => ({ topic: { name: TOPIC, resourceNamespace: '' }, id: queueId, broker: { name: GROUP, id: 0 } });
  // The first offset each queue holds, as the broker says (below it retention released them).
  const firstOffset = new Map<number, number>();
  for (const q of acked.keys()) {
    const response = await consumer.connection.unary(GROUP, 'QueryOffset', { messageQueue: mq(q), queryOffsetPolicy: 'TIMESTAMP', timestamp: { seconds: 0, nanos: 0 } });
    if (response.status?.code === 'OK') firstOffset.set(q, Number(response.offset));
  }
  const readErrors: Record<string, string> = {};
  try {
    const until = started + Math.max(120, total / 1000) * 1000;
    let idleSince = performance.now();
    while (performance.now() < until && [...tail].some(([q, max]) => (highest.get(q) ?? -1) < max)) {
      const batch = await consumer.poll(1_000, 4096);
      if (batch.length > 0) idleSince = performance.now();
      else if (performance.now() - idleSince > 20_000) break;
      for (const m of batch) {
        read++;
        if (!m.intact) corrupt++;
        if (!firstSeen.has(m.queueId) || (firstSeen.get(m.queueId) as number) > m.offset) firstSeen.set(m.queueId, m.offset);
        highest.set(m.queueId, Math.max(highest.get(m.queueId) ?? -1, m.offset));
        let q = seen.get(m.queueId);
        if (q === undefined) seen.set(m.queueId, (q = new Map()));
        q.set(m.offset, m.body.length >= 4 ? m.body.readUInt32BE(0) : -1);
      }
    }
    // A queue that stopped short: the consumer retries a failing (or timed out) pull quietly, so ask ourselves.
    for (const [q, max] of tail) {
      const next = Math.max((highest.get(q) ?? -1) + 1, firstOffset.get(q) ?? 0);
      if (next > max) continue;
      // The consumer's own batch and deadline (its 5 s long poll plus the 3 s request timeout), then one message with a long deadline.
      const probe = async (batchSize: number, timeoutMs: number): Promise<string> => {
        const probeStarted = performance.now();
        const frames = await consumer.connection.stream(GROUP, 'PullMessage', {
          group: { name: 'lifecycle-audit', resourceNamespace: '' }, messageQueue: mq(q), offset: next, batchSize,
          filterExpression: { type: 'TAG', expression: '*' }, longPollingTimeout: { seconds: 5, nanos: 0 },
        }, timeoutMs).catch((error: unknown) => [{ content: 'status', status: { code: 'CALL_FAILED', message: (error as Error).message } }]) as Array<{ content: string; status?: { code: string; message: string } }>;
        const status = frames.find((f) => f.content === 'status')?.status;
        const got = frames.filter((f) => f.content === 'message').length;
        return `batch ${batchSize}: ${status === undefined ? 'no status' : `${status.code} ${status.message}`.slice(0, 160)}, ${got} messages in ${Math.round(performance.now() - probeStarted)} ms`;
      };
      readErrors[`q${q}@${next}`] = `${await probe(512, 8_000)}; ${await probe(1, 30_000)}`;
    }
  } finally {
    await consumer.shutdown();
  }
  let lost = 0;
  let compacted = 0;
  for (const [q, offsets] of acked) {
    const first = firstOffset.get(q) ?? firstSeen.get(q) ?? 0;
    const got = seen.get(q);
    for (const [offset, seq] of offsets) {
      if (offset < first) compacted++;
      else if (got?.get(offset) !== seq) lost++;
    }
  }
  const status = await group.leader();
  log(`install: read back ${read} messages through ${status.nodeId}: lost ${lost}, compacted ${compacted}${Object.keys(readErrors).length > 0 ? `; reads failing: ${JSON.stringify(readErrors)}` : ''}`);
  return { lost, compacted, read, corrupt, readVia: status.nodeId === id ? id : `${id} then ${status.nodeId}`, seconds: round((performance.now() - started) / 1000), readErrors };
}

// ---- main ---------------------------------------------------------------------------------

async function main(): Promise<void> {
  const positive = (name: string) => (v: string): number => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name} must be a whole number ≥ 1`);
    return n;
  };
  const program = new Command('bench:lifecycle')
    .option('--small <n>', 'the small point: acknowledged messages', positive('--small'), 10_000)
    .option('--large <n>', 'the large point: acknowledged messages', positive('--large'), 1_000_000)
    .option('--body-bytes <n>', 'message body size', positive('--body-bytes'), 1024)
    .option('--cases <list>', `comma separated: ${CASES.join(',')}`, CASES.join(','))
    .option('--retention-mb <n>', 'retention limit for the retention and install cases (MiB)', positive('--retention-mb'), 256)
    .option('--inflight <n>', 'sends in flight while loading', positive('--inflight'), 256)
    .option('--max-load-seconds <s>', 'time bound of one load phase (default: max(120, messages / 1000))', positive('--max-load-seconds'))
    .option('--serve-timeout-s <s>', 'how long a restarted node may take to serve', positive('--serve-timeout-s'), 900)
    .option('--broker-args <args>', 'extra raftmq broker flags for every broker of every case, e.g. "--snapshot-bytes 33554432"', '')
    .option('--node-log-level <level>', 'log level of the brokers and the NameServer (info: lifecycle lines only, for the start-up breakdown)', 'info')
    .option('--log-dir <dir>', 'keep the node logs under this dir (default: in the temp dir, removed at exit)')
    .option('--keep-data', 'keep each case\'s data dirs (their paths are logged)')
    .option('--json', 'one JSON object per case and point, one per line');
  program.parse(process.argv);
  const options = program.opts<Options>();
  const chosen = options.cases.split(',').map((c) => c.trim()).filter((c) => c !== '');
  const bad = chosen.filter((c) => !(CASES as readonly string[]).includes(c));
  if (bad.length > 0) throw new Error(`unknown case(s) ${bad.join(', ')}; choose from ${CASES.join(', ')}`);
  brokerArgs(options); // says now when a flag is not in raftmq broker --help
  log(`load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} on ${os.cpus().length} CPUs at start`);
  const rows: Row[] = [];
  const emit = (row: Row): void => {
    rows.push(row);
    if (options.json === true) console.log(JSON.stringify(row));
  };
  const run: Record<CaseName, (o: Options, e: (row: Row) => void) => Promise<void>> = { restart: restartCase, rss: rssCase, retention: retentionCase, install: installCase };
  for (const name of CASES.filter((c) => chosen.includes(c))) {
    const started = performance.now();
    try {
      await run[name](options, emit);
    } catch (error) {
      log(`${name}: ${(error as Error).stack ?? String(error)}`);
      emit({ case: name, messages: null, restart_s: null, rss_mb: null, data_mb: null, error: (error as Error).message });
      process.exitCode = 1;
    }
    log(`${name}: done in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  }
  if (options.json !== true) {
    const fixed = new Set(['case', 'messages', 'restart_s', 'first_send_s', 'rss_mb', 'data_mb', 'error']);
    const table = new Table({ head: ['case', 'messages', 'restart s', 'first send s', 'RSS MiB', 'data MiB', 'details'], ...plainWhenPiped(), wordWrap: true, colWidths: [11, 10, 10, 13, 9, 10, 60] });
    for (const r of rows) {
      const details = r.error !== undefined ? `error: ${r.error}` : Object.entries(r).filter(([k]) => !fixed.has(k)).map(([k, v]) => `${k}=${typeof v === 'object' && v !== null ? JSON.stringify(v).replace(/,/g, ', ') : String(v)}`).join(' ');
      table.push([r.case, r.messages ?? '-', r.restart_s ?? '-', (r.first_send_s as number | undefined) ?? '-', r.rss_mb ?? '-', r.data_mb ?? '-', details]);
    }
    console.log(table.toString());
    console.log(`${options.bodyBytes}-byte bodies, SYNC_FLUSH, NameServer + 3 broker processes on this machine; restart_s: spawn → applied index ≥ the commit index at the kill; first_send_s: all three SIGKILLed and restarted → first acknowledged send of a fresh Producer; MiB = 2^20 bytes.`);
  }
}

main().then(
  () => process.exit(process.exitCode ?? 0),
  (error: unknown) => {
    log((error as Error).stack ?? String(error));
    process.exit(1);
  },
);
