using PcieEmu.Core.Interrupts;
using PcieEmu.Core.Iommu;

namespace PcieEmu.Core.Tests.Iommu;

/// <summary>Fault recording registers, FSTS (PPF, PFO, FRI), F write-1-to-clear, and the
/// fault-event message (masked, pending, unmasked).</summary>
public class VtdFaultRecordingTests
{
    /// <summary>A fault from <paramref name="rid"/> (translation on, nothing mapped for it).</summary>
    private static void Fault(VtdHarness h, ushort rid, ulong page = 0x7000) =>
        Assert.Equal(VtdProbeStatus.Fault, h.Unit.Probe(rid, page, write: true, dryRun: false).Status);

    private static void ClearRecord(VtdHarness h, int i) => h.SetReg(VtdRegs.Frcd + 16 * i + 12, 4, 1u << 31);

    [Fact]
    public void RecordsFillInOrderCollapseBySourceAndOverflowSetsPfo()
    {
        using var h = new VtdHarness();
        h.Enable();
        for (int i = 0; i < 8; i++)
        {
            Fault(h, (ushort)(0x0300 + i), 0x1000UL * (ulong)(i + 1));
            Assert.Equal((ushort)(0x0300 + i), h.Unit.ReadFaultRecord(i).SourceId);
            Assert.Equal(VtdRegs.FstsPpf, h.Fsts);                 // FRI stays 0: the first pending record
        }
        // A second fault from a source with a pending record collapses into it.
        Fault(h, 0x0303, 0x9_9000);
        Assert.Equal(0x4000UL, h.Unit.ReadFaultRecord(3).PageAddress);
        Assert.Equal(VtdRegs.FstsPpf, h.Fsts);
        // A ninth source finds record 0 still pending: PFO, and the fault is lost.
        var lost = h.Unit.Probe(0x0400, 0x5000, true, dryRun: false);
        Assert.False(lost.Recorded);
        Assert.Equal(VtdRegs.FstsPpf | VtdRegs.FstsPfo, h.Fsts);
        // While PFO is set nothing is recorded, even in a freed record.
        ClearRecord(h, 0);
        Fault(h, 0x0401);
        Assert.False(h.Unit.ReadFaultRecord(0).Fault);
        // Software clears PFO (RW1C); recording resumes at the next index (0).
        h.SetReg(VtdRegs.Fsts, 4, VtdRegs.FstsPfo);
        Assert.Equal(VtdRegs.FstsPpf, h.Fsts & 0xFF);
        Fault(h, 0x0402);
        var rec = h.Unit.ReadFaultRecord(0);
        Assert.True(rec.Fault);
        Assert.Equal((ushort)0x0402, rec.SourceId);
        Assert.False(rec.IsRead);
        Assert.Equal(VtdFaultReason.RootNotPresent, rec.Reason);
    }

    [Fact]
    public void FriPointsAtTheFirstPendingRecordAndPpfFollowsTheFBits()
    {
        using var h = new VtdHarness();
        h.Enable();
        Fault(h, 0x0300);
        Fault(h, 0x0301);
        ClearRecord(h, 0);
        ClearRecord(h, 1);
        Assert.Equal(0u, h.Fsts);                                       // PPF clears with the last F
        Fault(h, 0x0302);                                               // goes to record 2
        Assert.Equal(VtdRegs.FstsPpf | 2u << 8, h.Fsts);
        Fault(h, 0x0303);
        Assert.Equal(VtdRegs.FstsPpf | 2u << 8, h.Fsts);
        // F is RW1C: writing 0 leaves it; writing 1 with an 8-byte access clears it.
        h.SetReg(VtdRegs.Frcd + 2 * 16 + 8, 8, 0);
        Assert.True(h.Unit.ReadFaultRecord(2).Fault);
        h.SetReg(VtdRegs.Frcd + 2 * 16 + 8, 8, 1UL << 63);
        Assert.False(h.Unit.ReadFaultRecord(2).Fault);
        Assert.Equal((ushort)0x0302, h.Unit.ReadFaultRecord(2).SourceId);   // the rest of the record stays
    }

