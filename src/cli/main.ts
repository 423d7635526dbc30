#!/usr/bin/env node
/**
 * `raftmq` — run and operate RaftMQ nodes.
 *
 *   raftmq dev                      NameServer + access point + one 3-node broker group, data under ./data
 *   raftmq namesrv | raftmq broker --group g --id n1 --members n1=...,n2=...,n3=... --data ./data/n1
 *   raftmq topic create|update|delete|list   raftmq group list|create|reset-offset
 *   raftmq produce --topic T --count 1000    raftmq consume --topic T --group G
 *   raftmq cluster [--json]                  raftmq transfer-leader --to n2
 *   raftmq node | status | propose | members   the same on a bare Raft group
 */
import './quiet-warnings.js';
import { Command, Option } from 'commander';
import Table from 'cli-table3';
import { RaftClientError, RaftNodeClient } from '../client/raft-node-client.js';
import type { Member } from '../raft/types.js';
import { RaftGroupNode } from '../server/raft-group-node.js';
import { dataDirInUse, repairDataDir } from '../server/data-dir.js';
import {
  brokerCommand, clusterCommand, consumeCommand, defaultNamesrv, groupCommand, namesrvCommand, produceCommand, topicCommand,
} from './broker-commands.js';
import { addressList, exitOnFatal, integer, parseMembers, powerFailOnSignal, raftNodeConfig, stopOnSignals, withRaftNodeOptions, type RaftNodeOptions } from './node-options.js';
import { Admin } from '../client/admin.js';
import { runDevCluster } from './dev-cluster.js';
import { aclCommand, userCommand } from './access-commands.js';
import { dlqCommand } from './dlq-commands.js';
import { messageCommand } from './message-commands.js';
import { plainWhenPiped, roleCell } from './tables.js';
import { packageVersion } from './package-version.js';
import { loadConfigFileBeforeParse, withConfigFileOption } from './config-file.js';
import { clientConnection, clientTls, raftNodeClientOptions, serverTlsConfig, withGlobalTlsOptions, withServerTlsOptions, type ServerTlsFlags } from './connection-options.js';

const defaultNodes = '127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003';

/** Runs `action` with a client for the `--nodes` list and always closes it. */
async function withClient(nodes: string, action: (client: RaftNodeClient) => Promise<void>): Promise<void> {
  const client = new RaftNodeClient(addressList(nodes), raftNodeClientOptions());
  try {
    await action(client);
  } finally {
    client.close();
  }
}

function nodeCommand(): Command {
  return withConfigFileOption(withRaftNodeOptions(withServerTlsOptions(new Command('node')
    .description('run one member of a bare Raft group (no broker layer)'))))
    .action(async (options: RaftNodeOptions & ServerTlsFlags) => {
      const config = { ...raftNodeConfig(options), ...serverTlsConfig(options) };
      const node = await RaftGroupNode.start(config, exitOnFatal(`raftmq node ${config.nodeId}`));
      powerFailOnSignal(node);
      stopOnSignals(`raftmq node ${config.nodeId}`, () => node.close());
    });
}

function repairCommand(): Command {
  return new Command('repair')
    .description('rebuild a stopped node from its peers: moves its log and snapshots aside; started again, it abstains from elections until a leader has restored it')
    .requiredOption('--data <dir>', 'data directory of the (stopped) node')
    .action(async (options: { data: string }) => {
      const moved = await repairDataDir(options.data, Date.now(), () => dataDirInUse(options.data));
      console.log(moved.length === 0 ? `nothing to move in ${options.data}` : `moved aside:\n  ${moved.join('\n  ')}\nstart the node again: it catches up from its peers (by snapshot) before it votes`);
    });
}

