namespace PcieEmu.Core.Config.Capabilities;

/// <summary>Device/port type field of the PCI Express Capabilities register (PCIe Base §7.5.3.2).</summary>
public enum PciePortType : byte
{
    /// <summary>PCI Express Endpoint.</summary>
    Endpoint = 0,
    /// <summary>Legacy PCI Express Endpoint.</summary>
    LegacyEndpoint = 1,
    /// <summary>Root Port of a Root Complex.</summary>
    RootPort = 4,
    /// <summary>Upstream Port of a PCI Express Switch.</summary>
    SwitchUpstreamPort = 5,
    /// <summary>Downstream Port of a PCI Express Switch.</summary>
    SwitchDownstreamPort = 6,
    /// <summary>Root Complex Integrated Endpoint.</summary>
    RootComplexIntegratedEndpoint = 9,
}

/// <summary>Register values of a PCI Express capability (v2 layout, 0x3C bytes).</summary>
public sealed record PcieCapabilityValues
{
    /// <summary>Port type.</summary>
    public PciePortType PortType { get; init; } = PciePortType.Endpoint;
    /// <summary>Slot Implemented (ports).</summary>
    public bool SlotImplemented { get; init; }
    /// <summary>Device Capabilities.</summary>
    public uint DevCap { get; init; }
    /// <summary>Device Control at reset.</summary>
    public ushort DevCtl { get; init; } = 0x2810;   // MRRS 512 B, Relaxed Ordering, No Snoop
    /// <summary>Device Status at reset (RW1C error bits; AUX power).</summary>
    public ushort DevSta { get; init; }
    /// <summary>Link Capabilities.</summary>
    public uint LinkCap { get; init; }
    /// <summary>Link Control at reset.</summary>
    public ushort LinkCtl { get; init; }
    /// <summary>Link Status.</summary>
    public ushort LinkSta { get; init; }
    /// <summary>Slot Capabilities (when a slot is implemented).</summary>
    public uint SlotCap { get; init; }
    /// <summary>Slot Status at reset.</summary>
    public ushort SlotSta { get; init; }
    /// <summary>Device Capabilities 2.</summary>
    public uint DevCap2 { get; init; }
    /// <summary>Link Capabilities 2.</summary>
    public uint LinkCap2 { get; init; }
    /// <summary>Link Control 2 at reset.</summary>
    public ushort LinkCtl2 { get; init; }
    /// <summary>Link Status 2.</summary>
    public ushort LinkSta2 { get; init; }
    /// <summary>Writable bits of Device Control (bit 15, Initiate FLR, is added when FLR is capable).</summary>
    public ushort DevCtlWritable { get; init; } = 0x7DFF;
    /// <summary>Writable bits of Link Control.</summary>
    public ushort LinkCtlWritable { get; init; } = 0x02CB;
    /// <summary>Writable bits of Device Control 2.</summary>
    public ushort DevCtl2Writable { get; init; } = 0x001F;
    /// <summary>Writable bits of Link Control 2.</summary>
    public ushort LinkCtl2Writable { get; init; }
}

/// <summary>PCI Express capability (ID 0x10, version 2, PCIe Base §7.5.3), 0x3C bytes.</summary>
public sealed class PcieCapability(PcieCapabilityValues values) : Capability
{
    /// <summary>Register offsets inside the capability.</summary>
    public const int Caps = 0x02, DevCap = 0x04, DevCtl = 0x08, DevSta = 0x0A, LinkCap = 0x0C, LinkCtl = 0x10,
        LinkSta = 0x12, SlotCap = 0x14, SlotCtl = 0x18, SlotSta = 0x1A, RootCtl = 0x1C, RootCap = 0x1E,
        RootSta = 0x20, DevCap2 = 0x24, DevCtl2 = 0x28, DevSta2 = 0x2A, LinkCap2 = 0x2C, LinkCtl2 = 0x30, LinkSta2 = 0x32;

    /// <summary>DevCap bit 28: Function Level Reset capable.</summary>
    public const uint DevCapFlr = 1u << 28;
    /// <summary>DevCtl bit 15: Initiate Function Level Reset (reads 0).</summary>
    public const ushort DevCtlInitiateFlr = 0x8000;
    /// <summary>DevCap2 bit 5 / DevCtl2 bit 5: ARI Forwarding Supported / Enable (ports only).</summary>
    public const uint AriForwarding = 1u << 5;

    private ConfigSpace? _cs;

    /// <summary>Raised when software sets Initiate FLR on an FLR-capable function.</summary>
    public event Action? FlrRequested;

    /// <inheritdoc/>
    public override int Length => 0x3C;
    /// <inheritdoc/>
    public override bool IsExtended => false;
    /// <inheritdoc/>
    public override ushort Id => 0x10;

