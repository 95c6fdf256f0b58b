using System.Buffers.Binary;
using PcieEmu.Core.Events;
using static PcieEmu.Core.Devices.VirtioNet.VirtioRegs;

namespace PcieEmu.Core.Devices.VirtioNet;

public sealed partial class VirtioNetFunction
{
    /// <summary>Frame sizes the port carries (destination MAC first, no FCS): an Ethernet header up to a
    /// VLAN-tagged 1500-byte payload (MTU and GSO are not offered).</summary>
    public const int MinFrameSize = 14, MaxFrameSize = 1518;
    private const int MacTableEntries = 64;

    private readonly List<VirtqSegment> _segs = new(16);
    private readonly List<VirtqSegment> _rxSegs = new(64);
    private readonly List<(ushort Id, ushort RingCount, int First, int Count)> _rxChains = new(64);
    private readonly byte[] _txBuf = new byte[NetHdrSize + MaxFrameSize];
    private readonly byte[] _rxBuf = new byte[NetHdrSize + MaxFrameSize];
    private readonly byte[] _ctrlBuf = new byte[4096];
    private readonly byte[] _mac = new byte[6];
    private readonly List<ulong> _uniTable = [], _multiTable = [];
    private readonly byte[] _steer = new byte[256];   // flow bucket -> transmitting pair + 1 (0: none)
    private bool _promisc, _allmulti;
    private int _activePairs;
    private ushort _netStatus = NetStatusLinkUp;

    /// <summary>Raised for every frame the driver transmits (under the machine lock; do not block).</summary>
    public event Action<WireFrame>? FrameTransmitted;

    /// <summary>Frames transmitted onto the wire.</summary>
    public long TxFrames { get; private set; }
    /// <summary>Transmit chains completed without sending: GSO requested, NEEDS_CSUM without CSUM, bad checksum
    /// fields, a frame shorter than 14 or longer than 1518 bytes, or device-writable buffers.</summary>
    public long TxDropped { get; private set; }
    /// <summary>Frames delivered into a receive queue.</summary>
    public long RxFrames { get; private set; }
    /// <summary>Frames the receive filter refused (MAC, promiscuous, all-multicast).</summary>
    public long RxFiltered { get; private set; }
    /// <summary>Frames dropped for lack of receive buffers (or a chain too small without MRG_RXBUF), while not live, or
    /// longer than <see cref="MaxFrameSize"/> (an oversize frame from the wire).</summary>
    public long RxDropped { get; private set; }
    /// <summary>The MAC address now (device config mac; MAC_ADDR_SET changes it).</summary>
    public ReadOnlySpan<byte> Mac => _mac;
    /// <summary>Promiscuous mode (on at reset; VIRTIO_NET_CTRL_RX_PROMISC).</summary>
    public bool Promiscuous => _promisc;
    /// <summary>All-multicast mode (VIRTIO_NET_CTRL_RX_ALLMULTI).</summary>
    public bool AllMulticast => _allmulti;
    /// <summary>Queue pairs in use (1 at reset; VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET).</summary>
    public int ActiveQueuePairs => _activePairs;

    private void ResetNet()
    {
        _defaultMac.CopyTo(_mac, 0);
        _promisc = true;
        _allmulti = false;
        _uniTable.Clear();
        _multiTable.Clear();
        _activePairs = 1;
        Array.Clear(_steer);
    }

    internal ulong ReadDeviceConfig(ulong offset, int width)
    {
        if (offset + (ulong)width > NetCfgSize) return 0;
        Span<byte> cfg = stackalloc byte[NetCfgSize];
        cfg.Clear();
        _mac.CopyTo(cfg);
        BinaryPrimitives.WriteUInt16LittleEndian(cfg[NetCfgStatus..], _netStatus);
        BinaryPrimitives.WriteUInt16LittleEndian(cfg[NetCfgMaxPairs..], (ushort)Options.QueuePairs);
        ulong v = 0;
        for (int i = 0; i < width; i++) v |= (ulong)cfg[(int)offset + i] << (8 * i);
        return v;
    }

    /// <summary>Link state (device config status LINK_UP). A change bumps config_generation and, once
    /// DRIVER_OK, sends a configuration change notification. Takes the machine lock.</summary>
    public void SetLink(bool up)
    {
        lock (Machine.SyncRoot)
        {
            ushort next = (ushort)(up ? _netStatus | NetStatusLinkUp : _netStatus & ~NetStatusLinkUp);
            if (next == _netStatus) return;
            _netStatus = next;
            _configGeneration++;
            if ((_status & StatusDriverOk) != 0) ConfigChanged();
        }
    }

