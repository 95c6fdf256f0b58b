using System.Buffers.Binary;
using System.Globalization;
using System.Text.RegularExpressions;
using PcieEmu.Protocol.V1;

namespace PcieEmu.Drivers.Tests;

/// <summary>
/// The example drivers (clients/dotnet) as separate processes against a real server: the PF driver
/// serves two VF drivers' mailboxes; VF A sends to VF B and to the wire, the test injects a frame
/// for VF B from the wire and watches the interrupt and capture streams and the statistics.
/// </summary>
public sealed class DriverTests
{
    private const string VfBMac = "02:aa:bb:cc:dd:01", WireMac = "02:00:00:00:00:fe", LinkPartnerMac = "02:00:00:00:00:77";

    [Fact]
    public async Task PfAndTwoVfDrivers_SwitchFramesRaiseMsixReachTheWireAndCount()
    {
        await using var server = await Server.StartAsync();
        var client = server.Client;
        using var stop = new CancellationTokenSource(T.Timeout);

        // Streams first (live once their headers arrive), so nothing the drivers do is missed.
        var irqStream = await client.OpenInterruptStreamAsync(null, stop.Token).W();
        var interrupts = new List<InterruptEvent>();
        var irqTask = Task.Run(async () =>
        {
            try { await foreach (var e in irqStream.Events(stop.Token)) lock (interrupts) interrupts.Add(e); }
            catch (Exception e) when (e is OperationCanceledException or Grpc.Core.RpcException) { }
        });
        var capture = client.Ethernet.CaptureFrames(new CaptureFramesRequest { Port = 0 }, cancellationToken: stop.Token);
        await capture.ResponseHeadersAsync.W();
        var wire = new List<CapturedFrame>();
        var captureTask = Task.Run(async () =>
        {
            try { while (await capture.ResponseStream.MoveNext(stop.Token)) lock (wire) wire.Add(capture.ResponseStream.Current); }
            catch (Exception e) when (e is OperationCanceledException or Grpc.Core.RpcException) { }
        });

        try
        {
            using var pf = new DriverProcess("PfDriver", server.Target, "--vfs", "2");
            await pf.WaitForLineAsync("PF READY vfs=2");

            using var vfB = new DriverProcess("VfDriver", server.Target, "--vf", "1", "--set-mac", VfBMac, "--receive", "2", "--timeout", "50");
            string ready = await vfB.WaitForLineAsync("READY vf=1");
            uint vfBRid = uint.Parse(Regex.Match(ready, "rid=0x([0-9A-F]{4})").Groups[1].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            Assert.Contains($"mac={VfBMac}", ready);

            using var vfA = new DriverProcess("VfDriver", server.Target, "--vf", "0", "--to", VfBMac, "--to-wire", "1", "--wire-mac", WireMac);
            Assert.True(await vfA.WaitForExitAsync() == 0, vfA.Output);
            string vfAReady = await vfA.WaitForLineAsync("READY vf=0");
            string vfAMac = Regex.Match(vfAReady, "mac=([0-9a-f:]{17})").Groups[1].Value;
            Assert.Contains("TX done frames=2", vfA.Output);
            // VF A's statistics: two frames sent, one of them delivered locally (68 octets = 64 + FCS).
            Assert.Contains("COUNTERS gprc=0 gptc=2 gorc=0 gotc=136 mprc=0 gprlbc=0 gptlbc=1 gorlbc=0 gotlbc=68", vfA.Output);

            // From the link partner to VF B's MAC: the switch puts it in VF B's pool.
            var frame = new byte[64];
            Drivers.Mac.Parse(VfBMac).CopyTo(frame, 0);
            Drivers.Mac.Parse(LinkPartnerMac).CopyTo(frame, 6);
            frame[12] = 0x08;
            BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(14), 77);
            Assert.Equal(1, await client.InjectFrameAsync(0, frame, stop.Token).W());

            Assert.True(await vfB.WaitForExitAsync() == 0, vfB.Output);
            var rx = vfB.Lines.Where(l => l.StartsWith("RX ", StringComparison.Ordinal)).ToList();
            Assert.Equal(2, rx.Count);
            // Descriptor written back: DD|EOP, length, the frame in the buffer.
            Assert.Contains(rx, l => l.Contains($"len=64 status=0x3 dst={VfBMac} src={vfAMac} seq=0", StringComparison.Ordinal));
            Assert.Contains(rx, l => l.Contains($"len=64 status=0x3 dst={VfBMac} src={LinkPartnerMac} seq=77", StringComparison.Ordinal));
            Assert.Contains("EICR vf=", vfB.Output);   // the handler saw the RX cause
            Assert.Contains("COUNTERS gprc=2 gptc=0 gorc=136 gotc=0 mprc=0 gprlbc=1 gptlbc=0 gorlbc=68 gotlbc=0", vfB.Output);

            // The PF driver served both resets and the MAC change.
            Assert.Contains($"VF 1 VF_SET_MAC_ADDR {VfBMac} -> ACK", pf.Output);
            Assert.Contains("VF 0 VF_RESET -> ACK, MAC", pf.Output);
            Assert.Contains("VF 1 VF_RESET -> ACK, MAC", pf.Output);

            // Port statistics (read to clear): one frame left on the wire, one came in.
            var pf0 = (await client.ListFunctionsAsync(stop.Token).W()).Single(f => f.Rid == 0x0100);
            ulong bar0 = pf0.Bars.Single(b => b.Index == 0).Address;
            Assert.Equal(1UL, (await client.Mmio.ReadMmioAsync(new ReadMmioRequest { Address = bar0 + Regs.Gptc, Width = 4 }).ResponseAsync.W()).Value);
            Assert.Equal(1UL, (await client.Mmio.ReadMmioAsync(new ReadMmioRequest { Address = bar0 + Regs.Gprc, Width = 4 }).ResponseAsync.W()).Value);
            Assert.Equal(68UL, (await client.Mmio.ReadMmioAsync(new ReadMmioRequest { Address = bar0 + Regs.Gotcl, Width = 4 }).ResponseAsync.W()).Value);

            // VF A's wire frame, seen by the capture stream.
            var deadline = DateTime.UtcNow + T.Timeout;
            while (true)
            {
                lock (wire) if (wire.Count > 0) break;
                Assert.True(DateTime.UtcNow < deadline, "no frame captured on port 0");
                await Task.Delay(10);
            }
            lock (wire)
            {
                var f = Assert.Single(wire);
                Assert.Equal(WireMac, Drivers.Mac.Format(f.Data.Span));
                Assert.Equal(vfAMac, Drivers.Mac.Format(f.Data.Span[6..]));
                Assert.Equal(64, f.Data.Length);
            }

            // VF B's RX vector (MSI-X entry 0, data 0x40 as its driver programmed it) on the interrupt stream.
            lock (interrupts)
            {
                Assert.Contains(interrupts, e => e.Rid == vfBRid && e.Kind == InterruptKind.Msix && e.Vector == 0 && e.Data == 0x40);
                // The PF driver's mailbox vector fired for the VF requests.
                Assert.Contains(interrupts, e => e.Rid == 0x0100 && e.Kind == InterruptKind.Msix && e.Vector == 0);
            }
            // PF and VF drivers together broke no rule of the checker.
            await client.AssertNoViolationsAsync().W();
        }
        finally
        {
            await stop.CancelAsync();
            await Task.WhenAll(irqTask, captureTask).W();
            irqStream.Dispose();
            capture.Dispose();
        }
    }

