namespace PcieEmu.Core.Config.Capabilities;

/// <summary>MSI capability (ID 0x05, PCI 3.0 §6.8.1). 64-bit and per-vector masking are options.</summary>
public sealed class MsiCapability : Capability
{
    private readonly bool _is64;
    private readonly bool _perVectorMask;
    private readonly int _log2Vectors;
    private ConfigSpace? _cs;

    /// <summary>Creates an MSI capability.</summary>
    /// <param name="is64Bit">64-bit message address.</param>
    /// <param name="perVectorMasking">Mask and Pending registers present.</param>
    /// <param name="log2Vectors">Multiple Message Capable (0 = 1 vector ... 5 = 32).</param>
    public MsiCapability(bool is64Bit, bool perVectorMasking, int log2Vectors = 0)
    {
        if (log2Vectors is < 0 or > 5) throw new ArgumentOutOfRangeException(nameof(log2Vectors));
        _is64 = is64Bit; _perVectorMask = perVectorMasking; _log2Vectors = log2Vectors;
    }

    /// <summary>Raised after software changes MSI control, mask bits or the message.</summary>
    public event Action? Changed;

    /// <inheritdoc/>
    public override int Length => 10 + (_is64 ? 4 : 0) + (_perVectorMask ? 10 : 0);
    /// <inheritdoc/>
    public override bool IsExtended => false;
    /// <inheritdoc/>
    public override ushort Id => 0x05;

    private int DataOffset => Offset + (_is64 ? 0x0C : 0x08);
    private int MaskOffset => Offset + (_is64 ? 0x10 : 0x0C);
    private int PendingOffset => MaskOffset + 4;

    /// <summary>Number of vectors the device supports.</summary>
    public int VectorCount => 1 << _log2Vectors;

    /// <summary>Whether per-vector masking is implemented.</summary>
    public bool PerVectorMasking => _perVectorMask;

    private ConfigSpace Cs => _cs ?? throw new InvalidOperationException("MSI capability not attached");

    /// <summary>MSI Enable.</summary>
    public bool Enabled => (Cs.ReadRaw(Offset + 2, 2) & 1) != 0;

    /// <summary>Vectors allocated by software (Multiple Message Enable, clamped to capability).</summary>
    public int EnabledVectors => 1 << (int)Math.Min((Cs.ReadRaw(Offset + 2, 2) >> 4) & 7, (uint)_log2Vectors);

    /// <summary>Message address.</summary>
    public ulong Address => Cs.ReadRaw(Offset + 4, 4) | (_is64 ? (ulong)Cs.ReadRaw(Offset + 8, 4) << 32 : 0);

    /// <summary>Message data.</summary>
    public ushort Data => (ushort)Cs.ReadRaw(DataOffset, 2);

    /// <summary>Whether <paramref name="vector"/> is masked by its mask bit.</summary>
    public bool IsMasked(int vector) => _perVectorMask && (Cs.ReadRaw(MaskOffset, 4) & (1u << vector)) != 0;

    /// <summary>Sets or clears the pending bit of a vector (device side; RO to software).</summary>
    public void SetPending(int vector, bool pending)
    {
        if (!_perVectorMask) return;
        uint p = Cs.ReadRaw(PendingOffset, 4);
        Cs.SetRaw(PendingOffset, 4, pending ? p | (1u << vector) : p & ~(1u << vector));
    }

    /// <summary>Pending bits.</summary>
    public uint Pending => _perVectorMask ? Cs.ReadRaw(PendingOffset, 4) : 0;

    /// <inheritdoc/>
    protected internal override void Install(ConfigSpace cs)
    {
        uint ctl = (uint)(_log2Vectors << 1) | (_is64 ? 1u << 7 : 0) | (_perVectorMask ? 1u << 8 : 0);
        cs.Init(Offset + 2, 2, ctl);
        cs.SetWritable(Offset + 2, 2, 0x0071);          // Enable, Multiple Message Enable
        cs.SetWritable(Offset + 4, 4, 0xFFFF_FFFC);      // address bits 1:0 are zero
        if (_is64) cs.SetWritable(Offset + 8, 4, 0xFFFF_FFFF);
        cs.SetWritable(DataOffset, 2, 0xFFFF);
        if (_perVectorMask)
            cs.SetWritable(MaskOffset, 4, VectorCount == 32 ? 0xFFFF_FFFF : (1u << VectorCount) - 1);
    }

    /// <inheritdoc/>
    protected internal override void Attach(ConfigSpace cs)
    {
        _cs = cs;
        cs.AddHook(Offset + 2, 2, (_, o, n) => { if (o != n) Changed?.Invoke(); });
        if (_perVectorMask) cs.AddHook(MaskOffset, 4, (_, o, n) => { if (o != n) Changed?.Invoke(); });
    }
}
