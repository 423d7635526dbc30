/**
 * The access-control table: every rule of authorize (default deny, super users, wildcards,
 * Deny over Allow, All, request resources), every command and its refusals, command
 * validation from JSON; a property against a plain reference evaluator over random users,
 * policies and requests, with a negative control (an evaluator where Allow wins, or where the
 * most specific entry wins, as RocketMQ does, must be caught); and the encoding: round trip,
 * equal bytes for equal tables reached in different orders, and clear errors on damage.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AccessControlTable, AccessTableFormatError, accessEntriesPerUserMax, validateAccessCommand,
  type AccessAction, type AccessCommand, type AccessDecision, type RequestAction, type UserKind,
} from './access-control.js';

const sealed = (text: string): string => Buffer.from(`sealed:${text}`).toString('base64');
const create = (name: string, kind: UserKind = 'normal'): AccessCommand => ({ type: 'user.create', name, secretSealed: sealed(name), kind });
const grant = (user: string, resource: string, actions: AccessAction[], decision: AccessDecision = 'Allow'): AccessCommand => ({ type: 'acl.grant', user, resource, decision, actions });

function tableWith(...commands: AccessCommand[]): AccessControlTable {
  const table = new AccessControlTable();
  for (const command of commands) expect(table.apply(command), JSON.stringify(command)).toEqual({ ok: true });
  return table;
}

const allowed = (table: AccessControlTable, user: string, resource: string, action: RequestAction): boolean => table.authorize(user, resource, action).allowed;

describe('authorize', () => {
  it('denies by default, and an unknown user', () => {
    const table = tableWith(create('alice'));
    expect(table.authorize('alice', 'Topic:t', 'Pub')).toEqual({ allowed: false, reason: 'alice may not Pub on Topic:t: no policy allows it (denied by default)' });
    expect(table.authorize('mallory', 'Topic:t', 'Pub')).toEqual({ allowed: false, reason: 'no user "mallory"' });
  });

  it('allows a super user everything', () => {
    const table = tableWith(create('root', 'super'), grant('root', '*', ['All'], 'Deny'));
    for (const resource of ['Topic:t', 'Group:g', 'Cluster']) for (const action of ['Pub', 'Sub', 'Admin'] as const) expect(allowed(table, 'root', resource, action)).toBe(true);
    expect(table.authorize('root', 'Cluster', 'Admin').reason).toBe('root is a super user');
  });

  it('matches literal, prefix, per-type and global wildcards', () => {
    const table = tableWith(create('u'), grant('u', 'Topic:orders', ['Pub']), grant('u', 'Topic:log-*', ['Sub']), grant('u', 'Group:*', ['Sub']), create('v'), grant('v', '*', ['Admin']));
    expect(allowed(table, 'u', 'Topic:orders', 'Pub')).toBe(true);
    expect(allowed(table, 'u', 'Topic:orders2', 'Pub')).toBe(false);
    expect(allowed(table, 'u', 'Topic:order', 'Pub')).toBe(false);
    expect(allowed(table, 'u', 'Topic:orders', 'Sub')).toBe(false);
    expect(allowed(table, 'u', 'Topic:log-', 'Sub')).toBe(true); // the prefix itself matches
    expect(allowed(table, 'u', 'Topic:log-app', 'Sub')).toBe(true);
    expect(allowed(table, 'u', 'Topic:log', 'Sub')).toBe(false);
    expect(allowed(table, 'u', 'Group:log-app', 'Sub')).toBe(true);
    expect(allowed(table, 'u', 'Topic:anything', 'Sub')).toBe(false);
    expect(allowed(table, 'u', 'Cluster', 'Sub')).toBe(false);
    for (const resource of ['Topic:t', 'Group:g', 'Cluster']) expect(allowed(table, 'v', resource, 'Admin')).toBe(true);
    expect(allowed(table, 'v', 'Topic:t', 'Pub')).toBe(false);
    expect(table.authorize('u', 'Topic:log-app', 'Sub').reason).toBe('u may Sub on Topic:log-app: allowed by Allow Topic:log-*');
  });

  it('keeps Topic and Group apart, and Cluster to itself', () => {
    const table = tableWith(create('u'), grant('u', 'Topic:*', ['All']), grant('u', 'Cluster', ['Admin']));
    expect(allowed(table, 'u', 'Group:x', 'Sub')).toBe(false);
    expect(allowed(table, 'u', 'Cluster', 'Admin')).toBe(true);
    expect(allowed(table, 'u', 'Cluster', 'Pub')).toBe(false);
    expect(allowed(table, 'u', 'Topic:x', 'Admin')).toBe(true);
  });

  it('lets All match every action', () => {
    const table = tableWith(create('u'), grant('u', 'Group:g', ['All']));
    for (const action of ['Pub', 'Sub', 'Admin'] as const) expect(allowed(table, 'u', 'Group:g', action)).toBe(true);
  });

  it('lets any matching Deny beat every Allow, however specific', () => {
    const table = tableWith(create('u'), grant('u', 'Topic:*', ['Pub'], 'Deny'), grant('u', 'Topic:orders', ['Pub', 'Sub']));
    expect(table.authorize('u', 'Topic:orders', 'Pub')).toEqual({ allowed: false, reason: 'u may not Pub on Topic:orders: denied by Deny Topic:*' });
    expect(allowed(table, 'u', 'Topic:orders', 'Sub')).toBe(true);
    const same = tableWith(create('w'), grant('w', 'Topic:t', ['Sub']), grant('w', 'Topic:t', ['All'], 'Deny'));
    expect(allowed(same, 'w', 'Topic:t', 'Sub')).toBe(false);
  });

  it('refuses a request with a wildcard, a malformed resource or action All', () => {
    const table = tableWith(create('u'), grant('u', '*', ['All']));
    for (const resource of ['*', 'Topic:*', 'Topic:a*', 'Group:*']) expect(table.authorize('u', resource, 'Pub').reason).toMatch(/has a wildcard/);
    for (const resource of ['', 'topic:a', 'Topic:', 'Topic:a b', 'Queue:a', 'Cluster:x']) expect(allowed(table, 'u', resource, 'Pub')).toBe(false);
    expect(table.authorize('u', 'Topic:a', 'All' as RequestAction).reason).toMatch(/requested action "All" is invalid/);
    expect(allowed(table, 'u', 'Topic:%DLQ%g', 'Sub')).toBe(true); // DLQ topics are topics
  });
});

describe('commands', () => {
  it('creates, updates and deletes users, without listing secrets', () => {
    const table = tableWith(create('bob'), create('alice', 'super'));
    expect(table.listUsers()).toEqual([{ name: 'alice', kind: 'super' }, { name: 'bob', kind: 'normal' }]);
    expect(table.user('bob')?.secretSealed.toString()).toBe('sealed:bob');
    expect(table.apply({ type: 'user.update', name: 'bob', secretSealed: sealed('new') })).toEqual({ ok: true });
    expect(table.user('bob')).toEqual({ name: 'bob', kind: 'normal', secretSealed: Buffer.from('sealed:new') });
    expect(table.apply({ type: 'user.update', name: 'alice', secretSealed: sealed('a2'), kind: 'normal' })).toEqual({ ok: true });
    expect(table.user('alice')?.kind).toBe('normal');
    expect(table.apply({ type: 'user.delete', name: 'bob' })).toEqual({ ok: true });
    expect(table.listUsers()).toEqual([{ name: 'alice', kind: 'normal' }]);
    expect(table.user('bob')).toBeUndefined();
  });

  it('refuses duplicates, unknown users and bad names, changing nothing', () => {
    const table = tableWith(create('alice'), grant('alice', 'Topic:t', ['Pub']));
    const before = table.encode();
    const cases: [AccessCommand, RegExp][] = [
      [create('alice'), /user.create: user "alice" exists/],
      [{ type: 'user.update', name: 'bob', secretSealed: sealed('x') }, /user.update: no user "bob"/],
      [{ type: 'user.delete', name: 'bob' }, /user.delete: no user "bob"/],
      [grant('bob', 'Topic:t', ['Pub']), /acl.grant: no user "bob"/],
      [{ type: 'acl.revoke', user: 'bob', resource: 'Topic:t', decision: 'Allow' }, /acl.revoke: no user "bob"/],
      [create(''), /user name "" is invalid: use 1-64 of A-Z a-z 0-9 - _ \./],
      [create('a'.repeat(65)), /is invalid/],
      [create('al ice'), /is invalid/],
      [create('alice:x'), /is invalid/],
      [create('ålice'), /is invalid/],
      [{ type: 'user.create', name: 'carol', secretSealed: '', kind: 'normal' }, /secretSealed must be non-empty canonical base64/],
      [{ type: 'user.create', name: 'carol', secretSealed: 'not base64!', kind: 'normal' }, /canonical base64/],
      [{ type: 'user.create', name: 'carol', secretSealed: Buffer.alloc(1025).toString('base64'), kind: 'normal' }, /1025 bytes, more than 1024/],
      [{ type: 'user.create', name: 'carol', secretSealed: sealed('c'), kind: 'admin' as UserKind }, /kind "admin" is invalid/],
      [grant('alice', 'Topic:a**', ['Pub']), /invalid prefix/],
      [grant('alice', 'Topic:*a', ['Pub']), /Topic:\*a/],
      [grant('alice', 'topic:a', ['Pub']), /resource "topic:a" is invalid/],
      [grant('alice', 'Cluster:*', ['Admin']), /is invalid/],
      [grant('alice', 'Topic:', ['Pub']), /topic name "" is invalid/],
      [grant('alice', `Group:${'g'.repeat(121)}`, ['Sub']), /consumer group name/],
      [grant('alice', 'Topic:t', []), /actions must not be empty/],
      [grant('alice', 'Topic:t', ['Pub', 'Pub']), /actions must not repeat/],
      [grant('alice', 'Topic:t', ['Write' as AccessAction]), /action "Write" is invalid/],
      [grant('alice', 'Topic:t', ['Pub'], 'Maybe' as AccessDecision), /decision "Maybe" is invalid/],
      [{ type: 'acl.revoke', user: 'alice', resource: 'Topic:t', decision: 'Deny' }, /alice has no Deny Topic:t/],
      [{ type: 'acl.revoke', user: 'alice', resource: 'Topic:t', decision: 'Allow', actions: ['Sub'] }, /has no Sub/],
    ];
    for (const [command, reason] of cases) {
      const result = table.apply(command);
      expect(result.ok, JSON.stringify(command)).toBe(false);
      if (!result.ok) expect(result.reason).toMatch(reason);
    }
    expect(table.encode()).toEqual(before);
  });

  it('grants by union, revokes what it names, and deletes a user\'s policies with it', () => {
    const table = tableWith(create('u'), grant('u', 'Topic:t', ['Sub']), grant('u', 'Topic:t', ['Pub']), grant('u', 'Topic:t', ['Pub'], 'Deny'));
    expect(table.listPolicies('u')).toEqual([
      { user: 'u', resource: 'Topic:t', decision: 'Allow', actions: ['Pub', 'Sub'] },
      { user: 'u', resource: 'Topic:t', decision: 'Deny', actions: ['Pub'] },
    ]);
    expect(table.apply({ type: 'acl.revoke', user: 'u', resource: 'Topic:t', decision: 'Allow', actions: ['Pub'] })).toEqual({ ok: true });
    expect(table.apply({ type: 'acl.revoke', user: 'u', resource: 'Topic:t', decision: 'Deny' })).toEqual({ ok: true });
    expect(table.listPolicies()).toEqual([{ user: 'u', resource: 'Topic:t', decision: 'Allow', actions: ['Sub'] }]);
    expect(table.apply({ type: 'acl.revoke', user: 'u', resource: 'Topic:t', decision: 'Allow', actions: ['Sub'] })).toEqual({ ok: true });
    expect(table.listPolicies()).toEqual([]);
    tableWith(); // an empty table is fine
    const again = tableWith(create('u'), grant('u', '*', ['All']), { type: 'user.delete', name: 'u' }, create('u'));
    expect(again.listPolicies()).toEqual([]);
    expect(allowed(again, 'u', 'Topic:t', 'Pub')).toBe(false);
  });

  it('lists policies in canonical order, of everyone or of one user', () => {
    const table = tableWith(create('b'), create('a'), grant('b', 'Topic:z', ['Pub']), grant('b', 'Group:g', ['Sub']), grant('a', '*', ['All'], 'Deny'));
    expect(table.listPolicies().map((policy) => `${policy.user} ${policy.resource}`)).toEqual(['a *', 'b Group:g', 'b Topic:z']);
    expect(table.listPolicies('a')).toHaveLength(1);
    expect(table.listPolicies('nobody')).toEqual([]);
  });

  it('bounds the entries of one user', () => {
    const table = tableWith(create('u'));
    for (let i = 0; i < accessEntriesPerUserMax; i++) expect(table.apply(grant('u', `Topic:t${i}`, ['Pub'])).ok).toBe(true);
    expect(table.apply(grant('u', 'Topic:t0', ['Sub']))).toEqual({ ok: true }); // an existing entry still grows
    expect(table.apply(grant('u', 'Topic:one-more', ['Pub']))).toMatchObject({ ok: false, reason: expect.stringMatching(/already has 1000 policy entries/) });
  });
});

describe('validateAccessCommand', () => {
  it('accepts every well-formed command as its JSON', () => {
    const commands: AccessCommand[] = [
      create('alice', 'super'),
      { type: 'user.update', name: 'alice', secretSealed: sealed('x') },
      { type: 'user.update', name: 'alice', secretSealed: sealed('x'), kind: 'normal' },
      { type: 'user.delete', name: 'alice' },
      grant('alice', 'Topic:t*', ['Pub', 'Sub']),
      { type: 'acl.revoke', user: 'alice', resource: '*', decision: 'Deny' },
      { type: 'acl.revoke', user: 'alice', resource: 'Cluster', decision: 'Allow', actions: ['Admin'] },
    ];
    for (const command of commands) expect(validateAccessCommand(JSON.parse(JSON.stringify(command)))).toEqual({ ok: true, command });
  });

  it('refuses every malformed shape with a reason', () => {
    const cases: [unknown, RegExp][] = [
      [null, /must be an object/], [[], /must be an object/], ['user.create', /must be an object/],
      [{}, /type undefined is unknown/], [{ type: 'user.drop', name: 'a' }, /type "user.drop" is unknown: use user.create/],
      [{ type: 'toString' }, /is unknown/],
      [{ type: 'user.delete' }, /user.delete needs name/],
      [{ type: 'user.delete', name: 7 }, /user.delete name must be a string/],
      [{ type: 'user.delete', name: 'a', secretSealed: 'x' }, /unknown field "secretSealed"/],
      [{ type: 'user.create', name: 'a', secretSealed: sealed('a') }, /user.create needs kind/],
      [{ type: 'acl.grant', user: 'a', resource: 'Topic:t', decision: 'Allow', actions: 'Pub' }, /actions must be an array/],
      [{ type: 'acl.grant', user: 'a', resource: 'Topic:t', decision: 'Allow', actions: [1] }, /action 1 is invalid/],
      [{ type: 'acl.grant', user: 'a b', resource: 'Topic:t', decision: 'Allow', actions: ['Pub'] }, /acl.grant: user name "a b" is invalid/],
    ];
    for (const [value, reason] of cases) {
      const result = validateAccessCommand(value);
      expect(result.ok, JSON.stringify(value)).toBe(false);
      if (!result.ok) expect(result.reason).toMatch(reason);
    }
  });

  it('never throws on any JSON value', () => {
    fc.assert(fc.property(fc.oneof(fc.jsonValue(), commandArbitrary().map((command) => ({ ...command, extra: 1 }))), (value) => { validateAccessCommand(value); }));
  });
});

// ---- The reference: users and entries as plain lists, matching by string prefixes. ----

const userPool = ['alice', 'bob', 'c.d', 'x_y-1'];
const patternPool = ['*', 'Cluster', 'Topic:*', 'Topic:a', 'Topic:ab', 'Topic:a*', 'Topic:ab*', 'Topic:b', 'Group:*', 'Group:g', 'Group:g*', 'Group:gx'];
const requestPool = ['Topic:a', 'Topic:ab', 'Topic:abc', 'Topic:b', 'Topic:c', 'Group:g', 'Group:gx', 'Group:h', 'Cluster'];
const actionPool: AccessAction[] = ['Pub', 'Sub', 'Admin', 'All'];

interface ReferenceEntry { resource: string; decision: AccessDecision; actions: Set<AccessAction> }
interface ReferenceUser { kind: UserKind; sealed: string; entries: ReferenceEntry[] }
type Evaluator = (user: ReferenceUser | undefined, resource: string, action: RequestAction) => boolean;

function referenceMatches(pattern: string, resource: string): boolean {
  if (pattern === '*') return true;
  if (pattern.endsWith('*')) return resource.startsWith(pattern.slice(0, -1));
  return pattern === resource;
}

const matching = (user: ReferenceUser, resource: string, action: RequestAction): ReferenceEntry[] =>
  user.entries.filter((entry) => referenceMatches(entry.resource, resource) && (entry.actions.has(action) || entry.actions.has('All')));

const referenceEvaluator: Evaluator = (user, resource, action) => {
  if (user === undefined) return false;
  if (user.kind === 'super') return true;
  const entries = matching(user, resource, action);
  return !entries.some((entry) => entry.decision === 'Deny') && entries.some((entry) => entry.decision === 'Allow');
};

/** Negative controls: plausible rules that are not ours. */
const allowWinsEvaluator: Evaluator = (user, resource, action) =>
  user !== undefined && (user.kind === 'super' || matching(user, resource, action).some((entry) => entry.decision === 'Allow'));
