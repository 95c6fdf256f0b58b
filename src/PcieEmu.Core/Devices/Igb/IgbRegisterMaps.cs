using PcieEmu.Core.Registers;
using static PcieEmu.Core.Devices.Igb.IgbRegs;
using static PcieEmu.Core.Registers.FieldSpec;

namespace PcieEmu.Core.Devices.Igb;

/// <summary>
/// The 82576 register files as data: PF BAR0 (128 KiB) and VF BAR0 (16 KiB). Offsets and bits
/// from igb-82576.md; reset values are 0 except where a comment says otherwise. Side effects
/// are wired by name in <see cref="IgbPort"/>.
/// </summary>
public static class IgbRegisterMaps
{
    /// <summary>Queue register names, as used in the files ("RDT[3]").</summary>
    public static string Q(string name, int queue) => $"{name}[{queue}]";

    private static readonly FieldSpec[] StatusFields =
    [
        Ro("FD", 0), Ro("LU", 1), Ro("FUNC_ID", 2, 2), Ro("TXOFF", 4), Ro("SPEED", 6, 2),
        Ro("NUM_VFS", 14, 4), Ro("IOV_MODE", 18), Ro("GIO_MASTER_EN", 19),
    ];

    // EICS/EIMS/EIMC/EIAC/EIAM/EICR: one bit per vector (bits vectors-1:0), plus bit 31 "other
    // causes" in the PF (used outside MSI-X mode); EITR one per MSI-X vector.
    private static void ExtendedInterrupts(RegisterMapBuilder b, int vectorBits, bool other)
    {
        FieldSpec[] F(Func<string, int, int, FieldSpec> make) =>
            other ? [make("VECTORS", 0, vectorBits), make("OTHER", 31, 1)] : [make("VECTORS", 0, vectorBits)];
        b.RegOn("EICS", Eics, "EICR", F(SetOf))
         .Reg("EIMS", Eims, 0, F(W1s))
         .RegOn("EIMC", Eimc, "EIMS", F(ClearOf))
         .Reg("EIAC", Eiac, 0, F(Rw))
         .Reg("EIAM", Eiam, 0, F(Rw))
         .Reg("EICR", Eicr, 0, F(RcW1c))
         .Array("EITR", Eitr, other ? Igb82576.PfMsixVectors : Igb82576.VfMsixVectors, 4, 0, Rw("INTERVAL", 2, 13), Rw("CNT_IGNR", 31));
    }

    /// <summary>SRRCTL reset: 2 KiB packet buffer, 256-byte header buffer, legacy descriptors.</summary>
    public const uint SrrctlReset = 0x0000_0402;

    /// <summary>RXDCTL reset (datasheet): WTHRESH = 1; queue 0 is also enabled.</summary>
    public const uint RxdctlReset = 0x0001_0000, Rxdctl0Reset = RxdctlReset | QueueEnable;
    /// <summary>TXDCTL reset (datasheet): queue 0 enabled, the others disabled.</summary>
    public const uint Txdctl0Reset = QueueEnable;

