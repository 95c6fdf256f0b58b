// Example virtio-net driver: a separate process that drives a virtio-net function of pcie-emu over
// gRPC, with its virtqueues in the machine's RAM (the mapped RAM file). See docs/virtio.md
// "Example driver".
//   run    reset, negotiate, set up receiveq1/transmitq1, send --count frames, receive --receive frames
//   bench  guest->wire throughput: --batch descriptors per doorbell write, used ring polled in RAM
using System.Diagnostics;
using PcieEmu.Client;
using PcieEmu.Drivers;
using PcieEmu.Drivers.Virtio;

const string Usage = """
usage: VirtioNetDriver run   [--target URL] [--token-file PATH] [--dev bb:dd.f] [--count N] [--to MAC] [--size N] [--receive N]
                             [--queue-size N] [--ram-base ADDR] [--timeout SECONDS]
       VirtioNetDriver bench [--target URL] [--token-file PATH] [--dev bb:dd.f] [--frames N] [--batch N] [--size N] [--queue-size N]
  --target, --token-file  the server (default: $PCIEEMU_TARGET, the default socket, tcp://127.0.0.1:50551)
              and on TCP its token (default: $PCIEEMU_TOKEN, else the default token file)
  --dev       the virtio-net function (default: the first 1af4:1041)
  --count     frames to send (default 1) to --to (default ff:ff:ff:ff:ff:ff), --size bytes each (default 64)
  --receive   frames to wait for and print (default 0)
  --queue-size  entries per virtqueue (default 256)
  --ram-base  where the queues and buffers go in RAM (default 0x1000000)
  --frames    bench: frames to send (default 1000000); --batch descriptors per doorbell (default 256)
The server must run on this host: the queues are written through the mapped RAM file.
""";

Args a;
try { a = new Args(args, ["--help"]); }
catch (ArgumentException e) { Console.Error.WriteLine(e.Message); Console.Error.WriteLine(Usage); return 2; }
if (a.Flag("--help")) { Console.WriteLine(Usage); return 0; }

return await DriverMain.RunAsync("VirtioNetDriver", async () =>
{
    string mode = a.Positional.Count > 0 ? a.Positional[0] : "run";
    if (mode is not ("run" or "bench")) throw new ArgumentException($"unknown mode '{mode}' (run, bench)");
    string? target = a.String("--target");
    string? tokenFile = a.String("--token-file");
    uint? rid = a.String("--dev") is { } dev ? PciAddress.Parse(dev) : null;
    int queueSize = a.Int("--queue-size", 256, 2, 32768);
    if ((queueSize & (queueSize - 1)) != 0) throw new ArgumentException($"--queue-size: {queueSize} is not a power of two");
    ulong ramBase = a.Address("--ram-base", 0x100_0000);
    var timeout = TimeSpan.FromSeconds(a.Int("--timeout", 10, 1));
    int size = a.Int("--size", 64, 14, SplitQueue.BufferSize - NetDriver.HeaderSize);
    int count = a.Int("--count", 1, 0), receive = a.Int("--receive", 0, 0);
    byte[] to = a.String("--to") is { } t ? Mac.Parse(t) : Mac.Broadcast;
    long frames = a.Int("--frames", 1_000_000, 1);
    int batch = a.Int("--batch", 256, 1, queueSize);
    a.CheckUnknown();

    using var stop = new CancellationTokenSource();
    Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
    var ct = stop.Token;
    using var client = PcieEmuClient.Connect(target, tokenFile: tokenFile);
    using var ram = await client.MapRamAsync(ct);
    var nic = await NetDriver.ProbeAsync(client, ram, rid, ramBase, queueSize, timeout, ct);
    Log.Line($"READY bdf={nic.Bdf} mac={Mac.Format(nic.MacAddress)} features=0x{nic.Features:X} queues={nic.Rx.Size}");

    if (mode == "bench")
    {
        var frame = Mac.Frame(Mac.Broadcast, nic.MacAddress, size, 0);
        for (int slot = 0; slot < nic.Tx.Size; slot++) { nic.Queue(frame); }   // fill every buffer once
        await nic.KickTxAsync(ct);
        await nic.WaitTxDoneAsync(timeout, ct);
        long sent = 0, callsBefore = GrpcCounter.Calls;
        var sw = Stopwatch.StartNew();
        while (sent < frames)
        {
            int n = (int)Math.Min(batch, frames - sent);
            for (int i = 0; i < n; i++) nic.Queue(frame);
            await nic.KickTxAsync(ct);                 // the device sends the batch before the write completes
            await nic.WaitTxDoneAsync(timeout, ct);
            sent += n;
        }
        sw.Stop();
        long calls = GrpcCounter.Calls - callsBefore;
        double pps = sent / sw.Elapsed.TotalSeconds;

        // Baseline in the same run: as many doorbell writes with nothing new in the ring (the gRPC round trip alone).
        callsBefore = GrpcCounter.Calls;
        var idle = Stopwatch.StartNew();
        for (long i = 0; i < calls; i++) await nic.KickTxAsync(ct);
        idle.Stop();
        double idlePerCall = idle.Elapsed.TotalSeconds / calls;
        Log.Line("| run | frames | bytes | batch | seconds | frames/s | gRPC calls | µs/call |");
        Log.Line("|---|-------:|------:|------:|--------:|---------:|-----------:|--------:|");
        Log.Line($"| guest->wire | {sent} | {size} | {batch} | {sw.Elapsed.TotalSeconds:F3} | {pps:F0} | {calls} | {sw.Elapsed.TotalMicroseconds / calls:F1} |");
        Log.Line($"| empty doorbell (baseline) | 0 | - | - | {idle.Elapsed.TotalSeconds:F3} | - | {GrpcCounter.Calls - callsBefore} | {idlePerCall * 1e6:F1} |");
        Log.Line($"BENCH frames={sent} pps={pps:F0} calls={calls} baseline_us_per_call={idlePerCall * 1e6:F1}");
        return 0;
    }

    for (int i = 0; i < count; i++) nic.Queue(Mac.Frame(to, nic.MacAddress, size, (uint)i));
    if (count > 0)
    {
        await nic.KickTxAsync(ct);
        await nic.WaitTxDoneAsync(timeout, ct);
        Log.Line($"TX done frames={count}");
    }
    int got = 0;
    var deadline = DateTime.UtcNow + timeout;
    while (got < receive)
    {
        if (nic.TryReceive() is { } f)
        {
            got++;
            Log.Line($"RX {NetDriver.Describe(f)}");
            await nic.NotifyRxAsync(ct);
            continue;
        }
        if (DateTime.UtcNow > deadline) { Log.Line($"TIMEOUT received {got} of {receive}"); return 3; }
        await Task.Delay(2, ct);
    }
    Log.Line($"DONE sent={count} received={got} grpc_calls={GrpcCounter.Calls}");
    return 0;
});
