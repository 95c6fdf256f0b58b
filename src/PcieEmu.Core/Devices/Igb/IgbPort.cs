using PcieEmu.Core.AddressSpace;
using PcieEmu.Core.Memory;
using PcieEmu.Core.Registers;
using PcieEmu.Core.Topology;
using static PcieEmu.Core.Devices.Igb.IgbRegs;

namespace PcieEmu.Core.Devices.Igb;

/// <summary>Where a DMA fault happened.</summary>
public enum NicDmaStage
{
    /// <summary>Fetching transmit descriptors.</summary>
    TxDescriptorFetch = 1,
    /// <summary>Reading a transmit buffer.</summary>
    TxBufferRead = 2,
    /// <summary>Writing back a transmit descriptor or the head.</summary>
    TxWriteBack = 3,
    /// <summary>Fetching a receive descriptor.</summary>
    RxDescriptorFetch = 4,
    /// <summary>Writing a receive buffer.</summary>
    RxBufferWrite = 5,
    /// <summary>Writing back a receive descriptor.</summary>
    RxWriteBack = 6,
}

/// <summary>A DMA the NIC could not complete (the fault itself is recorded by the remapping unit).</summary>
/// <param name="Rid">Requester ID of the function whose DMA failed.</param>
/// <param name="Queue">PF queue number.</param>
/// <param name="Stage">What the queue was doing.</param>
/// <param name="Status">Why the DMA stopped.</param>
/// <param name="Address">Address of the failed access.</param>
public readonly record struct NicDmaFault(ushort Rid, int Queue, NicDmaStage Stage, DmaStatus Status, ulong Address);

/// <summary>
/// One port of the 82576 (one PF): the PF's BAR0 register file, a VF BAR0 register file per
/// pool, 16 RX and 16 TX queues, the VMDq switch, the PF-VF mailboxes and the wire.
/// <para>
/// Threading: register callbacks run under <see cref="Platform.Machine.SyncRoot"/> (held by
/// the MMIO path); a TDT write runs the transmit ring inline, and frames it switches locally
/// are received inline too. <see cref="InjectFrame"/> takes the lock itself.
/// <see cref="FrameTransmitted"/> handlers run under the lock and must not block.
/// </para>
/// </summary>
public sealed partial class IgbPort : IEthernetPort
{
    private readonly IgbPhysicalFunction _pf;
    private readonly RegisterFile[] _vfFiles;
    private readonly IgbVfStats[] _vfStats;
    private readonly IgbInterruptUnit _pfIrq;
    private readonly IgbInterruptUnit[] _vfIrq;
    private readonly byte[] _mac = new byte[6];
    private bool _pfResetDone;
    private readonly IgbSemaphores _semaphores;
    private readonly IgbVlanFilter _vlan;
    private readonly IgbSpoofReporter _spoof;
    private readonly IgbRss _rss;
    private readonly IgbRxChecksum _rxChecksum;

    // Hot registers, cached by reference.
    private readonly Register _ctrl, _rctl, _tctl, _mrqc, _vtCtl, _dtxswc, _vfre, _vfte, _mbvficr, _mbvfimr, _vflre;
    private readonly Register _ruc, _mpc, _gprc, _gptc, _gorcl, _gorch, _gotcl, _gotch;
    private readonly Register[] _ral = new Register[RarEntries], _rah = new Register[RarEntries], _vmolr = new Register[Pools], _mta = new Register[128];
    private readonly Register[] _p2v = new Register[Pools];
    private readonly QueueRegs[] _q = new QueueRegs[Queues];

