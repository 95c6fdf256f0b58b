using PcieEmu.Core.Platform;

namespace PcieEmu.Core.Tests;

/// <summary>Builds small machines for tests (16 MiB RAM in a temp file, deleted on dispose).</summary>
internal static class TestMachine
{
    public static Machine Create(MachineOptions? options = null, TimeProvider? time = null) =>
        new((options ?? new MachineOptions()) with { RamSize = 16UL << 20 }, time);

    public const ushort RootPort = 0x0008, Pf0 = 0x0100, Pf1 = 0x0101;

    public static uint Read(this Machine m, ushort rid, int off, int width = 4)
    {
        var r = m.ReadConfig(rid, off, width);
        Assert.Equal(PcieEmu.Core.AddressSpace.CompletionStatus.Successful, r.Status);
        return (uint)r.Value;
    }

    /// <summary>NumVFs = n, then VF Enable | VF MSE in one write (Linux's order).</summary>
    public static void EnableVfs(this Machine m, ushort pf, int n)
    {
        m.Write(pf, 0x170, 2, (uint)n);
        m.Write(pf, 0x168, 2, 0x9);
    }

    public static void Write(this Machine m, ushort rid, int off, int width, uint value) =>
        Assert.Equal(PcieEmu.Core.AddressSpace.CompletionStatus.Successful, m.WriteConfig(rid, off, width, value));
}
