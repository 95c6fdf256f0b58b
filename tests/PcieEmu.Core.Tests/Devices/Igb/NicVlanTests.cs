using System.Buffers.Binary;
using PcieEmu.Core.Devices;
using PcieEmu.Core.Devices.Igb;
using static PcieEmu.Core.Devices.Igb.IgbRegs;

namespace PcieEmu.Core.Tests.Devices.Igb;

/// <summary>VLAN filtering per pool (VFTA, VLVF, RCTL.VFE), port VLAN insertion (VMVIR) and VLAN
/// anti-spoofing, set up as the Linux igb PF driver does for `ip link set ... vf N vlan V`.</summary>
public class NicVlanTests
{
    private const uint Vfta = 0x5600, Vlvf = 0x5D00, Vmvir = 0x3700, RctlVfe = 1u << 18, VlvfEnable = 1u << 31;

    private static (NicRig Rig, NicRig.Ring[] Tx, NicRig.Ring[] Rx) ThreeVfs() => NicTrafficTests.ThreeVfs();

    // igb_vfta_set + igb_vlvf_set + igb_set_vmvir + igb_set_vmolr(aupe = false), STRVLAN on.
    private static void PortVlan(NicRig rig, int vf, ushort vid, int vlvfEntry)
    {
        rig.PfWrite(Vfta + 4u * (uint)(vid >> 5), rig.PfRead(Vfta + 4u * (uint)(vid >> 5)) | 1u << (vid & 31));
        rig.PfWrite(Vlvf + 4u * (uint)vlvfEntry, rig.PfRead(Vlvf + 4u * (uint)vlvfEntry) | vid | 1u << (12 + vf) | VlvfEnable);
        rig.PfWrite(Vmvir + 4u * (uint)vf, vid | 1u << 30);
        rig.PfWrite(Vmolr + 4u * (uint)vf, (rig.PfRead(Vmolr + 4u * (uint)vf) & ~VmolrAupe) | VmolrStrVlan);
    }

    private static byte[] Tagged(byte[] dst, byte[] src, ushort vid)
    {
        var f = NicRig.Frame(dst, src, 68);
        f[12] = 0x81; f[13] = 0x00;
        f[14] = (byte)(vid >> 8); f[15] = (byte)vid;
        f[16] = 0x08; f[17] = 0x00;
        return f;
    }

    [Fact]
    public void FilterTablesReadBack()
    {
        using var rig = new NicRig();
        rig.PfWrite(Vfta + 4 * 6, 0x0000_0100);
        rig.PfWrite(Vlvf + 4 * 31, 0xFFFF_FFFF);
        rig.PfWrite(Vmvir + 4 * 7, 0xFFFF_FFFF);
        Assert.Equal(0x0000_0100u, rig.PfRead(Vfta + 4 * 6));
        Assert.Equal(0x801F_FFFFu, rig.PfRead(Vlvf + 4 * 31));     // VID 11:0, pools 19:12, LVLAN 20, enable 31
        Assert.Equal(0xC000_FFFFu, rig.PfRead(Vmvir + 4 * 7));     // tag 15:0, VLANA 31:30
    }

