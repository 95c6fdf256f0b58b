using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using PcieEmu.Core.Memory;

namespace PcieEmu.Core.Iommu;

public sealed partial class VtdUnit
{
    /// <summary>A cached context entry (only present, valid entries are cached: CAP.CM = 0).</summary>
    private readonly record struct ContextCacheEntry(ushort Did, byte Tt, byte Levels, bool Fpd, ulong Slptptr);

    /// <summary>A cached leaf translation: the page frame, its level (1 = 4 KiB, 2 = 2 MiB,
    /// 3 = 1 GiB) and the permissions combined over every level of the walk.</summary>
    private readonly record struct IotlbEntry(ushort Did, byte Level, bool Read, bool Write, ulong PageBase);

    private readonly SetAssociativeCache<IotlbEntry> _iotlb;
    private readonly SetAssociativeCache<ContextCacheEntry> _contextCache;
    private bool _iotlbHasLargePages;

    private const byte TtSecondLevel = 0, TtDeviceTlb = 1, TtPassThrough = 2;
    private const ulong PteRead = 1, PteWrite = 2, PtePs = 1UL << 7;
    // Reserved in every present second-level entry: SNP (bit 11, ECAP.SC = 0), address bits
    // 51:HAW, and TM (bit 62, ECAP.DT = 0). Bits 10:8, 61:52 and 63 are ignored.
    private const ulong PteReservedCommon = (1UL << 11) | (((1UL << 52) - 1) & ~HawMask) | (1UL << 62);
    private const ulong RootLoReserved = 0xFFEUL | ~HawMask;                 // 11:1 and 63:HAW
    private const ulong ContextLoReserved = 0xFF0UL | ~HawMask;              // 11:4 and 63:HAW
    private const ulong ContextHiReserved = (1UL << 7) | ~((1UL << 24) - 1); // 7 and 63:24
    private const ulong InterruptRangeBase = 0xFEE0_0000, InterruptRangeEnd = 0xFEF0_0000;

    /// <summary>IOTLB hits so far.</summary>
    public long IotlbHits { get; private set; }
    /// <summary>IOTLB misses (page walks started) so far.</summary>
    public long IotlbMisses { get; private set; }
    /// <summary>Context entries fetched from memory (context-cache misses) so far.</summary>
    public long ContextFetches { get; private set; }
    /// <summary>Valid IOTLB entries now.</summary>
    public int IotlbCount => _iotlb.Count;

    /// <summary>The IOTLB's valid entries, decoded from their tags (the caller holds the machine lock; nothing changes).</summary>
    internal IReadOnlyList<VtdIotlbEntry> IotlbEntries()
    {
        var list = new List<VtdIotlbEntry>(_iotlb.Count);
        _iotlb.ForEachValid((tag, e) => list.Add(new VtdIotlbEntry((ushort)(tag >> 48), e.Level,
            (tag & ((1UL << 46) - 1)) << (3 + 9 * e.Level), e.Did, e.Read, e.Write, e.PageBase)));
        return list;
    }
    /// <summary>IOTLB capacity (sets × ways).</summary>
    public int IotlbCapacity => _iotlb.Capacity;
    /// <summary>Valid context-cache entries now.</summary>
    public int ContextCacheCount => _contextCache.Count;

    /// <inheritdoc/>
    /// <remarks>Called by DMA ports with the machine lock held. Faults are recorded (unless the
    /// context entry's FPD suppresses them, or <paramref name="record"/> is false) and reported
    /// in <see cref="DmaTranslation.FaultReason"/>.</remarks>
    public DmaTranslation Translate(ushort sourceId, ulong iova, bool write, bool record = true) =>
        TranslateRequest(sourceId, iova, write, VtdAddressType.Untranslated, record);

