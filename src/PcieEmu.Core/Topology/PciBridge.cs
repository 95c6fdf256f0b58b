using PcieEmu.Core.Config;
using PcieEmu.Core.Config.Capabilities;
using PcieEmu.Core.Platform;

namespace PcieEmu.Core.Topology;

/// <summary>
/// A PCI Express port with a type 1 header: a root port, a switch upstream port or a switch
/// downstream port. It forwards config requests by its bus numbers and memory/I/O requests by
/// its windows to the functions on its secondary side (a link, or a switch's internal bus),
/// and further down through the bridges among them.
/// </summary>
public abstract class PciBridge : PciFunction
{
    private readonly List<PciFunction> _downstream = [];

    /// <summary>Creates a bridge of <paramref name="machine"/> named <paramref name="name"/>; the
    /// subclass installs the header and capabilities, then calls <see cref="FinishBridge"/>.</summary>
    protected PciBridge(Machine machine, string name) : base(machine, name) { }

    /// <summary>The PCI Express capability.</summary>
    public PcieCapability Pcie { get; private set; } = null!;

    /// <summary>The port's entry in the machine description (<c>rootPorts[0]</c>, <c>rootPorts[0].switch</c>,
    /// <c>rootPorts[0].switch.downstreamPorts[1]</c>).</summary>
    public string Path { get; internal set; } = "";

    /// <summary>Functions on the secondary side: on a link device 0 (and, with ARI, other function
    /// numbers); on a switch's internal bus the downstream ports.</summary>
    public IReadOnlyList<PciFunction> Downstream => _downstream;

    /// <summary>True when the secondary bus is a link (root and downstream ports): a type 0 request
    /// reaches device 0 only unless ARI Forwarding is enabled (PCIe Base §7.3.1, §6.13).</summary>
    protected virtual bool SecondaryIsLink => true;

    internal void Connect(PciFunction f) => _downstream.Add(f);
    internal void DisconnectAll() => _downstream.Clear();

    /// <summary>Primary bus number.</summary>
    public byte PrimaryBus => (byte)Config.ReadRaw(ConfigRegs.PrimaryBus, 1);
    /// <summary>Secondary bus number.</summary>
    public byte SecondaryBus => (byte)Config.ReadRaw(ConfigRegs.SecondaryBus, 1);
    /// <summary>Subordinate bus number.</summary>
    public byte SubordinateBus => (byte)Config.ReadRaw(ConfigRegs.SubordinateBus, 1);
    /// <summary>ARI Forwarding Enable.</summary>
    public bool AriForwardingEnabled => Pcie.AriForwardingEnabled;
    /// <summary>Device Capabilities 2 ARI Forwarding Supported.</summary>
    public bool AriForwardingSupported => SecondaryIsLink && (Pcie.Values.DevCap2 & PcieCapability.AriForwarding) != 0;
    /// <summary>The port type in the PCI Express capability.</summary>
    public PciePortType PortType => Pcie.Values.PortType;

    /// <summary>Installs the capabilities built by <paramref name="caps"/>, captures the reset image and
    /// wires Secondary Bus Reset. Call once from the subclass constructor after the type 1 header.</summary>
    protected void FinishBridge(CapabilityBuilder caps)
    {
        ArgumentNullException.ThrowIfNull(caps);
        Capabilities = caps.Build(Config);
        Config.CaptureResetImage();
        WireCapabilities();
        Pcie = Find<PcieCapability>() ?? throw new InvalidOperationException("a PCI Express port needs a PCI Express capability");
        // Secondary Bus Reset 0→1 is a hot reset of everything below the port (PCI-to-PCI Bridge 1.2 §3.2.5.18).
        Config.AddHook(ConfigRegs.BridgeControl, 2, (_, o, n) =>
        {
            if ((o & ConfigRegs.BridgeControlSecondaryBusReset) != 0 || (n & ConfigRegs.BridgeControlSecondaryBusReset) == 0) return;
            ResetBelow();
        });
    }

    // A hot reset propagates down the hierarchy: bridges below reset what is below them first.
    private void ResetBelow()
    {
        foreach (var f in _downstream)
        {
            if (f is PciBridge b) b.ResetBelow();
            f.FunctionLevelReset();
        }
    }

