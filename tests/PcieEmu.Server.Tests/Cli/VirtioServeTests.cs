using System.Buffers.Binary;
using Google.Protobuf;
using PcieEmu.Client;
using PcieEmu.Protocol.V1;
using PcieEmu.Server.Cli;

namespace PcieEmu.Server.Tests.Cli;

/// <summary>Issue 13: a machine with an 82576 and a virtio-net on a second root port, served over gRPC.
/// GetPlatform, ListFunctions and lspci -tv show the virtio-net device; a driver sequence of plain
/// config, MMIO and memory calls brings it up; CaptureFrames and InjectFrame work on its port (2);
/// the trace sees its transactions and the checker finds nothing wrong.</summary>
public sealed class VirtioServeTests
{
    private const string IgbAndVirtio = """
        { "rootPorts": [
            { "device": { "type": "intel-82576" } },
            { "device": { "type": "virtio-net", "mac": "02:00:00:00:77:01" } } ] }
        """;

    private const uint Rid = 0x0300;
    // Common configuration (virtio 1.2 §4.1.4.3) and the device's BAR4 layout (docs/virtio.md).
    private const uint DriverFeatureSelect = 0x08, DriverFeature = 0x0C, DeviceStatus = 0x14,
        QueueSelect = 0x16, QueueSize = 0x18, QueueEnable = 0x1C, QueueDesc = 0x20, QueueDriver = 0x28, QueueDevice = 0x30;
    private const ulong Notify = 0x3000;

    [Fact]
    public async Task Platform_functions_and_lspci_show_the_virtio_net_device()
    {
        await using var s = await TestServer.StartAsync("unix", machineJson: IgbAndVirtio);
        var p = await s.Client.GetPlatformAsync().W();
        Assert.Equal([0x0008u, 0x0010u], p.RootPorts.Select(r => r.Rid));
        var d = p.Devices[1];
        Assert.Equal(("virtio-net", "Virtio 1.0 network device", "rootPorts[1].device", 0x0010u, 0x0010u), (d.Type, d.Model, d.Path, d.PortRid, d.RootPortRid));
        Assert.Equal([Rid], d.PhysicalFunctionRids);
        Assert.Equal([0u], d.TotalVfs);
        Assert.Equal([(2u, "02:00:00:00:77:01", Rid, "port2 (03:00.0 virtio)")], d.EthernetPorts.Select(e => (e.Number, e.Mac, e.FunctionRid, e.Name)));

        var functions = await s.Client.ListFunctionsAsync().W();
        var f = functions.Single(x => x.Rid == Rid);
        Assert.Equal(("dev1.PF0", "Red Hat, Inc. Virtio 1.0 network device", 0x1AF4u, 0x1041u, 0x020000u), (f.Name, f.Description, f.VendorId, f.DeviceId, f.ClassCode));
        Assert.Equal([(1u, 0x1000ul, false, false), (4u, 0x4000ul, true, true)], f.Bars.Select(b => (b.Index, b.Size, b.Is64Bit, b.IsPrefetchable)));

        string tree = LspciCommand.Tree(functions, p, verbose: true);
        Assert.Equal("""
            -[0000:00]-+-00.0  Intel Corporation 82G33/G31/P35/P31 Express DRAM Controller
                       +-01.0-[01-02]--+-00.0  Intel Corporation 82576 Gigabit Network Connection
                       |               \-00.1  Intel Corporation 82576 Gigabit Network Connection
                       \-02.0-[03]----00.0  Red Hat, Inc. Virtio 1.0 network device

            """.Replace("\r", "", StringComparison.Ordinal), tree);
        s.AssertNoErrors();
    }

