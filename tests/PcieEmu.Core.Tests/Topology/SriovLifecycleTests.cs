using PcieEmu.Core.AddressSpace;
using PcieEmu.Core.Devices.Igb;
using PcieEmu.Core.Platform;

namespace PcieEmu.Core.Tests.Topology;

/// <summary>Linux's SR-IOV sequence (drivers/pci/iov.c behaviour) end to end through config requests.</summary>
public class SriovLifecycleTests
{
    private const int Sriov = 0x160, Ctl = Sriov + 0x08, NumVfs = Sriov + 0x10, Offset = Sriov + 0x14, Stride = Sriov + 0x16,
        VfBar0 = Sriov + 0x24, PageSize = Sriov + 0x20;

    private static void EnableAri(Machine m)
    {
        // Linux: the upstream port supports ARI forwarding and function 0 has ARI: set ARI Forwarding
        // Enable in the port (DevCtl2 at 0x40 + 0x28), then ARI Capable Hierarchy in PF0.
        m.Write(TestMachine.RootPort, 0x68, 2, m.Read(TestMachine.RootPort, 0x68, 2) | 0x20);
        m.Write(TestMachine.Pf0, Ctl, 2, 0x10);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ProbeSweepsNumVfsAndOffsetsStayNonZero(bool ari)
    {
        using var m = TestMachine.Create();
        if (ari) EnableAri(m);
        foreach (ushort pf in new[] { TestMachine.Pf0, TestMachine.Pf1 })
        {
            ushort total = (ushort)m.Read(pf, Sriov + 0x0E, 2);
            Assert.Equal(8, total);
            for (int n = total; n >= 0; n--)
            {
                m.Write(pf, NumVfs, 2, (uint)n);
                Assert.Equal((uint)n, m.Read(pf, NumVfs, 2));
                Assert.Equal(ari ? 0x80u : 0x180u, m.Read(pf, Offset, 2));
                Assert.Equal(2u, m.Read(pf, Stride, 2));
            }
        }
    }

    [Fact]
    public void AriCapableHierarchyIsWritableOnlyInPf0AndAppliesToBothPfs()
    {
        using var m = TestMachine.Create();
        m.Write(TestMachine.Pf1, Ctl, 2, 0x10);
        Assert.Equal(0u, m.Read(TestMachine.Pf1, Ctl, 2));
        Assert.Equal(0x180u, m.Read(TestMachine.Pf1, Offset, 2));
        m.Write(TestMachine.Pf0, Ctl, 2, 0x10);
        Assert.Equal(0x10u, m.Read(TestMachine.Pf0, Ctl, 2));
        Assert.Equal(0x80u, m.Read(TestMachine.Pf0, Offset, 2));
        Assert.Equal(0x80u, m.Read(TestMachine.Pf1, Offset, 2));
    }

    [Fact]
    public void VfBarSizingReportsPerVfSizeAndVfsDecodeAtBasePlusIndexTimesSize()
    {
        using var m = TestMachine.Create();
        ushort pf = TestMachine.Pf0;
        uint lo = m.Read(pf, VfBar0), hi = m.Read(pf, VfBar0 + 4);
        m.Write(pf, VfBar0, 4, 0xFFFF_FFFF);
        m.Write(pf, VfBar0 + 4, 4, 0xFFFF_FFFF);
        ulong sized = (m.Read(pf, VfBar0) & ~0xFUL) | (ulong)m.Read(pf, VfBar0 + 4) << 32;
        Assert.Equal(0x4u, m.Read(pf, VfBar0) & 0xF);              // 64-bit, non-prefetchable
        Assert.Equal(16UL * 1024, ~sized + 1);
        m.Write(pf, VfBar0, 4, lo);
        m.Write(pf, VfBar0 + 4, 4, hi);
        ulong apertureBase = lo & ~0xFUL;
        Assert.NotEqual(0UL, apertureBase);

        m.Write(pf, NumVfs, 2, 8);
        m.Write(pf, Ctl, 2, 0x9);
        for (int k = 0; k < 8; k++)
        {
            Assert.True(m.TryDecodeMemory(apertureBase + (ulong)k * 16384 + 0x10, 4, out var d));
            Assert.Same(m.PhysicalFunctions[0].VirtualFunctions[k], d.Function);
            Assert.Equal(0x10UL, d.Offset);
        }
        // Past the aperture's end is not VF BAR0 of a ninth VF.
        Assert.True(!m.TryDecodeMemory(apertureBase + 8 * 16384, 4, out var past) || past.Bar != 0);
        // Inside the aperture but beyond NumVFs: nobody claims it.
        m.Write(pf, Ctl, 2, 0);
        m.Write(pf, NumVfs, 2, 4);
        m.Write(pf, Ctl, 2, 0x9);
        Assert.False(m.TryDecodeMemory(apertureBase + 5 * 16384, 4, out _));
        Assert.Equal(CompletionStatus.UnsupportedRequest, m.ReadMmio(apertureBase + 5 * 16384, 4).Status);
        // VF MSE off: no VF decodes.
        m.Write(pf, Ctl, 2, 0x1);
        Assert.Equal(CompletionStatus.UnsupportedRequest, m.ReadMmio(apertureBase, 4).Status);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void EnableProbeFreezeAndDisableLikeLinux(bool ari)
    {
        using var m = TestMachine.Create();
        if (ari) EnableAri(m);
        ushort pf = TestMachine.Pf0;
        m.Write(pf, NumVfs, 2, 4);
        uint offset = m.Read(pf, Offset, 2), stride = m.Read(pf, Stride, 2);
        m.Write(pf, Ctl, 2, (ari ? 0x10u : 0) | 0x9);               // VF Enable + VF MSE in one write
        Assert.Equal(4, m.PhysicalFunctions[0].VirtualFunctions.Count);
        for (int k = 0; k < 4; k++)
        {
            ushort rid = (ushort)(pf + offset + k * stride);
            Assert.Equal(ari ? 1 : 2, rid >> 8);
            var r = m.ReadConfig(rid, 0, 4);
            Assert.Equal(CompletionStatus.Successful, r.Status);
            Assert.Equal(0xFFFF_FFFFUL, r.Value);                     // VF IDs read FFFF
            Assert.Equal(0x11u, m.Read(rid, 0x70, 1));                 // MSI-X
            Assert.Equal(2u, m.Read(rid, 0x72, 2) & 0x7FF);            // 3 vectors
        }
        // Not a VF: the next slot and the odd (PF1's) functions.
        Assert.Equal(CompletionStatus.UnsupportedRequest, m.ReadConfig((ushort)(pf + offset + 4 * stride), 0, 4).Status);
        Assert.Equal(CompletionStatus.UnsupportedRequest, m.ReadConfig((ushort)(pf + offset + 1), 0, 4).Status);

        // Frozen while enabled: NumVFs, System Page Size, ARI Capable Hierarchy.
        m.Write(pf, NumVfs, 2, 2);
        Assert.Equal(4u, m.Read(pf, NumVfs, 2));
        m.Write(pf, PageSize, 4, 2);
        Assert.Equal(1u, m.Read(pf, PageSize));
        m.Write(pf, Ctl, 2, (ari ? 0u : 0x10u) | 0x9);
        Assert.Equal((ari ? 0x10u : 0) | 0x9, m.Read(pf, Ctl, 2));

        // Disable: clear VF Enable and VF MSE, then NumVFs = 0.
        m.Write(pf, Ctl, 2, ari ? 0x10u : 0);
        Assert.Empty(m.PhysicalFunctions[0].VirtualFunctions);
        Assert.Equal(CompletionStatus.UnsupportedRequest, m.ReadConfig((ushort)(pf + offset), 0, 4).Status);
        m.Write(pf, NumVfs, 2, 0);
        Assert.Equal(0u, m.Read(pf, NumVfs, 2));
    }

    [Fact]
    public void AriVfsAreUnreachableWithoutAriForwardingInThePort()
    {
        using var m = TestMachine.Create();
        m.Write(TestMachine.Pf0, Ctl, 2, 0x10);                       // ARI hierarchy without port forwarding
        m.Write(TestMachine.Pf0, NumVfs, 2, 1);
        m.Write(TestMachine.Pf0, Ctl, 2, 0x19);
        Assert.Equal(CompletionStatus.UnsupportedRequest, m.ReadConfig(0x0180, 0, 4).Status);   // 01:10.0 is device 16
        m.Write(TestMachine.RootPort, 0x68, 2, 0x20);
        Assert.Equal(CompletionStatus.Successful, m.ReadConfig(0x0180, 0, 4).Status);
    }

    [Fact]
    public void BothPfsVfsInterleaveWithoutCollisions()
    {
        using var m = TestMachine.Create();
        foreach (ushort pf in new[] { TestMachine.Pf0, TestMachine.Pf1 })
        {
            m.Write(pf, NumVfs, 2, 8);
            m.Write(pf, Ctl, 2, 0x9);
        }
        var rids = m.EnumerateFunctions().Where(f => f.IsVirtual).Select(f => f.Rid).ToList();
        Assert.Equal(16, rids.Count);
        Assert.Equal(16, rids.Distinct().Count());
        for (int k = 0; k < 8; k++)
        {
            Assert.Same(m.PhysicalFunctions[0].VirtualFunctions[k], m.RouteConfig((ushort)(0x0280 + 2 * k)));
            Assert.Same(m.PhysicalFunctions[1].VirtualFunctions[k], m.RouteConfig((ushort)(0x0281 + 2 * k)));
        }
        // Each VF's MSI-X table is its own.
        var a = m.PhysicalFunctions[0].VirtualFunctions[0].MsixTable!;
        var b = m.PhysicalFunctions[1].VirtualFunctions[0].MsixTable!;
        Assert.NotSame(a, b);
    }

    [Fact]
    public void NumVfsAboveTotalVfsIsIgnored()
    {
        using var m = TestMachine.Create();
        m.Write(TestMachine.Pf0, NumVfs, 2, 5);
        m.Write(TestMachine.Pf0, NumVfs, 2, 9);
        Assert.Equal(5u, m.Read(TestMachine.Pf0, NumVfs, 2));
        m.Write(TestMachine.Pf0, NumVfs, 2, 0xFFFF);
        Assert.Equal(5u, m.Read(TestMachine.Pf0, NumVfs, 2));
        m.Write(TestMachine.Pf0, Ctl, 2, 0x9);
        Assert.Equal(5, m.PhysicalFunctions[0].VirtualFunctions.Count);
    }

    [Fact]
    public void SystemPageSizeAcceptsOnlyOneSupportedSizeAndScalesVfBars()
    {
        using var m = TestMachine.Create();
        ushort pf = TestMachine.Pf0;
        m.Write(pf, PageSize, 4, 0x3);      // two bits: ignored
        Assert.Equal(1u, m.Read(pf, PageSize));
        m.Write(pf, PageSize, 4, 0x4);      // 16 KiB is not in 0x553: ignored
        Assert.Equal(1u, m.Read(pf, PageSize));
        m.Write(pf, PageSize, 4, 0x10);     // 64 KiB: supported
        Assert.Equal(0x10u, m.Read(pf, PageSize));
        m.Write(pf, VfBar0, 4, 0xFFFF_FFFF);
        Assert.Equal(0xFFFF_0004u, m.Read(pf, VfBar0));   // per-VF size follows the page size
        m.Write(pf, PageSize, 4, 0x1);
        m.Write(pf, VfBar0, 4, 0xFFFF_FFFF);
        Assert.Equal(0xFFFF_C004u, m.Read(pf, VfBar0));
    }

    [Fact]
    public void SixtyFourVfsSpanTheVfBusAndFirmwareCoversIt()
    {
        using var m = TestMachine.Create(new MachineOptions { Description = MachineDescription.WithDevice(IgbDevice.TypeName, new IgbOptions { TotalVfs = 64 }) });
        m.Write(TestMachine.Pf0, NumVfs, 2, 64);
        m.Write(TestMachine.Pf0, Ctl, 2, 0x9);
        m.Write(TestMachine.Pf1, NumVfs, 2, 64);
        m.Write(TestMachine.Pf1, Ctl, 2, 0x9);
        Assert.Equal(128, m.EnumerateFunctions().Count(f => f.IsVirtual));
        Assert.Equal(0x0280, m.PhysicalFunctions[0].VirtualFunctions[0].Rid);
        Assert.Equal(0x02FF, m.PhysicalFunctions[1].VirtualFunctions[63].Rid);
    }

    [Fact]
    public void VfsBeyondOneBusLandOnTheNextBus()
    {
        using var m = TestMachine.Create(new MachineOptions { Description = MachineDescription.WithDevice(IgbDevice.TypeName, new IgbOptions { TotalVfs = 128, PhysicalFunctions = 1 }) });
        Assert.Equal(3u, m.Read(TestMachine.RootPort, 0x1A, 1));       // subordinate covers bus 3
        m.Write(TestMachine.Pf0, NumVfs, 2, 128);
        m.Write(TestMachine.Pf0, Ctl, 2, 0x9);
        var last = m.PhysicalFunctions[0].VirtualFunctions[127];
        Assert.Equal(0x0100 + 0x180 + 127 * 2, last.Rid);
        Assert.Equal(3, last.Rid >> 8);
        Assert.Equal(CompletionStatus.Successful, m.ReadConfig(last.Rid, 0, 4).Status);
    }
}
