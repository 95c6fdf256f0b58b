using System.Globalization;
using PcieEmu.Core.Config;
using PcieEmu.Core.Config.Capabilities;
using PcieEmu.Core.Platform;

namespace PcieEmu.Core.Topology;

/// <summary>
/// Firmware enumeration as an SR-IOV aware BIOS leaves a machine, for any topology: bus numbers
/// depth first (each port's subordinate bus covers every bus below it, including the buses the VFs
/// of its devices can occupy at TotalVFs, with or without ARI); BARs and VF BAR apertures (sized for
/// TotalVFs) assigned largest alignment first inside per-port windows (memory and prefetchable 1 MiB
/// granular, I/O 4 KiB granular), nested so each bridge's window holds everything below it; I/O,
/// Memory Space and Bus Master enabled on the ports and the devices' functions. NumVFs and VF Enable
/// stay 0. Every step is an ordinary config write.
/// </summary>
public static class Firmware
{
    /// <summary>I/O window base for the root ports (4 KiB granular).</summary>
    public const ulong IoWindowBase = 0x1000;
    /// <summary>Top of I/O space the windows may use.</summary>
    public const ulong IoSpaceEnd = 0x1_0000;

    private const ulong MemGranule = 1 << 20, IoGranule = 0x1000;

    /// <summary>What enumeration will write, computed without touching the machine.</summary>
    public sealed class EnumerationPlan
    {
        internal List<Action> Steps { get; } = [];
        /// <summary>Bus numbers (primary, secondary, subordinate) each port gets.</summary>
        public IReadOnlyDictionary<PciBridge, (byte Primary, byte Secondary, byte Subordinate)> Buses => _buses;
        internal readonly Dictionary<PciBridge, (byte, byte, byte)> _buses = [];
    }

    /// <summary>Runs enumeration on <paramref name="m"/>.</summary>
    public static void Enumerate(Machine m) => Apply(m, Plan(m));

    /// <summary>Plans enumeration of <paramref name="m"/>: throws <see cref="MachineDescriptionException"/> naming the
    /// description entry when bus numbers do not fit (above 255) or the BARs do not fit below the IOMMU block.</summary>
    public static EnumerationPlan Plan(Machine m)
    {
        ArgumentNullException.ThrowIfNull(m);
        var plan = new EnumerationPlan();
        int next = 1;
        foreach (var rp in m.RootPorts) AssignBuses(m, plan, rp, 0, ref next);

        ulong memCursor = m.Options.MmioWindowBase, ioCursor = IoWindowBase;
        var layouts = m.RootPorts.Select(Layout).ToList();
        for (int i = 0; i < layouts.Count; i++)
        {
            var (rp, l) = (m.RootPorts[i], layouts[i]);
            memCursor = Place(plan, rp, l.Mem, memCursor, ConfigRegs.MemoryBase);
            if (memCursor > m.Options.IommuBase) throw Exhausted(m, rp, l, memCursor);
        }
        for (int i = 0; i < layouts.Count; i++)
        {
            var (rp, l) = (m.RootPorts[i], layouts[i]);
            memCursor = Place(plan, rp, l.Pref, memCursor, ConfigRegs.PrefMemoryBase);
            if (memCursor > m.Options.IommuBase) throw Exhausted(m, rp, l, memCursor);
        }
        for (int i = 0; i < layouts.Count; i++)
        {
            var (rp, l) = (m.RootPorts[i], layouts[i]);
            ioCursor = Place(plan, rp, l.Io, ioCursor, ConfigRegs.IoBase);
            if (ioCursor > IoSpaceEnd)
                throw new MachineDescriptionException(rp.Path, string.Create(CultureInfo.InvariantCulture,
                    $"I/O space exhausted: the I/O BARs below it end at 0x{ioCursor:X}, beyond 0x{IoSpaceEnd - 1:X}"));
        }

        const uint enable = ConfigRegs.CmdIoSpace | ConfigRegs.CmdMemorySpace | ConfigRegs.CmdBusMaster;
        foreach (var b in m.Bridges) plan.Steps.Add(() => b.WriteConfig(ConfigRegs.Command, 2, enable | ConfigRegs.CmdSerrEnable));
        byte line = 0x0B;
        foreach (var d in m.Devices)
            foreach (var f in d.Device.Functions)
            {
                byte l = line++;
                plan.Steps.Add(() =>
                {
                    f.WriteConfig(ConfigRegs.CacheLineSize, 1, 0x10);
                    f.WriteConfig(ConfigRegs.InterruptLine, 1, l);
                    f.WriteConfig(ConfigRegs.Command, 2, enable);
                });
            }
        return plan;
    }

