using System.Buffers.Binary;

namespace PcieEmu.Core.Config;

/// <summary>Called after a software write changed bits of a register a capability owns.</summary>
/// <param name="offset">Offset of the watched register.</param>
/// <param name="oldValue">The register's value before the write (little-endian, register width).</param>
/// <param name="newValue">The register's value after the masks were applied.</param>
public delegate void ConfigWriteHook(int offset, uint oldValue, uint newValue);

/// <summary>
/// The 4 KiB configuration space of one function: the bytes plus parallel per-byte masks.
/// <para>
/// <see cref="Write"/> is the only path by which software changes config space. It applies
/// <c>new = (old &amp; ~wmask) | (val &amp; wmask)</c>, then clears <c>val &amp; w1cmask</c>,
/// and afterwards tells every hook whose register overlaps the write about the old and new
/// value. A bit is never both writable and write-1-to-clear.
/// </para>
/// <para>
/// The masks and the reset image may be shared between functions built from one template
/// (every VF of a PF), which keeps a VF at one 4 KiB data array plus its hooks.
/// </para>
/// </summary>
public sealed class ConfigSpace
{
    /// <summary>Size of PCIe configuration space per function.</summary>
    public const int Size = 4096;

    private readonly byte[] _data;
    private byte[] _wmask;
    private byte[] _w1cmask;
    private byte[] _reset;
    private byte[] _sticky;
    private bool _masksShared;
    private Hook[] _hooks = [];

    private readonly record struct Hook(int Offset, int Width, ConfigWriteHook Callback);

    /// <summary>Creates an all-zero, all-read-only config space.</summary>
    public ConfigSpace()
    {
        _data = new byte[Size];
        _wmask = new byte[Size];
        _w1cmask = new byte[Size];
        _reset = new byte[Size];
        _sticky = new byte[Size];
    }

    /// <summary>Creates a config space that shares <paramref name="template"/>'s masks and reset
    /// image (copy-on-write) and starts at the template's reset values. Hooks are not copied.</summary>
    public ConfigSpace(ConfigSpace template)
    {
        ArgumentNullException.ThrowIfNull(template);
        _data = (byte[])template._reset.Clone();
        _wmask = template._wmask;
        _w1cmask = template._w1cmask;
        _reset = template._reset;
        _sticky = template._sticky;
        _masksShared = true;
        template._masksShared = true;
    }

    /// <summary>Raw bytes (read-only view), for dumps and tests.</summary>
    public ReadOnlySpan<byte> Bytes => _data;

    /// <summary>Per-byte writable mask (read-only view).</summary>
    public ReadOnlySpan<byte> WritableMask => _wmask;

    /// <summary>Per-byte write-1-to-clear mask (read-only view).</summary>
    public ReadOnlySpan<byte> W1cMask => _w1cmask;

    /// <summary>The reset image (read-only view): what an FLR or reset restores.</summary>
    public ReadOnlySpan<byte> ResetImage => _reset;

    /// <summary>Checks a config access the way a config TLP constrains it: width 1, 2 or 4,
    /// inside one dword, offset below 4096. Throws <see cref="ArgumentException"/> naming the
    /// offending parameter.</summary>
    public static void ValidateAccess(int offset, int width)
    {
        if (width is not (1 or 2 or 4))
            throw new ArgumentException($"width must be 1, 2 or 4 (was {width})", nameof(width));
        if (offset is < 0 or >= Size)
            throw new ArgumentException($"offset must be in [0, 4096) (was {offset})", nameof(offset));
        if ((offset & 3) + width > 4)
            throw new ArgumentException($"a {width}-byte access at offset 0x{offset:X} crosses a dword boundary", nameof(offset));
    }

    /// <summary>Reads 1, 2 or 4 bytes (little-endian) inside one dword.</summary>
    public uint Read(int offset, int width)
    {
        ValidateAccess(offset, width);
        return ReadRaw(offset, width);
    }

    /// <summary>Reads without validation (offset and width already known good).</summary>
    internal uint ReadRaw(int offset, int width) => width switch
    {
        1 => _data[offset],
        2 => BinaryPrimitives.ReadUInt16LittleEndian(_data.AsSpan(offset, 2)),
        _ => BinaryPrimitives.ReadUInt32LittleEndian(_data.AsSpan(offset, 4)),
    };

