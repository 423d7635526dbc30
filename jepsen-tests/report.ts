/**
 * `report.html`: one self-contained page per run (inline SVG, no scripts, no network):
 * verdict and anomaly counts, latency over time (log scale, ok / fail / info) and throughput
 * with every fault window shaded by kind, acknowledged-but-unread messages per queue, every
 * acknowledged or unknown send placed by time and outcome (the lost plot), the leader/term
 * timeline per node, recovery times,
 * the fault list with what each did, the replica audit, retention (what was released,
 * snapshots installed, logs compacted), and the delayed-message and transactional-message
 * checks when the run had them.
 */
import type { CheckResult, DelayCheckResult, Lateness } from './checker.js';
import type { TransactionCheckResult } from './transaction-checker.js';
import { completions, faultWindows, readFunctions, type FaultWindow, type Op, type Read } from './history.js';
import type { RunResult } from './run.js';

export interface NodeSample {
  readonly timeNs: number;
  readonly nodeId: string;
  readonly up: boolean;
  readonly role: string;
  readonly term: number;
  readonly commitIndex: number;
  /** The log's first index (> 1 once compacted); absent in older runs. */
  readonly firstIndex?: number;
}

const width = 1100;
const left = 70;
const right = 20;
const plotWidth = width - left - right;
const palette = ['#e45756', '#4c78a8', '#f58518', '#54a24b', '#b279a2', '#9d755d', '#eeca3b', '#72b7b2', '#ff9da6', '#bab0ac', '#79706e', '#d67195'];

const escape = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function kindColours(windows: readonly FaultWindow[]): Map<string, string> {
  const colours = new Map<string, string>();
  for (const w of windows) if (!colours.has(w.kind)) colours.set(w.kind, palette[colours.size % palette.length] as string);
  return colours;
}

interface Axis { readonly x: (ns: number) => number; readonly endS: number }

function faultBands(windows: readonly FaultWindow[], colours: Map<string, string>, axis: Axis, top: number, height: number): string {
  return windows.map((w) => {
    const x0 = axis.x(w.startNs);
    const x1 = Math.max(x0 + 1, axis.x(w.stopNs));
    const colour = colours.get(w.kind) ?? '#999';
    return `<rect x="${x0.toFixed(1)}" y="${top}" width="${(x1 - x0).toFixed(1)}" height="${height}" fill="${colour}" fill-opacity="0.15"><title>${escape(w.kind)} ${(w.startNs / 1e9).toFixed(1)}–${(w.stopNs / 1e9).toFixed(1)} s</title></rect>`
      + `<line x1="${x0.toFixed(1)}" x2="${x0.toFixed(1)}" y1="${top}" y2="${top + height}" stroke="${colour}" stroke-width="1"/>`;
  }).join('');
}

function timeAxis(axis: Axis, top: number, height: number): string {
  const step = axis.endS > 400 ? 60 : axis.endS > 120 ? 20 : 10;
  let out = '';
  for (let s = 0; s <= axis.endS; s += step) {
    const x = axis.x(s * 1e9);
    out += `<line x1="${x}" x2="${x}" y1="${top}" y2="${top + height}" stroke="#eee"/><text x="${x}" y="${top + height + 14}" font-size="10" text-anchor="middle">${s}s</text>`;
  }
  return out;
}

function latencyChart(ops: readonly Op[], windows: readonly FaultWindow[], colours: Map<string, string>, axis: Axis): string {
  const height = 260;
  const top = 10;
  const minMs = 0.5;
  const maxMs = 20_000;
  const y = (ms: number): number => top + height - (Math.log10(Math.min(Math.max(ms, minMs), maxMs) / minMs) / Math.log10(maxMs / minMs)) * height;
  const points = completions(ops, 'enqueue').map(({ invokeNs, op }) => {
    const colour = op.type === 'ok' ? '#4c78a8' : op.type === 'fail' ? '#e45756' : '#f58518';
    return `<circle cx="${axis.x(invokeNs).toFixed(1)}" cy="${y((op.time - invokeNs) / 1e6).toFixed(1)}" r="${op.type === 'ok' ? 1.2 : 2.5}" fill="${colour}" fill-opacity="${op.type === 'ok' ? 0.5 : 0.9}"/>`;
  });
  let grid = '';
  for (const ms of [1, 10, 100, 1_000, 10_000]) grid += `<line x1="${left}" x2="${width - right}" y1="${y(ms)}" y2="${y(ms)}" stroke="#ddd"/><text x="${left - 6}" y="${y(ms) + 3}" font-size="10" text-anchor="end">${ms >= 1000 ? `${ms / 1000}s` : `${ms}ms`}</text>`;
  return `<svg width="${width}" height="${height + 30}" xmlns="http://www.w3.org/2000/svg">${timeAxis(axis, top, height)}${grid}${faultBands(windows, colours, axis, top, height)}${points.join('')}</svg>`;
}

