namespace PcieEmu.Core.Registers;

/// <summary>A side effect run after software wrote a register (under the machine lock).</summary>
/// <param name="register">The register; its <see cref="Register.Value"/> already holds the new value.</param>
/// <param name="old">Stored value before the write.</param>
/// <param name="written">The bits software wrote (only the bytes it addressed; others 0).</param>
/// <param name="byteMask">Which bits the access covered (0xFF per addressed byte).</param>
public delegate void RegisterWriteHandler(Register register, uint old, uint written, uint byteMask);

/// <summary>
/// One register's storage and behaviour, built from a <see cref="RegisterSpec"/>. The same
/// instance may be mapped at several offsets or in several files (legacy queue aliases, a VF's
/// view of the PF's queues); it then behaves identically everywhere.
/// </summary>
public sealed class Register
{
    private readonly uint _rw, _w1c, _rc, _w1s, _setOf, _clearOf, _readable;

    internal Register(RegisterSpec spec)
    {
        spec.Validate();
        Spec = spec;
        _rw = spec.MaskOf(Access.RW);
        _w1c = spec.MaskOf(Access.W1C) | spec.MaskOf(Access.RCW1C);
        _rc = spec.MaskOf(Access.RC) | spec.MaskOf(Access.RCW1C);
        _w1s = spec.MaskOf(Access.W1S);
        _setOf = spec.MaskOf(Access.SetOf);
        _clearOf = spec.MaskOf(Access.ClearOf);
        _readable = spec.ReadableMask;
        Value = spec.Reset;
    }

    /// <summary>The declaration.</summary>
    public RegisterSpec Spec { get; }
    /// <summary>The register's name.</summary>
    public string Name => Spec.Name;
    /// <summary>Stored value (device side: the device reads and updates it directly).</summary>
    public uint Value;
    /// <summary>For SetOf/ClearOf fields: the register they act on.</summary>
    public Register? Target { get; internal set; }
    /// <summary>Side effect after a software write.</summary>
    public RegisterWriteHandler? WriteHandler { get; set; }
    /// <summary>Computes the value a read sees (for registers that mirror device state); null = stored value.</summary>
    public Func<uint>? ReadHandler { get; set; }

    /// <summary>When set, clear-on-read bits clear only if it returns true at the read (the
    /// 82576's ICR clears only under conditions); null = always.</summary>
    public Func<bool>? ReadClearCondition { get; set; }

    /// <summary>Back to the reset value.</summary>
    public void Reset() => Value = Spec.Reset;

    /// <summary>The device sets bits (interrupt causes, status).</summary>
    public void HardwareSet(uint bits) => Value |= bits;

    /// <summary>The device clears bits.</summary>
    public void HardwareClear(uint bits) => Value &= ~bits;

    /// <summary>A software read of the bytes in <paramref name="byteMask"/>: returns the readable bits
    /// and clears the clear-on-read bits inside the accessed bytes.</summary>
    public uint SoftwareRead(uint byteMask)
    {
        uint v = (ReadHandler?.Invoke() ?? Value) & _readable;
        if (_rc != 0 && (ReadClearCondition == null || ReadClearCondition())) Value &= ~(_rc & byteMask);
        return v & byteMask;
    }

    /// <summary>A software write of <paramref name="value"/> to the bytes in <paramref name="byteMask"/>,
    /// applying every field's access type, then the side effect.</summary>
    public void SoftwareWrite(uint value, uint byteMask)
    {
        uint old = Value;
        uint v = value & byteMask;
        uint n = (old & ~(_rw & byteMask)) | (v & _rw);
        n |= v & _w1s;
        n &= ~(v & _w1c);
        Value = n;
        if (Target != null)
        {
            if ((v & _setOf) != 0) Target.Value |= v & _setOf;
            if ((v & _clearOf) != 0) Target.Value &= ~(v & _clearOf);
        }
        WriteHandler?.Invoke(this, old, v, byteMask);
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Name}=0x{Value:X8}";
}
