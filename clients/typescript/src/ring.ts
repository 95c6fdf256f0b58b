/** The shared-memory ring (SessionService.OpenRing; the contract is docs/protocol.md, "Shared-memory
 *  ring"): config, MMIO and RAM transactions as 64-byte entries in a file this process and the
 *  server map, completions back as 32-byte entries; no socket once the ring is open.
 *
 *  Node.js cannot map a file or call futex(2) by itself: the ring uses the optional dependency
 *  koffi (a prebuilt FFI) to call libc's mmap, munmap, sched_yield and syscall. koffi is loaded
 *  the first time a ring is opened, so the rest of the client works where it cannot load. */
import { closeSync, fstatSync, openSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import type { OpenRingResponse } from './gen/pcieemu/v1/session.js';

// Header words (byte offsets; docs/protocol.md, "File layout").
const MAGIC = 0x474e495245494350n; // the bytes "PCIERING", little-endian
const VERSION = 0x08, SQ_ENTRIES = 0x0c, CQ_ENTRIES = 0x10, DATA_SIZE = 0x14, SQ_OFFSET = 0x18, CQ_OFFSET = 0x1c, DATA_OFFSET = 0x20;
const STATE = 0x24, SQ_TAIL = 0x40, SERVER_SLEEPING = 0x44, SQ_HEAD = 0x80, CQ_TAIL = 0xc0, CQ_HEAD = 0x100;
const SQ_ENTRY_SIZE = 64, CQ_ENTRY_SIZE = 32, FLAG_ACK = 1;
const OP_CONFIG_READ = 1, OP_CONFIG_WRITE = 2, OP_MMIO_READ = 3, OP_MMIO_WRITE = 4, OP_MEMORY_READ = 5, OP_MEMORY_WRITE = 6;

/** A completion's `status`: 1-4 are the PCIe completion statuses (CompletionStatus numbers);
 *  INVALID_ARGUMENT and OUT_OF_RANGE mean the server rejected the entry and nothing ran (then
 *  `field` names the culprit). */
export const RingStatus = {
  SUCCESSFUL: 1,
  UNSUPPORTED_REQUEST: 2,
  COMPLETER_ABORT: 3,
  CONFIGURATION_RETRY: 4,
  INVALID_ARGUMENT: 0x100,
  OUT_OF_RANGE: 0x101,
} as const;

/** The entry fields a rejected completion's `field` names, by number (0: none). */
export const RING_FIELDS = ['', 'op', 'flags', 'rid', 'offset', 'width', 'address', 'value', 'data_offset', 'length', 'reserved'] as const;

/** One completion read from the ring. */
export interface RingCompletion {
  /** The tag of the entry it completes (the ring numbers entries from 1). */
  tag: bigint;
  /** The entry's op: 1 config_read, 2 config_write, 3 mmio_read, 4 mmio_write, 5 memory_read,
   *  6 memory_write (TransactionKind numbers); 0 when the op was not valid. */
  kind: number;
  /** See RingStatus. */
  status: number;
  /** status === RingStatus.SUCCESSFUL. */
  ok: boolean;
  /** For a rejected entry, the field at fault (1 op ... 10 reserved; 0 otherwise) ... */
  field: number;
  /** ... and its name ('offset', 'width', ...; '' when none). */
  fieldName: string;
  /** Config and MMIO reads: the value (all ones on UR). */
  value: bigint;
  /** Memory reads: bytes the server placed in the data area. */
  length: number;
  /** Memory reads: a copy of those bytes (empty otherwise). */
  data: Buffer;
}

/** OpenRing's sizes (zero or absent: the server's default) and the client's waiting. */
export interface RingOptions {
  /** Submission slots: a power of two in [2, 4096] (default 256). */
  submissionEntries?: number;
  /** Completion slots: a power of two in [2, 4096] (default 256). */
  completionEntries?: number;
  /** Bytes of the data area memory entries use: a multiple of 64 up to 4 MiB (default 65536). */
  dataSize?: number;
  /** How long the server's ring thread polls an empty ring before it sleeps, in µs (≤ 10000; default 5). */
  spinMicroseconds?: number;
  /** How long this client polls for a completion, blocking the event loop, before it goes back to
   *  the event loop and polls from there with a backoff (µs, default 20, as the Go and C++ clients; 0: never block). */
  clientSpinMicroseconds?: number;
  /** How long a submission may wait for a free slot (the server not consuming) before it throws
   *  (ms, default 10000). That wait blocks the event loop: it happens only when the server's ring
   *  thread is behind by a whole ring. */
  slotWaitMs?: number;
}

/** The part of koffi the ring uses (koffi 3: pointers are bigint addresses). */
interface Koffi {
  load(path: string): { func(proto: string): (...args: unknown[]) => unknown };
  view(ptr: bigint, length: number): ArrayBuffer;
  errno(): number;
}

/** libc through koffi, loaded once. */
export interface RingNative {
  mmap(length: number, fd: number): bigint;
  munmap(address: bigint, length: number): void;
  view(address: bigint, length: number): ArrayBuffer;
  futexWake(address: bigint): void;
  schedYield(): void;
}

const SYS_FUTEX: Record<string, number> = { x64: 202, arm64: 98 };
const FUTEX_WAKE = 1; // shared (no FUTEX_PRIVATE_FLAG): the server is another process
const PROT_READ_WRITE = 0x3, MAP_SHARED = 0x1;

let native: Promise<RingNative> | undefined;

function errnoName(n: number): string {
  const name = Object.entries(osConstants.errno).find(([, v]) => v === n)?.[0];
  return name ? `${name} (${n})` : `errno ${n}`;
}

/** Loads koffi and binds the libc calls; rejects with the reason when it cannot. */
export function loadRingNative(): Promise<RingNative> {
  native ??= (async () => {
    const sysFutex = SYS_FUTEX[process.arch];
    if (process.platform !== 'linux' || sysFutex === undefined)
      throw new Error(`the shared-memory ring needs Linux on x64 or arm64 (this is ${process.platform}/${process.arch}); use session() instead`);
    let k: Koffi;
    try {
      const name = 'koffi'; // not a literal: the build does not need koffi, and neither does a client that never opens a ring
      const m = (await import(name)) as { default?: Koffi } & Koffi;
      k = m.default ?? m;
      if (typeof k.view !== 'function') throw new Error('koffi 3.x is needed (koffi.view is missing)');
    } catch (e) {
      throw new Error('the shared-memory ring needs the optional dependency koffi (npm install koffi@3.3.4), ' +
        `which did not load: ${(e as Error).message}`);
    }
    const libc = k.load('libc.so.6');
    const mmap = libc.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)');
    const munmap = libc.func('int munmap(void *addr, size_t length)');
    const schedYield = libc.func('int sched_yield(void)');
    // syscall(2) is variadic: koffi passes each extra argument with its C type.
    const syscall = libc.func('long syscall(long number, ...)');
    return {
      mmap(length, fd) {
        const p = mmap(null, length, PROT_READ_WRITE, MAP_SHARED, fd, 0) as bigint;
        if (p === 0xffffffffffffffffn || p === -1n) throw new Error(`mmap: ${errnoName(k.errno())}`);
        return p;
      },
      munmap(address, length) { munmap(address, length); },
      view: (address, length) => k.view(address, length),
      futexWake(address) {
        syscall(sysFutex, 'uintptr_t', address, 'int', FUTEX_WAKE, 'int', 1, 'void *', null, 'void *', null, 'int', 0);
      },
      schedYield() { schedYield(); },
    };
  })();
  // A failed load is not cached: the caller may install koffi and try again.
  native.catch(() => { native = undefined; });
  return native;
}

