using PcieEmu.Core.Config;
using PcieEmu.Core.Devices;
using PcieEmu.Core.Iommu;
using PcieEmu.Core.Memory;

namespace PcieEmu.Core.Tests.Iommu;

/// <summary>Translation through real tables: 4 KiB, 2 MiB and 1 GiB pages, 3 and 4 levels,
/// pass-through, several requesters and domains (PFs and VFs), Bus Master Enable.</summary>
public class VtdTranslationTests
{
    private const ushort Pf0 = TestMachine.Pf0, Pf1 = TestMachine.Pf1;

    [Fact]
    public void WithTranslationOffDmaIsIdentity()
    {
        using var h = new VtdHarness();
        h.WriteQ(VtdHarness.DataBase, 0x1122_3344_5566_7788);
        Assert.Equal(0x1122_3344_5566_7788UL, h.DmaRead64(Pf0, VtdHarness.DataBase));
        Assert.Equal(VtdProbeStatus.TranslationDisabled, h.Unit.Probe(Pf0, 0x1234, false, false).Status);
    }

    [Theory]
    [InlineData(4, 1)]
    [InlineData(3, 1)]
    [InlineData(4, 2)]
    [InlineData(3, 2)]
    [InlineData(4, 3)]
    [InlineData(3, 3)]
    public void PagesOfEverySizeTranslateAtEveryTableDepth(int levels, int pageLevel)
    {
        using var h = new VtdHarness();
        h.Enable();
        ulong top = h.NewDomain(Pf0, 7, aw: levels - 2);
        ulong pageSize = 1UL << (3 + 9 * pageLevel);
        ulong iova = 0x40_0000_0000UL & ((1UL << (12 + 9 * levels)) - 1) | 2 * pageSize;   // 3 levels: below 2^39
        ulong hpa = pageLevel == 3 ? 0 : pageLevel == 2 ? 0x80_0000UL & ~(pageSize - 1) : VtdHarness.DataBase;
        h.Map(top, iova, hpa, pageLevel: pageLevel, levels: levels);
        // Offsets deep inside the page land at the same offset inside the frame (RAM is 16 MiB,
        // so a 1 GiB page is checked at offsets below that).
        foreach (ulong off in new ulong[] { 0, 0x18, 0x808, Math.Min(pageSize, 0x100_0000) - 8 })
        {
            var p = h.Unit.Probe(Pf0, iova + off, write: true, dryRun: false);
            Assert.Equal(VtdProbeStatus.Translated, p.Status);
            Assert.Equal(hpa + off, p.TranslatedAddress);
        }
        h.WriteQ(hpa + 0x808, 0xABCD);
        Assert.Equal(0xABCDUL, h.DmaRead64(Pf0, iova + 0x808));
    }

    [Fact]
    public void DmaSplitsAtPageBoundariesIntoScatteredFrames()
    {
        using var h = new VtdHarness();
        h.Enable();
        ulong top = h.NewDomain(Pf0, 1);
        const ulong iova = 0x1000_0000;
        ulong[] frames = [VtdHarness.DataBase + 0x5000, VtdHarness.DataBase + 0x1000, VtdHarness.DataBase + 0x9000];
        for (int i = 0; i < frames.Length; i++) h.Map(top, iova + (ulong)i * 4096, frames[i]);
        var data = Enumerable.Range(0, 3 * 4096 - 100).Select(i => (byte)(i * 7)).ToArray();
        var w = h.DmaWrite(Pf0, iova + 50, data);
        Assert.True(w.Ok);
        Assert.Equal(data.Length, w.BytesMoved);
        var back = new byte[data.Length];
        Assert.True(h.DmaRead(Pf0, iova + 50, back).Ok);
        Assert.Equal(data, back);
        // The bytes really are in the scattered frames.
        var frame1 = new byte[4096];
        h.M.ReadMemory(frames[1], frame1);
        Assert.Equal(data.AsSpan(4096 - 50, 4096).ToArray(), frame1);
    }

    [Fact]
    public void FaultInTheMiddleAbortsTheRestOfTheDma()
    {
        using var h = new VtdHarness();
        h.Enable();
        ulong top = h.NewDomain(Pf0, 1);
        h.Map(top, 0x2000_0000, VtdHarness.DataBase);
        var r = h.DmaWrite(Pf0, 0x2000_0F00, new byte[0x200]);
        Assert.Equal(DmaStatus.TranslationFault, r.Status);
        Assert.Equal(0x100, r.BytesMoved);
        Assert.Equal(0x2000_1000UL, r.FaultAddress);
        Assert.Equal((byte)VtdFaultReason.WriteNotPermitted, r.FaultReason);
        Assert.Equal(0x2000_1000UL, h.Unit.ReadFaultRecord(0).PageAddress);
    }

