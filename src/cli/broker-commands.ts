/**
 * The broker-level commands of `raftmq`: namesrv, broker, topic, group, produce, consume,
 * cluster. (`node`, `status`, `propose`, `members` work on a bare Raft group.)
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { defaultNamesrv, namesrvOption, withAdmin } from './admin-session.js';
import { authConfig, clientConnection, serverTlsConfig, withAuthOptions, withServerTlsOptions, type AuthFlags, type ServerTlsFlags } from './connection-options.js';

export { defaultNamesrv };
import Table from 'cli-table3';
import { ProgressBar, printLine } from './progress.js';
import { MQClientError } from '../client/mq-connection.js';
import { Producer } from '../client/producer.js';
import { PullConsumer } from '../client/pull-consumer.js';
import { BrokerNode, defaultBrokerNodeSettings, type BrokerNodeConfig } from '../server/broker-node.js';
import { NameServerProcess, defaultNameServerSettings } from '../server/namesrv-server.js';
import { withConfigFileOption } from './config-file.js';
import { groupName, topicName } from './name-arguments.js';
import { addressList, exitOnFatal, integer, powerFailOnSignal, raftNodeConfig, stopOnSignals, withRaftNodeOptions, type RaftNodeOptions } from './node-options.js';
import { plainWhenPiped, roleCell } from './tables.js';

export const defaultAccessPoint = '127.0.0.1:8081';

export function namesrvCommand(): Command {
  return withConfigFileOption(withServerTlsOptions(new Command('namesrv')))
    .description('run a NameServer (route registry) with the access point (client protocol proxy)')
    .option('--listen <host:port>', 'NameServer address', defaultNamesrv)
    .option('--access-point <host:port|none>', 'access point address for RocketMQ 5 clients', defaultAccessPoint)
    .option('--expiry-ms <ms>', 'drop a broker node not heard from for this long', integer('--expiry-ms', 100), defaultNameServerSettings.expiryMs)
    .option('--hold-ms <ms>', 'how long the access point holds a call while a group elects', integer('--hold-ms', 0), defaultNameServerSettings.holdMs)
    .option('--log-level <level>', 'pino log level', 'info')
    .action(async (options: { listen: string; accessPoint: string; expiryMs: number; holdMs: number; logLevel: string } & ServerTlsFlags) => {
      const server = await NameServerProcess.start({
        address: options.listen, accessPointAddress: options.accessPoint === 'none' ? '' : options.accessPoint,
        expiryMs: options.expiryMs, holdMs: options.holdMs, logLevel: options.logLevel, ...serverTlsConfig(options),
      });
      stopOnSignals('raftmq namesrv', () => server.close());
    });
}

interface BrokerFlags {
  namesrv: string; autoCreateTopics: boolean; autoCreateGroups: boolean; maxBodyBytes: number; sendBacklogBytes: number; registerIntervalMs: number;
  retentionHours: number; retentionBytes: number | undefined; retentionDiskPercent: number; retentionIntervalMs: number;
  timerMaxDelayMs: number;
  txnCheckAfterMs: number; txnCheckIntervalMs: number; txnChecksMax: number;
  clientRequestsMax: number; clientPollsMax: number;
}

/** "500ms,10s,1m,2h" → milliseconds. */
function durationList(name: string): (value: string) => number[] {
  const units: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };
  return (value) => value.split(',').map((part) => {
    const match = /^\s*(\d+)(ms|s|m|h)?\s*$/.exec(part);
    if (match === null) throw new InvalidArgumentError(`${name}: ${JSON.stringify(part)} is not a duration like 500ms, 10s, 1m or 2h`);
    return Number(match[1]) * (units[match[2] ?? 'ms'] as number);
  });
}

function positiveNumber(name: string, max = Infinity): (value: string) => number {
  return (value) => {
    const parsed = Number(value);
    if (!Number.isFinite(parsed) || parsed <= 0 || parsed > max) throw new InvalidArgumentError(`${name} must be a number above 0${max === Infinity ? '' : ` and at most ${max}`}`);
    return parsed;
  };
}

