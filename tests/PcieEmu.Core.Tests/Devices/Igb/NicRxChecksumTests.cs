using System.Buffers.Binary;
using System.Net;
using static PcieEmu.Core.Devices.Igb.IgbRegs;

namespace PcieEmu.Core.Tests.Devices.Igb;

/// <summary>Receive checksum offload and packet type in the advanced write-back (RXCSUM; IPCS/L4CS/UDPCS, IPE/L4E).</summary>
public class NicRxChecksumTests
{
    private const uint Ipcs = 0x40, L4cs = 0x20, Udpcs = 0x10, L4e = 1u << 29, Ipe = 1u << 30;
    private const uint PtIpv4 = 0x10, PtIpv6 = 0x40, PtTcp = 0x100, PtUdp = 0x200;

    // RFC 1071 checksum, written independently of the emulator's.
    private static ushort Csum(params byte[][] parts)
    {
        long acc = 0;
        foreach (var p in parts)
            for (int i = 0; i < p.Length; i += 2) acc += i + 1 < p.Length ? BinaryPrimitives.ReadUInt16BigEndian(p.AsSpan(i)) : p[i] << 8;
        while ((acc >> 16) != 0) acc = (acc & 0xFFFF) + (acc >> 16);
        return (ushort)~acc;
    }

