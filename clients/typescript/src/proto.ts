/** Loads the pcieemu.v1 protos (copied from ../../proto at build time) and exposes the typed package. */
import * as protoLoader from '@grpc/proto-loader';
import * as grpc from '@grpc/grpc-js';
import { existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ProtoGrpcType as Platform } from './gen/platform';
import type { ProtoGrpcType as Config } from './gen/config';
import type { ProtoGrpcType as Mmio } from './gen/mmio';
import type { ProtoGrpcType as Memory } from './gen/memory';
import type { ProtoGrpcType as Session } from './gen/session';
import type { ProtoGrpcType as Interrupt } from './gen/interrupt';
import type { ProtoGrpcType as Ethernet } from './gen/ethernet';

export type PcieEmuProto = Platform & Config & Mmio & Memory & Session & Interrupt & Ethernet;

/** Options shared by the loader and the generated types: keep these in sync with scripts/gen.mjs. */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true, longs: String, enums: String, defaults: true, oneofs: true,
};

/** Where the .proto files are: $PCIEEMU_PROTO_DIR, the build copy, or the repository's proto/. */
export function protoRoot(): string {
  const candidates = [
    process.env.PCIEEMU_PROTO_DIR,
    resolve(__dirname, '../../generated/proto'),
    resolve(__dirname, '../../../../proto'),
  ].filter((p): p is string => !!p);
  for (const c of candidates) if (existsSync(join(c, 'pcieemu/v1/session.proto'))) return c;
  throw new Error(`pcieemu protos not found (looked in ${candidates.join(', ')}); run 'npm run build' or set PCIEEMU_PROTO_DIR`);
}

let cached: PcieEmuProto | undefined;

/** The loaded pcieemu.v1 package (loaded once). */
export function loadProto(): PcieEmuProto {
  if (cached) return cached;
  const root = protoRoot();
  const files = readdirSync(join(root, 'pcieemu/v1')).filter((f) => f.endsWith('.proto')).map((f) => `pcieemu/v1/${f}`);
  const def = protoLoader.loadSync(files, { ...LOADER_OPTIONS, includeDirs: [root] });
  cached = grpc.loadPackageDefinition(def) as unknown as PcieEmuProto;
  return cached;
}