export function brokerCommand(): Command {
  return withConfigFileOption(withRaftNodeOptions(withAuthOptions(withServerTlsOptions(new Command('broker')))
    .description('run one broker node: a member of a Raft broker group serving the RocketMQ 5 client protocol'))
    .option('--namesrv <list>', 'NameServer addresses, comma separated', defaultNamesrv)
    .option('--auto-create-topics', 'create unknown topics on first use (8 queues)', false)
    .option('--no-auto-create-groups', 'refuse consumer groups that were not created first')
    .option('--max-body-bytes <n>', 'largest message body accepted', integer('--max-body-bytes', 1), defaultBrokerNodeSettings.maxBodyBytes)
    .option('--send-backlog-bytes <n>', 'bytes of sends that may wait for the quorum; beyond it a send is refused with TOO_MANY_REQUESTS (clients back off and retry) instead of queueing in memory', integer('--send-backlog-bytes', 1), defaultBrokerNodeSettings.sendBacklogBytesMax)
    .option('--register-interval-ms <ms>', 'NameServer re-registration period', integer('--register-interval-ms', 100), defaultBrokerNodeSettings.registerIntervalMs)
    .option('--retention-hours <h>', 'delete log segments whose newest message is older than this (RocketMQ fileReservedTime)', positiveNumber('--retention-hours'), defaultBrokerNodeSettings.retention.maxAgeMs / 3_600_000)
    .option('--retention-bytes <n>', 'delete the oldest segments while the log is larger than this (default: no size limit)', integer('--retention-bytes', 1))
    .option('--retention-disk-percent <p>', 'delete the oldest segments while the data disk is fuller than this', positiveNumber('--retention-disk-percent', 100), defaultBrokerNodeSettings.retention.diskUsedRatioMax * 100)
    .option('--timer-max-delay-ms <ms>', 'longest delay of a delayed or scheduled message (RocketMQ timerMaxDelaySec; longer ones are refused with ILLEGAL_DELIVERY_TIME). Must be the same on every node of the broker group: apply refuses longer delays, so nodes set differently would store different messages', integer('--timer-max-delay-ms', 1_000), defaultBrokerNodeSettings.timerMaxDelayMs)
    .option('--txn-check-after-ms <ms>', 'ask the producer about a transaction left open this long after its half message was stored (RocketMQ transactionTimeOut)', integer('--txn-check-after-ms', 0), defaultBrokerNodeSettings.transactionCheck.checkAfterMs)
    .option('--txn-check-interval-ms <ms>', 'ask again this often while it stays open', integer('--txn-check-interval-ms', 1), defaultBrokerNodeSettings.transactionCheck.checkIntervalMs)
    .option('--txn-checks-max <n>', 'after this many unanswered check-backs, roll the transaction back and log it (RocketMQ transactionCheckMax)', integer('--txn-checks-max', 0), defaultBrokerNodeSettings.transactionCheck.checksMax)
    .option('--client-requests-max <n>', 'calls one client may have served by this node at once; beyond it TOO_MANY_REQUESTS (the client backs off and retries)', integer('--client-requests-max', 1), defaultBrokerNodeSettings.clientLimits.requestsMax)
    .option('--client-polls-max <n>', 'long polls (receive, pull) one client may have waiting on this node at once; beyond it TOO_MANY_REQUESTS', integer('--client-polls-max', 1), defaultBrokerNodeSettings.clientLimits.pollsMax)
    // Hidden: how often the leader's retention service runs (tests shorten it).
    .addOption(new Option('--retention-interval-ms <ms>', 'retention check period').argParser(integer('--retention-interval-ms', 10)).default(defaultBrokerNodeSettings.retentionIntervalMs).hideHelp()))
    .action(async (options: RaftNodeOptions & BrokerFlags & ServerTlsFlags & AuthFlags) => {
      const config: BrokerNodeConfig = {
        ...defaultBrokerNodeSettings, ...raftNodeConfig(options), ...serverTlsConfig(options), ...authConfig(options),
        namesrvAddresses: addressList(options.namesrv), autoCreateTopics: options.autoCreateTopics, autoCreateGroups: options.autoCreateGroups,
        maxBodyBytes: options.maxBodyBytes, sendBacklogBytesMax: options.sendBacklogBytes, registerIntervalMs: options.registerIntervalMs, retentionIntervalMs: options.retentionIntervalMs,
        retention: { maxAgeMs: options.retentionHours * 3_600_000, logBytesMax: options.retentionBytes ?? Infinity, diskUsedRatioMax: options.retentionDiskPercent / 100 },
        timerMaxDelayMs: options.timerMaxDelayMs,
        transactionCheck: { checkAfterMs: options.txnCheckAfterMs, checkIntervalMs: options.txnCheckIntervalMs, checksMax: options.txnChecksMax },
        clientLimits: { requestsMax: options.clientRequestsMax, pollsMax: options.clientPollsMax },
      };
      const node = await BrokerNode.start(config, exitOnFatal(`raftmq broker ${config.nodeId}`));
      // The broker's queue, dedup and timer files are cut with the log: they are derived, synced before each snapshot.
      powerFailOnSignal(node.raft, (randomInt) => node.powerFailFiles(randomInt));
      stopOnSignals(`raftmq broker ${config.nodeId}`, () => node.close());
    });
}

