/**
 * The NameServer's state: the latest registration of every broker node, with the time it
 * arrived. Pure (time is passed in). A group's leader is the live node that claims
 * leadership in the highest term any live member reports: a deposed leader that has not
 * noticed yet is ignored as soon as any member registers a newer term.
 */
export interface TopicRoute {
  readonly name: string;
  readonly readQueues: number;
  readonly writeQueues: number;
  readonly perm: number;
  readonly messageType: string;
}

export interface Registration {
  readonly group: string;
  readonly nodeId: string;
  readonly address: string;
  readonly role: string;
  readonly term: number;
  readonly leaderId: string;
  readonly leaderAddress: string;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly lastIndex: number;
  readonly pid: number;
  readonly topics: readonly TopicRoute[];
  readonly flushMode: string;
  readonly failed: string;
  /** Non-zero while the node abstains from elections after losing synced log entries. */
  readonly abstainingUntil: number;
  readonly consumerGroups: readonly string[];
}

export interface GroupRoute {
  readonly group: string;
  readonly leader: Registration | undefined;
  readonly term: number;
  readonly members: readonly Registration[];
  readonly topics: readonly TopicRoute[];
}

interface Entry {
  registration: Registration;
  seenMs: number;
}

export class RouteRegistry {
  private readonly nodes = new Map<string, Entry>();

  constructor(readonly expiryMs: number) {}

  register(registration: Registration, nowMs: number): void {
    const key = `${registration.group}\u0000${registration.nodeId}`;
    const previous = this.nodes.get(key);
    // A late, reordered registration must not roll a node back to an older term.
    if (previous !== undefined && previous.registration.term > registration.term && nowMs - previous.seenMs < this.expiryMs) return;
    this.nodes.set(key, { registration, seenMs: nowMs });
  }

  /** Drops registrations older than the expiry; returns the dropped ones. */
  expire(nowMs: number): Registration[] {
    const dropped: Registration[] = [];
    for (const [key, entry] of this.nodes) {
      if (nowMs - entry.seenMs >= this.expiryMs) {
        this.nodes.delete(key);
        dropped.push(entry.registration);
      }
    }
    return dropped;
  }

  groups(nowMs: number): GroupRoute[] {
    const byGroup = new Map<string, Registration[]>();
    for (const entry of this.nodes.values()) {
      if (nowMs - entry.seenMs >= this.expiryMs || entry.registration.failed !== '') continue;
      const list = byGroup.get(entry.registration.group) ?? [];
      list.push(entry.registration);
      byGroup.set(entry.registration.group, list);
    }
    return [...byGroup].sort(([a], [b]) => a.localeCompare(b)).map(([group, members]) => {
      const term = Math.max(...members.map((m) => m.term));
      const leader = members.find((m) => m.role === 'leader' && m.term === term);
      // Topics come from the leader; without one, from the member that has applied the most.
      const source = leader ?? [...members].sort((a, b) => b.appliedIndex - a.appliedIndex)[0];
      return { group, leader, term, members: members.sort((a, b) => a.nodeId.localeCompare(b.nodeId)), topics: source?.topics ?? [] };
    });
  }

  /** Groups that host `topic`. */
  routesFor(topic: string, nowMs: number): GroupRoute[] {
    return this.groups(nowMs).filter((g) => g.topics.some((t) => t.name === topic));
  }

  group(name: string, nowMs: number): GroupRoute | undefined {
    return this.groups(nowMs).find((g) => g.group === name);
  }

  /** Every registration with the time since it was last refreshed. */
  view(nowMs: number): { registration: Registration; ageMs: number; isLeader: boolean }[] {
    const leaders = new Set(this.groups(nowMs).flatMap((g) => (g.leader === undefined ? [] : [`${g.group}\u0000${g.leader.nodeId}`])));
    return [...this.nodes.entries()]
      .map(([key, entry]) => ({ registration: entry.registration, ageMs: nowMs - entry.seenMs, isLeader: leaders.has(key) }))
      .sort((a, b) => a.registration.group.localeCompare(b.registration.group) || a.registration.nodeId.localeCompare(b.registration.nodeId));
  }
}
