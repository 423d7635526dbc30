#!/usr/bin/env node
/**
 * `npm run jepsen -- --nemesis partition-leader,power-loss --time 60 --nodes 3`   one test
 * `npm run jepsen -- --secure ...`   the same with TLS on every port and authentication + ACL on (security.ts)
 * `npm run jepsen:smoke`     tier T2: 10 configurations (≤ 60 s of faults each), then the negative controls
 * `npm run jepsen:nightly`   tier T3: the full matrix (18 configurations), 300 s each, with a summary table, then the
 *                            hostile-input test at a larger scale with a few seeds (`--no-hostile` skips it)
 * Output goes to jepsen-tests/results/<run>/ (history.jsonl, results.json, report.html, logs).
 * Exits non-zero unless every safe run passes and every negative control is caught.
 */
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { writeFile, mkdir } from 'node:fs/promises';
import { Command, InvalidArgumentError, Option } from 'commander';
import { integer } from '../src/cli/node-options.js';
import { faultKinds, type NemesisName } from './nemesis.js';
import { runTest, type DelayConfig, type RetentionConfig, type RunConfig, type RunResult, type TransactionConfig } from './run.js';
import type { UnsafeSwitch } from './cluster.js';

const defaultOut = path.resolve('jepsen-tests/results');

function nemesisList(value: string): NemesisName[] {
  const names = value.split(',').map((n) => n.trim()).filter((n) => n !== '');
  const known: readonly string[] = [...faultKinds, 'mixed'];
  for (const name of names) if (!known.includes(name)) throw new InvalidArgumentError(`unknown nemesis ${JSON.stringify(name)}; choose from ${known.join(', ')}`);
  if (names.length === 0) throw new InvalidArgumentError('name at least one nemesis');
  return names as NemesisName[];
}

/**
 * Tiny retention, so that retention cuts, snapshots, log compaction and InstallSnapshot all
 * happen within a run, under partitions, kills and power cuts: 16 KiB segments, a snapshot
 * every 100 entries, the log held to 64 KiB by the retention service every 500 ms (the
 * defaults: 64 MiB, 20,000 entries, no size limit, 10 s). The harness writes about 35 entries
 * (15–25 KB) a second, so the log keeps the last few seconds: a follower away for longer (a
 * kill, a power cut, the isolated old leader) comes back behind the leader's first index and
 * needs InstallSnapshot. (With 64 KiB segments and 512 KiB the log would hold most of a
 * minute: no fault lasts that long.) A run that installed no snapshot, or where some node
 * never compacted, is invalid.
 */
export const tinyRetention: RetentionConfig = {
  brokerArgs: ['--segment-bytes', '16384', '--snapshot-entries', '100', '--retention-bytes', '65536', '--retention-interval-ms', '500'],
  snapshotsInstalledMin: 1,
  compactedNodesMin: 3,
};

/**
 * The delayed-message workload (DelayWorkload, checkDelayed): 2 sequential producers at 10
 * sends a second (at most 3,000 each), each value due 1–8 s after its send, on a DELAY topic
 * of its own, beside the queue workload. Early beyond 50 ms is a failure (one host, one clock:
 * the tolerance only absorbs a clock step, see DelayCheckOptions.toleranceMs); so is an
 * acknowledged value not received within 15 s of max(due, the heal of the faults begun by
 * then): a smoke fault lasts at most 6 s, restarting a node takes a few.
 */
export const delayWorkload: DelayConfig = { producers: 2, ratePerProducer: 10, delayMs: [1_000, 8_000], sendsMax: 3_000, toleranceMs: 50, latenessBoundMs: 15_000 };

