import * as path from 'node:path';
import { crc32 } from 'node:zlib';
import type { FileHandle, FileSystem } from './file-system.js';
import type { Logger, SnapshotMeta, SnapshotReceiver, SnapshotStore, StoredSnapshot } from '../raft/node/ports.js';
import type { LogIndex, Member } from '../raft/types.js';

/**
 * Durable Raft snapshots on the `FileSystem` port, one file per snapshot, the newest
 * `retainCount` kept.
 *
 * File name: `snapshot-<index, 20 digits zero-padded>.snap`, so names sort by index.
 * Temporary files end in `.tmp` (the receiver's `snapshot-<index>.snap.<n>.receive.tmp`, and
 * `writeFileAtomic`'s own `<final name>.tmp` on the real disk); `open` deletes them all.
 *
 * File layout (little-endian, version 1):
 *
 *    0  u32 magic 'RMQS'          4  u16 version (1)        6  u16 reserved (0)
 *    8  u64 index                16  u64 term               24  u64 configIndex
 *   32  u32 membersBytes (m)     36  u64 dataBytes (n)      44  u32 crc32(bytes 0..44)
 *   48  members: UTF-8 JSON [{"id":…,"address":…}, …]        (m bytes)
 *   48+m  state machine data                                  (n bytes)
 *   48+m+n  u32 crc32(bytes 0..48+m+n)
 *
 * The file is 52 + m + n bytes. The header checksum makes the lengths trustworthy before
 * they are used (a flipped length bit is reported as header damage, not as a truncation);
 * the trailing checksum covers everything before it, so a torn or bit-flipped byte anywhere
 * is detected. Readers reject unknown versions; `version` is bumped for any layout change.
 *
 * Durability (the port's contract: bytes are durable after `datasync`, names after
 * `syncDir`): `save` and a receiver's `finish` write the whole file with
 * `writeFileAtomic(final path)` — write a temporary, fsync it, rename it over the final name,
 * fsync the directory — so after a crash the final name holds either the complete new file
 * or whatever it held before, never a partial one. Only then is the snapshot recorded (and
 * `newest()` changes), old snapshots are removed and the directory is fsynced again.
 * The port has no rename, so a received snapshot is streamed into a temporary file (bounded
 * memory while chunks arrive) and, at `finish`, read back, verified and written once more
 * through `writeFileAtomic`; `finish` returns the state anyway, so the whole file is in
 * memory at that point.
 *
 * Mutations (save, a receiver's commit, pruning) run one at a time.
 */

export const snapshotMagic = 0x53514d52; // 'RMQS'
export const snapshotVersion = 1;
/** Fixed header, including its checksum. */
export const snapshotHeaderBytes = 48;
/** Header plus the trailing checksum: the smallest possible file. */
export const snapshotOverheadBytes = snapshotHeaderBytes + 4;
/** Upper bound on the members JSON; larger lengths in a header are treated as damage. */
export const snapshotMembersBytesMax = 1024 * 1024;

const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

const fileNamePattern = /^snapshot-(\d{20})\.snap$/;

export function snapshotFileName(index: LogIndex): string {
  return `snapshot-${String(index).padStart(20, '0')}.snap`;
}

/** The index a snapshot file name encodes, or undefined if it is not a snapshot's name. */
export function parseSnapshotFileName(name: string): LogIndex | undefined {
  const match = fileNamePattern.exec(name);
  if (match === null) return undefined;
  const index = Number(match[1]);
  return Number.isSafeInteger(index) ? index : undefined;
}

/** Every snapshot that could have been loaded is damaged (or a received one is): names each file and what is wrong. */
export class SnapshotCorruptError extends Error {
  override readonly name = 'SnapshotCorruptError';
  readonly code = 'CORRUPT_SNAPSHOT';
  readonly files: readonly string[];
  constructor(context: string, readonly problems: ReadonlyArray<{ readonly file: string; readonly problem: string }>) {
    super(`${context}: ${problems.map(({ file, problem }) => `${file}: ${problem}`).join('; ')}`);
    this.files = problems.map(({ file }) => file);
  }
}

function writeU64(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, value % 0x1_0000_0000, true);
  view.setUint32(offset + 4, Math.floor(value / 0x1_0000_0000), true);
}

function readU64(view: DataView, offset: number): number {
  return view.getUint32(offset, true) + view.getUint32(offset + 4, true) * 0x1_0000_0000;
}