    [Fact]
    public void PassThroughMapsEveryAddressToItself()
    {
        using var h = new VtdHarness();
        h.Enable();
        h.SetContext(Pf0, 0, did: 3, aw: 0, tt: 2);       // AW is not used for pass-through
        h.WriteQ(VtdHarness.DataBase + 0x40, 0x77);
        Assert.Equal(0x77UL, h.DmaRead64(Pf0, VtdHarness.DataBase + 0x40));
        var p = h.Unit.Probe(Pf0, 0x0000_7FFF_FFFF_F000, write: true, dryRun: true);
        Assert.Equal(VtdProbeStatus.PassThrough, p.Status);
        Assert.Equal(0x0000_7FFF_FFFF_F000UL, p.TranslatedAddress);
        // PF1 has no context entry: it is still blocked.
        Assert.Equal(VtdFaultReason.ContextNotPresent, h.Unit.Probe(Pf1, 0x1000, false, true).FaultReason);
    }

    [Fact]
    public void BusMasterEnableOffBlocksDmaBeforeTheRemappingUnit()
    {
        using var h = new VtdHarness();
        h.Enable();
        h.M.Write(Pf0, ConfigRegs.Command, 2, ConfigRegs.CmdMemorySpace);     // BME off
        var r = h.TryDmaRead(Pf0, 0x1000);
        Assert.Equal(DmaStatus.BusMasterDisabled, r.Status);
        Assert.Equal(0, r.BytesMoved);
        Assert.False(h.Unit.ReadFaultRecord(0).Fault);                         // never reached the unit
        Assert.Equal(0u, h.Fsts);
        var engine = h.Engine(Pf0);
        lock (h.M.SyncRoot) engine.Write(DmaTestEngine.RegCmd, 4, (ulong)DmaTestOp.Read);
        Assert.Equal(DmaTestEngine.StatusDone | (uint)DmaStatus.BusMasterDisabled, (uint)engine.Read(DmaTestEngine.RegStatus, 4));
        // With BME back on the same DMA reaches the unit and faults (no root entry).
        h.M.Write(Pf0, ConfigRegs.Command, 2, ConfigRegs.CmdMemorySpace | ConfigRegs.CmdBusMaster);
        Assert.Equal(DmaStatus.TranslationFault, h.TryDmaRead(Pf0, 0x1000).Status);
    }

    [Fact]
    public void SeveralRequestersAndDomainsIncludingVfsOfDifferentPfs()
    {
        using var h = new VtdHarness();
        h.EnableVfs(Pf0, 2);
        h.EnableVfs(Pf1, 2);
        var vfA = h.M.PhysicalFunctions[0].VirtualFunctions[1];
        var vfB = h.M.PhysicalFunctions[1].VirtualFunctions[0];
        Assert.Equal(0x0282, vfA.Rid);     // 02:10.2 (PF0's VF 2: 0x100 + 0x180 + 2)
        Assert.Equal(0x0281, vfB.Rid);     // 02:10.1 (PF1's VF 1)
        h.M.Write(vfA.Rid, ConfigRegs.Command, 2, ConfigRegs.CmdBusMaster);
        h.M.Write(vfB.Rid, ConfigRegs.Command, 2, ConfigRegs.CmdBusMaster);
        h.Enable();

        // Four requesters, three domains: PF0 and PF1 share domain 1; each VF has its own.
        ulong shared = h.NewDomain(Pf0, 1);
        h.SetContext(Pf1, shared, 1);
        ulong domA = h.NewDomain(vfA.Rid, 10, aw: 1);
        ulong domB = h.NewDomain(vfB.Rid, 11);
        const ulong iova = 0x4000_0000;
        h.Map(shared, iova, VtdHarness.DataBase);
        h.Map(domA, iova, VtdHarness.DataBase + 0x1000, levels: 3);
        h.Map(domB, iova, VtdHarness.DataBase + 0x2000, write: false);
        for (int i = 0; i < 3; i++) h.WriteQ(VtdHarness.DataBase + (ulong)i * 0x1000, 0xA0UL + (ulong)i);

        Assert.Equal(0xA0UL, h.DmaRead64(Pf0, iova));
        Assert.Equal(0xA0UL, h.DmaRead64(Pf1, iova));
        Assert.Equal(0xA1UL, h.DmaRead64(vfA.Rid, iova));
        Assert.Equal(0xA2UL, h.DmaRead64(vfB.Rid, iova));

        // A VF DMA through the engine really carries the VF's routing ID.
        var engine = h.Engine(vfA.Rid);
        lock (h.M.SyncRoot)
        {
            engine.Buffer[..8].Fill(0x5A);
            Assert.True(engine.Run(DmaTestOp.Write, 0, iova + 8, 8).Ok);
        }
        Assert.Equal(0x5A5A_5A5A_5A5A_5A5AUL, h.ReadQ(VtdHarness.DataBase + 0x1008));

        // vfB's domain is read-only: its write faults and is recorded with vfB's source id.
        var r = h.TryDmaWrite(vfB.Rid, iova);
        Assert.Equal(DmaStatus.TranslationFault, r.Status);
        var rec = h.Unit.ReadFaultRecord(0);
        Assert.Equal(vfB.Rid, rec.SourceId);
        Assert.Equal(VtdFaultReason.WriteNotPermitted, rec.Reason);
        // A VF with no context entry (PF1's VF 2 on bus 2) faults: context not present.
        var vfC = h.M.PhysicalFunctions[1].VirtualFunctions[1];
        h.M.Write(vfC.Rid, ConfigRegs.Command, 2, ConfigRegs.CmdBusMaster);
        Assert.Equal((byte)VtdFaultReason.ContextNotPresent, h.TryDmaRead(vfC.Rid, iova).FaultReason);
        // 3-level domain of vfA: beyond 39 bits faults; the 4-level shared domain does not.
        Assert.Equal(VtdFaultReason.AddressBeyondWidth, h.Unit.Probe(vfA.Rid, 1UL << 40, false, true).FaultReason);
        Assert.Equal(VtdFaultReason.ReadNotPermitted, h.Unit.Probe(Pf0, 1UL << 40, false, true).FaultReason);
    }

