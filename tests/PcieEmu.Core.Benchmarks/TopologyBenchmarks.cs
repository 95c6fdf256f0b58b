using BenchmarkDotNet.Attributes;
using PcieEmu.Core.Platform;

namespace PcieEmu.Core.Benchmarks;

/// <summary>Issue 13: what a described topology costs per transaction. The same config and MMIO reads on the default
/// machine (baseline: one root port) and on an 82576 two switch levels further down (root port, switch upstream port,
/// downstream port), where routing and decoding walk the ports.</summary>
[MemoryDiagnoser]
public class TopologyBenchmarks
{
    private Machine _default = null!;
    private Machine _switched = null!;
    private ushort _deepRid;
    private ulong _defaultBar0, _deepBar0;

    [GlobalSetup]
    public void Setup()
    {
        _default = new Machine(new MachineOptions { RamSize = 16 << 20 });
        _switched = new Machine(new MachineOptions
        {
            RamSize = 16 << 20,
            Description = MachineDescription.Parse("""
                { "rootPorts": [ { "device": { "type": "intel-82576" } },
                  { "switch": { "downstreamPorts": [ { }, { "device": { "type": "intel-82576", "mac": "02:00:00:00:10:00" } } ] } } ] }
                """),
        });
        var deep = _switched.PhysicalFunctions[2];
        _deepRid = deep.Rid;
        _deepBar0 = deep.BarWindow(deep.Bars[0]).Base;
        var pf0 = _default.PhysicalFunctions[0];
        _defaultBar0 = pf0.BarWindow(pf0.Bars[0]).Base;
    }

    [GlobalCleanup]
    public void Cleanup() { _default.Dispose(); _switched.Dispose(); }

    /// <summary>Baseline: a dword of PF0's config space on the default machine.</summary>
    [Benchmark(Baseline = true)] public ulong ConfigReadDefault() => _default.ReadConfig(0x0100, 0x160, 4).Value;
    /// <summary>The same behind a switch on the second root port.</summary>
    [Benchmark] public ulong ConfigReadBehindSwitch() => _switched.ReadConfig(_deepRid, 0x160, 4).Value;
    /// <summary>PF0's STATUS register on the default machine.</summary>
    [Benchmark] public ulong MmioReadDefault() => _default.ReadMmio(_defaultBar0 + 8, 4).Value;
    /// <summary>The same behind a switch on the second root port.</summary>
    [Benchmark] public ulong MmioReadBehindSwitch() => _switched.ReadMmio(_deepBar0 + 8, 4).Value;
}
