/** One config read at a time, three ways in one run: the shared-memory ring (client.openRing),
 *  the Session stream (Transact ping-pong: one read per message, awaited) and unary ReadConfig;
 *  then unbatched posted writes per second through the ring (4 B RAM, as the C++ peer bench, and config). Rounds alternate so that the machine's
 *  load falls on each alike; the table gives the median over all rounds. A benchmark: it prints,
 *  it asserts nothing.
 *  Usage: node dist/examples/ring-bench.js [target] [readsPerRound] [rounds]
 *  (use the Unix socket: the ring needs the server's host anyway). */
import { PcieEmuClient } from '../src/index.js';

type Way = { name: string; read: () => Promise<unknown>; close?: () => unknown };

/** This process's CPU over one idle second, in ms. */
async function idleCpuMs(): Promise<number> {
  const u0 = process.cpuUsage();
  await new Promise((r) => setTimeout(r, 1000));
  const u = process.cpuUsage(u0);
  return (u.user + u.system) / 1000;
}

function pct(sorted: number[], p: number): number { return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]; }

async function main(): Promise<void> {
  const c = await PcieEmuClient.connect(process.argv[2]);
  const n = Number(process.argv[3] ?? 2000), rounds = Number(process.argv[4] ?? 5);
  await c.readConfig(0x100, 0, 4);
  const idleBefore = await idleCpuMs();
  const ring = await c.openRing();
  const idle = await c.openRing({ clientSpinMicroseconds: 0 });
  const s = c.session();
  const ways: Way[] = [
    { name: 'ring (spin 20 µs, then event loop)', read: () => ring.configRead(0x100, 0, 4) },
    { name: 'ring (no spin: event loop only)', read: () => idle.configRead(0x100, 0, 4) },
    { name: 'session() Transact ping-pong', read: () => s.configRead(0x100, 0, 4) },
    { name: 'unary readConfig', read: () => c.readConfig(0x100, 0, 4) },
  ];
  const times = new Map<string, number[]>(ways.map((w) => [w.name, []]));
  const cpu = new Map<string, number>(ways.map((w) => [w.name, 0]));
  try {
    for (const w of ways) for (let i = 0; i < 300; i++) await w.read(); // warm-up
    for (let r = 0; r < rounds; r++) {
      for (const w of ways) {
        const t = times.get(w.name)!;
        const u0 = process.cpuUsage();
        for (let i = 0; i < n; i++) {
          const t0 = process.hrtime.bigint();
          await w.read();
          t.push(Number(process.hrtime.bigint() - t0) / 1000);
        }
        const u = process.cpuUsage(u0);
        cpu.set(w.name, cpu.get(w.name)! + u.user + u.system);
      }
    }
    console.log(`config read round trip, ${rounds} alternating rounds of ${n} (client CPU is this process's, per read)`);
    console.log('| way | p50 µs | p99 µs | mean µs | client CPU µs/read |');
    console.log('| --- | ---: | ---: | ---: | ---: |');
    for (const w of ways) {
      const t = times.get(w.name)!.sort((a, b) => a - b);
      const mean = t.reduce((a, b) => a + b, 0) / t.length;
      console.log(`| ${w.name} | ${pct(t, 0.5).toFixed(1)} | ${pct(t, 0.99).toFixed(1)} | ${mean.toFixed(1)} | ${(cpu.get(w.name)! / t.length).toFixed(1)} |`);
    }
    // Single posted writes (no batching), each then checked by a read: how many the ring takes per second.
    const writes = n * 100;
    const word = Buffer.alloc(4);
    let t0 = process.hrtime.bigint();
    for (let i = 0; i < writes; i++) { word.writeUInt32LE(i); ring.memoryWrite(0x1000n, word); }
    const mem = await ring.memoryRead(0x1000n, 4);
    const memSecs = Number(process.hrtime.bigint() - t0) / 1e9;
    t0 = process.hrtime.bigint();
    for (let i = 0; i < writes; i++) ring.configWrite(0x100, 0x3c, 1, i & 0xff);
    const cfg = await ring.configRead(0x100, 0x3c, 1);
    const cfgSecs = Number(process.hrtime.bigint() - t0) / 1e9;
    if (mem.data.readUInt32LE() !== writes - 1 || cfg.value !== BigInt((writes - 1) & 0xff) || ring.postedErrors.length > 0)
      throw new Error('posted writes went wrong');
    // Nothing awaited: the rings spin and poll for nothing.
    console.log(`client CPU over 1 s idle: ${(await idleCpuMs()).toFixed(1)} ms with two rings open, ${idleBefore.toFixed(1)} ms before any ring`);
    console.log(`ring, ${writes} unbatched posted writes then a read: 4 B RAM ${Math.round(writes / memSecs)}/s, 1 B config ${Math.round(writes / cfgSecs)}/s`);
  } finally {
    ring.close();
    idle.close();
    await s.close();
    c.close();
  }
}

main().catch((e) => { console.error(e instanceof Error ? e.message : e); process.exit(1); });
