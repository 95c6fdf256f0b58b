using System.Buffers.Binary;
using System.Net;
using PcieEmu.Core.Devices.Igb;
using static PcieEmu.Core.Devices.Igb.IgbRegs;

namespace PcieEmu.Core.Tests.Devices.Igb;

/// <summary>
/// RSS: the Toeplitz hash against Microsoft's published RSS verification suite (the standard
/// 40-byte key; IPv4, IPv4/TCP, IPv6, IPv6/TCP), and frames from the wire landing in the queue
/// RETA names with the type and hash in the advanced write-back.
/// </summary>
public class NicRssTests
{
    private static readonly byte[] Key = Convert.FromHexString("6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa");

    // Microsoft "Verifying the RSS Hash Calculation": destination, source, IP-only hash, hash with TCP ports.
    public static TheoryData<string, int, string, int, uint, uint> Vectors() => new()
    {
        { "161.142.100.80", 1766, "66.9.149.187", 2794, 0x323e8fc2, 0x51ccc178 },
        { "65.69.140.83", 4739, "199.92.111.2", 14230, 0xd718262a, 0xc626b0ea },
        { "12.22.207.184", 38024, "24.19.198.95", 12898, 0xd2d0a5de, 0x5c2b394a },
        { "209.142.163.6", 2217, "38.27.205.30", 48228, 0x82989176, 0xafc7327f },
        { "202.188.127.2", 1303, "153.39.163.191", 44251, 0x5d1809c5, 0x10e828a2 },
        { "3ffe:2501:200:3::1", 1766, "3ffe:2501:200:1fff::7", 2794, 0x2cc18cd5, 0x40207d3d },
        { "ff02::1", 4739, "3ffe:501:8::260:97ff:fe40:efab", 14230, 0x0f0c461c, 0xdde51bbf },
        { "fe80::200:f8ff:fe21:67cf", 38024, "3ffe:1900:4545:3:200:f8ff:fe21:67cf", 44251, 0x4b61e985, 0x02d1feef },
    };

    // Hash input: source address, destination address, source port, destination port (network order).
    private static byte[] Input(string dst, int dport, string src, int sport, bool ports)
    {
        var s = IPAddress.Parse(src).GetAddressBytes();
        var d = IPAddress.Parse(dst).GetAddressBytes();
        var input = new byte[s.Length + d.Length + (ports ? 4 : 0)];
        s.CopyTo(input, 0);
        d.CopyTo(input, s.Length);
        if (ports)
        {
            BinaryPrimitives.WriteUInt16BigEndian(input.AsSpan(2 * s.Length), (ushort)sport);
            BinaryPrimitives.WriteUInt16BigEndian(input.AsSpan(2 * s.Length + 2), (ushort)dport);
        }
        return input;
    }

    [Theory, MemberData(nameof(Vectors))]
    public void ToeplitzMatchesTheMicrosoftVerificationSuite(string dst, int dport, string src, int sport, uint ipHash, uint tcpHash)
    {
        Assert.Equal(ipHash, IgbRss.Toeplitz(Key, Input(dst, dport, src, sport, ports: false)));
        Assert.Equal(tcpHash, IgbRss.Toeplitz(Key, Input(dst, dport, src, sport, ports: true)));
    }

