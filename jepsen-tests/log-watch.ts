/**
 * The committed-log watcher: for the whole run, one loop per node reads that node's committed
 * log as it grows (ReadCommitted from where the loop stopped), so the harness learns where every
 * message was stored before retention and compaction delete the entry. It gives:
 *
 * - `committedIndexOf(value)`: the log index of the entry that carried a value, but only when a
 *   majority of the nodes reported that very entry (index, term, payload) as committed and no
 *   node ever reported another entry committed at that index. This is the evidence the checker
 *   needs before it calls an acknowledged value that the drain did not find "released by
 *   retention" instead of lost: a value an unsafe leader acknowledged alone has no such index.
 * - `conflicts`: indexes at which two reports of a committed entry differ (two nodes, or one
 *   node at two times). A committed entry never changes, so each one is a safety violation.
 *   Only entries at or below the node's applied index (asked just before the read) count as
 *   reports: ReadCommitted pairs the Raft core's commit index with the entries on disk, and a
 *   follower's core moves its commit index when it accepts a leader's entries, before they
 *   replace its old tail on disk, so for a moment ReadCommitted can answer a deposed leader's
 *   stale tail as committed. Applied entries were read back from disk after the replacement.
 * - `staleReads`: entries ReadCommitted returned as committed (above the applied index) that the
 *   same node later reported differently once applied: that API race, seen (a broker bug, not
 *   a loss: nothing acknowledged depends on it, but a reader of ReadCommitted is misled).
 * - `gaps`: entries a node deleted (compaction, or a log reset by InstallSnapshot) before this
 *   watcher read them: they are simply not seen on that node.
 * - the retention cuts seen in the log (`retention` entries' throughIndex).
 *
 * Message entries are of several kinds (entry-codec.ts: Messages, TimedMessages, HalfMessages);
 * every kind `isMessagesKind` accepts is decoded. It matters: the broker coalesces every send
 * of one event-loop turn into one entry, whatever its topic, and a batch holding any delayed
 * message is TimedMessages as a whole, so with the delay workload running some of the queue
 * workload's values are in TimedMessages entries too (about 8 % in a smoke run); read as
 * Messages only, they would have no committed index and, under retention, could not be
 * proven released. (A delayed message's delivery is a `timer.fire` command that names no
 * value: the value's index is its send entry's.)
 */
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { PayloadKind, isMessagesKind, readCommand, readHeader, readMessageAt, readRouting } from '../src/broker/core/entry-codec.js';
import { RaftNodeClient, type CommittedEntry, type RaftNodeClientOptions } from '../src/client/raft-node-client.js';

interface IndexRecord {
  readonly term: number;
  readonly hash: string;
  readonly nodes: Set<string>;
  conflict: boolean;
}

export interface LogWatchSummary {
  /** Distinct committed entries seen. */
  readonly entriesSeen: number;
  /** Entries seen per node (each node's committed log, as far as it still held it when read). */
  readonly entriesSeenPerNode: Record<string, number>;
  /** Entries a node had deleted before the watcher read them, per node. */
  readonly gapsPerNode: Record<string, number>;
  /** Indexes with two different committed entries (at most 20 described). */
  readonly conflicts: number;
  readonly conflictDetails: string[];
  /** Entries ReadCommitted answered as committed that the node later replaced (at most 20 described). */
  readonly staleReads: number;
  readonly staleReadDetails: string[];
  /** The highest retention cut seen in a committed `retention` entry (0: none). */
  readonly retentionThroughMax: number;
  readonly retentionEntries: number;
  /** Messages of the watched topics seen in committed entries (distinct values). */
  readonly valuesSeen: number;
  /** Committed entries of kind TimedMessages (batches holding a delayed message). */
  readonly timedEntries: number;
  /** Committed `timer.fire` commands. */
  readonly timerFires: number;
}

export class LogWatch {
  private readonly client: RaftNodeClient;
  private readonly byIndex = new Map<number, IndexRecord>();
  private readonly indexesOfValue = new Map<string, number[]>();
  private readonly seenPerNode = new Map<string, number>();
  private readonly gapsPerNode = new Map<string, number>();
  private readonly conflictDetails: string[] = [];
  private conflictCount = 0;
  /** nodeId:index → an entry read above the node's applied index, to compare with the applied one. */
  private readonly provisional = new Map<string, { readonly term: number; readonly hash: string; readonly commitIndex: number; readonly appliedIndex: number }>();
  private readonly staleReadDetails: string[] = [];
  private staleReadCount = 0;
  private retentionThroughMax = 0;
  private retentionEntries = 0;
  private timedEntries = 0;
  private timerFires = 0;
  private readonly topics: ReadonlySet<string>;
  private running = true;
  private readonly loops: Promise<void>[] = [];
  readonly quorum: number;

  /**
   * `topics`: the topics whose message values are tracked (the queue workload's, and the delay workload's if any);
   * `clientOptions`: TLS and a signature for the Raft admin service (a secure run's auditor, security.ts).
   */
  constructor(private readonly members: ReadonlyArray<{ id: string; address: string }>, topics: string | readonly string[], private readonly intervalMs = 200, clientOptions: RaftNodeClientOptions = {}) {
    this.topics = new Set(typeof topics === 'string' ? [topics] : topics);
    this.client = new RaftNodeClient(members.map((m) => m.address), clientOptions);
    this.quorum = Math.floor(members.length / 2) + 1;
  }

  start(): void {
    for (const member of this.members) this.loops.push(this.watch(member.id, member.address));
  }

  /** Reads every node up to its commit index once more (with every node up), then stops. */
  async stop(): Promise<void> {
    await sleep(3 * this.intervalMs);
    this.running = false;
    await Promise.all(this.loops);
    this.client.close();
  }

