using System.Buffers.Binary;
using BenchmarkDotNet.Attributes;
using PcieEmu.Core.Iommu;
using PcieEmu.Core.Platform;
using PcieEmu.Core.Topology;

namespace PcieEmu.Core.Benchmarks;

/// <summary>
/// VT-d translation cost (issue 4): an IOTLB hit, a 4-level walk on an IOTLB miss, and a 64 KiB
/// DMA through the remapping unit (4 KiB pages, adjacent or scattered frames) against a plain
/// 64 KiB copy of RAM in the same run (the baseline).
/// </summary>
[MemoryDiagnoser]
public class IommuBenchmarks
{
    private const ushort Rid = 0x0100;
    private const ulong TablesBase = 0x10_0000, DataBase = 0x100_0000, Iova = 0x10_0000_0000, ScatteredIova = Iova + 0x10_0000;
    private const int MissPages = 4096;        // 8 × the IOTLB: cycling through them always misses

    private Machine _m = null!;
    private Machine _identity = null!;
    private PciFunction _identityPf = null!;
    private VtdUnit _unit = null!;
    private PciFunction _pf = null!;
    private readonly byte[] _buffer = new byte[64 * 1024];
    private ulong _next = TablesBase;
    private int _missIndex;

    [GlobalSetup]
    public void Setup()
    {
        _m = new Machine(new MachineOptions { RamSize = 64 << 20 });
        _unit = _m.Iommu;
        _pf = _m.AllFunctions().Single(f => f.Rid == Rid);
        ulong root = Alloc(), ctx = Alloc(), top = Alloc();
        Q(root + 1 * 16, ctx | 1);                             // bus 1
        Q(ctx + 0 * 16, top | 1);                              // devfn 0: second-level, 4 levels
        Q(ctx + 0 * 16 + 8, 2 | 1 << 8);                       // AW 2, domain 1
        // Two 64 KiB windows of 16 4 KiB pages: one on adjacent frames (a buffer allocated in one
        // piece), one on the same frames in reverse order (every page a separate copy).
        for (int i = 0; i < 16; i++)
        {
            Map(top, Iova + (ulong)i * 4096, DataBase + (ulong)i * 4096);
            Map(top, ScatteredIova + (ulong)i * 4096, DataBase + (ulong)(15 - i) * 4096);
        }
        for (int i = 0; i < MissPages; i++) Map(top, Iova + 0x100_0000 + (ulong)i * 4096, DataBase + (ulong)(i % 256) * 4096);
        _unit.Write(VtdRegs.Rtaddr, 8, root);
        _unit.Write(VtdRegs.Gcmd, 4, VtdRegs.GcmdSrtp);
        _unit.Write(VtdRegs.Gcmd, 4, VtdRegs.GcmdTe);
        _identity = new Machine(new MachineOptions { RamSize = 64 << 20 });
        _identityPf = _identity.AllFunctions().Single(f => f.Rid == Rid);
        if (!_unit.Translate(Rid, Iova, false).Ok || !_pf.Dma.Read(Iova, _buffer).Ok) throw new InvalidOperationException("setup: translation failed");
    }

    [GlobalCleanup]
    public void Cleanup() { _m.Dispose(); _identity.Dispose(); }

    private ulong Alloc() { ulong p = _next; _next += 4096; return p; }

    private void Q(ulong address, ulong value) => BinaryPrimitives.WriteUInt64LittleEndian(_m.Ram.GetSpan(address, 8), value);

    private ulong R(ulong address) => BinaryPrimitives.ReadUInt64LittleEndian(_m.Ram.GetSpan(address, 8));

    private void Map(ulong top, ulong iova, ulong hpa)
    {
        ulong table = top;
        for (int level = 4; level > 1; level--)
        {
            ulong a = table + ((iova >> (3 + 9 * level)) & 511) * 8;
            if ((R(a) & 3) == 0) Q(a, Alloc() | 3);
            table = R(a) & ~0xFFFUL;
        }
        Q(table + ((iova >> 12) & 511) * 8, hpa | 3);
    }

