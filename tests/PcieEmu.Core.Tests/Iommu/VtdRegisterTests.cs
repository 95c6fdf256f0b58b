using PcieEmu.Core.Iommu;

namespace PcieEmu.Core.Tests.Iommu;

/// <summary>The register block: values, access types, widths.</summary>
public class VtdRegisterTests
{
    [Fact]
    public void IdentificationRegistersHoldTheAdvertisedCapabilities()
    {
        using var h = new VtdHarness();
        Assert.Equal(0x10UL, h.Reg(VtdRegs.Ver));
        ulong cap = h.Reg(VtdRegs.Cap, 8);
        Assert.Equal(0x0012_078C_222F_0606UL, cap);
        Assert.Equal(6UL, cap & 7);                        // ND: 16-bit domain ids
        Assert.Equal(0UL, (cap >> 4) & 1);                 // RWBF
        Assert.Equal(0UL, (cap >> 7) & 1);                 // CM
        Assert.Equal(0b00110UL, (cap >> 8) & 0x1F);        // SAGAW 39 + 48
        Assert.Equal(47UL, (cap >> 16) & 0x3F);            // MGAW - 1
        Assert.Equal(0x22UL, (cap >> 24) & 0x3FF);         // FRO
        Assert.Equal(3UL, (cap >> 34) & 3);                // SLLPS 2M + 1G
        Assert.Equal(1UL, (cap >> 39) & 1);                // PSI
        Assert.Equal(7UL, (cap >> 40) & 0xFF);             // NFR - 1
        Assert.Equal(18UL, (cap >> 48) & 0x3F);            // MAMV
        ulong ecap = h.Reg(VtdRegs.Ecap, 8);
        Assert.Equal(0x0F42UL, ecap);                      // IRO 0xF, PT, QI; no C, DT, IR, SC
        // 32-bit halves of a 64-bit register read the same bits.
        Assert.Equal((uint)cap, (uint)h.Reg(VtdRegs.Cap, 4));
        Assert.Equal((uint)(cap >> 32), (uint)h.Reg(VtdRegs.Cap + 4, 4));
        // Read-only: writes change nothing.
        h.SetReg(VtdRegs.Cap, 8, 0);
        h.SetReg(VtdRegs.Ecap, 4, 0);
        h.SetReg(VtdRegs.Ver, 4, 0xFF);
        Assert.Equal(cap, h.Reg(VtdRegs.Cap, 8));
        Assert.Equal(ecap, h.Reg(VtdRegs.Ecap, 8));
        Assert.Equal(0x10UL, h.Reg(VtdRegs.Ver));
    }

    [Fact]
    public void ResetValues()
    {
        using var h = new VtdHarness();
        foreach (int off in new[] { VtdRegs.Gcmd, VtdRegs.Gsts, VtdRegs.Fsts, VtdRegs.Fedata, VtdRegs.Feaddr, VtdRegs.Feuaddr,
                     VtdRegs.Ics, VtdRegs.Iedata, VtdRegs.Ieaddr, VtdRegs.Ieuaddr })
            Assert.Equal(0UL, h.Reg(off));
        foreach (int off in new[] { VtdRegs.Rtaddr, VtdRegs.Ccmd, VtdRegs.Iqh, VtdRegs.Iqt, VtdRegs.Iqa, VtdRegs.Iva, VtdRegs.Iotlb })
            Assert.Equal(0UL, h.Reg(off, 8));
        Assert.Equal(0x8000_0000UL, h.Reg(VtdRegs.Fectl));     // IM
        Assert.Equal(0x8000_0000UL, h.Reg(VtdRegs.Iectl));     // IM
        for (int i = 0; i < 8; i++) Assert.Equal(0UL, h.Reg(VtdRegs.Frcd + 16 * i + 8, 8));
    }

