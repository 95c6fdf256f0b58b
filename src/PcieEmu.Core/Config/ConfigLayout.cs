using System.Text;
using PcieEmu.Core.Config.Capabilities;
using C = PcieEmu.Core.Config.ConfigRegs;

namespace PcieEmu.Core.Config;

/// <summary>A named bit field of a config register.</summary>
/// <param name="Name">Spec name.</param>
/// <param name="Mask">Bits (in the register's own value).</param>
public readonly record struct ConfigField(string Name, uint Mask);

/// <summary>A named config register: offset (inside the header, or inside its capability), width, fields.</summary>
/// <param name="Offset">Offset of the register.</param>
/// <param name="Width">Bytes (1-4).</param>
/// <param name="Name">Spec name.</param>
/// <param name="Fields">Fields whose changes are worth naming (others show as the register value).</param>
public sealed record ConfigRegister(int Offset, int Width, string Name, params ConfigField[] Fields);

/// <summary>
/// Names of config registers and fields, built on the offsets and bit constants of the header
/// (<see cref="ConfigRegs"/>) and of each capability class, for decoding transactions (the
/// trace). Only consulted when someone subscribed to config events.
/// </summary>
public static class ConfigLayout
{
    private static readonly ConfigField[] CommandFields =
    [
        new("I/O Space", C.CmdIoSpace), new("Memory Space", C.CmdMemorySpace), new("Bus Master", C.CmdBusMaster),
        new("Parity Error Response", C.CmdParityErrorResponse), new("SERR# Enable", C.CmdSerrEnable),
        new("Interrupt Disable", C.CmdInterruptDisable),
    ];

    private static readonly ConfigField[] StatusFields =
    [
        new("Interrupt Status", C.StatusInterrupt), new("Master Data Parity Error", 1 << 8),
        new("Signaled Target Abort", C.StatusSignaledTargetAbort), new("Received Target Abort", C.StatusReceivedTargetAbort),
        new("Received Master Abort", C.StatusReceivedMasterAbort), new("Signaled System Error", 1 << 14),
        new("Detected Parity Error", 1 << 15),
    ];

    private static readonly ConfigRegister[] Common =
    [
        new(C.VendorId, 2, "Vendor ID"), new(C.DeviceId, 2, "Device ID"), new(C.Command, 2, "Command", CommandFields),
        new(C.Status, 2, "Status", StatusFields), new(C.RevisionId, 1, "Revision ID"), new(C.ClassCode, 3, "Class Code"),
        new(C.CacheLineSize, 1, "Cache Line Size"), new(C.LatencyTimer, 1, "Latency Timer"), new(C.HeaderType, 1, "Header Type"),
        new(C.Bist, 1, "BIST"), new(C.CapabilitiesPointer, 1, "Capabilities Pointer"), new(C.InterruptLine, 1, "Interrupt Line"),
        new(C.InterruptPin, 1, "Interrupt Pin"),
    ];

    private static readonly ConfigRegister[] Type0 =
    [
        .. Common,
        new(C.Bar0, 4, "BAR0"), new(C.Bar0 + 4, 4, "BAR1"), new(C.Bar0 + 8, 4, "BAR2"), new(C.Bar0 + 12, 4, "BAR3"),
        new(C.Bar0 + 16, 4, "BAR4"), new(C.Bar0 + 20, 4, "BAR5"), new(C.CardbusCis, 4, "CardBus CIS Pointer"),
        new(C.SubsystemVendorId, 2, "Subsystem Vendor ID"), new(C.SubsystemId, 2, "Subsystem ID"),
        new(C.ExpansionRom, 4, "Expansion ROM Base Address", new ConfigField("ROM Enable", 1)),
        new(C.MinGnt, 1, "Min_Gnt"), new(C.MaxLat, 1, "Max_Lat"),
    ];

