/** Example virtio-net driver (virtio 1.2, modern PCI transport, split virtqueues): find the
 *  1AF4:1041 function, enable it, find its common/notify/ISR/device structures through the vendor
 *  capabilities, reset, negotiate VERSION_1 and MAC, set up receiveq0 and transmitq0 in RAM,
 *  DRIVER_OK, send one frame (seen on CaptureFrames) and receive one injected with InjectFrame,
 *  polling the used rings. The same steps, in the same order and with the same names, as the
 *  Python, Go and C++ examples. Needs a machine with a virtio-net device:
 *
 *    pcie-emu serve --machine docs/machines/virtio-net.json
 *    node dist/examples/virtio-net.js
 *
 *  On TCP the token comes from $PCIEEMU_TOKEN, else the server's default token file. */
import { CompletionStatus, formatBdf, PcieEmuClient, RamAccess, Regs } from '../src/index.js';

// Identity and register layout, from the virtio 1.2 specification (section numbers in comments).
export const VIRTIO_VENDOR = 0x1af4, VIRTIO_NET_DEVICE = 0x1041; // §4.1.2: 0x1040 + device ID 1
const CAP_VENDOR = 0x09;
// virtio_pci_cap.cfg_type (§4.1.4)
const COMMON_CFG = 1, NOTIFY_CFG = 2, ISR_CFG = 3, DEVICE_CFG = 4;
// virtio_pci_common_cfg field offsets (§4.1.4.3)
const DEVICE_FEATURE_SELECT = 0x00n, DEVICE_FEATURE = 0x04n, DRIVER_FEATURE_SELECT = 0x08n, DRIVER_FEATURE = 0x0cn;
const NUM_QUEUES = 0x12n, DEVICE_STATUS = 0x14n, QUEUE_SELECT = 0x16n, QUEUE_SIZE = 0x18n;
const QUEUE_MSIX_VECTOR = 0x1an, QUEUE_ENABLE = 0x1cn, QUEUE_NOTIFY_OFF = 0x1en;
const QUEUE_DESC = 0x20n, QUEUE_DRIVER = 0x28n, QUEUE_DEVICE = 0x30n;
// device status (§2.1)
export const ACKNOWLEDGE = 1n, DRIVER = 2n, DRIVER_OK = 4n, FEATURES_OK = 8n, NEEDS_RESET = 64n, FAILED = 128n;
// feature bits (§5.1.3, §6)
export const F_MAC = 1n << 5n, F_VERSION_1 = 1n << 32n;
const NO_VECTOR = 0xffffn;
const DESC_F_WRITE = 2; // §2.7.5
const NET_HDR_LEN = 12; // virtio_net_hdr with VERSION_1 (§5.1.6)
export const RECEIVEQ = 0, TRANSMITQ = 1; // receiveq1, transmitq1 (§5.1.2)
const QUEUE_ENTRIES = 8;
const BUF_SIZE = 2048;
const RAM_OFFSET = 0x200000n; // where the driver puts its rings and buffers, from the RAM base
export const PEER_MAC = Buffer.from([0x02, 0x00, 0x00, 0x00, 0x99, 0x99]); // a station on the wire

/** dst, src, EtherType 0x88B5 (local experimental), payload; padded to 60 bytes. */
export function ethernetFrame(dst: Buffer, src: Buffer, payload: Buffer): Buffer {
  const f = Buffer.concat([dst, src, Buffer.from([0x88, 0xb5]), payload]);
  return f.length >= 60 ? f : Buffer.concat([f, Buffer.alloc(60 - f.length)]);
}

interface Virtqueue { desc: bigint; avail: bigint; used: bigint; buf: bigint; notify: bigint; lastUsed: number; nextAvail: number }

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The driver's state: the function, its BAR4 structures, the two split virtqueues. */
export class VirtioNetDriver {
  common = 0n; notify = 0n; isr = 0n; device = 0n;
  notifyMultiplier = 0n;
  features = 0n;
  readonly queues = new Map<number, Virtqueue>();

  private constructor(readonly c: PcieEmuClient, readonly rid: number, readonly port: number, readonly ram: RamAccess) {}

  /** Step 1: the first 1AF4:1041 function (ListFunctions) and its Ethernet port (GetPlatform). */
  static async find(c: PcieEmuClient): Promise<VirtioNetDriver> {
    const fn = (await c.listFunctions()).find((f) => f.vendor_id === VIRTIO_VENDOR && f.device_id === VIRTIO_NET_DEVICE);
    if (!fn) throw new Error('no virtio-net function (1af4:1041): start the server with a --machine description that has a virtio-net device (docs/machines/virtio-net.json)');
    const port = (await c.getPlatform()).devices.flatMap((d) => d.ethernet_ports).find((p) => p.function_rid === fn.rid);
    if (!port) throw new Error(`GetPlatform lists no Ethernet port for ${formatBdf(fn.rid)}`);
    return new VirtioNetDriver(c, fn.rid, port.number, await c.openRam());
  }

