/** Starts a real pcie-emu server for the tests (or uses $PCIEEMU_TEST_TARGET) and waits until its
 *  gRPC health check reports SERVING. */
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { grpcTarget } from '../src/client.js';

/** A running server; TCP needs its token, which it wrote to `tokenFile` (`token` holds it). */
export interface TestServer { tcp: string; unix: string; tokenFile?: string; token?: string; stop(): Promise<void> }

export const repoRoot = resolve(__dirname, '../../../..');

export function serverDll(): string {
  if (process.env.PCIEEMU_SERVER_DLL) return process.env.PCIEEMU_SERVER_DLL;
  const dir = join(repoRoot, 'src/PcieEmu.Server/bin/Release/net10.0');
  for (const name of ['pcie-emu.dll', 'PcieEmu.Server.dll']) if (existsSync(join(dir, name))) return join(dir, name);
  throw new Error(`server not built: run 'dotnet build src/PcieEmu.Server -c Release' (looked in ${dir})`);
}

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

/** Resolves when Health/Check("") answers SERVING; rejects after `timeoutMs`. */
export async function waitHealthy(target: string, timeoutMs = 60_000, tokenFile?: string): Promise<void> {
  const Health = grpc.makeGenericClientConstructor(healthService, 'Health');
  const client = new Health(grpcTarget(target), grpc.credentials.createInsecure());
  const until = Date.now() + timeoutMs;
  try {
    for (;;) {
      const md = new grpc.Metadata();
      if (tokenFile && existsSync(tokenFile)) md.set('authorization', `Bearer ${readFileSync(tokenFile, 'ascii').trim()}`);
      const status = await new Promise<string | undefined>((res) =>
        // eslint-disable-next-line @typescript-eslint/no-explicit-any
        (client as any).check({ service: '' }, md, { deadline: Date.now() + 2000 }, (e: Error | null, r?: { status: string }) => res(e ? undefined : r?.status)));
      if (status === 'SERVING') return;
      if (Date.now() > until) throw new Error(`server at ${target} not SERVING after ${timeoutMs} ms (last: ${status ?? 'no answer'})`);
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    client.close();
  }
}

/** Starts a server on a free TCP port and a temporary Unix socket. With `runtimeDir` it runs with
 *  XDG_RUNTIME_DIR=runtimeDir and writes its token to the default place (runtimeDir/pcie-emu/token),
 *  where a client given the same XDG_RUNTIME_DIR finds it without being told. `extraArgs` go to
 *  `serve` (e.g. ['--machine', FILE]); with them a server is always started here. */
export async function startServer(opts: { runtimeDir?: string; extraArgs?: string[] } = {}): Promise<TestServer> {
  if (process.env.PCIEEMU_TEST_TARGET && !opts.runtimeDir && !opts.extraArgs) {
    const t = process.env.PCIEEMU_TEST_TARGET;
    const tokenFile = process.env.PCIEEMU_TEST_TOKEN_FILE || undefined;
    await waitHealthy(t, 60_000, tokenFile);
    const token = tokenFile ? readFileSync(tokenFile, 'ascii').trim() : undefined;
    return { tcp: t, unix: process.env.PCIEEMU_TEST_UNIX ?? '', tokenFile, token, stop: async () => {} };
  }
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'pcieemu-ts-'));
  const sock = join(dir, 'pcie-emu.sock');
  const tcp = `tcp://127.0.0.1:${port}`, unix = `unix://${sock}`;
  const tokenFile = opts.runtimeDir ? join(opts.runtimeDir, 'pcie-emu', 'token') : join(dir, 'token');
  const child: ChildProcess = spawn('dotnet', [serverDll(), 'serve', '--listen', tcp, '--listen', unix,
    ...(opts.runtimeDir ? [] : ['--token-file', tokenFile]), '--ram-file', join(dir, 'ram.bin'), ...(opts.extraArgs ?? [])],
  { stdio: ['ignore', 'pipe', 'pipe'], env: opts.runtimeDir ? { ...process.env, XDG_RUNTIME_DIR: opts.runtimeDir } : process.env });
  let log = '';
  child.stdout!.on('data', (d) => { log += d; });
  child.stderr!.on('data', (d) => { log += d; });
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  try {
    await Promise.race([waitHealthy(tcp, 60_000, tokenFile), exited.then(() => { throw new Error(`server exited early:\n${log}`); })]);
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
  return {
    tcp, unix, tokenFile, token: readFileSync(tokenFile, 'ascii').trim(),
    stop: async () => {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Rejects if `p` has not settled within `ms` (every await in the tests has a timeout). */
export function within<T>(p: Promise<T>, ms = 10_000, what = 'operation'): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, rej) => { timer = setTimeout(() => rej(new Error(`${what} timed out after ${ms} ms`)), ms); }),
  ]);
}
