using Microsoft.Extensions.Time.Testing;
using PcieEmu.Core.Checker;
using PcieEmu.Core.Config.Capabilities;
using PcieEmu.Core.Iommu;
using PcieEmu.Core.Tests.Devices.Igb;
using PcieEmu.Core.Tests.Iommu;
using static PcieEmu.Core.Devices.Igb.IgbRegs;
using static PcieEmu.Core.Tests.Checker.DriverCheckerTests;

namespace PcieEmu.Core.Tests.Checker;

/// <summary>The rules added for config/SR-IOV, MMIO decode, interrupt messages, VT-d and the
/// 82576 rings, mailbox and switch: per rule a sequence that triggers exactly it (id, requester,
/// spec reference) and the same sequence done right, which triggers nothing.</summary>
public sealed class DriverCheckerRuleTests
{
    private const int SriovCap = NicRig.SriovCap;

    private static int Cap<T>(Rig r, ushort rid) where T : PcieEmu.Core.Config.Capability =>
        r.Nic.M.RouteConfig(rid)!.Find<T>()!.Offset;

    private static Violation Expect(Rig r, Rule rule, ushort rid, string spec)
    {
        var x = Only(r.Violations, rule, rid);
        Assert.Contains(spec, x.Rule.Spec, StringComparison.Ordinal);
        return x;
    }

    // ---------------- SR-IOV ----------------

    [Fact]
    public void NumVfsAboveTotalVfs()
    {
        using var r = new Rig();
        uint total = r.Nic.M.Read(NicRig.Pf0, SriovCap + 0x0E, 2);
        r.Nic.M.Write(NicRig.Pf0, SriovCap + 0x10, 2, total + 1);
        Expect(r, Rules.NumVfsAboveTotalVfs, NicRig.Pf0, "§3.3.7");
        r.Checker.Clear();
        r.Nic.M.Write(NicRig.Pf0, SriovCap + 0x10, 2, total);
        Assert.Empty(r.Violations);
    }

    [Fact]
    public void SystemPageSizeWhileEnabled()
    {
        using var r = new Rig();
        r.Nic.M.Write(NicRig.Pf0, SriovCap + 0x20, 4, 1);   // before VF Enable: fine
        r.EnableVfs(2);
        Assert.Empty(r.Violations);
        r.Nic.M.Write(NicRig.Pf0, SriovCap + 0x20, 4, 1);
        Expect(r, Rules.SystemPageSizeWhileEnabled, NicRig.Pf0, "§3.3.13");
    }

    [Fact]
    public void VfBarWriteWhileVfMse()
    {
        using var r = new Rig();
        r.EnableVfs(2);
        uint bar = r.Nic.M.Read(NicRig.Pf0, SriovCap + 0x24);
        // Done right: VF MSE off, size, restore, VF MSE on.
        r.Nic.M.Write(NicRig.Pf0, SriovCap + 0x08, 2, 0x1);
        r.Nic.M.Write(NicRig.Pf0, SriovCap + 0x24, 4, 0xFFFF_FFFF);
        r.Nic.M.Write(NicRig.Pf0, SriovCap + 0x24, 4, bar);
        r.Nic.M.Write(NicRig.Pf0, SriovCap + 0x08, 2, 0x9);
        Assert.Empty(r.Violations);
        r.Nic.M.Write(NicRig.Pf0, SriovCap + 0x24, 4, 0xFFFF_FFFF);
        Expect(r, Rules.VfBarWriteWhileVfMse, NicRig.Pf0, "§3.3.14");
    }

    [Fact]
    public void AriCapableChangedWhileEnabled()
    {
        using var r = new Rig();
        r.Nic.M.Write(NicRig.Pf0, SriovCap + 0x08, 2, 0x10);   // ARI first: fine
        r.Nic.M.Write(NicRig.Pf0, SriovCap + 0x10, 2, 2);
        r.Nic.M.Write(NicRig.Pf0, SriovCap + 0x08, 2, 0x19);
        r.Clock.Advance(TimeSpan.FromMilliseconds(100));
        Assert.Empty(r.Violations);
        r.Nic.M.Write(NicRig.Pf0, SriovCap + 0x08, 2, 0x09);
        Expect(r, Rules.AriChangedWhileEnabled, NicRig.Pf0, "§3.3.3.5");
    }