  /** Step 2: memory decoding and bus mastering. */
  async enable(): Promise<void> {
    await this.c.writeConfig16(this.rid, Regs.COMMAND, (await this.c.readConfig16(this.rid, Regs.COMMAND)) | 0x6);
  }

  /** The address programmed in BAR `index` (64-bit BARs combined). */
  async barAddress(index: number): Promise<bigint> {
    const lo = await this.c.readConfig32(this.rid, 0x10 + 4 * index);
    let addr = BigInt(lo & ~0xf) & 0xffffffffn;
    if ((lo & 0x6) === 0x4) addr |= BigInt(await this.c.readConfig32(this.rid, 0x10 + 4 * index + 4)) << 32n;
    return addr;
  }

  /** Step 3: the vendor capabilities (virtio_pci_cap, §4.1.4). */
  async findStructures(): Promise<void> {
    const found = new Map<number, bigint>();
    for (const cap of await this.c.capabilities(this.rid)) {
      if (cap.id !== CAP_VENDOR) continue;
      const cfgType = await this.c.readConfig8(this.rid, cap.offset + 3);
      // the first of each type is the one to use (§4.1.4.1); PCI_CFG is not used here
      if (found.has(cfgType) || cfgType < COMMON_CFG || cfgType > DEVICE_CFG) continue;
      const bar = await this.c.readConfig8(this.rid, cap.offset + 4);
      found.set(cfgType, (await this.barAddress(bar)) + BigInt(await this.c.readConfig32(this.rid, cap.offset + 8)));
      if (cfgType === NOTIFY_CFG) this.notifyMultiplier = BigInt(await this.c.readConfig32(this.rid, cap.offset + 16));
    }
    for (const [t, name] of [[COMMON_CFG, 'common'], [NOTIFY_CFG, 'notify'], [ISR_CFG, 'isr'], [DEVICE_CFG, 'device']] as const)
      if (!found.has(t)) throw new Error(`virtio capability missing: ${name}`);
    [this.common, this.notify, this.isr, this.device] = [COMMON_CFG, NOTIFY_CFG, ISR_CFG, DEVICE_CFG].map((t) => found.get(t)!);
  }

  /** Common configuration accesses, each field at its own width. */
  async ccRead(off: bigint, width: number): Promise<bigint> {
    const r = await this.c.readMmio(this.common + off, width);
    if (r.status !== CompletionStatus.COMPLETION_STATUS_SUCCESSFUL) throw new Error(`MMIO read 0x${(this.common + off).toString(16)}: ${r.status}`);
    return r.value;
  }
  async ccWrite(off: bigint, width: number, value: bigint): Promise<void> {
    const st = await this.c.writeMmio(this.common + off, width, value);
    if (st !== CompletionStatus.COMPLETION_STATUS_SUCCESSFUL) throw new Error(`MMIO write 0x${(this.common + off).toString(16)}: ${st}`);
  }
  status(): Promise<bigint> { return this.ccRead(DEVICE_STATUS, 1); }

  /** Step 4: reset, then ACKNOWLEDGE | DRIVER (§3.1.1). */
  async reset(): Promise<void> {
    await this.ccWrite(DEVICE_STATUS, 1, 0n);
    if ((await this.status()) !== 0n) throw new Error('device_status did not read 0 after reset');
    await this.ccWrite(DEVICE_STATUS, 1, ACKNOWLEDGE);
    await this.ccWrite(DEVICE_STATUS, 1, ACKNOWLEDGE | DRIVER);
  }

  /** Step 5: features, FEATURES_OK and re-read it. */
  async negotiate(wanted = F_VERSION_1 | F_MAC): Promise<bigint> {
    let offered = 0n;
    for (const sel of [0n, 1n]) {
      await this.ccWrite(DEVICE_FEATURE_SELECT, 4, sel);
      offered |= (await this.ccRead(DEVICE_FEATURE, 4)) << (32n * sel);
    }
    if (!(offered & F_VERSION_1)) throw new Error(`device does not offer VERSION_1 (features 0x${offered.toString(16)})`);
    this.features = offered & wanted;
    for (const sel of [0n, 1n]) {
      await this.ccWrite(DRIVER_FEATURE_SELECT, 4, sel);
      await this.ccWrite(DRIVER_FEATURE, 4, (this.features >> (32n * sel)) & 0xffffffffn);
    }
    await this.ccWrite(DEVICE_STATUS, 1, ACKNOWLEDGE | DRIVER | FEATURES_OK);
    if (!((await this.status()) & FEATURES_OK)) {
      await this.ccWrite(DEVICE_STATUS, 1, ACKNOWLEDGE | DRIVER | FAILED);
      throw new Error(`device refused FEATURES_OK for features 0x${this.features.toString(16)}`);
    }
    return this.features;
  }

