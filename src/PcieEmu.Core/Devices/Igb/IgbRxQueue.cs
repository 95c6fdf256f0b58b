using System.Buffers.Binary;
using PcieEmu.Core.Memory;
using PcieEmu.Core.Registers;
using static PcieEmu.Core.Devices.Igb.IgbRegs;
using static PcieEmu.Core.Registers.FieldSpec;

namespace PcieEmu.Core.Devices.Igb;

/// <summary>
/// One receive queue of the port: its ring registers (RDBAL/RDBAH/RDLEN/SRRCTL/RDH/RDT/RXDCTL/
/// RQDPC/RXCTL, typed handles), the descriptors it fetched ahead (up to 32) and the write of a
/// frame into its buffers with the legacy or advanced one-buffer write-back (SRRCTL.DESCTYPE).
/// </summary>
internal sealed class IgbRxQueue
{
    private const int DescSize = 16;
    private const uint Prefetch = 32;
    // Legacy receive status: IXSM (ignore checksum indication); the checksum status bits UDPCS|TCPCS|IPCS.
    private const uint LegacyIxsm = 0x04, LegacyStatusMask = 0x70;

    private readonly IgbPort _port;
    private readonly byte[] _scratch;
    private readonly Register _rctl, _ctrl, _mpc;
    private readonly Register _rdbal, _rdbah, _rdlen, _srrctl, _rdh, _rdt, _rqdpc, _rxctl;
    private readonly DescriptorCache _cache = new();

    /// <summary>Receive descriptors fetched ahead: Bytes holds ring indexes from Origin; [Start, End)
    /// (never wrapping) are still unused and owned by the device (between RDH and RDT when
    /// fetched). Dropped when the driver rewrites the ring registers or the queue resets.</summary>
    private sealed class DescriptorCache
    {
        public readonly byte[] Bytes = new byte[Prefetch * DescSize];
        public uint Origin, Start, End;
        public void Invalidate() => Origin = Start = End = 0;
    }

    /// <param name="port">The port (DMA owner, faults, interrupts).</param>
    /// <param name="f">The PF register file.</param>
    /// <param name="q">PF queue number.</param>
    /// <param name="scratch">A frame-sized buffer the port's queues share (VLAN strip, FCS append).</param>
    public IgbRxQueue(IgbPort port, RegisterFile f, int q, byte[] scratch)
    {
        _port = port;
        _scratch = scratch;
        Index = q;
        string S(string n) => IgbRegisterMaps.Q(n, q);
        (_rdbal, _rdbah, _rdlen, _srrctl, _rdh, _rdt, Rxdctl, _rqdpc, _rxctl) =
            (f[S("RDBAL")], f[S("RDBAH")], f[S("RDLEN")], f[S("SRRCTL")], f[S("RDH")], f[S("RDT")], f[S("RXDCTL")], f[S("RQDPC")], f[S("RXCTL")]);
        (_rctl, _ctrl, _mpc) = (f["RCTL"], f["CTRL"], f["MPC"]);
        foreach (var r in new[] { _rdbal, _rdbah, _rdlen, _rdh, Rxdctl }) f.OnWrite(r.Name, (_, _, _, _) => _cache.Invalidate());
    }

    /// <summary>Declares RX queue <paramref name="q"/>'s registers at block <paramref name="rx"/> in a PF register map.</summary>
    public static void Declare(RegisterMapBuilder b, int q, uint rx)
    {
        string Q(string name) => IgbRegisterMaps.Q(name, q);
        b.Reg(Q("RDBAL"), rx + Rdbal, 0, Rw("RDBAL", 7, 25))
         .Reg(Q("RDBAH"), rx + Rdbah, 0, Rw("RDBAH", 0, 32))
         .Reg(Q("RDLEN"), rx + Rdlen, 0, Rw("LEN", 7, 13))
         .Reg(Q("SRRCTL"), rx + Srrctl, IgbRegisterMaps.SrrctlReset, Rw("BSIZEPACKET", 0, 7), Rw("BSIZEHEADER", 8, 4), Rw("DESCTYPE", 25, 3), Rw("DROP_EN", 31))
         .Reg(Q("RDH"), rx + Rdh, 0, Rw("RDH", 0, 16))
         .Reg(Q("RXCTL"), rx + Rxctl, 0, Rw("DCA", 0, 32))
         .Reg(Q("RDT"), rx + Rdt, 0, Rw("RDT", 0, 16))
         .Reg(Q("RXDCTL"), rx + IgbRegs.Rxdctl, q == 0 ? IgbRegisterMaps.Rxdctl0Reset : IgbRegisterMaps.RxdctlReset,
             Rw("PTHRESH", 0, 5), Rw("HTHRESH", 8, 5), Rw("WTHRESH", 16, 5), Rw("ENABLE", 25), Sc("SWFLSH", 26))
         .Reg(Q("RQDPC"), rx + Rqdpc, 0, Rc("COUNT", 0, 32));
    }

    /// <summary>PF queue number.</summary>
    public int Index { get; }
    /// <summary>RXDCTL (queue enable).</summary>
    public Register Rxdctl { get; }
    private ulong RingBase => (ulong)_rdbah.Value << 32 | _rdbal.Value;

    /// <summary>Forgets the descriptors fetched ahead.</summary>
    public void InvalidateCache() => _cache.Invalidate();