    [Fact]
    public void FaultEventIsSentAtOnceWhenUnmasked()
    {
        using var h = new VtdHarness();
        h.Enable();
        h.UnmaskFaultEvents(0x4A);
        Fault(h, 0x0300);
        var ev = Assert.Single(h.DrainInterrupts());
        Assert.Equal(InterruptKind.IommuFault, ev.Kind);
        Assert.Equal(VtdUnit.MessageRid, ev.Rid);
        Assert.Equal(VtdHarness.FaultMsiAddress, ev.Address);
        Assert.Equal(0x4Au, ev.Data);
        Assert.Equal(0x4A, ev.CpuVector);
        Assert.Equal(VtdUnit.FaultEventVector, ev.Vector);
        // More faults while PPF is set raise no new event.
        Fault(h, 0x0301);
        Assert.Empty(h.DrainInterrupts());
        // Once serviced (all F clear), the next fault signals again.
        ClearRecord(h, 0);
        ClearRecord(h, 1);
        Fault(h, 0x0302);
        Assert.Single(h.DrainInterrupts());
        Assert.Equal(0UL, h.Reg(VtdRegs.Fectl));
    }

    [Fact]
    public void MaskedFaultEventIsHeldInIpAndSentOnUnmask()
    {
        using var h = new VtdHarness();
        h.Enable();
        h.SetReg(VtdRegs.Fedata, 4, 0x51);
        h.SetReg(VtdRegs.Feaddr, 4, VtdHarness.FaultMsiAddress);      // IM still set from reset
        Fault(h, 0x0300);
        Assert.Empty(h.DrainInterrupts());
        Assert.Equal(VtdRegs.EctlIm | VtdRegs.EctlIp, (uint)h.Reg(VtdRegs.Fectl));
        h.SetReg(VtdRegs.Fectl, 4, 0);
        var ev = Assert.Single(h.DrainInterrupts());
        Assert.Equal(0x51u, ev.Data);
        Assert.Equal(0UL, h.Reg(VtdRegs.Fectl));                        // IP cleared when sent
        // Unmasking again sends nothing more.
        h.SetReg(VtdRegs.Fectl, 4, VtdRegs.EctlIm);
        h.SetReg(VtdRegs.Fectl, 4, 0);
        Assert.Empty(h.DrainInterrupts());
    }

    [Fact]
    public void HeldFaultEventIsDroppedWhenSoftwareServicesTheFaultsFirst()
    {
        using var h = new VtdHarness();
        h.Enable();
        h.SetReg(VtdRegs.Feaddr, 4, VtdHarness.FaultMsiAddress);
        Fault(h, 0x0300);
        Assert.Equal(VtdRegs.EctlIm | VtdRegs.EctlIp, (uint)h.Reg(VtdRegs.Fectl));
        ClearRecord(h, 0);
        Assert.Equal(VtdRegs.EctlIm, (uint)h.Reg(VtdRegs.Fectl));
        h.SetReg(VtdRegs.Fectl, 4, 0);
        Assert.Empty(h.DrainInterrupts());
    }

    [Fact]
    public void FaultEventOutsideTheMsiWindowIsAPlainMemoryWrite()
    {
        using var h = new VtdHarness();
        h.Enable();
        h.SetReg(VtdRegs.Fedata, 4, 0xBEEF);
        h.SetReg(VtdRegs.Feaddr, 4, VtdHarness.DataBase + 0x40);
        h.SetReg(VtdRegs.Fectl, 4, 0);
        Fault(h, 0x0300);
        Assert.Empty(h.DrainInterrupts());
        Assert.Equal(0xBEEFu, h.ReadD(VtdHarness.DataBase + 0x40));
    }

    [Fact]
    public void DmaFaultsFromADeviceAreRecordedLikeProbes()
    {
        using var h = new VtdHarness();
        h.Enable();
        h.UnmaskFaultEvents();
        var r = h.TryDmaRead(TestMachine.Pf1, 0x12_3456);
        Assert.Equal((byte)VtdFaultReason.RootNotPresent, r.FaultReason);
        var rec = h.Unit.ReadFaultRecord(0);
        Assert.Equal(new VtdFaultRecord(true, TestMachine.Pf1, VtdFaultReason.RootNotPresent, true, 0x12_3000), rec);
        Assert.Single(h.DrainInterrupts());
    }
}
