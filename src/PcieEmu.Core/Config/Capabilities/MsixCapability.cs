namespace PcieEmu.Core.Config.Capabilities;

/// <summary>MSI-X capability (ID 0x11, PCI 3.0 §6.8.2), 12 bytes. The table and PBA live in a
/// BAR (<see cref="Interrupts.MsixTable"/>); this is the control block in config space.</summary>
/// <param name="vectors">Number of table entries (1-2048).</param>
/// <param name="tableBar">BAR indicator of the table.</param>
/// <param name="tableOffset">Offset of the table in that BAR (8-byte aligned).</param>
/// <param name="pbaBar">BAR indicator of the PBA.</param>
/// <param name="pbaOffset">Offset of the PBA in that BAR (8-byte aligned).</param>
public sealed class MsixCapability(int vectors, int tableBar, uint tableOffset, int pbaBar, uint pbaOffset) : Capability
{
    /// <summary>Message Control bits.</summary>
    public const ushort EnableBit = 0x8000, FunctionMaskBit = 0x4000;
    private ConfigSpace? _cs;
    private readonly int _vectors = vectors is >= 1 and <= 2048 ? vectors : throw new ArgumentOutOfRangeException(nameof(vectors));

    /// <summary>Raised after software changes Enable or Function Mask.</summary>
    public event Action? ControlChanged;

    /// <inheritdoc/>
    public override int Length => 12;
    /// <inheritdoc/>
    public override bool IsExtended => false;
    /// <inheritdoc/>
    public override ushort Id => 0x11;

    /// <summary>Table entries.</summary>
    public int Vectors => vectors;
    /// <summary>BAR holding the table.</summary>
    public int TableBar => tableBar;
    /// <summary>Table offset inside its BAR.</summary>
    public uint TableOffset => tableOffset;
    /// <summary>BAR holding the PBA.</summary>
    public int PbaBar => pbaBar;
    /// <summary>PBA offset inside its BAR.</summary>
    public uint PbaOffset => pbaOffset;

    private ushort Control => (ushort)(_cs?.ReadRaw(Offset + 2, 2) ?? 0);
    /// <summary>MSI-X Enable.</summary>
    public bool Enabled => (Control & EnableBit) != 0;
    /// <summary>Function Mask.</summary>
    public bool FunctionMasked => (Control & FunctionMaskBit) != 0;

    /// <inheritdoc/>
    protected internal override void Install(ConfigSpace cs)
    {
        cs.Init(Offset + 2, 2, (uint)(vectors - 1));
        cs.Init(Offset + 4, 4, tableOffset | (uint)tableBar);
        cs.Init(Offset + 8, 4, pbaOffset | (uint)pbaBar);
        cs.SetWritable(Offset + 2, 2, EnableBit | FunctionMaskBit);
    }

    /// <inheritdoc/>
    protected internal override void Attach(ConfigSpace cs)
    {
        _cs = cs;
        cs.AddHook(Offset + 2, 2, (_, o, n) => { if (o != n) ControlChanged?.Invoke(); });
    }
}
