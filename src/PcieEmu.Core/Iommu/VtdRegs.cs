namespace PcieEmu.Core.Iommu;

/// <summary>
/// Register offsets and bit positions of the VT-d remapping unit (VT-d spec chapter 10;
/// facts in shared/spec/vtd.md). Offsets are from the unit's base (0xFED9_0000).
/// </summary>
public static class VtdRegs
{
    /// <summary>Version register (32, RO): 7:4 major, 3:0 minor.</summary>
    public const int Ver = 0x00;
    /// <summary>Capability register (64, RO).</summary>
    public const int Cap = 0x08;
    /// <summary>Extended capability register (64, RO).</summary>
    public const int Ecap = 0x10;
    /// <summary>Global command (32, WO: reads 0).</summary>
    public const int Gcmd = 0x18;
    /// <summary>Global status (32, RO).</summary>
    public const int Gsts = 0x1C;
    /// <summary>Root table address (64, RW).</summary>
    public const int Rtaddr = 0x20;
    /// <summary>Context command (64): ICC self-clearing, CAIG RO.</summary>
    public const int Ccmd = 0x28;
    /// <summary>Fault status (32): PFO, IQE RW1C; PPF, FRI RO.</summary>
    public const int Fsts = 0x34;
    /// <summary>Fault event control (32): IM RW (reset 1), IP RO.</summary>
    public const int Fectl = 0x38;
    /// <summary>Fault event data (32, RW: 15:0).</summary>
    public const int Fedata = 0x3C;
    /// <summary>Fault event address (32, RW: 31:2).</summary>
    public const int Feaddr = 0x40;
    /// <summary>Fault event upper address (32, RW).</summary>
    public const int Feuaddr = 0x44;
    /// <summary>Invalidation queue head (64, RO: 18:4).</summary>
    public const int Iqh = 0x80;
    /// <summary>Invalidation queue tail (64, RW: 18:4); a write starts processing.</summary>
    public const int Iqt = 0x88;
    /// <summary>Invalidation queue address (64, RW: 63:12 base, 2:0 QS; 11 DW reads 0).</summary>
    public const int Iqa = 0x90;
    /// <summary>Invalidation completion status (32): IWC RW1C.</summary>
    public const int Ics = 0x9C;
    /// <summary>Invalidation event control (32): IM RW (reset 1), IP RO.</summary>
    public const int Iectl = 0xA0;
    /// <summary>Invalidation event data (32, RW: 15:0).</summary>
    public const int Iedata = 0xA4;
    /// <summary>Invalidation event address (32, RW: 31:2).</summary>
    public const int Ieaddr = 0xA8;
    /// <summary>Invalidation event upper address (32, RW).</summary>
    public const int Ieuaddr = 0xAC;

    /// <summary>IOTLB register offset / 16 (ECAP.IRO).</summary>
    public const int IroUnits = 0x0F;
    /// <summary>Invalidate address register (64, WO: reads 0).</summary>
    public const int Iva = IroUnits * 16;
    /// <summary>IOTLB invalidate register (64): IVT self-clearing, IAIG RO.</summary>
    public const int Iotlb = IroUnits * 16 + 8;

    /// <summary>Fault recording register offset / 16 (CAP.FRO).</summary>
    public const int FroUnits = 0x22;
    /// <summary>First fault recording register (128 bits each).</summary>
    public const int Frcd = FroUnits * 16;
    /// <summary>Number of fault recording registers (CAP.NFR + 1).</summary>
    public const int FaultRecordCount = 8;

    /// <summary>VER value: 1.0.</summary>
    public const uint Version = 0x10;

