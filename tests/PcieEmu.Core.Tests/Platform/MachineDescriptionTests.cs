using System.Text;
using PcieEmu.Core.AddressSpace;
using PcieEmu.Core.Config;
using PcieEmu.Core.Config.Capabilities;
using PcieEmu.Core.Devices;
using PcieEmu.Core.Devices.Igb;
using PcieEmu.Core.Platform;
using PcieEmu.Core.Tests.Config;
using PcieEmu.Core.Topology;

namespace PcieEmu.Core.Tests.Platform;

/// <summary>Issue 13: machines built from descriptions (root ports, switches, devices by type), firmware
/// enumeration of any topology, and every invalid description refused naming its entry.</summary>
public class MachineDescriptionTests
{
    /// <summary>Two 82576 behind a switch with two downstream ports (the second with its own MAC).</summary>
    internal const string TwoNicsBehindSwitch = """
        { "rootPorts": [
            { "switch": { "downstreamPorts": [
                { "device": { "type": "intel-82576" } },
                { "device": { "type": "intel-82576", "totalVfs": 4, "mac": "02:00:00:00:10:00" } } ] } } ] }
        """;

    private static Machine Build(string json, MachineOptions? options = null) =>
        TestMachine.Create((options ?? new MachineOptions()) with { Description = MachineDescription.Parse(json, options?.Devices) });

    private static byte[] ConfigOf(Machine m, ushort rid)
    {
        var bytes = new byte[ConfigSpace.Size];
        for (int off = 0; off < ConfigSpace.Size; off += 4)
            BitConverter.TryWriteBytes(bytes.AsSpan(off), m.Read(rid, off));
        return bytes;
    }

    [Fact]
    public void TheEmbeddedDefaultIsTodaysMachineByteForByte()
    {
        var d = MachineDescription.Default;
        var port = Assert.Single(d.RootPorts);
        Assert.Equal(1, port.Slot);
        Assert.Equal(IgbDevice.TypeName, port.Device!.Type);
        Assert.Equal(new IgbOptions { Mac = "00:1b:21:2b:46:e0" }, port.Device.Options);
        Assert.Equal(new IgbOptions().SerialNumber, ((IgbOptions)port.Device.Options!).EffectiveSerialNumber);

        // The parsed JSON text and the options default build the same bytes, BDFs and windows.
        using var implicitDefault = TestMachine.Create();
        using var parsed = Build(MachineDescription.DefaultJson);
        using var programmatic = TestMachine.Create(new MachineOptions { Description = MachineDescription.WithDevice(IgbDevice.TypeName) });
        foreach (var m in new[] { parsed, programmatic })
        {
            Assert.Equal(implicitDefault.EnumerateFunctions().Select(f => f.Rid), m.EnumerateFunctions().Select(f => f.Rid));
            foreach (var f in implicitDefault.EnumerateFunctions()) Assert.Equal(ConfigOf(implicitDefault, f.Rid), ConfigOf(m, f.Rid));
        }
        Assert.Equal([0x0000, 0x0008, 0x0100, 0x0101], implicitDefault.EnumerateFunctions().Select(f => (int)f.Rid));
        Assert.Equal([0, 1], implicitDefault.EthernetPorts.Select(p => p.Number));
        var snap = implicitDefault.SnapshotTopology();
        var dev = Assert.Single(snap.Devices);
        Assert.Equal(("intel-82576", "rootPorts[0].device", (ushort)0x0008, (ushort)0x0008), (dev.Type, dev.Path, dev.PortRid, dev.RootPortRid));
        Assert.Equal(["00:1b:21:2b:46:e0", "00:1b:21:2b:46:e1"], dev.EthernetPorts.Select(e => e.Mac));
    }

