using PcieEmu.Core.Config.Capabilities;
using PcieEmu.Core.Events;
using PcieEmu.Core.Memory;
using PcieEmu.Core.Platform;

namespace PcieEmu.Core.Checker;

/// <summary>
/// The driver-conduct checker: a subscriber of the machine's event path that keeps the state its
/// rules need (VF Enable and FLR times, VF Enable per PF, MSI-X masking) from the events alone and
/// records a <see cref="Violation"/> for every breach of a rule in <see cref="Rules"/>.
/// <para>
/// It never slows the machine: events wait in its bounded queue until <see cref="Drain"/> (or the
/// loop of <see cref="RunAsync"/>) checks them. If it falls behind it loses events and records a
/// <see cref="Rules.CheckerEventsLost"/> notice with the count. Timing rules use the events'
/// timestamps (the machine's <see cref="Machine.Time"/>).
/// </para>
/// </summary>
public sealed class DriverChecker : IDisposable
{
    /// <summary>100 ms in nanoseconds: the wait after VF Enable and after an FLR.</summary>
    public const long ReadyWaitNs = 100_000_000;

    /// <summary>Kinds the checker subscribes to.</summary>
    public const EventKinds Kinds = EventKinds.Config | EventKinds.Mmio | EventKinds.Dma | EventKinds.Iommu | EventKinds.Lifecycle;

    private readonly Machine _machine;
    private readonly EventSubscription<MachineEvent> _sub;
    private readonly Lock _lock = new();
    private readonly int _maxViolations;
    private readonly List<Violation> _violations = [];
    private ulong _nextSequence;
    private long _dropped;

    private readonly Dictionary<ushort, long> _vfEnabledAt = [];
    private readonly Dictionary<ushort, long> _flrAt = [];
    private readonly Dictionary<ushort, bool> _vfEnable = [];
    private readonly Dictionary<ushort, MsixState> _msix = [];
    private readonly Dictionary<ushort, FunctionLayout?> _layouts = [];

    /// <summary>Starts checking the events of <paramref name="machine"/> from now on, with a queue of
    /// <paramref name="capacity"/> events and at most <paramref name="maxViolations"/> kept.</summary>
    public DriverChecker(Machine machine, int capacity = 1 << 16, int maxViolations = 10_000)
    {
        ArgumentNullException.ThrowIfNull(machine);
        if (maxViolations < 1) throw new ArgumentOutOfRangeException(nameof(maxViolations), "maxViolations must be at least 1");
        _machine = machine;
        _maxViolations = maxViolations;
        _sub = machine.Events.Subscribe(Kinds, capacity: capacity);
    }

    /// <summary>Violations not kept because <c>maxViolations</c> were already recorded.</summary>
    public long Dropped { get { lock (_lock) return _dropped; } }

    /// <summary>Checks every queued event, then returns the violations so far (oldest first).</summary>
    public IReadOnlyList<Violation> Violations()
    {
        lock (_lock)
        {
            DrainLocked();
            return [.. _violations];
        }
    }

    /// <summary>Checks every queued event now.</summary>
    public void Drain()
    {
        lock (_lock) DrainLocked();
    }

    /// <summary>Checks queued events, then forgets the violations recorded so far; returns how many.</summary>
    public int Clear()
    {
        lock (_lock)
        {
            DrainLocked();
            int n = _violations.Count;
            _violations.Clear();
            _dropped = 0;
            return n;
        }
    }

