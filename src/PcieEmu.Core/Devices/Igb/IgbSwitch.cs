using PcieEmu.Core.Registers;
using PcieEmu.Core.Topology;
using static PcieEmu.Core.Devices.Igb.IgbRegs;
using static PcieEmu.Core.Registers.FieldSpec;

namespace PcieEmu.Core.Devices.Igb;

/// <summary>
/// The port's switch and receive filters (igb-82576.md "Switching"): the receive address table
/// (RAL/RAH with pool bits), the multicast table (MTA), per-pool offload control (VMOLR), pool
/// enables (VFRE), VMDq control (MRQC, VT_CTL, DTXSWC loopback and anti-spoofing), the VLAN
/// block, anti-spoof reporting, RSS and the receive checksum/packet-type parser. It decides which
/// pools and queues a frame reaches, from the wire or from a transmit queue (loopback).
/// </summary>
internal sealed class IgbSwitch
{
    private readonly IgbPort _port;
    private readonly IgbRxQueue[] _rx;
    private readonly IgbVfStats[] _vfStats;
    private readonly IgbVlanFilter _vlan;
    private readonly IgbSpoofReporter _spoof;
    private readonly IgbRss _rss;
    private readonly IgbRxChecksum _rxChecksum;
    private readonly Register _ctrl, _rctl, _mrqc, _vtCtl, _dtxswc, _vfre, _vfte, _ruc, _gprc, _gorcl, _gorch;
    private readonly Register[] _ral = new Register[RarEntries], _rah = new Register[RarEntries], _vmolr = new Register[Pools], _mta = new Register[128];

    /// <summary>Declares the switch's registers in a PF register map: pool enables (VFRE, VFTE: every pool
    /// at reset), DTXSWC, MTA, MRQC, VT_CTL, VMOLR and the 24-entry receive address table (16 at
    /// 0x5400, 8 at 0x54E0), entry 0 holding <paramref name="ral0"/>/<paramref name="rah0"/> (the
    /// port's MAC, valid) after reset.</summary>
    public static void Declare(RegisterMapBuilder b, uint ral0, uint rah0)
    {
        b.Reg("VFRE", Vfre, IgbRegisterMaps.AllPools, Rw("POOLS", 0, 8))
         .Reg("VFTE", Vfte, IgbRegisterMaps.AllPools, Rw("POOLS", 0, 8))
         .Reg("DTXSWC", Dtxswc, 0, Rw("MAC_AS", 0, 8), Rw("VLAN_AS", 8, 8), Rw("LLE", 16, 8), Rw("LOOPBACK_EN", 31))
         .Array("MTA", Mta, 128, 4, 0, Rw("BITS", 0, 32))
         .Reg("MRQC", Mrqc, 0, Rw("MRQC", 0, 32))
         .Reg("VT_CTL", VtCtl, 0, Rw("VLAN_FILTER", 0), Rw("DEF_POOL", 7, 3), Rw("IGNORE_MAC", 28), Rw("DIS_DEF_POOL", 29), Rw("REPL_EN", 30))
         .Array("VMOLR", Vmolr, Pools, 4, IgbRegisterMaps.VmolrReset, Rw("RLPML", 0, 14), Rw("LPE", 16), Rw("RSSE", 17), Rw("AUPE", 24), Rw("ROMPE", 25),
             Rw("ROPE", 26), Rw("BAM", 27), Rw("MPME", 28), Rw("STRVLAN", 30), Rw("STRCRC", 31));
        for (int n = 0; n < RarEntries; n++)
        {
            uint off = n < 16 ? Ral0 + 8u * (uint)n : Ra2 + 8u * (uint)(n - 16);
            b.Reg($"RAL[{n}]", off, n == 0 ? ral0 : 0, Rw("RAL", 0, 32));
            b.Reg($"RAH[{n}]", off + 4, n == 0 ? rah0 : 0, Rw("RAH", 0, 16), Rw("ASEL", 16, 2), Rw("POOLSEL", 18, 8), Rw("AV", 31));
        }
    }

    public IgbSwitch(IgbPort port, RegisterFile f, IgbRxQueue[] rx, IgbVfStats[] vfStats, Action<uint> pfOtherCause)
    {
        _port = port;
        _rx = rx;
        _vfStats = vfStats;
        _vlan = new IgbVlanFilter(f);
        _spoof = new IgbSpoofReporter(f, pfOtherCause);
        _rss = new IgbRss(f);
        _rxChecksum = new IgbRxChecksum(f);
        (_ctrl, _rctl, _mrqc, _vtCtl, _dtxswc, _vfre, _vfte) = (f["CTRL"], f["RCTL"], f["MRQC"], f["VT_CTL"], f["DTXSWC"], f["VFRE"], f["VFTE"]);
        (_ruc, _gprc, _gorcl, _gorch) = (f["RUC"], f["GPRC"], f["GORCL"], f["GORCH"]);
        for (int n = 0; n < RarEntries; n++) (_ral[n], _rah[n]) = (f[$"RAL[{n}]"], f[$"RAH[{n}]"]);
        for (int p = 0; p < Pools; p++) _vmolr[p] = f[$"VMOLR[{p}]"];
        for (int i = 0; i < 128; i++) _mta[i] = f[$"MTA[{i}]"];
    }

