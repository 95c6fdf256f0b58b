namespace PcieEmu.Core.Config.Capabilities;

/// <summary>Static parameters of an SR-IOV capability.</summary>
public sealed record SriovParameters
{
    /// <summary>InitialVFs (RO).</summary>
    public ushort InitialVfs { get; init; } = 8;
    /// <summary>TotalVFs (RO).</summary>
    public ushort TotalVfs { get; init; } = 8;
    /// <summary>VF Device ID.</summary>
    public ushort VfDeviceId { get; init; }
    /// <summary>First VF Offset while ARI Capable Hierarchy is clear.</summary>
    public ushort FirstVfOffset { get; init; } = 0x180;
    /// <summary>First VF Offset while ARI Capable Hierarchy is set.</summary>
    public ushort FirstVfOffsetAri { get; init; } = 0x80;
    /// <summary>VF Stride.</summary>
    public ushort VfStride { get; init; } = 2;
    /// <summary>Function Dependency Link.</summary>
    public byte FunctionDependencyLink { get; init; }
    /// <summary>Supported Page Sizes (bit n = 2^(n+12) bytes).</summary>
    public uint SupportedPageSizes { get; init; } = 0x553;
    /// <summary>VF BARs (memory only; sizes per VF at 4 KiB system page size).</summary>
    public IReadOnlyList<BarDefinition> VfBars { get; init; } = [];
    /// <summary>SR-IOV Capabilities register (RO).</summary>
    public uint Capabilities { get; init; }
}

/// <summary>Callbacks from the SR-IOV capability into the physical function that owns it.</summary>
public interface ISriovOwner
{
    /// <summary>VF Enable went 0→1 with <paramref name="numVfs"/> VFs.</summary>
    void CreateVfs(int numVfs);
    /// <summary>VF Enable went 1→0.</summary>
    void RemoveVfs();
}

/// <summary>The PFs of one device share the ARI Capable Hierarchy bit, which only the
/// lowest-numbered PF implements (SR-IOV 1.1 §3.3.3.5).</summary>
public sealed class SriovGroup
{
    private readonly List<SriovCapability> _members = [];
    /// <summary>Current ARI Capable Hierarchy value, as written in the lowest PF.</summary>
    public bool AriCapableHierarchy { get; private set; }
    internal void Join(SriovCapability cap) => _members.Add(cap);
    internal bool AnyVfEnabled => _members.Any(m => m.VfEnabled);
    internal void SetAri(bool value)
    {
        AriCapableHierarchy = value;
        foreach (var m in _members) m.UpdateOffsets();
    }
}

/// <summary>SR-IOV extended capability (ID 0x0010, v1, SR-IOV 1.1 §3.3), 0x40 bytes.</summary>
public sealed class SriovCapability : Capability
{
    /// <summary>Register offsets inside the capability.</summary>
    public const int Caps = 0x04, Control = 0x08, Status = 0x0A, InitialVfs = 0x0C, TotalVfs = 0x0E, NumVfsReg = 0x10,
        FuncDepLink = 0x12, FirstVfOffsetReg = 0x14, VfStrideReg = 0x16, VfDeviceIdReg = 0x1A, SupportedPageSizes = 0x1C,
        SystemPageSizeReg = 0x20, VfBar0 = 0x24, MigrationStateOffset = 0x3C;

    /// <summary>SR-IOV Control bits.</summary>
    public const ushort CtlVfEnable = 1 << 0, CtlMigrationEnable = 1 << 1, CtlMigrationInterruptEnable = 1 << 2,
        CtlVfMse = 1 << 3, CtlAriCapableHierarchy = 1 << 4;

    private readonly SriovParameters _p;
    private readonly SriovGroup _group;
    private readonly bool _isLowestPf;
    private readonly ISriovOwner _owner;
    private ConfigSpace? _cs;

