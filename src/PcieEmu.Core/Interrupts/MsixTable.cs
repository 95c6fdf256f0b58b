using System.Buffers.Binary;
using PcieEmu.Core.AddressSpace;
using PcieEmu.Core.Config.Capabilities;

namespace PcieEmu.Core.Interrupts;

/// <summary>
/// The MSI-X table and Pending Bit Array of one function (PCI 3.0 §6.8.2.6-§6.8.2.10).
/// Entries are 16 bytes: address low (bits 1:0 read 0), address high, data, vector control
/// (bit 0 mask; other bits reserved, read 0). The PBA is read-only, one bit per vector.
/// A vector is masked when its mask bit, Function Mask, or MSI-X Enable = 0 says so; an event on
/// a masked vector sets its pending bit, and unmasking a pending vector clears the bit and
/// sends the message.
/// </summary>
public sealed class MsixTable
{
    private readonly MsixCapability _cap;
    private readonly byte[] _table;
    private readonly ulong[] _pba;
    private readonly Action<ulong, uint, int> _send;

    /// <summary>Creates the table for <paramref name="cap"/>; <paramref name="send"/> writes a message (address, data, vector).</summary>
    public MsixTable(MsixCapability cap, Action<ulong, uint, int> send)
    {
        _cap = cap;
        _send = send;
        _table = new byte[16 * cap.Vectors];
        _pba = new ulong[(cap.Vectors + 63) / 64];
        Reset();
        cap.ControlChanged += DeliverPending;
    }

    /// <summary>Number of vectors.</summary>
    public int Vectors => _cap.Vectors;

    /// <summary>Size of the table in bytes.</summary>
    public int TableSize => _table.Length;

    /// <summary>Size of the PBA in bytes.</summary>
    public int PbaSize => _pba.Length * 8;

    /// <summary>Back to reset: all entries zero and masked, no pending bits.</summary>
    public void Reset()
    {
        Array.Clear(_table);
        Array.Clear(_pba);
        for (int v = 0; v < _cap.Vectors; v++) _table[16 * v + 12] = 1;
    }

    /// <summary>Entry address.</summary>
    public ulong Address(int v) => BinaryPrimitives.ReadUInt64LittleEndian(_table.AsSpan(16 * v));
    /// <summary>Entry data.</summary>
    public uint Data(int v) => BinaryPrimitives.ReadUInt32LittleEndian(_table.AsSpan(16 * v + 8));
    /// <summary>Entry mask bit.</summary>
    public bool EntryMasked(int v) => (_table[16 * v + 12] & 1) != 0;
    /// <summary>Pending bit.</summary>
    public bool IsPending(int v) => (_pba[v >> 6] & (1UL << (v & 63))) != 0;
    /// <summary>Whether vector <paramref name="v"/> is masked now, for any reason.</summary>
    public bool IsMasked(int v) => !_cap.Enabled || _cap.FunctionMasked || EntryMasked(v);

    /// <summary>An interrupt event for vector <paramref name="v"/>: sent, or held pending if masked.</summary>
    public void Signal(int v)
    {
        if ((uint)v >= (uint)_cap.Vectors) throw new ArgumentOutOfRangeException(nameof(v));
        if (IsMasked(v)) { _pba[v >> 6] |= 1UL << (v & 63); return; }
        _send(Address(v), Data(v), v);
    }

    /// <summary>Sends every pending vector that is no longer masked.</summary>
    public void DeliverPending()
    {
        if (!_cap.Enabled || _cap.FunctionMasked) return;
        for (int v = 0; v < _cap.Vectors; v++)
        {
            if (!IsPending(v) || EntryMasked(v)) continue;
            _pba[v >> 6] &= ~(1UL << (v & 63));
            _send(Address(v), Data(v), v);
        }
    }

    /// <summary>Reads from the table (offset relative to the table start).</summary>
    public ulong ReadTable(ulong offset, int width)
    {
        if (offset + (ulong)width > (ulong)_table.Length) return 0;
        return ReadLe(_table.AsSpan((int)offset, width));
    }

    /// <summary>Writes to the table (offset relative to the table start). Reserved bits stay 0.</summary>
    public void WriteTable(ulong offset, int width, ulong value)
    {
        if (offset + (ulong)width > (ulong)_table.Length) return;
        bool unmasking = false;
        for (int i = 0; i < width; i++)
        {
            int o = (int)offset + i;
            byte b = (byte)(value >> (8 * i));
            switch (o & 15)
            {
                case 0: b &= 0xFC; break;              // address bits 1:0 are zero (DWORD aligned)
                case 12:
                    if ((_table[o] & 1) != 0 && (b & 1) == 0) unmasking = true;
                    b &= 1; break;                     // only the Mask bit is defined
                case 13: case 14: case 15: b = 0; break;
            }
            _table[o] = b;
        }
        if (unmasking) DeliverPending();
    }

    /// <summary>Reads the PBA (offset relative to the PBA start). Writes to the PBA are ignored.</summary>
    public ulong ReadPba(ulong offset, int width)
    {
        if (offset + (ulong)width > (ulong)PbaSize) return 0;
        Span<byte> tmp = stackalloc byte[PbaSize];
        for (int i = 0; i < _pba.Length; i++) BinaryPrimitives.WriteUInt64LittleEndian(tmp[(8 * i)..], _pba[i]);
        return ReadLe(tmp.Slice((int)offset, width));
    }

    private static ulong ReadLe(ReadOnlySpan<byte> s) => s.Length switch
    {
        1 => s[0],
        2 => BinaryPrimitives.ReadUInt16LittleEndian(s),
        4 => BinaryPrimitives.ReadUInt32LittleEndian(s),
        _ => BinaryPrimitives.ReadUInt64LittleEndian(s),
    };
}

/// <summary>
/// A BAR whose register file holds the MSI-X table and PBA (at the capability's offsets) and,
/// optionally, another register file for the rest of the BAR.
/// </summary>
public sealed class MsixBarRegion(MsixTable table, uint tableOffset, uint pbaOffset, IMmioRegion? rest = null) : IMmioRegion, INamedRegion
{
    private static readonly string[] EntryFields = ["Message Address", "Message Upper Address", "Message Data", "Vector Control"];

    /// <inheritdoc/>
    public string? RegisterNameAt(ulong offset)
    {
        if (offset >= tableOffset && offset < tableOffset + (ulong)table.TableSize)
        {
            ulong rel = offset - tableOffset;
            return $"MSI-X[{rel / 16}] {EntryFields[(rel & 15) / 4]}";
        }
        if (offset >= pbaOffset && offset < pbaOffset + (ulong)table.PbaSize) return $"PBA[{(offset - pbaOffset) / 8}]";
        return (rest as INamedRegion)?.RegisterNameAt(offset);
    }

    /// <inheritdoc/>
    public ulong Read(ulong offset, int width)
    {
        if (offset >= tableOffset && offset < tableOffset + (ulong)table.TableSize) return table.ReadTable(offset - tableOffset, width);
        if (offset >= pbaOffset && offset < pbaOffset + (ulong)table.PbaSize) return table.ReadPba(offset - pbaOffset, width);
        return rest?.Read(offset, width) ?? 0;
    }

    /// <inheritdoc/>
    public void Write(ulong offset, int width, ulong value)
    {
        if (offset >= tableOffset && offset < tableOffset + (ulong)table.TableSize) { table.WriteTable(offset - tableOffset, width, value); return; }
        if (offset >= pbaOffset && offset < pbaOffset + (ulong)table.PbaSize) return;
        rest?.Write(offset, width, value);
    }
}
