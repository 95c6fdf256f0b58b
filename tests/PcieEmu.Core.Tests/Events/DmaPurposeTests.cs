using PcieEmu.Core.Events;
using PcieEmu.Core.Memory;
using PcieEmu.Core.Tests.Devices.Igb;
using PcieEmu.Core.Tests.Devices.VirtioNet;
using static PcieEmu.Core.Devices.VirtioNet.VirtioRegs;

namespace PcieEmu.Core.Tests.Events;

/// <summary>DMA events say what the device read or wrote; the trace line shows it.</summary>
public class DmaPurposeTests
{
    [Theory]
    [InlineData(DmaUse.TxDescriptor, 0, 7u, 16, "TX q0 desc 7")]
    [InlineData(DmaUse.TxDescriptor, 1, 4u, 64, "TX q1 desc 4-7")]
    [InlineData(DmaUse.TxBuffer, 0, 7u, 1514, "TX q0 buffer, desc 7")]
    [InlineData(DmaUse.TxWriteBack, 0, 7u, 4, "TX q0 desc 7 write-back")]
    [InlineData(DmaUse.TxHeadWriteBack, 3, DmaPurpose.NoIndex, 4, "TX q3 head write-back")]
    [InlineData(DmaUse.RxDescriptor, 1, 0u, 112, "RX q1 desc 0-6")]
    [InlineData(DmaUse.RxBuffer, 1, 2u, 64, "RX q1 buffer, desc 2")]
    [InlineData(DmaUse.RxWriteBack, 1, 2u, 16, "RX q1 desc 2 write-back")]
    [InlineData(DmaUse.VirtqDescriptor, 1, 5u, 16, "vq1 desc 5")]
    [InlineData(DmaUse.VirtqIndirect, 1, DmaPurpose.NoIndex, 64, "vq1 indirect table")]
    [InlineData(DmaUse.VirtqAvail, 0, DmaPurpose.NoIndex, 2, "vq0 avail ring")]
    [InlineData(DmaUse.VirtqAvail, 0, 3u, 4, "vq0 avail ring [3]")]
    [InlineData(DmaUse.VirtqUsed, 2, 0u, 8, "vq2 used ring [0]")]
    [InlineData(DmaUse.VirtqEventSuppression, 0, DmaPurpose.NoIndex, 4, "vq0 event suppression")]
    [InlineData(DmaUse.VirtqBuffer, 0, DmaPurpose.NoIndex, 1526, "vq0 buffer")]
    public void PurposeFormats(DmaUse use, int queue, uint index, int length, string expected)
    {
        var p = new DmaPurpose(use, (ushort)queue, index);
        Assert.True(p.IsKnown);
        Assert.Equal(expected, p.AppendTo(new System.Text.StringBuilder(), length).ToString());
    }

    [Fact]
    public void UnsaidPurposeAddsNothingToTheLine()
    {
        Assert.False(default(DmaPurpose).IsKnown);
        var e = new DmaEvent(0x0100, false, 0x1000, 0x1000, 16, new DmaResult(DmaStatus.Ok, 16));
        Assert.EndsWith("16 B", TraceFormat.Body(e), StringComparison.Ordinal);
        var p = new DmaEvent(0x0100, false, 0x1000, 0x1000, 16, new DmaResult(DmaStatus.Ok, 16)) { Purpose = new DmaPurpose(DmaUse.TxDescriptor, 0, 7) };
        Assert.EndsWith("16 B (TX q0 desc 7)", TraceFormat.Body(p), StringComparison.Ordinal);
    }

    [Fact]
    public void BlockedDmaKeepsItsPurpose()
    {
        var e = new DmaEvent(0x0100, false, 0x1000, 0, 16, new DmaResult(DmaStatus.BusMasterDisabled, 0)) { Purpose = new DmaPurpose(DmaUse.RxDescriptor, 0, 0) };
        Assert.Equal("R  iova 0x0000_1000 16 B (RX q0 desc 0)  BLOCKED: Bus Master Enable is clear", TraceFormat.Body(e));
    }

    [Fact]
    public void IgbQueuesNameEveryDmaTheyMakeInTheOwnersQueueNumbers()
    {
        using var rig = new NicRig();
        var dmas = GoldenTraceTests.RunScenario(rig).OfType<DmaEvent>().Where(d => d.Message == null).ToList();
        Assert.NotEmpty(dmas);
        Assert.All(dmas, d => Assert.True(d.Purpose.IsKnown, TraceFormat.Line(d)));
        // VF0 transmits on its queue 0 (PF queue 0); VF1 receives on its queue 0 (PF queue 1).
        Assert.Contains(dmas, d => d.Rid == rig.VfRid(0) && d.Purpose == new DmaPurpose(DmaUse.TxDescriptor, 0, 0));
        Assert.Contains(dmas, d => d.Rid == rig.VfRid(0) && d.Purpose == new DmaPurpose(DmaUse.TxBuffer, 0, 0));
        Assert.Contains(dmas, d => d.Rid == rig.VfRid(0) && d.Purpose == new DmaPurpose(DmaUse.TxWriteBack, 0, 0));
        Assert.Contains(dmas, d => d.Rid == rig.VfRid(1) && d.Purpose == new DmaPurpose(DmaUse.RxDescriptor, 0, 0));
        Assert.Contains(dmas, d => d.Rid == rig.VfRid(1) && d.Purpose == new DmaPurpose(DmaUse.RxBuffer, 0, 0));
        Assert.Contains(dmas, d => d.Rid == rig.VfRid(1) && d.Purpose == new DmaPurpose(DmaUse.RxWriteBack, 0, 0));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void VirtioRingsNameEveryDmaTheyMake(bool packed)
    {
        using var d = new VirtioTestDriver();
        d.BringUp(VirtioNetDataPathTests.Std | (packed ? Bit(FRingPacked) : 0), packed: packed);
        var rx = d.Queues[0];
        var tx = d.Queues[1];
        d.PostRx(rx, 4);
        using var sub = d.M.Events.Subscribe(EventKinds.Dma, capacity: 1 << 12);
        d.Send(tx, VirtioTestDriver.Frame(VirtioTestDriver.Mac(9), VirtioTestDriver.Mac(1)));
        Assert.Equal(1, d.Dev.InjectFrame(VirtioTestDriver.Frame(VirtioTestDriver.Mac(1), VirtioTestDriver.Mac(9), 100)));
        var dmas = new List<DmaEvent>();
        while (sub.Reader.TryRead(out var e)) if (e is DmaEvent { Message: null } x) dmas.Add(x);
        Assert.NotEmpty(dmas);
        Assert.All(dmas, x => Assert.True(x.Purpose.IsKnown, TraceFormat.Line(x)));
        var uses = dmas.Select(x => (x.Purpose.Use, (int)x.Purpose.Queue)).ToHashSet();
        Assert.Contains((DmaUse.VirtqDescriptor, 1), uses);     // tx0's chain
        Assert.Contains((DmaUse.VirtqBuffer, 1), uses);         // the frame read
        Assert.Contains((DmaUse.VirtqUsed, 1), uses);           // tx0 completes it
        Assert.Contains((DmaUse.VirtqDescriptor, 0), uses);     // rx0's buffer
        Assert.Contains((DmaUse.VirtqBuffer, 0), uses);         // the frame written
        Assert.Contains((DmaUse.VirtqUsed, 0), uses);
        if (!packed) Assert.Contains((DmaUse.VirtqAvail, 1), uses);
        Assert.Contains(dmas, x => TraceFormat.Body(x).EndsWith(" (vq1 buffer)", StringComparison.Ordinal));
    }
}
