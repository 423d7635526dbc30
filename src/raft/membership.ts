import { assert } from '../util/assert.js';
import type { LogIndex, Member, NodeId } from './types.js';

/**
 * A membership configuration as stored in a `config` entry: the complete member list after
 * one single-server change. Config entries are rare, so a readable JSON payload is fine here
 * (never on the message hot path). Compatibility: fields may be added, never renamed.
 */
export interface Membership {
  readonly members: readonly Member[];
}

export function encodeMembership(membership: Membership): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ members: membership.members.map((m) => ({ id: m.id, address: m.address })) }));
}

export function decodeMembership(payload: Uint8Array): Membership {
  const parsed = JSON.parse(new TextDecoder().decode(payload)) as { members?: unknown };
  assert(Array.isArray(parsed.members), 'config entry without members');
  const members = parsed.members.map((raw: unknown) => {
    const m = raw as { id?: unknown; address?: unknown };
    assert(typeof m.id === 'string' && typeof m.address === 'string', 'config entry member needs id and address');
    return { id: m.id, address: m.address };
  });
  validateMembers(members);
  return { members };
}

/** Rejects duplicate ids or addresses and empty lists: a clear error, before anything runs. */
export function validateMembers(members: readonly Member[]): void {
  if (members.length === 0) throw new Error('a group needs at least one member');
  const ids = new Set<NodeId>();
  const addresses = new Set<string>();
  for (const member of members) {
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(member.id)) throw new Error(`invalid node id ${JSON.stringify(member.id)}: use 1-64 letters, digits, '.', '_' or '-'`);
    if (ids.has(member.id)) throw new Error(`duplicate node id ${member.id} in the member list`);
    if (addresses.has(member.address)) throw new Error(`duplicate address ${member.address} in the member list`);
    ids.add(member.id);
    addresses.add(member.address);
  }
}

/** Which configuration holds from which log index; index 0 is the bootstrap configuration. */
export interface ConfigAt {
  readonly index: LogIndex;
  readonly members: readonly Member[];
}
