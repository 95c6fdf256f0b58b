using PcieEmu.Core.Events;
using PcieEmu.Core.Interrupts;
using PcieEmu.Core.Iommu;
using PcieEmu.Core.Memory;
using PcieEmu.Core.Tests.Devices.Igb;
using PcieEmu.Core.Tests.Iommu;
using static PcieEmu.Core.Devices.Igb.IgbRegs;

namespace PcieEmu.Core.Tests.Events;

public class EventBusTests
{
    private static List<MachineEvent> Drain(EventSubscription<MachineEvent> s)
    {
        var l = new List<MachineEvent>();
        while (s.Reader.TryRead(out var e)) l.Add(e);
        return l;
    }

    [Fact]
    public void NothingIsWantedWithoutSubscribersAndKindsFollowSubscriptions()
    {
        var bus = new EventBus();
        Assert.Equal(EventKinds.None, bus.ActiveKinds);
        Assert.False(bus.Wants(EventKind.Mmio));
        var a = bus.Subscribe(EventKinds.Mmio | EventKinds.Dma);
        var b = bus.Subscribe(EventKinds.Config);
        Assert.True(bus.Wants(EventKind.Mmio));
        Assert.True(bus.Wants(EventKind.Config));
        Assert.False(bus.Wants(EventKind.Frame));
        a.Dispose();
        Assert.False(bus.Wants(EventKind.Mmio));
        b.Dispose();
        Assert.Equal(EventKinds.None, bus.ActiveKinds);
        Assert.Equal(0, bus.SubscriberCount);
    }

    [Fact]
    public void ASlowSubscriberGetsAGapEventWithTheCountAndTheOthersEverything()
    {
        var bus = new EventBus();
        using var slow = bus.Subscribe(EventKinds.Lifecycle, capacity: 4);
        using var fast = bus.Subscribe(EventKinds.Lifecycle, capacity: 100);
        for (int i = 0; i < 10; i++) bus.Publish(new LifecycleEvent((ushort)i, LifecycleChange.FunctionLevelReset, $"F{i}"));
        // The slow one reads 2 of its 4; two more arrive: they are lost too.
        Assert.True(slow.Reader.TryRead(out var e0));
        Assert.True(slow.Reader.TryRead(out _));
        Assert.Equal(0, e0.Rid);
        Assert.Equal(6, slow.Missed);
        // Room again: the next event is preceded by the gap (6 lost), then it fits.
        bus.Publish(new LifecycleEvent(10, LifecycleChange.FunctionLevelReset, "F10"));
        var next = Drain(slow);
        Assert.Equal([2, 3, 0, 10], next.Select(e => (int)e.Rid));
        Assert.Equal(6, Assert.IsType<GapEvent>(next[2]).Missed);
        // A loss that nothing follows is reported once the queue is drained.
        for (int i = 0; i < 10; i++) bus.Publish(new LifecycleEvent(20, LifecycleChange.FunctionLevelReset, "F20"));
        var tail = Drain(slow);
        Assert.Equal(5, tail.Count);
        Assert.Equal(6, Assert.IsType<GapEvent>(tail[4]).Missed);
        Assert.False(slow.Reader.TryRead(out _));
        var all = Drain(fast);
        Assert.Equal(21, all.Count);
        Assert.Equal(0, fast.Missed);
        Assert.True(all.Zip(all.Skip(1)).All(p => p.First.Sequence < p.Second.Sequence));
    }

