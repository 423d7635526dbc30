/**
 * `raftmq namesrv|broker|node --config <file>`: real processes started from JSON files (TLS
 * and the root option `tlsCa` included), flags on the command line winning over the file, and
 * the refusals that name the key and the file.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Admin } from '../../src/client/admin.js';
import { freePorts } from '../../src/cli/local-cluster.js';
import { writeDevCertificates, type CertificateFiles } from '../../src/cli/dev-certificates.js';
import { cliPath, waitFor } from '../support/process-cluster.js';

let dir = '';
const children: ChildProcess[] = [];

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'raftmq-config-'));
});

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await fs.rm(dir, { recursive: true, force: true });
});

async function writeConfig(name: string, config: unknown): Promise<string> {
  const file = path.join(dir, name);
  await fs.writeFile(file, typeof config === 'string' ? config : JSON.stringify(config, null, 2));
  return file;
}

/** Runs a CLI that is expected to stop at once (a refused config) and returns how it ended. */
function runToExit(...args: string[]): { status: number | null; stderr: string } {
  const run = spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8', timeout: 20_000 });
  return { status: run.status, stderr: run.stderr };
}

function startServer(args: readonly string[]): ChildProcess {
  const child = spawn(process.execPath, [cliPath, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  child.on('exit', (code) => { if (code !== null && code !== 0) console.error(`${args.join(' ')} exited ${code}: ${stderr}`); });
  children.push(child);
  return child;
}

describe('raftmq --config', () => {
  it('starts a TLS NameServer and broker from config files, the command line winning over the file', async () => {
    const [namesrvPort, brokerPort] = await freePorts(2) as [number, number];
    const namesrv = `127.0.0.1:${namesrvPort}`;
    const certificates: CertificateFiles = await writeDevCertificates(path.join(dir, 'tls'), 'cfg', ['n1'], ['namesrv', 'client']);
    const namesrvConfig = await writeConfig('namesrv.json', {
      listen: namesrv, accessPoint: 'none', expiryMs: 3000, logLevel: 'warn',
      tlsCa: certificates.caFile, tlsCert: certificates.certFile('namesrv'), tlsKey: certificates.keyFile('namesrv'),
    });
    const brokerConfig = await writeConfig('broker.json', {
      group: 'cfg', id: 'n1', members: [`n1=127.0.0.1:${brokerPort}`], data: path.join(dir, 'n1'),
      // Nothing listens here: the broker registers only if --namesrv on the command line wins.
      namesrv: ['127.0.0.1:1'], registerIntervalMs: 500, autoCreateTopics: true, peerLane: false, logLevel: 'warn',
      tlsCa: certificates.caFile, tlsCert: certificates.certFile('n1'), tlsKey: certificates.keyFile('n1'),
    });
    startServer(['namesrv', '--config', namesrvConfig]);
    startServer(['broker', '--config', brokerConfig, '--namesrv', namesrv]);
    const admin = new Admin({ nameServers: [namesrv], tls: { caFile: certificates.caFile } });
    try {
      await waitFor('the broker from broker.json to lead and register over TLS', async () => {
        const nodes = await admin.cluster().catch(() => []);
        return nodes.some((node) => node.group === 'cfg' && node.nodeId === 'n1' && node.isLeader);
      }, 30_000);
      const node = (await admin.cluster()).find((n) => n.nodeId === 'n1');
      expect(node?.address).toBe(`127.0.0.1:${brokerPort}`);
    } finally {
      admin.close();
    }
  });

  it.each([
    ['an unknown key', { group: 'g', tickMz: 3 }, /broker\.json: unknown key "tickMz" for raftmq broker \(known: .*tickMs/],
    ['a string for a boolean', { peerLane: 'no' }, /broker\.json: "peerLane" must be true or false, not string "no"/],
    ['a boolean for a value', { tickMs: true }, /broker\.json: "tickMs" must be a string or a number, not boolean true/],
    ['a value its flag refuses', { tickMs: 0 }, /broker\.json: "tickMs": --tick-ms must be a whole number ≥ 1/],
    ['a choice not offered', { flush: 'fast' }, /broker\.json: "flush" must be one of sync, async, not "fast"/],
    ['a list of numbers', { members: [1, 2] }, /broker\.json: "members" must be a string or an array of strings, not an array/],
    ['not an object', '[1, 2]', /broker\.json: the config must be a JSON object/],
    ['not JSON', 'group: g', /broker\.json is not valid JSON/],
  ])('refuses %s, naming the key and the file', async (_what, config, expected) => {
    const file = await writeConfig('broker.json', config);
    const result = runToExit('broker', '--config', file);
    expect(result.stderr).toMatch(expected);
    expect(result.status).toBe(1);
  });

  it('refuses a missing file and unknown keys for namesrv and node too', async () => {
    expect(runToExit('namesrv', '--config', path.join(dir, 'absent.json')).stderr).toMatch(/cannot read config file .*absent\.json: ENOENT/);
    const file = await writeConfig('namesrv.json', { listen: '127.0.0.1:0', autoCreateTopics: true });
    expect(runToExit('namesrv', '--config', file).stderr).toMatch(/namesrv\.json: unknown key "autoCreateTopics" for raftmq namesrv/);
    expect(runToExit('node', '--config', file).stderr).toMatch(/namesrv\.json: unknown key "listen" for raftmq node/);
  });

  it('counts required options given only in the file', async () => {
    // No --group/--id/--members/--data on the command line: only the bad tickMs stops it, not "required option".
    const file = await writeConfig('node.json', { group: 'g', id: 'n1', members: 'n1=127.0.0.1:1', data: path.join(dir, 'node'), electionTicks: 1 });
    const result = runToExit('node', '--config', file);
    expect(result.stderr).toMatch(/node\.json: "electionTicks": --election-ticks must be a whole number ≥ 2/);
  });
});
