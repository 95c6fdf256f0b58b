using System.Buffers.Binary;
using PcieEmu.Core.Memory;
using static PcieEmu.Core.Devices.VirtioNet.VirtioRegs;

namespace PcieEmu.Core.Devices.VirtioNet;

/// <summary>One buffer segment of a descriptor chain: guest address, length, device-writable.</summary>
internal readonly record struct VirtqSegment(ulong Address, uint Length, bool Writable);

/// <summary>Why a queue stopped: a DMA that did not complete, or a ring the driver laid out wrongly.</summary>
public enum VirtqErrorKind
{
    /// <summary>A ring or buffer access did not complete (remapping fault, not RAM, Bus Master off).</summary>
    Dma = 1,
    /// <summary>A malformed chain: index out of range, a loop, nested or misplaced indirect table, bad table length.</summary>
    MalformedChain = 2,
}

/// <summary>A queue error that put the device in NEEDS_RESET.</summary>
/// <param name="Queue">Virtqueue index.</param>
/// <param name="Kind">DMA or malformed chain.</param>
/// <param name="Address">Guest address involved (the failed access, or the descriptor table).</param>
/// <param name="Status">DMA status for <see cref="VirtqErrorKind.Dma"/>.</param>
public readonly record struct VirtqError(int Queue, VirtqErrorKind Kind, ulong Address, DmaStatus Status);

/// <summary>
/// A virtqueue as the device sees it (virtio 1.2 §2.6-§2.8), split or packed, in guest memory
/// reached only through the function's DMA port. The device pops available descriptor chains,
/// pushes used elements, decides whether the driver wants an interrupt (VIRTQ_AVAIL_F_NO_INTERRUPT,
/// used_event, or the packed driver event suppression structure), and publishes where it wants
/// the next notification (avail_event / the packed device event suppression structure).
/// Every DMA result is checked: a failure is reported to the owner and the pop or push fails.
/// </summary>
internal sealed class Virtqueue
{
    private readonly DmaPort _dma;
    private readonly Action<VirtqError> _onError;
    private readonly byte[] _scratch = new byte[16];
    // Split: a window of avail ring entries read in one DMA, and used elements written in one DMA.
    private ushort[] _availCache = [];
    private int _availCacheStart, _availCacheCount;
    private byte[] _usedBatch = [];
    private int _usedBatchCount;
    private ushort _usedBatchStart;

    public Virtqueue(int index, int maxSize, DmaPort dma, Action<VirtqError> onError)
    {
        Index = index;
        MaxSize = maxSize;
        _dma = dma;
        _onError = onError;
        Reset();
    }

    public int Index { get; }
    public int MaxSize { get; }
    public ushort Size { get; set; }
    public ushort MsixVector { get; set; }
    public bool Enabled { get; private set; }
    public ulong DescAddr { get; set; }
    public ulong DriverAddr { get; set; }
    public ulong DeviceAddr { get; set; }
    public bool Packed { get; private set; }
    private bool _eventIdx, _indirect;

    // Split state.
    private ushort _lastAvail, _usedIdx, _signalledUsed;
    // Packed state.
    private ushort _nextAvail, _nextUsed;
    private bool _availWrap, _usedWrap;
    private bool _signalledValid;

    /// <summary>Chains popped but not yet pushed (the element count the device owns).</summary>
    public int InFlight { get; private set; }

    public void Reset()
    {
        Size = (ushort)MaxSize;
        MsixVector = NoVector;
        Enabled = false;
        DescAddr = DriverAddr = DeviceAddr = 0;
        Packed = false;
        _lastAvail = _usedIdx = _signalledUsed = 0;
        _nextAvail = _nextUsed = 0;
        _availWrap = _usedWrap = true;
        _signalledValid = false;
        _availCacheCount = 0;
        _usedBatchCount = 0;
        InFlight = 0;
        _holdFirst = _held = false;
    }

