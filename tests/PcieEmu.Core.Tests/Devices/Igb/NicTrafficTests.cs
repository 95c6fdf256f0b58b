using System.Buffers.Binary;
using Microsoft.Extensions.Time.Testing;
using PcieEmu.Core.Devices;
using PcieEmu.Core.Devices.Igb;
using PcieEmu.Core.Interrupts;
using PcieEmu.Core.Memory;
using static PcieEmu.Core.Devices.Igb.IgbRegs;

namespace PcieEmu.Core.Tests.Devices.Igb;

public class NicTrafficTests
{
    /// <summary>Three VFs in VMDq loopback; VF n's RX queue 0 set up with MSI-X vector 0 for RX.</summary>
    internal static (NicRig Rig, NicRig.Ring[] Tx, NicRig.Ring[] Rx) ThreeVfs(int rxPost = -1, TimeProvider? time = null)
    {
        var rig = new NicRig(vfs: 3, time: time);
        rig.SetupVmdq(3);
        var tx = new NicRig.Ring[3];
        var rx = new NicRig.Ring[3];
        for (int i = 0; i < 3; i++)
        {
            tx[i] = rig.VfTx(i);
            rx[i] = rig.VfRx(i, post: rxPost);
        }
        return (rig, tx, rx);
    }

    private static void AssertAdvRxWriteBack(NicRig rig, NicRig.Ring rx, uint index, byte[] frame)
    {
        var d = rx.Desc(index);
        uint status = BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan(8));
        Assert.Equal(0x3u, status & 0x3);   // DD | EOP
        Assert.Equal(frame.Length, BinaryPrimitives.ReadUInt16LittleEndian(d.AsSpan(12)));
        Assert.Equal(frame, rig.ReadRam(rx.Buffers[index], frame.Length));
    }

    [Fact]
    public void VfToVfDeliversIntoTheOtherRingWithWriteBacksAndMsix()
    {
        var (rig, tx, rx) = ThreeVfs();
        using var _ = rig;
        // VF1: MSI-X on, RX queue 0 → vector 0, EIMS enables it, auto-clear.
        rig.EnableMsix(rig.VfRid(1), rig.VfBar3(1), 3);
        rig.VfWrite(1, Ivar0, 0x80);          // RX0 → vector 0, valid
        rig.VfWrite(1, Eiac, 0x1);
        rig.VfWrite(1, Eims, 0x1);
        using var sub = rig.M.Interrupts.Subscribe([rig.VfRid(1)]);

        var frame = NicRig.Frame(NicRig.Mac(1), NicRig.Mac(0));
        var wire = new List<WireFrame>();
        rig.Nic.FrameTransmitted += wire.Add;
        rig.PostAdv(tx[0], frame);

        Assert.Equal(1u, tx[0].Head);                                    // TDH advanced
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(tx[0].Desc(0).AsSpan(12)) & 1);   // DD written back
        Assert.Equal(1u, rx[1].Head);                                    // RDH advanced
        AssertAdvRxWriteBack(rig, rx[1], 0, frame);
        Assert.Equal(0u, rx[0].Head);
        Assert.Equal(0u, rx[2].Head);
        Assert.Empty(wire);                                              // local unicast stays off the wire
        var ev = Assert.Single(NicRig.Drain(sub));
        Assert.Equal(InterruptKind.Msix, ev.Kind);
        Assert.Equal(0u, ev.Vector);
        Assert.Equal(0x40u, ev.Data);
        Assert.Equal(0u, rig.VfRead(1, Eicr));                           // auto-cleared (EIAC)
        // Counters: VF0 sent one (loopback), VF1 received one (loopback); nothing on the wire.
        Assert.Equal(1u, rig.VfRead(0, VfGptc));
        Assert.Equal(1u, rig.VfRead(0, VfGptlbc));
        Assert.Equal(68u, rig.VfRead(0, VfGotc));
        Assert.Equal(1u, rig.VfRead(1, VfGprc));
        Assert.Equal(1u, rig.VfRead(1, VfGprlbc));
        Assert.Equal(0u, rig.PfRead(Gptc));
    }

    [Fact]
    public void ManyFramesInOneTailWriteAndRingWrap()
    {
        var (rig, tx, rx) = ThreeVfs();
        using var _ = rig;
        for (int round = 0; round < 3; round++)
        {
            for (int k = 0; k < 40; k++)
                rig.PostAdv(tx[2], NicRig.Frame(NicRig.Mac(0), NicRig.Mac(2), 60 + k, (byte)k), kick: false);
            tx[2].WriteTail(tx[2].Tail);
            Assert.Equal(tx[2].Tail, tx[2].Head);
            // The receiver consumes and re-posts everything.
            rx[0].Replenish((rx[0].Head + 63) % 64);
        }
        Assert.Equal(120u, rig.VfRead(0, VfGprc));
        Assert.Equal((uint)(120 % 64), rx[0].Head);
        var last = NicRig.Frame(NicRig.Mac(0), NicRig.Mac(2), 60 + 39, 39);
        AssertAdvRxWriteBack(rig, rx[0], (rx[0].Head + 63) % 64, last);
    }

    [Fact]
    public void VfToWireGoesToCaptureAndCounters()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UnixEpoch.AddSeconds(1_700_000_000));
        var (rig, tx, rx) = ThreeVfs(time: clock);
        using var _ = rig;
        var wire = new List<WireFrame>();
        rig.Nic.FrameTransmitted += wire.Add;
        var frame = NicRig.Frame([0x00, 0x11, 0x22, 0x33, 0x44, 0x55], NicRig.Mac(0), 100);
        clock.Advance(TimeSpan.FromTicks(12_345));
        rig.PostAdv(tx[0], frame);
        var w = Assert.Single(wire);
        Assert.Equal(0, w.Port);
        Assert.Equal(frame, w.Data);
        Assert.Equal(1_700_000_000_000_000_000L + 1_234_500, w.TimestampUnixNs);   // the machine's clock
        Assert.All(rx, r => Assert.Equal(0u, r.Head));
        Assert.Equal(1u, rig.PfRead(Gptc));
        Assert.Equal(104u, rig.PfRead(Gotcl));
        Assert.Equal(0u, rig.PfRead(Gptc));   // read to clear
        Assert.Equal(0u, rig.VfRead(0, VfGptlbc));
        Assert.Equal(1u, rig.VfRead(0, VfGptc));
    }

    [Fact]
    public void WireToVfByReceiveAddress()
    {
        var (rig, _, rx) = ThreeVfs();
        using var __ = rig;
        var frame = NicRig.Frame(NicRig.Mac(2), [0x00, 0x11, 0x22, 0x33, 0x44, 0x55], 200);
        Assert.Equal(1, rig.Nic.InjectFrame(frame));
        AssertAdvRxWriteBack(rig, rx[2], 0, frame);
        Assert.Equal(0u, rx[0].Head);
        Assert.Equal(1u, rig.PfRead(Gprc));
        Assert.Equal(204u, rig.PfRead(Gorcl));
        Assert.Equal(1u, rig.VfRead(2, VfGprc));
        Assert.Equal(0u, rig.VfRead(2, VfGprlbc));
        // VFRE off for the pool: the frame is not received.
        rig.PfWrite(Vfre, rig.PfRead(Vfre) & ~(1u << 2));
        Assert.Equal(0, rig.Nic.InjectFrame(frame));
        Assert.Equal(1u, rx[2].Head);
    }

    [Fact]
    public void UnknownUnicastFromTheWireGoesToTheDefaultPoolUnlessDisabled()
    {
        var (rig, _, rx) = ThreeVfs();
        using var __ = rig;
        var frame = NicRig.Frame([0x00, 0x99, 0x99, 0x99, 0x99, 0x99], [0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
        rig.PfWrite(VtCtl, 1u << 7);   // default pool 1
        Assert.Equal(1, rig.Nic.InjectFrame(frame));
        Assert.Equal(1u, rx[1].Head);
        rig.PfWrite(VtCtl, 1u << 7 | VtCtlDisDefPool);
        Assert.Equal(0, rig.Nic.InjectFrame(frame));
        Assert.Equal(1u, rx[1].Head);
    }

    [Fact]
    public void BroadcastReachesEveryAcceptingPoolAndTheWireButNotTheSender()
    {
        var (rig, tx, rx) = ThreeVfs();
        using var _ = rig;
        var pfRx = rig.PfRx(3);   // the PF's pool is 3 (after its 3 VFs): queue 3
        var wire = new List<WireFrame>();
        rig.Nic.FrameTransmitted += wire.Add;
        var frame = NicRig.Frame(NicRig.Broadcast, NicRig.Mac(1));
        rig.PostAdv(tx[1], frame);
        Assert.Equal(1u, rx[0].Head);
        Assert.Equal(0u, rx[1].Head);
        Assert.Equal(1u, rx[2].Head);
        Assert.Equal(1u, pfRx.Head);
        AssertAdvRxWriteBack(rig, rx[2], 0, frame);
        Assert.Equal(frame, Assert.Single(wire).Data);

        // A pool whose VMOLR does not accept broadcast is skipped; from the wire the sender VF gets it too.
        rig.PfWrite(Vmolr + 4 * 2, VmolrAupe);
        Assert.Equal(3, rig.Nic.InjectFrame(frame));
        Assert.Equal(2u, rx[0].Head);
        Assert.Equal(1u, rx[1].Head);
        Assert.Equal(1u, rx[2].Head);
        Assert.Equal(2u, pfRx.Head);
    }

    [Fact]
    public void MulticastFollowsVmolrAndTheMulticastTable()
    {
        var (rig, _, rx) = ThreeVfs();
        using var __ = rig;
        byte[] group = [0x01, 0x00, 0x5E, 0x00, 0x00, 0xFB];
        var frame = NicRig.Frame(group, [0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
        Assert.Equal(0, rig.Nic.InjectFrame(frame));
        // VF0: multicast promiscuous. VF1: the group's bit in the MTA (MO = 0: hash = addr[4] >> 4 | addr[5] << 4).
        rig.PfWrite(Vmolr + 0, VmolrAupe | VmolrBam | VmolrMpme);
        rig.PfWrite(Vmolr + 4, VmolrAupe | VmolrBam | VmolrRompe);
        int hash = (group[4] >> 4 | group[5] << 4) & 0xFFF;
        rig.PfWrite(Mta + 4u * (uint)(hash >> 5), 1u << (hash & 31));
        Assert.Equal(2, rig.Nic.InjectFrame(frame));
        Assert.Equal(1u, rx[0].Head);
        Assert.Equal(1u, rx[1].Head);
        Assert.Equal(0u, rx[2].Head);
        Assert.Equal(1u, rig.VfRead(1, VfMprc));
    }

    [Fact]
    public void FullRingDropsAndCountsThenRecovers()
    {
        var (rig, _, rx) = ThreeVfs(rxPost: 1);
        using var __ = rig;
        var frame = NicRig.Frame(NicRig.Mac(0), [0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
        Assert.Equal(1, rig.Nic.InjectFrame(frame));
        Assert.Equal(0, rig.Nic.InjectFrame(frame));   // head == tail: no free descriptor
        Assert.Equal(0, rig.Nic.InjectFrame(frame));
        Assert.Equal(1u, rx[0].Head);
        Assert.Equal(2u, rig.PfRead(Mpc));
        Assert.Equal(2u, rig.PfRead(RxQueues + Rqdpc));
        Assert.Equal(0u, rig.PfRead(RxQueues + Rqdpc));   // read to clear
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(rx[0].Desc(1).AsSpan(8)) & 1);
        rx[0].WriteTail(5);
        Assert.Equal(1, rig.Nic.InjectFrame(frame));
        Assert.Equal(2u, rx[0].Head);
    }

    [Fact]
    public void JumboFrameSpansDescriptorsWithEopOnTheLast()
    {
        var (rig, _, rx) = ThreeVfs();
        using var __ = rig;
        var frame = NicRig.Frame(NicRig.Mac(1), [0x00, 0x11, 0x22, 0x33, 0x44, 0x55], 5000);
        Assert.Equal(1, rig.Nic.InjectFrame(frame));
        Assert.Equal(3u, rx[1].Head);
        for (uint i = 0; i < 3; i++)
        {
            var d = rx[1].Desc(i);
            uint st = BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan(8));
            Assert.Equal(i == 2 ? 3u : 1u, st & 3);
            int len = BinaryPrimitives.ReadUInt16LittleEndian(d.AsSpan(12));
            Assert.Equal(i == 2 ? 5000 - 4096 : 2048, len);
            Assert.Equal(frame.AsSpan((int)i * 2048, len).ToArray(), rig.ReadRam(rx[1].Buffers[i], len));
        }
    }

    [Fact]
    public void InjectFrameRejectsBadLengthsNamingTheParameter()
    {
        using var rig = new NicRig();
        Assert.Equal("frame", Assert.Throws<ArgumentException>(() => rig.Nic.InjectFrame(new byte[13])).ParamName);
        Assert.Equal("frame", Assert.Throws<ArgumentException>(() => rig.Nic.InjectFrame(new byte[IgbPort.MaxFrameSize + 1])).ParamName);
    }

    [Fact]
    public void PfLegacyDescriptorsWithoutVmdq()
    {
        using var rig = new NicRig();
        rig.PfWrite(Rctl, RctlEn | RctlBam | RctlSecrc);
        rig.PfWrite(Tctl, TctlEn | TctlPsp);
        var tx = rig.PfTx(0);
        var rx = rig.PfRx(0, legacy: true);
        var wire = new List<WireFrame>();
        rig.Nic.FrameTransmitted += wire.Add;

        // TX legacy, short frame padded to 60 (TCTL.PSP), VLAN inserted (VLE).
        var small = NicRig.Frame([0x00, 0x11, 0x22, 0x33, 0x44, 0x55], rig.Nic.MacAddress.ToArray(), 42);
        rig.PostLegacy(tx, small, extraCmd: 0x40, vlan: 0x0123);
        var w = Assert.Single(wire).Data;
        Assert.Equal(60, w.Length);
        Assert.Equal(new byte[] { 0x81, 0x00, 0x01, 0x23 }, w[12..16]);
        Assert.Equal(small[12..], w[16..(16 + small.Length - 12)]);
        Assert.Equal(1, tx.Desc(0)[12] & 1);   // legacy STA.DD

        // RX legacy: to the port MAC (RAR0, loaded at reset).
        var frame = NicRig.Frame(rig.Nic.MacAddress.ToArray(), [0x00, 0x11, 0x22, 0x33, 0x44, 0x55], 90);
        Assert.Equal(1, rig.Nic.InjectFrame(frame));
        var d = rx.Desc(0);
        Assert.Equal(90, BinaryPrimitives.ReadUInt16LittleEndian(d.AsSpan(8)));
        Assert.Equal(0x03, d[12] & 0x03);   // DD | EOP
        Assert.Equal(frame, rig.ReadRam(rx.Buffers[0], 90));
        // Unknown unicast is filtered unless UPE; broadcast needs BAM.
        Assert.Equal(0, rig.Nic.InjectFrame(NicRig.Frame([0x00, 0x99, 0x99, 0x99, 0x99, 0x99], [0x00, 0x11, 0x22, 0x33, 0x44, 0x55])));
        rig.PfWrite(Rctl, RctlEn | RctlUpe | RctlSecrc);
        Assert.Equal(1, rig.Nic.InjectFrame(NicRig.Frame([0x00, 0x99, 0x99, 0x99, 0x99, 0x99], [0x00, 0x11, 0x22, 0x33, 0x44, 0x55])));
        Assert.Equal(0, rig.Nic.InjectFrame(NicRig.Frame(NicRig.Broadcast, [0x00, 0x11, 0x22, 0x33, 0x44, 0x55])));
    }

    [Fact]
    public void HeadWriteBackInsteadOfDd()
    {
        using var rig = new NicRig();
        rig.PfWrite(Tctl, TctlEn);
        var tx = rig.PfTx(5);
        ulong wba = rig.Alloc(16);
        rig.PfWrite(TxQueues + 0x40 * 5 + Tdwbal, (uint)wba | TdwbalEnable);
        rig.PfWrite(TxQueues + 0x40 * 5 + Tdwbah, 0);
        for (int i = 0; i < 3; i++) rig.PostAdv(tx, NicRig.Frame(NicRig.Broadcast, rig.Nic.MacAddress.ToArray()), kick: false);
        tx.WriteTail(3);
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32LittleEndian(rig.ReadRam(wba, 4)));
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(tx.Desc(2).AsSpan(12)) & 1);   // no DD write-back
        Assert.Equal(3u, tx.Head);
    }

    [Fact]
    public void ContextDescriptorVlanAndMultiBufferPacket()
    {
        using var rig = new NicRig();
        rig.PfWrite(Tctl, TctlEn);
        var tx = rig.PfTx(0);
        var wire = new List<WireFrame>();
        rig.Nic.FrameTransmitted += wire.Add;
        var frame = NicRig.Frame(NicRig.Broadcast, rig.Nic.MacAddress.ToArray(), 300);
        // Context: VLAN 0x0ABC in vlan_macip_lens[31:16], DTYP = 2, DEXT.
        var ctx = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(ctx, 0x0ABCu << 16 | 14u << 9 | 20);
        BinaryPrimitives.WriteUInt32LittleEndian(ctx.AsSpan(8), 0x2020_0000);
        rig.M.WriteMemory(tx.DescAddr(0), ctx);
        // Two data descriptors: 100 bytes (no EOP), 200 bytes (EOP | VLE | RS).
        rig.M.WriteMemory(tx.Buffers[1], frame.AsSpan(0, 100));
        rig.M.WriteMemory(tx.Buffers[2], frame.AsSpan(100));
        for (int i = 1; i <= 2; i++)
        {
            var d = new byte[16];
            BinaryPrimitives.WriteUInt64LittleEndian(d, tx.Buffers[i]);
            uint cmd = (uint)(i == 1 ? 100 : 200) | 0x2030_0000 | (i == 2 ? 0x4B00_0000u : 0);
            BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(8), cmd);
            rig.M.WriteMemory(tx.DescAddr((uint)i), d);
        }
        // Tail at 2: the packet's EOP descriptor is not posted yet, nothing goes out.
        tx.WriteTail(2);
        Assert.Empty(wire);
        Assert.Equal(0u, tx.Head);
        tx.WriteTail(3);
        var w = Assert.Single(wire).Data;
        Assert.Equal(304, w.Length);
        Assert.Equal(new byte[] { 0x81, 0x00, 0x0A, 0xBC }, w[12..16]);
        Assert.Equal(3u, tx.Head);
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(tx.Desc(2).AsSpan(12)) & 1);
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(tx.Desc(1).AsSpan(12)) & 1);   // no RS, no DD
    }

    [Fact]
    public void TsoWithoutAValidContextIsDroppedAndCounted()
    {
        using var rig = new NicRig();
        rig.PfWrite(Tctl, TctlEn);
        var tx = rig.PfTx(0);
        var wire = new List<WireFrame>();
        rig.Nic.FrameTransmitted += wire.Add;
        rig.PostAdv(tx, NicRig.Frame(NicRig.Broadcast, rig.Nic.MacAddress.ToArray()), extraCmd: 0x8000_0000);
        Assert.Empty(wire);
        Assert.Equal(1, rig.Nic.TxDropped);
        Assert.Equal(1u, tx.Head);
        rig.PostAdv(tx, NicRig.Frame(NicRig.Broadcast, rig.Nic.MacAddress.ToArray()));
        Assert.Single(wire);
    }

    [Fact]
    public void BusMasterOffMeansNoDmaAndNothingHarmed()
    {
        var (rig, tx, rx) = ThreeVfs();
        using var _ = rig;
        var wire = new List<WireFrame>();
        rig.Nic.FrameTransmitted += wire.Add;
        rig.M.Write(rig.VfRid(0), 0x04, 2, 0);   // VF0 Bus Master off
        var frame = NicRig.Frame(NicRig.Mac(1), NicRig.Mac(0));
        rig.PostAdv(tx[0], frame);
        Assert.Equal(0u, tx[0].Head);
        Assert.Equal(0u, rx[1].Head);
        Assert.Empty(wire);
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(tx[0].Desc(0).AsSpan(12)) & 1);
        Assert.Equal(DmaStatus.BusMasterDisabled, rig.Nic.LastDmaFault!.Value.Status);
        Assert.Equal(rig.VfRid(0), rig.Nic.LastDmaFault!.Value.Rid);
        Assert.Equal(NicDmaStage.TxDescriptorFetch, rig.Nic.LastDmaFault!.Value.Stage);
        // Receiving into VF0 is refused too, without touching its ring.
        Assert.Equal(0, rig.Nic.InjectFrame(NicRig.Frame(NicRig.Mac(0), [0x00, 0x11, 0x22, 0x33, 0x44, 0x55])));
        Assert.Equal(0u, rx[0].Head);
        // Others keep going.
        rig.PostAdv(tx[2], NicRig.Frame(NicRig.Mac(1), NicRig.Mac(2)));
        Assert.Equal(1u, rx[1].Head);
        // The driver fixes it and rings the doorbell again: the stalled packet goes.
        rig.M.Write(rig.VfRid(0), 0x04, 2, 4);
        tx[0].WriteTail(tx[0].Tail);
        Assert.Equal(1u, tx[0].Head);
        Assert.Equal(2u, rx[1].Head);
        AssertAdvRxWriteBack(rig, rx[1], 1, frame);
    }

    /// <summary>A remapper that faults one requester's accesses in one range (stands in for the IOMMU).</summary>
    private sealed class HoleRemapper(ushort rid, ulong start, ulong length) : IDmaRemapper
    {
        public bool Enabled = true;
        public int Faults;
        public DmaTranslation Translate(ushort sourceId, ulong iova, bool write, bool record = true)
        {
            if (Enabled && sourceId == rid && iova >= start && iova < start + length)
            {
                Faults++;
                return new DmaTranslation(false, 0, 0, 0x06);
            }
            ulong contiguous = Enabled && sourceId == rid && iova < start ? Math.Min(4096 - (iova & 0xFFF), start - iova) : 4096 - (iova & 0xFFF);
            return new DmaTranslation(true, iova, contiguous, 0);
        }
    }

    [Fact]
    public void TranslationFaultsAbortWithoutWriteBackAndTheDeviceRecovers()
    {
        var (rig, tx, rx) = ThreeVfs();
        using var _ = rig;
        // VF1's RX ring unmapped for VF1; VF0's TX buffer 0 unmapped for VF0.
        var rxHole = new HoleRemapper(rig.VfRid(1), rx[1].Base, 64 * 16);
        rig.M.Remapper = rxHole;
        var frame = NicRig.Frame(NicRig.Mac(1), NicRig.Mac(0));
        rig.PostAdv(tx[0], frame);
        Assert.Equal(1u, tx[0].Head);                           // the sender is not affected
        Assert.Equal(0u, rx[1].Head);
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(rx[1].Desc(0).AsSpan(8)));
        Assert.Equal(NicDmaStage.RxDescriptorFetch, rig.Nic.LastDmaFault!.Value.Stage);
        Assert.Equal(DmaStatus.TranslationFault, rig.Nic.LastDmaFault!.Value.Status);
        Assert.Equal(rig.VfRid(1), rig.Nic.LastDmaFault!.Value.Rid);
        Assert.True(rxHole.Faults > 0);

        rxHole.Enabled = false;                                 // the driver maps its ring
        rig.PostAdv(tx[0], frame);
        Assert.Equal(1u, rx[1].Head);
        AssertAdvRxWriteBack(rig, rx[1], 0, frame);

        var txHole = new HoleRemapper(rig.VfRid(0), tx[0].Buffers[2], 2048);
        rig.M.Remapper = txHole;
        rig.PostAdv(tx[0], frame);
        Assert.Equal(2u, tx[0].Head);                           // stopped at the faulting packet
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(tx[0].Desc(2).AsSpan(12)) & 1);
        Assert.Equal(NicDmaStage.TxBufferRead, rig.Nic.LastDmaFault!.Value.Stage);
        Assert.Equal(tx[0].Buffers[2], rig.Nic.LastDmaFault!.Value.Address);
        Assert.Equal(1u, rx[1].Head);
        txHole.Enabled = false;
        tx[0].WriteTail(tx[0].Tail);
        Assert.Equal(3u, tx[0].Head);
        Assert.Equal(2u, rx[1].Head);
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(tx[0].Desc(2).AsSpan(12)) & 1);
    }

    [Fact]
    public void VfteGatesTransmitAndDisabledQueuesDoNothing()
    {
        var (rig, tx, rx) = ThreeVfs();
        using var _ = rig;
        rig.PfWrite(Vfte, rig.PfRead(Vfte) & ~1u);
        rig.PostAdv(tx[0], NicRig.Frame(NicRig.Mac(1), NicRig.Mac(0)));
        Assert.Equal(0u, tx[0].Head);
        rig.PfWrite(Vfte, rig.PfRead(Vfte) | 1u);   // enabling the pool runs what was posted
        Assert.Equal(1u, tx[0].Head);
        Assert.Equal(1u, rx[1].Head);
        rig.VfWrite(1, RxLegacy + Rxdctl, 0);
        rig.PostAdv(tx[0], NicRig.Frame(NicRig.Mac(1), NicRig.Mac(0)));
        Assert.Equal(2u, tx[0].Head);
        Assert.Equal(1u, rx[1].Head);
    }

    [Fact]
    public void UntaggedFramesNeedVmolrAupeTaggedOnesDoNot()
    {
        var (rig, _, rx) = ThreeVfs();
        using var __ = rig;
        rig.PfWrite(Vmolr + 4, VmolrBam);   // pool 1: no AUPE
        var untagged = NicRig.Frame(NicRig.Mac(1), [0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
        Assert.Equal(0, rig.Nic.InjectFrame(untagged));
        var tagged = (byte[])untagged.Clone();
        tagged[12] = 0x81; tagged[13] = 0x00; tagged[14] = 0x00; tagged[15] = 0x05;
        Assert.Equal(1, rig.Nic.InjectFrame(tagged));
        Assert.Equal(1u, rx[1].Head);
        Assert.Equal(tagged, rig.ReadRam(rx[1].Buffers[0], tagged.Length));
    }

    [Fact]
    public void FcsIsDeliveredWhenSecrcIsClearAndRuntsAreCounted()
    {
        var (rig, _, rx) = ThreeVfs();
        using var __ = rig;
        rig.PfWrite(Rctl, RctlEn | RctlBam);   // SECRC clear: keep the CRC
        var frame = NicRig.Frame(NicRig.Mac(0), [0x00, 0x11, 0x22, 0x33, 0x44, 0x55], 80);
        Assert.Equal(1, rig.Nic.InjectFrame(frame));
        var d = rx[0].Desc(0);
        Assert.Equal(84, BinaryPrimitives.ReadUInt16LittleEndian(d.AsSpan(12)));
        var got = rig.ReadRam(rx[0].Buffers[0], 84);
        Assert.Equal(frame, got[..80]);
        Assert.Equal(EthernetFcs.Compute(frame), BinaryPrimitives.ReadUInt32LittleEndian(got.AsSpan(80)));
        // The CRC register over frame + FCS (before the final inversion) is the CRC-32 residue.
        Assert.Equal(0xDEBB_20E3u, ~EthernetFcs.Compute(got));

        var runt = NicRig.Frame(NicRig.Mac(0), [0x00, 0x11, 0x22, 0x33, 0x44, 0x55], 59);
        Assert.Equal(0, rig.Nic.InjectFrame(runt));
        Assert.Equal(1u, rig.PfRead(Ruc));
        Assert.Equal(0u, rig.PfRead(Ruc));
        rig.PfWrite(Rctl, RctlEn | RctlBam | RctlSecrc | RctlSbp);   // store bad packets
        Assert.Equal(1, rig.Nic.InjectFrame(runt));
    }

    [Fact]
    public void EthernetFcsMatchesTheStandardCheckValue()
    {
        Assert.Equal(0xCBF4_3926u, EthernetFcs.Compute("123456789"u8));
        Span<byte> fcs = stackalloc byte[4];
        EthernetFcs.Write("123456789"u8, fcs);
        Assert.Equal(new byte[] { 0x26, 0x39, 0xF4, 0xCB }, fcs.ToArray());
    }

    [Fact]
    public void MacAntiSpoofingDropsFramesFromForeignSourceAddresses()
    {
        var (rig, tx, rx) = ThreeVfs();
        using var _ = rig;
        rig.PfWrite(Dtxswc, DtxswcLoopback | 0x07);   // MAC anti-spoof on for pools 0-2
        rig.PostAdv(tx[0], NicRig.Frame(NicRig.Mac(1), NicRig.Mac(2)));   // VF0 claims VF2's MAC
        Assert.Equal(1u, tx[0].Head);                                      // consumed, written back
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(tx[0].Desc(0).AsSpan(12)) & 1);
        Assert.Equal(0u, rx[1].Head);
        Assert.Equal(1, rig.Nic.TxSpoofed);
        rig.PostAdv(tx[0], NicRig.Frame(NicRig.Mac(1), NicRig.Mac(0)));   // its own MAC: fine
        Assert.Equal(1u, rx[1].Head);
    }

    [Fact]
    public void EveryFrameLandsInItsOwnDescriptorsBufferAcrossPrefetchRefillsAndWrap()
    {
        var (rig, tx, rx) = ThreeVfs();
        using var _ = rig;
        var misses = new List<string>();
        for (int k = 0; k < 150; k++)
        {
            uint idx = rx[0].Head;
            var f = NicRig.Frame(NicRig.Mac(0), NicRig.Mac(2), 64, (byte)k);
            rig.PostAdv(tx[2], f);
            if (!rig.ReadRam(rx[0].Buffers[idx], 64).SequenceEqual(f)) misses.Add($"frame {k} at {idx}");
            if (k % 10 == 9) rx[0].Replenish((rx[0].Head + 63) % 64);
        }
        Assert.Empty(misses);
    }

    [Fact]
    public void ReprogrammingTheRxRingDropsPrefetchedDescriptors()
    {
        var (rig, tx, rx) = ThreeVfs();
        using var _ = rig;
        rig.PostAdv(tx[2], NicRig.Frame(NicRig.Mac(0), NicRig.Mac(2)));   // the device prefetched ring A
        Assert.Equal(1u, rx[0].Head);
        rig.VfWrite(0, RxLegacy + Rxdctl, 0);
        var ringB = rig.VfRx(0);                                          // new base
        rig.VfWrite(0, RxLegacy + Rdh, 1);                                // head 1: inside what was prefetched from A
        var f = NicRig.Frame(NicRig.Mac(0), NicRig.Mac(2), 70);
        rig.PostAdv(tx[2], f);
        Assert.Equal(2u, ringB.Head);
        Assert.Equal(f, rig.ReadRam(ringB.Buffers[1], 70));
        Assert.NotEqual(f, rig.ReadRam(rx[0].Buffers[1], 70));
    }

    private static ushort Sum(params byte[][] parts)
    {
        ulong sum = 0;
        foreach (var p in parts)
            for (int i = 0; i < p.Length; i += 2) sum += (uint)(p[i] << 8 | (i + 1 < p.Length ? p[i + 1] : 0));
        while (sum > 0xFFFF) sum = (sum & 0xFFFF) + (sum >> 16);
        return (ushort)sum;
    }

    /// <summary>Ethernet + IPv4 (checksum 0) + TCP or UDP with the pseudo-header sum in the L4 checksum field, as Linux hands it to the NIC.</summary>
    private static (byte[] Frame, byte[] Pseudo) Ipv4Packet(byte proto, int payload)
    {
        int l4Header = proto == 6 ? 20 : 8;
        int l4Len = l4Header + payload;
        var f = NicRig.Frame(NicRig.Broadcast, NicRig.Mac(0), 14 + 20 + l4Len);
        var ip = f.AsSpan(14, 20);
        ip.Clear();
        ip[0] = 0x45; BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)(20 + l4Len)); ip[8] = 64; ip[9] = proto;
        byte[] src = [10, 0, 0, 1], dst = [10, 0, 0, 2];
        src.CopyTo(ip[12..]); dst.CopyTo(ip[16..]);
        var l4 = f.AsSpan(34, l4Len);
        l4[..l4Header].Clear();
        BinaryPrimitives.WriteUInt16BigEndian(l4, 1234); BinaryPrimitives.WriteUInt16BigEndian(l4[2..], 80);
        if (proto == 17) BinaryPrimitives.WriteUInt16BigEndian(l4[4..], (ushort)l4Len);
        else l4[12] = 0x50;
        var pseudo = new byte[12];
        src.CopyTo(pseudo, 0); dst.CopyTo(pseudo, 4); pseudo[9] = proto; BinaryPrimitives.WriteUInt16BigEndian(pseudo.AsSpan(10), (ushort)l4Len);
        BinaryPrimitives.WriteUInt16BigEndian(l4[(proto == 6 ? 16 : 6)..], Sum(pseudo));
        return (f, pseudo);
    }

    [Theory]
    [InlineData(6, 100)]
    [InlineData(17, 33)]
    public void ChecksumOffloadFillsIpAndL4Checksums(byte proto, int payload)
    {
        using var rig = new NicRig();
        rig.PfWrite(Tctl, TctlEn);
        var tx = rig.PfTx(0);
        var wire = new List<WireFrame>();
        rig.Nic.FrameTransmitted += wire.Add;
        var (frame, pseudo) = Ipv4Packet(proto, payload);
        // Context 1: MACLEN 14, IPLEN 20, TUCMD IPv4 + L4T; the data descriptor asks for IXSM|TXSM with IDX 1.
        var ctx = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(ctx, 14u << 9 | 20);
        BinaryPrimitives.WriteUInt32LittleEndian(ctx.AsSpan(8), 0x2020_0000u | 0x400 | (proto == 6 ? 0x800u : 0));
        BinaryPrimitives.WriteUInt32LittleEndian(ctx.AsSpan(12), 1u << 4);
        rig.M.WriteMemory(tx.DescAddr(0), ctx);
        rig.M.WriteMemory(tx.Buffers[1], frame);
        var d = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(d, tx.Buffers[1]);
        BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(8), (uint)frame.Length | 0x2B30_0000u);
        BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(12), (uint)frame.Length << 14 | 0x300 | 1u << 4);
        rig.M.WriteMemory(tx.DescAddr(1), d);
        tx.WriteTail(2);
        var w = Assert.Single(wire).Data;
        Assert.Equal(0xFFFF, Sum(w[14..34]));                                  // IPv4 header checksum valid
        Assert.Equal(0xFFFF, Sum(pseudo, w[34..]));                            // TCP/UDP checksum valid
        Assert.Equal(frame[..24], w[..24]);                                    // nothing else changed
        Assert.Equal(frame[(34 + (proto == 6 ? 20 : 8))..], w[(34 + (proto == 6 ? 20 : 8))..]);
    }

    [Fact]
    public void LegacyInsertChecksumUsesCssAndCso()
    {
        using var rig = new NicRig();
        rig.PfWrite(Tctl, TctlEn);
        var tx = rig.PfTx(0);
        var wire = new List<WireFrame>();
        rig.Nic.FrameTransmitted += wire.Add;
        var (frame, pseudo) = Ipv4Packet(17, 21);
        rig.M.WriteMemory(tx.Buffers[0], frame);
        var d = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(d, tx.Buffers[0]);
        BinaryPrimitives.WriteUInt16LittleEndian(d.AsSpan(8), (ushort)frame.Length);
        d[10] = 34 + 6;                      // CSO: UDP checksum
        d[11] = 0x01 | 0x02 | 0x04 | 0x08;   // EOP | IFCS | IC | RS
        d[13] = 34;                          // CSS: UDP header
        rig.M.WriteMemory(tx.DescAddr(0), d);
        tx.WriteTail(1);
        var w = Assert.Single(wire).Data;
        Assert.Equal(0xFFFF, Sum(pseudo, w[34..]));
        Assert.Equal(0, w[24] | w[25]);      // IP checksum untouched (not requested)
    }

    private static byte[] Tagged(byte[] untagged, ushort tci)
    {
        var t = new byte[untagged.Length + 4];
        untagged.AsSpan(0, 12).CopyTo(t);
        t[12] = 0x81; t[13] = 0x00;
        BinaryPrimitives.WriteUInt16BigEndian(t.AsSpan(14), tci);
        untagged.AsSpan(12).CopyTo(t.AsSpan(16));
        return t;
    }

    [Fact]
    public void VlanStrippingPerPoolPutsTheTagInTheWriteBack()
    {
        var (rig, _, rx) = ThreeVfs();
        using var __ = rig;
        rig.PfWrite(Vmolr + 4, VmolrAupe | VmolrBam | VmolrStrVlan);
        var plain = NicRig.Frame(NicRig.Mac(1), [0x00, 0x11, 0x22, 0x33, 0x44, 0x55], 80);
        var tagged = Tagged(plain, 0x2064);
        Assert.Equal(1, rig.Nic.InjectFrame(tagged));
        var d = rx[1].Desc(0);
        Assert.Equal(0x0Bu, BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan(8)) & 0x0F);   // DD | EOP | VP
        Assert.Equal(80, BinaryPrimitives.ReadUInt16LittleEndian(d.AsSpan(12)));
        Assert.Equal(0x2064, BinaryPrimitives.ReadUInt16LittleEndian(d.AsSpan(14)));
        Assert.Equal(plain, rig.ReadRam(rx[1].Buffers[0], 80));
        // Pool 2 does not strip: the tag stays in the data.
        var toVf2 = Tagged(NicRig.Frame(NicRig.Mac(2), [0x00, 0x11, 0x22, 0x33, 0x44, 0x55], 80), 0x0005);
        Assert.Equal(1, rig.Nic.InjectFrame(toVf2));
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(rx[2].Desc(0).AsSpan(8)) & 0x08);
        Assert.Equal(toVf2, rig.ReadRam(rx[2].Buffers[0], 84));
    }

    [Fact]
    public void CtrlVmeStripsWithoutVmdqIntoLegacyDescriptors()
    {
        using var rig = new NicRig();
        rig.PfWrite(Rctl, RctlEn | RctlBam | RctlSecrc);
        rig.PfWrite(Ctrl, CtrlVme);
        var rx = rig.PfRx(0, legacy: true);
        var plain = NicRig.Frame(NicRig.Broadcast, [0x00, 0x11, 0x22, 0x33, 0x44, 0x55], 70);
        Assert.Equal(1, rig.Nic.InjectFrame(Tagged(plain, 0x0123)));
        var d = rx.Desc(0);
        Assert.Equal(70, BinaryPrimitives.ReadUInt16LittleEndian(d.AsSpan(8)));
        Assert.Equal(0x0F, d[12] & 0x0F);                                    // DD | EOP | IXSM | VP
        Assert.Equal(0x0123, BinaryPrimitives.ReadUInt16LittleEndian(d.AsSpan(14)));
        Assert.Equal(plain, rig.ReadRam(rx.Buffers[0], 70));
    }
}