    /// <summary>Creates the capability for a PF.</summary>
    public SriovCapability(SriovParameters parameters, SriovGroup group, bool isLowestPf, ISriovOwner owner)
    {
        _p = parameters; _group = group; _isLowestPf = isLowestPf; _owner = owner;
        if (_p.TotalVfs == 0 || _p.InitialVfs > _p.TotalVfs) throw new ArgumentException("TotalVFs must be ≥ 1 and ≥ InitialVFs", nameof(parameters));
        if (_p.VfStride == 0 || _p.FirstVfOffset == 0 || _p.FirstVfOffsetAri == 0)
            throw new ArgumentException("First VF Offset and VF Stride must be non-zero", nameof(parameters));
        if ((_p.SupportedPageSizes & 1) == 0) throw new ArgumentException("4 KiB pages must be supported", nameof(parameters));
        foreach (var b in _p.VfBars)
            if (b.Kind is BarKind.Io or BarKind.Rom) throw new ArgumentException("VF BARs are memory BARs", nameof(parameters));
        group.Join(this);
    }

    /// <inheritdoc/>
    public override int Length => 0x40;
    /// <inheritdoc/>
    public override bool IsExtended => true;
    /// <inheritdoc/>
    public override ushort Id => 0x0010;

    /// <summary>Static parameters.</summary>
    public SriovParameters Parameters => _p;

    private ConfigSpace Cs => _cs ?? throw new InvalidOperationException("SR-IOV capability not attached");
    private ushort Ctl => (ushort)Cs.ReadRaw(Offset + Control, 2);

    /// <summary>VF Enable.</summary>
    public bool VfEnabled => _cs != null && (Ctl & CtlVfEnable) != 0;
    /// <summary>VF Memory Space Enable.</summary>
    public bool VfMemorySpaceEnabled => (Ctl & CtlVfMse) != 0;
    /// <summary>NumVFs as programmed.</summary>
    public int NumVfs => (int)Cs.ReadRaw(Offset + NumVfsReg, 2);
    /// <summary>First VF Offset now in effect.</summary>
    public ushort FirstVfOffset => (ushort)Cs.ReadRaw(Offset + FirstVfOffsetReg, 2);
    /// <summary>VF Stride now in effect.</summary>
    public ushort VfStride => (ushort)Cs.ReadRaw(Offset + VfStrideReg, 2);
    /// <summary>System Page Size in bytes.</summary>
    public ulong SystemPageSize => 4096UL << System.Numerics.BitOperations.TrailingZeroCount(Math.Max(1u, Cs.ReadRaw(Offset + SystemPageSizeReg, 4)));

    /// <summary>Per-VF size of VF BAR <paramref name="bar"/>: the BAR's size, rounded up to the System Page Size.</summary>
    public ulong PerVfBarSize(BarDefinition bar) => Math.Max(bar.Size, SystemPageSize);

    /// <summary>Base address of VF BAR <paramref name="bar"/>'s aperture.</summary>
    public ulong VfBarBase(BarDefinition bar) => bar.ReadAddress(Cs, Offset + VfBar0);

    /// <inheritdoc/>
    protected internal override void Install(ConfigSpace cs)
    {
        int o = Offset;
        cs.Init(o + Caps, 4, _p.Capabilities);
        cs.Init(o + InitialVfs, 2, _p.InitialVfs);
        cs.Init(o + TotalVfs, 2, _p.TotalVfs);
        cs.Init(o + FuncDepLink, 1, _p.FunctionDependencyLink);
        cs.Init(o + FirstVfOffsetReg, 2, _p.FirstVfOffset);
        cs.Init(o + VfStrideReg, 2, _p.VfStride);
        cs.Init(o + VfDeviceIdReg, 2, _p.VfDeviceId);
        cs.Init(o + SupportedPageSizes, 4, _p.SupportedPageSizes);
        cs.Init(o + SystemPageSizeReg, 4, 1);
        foreach (var bar in _p.VfBars) bar.Install(cs, o + VfBar0);
        SetFrozen(cs, frozen: false);
    }

