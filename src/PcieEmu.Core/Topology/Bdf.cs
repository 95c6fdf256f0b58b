using System.Globalization;

namespace PcieEmu.Core.Topology;

/// <summary>Routing ID helpers: bus &lt;&lt; 8 | device &lt;&lt; 3 | function (ARI: bus &lt;&lt; 8 | function).</summary>
public static class Bdf
{
    /// <summary>Builds a routing ID.</summary>
    public static ushort Rid(int bus, int device, int function) => (ushort)(bus << 8 | device << 3 | function);

    /// <summary>Formats a routing ID as bb:dd.f (lspci style, segment 0).</summary>
    public static string Format(ushort rid) => $"{rid >> 8:x2}:{(rid >> 3) & 0x1F:x2}.{rid & 7:x}";

    /// <summary>Parses bb:dd.f (optionally with a 0000: segment prefix).</summary>
    public static bool TryParse(string? text, out ushort rid)
    {
        rid = 0;
        if (string.IsNullOrWhiteSpace(text)) return false;
        var t = text.Trim();
        var parts = t.Split(':');
        if (parts.Length == 3) { if (!uint.TryParse(parts[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out uint seg) || seg != 0) return false; parts = parts[1..]; }
        if (parts.Length != 2) return false;
        var df = parts[1].Split('.');
        if (df.Length != 2) return false;
        if (!byte.TryParse(parts[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out byte bus)) return false;
        if (!byte.TryParse(df[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out byte dev) || dev > 31) return false;
        if (!byte.TryParse(df[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out byte fn) || fn > 7) return false;
        rid = Rid(bus, dev, fn);
        return true;
    }
}
