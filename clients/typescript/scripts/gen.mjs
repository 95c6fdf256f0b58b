// Build step: generates TypeScript types from ../../proto (the single source of truth) into
// src/gen/ and copies the .proto files next to the package (generated/proto/) for the runtime
// loader. Both outputs are gitignored.
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const protoRoot = resolve(root, '../../proto');
const protoDir = join(protoRoot, 'pcieemu/v1');
const files = readdirSync(protoDir).filter((f) => f.endsWith('.proto')).map((f) => `pcieemu/v1/${f}`);

rmSync(join(root, 'src/gen'), { recursive: true, force: true });
rmSync(join(root, 'generated'), { recursive: true, force: true });
mkdirSync(join(root, 'generated/proto'), { recursive: true });
cpSync(join(protoRoot, 'pcieemu'), join(root, 'generated/proto/pcieemu'), { recursive: true });

const bin = join(root, 'node_modules/.bin/proto-loader-gen-types');
execFileSync(bin, [
  '--longs=String', '--enums=String', '--defaults', '--oneofs', '--keepCase',
  '--grpcLib=@grpc/grpc-js', '-I', protoRoot, '--outDir', join(root, 'src/gen'), ...files,
], { stdio: 'inherit' });
console.log(`generated types for ${files.length} proto files`);
