/**
 * Pieces `npm run bench` (broker-bench.ts) shares between the systems it measures: the closed
 * loop, the per-phase CPU accounting (server processes from /proc, this process from
 * process.cpuUsage()), installing a peer from Debian's packages, and stopping processes by pid.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as net from 'node:net';

/** One printed / `--json` row. `inflight` is 0 for a drain. */
export interface Row {
  readonly system: string;
  readonly phase: 'produce' | 'consume';
  readonly inflight: number;
  readonly messages: number;
  readonly seconds: number;
  readonly msgs_s: number;
  readonly p50_ms: number;
  readonly p99_ms: number;
  /** user+system CPU of the system's server processes over the phase, per message. */
  readonly server_cpu_us_per_msg: number;
  /** user+system CPU of this (client) process over the phase, per message. */
  readonly client_cpu_us_per_msg: number;
}

export const round = (n: number, digits = 2): number => Number(n.toFixed(digits));
const percentile = (sorted: readonly number[], p: number): number => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number);
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

let clockTicks: number | undefined;
/** Clock ticks per second, the unit of utime/stime in /proc/<pid>/stat (`getconf CLK_TCK`; 100 if that fails). */
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    const answer = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim());
    clockTicks = Number.isFinite(answer) && answer > 0 ? answer : 100;
  }
  return clockTicks;
}

/** utime+stime of `pids`, in µs. A process that is gone counts 0 (its CPU up to then is lost: a phase's servers must outlive it). */
export function serverCpuMicros(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // comm may hold spaces; fields after it start at state (field 3)
      ticks += Number(fields[11]) + Number(fields[12]); // utime, stime: fields 14 and 15
    } catch {
      // gone
    }
  }
  return (ticks / ticksPerSecond()) * 1e6;
}

const clientCpuMicros = (): number => {
  const usage = process.cpuUsage();
  return usage.user + usage.system;
};

/** What a phase reports back to `measure`. Latencies are per message in ms (empty for a drain). */
export interface PhaseOutcome {
  readonly messages: number;
  readonly latencies?: number[];
}

/**
 * Runs one phase and makes its row: wall time, throughput, p50/p99 and the CPU that the
 * `serverPids` and this process used while it ran, per message.
 */
export async function measure(system: string, phase: Row['phase'], inflight: number, serverPids: readonly number[], run: () => Promise<PhaseOutcome>): Promise<Row> {
  const server0 = serverCpuMicros(serverPids);
  const client0 = clientCpuMicros();
  const started = performance.now();
  const outcome = await run();
  const seconds = (performance.now() - started) / 1000;
  const server = serverCpuMicros(serverPids) - server0;
  const client = clientCpuMicros() - client0;
  const latencies = [...(outcome.latencies ?? [])].sort((a, b) => a - b);
  const perMessage = (micros: number): number => (outcome.messages === 0 ? 0 : Math.round(micros / outcome.messages));
  return {
    system, phase, inflight, messages: outcome.messages, seconds: round(seconds), msgs_s: Math.round(outcome.messages / seconds),
    p50_ms: round(percentile(latencies, 50)), p99_ms: round(percentile(latencies, 99)),
    server_cpu_us_per_msg: perMessage(server), client_cpu_us_per_msg: perMessage(client),
  };
}

/** Closed loop: `inflight` workers, each awaiting its send before the next; bounded in count and time. */
export async function closedLoop(inflight: number, seconds: number, countMax: number, send: () => Promise<unknown>): Promise<PhaseOutcome> {
  const latencies: number[] = [];
  let issued = 0;
  const until = performance.now() + seconds * 1000;
  await Promise.all(Array.from({ length: inflight }, async () => {
    while (issued < countMax && performance.now() < until) {
      issued++;
      const t = performance.now();
      await send();
      latencies.push(performance.now() - t);
    }
  }));
  return { messages: latencies.length, latencies };
}

/**
 * Brings a system to its steady state before anything is measured: `seconds` of one send at a
 * time, at most 10,000 sends. V8 optimises a function only after it has run a budget of
 * bytecode, so a Node process at one send at a time runs interpreted and baseline code for its
 * first ~20 s: 500 warm-up sends left RaftMQ at 1 in flight measured well below its steady
 * state. One at a time warms every per-call path with few messages (a warm-up at 64 in flight
 * stored ~100,000 more messages in each system, and NATS and RabbitMQ were slower afterwards).
 * Peers in Go and Erlang gain nothing from the wait; they get it too. Returns the messages stored.
 */
