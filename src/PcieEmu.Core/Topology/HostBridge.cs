using PcieEmu.Core.Platform;

namespace PcieEmu.Core.Topology;

/// <summary>The host bridge at 00:00.0: a type 0 header with no capabilities and no BARs.</summary>
public sealed class HostBridge : PciFunction
{
    /// <summary>Creates the host bridge with the given identity.</summary>
    public HostBridge(Machine machine, HeaderIds ids) : base(machine, "host-bridge")
    {
        Header.InstallType0(Config, ids, multiFunction: false, interruptPin: 0, bars: []);
        Config.CaptureResetImage();
    }

    /// <inheritdoc/>
    public override ushort Rid => 0x0000;
}
