using PcieEmu.Core.Config.Capabilities;
using PcieEmu.Core.Topology;

namespace PcieEmu.Core.Devices.Igb;

/// <summary>The Intel 82576 as a device of the machine (type "intel-82576"): one or two PFs on its
/// port's link sharing one SR-IOV group, one Ethernet port per PF.</summary>
public sealed class IgbDevice : IPcieDevice
{
    /// <summary>The type name in machine descriptions.</summary>
    public const string TypeName = "intel-82576";

    private IgbDevice(IReadOnlyList<IgbPhysicalFunction> pfs)
    {
        PhysicalFunctions = pfs;
        Functions = [.. pfs];
        EthernetPorts = [.. pfs.Select(pf => (IEthernetPort)pf.Nic)];
    }

    /// <summary>Builds the NIC on <paramref name="context"/>'s port.</summary>
    public static IPcieDevice Create(DeviceContext context, IgbOptions options)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(options);
        var group = new SriovGroup();
        var pfs = new List<IgbPhysicalFunction>();
        for (int fn = 0; fn < options.PhysicalFunctions; fn++)
            pfs.Add(new IgbPhysicalFunction(context.Machine, context.Port, (byte)fn, options, group, context.NextEthernetPort(), context.NamePrefix));
        return new IgbDevice(pfs);
    }

    /// <inheritdoc/>
    public string Type => TypeName;
    /// <inheritdoc/>
    public string Model => "Intel 82576";
    /// <inheritdoc/>
    public string ShortModel => "82576";
    /// <summary>The NIC's PFs.</summary>
    public IReadOnlyList<IgbPhysicalFunction> PhysicalFunctions { get; }
    /// <inheritdoc/>
    public IReadOnlyList<PciFunction> Functions { get; }
    /// <inheritdoc/>
    public IReadOnlyList<IEthernetPort> EthernetPorts { get; }
}
