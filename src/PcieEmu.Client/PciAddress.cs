using System.Globalization;
using System.Text.RegularExpressions;

namespace PcieEmu.Client;

/// <summary>
/// Routing IDs and their text form. A routing ID is bus &lt;&lt; 8 | device &lt;&lt; 3 | function;
/// the text form is lspci's <c>bb:dd.f</c> with an optional <c>0000:</c> segment.
/// </summary>
public static partial class PciAddress
{
    [GeneratedRegex(@"^(?:(?<seg>[0-9a-fA-F]{1,4}):)?(?<bus>[0-9a-fA-F]{1,2}):(?<dev>[0-9a-fA-F]{1,2})\.(?<fn>[0-7])$")]
    private static partial Regex BdfPattern();

    /// <summary>Routing ID from bus, device (0-31) and function (0-7).</summary>
    public static ushort ToRid(int bus, int device, int function)
    {
        if ((uint)bus > 255) throw new ArgumentOutOfRangeException(nameof(bus));
        if ((uint)device > 31) throw new ArgumentOutOfRangeException(nameof(device));
        if ((uint)function > 7) throw new ArgumentOutOfRangeException(nameof(function));
        return (ushort)((bus << 8) + (device << 3) + function);
    }

    /// <summary>Formats a routing ID as <c>bb:dd.f</c>.</summary>
    public static string Format(uint rid) =>
        string.Create(CultureInfo.InvariantCulture, $"{(rid >> 8) & 0xFF:x2}:{(rid >> 3) & 0x1F:x2}.{rid & 7:x1}");

    /// <summary>Parses <c>[0000:]bb:dd.f</c>; false when malformed or the segment is not 0.</summary>
    public static bool TryParse(string? text, out ushort rid)
    {
        rid = 0;
        var m = BdfPattern().Match(text?.Trim() ?? "");
        if (!m.Success) return false;
        if (m.Groups["seg"].Success && int.Parse(m.Groups["seg"].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture) != 0) return false;
        int dev = int.Parse(m.Groups["dev"].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        if (dev > 31) return false;
        rid = ToRid(int.Parse(m.Groups["bus"].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture), dev,
            m.Groups["fn"].Value[0] - '0');
        return true;
    }

    /// <summary>Parses <c>[0000:]bb:dd.f</c>; throws <see cref="FormatException"/> when malformed.</summary>
    public static ushort Parse(string text) =>
        TryParse(text, out ushort rid) ? rid : throw new FormatException($"'{text}' is not a PCI address (bb:dd.f)");
}