/**
 * The transactional-message workload (TransactionWorkload, checkTransactions): 3 sequential
 * senders at 5 transactions a second (at most 3,000 each) on a TRANSACTION topic of its own,
 * beside the queue workload, and 2 producers that only answer check-backs. Fates, drawn per
 * value: 35 % committed by the sender, 20 % rolled back by it, 20 % abandoned and committed by
 * a check-back, 10 % abandoned and rolled back by one, 15 % never answered (the broker must
 * roll them back after the last check). Short check-backs, so all of it happens within a run:
 * the first 2 s after the half, then every 2 s, rolled back after 10 unanswered checks (22 s):
 * a smoke fault lasts at most 6 s, so even checks lost while the node holding the checkers'
 * streams is cut off leave a commit-decided transaction many checks to go. A
 * commit-decided value must be delivered within 20 s of max(due, the heal of the faults
 * begun by then).
 */
export const transactionWorkload: TransactionConfig = {
  producers: 3, checkers: 2, ratePerProducer: 5, sendsMax: 3_000,
  fateWeights: { 'commit': 35, 'rollback': 20, 'abandon-commit': 20, 'abandon-rollback': 10, 'unanswered': 15 },
  endHoldMs: [0, 300], checkAfterMs: 2_000, checkIntervalMs: 2_000, checksMax: 10, latenessBoundMs: 20_000, settleMs: 20_000,
};

/** Tier T2 (FAULTS §6.4): short calm, faults every few seconds. */
function smokeConfig(name: string, nemesis: NemesisName[], overrides: Partial<RunConfig> = {}): RunConfig {
  return {
    name, nodes: 3, nemesis, timeS: 60, calmStartS: 5, calmMs: [1_000, 3_000], faultMs: [2_000, 6_000], recoveryS: 5, drainS: 60,
    producers: 6, ratePerProducer: 40, seed: Date.now() % 1_000_000, outDir: defaultOut, faultEventsMin: 5, ...overrides,
  };
}

/** Tier T3: 300 s of faults, nemesis interval 2–15 s, ≥ 20 fault events. */
function nightlyConfig(name: string, nemesis: NemesisName[], nodes = 3): RunConfig {
  return smokeConfig(name, nemesis, { nodes, timeS: 300, calmStartS: 10, calmMs: [1_500, 5_000], faultMs: [2_000, 10_000], recoveryS: 10, drainS: 120, faultEventsMin: 20, producers: 2 * nodes, ratePerProducer: nodes === 5 ? 30 : 45 });
}

/**
 * Regression, named after what it was: an isolated old leader kept its clients' sends pending
 * until the partition healed (the proposals waited for the log to say whether they committed,
 * and one attempt could use the whole send budget), so a healthy majority took no writes.
 */
const isolatedLeaderHeldSends = (): RunConfig => smokeConfig('regression-isolated-leader-held-sends', ['partition-leader'], {
  timeS: 30, faultMs: [4_000, 6_000], failoverBoundMs: 3_000, faultEventsMin: 3,
});

/**
 * Regression: after the whole group lost power for longer than the NameServer's expiry, a
 * broadcasting consumer dropped its queues with their local offsets and read every queue again
 * from offset 0 (a nonmonotonic poll).
 */
const broadcastReaderRewoundAfterOutage = (): RunConfig => smokeConfig('regression-broadcast-reader-rewound-after-outage', ['outage'], {
  timeS: 25, faultMs: [4_500, 5_500], calmMs: [3_000, 4_000], faultEventsMin: 2,
});

export const smokeMatrix = (): RunConfig[] => [
  isolatedLeaderHeldSends(),
  broadcastReaderRewoundAfterOutage(),
  smokeConfig('leader-isolation+kill', ['partition-leader', 'kill', 'power-loss']),
  smokeConfig('pause', ['pause']),
  smokeConfig('halves+power-loss', ['partition-halves', 'power-loss']),
  smokeConfig('pause-kill+part-kill', ['pause-kill', 'part-kill']),
  smokeConfig('tiny-retention', ['partition-leader', 'kill', 'power-loss'], { retention: tinyRetention }),
  smokeConfig('delay', ['kill', 'partition-leader'], { delay: delayWorkload }),
  smokeConfig('transactions', ['kill', 'partition-leader'], { transactions: transactionWorkload }),
  // `raftmq dev --tls --acl`'s cluster: TLS on every port, every client a normal user with only its grants (security.ts).
  smokeConfig('secure', ['kill', 'partition-leader'], { secure: true }),
];

