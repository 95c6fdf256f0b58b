using PcieEmu.Core.Config;
using PcieEmu.Core.Devices;
using PcieEmu.Core.Memory;
using PcieEmu.Core.Topology;

namespace PcieEmu.Core.Platform;

/// <summary>A device of the machine and where it sits.</summary>
/// <param name="Device">The device.</param>
/// <param name="Path">Its entry in the description (<c>rootPorts[0].device</c>).</param>
/// <param name="Port">The port whose link it is on.</param>
public sealed record MachineDevice(IPcieDevice Device, string Path, PciBridge Port);

/// <summary>Kinds of port in a topology snapshot.</summary>
public enum PortKind
{
    /// <summary>A root port on bus 0.</summary>
    RootPort,
    /// <summary>A switch's upstream port.</summary>
    SwitchUpstream,
    /// <summary>A switch's downstream port.</summary>
    SwitchDownstream,
}

/// <summary>A port as it is now.</summary>
/// <param name="Rid">Routing ID now.</param>
/// <param name="Kind">Root port, switch upstream or downstream port.</param>
/// <param name="Name">Short name (root-port1, switch0-upstream, switch0-downstream2).</param>
/// <param name="ParentRid">Routing ID of the port above (null for a root port).</param>
/// <param name="PrimaryBus">Primary bus number now.</param>
/// <param name="SecondaryBus">Secondary bus number now.</param>
/// <param name="SubordinateBus">Subordinate bus number now.</param>
/// <param name="AriForwardingSupported">Device Capabilities 2 ARI Forwarding Supported.</param>
/// <param name="AriForwardingEnabled">Device Control 2 ARI Forwarding Enable.</param>
public sealed record PortSnapshot(ushort Rid, PortKind Kind, string Name, ushort? ParentRid, byte PrimaryBus, byte SecondaryBus,
    byte SubordinateBus, bool AriForwardingSupported, bool AriForwardingEnabled);

/// <summary>An Ethernet port as it is now.</summary>
/// <param name="Number">Machine-wide number.</param>
/// <param name="Mac">Permanent MAC address (02:00:...).</param>
/// <param name="FunctionRid">Routing ID of the function it belongs to, now.</param>
/// <param name="Segment">The L2 segment it is on (<see cref="EthernetSegment.Name"/>), or null.</param>
public sealed record EthernetPortSnapshot(int Number, string Mac, ushort FunctionRid, string? Segment = null);

/// <summary>A device as it is now.</summary>
/// <param name="Type">Registered type name.</param>
/// <param name="Model">Model name.</param>
/// <param name="ShortModel">Short model name for labels.</param>
/// <param name="Path">Entry in the description.</param>
/// <param name="PortRid">Routing ID of the port whose link it is on.</param>
/// <param name="RootPortRid">Routing ID of the root port above it.</param>
/// <param name="FunctionRids">Routing IDs of its functions on the link, now.</param>
/// <param name="TotalVfs">TotalVFs of each of those functions (0 without SR-IOV).</param>
/// <param name="EthernetPorts">Its Ethernet ports.</param>
public sealed record DeviceSnapshot(string Type, string Model, string ShortModel, string Path, ushort PortRid, ushort RootPortRid,
    IReadOnlyList<ushort> FunctionRids, IReadOnlyList<int> TotalVfs, IReadOnlyList<EthernetPortSnapshot> EthernetPorts);

/// <summary>The machine's topology at one instant (taken under the machine lock).</summary>
/// <param name="Ports">Every port, depth first in description order.</param>
/// <param name="Devices">Every device in description order.</param>
public sealed record TopologySnapshot(IReadOnlyList<PortSnapshot> Ports, IReadOnlyList<DeviceSnapshot> Devices);

/// <summary>A BAR of a listed function as it is now.</summary>
/// <param name="Index">BAR index (6 = expansion ROM).</param>
/// <param name="Address">Assigned address now (0 when unassigned).</param>
/// <param name="Size">Size of the function's window.</param>
/// <param name="Is64Bit">64-bit memory BAR.</param>
/// <param name="Prefetchable">Prefetchable memory.</param>
/// <param name="IsIo">I/O BAR.</param>
/// <param name="IsRom">Expansion ROM.</param>
public sealed record BarSnapshot(int Index, ulong Address, ulong Size, bool Is64Bit, bool Prefetchable, bool IsIo, bool IsRom);

/// <summary>A function that answers config requests, as it is now.</summary>
/// <param name="Rid">Routing ID.</param>
/// <param name="VendorId">Vendor ID as software sees it.</param>
/// <param name="DeviceId">Device ID as software sees it.</param>
/// <param name="ClassCode">Class code.</param>
/// <param name="IsVirtual">An SR-IOV VF.</param>
/// <param name="Name">Short name.</param>
/// <param name="PhysicalFunctionRid">A VF's PF, else null.</param>
/// <param name="Bars">Implemented BARs (a VF: its VF BARs).</param>
/// <param name="Description">What the device model calls the function (may be empty).</param>
public sealed record FunctionSnapshot(ushort Rid, ushort VendorId, ushort DeviceId, uint ClassCode, bool IsVirtual, string Name,
    ushort? PhysicalFunctionRid, IReadOnlyList<BarSnapshot> Bars, string Description);