    [Fact]
    public void TwoNicsBehindASwitchGetBusesAndNestedWindows()
    {
        using var m = Build(TwoNicsBehindSwitch);
        // Buses depth first: root port 1, switch internal bus 2, first link 3 (its VFs reach bus 4 without ARI), second link 5 (VFs to 6).
        var ports = m.SnapshotTopology().Ports;
        Assert.Equal(
            [("root-port1", PortKind.RootPort, 0x0008, 0, 1, 6), ("switch0-upstream", PortKind.SwitchUpstream, 0x0100, 1, 2, 6),
             ("switch0-downstream0", PortKind.SwitchDownstream, 0x0200, 2, 3, 4), ("switch0-downstream1", PortKind.SwitchDownstream, 0x0208, 2, 5, 6)],
            ports.Select(p => (p.Name, p.Kind, (int)p.Rid, (int)p.PrimaryBus, (int)p.SecondaryBus, (int)p.SubordinateBus)));
        Assert.Equal([true, false, true, true], ports.Select(p => p.AriForwardingSupported));
        Assert.Equal([0x0000, 0x0008, 0x0100, 0x0200, 0x0208, 0x0300, 0x0301, 0x0500, 0x0501], m.EnumerateFunctions().Select(f => (int)f.Rid));
        Assert.Equal(0x8747_10B5u, m.Read(0x0100, 0));                       // PLX-style switch IDs
        Assert.Equal(5u, m.Read(0x0100, 0x68 + 2, 2) >> 4 & 0xF);              // PCIe capability: upstream port
        Assert.Equal(6u, m.Read(0x0200, 0x68 + 2, 2) >> 4 & 0xF);              // downstream port

        // Every BAR and VF aperture sits in its port's windows, nested up to the root port, without overlap.
        var bridges = m.Bridges;
        var taken = new List<(ulong Base, ulong End)>();
        foreach (var d in m.Devices)
            foreach (var f in d.Device.Functions.Cast<PhysicalFunction>())
            {
                var regions = f.Bars.Where(b => !b.IsIo).Select(b => f.BarWindow(b))
                    .Concat(f.Sriov!.Parameters.VfBars.Select(b => (f.Sriov.VfBarBase(b), f.Sriov.PerVfBarSize(b) * f.Sriov.Parameters.TotalVfs)));
                foreach (var (b, size) in regions)
                {
                    Assert.NotEqual(0ul, b);
                    Assert.Equal(0ul, b % size);   // naturally aligned
                    for (PciBridge? p = d.Port; p != null; p = Parent(p))
                    {
                        var (wb, wl) = p.MemoryWindow;
                        Assert.True(b >= wb && b + size - 1 <= wl, $"{f.Name} [0x{b:X}, +0x{size:X}) outside {p.Name}'s window [0x{wb:X}, 0x{wl:X}]");
                    }
                    Assert.DoesNotContain(taken, t => b < t.End && t.Base < b + size);
                    taken.Add((b, b + size));
                }
            }
        Assert.Equal(0xE000_0000ul, m.RootPort.MemoryWindow.Base);
        // No prefetchable BARs anywhere: every bridge's prefetchable window is closed (not left at its reset 0/0, which opens [0, 1 MiB)).
        Assert.All(bridges, p => Assert.True(p.PrefetchableWindow.Base > p.PrefetchableWindow.Limit, p.Name));
        // The two downstream ports' windows do not overlap.
        var (a0, a1) = bridges[2].MemoryWindow;
        var (b0, b1) = bridges[3].MemoryWindow;
        Assert.True(a1 < b0 || b1 < a0);

        // MMIO reaches both NICs through the switch; config reaches a VF on the bus below.
        var pf2 = (IgbPhysicalFunction)m.PhysicalFunctions[2];
        Assert.Equal("dev1.PF0", pf2.Name);
        ulong bar0 = pf2.BarWindow(pf2.Bars[0]).Base;
        Assert.Equal(CompletionStatus.Successful, m.ReadMmio(bar0 + 0x8, 4).Status);   // STATUS
        m.EnableVfs(0x0500, 2);
        Assert.Equal(0xFFFF_FFFFu, m.Read(pf2.VfRid(1), 0));   // a VF's own Vendor/Device ID read FFFFh
        Assert.Equal(0x0600, pf2.VfRid(0) & 0xFF00);

        // Ethernet ports numbered in description order, MACs distinct.
        Assert.Equal([0, 1, 2, 3], m.EthernetPorts.Select(p => p.Number));
        Assert.Same(pf2, m.EthernetPorts[2].Function);
        Assert.Equal(4, m.EthernetPorts.Select(p => Convert.ToHexString(p.MacAddress)).Distinct().Count());
        Assert.Equal("02:00:00:00:10:00", Machine.FormatMac(m.EthernetPorts[2].MacAddress));
    }

