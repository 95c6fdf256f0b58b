using PcieEmu.Core.Events;
using PcieEmu.Core.Platform;

namespace PcieEmu.Core.Snapshots;

/// <summary>Activity of one function counted since a <see cref="LiveActivity"/> started.</summary>
/// <param name="Rid">Routing ID.</param>
/// <param name="Frames">Frames the function sent or received (wire and switched).</param>
/// <param name="FrameBytes">Bytes of those frames.</param>
/// <param name="Interrupts">MSI, MSI-X and INTx messages.</param>
/// <param name="DmaBytes">Bytes its DMA requests asked to move.</param>
/// <param name="Faults">Remapping faults of its requests.</param>
public sealed record FunctionCounters(ushort Rid, long Frames, long FrameBytes, long Interrupts, long DmaBytes, long Faults);

/// <summary>
/// What a live view needs beyond snapshots: per-function counters and the tail of the trace.
/// It subscribes to the event path (one bounded subscription, gap events when it falls
/// behind) only while it exists; the owner creates it when the first viewer arrives and
/// disposes it when the last one leaves, so with no viewer it costs the machine nothing.
/// <see cref="Drain"/> consumes what arrived (call it from one thread at a time).
/// </summary>
public sealed class LiveActivity : IDisposable
{
    private sealed class Counts
    {
        public long Frames, FrameBytes, Interrupts, DmaBytes, Faults;
    }

    private readonly EventSubscription<MachineEvent> _sub;
    private readonly Dictionary<ushort, Counts> _counts = [];
    private readonly MachineEvent[] _tail;
    private readonly Lock _lock = new();
    private long _tailCount;

    /// <summary>Starts counting the events of <paramref name="machine"/>; keeps the last <paramref name="tailSize"/> events.</summary>
    public LiveActivity(Machine machine, int tailSize = 1000, int capacity = 1 << 16)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentOutOfRangeException.ThrowIfLessThan(tailSize, 1);
        _tail = new MachineEvent[tailSize];
        _sub = machine.Events.Subscribe(EventKinds.All, capacity: capacity);
    }

    /// <summary>Events seen so far (gap events included).</summary>
    public long Seen { get { lock (_lock) return _tailCount; } }

    /// <summary>Events the subscription lost because the reader fell behind.</summary>
    public long Missed => _sub.Missed;

    /// <summary>Consumes every event that arrived; returns how many.</summary>
    public int Drain()
    {
        int n = 0;
        lock (_lock)
        {
            while (_sub.Reader.TryRead(out var e))
            {
                n++;
                _tail[_tailCount++ % _tail.Length] = e;
                if (e is GapEvent) continue;
                if (!_counts.TryGetValue(e.Rid, out var c)) _counts[e.Rid] = c = new Counts();
                switch (e)
                {
                    case FrameEvent f: c.Frames++; c.FrameBytes += f.Frame.Data.Length; break;
                    case InterruptMessageEvent: c.Interrupts++; break;
                    case DmaEvent d: c.DmaBytes += d.Length; break;
                    case IommuFaultEvent: c.Faults++; break;
                }
            }
        }
        return n;
    }

    /// <summary>The counters of every function that did something, in routing-ID order.</summary>
    public IReadOnlyList<FunctionCounters> Counters()
    {
        lock (_lock)
            return [.. _counts.OrderBy(kv => kv.Key).Select(kv => new FunctionCounters(kv.Key, kv.Value.Frames, kv.Value.FrameBytes, kv.Value.Interrupts, kv.Value.DmaBytes, kv.Value.Faults))];
    }

    /// <summary>The last events (oldest first) that pass <paramref name="filter"/>, at most <paramref name="limit"/>.</summary>
    public IReadOnlyList<MachineEvent> Tail(int limit, Func<MachineEvent, bool>? filter = null)
    {
        lock (_lock)
        {
            var list = new List<MachineEvent>();
            long first = Math.Max(0, _tailCount - _tail.Length);
            for (long i = _tailCount - 1; i >= first && list.Count < limit; i--)
            {
                var e = _tail[i % _tail.Length];
                if (filter == null || filter(e)) list.Add(e);
            }
            list.Reverse();
            return list;
        }
    }

    /// <summary>Stops the subscription.</summary>
    public void Dispose() => _sub.Dispose();
}