const mostSpecificWinsEvaluator: Evaluator = (user, resource, action) => {
  if (user === undefined) return false;
  if (user.kind === 'super') return true;
  const rank = (pattern: string): number => (pattern === '*' ? 0 : pattern.endsWith(':*') ? 1 : pattern.endsWith('*') ? 1 + pattern.length : 1000);
  const entries = matching(user, resource, action).sort((a, b) => rank(b.resource) - rank(a.resource) || (a.decision === 'Deny' ? -1 : 1));
  return entries[0]?.decision === 'Allow';
};

class ReferenceTable {
  readonly users = new Map<string, ReferenceUser>();

  apply(command: AccessCommand): boolean {
    switch (command.type) {
      case 'user.create':
        if (this.users.has(command.name)) return false;
        this.users.set(command.name, { kind: command.kind, sealed: command.secretSealed, entries: [] });
        return true;
      case 'user.update': {
        const user = this.users.get(command.name);
        if (user === undefined) return false;
        user.sealed = command.secretSealed;
        if (command.kind !== undefined) user.kind = command.kind;
        return true;
      }
      case 'user.delete': return this.users.delete(command.name);
      case 'acl.grant': {
        const user = this.users.get(command.user);
        if (user === undefined) return false;
        const entry = user.entries.find((e) => e.resource === command.resource && e.decision === command.decision);
        if (entry === undefined) user.entries.push({ resource: command.resource, decision: command.decision, actions: new Set(command.actions) });
        else for (const action of command.actions) entry.actions.add(action);
        return true;
      }
      case 'acl.revoke': {
        const user = this.users.get(command.user);
        const entry = user?.entries.find((e) => e.resource === command.resource && e.decision === command.decision);
        if (user === undefined || entry === undefined) return false;
        const actions = command.actions ?? [...entry.actions];
        if (actions.some((action) => !entry.actions.has(action))) return false;
        for (const action of actions) entry.actions.delete(action);
        if (entry.actions.size === 0) user.entries.splice(user.entries.indexOf(entry), 1);
        return true;
      }
    }
  }
}

