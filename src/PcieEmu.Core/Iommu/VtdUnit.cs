using PcieEmu.Core.AddressSpace;
using PcieEmu.Core.Interrupts;
using PcieEmu.Core.Memory;
using PcieEmu.Core.Platform;

namespace PcieEmu.Core.Iommu;

/// <summary>
/// The VT-d DMA remapping unit (legacy mode): its register block (an <see cref="IMmioRegion"/>
/// at <see cref="MachineOptions.IommuBase"/>) and the translation every DMA goes through (an
/// <see cref="IDmaRemapper"/>). It walks root, context and second-level tables in host RAM,
/// caches context entries and translations until software invalidates them (register-based or
/// queued), records faults in 8 fault recording registers and signals the fault-event and
/// invalidation-event messages. See docs/iommu.md.
/// <para>
/// Concurrency: like every device in the machine, the unit relies on the machine lock. Register
/// accesses and DMA translations arrive with <see cref="Machine.SyncRoot"/> held (MMIO
/// transactions and device work take it); <see cref="Probe"/> takes it itself.
/// </para>
/// <para>
/// The unit is not a PCI function. Its messages are memory writes it makes itself (not
/// remapped); when they land in the MSI window they are published with routing ID 0x0000 (the
/// root complex), kind <see cref="InterruptKind.IommuFault"/>, vector
/// <see cref="FaultEventVector"/> or <see cref="InvalidationEventVector"/>.
/// </para>
/// </summary>
public sealed partial class VtdUnit : IMmioRegion, IDmaRemapper
{
    /// <summary>Routing ID the unit's own messages carry on the interrupt stream.</summary>
    public const ushort MessageRid = 0x0000;
    /// <summary>Vector reported for the fault-event message.</summary>
    public const uint FaultEventVector = 0;
    /// <summary>Vector reported for the invalidation-event message.</summary>
    public const uint InvalidationEventVector = 1;

    private readonly Machine _machine;
    private readonly HostRam _ram;

    // ---- Register state (see VtdRegs for layouts). ----
    private uint _gsts;
    private ulong _rtaddr;          // RTADDR as software wrote it
    private ulong _rootTable;       // latched by GCMD.SRTP
    private ulong _ccmd;
    private uint _fstsW1c;          // PFO and IQE (PPF and FRI are derived)
    private uint _fri;
    private uint _fectl, _fedata, _feaddr, _feuaddr;
    private ulong _iqhIndex;
    private ulong _iqt, _iqa;
    private ulong _iqBase, _iqEntries;  // latched when QIE is set
    private uint _ics;
    private uint _iectl, _iedata, _ieaddr, _ieuaddr;
    private ulong _iva, _iotlbReg;
    private readonly ulong[] _frcdLo = new ulong[VtdRegs.FaultRecordCount];
    private readonly ulong[] _frcdHi = new ulong[VtdRegs.FaultRecordCount];
    private int _nextFrcd;

    /// <summary>Creates the unit for <paramref name="machine"/> with the given cache geometry.</summary>
    /// <param name="machine">The machine whose RAM holds the tables.</param>
    /// <param name="iotlbSets">IOTLB sets (power of two).</param>
    /// <param name="iotlbWays">IOTLB ways per set.</param>
    /// <param name="contextSets">Context-cache sets (power of two).</param>
    /// <param name="contextWays">Context-cache ways per set.</param>
    public VtdUnit(Machine machine, int iotlbSets = 64, int iotlbWays = 8, int contextSets = 16, int contextWays = 4)
    {
        ArgumentNullException.ThrowIfNull(machine);
        _machine = machine;
        _ram = machine.Ram;
        _iotlb = new SetAssociativeCache<IotlbEntry>(iotlbSets, iotlbWays);
        _contextCache = new SetAssociativeCache<ContextCacheEntry>(contextSets, contextWays);
        Reset();
    }

