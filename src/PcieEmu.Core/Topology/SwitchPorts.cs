using PcieEmu.Core.Config;
using PcieEmu.Core.Config.Capabilities;
using PcieEmu.Core.Platform;

namespace PcieEmu.Core.Topology;

/// <summary>Identity and register values of the emulated PCI Express switch's ports (a PLX PEX 8747
/// style Gen3 switch: the upstream and downstream ports share vendor and device ID).</summary>
public static class SwitchIdentity
{
    /// <summary>Header identity of every port of the switch.</summary>
    public static HeaderIds Ids { get; } = new(0x10B5, 0x8747, 0xCA, 0x060400);
    /// <summary>The ports' name, lspci style.</summary>
    public const string Description = "PLX Technology, Inc. PEX 8747 48-Lane, 5-Port PCI Express Gen 3 (8.0 GT/s) Switch";
    /// <summary>ACS bits a downstream port advertises: Source Validation, Translation Blocking,
    /// P2P Request and Completion Redirect, Upstream Forwarding (PCIe Base §7.7.8.2).</summary>
    public const ushort DownstreamAcs = AcsCapability.SourceValidation | AcsCapability.TranslationBlocking
        | AcsCapability.P2pRequestRedirect | AcsCapability.P2pCompletionRedirect | AcsCapability.UpstreamForwarding;

    internal static CapabilityBuilder Common(PcieCapabilityValues pcie) => new CapabilityBuilder()
        .Add(new PowerManagementCapability(0x4803, 0x0008), 0x40)   // PME from D0 and D3hot, No_Soft_Reset
        .Add(new MsiCapability(is64Bit: true, perVectorMasking: false), 0x48)
        .Add(new PcieCapability(pcie), 0x68)
        .Add(new AerCapability(), 0x100);
}

/// <summary>
/// The upstream port of a PCI Express switch (port type 5): device 0 function 0 on the link of the
/// port above it; its secondary bus is the switch's internal bus, where the downstream ports sit at
/// device numbers 0-31 (no device-0 restriction: the internal bus is not a link).
/// </summary>
public sealed class SwitchUpstreamPort : PciBridge
{
    /// <summary>Creates the upstream port on <paramref name="parent"/>'s link; <paramref name="name"/> names the switch.</summary>
    public SwitchUpstreamPort(Machine machine, PciBridge parent, string name) : base(machine, name + "-upstream")
    {
        ArgumentNullException.ThrowIfNull(parent);
        Parent = parent;
        Header.InstallType1(Config, SwitchIdentity.Ids, interruptPin: 1);
        FinishBridge(SwitchIdentity.Common(new PcieCapabilityValues
        {
            PortType = PciePortType.SwitchUpstreamPort,
            DevCap = 0x0000_8002,                      // MPS 512 B, role-based error reporting
            DevCtl = 0x0010,
            DevCtlWritable = 0x7CFF & ~0x0300,
            LinkCap = 0x3u << 10 | 16u << 4 | 3u,      // port 0, L0s/L1, x16, 8 GT/s
            LinkSta = 0x1041,                          // slot clock, x4 at 2.5 GT/s (trained to the port above)
            LinkCap2 = 0x0000_000E,                    // 2.5, 5 and 8 GT/s
            LinkCtl2 = 0x0003,
            LinkCtl2Writable = 0x000F,
        }));
    }

    /// <inheritdoc/>
    public override string Description => SwitchIdentity.Description;

    /// <summary>The port whose link the switch sits on.</summary>
    public PciBridge Parent { get; }

    /// <inheritdoc/>
    protected override bool SecondaryIsLink => false;

    /// <inheritdoc/>
    public override ushort Rid => (ushort)(Parent.SecondaryBus << 8);
}

/// <summary>
/// A downstream port of a PCI Express switch (port type 6) at device <see cref="DeviceNumber"/> on
/// the switch's internal bus: a link below it (device 0, other functions with ARI Forwarding), a slot
/// whose presence follows whether something is attached, ARI Forwarding Supported and ACS.
/// </summary>
public sealed class SwitchDownstreamPort : PciBridge
{
    /// <summary>Creates downstream port <paramref name="deviceNumber"/> of <paramref name="upstream"/>'s switch.</summary>
    public SwitchDownstreamPort(Machine machine, SwitchUpstreamPort upstream, byte deviceNumber, ushort physicalSlot, bool occupied, string name)
        : base(machine, name)
    {
        ArgumentNullException.ThrowIfNull(upstream);
        if (deviceNumber > 31) throw new ArgumentOutOfRangeException(nameof(deviceNumber), "device number must be 0..31");
        Upstream = upstream;
        DeviceNumber = deviceNumber;
        Header.InstallType1(Config, SwitchIdentity.Ids, interruptPin: 1);
        FinishBridge(SwitchIdentity.Common(new PcieCapabilityValues
        {
            PortType = PciePortType.SwitchDownstreamPort,
            SlotImplemented = true,
            DevCap = 0x0000_8002,
            DevCtl = 0x0010,
            DevCtlWritable = 0x7CFF & ~0x0300,
            LinkCap = (uint)deviceNumber << 24 | 1u << 20 | 0x3u << 10 | 8u << 4 | 3u,   // DLLLA capable, L0s/L1, x8, 8 GT/s
            LinkSta = (ushort)(occupied ? 0x2041 : 0x0001),   // DL active and x4 when a device is attached
            SlotCap = (uint)physicalSlot << 19,
            SlotSta = (ushort)(occupied ? 0x0040 : 0x0000),   // presence detect state
            DevCap2 = PcieCapability.AriForwarding,
            LinkCap2 = 0x0000_000E,
            LinkCtl2 = 0x0003,
            LinkCtl2Writable = 0x000F,
        }).Add(new AcsCapability(SwitchIdentity.DownstreamAcs), 0x148));
    }

    /// <inheritdoc/>
    public override string Description => SwitchIdentity.Description;

    /// <summary>The switch's upstream port.</summary>
    public SwitchUpstreamPort Upstream { get; }
    /// <summary>Device number on the switch's internal bus.</summary>
    public byte DeviceNumber { get; }

    /// <inheritdoc/>
    public override ushort Rid => (ushort)(Upstream.SecondaryBus << 8 | DeviceNumber << 3);
}