export const nightlyMatrix = (): RunConfig[] => [
  nightlyConfig('partition-leader', ['partition-leader']),
  nightlyConfig('partition-halves', ['partition-halves']),
  nightlyConfig('partition-one-way', ['partition-one-way']),
  nightlyConfig('flapping', ['flapping']),
  nightlyConfig('kill', ['kill']),
  nightlyConfig('power-loss', ['power-loss']),
  nightlyConfig('pause', ['pause']),
  nightlyConfig('corrupt', ['corrupt']),
  nightlyConfig('pause-kill+part-kill', ['pause-kill', 'part-kill']),
  nightlyConfig('mixed', ['mixed']),
  nightlyConfig('5n-ring+bridge', ['partition-ring', 'partition-bridge'], 5),
  nightlyConfig('5n-one-way+halves', ['partition-one-way', 'partition-halves'], 5),
  nightlyConfig('5n-mixed', ['mixed'], 5),
  { ...nightlyConfig('tiny-retention', ['partition-leader', 'kill', 'power-loss']), retention: tinyRetention },
  // Fault periods last up to 10 s here and may take the whole group down (then restarts): a 25 s bound.
  { ...nightlyConfig('delay-mixed', ['mixed']), delay: { ...delayWorkload, sendsMax: 10_000, latenessBoundMs: 25_000 } },
  // Fault periods last up to 10 s and may take the whole group down: 15 checks (32 s before an unanswered one is rolled back), a 30 s bound.
  { ...nightlyConfig('transactions-mixed', ['mixed']), transactions: { ...transactionWorkload, sendsMax: 10_000, checksMax: 15, latenessBoundMs: 30_000 } },
  // TLS and ACL under every fault kind; then with the delay and transaction workloads' clients (their consumer groups, check-backs, the settle phase's queries) signing too.
  { ...nightlyConfig('secure-mixed', ['mixed']), secure: true },
  {
    ...nightlyConfig('secure-delay+transactions', ['partition-leader', 'kill', 'power-loss']), secure: true,
    delay: { ...delayWorkload, sendsMax: 10_000 }, transactions: { ...transactionWorkload, sendsMax: 10_000 },
  },
];

/**
 * Nightly: test/integration/hostile-input.test.ts (hostile input on every port of a real
 * cluster, in vitest) with HOSTILE_SCALE `scale` (that many times the random requests per
 * method; 1 in `npm test`) and `seeds` seeds drawn from the nightly's seed, one after another,
 * each killed (its whole process group: vitest, its worker, the cluster) after `timeoutMs`.
 * The test bounds itself (a 75 s workload, a 150 s test timeout): on 2 cores scale 1 attacks
 * for ~21 s, scale 10 for ~31 s (a run ~50 s, seeds 100-102 on 2026-12-06), well inside both. Each run's output and the servers' logs (HOSTILE_OUTPUT)
 * go to jepsen-tests/results/hostile-<seed>.log and -servers.log; a failure names its seed,
 * and `HOSTILE_SEED=<seed> HOSTILE_SCALE=10 npx vitest run test/integration/hostile-input.test.ts`
 * reproduces it.
 */
export const hostileNightly = { scale: 10, seeds: 3, timeoutMs: 240_000 } as const;

interface HostileOutcome { readonly seed: number; readonly passed: boolean; readonly durationS: number; readonly detail: string }

async function hostileRun(seed: number, outDir: string): Promise<HostileOutcome> {
  const started = Date.now();
  const logFile = path.join(outDir, `hostile-${seed}.log`);
  const out = createWriteStream(logFile);
  const child = spawn(process.execPath, [path.resolve('node_modules/vitest/vitest.mjs'), 'run', 'test/integration/hostile-input.test.ts'], {
    env: { ...process.env, HOSTILE_SEED: String(seed), HOSTILE_SCALE: String(hostileNightly.scale), HOSTILE_OUTPUT: path.join(outDir, `hostile-${seed}-servers.log`) },
    stdio: ['ignore', 'pipe', 'pipe'], detached: true,
  });
  child.stdout.pipe(out);
  child.stderr.pipe(out);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL'); // the group this spawn made: vitest, its fork, the brokers
  }, hostileNightly.timeoutMs);
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  clearTimeout(timer);
  out.end();
  const durationS = (Date.now() - started) / 1_000;
  const passed = code === 0 && !timedOut;
  return { seed, passed, durationS, detail: timedOut ? `killed after ${hostileNightly.timeoutMs / 1_000} s` : `exit ${code}; ${logFile}` };
}

