using PcieEmu.Core.Config;
using PcieEmu.Core.Platform;
using PcieEmu.Core.Topology;

namespace PcieEmu.Core.Tests.Config;

/// <summary>
/// A sweep over every byte of every function's config space (host bridge, root port, both
/// PFs, enabled VFs): bytes outside any header register or capability read 0, and byte, word
/// and dword reads agree everywhere. Access types per bit are checked against the spec table in
/// <see cref="Facts.ConfigSpaceFactsTests"/>.
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
            uint v = m.Read(f.Rid, off, 1);
            Assert.True(v == 0, $"0x{off:X} reads {v:X2}");
            m.Write(f.Rid, off, 1, 0xFF);
            v = m.Read(f.Rid, off, 1);
            Assert.True(v == 0, $"0x{off:X} reads {v:X2} after a write of FF");
        }
    }
}
