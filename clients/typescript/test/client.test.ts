import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { CompletionStatus, defaultTarget, formatBdf, parseBdf, PcieEmuClient, Regs, rid, ariRid, ViolationsError } from '../src/index.js';
import { startServer, TestServer, within } from './harness.js';

const OK = CompletionStatus.COMPLETION_STATUS_SUCCESSFUL;
const UR = CompletionStatus.COMPLETION_STATUS_UNSUPPORTED_REQUEST;
const PF0 = 0x0100, PORT = 0x0008;

describe('bdf', () => {
  test('format and parse round-trip', () => {
    assert.equal(formatBdf(0x0100), '01:00.0');
    assert.equal(formatBdf(rid(2, 0x10, 0)), '02:10.0');
    assert.equal(parseBdf('02:10.0'), 0x0280);
    assert.equal(parseBdf('0000:01:00.1'), 0x0101);
    assert.equal(ariRid(1, 0x80), 0x0180);
    assert.throws(() => parseBdf('01:20.0'), /device/);
    assert.throws(() => parseBdf('nonsense'), /not a BDF/);
  });
});

describe('against a real server', () => {
  let server: TestServer;
  let c: PcieEmuClient;

  before(async () => {
    server = await within(startServer(), 120_000, 'server start');
    c = await within(PcieEmuClient.connect(server.tcp, { tokenFile: server.tokenFile }), 20_000, 'connect');
  });
  after(async () => {
    c?.close();
    await server?.stop();
  });
  beforeEach(async () => { await within(c.resetPlatform(), 10_000, 'reset'); });

  test('enumerates the default machine', async () => {
    const fns = await within(c.listFunctions());
    const byBdf = new Map(fns.map((f) => [f.bdf, f]));
    for (const b of ['00:00.0', '00:01.0', '01:00.0', '01:00.1']) assert.ok(byBdf.has(b), `missing ${b}`);
    const pf0 = byBdf.get('01:00.0')!;
    assert.equal(pf0.rid, PF0);
    assert.equal(pf0.vendor_id, 0x8086);
    assert.equal(pf0.device_id, 0x10c9);
    assert.equal(pf0.class_code, 0x020000);
    assert.equal(pf0.is_virtual, false);
    assert.ok(pf0.bars.length >= 1);
    const p = await within(c.getPlatform());
    assert.equal(p.root_ports[0].rid, PORT);
    assert.equal(p.root_ports[0].secondary_bus, 1);
  });

  test('connects over the Unix socket too', async () => {
    if (!server.unix) return;
    const u = await within(PcieEmuClient.connect(server.unix), 20_000, 'unix connect');
    try {
      assert.equal(await within(u.readConfig32(PF0, 0)), 0x10c98086);
    } finally { u.close(); }
  });

  test('with no target it finds the default Unix socket', async () => {
    if (!server.unix) return;
    const saved = { xdg: process.env.XDG_RUNTIME_DIR, target: process.env.PCIEEMU_TARGET };
    const dir = mkdtempSync(join(tmpdir(), 'pcieemu-xdg-'));
    try {
      mkdirSync(join(dir, 'pcie-emu'), { mode: 0o700 });
      symlinkSync(server.unix.replace(/^unix:\/\//, ''), join(dir, 'pcie-emu', 'pcie-emu.sock'));
      process.env.XDG_RUNTIME_DIR = dir;
      delete process.env.PCIEEMU_TARGET;
      assert.equal(defaultTarget(), `unix://${join(dir, 'pcie-emu', 'pcie-emu.sock')}`);
      const d = await within(PcieEmuClient.connect(), 20_000, 'default connect');
      try { assert.equal(await within(d.readConfig32(PF0, 0)), 0x10c98086); } finally { d.close(); }
    } finally {
      if (saved.xdg === undefined) delete process.env.XDG_RUNTIME_DIR; else process.env.XDG_RUNTIME_DIR = saved.xdg;
      if (saved.target !== undefined) process.env.PCIEEMU_TARGET = saved.target;
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('config reads and writes by width', async () => {
    assert.deepEqual(await within(c.readConfig(PF0, 0, 4)), { status: OK, value: 0x10c98086 });
    assert.equal(await within(c.readConfig16(PF0, 0)), 0x8086);
    assert.equal(await within(c.readConfig16(PF0, 2)), 0x10c9);
    assert.equal(await within(c.readConfig8(PF0, 1)), 0x80);
    assert.equal(await within(c.readConfig8(PF0, 0x0b)), 0x02);
    // Interrupt Line (0x3C) is read/write.
    assert.equal(await within(c.writeConfig8(PF0, 0x3c, 0x5a)), OK);
    assert.equal(await within(c.readConfig8(PF0, 0x3c)), 0x5a);
    assert.equal((await within(c.readConfig32(PF0, 0x3c))) & 0xff, 0x5a);
    // Vendor ID is read-only: a write leaves it alone.
    assert.equal(await within(c.writeConfig16(PF0, 0, 0x1234)), OK);
    assert.equal(await within(c.readConfig16(PF0, 0)), 0x8086);
  });

  test('a read from no function completes UR with all ones', async () => {
    assert.deepEqual(await within(c.readConfig(rid(1, 1, 0), 0, 4)), { status: UR, value: 0xffffffff });
    assert.deepEqual(await within(c.readConfig(rid(9, 0, 0), 0, 2)), { status: UR, value: 0xffff });
    assert.deepEqual(await within(c.readConfig(rid(9, 0, 0), 3, 1)), { status: UR, value: 0xff });
    assert.equal(await within(c.writeConfig(rid(9, 0, 0), 0x3c, 1, 1)), UR);
  });

  test('walks standard and extended capabilities', async () => {
    assert.deepEqual(await within(c.capabilities(PF0)), [
      { id: Regs.CAP_ID_PM, offset: 0x40 }, { id: Regs.CAP_ID_MSI, offset: 0x50 },
      { id: Regs.CAP_ID_MSIX, offset: 0x70 }, { id: Regs.CAP_ID_PCIE, offset: 0xa0 },
    ]);
    assert.deepEqual((await within(c.extendedCapabilities(PF0))).map((x) => [x.id, x.offset]), [
      [Regs.EXT_CAP_ID_AER, 0x100], [Regs.EXT_CAP_ID_DSN, 0x140], [Regs.EXT_CAP_ID_ARI, 0x150], [Regs.EXT_CAP_ID_SRIOV, 0x160],
    ]);
    assert.equal(await within(c.findCapability(PORT, Regs.CAP_ID_PCIE)), 0x40);
    assert.deepEqual(await within(c.capabilities(rid(9, 0, 0))), []);
  });

  test('SR-IOV enable/disable without ARI routes VFs to bus 2', async () => {
    const vfs = await within(c.enableSriov(PF0, 2, { ari: false }));
    assert.deepEqual(vfs.map(formatBdf), ['02:10.0', '02:10.2']);
    const cls = await within(c.readConfig(parseBdf('02:10.0'), 0x08, 4));
    assert.equal(cls.status, OK);
    assert.equal(cls.value >>> 8, 0x020000);
    // VF Vendor/Device ID registers read FFFFh but the function answers.
    assert.deepEqual(await within(c.readConfig(0x0280, 0, 4)), { status: OK, value: 0xffffffff });
    assert.equal((await within(c.readConfig(parseBdf('01:10.0'), 0, 4))).status, UR);
    const fns = await within(c.listFunctions());
    const vf = fns.find((f) => f.rid === 0x0280)!;
    assert.ok(vf, 'VF 02:10.0 not listed');
    assert.equal(vf.is_virtual, true);
    assert.equal(vf.physical_function_rid, PF0);
    assert.equal(vf.device_id, 0x10ca);
    await within(c.disableSriov(PF0));
    assert.equal((await within(c.readConfig(0x0280, 0x08, 4))).status, UR);
    assert.equal(await within(c.readConfig16(PF0, 0x160 + Regs.SRIOV_NUM_VFS)), 0);
  });

  test('SR-IOV enable/disable with ARI routes VFs to bus 1', async () => {
    const vfs = await within(c.enableSriov(PF0, 2, { ari: true }));
    assert.deepEqual(vfs.map(formatBdf), ['01:10.0', '01:10.2']);
    assert.equal(vfs[0], ariRid(1, 0x80));
    const cls = await within(c.readConfig(0x0180, 0x08, 4));
    assert.equal(cls.status, OK);
    assert.equal(cls.value >>> 8, 0x020000);
    assert.ok((await within(c.readConfig16(PORT, 0x40 + Regs.PCIE_DEVCTL2))) & Regs.ARI_FORWARDING);
    const ctl = await within(c.readConfig16(PF0, 0x160 + Regs.SRIOV_CTRL));
    assert.equal(ctl & (Regs.SRIOV_CTRL_VFE | Regs.SRIOV_CTRL_MSE | Regs.SRIOV_CTRL_ARI), Regs.SRIOV_CTRL_VFE | Regs.SRIOV_CTRL_MSE | Regs.SRIOV_CTRL_ARI);
    assert.equal((await within(c.readConfig(0x0280, 0, 4))).status, UR);
    await within(c.disableSriov(PF0));
    assert.equal((await within(c.readConfig(0x0180, 0x08, 4))).status, UR);
    await assert.rejects(c.enableSriov(PF0, 99), /numVfs must be 1\.\.8/);
  });

  test('RAM through the shared file and through RPC see the same bytes', async () => {
    const ram = await within(c.openRam());
    const rpc = await within(c.openRam({ preferRpc: true }));
    try {
      assert.equal(ram.direct, true, 'the server runs on this host, so the RAM file should be usable');
      assert.equal(rpc.direct, false);
      const a = ram.base + 0x10000n;
      await ram.write(a, Buffer.from([1, 2, 3, 4, 5]));
      assert.deepEqual([...(await within(rpc.read(a, 5)))], [1, 2, 3, 4, 5]);
      await within(rpc.write(a + 8n, Buffer.from('hello')));
      assert.equal((await ram.read(a + 8n, 5)).toString(), 'hello');
      assert.equal((await within(c.readMmio(a, 4))).value, 0x04030201n);
      await assert.rejects(ram.read(ram.base + ram.size, 1), RangeError);
      await assert.rejects(c.readMemory(ram.base + ram.size, 16), (e: grpc.ServiceError) => e.code === grpc.status.OUT_OF_RANGE);
    } finally { ram.close(); rpc.close(); }
  });

  test('Session: posted writes are seen by later reads, in order', async () => {
    const s = c.session();
    const reads: Promise<{ value: bigint; status: string }>[] = [];
    for (let i = 0; i < 200; i++) {
      s.configWrite(PF0, 0x3c, 1, i & 0xff);
      reads.push(s.configRead(PF0, 0x3c, 1));
      s.mmioWrite(0x2000n, 4, BigInt(i * 7));
      reads.push(s.mmioRead(0x2000n, 4));
    }
    const done = await within(Promise.all(reads));
    for (let i = 0; i < 200; i++) {
      assert.equal(done[2 * i].value, BigInt(i & 0xff));
      assert.equal(done[2 * i + 1].value, BigInt(i * 7));
    }
    // A posted write that fails is reported by tag; an acked write completes.
    s.configWrite(rid(9, 0, 0), 0x3c, 1, 1);
    const ack = await within(s.configWriteAck(PF0, 0x3c, 1, 0x11));
    assert.equal(ack.status, OK);
    assert.equal(s.postedErrors.length, 1);
    assert.equal(s.postedErrors[0].status, UR);
    assert.equal((await within(s.memoryRead(0x2000n, 4))).data.readUInt32LE(0), 199 * 7);
    await within(s.close());
  });

  test('Session: a malformed transaction ends the stream with INVALID_ARGUMENT', async () => {
    const s = c.session();
    await assert.rejects(within(s.configRead(PF0, 0, 3)), (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && /width/.test(e.details));
    s.cancel();
  });

  test('interrupt subscription opens, and a bad rid is INVALID_ARGUMENT', async () => {
    const sub = c.subscribeInterrupts([PF0]);
    await within(sub.opened, 10_000, 'subscription headers');
    sub.cancel();
    const bad = c.subscribeInterrupts([0x10000]);
    await assert.rejects(within(bad.opened), (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT);
  });

  test('trace subscription: a rid filter sees exactly its config and MMIO writes, in order, decoded', async () => {
    // A client whose unary default deadline is 0.5 s: the stream must not inherit it.
    const short = await within(PcieEmuClient.connect(server.tcp, { tokenFile: server.tokenFile, timeoutMs: 500 }), 20_000, 'connect');
    const sub = short.subscribeTrace(['01:00.0']);
    try {
      await within(sub.opened, 10_000, 'subscription headers');
      const it = sub[Symbol.asyncIterator]();
      await new Promise((r) => setTimeout(r, 1000));
      const bar0 = BigInt((await within(c.listFunctions())).find((f) => f.rid === PF0)!.bars.find((b) => b.index === 0)!.address);
      await within(c.writeConfig16(0x0101, Regs.COMMAND, 6)); // another function: filtered out
      await within(c.writeConfig16(PF0, Regs.COMMAND, 6));
      await within(c.writeMmio(bar0 + 0x1524n, 4, 1n)); // EIMS
      await within(c.readConfig16(PF0, 0)); // the marker: nothing came in between
      const got = [];
      for (let i = 0; i < 3; i++) {
        const r = await within(it.next(), 10_000, `trace event ${i}`);
        assert.equal(r.done, false);
        got.push(r.value);
      }
      assert.deepEqual(got.map((e) => [e.kind, e.token, e.text, e.rid]), [
        ['TRACE_KIND_CONFIG', 'CFG', 'W  Command [0x004] = 0x0006: I/O Space 1->0', PF0],
        ['TRACE_KIND_MMIO', 'MMIO', 'W  PF0 BAR0 EIMS = 0x00000001  (was 0x00000000)', PF0],
        ['TRACE_KIND_CONFIG', 'CFG', 'R  Vendor ID [0x000] -> 0x8086', PF0],
      ]);
      assert.ok(BigInt(got[0].sequence) < BigInt(got[1].sequence) && BigInt(got[1].sequence) < BigInt(got[2].sequence));
      assert.equal(BigInt(got[1].address), bar0 + 0x1524n);
      sub.cancel(); // cancelling ends the iteration cleanly
      assert.equal((await within(it.next(), 10_000, 'end after cancel')).done, true);
    } finally {
      sub.cancel();
      short.close();
    }
  });

  test('trace subscription: a bad kind is INVALID_ARGUMENT naming kinds[0]', async () => {
    const bad = c.subscribeTrace([PF0], ['bogus']);
    await assert.rejects(within(bad.opened), (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && e.details.startsWith('kinds[0]:'));
    assert.equal(await within(c.readConfig16(PF0, 0)), 0x8086);
  });

  test('an MSI-X interrupt raised through the NIC arrives on the subscription', async () => {
    const sub = c.subscribeInterrupts([PF0]);
    try {
    await within(sub.opened, 10_000, 'subscription headers');
    const it = sub[Symbol.asyncIterator]();
    const next = it.next();
    // 82576 PF0: Memory Space + Bus Master, MSI-X entry 0 -> 0xFEE00000 / data 0x41, MSI-X on,
    // GPIE multiple-MSI-X mode, EIMS bit 0, then EICS bit 0 sets the cause and sends vector 0.
    const pf = (await within(c.listFunctions())).find((f) => f.rid === PF0)!;
    const table = await within(c.readConfig32(PF0, 0x70 + 4));
    const bar = (i: number) => BigInt(pf.bars.find((b) => b.index === i)!.address);
    const entry = bar(table & 7) + BigInt(table & ~7);
    await within(c.writeConfig16(PF0, Regs.COMMAND, (await c.readConfig16(PF0, Regs.COMMAND)) | 0x6));
    for (const [off, v] of [[0n, 0xfee00000n], [4n, 0n], [8n, 0x41n], [12n, 0n]] as const)
      assert.equal(await within(c.writeMmio(entry + off, 4, v)), OK);
    await within(c.writeConfig16(PF0, 0x72, ((await c.readConfig16(PF0, 0x72)) | 0x8000) & ~0x4000));
    const bar0 = bar(0);
    await within(c.writeMmio(bar0 + 0x1514n, 4, 1n << 4n)); // GPIE.Multiple_MSIX
    await within(c.writeMmio(bar0 + 0x1524n, 4, 1n)); // EIMS
    await within(c.writeMmio(bar0 + 0x1520n, 4, 1n)); // EICS
    const ev = await within(next, 10_000, 'interrupt event');
    assert.equal(ev.done, false);
    assert.equal(ev.value.rid, PF0);
    assert.equal(ev.value.kind, 'INTERRUPT_KIND_MSIX');
    assert.equal(BigInt(ev.value.address), 0xfee00000n);
    assert.equal(ev.value.data, 0x41);
    assert.equal(ev.value.vector, 0);
    } finally {
      sub.cancel();
    }
  });

  test('the example driver enables VFs, reads them with and without ARI, sends VF0 -> VF1 and to the wire', async () => {
    // The example finds the TCP token in $PCIEEMU_TOKEN.
    const env = { ...process.env, PCIEEMU_TOKEN: server.token ?? '' };
    const { stdout } = await within(promisify(execFile)(process.execPath, [join(__dirname, '../examples/driver.js'), server.tcp], { env }), 30_000, 'driver');
    assert.match(stdout, /^01:00\.0 8086:10c9 class 020000/m);
    assert.match(stdout, /ARI off: VFs at 02:10\.0, 02:10\.2\n\s+02:10\.0 class\/rev = 0x020000\w\w \(COMPLETION_STATUS_SUCCESSFUL\)/);
    assert.match(stdout, /ARI on : VFs at 01:10\.0, 01:10\.2\n\s+01:10\.0 class\/rev = 0x020000\w\w \(COMPLETION_STATUS_SUCCESSFUL\)/);
    assert.match(stdout, /^VF0 -> VF1 loopback: 64-byte frame received intact \(RX status 0x3\)$/m);
    assert.match(stdout, /^VF0 -> wire: 64-byte frame captured on port 0$/m);
  });

  test('the virtio-net example on the default machine (no virtio-net device) fails saying what to do', async () => {
    const env = { ...process.env, PCIEEMU_TOKEN: server.token ?? '' };
    await assert.rejects(within(promisify(execFile)(process.execPath, [join(__dirname, '../examples/virtio-net.js'), server.tcp], { env }), 30_000, 'virtio-net example'),
      (e: Error & { stderr?: string }) => /no virtio-net function \(1af4:1041\)/.test(e.stderr ?? '') && /--machine/.test(e.stderr ?? ''));
  });

  test('assertNoViolations rejects naming SRIOV.NUMVFS_WHILE_ENABLED, passes after clearViolations', async () => {
    await within(c.clearViolations());
    await within(c.assertNoViolations());
    // PF0's SR-IOV capability is at 0x160: NumVFs at +0x10, SR-IOV Control at +0x08.
    await within(c.writeConfig16(PF0, 0x170, 2));   // NumVFs
    await within(c.writeConfig16(PF0, 0x168, 0x9)); // VF Enable | VF MSE
    await within(c.writeConfig16(PF0, 0x170, 1));   // NumVFs while VF Enable is set
    await assert.rejects(within(c.assertNoViolations()), (e: Error) =>
      e instanceof ViolationsError && e.violations.length === 1 && e.violations[0].rule?.id === 'SRIOV.NUMVFS_WHILE_ENABLED'
      && /01:00\.0 SRIOV\.NUMVFS_WHILE_ENABLED/.test(e.message) && /Hint: Clear VF Enable/.test(e.message));
    assert.equal((await within(c.getViolations({ ruleIds: ['VTD.FAULT'] }))).violations.length, 0);
    assert.equal((await within(c.getViolations({ rids: [PF0] }))).violations.length, 1);
    await assert.rejects(within(c.getViolations({ ruleIds: ['NO.SUCH_RULE'] })),
      (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && e.details.startsWith('rule_ids[0]'));
    assert.equal(await within(c.clearViolations()), 1);
    await within(c.assertNoViolations());
  });

  test('a bad width is INVALID_ARGUMENT naming the field', async () => {
    await assert.rejects(c.readConfig(PF0, 0, 3), (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && /width/.test(e.details));
    await assert.rejects(c.readConfig(PF0, 4096, 4), (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && /offset/.test(e.details));
    // The server keeps working afterwards.
    assert.equal(await within(c.readConfig16(PF0, 0)), 0x8086);
  });
});
