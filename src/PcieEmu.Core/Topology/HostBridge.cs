using PcieEmu.Core.Platform;

namespace PcieEmu.Core.Topology;

/// <summary>The host bridge at 00:00.0: a type 0 header with no capabilities and no BARs.</summary>
public sealed class HostBridge : PciFunction
{
    /// <summary>Creates the host bridge with the given identity.</summary>
    public HostBridge(Machine machine, HeaderIds ids) : base(machine, "host-bridge")
    {
        ArgumentNullException.ThrowIfNull(ids);
        // pci.ids' name of the Q35 chipset's host bridge (8086:29C0), the one QEMU's q35 machine shows too.
        _description = ids is { VendorId: 0x8086, DeviceId: 0x29C0 } ? "Intel Corporation 82G33/G31/P35/P31 Express DRAM Controller" : "";
        Header.InstallType0(Config, ids, multiFunction: false, interruptPin: 0, bars: []);
        Config.CaptureResetImage();
    }

    private readonly string _description;

    /// <inheritdoc/>
    public override ushort Rid => 0x0000;

    /// <inheritdoc/>
    public override string Description => _description;
}
