/**
 * The access-control table: users and their policies, changed only by replicated commands,
 * so every node answers `authorize` the same way. The model follows Apache RocketMQ 5's
 * ACL 2.0 (a user, and policy entries of resource + actions + Allow/Deny), simplified where
 * noted.
 *
 * Users. A name of 1-64 of `A-Z a-z 0-9 - _ .`, which is also the access key the client
 * signs with (util/request-signature.ts). The secret is held sealed (util/secret-seal.ts): this
 * table never sees it in the clear, and cannot, since broker/core has no node:crypto. A
 * `super` user may do everything; a `normal` one what its policies allow.
 *
 * Resources, written as in RocketMQ:
 *   `Topic:<name>`, `Group:<name>`        one topic or group (names as names.ts allows)
 *   `Topic:<prefix>*`, `Group:<prefix>*`  every name that starts with the prefix (the prefix
 *                                         itself included)
 *   `Topic:*`, `Group:*`                  every topic, every group
 *   `Cluster`                             the broker group itself (administration)
 *   `*`                                   everything above
 * A request names a resource without wildcards: `Topic:<name>`, `Group:<name>` or `Cluster`.
 *
 * Actions: `Pub`, `Sub`, `Admin`, and in a policy `All`, which matches each of them. A request
 * asks for one of Pub, Sub, Admin; which ones an RPC needs is the server's mapping.
 *
 * The rule. Once enabled, everything is denied by default. A super user is allowed. For a
 * normal user, the entries that match (resource pattern matches and actions contain the action
 * or All) decide: any Deny among them denies, else any Allow allows, else denied. This differs
 * from RocketMQ, which lets the most specific matching entry win (so there an Allow on
 * `Topic:a` punches through a Deny on `Topic:*`): here a Deny cannot be overridden, so an
 * operator who denies something knows it stays denied, at the price of expressing exceptions
 * by granting narrowly instead of denying broadly.
 *
 * Policy entries are keyed by (user, resource, decision); a grant adds actions to its entry,
 * a revoke removes the actions it names (or the whole entry when it names none). Deleting a
 * user deletes its entries.
 *
 * Order. Users are kept sorted by name and entries by (user, resource, decision), in code
 * units (the charsets are ASCII, so that is byte order too); listings and `encode` follow it,
 * so equal tables give equal bytes whatever their history, which is what a state digest needs.
 */
import { groupNameProblem, topicNameProblem } from './names.js';

export type UserKind = 'super' | 'normal';
export type AccessAction = 'Pub' | 'Sub' | 'Admin' | 'All';
/** What one request asks for: `All` is for policies only. */
export type RequestAction = Exclude<AccessAction, 'All'>;
export type AccessDecision = 'Allow' | 'Deny';

export const userKinds: readonly UserKind[] = ['normal', 'super'];
/** Canonical order of actions in listings and bit order in the encoding. */
export const accessActions: readonly AccessAction[] = ['Pub', 'Sub', 'Admin', 'All'];
export const requestActions: readonly RequestAction[] = ['Pub', 'Sub', 'Admin'];
export const accessDecisions: readonly AccessDecision[] = ['Allow', 'Deny'];

/** Bounds on what commands may build (the table is held in memory on every node). */
export const accessUsersMax = 10_000;
export const accessEntriesPerUserMax = 1_000;
/** A sealed secret: 29 bytes of header plus the secret's UTF-8; 1 KiB leaves ~1000 bytes of secret. */
export const sealedSecretBytesMax = 1_024;

export interface AccessUser {
  readonly name: string;
  readonly secretSealed: Buffer;
  readonly kind: UserKind;
}

export interface AccessPolicy {
  readonly user: string;
  readonly resource: string;
  readonly decision: AccessDecision;
  /** Non-empty, in `accessActions` order. */
  readonly actions: readonly AccessAction[];
}

/**
 * The replicated commands, as JSON-compatible objects (the sealed secret as base64). The
 * server seals a new secret before proposing, so the plain secret never enters the log.
 */
