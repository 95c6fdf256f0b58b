using PcieEmu.Core.AddressSpace;
using PcieEmu.Core.Config;
using PcieEmu.Core.Platform;

namespace PcieEmu.Server.VfioUser;

/// <summary>
/// Config space as the virtual machine sees the assigned function, the way Linux's vfio-pci
/// presents a device to user space: the BAR registers (and the expansion ROM BAR) are virtual
/// (sized from the function's BARs; what the guest writes is a guest-physical address, recorded,
/// never written to the machine), the Interrupt Line is a virtual read/write byte, and for an SR-IOV
/// VF the Vendor and Device ID read as the PF's Vendor ID and the SR-IOV VF Device ID (hardware reads
/// FFFFh there) and Command.Memory Space Enable is emulated (hardware ties it to 0). Every other bit
/// is the function's own: reads and writes go to the machine (writes through ConfigSpace.Write).
/// Used by one connection thread at a time.
/// </summary>
internal sealed class ConfigView
{
    private const int BarCount = 6;
    private readonly Machine _machine;
    private FunctionDescription _function;
    private readonly uint[] _bars = new uint[BarCount];
    private uint _rom;
    private byte _interruptLine;
    private ushort _virtualCommand;

    public ConfigView(Machine machine, FunctionDescription function)
    {
        _machine = machine;
        _function = function;
        for (int i = 0; i < BarCount; i++) _bars[i] = Decode(i, 0);
    }

    /// <summary>The function this view presents (refreshed when it reappears).</summary>
    public FunctionDescription Function { get => _function; set => _function = value; }

    /// <summary>Memory Space Enable as the guest set it (a VF's is emulated; a PF's is its own).</summary>
    public bool MemoryEnabled => _function.IsVirtual
        ? (_virtualCommand & ConfigRegs.CmdMemorySpace) != 0
        : (_machine.ReadConfig(_function.Rid, ConfigRegs.Command, 2).Value & ConfigRegs.CmdMemorySpace) != 0;

    /// <summary>The guest-physical address the guest assigned to BAR <paramref name="index"/> (0 = none).</summary>
    public ulong GuestBarAddress(int index)
    {
        if (_function.Bar(index) is not { } b) return 0;
        ulong a = _bars[index] & (b.Kind == BarKind.Io ? ~3u : ~0xFu);
        if (b.Kind == BarKind.Memory64) a |= (ulong)_bars[index + 1] << 32;
        return a;
    }

    /// <summary>After a Function Level Reset: the emulated Command bits are back to 0 (BARs keep their addresses, as vfio restores them).</summary>
    public void OnReset() => _virtualCommand = 0;

    // Per byte: which bits are virtual (0xFF: the whole byte; 0: none).
    private byte VirtualMask(int offset)
    {
        if (offset is >= ConfigRegs.Bar0 and < ConfigRegs.Bar0 + 4 * BarCount) return 0xFF;
        if (offset is >= ConfigRegs.ExpansionRom and < ConfigRegs.ExpansionRom + 4) return 0xFF;
        if (offset == ConfigRegs.InterruptLine) return 0xFF;
        if (_function.IsVirtual)
        {
            if (offset < 4) return 0xFF;
            if (offset == ConfigRegs.Command) return (byte)ConfigRegs.CmdMemorySpace;
        }
        return 0;
    }

    private byte VirtualByte(int offset)
    {
        if (offset is >= ConfigRegs.Bar0 and < ConfigRegs.Bar0 + 4 * BarCount)
        {
            int rel = offset - ConfigRegs.Bar0;
            return (byte)(_bars[rel / 4] >> (8 * (rel & 3)));
        }
        if (offset is >= ConfigRegs.ExpansionRom and < ConfigRegs.ExpansionRom + 4) return (byte)(_rom >> (8 * (offset & 3)));
        if (offset == ConfigRegs.InterruptLine) return _interruptLine;
        if (offset < 4)
        {
            uint ids = (uint)_function.DeviceId << 16 | _function.VendorId;
            return (byte)(ids >> (8 * offset));
        }
        if (offset == ConfigRegs.Command) return (byte)_virtualCommand;
        return 0;
    }

