import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { CommitLog } from '../commitlog/commit-log.js';
import { FileSnapshotStore } from '../commitlog/snapshot-store.js';
import { NodeFileSystem } from '../commitlog/file-system.js';
import { LazyFileSystem } from '../commitlog/lazy-file-system.js';
import { validateMembers } from '../raft/membership.js';
import type { ProposalError } from '../raft/node/errors.js';
import type { StateMachine, StoredSnapshot } from '../raft/node/ports.js';
import { systemClock } from '../util/clock.js';
import { RaftNode, type FlushMode, type ProposeOutcome } from '../raft/node/raft-node.js';
import type { Member, NodeId } from '../raft/types.js';
import { loadProtoFile } from '../util/proto-files.js';
import { claimDataDir } from './data-dir.js';
import { GrpcRaftTransport, checkedNumber, peerChannelOptions, raftPeerService, serverConnectionOptions } from './grpc-raft-transport.js';
import { HashChainStateMachine } from './hash-chain-state-machine.js';
import { LevelStableStore } from './level-stable-store.js';
import { callCertificate, nodeIdentitiesOf, TlsMaterial, type TlsFiles } from './tls.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader objects are untyped at this edge */

const adminDefinition = loadProtoFile('raftnode.proto');
const adminService: grpc.ServiceDefinition = (grpc.loadPackageDefinition(adminDefinition) as any).raftmq.raftnode.v1.RaftNodeAdmin.service;

export interface RaftGroupNodeConfig {
  readonly groupId: string;
  readonly nodeId: NodeId;
  readonly members: readonly Member[];
  readonly dataDir: string;
  readonly flushMode: FlushMode;
  readonly flushIntervalMs: number;
  readonly tickIntervalMs: number;
  readonly electionTimeoutTicks: number;
  readonly heartbeatIntervalTicks: number;
  readonly segmentBytesMax: number;
  /** A snapshot of the state machine is written after this many applied entries. */
  readonly snapshotEveryEntries: number;
  /** ... or after this many bytes of entries (whichever comes first). */
  readonly snapshotEveryBytes: number;
  /** Entries kept in the log behind a snapshot for followers that are only a little behind. */
  readonly snapshotCatchUpEntries: number;
  readonly appendEntriesMax: number;
  readonly appendBytesMax: number;
  readonly inflightAppendsMax: number;
  readonly uncommittedEntriesMax: number;
  readonly logLevel: string;
  /** Test-only negative control: acknowledge appends before fsync. */
  readonly unsafeAckBeforeFsync: boolean;
  /** Test-only negative control: the leader commits what it alone holds (ack before quorum). */
  readonly unsafeAckBeforeQuorum: boolean;
  /** Test-only: keep unsynced commitlog writes in memory so a kill loses them (power loss). */
  readonly powerLossTestMode: boolean;
  /**
   * Appends and their answers over the peer lane (plain TCP on the raft port + 1000, see
   * peer-lane.ts) where the peer has one; gRPC otherwise. Default on; false: gRPC only.
   */
  readonly peerLane?: boolean;
  /**
   * TLS on this node's port and lane, and mutual TLS to its peers (tls.ts): its certificate
   * must name it (`raftmq://<group>/<node>`). Default plaintext.
   */
  readonly tls?: TlsFiles;
}

export const defaultRaftGroupNodeConfig = {
  flushMode: 'sync',
  flushIntervalMs: 200,
  tickIntervalMs: 20,
  electionTimeoutTicks: 15,
  heartbeatIntervalTicks: 3,
  segmentBytesMax: 64 * 1024 * 1024,
  snapshotEveryEntries: 20_000,
  snapshotEveryBytes: 128 * 1024 * 1024,
  snapshotCatchUpEntries: 5_000,
  appendEntriesMax: 1024,
  appendBytesMax: 1024 * 1024,
  inflightAppendsMax: 16,
  uncommittedEntriesMax: 65_536,
  logLevel: 'info',
  unsafeAckBeforeFsync: false,
  unsafeAckBeforeQuorum: false,
  powerLossTestMode: false,
} as const satisfies Partial<RaftGroupNodeConfig>;

