import * as grpc from '@grpc/grpc-js';
import { signRequest, type Credentials } from '../util/request-signature.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadProtoFile } from '../util/proto-files.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader objects are untyped at this edge */

const definition = loadProtoFile('raftnode.proto');
/** Upper bound on the payload bytes of one ProposeBatch message. */
const batchBytesMax = 4 * 1024 * 1024;

const AdminClient = (grpc.loadPackageDefinition(definition) as any).raftmq.raftnode.v1.RaftNodeAdmin as grpc.ServiceClientConstructor;

/**
 * Every error says whether the outcome is definite (the entry was not and will not be
 * committed; safe to retry) or unknown (it may have been committed).
 */
export class RaftClientError extends Error {
  override readonly name = 'RaftClientError';
  constructor(readonly code: string, message: string, readonly definite: boolean, options?: ErrorOptions) {
    super(message, options);
  }
}

export interface NodeStatus {
  readonly groupId: string;
  readonly nodeId: string;
  readonly address: string;
  readonly role: string;
  readonly term: number;
  readonly leaderId: string;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly lastIndex: number;
  readonly firstIndex: number;
  readonly pid: number;
  readonly members: ReadonlyArray<{ readonly id: string; readonly address: string }>;
  readonly followerMatch: Readonly<Record<string, number>>;
  readonly flushMode: string;
  readonly failed: string;
  readonly fsyncs: number;
  readonly entriesAppended: number;
  readonly logAppendCalls: number;
  readonly appendMessagesSent: number;
  readonly entriesSent: number;
  readonly elections: number;
  readonly stateHash: string;
  /** Non-zero while the node abstains from elections after losing synced log entries. */
  readonly abstainingUntil: number;
}

export interface CommittedEntry {
  readonly index: number;
  readonly term: number;
  readonly kind: number;
  readonly payload: Uint8Array;
}

interface PendingProposal {
  readonly payload: Uint8Array;
  readonly resolve: (result: { index: number; term: number }) => void;
  readonly reject: (error: RaftClientError) => void;
  readonly timer: NodeJS.Timeout;
  attempts: number;
  stream: grpc.ClientDuplexStream<any, any> | undefined;
}

/** Options for a client secured by `credentials` whose every call is signed as `user` (if given). */
export function signedRaftNodeClientOptions(credentials: grpc.ChannelCredentials, user: Credentials | undefined): RaftNodeClientOptions {
  return { credentials, ...(user === undefined ? {} : { callHeaders: () => signRequest(user, Date.now()) }) };
}

export interface RaftNodeClientOptions {
  /** How long a proposal may take before its outcome is reported unknown. */
  readonly proposeTimeoutMs?: number;
  /** How many NOT_LEADER refusals a proposal follows before giving up (definite). */
  readonly redirectsMax?: number;
  /** How the connections to the nodes are secured (default plaintext). */
  readonly credentials?: grpc.ChannelCredentials;
  /** Headers for each call (a request signature, made fresh per call). */
  readonly callHeaders?: () => Record<string, string>;
}

/**
 * Talks to the members of one bare Raft group. Proposals are pipelined on one stream to the
 * current leader; a NOT_LEADER refusal (definite) is re-sent to the named leader, and a lost
 * stream or a timeout is reported as unknown, never silently retried.
 */
export class RaftNodeClient {
  private readonly clients = new Map<string, grpc.Client>();
  private readonly pending = new Map<number, PendingProposal>();
  private leaderAddress: string | undefined;
  private leaderSearch: Promise<string> | undefined;
  private stream: grpc.ClientDuplexStream<any, any> | undefined;
  private readonly batches = new Map<grpc.ClientDuplexStream<any, any>, { requests: Array<{ id: number; payload: Uint8Array }>; bytes: number }>();
  private nextId = 1;
  private closed = false;

  constructor(private addresses: readonly string[], private readonly options: RaftNodeClientOptions = {}) {
    if (addresses.length === 0) throw new Error('name at least one node address');
  }

  get knownLeader(): string | undefined { return this.leaderAddress; }

  status(address: string, timeoutMs = 2_000): Promise<NodeStatus> {
    return this.unary(address, 'Status', {}, timeoutMs) as Promise<NodeStatus>;
  }

  /**
   * Every node's status, or the error that stopped it from answering. A probe: a node that is
   * down answers "unreachable" at once instead of holding the round for the whole deadline
   * (findLeader runs a round every 50 ms while a leader is being elected).
   */
  statusAll(timeoutMs = 2_000): Promise<Array<{ address: string; status?: NodeStatus; error?: string }>> {
    return Promise.all(this.addresses.map(async (address) => {
      try {
        return { address, status: await this.unary(address, 'Status', {}, timeoutMs, { waitForReady: false }) as NodeStatus };
      } catch (error) {
        return { address, error: (error as Error).message };
      }
    }));
  }