    // ---------------- Transmit ----------------

    private void ProcessTransmit(Virtqueue q)
    {
        int pair = q.Index / 2;
        bool interrupt = false;
        do
        {
            while (true)
            {
                int r = q.Pop(_segs, out ushort id, out ushort rc);
                if (r < 0) return;
                if (r == 0) break;
                int len = Gather(q, _segs, _txBuf, out bool ok);
                if (len < 0) return;
                if (ok) Transmit(q.Index, pair, _txBuf.AsSpan(0, len));
                else TxDropped++;
                if (!q.Push(id, rc, 0)) return;
            }
            if (!q.Flush(out bool need)) return;
            interrupt |= need;
            if (!q.PublishAvailEvent()) return;
        } while (q.HasMore());
        if (interrupt) QueueInterrupt(q);
    }

    /// <summary>Reads the readable segments into <paramref name="buf"/>. -1 on a DMA error; <paramref name="ok"/> false
    /// when the chain is too long or has writable segments (then nothing more is read).</summary>
    private static int Gather(Virtqueue q, List<VirtqSegment> segs, byte[] buf, out bool ok)
    {
        int total = 0;
        ok = true;
        for (int i = 0; i < segs.Count; i++)
        {
            var s = segs[i];
            if (s.Writable || s.Length > (uint)(buf.Length - total)) { ok = false; return 0; }
            if (s.Length == 0) continue;
            if (!q.ReadBuffer(s.Address, buf.AsSpan(total, (int)s.Length))) return -1;
            total += (int)s.Length;
        }
        return total;
    }

    private void Transmit(int queue, int pair, Span<byte> data)
    {
        if (data.Length < NetHdrSize + MinFrameSize || data.Length > NetHdrSize + MaxFrameSize) { TxDropped++; return; }
        byte flags = data[HdrFlags];
        if (data[HdrGsoType] != GsoNone) { TxDropped++; return; }   // no HOST_TSO/UFO offered
        var frame = data[NetHdrSize..];
        if ((flags & HdrFNeedsCsum) != 0)
        {
            // §5.1.6.2: checksum from csum_start to the end, stored at csum_start + csum_offset; the field
            // already holds the pseudo-header sum the driver put there.
            int start = Le16(data, HdrCsumStart), off = Le16(data, HdrCsumOffset);
            if (!Negotiated(FCsum) || start + off + 2 > frame.Length) { TxDropped++; return; }
            ushort sum = (ushort)~InternetChecksum.OnesSum(frame[start..]);
            BinaryPrimitives.WriteUInt16BigEndian(frame[(start + off)..], sum);
        }
        if (_activePairs > 1) _steer[FlowBucket(frame)] = (byte)(pair + 1);
        TxFrames++;
        var bus = Machine.Events;
        bool trace = bus.Wants(EventKind.Frame);
        var handler = FrameTransmitted;
        if (!trace && handler == null) return;
        var wf = WireFrame.Now(PortNumber, frame, Machine.Time);
        if (trace) bus.Publish(new FrameEvent(Rid, FrameDirection.ToWire, wf, queue, 0));
        handler?.Invoke(wf);
    }

    // ---------------- Receive ----------------

    /// <summary>
    /// Delivers <paramref name="frame"/> (destination MAC first, no FCS) from the wire: the receive
    /// filter, the queue pair (automatic receive steering), then the receive queue's buffers with a
    /// virtio_net_hdr in front. Takes the machine lock. Returns 1 when a queue took it, 0 when it
    /// was filtered or dropped (the counters say which).
    /// </summary>
    public int InjectFrame(ReadOnlySpan<byte> frame)
    {
        if (frame.Length is < EthernetFrame.MinSize or > EthernetFrame.MaxSize)
            throw new ArgumentException($"frame must be {EthernetFrame.MinSize}..{EthernetFrame.MaxSize} bytes (was {frame.Length})", nameof(frame));
        lock (Machine.SyncRoot)
        {
            var bus = Machine.Events;
            if (bus.Wants(EventKind.Frame))
                bus.Publish(new FrameEvent(Rid, FrameDirection.FromWire, WireFrame.Now(PortNumber, frame, Machine.Time), -1, 0));
            if (frame.Length > MaxFrameSize)
            {
                // Longer than the MTU allows (MTU is not offered): the wire carried it, the device drops it.
                RxDropped++;
                return 0;
            }
            return Receive(frame) ? 1 : 0;
        }
    }

