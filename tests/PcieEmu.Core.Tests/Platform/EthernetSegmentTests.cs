using System.Buffers.Binary;
using PcieEmu.Core.Devices;
using PcieEmu.Core.Devices.Igb;
using PcieEmu.Core.Devices.VirtioNet;
using PcieEmu.Core.Events;
using PcieEmu.Core.Platform;
using PcieEmu.Core.Tests.Devices.Igb;
using PcieEmu.Core.Tests.Devices.VirtioNet;
using static PcieEmu.Core.Devices.VirtioNet.VirtioRegs;

namespace PcieEmu.Core.Tests.Platform;

/// <summary>Issue 13: ports joined on an L2 segment named in the description exchange frames; each frame
/// still shows on the machine's frame events (so on CaptureFrames and pcap) at both ends.</summary>
public class EthernetSegmentTests
{
    /// <summary>82576 port 0 and a virtio-net on one segment "lan0"; the 82576's port 1 unconnected.</summary>
    internal const string Lan = """
        { "rootPorts": [
            { "device": { "type": "intel-82576", "segment": ["lan0", null] } },
            { "device": { "type": "virtio-net", "segment": "lan0" } } ] }
        """;

    [Fact]
    public void AVirtioNetAndAn82576VfExchangeFramesOverASegment()
    {
        using var m = VirtioNetMachineTests.Build(Lan);
        var seg = Assert.Single(m.Segments);
        Assert.Equal("lan0", seg.Name);
        Assert.Equal([0, 2], seg.Ports.Select(p => p.Number));
        Assert.Equal(["lan0", null, "lan0"], m.SnapshotTopology().Devices.SelectMany(d => d.EthernetPorts).Select(e => e.Segment));

        // The 82576 with VMDq: VF0 owns MAC 02:00:00:00:10:00; the virtio driver brings its device up.
        using var rig = new NicRig(m, vfs: 1, ramStart: 0x80_0000, ownsMachine: false);
        rig.SetupVmdq(1);
        var vfTx = rig.VfTx(0);
        var vfRx = rig.VfRx(0);
        using var d = new VirtioTestDriver(m, VirtioNetMachineTests.Virtio(m));
        d.BringUp(VirtioNetDataPathTests.Std);
        var rx = d.Queues[0];
        var tx = d.Queues[1];
        d.PostRx(rx, 4);
        using var frames = m.Events.Subscribe(EventKinds.Frame);

        // virtio-net -> wire -> 82576 port 0 -> VF0's receive ring.
        byte[] vf = NicRig.Mac(0), virtio = VirtioTestDriver.Mac(1);
        var toVf = VirtioTestDriver.Frame(vf, virtio, 128);
        d.Send(tx, toVf);
        var desc = vfRx.Desc(0);
        Assert.Equal(0x3u, BinaryPrimitives.ReadUInt32LittleEndian(desc.AsSpan(8)) & 0x3);   // DD | EOP
        Assert.Equal(toVf, rig.ReadRam(vfRx.Buffers[0], toVf.Length));
        Assert.Equal(1u, rig.VfRead(0, IgbRegs.VfGprc));

        // VF0 -> 82576 port 0's wire -> virtio-net's receive queue (with its 12-byte header).
        var toVirtio = NicRig.Frame(virtio, vf, 96);
        rig.PostAdv(vfTx, toVirtio);
        var got = Assert.Single(rx.Used());
        Assert.Equal((uint)(NetHdrSize + toVirtio.Length), got.Len);
        Assert.Equal(toVirtio, d.ReadRam(got.Cookie + NetHdrSize, toVirtio.Length));
        Assert.Equal((1L, 1L), (d.Dev.TxFrames, d.Dev.RxFrames));
        Assert.Equal(2, seg.Frames);

        // Both frames leave one port and arrive at the other on the event path (what capture records).
        var seen = new List<FrameEvent>();
        while (frames.Reader.TryRead(out var e)) if (e is FrameEvent f) seen.Add(f);
        Assert.Equal(
            [(FrameDirection.ToWire, 2, 128), (FrameDirection.FromWire, 0, 128), (FrameDirection.ToWire, 0, 96), (FrameDirection.FromWire, 2, 96)],
            seen.Select(f => (f.Direction, f.Frame.Port, f.Frame.Data.Length)));
        // The 82576's port 1 is on no segment: frames it would see come only by InjectFrame.
        Assert.DoesNotContain(seen, f => f.Frame.Port == 1);
    }

