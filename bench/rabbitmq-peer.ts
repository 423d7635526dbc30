/**
 * The RabbitMQ peer of `npm run bench`: Debian's rabbitmq-server (3.10 on bookworm) as a 3-node
 * cluster on 127.0.0.1 with everything private to the bench's temp folder (AMQP, Erlang
 * distribution, epmd and rabbitmqctl ports from the OS; its own cookie in a private HOME; mnesia
 * and logs in the folder), one quorum queue (Raft, 3 replicas), measured with amqplib on a
 * confirm channel (the publisher confirm is the ack) at the same levels as the other systems,
 * then a drain with prefetch and manual acks. The setup follows ../shared/peers/rabbitmq-bench.sh.
 * CPU is counted on the three Erlang VMs (the node scripts run the VM as a child; the VM's pid is
 * the one in the node's pid file). The cluster is stopped cleanly (SIGTERM to each node script,
 * which stops its VM) before this returns, on error too.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import amqp from 'amqplib';
import { freePorts } from '../src/cli/local-cluster.js';
import { alive, closedLoop, countCap, ensureDebianBinary, freePortRange, listening, measure, onInterrupt, stopChild, stopPid, waitFor, warmUp, type Row } from './bench-support.js';
import type { PeerOptions } from './nats-peer.js';

export const RABBITMQ = 'RabbitMQ quorum queue (3 replicas)';
const QUEUE = 'bench.quorum';
const NODES = ['rabbit1', 'rabbit2', 'rabbit3'] as const;

/**
 * The package's own scripts folder (…/rabbitmq_server-<v>/sbin), installing rabbitmq-server
 * from Debian when missing; undefined when it cannot be had. (The /usr/sbin wrappers switch to
 * the rabbitmq user, which would drop the private environment.)
 */
export function ensureRabbitMQ(): string | undefined {
  const installed = scriptsDir();
  if (installed !== undefined && spawnText('sh', ['-c', 'command -v epmd']).trim() !== '') return installed; // /usr/sbin may be off a non-root PATH
  if (ensureDebianBinary('rabbitmq-server', 'rabbitmq-server') === undefined || ensureDebianBinary('epmd', 'erlang-base') === undefined) return undefined;
  return scriptsDir();
}

function scriptsDir(): string | undefined {
  const listing = spawnText('dpkg', ['-L', 'rabbitmq-server']);
  const ctl = listing.split('\n').find((line) => /rabbitmq_server-[^/]+\/sbin\/rabbitmqctl$/.test(line));
  return ctl === undefined ? undefined : path.dirname(ctl);
}

const spawnText = (command: string, args: readonly string[]): string => spawnSync(command, args, { encoding: 'utf8', timeout: 30_000 }).stdout ?? '';

interface Cluster {
  readonly scratch: string;
  readonly scripts: ChildProcess[];
  readonly vmPids: number[];
  epmd?: ChildProcess;
}

