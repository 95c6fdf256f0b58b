namespace PcieEmu.Client.Vtd;

/// <summary>
/// Hands out 4 KiB pages of a physical RAM range the caller reserved for the driver's tables
/// (root, context, second-level tables, the invalidation queue). Freed pages are reused first.
/// Not thread-safe (the driver serialises its calls).
/// </summary>
public sealed class VtdPageAllocator
{
    /// <summary>Page size.</summary>
    public const int PageSize = 4096;
    private readonly Stack<ulong> _free = new();
    private ulong _next;

    /// <summary>Pages from [<paramref name="baseAddress"/>, + <paramref name="size"/>); both 4 KiB aligned.</summary>
    public VtdPageAllocator(ulong baseAddress, ulong size)
    {
        if (baseAddress % PageSize != 0) throw new ArgumentException("tableBase must be 4 KiB aligned", nameof(baseAddress));
        if (size < PageSize || size % PageSize != 0) throw new ArgumentException("tableSize must be a non-zero multiple of 4 KiB", nameof(size));
        if (baseAddress + size < baseAddress) throw new ArgumentException("table range wraps around", nameof(size));
        Base = baseAddress;
        Size = size;
        _next = baseAddress;
    }

    /// <summary>First address of the range.</summary>
    public ulong Base { get; }
    /// <summary>Size of the range in bytes.</summary>
    public ulong Size { get; }
    /// <summary>Pages currently handed out.</summary>
    public int PagesInUse { get; private set; }

    /// <summary>Allocates one page (contents undefined: the driver zeroes it). Throws when the range is used up.</summary>
    public ulong Allocate()
    {
        ulong page;
        if (_free.Count > 0) page = _free.Pop();
        else if (_next < Base + Size) { page = _next; _next += PageSize; }
        else throw new InvalidOperationException($"VT-d table range 0x{Base:X}+0x{Size:X} is full ({PagesInUse} pages in use)");
        PagesInUse++;
        return page;
    }

    /// <summary>Allocates <paramref name="count"/> physically contiguous pages (from the unused top of the range).</summary>
    public ulong AllocateContiguous(int count)
    {
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count));
        ulong bytes = (ulong)count * PageSize;
        if (Base + Size - _next < bytes)
            throw new InvalidOperationException($"VT-d table range 0x{Base:X}+0x{Size:X} has no {count} contiguous free pages");
        ulong first = _next;
        _next += bytes;
        PagesInUse += count;
        return first;
    }

    /// <summary>Returns a page to the allocator.</summary>
    public void Free(ulong page)
    {
        if (page % PageSize != 0 || page < Base || page >= Base + Size)
            throw new ArgumentOutOfRangeException(nameof(page), $"0x{page:X} is not a page of the table range");
        _free.Push(page);
        PagesInUse--;
    }
}
