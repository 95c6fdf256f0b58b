using PcieEmu.Core.Registers;
using PcieEmu.Core.Topology;
using static PcieEmu.Core.Devices.Igb.IgbRegs;

namespace PcieEmu.Core.Devices.Igb;

/// <summary>
/// The extended interrupt logic of one function (the PF or a VF): causes land in EICR; a cause
/// whose EIMS bit is set sends its MSI-X vector; after sending, EIAC bits auto-clear EICR and
/// EIAM bits auto-mask EIMS (for the PF only when GPIE.EIAME is set; a VF always auto-masks).
/// In MSI-X mode EICR bit n is vector n. The PF outside MSI-X mode (GPIE.Multiple_MSIX = 0)
/// sends vector 0 (MSI or INTx) for every new enabled cause in EICR or ICR.
/// EITR moderation (MSI-X mode): after vector n is sent, it is not sent again until EITR[n]'s
/// interval (bits 14:2, microseconds) has passed; a cause arriving earlier stays in EICR and is
/// sent when the interval ends (a timer that takes the machine lock), if still set and enabled.
/// Intervals are measured on, and the timer comes from, the machine's <see cref="TimeProvider"/>.
/// </summary>
internal sealed class IgbInterruptUnit
{
    private readonly Func<PciFunction?> _function;
    private readonly Lock _sync;
    private readonly Register[] _eitr;
    private readonly long[] _nextAllowed;
    private uint _held;
    private long _timerDue;
    private ITimer? _timer;
    private readonly TimeProvider _time;
    private readonly int _vectors;
    private readonly Register _eicr, _eims, _eiac, _eiam, _ivar0;
    private readonly Register[]? _pfIvar;
    private readonly Register? _gpie, _icr, _ims, _ivarMisc;

    /// <summary>A VF's unit: its own file's registers.</summary>
    public IgbInterruptUnit(RegisterFile vf, Func<PciFunction?> function, Lock sync, TimeProvider time)
    {
        _time = time;
        _function = function;
        _sync = sync;
        _vectors = Igb82576.VfMsixVectors;
        _eitr = [.. Enumerable.Range(0, _vectors).Select(i => vf[$"EITR[{i}]"])];
        _nextAllowed = new long[_vectors];
        (_eicr, _eims, _eiac, _eiam) = (vf["EICR"], vf["EIMS"], vf["EIAC"], vf["EIAM"]);
        _ivar0 = vf["IVAR0"];
        _ivarMisc = vf["IVAR_MISC"];
    }

    /// <summary>The PF's unit.</summary>
    public IgbInterruptUnit(RegisterFile pf, PciFunction function, Lock sync, TimeProvider time)
    {
        _time = time;
        _function = () => function;
        _sync = sync;
        _vectors = Igb82576.PfMsixVectors;
        _eitr = [.. Enumerable.Range(0, _vectors).Select(i => pf[$"EITR[{i}]"])];
        _nextAllowed = new long[_vectors];
        (_eicr, _eims, _eiac, _eiam) = (pf["EICR"], pf["EIMS"], pf["EIAC"], pf["EIAM"]);
        _pfIvar = [.. Enumerable.Range(0, 8).Select(i => pf[$"IVAR0[{i}]"])];
        _ivar0 = _pfIvar[0];
        _gpie = pf["GPIE"];
        _icr = pf["ICR"];
        _ims = pf["IMS"];
        _ivarMisc = pf["IVAR_MISC"];
    }

    private bool IsPf => _gpie != null;
    private bool MsixMode => !IsPf || (_gpie!.Value & GpieMsixMode) != 0;

    /// <summary>A queue event: <paramref name="queue"/> is the PF queue (0-15) for the PF, the VF's local queue (0-1) for a VF.</summary>
    public void QueueCause(int queue, bool tx)
    {
        if (MsixMode)
        {
            uint ivar = IsPf ? _pfIvar![queue & 7].Value : _ivar0.Value;
            int shift = 8 * ((queue >> (IsPf ? 3 : 0) & 1) * 2 + (tx ? 1 : 0));
            uint entry = ivar >> shift & 0xFF;
            if ((entry & IvarValid) == 0) return;
            Cause(1u << (int)(entry & 0x1F));
            return;
        }
        // PF, legacy/MSI: queue 0-3 RX → EICR bits 0-3, TX → bits 8-11; plus ICR RXDW/TXDW.
        uint eicrBit = queue < 4 ? 1u << (queue + (tx ? 8 : 0)) : 0;
        _eicr.Value |= eicrBit;
        _icr!.Value |= tx ? IcrTxdw : IcrRxdw;
        FireLegacy(eicrBit, tx ? IcrTxdw : IcrRxdw);
    }