export function topicCommand(): Command {
  const topic = new Command('topic').description('create, update, delete and list topics');
  const settings = (command: Command): Command => command
    .option('--read-queues <n>', 'readable queues per broker group', integer('--read-queues', 1))
    .option('--write-queues <n>', 'writable queues per broker group', integer('--write-queues', 1))
    .option('--queues <n>', 'read and write queues per broker group', integer('--queues', 1))
    .addOption(new Option('--perm <perm>', 'permissions').choices(['rw', 'r', 'w', 'none']))
    .addOption(new Option('--type <type>', 'message type (DELAY: delayed and scheduled messages only; TRANSACTION: transactional messages only; MIXED: all)').choices(['NORMAL', 'FIFO', 'DELAY', 'TRANSACTION', 'MIXED']))
    .option('--broker-group <name>', 'only this broker group')
    .addOption(namesrvOption());
  type SettingsOptions = { readQueues?: number; writeQueues?: number; queues?: number; perm?: string; type?: 'NORMAL' | 'FIFO' | 'DELAY' | 'TRANSACTION' | 'MIXED'; brokerGroup?: string; namesrv: string };
  const toSettings = (o: SettingsOptions) => ({
    ...(o.readQueues ?? o.queues) === undefined ? {} : { readQueues: (o.readQueues ?? o.queues) as number },
    ...(o.writeQueues ?? o.queues) === undefined ? {} : { writeQueues: (o.writeQueues ?? o.queues) as number },
    ...(o.perm === undefined ? {} : { perm: ({ rw: 6, r: 4, w: 2, none: 0 } as Record<string, number>)[o.perm] as number }),
    ...(o.type === undefined ? {} : { messageType: o.type }),
  });
  settings(topic.command('create <name>').description('create a topic on every broker group (8 queues by default)'))
    .action(async (name: string, o: SettingsOptions) => withAdmin(o.namesrv, async (admin) => {
      await admin.createTopic(name, toSettings(o), o.brokerGroup);
      console.log(`created topic ${name}`);
    }));
  settings(topic.command('update <name>').description('change queue counts, permissions or type'))
    .action(async (name: string, o: SettingsOptions) => withAdmin(o.namesrv, async (admin) => {
      await admin.updateTopic(name, toSettings(o), o.brokerGroup);
      console.log(`updated topic ${name}`);
    }));
  topic.command('delete <name>').description('delete a topic').option('--broker-group <name>', 'only this broker group').addOption(namesrvOption())
    .action(async (name: string, o: { brokerGroup?: string; namesrv: string }) => withAdmin(o.namesrv, async (admin) => {
      await admin.deleteTopic(name, o.brokerGroup);
      console.log(`deleted topic ${name}`);
    }));
  topic.command('list').description('every topic of every broker group').option('--json', 'JSON for machines').addOption(namesrvOption())
    .action(async (o: { json?: boolean; namesrv: string }) => withAdmin(o.namesrv, async (admin) => {
      const topics = await admin.listTopics();
      if (o.json === true) {
        console.log(JSON.stringify({ topics }, null, 2));
        return;
      }
      const table = new Table({ head: ['broker group', 'topic', 'type', 'read', 'write', 'perm', 'messages'], ...plainWhenPiped() });
      for (const t of topics) table.push([t.brokerGroup, t.name, t.messageType, t.readQueues, t.writeQueues, t.perm, t.maxOffsets.reduce((a, b) => a + b, 0)]);
      console.log(table.toString());
    }));
  return topic;
}

