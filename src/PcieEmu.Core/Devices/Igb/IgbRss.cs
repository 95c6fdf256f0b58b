using System.Buffers.Binary;
using PcieEmu.Core.Registers;
using static PcieEmu.Core.Registers.FieldSpec;

namespace PcieEmu.Core.Devices.Igb;

/// <summary>
/// Receive-side scaling of the 82576 (MRQC.MRQE = 2, RSS without VMDq): the Toeplitz hash of the
/// frame's IPv4/IPv6 addresses (and TCP/UDP ports where MRQC enables that type) under the 40-byte
/// key in RSSRK[0-9], the queue from the 128-entry redirection table RETA[hash &amp; 0x7F], the hash
/// and the RSS type for the advanced receive write-back.
/// <para>
/// Parsing covers Ethernet II with an optional 802.1Q tag, IPv4 (no hash of the ports for
/// fragments) and IPv6 without extension headers. RSSRK[n] holds key bytes 4n..4n+3, key byte
/// 4n in the low byte (as igb writes them); RETA[n] holds entries 4n..4n+3, entry 4n in the low
/// byte, the queue in bits 3:0 of the entry.
/// </para>
/// </summary>
public sealed class IgbRss
{
    /// <summary>RETA (32 dwords) and RSSRK (10 dwords) offsets.</summary>
    public const uint RetaOffset = 0x5C00, RssrkOffset = 0x5C80;
    /// <summary>RETA and RSSRK registers.</summary>
    public const int RetaRegisters = 32, RssrkRegisters = 10;
    /// <summary>MRQC.MRQE value for RSS.</summary>
    public const uint MrqeRss = 2;
    /// <summary>MRQC hash-type enables.</summary>
    public const uint FieldIpv4Tcp = 1u << 16, FieldIpv4 = 1u << 17, FieldIpv6 = 1u << 20, FieldIpv6Tcp = 1u << 21,
        FieldIpv4Udp = 1u << 22, FieldIpv6Udp = 1u << 23;
    /// <summary>RSS types reported in pkt_info bits 3:0.</summary>
    public const int TypeNone = 0, TypeIpv4Tcp = 1, TypeIpv4 = 2, TypeIpv6Tcp = 3, TypeIpv6 = 5, TypeIpv4Udp = 7, TypeIpv6Udp = 8;

    private readonly Register[] _reta = new Register[RetaRegisters], _rssrk = new Register[RssrkRegisters];
    private readonly Register _mrqc, _rxcsum;
    private readonly byte[] _key = new byte[4 * RssrkRegisters];
    private readonly byte[] _input = new byte[36];

    /// <summary>Declares RETA and RSSRK in a PF register map.</summary>
    public static void Declare(RegisterMapBuilder b) => b
        .Array("RETA", RetaOffset, RetaRegisters, 4, 0, Rw("ENTRIES", 0, 32))
        .Array("RSSRK", RssrkOffset, RssrkRegisters, 4, 0, Rw("KEY", 0, 32));

    internal IgbRss(RegisterFile file)
    {
        for (int i = 0; i < RetaRegisters; i++) _reta[i] = file[$"RETA[{i}]"];
        for (int i = 0; i < RssrkRegisters; i++) _rssrk[i] = file[$"RSSRK[{i}]"];
        (_mrqc, _rxcsum) = (file["MRQC"], file["RXCSUM"]);
    }

    /// <summary>RXCSUM.PCSD (bit 13): the write-back carries the RSS hash instead of the fragment checksum.</summary>
    public bool HashInWriteBack => (_rxcsum.Value & 1u << 13) != 0;

    /// <summary>RSS on (MRQC.MRQE = 2).</summary>
    public bool Enabled => (_mrqc.Value & 7) == MrqeRss;

    /// <summary>The Toeplitz hash of <paramref name="input"/> under <paramref name="key"/> (which must be at least input + 4 bytes long).</summary>
    public static uint Toeplitz(ReadOnlySpan<byte> key, ReadOnlySpan<byte> input)
    {
        if (key.Length < input.Length + 4) throw new ArgumentException($"key of {key.Length} bytes is too short for {input.Length} input bytes", nameof(key));
        uint result = 0;
        ulong window = BinaryPrimitives.ReadUInt64BigEndian(key);   // key bits, the current 32-bit window on top
        int next = 8;
        foreach (byte b in input)
        {
            for (int i = 0; i < 8; i++)
                if ((b & (0x80 >> i)) != 0) result ^= (uint)(window >> (32 - i));
            window = window << 8 | (next < key.Length ? key[next++] : 0u);
        }
        return result;
    }

    /// <summary>Hashes <paramref name="frame"/> if MRQC enables its type: returns the RSS type (0: not hashed) and the hash.</summary>
    public int Hash(ReadOnlySpan<byte> frame, out uint hash)
    {
        hash = 0;
        uint mrqc = _mrqc.Value;
        if (frame.Length < 14) return TypeNone;
        int l3 = 14;
        ushort etherType = BinaryPrimitives.ReadUInt16BigEndian(frame[12..]);
        if (etherType == 0x8100 && frame.Length >= 18)
        {
            etherType = BinaryPrimitives.ReadUInt16BigEndian(frame[16..]);
            l3 = 18;
        }
        var ip = frame[l3..];
        int n, type;
        if (etherType == 0x0800 && ip.Length >= 20 && ip[0] >> 4 == 4)
        {
            int ihl = (ip[0] & 0xF) * 4;
            bool fragment = (BinaryPrimitives.ReadUInt16BigEndian(ip[6..]) & 0x3FFF) != 0;
            ip.Slice(12, 8).CopyTo(_input);                          // source, destination
            n = 8;
            type = (ip[9], fragment) switch
            {
                (6, false) when (mrqc & FieldIpv4Tcp) != 0 && ip.Length >= ihl + 4 => TypeIpv4Tcp,
                (17, false) when (mrqc & FieldIpv4Udp) != 0 && ip.Length >= ihl + 4 => TypeIpv4Udp,
                _ => (mrqc & FieldIpv4) != 0 ? TypeIpv4 : TypeNone,
            };
            if (type is TypeIpv4Tcp or TypeIpv4Udp) { ip.Slice(ihl, 4).CopyTo(_input.AsSpan(8)); n = 12; }
        }
        else if (etherType == 0x86DD && ip.Length >= 40 && ip[0] >> 4 == 6)
        {
            ip.Slice(8, 32).CopyTo(_input);
            n = 32;
            type = ip[6] switch
            {
                6 when (mrqc & FieldIpv6Tcp) != 0 && ip.Length >= 44 => TypeIpv6Tcp,
                17 when (mrqc & FieldIpv6Udp) != 0 && ip.Length >= 44 => TypeIpv6Udp,
                _ => (mrqc & FieldIpv6) != 0 ? TypeIpv6 : TypeNone,
            };
            if (type is TypeIpv6Tcp or TypeIpv6Udp) { ip.Slice(40, 4).CopyTo(_input.AsSpan(32)); n = 36; }
        }
        else return TypeNone;
        if (type == TypeNone) return TypeNone;
        for (int i = 0; i < RssrkRegisters; i++) BinaryPrimitives.WriteUInt32LittleEndian(_key.AsSpan(4 * i), _rssrk[i].Value);
        hash = Toeplitz(_key, _input.AsSpan(0, n));
        return type;
    }

    /// <summary>The queue RETA gives <paramref name="hash"/>.</summary>
    public int Queue(uint hash)
    {
        int entry = (int)(hash & 0x7F);
        return (int)(_reta[entry >> 2].Value >> (8 * (entry & 3))) & 0xF;
    }
}
