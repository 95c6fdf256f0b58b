using PcieEmu.Core.AddressSpace;
using PcieEmu.Core.Config;
using PcieEmu.Core.Config.Capabilities;
using PcieEmu.Core.Interrupts;
using PcieEmu.Core.Platform;
using PcieEmu.Core.Topology;

namespace PcieEmu.Core.Devices.Igb;

/// <summary>Identity and layout constants of the Intel 82576 (from the real part's config dump).</summary>
public static class Igb82576
{
    /// <summary>PCI IDs.</summary>
    public const ushort VendorIntel = 0x8086, PfDeviceId = 0x10C9, VfDeviceId = 0x10CA, SubsystemId = 0xA03C;
    /// <summary>PF BAR sizes.</summary>
    public const ulong Bar0Size = 128 * 1024, Bar1Size = 4 * 1024 * 1024, Bar2Size = 32, Bar3Size = 16 * 1024, RomSize = 4 * 1024 * 1024;
    /// <summary>Per-VF BAR0 and BAR3 size.</summary>
    public const ulong VfBarSize = 16 * 1024;
    /// <summary>MSI-X vectors of a PF and of a VF.</summary>
    public const int PfMsixVectors = 10, VfMsixVectors = 3;
    /// <summary>MSI-X PBA offset in BAR3.</summary>
    public const uint MsixPbaOffset = 0x2000;

    /// <summary>PF BARs: BAR0 128 KiB registers, BAR1 4 MiB flash, BAR2 32 B I/O, BAR3 16 KiB MSI-X, ROM 4 MiB.</summary>
    public static readonly IReadOnlyList<BarDefinition> PfBars =
    [
        new(0, BarKind.Memory32, Bar0Size),
        new(1, BarKind.Memory32, Bar1Size),
        new(2, BarKind.Io, Bar2Size),
        new(3, BarKind.Memory32, Bar3Size),
        new(BarDefinition.RomIndex, BarKind.Rom, RomSize),
    ];

    /// <summary>VF BARs in the SR-IOV capability: VF BAR0 and VF BAR3, 16 KiB, 64-bit, non-prefetchable.</summary>
    public static readonly IReadOnlyList<BarDefinition> VfBars =
    [
        new(0, BarKind.Memory64, VfBarSize),
        new(3, BarKind.Memory64, VfBarSize),
    ];

    internal static PcieCapabilityValues PfPcie => new()
    {
        PortType = PciePortType.Endpoint,
        DevCap = 0x1000_8CC2,     // FLR, role-based errors, L1/L0s latencies, ext tag, MPS 512 B
        DevCtl = 0x2810,
        DevSta = 0x0010,          // AUX Power Detected
        LinkCap = 0x0003_6C41,    // 2.5 GT/s x4, ASPM L0s/L1
        LinkCtl = 0x0000,
        LinkSta = 0x1041,         // slot clock, x4 at 2.5 GT/s
        DevCap2 = 0x0000_001F,    // completion timeout ranges A-D, timeout disable
        DevCtl2Writable = 0x001F,
    };
}

/// <summary>One port (physical function) of the 82576.</summary>
public sealed class IgbPhysicalFunction : PhysicalFunction
{
    private readonly ConfigSpace _vfTemplate = new();
    private readonly CapabilityBuilder _vfTemplateCaps;

    /// <summary>Creates PF <paramref name="functionNumber"/> of the NIC behind <paramref name="port"/>.</summary>
    /// <param name="machine">The machine.</param>
    /// <param name="port">The port whose link the NIC sits on.</param>
    /// <param name="functionNumber">0 or 1.</param>
    /// <param name="options">The NIC's options.</param>
    /// <param name="group">The SR-IOV group the NIC's PFs share.</param>
    /// <param name="ethernetPort">Machine-wide Ethernet port number of this PF's port (default: the function number).</param>
    /// <param name="namePrefix">Prefix of the function's name ("PF0"), so names stay unique with several devices.</param>
    public IgbPhysicalFunction(Machine machine, PciBridge port, byte functionNumber, IgbOptions options, SriovGroup group,
        int ethernetPort = -1, string namePrefix = "")
        : base(machine, port, functionNumber, $"{namePrefix}PF{functionNumber}")
    {
        EthernetPort = ethernetPort < 0 ? functionNumber : ethernetPort;
        options.Validate();
        Options = options;
        Bars = Igb82576.PfBars;
        Header.InstallType0(Config,
            new HeaderIds(Igb82576.VendorIntel, Igb82576.PfDeviceId, 0x01, 0x020000, Igb82576.VendorIntel, Igb82576.SubsystemId),
            multiFunction: options.PhysicalFunctions > 1, interruptPin: (byte)(1 + functionNumber), Bars);
        bool last = functionNumber == options.PhysicalFunctions - 1;
        var sriov = new SriovCapability(new SriovParameters
        {
            InitialVfs = (ushort)options.TotalVfs,
            TotalVfs = (ushort)options.TotalVfs,
            VfDeviceId = Igb82576.VfDeviceId,
            FirstVfOffset = (ushort)options.FirstVfOffset,
            FirstVfOffsetAri = (ushort)options.FirstVfOffsetAri,
            VfStride = (ushort)options.VfStride,
            SupportedPageSizes = 0x553,
            VfBars = Igb82576.VfBars,
        }, group, isLowestPf: functionNumber == 0, owner: this);
        Capabilities = new CapabilityBuilder()
            .Add(new PowerManagementCapability(0xC823, 0x2000, 0x1A), 0x40)
            .Add(new MsiCapability(is64Bit: true, perVectorMasking: true), 0x50)
            .Add(new MsixCapability(Igb82576.PfMsixVectors, 3, 0, 3, Igb82576.MsixPbaOffset), 0x70)
            .Add(new PcieCapability(Igb82576.PfPcie), 0xA0)
            .Add(new AerCapability(), 0x100)
            .Add(new DsnCapability(options.EffectiveSerialNumber + functionNumber), 0x140)
            .Add(new AriCapability(last ? (byte)0 : (byte)(functionNumber + 1)), 0x150)
            .Add(sriov, 0x160)
            .Build(Config);
        // The real part keeps an unlinked VPD capability header at 0xE0.
        OrphanBytes.Install(Config, 0xE0, [0x03, 0x00, 0x00, 0x00]);
        Config.CaptureResetImage();
        Sriov = sriov;
        WireCapabilities();

        InstallVfHeaderTemplate();
        _vfTemplateCaps = VfCapabilities();
        _vfTemplateCaps.Build(_vfTemplate);
        _vfTemplate.CaptureResetImage();
        Nic = new IgbPort(this);
    }

