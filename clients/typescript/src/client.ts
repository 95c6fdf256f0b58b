/** The PcieEmu client: one channel (TCP or Unix socket) and typed helpers over every service. */
import * as grpc from '@grpc/grpc-js';
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { loadProto, PcieEmuProto } from './proto';
import { formatBdf } from './bdf';
import { Regs } from './regs';
import { Session } from './session';
import { CompletionStatus } from './gen/pcieemu/v1/CompletionStatus';
import type { GetPlatformResponse__Output } from './gen/pcieemu/v1/GetPlatformResponse';
import type { Function__Output } from './gen/pcieemu/v1/Function';
import type { ListFunctionsResponse__Output } from './gen/pcieemu/v1/ListFunctionsResponse';
import type { ResetPlatformResponse__Output } from './gen/pcieemu/v1/ResetPlatformResponse';
import type { ReadConfigResponse__Output } from './gen/pcieemu/v1/ReadConfigResponse';
import type { WriteConfigResponse__Output } from './gen/pcieemu/v1/WriteConfigResponse';
import type { ReadMmioResponse__Output } from './gen/pcieemu/v1/ReadMmioResponse';
import type { WriteMmioResponse__Output } from './gen/pcieemu/v1/WriteMmioResponse';
import type { ReadMemoryResponse__Output } from './gen/pcieemu/v1/ReadMemoryResponse';
import type { WriteMemoryResponse__Output } from './gen/pcieemu/v1/WriteMemoryResponse';
import type { InterruptEvent__Output } from './gen/pcieemu/v1/InterruptEvent';
import type { PlatformServiceClient } from './gen/pcieemu/v1/PlatformService';
import type { ConfigServiceClient } from './gen/pcieemu/v1/ConfigService';
import type { MmioServiceClient } from './gen/pcieemu/v1/MmioService';
import type { MemoryServiceClient } from './gen/pcieemu/v1/MemoryService';
import type { InterruptServiceClient } from './gen/pcieemu/v1/InterruptService';
import type { SessionServiceClient } from './gen/pcieemu/v1/SessionService';
import type { EthernetServiceClient } from './gen/pcieemu/v1/EthernetService';

export { CompletionStatus };
export type Status = (typeof CompletionStatus)[keyof typeof CompletionStatus];
export type Platform = GetPlatformResponse__Output;
export type PciFunction = Function__Output;
export type InterruptEvent = InterruptEvent__Output;

/** Default server target (TCP). */
export const DEFAULT_TARGET = 'tcp://127.0.0.1:50551';

/** Environment variable a client reads the TCP token from. */
export const TOKEN_VARIABLE = 'PCIEEMU_TOKEN';

/** The server's private runtime directory: $XDG_RUNTIME_DIR/pcie-emu when XDG_RUNTIME_DIR is an
 *  existing directory, else $TMPDIR/pcie-emu-USER. It holds the default socket and token file. */
export function defaultRuntimeDir(): string {
  const xdg = process.env.XDG_RUNTIME_DIR;
  if (xdg && existsSync(xdg)) return join(xdg, 'pcie-emu');
  return join(tmpdir(), `pcie-emu-${userInfo().username || process.env.USER}`);
}

/** The server's default Unix socket: pcie-emu.sock in defaultRuntimeDir(). */
export function defaultUnixSocketPath(): string {
  return join(defaultRuntimeDir(), 'pcie-emu.sock');
}

/** Where the server writes its TCP token by default: token in defaultRuntimeDir(). */
export function defaultTokenPath(): string {
  return join(defaultRuntimeDir(), 'token');
}

/** The TCP token a client sends, first found of: `token`; the file `tokenFile` (throws when it
 *  cannot be read); $PCIEEMU_TOKEN; the default token file when readable. Undefined when there is
 *  none (the server then answers UNAUTHENTICATED on TCP). */