interface Waiter { resolve: (c: RingCompletion) => void; reject: (e: Error) => void; dataAt: number }

function checkInt(name: string, v: number, max: number): number {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new RangeError(`${name}: must be an integer in [0, ${max}] (was ${v})`);
  return v;
}

function checkU64(name: string, v: bigint): bigint {
  if (typeof v !== 'bigint' || v < -(1n << 63n) || v >= 1n << 64n) throw new RangeError(`${name}: must be a bigint that fits in 64 bits (was ${v})`);
  return BigInt.asUintN(64, v);
}

/** A config value: an integer; a negative one down to -2^31 is its 32-bit two's complement
 *  (so -1 writes all ones); one over 32 bits goes to the server, which rejects it (field value). */
function configValue(v: number): bigint {
  if (!Number.isSafeInteger(v) || v < -0x80000000) throw new RangeError(`value: must be an integer (a config write is at most 32 bits; was ${v})`);
  return BigInt(v < 0 ? v >>> 0 : v);
}

/**
 * An open ring (client.openRing()). Same ordering as the Session stream: entries execute in the
 * order they are issued; writes are posted (they return at once and complete only when they fail,
 * see `postedErrors`, or with the Ack variants); a read resolves with its completion and sees every
 * earlier write. Entries are written into shared memory when issued; completions are collected
 * right after the issuing code yields (a short spin, then from the event loop with a backoff).
 * One JavaScript thread drives a ring.
 *
 * Arguments the entry format cannot carry (a rid over 0xFFFF, a memory transfer larger than the
 * data area...) throw RangeError naming the argument; everything else is the server's to judge:
 * a bad entry completes with RingStatus.INVALID_ARGUMENT or OUT_OF_RANGE and `fieldName`.
 */
