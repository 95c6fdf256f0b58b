using BenchmarkDotNet.Attributes;
using PcieEmu.Core.Platform;
using PcieEmu.Core.Snapshots;

namespace PcieEmu.Core.Benchmarks;

/// <summary>The web view's state while the hot paths run.</summary>
public enum WebViewState
{
    /// <summary>No web view (serve --web off).</summary>
    Off,
    /// <summary>The view is on and a page was open (its live activity subscribed, counted, took snapshots), then closed: nothing may be left on the hot paths.</summary>
    OnNoPage,
    /// <summary>A page is open: the live activity subscribes to every kind and is drained on another thread (the cost of watching).</summary>
    PageOpen,
}

/// <summary>
/// Issue 14: with no page open the web view costs the Core hot paths nothing (Off vs OnNoPage
/// within 2%, same run); PageOpen shows what an open page costs. Baseline: Off.
/// </summary>
[MemoryDiagnoser]
[MedianColumn]
public class WebViewCostBenchmarks
{
    private NicBenchmarks _nic = null!;
    private Machine _m = null!;
    private LiveActivity? _live;
    private CancellationTokenSource? _stop;
    private Task? _drain;

    /// <summary>Web view state.</summary>
    [Params(WebViewState.Off, WebViewState.OnNoPage, WebViewState.PageOpen)]
    public WebViewState State { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _nic = new NicBenchmarks { Iommu = false };
        _nic.Setup();
        _m = _nic.Machine;
        if (State == WebViewState.Off) return;
        _live = new LiveActivity(_m);
        for (int i = 0; i < 1000; i++) _nic.VfToVf64();
        _live.Drain();
        foreach (var f in MachineSnapshots.Topology(_m).Functions) MachineSnapshots.Function(_m, f.Rid);
        MachineSnapshots.Iommu(_m, 0x100, 0x1000);
        if (State == WebViewState.OnNoPage)
        {
            _live.Dispose();
            _live = null;
            return;
        }
        _stop = new CancellationTokenSource();
        var live = _live;
        var token = _stop.Token;
        _drain = Task.Run(async () =>
        {
            while (!token.IsCancellationRequested)
            {
                live.Drain();
                try { await Task.Delay(100, token); } catch (OperationCanceledException) { }
            }
        });
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _stop?.Cancel();
        _drain?.Wait(TimeSpan.FromSeconds(10));
        _live?.Dispose();
        _stop?.Dispose();
        _nic.Cleanup();
    }

    /// <summary>A 4-byte config read of the PF's SR-IOV header.</summary>
    [Benchmark] public ulong ConfigRead4() => _m.ReadConfig(0x0100, 0x160, 4).Value;

    /// <summary>A 4-byte MMIO register read (VF0 STATUS).</summary>
    [Benchmark] public ulong MmioRead() => _nic.RegisterRead();

    /// <summary>VF0 → VF1 64-byte frames (one op = one frame).</summary>
    [Benchmark(OperationsPerInvoke = 256)] public void VfToVf64() => _nic.VfToVf64();
}
