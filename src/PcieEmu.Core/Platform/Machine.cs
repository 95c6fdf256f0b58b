using PcieEmu.Core.AddressSpace;
using PcieEmu.Core.Config;
using PcieEmu.Core.Config.Capabilities;
using PcieEmu.Core.Devices;
using PcieEmu.Core.Events;
using PcieEmu.Core.Interrupts;
using PcieEmu.Core.Iommu;
using PcieEmu.Core.Memory;
using PcieEmu.Core.Topology;

namespace PcieEmu.Core.Platform;

/// <summary>
/// The emulated machine: root complex (host bridge and root ports on bus 0), the switches and
/// devices behind the ports as its <see cref="MachineDescription"/> lays them out, host RAM, the
/// DMA remapping unit and the MSI window.
/// <para>
/// Concurrency: one machine lock (<see cref="SyncRoot"/>) is held for every transaction
/// (config, MMIO, I/O, memory), like a fabric that serialises requests. Device work a
/// transaction starts (a doorbell) runs inline under the same lock. Interrupt events are
/// handed to subscribers through bounded queues that never block.
/// </para>
/// </summary>
public sealed partial class Machine : IDisposable
{
    /// <summary>The MSI window: memory writes that land here are interrupt messages.</summary>
    public const ulong MsiWindowBase = 0xFEE0_0000, MsiWindowSize = 0x10_0000;

    private HostBridge _hostBridge = null!;
    private Built _built = Built.Empty;

    // Everything BuildTopology makes; replaced as a whole on a platform reset.
    private sealed record Built(RootPort[] RootPorts, PciBridge[] Bridges, MachineDevice[] Devices, PhysicalFunction[] Pfs, IEthernetPort[] EthernetPorts,
        EthernetSegment[] Segments)
    {
        public static readonly Built Empty = new([], [], [], [], [], []);
    }

    /// <summary>Builds a machine from <paramref name="options"/> (the default machine when null).
    /// <paramref name="time"/> is the clock every device timer and timestamp uses (EITR
    /// moderation intervals, interrupt event and wire frame timestamps); the system clock when
    /// null. Tests pass a fake clock and advance it instead of sleeping. A description that cannot
    /// be built throws <see cref="MachineDescriptionException"/> naming the offending entry.</summary>
    public Machine(MachineOptions? options = null, TimeProvider? time = null)
    {
        Options = options ?? new MachineOptions();
        Options.Validate();
        Time = time ?? TimeProvider.System;
        Events = new EventBus(Time);
        Interrupts = new InterruptHub(Events);
        Ram = new HostRam(Options.RamFilePath ?? HostRam.DefaultPath(), Options.RamSize, Options.KeepRamFile);
        Iommu = new VtdUnit(this);
        Remapper = Iommu;
        IommuRegisters = Iommu;
        PlatformReset += Iommu.Reset;
        try
        {
            BuildTopology();
            var plan = Firmware.Plan(this);
            if (Options.FirmwareEnumeration) Firmware.Apply(this, plan);
        }
        catch
        {
            Ram.Dispose();
            throw;
        }
    }

    /// <summary>The VT-d DMA remapping unit (also <see cref="Remapper"/> and <see cref="IommuRegisters"/>).</summary>
    public VtdUnit Iommu { get; }

