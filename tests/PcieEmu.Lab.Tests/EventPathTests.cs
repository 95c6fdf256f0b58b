using PcieEmu.Core.Devices.VirtioNet;
using PcieEmu.Core.Events;
using static PcieEmu.Core.Devices.Igb.IgbRegs;

namespace PcieEmu.Lab.Tests;

/// <summary>The traps are transactions on the machine's event path, as any other subscriber (a trace) sees them.</summary>
public class EventPathTests
{
    private static List<MmioAccessEvent> TrappedAccesses(ModelRun run, ushort rid)
    {
        using var trace = run.Machine.Events.Subscribe(EventKinds.Mmio, e => e.Rid == rid);
        run.Run(10, 64);
        var list = new List<MmioAccessEvent>();
        while (trace.Reader.TryRead(out var e)) list.Add(Assert.IsType<MmioAccessEvent>(e));
        return list;
    }

    [Fact]
    public void Emulation_EachTrappedAccessIsAnMmioTransactionOfTheEmulatedNic()
    {
        using var run = new ModelRun(IoModel.Emulation, 1);
        var traps = TrappedAccesses(run, Vmm.EmulatedRid(0));
        Assert.Equal(["TDT", "RDT", "EICR", "EIMS"], traps.Select(t => t.Register));
        Assert.Equal([true, true, false, true], traps.Select(t => t.IsWrite));
        Assert.All(traps, t => Assert.Equal("VM0.emulated-nic", t.Function));
        Assert.Equal(Vmm.EmulatedBarGpa + TxLegacy + Tdt, traps[0].Address);
        Assert.Equal(10ul, traps[0].Value);   // the tail after 10 frames
    }

    [Fact]
    public void Paravirtual_TheOneTrapIsTheTransmitQueuesNotify()
    {
        using var run = new ModelRun(IoModel.Paravirtual, 1);
        ushort rid = run.Accounting.TrapFunctions.Single();
        var trap = Assert.Single(TrappedAccesses(run, rid));
        Assert.True(trap.IsWrite);
        Assert.Equal(VirtioNetFunction.VirtioBar, trap.Bar);
        Assert.Equal(1ul, trap.Value);   // queue 1: transmit
        Assert.InRange(trap.Offset, VirtioNetFunction.NotifyOffset, VirtioNetFunction.NotifyOffset + 0xFFF);
    }
}