  /** Polls until some node reports itself leader; returns its address. */
  async findLeader(timeoutMs = 5_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && !this.closed) {
      const statuses = await this.statusAll(500);
      const leaders = statuses.filter((s) => s.status?.role === 'leader').sort((a, b) => (b.status?.term ?? 0) - (a.status?.term ?? 0));
      const leader = leaders[0];
      if (leader !== undefined) {
        this.learnMembers(leader.status?.members ?? []);
        return leader.address;
      }
      await sleep(50);
    }
    throw new RaftClientError('NO_LEADER', `no leader among ${this.addresses.join(', ')} within ${timeoutMs} ms`, true);
  }

  async readCommitted(address: string, fromIndex: number, maxEntries = 1000): Promise<{ entries: CommittedEntry[]; commitIndex: number }> {
    return await this.unary(address, 'ReadCommitted', { fromIndex, maxEntries }, 10_000) as { entries: CommittedEntry[]; commitIndex: number };
  }

  /** Reads every committed entry from `address`, starting at `fromIndex`. */
  async readAllCommitted(address: string, fromIndex = 1): Promise<CommittedEntry[]> {
    const out: CommittedEntry[] = [];
    let next = fromIndex;
    for (;;) {
      const { entries, commitIndex } = await this.readCommitted(address, next, 5_000);
      out.push(...entries);
      const last = entries[entries.length - 1];
      if (last === undefined || last.index >= commitIndex) return out;
      next = last.index + 1;
    }
  }

  async transferLeadership(targetId: string): Promise<void> {
    const leader = await this.findLeader();
    const response = await this.unary(leader, 'TransferLeadership', { targetId }, 5_000) as { ok: boolean; error: string };
    if (!response.ok) throw new RaftClientError('TRANSFER_REFUSED', `leadership transfer refused: ${response.error}`, true);
  }

  /**
   * Single-server membership change. Refusals that clear by themselves — a new leader that has
   * not committed in its term yet, another change still pending, a leader change — are
   * retried for up to `timeoutMs`; every refusal is definite (nothing was changed).
   */
  async changeMembership(change: { add: { id: string; address: string } } | { removeId: string }, timeoutMs = 10_000): Promise<void> {
    const transient = new Set(['leader-not-ready', 'config-change-pending', 'not the leader']);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const leader = await this.findLeader(Math.max(deadline - Date.now(), 1));
      const response = await this.unary(leader, 'ChangeMembership', change, 5_000) as { ok: boolean; error: string };
      if (response.ok) return;
      if (!transient.has(response.error) || Date.now() >= deadline) {
        throw new RaftClientError('MEMBERSHIP_REFUSED', `membership change refused: ${response.error}`, true);
      }
      await sleep(50);
    }
  }

  /** Proposes one entry; resolves with its index once committed. */
  propose(payload: Uint8Array): Promise<{ index: number; term: number }> {
    if (this.closed) return Promise.reject(new RaftClientError('CLOSED', 'client closed', true));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const proposal = this.pending.get(id);
        if (proposal === undefined) return;
        this.pending.delete(id);
        const sent = proposal.stream !== undefined;
        reject(new RaftClientError('TIMEOUT', `no answer within ${this.options.proposeTimeoutMs ?? 5_000} ms; ${sent ? 'the entry may have been committed' : 'it was never sent (no leader found)'}`, !sent));
      }, this.options.proposeTimeoutMs ?? 5_000);
      this.pending.set(id, { payload, resolve, reject, timer, attempts: 0, stream: undefined });
      this.dispatch(id);
    });
  }

  close(): void {
    this.closed = true;
    this.stream?.end();
    this.stream = undefined;
    for (const [id, proposal] of this.pending) {
      clearTimeout(proposal.timer);
      proposal.reject(new RaftClientError('CLOSED', 'client closed with the proposal in flight', proposal.stream === undefined));
      this.pending.delete(id);
    }
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }

  private dispatch(id: number): void {
    const proposal = this.pending.get(id);
    if (proposal === undefined || this.closed) return;
    if (this.leaderAddress === undefined) {
      proposal.stream = undefined;
      // One leader search at a time, shared by every proposal waiting for it.
      this.leaderSearch ??= this.findLeader(this.options.proposeTimeoutMs ?? 5_000).finally(() => { this.leaderSearch = undefined; });
      this.leaderSearch.then(
        (address) => { this.leaderAddress ??= address; this.dispatch(id); },
        () => { /* the proposal's own timer reports it */ },
      );
      return;
    }
    const stream = this.proposeStream(this.leaderAddress);
    proposal.stream = stream;
    this.enqueue(stream, { id, payload: proposal.payload });
  }

  /**
   * Coalesces every proposal issued in one macrotask into one ProposeBatch message (bounded
   * by `batchBytesMax`), so a burst costs one gRPC message, not one per entry.
   */
  private enqueue(stream: grpc.ClientDuplexStream<any, any>, request: { id: number; payload: Uint8Array }): void {
    let batch = this.batches.get(stream);
    if (batch === undefined) {
      batch = { requests: [], bytes: 0 };
      this.batches.set(stream, batch);
      setImmediate(() => this.flushBatch(stream));
    }
    batch.requests.push(request);
    batch.bytes += request.payload.length;
    if (batch.bytes >= batchBytesMax) this.flushBatch(stream);
  }

  private flushBatch(stream: grpc.ClientDuplexStream<any, any>): void {
    const batch = this.batches.get(stream);
    if (batch === undefined) return;
    this.batches.delete(stream);
    stream.write({ requests: batch.requests });
  }

  private proposeStream(address: string): grpc.ClientDuplexStream<any, any> {
    if (this.stream !== undefined) return this.stream;
    const stream = (this.client(address) as any).Propose(this.metadata({})) as grpc.ClientDuplexStream<any, any>;
    this.stream = stream;
    stream.on('data', (message: any) => {
      for (const response of message.results as any[]) this.onProposeResponse(stream, response);
    });
    const lost = (error?: Error): void => {
      if (this.stream === stream) {
        this.stream = undefined;
        this.leaderAddress = undefined;
      }
      // Everything written on this stream may or may not have been committed.
      for (const [id, proposal] of this.pending) {
        if (proposal.stream !== stream) continue;
        this.pending.delete(id);
        clearTimeout(proposal.timer);
        proposal.reject(new RaftClientError('CONNECTION_LOST', `connection to ${address} lost with the proposal in flight${error === undefined ? '' : `: ${error.message}`}`, false));
      }
    };
    stream.on('error', lost);
    stream.on('end', () => lost());
    return stream;
  }

  private onProposeResponse(stream: grpc.ClientDuplexStream<any, any>, response: any): void {
    const id = Number(response.id);
    const proposal = this.pending.get(id);
    if (proposal === undefined) return;
    if (response.ok === true) {
      this.pending.delete(id);
      clearTimeout(proposal.timer);
      proposal.resolve({ index: Number(response.index), term: Number(response.term) });
      this.endIfIdle(stream);
      return;
    }
    if (response.errorCode === 'NOT_LEADER' && proposal.attempts < (this.options.redirectsMax ?? 50)) {
      // Definitely not appended: safe to send again, to the leader the node named.
      proposal.attempts++;
      proposal.stream = undefined;
      // Other proposals on the old stream may still get definite answers: keep it open
      // until they settle, but send new ones to the named leader.
      if (this.stream === stream) this.stream = undefined;
      this.endIfIdle(stream);
      this.leaderAddress = response.leaderAddress === '' ? undefined : (response.leaderAddress as string);
      const retry = (): void => this.dispatch(id);
      if (this.leaderAddress === undefined) setTimeout(retry, 20);
      else retry();
      return;
    }
    this.pending.delete(id);
    clearTimeout(proposal.timer);
    proposal.reject(new RaftClientError(response.errorCode as string, response.error as string, response.definite === true));
    this.endIfIdle(stream);
  }

  private endIfIdle(stream: grpc.ClientDuplexStream<any, any>): void {
    if (stream === this.stream || this.batches.has(stream)) return;
    for (const proposal of this.pending.values()) if (proposal.stream === stream) return;
    stream.end();
  }

  private learnMembers(members: ReadonlyArray<{ address: string }>): void {
    const known = new Set(this.addresses);
    const added = members.map((m) => m.address).filter((address) => !known.has(address));
    if (added.length > 0) this.addresses = [...this.addresses, ...added];
  }

  private metadata(options: grpc.MetadataOptions): grpc.Metadata {
    const metadata = new grpc.Metadata(options);
    for (const [key, value] of Object.entries(this.options.callHeaders?.() ?? {})) metadata.set(key, value);
    return metadata;
  }

  private client(address: string): grpc.Client {
    let client = this.clients.get(address);
    if (client === undefined) {
      client = new AdminClient(address, this.options.credentials ?? grpc.credentials.createInsecure(), {
        'grpc.max_receive_message_length': 64 * 1024 * 1024,
        // Nodes restart within seconds; grpc's default back-off grows past a whole call deadline.
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': 1_000,
      });
      this.clients.set(address, client);
    }
    return client;
  }

  /**
   * A call aimed at one node waits for the connection up to its deadline (waitForReady): a
   * channel that first tried the node before it listened sits in reconnect back-off and would
   * otherwise fail at once although the node is up. Probes of every node opt out.
   */
  private unary(address: string, method: string, request: object, timeoutMs: number, options = { waitForReady: true }): Promise<unknown> {
    return new Promise((resolve, reject) => {
      (this.client(address) as any)[method](request, this.metadata({ waitForReady: options.waitForReady }), { deadline: new Date(Date.now() + timeoutMs) }, (error: grpc.ServiceError | null, response: unknown) => {
        if (error !== null) reject(new RaftClientError(grpc.status[error.code] ?? 'ERROR', `${address}: ${error.details || error.message}`, true));
        else resolve(response);
      });
    });
  }
}