    /// <summary>The options the machine was built with.</summary>
    public MachineOptions Options { get; }
    /// <summary>The machine's clock: device timers and timestamps (see the constructor).</summary>
    public TimeProvider Time { get; }
    /// <summary>The machine lock: held for each transaction.</summary>
    public Lock SyncRoot { get; } = new();
    /// <summary>Host RAM.</summary>
    public HostRam Ram { get; }
    /// <summary>The event path: every transaction, published to subscribers that never stall the machine.</summary>
    public EventBus Events { get; }
    /// <summary>Interrupt stream (a view of <see cref="Events"/>).</summary>
    public InterruptHub Interrupts { get; }
    /// <summary>The DMA remapping unit every DMA goes through (identity while none is present).</summary>
    public IDmaRemapper Remapper { get; set; } = IdentityRemapper.Instance;
    /// <summary>The remapping unit's register block at <see cref="MachineOptions.IommuBase"/> (reads 0 while none is present).</summary>
    public IMmioRegion IommuRegisters { get; set; } = EmptyRegion.Instance;
    /// <summary>Size of the remapping unit's register block.</summary>
    public const ulong IommuRegisterSize = 0x1000;
    /// <summary>The host bridge (00:00.0).</summary>
    public HostBridge HostBridge => _hostBridge;
    /// <summary>The first root port (00:01.0 in the default machine).</summary>
    public RootPort RootPort => _built.RootPorts[0];
    /// <summary>The root ports in description order.</summary>
    public IReadOnlyList<RootPort> RootPorts => _built.RootPorts;
    /// <summary>Every bridge (root ports, switch upstream and downstream ports), depth first in description order.</summary>
    public IReadOnlyList<PciBridge> Bridges => _built.Bridges;
    /// <summary>The devices in description order.</summary>
    public IReadOnlyList<MachineDevice> Devices => _built.Devices;
    /// <summary>Every device's physical functions (SR-IOV capable or not: the functions on their port's link), in description order.</summary>
    public IReadOnlyList<PhysicalFunction> PhysicalFunctions => _built.Pfs;
    /// <summary>Every Ethernet port, indexed by its machine-wide number (description order).</summary>
    public IReadOnlyList<IEthernetPort> EthernetPorts => _built.EthernetPorts;
    /// <summary>The L2 segments the description names, in order of first mention.</summary>
    public IReadOnlyList<EthernetSegment> Segments => _built.Segments;
    /// <summary>Incremented whenever functions appear or vanish (VF enable/disable, reset).</summary>
    public long TopologyVersion { get; private set; }

    /// <summary>Raised after a platform reset, under the machine lock (resets other units: the IOMMU).</summary>
    public event Action? PlatformReset;

    private void BuildTopology()
    {
        _hostBridge = new HostBridge(this, new HeaderIds(0x8086, 0x29C0, 0x02, 0x060000, 0x8086, 0x5044));
        var builder = new TopologyBuilder(this);
        var d = Options.EffectiveDescription;
        var slots = MachineDescription.AssignSlots(d.RootPorts, "rootPorts", first: 1);
        for (int i = 0; i < d.RootPorts.Count; i++)
        {
            var rp = new RootPort(this, Bdf.Rid(0, slots[i], 0), new HeaderIds(0x8086, 0x3C02, 0x07, 0x060400), portNumber: (byte)slots[i]);
            builder.RootPorts.Add(rp);
            builder.Populate(rp, d.RootPorts[i], $"rootPorts[{i}]");
        }
        builder.CheckMacs();
        var segments = builder.ConnectSegments();
        _built = new Built([.. builder.RootPorts], [.. builder.Bridges], [.. builder.Devices],
            [.. builder.Devices.SelectMany(x => x.Device.Functions).OfType<PhysicalFunction>()], [.. builder.EthernetPorts], segments);
        TopologyVersion++;
    }

    private sealed class TopologyBuilder(Machine machine)
    {
        public readonly List<RootPort> RootPorts = [];
        public readonly List<PciBridge> Bridges = [];
        public readonly List<MachineDevice> Devices = [];
        public readonly List<IEthernetPort> EthernetPorts = [];
        private int _switches, _downstreamPorts;

