using System.Buffers.Binary;

namespace PcieEmu.Core.Devices;

/// <summary>The Internet checksum (RFC 1071) the devices' checksum offloads compute and verify.</summary>
internal static class InternetChecksum
{
    /// <summary>16-bit one's complement sum of big-endian words (odd length padded with 0), folded.</summary>
    public static ushort OnesSum(ReadOnlySpan<byte> data)
    {
        // 32-bit big-endian words summed in 64 bits fold to the same 16-bit one's complement sum
        // (2^16 is 1 modulo 0xFFFF).
        ulong sum = 0;
        int i = 0;
        for (; i + 4 <= data.Length; i += 4) sum += BinaryPrimitives.ReadUInt32BigEndian(data[i..]);
        for (; i + 1 < data.Length; i += 2) sum += BinaryPrimitives.ReadUInt16BigEndian(data[i..]);
        if (i < data.Length) sum += (uint)data[i] << 8;
        while (sum > 0xFFFF) sum = (sum & 0xFFFF) + (sum >> 16);
        return (ushort)sum;
    }
}