    // An Ethernet II / IPv4 or IPv6 / TCP frame from src to dst.
    private static byte[] TcpFrame(byte[] dstMac, string dst, int dport, string src, int sport)
    {
        var s = IPAddress.Parse(src).GetAddressBytes();
        var d = IPAddress.Parse(dst).GetAddressBytes();
        bool v6 = s.Length == 16;
        int ipLen = v6 ? 40 : 20, l4 = 14 + ipLen;
        var f = new byte[l4 + 20 + 16];
        dstMac.CopyTo(f, 0);
        new byte[] { 0x02, 0, 0, 0, 0, 0x77 }.CopyTo(f, 6);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(12), v6 ? (ushort)0x86DD : (ushort)0x0800);
        var ip = f.AsSpan(14);
        if (v6)
        {
            ip[0] = 0x60;
            BinaryPrimitives.WriteUInt16BigEndian(ip[4..], 36);
            ip[6] = 6; ip[7] = 64;
            s.CopyTo(ip[8..]); d.CopyTo(ip[24..]);
        }
        else
        {
            ip[0] = 0x45;
            BinaryPrimitives.WriteUInt16BigEndian(ip[2..], 56);
            ip[8] = 64; ip[9] = 6;
            s.CopyTo(ip[12..]); d.CopyTo(ip[16..]);
        }
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(l4), (ushort)sport);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(l4 + 2), (ushort)dport);
        f[l4 + 12] = 0x50;
        return f;
    }

    [Fact]
    public void FramesLandInTheQueueRetaNamesWithTypeAndHashInTheWriteBack()
    {
        using var rig = new NicRig();
        // igb_setup_mrqc: key, redirection table (entry n → queue n mod 4), RSS on for IPv4/IPv6 with TCP, PCSD.
        for (int i = 0; i < 10; i++) rig.PfWrite(IgbRss.RssrkOffset + 4u * (uint)i, BinaryPrimitives.ReadUInt32LittleEndian(Key.AsSpan(4 * i)));
        for (int i = 0; i < 32; i++) rig.PfWrite(IgbRss.RetaOffset + 4u * (uint)i, 0x0302_0100);
        rig.PfWrite(Rxcsum, rig.PfRead(Rxcsum) | 1u << 13);
        rig.PfWrite(Mrqc, IgbRss.MrqeRss | IgbRss.FieldIpv4 | IgbRss.FieldIpv4Tcp | IgbRss.FieldIpv6 | IgbRss.FieldIpv6Tcp);
        rig.PfWrite(Rctl, RctlEn | RctlSecrc);
        var rx = new NicRig.Ring[4];
        for (int q = 0; q < 4; q++) rx[q] = rig.PfRx(q);
        var count = new uint[4];
        var mac = rig.Nic.MacAddress.ToArray();
        foreach (var v in Vectors())
        {
            string dst = (string)v[0], src = (string)v[2];
            int dport = (int)v[1], sport = (int)v[3];
            uint hash = (uint)v[5];
            int q = (int)(hash & 0x7F) % 4;
            Assert.Equal(1, rig.Nic.InjectFrame(TcpFrame(mac, dst, dport, src, sport)));
            Assert.Equal(count[q] + 1, rx[q].Head);
            var wb = rig.ReadRam(rx[q].DescAddr(count[q]), 16);
            bool v6 = dst.Contains(':', StringComparison.Ordinal);
            Assert.Equal(v6 ? 3u : 1u, BinaryPrimitives.ReadUInt32LittleEndian(wb) & 0xF);   // IPv6TCP 3, IPv4TCP 1
            Assert.Equal(hash, BinaryPrimitives.ReadUInt32LittleEndian(wb.AsSpan(4)));
            count[q]++;
        }
        Assert.True(count.Count(c => c > 0) >= 3, "the vectors spread over several queues");

        // Without the TCP field enables the frame is hashed on the addresses only.
        rig.PfWrite(Mrqc, IgbRss.MrqeRss | IgbRss.FieldIpv4);
        var first = Vectors().First();
        uint ipHash = (uint)first[4];
        int qi = (int)(ipHash & 0x7F) % 4;
        Assert.Equal(1, rig.Nic.InjectFrame(TcpFrame(mac, (string)first[0], (int)first[1], (string)first[2], (int)first[3])));
        var w = rig.ReadRam(rx[qi].DescAddr(count[qi]), 16);
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(w) & 0xF);
        Assert.Equal(ipHash, BinaryPrimitives.ReadUInt32LittleEndian(w.AsSpan(4)));
    }

    /// <summary>VMDq with RSS (MRQC.MRQE = 5): a pool with VMOLR.RSSE gets its frames on queue pool
    /// (RETA entry bit 0 clear) or pool + 8 (set), the VF's queues 0 and 1 (datasheet 8.26.1,
    /// PQn = VFn + VQn * 8); a pool without RSSE keeps queue pool and gets no RSS type.</summary>
    [Fact]
    public void VmdqWithRssSpreadsAPoolOverItsTwoQueues()
    {
        using var rig = new NicRig(vfs: 2);
        rig.SetupVmdq(2);
        for (int i = 0; i < 10; i++) rig.PfWrite(IgbRss.RssrkOffset + 4u * (uint)i, BinaryPrimitives.ReadUInt32LittleEndian(Key.AsSpan(4 * i)));
        for (int i = 0; i < 32; i++) rig.PfWrite(IgbRss.RetaOffset + 4u * (uint)i, 0x0100_0100);   // entry n → n & 1
        rig.PfWrite(Rxcsum, rig.PfRead(Rxcsum) | 1u << 13);
        rig.PfWrite(Mrqc, MrqcVmdqRss | IgbRss.FieldIpv4 | IgbRss.FieldIpv4Tcp | IgbRss.FieldIpv6 | IgbRss.FieldIpv6Tcp);
        Assert.Equal(MrqcVmdqRss, rig.PfRead(Mrqc) & 7);
        rig.PfWrite(Vmolr + 4, rig.PfRead(Vmolr + 4) | VmolrRsse);
        Assert.Equal(VmolrRsse, rig.PfRead(Vmolr + 4) & VmolrRsse);
        NicRig.Ring[] vf1 = [rig.VfRx(1, 0), rig.VfRx(1, 1)];
        var vf0 = rig.VfRx(0, 0);
        var count = new uint[2];
        uint vf0Count = 0;
        foreach (var v in Vectors())
        {
            string dst = (string)v[0], src = (string)v[2];
            int dport = (int)v[1], sport = (int)v[3];
            uint hash = (uint)v[5];
            int q = (int)(hash & 1);
            Assert.Equal(1, rig.Nic.InjectFrame(TcpFrame(NicRig.Mac(1), dst, dport, src, sport)));
            Assert.Equal(count[q] + 1, vf1[q].Head);
            Assert.Equal(count[1 - q], vf1[1 - q].Head);
            var wb = rig.ReadRam(vf1[q].DescAddr(count[q]), 16);
            bool v6 = dst.Contains(':', StringComparison.Ordinal);
            Assert.Equal(v6 ? 3u : 1u, BinaryPrimitives.ReadUInt32LittleEndian(wb) & 0xF);
            Assert.Equal(hash, BinaryPrimitives.ReadUInt32LittleEndian(wb.AsSpan(4)));
            count[q]++;

            // Pool 0 has no RSSE: its queue 0 always, no RSS type.
            Assert.Equal(1, rig.Nic.InjectFrame(TcpFrame(NicRig.Mac(0), dst, dport, src, sport)));
            Assert.Equal(++vf0Count, vf0.Head);
            Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(rig.ReadRam(vf0.DescAddr(vf0Count - 1), 16)) & 0xF);
        }
        Assert.True(count[0] > 0 && count[1] > 0, "the vectors use both of the pool's queues");
    }
}

