using PcieEmu.Core.Devices.Igb;
using PcieEmu.Core.AddressSpace;
using PcieEmu.Core.Config;
using PcieEmu.Core.Platform;

namespace PcieEmu.Core.Tests.AddressSpace;

public class DecodeAndRoutingTests
{
    [Fact]
    public void RootPortForwardsType0OnlyToDevice0WithoutAri()
    {
        using var m = TestMachine.Create();
        Assert.Equal(CompletionStatus.UnsupportedRequest, m.ReadConfig(0x0108, 0, 4).Status);   // 01:01.0
        m.Write(TestMachine.RootPort, 0x68, 2, 0x20);
        Assert.Equal(CompletionStatus.UnsupportedRequest, m.ReadConfig(0x0108, 0, 4).Status);   // still nobody there
        Assert.Equal(CompletionStatus.Successful, m.ReadConfig(0x0101, 0, 4).Status);
    }

    [Fact]
    public void ConfigRoutingFollowsTheBusNumbers()
    {
        using var m = TestMachine.Create();
        m.Write(TestMachine.RootPort, 0x19, 1, 5);      // secondary 5, subordinate 2 -> nothing routes
        Assert.Equal(CompletionStatus.UnsupportedRequest, m.ReadConfig(0x0100, 0, 4).Status);
        m.Write(TestMachine.RootPort, 0x1A, 1, 6);
        Assert.Equal(0x10C98086UL, m.ReadConfig(0x0500, 0, 4).Value);   // the PF captured bus 5
        var ur = m.ReadConfig(0x0700, 0, 1);
        Assert.Equal(CompletionStatus.UnsupportedRequest, ur.Status);
        Assert.Equal(0xFFUL, ur.Value);
        Assert.Equal(CompletionStatus.UnsupportedRequest, m.WriteConfig(0x0700, 0x04, 2, 6));
        Assert.Equal(0xFFFFUL, m.ReadConfig(0x0010, 0, 2).Value);      // 00:02.0: nothing
    }

    [Fact]
    public void WithoutFirmwareNothingBehindThePortAnswers()
    {
        using var m = TestMachine.Create(new MachineOptions { FirmwareEnumeration = false });
        Assert.Equal(CompletionStatus.UnsupportedRequest, m.ReadConfig(0x0100, 0, 4).Status);
        Assert.Equal(0u, m.Read(TestMachine.RootPort, 0x18));
    }

    [Fact]
    public void FirmwareLeavesBarsInsideTheWindowAndMemoryAndBusMasterOn()
    {
        using var m = TestMachine.Create();
        Assert.Equal(0x00020100u, m.Read(TestMachine.RootPort, 0x18) & 0xFFFFFF);
        var (wb, wl) = m.RootPort.MemoryWindow;
        foreach (var pf in m.PhysicalFunctions)
        {
            Assert.Equal(0x7u, pf.Command & 0x7u);
            Assert.Equal(0u, m.Read(pf.Rid, 0x170, 2));
            Assert.Equal(0u, m.Read(pf.Rid, 0x168, 2));
            foreach (var bar in pf.Bars.Where(b => !b.IsIo))
            {
                var (b, s) = pf.BarWindow(bar);
                Assert.True(b >= wb && b + s - 1 <= wl, $"{pf.Name} BAR{bar.Index} outside the window");
                Assert.Equal(0UL, b % s);
            }
            foreach (var bar in pf.Sriov!.Parameters.VfBars)
            {
                ulong b = pf.Sriov.VfBarBase(bar), s = pf.Sriov.PerVfBarSize(bar) * 8;
                Assert.True(b >= wb && b + s - 1 <= wl);
            }
        }
        // No two resources overlap.
        var ranges = m.PhysicalFunctions.SelectMany(pf => pf.Bars.Where(b => !b.IsIo).Select(b => pf.BarWindow(b))
            .Concat(pf.Sriov!.Parameters.VfBars.Select(b => (pf.Sriov.VfBarBase(b), pf.Sriov.PerVfBarSize(b) * 8)))).OrderBy(r => r.Item1).ToList();
        for (int i = 1; i < ranges.Count; i++) Assert.True(ranges[i - 1].Item1 + ranges[i - 1].Item2 <= ranges[i].Item1);
    }

