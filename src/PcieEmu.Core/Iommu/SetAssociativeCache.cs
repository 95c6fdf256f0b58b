namespace PcieEmu.Core.Iommu;

/// <summary>
/// A bounded set-associative cache, the shape translation caches have in hardware: a tag
/// selects one set of <see cref="Ways"/> entries, a lookup compares tags inside that set
/// only, and a fill replaces the least recently used entry of the set (one entry, never
/// the whole cache). Not thread safe: the owner serialises access (the machine lock).
/// </summary>
/// <typeparam name="T">The cached payload.</typeparam>
internal sealed class SetAssociativeCache<T> where T : struct
{
    private struct Slot
    {
        public ulong Tag;
        public ulong Stamp;     // 0 = invalid, else the time of last use
        public T Value;
    }

    private readonly Slot[] _slots;
    private ulong _clock;

    /// <summary>Creates a cache of <paramref name="sets"/> × <paramref name="ways"/> entries (<paramref name="sets"/> a power of two).</summary>
    public SetAssociativeCache(int sets, int ways)
    {
        if (sets < 1 || (sets & (sets - 1)) != 0) throw new ArgumentOutOfRangeException(nameof(sets), "sets must be a power of two");
        if (ways < 1) throw new ArgumentOutOfRangeException(nameof(ways));
        Sets = sets; Ways = ways;
        _slots = new Slot[sets * ways];
    }

    /// <summary>Number of sets.</summary>
    public int Sets { get; }
    /// <summary>Entries per set.</summary>
    public int Ways { get; }
    /// <summary>Total entries.</summary>
    public int Capacity => _slots.Length;

    /// <summary>Calls <paramref name="visit"/> with the tag and payload of every valid entry (no LRU update).</summary>
    public void ForEachValid(Action<ulong, T> visit)
    {
        foreach (ref readonly var s in _slots.AsSpan())
            if (s.Stamp != 0) visit(s.Tag, s.Value);
    }

    /// <summary>Valid entries now.</summary>
    public int Count
    {
        get
        {
            int n = 0;
            foreach (var s in _slots) if (s.Stamp != 0) n++;
            return n;
        }
    }

    /// <summary>The set of a tag: its low 46 bits (the page number, for the IOTLB) plus a hash of
    /// the bits above (source id and level), so adjacent pages of one requester fall in adjacent
    /// sets, as an IOTLB indexes by the low page-number bits.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private int SetOf(ulong tag) =>
        (int)(((tag & ((1UL << 46) - 1)) + (((tag >> 46) * 0x9E37_79B9_7F4A_7C15UL) >> 40)) & (ulong)(Sets - 1));

    // Slots are laid out way-major (slot = way × Sets + set): way 0 of neighbouring sets are
    // neighbours in memory, so a run of adjacent pages touches few cache lines.

    /// <summary>Finds <paramref name="tag"/>; on a hit marks it most recently used (unless <paramref name="touch"/> is false) and returns its slot, else -1.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public int Find(ulong tag, bool touch = true)
    {
        var slots = _slots;
        for (int i = SetOf(tag); (uint)i < (uint)slots.Length; i += Sets)
        {
            ref var s = ref slots[i];
            if (s.Tag == tag && s.Stamp != 0)
            {
                if (touch) s.Stamp = ++_clock;
                return i;
            }
        }
        return -1;
    }

    /// <summary>The payload in <paramref name="slot"/> (from <see cref="Find"/>).</summary>
    public ref T this[int slot] => ref _slots[slot].Value;

    /// <summary>Inserts or replaces <paramref name="tag"/>: the same tag is overwritten, else a free way, else the set's least recently used way.</summary>
    public void Insert(ulong tag, in T value)
    {
        int victim = SetOf(tag);
        for (int i = victim; i < _slots.Length; i += Sets)
        {
            if (_slots[i].Stamp != 0 && _slots[i].Tag == tag) { victim = i; break; }
            if (_slots[i].Stamp < _slots[victim].Stamp) victim = i;   // an invalid way (stamp 0) wins
        }
        ref var s = ref _slots[victim];
        s.Tag = tag;
        s.Value = value;
        s.Stamp = ++_clock;
    }

    /// <summary>Drops every entry for which <paramref name="match"/> is true; returns how many.</summary>
    public int InvalidateWhere(Func<ulong, T, bool> match)
    {
        int n = 0;
        for (int i = 0; i < _slots.Length; i++)
        {
            ref var s = ref _slots[i];
            if (s.Stamp != 0 && match(s.Tag, s.Value)) { s.Stamp = 0; n++; }
        }
        return n;
    }

    /// <summary>Drops everything.</summary>
    public void Clear()
    {
        for (int i = 0; i < _slots.Length; i++) _slots[i].Stamp = 0;
    }
}
