/**
 * One Jepsen-style test: start the cluster in network namespaces, run the workload, let the
 * nemesis break things for `timeS`, heal everything, drain, audit the replicas, check the
 * history, and write `history.jsonl`, `results.json` and `report.html` into the run directory.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Admin, type TopicSettings } from '../src/client/admin.js';
import { Prng } from '../src/testing/prng.js';
import { auditReplicas, type AuditResult } from './audit.js';
import { check, type CheckResult, type Lateness, type LeaderObservation, type RetentionInput, type RetentionMinimums } from './checker.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { JepsenCluster, type UnsafeSwitch } from './cluster.js';
import { History } from './history.js';
import { LogWatch, type LogWatchSummary } from './log-watch.js';
import { Nemesis, type NemesisName } from './nemesis.js';
import { renderReport, type NodeSample } from './report.js';
import { DelayWorkload, Workload, delayGroups, queueGroups } from './workload.js';
import { TransactionWorkload, txnGroups, type TransactionWorkloadConfig } from './transaction-workload.js';
import { accessRefusals, clientSecurity, provisionUsers, raftClientSecurity, silentClients, type Grants } from './security.js';

export interface RunConfig {
  readonly name: string;
  readonly nodes: number;
  readonly nemesis: readonly NemesisName[];
  readonly timeS: number;
  readonly calmStartS: number;
  readonly calmMs: readonly [number, number];
  readonly faultMs: readonly [number, number];
  readonly recoveryS: number;
  readonly drainS: number;
  readonly producers: number;
  readonly ratePerProducer: number;
  readonly seed: number;
  readonly outDir: string;
  readonly faultEventsMin: number;
  readonly unsafe?: UnsafeSwitch | undefined;
  /** See CheckInput.failoverBoundMs. */
  readonly failoverBoundMs?: number | undefined;
  /** Tiny retention (main.ts): broker flags, and what the run must show to count. */
  readonly retention?: RetentionConfig | undefined;
  /** The delayed-message workload (DelayWorkload) and its checker rules, alongside the queue workload. */
  readonly delay?: DelayConfig | undefined;
  /** The transactional-message workload (TransactionWorkload) and its checker rules, alongside the queue workload. */
  readonly transactions?: TransactionConfig | undefined;
  /** TLS on every port, authentication and ACL on; every workload client signs as a normal user holding only its grants (security.ts). */
  readonly secure?: boolean | undefined;
}

/** See TransactionWorkloadConfig and TransactionCheckOptions; the check-back policy is passed to every broker. */
export interface TransactionConfig extends Omit<TransactionWorkloadConfig, 'nameServers' | 'topic' | 'security' | 'observerSecurity'> {
  readonly latenessBoundMs: number;
  /** How long past the last check of the latest unanswered transaction the settle phase waits for the broker to roll it back. */
  readonly settleMs: number;
}

/** The `raftmq broker` flags of a transaction run's check-back policy. */
export const transactionBrokerArgs = (t: TransactionConfig): string[] => [
  '--txn-check-after-ms', String(t.checkAfterMs), '--txn-check-interval-ms', String(t.checkIntervalMs), '--txn-checks-max', String(t.checksMax),
];

/** See DelayWorkloadConfig and DelayCheckOptions. */
export interface DelayConfig {
  readonly producers: number;
  readonly ratePerProducer: number;
  readonly delayMs: readonly [number, number];
  readonly sendsMax: number;
  readonly toleranceMs: number;
  readonly latenessBoundMs: number;
}

/** Extra `raftmq broker` flags (segments, snapshots, retention), and what the run must show to count. */
export interface RetentionConfig extends RetentionMinimums {
  readonly brokerArgs: readonly string[];
}

/** Snapshots, compaction and retention as the run saw them. */
export interface RetentionEffects {
  /** Per node: how many times its log says 'installed a snapshot from the leader'. */
  readonly snapshotsInstalled: Record<string, number>;
  /** Per node: the log's first index at the end (the replica audit), and the highest the status poller saw. */
  readonly firstIndexAtEnd: Record<string, number>;
  readonly firstIndexMaxSeen: Record<string, number>;
  readonly logWatch: LogWatchSummary | undefined;
  /** Each queue's first offset when the drain began (QueryOffset BEGINNING). */
  readonly drainFirstOffsets: unknown;
}