    /// <summary>The single software write path: applies writable and W1C masks, then runs hooks.</summary>
    public void Write(int offset, int width, uint value)
    {
        ValidateAccess(offset, width);
        uint oldBytes = ReadRaw(offset, width);
        for (int i = 0; i < width; i++)
        {
            int o = offset + i;
            byte v = (byte)(value >> (8 * i));
            _data[o] = Merge(o, _data[o], v);
        }
        // Hooks run on every overlapping write, changed or not: some registers have
        // write-triggered semantics (a 1 written to a self-clearing bit); hooks compare
        // old and new themselves.
        if (_hooks.Length != 0) RunHooks(offset, width, oldBytes);
    }

    /// <summary>The byte at <paramref name="o"/> after software writes <paramref name="v"/> over <paramref name="old"/> (masks applied, no hooks).</summary>
    internal byte Merge(int o, byte old, byte v) => (byte)(((old & ~_wmask[o]) | (v & _wmask[o])) & ~(v & _w1cmask[o]));

    private void RunHooks(int offset, int width, uint oldBytes)
    {
        foreach (var h in _hooks)
        {
            if (h.Offset >= offset + width || offset >= h.Offset + h.Width) continue;
            uint old = 0;
            for (int i = 0; i < h.Width; i++)
            {
                int o = h.Offset + i;
                uint b = o >= offset && o < offset + width ? (oldBytes >> (8 * (o - offset))) & 0xFF : _data[o];
                old |= b << (8 * i);
            }
            h.Callback(h.Offset, old, ReadRaw(h.Offset, h.Width));
        }
    }

    /// <summary>Registers a hook on a register of <paramref name="width"/> bytes at
    /// <paramref name="offset"/>: called after any software write that overlaps it.</summary>
    public void AddHook(int offset, int width, ConfigWriteHook callback)
    {
        ArgumentNullException.ThrowIfNull(callback);
        _hooks = [.. _hooks, new Hook(offset, width, callback)];
    }

    // ---- Model-side (device-internal) accessors: they bypass the masks. ----

    /// <summary>Sets bytes as the device itself would (no masks, no hooks).</summary>
    public void SetRaw(int offset, int width, uint value)
    {
        for (int i = 0; i < width; i++) _data[offset + i] = (byte)(value >> (8 * i));
    }

    /// <summary>Sets the value a register has at reset as well as its current value.</summary>
    public void Init(int offset, int width, uint value)
    {
        SetRaw(offset, width, value);
        EnsureOwnMasks();
        for (int i = 0; i < width; i++) _reset[offset + i] = (byte)(value >> (8 * i));
    }

    /// <summary>Sets the writable mask of a register (bits software may change).</summary>
    public void SetWritable(int offset, int width, uint mask)
    {
        EnsureOwnMasks();
        for (int i = 0; i < width; i++) _wmask[offset + i] = (byte)(mask >> (8 * i));
    }

    /// <summary>Sets the write-1-to-clear mask of a register. A W1C bit is removed from the writable mask.</summary>
    public void SetW1c(int offset, int width, uint mask)
    {
        EnsureOwnMasks();
        for (int i = 0; i < width; i++)
        {
            _w1cmask[offset + i] = (byte)(mask >> (8 * i));
            _wmask[offset + i] &= (byte)~(mask >> (8 * i));
        }
    }

    /// <summary>Copies the current bytes into the reset image (end of construction).</summary>
    public void CaptureResetImage()
    {
        EnsureOwnMasks();
        _data.CopyTo(_reset, 0);
    }

    /// <summary>Marks bits as sticky (RWS, RW1CS, ROS): a Function Level Reset or hot reset keeps
    /// them (PCIe Base §7.4); only a cold reset (a new machine) clears them.</summary>
    public void SetSticky(int offset, int width, uint mask)
    {
        EnsureOwnMasks();
        for (int i = 0; i < width; i++) _sticky[offset + i] = (byte)(mask >> (8 * i));
    }

    /// <summary>Restores every non-sticky bit to its reset value (FLR, hot reset). Hooks are not
    /// run: the owner of the function resets its capability state alongside.</summary>
    public void RestoreReset()
    {
        for (int i = 0; i < Size; i++)
            _data[i] = (byte)((_data[i] & _sticky[i]) | (_reset[i] & ~_sticky[i]));
    }

    private void EnsureOwnMasks()
    {
        if (!_masksShared) return;
        _wmask = (byte[])_wmask.Clone();
        _w1cmask = (byte[])_w1cmask.Clone();
        _reset = (byte[])_reset.Clone();
        _sticky = (byte[])_sticky.Clone();
        _masksShared = false;
    }
}