  /** See the module comment: a majority-vouched, never-contradicted index, or undefined. */
  committedIndexOf(value: string): number | undefined {
    let best: number | undefined;
    for (const index of this.indexesOfValue.get(value) ?? []) {
      const record = this.byIndex.get(index);
      if (record === undefined || record.conflict || record.nodes.size < this.quorum) continue;
      best = Math.max(best ?? 0, index); // stored twice: the later one decides
    }
    return best;
  }

  summary(): LogWatchSummary {
    return {
      entriesSeen: this.byIndex.size, entriesSeenPerNode: Object.fromEntries(this.seenPerNode), gapsPerNode: Object.fromEntries(this.gapsPerNode),
      conflicts: this.conflictCount, conflictDetails: this.conflictDetails.slice(0, 20), staleReads: this.staleReadCount, staleReadDetails: this.staleReadDetails.slice(0, 20),
      retentionThroughMax: this.retentionThroughMax, retentionEntries: this.retentionEntries, valuesSeen: this.indexesOfValue.size,
      timedEntries: this.timedEntries, timerFires: this.timerFires,
    };
  }

  private async watch(nodeId: string, address: string): Promise<void> {
    let next = 1;
    while (this.running) {
      try {
        const applied = Number((await this.client.status(address, 2_000)).appliedIndex);
        const { entries, commitIndex } = await this.client.readCommitted(address, next, 2_000);
        let trusted = 0;
        for (const entry of entries) {
          if (entry.index <= applied) {
            this.observe(nodeId, entry);
            trusted++;
          } else {
            this.noteProvisional(nodeId, entry, commitIndex, applied);
          }
        }
        const last = entries[trusted - 1];
        if (last !== undefined) next = last.index + 1;
        if (trusted < entries.length || last === undefined || last.index >= commitIndex) await sleep(this.intervalMs);
      } catch (error) {
        const deleted = /deleted by retention; the first index is (\d+)/.exec((error as Error).message);
        if (deleted !== null && Number(deleted[1]) > next) {
          this.gapsPerNode.set(nodeId, (this.gapsPerNode.get(nodeId) ?? 0) + Number(deleted[1]) - next);
          next = Number(deleted[1]);
          continue;
        }
        await sleep(this.intervalMs); // down, paused, starting: try again
      }
    }
  }

  private noteProvisional(nodeId: string, entry: CommittedEntry, commitIndex: number, appliedIndex: number): void {
    const key = `${nodeId}:${entry.index}`;
    if (this.provisional.has(key)) return; // the first answer is the one to hold against it
    this.provisional.set(key, { term: entry.term, hash: createHash('sha256').update(Buffer.from(entry.payload)).digest('hex'), commitIndex, appliedIndex });
  }

  private observe(nodeId: string, entry: CommittedEntry): void {
    const payload = Buffer.from(entry.payload);
    const hash = createHash('sha256').update(payload).digest('hex');
    const key = `${nodeId}:${entry.index}`;
    const early = this.provisional.get(key);
    if (early !== undefined) {
      this.provisional.delete(key);
      if (early.term !== entry.term || early.hash !== hash) {
        this.staleReadCount++;
        if (this.staleReadDetails.length < 20) {
          this.staleReadDetails.push(`${nodeId} answered ReadCommitted with entry ${entry.index} term ${early.term} (${early.hash.slice(0, 10)}) under commit index ${early.commitIndex}, applied ${early.appliedIndex}; once applied the entry was term ${entry.term} (${hash.slice(0, 10)})`);
        }
      }
    }
    const known = this.byIndex.get(entry.index);
    this.seenPerNode.set(nodeId, (this.seenPerNode.get(nodeId) ?? 0) + 1);
    if (known !== undefined) {
      if (known.term === entry.term && known.hash === hash) {
        known.nodes.add(nodeId);
      } else {
        if (!known.conflict) this.conflictCount++;
        known.conflict = true;
        if (this.conflictDetails.length < 20) {
          this.conflictDetails.push(`committed entry ${entry.index} changed: ${[...known.nodes].join('/')} reported term ${known.term} (${known.hash.slice(0, 10)}), ${nodeId} reported term ${entry.term} (${hash.slice(0, 10)})`);
        }
      }
      return;
    }
    this.byIndex.set(entry.index, { term: entry.term, hash, nodes: new Set([nodeId]), conflict: false });
    this.decode(entry.index, payload);
  }

  /** Notes the values (bodies of messages of the watched topics), timed batches, timer fires and retention cuts an entry carries. */
  private decode(index: number, payload: Buffer): void {
    let kind: PayloadKind;
    try {
      kind = readHeader(payload).kind;
    } catch {
      return; // Raft's own entries (no-op, configuration)
    }
    try {
      if (isMessagesKind(kind)) {
        if (kind === PayloadKind.TimedMessages) this.timedEntries++;
        readRouting(payload).forEach((routing, position) => {
          if (!this.topics.has(routing.topic)) return;
          const value = Buffer.from(readMessageAt(payload, position).body).toString();
          const indexes = this.indexesOfValue.get(value);
          if (indexes === undefined) this.indexesOfValue.set(value, [index]);
          else if (!indexes.includes(index)) indexes.push(index);
        });
      } else if (kind === PayloadKind.Command) {
        const command = readCommand(payload) as { op?: string; throughIndex?: number };
        if (command.op === 'timer.fire') this.timerFires++;
        if (command.op === 'retention' && typeof command.throughIndex === 'number') {
          this.retentionEntries++;
          this.retentionThroughMax = Math.max(this.retentionThroughMax, command.throughIndex);
        }
      }
    } catch {
      // Not decodable as a broker entry: the apply code skips it too.
    }
  }
}
