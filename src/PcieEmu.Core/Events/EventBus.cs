using System.Threading.Channels;

namespace PcieEmu.Core.Events;

/// <summary>What a subscription does when its queue is full.</summary>
public enum OverflowPolicy
{
    /// <summary>Drop events, count them, and deliver one <see cref="GapEvent"/> with the count
    /// before the next event that fits (trace subscribers).</summary>
    Gap,
    /// <summary>Cut the subscriber off: its reader drains what is queued, then ends with the
    /// exception the subscription was given (the interrupt stream and the frame capture).</summary>
    CutOff,
}

/// <summary>
/// The machine's one event fan-out: every transaction source publishes typed events here and
/// every consumer (the interrupt stream, the frame capture, trace, recording) subscribes.
/// <para>
/// Discipline: publishing never blocks and never waits for a subscriber. Each subscription has a
/// bounded queue; a full queue loses the event (counted) according to its
/// <see cref="OverflowPolicy"/>. Sources ask <see cref="Wants"/> before they build an event, so
/// with no subscriber for a kind the cost is one volatile read and nothing is allocated.
/// </para>
/// <para>
/// Routine events (<see cref="MachineEvent.IsRoutine"/>: successful config and MMIO reads,
/// successful DMAs) are the bulk of the traffic and change nothing. Their sources ask
/// <see cref="WantsRoutine"/> instead, which only a subscriber that asked for the routine
/// events of that kind makes true (a trace does; the checker does only while it needs them),
/// so a subscriber of writes and failures costs nothing on the read and DMA hot paths.
/// </para>
/// </summary>
public sealed class EventBus
{
    private readonly Lock _lock = new();
    private readonly TimeProvider _time;
    private readonly long _start;
    private ISubscriber[] _subs = [];
    private int _kinds, _routine;
    private long _sequence;

    /// <summary>A bus whose timestamps come from <paramref name="time"/> (the system clock when null).</summary>
    public EventBus(TimeProvider? time = null)
    {
        _time = time ?? TimeProvider.System;
        _start = _time.GetTimestamp();
    }

    /// <summary>Kinds at least one subscriber wants.</summary>
    public EventKinds ActiveKinds => (EventKinds)Volatile.Read(ref _kinds);

    /// <summary>True when some subscriber wants <paramref name="kind"/>: check before building an event.</summary>
    public bool Wants(EventKind kind) => (Volatile.Read(ref _kinds) & (1 << (int)kind)) != 0;

    /// <summary>True when some subscriber wants the routine events of <paramref name="kind"/> (successful
    /// reads and DMAs): the sources of routine events check this before they build one.</summary>
    public bool WantsRoutine(EventKind kind) => (Volatile.Read(ref _routine) & (1 << (int)kind)) != 0;

    /// <summary>Number of live subscriptions.</summary>
    public int SubscriberCount => Volatile.Read(ref _subs).Length;

    /// <summary>Events published so far.</summary>
    public long Published => Interlocked.Read(ref _sequence);

    /// <summary>Nanoseconds since the machine started (the events' clock).</summary>
    public long NowNs() => _time.GetElapsedTime(_start).Ticks * 100;

    /// <summary>Subscribes to events of <paramref name="kinds"/> that <paramref name="select"/> maps to a
    /// non-null item, with a queue of <paramref name="capacity"/>. With <see cref="OverflowPolicy.Gap"/>,
    /// <paramref name="gap"/> builds the item that reports a loss; with <see cref="OverflowPolicy.CutOff"/>,
    /// <paramref name="cutOff"/> builds the exception the reader ends with.</summary>
    public EventSubscription<T> Subscribe<T>(EventKinds kinds, Func<MachineEvent, T?> select, int capacity,
        OverflowPolicy policy, Func<long, T>? gap = null, Func<long, Exception>? cutOff = null) where T : class =>
        Subscribe(kinds, kinds, select, capacity, policy, gap, cutOff);

