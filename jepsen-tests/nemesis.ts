/**
 * The nemesis: faults against the real processes and the real network (FAULTS §6.1). Each
 * fault is started, held, and stopped; its start and stop are `info` operations of process
 * "nemesis" in the history, with the exact targets and what the fault did (packets dropped,
 * bytes a power cut discarded, corruption detected), which the checker uses to tell a run
 * whose faults bit from one whose faults did nothing.
 */
import { copyFile, open, readdir, stat } from 'node:fs/promises';
import * as path from 'node:path';
import type { History } from './history.js';
import { bridgeGrudge, completeGrudge, majoritiesRingGrudge, oneWayGrudge, type Grudge } from './net.js';
import { setTimeout as sleep } from 'node:timers/promises';
import type { JepsenCluster } from './cluster.js';
import { parseSegmentFileName } from '../src/commitlog/record-codec.js';
import type { Prng } from '../src/testing/prng.js';

export const faultKinds = [
  'partition-leader', 'partition-halves', 'partition-ring', 'partition-bridge', 'partition-one-way', 'flapping',
  'kill', 'power-loss', 'outage', 'pause', 'corrupt', 'pause-kill', 'part-kill',
] as const;
export type FaultKind = typeof faultKinds[number];
/** `mixed` rotates random subsets of the standard faults with fault-free periods (F17). */
export type NemesisName = FaultKind | 'mixed';

export interface NemesisConfig {
  readonly kinds: readonly NemesisName[];
  readonly calmMs: readonly [number, number];
  readonly faultMs: readonly [number, number];
  /** Base election timeout of the brokers (tick × election ticks). */
  readonly electionTimeoutMs: number;
}

interface Started {
  readonly value: Record<string, unknown>;
  /** Ends the fault (heals, resumes, restarts) and reports what it did. */
  readonly stop: () => Promise<Record<string, unknown>>;
  /** A fault with its own length (pauses draw theirs from two bands). */
  readonly holdMs?: number;
}

type Target = 'one' | 'leader' | 'minority' | 'majority' | 'all';

export class Nemesis {
  private readonly corrupted = new Map<string, { file: string; backup: string }>();
  events = 0;

  constructor(private readonly cluster: JepsenCluster, private readonly history: History, private readonly config: NemesisConfig, private readonly rng: Prng) {}

  /** Runs faults until `untilMs` (Date.now() clock), bounded by count too. */
  async run(untilMs: number): Promise<void> {
    for (let round = 0; round < 10_000 && Date.now() < untilMs; round++) {
      await sleep(Math.min(this.between(this.config.calmMs[0], this.config.calmMs[1]), Math.max(0, untilMs - Date.now())));
      if (Date.now() >= untilMs) break;
      const kinds = this.pickKinds();
      if (kinds.length === 0) {
        // A fault-free period of the mixed nemesis.
        await sleep(Math.min(this.between(this.config.faultMs[0], this.config.faultMs[1]), Math.max(0, untilMs - Date.now())));
        continue;
      }
      const started: Array<{ kind: FaultKind; fault: Started }> = [];
      for (const kind of kinds) {
        const leader = await this.cluster.leader();
        const fault = await this.start(kind, leader);
        // `leader` lets the checker drop a "leader fault" whose leader had already moved.
        this.history.add({ type: 'info', process: 'nemesis', f: `start-${kind}`, value: { ...fault.value, leader: leader ?? null } });
        this.events++;
        started.push({ kind, fault });
      }
      const holdMs = Math.max(...started.map((s) => s.fault.holdMs ?? this.between(this.config.faultMs[0], this.config.faultMs[1])));
      await sleep(holdMs);
      for (const { kind, fault } of started.reverse()) {
        const value = await fault.stop();
        this.history.add({ type: 'info', process: 'nemesis', f: `stop-${kind}`, value });
      }
    }
  }

  /** Heals everything: network, pauses, corrupted files (restored, as an operator would), dead nodes. */
  async healAll(): Promise<void> {
    const packetsDropped = await this.cluster.net.heal();
    for (const id of this.cluster.ids) await this.cluster.resume(id);
    for (const id of [...this.corrupted.keys()]) await this.repair(id);
    for (const id of this.cluster.ids) this.cluster.restart(id);
    this.history.add({ type: 'info', process: 'nemesis', f: 'heal-all', value: { packetsDropped } });
  }

  /** A uniform real in [low, high). */
  private between(low: number, high: number): number {
    return low + this.rng.float() * (high - low);
  }

