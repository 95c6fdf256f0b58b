// Example VF driver for the emulated 82576 (igbvf's sequences), a separate process talking to
// pcie-emu over gRPC. Modes:
//   run      (default) reset the VF through the PF driver's mailbox, set up one TX and one RX ring,
//            send frames to other VFs and to the wire, receive, handle interrupts, print counters
//   bench    VF→VF throughput over gRPC: 256 descriptors per tail write, RX write-backs read
//            from the mapped RAM file (needs the PF driver running)
//   mailbox  the VF mailbox by hand: after the VF's own reset, each stdin line sends one message
//            igbvf sends (reset, mac, mc, uc-clear, uc-add, lpe, vlan, promisc, raw) and prints the PF's reply
//   example  the cross-language example: enumerate, enable 2 VFs on PF0 with ARI off and on,
//            read a VF's config, then (PF driver in-process) send one frame VF0 → VF1
using System.Diagnostics;
using PcieEmu.Client;
using PcieEmu.Drivers;

const string Usage = """
usage: VfDriver [run] [--target URL] [--token-file PATH] [--pf bb:dd.f] [--vf N] [--set-mac MAC] [--to MAC]... [--count N]
                [--to-wire N] [--wire-mac MAC] [--receive N] [--size BYTES] [--poll] [--ram-base ADDR] [--timeout S]
                [--iommu] [--iova-base ADDR] [--kick-on-stdin] [--multicast MAC]... [--lpe BYTES]
       VfDriver mailbox [--target URL] [--pf bb:dd.f] [--vf N]
       VfDriver bench [--target URL] [--pf bb:dd.f] [--vf N] [--peer M] [--frames N] [--batch 256] [--ring 1024] [--size 64]
       VfDriver example [--target URL]
  --target, --token-file  the server (default: $PCIEEMU_TARGET, the default socket, tcp://127.0.0.1:50551)
                and on TCP its token (default: $PCIEEMU_TOKEN, else the default token file)
  --vf N        which VF of the PF (default 0); its rings live at --ram-base (default 0x1000000 + N * 0x800000)
  --to MAC      send --count frames (default 1) to this MAC (repeatable); --to-wire N frames to --wire-mac
  --receive N   wait until N frames arrived (default 0), printing each; --poll: no interrupts
  --iommu       the PF driver (run with --iommu) mapped this VF's area at --iova-base (default
                0x100000000): ring bases and buffer addresses are programmed as IOVAs
  --kick-on-stdin  while TX waits for write-backs, each stdin line "kick" writes TDT again
  --multicast MAC  join this group after the reset (VF_SET_MULTICAST with every group given; repeatable)
  --lpe BYTES      VF_SET_LPE with this largest frame size after the reset (igbvf sends MTU + 22)
  mailbox mode, one command a line: reset | mac MAC | mc [MAC...] | uc-clear | uc-add MAC | lpe BYTES |
                   vlan add|del VID | promisc mc|none | raw HEXWORD... | quit
""";

string mode = args.Length > 0 && !args[0].StartsWith("--", StringComparison.Ordinal) ? args[0] : "run";
Args a;
try { a = new Args(mode == "run" && (args.Length == 0 || args[0] != "run") ? args : args[1..], ["--poll", "--iommu", "--kick-on-stdin", "--help"]); }
catch (ArgumentException e) { Console.Error.WriteLine(e.Message); Console.Error.WriteLine(Usage); return 2; }
if (a.Flag("--help")) { Console.WriteLine(Usage); return 0; }

return await DriverMain.RunAsync("VfDriver", async () =>
{
    using var stop = new CancellationTokenSource();
    Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
    var timeout = TimeSpan.FromSeconds(a.Int("--timeout", 10, 1));
    string? target = a.String("--target");
    _ = a.String("--token-file");   // read where each mode connects
    return mode switch
    {
        "run" => await VfPrograms.RunAsync(a, target, timeout, stop.Token),
        "bench" => await VfPrograms.BenchAsync(a, target, timeout, stop.Token),
        "example" => await VfPrograms.ExampleAsync(a, target, timeout, stop.Token),
        "mailbox" => await VfPrograms.MailboxAsync(a, target, timeout, stop.Token),
        _ => throw new ArgumentException($"unknown mode '{mode}' (run, bench, mailbox, example)"),
    };
});

internal static class VfPrograms
{
    private static ulong DefaultRamBase(int vf) => Layout.DefaultRamBase(vf);