  /** The device config `mac` (§5.1.4), present with VIRTIO_NET_F_MAC. */
  async mac(): Promise<Buffer> {
    const m = Buffer.alloc(6);
    for (let i = 0; i < 6; i++) m[i] = Number((await this.c.readMmio(this.device + BigInt(i), 1)).value);
    return m;
  }

  /** Step 6: a split virtqueue (§2.7) in RAM. */
  async setupQueue(index: number): Promise<void> {
    await this.ccWrite(QUEUE_SELECT, 2, BigInt(index));
    const maxSize = await this.ccRead(QUEUE_SIZE, 2);
    if (maxSize < BigInt(QUEUE_ENTRIES)) throw new Error(`queue ${index}: queue_size ${maxSize} < ${QUEUE_ENTRIES}`);
    const base = this.ram.base + RAM_OFFSET + BigInt(index) * 0x10000n;
    const q: Virtqueue = { desc: base, avail: base + 0x1000n, used: base + 0x2000n, buf: base + 0x4000n, notify: 0n, lastUsed: 0, nextAvail: 0 };
    await this.ram.write(base, Buffer.alloc(0x4000 + QUEUE_ENTRIES * BUF_SIZE)); // rings and buffers zeroed
    await this.ccWrite(QUEUE_SIZE, 2, BigInt(QUEUE_ENTRIES));
    await this.ccWrite(QUEUE_MSIX_VECTOR, 2, NO_VECTOR); // polled: no interrupt
    for (const [field, addr] of [[QUEUE_DESC, q.desc], [QUEUE_DRIVER, q.avail], [QUEUE_DEVICE, q.used]]) {
      await this.ccWrite(field, 4, addr & 0xffffffffn); // 64-bit fields as two halves
      await this.ccWrite(field + 4n, 4, addr >> 32n);
    }
    q.notify = this.notify + (await this.ccRead(QUEUE_NOTIFY_OFF, 2)) * this.notifyMultiplier;
    await this.ccWrite(QUEUE_ENABLE, 2, 1n);
    if ((await this.ccRead(QUEUE_ENABLE, 2)) !== 1n) throw new Error(`queue ${index}: queue_enable refused`);
    this.queues.set(index, q);
  }

