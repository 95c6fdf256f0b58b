using System.Buffers.Binary;
using PcieEmu.Core.Registers;

namespace PcieEmu.Core.Devices.Igb;

/// <summary>
/// Receive checksum offload and packet type of the advanced receive write-back. Packet type
/// (pkt_info 16:4): IPv4 0x10, IPv6 0x40, TCP 0x100, UDP 0x200. With RXCSUM.IPOFLD an IPv4 header
/// checksum is verified: status IPCS (0x40), error IPE (bit 30) when it is wrong. With
/// RXCSUM.TUOFLD the TCP or UDP checksum (with the IPv4/IPv6 pseudo-header) is verified: status
/// L4CS (0x20, plus UDPCS 0x10 for UDP), error L4E (bit 29) when wrong. Not checked: IPv4
/// fragments, a UDP/IPv4 checksum of 0 (none sent), IPv6 extension headers, SCTP.
/// </summary>
public sealed class IgbRxChecksum
{
    /// <summary>RXCSUM enables.</summary>
    public const uint RxcsumIpofld = 1u << 8, RxcsumTuofld = 1u << 9;
    /// <summary>pkt_info packet types.</summary>
    public const uint PtypeIpv4 = 0x10, PtypeIpv6 = 0x40, PtypeTcp = 0x100, PtypeUdp = 0x200;
    /// <summary>status_error bits.</summary>
    public const uint StatUdpcs = 0x10, StatL4cs = 0x20, StatIpcs = 0x40, ErrL4e = 1u << 29, ErrIpe = 1u << 30;

    private readonly Register _rxcsum, _vet;

    internal IgbRxChecksum(RegisterFile file) => (_rxcsum, _vet) = (file["RXCSUM"], file["VET"]);

    /// <summary>Packet type bits for pkt_info and the checksum status/error bits for status_error.</summary>
    public (uint PacketType, uint StatusError) Evaluate(ReadOnlySpan<byte> frame)
    {
        if (frame.Length < 14) return (0, 0);
        int l3 = 14;
        ushort etherType = BinaryPrimitives.ReadUInt16BigEndian(frame[12..]);
        if (etherType == (ushort)_vet.Value && frame.Length >= 18)
        {
            etherType = BinaryPrimitives.ReadUInt16BigEndian(frame[16..]);
            l3 = 18;
        }
        var ip = frame[l3..];
        uint rxcsum = _rxcsum.Value, ptype, st = 0;
        int proto, l4Len;
        ReadOnlySpan<byte> l4;
        ulong pseudo;
        if (etherType == 0x0800 && ip.Length >= 20 && ip[0] >> 4 == 4 && (ip[0] & 0xF) >= 5)
        {
            int ihl = (ip[0] & 0xF) * 4, total = BinaryPrimitives.ReadUInt16BigEndian(ip[2..]);
            if (ihl > ip.Length || total < ihl || total > ip.Length) return (PtypeIpv4, 0);
            ptype = PtypeIpv4;
            if ((rxcsum & RxcsumIpofld) != 0) st |= InternetChecksum.OnesSum(ip[..ihl]) == 0xFFFF ? StatIpcs : StatIpcs | ErrIpe;
            if ((BinaryPrimitives.ReadUInt16BigEndian(ip[6..]) & 0x3FFF) != 0) return (ptype, st);   // fragment
            proto = ip[9];
            l4 = ip[ihl..total];
            l4Len = total - ihl;
            pseudo = (ulong)InternetChecksum.OnesSum(ip.Slice(12, 8)) + (uint)proto + (uint)l4Len;
        }
        else if (etherType == 0x86DD && ip.Length >= 40 && ip[0] >> 4 == 6)
        {
            int payload = BinaryPrimitives.ReadUInt16BigEndian(ip[4..]);
            if (40 + payload > ip.Length) return (PtypeIpv6, 0);
            ptype = PtypeIpv6;
            proto = ip[6];
            l4 = ip.Slice(40, payload);
            l4Len = payload;
            pseudo = (ulong)InternetChecksum.OnesSum(ip.Slice(8, 32)) + (uint)proto + (uint)l4Len;
        }
        else return (0, 0);

        bool tcp = proto == 6 && l4Len >= 20, udp = proto == 17 && l4Len >= 8;
        if (tcp) ptype |= PtypeTcp;
        if (udp) ptype |= PtypeUdp;
        if ((!tcp && !udp) || (rxcsum & RxcsumTuofld) == 0) return (ptype, st);
        if (udp && ptype == PtypeIpv4 + PtypeUdp && BinaryPrimitives.ReadUInt16BigEndian(l4[6..]) == 0) return (ptype, st);   // no UDP checksum sent
        ulong sum = pseudo + InternetChecksum.OnesSum(l4);
        while (sum > 0xFFFF) sum = (sum & 0xFFFF) + (sum >> 16);
        st |= StatL4cs | (udp ? StatUdpcs : 0) | (sum == 0xFFFF ? 0 : ErrL4e);
        return (ptype, st);
    }
}
