/**
 * The package as an application installs it: a temp project whose node_modules/raftmq is this
 * checkout (what `npm install` of a path or tarball gives), resolved by Node and by tsc
 * through package.json's `exports` map, not through our source paths.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const packageRoot = path.resolve('.');
const tscPath = path.join(packageRoot, 'node_modules', 'typescript', 'bin', 'tsc');
let project = '';

beforeAll(async () => {
  if (!existsSync(path.join(packageRoot, 'dist', 'src', 'index.d.ts'))) throw new Error('dist/src/index.d.ts is missing: run npm run build first (npm test does)');
  project = await fs.mkdtemp(path.join(os.tmpdir(), 'raftmq-package-'));
  await fs.mkdir(path.join(project, 'node_modules'));
  await fs.symlink(packageRoot, path.join(project, 'node_modules', 'raftmq'), 'dir');
  await fs.writeFile(path.join(project, 'package.json'), JSON.stringify({ name: 'app', type: 'module', private: true }));
});

afterAll(async () => {
  if (project !== '') await fs.rm(project, { recursive: true, force: true });
});

/** Runs an ES module in the temp project and returns what it printed. */
async function runModule(source: string): Promise<string> {
  const file = path.join(project, `check-${Math.random().toString(36).slice(2)}.mjs`);
  await fs.writeFile(file, source);
  return execFileSync(process.execPath, [file], { cwd: project, encoding: 'utf8' }).trim();
}

/** Type-checks one TypeScript file in the temp project as an application would (NodeNext). */
async function typeCheck(source: string): Promise<{ status: number | null; output: string }> {
  await fs.writeFile(path.join(project, 'app.ts'), source);
  await fs.writeFile(path.join(project, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', strict: true, noEmit: true, skipLibCheck: true,
      types: ['node'], typeRoots: [path.join(packageRoot, 'node_modules', '@types')],
    },
    files: ['app.ts'],
  }));
  const run = spawnSync(process.execPath, [tscPath, '-p', project], { cwd: project, encoding: 'utf8' });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

describe("import ... from 'raftmq'", () => {
  it('resolves the client API by package name at run time', async () => {
    const printed = await runModule(`
      import * as raftmq from 'raftmq';
      const names = ['Producer', 'SimpleConsumer', 'PushConsumer', 'PullConsumer', 'Admin', 'MQClientError', 'RaftNodeClient', 'RaftClientError', 'Transaction'];
      const error = new raftmq.MQClientError('BAD_REQUEST', 'x', true);
      console.log(JSON.stringify({ missing: names.filter((n) => typeof raftmq[n] !== 'function'), isError: error instanceof Error, delayLevels: raftmq.delayLevels.length }));
    `);
    expect(JSON.parse(printed)).toEqual({ missing: [], isError: true, delayLevels: 18 });
  });

  it('keeps the README\'s older deep imports working, the same classes', async () => {
    const printed = await runModule(`
      import { Producer } from 'raftmq';
      import { Producer as DeepProducer } from 'raftmq/dist/src/client/producer.js';
      console.log(String(Producer === DeepProducer));
    `);
    expect(printed).toBe('true');
  });

  it('is typed: right uses compile, wrong ones are type errors', async () => {
    const good = await typeCheck(`
      import { Producer, MQClientError, type ProducerOptions, type SendReceipt } from 'raftmq';
      const options: ProducerOptions = { nameServers: ['127.0.0.1:9876'] };
      export async function send(): Promise<string> {
        try {
          const receipt: SendReceipt = await new Producer(options).send({ topic: 'demo', body: 'hello' });
          return receipt.messageId;
        } catch (error) {
          return error instanceof MQClientError ? error.code : 'other';
        }
      }
    `);
    expect(good.output).toBe('');
    expect(good.status).toBe(0);
    const bad = await typeCheck(`
      import { Producer } from 'raftmq';
      new Producer({ nameServers: 9876 });
    `);
    expect(bad.status).not.toBe(0);
    expect(bad.output).toMatch(/app\.ts.*nameServers|TS2322/s);
  });
});