    [Fact]
    public void BarWriteWhileDecodeOn()
    {
        using var r = new Rig();
        var m = r.Nic.M;
        uint bar0 = m.Read(NicRig.Pf0, 0x10);
        m.Write(NicRig.Pf0, 0x04, 2, 0x4);                    // decode off, size, restore, decode on
        m.Write(NicRig.Pf0, 0x10, 4, 0xFFFF_FFFF);
        m.Write(NicRig.Pf0, 0x10, 4, bar0);
        m.Write(NicRig.Pf0, 0x04, 2, 0x6);
        Assert.Empty(r.Violations);
        m.Write(NicRig.Pf0, 0x10, 4, 0xFFFF_FFFF);
        Expect(r, Rules.BarWriteWhileDecodeOn, NicRig.Pf0, "§6.2.5.1");
    }

    [Fact]
    public void MsiAndMsixBothEnabled()
    {
        using var r = new Rig();
        var m = r.Nic.M;
        int msi = Cap<MsiCapability>(r, NicRig.Pf0);
        m.Write(NicRig.Pf0, msi + 2, 2, 1);
        m.Write(NicRig.Pf0, msi + 2, 2, 0);                    // MSI off before MSI-X on: fine
        m.Write(NicRig.Pf0, NicRig.MsixCap + 2, 2, 0x8000);
        Assert.Empty(r.Violations);
        m.Write(NicRig.Pf0, msi + 2, 2, 1);
        Expect(r, Rules.MsiAndMsixEnabled, NicRig.Pf0, "§6.1.4");
    }

    // ---------------- MMIO decode and power ----------------

    [Fact]
    public void MmioToAPfWithMemorySpaceOff()
    {
        using var r = new Rig();
        var m = r.Nic.M;
        Assert.Equal(0x0000_0000u, (uint)m.ReadMmio(r.Nic.PfBar0 + Status, 4).Value & 0);   // decoded: fine
        Assert.Empty(r.Violations);
        m.Write(NicRig.Pf0, 0x04, 2, 0x4);
        Assert.Equal(0xFFFF_FFFFu, (uint)m.ReadMmio(r.Nic.PfBar0 + Status, 4).Value);
        var x = Expect(r, Rules.MmioWithMemorySpaceOff, NicRig.Pf0, "§7.5.1.1");
        Assert.Contains("STATUS", x.Event, StringComparison.Ordinal);
        Assert.Contains("UR", x.Event, StringComparison.Ordinal);
        Assert.Contains("all ones", x.Outcome, StringComparison.Ordinal);
    }

    [Fact]
    public void MmioToAVfWithVfMseOff()
    {
        using var r = new Rig();
        r.EnableVfs(1);
        ulong bar = r.Nic.VfBar0(0);
        r.Nic.VfRead(0, Status);
        Assert.Empty(r.Violations);
        r.Nic.M.Write(NicRig.Pf0, SriovCap + 0x08, 2, 0x1);   // VF MSE off, VFs stay
        r.Nic.M.WriteMmio(bar + Eims, 4, 1);
        var x = Expect(r, Rules.MmioWithMemorySpaceOff, r.Nic.VfRid(0), "§3.3.3.4");
        Assert.Contains("VF MSE", x.Outcome, StringComparison.Ordinal);
    }

    [Fact]
    public void MmioInD3Hot()
    {
        using var r = new Rig();
        var m = r.Nic.M;
        int pm = Cap<PowerManagementCapability>(r, NicRig.Pf0);
        m.Write(NicRig.Pf0, pm + 4, 2, 3);
        m.ReadMmio(r.Nic.PfBar0 + Status, 4);
        Expect(r, Rules.MmioInD3Hot, NicRig.Pf0, "§5.3.1.4.1");
        r.Checker.Clear();
        m.Write(NicRig.Pf0, pm + 4, 2, 0);
        r.Nic.PfRead(Status);
        Assert.Empty(r.Violations);
    }

    [Fact]
    public void MsixTablePartialWrite()
    {
        using var r = new Rig();
        r.EnableVfs(2);
        ulong bar3 = r.Nic.VfBar3(1);
        r.Nic.W(bar3 + 8, 0x41);                               // DWORD: fine (entry masked, MSI-X off)
        Assert.Empty(r.Violations);
        r.Nic.W(bar3 + 8, 0x41, width: 2);
        Expect(r, Rules.MsixPartialAccess, r.Nic.VfRid(1), "§6.1.4.2");
    }