    /// <summary>As <see cref="Subscribe{T}(EventKinds, Func{MachineEvent, T}, int, OverflowPolicy, Func{long, T}, Func{long, Exception})"/>,
    /// but routine events (<see cref="MachineEvent.IsRoutine"/>) only of <paramref name="routineKinds"/>
    /// (changeable later with <see cref="EventSubscription{T}.SetRoutineKinds"/>).</summary>
    public EventSubscription<T> Subscribe<T>(EventKinds kinds, EventKinds routineKinds, Func<MachineEvent, T?> select, int capacity,
        OverflowPolicy policy, Func<long, T>? gap = null, Func<long, Exception>? cutOff = null) where T : class
    {
        ArgumentNullException.ThrowIfNull(select);
        if (capacity < 1) throw new ArgumentOutOfRangeException(nameof(capacity), "capacity must be at least 1");
        if (policy == OverflowPolicy.Gap && gap == null) throw new ArgumentNullException(nameof(gap));
        var sub = new EventSubscription<T>(this, kinds, routineKinds & kinds, select, capacity, policy, gap, cutOff);
        lock (_lock)
        {
            _subs = [.. _subs, sub];
            Recompute();
        }
        return sub;
    }

    /// <summary>A trace subscription: every event of <paramref name="kinds"/> that passes
    /// <paramref name="filter"/> (null = all), with gap events on overflow.</summary>
    public EventSubscription<MachineEvent> Subscribe(EventKinds kinds, Func<MachineEvent, bool>? filter = null, int capacity = 4096) =>
        Subscribe<MachineEvent>(kinds, filter == null ? static e => e : e => filter(e) ? e : null, capacity, OverflowPolicy.Gap, static n => new GapEvent(n));

    /// <summary>A trace subscription that receives routine events only of <paramref name="routineKinds"/>.</summary>
    public EventSubscription<MachineEvent> Subscribe(EventKinds kinds, EventKinds routineKinds, int capacity) =>
        Subscribe<MachineEvent>(kinds, routineKinds, static e => e, capacity, OverflowPolicy.Gap, static n => new GapEvent(n));

    internal void Remove(ISubscriber sub)
    {
        lock (_lock)
        {
            _subs = [.. _subs.Where(s => s != sub)];
            Recompute();
        }
    }

    internal void Recompute()
    {
        lock (_lock)
        {
            int k = 0, r = 0;
            foreach (var s in _subs) { k |= (int)s.Kinds; r |= (int)s.RoutineKinds; }
            Volatile.Write(ref _kinds, k);
            Volatile.Write(ref _routine, r);
        }
    }

    /// <summary>Stamps <paramref name="ev"/> and offers it to every subscriber that wants its kind. Never blocks.</summary>
    public void Publish(MachineEvent ev)
    {
        ArgumentNullException.ThrowIfNull(ev);
        ev.Sequence = (ulong)Interlocked.Increment(ref _sequence);
        ev.TimestampNs = NowNs();
        int bit = 1 << (int)ev.Kind;
        var subs = Volatile.Read(ref _subs);
        for (int i = 0; i < subs.Length; i++)
            if (((int)(ev.IsRoutine ? subs[i].RoutineKinds : subs[i].Kinds) & bit) != 0) subs[i].Offer(ev);
    }

    internal interface ISubscriber
    {
        EventKinds Kinds { get; }
        EventKinds RoutineKinds { get; }
        void Offer(MachineEvent ev);
    }
}

/// <summary>A subscriber's bounded queue on the <see cref="EventBus"/>.</summary>
/// <typeparam name="T">What the subscriber receives (events, or a view of them).</typeparam>
public sealed class EventSubscription<T> : EventBus.ISubscriber, IDisposable where T : class
{
    private readonly EventBus _bus;
    private readonly Func<MachineEvent, T?> _select;
    private readonly Func<long, T>? _gap;
    private readonly Func<long, Exception>? _cutOff;
    private readonly OverflowPolicy _policy;
    private readonly int _capacity;
    private readonly Channel<T> _channel;
    private readonly Lock _lock = new();
    private long _missed, _pendingGap;
    private int _queued;   // Gap policy: items in the (unbounded) channel; the capacity is enforced here
    private bool _closed;

