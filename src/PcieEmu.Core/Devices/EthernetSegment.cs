namespace PcieEmu.Core.Devices;

/// <summary>
/// An emulated L2 segment (a hub: no learning, no filtering) joining Ethernet ports of the machine,
/// named in the machine description (<c>"segment": "lan0"</c> on a device). A frame one port
/// transmits is delivered to every other port of the segment through <see cref="IEthernetPort.InjectFrame"/>,
/// after the transmitting port's own frame event (so captures see it leave one port and arrive at
/// the others). Delivery runs under the machine lock, in transmit order; a frame a delivery causes
/// to be transmitted is queued and delivered after the current one, never recursively.
/// </summary>
public sealed class EthernetSegment
{
    private readonly List<IEthernetPort> _ports = [];
    private readonly Queue<(IEthernetPort From, byte[] Data)> _pending = new();
    private bool _delivering;

    /// <summary>Creates the segment <paramref name="name"/> (ports join with <see cref="Attach"/>).</summary>
    public EthernetSegment(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        Name = name;
    }

    /// <summary>The segment's name in the description.</summary>
    public string Name { get; }
    /// <summary>The ports on the segment, in the order they joined.</summary>
    public IReadOnlyList<IEthernetPort> Ports => _ports;
    /// <summary>Frames carried (one per transmitted frame, whatever the number of receivers).</summary>
    public long Frames { get; private set; }
    /// <summary>Deliveries a receiving port refused (filtered, no buffers, too long for it).</summary>
    public long Dropped { get; private set; }

    /// <summary>Connects <paramref name="port"/> to the segment.</summary>
    public void Attach(IEthernetPort port)
    {
        ArgumentNullException.ThrowIfNull(port);
        if (_ports.Contains(port)) throw new ArgumentException($"Ethernet port {port.Number} is already on segment '{Name}'", nameof(port));
        _ports.Add(port);
        port.FrameTransmitted += f => Carry(port, f);
    }

    private void Carry(IEthernetPort from, WireFrame frame)
    {
        _pending.Enqueue((from, frame.Data));
        if (_delivering) return;
        _delivering = true;
        try
        {
            while (_pending.TryDequeue(out var next))
            {
                Frames++;
                foreach (var to in _ports)
                {
                    if (ReferenceEquals(to, next.From)) continue;
                    if (next.Data.Length is < EthernetFrame.MinSize or > EthernetFrame.MaxSize || to.InjectFrame(next.Data) == 0) Dropped++;
                }
            }
        }
        finally
        {
            _pending.Clear();   // empty unless a port threw
            _delivering = false;
        }
    }
}
