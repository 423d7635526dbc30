/**
 * Per-client caps on what one client may have a broker node work on at once: calls being
 * served, and long polls (ReceiveMessage, PullMessage) waiting for messages. Beyond a cap a
 * call is answered TOO_MANY_REQUESTS at once (definite: nothing was done), which RocketMQ's
 * clients back off from and retry, so one client cannot take every slot of a node or hold an
 * unbounded number of waiting polls in its memory. A client is its x-mq-client-id (a forwarded
 * call keeps its client's), or its connection's address when it sends none.
 */
import { assert } from '../util/assert.js';

export interface ClientLimitSettings {
  /** Calls (other than long polls) one client may have served at once. */
  readonly requestsMax: number;
  /** Long polls one client may have waiting at once. */
  readonly pollsMax: number;
}

export const defaultClientLimits: ClientLimitSettings = { requestsMax: 4_096, pollsMax: 256 };

export type LimitKind = 'request' | 'poll';

export class ClientLimits {
  private readonly requests = new Map<string, number>();
  private readonly polls = new Map<string, number>();

  constructor(readonly settings: ClientLimitSettings = defaultClientLimits) {
    for (const [name, value] of Object.entries(settings)) assert(Number.isSafeInteger(value) && value >= 1, `client limit ${name} must be a whole number ≥ 1, not ${value}`);
  }

  /** Takes a slot of `kind` for `client`; false (nothing taken) when the client holds its cap already. */
  tryEnter(client: string, kind: LimitKind): boolean {
    const counts = kind === 'poll' ? this.polls : this.requests;
    const held = counts.get(client) ?? 0;
    if (held >= (kind === 'poll' ? this.settings.pollsMax : this.settings.requestsMax)) return false;
    counts.set(client, held + 1);
    return true;
  }

  /** Gives back a slot tryEnter took. */
  leave(client: string, kind: LimitKind): void {
    const counts = kind === 'poll' ? this.polls : this.requests;
    const held = counts.get(client);
    assert(held !== undefined && held > 0, `client ${client} leaves a ${kind} slot it does not hold`);
    if (held === 1) counts.delete(client);
    else counts.set(client, held - 1);
  }

  /** Why a call of `kind` was refused, for its status message. */
  refusal(kind: LimitKind): string {
    return kind === 'poll'
      ? `this client has ${this.settings.pollsMax} long polls waiting on this node already (the most one client may); wait for one to end`
      : `this client has ${this.settings.requestsMax} calls being served by this node already (the most one client may); back off and retry`;
  }
}