    // Power-on values the part loads (datasheet register tables; QEMU's igb_mac_reg_init agrees).
    /// <summary>CTRL reset: FD, LRST, 1000 Mb/s, ADVD3WUC.</summary>
    public const uint CtrlReset = 1u << 0 | 1u << 3 | 2u << 8 | 1u << 20;
    /// <summary>TCTL reset: PSP, CT = 0xF, COLD = 0x40, RTLC (26), bits 31:28 = 0xA; EN clear.</summary>
    public const uint TctlReset = TctlPsp | 0xFu << 4 | 0x40u << 12 | 1u << 26 | 0xAu << 28;
    /// <summary>TCTL_EXT reset: 0x40 in 9:0, COLD 0x42 in 19:10.</summary>
    public const uint TctlExtReset = 0x40 | 0x42u << 10;
    /// <summary>TIPG reset: IPGT 8, IPGR1 4, IPGR 6.</summary>
    public const uint TipgReset = 8 | 4u << 10 | 6u << 20;
    /// <summary>VET reset: 802.1Q TPID 0x8100 for inner and outer VLAN.</summary>
    public const uint VetReset = 0x8100_8100;
    /// <summary>LEDCTL reset: LED0 mode 2 (link up), LED1 3 + blink, LED2 6, LED3 7.</summary>
    public const uint LedctlReset = 2 | 3u << 8 | 1u << 15 | 6u << 16 | 7u << 24;
    /// <summary>Packet buffer sizes (KiB): receive 64, transmit 40.</summary>
    public const uint RxpbsReset = 0x40, TxpbsReset = 0x28;
    /// <summary>GCR reset: L0s adjust (9), completion timeout resend (16), capability version 2 (18), L1 entry latency (23, 25, 26).</summary>
    public const uint GcrReset = 1u << 9 | 1u << 16 | 1u << 18 | 1u << 23 | 3u << 25;
    /// <summary>RXCSUM reset: IP and TCP/UDP checksum offload on.</summary>
    public const uint RxcsumReset = 1u << 8 | 1u << 9;
    /// <summary>RLPML reset: 0x2600 (9728-byte frames).</summary>
    public const uint RlpmlReset = 0x2600;
    /// <summary>DTXCTL reset: 802.3 length field (2), spoof interrupt (6).</summary>
    public const uint DtxctlReset = 1u << 2 | 1u << 6;
    /// <summary>RPLOLR reset: strip CRC.</summary>
    public const uint RplolrReset = 1u << 31;
    /// <summary>VMOLR reset: RLPML 0x2600, STRCRC.</summary>
    public const uint VmolrReset = 0x2600 | 1u << 31;
    /// <summary>MBVFIMR, VFRE and VFTE reset: every pool.</summary>
    public const uint AllPools = 0xFF;
    /// <summary>TXCTL (DCA_TXCTRL) reset: descriptor read (9), write-back (11) and data read (13) relaxed ordering.</summary>
    public const uint TxctlReset = 1u << 9 | 1u << 11 | 1u << 13;