/** Checks a configuration before anything touches the disk or the network. */
export function validateConfig(config: RaftGroupNodeConfig): void {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(config.groupId)) throw new Error(`invalid group id ${JSON.stringify(config.groupId)}`);
  validateMembers(config.members);
  if (!config.members.some((m) => m.id === config.nodeId)) {
    throw new Error(`node id ${config.nodeId} is not in the member list (${config.members.map((m) => m.id).join(', ')})`);
  }
  for (const member of config.members) {
    if (!/^[^:\s]+:\d{1,5}$/.test(member.address)) throw new Error(`member ${member.id}: address ${JSON.stringify(member.address)} is not host:port`);
  }
  if (config.electionTimeoutTicks <= config.heartbeatIntervalTicks) throw new Error('electionTimeoutTicks must exceed heartbeatIntervalTicks');
  if (config.flushMode !== 'sync' && config.flushMode !== 'async') throw new Error(`flush mode must be sync or async, not ${String(config.flushMode)}`);
}

/** What a layer above a bare Raft group plugs in: its state machine, its services, role news. */
export interface RaftGroupNodeHooks<Result> {
  readonly stateMachine: StateMachine<Result>;
  /** Extra gRPC services served on the member's address (added before it listens); `tls`: the node's TLS material, if it has TLS. */
  readonly services?: (node: RaftNode<Result>, log: CommitLog, logger: pino.Logger, tls: TlsMaterial | undefined) => [grpc.ServiceDefinition, grpc.UntypedServiceImplementation][];
  /** Called after every change of role, term or leader. */
  readonly onSoftState?: () => void;
  /** The state to send a peer for a stored snapshot's state, when this node's snapshots rely on files of its own (the broker's queue files). */
  readonly snapshotForPeer?: (data: Uint8Array) => Uint8Array;
  /**
   * Why a RaftNodeAdmin call (status, proposals, transfer, membership, reads of the log) must
   * be refused, or undefined to serve it; a peer whose TLS certificate names a member of this
   * group is served without asking. Without it every call is served.
   */
  readonly adminAccess?: (metadata: grpc.Metadata) => Promise<{ readonly code: grpc.status; readonly message: string } | undefined>;
}

/**
 * One member of a bare Raft group as a running service: commitlog on the real disk, term and
 * vote in LevelDB, Raft over gRPC, and the RaftNodeAdmin service, all on the member's address.
 */
export class RaftGroupNode<Result = unknown> {
  private closing: Promise<void> | undefined;

  private constructor(
    readonly config: RaftGroupNodeConfig,
    readonly node: RaftNode<Result>,
    private readonly log: CommitLog,
    private readonly stable: LevelStableStore,
    private readonly transport: GrpcRaftTransport,
    private readonly server: grpc.Server,
    private readonly stateMachine: StateMachine<Result>,
    readonly logger: pino.Logger,
    /** The power-loss test mode's file system (undefined in production). */
    readonly powerLoss: LazyFileSystem | undefined,
    /** This node's certificate, key and CA, re-read when they change (undefined: plaintext). */
    readonly tls: TlsMaterial | undefined,
  ) {}