function throughputChart(ops: readonly Op[], windows: readonly FaultWindow[], colours: Map<string, string>, axis: Axis): string {
  const height = 160;
  const top = 10;
  const seconds = Math.ceil(axis.endS) + 1;
  const series = { ok: new Array<number>(seconds).fill(0), fail: new Array<number>(seconds).fill(0), info: new Array<number>(seconds).fill(0), read: new Array<number>(seconds).fill(0) };
  for (const op of ops) {
    const s = Math.floor(op.time / 1e9);
    if (op.f === 'enqueue' && op.type !== 'invoke') series[op.type][s] = (series[op.type][s] ?? 0) + 1;
    if (op.f === 'dequeue' && op.type === 'ok') series.read[s] = (series.read[s] ?? 0) + (op.reads?.length ?? 0);
  }
  const max = Math.max(10, ...series.ok, ...series.read);
  const y = (v: number): number => top + height - (v / max) * height;
  const line = (values: number[], colour: string): string => `<polyline fill="none" stroke="${colour}" stroke-width="1.5" points="${values.map((v, s) => `${axis.x((s + 0.5) * 1e9).toFixed(1)},${y(v).toFixed(1)}`).join(' ')}"/>`;
  const grid = [0, 0.5, 1].map((f) => `<text x="${left - 6}" y="${y(max * f) + 3}" font-size="10" text-anchor="end">${Math.round(max * f)}/s</text>`).join('');
  return `<svg width="${width}" height="${height + 30}" xmlns="http://www.w3.org/2000/svg">${timeAxis(axis, top, height)}${grid}${faultBands(windows, colours, axis, top, height)}${line(series.ok, '#4c78a8')}${line(series.read, '#54a24b')}${line(series.info, '#f58518')}${line(series.fail, '#e45756')}</svg>`;
}

/** When each value was first read by any reader. */
function firstReads(ops: readonly Op[]): Map<string, number> {
  const firstReadNs = new Map<string, number>();
  for (const op of ops) {
    if (!readFunctions.has(op.f) || op.type !== 'ok' || op.reads === undefined) continue;
    for (const [, , value] of op.reads as Read[]) if (!firstReadNs.has(value)) firstReadNs.set(value, op.time);
  }
  return firstReadNs;
}

/**
 * Per queue and per second: how many acknowledged values had not yet been read by any reader
 * at the end of that second (Jepsen's "unseen"). It must fall to 0 in the drain.
 */
export function unseenOverTime(ops: readonly Op[], firstReadNs: ReadonlyMap<string, number> = firstReads(ops)): { queues: number[]; perQueue: Map<number, number[]> } {
  const seconds = Math.floor((ops[ops.length - 1]?.time ?? 0) / 1e9) + 1;
  const change = new Map<number, number[]>();
  for (const op of ops) {
    if (op.f !== 'enqueue' || op.type !== 'ok' || op.queue === undefined) continue;
    const ackS = Math.floor(op.time / 1e9);
    const readNs = firstReadNs.get(String(op.value));
    const readS = readNs === undefined ? seconds : Math.floor(readNs / 1e9);
    if (readS <= ackS) continue; // read within the second it was acknowledged (or before the ack arrived)
    const deltas = change.get(op.queue) ?? change.set(op.queue, new Array<number>(seconds + 1).fill(0)).get(op.queue) as number[];
    deltas[ackS] = (deltas[ackS] ?? 0) + 1;
    deltas[readS] = (deltas[readS] ?? 0) - 1;
  }
  const perQueue = new Map<number, number[]>();
  for (const [queue, deltas] of change) {
    let running = 0;
    perQueue.set(queue, deltas.slice(0, seconds).map((d) => (running += d)));
  }
  return { queues: [...perQueue.keys()].sort((a, b) => a - b), perQueue };
}

