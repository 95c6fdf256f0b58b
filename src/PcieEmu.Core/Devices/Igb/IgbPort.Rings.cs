using System.Buffers.Binary;
using PcieEmu.Core.Memory;
using PcieEmu.Core.Topology;
using static PcieEmu.Core.Devices.Igb.IgbRegs;

namespace PcieEmu.Core.Devices.Igb;

/// <summary>Descriptor rings: transmit (legacy, advanced data, advanced context) and receive
/// (legacy, advanced one-buffer).</summary>
public sealed partial class IgbPort
{
    /// <summary>Largest frame the port gathers or accepts (bytes, without FCS).</summary>
    public const int MaxFrameSize = EthernetFrame.MaxSize;
    /// <summary>Shortest frame <see cref="InjectFrame"/> accepts: an Ethernet header.</summary>
    public const int MinFrameSize = EthernetFrame.MinSize;
    private const int DescSize = 16, FetchBatch = 64;

    // Advanced transmit descriptor bits (cmd_type_len).
    private const uint AdvDtypMask = 0xF << 20, AdvDtypData = 3 << 20, AdvDtypContext = 2 << 20;
    private const uint AdvEop = 1u << 24, AdvRs = 1u << 27, AdvDext = 1u << 29, AdvVle = 1u << 30, AdvTse = 1u << 31;
    // Legacy transmit descriptor CMD byte bits.
    private const byte LegEop = 1 << 0, LegRs = 1 << 3, LegDext = 1 << 5, LegVle = 1 << 6;

    private readonly byte[] _txFrame = new byte[MaxFrameSize + 4];
    private readonly byte[] _descs = new byte[FetchBatch * DescSize];
    private readonly int[] _rsList = new int[FetchBatch * 4];
    private readonly TxContext[] _ctx = new TxContext[Queues * 2];

    /// <summary>An advanced context descriptor's fields (two contexts per queue, IDX bit 4).</summary>
    private struct TxContext
    {
        public ushort Vlan;
        public int MacLen, IpLen;
        public uint Tucmd;
    }

    /// <summary>Checksum offloads requested for the packet being gathered.</summary>
    private struct TxOffload
    {
        public bool Ip, L4, Legacy;
        public int Ctx, Css, Cso;
    }

    private const uint TucmdIpv4 = 0x400, TucmdL4tMask = 0x1800, TucmdL4tTcp = 0x800, TucmdL4tUdp = 0;
    private const uint OlinfoIxsm = 1u << 8, OlinfoTxsm = 1u << 9;
    private const byte LegIc = 1 << 2;
    private const uint RxPrefetch = 32;
    private readonly RxDescriptorCache[] _rxCache = [.. Enumerable.Range(0, Queues).Select(_ => new RxDescriptorCache())];

    /// <summary>Receive descriptors fetched ahead: Bytes holds ring indexes from Origin; [Start, End)
    /// (never wrapping) are still unused and owned by the device (between RDH and RDT when
    /// fetched). Dropped when the driver rewrites the ring registers or the queue resets.</summary>
    private sealed class RxDescriptorCache
    {
        public readonly byte[] Bytes = new byte[RxPrefetch * DescSize];
        public uint Origin, Start, End;
        public void Invalidate() => Origin = Start = End = 0;
    }

    private void InvalidateRxCache(int q) => _rxCache[q].Invalidate();
    private readonly byte[] _rxWithFcs = new byte[MaxFrameSize + 4];

    private void KickAll()
    {
        for (int q = 0; q < Queues; q++) ProcessTx(q);
    }

    private void Fault(PciFunction fn, int q, NicDmaStage stage, DmaResult r, ulong address)
    {
        DmaFaults++;
        LastDmaFault = new NicDmaFault(fn.Rid, q, stage, r.Status, r.FaultAddress != 0 ? r.FaultAddress : address);
    }

    private bool TxAllowed(int q)
    {
        if ((_tctl.Value & TctlEn) == 0 || (_q[q].Txdctl.Value & QueueEnable) == 0) return false;
        if ((_ctrl.Value & CtrlGioMasterDisable) != 0) return false;   // no new master requests
        int pool = q & 7;
        return !(VmdqEnabled && pool < ActiveVfs && (_vfte.Value & (1u << pool)) == 0);
    }