    /// <summary>Translation is enabled (GSTS.TES).</summary>
    public bool TranslationEnabled => (_gsts & VtdRegs.GcmdTe) != 0;
    /// <summary>Queued invalidation is enabled (GSTS.QIES).</summary>
    public bool QueuedInvalidationEnabled => (_gsts & VtdRegs.GcmdQie) != 0;
    /// <summary>The root table address latched by the last SRTP command.</summary>
    public ulong ActiveRootTable => _rootTable;

    /// <summary>Power-on state: translation off, caches empty, fault records clear, event messages masked.</summary>
    public void Reset()
    {
        _gsts = 0; _rtaddr = 0; _rootTable = 0; _ccmd = 0;
        _fstsW1c = 0; _fri = 0;
        _fectl = VtdRegs.EctlIm; _fedata = 0; _feaddr = 0; _feuaddr = 0;
        _iqhIndex = 0; _iqt = 0; _iqa = 0; _iqBase = 0; _iqEntries = 256;
        _ics = 0;
        _iectl = VtdRegs.EctlIm; _iedata = 0; _ieaddr = 0; _ieuaddr = 0;
        _iva = 0; _iotlbReg = 0;
        Array.Clear(_frcdLo); Array.Clear(_frcdHi);
        _nextFrcd = 0;
        _iotlb.Clear(); _contextCache.Clear(); _iotlbHasLargePages = false;
    }

    // ---------------- Register block ----------------

    private static bool Is64(int off) => off switch
    {
        VtdRegs.Cap or VtdRegs.Ecap or VtdRegs.Rtaddr or VtdRegs.Ccmd or VtdRegs.Iqh or VtdRegs.Iqt
            or VtdRegs.Iqa or VtdRegs.Iva or VtdRegs.Iotlb => true,
        _ => off >= VtdRegs.Frcd && off < VtdRegs.Frcd + 16 * VtdRegs.FaultRecordCount,
    };

    /// <summary>Reads a register. 8-byte accesses read a 64-bit register (or two 32-bit ones);
    /// 4-byte accesses read a 32-bit register or half of a 64-bit one; 1- and 2-byte reads
    /// return the bytes of the containing dword. Unimplemented offsets read 0.</summary>
    public ulong Read(ulong offset, int width)
    {
        if (offset >= Machine.IommuRegisterSize) return 0;
        int off = (int)offset;
        switch (width)
        {
            case 8:
                return Is64(off) ? Read64(off) : ReadDword(off) | (ulong)ReadDword(off + 4) << 32;
            case 4:
                return ReadDword(off);
            default:
                uint d = ReadDword(off & ~3);
                return (d >> (8 * (off & 3))) & (width == 1 ? 0xFFu : 0xFFFFu);
        }
    }

    private uint ReadDword(int off)
    {
        int q = off & ~7;
        if (Is64(q)) return (uint)(Read64(q) >> (off == q ? 0 : 32));
        return Read32(off);
    }

    private ulong Read64(int off)
    {
        switch (off)
        {
            case VtdRegs.Cap: return VtdRegs.CapValue;
            case VtdRegs.Ecap: return VtdRegs.EcapValue;
            case VtdRegs.Rtaddr: return _rtaddr;
            case VtdRegs.Ccmd: return _ccmd;
            case VtdRegs.Iqh: return _iqhIndex << 4;
            case VtdRegs.Iqt: return _iqt;
            case VtdRegs.Iqa: return _iqa;
            case VtdRegs.Iva: return 0;                 // write-only
            case VtdRegs.Iotlb: return _iotlbReg;
        }
        int rel = off - VtdRegs.Frcd;
        return (rel & 8) == 0 ? _frcdLo[rel >> 4] : _frcdHi[rel >> 4];
    }

    private uint Read32(int off) => off switch
    {
        VtdRegs.Ver => VtdRegs.Version,
        VtdRegs.Gcmd => 0,                              // write-only
        VtdRegs.Gsts => _gsts,
        VtdRegs.Fsts => FaultStatus,
        VtdRegs.Fectl => _fectl,
        VtdRegs.Fedata => _fedata,
        VtdRegs.Feaddr => _feaddr,
        VtdRegs.Feuaddr => _feuaddr,
        VtdRegs.Ics => _ics,
        VtdRegs.Iectl => _iectl,
        VtdRegs.Iedata => _iedata,
        VtdRegs.Ieaddr => _ieaddr,
        VtdRegs.Ieuaddr => _ieuaddr,
        _ => 0,
    };

