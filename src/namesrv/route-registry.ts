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

/**
 * The group view computed at `builtAtMs`, valid until a registration changes or one of the
 * live registrations it used expires (at `validUntilMs`).
 */
interface View {
  readonly builtAtMs: number;
  readonly validUntilMs: number;
  readonly groups: readonly GroupRoute[];
  readonly byName: ReadonlyMap<string, GroupRoute>;
  /** Filled per topic as asked. */
  readonly byTopic: Map<string, readonly GroupRoute[]>;
}

/** Topics whose hosting groups a view remembers at most (requests name arbitrary topics). */
const topicsPerViewMax = 4_096;

export class RouteRegistry {
  private readonly nodes = new Map<string, Entry>();
  /** The access point asks for routes on every call; they change only with registrations and time. */
  private cachedView: View | undefined;

  constructor(readonly expiryMs: number) {}

  register(registration: Registration, nowMs: number): void {
    const key = `${registration.group}\u0000${registration.nodeId}`;
    const previous = this.nodes.get(key);
    // A late, reordered registration must not roll a node back to an older term.
    if (previous !== undefined && previous.registration.term > registration.term && nowMs - previous.seenMs < this.expiryMs) return;
    this.nodes.set(key, { registration, seenMs: nowMs });
    this.cachedView = undefined;
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
    if (dropped.length > 0) this.cachedView = undefined;
    return dropped;
  }

  /** The live groups, by name. The arrays are shared between callers: do not change them. */
  groups(nowMs: number): readonly GroupRoute[] {
    return this.viewAt(nowMs).groups;
  }

  /** Groups that host `topic`. */
  routesFor(topic: string, nowMs: number): readonly GroupRoute[] {
    const view = this.viewAt(nowMs);
    let hosting = view.byTopic.get(topic);
    if (hosting === undefined) {
      hosting = view.groups.filter((g) => g.topics.some((t) => t.name === topic));
      if (view.byTopic.size >= topicsPerViewMax) view.byTopic.clear();
      view.byTopic.set(topic, hosting);
    }
    return hosting;
  }

  group(name: string, nowMs: number): GroupRoute | undefined {
    return this.viewAt(nowMs).byName.get(name);
  }

  private viewAt(nowMs: number): View {
    const cached = this.cachedView;
    if (cached !== undefined && nowMs >= cached.builtAtMs && nowMs < cached.validUntilMs) return cached;
    const view = this.buildView(nowMs);
    this.cachedView = view;
    return view;
  }

  private buildView(nowMs: number): View {
    const byGroup = new Map<string, Registration[]>();
    let validUntilMs = Infinity;
    for (const entry of this.nodes.values()) {
      if (nowMs - entry.seenMs >= this.expiryMs) continue;
      validUntilMs = Math.min(validUntilMs, entry.seenMs + this.expiryMs);
      if (entry.registration.failed !== '') continue;
      const list = byGroup.get(entry.registration.group) ?? [];
      list.push(entry.registration);
      byGroup.set(entry.registration.group, list);
    }
    const groups = [...byGroup].sort(([a], [b]) => a.localeCompare(b)).map(([group, members]): GroupRoute => {
      const term = Math.max(...members.map((m) => m.term));
      const leader = members.find((m) => m.role === 'leader' && m.term === term);
      // Topics come from the leader; without one, from the member that has applied the most.
      const source = leader ?? [...members].sort((a, b) => b.appliedIndex - a.appliedIndex)[0];
      return { group, leader, term, members: members.sort((a, b) => a.nodeId.localeCompare(b.nodeId)), topics: source?.topics ?? [] };
    });
    return { builtAtMs: nowMs, validUntilMs, groups, byName: new Map(groups.map((g) => [g.group, g])), byTopic: new Map() };
  }

  /** Every registration with the time since it was last refreshed. */
  view(nowMs: number): { registration: Registration; ageMs: number; isLeader: boolean }[] {
    const leaders = new Set(this.groups(nowMs).flatMap((g) => (g.leader === undefined ? [] : [`${g.group}\u0000${g.leader.nodeId}`])));
    return [...this.nodes.entries()]
      .map(([key, entry]) => ({ registration: entry.registration, ageMs: nowMs - entry.seenMs, isLeader: leaders.has(key) }))
      .sort((a, b) => a.registration.group.localeCompare(b.registration.group) || a.registration.nodeId.localeCompare(b.registration.nodeId));
  }
}