  private pickKinds(): FaultKind[] {
    const named = this.config.kinds.filter((k): k is FaultKind => k !== 'mixed');
    const mixed = this.config.kinds.includes('mixed');
    if (!mixed) return [this.rng.pick(named)];
    if (this.between(0, 4) < 1) return []; // about a quarter of the periods are fault-free
    const network: FaultKind[] = ['partition-leader', 'partition-halves'];
    const process: FaultKind[] = ['kill', 'power-loss', 'pause'];
    const shape = this.between(0, 5);
    if (shape < 1) return ['corrupt']; // corruption only while the rest of the group is healthy
    if (shape < 2) return [this.rng.pick(network)];
    if (shape < 3) return [this.rng.pick(process)];
    return [this.rng.pick(network), this.rng.pick(process)];
  }

  private async start(kind: FaultKind, leader: string | undefined): Promise<Started> {
    const ids = this.cluster.ids;
    switch (kind) {
      case 'partition-leader': {
        const target = leader ?? this.rng.pick(ids);
        return this.partition({ shape: kind, isolated: target, targetsLeader: leader !== undefined }, completeGrudge([[target], ids.filter((id) => id !== target)]));
      }
      case 'partition-halves': {
        const shuffled = this.rng.shuffle(ids);
        const minority = shuffled.slice(0, Math.floor(ids.length / 2));
        return this.partition({ shape: kind, minority, targetsLeader: leader !== undefined && minority.includes(leader) }, completeGrudge([minority, shuffled.slice(minority.length)]));
      }
      case 'partition-ring':
        return this.partition({ shape: kind, ring: this.rng.shuffle(ids) }, majoritiesRingGrudge(this.rng.shuffle(ids)));
      case 'partition-bridge': {
        const order = this.rng.shuffle(ids);
        return this.partition({ shape: kind, order }, bridgeGrudge(order));
      }
      case 'partition-one-way': {
        // Always between the leader and a follower, in either direction (a cut between two
        // followers drops nothing: they do not talk). Leader deaf to a follower is DLedger #25.
        const anchor = leader ?? this.rng.pick(ids);
        const other = this.rng.pick(ids.filter((id) => id !== anchor));
        const [from, to] = this.rng.float() < 0.5 ? [anchor, other] : [other, anchor];
        return this.partition({ shape: kind, from, to }, oneWayGrudge(from, to));
      }
      case 'flapping': return this.flapping();
      case 'kill':
      case 'power-loss':
      case 'outage': {
        // An outage is a power cut of every node at once (the whole group is down).
        const targets = this.targets(kind === 'outage' ? 'all' : this.rng.pick<Target>(['one', 'leader', 'minority', 'majority', 'all']), leader);
        let discardedBytes = 0;
        let powerFailures = 0;
        for (const id of targets) {
          if (kind === 'kill') {
            await this.cluster.kill(id);
          } else {
            const report = await this.cluster.powerFail(id);
            powerFailures++;
            discardedBytes += report?.discardedBytes ?? 0;
          }
        }
        return {
          value: { targets, targetsLeader: leader !== undefined && targets.includes(leader), ...(kind === 'kill' ? {} : { powerFailures, discardedBytes }) },
          stop: async () => {
            for (const id of targets) this.cluster.restart(id);
            return { restarted: targets };
          },
        };
      }
      case 'pause': {
        const target = this.between(0, 2) < 1 && leader !== undefined ? leader : this.rng.pick(ids);
        const timeout = this.config.electionTimeoutMs;
        const long = this.between(0, 2) < 1;
        const holdMs = long ? this.between(2 * timeout, 10 * timeout) : this.between(timeout / 3, timeout * 0.8);
        await this.cluster.pause(target);
        return {
          value: { target, band: long ? 'long' : 'short', ms: Math.round(holdMs), targetsLeader: long && target === leader },
          holdMs,
          stop: async () => {
            await this.cluster.resume(target);
            return { resumed: target };
          },
        };
      }
      case 'corrupt': return this.corrupt();
      case 'pause-kill':
      case 'part-kill': {
        // NATS 2.12.1's scripts: cut off a minority (here the leader), power-fail another node
        // and bring it straight back, so the new majority includes the node that lost data.
        const isolated = leader ?? this.rng.pick(ids);
        const minority = [isolated, ...this.rng.shuffle(ids.filter((id) => id !== isolated)).slice(0, Math.floor(ids.length / 2) - 1)];
        const rest = ids.filter((id) => !minority.includes(id));
        const victim = this.rng.pick(rest);
        if (kind === 'pause-kill') for (const id of minority) await this.cluster.pause(id);
        else await this.cluster.net.partition(completeGrudge([minority, rest]));
        await sleep(200);
        const report = await this.cluster.powerFail(victim);
        this.cluster.restart(victim);
        return {
          value: { minority, victim, targetsLeader: leader !== undefined, powerFailures: 1, discardedBytes: report?.discardedBytes ?? 0, ...(kind === 'part-kill' ? { partition: true } : {}) },
          stop: async () => {
            if (kind === 'pause-kill') {
              for (const id of minority) await this.cluster.resume(id);
              return { resumed: minority };
            }
            return { packetsDropped: await this.cluster.net.heal() };
          },
        };
      }
    }
  }

