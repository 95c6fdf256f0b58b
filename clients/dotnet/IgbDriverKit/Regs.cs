namespace PcieEmu.Drivers;

/// <summary>
/// 82576 register offsets and bits the example drivers use (shared/spec/igb-82576.md and the
/// public igb/igbvf register headers). Offsets are from the PF's BAR0 or the VF's BAR0.
/// </summary>
public static class Regs
{
    // Both PF and VF.
    public const uint Ctrl = 0x0000, Status = 0x0008;
    public const uint Eics = 0x1520, Eims = 0x1524, Eimc = 0x1528, Eiac = 0x152C, Eiam = 0x1530, Eicr = 0x1580;
    public const uint Eitr0 = 0x1680, Ivar0 = 0x1700, IvarMisc = 0x1740;
    public const uint CtrlRst = 1u << 26;
    public const uint IvarValid = 0x80;

    // PF only.
    public const uint CtrlExt = 0x0018, Icr = 0x00C0, Ims = 0x00D0, Imc = 0x00D8, Rctl = 0x0100, Tctl = 0x0400, Gpie = 0x1514;
    public const uint CtrlExtPfrstd = 1u << 14;
    public const uint IcrVmmb = 1u << 8;
    public const uint GpieNsicr = 1u << 0, GpieMsixMode = 1u << 4, GpieEiame = 1u << 30, GpiePba = 1u << 31;
    public const uint RctlEn = 1u << 1, RctlBam = 1u << 15, RctlSecrc = 1u << 26;
    public const uint TctlEn = 1u << 1, TctlPsp = 1u << 3;
    public const uint Vmbmem = 0x0800, P2vMailbox = 0x0C00, Mbvficr = 0x0C80, Mbvfimr = 0x0C84, Vflre = 0x0C88, Vfre = 0x0C8C, Vfte = 0x0C90;
    public const uint P2vSts = 0x01, P2vAck = 0x02, P2vVfu = 0x04, P2vPfu = 0x08, P2vRvfu = 0x10;
    public const uint Dtxswc = 0x3500, Ral0 = 0x5400, Mrqc = 0x5818, VtCtl = 0x581C, Vmolr = 0x5AD0;
    public const uint DtxswcLoopback = 1u << 31;
    public const uint MrqcVmdq = 3;
    public const int VtCtlDefPoolShift = 7;
    public const uint VmolrRlpmlMask = 0x3FFF, VmolrLpe = 1u << 16, VmolrAupe = 1u << 24, VmolrRompe = 1u << 25, VmolrRope = 1u << 26,
        VmolrBam = 1u << 27, VmolrMpme = 1u << 28, VmolrStrVlan = 1u << 30;
    /// <summary>Multicast table array (128 words: hash bits 11:5 pick the word, 4:0 the bit), VLAN filter table (128 words), VLAN pool filters (32).</summary>
    public const uint Mta = 0x5200, Vfta = 0x5600, Vlvf = 0x5D00;
    public const int MtaWords = 128, VftaWords = 128, VlvfEntries = 32;
    public const uint VlvfVlanIdMask = 0xFFF, VlvfVlanIdEnable = 1u << 31;
    public const int VlvfPoolSelShift = 12;
    public const uint RahAv = 1u << 31;
    public const int RahPoolShift = 18, RarEntries = 24;
    public const uint Mpc = 0x4010, Gprc = 0x4074, Gptc = 0x4080, Gorcl = 0x4088, Gotcl = 0x4090;

    /// <summary>RAL of receive address entry n (16 at 0x5400, 8 more at 0x54E0).</summary>
    public static uint Ral(int n) => n < 16 ? Ral0 + 8u * (uint)n : 0x54E0u + 8u * (uint)(n - 16);

    // VF only.
    public const uint VfMailbox = 0x0C40, VfVmbmem = 0x0800;
    public const uint VfmbReq = 0x01, VfmbAck = 0x02, VfmbVfu = 0x04, VfmbPfu = 0x08, VfmbPfsts = 0x10, VfmbPfack = 0x20, VfmbRsti = 0x40, VfmbRstd = 0x80;
    public const uint VfGprc = 0x0F10, VfGptc = 0x0F14, VfGorc = 0x0F18, VfGotc = 0x0F34, VfMprc = 0x0F3C,
        VfGprlbc = 0x0F40, VfGptlbc = 0x0F44, VfGorlbc = 0x0F48, VfGotlbc = 0x0F50;
    /// <summary>The VF's queue 0 register blocks (PF queue n and n + 8 appear at 0x2800/0x2900 and 0x3800/0x3900).</summary>
    public const uint VfRxQueue0 = 0x2800, VfTxQueue0 = 0x3800;

    // Queue blocks.
    public const uint Rdbal = 0x00, Rdbah = 0x04, Rdlen = 0x08, Srrctl = 0x0C, Rdh = 0x10, Rdt = 0x18, Rxdctl = 0x28;
    public const uint Tdbal = 0x00, Tdbah = 0x04, Tdlen = 0x08, Tdh = 0x10, Tdt = 0x18, Txdctl = 0x28;
    public const uint QueueEnable = 1u << 25;
    public const uint SrrctlDescAdvOneBuf = 1u << 25, SrrctlDropEn = 1u << 31;

    // Advanced TX data descriptor (cmd_type_len) and RX write-back status.
    public const uint TxdDtypData = 0x0030_0000, TxdEop = 0x0100_0000, TxdIfcs = 0x0200_0000, TxdRs = 0x0800_0000, TxdDext = 0x2000_0000;
    public const int TxdPaylenShift = 14;
    public const uint TxdStatDd = 1, RxdStatDd = 1, RxdStatEop = 2;
}

/// <summary>PF/VF mailbox message words (igb-82576.md "Mailbox messages").</summary>
public static class MbxMsg
{
    public const uint VfReset = 0x01, VfSetMacAddr = 0x02, VfSetMulticast = 0x03, VfSetVlan = 0x04, VfSetLpe = 0x05, VfSetPromisc = 0x06, PfControl = 0x0100;
    public const uint Ack = 0x8000_0000, Nack = 0x4000_0000, Cts = 0x2000_0000;
    public const uint TypeMask = 0xFFFF;
    /// <summary>Bits 23:16 carry a message's extra information (a count, a sub-command, add/remove).</summary>
    public const int InfoShift = 16;
    public const uint InfoMask = 0xFFu << InfoShift;
    /// <summary>VF_SET_MAC_ADDR sub-commands: clear the VF's additional unicast filters, add one.</summary>
    public const uint MacFilterClr = 0x01u << InfoShift, MacFilterAdd = 0x02u << InfoShift;
    /// <summary>VF_SET_PROMISC flag: multicast promiscuous (VMOLR.MPME).</summary>
    public const uint PromiscMulticast = 0x02u << InfoShift;
    /// <summary>Multicast hashes a VF_SET_MULTICAST carries at most (16-bit values from word 1 on).</summary>
    public const int MaxMulticastHashes = 30;
    public const int Words = 16;
}

/// <summary>PCI config-space offsets the drivers touch.</summary>
public static class Cfg
{
    public const int Command = 0x04;
    public const ushort CommandMemory = 1 << 1, CommandBusMaster = 1 << 2;
    public const int MsixControl = 0x02;
    public const ushort MsixEnable = 0x8000, MsixFunctionMask = 0x4000;
}
