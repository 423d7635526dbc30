import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { cliPath } from '../support/process-cluster.js';

describe('raftmq --version', () => {
  it('prints the version in package.json', () => {
    const { version } = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) {
      const run = spawnSync(process.execPath, [cliPath, flag], { encoding: 'utf8' });
      expect(run.stdout.trim()).toBe(version);
      expect(run.status).toBe(0);
    }
  });
});