  private targets(target: Target, leader: string | undefined): string[] {
    const ids = this.cluster.ids;
    const shuffled = this.rng.shuffle(ids);
    const minority = Math.floor(ids.length / 2);
    switch (target) {
      case 'one': return shuffled.slice(0, 1);
      case 'leader': return [leader ?? this.rng.pick(ids)];
      case 'minority': return shuffled.slice(0, minority);
      case 'majority': return shuffled.slice(0, minority + 1);
      case 'all': return shuffled;
    }
  }

  private async partition(value: Record<string, unknown>, grudge: Grudge): Promise<Started> {
    await this.cluster.net.partition(grudge);
    return {
      value: { ...value, partition: true, grudge: Object.fromEntries([...grudge].map(([k, v]) => [k, [...v]])) },
      stop: async () => ({ packetsDropped: await this.cluster.net.heal() }),
    };
  }

  /** A new random split every 0.2–2 s for the whole window (F5). */
  private async flapping(): Promise<Started> {
    let flapping = true;
    let packetsDropped = 0;
    let flaps = 0;
    const loop = (async () => {
      for (let i = 0; i < 1_000 && flapping; i++) {
        const shuffled = this.rng.shuffle(this.cluster.ids);
        const cut = 1 + this.between(0, Math.floor(shuffled.length / 2));
        await this.cluster.net.partition(completeGrudge([shuffled.slice(0, Math.floor(cut)), shuffled.slice(Math.floor(cut))]));
        flaps++;
        await sleep(this.between(200, 2_000));
        packetsDropped += await this.cluster.net.heal();
      }
    })();
    return {
      value: { partition: true, shape: 'flapping' },
      stop: async () => {
        flapping = false;
        await loop;
        return { packetsDropped, flaps };
      },
    };
  }

  /**
   * Kills one node and damages its newest commitlog segment while it is down (a bit flip in a
   * random region, or the last bytes cut off), then restarts it. The node must either refuse
   * to start, naming the damage, or cut a tail it cannot trust; the group keeps every
   * acknowledged message. A node that refused stays down until the heal restores its file.
   */
  private async corrupt(): Promise<Started> {
    const id = this.rng.pick(this.cluster.ids.filter((n) => !this.corrupted.has(n)));
    await this.cluster.kill(id);
    const logDir = path.join(this.cluster.dataDir(id), 'log');
    const segments = (await readdir(logDir).catch(() => [])).filter((name) => parseSegmentFileName(name) !== undefined).sort();
    const file = segments.length === 0 ? undefined : path.join(logDir, segments[segments.length - 1] as string);
    const value: Record<string, unknown> = { corruption: true, node: id };
    if (file !== undefined) {
      const size = (await stat(file)).size;
      const backup = `${file}.jepsen-backup`;
      await copyFile(file, backup);
      this.corrupted.set(id, { file, backup });
      const handle = await open(file, 'r+');
      try {
        if (this.between(0, 2) < 1 && size > 64) {
          const at = 32 + Math.floor(this.between(0, size - 40));
          const bytes = Buffer.alloc(8);
          await handle.read(bytes, 0, 8, at);
          for (let i = 0; i < 8; i++) bytes[i] = (bytes[i] as number) ^ (1 << Math.floor(this.between(0, 8)));
          await handle.write(bytes, 0, 8, at);
          Object.assign(value, { file: path.basename(file), mode: 'bit-flip', offset: at, bytes: 8 });
        } else {
          const cut = Math.min(size - 32, Math.floor(this.between(1, 4_096)));
          await handle.truncate(Math.max(32, size - cut));
          Object.assign(value, { file: path.basename(file), mode: 'truncate', bytesCut: cut });
        }
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
    this.cluster.restart(id);
    await sleep(2_000);
    const exit = this.cluster.exitOf(id);
    const refused = !this.cluster.isRunning(id);
    const detected = refused && /corrupt/i.test(exit.output);
    const cutTail = /torn tail|recovery cut/.test(exit.output);
    Object.assign(value, { refusedToStart: refused, corruptionDetected: detected || cutTail, exitCode: exit.code });
    if (!refused) this.corrupted.delete(id);
    return {
      value,
      stop: async () => {
        const repaired = this.corrupted.has(id);
        await this.repair(id);
        this.cluster.restart(id);
        return { repaired };
      },
    };
  }

  /** Restores the file a refused node was damaged in (the operator's repair), if any. */
  private async repair(id: string): Promise<void> {
    const damaged = this.corrupted.get(id);
    if (damaged === undefined) return;
    if (!this.cluster.isRunning(id)) await copyFile(damaged.backup, damaged.file);
    this.corrupted.delete(id);
  }
}