    internal IgbPort(IgbPhysicalFunction pf)
    {
        _pf = pf;
        ulong sn = pf.Options.EffectiveSerialNumber;
        // PF0's DSN is the EUI-64 form of the NVM's LAN0 MAC (FF-FF inserted in the middle); the
        // port loads its MAC from the NVM (LAN1: bit 0 of the last byte inverted).
        ulong lan0 = ((sn >> 16) & 0xFFFF_FF00_0000UL) | (sn & 0xFF_FFFF);
        var nvmMac = new byte[6];
        for (int i = 0; i < 6; i++) nvmMac[i] = (byte)(lan0 >> (8 * (5 - i)));
        IgbNvm.PortMac(nvmMac, pf.FunctionNumber).CopyTo(_mac, 0);

        PfRegisters = new RegisterFile($"{pf.Name} BAR0", (uint)Igb82576.Bar0Size, IgbRegisterMaps.PfBar0(_mac));
        var f = PfRegisters;
        Nvm = new IgbNvm(f, nvmMac);
        _semaphores = new IgbSemaphores(f);
        for (int q = 0; q < 4; q++)
            IgbRegisterMaps.AliasQueue(f, f, q, q, RxLegacy + 0x100u * (uint)q, TxLegacy + 0x100u * (uint)q, " (legacy)");
        (_ctrl, _rctl, _tctl, _mrqc, _vtCtl, _dtxswc) = (f["CTRL"], f["RCTL"], f["TCTL"], f["MRQC"], f["VT_CTL"], f["DTXSWC"]);
        (_vfre, _vfte, _mbvficr, _mbvfimr, _vflre) = (f["VFRE"], f["VFTE"], f["MBVFICR"], f["MBVFIMR"], f["VFLRE"]);
        _ruc = f["RUC"];
        (_mpc, _gprc, _gptc, _gorcl, _gorch, _gotcl, _gotch) = (f["MPC"], f["GPRC"], f["GPTC"], f["GORCL"], f["GORCH"], f["GOTCL"], f["GOTCH"]);
        for (int n = 0; n < RarEntries; n++) (_ral[n], _rah[n]) = (f[$"RAL[{n}]"], f[$"RAH[{n}]"]);
        for (int p = 0; p < Pools; p++) (_vmolr[p], _p2v[p]) = (f[$"VMOLR[{p}]"], f[$"P2VMAILBOX[{p}]"]);
        for (int i = 0; i < 128; i++) _mta[i] = f[$"MTA[{i}]"];
        for (int q = 0; q < Queues; q++) _q[q] = new QueueRegs(f, q);

        _pfIrq = new IgbInterruptUnit(f, pf, pf.Machine.SyncRoot, pf.Machine.Time);
        Phy = new IgbPhy(f, bits => _pfIrq.OtherCause(bits));
        _vlan = new IgbVlanFilter(f);
        _spoof = new IgbSpoofReporter(f, bits => _pfIrq.OtherCause(bits));
        _rss = new IgbRss(f);
        _rxChecksum = new IgbRxChecksum(f);
        f.OnRead("STATUS", Status)
         .OnWrite("CTRL", (_, o, w, _) =>
         {
             if ((w & CtrlRst) != 0) DeviceReset();
             else if ((o & CtrlGioMasterDisable) != 0 && (_ctrl.Value & CtrlGioMasterDisable) == 0) KickAll();   // DMA allowed again
         })
         .OnWrite("CTRL_EXT", (_, _, w, _) => { if ((w & CtrlExtPfrstd) != 0) PfResetDone(); })
         .OnWrite("ICS", (_, _, w, _) => _pfIrq.IcrChanged(w))
         .OnWrite("IMS", (_, _, w, _) => _pfIrq.IcrChanged(w))
         .OnWrite("EICS", (_, _, w, _) => _pfIrq.Deliver(w))
         .OnWrite("EIMS", (_, _, w, _) => _pfIrq.Deliver(w))
         .OnWrite("TCTL", (_, o, _, _) => { if ((o & TctlEn) == 0 && (_tctl.Value & TctlEn) != 0) KickAll(); })
         .OnWrite("VFTE", (_, o, _, _) => { if ((_vfte.Value & ~o) != 0) KickAll(); });
        // ICR clears on read only when GPIE.NSICR is set, an interrupt was asserted
        // (INT_ASSERTED) or IMS is 0; otherwise a read leaves the causes for the next reader.
        var icr = f["ICR"];
        var ims = f["IMS"];
        var gpie = f["GPIE"];
        Func<bool> clears = () => (gpie.Value & GpieNsicr) != 0 || (icr.Value & IcrIntAsserted) != 0 || ims.Value == 0;
        icr.ReadClearCondition = clears;
        f.OnRead("ICR", () =>
        {
            uint v = icr.Value;
            if (clears()) _pfIrq.IcrRead();
            return v;
        });
        for (int q = 0; q < Queues; q++)
        {
            int queue = q;
            f.OnWrite(IgbRegisterMaps.Q("TDT", q), (_, _, _, _) => ProcessTx(queue));
            f.OnWrite(IgbRegisterMaps.Q("TXDCTL", q), (_, o, _, _) => { if ((o & QueueEnable) == 0) ProcessTx(queue); });
            foreach (var name in new[] { "RDBAL", "RDBAH", "RDLEN", "RDH", "RXDCTL" })
                f.OnWrite(IgbRegisterMaps.Q(name, q), (_, _, _, _) => InvalidateRxCache(queue));
        }
        for (int p = 0; p < Pools; p++)
        {
            int pool = p;
            f.OnWrite($"P2VMAILBOX[{p}]", (_, _, w, _) => PfMailboxWrite(pool, w));
        }

        int vfFiles = Math.Min(pf.Options.TotalVfs, Pools);
        _vfFiles = new RegisterFile[vfFiles];
        _vfStats = new IgbVfStats[vfFiles];
        _vfIrq = new IgbInterruptUnit[vfFiles];
        for (int i = 0; i < vfFiles; i++)
        {
            int vf = i;
            var v = new RegisterFile($"{pf.Name}.VF{i} BAR0", (uint)Igb82576.VfBarSize, IgbRegisterMaps.VfBar0());
            for (int k = 0; k < MailboxWords; k++) v.Alias(Vmbmem + 4u * (uint)k, $"VMBMEM[{k}]", f[$"VMBMEM[{i * MailboxWords + k}]"]);
            IgbRegisterMaps.AliasQueue(v, f, i, 0, RxLegacy, TxLegacy);
            IgbRegisterMaps.AliasQueue(v, f, i + Pools, 1, RxLegacy + 0x100, TxLegacy + 0x100);
            _vfIrq[i] = new IgbInterruptUnit(v, () => VfFunction(vf), pf.Machine.SyncRoot, pf.Machine.Time);
            v.OnRead("STATUS", Status)
             .OnWrite("CTRL", (_, _, w, _) => { if ((w & CtrlRst) != 0) ResetVf(vf); })
             .OnWrite("EICS", (_, _, w, _) => _vfIrq[vf].Deliver(w))
             .OnWrite("EIMS", (_, _, w, _) => _vfIrq[vf].Deliver(w))
             .OnWrite("VFMAILBOX", (_, _, w, _) => VfMailboxWrite(vf, w));
            _vfFiles[i] = v;
            _vfStats[i] = new IgbVfStats(v);
        }
    }