    /// <summary>The values this capability was built with.</summary>
    public PcieCapabilityValues Values => values;

    // Root and switch downstream ports face a link downstream: Link Disable, Retrain Link, slots,
    // ARI Forwarding. Root Control / Root Status exist only in root ports (PCIe Base §7.5.3.12-14).
    private bool IsPort => values.PortType is PciePortType.RootPort or PciePortType.SwitchDownstreamPort;
    private bool IsRoot => values.PortType == PciePortType.RootPort;
    // No port is FLR capable (Initiate FLR applies to endpoints only, PCIe Base §7.5.3.4).
    private bool IsAnyPort => IsPort || values.PortType == PciePortType.SwitchUpstreamPort;

    /// <summary>ARI Forwarding Enable (root and downstream ports).</summary>
    public bool AriForwardingEnabled => IsPort && _cs != null && (_cs.ReadRaw(Offset + DevCtl2, 2) & AriForwarding) != 0;

    /// <inheritdoc/>
    protected internal override void Install(ConfigSpace cs)
    {
        int o = Offset;
        uint caps = 2u | (uint)values.PortType << 4 | (values.SlotImplemented ? 1u << 8 : 0);
        cs.Init(o + Caps, 2, caps);
        cs.Init(o + DevCap, 4, values.DevCap);
        cs.Init(o + DevCtl, 2, values.DevCtl);
        ushort devCtlW = values.DevCtlWritable;
        if (!IsAnyPort && (values.DevCap & DevCapFlr) != 0) devCtlW |= DevCtlInitiateFlr;
        cs.SetWritable(o + DevCtl, 2, devCtlW);
        cs.Init(o + DevSta, 2, values.DevSta);
        cs.SetW1c(o + DevSta, 2, 0x000F);          // CED, NFED, FED, URD
        cs.Init(o + LinkCap, 4, values.LinkCap);
        cs.Init(o + LinkCtl, 2, values.LinkCtl);
        // Ports add Link Disable (4) and Retrain Link (5, reads 0); RCB is RO in root ports.
        cs.SetWritable(o + LinkCtl, 2, IsPort ? (values.LinkCtlWritable & ~0x8u) | 0x30u : values.LinkCtlWritable);
        cs.Init(o + LinkSta, 2, values.LinkSta);
        if (IsPort)
        {
            cs.SetW1c(o + LinkSta, 2, 0xC000);      // Link Bandwidth Management / Autonomous Bandwidth Status
            if (values.SlotImplemented)
            {
                cs.Init(o + SlotCap, 4, values.SlotCap);
                cs.Init(o + SlotCtl, 2, 0x01C0);    // indicators off
                cs.SetWritable(o + SlotCtl, 2, 0x1FFF);
                cs.Init(o + SlotSta, 2, values.SlotSta);
                cs.SetW1c(o + SlotSta, 2, 0x011F);
            }
            if (IsRoot)
            {
                cs.SetWritable(o + RootCtl, 2, 0x001F);
                cs.SetW1c(o + RootSta, 4, 1u << 16);  // PME Status
            }
        }
        cs.Init(o + DevCap2, 4, values.DevCap2);
        uint devCtl2W = values.DevCtl2Writable;
        if (IsPort && (values.DevCap2 & AriForwarding) != 0) devCtl2W |= AriForwarding;
        else devCtl2W &= ~AriForwarding;
        if ((values.DevCap2 & 0x10) == 0) devCtl2W &= ~0x10u;   // Completion Timeout Disable needs support
        if ((values.DevCap2 & 0x0F) == 0) devCtl2W &= ~0x0Fu;   // timeout ranges need support
        cs.SetWritable(o + DevCtl2, 2, devCtl2W);
        cs.Init(o + LinkCap2, 4, values.LinkCap2);
        cs.Init(o + LinkCtl2, 2, values.LinkCtl2);
        cs.SetWritable(o + LinkCtl2, 2, values.LinkCtl2Writable);
        cs.Init(o + LinkSta2, 2, values.LinkSta2);
    }

    /// <inheritdoc/>
    protected internal override void Attach(ConfigSpace cs)
    {
        _cs = cs;
        if (IsPort)
        {
            // Retrain Link always reads 0: the emulated link retrains instantly.
            cs.AddHook(Offset + LinkCtl, 2, (off, _, n) => { if ((n & 0x20) != 0) cs.SetRaw(off, 2, n & ~0x20u); });
            return;
        }
        if (IsAnyPort || (values.DevCap & DevCapFlr) == 0) return;
        cs.AddHook(Offset + DevCtl, 2, (off, _, n) =>
        {
            if ((n & DevCtlInitiateFlr) == 0) return;
            cs.SetRaw(off, 2, n & ~(uint)DevCtlInitiateFlr);   // Initiate FLR always reads 0
            FlrRequested?.Invoke();
        });
    }
}