    /// <inheritdoc/>
    /// <remarks>The pages after the first are translated exactly as separate requests would be
    /// (IOTLB lookups and fills in the same order), but a fault on one of them only ends the
    /// range: it is recorded when the DMA port asks for that page itself. The range also stops
    /// where RAM ends, so a DMA that runs off RAM moves what a page-by-page one would.</remarks>
    public DmaTranslation TranslateRange(ushort sourceId, ulong iova, ulong length, bool write)
    {
        ulong ramEnd = _ram.Base + _ram.Size;
        if ((_gsts & VtdRegs.GcmdTe) == 0)
        {
            var id = DmaTranslation.Identity(iova);
            return iova >= _ram.Base && iova < ramEnd && length > id.Contiguous ? id with { Contiguous = Math.Min(length, ramEnd - iova) } : id;
        }
        var t = TranslateRequest(sourceId, iova, write, VtdAddressType.Untranslated, record: true);
        if (!t.Ok || t.Contiguous >= length) return t;
        ulong contiguous = t.Contiguous;
        // Fast path for the following 4 KiB pages: the context entry was just used (and so is
        // cached and most recently used); each page is an IOTLB lookup. Anything else (a miss,
        // a large page, pass-through) takes the general path for that page.
        int cslot = _contextCache.Find(sourceId, touch: false);
        if (cslot < 0) return t;
        var ctx = _contextCache[cslot];
        int widthShift = 12 + 9 * ctx.Levels;
        while (contiguous < length && t.Address + contiguous < ramEnd)
        {
            ulong va = iova + contiguous, expect = t.Address + contiguous;
            if (ctx.Tt == TtSecondLevel && va >> widthShift == 0)
            {
                int hit = _iotlb.Find(IotlbTag(sourceId, 1, va));
                if (hit >= 0)
                {
                    ref var e = ref _iotlb[hit];
                    if (e.Did == ctx.Did && e.Level == 1)
                    {
                        IotlbHits++;
                        if (!(write ? e.Write : e.Read) || e.PageBase != expect || (expect >= InterruptRangeBase && expect < InterruptRangeEnd)) break;
                        contiguous += 4096;
                        continue;
                    }
                }
            }
            var next = Lookup(sourceId, va, write, VtdAddressType.Untranslated, fill: true, out _, out _);
            if (!next.Ok || next.Address != expect) break;
            contiguous += next.Contiguous;
        }
        return t with { Contiguous = contiguous };
    }

    /// <summary>Translates a request with an explicit PCIe address type (ATS translation and
    /// translated requests are blocked: ECAP.DT = 0, so no context entry can allow them).</summary>
    public DmaTranslation TranslateRequest(ushort sourceId, ulong iova, bool write, VtdAddressType addressType, bool record = true)
    {
        if ((_gsts & VtdRegs.GcmdTe) == 0) return DmaTranslation.Identity(iova);
        var t = Lookup(sourceId, iova, write, addressType, fill: true, out bool suppress, out _);
        if (!t.Ok && record && !suppress) RecordFault(sourceId, iova, write, (VtdFaultReason)t.FaultReason);
        return t;
    }

    /// <summary>
    /// A DMA probe from <paramref name="rid"/> (the core of IommuService.TranslateAddress): the
    /// translation a DMA would get now. Unless <paramref name="dryRun"/>, it fills the caches and
    /// records a fault exactly as that DMA would; a dry run consults the caches (so it shows a
    /// stale entry) but changes nothing. Bus Master Enable is not checked: the probe asks the
    /// remapping unit, not the function. Takes the machine lock.
    /// </summary>
    public VtdProbeResult Probe(ushort rid, ulong address, bool write, bool dryRun,
        VtdAddressType addressType = VtdAddressType.Untranslated)
    {
        lock (_machine.SyncRoot)
        {
            if (!TranslationEnabled) return new VtdProbeResult(VtdProbeStatus.TranslationDisabled, address, VtdFaultReason.None, false);
            var t = Lookup(rid, address, write, addressType, fill: !dryRun, out bool suppress, out var status);
            if (t.Ok) return new VtdProbeResult(status, t.Address, VtdFaultReason.None, false);
            var reason = (VtdFaultReason)t.FaultReason;
            bool recorded = !dryRun && !suppress && RecordFault(rid, address, write, reason);
            return new VtdProbeResult(VtdProbeStatus.Fault, 0, reason, recorded);
        }
    }

