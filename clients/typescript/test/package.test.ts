/** The package as a user gets it: `npm pack` (the compiled ESM and CJS trees with the generated
 *  code, nothing read from the repository at run time) installed into a consumer project in a
 *  temporary directory, used by an ESM and a CommonJS script against a running server (TCP with
 *  the token found in the default token file, and the Unix socket), with a shared-memory ring
 *  from each (koffi, an optional dependency, installed with the package and loaded by openRing). */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { startServer, TestServer } from './harness.js';

const run = promisify(execFile);
const pkgDir = resolve(__dirname, '../..');
const version = readFileSync(resolve(pkgDir, '../VERSION'), 'ascii').trim();

const ESM = `
import { connect, formatBdf, PcieEmuClient, Session } from 'pcieemu';
const [tcp, unix] = process.argv.slice(2);
const out = { resolved: import.meta.resolve('pcieemu') };
const c = await connect(tcp);                       // no token given: the default token file
out.hasToken = c.hasToken;
await c.resetPlatform();
out.functions = (await c.listFunctions()).map((f) => formatBdf(f.rid));
out.id = (await c.readConfig32(0x100, 0)).toString(16);
out.vfs = (await c.enableSriov(0x100, 2)).map(formatBdf);
const ac = new AbortController();
ac.abort(new Error('stopped by the consumer'));
out.aborted = await c.getPlatform({ signal: ac.signal }).then(() => 'not aborted', (e) => e.message);
const cap = c.captureFrames(0);
await cap.opened;
cap.cancel();
out.inject = (await c.injectFrame(0, Buffer.alloc(60))).accepted;
out.translated = (await c.translateAddress(0x100, 0x1000n)).translated_address;
await c.disableSriov(0x100);
c.close();
const u = await PcieEmuClient.connect(unix);
const s = u.session();
s.configWrite(0x100, 0x3c, 1, 0x77);                // posted; the read below sees it
out.session = Number((await s.configRead(0x100, 0x3c, 1)).value);
out.batch = Session.DEFAULT_BATCH;
await s.close();
const ring = await u.openRing();                    // koffi, the optional dependency, loads from the ESM build
ring.configWrite(0x100, 0x3c, 1, 0x66);
out.ring = Number((await ring.configRead(0x100, 0x3c, 1)).value);
ring.close();
u.close();
console.log(JSON.stringify(out));
`;

const CJS = `
const { PcieEmuClient, formatBdf } = require('pcieemu');
(async () => {
  const [tcp, unix] = process.argv.slice(2);
  const out = { resolved: require.resolve('pcieemu') };
  const u = await PcieEmuClient.connect(unix, { timeoutMs: 5000 });
  out.unixHasToken = u.hasToken;
  out.functions = (await u.listFunctions()).length;
  out.ext = (await u.extendedCapabilities(0x100)).map((x) => x.id);
  out.timedOut = await u.getPlatform({ timeoutMs: 0 }).then(() => 'answered', (e) => e.code);
  const ring = await u.openRing();                  // and from the CommonJS build
  out.ring = (await ring.configRead(0x100, 0, 4)).value.toString(16);
  ring.close();
  u.close();
  const t = await PcieEmuClient.connect(tcp);
  out.tcpDevice = formatBdf((await t.listFunctions())[2].rid);
  t.close();
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
`;

// Type-checked against the installed package's .d.ts (ESM through "import", CJS through "require"):
// exactly the three marked lines are errors.
const TYPED_MTS = `import { connect, type CallOptions, type PciFunction } from 'pcieemu';
const c = await connect('unix:///nonexistent', { waitMs: 0 });
const o: CallOptions = { signal: new AbortController().signal, timeoutMs: 5 };
const fns: PciFunction[] = await c.listFunctions(o);
const id: number = await c.readConfig32(fns[0].rid, 0, o);
const wrong: string = await c.readConfig32(0x100, 0); // error 1
const esm: bigint = (await c.readMmio(0n, 4)).status; // error 2 (the type comes from lib/esm)
export { id, wrong, esm };
`;
const TYPED_CTS = `import pcieemu = require('pcieemu');
async function main(): Promise<bigint> {
  const c = await pcieemu.PcieEmuClient.connect(undefined, { waitMs: 0 });
  const r = await c.readMmio(0n, 4);
  return r.status; // error 3 (the type comes from lib/cjs)
}
export = main;
`;

