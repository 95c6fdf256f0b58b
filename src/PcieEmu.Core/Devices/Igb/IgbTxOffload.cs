using System.Buffers.Binary;

namespace PcieEmu.Core.Devices.Igb;

/// <summary>Checksum offloads requested for a packet being transmitted (first descriptor's fields).</summary>
internal struct IgbTxOffload
{
    /// <summary>Advanced: IXSM (IPv4 header checksum), TXSM (TCP/UDP checksum), with the context they name.</summary>
    public bool Ip, L4;
    public IgbTxContext Context;
    /// <summary>Legacy CMD.IC: checksum from CSS to the end, stored at CSO.</summary>
    public bool Legacy;
    public int Css, Cso;

    /// <summary>Checksum insertion: IXSM the IPv4 header checksum at MACLEN + 10 over IPLEN bytes;
    /// TXSM the TCP (+16) or UDP (+6) checksum over the L4 header and payload from MACLEN + IPLEN,
    /// starting from the pseudo-header sum the driver left in the field; legacy IC the sum from CSS
    /// to the end at CSO. SCTP CRC is not computed. Offsets outside the frame: nothing is inserted.</summary>
    public static void Apply(Span<byte> f, in IgbTxOffload o)
    {
        if (o.Legacy)
        {
            if (o.Css < f.Length && o.Cso + 2 <= f.Length)
                BinaryPrimitives.WriteUInt16BigEndian(f[o.Cso..], (ushort)~InternetChecksum.OnesSum(f[o.Css..]));
            return;
        }
        var c = o.Context;
        if (o.Ip && c.IpLen >= 20 && c.MacLen + c.IpLen <= f.Length)
        {
            var ip = f.Slice(c.MacLen, c.IpLen);
            ip[10] = 0; ip[11] = 0;
            BinaryPrimitives.WriteUInt16BigEndian(ip[10..], (ushort)~InternetChecksum.OnesSum(ip));
        }
        if (!o.L4) return;
        int l4 = c.MacLen + c.IpLen;
        uint l4t = c.Tucmd & IgbTxContext.TucmdL4tMask;
        int off = l4t == IgbTxContext.TucmdL4tTcp ? 16 : l4t == IgbTxContext.TucmdL4tUdp ? 6 : -1;
        if (off < 0 || l4 + off + 2 > f.Length) return;
        ushort sum = (ushort)~InternetChecksum.OnesSum(f[l4..]);
        if (l4t == IgbTxContext.TucmdL4tUdp && sum == 0) sum = 0xFFFF;   // UDP sends a zero checksum as all ones
        BinaryPrimitives.WriteUInt16BigEndian(f[(l4 + off)..], sum);
    }
}
