/** The CLI refuses bad topic and group names before connecting, saying what is wrong, not "no broker group hosts topic". */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { cliPath } from '../support/process-cluster.js';

// Nothing listens on port 1: an answer about the name proves it came before any connection.
const cli = (...args: string[]) => spawnSync(process.execPath, [cliPath, ...args, '--namesrv', '127.0.0.1:1'], { encoding: 'utf8', timeout: 20_000 });

describe('raftmq name checks', () => {
  it.each([
    [['produce', '--topic', 'bad topic!'], /topic name "bad topic!" is invalid: it contains " " \(white space\), which a name may not contain/],
    [['consume', '--topic', 'ok', '--group', 'g!'], /consumer group name "g!" is invalid: it contains "!"/],
    [['topic', 'create', 'a.b'], /topic name "a\.b" is invalid: it contains "\."/],
    [['group', 'create', 'x'.repeat(121)], /it is 121 characters long, over 120/],
  ])('raftmq %j', (args, expected) => {
    const run = cli(...args);
    expect(run.stderr).toMatch(expected);
    expect(run.stderr).not.toMatch(/no broker group|UNAVAILABLE|ECONNREFUSED/);
    expect(run.status).toBe(1);
  });
});