export class Ring {
  /** Completions of posted writes that did not complete successfully, in arrival order. */
  readonly postedErrors: RingCompletion[] = [];
  private readonly listeners: ((c: RingCompletion) => void)[] = [];
  private readonly waiters = new Map<bigint, Waiter>();
  private mem: { u8: Uint8Array; u32: Uint32Array; dv: DataView } | undefined;
  private readonly sqEntries: number;
  private readonly cqEntries: number;
  private readonly dataSize: number;
  private readonly sqOffset: number;
  private readonly cqOffset: number;
  private readonly dataOffset: number;
  private sqTail = 0;
  private cqHead = 0;
  private dataUsed = 0;
  private dataMark = 0;
  private nextTag = 1n;
  private failure: Error | undefined;
  private pumpScheduled = false;
  private waitStart = 0;
  private backoff = 0;
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private readonly clientSpinMs: number;
  private readonly slotWaitMs: number;

  /** @internal client.openRing() makes rings. */
  constructor(
    /** The server's answer: the file, its sizes and offsets. */
    readonly layout: OpenRingResponse,
    private readonly call: { cancel(): void },
    private readonly nat: RingNative,
    private readonly address: bigint,
    private readonly size: number,
    opts: RingOptions,
  ) {
    const buf = nat.view(address, size);
    this.mem = { u8: new Uint8Array(buf), u32: new Uint32Array(buf), dv: new DataView(buf) };
    this.sqEntries = layout.submission_entries;
    this.cqEntries = layout.completion_entries;
    this.dataSize = layout.data_size;
    this.sqOffset = layout.submission_offset;
    this.cqOffset = layout.completion_offset;
    this.dataOffset = layout.data_offset;
    this.clientSpinMs = (opts.clientSpinMicroseconds ?? 20) / 1000;
    this.slotWaitMs = opts.slotWaitMs ?? 10_000;
  }

  /** Checks the mapped header against the server's answer; throws naming the first mismatch. */
  static checkHeader(layout: OpenRingResponse, buf: ArrayBuffer): void {
    const dv = new DataView(buf);
    const expect = (what: string, at: number, want: number) => {
      const got = dv.getUint32(at, true);
      if (got !== want) throw new Error(`ring file ${layout.path}: header ${what} is ${got}, the server said ${want}`);
    };
    if (dv.getBigUint64(0, true) !== MAGIC) throw new Error(`ring file ${layout.path}: no PCIERING magic`);
    expect('version', VERSION, 1);
    expect('submission entries', SQ_ENTRIES, layout.submission_entries);
    expect('completion entries', CQ_ENTRIES, layout.completion_entries);
    expect('data size', DATA_SIZE, layout.data_size);
    expect('submission offset', SQ_OFFSET, layout.submission_offset);
    expect('completion offset', CQ_OFFSET, layout.completion_offset);
    expect('data offset', DATA_OFFSET, layout.data_offset);
  }

  /** Called for each posted write that fails. */
  onPostedError(listener: (c: RingCompletion) => void): void { this.listeners.push(listener); }

  /** True once close() ran or the server closed the ring. */
  get closed(): boolean { return this.mem === undefined || this.mem.u32[STATE >> 2] !== 0; }

  /** Why the ring ended, if it did. */
  get error(): Error | undefined { return this.failure; }