    /// <summary>The PF BAR0 declarations. <paramref name="mac"/> is loaded into RAL0/RAH0 at reset
    /// (as the part loads it from its EEPROM).</summary>
    public static IReadOnlyList<RegisterSpec> PfBar0(ReadOnlySpan<byte> mac)
    {
        // Receive address entry 0 holds the port's MAC (valid) after reset.
        uint ral0 = (uint)(mac[0] | mac[1] << 8 | mac[2] << 16 | mac[3] << 24);
        uint rah0 = (uint)(mac[4] | mac[5] << 8) | RahAv;
        var b = new RegisterMapBuilder()
            .Reg("CTRL", Ctrl, CtrlReset, Rw("LOW", 0, 26), Sc("RST", 26), Rw("HIGH", 27, 5))
            .Reg("STATUS", Status, 0, StatusFields)
            .Reg("CTRL_EXT", CtrlExt, 0, Rw("LOW", 0, 14), Rw("PFRSTD", 14), Rw("HIGH", 15, 17))
            .Also(IgbNvm.Declare)
            .Also(IgbPhy.Declare)
            .Also(IgbSemaphores.Declare)
            .Also(IgbVlanFilter.Declare)
            .Also(IgbSpoofReporter.Declare)
            .Also(IgbRss.Declare)
            .Reg("ICR", Icr, 0, RcW1c("CAUSES", 0, 31), Rc("INT_ASSERTED", 31))
            .RegOn("ICS", Ics, "ICR", SetOf("CAUSES", 0, 31))
            .Reg("IMS", Ims, 0, W1s("MASK", 0, 31))
            .RegOn("IMC", Imc, "IMS", ClearOf("MASK", 0, 31))
            .Reg("IAM", Iam, 0, Rw("MASK", 0, 31))
            .Reg("RCTL", Rctl, 0, Rw("RCTL", 1, 31))
            .Reg("TCTL", Tctl, TctlReset, Rw("TCTL", 0, 32))
            .Reg("TCTL_EXT", TctlExt, TctlExtReset, Rw("COLD", 0, 20))
            .Reg("TIPG", Tipg, TipgReset, Rw("IPGT", 0, 10), Rw("IPGR1", 10, 10), Rw("IPGR", 20, 10))
            .Reg("VET", Vet, VetReset, Rw("VET", 0, 16), Rw("VET_EXT", 16, 16))
            .Reg("LEDCTL", Ledctl, LedctlReset, Rw("LEDCTL", 0, 32))
            .Reg("RXPBS", Rxpbs, RxpbsReset, Rw("SIZE", 0, 7))
            .Reg("TXPBS", Txpbs, TxpbsReset, Rw("SIZE", 0, 6))
            .Reg("GCR", Gcr, GcrReset, Rw("LOW", 0, 18), Ro("CAP_VER2", 18), Rw("HIGH", 19, 13))
            .Reg("RXCSUM", Rxcsum, RxcsumReset, Rw("PCSS", 0, 8), Rw("IPOFLD", 8), Rw("TUOFLD", 9), Rw("CRCOFL", 11), Rw("IPPCSE", 12), Rw("PCSD", 13))
            .Reg("RLPML", Rlpml, RlpmlReset, Rw("RLPML", 0, 14))
            .Reg("DTXCTL", Dtxctl, DtxctlReset, Rw("8023LL", 2), Rw("VLAN_ADDED", 3), Rw("OOS_ENABLE", 4), Rw("MDP_EN", 5), Rw("SPOOF_INT", 6))
            .Reg("RPLOLR", Rplolr, RplolrReset, Rw("STRVLAN", 30), Rw("STRCRC", 31))
            .Reg("GPIE", Gpie, 0, Rw("NSICR", 0), Rw("MULTIPLE_MSIX", 4), Rw("EIAME", 30), Rw("PBA", 31))
            .Also(b => ExtendedInterrupts(b, 25, other: true))
            .Array("IVAR0", Ivar0, 8, 4, 0, IvarBytes(5, "RX_LO", "TX_LO", "RX_HI", "TX_HI"))
            .Reg("IVAR_MISC", IvarMisc, 0, IvarBytes(5, "TCP_TIMER", "OTHER"))
            .Also(IgbMailbox.Declare)
            .Reg("MPC", Mpc, 0, Rc("COUNT", 0, 32))
            .Reg("RUC", Ruc, 0, Rc("COUNT", 0, 32))
            .Reg("GPRC", Gprc, 0, Rc("COUNT", 0, 32))
            .Reg("GPTC", Gptc, 0, Rc("COUNT", 0, 32))
            .Reg("GORCL", Gorcl, 0, Rc("COUNT", 0, 32))
            .Reg("GORCH", Gorch, 0, Rc("COUNT", 0, 32))
            .Reg("GOTCL", Gotcl, 0, Rc("COUNT", 0, 32))
            .Reg("GOTCH", Gotch, 0, Rc("COUNT", 0, 32))
            .Reg("TSCTC", Tsctc, 0, Rc("COUNT", 0, 32))
            .Reg("TSCTFC", Tsctfc, 0, Rc("COUNT", 0, 32))
            .Also(b => IgbSwitch.Declare(b, ral0, rah0));

        for (int q = 0; q < Queues; q++)
        {
            IgbRxQueue.Declare(b, q, RxQueues + 0x40u * (uint)q);
            IgbTxQueue.Declare(b, q, TxQueues + 0x40u * (uint)q);
        }
        return b.Specs;
    }