        public void Populate(PciBridge port, PortDescription p, string path)
        {
            port.Path = path;
            Bridges.Add(port);
            var registry = machine.Options.EffectiveDevices;
            if (p.Device is { } dev)
            {
                var type = registry.Get(dev.Type, path + ".device.type");
                int firstPort = EthernetPorts.Count, next = firstPort;
                var context = new DeviceContext(machine, port, path + ".device", Devices.Count, () => next++);
                var device = type.Create(context, dev.Options ?? type.DefaultOptions());
                if (device.EthernetPorts.Count != next - firstPort || device.EthernetPorts.Where((e, k) => e.Number != firstPort + k).Any())
                    throw new InvalidOperationException($"{path}.device: device type '{type.Name}' must number its Ethernet ports with DeviceContext.NextEthernetPort, in order");
                foreach (var f in device.Functions) port.Connect(f);
                EthernetPorts.AddRange(device.EthernetPorts);
                if (dev.Segments is { } segs)
                {
                    if (segs.Count > device.EthernetPorts.Count)
                        throw new MachineDescriptionException(path + ".device.segment",
                            $"names {segs.Count} segments but the device has {device.EthernetPorts.Count} Ethernet port(s)");
                    for (int k = 0; k < segs.Count; k++)
                        if (segs[k] is { } name) _segmentPorts.Add((name, device.EthernetPorts[k], path + ".device.segment"));
                }
                Devices.Add(new MachineDevice(device, path + ".device", port));
            }
            if (p.Switch is { } sw)
            {
                var up = new SwitchUpstreamPort(machine, port, $"switch{_switches++}");
                port.Connect(up);
                up.Path = path + ".switch";
                Bridges.Add(up);
                string sp = path + ".switch.downstreamPorts";
                var slots = MachineDescription.AssignSlots(sw.DownstreamPorts, sp, first: 0);
                for (int j = 0; j < sw.DownstreamPorts.Count; j++)
                {
                    var dpd = sw.DownstreamPorts[j];
                    var dp = new SwitchDownstreamPort(machine, up, (byte)slots[j], physicalSlot: (ushort)(32 + _downstreamPorts++),
                        occupied: dpd.Device != null || dpd.Switch != null, name: $"{up.Name[..^"-upstream".Length]}-downstream{slots[j]}");
                    up.Connect(dp);
                    Populate(dp, dpd, $"{sp}[{j}]");
                }
            }
        }

        private readonly List<(string Name, IEthernetPort Port, string Path)> _segmentPorts = [];

        // A segment named once is a typo more often than a cable to nowhere: refuse it.
        public EthernetSegment[] ConnectSegments()
        {
            var segments = new List<EthernetSegment>();
            foreach (var group in _segmentPorts.GroupBy(s => s.Name, StringComparer.Ordinal))
            {
                var members = group.ToList();
                if (members.Count < 2)
                    throw new MachineDescriptionException(members[0].Path,
                        $"segment '{group.Key}' has no other port: name it on a second device (or port) too");
                var segment = new EthernetSegment(group.Key);
                foreach (var m in members) segment.Attach(m.Port);
                segments.Add(segment);
            }
            return [.. segments];
        }

        // Two ports with one MAC would make a bridged segment (and a driver author) misbehave in ways real hardware never shows.
        public void CheckMacs()
        {
            var seen = new Dictionary<string, string>();
            foreach (var d in Devices)
                foreach (var e in d.Device.EthernetPorts)
                {
                    string mac = Convert.ToHexString(e.MacAddress);
                    if (seen.TryGetValue(mac, out var other))
                        throw new MachineDescriptionException(d.Path, $"MAC {FormatMac(e.MacAddress)} of Ethernet port {e.Number} is already used by {other}: give the device its own \"mac\"");
                    seen[mac] = $"{d.Path} (Ethernet port)";
                }
        }
    }

    /// <summary>Formats a MAC address as 02:00:00:00:00:01.</summary>
    public static string FormatMac(ReadOnlySpan<byte> mac)
    {
        var parts = new string[mac.Length];
        for (int i = 0; i < mac.Length; i++) parts[i] = mac[i].ToString("x2", System.Globalization.CultureInfo.InvariantCulture);
        return string.Join(':', parts);
    }

    internal void OnTopologyChanged() => TopologyVersion++;

    // ---------------- Configuration requests ----------------

    /// <summary>Routes a config request to the function at <paramref name="rid"/>, or null (Unsupported Request).</summary>
    public PciFunction? RouteConfig(ushort rid)
    {
        var rootPorts = _built.RootPorts;
        if (rid >> 8 == 0)
        {
            if (rid == _hostBridge.Rid) return _hostBridge;
            foreach (var rp in rootPorts) if (rid == rp.Rid) return rp;
            return null;
        }
        foreach (var rp in rootPorts)
            if (rp.ForwardsConfig(rid)) return rp.RouteConfig(rid);
        return null;
    }

