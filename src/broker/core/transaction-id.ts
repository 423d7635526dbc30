/**
 * Transaction ids (F9): what `SendResultEntry.transaction_id` carries for a transactional
 * message, and what EndTransaction and a check-back (RecoverOrphanedTransactionCommand) name
 * the transaction by:
 *
 *   t1~<broker group>~<log index>~<position>
 *
 * Opaque to clients. The broker group lets the access point route EndTransaction to the
 * group's leader; (log index, position) is where the half message is stored, which is what
 * the transaction table keys it by. The request's message id is checked against the stored
 * one, so an id cannot end another producer's transaction by accident.
 */
export interface TransactionId {
  readonly brokerGroup: string;
  readonly logIndex: number;
  readonly position: number;
}

export function formatTransactionId(id: TransactionId): string {
  return `t1~${id.brokerGroup}~${id.logIndex}~${id.position}`;
}

/** The id's parts, or undefined when the text is not a transaction id this broker issued. */
export function parseTransactionId(text: string): TransactionId | undefined {
  const parts = text.split('~');
  if (parts.length !== 4 || parts[0] !== 't1') return undefined;
  const [, brokerGroup, logIndex, position] = parts as [string, string, string, string];
  const numbers = [logIndex, position].map((part) => (/^\d{1,16}$/.test(part) ? Number(part) : Number.NaN));
  if (brokerGroup === '' || numbers.some((n) => !Number.isSafeInteger(n)) || (numbers[0] as number) < 1) return undefined;
  return { brokerGroup, logIndex: numbers[0] as number, position: numbers[1] as number };
}
