namespace PcieEmu.Core.Config;

/// <summary>Kinds of base address register.</summary>
public enum BarKind
{
    /// <summary>32-bit memory BAR.</summary>
    Memory32,
    /// <summary>64-bit memory BAR; the upper half is the next BAR register.</summary>
    Memory64,
    /// <summary>I/O space BAR.</summary>
    Io,
    /// <summary>Expansion ROM BAR (0x30 in a type 0 header).</summary>
    Rom,
}

/// <summary>
/// An implemented BAR: its index (0-5, or 6 for the expansion ROM), kind, size and
/// prefetchability. Sizing is done entirely by the writable mask: only address bits at or
/// above log2(size) are writable, the type bits are read-only (PCI 3.0 §6.2.5.1).
/// </summary>
public sealed record BarDefinition(int Index, BarKind Kind, ulong Size, bool Prefetchable = false)
{
    /// <summary>Index used for the expansion ROM.</summary>
    public const int RomIndex = 6;

    /// <summary>Minimum sizes: 16 B memory, 4 B I/O, 2 KiB ROM.</summary>
    public static ulong MinimumSize(BarKind kind) => kind switch
    {
        BarKind.Io => 4,
        BarKind.Rom => 2048,
        _ => 16,
    };

    /// <summary>True for 64-bit memory BARs.</summary>
    public bool Is64Bit => Kind == BarKind.Memory64;

    /// <summary>True for I/O BARs.</summary>
    public bool IsIo => Kind == BarKind.Io;

    /// <summary>Checks size (power of two, not below the minimum) and placement.</summary>
    public void Validate()
    {
        if (Size < MinimumSize(Kind) || (Size & (Size - 1)) != 0)
            throw new ArgumentException($"BAR{Index}: size {Size} must be a power of two ≥ {MinimumSize(Kind)}", nameof(Size));
        if (Kind == BarKind.Rom ? Index != RomIndex : Index is < 0 or > 5 || (Is64Bit && Index == 5))
            throw new ArgumentException($"BAR index {Index} is invalid for {Kind}", nameof(Index));
        if (Kind == BarKind.Io && Size > 256)
            throw new ArgumentException("I/O BARs are at most 256 bytes", nameof(Size));
        if (Kind != BarKind.Memory64 && Size > 0x8000_0000UL)
            throw new ArgumentException("a 32-bit BAR is at most 2 GiB", nameof(Size));
    }

    /// <summary>The low type bits a BAR of this kind reads back.</summary>
    public uint TypeBits => Kind switch
    {
        BarKind.Io => 0x1,
        BarKind.Memory64 => 0x4u | (Prefetchable ? 0x8u : 0),
        BarKind.Memory32 => Prefetchable ? 0x8u : 0,
        _ => 0,
    };

    /// <summary>Installs this BAR in a header (or a VF BAR block) whose BAR0 is at <paramref name="bar0Offset"/>.</summary>
    public void Install(ConfigSpace cs, int bar0Offset = ConfigRegs.Bar0)
    {
        Validate();
        int off = Kind == BarKind.Rom ? ConfigRegs.ExpansionRom : bar0Offset + 4 * Index;
        switch (Kind)
        {
            case BarKind.Rom:
                cs.Init(off, 4, 0);
                cs.SetWritable(off, 4, (uint)~(Size - 1) & 0xFFFF_F800u | 1u);
                break;
            case BarKind.Io:
                cs.Init(off, 4, TypeBits);
                cs.SetWritable(off, 4, (uint)~(Size - 1) & 0xFFFF_FFFCu);
                break;
            case BarKind.Memory32:
                cs.Init(off, 4, TypeBits);
                cs.SetWritable(off, 4, (uint)~(Size - 1) & 0xFFFF_FFF0u);
                break;
            case BarKind.Memory64:
                ulong mask = ~(Size - 1) & ~0xFUL;
                cs.Init(off, 4, TypeBits);
                cs.Init(off + 4, 4, 0);
                cs.SetWritable(off, 4, (uint)mask);
                cs.SetWritable(off + 4, 4, (uint)(mask >> 32));
                break;
        }
    }

    /// <summary>Changes the size of an installed BAR (VF BARs follow the System Page Size).
    /// Address bits below the new size are cleared.</summary>
    public void Resize(ConfigSpace cs, ulong newSize, int bar0Offset)
    {
        var resized = this with { Size = newSize };
        int off = bar0Offset + 4 * Index;
        ulong current = ReadAddress(cs, bar0Offset);
        resized.Install(cs, bar0Offset);
        ulong addr = current & ~(newSize - 1);
        cs.SetRaw(off, 4, (uint)addr | TypeBits);
        if (Is64Bit) cs.SetRaw(off + 4, 4, (uint)(addr >> 32));
    }

    /// <summary>The address currently programmed (type bits stripped).</summary>
    public ulong ReadAddress(ConfigSpace cs, int bar0Offset = ConfigRegs.Bar0)
    {
        if (Kind == BarKind.Rom) return cs.ReadRaw(ConfigRegs.ExpansionRom, 4) & 0xFFFF_F800u;
        int off = bar0Offset + 4 * Index;
        ulong lo = cs.ReadRaw(off, 4);
        return Kind switch
        {
            BarKind.Io => lo & 0xFFFF_FFFC,
            BarKind.Memory64 => (lo & ~0xFUL) | (ulong)cs.ReadRaw(off + 4, 4) << 32,
            _ => lo & ~0xFUL,
        };
    }

    /// <summary>Programs an address (firmware enumeration), as software would with a config write.</summary>
    public void WriteAddress(ConfigSpace cs, ulong address, int bar0Offset = ConfigRegs.Bar0)
    {
        if (Kind == BarKind.Rom) { cs.Write(ConfigRegs.ExpansionRom, 4, (uint)address); return; }
        int off = bar0Offset + 4 * Index;
        cs.Write(off, 4, (uint)address);
        if (Is64Bit) cs.Write(off + 4, 4, (uint)(address >> 32));
    }
}
