using PcieEmu.Core.Iommu;

namespace PcieEmu.Core.Tests.Iommu;

/// <summary>The context cache and the IOTLB hold entries until software invalidates them
/// (register-based or queued, each granularity), and are bounded with per-entry replacement.</summary>
public class VtdCacheTests
{
    private const ushort Pf0 = TestMachine.Pf0, Pf1 = TestMachine.Pf1;
    private const ulong X = 0x10_0000_0000, Y = 0x10_0000_3000;
    private const ulong OldFrame = VtdHarness.DataBase, NewFrame = VtdHarness.DataBase + 0x10_0000;

    private sealed class Setup : IDisposable
    {
        public VtdHarness H { get; } = new();
        public ulong Top0, Top1;
        public void Dispose() => H.Dispose();
    }

    /// <summary>PF0 in domain 1 and PF1 in domain 2, both mapping X and Y; translations cached; then
    /// every leaf is repointed at new frames without invalidating.</summary>
    private static Setup StaleIotlb(bool queued)
    {
        var s = new Setup();
        var h = s.H;
        h.Enable();
        if (queued) h.EnableQueue();
        s.Top0 = h.NewDomain(Pf0, 1);
        s.Top1 = h.NewDomain(Pf1, 2);
        foreach (var top in new[] { s.Top0, s.Top1 })
        {
            h.Map(top, X, OldFrame);
            h.Map(top, Y, OldFrame + 0x3000);
        }
        foreach (var rid in new[] { Pf0, Pf1 })
        {
            Assert.Equal(OldFrame, Out(h, rid, X));
            Assert.Equal(OldFrame + 0x3000, Out(h, rid, Y));
        }
        foreach (var top in new[] { s.Top0, s.Top1 })
        {
            h.Map(top, X, NewFrame);
            h.Map(top, Y, NewFrame + 0x3000);
        }
        // Stale: the unit still uses what it cached.
        foreach (var rid in new[] { Pf0, Pf1 }) Assert.Equal(OldFrame, Out(h, rid, X));
        return s;
    }

    private static ulong Out(VtdHarness h, ushort rid, ulong iova)
    {
        var p = h.Unit.Probe(rid, iova, write: false, dryRun: false);
        Assert.Equal(VtdProbeStatus.Translated, p.Status);
        return p.TranslatedAddress & ~0xFFFUL;
    }

    [Theory]
    [InlineData(false, 1, true, true, true)]      // global
    [InlineData(false, 2, true, true, false)]     // domain 1: PF0 only
    [InlineData(false, 3, true, false, false)]    // page X of domain 1: not Y, not PF1
    [InlineData(true, 1, true, true, true)]
    [InlineData(true, 2, true, true, false)]
    [InlineData(true, 3, true, false, false)]
    public void IotlbStaysStaleUntilInvalidatedAtTheRequestedGranularity(bool queued, int granularity, bool pf0X, bool pf0Y, bool pf1X)
    {
        using var s = StaleIotlb(queued);
        var h = s.H;
        if (queued)
        {
            h.Submit(VtdHarness.IotlbDesc(granularity, did: 1, addr: X), VtdHarness.WaitDesc(sw: true, iflag: false, 1, VtdHarness.DataBase + 0x8000));
            Assert.Equal(1u, h.ReadD(VtdHarness.DataBase + 0x8000));
            Assert.Equal(h.Reg(VtdRegs.Iqt, 8), h.Reg(VtdRegs.Iqh, 8));
        }
        else
        {
            h.SetReg(VtdRegs.Iva, 8, X);
            h.SetReg(VtdRegs.Iotlb, 8, VtdRegs.IotlbIvt | (ulong)granularity << 60 | 1UL << 32);
            ulong reg = h.Reg(VtdRegs.Iotlb, 8);
            Assert.Equal(0UL, reg & VtdRegs.IotlbIvt);                        // hardware cleared IVT
            Assert.Equal((ulong)granularity, (reg >> 57) & 3);                // and reports the granularity used
        }
        Assert.Equal(pf0X ? NewFrame : OldFrame, Out(h, Pf0, X));
        Assert.Equal(pf0Y ? NewFrame + 0x3000 : OldFrame + 0x3000, Out(h, Pf0, Y));
        Assert.Equal(pf1X ? NewFrame : OldFrame, Out(h, Pf1, X));
    }

