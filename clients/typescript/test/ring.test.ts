/** The shared-memory ring (client.openRing; docs/protocol.md, "Shared-memory ring") against a real server. */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { PcieEmuClient, rid, Ring, RingStatus } from '../src/index.js';
import { startServer, TestServer, within } from './harness.js';

const PF0 = 0x0100;
const NOBODY = rid(9, 0, 0);

/** Resolves when `cond` holds; rejects after `ms`. */
async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('shared-memory ring', () => {
  let server: TestServer;
  let c: PcieEmuClient;
  let msix: bigint; // PF0 BAR3: the MSI-X table (entry 0's address dwords are read/write)

  before(async () => {
    server = await within(startServer(), 120_000, 'server start');
    c = await within(PcieEmuClient.connect(server.unix || server.tcp, { tokenFile: server.tokenFile }), 20_000, 'connect');
  });
  after(async () => {
    c?.close();
    await server?.stop();
  });
  beforeEach(async () => {
    await within(c.resetPlatform(), 10_000, 'reset');
    const pf0 = (await within(c.listFunctions())).find((f) => f.rid === PF0)!;
    msix = BigInt(pf0.bars.find((b) => b.index === 3)!.address);
  });

  async function withRing<T>(opts: Parameters<PcieEmuClient['openRing']>[0], body: (r: Ring) => Promise<T>): Promise<T> {
    const r = await within(c.openRing(opts), 10_000, 'openRing');
    try {
      return await body(r);
    } finally {
      r.close();
    }
  }

  test('posted writes are seen by the reads after them; config, MMIO and acked writes', async () => {
    await withRing({ submissionEntries: 8, completionEntries: 8 }, async (r) => {
      const id = await within(r.configRead(PF0, 0, 4));
      assert.equal(id.ok, true);
      assert.equal(id.status, RingStatus.SUCCESSFUL);
      assert.equal(id.kind, 1);
      assert.equal(id.value, 0x10c98086n);
      r.configWrite(PF0, 0x3c, 1, 0x5a);                      // posted: no completion
      assert.equal((await within(r.configRead(PF0, 0x3c, 1))).value, 0x5an);
      // Issued together without awaiting: still in order, each read sees the write before it.
      r.configWrite(PF0, 0x3c, 1, 0x11);
      const a = r.configRead(PF0, 0x3c, 1);
      r.configWrite(PF0, 0x3c, 1, 0x22);
      const b = r.configRead(PF0, 0x3c, 1);
      assert.deepEqual((await within(Promise.all([a, b]))).map((x) => x.value), [0x11n, 0x22n]);
      const ack = await within(r.configWriteAck(PF0, 0x3c, 1, 0x33));
      assert.equal(ack.ok, true);
      assert.equal(ack.kind, 2);
      // MMIO: the MSI-X table entry 0 message address (PF0 BAR3 + 0), 4 and 8 bytes wide.
      r.mmioWrite(msix, 4, 0xfee01000n);
      assert.equal((await within(r.mmioRead(msix, 4))).value, 0xfee01000n);
      assert.equal((await within(r.mmioWriteAck(msix + 4n, 4, 0x12n))).ok, true);
      assert.equal((await within(r.mmioRead(msix, 8))).value, 0x12_fee01000n);
      assert.deepEqual(r.postedErrors, []);
    });
    // The machine kept what the ring did: the unary calls see it.
    assert.equal(await within(c.readConfig8(PF0, 0x3c)), 0x33);
    assert.equal((await within(c.readMmio(msix, 4))).value, 0xfee01000n);
  });

  test('an idle ring leaves nothing polling: no timer or immediate once nothing is awaited', async () => {
    const timers = () => process.getActiveResourcesInfo().filter((k) => k === 'Timeout' || k === 'Immediate').length;
    await withRing({ clientSpinMicroseconds: 0 }, async (r) => {   // no spin: every read goes through the event loop
      const before = timers();
      for (let k = 0; k < 20; k++) assert.equal((await within(r.configRead(PF0, 0, 2))).value, 0x8086n);
      r.configWrite(PF0, 0x3c, 1, 1);                          // posted: nothing to wait for
      await new Promise((res) => setImmediate(res));
      assert.equal(timers(), before, process.getActiveResourcesInfo().join(' '));
    });
  });

  test('statuses: UR from a missing function, a rejected entry names its field, a failed posted write is collected', async () => {
    await withRing({}, async (r) => {
      const ur = await within(r.configRead(NOBODY, 0, 4));
      assert.equal(ur.status, RingStatus.UNSUPPORTED_REQUEST);
      assert.equal(ur.ok, false);
      assert.equal(ur.value, 0xffffffffn);                    // all ones, as hardware
      assert.equal((await within(r.configRead(NOBODY, 0, 2))).value, 0xffffn);
      assert.equal((await within(r.configWriteAck(NOBODY, 0x3c, 1, 1))).status, RingStatus.UNSUPPORTED_REQUEST);

      const offset = await within(r.configRead(PF0, 0x1000, 4));  // beyond config space: rejected, nothing ran
      assert.deepEqual([offset.status, offset.field, offset.fieldName], [RingStatus.INVALID_ARGUMENT, 4, 'offset']);
      const width = await within(r.configRead(PF0, 0, 3));
      assert.deepEqual([width.status, width.fieldName], [RingStatus.INVALID_ARGUMENT, 'width']);
      const value = await within(r.configWriteAck(PF0, 0x3c, 4, 0x1_0000_0000));
      assert.deepEqual([value.status, value.fieldName], [RingStatus.INVALID_ARGUMENT, 'value']);
      const outside = await within(r.memoryRead(0xffff_ffff_0000n, 16));
      assert.deepEqual([outside.status, outside.fieldName, outside.length], [RingStatus.OUT_OF_RANGE, 'address', 0]);
      assert.equal(outside.data.length, 0);
      // The ring goes on after a rejected entry.
      assert.equal((await within(r.configRead(PF0, 0, 2))).value, 0x8086n);

      // A posted write nobody claims completes UR anyway; it is collected before the next read.
      const seen: number[] = [];
      r.onPostedError((e) => seen.push(e.status));
      r.mmioWrite(0xffff_f000_0000n, 4, 1n);
      r.configWrite(PF0, 0x1000, 4, 0);                       // rejected though posted: reported too
      assert.equal((await within(r.configRead(PF0, 0, 2))).value, 0x8086n);
      assert.deepEqual(r.postedErrors.map((e) => [e.kind, e.status, e.fieldName]),
        [[4, RingStatus.UNSUPPORTED_REQUEST, ''], [2, RingStatus.INVALID_ARGUMENT, 'offset']]);
      assert.deepEqual(seen, [RingStatus.UNSUPPORTED_REQUEST, RingStatus.INVALID_ARGUMENT]);

      // What the entry format cannot carry is refused here, naming the argument.
      assert.throws(() => r.configWrite(0x1_0000, 0, 4, 0), /^RangeError: rid: /);
      assert.throws(() => r.mmioWrite(1n << 64n, 4, 0n), /^RangeError: address: /);
      assert.throws(() => r.configWrite(PF0, 0x3c, 1, 1.5), /^RangeError: value: /);
      await assert.rejects(within(r.memoryRead(0n, 65536 + 1)), /^RangeError: length: /);
    });
  });

  test('more entries than slots: the rings wrap, posted and pipelined', async () => {
    await withRing({ submissionEntries: 4, completionEntries: 2 }, async (r) => {
      for (let k = 0; k < 50; k++) r.configWrite(PF0, 0x3c, 1, k);
      assert.equal((await within(r.configRead(PF0, 0x3c, 1))).value, 49n);
      // 40 reads in flight with 2 completion slots: the client frees them while it submits.
      const reads: Promise<bigint>[] = [];
      for (let k = 0; k < 40; k++) {
        r.configWrite(PF0, 0x3c, 1, 100 + k);
        reads.push(r.configRead(PF0, 0x3c, 1).then((x) => x.value));
      }
      assert.deepEqual(await within(Promise.all(reads)), Array.from({ length: 40 }, (_, k) => BigInt(100 + k)));
      for (let k = 0; k < 300; k++) assert.equal((await within(r.configRead(PF0, 0, 2))).value, 0x8086n);
      assert.deepEqual(r.postedErrors, []);
    });
  });

  test('RAM through the data area, reused as it wraps', async () => {
    await withRing({ dataSize: 1024, submissionEntries: 8 }, async (r) => {
      const chunk = (k: number) => Buffer.alloc(300, k + 1);
      for (let k = 0; k < 10; k++) r.memoryWrite(0x10000n + BigInt(k) * 0x1000n, chunk(k)); // 3 fit in the area at once
      const reads = Array.from({ length: 10 }, (_, k) => r.memoryRead(0x10000n + BigInt(k) * 0x1000n, 300));
      const got = await within(Promise.all(reads));
      got.forEach((x, k) => {
        assert.equal(x.ok, true);
        assert.equal(x.length, 300);
        assert.deepEqual(x.data, chunk(k), `chunk ${k}`);
      });
      assert.equal((await within(r.memoryWriteAck(0x20000n, Buffer.from('ring!')))).ok, true);
      assert.deepEqual(await within(c.readMemory(0x20000n, 5)), Buffer.from('ring!'));
      await within(c.writeMemory(0x30000n, Buffer.from([1, 2, 3, 4])));
      assert.deepEqual((await within(r.memoryRead(0x30000n, 4))).data, Buffer.from([1, 2, 3, 4]));
      assert.equal((await within(r.memoryRead(0x30000n, 0))).length, 0);
      assert.deepEqual(r.postedErrors, []);
    });
    assert.deepEqual(await within(c.readMemory(0x19000n, 300)), Buffer.alloc(300, 10));
  });

  test('two rings at once; close deletes the file, is idempotent, and ends what waits', async () => {
    const r1 = await within(c.openRing(), 10_000, 'openRing 1');
    const r2 = await within(c.openRing({ submissionEntries: 2, completionEntries: 2, dataSize: 64 }), 10_000, 'openRing 2');
    try {
      assert.notEqual(r1.layout.path, r2.layout.path);
      assert.ok(existsSync(r1.layout.path) && existsSync(r2.layout.path));
      assert.equal(r2.layout.submission_entries, 2);
      assert.equal(r2.layout.data_size, 64);
      r1.configWrite(PF0, 0x3c, 1, 0x44);
      assert.equal((await within(r1.configRead(PF0, 0x3c, 1))).value, 0x44n);
      assert.equal((await within(r2.configRead(PF0, 0x3c, 1))).value, 0x44n); // one machine
      r2.configWrite(PF0, 0x3c, 1, 0x55);
      const [x, y] = await within(Promise.all([r1.configRead(PF0, 0, 4), r2.configRead(PF0, 0x3c, 1)]));
      assert.deepEqual([x.value, y.value], [0x10c98086n, 0x55n]);

      r1.close();
      r1.close();
      assert.equal(r1.closed, true);
      assert.throws(() => r1.configWrite(PF0, 0x3c, 1, 0), /ring closed/);
      await assert.rejects(within(r1.configRead(PF0, 0, 4)), /ring closed/);
      await within(until(() => !existsSync(r1.layout.path), 5000, 'ring file 1 deleted'));
      assert.equal((await within(r2.configRead(PF0, 0x3c, 1))).value, 0x55n); // the other goes on
    } finally {
      r1.close();
      r2.close();
    }
    await within(until(() => !existsSync(r2.layout.path), 5000, 'ring file 2 deleted'));
  });

  test('the signal closes the ring; bad sizes are refused naming the field', async () => {
    const ac = new AbortController();
    const r = await within(c.openRing({ signal: ac.signal }), 10_000, 'openRing');
    assert.equal((await within(r.configRead(PF0, 0, 2))).value, 0x8086n);
    ac.abort(new Error('done'));
    assert.equal(r.closed, true);
    await within(until(() => !existsSync(r.layout.path), 5000, 'ring file deleted'));

    await assert.rejects(within(c.openRing({ submissionEntries: 3 })),
      (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && /submission_entries/.test(e.details));
    await assert.rejects(within(c.openRing({ dataSize: 100 })),
      (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && /data_size/.test(e.details));
  });

  test('without koffi the rest of the client works and openRing says why it cannot', async () => {
    // A child process where require('koffi') fails, as where the optional dependency did not install.
    const script = `
      const Module = require('node:module');
      const load = Module._load;
      Module._load = function (request, ...rest) {
        if (request === 'koffi') throw new Error("Cannot find module 'koffi'");
        return load.call(this, request, ...rest);
      };
      const { PcieEmuClient } = require(${JSON.stringify(join(__dirname, '../src/index.js'))});
      (async () => {
        const c = await PcieEmuClient.connect(process.argv[1]);
        const id = await c.readConfig32(0x100, 0);
        const why = await c.openRing().then(() => 'opened', (e) => e.message);
        c.close();
        console.log(JSON.stringify({ id, why }));
      })().catch((e) => { console.error(e); process.exit(1); });`;
    const { stdout } = await within(promisify(execFile)('node', ['-e', script, server.unix || server.tcp], { timeout: 60_000, env: { ...process.env, PCIEEMU_TOKEN: server.token ?? '' } }), 70_000, 'child');
    const out = JSON.parse(stdout);
    assert.equal(out.id, 0x10c98086);
    assert.match(out.why, /optional dependency koffi \(npm install koffi@3\.3\.4\), which did not load: Cannot find module 'koffi'/);
  });
});

describe('shared-memory ring: the server goes away', () => {
  test('a ring whose server stops ends: what waits rejects, nothing faults', async () => {
    const server = await within(startServer({ extraArgs: [] }), 120_000, 'server start');
    const c = await within(PcieEmuClient.connect(server.unix || server.tcp, { tokenFile: server.tokenFile }), 20_000, 'connect');
    try {
      const r = await within(c.openRing(), 10_000, 'openRing');
      assert.equal((await within(r.configRead(PF0, 0, 2))).value, 0x8086n);
      await within(server.stop(), 20_000, 'server stop');
      await within(until(() => r.closed, 10_000, 'ring closed'));
      await assert.rejects(within(r.configRead(PF0, 0, 2)), /closed the ring|OpenRing call ended/);
      assert.throws(() => r.configWrite(PF0, 0x3c, 1, 0), /closed the ring|OpenRing call ended/);
      r.close();
    } finally {
      c.close();
      await server.stop();
    }
  });
});
