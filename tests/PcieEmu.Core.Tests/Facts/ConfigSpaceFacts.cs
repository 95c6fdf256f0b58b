using System.Globalization;

namespace PcieEmu.Core.Tests.Facts;

/// <summary>The hand-written config-space access table (Data/config-space-access.tsv) as per-byte masks.</summary>
internal static class ConfigSpaceFacts
{
    public const int Size = 4096;

    /// <summary>Per-byte expectations for one function type.</summary>
    public sealed class Masks
    {
        public readonly byte[] Rw = new byte[Size], Rw1c = new byte[Size], Avoid = new byte[Size], Value = new byte[Size], ValueMask = new byte[Size];
        public readonly string?[] Field = new string?[Size];

        /// <summary>Bits the specs make read-only: everything that is not RW, RW1C or left to the implementation.</summary>
        public byte ReadOnly(int off) => (byte)~(Rw[off] | Rw1c[off] | Avoid[off]);
    }

    private static uint Hex(string s) => uint.Parse(s, NumberStyles.HexNumber, CultureInfo.InvariantCulture);

    /// <summary>The table for <paramref name="fn"/>: HB, RP, PF0, PF1 or VF.</summary>
    public static Masks For(string fn)
    {
        var m = new Masks();
        foreach (var line in File.ReadAllLines(Path.Combine(AppContext.BaseDirectory, "Data", "config-space-access.tsv")))
        {
            if (line.Length == 0 || line[0] == '#') continue;
            var c = line.Split('\t');
            Assert.True(c.Length == 9, $"malformed table line: {line}");
            if (!(c[0] == fn || (c[0] == "PF" && fn.StartsWith("PF", StringComparison.Ordinal)))) continue;
            int off = (int)Hex(c[1]), width = int.Parse(c[2], CultureInfo.InvariantCulture);
            uint rw = Hex(c[3]), rw1c = Hex(c[4]), avoid = Hex(c[5]), value = Hex(c[6]), vmask = Hex(c[7]);
            Assert.True((rw & rw1c) == 0 && ((rw | rw1c) & avoid) == 0, $"{fn} 0x{off:X}: overlapping masks");
            for (int i = 0; i < width; i++)
            {
                Assert.True(m.Field[off + i] == null, $"{fn} 0x{off + i:X}: two rows cover this byte");
                m.Field[off + i] = c[8];
                m.Rw[off + i] = (byte)(rw >> (8 * i));
                m.Rw1c[off + i] = (byte)(rw1c >> (8 * i));
                m.Avoid[off + i] = (byte)(avoid >> (8 * i));
                m.Value[off + i] = (byte)(value >> (8 * i));
                m.ValueMask[off + i] = (byte)(vmask >> (8 * i));
            }
        }
        return m;
    }
}