    [Fact]
    public void EachVfOnlySeesItsOwnVlan()
    {
        var (rig, tx, rx) = ThreeVfs();
        using var _ = rig;
        PortVlan(rig, 0, 100, 0);
        PortVlan(rig, 1, 200, 1);
        PortVlan(rig, 2, 100, 0);
        rig.PfWrite(Rctl, rig.PfRead(Rctl) | RctlVfe);
        var wire = new List<WireFrame>();
        rig.Nic.FrameTransmitted += wire.Add;

        // VF0's broadcast is tagged 100 by VMVIR: VF2 gets it (tag stripped to the write-back), VF1 does not.
        rig.PostAdv(tx[0], NicRig.Frame(NicRig.Broadcast, NicRig.Mac(0)));
        Assert.Equal(1u, rx[2].Head);
        Assert.Equal(0u, rx[1].Head);
        var wb = rig.ReadRam(rx[2].DescAddr(0), 16);
        Assert.Equal((ushort)100, BinaryPrimitives.ReadUInt16LittleEndian(wb.AsSpan(14)));
        Assert.NotEqual(0x81, rig.ReadRam(rx[2].Buffers[0], 14)[12]);
        var onWire = Assert.Single(wire);
        Assert.Equal(new byte[] { 0x81, 0x00, 0x00, 100 }, onWire.Data[12..16]);   // the wire sees the port VLAN tag

        // VF0 unicast to VF1 (other VLAN): VF1's VLAN filter refuses it.
        rig.PostAdv(tx[0], NicRig.Frame(NicRig.Mac(1), NicRig.Mac(0)));
        Assert.Equal(0u, rx[1].Head);
        // ... and to VF2 (same VLAN): delivered.
        rig.PostAdv(tx[0], NicRig.Frame(NicRig.Mac(2), NicRig.Mac(0)));
        Assert.Equal(2u, rx[2].Head);

        // From the wire: VID 200 reaches VF1 only, VID 300 (not in VFTA) nobody, untagged nobody (AUPE off).
        Assert.Equal(1, rig.Nic.InjectFrame(Tagged(NicRig.Broadcast, [2, 0, 0, 0, 0, 0x99], 200)));
        Assert.Equal(1u, rx[1].Head);
        Assert.Equal(0, rig.Nic.InjectFrame(Tagged(NicRig.Broadcast, [2, 0, 0, 0, 0, 0x99], 300)));
        Assert.Equal(0, rig.Nic.InjectFrame(Tagged(NicRig.Mac(0), [2, 0, 0, 0, 0, 0x99], 200)));   // VF0's MAC, wrong VLAN
        Assert.Equal(0, rig.Nic.InjectFrame(NicRig.Frame(NicRig.Mac(1), [2, 0, 0, 0, 0, 0x99])));
        Assert.Equal(1u, rx[1].Head);
        Assert.Equal(0u, rx[0].Head);
    }

    [Fact]
    public void VfeWithAnEmptyFilterTableDropsTaggedFrames()
    {
        var (rig, _, rx) = ThreeVfs();
        using var __ = rig;
        var frame = Tagged(NicRig.Mac(1), [2, 0, 0, 0, 0, 0x99], 200);
        Assert.Equal(1, rig.Nic.InjectFrame(frame));                 // VFE off: no VLAN filtering
        rig.PfWrite(Rctl, rig.PfRead(Rctl) | RctlVfe);
        Assert.Equal(0, rig.Nic.InjectFrame(frame));                 // VFE on, VFTA empty: dropped
        rig.PfWrite(Vfta + 4 * (200 >> 5), 1u << (200 & 31));
        Assert.Equal(0, rig.Nic.InjectFrame(frame));                 // in VFTA but no VLVF entry holds pool 1
        rig.PfWrite(Vlvf, 200u | 1u << 13 | VlvfEnable);
        Assert.Equal(1, rig.Nic.InjectFrame(frame));
        Assert.Equal(2u, rx[1].Head);
    }