    [Fact]
    public void ReadWriteRegistersKeepOnlyTheirDefinedBits()
    {
        using var h = new VtdHarness();
        h.SetReg(VtdRegs.Rtaddr, 8, ulong.MaxValue);
        Assert.Equal(0x0000_FFFF_FFFF_F000UL, h.Reg(VtdRegs.Rtaddr, 8));   // 11:0 (TTM legacy only) and 63:48 read 0
        h.SetReg(VtdRegs.Rtaddr + 4, 4, 0);                                  // a 4-byte write to the upper half
        Assert.Equal(0xFFFF_F000UL, h.Reg(VtdRegs.Rtaddr, 8));
        h.SetReg(VtdRegs.Iqa, 8, ulong.MaxValue);
        Assert.Equal(0x0000_FFFF_FFFF_F007UL, h.Reg(VtdRegs.Iqa, 8));      // DW (bit 11) reads 0
        h.SetReg(VtdRegs.Iqt, 8, ulong.MaxValue);
        Assert.Equal(0x7FFF0UL, h.Reg(VtdRegs.Iqt, 8));
        h.SetReg(VtdRegs.Fedata, 4, 0xFFFF_FFFF);
        Assert.Equal(0xFFFFUL, h.Reg(VtdRegs.Fedata));
        h.SetReg(VtdRegs.Feaddr, 4, 0xFFFF_FFFF);
        Assert.Equal(0xFFFF_FFFCUL, h.Reg(VtdRegs.Feaddr));
        h.SetReg(VtdRegs.Feuaddr, 4, 0x1234_5678);
        Assert.Equal(0x1234_5678UL, h.Reg(VtdRegs.Feuaddr));
        h.SetReg(VtdRegs.Fectl, 4, 0x7FFF_FFFF);                           // only IM is writable; IP is RO
        Assert.Equal(0UL, h.Reg(VtdRegs.Fectl));
        h.SetReg(VtdRegs.Iectl, 4, 0xFFFF_FFFF);
        Assert.Equal(0x8000_0000UL, h.Reg(VtdRegs.Iectl));
        h.SetReg(VtdRegs.Iedata, 4, 0xFFFF_FFFF);
        Assert.Equal(0xFFFFUL, h.Reg(VtdRegs.Iedata));
        // An 8-byte access over two 32-bit registers reaches both.
        h.SetReg(VtdRegs.Feaddr, 8, 0x0000_0001_FEE0_1003UL);
        Assert.Equal(0xFEE0_1000UL, h.Reg(VtdRegs.Feaddr));
        Assert.Equal(1UL, h.Reg(VtdRegs.Feuaddr));
        Assert.Equal(0x0000_0001_FEE0_1000UL, h.Reg(VtdRegs.Feaddr, 8));
    }

    [Fact]
    public void WriteOnlyAndReadOnlyRegisters()
    {
        using var h = new VtdHarness();
        h.SetReg(VtdRegs.Iva, 8, 0x1234_5000);
        Assert.Equal(0UL, h.Reg(VtdRegs.Iva, 8));                           // IVA is write-only
        h.SetReg(VtdRegs.Gsts, 4, 0xFFFF_FFFF);                             // GSTS is read-only
        Assert.Equal(0UL, h.Reg(VtdRegs.Gsts));
        h.SetReg(VtdRegs.Iqh, 8, 0x7FFF0);                                  // IQH is read-only
        Assert.Equal(0UL, h.Reg(VtdRegs.Iqh, 8));
        h.SetReg(VtdRegs.Fsts, 4, 0xFFFF_FFFF);                             // RW1C bits that are 0 stay 0
        Assert.Equal(0UL, h.Reg(VtdRegs.Fsts));
        h.SetReg(VtdRegs.Ccmd, 8, 3UL << 59);                               // CAIG is read-only
        Assert.Equal(0UL, h.Reg(VtdRegs.Ccmd, 8) >> 59);
        h.SetReg(VtdRegs.Iotlb, 8, 3UL << 57);                              // IAIG is read-only
        Assert.Equal(0UL, (h.Reg(VtdRegs.Iotlb, 8) >> 57) & 3);
        h.SetReg(VtdRegs.Frcd, 8, ulong.MaxValue);                          // fault records are RO (except F)
        h.SetReg(VtdRegs.Frcd + 8, 8, 0x7FFF_FFFF_FFFF_FFFF);
        Assert.Equal(0UL, h.Reg(VtdRegs.Frcd, 8) | h.Reg(VtdRegs.Frcd + 8, 8));
        Assert.Equal(0UL, h.Reg(0x400, 8));                                 // unimplemented offsets read 0
    }

    [Fact]
    public void NarrowAccessesReadBytesOfTheDwordAndWritesAreDropped()
    {
        using var h = new VtdHarness();
        Assert.Equal(0x10UL, h.Reg(VtdRegs.Ver, 1));
        Assert.Equal(0x80UL, h.Reg(VtdRegs.Fectl + 3, 1));
        Assert.Equal(0x8000UL, h.Reg(VtdRegs.Fectl + 2, 2));
        h.SetReg(VtdRegs.Fectl + 3, 1, 0);
        Assert.Equal(0x8000_0000UL, h.Reg(VtdRegs.Fectl));
    }

    [Fact]
    public void GlobalCommandsTakeEffectAndStatusFollows()
    {
        using var h = new VtdHarness();
        h.SetReg(VtdRegs.Rtaddr, 8, h.RootTable);
        Assert.Equal(0UL, h.Unit.ActiveRootTable);                          // RTADDR alone does nothing
        h.Command(VtdRegs.GcmdSrtp);
        Assert.Equal(VtdRegs.GcmdSrtp, h.Gsts);                             // RTPS
        Assert.Equal(h.RootTable, h.Unit.ActiveRootTable);
        h.SetPersistent(VtdRegs.GcmdTe, true);
        Assert.Equal(VtdRegs.GcmdTe | VtdRegs.GcmdSrtp, h.Gsts);
        Assert.True(h.Unit.TranslationEnabled);
        h.Command(VtdRegs.GcmdWbf);                                         // no write buffer: completes at once
        Assert.Equal(0u, h.Gsts & VtdRegs.GcmdWbf);
        Assert.True(h.Unit.TranslationEnabled);
        h.Command(VtdRegs.GcmdIre | VtdRegs.GcmdSirtp | VtdRegs.GcmdCfi);   // interrupt remapping is not implemented
        Assert.Equal(VtdRegs.GcmdTe | VtdRegs.GcmdSrtp, h.Gsts);
        h.EnableQueue();
        Assert.Equal(VtdRegs.GcmdTe | VtdRegs.GcmdSrtp | VtdRegs.GcmdQie, h.Gsts);
        h.SetPersistent(VtdRegs.GcmdQie, false);
        h.SetPersistent(VtdRegs.GcmdTe, false);
        Assert.Equal(VtdRegs.GcmdSrtp, h.Gsts);
        Assert.Equal(0UL, h.Reg(VtdRegs.Gcmd));                             // GCMD reads 0
    }

