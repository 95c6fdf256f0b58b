using System.Text;
using PcieEmu.Server.Direct;

namespace PcieEmu.Server.Tests.Direct;

/// <summary>The HPACK decoder against the published examples of RFC 7541 Appendix C, and its refusals.</summary>
public sealed class HpackTests
{
    private static byte[] Hex(string s) => Convert.FromHexString(s.Replace(" ", "", StringComparison.Ordinal));

    private static List<HeaderField> Decode(HpackDecoder d, string hex)
    {
        var fields = new List<HeaderField>();
        d.Decode(Hex(hex), fields);
        return fields;
    }

    private static void Expect(List<HeaderField> got, params (string Name, string Value)[] expected) =>
        Assert.Equal(expected.Select(e => new HeaderField(e.Name, e.Value)), got);

    [Theory]
    [InlineData("0a", 5, 10)]           // C.1.1
    [InlineData("1f9a0a", 5, 1337)]     // C.1.2
    [InlineData("2a", 8, 42)]           // C.1.3
    public void Integers_decode_as_in_C_1(string hex, int prefix, int value)
    {
        int pos = 0;
        Assert.Equal(value, HpackDecoder.ReadInteger(Hex(hex), ref pos, prefix));
        Assert.Equal(hex.Length / 2, pos);
    }

    [Fact]
    public void Literal_with_indexing_C_2_1_enters_the_table()
    {
        var d = new HpackDecoder();
        Expect(Decode(d, "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"), ("custom-key", "custom-header"));
        Assert.Equal(55, d.TableSize);
    }

