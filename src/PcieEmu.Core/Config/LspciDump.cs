using System.Text;

namespace PcieEmu.Core.Config;

/// <summary>
/// Formats config space the way <c>lspci -xxxx</c> prints it, so <c>lspci -F FILE -vvv</c>
/// (pciutils) decodes it: a line "bb:dd.f " (then anything), 16-byte rows "off: xx xx ..."
/// with offsets 00 to ff0, and a blank line after the device.
/// </summary>
public static class LspciDump
{
    /// <summary>Appends one function's dump: the "bb:dd.f description" line, the rows, a blank line.
    /// <paramref name="config"/> holds 256 or 4096 bytes.</summary>
    public static void Append(StringBuilder sb, ushort rid, ReadOnlySpan<byte> config, string? description = null)
    {
        ArgumentNullException.ThrowIfNull(sb);
        if (config.Length is not (256 or 4096)) throw new ArgumentException("config must be 256 or 4096 bytes", nameof(config));
        sb.Append(Topology.Bdf.Format(rid)).Append(' ').Append(description ?? "").Append('\n');
        AppendRows(sb, config);
        sb.Append('\n');
    }

    /// <summary>Appends rows of 16 bytes, "off: xx xx ...", offsets in hex as lspci prints them
    /// (<c>-x</c> gives 64 bytes, <c>-xxx</c> 256, <c>-xxxx</c> 4096).</summary>
    public static void AppendRows(StringBuilder sb, ReadOnlySpan<byte> config)
    {
        ArgumentNullException.ThrowIfNull(sb);
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        for (int row = 0; row < config.Length; row += 16)
        {
            sb.Append(row.ToString(row < 0x100 ? "x2" : "x3", inv)).Append(':');
            for (int i = 0; i < 16 && row + i < config.Length; i++) sb.Append(' ').Append(config[row + i].ToString("x2", inv));
            sb.Append('\n');
        }
    }

    /// <summary>Parses rows "off: xx xx ..." of a dump (the first device only) into bytes; missing rows read 0.</summary>
    public static byte[] Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var bytes = new byte[ConfigSpace.Size];
        foreach (var raw in text.Split('\n'))
        {
            var line = raw.Trim();
            int colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0 || line.Contains('.', StringComparison.Ordinal)) continue;
            if (!int.TryParse(line[..colon], System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture, out int off)) continue;
            var parts = line[(colon + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            for (int i = 0; i < parts.Length && off + i < bytes.Length; i++)
                bytes[off + i] = byte.Parse(parts[i], System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture);
        }
        return bytes;
    }
}