function commandArbitrary(): fc.Arbitrary<AccessCommand> {
  const user = fc.constantFrom(...userPool);
  const kind = fc.constantFrom<UserKind>('normal', 'normal', 'normal', 'super');
  const secret = fc.uint8Array({ minLength: 1, maxLength: 40 }).map((bytes) => Buffer.from(bytes).toString('base64'));
  const decision = fc.constantFrom<AccessDecision>('Allow', 'Deny');
  const actions = fc.uniqueArray(fc.constantFrom(...actionPool), { minLength: 1, maxLength: 4 });
  const resource = fc.constantFrom(...patternPool);
  return fc.oneof(
    { weight: 3, arbitrary: fc.record({ type: fc.constant('user.create' as const), name: user, secretSealed: secret, kind }) },
    { weight: 1, arbitrary: fc.record({ type: fc.constant('user.update' as const), name: user, secretSealed: secret, kind }, { requiredKeys: ['type', 'name', 'secretSealed'] }) },
    { weight: 1, arbitrary: fc.record({ type: fc.constant('user.delete' as const), name: user }) },
    { weight: 8, arbitrary: fc.record({ type: fc.constant('acl.grant' as const), user, resource, decision, actions }) },
    { weight: 2, arbitrary: fc.record({ type: fc.constant('acl.revoke' as const), user, resource, decision, actions }, { requiredKeys: ['type', 'user', 'resource', 'decision'] }) },
  );
}