    /// <summary>Writes a register (4 or 8 bytes; VT-d defines no narrower accesses, so 1- and
    /// 2-byte writes are dropped). Read-only bits and unimplemented offsets ignore writes.</summary>
    public void Write(ulong offset, int width, ulong value)
    {
        if (offset >= Machine.IommuRegisterSize) return;
        int off = (int)offset;
        if (width == 8)
        {
            if (Is64(off)) Write64(off, value, ulong.MaxValue);
            else { Write32(off, (uint)value); Write32(off + 4, (uint)(value >> 32)); }
        }
        else if (width == 4)
        {
            int q = off & ~7;
            if (Is64(q))
            {
                int shift = off == q ? 0 : 32;
                Write64(q, (value & 0xFFFF_FFFF) << shift, 0xFFFF_FFFFUL << shift);
            }
            else Write32(off, (uint)value);
        }
    }

    private const ulong HawMask = (1UL << VtdRegs.Haw) - 1;
    private const ulong PageAddrMask = HawMask & ~0xFFFUL;

    private static ulong Merge(ulong old, ulong value, ulong mask, ulong writable) =>
        (old & ~(mask & writable)) | (value & mask & writable);

    private void Write64(int off, ulong value, ulong mask)
    {
        switch (off)
        {
            case VtdRegs.Rtaddr:
                _rtaddr = Merge(_rtaddr, value, mask, PageAddrMask);   // TTM 11:10 reads 0: only legacy mode
                return;
            case VtdRegs.Ccmd:
                _ccmd = Merge(_ccmd, value, mask, 0xE000_0003_FFFF_FFFFUL);   // ICC, CIRG, FM, SID, DID
                if ((mask & VtdRegs.CcmdIcc) != 0 && (_ccmd & VtdRegs.CcmdIcc) != 0) RegisterContextInvalidation();
                return;
            case VtdRegs.Iqt:
                _iqt = Merge(_iqt, value, mask, 0x7_FFF0UL);
                if ((uint)mask != 0) ProcessInvalidationQueue();
                return;
            case VtdRegs.Iqa:
                _iqa = Merge(_iqa, value, mask, PageAddrMask | 0x7);   // DW (bit 11) reads 0: 128-bit descriptors only
                return;
            case VtdRegs.Iva:
                _iva = Merge(_iva, value, mask, PageAddrMask | 0x7F);
                return;
            case VtdRegs.Iotlb:
                _iotlbReg = Merge(_iotlbReg, value, mask, 0xB003_FFFF_0000_0000UL);   // IVT, IIRG, DR, DW, DID
                if ((mask & VtdRegs.IotlbIvt) != 0 && (_iotlbReg & VtdRegs.IotlbIvt) != 0) RegisterIotlbInvalidation();
                return;
        }
        if (off >= VtdRegs.Frcd && ((off - VtdRegs.Frcd) & 8) != 0)
        {
            // The upper qword of a fault record: only F (bit 127) is writable, and it is RW1C.
            int i = (off - VtdRegs.Frcd) >> 4;
            if ((value & mask & (1UL << 63)) != 0 && (_frcdHi[i] & (1UL << 63)) != 0)
            {
                _frcdHi[i] &= ~(1UL << 63);
                AfterFaultStatusCleared();
            }
        }
    }

