using PcieEmu.Core.Config;
using PcieEmu.Core.Config.Capabilities;
using PcieEmu.Core.Devices.Igb;
using PcieEmu.Core.Interrupts;
using PcieEmu.Core.Iommu;
using PcieEmu.Core.Topology;
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

    /// <summary>Kinds the checker subscribes to. Of their routine events (successful reads and DMAs)
    /// it takes config and MMIO reads only during the 100 ms after a VF Enable or an FLR, when a
    /// read can break a timing rule; otherwise the read and DMA hot paths build nothing for it.</summary>
    public const EventKinds Kinds = EventKinds.Config | EventKinds.Mmio | EventKinds.Dma | EventKinds.Iommu | EventKinds.Lifecycle | EventKinds.FrameDrop;

    private const EventKinds WindowKinds = EventKinds.Config | EventKinds.Mmio;

    private readonly Machine _machine;
    private readonly EventSubscription<MachineEvent>? _sub;
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
    private readonly Dictionary<ushort, bool> _vfMse = [];
    private readonly Dictionary<ushort, bool> _memDecode = [];
    private readonly Dictionary<ushort, bool> _msiOn = [];
    private readonly Dictionary<(ushort Rid, bool Rx, int Q), RingState> _rings = [];
    private readonly Dictionary<(ushort Pf, int Pool), MailboxState> _mailboxes = [];
    private readonly HashSet<ushort> _fromReset = [];

    /// <summary>Starts checking the events of <paramref name="machine"/> from now on, with a queue of
    /// <paramref name="capacity"/> events and at most <paramref name="maxViolations"/> kept.</summary>
    public DriverChecker(Machine machine, int capacity = 1 << 16, int maxViolations = 10_000)
    {
        ArgumentNullException.ThrowIfNull(machine);
        if (maxViolations < 1) throw new ArgumentOutOfRangeException(nameof(maxViolations), "maxViolations must be at least 1");
        _machine = machine;
        _maxViolations = maxViolations;
        _sub = machine.Events.Subscribe<MachineEvent>(Kinds, EventKinds.None, Watch, capacity, OverflowPolicy.Gap, static n => new GapEvent(n));
    }

    private long _windowEndNs = long.MinValue;

    // Runs on the publishing thread for each event offered: opens the readiness window (routine
    // config/MMIO reads wanted) at a VF Enable or FLR and closes it once 100 ms have passed.
    private MachineEvent? Watch(MachineEvent e)
    {
        if (e is LifecycleEvent { Change: LifecycleChange.VfAppeared or LifecycleChange.FunctionLevelReset })
        {
            Volatile.Write(ref _windowEndNs, e.TimestampNs + ReadyWaitNs);
            _sub?.SetRoutineKinds(WindowKinds);
        }
        else if (e.TimestampNs >= Volatile.Read(ref _windowEndNs) && _sub is { RoutineKinds: not EventKinds.None } sub)
        {
            sub.SetRoutineKinds(EventKinds.None);
        }
        return e;
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
            while (await _sub!.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false)) Drain();
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Stopped.
        }
    }

    /// <inheritdoc/>
    public void Dispose() => _sub!.Dispose();

    private void DrainLocked()
    {
        while (_sub!.Reader.TryRead(out var e)) Check(e);
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
            case FrameDropEvent x:
                if (x.Reason == FrameDropReason.NoRxDescriptors)
                    Record(Rules.IgbRxNoFreeDescriptors, x, $"frame of {x.Length} B dropped on RX queue {x.Queue}; RQDPC counted it");
                else
                    Record(Rules.IgbSpoofedSource, x, $"frame of {x.Length} B from TX queue {x.Queue} dropped; WVBR bit {x.Queue} set for the PF");
                break;
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
        if (Covers(c, ConfigRegs.Command)) _memDecode[c.Rid] = (ByteAt(c, c.After, ConfigRegs.Command) & ConfigRegs.CmdMemorySpace) != 0;
        if (!lay.IsVf && c.Offset >= 0x10 && c.Offset < 0x28 && _memDecode.GetValueOrDefault(c.Rid) && c.Old != c.After)
            Record(Rules.BarWriteWhileDecodeOn, c, $"BAR at 0x{c.Offset & ~3:X2} changed while the function decodes memory: for a moment it claims other addresses");
        if (lay.Sriov >= 0) CheckSriov(c, lay);
        bool msiTouched = lay.Msi >= 0 && Covers(c, lay.Msi + 2), msixTouched = lay.Msix >= 0 && Covers(c, lay.Msix + 3);
        if (msiTouched) _msiOn[c.Rid] = (ByteAt(c, c.After, lay.Msi + 2) & 1) != 0;
        if (msixTouched)
        {
            byte hi = ByteAt(c, c.After, lay.Msix + 3);
            var s = Msix(c.Rid, lay);
            s.Enabled = (hi & (MsixCapability.EnableBit >> 8)) != 0;
            s.FunctionMask = (hi & (MsixCapability.FunctionMaskBit >> 8)) != 0;
        }
        if ((msiTouched || msixTouched) && _msiOn.GetValueOrDefault(c.Rid) && _msix.TryGetValue(c.Rid, out var ms) && ms.Enabled)
            Record(Rules.MsiAndMsixEnabled, c, "both MSI Enable and MSI-X Enable are set: which one the function uses is undefined");
    }

    private void CheckSriov(ConfigAccessEvent c, FunctionLayout lay)
    {
        bool enabled = _vfEnable.GetValueOrDefault(c.Rid);
        int numVfs = lay.Sriov + SriovCapability.NumVfsReg;
        if (Covers(c, numVfs) || Covers(c, numVfs + 1))
        {
            uint oldV = Field16(c, c.Old, numVfs), newV = Field16(c, c.After, numVfs), asked = Field16(c, c.Value, numVfs);
            if (enabled)
                Record(Rules.NumVfsWhileEnabled, c, oldV == newV
                    ? $"NumVFs kept {oldV} (read-only while VF Enable = 1)"
                    : $"NumVFs changed {oldV} -> {newV} under enabled VFs");
            if (asked > lay.TotalVfs)
                Record(Rules.NumVfsAboveTotalVfs, c, $"NumVFs {asked} asked, TotalVFs is {lay.TotalVfs}; the device kept {newV}");
        }
        int page = lay.Sriov + SriovCapability.SystemPageSizeReg;
        if (enabled && c.Offset < page + 4 && c.Offset + c.Width > page)
            Record(Rules.SystemPageSizeWhileEnabled, c, "System Page Size written under enabled VFs: the VF BAR spacing would change under them");
        int vfBars = lay.Sriov + SriovCapability.VfBar0;
        if (enabled && _vfMse.GetValueOrDefault(c.Rid) && c.Offset < vfBars + 24 && c.Offset + c.Width > vfBars && c.Old != c.After)
            Record(Rules.VfBarWriteWhileVfMse, c, $"VF BAR{(c.Offset - vfBars) / 4} moved while the VFs decode it (VF MSE = 1)");
        int ctl = lay.Sriov + SriovCapability.Control;
        if (Covers(c, ctl))
        {
            byte before = ByteAt(c, c.Old, ctl), asked = ByteAt(c, c.Value, ctl), after = ByteAt(c, c.After, ctl);
            if ((before & SriovCapability.CtlVfEnable) != 0 && ((before ^ asked) & SriovCapability.CtlAriCapableHierarchy) != 0)
                Record(Rules.AriChangedWhileEnabled, c, $"ARI Capable Hierarchy {(before >> 4) & 1} -> {(asked >> 4) & 1} written under enabled VFs (reads {(after >> 4) & 1}): their routing IDs would change");
            _vfEnable[c.Rid] = (after & SriovCapability.CtlVfEnable) != 0;
            _vfMse[c.Rid] = (after & SriovCapability.CtlVfMse) != 0;
        }
    }

    private void CheckMmio(MmioAccessEvent m)
    {
        if (m.Bar < 0) { if (m.IsWrite) CheckIommuRegister(m); return; }
        CheckReady(m, config: false);
        if (m.Miss != MmioMiss.None)
        {
            string what = m.IsWrite ? "write dropped" : "read returned all ones";
            if (m.Miss == MmioMiss.PowerState) Record(Rules.MmioInD3Hot, m, $"not decoded: Unsupported Request, {what} (function not in D0)");
            else Record(Rules.MmioWithMemorySpaceOff, m, $"not decoded: Unsupported Request / master abort, {what} ({(m.Miss == MmioMiss.VfMemorySpaceOff ? "the PF's VF MSE is 0" : "Command.MSE is 0")})");
            return;
        }
        if (!m.IsWrite || Layout(m.Rid) is not { } lay) return;
        if (lay.Msix >= 0) CheckMsixBar(m, lay);
        if (m.Register is { } name && m.Bar == 0) CheckIgbRegister(m, lay, name);
    }

    private void CheckMsixBar(MmioAccessEvent m, FunctionLayout lay)
    {
        bool inTable = m.Bar == lay.TableBar && m.Offset >= lay.TableOffset && m.Offset < lay.TableOffset + 16u * (uint)lay.Vectors;
        bool inPba = m.Bar == lay.PbaBar && m.Offset >= lay.PbaOffset && m.Offset < lay.PbaOffset + 8u * (uint)((lay.Vectors + 63) / 64);
        if ((inTable || inPba) && m.Width < 4)
            Record(Rules.MsixPartialAccess, m, $"{m.Width}-byte write to the MSI-X {(inTable ? "Table" : "PBA")}: undefined on hardware");
        if (inPba) { Record(Rules.MsixPbaWrite, m, "write ignored: the PBA is read-only"); return; }
        if (!inTable) return;
        var s = Msix(m.Rid, lay);
        int entry = (int)((m.Offset - lay.TableOffset) / 16);
        int field = (int)((m.Offset - lay.TableOffset) % 16);
        int end = field + m.Width;
        if (field < 12 && s.Enabled && !s.FunctionMask && !s.Masked[entry])
            Record(Rules.MsixTableWriteWhileUnmasked, m, $"entry {entry} changed while unmasked; a message in flight may use a torn address/data pair");
        if (field <= 12 && end > 12)
            s.Masked[entry] = ((m.Value >> (8 * (12 - field))) & 1) != 0;
    }

    // ---------------- VT-d (its register block: rid 0, offsets from VtdRegs) ----------------

    private const uint GcmdPersistent = VtdRegs.GcmdTe | VtdRegs.GcmdEafl | VtdRegs.GcmdQie | VtdRegs.GcmdIre | VtdRegs.GcmdCfi;
    private const uint GcmdOneShot = VtdRegs.GcmdSrtp | VtdRegs.GcmdSfl | VtdRegs.GcmdWbf | VtdRegs.GcmdSirtp;
    private uint _gcmd;
    private bool _rootTableSet;

    private void CheckIommuRegister(MmioAccessEvent m)
    {
        if (m.Offset != VtdRegs.Gcmd || m.Width != 4) return;
        uint w = (uint)m.Value;
        uint changed = (w ^ _gcmd) & GcmdPersistent, oneShot = w & GcmdOneShot;
        int commands = System.Numerics.BitOperations.PopCount(changed) + System.Numerics.BitOperations.PopCount(oneShot);
        if (commands > 1)
            Record(Rules.VtdGcmdMoreThanOneCommand, m, $"{commands} commands in one GCMD write (0x{w:X8} against commanded 0x{_gcmd:X8}): the unit may act on any one of them");
        if ((changed & w & VtdRegs.GcmdTe) != 0 && !_rootTableSet && (oneShot & VtdRegs.GcmdSrtp) == 0)
            Record(Rules.VtdTranslationWithoutRootTable, m, "translation enabled with no root table latched: every DMA faults or walks address 0");
        if ((oneShot & VtdRegs.GcmdSrtp) != 0) _rootTableSet = true;
        _gcmd = w & GcmdPersistent;
    }

    // ---------------- 82576 rings and mailbox (by register name) ----------------

    private void CheckIgbRegister(MmioAccessEvent m, FunctionLayout lay, string name)
    {
        int bracket = name.IndexOf('[', StringComparison.Ordinal);
        string reg = bracket < 0 ? name : name[..bracket];
        int index = 0;
        if (bracket >= 0)
        {
            int close = name.IndexOf(']', bracket);
            if (close < 0 || !int.TryParse(name.AsSpan(bracket + 1, close - bracket - 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out index)) return;
        }
        uint v = (uint)m.Value;
        switch (reg)
        {
            case "TDBAL" or "RDBAL":
                if ((v & 0x7F) != 0) Record(Rules.IgbRingBaseUnaligned, m, $"bits 6:0 (0x{v & 0x7F:X2}) ignored: the device uses base 0x{v & ~0x7Fu:X8}");
                RingChange(m, Ring(m.Rid, reg[0] == 'R', index), reg);
                break;
            case "TDBAH" or "RDBAH":
                RingChange(m, Ring(m.Rid, reg[0] == 'R', index), reg);
                break;
            case "TDLEN" or "RDLEN":
            {
                if ((v & 0x7F) != 0) Record(Rules.IgbRingLenUnaligned, m, $"bits 6:0 ignored: the ring is {(v & ~0x7Fu) / 16} descriptors, not {v / 16.0:0.#}");
                var r = Ring(m.Rid, reg[0] == 'R', index);
                RingChange(m, r, reg);
                r.Length = v & 0xFFF80;
                r.LengthKnown = true;
                break;
            }
            case "TXDCTL" or "RXDCTL":
            {
                var r = Ring(m.Rid, reg[0] == 'R', index);
                bool enable = (v & IgbRegs.QueueEnable) != 0;
                if (enable && r.Enabled != true && r.LengthKnown && r.Length == 0)
                    Record(Rules.IgbQueueEnableWithoutRing, m, $"{(reg[0] == 'R' ? "RX" : "TX")} queue {index} enabled with no ring (length 0): it can fetch nothing");
                r.Enabled = enable;
                break;
            }
            case "TDT" or "RDT":
            {
                bool rx = reg[0] == 'R';
                var r = Ring(m.Rid, rx, index);
                if (r.LengthKnown && v >= r.Length / 16)
                    Record(rx ? Rules.IgbRdtBeyondRing : Rules.IgbTdtBeyondRing, m, $"tail {v} is beyond the ring of {r.Length / 16} descriptors; the device never reaches it");
                if (r.Enabled == false && v != (uint)m.Old)
                    Record(Rules.IgbDoorbellQueueDisabled, m, $"{(rx ? "RX" : "TX")} queue {index} is disabled: the descriptors handed over are not fetched");
                break;
            }
            case "VFMAILBOX" when lay.IsVf:
            {
                var mb = Mailbox(lay.PfRid, lay.VfIndex);
                mb.Vfu = (v & IgbRegs.VfmbVfu) != 0 && !mb.Pfu;
                break;
            }
            case "P2VMAILBOX" when !lay.IsVf:
            {
                var mb = Mailbox(m.Rid, index);
                mb.Pfu = (v & IgbRegs.P2vPfu) != 0 && !mb.Vfu;
                if ((v & IgbRegs.P2vRvfu) != 0) mb.Vfu = false;
                break;
            }
            case "VMBMEM":
            {
                var mb = lay.IsVf ? Mailbox(lay.PfRid, lay.VfIndex) : Mailbox(m.Rid, index / IgbRegs.MailboxWords);
                if (lay.IsVf ? !mb.Vfu : !mb.Pfu)
                    Record(Rules.IgbMailboxWriteWithoutOwnership, m, lay.IsVf
                        ? "VF wrote the mailbox buffer without holding VFU: the PF may be writing it at the same time"
                        : $"PF wrote pool {index / IgbRegs.MailboxWords}'s mailbox buffer without holding PFU: the VF may be writing it at the same time");
                break;
            }
        }
    }

    private void RingChange(MmioAccessEvent m, RingState r, string reg)
    {
        if (r.Enabled == true && (uint)m.Value != (uint)m.Old)
            Record(Rules.IgbRingChangedWhileEnabled, m, $"{reg} changed under an enabled queue: the device keeps fetching from what it latched");
    }

    private RingState Ring(ushort rid, bool rx, int q)
    {
        var key = (rid, rx, q);
        if (!_rings.TryGetValue(key, out var r)) _rings[key] = r = new RingState { LengthKnown = _fromReset.Contains(rid) };
        return r;
    }

    private MailboxState Mailbox(ushort pf, int pool)
    {
        if (!_mailboxes.TryGetValue((pf, pool), out var mb)) _mailboxes[(pf, pool)] = mb = new MailboxState();
        return mb;
    }

    // Forgets the ring and mailbox state of a function that was reset; its registers are back at their reset values.
    private void ResetDeviceState(ushort rid, bool known)
    {
        foreach (var k in _rings.Keys.Where(k => k.Rid == rid).ToList()) _rings.Remove(k);
        if (known) _fromReset.Add(rid); else _fromReset.Remove(rid);
        _memDecode.Remove(rid);
        _msiOn.Remove(rid);
        if (Layout(rid) is { IsVf: true } lay) _mailboxes.Remove((lay.PfRid, lay.VfIndex));
        else foreach (var k in _mailboxes.Keys.Where(k => k.Pf == rid).ToList()) _mailboxes.Remove(k);
    }

    private void CheckDma(DmaEvent d)
    {
        if (d.Message is { } kind)
        {
            string what = kind == InterruptKind.Msix ? "MSI-X" : "MSI";
            if (d.Result.Status == DmaStatus.BusMasterDisabled)
                Record(Rules.MessageWithBusMasterOff, d, $"{what} vector {d.Vector} not sent: the interrupt is lost");
            else
                Record(kind == InterruptKind.Msix ? Rules.MsixAddressOutsideMsiWindow : Rules.MsiAddressOutsideMsiWindow, d,
                    $"{what} vector {d.Vector} went out as a memory write to {TraceFormat.Addr(d.Iova)} ({d.Result.Status}): no interrupt was raised");
            return;
        }
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
        switch (l.Change)
        {
            case LifecycleChange.VfAppeared:
                _vfEnabledAt[l.Rid] = l.TimestampNs;
                _flrAt.Remove(l.Rid);
                _msix.Remove(l.Rid);
                _layouts.Remove(l.Rid);
                ResetDeviceState(l.Rid, known: true);
                break;
            case LifecycleChange.VfVanished:
                _vfEnabledAt.Remove(l.Rid);
                _flrAt.Remove(l.Rid);
                _msix.Remove(l.Rid);
                ResetDeviceState(l.Rid, known: false);
                _layouts.Remove(l.Rid);
                break;
            case LifecycleChange.FunctionLevelReset:
                _flrAt[l.Rid] = l.TimestampNs;
                _vfEnable.Remove(l.Rid);
                _vfMse.Remove(l.Rid);
                _msix.Remove(l.Rid);
                ResetDeviceState(l.Rid, known: true);
                break;
            case LifecycleChange.PlatformReset:
                _vfEnabledAt.Clear(); _flrAt.Clear(); _vfEnable.Clear(); _vfMse.Clear(); _msix.Clear();
                _rings.Clear(); _mailboxes.Clear(); _memDecode.Clear(); _msiOn.Clear(); _fromReset.Clear(); _layouts.Clear();
                _gcmd = 0; _rootTableSet = false;
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
                var msi = f.Find<MsiCapability>();
                var vf = f as VirtualFunction;
                lay = new FunctionLayout(sriov?.Offset ?? -1, sriov?.Parameters.TotalVfs ?? 0, msi?.Offset ?? -1,
                    msix?.Offset ?? -1, msix?.TableBar ?? -1, msix?.TableOffset ?? 0, msix?.PbaBar ?? -1, msix?.PbaOffset ?? 0, msix?.Vectors ?? 0,
                    vf != null, vf?.PhysicalFunction.Rid ?? 0, vf?.Index ?? 0);
            }
        }
        _layouts[rid] = lay;
        return lay;
    }

    private sealed record FunctionLayout(int Sriov, int TotalVfs, int Msi, int Msix, int TableBar, uint TableOffset, int PbaBar, uint PbaOffset,
        int Vectors, bool IsVf, ushort PfRid, int VfIndex);

    private sealed class MsixState(int vectors)
    {
        public bool Enabled, FunctionMask;
        public readonly bool[] Masked = Enumerable.Repeat(true, vectors).ToArray();   // Vector Control resets to masked
    }

    // A queue's ring as the driver last wrote it (Enabled null: no TXDCTL/RXDCTL write seen).
    private sealed class RingState
    {
        public uint Length;
        public bool LengthKnown;
        public bool? Enabled;
    }

    // Mailbox ownership of one pool, following the device's rule: a request is granted unless the other side holds it.
    private sealed class MailboxState
    {
        public bool Vfu, Pfu;
    }
}
