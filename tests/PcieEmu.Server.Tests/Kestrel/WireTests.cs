using System.Buffers.Binary;
using Google.Protobuf;
using Grpc.Core;
using PcieEmu.Client;
using PcieEmu.Protocol.V1;
using static PcieEmu.Core.Devices.Igb.IgbRegs;

namespace PcieEmu.Server.Tests.Kestrel;

/// <summary>EthernetService and IommuService end to end, driving the NIC the way a driver does: registers over MMIO, rings in RAM.</summary>
public sealed class WireTests
{
    /// <summary>A 4-byte MMIO write that must complete successfully.</summary>
    internal static async Task W32(PcieEmuClient c, ulong address, uint value)
    {
        var r = await c.Mmio.WriteMmioAsync(new WriteMmioRequest { Address = address, Width = 4, Value = value }, deadline: T.Deadline).W();
        Assert.Equal(CompletionStatus.Successful, r.Status);
    }

    private static byte[] Frame(byte[] dst, int length, byte seed)
    {
        var f = new byte[length];
        dst.CopyTo(f, 0);
        new byte[] { 0x02, 0, 0, 0, 0, seed }.CopyTo(f, 6);
        f[12] = 0x08;
        for (int i = 14; i < length; i++) f[i] = (byte)(seed + i);
        return f;
    }

    [Theory]
    [InlineData("tcp")]
    [InlineData("unix")]
    public async Task Transmitted_frames_are_captured_and_written_to_pcap(string transport)
    {
        string pcapDir = Directory.CreateTempSubdirectory("pcie-emu-pcap-").FullName;
        try
        {
            await using (var s = await TestServer.StartAsync(transport, new Dictionary<string, string?>()))
            {
                // TestServer has no --pcap; use a second server below for pcap. Here: capture only.
                await TransmitAndCapture(s.Client, 3);
                s.AssertNoErrors();
            }
            await using (var s = await TestServer.StartAsync(transport, pcapDirectory: pcapDir))
            {
                var sent = await TransmitAndCapture(s.Client, 2);
                // Inject one frame from the link partner into port 1 too (its receiver is off: dropped, still on the wire).
                var inj = await s.Client.Ethernet.InjectFrameAsync(new InjectFrameRequest { Port = 1, Data = ByteString.CopyFrom(Frame([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], 60, 9)) }, deadline: T.Deadline).W();
                Assert.False(inj.Accepted);
                await s.Client.Platform.ResetPlatformAsync(new ResetPlatformRequest(), deadline: T.Deadline).W();
                // After a reset rebuilt the ports, capture still follows them.
                sent.AddRange(await TransmitAndCapture(s.Client, 1));
                await s.DisposeAsync().AsTask().W();   // flushes the pcap files
                var port0 = await Capture.Tshark.ReadAsync(Path.Combine(pcapDir, "pcie-emu-port0.pcapng"));
                Assert.Equal(sent.Select(f => f.Length.ToString(System.Globalization.CultureInfo.InvariantCulture)), port0.Select(r => r[4]));
                Assert.All(port0, r => Assert.Equal(["port0 (01:00.0 82576)", "2", "tx by 01:00.0 queue 0"], r[..3]));
                var port1 = await Capture.Tshark.ReadAsync(Path.Combine(pcapDir, "pcie-emu-port1.pcapng"));
                Assert.Equal([["port1 (01:00.1 82576)", "1", "rx from wire", "", "60"]], port1);
            }
        }
        finally
        {
            Directory.Delete(pcapDir, recursive: true);
        }
    }