    /// <summary>A VF reset: its pool stops receiving and transmitting (VFRE, VFTE) until the PF enables it again.</summary>
    public void DisablePool(int pool)
    {
        _vfre.Value &= ~(1u << pool);
        _vfte.Value &= ~(1u << pool);
    }

    /// <summary>Transmit tagging of a pool in VMDq mode (VMVIR).</summary>
    public void TransmitTag(int pool, ref bool vle, ref ushort vlan)
    {
        if (VmdqEnabled) _vlan.TransmitTag(pool, ref vle, ref vlan);
    }

    /// <summary>VMDq on: MRQC.MRQE (2:0) = 3 (VMDq) or 5 (VMDq with RSS).</summary>
    public bool VmdqEnabled => (_mrqc.Value & 7) is MrqcVmdq or MrqcVmdqRss;

    private static bool IsBroadcast(ReadOnlySpan<byte> f) =>
        f[0] == 0xFF && f[1] == 0xFF && f[2] == 0xFF && f[3] == 0xFF && f[4] == 0xFF && f[5] == 0xFF;

    /// <summary>Pools of the valid receive-address entries that match <paramref name="dst"/> (bit 31: a match with no pool bits).</summary>
    private uint MatchUnicast(ReadOnlySpan<byte> dst)
    {
        uint lo = (uint)(dst[0] | dst[1] << 8 | dst[2] << 16 | dst[3] << 24);
        uint hi = (uint)(dst[4] | dst[5] << 8);
        uint pools = 0;
        for (int n = 0; n < RarEntries; n++)
        {
            uint rah = _rah[n].Value;
            if ((rah & RahAv) == 0 || (rah & 0xFFFF) != hi || _ral[n].Value != lo) continue;
            uint sel = rah >> RahPoolShift & 0xFF;
            pools |= sel == 0 ? 1u << 31 : sel;
        }
        return pools;
    }

    private bool MtaHit(ReadOnlySpan<byte> dst)
    {
        int mo = (int)(_rctl.Value >> RctlMoShift & 3);
        int hash = mo switch
        {
            0 => dst[4] >> 4 | dst[5] << 4,
            1 => dst[4] >> 3 | dst[5] << 5,
            2 => dst[4] >> 2 | dst[5] << 6,
            _ => dst[4] | dst[5] << 8,
        } & 0xFFF;
        return (_mta[hash >> 5].Value & (1u << (hash & 31))) != 0;
    }

    private static bool IsTagged(ReadOnlySpan<byte> f) => f.Length >= 16 && f[12] == 0x81 && f[13] == 0x00;

    /// <summary>VFRE gates the pools of enabled VFs (the PF's pools are not gated); an untagged
    /// frame needs VMOLR.AUPE (accept untagged packets) in the pool.</summary>
    private bool PoolReceives(int pool, ReadOnlySpan<byte> frame)
    {
        if (pool < _port.ActiveVfs && (_vfre.Value & (1u << pool)) == 0) return false;
        return IsTagged(frame) || (_vmolr[pool].Value & VmolrAupe) != 0;
    }

    private bool PoolAcceptsGroup(int pool, bool broadcast, ReadOnlySpan<byte> frame)
    {
        if (!PoolReceives(pool, frame)) return false;
        uint vmolr = _vmolr[pool].Value;
        if (broadcast) return (vmolr & VmolrBam) != 0;
        return (vmolr & VmolrMpme) != 0 || ((vmolr & VmolrRompe) != 0 && MtaHit(frame));
    }

    /// <summary>
    /// A frame from TX queue <paramref name="q"/>. With VMDq and loopback (DTXSWC bit 31):
    /// unicast to a receive address with pool bits goes to those pools only; broadcast and
    /// multicast go to every other accepting pool and the wire; unknown unicast goes to the wire.
    /// Otherwise every frame goes to the wire.
    /// </summary>
    public void Transmit(int q, PciFunction source, ReadOnlySpan<byte> frame)
    {
        int src = q & 7;
        bool srcIsVf = src < _port.ActiveVfs && source.IsVirtual;
        uint octets = (uint)frame.Length + 4;
        bool local = false, wire = true;
        uint took = 0;
        // MAC anti-spoofing (DTXSWC bit per pool): a VF may only send from a MAC the PF gave its pool.
        if (srcIsVf && VmdqEnabled
            && (((_dtxswc.Value & (1u << src)) != 0 && (MatchUnicast(frame[6..]) & (1u << src)) == 0)
                || ((_dtxswc.Value & (0x100u << src)) != 0 && _vlan.VlanSpoofed(src, frame))))
        {
            _port.CountSpoofed();
            _spoof.Report(q);
            _port.NoteDrop(q, Events.FrameDropReason.AntiSpoof, frame.Length);
            return;
        }
        if (VmdqEnabled && (_dtxswc.Value & DtxswcLoopback) != 0)
        {
            bool bcast = IsBroadcast(frame), mcast = !bcast && (frame[0] & 1) != 0;
            uint vlanPools = _vlan.ReceivePools(frame, vmdq: true);
            if (bcast || mcast)
            {
                for (int p = 0; p < Pools; p++)
                    if (p != src && (vlanPools & (1u << p)) != 0 && PoolAcceptsGroup(p, bcast, frame) && ReceivePool(p, frame, fromWire: false)) { local = true; took |= 1u << p; }
            }
            else
            {
                // A unicast frame for a local pool stays inside the switch (dropped there if its VLAN filters refuse it).
                uint pools = MatchUnicast(frame) & 0xFF & ~(1u << src);
                if (pools != 0)
                {
                    wire = false;
                    pools &= vlanPools;
                    for (int p = 0; p < Pools; p++)
                        if ((pools & (1u << p)) != 0 && PoolReceives(p, frame) && ReceivePool(p, frame, fromWire: false)) { local = true; took |= 1u << p; }
                }
            }
        }
        if (srcIsVf) _vfStats[src].Transmitted(octets, local);
        _port.Wire(q, source, frame, local, wire, took);
    }

