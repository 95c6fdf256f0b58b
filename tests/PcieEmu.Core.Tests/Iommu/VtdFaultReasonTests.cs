using PcieEmu.Core.Devices;
using PcieEmu.Core.Iommu;
using PcieEmu.Core.Memory;

namespace PcieEmu.Core.Tests.Iommu;

/// <summary>Every fault reason, produced by a table built in RAM, recorded in FRCD0 and
/// reported to the device; and garbage tables never throw, hang or read outside RAM.</summary>
public class VtdFaultReasonTests
{
    private const ushort Pf0 = TestMachine.Pf0;
    private const ulong Iova = 0x1234_5000, OutsideRam = 0x4000_0000;

    public static TheoryData<string, byte, bool> Cases => new()
    {
        { "root-not-present", 0x1, false },
        { "context-not-present", 0x2, false },
        { "context-aw-unsupported", 0x3, false },
        { "context-aw-zero", 0x3, false },
        { "context-tt-device-tlb", 0x3, false },
        { "context-tt-reserved", 0x3, true },
        { "beyond-39-bit-width", 0x4, false },
        { "beyond-48-bit-width", 0x4, true },
        { "write-to-read-only-leaf", 0x5, true },
        { "write-through-read-only-directory", 0x5, true },
        { "write-not-present", 0x5, true },
        { "read-of-write-only-leaf", 0x6, false },
        { "read-through-write-only-directory", 0x6, false },
        { "read-not-present", 0x6, false },
        { "slptptr-outside-ram", 0x7, false },
        { "next-table-outside-ram", 0x7, true },
        { "root-table-outside-ram", 0x8, false },
        { "context-table-outside-ram", 0x9, false },
        { "root-lo-reserved", 0xA, false },
        { "root-hi-reserved", 0xA, false },
        { "root-address-above-haw", 0xA, false },
        { "context-lo-reserved", 0xB, false },
        { "context-hi-reserved", 0xB, true },
        { "pte-snp-reserved", 0xC, false },
        { "pte-address-above-haw", 0xC, false },
        { "pte-tm-reserved", 0xC, true },
        { "pml4-ps-reserved", 0xC, false },
        { "2m-page-misaligned", 0xC, false },
        { "1g-page-misaligned", 0xC, true },
        { "translated-request", 0xD, false },
        { "maps-into-interrupt-range", 0xE, true },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void FaultIsReportedToTheDeviceAndRecorded(string setup, byte reason, bool write)
    {
        using var h = new VtdHarness();
        h.Enable();
        var (translated, iova) = Build(h, setup);

        var engine = h.Engine(Pf0);
        DmaResult r;
        lock (h.M.SyncRoot)
            r = engine.Run(write ? DmaTestOp.Write : DmaTestOp.Read, iova + 0x10, iova + 0x10, 16, translated);

        Assert.Equal(DmaStatus.TranslationFault, r.Status);
        Assert.Equal(reason, r.FaultReason);
        Assert.Equal(0, r.BytesMoved);
        var rec = h.Unit.ReadFaultRecord(0);
        Assert.True(rec.Fault);
        Assert.Equal(Pf0, rec.SourceId);
        Assert.Equal((VtdFaultReason)reason, rec.Reason);
        Assert.Equal(!write, rec.IsRead);
        Assert.Equal(iova, rec.PageAddress);
        // Register view of the same record: FR at 103:96, SID 79:64, T 126, F 127.
        ulong hi = h.Reg(VtdRegs.Frcd + 8, 8);
        Assert.Equal(reason, (byte)(hi >> 32));
        Assert.Equal(Pf0, (ushort)hi);
        Assert.Equal(iova, h.Reg(VtdRegs.Frcd, 8));
        Assert.Equal(VtdRegs.FstsPpf, h.Fsts & 0xFF);
        // The engine reports the fault in its STATUS register.
        Assert.Equal(DmaTestEngine.StatusDone | (uint)reason << 8 | (uint)DmaStatus.TranslationFault, (uint)engine.Read(DmaTestEngine.RegStatus, 4));
    }

    /// <summary>Builds the case; returns whether the request is an ATS-translated one, and its address.</summary>
    private static (bool Translated, ulong Iova) Build(VtdHarness h, string setup)
    {
        ulong top;
        switch (setup)
        {
            case "root-not-present": break;
            case "context-not-present": h.ContextTable(1); break;
            case "context-aw-unsupported": h.SetContext(Pf0, h.AllocPage(), 1, aw: 3); break;
            case "context-aw-zero": h.SetContext(Pf0, h.AllocPage(), 1, aw: 0); break;
            case "context-tt-device-tlb": h.SetContext(Pf0, h.AllocPage(), 1, tt: 1); break;
            case "context-tt-reserved": h.SetContext(Pf0, h.AllocPage(), 1, tt: 3); break;
            case "beyond-39-bit-width":
                top = h.NewDomain(Pf0, 1, aw: 1);
                h.Map(top, Iova, VtdHarness.DataBase, levels: 3);
                return (false, 1UL << 39);
            case "beyond-48-bit-width": h.Map(h.NewDomain(Pf0, 1), Iova, VtdHarness.DataBase); return (false, 1UL << 48);
            case "write-to-read-only-leaf": h.Map(h.NewDomain(Pf0, 1), Iova, VtdHarness.DataBase, write: false); break;
            case "write-through-read-only-directory":
                top = h.NewDomain(Pf0, 1);
                h.Map(top, Iova, VtdHarness.DataBase);
                h.WriteQ(top + ((Iova >> 39) & 511) * 8, h.ReadQ(top + ((Iova >> 39) & 511) * 8) & ~2UL);
                break;
            case "write-not-present": case "read-not-present": h.NewDomain(Pf0, 1); break;
            case "read-of-write-only-leaf": h.Map(h.NewDomain(Pf0, 1), Iova, VtdHarness.DataBase, read: false); break;
            case "read-through-write-only-directory":
                top = h.NewDomain(Pf0, 1);
                h.Map(top, Iova, VtdHarness.DataBase);
                ulong l3 = h.EntryAddress(top, Iova, 3);
                h.WriteQ(l3, h.ReadQ(l3) & ~1UL);
                break;
            case "slptptr-outside-ram": h.SetContext(Pf0, OutsideRam, 1); break;
            case "next-table-outside-ram":
                top = h.NewDomain(Pf0, 1);
                h.Map(top, Iova, VtdHarness.DataBase);
                ulong l2 = h.EntryAddress(top, Iova, 2);
                h.WriteQ(l2, OutsideRam | 3);
                break;
            case "root-table-outside-ram":
                h.SetReg(VtdRegs.Rtaddr, 8, OutsideRam);
                h.Command(VtdRegs.GcmdSrtp);
                break;
            case "context-table-outside-ram": h.WriteQ(h.RootTable + 16, OutsideRam | 1); break;
            case "root-lo-reserved": h.ContextTable(1); h.WriteQ(h.RootTable + 16, h.ReadQ(h.RootTable + 16) | 0x20); break;
            case "root-hi-reserved": h.ContextTable(1); h.WriteQ(h.RootTable + 24, 1); break;
            case "root-address-above-haw": h.ContextTable(1); h.WriteQ(h.RootTable + 16, h.ReadQ(h.RootTable + 16) | 1UL << 50); break;
            case "context-lo-reserved": h.SetContext(Pf0, h.AllocPage(), 1, extraLo: 0x10); break;
            case "context-hi-reserved": h.SetContext(Pf0, h.AllocPage(), 1, extraHi: 0x80); break;
            case "pte-snp-reserved": OrLeaf(h, 1UL << 11); break;
            case "pte-address-above-haw": OrLeaf(h, 1UL << 49); break;
            case "pte-tm-reserved": OrLeaf(h, 1UL << 62); break;
            case "pml4-ps-reserved":
                top = h.NewDomain(Pf0, 1);
                h.Map(top, Iova, VtdHarness.DataBase);
                h.WriteQ(top + ((Iova >> 39) & 511) * 8, h.ReadQ(top + ((Iova >> 39) & 511) * 8) | 0x80);
                break;
            case "2m-page-misaligned": h.Map(h.NewDomain(Pf0, 1), Iova, 0x20_1000, pageLevel: 2); break;
            case "1g-page-misaligned": h.Map(h.NewDomain(Pf0, 1), Iova, 0x20_0000, pageLevel: 3); break;
            case "translated-request": h.Map(h.NewDomain(Pf0, 1), Iova, VtdHarness.DataBase); return (true, Iova);
            case "maps-into-interrupt-range": h.Map(h.NewDomain(Pf0, 1), Iova, 0xFEE0_0000); break;
            default: throw new ArgumentException(setup);
        }
        return (false, Iova);
    }

    private static void OrLeaf(VtdHarness h, ulong bits)
    {
        ulong leaf = h.Map(h.NewDomain(Pf0, 1), Iova, VtdHarness.DataBase);
        h.WriteQ(leaf, h.ReadQ(leaf) | bits);
    }


    [Fact]
    public void SelfReferencingTablesEndAfterTheLastLevel()
    {
        using var h = new VtdHarness();
        h.Enable();
        ulong top = h.NewDomain(Pf0, 1);
        h.WriteQ(top, top | 3);   // entry 0 points at its own table at every level
        var p = h.Unit.Probe(Pf0, 0x10, write: false, dryRun: false);
        Assert.Equal(VtdProbeStatus.Translated, p.Status);
        Assert.Equal(top + 0x10, p.TranslatedAddress);
    }

    [Theory]
    [InlineData(0x2, true)]     // context not present, FPD set in the non-present entry
    [InlineData(0x5, true)]
    [InlineData(0x6, true)]
    [InlineData(0x7, true)]
    [InlineData(0xC, true)]
    [InlineData(0xE, true)]
    [InlineData(0xB, false)]    // reserved bits in the context entry are not a qualified fault
    public void FaultProcessingDisableSuppressesOnlyQualifiedFaults(byte reason, bool suppressed)
    {
        using var h = new VtdHarness();
        h.Enable();
        ulong top = h.AllocPage();
        bool write = false;
        switch (reason)
        {
            case 0x2: h.SetContext(Pf0, top, 1, fpd: true, present: false); break;
            case 0x5: h.SetContext(Pf0, top, 1, fpd: true); h.Map(top, Iova, VtdHarness.DataBase, write: false); write = true; break;
            case 0x6: h.SetContext(Pf0, top, 1, fpd: true); break;
            case 0x7: h.SetContext(Pf0, OutsideRam, 1, fpd: true); break;
            case 0xC: h.SetContext(Pf0, top, 1, fpd: true); h.WriteQ(h.Map(top, Iova, VtdHarness.DataBase), VtdHarness.DataBase | 3 | 1UL << 11); break;
            case 0xE: h.SetContext(Pf0, top, 1, fpd: true); h.Map(top, Iova, 0xFEE0_0000); break;
            case 0xB: h.SetContext(Pf0, top, 1, fpd: true, extraHi: 1UL << 30); break;
        }
        var r = write ? h.TryDmaWrite(Pf0, Iova) : h.TryDmaRead(Pf0, Iova);
        Assert.Equal(DmaStatus.TranslationFault, r.Status);
        Assert.Equal(reason, r.FaultReason);
        Assert.Equal(!suppressed, h.Unit.ReadFaultRecord(0).Fault);
        Assert.Equal(suppressed ? 0u : VtdRegs.FstsPpf, h.Fsts & VtdRegs.FstsPpf);
    }

    [Fact]
    public void RootTableIsPageAlignedAndOutsideRamIsFault8()
    {
        using var h = new VtdHarness();
        // RTADDR is 4 KiB aligned (bits 11:0 read 0), so a root table is either wholly in RAM or not.
        h.SetReg(VtdRegs.Rtaddr, 8, h.M.Ram.Size - 16);
        Assert.Equal(h.M.Ram.Size - 4096, h.Reg(VtdRegs.Rtaddr, 8));
        h.Command(VtdRegs.GcmdSrtp);
        h.SetPersistent(VtdRegs.GcmdTe, true);
        Assert.Equal(h.M.Ram.Size - 4096, h.Unit.ActiveRootTable);
        Assert.Equal(VtdFaultReason.RootNotPresent, h.Unit.Probe(0xFF00, 0, false, dryRun: true).FaultReason);
        h.SetReg(VtdRegs.Rtaddr, 8, h.M.Ram.Size);
        h.Command(VtdRegs.GcmdSrtp);
        Assert.Equal(VtdFaultReason.RootTableInvalid, h.Unit.Probe(0x0000, 0, false, dryRun: true).FaultReason);
    }

    [Fact]
    public void RandomGarbageTablesNeverThrowAndNeverTranslateOutsideRamSilently()
    {
        using var h = new VtdHarness();
        var rng = new Random(1234);
        // Garbage everywhere the walk can look: root table, a context table, and 64 pages of
        // would-be page tables whose entries point at each other, outside RAM, or anywhere.
        var pages = Enumerable.Range(0, 64).Select(_ => h.AllocPage()).ToArray();
        ulong RandomPointer() => rng.Next(4) switch
        {
            0 => pages[rng.Next(pages.Length)],
            1 => (ulong)(uint)rng.Next(1 << 20) << 20,   // below HAW, mostly outside RAM
            2 => h.M.Ram.Size - 8,
            _ => (ulong)rng.NextInt64(),
        };
        ulong Qword() => rng.Next(6) switch
        {
            0 => (ulong)rng.NextInt64() ^ (ulong)rng.NextInt64() << 1,              // anything
            1 => (uint)rng.Next(4) | (ulong)(uint)rng.Next(0x10000) << 8,               // a context-entry high half
            2 => 0,
            _ => RandomPointer() & ~0xFFFUL | (uint)rng.Next(16) | (rng.Next(4) == 0 ? 0x80UL : 0),
        };
        foreach (ulong page in pages)
            for (int i = 0; i < 512; i++) h.WriteQ(page + (ulong)i * 8, Qword());
        for (int bus = 0; bus < 256; bus++)
        {
            h.WriteQ(h.RootTable + (ulong)bus * 16, RandomPointer() & ~0xFFFUL | (rng.Next(8) != 0 ? 1UL : 0) | (rng.Next(16) == 0 ? 0x10UL : 0));
            h.WriteQ(h.RootTable + (ulong)bus * 16 + 8, rng.Next(16) == 0 ? 1UL << rng.Next(64) : 0);
        }
        h.Enable();
        var seen = new HashSet<VtdFaultReason>();
        for (int i = 0; i < 20_000; i++)
        {
            ushort rid = (ushort)rng.Next(0x10000);
            ulong iova = rng.Next(2) == 0 ? (ulong)rng.NextInt64() : (ulong)rng.Next() << 12;
            var p = h.Unit.Probe(rid, iova, rng.Next(2) == 0, dryRun: rng.Next(4) == 0);
            if (p.Status == VtdProbeStatus.Fault) seen.Add(p.FaultReason);
            else Assert.True(p.Status is VtdProbeStatus.Translated or VtdProbeStatus.PassThrough);
        }
        string all = string.Join(",", seen);
        foreach (var expected in new[] { VtdFaultReason.RootNotPresent, VtdFaultReason.RootReserved, VtdFaultReason.ContextTableInvalid,
                     VtdFaultReason.ContextNotPresent, VtdFaultReason.ContextReserved, VtdFaultReason.ContextInvalid, VtdFaultReason.NextTableInvalid })
            Assert.True(seen.Contains(expected), $"{expected} not among {all}");
    }
}
