namespace PcieEmu.Core.Devices.Igb;

/// <summary>The Ethernet frame check sequence: CRC-32 (IEEE 802.3, reflected polynomial
/// 0xEDB88320, initial value and final XOR all ones), sent least significant byte first.</summary>
public static class EthernetFcs
{
    private static readonly uint[] Table = BuildTable();

    private static uint[] BuildTable()
    {
        var t = new uint[256];
        for (uint i = 0; i < 256; i++)
        {
            uint c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1;
            t[i] = c;
        }
        return t;
    }

    /// <summary>CRC-32 of <paramref name="data"/>.</summary>
    public static uint Compute(ReadOnlySpan<byte> data)
    {
        uint c = 0xFFFF_FFFF;
        foreach (byte b in data) c = Table[(c ^ b) & 0xFF] ^ (c >> 8);
        return ~c;
    }

    /// <summary>Writes the 4 FCS bytes of <paramref name="frame"/> (as they follow it on the wire) into <paramref name="fcs"/>.</summary>
    public static void Write(ReadOnlySpan<byte> frame, Span<byte> fcs) =>
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(fcs, Compute(frame));
}
