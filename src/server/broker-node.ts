/**
 * One broker node: a Raft group member whose state machine is the broker, serving the client
 * protocol (apache.rocketmq.v2.MessagingService), the broker admin service, Raft and the Raft
 * admin service on one address, and registering itself with every NameServer.
 */
import { statfs } from 'node:fs/promises';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { BrokerService, defaultBrokerServiceOptions, type BrokerServiceOptions, type RaftPort } from '../broker/broker-service.js';
import { BrokerStateMachine, type ApplyResult } from '../broker/broker-state-machine.js';
import { MessageQuery } from '../broker/message-query.js';
import { PeerEntries } from '../broker/peer-entries.js';
import { RetentionService } from '../broker/retention-service.js';
import { defaultBrokerStateLimits } from '../broker/core/broker-state.js';
import { timerStoreLimitsDefault } from '../broker/core/timer-store.js';
import { RaftNodeClient } from '../client/raft-node-client.js';
import { defaultRetentionSettings, retentionSettingsProblem, type RetentionSettings } from '../broker/core/retention.js';
import { BrokerError } from '../broker/errors.js';
import { systemClock } from '../util/clock.js';
import { QueueFileStore } from './consume-queue-files.js';
import { DedupFileStore } from './dedup-files.js';
import { TimerFileStore } from './timer-files.js';
import { MessageIndexFileStore } from './message-index-files.js';
import { Forwarder } from './forwarder.js';
import { AccessGate, clusterAdmin, notCurrentMessage, type AuthSettings } from './access-gate.js';
import { AccessJudge } from './access-judge.js';
import { ClientLimits, defaultClientLimits, type ClientLimitSettings } from './client-limits.js';
import { brokerAdminDefinition, brokerAdminHandlers } from './broker-admin-service.js';
import { TransactionChecks } from './transaction-checks.js';
import { checkPolicyProblem, defaultTransactionCheckPolicy, type TransactionCheckPolicy } from '../broker/core/transactions.js';
import { brokerMessagingDefinition, brokerMessagingHandlers } from './messaging-service.js';
import { NameServerRegistrar } from './namesrv-registrar.js';
import { RaftGroupNode, type RaftGroupNodeConfig } from './raft-group-node.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader objects are untyped at this edge */


export interface BrokerNodeConfig extends RaftGroupNodeConfig {
  readonly namesrvAddresses: readonly string[];
  readonly autoCreateTopics: boolean;
  readonly autoCreateGroups: boolean;
  readonly maxBodyBytes: number;
  /** Bytes of sends waiting for the quorum beyond which a send is refused with TOO_MANY_REQUESTS (BrokerServiceOptions). */
  readonly sendBacklogBytesMax: number;
  readonly registerIntervalMs: number;
  /** How long a follower (or the access point) holds a call while the group elects a leader. */
  readonly holdMs: number;
  /** What the log keeps (SPEC F16): see core/retention.ts. */
  readonly retention: RetentionSettings;
  readonly retentionIntervalMs: number;
  /**
   * The longest delay of a delayed or scheduled message (F8). Apply refuses a longer one, so
   * every node of a group must have the same value (or they would store different messages).
   */
  readonly timerMaxDelayMs: number;
  /** Transaction check-backs (F9): first after, then every, then rolled back after the last (used by whichever node leads). */
  readonly transactionCheck: TransactionCheckPolicy;
  /**
   * Authentication and authorization of every client and admin call (access-gate.ts): the
   * cluster key that seals users' secrets and the bootstrap super user. Default: off.
   */
  readonly auth?: AuthSettings;
  /** Per-client caps on calls served and long polls waiting at once (client-limits.ts). */
  readonly clientLimits: ClientLimitSettings;
}

export const defaultBrokerNodeSettings = {
  autoCreateTopics: false,
  autoCreateGroups: true,
  maxBodyBytes: defaultBrokerServiceOptions.maxBodyBytes,
  sendBacklogBytesMax: defaultBrokerServiceOptions.sendBacklogBytesMax,
  registerIntervalMs: 2_000,
  holdMs: 2_500,
  retention: defaultRetentionSettings,
  retentionIntervalMs: 10_000,
  timerMaxDelayMs: timerStoreLimitsDefault.maxDelayMs,
  transactionCheck: defaultTransactionCheckPolicy,
  clientLimits: defaultClientLimits,
} as const;

export class BrokerNode {
  private constructor(
    readonly raft: RaftGroupNode<ApplyResult>,
    readonly service: BrokerService,
    private readonly registrar: NameServerRegistrar,
    private readonly forwarder: Forwarder,
    private readonly retention: RetentionService,
    private readonly peers: RaftNodeClient,
    private readonly queueFiles: QueueFileStore,
    private readonly dedupFiles: DedupFileStore,
    private readonly timerFiles: TimerFileStore,
    private readonly indexFiles: MessageIndexFileStore,
    private readonly transactionChecks: TransactionChecks,
    private readonly judge: AccessJudge | undefined,
  ) {}

