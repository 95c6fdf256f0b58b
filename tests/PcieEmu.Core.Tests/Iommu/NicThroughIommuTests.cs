using PcieEmu.Core.Iommu;
using PcieEmu.Core.Tests.Devices.Igb;

namespace PcieEmu.Core.Tests.Iommu;

/// <summary>The NIC's own DMA (descriptor fetches, buffer reads and writes, write-backs) goes
/// through the remapping unit with each VF's routing ID.</summary>
public class NicThroughIommuTests
{
    private const ulong Tables = 0xC0_0000;        // the rig allocates rings and buffers from 1 MiB up

    /// <summary>The domain of <paramref name="rid"/> maps the first 12 MiB of RAM onto itself with
    /// 2 MiB pages (the rig's rings and buffers live there).</summary>
    private static ulong IdentityDomain(VtdHarness h, ushort rid, ushort did, bool writable = true)
    {
        ulong top = h.NewDomain(rid, did);
        for (ulong a = 0; a < Tables; a += 0x20_0000) h.Map(top, a, a, write: writable, pageLevel: 2);
        return top;
    }

    [Fact]
    public void VfToVfTrafficIsTranslatedAndAReadOnlyDomainFaultsTheReceiveWrite()
    {
        using var rig = new NicRig(vfs: 2);
        rig.SetupVmdq(2);
        var tx = rig.VfTx(0);
        var rx = rig.VfRx(1);
        using var h = new VtdHarness(rig.M, Tables);
        h.Enable();
        h.UnmaskFaultEvents();
        IdentityDomain(h, rig.VfRid(0), 1);
        ulong dom1 = IdentityDomain(h, rig.VfRid(1), 2);

        var frame = NicRig.Frame(NicRig.Mac(1), NicRig.Mac(0));
        rig.PostAdv(tx, frame);
        Assert.Equal(1u, rx.Head);
        Assert.Equal(frame, rig.ReadRam(rx.Buffers[0], frame.Length));
        Assert.Equal(0u, h.Fsts);
        Assert.True(h.Unit.IotlbCount >= 2);         // both VFs' translations are cached

        // VF1's domain becomes read-only (and the driver invalidates it): its receive DMA writes fault.
        for (ulong a = 0; a < Tables; a += 0x20_0000) h.Map(dom1, a, a, write: false, pageLevel: 2);
        h.SetReg(VtdRegs.Iotlb, 8, VtdRegs.IotlbIvt | 2UL << 60 | 2UL << 32);
        long faultsBefore = rig.Nic.DmaFaults;
        rig.PostAdv(tx, frame);
        Assert.Equal(faultsBefore + 1, rig.Nic.DmaFaults);
        var rec = h.Unit.ReadFaultRecord(0);
        Assert.True(rec.Fault);
        Assert.Equal(rig.VfRid(1), rec.SourceId);
        Assert.Equal(VtdFaultReason.WriteNotPermitted, rec.Reason);
        Assert.Equal(rx.Buffers[1] & ~0xFFFUL, rec.PageAddress);
        var ev = Assert.Single(h.DrainInterrupts());
        Assert.Equal(VtdUnit.MessageRid, ev.Rid);
        // The sender (VF0) was unaffected: its transmit completed.
        Assert.Equal(2u, tx.Head);
    }
}
