/**
 * The top functions of a V8 .cpuprofile (as `npm run bench -- --cpu-prof DIR` writes for each
 * RaftMQ server), by self time and by inclusive time (the time a function was anywhere on the
 * stack, counted once per sample however deep it recurses).
 *
 *   node dist/bench/profile-top.js FILE [--top 25] [--window START,LEN]
 *
 * --window keeps the samples taken from START to START+LEN seconds after the profile began
 * (the bench prints each phase's window). Percentages are of the sampled time in the window,
 * "(idle)" included, so they also say how busy the process was.
 */
import { readFile } from 'node:fs/promises';
import { Command, InvalidArgumentError } from 'commander';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
  readonly columnNumber: number;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}

/** The parts of Chrome DevTools' Profile object this uses; times are µs. */
interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

function isCpuProfile(value: unknown): value is CpuProfile {
  if (typeof value !== 'object' || value === null) return false;
  const p = value as Record<string, unknown>;
  return Array.isArray(p.nodes) && Array.isArray(p.samples) && Array.isArray(p.timeDeltas) && typeof p.startTime === 'number' && typeof p.endTime === 'number' && p.samples.length === p.timeDeltas.length;
}

/** One line per function: name and where it is (line and column 1-based, as editors count). */
function functionKey(frame: CallFrame): string {
  const name = frame.functionName === '' ? '(anonymous)' : frame.functionName;
  if (frame.url === '') return name;
  const file = frame.url.replace(/^file:\/\//, '').replace(/^.*\/node_modules\//, 'node_modules/').replace(/^.*\/dist\//, 'dist/');
  return `${name}  ${file}:${frame.lineNumber + 1}:${frame.columnNumber + 1}`;
}

interface Totals {
  readonly self: Map<string, number>;
  readonly inclusive: Map<string, number>;
  readonly sampledUs: number;
  readonly samples: number;
}

/**
 * Self and inclusive µs per function over the samples whose time falls in [fromUs, toUs)
 * (relative to the profile's start). A sample lasts until the next one (the last, until endTime).
 */
function summarize(profile: CpuProfile, fromUs: number, toUs: number): Totals {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const add = (map: Map<string, number>, key: string, us: number): void => { map.set(key, (map.get(key) ?? 0) + us); };
  let sampledUs = 0;
  let samples = 0;
  let at = profile.startTime;
  const times = profile.timeDeltas.map((delta) => (at += delta));
  for (let i = 0; i < profile.samples.length; i++) {
    const t = (times[i] as number) - profile.startTime;
    if (t < fromUs || t >= toUs) continue;
    const duration = Math.max(0, (i + 1 < times.length ? (times[i + 1] as number) : profile.endTime) - (times[i] as number));
    const leaf = byId.get(profile.samples[i] as number);
    if (leaf === undefined) continue;
    sampledUs += duration;
    samples++;
    add(self, functionKey(leaf.callFrame), duration);
    const onStack = new Set<string>();
    // Bounded by the node count: a malformed parent cycle cannot loop forever.
    for (let node: ProfileNode | undefined = leaf, depth = 0; node !== undefined && depth < profile.nodes.length; depth++) {
      const key = functionKey(node.callFrame);
      if (key !== '(root)') onStack.add(key);
      const up = parent.get(node.id);
      node = up === undefined ? undefined : byId.get(up);
    }
    for (const key of onStack) add(inclusive, key, duration);
  }
  return { self, inclusive, sampledUs, samples };
}

function printTop(title: string, totals: Map<string, number>, sampledUs: number, top: number): void {
  console.log(`\n${title}`);
  console.log(`${'ms'.padStart(10)} ${'%'.padStart(6)}  function`);
  for (const [key, us] of [...totals].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${(us / 1000).toFixed(1).padStart(10)} ${(sampledUs === 0 ? 0 : (100 * us) / sampledUs).toFixed(1).padStart(6)}  ${key}`);
  }
}

async function main(): Promise<void> {
  const program = new Command('profile-top')
    .argument('<file>', 'a .cpuprofile file')
    .option('--top <n>', 'functions per table', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`--top must be a positive integer, not '${v}'`);
      return n;
    }, 25)
    .option('--window <start,len>', 'only samples from START to START+LEN seconds after the profile began', (v) => {
      const parts = v.split(',').map((p) => Number(p.trim()));
      const [start, len] = parts;
      if (parts.length !== 2 || start === undefined || len === undefined || !Number.isFinite(start) || !Number.isFinite(len) || start < 0 || len <= 0) {
        throw new InvalidArgumentError(`--window must be START,LEN in seconds (START ≥ 0, LEN > 0), not '${v}'`);
      }
      return { start, len };
    })
    .allowExcessArguments(false);
  program.parse(process.argv);
  const file = program.args[0] as string;
  const options = program.opts<{ top: number; window?: { start: number; len: number } }>();
  const parsed: unknown = JSON.parse(await readFile(file, 'utf8'));
  if (!isCpuProfile(parsed)) throw new Error(`${file} is not a V8 CPU profile (nodes, samples, timeDeltas, startTime, endTime)`);
  const lengthS = (parsed.endTime - parsed.startTime) / 1e6;
  const fromUs = (options.window?.start ?? 0) * 1e6;
  const toUs = options.window === undefined ? Number.POSITIVE_INFINITY : fromUs + options.window.len * 1e6;
  if (options.window !== undefined && options.window.start >= lengthS) throw new Error(`--window starts at ${options.window.start} s, after the profile's end (${lengthS.toFixed(1)} s)`);
  const totals = summarize(parsed, fromUs, toUs);
  const span = options.window === undefined ? 'whole profile' : `window ${options.window.start}–${options.window.start + options.window.len} s`;
  console.log(`${file}: ${lengthS.toFixed(1)} s profiled; ${span}: ${totals.samples} samples, ${(totals.sampledUs / 1000).toFixed(0)} ms sampled`);
  printTop(`top ${options.top} by self time`, totals.self, totals.sampledUs, options.top);
  printTop(`top ${options.top} by inclusive time`, totals.inclusive, totals.sampledUs, options.top);
}

main().catch((error: unknown) => {
  console.error(`profile-top: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