    private static readonly ConfigRegister[] Type1 =
    [
        .. Common,
        new(C.Bar0, 4, "BAR0"), new(C.Bar0 + 4, 4, "BAR1"),
        new(C.PrimaryBus, 1, "Primary Bus Number"), new(C.SecondaryBus, 1, "Secondary Bus Number"),
        new(C.SubordinateBus, 1, "Subordinate Bus Number"), new(C.SecondaryLatency, 1, "Secondary Latency Timer"),
        new(C.IoBase, 1, "I/O Base"), new(C.IoLimit, 1, "I/O Limit"), new(C.SecondaryStatus, 2, "Secondary Status", StatusFields),
        new(C.MemoryBase, 2, "Memory Base"), new(C.MemoryLimit, 2, "Memory Limit"),
        new(C.PrefMemoryBase, 2, "Prefetchable Memory Base"), new(C.PrefMemoryLimit, 2, "Prefetchable Memory Limit"),
        new(C.PrefBaseUpper, 4, "Prefetchable Base Upper 32 Bits"), new(C.PrefLimitUpper, 4, "Prefetchable Limit Upper 32 Bits"),
        new(C.IoBaseUpper, 2, "I/O Base Upper 16 Bits"), new(C.IoLimitUpper, 2, "I/O Limit Upper 16 Bits"),
        new(C.BridgeRom, 4, "Expansion ROM Base Address"),
        new(C.BridgeControl, 2, "Bridge Control", new ConfigField("Secondary Bus Reset", C.BridgeControlSecondaryBusReset)),
    ];

    private static readonly ConfigRegister[] Sriov =
    [
        new(SriovCapability.Caps, 4, "SR-IOV Capabilities"),
        new(SriovCapability.Control, 2, "SR-IOV Control",
            new ConfigField("VF Enable", SriovCapability.CtlVfEnable), new ConfigField("VF Migration Enable", SriovCapability.CtlMigrationEnable),
            new ConfigField("VF Migration Interrupt Enable", SriovCapability.CtlMigrationInterruptEnable),
            new ConfigField("VF MSE", SriovCapability.CtlVfMse), new ConfigField("ARI Capable Hierarchy", SriovCapability.CtlAriCapableHierarchy)),
        new(SriovCapability.Status, 2, "SR-IOV Status"), new(SriovCapability.InitialVfs, 2, "InitialVFs"),
        new(SriovCapability.TotalVfs, 2, "TotalVFs"), new(SriovCapability.NumVfsReg, 2, "NumVFs"),
        new(SriovCapability.FuncDepLink, 2, "Function Dependency Link"), new(SriovCapability.FirstVfOffsetReg, 2, "First VF Offset"),
        new(SriovCapability.VfStrideReg, 2, "VF Stride"), new(SriovCapability.VfDeviceIdReg, 2, "VF Device ID"),
        new(SriovCapability.SupportedPageSizes, 4, "Supported Page Sizes"), new(SriovCapability.SystemPageSizeReg, 4, "System Page Size"),
        new(SriovCapability.VfBar0, 4, "VF BAR0"), new(SriovCapability.VfBar0 + 4, 4, "VF BAR1"), new(SriovCapability.VfBar0 + 8, 4, "VF BAR2"),
        new(SriovCapability.VfBar0 + 12, 4, "VF BAR3"), new(SriovCapability.VfBar0 + 16, 4, "VF BAR4"), new(SriovCapability.VfBar0 + 20, 4, "VF BAR5"),
        new(SriovCapability.MigrationStateOffset, 4, "VF Migration State Array Offset"),
    ];