    [Fact]
    public void RegisterIotlbInvalidationReportsWhatItDid()
    {
        using var s = StaleIotlb(queued: false);
        var h = s.H;
        // IIRG 0 is reserved: ignored, IAIG 0.
        h.SetReg(VtdRegs.Iotlb, 8, VtdRegs.IotlbIvt | 1UL << 32);
        Assert.Equal(0UL, (h.Reg(VtdRegs.Iotlb, 8) >> 57) & 3);
        Assert.Equal(OldFrame, Out(h, Pf0, X));
        // A page mask above MAMV is done domain-selective.
        h.SetReg(VtdRegs.Iva, 8, X | 19);
        h.SetReg(VtdRegs.Iotlb, 8, VtdRegs.IotlbIvt | 3UL << 60 | 2UL << 32);
        Assert.Equal(2UL, (h.Reg(VtdRegs.Iotlb, 8) >> 57) & 3);
        Assert.Equal(NewFrame + 0x3000, Out(h, Pf1, Y));
        Assert.Equal(OldFrame, Out(h, Pf0, X));
        // An address mask covers 2^AM pages: AM 2 from X covers X..X+0x3FFF, so Y too.
        h.SetReg(VtdRegs.Iva, 8, X | 2);
        h.SetReg(VtdRegs.Iotlb + 4, 4, (uint)((VtdRegs.IotlbIvt | 3UL << 60 | 1UL << 32) >> 32));   // 32-bit write of the upper half starts it
        Assert.Equal(3UL, (h.Reg(VtdRegs.Iotlb, 8) >> 57) & 3);
        Assert.Equal(NewFrame, Out(h, Pf0, X));
        Assert.Equal(NewFrame + 0x3000, Out(h, Pf0, Y));
    }

    [Fact]
    public void PageInvalidationInsideASuperPageDropsTheWholeSuperPage()
    {
        using var h = new VtdHarness();
        h.Enable();
        ulong top = h.NewDomain(Pf0, 1);
        const ulong iova = 0x4000_0000;
        h.Map(top, iova, 0x40_0000, pageLevel: 2);
        Assert.Equal(0x40_0000UL + 0x12_3000, Out(h, Pf0, iova + 0x12_3456));
        h.Map(top, iova, 0x60_0000, pageLevel: 2);
        Assert.Equal(0x40_0000UL + 0x12_3000, Out(h, Pf0, iova + 0x12_3456));    // stale
        h.SetReg(VtdRegs.Iva, 8, iova + 0x1F_F000);                               // a 4 KiB page inside it
        h.SetReg(VtdRegs.Iotlb, 8, VtdRegs.IotlbIvt | 3UL << 60 | 1UL << 32);
        Assert.Equal(0x60_0000UL + 0x12_3000, Out(h, Pf0, iova + 0x12_3456));
    }

    [Theory]
    [InlineData(false, 1, 0, 0, true, true, true)]           // global
    [InlineData(false, 2, 0, 0, true, false, true)]          // domain 1: PF0 and 01:00.4 (also domain 1)
    [InlineData(false, 3, Pf0, 0, true, false, false)]       // device 01:00.0 only
    [InlineData(false, 3, 0x0104, 1, true, false, true)]     // device 01:00.4 with FM 1 (function bit 2 masked): 00.0 and 00.4
    [InlineData(true, 1, 0, 0, true, true, true)]
    [InlineData(true, 2, 0, 0, true, false, true)]
    [InlineData(true, 3, Pf0, 0, true, false, false)]
    [InlineData(true, 3, 0x0104, 1, true, false, true)]
    public void ContextCacheStaysStaleUntilInvalidated(bool queued, int granularity, ushort sid, int fm, bool pf0, bool pf1, bool fn4)
    {
        using var h = new VtdHarness();
        h.Enable();
        if (queued) h.EnableQueue();
        const ushort Fn4 = 0x0104;
        foreach (var (rid, did) in new[] { (Pf0, (ushort)1), (Pf1, (ushort)2), (Fn4, (ushort)1) })
        {
            h.Map(h.NewDomain(rid, did), X, OldFrame);
            Assert.Equal(VtdProbeStatus.Translated, h.Unit.Probe(rid, X, false, dryRun: false).Status);
            h.SetContext(rid, 0, did, tt: 2);       // now pass-through; the cached entry says otherwise
            Assert.Equal(VtdProbeStatus.Translated, h.Unit.Probe(rid, X, false, dryRun: false).Status);
        }
        // Not even a new SRTP drops cached entries: software must invalidate.
        h.Command(VtdRegs.GcmdSrtp);
        Assert.Equal(VtdProbeStatus.Translated, h.Unit.Probe(Pf0, X, false, dryRun: false).Status);

        if (queued)
        {
            h.Submit(VtdHarness.ContextDesc(granularity, did: 1, sid: sid, fm: fm));
        }
        else
        {
            h.SetReg(VtdRegs.Ccmd, 8, VtdRegs.CcmdIcc | (ulong)granularity << 61 | (ulong)(uint)fm << 32 | (ulong)sid << 16 | 1);
            ulong ccmd = h.Reg(VtdRegs.Ccmd, 8);
            Assert.Equal(0UL, ccmd & VtdRegs.CcmdIcc);
            Assert.Equal((ulong)granularity, (ccmd >> 59) & 3);
        }
        Assert.Equal(pf0 ? VtdProbeStatus.PassThrough : VtdProbeStatus.Translated, h.Unit.Probe(Pf0, X, false, dryRun: false).Status);
        Assert.Equal(pf1 ? VtdProbeStatus.PassThrough : VtdProbeStatus.Translated, h.Unit.Probe(Pf1, X, false, dryRun: false).Status);
        Assert.Equal(fn4 ? VtdProbeStatus.PassThrough : VtdProbeStatus.Translated, h.Unit.Probe(Fn4, X, false, dryRun: false).Status);
    }