async function hostileStage(seed: number): Promise<{ text: string; failures: string[] }> {
  await mkdir(defaultOut, { recursive: true });
  const outcomes: HostileOutcome[] = [];
  for (let k = 0; k < hostileNightly.seeds; k++) {
    const outcome = await hostileRun(seed + k, defaultOut);
    console.log(`jepsen hostile-input seed ${outcome.seed} scale ${hostileNightly.scale}: ${outcome.passed ? 'PASS' : 'FAIL'} in ${outcome.durationS.toFixed(0)} s (${outcome.detail})`);
    outcomes.push(outcome);
  }
  const text = `\n## hostile input (HOSTILE_SCALE ${hostileNightly.scale})\n\n| seed | verdict | seconds | detail |\n|---|---|---|---|\n${outcomes.map((o) => `| ${o.seed} | ${o.passed ? 'pass' : 'FAIL'} | ${o.durationS.toFixed(0)} | ${o.detail} |`).join('\n')}\n`;
  return { text, failures: outcomes.filter((o) => !o.passed).map((o) => `hostile input seed ${o.seed} (HOSTILE_SCALE ${hostileNightly.scale}): ${o.detail}`) };
}

interface Control {
  readonly unsafe: UnsafeSwitch;
  /** Under tiny retention: the lost values must be reported lost, not released (lost-write alone does not count). */
  readonly retention: boolean;
}

const negativeControls: readonly Control[] = [
  { unsafe: 'ack-before-quorum', retention: false },
  { unsafe: 'ack-before-fsync', retention: false },
  { unsafe: 'ack-before-quorum', retention: true },
];

const controlLabel = (control: Control): string => `${control.unsafe}${control.retention ? ' under tiny retention' : ''}`;

/** A negative control must make the harness report lost messages within `runsMax` runs. */
async function negativeControl(control: Control, runsMax: number, seed: number): Promise<{ caughtInRun: number | undefined; results: RunResult[] }> {
  const { unsafe } = control;
  const results: RunResult[] = [];
  for (let run = 1; run <= runsMax; run++) {
    const result = await runTest(smokeConfig(`control-${unsafe}${control.retention ? '-tiny-retention' : ''}-${run}`, unsafe === 'ack-before-fsync' ? ['power-loss'] : ['partition-leader'], {
      unsafe, timeS: 40, seed: seed + run, faultEventsMin: 1, calmMs: [500, 1_500], faultMs: [2_000, 4_000],
      // Only the loss matters here: no minimum of installs or compactions.
      ...(control.retention ? { retention: { ...tinyRetention, snapshotsInstalledMin: 0, compactedNodesMin: 0 } } : {}),
    }));
    results.push(result);
    if (result.check.lost > 0 || (!control.retention && result.check.lostWrite > 0)) return { caughtInRun: run, results };
  }
  return { caughtInRun: undefined, results };
}

function delayCell(r: RunResult): string {
  const d = r.check.delay;
  if (d === null) return '—';
  const l = d.lateness;
  return `${d.acked} / ${d.early} / ${d.lost} / ${d.late}, ${l === null ? '—' : `${l.p50Ms.toFixed(0)} / ${l.p99Ms.toFixed(0)} / ${l.maxMs.toFixed(0)}`}`;
}