    /// <summary>Machine-wide Ethernet port number (description order; the default machine's PF n has port n).</summary>
    public int PortNumber => _pf.EthernetPort;
    /// <inheritdoc/>
    public int Number => _pf.EthernetPort;
    /// <inheritdoc/>
    public PciFunction Function => _pf;
    /// <summary>The port's permanent MAC address (loaded into RAL0/RAH0 at reset).</summary>
    public ReadOnlySpan<byte> MacAddress => _mac;
    /// <summary>The NVM (EEPROM) the port reads through EERD.</summary>
    public IgbNvm Nvm { get; }
    /// <summary>The port's copper PHY (MDIC).</summary>
    public IgbPhy Phy { get; }
    /// <summary>The PF's BAR0 register file.</summary>
    public RegisterFile PfRegisters { get; }
    /// <summary>VF BAR0 register files, one per pool that has one (min(TotalVFs, 8)).</summary>
    public IReadOnlyList<RegisterFile> VfRegisters => _vfFiles;

    /// <summary>Raised for every frame the port sends out of its wire (under the machine lock; do not block).</summary>
    public event Action<WireFrame>? FrameTransmitted;

    /// <summary>DMA faults the queues met (descriptor or buffer not reachable), since the machine started.</summary>
    public long DmaFaults { get; private set; }
    /// <summary>The most recent DMA fault, if any.</summary>
    public NicDmaFault? LastDmaFault { get; private set; }
    /// <summary>Transmit descriptors the port could not act on (unknown type, TSO, oversized frame) and dropped.</summary>
    public long TxDropped { get; private set; }
    /// <summary>Frames a VF sent from a MAC address its pool does not own while MAC anti-spoofing was on (dropped).</summary>
    public long TxSpoofed { get; private set; }

