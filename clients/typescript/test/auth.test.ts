/** TCP authentication: the server's per-start token (`authorization: Bearer`), found by the client
 *  in opts.token, opts.tokenFile, $PCIEEMU_TOKEN or the default token file; the Unix socket needs none. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultTokenPath, PcieEmuClient, resolveToken } from '../src/index.js';
import { startServer, TestServer, within } from './harness.js';

const PF0 = 0x0100;
const isUnauthenticated = (e: grpc.ServiceError) => e.code === grpc.status.UNAUTHENTICATED;

/** Runs `fn` with no $PCIEEMU_TOKEN and a runtime directory without a token file (restored after). */
async function withoutToken<T>(fn: (runtime: string) => Promise<T>): Promise<T> {
  const saved = { xdg: process.env.XDG_RUNTIME_DIR, token: process.env.PCIEEMU_TOKEN };
  const dir = mkdtempSync(join(tmpdir(), 'pcieemu-auth-'));
  process.env.XDG_RUNTIME_DIR = dir;
  delete process.env.PCIEEMU_TOKEN;
  try {
    return await fn(dir);
  } finally {
    if (saved.xdg === undefined) delete process.env.XDG_RUNTIME_DIR; else process.env.XDG_RUNTIME_DIR = saved.xdg;
    if (saved.token === undefined) delete process.env.PCIEEMU_TOKEN; else process.env.PCIEEMU_TOKEN = saved.token;
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('TCP authentication', () => {
  let server: TestServer;

  before(async () => { server = await within(startServer(), 120_000, 'server start'); });
  after(async () => { await server?.stop(); });

  test('the token file is 0600 and holds 64 hex digits', (t) => {
    if (!server.tokenFile) return t.skip('token file of the test server unknown');
    assert.equal(statSync(server.tokenFile).mode & 0o777, 0o600);
    assert.match(server.token!, /^[0-9a-f]{64}$/);
  });

  test('TCP without a token is UNAUTHENTICATED and a write has no effect', async () => {
    await withoutToken(async () => {
      assert.equal(resolveToken(), undefined);
      const bare = await within(PcieEmuClient.connect(server.tcp), 20_000, 'connect');
      const good = await within(PcieEmuClient.connect(server.tcp, { tokenFile: server.tokenFile }), 20_000, 'connect');
      try {
        assert.equal(bare.hasToken, false);
        await assert.rejects(bare.readConfig32(PF0, 0), isUnauthenticated);
        const before = await within(good.readConfig8(PF0, 0x3c));
        await assert.rejects(bare.writeConfig8(PF0, 0x3c, before ^ 0xff), isUnauthenticated);
        assert.equal(await within(good.readConfig8(PF0, 0x3c)), before);
        const wrong = await within(PcieEmuClient.connect(server.tcp, { token: '0'.repeat(64) }), 20_000, 'connect');
        try { await assert.rejects(wrong.listFunctions(), isUnauthenticated); } finally { wrong.close(); }
      } finally { bare.close(); good.close(); }
    });
  });

  test('TCP with the token (given, or from a file) works, streams included', async () => {
    await withoutToken(async () => {
      for (const opts of [{ token: server.token }, { tokenFile: server.tokenFile }]) {
        const c = await within(PcieEmuClient.connect(server.tcp, opts), 20_000, 'connect');
        try {
          assert.equal(c.hasToken, true);
          assert.equal(await within(c.readConfig32(PF0, 0)), 0x10c98086);
          const s = c.session();
          try {
            assert.equal((await within(s.configRead(PF0, 0, 4))).value, 0x10c98086n);
          } finally { await within(s.close()); }
        } finally { c.close(); }
      }
      assert.throws(() => resolveToken(undefined, '/nonexistent/token'));
    });
  });

  test('the token comes from $PCIEEMU_TOKEN, else the default token file', async () => {
    await withoutToken(async (runtime) => {
      process.env.PCIEEMU_TOKEN = server.token;
      let c = await within(PcieEmuClient.connect(server.tcp), 20_000, 'connect');
      try { assert.equal(await within(c.readConfig32(PF0, 0)), 0x10c98086); } finally { c.close(); }
      delete process.env.PCIEEMU_TOKEN;
      mkdirSync(join(runtime, 'pcie-emu'), { mode: 0o700 });
      writeFileSync(join(runtime, 'pcie-emu', 'token'), `${server.token}\n`, { mode: 0o600 });
      assert.equal(defaultTokenPath(), join(runtime, 'pcie-emu', 'token'));
      c = await within(PcieEmuClient.connect(server.tcp), 20_000, 'connect');
      try { assert.equal(await within(c.readConfig32(PF0, 0)), 0x10c98086); } finally { c.close(); }
    });
  });

  test('the Unix socket needs no token', async (t) => {
    if (!server.unix) return t.skip('no Unix socket target');
    await withoutToken(async () => {
      const u = await within(PcieEmuClient.connect(server.unix), 20_000, 'unix connect');
      try {
        assert.equal(u.hasToken, false);
        assert.equal(await within(u.readConfig32(PF0, 0)), 0x10c98086);
      } finally { u.close(); }
    });
  });
});