    [Fact]
    public async Task ExampleMode_EnumeratesWithAndWithoutAri_AndSendsVf0ToVf1()
    {
        await using var server = await Server.StartAsync();
        using var example = new DriverProcess("VfDriver", server.Target, "example");
        Assert.True(await example.WaitForExitAsync() == 0, example.Output);
        Assert.Contains("enabled 2 VFs on 01:00.0 with ARI off: 02:10.0 02:10.2", example.Output);
        Assert.Contains("enabled 2 VFs on 01:00.0 with ARI on: 01:10.0 01:10.2", example.Output);
        Assert.Contains("VF 02:10.0: id dword 0xFFFFFFFF", example.Output);
        Assert.Matches("VF 01:10.2 received idx=0 len=64 status=0x3 dst=02:1b:21:2b:46:11 src=02:1b:21:2b:46:10 seq=1", example.Output);
        // The example driver follows the rules (it waits 100 ms after VF Enable, as Linux does).
        await server.Client.AssertNoViolationsAsync().W();
    }

    [Fact]
    public async Task BenchMode_DeliversEveryFrame_WithFewGrpcCallsPerFrame()
    {
        await using var server = await Server.StartAsync();
        using var pf = new DriverProcess("PfDriver", server.Target, "--vfs", "2", "--poll");
        await pf.WaitForLineAsync("PF READY");
        using var bench = new DriverProcess("VfDriver", server.Target, "bench", "--frames", "20480", "--batch", "256", "--ring", "1024");
        Assert.True(await bench.WaitForExitAsync() == 0, bench.Output);
        var m = Regex.Match(bench.Output, @"BENCH frames=(\d+) pps=\d+ calls=(\d+)");
        Assert.True(m.Success, bench.Output);
        Assert.Equal(20480, int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture));
        // One TDT and one RDT write per 256 frames: 160 calls for 80 batches.
        Assert.Equal(160, int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task PfDriver_NacksAMulticastMac_AndTheVfDriverFailsWithTheReason()
    {
        await using var server = await Server.StartAsync();
        using var pf = new DriverProcess("PfDriver", server.Target, "--vfs", "1");
        await pf.WaitForLineAsync("PF READY vfs=1");
        using var vf = new DriverProcess("VfDriver", server.Target, "--vf", "0", "--set-mac", "01:00:5e:00:00:01");
        Assert.Equal(1, await vf.WaitForExitAsync());
        Assert.Contains("the PF refused request 0x00000002 (NACK)", vf.Stderr);
        await pf.WaitForLineAsync("PF: VF 0 VF_SET_MAC_ADDR 01:00:5e:00:00:01 (not a unicast address) -> NACK");
        // The VF keeps the MAC the reset gave it; the PF still serves it.
        using var again = new DriverProcess("VfDriver", server.Target, "--vf", "0");
        Assert.True(await again.WaitForExitAsync() == 0, again.Output);
        Assert.Contains("MAC 02:1b:21:2b:46:10 from the PF", again.Output);
    }

    [Fact]
    public async Task VfDriver_WithoutAPfDriver_TimesOutSayingWhatIsMissing()
    {
        await using var server = await Server.StartAsync();
        using var vf = new DriverProcess("VfDriver", server.Target, "--vf", "0", "--timeout", "1");
        Assert.Equal(1, await vf.WaitForExitAsync());
        Assert.Contains("VF 0 did not appear (is the PF driver running?)", vf.Stderr);
    }

    [Theory]
    [InlineData("PfDriver", "--vfs 9", "--vfs")]
    [InlineData("PfDriver", "--bogus 1", "--bogus")]
    [InlineData("VfDriver", "--to 02:00:zz:00:00:01", "byte 2")]
    [InlineData("VfDriver", "bench --vf 1 --peer 1", "--peer")]
    [InlineData("PfDriver", "--iommu --vfs 2 --iommu-unmapped 2", "--iommu-unmapped")]
    [InlineData("PfDriver", "--iommu-unmapped 0", "need --iommu")]
    [InlineData("PfDriver", "--iommu --iova-base 0x1000", "--iova-base")]
    [InlineData("VfDriver", "--iova-base 0x100000000", "--iova-base needs --iommu")]
    [InlineData("VfDriver", "--iommu --iova-base 0x100000010", "--iova-base")]
    public async Task BadArguments_ExitWithAnErrorNamingTheField(string program, string args, string expected)
    {
        using var p = new DriverProcess(program, "tcp://127.0.0.1:9", args.Split(' '));
        Assert.Equal(2, await p.WaitForExitAsync());
        Assert.Contains(expected, p.Stderr);
    }
}