    [Fact]
    public void Literal_without_indexing_C_2_2_and_indexed_C_2_4_leave_the_table_empty()
    {
        var d = new HpackDecoder();
        Expect(Decode(d, "040c 2f73 616d 706c 652f 7061 7468"), (":path", "/sample/path"));
        Expect(Decode(d, "1008 7061 7373 776f 7264 0673 6563 7265 74"), ("password", "secret"));   // C.2.3 never indexed
        Expect(Decode(d, "82"), (":method", "GET"));
        Assert.Equal(0, d.TableCount);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Requests_C_3_and_C_4_share_one_dynamic_table(bool huffman)
    {
        var d = new HpackDecoder();
        Expect(Decode(d, huffman ? "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff" : "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d"),
            (":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com"));
        Assert.Equal(57, d.TableSize);
        Expect(Decode(d, huffman ? "8286 84be 5886 a8eb 1064 9cbf" : "8286 84be 5808 6e6f 2d63 6163 6865"),
            (":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com"), ("cache-control", "no-cache"));
        Assert.Equal(110, d.TableSize);
        Expect(Decode(d, huffman ? "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"
                                 : "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65"),
            (":method", "GET"), (":scheme", "https"), (":path", "/index.html"), (":authority", "www.example.com"), ("custom-key", "custom-value"));
        Assert.Equal(164, d.TableSize);
        Assert.Equal(new HeaderField("custom-key", "custom-value"), d[62]);
        Assert.Equal(new HeaderField("cache-control", "no-cache"), d[63]);
        Assert.Equal(new HeaderField(":authority", "www.example.com"), d[64]);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Responses_C_5_and_C_6_evict_the_oldest_entries_of_a_256_byte_table(bool huffman)
    {
        var d = new HpackDecoder(maxTableSize: 256);
        // A size update to 256 first (this decoder starts at its limit already; the update is checked, not needed).
        Expect(Decode(d, "3fe1 01"));
        Expect(Decode(d, huffman
                ? "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3"
                : "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d"),
            (":status", "302"), ("cache-control", "private"), ("date", "Mon, 21 Oct 2013 20:13:21 GMT"), ("location", "https://www.example.com"));
        Assert.Equal(222, d.TableSize);
        Expect(Decode(d, huffman ? "4883 640e ffc1 c0bf" : "4803 3330 37c1 c0bf"),
            (":status", "307"), ("cache-control", "private"), ("date", "Mon, 21 Oct 2013 20:13:21 GMT"), ("location", "https://www.example.com"));
        Assert.Equal(222, d.TableSize);
        Assert.Equal(new HeaderField(":status", "307"), d[62]);
        Expect(Decode(d, huffman
                ? "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07"
                : "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31"),
            (":status", "200"), ("cache-control", "private"), ("date", "Mon, 21 Oct 2013 20:13:22 GMT"), ("location", "https://www.example.com"),
            ("content-encoding", "gzip"), ("set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"));
        Assert.Equal(215, d.TableSize);
        Assert.Equal(3, d.TableCount);
        Assert.Equal(new HeaderField("set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"), d[62]);
    }

    [Fact]
    public void The_Huffman_code_derived_from_the_lengths_is_Appendix_Bs()
    {
        // Spot checks of Appendix B: the first codes, the 5-bit ones, and EOS.
        Assert.Equal((0x1ff8u, 13), HpackHuffman.CodeOf(0));
        Assert.Equal((0x7fffd8u, 23), HpackHuffman.CodeOf(1));
        Assert.Equal((0xfffffe2u, 28), HpackHuffman.CodeOf(2));
        Assert.Equal((0xffffeau, 24), HpackHuffman.CodeOf(9));
        Assert.Equal((0x3ffffffcu, 30), HpackHuffman.CodeOf(10));
        Assert.Equal((0x0u, 5), HpackHuffman.CodeOf('0'));
        Assert.Equal((0x3u, 5), HpackHuffman.CodeOf('a'));
        Assert.Equal((0x9u, 5), HpackHuffman.CodeOf('t'));
        Assert.Equal((0x14u, 6), HpackHuffman.CodeOf(' '));
        Assert.Equal((0x3fffffffu, 30), HpackHuffman.CodeOf(256));
        // Every byte value round-trips through an encoding made with those codes.
        var bytes = Enumerable.Range(0, 256).Select(i => (byte)i).ToArray();
        var sb = new StringBuilder();
        HpackHuffman.Decode(HuffmanEncode(bytes), sb);
        Assert.Equal(Encoding.Latin1.GetString(bytes), sb.ToString());
    }

    internal static byte[] HuffmanEncode(ReadOnlySpan<byte> data)
    {
        var output = new List<byte>();
        ulong acc = 0;
        int bits = 0;
        foreach (byte b in data)
        {
            var (code, len) = HpackHuffman.CodeOf(b);
            acc = (acc << len) | code;
            bits += len;
            while (bits >= 8)
            {
                output.Add((byte)(acc >> (bits - 8)));
                bits -= 8;
            }
        }
        if (bits > 0) output.Add((byte)((acc << (8 - bits)) | (0xFFu >> bits)));
        return [.. output];
    }

    [Theory]
    [InlineData("80", "index 0")]
    [InlineData("be", "beyond the dynamic table")]                 // index 62 with an empty table
    [InlineData("3fe21f", "exceeds the limit")]                     // size update to 4097
    [InlineData("82 20", "after a header field")]                   // size update after a field
    [InlineData("ff ff ff ff ff 0f", "integer too large")]
    [InlineData("ff", "inside an integer")]
    [InlineData("040c 2f73", "runs past the header block")]
    [InlineData("0481 ff", "Huffman padding longer than 7 bits")]      // 8 one bits
    [InlineData("0481 00", "Huffman padding is not the EOS prefix")]   // '0' (00000) then 000
    [InlineData("0484 ffff ffff", "contains EOS")]                       // EOS (30 ones) and 2 more
    public void Malformed_blocks_are_refused_with_a_reason(string hex, string reason)
    {
        var ex = Assert.Throws<HpackException>(() => Decode(new HpackDecoder(), hex));
        Assert.Contains(reason, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_header_list_over_the_limit_is_flagged_and_the_table_stays_in_step()
    {
        var d = new HpackDecoder(maxHeaderListSize: 100);
        // custom-key: custom-header (55 bytes) with indexing, then index 62 twice: 165 bytes in all.
        var fields = Decode(d, "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572 be be");
        Assert.True(d.ListTooLarge);
        Assert.Single(fields);
        Assert.Equal(1, d.TableCount);
        Expect(Decode(d, "be"), ("custom-key", "custom-header"));
        Assert.False(d.ListTooLarge);
    }

    [Fact]
    public void The_encoder_writes_what_the_decoder_reads()
    {
        var block = new List<byte>();
        HpackEncoder.WriteIndexed(block, HpackEncoder.Status200);
        HpackEncoder.WriteLiteral(block, HpackEncoder.ContentType, "application/grpc");
        HpackEncoder.WriteLiteral(block, "grpc-message", new string('x', 300));
        var fields = new List<HeaderField>();
        new HpackDecoder().Decode([.. block], fields);
        Expect(fields, (":status", "200"), ("content-type", "application/grpc"), ("grpc-message", new string('x', 300)));
    }
}
