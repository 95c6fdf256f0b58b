using PcieEmu.Core.AddressSpace;
using PcieEmu.Core.Config;
using PcieEmu.Core.Interrupts;
using PcieEmu.Core.Topology;

namespace PcieEmu.Core.Tests.Iommu;

/// <summary>MSI-X (table and PBA in BAR3, entry mask, function mask, pending, delivery on
/// unmask) and MSI with per-vector masking, observed on the interrupt stream.</summary>
public class MsiDeliveryTests
{
    private const ushort Pf0 = TestMachine.Pf0;
    private const int MsixCap = 0x70, MsiCap = 0x50;
    private const ushort MsixEnable = 0x8000, FunctionMask = 0x4000;

    private static ulong Bar3(PciFunction f) =>
        f.BarWindow((f is VirtualFunction vf ? vf.VfBars : f.Bars).Single(b => b.Index == 3)).Base;

    private static void Mmio(VtdHarness h, ulong address, int width, ulong value) =>
        Assert.Equal(CompletionStatus.Successful, h.M.WriteMmio(address, width, value));

    private static ulong MmioRead(VtdHarness h, ulong address, int width = 4)
    {
        var r = h.M.ReadMmio(address, width);
        Assert.Equal(CompletionStatus.Successful, r.Status);
        return r.Value;
    }

    private static void Raise(VtdHarness h, PciFunction f, int vector)
    {
        lock (h.M.SyncRoot) f.RaiseInterrupt(vector);
    }

    /// <summary>Programs entry <paramref name="v"/> (address, data) leaving its mask bit as given.</summary>
    private static void Program(VtdHarness h, ulong table, int v, uint data, bool masked)
    {
        ulong e = table + 16UL * (ulong)v;
        Mmio(h, e, 8, 0xFEE0_0000UL | (ulong)(uint)v << 12);
        Mmio(h, e + 8, 8, data | (masked ? 1UL << 32 : 0));
    }

    [Fact]
    public void TableResetsMaskedAndPbaIsReadOnly()
    {
        using var h = new VtdHarness();
        var pf = h.Function(Pf0);
        ulong t = Bar3(pf);
        for (int v = 0; v < 10; v++)
        {
            Assert.Equal(0UL, MmioRead(h, t + 16UL * (ulong)v, 8));
            Assert.Equal(1UL << 32, MmioRead(h, t + 16UL * (ulong)v + 8, 8));
        }
        Mmio(h, t, 4, 0xFEE0_0003);                         // address bits 1:0 read 0
        Assert.Equal(0xFEE0_0000UL, MmioRead(h, t));
        Mmio(h, t + 12, 4, 0xFFFF_FFFF);                    // only the mask bit is defined
        Assert.Equal(1UL, MmioRead(h, t + 12));
        Mmio(h, t + 0x2000, 8, ulong.MaxValue);             // PBA ignores writes
        Assert.Equal(0UL, MmioRead(h, t + 0x2000, 8));
        Assert.Equal(9UL, h.M.Read(Pf0, MsixCap + 2, 2) & 0x7FFUL);
    }

    [Fact]
    public void MsixMaskedVectorGoesPendingAndIsDeliveredOnUnmask()
    {
        using var h = new VtdHarness();
        var pf = h.Function(Pf0);
        ulong t = Bar3(pf);
        h.M.Write(Pf0, MsixCap + 2, 2, MsixEnable);
        Program(h, t, 2, 0x45, masked: false);
        Program(h, t, 5, 0x46, masked: true);

        Raise(h, pf, 2);
        var ev = Assert.Single(h.DrainInterrupts());
        Assert.Equal((Pf0, InterruptKind.Msix, 0xFEE0_2000UL, 0x45u, 2u, (byte)2, (byte)0x45),
            (ev.Rid, ev.Kind, ev.Address, ev.Data, ev.Vector, ev.Destination, ev.CpuVector));

        Raise(h, pf, 5);
        Raise(h, pf, 5);                                    // still one pending bit
        Assert.Empty(h.DrainInterrupts());
        Assert.Equal(1UL << 5, MmioRead(h, t + 0x2000, 8));
        Mmio(h, t + 16 * 5 + 12, 4, 0);                     // unmask
        ev = Assert.Single(h.DrainInterrupts());
        Assert.Equal((5u, 0x46u), (ev.Vector, ev.Data));
        Assert.Equal(0UL, MmioRead(h, t + 0x2000, 8));
        Assert.True(ev.Sequence > 1);
    }

