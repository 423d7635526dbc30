import * as path from 'node:path';
import type { FileHandle, FileSystem } from '../commitlog/file-system.js';
import type { Prng } from './prng.js';

type PendingOp =
  | { readonly kind: 'write'; readonly position: number; readonly data: Uint8Array }
  | { readonly kind: 'truncate'; readonly length: number };

interface SimFile {
  durable: Uint8Array;
  current: Uint8Array;
  pending: PendingOp[];
}

export interface SimDiskStats {
  crashes: number;
  bytesDiscarded: number;
  tornWrites: number;
}

/** Raised by an injected disk fault (EIO on fsync or write). */
export class SimDiskError extends Error {
  override readonly name = 'SimDiskError';
  readonly code = 'EIO';
}

/**
 * An in-memory disk with a durable image and pending (unsynced) operations, as a power cut
 * sees it: `datasync` makes a file's pending writes durable, `syncDir` makes creations and
 * removals durable, and `crash` throws away what was not made durable — optionally keeping a
 * random prefix of the pending writes and tearing the first one it drops.
 *
 * `delay` lets the simulator turn every operation into a scheduled event so crashes can land
 * between a write and its fsync.
 */
export class SimDisk implements FileSystem {
  readonly stats: SimDiskStats = { crashes: 0, bytesDiscarded: 0, tornWrites: 0 };
  private readonly files = new Map<string, SimFile>();
  private readonly durableNames = new Set<string>();
  private readonly dirs = new Set<string>();
  private generation = 0;
  /** Probability that a datasync fails with EIO (disk fault injection). */
  syncFailureProbability = 0;

  constructor(private readonly random: Prng, private readonly delay: () => Promise<void> = () => Promise.resolve()) {}

  /**
   * A view of this disk for one incarnation of a node: after `crash()` every call through it
   * fails, even one that was already waiting on simulated latency, so a crashed node's
   * leftover promises can never touch its successor's files.
   */
  mount(): FileSystem {
    return this.view(this.generation);
  }

  /** The disk itself follows every generation (for tests that crash and reopen by hand). */
  private readonly unbound = this.view(undefined);
  mkdirp(dir: string): Promise<void> { return this.unbound.mkdirp(dir); }
  list(dir: string): Promise<string[]> { return this.unbound.list(dir); }
  open(filePath: string, options: { create: boolean }): Promise<FileHandle> { return this.unbound.open(filePath, options); }
  remove(filePath: string): Promise<void> { return this.unbound.remove(filePath); }
  syncDir(dir: string): Promise<void> { return this.unbound.syncDir(dir); }
  readFile(filePath: string): Promise<Uint8Array | undefined> { return this.unbound.readFile(filePath); }
  writeFileAtomic(filePath: string, data: Uint8Array): Promise<void> { return this.unbound.writeFileAtomic(filePath, data); }

  /** Every operation waits for the simulated latency; a bound view also checks its generation. */
  private view(generation: number | undefined): FileSystem {
    const run = async <T>(operation: () => T): Promise<T> => {
      this.checkGeneration(generation);
      await this.delay();
      this.checkGeneration(generation);
      return operation();
    };
    return {
      mkdirp: (dir) => run(() => { this.dirs.add(path.normalize(dir)); }),
      list: (dir) => run(() => {
        const normal = path.normalize(dir);
        return [...this.files.keys()].filter((file) => path.dirname(file) === normal).map((file) => path.basename(file)).sort();
      }),
      open: (filePath, options) => run(() => {
        const normal = path.normalize(filePath);
        if (!this.files.has(normal)) {
          if (!options.create) throw Object.assign(new Error(`ENOENT: ${normal}`), { code: 'ENOENT' });
          this.files.set(normal, { durable: new Uint8Array(0), current: new Uint8Array(0), pending: [] });
        }
        return new SimFileHandle(this, normal, this.generation);
      }),
      remove: (filePath) => run(() => { this.files.delete(path.normalize(filePath)); }),
      syncDir: (dir) => run(() => {
        const normal = path.normalize(dir);
        for (const name of [...this.durableNames]) if (path.dirname(name) === normal && !this.files.has(name)) this.durableNames.delete(name);
        for (const name of this.files.keys()) if (path.dirname(name) === normal) this.durableNames.add(name);
      }),
      readFile: (filePath) => run(() => this.files.get(path.normalize(filePath))?.current.slice()),
      writeFileAtomic: (filePath, data) => run(() => {
        const normal = path.normalize(filePath);
        this.files.set(normal, { durable: data.slice(), current: data.slice(), pending: [] });
        this.durableNames.add(normal);
      }),
    };
  }

  private checkGeneration(generation: number | undefined): void {
    if (generation !== undefined && generation !== this.generation) throw new SimDiskError('the disk crashed under this mount');
  }

  /**
   * Power loss. Every open handle becomes invalid. Unsynced operations are lost, except a
   * random prefix of them when `keepSomeUnsynced` is set; `tear` may keep part of the first
   * lost write.
   */
  crash(options: { keepSomeUnsynced: boolean; tear: boolean }): void {
    this.stats.crashes++;
    this.generation++;
    for (const [name, file] of [...this.files]) {
      if (!this.durableNames.has(name)) {
        this.stats.bytesDiscarded += file.current.length;
        this.files.delete(name);
        continue;
      }
      let image = file.durable;
      const keep = options.keepSomeUnsynced ? this.random.int(0, file.pending.length) : 0;
      for (const [i, op] of file.pending.entries()) {
        if (i < keep) {
          image = applyOp(image, op);
          continue;
        }
        if (i === keep && options.tear && op.kind === 'write' && op.data.length > 1 && this.random.chance(0.5)) {
          const partial = this.random.int(1, op.data.length - 1);
          image = applyOp(image, { kind: 'write', position: op.position, data: op.data.subarray(0, partial) });
          this.stats.tornWrites++;
        }
        break;
      }
      this.stats.bytesDiscarded += Math.max(0, file.current.length - image.length) + file.pending.slice(keep).reduce((sum, op) => sum + (op.kind === 'write' ? op.data.length : 0), 0);
      file.durable = image;
      file.current = image.slice();
      file.pending = [];
    }
    for (const name of [...this.durableNames]) {
      if (!this.files.has(name)) this.durableNames.delete(name);
    }
  }