    // IVAR entries: one byte per cause, vector number in the low bits, bit 7 valid.
    private static FieldSpec[] IvarBytes(int vectorBits, params string[] names)
    {
        var f = new List<FieldSpec>();
        for (int i = 0; i < names.Length; i++)
        {
            f.Add(Rw(names[i] + "_VEC", 8 * i, vectorBits));
            f.Add(Rw(names[i] + "_VALID", 8 * i + 7));
        }
        return [.. f];
    }

    /// <summary>Queue register names in block order with their offset inside an RX or TX block.</summary>
    public static readonly IReadOnlyList<(string Name, uint Offset, bool Rx)> QueueLayout =
    [
        ("RDBAL", Rdbal, true), ("RDBAH", Rdbah, true), ("RDLEN", Rdlen, true), ("SRRCTL", Srrctl, true), ("RDH", Rdh, true),
        ("RXCTL", Rxctl, true), ("RDT", Rdt, true), ("RXDCTL", Rxdctl, true), ("RQDPC", Rqdpc, true),
        ("TDBAL", Tdbal, false), ("TDBAH", Tdbah, false), ("TDLEN", Tdlen, false), ("TDH", Tdh, false), ("TXCTL", Txctl, false),
        ("TDT", Tdt, false), ("TXDCTL", Txdctl, false), ("TDWBAL", Tdwbal, false), ("TDWBAH", Tdwbah, false),
    ];

    /// <summary>Maps queue <paramref name="pfQueue"/>'s registers of <paramref name="pf"/> into <paramref name="file"/>
    /// at the RX block <paramref name="rx"/> and TX block <paramref name="tx"/>, named NAME[<paramref name="localQueue"/>]
    /// (legacy aliases in the PF, a VF's two queues in its file).</summary>
    public static void AliasQueue(RegisterFile file, RegisterFile pf, int pfQueue, int localQueue, uint rx, uint tx, string suffix = "")
    {
        foreach (var (name, off, isRx) in QueueLayout)
            file.Alias((isRx ? rx : tx) + off, Q(name, localQueue) + suffix, pf[Q(name, pfQueue)]);
    }

    /// <summary>The VF BAR0 declarations that are the VF's own (queues are aliases of the PF's, added by the port).</summary>
    public static IReadOnlyList<RegisterSpec> VfBar0() => new RegisterMapBuilder()
        .Reg("CTRL", Ctrl, 0, Sc("RST", 26))
        .Reg("STATUS", Status, 0, StatusFields)
        .Also(b => ExtendedInterrupts(b, Igb82576.VfMsixVectors, other: false))
        .Reg("IVAR0", Ivar0, 0, IvarBytes(2, "RX0", "TX0", "RX1", "TX1"))
        .Reg("IVAR_MISC", IvarMisc, 0, IvarBytes(2, "MBX"))
        .Reg("VFMAILBOX", VfMailbox, VfmbRsti, Sc("REQ", 0), Sc("ACK", 1), Rw("VFU", 2), Ro("PFU", 3), Rc("PFSTS", 4), Rc("PFACK", 5),
            Ro("RSTI", 6), Rc("RSTD", 7))
        .Reg("GPRC", VfGprc, 0, Ro("COUNT", 0, 32))
        .Reg("GPTC", VfGptc, 0, Ro("COUNT", 0, 32))
        .Reg("GORC", VfGorc, 0, Ro("COUNT", 0, 32))
        .Reg("GOTC", VfGotc, 0, Ro("COUNT", 0, 32))
        .Reg("MPRC", VfMprc, 0, Ro("COUNT", 0, 32))
        .Reg("GPRLBC", VfGprlbc, 0, Ro("COUNT", 0, 32))
        .Reg("GPTLBC", VfGptlbc, 0, Ro("COUNT", 0, 32))
        .Reg("GORLBC", VfGorlbc, 0, Ro("COUNT", 0, 32))
        .Reg("GOTLBC", VfGotlbc, 0, Ro("COUNT", 0, 32))
        .Specs;
}