    private static DmaTranslation Fault(VtdFaultReason reason) => new(false, 0, 0, (byte)reason);

    /// <summary>Faults FPD may suppress (VT-d §7.2.1: the "qualified" ones).</summary>
    private static bool IsQualified(VtdFaultReason r) => r is (>= VtdFaultReason.ContextNotPresent and <= VtdFaultReason.NextTableInvalid)
        or VtdFaultReason.PteReserved or VtdFaultReason.BlockedByTranslationType or VtdFaultReason.InterruptRange;

    private static ulong IotlbTag(ushort sid, int level, ulong iova) =>
        (ulong)sid << 48 | (ulong)level << 46 | (iova >> (3 + 9 * level));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private DmaTranslation Lookup(ushort sid, ulong iova, bool write, VtdAddressType at, bool fill,
        out bool suppress, out VtdProbeStatus status)
    {
        status = VtdProbeStatus.Fault;
        ContextCacheEntry ctx;
        int slot = _contextCache.Find(sid, touch: fill);
        if (slot >= 0) ctx = _contextCache[slot];
        else
        {
            var reason = FetchContext(sid, out ctx, out bool fpdBit);
            if (reason != VtdFaultReason.None)
            {
                suppress = fpdBit && IsQualified(reason);
                return Fault(reason);
            }
            if (fill) _contextCache.Insert(sid, ctx);
        }
        suppress = ctx.Fpd;   // every fault from here on is a qualified one

        if (at != VtdAddressType.Untranslated && ctx.Tt != TtDeviceTlb) return Fault(VtdFaultReason.BlockedByTranslationType);
        if (ctx.Tt == TtPassThrough)
        {
            status = VtdProbeStatus.PassThrough;
            return Output(iova, 4096 - (iova & 0xFFF));
        }
        if (iova >> (12 + 9 * ctx.Levels) != 0) return Fault(VtdFaultReason.AddressBeyondWidth);

        int maxLevel = _iotlbHasLargePages ? 3 : 1;
        for (int level = 1; level <= maxLevel; level++)
        {
            int hit = _iotlb.Find(IotlbTag(sid, level, iova), touch: fill);
            if (hit < 0) continue;
            ref var e = ref _iotlb[hit];
            if (e.Did != ctx.Did || e.Level != level) continue;
            if (fill) IotlbHits++;
            if (write ? !e.Write : !e.Read) return Fault(write ? VtdFaultReason.WriteNotPermitted : VtdFaultReason.ReadNotPermitted);
            status = VtdProbeStatus.Translated;
            return Leaf(e.PageBase, e.Level, iova);
        }

        if (fill) IotlbMisses++;
        var walked = Walk(ctx, iova, write, out var entry);
        if (walked != VtdFaultReason.None) return Fault(walked);
        if (fill)
        {
            _iotlb.Insert(IotlbTag(sid, entry.Level, iova), entry);
            if (entry.Level > 1) _iotlbHasLargePages = true;
        }
        status = VtdProbeStatus.Translated;
        return Leaf(entry.PageBase, entry.Level, iova);
    }

    private static DmaTranslation Leaf(ulong pageBase, int level, ulong iova)
    {
        ulong offsetMask = (1UL << (3 + 9 * level)) - 1;
        ulong off = iova & offsetMask;
        return Output(pageBase | off, offsetMask + 1 - off);
    }

    /// <summary>The output address check: nothing may be remapped into the interrupt range.</summary>
    private static DmaTranslation Output(ulong hpa, ulong contiguous)
    {
        if (hpa >= InterruptRangeBase && hpa < InterruptRangeEnd) return Fault(VtdFaultReason.InterruptRange);
        if (hpa < InterruptRangeBase && hpa + contiguous > InterruptRangeBase) contiguous = InterruptRangeBase - hpa;
        return new DmaTranslation(true, hpa, contiguous, 0);
    }

    private bool TryReadRam(ulong address, out ulong lo, out ulong hi)
    {
        if (!_ram.Contains(address, 16)) { lo = hi = 0; return false; }
        var s = _ram.GetSpan(address, 16);
        lo = BinaryPrimitives.ReadUInt64LittleEndian(s);
        hi = BinaryPrimitives.ReadUInt64LittleEndian(s[8..]);
        return true;
    }