export type AccessCommand =
  | { readonly type: 'user.create'; readonly name: string; readonly secretSealed: string; readonly kind: UserKind }
  | { readonly type: 'user.update'; readonly name: string; readonly secretSealed: string; readonly kind?: UserKind }
  | { readonly type: 'user.delete'; readonly name: string }
  | { readonly type: 'acl.grant'; readonly user: string; readonly resource: string; readonly decision: AccessDecision; readonly actions: readonly AccessAction[] }
  | { readonly type: 'acl.revoke'; readonly user: string; readonly resource: string; readonly decision: AccessDecision; readonly actions?: readonly AccessAction[] };

export type AccessResult = { readonly ok: true } | { readonly ok: false; readonly reason: string };
export type ValidateResult = { readonly ok: true; readonly command: AccessCommand } | { readonly ok: false; readonly reason: string };
export interface AuthorizeResult {
  readonly allowed: boolean;
  readonly reason: string;
}

const ok: AccessResult = { ok: true };
const fail = (reason: string): { ok: false; reason: string } => ({ ok: false, reason });

const userNamePattern = /^[A-Za-z0-9._-]{1,64}$/;

export function userNameProblem(name: string): string | undefined {
  if (!userNamePattern.test(name)) return `user name ${JSON.stringify(name)} is invalid: use 1-64 of A-Z a-z 0-9 - _ .`;
  return undefined;
}

/** A resource or resource pattern, parsed. `name` is the literal name or the prefix. */
type ResourceRef =
  | { readonly type: 'Any' }
  | { readonly type: 'Cluster' }
  | { readonly type: 'Topic' | 'Group'; readonly match: 'any' | 'literal' | 'prefix'; readonly name: string };

const prefixPattern = { Topic: /^[A-Za-z0-9_%-]{1,127}$/, Group: /^[A-Za-z0-9_-]{1,120}$/ } as const;

/** Parses a policy's resource pattern, which must be in its canonical spelling. */
function parseResourcePattern(text: string): ResourceRef | string {
  if (text === '*') return { type: 'Any' };
  if (text === 'Cluster') return { type: 'Cluster' };
  const colon = text.indexOf(':');
  const type = text.slice(0, colon);
  if (colon < 0 || (type !== 'Topic' && type !== 'Group')) {
    return `resource ${JSON.stringify(text)} is invalid: use *, Cluster, Topic:<name>, Topic:<prefix>*, Topic:*, or the same with Group`;
  }
  const name = text.slice(colon + 1);
  if (name === '*') return { type, match: 'any', name: '' };
  if (name.endsWith('*')) {
    const prefix = name.slice(0, -1);
    if (!prefixPattern[type].test(prefix)) return `resource ${JSON.stringify(text)} has an invalid prefix: a wildcard is one trailing * after name characters`;
    return { type, match: 'prefix', name: prefix };
  }
  const problem = type === 'Topic' ? topicNameProblem(name) : groupNameProblem(name);
  return problem === undefined ? { type, match: 'literal', name } : `resource ${JSON.stringify(text)}: ${problem}`;
}

/** Parses a request's resource: no wildcards. */
function parseRequestResource(text: string): ResourceRef | string {
  const parsed = parseResourcePattern(text);
  if (typeof parsed === 'string') return parsed;
  if (parsed.type === 'Any' || (parsed.type !== 'Cluster' && parsed.match !== 'literal')) {
    return `requested resource ${JSON.stringify(text)} has a wildcard: name one topic, one group, or Cluster`;
  }
  return parsed;
}

function patternMatches(pattern: ResourceRef, resource: ResourceRef): boolean {
  if (pattern.type === 'Any') return true;
  if (pattern.type === 'Cluster' || resource.type === 'Cluster' || resource.type === 'Any') return pattern.type === resource.type;
  if (pattern.type !== resource.type) return false;
  switch (pattern.match) {
    case 'any': return true;
    case 'literal': return resource.name === pattern.name;
    case 'prefix': return resource.name.startsWith(pattern.name);
  }
}

const actionBit = (action: AccessAction): number => 1 << accessActions.indexOf(action);
const actionsOfMask = (mask: number): AccessAction[] => accessActions.filter((action) => (mask & actionBit(action)) !== 0);
const maskOfActions = (actions: readonly AccessAction[]): number => actions.reduce((mask, action) => mask | actionBit(action), 0);
const allActionsMask = (1 << accessActions.length) - 1;