export interface RunResult {
  readonly name: string;
  readonly runDir: string;
  readonly config: RunConfig;
  readonly check: CheckResult;
  readonly audit: AuditResult | undefined;
  readonly retentionEffects: RetentionEffects;
  readonly durationS: number;
  readonly ackedPerSecond: number;
  /** Secure runs: what the probes before the grants saw, and the calls the access gate refused during the run (from the history's errors). */
  readonly secure?: { readonly probes: readonly string[]; readonly accessRefusals: number } | undefined;
}

const topic = 'jepsen';
const queues = 4;
/** The delay workload's topic: type DELAY (it accepts only messages with a delivery time). */
const delayTopic = 'jepsen-delay';
/** The transaction workload's topic: type TRANSACTION. */
const txnTopic = 'jepsen-txn';
/** The brokers' default: 15 ticks of 20 ms, each wait randomised up to twice that. */
const electionTimeoutMs = 300;
/** Starting a node process and replaying its log takes seconds on 2 shared cores (5 nodes: up to ~5 s). */
const nodeRestartAllowanceMs = 10_000;

/**
 * The commit the code under test was built from, read once when the harness starts: a nightly
 * runs for over an hour on one build while the checkout may move on. `+changes` when the
 * working tree differed from it.
 */
const commitUnderTest = ((): string => {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    const changed = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' }).trim() !== '';
    return changed ? `${head}+changes` : head;
  } catch {
    return 'unknown';
  }
})();