    private static PciBridge? Parent(PciBridge p) => p switch
    {
        SwitchDownstreamPort d => d.Upstream,
        SwitchUpstreamPort u => u.Parent,
        _ => null,
    };

    [Fact]
    public void ConfigRoutingThroughTheSwitchFollowsTheSpec()
    {
        using var m = Build(TwoNicsBehindSwitch);
        // The switch's internal bus is not a link: downstream ports answer at devices 0 and 1, nothing at 2.
        Assert.Equal(CompletionStatus.UnsupportedRequest, m.ReadConfig(0x0210, 0, 4).Status);
        // A downstream port's link: device 0 only, unless ARI Forwarding is enabled there.
        Assert.Equal(CompletionStatus.UnsupportedRequest, m.ReadConfig(0x0308, 0, 4).Status);
        Assert.Equal(0u, m.Bridges[2].Config.ReadRaw(ConfigRegs.SecondaryStatus, 2) & ConfigRegs.StatusReceivedMasterAbort);
        // Device 0 function 2 is forwarded onto the link and nobody answers: the downstream port (only) records the UR.
        Assert.Equal(CompletionStatus.UnsupportedRequest, m.ReadConfig(0x0302, 0, 4).Status);
        Assert.NotEqual(0u, m.Bridges[2].Config.ReadRaw(ConfigRegs.SecondaryStatus, 2) & ConfigRegs.StatusReceivedMasterAbort);
        Assert.Equal(0u, m.Bridges[0].Config.ReadRaw(ConfigRegs.SecondaryStatus, 2) & ConfigRegs.StatusReceivedMasterAbort);
        m.Write(0x0200, 0x68 + PcieCapability.DevCtl2, 2, PcieCapability.AriForwarding);
        Assert.True(m.Bridges[2].AriForwardingEnabled);
        // The upstream port has no ARI Forwarding Enable to set.
        m.Write(0x0100, 0x68 + PcieCapability.DevCtl2, 2, PcieCapability.AriForwarding);
        Assert.False(m.Bridges[1].AriForwardingEnabled);
        // ACS on downstream ports only.
        Assert.NotNull(m.Bridges[2].Find<AcsCapability>());
        Assert.Null(m.Bridges[1].Find<AcsCapability>());
        // Secondary Bus Reset on the upstream port's bridge control resets the NICs below both downstream ports.
        m.EnableVfs(0x0300, 1);
        Assert.Single(m.PhysicalFunctions[0].VirtualFunctions);
        m.Write(0x0100, ConfigRegs.BridgeControl, 2, ConfigRegs.BridgeControlSecondaryBusReset);
        Assert.Empty(m.PhysicalFunctions[0].VirtualFunctions);
    }

    [Fact]
    public void PlatformResetRebuildsTheDescribedMachineAndEnumeratesItAgain()
    {
        using var m = Build(TwoNicsBehindSwitch);
        var before = m.SnapshotTopology();
        var bars = m.SnapshotFunctions();
        m.EnableVfs(0x0500, 2);
        m.Write(0x0200, ConfigRegs.PrimaryBus, 4, 0);   // software renumbers a port
        var oldPort = m.EthernetPorts[2];
        m.Reset();
        Assert.Equal(before, m.SnapshotTopology(), new TopologyComparer());
        Assert.Equal(bars.Select(f => (f.Rid, f.Name, string.Join(",", f.Bars))), m.SnapshotFunctions().Select(f => (f.Rid, f.Name, string.Join(",", f.Bars))));
        Assert.Empty(m.PhysicalFunctions[2].VirtualFunctions);
        Assert.NotSame(oldPort, m.EthernetPorts[2]);
        Assert.Equal(2, m.EthernetPorts[2].Number);
    }

