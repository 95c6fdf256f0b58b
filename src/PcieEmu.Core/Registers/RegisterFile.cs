using PcieEmu.Core.AddressSpace;

namespace PcieEmu.Core.Registers;

/// <summary>A register mapped at one offset of a file.</summary>
/// <param name="Offset">Byte offset in the file.</param>
/// <param name="Name">Name at this offset (an alias has its own name).</param>
/// <param name="Register">The register (shared by its aliases).</param>
/// <param name="IsAlias">True when the register is declared elsewhere and only mapped here.</param>
public readonly record struct RegisterEntry(uint Offset, string Name, Register Register, bool IsAlias);

/// <summary>
/// A BAR's register file built from <see cref="RegisterSpec"/> declarations. Accesses of 1, 2
/// or 4 bytes act on the addressed bytes of one register; 8-byte accesses are two 4-byte
/// accesses, low dword first. Offsets with no register read 0 and ignore writes. Side effects
/// are wired by register name (<see cref="OnWrite"/>, <see cref="OnRead"/>).
/// </summary>
public sealed class RegisterFile : IMmioRegion, INamedRegion
{
    private readonly Register?[] _map;
    private readonly string?[] _names;
    private readonly Dictionary<string, Register> _byName = new(StringComparer.Ordinal);
    private readonly List<RegisterEntry> _entries = [];
    private readonly List<Register> _own = [];

    /// <summary>Builds a file of <paramref name="size"/> bytes from <paramref name="specs"/>.</summary>
    public RegisterFile(string name, uint size, IEnumerable<RegisterSpec> specs)
    {
        if (size == 0 || size % 4 != 0) throw new ArgumentException("size must be a non-zero multiple of 4", nameof(size));
        Name = name;
        Size = size;
        _map = new Register?[size / 4];
        _names = new string?[size / 4];
        var list = specs.ToList();
        foreach (var s in list) Add(new Register(s), s.Offset, s.Name, alias: false);
        foreach (var r in _own)
            if (r.Spec.Target is { } t)
                r.Target = _byName.TryGetValue(t, out var target) ? target
                    : throw new ArgumentException($"{r.Name}: target register {t} is not in {name}", nameof(specs));
    }

    /// <summary>File name (for messages).</summary>
    public string Name { get; }
    /// <summary>Size in bytes.</summary>
    public uint Size { get; }
    /// <summary>Every mapped register, declared ones and aliases, in mapping order.</summary>
    public IReadOnlyList<RegisterEntry> Entries => _entries;

    /// <summary>The register named <paramref name="name"/> (declared or alias).</summary>
    public Register this[string name] => _byName.TryGetValue(name, out var r) ? r
        : throw new KeyNotFoundException($"{Name} has no register {name}");

    /// <summary>True when <paramref name="name"/> is mapped.</summary>
    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>The register at <paramref name="offset"/>, or null.</summary>
    public Register? At(uint offset) => offset < Size ? _map[offset >> 2] : null;

    /// <summary>The name mapped at <paramref name="offset"/> (an alias's own name), or null.</summary>
    public string? RegisterNameAt(ulong offset) => offset < Size ? _names[offset >> 2] : null;

    /// <summary>Maps <paramref name="register"/> (declared in this or another file) at <paramref name="offset"/> under <paramref name="name"/>.</summary>
    public void Alias(uint offset, string name, Register register) => Add(register, offset, name, alias: true);

    private void Add(Register r, uint offset, string name, bool alias)
    {
        if (offset % 4 != 0 || offset >= Size) throw new ArgumentException($"{Name}: {name} at 0x{offset:X} is outside the file or misaligned", nameof(offset));
        if (_map[offset >> 2] is { } other) throw new ArgumentException($"{Name}: {name} at 0x{offset:X} collides with {other.Name}", nameof(offset));
        if (!_byName.TryAdd(name, r)) throw new ArgumentException($"{Name}: duplicate register name {name}", nameof(name));
        _map[offset >> 2] = r;
        _names[offset >> 2] = name;
        _entries.Add(new RegisterEntry(offset, name, r, alias));
        if (!alias) _own.Add(r);
    }

    /// <summary>Wires a write side effect to the register named <paramref name="name"/>.</summary>
    public RegisterFile OnWrite(string name, RegisterWriteHandler handler)
    {
        var r = this[name];
        r.WriteHandler = r.WriteHandler == null ? handler : r.WriteHandler + handler;
        return this;
    }

    /// <summary>Makes reads of <paramref name="name"/> see <paramref name="compute"/>() instead of the stored value.</summary>
    public RegisterFile OnRead(string name, Func<uint> compute)
    {
        this[name].ReadHandler = compute;
        return this;
    }

    /// <summary>Resets every register declared in this file (not aliases of other files' registers).</summary>
    public void Reset()
    {
        foreach (var r in _own) r.Reset();
    }

    /// <inheritdoc/>
    public ulong Read(ulong offset, int width)
    {
        if (width == 8) return Read(offset, 4) | Read(offset + 4, 4) << 32;
        if (offset >= Size) return 0;
        var r = _map[offset >> 2];
        if (r == null) return 0;
        int shift = (int)(offset & 3) * 8;
        uint bytes = width >= 4 ? uint.MaxValue : ((1u << (8 * width)) - 1) << shift;
        return r.SoftwareRead(bytes) >> shift;
    }

    /// <inheritdoc/>
    public void Write(ulong offset, int width, ulong value)
    {
        if (width == 8)
        {
            Write(offset, 4, value & 0xFFFF_FFFF);
            Write(offset + 4, 4, value >> 32);
            return;
        }
        if (offset >= Size) return;
        var r = _map[offset >> 2];
        if (r == null) return;
        int shift = (int)(offset & 3) * 8;
        uint bytes = width >= 4 ? uint.MaxValue : ((1u << (8 * width)) - 1) << shift;
        r.SoftwareWrite((uint)value << shift, bytes);
    }
}

/// <summary>Helpers to declare register files tersely.</summary>
public sealed class RegisterMapBuilder
{
    private readonly List<RegisterSpec> _specs = [];

    /// <summary>The declarations so far.</summary>
    public IReadOnlyList<RegisterSpec> Specs => _specs;

    /// <summary>Declares one register.</summary>
    public RegisterMapBuilder Reg(string name, uint offset, uint reset, params FieldSpec[] fields)
    {
        _specs.Add(new RegisterSpec(name, offset, reset, fields));
        return this;
    }

    /// <summary>Declares one register whose SetOf/ClearOf fields act on <paramref name="target"/>.</summary>
    public RegisterMapBuilder RegOn(string name, uint offset, string target, params FieldSpec[] fields)
    {
        _specs.Add(new RegisterSpec(name, offset, 0, fields, target));
        return this;
    }

    /// <summary>Declares NAME[0..count) at <paramref name="offset"/> + i × <paramref name="stride"/>.</summary>
    public RegisterMapBuilder Array(string name, uint offset, int count, uint stride, uint reset, params FieldSpec[] fields)
    {
        for (int i = 0; i < count; i++) _specs.Add(new RegisterSpec($"{name}[{i}]", offset + (uint)i * stride, reset, fields));
        return this;
    }

    /// <summary>Runs <paramref name="declare"/> on this builder (to share groups of declarations).</summary>
    public RegisterMapBuilder Also(Action<RegisterMapBuilder> declare)
    {
        declare(this);
        return this;
    }

    /// <summary>A fully read-write 32-bit register field list.</summary>
    public static FieldSpec[] AllRw(string name = "VALUE") => [FieldSpec.Rw(name, 0, 32)];
}
