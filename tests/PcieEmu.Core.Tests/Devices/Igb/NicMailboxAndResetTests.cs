using System.Buffers.Binary;
using Microsoft.Extensions.Time.Testing;
using PcieEmu.Core.Interrupts;
using static PcieEmu.Core.Devices.Igb.IgbRegs;

namespace PcieEmu.Core.Tests.Devices.Igb;

public class NicMailboxAndResetTests
{
    private const uint VfReset = 0x01, VfSetMac = 0x02, MsgAck = 0x8000_0000, MsgCts = 0x2000_0000;

    /// <summary>PF with MSI-X: "other" causes (ICR) → vector 9 via IVAR_MISC; VMMB unmasked.</summary>
    private static NicRig PfWithMailboxInterrupts(int vfs)
    {
        var rig = new NicRig(vfs);
        rig.EnableMsix(NicRig.Pf0, rig.PfBar3, 10);
        rig.PfWrite(Gpie, GpieMsixMode | GpieEiame | GpiePba | GpieNsicr);
        rig.PfWrite(IvarMisc, (0x80u | 9) << 8);
        rig.PfWrite(Eims, 1u << 9);
        rig.PfWrite(Ims, IcrVmmb);
        rig.PfWrite(Mbvfimr, 0xFF);
        return rig;
    }

    private static void VfMailboxVector(NicRig rig, int vf, int vector)
    {
        rig.EnableMsix(rig.VfRid(vf), rig.VfBar3(vf), 3);
        rig.VfWrite(vf, IvarMisc, 0x80u | (uint)vector);
        rig.VfWrite(vf, Eims, 1u << vector);
    }

    [Fact]
    public void ResetHandshakeRstiThenRstdAfterPfrstd()
    {
        using var rig = new NicRig(vfs: 2);
        Assert.Equal(VfmbRsti, rig.VfRead(1, VfMailbox));
        Assert.Equal(VfmbRsti, rig.VfRead(1, VfMailbox));   // RSTI is not clear-on-read
        rig.PfWrite(CtrlExt, CtrlExtPfrstd);
        Assert.Equal(VfmbRstd, rig.VfRead(1, VfMailbox));
        Assert.Equal(0u, rig.VfRead(1, VfMailbox));         // RSTD clears on read
        Assert.Equal(CtrlExtPfrstd, rig.PfRead(CtrlExt));
        // A PF device reset puts every VF mailbox back to RSTI.
        rig.PfWrite(Ctrl, CtrlRst);
        Assert.Equal(0u, rig.PfRead(Ctrl) & CtrlRst);
        Assert.Equal(0u, rig.PfRead(CtrlExt));
        Assert.Equal(VfmbRsti, rig.VfRead(0, VfMailbox));
    }

