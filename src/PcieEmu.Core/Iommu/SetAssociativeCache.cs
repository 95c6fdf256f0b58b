namespace PcieEmu.Core.Iommu;

/// <summary>
/// A bounded set-associative cache, the shape translation caches have in hardware: a tag
/// selects one set of <see cref="Ways"/> entries, a lookup compares tags inside that set
/// only, and a fill replaces the least recently used entry of the set (one entry, never
/// the whole cache). Not thread safe: the owner serialises access (the machine lock).
/// </summary>
/// <typeparam name="T">The cached payload.</typeparam>
public sealed class SetAssociativeCache<T> where T : struct
{
    private readonly ulong[] _tags;
    private readonly ulong[] _stamp;      // 0 = invalid, else last-use time
    private readonly T[] _values;
    private readonly int _setShift;
    private ulong _clock;

    /// <summary>Creates a cache of <paramref name="sets"/> × <paramref name="ways"/> entries (<paramref name="sets"/> a power of two).</summary>
    public SetAssociativeCache(int sets, int ways)
    {
        if (sets < 1 || (sets & (sets - 1)) != 0) throw new ArgumentOutOfRangeException(nameof(sets), "sets must be a power of two");
        if (ways < 1) throw new ArgumentOutOfRangeException(nameof(ways));
        Sets = sets; Ways = ways;
        _tags = new ulong[sets * ways];
        _stamp = new ulong[sets * ways];
        _values = new T[sets * ways];
        _setShift = 64 - System.Numerics.BitOperations.Log2((uint)sets);
    }

    /// <summary>Number of sets.</summary>
    public int Sets { get; }
    /// <summary>Entries per set.</summary>
    public int Ways { get; }
    /// <summary>Total entries.</summary>
    public int Capacity => Sets * Ways;

    /// <summary>Valid entries now.</summary>
    public int Count
    {
        get
        {
            int n = 0;
            foreach (ulong s in _stamp) if (s != 0) n++;
            return n;
        }
    }

    private int SetBase(ulong tag) =>
        Sets == 1 ? 0 : (int)((tag * 0x9E37_79B9_7F4A_7C15UL) >> _setShift) * Ways;

    /// <summary>Finds <paramref name="tag"/>; on a hit marks it most recently used (unless <paramref name="touch"/> is false) and returns its slot, else -1.</summary>
    public int Find(ulong tag, bool touch = true)
    {
        int b = SetBase(tag);
        for (int i = b; i < b + Ways; i++)
        {
            if (_stamp[i] != 0 && _tags[i] == tag)
            {
                if (touch) _stamp[i] = ++_clock;
                return i;
            }
        }
        return -1;
    }

    /// <summary>The payload in <paramref name="slot"/> (from <see cref="Find"/>).</summary>
    public ref T this[int slot] => ref _values[slot];

    /// <summary>Inserts or replaces <paramref name="tag"/>: the same tag is overwritten, else a free way, else the set's least recently used way.</summary>
    public void Insert(ulong tag, in T value)
    {
        int b = SetBase(tag), victim = b;
        for (int i = b; i < b + Ways; i++)
        {
            if (_stamp[i] != 0 && _tags[i] == tag) { victim = i; break; }
            if (_stamp[i] < _stamp[victim]) victim = i;   // an invalid way (stamp 0) wins
        }
        _tags[victim] = tag;
        _values[victim] = value;
        _stamp[victim] = ++_clock;
    }

    /// <summary>Drops every entry for which <paramref name="match"/> is true; returns how many.</summary>
    public int InvalidateWhere(Func<ulong, T, bool> match)
    {
        int n = 0;
        for (int i = 0; i < _stamp.Length; i++)
        {
            if (_stamp[i] != 0 && match(_tags[i], _values[i])) { _stamp[i] = 0; n++; }
        }
        return n;
    }

    /// <summary>Drops everything.</summary>
    public void Clear() => Array.Clear(_stamp);
}