export async function runTest(config: RunConfig): Promise<RunResult> {
  const startedAt = Date.now();
  const runDir = path.join(config.outDir, `${new Date(startedAt).toISOString().replace(/[:.]/g, '-')}-${config.name}`);
  await mkdir(runDir, { recursive: true });
  const history = new History(path.join(runDir, 'history.jsonl'));
  const rng = new Prng(config.seed);
  const leaders: LeaderObservation[] = [];
  const samples: NodeSample[] = [];
  let cluster: JepsenCluster | undefined;
  let polling = true;
  let poller: Promise<void> = Promise.resolve();
  let audit: AuditResult | undefined;
  let workload: Workload | undefined;
  let delayWorkload: DelayWorkload | undefined;
  let delayDrained = false;
  let txnWorkload: TransactionWorkload | undefined;
  let txnDrained = false;
  let watch: LogWatch | undefined;
  let securityProbes: string[] = [];
  const log = (text: string): void => console.log(`jepsen ${config.name}: ${text}`);
  const stopOnSignal = (): void => { polling = false; void cluster?.stop().finally(() => process.exit(130)); };
  process.once('SIGINT', stopOnSignal);
  process.once('SIGTERM', stopOnSignal);
  try {
    cluster = await JepsenCluster.start({
      nodes: config.nodes, runDir, unsafe: config.unsafe, secure: config.secure,
      brokerArgs: [...(config.retention?.brokerArgs ?? []), ...(config.transactions === undefined ? [] : transactionBrokerArgs(config.transactions))],
    });
    const running = cluster;
    log(`${config.nodes} nodes in network namespaces (${cluster.ids.map((id) => `${id}=${running.address(id)}`).join(', ')}), NameServer ${cluster.namesrv}; run directory ${runDir}`);
    await cluster.waitForLeader(30_000);
    const security = cluster.security;
    // The log watcher reads the Raft log: in a secure run as the auditor, who exists once provisionUsers has run (it starts then; it reads from index 1).
    watch = new LogWatch(cluster.local.members, [topic, ...(config.delay === undefined ? [] : [delayTopic]), ...(config.transactions === undefined ? [] : [txnTopic])], 200, raftClientSecurity(security, 'auditor'));
    if (security === undefined) watch.start();
    poller = (async () => {
      while (polling) {
        const at = history.nowNs();
        const statuses = await running.statuses(250).catch(() => new Map());
        for (const id of running.ids) {
          const status = statuses.get(id);
          samples.push({ timeNs: at, nodeId: id, up: running.isRunning(id), role: status?.role ?? 'unreachable', term: status?.term ?? 0, commitIndex: status?.commitIndex ?? 0, firstIndex: status?.firstIndex ?? 0 });
          if (status?.role === 'leader') leaders.push({ timeNs: at, nodeId: id, term: status.term });
        }
        await sleep(250);
      }
    })();
    const admin = new Admin({ nameServers: [cluster.namesrv], ...clientSecurity(security, 'operator') });
    try {
      // The leader may not have registered with the NameServer yet; a retry after an attempt
      // whose outcome was unknown may find the topic created.
      const topics: Array<[string, TopicSettings]> = [[topic, { readQueues: queues, writeQueues: queues }]];
      if (config.delay !== undefined) topics.push([delayTopic, { readQueues: queues, writeQueues: queues, messageType: 'DELAY' }]);
      if (config.transactions !== undefined) topics.push([txnTopic, { readQueues: queues, writeQueues: queues, messageType: 'TRANSACTION' }]);
      for (const [name, settings] of topics) {
        for (let attempt = 0; ; attempt++) {
          try {
            await admin.createTopic(name, settings);
            break;
          } catch (error) {
            if (attempt > 0 && /already exists/.test((error as Error).message)) break;
            if (attempt >= 40) throw error;
            await sleep(500);
          }
        }
      }
    } finally {
      admin.close();
    }
    if (security !== undefined) {
      const grants: Grants = {
        topics: [topic, ...(config.delay === undefined ? [] : [delayTopic]), ...(config.transactions === undefined ? [] : [txnTopic])],
        groups: [queueGroups.consumers, queueGroups.logReader, ...(config.delay === undefined ? [] : [delayGroups.reader, delayGroups.consumers]), ...(config.transactions === undefined ? [] : [txnGroups.reader, txnGroups.consumers])],
        groupPrefixes: [queueGroups.drainPrefix, ...(config.delay === undefined ? [] : [delayGroups.drainPrefix]), ...(config.transactions === undefined ? [] : [txnGroups.drainPrefix])],
      };
      securityProbes = await provisionUsers(security, cluster.namesrv, cluster.local.members.map((m) => m.address), grants, runDir);
      log(`secure: TLS on every port, ACL on; ${securityProbes.join('; ')}; granted ${grants.topics.map((t) => `Topic:${t}`).join(', ')} Pub,Sub and ${[...grants.groups, ...grants.groupPrefixes.map((p) => `${p}*`)].map((g) => `Group:${g}`).join(', ')} Sub to ${security.workload.accessKey}, Cluster Admin to ${security.auditor.accessKey}`);
      watch.start();
    }
    const workloadSecurity = clientSecurity(security, 'workload');
    workload = new Workload(history, {
      nameServers: [cluster.namesrv], topic, queues, producers: config.producers, orderedProducers: Math.min(queues, Math.floor(config.producers / 2)),
      consumers: config.nodes, ratePerProducer: config.ratePerProducer, security: workloadSecurity,
    });
    workload.start();
    if (config.delay !== undefined) {
      const d = config.delay;
      delayWorkload = new DelayWorkload(history, { nameServers: [cluster.namesrv], topic: delayTopic, producers: d.producers, ratePerProducer: d.ratePerProducer, delayMs: d.delayMs, sendsMax: d.sendsMax, security: workloadSecurity }, rng.fork('delay'));
      delayWorkload.start();
    }
    if (config.transactions !== undefined) {
      const t = config.transactions;
      txnWorkload = new TransactionWorkload(history, {
        nameServers: [cluster.namesrv], topic: txnTopic, producers: t.producers, checkers: t.checkers, ratePerProducer: t.ratePerProducer, sendsMax: t.sendsMax,
        fateWeights: t.fateWeights, endHoldMs: t.endHoldMs, checkAfterMs: t.checkAfterMs, checkIntervalMs: t.checkIntervalMs, checksMax: t.checksMax,
        security: workloadSecurity, observerSecurity: clientSecurity(security, 'auditor'),
      }, rng.fork('transactions'));
      txnWorkload.start();
    }
    await sleep(config.calmStartS * 1_000);
    log(`nemesis ${config.nemesis.join('+')} for ${config.timeS} s`);
    const nemesis = new Nemesis(cluster, history, { kinds: config.nemesis, calmMs: config.calmMs, faultMs: config.faultMs, electionTimeoutMs }, rng.fork('nemesis'));
    await nemesis.run(Date.now() + config.timeS * 1_000);
    await nemesis.healAll();
    log(`healed after ${nemesis.events} fault events; recovering for ${config.recoveryS} s`);
    await cluster.waitForLeader(30_000).catch(() => undefined);
    await sleep(config.recoveryS * 1_000);
    await Promise.all([workload.stopProducers(), delayWorkload?.stopProducers(), txnWorkload?.stopProducers()]);
    // The delayed values still pending are delivered (and drained) meanwhile.
    const delayFinished = delayWorkload?.finish(config.delay?.latenessBoundMs ?? 0, config.drainS * 1_000).catch((error: unknown) => {
      log(`delay workload: ${(error as Error).message}`);
      return false;
    });
    // The transactions left open are checked back, rolled back or committed, and drained meanwhile.
    const txnFinished = txnWorkload?.finish(config.transactions?.latenessBoundMs ?? 0, config.transactions?.settleMs ?? 0, config.drainS * 1_000).catch((error: unknown) => {
      log(`transaction workload: ${(error as Error).message}`);
      return false;
    });
    await workload.stopConsumers();
    log(`draining (up to ${config.drainS} s)`);
    const drained = await workload.drain(config.drainS * 1_000);
    log(drained ? 'drain read every acknowledged value' : 'drain timed out');
    if (delayFinished !== undefined) {
      delayDrained = await delayFinished;
      log(delayDrained ? 'delay drain read every acknowledged delayed value' : 'delay drain timed out');
    }
    if (txnFinished !== undefined) {
      txnDrained = await txnFinished;
      log(txnDrained ? 'transaction drain read every commit-decided acknowledged value' : 'transaction drain timed out');
    }
    const acked = new Map<string, { queue: number; offset: number }>();
    for (const op of history.ops) if (op.f === 'enqueue' && op.type === 'ok' && op.queue !== undefined && op.offset !== undefined) acked.set(String(op.value), { queue: op.queue, offset: op.offset });
    const reader = watch;
    audit = await auditReplicas(running.local.members.map((m) => ({ ...m, dataDir: running.dataDir(m.id) })), topic, queues, acked, (value) => reader.committedIndexOf(value), 20_000, raftClientSecurity(security, 'auditor'));
    log(`replica audit: ${audit.nodes.map((n) => `${n.nodeId} ${n.entries} entries ${n.firstIndex}..${n.commitIndex} (snapshot ${n.snapshotIndex}, released ${n.released}, retained only on peers ${n.retainedOnlyOnPeers})`).join(', ')}; ${audit.divergence} divergences`);
  } catch (error) {
    history.add({ type: 'info', process: 'harness', f: 'error', error: (error as Error).stack ?? String(error) });
    throw error;
  } finally {
    polling = false;
    await poller;
    await watch?.stop();
    await cluster?.stop();
    process.removeListener('SIGINT', stopOnSignal);
    process.removeListener('SIGTERM', stopOnSignal);
    await history.close();
  }
  const retentionEffects = await observeRetention(runDir, config, history, samples, audit, watch);
  const installs = Object.values(retentionEffects.snapshotsInstalled).reduce((a, b) => a + b, 0);
  let retention: RetentionInput | undefined;
  if (audit !== undefined && watch !== undefined) {
    const committedIndex = new Map<string, number>();
    for (const op of history.ops) {
      if (op.f !== 'enqueue' || op.type !== 'ok') continue;
      const index = watch.committedIndexOf(String(op.value));
      if (index !== undefined) committedIndex.set(String(op.value), index);
    }
    retention = {
      firstOffsets: audit.firstOffsets, retainedFrom: audit.retainedFrom, committedIndex, snapshotsInstalled: installs, compactedNodes: audit.compactedNodes,
      required: config.retention,
    };
  }
  let result = check({ ops: history.ops, leaders, divergence: audit?.divergence ?? 1, leaderFaultMinMs: 4 * electionTimeoutMs, faultEventsMin: config.faultEventsMin, failoverBoundMs: config.failoverBoundMs,
    // Ten election timeouts (FAULTS §6.3) plus the restart of every node the last fault stopped.
    finalHealBoundMs: 10 * electionTimeoutMs + nodeRestartAllowanceMs, retention, committedLogConflicts: watch?.summary().conflicts,
    delay: config.delay === undefined ? undefined : { toleranceMs: config.delay.toleranceMs, latenessBoundMs: config.delay.latenessBoundMs, drainDecides: config.retention === undefined },
    transactions: config.transactions === undefined ? undefined : {
      checkAfterMs: config.transactions.checkAfterMs, checkIntervalMs: config.transactions.checkIntervalMs, checksMax: config.transactions.checksMax, latenessBoundMs: config.transactions.latenessBoundMs,
    } });
  let secure: RunResult['secure'];
  if (config.secure === true) {
    secure = { probes: securityProbes, accessRefusals: accessRefusals(history.ops) };
    const silent = silentClients(history.ops, config);
    // A grant the workload lacks need not lose anything: a consumer that cannot start reads nothing. Every client must have done its work.
    if (silent.length > 0 && result.verdict === 'pass') result = { ...result, verdict: 'invalid', reasons: [...result.reasons, `secure: ${silent.join(', ')} never succeeded (a missing grant?)`] };
  }
  const durationS = (Date.now() - startedAt) / 1_000;
  const enqueueSpan = Math.max(1, config.calmStartS + config.timeS + config.recoveryS);
  const run: RunResult = { name: config.name, runDir, config, check: result, audit, retentionEffects, durationS, ackedPerSecond: result.acked / enqueueSpan, secure };
  const commit = commitUnderTest;
  await writeFile(path.join(runDir, 'results.json'), `${JSON.stringify({ commit, ...run }, null, 2)}\n`);
  await writeFile(path.join(runDir, 'report.html'), renderReport({ run, ops: history.ops, samples, commit }));
  await writeFile(path.join(runDir, 'nodes.jsonl'), samples.map((sample) => JSON.stringify(sample)).join('\n'));
  log(`${result.verdict.toUpperCase()}: acked ${result.acked}, lost ${result.lost} (below a first offset ${result.lostBelowFirstOffset}), released ${result.released}, unexpected ${result.unexpected}, duplicated ${result.duplicated.length}, divergence ${result.divergence}, committed-log conflicts ${result.committedLogConflicts}, leader changes ${result.effects.leaderChanges}, faults ${result.effects.faultEvents}${result.reasons.length > 0 ? ` — ${result.reasons.join('; ')}` : ''}`);
  log(`snapshots installed ${installs} (${Object.entries(retentionEffects.snapshotsInstalled).map(([id, n]) => `${id} ${n}`).join(', ')}), compacted nodes ${audit?.compactedNodes ?? '?'} (first index at the end ${Object.entries(retentionEffects.firstIndexAtEnd).map(([id, n]) => `${id} ${n}`).join(', ')}), retained from index ${audit?.retainedFrom ?? '?'}, first offsets ${audit?.firstOffsets.join('/') ?? '?'}, reads that jumped over released offsets ${result.skipsOverReleased}`);
  const d = result.delay;
  if (d !== null) {
    const ms = (l: Lateness | null): string => (l === null ? 'none' : `p50 ${l.p50Ms.toFixed(0)} / p99 ${l.p99Ms.toFixed(0)} / max ${l.maxMs.toFixed(0)} ms`);
    log(`delayed: acked ${d.acked}, unknown ${d.indeterminate} (${d.recovered} delivered), failed ${d.failed}; early ${d.early}, visible early ${d.visibleEarly}, lost ${d.lost}, late ${d.late} (bound ${d.latenessBoundMs} ms), duplicated ${d.duplicated}, redelivered ${d.redelivered}${delayDrained ? '' : ', drain incomplete'}; lateness after due ${ms(d.lateness)}, after max(due, heal) ${ms(d.latenessAfterHeal)}, fire lag ${ms(d.fireLag)}; timed entries ${retentionEffects.logWatch?.timedEntries ?? '?'}, timer fires ${retentionEffects.logWatch?.timerFires ?? '?'}`);
    if (d.lost > 0) log(`lost delayed values (committed index per the log watcher): ${d.lostValues.slice(0, 10).map((v) => `${v}@${watch?.committedIndexOf(v) ?? 'none'}`).join(', ')}`);
    if (d.early > 0) log(`early delayed values: ${d.earlyValues.slice(0, 10).map((e) => `${e.value} due ${e.dueMs} received ${e.receivedMs} by ${e.by}`).join('; ')}`);
  }
  const t = result.transactions;
  if (t !== null) {
    const ms = (l: Lateness | null): string => (l === null ? 'none' : `p50 ${l.p50Ms.toFixed(0)} / p99 ${l.p99Ms.toFixed(0)} / max ${l.maxMs.toFixed(0)} ms`);
    log(`transactions: halves acked ${t.acked} (${Object.entries(t.ackedByFate).map(([fate, n]) => `${fate} ${n}`).join(', ')}), unknown ${t.indeterminate} (${t.recovered} delivered), failed ${t.failed}; `
      + `committed ${t.committed}, rolled back ${t.rolledBack} (ends failed ${t.endFailed}, unknown ${t.endUnknown}); abandoned→committed by check-back ${t.abandonedCommitted}, commits finished by check-back ${t.commitFinishedByCheckBack}, `
      + `abandoned→rolled back ${t.abandonedRolledBack}, rolled back after the last check ${t.unansweredRolledBack} (late commits refused ${t.lateCommitRefused}, accepted ${t.lateCommitAccepted}, unknown ${t.lateCommitUnknown}); `
      + `lost ${t.lost} (committed OK ${t.lostCommitted}), rolled-back delivered ${t.rolledBackDelivered}, late ${t.late} (bound ${t.latenessBoundMs} ms), duplicated ${t.duplicated}, visible before commit ${t.visibleBeforeCommit}, `
      + `checked early ${t.checkedEarly}, not rolled back ${t.notRolledBack}, state mismatches ${t.stateMismatch} (unknown ${t.stateUnknown}), unexpected ${t.unexpected}, redelivered ${t.redelivered}${txnDrained ? '' : ', drain incomplete'}; `
      + `check-backs ${t.checkBacks} over ${t.valuesCheckedBack} values (unanswered asked ${t.unansweredAsks === null ? 'never' : `p50 ${t.unansweredAsks.p50Ms} / max ${t.unansweredAsks.maxMs}`} times); `
      + `first check-back after the half's ack ${ms(t.checkBackLatency)}; abandoned→delivered ${ms(t.checkBackDelivery)}; delivered after COMMIT ${ms(t.deliveryAfterCommit)}; after max(due, heal) ${ms(t.latenessAfterHeal)}`);
    if (t.lost > 0) log(`lost transactional values: ${t.lostValues.slice(0, 10).join(', ')}`);
    if (t.rolledBackDelivered > 0) log(`rolled-back values delivered: ${t.rolledBackDeliveredValues.slice(0, 10).join(', ')}`);
    if (t.stateMismatch > 0) log(`state mismatches: ${t.stateMismatchValues.slice(0, 10).map((m) => JSON.stringify(m)).join('; ')}`);
  }
  if (secure !== undefined) log(`secure: calls refused by the access gate during the run ${secure.accessRefusals}`);
  const staleReads = retentionEffects.logWatch?.staleReads ?? 0;
  if (staleReads > 0) log(`WARNING: ReadCommitted answered ${staleReads} entries as committed that the node then replaced (a broker bug, see log-watch.ts): ${retentionEffects.logWatch?.staleReadDetails.slice(0, 3).join('; ')}`);
  log(`report: ${path.join(runDir, 'report.html')}`);
  return run;
}