  configRead(rid: number, offset: number, width: number): Promise<RingCompletion> {
    return this.rejecting(() => this.issueWait(OP_CONFIG_READ, 0, this.rid(rid), checkInt('offset', offset, 0xffff), checkInt('width', width, 0xff), 0n, 0n));
  }
  /** Posts a config write (a failure lands in postedErrors). */
  configWrite(rid: number, offset: number, width: number, value: number): void {
    this.submit(OP_CONFIG_WRITE, 0, this.rid(rid), checkInt('offset', offset, 0xffff), checkInt('width', width, 0xff), 0n, configValue(value));
  }
  configWriteAck(rid: number, offset: number, width: number, value: number): Promise<RingCompletion> {
    return this.rejecting(() => this.issueWait(OP_CONFIG_WRITE, FLAG_ACK, this.rid(rid), checkInt('offset', offset, 0xffff), checkInt('width', width, 0xff), 0n, configValue(value)));
  }
  mmioRead(address: bigint, width: number): Promise<RingCompletion> {
    return this.rejecting(() => this.issueWait(OP_MMIO_READ, 0, 0, 0, checkInt('width', width, 0xff), checkU64('address', address), 0n));
  }
  /** Posts a memory-space write (a failure lands in postedErrors). */
  mmioWrite(address: bigint, width: number, value: bigint): void {
    this.submit(OP_MMIO_WRITE, 0, 0, 0, checkInt('width', width, 0xff), checkU64('address', address), checkU64('value', value));
  }
  mmioWriteAck(address: bigint, width: number, value: bigint): Promise<RingCompletion> {
    return this.rejecting(() => this.issueWait(OP_MMIO_WRITE, FLAG_ACK, 0, 0, checkInt('width', width, 0xff), checkU64('address', address), checkU64('value', value)));
  }
  /** Reads `length` bytes of RAM through the data area: the completion's `data` holds them. */
  memoryRead(address: bigint, length: number): Promise<RingCompletion> {
    return this.rejecting(() => {
      const a = checkU64('address', address);
      const at = this.reserve(length);
      return this.issueWait(OP_MEMORY_READ, 0, 0, 0, 0, a, 0n, at, length);
    });
  }
  /** Posts a RAM write of `data` (copied into the data area now; a failure lands in postedErrors). */
  memoryWrite(address: bigint, data: Uint8Array): void {
    const a = checkU64('address', address);
    const at = this.reserve(data.length);
    this.mem!.u8.set(data, this.dataOffset + at);
    this.submit(OP_MEMORY_WRITE, 0, 0, 0, 0, a, 0n, at, data.length);
  }
  memoryWriteAck(address: bigint, data: Uint8Array): Promise<RingCompletion> {
    return this.rejecting(() => {
      const a = checkU64('address', address);
      const at = this.reserve(data.length);
      this.mem!.u8.set(data, this.dataOffset + at);
      return this.issueWait(OP_MEMORY_WRITE, FLAG_ACK, 0, 0, 0, a, 0n, at, data.length);
    });
  }

  /** Closes the ring: cancels the OpenRing call (the server stops its thread at the next entry
   *  and deletes the file), unmaps it and rejects what is still waiting. Idempotent. */
  close(): void {
    if (!this.mem) return;
    this.call.cancel();
    this.end(new Error('ring closed'));
  }

  /** @internal The OpenRing call ended (the server stopped, or the client broke the protocol). */
  ended(e: Error): void {
    if (this.mem) this.end(e);
  }

  private end(e: Error): void {
    this.failure ??= e;
    clearTimeout(this.timer);
    clearImmediate(this.immediate);
    this.timer = this.immediate = undefined;
    this.pumpScheduled = false;
    // Nothing reads the mapping after this (every access goes through this.mem).
    this.mem = undefined;
    this.nat.munmap(this.address, this.size);
    const waiters = [...this.waiters.values()];
    this.waiters.clear();
    for (const w of waiters) w.reject(this.failure);
  }

  private rid(rid: number): number { return checkInt('rid', rid, 0xffff); }

  private live(): NonNullable<Ring['mem']> {
    if (!this.mem) throw this.failure ?? new Error('ring closed');
    if (this.mem.u32[STATE >> 2] !== 0) {
      const e = new Error('the server closed the ring');
      this.end(e);
      throw e;
    }
    return this.mem;
  }

