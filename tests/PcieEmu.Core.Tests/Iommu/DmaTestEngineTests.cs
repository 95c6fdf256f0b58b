using PcieEmu.Core.Devices;
using PcieEmu.Core.Iommu;
using PcieEmu.Core.Memory;

namespace PcieEmu.Core.Tests.Iommu;

/// <summary>The DMA test engine's register interface, driven like a device.</summary>
public class DmaTestEngineTests
{
    private const ushort Pf0 = TestMachine.Pf0;

    [Fact]
    public void RegistersDriveACopyThroughTheRemappingUnit()
    {
        using var h = new VtdHarness();
        h.Enable();
        ulong top = h.NewDomain(Pf0, 1);
        const ulong src = 0x1000_0000, dst = 0x2000_0000;
        for (int i = 0; i < 3; i++)
        {
            h.Map(top, src + (ulong)i * 4096, VtdHarness.DataBase + (ulong)i * 4096, write: false);
            h.Map(top, dst + (ulong)i * 4096, VtdHarness.DataBase + 0x10_0000 + (ulong)(2 - i) * 4096, read: false);
        }
        var data = Enumerable.Range(0, 3 * 4096).Select(i => (byte)(i * 13 + 1)).ToArray();
        h.M.WriteMemory(VtdHarness.DataBase, data);
        var e = h.Engine(Pf0);
        lock (h.M.SyncRoot)
        {
            e.Write(DmaTestEngine.RegSrc, 8, src);
            e.Write(DmaTestEngine.RegDst, 4, (uint)dst);
            e.Write(DmaTestEngine.RegDst + 4, 4, 0);
            e.Write(DmaTestEngine.RegLen, 4, 3 * 4096);
            e.Write(DmaTestEngine.RegCmd, 4, (ulong)DmaTestOp.Copy);
            Assert.Equal((ulong)DmaTestEngine.StatusDone, e.Read(DmaTestEngine.RegStatus, 4));
            Assert.Equal(3UL * 4096, e.Read(DmaTestEngine.RegBytes, 4));
            Assert.Equal(1UL, e.Read(DmaTestEngine.RegOps, 4));
            Assert.Equal(src, e.Read(DmaTestEngine.RegSrc, 8));
            Assert.Equal((ulong)data[5], e.Read(DmaTestEngine.BufferOffset + 5, 1));
        }
        var page = new byte[4096];
        h.M.ReadMemory(VtdHarness.DataBase + 0x10_0000, page);          // dst page 2 went to the first frame
        Assert.Equal(data.AsSpan(2 * 4096, 4096).ToArray(), page);

        // A copy the other way faults on the read (dst is write-only) and reports where.
        lock (h.M.SyncRoot)
        {
            var r = e.Run(DmaTestOp.Copy, dst + 8, src, 64);
            Assert.Equal(DmaStatus.TranslationFault, r.Status);
            Assert.Equal(((uint)VtdFaultReason.ReadNotPermitted << 8) | (uint)DmaStatus.TranslationFault | DmaTestEngine.StatusDone,
                (uint)e.Read(DmaTestEngine.RegStatus, 4));
            Assert.Equal(dst + 8, e.Read(DmaTestEngine.RegFaultAddr, 8));
            Assert.Equal(0UL, e.Read(DmaTestEngine.RegBytes, 4));
        }
    }

    [Fact]
    public void BufferIsReadWriteAndLengthIsClamped()
    {
        using var h = new VtdHarness();
        var e = h.Engine(Pf0);
        e.Write(DmaTestEngine.BufferOffset + 6, 2, 0xBEEF);
        Assert.Equal(0xBEEF_0000_0000_0000UL, e.Read(DmaTestEngine.BufferOffset, 8));
        e.Write(DmaTestEngine.RegLen, 4, 0xFFFF_FFFF);
        Assert.Equal((ulong)DmaTestEngine.BufferSize, e.Read(DmaTestEngine.RegLen, 4));
        Assert.Equal(0UL, e.Read(DmaTestEngine.BufferOffset + DmaTestEngine.BufferSize, 4));
        Assert.Throws<ArgumentOutOfRangeException>("length", () => e.Run(DmaTestOp.Read, 0, 0, DmaTestEngine.BufferSize + 1));
        // With translation off, a write lands at the device address itself.
        lock (h.M.SyncRoot) Assert.True(e.Run(DmaTestOp.Write, 0, VtdHarness.DataBase, 8).Ok);
        Assert.Equal(0xBEEF_0000_0000_0000UL, h.ReadQ(VtdHarness.DataBase));
        // Outside RAM (and translation off) is an Unsupported Request.
        lock (h.M.SyncRoot) Assert.Equal(DmaStatus.UnsupportedRequest, e.Run(DmaTestOp.Read, 0x4000_0000, 0, 8).Status);
    }
}
