namespace PcieEmu.Core.Config;

/// <summary>
/// One capability structure in a function's config space. <see cref="Install"/> writes the
/// bytes, reset values and masks (read-only first, then exactly the bits the spec makes
/// writable); <see cref="Attach"/> wires the write hooks and binds per-function state.
/// Functions cloned from a template (VFs) only call <see cref="Attach"/>.
/// </summary>
public abstract class Capability
{
    /// <summary>Offset of the capability header in config space (set by the builder).</summary>
    public int Offset { get; internal set; }

    /// <summary>Length of the structure in bytes, header included.</summary>
    public abstract int Length { get; }

    /// <summary>True for PCIe extended capabilities (offset ≥ 0x100, 32-bit headers).</summary>
    public abstract bool IsExtended { get; }

    /// <summary>Capability ID (8-bit for standard, 16-bit for extended).</summary>
    public abstract ushort Id { get; }

    /// <summary>Extended capability version (ignored for standard capabilities).</summary>
    public virtual byte Version => 1;

    /// <summary>Writes the body (the builder writes the header) and sets masks.</summary>
    protected internal abstract void Install(ConfigSpace cs);

    /// <summary>Wires hooks and state to a config space whose bytes are already installed.</summary>
    protected internal virtual void Attach(ConfigSpace cs) { }

    /// <summary>Resets internal state of the capability (FLR / reset); bytes are restored by the owner.</summary>
    protected internal virtual void OnReset() { }
}

/// <summary>
/// Allocates capability offsets and chains both lists: the standard list from the
/// Capabilities Pointer (0x34), the extended list from 0x100. Offsets may be fixed (to match
/// real silicon) or allocated dword-aligned after the previous capability.
/// </summary>
public sealed class CapabilityBuilder
{
    private readonly List<(Capability Cap, int? Fixed)> _caps = [];

    /// <summary>Adds a capability, optionally at a fixed offset.</summary>
    public CapabilityBuilder Add(Capability cap, int? offset = null)
    {
        _caps.Add((cap, offset));
        return this;
    }

    /// <summary>Installs every capability into <paramref name="cs"/> and links the lists.
    /// Sets Status.Capabilities List when the standard list is not empty.</summary>
    public IReadOnlyList<Capability> Build(ConfigSpace cs)
    {
        int nextStd = 0x40, nextExt = 0x100;
        Capability? prevStd = null, prevExt = null;
        foreach (var (cap, fix) in _caps)
        {
            int off = fix ?? (cap.IsExtended ? nextExt : nextStd);
            if (cap.IsExtended ? off < 0x100 || off + cap.Length > ConfigSpace.Size : off < 0x40 || off + cap.Length > 0x100)
                throw new InvalidOperationException($"capability 0x{cap.Id:X} does not fit at 0x{off:X}");
            cap.Offset = off;
            if (cap.IsExtended)
            {
                cs.Init(off, 4, cap.Id | (uint)cap.Version << 16);
                if (prevExt != null) LinkExtended(cs, prevExt, off);
                prevExt = cap;
                nextExt = Align4(off + cap.Length);
            }
            else
            {
                cs.Init(off, 1, cap.Id);
                cs.Init(off + 1, 1, 0);
                if (prevStd != null) cs.Init(prevStd.Offset + 1, 1, (uint)off);
                else cs.Init(ConfigRegs.CapabilitiesPointer, 1, (uint)off);
                prevStd = cap;
                nextStd = Align4(off + cap.Length);
            }
            cap.Install(cs);
            cap.Attach(cs);
        }
        _built = true;
        if (prevStd != null)
            cs.Init(ConfigRegs.Status, 2, cs.ReadRaw(ConfigRegs.Status, 2) | ConfigRegs.StatusCapList);
        return [.. _caps.Select(c => c.Cap)];
    }

    private bool _built;

    /// <summary>
    /// Binds the same capabilities (fresh instances, added in the same order with the same
    /// offsets) to a config space cloned from a template this builder's twin already built:
    /// no bytes are written, only offsets and hooks are set.
    /// </summary>
    public IReadOnlyList<Capability> AttachTo(ConfigSpace cs, CapabilityBuilder built)
    {
        if (!built._built || built._caps.Count != _caps.Count)
            throw new InvalidOperationException("the template builder must have built the same capability list");
        for (int i = 0; i < _caps.Count; i++)
        {
            _caps[i].Cap.Offset = built._caps[i].Cap.Offset;
            _caps[i].Cap.Attach(cs);
        }
        return [.. _caps.Select(c => c.Cap)];
    }

    private static void LinkExtended(ConfigSpace cs, Capability prev, int next)
    {
        uint hdr = cs.ReadRaw(prev.Offset, 4);
        cs.Init(prev.Offset, 4, (hdr & 0x000F_FFFF) | (uint)next << 20);
    }

    private static int Align4(int v) => (v + 3) & ~3;
}
