/**
 * Tidy checks over the source text (TigerBeetle's tidy.zig idea): the pure Raft core never
 * mentions time, timers, randomness or Node I/O; no FIXME is left anywhere in src/; and no
 * module below src/server reaches up the layer stack.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return sources(full);
    return full.endsWith('.ts') && !full.endsWith('.test.ts') ? [full] : [];
  });
}

const stripComments = (text: string): string => text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');

describe('tidy', () => {
  it('keeps time, timers, randomness and I/O out of src/raft/core', () => {
    const banned = [/\bDate\b/, /\bsetTimeout\b/, /\bsetInterval\b/, /\bsetImmediate\b/, /Math\.random/, /process\.hrtime/, /performance\.now/, /from 'node:/, /\bPromise\b/, /\bawait\b/];
    const offenders = sources('src/raft/core').flatMap((file) => {
      const text = stripComments(readFileSync(file, 'utf8'));
      return banned.filter((pattern) => pattern.test(text)).map((pattern) => `${file}: ${pattern}`);
    });
    expect(offenders).toEqual([]);
  });

  it('leaves no FIXME in src/', () => {
    const offenders = sources('src').filter((file) => /FIXME/.test(readFileSync(file, 'utf8')));
    expect(offenders).toEqual([]);
  });

  it('never imports src/testing from shipped code', () => {
    const offenders = sources('src').filter((file) => !file.startsWith(path.join('src', 'testing')) && /from '[./]*\/testing\//.test(readFileSync(file, 'utf8')));
    expect(offenders).toEqual([]);
  });
});