export async function warmUp(seconds: number, send: () => Promise<unknown>): Promise<number> {
  return (await closedLoop(1, seconds, 10_000, send)).messages;
}

/** The count cap of a produce level: one at a time is slow, so 5,000 bounds it; a window, 100,000. */
export const countCap = (inflight: number): number => (inflight === 1 ? 5_000 : 100_000);

const commandPath = (name: string): string => spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).stdout?.trim() ?? '';

/**
 * `binary` on the PATH, installing Debian `pkg` with apt-get when it is missing and we are
 * root (as ../shared/peers/lib/common.sh apt_need does). Undefined when it cannot be had.
 */
export function ensureDebianBinary(binary: string, pkg: string): string | undefined {
  const found = commandPath(binary);
  if (found !== '') return found;
  if (process.getuid?.() !== 0) return undefined;
  console.error(`bench: installing ${pkg} from Debian packages (apt-get) for the same-run comparison...`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = (): boolean => spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', pkg], { stdio: 'ignore', env, timeout: 600_000 }).status === 0;
  if (!install()) {
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore', timeout: 300_000 });
    install();
  }
  const again = commandPath(binary);
  return again === '' ? undefined : again;
}

/** True while `pid` exists and is not a zombie. */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone (bounded: gives up 5 s after the KILL). */
export async function stopPid(pid: number, graceMs: number): Promise<void> {
  const signal = (s: NodeJS.Signals): void => {
    try { process.kill(pid, s); } catch { /* gone */ }
  };
  if (!alive(pid)) return;
  signal('SIGTERM');
  const killAt = Date.now() + graceMs;
  while (alive(pid) && Date.now() < killAt) await sleep(100);
  if (!alive(pid)) return;
  console.error(`bench: pid ${pid} ignored SIGTERM for ${graceMs / 1000} s, sending SIGKILL`);
  signal('SIGKILL');
  const giveUp = Date.now() + 5_000;
  while (alive(pid) && Date.now() < giveUp) await sleep(100);
}

/** `stopPid` for a child this process spawned (it is reaped through the ChildProcess, so wait for its exit there). */
export async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  child.kill('SIGTERM');
  await Promise.race([exited, sleep(graceMs + 5_000)]);
  clearTimeout(timer);
}

/** Polls `ready` every 200 ms until it resolves true, for at most `ms`; throws `what` on timeout. */
export async function waitFor(what: string, ms: number, ready: () => Promise<boolean> | boolean): Promise<void> {
  const until = Date.now() + ms;
  while (!(await ready())) {
    if (Date.now() > until) throw new Error(`${what}: not within ${ms / 1000} s`);
    await sleep(200);
  }
}

/** True if something accepts TCP connections on 127.0.0.1:`port`. */
export const listening = (port: number): Promise<boolean> => new Promise((resolve) => {
  const socket = net.connect(port, '127.0.0.1');
  socket.once('connect', () => { socket.destroy(); resolve(true); });
  socket.once('error', () => resolve(false));
});

/** `count` consecutive ports that are free now, from a random base in 20000–29999 (bounded: 50 tries). */
export async function freePortRange(count: number): Promise<number> {
  const bindable = (port: number): Promise<boolean> => new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 10_000);
    let ok = true;
    for (let i = 0; i < count && ok; i++) ok = await bindable(base + i);
    if (ok) return base;
  }
  throw new Error(`no ${count} consecutive free ports found`);
}

const cleanups = new Set<() => Promise<void>>();
let interruptHandled = false;
/**
 * Registers `stop` to run if the bench is interrupted (SIGINT/SIGTERM) before the phase's own
 * `finally` runs it; returns the function that unregisters it. The first registration installs
 * the handlers, which run every registered stop, the last registered first (each bounded by its own
 * grace periods), and exit 130.
 */
export function onInterrupt(stop: () => Promise<void>): () => void {
  if (!interruptHandled) {
    interruptHandled = true;
    const handler = (signal: NodeJS.Signals): void => {
      console.error(`bench: ${signal}: stopping the servers it started`);
      void (async () => {
        for (const fn of [...cleanups].reverse()) await fn().catch(() => undefined); // last registered first, like finally blocks
        process.exit(130);
      })();
    };
    process.once('SIGINT', handler);
    process.once('SIGTERM', handler);
  }
  cleanups.add(stop);
  return () => cleanups.delete(stop);
}
