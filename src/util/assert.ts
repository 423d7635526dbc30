/**
 * Invariant checks that stay on in production. A failed assertion is a bug: the process
 * must stop rather than continue in a wrong state (a crash is a liveness problem, wrong
 * data is a safety problem).
 */
export class InvariantViolation extends Error {
  override readonly name = 'InvariantViolation';
}

export function assert(condition: unknown, message?: string): asserts condition {
  if (!condition) throw new InvariantViolation(message ?? 'assertion failed');
}

export function unreachable(value: never): never {
  throw new InvariantViolation(`unreachable: ${String(value)}`);
}

/** Normalises whatever was thrown into an Error, keeping the original as `cause`. */
export function coerceError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  return new Error(String(thrown), { cause: thrown });
}