    /// <summary>Reads <paramref name="destination"/>.Length bytes at <paramref name="offset"/> (already bounds-checked).</summary>
    public void Read(int offset, Span<byte> destination)
    {
        int done = 0;
        while (done < destination.Length)
        {
            int o = offset + done;
            int w = Piece(o, destination.Length - done);
            bool allVirtual = true;
            for (int i = 0; i < w; i++) allVirtual &= VirtualMask(o + i) == 0xFF;
            uint phys = allVirtual ? 0 : (uint)_machine.ReadConfig(_function.Rid, o, w).Value;
            for (int i = 0; i < w; i++)
            {
                byte m = VirtualMask(o + i);
                byte p = (byte)(phys >> (8 * i));
                destination[done + i] = m == 0 ? p : (byte)((p & ~m) | (VirtualByte(o + i) & m));
            }
            done += w;
        }
    }

    /// <summary>Writes <paramref name="source"/> at <paramref name="offset"/> (already bounds-checked).</summary>
    public void Write(int offset, ReadOnlySpan<byte> source)
    {
        int done = 0;
        while (done < source.Length)
        {
            int o = offset + done;
            int w = Piece(o, source.Length - done);
            uint value = 0;
            for (int i = 0; i < w; i++) value |= (uint)source[done + i] << (8 * i);
            bool anyFullyVirtual = false, anyVirtual = false;
            for (int i = 0; i < w; i++)
            {
                byte m = VirtualMask(o + i);
                anyVirtual |= m != 0;
                anyFullyVirtual |= m == 0xFF;
            }
            if (!anyFullyVirtual) _machine.WriteConfig(_function.Rid, o, w, value);
            else
            {
                // Only the bytes the function owns reach it, one at a time.
                for (int i = 0; i < w; i++)
                    if (VirtualMask(o + i) != 0xFF) _machine.WriteConfig(_function.Rid, o + i, 1, (byte)(value >> (8 * i)));
            }
            if (anyVirtual) WriteVirtual(o, w, value);
            done += w;
        }
    }

    private void WriteVirtual(int offset, int width, uint value)
    {
        for (int i = 0; i < width; i++)
        {
            int o = offset + i;
            byte b = (byte)(value >> (8 * i));
            if (o is >= ConfigRegs.Bar0 and < ConfigRegs.Bar0 + 4 * BarCount)
            {
                int rel = o - ConfigRegs.Bar0, index = rel / 4, shift = 8 * (rel & 3);
                uint raw = (_bars[index] & ~(0xFFu << shift)) | (uint)b << shift;
                _bars[index] = Decode(index, raw);
            }
            else if (o is >= ConfigRegs.ExpansionRom and < ConfigRegs.ExpansionRom + 4)
            {
                int shift = 8 * (o & 3);
                uint raw = (_rom & ~(0xFFu << shift)) | (uint)b << shift;
                _rom = _function.Bar(BarDefinitionRom) is { } rom ? (raw & ~(uint)(rom.Size - 1) & 0xFFFF_F800u) | (raw & 1) : 0;
            }
            else if (o == ConfigRegs.InterruptLine) _interruptLine = b;
            else if (o == ConfigRegs.Command && _function.IsVirtual)
                _virtualCommand = (ushort)((_virtualCommand & ~ConfigRegs.CmdMemorySpace) | (b & ConfigRegs.CmdMemorySpace));
        }
    }

    private const int BarDefinitionRom = BarDefinition.RomIndex;

    // A BAR register's value after software wrote raw: address bits below the size read 0, the type bits are fixed;
    // the upper half of a 64-bit BAR keeps the address bits at and above the size; anything else reads 0.
    private uint Decode(int index, uint raw)
    {
        if (_function.Bar(index) is { } b)
        {
            if (b.Kind == BarKind.Io) return (raw & ~(uint)(b.Size - 1) & ~3u) | b.TypeBits;
            return (raw & ~(uint)Math.Min(b.Size - 1, 0xFFFF_FFFFUL) & ~0xFu) | b.TypeBits;
        }
        if (index > 0 && _function.Bar(index - 1) is { Kind: BarKind.Memory64 } lower)
            return raw & (uint)(~(lower.Size - 1) >> 32);
        return 0;
    }

    // Largest naturally aligned access of 1, 2 or 4 bytes at offset that fits in count.
    private static int Piece(int offset, int count)
    {
        if ((offset & 3) == 0 && count >= 4) return 4;
        if ((offset & 1) == 0 && count >= 2 && (offset & 3) != 3) return 2;
        return 1;
    }

    /// <summary>Reads a value of a BAR through the function's real window (for REGION_READ on BARs).</summary>
    public ReadResult ReadBar(int bar, ulong offset, int width) => _machine.ReadBar(_function.Rid, bar, offset, width);
}