    /// <summary>
    /// Runs TX queue <paramref name="q"/> from TDH to TDT: fetches descriptors through the owner's
    /// DMA port, gathers each packet, sends it to the switch, writes back DD on RS descriptors (or
    /// the head to TDWBA), advances TDH. A DMA fault stops the queue at the first descriptor of the
    /// packet it hit, with nothing written back; the next TDT write retries from there.
    /// </summary>
    private void ProcessTx(int q)
    {
        if (!TxAllowed(q)) return;
        var r = _q[q];
        uint ringLen = r.Tdlen.Value / DescSize;
        if (ringLen == 0) return;
        uint head = r.Tdh.Value, tail = r.Tdt.Value;
        if (head >= ringLen || tail >= ringLen) return;
        var fn = QueueOwner(q);
        ulong ringBase = r.TxBase;
        bool headWb = (r.Tdwbal.Value & TdwbalEnable) != 0;
        bool anyDone = false;
        uint cacheStart = 0, cacheCount = 0;
        Span<byte> wb = stackalloc byte[4];

        while (head != tail)
        {
            // Gather one packet: descriptors from head up to the one with EOP.
            uint cur = head;
            int len = 0, rsCount = 0;
            bool eop = false, drop = false, vle = false, first = true;
            ushort vlan = 0;
            var offload = default(TxOffload);
            while (cur != tail && !eop)
            {
                if (cur < cacheStart || cur >= cacheStart + cacheCount)
                {
                    uint avail = tail > cur ? tail - cur : ringLen - cur;
                    uint n = Math.Min(avail, FetchBatch);
                    var res = fn.Dma.Read(ringBase + cur * DescSize, _descs.AsSpan(0, (int)n * DescSize));
                    uint whole = (uint)res.BytesMoved / DescSize;
                    if (whole == 0) { Fault(fn, q, NicDmaStage.TxDescriptorFetch, res, ringBase + cur * DescSize); goto stop; }
                    cacheStart = cur; cacheCount = whole;
                }
                var d = _descs.AsSpan((int)(cur - cacheStart) * DescSize, DescSize);
                ulong addr = BinaryPrimitives.ReadUInt64LittleEndian(d);
                uint ctl = BinaryPrimitives.ReadUInt32LittleEndian(d[8..]);
                int bufLen;
                bool rs;
                if ((d[11] & LegDext) == 0)
                {
                    bufLen = (ushort)ctl;
                    eop = (d[11] & LegEop) != 0;
                    rs = (d[11] & LegRs) != 0;
                    if (eop && (d[11] & LegVle) != 0) { vle = true; vlan = BinaryPrimitives.ReadUInt16LittleEndian(d[14..]); }
                    // CMD.IC: insert a checksum computed from CSS to the end at CSO (first descriptor's fields).
                    if (first && (d[11] & LegIc) != 0) offload = new TxOffload { Legacy = true, Cso = d[10], Css = d[13] };
                    first = false;
                }
                else if ((ctl & AdvDtypMask) == AdvDtypContext)
                {
                    // vlan_macip_lens: IPLEN 8:0, MACLEN 15:9, VLAN 31:16; type_tucmd_mlhl: TUCMD;
                    // mss_l4len_idx: IDX 6:4 (MSS and L4LEN are for segmentation, not modelled).
                    uint vml = BinaryPrimitives.ReadUInt32LittleEndian(d);
                    int idx = d[12] >> 4 & 1;
                    _ctx[q * 2 + idx] = new TxContext
                    {
                        Vlan = (ushort)(vml >> 16), MacLen = (int)(vml >> 9 & 0x7F), IpLen = (int)(vml & 0x1FF), Tucmd = ctl,
                    };
                    bufLen = 0;
                    rs = (ctl & AdvRs) != 0;
                }
                else if ((ctl & AdvDtypMask) == AdvDtypData)
                {
                    bufLen = (ushort)ctl;
                    eop = (ctl & AdvEop) != 0;
                    rs = (ctl & AdvRs) != 0;
                    if ((ctl & AdvTse) != 0) drop = true;
                    uint olinfo = BinaryPrimitives.ReadUInt32LittleEndian(d[12..]);
                    if (first && (olinfo & (OlinfoIxsm | OlinfoTxsm)) != 0)
                        offload = new TxOffload { Ip = (olinfo & OlinfoIxsm) != 0, L4 = (olinfo & OlinfoTxsm) != 0, Ctx = q * 2 + (int)(olinfo >> 4 & 1) };
                    first = false;
                    if (eop && (ctl & AdvVle) != 0) { vle = true; vlan = _ctx[q * 2 + (int)(olinfo >> 4 & 1)].Vlan; }
                }
                else
                {
                    drop = true;   // unknown descriptor type
                    bufLen = 0;
                    rs = (ctl & AdvRs) != 0;
                    eop = true;
                }
                if (bufLen > 0 && !drop)
                {
                    if (len + bufLen > MaxFrameSize) drop = true;
                    else
                    {
                        var res = fn.Dma.Read(addr, _txFrame.AsSpan(len, bufLen));
                        if (!res.Ok) { Fault(fn, q, NicDmaStage.TxBufferRead, res, addr); goto stop; }
                        len += bufLen;
                    }
                }
                // Remember RS descriptors: index, legacy flag and the legacy STA byte.
                if (rs && rsCount < _rsList.Length)
                    _rsList[rsCount++] = (int)cur << 9 | ((d[11] & LegDext) == 0 ? 0x100 : 0) | d[12];
                cur = cur + 1 == ringLen ? 0 : cur + 1;
            }
            if (!eop) break;   // the rest of the packet is not posted yet

            if (drop || len < MinFrameSize) TxDropped++;
            else
            {
                ApplyChecksums(_txFrame.AsSpan(0, len), offload);
                if (VmdqEnabled) _vlan.TransmitTag(q & 7, ref vle, ref vlan);
                Transmit(q, fn, FinishFrame(len, vle, vlan));
            }

            if (!headWb)
            {
                for (int i = 0; i < rsCount; i++)
                {
                    int e = _rsList[i];
                    ulong a = ringBase + (ulong)(e >> 9) * DescSize + 12;
                    bool legacy = (e & 0x100) != 0;
                    // Legacy: STA.DD in byte 12 (CSS and VLAN kept); advanced: the write-back dword 3 = DD.
                    int n = legacy ? 1 : 4;
                    if (legacy) wb[0] = (byte)(e | 1);
                    else BinaryPrimitives.WriteUInt32LittleEndian(wb, 1);
                    var res = fn.Dma.Write(a, wb[..n]);
                    if (!res.Ok) Fault(fn, q, NicDmaStage.TxWriteBack, res, a);
                }
            }
            head = cur;
            r.Tdh.Value = head;
            anyDone = true;
        }
    stop:
        if (!anyDone) return;
        if (headWb)
        {
            ulong wba = (ulong)r.Tdwbah.Value << 32 | (r.Tdwbal.Value & ~3u);
            BinaryPrimitives.WriteUInt32LittleEndian(wb, r.Tdh.Value);
            var res = fn.Dma.Write(wba, wb);
            if (!res.Ok) Fault(fn, q, NicDmaStage.TxWriteBack, res, wba);
        }
        QueueInterrupt(q, tx: true);
    }