    private static readonly ConfigRegister[] Pcie =
    [
        new(PcieCapability.Caps, 2, "PCI Express Capabilities"), new(PcieCapability.DevCap, 4, "Device Capabilities"),
        new(PcieCapability.DevCtl, 2, "Device Control",
            new ConfigField("Correctable Error Reporting Enable", 1), new ConfigField("Non-Fatal Error Reporting Enable", 2),
            new ConfigField("Fatal Error Reporting Enable", 4), new ConfigField("Unsupported Request Reporting Enable", 8),
            new ConfigField("Enable Relaxed Ordering", 0x10), new ConfigField("Max_Payload_Size", 0xE0),
            new ConfigField("Enable No Snoop", 0x800), new ConfigField("Max_Read_Request_Size", 0x7000),
            new ConfigField("Initiate Function Level Reset", PcieCapability.DevCtlInitiateFlr)),
        new(PcieCapability.DevSta, 2, "Device Status"), new(PcieCapability.LinkCap, 4, "Link Capabilities"),
        new(PcieCapability.LinkCtl, 2, "Link Control"), new(PcieCapability.LinkSta, 2, "Link Status"),
        new(PcieCapability.SlotCap, 4, "Slot Capabilities"), new(PcieCapability.SlotCtl, 2, "Slot Control"),
        new(PcieCapability.SlotSta, 2, "Slot Status"), new(PcieCapability.RootCtl, 2, "Root Control"),
        new(PcieCapability.RootCap, 2, "Root Capabilities"), new(PcieCapability.RootSta, 4, "Root Status"),
        new(PcieCapability.DevCap2, 4, "Device Capabilities 2"),
        new(PcieCapability.DevCtl2, 2, "Device Control 2", new ConfigField("ARI Forwarding Enable", PcieCapability.AriForwarding)),
        new(PcieCapability.DevSta2, 2, "Device Status 2"), new(PcieCapability.LinkCap2, 4, "Link Capabilities 2"),
        new(PcieCapability.LinkCtl2, 2, "Link Control 2"), new(PcieCapability.LinkSta2, 2, "Link Status 2"),
    ];

    private static readonly ConfigRegister[] Msix =
    [
        new(2, 2, "MSI-X Message Control", new ConfigField("Function Mask", MsixCapability.FunctionMaskBit),
            new ConfigField("MSI-X Enable", MsixCapability.EnableBit)),
        new(4, 4, "MSI-X Table Offset/BIR"), new(8, 4, "MSI-X PBA Offset/BIR"),
    ];

    private static readonly ConfigRegister[] Msi =
    [
        new(2, 2, "MSI Message Control", new ConfigField("MSI Enable", 1), new ConfigField("Multiple Message Enable", 0x70)),
        new(4, 4, "MSI Message Address"),
    ];

    private static readonly ConfigRegister[] Pm =
    [
        new(2, 2, "Power Management Capabilities"),
        new(PowerManagementCapability.Pmcsr, 2, "PMCSR", new ConfigField("PowerState", 3), new ConfigField("PME_En", 1 << 8),
            new ConfigField("PME_Status", 1 << 15)),
    ];

    private static readonly ConfigRegister[] Aer =
    [
        new(AerCapability.UncorStatus, 4, "Uncorrectable Error Status"), new(AerCapability.UncorMask, 4, "Uncorrectable Error Mask"),
        new(AerCapability.UncorSeverity, 4, "Uncorrectable Error Severity"), new(AerCapability.CorStatus, 4, "Correctable Error Status"),
        new(AerCapability.CorMask, 4, "Correctable Error Mask"), new(AerCapability.CapControl, 4, "Advanced Error Capabilities and Control"),
        new(AerCapability.HeaderLog, 4, "Header Log"), new(AerCapability.RootCommand, 4, "Root Error Command"),
        new(AerCapability.RootStatus, 4, "Root Error Status"), new(AerCapability.ErrorSourceId, 4, "Error Source Identification"),
    ];

    private static readonly ConfigRegister[] Ari = [new(4, 2, "ARI Capability"), new(6, 2, "ARI Control")];

    /// <summary>Display name of a capability ("SR-IOV", "MSI-X" ...).</summary>
    public static string NameOf(Capability cap) => cap switch
    {
        SriovCapability => "SR-IOV",
        PcieCapability => "PCI Express",
        MsixCapability => "MSI-X",
        MsiCapability => "MSI",
        PowerManagementCapability => "Power Management",
        AerCapability => "AER",
        AriCapability => "ARI",
        DsnCapability => "Device Serial Number",
        { IsExtended: false, Id: 0x09 } => "Vendor Specific",
        _ => $"Capability 0x{cap.Id:X2}",
    };