    [Fact]
    public void FunctionMaskHoldsEveryVectorUntilCleared()
    {
        using var h = new VtdHarness();
        var pf = h.Function(Pf0);
        ulong t = Bar3(pf);
        h.M.Write(Pf0, MsixCap + 2, 2, MsixEnable | FunctionMask);
        Program(h, t, 0, 0x30, masked: false);
        Program(h, t, 1, 0x31, masked: true);
        Program(h, t, 9, 0x39, masked: false);
        Raise(h, pf, 0);
        Raise(h, pf, 1);
        Raise(h, pf, 9);
        Assert.Empty(h.DrainInterrupts());
        Assert.Equal(0b10_0000_0011UL, MmioRead(h, t + 0x2000, 8));
        // Unmasking an entry while the function is masked delivers nothing.
        Mmio(h, t + 16 + 12, 4, 0);
        Assert.Empty(h.DrainInterrupts());
        Mmio(h, t + 16 + 12, 4, 1);                          // mask entry 1 again
        h.M.Write(Pf0, MsixCap + 2, 2, MsixEnable);          // clear Function Mask
        var evs = h.DrainInterrupts();
        Assert.Equal([0u, 9u], evs.Select(e => e.Vector).ToArray());
        Assert.Equal(1UL << 1, MmioRead(h, t + 0x2000, 8));  // entry 1 is still masked and pending
        Mmio(h, t + 16 + 12, 4, 0);
        Assert.Equal(0x31u, Assert.Single(h.DrainInterrupts()).Data);
    }

    [Fact]
    public void MsixOnAVfCarriesTheVfRoutingId()
    {
        using var h = new VtdHarness();
        h.EnableVfs(Pf0, 2);
        var vf = h.M.PhysicalFunctions[0].VirtualFunctions[1];
        h.M.Write(vf.Rid, ConfigRegs.Command, 2, ConfigRegs.CmdBusMaster);
        h.M.Write(vf.Rid, MsixCap + 2, 2, MsixEnable);
        Assert.Equal(2UL, h.M.Read(vf.Rid, MsixCap + 2, 2) & 0x7FFUL);     // 3 vectors
        ulong t = Bar3(vf);
        Program(h, t, 2, 0x77, masked: true);
        Raise(h, vf, 2);
        Assert.Equal(1UL << 2, MmioRead(h, t + 0x2000, 8));
        Mmio(h, t + 32 + 12, 4, 0);
        var ev = Assert.Single(h.DrainInterrupts());
        Assert.Equal((vf.Rid, 2u, 0x77u), (ev.Rid, ev.Vector, ev.Data));
    }