    [Fact]
    public void MsixPbaWrite()
    {
        using var r = new Rig();
        r.EnableVfs(2);
        var cap = r.Nic.M.RouteConfig(r.Nic.VfRid(1))!.Find<MsixCapability>()!;
        ulong pba = (cap.PbaBar == cap.TableBar ? r.Nic.VfBar3(1) : r.Nic.VfBar0(1)) + cap.PbaOffset;
        r.Nic.R(pba);
        Assert.Empty(r.Violations);
        r.Nic.W(pba, 0);
        Expect(r, Rules.MsixPbaWrite, r.Nic.VfRid(1), "§7.7");
    }

    // ---------------- Interrupt messages ----------------

    // VF1 with MSI-X vector 0 at address, its "other" cause mapped to vector 0, then the cause raised by EICS.
    private static void FireVf1Vector0(Rig r, ulong address)
    {
        ulong bar3 = r.Nic.VfBar3(1);
        r.Nic.W(bar3, address);
        r.Nic.W(bar3 + 8, 0x41);
        r.Nic.W(bar3 + 12, 0);
        r.Nic.M.Write(r.Nic.VfRid(1), NicRig.MsixCap + 2, 2, 0x8000);
        r.Nic.VfWrite(1, Eims, 1);
        r.Nic.VfWrite(1, Eics, 1);
    }

    [Fact]
    public void MsixVectorAddressOutsideMsiWindow()
    {
        using var r = new Rig();
        r.EnableVfs(2);
        FireVf1Vector0(r, r.Nic.Alloc(64));
        var x = Expect(r, Rules.MsixAddressOutsideMsiWindow, r.Nic.VfRid(1), "§10.11.1");
        Assert.Contains("MSI-X vector 0", x.Event, StringComparison.Ordinal);
    }

    [Fact]
    public void MsixVectorInsideMsiWindowIsFine()
    {
        using var r = new Rig();
        r.EnableVfs(2);
        FireVf1Vector0(r, 0xFEE0_1000);
        Assert.Empty(r.Violations);
    }

    [Fact]
    public void MsixMessageWithBusMasterOff()
    {
        using var r = new Rig();
        r.EnableVfs(2, busMaster: false);
        FireVf1Vector0(r, 0xFEE0_1000);
        var x = Expect(r, Rules.MessageWithBusMasterOff, r.Nic.VfRid(1), "§7.5.1.1");
        Assert.Contains("BLOCKED", x.Event, StringComparison.Ordinal);
    }

    [Fact]
    public void MsiAddressOutsideMsiWindow()
    {
        using var r = new Rig();
        var m = r.Nic.M;
        int msi = Cap<MsiCapability>(r, NicRig.Pf0);
        m.Write(NicRig.Pf0, 0x04, 2, 0x6);
        void Fire(uint address)
        {
            m.Write(NicRig.Pf0, msi + 4, 4, address);
            m.Write(NicRig.Pf0, msi + 2, 2, 1);
            r.Nic.PfWrite(Ims, 1u << 2);
            r.Nic.PfWrite(Ics, 1u << 2);
            r.Nic.PfRead(Icr);
            m.Write(NicRig.Pf0, msi + 2, 2, 0);
        }
        Fire(0xFEE0_0000);
        Assert.Empty(r.Violations);
        Fire((uint)r.Nic.Alloc(64));
        Expect(r, Rules.MsiAddressOutsideMsiWindow, NicRig.Pf0, "§10.11.1");
    }

    // ---------------- VT-d ----------------

    [Fact]
    public void VtdTranslationEnableWithoutRootTable()
    {
        using var h = new VtdHarness(TestMachine.Create(time: new FakeTimeProvider()), VtdHarness.TablesBase, ownsMachine: true);
        using var checker = new DriverChecker(h.M);
        h.SetPersistent(VtdRegs.GcmdTe, true);
        var x = Only(checker.Violations(), Rules.VtdTranslationWithoutRootTable, 0);
        Assert.Contains("§10.4.4", x.Rule.Spec, StringComparison.Ordinal);
    }

    [Fact]
    public void VtdGcmdWithTwoCommands()
    {
        using var h = new VtdHarness(TestMachine.Create(time: new FakeTimeProvider()), VtdHarness.TablesBase, ownsMachine: true);
        using var checker = new DriverChecker(h.M);
        h.SetReg(VtdRegs.Rtaddr, 8, VtdHarness.TablesBase);
        h.SetReg(VtdRegs.Gcmd, 4, VtdRegs.GcmdSrtp | VtdRegs.GcmdTe);
        var x = Only(checker.Violations(), Rules.VtdGcmdMoreThanOneCommand, 0);
        Assert.Contains("2 commands", x.Outcome, StringComparison.Ordinal);
    }

