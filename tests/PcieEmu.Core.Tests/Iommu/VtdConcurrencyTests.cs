using PcieEmu.Core.Devices;
using PcieEmu.Core.Iommu;

namespace PcieEmu.Core.Tests.Iommu;

/// <summary>Many requesters at once: DMA through the engine, probes and invalidations from
/// several threads, serialised by the machine lock.</summary>
public class VtdConcurrencyTests
{
    [Fact]
    public async Task ConcurrentDmaProbesAndInvalidationsStayConsistent()
    {
        using var h = new VtdHarness();
        h.Enable();
        h.EnableVfs(TestMachine.Pf0, 4);
        var rids = new List<ushort> { TestMachine.Pf0, TestMachine.Pf1 };
        foreach (var vf in h.M.PhysicalFunctions[0].VirtualFunctions)
        {
            h.M.Write(vf.Rid, PcieEmu.Core.Config.ConfigRegs.Command, 2, PcieEmu.Core.Config.ConfigRegs.CmdBusMaster);
            rids.Add(vf.Rid);
        }
        const ulong iova = 0x5000_0000;
        for (int i = 0; i < rids.Count; i++)
        {
            ulong top = h.NewDomain(rids[i], (ushort)(i + 1));
            for (int p = 0; p < 16; p++) h.Map(top, iova + (ulong)p * 4096, VtdHarness.DataBase + (ulong)(i * 16 + p) * 4096);
        }
        h.EnableQueue();
        long dmaBytes = 0;
        var tasks = rids.Select((rid, i) => Task.Run(() =>
        {
            var engine = h.Engine(rid);
            var rng = new Random(i);
            for (int n = 0; n < 500; n++)
            {
                lock (h.M.SyncRoot)
                {
                    var r = engine.Run(DmaTestOp.Write, 0, iova + (ulong)rng.Next(16 * 4096 - 256), 256);
                    Assert.True(r.Ok, r.ToString());
                    Interlocked.Add(ref dmaBytes, r.BytesMoved);
                }
                var p = h.Unit.Probe(rid, iova + (ulong)rng.Next(16) * 4096, write: false, dryRun: rng.Next(2) == 0);
                Assert.Equal(VtdProbeStatus.Translated, p.Status);
                Assert.Equal(VtdHarness.DataBase + (ulong)(i * 16) * 4096, p.TranslatedAddress & ~0xFFFFUL);
                if (n % 50 == 0)
                {
                    lock (h.M.SyncRoot) h.Submit(VtdHarness.IotlbDesc(2, did: (ushort)(i + 1)), VtdHarness.ContextDesc(3, sid: rid));
                }
            }
        })).ToArray();
        await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(rids.Count * 500L * 256, dmaBytes);
        Assert.Equal(0u, h.Fsts);
        Assert.Equal(h.Reg(VtdRegs.Iqt, 8), h.Reg(VtdRegs.Iqh, 8));
    }
}