    [Fact]
    public void MemoryDecodeHonoursMseTheWindowAndTheRom()
    {
        using var m = TestMachine.Create();
        var pf = m.PhysicalFunctions[0];
        ulong bar3 = m.Read(0x0100, 0x1C) & ~0xFUL;
        Assert.True(m.TryDecodeMemory(bar3 + 0x2000, 8, out var d));
        Assert.Same(pf, d.Function); Assert.Equal(3, d.Bar); Assert.Equal(0x2000UL, d.Offset);
        m.Write(0x0100, 0x04, 2, 0x0004);                       // MSE off
        Assert.Equal(CompletionStatus.UnsupportedRequest, m.ReadMmio(bar3, 4).Status);
        Assert.Equal(ulong.MaxValue, m.ReadMmio(bar3, 8).Value);
        m.Write(0x0100, 0x04, 2, 0x0006);
        m.Write(TestMachine.RootPort, 0x04, 2, 0x0005);          // port MSE off
        Assert.Equal(CompletionStatus.UnsupportedRequest, m.ReadMmio(bar3, 4).Status);
        m.Write(TestMachine.RootPort, 0x04, 2, 0x0007);
        // The ROM decodes only with its enable bit (and MSE).
        ulong rom = m.Read(0x0100, 0x30) & 0xFFFFF800u;
        Assert.Equal(CompletionStatus.UnsupportedRequest, m.ReadMmio(rom, 4).Status);
        m.Write(0x0100, 0x30, 4, (uint)rom | 1);
        Assert.Equal(CompletionStatus.Successful, m.ReadMmio(rom, 4).Status);
        // Outside every window: UR; RAM reads succeed.
        Assert.Equal(CompletionStatus.UnsupportedRequest, m.WriteMmio(0xD000_0000, 4, 1));
        Assert.Equal(CompletionStatus.Successful, m.WriteMmio(0x2000, 8, 0x1122334455667788));
        Assert.Equal(0x55667788UL, m.ReadMmio(0x2000, 4).Value);
    }

    [Fact]
    public void IoDecodeHonoursIoEnableAndTheIoWindow()
    {
        using var m = TestMachine.Create();
        ulong io = m.Read(0x0100, 0x18) & ~3UL;
        Assert.Equal(0x1000UL, io);
        Assert.Equal(CompletionStatus.Successful, m.ReadIo(io, 4).Status);
        m.Write(0x0100, 0x04, 2, 0x0006);
        Assert.Equal(CompletionStatus.UnsupportedRequest, m.ReadIo(io, 4).Status);
    }

    [Theory]
    [InlineData(0, 3, "width")]
    [InlineData(0, 8, "width")]
    [InlineData(2, 4, "offset")]
    [InlineData(3, 2, "offset")]
    [InlineData(4096, 1, "offset")]
    [InlineData(-1, 1, "offset")]
    public void BadConfigAccessesAreRejectedNamingTheParameter(int offset, int width, string param)
    {
        using var m = TestMachine.Create();
        Assert.Equal(param, Assert.Throws<ArgumentException>(() => m.ReadConfig(0x0100, offset, width)).ParamName);
        Assert.Equal(param, Assert.Throws<ArgumentException>(() => m.WriteConfig(0x0100, offset, width, 0)).ParamName);
        Assert.Equal(param, Assert.Throws<ArgumentException>(() => m.PhysicalFunctions[0].Config.Read(offset, width)).ParamName);
    }