    /// <summary>Checksum insertion: IXSM the IPv4 header checksum at MACLEN + 10 over IPLEN bytes;
    /// TXSM the TCP (+16) or UDP (+6) checksum over the L4 header and payload from MACLEN + IPLEN,
    /// starting from the pseudo-header sum the driver left in the field; legacy IC the sum from CSS
    /// to the end at CSO. SCTP CRC is not computed. Offsets outside the frame: nothing is inserted.</summary>
    private void ApplyChecksums(Span<byte> f, TxOffload o)
    {
        if (o.Legacy)
        {
            if (o.Css < f.Length && o.Cso + 2 <= f.Length)
                BinaryPrimitives.WriteUInt16BigEndian(f[o.Cso..], (ushort)~OnesSum(f[o.Css..]));
            return;
        }
        var c = _ctx[o.Ctx];
        if (o.Ip && c.IpLen >= 20 && c.MacLen + c.IpLen <= f.Length)
        {
            var ip = f.Slice(c.MacLen, c.IpLen);
            ip[10] = 0; ip[11] = 0;
            BinaryPrimitives.WriteUInt16BigEndian(ip[10..], (ushort)~OnesSum(ip));
        }
        if (!o.L4) return;
        int l4 = c.MacLen + c.IpLen;
        uint l4t = c.Tucmd & TucmdL4tMask;
        int off = l4t == TucmdL4tTcp ? 16 : l4t == TucmdL4tUdp ? 6 : -1;
        if (off < 0 || l4 + off + 2 > f.Length) return;
        ushort sum = (ushort)~OnesSum(f[l4..]);
        if (l4t == TucmdL4tUdp && sum == 0) sum = 0xFFFF;   // UDP sends a zero checksum as all ones
        BinaryPrimitives.WriteUInt16BigEndian(f[(l4 + off)..], sum);
    }

