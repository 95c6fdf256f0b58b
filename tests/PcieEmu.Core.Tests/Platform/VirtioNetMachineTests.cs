using System.Text;
using PcieEmu.Core.AddressSpace;
using PcieEmu.Core.Config;
using PcieEmu.Core.Devices;
using PcieEmu.Core.Devices.VirtioNet;
using PcieEmu.Core.Platform;
using PcieEmu.Core.Tests.Config;
using PcieEmu.Core.Tests.Devices.VirtioNet;
using PcieEmu.Core.Topology;
using static PcieEmu.Core.Devices.VirtioNet.VirtioRegs;

namespace PcieEmu.Core.Tests.Platform;

/// <summary>Issue 13: "virtio-net" is a registered device type; the issue's example machine (an 82576 and a
/// virtio-net on a second root port) is built from its description, firmware places the virtio BARs, and a
/// driver reaches the device through config routing and MMIO.</summary>
public class VirtioNetMachineTests
{
    /// <summary>The issue's example: an 82576, and a virtio-net on a second root port.</summary>
    internal const string IgbAndVirtio = """
        { "rootPorts": [
            { "device": { "type": "intel-82576" } },
            { "device": { "type": "virtio-net", "mac": "02:00:00:00:77:01" } } ] }
        """;

    internal static Machine Build(string json) =>
        TestMachine.Create(new MachineOptions { Description = MachineDescription.Parse(json) });

    internal static VirtioNetFunction Virtio(Machine m, int index = 0) =>
        m.Devices.Select(d => d.Device).OfType<VirtioNetDevice>().ElementAt(index).Function;

    [Fact]
    public void VirtioNetIsARegisteredTypeWithCamelCaseOptions()
    {
        var t = DeviceRegistry.Default.Get("virtio-net", "x");
        Assert.Equal(typeof(VirtioNetOptions), t.OptionsType);
        Assert.Equal(["mac", "queuePairs", "features", "maxQueueSize"], t.OptionKeys);
        var d = MachineDescription.Parse("""{ "rootPorts": [ { "device": { "type": "virtio-net", "queuePairs": 4, "maxQueueSize": 1024 } } ] }""");
        Assert.Equal(new VirtioNetOptions { QueuePairs = 4, MaxQueueSize = 1024 }, d.RootPorts[0].Device!.Options);
    }

    [Fact]
    public void TheIssueExampleBuildsWithVirtioBehindTheSecondRootPort()
    {
        using var m = Build(IgbAndVirtio);
        var dev = Virtio(m);
        Assert.Equal("dev1.PF0", dev.Name);
        Assert.Equal([0x0008, 0x0010], m.RootPorts.Select(p => (int)p.Rid));
        var port = m.RootPorts[1];
        Assert.Same(port, dev.Port);
        Assert.Equal(port.SecondaryBus, dev.Rid >> 8);
        Assert.Equal(0, dev.Rid & 0xFF);
        // Config routing: the host reads the IDs through both root ports.
        Assert.Equal(0x1041_1AF4u, m.Read(dev.Rid, 0));
        Assert.Equal(0x0200_0001u, m.Read(dev.Rid, 8));            // class 020000, revision 1
        Assert.Equal(0x1100_1AF4u, m.Read(dev.Rid, 0x2C));         // subsystem
        Assert.Equal(CompletionStatus.UnsupportedRequest, m.ReadConfig((ushort)(dev.Rid | 0x08), 0, 4).Status);   // device 1 on a link

        // Firmware: BAR1 (32-bit, 4 KiB) in the root port's memory window, BAR4 (64-bit prefetchable, 16 KiB) in its
        // prefetchable window; both naturally aligned and enabled (Memory Space, Bus Master).
        var bar1 = dev.BarWindow(dev.Bars.Single(b => b.Index == VirtioNetFunction.MsixBar));
        var bar4 = dev.BarWindow(dev.Bars.Single(b => b.Index == VirtioNetFunction.VirtioBar));
        Assert.Equal((0x1000ul, 0x4000ul), (bar1.Size, bar4.Size));
        Assert.Equal(0ul, bar1.Base % 0x1000);
        Assert.Equal(0ul, bar4.Base % 0x4000);
        var (mb, ml) = port.MemoryWindow;
        var (pb, pl) = port.PrefetchableWindow;
        Assert.True(bar1.Base >= mb && bar1.Base + 0xFFF <= ml, $"BAR1 0x{bar1.Base:X} outside [0x{mb:X}, 0x{ml:X}]");
        Assert.True(bar4.Base >= pb && bar4.Base + 0x3FFF <= pl, $"BAR4 0x{bar4.Base:X} outside [0x{pb:X}, 0x{pl:X}]");
        Assert.Equal(0x0u, m.Read(dev.Rid, 0x10 + 4 * 1) & 0xF);        // BAR1: memory, 32-bit, not prefetchable
        Assert.Equal(0xCu, m.Read(dev.Rid, 0x10 + 4 * 4) & 0xF);        // BAR4: memory, 64-bit, prefetchable
        Assert.Equal((uint)(bar4.Base >> 32), m.Read(dev.Rid, 0x10 + 4 * 5));
        Assert.Equal(0x6u, m.Read(dev.Rid, 4, 2) & 0x6);
        // The 82576's port has no prefetchable BARs: its prefetchable window stays closed.
        Assert.True(m.RootPorts[0].PrefetchableWindow.Base > m.RootPorts[0].PrefetchableWindow.Limit);

        // MMIO through the machine: common config's num_queues and device config's MAC.
        Assert.Equal(3ul, m.ReadMmio(bar4.Base + VirtioNetFunction.CommonOffset + NumQueues, 2).Value);
        var mac = new byte[6];
        for (int i = 0; i < 6; i++) mac[i] = (byte)m.ReadMmio(bar4.Base + VirtioNetFunction.DeviceOffset + (ulong)i, 1).Value;
        Assert.Equal("02:00:00:00:77:01", Machine.FormatMac(mac));

        // Ethernet ports: the 82576 has 0 and 1, virtio-net 2; the snapshot names the device generically.
        Assert.Equal([0, 1, 2], m.EthernetPorts.Select(p => p.Number));
        Assert.Same(dev, m.EthernetPorts[2].Function);
        var snap = m.SnapshotTopology().Devices[1];
        Assert.Equal(("virtio-net", "rootPorts[1].device", port.Rid), (snap.Type, snap.Path, snap.PortRid));
        Assert.Equal(["02:00:00:00:77:01"], snap.EthernetPorts.Select(e => e.Mac));
        Assert.Equal("Red Hat, Inc. Virtio 1.0 network device", dev.Description);
    }