    [Fact]
    public void VtdEnabledOneCommandAtATimeIsFine()
    {
        using var h = new VtdHarness(TestMachine.Create(time: new FakeTimeProvider()), VtdHarness.TablesBase, ownsMachine: true);
        using var checker = new DriverChecker(h.M);
        h.Enable();
        Assert.Empty(checker.Violations());
    }

    // ---------------- 82576 rings ----------------

    private static (Rig R, NicRig.Ring Tx) VfTxRig()
    {
        var r = new Rig();
        r.EnableVfs(1);
        r.Nic.SetupVmdq(1);
        return (r, r.Nic.VfTx(0, 0));
    }

    [Fact]
    public void TdtBeyondRing()
    {
        var (r, tx) = VfTxRig();
        using var _ = r;
        tx.WriteTail(63);
        Assert.Empty(r.Violations);
        tx.WriteTail(64);
        var x = Expect(r, Rules.IgbTdtBeyondRing, r.Nic.VfRid(0), "82576");
        Assert.Contains("TDT[0]", x.Event, StringComparison.Ordinal);
    }

    [Fact]
    public void RdtBeyondRing()
    {
        using var r = new Rig();
        r.EnableVfs(1);
        r.Nic.SetupVmdq(1);
        var rx = r.Nic.VfRx(0, count: 8, post: 7);
        Assert.Empty(r.Violations);
        rx.WriteTail(8);
        Expect(r, Rules.IgbRdtBeyondRing, r.Nic.VfRid(0), "82576");
    }

    private static void RawTxRing(Rig r, uint tdbal, uint tdlen, bool enable)
    {
        uint b = TxLegacy;
        r.Nic.VfWrite(0, b + Tdbal, tdbal);
        r.Nic.VfWrite(0, b + Tdbah, 0);
        r.Nic.VfWrite(0, b + Tdlen, tdlen);
        r.Nic.VfWrite(0, b + Tdh, 0);
        r.Nic.VfWrite(0, b + Tdt, 0);
        r.Nic.VfWrite(0, b + Txdctl, enable ? QueueEnable : 0);
    }

    [Fact]
    public void DoorbellOnADisabledQueue()
    {
        using var r = new Rig();
        r.EnableVfs(1);
        r.Nic.SetupVmdq(1);
        RawTxRing(r, (uint)r.Nic.Alloc(8 * 16), 8 * 16, enable: false);
        Assert.Empty(r.Violations);                             // TDT = 0 while disabled (tail reset) is fine
        r.Nic.VfWrite(0, TxLegacy + Tdt, 1);
        var x = Expect(r, Rules.IgbDoorbellQueueDisabled, r.Nic.VfRid(0), "TXDCTL");
        Assert.Contains("TDT[0]", x.Event, StringComparison.Ordinal);
    }

    [Fact]
    public void RingBaseUnaligned()
    {
        using var r = new Rig();
        r.EnableVfs(1);
        r.Nic.SetupVmdq(1);
        RawTxRing(r, (uint)r.Nic.Alloc(8 * 16 + 128) + 0x40, 8 * 16, enable: false);
        Expect(r, Rules.IgbRingBaseUnaligned, r.Nic.VfRid(0), "TDBAL");
    }

    [Fact]
    public void RingLengthNotAMultipleOf128()
    {
        using var r = new Rig();
        r.EnableVfs(1);
        r.Nic.SetupVmdq(1);
        RawTxRing(r, (uint)r.Nic.Alloc(10 * 16), 10 * 16, enable: false);
        Expect(r, Rules.IgbRingLenUnaligned, r.Nic.VfRid(0), "TDLEN");
    }

    [Fact]
    public void QueueEnabledWithoutRing()
    {
        using var r = new Rig();
        r.EnableVfs(1);
        r.Nic.VfWrite(0, TxLegacy + Txdctl, QueueEnable);
        Expect(r, Rules.IgbQueueEnableWithoutRing, r.Nic.VfRid(0), "82576");
    }

    [Fact]
    public void RingChangedWhileEnabled()
    {
        var (r, _) = VfTxRig();
        using var __ = r;
        Assert.Empty(r.Violations);
        r.Nic.VfWrite(0, TxLegacy + Tdlen, 32 * 16);
        Expect(r, Rules.IgbRingChangedWhileEnabled, r.Nic.VfRid(0), "82576");
        r.Checker.Clear();
        r.Nic.VfWrite(0, TxLegacy + Txdctl, 0);                 // done right: disable, resize, enable
        r.Nic.VfWrite(0, TxLegacy + Tdlen, 64 * 16);
        r.Nic.VfWrite(0, TxLegacy + Txdctl, QueueEnable);
        Assert.Empty(r.Violations);
    }

