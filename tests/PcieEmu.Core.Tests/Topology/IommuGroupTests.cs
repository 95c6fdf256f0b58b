using System.Text;
using PcieEmu.Core.Config;
using PcieEmu.Core.Platform;
using PcieEmu.Core.Tests.Config;

namespace PcieEmu.Core.Tests.Topology;

/// <summary>
/// IOMMU groups computed the way Linux computes them for PCI devices (pci_device_group without
/// DMA aliases or device-specific quirks): walk up from the device; at the first bridge whose
/// path to the root has ACS SV|RR|CR|UF enabled (REQ_ACS_FLAGS) isolation holds; below a bridge
/// without it everything shares the bridge's group; functions of a multifunction device without
/// ACS share a group. Everything is read from config space through the machine's config path.
/// </summary>
public class IommuGroupTests
{
    private const ushort ReqAcsFlags = 0x1 | 0x4 | 0x8 | 0x10;   // SV, RR, CR, UF

    private sealed class LinuxGrouping(Machine m)
    {
        private uint Cfg(ushort rid, int off, int width)
        {
            uint v = m.Read(rid, off & ~3);
            return (v >> (8 * (off & 3))) & (width == 4 ? 0xFFFF_FFFF : (1u << (8 * width)) - 1);
        }

        public int ExtCap(ushort rid, ushort id)
        {
            for (int off = 0x100, n = 0; off != 0 && n < 64; n++)
            {
                uint h = Cfg(rid, off, 4);
                if ((h & 0xFFFF) == id) return off;
                off = (int)(h >> 20) & 0xFFC;
            }
            return 0;
        }

        private int PcieType(ushort rid)
        {
            for (int off = (int)Cfg(rid, 0x34, 1) & 0xFC, n = 0; off != 0 && n < 48; n++)
            {
                if (Cfg(rid, off, 1) == 0x10) return (int)(Cfg(rid, off + 2, 2) >> 4) & 0xF;
                off = (int)Cfg(rid, off + 1, 1) & 0xFC;
            }
            return -1;
        }

        // VF routing IDs and their PF, from each PF's SR-IOV capability (as Linux enumerates them).
        public Dictionary<ushort, ushort> VfParents()
        {
            var d = new Dictionary<ushort, ushort>();
            foreach (var f in m.EnumerateFunctions())
            {
                int sriov = ExtCap(f.Rid, 0x0010);
                if (sriov == 0 || (Cfg(f.Rid, sriov + 8, 2) & 1) == 0) continue;
                uint num = Cfg(f.Rid, sriov + 0x10, 2), offset = Cfg(f.Rid, sriov + 0x14, 2), stride = Cfg(f.Rid, sriov + 0x16, 2);
                for (uint i = 0; i < num; i++) d[(ushort)(f.Rid + offset + i * stride)] = f.Rid;
            }
            return d;
        }

        private bool Multifunction(ushort rid, Dictionary<ushort, ushort> vfs) => !vfs.ContainsKey(rid) && (Cfg(rid, 0x0E, 1) & 0x80) != 0;

        private bool AcsFlagsEnabled(ushort rid, ushort flags)
        {
            int pos = ExtCap(rid, 0x000D);
            if (pos == 0) return false;
            flags &= (ushort)(Cfg(rid, pos + 4, 2) | 0x20);
            return (Cfg(rid, pos + 6, 2) & flags) == flags;
        }

        // pci_acs_enabled: ports by their ACS; single-function endpoints and VFs are isolated; multifunction devices need ACS.
        private bool AcsEnabled(ushort rid, Dictionary<ushort, ushort> vfs) => PcieType(rid) switch
        {
            4 or 6 => AcsFlagsEnabled(rid, ReqAcsFlags),
            _ => !Multifunction(rid, vfs) || AcsFlagsEnabled(rid, ReqAcsFlags),
        };