    /// <summary>A config read. Invalid width/offset throw <see cref="ArgumentException"/>; a missing function completes UR with all ones.</summary>
    public ReadResult ReadConfig(ushort rid, int offset, int width)
    {
        ConfigSpace.ValidateAccess(offset, width);
        lock (SyncRoot)
        {
            var f = RouteConfig(rid);
            var r = f != null ? new ReadResult(CompletionStatus.Successful, f.ReadConfig(offset, width)) : ReadResult.Unsupported(width);
            if (f == null) NoteConfigUnsupported(rid);
            if (f != null ? Events.WantsRoutine(EventKind.Config) : Events.Wants(EventKind.Config)) MachineTrace.Config(this, f, rid, write: false, offset, width, (uint)r.Value, r.Status);
            return r;
        }
    }

    /// <summary>A config write. A missing function completes UR and the write is dropped.</summary>
    public CompletionStatus WriteConfig(ushort rid, int offset, int width, uint value)
    {
        ConfigSpace.ValidateAccess(offset, width);
        if (width < 4 && value >> (8 * width) != 0)
            throw new ArgumentException($"value 0x{value:X} does not fit in {width} byte(s)", nameof(value));
        lock (SyncRoot)
        {
            var f = RouteConfig(rid);
            bool trace = Events.Wants(EventKind.Config);
            if (f == null)
            {
                NoteConfigUnsupported(rid);
                if (trace) MachineTrace.Config(this, null, rid, write: true, offset, width, value, CompletionStatus.UnsupportedRequest);
                return CompletionStatus.UnsupportedRequest;
            }
            // Published before the write takes effect, so its consequences (VFs appearing, an FLR) follow it.
            if (trace) MachineTrace.Config(this, f, rid, write: true, offset, width, value, CompletionStatus.Successful);
            f.WriteConfig(offset, width, value);
            return CompletionStatus.Successful;
        }
    }

    // A config request a port forwarded that nobody claimed comes back to the last port that forwarded it as UR.
    private void NoteConfigUnsupported(ushort rid)
    {
        foreach (var rp in _built.RootPorts)
            if (rp.DeepestForwarder(rid) is { } port) { port.RecordSecondaryMasterAbort(); return; }
    }

    /// <summary>Every function that answers config requests now, in routing-ID order.</summary>
    public IReadOnlyList<PciFunction> EnumerateFunctions()
    {
        lock (SyncRoot)
        {
            var list = new List<PciFunction> { _hostBridge };
            foreach (var rp in _built.RootPorts) Visit(rp);
            return [.. list.OrderBy(f => f.Rid)];

            void Visit(PciFunction f)
            {
                if (RouteConfig(f.Rid) == f) list.Add(f);
                if (f is PciBridge b) foreach (var c in b.Downstream) Visit(c);
                if (f is PhysicalFunction pf) list.AddRange(pf.VirtualFunctions.Where(vf => RouteConfig(vf.Rid) == vf));
            }
        }
    }

    /// <summary>Every function that exists (reachable by config or not), PFs' VFs included.</summary>
    public IEnumerable<PciFunction> AllFunctions()
    {
        yield return _hostBridge;
        foreach (var rp in _built.RootPorts)
            foreach (var f in Below(rp)) yield return f;

        static IEnumerable<PciFunction> Below(PciFunction f)
        {
            yield return f;
            if (f is PciBridge b)
                foreach (var c in b.Downstream)
                    foreach (var x in Below(c)) yield return x;
            if (f is PhysicalFunction pf)
                foreach (var vf in pf.VirtualFunctions) yield return vf;
        }
    }

    // ---------------- Memory and I/O requests from the CPU ----------------

    /// <summary>Checks an MMIO access: width 1, 2, 4 or 8, naturally aligned.</summary>
    public static void ValidateMmio(ulong address, int width)
    {
        if (width is not (1 or 2 or 4 or 8))
            throw new ArgumentException($"width must be 1, 2, 4 or 8 (was {width})", nameof(width));
        if ((address & (ulong)(width - 1)) != 0)
            throw new ArgumentException($"address 0x{address:X} is not aligned to {width} bytes", nameof(address));
    }

