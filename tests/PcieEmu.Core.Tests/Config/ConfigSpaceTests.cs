using PcieEmu.Core.Config;
using PcieEmu.Core.Config.Capabilities;

namespace PcieEmu.Core.Tests.Config;

public class ConfigSpaceTests
{
    [Fact]
    public void WriteAppliesWritableAndW1cMasksPerByte()
    {
        var cs = new ConfigSpace();
        cs.Init(0x40, 4, 0x1234_5678);
        cs.SetWritable(0x40, 4, 0x0000_FF00);
        cs.SetW1c(0x40, 4, 0x00F0_0000);
        cs.Write(0x40, 4, 0xFFFF_FFFF);
        Assert.Equal(0x1204_FF78u, cs.Read(0x40, 4));
        cs.Write(0x41, 1, 0x00);
        Assert.Equal(0x1204_0078u, cs.Read(0x40, 4));
        cs.Write(0x42, 2, 0x0000);                 // writing 0 to W1C bits changes nothing
        Assert.Equal(0x1204_0078u, cs.Read(0x40, 4));
    }

    [Fact]
    public void HooksSeeOldAndNewValueOfTheWholeRegister()
    {
        var cs = new ConfigSpace();
        cs.SetWritable(0x50, 4, 0xFFFF_FFFF);
        cs.Init(0x50, 4, 0xAABB_CCDD);
        var calls = new List<(int, uint, uint)>();
        cs.AddHook(0x50, 4, (o, a, b) => calls.Add((o, a, b)));
        cs.Write(0x52, 1, 0x11);                   // partial write inside the register
        cs.Write(0x54, 4, 0x1);                    // outside: no call
        Assert.Equal([(0x50, 0xAABB_CCDDu, 0xAA11_CCDDu)], calls);
    }

    [Fact]
    public void ClonedSpacesShareMasksUntilOneChangesThem()
    {
        var template = new ConfigSpace();
        template.SetWritable(0x04, 2, 0x0004);
        template.Init(0x00, 4, 0xFFFF_FFFF);
        template.CaptureResetImage();
        var a = new ConfigSpace(template);
        var b = new ConfigSpace(template);
        a.Write(0x04, 2, 0xFFFF);
        Assert.Equal(4u, a.Read(0x04, 2));
        Assert.Equal(0u, b.Read(0x04, 2));
        a.SetWritable(0x04, 2, 0x0006);            // copy-on-write: b is unaffected
        b.Write(0x04, 2, 0xFFFF);
        Assert.Equal(4u, b.Read(0x04, 2));
        a.RestoreReset();
        Assert.Equal(0u, a.Read(0x04, 2));
        Assert.Equal(0xFFFF_FFFFu, a.Read(0, 4));
    }

    [Fact]
    public void BuilderAllocatesOffsetsAndChainsBothLists()
    {
        var cs = new ConfigSpace();
        var caps = new CapabilityBuilder()
            .Add(new PowerManagementCapability(0x0003))
            .Add(new MsiCapability(true, true, 2))
            .Add(new MsixCapability(4, 0, 0, 0, 0x800))
            .Add(new AerCapability())
            .Add(new DsnCapability(42))
            .Build(cs);
        Assert.Equal([0x40, 0x48, 0x60, 0x100, 0x12C], caps.Select(c => c.Offset));
        Assert.Equal(0x40u, cs.Read(0x34, 1));
        Assert.Equal(0x4801u, cs.Read(0x40, 2));
        Assert.Equal(0x6005u, cs.Read(0x48, 2));
        Assert.Equal(0x0011u, cs.Read(0x60, 2));
        Assert.Equal(0x12C1_0001u, cs.Read(0x100, 4));
        Assert.Equal(0x0001_0003u, cs.Read(0x12C, 4));
        Assert.Equal(0x10u, cs.Read(0x06, 2) & 0x10);
        Assert.Throws<InvalidOperationException>(() => new CapabilityBuilder().Add(new AerCapability(), 0x80).Build(new ConfigSpace()));
    }
}
