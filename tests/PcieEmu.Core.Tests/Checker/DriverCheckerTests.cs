using Microsoft.Extensions.Time.Testing;
using PcieEmu.Core.Checker;
using PcieEmu.Core.Events;
using PcieEmu.Core.Tests.Devices.Igb;
using PcieEmu.Core.Tests.Iommu;
using static PcieEmu.Core.Devices.Igb.IgbRegs;

namespace PcieEmu.Core.Tests.Checker;

/// <summary>The driver-conduct checker: per rule, a minimal driver sequence that triggers exactly
/// that rule, and the same sequence done right that triggers nothing; correct flows (the golden
/// SR-IOV + VF->VF scenario, the igb probe replay) end with zero violations.</summary>
public sealed class DriverCheckerTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromMilliseconds(100);

    internal sealed class Rig : IDisposable
    {
        public readonly FakeTimeProvider Clock = new();
        public readonly NicRig Nic;
        public readonly DriverChecker Checker;

        public Rig()
        {
            Nic = new NicRig(time: Clock);
            Checker = new DriverChecker(Nic.M);
        }

        /// <summary>Linux's sriov_enable: NumVFs, VF Enable | VF MSE, 100 ms, then VF config (Bus Master).</summary>
        public void EnableVfs(int n, bool wait = true, bool busMaster = true)
        {
            Nic.M.Write(NicRig.Pf0, NicRig.SriovCap + 0x10, 2, (uint)n);
            Nic.M.Write(NicRig.Pf0, NicRig.SriovCap + 0x08, 2, 0x9);
            if (wait) Clock.Advance(Wait);
            if (busMaster) for (int i = 0; i < n; i++) Nic.M.Write(Nic.VfRid(i), 0x04, 2, 0x4);
        }

        public IReadOnlyList<Violation> Violations => Checker.Violations();

        public void Dispose()
        {
            Checker.Dispose();
            Nic.Dispose();
        }
    }

    internal static Violation Only(IReadOnlyList<Violation> v, Rule rule, ushort rid)
    {
        var x = Assert.Single(v);
        Assert.Equal(rule.Id, x.Rule.Id);
        Assert.Equal(rid, x.Rid);
        Assert.Equal(rule.Spec, x.Rule.Spec);
        Assert.False(string.IsNullOrEmpty(x.Outcome));
        Assert.NotEqual(0UL, x.EventSequence);
        return x;
    }

    internal static string Ids(IReadOnlyList<Violation> v) => string.Join("\n", v.Select(x => $"{x.Rule.Id} {x.Event}: {x.Outcome}"));

    // ---------------- No false positives ----------------

    [Fact]
    public void GoldenSriovScenarioDoneLikeLinuxHasNoViolations()
    {
        using var r = new Rig();
        var rig = r.Nic;
        r.EnableVfs(2);
        rig.SetupVmdq(2);
        var tx = rig.VfTx(0);
        var rx = rig.VfRx(1, count: 8);
        rig.EnableMsix(rig.VfRid(1), rig.VfBar3(1), 1);
        rig.VfWrite(1, Ivar0, 0x80);
        rig.VfWrite(1, Eims, 0x1);
        rig.PostAdv(tx, NicRig.Frame(NicRig.Mac(1), NicRig.Mac(0)));
        Assert.NotEqual(0u, rig.ReadRam(rx.DescAddr(0), 16)[8]);   // the frame arrived: the scenario really ran
        var v = r.Violations;
        Assert.True(v.Count == 0, Ids(v));
        Assert.True(rig.M.Events.Published > 20, $"{rig.M.Events.Published} events");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    public void IgbProbeReplayHasNoViolations(int port)
    {
        using var r = new Rig();
        var pf = (PcieEmu.Core.Devices.Igb.IgbPhysicalFunction)r.Nic.M.PhysicalFunctions[port];
        ulong bar = pf.BarWindow(pf.Bars[0]).Base;
        new IgbProbeReplay(off => r.Nic.R(bar + off), (off, v) => r.Nic.W(bar + off, v), port).Probe();
        var v = r.Violations;
        Assert.True(v.Count == 0, Ids(v));
    }

    /// <summary>Linux's order, from enumeration to a bound VF driver: the PF's BAR sized with decode
    /// off (__pci_read_base), sriov_init (System Page Size, VF BARs sized and placed with VF MSE
    /// off, SR-IOV Control with ARI Capable Hierarchy), sriov_enable (NumVFs, VF Offset/Stride,
    /// VF Enable | VF MSE, msleep(100)), pci_setup_device reads of each VF, then igbvf's probe
    /// (pci_enable_device, pci_set_master, STATUS read) and the VF's mailbox reset request.</summary>
    [Fact]
    public void LinuxSriovEnableReplayHasNoViolations()
    {
        using var r = new Rig();
        var m = r.Nic.M;
        const ushort pf = NicRig.Pf0;
        const int sriov = NicRig.SriovCap;
        // __pci_read_base on BAR0: decode off, size, restore, decode back.
        uint cmd = m.Read(pf, 0x04, 2);
        m.Write(pf, 0x04, 2, cmd & ~0x3u);
        uint bar0 = m.Read(pf, 0x10);
        m.Write(pf, 0x10, 4, 0xFFFF_FFFF);
        Assert.NotEqual(0u, m.Read(pf, 0x10));
        m.Write(pf, 0x10, 4, bar0);
        m.Write(pf, 0x04, 2, cmd | 0x6);
        // sriov_init.
        uint total = m.Read(pf, sriov + 0x0E, 2);
        Assert.NotEqual(0u, m.Read(pf, sriov + 0x1C) & 1);
        m.Write(pf, sriov + 0x20, 4, 1);
        for (int i = 0; i < 6; i++)
        {
            int at = sriov + 0x24 + 4 * i;
            uint old = m.Read(pf, at);
            m.Write(pf, at, 4, 0xFFFF_FFFF);
            m.Read(pf, at);
            m.Write(pf, at, 4, old);
        }
        m.Write(TestMachine.RootPort, 0x68, 2, 0x20);        // pci_enable_ari: the root port's ARI Forwarding Enable
        m.Write(pf, sriov + 0x08, 2, 0x10);                  // then ARI Capable Hierarchy
        // sriov_enable.
        int n = (int)Math.Min(total, 4);
        m.Write(pf, sriov + 0x10, 2, (uint)n);
        m.Read(pf, sriov + 0x14, 2);
        m.Read(pf, sriov + 0x16, 2);
        m.Write(pf, sriov + 0x08, 2, 0x19);
        r.Clock.Advance(Wait);                               // msleep(100)
        for (int i = 0; i < n; i++)
        {
            ushort vf = r.Nic.VfRid(i);
            Assert.Equal(0xFFFFu, m.Read(vf, 0x00, 2));           // a VF's Vendor ID reads FFFFh (Linux takes the PF's)
            m.Read(vf, 0x0E, 1);
            m.Read(vf, 0x08);
            m.Read(vf, 0x2C);
            m.Write(vf, 0x04, 2, m.Read(vf, 0x04, 2) | 0x6);   // pci_enable_device + pci_set_master
            r.Nic.VfRead(i, Status);
            r.Nic.VfWrite(i, Ctrl, 1u << 26);                // e1000_reset_hw_vf: CTRL.RST
            r.Nic.VfRead(i, VfMailbox);
        }
        var v = r.Violations;
        Assert.True(v.Count == 0, Ids(v));
        Assert.True(m.Events.Published > 25, $"{m.Events.Published} events");   // writes and lifecycle: reads are routine
    }

    // ---------------- SR-IOV ----------------

    [Fact]
    public void NumVfsWrittenWhileVfEnableIsSetIsReported()
    {
        using var r = new Rig();
        r.EnableVfs(2);
        Assert.Empty(r.Violations);
        r.Nic.M.Write(NicRig.Pf0, NicRig.SriovCap + 0x10, 2, 1);
        var x = Only(r.Violations, Rules.NumVfsWhileEnabled, NicRig.Pf0);
        Assert.Contains("NumVFs", x.Event, StringComparison.Ordinal);
        Assert.Contains("§3.3.7", x.Rule.Spec, StringComparison.Ordinal);
    }

    [Fact]
    public void NumVfsWrittenAfterClearingVfEnableIsFine()
    {
        using var r = new Rig();
        r.EnableVfs(2);
        r.Nic.M.Write(NicRig.Pf0, NicRig.SriovCap + 0x08, 2, 0);
        r.Nic.M.Write(NicRig.Pf0, NicRig.SriovCap + 0x10, 2, 1);
        r.Nic.M.Write(NicRig.Pf0, NicRig.SriovCap + 0x08, 2, 0x9);
        Assert.Empty(r.Violations);
    }

    [Fact]
    public void VfConfigAccessBefore100MsIsReportedOncePerEnable()
    {
        using var r = new Rig();
        r.EnableVfs(2, wait: false, busMaster: false);
        r.Nic.M.Write(r.Nic.VfRid(0), 0x04, 2, 0x4);
        r.Nic.M.Read(r.Nic.VfRid(0), 0);                     // reported once per VF Enable
        r.Clock.Advance(TimeSpan.FromMilliseconds(60));
        r.Nic.M.Read(r.Nic.VfRid(1), 0);
        var v = r.Violations;
        Assert.Equal(2, v.Count);
        Assert.All(v, x => Assert.Equal(Rules.VfAccessBefore100Ms, x.Rule));
        Assert.Equal([r.Nic.VfRid(0), r.Nic.VfRid(1)], v.Select(x => x.Rid));
        Assert.Contains("0 ms", v[0].Outcome, StringComparison.Ordinal);
        Assert.Contains("60 ms", v[1].Outcome, StringComparison.Ordinal);
        Assert.Contains("§3.3.3.1", v[0].Rule.Spec, StringComparison.Ordinal);
    }

    [Fact]
    public void VfConfigAccessAfter100MsIsFine()
    {
        using var r = new Rig();
        r.EnableVfs(2);
        r.Nic.M.Read(r.Nic.VfRid(1), 0);
        Assert.Empty(r.Violations);
    }

    // ---------------- FLR ----------------

    // A VF's FLR (its memory decode follows the PF's VF MSE, so MMIO still reaches it).
    private static void Flr(Rig r)
    {
        r.EnableVfs(1);
        r.Nic.M.Write(r.Nic.VfRid(0), NicRig.PcieCap + 0x08, 2, 0x8000);
    }

    [Fact]
    public void ConfigAccessWithin100MsOfFlrIsReported()
    {
        using var r = new Rig();
        Flr(r);
        r.Clock.Advance(TimeSpan.FromMilliseconds(10));
        r.Nic.M.Read(r.Nic.VfRid(0), 0);
        var x = Only(r.Violations, Rules.AccessAfterFlrBefore100Ms, r.Nic.VfRid(0));
        Assert.Contains("§6.6.2", x.Rule.Spec, StringComparison.Ordinal);
        Assert.Contains("10 ms", x.Outcome, StringComparison.Ordinal);
    }

    [Fact]
    public void MmioWithin100MsOfFlrIsReported()
    {
        using var r = new Rig();
        Flr(r);
        r.Nic.VfRead(0, Status);
        var x = Only(r.Violations, Rules.AccessAfterFlrBefore100Ms, r.Nic.VfRid(0));
        Assert.Contains("MMIO", x.Event, StringComparison.Ordinal);
    }

    [Fact]
    public void AccessAfterWaitingForFlrIsFine()
    {
        using var r = new Rig();
        Flr(r);
        r.Clock.Advance(Wait);
        r.Nic.M.Read(r.Nic.VfRid(0), 0);
        r.Nic.VfRead(0, Status);
        Assert.Empty(r.Violations);
    }

    // ---------------- DMA ----------------

    [Fact]
    public void DoorbellWithBusMasterOffIsReported()
    {
        using var r = new Rig();
        r.EnableVfs(1, busMaster: false);
        r.Nic.SetupVmdq(1);
        var tx = r.Nic.VfTx(0);
        r.Nic.PostAdv(tx, NicRig.Frame(NicRig.Broadcast, NicRig.Mac(0)));
        var v = r.Violations;
        Assert.NotEmpty(v);
        Assert.All(v, x => { Assert.Equal(Rules.BusMasterOff, x.Rule); Assert.Equal(r.Nic.VfRid(0), x.Rid); });
        Assert.Contains("BLOCKED", v[0].Event, StringComparison.Ordinal);
    }

    [Fact]
    public void DoorbellWithBusMasterOnIsFine()
    {
        using var r = new Rig();
        r.EnableVfs(1);
        r.Nic.SetupVmdq(1);
        var tx = r.Nic.VfTx(0);
        r.Nic.PostAdv(tx, NicRig.Frame(NicRig.Broadcast, NicRig.Mac(0)));
        Assert.Empty(r.Violations);
    }

    private static void TxRingAt(Rig r, ulong ringBase)
    {
        var rig = r.Nic;
        uint b = TxLegacy;
        rig.VfWrite(0, b + Tdbal, (uint)ringBase);
        rig.VfWrite(0, b + Tdbah, (uint)(ringBase >> 32));
        rig.VfWrite(0, b + Tdlen, 8 * 16);
        rig.VfWrite(0, b + Tdh, 0);
        rig.VfWrite(0, b + Tdt, 0);
        rig.VfWrite(0, b + Txdctl, QueueEnable);
        rig.VfWrite(0, b + Tdt, 1);
    }

    [Fact]
    public void RingOutsideRamIsReportedAsUnsupportedRequest()
    {
        using var r = new Rig();
        r.EnableVfs(1);
        r.Nic.SetupVmdq(1);
        TxRingAt(r, 0x20_0000_0000);
        var v = r.Violations;
        Assert.NotEmpty(v);
        Assert.All(v, x => { Assert.Equal(Rules.DmaUnsupportedRequest, x.Rule); Assert.Equal(r.Nic.VfRid(0), x.Rid); });
    }

    [Fact]
    public void RingInRamIsFine()
    {
        using var r = new Rig();
        r.EnableVfs(1);
        r.Nic.SetupVmdq(1);
        TxRingAt(r, r.Nic.Alloc(8 * 16));
        Assert.Empty(r.Violations);
    }

    // ---------------- VT-d ----------------

    [Fact]
    public void DmaToAnUnmappedIovaIsAVtdFault()
    {
        var clock = new FakeTimeProvider();
        using var h = new VtdHarness(TestMachine.Create(time: clock), VtdHarness.TablesBase, ownsMachine: true);
        using var checker = new DriverChecker(h.M);
        h.Enable();
        h.NewDomain(TestMachine.Pf0, did: 1);
        h.M.Write(TestMachine.Pf0, 0x04, 2, 0x6);
        Assert.False(h.Function(TestMachine.Pf0).Dma.Write(0x4000_2000, new byte[8]).Ok);
        var x = Only(checker.Violations(), Rules.VtdFault, TestMachine.Pf0);
        Assert.Contains("0x4000_2000", x.Event, StringComparison.Ordinal);
    }

    [Fact]
    public void DmaToAMappedIovaIsFine()
    {
        var clock = new FakeTimeProvider();
        using var h = new VtdHarness(TestMachine.Create(time: clock), VtdHarness.TablesBase, ownsMachine: true);
        using var checker = new DriverChecker(h.M);
        h.Enable();
        ulong top = h.NewDomain(TestMachine.Pf0, did: 1);
        h.Map(top, 0x4000_2000, VtdHarness.DataBase);
        h.M.Write(TestMachine.Pf0, 0x04, 2, 0x6);
        Assert.True(h.Function(TestMachine.Pf0).Dma.Write(0x4000_2000, new byte[8]).Ok);
        Assert.Empty(checker.Violations());
    }

    // ---------------- MSI-X ----------------

    [Fact]
    public void MsixEntryRewrittenWhileUnmaskedIsReported()
    {
        using var r = new Rig();
        r.EnableVfs(2);
        r.Nic.EnableMsix(r.Nic.VfRid(1), r.Nic.VfBar3(1), 1);
        r.Nic.W(r.Nic.VfBar3(1) + 8, 0x41);
        var x = Only(r.Violations, Rules.MsixTableWriteWhileUnmasked, r.Nic.VfRid(1));
        Assert.Contains("MSI-X[0]", x.Event, StringComparison.Ordinal);
    }

    [Fact]
    public void MsixEntryRewrittenUnderItsMaskIsFine()
    {
        using var r = new Rig();
        r.EnableVfs(2);
        ulong bar3 = r.Nic.VfBar3(1);
        r.Nic.EnableMsix(r.Nic.VfRid(1), bar3, 1);
        r.Nic.W(bar3 + 12, 1);
        r.Nic.W(bar3, 0xFEE0_1000);
        r.Nic.W(bar3 + 8, 0x41);
        r.Nic.W(bar3 + 12, 0);
        // And under the Function Mask.
        r.Nic.M.Write(r.Nic.VfRid(1), NicRig.MsixCap + 2, 2, 0xC000);
        r.Nic.W(bar3 + 8, 0x42);
        r.Nic.M.Write(r.Nic.VfRid(1), NicRig.MsixCap + 2, 2, 0x8000);
        Assert.Empty(r.Violations);
    }

    // ---------------- The checker itself ----------------

    [Fact]
    public void ReadsAreBuiltForTheCheckerOnlyDuringAReadinessWindow()
    {
        using var r = new Rig();
        var m = r.Nic.M;
        long before = m.Events.Published;
        m.Read(NicRig.Pf0, 0);
        r.Nic.PfRead(Status);
        Assert.Equal(before, m.Events.Published);                          // routine reads: nothing built
        Assert.False(m.Events.WantsRoutine(EventKind.Config));
        r.EnableVfs(1, wait: false, busMaster: false);
        Assert.True(m.Events.WantsRoutine(EventKind.Config));              // the 100 ms after VF Enable
        Assert.True(m.Events.WantsRoutine(EventKind.Mmio));
        r.Clock.Advance(Wait);
        m.Read(r.Nic.VfRid(0), 0);                                         // the first event after the window closes it
        Assert.False(m.Events.WantsRoutine(EventKind.Config));
        Assert.Empty(r.Violations);
        using var trace = m.Events.Subscribe(EventKinds.Config, capacity: 16);   // a trace wants every read
        m.Read(NicRig.Pf0, 0);
        Assert.True(trace.Reader.TryRead(out var e));
        Assert.True(e.IsRoutine);
        Assert.Empty(r.Violations);
    }

    [Fact]
    public void LostEventsAreRecordedAsACheckerNotice()
    {
        using var m = TestMachine.Create(time: new FakeTimeProvider());
        using var checker = new DriverChecker(m, capacity: 2);
        for (int i = 0; i < 5; i++) m.Write(TestMachine.Pf0, 0x04, 2, 0);   // writes: reads outside a readiness window are not checked
        var x = Assert.Single(checker.Violations());
        Assert.Equal(Rules.CheckerEventsLost, x.Rule);
        Assert.Contains("3 event(s)", x.Outcome, StringComparison.Ordinal);
    }

    [Fact]
    public void ClearForgetsViolations()
    {
        using var r = new Rig();
        r.EnableVfs(2);
        r.Nic.M.Write(NicRig.Pf0, NicRig.SriovCap + 0x10, 2, 1);
        Assert.Equal(1, r.Checker.Clear());
        Assert.Empty(r.Violations);
    }

    [Fact]
    public void RuleIdsAreUniqueAndEveryRuleCitesASection()
    {
        Assert.Equal(Rules.All.Count, Rules.All.Select(x => x.Id).Distinct().Count());
        // A numbered section, or (82576 datasheet, where no section number could be confirmed) the
        // register description by name.
        foreach (var rule in Rules.All.Where(x => x.Id != Rules.CheckerEventsLost.Id))
            Assert.True(rule.Spec.Contains('§', StringComparison.Ordinal) || rule.Spec.Contains("register description", StringComparison.Ordinal), rule.Id);
        Assert.Same(Rules.VtdFault, Rules.Find("VTD.FAULT"));
        Assert.Null(Rules.Find("NO.SUCH_RULE"));
    }

    [Fact]
    public void DocsListEveryRuleOfTheTable()
    {
        string dir = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(dir, "docs", "checker.md"))) dir = Path.GetDirectoryName(dir) ?? throw new FileNotFoundException("docs/checker.md");
        string doc = File.ReadAllText(Path.Combine(dir, "docs", "checker.md"));
        foreach (var rule in Rules.All)
            Assert.Contains($"| `{rule.Id}` | {rule.Severity.ToString().ToLowerInvariant()} | {rule.Spec} | {rule.Trigger} | {rule.Hint} |", doc, StringComparison.Ordinal);
        int rows = doc.Split('\n').Count(l => l.StartsWith("| `", StringComparison.Ordinal));
        Assert.Equal(Rules.All.Count, rows);
    }
}
