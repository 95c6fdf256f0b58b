using System.Globalization;

namespace PcieEmu.Drivers;

/// <summary>MAC address helpers (6 bytes, transmission order).</summary>
public static class Mac
{
    public static readonly byte[] Broadcast = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

    public static string Format(ReadOnlySpan<byte> mac) =>
        string.Join(':', mac[..6].ToArray().Select(b => b.ToString("x2", CultureInfo.InvariantCulture)));

    public static byte[] Parse(string text)
    {
        var parts = text.Split(':', '-');
        if (parts.Length != 6) throw new FormatException($"MAC '{text}': expected six hex bytes aa:bb:cc:dd:ee:ff");
        var mac = new byte[6];
        for (int i = 0; i < 6; i++)
            if (!byte.TryParse(parts[i], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out mac[i]))
                throw new FormatException($"MAC '{text}': byte {i} is not hex");
        return mac;
    }

    /// <summary>RAL value (bytes 0-3, little-endian).</summary>
    public static uint Low(ReadOnlySpan<byte> mac) => (uint)(mac[0] | mac[1] << 8 | mac[2] << 16 | mac[3] << 24);
    /// <summary>RAH address bits (bytes 4-5).</summary>
    public static uint High(ReadOnlySpan<byte> mac) => (uint)(mac[4] | mac[5] << 8);

    public static byte[] FromRegisters(uint low, uint high) =>
        [(byte)low, (byte)(low >> 8), (byte)(low >> 16), (byte)(low >> 24), (byte)high, (byte)(high >> 8)];

    /// <summary>A valid unicast address: not multicast, not zero.</summary>
    public static bool IsValidUnicast(ReadOnlySpan<byte> mac) => (mac[0] & 1) == 0 && mac[..6].IndexOfAnyExcept((byte)0) >= 0;

    /// <summary>An Ethernet II frame (IPv4 ethertype, counting payload) of <paramref name="length"/> bytes without FCS.</summary>
    public static byte[] Frame(ReadOnlySpan<byte> dst, ReadOnlySpan<byte> src, int length, uint sequence)
    {
        if (length < 14) throw new ArgumentOutOfRangeException(nameof(length), "a frame has at least 14 bytes");
        var f = new byte[length];
        dst[..6].CopyTo(f);
        src[..6].CopyTo(f.AsSpan(6));
        f[12] = 0x08; f[13] = 0x00;
        for (int i = 14; i < length; i++) f[i] = (byte)(i + sequence);
        if (length >= 18) System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(f.AsSpan(14), sequence);
        return f;
    }
}