    /// <summary>CAP fields (VT-d §10.4.2).</summary>
    public const int CapNdShift = 0, CapSagawShift = 8, CapMgawShift = 16, CapFroShift = 24, CapNfrShift = 40, CapMamvShift = 48;
    /// <summary>CAP single bits.</summary>
    public const ulong CapSllps2M = 1UL << 34, CapSllps1G = 1UL << 35, CapPsi = 1UL << 39;
    /// <summary>ND: 2^(4+2*6) = 65536 domains, i.e. the full 16-bit domain id.</summary>
    public const int NumberOfDomainsEncoding = 6;
    /// <summary>SAGAW: bit 1 = 39-bit (3-level), bit 2 = 48-bit (4-level).</summary>
    public const int Sagaw = 0b0110;
    /// <summary>Maximum guest address width in bits.</summary>
    public const int Mgaw = 48;
    /// <summary>Host address width: table pointers and page frames above it are reserved bits.</summary>
    public const int Haw = 48;
    /// <summary>Maximum address mask value for page-selective invalidation.</summary>
    public const int Mamv = 18;

    /// <summary>The CAP value.</summary>
    public const ulong CapValue =
        (ulong)NumberOfDomainsEncoding << CapNdShift
        | (ulong)Sagaw << CapSagawShift
        | (ulong)(Mgaw - 1) << CapMgawShift
        | (ulong)FroUnits << CapFroShift
        | CapSllps2M | CapSllps1G | CapPsi
        | (ulong)(FaultRecordCount - 1) << CapNfrShift
        | (ulong)Mamv << CapMamvShift;

    /// <summary>ECAP bits.</summary>
    public const ulong EcapQi = 1UL << 1, EcapPt = 1UL << 6;
    /// <summary>The ECAP value: QI, PT, IRO.</summary>
    public const ulong EcapValue = EcapQi | EcapPt | (ulong)IroUnits << 8;

    /// <summary>GCMD / GSTS bits (same positions).</summary>
    public const uint GcmdTe = 1u << 31, GcmdSrtp = 1u << 30, GcmdSfl = 1u << 29, GcmdEafl = 1u << 28,
        GcmdWbf = 1u << 27, GcmdQie = 1u << 26, GcmdIre = 1u << 25, GcmdSirtp = 1u << 24, GcmdCfi = 1u << 23;

    /// <summary>CCMD fields.</summary>
    public const ulong CcmdIcc = 1UL << 63;
    /// <summary>CCMD CIRG / CAIG shifts.</summary>
    public const int CcmdCirgShift = 61, CcmdCaigShift = 59;

    /// <summary>IOTLB register fields.</summary>
    public const ulong IotlbIvt = 1UL << 63, IotlbDr = 1UL << 49, IotlbDw = 1UL << 48;
    /// <summary>IOTLB IIRG / IAIG / DID shifts.</summary>
    public const int IotlbIirgShift = 60, IotlbIaigShift = 57, IotlbDidShift = 32;

    /// <summary>FSTS bits.</summary>
    public const uint FstsPfo = 1u << 0, FstsPpf = 1u << 1, FstsIqe = 1u << 4, FstsIce = 1u << 5, FstsIte = 1u << 6;
    /// <summary>FSTS FRI shift.</summary>
    public const int FstsFriShift = 8;
    /// <summary>FECTL / IECTL bits.</summary>
    public const uint EctlIm = 1u << 31, EctlIp = 1u << 30;
    /// <summary>ICS.IWC.</summary>
    public const uint IcsIwc = 1u;
}