/** Snapshot installs from the node logs, first indexes from the audit and the status poller, the log watcher's summary, the first offsets the drain began with. */
async function observeRetention(runDir: string, config: RunConfig, history: History, samples: readonly NodeSample[], audit: AuditResult | undefined, watch: LogWatch | undefined): Promise<RetentionEffects> {
  const ids = Array.from({ length: config.nodes }, (_, i) => `n${i + 1}`);
  const snapshotsInstalled: Record<string, number> = {};
  for (const id of ids) {
    const text = await readFile(path.join(runDir, 'logs', `${id}.log`), 'utf8').catch(() => '');
    snapshotsInstalled[id] = text.split('\n').filter((line) => line.includes('installed a snapshot from the leader')).length;
  }
  const firstIndexMaxSeen: Record<string, number> = {};
  for (const sample of samples) firstIndexMaxSeen[sample.nodeId] = Math.max(firstIndexMaxSeen[sample.nodeId] ?? 0, sample.firstIndex ?? 0);
  return {
    snapshotsInstalled, firstIndexAtEnd: Object.fromEntries((audit?.nodes ?? []).map((n) => [n.nodeId, n.firstIndex])), firstIndexMaxSeen,
    logWatch: watch?.summary(), drainFirstOffsets: history.ops.find((op) => op.f === 'drain-first-offsets')?.value,
  };
}
