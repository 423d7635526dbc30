/**
 * The replica audit (W3), after the drain with every node up: each node's committed log is
 * read from that node, the logs are compared entry by entry over their common prefix, and
 * each node's consume queues are rebuilt from its own log with the broker's apply code and
 * compared across nodes and against every acknowledged send (queue, offset, value).
 */
import { BrokerStateMachine } from '../src/broker/broker-state-machine.js';
import { readMessageAt } from '../src/broker/core/entry-codec.js';
import { RaftNodeClient, type CommittedEntry } from '../src/client/raft-node-client.js';
import type { EntryKind } from '../src/raft/types.js';
import { setTimeout as sleep } from 'node:timers/promises';

export interface NodeAudit {
  readonly nodeId: string;
  readonly commitIndex: number;
  readonly entries: number;
  readonly queueLengths: number[];
}

export interface AuditResult {
  readonly nodes: NodeAudit[];
  readonly divergence: number;
  readonly details: string[];
  /** Acknowledged sends some node does not hold at their acknowledged (queue, offset). */
  readonly ackedMissing: number;
}

/** Per node: its committed entries and the values of its rebuilt consume queues. */
async function readReplica(client: RaftNodeClient, address: string, topic: string, queues: number): Promise<{ entries: CommittedEntry[]; values: string[][] }> {
  const entries = await client.readAllCommitted(address, 1);
  const machine = new BrokerStateMachine();
  machine.apply(entries.map((e) => ({ index: e.index, term: e.term, kind: e.kind as EntryKind, payload: e.payload })));
  const first = entries[0]?.index ?? 1;
  const values: string[][] = [];
  for (let q = 0; q < queues; q++) {
    const queue = machine.state.queue(topic, q);
    const column: string[] = [];
    for (let offset = 0; offset < (queue?.maxOffset ?? 0); offset++) {
      const entry = entries[(queue?.logIndexAt(offset) ?? 0) - first] as CommittedEntry;
      column.push(Buffer.from(readMessageAt(entry.payload, queue?.positionAt(offset) ?? 0).body).toString());
    }
    values.push(column);
  }
  return { entries, values };
}

export async function auditReplicas(
  members: ReadonlyArray<{ id: string; address: string }>, topic: string, queues: number,
  acked: ReadonlyMap<string, { queue: number; offset: number }>, settleMs: number,
): Promise<AuditResult> {
  const client = new RaftNodeClient(members.map((m) => m.address));
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
    const replicas = [];
    for (const member of members) {
      try {
        replicas.push({ id: member.id, ...(await readReplica(client, member.address, topic, queues)) });
      } catch (error) {
        divergence++;
        details.push(`${member.id}: could not be read for the audit: ${(error as Error).message}`);
      }
    }
    const reference = replicas[0];
    for (const replica of replicas.slice(1)) {
      if (reference === undefined) break;
      const common = Math.min(reference.entries.length, replica.entries.length);
      for (let i = 0; i < common; i++) {
        const a = reference.entries[i] as CommittedEntry;
        const b = replica.entries[i] as CommittedEntry;
        if (a.index !== b.index || a.term !== b.term || !Buffer.from(a.payload).equals(Buffer.from(b.payload))) {
          divergence++;
          details.push(`committed logs of ${reference.id} and ${replica.id} differ at index ${a.index} (terms ${a.term} / ${b.term})`);
          break;
        }
      }
      for (let q = 0; q < queues; q++) {
        const left = reference.values[q] ?? [];
        const right = replica.values[q] ?? [];
        const mismatch = left.findIndex((value, offset) => offset < right.length && right[offset] !== value);
        if (mismatch >= 0) {
          divergence++;
          details.push(`consume queue ${q} of ${reference.id} and ${replica.id} differ at offset ${mismatch}`);
        }
      }
    }
    let ackedMissing = 0;
    for (const [value, { queue, offset }] of acked) {
      for (const replica of replicas) {
        const held = replica.values[queue]?.[offset];
        if (held === value) continue;
        ackedMissing++;
        if (ackedMissing <= 20) details.push(`${replica.id} holds ${held === undefined ? 'nothing' : JSON.stringify(held)} at queue ${queue} offset ${offset}, acknowledged as ${value}`);
      }
    }
    divergence += ackedMissing;
    const nodes = replicas.map((r) => ({ nodeId: r.id, commitIndex: r.entries[r.entries.length - 1]?.index ?? 0, entries: r.entries.length, queueLengths: r.values.map((v) => v.length) }));
    return { nodes, divergence, details, ackedMissing };
  } finally {
    client.close();
  }
}