    [Fact]
    public void VfToPfRequestRaisesVmmbAndPfAcksWithMacAddress()
    {
        using var rig = PfWithMailboxInterrupts(vfs: 3);
        VfMailboxVector(rig, 2, vector: 2);
        rig.PfWrite(CtrlExt, CtrlExtPfrstd);
        rig.VfRead(2, VfMailbox);
        using var pfSub = rig.M.Interrupts.Subscribe([NicRig.Pf0]);
        using var vfSub = rig.M.Interrupts.Subscribe([rig.VfRid(2)]);

        // VF 2 takes the buffer, writes VF_RESET, sends it (REQ).
        rig.VfWrite(2, VfMailbox, VfmbVfu);
        Assert.Equal(VfmbVfu, rig.VfRead(2, VfMailbox) & VfmbVfu);
        Assert.Equal(P2vVfu, rig.PfRead(P2vMailbox + 8) & P2vVfu);
        rig.VfWrite(2, Vmbmem, VfReset);
        rig.VfWrite(2, VfMailbox, VfmbReq | VfmbVfu);
        Assert.Equal(0u, rig.VfRead(2, VfMailbox) & VfmbReq);   // self-clearing

        Assert.Equal(1u << 2, rig.PfRead(Mbvficr));
        var ev = Assert.Single(NicRig.Drain(pfSub));
        Assert.Equal(9u, ev.Vector);
        Assert.Equal(IcrVmmb, rig.PfRead(Icr) & IcrVmmb);
        Assert.Equal(0u, rig.PfRead(Icr));                       // ICR clears on read
        Assert.Equal(VfReset, rig.PfRead(Vmbmem + 64 * 2));       // PF sees VF 2's buffer at 0x800 + 64·2
        rig.PfWrite(Mbvficr, 1u << 2);                            // W1C
        Assert.Equal(0u, rig.PfRead(Mbvficr));

        // PF: the VF still holds the buffer, so PFU is refused until the VF lets go.
        rig.PfWrite(P2vMailbox + 8, P2vPfu);
        Assert.Equal(0u, rig.PfRead(P2vMailbox + 8) & P2vPfu);
        rig.VfWrite(2, VfMailbox, 0);                             // VF releases VFU
        rig.PfWrite(P2vMailbox + 8, P2vPfu);
        Assert.Equal(P2vPfu, rig.PfRead(P2vMailbox + 8) & P2vPfu);
        Assert.Equal(VfmbPfu, rig.VfRead(2, VfMailbox) & VfmbPfu);
        rig.VfWrite(2, VfMailbox, VfmbVfu);                       // refused while PFU is held
        Assert.Equal(0u, rig.VfRead(2, VfMailbox) & VfmbVfu);

        // PF answers VF_RESET | ACK | CTS with the MAC in words 1-2, then ACK + STS.
        byte[] mac = NicRig.Mac(2);
        rig.PfWrite(Vmbmem + 64 * 2, VfReset | MsgAck | MsgCts);
        rig.PfWrite(Vmbmem + 64 * 2 + 4, BinaryPrimitives.ReadUInt32LittleEndian(mac));
        rig.PfWrite(Vmbmem + 64 * 2 + 8, BinaryPrimitives.ReadUInt16LittleEndian(mac.AsSpan(4)));
        rig.PfWrite(P2vMailbox + 8, P2vSts | P2vAck);             // also releases PFU (written 0)
        Assert.Equal(0u, rig.PfRead(P2vMailbox + 8));

        var vev = Assert.Single(NicRig.Drain(vfSub));
        Assert.Equal(2u, vev.Vector);
        Assert.Equal(InterruptKind.Msix, vev.Kind);
        uint mb = rig.VfRead(2, VfMailbox);
        Assert.Equal(VfmbPfsts | VfmbPfack, mb & (VfmbPfsts | VfmbPfack));
        Assert.Equal(0u, rig.VfRead(2, VfMailbox) & (VfmbPfsts | VfmbPfack));   // clear on read
        Assert.Equal(VfReset | MsgAck | MsgCts, rig.VfRead(2, Vmbmem));
        Assert.Equal(BinaryPrimitives.ReadUInt32LittleEndian(mac), rig.VfRead(2, Vmbmem + 4));
        Assert.Equal(1u << 2, rig.VfRead(2, Eicr));
        // VF ACKs the PF's message: MBVFICR VFACK bit for VF 2.
        rig.VfWrite(2, VfMailbox, VfmbAck);
        Assert.Equal(1u << 18, rig.PfRead(Mbvficr));
        // RVFU: the PF takes the buffer back from a stuck VF.
        rig.VfWrite(2, VfMailbox, VfmbVfu);
        rig.PfWrite(P2vMailbox + 8, P2vRvfu);
        Assert.Equal(0u, rig.VfRead(2, VfMailbox) & VfmbVfu);
        Assert.Equal(0u, rig.PfRead(P2vMailbox + 8) & P2vVfu);
    }

    [Fact]
    public void MailboxInterruptsMaskedByMbvfimrAndEims()
    {
        using var rig = PfWithMailboxInterrupts(vfs: 2);
        rig.PfWrite(Mbvfimr, 0x2);   // only VF 1 may interrupt
        using var sub = rig.M.Interrupts.Subscribe([NicRig.Pf0]);
        rig.VfWrite(0, VfMailbox, VfmbReq);
        Assert.Equal(1u, rig.PfRead(Mbvficr));
        Assert.Empty(NicRig.Drain(sub));
        rig.VfWrite(1, VfMailbox, VfmbReq);
        Assert.Single(NicRig.Drain(sub));
        // EIAM with GPIE.EIAME auto-masks the vector after it fires; EIMS re-arms and delivers what is pending.
        rig.PfWrite(Eiam, 1u << 9);
        rig.PfWrite(Eicr, 0xFFFF_FFFF);
        rig.VfWrite(1, VfMailbox, VfmbReq);
        Assert.Single(NicRig.Drain(sub));
        Assert.Equal(0u, rig.PfRead(Eims) & (1u << 9));
        rig.VfWrite(1, VfMailbox, VfmbReq);
        Assert.Empty(NicRig.Drain(sub));
        rig.PfWrite(Eims, 1u << 9);
        Assert.Single(NicRig.Drain(sub));
    }

