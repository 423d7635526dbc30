/**
 * What `raftmq node` and `raftmq broker` share: argument parsers, the Raft member options and
 * the config they build, and the process lifecycle (fail-stop exit, clean stop on signals).
 */
import { randomInt } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import * as path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import type { Member } from '../raft/types.js';
import { defaultRaftGroupNodeConfig, type RaftGroupNode, type RaftGroupNodeConfig } from '../server/raft-group-node.js';

export function integer(name: string, min: number): (value: string) => number {
  return (value) => {
    const parsed = Number(value);
    if (!Number.isSafeInteger(parsed) || parsed < min) throw new InvalidArgumentError(`${name} must be a whole number ≥ ${min}`);
    return parsed;
  };
}

export const addressList = (value: string): string[] => value.split(',').map((a) => a.trim()).filter((a) => a !== '');

export function parseMembers(value: string): Member[] {
  const members = value.split(',').filter((part) => part.trim() !== '').map((part) => {
    const [id, address, ...rest] = part.trim().split('=');
    if (id === undefined || address === undefined || rest.length > 0 || id === '' || address === '') {
      throw new InvalidArgumentError(`member ${JSON.stringify(part)} must look like n1=127.0.0.1:7001`);
    }
    return { id, address };
  });
  if (members.length === 0) throw new InvalidArgumentError('name at least one member');
  return members;
}

export interface RaftNodeOptions {
  group: string; id: string; members: Member[]; data: string; flush: 'sync' | 'async'; flushIntervalMs: number; tickMs: number;
  electionTicks: number; heartbeatTicks: number; segmentBytes: number; snapshotEntries: number; snapshotBytes: number; logLevel: string;
  peerLane: boolean;
}

/** Adds the options of one Raft group member to `command`. */
export function withRaftNodeOptions(command: Command): Command {
  return command
    .requiredOption('--group <id>', 'group id (the same on every member)')
    .requiredOption('--id <nodeId>', 'this node\'s id; must be in --members')
    .requiredOption('--members <list>', 'every member as id=host:port, comma separated', parseMembers)
    .requiredOption('--data <dir>', 'data directory of this node')
    .addOption(new Option('--flush <mode>', 'SYNC_FLUSH (fsync before ack) or ASYNC_FLUSH (flush on an interval)').choices(['sync', 'async']).default('sync'))
    .option('--flush-interval-ms <ms>', 'ASYNC_FLUSH interval', integer('--flush-interval-ms', 1), defaultRaftGroupNodeConfig.flushIntervalMs)
    .option('--tick-ms <ms>', 'Raft tick length', integer('--tick-ms', 1), defaultRaftGroupNodeConfig.tickIntervalMs)
    .option('--election-ticks <n>', 'base election timeout in ticks (randomised up to twice that)', integer('--election-ticks', 2), defaultRaftGroupNodeConfig.electionTimeoutTicks)
    .option('--heartbeat-ticks <n>', 'heartbeat interval in ticks', integer('--heartbeat-ticks', 1), defaultRaftGroupNodeConfig.heartbeatIntervalTicks)
    .option('--segment-bytes <n>', 'commitlog segment size', integer('--segment-bytes', 4096), defaultRaftGroupNodeConfig.segmentBytesMax)
    .option('--snapshot-entries <n>', 'write a state snapshot after this many applied entries', integer('--snapshot-entries', 1), defaultRaftGroupNodeConfig.snapshotEveryEntries)
    .option('--snapshot-bytes <n>', '... or after this many bytes of applied entries', integer('--snapshot-bytes', 1), defaultRaftGroupNodeConfig.snapshotEveryBytes)
    .option('--no-peer-lane', 'replicate over gRPC only: no peer lane (plain TCP on the raft port + 1000, which leaders use for appends when a follower has it)')
    .option('--log-level <level>', 'pino log level', defaultRaftGroupNodeConfig.logLevel);
}

export function raftNodeConfig(options: RaftNodeOptions): RaftGroupNodeConfig {
  return {
    ...defaultRaftGroupNodeConfig,
    groupId: options.group, nodeId: options.id, members: options.members, dataDir: options.data,
    flushMode: options.flush, flushIntervalMs: options.flushIntervalMs, tickIntervalMs: options.tickMs,
    electionTimeoutTicks: options.electionTicks, heartbeatIntervalTicks: options.heartbeatTicks,
    segmentBytesMax: options.segmentBytes, snapshotEveryEntries: options.snapshotEntries, snapshotEveryBytes: options.snapshotBytes, logLevel: options.logLevel,
    peerLane: options.peerLane,
    // Test-only switches (the fault-injection harness sets them); never in production.
    unsafeAckBeforeFsync: process.env.RAFTMQ_UNSAFE_ACK_BEFORE_FSYNC === '1',
    unsafeAckBeforeQuorum: process.env.RAFTMQ_UNSAFE_ACK_BEFORE_QUORUM === '1',
    powerLossTestMode: process.env.RAFTMQ_TEST_POWER_LOSS === '1',
  };
}

/**
 * Power-loss test mode: SIGUSR2 is the power cut, at the next moment some write is not
 * durable yet (within a second). What survives of the unsynced writes is
 * applied, a line describing the loss is appended to <data>/power-failures.jsonl for the
 * harness, and the process dies by SIGKILL without running anything else.
 */
export function powerFailOnSignal<R>(node: RaftGroupNode<R>, alsoCut?: (randomInt: (maxExclusive: number) => number) => object): void {
  const disk = node.powerLoss;
  if (disk === undefined) return;
  process.once('SIGUSR2', () => {
    // Cut at a bad moment: wait (up to a second) until some write is not yet durable.
    const deadline = Date.now() + 1_000;
    const cut = (): void => {
      if (disk.pendingBytes() === 0 && Date.now() < deadline) {
        setImmediate(cut);
        return;
      }
      const report = { ...disk.powerFail((max) => randomInt(max)), ...alsoCut?.((max) => randomInt(max)) };
      appendFileSync(path.join(node.config.dataDir, 'power-failures.jsonl'), `${JSON.stringify({ ...report, nodeId: node.config.nodeId, atMs: Date.now() })}\n`);
      process.kill(process.pid, 'SIGKILL');
    };
    cut();
  });
}

/** Fail-stop: a storage failure ends the process (code 2); a restart recovers from disk. */
export function exitOnFatal(name: string): (error: Error) => void {
  return (error) => {
    console.error(`${name}: fatal: ${error.message}${error.cause instanceof Error ? `: ${error.cause.message}` : ''}`);
    process.exit(2);
  };
}

/** Keeps the process alive until SIGINT/SIGTERM, then runs `close` and exits. */
export function stopOnSignals(name: string, close: () => Promise<void>): void {
  const stop = (): void => {
    close().then(() => process.exit(0), (error: unknown) => {
      console.error(`${name}: error while stopping: ${String(error)}`);
      process.exit(1);
    });
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
