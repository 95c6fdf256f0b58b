namespace PcieEmu.Core.Config.Capabilities;

/// <summary>PCI Power Management capability (ID 0x01, PCI PM 1.2 §3.2), 8 bytes.</summary>
/// <param name="pmc">Power Management Capabilities register (RO).</param>
/// <param name="pmcsrReset">PMCSR value at reset (its RO fields: No_Soft_Reset, Data_Scale).</param>
/// <param name="data">Data register (RO).</param>
public sealed class PowerManagementCapability(ushort pmc, ushort pmcsrReset = 0, byte data = 0) : Capability
{
    /// <summary>PMCSR offset within the capability.</summary>
    public const int Pmcsr = 4;
    private const ushort PowerStateMask = 0x3, PmeEnable = 1 << 8, DataSelect = 0xF << 9, PmeStatus = 1 << 15;

    private ConfigSpace? _cs;

    /// <inheritdoc/>
    public override int Length => 8;
    /// <inheritdoc/>
    public override bool IsExtended => false;
    /// <inheritdoc/>
    public override ushort Id => 0x01;

    /// <summary>Current power state (0 = D0 ... 3 = D3hot).</summary>
    public int PowerState => _cs == null ? 0 : (int)(_cs.ReadRaw(Offset + Pmcsr, 2) & PowerStateMask);

    /// <inheritdoc/>
    protected internal override void Install(ConfigSpace cs)
    {
        cs.Init(Offset + 2, 2, pmc);
        cs.Init(Offset + Pmcsr, 2, pmcsrReset);
        cs.Init(Offset + 6, 1, 0);   // PMCSR_BSE: not a bridge
        cs.Init(Offset + 7, 1, data);
        uint w = PowerStateMask;
        if ((pmc & 0xF800) != 0) w |= PmeEnable;   // PME_En is RW only if some PME_Support bit is set
        if (data != 0) w |= DataSelect;             // Data_Select is RW when Data is implemented
        cs.SetWritable(Offset + Pmcsr, 2, w);
        if ((pmc & 0xF800) != 0) cs.SetW1c(Offset + Pmcsr, 2, PmeStatus);
    }

    /// <inheritdoc/>
    protected internal override void Attach(ConfigSpace cs)
    {
        _cs = cs;
        cs.AddHook(Offset + Pmcsr, 2, (off, oldV, newV) =>
        {
            // A write of an unsupported power state (D1/D2 without support) is ignored (PM 1.2 §5.4.1).
            uint state = newV & PowerStateMask;
            bool supported = state switch { 1 => (pmc & (1 << 9)) != 0, 2 => (pmc & (1 << 10)) != 0, _ => true };
            if (!supported) cs.SetRaw(off, 2, (newV & ~(uint)PowerStateMask) | (oldV & PowerStateMask));
        });
    }
}
