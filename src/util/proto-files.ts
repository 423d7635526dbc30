import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as protoLoader from '@grpc/proto-loader';

/** The package's `proto/` folder, found from src/ or dist/src/. */
function protoDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 6; depth++) {
    const candidate = path.join(dir, 'proto');
    if (existsSync(path.join(candidate, 'raft.proto'))) return candidate;
    dir = path.dirname(dir);
  }
  throw new Error(`proto/ not found above ${fileURLToPath(import.meta.url)}`);
}

/**
 * Loads one of our .proto files (imports resolve inside proto/). 64-bit numbers arrive as JS
 * numbers; the adapters check them with Number.isSafeInteger.
 */
export function loadProtoFile(file: string): protoLoader.PackageDefinition {
  const dir = protoDir();
  return protoLoader.loadSync(path.join(dir, file), { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true, includeDirs: [dir] });
}
