using PcieEmu.Core.Platform;
using PcieEmu.Core.Topology;

namespace PcieEmu.Core.Devices;

/// <summary>
/// One device (an adapter) the machine was built with, whatever its type: the functions it puts on
/// its port's link and its Ethernet ports. Machine, the server and the CLI know devices only
/// through this interface and <see cref="DeviceRegistry"/>.
/// </summary>
public interface IPcieDevice
{
    /// <summary>The registered type name (e.g. "virtio-net").</summary>
    string Type { get; }
    /// <summary>A human-readable model name ("Intel 82576").</summary>
    string Model { get; }
    /// <summary>A short model name for labels such as capture interface names ("82576").</summary>
    string ShortModel { get; }
    /// <summary>The functions the device puts on its port's link (function 0 first); SR-IOV VFs are
    /// reached through their <see cref="PhysicalFunction"/>.</summary>
    IReadOnlyList<PciFunction> Functions { get; }
    /// <summary>The device's Ethernet ports (none for a device without a wire).</summary>
    IReadOnlyList<IEthernetPort> EthernetPorts { get; }
}

/// <summary>Options of a device type: <see cref="Validate"/> throws <see cref="ArgumentException"/>
/// whose ParamName names the bad option (the property name).</summary>
public interface IDeviceOptions
{
    /// <summary>Checks every value.</summary>
    void Validate();
}

/// <summary>What a device factory gets: the machine, the port whose link the device sits on, its
/// place in the description, and machine-wide numbering of Ethernet ports.</summary>
public sealed class DeviceContext
{
    private readonly Func<int> _nextEthernetPort;

    internal DeviceContext(Machine machine, PciBridge port, string path, int index, Func<int> nextEthernetPort)
    {
        Machine = machine;
        Port = port;
        Path = path;
        Index = index;
        _nextEthernetPort = nextEthernetPort;
    }

    /// <summary>The machine.</summary>
    public Machine Machine { get; }
    /// <summary>The port (root port or switch downstream port) whose link the device's functions sit on.</summary>
    public PciBridge Port { get; }
    /// <summary>Where the device is in the description, e.g. <c>rootPorts[0].switch.downstreamPorts[1].device</c>.</summary>
    public string Path { get; }
    /// <summary>The device's position among all devices of the machine (description order, from 0).</summary>
    public int Index { get; }
    /// <summary>Prefix for function names so they stay unique: empty for the first device, <c>dev1.</c> ... after.</summary>
    public string NamePrefix => Index == 0 ? "" : $"dev{Index}.";

    /// <summary>Takes the next machine-wide Ethernet port number (call once per port, in port order).</summary>
    public int NextEthernetPort() => _nextEthernetPort();
}