    /// <summary>The NIC port behind this PF: BAR0 registers, queues, switch, mailboxes, wire.</summary>
    public IgbPort Nic { get; }

    /// <summary>Options the NIC was built with.</summary>
    public IgbOptions Options { get; }

    /// <summary>Machine-wide Ethernet port number of this PF's port.</summary>
    public int EthernetPort { get; }

    /// <inheritdoc/>
    public override string Description => "Intel Corporation 82576 Gigabit Network Connection";

    private void InstallVfHeaderTemplate() => IgbVirtualFunction.InstallHeader(_vfTemplate, this);

    internal static CapabilityBuilder VfCapabilities() => new CapabilityBuilder()
        .Add(new MsixCapability(Igb82576.VfMsixVectors, 3, 0, 3, Igb82576.MsixPbaOffset), 0x70)
        .Add(new PcieCapability(Igb82576.PfPcie with
        {
            // VF Device Control: only Initiate FLR is the VF's own; the rest is RsvdP (the PF's
            // settings apply) (SR-IOV 1.1 §3.5.6).
            DevCtl = 0, DevCtlWritable = 0, DevSta = 0, LinkSta = 0x1041,
            DevCtl2Writable = 0,
            // VF Link Control is RsvdP too: the link is the PF's (SR-IOV 1.1 §3.5.8).
            LinkCtl = 0, LinkCtlWritable = 0,
        }), 0xA0)
        .Add(new AerCapability(), 0x100)
        .Add(new AriCapability(0), 0x150);

    /// <inheritdoc/>
    public override IMmioRegion GetBarRegion(int index) => index switch
    {
        0 => Nic.PfRegisters,
        3 => _bar3 ??= new MsixBarRegion(MsixTable!, 0, Igb82576.MsixPbaOffset),
        _ => EmptyRegion.Instance,
    };
    private MsixBarRegion? _bar3;

    /// <inheritdoc/>
    protected override void OnDeviceReset() => Nic.DeviceReset();

    /// <inheritdoc/>
    protected override VirtualFunction CreateVf(int index)
    {
        // A VF that appears starts from reset state (its pool's enables are the PF driver's).
        Nic.ResetVf(index, signalPf: false, keepPoolEnables: true);
        return new IgbVirtualFunction(this, index, _vfTemplate, _vfTemplateCaps);
    }
}

/// <summary>A virtual function of the 82576 (device 0x10CA).</summary>
public sealed class IgbVirtualFunction : VirtualFunction
{
    private readonly MsixBarRegion _bar3;

    internal IgbVirtualFunction(IgbPhysicalFunction pf, int index, ConfigSpace template, CapabilityBuilder templateCaps) : base(pf, index)
    {
        Config = new ConfigSpace(template);
        Capabilities = IgbPhysicalFunction.VfCapabilities().AttachTo(Config, templateCaps);
        WireCapabilities();
        _bar3 = new MsixBarRegion(MsixTable!, 0, Igb82576.MsixPbaOffset);
    }

    internal static void InstallHeader(ConfigSpace cs, IgbPhysicalFunction pf) => InstallVfHeader(cs, pf);

    private IgbPort Nic => ((IgbPhysicalFunction)PhysicalFunction).Nic;

    /// <inheritdoc/>
    public override string Description => "Intel Corporation 82576 Virtual Function";

    /// <inheritdoc/>
    public override IMmioRegion GetBarRegion(int index) => index switch
    {
        0 => Nic.VfRegion(Index),
        3 => _bar3,
        _ => EmptyRegion.Instance,
    };

    /// <summary>VF FLR: the VF's registers and queues reset, VFLRE set, the PF signalled.</summary>
    protected override void OnDeviceReset() => Nic.ResetVf(Index);
}