    /// <summary>Memory window [base, limit] (inclusive); empty when base &gt; limit.</summary>
    public (ulong Base, ulong Limit) MemoryWindow =>
        ((ulong)(Config.ReadRaw(ConfigRegs.MemoryBase, 2) & 0xFFF0) << 16,
         (ulong)(Config.ReadRaw(ConfigRegs.MemoryLimit, 2) & 0xFFF0) << 16 | 0xF_FFFF);

    /// <summary>Prefetchable window [base, limit] (inclusive, 64-bit).</summary>
    public (ulong Base, ulong Limit) PrefetchableWindow =>
        ((ulong)(Config.ReadRaw(ConfigRegs.PrefMemoryBase, 2) & 0xFFF0) << 16 | (ulong)Config.ReadRaw(ConfigRegs.PrefBaseUpper, 4) << 32,
         (ulong)(Config.ReadRaw(ConfigRegs.PrefMemoryLimit, 2) & 0xFFF0) << 16 | 0xF_FFFF | (ulong)Config.ReadRaw(ConfigRegs.PrefLimitUpper, 4) << 32);

    /// <summary>I/O window [base, limit] (inclusive).</summary>
    public (ulong Base, ulong Limit) IoWindow =>
        ((ulong)(Config.ReadRaw(ConfigRegs.IoBase, 1) & 0xF0) << 8 | (ulong)Config.ReadRaw(ConfigRegs.IoBaseUpper, 2) << 16,
         (ulong)(Config.ReadRaw(ConfigRegs.IoLimit, 1) & 0xF0) << 8 | 0xFFF | (ulong)Config.ReadRaw(ConfigRegs.IoLimitUpper, 2) << 16);

    /// <summary>Whether the port forwards a memory request for <paramref name="address"/> downstream.</summary>
    public bool ForwardsMemory(ulong address)
    {
        if (!MemoryDecodeEnabled) return false;
        var (mb, ml) = MemoryWindow;
        if (mb <= ml && address >= mb && address <= ml) return true;
        var (pb, pl) = PrefetchableWindow;
        return pb <= pl && address >= pb && address <= pl;
    }

    /// <summary>Whether the port forwards an I/O request for <paramref name="port"/> downstream.</summary>
    public bool ForwardsIo(ulong port)
    {
        if (!IoDecodeEnabled) return false;
        var (b, l) = IoWindow;
        return b <= l && port >= b && port <= l;
    }

    /// <summary>Whether a config request for <paramref name="rid"/> leaves the port on its
    /// secondary side (so a missing completer is a UR the port receives).</summary>
    public bool ForwardsConfig(ushort rid)
    {
        int bus = rid >> 8;
        byte sec = SecondaryBus, sub = SubordinateBus;
        if (sec == 0 || bus < sec || bus > sub) return false;
        return bus != sec || !SecondaryIsLink || AriForwardingEnabled || (rid & 0xF8) == 0;
    }

    /// <summary>The port received an Unsupported Request completion from its secondary side:
    /// Secondary Status.Received Master Abort (PCI-to-PCI Bridge 1.2 §3.2.5.7).</summary>
    public void RecordSecondaryMasterAbort()
    {
        uint st = Config.ReadRaw(ConfigRegs.SecondaryStatus, 2);
        Config.SetRaw(ConfigRegs.SecondaryStatus, 2, st | ConfigRegs.StatusReceivedMasterAbort);
    }

    /// <summary>
    /// Routes a config request that reached this port (PCIe Base §7.3.1): to its secondary bus as
    /// type 0 (on a link device 0 only unless ARI Forwarding Enable is set), to buses in (secondary,
    /// subordinate] as type 1 through the bridge below that claims the bus, where an SR-IOV device
    /// claims the VF routing IDs it owns.
    /// </summary>
    public PciFunction? RouteConfig(ushort rid)
    {
        if (!ForwardsConfig(rid)) return null;
        int bus = rid >> 8;
        byte sec = SecondaryBus;
        var downstream = _downstream;
        for (int i = 0; i < downstream.Count; i++)
        {
            var f = downstream[i];
            if (bus == sec && f.Rid == rid) return f;
            if (f is PciBridge b && b.ForwardsConfig(rid)) return b.RouteConfig(rid);
            if (f is PhysicalFunction pf && pf.FindVf(rid) is { } vf) return vf;
        }
        return null;
    }

