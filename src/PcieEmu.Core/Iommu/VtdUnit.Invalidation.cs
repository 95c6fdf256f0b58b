using System.Buffers.Binary;

namespace PcieEmu.Core.Iommu;

public sealed partial class VtdUnit
{
    /// <summary>Invalidation granularities (CIRG/CAIG, IIRG/IAIG and descriptor G fields).</summary>
    private const int GranularityNone = 0, GranularityGlobal = 1, GranularityDomain = 2, GranularityDeviceOrPage = 3;

    /// <summary>CCMD with ICC: invalidate, report the granularity used in CAIG, clear ICC.
    /// With queued invalidation enabled the register interface is not used by hardware: the
    /// request is ignored and CAIG reads 0, as it does for the reserved CIRG value 0.</summary>
    private void RegisterContextInvalidation()
    {
        int requested = (int)(_ccmd >> VtdRegs.CcmdCirgShift) & 3;
        int actual = QueuedInvalidationEnabled ? GranularityNone
            : InvalidateContextCache(requested, (ushort)_ccmd, (ushort)(_ccmd >> 16), (int)(_ccmd >> 32) & 3);
        _ccmd = (_ccmd & ~(VtdRegs.CcmdIcc | 3UL << VtdRegs.CcmdCaigShift)) | (ulong)actual << VtdRegs.CcmdCaigShift;
    }

    /// <summary>IOTLB with IVT: invalidate (page-selective uses IVA), report IAIG, clear IVT.</summary>
    private void RegisterIotlbInvalidation()
    {
        int requested = (int)(_iotlbReg >> VtdRegs.IotlbIirgShift) & 3;
        int actual = QueuedInvalidationEnabled ? GranularityNone
            : InvalidateIotlb(requested, (ushort)(_iotlbReg >> VtdRegs.IotlbDidShift), _iva & PageAddrMask, (int)(_iva & 0x3F));
        _iotlbReg = (_iotlbReg & ~(VtdRegs.IotlbIvt | 3UL << VtdRegs.IotlbIaigShift)) | (ulong)actual << VtdRegs.IotlbIaigShift;
    }

    /// <summary>Context-cache invalidation; returns the granularity performed (0 = request ignored).</summary>
    private int InvalidateContextCache(int granularity, ushort did, ushort sid, int functionMask)
    {
        switch (granularity)
        {
            case GranularityGlobal:
                _contextCache.Clear();
                return GranularityGlobal;
            case GranularityDomain:
                _contextCache.InvalidateWhere((_, e) => e.Did == did);
                return GranularityDomain;
            case GranularityDeviceOrPage:
                // FM masks 0, 1, 2 or 3 low bits of the function number (bits 2:0 of the SID).
                ulong ignore = (1UL << functionMask) - 1 << (3 - functionMask);
                _contextCache.InvalidateWhere((tag, _) => ((tag ^ sid) & ~ignore) == 0);
                return GranularityDeviceOrPage;
            default:
                return GranularityNone;
        }
    }

    /// <summary>IOTLB invalidation; returns the granularity performed. A page-selective request
    /// whose mask exceeds CAP.MAMV is done domain-selective (and reported so).</summary>
    private int InvalidateIotlb(int granularity, ushort did, ulong address, int addressMask)
    {
        switch (granularity)
        {
            case GranularityGlobal:
                _iotlb.Clear();
                _iotlbHasLargePages = false;
                return GranularityGlobal;
            case GranularityDomain:
                _iotlb.InvalidateWhere((_, e) => e.Did == did);
                return GranularityDomain;
            case GranularityDeviceOrPage:
                if (addressMask > VtdRegs.Mamv) goto case GranularityDomain;
                ulong size = 1UL << (12 + addressMask);
                ulong first = address & ~(size - 1), last = first + size - 1;
                _iotlb.InvalidateWhere((tag, e) =>
                {
                    if (e.Did != did) return false;
                    int shift = 3 + 9 * e.Level;
                    ulong pageFirst = (tag & ((1UL << 46) - 1)) << shift, pageLast = pageFirst + (1UL << shift) - 1;
                    return pageFirst <= last && first <= pageLast;
                });
                return GranularityDeviceOrPage;
            default:
                return GranularityNone;
        }
    }

    private const int DescContext = 1, DescIotlb = 2, DescWait = 5;
    // Reserved bits per descriptor type (bits 11:9, the upper type bits, are checked separately).
    private const ulong ContextDescLoReserved = 0xFFFC_0000_0000_F1C0UL;   // 8:6, 15:12, 63:50
    private const ulong IotlbDescLoReserved = 0xFFFF_FFFF_0000_F100UL;     // 8, 15:12, 63:32
    private const ulong IotlbDescHiReserved = 0xF80UL;                     // 11:7
    private const ulong WaitDescLoReserved = 0xFFFF_F100UL;                // 8, 31:12

    /// <summary>
    /// Runs descriptors from IQH to IQT (VT-d §6.5.2). Stops with FSTS.IQE set, the head on the
    /// offending descriptor, when a descriptor is invalid or unreadable, or when the tail lies
    /// beyond the queue; nothing runs while IQE is set. Bounded by the queue size.
    /// </summary>
    private void ProcessInvalidationQueue()
    {
        if (!QueuedInvalidationEnabled || (_fstsW1c & VtdRegs.FstsIqe) != 0) return;
        ulong tail = (_iqt >> 4) & 0x7FFF;
        if (tail >= _iqEntries) { SetInvalidationQueueError(); return; }
        while (_iqhIndex != tail)
        {
            if (!TryReadRam(_iqBase + _iqhIndex * 16, out ulong lo, out ulong hi) || !RunDescriptor(lo, hi))
            {
                SetInvalidationQueueError();
                return;
            }
            _iqhIndex = (_iqhIndex + 1) % _iqEntries;
        }
    }

    private bool RunDescriptor(ulong lo, ulong hi)
    {
        if ((lo & 0xE00) != 0) return false;   // type bits 11:9: only legacy descriptor types exist here
        int granularity = (int)(lo >> 4) & 3;
        switch ((int)(lo & 0xF))
        {
            case DescContext:
                if ((lo & ContextDescLoReserved) != 0 || hi != 0 || granularity == GranularityNone) return false;
                InvalidateContextCache(granularity, (ushort)(lo >> 16), (ushort)(lo >> 32), (int)(lo >> 48) & 3);
                return true;
            case DescIotlb:
                if ((lo & IotlbDescLoReserved) != 0 || (hi & IotlbDescHiReserved) != 0 || granularity == GranularityNone) return false;
                InvalidateIotlb(granularity, (ushort)(lo >> 16), hi & PageAddrMask, (int)(hi & 0x3F));
                return true;
            case DescWait:
                if ((lo & WaitDescLoReserved) != 0 || (hi & 3) != 0) return false;
                if ((lo & (1UL << 5)) != 0 && _ram.Contains(hi, 4))       // SW: status write
                    BinaryPrimitives.WriteUInt32LittleEndian(_ram.GetSpan(hi, 4), (uint)(lo >> 32));
                if ((lo & (1UL << 4)) != 0 && (_ics & VtdRegs.IcsIwc) == 0)  // IF: IWC, then the event
                {
                    _ics |= VtdRegs.IcsIwc;
                    RaiseEvent(ref _iectl, InvalidationEventAddress, _iedata, InvalidationEventVector);
                }
                return true;
            default:
                // Device-TLB (3), interrupt entry cache (4) and the scalable-mode types need
                // ECAP.DT / ECAP.IR / scalable mode, none of which this unit has.
                return false;
        }
    }
}
