using PcieEmu.Core.Interrupts;
using PcieEmu.Core.Iommu;

namespace PcieEmu.Core.Tests.Iommu;

/// <summary>The invalidation queue: wait descriptors (status write, IWC, invalidation event),
/// invalid descriptors and bad tails (IQE), wrap-around, enable and disable.</summary>
public class VtdQueuedInvalidationTests
{
    private const ulong Status = VtdHarness.DataBase + 0x100;

    [Fact]
    public void WaitDescriptorWritesStatusAndSignalsCompletion()
    {
        using var h = new VtdHarness();
        h.EnableQueue();
        h.SetReg(VtdRegs.Iedata, 4, 0x61);
        h.SetReg(VtdRegs.Ieaddr, 4, VtdHarness.InvMsiAddress);
        h.SetReg(VtdRegs.Iectl, 4, 0);

        h.Submit(VtdHarness.WaitDesc(sw: true, iflag: false, 0xC0FFEE, Status));
        Assert.Equal(0xC0FFEEu, h.ReadD(Status));
        Assert.Equal(0UL, h.Reg(VtdRegs.Ics));
        Assert.Empty(h.DrainInterrupts());

        h.Submit(VtdHarness.WaitDesc(sw: false, iflag: true));
        Assert.Equal(1UL, h.Reg(VtdRegs.Ics));
        var ev = Assert.Single(h.DrainInterrupts());
        Assert.Equal(InterruptKind.IommuFault, ev.Kind);
        Assert.Equal(VtdUnit.InvalidationEventVector, ev.Vector);
        Assert.Equal(VtdHarness.InvMsiAddress, ev.Address);
        Assert.Equal(0x61u, ev.Data);
        // IWC still set: the next completion raises no new event.
        h.Submit(VtdHarness.WaitDesc(sw: false, iflag: true));
        Assert.Empty(h.DrainInterrupts());
        h.SetReg(VtdRegs.Ics, 4, 1);                        // RW1C
        Assert.Equal(0UL, h.Reg(VtdRegs.Ics));
        h.Submit(VtdHarness.WaitDesc(sw: false, iflag: true));
        Assert.Single(h.DrainInterrupts());
        Assert.Equal(0u, h.Fsts);
    }

    [Fact]
    public void MaskedInvalidationEventIsHeldAndSentOnUnmask()
    {
        using var h = new VtdHarness();
        h.EnableQueue();
        h.SetReg(VtdRegs.Ieaddr, 4, VtdHarness.InvMsiAddress);
        h.Submit(VtdHarness.WaitDesc(sw: false, iflag: true));
        Assert.Empty(h.DrainInterrupts());
        Assert.Equal(VtdRegs.EctlIm | VtdRegs.EctlIp, (uint)h.Reg(VtdRegs.Iectl));
        h.SetReg(VtdRegs.Iectl, 4, 0);
        Assert.Single(h.DrainInterrupts());
        Assert.Equal(0UL, h.Reg(VtdRegs.Iectl));
        // Held, then serviced (IWC cleared) before unmasking: nothing is sent.
        h.SetReg(VtdRegs.Iectl, 4, VtdRegs.EctlIm);
        h.SetReg(VtdRegs.Ics, 4, 1);
        h.Submit(VtdHarness.WaitDesc(sw: false, iflag: true));
        h.SetReg(VtdRegs.Ics, 4, 1);
        Assert.Equal(VtdRegs.EctlIm, (uint)h.Reg(VtdRegs.Iectl));
        h.SetReg(VtdRegs.Iectl, 4, 0);
        Assert.Empty(h.DrainInterrupts());
    }

    public static TheoryData<string, ulong, ulong> InvalidDescriptors => new()
    {
        { "type 0", 0, 0 },
        { "device-TLB (ECAP.DT = 0)", 3, 0 },
        { "interrupt entry cache (ECAP.IR = 0)", 4, 0 },
        { "type 6", 6, 0 },
        { "type 15", 15, 0 },
        { "upper type bits 11:9", 5 | 1 << 9, 0 },
        { "context granularity 0", 1, 0 },
        { "context reserved lo bit 6", 1 | 1 << 4 | 1 << 6, 0 },
        { "context reserved hi", 1 | 1 << 4, 1 },
        { "iotlb granularity 0", 2, 0 },
        { "iotlb reserved lo bit 40", 2 | 1 << 4 | 1UL << 40, 0 },
        { "iotlb reserved hi bit 7", 2 | 1 << 4, 1 << 7 },
        { "wait reserved lo bit 8", 5 | 1 << 8, 0 },
        { "wait status address not dword aligned", 5 | 1 << 5, Status + 2 },
    };