    /// <summary>Reads root[bus] and context[devfn] from memory and checks them (VT-d §3.4, §9.1-9.3).</summary>
    private VtdFaultReason FetchContext(ushort sid, out ContextCacheEntry ctx, out bool fpdBit)
    {
        ctx = default; fpdBit = false;
        ContextFetches++;
        if (!TryReadRam(_rootTable + (ulong)(sid >> 8) * 16, out ulong rlo, out ulong rhi)) return VtdFaultReason.RootTableInvalid;
        if ((rlo & 1) == 0) return VtdFaultReason.RootNotPresent;
        if ((rlo & RootLoReserved) != 0 || rhi != 0) return VtdFaultReason.RootReserved;

        if (!TryReadRam((rlo & PageAddrMask) + (ulong)(sid & 0xFF) * 16, out ulong clo, out ulong chi)) return VtdFaultReason.ContextTableInvalid;
        // FPD is honoured whether or not the entry is present (VT-d §9.3).
        fpdBit = (clo & 2) != 0;
        if ((clo & 1) == 0) return VtdFaultReason.ContextNotPresent;
        if ((clo & ContextLoReserved) != 0 || (chi & ContextHiReserved) != 0) return VtdFaultReason.ContextReserved;
        byte tt = (byte)((clo >> 2) & 3);
        int aw = (int)(chi & 7);
        // TT 01 (device-TLB) needs ECAP.DT and TT 11 is reserved. The AW of a pass-through entry
        // is not used and not checked.
        if (tt is TtDeviceTlb or 3) return VtdFaultReason.ContextInvalid;
        if (tt == TtSecondLevel && ((VtdRegs.Sagaw >> aw) & 1) == 0) return VtdFaultReason.ContextInvalid;
        ctx = new ContextCacheEntry((ushort)(chi >> 8), tt, (byte)(aw + 2), fpdBit, clo & PageAddrMask);
        return VtdFaultReason.None;
    }

    /// <summary>Walks the second-level tables from the context entry's SLPTPTR: at most
    /// <see cref="ContextCacheEntry.Levels"/> reads, so a table that points at itself cannot loop.</summary>
    private VtdFaultReason Walk(in ContextCacheEntry ctx, ulong iova, bool write, out IotlbEntry leaf)
    {
        leaf = default;
        ulong table = ctx.Slptptr;
        bool r = true, w = true;
        for (int level = ctx.Levels; level >= 1; level--)
        {
            int shift = 3 + 9 * level;
            ulong pteAddr = table + ((iova >> shift) & 511) * 8;
            if (!_ram.Contains(pteAddr, 8)) return VtdFaultReason.NextTableInvalid;
            ulong pte = BinaryPrimitives.ReadUInt64LittleEndian(_ram.GetSpan(pteAddr, 8));
            bool pr = (pte & PteRead) != 0, pw = (pte & PteWrite) != 0;
            if (!pr && !pw) return write ? VtdFaultReason.WriteNotPermitted : VtdFaultReason.ReadNotPermitted;   // not present
            bool isLeaf = level == 1 || (level <= 3 && (pte & PtePs) != 0);
            ulong reserved = PteReservedCommon;
            if (level == 4) reserved |= PtePs;                                   // no 512 GiB pages
            else if (isLeaf && level > 1) reserved |= ((1UL << shift) - 1) & ~0xFFFUL;   // a large page is aligned
            if ((pte & reserved) != 0) return VtdFaultReason.PteReserved;
            if (write ? !pw : !pr) return write ? VtdFaultReason.WriteNotPermitted : VtdFaultReason.ReadNotPermitted;
            r &= pr; w &= pw;
            if (isLeaf)
            {
                leaf = new IotlbEntry(ctx.Did, (byte)level, r, w, pte & PageAddrMask);
                return VtdFaultReason.None;
            }
            table = pte & PageAddrMask;
        }
        return VtdFaultReason.NextTableInvalid;   // unreachable: level 1 is always a leaf
    }
}
