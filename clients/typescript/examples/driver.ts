/** Example driver: enumerate, enable 2 VFs on PF0, read a VF's config with and without ARI,
 *  then send a frame from VF0 to VF1 through the NIC's VMDq loopback and one to the wire.
 *  Usage: node dist/examples/driver.js [tcp://127.0.0.1:50551 | unix:///path]
 *  On TCP the token comes from $PCIEEMU_TOKEN, else the server's default token file. */
import { formatBdf, parseBdf, PcieEmuClient, Regs } from '../src/index.js';
import { vfToVf } from './nic.js';

async function main(): Promise<void> {
  const c = await PcieEmuClient.connect(process.argv[2]);
  try {
    for (const f of await c.listFunctions())
      console.log(`${f.bdf} ${f.vendor_id.toString(16).padStart(4, '0')}:${f.device_id.toString(16).padStart(4, '0')} class ${f.class_code.toString(16).padStart(6, '0')} ${f.name}`);
    const pf0 = parseBdf('01:00.0');

    for (const ari of [false, true]) {
      const vfs = await c.enableSriov(pf0, 2, { ari });
      console.log(`ARI ${ari ? 'on ' : 'off'}: VFs at ${vfs.map(formatBdf).join(', ')}`);
      const vf = parseBdf(ari ? '01:10.0' : '02:10.0');
      const r = await c.readConfig(vf, Regs.CLASS_REVISION, 4);
      console.log(`  ${formatBdf(vf)} class/rev = 0x${(r.value >>> 0).toString(16).padStart(8, '0')} (${r.status})`);
      await c.disableSriov(pf0);
    }
    await vfToVf(c, pf0);
  } finally {
    c.close();
  }
}

main().catch((e) => { console.error(e instanceof Error ? e.message : e); process.exit(1); });