function isIndex(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** Rejects metadata that cannot be a snapshot's (a caller's bug), before anything is written. */
function checkMeta(meta: SnapshotMeta, what: string): void {
  const problems: string[] = [];
  if (!isIndex(meta.index) || meta.index < 1) problems.push(`index ${String(meta.index)} is not a positive integer`);
  if (!isIndex(meta.term) || meta.term < 1) problems.push(`term ${String(meta.term)} is not a positive integer`);
  if (!isIndex(meta.configIndex)) problems.push(`configIndex ${String(meta.configIndex)} is not a non-negative integer`);
  else if (meta.configIndex > meta.index) problems.push(`configIndex ${meta.configIndex} is after index ${meta.index}`);
  if (!Array.isArray(meta.members) || !meta.members.every((m) => typeof m?.id === 'string' && typeof m?.address === 'string')) problems.push('members must be [{ id, address }] with string fields');
  if (problems.length > 0) throw new TypeError(`${what}: invalid snapshot metadata: ${problems.join('; ')}`);
}

function copyMeta(meta: SnapshotMeta): SnapshotMeta {
  return { index: meta.index, term: meta.term, configIndex: meta.configIndex, members: meta.members.map(({ id, address }) => ({ id, address })) };
}

/** The fields on which two metadata differ (empty if equal). */
function metaDifferences(expected: SnapshotMeta, actual: SnapshotMeta): string[] {
  const out: string[] = [];
  if (expected.index !== actual.index) out.push(`index ${actual.index}, expected ${expected.index}`);
  if (expected.term !== actual.term) out.push(`term ${actual.term}, expected ${expected.term}`);
  if (expected.configIndex !== actual.configIndex) out.push(`configIndex ${actual.configIndex}, expected ${expected.configIndex}`);
  const members = (meta: SnapshotMeta): string => JSON.stringify(meta.members.map(({ id, address }) => ({ id, address })));
  if (members(expected) !== members(actual)) out.push(`members ${members(actual)}, expected ${members(expected)}`);
  return out;
}

/** The whole file for `meta` and `data`. */
export function encodeSnapshotFile(meta: SnapshotMeta, data: Uint8Array): Uint8Array {
  checkMeta(meta, 'encoding a snapshot');
  const members = new TextEncoder().encode(JSON.stringify(meta.members.map(({ id, address }) => ({ id, address }))));
  if (members.length > snapshotMembersBytesMax) throw new RangeError(`snapshot members take ${members.length} bytes, more than ${snapshotMembersBytesMax}`);
  const total = snapshotOverheadBytes + members.length + data.length;
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  view.setUint32(0, snapshotMagic, true);
  view.setUint16(4, snapshotVersion, true);
  view.setUint16(6, 0, true);
  writeU64(view, 8, meta.index);
  writeU64(view, 16, meta.term);
  writeU64(view, 24, meta.configIndex);
  view.setUint32(32, members.length, true);
  writeU64(view, 36, data.length);
  view.setUint32(44, crc32(out.subarray(0, 44)), true);
  out.set(members, snapshotHeaderBytes);
  out.set(data, snapshotHeaderBytes + members.length);
  view.setUint32(total - 4, crc32(out.subarray(0, total - 4)), true);
  return out;
}

export type ParsedSnapshot =
  | { readonly ok: true; readonly meta: SnapshotMeta; readonly data: Uint8Array }
  | { readonly ok: false; readonly problem: string };

/**
 * Parses and verifies a whole snapshot file. `data` is a view into `bytes` (no copy).
 * `expectedIndex` (from the file name) must match the header's index.
 */
