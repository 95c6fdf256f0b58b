using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using PcieEmu.Core.Devices.Igb;
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
/// The wire of each NIC port, seen from outside: frames injected from the link partner and frames
/// the ports transmit. Capture subscribers are views of the machine's event path (frames to the
/// wire of one port; bounded queues that never block the machine; an overflowing subscriber is
/// cut off) and, with --pcap DIR, this writes
/// both directions of each port to DIR/pcie-emu-port&lt;N&gt;.pcap. Follows the ports across platform
/// resets (which rebuild them).
/// </summary>
public sealed class WireTap : IDisposable
{
    private readonly Machine _machine;
    private readonly PcapWriter?[] _pcap;
    private int _subscribers;

    /// <summary>Attaches to the machine's ports; opens pcap files when a capture directory is set.</summary>
    public WireTap(Machine machine, ServeSettings settings, ILogger<WireTap> logger)
    {
        _machine = machine;
        _pcap = new PcapWriter?[machine.PhysicalFunctions.Count];
        if (settings.PcapDirectory is { } dir)
        {
            Directory.CreateDirectory(dir);
            for (int p = 0; p < _pcap.Length; p++)
            {
                string path = Path.Combine(dir, $"pcie-emu-port{p}.pcap");
                _pcap[p] = PcapWriter.Create(path);
                Log.PcapFile(logger, p, path);
            }
        }
        lock (machine.SyncRoot) Attach();
        machine.PlatformReset += Attach;
    }

    /// <summary>Number of ports.</summary>
    public int Ports => _pcap.Length;

    /// <summary>Hooks the current ports (again after a reset rebuilt them). Runs under the machine lock.</summary>
    private void Attach()
    {
        foreach (var pf in _machine.PhysicalFunctions.OfType<IgbPhysicalFunction>())
        {
            pf.Nic.FrameTransmitted -= OnTransmitted;
            pf.Nic.FrameTransmitted += OnTransmitted;
        }
    }

    // Under the machine lock: write the pcap record; never wait.
    private void OnTransmitted(WireFrame frame)
    {
        if ((uint)frame.Port < (uint)_pcap.Length) _pcap[frame.Port]?.Write(frame);
    }

    /// <summary>Delivers <paramref name="data"/> to port <paramref name="port"/>'s receiver; returns the
    /// receive queues that took it. Throws <see cref="ArgumentException"/> ("port", "data") on bad input.</summary>
    public int Inject(int port, ReadOnlySpan<byte> data)
    {
        if ((uint)port >= (uint)_pcap.Length) throw new ArgumentException($"port {port} does not exist (ports 0..{_pcap.Length - 1})", nameof(port));
        if (data.Length is < IgbPort.MinFrameSize or > IgbPort.MaxFrameSize)
            throw new ArgumentException($"frame must be {IgbPort.MinFrameSize}..{IgbPort.MaxFrameSize} bytes (was {data.Length})", nameof(data));
        lock (_machine.SyncRoot)
        {
            var nic = ((IgbPhysicalFunction)_machine.PhysicalFunctions[port]).Nic;
            _pcap[port]?.Write(new WireFrame(port, data.ToArray(), (_machine.Time.GetUtcNow() - DateTimeOffset.UnixEpoch).Ticks * 100));
            return nic.InjectFrame(data);
        }
    }

    /// <summary>Subscribes to frames transmitted by <paramref name="port"/>; null when <paramref name="max"/> subscribers exist.</summary>
    public Subscription? TrySubscribe(int port, int capacity, int max)
    {
        if (Interlocked.Increment(ref _subscribers) > max)
        {
            Interlocked.Decrement(ref _subscribers);
            return null;
        }
        var inner = _machine.Events.Subscribe(EventKinds.Frame,
            e => e is FrameEvent { Direction: FrameDirection.ToWire } f && f.Frame.Port == port ? f.Frame : null,
            capacity, OverflowPolicy.CutOff, cutOff: static n => new CaptureOverflowException(n));
        return new Subscription(this, inner);
    }

    /// <summary>Flushes and closes the pcap files.</summary>
    public void Dispose()
    {
        _machine.PlatformReset -= Attach;
        lock (_machine.SyncRoot)
        {
            foreach (var pf in _machine.PhysicalFunctions.OfType<IgbPhysicalFunction>()) pf.Nic.FrameTransmitted -= OnTransmitted;
            for (int p = 0; p < _pcap.Length; p++) { _pcap[p]?.Dispose(); _pcap[p] = null; }
        }
    }

    /// <summary>One capture subscriber's bounded queue (a view of the event path).</summary>
    public sealed class Subscription : IDisposable
    {
        private readonly WireTap _tap;
        private readonly EventSubscription<WireFrame> _inner;
        private int _disposed;

        internal Subscription(WireTap tap, EventSubscription<WireFrame> inner)
        {
            _tap = tap;
            _inner = inner;
        }

        /// <summary>Frames in order; completes with <see cref="CaptureOverflowException"/> on overflow.</summary>
        public ChannelReader<WireFrame> Reader => _inner.Reader;
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