function unseenChart(ops: readonly Op[], firstReadNs: ReadonlyMap<string, number>, windows: readonly FaultWindow[], colours: Map<string, string>, axis: Axis): string {
  const height = 140;
  const top = 10;
  const { queues, perQueue } = unseenOverTime(ops, firstReadNs);
  const max = Math.max(10, ...queues.flatMap((q) => perQueue.get(q) as number[]));
  const y = (v: number): number => top + height - (v / max) * height;
  const lines = queues.map((q, i) => `<polyline fill="none" stroke="${palette[(i + 1) % palette.length]}" stroke-width="1.5" points="${(perQueue.get(q) as number[]).map((v, s) => `${axis.x((s + 1) * 1e9).toFixed(1)},${y(v).toFixed(1)}`).join(' ')}"><title>queue ${q}</title></polyline>`).join('');
  const grid = [0, 0.5, 1].map((f) => `<text x="${left - 6}" y="${y(max * f) + 3}" font-size="10" text-anchor="end">${Math.round(max * f)}</text>`).join('');
  const key = queues.map((q, i) => `<span class="key" style="border-color:${palette[(i + 1) % palette.length]}">queue ${q}</span>`).join(' ');
  return `<p>${key || 'nothing acknowledged'}</p><svg width="${width}" height="${height + 30}" xmlns="http://www.w3.org/2000/svg">${timeAxis(axis, top, height)}${grid}${faultBands(windows, colours, axis, top, height)}${lines}</svg>`;
}

/** A fixed spread in [0, 1) per value, so overlapping marks separate and the report stays deterministic. */
function spread(value: string): number {
  let hash = 0;
  for (let i = 0; i < value.length; i++) hash = (hash * 31 + value.charCodeAt(i)) >>> 0;
  return (hash % 1_000) / 1_000;
}

/** Every acknowledged send by queue lane and every unknown one in its own lane, placed by completion time, coloured by outcome. */
function lostPlot(ops: readonly Op[], read: ReadonlyMap<string, number>, check: CheckResult, windows: readonly FaultWindow[], colours: Map<string, string>, axis: Axis): string {
  const lostColour = { prefix: '#e45756', middle: '#7b1fa2', postfix: '#c62828' } as const;
  const lostWhere = new Map(check.lostValues.map((l) => [l.value, l.where]));
  const completed = ops.filter((op) => op.f === 'enqueue' && (op.type === 'ok' || op.type === 'info'));
  const queues = [...new Set(completed.filter((op) => op.type === 'ok').map((op) => op.queue as number))].sort((a, b) => a - b);
  const row = 22;
  const top = 10;
  const lanes = [...queues.map((q) => `queue ${q}`), 'unknown'];
  const height = lanes.length * row;
  const laneOf = (op: Op): number => (op.type === 'info' ? queues.length : queues.indexOf(op.queue as number));
  // Acknowledged and read: a faint tick per second and lane (80,000 dots would swamp the rest).
  const okPerSecond = new Map<string, number>();
  let marks = '';
  for (const op of completed) {
    const value = String(op.value);
    const where = lostWhere.get(value);
    const cy = top + laneOf(op) * row + row / 2;
    if (op.type === 'ok' && where === undefined) {
      const key = `${laneOf(op)}:${Math.floor(op.time / 1e9)}`;
      okPerSecond.set(key, (okPerSecond.get(key) ?? 0) + 1);
    } else {
      const colour = where !== undefined ? lostColour[where] : read.has(value) ? '#9e9e9e' : '#f58518';
      marks += `<circle cx="${axis.x(op.time).toFixed(1)}" cy="${(cy + (spread(value) - 0.5) * (row - 8)).toFixed(1)}" r="${where !== undefined ? 2.5 : 1.8}" fill="${colour}"><title>${escape(value)} ${where === undefined ? (op.type === 'info' ? (read.has(value) ? 'unknown, read' : 'unknown, never read') : '') : `lost (${where})`}</title></circle>`;
    }
  }
  const maxPerSecond = Math.max(1, ...okPerSecond.values());
  let ticks = '';
  for (const [key, count] of okPerSecond) {
    const [lane, second] = key.split(':').map(Number) as [number, number];
    const x0 = axis.x(second * 1e9);
    ticks += `<rect x="${x0.toFixed(1)}" y="${top + lane * row + 3}" width="${Math.max(0.5, axis.x((second + 1) * 1e9) - x0).toFixed(1)}" height="${row - 6}" fill="#4c78a8" fill-opacity="${(0.1 + 0.5 * count / maxPerSecond).toFixed(2)}"/>`;
  }
  const labels = lanes.map((lane, i) => `<text x="${left - 6}" y="${top + i * row + row / 2 + 4}" font-size="11" text-anchor="end">${lane}</text>`).join('');
  return `<svg width="${width}" height="${height + 30}" xmlns="http://www.w3.org/2000/svg">${timeAxis(axis, top, height)}${faultBands(windows, colours, axis, top, height)}${labels}${ticks}${marks}</svg>`;
}

