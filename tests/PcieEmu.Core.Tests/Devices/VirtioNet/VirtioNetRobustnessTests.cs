using PcieEmu.Core.Devices.VirtioNet;
using PcieEmu.Core.Memory;
using static PcieEmu.Core.Devices.VirtioNet.VirtioRegs;

namespace PcieEmu.Core.Tests.Devices.VirtioNet;

/// <summary>Garbage from a buggy or hostile driver never throws out of the device: it ends in dropped
/// frames, ignored accesses or NEEDS_RESET, and a reset brings the device back.</summary>
public class VirtioNetRobustnessTests
{
    private static readonly byte[] DevMac = VirtioTestDriver.Mac(1), Peer = VirtioTestDriver.Mac(9);

    [Theory]
    [InlineData(false, 1)]
    [InlineData(true, 2)]
    [InlineData(false, 3)]
    [InlineData(true, 4)]
    public void RandomRingContentsAndRegisterWritesNeverThrow(bool packed, int seed)
    {
        var rng = new Random(seed);
        using var d = new VirtioTestDriver();
        ulong features = VirtioNetDataPathTests.Std | Bit(FIndirectDesc) | Bit(FEventIdx) | Bit(FMrgRxbuf) | (packed ? Bit(FRingPacked) : 0);
        for (int round = 0; round < 20; round++)
        {
            d.BringUp(features, size: 16, packed: packed);
            d.PostRx(d.Queues[0], 4);
            foreach (var q in d.Queues)
            {
                // Scribble over the rings: descriptors with random addresses, lengths, flags and next fields.
                var junk = new byte[16 * q.Size];
                rng.NextBytes(junk);
                if (rng.Next(2) == 0)
                    for (int i = 0; i < junk.Length; i += 8) junk[i + 4] = junk[i + 5] = junk[i + 6] = junk[i + 7] = 0;   // addresses inside RAM, sometimes
                d.WriteRam(q.Desc, junk);
                var idx = new byte[4];
                rng.NextBytes(idx);
                d.WriteRam(q.Driver, idx);
                d.Kick(q);
                d.Dev.InjectFrame(VirtioTestDriver.Frame(DevMac, Peer, rng.Next(60, 1519)));
            }
            // Random accesses to every structure of BAR4 and to the PCI_CFG window.
            for (int i = 0; i < 50; i++)
            {
                int width = new[] { 1, 2, 4, 8 }[rng.Next(4)];
                ulong off = (ulong)rng.Next(0, 0x4000) & ~(ulong)(width - 1);
                ulong value = (ulong)rng.NextInt64();
                lock (d.M.SyncRoot)
                {
                    if (off == VirtioNetFunction.CommonOffset + DeviceStatus) continue;   // a reset mid-round is covered below
                    d.Dev.GetBarRegion(4).Write(off, width, value);
                    d.Dev.GetBarRegion(4).Read((ulong)rng.Next(0, 0x4000) & ~(ulong)(width - 1), width);
                }
            }
        }
        // The garbage did reach the device: it met malformed chains or failed DMAs.
        Assert.True(d.Dev.QueueErrors > 0);
        // After all that, a reset and a clean bring-up work.
        d.BringUp(features, size: 16, packed: packed);
        long sent = d.Sent.Count;
        d.Send(d.Queues[1], VirtioTestDriver.Frame(Peer, DevMac));
        Assert.Equal(sent + 1, d.Sent.Count);
        Assert.Equal(0, d.Status & StatusNeedsReset);
    }

    [Fact]
    public void DescriptorsPointingOutsideRamNeedResetWithoutTouchingAnything()
    {
        using var d = new VirtioTestDriver();
        d.BringUp(VirtioNetDataPathTests.Std);
        var tx = d.Queues[1];
        tx.Add([(0xFFFF_FFFF_FFFF_F000UL, 100u, false)], indirect: false);
        d.Kick(tx);
        Assert.Empty(d.Sent);
        var e = d.Dev.LastError!.Value;
        Assert.Equal(VirtqErrorKind.Dma, e.Kind);
        Assert.Equal(DmaStatus.UnsupportedRequest, e.Status);
        Assert.NotEqual(0, d.Status & StatusNeedsReset);
    }

    [Fact]
    public void BusMasterOffStopsTheDevice()
    {
        using var d = new VirtioTestDriver();
        d.BringUp(VirtioNetDataPathTests.Std);
        d.SetCfg(0x04, 2, 0x0002);                               // Memory Space only
        d.Send(d.Queues[1], VirtioTestDriver.Frame(Peer, DevMac));
        Assert.Empty(d.Sent);
        Assert.Equal(DmaStatus.BusMasterDisabled, d.Dev.LastError!.Value.Status);
        Assert.NotEqual(0, d.Status & StatusNeedsReset);
        Assert.Empty(d.Vectors());                               // no MSI-X without Bus Master
    }
}
