// Build step: generates the pcieemu.v1 messages and grpc-js service clients as TypeScript from
// ../../proto (the single source of truth) with ts-proto, into src/gen/ (gitignored). The
// compiled package carries them: nothing reads a .proto at run time.
// Needs protoc (Debian: protobuf-compiler) and the ts-proto devDependency.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const protoRoot = process.env.PCIEEMU_PROTO_DIR || resolve(root, '../../proto');
const protoDir = join(protoRoot, 'pcieemu/v1');
if (!existsSync(protoDir)) {
  console.error(`gen: ${protoDir} not found (build from the repository, or set PCIEEMU_PROTO_DIR)`);
  process.exit(1);
}
const files = readdirSync(protoDir).filter((f) => f.endsWith('.proto')).sort().map((f) => `pcieemu/v1/${f}`);
const out = join(root, 'src/gen');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

// Field names as in the .proto (snake_case), 64-bit integers as decimal strings, enums as their
// names, bytes as Buffer, grpc-js clients; imports end in .js so the ESM build resolves them.
const options = [
  'outputServices=grpc-js', 'env=node', 'esModuleInterop=true', 'snakeToCamel=false', 'forceLong=string',
  'stringEnums=true', 'importSuffix=.js', 'useOptionals=none', 'outputJsonMethods=false',
  'outputPartialMethods=true', 'exportCommonSymbols=false',
].join(',');
const plugin = join(root, 'node_modules/.bin/protoc-gen-ts_proto');
try {
  execFileSync('protoc', [`--plugin=protoc-gen-ts_proto=${plugin}`, `--ts_proto_out=${out}`, `--ts_proto_opt=${options}`,
    `-I${protoRoot}`, ...files], { stdio: 'inherit' });
} catch (e) {
  console.error(`gen: protoc failed (${e.code === 'ENOENT' ? 'protoc not found: apt-get install protobuf-compiler' : e.message})`);
  process.exit(1);
}
console.log(`generated ${files.length} proto files into src/gen`);