    /// <summary>Why <see cref="TryEnable"/> refused, or null when the layout is acceptable.</summary>
    public string? CheckLayout(bool packed)
    {
        if (Size == 0 || Size > MaxSize) return $"queue_size {Size} is outside 1..{MaxSize}";
        if (!packed && (Size & (Size - 1)) != 0) return $"queue_size {Size} is not a power of two (split ring)";
        // Alignment (§2.7 split: 16/2/4; §2.8.10 packed: 16/4/4).
        if ((DescAddr & 15) != 0) return "queue_desc is not 16-byte aligned";
        if ((DriverAddr & (packed ? 3UL : 1UL)) != 0) return "queue_driver is misaligned";
        if ((DeviceAddr & 3) != 0) return "queue_device is not 4-byte aligned";
        return null;
    }

    /// <summary>queue_enable = 1 with the negotiated layout. Returns false (and stays disabled) on a bad layout.</summary>
    public bool TryEnable(bool packed, bool eventIdx, bool indirect)
    {
        if (CheckLayout(packed) != null) return false;
        Packed = packed;
        _eventIdx = eventIdx;
        _indirect = indirect;
        Enabled = true;
        _lastAvail = _usedIdx = _signalledUsed = 0;
        _nextAvail = _nextUsed = 0;
        _availWrap = _usedWrap = true;
        _signalledValid = true;
        _availCacheCount = 0;
        _usedBatchCount = 0;
        InFlight = 0;
        _holdFirst = _held = false;
        if (!packed)
        {
            if (_availCache.Length < Size) _availCache = new ushort[Size];
            if (_usedBatch.Length < Size * 8) _usedBatch = new byte[Size * 8];
        }
        return true;
    }

    // ---------------- DMA helpers ----------------

    private bool Read(ulong address, Span<byte> dst, DmaUse use, uint index = DmaPurpose.NoIndex)
    {
        var r = _dma.Read(address, dst, new DmaPurpose(use, (ushort)Index, index));
        if (r.Ok) return true;
        _onError(new VirtqError(Index, VirtqErrorKind.Dma, r.FaultAddress != 0 || r.BytesMoved != 0 ? r.FaultAddress : address, r.Status));
        return false;
    }

    private bool Write(ulong address, ReadOnlySpan<byte> src, DmaUse use, uint index = DmaPurpose.NoIndex)
    {
        var r = _dma.Write(address, src, new DmaPurpose(use, (ushort)Index, index));
        if (r.Ok) return true;
        _onError(new VirtqError(Index, VirtqErrorKind.Dma, r.FaultAddress != 0 || r.BytesMoved != 0 ? r.FaultAddress : address, r.Status));
        return false;
    }

    private bool Malformed(ulong address)
    {
        _onError(new VirtqError(Index, VirtqErrorKind.MalformedChain, address, DmaStatus.Ok));
        return false;
    }

    /// <summary>Reads guest memory for a buffer (reports a fault like a ring access).</summary>
    public bool ReadBuffer(ulong address, Span<byte> dst) => Read(address, dst, DmaUse.VirtqBuffer);

    /// <summary>Writes guest memory for a buffer.</summary>
    public bool WriteBuffer(ulong address, ReadOnlySpan<byte> src) => Write(address, src, DmaUse.VirtqBuffer);

    // ---------------- Popping chains ----------------

    /// <summary>State to roll back pops (a frame that found too little buffer space).</summary>
    public readonly record struct Mark(ushort LastAvail, ushort NextAvail, bool AvailWrap, int InFlight);

    public Mark Save() => new(_lastAvail, _nextAvail, _availWrap, InFlight);

    public void Restore(Mark m)
    {
        if (!Packed && m.LastAvail != _lastAvail) _availCacheCount = 0;   // the cache window moved; re-read
        _lastAvail = m.LastAvail; _nextAvail = m.NextAvail; _availWrap = m.AvailWrap; InFlight = m.InFlight;
    }

