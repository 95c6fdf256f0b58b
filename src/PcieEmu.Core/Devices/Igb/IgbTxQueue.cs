using System.Buffers.Binary;
using PcieEmu.Core.Memory;
using PcieEmu.Core.Registers;
using static PcieEmu.Core.Devices.Igb.IgbRegs;
using static PcieEmu.Core.Registers.FieldSpec;

namespace PcieEmu.Core.Devices.Igb;

/// <summary>
/// One transmit queue of the port (datasheet "transmit descriptor ring"): its ring registers
/// (TDBAL/TDBAH/TDLEN/TDH/TDT/TXDCTL/TDWBAL/TDWBAH/TXCTL, typed handles), its two advanced
/// contexts (IDX 0 and 1), and the descriptor engine that walks the ring from TDH to TDT:
/// legacy descriptors (with CMD.IC checksum insertion), advanced data descriptors (IXSM/TXSM,
/// VLE, TSE) and advanced context descriptors. Gathered packets go to the port's switch.
/// </summary>
internal sealed class IgbTxQueue
{
    private const int DescSize = 16;
    // Advanced transmit descriptor bits (cmd_type_len).
    private const uint AdvDtypMask = 0xF << 20, AdvDtypData = 3 << 20, AdvDtypContext = 2 << 20;
    private const uint AdvEop = 1u << 24, AdvRs = 1u << 27, AdvVle = 1u << 30, AdvTse = 1u << 31;
    // Legacy transmit descriptor CMD byte bits.
    private const byte LegEop = 1 << 0, LegIc = 1 << 2, LegRs = 1 << 3, LegDext = 1 << 5, LegVle = 1 << 6;
    private const uint OlinfoIxsm = 1u << 8, OlinfoTxsm = 1u << 9;
    private const int OlinfoPaylenShift = 14;

    private readonly IgbPort _port;
    private readonly IgbTxScratch _scratch;
    private readonly Register _tdbal, _tdbah, _tdlen, _tdh, _tdt, _tdwbal, _tdwbah, _txctl;
    private readonly IgbTxContext[] _ctx = new IgbTxContext[2];

    public IgbTxQueue(IgbPort port, RegisterFile f, int q, IgbTxScratch scratch)
    {
        _port = port;
        _scratch = scratch;
        Index = q;
        string S(string n) => IgbRegisterMaps.Q(n, q);
        (_tdbal, _tdbah, _tdlen, _tdh, _tdt, Txdctl, _tdwbal, _tdwbah, _txctl) =
            (f[S("TDBAL")], f[S("TDBAH")], f[S("TDLEN")], f[S("TDH")], f[S("TDT")], f[S("TXDCTL")], f[S("TDWBAL")], f[S("TDWBAH")], f[S("TXCTL")]);
    }

    /// <summary>Declares TX queue <paramref name="q"/>'s registers at block <paramref name="tx"/> in a PF register map.</summary>
    public static void Declare(RegisterMapBuilder b, int q, uint tx)
    {
        string Q(string name) => IgbRegisterMaps.Q(name, q);
        b.Reg(Q("TDBAL"), tx + Tdbal, 0, Rw("TDBAL", 7, 25))
         .Reg(Q("TDBAH"), tx + Tdbah, 0, Rw("TDBAH", 0, 32))
         .Reg(Q("TDLEN"), tx + Tdlen, 0, Rw("LEN", 7, 13))
         .Reg(Q("TDH"), tx + Tdh, 0, Rw("TDH", 0, 16))
         .Reg(Q("TXCTL"), tx + Txctl, IgbRegisterMaps.TxctlReset, Rw("DCA", 0, 32))
         .Reg(Q("TDT"), tx + Tdt, 0, Rw("TDT", 0, 16))
         .Reg(Q("TXDCTL"), tx + IgbRegs.Txdctl, q == 0 ? IgbRegisterMaps.Txdctl0Reset : 0,
             Rw("PTHRESH", 0, 6), Rw("HTHRESH", 8, 6), Rw("WTHRESH", 16, 6), Rw("ENABLE", 25), Sc("SWFLSH", 26), Rw("PRIORITY", 27))
         .Reg(Q("TDWBAL"), tx + Tdwbal, 0, Rw("HEAD_WB_EN", 0), Rw("ADDR", 2, 30))
         .Reg(Q("TDWBAH"), tx + Tdwbah, 0, Rw("ADDR", 0, 32));
    }