    // ---------------- 82576 switch ----------------

    [Fact]
    public void RxWithoutFreeDescriptors()
    {
        using var r = new Rig();
        r.EnableVfs(2);
        r.Nic.SetupVmdq(2);
        var tx = r.Nic.VfTx(0);
        var rx = r.Nic.VfRx(1, count: 8, post: 0);
        r.Nic.PostAdv(tx, NicRig.Frame(NicRig.Mac(1), NicRig.Mac(0)));
        var x = Expect(r, Rules.IgbRxNoFreeDescriptors, r.Nic.VfRid(1), "RQDPC");
        Assert.Contains("DROPPED", x.Event, StringComparison.Ordinal);
        r.Checker.Clear();
        rx.WriteTail(4);
        r.Nic.PostAdv(tx, NicRig.Frame(NicRig.Mac(1), NicRig.Mac(0)));
        Assert.Empty(r.Violations);
    }

    [Fact]
    public void SpoofedSourceMac()
    {
        using var r = new Rig();
        r.EnableVfs(2);
        r.Nic.SetupVmdq(2);
        r.Nic.PfWrite(Dtxswc, DtxswcLoopback | 0x3);            // MAC anti-spoofing for pools 0 and 1
        var tx = r.Nic.VfTx(0);
        r.Nic.VfRx(1, count: 8);
        r.Nic.PostAdv(tx, NicRig.Frame(NicRig.Mac(1), NicRig.Mac(0)));
        Assert.Empty(r.Violations);
        r.Nic.PostAdv(tx, NicRig.Frame(NicRig.Mac(1), NicRig.Mac(5)));
        Expect(r, Rules.IgbSpoofedSource, r.Nic.VfRid(0), "DTXSWC");
    }

    // ---------------- 82576 mailbox ----------------

    [Fact]
    public void VfMailboxWriteWithoutVfu()
    {
        using var r = new Rig();
        r.EnableVfs(1);
        r.Nic.VfWrite(0, VfMailbox, VfmbVfu);                   // done right: take, write, signal (releases)
        Assert.NotEqual(0u, r.Nic.VfRead(0, VfMailbox) & VfmbVfu);
        r.Nic.VfWrite(0, Vmbmem, 0x1);
        r.Nic.VfWrite(0, VfMailbox, VfmbReq);
        Assert.Empty(r.Violations);
        r.Nic.VfWrite(0, Vmbmem, 0x2);
        var x = Expect(r, Rules.IgbMailboxWriteWithoutOwnership, r.Nic.VfRid(0), "VFU");
        Assert.Contains("VMBMEM[0]", x.Event, StringComparison.Ordinal);
    }

    [Fact]
    public void PfMailboxWriteWithoutPfu()
    {
        using var r = new Rig();
        r.EnableVfs(1);
        r.Nic.PfWrite(P2vMailbox, P2vPfu);
        r.Nic.PfWrite(Vmbmem, 0x1);
        r.Nic.PfWrite(P2vMailbox, P2vSts);
        Assert.Empty(r.Violations);
        r.Nic.VfWrite(0, VfMailbox, VfmbVfu);                   // the VF holds it: the PF's request is not granted
        r.Nic.PfWrite(P2vMailbox, P2vPfu);
        Assert.Equal(0u, r.Nic.PfRead(P2vMailbox) & P2vPfu);
        r.Nic.PfWrite(Vmbmem, 0x2);
        Expect(r, Rules.IgbMailboxWriteWithoutOwnership, NicRig.Pf0, "PFU");
    }

    [Fact]
    public void EveryRuleHasATestThatNamesIt()
    {
        string src = File.ReadAllText(Path.Combine(SourceDir(), "DriverCheckerRuleTests.cs")) + File.ReadAllText(Path.Combine(SourceDir(), "DriverCheckerTests.cs"));
        foreach (var field in typeof(Rules).GetFields().Where(f => f.FieldType == typeof(Rule)))
            Assert.Contains($"Rules.{field.Name}", src, StringComparison.Ordinal);
        Assert.True(Rules.All.Count >= 30, $"{Rules.All.Count} rules");
    }

    private static string SourceDir([System.Runtime.CompilerServices.CallerFilePath] string path = "") => Path.GetDirectoryName(path)!;
}
