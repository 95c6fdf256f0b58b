using PcieEmu.Core.Config;
using PcieEmu.Core.Config.Capabilities;
using PcieEmu.Core.Platform;

namespace PcieEmu.Core.Topology;

/// <summary>
/// A PCI Express Root Port (type 1 header) on bus 0. It forwards config requests by its bus
/// numbers and memory/I/O requests by its windows to the functions on its link.
/// </summary>
public sealed class RootPort : PciBridge
{
    private readonly ushort _rid;
    private readonly string _description;

    /// <inheritdoc/>
    public override string Description => _description;

    /// <summary>Creates a root port at <paramref name="rid"/> on bus 0.</summary>
    public RootPort(Machine machine, ushort rid, HeaderIds ids, byte portNumber) : base(machine, $"root-port{portNumber}")
    {
        ArgumentNullException.ThrowIfNull(ids);
        _rid = rid;
        // pci.ids' names of the Xeon E5 IIO root ports 8086:3C02 and 3C04 (the default machine's and the tests' ids).
        _description = ids switch
        {
            { VendorId: 0x8086, DeviceId: 0x3C02 } => "Intel Corporation Xeon E5/Core i7 IIO PCI Express Root Port 1a",
            { VendorId: 0x8086, DeviceId: 0x3C04 } => "Intel Corporation Xeon E5/Core i7 IIO PCI Express Root Port 2a",
            _ => "",
        };
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
        FinishBridge(new CapabilityBuilder()
            .Add(pcie, 0x40)
            .Add(new MsiCapability(is64Bit: true, perVectorMasking: false), 0x80)
            .Add(new PowerManagementCapability(0xC803, 0x0008), 0x90)
            .Add(new AerCapability(isRootPort: true), 0x100)
            .Add(new AcsCapability(AcsCapability.IntelRootPort), 0x138));
    }

    /// <inheritdoc/>
    public override ushort Rid => _rid;
}
