/**
 * `npm run bench:raft` — three `raftmq node` processes on loopback; a closed loop of 1 KiB
 * proposals with 1, 64 and 256 in flight, under SYNC_FLUSH and ASYNC_FLUSH. Each case is
 * bounded in count and in time. Prints a table (entries/s, p50/p99 commit latency, fsyncs/s,
 * entries per fsync, entries per append message); `--json` prints one object per case.
 *
 *   npm run bench:raft [-- --seconds 5 --json --size 1024 --inflight 1,64,256 --flush sync,async]
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import Table from 'cli-table3';
import { Command } from 'commander';
import { RaftNodeClient, type NodeStatus } from '../src/client/raft-node-client.js';
import { LocalCluster, freePorts } from '../src/cli/local-cluster.js';
import { plainWhenPiped } from '../src/cli/tables.js';

interface CaseResult {
  case: string;
  inflight: number;
  flush: 'sync' | 'async';
  size_bytes: number;
  acked: number;
  seconds: number;
  msgs_s: number;
  p50_ms: number;
  p99_ms: number;
  fsyncs_s: number;
  entries_per_fsync: number;
  entries_per_append_msg: number;
  server_cpu_us_per_msg: number;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

async function processCpuMicros(pids: number[]): Promise<number> {
  let total = 0;
  const ticksPerSecond = 100;
  for (const pid of pids) {
    try {
      const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += ((Number(fields[11]) + Number(fields[12])) / ticksPerSecond) * 1e6;
    } catch {
      // a process that is gone contributes nothing
    }
  }
  return total;
}

/** Closed loop: `inflight` workers, each proposing and awaiting before the next. */
async function runCase(client: RaftNodeClient, leader: string, options: { inflight: number; size: number; seconds: number; countMax: number; pids: number[]; flush: 'sync' | 'async' }): Promise<CaseResult> {
  const payload = new Uint8Array(options.size);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 31) & 0xff;
  const latencies = new Float64Array(options.countMax);
  let done = 0;
  let issued = 0;
  const before: NodeStatus = await client.status(leader);
  const cpuBefore = await processCpuMicros(options.pids);
  const started = performance.now();
  const deadline = started + options.seconds * 1000;
  const worker = async (): Promise<void> => {
    while (issued < options.countMax && performance.now() < deadline) {
      issued++;
      const t0 = performance.now();
      await client.propose(payload);
      latencies[done++] = performance.now() - t0;
    }
  };
  await Promise.all(Array.from({ length: options.inflight }, worker));
  const seconds = (performance.now() - started) / 1000;
  const cpuAfter = await processCpuMicros(options.pids);
  const after: NodeStatus = await client.status(leader);
  const sorted = latencies.slice(0, done).sort();
  const fsyncs = after.fsyncs - before.fsyncs;
  const appended = after.entriesAppended - before.entriesAppended;
  const messages = after.appendMessagesSent - before.appendMessagesSent;
  return {
    case: `${options.flush}-inflight-${options.inflight}`,
    inflight: options.inflight,
    flush: options.flush,
    size_bytes: options.size,
    acked: done,
    seconds: Number(seconds.toFixed(2)),
    msgs_s: Math.round(done / seconds),
    p50_ms: Number(percentile(sorted, 50).toFixed(2)),
    p99_ms: Number(percentile(sorted, 99).toFixed(2)),
    fsyncs_s: Math.round(fsyncs / seconds),
    entries_per_fsync: fsyncs === 0 ? 0 : Number((appended / fsyncs).toFixed(1)),
    entries_per_append_msg: messages === 0 ? 0 : Number(((after.entriesSent - before.entriesSent) / messages).toFixed(1)),
    server_cpu_us_per_msg: done === 0 ? 0 : Math.round((cpuAfter - cpuBefore) / done),
  };
}

/**
 * Same-run baseline: this disk's raw rate of 1 KiB appends each followed by fdatasync, from
 * Node, in the directory the nodes use. A SYNC_FLUSH commit needs at least one such fsync on
 * the leader and one on a follower; group commit is what lets entries/s exceed this rate.
 */
