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
    /// <summary>Largest frame the port sends or accepts (bytes, without FCS).</summary>
    public const int MaxFrameSize = EthernetFrame.MaxSize;
    /// <summary>Shortest frame <see cref="InjectFrame"/> accepts: an Ethernet header.</summary>
    public const int MinFrameSize = EthernetFrame.MinSize;

    private readonly IgbPhysicalFunction _pf;
    private readonly RegisterFile[] _vfFiles;
    private readonly IgbVfStats[] _vfStats;
    private readonly IgbInterruptUnit _pfIrq;
    private readonly IgbInterruptUnit[] _vfIrq;
    private readonly byte[] _mac = new byte[6];
    private readonly IgbSemaphores _semaphores;
    private readonly IgbTxQueue[] _tx = new IgbTxQueue[Queues];
    private readonly IgbRxQueue[] _rx = new IgbRxQueue[Queues];
    private readonly IgbSwitch _switch;
    private readonly IgbMailbox _mailbox;

    // Registers the port itself acts on, by handle.
    private readonly Register _ctrl, _tctl, _vfte, _gptc, _gotcl, _gotch, _tsctc, _tsctfc;

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
        (_ctrl, _tctl, _vfte) = (f["CTRL"], f["TCTL"], f["VFTE"]);
        (_gptc, _gotcl, _gotch, _tsctc, _tsctfc) = (f["GPTC"], f["GOTCL"], f["GOTCH"], f["TSCTC"], f["TSCTFC"]);
        var txScratch = new IgbTxScratch();
        var rxScratch = new byte[MaxFrameSize + 4];
        for (int q = 0; q < Queues; q++)
        {
            _tx[q] = new IgbTxQueue(this, f, q, txScratch);
            _rx[q] = new IgbRxQueue(this, f, q, rxScratch);
        }

        _pfIrq = new IgbInterruptUnit(f, pf, pf.Machine.SyncRoot, pf.Machine.Time);
        Phy = new IgbPhy(f, bits => _pfIrq.OtherCause(bits));
        f.OnRead("STATUS", Status)
         .OnWrite("CTRL", (_, o, w, _) =>
         {
             if ((w & CtrlRst) != 0) DeviceReset();
             else if ((o & CtrlGioMasterDisable) != 0 && (_ctrl.Value & CtrlGioMasterDisable) == 0) KickAll();   // DMA allowed again
         })
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
            var tx = _tx[q];
            f.OnWrite(IgbRegisterMaps.Q("TDT", q), (_, _, _, _) => tx.Process());
            f.OnWrite(IgbRegisterMaps.Q("TXDCTL", q), (_, o, _, _) => { if ((o & QueueEnable) == 0) tx.Process(); });
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
             .OnWrite("EIMS", (_, _, w, _) => _vfIrq[vf].Deliver(w));
            _vfFiles[i] = v;
            _vfStats[i] = new IgbVfStats(v);
        }
        _mailbox = new IgbMailbox(f, _vfFiles, bits => _pfIrq.OtherCause(bits), pool => _vfIrq[pool].OtherCause());
        _switch = new IgbSwitch(this, f, _rx, _vfStats, bits => _pfIrq.OtherCause(bits));
        f.OnWrite("CTRL_EXT", (_, _, w, _) => { if ((w & CtrlExtPfrstd) != 0) _mailbox.PfResetDone(); });
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
    /// <summary>Transmit packets the port could not act on (unknown descriptor type, invalid TSO, oversized frame) and dropped.</summary>
    public long TxDropped { get; private set; }
    /// <summary>Frames a VF sent from a MAC address its pool does not own while MAC anti-spoofing was on (dropped).</summary>
    public long TxSpoofed { get; private set; }

    internal IMmioRegion VfRegion(int index) => index < _vfFiles.Length ? _vfFiles[index] : EmptyRegion.Instance;

    private PciFunction? VfFunction(int pool)
    {
        var vfs = _pf.VirtualFunctions;
        return pool < vfs.Count ? vfs[pool] : null;
    }

    internal int ActiveVfs => Math.Min(_pf.VirtualFunctions.Count, _vfFiles.Length);

    /// <summary>The function that owns queue <paramref name="q"/>: VF (q mod 8) when that VF exists, else the PF.</summary>
    internal PciFunction QueueOwner(int q) => VfFunction(q & 7) is { } vf && (q & 7) < _vfFiles.Length ? vf : _pf;

    /// <summary>Queue <paramref name="q"/> as its owner <paramref name="owner"/> numbers it (a VF's queues n and
    /// n + 8 are its queues 0 and 1, as in its register names): the trace's DMA purposes use it.</summary>
    internal ushort OwnerQueueNumber(int q, PciFunction owner) => (ushort)(ReferenceEquals(owner, _pf) ? q : q >> 3);

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
        foreach (var r in _rx) r.InvalidateCache();
        foreach (var t in _tx) t.Reset();   // the contexts too
        _mailbox.DeviceReset();
    }

    /// <summary>VF reset (VF CTRL.RST or VF FLR): the VF's registers and its two queues go back to
    /// reset (queues disabled), its pool's RX/TX enables clear, VFLRE records it and the PF gets VMMB.</summary>
    internal void ResetVf(int pool, bool signalPf = true, bool keepPoolEnables = false)
    {
        if (pool >= _vfFiles.Length) return;
        _vfFiles[pool].Reset();
        _vfIrq[pool].Reset();
        _mailbox.VfReset(pool);
        foreach (int q in (ReadOnlySpan<int>)[pool, pool + Pools])
        {
            _rx[q].Reset();
            _tx[q].Reset();
        }
        if (signalPf)
        {
            // A VF reset leaves its queues disabled (PF queue 0's power-on enable included); a VF
            // that appears starts from the power-on values.
            _rx[pool].Rxdctl.Value &= ~QueueEnable;
            _tx[pool].Txdctl.Value &= ~QueueEnable;
        }
        if (!keepPoolEnables) _switch.DisablePool(pool);
        if (signalPf) _mailbox.SignalVfReset(pool);
    }

    // ---------------- Services the blocks use ----------------

    internal static void Add64(Register lo, Register hi, uint n)
    {
        ulong v = ((ulong)hi.Value << 32 | lo.Value) + n;
        lo.Value = (uint)v;
        hi.Value = (uint)(v >> 32);
    }

    private void KickAll()
    {
        foreach (var t in _tx) t.Process();
    }

    internal void Fault(PciFunction fn, int q, NicDmaStage stage, DmaResult r, ulong address)
    {
        DmaFaults++;
        LastDmaFault = new NicDmaFault(fn.Rid, q, stage, r.Status, r.FaultAddress != 0 ? r.FaultAddress : address);
    }

    internal void CountTxDrop() => TxDropped++;

    /// <summary>A TSO packet was segmented (TSCTC) or could not be (TSCTFC, and dropped).</summary>
    internal void CountTso(bool sent)
    {
        if (sent) _tsctc.Value++;
        else
        {
            _tsctfc.Value++;
            TxDropped++;
        }
    }

    internal void CountSpoofed() => TxSpoofed++;

    /// <summary>Port-level transmit gate for queue <paramref name="q"/>: TCTL.EN, no GIO master disable, and VFTE for a VF's pool in VMDq mode.</summary>
    internal bool TxAllowed(int q)
    {
        if ((_tctl.Value & TctlEn) == 0) return false;
        if ((_ctrl.Value & CtrlGioMasterDisable) != 0) return false;   // no new master requests
        int pool = q & 7;
        return !(_switch.VmdqEnabled && pool < ActiveVfs && (_vfte.Value & (1u << pool)) == 0);
    }

    internal void QueueInterrupt(int q, bool tx)
    {
        int pool = q & 7;
        if (pool < ActiveVfs && VfFunction(pool) != null) _vfIrq[pool].QueueCause(q >> 3, tx);
        else _pfIrq.QueueCause(q, tx);
    }

    /// <summary>A packet a TX queue gathered in <paramref name="buffer"/> (<paramref name="len"/> bytes, room
    /// for a tag after it): the pool's VMVIR, then VLAN insertion and short-packet padding (TCTL.PSP), then the switch.</summary>
    internal void Send(int q, PciFunction source, byte[] buffer, int len, bool vle, ushort vlan)
    {
        _switch.TransmitTag(q & 7, ref vle, ref vlan);
        var f = buffer;
        if (vle && len >= 12 && len + 4 <= f.Length)
        {
            // Insert an 802.1Q tag after the source MAC.
            Array.Copy(f, 12, f, 16, len - 12);
            f[12] = 0x81; f[13] = 0x00;
            f[14] = (byte)(vlan >> 8); f[15] = (byte)vlan;
            len += 4;
        }
        if ((_tctl.Value & TctlPsp) != 0 && len < 60)
        {
            f.AsSpan(len, 60 - len).Clear();
            len = 60;
        }
        _switch.Transmit(q, source, f.AsSpan(0, len));
    }

    /// <summary>After the switch: the trace events for the frame, and the wire (counters, <see cref="FrameTransmitted"/>) when it goes there.</summary>
    internal void Wire(int q, PciFunction source, ReadOnlySpan<byte> frame, bool local, bool wire, uint took)
    {
        var bus = _pf.Machine.Events;
        bool trace = bus.Wants(Events.EventKind.Frame);
        WireFrame? copy = null;
        if (trace && local)
            bus.Publish(new Events.FrameEvent(source.Rid, Events.FrameDirection.Switched, copy = ToWireFrame(frame), q, took));
        if (!wire) return;
        if (trace) bus.Publish(new Events.FrameEvent(source.Rid, Events.FrameDirection.ToWire, copy ?? ToWireFrame(frame), q, 0));
        _gptc.Value++;
        Add64(_gotcl, _gotch, (uint)frame.Length + 4);
        FrameTransmitted?.Invoke(ToWireFrame(frame));
    }

    /// <summary>
    /// Puts <paramref name="frame"/> (destination MAC first, no FCS) on the port's wire as if a
    /// link partner sent it. Takes the machine lock. Returns how many receive queues took it
    /// (0: filtered out or dropped for lack of descriptors, which the counters show).
    /// </summary>
    public int InjectFrame(ReadOnlySpan<byte> frame)
    {
        if (frame.Length is < MinFrameSize or > MaxFrameSize)
            throw new ArgumentException($"frame must be {MinFrameSize}..{MaxFrameSize} bytes (was {frame.Length})", nameof(frame));
        lock (_pf.Machine.SyncRoot)
        {
            var bus = _pf.Machine.Events;
            if (bus.Wants(Events.EventKind.Frame)) bus.Publish(new Events.FrameEvent(_pf.Rid, Events.FrameDirection.FromWire, ToWireFrame(frame), -1, 0));
            return _switch.FromWire(frame);
        }
    }

    private WireFrame ToWireFrame(ReadOnlySpan<byte> frame) => WireFrame.Now(PortNumber, frame, _pf.Machine.Time);
}