    private sealed class TopologyComparer : IEqualityComparer<TopologySnapshot>
    {
        public bool Equals(TopologySnapshot? x, TopologySnapshot? y) => x!.Ports.SequenceEqual(y!.Ports)
            && x.Devices.Select(Key).SequenceEqual(y.Devices.Select(Key));
        public int GetHashCode(TopologySnapshot obj) => obj.Ports.Count;
        private static string Key(DeviceSnapshot d) => $"{d.Type} {d.Path} {d.PortRid} {string.Join(",", d.FunctionRids)} {string.Join(",", d.EthernetPorts)}";
    }

    [Fact]
    public void LspciDecodesEverySwitchMachineFunctionCleanly()
    {
        using var m = Build(TwoNicsBehindSwitch);
        m.EnableVfs(0x0500, 2);
        var sb = new StringBuilder();
        foreach (var f in m.EnumerateFunctions()) LspciDump.Append(sb, f.Rid, ConfigOf(m, f.Rid));
        string text = LspciDecodeTests.RunLspciClean(sb.ToString());
        Assert.Contains("Express (v2) Upstream Port", text);
        Assert.Contains("Express (v2) Downstream Port (Slot+)", text);
        Assert.Contains("Bus: primary=01, secondary=02, subordinate=06", text);
        Assert.Contains("Bus: primary=02, secondary=03, subordinate=04", text);
        Assert.Contains("Bus: primary=02, secondary=05, subordinate=06", text);
        Assert.Contains("Access Control Services", text);
        Assert.Contains("ARIFwd+", text);
        Assert.Contains("05:00.0 Ethernet controller", text);
        Assert.Contains("06:", text);
    }

    [Fact]
    public void ADeviceTypeRegistersInOneLineAndItsPrefetchableBarGetsAPrefetchableWindow()
    {
        var registry = DeviceRegistry.CreateBuiltIn().Register<TestEndpointOptions>("test-endpoint", TestEndpoint.Create);
        using var m = Build("""
            { "rootPorts": [
                { "device": { "type": "intel-82576" } },
                { "slot": 4, "device": { "type": "test-endpoint", "barSize": 65536 } },
                { "switch": { "downstreamPorts": [ { "slot": 3, "device": { "type": "test-endpoint" } }, { } ] } } ] }
            """, new MachineOptions { Devices = registry });
        Assert.Equal([0x0008, 0x0020, 0x0010], m.RootPorts.Select(p => (int)p.Rid));   // slots 1, 4, then the lowest free (2)
        var ep = m.Devices[1].Device.Functions[0];
        Assert.Equal(0x0300, ep.Rid);
        var (b, size) = ep.BarWindow(ep.Bars[0]);
        Assert.Equal(0x10000ul, size);
        var (pb, pl) = m.RootPorts[1].PrefetchableWindow;
        Assert.True(b >= pb && b + size - 1 <= pl, $"prefetchable BAR at 0x{b:X} outside [0x{pb:X}, 0x{pl:X}]");
        Assert.True(m.RootPorts[1].MemoryWindow.Base > m.RootPorts[1].MemoryWindow.Limit, "no non-prefetchable resources: window closed");
        Assert.Equal(CompletionStatus.Successful, m.ReadMmio(b + 8, 4).Status);
        // Behind the switch: downstream port 3 holds it, the empty port 0... shows no presence.
        var dps = m.Bridges.OfType<SwitchDownstreamPort>().ToList();
        Assert.Equal([3, 0], dps.Select(d => (int)d.DeviceNumber));
        Assert.Equal(0x0040u, m.Read(dps[0].Rid, 0x68 + PcieCapability.SlotSta, 2) & 0x40);
        Assert.Equal(0u, m.Read(dps[1].Rid, 0x68 + PcieCapability.SlotSta, 2) & 0x40);
        // The empty port's windows are all closed; so is the I/O window of a port with no I/O BAR below it.
        foreach (var (wb, wl) in new[] { dps[1].MemoryWindow, dps[1].PrefetchableWindow, dps[1].IoWindow, m.RootPorts[1].IoWindow, dps[0].MemoryWindow })
            Assert.True(wb > wl, $"window [0x{wb:X}, 0x{wl:X}] open");
        var inner = m.Devices[2].Device.Functions[0];
        Assert.Equal(CompletionStatus.Successful, m.ReadMmio(inner.BarWindow(inner.Bars[0]).Base + 4, 4).Status);
        Assert.Contains("test-endpoint", registry.Names);
        Assert.DoesNotContain("test-endpoint", DeviceRegistry.Default.Names);
        Assert.Throws<InvalidOperationException>(() => DeviceRegistry.Default.Register<TestEndpointOptions>("x", TestEndpoint.Create));
    }