    // While VF Enable is set, NumVFs, System Page Size and ARI Capable Hierarchy are read-only
    // (SR-IOV 1.1 §3.3.3.1, §3.3.7, §3.3.13).
    private void SetFrozen(ConfigSpace cs, bool frozen)
    {
        int o = Offset;
        uint ctlW = CtlVfEnable | CtlVfMse;
        if ((_p.Capabilities & 1) != 0) ctlW |= CtlMigrationEnable | CtlMigrationInterruptEnable;
        if ((_p.Capabilities & 4) != 0) ctlW |= 1 << 5;   // VF 10-Bit Tag Requester Enable
        if (_isLowestPf && !frozen) ctlW |= CtlAriCapableHierarchy;
        cs.SetWritable(o + Control, 2, ctlW);
        cs.SetWritable(o + NumVfsReg, 2, frozen ? 0u : 0xFFFFu);
        cs.SetWritable(o + SystemPageSizeReg, 4, frozen ? 0u : _p.SupportedPageSizes);
        if ((_p.Capabilities & 1) != 0) cs.SetW1c(o + Status, 2, 1);
    }

    /// <inheritdoc/>
    protected internal override void Attach(ConfigSpace cs)
    {
        _cs = cs;
        int o = Offset;
        cs.AddHook(o + Control, 2, OnControl);
        cs.AddHook(o + NumVfsReg, 2, (off, old, n) =>
        {
            // NumVFs above TotalVFs is ignored, as the real part does; the old value stays.
            if (n > _p.TotalVfs) cs.SetRaw(off, 2, old);
            UpdateOffsets();
        });
        cs.AddHook(o + SystemPageSizeReg, 4, (off, old, n) =>
        {
            // Exactly one supported page size may be selected; anything else is ignored.
            if (n == 0 || (n & (n - 1)) != 0 || (n & _p.SupportedPageSizes) == 0) { cs.SetRaw(off, 4, old); return; }
            if (n != old) ResizeVfBars();
        });
    }

    private void OnControl(int off, uint old, uint n)
    {
        if (_isLowestPf && ((old ^ n) & CtlAriCapableHierarchy) != 0)
        {
            if (_group.AnyVfEnabled && (old & CtlVfEnable) != 0)
                Cs.SetRaw(off, 2, n = (n & ~(uint)CtlAriCapableHierarchy) | (old & CtlAriCapableHierarchy));
            else
                _group.SetAri((n & CtlAriCapableHierarchy) != 0);
        }
        bool was = (old & CtlVfEnable) != 0, now = (n & CtlVfEnable) != 0;
        if (was == now) return;
        SetFrozen(Cs, now);
        if (now) _owner.CreateVfs(NumVfs);
        else _owner.RemoveVfs();
    }

    /// <summary>Recomputes First VF Offset and VF Stride from NumVFs and ARI Capable Hierarchy.</summary>
    internal void UpdateOffsets()
    {
        if (_cs == null) return;
        ushort off = _group.AriCapableHierarchy ? _p.FirstVfOffsetAri : _p.FirstVfOffset;
        Cs.SetRaw(Offset + FirstVfOffsetReg, 2, off);
        Cs.SetRaw(Offset + VfStrideReg, 2, _p.VfStride);
    }

    private void ResizeVfBars()
    {
        foreach (var bar in _p.VfBars) bar.Resize(Cs, PerVfBarSize(bar), Offset + VfBar0);
    }

    /// <inheritdoc/>
    protected internal override void OnReset()
    {
        // The bytes were restored by the owner; the ARI bit of the group follows the lowest PF.
        SetFrozen(Cs, VfEnabled);
        ResizeVfBars();
        if (_isLowestPf) _group.SetAri((Ctl & CtlAriCapableHierarchy) != 0);
        else UpdateOffsets();
    }
}
