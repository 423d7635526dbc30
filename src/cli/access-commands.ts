/**
 * `raftmq user create|update|delete|list` and `raftmq acl grant|revoke|list`: users and their
 * permissions on every broker group (replicated state; a change holds on every node of a group
 * once it is committed, without a restart). A secret is read from a file or the environment,
 * never from an argument (`ps` would show it), and never printed.
 */
import { readFileSync } from 'node:fs';
import Table from 'cli-table3';
import { Command, InvalidArgumentError, Option } from 'commander';
import { namesrvOption, withAdmin } from './admin-session.js';
import { plainWhenPiped } from './tables.js';

const actionNames = ['Pub', 'Sub', 'Admin', 'All'] as const;

function actionList(value: string): string[] {
  const actions = value.split(',').map((part) => part.trim()).filter((part) => part !== '');
  const wrong = actions.find((action) => !(actionNames as readonly string[]).includes(action));
  if (actions.length === 0 || wrong !== undefined) throw new InvalidArgumentError(`actions are a comma-separated list of ${actionNames.join(', ')}${wrong === undefined ? '' : `, not ${JSON.stringify(wrong)}`}`);
  return actions;
}

/** The new secret: from --secret-file (its first line) or RAFTMQ_USER_SECRET. */
function newSecret(file: string | undefined): string {
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      throw new Error(`cannot read the secret file ${file}: ${(error as Error).message}`);
    }
    const secret = text.split(/\r?\n/)[0] ?? '';
    if (secret === '') throw new Error(`the secret file ${file} is empty`);
    return secret;
  }
  const secret = process.env.RAFTMQ_USER_SECRET;
  if (secret === undefined || secret === '') throw new Error('give the user\'s secret with --secret-file <file> or RAFTMQ_USER_SECRET (never as an argument)');
  return secret;
}

const brokerGroupOption = (): Option => new Option('--broker-group <name>', 'only this broker group (default: every one)');

export function userCommand(): Command {
  const user = new Command('user').description('users that sign their calls (access key = user name, and a secret); authentication is on where brokers run with --auth-key-file and --auth-admin-file');
  user.command('create <name>').description('create a user (its secret from --secret-file or RAFTMQ_USER_SECRET)')
    .option('--secret-file <file>', 'file whose first line is the secret')
    .option('--super', 'a super user: may do everything', false)
    .addOption(brokerGroupOption()).addOption(namesrvOption())
    .action(async (name: string, o: { secretFile?: string; super: boolean; brokerGroup?: string; namesrv: string }) => withAdmin(o.namesrv, async (admin) => {
      await admin.createUser(name, newSecret(o.secretFile), o.super ? 'super' : 'normal', o.brokerGroup);
      console.log(`created ${o.super ? 'super ' : ''}user ${name}`);
    }));
  user.command('update <name>').description('give a user a new secret (from --secret-file or RAFTMQ_USER_SECRET)')
    .option('--secret-file <file>', 'file whose first line is the secret')
    .addOption(new Option('--kind <kind>', 'also change its kind').choices(['normal', 'super']))
    .addOption(brokerGroupOption()).addOption(namesrvOption())
    .action(async (name: string, o: { secretFile?: string; kind?: 'normal' | 'super'; brokerGroup?: string; namesrv: string }) => withAdmin(o.namesrv, async (admin) => {
      await admin.updateUser(name, newSecret(o.secretFile), o.kind, o.brokerGroup);
      console.log(`updated user ${name}`);
    }));
  user.command('delete <name>').description('delete a user and its policies')
    .addOption(brokerGroupOption()).addOption(namesrvOption())
    .action(async (name: string, o: { brokerGroup?: string; namesrv: string }) => withAdmin(o.namesrv, async (admin) => {
      await admin.deleteUser(name, o.brokerGroup);
      console.log(`deleted user ${name}`);
    }));
  user.command('list').description('every user of every broker group (never a secret)').option('--json', 'JSON for machines').addOption(namesrvOption())
    .action(async (o: { json?: boolean; namesrv: string }) => withAdmin(o.namesrv, async (admin) => {
      const listings = await admin.listAccess();
      const users = listings.flatMap((listing) => listing.users.map((u) => ({ brokerGroup: listing.brokerGroup, ...u })));
      if (o.json === true) {
        console.log(JSON.stringify({ users }, null, 2));
        return;
      }
      const table = new Table({ head: ['broker group', 'user', 'kind'], ...plainWhenPiped() });
      for (const u of users) table.push([u.brokerGroup, u.name, u.kind]);
      console.log(table.toString());
    }));
  return user;
}

export function aclCommand(): Command {
  const acl = new Command('acl').description('what users may do: Allow or Deny of Pub, Sub, Admin (or All) on Topic:<name>, Topic:<prefix>*, Topic:*, Group:..., Cluster or *; denied by default, and a Deny beats every Allow');
  acl.command('grant <user> <resource> <actions>').description('allow (or with --deny, deny) the actions, e.g. raftmq acl grant alice Topic:orders Pub,Sub')
    .option('--deny', 'a Deny entry instead of an Allow', false)
    .addOption(brokerGroupOption()).addOption(namesrvOption())
    .action(async (user: string, resource: string, actions: string, o: { deny: boolean; brokerGroup?: string; namesrv: string }) => withAdmin(o.namesrv, async (admin) => {
      await admin.grant(user, resource, actionList(actions), o.deny ? 'Deny' : 'Allow', o.brokerGroup);
      console.log(`${o.deny ? 'denied' : 'allowed'} ${actions} on ${resource} to ${user}`);
    }));
  acl.command('revoke <user> <resource> [actions]').description('take back some actions of an entry, or the whole entry when none are named')
    .option('--deny', 'the Deny entry instead of the Allow one', false)
    .addOption(brokerGroupOption()).addOption(namesrvOption())
    .action(async (user: string, resource: string, actions: string | undefined, o: { deny: boolean; brokerGroup?: string; namesrv: string }) => withAdmin(o.namesrv, async (admin) => {
      await admin.revoke(user, resource, actions === undefined ? [] : actionList(actions), o.deny ? 'Deny' : 'Allow', o.brokerGroup);
      console.log(`revoked ${actions ?? 'the entry'} on ${resource} from ${user}`);
    }));
  acl.command('list').description('every policy of every broker group').option('--user <name>', 'only this user\'s').option('--json', 'JSON for machines').addOption(namesrvOption())
    .action(async (o: { user?: string; json?: boolean; namesrv: string }) => withAdmin(o.namesrv, async (admin) => {
      const listings = await admin.listAccess();
      const policies = listings.flatMap((listing) => listing.policies.filter((p) => o.user === undefined || p.user === o.user).map((p) => ({ brokerGroup: listing.brokerGroup, ...p })));
      if (o.json === true) {
        console.log(JSON.stringify({ policies }, null, 2));
        return;
      }
      const table = new Table({ head: ['broker group', 'user', 'resource', 'decision', 'actions'], ...plainWhenPiped() });
      for (const p of policies) table.push([p.brokerGroup, p.user, p.resource, p.decision, p.actions.join(',')]);
      console.log(table.toString());
    }));
  return acl;
}
