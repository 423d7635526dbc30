import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Absolute path of a file in the package's `proto/` folder, from src/ or dist/src/. */
export function protoPath(file: string): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 6; depth++) {
    const candidate = path.join(dir, 'proto', file);
    if (existsSync(candidate)) return candidate;
    dir = path.dirname(dir);
  }
  throw new Error(`proto file ${file} not found above ${fileURLToPath(import.meta.url)}`);
}

/** Options shared by every proto-loader call: 64-bit numbers as JS numbers (checked at the edges). */
export const protoLoaderOptions = { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true } as const;