    /// <summary>Writes what <paramref name="plan"/> computed.</summary>
    public static void Apply(Machine m, EnumerationPlan plan)
    {
        ArgumentNullException.ThrowIfNull(m);
        ArgumentNullException.ThrowIfNull(plan);
        foreach (var (b, (p, s, sub)) in plan._buses)
            b.WriteConfig(ConfigRegs.PrimaryBus, 4, (uint)(p | s << 8 | sub << 16));
        foreach (var step in plan.Steps) step();
    }

    // Depth first: a port takes the next bus as secondary; its subordinate covers its children and its devices' VFs.
    private static void AssignBuses(Machine m, EnumerationPlan plan, PciBridge port, int primary, ref int next)
    {
        int secondary = next++;
        if (secondary > 0xFF)
            throw new MachineDescriptionException(port.Path, "bus numbers do not fit: this port would need bus 256 or above (too many ports below bus 255)");
        int subordinate = secondary;
        foreach (var f in port.Downstream)
        {
            if (f is PciBridge b)
            {
                AssignBuses(m, plan, b, secondary, ref next);
                subordinate = Math.Max(subordinate, plan._buses[b].Item3);
            }
            else if (f is PhysicalFunction { Sriov: { } s } pf)
            {
                int pfRid = secondary << 8 | pf.FunctionNumber;
                foreach (int first in new[] { (int)s.Parameters.FirstVfOffset, s.Parameters.FirstVfOffsetAri })
                {
                    int last = pfRid + first + (s.Parameters.TotalVfs - 1) * s.Parameters.VfStride;
                    if (last >> 8 > 0xFF)
                        throw new MachineDescriptionException(DevicePath(m, pf, port), string.Create(CultureInfo.InvariantCulture,
                            $"bus numbers do not fit: {pf.Name}'s VFs (TotalVFs {s.Parameters.TotalVfs}, offset {first}, stride {s.Parameters.VfStride}) would reach bus {last >> 8} behind secondary bus {secondary}"));
                    subordinate = Math.Max(subordinate, last >> 8);
                }
            }
        }
        next = Math.Max(next, subordinate + 1);
        plan._buses[port] = ((byte)primary, (byte)secondary, (byte)subordinate);
    }

    private static string DevicePath(Machine m, PciFunction f, PciBridge port)
    {
        foreach (var d in m.Devices) if (d.Device.Functions.Contains(f)) return d.Path;
        return port.Path;
    }

    // One request in a window: a BAR, a VF BAR aperture, or a bridge's window.
    private sealed record Item(ulong Size, ulong Align, string Label, Action<EnumerationPlan, ulong> Assign);

    private sealed record Window(List<Item> Items, ulong Granule)
    {
        // Closes the empty windows of bridges below (programmed when this window is assigned).
        public List<Action<EnumerationPlan>> Closed { get; } = [];

        public ulong Align => Math.Max(Granule, Items.Count == 0 ? 0 : Items.Max(i => i.Align));
        public ulong Size => AlignUp(Arrange().End, Granule);
        public Item? Largest => Items.OrderByDescending(i => i.Size).FirstOrDefault();

        // Largest alignment first (stable): each item lands aligned with no gaps between power-of-two items.
        public (List<(Item Item, ulong Offset)> Placed, ulong End) Arrange()
        {
            var placed = new List<(Item, ulong)>();
            ulong cursor = 0;
            foreach (var item in Items.OrderByDescending(i => i.Align))
            {
                cursor = AlignUp(cursor, item.Align);
                placed.Add((item, cursor));
                cursor += item.Size;
            }
            return (placed, cursor);
        }
    }

    private sealed record PortLayout(Window Mem, Window Pref, Window Io);