  /** A bad argument or a closed ring rejects the promise (the posted writes throw instead). */
  private rejecting(issue: () => Promise<RingCompletion>): Promise<RingCompletion> {
    try {
      return issue();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  private issueWait(op: number, flags: number, rid: number, offset: number, width: number, address: bigint, value: bigint,
    dataAt = 0, length = 0): Promise<RingCompletion> {
    const tag = this.submit(op, flags, rid, offset, width, address, value, dataAt, length);
    const p = new Promise<RingCompletion>((resolve, reject) =>
      this.waiters.set(tag, { resolve, reject, dataAt: op === OP_MEMORY_READ ? dataAt : -1 }));
    this.schedulePump();
    return p;
  }

  /** Writes one entry and publishes it (docs/protocol.md, "Publishing and waiting"). */
  private submit(op: number, flags: number, rid: number, offset: number, width: number, address: bigint, value: bigint,
    dataAt = 0, length = 0): bigint {
    let m = this.live();
    if (((this.sqTail - Atomics.load(m.u32, SQ_HEAD >> 2)) >>> 0) >= this.sqEntries) m = this.waitFor(() => ((this.sqTail - Atomics.load(this.mem!.u32, SQ_HEAD >> 2)) >>> 0) < this.sqEntries, 'a free submission slot');
    const tag = this.nextTag++;
    const at = this.sqOffset + (this.sqTail & (this.sqEntries - 1)) * SQ_ENTRY_SIZE;
    const dv = m.dv;
    m.u8.fill(0, at, at + SQ_ENTRY_SIZE);
    dv.setBigUint64(at, tag, true);
    dv.setUint8(at + 0x08, op);
    dv.setUint8(at + 0x09, flags);
    dv.setUint16(at + 0x0a, rid, true);
    dv.setUint16(at + 0x0c, offset, true);
    dv.setUint8(at + 0x0e, width);
    dv.setBigUint64(at + 0x10, address, true);
    dv.setBigUint64(at + 0x18, value, true);
    dv.setUint32(at + 0x20, dataAt, true);
    dv.setUint32(at + 0x24, length, true);
    this.sqTail = (this.sqTail + 1) >>> 0;
    // Atomics.store is sequentially consistent (a full barrier; V8 does the same on a non-shared
    // buffer): the slot is visible before the tail, and the tail before we read "server sleeping".
    Atomics.store(m.u32, SQ_TAIL >> 2, this.sqTail);
    if (Atomics.load(m.u32, SERVER_SLEEPING >> 2) !== 0) this.nat.futexWake(this.address + BigInt(SQ_TAIL));
    return tag;
  }

  /** Places `length` bytes of one memory entry in the data area; when the area is used up, waits
   *  until the server has consumed every entry whose bytes are there (and collects the reads among
   *  them, copying their bytes out) before reusing it from the start. */
  private reserve(length: number): number {
    checkInt('length', length, this.dataSize);
    this.live();
    if (this.dataUsed + length > this.dataSize) {
      this.waitFor(() => ((Atomics.load(this.mem!.u32, SQ_HEAD >> 2) - this.dataMark) | 0) >= 0, 'the data area');
      this.reap();
      this.dataUsed = 0;
    }
    const at = this.dataUsed;
    this.dataUsed += (length + 63) & ~63;
    this.dataMark = (this.sqTail + 1) >>> 0;
    return at;
  }

  /** Synchronous wait for `ready` (collecting completions meanwhile, so a server waiting for
   *  completion space can go on): polls, then yields the processor; throws after slotWaitMs. */
  private waitFor(ready: () => boolean, what: string): NonNullable<Ring['mem']> {
    const end = performance.now() + this.slotWaitMs;
    for (let n = 0; ; n++) {
      this.reap();
      const m = this.live();
      if (ready()) return m;
      if (performance.now() > end) throw new Error(`ring: no progress waiting for ${what} for ${this.slotWaitMs} ms (the server's ring thread is not consuming)`);
      if (n > 32) this.nat.schedYield();
    }
  }

  /** Reads every completion available; resolves waiters, files the others as failed posted writes. */
  private reap(): number {
    const m = this.mem;
    if (!m) return 0;
    const tail = Atomics.load(m.u32, CQ_TAIL >> 2);
    let n = 0;
    // (A listener may issue entries and so collect completions itself: compare, do not expect equality.)
    while (((tail - this.cqHead) | 0) > 0) {
      const at = this.cqOffset + (this.cqHead & (this.cqEntries - 1)) * CQ_ENTRY_SIZE;
      const dv = m.dv;
      const field = dv.getUint8(at + 0x11), status = dv.getUint16(at + 0x12, true), length = dv.getUint32(at + 0x14, true);
      const c: RingCompletion = {
        tag: dv.getBigUint64(at, true), value: dv.getBigUint64(at + 0x08, true), kind: dv.getUint8(at + 0x10),
        field, fieldName: RING_FIELDS[field] ?? `field ${field}`, status, ok: status === RingStatus.SUCCESSFUL, length, data: EMPTY,
      };
      const w = this.waiters.get(c.tag);
      if (w && w.dataAt >= 0 && c.ok && length <= this.dataSize - w.dataAt)
        c.data = Buffer.from(m.u8.subarray(this.dataOffset + w.dataAt, this.dataOffset + w.dataAt + length)); // a copy
      this.cqHead = (this.cqHead + 1) >>> 0;
      Atomics.store(m.u32, CQ_HEAD >> 2, this.cqHead);
      n++;
      if (w) {
        this.waiters.delete(c.tag);
        w.resolve(c);
      } else {
        this.postedErrors.push(c);
        for (const l of this.listeners) {
          try {
            l(c);
          } catch (e) {
            queueMicrotask(() => { throw e; }); // the listener's error is its own, not the ring's
          }
        }
      }
    }
    return n;
  }

  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    this.waitStart = performance.now();
    this.backoff = 0;
    // After the code that issued the read yields (so entries issued together go out together).
    queueMicrotask(() => this.pump(true));
  }

  /** Collects completions while someone waits: first a spin of clientSpinMicroseconds (Atomics
   *  loads, then sched_yield so the server's thread can run on a busy CPU), then from the event
   *  loop: setImmediate for the first millisecond, then timers of 1, 2, 4, 8 and 10 ms. The client
   *  never sleeps in FUTEX_WAIT (that would block the event loop), so it never sets "client
   *  sleeping" and the server never has to wake it. */
  private pump(spin: boolean): void {
    this.timer = this.immediate = undefined;
    if (!this.mem) { this.pumpScheduled = false; return; }
    try {
      if (this.reap() > 0) { this.waitStart = performance.now(); this.backoff = 0; }
      if (spin && this.waiters.size > 0 && this.clientSpinMs > 0) {
        const end = performance.now() + this.clientSpinMs;
        for (let n = 0; this.waiters.size > 0 && this.mem && performance.now() < end; n++) {
          if (this.reap() === 0 && n >= 32) this.nat.schedYield();
        }
      }
      if (this.waiters.size === 0) { this.pumpScheduled = false; return; }
      this.live();
    } catch (e) {
      this.pumpScheduled = false;
      if (this.mem) this.end(e as Error);
      return;
    }
    const waited = performance.now() - this.waitStart;
    if (waited < 1) { this.immediate = setImmediate(() => this.pump(false)); return; }
    const ms = Math.min(1 << this.backoff, 10);
    this.backoff = Math.min(this.backoff + 1, 4);
    this.timer = setTimeout(() => this.pump(false), ms);
  }
}

const EMPTY = Buffer.alloc(0);

/** Maps the ring file the server named; returns its address (unmap with munmap). */
export function mapRingFile(nat: RingNative, layout: OpenRingResponse): { address: bigint; size: number } {
  const size = Number(layout.size);
  let fd: number;
  try {
    fd = openSync(layout.path, 'r+');
  } catch (e) {
    throw new Error(`OpenRing: cannot open the ring file ${layout.path} (a ring needs the server's host and user): ${(e as Error).message}`);
  }
  try {
    const have = fstatSync(fd).size;
    if (have < size) throw new Error(`ring file ${layout.path} has ${have} bytes, the server said ${size}`);
    return { address: nat.mmap(size, fd), size };
  } finally {
    closeSync(fd);
  }
}

/** Checks the server's answer before anything is mapped. */
export function checkLayout(l: OpenRingResponse): void {
  const size = Number(l.size);
  const pow2 = (n: number) => n >= 2 && (n & (n - 1)) === 0;
  const problem =
    l.version !== 1 ? `version ${l.version} (this client knows 1)`
      : l.submission_entry_size !== SQ_ENTRY_SIZE ? `submission_entry_size ${l.submission_entry_size}`
        : l.completion_entry_size !== CQ_ENTRY_SIZE ? `completion_entry_size ${l.completion_entry_size}`
          : !pow2(l.submission_entries) ? `submission_entries ${l.submission_entries}`
            : !pow2(l.completion_entries) ? `completion_entries ${l.completion_entries}`
              : l.submission_offset < 0x200 || l.submission_offset + l.submission_entries * SQ_ENTRY_SIZE > size ? `submission_offset ${l.submission_offset}`
                : l.completion_offset + l.completion_entries * CQ_ENTRY_SIZE > size ? `completion_offset ${l.completion_offset}`
                  : l.data_offset + l.data_size > size ? `data_offset ${l.data_offset} + data_size ${l.data_size}`
                    : !Number.isSafeInteger(size) ? `size ${l.size}` : '';
  if (problem) throw new Error(`OpenRing: the server's ring layout is not one this client can use: ${problem}`);
}
