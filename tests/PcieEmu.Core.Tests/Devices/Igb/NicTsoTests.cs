using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using PcieEmu.Core.Devices;
using PcieEmu.Core.Devices.Igb;
using static PcieEmu.Core.Devices.Igb.IgbRegs;

namespace PcieEmu.Core.Tests.Devices.Igb;

/// <summary>TCP segmentation offload (82576 datasheet 7.2.4): a context descriptor with MSS, L4LEN,
/// IPLEN/MACLEN and TUCMD, data descriptors with TSE, frames on the wire checked field by field
/// and by tshark's own checksum validation.</summary>
public class NicTsoTests
{
    private const int MacLen = 14, TcpLen = 20;
    private const uint Seq = 0xFFFF_F000;   // wraps during the packet
    private const ushort IpId = 0xFFFE;     // wraps during the packet

    private static readonly IPAddress Src4 = IPAddress.Parse("192.0.2.1"), Dst4 = IPAddress.Parse("198.51.100.7");
    private static readonly IPAddress Src6 = IPAddress.Parse("2001:db8::1"), Dst6 = IPAddress.Parse("2001:db8:0:1::2");

    /// <summary>A TSO packet as a Linux driver prepares it: IPv4 total length and header checksum 0,
    /// IPv6 payload length 0, the TCP checksum field holding the pseudo-header sum without the length.</summary>
    private static byte[] Packet(bool v6, byte[] payload, byte flags)
    {
        int ipLen = v6 ? 40 : 20;
        var p = new byte[MacLen + ipLen + TcpLen + payload.Length];
        NicRig.Broadcast.CopyTo(p, 0);
        NicRig.Mac(7).CopyTo(p, 6);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(12), (ushort)(v6 ? 0x86DD : 0x0800));
        var ip = p.AsSpan(MacLen, ipLen);
        var (src, dst) = v6 ? (Src6, Dst6) : (Src4, Dst4);
        if (v6)
        {
            ip[0] = 0x60; ip[6] = 6; ip[7] = 64;
            src.TryWriteBytes(ip[8..], out _); dst.TryWriteBytes(ip[24..], out _);
        }
        else
        {
            ip[0] = 0x45; BinaryPrimitives.WriteUInt16BigEndian(ip[4..], IpId); ip[6] = 0x40; ip[8] = 64; ip[9] = 6;
            src.TryWriteBytes(ip[12..], out _); dst.TryWriteBytes(ip[16..], out _);
        }
        var tcp = p.AsSpan(MacLen + ipLen, TcpLen);
        BinaryPrimitives.WriteUInt16BigEndian(tcp, 40000); BinaryPrimitives.WriteUInt16BigEndian(tcp[2..], 5201);
        BinaryPrimitives.WriteUInt32BigEndian(tcp[4..], Seq); BinaryPrimitives.WriteUInt32BigEndian(tcp[8..], 0x1234_5678);
        tcp[12] = 0x50; tcp[13] = flags; BinaryPrimitives.WriteUInt16BigEndian(tcp[14..], 64240);
        BinaryPrimitives.WriteUInt16BigEndian(tcp[16..], PseudoSum(src, dst, 0));
        payload.CopyTo(p.AsSpan(MacLen + ipLen + TcpLen));
        return p;
    }

    private static ushort PseudoSum(IPAddress src, IPAddress dst, int length) => Sum(PseudoBytes(src, dst, length));

    private static ushort Sum(params byte[][] parts)
    {
        ulong s = 0;
        foreach (var p in parts)
            for (int i = 0; i < p.Length; i += 2) s += (uint)(p[i] << 8 | (i + 1 < p.Length ? p[i + 1] : 0));
        while (s > 0xFFFF) s = (s & 0xFFFF) + (s >> 16);
        return (ushort)s;
    }

    /// <summary>Posts a context descriptor (index 0) and the packet split over data descriptors of at
    /// most 2048 bytes, TSE|IXSM|TXSM on the first with PAYLEN; returns the descriptors used.</summary>
    private static int PostTso(NicRig rig, NicRig.Ring tx, byte[] packet, bool v6, int mss, int? payLen = null, uint l4t = 0x800)
    {
        int ipLen = v6 ? 40 : 20;
        uint i = tx.Tail;
        var ctx = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(ctx, (uint)MacLen << 9 | (uint)ipLen);
        BinaryPrimitives.WriteUInt32LittleEndian(ctx.AsSpan(8), 0x2020_0000u | (v6 ? 0 : 0x400u) | l4t);
        BinaryPrimitives.WriteUInt32LittleEndian(ctx.AsSpan(12), (uint)mss << 16 | TcpLen << 8);
        rig.M.WriteMemory(tx.DescAddr(i), ctx);
        i = (i + 1) % (uint)tx.Count;
        int used = 1;
        int hdr = MacLen + ipLen + TcpLen;
        for (int off = 0; off < packet.Length; off += 2048)
        {
            int n = Math.Min(2048, packet.Length - off);
            bool first = off == 0, last = off + n == packet.Length;
            rig.M.WriteMemory(tx.Buffers[i], packet.AsSpan(off, n));
            var d = new byte[16];
            BinaryPrimitives.WriteUInt64LittleEndian(d, tx.Buffers[i]);
            // DTYP data, DEXT, IFCS; TSE on the first; EOP|RS on the last.
            uint cmd = (uint)n | 0x2030_0000 | 0x0200_0000 | (first ? 0x8000_0000 : 0) | (last ? 0x0900_0000u : 0);
            BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(8), cmd);
            if (first) BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(12), (uint)(payLen ?? packet.Length - hdr) << 14 | 0x300);
            rig.M.WriteMemory(tx.DescAddr(i), d);
            i = (i + 1) % (uint)tx.Count;
            used++;
        }
        tx.WriteTail(i);
        return used;
    }

    private static (NicRig Rig, NicRig.Ring Tx, List<WireFrame> Wire) Rig()
    {
        var rig = new NicRig();
        rig.PfWrite(Tctl, TctlEn);
        var tx = rig.PfTx(0);
        var wire = new List<WireFrame>();
        rig.Nic.FrameTransmitted += wire.Add;
        return (rig, tx, wire);
    }

    private static byte[] Payload(int n) => [.. Enumerable.Range(0, n).Select(i => (byte)(i * 7 + (i >> 8)))];

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A9000BytePayloadWithMss1448LeavesAsSevenCorrectSegments(bool v6)
    {
        var (rig, tx, wire) = Rig();
        using var _ = rig;
        var payload = Payload(9000);
        var packet = Packet(v6, payload, flags: 0x18 | 0x01);   // ACK | PSH | FIN
        int used = PostTso(rig, tx, packet, v6, mss: 1448);
        Assert.Equal((uint)used, tx.Head);
        Assert.Equal(0, rig.Nic.TxDropped);

        int ipLen = v6 ? 40 : 20, hdr = MacLen + ipLen + TcpLen;
        Assert.Equal(7, wire.Count);
        int[] sizes = [.. wire.Select(w => w.Data.Length)];
        Assert.Equal([.. Enumerable.Repeat(hdr + 1448, 6), hdr + 9000 - 6 * 1448], sizes);
        var reassembled = new List<byte>();
        for (int i = 0; i < wire.Count; i++)
        {
            var f = wire[i].Data;
            bool last = i == wire.Count - 1;
            int seg = f.Length - hdr;
            Assert.Equal(packet[..MacLen], f[..MacLen]);
            var ip = f.AsSpan(MacLen, ipLen);
            var tcp = f.AsSpan(MacLen + ipLen);
            IPAddress src, dst;
            if (v6)
            {
                Assert.Equal(TcpLen + seg, BinaryPrimitives.ReadUInt16BigEndian(ip[4..]));
                (src, dst) = (Src6, Dst6);
            }
            else
            {
                Assert.Equal(ipLen + TcpLen + seg, BinaryPrimitives.ReadUInt16BigEndian(ip[2..]));
                Assert.Equal((ushort)(IpId + i), BinaryPrimitives.ReadUInt16BigEndian(ip[4..]));
                Assert.Equal(0xFFFF, Sum(ip.ToArray()));                                       // header checksum
                (src, dst) = (Src4, Dst4);
            }
            Assert.Equal(unchecked(Seq + (uint)(i * 1448)), BinaryPrimitives.ReadUInt32BigEndian(tcp[4..]));
            Assert.Equal(last ? 0x19 : 0x10, tcp[13]);                                        // FIN, PSH on the last only
            Assert.Equal(0xFFFF, Sum(tcp.ToArray(), PseudoBytes(src, dst, tcp.Length)));        // TCP checksum with the pseudo-header
            reassembled.AddRange(tcp[TcpLen..].ToArray());
        }
        Assert.Equal(payload, reassembled.ToArray());
        Assert.Equal(7u, rig.PfRead(Gptc));
        Assert.Equal(1u, rig.PfRead(Tsctc));    // one segmentation context sent
        Assert.Equal(0u, rig.PfRead(Tsctfc));
        Tshark.AssertChecksumsValid(wire, expectedFrames: 7);
    }

    private static byte[] PseudoBytes(IPAddress src, IPAddress dst, int length)
    {
        var b = new byte[src.GetAddressBytes().Length * 2 + 4];
        src.TryWriteBytes(b, out int n); dst.TryWriteBytes(b.AsSpan(n), out _);
        b[^3] = 6; BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(b.Length - 2), (ushort)length);
        return b;
    }

    [Fact]
    public void PayloadThatFitsOneMssLeavesAsOneFrameWithItsFlags()
    {
        var (rig, tx, wire) = Rig();
        using var _ = rig;
        var packet = Packet(false, Payload(1000), flags: 0x19);
        PostTso(rig, tx, packet, false, mss: 1448);
        var f = Assert.Single(wire).Data;
        Assert.Equal(packet.Length, f.Length);
        Assert.Equal(0x19, f[MacLen + 20 + 13]);
        Tshark.AssertChecksumsValid(wire, expectedFrames: 1);
    }

    [Theory]
    [InlineData(0, null, 0x800u)]       // MSS 0
    [InlineData(1448, 8999, 0x800u)]    // PAYLEN not the bytes after the headers
    [InlineData(1448, null, 0u)]        // L4T UDP: only TCP is segmented
    public void InvalidTsoPacketsAreConsumedDroppedAndCounted(int mss, int? payLen, uint l4t)
    {
        var (rig, tx, wire) = Rig();
        using var _ = rig;
        int used = PostTso(rig, tx, Packet(false, Payload(9000), 0x10), false, mss, payLen, l4t);
        Assert.Empty(wire);
        Assert.Equal(1, rig.Nic.TxDropped);
        Assert.Equal(1u, rig.PfRead(Tsctfc));   // a failed segmentation context
        Assert.Equal(0u, rig.PfRead(Tsctc));
        Assert.Equal((uint)used, tx.Head);
        rig.PostAdv(tx, NicRig.Frame(NicRig.Broadcast, rig.Nic.MacAddress.ToArray()));
        Assert.Single(wire);   // the queue goes on
    }

    [Fact]
    public void ADeviceResetForgetsTheContexts()
    {
        var (rig, tx, wire) = Rig();
        using var _ = rig;
        var packet = Packet(false, Payload(3000), flags: 0x10);
        PostTso(rig, tx, packet, false, mss: 1448);
        Assert.Equal(3, wire.Count);
        rig.PfWrite(Ctrl, CtrlRst);
        rig.PfWrite(Tctl, TctlEn);
        var again = rig.PfTx(0);
        // Only the data descriptor this time: IDX 0 names a context the reset cleared (MSS 0).
        rig.M.WriteMemory(again.Buffers[0], packet);
        var d = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(d, again.Buffers[0]);
        BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(8), (uint)packet.Length | 0xAB30_0000u);
        BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(12), 3000u << 14 | 0x300);
        rig.M.WriteMemory(again.DescAddr(0), d);
        again.WriteTail(1);
        Assert.Equal(3, wire.Count);
        Assert.Equal(1u, rig.PfRead(Tsctfc));
    }
}

