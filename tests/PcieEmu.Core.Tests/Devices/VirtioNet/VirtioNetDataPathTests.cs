using System.Buffers.Binary;
using PcieEmu.Core.Devices.VirtioNet;
using PcieEmu.Core.Events;
using PcieEmu.Core.Iommu;
using PcieEmu.Core.Tests.Iommu;
using static PcieEmu.Core.Devices.VirtioNet.VirtioRegs;

namespace PcieEmu.Core.Tests.Devices.VirtioNet;

/// <summary>Frames both ways over split and packed rings, driven by <see cref="VirtioTestDriver"/>.</summary>
public class VirtioNetDataPathTests
{
    internal static readonly ulong Std = Bit(FVersion1) | Bit(FMac) | Bit(FStatus) | Bit(FCsum) | Bit(FCtrlVq) | Bit(FCtrlRx) | Bit(FCtrlMacAddr);
    private static readonly byte[] DevMac = VirtioTestDriver.Mac(1), Peer = VirtioTestDriver.Mac(9);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void LinuxOrderBringUpThenFramesBothWays(bool packed)
    {
        using var d = new VirtioTestDriver();
        d.BringUp(Std | (packed ? Bit(FRingPacked) : 0), packed: packed);
        Assert.Equal(3, d.Queues.Count);                      // rx0, tx0, control
        Assert.Equal(DevMac, BitConverter.GetBytes(d.DeviceCfg(0, 8))[..6]);
        Assert.Equal(NetStatusLinkUp, (ushort)d.DeviceCfg(NetCfgStatus, 2));
        var rx = d.Queues[0];
        var tx = d.Queues[1];
        var bufs = d.PostRx(rx, 4);
        d.Vectors();
        using var frames = d.M.Events.Subscribe(EventKinds.Frame);

        var frame = VirtioTestDriver.Frame(Peer, DevMac);
        ushort id = d.Send(tx, frame);
        var sent = Assert.Single(d.Sent);
        Assert.Equal(frame, sent.Data);
        Assert.Equal(2, sent.Port);
        var used = Assert.Single(tx.Used());
        Assert.Equal((id, 0u), (used.Id, used.Len));
        Assert.Equal([2], d.Vectors());                       // tx0's vector

        var incoming = VirtioTestDriver.Frame(DevMac, Peer, 100);
        Assert.Equal(1, d.Dev.InjectFrame(incoming));
        var got = Assert.Single(rx.Used());
        Assert.Equal((uint)(NetHdrSize + incoming.Length), got.Len);
        var data = d.ReadRam(got.Cookie, (int)got.Len);
        Assert.Equal(1, BinaryPrimitives.ReadUInt16LittleEndian(data.AsSpan(HdrNumBuffers)));
        Assert.Equal(0, data[HdrFlags]);
        Assert.Equal(GsoNone, data[HdrGsoType]);
        Assert.Equal(incoming, data[NetHdrSize..]);
        Assert.Equal(bufs[0], got.Cookie);
        Assert.Equal([1], d.Vectors());                       // rx0's vector
        Assert.Equal((1, 1), (d.Dev.TxFrames, d.Dev.RxFrames));
        // Both frames are on the machine's event path: the transmit with its queue, the receive from the wire.
        Assert.True(frames.Reader.TryRead(out var e1) && e1 is FrameEvent { Direction: FrameDirection.ToWire, Queue: 1 } t && t.Rid == d.Rid && t.Frame.Data.SequenceEqual(frame));
        Assert.True(frames.Reader.TryRead(out var e2) && e2 is FrameEvent { Direction: FrameDirection.FromWire } r && r.Frame.Data.SequenceEqual(incoming));
        Assert.Equal(0, d.Dev.QueueErrors);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void IndirectDescriptorsCarryHeaderAndFrameSeparately(bool packed)
    {
        using var d = new VirtioTestDriver();
        d.BringUp(Std | Bit(FIndirectDesc) | (packed ? Bit(FRingPacked) : 0), packed: packed);
        var tx = d.Queues[1];
        var frame = VirtioTestDriver.Frame(Peer, DevMac, 200);
        d.Send(tx, frame, split: true, indirect: true);
        d.Send(tx, frame, split: true, indirect: false);
        Assert.Equal(2, d.Sent.Count);
        Assert.All(d.Sent, f => Assert.Equal(frame, f.Data));
        Assert.Equal(2, tx.Used().Count);

        // A receive buffer as an indirect table of two writable pieces: header, then data.
        var rx = d.Queues[0];
        ulong hdr = d.Alloc(NetHdrSize, 16), body = d.Alloc(1600, 16);
        rx.Add([(hdr, (uint)NetHdrSize, true), (body, 1600u, true)], indirect: true, cookie: body);
        d.Kick(rx);
        var incoming = VirtioTestDriver.Frame(DevMac, Peer, 300);
        Assert.Equal(1, d.Dev.InjectFrame(incoming));
        var got = Assert.Single(rx.Used());
        Assert.Equal((uint)(NetHdrSize + 300), got.Len);
        Assert.Equal(incoming, d.ReadRam(body, 300));
        Assert.Equal(1, d.R16(hdr + HdrNumBuffers));
    }

    [Fact]
    public void IndirectWithoutTheFeatureIsAMalformedChain()
    {
        using var d = new VirtioTestDriver();
        d.BringUp(Std);
        d.Send(d.Queues[1], VirtioTestDriver.Frame(Peer, DevMac), split: true, indirect: true);
        Assert.Empty(d.Sent);
        Assert.Equal(VirtqErrorKind.MalformedChain, d.Dev.LastError!.Value.Kind);
        Assert.NotEqual(0, d.Status & StatusNeedsReset);
        Assert.Contains(0, d.Vectors());                      // configuration change on the config vector
    }

    [Fact]
    public void EventIdxSuppressesInterruptsAndNotificationsOnSplitRings()
    {
        using var d = new VirtioTestDriver();
        d.BringUp(Std | Bit(FEventIdx));
        var tx = d.Queues[1];
        d.Vectors();
        // Interrupt me only once the used index passes 1 (after the second used buffer).
        tx.SetUsedEvent(1);
        var frame = VirtioTestDriver.Frame(Peer, DevMac);
        d.Send(tx, frame);
        Assert.Single(d.Sent);
        Assert.Empty(d.Vectors());
        // The device asks to be notified for the next buffer: avail_event = its next avail index.
        Assert.Equal(1, tx.AvailEvent);
        d.Send(tx, frame);
        Assert.Equal(2, d.Sent.Count);
        Assert.Equal([2], d.Vectors());
        Assert.Equal(2, tx.AvailEvent);

        // Driver side: with avail_event left behind, a buffer added after it needs no kick.
        d.W16(tx.Device + 4 + (ulong)tx.Size * 8, 0);   // as if the device wanted a kick at 0 only
        tx.Add([(d.Alloc(76, 16), 76u, false)], indirect: false);
        Assert.False(tx.KickNeeded());

        // Receive: used_event far ahead means no interrupt per frame.
        var rx = d.Queues[0];
        d.PostRx(rx, 4);
        rx.SetUsedEvent(2);
        for (int i = 0; i < 2; i++) d.Dev.InjectFrame(VirtioTestDriver.Frame(DevMac, Peer));
        Assert.Empty(d.Vectors());
        d.Dev.InjectFrame(VirtioTestDriver.Frame(DevMac, Peer));
        Assert.Equal([1], d.Vectors());
    }

    [Fact]
    public void NoInterruptFlagSuppressesWithoutEventIdx()
    {
        using var d = new VirtioTestDriver();
        d.BringUp(Std);
        var tx = d.Queues[1];
        d.Vectors();
        tx.SetNoInterrupt(true);
        d.Send(tx, VirtioTestDriver.Frame(Peer, DevMac));
        Assert.Empty(d.Vectors());
        tx.SetNoInterrupt(false);
        d.Send(tx, VirtioTestDriver.Frame(Peer, DevMac));
        Assert.Equal([2], d.Vectors());
    }

    [Fact]
    public void PackedEventSuppressionDisableEnableAndDesc()
    {
        using var d = new VirtioTestDriver();
        d.BringUp(Std | Bit(FRingPacked) | Bit(FEventIdx), size: 8, packed: true);
        var tx = d.Queues[1];
        d.Vectors();
        var frame = VirtioTestDriver.Frame(Peer, DevMac);
        // The device publishes DESC at its next available position.
        Assert.Equal(EventFlagsDesc, d.R16(tx.Device + 2));
        tx.SetDriverEvent(EventFlagsDisable);
        d.Send(tx, frame);
        Assert.Empty(d.Vectors());
        Assert.Equal((ushort)(1 | 0x8000), d.R16(tx.Device));   // next avail 1, wrap counter 1
        tx.SetDriverEvent(EventFlagsEnable);
        d.Send(tx, frame);
        Assert.Equal([2], d.Vectors());
        // DESC at position 3 (wrap 1): no interrupt for the used descriptor at 2, one for 3.
        tx.SetDriverEvent(EventFlagsDesc, 3 | 0x8000);
        d.Send(tx, frame);
        Assert.Empty(d.Vectors());
        d.Send(tx, frame);
        Assert.Equal([2], d.Vectors());
        Assert.Equal(4, tx.Used().Count);
        // Around the ring (size 8): the wrap counters flip and frames keep flowing.
        tx.SetDriverEvent(EventFlagsEnable);
        for (int i = 0; i < 12; i++) { d.Send(tx, frame); Assert.Single(tx.Used()); }
        Assert.Equal(16, d.Sent.Count);
    }

    [Fact]
    public void SplitRingWrapsAround()
    {
        using var d = new VirtioTestDriver();
        d.BringUp(Std, size: 4);
        var tx = d.Queues[1];
        for (int i = 0; i < 10; i++)
        {
            d.Send(tx, VirtioTestDriver.Frame(Peer, DevMac, 60 + i));
            Assert.Single(tx.Used());
        }
        Assert.Equal(10, d.Sent.Count);
        Assert.Equal(10, tx.UsedIdx);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void MergeableBuffersSpreadALargeFrame(bool packed)
    {
        using var d = new VirtioTestDriver();
        d.BringUp(Std | Bit(FMrgRxbuf) | (packed ? Bit(FRingPacked) : 0), packed: packed);
        var rx = d.Queues[0];
        d.PostRx(rx, 8, size: 512);
        var frame = VirtioTestDriver.Frame(DevMac, Peer, 1514);
        using (var dma = d.M.Events.Subscribe(EventKinds.Dma))
        {
            Assert.Equal(1, d.Dev.InjectFrame(frame));
            if (packed)
            {
                // One request in three buffers: the first buffer's used descriptor is written last (§2.8.16).
                var usedWrites = new List<ulong>();
                while (dma.Reader.TryRead(out var e))
                    if (e is DmaEvent { IsWrite: true, Length: 8 } w && w.Iova >= rx.Desc && w.Iova < rx.Desc + 16UL * (ulong)rx.Size)
                        usedWrites.Add((w.Iova - rx.Desc) / 16);
                Assert.Equal([1UL, 2UL, 0UL], usedWrites);
            }
        }
        var used = rx.Used();
        Assert.Equal([512u, 512u, 502u], used.Select(u => u.Len));
        var first = d.ReadRam(used[0].Cookie, 512);
        Assert.Equal(3, BinaryPrimitives.ReadUInt16LittleEndian(first.AsSpan(HdrNumBuffers)));
        var all = used.SelectMany(u => d.ReadRam(u.Cookie, (int)u.Len)).ToArray();
        Assert.Equal(frame, all[NetHdrSize..]);
        // Five buffers left: one more large frame fits, the next does not (two left) and is dropped
        // with the buffers still available for a small one.
        Assert.Equal(1, d.Dev.InjectFrame(frame));
        Assert.Equal(3, rx.Used().Count);
        Assert.Equal(0, d.Dev.InjectFrame(frame));
        Assert.Equal(1, d.Dev.RxDropped);
        Assert.Empty(rx.Used());
        Assert.Equal(1, d.Dev.InjectFrame(VirtioTestDriver.Frame(DevMac, Peer, 100)));
        Assert.Equal((uint)(NetHdrSize + 100), Assert.Single(rx.Used()).Len);
    }

    [Fact]
    public void WithoutMergeableAFrameLargerThanTheBufferIsDroppedAndTheBufferKept()
    {
        using var d = new VirtioTestDriver();
        d.BringUp(Std);
        var rx = d.Queues[0];
        d.PostRx(rx, 1, size: 512);
        Assert.Equal(0, d.Dev.InjectFrame(VirtioTestDriver.Frame(DevMac, Peer, 1514)));
        Assert.Equal(1, d.Dev.RxDropped);
        Assert.Empty(rx.Used());
        Assert.Equal(1, d.Dev.InjectFrame(VirtioTestDriver.Frame(DevMac, Peer, 400)));
        Assert.Equal((uint)(NetHdrSize + 400), Assert.Single(rx.Used()).Len);
        // No buffers at all: dropped.
        Assert.Equal(0, d.Dev.InjectFrame(VirtioTestDriver.Frame(DevMac, Peer, 60)));
        Assert.Equal(2, d.Dev.RxDropped);
    }

    [Fact]
    public void ChecksumOffloadFillsTheUdpChecksum()
    {
        using var d = new VirtioTestDriver();
        d.BringUp(Std);
        var frame = VirtioTestDriver.Frame(Peer, DevMac, 80);
        // Pseudo-header sum in the UDP checksum field, as a driver with CSUM leaves it.
        uint pseudo = 0x0A00 + 0x0001 + 0x0A00 + 0x0002 + 17 + (uint)(80 - 34);
        while (pseudo > 0xFFFF) pseudo = (pseudo & 0xFFFF) + (pseudo >> 16);
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(40), (ushort)pseudo);
        var hdr = new byte[NetHdrSize];
        hdr[HdrFlags] = HdrFNeedsCsum;
        BinaryPrimitives.WriteUInt16LittleEndian(hdr.AsSpan(HdrCsumStart), 34);
        BinaryPrimitives.WriteUInt16LittleEndian(hdr.AsSpan(HdrCsumOffset), 6);
        d.Send(d.Queues[1], frame, header: hdr);
        var sent = Assert.Single(d.Sent).Data;
        // Verify: the one's complement sum over pseudo-header + UDP datagram is 0xFFFF.
        ulong sum = 0x0A00 + 0x0001 + 0x0A00 + 0x0002 + 17 + (ulong)(80 - 34);
        for (int i = 34; i + 1 < sent.Length; i += 2) sum += BinaryPrimitives.ReadUInt16BigEndian(sent.AsSpan(i));
        while (sum > 0xFFFF) sum = (sum & 0xFFFF) + (sum >> 16);
        Assert.Equal(0xFFFFUL, sum);
        // GSO is not offered: a GSO header is dropped.
        hdr[HdrGsoType] = 1;
        d.Send(d.Queues[1], frame, header: hdr);
        Assert.Single(d.Sent);
        Assert.Equal(1, d.Dev.TxDropped);
    }

    internal static byte Ctrl(VirtioTestDriver d, byte cls, byte cmd, params byte[] data)
    {
        var ctrl = d.Queues[d.Dev.ControlQueue];
        ulong cmdBuf = d.Alloc(2 + data.Length, 16), ack = d.Alloc(1, 16);
        d.WriteRam(cmdBuf, [cls, cmd, .. data]);
        d.WriteRam(ack, [0xEE]);
        ctrl.Add([(cmdBuf, 2u, false), (cmdBuf + 2, (uint)data.Length, false), (ack, 1u, true)], indirect: false);
        d.Kick(ctrl);
        var u = Assert.Single(ctrl.Used());
        Assert.Equal(1u, u.Len);
        return d.ReadRam(ack, 1)[0];
    }

    [Fact]
    public void MultiqueueFourPairsSteersTheReplyToTheTransmittingPair()
    {
        using var d = new VirtioTestDriver(new VirtioNetOptions { QueuePairs = 4 });
        d.BringUp(Std | Bit(FMq));
        Assert.Equal(9, d.Queues.Count);
        Assert.Equal(8, d.Dev.ControlQueue);
        Assert.Equal(4, (int)d.DeviceCfg(NetCfgMaxPairs, 2));
        Assert.Equal(1, d.Dev.ActiveQueuePairs);
        Assert.Equal(CtrlErr, Ctrl(d, CtrlMq, CtrlMqVqPairsSet, 5, 0));
        Assert.Equal(CtrlErr, Ctrl(d, CtrlMq, CtrlMqVqPairsSet, 0, 0));
        Assert.Equal(CtrlOk, Ctrl(d, CtrlMq, CtrlMqVqPairsSet, 4, 0));
        Assert.Equal(4, d.Dev.ActiveQueuePairs);
        for (int p = 0; p < 4; p++) d.PostRx(d.Queues[2 * p], 4);
        d.Vectors();

        // Four flows, each sent from its own pair; each reply comes back on that pair's receive queue.
        for (int p = 0; p < 4; p++)
        {
            var tx = d.Queues[2 * p + 1];
            d.Send(tx, VirtioTestDriver.Frame(Peer, DevMac, srcIp: 1, dstIp: (byte)(20 + p), srcPort: (ushort)(4000 + p), dstPort: 53));
            Assert.Single(tx.Used());
            Assert.Equal([2 * p + 2], d.Vectors());
            Assert.Equal(1, d.Dev.InjectFrame(VirtioTestDriver.Frame(DevMac, Peer, srcIp: (byte)(20 + p), dstIp: 1, srcPort: 53, dstPort: (ushort)(4000 + p))));
            for (int q = 0; q < 4; q++) Assert.Equal(q == p ? 1 : 0, d.Queues[2 * q].Used().Count);
            Assert.Equal([2 * p + 1], d.Vectors());
        }
    }

    [Fact]
    public void ControlQueueRxModeMacTableAndMacAddress()
    {
        using var d = new VirtioTestDriver();
        d.BringUp(Std);
        var rx = d.Queues[0];
        d.PostRx(rx, 16);
        var other = VirtioTestDriver.Mac(0x42);
        byte[] mcast = [0x01, 0x00, 0x5E, 0, 0, 1];
        // Promiscuous at reset: anything is received.
        Assert.True(d.Dev.Promiscuous);
        Assert.Equal(1, d.Dev.InjectFrame(VirtioTestDriver.Frame(other, Peer)));
        Assert.Equal(CtrlOk, Ctrl(d, CtrlRx, CtrlRxPromisc, 0));
        Assert.Equal(0, d.Dev.InjectFrame(VirtioTestDriver.Frame(other, Peer)));
        Assert.Equal(0, d.Dev.InjectFrame(VirtioTestDriver.Frame(mcast, Peer)));
        Assert.Equal(1, d.Dev.InjectFrame(VirtioTestDriver.Frame([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], Peer)));
        Assert.Equal(1, d.Dev.InjectFrame(VirtioTestDriver.Frame(DevMac, Peer)));
        Assert.Equal(CtrlOk, Ctrl(d, CtrlRx, CtrlRxAllmulti, 1));
        Assert.Equal(1, d.Dev.InjectFrame(VirtioTestDriver.Frame(mcast, Peer)));
        Assert.Equal(CtrlOk, Ctrl(d, CtrlRx, CtrlRxAllmulti, 0));
        // MAC table: one unicast (other), one multicast.
        byte[] table = [1, 0, 0, 0, .. other, 1, 0, 0, 0, .. mcast];
        Assert.Equal(CtrlOk, Ctrl(d, CtrlMac, CtrlMacTableSet, table));
        Assert.Equal(1, d.Dev.InjectFrame(VirtioTestDriver.Frame(other, Peer)));
        Assert.Equal(1, d.Dev.InjectFrame(VirtioTestDriver.Frame(mcast, Peer)));
        Assert.Equal(CtrlErr, Ctrl(d, CtrlMac, CtrlMacTableSet, 1, 0, 0, 0));   // truncated
        // MAC_ADDR_SET: config space follows, config_generation moves.
        byte gen = (byte)d.Common(ConfigGeneration, 1);
        var newMac = VirtioTestDriver.Mac(0x55);
        Assert.Equal(CtrlOk, Ctrl(d, CtrlMac, CtrlMacAddrSet, newMac));
        Assert.Equal(newMac, BitConverter.GetBytes(d.DeviceCfg(0, 8))[..6]);
        Assert.NotEqual(gen, (byte)d.Common(ConfigGeneration, 1));
        Assert.Equal(1, d.Dev.InjectFrame(VirtioTestDriver.Frame(newMac, Peer)));
        Assert.Equal(0, d.Dev.InjectFrame(VirtioTestDriver.Frame(DevMac, Peer)));
        // Unknown class, and MQ without MQ negotiated: errors.
        Assert.Equal(CtrlErr, Ctrl(d, 0x77, 0));
        Assert.Equal(CtrlErr, Ctrl(d, CtrlMq, CtrlMqVqPairsSet, 1, 0));
        Assert.Equal(0, d.Dev.QueueErrors);
    }

    [Fact]
    public void ThroughVtdAnUnmappedRingFaultsAndTheDeviceNeedsReset()
    {
        using var d = new VirtioTestDriver();
        using var h = new VtdHarness(d.M, 0xC0_0000);
        h.Enable();
        h.UnmaskFaultEvents();
        const ushort did = 7;
        ulong top = h.NewDomain(d.Rid, did);
        // The driver allocates from 1 MiB: map 1-2 MiB with 4 KiB pages, the rest up to 12 MiB with 2 MiB pages.
        for (ulong a = 0x10_0000; a < 0x20_0000; a += 0x1000) h.Map(top, a, a);
        for (ulong a = 0x20_0000; a < 0xC0_0000; a += 0x20_0000) h.Map(top, a, a, pageLevel: 2);
        d.BringUp(Std);
        var rx = d.Queues[0];
        var tx = d.Queues[1];
        d.PostRx(rx, 2);
        d.Send(tx, VirtioTestDriver.Frame(Peer, DevMac));
        Assert.Single(d.Sent);
        Assert.Equal(1, d.Dev.InjectFrame(VirtioTestDriver.Frame(DevMac, Peer)));
        Assert.Equal(0u, h.Fsts);
        d.Vectors();

        // The driver's IOMMU mapping of the transmit used ring goes away (and the IOTLB is invalidated).
        ulong page = tx.Device & ~0xFFFUL;
        h.WriteQ(h.EntryAddress(top, page, 1), 0);
        h.SetReg(VtdRegs.Iotlb, 8, VtdRegs.IotlbIvt | 2UL << 60 | (ulong)did << 32);
        d.Send(tx, VirtioTestDriver.Frame(Peer, DevMac));
        Assert.Single(d.Sent);                                // the rings share the page: nothing could be read
        var rec = h.Unit.ReadFaultRecord(0);
        Assert.True(rec.Fault);
        Assert.Equal(d.Rid, rec.SourceId);
        Assert.Equal(page, rec.PageAddress);
        var err = d.Dev.LastError!.Value;
        Assert.Equal((1, VirtqErrorKind.Dma), (err.Queue, err.Kind));
        Assert.NotEqual(0, d.Status & StatusNeedsReset);
        Assert.Contains(0, d.Vectors());                      // config change notification
        // Needs reset: the device does nothing more (a frame from the wire is dropped) until the driver resets.
        Assert.Equal(0, d.Dev.InjectFrame(VirtioTestDriver.Frame(DevMac, Peer)));
        h.Map(top, page, page);
        h.SetReg(VtdRegs.Iotlb, 8, VtdRegs.IotlbIvt | 2UL << 60 | (ulong)did << 32);
        d.BringUp(Std);
        d.Send(d.Queues[1], VirtioTestDriver.Frame(Peer, DevMac));
        Assert.Equal(2, d.Sent.Count);
        Assert.Null(d.Dev.LastError);
    }
}
