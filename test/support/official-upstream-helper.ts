/**
 * What the official Node client's upstream integration tests expect around them
 * (apache/rocketmq-clients nodejs/test/helper.ts and nodejs/test/start-rocketmq.sh): one
 * endpoint, four topics of the four message types, one shared consumer group. Here that is a
 * real `raftmq dev` (NameServer + access point + 3-node broker group, topics not auto-created,
 * so a missing topic stays missing) in a temp directory on free ports, with the topics made
 * by `raftmq topic create` as the upstream script makes them with `mqadmin updatetopic`.
 * Authentication and ACL are on (`--acl`), as the upstream cases with sessionCredentials need:
 * the upstream user may do everything, and unsigned calls (the other cases) act as the user
 * `anonymous`, which may too.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { freePorts } from '../../src/cli/local-cluster.js';
import { cliPath, freeConsecutivePorts, waitFor } from './process-cluster.js';

const run = promisify(execFile);

/** The upstream topic names and the message type each is created with. */
export const upstreamTopics = {
  normal: 'TopicTestForNormal',
  fifo: 'TopicTestForFifo',
  delay: 'TopicTestForDelay',
  transaction: 'TopicTestForTransaction',
} as const;

/** The credentials the upstream cases start a client with (a user of the cluster). */
export const upstreamCredentials = { accessKey: 'raftmq-upstream-key', accessSecret: 'raftmq-upstream-secret' } as const;

/** The upstream default consumer group (ROCKETMQ_NODEJS_CLIENT_GROUP unset). */
export const upstreamConsumerGroup = 'nodejs-unittest-group';

// As the upstream script creates them (`message.type=…`).
const topicTypes: Record<keyof typeof upstreamTopics, string> = { normal: 'NORMAL', fifo: 'FIFO', delay: 'DELAY', transaction: 'TRANSACTION' };

export interface UpstreamDev {
  /** The access point: the official client's `endpoints`. */
  readonly endpoints: string;
  readonly namesrv: string;
  /** Everything `raftmq dev` (and its nodes) printed so far. */
  output(): string;
  /** Ctrl-C, as a developer stops it; resolves with the exit code (SIGKILL after 15 s). */
  stop(): Promise<number | null>;
}

/** Starts `raftmq dev --no-auto-create`, waits for its leader and creates the upstream topics. */
export async function startUpstreamDev(): Promise<UpstreamDev> {
  if (!existsSync(cliPath)) throw new Error(`${cliPath} is missing: run npm run build first (npm test does)`);
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'raftmq-upstream-'));
  const basePort = await freeConsecutivePorts(3);
  const [namesrvPort, accessPort] = await freePorts(2);
  const namesrv = `127.0.0.1:${namesrvPort}`;
  const endpoints = `127.0.0.1:${accessPort}`;
  const dev: ChildProcess = spawn(process.execPath, [
    cliPath, 'dev', '--no-auto-create', '--acl', '--anonymous-user', 'anonymous', '--data', dataDir, '--base-port', String(basePort), '--namesrv', namesrv, '--access-point', endpoints,
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  dev.stdout?.on('data', (chunk: Buffer) => { output += chunk.toString(); });
  dev.stderr?.on('data', (chunk: Buffer) => { output += chunk.toString(); });
  const exited = new Promise<number | null>((resolve) => dev.once('exit', (code) => resolve(code)));
  const stop = async (): Promise<number | null> => {
    if (dev.exitCode === null && dev.signalCode === null) dev.kill('SIGINT');
    const kill = setTimeout(() => dev.kill('SIGKILL'), 15_000);
    try {
      return await exited;
    } finally {
      clearTimeout(kill);
      await fs.rm(dataDir, { recursive: true, force: true });
    }
  };
  try {
    await waitFor('raftmq dev to report its leader', () => /leader \(term \d+\)/.test(output) || dev.exitCode !== null, 30_000);
    if (dev.exitCode !== null) throw new Error(`raftmq dev exited with ${dev.exitCode}:\n${output}`);
    // As the super user raftmq dev --acl made (its credentials file).
    const admin = (args: string[], env: Record<string, string> = {}): ReturnType<typeof run> => run(process.execPath,
      [cliPath, '--credentials', path.join(dataDir, 'auth', 'admin.json'), ...args, '--namesrv', namesrv], { timeout: 20_000, env: { ...process.env, ...env } });
    await Promise.all(Object.entries(upstreamTopics).map(([kind, topic]) => admin(['topic', 'create', topic, '--type', topicTypes[kind as keyof typeof upstreamTopics]])));
    await admin(['user', 'create', 'anonymous'], { RAFTMQ_USER_SECRET: `unguessable-${Math.random().toString(36).slice(2)}${Date.now()}` });
    await admin(['acl', 'grant', 'anonymous', '*', 'All']);
    await admin(['user', 'create', upstreamCredentials.accessKey], { RAFTMQ_USER_SECRET: upstreamCredentials.accessSecret });
    await admin(['acl', 'grant', upstreamCredentials.accessKey, '*', 'All']);
  } catch (error) {
    await stop();
    throw error;
  }
  return { endpoints, namesrv, output: () => output, stop };
}

/** `promise`, or a failure naming `what` once `ms` have passed (a stalled call must not eat the test's timeout silently). */
export async function within<T>(what: string, ms: number, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms); });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