export async function benchRabbitMQ(scripts: string, dir: string, options: PeerOptions): Promise<Row[]> {
  const scratch = path.join(dir, 'rabbitmq');
  const home = path.join(scratch, 'home');
  await fs.mkdir(home, { recursive: true });
  await fs.mkdir(path.join(scratch, 'log'));
  const ports = await freePorts(7);
  const [amqpPorts, distPorts, epmdPort] = [ports.slice(0, 3), ports.slice(3, 6), ports[6] as number];
  const ctlBase = await freePortRange(10);
  // Shared by the nodes and rabbitmqctl: a private cookie (through HOME), a private epmd, private folders.
  const env: NodeJS.ProcessEnv = {
    ...process.env, HOME: home, ERL_EPMD_PORT: String(epmdPort), ERL_EPMD_ADDRESS: '127.0.0.1',
    RABBITMQ_CONF_ENV_FILE: path.join(scratch, 'rabbitmq-env.conf'), RABBITMQ_ENABLED_PLUGINS_FILE: path.join(scratch, 'enabled_plugins'),
    RABBITMQ_MNESIA_BASE: path.join(scratch, 'mnesia'), RABBITMQ_LOG_BASE: path.join(scratch, 'log'),
    RABBITMQ_CTL_DIST_PORT_MIN: String(ctlBase), RABBITMQ_CTL_DIST_PORT_MAX: String(ctlBase + 9),
  };
  await fs.writeFile(env.RABBITMQ_CONF_ENV_FILE as string, '');
  await fs.writeFile(env.RABBITMQ_ENABLED_PLUGINS_FILE as string, '[].\n');
  await fs.writeFile(path.join(home, '.erlang.cookie'), randomBytes(20).toString('hex'), { mode: 0o400 });

  const cluster: Cluster = { scratch, scripts: [], vmPids: [] };
  const stop = (): Promise<void> => stopCluster(cluster);
  const unregister = onInterrupt(stop);
  try {
    cluster.epmd = spawn('epmd', ['-port', String(epmdPort), '-address', '127.0.0.1'], { stdio: 'ignore', env });
    await waitFor('epmd', 10_000, () => listening(epmdPort));
    const ctl = (args: readonly string[], timeoutMs: number): Promise<string> => run(path.join(scripts, args[0] as string), args.slice(1), env, timeoutMs);
    const startNode = async (i: number): Promise<void> => {
      const name = NODES[i] as string;
      const conf = path.join(scratch, `${name}.conf`);
      await fs.writeFile(conf, [
        `listeners.tcp.default = 127.0.0.1:${amqpPorts[i]}`,
        'cluster_formation.peer_discovery_backend = classic_config',
        ...NODES.map((n, k) => `cluster_formation.classic_config.nodes.${k + 1} = ${n}@localhost`),
        'log.console = false', 'log.file.level = warning', '',
      ].join('\n'));
      const out = openSync(path.join(scratch, `${name}.out`), 'a');
      cluster.scripts.push(spawn(path.join(scripts, 'rabbitmq-server'), [], {
        stdio: ['ignore', out, out],
        env: {
          ...env, RABBITMQ_NODENAME: `${name}@localhost`, RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1', RABBITMQ_NODE_PORT: String(amqpPorts[i]),
          RABBITMQ_DIST_PORT: String(distPorts[i]), RABBITMQ_CONFIG_FILE: conf, RABBITMQ_PID_FILE: path.join(scratch, `${name}.pid`),
          RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
        },
      }));
      closeSync(out);
    };
    const waitNode = (i: number): Promise<string> => ctl(['rabbitmqctl', '-n', `${NODES[i]}@localhost`, '-q', 'wait', path.join(scratch, `${NODES[i]}.pid`), '--timeout', '140'], 150_000);
    // The first node forms the cluster; the others join it (classic_config peer discovery).
    await startNode(0);
    await waitNode(0);
    await startNode(1);
    await startNode(2);
    await waitNode(1);
    await waitNode(2);
    await ctl(['rabbitmqctl', '-n', 'rabbit1@localhost', '-q', 'await_online_nodes', '3', '--timeout', '110000'], 120_000);
    cluster.vmPids.push(...await vmPids(scratch));
    if (cluster.vmPids.length !== 3) throw new Error(`RabbitMQ: ${cluster.vmPids.length} pid files of 3`);

    const connection = await amqp.connect(`amqp://guest:guest@127.0.0.1:${amqpPorts[0]}`);
    try {
      const channel = await connection.createConfirmChannel();
      // Declared through rabbit1, so its leader is there (queue-leader-locator client-local), where the client is connected.
      await channel.assertQueue(QUEUE, { durable: true, arguments: { 'x-queue-type': 'quorum', 'x-quorum-initial-group-size': 3 } });
      const members = JSON.parse(await ctl(['rabbitmq-queues', '-n', 'rabbit1@localhost', '-q', 'quorum_status', QUEUE, '--formatter', 'json'], 30_000)) as unknown[];
      if (members.length !== 3) throw new Error(`quorum queue ${QUEUE} has ${members.length} members, not 3`);
      const payload = randomBytes(options.size);
      const publish = (): Promise<void> => new Promise((resolve, reject) => {
        channel.sendToQueue(QUEUE, payload, { persistent: true }, (error: unknown) => (error === null || error === undefined ? resolve() : reject(error instanceof Error ? error : new Error(String(error)))));
      });
      const rows: Row[] = [];
      await warmUp(options.warmUpSeconds, publish);
      for (const inflight of options.inflights) rows.push(await measure(RABBITMQ, 'produce', inflight, cluster.vmPids, () => closedLoop(inflight, options.seconds, countCap(inflight), publish)));
      const stored = (await channel.checkQueue(QUEUE)).messageCount;
      if (stored < options.drain) await closedLoop(256, 120, options.drain - stored, publish); // top up: every system drains the same count
      const consumer = await connection.createChannel();
      await consumer.prefetch(1000);
      rows.push(await measure(RABBITMQ, 'consume', 0, cluster.vmPids, async () => {
        let got = 0;
        let tag = '';
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(resolve, 120_000);
          consumer.consume(QUEUE, (message) => {
            if (message === null || got >= options.drain) return;
            consumer.ack(message);
            if (++got >= options.drain) {
              clearTimeout(timer);
              resolve();
            }
          }, { noAck: false }).then((reply) => { tag = reply.consumerTag; }, reject);
        });
        if (tag !== '') await consumer.cancel(tag);
        return { messages: got };
      }));
      await consumer.close();
      return rows;
    } finally {
      await connection.close().catch(() => undefined);
    }
  } finally {
    unregister();
    await stop();
  }
}

/** Runs a command to its end (bounded by `timeoutMs`); resolves its stdout, rejects with its output on failure. */
function run(command: string, args: readonly string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs, killSignal: 'SIGKILL' });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    child.once('error', reject);
    child.once('close', (code, signal) => (code === 0 ? resolve(stdout) : reject(new Error(`${path.basename(command)} ${args.join(' ')}: ${signal ?? `exit ${code}`}: ${(stderr || stdout).trim().slice(-500)}`))));
  });
}

/** Each node script in reverse start order (SIGTERM: it stops its VM and waits for it), then any VM still there, then epmd. */
async function stopCluster(cluster: Cluster): Promise<void> {
  const vms = cluster.vmPids.length > 0 ? cluster.vmPids : await vmPids(cluster.scratch); // a start that failed half-way
  for (const script of [...cluster.scripts].reverse()) await stopChild(script, 60_000);
  for (const pid of vms) if (alive(pid)) await stopPid(pid, 30_000);
  if (cluster.epmd !== undefined) await stopChild(cluster.epmd, 5_000);
}

/** The Erlang VM pids the nodes wrote to their pid files (those that did). */
async function vmPids(scratch: string): Promise<number[]> {
  const pids: number[] = [];
  for (const name of NODES) {
    const text = await fs.readFile(path.join(scratch, `${name}.pid`), 'utf8').catch(() => '');
    if (/^\d+$/.test(text.trim())) pids.push(Number(text.trim()));
  }
  return pids;
}