    [Theory]
    [MemberData(nameof(InvalidDescriptors))]
    public void InvalidDescriptorSetsIqeAndStopsWithTheHeadOnIt(string name, ulong lo, ulong hi)
    {
        using var h = new VtdHarness();
        h.EnableQueue();
        h.UnmaskFaultEvents();
        h.Submit(VtdHarness.WaitDesc(true, false, 1, Status), (lo, hi), VtdHarness.WaitDesc(true, false, 2, Status));
        Assert.True((h.Fsts & VtdRegs.FstsIqe) != 0, name);
        Assert.Equal(1UL << 4, h.Reg(VtdRegs.Iqh, 8));                      // the head is on the bad descriptor
        Assert.Equal(1u, h.ReadD(Status));                                   // the first one ran, the third did not
        var ev = Assert.Single(h.DrainInterrupts());                         // IQE is a fault-event condition
        Assert.Equal(VtdUnit.FaultEventVector, ev.Vector);
        // More tail writes do nothing while IQE is set.
        h.Submit(VtdHarness.WaitDesc(true, false, 3, Status));
        Assert.Equal(1u, h.ReadD(Status));
        // Software replaces the bad descriptor and clears IQE: the queue resumes from the head.
        h.WriteQ(h.Queue + 16, VtdHarness.WaitDesc(true, false, 9, Status + 4).Item1);
        h.WriteQ(h.Queue + 24, Status + 4);
        h.SetReg(VtdRegs.Fsts, 4, VtdRegs.FstsIqe);
        Assert.Equal(0u, h.Fsts);
        Assert.Equal(9u, h.ReadD(Status + 4));
        Assert.Equal(3u, h.ReadD(Status));
        Assert.Equal(h.Reg(VtdRegs.Iqt, 8), h.Reg(VtdRegs.Iqh, 8));
    }

    [Fact]
    public void TailBeyondTheQueueSetsIqe()
    {
        using var h = new VtdHarness();
        h.EnableQueue(qs: 0);                                  // 256 descriptors
        h.SetReg(VtdRegs.Iqt, 8, 256UL << 4);
        Assert.Equal(VtdRegs.FstsIqe, h.Fsts);
        Assert.Equal(0UL, h.Reg(VtdRegs.Iqh, 8));
        h.SetReg(VtdRegs.Iqt, 8, 0);
        h.SetReg(VtdRegs.Fsts, 4, VtdRegs.FstsIqe);
        Assert.Equal(0u, h.Fsts);
    }

    [Fact]
    public void QueueOutsideRamSetsIqe()
    {
        using var h = new VtdHarness();
        h.SetReg(VtdRegs.Iqa, 8, 0x4000_0000);
        h.SetPersistent(VtdRegs.GcmdQie, true);
        h.SetReg(VtdRegs.Iqt, 8, 1 << 4);
        Assert.Equal(VtdRegs.FstsIqe, h.Fsts);
    }

    [Fact]
    public void HeadWrapsAroundALargerQueueAndDisableResetsIt()
    {
        using var h = new VtdHarness();
        h.EnableQueue(qs: 1);                                  // 512 descriptors in 2 pages
        for (int round = 0; round < 3; round++)
        {
            var batch = Enumerable.Range(0, 200).Select(i => VtdHarness.WaitDesc(true, false, (uint)(round * 1000 + i), Status)).ToArray();
            h.Submit(batch);
            Assert.Equal((uint)(round * 1000 + 199), h.ReadD(Status));
        }
        Assert.Equal((600UL % 512) << 4, h.Reg(VtdRegs.Iqh, 8));
        Assert.Equal(0u, h.Fsts);
        h.SetPersistent(VtdRegs.GcmdQie, false);
        Assert.Equal(0UL, h.Reg(VtdRegs.Iqh, 8));
    }

    [Fact]
    public void TailWrittenBeforeEnableRunsWhenQueueIsEnabled()
    {
        using var h = new VtdHarness();
        ulong q = h.AllocPage();
        var (lo, hi) = VtdHarness.WaitDesc(true, false, 0x77, Status);
        h.WriteQ(q, lo);
        h.WriteQ(q + 8, hi);
        h.SetReg(VtdRegs.Iqa, 8, q);
        h.SetReg(VtdRegs.Iqt, 8, 1 << 4);
        Assert.Equal(0u, h.ReadD(Status));
        h.SetPersistent(VtdRegs.GcmdQie, true);
        Assert.Equal(0x77u, h.ReadD(Status));
    }
}
