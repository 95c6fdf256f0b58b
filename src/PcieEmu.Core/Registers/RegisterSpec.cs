namespace PcieEmu.Core.Registers;

/// <summary>How software accesses a register field.</summary>
public enum Access : byte
{
    /// <summary>Reserved: reads 0, writes are ignored (bits not covered by any field are reserved).</summary>
    Reserved = 0,
    /// <summary>Read-only: writes are ignored; the device sets the value.</summary>
    RO = 1,
    /// <summary>Read-write.</summary>
    RW = 2,
    /// <summary>Write 1 to clear; writing 0 has no effect; the device sets bits.</summary>
    W1C = 3,
    /// <summary>Clear on read; writes are ignored; the device sets bits.</summary>
    RC = 4,
    /// <summary>Clear on read and write 1 to clear (interrupt cause registers such as EICR).</summary>
    RCW1C = 5,
    /// <summary>Write 1 to set; writing 0 has no effect; reads return the stored bits (mask registers such as IMS).</summary>
    W1S = 6,
    /// <summary>Write-only: the written value goes to the register's side effect; reads return 0.</summary>
    WO = 7,
    /// <summary>Self-clearing: writing 1 triggers the side effect; the bit always reads 0.</summary>
    SC = 8,
    /// <summary>Write 1 sets the same bits in the target register (ICS → ICR); reads return 0.</summary>
    SetOf = 9,
    /// <summary>Write 1 clears the same bits in the target register (IMC → IMS); reads return 0.</summary>
    ClearOf = 10,
}

/// <summary>A field of a register: <paramref name="Width"/> bits from <paramref name="Lsb"/>, with one access type.</summary>
/// <param name="Name">Field name (as in the datasheet / driver headers).</param>
/// <param name="Lsb">Lowest bit.</param>
/// <param name="Width">Number of bits (1-32).</param>
/// <param name="Access">Access type.</param>
public sealed record FieldSpec(string Name, int Lsb, int Width, Access Access)
{
    /// <summary>The bits the field covers.</summary>
    public uint Mask => Width >= 32 ? uint.MaxValue : ((1u << Width) - 1) << Lsb;

    /// <summary>A read-write field.</summary>
    public static FieldSpec Rw(string name, int lsb, int width = 1) => new(name, lsb, width, Access.RW);
    /// <summary>A read-only field.</summary>
    public static FieldSpec Ro(string name, int lsb, int width = 1) => new(name, lsb, width, Access.RO);
    /// <summary>A write-1-to-clear field.</summary>
    public static FieldSpec W1c(string name, int lsb, int width = 1) => new(name, lsb, width, Access.W1C);
    /// <summary>A clear-on-read field.</summary>
    public static FieldSpec Rc(string name, int lsb, int width = 1) => new(name, lsb, width, Access.RC);
    /// <summary>A clear-on-read, write-1-to-clear field.</summary>
    public static FieldSpec RcW1c(string name, int lsb, int width = 1) => new(name, lsb, width, Access.RCW1C);
    /// <summary>A write-1-to-set field.</summary>
    public static FieldSpec W1s(string name, int lsb, int width = 1) => new(name, lsb, width, Access.W1S);
    /// <summary>A write-only field.</summary>
    public static FieldSpec Wo(string name, int lsb, int width = 1) => new(name, lsb, width, Access.WO);
    /// <summary>A self-clearing field.</summary>
    public static FieldSpec Sc(string name, int lsb, int width = 1) => new(name, lsb, width, Access.SC);
    /// <summary>A field whose 1s set bits of the register's target.</summary>
    public static FieldSpec SetOf(string name, int lsb, int width = 1) => new(name, lsb, width, Access.SetOf);
    /// <summary>A field whose 1s clear bits of the register's target.</summary>
    public static FieldSpec ClearOf(string name, int lsb, int width = 1) => new(name, lsb, width, Access.ClearOf);
}

/// <summary>
/// A 32-bit register declared as data: name, offset, reset value and fields. Bits no field
/// covers are reserved (read 0, writes ignored).
/// </summary>
/// <param name="Name">Unique name in its file (arrays use NAME[n]).</param>
/// <param name="Offset">Byte offset in the register file (4-byte aligned).</param>
/// <param name="Reset">Value after reset.</param>
/// <param name="Fields">Fields, non-overlapping.</param>
/// <param name="Target">For <see cref="Access.SetOf"/> / <see cref="Access.ClearOf"/> fields: the register they act on.</param>
public sealed record RegisterSpec(string Name, uint Offset, uint Reset, IReadOnlyList<FieldSpec> Fields, string? Target = null)
{
    /// <summary>Union of the masks of fields with access <paramref name="access"/>.</summary>
    public uint MaskOf(Access access)
    {
        uint m = 0;
        foreach (var f in Fields) if (f.Access == access) m |= f.Mask;
        return m;
    }

    /// <summary>Bits that no field covers.</summary>
    public uint ReservedMask
    {
        get
        {
            uint m = 0;
            foreach (var f in Fields) m |= f.Mask;
            return ~m;
        }
    }

    /// <summary>Bits a read returns from storage (RO, RW, W1C, RC, RCW1C, W1S).</summary>
    public uint ReadableMask => MaskOf(Access.RO) | MaskOf(Access.RW) | MaskOf(Access.W1C) | MaskOf(Access.RC)
                                | MaskOf(Access.RCW1C) | MaskOf(Access.W1S);

    /// <summary>Checks the declaration; throws <see cref="ArgumentException"/> naming the problem.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(Name)) throw new ArgumentException("register name is required", nameof(Name));
        if (Offset % 4 != 0) throw new ArgumentException($"{Name}: offset 0x{Offset:X} is not 4-byte aligned", nameof(Offset));
        uint seen = 0;
        foreach (var f in Fields)
        {
            if (f.Width is < 1 or > 32 || f.Lsb < 0 || f.Lsb + f.Width > 32)
                throw new ArgumentException($"{Name}.{f.Name}: bits {f.Lsb}+{f.Width} do not fit in 32", nameof(Fields));
            if ((seen & f.Mask) != 0) throw new ArgumentException($"{Name}.{f.Name} overlaps another field", nameof(Fields));
            seen |= f.Mask;
            if (f.Access is Access.SetOf or Access.ClearOf && Target == null)
                throw new ArgumentException($"{Name}.{f.Name}: {f.Access} needs a target register", nameof(Target));
        }
        if ((Reset & ~ReadableMask) != 0)
            throw new ArgumentException($"{Name}: reset value 0x{Reset:X8} sets bits that are not stored", nameof(Reset));
    }
}