function statusCommand(): Command {
  return new Command('status')
    .description('every node\'s group, id, address, role, term, commit and applied index, lag and pid')
    .option('--nodes <list>', 'node addresses, comma separated', defaultNodes)
    .option('--json', 'one JSON document for machines')
    .action(async (options: { nodes: string; json?: boolean }) => {
      await withClient(options.nodes, async (client) => {
        const statuses = await client.statusAll();
        const leaderCommit = Math.max(0, ...statuses.map((s) => (s.status?.role === 'leader' ? s.status.commitIndex : 0)));
        const rows = statuses.map(({ address, status, error }) => status === undefined
          ? { address, error }
          : { group: status.groupId, id: status.nodeId, address, role: status.role, term: status.term, leader: status.leaderId, commitIndex: status.commitIndex, appliedIndex: status.appliedIndex, lastIndex: status.lastIndex, lag: Math.max(0, leaderCommit - status.appliedIndex), pid: status.pid, flush: status.flushMode, failed: status.failed, abstainingUntil: status.abstainingUntil });
        if (options.json === true) {
          console.log(JSON.stringify({ nodes: rows }, null, 2));
          return;
        }
        const table = new Table({ head: ['group', 'id', 'address', 'role', 'term', 'leader', 'commit', 'applied', 'last', 'lag', 'pid', 'flush'], ...plainWhenPiped() });
        for (const row of rows) {
          if ('error' in row) table.push([{ colSpan: 12, content: `${row.address}: unreachable (${row.error})` }]);
          else table.push([row.group, row.id, row.address, roleCell(row.role, row), row.term, row.leader, row.commitIndex, row.appliedIndex, row.lastIndex, row.lag, row.pid, row.flush]);
        }
        console.log(table.toString());
      });
    });
}

function proposeCommand(): Command {
  return new Command('propose')
    .description('propose entries to the group (a smoke test and load generator)')
    .option('--nodes <list>', 'node addresses, comma separated', defaultNodes)
    .option('--count <n>', 'how many entries', integer('--count', 1), 1000)
    .option('--size <bytes>', 'payload size', integer('--size', 0), 1024)
    .option('--inflight <n>', 'proposals in flight', integer('--inflight', 1), 64)
    .action(async (options: { nodes: string; count: number; size: number; inflight: number }) => {
      const client = new RaftNodeClient(addressList(options.nodes), raftNodeClientOptions()); // closed below, after the summary
      const payload = new Uint8Array(options.size).fill(0x61);
      let next = 0;
      let acked = 0;
      let failed = 0;
      let unknown = 0;
      const started = performance.now();
      const worker = async (): Promise<void> => {
        while (next < options.count) {
          next++;
          try {
            await client.propose(payload);
            acked++;
          } catch (error) {
            if (error instanceof RaftClientError && !error.definite) unknown++;
            else failed++;
          }
          if ((acked + failed + unknown) % 1000 === 0 && process.stderr.isTTY) process.stderr.write(`\r${acked + failed + unknown}/${options.count}`);
        }
      };
      await Promise.all(Array.from({ length: Math.min(options.inflight, options.count) }, worker));
      const seconds = (performance.now() - started) / 1000;
      if (process.stderr.isTTY) process.stderr.write('\r');
      console.log(`${acked} acknowledged, ${failed} failed, ${unknown} outcome unknown in ${seconds.toFixed(2)} s (${Math.round(acked / seconds)} entries/s)`);
      client.close();
      if (acked !== options.count) process.exitCode = 1;
    });
}