/// <summary>tshark (installed by `make deps`, apt-packages.txt): missing is a failure, not a pass.</summary>
internal static class Tshark
{
    private const string Path = "/usr/bin/tshark";

    /// <summary>Writes <paramref name="frames"/> to a classic pcap file and has tshark validate every
    /// IPv4 header and TCP checksum: no frame may be flagged bad, and all must be TCP.</summary>
    public static void AssertChecksumsValid(IReadOnlyList<WireFrame> frames, int expectedFrames)
    {
        Assert.True(File.Exists(Path), $"tshark is not installed ({Path}): run `make deps` or apt-get install tshark");
        string file = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"pcieemu-tso-{Guid.NewGuid():N}.pcap");
        try
        {
            using (var s = File.Create(file))
            {
                Span<byte> h = stackalloc byte[24];
                BinaryPrimitives.WriteUInt32LittleEndian(h, 0xA1B2C3D4);
                BinaryPrimitives.WriteUInt16LittleEndian(h[4..], 2); BinaryPrimitives.WriteUInt16LittleEndian(h[6..], 4);
                BinaryPrimitives.WriteUInt32LittleEndian(h[16..], 65535); BinaryPrimitives.WriteUInt32LittleEndian(h[20..], 1);   // Ethernet
                s.Write(h);
                Span<byte> r = stackalloc byte[16];
                foreach (var f in frames)
                {
                    BinaryPrimitives.WriteUInt32LittleEndian(r, (uint)(f.TimestampUnixNs / 1_000_000_000));
                    BinaryPrimitives.WriteUInt32LittleEndian(r[4..], (uint)(f.TimestampUnixNs / 1000 % 1_000_000));
                    BinaryPrimitives.WriteUInt32LittleEndian(r[8..], (uint)f.Data.Length); BinaryPrimitives.WriteUInt32LittleEndian(r[12..], (uint)f.Data.Length);
                    s.Write(r);
                    s.Write(f.Data);
                }
            }
            string Run(string filter)
            {
                var psi = new ProcessStartInfo(Path) { RedirectStandardOutput = true, RedirectStandardError = true };
                foreach (var a in new[] { "-n", "-r", file, "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE", "-Y", filter, "-T", "fields", "-e", "frame.number" })
                    psi.ArgumentList.Add(a);
                using var p = Process.Start(psi)!;
                var err = p.StandardError.ReadToEndAsync();
                string output = p.StandardOutput.ReadToEnd();
                Assert.True(p.WaitForExit(60_000), "tshark did not finish in 60 s");
                Assert.True(p.ExitCode == 0, $"tshark exited {p.ExitCode}: {err.Result}");
                return output;
            }
            Assert.Equal("", Run("tcp.checksum.status==2 || ip.checksum.status==2").Trim());
            // Every frame is TCP with a checksum tshark verified as good.
            Assert.Equal(expectedFrames, Run("tcp.checksum.status==1").Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        }
        finally
        {
            File.Delete(file);
        }
    }
}