export function resolveToken(token?: string, tokenFile?: string): string | undefined {
  if (token && token.trim()) return token.trim();
  if (tokenFile) {
    const t = readFileSync(tokenFile, 'ascii').trim();
    if (!t) throw new Error(`token file '${tokenFile}' is empty`);
    return t;
  }
  const env = (process.env[TOKEN_VARIABLE] ?? '').trim();
  if (env) return env;
  try {
    return readFileSync(defaultTokenPath(), 'ascii').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** An interceptor adding `authorization: Bearer <token>` to every call. */
export function bearerInterceptor(token: string): grpc.Interceptor {
  return (options, nextCall) => new grpc.InterceptingCall(nextCall(options), {
    start(metadata, listener, next) {
      metadata.set('authorization', `Bearer ${token}`);
      next(metadata, listener);
    },
  });
}

/** $PCIEEMU_TARGET, else the default Unix socket when it exists, else tcp://127.0.0.1:50551. */
export function defaultTarget(): string {
  if (process.env.PCIEEMU_TARGET) return process.env.PCIEEMU_TARGET;
  const sock = defaultUnixSocketPath();
  return existsSync(sock) ? `unix://${sock}` : DEFAULT_TARGET;
}

/** A config read's completion. */
export interface ConfigRead { status: Status; value: number }
/** An MMIO read's completion. */
export interface MmioRead { status: Status; value: bigint }
/** A capability found by a walk. */
export interface Capability { id: number; offset: number }
/** An extended capability found by a walk. */
export interface ExtendedCapability { id: number; version: number; offset: number }

export interface ConnectOptions {
  /** Deadline of each unary call in milliseconds (default 30 s). */
  timeoutMs?: number;
  /** TCP: the server's token (default: tokenFile, $PCIEEMU_TOKEN, the default token file). */
  token?: string;
  /** TCP: a file holding the token (as written by `pcie-emu serve --token-file`). */
  tokenFile?: string;
}

export interface SriovOptions {
  /** Use ARI (set ARI Forwarding Enable in the port and ARI Capable Hierarchy in function 0) when the
   *  port supports it; false clears both first (default true). */
  ari?: boolean;
  /** Wait after changing VF Enable, in ms (default 100, the spec's settle time). */
  settleMs?: number;
}

/** Converts "tcp://host:port", "unix:///path" or "host:port" into a gRPC target. */
export function grpcTarget(target: string): string {
  const t = target.trim();
  if (t.startsWith('unix:')) {
    const path = t.slice(5).replace(/^\/\//, '');
    if (!path.startsWith('/')) throw new SyntaxError(`'${target}': a unix target needs an absolute path (unix:///run/x.sock)`);
    return `unix://${path}`;
  }
  if (t.startsWith('tcp://')) return t.slice(6).replace(/\/$/, '');
  if (t.startsWith('http://')) return t.slice(7).replace(/\/$/, '');
  if (/^[^/]+:\d+$/.test(t)) return t;
  throw new SyntaxError(`'${target}': expected unix:///path or tcp://host:port`);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class PcieEmuClient {
  readonly proto: PcieEmuProto;
  readonly channel: grpc.Channel;
  readonly platformService: PlatformServiceClient;
  readonly configService: ConfigServiceClient;
  readonly mmioService: MmioServiceClient;
  readonly memoryService: MemoryServiceClient;
  readonly interruptService: InterruptServiceClient;
  readonly sessionService: SessionServiceClient;
  /** The NIC ports' wire: InjectFrame, CaptureFrames (generated stub, no wrapper). */
  readonly ethernetService: EthernetServiceClient;
  /** Whether calls carry a token (TCP with a token found). */
  readonly hasToken: boolean;
  private readonly timeoutMs: number;

  private constructor(target: string, opts: ConnectOptions) {
    this.proto = loadProto();
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    const creds = grpc.credentials.createInsecure();
    const chOpts: grpc.ChannelOptions = { 'grpc.max_receive_message_length': 64 << 20 };
    const gt = grpcTarget(target);
    // The Unix socket needs no token (its mode is the guard); TCP sends the server's token.
    const token = gt.startsWith('unix:') ? undefined : resolveToken(opts.token, opts.tokenFile);
    this.hasToken = token !== undefined;
    this.channel = new grpc.Channel(gt, creds, chOpts);
    const v1 = this.proto.pcieemu.v1;
    const o: grpc.ClientOptions = { channelOverride: this.channel, interceptors: token ? [bearerInterceptor(token)] : [] };
    this.platformService = new v1.PlatformService('unused', creds, o);
    this.configService = new v1.ConfigService('unused', creds, o);
    this.mmioService = new v1.MmioService('unused', creds, o);
    this.memoryService = new v1.MemoryService('unused', creds, o);
    this.interruptService = new v1.InterruptService('unused', creds, o);
    this.sessionService = new v1.SessionService('unused', creds, o);
    this.ethernetService = new v1.EthernetService('unused', creds, o);
  }

  /** Connects to a server ("tcp://127.0.0.1:50551", "unix:///path"; default: defaultTarget())
   *  and waits until the channel is ready. On TCP every call carries the token found by
   *  resolveToken(opts.token, opts.tokenFile). */
  static async connect(target?: string, opts: ConnectOptions = {}): Promise<PcieEmuClient> {
    const c = new PcieEmuClient(target || defaultTarget(), opts);
    await new Promise<void>((res, rej) =>
      c.platformService.waitForReady(Date.now() + (opts.timeoutMs ?? 10_000), (e) => (e ? rej(e) : res())));
    return c;
  }

  close(): void {
    this.channel.close();
  }

  private deadline(): grpc.CallOptions {
    return { deadline: Date.now() + this.timeoutMs };
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  private unary<Res>(svc: any, method: string, req: object): Promise<Res> {
    return new Promise((resolve, reject) => {
      svc[method](req, this.deadline(), (e: grpc.ServiceError | null, r?: Res) => (e ? reject(e) : resolve(r as Res)));
    });
  }

  // ---- platform ----
  getPlatform(): Promise<Platform> {
    return this.unary<Platform>(this.platformService, 'getPlatform', {});
  }
  async listFunctions(): Promise<PciFunction[]> {
    return (await this.unary<ListFunctionsResponse__Output>(this.platformService, 'listFunctions', {})).functions;
  }
  async resetPlatform(): Promise<number> {
    return (await this.unary<ResetPlatformResponse__Output>(this.platformService, 'resetPlatform', {}))!.functions;
  }

  // ---- config ----
  async readConfig(rid: number, offset: number, width: number): Promise<ConfigRead> {
    const r = await this.unary<ReadConfigResponse__Output>(this.configService, 'readConfig', { rid, offset, width });
    return { status: r!.status, value: r!.value };
  }
  async writeConfig(rid: number, offset: number, width: number, value: number): Promise<Status> {
    const r = await this.unary<WriteConfigResponse__Output>(this.configService, 'writeConfig', { rid, offset, width, value });
    return r!.status;
  }
  /** Reads 1 byte (all ones on UR, as hardware returns). */
  async readConfig8(rid: number, offset: number): Promise<number> { return (await this.readConfig(rid, offset, 1)).value; }
  async readConfig16(rid: number, offset: number): Promise<number> { return (await this.readConfig(rid, offset, 2)).value; }
  async readConfig32(rid: number, offset: number): Promise<number> { return (await this.readConfig(rid, offset, 4)).value >>> 0; }
  writeConfig8(rid: number, offset: number, v: number): Promise<Status> { return this.writeConfig(rid, offset, 1, v); }
  writeConfig16(rid: number, offset: number, v: number): Promise<Status> { return this.writeConfig(rid, offset, 2, v); }
  writeConfig32(rid: number, offset: number, v: number): Promise<Status> { return this.writeConfig(rid, offset, 4, v >>> 0); }

  // ---- MMIO ----
  async readMmio(address: bigint, width: number): Promise<MmioRead> {
    const r = await this.unary<ReadMmioResponse__Output>(this.mmioService, 'readMmio', { address: address.toString(), width });
    return { status: r!.status, value: BigInt(r!.value) };
  }
  async writeMmio(address: bigint, width: number, value: bigint): Promise<Status> {
    const r = await this.unary<WriteMmioResponse__Output>(this.mmioService, 'writeMmio', { address: address.toString(), width, value: value.toString() });
    return r!.status;
  }

  // ---- memory over RPC ----
  async readMemory(address: bigint, length: number): Promise<Buffer> {
    return (await this.unary<ReadMemoryResponse__Output>(this.memoryService, 'readMemory', { address: address.toString(), length }))!.data;
  }
  async writeMemory(address: bigint, data: Uint8Array): Promise<number> {
    return (await this.unary<WriteMemoryResponse__Output>(this.memoryService, 'writeMemory', { address: address.toString(), data: Buffer.from(data) }))!.length;
  }

  // ---- capability walks (PCI 3.0 §6.7, PCIe Base §7.6) ----
  /** Walks the standard capability list (stops on a loop or a pointer into the header). */
  async capabilities(rid: number): Promise<Capability[]> {
    const caps: Capability[] = [];
    const status = await this.readConfig(rid, Regs.STATUS, 2);
    if (status.status !== CompletionStatus.COMPLETION_STATUS_SUCCESSFUL || !(status.value & Regs.STATUS_CAP_LIST)) return caps;
    let ptr = (await this.readConfig8(rid, Regs.CAP_PTR)) & 0xfc;
    const seen = new Set<number>();
    while (ptr >= 0x40 && !seen.has(ptr) && caps.length < 48) {
      seen.add(ptr);
      const hdr = await this.readConfig16(rid, ptr);
      caps.push({ id: hdr & 0xff, offset: ptr });
      ptr = (hdr >> 8) & 0xfc;
    }
    return caps;
  }
  /** Walks the extended capability list from 0x100 (none if the header reads 0 or all ones). */
  async extendedCapabilities(rid: number): Promise<ExtendedCapability[]> {
    const caps: ExtendedCapability[] = [];
    let off: number = Regs.EXT_CAP_START;
    const seen = new Set<number>();
    while (off >= Regs.EXT_CAP_START && off < 0x1000 && !seen.has(off)) {
      seen.add(off);
      const r = await this.readConfig(rid, off, 4);
      const hdr = r.value >>> 0;
      if (r.status !== CompletionStatus.COMPLETION_STATUS_SUCCESSFUL || hdr === 0 || hdr === 0xffffffff) break;
      caps.push({ id: hdr & 0xffff, version: (hdr >>> 16) & 0xf, offset: off });
      off = (hdr >>> 20) & 0xffc;
    }
    return caps;
  }
  async findCapability(rid: number, id: number): Promise<number> {
    return (await this.capabilities(rid)).find((c) => c.id === id)?.offset ?? 0;
  }
  async findExtendedCapability(rid: number, id: number): Promise<number> {
    return (await this.extendedCapabilities(rid)).find((c) => c.id === id)?.offset ?? 0;
  }

  // ---- SR-IOV (Linux-style) ----
  /** Enables `numVfs` VFs on a PF as Linux does; returns their routing IDs. */
  async enableSriov(pfRid: number, numVfs: number, opts: SriovOptions = {}): Promise<number[]> {
    const useAri = opts.ari ?? true;
    const sriov = await this.findExtendedCapability(pfRid, Regs.EXT_CAP_ID_SRIOV);
    if (!sriov) throw new Error(`${formatBdf(pfRid)} has no SR-IOV capability`);
    const total = await this.readConfig16(pfRid, sriov + Regs.SRIOV_TOTAL_VFS);
    if (!Number.isInteger(numVfs) || numVfs < 1 || numVfs > total) throw new RangeError(`numVfs must be 1..${total} (TotalVFs), was ${numVfs}`);
    const ctl = await this.readConfig16(pfRid, sriov + Regs.SRIOV_CTRL);
    if (ctl & Regs.SRIOV_CTRL_VFE) throw new Error(`${formatBdf(pfRid)}: VF Enable is already set`);

    const platform = await this.getPlatform();
    const port = platform.root_ports.find((p) => p.secondary_bus === pfRid >> 8);
    if (port && port.ari_forwarding_supported && (await this.findExtendedCapability(pfRid, Regs.EXT_CAP_ID_ARI))) {
      await this.setAri(port.rid, pfRid & 0xff00, useAri);
    }

    await this.writeConfig16(pfRid, sriov + Regs.SRIOV_NUM_VFS, numVfs);
    // First VF Offset and VF Stride depend on NumVFs and ARI Capable Hierarchy: reread them now.
    const offset = await this.readConfig16(pfRid, sriov + Regs.SRIOV_VF_OFFSET);
    const stride = await this.readConfig16(pfRid, sriov + Regs.SRIOV_VF_STRIDE);
    const rids = Array.from({ length: numVfs }, (_, i) => pfRid + offset + i * stride);
    if (port && rids.some((r) => r >> 8 > port.subordinate_bus)) {
      await this.writeConfig16(pfRid, sriov + Regs.SRIOV_NUM_VFS, 0);
      throw new Error(`VFs would need bus ${(Math.max(...rids) >> 8).toString(16)}, beyond the port's subordinate bus ${port.subordinate_bus.toString(16)}`);
    }
    // VF Enable and VF MSE in one write.
    const now = await this.readConfig16(pfRid, sriov + Regs.SRIOV_CTRL);
    await this.writeConfig16(pfRid, sriov + Regs.SRIOV_CTRL, now | Regs.SRIOV_CTRL_VFE | Regs.SRIOV_CTRL_MSE);
    await sleep(opts.settleMs ?? 100);
    return rids;
  }

  /** Sets or clears ARI Forwarding Enable in the port and ARI Capable Hierarchy in function 0
   *  (only legal while its VF Enable is clear). */
  private async setAri(portRid: number, fn0: number, on: boolean): Promise<void> {
    const pcie = await this.findCapability(portRid, Regs.CAP_ID_PCIE);
    if (pcie) {
      const ctl2 = await this.readConfig16(portRid, pcie + Regs.PCIE_DEVCTL2);
      const want = on ? ctl2 | Regs.ARI_FORWARDING : ctl2 & ~Regs.ARI_FORWARDING;
      if (want !== ctl2) await this.writeConfig16(portRid, pcie + Regs.PCIE_DEVCTL2, want);
    }
    const s0 = await this.findExtendedCapability(fn0, Regs.EXT_CAP_ID_SRIOV);
    if (s0) {
      const c0 = await this.readConfig16(fn0, s0 + Regs.SRIOV_CTRL);
      if (!(c0 & Regs.SRIOV_CTRL_VFE)) {
        const want = on ? c0 | Regs.SRIOV_CTRL_ARI : c0 & ~Regs.SRIOV_CTRL_ARI;
        if (want !== c0) await this.writeConfig16(fn0, s0 + Regs.SRIOV_CTRL, want);
      }
    }
  }

  /** Disables SR-IOV as Linux does: clear VF Enable and VF MSE in one write, wait, NumVFs = 0. */
  async disableSriov(pfRid: number, opts: { settleMs?: number } = {}): Promise<void> {
    const sriov = await this.findExtendedCapability(pfRid, Regs.EXT_CAP_ID_SRIOV);
    if (!sriov) throw new Error(`${formatBdf(pfRid)} has no SR-IOV capability`);
    const ctl = await this.readConfig16(pfRid, sriov + Regs.SRIOV_CTRL);
    await this.writeConfig16(pfRid, sriov + Regs.SRIOV_CTRL, ctl & ~(Regs.SRIOV_CTRL_VFE | Regs.SRIOV_CTRL_MSE));
    await sleep(opts.settleMs ?? 100);
    await this.writeConfig16(pfRid, sriov + Regs.SRIOV_NUM_VFS, 0);
  }

  // ---- RAM ----
  /** Opens host RAM: the shared file when it is reachable from here (same host), otherwise the
   *  Read/WriteMemory RPCs. `preferRpc` forces the RPC path. */
  async openRam(opts: { preferRpc?: boolean } = {}): Promise<RamAccess> {
    const region = (await this.getPlatform()).ram_regions[0];
    if (!region) throw new Error('the server reports no RAM region');
    const base = BigInt(region.base), size = BigInt(region.size);
    if (!opts.preferRpc && region.shared_file_path) {
      try {
        const fd = openSync(region.shared_file_path, 'r+');
        if (BigInt(fstatSync(fd).size) >= size) return new FileRam(fd, base, size);
        closeSync(fd);
      } catch {
        // Not on the same host (or no permission): fall back to RPC.
      }
    }
    return new RpcRam(this, base, size);
  }

  // ---- interrupts ----
  /** Subscribes to interrupts of `rids` (empty: all). Iterate with `for await`; call cancel() to stop. */
  subscribeInterrupts(rids: number[] = []): InterruptSubscription {
    return new InterruptSubscription(this.interruptService.subscribeInterrupts({ rids }));
  }

  // ---- session ----
  /** Opens an ordered transaction stream. */
  session(opts: { maxPerMessage?: number } = {}): Session {
    return new Session(this.sessionService.transact(), opts.maxPerMessage ?? 1024);
  }
}

/** Host RAM access by physical address. */
export interface RamAccess {
  /** True when the bytes are accessed directly in the shared RAM file (no RPC). */
  readonly direct: boolean;
  readonly base: bigint;
  readonly size: bigint;
  read(address: bigint, length: number): Promise<Buffer>;
  write(address: bigint, data: Uint8Array): Promise<void>;
  close(): void;
}

function checkRange(base: bigint, size: bigint, address: bigint, length: number): bigint {
  const off = address - base;
  if (off < 0n || off + BigInt(length) > size) throw new RangeError(`[0x${address.toString(16)}, +${length}) is outside RAM`);
  return off;
}

/** RAM through the shared file (Node has no mmap; positional I/O on the same file sees the same page-cache bytes as the emulator's mapping). */
class FileRam implements RamAccess {
  readonly direct = true;
  constructor(private fd: number, readonly base: bigint, readonly size: bigint) {}
  async read(address: bigint, length: number): Promise<Buffer> {
    const off = checkRange(this.base, this.size, address, length);
    const buf = Buffer.alloc(length);
    let done = 0;
    while (done < length) done += readSync(this.fd, buf, done, length - done, Number(off) + done);
    return buf;
  }
  async write(address: bigint, data: Uint8Array): Promise<void> {
    const off = checkRange(this.base, this.size, address, data.length);
    let done = 0;
    while (done < data.length) done += writeSync(this.fd, data, done, data.length - done, Number(off) + done);
  }
  close(): void { closeSync(this.fd); }
}

class RpcRam implements RamAccess {
  readonly direct = false;
  constructor(private client: PcieEmuClient, readonly base: bigint, readonly size: bigint) {}
  read(address: bigint, length: number): Promise<Buffer> {
    checkRange(this.base, this.size, address, length);
    return this.client.readMemory(address, length);
  }
  async write(address: bigint, data: Uint8Array): Promise<void> {
    checkRange(this.base, this.size, address, data.length);
    await this.client.writeMemory(address, data);
  }
  close(): void {}
}

/** An interrupt subscription: an async iterable of events. */
export class InterruptSubscription implements AsyncIterable<InterruptEvent> {
  /** Resolves when the server has accepted the subscription (response headers arrived). */
  readonly opened: Promise<grpc.Metadata>;
  constructor(readonly call: grpc.ClientReadableStream<InterruptEvent>) {
    this.opened = new Promise((res, rej) => {
      call.once('metadata', res);
      call.once('error', rej);
    });
    this.opened.catch(() => {});
  }
  async *[Symbol.asyncIterator](): AsyncIterator<InterruptEvent> {
    try {
      for await (const ev of this.call) yield ev as InterruptEvent;
    } catch (e) {
      if ((e as grpc.ServiceError).code === grpc.status.CANCELLED) return;
      throw e;
    }
  }
  cancel(): void { this.call.cancel(); }
}