async function diskBaseline(seconds: number, size: number): Promise<{ fsyncs_s: number; p50_ms: number }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'raftmq-bench-disk-'));
  const handle = await fs.open(path.join(dir, 'baseline'), 'w');
  const block = new Uint8Array(size).fill(7);
  const latencies: number[] = [];
  const started = performance.now();
  let position = 0;
  try {
    while (performance.now() - started < seconds * 1000 && latencies.length < 200_000) {
      const t0 = performance.now();
      await handle.write(block, 0, block.length, position);
      await handle.datasync();
      latencies.push(performance.now() - t0);
      position += block.length;
    }
  } finally {
    await handle.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
  latencies.sort((a, b) => a - b);
  return { fsyncs_s: Math.round(latencies.length / ((performance.now() - started) / 1000)), p50_ms: Number((latencies[Math.floor(latencies.length / 2)] ?? 0).toFixed(3)) };
}

async function benchFlushMode(flush: 'sync' | 'async', options: { inflights: number[]; size: number; seconds: number; json: boolean }): Promise<CaseResult[]> {
  const dataRoot = await fs.mkdtemp(path.join(os.tmpdir(), `raftmq-bench-${flush}-`));
  const cluster = new LocalCluster({ groupId: 'bench', dataRoot, ports: await freePorts(3), flush, output: 'capture' });
  const client = new RaftNodeClient(cluster.members.map((m) => m.address), { proposeTimeoutMs: 30_000 });
  const results: CaseResult[] = [];
  try {
    cluster.startAll();
    const leader = await client.findLeader(15_000);
    const pids = [...cluster.processes.values()].map((p) => p.pid as number);
    await runCase(client, leader, { inflight: 64, size: options.size, seconds: 2, countMax: 5_000, pids, flush }); // warm-up, not reported
    for (const inflight of options.inflights) {
      const result = await runCase(client, leader, { inflight, size: options.size, seconds: options.seconds, countMax: inflight === 1 ? 20_000 : 200_000, pids, flush });
      results.push(result);
      if (options.json) console.log(JSON.stringify(result));
    }
  } finally {
    client.close();
    await cluster.stop({ kill: true, removeData: true });
  }
  return results;
}

async function main(): Promise<void> {
  const options = new Command()
    .option('--seconds <s>', 'length of each measured case', (v) => Number(v), 5)
    .option('--size <bytes>', 'payload size', (v) => Number(v), 1024)
    .option('--inflight <list>', 'in-flight levels', '1,64,256')
    .option('--flush <list>', 'flush modes', 'sync,async')
    .option('--json', 'one JSON object per case')
    .parse()
    .opts<{ seconds: number; size: number; inflight: string; flush: string; json?: boolean }>();
  const inflights = options.inflight.split(',').map(Number);
  const baseline = await diskBaseline(2, options.size);
  if (options.json === true) console.log(JSON.stringify({ case: 'baseline-disk-append-fdatasync', size_bytes: options.size, ...baseline }));
  const results: CaseResult[] = [];
  for (const flush of options.flush.split(',') as Array<'sync' | 'async'>) {
    results.push(...await benchFlushMode(flush, { inflights, size: options.size, seconds: options.seconds, json: options.json === true }));
  }
  if (options.json === true) return;
  const table = new Table({ head: ['case', 'entries/s', 'p50 ms', 'p99 ms', 'fsyncs/s', 'entries/fsync', 'entries/append msg', 'server CPU µs/entry'], ...plainWhenPiped() });
  for (const r of results) table.push([r.case, r.msgs_s, r.p50_ms, r.p99_ms, r.fsyncs_s, r.entries_per_fsync, r.entries_per_append_msg, r.server_cpu_us_per_msg]);
  console.log(`3 nodes on 127.0.0.1, ${options.size}-byte entries, ${options.seconds} s per case (closed loop)`);
  console.log(table.toString());
  console.log(`same-run baseline: ${options.size}-byte append + fdatasync from Node on this disk: ${baseline.fsyncs_s}/s, p50 ${baseline.p50_ms} ms`);
  for (const r of results.filter((x) => x.flush === 'sync')) {
    console.log(`  ${r.case}: ${(r.msgs_s / baseline.fsyncs_s).toFixed(2)}× the raw fsync rate (${r.entries_per_fsync} entries per leader fsync)`);
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