    /// <summary>16-bit one's complement sum of big-endian words (odd length padded with 0), folded.</summary>
    internal static ushort OnesSum(ReadOnlySpan<byte> data)
    {
        ulong sum = 0;
        int i = 0;
        for (; i + 1 < data.Length; i += 2) sum += (uint)(data[i] << 8 | data[i + 1]);
        if (i < data.Length) sum += (uint)data[i] << 8;
        while (sum > 0xFFFF) sum = (sum & 0xFFFF) + (sum >> 16);
        return (ushort)sum;
    }

    private ReadOnlySpan<byte> FinishFrame(int len, bool vle, ushort vlan)
    {
        var f = _txFrame;
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
        return f.AsSpan(0, len);
    }

    private void QueueInterrupt(int q, bool tx)
    {
        int pool = q & 7;
        if (pool < ActiveVfs && VfFunction(pool) != null) _vfIrq[pool].QueueCause(q >> 3, tx);
        else _pfIrq.QueueCause(q, tx);
    }

    /// <summary>
    /// Receives <paramref name="frame"/> into RX queue <paramref name="q"/>: needs RCTL.EN and the
    /// queue enabled; takes as many descriptors as the frame needs (SRRCTL buffer size) or drops it
    /// and counts (RQDPC, and MPC for frames from the wire) when there are not enough. A DMA fault
    /// drops the frame with nothing written back and RDH unchanged.
    /// </summary>
    private bool ReceiveQueue(int q, ReadOnlySpan<byte> frame, bool fromWire, bool stripVlan, uint pktInfo = 0, uint rssHash = 0, uint checksum = 0)
    {
        var r = _q[q];
        if ((_rctl.Value & RctlEn) == 0 || (r.Rxdctl.Value & QueueEnable) == 0) return false;
        if ((_ctrl.Value & CtrlGioMasterDisable) != 0)
        {
            // GIO master disabled: the frame cannot be written to memory (missed, like a full ring).
            r.Rqdpc.Value++;
            if (fromWire) _mpc.Value++;
            return false;
        }
        ushort vlan = 0;
        bool vp = stripVlan && frame.Length >= 18 && frame[12] == 0x81 && frame[13] == 0x00;
        bool keepFcs = (_rctl.Value & RctlSecrc) == 0;
        if (vp || keepFcs)
        {
            // VLAN stripping: the tag leaves the data and goes to the write-back (status VP).
            // CRC not stripped: the FCS (of the frame as it was on the wire) follows the data.
            var b = _rxWithFcs.AsSpan();
            int len;
            if (vp)
            {
                vlan = BinaryPrimitives.ReadUInt16BigEndian(frame[14..]);
                frame[..12].CopyTo(b);
                frame[16..].CopyTo(b[12..]);
                len = frame.Length - 4;
            }
            else
            {
                frame.CopyTo(b);
                len = frame.Length;
            }
            if (keepFcs)
            {
                EthernetFcs.Write(frame, b.Slice(len, 4));
                len += 4;
            }
            frame = b[..len];
        }
        uint ringLen = r.Rdlen.Value / DescSize;
        uint head = r.Rdh.Value, tail = r.Rdt.Value;
        int bufSize = (int)(r.Srrctl.Value & SrrctlBsizePktMask) * 1024;
        if (bufSize == 0) bufSize = 2048;
        uint needed = (uint)((frame.Length + bufSize - 1) / bufSize);
        uint free = ringLen == 0 || head >= ringLen || tail >= ringLen ? 0 : (tail + ringLen - head) % ringLen;
        if (free < needed)
        {
            NoteDrop(q, Events.FrameDropReason.NoRxDescriptors, frame.Length);
            r.Rqdpc.Value++;
            if (fromWire) _mpc.Value++;
            return false;
        }
        var fn = QueueOwner(q);
        ulong ringBase = r.RxBase;
        bool legacy = (r.Srrctl.Value & SrrctlDescTypeMask) == 0;
        uint cur = head;
        int off = 0;
        // Fill the buffers first, then write back, so a fault leaves no descriptor written.
        var cache = _rxCache[q];
        for (uint i = 0; i < needed; i++)
        {
            if (cur < cache.Start || cur >= cache.End)
            {
                // Prefetch the descriptors the device owns from here (up to the tail or the ring end).
                uint n0 = Math.Min(Math.Min(ringLen - cur, (tail + ringLen - cur) % ringLen), RxPrefetch);
                ulong da = ringBase + cur * DescSize;
                var fetch = fn.Dma.Read(da, cache.Bytes.AsSpan(0, (int)n0 * DescSize));
                uint whole = (uint)fetch.BytesMoved / DescSize;
                if (whole == 0) { cache.Invalidate(); Fault(fn, q, NicDmaStage.RxDescriptorFetch, fetch, da); return false; }
                cache.Origin = cache.Start = cur;
                cache.End = cur + whole;
            }
            ulong buf = BinaryPrimitives.ReadUInt64LittleEndian(cache.Bytes.AsSpan((int)(cur - cache.Origin) * DescSize));
            int n = Math.Min(bufSize, frame.Length - off);
            var res = fn.Dma.Write(buf, frame.Slice(off, n));
            if (!res.Ok) { Fault(fn, q, NicDmaStage.RxBufferWrite, res, buf); return false; }
            off += n;
            cur = cur + 1 == ringLen ? 0 : cur + 1;
        }
        cur = head;
        off = 0;
        Span<byte> wb = stackalloc byte[DescSize];
        for (uint i = 0; i < needed; i++)
        {
            int n = Math.Min(bufSize, frame.Length - off);
            bool last = i == needed - 1;
            ulong da = ringBase + cur * DescSize;
            DmaResult res;
            if (legacy)
            {
                // Legacy write-back: length, checksum 0, status DD|EOP|IXSM (checksum not computed)|VP,
                // errors 0, VLAN (stripped tag).
                wb[..8].Clear();
                BinaryPrimitives.WriteUInt16LittleEndian(wb, (ushort)n);
                wb[4] = (byte)(0x01 | (last ? 0x02 : 0) | 0x04 | (vp ? 0x08 : 0));
                BinaryPrimitives.WriteUInt16LittleEndian(wb[6..], vlan);
                res = fn.Dma.Write(da + 8, wb[..8]);
            }
            else
            {
                // Advanced write-back: pkt_info (RSS type, packet type), RSS hash, status_error DD|EOP|VP
                // (checksum status and errors on the last descriptor), length | VLAN << 16.
                wb.Clear();
                BinaryPrimitives.WriteUInt32LittleEndian(wb, pktInfo);
                BinaryPrimitives.WriteUInt32LittleEndian(wb[4..], rssHash);
                BinaryPrimitives.WriteUInt32LittleEndian(wb[8..], 0x01u | (last ? 0x02u | checksum : 0) | (vp ? 0x08u : 0));
                BinaryPrimitives.WriteUInt16LittleEndian(wb[12..], (ushort)n);
                BinaryPrimitives.WriteUInt16LittleEndian(wb[14..], vlan);
                res = fn.Dma.Write(da, wb);
            }
            if (!res.Ok) { Fault(fn, q, NicDmaStage.RxWriteBack, res, da); return false; }
            off += n;
            cur = cur + 1 == ringLen ? 0 : cur + 1;
        }
        r.Rdh.Value = cur;
        // Descriptors before the new head were consumed (and written back): drop them from the cache.
        if (cur >= cache.Start && cur <= cache.End) cache.Start = cur; else cache.Invalidate();
        QueueInterrupt(q, tx: false);
        return true;
    }
}
