namespace PcieEmu.Core.Iommu;

public sealed partial class VtdUnit
{
    private bool AnyPendingRecord
    {
        get
        {
            foreach (ulong hi in _frcdHi) if ((hi & (1UL << 63)) != 0) return true;
            return false;
        }
    }

    /// <summary>FSTS as software reads it: PFO and IQE (RW1C), PPF (any record's F), FRI.</summary>
    private uint FaultStatus =>
        _fstsW1c | (AnyPendingRecord ? VtdRegs.FstsPpf | _fri << VtdRegs.FstsFriShift : 0);

    /// <summary>The status bits whose setting is a fault-event interrupt condition.</summary>
    private uint FaultConditions => FaultStatus & (VtdRegs.FstsPfo | VtdRegs.FstsPpf | VtdRegs.FstsIqe | VtdRegs.FstsIce | VtdRegs.FstsIte);

    /// <summary>Fault recording register <paramref name="index"/> decoded (for debugging and tests).</summary>
    public VtdFaultRecord ReadFaultRecord(int index)
    {
        if ((uint)index >= VtdRegs.FaultRecordCount) throw new ArgumentOutOfRangeException(nameof(index), $"fault record index must be 0-{VtdRegs.FaultRecordCount - 1} (was {index})");
        ulong lo = _frcdLo[index], hi = _frcdHi[index];
        return new VtdFaultRecord((hi & (1UL << 63)) != 0, (ushort)hi, (VtdFaultReason)(byte)(hi >> 32), (hi & (1UL << 62)) != 0, lo & ~0xFFFUL);
    }

    /// <summary>
    /// Primary fault logging (VT-d §7.2.1): while PFO is set faults are dropped; a fault from a
    /// source that already has a pending record is collapsed into it; if the next record is
    /// still pending PFO is set; else the record is written, F set and the index advanced. The
    /// fault event fires when the first status bit goes up. Returns true when recorded or collapsed.
    /// </summary>
    private bool RecordFault(ushort sid, ulong iova, bool write, VtdFaultReason reason)
    {
        if (_machine.Events.Wants(Events.EventKind.Iommu)) _machine.Events.Publish(new Events.IommuFaultEvent(sid, iova, write, reason));
        if ((_fstsW1c & VtdRegs.FstsPfo) != 0) return false;
        for (int i = 0; i < VtdRegs.FaultRecordCount; i++)
            if ((_frcdHi[i] & (1UL << 63)) != 0 && (ushort)_frcdHi[i] == sid) return true;
        uint before = FaultConditions;
        if ((_frcdHi[_nextFrcd] & (1UL << 63)) != 0)
        {
            _fstsW1c |= VtdRegs.FstsPfo;
        }
        else
        {
            if ((before & VtdRegs.FstsPpf) == 0) _fri = (uint)_nextFrcd;   // FRI: where the first pending fault went
            _frcdLo[_nextFrcd] = iova & ~0xFFFUL;
            _frcdHi[_nextFrcd] = sid | (ulong)(byte)reason << 32 | (write ? 0 : 1UL << 62) | 1UL << 63;
            _nextFrcd = (_nextFrcd + 1) % VtdRegs.FaultRecordCount;
        }
        if (before == 0) RaiseEvent(ref _fectl, FaultEventAddress, _fedata, FaultEventVector);
        return (_fstsW1c & VtdRegs.FstsPfo) == 0;
    }

    /// <summary>An invalidation queue error: FSTS.IQE, a fault-event condition.</summary>
    private void SetInvalidationQueueError()
    {
        uint before = FaultConditions;
        _fstsW1c |= VtdRegs.FstsIqe;
        if (before == 0) RaiseEvent(ref _fectl, FaultEventAddress, _fedata, FaultEventVector);
    }

    /// <summary>After software cleared a fault status bit or a record's F: once no condition
    /// remains, a held (masked) fault event is dropped (FECTL.IP clears).</summary>
    private void AfterFaultStatusCleared()
    {
        if (FaultConditions == 0) _fectl &= ~VtdRegs.EctlIp;
    }

    /// <summary>An interrupt condition: the message goes out now, or is held in IP while IM is set.</summary>
    private void RaiseEvent(ref uint ctl, ulong address, uint data, uint vector)
    {
        if ((ctl & VtdRegs.EctlIm) != 0) { ctl |= VtdRegs.EctlIp; return; }
        SendMessage(address, data, vector);
    }
}