  /** A bare group: the hash-chain state machine, no extra services. */
  static async start(config: RaftGroupNodeConfig, onFatal: (error: Error) => void): Promise<RaftGroupNode<undefined>>;
  static async start<R>(config: RaftGroupNodeConfig, onFatal: (error: Error) => void, hooks: RaftGroupNodeHooks<R>): Promise<RaftGroupNode<R>>;
  static async start<R>(config: RaftGroupNodeConfig, onFatal: (error: Error) => void, hooks?: RaftGroupNodeHooks<R>): Promise<RaftGroupNode<R>> {
    validateConfig(config);
    const logger = pino({ level: config.logLevel, base: { groupId: config.groupId, nodeId: config.nodeId, pid: process.pid } });
    const lazyFs = config.powerLossTestMode ? new LazyFileSystem() : undefined;
    const fs = lazyFs ?? new NodeFileSystem();
    if (lazyFs !== undefined) logger.warn('power-loss test mode: unsynced writes live in memory and die with the process');
    await claimDataDir(fs, config.dataDir, config.groupId, config.nodeId);
    const { log, report } = await CommitLog.open({ fs, dir: path.join(config.dataDir, 'log'), segmentBytesMax: config.segmentBytesMax });
    if (report.tornTail !== undefined) logger.warn({ tornTail: report.tornTail }, 'recovery cut a torn tail');
    logger.info({
      firstIndex: report.firstIndex, lastIndex: report.lastIndex, segments: report.segmentCount,
      segmentsFromIndex: report.segmentsFromIndex, segmentsScanned: report.segmentsScanned, indexesWritten: report.indexesWritten,
    }, 'commitlog recovered');
    // Before anything listens: unusable TLS files stop the start with a clear error.
    const tls = config.tls === undefined ? undefined : new TlsMaterial(config.tls, logger);
    const stable = await LevelStableStore.open(path.join(config.dataDir, 'meta'));
    const self = config.members.find((m) => m.id === config.nodeId) as Member;
    const nodeRef: { node?: RaftNode<R> } = {};
    const snapshots = await FileSnapshotStore.open({ fs, dir: path.join(config.dataDir, 'snapshots'), logger });
    const transport = new GrpcRaftTransport({
      groupId: config.groupId, selfId: config.nodeId, members: () => nodeRef.node?.members ?? config.members, logger,
      snapshots,
      onSnapshotSent: (peer, ok) => nodeRef.node?.reportSnapshot(peer, ok),
      onSnapshotReceived: (message, data) => nodeRef.node?.receiveSnapshot(message, data),
      ...(hooks?.snapshotForPeer === undefined ? {} : { snapshotFileForPeer: snapshotFileForPeer(snapshots, hooks.snapshotForPeer) }),
      ...(config.peerLane === false ? {} : { lane: {} }),
      ...(tls === undefined ? {} : { tls }),
    });
    // Without hooks R is undefined (see the overloads), which is what the hash chain returns.
    const stateMachine = hooks?.stateMachine ?? (new HashChainStateMachine() as StateMachine<undefined> as StateMachine<R>);
    const started = await RaftNode.start<R>({
      groupId: config.groupId,
      core: {
        id: config.nodeId, electionTimeoutTicks: config.electionTimeoutTicks, heartbeatIntervalTicks: config.heartbeatIntervalTicks,
        preVote: true, checkQuorum: true, appendEntriesMax: config.appendEntriesMax, appendBytesMax: config.appendBytesMax,
        inflightAppendsMax: config.inflightAppendsMax, uncommittedEntriesMax: config.uncommittedEntriesMax,
        ...(config.unsafeAckBeforeQuorum ? { unsafe: { commitWithoutQuorum: true } } : {}),
      },
      bootstrapMembers: config.members,
      log, stable, transport, stateMachine, snapshots, snapshotEveryEntries: config.snapshotEveryEntries, snapshotEveryBytes: config.snapshotEveryBytes, snapshotCatchUpEntries: config.snapshotCatchUpEntries, clock: systemClock,
      random: { nextInt: (max) => Math.floor(Math.random() * max) },
      logger,
      tickIntervalMs: config.tickIntervalMs,
      flushMode: config.flushMode,
      flushIntervalMs: config.flushIntervalMs,
      unsafeAckBeforeFsync: config.unsafeAckBeforeFsync,
      onFailed: onFatal,
      ...(hooks?.onSoftState === undefined ? {} : { onSoftState: hooks.onSoftState }),
    });
    nodeRef.node = started;
    transport.setReceiver((message) => started.receive(message));
    const server = new grpc.Server({ ...peerChannelOptions, ...serverConnectionOptions });
    server.addService(raftPeerService, transport.serviceImplementation());
    const instance = new RaftGroupNode<R>(config, started, log, stable, transport, server, stateMachine, logger, lazyFs, tls);
    server.addService(adminService, guardedAdmin(instance.adminImplementation(), async (call) => {
      if (hooks?.adminAccess === undefined) return undefined;
      const certificate = tls === undefined ? undefined : callCertificate(call);
      if (certificate !== undefined && nodeIdentitiesOf(certificate).some((id) => id.groupId === config.groupId && started.members.some((m) => m.id === id.nodeId))) return undefined;
      return hooks.adminAccess(call.metadata);
    }));
    for (const [definition, implementation] of hooks?.services?.(started, log, logger, tls) ?? []) server.addService(definition, implementation);
    await new Promise<void>((resolve, reject) => {
      server.bindAsync(self.address, tls?.serverCredentials() ?? grpc.ServerCredentials.createInsecure(), (error) => (error === null ? resolve() : reject(new Error(`cannot listen on ${self.address}: ${error.message}`))));
    });
    const lane = config.peerLane === false ? 'off' : await listenLane(transport, logger);
    logger.info({ address: self.address, lane, tls: tls !== undefined, flushMode: config.flushMode, members: config.members }, 'raft node listening');
    return instance;
  }