describe('packed tarball in a consumer project', { timeout: 600_000 }, () => {
  let tmp: string, srv: TestServer | undefined, project: string, runtime: string;

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'pcieemu-ts-consumer-'));
    runtime = join(tmp, 'run');
    mkdirSync(runtime, { mode: 0o700 });
    project = join(tmp, 'project');
    mkdirSync(project);
  });
  after(async () => {
    await srv?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  let tarball = '';
  test('npm pack carries the compiled ESM and CJS trees with the generated code, nothing else', async () => {
    // test.sh built lib/ (npm ci runs `prepare`); pack what was built.
    const { stdout } = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', tmp], { cwd: pkgDir });
    const [info] = JSON.parse(stdout) as { filename: string; version: string; files: { path: string }[] }[];
    assert.equal(info.version, version, 'package.json version must equal clients/VERSION');
    const files = info.files.map((f) => f.path);
    for (const tree of ['esm', 'cjs']) {
      for (const f of ['index.js', 'index.d.ts', 'client.js', 'package.json', 'gen/pcieemu/v1/session.js', 'gen/pcieemu/v1/ethernet.d.ts'])
        assert.ok(files.includes(`lib/${tree}/${f}`), `lib/${tree}/${f} missing from the tarball`);
    }
    assert.deepEqual(files.filter((f) => !f.startsWith('lib/')).sort(), ['API.md', 'README.md', 'package.json']);
    tarball = join(tmp, info.filename);
  });

  test('installs into a fresh project and works from ESM and CommonJS', async () => {
    assert.ok(tarball, 'no tarball');
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
    await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball], { cwd: project, timeout: 300_000 });
    writeFileSync(join(project, 'consumer.mjs'), ESM);
    writeFileSync(join(project, 'consumer.cjs'), CJS);
    srv = await startServer({ runtimeDir: runtime });
    const env: NodeJS.ProcessEnv = { ...process.env, XDG_RUNTIME_DIR: runtime };
    delete env.PCIEEMU_TOKEN;
    delete env.PCIEEMU_TARGET;
    delete env.NODE_PATH;

    const esm = JSON.parse((await run('node', ['consumer.mjs', srv.tcp, srv.unix], { cwd: project, env, timeout: 120_000 })).stdout);
    assert.ok(esm.resolved.startsWith(`file://${project}/node_modules/pcieemu/lib/esm/`), esm.resolved);
    assert.equal(esm.hasToken, true);
    assert.deepEqual(esm.functions, ['00:00.0', '00:01.0', '01:00.0', '01:00.1']);
    assert.equal(esm.id, '10c98086');
    assert.deepEqual(esm.vfs, ['01:10.0', '01:10.2']);
    assert.equal(esm.aborted, 'stopped by the consumer');
    assert.equal(esm.inject, false);           // the receiver is off after reset
    assert.equal(esm.translated, '4096');      // translation off after reset: passthrough
    assert.equal(esm.session, 0x77);
    assert.equal(esm.batch, 256);
    assert.equal(esm.ring, 0x66);

    const cjs = JSON.parse((await run('node', ['consumer.cjs', srv.tcp, srv.unix], { cwd: project, env, timeout: 120_000 })).stdout);
    assert.ok(cjs.resolved.startsWith(join(project, 'node_modules/pcieemu/lib/cjs/')), cjs.resolved);
    assert.equal(cjs.unixHasToken, false);
    assert.equal(cjs.functions, 4);
    assert.deepEqual(cjs.ext, [0x0001, 0x0003, 0x000e, 0x0010]);
    assert.equal(cjs.timedOut, 4);             // DEADLINE_EXCEEDED
    assert.equal(cjs.tcpDevice, '01:00.0');
    assert.equal(cjs.ring, '10c98086');
  });

  test('its type declarations serve ESM and CommonJS consumers', async () => {
    writeFileSync(join(project, 'typed.mts'), TYPED_MTS);
    writeFileSync(join(project, 'typed.cts'), TYPED_CTS);
    const tsc = join(pkgDir, 'node_modules/typescript/bin/tsc');
    const r = await run('node', [tsc, '--noEmit', '--strict', '--target', 'es2022', '--module', 'node16', '--moduleResolution', 'node16',
      '--skipLibCheck', '--typeRoots', join(pkgDir, 'node_modules/@types'), '--types', 'node', 'typed.mts', 'typed.cts'],
    { cwd: project, timeout: 120_000 }).then(() => ({ stdout: '' }), (e: { stdout: string }) => e);
    const errors = r.stdout.split('\n').filter((l) => / error TS/.test(l));
    assert.equal(errors.length, 3, r.stdout);
    assert.match(errors[0], /^typed\.cts\(5,3\): error TS2322: Type '[^']*lib\/cjs\/[^']*CompletionStatus' is not assignable to type 'bigint'/);
    assert.match(errors[1], /^typed\.mts\(6,7\): error TS2322: Type 'number' is not assignable to type 'string'/);
    assert.match(errors[2], /^typed\.mts\(7,7\): error TS2322: Type '[^']*lib\/esm\/[^']*CompletionStatus' is not assignable to type 'bigint'/);
  });
});
