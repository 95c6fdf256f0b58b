using System.Text;

namespace PcieEmu.Server.Direct;

/// <summary>A header block that does not decode (RFC 7541): a connection error COMPRESSION_ERROR.</summary>
internal sealed class HpackException(string message) : Exception(message);

/// <summary>One decoded header field (RFC 7541 section 1.3); names are lower case on HTTP/2.</summary>
internal readonly record struct HeaderField(string Name, string Value)
{
    /// <summary>The size the dynamic table accounts for the field: name + value octets + 32 (RFC 7541 section 4.1).</summary>
    public int Size => Encoding.Latin1.GetByteCount(Name) + Encoding.Latin1.GetByteCount(Value) + 32;
}

/// <summary>The fact tables of HPACK: the static table (RFC 7541 Appendix A) and the Huffman code (Appendix B).</summary>
internal static class HpackTables
{
    /// <summary>The static table, index 1..61 at [0..60].</summary>
    public static readonly HeaderField[] Static =
    [
        new(":authority", ""), new(":method", "GET"), new(":method", "POST"), new(":path", "/"), new(":path", "/index.html"),
        new(":scheme", "http"), new(":scheme", "https"), new(":status", "200"), new(":status", "204"), new(":status", "206"),
        new(":status", "304"), new(":status", "400"), new(":status", "404"), new(":status", "500"), new("accept-charset", ""),
        new("accept-encoding", "gzip, deflate"), new("accept-language", ""), new("accept-ranges", ""), new("accept", ""),
        new("access-control-allow-origin", ""), new("age", ""), new("allow", ""), new("authorization", ""), new("cache-control", ""),
        new("content-disposition", ""), new("content-encoding", ""), new("content-language", ""), new("content-length", ""),
        new("content-location", ""), new("content-range", ""), new("content-type", ""), new("cookie", ""), new("date", ""),
        new("etag", ""), new("expect", ""), new("expires", ""), new("from", ""), new("host", ""), new("if-match", ""),
        new("if-modified-since", ""), new("if-none-match", ""), new("if-range", ""), new("if-unmodified-since", ""),
        new("last-modified", ""), new("link", ""), new("location", ""), new("max-forwards", ""), new("proxy-authenticate", ""),
        new("proxy-authorization", ""), new("range", ""), new("referer", ""), new("refresh", ""), new("retry-after", ""),
        new("server", ""), new("set-cookie", ""), new("strict-transport-security", ""), new("transfer-encoding", ""),
        new("user-agent", ""), new("vary", ""), new("via", ""), new("www-authenticate", ""),
    ];

    /// <summary>
    /// Code length in bits of each symbol 0..256 (256 = EOS) of the Huffman code of Appendix B. The code
    /// is canonical (within one length, codes increase with the symbol; shorter codes come first), so
    /// the lengths determine every code: see <see cref="HpackHuffman"/>.
    /// </summary>
    public static ReadOnlySpan<byte> HuffmanLengths =>
    [
        13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
        28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
        6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
        5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
        13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
        7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
        15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
        6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
        20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
        24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
        22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
        21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
        26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
        19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
        20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
        26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
        30,
    ];
}

/// <summary>Decodes HPACK's Huffman-coded string literals (RFC 7541 section 5.2).</summary>
internal static class HpackHuffman
{
    private const int MaxLength = 30;
    private static readonly int[] FirstCode = new int[MaxLength + 2];   // the smallest code of each length
    private static readonly int[] Count = new int[MaxLength + 2];       // how many codes have that length
    private static readonly int[] FirstIndex = new int[MaxLength + 2];  // where that length's symbols start in Sorted
    private static readonly short[] Sorted = new short[257];            // symbols ordered by (length, symbol)
    private static readonly uint[] Codes = new uint[257];

    static HpackHuffman()
    {
        var lengths = HpackTables.HuffmanLengths;
        int n = 0;
        for (int len = 1; len <= MaxLength; len++)
        {
            FirstIndex[len] = n;
            for (int s = 0; s < 257; s++) if (lengths[s] == len) Sorted[n++] = (short)s;
            Count[len] = n - FirstIndex[len];
        }
        int code = 0;
        for (int len = 1; len <= MaxLength; len++)
        {
            code <<= 1;
            FirstCode[len] = code;
            for (int i = 0; i < Count[len]; i++) Codes[Sorted[FirstIndex[len] + i]] = (uint)(code + i);
            code += Count[len];
        }
    }

    /// <summary>The code of <paramref name="symbol"/> (0..256), right-aligned, and its length.</summary>
    public static (uint Code, int Length) CodeOf(int symbol) => (Codes[symbol], HpackTables.HuffmanLengths[symbol]);