    /// <summary>Sets up PF0 TX queue 0 (legacy descriptors) and sends <paramref name="n"/> frames; returns them as captured.</summary>
    internal static async Task<List<byte[]>> TransmitAndCapture(PcieEmuClient c, int n)
    {
        using var cts = new CancellationTokenSource(T.Timeout);
        using var capture = c.Ethernet.CaptureFrames(new CaptureFramesRequest { Port = 0 }, cancellationToken: cts.Token);
        await capture.ResponseHeadersAsync.W();
        ulong bar0 = (await c.ListFunctionsAsync().W()).Single(f => f.Rid == 0x100).Bars.Single(b => b.Index == 0).Address;
        const ulong Ring = 0x20_0000, Buffers = 0x21_0000;
        await W32(c, bar0 + Tctl, TctlEn);
        await W32(c, bar0 + TxQueues + Tdbal, (uint)Ring);
        await W32(c, bar0 + TxQueues + Tdbah, 0);
        await W32(c, bar0 + TxQueues + Tdlen, 8 * 16);
        await W32(c, bar0 + TxQueues + Tdh, 0);
        await W32(c, bar0 + TxQueues + Tdt, 0);
        await W32(c, bar0 + TxQueues + Txdctl, QueueEnable);
        var frames = new List<byte[]>();
        for (int i = 0; i < n; i++)
        {
            var f = Frame([0x02, 0x11, 0x22, 0x33, 0x44, (byte)i], 60 + 10 * i, (byte)(0x30 + i));
            frames.Add(f);
            ulong buf = Buffers + (ulong)i * 2048;
            await c.Memory.WriteMemoryAsync(new WriteMemoryRequest { Address = buf, Data = ByteString.CopyFrom(f) }, deadline: T.Deadline).W();
            var d = new byte[16];
            BinaryPrimitives.WriteUInt64LittleEndian(d, buf);
            BinaryPrimitives.WriteUInt16LittleEndian(d.AsSpan(8), (ushort)f.Length);
            d[11] = 0x01 | 0x02 | 0x08;   // EOP | IFCS | RS
            await c.Memory.WriteMemoryAsync(new WriteMemoryRequest { Address = Ring + 16 * (ulong)i, Data = ByteString.CopyFrom(d) }, deadline: T.Deadline).W();
        }
        await W32(c, bar0 + TxQueues + Tdt, (uint)n);   // the doorbell
        var got = new List<byte[]>();
        while (got.Count < n)
        {
            Assert.True(await capture.ResponseStream.MoveNext(cts.Token).W());
            var cf = capture.ResponseStream.Current;
            Assert.Equal(0u, cf.Port);
            Assert.True(cf.TimestampNs > 0);
            got.Add(cf.Data.ToByteArray());
        }
        Assert.Equal(frames, got);
        return got;
    }

    [Fact]
    public async Task Injected_broadcast_lands_in_the_receive_ring_seen_through_the_mapped_RAM()
    {
        await using var s = await TestServer.StartAsync("unix");
        var c = s.Client;
        ulong bar0 = (await c.ListFunctionsAsync().W()).Single(f => f.Rid == 0x101).Bars.Single(b => b.Index == 0).Address;
        const ulong Ring = 0x30_0000, Buffer = 0x31_0000;
        using var ram = await c.MapRamAsync().W();
        BinaryPrimitives.WriteUInt64LittleEndian(ram.GetSpan(Ring, 8), Buffer);   // descriptor 0: buffer address
        await W32(c, bar0 + RxQueues + Rdbal, (uint)Ring);
        await W32(c, bar0 + RxQueues + Rdbah, 0);
        await W32(c, bar0 + RxQueues + Rdlen, 8 * 16);
        await W32(c, bar0 + RxQueues + Srrctl, 2);   // 2 KiB buffers, legacy descriptors
        await W32(c, bar0 + RxQueues + Rdh, 0);
        await W32(c, bar0 + RxQueues + Rxdctl, QueueEnable);
        await W32(c, bar0 + RxQueues + Rdt, 1);
        await W32(c, bar0 + Rctl, RctlEn | RctlBam);
        var frame = Frame([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], 80, 0x55);
        var r = await c.Ethernet.InjectFrameAsync(new InjectFrameRequest { Port = 1, Data = ByteString.CopyFrom(frame) }, deadline: T.Deadline).W();
        Assert.Equal((true, 1u), (r.Accepted, r.Queues));
        Assert.Equal(frame, ram.GetSpan(Buffer, frame.Length).ToArray());
        s.AssertNoErrors();
    }

