/** Deadlines and AbortSignal on calls to a server that never answers (a TCP listener that
 *  accepts and stays silent): every unary call ends by its deadline or when aborted. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, Server, Socket } from 'node:net';
import { DEFAULT_TIMEOUT_MS, PcieEmuClient } from '../src/index.js';
import { within } from './harness.js';

describe('deadlines and cancellation', () => {
  let silent: Server, target = '';
  const sockets: Socket[] = [];
  before(async () => {
    silent = createServer((s) => { sockets.push(s); s.on('error', () => {}); });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    target = `tcp://127.0.0.1:${(silent.address() as { port: number }).port}`;
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => silent.close(r));
  });

  test('the default deadline is 30 s and a client-wide one applies to every unary call', async () => {
    const d = await PcieEmuClient.connect(target, { token: 't', waitMs: 0 });
    assert.equal(d.timeoutMs, DEFAULT_TIMEOUT_MS);
    assert.equal(DEFAULT_TIMEOUT_MS, 30_000);
    d.close();
    const c = await PcieEmuClient.connect(target, { token: 't', waitMs: 0, timeoutMs: 300 });
    const t0 = Date.now();
    await assert.rejects(within(c.listFunctions(), 10_000), (e: { code?: number }) => e.code === 4); // DEADLINE_EXCEEDED
    assert.ok(Date.now() - t0 < 5_000);
    c.close();
  });

  test('a per-call deadline overrides the client one', async () => {
    const c = await PcieEmuClient.connect(target, { token: 't', waitMs: 0 });
    await assert.rejects(within(c.readConfig32(0x100, 0, { timeoutMs: 200 }), 10_000), (e: { code?: number }) => e.code === 4);
    c.close();
  });

  test('aborting a signal cancels a pending call with the signal\'s reason, and an aborted signal fails at once', async () => {
    const c = await PcieEmuClient.connect(target, { token: 't', waitMs: 0 });
    const ac = new AbortController();
    const p = c.getPlatform({ signal: ac.signal });
    setTimeout(() => ac.abort(new Error('user gave up')), 100);
    await assert.rejects(within(p, 10_000), /user gave up/);
    await assert.rejects(within(c.enableSriov(0x100, 2, { signal: ac.signal }), 10_000), /user gave up/);
    c.close();
  });

  test('streams take a signal: aborting ends the iteration', async () => {
    const c = await PcieEmuClient.connect(target, { token: 't', waitMs: 0 });
    const ac = new AbortController();
    const sub = c.subscribeInterrupts([], { signal: ac.signal });
    const drained = (async () => { let n = 0; for await (const _ of sub) n++; return n; })();
    setTimeout(() => ac.abort(), 100);
    assert.equal(await within(drained, 10_000), 0);
    c.close();
  });

  test('connect() to nothing fails clearly after waitMs', async () => {
    await assert.rejects(within(PcieEmuClient.connect('tcp://127.0.0.1:1', { waitMs: 300 }), 10_000), /no PcieEmu server answered/);
  });
});