    /// <summary>Receives into pool <paramref name="pool"/>'s queue and counts it.</summary>
    private bool ReceivePool(int pool, ReadOnlySpan<byte> frame, bool fromWire)
    {
        var (pktInfo, checksum) = _rxChecksum.Evaluate(frame);
        uint mrqe = _mrqc.Value & 7, rssHash = 0;
        int q = VmdqEnabled ? pool : 0;
        // RSS without VMDq (MRQE 2): the queue from RETA. VMDq with RSS (MRQE 5), for a pool with
        // VMOLR.RSSE: bit 0 of the RETA entry picks the pool's queue, pool (0) or pool + 8 (1)
        // (datasheet 8.26.1: PQn = VFn + VQn * 8). Either way the type and hash go to the write-back.
        if (mrqe == IgbRss.MrqeRss || (mrqe == MrqcVmdqRss && (_vmolr[pool].Value & VmolrRsse) != 0))
        {
            int type = _rss.Hash(frame, out uint hash);
            if (type != IgbRss.TypeNone)
            {
                int entry = _rss.Queue(hash);
                q = mrqe == IgbRss.MrqeRss ? entry : pool + Pools * (entry & 1);
                pktInfo |= (uint)type;
                if (_rss.HashInWriteBack) rssHash = hash;
            }
        }
        // VLAN stripping: VMOLR.STRVLAN of the pool in VMDq mode, CTRL.VME otherwise.
        bool strip = VmdqEnabled ? (_vmolr[pool].Value & VmolrStrVlan) != 0 : (_ctrl.Value & CtrlVme) != 0;
        if (!_rx[q].Receive(frame, fromWire, strip, pktInfo, rssHash, checksum)) return false;
        uint octets = (uint)frame.Length + 4;
        if (VmdqEnabled && pool < _port.ActiveVfs)
        {
            _vfStats[pool].Received(octets, (frame[0] & 1) != 0 && !IsBroadcast(frame), fromWire);
        }
        return true;
    }

    /// <summary>A frame from the wire: pool selection in VMDq mode, the PF's filters otherwise.
    /// Runts (under 60 bytes without FCS) are counted in RUC and dropped unless RCTL.SBP.</summary>
    public int FromWire(ReadOnlySpan<byte> frame)
    {
        if (frame.Length < 60 && (_rctl.Value & RctlSbp) == 0)
        {
            _ruc.Value++;
            return 0;
        }
        bool bcast = IsBroadcast(frame), mcast = !bcast && (frame[0] & 1) != 0;
        int delivered = 0;
        uint vlanPools = _vlan.ReceivePools(frame, VmdqEnabled);
        if (vlanPools == 0) return 0;   // VLAN filter (RCTL.VFE) refused it
        if (VmdqEnabled)
        {
            if (bcast || mcast)
            {
                for (int p = 0; p < Pools; p++)
                    if ((vlanPools & (1u << p)) != 0 && PoolAcceptsGroup(p, bcast, frame) && ReceivePool(p, frame, fromWire: true)) delivered++;
            }
            else
            {
                uint pools = MatchUnicast(frame) & 0xFF;
                if (pools == 0 && (_vtCtl.Value & VtCtlDisDefPool) == 0) pools = 1u << (int)(_vtCtl.Value >> VtCtlDefPoolShift & 7);
                pools &= vlanPools;
                for (int p = 0; p < Pools; p++)
                    if ((pools & (1u << p)) != 0 && PoolReceives(p, frame) && ReceivePool(p, frame, fromWire: true)) delivered++;
            }
        }
        else
        {
            uint rctl = _rctl.Value;
            bool accept = bcast ? (rctl & RctlBam) != 0
                : mcast ? (rctl & RctlMpe) != 0 || MtaHit(frame)
                : (rctl & RctlUpe) != 0 || MatchUnicast(frame) != 0;
            if (accept && ReceivePool(0, frame, fromWire: true)) delivered++;
        }
        if (delivered > 0)
        {
            _gprc.Value++;
            IgbPort.Add64(_gorcl, _gorch, (uint)frame.Length + 4);
        }
        return delivered;
    }
}