    /// <summary>PF queue number.</summary>
    public int Index { get; }
    /// <summary>TXDCTL (queue enable).</summary>
    public Register Txdctl { get; }
    private ulong RingBase => (ulong)_tdbah.Value << 32 | _tdbal.Value;

    /// <summary>Queue reset: registers to their reset values, contexts cleared.</summary>
    public void Reset()
    {
        foreach (var r in new[] { _tdbal, _tdbah, _tdlen, _tdh, _tdt, Txdctl, _tdwbal, _tdwbah, _txctl }) r.Reset();
        Array.Clear(_ctx);
    }

    /// <summary>Packet being gathered: offloads requested by its first descriptor, VLAN, TSO.</summary>
    private struct Packet
    {
        public IgbTxOffload Offload;
        public bool Vle, Tse, Drop;
        public ushort Vlan;
        public int PayLen;
    }

    /// <summary>
    /// Runs the ring from TDH to TDT: fetches descriptors through the owner's DMA port, gathers
    /// each packet, sends it to the switch, writes back DD on RS descriptors (or the head to
    /// TDWBA), advances TDH. A DMA fault stops the queue at the first descriptor of the packet it
    /// hit, with nothing written back; the next TDT write retries from there.
    /// </summary>
    public void Process()
    {
        int q = Index;
        if ((Txdctl.Value & QueueEnable) == 0 || !_port.TxAllowed(q)) return;
        uint ringLen = _tdlen.Value / DescSize;
        if (ringLen == 0) return;
        uint head = _tdh.Value, tail = _tdt.Value;
        if (head >= ringLen || tail >= ringLen) return;
        var fn = _port.QueueOwner(q);
        ushort oq = _port.OwnerQueueNumber(q, fn);   // the queue's number in the trace's DMA purposes
        ulong ringBase = RingBase;
        bool headWb = (_tdwbal.Value & TdwbalEnable) != 0;
        bool anyDone = false;
        uint cacheStart = 0, cacheCount = 0;
        var descs = _scratch.Descriptors;
        var frame = _scratch.Frame;
        var rsList = _scratch.RsList;
        Span<byte> wb = stackalloc byte[4];

        while (head != tail)
        {
            // Gather one packet: descriptors from head up to the one with EOP.
            uint cur = head;
            int len = 0, rsCount = 0;
            bool eop = false, first = true;
            var p = default(Packet);
            while (cur != tail && !eop)
            {
                if (cur < cacheStart || cur >= cacheStart + cacheCount)
                {
                    uint avail = tail > cur ? tail - cur : ringLen - cur;
                    uint n = Math.Min(avail, IgbTxScratch.FetchBatch);
                    var res = fn.Dma.Read(ringBase + cur * DescSize, descs.AsSpan(0, (int)n * DescSize), new DmaPurpose(DmaUse.TxDescriptor, oq, cur));
                    uint whole = (uint)res.BytesMoved / DescSize;
                    if (whole == 0) { _port.Fault(fn, q, NicDmaStage.TxDescriptorFetch, res, ringBase + cur * DescSize); goto stop; }
                    cacheStart = cur; cacheCount = whole;
                }
                var d = descs.AsSpan((int)(cur - cacheStart) * DescSize, DescSize);
                ulong addr = BinaryPrimitives.ReadUInt64LittleEndian(d);
                uint ctl = BinaryPrimitives.ReadUInt32LittleEndian(d[8..]);
                int bufLen;
                bool rs;
                if ((d[11] & LegDext) == 0)
                {
                    bufLen = (ushort)ctl;
                    eop = (d[11] & LegEop) != 0;
                    rs = (d[11] & LegRs) != 0;
                    if (eop && (d[11] & LegVle) != 0) { p.Vle = true; p.Vlan = BinaryPrimitives.ReadUInt16LittleEndian(d[14..]); }
                    // CMD.IC: insert a checksum computed from CSS to the end at CSO (first descriptor's fields).
                    if (first && (d[11] & LegIc) != 0) p.Offload = new IgbTxOffload { Legacy = true, Cso = d[10], Css = d[13] };
                    first = false;
                }
                else if ((ctl & AdvDtypMask) == AdvDtypContext)
                {
                    // vlan_macip_lens: IPLEN 8:0, MACLEN 15:9, VLAN 31:16; type_tucmd_mlhl: TUCMD 19:9;
                    // mss_l4len_idx: IDX 6:4, L4LEN 15:8, MSS 31:16.
                    uint vml = BinaryPrimitives.ReadUInt32LittleEndian(d);
                    uint mli = BinaryPrimitives.ReadUInt32LittleEndian(d[12..]);
                    _ctx[mli >> 4 & 1] = new IgbTxContext
                    {
                        Vlan = (ushort)(vml >> 16), MacLen = (int)(vml >> 9 & 0x7F), IpLen = (int)(vml & 0x1FF), Tucmd = ctl,
                        L4Len = (int)(mli >> 8 & 0xFF), Mss = (int)(mli >> 16),
                    };
                    bufLen = 0;
                    rs = (ctl & AdvRs) != 0;
                }
                else if ((ctl & AdvDtypMask) == AdvDtypData)
                {
                    bufLen = (ushort)ctl;
                    eop = (ctl & AdvEop) != 0;
                    rs = (ctl & AdvRs) != 0;
                    uint olinfo = BinaryPrimitives.ReadUInt32LittleEndian(d[12..]);
                    int idx = (int)(olinfo >> 4 & 1);
                    if (first)
                    {
                        p.Tse = (ctl & AdvTse) != 0;
                        p.PayLen = (int)(olinfo >> OlinfoPaylenShift);
                        if (p.Tse || (olinfo & (OlinfoIxsm | OlinfoTxsm)) != 0)
                            p.Offload = new IgbTxOffload { Ip = (olinfo & OlinfoIxsm) != 0, L4 = (olinfo & OlinfoTxsm) != 0, Context = _ctx[idx] };
                    }
                    first = false;
                    if (eop && (ctl & AdvVle) != 0) { p.Vle = true; p.Vlan = _ctx[idx].Vlan; }
                }
                else
                {
                    p.Drop = true;   // unknown descriptor type
                    bufLen = 0;
                    rs = (ctl & AdvRs) != 0;
                    eop = true;
                }
                if (bufLen > 0 && !p.Drop)
                {
                    if (len + bufLen > IgbTxScratch.MaxPacket) p.Drop = true;
                    else
                    {
                        var res = fn.Dma.Read(addr, frame.AsSpan(len, bufLen), new DmaPurpose(DmaUse.TxBuffer, oq, cur));
                        if (!res.Ok) { _port.Fault(fn, q, NicDmaStage.TxBufferRead, res, addr); goto stop; }
                        len += bufLen;
                    }
                }
                // Remember RS descriptors: index, legacy flag and the legacy STA byte.
                if (rs && rsCount < rsList.Length)
                    rsList[rsCount++] = (int)cur << 9 | ((d[11] & LegDext) == 0 ? 0x100 : 0) | d[12];
                cur = cur + 1 == ringLen ? 0 : cur + 1;
            }
            if (!eop) break;   // the rest of the packet is not posted yet

            if (p.Drop || len < IgbPort.MinFrameSize) _port.CountTxDrop();
            else if (p.Tse) Segment(fn, frame.AsSpan(0, len), p);
            else if (len > IgbPort.MaxFrameSize) _port.CountTxDrop();
            else
            {
                IgbTxOffload.Apply(frame.AsSpan(0, len), p.Offload);
                _port.Send(q, fn, frame, len, p.Vle, p.Vlan);
            }

            if (!headWb)
            {
                for (int i = 0; i < rsCount; i++)
                {
                    int e = rsList[i];
                    ulong a = ringBase + (ulong)(e >> 9) * DescSize + 12;
                    bool legacy = (e & 0x100) != 0;
                    // Legacy: STA.DD in byte 12 (CSS and VLAN kept); advanced: the write-back dword 3 = DD.
                    int n = legacy ? 1 : 4;
                    if (legacy) wb[0] = (byte)(e | 1);
                    else BinaryPrimitives.WriteUInt32LittleEndian(wb, 1);
                    var res = fn.Dma.Write(a, wb[..n], new DmaPurpose(DmaUse.TxWriteBack, oq, (uint)(e >> 9)));
                    if (!res.Ok) _port.Fault(fn, q, NicDmaStage.TxWriteBack, res, a);
                }
            }
            head = cur;
            _tdh.Value = head;
            anyDone = true;
        }
    stop:
        if (!anyDone) return;
        if (headWb)
        {
            ulong wba = (ulong)_tdwbah.Value << 32 | (_tdwbal.Value & ~3u);
            BinaryPrimitives.WriteUInt32LittleEndian(wb, _tdh.Value);
            var res = fn.Dma.Write(wba, wb, new DmaPurpose(DmaUse.TxHeadWriteBack, oq));
            if (!res.Ok) _port.Fault(fn, q, NicDmaStage.TxWriteBack, res, wba);
        }
        _port.QueueInterrupt(q, tx: true);
    }