public sealed partial class Machine
{
    /// <summary>Checks that <paramref name="options"/> build a machine (description, bus numbers, BAR space) without
    /// keeping one: builds the topology once over a 4 KiB scratch RAM file and disposes it. Throws
    /// <see cref="ArgumentException"/> or <see cref="MachineDescriptionException"/> as the constructor would.</summary>
    public static void Check(MachineOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        using var scratch = new Machine(options with { RamSize = 4096, RamFilePath = HostRam.DefaultPath(), KeepRamFile = false, FirmwareEnumeration = false });
    }

    /// <summary>The ports and devices as they are now (bus numbers, routing IDs, ARI Forwarding), taken under the machine lock.</summary>
    public TopologySnapshot SnapshotTopology()
    {
        lock (SyncRoot)
        {
            var built = _built;
            var ports = new List<PortSnapshot>();
            foreach (var b in built.Bridges)
            {
                var (kind, parent) = b switch
                {
                    SwitchUpstreamPort up => (PortKind.SwitchUpstream, (ushort?)up.Parent.Rid),
                    SwitchDownstreamPort dp => (PortKind.SwitchDownstream, (ushort?)dp.Upstream.Rid),
                    _ => (PortKind.RootPort, (ushort?)null),
                };
                ports.Add(new PortSnapshot(b.Rid, kind, b.Name, parent, b.PrimaryBus, b.SecondaryBus, b.SubordinateBus, b.AriForwardingSupported, b.AriForwardingEnabled));
            }
            var devices = new List<DeviceSnapshot>();
            foreach (var d in built.Devices)
            {
                var fns = d.Device.Functions;
                devices.Add(new DeviceSnapshot(d.Device.Type, d.Device.Model, d.Device.ShortModel, d.Path, d.Port.Rid, RootPortAbove(d.Port).Rid,
                    [.. fns.Select(f => f.Rid)],
                    [.. fns.Select(f => f is PhysicalFunction { Sriov: { } s } ? (int)s.Parameters.TotalVfs : 0)],
                    [.. d.Device.EthernetPorts.Select(e => new EthernetPortSnapshot(e.Number, FormatMac(e.MacAddress), e.Function.Rid,
                        built.Segments.FirstOrDefault(s => s.Ports.Contains(e))?.Name))]));
            }
            return new TopologySnapshot(ports, devices);
        }
    }

    private static RootPort RootPortAbove(PciBridge port) => port switch
    {
        RootPort rp => rp,
        SwitchDownstreamPort dp => RootPortAbove(dp.Upstream),
        SwitchUpstreamPort up => RootPortAbove(up.Parent),
        _ => throw new InvalidOperationException($"unknown port type {port.GetType().Name}"),
    };

    /// <summary>Every function that answers config requests now, in routing-ID order, with its BARs as assigned now
    /// (one consistent snapshot, taken under the machine lock).</summary>
    public IReadOnlyList<FunctionSnapshot> SnapshotFunctions()
    {
        lock (SyncRoot)
        {
            var list = new List<FunctionSnapshot>();
            foreach (var f in EnumerateFunctions())
            {
                var bars = f is VirtualFunction vf ? vf.VfBars : f.Bars;
                list.Add(new FunctionSnapshot(f.Rid, f.VendorId, f.DeviceId, f.ClassCode, f.IsVirtual, f.Name,
                    f is VirtualFunction v ? v.PhysicalFunction.Rid : null,
                    [.. bars.Select(bar =>
                    {
                        var (address, size) = f.BarWindow(bar);
                        return new BarSnapshot(bar.Index, address, size, bar.Is64Bit, bar.Prefetchable, bar.IsIo, bar.Kind == BarKind.Rom);
                    })], f.Description));
            }
            return list;
        }
    }

    /// <summary>Delivers <paramref name="frame"/> to Ethernet port <paramref name="port"/> as if its link partner sent
    /// it (the port as it is now, also across platform resets). Returns the receive queues that took it. Throws
    /// <see cref="ArgumentException"/> naming "port" or "frame" on bad input.</summary>
    public int InjectFrame(int port, ReadOnlySpan<byte> frame)
    {
        if (frame.Length is < EthernetFrame.MinSize or > EthernetFrame.MaxSize)
            throw new ArgumentException($"frame must be {EthernetFrame.MinSize}..{EthernetFrame.MaxSize} bytes (was {frame.Length})", nameof(frame));
        lock (SyncRoot)
        {
            var ports = _built.EthernetPorts;
            if ((uint)port >= (uint)ports.Length)
                throw new ArgumentException(ports.Length == 0 ? $"port {port} does not exist (the machine has no Ethernet ports)" : $"port {port} does not exist (ports 0..{ports.Length - 1})", nameof(port));
            return ports[port].InjectFrame(frame);
        }
    }
}
