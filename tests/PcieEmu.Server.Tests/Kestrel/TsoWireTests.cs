using System.Buffers.Binary;
using Google.Protobuf;
using PcieEmu.Client;
using PcieEmu.Protocol.V1;
using static PcieEmu.Core.Devices.Igb.IgbRegs;

namespace PcieEmu.Server.Tests.Kestrel;

/// <summary>Issue 12: TCP segmentation offload driven over the wire (MMIO and RAM writes as a driver
/// makes them), the segments seen on the capture stream and in the server's pcapng, checked by tshark.</summary>
public sealed class TsoWireTests
{
    private static Task Mem(PcieEmuClient c, ulong address, byte[] data) =>
        c.Memory.WriteMemoryAsync(new WriteMemoryRequest { Address = address, Data = ByteString.CopyFrom(data) }, deadline: T.Deadline).W();

    /// <summary>Ethernet/IPv4/TCP headers (54 bytes) as Linux prepares a TSO packet: IPv4 total length
    /// and checksum 0, the TCP checksum field holding the pseudo-header sum without the length.</summary>
    private static byte[] Headers()
    {
        var h = new byte[54];
        h.AsSpan(0, 6).Fill(0xFF);
        byte[] mac = [0x02, 0, 0, 0, 0, 0x42], src = [10, 1, 0, 1], dst = [10, 1, 0, 2];
        mac.CopyTo(h, 6);
        h[12] = 0x08;
        h[14] = 0x45; h[18] = 0x12; h[19] = 0x34; h[20] = 0x40; h[22] = 64; h[23] = 6;
        src.CopyTo(h, 26); dst.CopyTo(h, 30);
        BinaryPrimitives.WriteUInt16BigEndian(h.AsSpan(34), 33000); BinaryPrimitives.WriteUInt16BigEndian(h.AsSpan(36), 443);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(38), 1000);
        h[46] = 0x50; h[47] = 0x18;   // ACK | PSH
        BinaryPrimitives.WriteUInt16BigEndian(h.AsSpan(48), 1024);
        uint pseudo = (uint)(src[0] << 8 | src[1]) + (uint)(src[2] << 8 | src[3]) + (uint)(dst[0] << 8 | dst[1]) + (uint)(dst[2] << 8 | dst[3]) + 6;
        while (pseudo > 0xFFFF) pseudo = (pseudo & 0xFFFF) + (pseudo >> 16);
        BinaryPrimitives.WriteUInt16BigEndian(h.AsSpan(50), (ushort)pseudo);
        return h;
    }

    [Fact]
    public async Task A_9000_byte_TSO_packet_leaves_as_7_segments_with_valid_checksums()
    {
        Capture.Tshark.AssertInstalled();
        string pcapDir = Directory.CreateTempSubdirectory("pcie-emu-tso-").FullName;
        try
        {
            var sizes = new List<int>();
            await using (var s = await TestServer.StartAsync("unix", pcapDirectory: pcapDir))
            {
                var c = s.Client;
                using var cts = new CancellationTokenSource(T.Timeout);
                using var capture = c.Ethernet.CaptureFrames(new CaptureFramesRequest { Port = 0 }, cancellationToken: cts.Token);
                await capture.ResponseHeadersAsync.W();
                ulong bar0 = (await c.ListFunctionsAsync().W()).Single(f => f.Rid == 0x100).Bars.Single(b => b.Index == 0).Address;
                const ulong Ring = 0x20_0000, Buffer = 0x21_0000;

                // The packet in one buffer: headers, then 9000 payload bytes.
                var packet = new byte[54 + 9000];
                Headers().CopyTo(packet, 0);
                for (int i = 54; i < packet.Length; i++) packet[i] = (byte)(i * 13);
                await Mem(c, Buffer, packet);
                // Context descriptor: MACLEN 14, IPLEN 20, TUCMD IPv4 + TCP, MSS 1448, L4LEN 20.
                var ctx = new byte[16];
                BinaryPrimitives.WriteUInt32LittleEndian(ctx, 14u << 9 | 20);
                BinaryPrimitives.WriteUInt32LittleEndian(ctx.AsSpan(8), 0x2020_0000u | 0x400 | 0x800);
                BinaryPrimitives.WriteUInt32LittleEndian(ctx.AsSpan(12), 1448u << 16 | 20u << 8);
                // Data descriptor: the whole packet, TSE | RS | IFCS | EOP, DTYP data; PAYLEN 9000, IXSM | TXSM.
                var data = new byte[16];
                BinaryPrimitives.WriteUInt64LittleEndian(data, Buffer);
                BinaryPrimitives.WriteUInt32LittleEndian(data.AsSpan(8), (uint)packet.Length | 0xAB30_0000u);
                BinaryPrimitives.WriteUInt32LittleEndian(data.AsSpan(12), 9000u << 14 | 0x300);
                await Mem(c, Ring, [.. ctx, .. data]);

                await WireTests.W32(c, bar0 + Tctl, TctlEn);
                await WireTests.W32(c, bar0 + TxQueues + Tdbal, (uint)Ring);
                await WireTests.W32(c, bar0 + TxQueues + Tdbah, 0);
                await WireTests.W32(c, bar0 + TxQueues + Tdlen, 8 * 16);
                await WireTests.W32(c, bar0 + TxQueues + Txdctl, QueueEnable);
                await WireTests.W32(c, bar0 + TxQueues + Tdt, 2);   // the doorbell

                while (sizes.Count < 7)
                {
                    Assert.True(await capture.ResponseStream.MoveNext(cts.Token).W());
                    sizes.Add(capture.ResponseStream.Current.Data.Length);
                }
                var tdh = await c.Mmio.ReadMmioAsync(new ReadMmioRequest { Address = bar0 + TxQueues + Tdh, Width = 4 }, deadline: T.Deadline).W();
                Assert.Equal(2ul, tdh.Value);
                s.AssertNoErrors();
            }
            Assert.Equal([1502, 1502, 1502, 1502, 1502, 1502, 54 + 9000 - 6 * 1448], sizes);

            // tshark validates every IPv4 header and TCP checksum of the server's capture.
            string file = Path.Combine(pcapDir, "pcie-emu-port0.pcapng");
            var (code, output, err) = await ProcessRun.RunAsync(Capture.Tshark.Path, "-n", "-r", file, "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
                "-T", "fields", "-e", "ip.checksum.status", "-e", "tcp.checksum.status", "-e", "tcp.len", "-e", "tcp.flags.push", "-e", "ip.len");
            Assert.True(code == 0, $"tshark exited {code}: {err}");
            var rows = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split('\t')).ToArray();
            Assert.Equal(7, rows.Length);
            Assert.All(rows, r => Assert.Equal(["1", "1"], r[..2]));   // 1 = good, 2 = bad
            Assert.Equal(["1448", "1448", "1448", "1448", "1448", "1448", "312"], rows.Select(r => r[2]));
            Assert.Equal(["0", "0", "0", "0", "0", "0", "1"], rows.Select(r => r[3] is "True" or "1" ? "1" : "0"));   // PSH on the last only
            Assert.Equal(["1488", "1488", "1488", "1488", "1488", "1488", "352"], rows.Select(r => r[4]));
        }
        finally
        {
            Directory.Delete(pcapDir, recursive: true);
        }
    }
}
