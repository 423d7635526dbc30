/**
 * Recall handles (F8): what `SendResultEntry.recall_handle` carries for a delayed message, and
 * `RecallMessage` gives back to cancel it while it is pending:
 *
 *   d1~<broker group>~<topic>~<log index>~<position>~<due ms>~<message id, base64url>
 *
 * Opaque to clients. The broker group lets the access point route the recall to the group's
 * leader; (log index, position, due) name the timer record (the send entry holding the
 * message, its index in the entry's batch, its delivery time); the message id is what
 * RecallMessageResponse answers with. Topic and group names cannot contain `~`.
 */
export interface RecallHandle {
  readonly brokerGroup: string;
  readonly topic: string;
  readonly logIndex: number;
  readonly position: number;
  readonly dueMs: number;
  readonly messageId: string;
}

export function formatRecallHandle(handle: RecallHandle): string {
  const id = Buffer.from(handle.messageId, 'utf8').toString('base64url');
  return `d1~${handle.brokerGroup}~${handle.topic}~${handle.logIndex}~${handle.position}~${handle.dueMs}~${id}`;
}

/** The handle's parts, or undefined when the text is not a recall handle this broker issued. */
export function parseRecallHandle(text: string): RecallHandle | undefined {
  const parts = text.split('~');
  if (parts.length !== 7 || parts[0] !== 'd1') return undefined;
  const [, brokerGroup, topic, logIndex, position, dueMs, id] = parts as [string, string, string, string, string, string, string];
  const numbers = [logIndex, position, dueMs].map((part) => (/^\d{1,16}$/.test(part) ? Number(part) : Number.NaN));
  if (brokerGroup === '' || topic === '' || numbers.some((n) => !Number.isSafeInteger(n)) || !/^[A-Za-z0-9_-]*$/.test(id)) return undefined;
  return {
    brokerGroup, topic, logIndex: numbers[0] as number, position: numbers[1] as number, dueMs: numbers[2] as number,
    messageId: Buffer.from(id, 'base64url').toString('utf8'),
  };
}