    // Ethernet + IPv4/IPv6 + TCP (20-byte header) or UDP (8), 32 payload bytes, correct checksums.
    private static byte[] Frame(byte[] dstMac, bool v6, bool udp)
    {
        byte[] src = IPAddress.Parse(v6 ? "2001:db8::1" : "192.0.2.1").GetAddressBytes(), dst = IPAddress.Parse(v6 ? "2001:db8::2" : "192.0.2.2").GetAddressBytes();
        int l4Len = (udp ? 8 : 20) + 32, ipLen = v6 ? 40 : 20;
        var l4 = new byte[l4Len];
        BinaryPrimitives.WriteUInt16BigEndian(l4, 40000);
        BinaryPrimitives.WriteUInt16BigEndian(l4.AsSpan(2), 80);
        if (udp) BinaryPrimitives.WriteUInt16BigEndian(l4.AsSpan(4), (ushort)l4Len);
        else l4[12] = 0x50;
        for (int i = udp ? 8 : 20; i < l4Len; i++) l4[i] = (byte)(i * 7);
        var pseudo = new byte[2 * src.Length + 4];
        src.CopyTo(pseudo, 0); dst.CopyTo(pseudo, src.Length);
        pseudo[^3] = (byte)(udp ? 17 : 6);
        BinaryPrimitives.WriteUInt16BigEndian(pseudo.AsSpan(pseudo.Length - 2), (ushort)l4Len);
        BinaryPrimitives.WriteUInt16BigEndian(l4.AsSpan(udp ? 6 : 16), Csum(pseudo, l4));
        var ip = new byte[ipLen];
        if (v6)
        {
            ip[0] = 0x60; BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(4), (ushort)l4Len); ip[6] = (byte)(udp ? 17 : 6); ip[7] = 64;
            src.CopyTo(ip, 8); dst.CopyTo(ip, 24);
        }
        else
        {
            ip[0] = 0x45; BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(2), (ushort)(20 + l4Len)); ip[8] = 64; ip[9] = (byte)(udp ? 17 : 6);
            src.CopyTo(ip, 12); dst.CopyTo(ip, 16);
            BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(10), Csum(ip));
        }
        byte[] eth = [.. dstMac, 0x02, 0, 0, 0, 0, 0x55, (byte)(v6 ? 0x86 : 0x08), (byte)(v6 ? 0xDD : 0x00)];
        return [.. eth, .. ip, .. l4];
    }

    private static (uint PktInfo, uint StatusError) Receive(NicRig rig, NicRig.Ring rx, byte[] frame)
    {
        uint i = rx.Head;
        Assert.Equal(1, rig.Nic.InjectFrame(frame));
        var wb = rig.ReadRam(rx.DescAddr(i), 16);
        return (BinaryPrimitives.ReadUInt32LittleEndian(wb), BinaryPrimitives.ReadUInt32LittleEndian(wb.AsSpan(8)));
    }

    [Fact]
    public void GoodAndBadChecksumsAreReportedAsTheDatasheetSays()
    {
        using var rig = new NicRig();
        rig.PfWrite(Rctl, RctlEn | RctlSecrc);
        var rx = rig.PfRx(0);
        var mac = rig.Nic.MacAddress.ToArray();
        const uint Dd = 0x3;   // DD | EOP

        Assert.Equal((PtIpv4 | PtTcp, Dd | Ipcs | L4cs), Receive(rig, rx, Frame(mac, v6: false, udp: false)));
        Assert.Equal((PtIpv4 | PtUdp, Dd | Ipcs | L4cs | Udpcs), Receive(rig, rx, Frame(mac, v6: false, udp: true)));
        Assert.Equal((PtIpv6 | PtTcp, Dd | L4cs), Receive(rig, rx, Frame(mac, v6: true, udp: false)));
        Assert.Equal((PtIpv6 | PtUdp, Dd | L4cs | Udpcs), Receive(rig, rx, Frame(mac, v6: true, udp: true)));

        var badIp = Frame(mac, v6: false, udp: false);
        badIp[14 + 10] ^= 0xFF;
        Assert.Equal((PtIpv4 | PtTcp, Dd | Ipcs | Ipe | L4cs), Receive(rig, rx, badIp));
        var badTcp = Frame(mac, v6: false, udp: false);
        badTcp[^1] ^= 0x01;
        Assert.Equal((PtIpv4 | PtTcp, Dd | Ipcs | L4cs | L4e), Receive(rig, rx, badTcp));
        var badUdp6 = Frame(mac, v6: true, udp: true);
        badUdp6[^1] ^= 0x01;
        Assert.Equal((PtIpv6 | PtUdp, Dd | L4cs | Udpcs | L4e), Receive(rig, rx, badUdp6));
        var noUdpSum = Frame(mac, v6: false, udp: true);
        noUdpSum[14 + 20 + 6] = 0; noUdpSum[14 + 20 + 7] = 0;                   // UDP/IPv4 without a checksum
        Assert.Equal((PtIpv4 | PtUdp, Dd | Ipcs), Receive(rig, rx, noUdpSum));

        rig.PfWrite(Rxcsum, 0);                                                   // offloads off: packet type only
        Assert.Equal((PtIpv4 | PtTcp, Dd), Receive(rig, rx, badTcp));
    }

    /// <summary>Legacy receive descriptors (SRRCTL.DESCTYPE 0): status byte 12 (DD 0x01, EOP 0x02, IXSM 0x04,
    /// UDPCS 0x10, TCPCS 0x20, IPCS 0x40), errors byte 13 (TCPE 0x20, IPE 0x40), per the e1000 legacy layout.</summary>
    [Fact]
    public void LegacyDescriptorsReportChecksumStatusAndErrors()
    {
        using var rig = new NicRig();
        rig.PfWrite(Rctl, RctlEn | RctlSecrc);
        var rx = rig.PfRx(0, legacy: true);
        var mac = rig.Nic.MacAddress.ToArray();
        (byte Status, byte Errors) Legacy(byte[] frame)
        {
            uint i = rx.Head;
            Assert.Equal(1, rig.Nic.InjectFrame(frame));
            var wb = rig.ReadRam(rx.DescAddr(i), 16);
            Assert.Equal(frame.Length, BinaryPrimitives.ReadUInt16LittleEndian(wb.AsSpan(8)));
            return (wb[12], wb[13]);
        }
        const byte Dd = 0x03, Ixsm = 0x04, Udp = 0x10, Tcp = 0x20, Ip = 0x40, Tcpe = 0x20, Ipe = 0x40;

        Assert.Equal((Dd | Ip | Tcp, 0), Legacy(Frame(mac, v6: false, udp: false)));
        Assert.Equal((Dd | Ip | Tcp | Udp, 0), Legacy(Frame(mac, v6: false, udp: true)));
        Assert.Equal((Dd | Tcp, 0), Legacy(Frame(mac, v6: true, udp: false)));
        var badIp = Frame(mac, v6: false, udp: true);
        badIp[14 + 10] ^= 0xFF;
        Assert.Equal((Dd | Ip | Tcp | Udp, Ipe), Legacy(badIp));
        var badTcp6 = Frame(mac, v6: true, udp: false);
        badTcp6[^1] ^= 0x01;
        Assert.Equal((Dd | Tcp, Tcpe), Legacy(badTcp6));
        // Not IP: nothing checked, IXSM tells the driver to ignore the checksum bits.
        Assert.Equal((Dd | Ixsm, 0), Legacy(NicRig.Frame(mac, [0x02, 0, 0, 0, 0, 0x55], 80)));
        rig.PfWrite(Rxcsum, 0);
        Assert.Equal((Dd | Ixsm, 0), Legacy(badIp));
    }
}