    /// <summary>
    /// Pops the next available chain into <paramref name="segments"/>. Returns 1 with the chain's
    /// head id (split) or buffer id (packed) and its ring descriptor count, 0 when nothing is
    /// available, -1 on an error (already reported).
    /// </summary>
    public int Pop(List<VirtqSegment> segments, out ushort id, out ushort ringCount)
    {
        segments.Clear();
        id = 0; ringCount = 0;
        if (!Enabled) return 0;
        int r = Packed ? PopPacked(segments, out id, out ringCount) : PopSplit(segments, out id, out ringCount);
        if (r == 1) InFlight++;
        return r;
    }

    private int PopSplit(List<VirtqSegment> segs, out ushort head, out ushort ringCount)
    {
        head = 0; ringCount = 1;
        if (_availCacheCount == 0 && !FillAvailCache()) return _availCacheCount < 0 ? ResetCache() : 0;
        head = _availCache[_availCacheStart];
        _availCacheStart = (_availCacheStart + 1) % Size;
        _availCacheCount--;
        _lastAvail++;
        if (head >= Size) return Malformed(DescAddr) ? 1 : -1;
        return WalkSplit(segs, DescAddr, Size, head, allowIndirect: _indirect, DmaUse.VirtqDescriptor) ? 1 : -1;
    }

    private int ResetCache() { _availCacheCount = 0; return -1; }

    /// <summary>Reads avail.idx and every new ring entry (up to the wrap) in one DMA.</summary>
    private bool FillAvailCache()
    {
        Span<byte> b = _scratch.AsSpan(0, 2);
        if (!Read(DriverAddr + 2, b, DmaUse.VirtqAvail)) { _availCacheCount = -1; return false; }
        ushort availIdx = BinaryPrimitives.ReadUInt16LittleEndian(b);
        int pending = (ushort)(availIdx - _lastAvail);
        if (pending == 0) return false;
        if (pending > Size) { _availCacheCount = -1; return Malformed(DriverAddr); }
        int start = _lastAvail % Size;
        int n = Math.Min(pending, Size - start);
        Span<byte> ring = n * 2 <= 512 ? stackalloc byte[n * 2] : new byte[n * 2];
        if (!Read(DriverAddr + 4 + (ulong)start * 2, ring, DmaUse.VirtqAvail, (uint)start)) { _availCacheCount = -1; return false; }
        for (int i = 0; i < n; i++) _availCache[(start + i) % Size] = BinaryPrimitives.ReadUInt16LittleEndian(ring[(2 * i)..]);
        _availCacheStart = start;
        _availCacheCount = n;
        return true;
    }

    private bool WalkSplit(List<VirtqSegment> segs, ulong table, int tableSize, ushort i, bool allowIndirect, DmaUse use)
    {
        Span<byte> d = _scratch;
        for (int n = 0; ; n++)
        {
            if (n >= tableSize || i >= tableSize) return Malformed(table);   // a loop, or next out of range
            if (!Read(table + (ulong)i * 16, d, use, i)) return false;
            ulong addr = BinaryPrimitives.ReadUInt64LittleEndian(d);
            uint len = BinaryPrimitives.ReadUInt32LittleEndian(d[8..]);
            ushort flags = BinaryPrimitives.ReadUInt16LittleEndian(d[12..]);
            ushort next = BinaryPrimitives.ReadUInt16LittleEndian(d[14..]);
            if ((flags & DescIndirect) != 0)
            {
                // §2.7.5.3: only with INDIRECT_DESC, never nested, never with NEXT, length a multiple of 16.
                if (!allowIndirect || (flags & DescNext) != 0 || len == 0 || (len & 15) != 0 || len / 16 > MaxQueueSize) return Malformed(table);
                return WalkSplit(segs, addr, (int)(len / 16), 0, allowIndirect: false, DmaUse.VirtqIndirect);
            }
            // §2.7.4.2: device-writable descriptors follow the readable ones.
            bool w = (flags & DescWrite) != 0;
            if (!w && segs.Count > 0 && segs[^1].Writable) return Malformed(table);
            segs.Add(new VirtqSegment(addr, len, w));
            if ((flags & DescNext) == 0) return true;
            i = next;
        }
    }