    /// <summary>Queue reset: registers to their reset values, prefetched descriptors dropped.</summary>
    public void Reset()
    {
        foreach (var r in new[] { _rdbal, _rdbah, _rdlen, _srrctl, _rdh, _rdt, Rxdctl, _rqdpc, _rxctl }) r.Reset();
        _cache.Invalidate();
    }

    /// <summary>
    /// Receives <paramref name="frame"/>: needs RCTL.EN and the
    /// queue enabled; takes as many descriptors as the frame needs (SRRCTL buffer size) or drops it
    /// and counts (RQDPC, and MPC for frames from the wire) when there are not enough. A DMA fault
    /// drops the frame with nothing written back and RDH unchanged.
    /// </summary>
    public bool Receive(ReadOnlySpan<byte> frame, bool fromWire, bool stripVlan, uint pktInfo, uint rssHash, uint checksum)
    {
        int q = Index;
        if ((_rctl.Value & RctlEn) == 0 || (Rxdctl.Value & QueueEnable) == 0) return false;
        if ((_ctrl.Value & CtrlGioMasterDisable) != 0)
        {
            // GIO master disabled: the frame cannot be written to memory (missed, like a full ring).
            _rqdpc.Value++;
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
            var b = _scratch.AsSpan();
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
        uint ringLen = _rdlen.Value / DescSize;
        uint head = _rdh.Value, tail = _rdt.Value;
        int bufSize = (int)(_srrctl.Value & SrrctlBsizePktMask) * 1024;
        if (bufSize == 0) bufSize = 2048;
        uint needed = (uint)((frame.Length + bufSize - 1) / bufSize);
        uint free = ringLen == 0 || head >= ringLen || tail >= ringLen ? 0 : (tail + ringLen - head) % ringLen;
        if (free < needed)
        {
            _port.NoteDrop(q, Events.FrameDropReason.NoRxDescriptors, frame.Length);
            _rqdpc.Value++;
            if (fromWire) _mpc.Value++;
            return false;
        }
        var fn = _port.QueueOwner(q);
        ushort oq = _port.OwnerQueueNumber(q, fn);   // the queue's number in the trace's DMA purposes
        ulong ringBase = RingBase;
        bool legacy = (_srrctl.Value & SrrctlDescTypeMask) == 0;
        uint cur = head;
        int off = 0;
        // Fill the buffers first, then write back, so a fault leaves no descriptor written.
        var cache = _cache;
        for (uint i = 0; i < needed; i++)
        {
            if (cur < cache.Start || cur >= cache.End)
            {
                // Prefetch the descriptors the device owns from here (up to the tail or the ring end).
                uint n0 = Math.Min(Math.Min(ringLen - cur, (tail + ringLen - cur) % ringLen), Prefetch);
                ulong da = ringBase + cur * DescSize;
                var fetch = fn.Dma.Read(da, cache.Bytes.AsSpan(0, (int)n0 * DescSize), new DmaPurpose(DmaUse.RxDescriptor, oq, cur));
                uint whole = (uint)fetch.BytesMoved / DescSize;
                if (whole == 0) { cache.Invalidate(); _port.Fault(fn, q, NicDmaStage.RxDescriptorFetch, fetch, da); return false; }
                cache.Origin = cache.Start = cur;
                cache.End = cur + whole;
            }
            ulong buf = BinaryPrimitives.ReadUInt64LittleEndian(cache.Bytes.AsSpan((int)(cur - cache.Origin) * DescSize));
            int n = Math.Min(bufSize, frame.Length - off);
            var res = fn.Dma.Write(buf, frame.Slice(off, n), new DmaPurpose(DmaUse.RxBuffer, oq, cur));
            if (!res.Ok) { _port.Fault(fn, q, NicDmaStage.RxBufferWrite, res, buf); return false; }
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
                // Legacy write-back: length, packet checksum (not modelled: 0), status DD|EOP|VP and, on the
                // last descriptor, the checksum status (UDPCS 0x10, TCPCS 0x20, IPCS 0x40: the advanced
                // status bits, same positions) or IXSM (0x04) when nothing was checked; errors TCPE 0x20 /
                // IPE 0x40 (the advanced error bits 29/30, same positions in the errors byte); VLAN.
                wb[..8].Clear();
                BinaryPrimitives.WriteUInt16LittleEndian(wb, (ushort)n);
                uint cs = last ? checksum : 0;
                uint status = 0x01u | (last ? 0x02u : 0) | (vp ? 0x08u : 0) | (cs & LegacyStatusMask);
                wb[4] = (byte)(status | ((cs & LegacyStatusMask) == 0 ? LegacyIxsm : 0));
                wb[5] = (byte)(cs >> 24);
                BinaryPrimitives.WriteUInt16LittleEndian(wb[6..], vlan);
                res = fn.Dma.Write(da + 8, wb[..8], new DmaPurpose(DmaUse.RxWriteBack, oq, cur));
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
                res = fn.Dma.Write(da, wb, new DmaPurpose(DmaUse.RxWriteBack, oq, cur));
            }
            if (!res.Ok) { _port.Fault(fn, q, NicDmaStage.RxWriteBack, res, da); return false; }
            off += n;
            cur = cur + 1 == ringLen ? 0 : cur + 1;
        }
        _rdh.Value = cur;
        // Descriptors before the new head were consumed (and written back): drop them from the cache.
        if (cur >= cache.Start && cur <= cache.End) cache.Start = cur; else cache.Invalidate();
        _port.QueueInterrupt(q, tx: false);
        return true;
    }
}
