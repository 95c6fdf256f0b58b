using PcieEmu.Core.Platform;
using PcieEmu.Core.Topology;

namespace PcieEmu.Core.Tests.Config;

/// <summary>Every function's capability lists are well formed: walked as Linux and lspci walk them.</summary>
public class CapabilityChainTests
{
    internal static List<(int Off, int Id)> WalkStandard(Machine m, ushort rid)
    {
        var list = new List<(int, int)>();
        if ((m.Read(rid, 0x06, 2) & 0x10) == 0) return list;
        int off = (int)m.Read(rid, 0x34, 1) & ~3;
        var seen = new HashSet<int>();
        while (off != 0)
        {
            Assert.True(off >= 0x40 && off < 0x100, $"pointer 0x{off:X} out of range");
            Assert.True(seen.Add(off), "chain looped");
            uint id = m.Read(rid, off, 1);
            Assert.NotEqual(0xFFu, id);
            list.Add((off, (int)id));
            off = (int)m.Read(rid, off + 1, 1) & ~3;
        }
        return list;
    }

    internal static List<(int Off, int Id)> WalkExtended(Machine m, ushort rid)
    {
        var list = new List<(int, int)>();
        int off = 0x100;
        var seen = new HashSet<int>();
        while (off != 0)
        {
            uint hdr = m.Read(rid, off);
            if (hdr == 0 || hdr == 0xFFFF_FFFF) break;
            Assert.True(seen.Add(off), "chain looped");
            list.Add((off, (int)(hdr & 0xFFFF)));
            off = (int)(hdr >> 20) & 0xFFC;
            Assert.True(off == 0 || off >= 0x100, "extended pointer below 0x100");
        }
        return list;
    }

    [Fact]
    public void PfChainsMatchTheRealPart()
    {
        using var m = TestMachine.Create();
        foreach (ushort pf in new ushort[] { 0x0100, 0x0101 })
        {
            Assert.Equal([(0x40, 0x01), (0x50, 0x05), (0x70, 0x11), (0xA0, 0x10)], WalkStandard(m, pf));
            Assert.Equal([(0x100, 0x01), (0x140, 0x03), (0x150, 0x0E), (0x160, 0x10)], WalkExtended(m, pf));
        }
        Assert.Equal(1u, m.Read(0x0100, 0x155, 1));     // ARI Next Function: PF1
        Assert.Equal(0u, m.Read(0x0101, 0x155, 1));     // PF1 ends the ARI list
        Assert.NotEqual(m.Read(0x0100, 0x144), m.Read(0x0101, 0x144));   // own DSN
    }

    [Fact]
    public void VfRootPortAndHostBridgeChainsAreWellFormed()
    {
        using var m = TestMachine.Create();
        m.EnableVfs(0x0100, 1);
        Assert.Equal([(0x70, 0x11), (0xA0, 0x10)], WalkStandard(m, 0x0280));
        Assert.Equal([(0x100, 0x01), (0x150, 0x0E)], WalkExtended(m, 0x0280));
        Assert.Equal(0x10000000u, m.Read(0x0280, 0xA4) & 0x10000000);   // VF is FLR capable
        var rp = WalkStandard(m, TestMachine.RootPort);
        Assert.Contains((0x40, 0x10), rp);
        uint pcieCaps = m.Read(TestMachine.RootPort, 0x42, 2);
        Assert.Equal(0x4u, pcieCaps >> 4 & 0xF);                             // Device/Port Type: Root Port
        Assert.Equal(0x2u, pcieCaps & 0xF);                                  // Capability Version 2
        Assert.Equal(0x2u, m.Read(0x0100, 0xA2, 2) & 0xF);                   // the PF's too (the real part's dump)
        Assert.Equal(0x0u, m.Read(0x0100, 0xA2, 2) >> 4 & 0xF);              // PCI Express Endpoint
        Assert.Equal(0x20u, m.Read(TestMachine.RootPort, 0x64) & 0x20);       // ARI forwarding supported
        Assert.Empty(WalkStandard(m, 0x0000));
    }
}
