using System.Buffers.Binary;

namespace PcieEmu.Core.Devices.Igb;

/// <summary>
/// TCP segmentation (82576 datasheet 7.2.4/7.2.5): a packet gathered from data descriptors with
/// TSE leaves as frames that each carry the headers (MACLEN + IPLEN + L4LEN bytes of the context
/// descriptor) and at most MSS bytes of the payload that follows them.
/// <para>
/// Per segment: IPv4 total length = IPLEN + L4LEN + segment payload, identification = the
/// packet's + segment index, header checksum recomputed when IXSM is set; IPv6 payload length =
/// IPLEN - 40 + L4LEN + segment payload. TCP sequence number = the packet's + bytes sent before;
/// FIN and PSH only on the last segment. TCP checksum (TXSM):
/// the driver leaves the pseudo-header sum without the length in the field; each segment gets the
/// one's complement of that plus its TCP length plus its TCP header and payload. Only TCP is
/// segmented (TUCMD.L4T = TCP); anything else, an MSS of 0, headers longer than the packet, a
/// PAYLEN (olinfo 31:14) other than the bytes gathered after the headers, or
/// segments over <see cref="IgbPort.MaxFrameSize"/> make the packet invalid (dropped).
/// </para>
/// </summary>
internal readonly ref struct IgbTso
{
    private const byte TcpFin = 0x01, TcpPsh = 0x08;

    private readonly ReadOnlySpan<byte> _packet;
    private readonly IgbTxOffload _offload;
    private readonly int _headers, _payload, _mss;

    public IgbTso(in IgbTxOffload offload, ReadOnlySpan<byte> packet, int payLen)
    {
        _packet = packet;
        _offload = offload;
        var c = offload.Context;
        _mss = c.Mss;
        _headers = c.MacLen + c.IpLen + c.L4Len;
        _payload = packet.Length - _headers;
        Valid = (c.Tucmd & IgbTxContext.TucmdL4tMask) == IgbTxContext.TucmdL4tTcp
            && _mss > 0 && c.MacLen >= 14 && c.IpLen >= (c.Ipv4 ? 20 : 40) && c.L4Len >= 20
            && _payload > 0 && _payload == payLen && _headers + _mss <= IgbPort.MaxFrameSize;
        Count = Valid ? (_payload + _mss - 1) / _mss : 0;
    }

    /// <summary>True when the packet can be segmented.</summary>
    public bool Valid { get; }
    /// <summary>Number of segments.</summary>
    public int Count { get; }

    /// <summary>Writes segment <paramref name="index"/> into <paramref name="seg"/>; returns its length.</summary>
    public int Build(int index, Span<byte> seg)
    {
        var c = _offload.Context;
        int offset = index * _mss;
        int chunk = Math.Min(_mss, _payload - offset);
        bool last = index == Count - 1;
        _packet[.._headers].CopyTo(seg);
        _packet.Slice(_headers + offset, chunk).CopyTo(seg[_headers..]);
        int len = _headers + chunk;

        var ip = seg.Slice(c.MacLen, c.IpLen);
        int l4Len = c.L4Len + chunk;
        if (c.Ipv4)
        {
            BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)(c.IpLen + l4Len));
            BinaryPrimitives.WriteUInt16BigEndian(ip[4..], (ushort)(BinaryPrimitives.ReadUInt16BigEndian(ip[4..]) + index));
            if (_offload.Ip)
            {
                BinaryPrimitives.WriteUInt16BigEndian(ip[10..], 0);
                BinaryPrimitives.WriteUInt16BigEndian(ip[10..], (ushort)~InternetChecksum.OnesSum(ip));
            }
        }
        else BinaryPrimitives.WriteUInt16BigEndian(ip[4..], (ushort)(c.IpLen - 40 + l4Len));

        var tcp = seg.Slice(c.MacLen + c.IpLen, l4Len);
        BinaryPrimitives.WriteUInt32BigEndian(tcp[4..], BinaryPrimitives.ReadUInt32BigEndian(tcp[4..]) + (uint)offset);
        if (!last) tcp[13] &= unchecked((byte)~(TcpFin | TcpPsh));
        if (_offload.L4)
        {
            // The field holds the pseudo-header sum without the length: add this segment's TCP length.
            uint sum = (uint)InternetChecksum.OnesSum(tcp) + (uint)l4Len;
            while (sum > 0xFFFF) sum = (sum & 0xFFFF) + (sum >> 16);
            BinaryPrimitives.WriteUInt16BigEndian(tcp[16..], (ushort)~sum);
        }
        return len;
    }
}
