using PcieEmu.Core.Topology;

namespace PcieEmu.Core.Devices.VirtioNet;

/// <summary>virtio-net as a device of the machine (type "virtio-net"): one function on its port's
/// link with one Ethernet port.</summary>
public sealed class VirtioNetDevice : IPcieDevice
{
    /// <summary>The type name in machine descriptions.</summary>
    public const string TypeName = "virtio-net";

    private VirtioNetDevice(VirtioNetFunction function)
    {
        Function = function;
        Functions = [function];
        EthernetPorts = [function];
    }

    /// <summary>Builds the device on <paramref name="context"/>'s port.</summary>
    public static IPcieDevice Create(DeviceContext context, VirtioNetOptions options)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(options);
        return new VirtioNetDevice(new VirtioNetFunction(context.Machine, context.Port, options, context.NextEthernetPort(), context.NamePrefix));
    }

    /// <inheritdoc/>
    public string Type => TypeName;
    /// <inheritdoc/>
    public string Model => "Virtio 1.0 network device";
    /// <inheritdoc/>
    public string ShortModel => "virtio";
    /// <summary>The device's function.</summary>
    public VirtioNetFunction Function { get; }
    /// <inheritdoc/>
    public IReadOnlyList<PciFunction> Functions { get; }
    /// <inheritdoc/>
    public IReadOnlyList<IEthernetPort> EthernetPorts { get; }
}