    [Fact]
    public void VfCtrlResetSetsVflreSignalsPfAndResetsTheVf()
    {
        using var rig = PfWithMailboxInterrupts(vfs: 2);
        rig.SetupVmdq(2);
        var rx = rig.VfRx(1);
        rig.VfWrite(1, Eiac, 0x7);
        using var sub = rig.M.Interrupts.Subscribe([NicRig.Pf0]);
        rig.VfWrite(1, Ctrl, CtrlRst);
        Assert.Equal(0u, rig.VfRead(1, Ctrl));
        Assert.Equal(1u << 1, rig.PfRead(Vflre));
        Assert.Single(NicRig.Drain(sub));
        // The PF finished its reset: RSTD, which igbvf's reset (e1000_reset_hw_vf) polls for right
        // after CTRL.RST; it is read-to-clear (V2PMAILBOX R2C bits), so each VF reset sets it again.
        Assert.Equal(VfmbRstd, rig.VfRead(1, VfMailbox));
        Assert.Equal(0u, rig.VfRead(1, VfMailbox));
        rig.VfWrite(1, Ctrl, CtrlRst);
        Assert.Equal(VfmbRstd, rig.VfRead(1, VfMailbox));
        Assert.Equal(0u, rig.VfRead(1, Eiac));
        Assert.Equal(0u, rig.VfRead(1, RxLegacy + Rdlen));
        Assert.Equal(0x0001_0000u, rig.PfRead(RxQueues + 0x40 + Rxdctl));   // reset: WTHRESH 1, queue disabled
        Assert.Equal(0u, rig.PfRead(Vfre) & 2);                 // the PF re-enables the pool after VF_RESET
        rig.PfWrite(Vflre, 2);
        Assert.Equal(0u, rig.PfRead(Vflre));
        _ = rx;
    }

    [Fact]
    public void VfFlrMidTrafficOnlyAffectsThatVf()
    {
        using var rig = PfWithMailboxInterrupts(vfs: 3);
        rig.SetupVmdq(3);
        var tx0 = rig.VfTx(0);
        var rx1 = rig.VfRx(1);
        var rx2 = rig.VfRx(2);
        for (int k = 0; k < 5; k++)
        {
            rig.PostAdv(tx0, NicRig.Frame(NicRig.Mac(1), NicRig.Mac(0)), kick: false);
            rig.PostAdv(tx0, NicRig.Frame(NicRig.Mac(2), NicRig.Mac(0)), kick: false);
        }
        tx0.WriteTail(tx0.Tail);
        Assert.Equal(5u, rx1.Head);
        using var sub = rig.M.Interrupts.Subscribe([NicRig.Pf0]);

        // FLR of VF 1: PCIe Device Control, Initiate FLR.
        rig.M.Write(rig.VfRid(1), NicRig.PcieCap + 8, 2, 0x8000);
        Assert.Equal(1u << 1, rig.PfRead(Vflre));
        Assert.Single(NicRig.Drain(sub));
        Assert.Equal(0u, rig.M.Read(rig.VfRid(1), 0x04, 2) & 4);   // Bus Master cleared by FLR
        Assert.Equal(0u, rig.VfRead(1, RxLegacy + Rdh));
        Assert.Equal(0x0001_0000u, rig.VfRead(1, RxLegacy + Rxdctl));   // reset: WTHRESH 1, queue disabled
        Assert.Equal(0u, rig.VfRead(1, VfGprc));

        // Traffic continues: VF 2 still receives, frames for VF 1 are dropped without DMA.
        var before = rig.ReadRam(rx1.Base, 64 * 16);
        for (int k = 0; k < 3; k++)
        {
            rig.PostAdv(tx0, NicRig.Frame(NicRig.Mac(1), NicRig.Mac(0)), kick: false);
            rig.PostAdv(tx0, NicRig.Frame(NicRig.Mac(2), NicRig.Mac(0)), kick: false);
        }
        tx0.WriteTail(tx0.Tail);
        Assert.Equal(16u, tx0.Head);
        Assert.Equal(8u, rx2.Head);
        Assert.Equal(before, rig.ReadRam(rx1.Base, 64 * 16));

        // VF 1's driver comes back: bus master, ring, pool enable → receives again.
        rig.M.Write(rig.VfRid(1), 0x04, 2, 4);
        var again = rig.VfRx(1);
        rig.PfWrite(Vfre, rig.PfRead(Vfre) | 2);
        rig.PostAdv(tx0, NicRig.Frame(NicRig.Mac(1), NicRig.Mac(0)));
        Assert.Equal(1u, again.Head);
    }