    /// <summary>What a memory address decodes to now.</summary>
    public readonly record struct Decoded(IMmioRegion Region, ulong Offset, PciFunction? Function, int Bar);

    /// <summary>
    /// Decodes a CPU memory address: RAM, the IOMMU block, then the root port's windows and
    /// behind them PF BARs (Command.MSE, D0) and VF BAR apertures (VF Enable and VF MSE).
    /// Returns false when nothing claims it (Unsupported Request).
    /// </summary>
    public bool TryDecodeMemory(ulong address, int width, out Decoded decoded)
    {
        decoded = default;
        if (address >= Options.IommuBase && address + (ulong)width <= Options.IommuBase + IommuRegisterSize)
        {
            decoded = new Decoded(IommuRegisters, address - Options.IommuBase, null, -1);
            return true;
        }
        // Indexed loop: this runs for every MMIO access and must not allocate.
        var rootPorts = _built.RootPorts;
        for (int i = 0; i < rootPorts.Length; i++)
            if (rootPorts[i].ForwardsMemory(address)) return rootPorts[i].TryDecodeMemory(address, width, out decoded);
        return false;
    }

    /// <summary>A CPU memory read (MMIO or RAM).</summary>
    public ReadResult ReadMmio(ulong address, int width)
    {
        ValidateMmio(address, width);
        lock (SyncRoot)
        {
            if (Ram.Contains(address, (ulong)width))
                return new ReadResult(CompletionStatus.Successful, ReadLe(Ram.GetSpan(address, width)));
            if (TryDecodeMemory(address, width, out var d))
            {
                ulong v = d.Region.Read(d.Offset, width);
                if (Events.WantsRoutine(EventKind.Mmio)) MachineTrace.Mmio(this, write: false, address, width, v, 0, d);
                return new ReadResult(CompletionStatus.Successful, v);
            }
            // A read the port forwarded that no function claimed completes UR on its secondary side.
            foreach (var rp in _built.RootPorts)
                if (rp.DeepestMemoryForwarder(address) is { } port) { port.RecordSecondaryMasterAbort(); break; }
            if (Events.Wants(EventKind.Mmio)) MachineTrace.NotDecoded(this, write: false, address, width, ReadResult.Unsupported(width).Value);
            return ReadResult.Unsupported(width);
        }
    }

    /// <summary>A CPU memory write (MMIO or RAM). Posted: an undecoded address is dropped (reported UR).</summary>
    public CompletionStatus WriteMmio(ulong address, int width, ulong value)
    {
        ValidateMmio(address, width);
        if (width < 8 && value >> (8 * width) != 0)
            throw new ArgumentException($"value 0x{value:X} does not fit in {width} byte(s)", nameof(value));
        lock (SyncRoot)
        {
            if (Ram.Contains(address, (ulong)width))
            {
                WriteLe(Ram.GetSpan(address, width), value);
                return CompletionStatus.Successful;
            }
            if (!TryDecodeMemory(address, width, out var d))
            {
                if (Events.Wants(EventKind.Mmio)) MachineTrace.NotDecoded(this, write: true, address, width, value);
                return CompletionStatus.UnsupportedRequest;
            }
            // Published before the write takes effect, so what it starts (a doorbell's DMA) follows it.
            if (Events.Wants(EventKind.Mmio)) MachineTrace.Mmio(this, write: true, address, width, value, MachineTrace.StoredValue(d), d);
            d.Region.Write(d.Offset, width, value);
            return CompletionStatus.Successful;
        }
    }

    /// <summary>A CPU I/O read (1, 2 or 4 bytes) through the root port's I/O window to I/O BARs.</summary>
    public ReadResult ReadIo(ulong port, int width)
    {
        ValidateIo(port, width);
        lock (SyncRoot)
            return TryDecodeIo(port, width, out var d) ? new ReadResult(CompletionStatus.Successful, d.Region.Read(d.Offset, width)) : ReadResult.Unsupported(width);
    }

