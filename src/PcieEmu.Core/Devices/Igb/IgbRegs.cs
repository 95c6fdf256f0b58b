namespace PcieEmu.Core.Devices.Igb;

/// <summary>82576 register offsets and bits (igb-82576.md; public igb/igbvf register headers).</summary>
public static class IgbRegs
{
    /// <summary>Device control, status, extended control.</summary>
    public const uint Ctrl = 0x0000, Status = 0x0008, CtrlExt = 0x0018;
    /// <summary>Interrupt cause read/set, mask set/clear, auto-mask.</summary>
    public const uint Icr = 0x00C0, Ics = 0x00C8, Ims = 0x00D0, Imc = 0x00D8, Iam = 0x00E0;
    /// <summary>Receive and transmit control.</summary>
    public const uint Rctl = 0x0100, Tctl = 0x0400;
    /// <summary>Extended interrupt registers.</summary>
    public const uint Gpie = 0x1514, Eics = 0x1520, Eims = 0x1524, Eimc = 0x1528, Eiac = 0x152C, Eiam = 0x1530, Eicr = 0x1580;
    /// <summary>Interrupt throttling (4 bytes per vector), vector allocation.</summary>
    public const uint Eitr = 0x1680, Ivar0 = 0x1700, IvarMisc = 0x1740;
    /// <summary>Mailbox memory (64 bytes per VF), PF-side mailbox control (4 bytes per VF), VF-side mailbox.</summary>
    public const uint Vmbmem = 0x0800, P2vMailbox = 0x0C00, VfMailbox = 0x0C40;
    /// <summary>Mailbox interrupt cause/mask, VF FLR events, per-pool RX/TX enables.</summary>
    public const uint Mbvficr = 0x0C80, Mbvfimr = 0x0C84, Vflre = 0x0C88, Vfre = 0x0C8C, Vfte = 0x0C90;
    /// <summary>Legacy queue 0-3 aliases (stride 0x100) and the full 16-queue blocks (stride 0x40).</summary>
    public const uint RxLegacy = 0x2800, TxLegacy = 0x3800, RxQueues = 0xC000, TxQueues = 0xE000;
    /// <summary>Offsets inside an RX queue block.</summary>
    public const uint Rdbal = 0x00, Rdbah = 0x04, Rdlen = 0x08, Srrctl = 0x0C, Rdh = 0x10, Rxctl = 0x14, Rdt = 0x18, Rxdctl = 0x28, Rqdpc = 0x30;
    /// <summary>Offsets inside a TX queue block.</summary>
    public const uint Tdbal = 0x00, Tdbah = 0x04, Tdlen = 0x08, Tdh = 0x10, Txctl = 0x14, Tdt = 0x18, Txdctl = 0x28, Tdwbal = 0x38, Tdwbah = 0x3C;
    /// <summary>VMDq switch control.</summary>
    public const uint Dtxswc = 0x3500, Mta = 0x5200, Ral0 = 0x5400, Ra2 = 0x54E0, Mrqc = 0x5818, VtCtl = 0x581C, Vmolr = 0x5AD0;
    /// <summary>Other PF registers with power-on values (transmit extension, inter-packet gap, VLAN ether type,
    /// LEDs, packet buffer sizes, PCIe control, receive checksum, large packet limit, DMA TX control,
    /// replication offload).</summary>
    public const uint TctlExt = 0x0404, Tipg = 0x0410, Vet = 0x0038, Ledctl = 0x0E00, Rxpbs = 0x2404, Txpbs = 0x3404, Gcr = 0x5B00,
        Rxcsum = 0x5000, Rlpml = 0x5004, Dtxctl = 0x3590, Rplolr = 0x5AF0;
    /// <summary>PF statistics (read to clear); TSCTC/TSCTFC count TCP segmentation contexts sent and failed.</summary>
    public const uint Mpc = 0x4010, Ruc = 0x40A4, Gprc = 0x4074, Gptc = 0x4080, Gorcl = 0x4088, Gorch = 0x408C, Gotcl = 0x4090, Gotch = 0x4094,
        Tsctc = 0x40F8, Tsctfc = 0x40FC;
    /// <summary>VF statistics (free-running).</summary>
    public const uint VfGprc = 0x0F10, VfGptc = 0x0F14, VfGorc = 0x0F18, VfGotc = 0x0F34, VfMprc = 0x0F3C,
        VfGprlbc = 0x0F40, VfGptlbc = 0x0F44, VfGorlbc = 0x0F48, VfGotlbc = 0x0F50;

