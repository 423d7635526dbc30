/**
 * The NATS JetStream peer of `npm run bench`: a 3-node cluster on 127.0.0.1 (ports from the OS,
 * data in the bench's temp folder), an R3 file-backed stream, the same produce levels and drain
 * as the RaftMQ rows, CPU counted on the three nats-server processes. Stopped (SIGTERM, then
 * SIGKILL) before it returns, so nothing of it runs while another system is measured.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { AckPolicy, connect, DeliverPolicy, StorageType } from 'nats';
import { freePorts } from '../src/cli/local-cluster.js';
import { closedLoop, countCap, measure, onInterrupt, sleep, stopChild, warmUp, type Row } from './bench-support.js';

export const NATS = 'NATS JetStream R3';

export interface PeerOptions {
  readonly inflights: readonly number[];
  readonly seconds: number;
  readonly size: number;
  readonly drain: number;
  /** Seconds of traffic before the first measured phase (see warmUp). */
  readonly warmUpSeconds: number;
}

export async function benchNats(binary: string, dir: string, options: PeerOptions): Promise<Row[]> {
  const ports = await freePorts(6);
  const client = ports.slice(0, 3);
  const routes = ports.slice(3).map((p) => `nats-route://127.0.0.1:${p}`).join(', ');
  const processes: ChildProcess[] = [];
  const stop = async (): Promise<void> => { await Promise.all(processes.map((p) => stopChild(p, 10_000))); };
  const unregister = onInterrupt(stop);
  try {
    for (let i = 0; i < 3; i++) {
      const conf = path.join(dir, `nats-n${i + 1}.conf`);
      await fs.writeFile(conf, `server_name: n${i + 1}\nlisten: 127.0.0.1:${client[i]}\njetstream { store_dir: "${path.join(dir, `nats-n${i + 1}`)}", max_memory_store: 256MB, max_file_store: 20GB }\ncluster { name: bench, listen: 127.0.0.1:${ports[3 + i]}, routes: [ ${routes} ] }\n`);
      processes.push(spawn(binary, ['-c', conf], { stdio: 'ignore' }));
    }
    const pids = processes.map((p) => p.pid).filter((pid): pid is number => pid !== undefined);
    const servers = client.map((p) => `127.0.0.1:${p}`);
    const retry = async <T>(fn: () => Promise<T>): Promise<T> => {
      for (let i = 0; ; i++) {
        try { return await fn(); } catch (error) { if (i > 60) throw error; await sleep(500); }
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
    try {
      const js = nc.jetstream();
      const payload = randomBytes(options.size);
      const publish = (): Promise<unknown> => js.publish('bench', payload);
      const rows: Row[] = [];
      await warmUp(options.warmUpSeconds, publish);
      for (const inflight of options.inflights) rows.push(await measure(NATS, 'produce', inflight, pids, () => closedLoop(inflight, options.seconds, countCap(inflight), publish)));
      const jsm2 = await nc.jetstreamManager();
      const stored = (await jsm2.streams.info('BENCH')).state.messages;
      if (stored < options.drain) await closedLoop(256, 120, options.drain - stored, publish); // top up: every system drains the same count
      await jsm2.consumers.add('BENCH', { durable_name: 'drain', ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All });
      const consumer = await js.consumers.get('BENCH', 'drain');
      rows.push(await measure(NATS, 'consume', 0, pids, async () => {
        const started = performance.now();
        let got = 0;
        while (got < options.drain && performance.now() - started < 120_000) {
          const batch = await consumer.fetch({ max_messages: 1000, expires: 2000 });
          for await (const m of batch) {
            m.ack();
            got++;
            if (got >= options.drain) break;
          }
        }
        return { messages: got };
      }));
      return rows;
    } finally {
      await nc.close();
    }
  } finally {
    unregister();
    await stop();
  }
}