function transactionCell(r: RunResult): string {
  const t = r.check.transactions;
  if (t === null || t === undefined) return '—';
  const l = t.checkBackDelivery;
  return `${t.acked} / ${t.committed} / ${t.rolledBack} / ${t.abandonedCommitted} / ${t.unansweredRolledBack} / ${t.lost} / ${t.rolledBackDelivered}, ${l === null ? '—' : `${l.p50Ms.toFixed(0)} / ${l.maxMs.toFixed(0)}`}`;
}

function summaryTable(results: readonly RunResult[]): string {
  const header = '| config | nodes | verdict | acked | unknown | faults | leader changes | lost | released | duplicated | divergence | snapshots installed | compacted nodes | max recovery (ms) | delayed: acked / early / lost / late, lateness p50 / p99 / max (ms) | transactions: halves acked / committed / rolled back / abandoned→committed / rolled back after last check / lost / rolled-back delivered, abandoned→delivered p50 / max (ms) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|';
  const rows = results.map((r) => {
    const installs = Object.values(r.retentionEffects.snapshotsInstalled).reduce((a, b) => a + b, 0);
    return `| ${r.name} | ${r.config.nodes} | ${r.check.verdict} | ${r.check.acked} | ${r.check.indeterminate} | ${r.check.effects.faultEvents} | ${r.check.effects.leaderChanges} | ${r.check.lost}${r.check.lostBelowFirstOffset > 0 ? ` (${r.check.lostBelowFirstOffset} below a first offset)` : ''} | ${r.check.released} | ${r.check.duplicated.length} | ${r.check.divergence} | ${installs} | ${r.audit?.compactedNodes ?? '—'} | ${r.check.maxRecoveryMs === null ? '—' : r.check.maxRecoveryMs.toFixed(0)} | ${delayCell(r)} | ${transactionCell(r)} |`;
  });
  return [header, ...rows].join('\n');
}

async function runMatrix(label: string, configs: readonly RunConfig[], controls: boolean, after?: () => Promise<{ text: string; failures: string[] }>): Promise<number> {
  const results: RunResult[] = [];
  for (const config of configs) results.push(await runTest(config));
  const table = summaryTable(results);
  let failures = results.filter((r) => r.check.verdict !== 'pass').map((r) => `${r.name}: ${r.check.verdict} (${r.check.reasons.join('; ')})`);
  let controlText = '';
  if (controls) {
    const seed = Date.now() % 1_000_000;
    for (const control of negativeControls) {
      const outcome = await negativeControl(control, 3, seed);
      const last = outcome.results[outcome.results.length - 1];
      controlText += `- negative control ${controlLabel(control)}: ${outcome.caughtInRun === undefined ? 'NOT caught in 3 runs' : `caught in run ${outcome.caughtInRun} (lost ${last?.check.lost}, lost-write ${last?.check.lostWrite}, released ${last?.check.released}, divergence ${last?.check.divergence}, committed-log conflicts ${last?.check.committedLogConflicts})`}\n`;
      if (outcome.caughtInRun === undefined) failures = [...failures, `negative control ${controlLabel(control)} was not caught within 3 runs: the harness is broken`];
    }
  }
  const extra = await after?.();
  if (extra !== undefined) failures = [...failures, ...extra.failures];
  const summary = `# jepsen ${label}\n\n${table}\n\n${controlText}${extra?.text ?? ''}`;
  await mkdir(defaultOut, { recursive: true });
  await writeFile(path.join(defaultOut, `${label}-summary.md`), summary);
  console.log(`\n${summary}`);
  if (failures.length > 0) {
    console.log(`jepsen ${label}: FAILED\n  ${failures.join('\n  ')}`);
    return 1;
  }
  console.log(`jepsen ${label}: every run passed${controls ? ' and every negative control was caught' : ''}`);
  return 0;
}

