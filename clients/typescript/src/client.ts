/** The PcieEmu client: one channel (TCP or Unix socket) and typed helpers over every service.
 *  Every call takes CallOptions: an AbortSignal and a deadline (unary calls: 30 s unless the
 *  client or the call sets another; streams: none unless given). */
import * as grpc from '@grpc/grpc-js';
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { formatBdf } from './bdf.js';
import { Regs } from './regs.js';
import { Session } from './session.js';
import { checkLayout, loadRingNative, mapRingFile, Ring } from './ring.js';
import type { RingOptions } from './ring.js';
import { CompletionStatus } from './gen/pcieemu/v1/common.js';
import { ConfigServiceClient, ReadConfigRequest, WriteConfigRequest } from './gen/pcieemu/v1/config.js';
import { CaptureFramesRequest, EthernetServiceClient, InjectFrameRequest } from './gen/pcieemu/v1/ethernet.js';
import type { CapturedFrame, InjectFrameResponse } from './gen/pcieemu/v1/ethernet.js';
import { InterruptServiceClient, SubscribeInterruptsRequest } from './gen/pcieemu/v1/interrupt.js';
import type { InterruptEvent } from './gen/pcieemu/v1/interrupt.js';
import { IommuServiceClient, TranslateAddressRequest } from './gen/pcieemu/v1/iommu.js';
import type { TranslateAddressResponse } from './gen/pcieemu/v1/iommu.js';
import { MemoryServiceClient, ReadMemoryRequest, WriteMemoryRequest } from './gen/pcieemu/v1/memory.js';
import { MmioServiceClient, ReadMmioRequest, WriteMmioRequest } from './gen/pcieemu/v1/mmio.js';
import { GetPlatformRequest, ListFunctionsRequest, PlatformServiceClient, ResetPlatformRequest } from './gen/pcieemu/v1/platform.js';
import type { FunctionMessage as PcieFunction, GetPlatformResponse } from './gen/pcieemu/v1/platform.js';
import { OpenRingRequest, SessionServiceClient } from './gen/pcieemu/v1/session.js';
import type { OpenRingResponse } from './gen/pcieemu/v1/session.js';
import { ClearViolationsRequest, GetViolationsRequest, TraceFilter, TraceServiceClient } from './gen/pcieemu/v1/trace.js';
import type { GetViolationsResponse, TraceEvent, Violation } from './gen/pcieemu/v1/trace.js';

export { CompletionStatus };
export type { CapturedFrame, GetViolationsResponse, InjectFrameResponse, InterruptEvent, TraceEvent, TranslateAddressResponse, Violation };
export type Status = CompletionStatus;
export type Platform = GetPlatformResponse;
export type PciFunction = PcieFunction;

/** Options every call takes. */
export interface CallOptions {
  /** Aborting it cancels the call (its promise rejects with the signal's reason; a stream ends). */
  signal?: AbortSignal;
  /** Deadline in milliseconds from now: unary calls default to the client's (30 s); streams have none unless set. */
  timeoutMs?: number;
}

/** The default deadline of unary calls, in milliseconds. */
export const DEFAULT_TIMEOUT_MS = 30_000;
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
  /** Default deadline of each unary call in milliseconds (default 30 s; each call can override it). */
  timeoutMs?: number;
  /** How long connect() waits for the server (ms, default 10 s; 0: do not wait). */
  waitMs?: number;
  /** TCP: the server's token (default: tokenFile, $PCIEEMU_TOKEN, the default token file). */
  token?: string;
  /** TCP: a file holding the token (as written by `pcie-emu serve --token-file`). */
  tokenFile?: string;
}

export interface SriovOptions extends CallOptions {
  /** ARI: undefined (default) = on when the port (ARI Forwarding Supported) and the device (ARI
   *  capability) support it; true = on (throws when unsupported); false = off. Sets ARI Forwarding
   *  Enable in the port and ARI Capable Hierarchy in function 0. */
  ari?: boolean;
  /** Wait after changing VF Enable, in ms (default 100, the spec's settle time). */
  settleMs?: number;
}