export function parseSnapshotFile(bytes: Uint8Array, expectedIndex?: LogIndex): ParsedSnapshot {
  const bad = (problem: string): ParsedSnapshot => ({ ok: false, problem });
  if (bytes.length < snapshotOverheadBytes) return bad(`truncated: ${bytes.length} bytes, shorter than the ${snapshotOverheadBytes}-byte minimum`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0, true);
  if (magic !== snapshotMagic) return bad(`bad magic 0x${magic.toString(16).padStart(8, '0')}, expected 0x${snapshotMagic.toString(16)}`);
  if (view.getUint32(44, true) !== crc32(bytes.subarray(0, 44))) return bad('header checksum mismatch (header damaged)');
  const version = view.getUint16(4, true);
  if (version !== snapshotVersion) return bad(`unknown format version ${version} (this build reads version ${snapshotVersion})`);
  const membersBytes = view.getUint32(32, true);
  const dataBytes = readU64(view, 36);
  if (membersBytes > snapshotMembersBytesMax) return bad(`members length ${membersBytes} too large`);
  const declared = snapshotOverheadBytes + membersBytes + dataBytes;
  if (!Number.isSafeInteger(declared)) return bad(`data length ${dataBytes} too large`);
  if (bytes.length < declared) return bad(`truncated: the header declares ${declared} bytes, the file has ${bytes.length}`);
  if (bytes.length > declared) return bad(`${bytes.length - declared} unexpected bytes after the declared ${declared}`);
  if (view.getUint32(declared - 4, true) !== crc32(bytes.subarray(0, declared - 4))) return bad('checksum mismatch (content damaged)');
  const index = readU64(view, 8);
  const term = readU64(view, 16);
  const configIndex = readU64(view, 24);
  let members: Member[];
  try {
    const parsed: unknown = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(snapshotHeaderBytes, snapshotHeaderBytes + membersBytes)));
    if (!Array.isArray(parsed)) return bad('members are not a JSON array');
    members = parsed.map((m: unknown) => {
      const { id, address } = (m ?? {}) as { id?: unknown; address?: unknown };
      if (typeof id !== 'string' || typeof address !== 'string') throw new Error('a member without string id and address');
      return { id, address };
    });
  } catch (error) {
    return bad(`unparsable members: ${(error as Error).message}`);
  }
  const meta: SnapshotMeta = { index, term, configIndex, members };
  try {
    checkMeta(meta, 'header');
  } catch (error) {
    return bad((error as Error).message);
  }
  if (expectedIndex !== undefined && index !== expectedIndex) return bad(`the file name says index ${expectedIndex} but the header says ${index}`);
  // A plain Uint8Array view (not a Buffer, whatever `readFile` returned), no copy.
  const start = snapshotHeaderBytes + membersBytes;
  return { ok: true, meta, data: new Uint8Array(bytes.buffer, bytes.byteOffset + start, dataBytes) };
}

interface Listed {
  readonly index: LogIndex;
  readonly fileName: string;
  fileBytes: number;
  /** Set once the file was verified (loaded, saved or received). */
  snapshot: StoredSnapshot | undefined;
  /** Set once loading found it damaged. */
  problem: string | undefined;
}

export interface FileSnapshotStoreOptions {
  readonly fs: FileSystem;
  readonly dir: string;
  /** How many snapshots to keep (the newest); default 3. */
  readonly retainCount?: number;
  readonly logger?: Logger;
}

export class FileSnapshotStore implements SnapshotStore {
  private readonly listed = new Map<LogIndex, Listed>();
  private newestValue: StoredSnapshot | undefined;
  private lock: Promise<unknown> = Promise.resolve();
  private receiveSequence = 0;

  private constructor(
    private readonly fs: FileSystem,
    readonly dir: string,
    readonly retainCount: number,
    private readonly logger: Logger,
  ) {}

  /** Creates the directory, deletes leftover temporary files and lists the snapshots (reads no content). */
  static async open(options: FileSnapshotStoreOptions): Promise<FileSnapshotStore> {
    const retainCount = options.retainCount ?? 3;
    if (!Number.isInteger(retainCount) || retainCount < 1) throw new RangeError(`retainCount must be a positive integer, got ${retainCount}`);
    const store = new FileSnapshotStore(options.fs, options.dir, retainCount, options.logger ?? silentLogger);
    await store.scan();
    return store;
  }

  private async scan(): Promise<void> {
    await this.fs.mkdirp(this.dir);
    let removed = 0;
    for (const name of await this.fs.list(this.dir)) {
      if (name.endsWith('.tmp')) {
        await this.fs.remove(this.pathOf(name));
        removed++;
        continue;
      }
      const index = parseSnapshotFileName(name);
      if (index === undefined) continue;
      const handle = await this.fs.open(this.pathOf(name), { create: false });
      let fileBytes: number;
      try {
        fileBytes = await handle.size();
      } finally {
        await handle.close();
      }
      this.listed.set(index, { index, fileName: name, fileBytes, snapshot: undefined, problem: undefined });
    }
    if (removed > 0) {
      await this.fs.syncDir(this.dir);
      this.logger.info({ dir: this.dir, removed }, 'deleted leftover temporary snapshot files');
    }
  }