    /// <summary>A CPU I/O write.</summary>
    public CompletionStatus WriteIo(ulong port, int width, uint value)
    {
        ValidateIo(port, width);
        lock (SyncRoot)
        {
            if (!TryDecodeIo(port, width, out var d)) return CompletionStatus.UnsupportedRequest;
            d.Region.Write(d.Offset, width, value);
            return CompletionStatus.Successful;
        }
    }

    private static void ValidateIo(ulong port, int width)
    {
        if (width is not (1 or 2 or 4)) throw new ArgumentException($"width must be 1, 2 or 4 (was {width})", nameof(width));
        if (port > 0xFFFF_FFFF || (port & (ulong)(width - 1)) != 0) throw new ArgumentException($"port 0x{port:X} is out of range or misaligned", nameof(port));
    }

    private bool TryDecodeIo(ulong port, int width, out Decoded decoded)
    {
        decoded = default;
        foreach (var rp in _built.RootPorts)
            if (rp.ForwardsIo(port)) return rp.TryDecodeIo(port, width, out decoded);
        return false;
    }

    // ---------------- Memory from the CPU side (no IOMMU) ----------------

    /// <summary>Reads RAM as the CPU sees it. Throws <see cref="ArgumentOutOfRangeException"/> outside RAM.</summary>
    public void ReadMemory(ulong address, Span<byte> destination)
    {
        if (!Ram.Contains(address, (ulong)destination.Length)) throw new ArgumentOutOfRangeException(nameof(address), $"[0x{address:X}, +{destination.Length}) is outside RAM");
        lock (SyncRoot) Ram.Read(address, destination);
    }

    /// <summary>Writes RAM as the CPU sees it. Throws <see cref="ArgumentOutOfRangeException"/> outside RAM.</summary>
    public void WriteMemory(ulong address, ReadOnlySpan<byte> source)
    {
        if (!Ram.Contains(address, (ulong)source.Length)) throw new ArgumentOutOfRangeException(nameof(address), $"[0x{address:X}, +{source.Length}) is outside RAM");
        lock (SyncRoot) Ram.Write(address, source);
    }

    // ---------------- Interrupt messages ----------------

    /// <summary>
    /// A message (MSI / MSI-X) written by <paramref name="source"/>: a 4-byte memory write of
    /// <paramref name="data"/> to <paramref name="address"/>. It needs Bus Master Enable; if it
    /// lands in the MSI window it becomes an interrupt event, otherwise it is an ordinary DMA
    /// write through the function's DMA port (and so through the remapping unit).
    /// </summary>
    public void SendMessage(PciFunction source, InterruptKind kind, ulong address, uint data, uint vector)
    {
        if (!source.BusMasterEnabled) { source.Dma.NoteBlockedMessage(address, kind, vector); return; }
        if (address >= MsiWindowBase && address < MsiWindowBase + MsiWindowSize)
        {
            Interrupts.Publish(source.Rid, kind, address, data, vector);
            return;
        }
        Span<byte> bytes = stackalloc byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(bytes, data);
        source.Dma.WriteMessage(address, bytes, kind, vector);
    }

    // ---------------- Reset ----------------

    /// <summary>Cold reset: every function back to power-on state, VFs gone, RAM zeroed, the
    /// remapping unit reset, and firmware enumeration run again if enabled.</summary>
    public void Reset()
    {
        lock (SyncRoot)
        {
            foreach (var pf in _built.Pfs) pf.FunctionLevelReset();
            foreach (var b in _built.Bridges) b.DisconnectAll();
            BuildTopology();
            Ram.Clear();
            PlatformReset?.Invoke();
            if (Events.Wants(EventKind.Lifecycle)) Events.Publish(new LifecycleEvent(0, LifecycleChange.PlatformReset, "machine"));
            if (Options.FirmwareEnumeration) Firmware.Enumerate(this);
        }
    }

    internal static ulong ReadLe(ReadOnlySpan<byte> s) => s.Length switch
    {
        1 => s[0],
        2 => System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(s),
        4 => System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(s),
        _ => System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(s),
    };

    internal static void WriteLe(Span<byte> s, ulong v)
    {
        for (int i = 0; i < s.Length; i++) s[i] = (byte)(v >> (8 * i));
    }

    /// <inheritdoc/>
    public void Dispose() => Ram.Dispose();
}