    [Fact]
    public async Task Platform_names_the_segment_of_each_port_and_nothing_for_a_port_on_none()
    {
        // docs/machines/virtio-net-lan.json: the 82576's port 0 and the virtio-net port share "lan0"; port 1 is on none.
        const string Lan = """
            { "rootPorts": [
                { "device": { "type": "intel-82576", "segment": ["lan0", null] } },
                { "device": { "type": "virtio-net", "segment": "lan0" } } ] }
            """;
        await using var s = await TestServer.StartAsync("unix", machineJson: Lan);
        var p = await s.Client.GetPlatformAsync().W();
        Assert.Equal([(0u, "lan0"), (1u, ""), (2u, "lan0")],
            p.Devices.SelectMany(d => d.EthernetPorts).Select(e => (e.Number, e.Segment)).OrderBy(x => x.Number));
        await using var plain = await TestServer.StartAsync("unix", machineJson: IgbAndVirtio);
        Assert.All((await plain.Client.GetPlatformAsync().W()).Devices.SelectMany(d => d.EthernetPorts), e => Assert.Equal("", e.Segment));
    }

    [Fact]
    public async Task A_driver_over_grpc_sends_and_receives_through_capture_and_inject_and_the_checker_is_quiet()
    {
        await using var s = await TestServer.StartAsync("tcp", machineJson: IgbAndVirtio);
        var c = s.Client;
        ulong bar4 = (await c.ListFunctionsAsync().W()).Single(x => x.Rid == Rid).Bars.Single(b => b.Index == 4).Address;
        using var cts = new CancellationTokenSource(T.Timeout);
        var trace = new List<TraceEvent>();
        var traceTask = Task.Run(async () =>
        {
            try { await foreach (var e in c.SubscribeTraceAsync(["03:00.0"], null, cts.Token)) lock (trace) trace.Add(e); }
            catch (Exception e) when (e is OperationCanceledException or Grpc.Core.RpcException) { }
        });
        using var capture = c.Ethernet.CaptureFrames(new CaptureFramesRequest { Port = 2, IncludeReceived = true }, cancellationToken: cts.Token);
        await capture.ResponseHeadersAsync.W();

        // Reset, ACKNOWLEDGE | DRIVER, VERSION_1 only, FEATURES_OK (read back), then rx0 and tx0 of 16 entries.
        await W(c, bar4 + DeviceStatus, 1, 0);
        Assert.Equal(0ul, await R(c, bar4 + DeviceStatus, 1));
        await W(c, bar4 + DeviceStatus, 1, 0x03);
        await W(c, bar4 + DriverFeatureSelect, 4, 1);
        await W(c, bar4 + DriverFeature, 4, 1);            // VERSION_1 (bit 32)
        await W(c, bar4 + DriverFeatureSelect, 4, 0);
        await W(c, bar4 + DriverFeature, 4, 0);
        await W(c, bar4 + DeviceStatus, 1, 0x0B);
        Assert.Equal(0x0Bul, await R(c, bar4 + DeviceStatus, 1));
        const ulong Rx = 0x20_0000, Tx = 0x21_0000, RxBuf = 0x22_0000, TxBuf = 0x23_0000;
        foreach (var (q, ring) in new[] { (0u, Rx), (1u, Tx) })
        {
            await W(c, bar4 + QueueSelect, 2, q);
            await W(c, bar4 + QueueSize, 2, 16);
            await W(c, bar4 + QueueDesc, 8, ring);
            await W(c, bar4 + QueueDriver, 8, ring + 0x100);
            await W(c, bar4 + QueueDevice, 8, ring + 0x200);
            await W(c, bar4 + QueueEnable, 2, 1);
        }
        await W(c, bar4 + DeviceStatus, 1, 0x0F);   // DRIVER_OK

        // Transmit: header + 60-byte frame in one descriptor, avail idx 1, notify queue 1.
        var frame = new byte[60];
        new byte[] { 0x02, 0, 0, 0, 0x77, 0x09, 0x02, 0, 0, 0, 0x77, 0x01, 0x88, 0xB5 }.CopyTo(frame, 0);
        for (int i = 14; i < frame.Length; i++) frame[i] = (byte)i;
        await c.WriteMemoryAsync(TxBuf, new byte[12].Concat(frame).ToArray()).W();
        await c.WriteMemoryAsync(Tx, Desc(TxBuf, 12 + 60, 0)).W();
        await c.WriteMemoryAsync(Tx + 0x100, new byte[] { 0, 0, 1, 0, 0, 0 }).W();
        await W(c, bar4 + Notify + 4 * 1, 2, 1);
        Assert.True(await capture.ResponseStream.MoveNext(cts.Token).W());
        var sent = capture.ResponseStream.Current;
        Assert.Equal((2u, CaptureDirection.ToWire, "03:00.0"), (sent.Port, sent.Direction, sent.Function));
        Assert.Equal(frame, sent.Data.ToByteArray());
        Assert.Equal(1, BinaryPrimitives.ReadUInt16LittleEndian(await c.ReadMemoryAsync(Tx + 0x202, 2).W()));   // used idx

        // Receive: one 2 KiB device-writable buffer, then InjectFrame on port 2.
        await c.WriteMemoryAsync(Rx, Desc(RxBuf, 2048, 2)).W();
        await c.WriteMemoryAsync(Rx + 0x100, new byte[] { 0, 0, 1, 0, 0, 0 }).W();
        await W(c, bar4 + Notify, 2, 0);
        var incoming = (byte[])frame.Clone();
        incoming.AsSpan(6, 6).CopyTo(incoming.AsSpan(0, 6));
        new byte[] { 0x02, 0, 0, 0, 0x77, 0x09 }.CopyTo(incoming, 6);
        Assert.Equal(1, await c.InjectFrameAsync(2, incoming).W());
        Assert.True(await capture.ResponseStream.MoveNext(cts.Token).W());
        Assert.Equal(CaptureDirection.FromWire, capture.ResponseStream.Current.Direction);
        Assert.Equal(1, BinaryPrimitives.ReadUInt16LittleEndian(await c.ReadMemoryAsync(Rx + 0x202, 2).W()));
        var used = await c.ReadMemoryAsync(Rx + 0x204, 8).W();
        Assert.Equal((0u, 12u + 60u), (BinaryPrimitives.ReadUInt32LittleEndian(used), BinaryPrimitives.ReadUInt32LittleEndian(used.AsSpan(4))));
        Assert.Equal(incoming, (await c.ReadMemoryAsync(RxBuf + 12, 60).W()));

        // A port that does not exist is refused naming the field.
        var bad = await Assert.ThrowsAsync<Grpc.Core.RpcException>(() => c.InjectFrameAsync(3, incoming)).W();
        Assert.Contains("port", bad.Status.Detail, StringComparison.Ordinal);

        await c.AssertNoViolationsAsync().W();
        var deadline = T.Deadline;
        while (true)
        {
            lock (trace)
                if (trace.Any(e => e.Token == "DMA") && trace.Any(e => e.Token == "FRAME") && trace.Any(e => e.Token == "MMIO" && e.Write)) break;
            Assert.True(DateTime.UtcNow < deadline, "trace did not show the device's MMIO, DMA and frames");
            await Task.Delay(20);
        }
        lock (trace) Assert.All(trace, e => Assert.True(e.Rid is Rid or 0, $"rid 0x{e.Rid:X4}"));
        await cts.CancelAsync();
        await traceTask.W();
        s.AssertNoErrors();
    }

    private static byte[] Desc(ulong addr, uint len, ushort flags)
    {
        var d = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(d, addr);
        BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(8), len);
        BinaryPrimitives.WriteUInt16LittleEndian(d.AsSpan(12), flags);
        return d;
    }

    private static async Task W(PcieEmuClient c, ulong address, int width, ulong value) =>
        Assert.Equal(CompletionStatus.Successful, await c.WriteMmioAsync(address, width, value).W());

    private static async Task<ulong> R(PcieEmuClient c, ulong address, int width)
    {
        var r = await c.ReadMmioAsync(address, width).W();
        Assert.Equal(CompletionStatus.Successful, r.Status);
        return r.Value;
    }
}