    /// <summary>A "misc" cause: the VF mailbox (VF) or an ICR cause (PF: VMMB, LSC ...).</summary>
    public void OtherCause(uint icrBits = 0)
    {
        if (!IsPf)
        {
            uint e = _ivarMisc!.Value & 0xFF;
            if ((e & IvarValid) != 0) Cause(1u << (int)(e & 3));
            return;
        }
        _icr!.Value |= icrBits;
        IcrChanged(icrBits);
    }

    /// <summary>ICR bits were set (by a cause, ICS) or unmasked (IMS): signal them if enabled.</summary>
    public void IcrChanged(uint bits)
    {
        if ((_icr!.Value & _ims!.Value & bits) == 0) return;
        if (MsixMode)
        {
            uint e = _ivarMisc!.Value >> 8 & 0xFF;
            if ((e & IvarValid) != 0) Cause(1u << (int)(e & 0x1F));
            return;
        }
        _eicr.Value |= EicrOther;
        FireLegacy(EicrOther, bits);
    }

    /// <summary>Sets EICR bits and sends those that are enabled.</summary>
    public void Cause(uint eicrBits)
    {
        _eicr.Value |= eicrBits;
        Deliver(eicrBits);
    }

    /// <summary>Sends the enabled, pending causes among <paramref name="bits"/> (after EICS/EIMS writes).</summary>
    public void Deliver(uint bits)
    {
        if (!MsixMode) { FireLegacy(bits, 0); return; }
        uint fire = _eicr.Value & _eims.Value & bits;
        if (fire == 0) return;
        var fn = _function();
        if (fn == null) return;
        bool autoMask = !IsPf || (_gpie!.Value & GpieEiame) != 0;
        while (fire != 0)
        {
            int v = System.Numerics.BitOperations.TrailingZeroCount(fire);
            uint bit = 1u << v;
            fire &= ~bit;
            if (v >= _vectors) continue;
            if (!Moderation(v)) { _held |= bit; continue; }
            fn.RaiseInterrupt(v);
            if ((_eiac.Value & bit) != 0) _eicr.Value &= ~bit;
            if (autoMask && (_eiam.Value & bit) != 0) _eims.Value &= ~bit;
        }
    }

    /// <summary>True when vector <paramref name="v"/> may be sent now (and starts its interval);
    /// false when its EITR interval is still running (a timer is armed for its end).</summary>
    private bool Moderation(int v)
    {
        long interval = (_eitr[v].Value >> 2 & 0x1FFF) * _time.TimestampFrequency / 1_000_000;
        if (interval == 0) return true;
        long now = _time.GetTimestamp();
        if (now >= _nextAllowed[v])
        {
            _nextAllowed[v] = now + interval;
            return true;
        }
        // Arm the timer for the earliest held vector's end.
        if (_timerDue == 0 || _nextAllowed[v] < _timerDue)
        {
            _timerDue = _nextAllowed[v];
            _timer ??= _time.CreateTimer(static s => ((IgbInterruptUnit)s!).OnIntervalEnd(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            _timer.Change(_time.GetElapsedTime(now, _timerDue), Timeout.InfiniteTimeSpan);
        }
        return false;
    }

    private void OnIntervalEnd()
    {
        try
        {
            lock (_sync)
            {
                uint held = _held;
                _held = 0;
                _timerDue = 0;
                if (held != 0) Deliver(held);
            }
        }
        catch (ObjectDisposedException)
        {
            // The machine went away while the interval ran.
        }
    }

    /// <summary>Forgets running intervals and held vectors (function reset).</summary>
    public void Reset()
    {
        Array.Clear(_nextAllowed);
        _held = 0;
        _timerDue = 0;
    }

    private void FireLegacy(uint eicrBits, uint icrBits)
    {
        bool enabled = (_eicr.Value & _eims.Value & eicrBits) != 0 || (_icr!.Value & _ims!.Value & icrBits) != 0;
        if (!enabled) return;
        _icr!.Value |= IcrIntAsserted;
        _function()?.RaiseInterrupt(0);
    }

    /// <summary>ICR is being read and cleared: the interrupt is acknowledged, deassert INTx.</summary>
    public void IcrRead()
    {
        if (IsPf && !MsixMode) _function()?.DeassertIntx();
    }
}