    /// <summary>Decodes <paramref name="input"/> into <paramref name="output"/>; throws on EOS in the data or bad padding (section 5.2).</summary>
    public static void Decode(ReadOnlySpan<byte> input, StringBuilder output)
    {
        int code = 0, len = 0;
        foreach (byte b in input)
        {
            for (int bit = 7; bit >= 0; bit--)
            {
                code = (code << 1) | ((b >> bit) & 1);
                len++;
                if (len > MaxLength) throw new HpackException("Huffman code longer than 30 bits");
                int offset = code - FirstCode[len];
                if (offset >= 0 && offset < Count[len])
                {
                    int symbol = Sorted[FirstIndex[len] + offset];
                    if (symbol == 256) throw new HpackException("Huffman-coded string contains EOS");
                    output.Append((char)symbol);
                    code = 0;
                    len = 0;
                }
            }
        }
        // Padding: fewer than 8 bits, all ones (the most significant bits of EOS).
        if (len > 7) throw new HpackException("Huffman padding longer than 7 bits");
        if (code != (1 << len) - 1) throw new HpackException("Huffman padding is not the EOS prefix");
    }
}

/// <summary>
/// An HPACK decoder (RFC 7541): one per connection, since its dynamic table follows every header block
/// the peer sends. Bounded: the table by the size this side allows (SETTINGS_HEADER_TABLE_SIZE), one
/// decoded header list by <see cref="MaxHeaderListSize"/> (the rest is decoded to keep the table in step, then dropped).
/// </summary>
internal sealed class HpackDecoder(int maxTableSize = HpackDecoder.DefaultTableSize, int maxHeaderListSize = HpackDecoder.DefaultMaxHeaderListSize)
{
    /// <summary>SETTINGS_HEADER_TABLE_SIZE's initial value, which this side never changes.</summary>
    public const int DefaultTableSize = 4096;
    /// <summary>Largest header list (RFC 9113 section 6.5.2 accounting) a request may have.</summary>
    public const int DefaultMaxHeaderListSize = 64 * 1024;

    private readonly LinkedList<HeaderField> _dynamic = new();   // newest first
    private readonly StringBuilder _text = new();
    private int _tableSize;
    private readonly int _maxTableSize = maxTableSize;
    private int _tableLimit = maxTableSize;

    /// <summary>Largest header list accepted; a longer list sets <see cref="ListTooLarge"/>.</summary>
    public int MaxHeaderListSize { get; } = maxHeaderListSize;
    /// <summary>The dynamic table's current size in octets (section 4.1).</summary>
    public int TableSize => _tableSize;
    /// <summary>Entries in the dynamic table.</summary>
    public int TableCount => _dynamic.Count;
    /// <summary>Whether the last decoded block exceeded <see cref="MaxHeaderListSize"/> (its fields past the limit were dropped).</summary>
    public bool ListTooLarge { get; private set; }

    /// <summary>The dynamic table entry at <paramref name="index"/> (62 = the newest), for tests.</summary>
    public HeaderField this[int index] => Lookup(index);

    /// <summary>Decodes one complete header block into <paramref name="fields"/> (cleared first).</summary>
    public void Decode(ReadOnlySpan<byte> block, List<HeaderField> fields)
    {
        fields.Clear();
        ListTooLarge = false;
        int listSize = 0, pos = 0;
        bool fieldSeen = false;
        while (pos < block.Length)
        {
            byte b = block[pos];
            if ((b & 0x80) != 0)
            {
                int index = ReadInteger(block, ref pos, 7);
                if (index == 0) throw new HpackException("indexed header field with index 0");
                Add(Lookup(index));
            }
            else if ((b & 0xC0) == 0x40)
            {
                var field = ReadLiteral(block, ref pos, 6);
                Insert(field);
                Add(field);
            }
            else if ((b & 0xE0) == 0x20)
            {
                if (fieldSeen) throw new HpackException("dynamic table size update after a header field");
                int size = ReadInteger(block, ref pos, 5);
                if (size > _maxTableSize) throw new HpackException($"dynamic table size update to {size} exceeds the limit {_maxTableSize}");
                _tableLimit = size;
                Evict(0);
            }
            else
            {
                Add(ReadLiteral(block, ref pos, 4));   // 0000xxxx without indexing, 0001xxxx never indexed
            }
        }

        void Add(HeaderField f)
        {
            fieldSeen = true;
            listSize += f.Size;
            if (listSize > MaxHeaderListSize) ListTooLarge = true;
            else fields.Add(f);
        }
    }

    private HeaderField ReadLiteral(ReadOnlySpan<byte> block, ref int pos, int prefix)
    {
        int index = ReadInteger(block, ref pos, prefix);
        string name = index == 0 ? ReadString(block, ref pos) : Lookup(index).Name;
        string value = ReadString(block, ref pos);
        return new HeaderField(name, value);
    }