/** Options of TranslateAddress. */
export interface TranslateOptions extends CallOptions {
  /** Translate for a write (default: a read). */
  write?: boolean;
  /** Do not record a fault (default true). */
  dryRun?: boolean;
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

/** Waits `ms`; rejects with the signal's reason when it aborts first. */
/** Sleeps at least `ms` by the monotonic clock (a timer may fire up to a millisecond early, and a
 *  driver's 100 ms settle time must never be 99.x ms). */
async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  const end = performance.now() + ms;
  for (let left = ms; left > 0; left = end - performance.now()) await sleepOnce(Math.ceil(left), signal);
}

function sleepOnce(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) { reject(signal.reason); return; }
    const onAbort = () => { clearTimeout(t); reject(signal!.reason); };
    const t = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** A streaming call's options: the deadline only when asked for; cancel() on abort. */
function streamOptions(o: CallOptions): grpc.CallOptions {
  return o.timeoutMs !== undefined ? { deadline: Date.now() + o.timeoutMs } : {};
}

function cancelOnAbort(call: { cancel(): void }, signal?: AbortSignal): void {
  if (!signal) return;
  if (signal.aborted) call.cancel();
  else signal.addEventListener('abort', () => call.cancel(), { once: true });
}

type Callback<Res> = (e: grpc.ServiceError | null, r?: Res) => void;
type UnaryMethod<Req, Res> = (req: Req, md: grpc.Metadata, opts: Partial<grpc.CallOptions>, cb: Callback<Res>) => grpc.ClientUnaryCall;

export class PcieEmuClient {
  readonly channel: grpc.Channel;
  readonly platformService: PlatformServiceClient;
  readonly configService: ConfigServiceClient;
  readonly mmioService: MmioServiceClient;
  readonly memoryService: MemoryServiceClient;
  readonly interruptService: InterruptServiceClient;
  readonly sessionService: SessionServiceClient;
  readonly ethernetService: EthernetServiceClient;
  readonly iommuService: IommuServiceClient;
  readonly traceService: TraceServiceClient;
  /** Whether calls carry a token (TCP with a token found). */
  readonly hasToken: boolean;
  /** The default deadline of unary calls (ms). */
  readonly timeoutMs: number;

  private constructor(target: string, opts: ConnectOptions) {
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const creds = grpc.credentials.createInsecure();
    const chOpts: grpc.ChannelOptions = { 'grpc.max_receive_message_length': 64 << 20 };
    const gt = grpcTarget(target);
    // The Unix socket needs no token (its mode is the guard); TCP sends the server's token.
    const token = gt.startsWith('unix:') ? undefined : resolveToken(opts.token, opts.tokenFile);
    this.hasToken = token !== undefined;
    this.channel = new grpc.Channel(gt, creds, chOpts);
    const o: Partial<grpc.ClientOptions> = { channelOverride: this.channel, interceptors: token ? [bearerInterceptor(token)] : [] };
    this.platformService = new PlatformServiceClient(gt, creds, o);
    this.configService = new ConfigServiceClient(gt, creds, o);
    this.mmioService = new MmioServiceClient(gt, creds, o);
    this.memoryService = new MemoryServiceClient(gt, creds, o);
    this.interruptService = new InterruptServiceClient(gt, creds, o);
    this.sessionService = new SessionServiceClient(gt, creds, o);
    this.ethernetService = new EthernetServiceClient(gt, creds, o);
    this.iommuService = new IommuServiceClient(gt, creds, o);
    this.traceService = new TraceServiceClient(gt, creds, o);
  }

