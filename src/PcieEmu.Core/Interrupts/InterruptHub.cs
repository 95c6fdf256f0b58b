using System.Threading.Channels;

namespace PcieEmu.Core.Interrupts;

/// <summary>What produced an interrupt message.</summary>
public enum InterruptKind
{
    /// <summary>Not set.</summary>
    Unspecified = 0,
    /// <summary>An MSI message.</summary>
    Msi = 1,
    /// <summary>An MSI-X message.</summary>
    Msix = 2,
    /// <summary>A legacy INTx assertion (no message; address and data are 0).</summary>
    Intx = 3,
    /// <summary>The remapping unit's fault or invalidation event message.</summary>
    IommuFault = 4,
}

/// <summary>One interrupt as the platform saw it: a memory write that landed in the MSI window.</summary>
/// <param name="Sequence">1-based, strictly increasing over the machine's life.</param>
/// <param name="Rid">Routing ID of the function that wrote the message.</param>
/// <param name="Kind">MSI, MSI-X, INTx or IOMMU.</param>
/// <param name="Address">Message address.</param>
/// <param name="Data">Message data.</param>
/// <param name="Vector">Device-side vector index (MSI-X table entry, MSI vector; 0 otherwise).</param>
/// <param name="Destination">Decoded APIC destination ID (address bits 19:12).</param>
/// <param name="CpuVector">Decoded CPU vector (data bits 7:0).</param>
/// <param name="TimestampNs">Monotonic nanoseconds since the machine started.</param>
public sealed record InterruptEvent(ulong Sequence, ushort Rid, InterruptKind Kind, ulong Address, uint Data,
    uint Vector, byte Destination, byte CpuVector, long TimestampNs);

/// <summary>Thrown from a subscription's reader when its queue overflowed and it was cut off.</summary>
public sealed class InterruptOverflowException(long missed)
    : Exception($"interrupt subscriber fell behind: its queue overflowed and {missed} event(s) were dropped")
{
    /// <summary>Events this subscriber missed.</summary>
    public long Missed => missed;
}

/// <summary>
/// Fans interrupt events out to subscribers. Publishing never blocks: each subscriber has a
/// bounded queue, and a subscriber whose queue is full is cut off (its reader ends with an
/// <see cref="InterruptOverflowException"/> carrying the count it missed) while the others go on.
/// </summary>
public sealed class InterruptHub
{
    private readonly Lock _lock = new();
    private readonly TimeProvider _time;
    private readonly long _start;
    private Subscription[] _subs = [];
    private ulong _sequence;

    /// <summary>A hub whose event timestamps come from <paramref name="time"/> (the system clock when null).</summary>
    public InterruptHub(TimeProvider? time = null)
    {
        _time = time ?? TimeProvider.System;
        _start = _time.GetTimestamp();
    }

    /// <summary>Events published so far.</summary>
    public ulong Published => Volatile.Read(ref _sequence);

    /// <summary>Number of live subscribers.</summary>
    public int SubscriberCount => Volatile.Read(ref _subs).Length;

    /// <summary>Subscribes to events of <paramref name="rids"/> (null or empty = all), with a queue of <paramref name="capacity"/>.</summary>
    public InterruptSubscription Subscribe(IEnumerable<ushort>? rids, int capacity = 4096)
    {
        if (capacity < 1) throw new ArgumentOutOfRangeException(nameof(capacity));
        var filter = rids?.ToHashSet();
        var sub = new Subscription(this, filter is { Count: > 0 } ? filter : null, capacity);
        lock (_lock) _subs = [.. _subs, sub];
        return sub;
    }

    internal void Remove(Subscription sub)
    {
        lock (_lock) _subs = [.. _subs.Where(s => s != sub)];
    }

    /// <summary>Publishes one message write that landed in the MSI window.</summary>
    public InterruptEvent Publish(ushort rid, InterruptKind kind, ulong address, uint data, uint vector)
    {
        InterruptEvent ev;
        lock (_lock)
        {
            long ns = (long)_time.GetElapsedTime(_start).Ticks * 100;
            ev = new InterruptEvent(++_sequence, rid, kind, address, data, vector,
                (byte)(address >> 12), (byte)data, ns);
        }
        foreach (var s in Volatile.Read(ref _subs)) s.Offer(ev);
        return ev;
    }

    internal sealed class Subscription : InterruptSubscription
    {
        private readonly InterruptHub _hub;
        private readonly HashSet<ushort>? _filter;
        private readonly Channel<InterruptEvent> _channel;
        private long _missed;
        private int _closed;

        public Subscription(InterruptHub hub, HashSet<ushort>? filter, int capacity)
        {
            _hub = hub; _filter = filter;
            _channel = Channel.CreateBounded<InterruptEvent>(new BoundedChannelOptions(capacity)
            {
                SingleReader = true,
                SingleWriter = false,
                FullMode = BoundedChannelFullMode.Wait,   // TryWrite fails when full; we never wait
            });
        }

        public override ChannelReader<InterruptEvent> Reader => _channel.Reader;
        public override long Missed => Volatile.Read(ref _missed);

        public void Offer(InterruptEvent ev)
        {
            if (_filter != null && !_filter.Contains(ev.Rid)) return;
            if (Volatile.Read(ref _closed) != 0) { Interlocked.Increment(ref _missed); return; }
            if (_channel.Writer.TryWrite(ev)) return;
            Interlocked.Increment(ref _missed);
            // Cut off: the reader drains what is queued, then sees the overflow. The
            // subscription stays registered (counting misses) until it is disposed.
            if (Interlocked.Exchange(ref _closed, 1) == 0)
                _channel.Writer.TryComplete(new InterruptOverflowException(Missed));
        }

        public override void Dispose()
        {
            Interlocked.Exchange(ref _closed, 1);
            _channel.Writer.TryComplete();
            _hub.Remove(this);
        }
    }
}

/// <summary>A subscriber's bounded queue of interrupt events.</summary>
public abstract class InterruptSubscription : IDisposable
{
    /// <summary>Events in arrival order. Completes with <see cref="InterruptOverflowException"/> on overflow.</summary>
    public abstract ChannelReader<InterruptEvent> Reader { get; }
    /// <summary>Events dropped because the queue was full.</summary>
    public abstract long Missed { get; }
    /// <summary>Stops the subscription.</summary>
    public abstract void Dispose();
}
