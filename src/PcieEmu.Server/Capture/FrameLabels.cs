using System.Globalization;
using PcieEmu.Core.Events;
using PcieEmu.Core.Platform;
using PcieEmu.Core.Topology;

namespace PcieEmu.Server.Capture;

/// <summary>How captures name ports and label frames (pcapng if_name and opt_comment).</summary>
public static class FrameLabels
{
    /// <summary>Interface names of every Ethernet port, by port number: <c>port0 (01:00.0 MODEL)</c>
    /// (the function the port belongs to and its device's short model name).</summary>
    public static string[] PortNames(Machine machine)
    {
        ArgumentNullException.ThrowIfNull(machine);
        var topology = machine.SnapshotTopology();
        var names = new string[topology.Devices.Sum(d => d.EthernetPorts.Count)];
        foreach (var d in topology.Devices)
            foreach (var e in d.EthernetPorts)
                names[e.Number] = PortName(e, d);
        return names;
    }

    /// <summary>Interface name of one Ethernet port of <paramref name="device"/>.</summary>
    public static string PortName(EthernetPortSnapshot port, DeviceSnapshot device)
    {
        ArgumentNullException.ThrowIfNull(port);
        ArgumentNullException.ThrowIfNull(device);
        return string.Create(CultureInfo.InvariantCulture, $"port{port.Number} ({Bdf.Format(port.FunctionRid)} {device.ShortModel})");
    }

    /// <summary>Interface name for frames switched inside the NIC by port <paramref name="portName"/>'s VMDq switch.</summary>
    public static string SwitchName(string portName) => portName + " internal switch";

    /// <summary>The packet comment: <c>tx by 02:10.0 queue 0</c>, <c>rx from wire</c>,
    /// <c>switched by 02:10.0 queue 0 to pools 0x02 (inside the NIC)</c>.</summary>
    public static string Comment(FrameDirection direction, string function, int queue, uint pools) => direction switch
    {
        FrameDirection.FromWire => "rx from wire",
        FrameDirection.ToWire => string.Create(CultureInfo.InvariantCulture, $"tx by {function} queue {queue}"),
        FrameDirection.Switched => string.Create(CultureInfo.InvariantCulture, $"switched by {function} queue {queue} to pools 0x{pools:X2} (inside the NIC)"),
        _ => "",
    };

    /// <summary>pcapng direction of a frame (switched frames have none: they never touch the wire).</summary>
    public static PacketDirection Direction(FrameDirection direction) => direction switch
    {
        FrameDirection.FromWire => PacketDirection.Inbound,
        FrameDirection.ToWire => PacketDirection.Outbound,
        _ => PacketDirection.Unknown,
    };

    /// <summary>Comment that reports a loss before a frame.</summary>
    public static string Dropped(long dropped) =>
        string.Create(CultureInfo.InvariantCulture, $"{dropped} frame(s) dropped before this one: the capture writer fell behind");
}