  /** Connects to a server ("tcp://127.0.0.1:50551", "unix:///path"; default: defaultTarget())
   *  and waits until the channel is ready (opts.waitMs, default 10 s). On TCP every call carries
   *  the token found by resolveToken(opts.token, opts.tokenFile). */
  static async connect(target?: string, opts: ConnectOptions = {}): Promise<PcieEmuClient> {
    const c = new PcieEmuClient(target || defaultTarget(), opts);
    if (opts.waitMs === 0) return c;
    try {
      await new Promise<void>((res, rej) =>
        c.platformService.waitForReady(Date.now() + (opts.waitMs ?? 10_000), (e) => (e ? rej(e) : res())));
    } catch (e) {
      c.close();
      throw new Error(`no PcieEmu server answered at ${target || defaultTarget()}: ${(e as Error).message}`);
    }
    return c;
  }

  close(): void {
    this.platformService.close();
    this.channel.close();
  }

  /** One unary call with the deadline (o.timeoutMs, else the client's) and o.signal wired to cancel. */
  private unary<Req, Res>(svc: grpc.Client, method: UnaryMethod<Req, Res>, req: Req, o: CallOptions = {}): Promise<Res> {
    const signal = o.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<Res>((resolve, reject) => {
      const onAbort = () => call.cancel();
      const call = method.call(svc, req, new grpc.Metadata(), { deadline: Date.now() + (o.timeoutMs ?? this.timeoutMs) },
        (e, r) => {
          signal?.removeEventListener('abort', onAbort);
          if (e) reject(signal?.aborted ? signal.reason : e);
          else resolve(r as Res);
        });
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  // ---- platform ----
  getPlatform(o?: CallOptions): Promise<Platform> {
    return this.unary(this.platformService, this.platformService.getPlatform, GetPlatformRequest.fromPartial({}), o);
  }
  async listFunctions(o?: CallOptions): Promise<PciFunction[]> {
    return (await this.unary(this.platformService, this.platformService.listFunctions, ListFunctionsRequest.fromPartial({}), o)).functions;
  }
  /** Cold platform reset; resolves to the number of functions after it. */
  async resetPlatform(o?: CallOptions): Promise<number> {
    return (await this.unary(this.platformService, this.platformService.resetPlatform, ResetPlatformRequest.fromPartial({}), o)).functions;
  }

  // ---- config (rid: the routing ID, an unsigned 32-bit number on the wire, 0..0xFFFF) ----
  async readConfig(rid: number, offset: number, width: number, o?: CallOptions): Promise<ConfigRead> {
    const r = await this.unary(this.configService, this.configService.readConfig, ReadConfigRequest.fromPartial({ rid, offset, width }), o);
    return { status: r.status, value: r.value };
  }
  async writeConfig(rid: number, offset: number, width: number, value: number, o?: CallOptions): Promise<Status> {
    const req = WriteConfigRequest.fromPartial({ rid, offset, width, value: value >>> 0 });
    return (await this.unary(this.configService, this.configService.writeConfig, req, o)).status;
  }
  /** Reads 1 byte (all ones on UR, as hardware returns). */
  async readConfig8(rid: number, offset: number, o?: CallOptions): Promise<number> { return (await this.readConfig(rid, offset, 1, o)).value; }
  async readConfig16(rid: number, offset: number, o?: CallOptions): Promise<number> { return (await this.readConfig(rid, offset, 2, o)).value; }
  async readConfig32(rid: number, offset: number, o?: CallOptions): Promise<number> { return (await this.readConfig(rid, offset, 4, o)).value >>> 0; }
  writeConfig8(rid: number, offset: number, v: number, o?: CallOptions): Promise<Status> { return this.writeConfig(rid, offset, 1, v, o); }
  writeConfig16(rid: number, offset: number, v: number, o?: CallOptions): Promise<Status> { return this.writeConfig(rid, offset, 2, v, o); }
  writeConfig32(rid: number, offset: number, v: number, o?: CallOptions): Promise<Status> { return this.writeConfig(rid, offset, 4, v >>> 0, o); }

  // ---- MMIO ----
  async readMmio(address: bigint, width: number, o?: CallOptions): Promise<MmioRead> {
    const r = await this.unary(this.mmioService, this.mmioService.readMmio, ReadMmioRequest.fromPartial({ address: address.toString(), width }), o);
    return { status: r.status, value: BigInt(r.value) };
  }
  async writeMmio(address: bigint, width: number, value: bigint, o?: CallOptions): Promise<Status> {
    const req = WriteMmioRequest.fromPartial({ address: address.toString(), width, value: value.toString() });
    return (await this.unary(this.mmioService, this.mmioService.writeMmio, req, o)).status;
  }

  // ---- memory over RPC ----
  async readMemory(address: bigint, length: number, o?: CallOptions): Promise<Buffer> {
    const req = ReadMemoryRequest.fromPartial({ address: address.toString(), length });
    return (await this.unary(this.memoryService, this.memoryService.readMemory, req, o)).data;
  }
  async writeMemory(address: bigint, data: Uint8Array, o?: CallOptions): Promise<number> {
    const req = WriteMemoryRequest.fromPartial({ address: address.toString(), data: Buffer.from(data) });
    return (await this.unary(this.memoryService, this.memoryService.writeMemory, req, o)).length;
  }

  // ---- Ethernet ----
  /** Delivers `data` (destination MAC first, no FCS) to NIC port `port` from the link partner. */
  injectFrame(port: number, data: Uint8Array, o?: CallOptions): Promise<InjectFrameResponse> {
    const req = InjectFrameRequest.fromPartial({ port, data: Buffer.from(data) });
    return this.unary(this.ethernetService, this.ethernetService.injectFrame, req, o);
  }
  /** Frames port `port` transmits onto the wire; live once `opened` resolves. `for await` it;
   *  cancel() or o.signal ends it. */
  captureFrames(port = 0, o: CallOptions = {}): StreamSubscription<CapturedFrame> {
    const call = this.ethernetService.captureFrames(CaptureFramesRequest.fromPartial({ port }), new grpc.Metadata(), streamOptions(o));
    cancelOnAbort(call, o.signal);
    return new StreamSubscription<CapturedFrame>(call);
  }

  // ---- IOMMU ----
  /** IommuService.TranslateAddress for `rid` at `address` (a dry run and a read unless told). */
  translateAddress(rid: number, address: bigint, o: TranslateOptions = {}): Promise<TranslateAddressResponse> {
    const req = TranslateAddressRequest.fromPartial({ rid, address: address.toString(), write: o.write ?? false, dry_run: o.dryRun ?? true });
    return this.unary(this.iommuService, this.iommuService.translateAddress, req, o);
  }

  // ---- capability walks (PCI 3.0 §6.7, PCIe Base §7.6) ----
  /** Walks the standard capability list (stops on a loop or a pointer into the header). */
  async capabilities(rid: number, o?: CallOptions): Promise<Capability[]> {
    const caps: Capability[] = [];
    const status = await this.readConfig(rid, Regs.STATUS, 2, o);
    if (status.status !== CompletionStatus.COMPLETION_STATUS_SUCCESSFUL || !(status.value & Regs.STATUS_CAP_LIST)) return caps;
    let ptr = (await this.readConfig8(rid, Regs.CAP_PTR, o)) & 0xfc;
    const seen = new Set<number>();
    while (ptr >= 0x40 && !seen.has(ptr) && caps.length < 48) {
      seen.add(ptr);
      const hdr = await this.readConfig16(rid, ptr, o);
      caps.push({ id: hdr & 0xff, offset: ptr });
      ptr = (hdr >> 8) & 0xfc;
    }
    return caps;
  }
  /** Walks the extended capability list from 0x100 (none if the header reads 0 or all ones). */
  async extendedCapabilities(rid: number, o?: CallOptions): Promise<ExtendedCapability[]> {
    const caps: ExtendedCapability[] = [];
    let off: number = Regs.EXT_CAP_START;
    const seen = new Set<number>();
    while (off >= Regs.EXT_CAP_START && off < 0x1000 && !seen.has(off)) {
      seen.add(off);
      const r = await this.readConfig(rid, off, 4, o);
      const hdr = r.value >>> 0;
      if (r.status !== CompletionStatus.COMPLETION_STATUS_SUCCESSFUL || hdr === 0 || hdr === 0xffffffff) break;
      caps.push({ id: hdr & 0xffff, version: (hdr >>> 16) & 0xf, offset: off });
      off = (hdr >>> 20) & 0xffc;
    }
    return caps;
  }
  async findCapability(rid: number, id: number, o?: CallOptions): Promise<number> {
    return (await this.capabilities(rid, o)).find((c) => c.id === id)?.offset ?? 0;
  }
  async findExtendedCapability(rid: number, id: number, o?: CallOptions): Promise<number> {
    return (await this.extendedCapabilities(rid, o)).find((c) => c.id === id)?.offset ?? 0;
  }

  // ---- SR-IOV (Linux-style) ----
  /** Enables `numVfs` VFs on a PF as Linux does; returns their routing IDs. */
  async enableSriov(pfRid: number, numVfs: number, opts: SriovOptions = {}): Promise<number[]> {
    const sriov = await this.findExtendedCapability(pfRid, Regs.EXT_CAP_ID_SRIOV, opts);
    if (!sriov) throw new Error(`${formatBdf(pfRid)} has no SR-IOV capability`);
    const total = await this.readConfig16(pfRid, sriov + Regs.SRIOV_TOTAL_VFS, opts);
    if (!Number.isInteger(numVfs) || numVfs < 1 || numVfs > total) throw new RangeError(`numVfs must be 1..${total} (TotalVFs), was ${numVfs}`);
    const ctl = await this.readConfig16(pfRid, sriov + Regs.SRIOV_CTRL, opts);
    if (ctl & Regs.SRIOV_CTRL_VFE) throw new Error(`${formatBdf(pfRid)}: VF Enable is already set`);

    const platform = await this.getPlatform(opts);
    const port = platform.root_ports.find((p) => p.secondary_bus <= pfRid >> 8 && pfRid >> 8 <= p.subordinate_bus);
    const supported = !!port && port.ari_forwarding_supported && !!(await this.findExtendedCapability(pfRid, Regs.EXT_CAP_ID_ARI, opts));
    if (opts.ari === true && !supported) throw new Error(`ARI requested but the port above ${formatBdf(pfRid)} or the device does not support it`);
    if (supported) await this.setAri(port!.rid, pfRid & 0xff00, opts.ari ?? true, opts);

    await this.writeConfig16(pfRid, sriov + Regs.SRIOV_NUM_VFS, numVfs, opts);
    // First VF Offset and VF Stride depend on NumVFs and ARI Capable Hierarchy: reread them now.
    const offset = await this.readConfig16(pfRid, sriov + Regs.SRIOV_VF_OFFSET, opts);
    const stride = await this.readConfig16(pfRid, sriov + Regs.SRIOV_VF_STRIDE, opts);
    const rids = Array.from({ length: numVfs }, (_, i) => pfRid + offset + i * stride);
    if (port && rids.some((r) => r >> 8 > port.subordinate_bus)) {
      await this.writeConfig16(pfRid, sriov + Regs.SRIOV_NUM_VFS, 0, opts);
      throw new Error(`VFs would need bus ${(Math.max(...rids) >> 8).toString(16)}, beyond the port's subordinate bus ${port.subordinate_bus.toString(16)}`);
    }
    // VF Enable and VF MSE in one write.
    const now = await this.readConfig16(pfRid, sriov + Regs.SRIOV_CTRL, opts);
    await this.writeConfig16(pfRid, sriov + Regs.SRIOV_CTRL, now | Regs.SRIOV_CTRL_VFE | Regs.SRIOV_CTRL_MSE, opts);
    await sleep(opts.settleMs ?? 100, opts.signal);
    return rids;
  }

  /** Sets or clears ARI Forwarding Enable in the port and ARI Capable Hierarchy in function 0
   *  (only legal while its VF Enable is clear). */
  private async setAri(portRid: number, fn0: number, on: boolean, o: CallOptions): Promise<void> {
    const pcie = await this.findCapability(portRid, Regs.CAP_ID_PCIE, o);
    if (pcie) {
      const ctl2 = await this.readConfig16(portRid, pcie + Regs.PCIE_DEVCTL2, o);
      const want = on ? ctl2 | Regs.ARI_FORWARDING : ctl2 & ~Regs.ARI_FORWARDING;
      if (want !== ctl2) await this.writeConfig16(portRid, pcie + Regs.PCIE_DEVCTL2, want, o);
    }
    const s0 = await this.findExtendedCapability(fn0, Regs.EXT_CAP_ID_SRIOV, o);
    if (s0) {
      const c0 = await this.readConfig16(fn0, s0 + Regs.SRIOV_CTRL, o);
      if (!(c0 & Regs.SRIOV_CTRL_VFE)) {
        const want = on ? c0 | Regs.SRIOV_CTRL_ARI : c0 & ~Regs.SRIOV_CTRL_ARI;
        if (want !== c0) await this.writeConfig16(fn0, s0 + Regs.SRIOV_CTRL, want, o);
      }
    }
  }

  /** Disables SR-IOV as Linux does: clear VF Enable and VF MSE in one write, wait, NumVFs = 0. */
  async disableSriov(pfRid: number, opts: CallOptions & { settleMs?: number } = {}): Promise<void> {
    const sriov = await this.findExtendedCapability(pfRid, Regs.EXT_CAP_ID_SRIOV, opts);
    if (!sriov) throw new Error(`${formatBdf(pfRid)} has no SR-IOV capability`);
    const ctl = await this.readConfig16(pfRid, sriov + Regs.SRIOV_CTRL, opts);
    await this.writeConfig16(pfRid, sriov + Regs.SRIOV_CTRL, ctl & ~(Regs.SRIOV_CTRL_VFE | Regs.SRIOV_CTRL_MSE), opts);
    await sleep(opts.settleMs ?? 100, opts.signal);
    await this.writeConfig16(pfRid, sriov + Regs.SRIOV_NUM_VFS, 0, opts);
  }

  // ---- RAM ----
  /** Opens host RAM: the shared file when it is reachable from here (same host), otherwise the
   *  Read/WriteMemory RPCs. `preferRpc` forces the RPC path. */
  async openRam(opts: CallOptions & { preferRpc?: boolean } = {}): Promise<RamAccess> {
    const region = (await this.getPlatform(opts)).ram_regions[0];
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
  /** Subscribes to interrupts of `rids` (empty: all); live once `opened` resolves. Iterate with
   *  `for await`; cancel() or o.signal stops it. */
  subscribeInterrupts(rids: number[] = [], o: CallOptions = {}): StreamSubscription<InterruptEvent> {
    const call = this.interruptService.subscribeInterrupts(SubscribeInterruptsRequest.fromPartial({ rids }), new grpc.Metadata(), streamOptions(o));
    cancelOnAbort(call, o.signal);
    return new StreamSubscription<InterruptEvent>(call);
  }

  // ---- trace ----
  /** Decoded transactions (docs/trace.md) of the functions in `rids` (BDF text such as "01:10.0",
   *  sent as is, or routing IDs) and the kinds named in `kinds` ("config", "mmio", "dma", "msi",
   *  "iommu", "frame", "lifecycle"); empty = all. Events come in the machine's order; a
   *  subscriber that falls behind gets one TRACE_KIND_GAP event whose `missed` is the count it
   *  lost, and the stream goes on. Live once `opened` resolves (which rejects with
   *  INVALID_ARGUMENT naming the field for a bad filter); `for await` it; cancel() or o.signal
   *  ends it; no deadline unless o.timeoutMs. */
  subscribeTrace(rids: (number | string)[] = [], kinds: string[] = [], o: CallOptions = {}): StreamSubscription<TraceEvent> {
    const req = TraceFilter.fromPartial({ rids: rids.map((r) => (typeof r === 'string' ? r : formatBdf(r))), kinds });
    const call = this.traceService.subscribe(req, new grpc.Metadata(), streamOptions(o));
    cancelOnAbort(call, o.signal);
    return new StreamSubscription<TraceEvent>(call);
  }

  // ---- driver-conduct checker (docs/checker.md) ----
  /** The checker's violations so far, oldest first: only those of `ruleIds` and of the functions
   *  in `rids` (BDF text or routing IDs) when given, only those whose sequence is greater than
   *  `afterSequence`. Rejects with FAILED_PRECONDITION when the server runs with --check off,
   *  INVALID_ARGUMENT naming rule_ids[i] / rids[i] for a bad filter. */
  getViolations(filter: { ruleIds?: string[]; rids?: (number | string)[]; afterSequence?: bigint | number } = {},
    o?: CallOptions): Promise<GetViolationsResponse> {
    const req = GetViolationsRequest.fromPartial({
      rule_ids: filter.ruleIds ?? [],
      rids: (filter.rids ?? []).map((r) => (typeof r === 'string' ? r : formatBdf(r))),
      after_sequence: (filter.afterSequence ?? 0).toString(),
    });
    return this.unary(this.traceService, this.traceService.getViolations, req, o);
  }

  /** Forgets the violations recorded so far; resolves to how many. */
  async clearViolations(o?: CallOptions): Promise<number> {
    return (await this.unary(this.traceService, this.traceService.clearViolations, ClearViolationsRequest.fromPartial({}), o)).cleared;
  }

  /** The end of a driver test: rejects with a ViolationsError listing every violation the checker
   *  recorded (of any severity), or resolves when there is none. */
  async assertNoViolations(o?: CallOptions): Promise<void> {
    const r = await this.getViolations({}, o);
    if (r.violations.length > 0 || BigInt(r.dropped) > 0n) throw new ViolationsError(r.violations, BigInt(r.dropped));
  }

  // ---- session ----
  /** Opens an ordered transaction stream; transactions issued in one tick go in one message (up
   *  to maxPerMessage, default 256). o.signal cancels it. */
  session(opts: CallOptions & { maxPerMessage?: number } = {}): Session {
    const call = this.sessionService.transact(new grpc.Metadata(), streamOptions(opts));
    cancelOnAbort(call, opts.signal);
    return new Session(call, opts.maxPerMessage ?? Session.DEFAULT_BATCH);
  }

  // ---- shared-memory ring ----
  /** Opens a shared-memory ring (SessionService.OpenRing; same host only): the server creates a
   *  file, this process maps it (through the optional dependency koffi, loaded now) and from then
   *  on config, MMIO and RAM transactions go through shared memory with the Session stream's
   *  ordering. `o.timeoutMs` bounds the wait for the server's answer (default: the client's unary
   *  deadline); the ring then stays open until `ring.close()` or `o.signal`. Rejects with the
   *  reason when koffi cannot load, with INVALID_ARGUMENT naming the field for a bad size, and
   *  with RESOURCE_EXHAUSTED when the server has Limits:MaxRings open. */
  async openRing(o: RingOptions & CallOptions = {}): Promise<Ring> {
    const nat = await loadRingNative();
    if (o.signal?.aborted) throw o.signal.reason;
    const req = OpenRingRequest.fromPartial({
      submission_entries: o.submissionEntries ?? 0, completion_entries: o.completionEntries ?? 0,
      data_size: o.dataSize ?? 0, spin_microseconds: o.spinMicroseconds ?? 0,
    });
    const call = this.sessionService.openRing(req, new grpc.Metadata(), {});
    let ring: Ring | undefined;
    const layout = await new Promise<OpenRingResponse>((resolve, reject) => {
      const ms = o.timeoutMs ?? this.timeoutMs;
      const timer = setTimeout(() => { call.cancel(); reject(new Error(`OpenRing: no answer from the server within ${ms} ms`)); }, ms);
      const onAbort = () => { call.cancel(); reject(o.signal!.reason); };
      o.signal?.addEventListener('abort', onAbort, { once: true });
      const settle = () => { clearTimeout(timer); o.signal?.removeEventListener('abort', onAbort); };
      call.once('data', (r: OpenRingResponse) => { settle(); resolve(r); });
      call.on('error', (e: grpc.ServiceError) => {
        settle();
        if (ring) ring.ended(new Error(`the ring's OpenRing call ended: ${e.details || e.message}`, { cause: e }));
        else reject(e);
      });
      call.on('end', () => { settle(); ring?.ended(new Error("the ring's OpenRing call ended")); reject(new Error('OpenRing ended without a ring')); });
    });
    try {
      checkLayout(layout);
      const { address, size } = mapRingFile(nat, layout);
      try {
        Ring.checkHeader(layout, nat.view(address, size));
        ring = new Ring(layout, call, nat, address, size, o);
      } catch (e) {
        nat.munmap(address, size);
        throw e;
      }
    } catch (e) {
      call.cancel();
      throw e;
    }
    const r = ring;
    cancelOnAbort({ cancel: () => r.close() }, o.signal);
    return r;
  }
}

/** assertNoViolations' error: the checker recorded violations. The message lists each one's
 *  requester, rule id, spec, event, what the hardware did and the hint. */
export class ViolationsError extends Error {
  constructor(readonly violations: Violation[], readonly dropped: bigint = 0n) {
    super(describeViolations(violations, dropped));
    this.name = 'ViolationsError';
  }
}

/** One line per violation after a count (the text of ViolationsError). */
export function describeViolations(violations: Violation[], dropped: bigint = 0n): string {
  let head = `${violations.length} driver-conduct violation(s)`;
  if (dropped > 0n) head += ` (and ${dropped} not kept)`;
  return [head, ...violations.map((v) =>
    `${v.requester} ${v.rule?.id} (${v.rule?.spec}): ${v.event} -> ${v.outcome}. Hint: ${v.rule?.hint}`)].join('\n');
}

/** Connects to a PcieEmu server: PcieEmuClient.connect(target, opts). */
export function connect(target?: string, opts: ConnectOptions = {}): Promise<PcieEmuClient> {
  return PcieEmuClient.connect(target, opts);
}

/** Host RAM access by physical address. */
export interface RamAccess {
  /** True when the bytes are accessed directly in the shared RAM file (no RPC). */
  readonly direct: boolean;
  readonly base: bigint;
  readonly size: bigint;
  /** `o` applies on the RPC path (the shared file needs no call). */
  read(address: bigint, length: number, o?: CallOptions): Promise<Buffer>;
  write(address: bigint, data: Uint8Array, o?: CallOptions): Promise<void>;
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
  read(address: bigint, length: number, o?: CallOptions): Promise<Buffer> {
    checkRange(this.base, this.size, address, length);
    return this.client.readMemory(address, length, o);
  }
  async write(address: bigint, data: Uint8Array, o?: CallOptions): Promise<void> {
    checkRange(this.base, this.size, address, data.length);
    await this.client.writeMemory(address, data, o);
  }
  close(): void {}
}

/** A server stream (interrupt events, captured frames) as an async iterable. */
export class StreamSubscription<T> implements AsyncIterable<T> {
  /** Resolves when the server has accepted the subscription (response headers arrived). */
  readonly opened: Promise<grpc.Metadata>;
  constructor(readonly call: grpc.ClientReadableStream<T>) {
    this.opened = new Promise((res, rej) => {
      call.once('metadata', res);
      call.once('error', rej);
    });
    this.opened.catch(() => {});
  }
  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    try {
      for await (const ev of this.call) yield ev as T;
    } catch (e) {
      if ((e as grpc.ServiceError).code === grpc.status.CANCELLED) return;
      throw e;
    }
  }
  cancel(): void { this.call.cancel(); }
}

/** The interrupt stream (the name before 0.2.0). */
export type InterruptSubscription = StreamSubscription<InterruptEvent>;

/** The trace stream of subscribeTrace. */
export type TraceSubscription = StreamSubscription<TraceEvent>;