    private static async Task<VfFunctionDriver> OpenAsync(PcieEmuClient client, RamMapping ram, ushort pfRid, int vf, ulong ramBase, TimeSpan timeout, CancellationToken ct,
        ulong? dmaBase = null)
    {
        var fn = await Functions.WaitForVfAsync(client, pfRid, vf, timeout, ct);
        return new VfFunctionDriver(client, fn, ram, ramBase, Layout.RamAreaSize, timeout, dmaBase);
    }

    public static async Task<int> RunAsync(Args a, string? target, TimeSpan timeout, CancellationToken ct)
    {
        ushort pfRid = PciAddress.Parse(a.String("--pf") ?? "01:00.0");
        int vfIndex = a.Int("--vf", 0, 0, 7);
        string? setMac = a.String("--set-mac");
        var to = a.All("--to").Select(Mac.Parse).ToList();
        int count = a.Int("--count", 1, 0, 1 << 20), toWire = a.Int("--to-wire", 0, 0, 1 << 20), receive = a.Int("--receive", 0, 0, 1 << 20);
        int size = a.Int("--size", 64, 18, 2048);
        var wireMac = Mac.Parse(a.String("--wire-mac") ?? "02:00:00:00:00:fe");
        bool poll = a.Flag("--poll");
        ulong ramBase = a.Address("--ram-base", DefaultRamBase(vfIndex));
        bool iommu = a.Flag("--iommu"), kickOnStdin = a.Flag("--kick-on-stdin");
        var multicast = a.All("--multicast").Select(Mac.Parse).ToList();
        if (multicast.Any(m => (m[0] & 1) == 0)) throw new ArgumentException("--multicast: a group address has bit 0 of its first byte set");
        int lpe = a.Int("--lpe", 0, 0, 0x3FFF);
        ulong iovaBase = a.Address("--iova-base", Layout.DefaultIovaBase);
        if (!iommu && a.String("--iova-base") != null) throw new ArgumentException("--iova-base needs --iommu");
        if ((iovaBase & 0xFFF) != 0) throw new ArgumentException($"--iova-base: 0x{iovaBase:X} is not 4 KiB aligned");
        a.CheckUnknown();

        using var client = PcieEmuClient.Connect(target, tokenFile: a.String("--token-file"));
        using var ram = await client.MapRamAsync(ct);
        using var vf = await OpenAsync(client, ram, pfRid, vfIndex, ramBase, timeout, ct, iommu ? iovaBase : null);
        if (kickOnStdin)
            _ = Task.Run(async () =>
            {
                while (await Console.In.ReadLineAsync(ct) is { } line)
                    if (line.Trim() == "kick") vf.RequestKick();
            }, ct);
        Log.Line($"VF {vf.Function.Bdf} (rid 0x{vf.Function.Rid:X4}): probing");
        await vf.EnableAsync(!poll, ct);
        await vf.ResetAsync(ct);
        Log.Line($"VF {vf.Function.Bdf}: reset done, MAC {Mac.Format(vf.Mac)} from the PF");
        if (setMac != null)
        {
            await vf.SetMacAsync(Mac.Parse(setMac), ct);
            Log.Line($"VF {vf.Function.Bdf}: MAC set to {Mac.Format(vf.Mac)}");
        }
        if (multicast.Count > 0)
        {
            uint reply = await vf.SetMulticastAsync(multicast, ct);
            if ((reply & MbxMsg.Ack) == 0) throw new InvalidOperationException($"VF_SET_MULTICAST: the PF answered 0x{reply:X8}");
            Log.Line($"VF {vf.Function.Bdf}: joined {string.Join(' ', multicast.Select(m => Mac.Format(m)))} (VF_SET_MULTICAST -> 0x{reply:X8})");
        }
        if (lpe > 0)
        {
            uint reply = await vf.SetLpeAsync((uint)lpe, ct);
            if ((reply & MbxMsg.Ack) == 0) throw new InvalidOperationException($"VF_SET_LPE: the PF answered 0x{reply:X8}");
            Log.Line($"VF {vf.Function.Bdf}: VF_SET_LPE {lpe} -> 0x{reply:X8}");
        }
        int ring = Math.Max(64, (Math.Max(count * Math.Max(to.Count, 1), toWire) + 8) / 8 * 8 + 8);
        await vf.SetupRingsAsync(Math.Min(ring, 4096), 256, !poll, ct);
        Log.Line($"READY vf={vfIndex} bdf={vf.Function.Bdf} rid=0x{vf.Function.Rid:X4} mac={Mac.Format(vf.Mac)} tx=0x{vf.Tx!.Base:X} rx=0x{vf.Rx!.Base:X}" +
            (iommu ? $" iova_tx=0x{vf.Tx.DmaBase:X} iova_rx=0x{vf.Rx.DmaBase:X}" : ""));

        uint seq = 0;
        var frames = new List<byte[]>();
        foreach (var dst in to)
            for (int i = 0; i < count; i++) frames.Add(Mac.Frame(dst, vf.Mac, size, seq++));
        for (int i = 0; i < toWire; i++) frames.Add(Mac.Frame(wireMac, vf.Mac, size, seq++));
        if (frames.Count > 0)
        {
            await vf.SendAsync(frames, ct);
            Log.Line($"TX done frames={frames.Count} (one TDT write, DD written back)");
        }

        int got = 0;
        var deadline = DateTime.UtcNow + timeout;
        while (got < receive)
        {
            if (DateTime.UtcNow > deadline) { Log.Line($"TIMEOUT received {got} of {receive}"); await PrintCountersAsync(vf, ct); return 3; }
            var (rx, _, _) = await vf.WaitReceiveAsync(TimeSpan.FromMilliseconds(poll ? 5 : 200), ct);
            foreach (var f in rx) Log.Line($"RX {VfFunctionDriver.Describe(f)}");
            got += rx.Count;
        }
        await PrintCountersAsync(vf, ct);
        Log.Line($"VF DONE sent={frames.Count} received={got} interrupts={vf.Interrupts} grpc_calls={GrpcCounter.Calls}");
        return 0;
    }

