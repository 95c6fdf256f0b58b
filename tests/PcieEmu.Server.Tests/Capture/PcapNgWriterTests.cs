using PcieEmu.Server.Capture;

namespace PcieEmu.Server.Tests.Capture;

/// <summary>The pcapng block layout against hand-written bytes (little-endian, options padded to 32 bits).</summary>
public sealed class PcapNgWriterTests
{
    private static readonly byte[] Shb =
    [
        0x0A, 0x0D, 0x0D, 0x0A, 28, 0, 0, 0,            // block type, total length
        0x4D, 0x3C, 0x2B, 0x1A,                          // byte-order magic
        1, 0, 0, 0,                                      // version 1.0
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,  // section length: not given
        28, 0, 0, 0,
    ];

    [Fact]
    public void Section_header_is_written_at_once()
    {
        using var ms = new MemoryStream();
        using var w = new PcapNgWriter(ms, leaveOpen: true);
        Assert.Equal(Shb, ms.ToArray());
    }

    [Fact]
    public void Interface_and_enhanced_packet_blocks_match_the_layout()
    {
        using var ms = new MemoryStream();
        using (var w = new PcapNgWriter(ms, leaveOpen: true))
        {
            Assert.Equal(0, w.AddInterface("p0"));
            w.WritePacket(0, 0x1_0000_0002, [1, 2, 3, 4, 5], PacketDirection.Inbound, "ab", dropped: 3);
            Assert.Equal(1, w.Packets);
        }
        byte[] idb =
        [
            1, 0, 0, 0, 40, 0, 0, 0,
            1, 0, 0, 0,                       // LINKTYPE_ETHERNET, reserved
            0xFF, 0xFF, 0, 0,                 // snap length 65535
            2, 0, 2, 0, (byte)'p', (byte)'0', 0, 0,   // if_name "p0" + padding
            9, 0, 1, 0, 9, 0, 0, 0,           // if_tsresol 10^-9
            0, 0, 0, 0,                       // opt_endofopt
            40, 0, 0, 0,
        ];
        byte[] epb =
        [
            6, 0, 0, 0, 72, 0, 0, 0,
            0, 0, 0, 0,                       // interface 0
            1, 0, 0, 0, 2, 0, 0, 0,           // timestamp high, low
            5, 0, 0, 0, 5, 0, 0, 0,           // captured, original length
            1, 2, 3, 4, 5, 0, 0, 0,           // data + padding
            1, 0, 2, 0, (byte)'a', (byte)'b', 0, 0,   // opt_comment "ab"
            2, 0, 4, 0, 1, 0, 0, 0,           // epb_flags: inbound
            4, 0, 8, 0, 3, 0, 0, 0, 0, 0, 0, 0,   // epb_dropcount 3
            0, 0, 0, 0,
            72, 0, 0, 0,
        ];
        Assert.Equal([.. Shb, .. idb, .. epb], ms.ToArray());
    }

    [Fact]
    public void A_packet_without_options_has_no_end_of_options()
    {
        using var ms = new MemoryStream();
        using (var w = new PcapNgWriter(ms, leaveOpen: true))
        {
            w.AddInterface("p0");
            w.WritePacket(0, 7, new byte[4]);
        }
        byte[] epb = [6, 0, 0, 0, 36, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 36, 0, 0, 0];
        Assert.Equal(epb, ms.ToArray()[(28 + 40)..]);
    }

    [Fact]
    public void Bad_arguments_name_the_field()
    {
        using var ms = new MemoryStream();
        using var w = new PcapNgWriter(ms, leaveOpen: true);
        Assert.Equal("interfaceId", Assert.Throws<ArgumentOutOfRangeException>(() => w.WritePacket(0, 0, [1])).ParamName);
        w.AddInterface("p0");
        Assert.Equal("timestampUnixNs", Assert.Throws<ArgumentOutOfRangeException>(() => w.WritePacket(0, -1, [1])).ParamName);
        Assert.Equal("dropped", Assert.Throws<ArgumentOutOfRangeException>(() => w.WritePacket(0, 0, [1], dropped: -1)).ParamName);
    }
}