    internal EventSubscription(EventBus bus, EventKinds kinds, EventKinds routineKinds, Func<MachineEvent, T?> select, int capacity,
        OverflowPolicy policy, Func<long, T>? gap, Func<long, Exception>? cutOff)
    {
        _bus = bus; Kinds = kinds; _routineKinds = (int)routineKinds; _select = select; _capacity = capacity; _policy = policy; _gap = gap; _cutOff = cutOff;
        // One slot beyond the capacity is kept for the gap item. A Gap subscription (trace, recorder,
        // checker) bounds its queue itself with a counter over a single-reader unbounded channel,
        // whose writes take no lock: the publisher and the reader do not contend for each event.
        _channel = policy == OverflowPolicy.Gap
            ? Channel.CreateUnbounded<T>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = false })
            : Channel.CreateBounded<T>(new BoundedChannelOptions(capacity + 1)
            {
                SingleReader = true,
                SingleWriter = false,
                FullMode = BoundedChannelFullMode.Wait,   // TryWrite fails when full; nobody waits
            });
    }

    private int Queued => _policy == OverflowPolicy.Gap ? Volatile.Read(ref _queued) : _channel.Reader.Count;

    private bool Enqueue(T item)
    {
        if (!_channel.Writer.TryWrite(item)) return false;
        if (_policy == OverflowPolicy.Gap) Interlocked.Increment(ref _queued);
        return true;
    }

    private bool Dequeue(out T item)
    {
        if (!_channel.Reader.TryRead(out item!)) return false;
        Interlocked.Decrement(ref _queued);
        return true;
    }

    /// <summary>Kinds this subscription receives.</summary>
    public EventKinds Kinds { get; }

    /// <summary>Kinds whose routine events (<see cref="MachineEvent.IsRoutine"/>) it receives too.</summary>
    public EventKinds RoutineKinds => (EventKinds)Volatile.Read(ref _routineKinds);
    private int _routineKinds;

    /// <summary>Changes <see cref="RoutineKinds"/> (within <see cref="Kinds"/>); the sources see it at once.
    /// Safe to call from the subscription's own select function (on the publishing thread).</summary>
    public void SetRoutineKinds(EventKinds routineKinds)
    {
        int k = (int)(routineKinds & Kinds);
        if (Interlocked.Exchange(ref _routineKinds, k) != k) _bus.Recompute();
    }

    /// <summary>Items in publication order. With <see cref="OverflowPolicy.Gap"/> a loss is reported
    /// by a gap item before the next item, or as soon as the queue is drained; with
    /// <see cref="OverflowPolicy.CutOff"/> it completes with the cut-off exception after an overflow.</summary>
    public ChannelReader<T> Reader => _reader ??= _policy == OverflowPolicy.Gap ? new GapReader(this) : _channel.Reader;
    private ChannelReader<T>? _reader;

    // The queue is empty: hand out a pending gap (so a loss is reported even if nothing follows it).
    private bool TryTakeGap(out T item)
    {
        lock (_lock)
        {
            if (_pendingGap > 0 && Queued == 0)
            {
                item = _gap!(_pendingGap);
                _pendingGap = 0;
                return true;
            }
        }
        item = null!;
        return false;
    }

    private sealed class GapReader(EventSubscription<T> sub) : ChannelReader<T>
    {
        public override Task Completion => sub._channel.Reader.Completion;
        public override bool CanCount => true;
        public override int Count => sub.Queued;

        public override bool TryRead(out T item) => sub.Dequeue(out item) || sub.TryTakeGap(out item);

        public override ValueTask<bool> WaitToReadAsync(CancellationToken cancellationToken = default) =>
            Volatile.Read(ref sub._pendingGap) > 0 ? new ValueTask<bool>(true) : sub._channel.Reader.WaitToReadAsync(cancellationToken);
    }

    /// <summary>Events this subscriber lost.</summary>
    public long Missed => Interlocked.Read(ref _missed);

    void EventBus.ISubscriber.Offer(MachineEvent ev)
    {
        var item = _select(ev);
        if (item == null) return;
        lock (_lock)
        {
            if (_closed) { Interlocked.Increment(ref _missed); return; }
            bool wroteGap = false;
            if (_pendingGap > 0)
            {
                if (Queued >= _capacity) { _pendingGap++; Interlocked.Increment(ref _missed); return; }
                Enqueue(_gap!(_pendingGap));
                _pendingGap = 0;
                wroteGap = true;   // the event after a gap item may use the spare slot
            }
            if ((wroteGap || Queued < _capacity) && Enqueue(item)) return;
            Interlocked.Increment(ref _missed);
            if (_policy == OverflowPolicy.Gap) { _pendingGap++; return; }
            _closed = true;
            _channel.Writer.TryComplete(_cutOff?.Invoke(Interlocked.Read(ref _missed)));
        }
    }

    /// <summary>Stops the subscription; the reader completes.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            _closed = true;
            _channel.Writer.TryComplete();
        }
        _bus.Remove(this);
    }
}
