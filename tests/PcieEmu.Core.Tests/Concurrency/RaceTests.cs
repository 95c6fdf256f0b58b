using System.Buffers.Binary;
using Microsoft.Extensions.Time.Testing;
using PcieEmu.Core.Interrupts;
using PcieEmu.Core.Iommu;
using PcieEmu.Core.Platform;
using PcieEmu.Core.Tests.Devices.Igb;
using PcieEmu.Core.Tests.Iommu;
using static PcieEmu.Core.Devices.Igb.IgbRegs;

namespace PcieEmu.Core.Tests.Concurrency;

/// <summary>
/// Races between the machine's entry points, as separate clients would make them: every thread
/// calls the machine's public transactions (config, MMIO, memory, frame injection, reset, clock)
/// and none holds the machine lock. Each test asserts invariants, never timings; every loop has a
/// fixed iteration count and every wait a deadline, so a hang or a livelock is a failure.
/// </summary>
public class RaceTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);
    private const int SriovCtl = NicRig.SriovCap + 0x08, NumVfs = NicRig.SriovCap + 0x10;

    /// <summary>Interrupt-sequence windows during which a set of routing IDs had no function.</summary>
    private sealed class VanishedWindows(InterruptHub hub)
    {
        private readonly List<(ulong After, ulong Before, ushort[] Rids)> _windows = [];
        private ulong _openedAt;

        /// <summary>Call right after the functions are gone (the write that removed them returned).</summary>
        public void Opened() => _openedAt = hub.Published;

        /// <summary>Call right before the write that brings them back.</summary>
        public void Closed(params ushort[] rids)
        {
            lock (_windows) _windows.Add((_openedAt, hub.Published, rids));
        }

        /// <summary>Events from a vanished function: published strictly after the removal completed
        /// and at or before the re-creation started.</summary>
        public List<string> Violations(IEnumerable<InterruptEvent> events)
        {
            var bad = new List<string>();
            foreach (var e in events)
                foreach (var (after, before, rids) in _windows)
                    if (e.Sequence > after && e.Sequence <= before && rids.Contains(e.Rid))
                        bad.Add($"event #{e.Sequence} from 0x{e.Rid:X4} while it did not exist (window {after}..{before})");
            return bad;
        }
    }

    private static List<InterruptEvent> DrainAll(InterruptSubscription sub)
    {
        var list = new List<InterruptEvent>();
        while (sub.Reader.TryRead(out var e)) list.Add(e);
        Assert.Equal(0, sub.Missed);
        return list;
    }

    /// <summary>A thread of its own (not a pool thread), so every racer starts at once.</summary>
    private static Task Spawn(Action body) =>
        Task.Factory.StartNew(body, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    private static void Mmio(Machine m, ulong address, uint value) => m.WriteMmio(address, 4, value);   // status ignored: the target may be gone

    /// <summary>VF1 of <paramref name="rig"/> as its driver sets it up: an RX ring, MSI-X, RX0 → vector 0, EITR interval.</summary>
    private static void SetUpVf1(NicRig rig, uint eitrMicros)
    {
        rig.VfRx(1, count: 16);
        rig.EnableMsix(rig.VfRid(1), rig.VfBar3(1), 3);
        rig.VfWrite(1, Ivar0, 0x80);
        rig.VfWrite(1, Eiac, 1);
        rig.VfWrite(1, Eitr, eitrMicros << 2);
        rig.VfWrite(1, Eims, 1);
    }

    [Fact]
    public async Task VfEnableDisableRacesWithMmioFramesAndModerationTimers()
    {
        var clock = new FakeTimeProvider();
        using var rig = new NicRig(vfs: 0, time: clock);
        rig.SetupVmdq(4);
        var m = rig.M;
        // VF BAR apertures are fixed by the PF's VF BARs: the addresses stay valid while VFs come and go.
        rig.EnableVfs(4);
        ulong vf1Bar0 = rig.VfBar0(1);
        ushort[] vfRids = [rig.VfRid(0), rig.VfRid(1), rig.VfRid(2), rig.VfRid(3)];
        m.Write(NicRig.Pf0, SriovCtl, 2, 0);
        m.Write(NicRig.Pf0, NumVfs, 2, 0);
        using var sub = m.Interrupts.Subscribe(vfRids, capacity: 1 << 20);
        var windows = new VanishedWindows(m.Interrupts);
        windows.Opened();
        var frame = NicRig.Frame(NicRig.Mac(1), [0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
        int running = 1;
        const int Cycles = 25;

        var toggler = Spawn(() =>
        {
            for (int c = 0; c < Cycles; c++)
            {
                windows.Closed(vfRids);
                rig.EnableVfs(4);
                SetUpVf1(rig, eitrMicros: 200);
                for (int i = 0; i < 20; i++) Mmio(m, vf1Bar0 + Eics, 1);   // causes: some sent, some held by EITR
                m.Write(NicRig.Pf0, SriovCtl, 2, 0);                        // VF Enable off: VFs vanish
                windows.Opened();
                m.Write(NicRig.Pf0, NumVfs, 2, 0);
            }
            Volatile.Write(ref running, 0);
        });
        var hammers = new List<Task> { toggler };
        // MMIO to the VF's registers and MSI-X table, whether or not the VF exists.
        hammers.Add(Spawn(() =>
        {
            for (int i = 0; i < 200_000 && Volatile.Read(ref running) == 1; i++)
            {
                m.ReadMmio(vf1Bar0 + Eicr, 4);
                Mmio(m, vf1Bar0 + Eics, 1);
                Mmio(m, vf1Bar0 + Vmbmem, (uint)i);
                m.ReadMmio(vf1Bar0 + Status, 4);
            }
        }));
        // Frames from the wire for VF1's MAC.
        for (int t = 0; t < 2; t++)
            hammers.Add(Spawn(() =>
            {
                for (int i = 0; i < 200_000 && Volatile.Read(ref running) == 1; i++) rig.Nic.InjectFrame(frame);
            }));
        // The clock: moderation intervals end here, and their timers fire on this thread (each
        // takes the machine lock), for VFs that may have vanished since the cause was held.
        hammers.Add(Spawn(() =>
        {
            for (int i = 0; i < 1_000_000 && Volatile.Read(ref running) == 1; i++) clock.Advance(TimeSpan.FromMicroseconds(50));
        }));
        await Task.WhenAll(hammers).WaitAsync(Deadline);
        clock.Advance(TimeSpan.FromSeconds(1));   // whatever is still held fires now, with the VFs gone
        windows.Closed(vfRids);

        var events = DrainAll(sub);
        Assert.NotEmpty(events);
        var bad = windows.Violations(events);
        Assert.True(bad.Count == 0, string.Join("\n", bad.Take(20)));

        // Afterwards the machine works: VFs back, a frame to VF1 is received and signalled.
        rig.EnableVfs(4);
        SetUpVf1(rig, eitrMicros: 0);
        Assert.Equal(1, rig.Nic.InjectFrame(frame));
        Assert.Contains(DrainAll(sub), e => e.Rid == rig.VfRid(1) && e.Vector == 0);
    }

    [Fact]
    public async Task FlrCtrlResetAndPlatformResetDuringLiveTraffic()
    {
        var m = TestMachine.Create();
        using var _ = m;
        NicRig rig = new(m, vfs: 2, ramStart: 0x10_0000, ownsMachine: false);
        NicRig.Ring tx = null!;
        void SetUp()
        {
            rig.SetupVmdq(2);
            tx = rig.VfTx(0);
            rig.VfRx(1);
            for (int i = 0; i < 32; i++) rig.PostAdv(tx, NicRig.Frame(NicRig.Mac(1), NicRig.Mac(0), 64, (byte)i), kick: false);
        }
        SetUp();
        ulong vf0Bar0 = rig.VfBar0(0);
        ushort[] vfRids = [rig.VfRid(0), rig.VfRid(1)];
        using var sub = m.Interrupts.Subscribe(vfRids, capacity: 1 << 20);
        var windows = new VanishedWindows(m.Interrupts);
        var frame = NicRig.Frame(NicRig.Mac(1), [0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
        var port = rig.Nic;                     // replaced after a platform reset (new PF objects)
        int running = 1;

        var resetter = Spawn(() =>
        {
            for (int c = 0; c < 12; c++)
            {
                switch (c % 3)
                {
                    case 0:   // PF FLR: VFs vanish, BAR0/Command reset; the driver restores them
                        m.Write(NicRig.Pf0, NicRig.PcieCap + 8, 2, 0x8000);
                        windows.Opened();
                        m.Write(NicRig.Pf0, 0x10, 4, (uint)rig.PfBar0);
                        m.Write(NicRig.Pf0, 0x04, 2, 0x6);
                        windows.Closed(vfRids);
                        rig.EnableVfs(2);
                        SetUp();
                        break;
                    case 1:   // CTRL.RST: every NIC register to reset, rings gone; VFs stay
                        rig.PfWrite(Ctrl, CtrlRst);
                        SetUp();
                        break;
                    default:  // platform reset: everything rebuilt and re-enumerated, RAM cleared
                        m.Reset();
                        windows.Opened();
                        rig = new NicRig(m, vfs: 0, ramStart: 0x10_0000, ownsMachine: false);
                        Volatile.Write(ref port, rig.Nic);
                        windows.Closed(vfRids);
                        rig.EnableVfs(2);
                        SetUp();
                        break;
                }
            }
            Volatile.Write(ref running, 0);
        });
        var tasks = new List<Task> { resetter };
        for (int t = 0; t < 2; t++)
            tasks.Add(Spawn(() =>
            {
                for (int i = 0; i < 200_000 && Volatile.Read(ref running) == 1; i++) Volatile.Read(ref port).InjectFrame(frame);
            }));
        tasks.Add(Spawn(() =>
        {
            // VF0's doorbell: the 32 posted frames go round and round (to VF1, switched locally).
            for (uint i = 1; i < 400_000 && Volatile.Read(ref running) == 1; i++) Mmio(m, vf0Bar0 + TxLegacy + Tdt, i % 32);
        }));
        await Task.WhenAll(tasks).WaitAsync(Deadline);

        var bad = windows.Violations(DrainAll(sub));
        Assert.True(bad.Count == 0, string.Join("\n", bad.Take(20)));
        // The machine still works end to end.
        var rx = rig.VfRx(1, count: 8);
        uint head = rx.Head;
        var f = NicRig.Frame(NicRig.Mac(1), NicRig.Mac(0));
        var tx2 = rig.VfTx(0, q: 1);
        rig.PostAdv(tx2, f);
        Assert.Equal(head + 1, rx.Head);
        Assert.Equal(f, rig.ReadRam(rx.Buffers[head], f.Length));
    }

    [Fact]
    public async Task NoStaleTranslationIsUsedAfterAnInvalidationCompletes()
    {
        const ulong Tables = 0xC0_0000, Iova = 0x4000_0000;
        using var rig = new NicRig(vfs: 2);
        rig.SetupVmdq(2);
        var m = rig.M;
        // VF1's RX ring: 256 legacy descriptors (the write-back leaves the buffer address), every
        // buffer at the same IOVA page, which the test maps to page k, then unmaps, round after
        // round, while frames arrive and a driver thread keeps the ring open.
        const int Count = 256;
        ulong ring = rig.Alloc(Count * 16);
        var pages = Enumerable.Range(0, 8).Select(_ => rig.Alloc(4096)).ToArray();
        ulong status = rig.Alloc(4096);
        var desc = new byte[Count * 16];
        for (int i = 0; i < Count; i++) BinaryPrimitives.WriteUInt64LittleEndian(desc.AsSpan(i * 16), Iova);
        m.WriteMemory(ring, desc);

        using var h = new VtdHarness(m, Tables);
        h.Enable();
        ulong top = h.NewDomain(rig.VfRid(1), did: 2);
        for (ulong a = 0; a < Tables; a += 0x20_0000) h.Map(top, a, a, pageLevel: 2);   // rings: identity
        ulong leaf = h.Map(top, Iova, pages[0]);
        h.WriteQ(leaf, 0);                                                               // start unmapped
        h.EnableQueue();

        uint block = RxLegacy;
        rig.VfWrite(1, block + Rdbal, (uint)ring);
        rig.VfWrite(1, block + Rdbah, 0);
        rig.VfWrite(1, block + Rdlen, Count * 16);
        rig.VfWrite(1, block + Srrctl, 2);
        rig.VfWrite(1, block + Rdh, 0);
        rig.VfWrite(1, block + Rdt, 0);
        rig.VfWrite(1, block + Rxdctl, QueueEnable);
        rig.VfWrite(1, block + Rdt, Count - 1);

        var marker = Enumerable.Repeat((byte)0x5A, 4096).ToArray();
        uint waitData = 0;
        void InvalidateAndWait()
        {
            uint token = ++waitData;
            h.Submit(VtdHarness.IotlbDesc(2, did: 2), VtdHarness.WaitDesc(sw: true, iflag: false, data: token, addr: status));
            var until = DateTime.UtcNow + Deadline;
            while (h.ReadD(status) != token)
            {
                Assert.True(DateTime.UtcNow < until, "invalidation wait descriptor never completed");
                Thread.Yield();
            }
        }

        int running = 1;
        var frame = NicRig.Frame(NicRig.Mac(1), [0x00, 0x11, 0x22, 0x33, 0x44, 0x55], 256, 0xC3);
        // Racers yield now and then so the remapping thread gets the lock too (Lock is not fair);
        // the caps only bound the run if the remapping thread fails.
        var racers = Enumerable.Range(0, 2).Select(_ => Spawn(() =>
        {
            for (int i = 0; i < 2_000_000 && Volatile.Read(ref running) == 1; i++)
            {
                rig.Nic.InjectFrame(frame);
                if ((i & 7) == 0) Thread.Yield();
            }
        })).ToList();
        racers.Add(Spawn(() =>
        {
            // The driver: gives every used descriptor back (RDT one behind RDH).
            for (int i = 0; i < 2_000_000 && Volatile.Read(ref running) == 1; i++)
            {
                uint head = (uint)m.ReadMmio(rig.VfBar0(1) + block + Rdh, 4).Value;
                m.WriteMmio(rig.VfBar0(1) + block + Rdt, 4, (head + Count - 1) % Count);
                Thread.Yield();
            }
        }));
        long landed = 0;
        var remapper = Spawn(() =>
        {
            try
            {
                foreach (var page in pages)
                {
                    h.WriteQ(leaf, page | 3);            // map IOVA → page
                    InvalidateAndWait();
                    // Let a few frames land in the page (the ring wraps, so count the head's moves).
                    var until = DateTime.UtcNow + Deadline;
                    for (uint last = rig.VfRead(1, block + Rdh), moves = 0; moves < 5;)
                    {
                        Assert.True(DateTime.UtcNow < until, "no frame landed while the page was mapped");
                        uint now = rig.VfRead(1, block + Rdh);
                        if (now != last) { moves++; last = now; }
                        else Thread.Yield();
                    }
                    Interlocked.Increment(ref landed);
                    h.WriteQ(leaf, 0);                   // unmap, invalidate, wait for completion
                    InvalidateAndWait();
                    m.WriteMemory(page, marker);         // from here on no DMA may reach the page
                }
            }
            finally
            {
                Volatile.Write(ref running, 0);
            }
        });
        // Longer than the remapping thread's own deadlines, so its message is the one reported.
        await Task.WhenAll([.. racers, remapper]).WaitAsync(Deadline * 2);

        foreach (var page in pages)
            Assert.True(marker.AsSpan().SequenceEqual(rig.ReadRam(page, 4096)), $"page 0x{page:X} was written after its unmapping was invalidated");
        Assert.Equal(pages.Length, Interlocked.Read(ref landed));   // every round saw traffic while mapped
    }

    [Fact]
    public async Task MailboxBufferOwnershipIsExclusive()
    {
        using var rig = new NicRig(vfs: 2);
        rig.SetupVmdq(2);
        var m = rig.M;
        var owners = new int[2];
        var violations = new List<string>();
        long pfHeld = 0, vfHeld = 0;

        void Critical(int vf, uint pattern, string who)
        {
            if (Interlocked.Increment(ref owners[vf]) != 1) lock (violations) violations.Add($"{who}: buffer {vf} had another owner");
            for (uint w = 0; w < 16; w++) rig.PfWrite(Vmbmem + 64u * (uint)vf + 4 * w, pattern + w);
            for (uint w = 0; w < 16; w++)
            {
                uint v = rig.PfRead(Vmbmem + 64u * (uint)vf + 4 * w);
                if (v != pattern + w) lock (violations) violations.Add($"{who}: word {w} of buffer {vf} changed under its owner ({v:X8})");
            }
            Interlocked.Decrement(ref owners[vf]);
        }

        var tasks = new List<Task>();
        for (int vf = 0; vf < 2; vf++)
        {
            int n = vf;
            tasks.Add(Spawn(() =>
            {
                for (int i = 0; i < 3000; i++)
                {
                    rig.PfWrite(P2vMailbox + 4u * (uint)n, P2vPfu);                           // try to take the buffer
                    if ((rig.PfRead(P2vMailbox + 4u * (uint)n) & P2vPfu) == 0) continue;    // the VF holds it
                    Interlocked.Increment(ref pfHeld);
                    Critical(n, 0x1000_0000u + (uint)i * 16, "PF");
                    rig.PfWrite(P2vMailbox + 4u * (uint)n, 0);                                // release
                    Thread.Yield();
                }
            }));
            tasks.Add(Spawn(() =>
            {
                for (int i = 0; i < 3000; i++)
                {
                    rig.VfWrite(n, VfMailbox, VfmbVfu);
                    if ((rig.VfRead(n, VfMailbox) & VfmbVfu) == 0) continue;                  // the PF holds it
                    Interlocked.Increment(ref vfHeld);
                    Critical(n, 0x2000_0000u + (uint)i * 16, $"VF{n}");
                    rig.VfWrite(n, VfMailbox, 0);
                    Thread.Yield();
                }
            }));
        }
        await Task.WhenAll(tasks).WaitAsync(Deadline);
        Assert.True(violations.Count == 0, string.Join("\n", violations.Take(20)));
        Assert.True(pfHeld + vfHeld > 0);
        for (int vf = 0; vf < 2; vf++)
        {
            Assert.Equal(0u, rig.PfRead(P2vMailbox + 4u * (uint)vf) & (P2vPfu | P2vVfu));   // all released
            // And each side is refused while the other holds the buffer (whichever won above).
            rig.VfWrite(vf, VfMailbox, VfmbVfu);
            rig.PfWrite(P2vMailbox + 4u * (uint)vf, P2vPfu);
            Assert.Equal(P2vVfu, rig.PfRead(P2vMailbox + 4u * (uint)vf) & (P2vPfu | P2vVfu));
            rig.VfWrite(vf, VfMailbox, 0);
            rig.PfWrite(P2vMailbox + 4u * (uint)vf, P2vPfu);
            rig.VfWrite(vf, VfMailbox, VfmbVfu);
            Assert.Equal(VfmbPfu, rig.VfRead(vf, VfMailbox) & (VfmbPfu | VfmbVfu));
            rig.PfWrite(P2vMailbox + 4u * (uint)vf, 0);
        }
    }

    [Fact]
    public async Task EveryRxInterruptIsObservedAfterItsWriteBackIsInRam()
    {
        using var rig = new NicRig(vfs: 2);
        rig.SetupVmdq(2);
        const int Injectors = 4, PerInjector = 200, Total = Injectors * PerInjector;
        var rx = rig.VfRx(1, count: 1024);
        rig.EnableMsix(rig.VfRid(1), rig.VfBar3(1), 3);
        rig.VfWrite(1, Ivar0, 0x80);      // RX0 → vector 0
        rig.VfWrite(1, Eiac, 1);          // auto-clear, no auto-mask: one message per frame
        rig.VfWrite(1, Eims, 1);
        using var sub = rig.M.Interrupts.Subscribe([rig.VfRid(1)], capacity: 4 * Total);
        var frame = NicRig.Frame(NicRig.Mac(1), [0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);

        var injectors = Enumerable.Range(0, Injectors).Select(_ => Spawn(() =>
        {
            for (int i = 0; i < PerInjector; i++) Assert.Equal(1, rig.Nic.InjectFrame(frame));
        })).ToList();
        var observer = Spawn(() =>
        {
            // A driver's interrupt handler on its own CPU: takes each message the moment it is
            // queued (spinning, no await latency) and looks at the ring in RAM.
            var d = new byte[16];
            var until = DateTime.UtcNow + Deadline;
            for (int k = 0; k < Total;)
            {
                if (!sub.Reader.TryRead(out var ev))
                {
                    Assert.True(DateTime.UtcNow < until, $"only {k} of {Total} interrupts arrived");
                    Thread.SpinWait(20);
                    continue;
                }
                Assert.Equal(0u, ev.Vector);
                // The k-th message follows the k-th frame's write-back: descriptor k has DD. Read
                // as a driver that maps the RAM file does: no machine lock, straight from memory.
                rig.M.Ram.Read(rx.DescAddr((uint)k), d);
                Assert.True((d[8] & 1) != 0, $"interrupt #{k + 1} seen before descriptor {k}'s write-back");
                k++;
            }
        });
        await Task.WhenAll([.. injectors, observer]).WaitAsync(Deadline);
        Assert.Equal((uint)Total, rx.Head);
        Assert.False(sub.Reader.TryRead(out _));
    }
}