    [Fact]
    public void StatusReportsLinkSpeedIovModeAndVfCount()
    {
        using var rig = new NicRig();
        uint s = rig.PfRead(Status);
        Assert.Equal(StatusFd | StatusLu | StatusSpeed1000 | StatusGioMasterEnable, s);
        rig.EnableVfs(5);
        s = rig.PfRead(Status);
        Assert.Equal(StatusIov, s & StatusIov);
        Assert.Equal(5u, s >> StatusNumVfsShift & 0xF);
        Assert.Equal(s, rig.VfRead(4, Status));
        var pf1 = rig.M.PhysicalFunctions[1];
        ulong pf1Bar0 = pf1.BarWindow(pf1.Bars[0]).Base;
        Assert.Equal(1u << 2, rig.R(pf1Bar0 + Status) & 0xC);   // function ID
    }

    [Fact]
    public void PortMacComesFromTheSerialNumberAndSitsInRar0()
    {
        using var rig = new NicRig();
        Assert.Equal(new byte[] { 0x00, 0x1B, 0x21, 0x2B, 0x46, 0xE0 }, rig.Nic.MacAddress.ToArray());
        Assert.Equal(0x2B21_1B00u, rig.PfRead(Ral0));
        Assert.Equal(0x8000_E046u, rig.PfRead(Ral0 + 4));
        var pf1 = (PcieEmu.Core.Devices.Igb.IgbPhysicalFunction)rig.M.PhysicalFunctions[1];
        Assert.Equal(0xE1, pf1.Nic.MacAddress[5]);
    }

