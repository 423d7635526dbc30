import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LazyFileSystem } from './lazy-file-system.js';

let dir = '';
beforeEach(async () => { dir = await fs.mkdtemp(path.join(os.tmpdir(), 'raftmq-lazyfs-')); });
afterEach(async () => { await fs.rm(dir, { recursive: true, force: true }); });

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

describe('LazyFileSystem (power-loss test mode)', () => {
  it('keeps unsynced writes in memory: readable through the handle, absent on disk until datasync', async () => {
    const lazy = new LazyFileSystem();
    const file = path.join(dir, 'a');
    const handle = await lazy.open(file, { create: true });
    await handle.write(bytes('hello'), 0);
    expect(await handle.size()).toBe(5);
    const target = new Uint8Array(5);
    expect(await handle.read(target, 0)).toBe(5);
    expect(Buffer.from(target).toString()).toBe('hello');
    expect((await fs.readFile(file)).length).toBe(0);
    expect(lazy.pendingBytes()).toBe(5);
    await handle.datasync();
    expect((await fs.readFile(file)).toString()).toBe('hello');
    expect(lazy.pendingBytes()).toBe(0);
    await handle.close();
  });

  it('power failure discards what was not synced and reports the bytes', async () => {
    const lazy = new LazyFileSystem();
    const file = path.join(dir, 'b');
    const handle = await lazy.open(file, { create: true });
    await handle.write(bytes('durable|'), 0);
    await handle.datasync();
    await handle.write(bytes('lost-one|'), 8);
    await handle.write(bytes('lost-two'), 17);
    const report = lazy.powerFail(() => 0); // keep none of the pending operations
    expect(report).toMatchObject({ files: 1, pendingOps: 2, pendingBytes: 17, keptBytes: 0, discardedBytes: 17 });
    expect((await fs.readFile(file)).toString()).toBe('durable|');
  });

  it('a power failure may keep a prefix of the pending writes with the last one torn', async () => {
    const lazy = new LazyFileSystem();
    const file = path.join(dir, 'c');
    const handle = await lazy.open(file, { create: true });
    await handle.write(bytes('aaaa'), 0);
    await handle.write(bytes('bbbb'), 4);
    await handle.write(bytes('cccc'), 8);
    const draws = [2, 0, 1]; // keep two operations; tear the second; keep 1 + 1 bytes of it
    const report = lazy.powerFail(() => draws.shift() ?? 0);
    expect(report).toMatchObject({ keptBytes: 6, discardedBytes: 6, tornWrites: 1 });
    expect((await fs.readFile(file)).toString()).toBe('aaaabb');
  });

  it('reads through pending writes and truncations match a model of the file', async () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('write' as const), position: fc.nat(64), data: fc.uint8Array({ minLength: 1, maxLength: 24 }) }),
      fc.record({ kind: fc.constant('truncate' as const), length: fc.nat(80) }),
      fc.record({ kind: fc.constant('sync' as const) }),
    );
    let run = 0;
    await fc.assert(fc.asyncProperty(fc.array(op, { maxLength: 20 }), async (ops) => {
      const lazy = new LazyFileSystem();
      const handle = await lazy.open(path.join(dir, `m${run++}`), { create: true });
      let model = new Uint8Array(0);
      for (const o of ops) {
        if (o.kind === 'write') {
          const grown = new Uint8Array(Math.max(model.length, o.position + o.data.length));
          grown.set(model);
          grown.set(o.data, o.position);
          model = grown;
          await handle.write(o.data, o.position);
        } else if (o.kind === 'truncate') {
          const cut = new Uint8Array(o.length);
          cut.set(model.subarray(0, o.length));
          model = cut;
          await handle.truncate(o.length);
        } else {
          await handle.datasync();
        }
        expect(await handle.size()).toBe(model.length);
        const target = new Uint8Array(96).fill(0xee);
        const read = await handle.read(target, 0);
        expect(read).toBe(model.length);
        expect(Buffer.from(target.subarray(0, read)).equals(Buffer.from(model))).toBe(true);
      }
      await handle.close();
    }), { numRuns: 60 });
  });
});
