/** The core subset of the language-neutral conformance suite (tests/Conformance/cases/*.json),
 *  run through this client's API: every case whose steps use only platform, config, MMIO and
 *  memory operations and waits (the Session, interrupt, Ethernet and IOMMU cases run in the C# and
 *  Python runners). One subtest per case; a failure names the step and the reason. The virtio-net
 *  suite (tests/Conformance/virtio-net/cases) runs the same way against a server started here with
 *  its machine. */
import { after, before, describe, test } from 'node:test';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { CompletionStatus, formatBdf, parseBdf, PcieEmuClient } from '../src/index.js';
import { startServer, TestServer, within } from './harness.js';

const CUSTOM_CASES = process.env.PCIEEMU_CONFORMANCE_CASES;
const CASES_DIR = CUSTOM_CASES ?? resolve(__dirname, '../../../../tests/Conformance/cases');
const VIRTIO_DIR = resolve(__dirname, '../../../../tests/Conformance/virtio-net');
const CORE_OPS = new Set(['reset', 'get_platform', 'list_functions', 'read_config', 'write_config', 'read_mmio', 'write_mmio', 'read_memory', 'write_memory', 'wait']);
const MAX_WAIT_MS = 10_000; // the longest pause a "wait" step may ask for (a typo fails instead of hanging)

type Step = { op: string; expect?: Expectation; save?: string; save_mask?: unknown; while?: Step[]; [k: string]: unknown };
type Expectation = { status?: string; value?: unknown; mask?: unknown; error?: { code: string; message_contains?: string }; [k: string]: unknown };
interface Case { name: string; spec: string; steps: Step[] }

