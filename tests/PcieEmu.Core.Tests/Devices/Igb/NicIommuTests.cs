using System.Buffers.Binary;
using PcieEmu.Core.Memory;
using PcieEmu.Core.Tests.Iommu;

namespace PcieEmu.Core.Tests.Devices.Igb;

/// <summary>The NIC behind the real VT-d unit: rings mapped per VF routing ID.</summary>
public class NicIommuTests
{
    [Fact]
    public void RingOutsideTheVfMappingFaultsWithTheVfRidAndRecoversAfterTheDriverMapsIt()
    {
        using var h = new VtdHarness();
        using var rig = new NicRig(h.M, vfs: 2, ramStart: VtdHarness.DataBase, ownsMachine: false);
        rig.SetupVmdq(2);
        var tx0 = rig.VfTx(0);
        var rx1 = rig.VfRx(1);
        ulong d0 = h.NewDomain(rig.VfRid(0), did: 1);
        ulong d1 = h.NewDomain(rig.VfRid(1), did: 2);
        ulong rxRingPage = rx1.Base & ~0xFFFUL;
        // Identity-map everything the rig allocated in both domains, except VF1's RX ring page.
        for (ulong p = VtdHarness.DataBase; p < rig.NextRam; p += 4096)
        {
            h.Map(d0, p, p);
            if (p != rxRingPage) h.Map(d1, p, p);
        }
        h.Enable();

        var frame = NicRig.Frame(NicRig.Mac(1), NicRig.Mac(0));
        rig.PostAdv(tx0, frame);
        Assert.Equal(1u, tx0.Head);                               // the sender is unharmed
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(tx0.Desc(0).AsSpan(12)) & 1);
        Assert.Equal(0u, rx1.Head);
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(rx1.Desc(0).AsSpan(8)));   // not written back
        var rec = h.Unit.ReadFaultRecord(0);
        Assert.True(rec.Fault);
        Assert.Equal(rig.VfRid(1), rec.SourceId);
        Assert.True(rec.IsRead);
        Assert.Equal(rxRingPage, rec.PageAddress);
        var nicFault = rig.Nic.LastDmaFault!.Value;
        Assert.Equal(DmaStatus.TranslationFault, nicFault.Status);
        Assert.Equal(rig.VfRid(1), nicFault.Rid);

        // The driver maps its ring; the next frame lands.
        h.Map(d1, rxRingPage, rxRingPage);
        rig.PostAdv(tx0, frame);
        Assert.Equal(1u, rx1.Head);
        var d = rx1.Desc(0);
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan(8)) & 3);
        Assert.Equal(frame, rig.ReadRam(rx1.Buffers[0], frame.Length));
    }

    [Fact]
    public void VfDmaIsTranslatedThroughItsOwnDomain()
    {
        using var h = new VtdHarness();
        using var rig = new NicRig(h.M, vfs: 2, ramStart: VtdHarness.DataBase, ownsMachine: false);
        rig.SetupVmdq(2);
        var tx0 = rig.VfTx(0);
        var rx1 = rig.VfRx(1);
        ulong d0 = h.NewDomain(rig.VfRid(0), did: 1);
        ulong d1 = h.NewDomain(rig.VfRid(1), did: 2);
        for (ulong p = VtdHarness.DataBase; p < rig.NextRam; p += 4096)
        {
            h.Map(d0, p, p);
            h.Map(d1, p, p);
        }
        // VF1's first RX buffer IOVA is remapped to another physical page.
        ulong other = rig.Alloc(4096);
        h.Map(d1, rx1.Buffers[0] & ~0xFFFUL, other);
        h.Enable();
        var frame = NicRig.Frame(NicRig.Mac(1), NicRig.Mac(0), 100);
        rig.PostAdv(tx0, frame);
        Assert.Equal(1u, rx1.Head);
        Assert.Equal(frame, rig.ReadRam(other + (rx1.Buffers[0] & 0xFFF), frame.Length));
        Assert.NotEqual(frame, rig.ReadRam(rx1.Buffers[0], frame.Length));
    }
}
