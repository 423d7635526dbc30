import * as fs from 'node:fs';
import { NodeFileSystem, type FileHandle, type FileSystem } from './file-system.js';

/**
 * Test-only power-loss mode (LazyFS's idea inside our own file layer): writes and truncations
 * stay in process memory until `datasync`, so a SIGKILL loses them exactly as a power cut
 * loses the page cache. A plain `kill -9` of a normal node does not test fsync at all,
 * because the kernel keeps what the process wrote.
 *
 * `powerFail` models the cut itself: each file goes back to its size at the last completed
 * sync, then keeps a random prefix of its unsynced operations, the last one kept possibly
 * torn; everything after is discarded. (Overwrites inside the durable region are not undone:
 * the commitlog never makes them except in a segment header written before its first sync.) Creating
 * and removing files goes straight to the disk (the commitlog fsyncs its directory right
 * after either), and small files replaced with `writeFileAtomic` are synced by contract.
 */
export class LazyFileSystem implements FileSystem {
  private readonly real = new NodeFileSystem();
  private readonly handles = new Set<LazyFileHandle>();

  mkdirp(dir: string): Promise<void> { return this.real.mkdirp(dir); }
  list(dir: string): Promise<string[]> { return this.real.list(dir); }
  remove(filePath: string): Promise<void> { return this.real.remove(filePath); }
  syncDir(dir: string): Promise<void> { return this.real.syncDir(dir); }
  readFile(filePath: string): Promise<Uint8Array | undefined> { return this.real.readFile(filePath); }
  writeFileAtomic(filePath: string, data: Uint8Array): Promise<void> { return this.real.writeFileAtomic(filePath, data); }

  async open(filePath: string, options: { create: boolean }): Promise<FileHandle> {
    const real = await this.real.open(filePath, options);
    const handle = new LazyFileHandle(real, await real.size(), this.handles);
    this.handles.add(handle);
    return handle;
  }

  /** Unsynced bytes held in memory right now (writes only). */
  pendingBytes(): number {
    let total = 0;
    for (const handle of this.handles) total += handle.pendingBytes();
    return total;
  }

  /**
   * Synchronously applies what survives the cut (a random prefix of each file's unsynced
   * operations, the last kept write torn at a random byte half of the time) and reports what
   * was discarded. The caller ends the process right after, without running anything else.
   */
  powerFail(randomInt: (maxExclusive: number) => number): PowerFailReport {
    const report: PowerFailReport = { files: 0, pendingOps: 0, pendingBytes: 0, keptBytes: 0, discardedBytes: 0, tornWrites: 0 };
    for (const handle of this.handles) {
      const ops = handle.pendingOps();
      if (ops.length === 0) continue;
      report.files++;
      report.pendingOps += ops.length;
      // Undo what a sync in progress already wrote past the durable end (the commitlog only
      // appends or truncates), so the cut can fall anywhere in the unsynced operations.
      fs.ftruncateSync(handle.fd, handle.durableSize);
      const keep = randomInt(ops.length + 1);
      ops.forEach((op, i) => {
        const bytes = op.kind === 'write' ? op.data.length : 0;
        report.pendingBytes += bytes;
        if (i >= keep) {
          report.discardedBytes += bytes;
          return;
        }
        if (op.kind === 'truncate') {
          fs.ftruncateSync(handle.fd, op.length);
          return;
        }
        const torn = i === keep - 1 && op.data.length > 1 && randomInt(2) === 0;
        const length = torn ? 1 + randomInt(op.data.length - 1) : op.data.length;
        if (torn) report.tornWrites++;
        fs.writeSync(handle.fd, op.data, 0, length, op.position);
        report.keptBytes += length;
        report.discardedBytes += op.data.length - length;
      });
    }
    return report;
  }
}

export interface PowerFailReport {
  files: number;
  pendingOps: number;
  pendingBytes: number;
  keptBytes: number;
  discardedBytes: number;
  tornWrites: number;
}

type PendingOp = { readonly kind: 'write'; readonly position: number; readonly data: Uint8Array } | { readonly kind: 'truncate'; readonly length: number };

class LazyFileHandle implements FileHandle {
  private pending: PendingOp[] = [];
  private syncing: Promise<void> = Promise.resolve();

  /** The file's size as of the last completed datasync. */
  durableSize: number;

  constructor(private readonly real: FileHandle & { readonly fd: number }, initialSize: number, private readonly registry: Set<LazyFileHandle>) {
    this.durableSize = initialSize;
  }

  get path(): string { return this.real.path; }
  get fd(): number { return this.real.fd; }

  pendingOps(): readonly PendingOp[] { return this.pending; }

  pendingBytes(): number {
    let total = 0;
    for (const op of this.pending) if (op.kind === 'write') total += op.data.length;
    return total;
  }

  async size(): Promise<number> {
    let size = await this.real.size();
    for (const op of this.pending) size = op.kind === 'truncate' ? op.length : Math.max(size, op.position + op.data.length);
    return size;
  }

  /**
   * The disk's bytes with every pending operation replayed over them in order. Replaying an
   * operation that `datasync` already applied is harmless (the last writer wins either way),
   * so reads may overlap a sync.
   */
  async read(target: Uint8Array, position: number): Promise<number> {
    if (this.pending.length === 0) return this.real.read(target, position); // nothing to overlay
    const ops = [...this.pending];
    const fromDisk = await this.real.read(target, position);
    target.fill(0, fromDisk);
    let size = await this.real.size();
    const end = position + target.length;
    for (const op of ops) {
      if (op.kind === 'truncate') {
        size = op.length;
        if (op.length < end) target.fill(0, Math.max(op.length - position, 0));
        continue;
      }
      size = Math.max(size, op.position + op.data.length);
      const from = Math.max(op.position, position);
      const to = Math.min(op.position + op.data.length, end);
      if (from < to) target.set(op.data.subarray(from - op.position, to - op.position), from - position);
    }
    return Math.max(0, Math.min(target.length, size - position));
  }

  async write(data: Uint8Array, position: number): Promise<void> {
    this.pending.push({ kind: 'write', position, data: Uint8Array.from(data) }); // the caller may reuse its buffer
  }

  async truncate(length: number): Promise<void> {
    this.pending.push({ kind: 'truncate', length });
  }

  datasync(): Promise<void> {
    this.syncing = this.syncing.then(() => this.flush(true));
    return this.syncing;
  }

  /** A clean close is not a power cut: what was written reaches the page cache. */
  async close(): Promise<void> {
    await this.syncing;
    await this.flush(false);
    this.registry.delete(this);
    await this.real.close();
  }

  private async flush(durable: boolean): Promise<void> {
    const count = this.pending.length;
    for (const op of this.pending.slice(0, count)) {
      if (op.kind === 'write') await this.real.write(op.data, op.position);
      else await this.real.truncate(op.length);
    }
    if (durable) {
      await this.real.datasync();
      this.durableSize = await this.real.size();
    }
    this.pending.splice(0, count);
  }
}