/// <summary>VT-d fault reasons for DMA remapping (VT-d spec Appendix A, legacy mode).</summary>
public enum VtdFaultReason : byte
{
    /// <summary>No fault.</summary>
    None = 0,
    /// <summary>Root entry not present.</summary>
    RootNotPresent = 0x1,
    /// <summary>Context entry not present.</summary>
    ContextNotPresent = 0x2,
    /// <summary>Context entry invalid (unsupported AW or TT).</summary>
    ContextInvalid = 0x3,
    /// <summary>Input address beyond the address width of the domain.</summary>
    AddressBeyondWidth = 0x4,
    /// <summary>Write without write permission.</summary>
    WriteNotPermitted = 0x5,
    /// <summary>Read without read permission.</summary>
    ReadNotPermitted = 0x6,
    /// <summary>Second-level table pointer (SLPTPTR or a next-level pointer) does not point at memory.</summary>
    NextTableInvalid = 0x7,
    /// <summary>Root table address does not point at memory.</summary>
    RootTableInvalid = 0x8,
    /// <summary>Context-table pointer does not point at memory.</summary>
    ContextTableInvalid = 0x9,
    /// <summary>Reserved bits set in a present root entry.</summary>
    RootReserved = 0xA,
    /// <summary>Reserved bits set in a present context entry.</summary>
    ContextReserved = 0xB,
    /// <summary>Reserved bits set in a present second-level paging entry.</summary>
    PteReserved = 0xC,
    /// <summary>Translation request or translated request blocked by the context entry's TT.</summary>
    BlockedByTranslationType = 0xD,
    /// <summary>The translated address lies in the interrupt range 0xFEE0_0000-0xFEEF_FFFF.</summary>
    InterruptRange = 0xE,
}

/// <summary>PCIe address type (AT) of a memory request.</summary>
public enum VtdAddressType
{
    /// <summary>AT = 00b: an untranslated request (ordinary DMA).</summary>
    Untranslated = 0,
    /// <summary>AT = 01b: an ATS translation request.</summary>
    TranslationRequest = 1,
    /// <summary>AT = 10b: a request carrying an address the device translated itself (device-TLB).</summary>
    Translated = 2,
}

/// <summary>What a probe found.</summary>
public enum VtdProbeStatus
{
    /// <summary>Not set.</summary>
    Unspecified = 0,
    /// <summary>Translated through the second-level tables.</summary>
    Translated = 1,
    /// <summary>Translation is off (GSTS.TES = 0): the address goes out unchanged.</summary>
    TranslationDisabled = 2,
    /// <summary>The context entry says pass-through: the address goes out unchanged.</summary>
    PassThrough = 3,
    /// <summary>The request faults (see the fault reason).</summary>
    Fault = 4,
}

/// <summary>Outcome of <see cref="VtdUnit.Probe"/>.</summary>
/// <param name="Status">What happened.</param>
/// <param name="TranslatedAddress">Host physical address when not a fault.</param>
/// <param name="FaultReason">The fault reason when <see cref="VtdProbeStatus.Fault"/>.</param>
/// <param name="Recorded">True when the fault was written to a fault recording register (or collapsed into one).</param>
public readonly record struct VtdProbeResult(VtdProbeStatus Status, ulong TranslatedAddress, VtdFaultReason FaultReason, bool Recorded);

/// <summary>One fault recording register as software reads it.</summary>
/// <param name="Fault">F: the record holds a fault.</param>
/// <param name="SourceId">Requester id.</param>
/// <param name="Reason">Fault reason.</param>
/// <param name="IsRead">T: 1 = read request, 0 = write.</param>
/// <param name="PageAddress">Faulting address, bits 63:12.</param>
public readonly record struct VtdFaultRecord(bool Fault, ushort SourceId, VtdFaultReason Reason, bool IsRead, ulong PageAddress);

/// <summary>One valid IOTLB entry (a live view's decoding of the cache).</summary>
/// <param name="SourceId">Requester id the entry belongs to.</param>
/// <param name="Level">Page level: 1 = 4 KiB, 2 = 2 MiB, 3 = 1 GiB.</param>
/// <param name="Iova">First IOVA of the page.</param>
/// <param name="DomainId">Domain id.</param>
/// <param name="Read">Read permitted.</param>
/// <param name="Write">Write permitted.</param>
/// <param name="PageBase">Host physical base of the page.</param>
public readonly record struct VtdIotlbEntry(ushort SourceId, int Level, ulong Iova, ushort DomainId, bool Read, bool Write, ulong PageBase);