  /** Flips one bit of a file's durable and current image (storage corruption). */
  flipBit(filePath: string, byteOffset: number, bit: number): void {
    const file = this.mustGet(path.normalize(filePath), this.generation);
    file.durable[byteOffset] = (file.durable[byteOffset] as number) ^ (1 << bit);
    file.current[byteOffset] = (file.current[byteOffset] as number) ^ (1 << bit);
  }

  /** Cuts the last `bytes` of a file's durable and current image (synced data lost). */
  truncateDurable(filePath: string, bytes: number): void {
    const file = this.mustGet(path.normalize(filePath), this.generation);
    const length = Math.max(0, file.durable.length - bytes);
    file.durable = file.durable.slice(0, length);
    file.current = file.current.slice(0, Math.min(file.current.length, length));
  }

  fileNames(): string[] { return [...this.files.keys()]; }
  fileSize(filePath: string): number { return this.files.get(path.normalize(filePath))?.current.length ?? 0; }

  /** @internal used by handles */
  mustGet(filePath: string, generation: number): SimFile {
    if (generation !== this.generation) throw new SimDiskError('stale file handle (the disk crashed)');
    const file = this.files.get(filePath);
    if (file === undefined) throw Object.assign(new Error(`ENOENT: ${filePath}`), { code: 'ENOENT' });
    return file;
  }

  /** @internal */
  wait(): Promise<void> { return this.delay(); }

  /** @internal */
  maybeFailSync(): void {
    if (this.syncFailureProbability > 0 && this.random.chance(this.syncFailureProbability)) throw new SimDiskError('EIO: injected fsync failure');
  }
}

function applyOp(image: Uint8Array, op: PendingOp): Uint8Array {
  if (op.kind === 'truncate') {
    const out = new Uint8Array(op.length);
    out.set(image.subarray(0, Math.min(op.length, image.length)));
    return out;
  }
  const end = op.position + op.data.length;
  const out = end > image.length ? new Uint8Array(end) : image.slice();
  if (end > image.length) out.set(image);
  out.set(op.data, op.position);
  return out;
}

class SimFileHandle implements FileHandle {
  constructor(private readonly disk: SimDisk, readonly path: string, private readonly generation: number) {}

  async size(): Promise<number> {
    await this.disk.wait();
    return this.disk.mustGet(this.path, this.generation).current.length;
  }

  async read(target: Uint8Array, position: number): Promise<number> {
    await this.disk.wait();
    const file = this.disk.mustGet(this.path, this.generation);
    const available = Math.max(0, Math.min(target.length, file.current.length - position));
    target.set(file.current.subarray(position, position + available));
    return available;
  }

  async write(data: Uint8Array, position: number): Promise<void> {
    await this.disk.wait();
    const file = this.disk.mustGet(this.path, this.generation);
    const op: PendingOp = { kind: 'write', position, data: data.slice() };
    file.current = applyOp(file.current, op);
    file.pending.push(op);
  }

  async datasync(): Promise<void> {
    await this.disk.wait();
    const file = this.disk.mustGet(this.path, this.generation);
    this.disk.maybeFailSync();
    file.durable = file.current.slice();
    file.pending = [];
  }

  async truncate(length: number): Promise<void> {
    await this.disk.wait();
    const file = this.disk.mustGet(this.path, this.generation);
    const op: PendingOp = { kind: 'truncate', length };
    file.current = applyOp(file.current, op);
    file.pending.push(op);
  }

  async close(): Promise<void> {
    // Closing never syncs; a stale handle closes silently.
  }
}

/** The three ways a simulated crash treats unsynced writes: lose all, keep a prefix, keep a prefix with a torn last write. */
export const simCrashModes = [
  { keepSomeUnsynced: false, tear: false },
  { keepSomeUnsynced: true, tear: false },
  { keepSomeUnsynced: true, tear: true },
] as const;

export type SimCrashMode = (typeof simCrashModes)[number];

/**
 * A SimDisk whose delay hook (run before every disk operation) can crash it just before the
 * n-th operation from `arm`: for tests that crash a component at every step of an operation.
 * Run the component on a mount, so the interrupted call fails and nothing of a crashed
 * incarnation reaches the disk afterwards.
 */
export function crashableSimDisk(random: Prng, mode: SimCrashMode): { disk: SimDisk; arm(n: number | undefined): void; operations(): number } {
  let operations = 0;
  let crashAt: number | undefined;
  const disk: SimDisk = new SimDisk(random, () => {
    operations++;
    if (crashAt !== undefined && operations === crashAt) {
      crashAt = undefined;
      disk.crash(mode);
    }
    return Promise.resolve();
  });
  return {
    disk,
    /** Crash just before operation `n` (1-based) counted from now; undefined: count only. */
    arm(n: number | undefined): void { operations = 0; crashAt = n; },
    operations: (): number => operations,
  };
}
