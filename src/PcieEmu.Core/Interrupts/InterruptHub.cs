using System.Threading.Channels;
using PcieEmu.Core.Events;

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
/// The interrupt stream: a view of the machine's <see cref="EventBus"/> (interrupt messages
/// only). Publishing never blocks: each subscriber has a bounded queue, and a subscriber whose
/// queue is full is cut off (its reader ends with an <see cref="InterruptOverflowException"/>
/// carrying the count it missed) while the others go on.
/// </summary>
public sealed class InterruptHub
{
    private readonly EventBus _bus;
    private readonly Lock _lock = new();
    private ulong _sequence;
    private int _subscribers;

    /// <summary>A hub on a bus of its own whose timestamps come from <paramref name="time"/> (the
    /// system clock when null); a machine passes its event bus instead.</summary>
    public InterruptHub(TimeProvider? time = null) : this(new EventBus(time)) { }

    /// <summary>A hub that publishes on and subscribes through <paramref name="bus"/>.</summary>
    public InterruptHub(EventBus bus) => _bus = bus ?? throw new ArgumentNullException(nameof(bus));

    /// <summary>Events published so far.</summary>
    public ulong Published => Volatile.Read(ref _sequence);

    /// <summary>Number of live subscribers.</summary>
    public int SubscriberCount => Volatile.Read(ref _subscribers);

    /// <summary>Subscribes to events of <paramref name="rids"/> (null or empty = all), with a queue of <paramref name="capacity"/>.</summary>
    public InterruptSubscription Subscribe(IEnumerable<ushort>? rids, int capacity = 4096)
    {
        if (capacity < 1) throw new ArgumentOutOfRangeException(nameof(capacity));
        var filter = rids?.ToHashSet();
        if (filter is { Count: 0 }) filter = null;
        var inner = _bus.Subscribe(EventKinds.Msi,
            e => e is InterruptMessageEvent m && (filter == null || filter.Contains(m.Rid)) ? m.Interrupt : null,
            capacity, OverflowPolicy.CutOff, cutOff: static n => new InterruptOverflowException(n));
        Interlocked.Increment(ref _subscribers);
        return new Subscription(this, inner);
    }

    /// <summary>Publishes one message write that landed in the MSI window.</summary>
    public InterruptEvent Publish(ushort rid, InterruptKind kind, ulong address, uint data, uint vector)
    {
        InterruptEvent ev;
        lock (_lock)
            ev = new InterruptEvent(++_sequence, rid, kind, address, data, vector, (byte)(address >> 12), (byte)data, _bus.NowNs());
        if (_bus.Wants(EventKind.Msi)) _bus.Publish(new InterruptMessageEvent(ev));
        return ev;
    }

    private sealed class Subscription(InterruptHub hub, EventSubscription<InterruptEvent> inner) : InterruptSubscription
    {
        private int _disposed;
        public override ChannelReader<InterruptEvent> Reader => inner.Reader;
        public override long Missed => inner.Missed;

        public override void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
            inner.Dispose();
            Interlocked.Decrement(ref hub._subscribers);
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
