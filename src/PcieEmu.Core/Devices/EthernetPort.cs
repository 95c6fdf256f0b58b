using PcieEmu.Core.Topology;

namespace PcieEmu.Core.Devices;

/// <summary>A frame on an Ethernet port's wire.</summary>
/// <param name="Port">Machine-wide Ethernet port number (<see cref="IEthernetPort.Number"/>).</param>
/// <param name="Data">The frame, destination MAC first, without FCS.</param>
/// <param name="TimestampUnixNs">Wall-clock time, nanoseconds since the Unix epoch.</param>
public sealed record WireFrame(int Port, byte[] Data, long TimestampUnixNs)
{
    /// <summary>A copy of <paramref name="frame"/> on port <paramref name="port"/>, stamped with <paramref name="time"/>'s now.</summary>
    public static WireFrame Now(int port, ReadOnlySpan<byte> frame, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(time);
        return new(port, frame.ToArray(), (time.GetUtcNow() - DateTimeOffset.UnixEpoch).Ticks * 100);
    }
}

/// <summary>Frame sizes every Ethernet port accepts from its wire.</summary>
public static class EthernetFrame
{
    /// <summary>Shortest frame a port takes from the wire: an Ethernet header.</summary>
    public const int MinSize = 14;
    /// <summary>Longest frame a port takes from the wire (jumbo frames included, no FCS).</summary>
    public const int MaxSize = 16 * 1024;
}

/// <summary>
/// One Ethernet port of a device, as the outside (capture, injection, an emulated link partner)
/// sees it, whatever the device. Ports are numbered machine-wide in description order. Frames
/// the port transmits are also published on the machine's event path as
/// <see cref="Events.FrameEvent"/>s with <see cref="WireFrame.Port"/> = <see cref="Number"/>.
/// </summary>
public interface IEthernetPort
{
    /// <summary>Machine-wide port number (description order; the default machine's 82576 has 0 and 1).</summary>
    int Number { get; }
    /// <summary>The function the port belongs to (the function frames are received into).</summary>
    PciFunction Function { get; }
    /// <summary>The port's permanent MAC address.</summary>
    ReadOnlySpan<byte> MacAddress { get; }
    /// <summary>Raised for every frame the port sends out of its wire (under the machine lock; do not block).</summary>
    event Action<WireFrame>? FrameTransmitted;
    /// <summary>Puts <paramref name="frame"/> (<see cref="EthernetFrame.MinSize"/>..<see cref="EthernetFrame.MaxSize"/>
    /// bytes, destination MAC first, no FCS) on the port's wire as if a link partner sent it. Takes the machine
    /// lock. Returns how many receive queues took it (0: filtered out or dropped).</summary>
    int InjectFrame(ReadOnlySpan<byte> frame);
}