    /// <summary>Checks events as they come until <paramref name="cancellationToken"/> fires.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        try
        {
            while (await _sub.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false)) Drain();
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Stopped.
        }
    }

    /// <inheritdoc/>
    public void Dispose() => _sub.Dispose();

    private void DrainLocked()
    {
        while (_sub.Reader.TryRead(out var e)) Check(e);
    }

    private void Record(Rule rule, MachineEvent e, string outcome, ushort? rid = null)
    {
        if (_violations.Count >= _maxViolations) { _dropped++; return; }
        _violations.Add(new Violation(++_nextSequence, rule, rid ?? e.Rid, e.TimestampNs,
            e is GapEvent ? 0 : e.Sequence, TraceFormat.Line(e), outcome));
    }

    private void Check(MachineEvent e)
    {
        switch (e)
        {
            case ConfigAccessEvent c: CheckConfig(c); break;
            case MmioAccessEvent m: CheckMmio(m); break;
            case DmaEvent d: CheckDma(d); break;
            case IommuFaultEvent f:
                Record(Rules.VtdFault, f, $"request aborted; fault reason 0x{(byte)f.Reason:X2} ({f.Reason}) for source {Topology.Bdf.Format(f.Rid)}");
                break;
            case LifecycleEvent l: OnLifecycle(l); break;
            case GapEvent g:
                Record(Rules.CheckerEventsLost, g, $"{g.Missed} event(s) were not checked", rid: 0);
                break;
        }
    }

    // Requests to a function during the 100 ms after its FLR or (for a VF) its VF Enable.
    private void CheckReady(MachineEvent e, bool config)
    {
        if (_flrAt.TryGetValue(e.Rid, out long flr))
        {
            if (e.TimestampNs - flr < ReadyWaitNs)
                Record(Rules.AccessAfterFlrBefore100Ms, e, $"answered {Ms(e.TimestampNs - flr)} after the FLR (a real function may still be resetting)");
            _flrAt.Remove(e.Rid);   // once per FLR; later requests are either reported above or on time
        }
        if (config && _vfEnabledAt.TryGetValue(e.Rid, out long on))
        {
            if (e.TimestampNs - on < ReadyWaitNs)
                Record(Rules.VfAccessBefore100Ms, e, $"answered {Ms(e.TimestampNs - on)} after VF Enable (a real VF may answer CRS or UR)");
            _vfEnabledAt.Remove(e.Rid);
        }
    }

    private static string Ms(long ns) => $"{ns / 1e6:0.###} ms";

    private void CheckConfig(ConfigAccessEvent c)
    {
        CheckReady(c, config: true);
        if (!c.IsWrite || c.Status != AddressSpace.CompletionStatus.Successful) return;
        if (Layout(c.Rid) is not { } lay) return;
        if (lay.Sriov >= 0)
        {
            int numVfs = lay.Sriov + SriovCapability.NumVfsReg;
            if (Covers(c, numVfs) || Covers(c, numVfs + 1))
            {
                if (_vfEnable.GetValueOrDefault(c.Rid))
                {
                    uint oldV = Field16(c, c.Old, numVfs), newV = Field16(c, c.After, numVfs);
                    Record(Rules.NumVfsWhileEnabled, c, oldV == newV
                        ? $"NumVFs kept {oldV} (read-only while VF Enable = 1)"
                        : $"NumVFs changed {oldV} -> {newV} under enabled VFs");
                }
            }
            int ctl = lay.Sriov + SriovCapability.Control;
            if (Covers(c, ctl)) _vfEnable[c.Rid] = (ByteAt(c, c.After, ctl) & SriovCapability.CtlVfEnable) != 0;
        }
        if (lay.Msix >= 0 && Covers(c, lay.Msix + 3))
        {
            byte hi = ByteAt(c, c.After, lay.Msix + 3);
            var s = Msix(c.Rid, lay);
            s.Enabled = (hi & (MsixCapability.EnableBit >> 8)) != 0;
            s.FunctionMask = (hi & (MsixCapability.FunctionMaskBit >> 8)) != 0;
        }
    }

    private void CheckMmio(MmioAccessEvent m)
    {
        if (m.Bar < 0) return;   // the IOMMU block
        CheckReady(m, config: false);
        if (!m.IsWrite || Layout(m.Rid) is not { } lay || lay.Msix < 0 || m.Bar != lay.TableBar) return;
        if (m.Offset < lay.TableOffset || m.Offset >= lay.TableOffset + 16u * (uint)lay.Vectors) return;
        var s = Msix(m.Rid, lay);
        int entry = (int)((m.Offset - lay.TableOffset) / 16);
        int field = (int)((m.Offset - lay.TableOffset) % 16);
        int end = field + m.Width;
        if (field < 12 && s.Enabled && !s.FunctionMask && !s.Masked[entry])
            Record(Rules.MsixTableWriteWhileUnmasked, m, $"entry {entry} changed while unmasked; a message in flight may use a torn address/data pair");
        if (field <= 12 && end > 12)
            s.Masked[entry] = ((m.Value >> (8 * (12 - field))) & 1) != 0;
    }

    private void CheckDma(DmaEvent d)
    {
        switch (d.Result.Status)
        {
            case DmaStatus.BusMasterDisabled:
                Record(Rules.BusMasterOff, d, $"request not issued; {d.Length} B dropped");
                break;
            case DmaStatus.UnsupportedRequest:
                Record(Rules.DmaUnsupportedRequest, d, $"completed UR after {d.Result.BytesMoved} B; the rest of the transfer aborted");
                break;
        }
    }

    private void OnLifecycle(LifecycleEvent l)
    {
        _layouts.Clear();   // functions come and go: resolve layouts again
        switch (l.Change)
        {
            case LifecycleChange.VfAppeared:
                _vfEnabledAt[l.Rid] = l.TimestampNs;
                _flrAt.Remove(l.Rid);
                _msix.Remove(l.Rid);
                break;
            case LifecycleChange.VfVanished:
                _vfEnabledAt.Remove(l.Rid);
                _flrAt.Remove(l.Rid);
                _msix.Remove(l.Rid);
                break;
            case LifecycleChange.FunctionLevelReset:
                _flrAt[l.Rid] = l.TimestampNs;
                _vfEnable.Remove(l.Rid);
                _msix.Remove(l.Rid);
                break;
            case LifecycleChange.PlatformReset:
                _vfEnabledAt.Clear(); _flrAt.Clear(); _vfEnable.Clear(); _msix.Clear();
                break;
        }
    }

    private static bool Covers(ConfigAccessEvent c, int offset) => offset >= c.Offset && offset < c.Offset + c.Width;
    private static byte ByteAt(ConfigAccessEvent c, uint value, int offset) => (byte)(value >> (8 * (offset - c.Offset)));

    // A 16-bit register's bytes that this access covers, from value (bytes it does not cover read as 0).
    private static uint Field16(ConfigAccessEvent c, uint value, int offset) =>
        (Covers(c, offset) ? ByteAt(c, value, offset) : 0u) | (Covers(c, offset + 1) ? (uint)ByteAt(c, value, offset + 1) << 8 : 0u);

    private MsixState Msix(ushort rid, FunctionLayout lay)
    {
        if (!_msix.TryGetValue(rid, out var s)) _msix[rid] = s = new MsixState(lay.Vectors);
        return s;
    }

    // Where a function's capabilities are (static per function): read once, under the machine lock.
    private FunctionLayout? Layout(ushort rid)
    {
        if (_layouts.TryGetValue(rid, out var lay)) return lay;
        lock (_machine.SyncRoot)
        {
            var f = _machine.RouteConfig(rid);
            if (f != null)
            {
                var sriov = f.Find<SriovCapability>();
                var msix = f.Find<MsixCapability>();
                lay = new FunctionLayout(sriov?.Offset ?? -1, msix?.Offset ?? -1, msix?.TableBar ?? -1, msix?.TableOffset ?? 0, msix?.Vectors ?? 0);
            }
        }
        _layouts[rid] = lay;
        return lay;
    }

    private sealed record FunctionLayout(int Sriov, int Msix, int TableBar, uint TableOffset, int Vectors);

    private sealed class MsixState(int vectors)
    {
        public bool Enabled, FunctionMask;
        public readonly bool[] Masked = Enumerable.Repeat(true, vectors).ToArray();   // Vector Control resets to masked
    }
}