  status(): object {
    const status = this.node.status();
    const self = this.config.members.find((m) => m.id === this.config.nodeId);
    return {
      groupId: status.groupId, nodeId: status.id, address: self?.address ?? '', role: status.role, term: status.term,
      leaderId: status.leaderId ?? '', commitIndex: status.commitIndex, appliedIndex: status.appliedIndex,
      lastIndex: status.lastIndex, firstIndex: this.log.firstIndex, pid: process.pid, members: status.members,
      followerMatch: status.followerMatch, flushMode: this.config.flushMode, failed: status.failed ?? '', abstainingUntil: status.abstainingUntil ?? 0,
      fsyncs: this.log.stats.fsyncs, entriesAppended: this.log.stats.entriesAppended, logAppendCalls: this.log.stats.appendCalls,
      appendMessagesSent: status.stats.appendMessagesSent, entriesSent: status.stats.entriesSent, elections: status.stats.elections,
      stateHash: this.stateMachine instanceof HashChainStateMachine ? this.stateMachine.stateHash : '',
    };
  }

  /** Stops intake, then the node, the server and storage, reporting every failure together. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const errors: unknown[] = [];
      const attempt = async (step: () => Promise<void> | void): Promise<void> => {
        try {
          await step();
        } catch (error) {
          errors.push(error);
        }
      };
      await attempt(() => new Promise<void>((resolve) => {
        // Peers' append streams never end on their own: give calls a moment, then force.
        const force = setTimeout(() => this.server.forceShutdown(), 1_000);
        this.server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }));
      await attempt(() => this.node.close());
      await attempt(() => this.transport.close());
      await attempt(() => this.log.close());
      await attempt(() => this.stable.close());
      this.tls?.close();
      if (errors.length > 0) throw new AggregateError(errors, 'errors while closing the raft node');
    })();
    return this.closing;
  }

  private adminImplementation(): grpc.UntypedServiceImplementation {
    return {
      Propose: (call: grpc.ServerDuplexStream<any, any>) => {
        // Results are written in batches: everything that settles in one macrotask goes out
        // as one ProposeResults message.
        let open = true;
        let outgoing: object[] = [];
        const flush = (): void => {
          const results = outgoing;
          outgoing = [];
          if (open && results.length > 0) call.write({ results });
        };
        const answer = (result: object): void => {
          if (outgoing.length === 0) setImmediate(flush);
          outgoing.push(result);
        };
        call.on('data', (batch: any) => {
          for (const request of batch.requests as any[]) {
            const id = request.id as number;
            this.node.propose(request.payload as Uint8Array).then(
              (result) => answer({ id, ok: true, index: result.index, term: result.term }),
              (error: ProposalError) => {
                const leaderId = (error as { leaderHint?: NodeId }).leaderHint ?? '';
                const leaderAddress = this.node.members.find((m) => m.id === leaderId)?.address ?? '';
                answer({ id, ok: false, errorCode: error.code ?? 'ERROR', error: error.message, definite: error.definite === true, leaderId, leaderAddress });
              },
            );
          }
        });
        call.on('end', () => { flush(); open = false; call.end(); });
        call.on('error', () => { open = false; });
        call.on('cancelled', () => { open = false; });
      },
      Status: (_call: grpc.ServerUnaryCall<any, any>, callback: grpc.sendUnaryData<any>) => callback(null, this.status()),
      ReadCommitted: (call: grpc.ServerUnaryCall<any, any>, callback: grpc.sendUnaryData<any>) => {
        let fromIndex: number;
        try {
          fromIndex = Math.max(checkedNumber(call.request.fromIndex), 1);
        } catch (error) {
          callback({ code: grpc.status.INVALID_ARGUMENT, details: (error as Error).message });
          return;
        }
        const maxEntries = Math.min(Math.max(Number(call.request.maxEntries) || 1000, 1), 10_000);
        // Applied, not the core's commit index: a follower raises its commit index as soon as it
        // accepts a new leader's entries, before they replace its old tail on disk, so entries
        // up to the commit index may still be a deposed leader's (found by jepsen-tests).
        const commitIndex = this.node.appliedIndex;
        if (fromIndex < this.log.firstIndex) {
          callback({ code: grpc.status.OUT_OF_RANGE, details: `index ${fromIndex} was deleted by retention; the first index is ${this.log.firstIndex}` });
          return;
        }
        this.log.read({ fromIndex, throughIndex: Math.min(commitIndex, fromIndex + maxEntries - 1), bytesMax: 4 * 1024 * 1024 }).then(
          (entries) => callback(null, { entries, commitIndex }),
          (error: Error) => callback({ code: grpc.status.INTERNAL, details: error.message }),
        );
      },
      TransferLeadership: (call: grpc.ServerUnaryCall<any, any>, callback: grpc.sendUnaryData<any>) => {
        this.node.transferLeadership(call.request.targetId as string).then(
          (outcome) => callback(null, operationResponse(outcome)),
          (error: Error) => callback(null, { ok: false, error: error.message }),
        );
      },
      ChangeMembership: (call: grpc.ServerUnaryCall<any, any>, callback: grpc.sendUnaryData<any>) => {
        const request = call.request as { add?: Member; removeId?: string; change?: string };
        const change = request.change === 'add' && request.add !== undefined ? { add: { id: request.add.id, address: request.add.address } } : request.change === 'removeId' && request.removeId !== undefined ? { remove: request.removeId } : undefined;
        if (change === undefined) {
          callback({ code: grpc.status.INVALID_ARGUMENT, details: 'name a member to add or a node id to remove' });
          return;
        }
        if ('add' in change) {
          try {
            validateMembers([...this.node.members, change.add]);
          } catch (error) {
            callback({ code: grpc.status.INVALID_ARGUMENT, details: (error as Error).message });
            return;
          }
        }
        this.node.changeMembership(change).then(
          (outcome) => callback(null, operationResponse(outcome)),
          (error: Error) => callback(null, { ok: false, error: error.message }),
        );
      },
    };
  }
}

type AdminCall = grpc.ServerUnaryCall<any, any> | grpc.ServerDuplexStream<any, any>;

/**
 * `implementation` with every call first asked `refusal` (unary calls answer its status, streams
 * end with it). A stream's messages that arrive meanwhile wait in it (no reader yet).
 */
function guardedAdmin(
  implementation: grpc.UntypedServiceImplementation,
  refusal: (call: AdminCall) => Promise<{ readonly code: grpc.status; readonly message: string } | undefined>,
): grpc.UntypedServiceImplementation {
  return Object.fromEntries(Object.entries(implementation).map(([method, handler]) => {
    const run = handler as (call: AdminCall, callback?: grpc.sendUnaryData<any>) => void;
    return [method, (call: AdminCall, callback?: grpc.sendUnaryData<any>): void => {
      void refusal(call).then((refused) => {
        if (refused === undefined) {
          run(call, callback);
        } else if (callback !== undefined) {
          callback({ code: refused.code, details: refused.message });
        } else {
          call.emit('error', { code: refused.code, details: refused.message }); // ends the stream with this status
        }
      });
    }];
  }));
}

/**
 * Starts the peer lane's listener; a node whose lane port is taken still runs (leaders then
 * replicate to it over gRPC), so a clash on a port the operator never named does not stop it.
 */
async function listenLane(transport: GrpcRaftTransport, logger: pino.Logger): Promise<string> {
  try {
    const bound = await transport.listenLane();
    return `${bound.host}:${bound.port}`;
  } catch (error) {
    logger.warn({ err: (error as Error).message }, 'peer lane not listening: leaders replicate to this node over gRPC (slower); free the port (raft port + 1000) or start with --no-peer-lane');
    return 'not listening';
  }
}

/** An operator command's outcome as an OperationResponse (refusals are definite). */
function operationResponse(outcome: ProposeOutcome): object {
  if (outcome.kind === 'appended') return { ok: true };
  if (outcome.kind === 'dropped') return { ok: false, error: outcome.reason, leaderId: '' };
  return { ok: false, error: 'not the leader', leaderId: outcome.leaderHint ?? '' };
}

/** FileSnapshotStore.fileWithState, keeping the last one: a failed stream is retried with the same snapshot. */
function snapshotFileForPeer(snapshots: FileSnapshotStore, transform: (data: Uint8Array) => Uint8Array): (stored: StoredSnapshot) => Promise<Uint8Array> {
  let last: { readonly fileName: string; readonly bytes: Uint8Array } | undefined;
  return async (stored) => {
    if (last !== undefined && last.fileName === stored.fileName) return last.bytes;
    const bytes = await snapshots.fileWithState(stored, transform);
    last = { fileName: stored.fileName, bytes };
    return bytes;
  };
}