    [Fact]
    public async Task TranslateAddress_reports_identity_and_a_context_fault_once_translation_is_on()
    {
        await using var s = await TestServer.StartAsync("tcp");
        var c = s.Client;
        var off = await c.Iommu.TranslateAddressAsync(new TranslateAddressRequest { Rid = 0x100, Address = 0x4000 }, deadline: T.Deadline).W();
        Assert.Equal((TranslationStatus.TranslationDisabled, 0x4000ul), (off.Status, off.TranslatedAddress));
        // Root table at 0x40000 (all zero: no root entry present), then SRTP and TE through the registers.
        ulong vtd = (await c.GetPlatformAsync().W()).IommuBase;
        await c.Mmio.WriteMmioAsync(new WriteMmioRequest { Address = vtd + 0x20, Width = 8, Value = 0x40000 }, deadline: T.Deadline).W();   // RTADDR
        await c.Mmio.WriteMmioAsync(new WriteMmioRequest { Address = vtd + 0x18, Width = 4, Value = 1u << 30 }, deadline: T.Deadline).W();  // GCMD.SRTP
        await c.Mmio.WriteMmioAsync(new WriteMmioRequest { Address = vtd + 0x18, Width = 4, Value = 1u << 31 }, deadline: T.Deadline).W();  // GCMD.TE
        var dry = await c.Iommu.TranslateAddressAsync(new TranslateAddressRequest { Rid = 0x100, Address = 0x4000, DryRun = true }, deadline: T.Deadline).W();
        Assert.Equal((TranslationStatus.Fault, 1u, false), (dry.Status, dry.FaultReason, dry.FaultRecorded));   // root entry not present
        var real = await c.Iommu.TranslateAddressAsync(new TranslateAddressRequest { Rid = 0x100, Address = 0x4000, Write = true }, deadline: T.Deadline).W();
        Assert.Equal((TranslationStatus.Fault, 1u, true), (real.Status, real.FaultReason, real.FaultRecorded));
        var fsts = await c.Mmio.ReadMmioAsync(new ReadMmioRequest { Address = vtd + 0x34, Width = 4 }, deadline: T.Deadline).W();
        Assert.NotEqual(0ul, fsts.Value & 0x2);   // FSTS.PPF: a fault is pending in the recording registers
    }
}

/// <summary>A capture subscriber that stops reading is cut off; another keeps every frame.</summary>
public sealed class CaptureOverflowTests
{
    [Fact]
    public async Task Stuck_capture_subscriber_is_cut_off_while_another_keeps_receiving()
    {
        await using var s = await TestServer.StartAsync("unix", new Dictionary<string, string?> { ["Limits:CaptureQueueCapacity"] = "128" });
        var c = s.Client;
        using var cts = new CancellationTokenSource(T.Timeout * 4);
        using var live = c.Ethernet.CaptureFrames(new CaptureFramesRequest { Port = 0 }, cancellationToken: cts.Token);
        using var stuckClient = s.NewClient();
        using var stuck = stuckClient.Ethernet.CaptureFrames(new CaptureFramesRequest { Port = 0 }, cancellationToken: cts.Token);
        await live.ResponseHeadersAsync.W();
        await stuck.ResponseHeadersAsync.W();

        ulong bar0 = (await c.ListFunctionsAsync().W()).Single(f => f.Rid == 0x100).Bars.Single(b => b.Index == 0).Address;
        const ulong Ring = 0x20_0000, Buffer = 0x21_0000;
        const int Count = 64, PerRound = Count - 1, Rounds = 16, Size = 1500;
        var frame = new byte[Size];
        new byte[] { 0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00 }.CopyTo(frame, 0);
        await c.Memory.WriteMemoryAsync(new WriteMemoryRequest { Address = Buffer, Data = ByteString.CopyFrom(frame) }, deadline: T.Deadline).W();
        var ring = new byte[Count * 16];
        for (int i = 0; i < Count; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(ring.AsSpan(16 * i), Buffer);
            BinaryPrimitives.WriteUInt16LittleEndian(ring.AsSpan(16 * i + 8), Size);
            ring[16 * i + 11] = 0x01 | 0x02 | 0x08;   // EOP | IFCS | RS
        }
        await using var session = c.OpenSession();
        foreach (var (reg, value) in new (uint, uint)[] { (Tctl, TctlEn), (TxQueues + Tdbal, (uint)Ring), (TxQueues + Tdbah, 0), (TxQueues + Tdlen, Count * 16),
                     (TxQueues + Tdh, 0), (TxQueues + Tdt, 0), (TxQueues + Txdctl, QueueEnable) })
            await session.PostMmioWriteAsync(bar0 + reg, 4, value).AsTask().W();

        long received = 0;
        uint tail = 0;
        for (int r = 0; r < Rounds; r++)
        {
            await session.PostMemoryWriteAsync(Ring, ring).AsTask().W();           // re-arm every descriptor
            tail = (tail + PerRound) % Count;
            await session.PostMmioWriteAsync(bar0 + TxQueues + Tdt, 4, tail).AsTask().W();
            await session.FlushAsync().W();
            while (received < (long)PerRound * (r + 1))
            {
                Assert.True(await live.ResponseStream.MoveNext(cts.Token).W());
                Assert.Equal(Size, live.ResponseStream.Current.Data.Length);
                received++;
            }
        }
        Assert.Equal(PerRound * Rounds, received);

        var (stuckGot, missed) = await T.DrainCutOff(stuck.ResponseStream, "frame", cts.Token);
        Assert.True(stuckGot >= 128);
        Assert.True(stuckGot + missed <= PerRound * Rounds);
        Assert.Equal(0, session.FailedWrites);
        s.AssertNoErrors();
    }
}