    [Fact]
    public void RegisterInvalidationIsIgnoredWhileQueuedInvalidationIsOn()
    {
        using var s = StaleIotlb(queued: true);
        var h = s.H;
        h.SetReg(VtdRegs.Iotlb, 8, VtdRegs.IotlbIvt | 1UL << 60);
        Assert.Equal(0UL, (h.Reg(VtdRegs.Iotlb, 8) >> 57) & 3);
        h.SetReg(VtdRegs.Ccmd, 8, VtdRegs.CcmdIcc | 1UL << 61);
        Assert.Equal(0UL, (h.Reg(VtdRegs.Ccmd, 8) >> 59) & 3);
        Assert.Equal(OldFrame, Out(h, Pf0, X));
    }

    [Fact]
    public void IotlbIsBoundedAndReplacesTheLeastRecentlyUsedEntryOfASet()
    {
        using var h = new VtdHarness();
        // A unit with one set of 4 ways makes the replacement order observable.
        var unit = new VtdUnit(h.M, iotlbSets: 1, iotlbWays: 4);
        h.M.Remapper = unit;
        h.M.IommuRegisters = unit;
        h.Enable();
        ulong top = h.NewDomain(Pf0, 1);
        ulong Page(int i) => X + (ulong)i * 0x1000;
        for (int i = 0; i < 6; i++) h.Map(top, Page(i), OldFrame + (ulong)i * 0x1000);
        for (int i = 0; i < 4; i++) unit.Probe(Pf0, Page(i), false, false);   // fills ways with pages 0-3
        unit.Probe(Pf0, Page(0), false, false);                               // page 0 is now most recent
        unit.Probe(Pf0, Page(4), false, false);                               // evicts page 1 (LRU)
        Assert.Equal(4, unit.IotlbCount);
        for (int i = 0; i < 6; i++) h.Map(top, Page(i), NewFrame + (ulong)i * 0x1000);
        // Dry runs show what is cached without disturbing the order.
        ulong Seen(int i) => unit.Probe(Pf0, Page(i), false, dryRun: true).TranslatedAddress;
        Assert.Equal(OldFrame, Seen(0));
        Assert.Equal(NewFrame + 0x1000, Seen(1));
        Assert.Equal(OldFrame + 0x2000, Seen(2));
        Assert.Equal(OldFrame + 0x3000, Seen(3));
        Assert.Equal(OldFrame + 0x4000, Seen(4));
    }

    [Fact]
    public void TheDefaultIotlbNeverGrowsBeyondItsCapacity()
    {
        using var h = new VtdHarness();
        h.Enable();
        h.SetContext(Pf0, 0, 1, tt: 2);
        ulong top = h.NewDomain(Pf1, 2);
        for (int i = 0; i < 2048; i++) h.Map(top, X + (ulong)i * 0x1000, OldFrame);
        for (int i = 0; i < 2048; i++) Assert.True(h.Unit.Translate(Pf1, X + (ulong)i * 0x1000, false).Ok);
        Assert.Equal(512, h.Unit.IotlbCapacity);
        Assert.InRange(h.Unit.IotlbCount, 400, 512);
        Assert.Equal(2048, h.Unit.IotlbMisses);
        // The most recent translation is still a hit.
        long hits = h.Unit.IotlbHits;
        Assert.True(h.Unit.Translate(Pf1, X + 2047 * 0x1000, false).Ok);
        Assert.Equal(hits + 1, h.Unit.IotlbHits);
    }

    [Fact]
    public void PermissionsGrantedWithoutInvalidationAreNotSeen()
    {
        using var h = new VtdHarness();
        h.Enable();
        ulong top = h.NewDomain(Pf0, 1);
        ulong leaf = h.Map(top, X, OldFrame, write: false);
        Assert.Equal(OldFrame, Out(h, Pf0, X));                                   // cached read-only
        h.WriteQ(leaf, OldFrame | 3);                                              // driver grants write, forgets to invalidate
        Assert.Equal(VtdFaultReason.WriteNotPermitted, h.Unit.Probe(Pf0, X, write: true, dryRun: false).FaultReason);
        h.SetReg(VtdRegs.Iva, 8, X);
        h.SetReg(VtdRegs.Iotlb, 8, VtdRegs.IotlbIvt | 3UL << 60 | 1UL << 32);
        Assert.Equal(VtdProbeStatus.Translated, h.Unit.Probe(Pf0, X, write: true, dryRun: false).Status);
        // Not-present entries are never cached (CAP.CM = 0): mapping a new page needs no invalidation.
        Assert.Equal(VtdFaultReason.ReadNotPermitted, h.Unit.Probe(Pf0, Y, write: false, dryRun: false).FaultReason);
        h.Map(top, Y, NewFrame);
        Assert.Equal(NewFrame, Out(h, Pf0, Y));
    }
}
