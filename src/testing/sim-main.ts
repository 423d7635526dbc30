/**
 * `npm run sim` — runs seeded cluster simulations.
 *   SIM_SEED=<n> npm run sim                 replay one seed, print its trace tail and stats
 *   npm run sim -- --seeds 500 [--from 1]    run many seeds (3- and 5-node alternately)
 *   npm run sim -- --unsafe commit-older-terms|vote-without-log-check|ack-before-fsync|ack-before-quorum
 *   npm run sim -- --scenario figure-8 --seeds 20     a directed scenario over many seeds
 *   SIM_SEED=<n> SIM_PROFILE='<json>' npm run sim    replay with a fault profile (as fast-check prints)
 */
import { Command } from 'commander';
import { runSimulation, type FaultProfile, type SimOptions, type SimResult } from './sim-cluster.js';
import { scenarios } from './scenarios.js';

type UnsafeName = 'ack-before-fsync' | 'ack-before-quorum' | 'commit-older-terms' | 'vote-without-log-check';

export function unsafeSwitch(name: UnsafeName | undefined): SimOptions['unsafe'] {
  switch (name) {
    case undefined: return undefined;
    case 'ack-before-fsync': return { ackBeforeFsync: true };
    case 'ack-before-quorum': return { commitWithoutQuorum: true };
    case 'commit-older-terms': return { commitOlderTerms: true };
    case 'vote-without-log-check': return { voteWithoutLogCheck: true };
  }
}

/** Seed `n` runs 3 nodes when odd and 5 nodes when even, unless `nodes` is given. */
export function nodesForSeed(seed: number, nodes: number | undefined): number {
  return nodes ?? (seed % 2 === 1 ? 3 : 5);
}

function printFailure(result: SimResult): void {
  console.log(`seed ${result.seed} (${result.nodeCount} nodes) FAILED — replay: SIM_SEED=${result.seed} npm run sim${result.nodeCount === 5 ? ' -- --nodes 5' : ''}`);
  for (const violation of result.violations) console.log(`  ${violation}`);
}

async function main(): Promise<void> {
  const program = new Command()
    .option('--seeds <n>', 'how many seeds to run', (v) => Number.parseInt(v, 10), 200)
    .option('--from <n>', 'first seed', (v) => Number.parseInt(v, 10), 1)
    .option('--nodes <n>', '3 or 5 (default: alternate by seed)', (v) => Number.parseInt(v, 10))
    .option('--unsafe <switch>', 'run with a negative-control switch')
    .option('--scenario <name>', `a directed scenario: ${Object.keys(scenarios).join(', ')}`)
    .option('--fault-ms <ms>', 'length of the fault phase in simulated ms', (v) => Number.parseInt(v, 10), 15_000)
    .parse();
  const options = program.opts<{ seeds: number; from: number; nodes?: number; unsafe?: UnsafeName; faultMs: number; scenario?: string }>();
  const unsafe = unsafeSwitch(options.unsafe);
  const scenario = options.scenario === undefined ? undefined : scenarios[options.scenario];
  if (options.scenario !== undefined && scenario === undefined) throw new Error(`unknown scenario ${options.scenario}; known: ${Object.keys(scenarios).join(', ')}`);
  const profileOverride = process.env.SIM_PROFILE === undefined ? undefined : (JSON.parse(process.env.SIM_PROFILE) as Partial<FaultProfile>);
  const base = (seed: number): SimOptions => ({
    seed,
    nodeCount: scenario?.nodeCount ?? nodesForSeed(seed, options.nodes),
    faultDurationMs: options.faultMs,
    ...(unsafe === undefined ? {} : { unsafe }),
    ...(scenario === undefined ? {} : { script: scenario.script }),
    ...(scenario === undefined && profileOverride === undefined ? {} : { profile: { ...scenario?.profile, ...profileOverride } }),
  });
  const replay = process.env.SIM_SEED;
  if (replay !== undefined) {
    const seed = Number.parseInt(replay, 10);
    const result = await runSimulation({ ...base(seed), keepTrace: true });
    console.log(result.traceTail.join('\n'));
    console.log(JSON.stringify({ seed, ok: result.ok, traceHash: result.traceHash, scenarioStuck: result.scenarioStuck, violations: result.violations, stats: result.stats, profile: result.profile }, null, 2));
    if (!result.ok) printFailure(result);
    process.exitCode = result.ok ? 0 : 1;
    return;
  }
  const started = Date.now();
  let failed = 0;
  let acked = 0;
  let events = 0;
  let installs = 0;
  for (let seed = options.from; seed < options.from + options.seeds; seed++) {
    const result = await runSimulation(base(seed));
    if (result.scenarioStuck !== undefined) console.log(`seed ${seed}: scenario did not set up: ${result.scenarioStuck}`);
    acked += result.stats.acked;
    events += result.stats.events;
    installs += result.stats.snapshotsInstalled;
    if (!result.ok) {
      failed++;
      printFailure(result);
    }
  }
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`sim: ${options.seeds} seeds from ${options.from}${options.unsafe ? ` unsafe=${options.unsafe}` : ''}: ${options.seeds - failed} passed, ${failed} failed; ${acked} acked proposals, ${installs} snapshots installed, ${events} events, ${seconds} s`);
  process.exitCode = failed === 0 ? 0 : 1;
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
