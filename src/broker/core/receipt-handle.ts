/**
 * Receipt handles: `r1~<broker group>~<topic>~<queue>~<offset>~<seq>`. Opaque to clients; they
 * name one delivery (seq is the log index of the entry that issued it), so any node of the
 * broker group — or the access point, which routes by the broker group — can check them.
 */
export interface ReceiptHandle {
  readonly brokerGroup: string;
  readonly topic: string;
  readonly queueId: number;
  readonly offset: number;
  readonly seq: number;
}

export function formatReceiptHandle(handle: ReceiptHandle): string {
  return `r1~${handle.brokerGroup}~${handle.topic}~${handle.queueId}~${handle.offset}~${handle.seq}`;
}

/** The handle's parts, or undefined when the text is not a handle this broker issued. */
export function parseReceiptHandle(text: string): ReceiptHandle | undefined {
  const parts = text.split('~');
  if (parts.length !== 6 || parts[0] !== 'r1') return undefined;
  const [, brokerGroup, topic, queue, offset, seq] = parts as [string, string, string, string, string, string];
  const numbers = [queue, offset, seq].map((part) => (/^\d{1,15}$/.test(part) ? Number(part) : Number.NaN));
  if (brokerGroup === '' || topic === '' || numbers.some((n) => !Number.isSafeInteger(n))) return undefined;
  return { brokerGroup, topic, queueId: numbers[0] as number, offset: numbers[1] as number, seq: numbers[2] as number };
}