export function groupCommand(): Command {
  const group = new Command('group').description('consumer groups');
  group.command('list').description('every consumer group with its progress and lag per queue').option('--json', 'JSON for machines').addOption(namesrvOption())
    .action(async (o: { json?: boolean; namesrv: string }) => withAdmin(o.namesrv, async (admin) => {
      const groups = await admin.listGroups();
      if (o.json === true) {
        console.log(JSON.stringify({ groups }, null, 2));
        return;
      }
      const table = new Table({ head: ['broker group', 'group', 'fifo', 'max attempts', 'members', 'topic', 'queue', 'offset', 'max offset', 'lag', 'in flight', 'expired'], ...plainWhenPiped() });
      for (const g of groups) {
        if (g.queues.length === 0) table.push([g.brokerGroup, g.name, g.fifo, g.maxDeliveryAttempts, g.members.length, '', '', '', '', '', '', '']);
        for (const q of g.queues) table.push([g.brokerGroup, g.name, g.fifo, g.maxDeliveryAttempts, g.members.length, q.topic, q.queueId, q.offset, q.maxOffset, q.maxOffset - q.offset, q.inFlight, q.expired]);
      }
      console.log(table.toString());
    }));
  group.command('create <name>').description('create or update a consumer group')
    .option('--max-delivery-attempts <n>', 'deliveries before a message moves to %DLQ%<group>', integer('--max-delivery-attempts', 1), 17)
    .option('--fifo', 'deliver each queue in order, one message (or batch) at a time', false)
    .option('--retry-backoff <list>', 'how long a message a push consumer failed waits, by attempt, comma separated (e.g. 5s,30s,2m; the last repeats; default RocketMQ\'s levels 10s,30s,1m,2m … 1h,2h)', durationList('--retry-backoff'))
    .addOption(namesrvOption())
    .action(async (name: string, o: { maxDeliveryAttempts: number; fifo: boolean; retryBackoff?: number[]; namesrv: string }) => withAdmin(o.namesrv, async (admin) => {
      await admin.createGroup(name, { maxDeliveryAttempts: o.maxDeliveryAttempts, fifo: o.fifo, ...(o.retryBackoff === undefined ? {} : { retryBackoffMs: o.retryBackoff }) });
      console.log(`group ${name} saved`);
    }));
  group.command('reset-offset <name>').description('move the group\'s offsets on a topic back (or forward) to a time')
    .requiredOption('--topic <topic>', 'topic')
    .requiredOption('--time <time>', 'ISO date-time or milliseconds since the epoch')
    .addOption(namesrvOption())
    .action(async (name: string, o: { topic: string; time: string; namesrv: string }) => withAdmin(o.namesrv, async (admin) => {
      const timeMs = /^\d+$/.test(o.time) ? Number(o.time) : Date.parse(o.time);
      if (!Number.isFinite(timeMs)) throw new InvalidArgumentError(`--time ${o.time} is neither a date-time nor milliseconds`);
      await admin.resetOffset(name, o.topic, timeMs);
      console.log(`group ${name} on ${o.topic} reset to ${new Date(timeMs).toISOString()}`);
    }));
  return group;
}

export function clusterCommand(): Command {
  return new Command('cluster')
    .description('every broker node: group, id, address, role, term, commit and applied index, lag and pid')
    .option('--json', 'JSON for machines')
    .addOption(namesrvOption())
    .action(async (o: { json?: boolean; namesrv: string }) => withAdmin(o.namesrv, async (admin) => {
      const nodes = await admin.cluster();
      if (o.json === true) {
        console.log(JSON.stringify({ nodes }, null, 2));
        return;
      }
      const table = new Table({ head: ['group', 'id', 'address', 'role', 'term', 'commit', 'applied', 'lag', 'pid', 'flush', 'seen'], ...plainWhenPiped() });
      for (const n of nodes) table.push([n.group, n.nodeId, n.address, roleCell(n.isLeader ? 'leader' : n.role, n), n.term, n.commitIndex, n.appliedIndex, n.lag, n.pid, n.flushMode, `${(n.lastSeenMsAgo / 1000).toFixed(1)} s ago`]);
      console.log(table.toString());
    }));
}