    [Fact]
    public void LegacyModeRaisesMsiForQueueCauses()
    {
        using var rig = new NicRig();
        // MSI on the PF: address 0xFEE00000, data 0x55, enable.
        rig.M.Write(NicRig.Pf0, 0x54, 4, 0xFEE0_0000);
        rig.M.Write(NicRig.Pf0, 0x5C, 2, 0x55);
        rig.M.Write(NicRig.Pf0, 0x52, 2, 1);
        rig.PfWrite(Rctl, RctlEn | RctlBam | RctlSecrc);
        var rx = rig.PfRx(0);
        using var sub = rig.M.Interrupts.Subscribe([NicRig.Pf0]);
        var frame = NicRig.Frame(NicRig.Broadcast, [0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
        Assert.Equal(1, rig.Nic.InjectFrame(frame));
        Assert.Empty(NicRig.Drain(sub));          // nothing enabled yet
        rig.PfWrite(Ims, IcrRxdw);                // unmasking a pending cause delivers it
        var ev = Assert.Single(NicRig.Drain(sub));
        Assert.Equal(InterruptKind.Msi, ev.Kind);
        Assert.Equal(IcrRxdw | IcrIntAsserted, rig.PfRead(Icr) & (IcrRxdw | IcrIntAsserted));
        Assert.Equal(1u, rig.PfRead(Eicr) & 1);   // RX queue 0 → EICR bit 0 in non-MSI-X mode
        Assert.Equal(1, rig.Nic.InjectFrame(frame));
        Assert.Single(NicRig.Drain(sub));
        _ = rx;
    }

    [Fact]
    public void IvarMapsTxAndRxQueuesOfTheVfToItsVectors()
    {
        using var rig = new NicRig(vfs: 2);
        rig.SetupVmdq(2);
        rig.EnableMsix(rig.VfRid(0), rig.VfBar3(0), 3);
        rig.EnableMsix(rig.VfRid(1), rig.VfBar3(1), 3);
        rig.VfWrite(0, Ivar0, (0x80u | 1) << 8);   // TX0 → vector 1
        rig.VfWrite(1, Ivar0, 0x80u | 0);          // RX0 → vector 0
        rig.VfWrite(0, Eims, 7);
        rig.VfWrite(1, Eims, 7);
        rig.VfWrite(0, Eiac, 7);
        rig.VfWrite(1, Eiam, 1);                   // a VF always auto-masks with EIAM
        var tx = rig.VfTx(0);
        rig.VfRx(1);
        using var sub = rig.M.Interrupts.Subscribe([rig.VfRid(0), rig.VfRid(1)]);
        rig.PostAdv(tx, NicRig.Frame(NicRig.Mac(1), NicRig.Mac(0)));
        var evs = NicRig.Drain(sub);
        Assert.Equal(2, evs.Count);
        Assert.Contains(evs, e => e.Rid == rig.VfRid(0) && e.Vector == 1);
        Assert.Contains(evs, e => e.Rid == rig.VfRid(1) && e.Vector == 0);
        Assert.Equal(0u, rig.VfRead(0, Eicr));      // auto-cleared
        Assert.Equal(6u, rig.VfRead(1, Eims));      // vector 0 auto-masked
        Assert.Equal(1u, rig.VfRead(1, Eicr));      // not auto-cleared; read clears
        Assert.Equal(0u, rig.VfRead(1, Eicr));
        // EICS raises a cause by software.
        rig.VfWrite(0, Eics, 4);
        Assert.Contains(NicRig.Drain(sub), e => e.Rid == rig.VfRid(0) && e.Vector == 2);
    }

    [Fact]
    public void IcrClearsOnReadOnlyWhenAssertedOrUnmaskedOrNsicr()
    {
        using var rig = new NicRig();
        // IMS = 0: a read always clears.
        rig.PfWrite(Ics, IcrLsc);
        Assert.Equal(IcrLsc, rig.PfRead(Icr));
        Assert.Equal(0u, rig.PfRead(Icr));
        // IMS ≠ 0 and the cause is masked (no interrupt asserted): the read does not clear.
        rig.PfWrite(Ims, IcrRxdw);
        rig.PfWrite(Ics, IcrLsc);
        Assert.Equal(IcrLsc, rig.PfRead(Icr));
        Assert.Equal(IcrLsc, rig.PfRead(Icr));
        // GPIE.NSICR: every read clears.
        rig.PfWrite(Gpie, GpieNsicr);
        Assert.Equal(IcrLsc, rig.PfRead(Icr));
        Assert.Equal(0u, rig.PfRead(Icr));
        rig.PfWrite(Gpie, 0);
        // An asserted interrupt (enabled cause): INT_ASSERTED set, the read clears everything.
        rig.PfWrite(Ics, IcrLsc | IcrRxdw);
        Assert.Equal(IcrLsc | IcrRxdw | IcrIntAsserted, rig.PfRead(Icr));
        Assert.Equal(0u, rig.PfRead(Icr));
        // ICR is also write-1-to-clear.
        rig.PfWrite(Ics, IcrLsc);
        rig.PfWrite(Icr, IcrLsc);
        Assert.Equal(0u, rig.PfRead(Icr));
    }

    [Fact]
    public void VfSecondQueueIsPfQueueNPlus8AndSignalsItsOwnIvarEntry()
    {
        using var rig = new NicRig(vfs: 2);
        rig.SetupVmdq(2);
        rig.EnableMsix(rig.VfRid(1), rig.VfBar3(1), 3);
        rig.VfWrite(1, Ivar0, (0x80u | 2) << 24);   // TX1 → vector 2
        rig.VfWrite(1, Eims, 7);
        var tx = rig.VfTx(1, q: 1);
        var rx0 = rig.VfRx(0);
        using var sub = rig.M.Interrupts.Subscribe([rig.VfRid(1)]);
        rig.PostAdv(tx, NicRig.Frame(NicRig.Mac(0), NicRig.Mac(1)));
        Assert.Equal(1u, rig.PfRead(TxQueues + 0x40 * 9 + Tdh));   // PF queue 1 + 8
        Assert.Equal(1u, rx0.Head);
        Assert.Equal(2u, Assert.Single(NicRig.Drain(sub)).Vector);
        // 8-byte MMIO writes land as two dwords (base low/high).
        rig.W(rig.VfBar0(1) + TxLegacy + 0x100 + Tdbal, 0x1234_5678_0000_0080UL, 8);
        Assert.Equal(0x80u, rig.PfRead(TxQueues + 0x40 * 9 + Tdbal));
        Assert.Equal(0x1234_5678u, rig.PfRead(TxQueues + 0x40 * 9 + Tdbah));
    }

    [Fact]
    public void PfFlrResetsTheNicAndRemovesVfs()
    {
        using var rig = new NicRig(vfs: 2);
        rig.SetupVmdq(2);
        rig.PfTx(0);
        rig.M.Write(NicRig.Pf0, NicRig.PcieCap + 8, 2, 0x8000);
        Assert.Empty(rig.Pf.VirtualFunctions);
        // FLR resets BAR0 and Command: the driver restores them, as after any FLR.
        rig.M.Write(NicRig.Pf0, 0x10, 4, (uint)rig.PfBar0);
        rig.M.Write(NicRig.Pf0, 0x04, 2, 0x6);
        Assert.Equal(0u, rig.PfRead(Mrqc));
        Assert.Equal(0u, rig.PfRead(TxQueues + Tdlen));
        Assert.Equal(0x8000_E046u, rig.PfRead(Ral0 + 4));
    }

    [Fact]
    public void EitrHoldsASecondCauseUntilTheIntervalEnds()
    {
        // The machine's clock is a fake: the interval ends when the test says so, not after a sleep.
        var clock = new FakeTimeProvider();
        using var rig = new NicRig(vfs: 2, time: clock);
        rig.SetupVmdq(2);
        rig.EnableMsix(rig.VfRid(1), rig.VfBar3(1), 3);
        rig.VfWrite(1, Ivar0, 0x80);            // RX0 → vector 0
        rig.VfWrite(1, Eiac, 1);
        rig.VfWrite(1, Eims, 1);
        rig.VfWrite(1, Eitr, 8000u << 2);       // 8 ms
        rig.VfRx(1);
        using var sub = rig.M.Interrupts.Subscribe([rig.VfRid(1)]);
        var frame = NicRig.Frame(NicRig.Mac(1), [0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
        Assert.Equal(1, rig.Nic.InjectFrame(frame));
        Assert.Equal(0L, Assert.Single(NicRig.Drain(sub)).TimestampNs);   // machine time starts at 0
        clock.Advance(TimeSpan.FromMilliseconds(3));
        Assert.Equal(1, rig.Nic.InjectFrame(frame));
        Assert.Empty(NicRig.Drain(sub));                           // held by EITR
        Assert.Equal(1u, EicrOf(rig));                             // the cause is pending
        clock.Advance(TimeSpan.FromMilliseconds(5) - TimeSpan.FromTicks(1));
        Assert.Empty(NicRig.Drain(sub));                           // one tick before the interval ends
        clock.Advance(TimeSpan.FromTicks(1));
        var ev = Assert.Single(NicRig.Drain(sub));                 // sent at exactly 8 ms
        Assert.Equal(0u, ev.Vector);
        Assert.Equal(8_000_000L, ev.TimestampNs);
        Assert.Equal(0u, EicrOf(rig));                             // sent, then auto-cleared (EIAC)

        // A cause after the interval ended goes at once (and starts a new interval).
        clock.Advance(TimeSpan.FromMilliseconds(8));
        Assert.Equal(1, rig.Nic.InjectFrame(frame));
        Assert.Single(NicRig.Drain(sub));

        // Intervals are per vector: while vector 0 is held, vector 1 (no interval) goes at once.
        rig.VfWrite(1, Eitr, 0x1FFFu << 2);
        rig.VfWrite(1, Eims, 3);
        Assert.Equal(1, rig.Nic.InjectFrame(frame));
        Assert.Empty(NicRig.Drain(sub));                           // vector 0 still inside its 8 ms
        rig.VfWrite(1, Eics, 2);
        Assert.Equal(1u, Assert.Single(NicRig.Drain(sub)).Vector);
        // The new EITR value (8191 us) applies from the next send: the held cause goes when the
        // running 8 ms interval ends.
        clock.Advance(TimeSpan.FromMilliseconds(8));
        Assert.Equal(0u, Assert.Single(NicRig.Drain(sub)).Vector);
    }

    // The VF's EICR as latched (an MMIO read would clear it and so change what the timer sends).
    private static uint EicrOf(NicRig rig)
    {
        lock (rig.M.SyncRoot) return rig.Nic.VfRegisters[1]["EICR"].Value;
    }
}