    /// <summary>
    /// The mailbox by hand: the VF's own reset (CTRL.RST, RSTD), then one message per stdin line,
    /// each answer printed as "MBX &lt;line&gt; -> 0xREPLY [more words]" ("MBX READY" first).
    /// </summary>
    public static async Task<int> MailboxAsync(Args a, string? target, TimeSpan timeout, CancellationToken ct)
    {
        ushort pfRid = PciAddress.Parse(a.String("--pf") ?? "01:00.0");
        int vfIndex = a.Int("--vf", 0, 0, 7);
        a.CheckUnknown();
        using var client = PcieEmuClient.Connect(target);
        using var ram = await client.MapRamAsync(ct);
        using var vf = await OpenAsync(client, ram, pfRid, vfIndex, DefaultRamBase(vfIndex), timeout, ct);
        await vf.EnableAsync(interrupts: false, ct);
        await vf.FunctionResetAsync(ct);
        Log.Line($"MBX READY vf={vfIndex} bdf={vf.Function.Bdf}");
        while (await Console.In.ReadLineAsync(ct) is { } line)
        {
            var w = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (w.Length == 0) continue;
            if (w[0] == "quit") break;
            try
            {
                uint[] reply = w switch
                {
                    ["reset"] => await vf.ExchangeAsync([MbxMsg.VfReset], 3, ct),
                    ["mac", var m] => await vf.ExchangeAsync([MbxMsg.VfSetMacAddr, Mac.Low(Mac.Parse(m)), Mac.High(Mac.Parse(m))], 1, ct),
                    ["mc", .. var groups] => [await vf.SetMulticastAsync(groups.Select(Mac.Parse).ToList(), ct)],
                    ["uc-clear"] => [await vf.SetUnicastFilterAsync(MbxMsg.MacFilterClr, null, ct)],
                    ["uc-add", var m] => [await vf.SetUnicastFilterAsync(MbxMsg.MacFilterAdd, Mac.Parse(m), ct)],
                    ["lpe", var n] => [await vf.SetLpeAsync(ParseWord(n), ct)],
                    ["vlan", "add" or "del", var id] => [await vf.SetVlanAsync((ushort)ParseWord(id), w[1] == "add", ct)],
                    ["promisc", "mc"] => [await vf.SetPromiscAsync(MbxMsg.PromiscMulticast, ct)],
                    ["promisc", "none"] => [await vf.SetPromiscAsync(0, ct)],
                    ["raw", .. var words] when words.Length is > 0 and <= MbxMsg.Words => await vf.ExchangeAsync(words.Select(ParseWord).ToArray(), 1, ct),
                    _ => throw new FormatException($"unknown command '{line}' (reset, mac, mc, uc-clear, uc-add, lpe, vlan add|del, promisc mc|none, raw, quit)"),
                };
                Log.Line($"MBX {line} -> {string.Join(' ', reply.Select(r => $"0x{r:X8}"))}");
            }
            catch (Exception e) when (e is FormatException or OverflowException) { Log.Line($"MBX {line} -> error: {e.Message}"); }
        }
        return 0;
    }

