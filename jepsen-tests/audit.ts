/**
 * The replica audit (W3), after the drain with every node up. Each node's state is rebuilt
 * from that node alone, with the broker's apply code: its newest snapshot on disk that its
 * log continues (the snapshot holds the state before the log's first index once the log was
 * compacted), then its committed log after it, read from the node. Then:
 * - the committed logs are compared entry by entry over the range every node still holds;
 * - the rebuilt states are compared whole (BrokerState digest) between nodes at the same
 *   commit index, and the consume queues offset by offset over the offsets every node holds;
 * - every offset a node's queue still holds must be readable: from the node's own log, or,
 *   for a node restored by InstallSnapshot whose log starts after entries its queues still
 *   point at, from a peer's log (as the broker itself reads them); held by no node is a loss;
 * - every acknowledged send must be on every node at the queue and offset it was acknowledged
 *   with, or below that node's first offset of the queue (released by retention). A release
 *   counts only when the committed-log watcher saw the value's entry committed by a majority
 *   at an index below the node's first retained index (BrokerState.retainedFrom); anything
 *   else missing is missing, however low its offset.
 * A node's snapshot names records in its consume-queue, dedup, timer and message-index files;
 * they are read (read only) into a snapshot that carries them, and the rebuilt state keeps
 * them in memory, its message index included (the digest covers the index, so the nodes'
 * indexes are compared too).
 */