interface Entry {
  readonly resource: string;
  readonly pattern: ResourceRef;
  readonly decision: AccessDecision;
  mask: number;
}

interface UserRecord {
  readonly name: string;
  secretSealed: Buffer;
  kind: UserKind;
  /** Sorted by (resource, decision). */
  entries: Entry[];
}

const compareText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
const compareEntries = (a: { resource: string; decision: AccessDecision }, b: { resource: string; decision: AccessDecision }): number =>
  compareText(a.resource, b.resource) || compareText(a.decision, b.decision);

/** Base64 exactly as Buffer writes it, so one sealed value has one spelling in the log. */
function sealedProblem(base64: string): string | undefined {
  const bytes = Buffer.from(base64, 'base64');
  if (bytes.length === 0 || bytes.toString('base64') !== base64) return 'secretSealed must be non-empty canonical base64';
  if (bytes.length > sealedSecretBytesMax) return `secretSealed is ${bytes.length} bytes, more than ${sealedSecretBytesMax}`;
  return undefined;
}

function actionsProblem(actions: readonly unknown[]): string | undefined {
  if (actions.length === 0) return 'actions must not be empty';
  for (const action of actions) {
    if (!accessActions.includes(action as AccessAction)) return `action ${JSON.stringify(action)} is invalid: use ${accessActions.join(', ')}`;
  }
  if (new Set(actions).size !== actions.length) return 'actions must not repeat';
  return undefined;
}

/** Syntax of a typed command: names, resource, secret, actions. State checks are apply's. */
function commandProblem(command: AccessCommand): string | undefined {
  switch (command.type) {
    case 'user.create':
    case 'user.update':
      return userNameProblem(command.name) ?? sealedProblem(command.secretSealed)
        ?? (command.kind === undefined || userKinds.includes(command.kind) ? undefined : `kind ${JSON.stringify(command.kind)} is invalid: use super or normal`);
    case 'user.delete':
      return userNameProblem(command.name);
    case 'acl.grant':
    case 'acl.revoke': {
      const pattern = parseResourcePattern(command.resource);
      return userNameProblem(command.user) ?? (typeof pattern === 'string' ? pattern : undefined)
        ?? (accessDecisions.includes(command.decision) ? undefined : `decision ${JSON.stringify(command.decision)} is invalid: use Allow or Deny`)
        ?? (command.actions === undefined ? undefined : actionsProblem(command.actions));
    }
  }
}

const commandFields: Record<AccessCommand['type'], { required: readonly string[]; optional: readonly string[] }> = {
  'user.create': { required: ['name', 'secretSealed', 'kind'], optional: [] },
  'user.update': { required: ['name', 'secretSealed'], optional: ['kind'] },
  'user.delete': { required: ['name'], optional: [] },
  'acl.grant': { required: ['user', 'resource', 'decision', 'actions'], optional: [] },
  'acl.revoke': { required: ['user', 'resource', 'decision'], optional: ['actions'] },
};

/** Checks that a decoded JSON value is a well-formed command; never throws. */
export function validateAccessCommand(value: unknown): ValidateResult {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return fail('an access command must be an object');
  const record = value as Record<string, unknown>;
  const type = record['type'];
  if (typeof type !== 'string' || !Object.hasOwn(commandFields, type)) {
    return fail(`access command type ${JSON.stringify(type)} is unknown: use ${Object.keys(commandFields).join(', ')}`);
  }
  const fields = commandFields[type as AccessCommand['type']];
  for (const key of Object.keys(record)) {
    if (key !== 'type' && !fields.required.includes(key) && !fields.optional.includes(key)) return fail(`${type} has an unknown field ${JSON.stringify(key)}`);
  }
  for (const key of [...fields.required, ...fields.optional]) {
    const field = record[key];
    if (field === undefined) {
      if (fields.required.includes(key)) return fail(`${type} needs ${key}`);
    } else if (key === 'actions') {
      if (!Array.isArray(field)) return fail(`${type} actions must be an array`);
    } else if (typeof field !== 'string') return fail(`${type} ${key} must be a string`);
  }
  const command = record as unknown as AccessCommand;
  const problem = commandProblem(command);
  return problem === undefined ? { ok: true, command } : fail(`${type}: ${problem}`);
}

