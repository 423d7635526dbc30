import * as fs from 'node:fs/promises';
import * as path from 'node:path';

/**
 * The commitlog's only way to the disk. Production uses `NodeFileSystem`; the simulator
 * and power-loss tests substitute a disk that loses unsynced writes on a crash.
 *
 * Durability contract: bytes written with `write` and size changes from `truncate` are
 * durable only after `datasync` on that handle; creating or removing a file is durable only
 * after `syncDir` on its directory.
 */
export interface FileHandle {
  readonly path: string;
  size(): Promise<number>;
  /** Reads up to `length` bytes at `position`; returns how many were read (short at EOF). */
  read(target: Uint8Array, position: number): Promise<number>;
  /** Writes all of `data` at `position`. */
  write(data: Uint8Array, position: number): Promise<void>;
  datasync(): Promise<void>;
  truncate(length: number): Promise<void>;
  close(): Promise<void>;
}

export interface FileSystem {
  mkdirp(dir: string): Promise<void>;
  /** File names (not paths) in `dir`; empty if it does not exist. */
  list(dir: string): Promise<string[]>;
  /** Opens for reading and writing, creating the file when `create` is set. */
  open(filePath: string, options: { create: boolean }): Promise<FileHandle>;
  remove(filePath: string): Promise<void>;
  syncDir(dir: string): Promise<void>;
  readFile(filePath: string): Promise<Uint8Array | undefined>;
  /** Replaces a small file atomically and durably (write, fsync, rename, fsync dir). */
  writeFileAtomic(filePath: string, data: Uint8Array): Promise<void>;
}

class NodeFileHandle implements FileHandle {
  constructor(readonly path: string, private readonly handle: fs.FileHandle) {}

  /** For the power-loss test mode, which must write synchronously while the process dies. */
  get fd(): number { return this.handle.fd; }

  async size(): Promise<number> {
    return (await this.handle.stat()).size;
  }

  async read(target: Uint8Array, position: number): Promise<number> {
    let total = 0;
    while (total < target.length) {
      const { bytesRead } = await this.handle.read(target, total, target.length - total, position + total);
      if (bytesRead === 0) break;
      total += bytesRead;
    }
    return total;
  }

  async write(data: Uint8Array, position: number): Promise<void> {
    let written = 0;
    while (written < data.length) {
      const { bytesWritten } = await this.handle.write(data, written, data.length - written, position + written);
      written += bytesWritten;
    }
  }

  datasync(): Promise<void> { return this.handle.datasync(); }
  truncate(length: number): Promise<void> { return this.handle.truncate(length); }
  close(): Promise<void> { return this.handle.close(); }
}

/** The real disk, through `node:fs/promises`. */
export class NodeFileSystem implements FileSystem {
  async mkdirp(dir: string): Promise<void> {
    await fs.mkdir(dir, { recursive: true });
  }

  async list(dir: string): Promise<string[]> {
    try {
      return await fs.readdir(dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
  }

  async open(filePath: string, options: { create: boolean }): Promise<FileHandle & { readonly fd: number }> {
    // 'r+' never creates; 'a+' would force appends, so create first with 'wx' semantics.
    if (options.create) {
      const created = await fs.open(filePath, 'a');
      await created.close();
    }
    return new NodeFileHandle(filePath, await fs.open(filePath, 'r+'));
  }

  async remove(filePath: string): Promise<void> {
    await fs.rm(filePath, { force: true });
  }

  async syncDir(dir: string): Promise<void> {
    const handle = await fs.open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  async readFile(filePath: string): Promise<Uint8Array | undefined> {
    try {
      return await fs.readFile(filePath);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  async writeFileAtomic(filePath: string, data: Uint8Array): Promise<void> {
    const temporary = `${filePath}.tmp`;
    const handle = await fs.open(temporary, 'w');
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(temporary, filePath);
    await this.syncDir(path.dirname(filePath));
  }
}