  /** The snapshot files found or written, oldest first (no I/O). */
  files(): ReadonlyArray<{ readonly fileName: string; readonly index: LogIndex; readonly fileBytes: number; readonly damaged: string | undefined }> {
    return this.sorted().map(({ fileName, index, fileBytes, problem }) => ({ fileName, index, fileBytes, damaged: problem }));
  }

  async loadNewest(): Promise<{ snapshot: StoredSnapshot; data: Uint8Array } | undefined> {
    const problems: Array<{ file: string; problem: string }> = [];
    for (const entry of this.sorted().reverse()) {
      if (entry.problem !== undefined) {
        problems.push({ file: entry.fileName, problem: entry.problem });
        continue;
      }
      const bytes = await this.fs.readFile(this.pathOf(entry.fileName));
      const parsed: ParsedSnapshot = bytes === undefined ? { ok: false, problem: 'the file disappeared' } : parseSnapshotFile(bytes, entry.index);
      if (!parsed.ok) {
        entry.problem = parsed.problem;
        problems.push({ file: entry.fileName, problem: parsed.problem });
        this.logger.warn({ dir: this.dir, file: entry.fileName, problem: parsed.problem }, 'skipping a damaged snapshot; falling back to an older one');
        continue;
      }
      entry.fileBytes = (bytes as Uint8Array).length;
      const snapshot: StoredSnapshot = { meta: parsed.meta, fileName: entry.fileName, fileBytes: entry.fileBytes };
      entry.snapshot = snapshot;
      this.offerNewest(snapshot);
      return { snapshot, data: parsed.data };
    }
    if (problems.length === 0) return undefined;
    throw new SnapshotCorruptError(`every snapshot in ${this.dir} is damaged; the node must be repaired from its peers`, problems);
  }

  save(meta: SnapshotMeta, data: Uint8Array): Promise<StoredSnapshot> {
    checkMeta(meta, 'save');
    const bytes = encodeSnapshotFile(meta, data);
    return this.exclusive(() => this.commit(copyMeta(meta), bytes));
  }

  newest(): StoredSnapshot | undefined {
    return this.newestValue;
  }

