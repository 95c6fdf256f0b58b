using PcieEmu.Core.Events;

namespace PcieEmu.Core.Devices.Igb;

public sealed partial class IgbPort
{
    /// <summary>Publishes a frame dropped on queue <paramref name="q"/> for <paramref name="reason"/>
    /// (only the device knows it happened); the requester is the function that owns the queue.</summary>
    internal void NoteDrop(int q, FrameDropReason reason, int length)
    {
        var bus = _pf.Machine.Events;
        if (bus.Wants(EventKind.FrameDrop)) bus.Publish(new FrameDropEvent(QueueOwner(q).Rid, reason, PortNumber, q, length));
    }
}