    [Fact]
    public void ADriverBringsTheDeviceUpThroughConfigRoutingAndMmioAndExchangesFrames()
    {
        using var m = Build(IgbAndVirtio);
        using var d = new VirtioTestDriver(m, Virtio(m));
        d.BringUp(VirtioNetDataPathTests.Std);
        Assert.True(d.Dev.Live);
        var rx = d.Queues[0];
        var tx = d.Queues[1];
        d.PostRx(rx, 2);
        var frame = VirtioTestDriver.Frame(VirtioTestDriver.Mac(9), VirtioTestDriver.Mac(1));
        d.Send(tx, frame);
        var sent = Assert.Single(d.Sent);
        Assert.Equal(2, sent.Port);
        Assert.Equal(frame, sent.Data);
        var incoming = VirtioTestDriver.Frame(VirtioTestDriver.Mac(1), VirtioTestDriver.Mac(9), 90);
        Assert.Equal(1, m.EthernetPorts[2].InjectFrame(incoming));
        var got = Assert.Single(rx.Used());
        Assert.Equal(incoming, d.ReadRam(got.Cookie + NetHdrSize, incoming.Length));
        Assert.Contains(1, d.Vectors());
        // A frame any Ethernet port carries but over the device's 1518 bytes: dropped, counted, buffers untouched.
        Assert.Equal(0, m.EthernetPorts[2].InjectFrame(VirtioTestDriver.Frame(VirtioTestDriver.Mac(1), VirtioTestDriver.Mac(9), 1519)));
        Assert.Equal(1, d.Dev.RxDropped);
        Assert.Empty(rx.Used());
        Assert.Equal(1, m.EthernetPorts[2].InjectFrame(VirtioTestDriver.Frame(VirtioTestDriver.Mac(1), VirtioTestDriver.Mac(9), 1518)));
    }

    [Fact]
    public void LspciDecodesTheVirtioMachineCleanly()
    {
        using var m = Build(IgbAndVirtio);
        var sb = new StringBuilder();
        foreach (var f in m.EnumerateFunctions())
        {
            var bytes = new byte[ConfigSpace.Size];
            for (int off = 0; off < ConfigSpace.Size; off += 4) BitConverter.TryWriteBytes(bytes.AsSpan(off), m.Read(f.Rid, off));
            LspciDump.Append(sb, f.Rid, bytes);
        }
        string text = LspciDecodeTests.RunLspciClean(sb.ToString());
        Assert.Contains("Virtio", text);
        Assert.Contains("Region 4: Memory at", text);
        Assert.Contains("64-bit, prefetchable", text);
    }

    public static TheoryData<string, string, string> Invalid => new()
    {
        { """{ "rootPorts": [ { "device": { "type": "virtio-net", "queuePairs": 0 } } ] }""", "rootPorts[0].device.queuePairs", "QueuePairs must be 1..16" },
        { """{ "rootPorts": [ { "device": { "type": "virtio-net", "mac": "03:00:00:00:00:01" } } ] }""", "rootPorts[0].device.mac", "unicast" },
        { """{ "rootPorts": [ { "device": { "type": "virtio-net", "maxQueueSize": 100 } } ] }""", "rootPorts[0].device.maxQueueSize", "power of two" },
        { """{ "rootPorts": [ { "device": { "type": "virtio-net", "features": 1 } } ] }""", "rootPorts[0].device.features", "VERSION_1" },
        { """{ "rootPorts": [ { "device": { "type": "virtio-net", "portNumber": 3 } } ] }""", "rootPorts[0].device", "unknown key 'portNumber' for type 'virtio-net'" },
        { """{ "rootPorts": [ { "device": { "type": "virtio-net" } }, { "device": { "type": "virtio-net" } } ] }""", "rootPorts[1].device", "MAC 02:00:00:00:77:01 of Ethernet port 1 is already used by rootPorts[0].device" },
    };

    [Theory]
    [MemberData(nameof(Invalid))]
    public void InvalidVirtioDescriptionsAreRefusedNamingTheEntry(string json, string entry, string problem)
    {
        var e = Assert.Throws<MachineDescriptionException>(() => { using var m = Build(json); });
        Assert.Equal(entry, e.Entry);
        Assert.Contains(problem, e.Problem, StringComparison.Ordinal);
    }
}