    [Fact]
    public void MachineResetPutsTheUnitBackToPowerOnState()
    {
        using var h = new VtdHarness();
        h.Enable();
        h.UnmaskFaultEvents();
        h.Unit.Probe(0x0100, 0, false, dryRun: false);
        Assert.NotEqual(0u, h.Fsts);
        h.M.Reset();
        Assert.Equal(0u, h.Gsts);
        Assert.Equal(0u, h.Fsts);
        Assert.Equal(0x8000_0000UL, h.Reg(VtdRegs.Fectl));
        Assert.Equal(0UL, h.Reg(VtdRegs.Rtaddr, 8));
        Assert.False(h.Unit.ReadFaultRecord(0).Fault);
        Assert.Equal(0, h.Unit.IotlbCount + h.Unit.ContextCacheCount);
    }

    /// <summary>Registers without side effects: offset, width, reset value, writable bits, write-only.</summary>
    public static TheoryData<string, int, int, ulong, ulong, bool> PlainRegisters => new()
    {
        { "VER", VtdRegs.Ver, 4, 0x10, 0, false },
        { "CAP", VtdRegs.Cap, 8, VtdRegs.CapValue, 0, false },
        { "ECAP", VtdRegs.Ecap, 8, VtdRegs.EcapValue, 0, false },
        { "GSTS", VtdRegs.Gsts, 4, 0, 0, false },
        { "RTADDR", VtdRegs.Rtaddr, 8, 0, 0x0000_FFFF_FFFF_F000, false },
        { "FSTS", VtdRegs.Fsts, 4, 0, 0, false },
        { "FECTL", VtdRegs.Fectl, 4, 0x8000_0000, 0x8000_0000, false },
        { "FEDATA", VtdRegs.Fedata, 4, 0, 0xFFFF, false },
        { "FEADDR", VtdRegs.Feaddr, 4, 0, 0xFFFF_FFFC, false },
        { "FEUADDR", VtdRegs.Feuaddr, 4, 0, 0xFFFF_FFFF, false },
        { "IQH", VtdRegs.Iqh, 8, 0, 0, false },
        { "IQA", VtdRegs.Iqa, 8, 0, 0x0000_FFFF_FFFF_F007, false },
        { "ICS", VtdRegs.Ics, 4, 0, 0, false },
        { "IECTL", VtdRegs.Iectl, 4, 0x8000_0000, 0x8000_0000, false },
        { "IEDATA", VtdRegs.Iedata, 4, 0, 0xFFFF, false },
        { "IEADDR", VtdRegs.Ieaddr, 4, 0, 0xFFFF_FFFC, false },
        { "IEUADDR", VtdRegs.Ieuaddr, 4, 0, 0xFFFF_FFFF, false },
        { "IVA", VtdRegs.Iva, 8, 0, 0x0000_FFFF_FFFF_F07F, true },
        { "FRCD0 lo", VtdRegs.Frcd, 8, 0, 0, false },
        { "FRCD7 hi", VtdRegs.Frcd + 7 * 16 + 8, 8, 0, 0, false },
        { "reserved 0x30", 0x30, 4, 0, 0, false },
        { "reserved 0x98", 0x98, 4, 0, 0, false },
    };

    [Theory]
    [MemberData(nameof(PlainRegisters))]
    public void EveryPlainRegisterHasItsDeclaredAccessType(string name, int offset, int width, ulong reset, ulong writable, bool writeOnly)
    {
        using var h = new VtdHarness();
        ulong all = width == 8 ? ulong.MaxValue : 0xFFFF_FFFF;
        Assert.True(reset == h.Reg(offset, width), name);
        foreach (ulong v in new[] { all, 0UL, 0x5A5A_5A5A_5A5A_5A5AUL & all, all })
        {
            h.SetReg(offset, width, v);
            ulong expected = writeOnly ? 0 : (reset & ~writable) | (v & writable);
            Assert.True(expected == h.Reg(offset, width), $"{name} after writing 0x{v:X}: 0x{h.Reg(offset, width):X}");
        }
        if (width == 8)
        {
            // The same through two 4-byte writes.
            h.SetReg(offset, 4, 0);
            h.SetReg(offset + 4, 4, 0);
            Assert.Equal(writeOnly ? 0 : reset & ~writable, h.Reg(offset, 8));
        }
    }
}