    private HeaderField Lookup(int index)
    {
        if (index <= 0) throw new HpackException($"header index {index} out of range");
        if (index <= HpackTables.Static.Length) return HpackTables.Static[index - 1];
        int d = index - HpackTables.Static.Length - 1;
        if (d >= _dynamic.Count) throw new HpackException($"header index {index} beyond the dynamic table ({_dynamic.Count} entries)");
        var node = _dynamic.First!;
        for (int i = 0; i < d; i++) node = node.Next!;
        return node.Value;
    }

    private void Insert(HeaderField f)
    {
        int size = f.Size;
        Evict(size);
        if (size > _tableLimit) return;   // larger than the table: the table is now empty (section 4.4)
        _dynamic.AddFirst(f);
        _tableSize += size;
    }

    private void Evict(int room)
    {
        while (_dynamic.Count > 0 && _tableSize + room > _tableLimit)
        {
            _tableSize -= _dynamic.Last!.Value.Size;
            _dynamic.RemoveLast();
        }
    }

    /// <summary>Reads an integer with an N-bit prefix (section 5.1); at most 2^31-1.</summary>
    internal static int ReadInteger(ReadOnlySpan<byte> block, ref int pos, int prefixBits)
    {
        if (pos >= block.Length) throw new HpackException("header block ends inside an integer");
        int max = (1 << prefixBits) - 1;
        int value = block[pos++] & max;
        if (value < max) return value;
        long v = value;
        for (int shift = 0; ; shift += 7)
        {
            if (pos >= block.Length) throw new HpackException("header block ends inside an integer");
            if (shift > 28) throw new HpackException("integer too large");
            byte b = block[pos++];
            v += (long)(b & 0x7F) << shift;
            if (v > int.MaxValue) throw new HpackException("integer too large");
            if ((b & 0x80) == 0) return (int)v;
        }
    }

    private string ReadString(ReadOnlySpan<byte> block, ref int pos)
    {
        if (pos >= block.Length) throw new HpackException("header block ends before a string");
        bool huffman = (block[pos] & 0x80) != 0;
        int length = ReadInteger(block, ref pos, 7);
        if (length > block.Length - pos) throw new HpackException($"string length {length} runs past the header block");
        var data = block.Slice(pos, length);
        pos += length;
        if (!huffman) return Encoding.Latin1.GetString(data);
        _text.Clear();
        HpackHuffman.Decode(data, _text);
        return _text.ToString();
    }
}

/// <summary>
/// The HPACK encoder of the replies: literals without indexing and without Huffman (RFC 7541 sections
/// 6.2.2 and 5.2), so it keeps no state and the peer's table never changes; ":status: 200" is indexed.
/// </summary>
internal static class HpackEncoder
{
    /// <summary>Static index of ":status: 200".</summary>
    public const int Status200 = 8;
    /// <summary>Static index of the name "content-type".</summary>
    public const int ContentType = 31;
    /// <summary>Static index of the name "date".</summary>
    public const int Date = 33;

    /// <summary>Appends an indexed field (section 6.1).</summary>
    public static void WriteIndexed(List<byte> output, int index) => WriteInteger(output, 0x80, 7, index);

    /// <summary>Appends a literal without indexing whose name is static entry <paramref name="nameIndex"/>.</summary>
    public static void WriteLiteral(List<byte> output, int nameIndex, string value)
    {
        WriteInteger(output, 0x00, 4, nameIndex);
        WriteString(output, value);
    }

    /// <summary>Appends a literal without indexing with a literal name.</summary>
    public static void WriteLiteral(List<byte> output, string name, string value)
    {
        output.Add(0x00);
        WriteString(output, name);
        WriteString(output, value);
    }

    private static void WriteString(List<byte> output, string s)
    {
        int n = Encoding.Latin1.GetByteCount(s);
        WriteInteger(output, 0x00, 7, n);
        output.AddRange(Encoding.Latin1.GetBytes(s));
    }

    /// <summary>Appends an integer with an N-bit prefix, the first byte's high bits being <paramref name="flags"/> (section 5.1).</summary>
    public static void WriteInteger(List<byte> output, byte flags, int prefixBits, int value)
    {
        int max = (1 << prefixBits) - 1;
        if (value < max)
        {
            output.Add((byte)(flags | value));
            return;
        }
        output.Add((byte)(flags | max));
        value -= max;
        while (value >= 0x80)
        {
            output.Add((byte)((value & 0x7F) | 0x80));
            value >>= 7;
        }
        output.Add((byte)value);
    }
}
