/**
 * Real partitions: every node runs in its own network namespace with one veth on a bridge
 * the harness creates (a private /24 that nothing routes anywhere else); the NameServer and
 * the clients stay in the root namespace on the bridge's address. A partition is a set of
 * `iptables -j DROP` rules on INPUT inside the receiving node's namespace, so existing TCP
 * connections stall (no resets), exactly as in Jepsen. One-way cuts drop on one side only.
 *
 * The DROP rules' packet counters are the proof that a partition really stopped traffic:
 * `heal()` returns how many packets each cut discarded.
 */
import { execFile } from 'node:child_process';
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** node → the nodes whose packets it drops (Jepsen's grudge). */
export type Grudge = ReadonlyMap<string, ReadonlySet<string>>;

export interface NetNode {
  readonly id: string;
  readonly namespace: string;
  readonly ip: string;
}

const prefix = 'rmqj';

/** One harness process at a time owns the `rmqj*` namespaces of this machine (removeStale deletes them all). */
const lockPath = path.join(os.tmpdir(), 'raftmq-jepsen-netns.lock');

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the machine's namespace lock for this process (kept until it exits), or refuses while another live run holds it. */
function lockNamespaces(): void {
  let owner: number | undefined;
  try {
    owner = Number(readFileSync(lockPath, 'utf8').trim());
  } catch {
    // no lock yet
  }
  if (owner === process.pid) return;
  if (owner !== undefined && Number.isInteger(owner) && owner > 0 && isAlive(owner)) {
    throw new Error(`another jepsen run (pid ${owner}) is using this machine's network namespaces (${lockPath}); two runs would delete each other's: wait for it to end`);
  }
  if (owner !== undefined) unlinkSync(lockPath); // its owner is gone (or it is unreadable)
  // wx: of two runs starting at once, one gets the lock and the other an EEXIST error.
  writeFileSync(lockPath, `${process.pid}\n`, { flag: 'wx' });
  process.once('exit', () => {
    try {
      if (readFileSync(lockPath, 'utf8').trim() === String(process.pid)) unlinkSync(lockPath);
    } catch {
      // gone already
    }
  });
}

async function sh(command: string, args: readonly string[], timeoutMs = 10_000): Promise<string> {
  try {
    return (await run(command, args, { timeout: timeoutMs })).stdout;
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new Error(`${command} ${args.join(' ')}: ${(e.stderr ?? '').trim() || e.message}`);
  }
}

/** Installs iptables from Debian's packages when missing (as the project's own setup step). */
export async function ensureNetTools(): Promise<void> {
  if (process.getuid?.() !== 0) {
    throw new Error('jepsen-tests needs root: partitions are network namespaces with iptables rules (run as root, as CI does)');
  }
  const has = async (command: string): Promise<boolean> => sh('sh', ['-c', `command -v ${command}`]).then(() => true, () => false);
  if (!(await has('ip'))) throw new Error('the ip command (iproute2) is missing');
  if (await has('iptables')) return;
  console.log('jepsen: installing iptables from Debian packages');
  await sh('sh', ['-c', 'DEBIAN_FRONTEND=noninteractive apt-get install -y -q iptables >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q iptables >/dev/null)'], 300_000); // an apt-get update alone can take longer than 10 s
  if (!(await has('iptables'))) throw new Error('could not install iptables');
}

export class NamespaceNet {
  private cuts = new Map<string, Set<string>>();

  private constructor(readonly tag: string, readonly hostIp: string, readonly nodes: readonly NetNode[], private readonly bridge: string) {}

  /** Creates the bridge and one namespace per node; `destroy()` removes them. */
  static async create(nodeIds: readonly string[]): Promise<NamespaceNet> {
    await ensureNetTools();
    lockNamespaces();
    await NamespaceNet.removeStale();
    const subnet = 100 + Math.floor(Math.random() * 150);
    const tag = `${prefix}${subnet}`;
    const bridge = `${tag}br`;
    const hostIp = `10.213.${subnet}.1`;
    const nodes = nodeIds.map((id, i) => ({ id, namespace: `${tag}-${id}`, ip: `10.213.${subnet}.${10 + i}` }));
    const net = new NamespaceNet(tag, hostIp, nodes, bridge);
    try {
      await sh('ip', ['link', 'add', bridge, 'type', 'bridge']);
      await sh('ip', ['addr', 'add', `${hostIp}/24`, 'dev', bridge]);
      await sh('ip', ['link', 'set', bridge, 'up']);
      for (const [i, node] of nodes.entries()) {
        const hostSide = `${tag}v${i}`;
        await sh('ip', ['netns', 'add', node.namespace]);
        await sh('ip', ['link', 'add', hostSide, 'type', 'veth', 'peer', 'name', `${tag}p${i}`]);
        await sh('ip', ['link', 'set', `${tag}p${i}`, 'netns', node.namespace]);
        await sh('ip', ['link', 'set', hostSide, 'master', bridge, 'up']);
        const inside = (...args: string[]): Promise<string> => sh('ip', ['netns', 'exec', node.namespace, ...args]);
        await inside('ip', 'link', 'set', 'lo', 'up');
        await inside('ip', 'link', 'set', `${tag}p${i}`, 'name', 'eth0');
        await inside('ip', 'addr', 'add', `${node.ip}/24`, 'dev', 'eth0');
        await inside('ip', 'link', 'set', 'eth0', 'up');
      }
    } catch (error) {
      await net.destroy();
      throw error;
    }
    return net;
  }

  /**
   * Removes namespaces and links an earlier, killed run left behind, and kills the processes
   * still running in them (a namespace lives on while a process is inside).
   */
  static async removeStale(): Promise<void> {
    const namespaces = (await sh('ip', ['netns', 'list']).catch(() => '')).split('\n').map((line) => line.split(' ')[0] ?? '').filter((name) => name.startsWith(prefix));
    for (const name of namespaces) {
      const pids = (await sh('ip', ['netns', 'pids', name]).catch(() => '')).split('\n').map(Number).filter((pid) => Number.isInteger(pid) && pid > 0);
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      await sh('ip', ['netns', 'del', name]).catch(() => undefined);
    }
    // The NameServer of such a run lives in the root namespace, on the old bridge's address.
    if (namespaces.length > 0) await sh('pkill', ['-9', '-f', 'namesrv --listen 10\\.213\\.']).catch(() => undefined);
    const links = (await sh('ip', ['-o', 'link', 'show']).catch(() => '')).split('\n').map((line) => /^\d+: ([^:@]+)/.exec(line)?.[1] ?? '').filter((name) => name.startsWith(prefix));
    for (const name of links) await sh('ip', ['link', 'del', name]).catch(() => undefined);
  }

  node(id: string): NetNode {
    const node = this.nodes.find((n) => n.id === id);
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }

  /** The command prefix that runs a process inside `id`'s namespace (ip execs it: same pid). */
  launcher(id: string): readonly string[] {
    return ['ip', 'netns', 'exec', this.node(id).namespace];
  }

  /** Installs a grudge (on top of any cut already in place). */
  async partition(grudge: Grudge): Promise<void> {
    for (const [receiver, senders] of grudge) {
      const have = this.cuts.get(receiver) ?? new Set<string>();
      this.cuts.set(receiver, have);
      for (const sender of senders) {
        if (sender === receiver || have.has(sender)) continue;
        await sh('ip', ['netns', 'exec', this.node(receiver).namespace, 'iptables', '-A', 'INPUT', '-s', this.node(sender).ip, '-j', 'DROP']);
        have.add(sender);
      }
    }
  }

  /** Removes every cut; returns the packets they dropped (the proof they bit). */
  async heal(): Promise<number> {
    let dropped = 0;
    for (const receiver of this.cuts.keys()) {
      const namespace = this.node(receiver).namespace;
      const listing = await sh('ip', ['netns', 'exec', namespace, 'iptables', '-L', 'INPUT', '-v', '-x', '-n']);
      for (const line of listing.split('\n')) {
        const fields = line.trim().split(/\s+/);
        if (fields[2] === 'DROP') dropped += Number(fields[0]);
      }
      await sh('ip', ['netns', 'exec', namespace, 'iptables', '-F', 'INPUT']);
    }
    this.cuts = new Map();
    return dropped;
  }

  async destroy(): Promise<void> {
    for (const node of this.nodes) await sh('ip', ['netns', 'del', node.namespace]).catch(() => undefined);
    await sh('ip', ['link', 'del', this.bridge]).catch(() => undefined);
  }
}

/** Both directions between every pair across `sides`. */
export function completeGrudge(sides: ReadonlyArray<readonly string[]>): Grudge {
  const grudge = new Map<string, Set<string>>();
  for (const [i, side] of sides.entries()) {
    const others = sides.filter((_, j) => j !== i).flat();
    for (const node of side) grudge.set(node, new Set(others));
  }
  return grudge;
}

/** Jepsen's majorities ring: each node sees exactly its two ring neighbours (needs 5 nodes). */
export function majoritiesRingGrudge(ring: readonly string[]): Grudge {
  const grudge = new Map<string, Set<string>>();
  const n = ring.length;
  ring.forEach((node, i) => {
    const visible = new Set([node, ring[(i + 1) % n] as string, ring[(i + n - 1) % n] as string]);
    grudge.set(node, new Set(ring.filter((other) => !visible.has(other))));
  });
  return grudge;
}

/** Jepsen's bridge: two halves that cannot see each other, joined by one node that sees both. */
export function bridgeGrudge(nodes: readonly string[]): Grudge {
  const middle = Math.floor(nodes.length / 2);
  const left = nodes.slice(0, middle);
  const right = nodes.slice(middle + 1);
  const grudge = new Map<string, Set<string>>();
  for (const node of left) grudge.set(node, new Set(right));
  for (const node of right) grudge.set(node, new Set(left));
  return grudge;
}

/** A one-way cut: `to` stops hearing `from` (and so TCP from both stalls, as on a real network). */
export function oneWayGrudge(from: string, to: string): Grudge {
  return new Map([[to, new Set([from])]]);
}
