/**
 * The answers of message query and trace (F12, F20), one shape for both sides: the broker
 * (src/broker/message-query.ts) builds them, the admin client (src/client/admin.ts) reads them
 * back from the admin protocol.
 */

export type MessageState =
  /** In its queue (a delayed one fired, a transactional one committed). */
  | 'stored'
  /** A delayed message not due yet (or its topic was deleted before it was). */
  | 'pending'
  /** A transaction's half message, its transaction open. */
  | 'half'
  | 'rolled-back'
  | 'recalled'
  /** A transaction ended without storing it (its id was stored already, or it ended too long ago to say how). */
  | 'ended';

export interface FoundMessage {
  readonly messageId: string;
  readonly topic: string;
  readonly tag: string;
  readonly keys: readonly string[];
  readonly messageGroup: string;
  readonly bornHost: string;
  readonly bornTimeMs: number;
  readonly properties: Readonly<Record<string, string>>;
  readonly bodyBytes: number;
  /** The body's first bodyPreviewBytes, copied (a query holds no entry's payload). */
  readonly bodyPreview: Uint8Array;
  readonly brokerGroup: string;
  /** Where it is: its send entry and position (a delayed or transactional one keeps them when stored later). */
  readonly logIndex: number;
  readonly position: number;
  /** The send entry's term, when this node's log holds it (undefined after an install: a peer served it). */
  readonly term: number | undefined;
  /** When the send entry was applied (its leader's time). */
  readonly sentTimeMs: number;
  readonly type: 'NORMAL' | 'DELAY' | 'TRANSACTION';
  /** Delayed: when it is due. */
  readonly deliveryTimeMs: number;
  readonly state: MessageState;
  /** Its queue record, while the queue holds it: undefined if not stored (yet) or released. */
  readonly queueId: number | undefined;
  readonly offset: number | undefined;
  /** When it went into its queue (the send's time, a fire's or a commit's); undefined if it did not (yet). */
  readonly storeTimeMs: number | undefined;
}

export type TraceEventKind = 'delivered' | 'acked' | 'nacked' | 'dead-lettered' | 'stored' | 'rolled-back' | 'recalled';

export interface TraceEvent {
  readonly event: TraceEventKind;
  readonly timeMs: number;
  /** The entry that made it. */
  readonly logIndex: number;
  readonly term: number | undefined;
  /** The consumer group (delivered, acked, nacked, dead-lettered); '' when the entry was released. */
  readonly group: string;
  /** The receiving client (delivered). */
  readonly clientId: string;
  readonly attempt: number;
  /** The topic of the delivery: the message's, or a DLQ's for a delivery from there. */
  readonly topic: string;
  readonly queueId: number;
  /** The queue offset the handle named (acked, nacked, dead-lettered by a client), or the DLQ offset of a dead-lettered one; undefined if unknown. */
  readonly offset: number | undefined;
  /** More, in words: a nack's invisible time, a dead-lettering's DLQ, a released entry. */
  readonly detail: string;
}

export interface MessageTrace {
  readonly message: FoundMessage;
  /** Oldest first. */
  readonly events: readonly TraceEvent[];
}

export interface QueryResult<T> {
  readonly items: readonly T[];
  /** More matched than `limit` (or the walk's bound): narrow the range, or raise the limit. */
  readonly more: boolean;
  /** Candidates whose log entry this node no longer holds (retention released it): not returned. */
  readonly released: number;
}

/** The most items one query returns. */
export const queryLimitMax = 1000;