  /** Step 7: DRIVER_OK. */
  async driverOk(): Promise<void> {
    await this.ccWrite(DEVICE_STATUS, 1, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    const st = await this.status();
    if ((st & (NEEDS_RESET | DRIVER_OK)) !== DRIVER_OK) throw new Error(`DRIVER_OK not taken (device_status 0x${st.toString(16)})`);
  }

  /** Puts one buffer (one descriptor) on the available ring and notifies the device. */
  async post(index: number, data: Buffer, writable: boolean): Promise<void> {
    const q = this.queues.get(index)!;
    const slot = q.nextAvail % QUEUE_ENTRIES;
    const addr = q.buf + BigInt(slot * BUF_SIZE);
    if (!writable) await this.ram.write(addr, data);
    const desc = Buffer.alloc(16);
    desc.writeBigUInt64LE(addr, 0);
    desc.writeUInt32LE(writable ? BUF_SIZE : data.length, 8);
    desc.writeUInt16LE(writable ? DESC_F_WRITE : 0, 12);
    await this.ram.write(q.desc + BigInt(16 * slot), desc);
    const v = Buffer.alloc(2);
    v.writeUInt16LE(slot);
    await this.ram.write(q.avail + BigInt(4 + 2 * slot), v);
    q.nextAvail = (q.nextAvail + 1) & 0xffff;
    v.writeUInt16LE(q.nextAvail);
    await this.ram.write(q.avail + 2n, v); // avail.idx after the entry
    const st = await this.c.writeMmio(q.notify, 2, BigInt(index));
    if (st !== CompletionStatus.COMPLETION_STATUS_SUCCESSFUL) throw new Error(`notify queue ${index}: ${st}`);
  }

  /** Polls used.idx; returns the next used element's id and len. */
  async waitUsed(index: number, timeoutMs = 5000): Promise<{ id: number; len: number }> {
    const q = this.queues.get(index)!;
    const deadline = Date.now() + timeoutMs;
    while ((await this.ram.read(q.used + 2n, 2)).readUInt16LE(0) === q.lastUsed) {
      if (Date.now() > deadline) throw new Error(`queue ${index}: nothing used after ${timeoutMs} ms (device_status 0x${(await this.status()).toString(16)})`);
      await sleep(2);
    }
    const e = await this.ram.read(q.used + BigInt(4 + 8 * (q.lastUsed % QUEUE_ENTRIES)), 8);
    q.lastUsed = (q.lastUsed + 1) & 0xffff;
    return { id: e.readUInt32LE(0), len: e.readUInt32LE(4) };
  }

  /** Step 8: one frame behind a zeroed virtio_net_hdr; returns the used length. */
  async send(frame: Buffer): Promise<number> {
    await this.post(TRANSMITQ, Buffer.concat([Buffer.alloc(NET_HDR_LEN), frame]), false);
    return (await this.waitUsed(TRANSMITQ)).len;
  }

  /** Step 9: one receive buffer, then the frame the device put in it. */
  postReceiveBuffer(): Promise<void> { return this.post(RECEIVEQ, Buffer.alloc(0), true); }
  async receive(timeoutMs = 5000): Promise<Buffer> {
    const { id, len } = await this.waitUsed(RECEIVEQ, timeoutMs);
    if (len < NET_HDR_LEN || len > BUF_SIZE) throw new Error(`receive: used len ${len}`);
    return this.ram.read(this.queues.get(RECEIVEQ)!.buf + BigInt(id * BUF_SIZE + NET_HDR_LEN), len - NET_HDR_LEN);
  }

  close(): void { this.ram.close(); }
}

const hex = (v: bigint): string => `0x${v.toString(16)}`;

export async function run(c: PcieEmuClient, out: (line: string) => void = console.log): Promise<void> {
  const drv = await VirtioNetDriver.find(c);
  const stop = new AbortController();
  try {
    out(`virtio-net ${formatBdf(drv.rid)} (1af4:1041) on Ethernet port ${drv.port}`);
    await drv.enable();
    await drv.findStructures();
    out(`BAR4 structures: common ${hex(drv.common)}, notify ${hex(drv.notify)} (multiplier ${drv.notifyMultiplier}), isr ${hex(drv.isr)}, device ${hex(drv.device)}`);
    await drv.reset();
    const features = await drv.negotiate();
    const mac = await drv.mac();
    out(`features ${hex(features)} accepted (FEATURES_OK); mac ${[...mac].map((b) => b.toString(16).padStart(2, '0')).join(':')}`);
    await drv.setupQueue(RECEIVEQ);
    await drv.setupQueue(TRANSMITQ);
    await drv.driverOk();
    out(`DRIVER_OK: device_status ${hex(await drv.status())}, ${await drv.ccRead(NUM_QUEUES, 2)} queues, RAM ${drv.ram.direct ? 'mapped' : 'through Read/WriteMemory'}`);

    const frame = ethernetFrame(PEER_MAC, mac, Buffer.from('hello from the virtio-net driver'));
    const cap = c.captureFrames(drv.port, { signal: stop.signal });
    await cap.opened; // subscribed: frames from now on reach it
    const first = (async () => { for await (const f of cap) return f; throw new Error('capture ended without a frame'); })();
    first.catch(() => {});
    const usedLen = await drv.send(frame);
    const seen = await Promise.race([first, new Promise<never>((_, rej) => setTimeout(() => rej(new Error('no frame on CaptureFrames within 10 s')), 10_000).unref())]);
    out(`TX: used len ${usedLen}, CaptureFrames saw ${seen.data.length} bytes on port ${seen.port}, ${Buffer.from(seen.data).equals(frame) ? 'identical' : 'DIFFERENT'}`);

    await drv.postReceiveBuffer();
    const back = ethernetFrame(mac, PEER_MAC, Buffer.from('hello from the wire'));
    const r = await c.injectFrame(drv.port, back);
    const got = await drv.receive();
    out(`RX: InjectFrame accepted=${r.accepted}, received ${got.length} bytes, ${got.equals(back) ? 'identical' : 'DIFFERENT'}`);
  } finally {
    stop.abort();
    drv.close();
  }
}

async function main(): Promise<void> {
  const c = await PcieEmuClient.connect(process.argv[2]);
  try {
    await c.resetPlatform();
    await run(c);
  } finally {
    c.close();
  }
}

if (require.main === module) main().catch((e) => { console.error(e instanceof Error ? e.message : e); process.exit(1); });