/** A snapshot of the table that cannot be read. */
export class AccessTableFormatError extends Error {
  override readonly name = 'AccessTableFormatError';
}

export const accessTableMagic = 'RMQA';
export const accessTableVersion = 1;

export class AccessControlTable {
  /** Sorted by name: insertion keeps the order, so listing and encoding never sort. */
  private readonly users: UserRecord[] = [];

  /** Applies one replicated command; a refused command changes nothing. */
  apply(command: AccessCommand): AccessResult {
    const problem = commandProblem(command);
    if (problem !== undefined) return fail(`${command.type}: ${problem}`);
    switch (command.type) {
      case 'user.create': return this.createUser(command.name, Buffer.from(command.secretSealed, 'base64'), command.kind);
      case 'user.update': return this.updateUser(command.name, Buffer.from(command.secretSealed, 'base64'), command.kind);
      case 'user.delete': return this.deleteUser(command.name);
      case 'acl.grant': return this.grant(command.user, command.resource, command.decision, command.actions);
      case 'acl.revoke': return this.revoke(command.user, command.resource, command.decision, command.actions);
    }
  }

  authorize(userName: string, resource: string, action: RequestAction): AuthorizeResult {
    const user = this.find(userName);
    if (user === undefined) return { allowed: false, reason: `no user ${JSON.stringify(userName)}` };
    if (!requestActions.includes(action)) return { allowed: false, reason: `requested action ${JSON.stringify(action)} is invalid: use Pub, Sub or Admin` };
    const target = parseRequestResource(resource);
    if (typeof target === 'string') return { allowed: false, reason: target };
    if (user.kind === 'super') return { allowed: true, reason: `${user.name} is a super user` };
    const bit = actionBit(action) | actionBit('All');
    let allowedBy: Entry | undefined;
    for (const entry of user.entries) {
      if ((entry.mask & bit) === 0 || !patternMatches(entry.pattern, target)) continue;
      if (entry.decision === 'Deny') return { allowed: false, reason: `${user.name} may not ${action} on ${resource}: denied by Deny ${entry.resource}` };
      allowedBy ??= entry;
    }
    if (allowedBy !== undefined) return { allowed: true, reason: `${user.name} may ${action} on ${resource}: allowed by Allow ${allowedBy.resource}` };
    return { allowed: false, reason: `${user.name} may not ${action} on ${resource}: no policy allows it (denied by default)` };
  }

  /** The user with its sealed secret (for the server's signature check), or undefined. */
  user(name: string): AccessUser | undefined {
    const user = this.find(name);
    return user === undefined ? undefined : { name: user.name, secretSealed: Buffer.from(user.secretSealed), kind: user.kind };
  }

  /** Every user, by name, without secrets. */
  listUsers(): { name: string; kind: UserKind }[] {
    return this.users.map((user) => ({ name: user.name, kind: user.kind }));
  }

  /** Every policy entry (of one user, if named), by user, resource, decision. */
  listPolicies(userName?: string): AccessPolicy[] {
    const users = userName === undefined ? this.users : [this.find(userName)].filter((user) => user !== undefined);
    return users.flatMap((user) => user.entries.map((entry) => ({ user: user.name, resource: entry.resource, decision: entry.decision, actions: actionsOfMask(entry.mask) })));
  }