    [Fact]
    public void VmvirNeverStripsTheDescriptorsTagAndVlanAntiSpoofingDropsForeignVlans()
    {
        var (rig, tx, rx) = ThreeVfs();
        using var _ = rig;
        var wire = new List<WireFrame>();
        rig.Nic.FrameTransmitted += wire.Add;
        rig.PfWrite(Vmvir, 2u << 30);                                            // VF0: never insert
        rig.PostLegacy(tx[0], NicRig.Frame(NicRig.Broadcast, NicRig.Mac(0)), extraCmd: 0x40, vlan: 55);
        Assert.Equal(0x08, Assert.Single(wire).Data[12]);                        // untagged on the wire
        rig.PfWrite(Vmvir, 0);
        rig.PfWrite(Dtxswc, rig.PfRead(Dtxswc) | 0x100);                         // VLAN anti-spoof for pool 0
        rig.PfWrite(Vlvf, 55u | 1u << 12 | VlvfEnable);
        rig.PostLegacy(tx[0], NicRig.Frame(NicRig.Broadcast, NicRig.Mac(0)), extraCmd: 0x40, vlan: 55);
        Assert.Equal(2, wire.Count);                                             // its own VLAN: sent
        rig.PostLegacy(tx[0], NicRig.Frame(NicRig.Broadcast, NicRig.Mac(0)), extraCmd: 0x40, vlan: 56);
        Assert.Equal(2, wire.Count);                                             // a VLAN it is not in: dropped
        Assert.Equal(1, rig.Nic.TxSpoofed);
        Assert.Equal(3u, tx[0].Head);
    }
}

/// <summary>Anti-spoofing reports (WVBR, ICR.DOUTSYNC) as igb's igb_check_wvbr / igb_spoof_check read them.</summary>
public class NicSpoofReportTests
{
    private const uint Wvbr = 0x3554, IcrDoutsync = 1u << 28, Dtxctl = 0x3590;

    [Fact]
    public void ASpoofedFrameSetsItsWvbrBitAndRaisesDoutsyncOnce()
    {
        var (rig, tx, _) = NicTrafficTests.ThreeVfs();
        using var __ = rig;
        // The PF driver: MSI, "other" causes in IMS (DOUTSYNC), legacy (non-MSI-X) mode.
        rig.M.Write(NicRig.Pf0, 0x04, 2, 0x0006);                          // Memory + Bus Master
        rig.M.Write(NicRig.Pf0, 0x50 + 4, 4, 0xFEE0_0000);                 // MSI address
        rig.M.Write(NicRig.Pf0, 0x50 + 0xC, 2, 0x0041);                    // MSI data
        rig.M.Write(NicRig.Pf0, 0x50 + 2, 2, 0x0001);                      // MSI enable
        rig.PfWrite(Ims, IcrDoutsync);
        using var sub = rig.M.Interrupts.Subscribe([NicRig.Pf0]);
        rig.PfWrite(Dtxswc, DtxswcLoopback | 0x02);                        // MAC anti-spoof for VF1

        rig.PostAdv(tx[1], NicRig.Frame(NicRig.Broadcast, NicRig.Mac(0)));   // VF1 claims VF0's MAC
        rig.PostAdv(tx[1], NicRig.Frame(NicRig.Broadcast, NicRig.Mac(2)));   // and VF2's
        Assert.Equal(2, rig.Nic.TxSpoofed);
        Assert.Single(NicRig.Drain(sub));                                   // one interrupt for the event
        Assert.NotEqual(0u, rig.PfRead(Icr) & IcrDoutsync);
        Assert.Equal(1u << 1, rig.PfRead(Wvbr));                            // VF1's queue 1 → bit 1
        Assert.Equal(0u, rig.PfRead(Wvbr));                                 // clear on read

        rig.PostAdv(tx[1], NicRig.Frame(NicRig.Broadcast, NicRig.Mac(0)));   // after the read: reported again
        Assert.Single(NicRig.Drain(sub));
        Assert.Equal(1u << 1, rig.PfRead(Wvbr));

        rig.PfWrite(Dtxctl, rig.PfRead(Dtxctl) & ~(1u << 6));                // SPOOF_INT off: recorded, no interrupt
        rig.PfRead(Icr);
        rig.PostAdv(tx[1], NicRig.Frame(NicRig.Broadcast, NicRig.Mac(0)));
        Assert.Empty(NicRig.Drain(sub));
        Assert.Equal(1u << 1, rig.PfRead(Wvbr));
        Assert.Equal(0u, rig.PfRead(Icr) & IcrDoutsync);
    }
}