async function main(): Promise<void> {
  const program = new Command().name('jepsen').description('fault-injection tests of a real RaftMQ cluster');
  program.command('run').description('one test')
    .option('--nemesis <list>', `faults, comma separated: ${[...faultKinds, 'mixed'].join(', ')}`, nemesisList, ['mixed'] as NemesisName[])
    .option('--time <s>', 'seconds of faults', integer('--time', 1), 60)
    .addOption(new Option('--nodes <n>', 'broker group size').choices(['3', '5']).default('3'))
    .option('--rate <n>', 'sends per second per producer', integer('--rate', 1), 40)
    .option('--seed <n>', 'nemesis seed', integer('--seed', 1))
    .addOption(new Option('--unsafe <switch>', 'negative control: run an unsafe build on purpose').choices(['ack-before-fsync', 'ack-before-quorum']))
    .option('--out <dir>', 'results directory', defaultOut)
    .option('--tiny-retention', 'brokers with tiny segments, snapshots and retention (compaction and InstallSnapshot during the run)', false)
    .option('--delay', 'also run the delayed-message workload and its checks (DELAY topic, values due 1-8 s after the send)', false)
    .option('--transactions', 'also run the transactional-message workload and its checks (TRANSACTION topic; commits, rollbacks, check-backs)', false)
    .option('--secure', 'TLS on every port (certificates for the namespace addresses), authentication and ACL on; clients sign as a normal user holding only the grants the workload needs', false)
    .option('--failover-bound-ms <ms>', 'fail unless the majority acknowledges a write this soon after each fault aimed at the leader', integer('--failover-bound-ms', 1))
    .action(async (options: { nemesis: NemesisName[]; time: number; nodes: string; rate: number; seed?: number; unsafe?: UnsafeSwitch; out: string; failoverBoundMs?: number; tinyRetention: boolean; delay: boolean; transactions: boolean; secure: boolean }) => {
      const nodes = Number(options.nodes);
      const result = await runTest(smokeConfig(options.nemesis.join('+'), options.nemesis, {
        nodes, timeS: options.time, producers: 2 * nodes, ratePerProducer: options.rate, outDir: path.resolve(options.out), unsafe: options.unsafe,
        faultEventsMin: Math.max(1, Math.floor(options.time / 15)), failoverBoundMs: options.failoverBoundMs,
        ...(options.tinyRetention ? { retention: { ...tinyRetention, compactedNodesMin: nodes } } : {}), ...(options.seed === undefined ? {} : { seed: options.seed }),
        ...(options.delay ? { delay: delayWorkload } : {}), ...(options.transactions ? { transactions: transactionWorkload } : {}), secure: options.secure,
      }));
      process.exitCode = result.check.verdict === 'pass' || (options.unsafe !== undefined && result.check.lost > 0) ? 0 : 1;
    });
  program.command('smoke').description('tier T2: 10 configurations (≤ 60 s of faults each) and the negative controls (CI)')
    .option('--only <names>', 'run only these configurations (comma separated)')
    .option('--no-controls', 'skip the negative controls (to run one configuration locally; CI always runs them)')
    .action(async (options: { only?: string; controls: boolean }) => {
      const only = options.only?.split(',');
      process.exitCode = await runMatrix('smoke', smokeMatrix().filter((c) => only === undefined || only.includes(c.name)), options.controls);
    });
  program.command('nightly').description(`tier T3: the full matrix, 300 s each, then the hostile-input test (HOSTILE_SCALE ${hostileNightly.scale}, ${hostileNightly.seeds} seeds)`)
    .option('--only <names>', 'run only these configurations (comma separated)')
    .option('--no-controls', 'skip the negative controls')
    .option('--no-hostile', 'skip the hostile-input runs')
    .option('--hostile-seed <n>', 'the first hostile-input seed (default: drawn from the clock, printed)', integer('--hostile-seed', 0))
    .action(async (options: { only?: string; controls: boolean; hostile: boolean; hostileSeed?: number }) => {
      const only = options.only?.split(',');
      const seed = options.hostileSeed ?? Date.now() % 1_000_000;
      process.exitCode = await runMatrix('nightly', nightlyMatrix().filter((c) => only === undefined || only.includes(c.name)), options.controls, options.hostile ? () => hostileStage(seed) : undefined);
    });
  await program.parseAsync(process.argv);
}

main().catch((error: unknown) => {
  console.error(`jepsen: ${(error as Error).stack ?? String(error)}`);
  process.exit(2);
});
