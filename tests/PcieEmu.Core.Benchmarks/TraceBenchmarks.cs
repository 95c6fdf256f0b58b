using BenchmarkDotNet.Attributes;
using PcieEmu.Core.Events;
using PcieEmu.Core.Platform;

namespace PcieEmu.Core.Benchmarks;

/// <summary>How the event path is used during a run.</summary>
public enum TraceMode
{
    /// <summary>Nobody subscribed: each source checks one flag and builds nothing.</summary>
    Off,
    /// <summary>The path is live (a subscriber to lifecycle events, as the interrupt stream or a
    /// checker would be) but nobody wants config, MMIO, DMA or frames: same one-flag check.</summary>
    OnNoSubscriber,
    /// <summary>A trace subscriber of every kind, drained by another thread: the real cost of tracing.</summary>
    Tracing,
    /// <summary>The driver-conduct checker (serve's default), checking on another thread: its
    /// kinds (config, MMIO, DMA, VT-d faults, lifecycle) are built and checked.</summary>
    Checking,
}

/// <summary>
/// The cost of the event path on the hot paths (issue 11): config read, MMIO register read and
/// VF → VF 64-byte frames with tracing off, on without a subscriber for those kinds, and on with
/// a subscriber, in the same run (baseline: Off).
/// </summary>
[MemoryDiagnoser]
[MedianColumn]
public class TraceCostBenchmarks
{
    private NicBenchmarks _nic = null!;
    private Machine _m = null!;
    private EventSubscription<MachineEvent>? _sub;
    private CancellationTokenSource? _stop;
    private Task? _drain;
    private Checker.DriverChecker? _checker;

    /// <summary>Tracing mode.</summary>
    [Params(TraceMode.Off, TraceMode.OnNoSubscriber, TraceMode.Tracing, TraceMode.Checking)]
    public TraceMode Mode { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _nic = new NicBenchmarks { Iommu = false };
        _nic.Setup();
        _m = _nic.Machine;
        if (Mode == TraceMode.Off) return;
        _stop = new CancellationTokenSource();
        if (Mode == TraceMode.Checking)
        {
            _checker = new Checker.DriverChecker(_m);
            var c = _checker;
            var stop = _stop.Token;
            _drain = Task.Run(() => c.RunAsync(stop));
            return;
        }
        _sub = _m.Events.Subscribe(Mode == TraceMode.Tracing ? EventKinds.All : EventKinds.Lifecycle, capacity: 1 << 16);
        var reader = _sub.Reader;
        var token = _stop.Token;
        _drain = Task.Run(async () =>
        {
            try { while (await reader.WaitToReadAsync(token)) while (reader.TryRead(out _)) { } }
            catch (OperationCanceledException) { }
        });
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _stop?.Cancel();
        _sub?.Dispose();
        _drain?.Wait(TimeSpan.FromSeconds(10));
        _checker?.Dispose();
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

/// <summary>
/// <c>serve --trace</c> throughput: events recorded to a file per second. One op records
/// 1,000,000 config events (published no faster than the writer keeps up, so none is lost).
/// </summary>
[MemoryDiagnoser]
[MedianColumn]
public class TraceRecorderBenchmarks
{
    private const int Events = 1_000_000;
    private string _path = null!;
    private readonly ConfigAccessEvent[] _pool = new ConfigAccessEvent[16];

    [GlobalSetup]
    public void Setup()
    {
        _path = Path.Combine(Path.GetTempPath(), $"pcie-emu-trace-bench-{Environment.ProcessId}.trace");
        for (int i = 0; i < _pool.Length; i++)
            _pool[i] = new ConfigAccessEvent(0x0100, true, 0x168, 2, 9, 0, 9, AddressSpace.CompletionStatus.Successful)
            { Register = "SR-IOV Control", Fields = "VF Enable 0->1, VF MSE 0->1" };
    }

    [GlobalCleanup]
    public void Cleanup() => File.Delete(_path);

    /// <summary>The recorder's formatting share: 1 M lines into a reused buffer, no file, no queue.</summary>
    [Benchmark(OperationsPerInvoke = Events)]
    public int FormatOnly()
    {
        var sb = new System.Text.StringBuilder(64 * 1024);
        int n = 0;
        for (int i = 0; i < Events; i++)
        {
            TraceFormat.AppendLine(sb, _pool[i & 15]);
            if (sb.Length > 32 * 1024) { n += sb.Length; sb.Clear(); }
        }
        return n + sb.Length;
    }

    /// <summary>Records 1 M events to a file; the op ends when the last is written.</summary>
    [Benchmark(OperationsPerInvoke = Events)]
    public long RecordToFile()
    {
        var bus = new EventBus();
        long written;
        using (var rec = TraceRecorder.ToFile(bus, _path))
        {
            for (int i = 0; i < Events; i++)
            {
                while (bus.Published - rec.Written > 30_000) Thread.Yield();
                // Events are stamped on publish; a fresh one per publish is what the machine does.
                var t = _pool[i & 15];
                bus.Publish(new ConfigAccessEvent(t.Rid, t.IsWrite, t.Offset, t.Width, t.Value, t.Old, t.After, t.Status) { Register = t.Register, Fields = t.Fields });
            }
            while (rec.Written + rec.Missed < Events) Thread.Yield();
            if (rec.Missed != 0) throw new InvalidOperationException($"the recorder lost {rec.Missed} events");
            written = rec.Written;
        }
        return written;
    }
}