    [Fact]
    public void MsiPerVectorMaskHoldsThePendingBit()
    {
        using var h = new VtdHarness();
        var pf = h.Function(Pf0);
        h.M.Write(Pf0, MsiCap + 4, 4, 0xFEE0_3000);
        h.M.Write(Pf0, MsiCap + 8, 4, 0);
        h.M.Write(Pf0, MsiCap + 0xC, 2, 0x55);
        h.M.Write(Pf0, MsiCap + 0x10, 4, 1);               // mask vector 0
        h.M.Write(Pf0, MsiCap + 2, 2, 1);                   // MSI Enable
        Raise(h, pf, 0);
        Assert.Empty(h.DrainInterrupts());
        Assert.Equal(1u, h.M.Read(Pf0, MsiCap + 0x14));     // pending
        h.M.Write(Pf0, MsiCap + 0x14, 4, 0);                // Pending is read-only
        Assert.Equal(1u, h.M.Read(Pf0, MsiCap + 0x14));
        h.M.Write(Pf0, MsiCap + 0x10, 4, 0);                // unmask: delivered
        var ev = Assert.Single(h.DrainInterrupts());
        Assert.Equal((Pf0, InterruptKind.Msi, 0xFEE0_3000UL, 0x55u, (byte)3), (ev.Rid, ev.Kind, ev.Address, ev.Data, ev.Destination));
        Assert.Equal(0u, h.M.Read(Pf0, MsiCap + 0x14));
        Raise(h, pf, 0);
        Assert.Single(h.DrainInterrupts());
    }

    [Fact]
    public void MsixDisabledFallsBackToMsiThenIntx()
    {
        using var h = new VtdHarness();
        var pf = h.Function(Pf0);
        Raise(h, pf, 0);
        var intx = Assert.Single(h.DrainInterrupts());
        Assert.Equal(InterruptKind.Intx, intx.Kind);
        h.M.Write(Pf0, MsiCap + 4, 4, 0xFEE0_0000);
        h.M.Write(Pf0, MsiCap + 2, 2, 1);
        Raise(h, pf, 0);
        Assert.Equal(InterruptKind.Msi, Assert.Single(h.DrainInterrupts()).Kind);
        h.M.Write(Pf0, MsixCap + 2, 2, MsixEnable);
        Program(h, Bar3(pf), 0, 1, masked: false);
        Raise(h, pf, 0);
        Assert.Equal(InterruptKind.Msix, Assert.Single(h.DrainInterrupts()).Kind);
    }

    [Fact]
    public void AMessageOutsideTheMsiWindowIsADmaWriteThroughTheRemappingUnit()
    {
        using var h = new VtdHarness();
        var pf = h.Function(Pf0);
        ulong t = Bar3(pf);
        h.M.Write(Pf0, MsixCap + 2, 2, MsixEnable);
        Mmio(h, t, 8, VtdHarness.DataBase + 0x80);
        Mmio(h, t + 8, 8, 0xDEAD_BEEF);
        Raise(h, pf, 0);
        Assert.Empty(h.DrainInterrupts());
        Assert.Equal(0xDEAD_BEEFu, h.ReadD(VtdHarness.DataBase + 0x80));
        // With translation on and nothing mapped, the write faults like any DMA.
        h.Enable();
        Raise(h, pf, 0);
        var rec = h.Unit.ReadFaultRecord(0);
        Assert.True(rec.Fault);
        Assert.Equal(Pf0, rec.SourceId);
        Assert.False(rec.IsRead);
    }

    [Fact]
    public void FunctionLevelResetMasksEveryVectorAndClearsPending()
    {
        using var h = new VtdHarness();
        var pf = h.Function(Pf0);
        ulong t = Bar3(pf);
        h.M.Write(Pf0, MsixCap + 2, 2, MsixEnable);
        Program(h, t, 3, 0x99, masked: true);
        Raise(h, pf, 3);
        Assert.True(pf.MsixTable!.IsPending(3));
        h.M.Write(Pf0, 0xA0 + 8, 2, h.M.Read(Pf0, 0xA0 + 8, 2) | 0x8000);      // Initiate FLR
        Assert.Equal(0u, h.M.Read(Pf0, MsixCap + 2, 2) & (MsixEnable | FunctionMask));
        Assert.False(pf.MsixTable.IsPending(3));
        Assert.All(Enumerable.Range(0, 10), v => Assert.True(pf.MsixTable.EntryMasked(v)));
        Assert.Equal(0UL, pf.MsixTable.Address(3));
        Assert.Empty(h.DrainInterrupts());
    }
}