class CaseFailure extends Error {}
const ALL64 = (1n << 64n) - 1n;
const hex = (v: bigint) => `0x${v.toString(16)}`;
const BDF = /^[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$/;

function loadCases(dir: string): Case[] {
  const out: Case[] = [];
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.json')).sort())
    out.push(...(JSON.parse(readFileSync(join(dir, f), 'utf8')).cases as Case[]));
  return out;
}

const isCore = (c: Case) => c.steps.every((s) => CORE_OPS.has(s.op) && !s.while);

class Runner {
  env = new Map<string, bigint>();
  constructor(private c: PcieEmuClient) {}

  evaluate(v: unknown): bigint {
    if (typeof v === 'boolean') return v ? 1n : 0n;
    if (typeof v === 'number') return BigInt(v);
    if (typeof v !== 'string') throw new CaseFailure(`bad case data: expected a number, got ${JSON.stringify(v)}`);
    let total = 0n;
    for (const term of v.replace(/ /g, '').split('+')) {
      if (term.startsWith('$')) {
        const x = this.env.get(term.slice(1));
        if (x === undefined) throw new CaseFailure(`bad case data: variable ${term} is not set by an earlier step`);
        total += x;
      } else if (BDF.test(term)) total += BigInt(parseBdf(term));
      else total += BigInt(term);
    }
    return total;
  }
  num(s: Step, k: string): number { return Number(this.evaluate(s[k])); }

  async run(kase: Case): Promise<void> {
    this.env.clear();
    await this.c.resetPlatform();
    for (const [i, step] of kase.steps.entries()) {
      try {
        await this.step(step);
      } catch (e) {
        const reason = e instanceof CaseFailure ? e.message : `gRPC error ${grpc.status[(e as grpc.ServiceError).code]}: ${(e as grpc.ServiceError).details ?? e}`;
        throw new CaseFailure(`${kase.name} [${kase.spec}]: step ${i + 1} (${step.op}): ${reason}`);
      }
    }
  }

  /** Runs a call; returns undefined when the step expected (and got) a gRPC error. */
  async call<T>(step: Step, fn: () => Promise<T>): Promise<T | undefined> {
    const want = step.expect?.error;
    let r: T;
    try {
      r = await fn();
    } catch (e) {
      const err = e as grpc.ServiceError;
      if (err.code === undefined) throw e;
      if (!want) throw new CaseFailure(`unexpected gRPC error ${grpc.status[err.code]}: ${err.details}`);
      if (grpc.status[err.code] !== want.code) throw new CaseFailure(`gRPC error ${grpc.status[err.code]} (${err.details}), expected ${want.code}`);
      if (want.message_contains && !err.details.toLowerCase().includes(want.message_contains.toLowerCase()))
        throw new CaseFailure(`error message '${err.details}' does not name '${want.message_contains}'`);
      return undefined;
    }
    if (want) throw new CaseFailure(`expected gRPC error ${want.code}, the call succeeded`);
    return r;
  }

  checkStatus(what: string, actual: string, expect: Expectation = {}): void {
    const want = expect.status ?? 'SUCCESSFUL';
    const full = want.startsWith('COMPLETION_STATUS_') ? want : `COMPLETION_STATUS_${want}`;
    if (!(full in CompletionStatus)) throw new CaseFailure(`bad case data: unknown status ${want}`);
    if (actual !== full) throw new CaseFailure(`${what}: status ${actual}, expected ${want}`);
  }
  checkValue(what: string, actual: bigint, expect: Expectation = {}): void {
    if (expect.value === undefined) return;
    const mask = expect.mask !== undefined ? this.evaluate(expect.mask) : ALL64;
    const want = this.evaluate(expect.value);
    if ((actual & mask) !== (want & mask))
      throw new CaseFailure(`${what}: value ${hex(actual & mask)}, expected ${hex(want & mask)}${expect.mask !== undefined ? ` (mask ${hex(mask)})` : ''}; raw ${hex(actual)}`);
  }
  save(step: Step, v: bigint): void {
    if (step.save) this.env.set(step.save, v & (step.save_mask !== undefined ? this.evaluate(step.save_mask) : ALL64));
  }
  compare(path: string, actual: unknown, want: unknown): void {
    if (typeof want === 'boolean' || typeof actual === 'boolean') {
      if (Boolean(actual) !== Boolean(want)) throw new CaseFailure(`${path}: ${actual}, expected ${want}`);
    } else if (typeof actual === 'string' && actual === want) {
      return;
    } else if (typeof actual === 'number' || (typeof actual === 'string' && /^\d+$/.test(actual))) {
      // 64-bit fields arrive as decimal strings (longs: String).
      const a = BigInt(actual), w = this.evaluate(want);
      if (a !== w) throw new CaseFailure(`${path}: ${hex(a)}, expected ${hex(w)}`);
    } else {
      throw new CaseFailure(`${path}: ${JSON.stringify(actual)}, expected ${JSON.stringify(want)}`);
    }
  }
  data(spec: unknown): Buffer {
    if (spec && typeof spec === 'object') {
      const o = spec as { fill?: unknown; length: unknown };
      return Buffer.alloc(Number(this.evaluate(o.length)), Number(this.evaluate(o.fill ?? 0) & 0xffn));
    }
    return Buffer.from(String(spec).replace(/ /g, ''), 'hex');
  }

  async step(s: Step): Promise<void> {
    const x = s.expect ?? {};
    switch (s.op) {
      case 'reset': {
        const n = await this.call(s, () => this.c.resetPlatform());
        if (n !== undefined && x.functions !== undefined) this.compare('functions', n, x.functions);
        return;
      }
      case 'get_platform': {
        const p = await this.call(s, () => this.c.getPlatform());
        if (p === undefined) return;
        for (const [path, want] of Object.entries((x.fields ?? {}) as Record<string, unknown>)) {
          let cur: unknown = p;
          for (const part of path.split('.')) {
            if (cur === null || typeof cur !== 'object' || !(part in (cur as object))) throw new CaseFailure(`${path}: no field '${part}'`);
            cur = (cur as Record<string, unknown>)[part];
          }
          this.compare(path, cur, want);
        }
        return;
      }
      case 'list_functions': {
        const fns = await this.call(s, () => this.c.listFunctions());
        if (fns === undefined) return;
        const byRid = new Map(fns.map((f) => [f.rid, f]));
        if (x.rids !== undefined) {
          const want = (x.rids as unknown[]).map((r) => Number(this.evaluate(r)));
          const got = fns.map((f) => f.rid);
          if (got.join() !== want.join())
            throw new CaseFailure(`functions ${got.map(formatBdf).join(', ')}; expected ${want.map(formatBdf).join(', ')}`);
        }
        for (const [ridText, fields] of Object.entries((x.functions ?? {}) as Record<string, Record<string, unknown>>)) {
          const rid = Number(this.evaluate(ridText));
          const f = byRid.get(rid);
          if (!f) throw new CaseFailure(`function ${formatBdf(rid)} is not listed`);
          for (const [key, want] of Object.entries(fields)) {
            if (key === 'bars') {
              for (const [idx, barFields] of Object.entries(want as Record<string, Record<string, unknown>>)) {
                const b = f.bars.find((bar) => bar.index === Number(idx));
                if (!b) throw new CaseFailure(`${formatBdf(rid)}: BAR ${idx} not listed`);
                for (const [bk, bv] of Object.entries(barFields)) this.compare(`${formatBdf(rid)} bars[${idx}].${bk}`, (b as unknown as Record<string, unknown>)[bk], bv);
              }
            } else if (key === 'bar_count') this.compare(`${formatBdf(rid)} bar count`, f.bars.length, want);
            else this.compare(`${formatBdf(rid)}.${key}`, (f as unknown as Record<string, unknown>)[key], want);
          }
        }
        for (const ridText of (x.absent ?? []) as unknown[]) {
          const rid = Number(this.evaluate(ridText));
          if (byRid.has(rid)) throw new CaseFailure(`function ${formatBdf(rid)} is listed but should not be`);
        }
        return;
      }
      case 'read_config': {
        const [rid, off, w] = [this.num(s, 'rid'), this.num(s, 'offset'), this.num(s, 'width')];
        const r = await this.call(s, () => this.c.readConfig(rid, off, w));
        if (r === undefined) return;
        const what = `config read ${formatBdf(rid & 0xffff)} +0x${off.toString(16)}/${w}`;
        this.checkStatus(what, r.status, x);
        this.checkValue(what, BigInt(r.value >>> 0), x);
        this.save(s, BigInt(r.value >>> 0));
        return;
      }
      case 'write_config': {
        const [rid, off, w, v] = [this.num(s, 'rid'), this.num(s, 'offset'), this.num(s, 'width'), this.num(s, 'value')];
        const st = await this.call(s, () => this.c.writeConfig(rid, off, w, v));
        if (st !== undefined) this.checkStatus(`config write ${formatBdf(rid & 0xffff)} +0x${off.toString(16)}/${w}`, st, x);
        return;
      }
      case 'read_mmio': {
        const [a, w] = [this.evaluate(s.address), this.num(s, 'width')];
        const r = await this.call(s, () => this.c.readMmio(a, w));
        if (r === undefined) return;
        this.checkStatus(`mmio read ${hex(a)}/${w}`, r.status, x);
        this.checkValue(`mmio read ${hex(a)}/${w}`, r.value, x);
        this.save(s, r.value);
        return;
      }
      case 'write_mmio': {
        const [a, w, v] = [this.evaluate(s.address), this.num(s, 'width'), this.evaluate(s.value)];
        const st = await this.call(s, () => this.c.writeMmio(a, w, v));
        if (st !== undefined) this.checkStatus(`mmio write ${hex(a)}/${w}`, st, x);
        return;
      }
      case 'read_memory': {
        const [a, n] = [this.evaluate(s.address), this.num(s, 'length')];
        const d = await this.call(s, () => this.c.readMemory(a, n));
        if (d === undefined) return;
        if (d.length !== n) throw new CaseFailure(`read ${d.length} bytes, expected ${n}`);
        if (x.data !== undefined && !d.equals(this.data(x.data)))
          throw new CaseFailure(`data ${d.subarray(0, 64).toString('hex')}, expected ${this.data(x.data).subarray(0, 64).toString('hex')}`);
        return;
      }
      case 'write_memory': {
        const a = this.evaluate(s.address);
        const n = await this.call(s, () => this.c.writeMemory(a, this.data(s.data)));
        if (n !== undefined && x.length !== undefined) this.compare('length', n, x.length);
        return;
      }
      case 'wait': {
        // Time on the machine's clock, as a driver waits (100 ms after VF Enable or an FLR): the
        // server's clock is the wall clock, so a sleep here is that wait.
        if (s.ms === undefined) throw new CaseFailure("bad case data: missing 'ms'");
        const ms = this.num(s, 'ms');
        if (!(ms >= 1 && ms <= MAX_WAIT_MS)) throw new CaseFailure(`bad case data: 'ms' must be 1..${MAX_WAIT_MS}, got ${ms}`);
        // setTimeout may fire up to a millisecond early: sleep until the monotonic clock agrees.
        const end = performance.now() + ms;
        while (performance.now() < end) await new Promise((res) => setTimeout(res, Math.ceil(end - performance.now())));
        return;
      }
      default:
        throw new CaseFailure(`op ${s.op} is not in the core subset`);
    }
  }
}

describe('conformance (core subset through the TypeScript API)', () => {
  let server: TestServer;
  let c: PcieEmuClient;
  let runner: Runner;
  const cases = loadCases(CASES_DIR);
  const core = cases.filter(isCore);

  before(async () => {
    server = await within(startServer(), 120_000, 'server start');
    // Over the Unix socket: the server's direct gRPC loop (issue 16); the client tests cover TCP.
    c = await within(server.unix ? PcieEmuClient.connect(server.unix) : PcieEmuClient.connect(server.tcp, { tokenFile: server.tokenFile }), 20_000, 'connect');
    runner = new Runner(c);
  });
  after(async () => {
    c?.close();
    await server?.stop();
  });

  // The default suite's size; a directory given in PCIEEMU_CONFORMANCE_CASES (e.g. the virtio-net suite) has its own.
  test('the case files load and the core subset is most of the suite', { skip: CUSTOM_CASES && 'PCIEEMU_CONFORMANCE_CASES names another directory' }, () => {
    if (core.length < 100) throw new Error(`only ${core.length} of ${cases.length} cases are in the core subset`);
  });
  test('a wait step lets the time pass and refuses a pause outside 1..10000 ms', async () => {
    const one = (step: Step): Case => ({ name: 'wait', spec: 'test', steps: [step] });
    const t0 = Date.now();
    await within(runner.run(one({ op: 'wait', ms: 100 })), 10_000, 'wait');
    if (Date.now() - t0 < 100) throw new Error(`wait 100 ms returned after ${Date.now() - t0} ms`);
    for (const bad of [{ op: 'wait', ms: 0 }, { op: 'wait', ms: '20000' }, { op: 'wait' }]) {
      const err = await within(runner.run(one(bad)).then(() => undefined, (e: Error) => e), 10_000, 'bad wait');
      if (!err || !err.message.includes("'ms'")) throw new Error(`${JSON.stringify(bad)}: want an error naming 'ms', got ${err?.message}`);
    }
  });
  for (const kase of core) test(kase.name, async () => { await within(runner.run(kase), 30_000, kase.name); });
});

// The virtio-net suite against a server started with its machine; skipped when
// PCIEEMU_CONFORMANCE_CASES points the suite above at a directory.
describe('conformance: virtio-net suite (core subset through the TypeScript API)', { skip: CUSTOM_CASES && 'PCIEEMU_CONFORMANCE_CASES names another directory' }, () => {
  let server: TestServer;
  let c: PcieEmuClient;
  let runner: Runner;
  const cases = CUSTOM_CASES ? [] : loadCases(join(VIRTIO_DIR, 'cases'));
  const core = cases.filter(isCore);

  before(async () => {
    server = await within(startServer({ extraArgs: ['--machine', join(VIRTIO_DIR, 'machine.json')] }), 120_000, 'server start');
    // Over the Unix socket: the server's direct gRPC loop (issue 16); the client tests cover TCP.
    c = await within(server.unix ? PcieEmuClient.connect(server.unix) : PcieEmuClient.connect(server.tcp, { tokenFile: server.tokenFile }), 20_000, 'connect');
    runner = new Runner(c);
  });
  after(async () => {
    c?.close();
    await server?.stop();
  });

  test('the virtio-net case files load and 18 or more are in the core subset', () => {
    if (core.length < 18) throw new Error(`only ${core.length} of ${cases.length} virtio-net cases are in the core subset`);
  });
  for (const kase of core) test(kase.name, async () => { await within(runner.run(kase), 30_000, kase.name); });
});