    /// <summary>TCP segmentation: the gathered packet (headers once, then the payload) leaves as
    /// MSS-sized frames, each with its headers rewritten (<see cref="IgbTso"/>).</summary>
    private void Segment(Topology.PciFunction fn, ReadOnlySpan<byte> packet, in Packet p)
    {
        var tso = new IgbTso(p.Offload, packet, p.PayLen);
        _port.CountTso(tso.Valid);
        if (!tso.Valid) return;
        var seg = _scratch.Segment;
        for (int i = 0; i < tso.Count; i++)
            _port.Send(Index, fn, seg, tso.Build(i, seg), p.Vle, p.Vlan);
    }
}

/// <summary>An advanced context descriptor's fields.</summary>
internal struct IgbTxContext
{
    public ushort Vlan;
    public int MacLen, IpLen, L4Len, Mss;
    public uint Tucmd;

    /// <summary>TUCMD bits (type_tucmd_mlhl): IPV4 (10), L4T (12:11: 0 UDP, 1 TCP, 2 SCTP).</summary>
    public const uint TucmdIpv4 = 0x400, TucmdL4tMask = 0x1800, TucmdL4tTcp = 0x800, TucmdL4tUdp = 0;

    public readonly bool Ipv4 => (Tucmd & TucmdIpv4) != 0;
}

/// <summary>Scratch buffers the port's transmit queues share (they run one at a time, under the machine lock).</summary>
internal sealed class IgbTxScratch
{
    /// <summary>Descriptors fetched per DMA read.</summary>
    public const int FetchBatch = 64;
    /// <summary>Largest packet a queue gathers: a TSO packet's headers and up to 256 KiB of payload
    /// (PAYLEN is 18 bits); anything else longer than <see cref="IgbPort.MaxFrameSize"/> is dropped.</summary>
    public const int MaxPacket = 256 * 1024 + 512;

    public readonly byte[] Frame = new byte[MaxPacket + 4];
    public readonly byte[] Segment = new byte[IgbPort.MaxFrameSize + 4];
    public readonly byte[] Descriptors = new byte[FetchBatch * 16];
    public readonly int[] RsList = new int[FetchBatch * 4];
}