    [Fact]
    public async Task InterruptStreamIsAViewThatCutsOffAnOverflowingSubscriber()
    {
        using var m = TestMachine.Create();
        using var small = m.Interrupts.Subscribe(null, capacity: 2);
        using var onlyPf1 = m.Interrupts.Subscribe([TestMachine.Pf1]);
        Assert.Equal(2, m.Interrupts.SubscriberCount);
        Assert.True(m.Events.Wants(EventKind.Msi));
        Assert.False(m.Events.Wants(EventKind.Config));     // the interrupt view turns on nothing else
        for (int i = 0; i < 3; i++) m.Interrupts.Publish(TestMachine.Pf0, InterruptKind.Msix, 0xFEE0_0000, 0x40, 0);
        m.Interrupts.Publish(TestMachine.Pf1, InterruptKind.Msi, 0xFEE0_0000, 0x41, 0);
        Assert.True(small.Reader.TryRead(out var e1));
        Assert.Equal(1UL, e1.Sequence);
        Assert.True(small.Reader.TryRead(out _));
        var ex = await Assert.ThrowsAsync<InterruptOverflowException>(async () =>
            await small.Reader.WaitToReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(1, ex.Missed);
        Assert.True(onlyPf1.Reader.TryRead(out var p1));
        Assert.Equal(TestMachine.Pf1, p1.Rid);
        Assert.Equal(4UL, p1.Sequence);                      // the interrupt stream keeps its own numbering
        Assert.False(onlyPf1.Reader.TryRead(out _));
    }

    [Fact]
    public void ConfigEventsNameTheRegisterAndTheFieldsThatChanged()
    {
        using var m = TestMachine.Create();
        using var sub = m.Events.Subscribe(EventKinds.Config | EventKinds.Lifecycle);
        m.EnableVfs(TestMachine.Pf0, 2);
        m.Read(TestMachine.Pf0, 0x00, 2);
        var ev = Drain(sub);
        var numVfs = Assert.IsType<ConfigAccessEvent>(ev[0]);
        Assert.Equal("SR-IOV NumVFs", numVfs.Register);
        var ctl = Assert.IsType<ConfigAccessEvent>(ev[1]);
        Assert.Equal("SR-IOV Control", ctl.Register);
        Assert.Equal("VF Enable 0->1, VF MSE 0->1", ctl.Fields);
        // The VFs appear after the write that enabled them, in the order of the write's effects.
        var appeared = ev.OfType<LifecycleEvent>().ToList();
        Assert.Equal(2, appeared.Count);
        Assert.All(appeared, a => Assert.Equal(LifecycleChange.VfAppeared, a.Change));
        var read = Assert.IsType<ConfigAccessEvent>(ev[^1]);
        Assert.Equal("Vendor ID", read.Register);
        Assert.Equal(0x8086u, read.Value);
    }

    [Fact]
    public void MmioEventsCarryTheRegisterNameAndTheOldValue()
    {
        using var rig = new NicRig(vfs: 1);
        using var sub = rig.M.Events.Subscribe(EventKinds.Mmio);
        rig.VfWrite(0, TxLegacy + Tdlen, 0x400);
        rig.PfRead(Status);
        var ev = Drain(sub).Cast<MmioAccessEvent>().ToList();
        Assert.Equal(2, ev.Count);
        Assert.True(ev[0].IsWrite);
        Assert.Equal(rig.VfRid(0), ev[0].Rid);
        Assert.NotNull(ev[0].Register);
        Assert.StartsWith("TDLEN", ev[0].Register, StringComparison.Ordinal);
        Assert.Equal(0x400UL, ev[0].Value);
        Assert.False(ev[1].IsWrite);
        Assert.Equal("STATUS", ev[1].Register);
    }

    [Fact]
    public void DmaEventsShowTranslationAndFaultsAndIommuFaultsAreEvents()
    {
        using var h = new VtdHarness();
        const ushort rid = 0x0100;
        ulong top = h.NewDomain(rid, did: 1);
        h.Map(top, 0x4000_2000, VtdHarness.DataBase, read: true, write: false);
        h.Function(rid).WriteConfig(0x04, 2, 0x6);   // MSE | BME
        h.Enable();
        using var sub = h.M.Events.Subscribe(EventKinds.Dma | EventKinds.Iommu);
        Assert.True(h.DmaRead(rid, 0x4000_2000, new byte[16]).Ok);
        Assert.Equal(DmaStatus.TranslationFault, h.TryDmaWrite(rid, 0x4000_2000).Status);
        var ev = Drain(sub);
        var ok = Assert.IsType<DmaEvent>(ev[0]);
        Assert.Equal((0x4000_2000UL, VtdHarness.DataBase, 16), (ok.Iova, ok.Translated, ok.Length));
        var fault = Assert.IsType<IommuFaultEvent>(ev[1]);
        Assert.Equal(VtdFaultReason.WriteNotPermitted, fault.Reason);
        var failed = Assert.IsType<DmaEvent>(ev[2]);
        Assert.Equal(DmaStatus.TranslationFault, failed.Result.Status);
        Assert.Equal(rid, failed.Rid);
        Assert.Contains("FAULT", TraceFormat.Body(failed), StringComparison.Ordinal);
    }

    [Fact]
    public void TraceRecorderWritesLinesAndStopsOnAWriteError()
    {
        var bus = new EventBus();
        var ms = new MemoryStream();
        using (var rec = new TraceRecorder(bus, ms))
            for (int i = 0; i < 100; i++) bus.Publish(new LifecycleEvent((ushort)i, LifecycleChange.FunctionLevelReset, $"F{i}"));
        var lines = System.Text.Encoding.UTF8.GetString(ms.ToArray()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(100, lines.Length);
        Assert.True(TraceFormat.TryParseLine(lines[5], out _, out var r, out var token, out var body));
        Assert.Equal((ushort)5, r);
        Assert.Equal("LIFE", token);
        Assert.Equal("FLR F5", body);

        Exception? error = null;
        using var done = new ManualResetEventSlim();
        var failing = new TraceRecorder(bus, new FailingStream(), onError: e => { error = e; done.Set(); });
        for (int i = 0; i < 100_000 && !done.IsSet; i++) bus.Publish(new LifecycleEvent(1, LifecycleChange.FunctionLevelReset, "F"));
        Assert.True(done.Wait(TimeSpan.FromSeconds(10)));
        Assert.IsType<IOException>(error);
        Assert.True(failing.Failed);
        bus.Publish(new LifecycleEvent(1, LifecycleChange.FunctionLevelReset, "F"));   // the machine goes on
        failing.Dispose();
        Assert.Equal(0, bus.SubscriberCount);
    }

    private sealed class FailingStream : Stream
    {
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => 0;
        public override long Position { get => 0; set { } }
        public override void Flush() => throw new IOException("disk full");
        public override Task FlushAsync(CancellationToken cancellationToken) => throw new IOException("disk full");
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new IOException("disk full");
    }
}