    [Fact]
    public void TwoVirtioNetsOnOneSegmentAndASegmentSurvivesAPlatformReset()
    {
        using var m = VirtioNetMachineTests.Build("""
            { "rootPorts": [
                { "device": { "type": "virtio-net", "segment": "lan0" } },
                { "device": { "type": "virtio-net", "mac": "02:00:00:00:77:02", "segment": "lan0" } },
                { "device": { "type": "virtio-net", "mac": "02:00:00:00:77:03", "segment": "lan0" } } ] }
            """);
        var a = new VirtioTestDriver(m, VirtioNetMachineTests.Virtio(m, 0), allocBase: 0x10_0000);
        var b = new VirtioTestDriver(m, VirtioNetMachineTests.Virtio(m, 1), allocBase: 0x40_0000);
        var c = new VirtioTestDriver(m, VirtioNetMachineTests.Virtio(m, 2), allocBase: 0x70_0000);
        using (a) using (b) using (c)
        {
            foreach (var drv in new[] { a, b, c })
            {
                drv.BringUp(VirtioNetDataPathTests.Std);
                drv.PostRx(drv.Queues[0], 4);
            }
            // A broadcast reaches both others (a hub), not the sender.
            var bcast = VirtioTestDriver.Frame([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], VirtioTestDriver.Mac(1));
            a.Send(a.Queues[1], bcast);
            Assert.Empty(a.Queues[0].Used());
            Assert.Single(b.Queues[0].Used());
            Assert.Single(c.Queues[0].Used());
            // With promiscuous mode off (control queue), c filters a unicast to b: the segment counts the refusal.
            Assert.Equal(CtrlOk, VirtioNetDataPathTests.Ctrl(c, CtrlRx, CtrlRxPromisc, 0));
            a.Send(a.Queues[1], VirtioTestDriver.Frame(VirtioTestDriver.Mac(2), VirtioTestDriver.Mac(1)));
            Assert.Single(b.Queues[0].Used());
            Assert.Empty(c.Queues[0].Used());
            Assert.Equal(1, m.Segments[0].Dropped);
        }

        // A platform reset rebuilds the devices; the segment joins the new ones.
        var before = m.Segments[0];
        m.Reset();
        Assert.NotSame(before, m.Segments[0]);
        Assert.Equal(m.EthernetPorts, m.Segments[0].Ports);
    }

    public static TheoryData<string, string, string> Invalid => new()
    {
        { """{ "rootPorts": [ { "device": { "type": "virtio-net", "segment": "lan0" } } ] }""", "rootPorts[0].device.segment", "segment 'lan0' has no other port" },
        { """{ "rootPorts": [ { "device": { "type": "virtio-net", "segment": ["a", "b"] } } ] }""", "rootPorts[0].device.segment", "names 2 segments but the device has 1 Ethernet port(s)" },
        { """{ "rootPorts": [ { "device": { "type": "virtio-net", "segment": "" } } ] }""", "rootPorts[0].device.segment", "is not a segment name" },
        { """{ "rootPorts": [ { "device": { "type": "intel-82576", "segment": ["lan0", "bad name"] } } ] }""", "rootPorts[0].device.segment[1]", "is not a segment name" },
        { """{ "rootPorts": [ { "device": { "type": "virtio-net", "segment": 3 } } ] }""", "rootPorts[0].device.segment", "must be a segment name or an array" },
        { """{ "rootPorts": [ { "device": { "type": "intel-82576", "segment": [3] } } ] }""", "rootPorts[0].device.segment[0]", "must be a segment name or null" },
    };

    [Theory]
    [MemberData(nameof(Invalid))]
    public void BadSegmentsAreRefusedNamingTheEntry(string json, string entry, string problem)
    {
        var e = Assert.Throws<MachineDescriptionException>(() => { using var m = VirtioNetMachineTests.Build(json); });
        Assert.Equal(entry, e.Entry);
        Assert.Contains(problem, e.Problem, StringComparison.Ordinal);
    }
}
