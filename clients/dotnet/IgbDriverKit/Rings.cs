using System.Buffers.Binary;
using PcieEmu.Client;

namespace PcieEmu.Drivers;

/// <summary>Hands out 4 KiB-aligned pieces of a RAM area the driver owns.</summary>
public sealed class RamArea(RamMapping ram, ulong start, ulong size)
{
    private readonly ulong _end = start + size;
    private ulong _next = start;
    public RamMapping Ram { get; } = ram;

    public ulong Alloc(int bytes)
    {
        ulong a = _next;
        _next += (ulong)((bytes + 0xFFF) & ~0xFFF);
        if (_next > _end) throw new InvalidOperationException($"RAM area ending at 0x{_end:X} is exhausted");
        return a;
    }
}

/// <summary>What both ring kinds have: a descriptor array and one 2 KiB buffer per descriptor in a RAM area, a queue register block.</summary>
public abstract class DescriptorRing
{
    private protected readonly RegisterBar _bar;
    private protected readonly uint _block;
    private protected readonly RamMapping _ram;
    private protected readonly ulong[] _buffers;
    public const int BufferSize = 2048;

    private protected DescriptorRing(RegisterBar bar, uint block, RamArea area, int count)
    {
        if (count < 8 || count % 8 != 0 || count > 4096) throw new ArgumentOutOfRangeException(nameof(count), "a multiple of 8 (128-byte ring length), at most 4096");
        _bar = bar; _block = block; _ram = area.Ram; Count = count;
        Base = area.Alloc(count * 16);
        _buffers = new ulong[count];
        ulong buffers = area.Alloc(count * BufferSize);
        for (int i = 0; i < count; i++) _buffers[i] = buffers + (ulong)(i * BufferSize);
        _ram.GetSpan(Base, count * 16).Clear();
    }

    /// <summary>Physical address of descriptor 0.</summary>
    public ulong Base { get; }
    public int Count { get; }
}

/// <summary>
/// A transmit ring of advanced data descriptors (one buffer per frame, EOP|IFCS|RS) in RAM,
/// registers reached through <see cref="RegisterBar"/>. The tail is written once per batch.
/// </summary>
public sealed class TxRing(RegisterBar bar, uint block, RamArea area, int count) : DescriptorRing(bar, block, area, count)
{
    /// <summary>Next descriptor the driver fills (the tail it will write).</summary>
    public uint Tail { get; private set; }
    /// <summary>Oldest descriptor not yet seen done.</summary>
    public uint Clean { get; private set; }
    public long Completed { get; private set; }

    public int Free => Count - 1 - (int)((Tail - Clean + (uint)Count) % (uint)Count);

    /// <summary>Programs TDBAL/TDBAH/TDLEN, zero head and tail, then TXDCTL.ENABLE (igbvf's configure_tx order).</summary>
    public async Task ConfigureAsync(CancellationToken ct)
    {
        await _bar.WriteAsync(_block + Regs.Txdctl, 0, ct);
        await _bar.WriteAsync(_block + Regs.Tdbal, (uint)Base, ct);
        await _bar.WriteAsync(_block + Regs.Tdbah, (uint)(Base >> 32), ct);
        await _bar.WriteAsync(_block + Regs.Tdlen, (uint)Count * 16, ct);
        await _bar.WriteAsync(_block + Regs.Tdh, 0, ct);
        await _bar.WriteAsync(_block + Regs.Tdt, 0, ct);
        await _bar.WriteAsync(_block + Regs.Txdctl, Regs.QueueEnable, ct);
        Tail = Clean = 0;
    }

    /// <summary>Copies a frame into the next buffer and fills its descriptor; false when the ring is full.</summary>
    public bool Post(ReadOnlySpan<byte> frame)
    {
        if (frame.Length is 0 or > BufferSize) throw new ArgumentOutOfRangeException(nameof(frame), $"1..{BufferSize} bytes");
        if (Free == 0) return false;
        uint i = Tail;
        frame.CopyTo(_ram.GetSpan(_buffers[i], frame.Length));
        var d = _ram.GetSpan(Base + 16 * i, 16);
        BinaryPrimitives.WriteUInt64LittleEndian(d, _buffers[i]);
        BinaryPrimitives.WriteUInt32LittleEndian(d[8..], (uint)frame.Length | Regs.TxdDtypData | Regs.TxdEop | Regs.TxdIfcs | Regs.TxdRs | Regs.TxdDext);
        BinaryPrimitives.WriteUInt32LittleEndian(d[12..], (uint)frame.Length << Regs.TxdPaylenShift);
        Tail = (i + 1) % (uint)Count;
        return true;
    }

    /// <summary>Hands the posted descriptors to the device: one TDT write.</summary>
    public Task KickAsync(CancellationToken ct) => _bar.WriteAsync(_block + Regs.Tdt, Tail, ct);

    /// <summary>Reclaims descriptors the device wrote back (DD in the mapped RAM); returns how many.</summary>
    public int Reclaim()
    {
        int n = 0;
        while (Clean != Tail)
        {
            var d = _ram.GetSpan(Base + 16 * Clean, 16);
            if ((BinaryPrimitives.ReadUInt32LittleEndian(d[12..]) & Regs.TxdStatDd) == 0) break;
            d.Clear();
            Clean = (Clean + 1) % (uint)Count;
            n++;
        }
        Completed += n;
        return n;
    }

