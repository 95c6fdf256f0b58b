namespace PcieEmu.Client.Vtd;

/// <summary>
/// VT-d register offsets and bits a driver needs (VT-d spec chapter 10, legacy mode), as the
/// emulated unit at <c>GetPlatformResponse.iommu_base</c> implements them (docs/iommu.md).
/// </summary>
public static class VtdRegisters
{
    /// <summary>Version (32, RO).</summary>
    public const int Ver = 0x00;
    /// <summary>Capability (64, RO).</summary>
    public const int Cap = 0x08;
    /// <summary>Extended capability (64, RO).</summary>
    public const int Ecap = 0x10;
    /// <summary>Global command (32, WO).</summary>
    public const int Gcmd = 0x18;
    /// <summary>Global status (32, RO).</summary>
    public const int Gsts = 0x1C;
    /// <summary>Root table address (64).</summary>
    public const int Rtaddr = 0x20;
    /// <summary>Context command (64).</summary>
    public const int Ccmd = 0x28;
    /// <summary>Fault status (32).</summary>
    public const int Fsts = 0x34;
    /// <summary>Fault event control (32).</summary>
    public const int Fectl = 0x38;
    /// <summary>Fault event data (32).</summary>
    public const int Fedata = 0x3C;
    /// <summary>Fault event address (32).</summary>
    public const int Feaddr = 0x40;
    /// <summary>Fault event upper address (32).</summary>
    public const int Feuaddr = 0x44;
    /// <summary>Invalidation queue head (64, RO).</summary>
    public const int Iqh = 0x80;
    /// <summary>Invalidation queue tail (64).</summary>
    public const int Iqt = 0x88;
    /// <summary>Invalidation queue address (64).</summary>
    public const int Iqa = 0x90;
    /// <summary>Invalidation completion status (32).</summary>
    public const int Ics = 0x9C;
    /// <summary>Invalidation event control (32).</summary>
    public const int Iectl = 0xA0;
    /// <summary>Invalidation event data (32).</summary>
    public const int Iedata = 0xA4;
    /// <summary>Invalidation event address (32).</summary>
    public const int Ieaddr = 0xA8;
    /// <summary>Invalidation event upper address (32).</summary>
    public const int Ieuaddr = 0xAC;

    /// <summary>GCMD / GSTS bits (same positions).</summary>
    public const uint GcmdTe = 1u << 31, GcmdSrtp = 1u << 30, GcmdQie = 1u << 26;
    /// <summary>CCMD: ICC (bit 63), CIRG (62:61), CAIG (60:59).</summary>
    public const ulong CcmdIcc = 1UL << 63;
    /// <summary>CCMD shifts.</summary>
    public const int CcmdCirgShift = 61, CcmdCaigShift = 59, CcmdFmShift = 32, CcmdSidShift = 16;
    /// <summary>IOTLB register: IVT (63), DR (49), DW (48).</summary>
    public const ulong IotlbIvt = 1UL << 63, IotlbDr = 1UL << 49, IotlbDw = 1UL << 48;
    /// <summary>IOTLB register shifts: IIRG 61:60, IAIG 58:57, DID 47:32.</summary>
    public const int IotlbIirgShift = 60, IotlbIaigShift = 57, IotlbDidShift = 32;
    /// <summary>FSTS bits.</summary>
    public const uint FstsPfo = 1u << 0, FstsPpf = 1u << 1, FstsIqe = 1u << 4;
    /// <summary>FSTS.FRI shift (15:8).</summary>
    public const int FstsFriShift = 8;
    /// <summary>FECTL / IECTL: IM (31), IP (30).</summary>
    public const uint EctlIm = 1u << 31, EctlIp = 1u << 30;
    /// <summary>ICS.IWC.</summary>
    public const uint IcsIwc = 1u;

    /// <summary>CAP fields.</summary>
    public static class CapFields
    {
        /// <summary>CAP.SAGAW (12:8): bit 1 = 39-bit, bit 2 = 48-bit.</summary>
        public static int Sagaw(ulong cap) => (int)(cap >> 8) & 0x1F;
        /// <summary>CAP.FRO (33:24) in bytes.</summary>
        public static int FaultRecordOffset(ulong cap) => (int)((cap >> 24) & 0x3FF) * 16;
        /// <summary>CAP.NFR + 1 (47:40).</summary>
        public static int FaultRecordCount(ulong cap) => (int)((cap >> 40) & 0xFF) + 1;
        /// <summary>CAP.MAMV (53:48).</summary>
        public static int Mamv(ulong cap) => (int)(cap >> 48) & 0x3F;
        /// <summary>CAP.SLLPS 2 MiB (34).</summary>
        public static bool LargePage2M(ulong cap) => (cap & (1UL << 34)) != 0;
        /// <summary>CAP.PSI (39).</summary>
        public static bool PageSelective(ulong cap) => (cap & (1UL << 39)) != 0;
        /// <summary>CAP.CM (7): not-present entries may be cached.</summary>
        public static bool CachingMode(ulong cap) => (cap & (1UL << 7)) != 0;
        /// <summary>CAP.ND (2:0): number of domain ids = 2^(4 + 2 ND).</summary>
        public static int DomainCount(ulong cap) => 1 << (4 + 2 * (int)(cap & 7));
    }

    /// <summary>ECAP fields.</summary>
    public static class EcapFields
    {
        /// <summary>ECAP.QI (1).</summary>
        public static bool QueuedInvalidation(ulong ecap) => (ecap & 2) != 0;
        /// <summary>ECAP.PT (6).</summary>
        public static bool PassThrough(ulong ecap) => (ecap & (1UL << 6)) != 0;
        /// <summary>ECAP.IRO (17:8) in bytes: IVA is here, the IOTLB register 8 bytes on.</summary>
        public static int IotlbRegisterOffset(ulong ecap) => (int)((ecap >> 8) & 0x3FF) * 16;
    }
}
