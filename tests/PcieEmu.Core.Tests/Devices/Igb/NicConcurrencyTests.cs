using PcieEmu.Core.Devices.Igb;
using static PcieEmu.Core.Devices.Igb.IgbRegs;

namespace PcieEmu.Core.Tests.Devices.Igb;

public class NicConcurrencyTests
{
    [Fact]
    public async Task WireInjectionFromManyThreadsAndDoorbellsInterleaveWithoutLoss()
    {
        using var rig = new NicRig(vfs: 2);
        rig.SetupVmdq(2);
        var tx0 = rig.SetupTx(o => rig.VfRead(0, o), (o, v) => rig.VfWrite(0, o, v), TxLegacy, count: 256);
        var rx1 = rig.SetupRx(o => rig.VfRead(1, o), (o, v) => rig.VfWrite(1, o, v), RxLegacy, count: 1024);
        long wired = 0;
        rig.Nic.FrameTransmitted += _ => Interlocked.Increment(ref wired);
        const int Injectors = 3, PerInjector = 200, Sent = 150;
        var toVf1 = NicRig.Frame(NicRig.Mac(1), [0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
        var tasks = new List<Task>();
        for (int t = 0; t < Injectors; t++)
            tasks.Add(Task.Run(() => { for (int i = 0; i < PerInjector; i++) Assert.Equal(1, rig.Nic.InjectFrame(toVf1)); }));
        tasks.Add(Task.Run(() =>
        {
            for (int i = 0; i < Sent; i++)
            {
                // One to VF1 (local), one to an unknown MAC (wire), doorbell each time.
                rig.PostAdv(tx0, NicRig.Frame(NicRig.Mac(1), NicRig.Mac(0), 64, (byte)i));
                rig.PostAdv(tx0, NicRig.Frame([0x00, 0x99, 0x99, 0x99, 0x99, 0x99], NicRig.Mac(0), 64, (byte)i));
            }
        }));
        await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal((uint)(Injectors * PerInjector + Sent), rx1.Head);
        Assert.Equal((uint)(2 * Sent % 256), tx0.Head);
        Assert.Equal(Sent, Interlocked.Read(ref wired));
        Assert.Equal((uint)(Injectors * PerInjector + Sent), rig.VfRead(1, VfGprc));
        Assert.Equal((uint)Sent, rig.VfRead(1, VfGprlbc));
        Assert.Equal(0u, rig.PfRead(Mpc));
    }
}