    [Fact]
    public void BadValuesAndMmioAccessesAreRejectedNamingTheParameter()
    {
        using var m = TestMachine.Create();
        Assert.Equal("value", Assert.Throws<ArgumentException>(() => m.WriteConfig(0x0100, 0, 1, 0x100)).ParamName);
        Assert.Equal("width", Assert.Throws<ArgumentException>(() => m.ReadMmio(0, 3)).ParamName);
        Assert.Equal("address", Assert.Throws<ArgumentException>(() => m.ReadMmio(2, 4)).ParamName);
        Assert.Equal("value", Assert.Throws<ArgumentException>(() => m.WriteMmio(0, 2, 0x10000)).ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => m.ReadMemory(m.Ram.Size - 1, new byte[2]));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.WriteMemory(ulong.MaxValue, new byte[1]));
        // State is intact after every rejection.
        Assert.Equal(0x10C98086u, m.Read(0x0100, 0));
    }

    [Fact]
    public void BadMachineOptionsAreRejectedNamingTheOption()
    {
        Assert.Equal("RamSize", Assert.Throws<ArgumentException>(() => new MachineOptions { RamSize = 1000 }.Validate()).ParamName);
        // Device options are checked as part of the machine description, naming the entry and the option.
        Assert.Equal("rootPorts[0].device.totalVfs", Assert.Throws<MachineDescriptionException>(() => new MachineOptions
        { Description = MachineDescription.WithDevice(IgbDevice.TypeName, new IgbOptions { TotalVfs = 0 }) }.Validate()).Entry);
        Assert.Equal("rootPorts[0].device.physicalFunctions", Assert.Throws<MachineDescriptionException>(() => new MachineOptions
        { Description = MachineDescription.WithDevice(IgbDevice.TypeName, new IgbOptions { PhysicalFunctions = 3 }) }.Validate()).Entry);
    }

    [Fact]
    public void RamFileIsSharedAndRemovedOnDispose()
    {
        string path;
        using (var m = TestMachine.Create())
        {
            path = m.Ram.Path;
            m.WriteMemory(0x40, [0xAB, 0xCD]);
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            fs.Position = 0x40;
            Assert.Equal(0xAB, fs.ReadByte());
            Assert.Equal(0xCD, fs.ReadByte());
            if (!OperatingSystem.IsWindows()) Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        }
        Assert.False(File.Exists(path));
    }
}

public class ErrorStatusTests
{
    [Fact]
    public void UnclaimedRequestsBelowThePortSetReceivedMasterAbortWhichIsRw1c()
    {
        using var m = TestMachine.Create();
        const int SecStatus = 0x1E;
        Assert.Equal(0u, m.Read(TestMachine.RootPort, SecStatus, 2) & 0x2000);
        m.ReadConfig(0x0102, 0, 4);                                   // 01:00.2: forwarded, nobody there
        Assert.Equal(0x2000u, m.Read(TestMachine.RootPort, SecStatus, 2) & 0x2000);
        m.Write(TestMachine.RootPort, SecStatus, 2, 0x0000);           // writing 0 leaves it
        Assert.Equal(0x2000u, m.Read(TestMachine.RootPort, SecStatus, 2) & 0x2000);
        m.Write(TestMachine.RootPort, SecStatus, 2, 0x2000);           // writing 1 clears it
        Assert.Equal(0u, m.Read(TestMachine.RootPort, SecStatus, 2) & 0x2000);

        m.ReadConfig(0x0108, 0, 4);                                   // device 1 without ARI: the port does not forward
        Assert.Equal(0u, m.Read(TestMachine.RootPort, SecStatus, 2) & 0x2000);
        m.ReadConfig(0x0900, 0, 4);                                   // bus 9: not below the port
        Assert.Equal(0u, m.Read(TestMachine.RootPort, SecStatus, 2) & 0x2000);

        var (wb, _) = m.RootPort.MemoryWindow;
        ulong hole = wb + 0xF0_0000;                                  // inside the window, no BAR there
        Assert.False(m.TryDecodeMemory(hole, 4, out _));
        Assert.Equal(CompletionStatus.UnsupportedRequest, m.ReadMmio(hole, 4).Status);
        Assert.Equal(0x2000u, m.Read(TestMachine.RootPort, SecStatus, 2) & 0x2000);
    }

    [Fact]
    public void ADmaReadOutsideRamSetsTheRequestersReceivedMasterAbort()
    {
        using var m = TestMachine.Create();
        var pf = m.PhysicalFunctions[0];
        var buf = new byte[8];
        var r = pf.Dma.Read(m.Ram.Size + 0x1000, buf);
        Assert.Equal(PcieEmu.Core.Memory.DmaStatus.UnsupportedRequest, r.Status);
        Assert.Equal(0x2000u, m.Read(0x0100, 0x06, 2) & 0x2000);
        m.Write(0x0100, 0x06, 2, 0x2000);
        Assert.Equal(0u, m.Read(0x0100, 0x06, 2) & 0x2000);
        pf.Dma.Write(m.Ram.Size + 0x1000, buf);                       // posted: no completion, no status
        Assert.Equal(0u, m.Read(0x0100, 0x06, 2) & 0x2000);
    }
}
