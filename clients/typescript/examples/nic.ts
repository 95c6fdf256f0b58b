/** The example driver's NIC step: a frame from VF0 to VF1 through the 82576's VMDq loopback,
 *  and one from VF0 to the wire. */
import { CompletionStatus, formatBdf, Igb, PcieEmuClient, PciFunction, RamAccess, Regs } from '../src/index.js';

const RING_ENTRIES = 8; // 8 x 16 = 128 bytes, the required TDLEN/RDLEN multiple
const TX_RING = 0x100000n, RX_RING = 0x101000n, TX_BUF = 0x102000n, RX_BUF = 0x103000n, BUF_SIZE = 2048n;

/** The locally administered MAC the driver gives VF i. */
const vfMac = (i: number): Buffer => Buffer.from([0x02, 0x00, 0x00, 0x00, 0x10, i]);

/** A 64-byte IPv4-typed frame with a counting payload. */
function testFrame(dst: Buffer, src: Buffer, fill: number): Buffer {
  const f = Buffer.alloc(64);
  dst.copy(f, 0);
  src.copy(f, 6);
  f[12] = 0x08; f[13] = 0x00;
  for (let i = 14; i < f.length; i++) f[i] = (fill + i) & 0xff;
  return f;
}

function bar0(fns: PciFunction[], rid: number): bigint {
  const b = fns.find((f) => f.rid === rid)?.bars.find((b) => b.index === 0 && BigInt(b.address) !== 0n);
  if (!b) throw new Error(`${formatBdf(rid)} has no assigned BAR0`);
  return BigInt(b.address);
}

/** (register, value) MMIO writes relative to base, in order. */
async function writes(c: PcieEmuClient, base: bigint, ...regs: number[]): Promise<void> {
  for (let i = 0; i + 1 < regs.length; i += 2) {
    const st = await c.writeMmio(base + BigInt(regs[i]), 4, BigInt(regs[i + 1] >>> 0));
    if (st !== CompletionStatus.COMPLETION_STATUS_SUCCESSFUL) throw new Error(`MMIO write 0x${(base + BigInt(regs[i])).toString(16)}: ${st}`);
  }
}

/** Polls dword `dw` of the descriptor at `addr` until DD is set. */
async function waitDd(ram: RamAccess, addr: bigint, dw: number): Promise<Buffer> {
  for (let t = 0; t < 500; t++) {
    const d = await ram.read(addr, Igb.DESCRIPTOR_BYTES);
    if (d.readUInt32LE(4 * dw) & Igb.DESC_DD) return d;
    await new Promise((r) => setTimeout(r, 2));
  }
  throw new Error(`descriptor at 0x${addr.toString(16)}: no DD after 1 s`);
}

/** Enables 2 VFs on `pf`, programs the PF for VMDq loopback, sends one 64-byte frame from VF0's
 *  TX queue 0 to VF1's MAC and checks VF1's RX queue 0 got the same bytes; then sends a frame to
 *  an unknown unicast MAC and checks it on the wire (CaptureFrames, port 0). */