import { readdir, readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { BrokerStateMachine } from '../src/broker/broker-state-machine.js';
import { defaultBrokerStateLimits } from '../src/broker/core/broker-state.js';
import { memoryQueueRecordStore } from '../src/broker/core/consume-queue.js';
import { memoryDedupRecordStore } from '../src/broker/core/dedup-window.js';
import { MemoryMessageIndexStore } from '../src/broker/core/message-index.js';
import { MemoryTimerStore } from '../src/broker/core/timer-store.js';
import { readMessageAt } from '../src/broker/core/entry-codec.js';
import { RaftNodeClient, type CommittedEntry, type RaftNodeClientOptions } from '../src/client/raft-node-client.js';
import { parseSnapshotFile, parseSnapshotFileName } from '../src/commitlog/snapshot-store.js';
import type { EntryKind, SnapshotMeta } from '../src/raft/types.js';
import { QueueFileStore } from '../src/server/consume-queue-files.js';
import { DedupFileStore } from '../src/server/dedup-files.js';
import { fileIndexLayoutDefault, MessageIndexFileStore } from '../src/server/message-index-files.js';
import { TimerFileStore } from '../src/server/timer-files.js';
import { setTimeout as sleep } from 'node:timers/promises';

export interface NodeAudit {
  readonly nodeId: string;
  readonly commitIndex: number;
  /** The first index the node's log still holds (> 1: compacted). */
  readonly firstIndex: number;
  /** Committed entries read from the node (firstIndex through commitIndex). */
  readonly entries: number;
  /** The snapshot on disk the rebuild started from (0: none, from the empty state). */
  readonly snapshotIndex: number;
  /** The first log index retention has not released (BrokerState.retainedFrom). */
  readonly retainedFrom: number;
  /** Per queue: the first offset still held (everything below was released). */
  readonly queueFirstOffsets: number[];
  /** Per queue: the next offset to be written (messages ever stored). */
  readonly queueLengths: number[];
  /** Acknowledged sends this node released with proof (see the module comment). */
  readonly released: number;
  /** Retained offsets whose entry is before this node's log (restored by InstallSnapshot), read from a peer. */
  readonly retainedOnlyOnPeers: number;
  readonly digest: string;
}

export interface AuditResult {
  readonly nodes: NodeAudit[];
  readonly divergence: number;
  readonly details: string[];
  /** Acknowledged sends some node holds neither at their acknowledged (queue, offset) nor as a proven release. */
  readonly ackedMissing: number;
  /** Per queue: the lowest first offset of any node (the checker treats offsets below it as released if proven). */
  readonly firstOffsets: number[];
  /** The lowest retainedFrom of any node. */
  readonly retainedFrom: number;
  /** Nodes whose log's first index is above 1 (compacted under a snapshot). */
  readonly compactedNodes: number;
}

interface Column {
  readonly first: number;
  readonly max: number;
  /** Values at offsets first..max-1 (undefined: no node's log holds the entry). */
  readonly values: Array<string | undefined>;
  /** Offsets whose entry is before this node's own log (read from a peer). */
  readonly fromPeers: number;
}

interface Replica {
  readonly id: string;
  readonly machine: BrokerStateMachine;
  readonly firstIndex: number;
  readonly commitIndex: number;
  readonly entries: CommittedEntry[];
  readonly snapshotIndex: number;
  readonly retainedFrom: number;
  columns: Column[];
  readonly digest: string;
}

interface ParsedSnapshot { readonly meta: SnapshotMeta; readonly data: Uint8Array }

/** Every valid snapshot file in `dir`, newest first (files pruned while being listed are skipped). */
async function snapshotsOnDisk(dir: string): Promise<ParsedSnapshot[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const out: ParsedSnapshot[] = [];
  for (const name of names) {
    const index = parseSnapshotFileName(name);
    if (index === undefined) continue;
    const bytes = await readFile(path.join(dir, name)).catch(() => undefined);
    if (bytes === undefined) continue;
    const parsed = parseSnapshotFile(new Uint8Array(bytes), index);
    if (parsed.ok) out.push({ meta: parsed.meta, data: parsed.data });
  }
  return out.sort((a, b) => b.meta.index - a.meta.index);
}

/**
 * One node: its committed log from its first index, and the newest snapshot its log continues
 * (index between firstIndex - 1 and the commit index). Retried when the node compacted or
 * pruned between the reads.
 */
async function readReplica(client: RaftNodeClient, id: string, address: string, snapshotDir: string): Promise<Replica> {
  let lastError: Error | undefined;
  for (let attempt = 0; attempt < 6; attempt++) {
    try {
      const status = await client.status(address, 2_000);
      const firstIndex = Math.max(1, Number(status.firstIndex));
      const entries = await client.readAllCommitted(address, firstIndex);
      const commitIndex = entries[entries.length - 1]?.index ?? firstIndex - 1;
      if (entries.length > 0 && (entries[0] as CommittedEntry).index !== firstIndex) throw new Error(`the log read from ${firstIndex} starts at ${(entries[0] as CommittedEntry).index}`);
      const snapshot = (await snapshotsOnDisk(snapshotDir)).find((s) => s.meta.index <= commitIndex && s.meta.index >= firstIndex - 1);
      if (snapshot === undefined && firstIndex > 1) throw new Error(`no snapshot on disk between ${firstIndex - 1} and ${commitIndex}, and the log starts at ${firstIndex}`);
      return rebuild(id, firstIndex, commitIndex, entries, snapshot, path.dirname(snapshotDir));
    } catch (error) {
      lastError = error as Error;
      await sleep(500);
    }
  }
  throw lastError ?? new Error('unreadable');
}

function rebuild(id: string, firstIndex: number, commitIndex: number, entries: CommittedEntry[], snapshot: ParsedSnapshot | undefined, dataDir: string): Replica {
  // Every node is rebuilt alike, its message index in memory in the nodes' file layout (the
  // digest covers the index and its layout, so a node rebuilt from no snapshot compares equal).
  const machine = new BrokerStateMachine(defaultBrokerStateLimits, memoryQueueRecordStore, memoryDedupRecordStore, new MemoryTimerStore(), new MemoryMessageIndexStore(fileIndexLayoutDefault));
  const snapshotIndex = snapshot?.meta.index ?? 0;
  if (snapshot !== undefined) {
    // The node's snapshots count records in its queue, dedup, timer and index files: read them
    // (read only, the node is running) into a snapshot that carries them, as one sent to a peer would.
    const files = new BrokerStateMachine(
      defaultBrokerStateLimits, new QueueFileStore({ dir: path.join(dataDir, 'queues') }), new DedupFileStore({ dir: path.join(dataDir, 'dedup') }).reader(),
      new TimerFileStore({ dir: path.join(dataDir, 'timers') }).reader(), new MessageIndexFileStore({ dir: path.join(dataDir, 'index') }).reader(),
    );
    const withRecords = files.snapshotWithRecords(snapshot.data);
    machine.restore(withRecords, snapshot.meta);
  }
  machine.apply(entries.filter((e) => e.index > snapshotIndex).map((e) => ({ index: e.index, term: e.term, kind: e.kind as EntryKind, payload: e.payload })));
  const state = machine.state;
  return { id, machine, firstIndex, commitIndex, entries, snapshotIndex, retainedFrom: state.retainedFrom, columns: [], digest: state.digest() };
}

const entryAt = (replica: Replica, index: number): CommittedEntry | undefined => replica.entries[index - replica.firstIndex];

/** Each queue's values, from the node's own log or else from a peer that holds the entry. */
function readColumns(replica: Replica, all: readonly Replica[], topic: string, queues: number): Column[] {
  const columns: Column[] = [];
  for (let q = 0; q < queues; q++) {
    const queue = replica.machine.state.queue(topic, q);
    const first = queue?.minOffset ?? 0;
    const max = queue?.maxOffset ?? 0;
    const values: Array<string | undefined> = [];
    let fromPeers = 0;
    for (let offset = first; offset < max; offset++) {
      const index = queue?.logIndexAt(offset) ?? 0;
      let entry = entryAt(replica, index);
      if (entry === undefined) {
        entry = all.map((peer) => entryAt(peer, index)).find((e) => e !== undefined);
        if (entry !== undefined) fromPeers++;
      }
      values.push(entry === undefined ? undefined : Buffer.from(readMessageAt(entry.payload, queue?.positionAt(offset) ?? 0).body).toString());
    }
    columns.push({ first, max, values, fromPeers });
  }
  return columns;
}

export async function auditReplicas(
  members: ReadonlyArray<{ id: string; address: string; dataDir: string }>, topic: string, queues: number,
  acked: ReadonlyMap<string, { queue: number; offset: number }>, committedIndexOf: (value: string) => number | undefined, settleMs: number,
  /** TLS and a signature for the Raft admin service (a secure run's auditor, security.ts). */
  clientOptions: RaftNodeClientOptions = {},
): Promise<AuditResult> {
  const client = new RaftNodeClient(members.map((m) => m.address), clientOptions);
  const details: string[] = [];
  let divergence = 0;
  try {
    // Let followers catch up: wait until every node reports the same commit index.
    const deadline = Date.now() + settleMs;
    for (;;) {
      const statuses = await client.statusAll(1_000);
      const commits = new Set(statuses.map((s) => s.status?.commitIndex ?? -1));
      if ((commits.size === 1 && !commits.has(-1)) || Date.now() >= deadline) break;
      await sleep(200);
    }
    const replicas: Replica[] = [];
    for (const member of members) {
      try {
        replicas.push(await readReplica(client, member.id, member.address, path.join(member.dataDir, 'snapshots')));
      } catch (error) {
        divergence++;
        details.push(`${member.id}: could not be read for the audit: ${(error as Error).message}`);
      }
    }
    for (const replica of replicas) replica.columns = readColumns(replica, replicas, topic, queues);
    for (const replica of replicas) {
      for (let q = 0; q < queues; q++) {
        const column = replica.columns[q] as Column;
        const gone = column.values.findIndex((v) => v === undefined);
        if (gone >= 0) {
          divergence++;
          details.push(`${replica.id}: queue ${q} holds offsets ${column.first}..${column.max - 1}, but no node's log holds the entry of offset ${column.first + gone} (log index ${replica.machine.state.queue(topic, q)?.logIndexAt(column.first + gone)}; this node's log starts at ${replica.firstIndex}): retained but deleted`);
        }
      }
    }
    const reference = replicas[0];
    for (const replica of replicas.slice(1)) {
      if (reference === undefined) break;
      const from = Math.max(reference.firstIndex, replica.firstIndex);
      const through = Math.min(reference.commitIndex, replica.commitIndex);
      for (let index = from; index <= through; index++) {
        const a = reference.entries[index - reference.firstIndex];
        const b = replica.entries[index - replica.firstIndex];
        if (a === undefined || b === undefined || a.index !== b.index || a.term !== b.term || !Buffer.from(a.payload).equals(Buffer.from(b.payload))) {
          divergence++;
          details.push(`committed logs of ${reference.id} and ${replica.id} differ at index ${index} (terms ${a?.term ?? 'none'} / ${b?.term ?? 'none'})`);
          break;
        }
      }
      if (reference.commitIndex === replica.commitIndex && reference.digest !== replica.digest) {
        divergence++;
        details.push(`the broker states of ${reference.id} and ${replica.id} differ at commit index ${replica.commitIndex} (digests ${reference.digest.slice(0, 12)} / ${replica.digest.slice(0, 12)}; rebuilt from snapshots ${reference.snapshotIndex} / ${replica.snapshotIndex})`);
      } else if (reference.commitIndex !== replica.commitIndex) {
        details.push(`${reference.id} and ${replica.id} settled at different commit indexes (${reference.commitIndex} / ${replica.commitIndex}): states not compared whole`);
      }
      for (let q = 0; q < queues; q++) {
        const left = reference.columns[q] as Column;
        const right = replica.columns[q] as Column;
        for (let offset = Math.max(left.first, right.first); offset < Math.min(left.max, right.max); offset++) {
          if (left.values[offset - left.first] !== right.values[offset - right.first]) {
            divergence++;
            details.push(`consume queue ${q} of ${reference.id} and ${replica.id} differ at offset ${offset}`);
            break;
          }
        }
      }
    }
    let ackedMissing = 0;
    const released = new Map<string, number>();
    const missing = (text: string): void => {
      ackedMissing++;
      if (ackedMissing <= 20) details.push(text);
    };
    for (const [value, { queue, offset }] of acked) {
      for (const replica of replicas) {
        const column = replica.columns[queue] ?? { first: 0, max: 0, values: [] };
        if (offset >= column.max) {
          missing(`${replica.id} holds nothing at queue ${queue} offset ${offset} (its queue ends at ${column.max}), acknowledged as ${value}`);
        } else if (offset >= column.first) {
          const held = column.values[offset - column.first];
          if (held !== value) missing(`${replica.id} holds ${held === undefined ? 'nothing readable' : JSON.stringify(held)} at queue ${queue} offset ${offset}, acknowledged as ${value}`);
        } else {
          const index = committedIndexOf(value);
          if (index !== undefined && index < replica.retainedFrom) released.set(replica.id, (released.get(replica.id) ?? 0) + 1);
          else missing(`${replica.id} released queue ${queue} offset ${offset} (below its first offset ${column.first}), acknowledged as ${value}, but ${index === undefined ? 'no majority of nodes reported it committed' : `its entry ${index} is at or after the first retained index ${replica.retainedFrom}`}`);
        }
      }
    }
    divergence += ackedMissing;
    const nodes = replicas.map((r): NodeAudit => ({
      nodeId: r.id, commitIndex: r.commitIndex, firstIndex: r.firstIndex, entries: r.entries.length, snapshotIndex: r.snapshotIndex, retainedFrom: r.retainedFrom,
      queueFirstOffsets: r.columns.map((c) => c.first), queueLengths: r.columns.map((c) => c.max), released: released.get(r.id) ?? 0, retainedOnlyOnPeers: r.columns.reduce((sum, c) => sum + c.fromPeers, 0), digest: r.digest.slice(0, 16),
    }));
    const firstOffsets = Array.from({ length: queues }, (_, q) => Math.min(...replicas.map((r) => (r.columns[q] as Column).first)));
    return {
      nodes, divergence, details, ackedMissing, firstOffsets: replicas.length === 0 ? Array.from({ length: queues }, () => 0) : firstOffsets,
      retainedFrom: replicas.length === 0 ? 1 : Math.min(...replicas.map((r) => r.retainedFrom)), compactedNodes: replicas.filter((r) => r.firstIndex > 1).length,
    };
  } finally {
    client.close();
  }
}
