using PcieEmu.Core.AddressSpace;

namespace PcieEmu.Core.Tests.Topology;

public class FlrAndResetTests
{
    [Fact]
    public void VfFlrResetsThatVfOnly()
    {
        using var m = TestMachine.Create();
        m.EnableVfs(0x0100, 2);
        ushort vf0 = 0x0280, vf1 = 0x0282;
        foreach (var vf in new[] { vf0, vf1 })
        {
            m.Write(vf, 0x04, 2, 0x4);          // Bus Master
            m.Write(vf, 0x72, 2, 0x8000);       // MSI-X enable
        }
        m.Write(vf0, 0xA8, 2, 0x8000);          // Initiate FLR
        Assert.Equal(0u, m.Read(vf0, 0x04, 2));
        Assert.Equal(0u, m.Read(vf0, 0x72, 2) & 0xC000);
        Assert.Equal(0u, m.Read(vf0, 0xA8, 2) & 0x8000);      // reads 0
        Assert.Equal(4u, m.Read(vf1, 0x04, 2));
        Assert.Equal(0x8000u, m.Read(vf1, 0x72, 2) & 0xC000);
        Assert.Equal(2, m.PhysicalFunctions[0].VirtualFunctions.Count);
        Assert.Equal(0x9u, m.Read(0x0100, 0x168, 2));
    }

    [Fact]
    public void PfFlrResetsThePfAndRemovesItsVfs()
    {
        using var m = TestMachine.Create();
        m.EnableVfs(0x0100, 2);
        m.EnableVfs(0x0101, 1);
        uint bar0 = m.Read(0x0100, 0x10);
        Assert.NotEqual(0u, bar0);
        m.Write(0x0100, 0xA8, 2, 0x8000 | m.Read(0x0100, 0xA8, 2));
        Assert.Empty(m.PhysicalFunctions[0].VirtualFunctions);
        Assert.Equal(CompletionStatus.UnsupportedRequest, m.ReadConfig(0x0280, 0, 4).Status);
        Assert.Equal(0u, m.Read(0x0100, 0x168, 2));
        Assert.Equal(0u, m.Read(0x0100, 0x170, 2));
        Assert.Equal(0u, m.Read(0x0100, 0x10));                // BARs back to reset
        Assert.Equal(0u, m.Read(0x0100, 0x04, 2));
        Assert.Equal(0x10C98086u, m.Read(0x0100, 0));
        // PF1 and its VF are untouched.
        Assert.Single(m.PhysicalFunctions[1].VirtualFunctions);
        Assert.Equal(CompletionStatus.Successful, m.ReadConfig(0x0281, 0, 4).Status);
    }

    [Fact]
    public void PlatformResetRestoresTheWholeMachine()
    {
        using var m = TestMachine.Create();
        uint bar0 = m.Read(0x0100, 0x10);
        m.EnableVfs(0x0100, 2);
        m.Write(TestMachine.RootPort, 0x68, 2, 0x20);
        m.WriteMemory(0x1000, [1, 2, 3]);
        m.Reset();
        Assert.Empty(m.PhysicalFunctions[0].VirtualFunctions);
        Assert.Equal(bar0, m.Read(0x0100, 0x10));             // firmware ran again
        Assert.Equal(0u, m.Read(TestMachine.RootPort, 0x68, 2) & 0x20);
        var buf = new byte[3];
        m.ReadMemory(0x1000, buf);
        Assert.Equal(new byte[3], buf);
    }

    [Fact]
    public void PowerStateD3HotStopsMemoryDecodeAndUnsupportedStatesAreIgnored()
    {
        using var m = TestMachine.Create();
        ulong bar0 = m.Read(0x0100, 0x10) & ~0xFu;
        Assert.Equal(CompletionStatus.Successful, m.ReadMmio(bar0, 4).Status);
        m.Write(0x0100, 0x44, 2, 0x1);                       // D1 not supported by this PMC
        Assert.Equal(0u, m.Read(0x0100, 0x44, 2) & 3);
        m.Write(0x0100, 0x44, 2, 0x3);                       // D3hot
        Assert.Equal(3u, m.Read(0x0100, 0x44, 2) & 3);
        Assert.Equal(CompletionStatus.UnsupportedRequest, m.ReadMmio(bar0, 4).Status);
        m.Write(0x0100, 0x44, 2, 0x0);
        Assert.Equal(CompletionStatus.Successful, m.ReadMmio(bar0, 4).Status);
    }
}

public class SecondaryBusResetTests
{
    [Fact]
    public void SecondaryBusResetResetsEverythingBelowThePortOnly()
    {
        using var m = TestMachine.Create();
        m.EnableVfs(0x0100, 2);
        uint buses = m.Read(TestMachine.RootPort, 0x18);
        m.Write(TestMachine.RootPort, 0x3E, 2, 0x0040);
        Assert.Empty(m.PhysicalFunctions[0].VirtualFunctions);
        Assert.Equal(0u, m.Read(0x0100, 0x10));
        Assert.Equal(0u, m.Read(0x0101, 0x04, 2));
        Assert.Equal(buses, m.Read(TestMachine.RootPort, 0x18));     // the port itself keeps its state
        m.Write(TestMachine.RootPort, 0x3E, 2, 0);
        Assert.Equal(0x10C98086u, m.Read(0x0100, 0));
    }
}

public class StickyBitTests
{
    [Fact]
    public void AerStickyBitsSurviveFlrButNotAColdReset()
    {
        using var m = TestMachine.Create();
        var pf = m.PhysicalFunctions[0];
        pf.Config.SetRaw(0x104, 4, 0x0010_0000);          // an Unsupported Request error was logged
        m.Write(0x0100, 0x108, 4, 0x0000_1000);            // software masked Poisoned TLP
        m.Write(0x0100, 0xA8, 2, 0x8000 | m.Read(0x0100, 0xA8, 2));   // FLR
        Assert.Equal(0x0010_0000u, m.Read(0x0100, 0x104));
        Assert.Equal(0x0000_1000u, m.Read(0x0100, 0x108));
        Assert.Equal(0u, m.Read(0x0100, 0x04, 2));         // the rest is back at reset
        m.Write(0x0100, 0x104, 4, 0x0010_0000);            // still RW1C
        Assert.Equal(0u, m.Read(0x0100, 0x104));
        pf.Config.SetRaw(0x104, 4, 0x0010_0000);
        m.Reset();                                         // cold reset: new functions, all clear
        Assert.Equal(0u, m.Read(0x0100, 0x104));
    }
}