function leaderTimeline(samples: readonly NodeSample[], windows: readonly FaultWindow[], colours: Map<string, string>, axis: Axis): string {
  const nodes = [...new Set(samples.map((s) => s.nodeId))].sort();
  const row = 26;
  const height = nodes.length * row;
  const top = 10;
  const roleColour = (s: NodeSample): string => (!s.up ? '#e45756' : s.role === 'leader' ? '#54a24b' : s.role === 'follower' ? '#c7d7e8' : s.role === 'unreachable' ? '#bbbbbb' : '#f58518');
  let out = '';
  nodes.forEach((node, i) => {
    const mine = samples.filter((s) => s.nodeId === node);
    const y0 = top + i * row;
    out += `<text x="${left - 6}" y="${y0 + 16}" font-size="11" text-anchor="end">${node}</text>`;
    let lastTerm = -1;
    mine.forEach((s, j) => {
      const next = mine[j + 1];
      const x0 = axis.x(s.timeNs);
      const x1 = next === undefined ? x0 + 2 : axis.x(next.timeNs);
      out += `<rect x="${x0.toFixed(1)}" y="${y0 + 3}" width="${Math.max(0.5, x1 - x0).toFixed(1)}" height="${row - 8}" fill="${roleColour(s)}"><title>${node} ${escape(s.role)} term ${s.term} commit ${s.commitIndex}</title></rect>`;
      if (s.role === 'leader' && s.term !== lastTerm) out += `<text x="${(x0 + 2).toFixed(1)}" y="${y0 + 15}" font-size="9" fill="#fff">t${s.term}</text>`;
      if (s.term > 0) lastTerm = s.role === 'leader' ? s.term : lastTerm;
    });
  });
  return `<svg width="${width}" height="${height + 30}" xmlns="http://www.w3.org/2000/svg">${timeAxis(axis, top, height)}${faultBands(windows, colours, axis, top, height)}${out}</svg>`;
}

function table(rows: ReadonlyArray<readonly [string, string | number]>): string {
  return `<table>${rows.map(([k, v]) => `<tr><th>${escape(k)}</th><td>${escape(String(v))}</td></tr>`).join('')}</table>`;
}

