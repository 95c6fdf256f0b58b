using PcieEmu.Core.Config;
using PcieEmu.Core.Platform;

namespace PcieEmu.Core.Topology;

/// <summary>
/// Firmware enumeration as an SR-IOV aware BIOS leaves a machine: bus numbers (the port's
/// subordinate bus covers every bus the VFs can occupy at TotalVFs, with or without ARI), BARs
/// assigned largest first from the MMIO window, VF BAR apertures sized for TotalVFs, root port
/// windows that hold them, I/O, Memory Space and Bus Master enabled on the port and the PFs.
/// NumVFs and VF Enable stay 0. Every step is an ordinary config write.
/// </summary>
public static class Firmware
{
    /// <summary>I/O window base for the root port (4 KiB granular).</summary>
    public const ulong IoWindowBase = 0x1000;

    /// <summary>Runs enumeration on <paramref name="m"/>.</summary>
    public static void Enumerate(Machine m)
    {
        var rp = m.RootPort;
        void Cfg(PciFunction f, int off, int w, uint v) => f.WriteConfig(off, w, v);

        // Bus numbers: primary 0, secondary 1, subordinate = the highest bus a VF could use.
        const int secondary = 1;
        int subordinate = secondary;
        foreach (var pf in m.PhysicalFunctions)
        {
            if (pf.Sriov is not { } s) continue;
            int pfRid = secondary << 8 | pf.FunctionNumber;
            foreach (int first in new[] { (int)s.Parameters.FirstVfOffset, s.Parameters.FirstVfOffsetAri })
            {
                int last = pfRid + first + (s.Parameters.TotalVfs - 1) * s.Parameters.VfStride;
                subordinate = Math.Max(subordinate, Math.Min(0xFF, last >> 8));
            }
        }
        Cfg(rp, ConfigRegs.PrimaryBus, 4, (uint)(0 | secondary << 8 | subordinate << 16));

        // Collect memory requests: PF BARs and VF BAR apertures (per-VF size × TotalVFs).
        var mem = new List<(ulong Size, Action<ulong> Assign)>();
        var io = new List<(ulong Size, Action<ulong> Assign)>();
        foreach (var pf in m.PhysicalFunctions)
        {
            foreach (var bar in pf.Bars)
            {
                var b = bar;
                if (bar.IsIo) io.Add((bar.Size, a => b.WriteAddress(pf.Config, a)));
                else mem.Add((bar.Size, a => b.WriteAddress(pf.Config, a)));
            }
            if (pf.Sriov is { } s)
            {
                foreach (var bar in s.Parameters.VfBars)
                {
                    var b = bar;
                    ulong aperture = s.PerVfBarSize(bar) * s.Parameters.TotalVfs;
                    mem.Add((aperture, a => b.WriteAddress(pf.Config, a, s.Offset + Config.Capabilities.SriovCapability.VfBar0)));
                }
            }
        }

        ulong cursor = m.Options.MmioWindowBase;
        foreach (var (size, assign) in mem.OrderByDescending(r => r.Size))
        {
            cursor = AlignUp(cursor, size);
            assign(cursor);
            cursor += size;
        }
        ulong memLimit = AlignUp(Math.Max(cursor, m.Options.MmioWindowBase + 1), 1 << 20) - 1;
        if (memLimit >= m.Options.IommuBase) throw new InvalidOperationException("MMIO resources do not fit below the IOMMU block");
        Cfg(rp, ConfigRegs.MemoryBase, 2, (uint)(m.Options.MmioWindowBase >> 16) & 0xFFF0);
        Cfg(rp, ConfigRegs.MemoryLimit, 2, (uint)(memLimit >> 16) & 0xFFF0);
        // No prefetchable resources: base above limit closes the window.
        Cfg(rp, ConfigRegs.PrefMemoryBase, 4, 0x0000_FFF0);
        Cfg(rp, ConfigRegs.PrefBaseUpper, 4, 0);
        Cfg(rp, ConfigRegs.PrefLimitUpper, 4, 0);

        ulong ioCursor = IoWindowBase;
        foreach (var (size, assign) in io.OrderByDescending(r => r.Size))
        {
            ioCursor = AlignUp(ioCursor, size);
            assign(ioCursor);
            ioCursor += size;
        }
        ulong ioLimit = AlignUp(Math.Max(ioCursor, IoWindowBase + 1), 0x1000) - 1;
        Cfg(rp, ConfigRegs.IoBase, 2, (uint)((IoWindowBase >> 8) & 0xF0 | ((ioLimit >> 8) & 0xF0) << 8));
        Cfg(rp, ConfigRegs.IoBaseUpper, 4, 0);

        const uint enable = ConfigRegs.CmdIoSpace | ConfigRegs.CmdMemorySpace | ConfigRegs.CmdBusMaster;
        Cfg(rp, ConfigRegs.Command, 2, enable | ConfigRegs.CmdSerrEnable);
        byte line = 0x0B;
        foreach (var pf in m.PhysicalFunctions)
        {
            Cfg(pf, ConfigRegs.CacheLineSize, 1, 0x10);
            Cfg(pf, ConfigRegs.InterruptLine, 1, line++);
            Cfg(pf, ConfigRegs.Command, 2, enable);
        }
    }

    private static ulong AlignUp(ulong v, ulong a) => (v + a - 1) & ~(a - 1);
}
