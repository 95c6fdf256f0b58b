using System.Buffers.Binary;
using System.Threading;
using PcieEmu.Client;

namespace PcieEmu.Drivers.Virtio;

/// <summary>
/// One split virtqueue (virtio 1.2 §2.7) in the machine's RAM, written and read through the mapped
/// RAM file as a guest CPU would: descriptor table, available (driver) ring and used (device) ring,
/// and one buffer per descriptor. Single-buffer chains only; no indirect descriptors, no event index.
/// </summary>
public sealed class SplitQueue
{
    public const int BufferSize = 2048;
    private const ushort DescWrite = 2;
    private readonly RamMapping _ram;
    private ushort _availIdx, _lastUsed;

    public SplitQueue(RamMapping ram, ushort index, int size, ulong area)
    {
        if (size < 2 || size > 32768 || (size & (size - 1)) != 0) throw new ArgumentOutOfRangeException(nameof(size), "a power of two in 2..32768");
        _ram = ram;
        Index = index;
        Size = size;
        Desc = area;
        Avail = Desc + (ulong)(16 * size);
        Used = (Avail + (ulong)(6 + 2 * size) + 0xFFF) & ~0xFFFUL;
        Buffers = (Used + (ulong)(6 + 8 * size) + 0xFFF) & ~0xFFFUL;
        End = Buffers + (ulong)(size * BufferSize);
        _ram.GetSpan(Desc, (int)(Buffers - Desc)).Clear();
    }

    public ushort Index { get; }
    public int Size { get; }
    /// <summary>Guest-physical addresses of the three parts, the buffers, and the first byte after them.</summary>
    public ulong Desc { get; }
    public ulong Avail { get; }
    public ulong Used { get; }
    public ulong Buffers { get; }
    public ulong End { get; }
    /// <summary>queue_notify_off read at setup.</summary>
    public uint NotifyOff { get; set; }
    /// <summary>Chains made available and not yet seen used.</summary>
    public int InFlight => (ushort)(_availIdx - _lastUsed);

    public ulong BufferAddress(int slot) => Buffers + (ulong)(slot * BufferSize);
    public Span<byte> Buffer(int slot) => _ram.GetSpan(BufferAddress(slot), BufferSize);

    /// <summary>Puts descriptor <paramref name="slot"/> (its buffer, <paramref name="length"/> bytes) in the next available
    /// entry; <see cref="Publish"/> makes entries visible to the device.</summary>
    public void Add(int slot, int length, bool deviceWritable)
    {
        var d = _ram.GetSpan(Desc + (ulong)(16 * slot), 16);
        BinaryPrimitives.WriteUInt64LittleEndian(d, BufferAddress(slot));
        BinaryPrimitives.WriteUInt32LittleEndian(d[8..], (uint)length);
        BinaryPrimitives.WriteUInt16LittleEndian(d[12..], deviceWritable ? DescWrite : (ushort)0);
        BinaryPrimitives.WriteUInt16LittleEndian(d[14..], 0);
        BinaryPrimitives.WriteUInt16LittleEndian(_ram.GetSpan(Avail + 4 + (ulong)(2 * (_availIdx % Size)), 2), (ushort)slot);
        _availIdx++;
    }

    /// <summary>Writes avail->idx after the entries (the store order the device relies on, §2.7.13).</summary>
    public void Publish()
    {
        Interlocked.MemoryBarrier();
        BinaryPrimitives.WriteUInt16LittleEndian(_ram.GetSpan(Avail + 2, 2), _availIdx);
    }

    /// <summary>The next used element (descriptor id, bytes written), or null when the device has not used one.</summary>
    public (int Id, int Length)? NextUsed()
    {
        ushort usedIdx = BinaryPrimitives.ReadUInt16LittleEndian(_ram.GetSpan(Used + 2, 2));
        if (usedIdx == _lastUsed) return null;
        Interlocked.MemoryBarrier();
        var e = _ram.GetSpan(Used + 4 + (ulong)(8 * (_lastUsed % Size)), 8);
        _lastUsed++;
        return ((int)BinaryPrimitives.ReadUInt32LittleEndian(e), (int)BinaryPrimitives.ReadUInt32LittleEndian(e[4..]));
    }

    /// <summary>Consumes every used element; returns how many.</summary>
    public int Reap()
    {
        ushort usedIdx = BinaryPrimitives.ReadUInt16LittleEndian(_ram.GetSpan(Used + 2, 2));
        int n = (ushort)(usedIdx - _lastUsed);
        _lastUsed = usedIdx;
        return n;
    }
}
