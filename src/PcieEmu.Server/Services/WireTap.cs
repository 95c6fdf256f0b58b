using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using PcieEmu.Core.Devices;
using PcieEmu.Core.Events;
using PcieEmu.Core.Platform;
using PcieEmu.Server.Hosting;

namespace PcieEmu.Server.Services;

/// <summary>Thrown from a capture subscription's reader when its queue overflowed and it was cut off.</summary>
public sealed class CaptureOverflowException(long missed) : Exception($"capture subscriber fell behind; {missed} frame(s) missed")
{
    /// <summary>Frames missed when the subscription was cut off.</summary>
    public long Missed => missed;
}

/// <summary>
/// The wire of each Ethernet port (of whatever device), seen from outside: frames injected from the link partner and frames
/// the ports transmit. Capture subscribers are views of the machine's event path (frames to the
/// wire of one port; bounded queues that never block the machine; an overflowing subscriber is
/// cut off). The --pcap files are another view of the same path (<see cref="Capture.PcapRecording"/>).
/// </summary>
public sealed class WireTap
{
    private readonly Machine _machine;
    private readonly int _ports;
    private readonly string[] _portNames;
    private int _subscribers;

    /// <summary>Serves the machine's ports.</summary>
    public WireTap(Machine machine)
    {
        ArgumentNullException.ThrowIfNull(machine);
        _machine = machine;
        // Named once, as the machine was built: a platform reset rebuilds the ports' objects while requests run.
        _portNames = [.. Capture.FrameLabels.PortNames(machine)];
        _ports = _portNames.Length;
    }

    /// <summary>Number of ports.</summary>
    public int Ports => _ports;

    /// <summary>Port <paramref name="port"/>'s name in captures ("port0 (01:00.0 MODEL)").</summary>
    public string PortName(int port) => _portNames[port];

    /// <summary>Delivers <paramref name="data"/> to port <paramref name="port"/>'s receiver; returns the
    /// receive queues that took it. Throws <see cref="ArgumentException"/> ("port", "data") on bad input.</summary>
    public int Inject(int port, ReadOnlySpan<byte> data)
    {
        if ((uint)port >= (uint)_ports) throw new ArgumentException($"port {port} does not exist (ports 0..{_ports - 1})", nameof(port));
        if (data.Length is < EthernetFrame.MinSize or > EthernetFrame.MaxSize)
            throw new ArgumentException($"frame must be {EthernetFrame.MinSize}..{EthernetFrame.MaxSize} bytes (was {data.Length})", nameof(data));
        return _machine.InjectFrame(port, data);
    }

    /// <summary>Subscribes to frames transmitted by <paramref name="port"/> (with <paramref name="received"/> also those from
    /// the wire, with <paramref name="switched"/> also those switched between pools inside the NIC); null when
    /// <paramref name="max"/> subscribers exist.</summary>
    public Subscription? TrySubscribe(int port, int capacity, int max, bool received = false, bool switched = false)
    {
        if (Interlocked.Increment(ref _subscribers) > max)
        {
            Interlocked.Decrement(ref _subscribers);
            return null;
        }
        var inner = _machine.Events.Subscribe(EventKinds.Frame,
            e => e is FrameEvent f && f.Frame.Port == port && (f.Direction == FrameDirection.ToWire
                || (received && f.Direction == FrameDirection.FromWire) || (switched && f.Direction == FrameDirection.Switched)) ? f : null,
            capacity, OverflowPolicy.CutOff, cutOff: static n => new CaptureOverflowException(n));
        return new Subscription(this, inner);
    }


    /// <summary>One capture subscriber's bounded queue (a view of the event path).</summary>
    public sealed class Subscription : IDisposable
    {
        private readonly WireTap _tap;
        private readonly EventSubscription<FrameEvent> _inner;
        private int _disposed;

        internal Subscription(WireTap tap, EventSubscription<FrameEvent> inner)
        {
            _tap = tap;
            _inner = inner;
        }

        /// <summary>Frames in order; completes with <see cref="CaptureOverflowException"/> on overflow.</summary>
        public ChannelReader<FrameEvent> Reader => _inner.Reader;
        /// <summary>Frames missed.</summary>
        public long Missed => _inner.Missed;

        /// <summary>Stops the subscription.</summary>
        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
            _inner.Dispose();
            Interlocked.Decrement(ref _tap._subscribers);
        }
    }
}
