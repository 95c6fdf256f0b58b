using PcieEmu.Core.AddressSpace;

namespace PcieEmu.Core.Tests.Platform;

public class MachineSmokeTests
{
    [Fact]
    public void DefaultMachineAnswersAtTheExpectedRids()
    {
        using var m = TestMachine.Create();
        Assert.Equal(0x29C08086u, m.Read(0x0000, 0));
        Assert.Equal(0x3C028086u, m.Read(TestMachine.RootPort, 0));
        Assert.Equal(0x10C98086u, m.Read(TestMachine.Pf0, 0));
        Assert.Equal(0x10C98086u, m.Read(TestMachine.Pf1, 0));
        var ur = m.ReadConfig(0x0102, 0, 2);
        Assert.Equal(CompletionStatus.UnsupportedRequest, ur.Status);
        Assert.Equal(0xFFFFUL, ur.Value);
    }
}