function delayRows(d: DelayCheckResult): string {
  const ms = (l: Lateness | null): string => (l === null ? 'none' : `p50 ${l.p50Ms.toFixed(0)} ms, p99 ${l.p99Ms.toFixed(0)} ms, max ${l.maxMs.toFixed(0)} ms (${l.count} values)`);
  return table([
    ['sends attempted / acknowledged / failed / unknown (unknown delivered)', `${d.attempted} / ${d.acked} / ${d.failed} / ${d.indeterminate} (${d.recovered})`],
    [`early (received more than ${d.toleranceMs} ms before the due time)`, d.early], ['made visible early (broker store timestamp before the due time)', d.visibleEarly],
    ['lost (acknowledged, never received)', `${d.lost}${d.lostAfterReceive > 0 ? ` (${d.lostAfterReceive} received, then missing from the drain)` : ''}`],
    [`late (first received more than ${d.latenessBoundMs} ms after max(due, heal))`, d.late], ['unexpected / aborted reads / inconsistent offsets', `${d.unexpected} / ${d.abortedRead} / ${d.inconsistentOffsets}`],
    ['duplicated (one value at two offsets; allowed) / SimpleConsumer redeliveries', `${d.duplicated} / ${d.redelivered}`],
    ['lateness: first receive − due', ms(d.lateness)], ['lateness: first receive − max(due, heal)', ms(d.latenessAfterHeal)], ['fire lag: store timestamp − due', ms(d.fireLag)],
    ['final drain ran', d.drained ? 'yes' : 'no'],
  ]) + ([...d.earlyValues.map((e) => `early: ${e.value} due ${e.dueMs}, received ${e.receivedMs} by ${e.by}`), ...d.lostValues.slice(0, 20).map((v) => `lost: ${v}`),
    ...d.lateValues.map((l) => `late: ${l.value} due ${l.dueMs}, owed from ${l.fromMs}, received ${l.receivedMs}`)].map((line) => escape(line)).join('\n').replace(/^(.+)$/s, '<pre>$1</pre>'));
}

function transactionRows(t: TransactionCheckResult): string {
  const ms = (l: Lateness | null): string => (l === null ? 'none' : `p50 ${l.p50Ms.toFixed(0)} ms, p99 ${l.p99Ms.toFixed(0)} ms, max ${l.maxMs.toFixed(0)} ms (${l.count} values)`);
  return table([
    ['half sends attempted / acknowledged / failed / unknown (unknown commit-decided delivered)', `${t.attempted} / ${t.acked} / ${t.failed} / ${t.indeterminate} (${t.recovered})`],
    ['acknowledged halves by fate', Object.entries(t.ackedByFate).map(([fate, n]) => `${fate} ${n}`).join(', ')],
    ['ends by the sender: COMMIT OK / ROLLBACK OK / failed / unknown', `${t.committed} / ${t.rolledBack} / ${t.endFailed} / ${t.endUnknown}`],
    ['abandoned → committed by a check-back / commits finished by a check-back after the sender\'s end failed', `${t.abandonedCommitted} / ${t.commitFinishedByCheckBack}`],
    ['abandoned → rolled back by a check-back / never answered → rolled back after the last check (late COMMIT refused)', `${t.abandonedRolledBack} / ${t.unansweredRolledBack}`],
    ['rolled-back values delivered', t.rolledBackDelivered], ['lost (commit-decided, acknowledged half; of them committed OK)', `${t.lost} (${t.lostCommitted})`],
    [`late (first delivered more than ${t.latenessBoundMs} ms after max(due, heal))`, t.late],
    ['duplicated / inconsistent offsets / unexpected / aborted reads', `${t.duplicated} / ${t.inconsistentOffsets} / ${t.unexpected} / ${t.abortedRead}`],
    ['delivered before any commit was asked for', t.visibleBeforeCommit], [`checked back before ${t.checkAfterMs} ms`, t.checkedEarly],
    ['never answered, still open after the settle / broker state contradicting the deliveries / state unknown', `${t.notRolledBack} / ${t.stateMismatch} / ${t.stateUnknown}`],
    ['late COMMITs of rolled-back transactions: accepted / refused / unknown', `${t.lateCommitAccepted} / ${t.lateCommitRefused} / ${t.lateCommitUnknown}`],
    ['check-backs / values checked back / asks per never-answered value', `${t.checkBacks} / ${t.valuesCheckedBack} / ${t.unansweredAsks === null ? 'none' : `p50 ${t.unansweredAsks.p50Ms}, max ${t.unansweredAsks.maxMs}`}`],
    ['SimpleConsumer redeliveries', t.redelivered],
    ['first check-back − half acknowledged', ms(t.checkBackLatency)], ['abandoned, committed by check-back: first delivery − half acknowledged', ms(t.checkBackDelivery)],
    ['committed by the sender: first delivery − COMMIT OK', ms(t.deliveryAfterCommit)], ['first delivery − max(due, heal)', ms(t.latenessAfterHeal)],
    ['final drain ran', t.drained ? 'yes' : 'no'],
  ]) + ([...t.rolledBackDeliveredValues.slice(0, 20).map((v) => `rolled back, delivered: ${v}`), ...t.lostValues.slice(0, 20).map((v) => `lost: ${v}`),
    ...t.lateValues.map((l) => `late: ${l.value} due ${l.dueS.toFixed(1)} s, owed from ${l.owedFromS.toFixed(1)} s, delivered ${l.deliveredS.toFixed(1)} s`),
    ...t.visibleBeforeCommitValues.map((v) => `delivered before a commit was asked for: ${v}`), ...t.duplicatedValues.map((d) => `duplicated: ${JSON.stringify(d)}`),
    ...t.stateMismatchValues.map((m) => `state mismatch: ${JSON.stringify(m)}`)].map((line) => escape(line)).join('\n').replace(/^(.+)$/s, '<pre>$1</pre>'));
}