    /// <summary>The bridge furthest down (this one or below) that forwards a config request for <paramref name="rid"/>, or null.</summary>
    public PciBridge? DeepestForwarder(ushort rid)
    {
        if (!ForwardsConfig(rid)) return null;
        foreach (var f in _downstream)
            if (f is PciBridge b && b.DeepestForwarder(rid) is { } deeper) return deeper;
        return this;
    }

    /// <summary>The bridge furthest down (this one or below) that forwards a memory request for <paramref name="address"/>, or null.</summary>
    public PciBridge? DeepestMemoryForwarder(ulong address)
    {
        if (!ForwardsMemory(address)) return null;
        foreach (var f in _downstream)
            if (f is PciBridge b && b.DeepestMemoryForwarder(address) is { } deeper) return deeper;
        return this;
    }

    /// <summary>Decodes a memory request this port forwards to a function below it (PF BARs with Memory Space
    /// Enable in D0, VF BAR apertures with VF Enable and VF MSE), through the bridges below. Does not allocate.</summary>
    internal bool TryDecodeMemory(ulong address, int width, out Machine.Decoded decoded)
    {
        decoded = default;
        var downstream = _downstream;
        for (int fi = 0; fi < downstream.Count; fi++)
        {
            var f = downstream[fi];
            if (f is PciBridge b)
            {
                if (b.ForwardsMemory(address)) return b.TryDecodeMemory(address, width, out decoded);
                continue;
            }
            if (f.MemoryDecodeEnabled)
            {
                var bars = f.Bars;
                for (int bi = 0; bi < bars.Count; bi++)
                {
                    var bar = bars[bi];
                    if (bar.IsIo) continue;
                    if (bar.Kind == BarKind.Rom && (f.Config.ReadRaw(ConfigRegs.ExpansionRom, 4) & 1) == 0) continue;
                    var (bb, s) = f.BarWindow(bar);
                    if (bb != 0 && address >= bb && address - bb + (ulong)width <= s)
                    {
                        decoded = new Machine.Decoded(f.GetBarRegion(bar.Index), address - bb, f, bar.Index);
                        return true;
                    }
                }
            }
            if (f is PhysicalFunction { Sriov: { VfEnabled: true, VfMemorySpaceEnabled: true } sriov } pf && pf.PowerState == 0)
            {
                var vfBars = sriov.Parameters.VfBars;
                for (int bi = 0; bi < vfBars.Count; bi++)
                {
                    var bar = vfBars[bi];
                    ulong bb = sriov.VfBarBase(bar), per = sriov.PerVfBarSize(bar);
                    if (bb == 0 || address < bb) continue;
                    ulong index = (address - bb) / per;
                    if (index >= (ulong)pf.VirtualFunctions.Count) continue;
                    var vf = pf.VirtualFunctions[(int)index];
                    ulong off = address - bb - index * per;
                    if (off + (ulong)width > per) continue;
                    decoded = new Machine.Decoded(vf.GetBarRegion(bar.Index), off, vf, bar.Index);
                    return true;
                }
            }
        }
        return false;
    }

    /// <summary>Decodes an I/O request this port forwards to an I/O BAR below it.</summary>
    internal bool TryDecodeIo(ulong port, int width, out Machine.Decoded decoded)
    {
        decoded = default;
        foreach (var f in _downstream)
        {
            if (f is PciBridge b)
            {
                if (b.ForwardsIo(port)) return b.TryDecodeIo(port, width, out decoded);
                continue;
            }
            if (!f.IoDecodeEnabled) continue;
            foreach (var bar in f.Bars)
            {
                if (!bar.IsIo) continue;
                var (bb, s) = f.BarWindow(bar);
                if (bb != 0 && port >= bb && port - bb + (ulong)width <= s)
                {
                    decoded = new Machine.Decoded(f.GetBarRegion(bar.Index), port - bb, f, bar.Index);
                    return true;
                }
            }
        }
        return false;
    }
}