    internal IMmioRegion VfRegion(int index) => index < _vfFiles.Length ? _vfFiles[index] : EmptyRegion.Instance;

    private PciFunction? VfFunction(int pool)
    {
        var vfs = _pf.VirtualFunctions;
        return pool < vfs.Count ? vfs[pool] : null;
    }

    private int ActiveVfs => Math.Min(_pf.VirtualFunctions.Count, _vfFiles.Length);

    /// <summary>The function that owns queue <paramref name="q"/>: VF (q mod 8) when that VF exists, else the PF.</summary>
    private PciFunction QueueOwner(int q) => VfFunction(q & 7) is { } vf && (q & 7) < _vfFiles.Length ? vf : _pf;

    private uint Status()
    {
        int vfs = _pf.VirtualFunctions.Count;
        // LU follows the PHY; GIO Master Enable Status clears once CTRL.GIO_MASTER_DISABLE is set
        // (DMA is synchronous here, so no request is ever pending).
        uint s = StatusFd | StatusSpeed1000 | (uint)(_pf.FunctionNumber & 3) << 2;
        if (Phy.LinkUp) s |= StatusLu;
        if ((_ctrl.Value & CtrlGioMasterDisable) == 0) s |= StatusGioMasterEnable;
        if (vfs > 0) s |= StatusIov | (uint)(Math.Min(vfs, 15) << StatusNumVfsShift);
        return s;
    }

    // ---------------- Reset ----------------

    /// <summary>Device reset (CTRL.RST, PF FLR): every register back to its reset value, every VF
    /// mailbox shows RSTI until the PF driver sets CTRL_EXT.PFRSTD.</summary>
    internal void DeviceReset()
    {
        PfRegisters.Reset();
        foreach (var v in _vfFiles) v.Reset();
        _pfIrq.Reset();
        foreach (var u in _vfIrq) u.Reset();
        for (int q = 0; q < Queues; q++) InvalidateRxCache(q);
        _pfResetDone = false;
    }

    private void PfResetDone()
    {
        _pfResetDone = true;
        foreach (var v in _vfFiles)
        {
            var mb = v["VFMAILBOX"];
            mb.Value = (mb.Value & ~VfmbRsti) | VfmbRstd;
        }
    }

    /// <summary>VF reset (VF CTRL.RST or VF FLR): the VF's registers and its two queues go back to
    /// reset (queues disabled), its pool's RX/TX enables clear, VFLRE records it and the PF gets VMMB.</summary>
    internal void ResetVf(int pool, bool signalPf = true, bool keepPoolEnables = false)
    {
        if (pool >= _vfFiles.Length) return;
        var v = _vfFiles[pool];
        v.Reset();
        _vfIrq[pool].Reset();
        v["VFMAILBOX"].Value = _pfResetDone ? VfmbRstd : VfmbRsti;
        _p2v[pool].Value = 0;
        _q[pool].Reset();
        _q[pool + Pools].Reset();
        if (signalPf)
        {
            // A VF reset leaves its queues disabled (PF queue 0's power-on enable included); a VF
            // that appears starts from the power-on values.
            _q[pool].Rxdctl.Value &= ~QueueEnable;
            _q[pool].Txdctl.Value &= ~QueueEnable;
        }
        InvalidateRxCache(pool);
        InvalidateRxCache(pool + Pools);
        if (!keepPoolEnables)
        {
            _vfre.Value &= ~(1u << pool);
            _vfte.Value &= ~(1u << pool);
        }
        if (!signalPf) return;
        _vflre.Value |= 1u << pool;
        SignalVmmb(pool);
    }

    // ---------------- Mailbox ----------------

    private void SignalVmmb(int pool)
    {
        if ((_mbvfimr.Value & (1u << pool)) != 0) _pfIrq.OtherCause(IcrVmmb);
    }