    private bool Accepts(ReadOnlySpan<byte> frame)
    {
        var dst = frame[..6];
        if (dst.SequenceEqual(stackalloc byte[] { 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF })) return true;
        ulong key = MacKey(dst);
        if ((dst[0] & 1) != 0) return _promisc || _allmulti || _multiTable.Contains(key);
        return _promisc || dst.SequenceEqual(_mac) || _uniTable.Contains(key);
    }

    private static ulong MacKey(ReadOnlySpan<byte> mac) => (ulong)BinaryPrimitives.ReadUInt32BigEndian(mac) << 16 | BinaryPrimitives.ReadUInt16BigEndian(mac[4..]);

    private int SelectPair(ReadOnlySpan<byte> frame)
    {
        if (_activePairs == 1) return 0;
        int bucket = FlowBucket(frame);
        int s = _steer[bucket];
        return s != 0 && s - 1 < _activePairs ? s - 1 : bucket % _activePairs;
    }

    /// <summary>A symmetric flow hash (both directions of a flow land in one bucket): IPv4/IPv6 addresses and
    /// TCP/UDP ports, or the MAC addresses for anything else.</summary>
    internal static int FlowBucket(ReadOnlySpan<byte> f)
    {
        uint h;
        int l3 = 14;
        ushort type = BinaryPrimitives.ReadUInt16BigEndian(f[12..]);
        if (type == 0x8100 && f.Length >= 18) { type = BinaryPrimitives.ReadUInt16BigEndian(f[16..]); l3 = 18; }
        int proto = -1, l4 = 0;
        if (type == 0x0800 && f.Length >= l3 + 20)
        {
            h = BinaryPrimitives.ReadUInt32BigEndian(f[(l3 + 12)..]) ^ BinaryPrimitives.ReadUInt32BigEndian(f[(l3 + 16)..]);
            bool fragment = (BinaryPrimitives.ReadUInt16BigEndian(f[(l3 + 6)..]) & 0x3FFF) != 0;
            if (!fragment) { proto = f[l3 + 9]; l4 = l3 + (f[l3] & 0xF) * 4; }
        }
        else if (type == 0x86DD && f.Length >= l3 + 40)
        {
            h = 0;
            for (int i = 0; i < 8; i++) h ^= BinaryPrimitives.ReadUInt32BigEndian(f[(l3 + 8 + 4 * i)..]);
            proto = f[l3 + 6]; l4 = l3 + 40;
        }
        else
        {
            ulong a = MacKey(f), b = MacKey(f[6..]);
            ulong x = a ^ b;
            h = (uint)x ^ (uint)(x >> 32);
        }
        if (proto is 6 or 17 && f.Length >= l4 + 4)
            h ^= (uint)(BinaryPrimitives.ReadUInt16BigEndian(f[l4..]) ^ BinaryPrimitives.ReadUInt16BigEndian(f[(l4 + 2)..]));
        return (int)((h * 0x9E37_79B1u) >> 24);
    }

    private bool Receive(ReadOnlySpan<byte> frame)
    {
        if (!Live) { RxDropped++; return false; }
        if (!Accepts(frame)) { RxFiltered++; return false; }
        var q = _queues[2 * SelectPair(frame)];
        if (!q.Enabled) { RxDropped++; return false; }
        int total = NetHdrSize + frame.Length;
        var buf = _rxBuf.AsSpan(0, total);
        buf[..NetHdrSize].Clear();
        frame.CopyTo(buf[NetHdrSize..]);
        bool mergeable = Negotiated(FMrgRxbuf);
        var mark = q.Save();
        _rxSegs.Clear();
        _rxChains.Clear();
        long capacity = 0;
        while (capacity < total)
        {
            int r = q.Pop(_segs, out ushort id, out ushort rc);
            if (r < 0) return false;
            if (r == 0) { q.Restore(mark); RxDropped++; return false; }
            long chainCap = 0;
            int first = _rxSegs.Count;
            foreach (var s in _segs)
            {
                if (!s.Writable) continue;   // a receive chain is all device-writable; readable parts are skipped
                _rxSegs.Add(s);
                chainCap += s.Length;
            }
            if (!mergeable && chainCap < total) { q.Restore(mark); RxDropped++; return false; }
            _rxChains.Add((id, rc, first, _rxSegs.Count - first));
            capacity += chainCap;
            if (!mergeable) break;
        }
        // num_buffers: the chains this frame used (1 without MRG_RXBUF, §5.1.6.3.1).
        BinaryPrimitives.WriteUInt16LittleEndian(buf[HdrNumBuffers..], (ushort)_rxChains.Count);
        int offset = 0;
        if (_rxChains.Count > 1) q.HoldFirstUsed();
        foreach (var (id, rc, firstSeg, count) in _rxChains)
        {
            uint written = 0;
            for (int i = firstSeg; i < firstSeg + count && offset < total; i++)
            {
                var s = _rxSegs[i];
                int n = (int)Math.Min(s.Length, (uint)(total - offset));
                if (n == 0) continue;
                if (!q.WriteBuffer(s.Address, buf.Slice(offset, n))) return false;
                offset += n;
                written += (uint)n;
            }
            if (!q.Push(id, rc, written)) return false;
        }
        RxFrames++;
        if (!q.Flush(out bool need) || !q.PublishAvailEvent()) return true;
        if (need) QueueInterrupt(q);
        return true;
    }