    public static TheoryData<string, string, string> Invalid => new()
    {
        { "not json", "(description)", "not valid JSON" },
        { """{ "rootPorts": [] }""", "rootPorts", "at least one root port" },
        { """{ "rootports": [] }""", "(description)", "unknown key 'rootports'" },
        { """{ "rootPorts": [ { "device": { "type": "intel-82599" } } ] }""", "rootPorts[0].device.type", "unknown device type 'intel-82599' (known: intel-82576" },
        { """{ "rootPorts": [ { "device": { } } ] }""", "rootPorts[0].device", "needs \"type\"" },
        { """{ "rootPorts": [ { "device": { "type": "intel-82576", "totlaVfs": 4 } } ] }""", "rootPorts[0].device", "unknown key 'totlaVfs' for type 'intel-82576'" },
        { """{ "rootPorts": [ { "device": { "type": "intel-82576", "totalVfs": "many" } } ] }""", "rootPorts[0].device.totalVfs", "bad value" },
        { """{ "rootPorts": [ { "device": { "type": "intel-82576", "totalVfs": 0 } } ] }""", "rootPorts[0].device.totalVfs", "TotalVfs must be in 1..128" },
        { """{ "rootPorts": [ { "device": { "type": "intel-82576", "mac": "01:00:00:00:00:01" } } ] }""", "rootPorts[0].device.mac", "unicast" },
        { """{ "rootPorts": [ { "slot": 2 }, { "slot": 2 } ] }""", "rootPorts[1].slot", "duplicate slot 2: rootPorts[0] has it" },
        { """{ "rootPorts": [ { "slot": 0 } ] }""", "rootPorts[0].slot", "host bridge" },
        { """{ "rootPorts": [ { "slot": "one" } ] }""", "rootPorts[0].slot", "must be an integer" },
        { """{ "rootPorts": [ { "slot": 1, "bus": 3 } ] }""", "rootPorts[0]", "unknown key 'bus'" },
        { """{ "rootPorts": [ { "device": { "type": "intel-82576" }, "switch": { "downstreamPorts": [ { } ] } } ] }""", "rootPorts[0]", "both \"device\" and \"switch\"" },
        { """{ "rootPorts": [ { "switch": { "downstreamPorts": [] } } ] }""", "rootPorts[0].switch.downstreamPorts", "needs 1..32 downstream ports" },
        { """{ "rootPorts": [ { "switch": { "downstreamPorts": [ { "slot": 5 }, { "slot": 5 } ] } } ] }""", "rootPorts[0].switch.downstreamPorts[1].slot", "duplicate slot 5" },
        { """{ "rootPorts": [ { "switch": { "ports": [] } } ] }""", "rootPorts[0].switch", "unknown key 'ports'" },
        { """{ "rootPorts": [ { "device": { "type": "intel-82576" } }, { "device": { "type": "intel-82576" } } ] }""", "rootPorts[1].device", "MAC 00:1b:21:2b:46:e0 of Ethernet port 2 is already used by rootPorts[0].device" },
        { """{ "rootPorts": [ { "device": { "type": "intel-82576", "totalVfs": 128, "firstVfOffset": 65535 } } ] }""", "rootPorts[0].device", "bus numbers do not fit" },
    };

    [Theory]
    [MemberData(nameof(Invalid))]
    public void InvalidDescriptionsAreRefusedNamingTheEntry(string json, string entry, string problem)
    {
        var e = Assert.Throws<MachineDescriptionException>(() => { using var m = Build(json); });
        Assert.Equal(entry, e.Entry);
        Assert.Contains(problem, e.Message);
        Assert.StartsWith(entry + ": ", e.Message);
    }