    /// <summary>The named registers of the type 0 (<paramref name="type1"/> false) or type 1 header, offset order not guaranteed.</summary>
    public static IReadOnlyList<ConfigRegister> HeaderRegisters(bool type1) => type1 ? Type1 : Type0;

    /// <summary>The register's name as the trace prints it inside <paramref name="cap"/> ("SR-IOV Control", "MSI-X Message Control").</summary>
    public static string QualifiedName(Capability cap, ConfigRegister register)
    {
        ArgumentNullException.ThrowIfNull(cap);
        ArgumentNullException.ThrowIfNull(register);
        return register.Name.StartsWith(NameOf(cap), StringComparison.Ordinal) ? register.Name : NameOf(cap) + " " + register.Name;
    }

    /// <summary>The named registers of <paramref name="cap"/>, offsets relative to the capability (header excluded).</summary>
    public static IReadOnlyList<ConfigRegister> RegistersOf(Capability cap) => cap switch
    {
        SriovCapability => Sriov,
        PcieCapability => Pcie,
        MsixCapability => Msix,
        MsiCapability => Msi,
        PowerManagementCapability => Pm,
        AerCapability => Aer,
        AriCapability => Ari,
        _ => [],
    };

    /// <summary>The register of <paramref name="cs"/> (with <paramref name="capabilities"/>) that contains
    /// <paramref name="offset"/>, with its absolute offset; null when unnamed.</summary>
    public static (ConfigRegister Register, int Offset)? Find(ReadOnlySpan<byte> cs, IReadOnlyList<Capability> capabilities, int offset)
    {
        if (offset < 0x40)
        {
            var table = (cs[C.HeaderType] & 0x7F) == 1 ? Type1 : Type0;
            foreach (var r in table)
                if (offset >= r.Offset && offset < r.Offset + r.Width) return (r, r.Offset);
            return null;
        }
        foreach (var cap in capabilities)
        {
            if (offset < cap.Offset || offset >= cap.Offset + cap.Length) continue;
            int rel = offset - cap.Offset;
            if (rel < (cap.IsExtended ? 4 : 2))
                return (new ConfigRegister(0, cap.IsExtended ? 4 : 2, $"{NameOf(cap)} Capability Header"), cap.Offset);
            foreach (var r in RegistersOf(cap))
                if (rel >= r.Offset && rel < r.Offset + r.Width) return (r with { Name = QualifiedName(cap, r) }, cap.Offset + r.Offset);
            return (new ConfigRegister(rel, 1, $"{NameOf(cap)}+0x{rel:X2}"), offset);
        }
        return null;
    }

    /// <summary>
    /// Describes a config access: the register name, and for a write the fields that changed
    /// ("VF Enable 0->1, VF MSE 0->1"). <paramref name="before"/> and <paramref name="after"/> are
    /// the whole dwords containing the access.
    /// </summary>
    public static (string Register, string Fields) Describe(ReadOnlySpan<byte> cs, IReadOnlyList<Capability> capabilities,
        int offset, uint before, uint after)
    {
        var found = Find(cs, capabilities, offset);
        if (found is not { } f) return ($"0x{offset:X3}", "");
        if (before == after || f.Register.Fields.Length == 0) return (f.Register.Name, "");
        int shift = 8 * (f.Offset & 3);
        uint mask = f.Register.Width >= 4 ? uint.MaxValue : (1u << (8 * f.Register.Width)) - 1;
        uint ov = (before >> shift) & mask, nv = (after >> shift) & mask;
        var sb = new StringBuilder();
        foreach (var field in f.Register.Fields)
        {
            if (((ov ^ nv) & field.Mask) == 0) continue;
            int lsb = System.Numerics.BitOperations.TrailingZeroCount(field.Mask);
            if (sb.Length > 0) sb.Append(", ");
            sb.Append(field.Name).Append(' ').Append((ov & field.Mask) >> lsb).Append("->").Append((nv & field.Mask) >> lsb);
        }
        return (f.Register.Name, sb.ToString());
    }
}