export function produceCommand(): Command {
  return new Command('produce')
    .description('send messages with our Producer (a smoke test and load generator)')
    .requiredOption('--topic <topic>', 'topic', topicName)
    .option('--count <n>', 'how many messages', integer('--count', 1), 1)
    .option('--size <bytes>', 'body size when --body is not given', integer('--size', 1), 1024)
    .option('--body <text>', 'message body')
    .option('--tag <tag>', 'message tag')
    .option('--key <key>', 'sharding key: same key, same queue, in order (FIFO topics)')
    .option('--inflight <n>', 'sends in flight', integer('--inflight', 1), 64)
    .option('--delay-ms <ms>', 'deliver this long after the send (a delayed message; DELAY or MIXED topics)', integer('--delay-ms', 1))
    .option('--transaction <end>', 'send each message in a transaction, then commit or roll it back (TRANSACTION or MIXED topics)', (value: string) => {
      if (value !== 'commit' && value !== 'rollback') throw new InvalidArgumentError('--transaction is commit or rollback');
      return value;
    })
    .addOption(namesrvOption())
    .action(async (o: { topic: string; count: number; size: number; body?: string; tag?: string; key?: string; inflight: number; delayMs?: number; transaction?: 'commit' | 'rollback'; namesrv: string }) => {
      if (o.delayMs !== undefined && o.transaction !== undefined) throw new Error('give --delay-ms or --transaction, not both: a message is delayed or transactional');
      const producer = new Producer(clientConnection(o.namesrv));
      const body = o.body !== undefined ? Buffer.from(o.body) : Buffer.alloc(o.size, 0x61);
      let next = 0;
      let acked = 0;
      let failed = 0;
      let unknown = 0;
      let lastError = '';
      const bar = ProgressBar.start(o.count, 'produce');
      const started = performance.now();
      try {
        await producer.start([o.topic]);
        const worker = async (): Promise<void> => {
          while (next < o.count) {
            next++;
            try {
              const message = {
                topic: o.topic, body, ...(o.tag === undefined ? {} : { tag: o.tag }), ...(o.key === undefined ? {} : { shardingKey: o.key }),
                ...(o.delayMs === undefined ? {} : { deliveryTimeMs: Date.now() + o.delayMs }),
              };
              let receipt;
              if (o.transaction === undefined) {
                receipt = await producer.send(message);
              } else {
                const transaction = producer.beginTransaction();
                receipt = await transaction.send(message);
                await (o.transaction === 'commit' ? transaction.commit() : transaction.rollback());
              }
              acked++;
              const where = receipt.recallHandle !== '' ? `(delayed; recall handle ${receipt.recallHandle})` : o.transaction !== undefined ? `(transaction ${o.transaction === 'commit' ? 'committed' : 'rolled back'})` : `offset ${receipt.offset}`;
              if (o.count === 1) console.log(`sent ${receipt.messageId} to ${receipt.brokerGroup} queue ${receipt.queueId} ${where}`);
            } catch (error) {
              lastError = (error as Error).message;
              if (error instanceof MQClientError && !error.definite) unknown++;
              else failed++;
            }
            bar?.update(acked + failed + unknown);
          }
        };
        await Promise.all(Array.from({ length: Math.min(o.inflight, o.count) }, worker));
      } finally {
        bar?.stop();
        producer.shutdown();
      }
      const seconds = (performance.now() - started) / 1000;
      if (o.count > 1 || acked === 0) console.log(`${acked} acknowledged, ${failed} failed, ${unknown} outcome unknown in ${seconds.toFixed(2)} s (${Math.round(acked / seconds)} msg/s)${lastError === '' ? '' : `; last error: ${lastError}`}`);
      if (acked !== o.count) process.exitCode = 1;
    });
}

export function consumeCommand(): Command {
  return new Command('consume')
    .description('read messages with a consumer group (our PullConsumer); prints bodies unless --count is large')
    .requiredOption('--topic <topic>', 'topic', topicName)
    .requiredOption('--group <group>', 'consumer group', groupName)
    .option('--count <n>', 'stop after this many messages', integer('--count', 1))
    .option('--idle-ms <ms>', 'stop after this long without a message', integer('--idle-ms', 1), 5_000)
    .option('--tags <expression>', "tag filter: '*' or 'TagA || TagB'", '*')
    .option('--broadcast', 'broadcasting mode: read every queue, keep offsets locally', false)
    .option('--print', 'print every message (default when --count ≤ 100)')
    .addOption(namesrvOption())
    .action(async (o: { topic: string; group: string; count?: number; idleMs: number; tags: string; broadcast: boolean; print?: boolean; namesrv: string }) => {
      const consumer = new PullConsumer({ ...clientConnection(o.namesrv), group: o.group, mode: o.broadcast ? 'broadcasting' : 'clustering' });
      consumer.subscribe(o.topic, o.tags);
      const print = o.print ?? (o.count !== undefined && o.count <= 100);
      const bar = o.count === undefined ? undefined : ProgressBar.start(o.count, 'consume');
      let received = 0;
      let lastMessageAt = Date.now();
      const started = performance.now();
      try {
        await consumer.start();
        while ((o.count === undefined || received < o.count) && Date.now() - lastMessageAt < o.idleMs) {
          const messages = await consumer.poll(Math.min(500, o.idleMs), o.count === undefined ? 256 : Math.min(256, o.count - received));
          if (messages.length > 0) lastMessageAt = Date.now();
          for (const m of messages) {
            received++;
            if (print) printLine(bar, `${m.brokerGroup}/${m.queueId}@${m.offset} ${m.messageId}${m.tag === '' ? '' : ` [${m.tag}]`}: ${m.body.toString('utf8').slice(0, 200)}`);
          }
          bar?.update(received);
        }
      } finally {
        bar?.stop();
        await consumer.shutdown();
      }
      console.log(`${received} messages in ${((performance.now() - started) / 1000).toFixed(2)} s`);
      if (o.count !== undefined && received < o.count) process.exitCode = 1;
    });
}