  async readFileChunk(snapshot: StoredSnapshot, offset: number, length: number): Promise<Uint8Array> {
    const entry = this.listed.get(snapshot.meta.index);
    const current = entry?.snapshot;
    if (current === undefined || current.fileName !== snapshot.fileName || current.fileBytes !== snapshot.fileBytes || current.meta.term !== snapshot.meta.term) {
      throw new Error(`snapshot ${snapshot.fileName} (index ${snapshot.meta.index}, term ${snapshot.meta.term}) is no longer stored in ${this.dir}: it was pruned or replaced; stream a newer one`);
    }
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > current.fileBytes) throw new RangeError(`snapshot ${snapshot.fileName}: offset ${offset} outside the file's ${current.fileBytes} bytes`);
    if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`snapshot ${snapshot.fileName}: invalid chunk length ${length}`);
    const target = new Uint8Array(Math.min(length, current.fileBytes - offset));
    if (target.length === 0) return target;
    let handle: FileHandle;
    try {
      handle = await this.fs.open(this.pathOf(current.fileName), { create: false });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`snapshot ${snapshot.fileName} is no longer stored in ${this.dir}: it was pruned; stream a newer one`, { cause: error });
      throw error;
    }
    try {
      const read = await handle.read(target, offset);
      if (read !== target.length) throw new Error(`snapshot ${snapshot.fileName}: read ${read} of ${target.length} bytes at offset ${offset}; the file is shorter than the ${current.fileBytes} bytes written`);
    } finally {
      await handle.close();
    }
    return target;
  }

  /**
   * The file of `stored` with its state replaced by `transform(state)`, meta unchanged: what
   * a node sends a peer when its own snapshots rely on files of its own (a broker's queue files).
   */
  async fileWithState(stored: StoredSnapshot, transform: (data: Uint8Array) => Uint8Array): Promise<Uint8Array> {
    const parsed = parseSnapshotFile(await this.readFileChunk(stored, 0, stored.fileBytes), stored.meta.index);
    if (!parsed.ok) throw new Error(`snapshot ${stored.fileName} cannot be sent: ${parsed.problem}`);
    return encodeSnapshotFile(stored.meta, transform(parsed.data));
  }

  receive(meta: SnapshotMeta, fileBytes: number): SnapshotReceiver {
    checkMeta(meta, 'receive');
    if (!Number.isSafeInteger(fileBytes) || fileBytes < snapshotOverheadBytes) {
      throw new RangeError(`receive ${snapshotFileName(meta.index)}: fileBytes ${fileBytes} cannot be a snapshot file (at least ${snapshotOverheadBytes} bytes)`);
    }
    const tmpName = `${snapshotFileName(meta.index)}.${++this.receiveSequence}.receive.tmp`;
    return new FileSnapshotReceiver(this, this.fs, copyMeta(meta), fileBytes, tmpName, this.pathOf(tmpName));
  }

  /** @internal The receiver's last step: durable under the final name, recorded, pruned. */
  commitReceived(meta: SnapshotMeta, bytes: Uint8Array): Promise<StoredSnapshot> {
    return this.exclusive(() => this.commit(meta, bytes));
  }

  /** @internal */
  logWarning(fields: object, message: string): void {
    this.logger.warn({ dir: this.dir, ...fields }, message);
  }

  /** Writes a verified file atomically and durably, records it, then prunes. Under the lock. */
  private async commit(meta: SnapshotMeta, bytes: Uint8Array): Promise<StoredSnapshot> {
    const fileName = snapshotFileName(meta.index);
    await this.fs.writeFileAtomic(this.pathOf(fileName), bytes);
    const snapshot: StoredSnapshot = { meta, fileName, fileBytes: bytes.length };
    const replaced = this.listed.has(meta.index);
    this.listed.set(meta.index, { index: meta.index, fileName, fileBytes: bytes.length, snapshot, problem: undefined });
    if (replaced && this.newestValue?.meta.index === meta.index) this.newestValue = undefined;
    this.offerNewest(snapshot);
    this.logger.debug({ dir: this.dir, file: fileName, index: meta.index, term: meta.term, bytes: bytes.length, replaced }, 'snapshot written');
    await this.prune();
    return snapshot;
  }

  /**
   * Keeps the newest `retainCount` snapshots not known to be damaged; removes the others and
   * every damaged one (a newer valid snapshot supersedes it), then fsyncs the directory.
   */
  private async prune(): Promise<void> {
    const usable = this.sorted().filter((entry) => entry.problem === undefined);
    const keep = new Set(usable.slice(-this.retainCount));
    const doomed = this.sorted().filter((entry) => !keep.has(entry));
    if (doomed.length === 0) return;
    for (const entry of doomed) {
      await this.fs.remove(this.pathOf(entry.fileName));
      this.listed.delete(entry.index);
    }
    await this.fs.syncDir(this.dir);
    this.logger.debug({ dir: this.dir, removed: doomed.map((entry) => entry.fileName) }, 'pruned old snapshots');
    if (this.newestValue !== undefined && this.listed.get(this.newestValue.meta.index)?.snapshot !== this.newestValue) {
      this.newestValue = undefined;
      for (const entry of this.sorted()) if (entry.snapshot !== undefined) this.offerNewest(entry.snapshot);
    }
  }

  /** The newest is the verified snapshot with the highest index. */
  private offerNewest(snapshot: StoredSnapshot): void {
    if (this.newestValue === undefined || snapshot.meta.index >= this.newestValue.meta.index) this.newestValue = snapshot;
  }

  private sorted(): Listed[] {
    return [...this.listed.values()].sort((a, b) => a.index - b.index);
  }

  private pathOf(name: string): string {
    return path.join(this.dir, name);
  }

  private exclusive<T>(operation: () => Promise<T>): Promise<T> {
    const run = this.lock.then(operation, operation);
    this.lock = run.catch(() => undefined);
    return run;
  }
}

type ReceiverState = 'receiving' | 'finishing' | 'finished' | 'aborted' | 'failed';

/**
 * Streams chunks into a temporary file (never synced: it is only a staging area), then at
 * `finish` reads it back, verifies it and commits it through the store. Any failure deletes
 * the temporary file; an out-of-order or oversize chunk is refused without harm to what was
 * received (the caller may resend the right chunk, or abort).
 */