        public Dictionary<ushort, string> Groups()
        {
            var vfs = VfParents();
            var bridges = new Dictionary<int, ushort>();   // secondary bus → bridge
            foreach (var f in m.EnumerateFunctions())
                if ((Cfg(f.Rid, 0x0E, 1) & 0x7F) == 1) bridges[(int)Cfg(f.Rid, 0x19, 1)] = f.Rid;
            var groups = new Dictionary<ushort, string>();
            foreach (var f in m.EnumerateFunctions())
            {
                ushort pdev = f.Rid;
                int bus = f.Rid >> 8;
                // A VF's bus may be a virtual one with no bridge: its parent is the PF's bus.
                while (bus != 0)
                {
                    if (!bridges.TryGetValue(bus, out ushort self))
                    {
                        bus = vfs.TryGetValue(pdev, out ushort pf) ? pf >> 8 : throw new InvalidOperationException($"bus {bus} has no bridge");
                        continue;
                    }
                    if (AcsPathEnabled(self, vfs)) break;
                    pdev = self;
                    bus = self >> 8;
                }
                groups[f.Rid] = Multifunction(pdev, vfs) && !AcsEnabled(pdev, vfs)
                    ? $"slot {pdev >> 8:X2}:{(pdev >> 3) & 0x1F:X2}"
                    : $"device {pdev:X4}";
            }
            return groups;
        }

        // pci_acs_path_enabled(start, NULL, flags): every device from start up to the root bus.
        private bool AcsPathEnabled(ushort start, Dictionary<ushort, ushort> vfs)
        {
            if (!AcsEnabled(start, vfs)) return false;
            if (start >> 8 != 0) throw new InvalidOperationException("deeper hierarchies are not modelled here");
            return true;
        }
    }

    private static void EnableAcsLikeLinux(Machine m, LinuxGrouping g)
    {
        // pci_std_enable_acs: ctrl |= cap & (SV | RR | CR | UF).
        ushort rp = m.RootPort.Rid;
        int pos = g.ExtCap(rp, 0x000D);
        Assert.NotEqual(0, pos);
        uint cap = m.Read(rp, pos + 4) & 0xFFFF;
        m.Write(rp, pos + 6, 2, cap & ReqAcsFlags);
    }

    [Fact]
    public void WithTheRootPortsAcsEnabledEveryVfHasItsOwnGroup()
    {
        using var m = TestMachine.Create();
        m.EnableVfs(0x0100, 7);
        m.EnableVfs(0x0101, 7);
        var g = new LinuxGrouping(m);
        EnableAcsLikeLinux(m, g);
        var groups = g.Groups();
        var vfs = g.VfParents();
        Assert.Equal(14, vfs.Count);
        foreach (var vf in vfs.Keys)
            Assert.Single(groups, kv => kv.Value == groups[vf]);
        // The two PFs are one multifunction device without ACS: one group (no device quirks applied).
        Assert.Equal(groups[0x0100], groups[0x0101]);
        Assert.DoesNotContain(vfs.Keys, vf => groups[vf] == groups[0x0100]);
        Assert.NotEqual(groups[m.RootPort.Rid], groups[0x0100]);
    }

    [Fact]
    public void WithoutAcsEnabledEverythingBelowTheRootPortSharesItsGroup()
    {
        using var m = TestMachine.Create();
        m.EnableVfs(0x0100, 3);
        var groups = new LinuxGrouping(m).Groups();
        string rp = groups[m.RootPort.Rid];
        Assert.All(groups.Where(kv => kv.Key >> 8 != 0), kv => Assert.Equal(rp, kv.Value));
    }

    [Fact]
    public void LspciDecodesTheRootPortsAcsCapability()
    {
        using var m = TestMachine.Create();
        var g = new LinuxGrouping(m);
        EnableAcsLikeLinux(m, g);
        var bytes = new byte[ConfigSpace.Size];
        for (int off = 0; off < ConfigSpace.Size; off += 4) BitConverter.TryWriteBytes(bytes.AsSpan(off), m.Read(m.RootPort.Rid, off));
        var sb = new StringBuilder();
        LspciDump.Append(sb, m.RootPort.Rid, bytes);
        string text = LspciDecodeTests.RunLspci(sb.ToString());
        Assert.Contains("Capabilities: [138 v1] Access Control Services", text);
        Assert.Contains("ACSCap:\tSrcValid+ TransBlk+ ReqRedir+ CmpltRedir+ UpstreamFwd+ EgressCtrl- DirectTrans-", text);
        Assert.Contains("ACSCtl:\tSrcValid+ TransBlk- ReqRedir+ CmpltRedir+ UpstreamFwd+ EgressCtrl- DirectTrans-", text);
    }
}