    [Fact]
    public void ProbeDryRunChangesNothingAndARealProbeFillsAndRecords()
    {
        using var h = new VtdHarness();
        h.Enable();
        ulong top = h.NewDomain(Pf0, 1);
        h.Map(top, 0x5000, VtdHarness.DataBase);

        var dry = h.Unit.Probe(Pf0, 0x5010, write: false, dryRun: true);
        Assert.Equal(new VtdProbeResult(VtdProbeStatus.Translated, VtdHarness.DataBase + 0x10, VtdFaultReason.None, false), dry);
        Assert.Equal(0, h.Unit.IotlbCount);
        Assert.Equal(0, h.Unit.ContextCacheCount);
        var dryFault = h.Unit.Probe(Pf0, 0x9000, write: false, dryRun: true);
        Assert.Equal(VtdFaultReason.ReadNotPermitted, dryFault.FaultReason);
        Assert.False(dryFault.Recorded);
        Assert.Equal(0u, h.Fsts);

        Assert.Equal(VtdProbeStatus.Translated, h.Unit.Probe(Pf0, 0x5010, false, dryRun: false).Status);
        Assert.Equal(1, h.Unit.IotlbCount);
        Assert.Equal(1, h.Unit.ContextCacheCount);
        var fault = h.Unit.Probe(Pf0, 0x9000, write: true, dryRun: false);
        Assert.True(fault.Recorded);
        Assert.Equal(VtdFaultReason.WriteNotPermitted, h.Unit.ReadFaultRecord(0).Reason);
        // A dry run sees the cached (possibly stale) translation.
        h.WriteQ(h.EntryAddress(top, 0x5000, 1), 0);
        Assert.Equal(VtdProbeStatus.Translated, h.Unit.Probe(Pf0, 0x5010, false, dryRun: true).Status);
    }

    [Fact]
    public void TranslatedRequestsAreBlockedButPassWhenTranslationIsOff()
    {
        using var h = new VtdHarness();
        var engine = h.Engine(Pf0);
        h.WriteQ(VtdHarness.DataBase, 0x99);
        lock (h.M.SyncRoot) Assert.True(engine.Run(DmaTestOp.Read, VtdHarness.DataBase, 0, 8, translatedRequest: true).Ok);
        Assert.Equal(0x99, engine.Buffer[0]);
        h.Enable();
        h.SetContext(Pf0, 0, 1, tt: 2);
        Assert.Equal(VtdFaultReason.BlockedByTranslationType, h.Unit.Probe(Pf0, 0, false, true, VtdAddressType.TranslationRequest).FaultReason);
        Assert.Equal(VtdProbeStatus.PassThrough, h.Unit.Probe(Pf0, 0, false, true).Status);
    }