    private void PfMailboxWrite(int pool, uint written)
    {
        var p2v = _p2v[pool];
        RegisterFile? v = pool < _vfFiles.Length ? _vfFiles[pool] : null;
        var vfmb = v?["VFMAILBOX"];
        // PFU: the PF may take the buffer only while the VF does not hold it.
        if ((p2v.Value & P2vPfu) != 0 && (p2v.Value & P2vVfu) != 0) p2v.Value &= ~P2vPfu;
        if ((written & P2vRvfu) != 0)
        {
            p2v.Value &= ~P2vVfu;
            if (vfmb != null) vfmb.Value &= ~VfmbVfu;
        }
        if (vfmb == null) return;
        vfmb.Value = (vfmb.Value & ~VfmbPfu) | ((p2v.Value & P2vPfu) != 0 ? VfmbPfu : 0);
        uint sig = 0;
        if ((written & P2vSts) != 0) sig |= VfmbPfsts;
        if ((written & P2vAck) != 0) sig |= VfmbPfack;
        if (sig == 0) return;
        vfmb.Value |= sig;
        _vfIrq[pool].OtherCause();
    }

    private void VfMailboxWrite(int pool, uint written)
    {
        var vfmb = _vfFiles[pool]["VFMAILBOX"];
        var p2v = _p2v[pool];
        if ((vfmb.Value & VfmbVfu) != 0 && (p2v.Value & P2vPfu) != 0) vfmb.Value &= ~VfmbVfu;
        p2v.Value = (p2v.Value & ~P2vVfu) | ((vfmb.Value & VfmbVfu) != 0 ? P2vVfu : 0);
        uint icr = 0;
        if ((written & VfmbReq) != 0) icr |= 1u << pool;
        if ((written & VfmbAck) != 0) icr |= 1u << (16 + pool);
        if (icr == 0) return;
        _mbvficr.Value |= icr;
        SignalVmmb(pool);
    }

    // ---------------- Statistics helpers ----------------

    private static void Add64(Register lo, Register hi, uint n)
    {
        ulong v = ((ulong)hi.Value << 32 | lo.Value) + n;
        lo.Value = (uint)v;
        hi.Value = (uint)(v >> 32);
    }

    /// <summary>The registers of one queue pair, cached.</summary>
    private sealed class QueueRegs
    {
        public readonly Register Rdbal, Rdbah, Rdlen, Srrctl, Rdh, Rdt, Rxdctl, Rqdpc, Rxctl;
        public readonly Register Tdbal, Tdbah, Tdlen, Tdh, Tdt, Txdctl, Tdwbal, Tdwbah, Txctl;

        public QueueRegs(RegisterFile f, int q)
        {
            string S(string n) => IgbRegisterMaps.Q(n, q);
            (Rdbal, Rdbah, Rdlen, Srrctl, Rdh, Rdt, Rxdctl, Rqdpc, Rxctl) =
                (f[S("RDBAL")], f[S("RDBAH")], f[S("RDLEN")], f[S("SRRCTL")], f[S("RDH")], f[S("RDT")], f[S("RXDCTL")], f[S("RQDPC")], f[S("RXCTL")]);
            (Tdbal, Tdbah, Tdlen, Tdh, Tdt, Txdctl, Tdwbal, Tdwbah, Txctl) =
                (f[S("TDBAL")], f[S("TDBAH")], f[S("TDLEN")], f[S("TDH")], f[S("TDT")], f[S("TXDCTL")], f[S("TDWBAL")], f[S("TDWBAH")], f[S("TXCTL")]);
        }

        public void Reset()
        {
            foreach (var r in new[] { Rdbal, Rdbah, Rdlen, Srrctl, Rdh, Rdt, Rxdctl, Rqdpc, Rxctl, Tdbal, Tdbah, Tdlen, Tdh, Tdt, Txdctl, Tdwbal, Tdwbah, Txctl })
                r.Reset();
        }

        public ulong RxBase => (ulong)Rdbah.Value << 32 | Rdbal.Value;
        public ulong TxBase => (ulong)Tdbah.Value << 32 | Tdbal.Value;
    }
}
