using PcieEmu.Core.Config;
using PcieEmu.Core.Platform;
using PcieEmu.Core.Topology;

namespace PcieEmu.Core.Tests.Config;

/// <summary>
/// A sweep over every byte of every function's config space (host bridge, root port, both
/// PFs, enabled VFs): RO bits ignore writes, RW bits take them, RW1C bits clear only where a 1
/// is written, bytes outside any header register or capability read 0, and byte, word and
/// dword reads agree everywhere.
/// </summary>
public class ConfigSweepTests
{
    private static Machine MachineWithVfs()
    {
        var m = TestMachine.Create();
        foreach (var pf in new ushort[] { 0x0100, 0x0101 })
        {
            m.EnableVfs(pf, 3);
        }
        return m;
    }

    public static TheoryData<string> Functions => new() { "hb", "rp", "pf0", "pf1", "pf0.vf0", "pf1.vf2" };

    private static PciFunction Pick(Machine m, string name) => name switch
    {
        "hb" => m.HostBridge,
        "rp" => m.RootPort,
        "pf0" => m.PhysicalFunctions[0],
        "pf1" => m.PhysicalFunctions[1],
        "pf0.vf0" => m.PhysicalFunctions[0].VirtualFunctions[0],
        _ => m.PhysicalFunctions[1].VirtualFunctions[2],
    };

    // Bits whose write has an action covered by dedicated tests (FLR, VF Enable, bus/window moves
    // that would make the function unreachable): the sweep writes 0 there.
    private static byte Avoid(PciFunction f, int off)
    {
        if (f is PhysicalFunction && off == 0x168) return 0x01;           // VF Enable
        if (f is PhysicalFunction or VirtualFunction && off == 0xA9) return 0x80;   // Initiate FLR
        return 0;
    }

    [Theory, MemberData(nameof(Functions))]
    public void EveryByteBehavesAsItsMasksDeclare(string which)
    {
        using var m = MachineWithVfs();
        var f = Pick(m, which);
        ushort rid = f.Rid;
        var cs = f.Config;
        for (int off = 0; off < ConfigSpace.Size; off++)
        {
            byte wm = cs.WritableMask[off], w1c = cs.W1cMask[off];
            Assert.True((wm & w1c) == 0, $"0x{off:X}: a bit is both RW and RW1C");
            byte avoid = Avoid(f, off);
            byte before = (byte)m.Read(rid, off, 1);
            // Write ones: RW bits become 1, RW1C bits clear, RO bits keep their value.
            m.Write(rid, off, 1, (uint)(0xFF & ~avoid));
            byte after = (byte)m.Read(rid, off, 1);
            byte expect = (byte)(((before & ~wm) | (wm & ~avoid)) & ~(w1c & ~avoid));
            if (!SideEffectByte(f, off)) Assert.True(expect == after, $"{which} 0x{off:X}: after writing FF expected {expect:X2} got {after:X2}");
            // Write zeros: RW bits become 0, RW1C bits untouched.
            m.Write(rid, off, 1, 0);
            byte zero = (byte)m.Read(rid, off, 1);
            byte expectZero = (byte)(after & ~wm);
            if (!SideEffectByte(f, off)) Assert.True(expectZero == zero, $"{which} 0x{off:X}: after writing 00 expected {expectZero:X2} got {zero:X2}");
            // Put the byte back so the function stays reachable and sane.
            m.Write(rid, off, 1, before);
        }
    }

    // Bytes whose hooks change them beyond the masks (ignored values, self-clearing bits).
    private static bool SideEffectByte(PciFunction f, int off) => f switch
    {
        PhysicalFunction => off is 0x170 or 0x171 or 0x180 or 0x181 or 0x182 or 0x183 or 0x44,   // NumVFs > TotalVFs ignored; page size must be one supported bit; D-state
        RootPort => off is 0x50,                                                                   // Retrain Link reads 0
        _ => false,
    };

    [Theory, MemberData(nameof(Functions))]
    public void ByteWordAndDwordReadsAgree(string which)
    {
        using var m = MachineWithVfs();
        var f = Pick(m, which);
        for (int off = 0; off < ConfigSpace.Size; off += 4)
        {
            uint d = m.Read(f.Rid, off, 4);
            Assert.Equal(d & 0xFFFF, m.Read(f.Rid, off, 2));
            Assert.Equal(d >> 16, m.Read(f.Rid, off + 2, 2));
            for (int i = 0; i < 4; i++) Assert.Equal((d >> (8 * i)) & 0xFF, m.Read(f.Rid, off + i, 1));
            Assert.Equal((d >> 8) & 0xFFFF, m.Read(f.Rid, off + 1, 2));
        }
    }

    [Theory, MemberData(nameof(Functions))]
    public void BytesOutsideHeaderAndCapabilitiesAreReservedZero(string which)
    {
        using var m = MachineWithVfs();
        var f = Pick(m, which);
        var owned = new bool[ConfigSpace.Size];
        for (int i = 0; i < 0x40; i++) owned[i] = true;
        foreach (var c in f.Capabilities) for (int i = 0; i < c.Length; i++) owned[c.Offset + i] = true;
        if (f is PhysicalFunction) for (int i = 0; i < 4; i++) owned[0xE0 + i] = true;   // unlinked VPD header
        for (int off = 0; off < ConfigSpace.Size; off++)
        {
            if (owned[off]) continue;
            Assert.True(f.Config.Bytes[off] == 0, $"0x{off:X} reads {f.Config.Bytes[off]:X2}");
            Assert.True(f.Config.WritableMask[off] == 0 && f.Config.W1cMask[off] == 0, $"0x{off:X} is not read-only");
        }
    }
}