  /**
   * Power-loss test mode: the cut of the broker's derived files (consume queues, dedup
   * records, timers, the message index), which go with the log's: they are synced before each
   * snapshot, so the cut may take anything written after the last one. The caller ends the
   * process right after.
   */
  powerFailFiles(randomInt: (maxExclusive: number) => number): object {
    return {
      ...this.queueFiles.powerFail(randomInt), ...this.dedupFiles.powerFail(randomInt), ...this.timerFiles.powerFail(randomInt), ...this.indexFiles.powerFail(randomInt),
    };
  }

  static async start(config: BrokerNodeConfig, onFatal: (error: Error) => void): Promise<BrokerNode> {
    if (!Number.isInteger(config.maxBodyBytes) || config.maxBodyBytes < 1 || config.maxBodyBytes > 64 * 1024 * 1024) {
      throw new Error(`maxBodyBytes must be an integer in 1..67108864, not ${config.maxBodyBytes}`);
    }
    if (!Number.isSafeInteger(config.sendBacklogBytesMax) || config.sendBacklogBytesMax < 1) {
      throw new Error(`sendBacklogBytesMax must be a whole number of bytes ≥ 1, not ${config.sendBacklogBytesMax}`);
    }
    const retentionProblem = retentionSettingsProblem(config.retention);
    if (retentionProblem !== undefined) throw new Error(retentionProblem);
    if (!Number.isSafeInteger(config.timerMaxDelayMs) || config.timerMaxDelayMs < 1_000) throw new Error(`timerMaxDelayMs must be a whole number of milliseconds ≥ 1000, not ${config.timerMaxDelayMs}`);
    const checkProblem = checkPolicyProblem(config.transactionCheck);
    if (checkProblem !== undefined) throw new Error(checkProblem);
    // Consume-queue, dedup and timer records and the message index in files, so memory does not
    // grow with the retained messages, the dedup window, the pending delayed messages or the index.
    const queueFiles = new QueueFileStore({ dir: path.join(config.dataDir, 'queues'), powerLossTestMode: config.powerLossTestMode });
    const dedupFiles = new DedupFileStore({ dir: path.join(config.dataDir, 'dedup'), powerLossTestMode: config.powerLossTestMode });
    const timerFiles = new TimerFileStore({
      dir: path.join(config.dataDir, 'timers'), limits: { ...timerStoreLimitsDefault, maxDelayMs: config.timerMaxDelayMs }, powerLossTestMode: config.powerLossTestMode,
    });
    const indexFiles = new MessageIndexFileStore({ dir: path.join(config.dataDir, 'index'), powerLossTestMode: config.powerLossTestMode });
    const machine = new BrokerStateMachine(defaultBrokerStateLimits, queueFiles, dedupFiles, timerFiles, indexFiles);
    const limits = new ClientLimits(config.clientLimits);
    // Before anything listens: unreadable auth files stop the start with a clear error.
    const access = config.auth === undefined ? undefined : AccessGate.open(config.auth, () => machine.state.access);
    const ref: {
      service?: BrokerService; registrar?: NameServerRegistrar; retention?: RetentionService; checks?: TransactionChecks; forwarder?: Forwarder; peers?: RaftNodeClient;
      judge?: AccessJudge;
    } = {};
    const raft = await RaftGroupNode.start(config, onFatal, {
      stateMachine: machine,
      snapshotForPeer: (data) => machine.snapshotWithRecords(data),
      onSoftState: () => ref.registrar?.registerSoon(),
      ...(access === undefined ? {} : {
        adminAccess: async (metadata: grpc.Metadata) => {
          const verdict = await ref.judge?.judge(metadata, clusterAdmin);
          if (verdict === undefined) return { code: grpc.status.UNAVAILABLE, message: notCurrentMessage };
          return verdict.ok ? undefined : { code: verdict.code === 'UNAUTHORIZED' ? grpc.status.UNAUTHENTICATED : grpc.status.PERMISSION_DENIED, message: verdict.message };
        },
      }),
      services: (node, log, logger, tls) => {
        const forwarder = new Forwarder(config.holdMs, tls?.channelCredentials());
        ref.forwarder = forwarder;
        // Reads retained entries a snapshot install left out of this node's log (see PeerEntries).
        // With TLS a peer's certificate vouches for it; without, its reads are signed as the bootstrap user.
        const peers = new RaftNodeClient(config.members.map((m) => m.address), {
          ...(tls === undefined ? {} : { credentials: tls.channelCredentials() }),
          ...(access === undefined || tls !== undefined ? {} : { callHeaders: () => access.adminHeaders() }),
        });
        ref.peers = peers;
        const peerEntries = new PeerEntries({
          readCommitted: async (peer, fromIndex, maxEntries) => (await peers.readCommitted(peer.address, fromIndex, maxEntries)).entries,
          peers: () => node.members.filter((m) => m.id !== config.nodeId),
        });
        const leaderAddress = (): string | undefined => {
          const leaderId = node.leaderId;
          return leaderId === undefined ? undefined : node.members.find((m) => m.id === leaderId)?.address;
        };
        const options: BrokerServiceOptions = {
          ...defaultBrokerServiceOptions, brokerGroup: config.groupId, autoCreateTopics: config.autoCreateTopics,
          autoCreateGroups: config.autoCreateGroups, maxBodyBytes: config.maxBodyBytes, sendBacklogBytesMax: config.sendBacklogBytesMax, readReadyWaitMs: config.holdMs,
          transactionCheck: config.transactionCheck,
        };
        const raftPort: RaftPort = {
          propose: (payload) => node.propose(payload),
          get role() { return node.role; },
          get term() { return node.term; },
          leaderAddress,
        };
        const logReader = {
          payloadAt: async (index: number): Promise<Uint8Array> => {
            if (index < log.firstIndex) return peerEntries.payload(index);
            const [entry] = await log.read({ fromIndex: index, throughIndex: index, bytesMax: 1 });
            if (entry === undefined) throw new BrokerError('INTERNAL_SERVER_ERROR', `log entry ${index} is missing (deleted by retention?)`);
            return entry.payload;
          },
        };
        const service = new BrokerService(options, raftPort, machine, logReader, systemClock);
        const judge = access === undefined ? undefined : new AccessJudge(access, {
          isLeader: () => node.role === 'leader', leaderAddress, tableCurrent: () => service.accessTableCurrent(),
        }, tls?.channelCredentials());
        if (judge !== undefined) ref.judge = judge;
        const query = new MessageQuery({ brokerGroup: config.groupId, readReadyWaitMs: config.holdMs }, raftPort, machine, {
          payloadAt: logReader.payloadAt, termAt: (index) => log.termAt(index),
        }, systemClock);
        ref.service = service;
        ref.retention = new RetentionService({
          settings: config.retention, intervalMs: config.retentionIntervalMs, raft: raftPort, machine,
          segments: () => log.segments(), segmentCount: () => log.segmentCount, diskUsedRatio: () => diskUsedRatio(config.dataDir),
          clock: systemClock, logger,
        });
        const selfAddress = config.members.find((m) => m.id === config.nodeId)?.address ?? '';
        const transactionChecks = new TransactionChecks(service, config.groupId, selfAddress, logger);
        ref.checks = transactionChecks;
        const messaging = brokerMessagingHandlers({
          brokerGroup: config.groupId, selfAddress, service, forwarder, logger, transactionChecks,
          isLeader: () => node.role === 'leader', leaderAddress, ...(judge === undefined ? {} : { access: judge }), limits,
        });
        return [[brokerMessagingDefinition, messaging], [brokerAdminDefinition, brokerAdminHandlers({ service, query, isLeader: () => node.role === 'leader', leaderAddress, ...(judge === undefined ? {} : { access: judge }) })]];
      },
    });
    const service = ref.service as BrokerService;
    service.start();
    const retention = ref.retention as RetentionService;
    retention.start();
    const registrar = new NameServerRegistrar(config.namesrvAddresses, config.registerIntervalMs, () => {
      const status = raft.node.status();
      const leader = status.leaderId === undefined ? undefined : status.members.find((m) => m.id === status.leaderId);
      return {
        group: config.groupId, nodeId: config.nodeId, address: config.members.find((m) => m.id === config.nodeId)?.address ?? '',
        role: status.role, term: status.term, leaderId: status.leaderId ?? '', leaderAddress: leader?.address ?? '',
        commitIndex: status.commitIndex, appliedIndex: status.appliedIndex, lastIndex: status.lastIndex, pid: process.pid,
        topics: service.state.topicList().map((t) => ({ name: t.name, readQueues: t.readQueues, writeQueues: t.writeQueues, perm: t.perm, messageType: t.messageType })),
        flushMode: config.flushMode, failed: status.failed ?? '', abstainingUntil: status.abstainingUntil ?? 0, consumerGroups: service.state.groupList().map((g) => g.name),
      };
    }, raft.logger, raft.tls?.channelCredentials());
    ref.registrar = registrar;
    registrar.start();
    return new BrokerNode(raft, service, registrar, ref.forwarder as Forwarder, retention, ref.peers as RaftNodeClient, queueFiles, dedupFiles, timerFiles, indexFiles, ref.checks as TransactionChecks, ref.judge);
  }

  async close(): Promise<void> {
    this.registrar.close();
    this.retention.close();
    this.peers.close();
    this.transactionChecks.close();
    this.service.close();
    this.forwarder.close();
    this.judge?.close();
    await this.raft.close();
    this.queueFiles.close();
    this.dedupFiles.close();
    this.timerFiles.close();
    this.indexFiles.close();
  }
}

/** Fraction of the data directory's file system in use (undefined if the platform cannot say). */
async function diskUsedRatio(dir: string): Promise<number | undefined> {
  try {
    const stats = await statfs(dir);
    return stats.blocks > 0 ? 1 - stats.bavail / stats.blocks : undefined;
  } catch {
    return undefined;
  }
}