    private void Write32(int off, uint value)
    {
        switch (off)
        {
            case VtdRegs.Gcmd: GlobalCommand(value); break;
            case VtdRegs.Fsts:
                uint clear = value & (VtdRegs.FstsPfo | VtdRegs.FstsIqe) & _fstsW1c;
                if (clear == 0) break;
                _fstsW1c &= ~clear;
                AfterFaultStatusCleared();
                if ((clear & VtdRegs.FstsIqe) != 0) ProcessInvalidationQueue();   // the queue resumes at the head
                break;
            case VtdRegs.Fectl: WriteEventControl(ref _fectl, value, FaultEventAddress, _fedata, FaultEventVector); break;
            case VtdRegs.Fedata: _fedata = value & 0xFFFF; break;
            case VtdRegs.Feaddr: _feaddr = value & ~3u; break;
            case VtdRegs.Feuaddr: _feuaddr = value; break;
            case VtdRegs.Ics:
                if ((value & _ics & VtdRegs.IcsIwc) != 0)
                {
                    _ics &= ~VtdRegs.IcsIwc;
                    _iectl &= ~VtdRegs.EctlIp;   // the condition is serviced: nothing left pending
                }
                break;
            case VtdRegs.Iectl: WriteEventControl(ref _iectl, value, InvalidationEventAddress, _iedata, InvalidationEventVector); break;
            case VtdRegs.Iedata: _iedata = value & 0xFFFF; break;
            case VtdRegs.Ieaddr: _ieaddr = value & ~3u; break;
            case VtdRegs.Ieuaddr: _ieuaddr = value; break;
        }
    }

    private ulong FaultEventAddress => (ulong)_feuaddr << 32 | _feaddr;
    private ulong InvalidationEventAddress => (ulong)_ieuaddr << 32 | _ieaddr;

    /// <summary>FECTL / IECTL: IM is RW; clearing it while IP is set sends the held message.</summary>
    private void WriteEventControl(ref uint ctl, uint value, ulong address, uint data, uint vector)
    {
        bool unmasking = (ctl & VtdRegs.EctlIm) != 0 && (value & VtdRegs.EctlIm) == 0;
        ctl = (ctl & ~VtdRegs.EctlIm) | (value & VtdRegs.EctlIm);
        if (unmasking && (ctl & VtdRegs.EctlIp) != 0)
        {
            ctl &= ~VtdRegs.EctlIp;
            SendMessage(address, data, vector);
        }
    }

    /// <summary>GCMD: software writes the persistent enables (TE, QIE) with at most one one-shot
    /// command (SRTP, WBF). Commands complete at once; GSTS shows the result.</summary>
    private void GlobalCommand(uint value)
    {
        if ((value & VtdRegs.GcmdSrtp) != 0)
        {
            // Latch the root table. Cached context entries and translations stay until
            // software invalidates them, as the spec requires it to.
            _rootTable = _rtaddr;
            _gsts |= VtdRegs.GcmdSrtp;
        }
        // WBF: the unit has no write buffer (CAP.RWBF = 0), so a flush completes at once and
        // WBFS never reads 1.
        if ((value & VtdRegs.GcmdTe) != 0) _gsts |= VtdRegs.GcmdTe;
        else _gsts &= ~VtdRegs.GcmdTe;

        bool qie = (value & VtdRegs.GcmdQie) != 0;
        if (qie && !QueuedInvalidationEnabled)
        {
            _iqBase = _iqa & PageAddrMask;
            _iqEntries = 256UL << (int)(_iqa & 7);
            _gsts |= VtdRegs.GcmdQie;
            ProcessInvalidationQueue();
        }
        else if (!qie && QueuedInvalidationEnabled)
        {
            _gsts &= ~VtdRegs.GcmdQie;
            _iqhIndex = 0;                 // IQH resets when queued invalidation is disabled
        }
        // IRE, SIRTP, CFI, SFL, EAFL: interrupt remapping and advanced fault logging are not
        // implemented (ECAP.IR = 0, CAP.AFL = 0); those commands are ignored.
    }

    /// <summary>Sends one of the unit's messages: an interrupt when it lands in the MSI window,
    /// else a plain (untranslated) 4-byte memory write if it lands in RAM, else nothing.</summary>
    private void SendMessage(ulong address, uint data, uint vector)
    {
        if (address >= Machine.MsiWindowBase && address < Machine.MsiWindowBase + Machine.MsiWindowSize)
            _machine.Interrupts.Publish(MessageRid, InterruptKind.IommuFault, address, data, vector);
        else if (_ram.Contains(address, 4))
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(_ram.GetSpan(address, 4), data);
    }
}