    private int PopPacked(List<VirtqSegment> segs, out ushort id, out ushort ringCount)
    {
        id = 0; ringCount = 0;
        Span<byte> d = _scratch;
        ushort pos = _nextAvail;
        bool wrap = _availWrap;
        for (int n = 0; ; n++)
        {
            if (n >= Size) return Malformed(DescAddr) ? 1 : -1;
            if (!Read(DescAddr + (ulong)pos * 16, d, DmaUse.VirtqDescriptor, (uint)pos)) return -1;
            ushort flags = BinaryPrimitives.ReadUInt16LittleEndian(d[14..]);
            // §2.8.1: available when AVAIL matches the wrap counter and USED does not.
            bool avail = (flags & DescAvail) != 0, used = (flags & DescUsed) != 0;
            if (avail != wrap || used == wrap)
            {
                if (n == 0) return 0;
                return Malformed(DescAddr) ? 1 : -1;   // a chain whose NEXT points at a descriptor not yet made available
            }
            ulong addr = BinaryPrimitives.ReadUInt64LittleEndian(d);
            uint len = BinaryPrimitives.ReadUInt32LittleEndian(d[8..]);
            id = BinaryPrimitives.ReadUInt16LittleEndian(d[12..]);
            ringCount++;
            if (++pos >= Size) { pos = 0; wrap = !wrap; }
            if ((flags & DescIndirect) != 0)
            {
                if (!_indirect || (flags & DescNext) != 0 || len == 0 || (len & 15) != 0 || len / 16 > MaxQueueSize || segs.Count > 0)
                    return Malformed(DescAddr) ? 1 : -1;
                if (!WalkPackedIndirect(segs, addr, (int)(len / 16))) return -1;
            }
            else
            {
                bool w = (flags & DescWrite) != 0;
                if (!w && segs.Count > 0 && segs[^1].Writable) return Malformed(DescAddr) ? 1 : -1;
                segs.Add(new VirtqSegment(addr, len, w));
            }
            if ((flags & DescNext) == 0) break;
        }
        _nextAvail = pos;
        _availWrap = wrap;
        return 1;
    }

    /// <summary>A packed indirect table: <paramref name="count"/> sequential descriptors (§2.8.19: NEXT is not used).</summary>
    private bool WalkPackedIndirect(List<VirtqSegment> segs, ulong table, int count)
    {
        var buf = new byte[count * 16];
        if (!Read(table, buf, DmaUse.VirtqIndirect)) return false;
        for (int k = 0; k < count; k++)
        {
            var d = buf.AsSpan(k * 16, 16);
            // addr, len, id, flags; WRITE is the only valid flag here, the others and the id are ignored (§2.8.19).
            ushort flags = BinaryPrimitives.ReadUInt16LittleEndian(d[14..]);
            bool w = (flags & DescWrite) != 0;
            if (!w && segs.Count > 0 && segs[^1].Writable) return Malformed(table);
            segs.Add(new VirtqSegment(BinaryPrimitives.ReadUInt64LittleEndian(d), BinaryPrimitives.ReadUInt32LittleEndian(d[8..]), w));
        }
        return true;
    }

    // ---------------- Pushing used elements ----------------