    public Task<uint> ReadHeadAsync(CancellationToken ct) => _bar.ReadAsync(_block + Regs.Tdh, ct);
}

/// <summary>A received frame: descriptor index, write-back status and length, the bytes.</summary>
public readonly record struct RxFrame(uint Index, uint StatusError, int Length, byte[] Data);

/// <summary>
/// A receive ring of advanced one-buffer descriptors (SRRCTL DESCTYPE 1, 2 KiB buffers). The
/// driver reads write-backs from the mapped RAM and gives descriptors back with one RDT write.
/// </summary>
public sealed class RxRing(RegisterBar bar, uint block, RamArea area, int count) : DescriptorRing(bar, block, area, count)
{
    /// <summary>Next descriptor the driver expects the device to fill.</summary>
    public uint Next { get; private set; }
    /// <summary>The tail last written (descriptors Next..Tail-1 belong to the device).</summary>
    public uint Tail { get; private set; }
    public long Received { get; private set; }

    private void Arm(uint i)
    {
        var d = _ram.GetSpan(Base + 16 * i, 16);
        BinaryPrimitives.WriteUInt64LittleEndian(d, _buffers[i]);
        BinaryPrimitives.WriteUInt64LittleEndian(d[8..], 0);   // header buffer 0; clears the DD of an old write-back
    }

    /// <summary>Programs the ring (RDBAL/RDBAH/RDLEN, SRRCTL 2 KiB advanced one-buffer with drop enable, RDH = RDT = 0, RXDCTL.ENABLE) and gives the device every descriptor but one.</summary>
    public async Task ConfigureAsync(CancellationToken ct)
    {
        await _bar.WriteAsync(_block + Regs.Rxdctl, 0, ct);
        await _bar.WriteAsync(_block + Regs.Rdbal, (uint)Base, ct);
        await _bar.WriteAsync(_block + Regs.Rdbah, (uint)(Base >> 32), ct);
        await _bar.WriteAsync(_block + Regs.Rdlen, (uint)Count * 16, ct);
        await _bar.WriteAsync(_block + Regs.Srrctl, (BufferSize / 1024) | Regs.SrrctlDescAdvOneBuf | Regs.SrrctlDropEn, ct);
        await _bar.WriteAsync(_block + Regs.Rdh, 0, ct);
        await _bar.WriteAsync(_block + Regs.Rdt, 0, ct);
        for (uint i = 0; i < Count; i++) Arm(i);
        await _bar.WriteAsync(_block + Regs.Rxdctl, Regs.QueueEnable, ct);
        Next = 0;
        Tail = (uint)Count - 1;
        await _bar.WriteAsync(_block + Regs.Rdt, Tail, ct);
    }

    /// <summary>
    /// Takes completed descriptors (DD in the write-back) from the mapped RAM, at most
    /// <paramref name="max"/>; <paramref name="copy"/> = false skips copying the bytes (benchmarks).
    /// The descriptors are re-armed but not given back until <see cref="RefillAsync"/>.
    /// </summary>
    public List<RxFrame> Harvest(int max = int.MaxValue, bool copy = true)
    {
        var list = new List<RxFrame>();
        while (list.Count < max && Next != Tail)
        {
            var d = _ram.GetSpan(Base + 16 * Next, 16);
            uint status = BinaryPrimitives.ReadUInt32LittleEndian(d[8..]);
            if ((status & Regs.RxdStatDd) == 0) break;
            int length = BinaryPrimitives.ReadUInt16LittleEndian(d[12..]);
            byte[] data = copy ? _ram.GetSpan(_buffers[Next], Math.Min(length, BufferSize)).ToArray() : [];
            list.Add(new RxFrame(Next, status, length, data));
            Arm(Next);
            Next = (Next + 1) % (uint)Count;
        }
        Received += list.Count;
        return list;
    }

    /// <summary>Counts completed descriptors without copying and re-arms them (benchmark path).</summary>
    public int HarvestCount(int expectedLength)
    {
        int n = 0;
        while (Next != Tail)
        {
            var d = _ram.GetSpan(Base + 16 * Next, 16);
            uint status = BinaryPrimitives.ReadUInt32LittleEndian(d[8..]);
            if ((status & Regs.RxdStatDd) == 0) break;
            if (BinaryPrimitives.ReadUInt16LittleEndian(d[12..]) != expectedLength)
                throw new InvalidOperationException($"RX descriptor {Next}: length {BinaryPrimitives.ReadUInt16LittleEndian(d[12..])}, expected {expectedLength}");
            Arm(Next);
            Next = (Next + 1) % (uint)Count;
            n++;
        }
        Received += n;
        return n;
    }

    /// <summary>Gives the harvested descriptors back to the device: one RDT write (tail = one before Next).</summary>
    public async Task RefillAsync(CancellationToken ct)
    {
        uint tail = (Next + (uint)Count - 1) % (uint)Count;
        if (tail == Tail) return;
        Tail = tail;
        await _bar.WriteAsync(_block + Regs.Rdt, Tail, ct);
    }
}