export async function vfToVf(c: PcieEmuClient, pf: number): Promise<void> {
  const vfs = await c.enableSriov(pf, 2);
  const ram = await c.openRam();
  const stop = new AbortController();
  try {
    const fns = await c.listFunctions();
    const pfBar = bar0(fns, pf);
    const vfBar = vfs.map((v) => bar0(fns, v));
    for (const v of vfs) await c.writeConfig(v, Regs.COMMAND, 2, 0x4); // Bus Master Enable (VF MSE is in the SR-IOV capability)
    await c.writeConfig(pf, Regs.COMMAND, 2, (await c.readConfig16(pf, Regs.COMMAND)) | 0x6);

    // PF driver: VMDq with loopback, pools 0 and 1 (the VFs) enabled and accepting untagged
    // frames, RAR1/RAR2 = the VFs' MACs steering to their pools.
    await writes(c, pfBar,
      Igb.CTRL_EXT, Igb.CTRL_EXT_PFRSTD,
      Igb.MRQC, Igb.MRQC_VMDQ,
      Igb.DTXSWC, Igb.DTXSWC_LOOPBACK,
      Igb.RCTL, Igb.RCTL_EN | Igb.RCTL_BAM | Igb.RCTL_SECRC,
      Igb.TCTL, Igb.TCTL_EN,
      Igb.VMOLR0 + 0, Igb.VMOLR_AUPE | Igb.VMOLR_BAM,
      Igb.VMOLR0 + 4, Igb.VMOLR_AUPE | Igb.VMOLR_BAM,
      Igb.VFRE, 0b11,
      Igb.VFTE, 0b11);
    for (let i = 0; i < 2; i++) {
      const mac = vfMac(i), ral = Igb.RAL0 + 8 * (i + 1);
      await writes(c, pfBar, ral, mac.readUInt32LE(0), ral + 4, mac.readUInt16LE(4) | (1 << i) << Igb.RAH_POOL_SHIFT | Igb.RAH_AV);
    }

    const base = ram.base;
    // VF1 RX queue 0: advanced one-buffer descriptors, 2 KiB buffers, all but one posted.
    for (let i = 0; i < RING_ENTRIES; i++) {
      const d = Buffer.alloc(Igb.DESCRIPTOR_BYTES);
      d.writeBigUInt64LE(base + RX_BUF + BigInt(i) * BUF_SIZE, 0);
      await ram.write(base + RX_RING + BigInt(i * Igb.DESCRIPTOR_BYTES), d);
    }
    const rx = vfBar[1] + BigInt(Igb.VF_RX_QUEUE0);
    await writes(c, rx,
      Igb.RDBAL, Number((base + RX_RING) & 0xffffffffn), Igb.RDBAH, Number((base + RX_RING) >> 32n),
      Igb.RDLEN, RING_ENTRIES * Igb.DESCRIPTOR_BYTES,
      Igb.SRRCTL, Igb.SRRCTL_BSIZE_2K | Igb.SRRCTL_ADV_ONE_BUFFER,
      Igb.RDH, 0, Igb.RDT, 0,
      Igb.RXDCTL, Igb.QUEUE_ENABLE,
      Igb.RDT, RING_ENTRIES - 1);
    // VF0 TX queue 0.
    const tx = vfBar[0] + BigInt(Igb.VF_TX_QUEUE0);
    await writes(c, tx,
      Igb.TDBAL, Number((base + TX_RING) & 0xffffffffn), Igb.TDBAH, Number((base + TX_RING) >> 32n),
      Igb.TDLEN, RING_ENTRIES * Igb.DESCRIPTOR_BYTES,
      Igb.TDH, 0, Igb.TDT, 0,
      Igb.TXDCTL, Igb.QUEUE_ENABLE);

    /** Posts `frame` in TX descriptor `slot` (advanced data, EOP|IFCS|RS) and writes TDT = slot + 1. */
    const send = async (slot: number, frame: Buffer): Promise<void> => {
      const buf = base + TX_BUF + BigInt(slot) * BUF_SIZE;
      await ram.write(buf, frame);
      const d = Buffer.alloc(Igb.DESCRIPTOR_BYTES);
      d.writeBigUInt64LE(buf, 0);
      d.writeUInt32LE((frame.length | Igb.TXD_DTYP_DATA | Igb.TXD_CMD_EOP | Igb.TXD_CMD_IFCS | Igb.TXD_CMD_RS | Igb.TXD_CMD_DEXT) >>> 0, 8);
      d.writeUInt32LE(frame.length << Igb.TXD_PAYLEN_SHIFT, 12);
      await ram.write(base + TX_RING + BigInt(slot * Igb.DESCRIPTOR_BYTES), d);
      await writes(c, tx, Igb.TDT, slot + 1);
    };

    const frame = testFrame(vfMac(1), vfMac(0), 0xa5);
    await send(0, frame);
    await waitDd(ram, base + TX_RING, 3);
    const wb = await waitDd(ram, base + RX_RING, 2);
    const status = wb.readUInt32LE(8), length = wb.readUInt16LE(12);
    const got = await ram.read(base + RX_BUF, length);
    if (!(status & Igb.RXD_STAT_EOP) || !got.equals(frame))
      throw new Error(`VF1 received ${length} bytes (status 0x${status.toString(16)}) ${got.toString('hex')}, sent ${frame.toString('hex')}`);
    console.log(`VF0 -> VF1 loopback: ${length}-byte frame received intact (RX status 0x${status.toString(16)})`);

    // A frame to an unknown unicast MAC leaves on the wire; the loopback frame above did not.
    const cap = c.captureFrames(0, { signal: stop.signal });
    await cap.opened; // subscribed: frames from now on reach it
    const first = (async () => { for await (const f of cap) return f; throw new Error('capture ended without a frame'); })();
    first.catch(() => {});
    const wire = testFrame(Buffer.from([0x02, 0x00, 0x00, 0x00, 0x20, 0x00]), vfMac(0), 0x5a);
    await send(1, wire);
    const seen = await Promise.race([first, new Promise<never>((_, rej) => setTimeout(() => rej(new Error('no frame on the wire within 10 s')), 10_000).unref())]);
    if (!Buffer.from(seen.data).equals(wire)) throw new Error(`wire frame ${Buffer.from(seen.data).toString('hex')}, sent ${wire.toString('hex')}`);
    console.log(`VF0 -> wire: ${seen.data.length}-byte frame captured on port ${seen.port}`);
  } finally {
    stop.abort();
    ram.close();
    await c.disableSriov(pf);
  }
}
