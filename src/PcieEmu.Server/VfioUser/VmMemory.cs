using PcieEmu.Core.Memory;

namespace PcieEmu.Server.VfioUser;

/// <summary>
/// The memory of the virtual machine a function is assigned to, as the client described it with
/// DMA_MAP: regions of guest-physical (IOVA) space, each either backed by a file descriptor (a memfd
/// of guest RAM, mapped shared into this process) or not (recorded; the client would have to serve
/// them by DMA_READ/DMA_WRITE messages, which this server does not send: device accesses there
/// complete as Unsupported Request).
/// <para>
/// Lock discipline: <see cref="Read"/> and <see cref="Write"/> run under the machine lock (device
/// work) and take this memory's own lock for the copy; <see cref="Map"/>, <see cref="Unmap"/> and
/// <see cref="Dispose"/> run on the connection thread and take only this lock. munmap happens with
/// the lock held, after the region left the table, so no copy can be using it (no use after unmap);
/// the lock order is always machine lock, then this one, never the reverse.
/// </para>
/// </summary>
internal sealed class VmMemory : IDmaMemory, IDisposable
{
    /// <summary>Most regions one client may map (QEMU's default limit is 65535).</summary>
    public const int MaxRegions = 4096;

    private sealed class Region(ulong iova, ulong size, bool readable, bool writable, nint mapping)
    {
        public ulong Iova { get; } = iova;
        public ulong Size { get; } = size;
        public bool Readable { get; } = readable;
        public bool Writable { get; } = writable;
        /// <summary>Address of the shared mapping, 0 for a region without a descriptor.</summary>
        public nint Mapping { get; } = mapping;
        public ulong End => Iova + Size;
    }

    private readonly Lock _lock = new();
    private readonly List<Region> _regions = [];   // sorted by IOVA, never overlapping
    private long _messageAccesses, _unmappedAccesses;
    private readonly Action<ulong>? _firstMessageAccess;

    /// <summary>Creates an empty memory; <paramref name="firstMessageAccess"/> is told (once) the address of the first
    /// device access to a region without a descriptor, so the server can say why it failed.</summary>
    public VmMemory(Action<ulong>? firstMessageAccess = null) => _firstMessageAccess = firstMessageAccess;

    /// <summary>Number of regions mapped now.</summary>
    public int Count { get { lock (_lock) return _regions.Count; } }

    /// <summary>Device accesses that hit a region without a descriptor (not served).</summary>
    public long MessageAccesses => Interlocked.Read(ref _messageAccesses);

    /// <summary>Device accesses to addresses no region covers.</summary>
    public long UnmappedAccesses => Interlocked.Read(ref _unmappedAccesses);

    /// <summary>
    /// Adds a region. With <paramref name="fd"/> ≥ 0 the file is mapped at <paramref name="offset"/>
    /// (the descriptor is consumed: closed here whatever happens). Returns 0 or an errno.
    /// </summary>
    public uint Map(ulong iova, ulong size, ulong offset, uint flags, int fd)
    {
        try
        {
            if (size == 0 || iova + size < iova) return VfioUserWire.EINVAL;
            if ((flags & ~(VfioUserWire.DmaRead | VfioUserWire.DmaWrite)) != 0) return VfioUserWire.EINVAL;
            bool writable = (flags & VfioUserWire.DmaWrite) != 0;
            lock (_lock)
            {
                if (_regions.Count >= MaxRegions) return VfioUserWire.ENOSPC;
                int at = 0;
                while (at < _regions.Count && _regions[at].Iova < iova) at++;
                if (at > 0 && _regions[at - 1].End > iova) return VfioUserWire.EEXIST;
                if (at < _regions.Count && _regions[at].Iova < iova + size) return VfioUserWire.EEXIST;
                nint mapping = 0;
                if (fd >= 0)
                {
                    if (offset > long.MaxValue || (offset & 0xFFF) != 0) return VfioUserWire.EINVAL;
                    mapping = UnixFd.MapShared(fd, size, (long)offset, writable, out int errno);
                    if (mapping == 0) return errno is > 0 ? (uint)errno : VfioUserWire.EINVAL;
                }
                _regions.Insert(at, new Region(iova, size, (flags & VfioUserWire.DmaRead) != 0, writable, mapping));
                return 0;
            }
        }
        finally
        {
            UnixFd.Close(fd);
        }
    }

    /// <summary>
    /// Removes every region inside [<paramref name="iova"/>, +<paramref name="size"/>) (all regions with
    /// <paramref name="all"/>). A region only partly inside fails the whole call with EINVAL, as VFIO's
    /// type1 unmap does. Returns 0 or an errno.
    /// </summary>
    public uint Unmap(ulong iova, ulong size, bool all)
    {
        lock (_lock)
        {
            if (all)
            {
                foreach (var r in _regions) UnixFd.Unmap(r.Mapping, r.Size);
                _regions.Clear();
                return 0;
            }
            if (size == 0 || iova + size < iova) return VfioUserWire.EINVAL;
            ulong end = iova + size;
            foreach (var r in _regions)
                if (r.Iova < end && r.End > iova && (r.Iova < iova || r.End > end)) return VfioUserWire.EINVAL;
            for (int i = _regions.Count - 1; i >= 0; i--)
            {
                var r = _regions[i];
                if (r.Iova >= iova && r.End <= end)
                {
                    _regions.RemoveAt(i);
                    UnixFd.Unmap(r.Mapping, r.Size);
                }
            }
            return 0;
        }
    }

    /// <inheritdoc/>
    public DmaResult Read(ulong address, Span<byte> destination) => Copy(address, destination, default, write: false);

    /// <inheritdoc/>
    public DmaResult Write(ulong address, ReadOnlySpan<byte> source) => Copy(address, default, source, write: true);

    private unsafe DmaResult Copy(ulong address, Span<byte> dst, ReadOnlySpan<byte> src, bool write)
    {
        int length = write ? src.Length : dst.Length;
        int done = 0;
        lock (_lock)
        {
            while (done < length)
            {
                ulong a = address + (ulong)done;
                var r = Find(a);
                if (r == null || (write ? !r.Writable : !r.Readable))
                {
                    Interlocked.Increment(ref _unmappedAccesses);
                    return new DmaResult(DmaStatus.UnsupportedRequest, done, 0, a);
                }
                if (r.Mapping == 0)
                {
                    if (Interlocked.Increment(ref _messageAccesses) == 1) _firstMessageAccess?.Invoke(a);
                    return new DmaResult(DmaStatus.UnsupportedRequest, done, 0, a);
                }
                int chunk = (int)Math.Min((ulong)(length - done), r.End - a);
                var mem = new Span<byte>((void*)(r.Mapping + (nint)(a - r.Iova)), chunk);
                if (write) src.Slice(done, chunk).CopyTo(mem);
                else mem.CopyTo(dst.Slice(done, chunk));
                done += chunk;
            }
        }
        return new DmaResult(DmaStatus.Ok, done);
    }

    private Region? Find(ulong address)
    {
        int lo = 0, hi = _regions.Count - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >> 1;
            var r = _regions[mid];
            if (address < r.Iova) hi = mid - 1;
            else if (address >= r.End) lo = mid + 1;
            else return r;
        }
        return null;
    }

    /// <summary>Unmaps every region.</summary>
    public void Dispose() => Unmap(0, 0, all: true);
}
