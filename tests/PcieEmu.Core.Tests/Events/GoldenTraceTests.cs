using PcieEmu.Core.Events;
using PcieEmu.Core.Tests.Devices.Igb;
using static PcieEmu.Core.Devices.Igb.IgbRegs;

namespace PcieEmu.Core.Tests.Events;

public class GoldenTraceTests
{
    /// <summary>The scripted scenario of the golden trace: SR-IOV enable with 2 VFs, the PF driver's
    /// VMDq setup, a TX ring on VF0, an RX ring of 8 on VF1 with MSI-X, one frame VF0 → VF1.</summary>
    internal static List<MachineEvent> RunScenario(NicRig rig)
    {
        using var sub = rig.M.Events.Subscribe(EventKinds.All, capacity: 1 << 16);
        rig.EnableVfs(2);
        rig.SetupVmdq(2);
        var tx = rig.VfTx(0);
        rig.VfRx(1, count: 8);
        rig.EnableMsix(rig.VfRid(1), rig.VfBar3(1), 1);
        rig.VfWrite(1, Ivar0, 0x80);
        rig.VfWrite(1, Eims, 0x1);
        rig.PostAdv(tx, NicRig.Frame(NicRig.Mac(1), NicRig.Mac(0)));
        var list = new List<MachineEvent>();
        while (sub.Reader.TryRead(out var e)) list.Add(e);
        Assert.Equal(0, sub.Missed);
        return list;
    }

    /// <summary>A line without its timestamp (the only part that varies between runs).</summary>
    private static string Untimed(MachineEvent e) => TraceFormat.Line(e).Split(' ', 2)[1];

    [Fact]
    public void SriovEnableAndVfToVfFrameProduceTheGoldenTrace()
    {
        using var rig = new NicRig();
        var lines = RunScenario(rig).Select(Untimed).ToList();
        string golden = Path.Combine(AppContext.BaseDirectory, "Data", "golden-sriov-vf2vf.trace");
        var expected = File.ReadAllLines(golden);
        if (!expected.SequenceEqual(lines))
        {
            string actual = Path.Combine(Path.GetTempPath(), "golden-sriov-vf2vf.trace.actual");
            File.WriteAllLines(actual, lines);
            Assert.Fail($"trace differs from {golden}; the actual trace is in {actual}\n" +
                string.Join('\n', expected.Zip(lines).Where(p => p.First != p.Second).Take(3).Select(p => $"- {p.First}\n+ {p.Second}")));
        }
    }

    [Fact]
    public void LinesParseBackToTheirEvents()
    {
        using var rig = new NicRig();
        foreach (var e in RunScenario(rig))
        {
            string line = TraceFormat.Line(e);
            Assert.True(TraceFormat.TryParseLine(line, out long ns, out var rid, out var token, out var body), line);
            Assert.Equal(e.TimestampNs / 1000, ns / 1000);
            Assert.Equal(e.Rid, rid);
            Assert.Equal(e.Kind, TraceFormat.KindOf(token));
            Assert.Equal(TraceFormat.Body(e), body);
        }
    }
}