    /// <summary>CTRL.RST (self-clearing device reset), CTRL.VME (VLAN mode: strip tags on receive),
    /// CTRL.GIO_MASTER_DISABLE (stop issuing DMA), CTRL.SLU (set link up).</summary>
    public const uint CtrlRst = 1u << 26, CtrlVme = 1u << 30, CtrlGioMasterDisable = 1u << 2, CtrlSlu = 1u << 6;
    /// <summary>STATUS bits.</summary>
    public const uint StatusFd = 1u << 0, StatusLu = 1u << 1, StatusSpeed1000 = 2u << 6, StatusIov = 1u << 18, StatusGioMasterEnable = 1u << 19;
    /// <summary>STATUS.NUM_VFS shift.</summary>
    public const int StatusNumVfsShift = 14;
    /// <summary>CTRL_EXT.PFRSTD.</summary>
    public const uint CtrlExtPfrstd = 1u << 14;
    /// <summary>ICR causes.</summary>
    public const uint IcrTxdw = 1u << 0, IcrLsc = 1u << 2, IcrRxdw = 1u << 7, IcrVmmb = 1u << 8, IcrIntAsserted = 1u << 31;
    /// <summary>GPIE bits.</summary>
    public const uint GpieNsicr = 1u << 0, GpieMsixMode = 1u << 4, GpieEiame = 1u << 30, GpiePba = 1u << 31;
    /// <summary>EICR "other causes" bit in non-MSI-X mode.</summary>
    public const uint EicrOther = 1u << 31;
    /// <summary>IVAR entry valid bit.</summary>
    public const uint IvarValid = 0x80;
    /// <summary>RCTL bits.</summary>
    public const uint RctlEn = 1u << 1, RctlSbp = 1u << 2, RctlUpe = 1u << 3, RctlMpe = 1u << 4, RctlBam = 1u << 15, RctlSecrc = 1u << 26;
    /// <summary>RCTL.MO (multicast offset) shift, 2 bits.</summary>
    public const int RctlMoShift = 12;
    /// <summary>TCTL bits.</summary>
    public const uint TctlEn = 1u << 1, TctlPsp = 1u << 3;
    /// <summary>RXDCTL/TXDCTL queue enable; SRRCTL fields.</summary>
    public const uint QueueEnable = 1u << 25, SrrctlBsizePktMask = 0x7F, SrrctlDescTypeMask = 7u << 25, SrrctlDropEn = 1u << 31;
    /// <summary>TDWBAL head write-back enable.</summary>
    public const uint TdwbalEnable = 1;
    /// <summary>RAH bits.</summary>
    public const uint RahAv = 1u << 31;
    /// <summary>RAH pool select shift (8 bits).</summary>
    public const int RahPoolShift = 18;
    /// <summary>MRQC.MRQE values that enable VMDq, and VMDq with RSS (two queues per pool).</summary>
    public const uint MrqcVmdq = 3, MrqcVmdqRss = 5;
    /// <summary>VT_CTL bits.</summary>
    public const uint VtCtlDisDefPool = 1u << 29;
    /// <summary>VT_CTL default pool shift (3 bits).</summary>
    public const int VtCtlDefPoolShift = 7;
    /// <summary>VMOLR bits.</summary>
    public const uint VmolrRsse = 1u << 17, VmolrAupe = 1u << 24, VmolrRompe = 1u << 25, VmolrRope = 1u << 26, VmolrBam = 1u << 27, VmolrMpme = 1u << 28,
        VmolrStrVlan = 1u << 30;
    /// <summary>DTXSWC VMDq loopback enable.</summary>
    public const uint DtxswcLoopback = 1u << 31;
    /// <summary>PF-side mailbox bits (P2VMAILBOX).</summary>
    public const uint P2vSts = 0x01, P2vAck = 0x02, P2vVfu = 0x04, P2vPfu = 0x08, P2vRvfu = 0x10;
    /// <summary>VF-side mailbox bits (V2PMAILBOX at VF 0xC40).</summary>
    public const uint VfmbReq = 0x01, VfmbAck = 0x02, VfmbVfu = 0x04, VfmbPfu = 0x08, VfmbPfsts = 0x10, VfmbPfack = 0x20, VfmbRsti = 0x40, VfmbRstd = 0x80;

    /// <summary>Queues per PF, pools (VMDq), RAR entries, mailbox dwords per VF.</summary>
    public const int Queues = 16, Pools = 8, RarEntries = 24, MailboxWords = 16;
}
