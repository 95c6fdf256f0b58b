/** The virtio-net example driver (examples/virtio-net.ts) against a server started with
 *  docs/machines/virtio-net.json (an 82576 and a virtio-net device). */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { PcieEmuClient } from '../src/index.js';
import * as vn from '../examples/virtio-net.js';
import { repoRoot, startServer, TestServer, within } from './harness.js';

describe('virtio-net example driver', () => {
  let server: TestServer;
  let c: PcieEmuClient;

  before(async () => {
    server = await within(startServer({ extraArgs: ['--machine', join(repoRoot, 'docs/machines/virtio-net.json')] }), 120_000, 'server start');
    c = await within(PcieEmuClient.connect(server.tcp, { tokenFile: server.tokenFile }), 20_000, 'connect');
  });
  after(async () => {
    c?.close();
    await server?.stop();
  });
  beforeEach(async () => { await within(c.resetPlatform(), 10_000, 'reset'); });

  test('the example resets, negotiates, sets up queues, sends a frame and receives one', async () => {
    const env = { ...process.env, PCIEEMU_TOKEN: server.token ?? '' };
    const { stdout } = await within(promisify(execFile)(process.execPath, [join(__dirname, '../examples/virtio-net.js'), server.tcp], { env }), 60_000, 'virtio-net example');
    assert.match(stdout, /^virtio-net 03:00\.0 \(1af4:1041\) on Ethernet port 2$/m);
    assert.match(stdout, /^features 0x100000020 accepted \(FEATURES_OK\); mac 02:00:00:00:77:01$/m);
    assert.match(stdout, /^DRIVER_OK: device_status 0xf,/m);
    assert.match(stdout, /^TX: used len 0, CaptureFrames saw 60 bytes on port 2, identical$/m);
    assert.match(stdout, /^RX: InjectFrame accepted=true, received 60 bytes, identical$/m);
  });

  test('FEATURES_OK does not stick without VERSION_1 (a modern-only device)', async () => {
    const drv = await within(vn.VirtioNetDriver.find(c));
    try {
      await within(drv.enable());
      await within(drv.findStructures());
      await within(drv.reset());
      assert.equal(await within(drv.status()), vn.ACKNOWLEDGE | vn.DRIVER);
      await within(drv.ccWrite(0x08n, 4, 0n));            // driver_feature_select
      await within(drv.ccWrite(0x0cn, 4, vn.F_MAC));      // driver_feature: MAC only
      await within(drv.ccWrite(0x14n, 1, vn.ACKNOWLEDGE | vn.DRIVER | vn.FEATURES_OK));
      assert.equal((await within(drv.status())) & vn.FEATURES_OK, 0n);
      // negotiating properly after a reset works
      await within(drv.reset());
      assert.equal(await within(drv.negotiate()), vn.F_VERSION_1 | vn.F_MAC);
    } finally {
      drv.close();
    }
  });
});
