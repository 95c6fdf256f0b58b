/** Measures ReadConfig round trip (p50/p99) and pipelined Session throughput.
 *  Usage: node dist/examples/bench.js [target] [unaryCount] [sessionCount]
 *  On TCP the token comes from $PCIEEMU_TOKEN, else the server's default token file. */
import { PcieEmuClient } from '../src/index.js';

async function main(): Promise<void> {
  const c = await PcieEmuClient.connect(process.argv[2]);
  const unary = Number(process.argv[3] ?? 5000), pipelined = Number(process.argv[4] ?? 200000);
  try {
    for (let i = 0; i < 500; i++) await c.readConfig(0x100, 0, 4); // warm-up
    const t: number[] = [];
    for (let i = 0; i < unary; i++) {
      const s = process.hrtime.bigint();
      await c.readConfig(0x100, 0, 4);
      t.push(Number(process.hrtime.bigint() - s) / 1000);
    }
    t.sort((a, b) => a - b);
    const s = c.session();
    const window = 4096;
    const start = process.hrtime.bigint();
    for (let done = 0; done < pipelined; done += window) {
      const batch: Promise<unknown>[] = [];
      for (let i = 0; i < window; i++) batch.push(s.configRead(0x100, 0, 4));
      await Promise.all(batch);
    }
    const secs = Number(process.hrtime.bigint() - start) / 1e9;
    await s.close();
    console.log('| client | ReadConfig p50 (us) | p99 (us) | Session reads/s |');
    console.log('| --- | --- | --- | --- |');
    console.log(`| typescript | ${t[Math.floor(t.length / 2)].toFixed(0)} | ${t[Math.floor(t.length * 0.99)].toFixed(0)} | ${Math.round(pipelined / secs)} |`);
  } finally {
    c.close();
  }
}

main().catch((e) => { console.error(e instanceof Error ? e.message : e); process.exit(1); });
