using PcieEmu.Core.Config;
using PcieEmu.Core.Config.Capabilities;
using PcieEmu.Core.Platform;

namespace PcieEmu.Core.Topology;

/// <summary>
/// A PCI Express Root Port (type 1 header) on bus 0. It forwards config requests by its bus
/// numbers and memory/I/O requests by its windows to the functions on its link.
/// </summary>
public sealed class RootPort : PciFunction
{
    private readonly ushort _rid;
    private readonly List<PciFunction> _downstream = [];

    /// <summary>Creates a root port at <paramref name="rid"/> on bus 0.</summary>
    public RootPort(Machine machine, ushort rid, HeaderIds ids, byte portNumber) : base(machine, $"root-port{portNumber}")
    {
        _rid = rid;
        Header.InstallType1(Config, ids, interruptPin: 1);
        var pcie = new PcieCapability(new PcieCapabilityValues
        {
            PortType = PciePortType.RootPort,
            SlotImplemented = true,
            DevCap = 0x0000_8001,                       // MPS 256 B, role-based error reporting
            DevCtl = 0x0010,
            DevCtlWritable = 0x7CFF & ~0x0300,
            LinkCap = (uint)portNumber << 24 | 1u << 20 | 0x3u << 10 | 8u << 4 | 2u,   // DLLLA capable, L0s/L1, x8, 5 GT/s
            LinkSta = 0x2041,                            // DL active, x4 at 2.5 GT/s (trained to the NIC)
            SlotCap = (uint)portNumber << 19,
            SlotSta = 0x0040,                            // presence detected
            DevCap2 = 0x0000_001F | PcieCapability.AriForwarding,
            LinkCap2 = 0x0000_0006,                      // 2.5 and 5 GT/s
            LinkCtl2 = 0x0002,
            LinkSta2 = 0x0000,
            LinkCtl2Writable = 0x000F,
        });
        Capabilities = new CapabilityBuilder()
            .Add(pcie, 0x40)
            .Add(new MsiCapability(is64Bit: true, perVectorMasking: false), 0x80)
            .Add(new PowerManagementCapability(0xC803, 0x0008), 0x90)
            .Add(new AerCapability(isRootPort: true), 0x100)
            .Add(new AcsCapability(AcsCapability.IntelRootPort), 0x138)
            .Build(Config);
        Config.CaptureResetImage();
        WireCapabilities();
        Pcie = pcie;
        // Secondary Bus Reset 0→1 is a hot reset of everything below the port (PCI-to-PCI Bridge 1.2 §3.2.5.18).
        Config.AddHook(ConfigRegs.BridgeControl, 2, (_, o, n) =>
        {
            if ((o & ConfigRegs.BridgeControlSecondaryBusReset) != 0 || (n & ConfigRegs.BridgeControlSecondaryBusReset) == 0) return;
            foreach (var f in _downstream) f.FunctionLevelReset();
        });
    }

    /// <summary>The PCI Express capability.</summary>
    public PcieCapability Pcie { get; }

    /// <inheritdoc/>
    public override ushort Rid => _rid;

    /// <summary>Functions on this port's link (device 0 and, with ARI, other function numbers).</summary>
    public IReadOnlyList<PciFunction> Downstream => _downstream;

    internal void Connect(PciFunction f) => _downstream.Add(f);
    internal void DisconnectAll() => _downstream.Clear();

    /// <summary>Secondary bus number.</summary>
    public byte SecondaryBus => (byte)Config.ReadRaw(ConfigRegs.SecondaryBus, 1);
    /// <summary>Subordinate bus number.</summary>
    public byte SubordinateBus => (byte)Config.ReadRaw(ConfigRegs.SubordinateBus, 1);
    /// <summary>ARI Forwarding Enable.</summary>
    public bool AriForwardingEnabled => Pcie.AriForwardingEnabled;

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
        return bus != sec || AriForwardingEnabled || (rid & 0xF8) == 0;
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
    /// type 0 (device 0 only unless ARI Forwarding Enable is set), to buses in (secondary,
    /// subordinate] as type 1, where an SR-IOV device claims the VF routing IDs it owns.
    /// </summary>
    public PciFunction? RouteConfig(ushort rid)
    {
        if (!ForwardsConfig(rid)) return null;
        int bus = rid >> 8;
        byte sec = SecondaryBus;
        foreach (var f in _downstream)
        {
            if (bus == sec && f.Rid == rid) return f;
            if (f is PhysicalFunction pf && pf.FindVf(rid) is { } vf) return vf;
        }
        return null;
    }
}
