using BenchmarkDotNet.Attributes;
using PcieEmu.Core.Platform;

namespace PcieEmu.Core.Benchmarks;

/// <summary>In-process config reads and writes, and VF enable/disable (issue: Core performance).</summary>
[MemoryDiagnoser]
public class ConfigBenchmarks
{
    private Machine _m = null!;
    private Machine _m64 = null!;

    [GlobalSetup]
    public void Setup()
    {
        _m = new Machine(new MachineOptions { RamSize = 16 << 20 });
        _m64 = new Machine(new MachineOptions { RamSize = 16 << 20, Description = MachineDescription.WithDevice(Devices.Igb.IgbDevice.TypeName, new Devices.Igb.IgbOptions { TotalVfs = 64 }) });
    }

    [GlobalCleanup]
    public void Cleanup() { _m.Dispose(); _m64.Dispose(); }

    /// <summary>Baseline: the least a locked transaction can cost — take an uncontended lock and read a dword from an array.</summary>
    [Benchmark(Baseline = true)]
    public uint LockedArrayRead4()
    {
        lock (_lock) return System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(_scratch.AsSpan(_offset));
    }
    private readonly byte[] _scratch = new byte[4096];
    private readonly Lock _lock = new();
    private int _offset = 0x160;

    [Benchmark] public ulong ConfigRead1() => _m.ReadConfig(0x0100, 0x161, 1).Value;
    [Benchmark] public ulong ConfigRead2() => _m.ReadConfig(0x0100, 0x16E, 2).Value;
    [Benchmark] public ulong ConfigRead4() => _m.ReadConfig(0x0100, 0x160, 4).Value;
    [Benchmark] public void ConfigWrite1() => _m.WriteConfig(0x0100, 0x3C, 1, 0x0B);
    [Benchmark] public void ConfigWrite2() => _m.WriteConfig(0x0100, 0x04, 2, 0x0407);
    [Benchmark] public void ConfigWrite4() => _m.WriteConfig(0x0100, 0x54, 4, 0xFEE0_0000);

    [Benchmark] public void EnableDisable8Vfs() => EnableDisable(_m, 8);
    [Benchmark] public void EnableDisable64Vfs() => EnableDisable(_m64, 64);

    private static void EnableDisable(Machine m, int n)
    {
        m.WriteConfig(0x0100, 0x170, 2, (uint)n);
        m.WriteConfig(0x0100, 0x168, 2, 0x9);
        m.WriteConfig(0x0100, 0x168, 2, 0x0);
        m.WriteConfig(0x0100, 0x170, 2, 0);
    }
}