    [Fact]
    public void TranslationStopsShortOfTheInterruptRange()
    {
        using var h = new VtdHarness();
        h.Enable();
        h.SetContext(Pf0, 0, 1, tt: 2);
        // A pass-through DMA just below 0xFEE00000 may not run into it.
        var t = h.Unit.Translate(Pf0, 0xFEDF_F800, write: true);
        Assert.True(t.Ok);
        Assert.Equal(0x800UL, t.Contiguous);
        Assert.Equal((byte)VtdFaultReason.InterruptRange, h.Unit.Translate(Pf0, 0xFEE0_0000, write: true).FaultReason);
        Assert.True(h.Unit.Translate(Pf0, 0xFEF0_0000, write: true).Ok);
    }

    private const ulong RangeIova = 0x3000_0000, RangeFrame = VtdHarness.DataBase;

    /// <summary>Translation on; PF0 maps <paramref name="pages"/> pages at RangeIova to adjacent frames.</summary>
    private static ulong AdjacentPages(VtdHarness h, int pages, int readOnlyPage = -1)
    {
        h.Enable();
        ulong top = h.NewDomain(Pf0, 1);
        for (int i = 0; i < pages; i++) h.Map(top, RangeIova + (ulong)i * 4096, RangeFrame + (ulong)i * 4096, write: i != readOnlyPage);
        return top;
    }

    [Fact]
    public void ContiguousFramesMoveInOneRangeButStaleEntriesStillWin()
    {
        using var h = new VtdHarness();
        ulong top = AdjacentPages(h, 4);
        var t = h.Unit.TranslateRange(Pf0, RangeIova + 0x10, 4 * 4096, write: false);
        Assert.Equal(RangeFrame + 0x10, t.Address);
        Assert.Equal(4 * 4096UL - 0x10, t.Contiguous);
        Assert.Equal(4, h.Unit.IotlbCount);
        // Page 2 is remapped without invalidation: the range still uses the cached RangeFrame.
        h.Map(top, RangeIova + 2 * 4096, RangeFrame + 0x10_0000);
        Assert.Equal(4 * 4096UL, h.Unit.TranslateRange(Pf0, RangeIova, 4 * 4096, write: false).Contiguous);
        // After a page invalidation the range ends where the frames stop being adjacent.
        h.SetReg(VtdRegs.Iva, 8, RangeIova + 2 * 4096);
        h.SetReg(VtdRegs.Iotlb, 8, VtdRegs.IotlbIvt | 3UL << 60 | 1UL << 32);
        Assert.Equal(2 * 4096UL, h.Unit.TranslateRange(Pf0, RangeIova, 4 * 4096, write: false).Contiguous);
        // A fault ahead ends the range without recording; the DMA records it when it gets there.
        h.WriteQ(h.EntryAddress(top, RangeIova + 4 * 4096, 1), 0);
        var r = h.DmaRead(Pf0, RangeIova + 3 * 4096, new byte[2 * 4096]);
        Assert.Equal(4096, r.BytesMoved);
        Assert.Equal(RangeIova + 4 * 4096, h.Unit.ReadFaultRecord(0).PageAddress);
        Assert.False(h.Unit.ReadFaultRecord(1).Fault);
    }

    [Fact]
    public void ADmaRunningOffTheEndOfRamMovesWhatFits()
    {
        using var h = new VtdHarness();
        ulong end = h.M.Ram.Size;
        var r = h.DmaRead(Pf0, end - 0x2010, new byte[0x4000]);
        Assert.Equal(DmaStatus.UnsupportedRequest, r.Status);
        Assert.Equal(0x2010, r.BytesMoved);
        h.Enable();
        h.SetContext(Pf0, 0, 1, tt: 2);
        r = h.DmaRead(Pf0, end - 0x2010, new byte[0x4000]);
        Assert.Equal(DmaStatus.UnsupportedRequest, r.Status);
        Assert.Equal(0x2010, r.BytesMoved);
    }

    [Fact]
    public void ARangeStopsAtACachedPageWithoutThePermission()
    {
        using var h = new VtdHarness();
        AdjacentPages(h, 3, readOnlyPage: 1);
        Assert.True(h.DmaRead(Pf0, RangeIova, new byte[3 * 4096]).Ok);          // fills the IOTLB, one range
        Assert.Equal(3 * 4096UL, h.Unit.TranslateRange(Pf0, RangeIova, 3 * 4096, write: false).Contiguous);
        var r = h.DmaWrite(Pf0, RangeIova + 8, new byte[3 * 4096 - 8]);
        Assert.Equal(DmaStatus.TranslationFault, r.Status);
        Assert.Equal(4096 - 8, r.BytesMoved);
        Assert.Equal((byte)VtdFaultReason.WriteNotPermitted, r.FaultReason);
        Assert.Equal(new VtdFaultRecord(true, Pf0, VtdFaultReason.WriteNotPermitted, false, RangeIova + 4096), h.Unit.ReadFaultRecord(0));
        Assert.Equal(3, h.Unit.IotlbMisses);
    }
}