    /// <summary>Marks a chain used with <paramref name="written"/> bytes. Split elements are batched until <see cref="Flush"/>.</summary>
    public bool Push(ushort id, ushort ringCount, uint written)
    {
        InFlight--;
        if (!Packed)
        {
            if (_usedBatchCount == 0) _usedBatchStart = _usedIdx;
            int slot = _usedBatchCount * 8;
            BinaryPrimitives.WriteUInt32LittleEndian(_usedBatch.AsSpan(slot), id);
            BinaryPrimitives.WriteUInt32LittleEndian(_usedBatch.AsSpan(slot + 4), written);
            _usedBatchCount++;
            _usedIdx++;
            if (_usedBatchCount == Size) return FlushUsedElements();
            return true;
        }
        // Packed (§2.8.6): len and id, then flags with AVAIL = USED = the used wrap counter, in one write
        // whose flags bytes are the highest addressed.
        Span<byte> e = _scratch.AsSpan(0, 8);
        BinaryPrimitives.WriteUInt32LittleEndian(e, written);
        BinaryPrimitives.WriteUInt16LittleEndian(e[4..], id);
        ushort flags = (ushort)(_usedWrap ? DescAvail | DescUsed : 0);
        if (written > 0) flags |= DescWrite;
        BinaryPrimitives.WriteUInt16LittleEndian(e[6..], flags);
        ulong at = DescAddr + (ulong)_nextUsed * 16 + 8;
        if (_holdFirst && !_held)
        {
            // Multi-buffer request (§2.8.16): the first buffer's used descriptor is written last.
            _held = true;
            _heldAt = at;
            e.CopyTo(_heldBytes);
        }
        else if (!Write(at, e, DmaUse.VirtqUsed, _nextUsed)) return false;
        int next = _nextUsed + ringCount;
        if (next >= Size) { next -= Size; _usedWrap = !_usedWrap; }
        _nextUsed = (ushort)next;
        return true;
    }

    private bool _holdFirst, _held;
    private ulong _heldAt;
    private readonly byte[] _heldBytes = new byte[8];

    /// <summary>The next pushes form one request (mergeable receive buffers): on a packed ring the first
    /// used descriptor is held back and written by <see cref="Flush"/> after the others.</summary>
    public void HoldFirstUsed() => _holdFirst = Packed;

    private bool FlushUsedElements()
    {
        int n = _usedBatchCount;
        _usedBatchCount = 0;
        int start = _usedBatchStart % Size;
        int first = Math.Min(n, Size - start);
        if (!Write(DeviceAddr + 4 + (ulong)start * 8, _usedBatch.AsSpan(0, first * 8), DmaUse.VirtqUsed, (uint)start)) return false;
        if (first < n && !Write(DeviceAddr + 4, _usedBatch.AsSpan(first * 8, (n - first) * 8), DmaUse.VirtqUsed, 0)) return false;
        return true;
    }