/** Every pool user created first (so most grants land), then any commands, deletes and re-creates included. */
const historyArbitrary: fc.Arbitrary<AccessCommand[]> = fc.tuple(
  fc.array(fc.constantFrom<UserKind>('normal', 'normal', 'normal', 'super'), { minLength: userPool.length, maxLength: userPool.length }),
  fc.array(commandArbitrary(), { minLength: 5, maxLength: 60, size: 'medium' }),
).map(([kinds, commands]) => [...userPool.map((name, i) => create(name, kinds[i])), ...commands]);

const requestArbitrary = fc.record({ user: fc.constantFrom(...userPool, 'nobody'), resource: fc.constantFrom(...requestPool), action: fc.constantFrom<RequestAction>('Pub', 'Sub', 'Admin') });

/** The property: the table agrees with `evaluator` on every command's outcome and every request. */
function agreesWith(evaluator: Evaluator): fc.IPropertyWithHooks<[AccessCommand[], { user: string; resource: string; action: RequestAction }[]]> {
  return fc.property(historyArbitrary, fc.array(requestArbitrary, { minLength: 10, maxLength: 40 }), (commands, requests) => {
    const table = new AccessControlTable();
    const reference = new ReferenceTable();
    for (const command of commands) expect(table.apply(command).ok, JSON.stringify(command)).toBe(reference.apply(command));
    for (const { user, resource, action } of requests) {
      expect(allowed(table, user, resource, action), `${user} ${action} ${resource}`).toBe(evaluator(reference.users.get(user), resource, action));
    }
    expect(table.listUsers()).toEqual([...reference.users].map(([name, user]) => ({ name, kind: user.kind })).sort((a, b) => (a.name < b.name ? -1 : 1)));
  });
}