  private findIndex(name: string): { index: number; found: boolean } {
    let low = 0;
    let high = this.users.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if ((this.users[middle] as UserRecord).name < name) low = middle + 1;
      else high = middle;
    }
    return { index: low, found: this.users[low]?.name === name };
  }

  private find(name: string): UserRecord | undefined {
    const { index, found } = this.findIndex(name);
    return found ? this.users[index] : undefined;
  }

  private createUser(name: string, secretSealed: Buffer, kind: UserKind): AccessResult {
    const { index, found } = this.findIndex(name);
    if (found) return fail(`user.create: user ${JSON.stringify(name)} exists`);
    if (this.users.length >= accessUsersMax) return fail(`user.create: there are already ${accessUsersMax} users`);
    this.users.splice(index, 0, { name, secretSealed, kind, entries: [] });
    return ok;
  }

  private updateUser(name: string, secretSealed: Buffer, kind: UserKind | undefined): AccessResult {
    const user = this.find(name);
    if (user === undefined) return fail(`user.update: no user ${JSON.stringify(name)}`);
    user.secretSealed = secretSealed;
    if (kind !== undefined) user.kind = kind;
    return ok;
  }

  private deleteUser(name: string): AccessResult {
    const { index, found } = this.findIndex(name);
    if (!found) return fail(`user.delete: no user ${JSON.stringify(name)}`);
    this.users.splice(index, 1);
    return ok;
  }

  private grant(userName: string, resource: string, decision: AccessDecision, actions: readonly AccessAction[]): AccessResult {
    const user = this.find(userName);
    if (user === undefined) return fail(`acl.grant: no user ${JSON.stringify(userName)}`);
    const { index, found } = entryIndex(user.entries, resource, decision);
    if (found) {
      (user.entries[index] as Entry).mask |= maskOfActions(actions);
      return ok;
    }
    if (user.entries.length >= accessEntriesPerUserMax) return fail(`acl.grant: ${userName} already has ${accessEntriesPerUserMax} policy entries`);
    user.entries.splice(index, 0, { resource, pattern: parseResourcePattern(resource) as ResourceRef, decision, mask: maskOfActions(actions) });
    return ok;
  }

  private revoke(userName: string, resource: string, decision: AccessDecision, actions: readonly AccessAction[] | undefined): AccessResult {
    const user = this.find(userName);
    if (user === undefined) return fail(`acl.revoke: no user ${JSON.stringify(userName)}`);
    const { index, found } = entryIndex(user.entries, resource, decision);
    if (!found) return fail(`acl.revoke: ${userName} has no ${decision} ${resource}`);
    const entry = user.entries[index] as Entry;
    const mask = actions === undefined ? entry.mask : maskOfActions(actions);
    const missing = actionsOfMask(mask & ~entry.mask);
    if (missing.length > 0) return fail(`acl.revoke: ${decision} ${resource} of ${userName} has no ${missing.join(', ')} (actions are revoked as granted: All is not Pub)`);
    entry.mask &= ~mask;
    if (entry.mask === 0) user.entries.splice(index, 1);
    return ok;
  }

  /**
   * The whole table, canonical. Layout, version 1 (multi-byte numbers big-endian; names and
   * resources ASCII by their charsets):
   *
   *   "RMQA" | u8 version = 1 | u32 users
   *   users × { u8 name length, name | u8 kind (0 normal, 1 super) | u16 sealed length, sealed
   *             | u16 entries | entries × { u8 resource length, resource | u8 decision
   *             (0 Allow, 1 Deny) | u8 actions (bit i = accessActions[i]) } }
   *   (end: trailing bytes are an error)
   */
  encode(): Buffer {
    const parts: Buffer[] = [Buffer.from(accessTableMagic, 'latin1'), Buffer.of(accessTableVersion), u32(this.users.length)];
    for (const user of this.users) {
      parts.push(Buffer.of(user.name.length), Buffer.from(user.name, 'latin1'), Buffer.of(userKinds.indexOf(user.kind)));
      parts.push(u16(user.secretSealed.length), user.secretSealed, u16(user.entries.length));
      for (const entry of user.entries) {
        parts.push(Buffer.of(entry.resource.length), Buffer.from(entry.resource, 'latin1'), Buffer.of(accessDecisions.indexOf(entry.decision), entry.mask));
      }
    }
    return Buffer.concat(parts);
  }

  /** Reads `encode`'s bytes, checking everything a command would have; throws AccessTableFormatError. */
  static decode(bytes: Buffer): AccessControlTable {
    const reader = new ByteReader(bytes);
    if (reader.text(4, 'magic') !== accessTableMagic) throw new AccessTableFormatError(`access table does not start with ${accessTableMagic}`);
    const version = reader.u8('version');
    if (version !== accessTableVersion) throw new AccessTableFormatError(`access table version ${version} is unknown: this build reads ${accessTableVersion}`);
    const table = new AccessControlTable();
    const userCount = reader.u32('user count');
    if (userCount > accessUsersMax) throw new AccessTableFormatError(`access table has ${userCount} users, more than ${accessUsersMax}`);
    for (let i = 0; i < userCount; i++) table.users.push(decodeUser(reader, table.users[i - 1]?.name));
    if (reader.remaining > 0) throw new AccessTableFormatError(`access table has ${reader.remaining} trailing bytes`);
    return table;
  }
}