    private static uint ParseWord(string text) =>
        text.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            ? uint.Parse(text.AsSpan(2), System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture)
            : uint.Parse(text, System.Globalization.CultureInfo.InvariantCulture);

    private static async Task PrintCountersAsync(VfFunctionDriver vf, CancellationToken ct) =>
        Log.Line("COUNTERS " + string.Join(' ', (await vf.CountersAsync(ct)).Select(c => $"{c.Name}={c.Value}")));

    /// <summary>
    /// VF→VF throughput over gRPC: the sender posts <c>batch</c> advanced descriptors and writes TDT
    /// once; the receiver reads the write-backs from the mapped RAM file, re-arms and writes RDT once.
    /// </summary>
    public static async Task<int> BenchAsync(Args a, string? target, TimeSpan timeout, CancellationToken ct)
    {
        ushort pfRid = PciAddress.Parse(a.String("--pf") ?? "01:00.0");
        int senderIndex = a.Int("--vf", 0, 0, 7), receiverIndex = a.Int("--peer", 1, 0, 7);
        int frames = a.Int("--frames", 1_000_000, 1), batch = a.Int("--batch", 256, 1, 2048), ringSize = a.Int("--ring", 1024, 64, 4096);
        int size = a.Int("--size", 64, 60, 2048);
        a.CheckUnknown();
        if (senderIndex == receiverIndex) throw new ArgumentException("--vf and --peer must differ");
        if (batch > ringSize / 2) throw new ArgumentException("--batch must be at most half of --ring");

        using var client = PcieEmuClient.Connect(target, tokenFile: a.String("--token-file"));
        using var ram = await client.MapRamAsync(ct);
        using var sender = await OpenAsync(client, ram, pfRid, senderIndex, DefaultRamBase(senderIndex), timeout, ct);
        using var receiver = await OpenAsync(client, ram, pfRid, receiverIndex, DefaultRamBase(receiverIndex), timeout, ct);
        foreach (var vf in new[] { sender, receiver })
        {
            await vf.EnableAsync(interrupts: false, ct);
            await vf.ResetAsync(ct);
            await vf.SetupRingsAsync(ringSize, ringSize, interrupts: false, ct);
        }
        var frame = Mac.Frame(receiver.Mac, sender.Mac, size, 0);
        Log.Line($"bench: {sender.Function.Bdf} ({Mac.Format(sender.Mac)}) -> {receiver.Function.Bdf} ({Mac.Format(receiver.Mac)}), {frames} frames of {size} bytes, {batch} per tail write, rings {ringSize}");

        // Warm-up (JIT, connection), not measured.
        await RunBatchesAsync(sender, receiver, frame, Math.Min(frames, 16 * batch), batch, timeout, ct);
        long calls0 = GrpcCounter.Calls;
        var sw = Stopwatch.StartNew();
        long received = await RunBatchesAsync(sender, receiver, frame, frames, batch, timeout, ct);
        sw.Stop();
        long calls = GrpcCounter.Calls - calls0;
        double pps = received / sw.Elapsed.TotalSeconds;
        Log.Line("| frames | bytes | batch | seconds | frames/s | gRPC calls | calls/frame |");
        Log.Line("|-------:|------:|------:|--------:|---------:|-----------:|------------:|");
        Log.Line($"| {received} | {size} | {batch} | {sw.Elapsed.TotalSeconds:F3} | {pps:F0} | {calls} | {(double)calls / received:F4} |");
        Log.Line($"BENCH frames={received} pps={pps:F0} calls={calls} calls_per_frame={(double)calls / received:F5}");
        return received == frames ? 0 : 4;
    }

    private static async Task<long> RunBatchesAsync(VfFunctionDriver sender, VfFunctionDriver receiver, byte[] frame, int frames, int batch, TimeSpan timeout, CancellationToken ct)
    {
        var tx = sender.Tx!;
        var rx = receiver.Rx!;
        long received = 0;
        int sent = 0;
        while (sent < frames)
        {
            int n = Math.Min(batch, frames - sent);
            tx.Reclaim();
            for (int i = 0; i < n; i++)
                if (!tx.Post(frame)) throw new InvalidOperationException("TX ring full: write-backs are missing");
            await tx.KickAsync(ct);   // the device runs both rings inline before the write completes
            sent += n;
            var deadline = DateTime.UtcNow + timeout;
            long want = received + n;
            while (received < want)
            {
                int got = rx.HarvestCount(frame.Length);
                received += got;
                if (got == 0)
                {
                    if (DateTime.UtcNow > deadline) throw new TimeoutException($"bench: {want - received} frame(s) of the batch not received (RQDPC counts drops)");
                    await Task.Yield();
                }
            }
            await rx.RefillAsync(ct);
        }
        return received;
    }