    /// <summary>Translation of an address whose page is in the IOTLB.</summary>
    [Benchmark]
    public ulong TranslateIotlbHit() => _unit.Translate(Rid, Iova + 0x123, write: false).Address;

    /// <summary>Translation that misses the IOTLB: a 4-level walk in RAM plus the IOTLB fill.</summary>
    [Benchmark]
    public ulong TranslateWalk4Level()
    {
        _missIndex = (_missIndex + 1) & (MissPages - 1);
        return _unit.Translate(Rid, Iova + 0x100_0000 + (ulong)_missIndex * 4096, write: false).Address;
    }

    /// <summary>Baseline: a plain 64 KiB copy out of RAM.</summary>
    [Benchmark(Baseline = true)]
    public void PlainCopy64KiB() => _m.Ram.GetSpan(DataBase, _buffer.Length).CopyTo(_buffer);

    /// <summary>A 64 KiB device DMA read through the DMA port and the remapping unit: 16 IOTLB
    /// hits, adjacent frames, so one copy.</summary>
    [Benchmark]
    public int DmaRead64KiBThroughIommu() => _pf.Dma.Read(Iova, _buffer).BytesMoved;

    /// <summary>The same read from a buffer whose pages sit in scattered frames: 16 translations and 16 copies.</summary>
    [Benchmark]
    public int DmaRead64KiBThroughIommuScattered() => _pf.Dma.Read(ScatteredIova, _buffer).BytesMoved;

    /// <summary>The same DMA read with translation off (DMA port cost without the remapping unit).</summary>
    [Benchmark]
    public int DmaRead64KiBTranslationOff() => _identityPf.Dma.Read(DataBase, _buffer).BytesMoved;

    /// <summary>A 64 KiB device DMA write through the DMA port and the remapping unit.</summary>
    [Benchmark]
    public int DmaWrite64KiBThroughIommu() => _pf.Dma.Write(Iova, _buffer).BytesMoved;

    /// <summary>
    /// A load-generator view of the same cases for shared, noisy machines: every case runs in
    /// turn, round after round, and the table shows each case's best round, so all cases are
    /// compared under the same (least disturbed) conditions. Run with
    /// <c>dotnet run -c Release --project tests/PcieEmu.Core.Benchmarks -- --iommu-interleaved</c>.
    /// </summary>
    public static void RunInterleaved(int rounds = 60)
    {
        var b = new IommuBenchmarks();
        b.Setup();
        try
        {
            (string Name, Action Run, int Ops)[] cases =
            [
                (nameof(TranslateIotlbHit), () => b.TranslateIotlbHit(), 1_000_000),
                (nameof(TranslateWalk4Level), () => b.TranslateWalk4Level(), 200_000),
                (nameof(PlainCopy64KiB), b.PlainCopy64KiB, 5_000),
                (nameof(DmaRead64KiBThroughIommu), () => b.DmaRead64KiBThroughIommu(), 5_000),
                (nameof(DmaRead64KiBThroughIommuScattered), () => b.DmaRead64KiBThroughIommuScattered(), 5_000),
                (nameof(DmaRead64KiBTranslationOff), () => b.DmaRead64KiBTranslationOff(), 5_000),
                (nameof(DmaWrite64KiBThroughIommu), () => b.DmaWrite64KiBThroughIommu(), 5_000),
            ];
            var best = new double[cases.Length];
            Array.Fill(best, double.MaxValue);
            for (int r = 0; r < rounds; r++)
            {
                for (int k = 0; k < cases.Length; k++)
                {
                    long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
                    for (int i = 0; i < cases[k].Ops; i++) cases[k].Run();
                    double ns = System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalNanoseconds / cases[k].Ops;
                    best[k] = Math.Min(best[k], ns);
                }
            }
            double plain = best[2];
            Console.WriteLine($"| Case | best of {rounds} rounds | plain 64 KiB copy time / case time |");
            Console.WriteLine("|---|---:|---:|");
            for (int k = 0; k < cases.Length; k++)
                Console.WriteLine($"| {cases[k].Name} | {best[k]:F1} ns | {(k >= 2 ? (plain / best[k]).ToString("F2") + "x" : "")} |");
        }
        finally
        {
            b.Cleanup();
        }
    }
}
