import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/** This package's version, from its package.json (found from src/cli/ or dist/src/cli/). */
export function packageVersion(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 6; depth++) {
    const file = path.join(dir, 'package.json');
    if (existsSync(file)) {
      const manifest = JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown; version?: unknown };
      // Skip any other package.json on the way up (there is none today, but a build layout may add one).
      if (manifest.name === 'raftmq' && typeof manifest.version === 'string') return manifest.version;
    }
    dir = path.dirname(dir);
  }
  throw new Error(`raftmq's package.json not found above ${fileURLToPath(import.meta.url)}`);
}