function transferCommand(): Command {
  return new Command('transfer-leader')
    .description('hand leadership to another member (graceful, before maintenance)')
    .requiredOption('--to <nodeId>', 'the member that should lead')
    .option('--broker-group <name>', 'broker group (found through the NameServer)', 'dev')
    .option('--namesrv <list>', 'NameServer addresses', defaultNamesrv)
    .option('--nodes <list>', 'talk to these node addresses directly instead of asking the NameServer')
    .action(async (options: { to: string; nodes?: string; brokerGroup: string; namesrv: string }) => {
      if (options.nodes === undefined) {
        const admin = new Admin(clientConnection(options.namesrv));
        try {
          const { term } = await admin.transferLeader(options.brokerGroup, options.to);
          console.log(`${options.to} leads ${options.brokerGroup} in term ${term}`);
        } finally {
          admin.close();
        }
        return;
      }
      await withClient(options.nodes, async (client) => {
        await client.transferLeadership(options.to);
        const deadline = Date.now() + 5_000;
        while (Date.now() < deadline) {
          const leader = await client.findLeader();
          const status = await client.status(leader);
          if (status.nodeId === options.to) {
            console.log(`${options.to} leads term ${status.term}`);
            return;
          }
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        throw new Error(`${options.to} did not take over within 5 s`);
      });
    });
}

function membersCommand(): Command {
  const members = new Command('members').description('single-server membership changes');
  members.command('add <member>').description('add a member, given as id=host:port (start the new node with the new member list first)')
    .option('--nodes <list>', 'node addresses, comma separated', defaultNodes)
    .action(async (member: string, options: { nodes: string }) => {
      const [parsed] = parseMembers(member);
      await withClient(options.nodes, async (client) => {
        await client.changeMembership({ add: parsed as Member });
        console.log(`added ${(parsed as Member).id}`);
      });
    });
  members.command('remove <nodeId>').description('remove a member')
    .option('--nodes <list>', 'node addresses, comma separated', defaultNodes)
    .action(async (nodeId: string, options: { nodes: string }) => {
      await withClient(options.nodes, async (client) => {
        await client.changeMembership({ removeId: nodeId });
        console.log(`removed ${nodeId}`);
      });
    });
  return members;
}

function devCommand(): Command {
  return new Command('dev')
    .description('start a NameServer with the access point and one 3-node broker group on 127.0.0.1, data on disk; Ctrl-C stops it. raftmq dev --tls: TLS on every port, with throwaway certificates in <data>/tls')
    .option('--data <dir>', 'data directory (one sub-directory per node)', './data')
    .option('--base-port <port>', 'first broker port (three consecutive ports)', integer('--base-port', 1), 10911)
    .option('--namesrv <host:port>', 'NameServer address', defaultNamesrv)
    .option('--access-point <host:port>', 'access point address (RocketMQ 5 clients connect here)', '127.0.0.1:8081')
    .addOption(new Option('--flush <mode>', 'sync or async').choices(['sync', 'async']).default('sync'))
    .option('--no-auto-create', 'do not create topics on first use')
    .option('--acl', 'authentication and ACL on: a throwaway cluster key and super user in <data>/auth', false)
    .option('--anonymous-user <name>', 'with --acl: unsigned calls act as this user (create it and grant it what they may do)')
    .action(async (options: { data: string; basePort: number; namesrv: string; accessPoint: string; flush: 'sync' | 'async'; autoCreate: boolean; acl: boolean; anonymousUser?: string }) => {
      const tls = clientTls();
      if (tls !== undefined && Object.keys(tls).length > 0) throw new Error('raftmq dev makes its own certificates: give --tls, not --tls-ca');
      await runDevCluster({
        dataDir: options.data, basePort: options.basePort, flushMode: options.flush, namesrv: options.namesrv, accessPoint: options.accessPoint, autoCreateTopics: options.autoCreate,
        tls: tls !== undefined, acl: options.acl, ...(options.anonymousUser === undefined ? {} : { anonymousUser: options.anonymousUser }),
      });
    });
}

function buildProgram(): Command {
  return withGlobalTlsOptions(new Command('raftmq'))
    .description('RaftMQ: a RocketMQ-style broker whose broker groups are Raft clusters')
    .version(packageVersion(), '-V, --version', 'print the raftmq version')
    .hook('preSubcommand', loadConfigFileBeforeParse)
    .addCommand(devCommand())
    .addCommand(namesrvCommand())
    .addCommand(brokerCommand())
    .addCommand(topicCommand())
    .addCommand(groupCommand())
    .addCommand(produceCommand())
    .addCommand(consumeCommand())
    .addCommand(dlqCommand())
    .addCommand(messageCommand())
    .addCommand(userCommand())
    .addCommand(aclCommand())
    .addCommand(clusterCommand())
    .addCommand(nodeCommand())
    .addCommand(statusCommand())
    .addCommand(proposeCommand())
    .addCommand(transferCommand())
    .addCommand(membersCommand())
    .addCommand(repairCommand());
}

buildProgram().parseAsync(process.argv).catch((error: unknown) => {
  console.error(`raftmq: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