function entryIndex(entries: readonly Entry[], resource: string, decision: AccessDecision): { index: number; found: boolean } {
  const key = { resource, decision };
  let index = 0;
  while (index < entries.length && compareEntries(entries[index] as Entry, key) < 0) index++;
  const entry = entries[index];
  return { index, found: entry !== undefined && compareEntries(entry, key) === 0 };
}

function decodeUser(reader: ByteReader, previousName: string | undefined): UserRecord {
  const name = reader.text(reader.u8('user name length'), 'user name');
  const problem = userNameProblem(name);
  if (problem !== undefined) throw new AccessTableFormatError(`access table: ${problem}`);
  if (previousName !== undefined && !(previousName < name)) throw new AccessTableFormatError(`access table: user ${name} is out of order after ${previousName}`);
  const kind = userKinds[reader.u8('user kind')];
  if (kind === undefined) throw new AccessTableFormatError(`access table: user ${name} has an unknown kind`);
  const sealedLength = reader.u16('sealed secret length');
  if (sealedLength === 0 || sealedLength > sealedSecretBytesMax) throw new AccessTableFormatError(`access table: user ${name} has a ${sealedLength}-byte sealed secret`);
  const secretSealed = Buffer.from(reader.bytes(sealedLength, 'sealed secret'));
  const entryCount = reader.u16('entry count');
  if (entryCount > accessEntriesPerUserMax) throw new AccessTableFormatError(`access table: user ${name} has ${entryCount} entries, more than ${accessEntriesPerUserMax}`);
  const entries: Entry[] = [];
  for (let i = 0; i < entryCount; i++) {
    const resource = reader.text(reader.u8('resource length'), 'resource');
    const pattern = parseResourcePattern(resource);
    if (typeof pattern === 'string') throw new AccessTableFormatError(`access table: user ${name}: ${pattern}`);
    const decision = accessDecisions[reader.u8('decision')];
    if (decision === undefined) throw new AccessTableFormatError(`access table: user ${name} has an unknown decision on ${resource}`);
    const mask = reader.u8('actions');
    if (mask === 0 || (mask & ~allActionsMask) !== 0) throw new AccessTableFormatError(`access table: user ${name} has invalid actions ${mask} on ${resource}`);
    const entry: Entry = { resource, pattern, decision, mask };
    const previous = entries[entries.length - 1];
    if (previous !== undefined && compareEntries(previous, entry) >= 0) throw new AccessTableFormatError(`access table: user ${name}'s entry ${decision} ${resource} is out of order`);
    entries.push(entry);
  }
  return { name, secretSealed, kind, entries };
}

const u32 = (value: number): Buffer => {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32BE(value);
  return buffer;
};
const u16 = (value: number): Buffer => {
  const buffer = Buffer.alloc(2);
  buffer.writeUInt16BE(value);
  return buffer;
};

/** Bounds-checked reads that name what was cut short. */
class ByteReader {
  private at = 0;

  constructor(private readonly data: Buffer) {}

  get remaining(): number {
    return this.data.length - this.at;
  }

  bytes(length: number, what: string): Buffer {
    if (this.remaining < length) throw new AccessTableFormatError(`access table is truncated in its ${what}`);
    const slice = this.data.subarray(this.at, this.at + length);
    this.at += length;
    return slice;
  }

  /** ASCII only: the charsets allow nothing else, and latin1 would let other bytes through. */
  text(length: number, what: string): string {
    const slice = this.bytes(length, what);
    if (slice.some((byte) => byte > 0x7e || byte < 0x20)) throw new AccessTableFormatError(`access table has a non-ASCII ${what}`);
    return slice.toString('latin1');
  }

  u8(what: string): number {
    return this.bytes(1, what).readUInt8(0);
  }

  u16(what: string): number {
    return this.bytes(2, what).readUInt16BE(0);
  }

  u32(what: string): number {
    return this.bytes(4, what).readUInt32BE(0);
  }
}