    // ---------------- Control queue (§5.1.6.5) ----------------

    private void ProcessControl(Virtqueue q)
    {
        bool interrupt = false;
        do
        {
            while (true)
            {
                int r = q.Pop(_segs, out ushort id, out ushort rc);
                if (r < 0) return;
                if (r == 0) break;
                int readable = 0;
                bool tooLong = false;
                VirtqSegment? ack = null;
                foreach (var s in _segs)
                {
                    if (s.Writable) { if (ack == null && s.Length > 0) ack = s; continue; }
                    if (s.Length > (uint)(_ctrlBuf.Length - readable)) { tooLong = true; continue; }
                    if (s.Length > 0 && !q.ReadBuffer(s.Address, _ctrlBuf.AsSpan(readable, (int)s.Length))) return;
                    readable += (int)s.Length;
                }
                byte result = tooLong || readable < 2 ? CtrlErr : Control(_ctrlBuf[0], _ctrlBuf[1], _ctrlBuf.AsSpan(2, readable - 2));
                uint written = 0;
                if (ack is { } a)
                {
                    if (!q.WriteBuffer(a.Address, [result])) return;
                    written = 1;
                }
                if (!q.Push(id, rc, written)) return;
            }
            if (!q.Flush(out bool need)) return;
            interrupt |= need;
            if (!q.PublishAvailEvent()) return;
        } while (q.HasMore());
        if (interrupt) QueueInterrupt(q);
    }

    private byte Control(byte cls, byte cmd, ReadOnlySpan<byte> data)
    {
        switch (cls)
        {
            case CtrlRx when Negotiated(FCtrlRx) && cmd is CtrlRxPromisc or CtrlRxAllmulti && data.Length == 1:
                if (cmd == CtrlRxPromisc) _promisc = data[0] != 0; else _allmulti = data[0] != 0;
                return CtrlOk;
            case CtrlMac when cmd == CtrlMacTableSet && Negotiated(FCtrlRx):
                return MacTableSet(data);
            case CtrlMac when cmd == CtrlMacAddrSet && Negotiated(FCtrlMacAddr) && data.Length == 6:
                if ((data[0] & 1) != 0) return CtrlErr;
                if (!data.SequenceEqual(_mac)) { data.CopyTo(_mac); _configGeneration++; }
                return CtrlOk;
            case CtrlMq when cmd == CtrlMqVqPairsSet && Negotiated(FMq) && data.Length == 2:
                int pairs = BinaryPrimitives.ReadUInt16LittleEndian(data);
                if (pairs < 1 || pairs > Options.QueuePairs) return CtrlErr;
                _activePairs = pairs;
                Array.Clear(_steer);
                return CtrlOk;
            default:
                return CtrlErr;
        }
    }

    /// <summary>MAC_TABLE_SET: two virtio_net_ctrl_mac tables (le32 entries, then 6-byte MACs), unicast then multicast.</summary>
    private byte MacTableSet(ReadOnlySpan<byte> data)
    {
        var uni = new List<ulong>();
        var multi = new List<ulong>();
        foreach (var table in new[] { uni, multi })
        {
            if (data.Length < 4) return CtrlErr;
            uint n = BinaryPrimitives.ReadUInt32LittleEndian(data);
            data = data[4..];
            if (n > MacTableEntries || (ulong)data.Length < 6UL * n) return CtrlErr;
            for (int i = 0; i < n; i++) table.Add(MacKey(data.Slice(6 * i, 6)));
            data = data[(int)(6 * n)..];
        }
        if (data.Length != 0) return CtrlErr;
        _uniTable.Clear(); _uniTable.AddRange(uni);
        _multiTable.Clear(); _multiTable.AddRange(multi);
        return CtrlOk;
    }
}