class FileSnapshotReceiver implements SnapshotReceiver {
  private received = 0;
  private state: ReceiverState = 'receiving';
  private handle: Promise<FileHandle> | undefined;
  /** The writes in flight, in order; rejects if one failed. */
  private writes: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: FileSnapshotStore,
    private readonly fs: FileSystem,
    private readonly meta: SnapshotMeta,
    private readonly fileBytes: number,
    private readonly tmpName: string,
    private readonly tmpPath: string,
  ) {}

  private get label(): string {
    return `receiving snapshot ${snapshotFileName(this.meta.index)} (index ${this.meta.index}, term ${this.meta.term})`;
  }

  async write(offset: number, chunk: Uint8Array): Promise<void> {
    this.checkReceiving('write');
    if (offset !== this.received) throw new Error(`${this.label}: chunk at offset ${offset} is out of order: expected offset ${this.received} (the bytes received so far)`);
    if (this.received + chunk.length > this.fileBytes) {
      throw new Error(`${this.label}: a ${chunk.length}-byte chunk at offset ${offset} would make ${this.received + chunk.length} bytes, more than the announced ${this.fileBytes}`);
    }
    this.received += chunk.length;
    const data = chunk.slice(); // the caller may reuse its buffer before the queued write runs
    const run = this.writes.then(async () => {
      const handle = await this.openTmp();
      await handle.write(data, offset);
    });
    this.writes = run;
    try {
      await run;
    } catch (error) {
      await this.fail();
      throw new Error(`${this.label}: writing ${this.tmpName} failed: ${(error as Error).message}`, { cause: error });
    }
  }

  async finish(): Promise<{ snapshot: StoredSnapshot; data: Uint8Array }> {
    this.checkReceiving('finish');
    this.state = 'finishing';
    try {
      await this.writes;
      if (this.received !== this.fileBytes) throw new Error(`${this.label}: received ${this.received} of the announced ${this.fileBytes} bytes`);
      const handle = await this.openTmp();
      const bytes = new Uint8Array(this.fileBytes);
      const read = await handle.read(bytes, 0);
      await handle.close();
      this.handle = undefined;
      if (read !== this.fileBytes) throw new Error(`${this.label}: read back ${read} of ${this.fileBytes} bytes from ${this.tmpName}`);
      const parsed = parseSnapshotFile(bytes);
      if (!parsed.ok) throw new SnapshotCorruptError(`${this.label}: the received file is invalid`, [{ file: this.tmpName, problem: parsed.problem }]);
      const differences = metaDifferences(this.meta, parsed.meta);
      if (differences.length > 0) throw new Error(`${this.label}: the received file's metadata does not match the announced one: ${differences.join('; ')}`);
      const snapshot = await this.store.commitReceived(parsed.meta, bytes);
      this.state = 'finished';
      await this.removeTmp();
      return { snapshot, data: parsed.data };
    } catch (error) {
      if (this.state !== 'finished') await this.fail();
      throw error;
    }
  }

  async abort(): Promise<void> {
    if (this.state === 'finished' || this.state === 'aborted' || this.state === 'failed') return;
    this.state = 'aborted';
    await this.writes.catch(() => undefined);
    await this.closeTmp();
    await this.removeTmp();
  }

  private checkReceiving(operation: string): void {
    if (this.state !== 'receiving') throw new Error(`${this.label}: cannot ${operation}: the receive is ${this.state}`);
  }

  private openTmp(): Promise<FileHandle> {
    this.handle ??= this.fs.open(this.tmpPath, { create: true }).then(async (handle) => {
      if (await handle.size() > 0) await handle.truncate(0);
      return handle;
    });
    return this.handle;
  }

  private async closeTmp(): Promise<void> {
    const handle = this.handle;
    this.handle = undefined;
    if (handle === undefined) return;
    try {
      await (await handle).close();
    } catch {
      // a handle that failed to open or is stale has nothing to close
    }
  }

  /** Best effort: a temporary file left by an I/O error is deleted at the next open. */
  private async removeTmp(): Promise<void> {
    try {
      await this.fs.remove(this.tmpPath);
    } catch (error) {
      this.store.logWarning({ file: this.tmpName, error: (error as Error).message }, 'could not delete a temporary snapshot file; the next open deletes it');
    }
  }

  private async fail(): Promise<void> {
    this.state = 'failed';
    await this.writes.catch(() => undefined);
    await this.closeTmp();
    await this.removeTmp();
  }
}