    private static PortLayout Layout(PciBridge port)
    {
        var l = new PortLayout(new([], MemGranule), new([], MemGranule), new([], IoGranule));
        foreach (var f in port.Downstream)
        {
            if (f is PciBridge b)
            {
                var sub = Layout(b);
                AddWindow(l.Mem, b, sub.Mem, ConfigRegs.MemoryBase);
                AddWindow(l.Pref, b, sub.Pref, ConfigRegs.PrefMemoryBase);
                AddWindow(l.Io, b, sub.Io, ConfigRegs.IoBase);
                continue;
            }
            foreach (var bar in f.Bars)
            {
                var b0 = bar;
                var target = bar.IsIo ? l.Io : bar.Prefetchable && bar.Kind != BarKind.Rom ? l.Pref : l.Mem;
                target.Items.Add(new Item(bar.Size, bar.Size, $"{f.Name} BAR {bar.Index}", (plan, a) => plan.Steps.Add(() => b0.WriteAddress(f.Config, a))));
            }
            if (f is PhysicalFunction { Sriov: { } s } pf)
            {
                foreach (var bar in s.Parameters.VfBars)
                {
                    var b0 = bar;
                    ulong aperture = s.PerVfBarSize(bar) * s.Parameters.TotalVfs;
                    var target = bar.Prefetchable ? l.Pref : l.Mem;
                    target.Items.Add(new Item(aperture, System.Numerics.BitOperations.RoundUpToPowerOf2(aperture), $"{pf.Name} VF BAR {bar.Index}",
                        (plan, a) => plan.Steps.Add(() => b0.WriteAddress(pf.Config, a, s.Offset + SriovCapability.VfBar0))));
                }
            }
        }
        return l;
    }

    private static void AddWindow(Window parent, PciBridge b, Window sub, int register)
    {
        // Nothing below of this kind: the bridge's window is closed (its reset value 0/0 would open [0, granule)).
        if (sub.Items.Count == 0)
        {
            parent.Closed.Add(plan => Assign(plan, b, sub, 0, register));
            return;
        }
        parent.Items.Add(new Item(sub.Size, sub.Align, $"{b.Path} window", (plan, a) => Assign(plan, b, sub, a, register)));
    }

    // Places a root port's window at the cursor (or closes it); returns the cursor after it.
    private static ulong Place(EnumerationPlan plan, PciBridge rp, Window w, ulong cursor, int register)
    {
        if (w.Items.Count == 0)
        {
            Assign(plan, rp, w, 0, register);
            return cursor;
        }
        ulong a = AlignUp(cursor, w.Align);
        Assign(plan, rp, w, a, register);
        return a + w.Size;
    }

    // Assigns everything in w from a and programs b's window register (closed when w is empty).
    private static void Assign(EnumerationPlan plan, PciBridge b, Window w, ulong a, int register)
    {
        bool empty = w.Items.Count == 0;
        foreach (var close in w.Closed) close(plan);
        var (placed, _) = w.Arrange();
        foreach (var (item, offset) in placed) item.Assign(plan, a + offset);
        ulong limit = empty ? 0 : a + w.Size - 1;
        plan.Steps.Add(() =>
        {
            switch (register)
            {
                case ConfigRegs.MemoryBase:
                    b.WriteConfig(ConfigRegs.MemoryBase, 2, empty ? 0xFFF0 : (uint)(a >> 16) & 0xFFF0);
                    b.WriteConfig(ConfigRegs.MemoryLimit, 2, empty ? 0 : (uint)(limit >> 16) & 0xFFF0);
                    break;
                case ConfigRegs.PrefMemoryBase:
                    // Empty: base above limit closes the window.
                    b.WriteConfig(ConfigRegs.PrefMemoryBase, 4, empty ? 0x0000_FFF0 : (uint)((a >> 16) & 0xFFF0 | ((limit >> 16) & 0xFFF0) << 16));
                    b.WriteConfig(ConfigRegs.PrefBaseUpper, 4, empty ? 0 : (uint)(a >> 32));
                    b.WriteConfig(ConfigRegs.PrefLimitUpper, 4, empty ? 0 : (uint)(limit >> 32));
                    break;
                default:
                    b.WriteConfig(ConfigRegs.IoBase, 2, empty ? 0x00F0 : (uint)((a >> 8) & 0xF0 | ((limit >> 8) & 0xF0) << 8));
                    b.WriteConfig(ConfigRegs.IoBaseUpper, 4, empty ? 0 : (uint)((a >> 16) & 0xFFFF | ((limit >> 16) & 0xFFFF) << 16));
                    break;
            }
        });
    }

    private static MachineDescriptionException Exhausted(Machine m, PciBridge rp, PortLayout l, ulong end)
    {
        var largest = new[] { l.Mem.Largest, l.Pref.Largest }.Where(i => i != null).OrderByDescending(i => i!.Size).FirstOrDefault();
        return new MachineDescriptionException(rp.Path, string.Create(CultureInfo.InvariantCulture,
            $"BAR space exhausted: the MMIO windows up to this port end at 0x{end:X}, beyond the IOMMU block at 0x{m.Options.IommuBase:X} (MMIO window from 0x{m.Options.MmioWindowBase:X}; largest request here: {largest?.Label} of 0x{largest?.Size:X} bytes)"));
    }

    private static ulong AlignUp(ulong v, ulong a) => (v + a - 1) & ~(a - 1);
}