    /// <summary>The example every client has: enumerate, SR-IOV with ARI off and on, a VF's config, one frame VF0 → VF1.</summary>
    public static async Task<int> ExampleAsync(Args a, string? target, TimeSpan timeout, CancellationToken ct)
    {
        a.CheckUnknown();
        const ushort Pf0 = 0x0100;
        using var client = PcieEmuClient.Connect(target, tokenFile: a.String("--token-file"));
        await client.Platform.ResetPlatformAsync(new PcieEmu.Protocol.V1.ResetPlatformRequest(), cancellationToken: ct);
        Log.Line($"connected to {client.Endpoint}; platform reset");
        foreach (var f in await client.ListFunctionsAsync(ct))
            Log.Line($"  {f.Bdf} {f.VendorId:x4}:{f.DeviceId:x4} class {f.ClassCode:x6} {f.Name}" + string.Concat(f.Bars.Select(b => $" BAR{b.Index}=0x{b.Address:X}/0x{b.Size:X}")));

        foreach (bool ari in new[] { false, true })
        {
            var rids = await client.EnableSriovAsync(Pf0, 2, ari, cancellationToken: ct);
            Log.Line($"enabled 2 VFs on {PciAddress.Format(Pf0)} with ARI {(ari ? "on" : "off")}: {string.Join(' ', rids.Select(r => PciAddress.Format(r)))}");
            foreach (uint rid in rids)
            {
                uint id = await client.ReadConfig32Async(rid, 0x00, ct);
                uint cls = await client.ReadConfig32Async(rid, 0x08, ct);
                int msix = await client.FindCapabilityAsync(rid, PciRegs.CapIdMsix, ct);
                int pcie = await client.FindCapabilityAsync(rid, PciRegs.CapIdPcie, ct);
                Log.Line($"  VF {PciAddress.Format(rid)}: id dword 0x{id:X8} (vendor reads FFFF on a VF), class {cls >> 8:x6} rev {cls & 0xFF:x2}, PCIe cap @0x{pcie:X}, MSI-X cap @0x{msix:X}");
            }
            await client.DisableSriovAsync(Pf0, cancellationToken: ct);
        }

        // The PF driver (in this process, polling its mailbox) and two VF drivers.
        using var serve = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var pf = new PfFunctionDriver(client, Pf0, 2, true, poll: true, timeout);
        await pf.ProbeAsync(ct);
        var pfTask = pf.ServeAsync(serve.Token);
        try
        {
            using var ram = await client.MapRamAsync(ct);
            using var vf0 = await OpenAsync(client, ram, Pf0, 0, DefaultRamBase(0), timeout, ct);
            using var vf1 = await OpenAsync(client, ram, Pf0, 1, DefaultRamBase(1), timeout, ct);
            foreach (var vf in new[] { vf0, vf1 })
            {
                await vf.EnableAsync(interrupts: false, ct);
                await vf.ResetAsync(ct);
                await vf.SetupRingsAsync(64, 64, interrupts: false, ct);
                Log.Line($"VF {vf.Function.Bdf}: MAC {Mac.Format(vf.Mac)}, rings at 0x{vf.Tx!.Base:X}/0x{vf.Rx!.Base:X}");
            }
            await vf0.SendAsync([Mac.Frame(vf1.Mac, vf0.Mac, 64, 1)], ct);
            var deadline = DateTime.UtcNow + timeout;
            List<RxFrame> got = [];
            while (got.Count == 0)
            {
                if (DateTime.UtcNow > deadline) { Log.Line("VF1 received nothing"); return 3; }
                (got, _, _) = await vf1.WaitReceiveAsync(TimeSpan.FromMilliseconds(5), ct);
            }
            Log.Line($"VF {vf1.Function.Bdf} received {VfFunctionDriver.Describe(got[0])}");
            return 0;
        }
        finally
        {
            await serve.CancelAsync();
            await pfTask.WaitAsync(timeout, CancellationToken.None);
        }
    }
}