    /// <summary>
    /// Publishes pushed elements (split: the elements, then used.idx) and returns whether the
    /// driver wants an interrupt for them (§2.7.7.2 / §2.7.10, §2.8.10).
    /// </summary>
    public bool Flush(out bool needInterrupt)
    {
        needInterrupt = false;
        if (!Enabled) return true;
        Span<byte> b = _scratch.AsSpan(0, 4);
        if (!Packed)
        {
            if (_usedBatchCount == 0 && _usedIdx == _signalledUsed) return true;
            if (_usedBatchCount > 0 && !FlushUsedElements()) return false;
            BinaryPrimitives.WriteUInt16LittleEndian(b, _usedIdx);
            if (!Write(DeviceAddr + 2, b[..2], DmaUse.VirtqUsed)) return false;
            ushort old = _signalledUsed, now = _usedIdx;
            if (old == now) return true;
            _signalledUsed = now;
            if (_eventIdx)
            {
                if (!Read(DriverAddr + 4 + (ulong)Size * 2, b[..2], DmaUse.VirtqAvail)) return false;
                ushort usedEvent = BinaryPrimitives.ReadUInt16LittleEndian(b);
                needInterrupt = NeedEvent(usedEvent, now, old);
            }
            else
            {
                if (!Read(DriverAddr, b[..2], DmaUse.VirtqAvail)) return false;
                needInterrupt = (BinaryPrimitives.ReadUInt16LittleEndian(b) & AvailNoInterrupt) == 0;
            }
            return true;
        }
        if (_held)
        {
            _held = _holdFirst = false;
            if (!Write(_heldAt, _heldBytes, DmaUse.VirtqUsed, (uint)((_heldAt - DescAddr) / 16))) return false;
        }
        _holdFirst = false;
        ushort oldUsed = _signalledUsed, newUsed = _nextUsed;
        bool had = _signalledValid;
        if (had && oldUsed == newUsed) return true;
        _signalledUsed = newUsed; _signalledValid = true;
        if (!Read(DriverAddr, b, DmaUse.VirtqEventSuppression)) return false;
        ushort offWrap = BinaryPrimitives.ReadUInt16LittleEndian(b);
        ushort evFlags = (ushort)(BinaryPrimitives.ReadUInt16LittleEndian(b[2..]) & 3);
        if (evFlags == EventFlagsDisable) return true;
        if (evFlags != EventFlagsDesc || !_eventIdx) { needInterrupt = evFlags == EventFlagsEnable || !_eventIdx; return true; }
        // DESC: interrupt when the used descriptor at off (with wrap) was among those just written.
        int off = offWrap & 0x7FFF;
        bool wrap = (offWrap >> 15) != 0;
        if (wrap != _usedWrap) off -= Size;
        needInterrupt = !had || NeedEvent((ushort)off, newUsed, oldUsed);
        return true;
    }

    /// <summary>Tells the driver where the device wants the next notification (EVENT_IDX: avail_event
    /// or packed DESC at the next available position; without it packed says ENABLE).</summary>
    public bool PublishAvailEvent()
    {
        if (!Enabled) return true;
        Span<byte> b = _scratch.AsSpan(0, 4);
        if (!Packed)
        {
            if (!_eventIdx) return true;
            BinaryPrimitives.WriteUInt16LittleEndian(b, _lastAvail);
            return Write(DeviceAddr + 4 + (ulong)Size * 8, b[..2], DmaUse.VirtqUsed);
        }
        ushort offWrap = (ushort)(_nextAvail | (_availWrap ? 0x8000 : 0));
        BinaryPrimitives.WriteUInt16LittleEndian(b, _eventIdx ? offWrap : (ushort)0);
        BinaryPrimitives.WriteUInt16LittleEndian(b[2..], _eventIdx ? EventFlagsDesc : EventFlagsEnable);
        return Write(DeviceAddr, b, DmaUse.VirtqEventSuppression);
    }

    /// <summary>Whether more chains became available since the last pop (after publishing avail_event).</summary>
    public bool HasMore()
    {
        if (!Enabled) return false;
        if (!Packed)
        {
            if (_availCacheCount > 0) return true;
            Span<byte> b = _scratch.AsSpan(0, 2);
            return _dma.Read(DriverAddr + 2, b, new DmaPurpose(DmaUse.VirtqAvail, (ushort)Index)).Ok && BinaryPrimitives.ReadUInt16LittleEndian(b) != _lastAvail;
        }
        Span<byte> f = _scratch.AsSpan(0, 2);
        if (!_dma.Read(DescAddr + (ulong)_nextAvail * 16 + 14, f, new DmaPurpose(DmaUse.VirtqDescriptor, (ushort)Index, _nextAvail)).Ok) return false;
        ushort flags = BinaryPrimitives.ReadUInt16LittleEndian(f);
        return ((flags & DescAvail) != 0) == _availWrap && ((flags & DescUsed) != 0) != _availWrap;
    }

    /// <summary>vring_need_event: the event index lies in (old, new] (§2.7.10).</summary>
    private static bool NeedEvent(ushort eventIdx, ushort newIdx, ushort oldIdx) => (ushort)(newIdx - eventIdx - 1) < (ushort)(newIdx - oldIdx);
}