    [Fact]
    public void BarSpaceExhaustedNamesTheRootPortThatDoesNotFit()
    {
        var e = Assert.Throws<MachineDescriptionException>(() =>
        {
            using var m = Build("""
                { "rootPorts": [ { "device": { "type": "intel-82576" } },
                                 { "device": { "type": "intel-82576", "mac": "02:00:00:00:20:00" } } ] }
                """, new MachineOptions { MmioWindowBase = 0xFD00_0000 });
        });
        Assert.Equal("rootPorts[1]", e.Entry);
        Assert.Contains("BAR space exhausted", e.Message);
        Assert.Contains("IOMMU block at 0xFED90000", e.Message);
    }

    [Fact]
    public void TooManyBusesNamesThePortThatDoesNotFit()
    {
        // Nested switches: each level takes two buses (the link and the internal bus); 130 levels need more than 255.
        var port = new PortDescription { Device = new DeviceDescription(IgbDevice.TypeName, new IgbOptions { TotalVfs = 1, FirstVfOffset = 1, FirstVfOffsetAri = 1, VfStride = 1 }) };
        for (int i = 0; i < 130; i++) port = new PortDescription { Switch = new SwitchDescription { DownstreamPorts = [port] } };
        var e = Assert.Throws<MachineDescriptionException>(() =>
        {
            using var m = TestMachine.Create(new MachineOptions { Description = new MachineDescription { RootPorts = [port] } });
        });
        Assert.Contains("bus numbers do not fit", e.Message);
        Assert.StartsWith("rootPorts[0].switch.downstreamPorts[0]", e.Entry);
    }

    [Fact]
    public void InjectFrameNamesBadPortAndFrame()
    {
        using var m = TestMachine.Create();
        Assert.Equal("port", Assert.Throws<ArgumentException>(() => m.InjectFrame(2, new byte[60])).ParamName);
        Assert.Equal("frame", Assert.Throws<ArgumentException>(() => m.InjectFrame(0, new byte[4])).ParamName);
        Assert.Equal(0, m.InjectFrame(1, new byte[60]));   // receiver off: dropped, counted by the NIC
    }
}

/// <summary>Options of a minimal test device: one 64-bit prefetchable BAR.</summary>
public sealed record TestEndpointOptions : IDeviceOptions
{
    /// <summary>BAR 0 size (power of two, at least 4 KiB).</summary>
    public ulong BarSize { get; init; } = 0x4000;

    /// <inheritdoc/>
    public void Validate()
    {
        if (BarSize < 0x1000 || (BarSize & (BarSize - 1)) != 0) throw new ArgumentException("BarSize must be a power of two of at least 4096", nameof(BarSize));
    }
}

/// <summary>A minimal PCIe endpoint (no SR-IOV, no Ethernet port) that plugs in through the registry.</summary>
internal sealed class TestEndpoint : PhysicalFunction, IPcieDevice
{
    private readonly RegisterFileStub _bar0 = new();

    private TestEndpoint(DeviceContext c, TestEndpointOptions o) : base(c.Machine, c.Port, 0, c.NamePrefix + "EP")
    {
        Bars = [new BarDefinition(0, BarKind.Memory64, o.BarSize, Prefetchable: true)];
        Header.InstallType0(Config, new HeaderIds(0x1B36, 0x0005, 0x01, 0xFF0000), multiFunction: false, interruptPin: 0, Bars);
        Capabilities = new CapabilityBuilder()
            .Add(new PcieCapability(new PcieCapabilityValues { PortType = PciePortType.Endpoint, LinkCap = 0x0001_0011, LinkSta = 0x0011 }), 0x40)
            .Build(Config);
        Config.CaptureResetImage();
        WireCapabilities();
    }

    public static IPcieDevice Create(DeviceContext c, TestEndpointOptions o) => new TestEndpoint(c, o);

    public string Type => "test-endpoint";
    public string Model => "test endpoint";
    public string ShortModel => "test";
    public IReadOnlyList<PciFunction> Functions => [this];
    public IReadOnlyList<IEthernetPort> EthernetPorts => [];
    public override IMmioRegion GetBarRegion(int index) => _bar0;
    protected override VirtualFunction CreateVf(int index) => throw new NotSupportedException();

    private sealed class RegisterFileStub : IMmioRegion
    {
        public ulong Read(ulong offset, int width) => 0x5A;
        public void Write(ulong offset, int width, ulong value) { }
    }
}
