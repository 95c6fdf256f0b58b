using PcieEmu.Core.Tests.Registers;

namespace PcieEmu.Core.Tests.Devices.Igb;

/// <summary>
/// Layout of the PF and VF BAR0 files (hand-written offsets) and the holes between registers,
/// through the machine's MMIO path. Access types and reset values are checked against the
/// datasheet table in <see cref="Facts.IgbRegisterFactsTests"/>, not against the declarations.
/// </summary>
public class RegisterSweepTests
{
    private static (RegisterSweep.ReadFn, RegisterSweep.WriteFn) Mmio(NicRig rig, ulong bar) => (
        (o, w) => rig.M.ReadMmio(bar + o, w).Value,
        (o, w, v) => rig.M.WriteMmio(bar + o, w, v));

    [Fact]
    public void UnmappedOffsetsReadZeroAndIgnoreWrites()
    {
        using var rig = new NicRig(vfs: 1);
        var (r, w) = Mmio(rig, rig.PfBar0);
        Assert.True(RegisterSweep.SweepHoles(rig.Nic.PfRegisters, r, w) > 20000);
        var (vr, vw) = Mmio(rig, rig.VfBar0(0));
        Assert.True(RegisterSweep.SweepHoles(rig.Nic.VfRegisters[0], vr, vw) > 3000);
    }

    [Fact]
    public void DeclaredLayoutMatchesTheSpecOffsets()
    {
        using var rig = new NicRig(vfs: 1);
        var pf = rig.Nic.PfRegisters;
        (string Name, uint Offset)[] pfExpected =
        [
            ("CTRL", 0x0), ("STATUS", 0x8), ("CTRL_EXT", 0x18), ("ICR", 0xC0), ("ICS", 0xC8), ("IMS", 0xD0), ("IMC", 0xD8), ("IAM", 0xE0),
            ("RCTL", 0x100), ("TCTL", 0x400), ("GPIE", 0x1514), ("EICS", 0x1520), ("EIMS", 0x1524), ("EIMC", 0x1528), ("EIAC", 0x152C),
            ("EIAM", 0x1530), ("EICR", 0x1580), ("EITR[9]", 0x16A4), ("IVAR0[7]", 0x171C), ("IVAR_MISC", 0x1740), ("VMBMEM[16]", 0x840),
            ("P2VMAILBOX[7]", 0xC1C), ("MBVFICR", 0xC80), ("MBVFIMR", 0xC84), ("VFLRE", 0xC88), ("VFRE", 0xC8C), ("VFTE", 0xC90),
            ("RDT[0] (legacy)", 0x2818), ("TDT[3] (legacy)", 0x3B18), ("DTXSWC", 0x3500), ("MPC", 0x4010), ("GPRC", 0x4074), ("GPTC", 0x4080),
            ("GORCL", 0x4088), ("GOTCL", 0x4090), ("MTA[0]", 0x5200), ("RAL[0]", 0x5400), ("RAH[15]", 0x547C), ("RAL[16]", 0x54E0),
            ("MRQC", 0x5818), ("VT_CTL", 0x581C), ("VMOLR[7]", 0x5AEC), ("RXDCTL[15]", 0xC3E8), ("RQDPC[1]", 0xC070),
            ("TDWBAL[15]", 0xE3F8), ("TXDCTL[0]", 0xE028),
        ];
        foreach (var (name, off) in pfExpected) Assert.Same(pf[name], pf.At(off));
        var vf = rig.Nic.VfRegisters[0];
        (string Name, uint Offset)[] vfExpected =
        [
            ("CTRL", 0x0), ("STATUS", 0x8), ("VMBMEM[0]", 0x800), ("VFMAILBOX", 0xC40), ("GPRC", 0xF10), ("GOTLBC", 0xF50),
            ("EICR", 0x1580), ("EITR[2]", 0x1688), ("IVAR0", 0x1700), ("IVAR_MISC", 0x1740),
            ("RDT[0]", 0x2818), ("RDT[1]", 0x2918), ("TDT[0]", 0x3818), ("TDWBAH[1]", 0x393C),
        ];
        foreach (var (name, off) in vfExpected) Assert.Same(vf[name], vf.At(off));
        // VF 0 owns PF queues 0 and 8; VF n's mailbox memory is the PF's VMBMEM at 0x800 + 64n.
        Assert.Same(pf["TDT[0]"], vf["TDT[0]"]);
        Assert.Same(pf["TDT[8]"], vf["TDT[1]"]);
        Assert.Same(pf["VMBMEM[16]"], rig.Nic.VfRegisters.Count > 1 ? rig.Nic.VfRegisters[1]["VMBMEM[0]"] : pf["VMBMEM[16]"]);
    }
}