export function renderReport(input: { run: RunResult; ops: readonly Op[]; samples: readonly NodeSample[]; commit: string }): string {
  const { run, ops, samples } = input;
  const c = run.check;
  const endNs = Math.max(ops[ops.length - 1]?.time ?? 1, samples[samples.length - 1]?.timeNs ?? 1);
  const axis: Axis = { x: (ns) => left + (ns / endNs) * plotWidth, endS: endNs / 1e9 };
  const windows = faultWindows(ops, endNs);
  const firstReadNs = firstReads(ops);
  const colours = kindColours(windows);
  const legend = [...colours].map(([kind, colour]) => `<span class="key" style="background:${colour}33;border-color:${colour}">${escape(kind)}</span>`).join(' ');
  const verdictColour = c.verdict === 'pass' ? '#2e7d32' : c.verdict === 'fail' ? '#c62828' : '#ef6c00';
  const anomalies: Array<readonly [string, string | number]> = [
    ['lost (acked, never read)', `${c.lost} (prefix ${c.lostPrefix}, middle ${c.lostMiddle}, postfix ${c.lostPostfix})`],
    ['lost below a first offset (no proof of release)', c.lostBelowFirstOffset ?? 0], ['committed log entries that changed', c.committedLogConflicts ?? 0],
    ['lost-write (a later offset was read)', c.lostWrite], ['unexpected', c.unexpected], ['aborted reads (failed send delivered)', c.abortedRead],
    ['inconsistent offsets', c.inconsistentOffsets.length], ['duplicated', c.duplicated.length], ['nonmonotonic sends', c.nonmonotonicSend.length],
    ['nonmonotonic polls', c.nonmonotonicPoll.length], ['poll skips', c.pollSkip.length], ['election safety', c.electionSafety.length],
    ['replica divergence (audit)', c.divergence], ['first acknowledged enqueue after the last heal', c.finalRecoveryMs === null ? 'none' : `${c.finalRecoveryMs.toFixed(0)} ms`], ['drain complete', c.drainComplete ? 'yes' : `no: ${c.producersBehind.join(', ')}`],
  ];
  const stats: Array<readonly [string, string | number]> = [
    ['enqueues attempted', c.attempted], ['acknowledged (ok)', c.acked], ['failed (definite)', c.failed], ['unknown (info)', c.indeterminate],
    ['released by retention before the drain (proven)', c.released ?? 0], ['unknown that were read (recovered)', c.recovered], ['distinct values read', c.read], ['group redeliveries', `${c.redelivered} (${(c.redeliveryRate * 100).toFixed(2)} %)`],
    ['acked per second', run.ackedPerSecond.toFixed(1)],
  ];
  const effects: Array<readonly [string, string | number]> = Object.entries(c.effects).map(([k, v]) => [k, v] as const);
  const faults = ops.filter((op) => op.process === 'nemesis').map((op) => `<tr><td>${(op.time / 1e9).toFixed(2)}</td><td>${escape(op.f)}</td><td><code>${escape(JSON.stringify(op.value ?? {}))}</code></td></tr>`).join('');
  const recoveries = c.recoveries.map((r) => `<tr><td>${escape(r.fault)}</td><td>${r.healAtS.toFixed(1)}</td><td>${r.recoveryMs === null ? 'none' : r.recoveryMs.toFixed(0)}${r.interrupted ? ' (another fault in force meanwhile)' : ''}</td></tr>`).join('');
  const auditRows = run.audit === undefined ? '<p>not run</p>' : `${table(run.audit.nodes.map((n) => [n.nodeId, `${n.entries} committed entries, ${n.firstIndex ?? 1} through ${n.commitIndex}; rebuilt from snapshot ${n.snapshotIndex ?? 0}; retained from index ${n.retainedFrom ?? 1}; queue offsets ${(n.queueFirstOffsets ?? n.queueLengths.map(() => 0)).map((first, q) => `${first}..${n.queueLengths[q] ?? 0}`).join(' / ')}; acknowledged values released with proof ${n.released ?? 0}; retained offsets read from a peer's log (before this node's log, after InstallSnapshot) ${n.retainedOnlyOnPeers ?? 0}; state digest ${n.digest ?? '?'}`] as const))}${run.audit.details.length > 0 ? `<pre>${escape(run.audit.details.join('\n'))}</pre>` : ''}`;
  const effectsOfRetention = run.retentionEffects;
  const retentionRows = effectsOfRetention === undefined ? '<p>not recorded</p>' : table([
    ['snapshots installed from a leader', Object.entries(effectsOfRetention.snapshotsInstalled).map(([id, n]) => `${id} ${n}`).join(', ')],
    ['log first index at the end (compacted if > 1)', Object.entries(effectsOfRetention.firstIndexAtEnd).map(([id, n]) => `${id} ${n}`).join(', ') || 'unknown'],
    ['highest log first index seen by the status poller', Object.entries(effectsOfRetention.firstIndexMaxSeen).map(([id, n]) => `${id} ${n}`).join(', ')],
    ['first offsets at the end (released below)', c.retention === null || c.retention === undefined ? 'unknown' : `${c.retention.firstOffsets.join(' / ')}; retained from log index ${c.retention.retainedFrom}`],
    ['released acknowledged values (proven) / lost below a first offset', `${c.released ?? 0} / ${c.lostBelowFirstOffset ?? 0}`],
    ['reads that jumped over released offsets (log reader, drain)', c.skipsOverReleased ?? 0],
    ['first offsets when the drain began', JSON.stringify(effectsOfRetention.drainFirstOffsets ?? null)],
    ['log watcher', effectsOfRetention.logWatch === undefined ? 'not run' : JSON.stringify({ ...effectsOfRetention.logWatch, conflictDetails: undefined, staleReadDetails: undefined })],
  ]);
  const lists = ([['lost examples', c.lostValues.slice(0, 20).map((l) => `${l.value} (${l.where})`)], ['inconsistent offsets', c.inconsistentOffsets.map((i) => JSON.stringify(i))], ['duplicated', c.duplicated.map((d) => JSON.stringify(d))],
    ['nonmonotonic sends', c.nonmonotonicSend], ['nonmonotonic polls', c.nonmonotonicPoll], ['poll skips', c.pollSkip], ['election safety', c.electionSafety]] as Array<[string, string[]]>)
    .filter(([, items]) => items.length > 0).map(([title, items]) => `<h3>${escape(title)}</h3><pre>${escape(items.join('\n'))}</pre>`).join('');
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>RaftMQ jepsen ${escape(run.name)}: ${c.verdict}</title>
<style>body{font:13px system-ui,sans-serif;margin:20px;color:#222}h1{font-size:20px}h2{font-size:15px;margin-top:26px}table{border-collapse:collapse}th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f6f6f6;font-weight:600}
.verdict{color:#fff;background:${verdictColour};padding:2px 10px;border-radius:4px}.key{border:1px solid;padding:1px 6px;margin-right:4px;border-radius:3px}.cols{display:flex;gap:30px;flex-wrap:wrap}code{font-size:11px}pre{background:#f6f6f6;padding:8px;max-height:300px;overflow:auto}</style></head>
<body>
<h1>RaftMQ jepsen: ${escape(run.name)} <span class="verdict">${c.verdict.toUpperCase()}</span></h1>
<p>${escape(c.reasons.join('; ') || 'every check passed and the faults bit')}</p>
${table([['run', run.runDir], ['commit', input.commit], ['seed', run.config.seed], ['nodes', run.config.nodes], ['nemesis', run.config.nemesis.join(', ')],
    ['fault time', `${run.config.timeS} s (calm ${run.config.calmMs.join('–')} ms, faults ${run.config.faultMs.join('–')} ms)`], ['producers', `${run.config.producers} at ${run.config.ratePerProducer}/s each`],
    ['unsafe switch', run.config.unsafe ?? 'none'], ['duration', `${run.durationS.toFixed(0)} s`]])}
<div class="cols"><div><h2>Anomalies</h2>${table(anomalies)}</div><div><h2>Operations</h2>${table(stats)}</div><div><h2>Did the faults bite?</h2>${table(effects)}</div></div>
<h2>Enqueue latency over time</h2><p>blue ok, orange unknown (info), red failed; shaded: ${legend}</p>${latencyChart(ops, windows, colours, axis)}
<h2>Throughput (per second)</h2><p>blue acknowledged enqueues, green messages read by the consumer group (the drain is left out: it would dwarf the rest), orange unknown, red failed</p>${throughputChart(ops, windows, colours, axis)}
<h2>Unseen over time</h2><p>acknowledged values not yet read by any reader, per queue, at the end of each second; it must fall to 0 in the drain</p>${unseenChart(ops, firstReadNs, windows, colours, axis)}
<h2>Lost plot</h2><p>every completed send by the time it completed: blue bands acknowledged and read (darker = more per second), red lost before what was read of its producer (prefix), purple lost in the middle, dark red lost after it (postfix); in the unknown lane grey was read after all, orange never</p>${lostPlot(ops, firstReadNs, c, windows, colours, axis)}
<h2>Leader / term timeline</h2><p>green leader (label = term), light blue follower, orange candidate, grey unreachable (paused or cut off from the harness), red process down</p>${leaderTimeline(samples, windows, colours, axis)}
<h2>Recovery after each fault</h2><table><tr><th>fault</th><th>healed at (s)</th><th>first acknowledged new enqueue after (ms)</th></tr>${recoveries}</table>
<h2>Failover during faults aimed at the leader</h2><table><tr><th>fault</th><th>started at (s)</th><th>first acknowledged new enqueue after (ms)</th></tr>${c.failovers.map((f) => `<tr><td>${escape(f.fault)}</td><td>${f.startS.toFixed(1)}</td><td>${f.failoverMs === null ? 'none during the fault' : f.failoverMs.toFixed(0)}</td></tr>`).join('')}</table>
<h2>Replica audit</h2>${auditRows}
${c.delay === null || c.delay === undefined ? '' : `<h2>Delayed messages</h2><p>values due 1–8 s after their send on a DELAY topic; times on the wall clock the processes share</p>${delayRows(c.delay)}`}
${c.transactions === null || c.transactions === undefined ? '' : `<h2>Transactional messages</h2><p>values on a TRANSACTION topic, each with its fate decided before the send (committed or rolled back by the sender, abandoned and ended by a check-back, or never answered); check-backs after ${c.transactions.checkAfterMs} ms</p>${transactionRows(c.transactions)}`}
<h2>Retention, snapshots and compaction</h2>${retentionRows}${[...(effectsOfRetention?.logWatch?.conflictDetails ?? []), ...(effectsOfRetention?.logWatch?.staleReadDetails ?? [])].length > 0 ? `<pre>${escape([...(effectsOfRetention?.logWatch?.conflictDetails ?? []), ...(effectsOfRetention?.logWatch?.staleReadDetails ?? [])].join('\n'))}</pre>` : ''}
${lists}
<h2>Nemesis operations</h2><table><tr><th>time (s)</th><th>operation</th><th>details</th></tr>${faults}</table>
</body></html>
`;
}
