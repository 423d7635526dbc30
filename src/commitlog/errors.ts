/** A damaged record where the log holds data that was durable: stop, never guess. */
export class CorruptLogError extends Error {
  override readonly name = 'CorruptLogError';
  readonly code = 'CORRUPT_LOG';
  constructor(readonly file: string, readonly offset: number, readonly reason: string) {
    super(`commitlog corrupt: ${file} at byte ${offset}: ${reason}; the node must be repaired from its peers`);
  }
}

/** An earlier I/O failure made the log unusable; the Raft group must stop (fail-stop). */
export class LogFailedError extends Error {
  override readonly name = 'LogFailedError';
  readonly code = 'LOG_FAILED';
  constructor(options: ErrorOptions) {
    super('commitlog failed after an I/O error; restart the node to recover', options);
  }
}
