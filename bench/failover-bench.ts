/**
 * `npm run bench:failover` — N trials (default 20) of SIGKILL of the leader under load on one
 * 3-node broker group (SYNC_FLUSH). Per trial: time from the kill to the first send
 * issued and acknowledged after it, and a full read-back of the topic checking that every acknowledged
 * message of the run is there (lost must be 0). Prints p50/p99; `--json` for machines.
 *
 *   npm run bench:failover [-- --trials 20 --inflight 32 --json]
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Command } from 'commander';
import { Admin } from '../src/client/admin.js';
import { MQClientError } from '../src/client/mq-connection.js';
import { Producer } from '../src/client/producer.js';
import { PullConsumer } from '../src/client/pull-consumer.js';
import { LocalCluster, freePorts } from '../src/cli/local-cluster.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const percentile = (sorted: number[], p: number): number => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number);

async function main(): Promise<void> {
  const program = new Command('bench:failover')
    .option('--trials <n>', 'leader kills', (v) => Number(v), 20)
    .option('--inflight <n>', 'sends in flight during each trial', (v) => Number(v), 32)
    .option('--json', 'JSON for machines');
  program.parse(process.argv);
  const options = program.opts<{ trials: number; inflight: number; json?: boolean }>();
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'raftmq-failover-'));
  const ports = await freePorts(5);
  const namesrv = `127.0.0.1:${ports[3]}`;
  const cluster = new LocalCluster({ groupId: 'fo', dataRoot: dir, ports: ports.slice(0, 3), flush: 'sync', output: 'capture', role: 'broker', namesrv: [namesrv], logLevel: 'warn', extraArgs: ['--register-interval-ms', '500'] });
  const admin = new Admin({ nameServers: [namesrv] });
  const recoveries: number[] = [];
  const acked = new Set<string>();
  const unknown = new Set<string>();
  let failed = 0;
  try {
    cluster.startNameServer(namesrv, `127.0.0.1:${ports[4]}`, ['--expiry-ms', '3000']);
    cluster.startAll();
    const leaderNow = async (): Promise<string> => {
      for (const deadline = Date.now() + 30_000; Date.now() < deadline; await sleep(50)) {
        const leader = (await admin.cluster().catch(() => [])).find((n) => n.isLeader && cluster.isRunning(n.nodeId));
        if (leader !== undefined) return leader.nodeId;
      }
      throw new Error('no leader within 30 s');
    };
    await leaderNow();
    await admin.createTopic('failover', { readQueues: 8, writeQueues: 8 });
    const producer = new Producer({ nameServers: [namesrv], sendTimeoutMs: 15_000, retries: 10 });
    let counter = 0;
    for (let trial = 1; trial <= options.trials; trial++) {
      let killedAt = 0;
      let firstAckAfterKill = 0;
      let running = true;
      const workers = Array.from({ length: options.inflight }, async () => {
        while (running) {
          const body = `t${trial}-${counter++}`;
          const startedAt = performance.now();
          try {
            await producer.send({ topic: 'failover', body });
            acked.add(body);
            // Only a send issued after the kill proves the group took writes again.
            if (killedAt > 0 && startedAt > killedAt && firstAckAfterKill === 0) firstAckAfterKill = performance.now();
          } catch (error) {
            if (error instanceof MQClientError && error.definite) failed++;
            else unknown.add(body);
          }
        }
      });
      await sleep(500);
      const victim = await leaderNow();
      killedAt = performance.now();
      await cluster.signal(victim, 'SIGKILL');
      for (const deadline = Date.now() + 20_000; firstAckAfterKill === 0 && Date.now() < deadline;) await sleep(5);
      running = false;
      await Promise.all(workers);
      if (firstAckAfterKill === 0) throw new Error(`trial ${trial}: no send was acknowledged within 20 s of the kill`);
      recoveries.push(firstAckAfterKill - killedAt);
      cluster.startNode(victim);
      if (!options.json) console.error(`trial ${trial}: killed ${victim}, first ack after ${(firstAckAfterKill - killedAt).toFixed(0)} ms`);
      await sleep(1_000); // let the restarted node catch up before the next kill
    }
    producer.shutdown();
    const consumer = new PullConsumer({ nameServers: [namesrv], group: 'audit', pullBatchSize: 512 });
    consumer.subscribe('failover');
    await consumer.start();
    const seen = new Set<string>();
    const until = Date.now() + 120_000;
    while ([...acked].some((b) => !seen.has(b)) && Date.now() < until) for (const m of await consumer.poll(1_000, 4096)) seen.add(m.body.toString());
    await consumer.shutdown();
    const lost = [...acked].filter((b) => !seen.has(b)).length;
    recoveries.sort((a, b) => a - b);
    const summary = {
      trials: options.trials, inflight: options.inflight, acked: acked.size, failed_definite: failed, unknown: unknown.size, lost,
      first_ack_after_kill_p50_ms: Math.round(percentile(recoveries, 50)), first_ack_after_kill_p99_ms: Math.round(percentile(recoveries, 99)),
      first_ack_after_kill_max_ms: Math.round(recoveries[recoveries.length - 1] ?? 0),
    };
    if (options.json === true) console.log(JSON.stringify(summary));
    else console.log(`${summary.trials} leader kills under load (${summary.inflight} in flight): first acknowledged send after the kill p50 ${summary.first_ack_after_kill_p50_ms} ms, p99 ${summary.first_ack_after_kill_p99_ms} ms, max ${summary.first_ack_after_kill_max_ms} ms; ${summary.acked} acknowledged, ${summary.failed_definite} failed, ${summary.unknown} unknown, lost ${summary.lost}`);
    process.exitCode = lost === 0 ? 0 : 1;
  } finally {
    admin.close();
    await cluster.stop({ kill: true, removeData: true });
  }
  process.exit(process.exitCode ?? 0);
}

main().catch((error: unknown) => {
  console.error(`bench:failover: ${(error as Error).stack ?? String(error)}`);
  process.exit(1);
});