describe('against the reference evaluator', () => {
  it('agrees on every command and request', () => {
    fc.assert(agreesWith(referenceEvaluator), { numRuns: 500 });
  });

  it('catches an evaluator where Allow wins, and one where the most specific entry wins', () => {
    for (const broken of [allowWinsEvaluator, mostSpecificWinsEvaluator]) {
      const outcome = fc.check(agreesWith(broken), { numRuns: 500 });
      expect(outcome.failed, broken.name).toBe(true);
    }
  });
});

describe('encoding', () => {
  const tableOf = (commands: readonly AccessCommand[]): AccessControlTable => {
    const table = new AccessControlTable();
    for (const command of commands) table.apply(command);
    return table;
  };

  it('round-trips any table', () => {
    fc.assert(fc.property(historyArbitrary, (commands) => {
      const table = tableOf(commands);
      const bytes = table.encode();
      const decoded = AccessControlTable.decode(bytes);
      expect(decoded.encode()).toEqual(bytes);
      expect(decoded.listUsers()).toEqual(table.listUsers());
      expect(decoded.listPolicies()).toEqual(table.listPolicies());
      for (const name of userPool) expect(decoded.user(name)).toEqual(table.user(name));
      for (const user of [...userPool, 'nobody']) for (const resource of requestPool) for (const action of ['Pub', 'Sub', 'Admin'] as const) {
        expect(decoded.authorize(user, resource, action)).toEqual(table.authorize(user, resource, action));
      }
    }), { numRuns: 300 });
  });

  it('gives equal bytes for equal tables, whatever order built them', () => {
    // Users and grants in any order (each grant after its user's create) reach the same table.
    const history = fc.uniqueArray(fc.constantFrom(...userPool), { minLength: 1 }).chain((names) => fc.tuple(
      fc.constant(names.map((name) => create(name))),
      fc.array(fc.record({ user: fc.constantFrom(...names), resource: fc.constantFrom(...patternPool), actions: fc.uniqueArray(fc.constantFrom(...actionPool), { minLength: 1 }), decision: fc.constantFrom<AccessDecision>('Allow', 'Deny') }), { maxLength: 30 }),
    ));
    fc.assert(fc.property(history, fc.infiniteStream(fc.boolean()), ([creates, grants], coins) => {
      const commands = grants.map((g) => grant(g.user, g.resource, [...g.actions], g.decision));
      const forward = tableOf([...creates, ...commands]);
      const backward = tableOf([...creates].reverse().concat([...commands].reverse()));
      const shuffled = tableOf([...creates].sort(() => (coins.next().value ? 1 : -1)).concat([...commands].sort(() => (coins.next().value ? 1 : -1))));
      expect(backward.encode()).toEqual(forward.encode());
      expect(shuffled.encode()).toEqual(forward.encode());
    }));
  });

  it('has a fixed layout', () => {
    const table = tableWith(create('a', 'super'), grant('a', 'Topic:t', ['Pub', 'All'], 'Deny'));
    expect(table.encode().toString('hex')).toBe(
      `${Buffer.from('RMQA').toString('hex')}01` + '00000001' + `01${Buffer.from('a').toString('hex')}01`
      + `0008${Buffer.from('sealed:a').toString('hex')}` + '0001' + `07${Buffer.from('Topic:t').toString('hex')}0109`,
    );
    expect(new AccessControlTable().encode().toString('hex')).toBe('524d514101' + '00000000');
  });

  it('refuses damaged bytes with an AccessTableFormatError naming the damage', () => {
    const bytes = tableWith(create('alice'), create('bob'), grant('bob', 'Group:g', ['Sub']), grant('bob', 'Topic:t', ['Pub'])).encode();
    for (let length = 0; length < bytes.length; length++) expect(() => AccessControlTable.decode(bytes.subarray(0, length)), `cut at ${length}`).toThrow(AccessTableFormatError);
    const patched = (at: number, ...values: number[]): Buffer => {
      const copy = Buffer.from(bytes);
      values.forEach((value, i) => { copy[at + i] = value; });
      return copy;
    };
    const cases: [Buffer, RegExp][] = [
      [patched(0, 0x58), /does not start with RMQA/],
      [patched(4, 2), /version 2 is unknown: this build reads 1/],
      [Buffer.concat([bytes, Buffer.of(0)]), /1 trailing bytes/],
      [patched(10, 0x21), /user name "!lice" is invalid/], // 'a' -> '!'
      [patched(10, 0xc3), /non-ASCII user name/],
      [patched(10, 0x63), /user bob is out of order after clice/],
      [patched(15, 7), /unknown kind/],
      [patched(5, 0xff, 0xff, 0xff, 0xff), /users, more than 10000/],
    ];
    for (const [damaged, reason] of cases) expect(() => AccessControlTable.decode(damaged)).toThrow(reason);
  });

  it('throws nothing but AccessTableFormatError on random damage, and what it accepts re-encodes to itself', () => {
    const bytes = tableOf([create('alice'), create('bob', 'super'), grant('alice', 'Topic:a*', ['Pub']), grant('alice', 'Topic:a*', ['Sub'], 'Deny'), grant('bob', 'Cluster', ['Admin'])]).encode();
    fc.assert(fc.property(fc.array(fc.record({ at: fc.nat(bytes.length - 1), value: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 4 }), (edits) => {
      const damaged = Buffer.from(bytes);
      for (const { at, value } of edits) damaged[at] = value;
      try {
        expect(AccessControlTable.decode(damaged).encode()).toEqual(damaged);
      } catch (error) {
        expect(error).toBeInstanceOf(AccessTableFormatError);
      }
    }), { numRuns: 2_000 });
  });
});
