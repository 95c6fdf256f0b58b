using System.Globalization;
using System.Text;
using PcieEmu.Core.Interrupts;
using PcieEmu.Core.Memory;
using PcieEmu.Core.Topology;

namespace PcieEmu.Core.Events;

/// <summary>
/// The decoded one-line form of an event (docs/trace.md). A line is
/// <c>SECONDS BDF KIND BODY</c>: seconds since the machine started with 6 decimals, the
/// requester's BDF (<c>--:--.-</c> for a gap), a kind token of fixed spelling
/// (<see cref="Token"/>), then the decoded body. The format is stable: tools parse it back
/// (<see cref="TryParseLine"/>) and tests compare it.
/// </summary>
public static class TraceFormat
{
    /// <summary>The kind token of <paramref name="e"/>: CFG, MMIO, DMA, MSI, MSI-X, INTx, VTD-EVT, VTD, FRAME, LIFE or GAP.</summary>
    public static string Token(MachineEvent e) => e switch
    {
        ConfigAccessEvent => "CFG",
        MmioAccessEvent => "MMIO",
        DmaEvent => "DMA",
        InterruptMessageEvent m => m.Interrupt.Kind switch
        {
            InterruptKind.Msix => "MSI-X",
            InterruptKind.Intx => "INTx",
            InterruptKind.IommuFault => "VTD-EVT",
            _ => "MSI",
        },
        IommuFaultEvent => "VTD",
        FrameEvent or FrameDropEvent => "FRAME",
        LifecycleEvent => "LIFE",
        _ => "GAP",
    };

    /// <summary>The event kind a token stands for (null when unknown).</summary>
    public static EventKind? KindOf(string token) => token switch
    {
        "CFG" => EventKind.Config,
        "MMIO" => EventKind.Mmio,
        "DMA" => EventKind.Dma,
        "MSI" or "MSI-X" or "INTx" or "VTD-EVT" => EventKind.Msi,
        "VTD" => EventKind.Iommu,
        "FRAME" => EventKind.Frame,
        "LIFE" => EventKind.Lifecycle,
        "GAP" => EventKind.Gap,
        _ => null,
    };

    /// <summary>The whole line: <c>12.004311 01:10.0 MMIO W  PF0.VF0 BAR0 TDT[0] = 0x00000008  (was 0x00000000)</c>.</summary>
    public static string Line(MachineEvent e)
    {
        var sb = new StringBuilder(96);
        AppendLine(sb, e);
        return sb.ToString(0, sb.Length - 1);
    }

    /// <summary>Appends the line of <paramref name="e"/> and a newline (the recorder's allocation-light path).</summary>
    public static void AppendLine(StringBuilder sb, MachineEvent e)
    {
        ArgumentNullException.ThrowIfNull(sb);
        ArgumentNullException.ThrowIfNull(e);
        AppendPrefix(sb, e.TimestampNs, e is GapEvent ? null : e.Rid, Token(e));
        AppendBody(sb, e);
        sb.Append('\n');
    }

    /// <summary>A line from its parts (the server's translation prints received events with it).</summary>
    public static string Line(long timestampNs, ushort? rid, string token, string body)
    {
        var sb = new StringBuilder(96);
        AppendPrefix(sb, timestampNs, rid, token);
        return sb.Append(body).ToString();
    }

    private static void AppendPrefix(StringBuilder sb, long ns, ushort? rid, string token)
    {
        // Hand-formatted: this runs for every recorded line.
        Span<char> buf = stackalloc char[40];
        int n = Decimal(buf, ns / 1_000_000_000, 1);
        buf[n++] = '.';
        n += Decimal(buf[n..], ns % 1_000_000_000 / 1000, 6);
        buf[n++] = ' ';
        if (rid is { } r)
        {
            n += HexDigits(buf[n..], (ulong)(r >> 8), 2, lower: true);
            buf[n++] = ':';
            n += HexDigits(buf[n..], (ulong)((r >> 3) & 0x1F), 2, lower: true);
            buf[n++] = '.';
            n += HexDigits(buf[n..], (ulong)(r & 7), 1, lower: true);
            buf[n++] = ' ';
            sb.Append(buf[..n]);
        }
        else sb.Append(buf[..n]).Append("--:--.- ");
        sb.Append(token);
        for (int i = token.Length; i < 5; i++) sb.Append(' ');
        sb.Append(' ');
    }

    /// <summary>Everything after the kind token.</summary>
    public static string Body(MachineEvent e)
    {
        var sb = new StringBuilder(80);
        AppendBody(sb, e);
        return sb.ToString();
    }

    private static void AppendBody(StringBuilder sb, MachineEvent e)
    {
        var ic = CultureInfo.InvariantCulture;
        switch (e)
        {
            case ConfigAccessEvent c: Config(sb, c); break;
            case MmioAccessEvent m: Mmio(sb, m); break;
            case DmaEvent d: Dma(sb, d); break;
            case InterruptMessageEvent i: Interrupt(sb, i.Interrupt); break;
            case IommuFaultEvent f:
                sb.Append("fault ").Append(f.IsWrite ? "W" : "R").Append(" iova ");
                Addr(sb, f.Iova);
                sb.Append(ic, $" reason 0x{(byte)f.Reason:X2} ").Append(Words(f.Reason.ToString()));
                break;
            case FrameEvent f: Frame(sb, f); break;
            case FrameDropEvent x:
                sb.Append(ic, $"port{x.Port} q{x.Queue} DROPPED {x.Length} B: ").Append(x.Reason == FrameDropReason.NoRxDescriptors
                    ? "no free receive descriptors" : "anti-spoofing (source MAC/VLAN not the pool's)");
                break;
            case LifecycleEvent l:
                sb.Append(l.Change switch
                {
                    LifecycleChange.VfAppeared => "VF appeared ",
                    LifecycleChange.VfVanished => "VF vanished ",
                    LifecycleChange.FunctionLevelReset => "FLR ",
                    _ => "platform reset",
                });
                if (l.Change != LifecycleChange.PlatformReset) sb.Append(l.Function);
                break;
            case GapEvent g: sb.Append(ic, $"{g.Missed} event(s) lost: this subscriber fell behind"); break;
            default: sb.Append(e.GetType().Name); break;
        }
    }

    private static StringBuilder Hex(StringBuilder sb, ulong v, int bytes)
    {
        Span<char> buf = stackalloc char[18];
        buf[0] = '0'; buf[1] = 'x';
        int digits = bytes is 1 or 2 or 4 ? 2 * bytes : 16;
        return sb.Append(buf[..(2 + HexDigits(buf[2..], v, digits, lower: false))]);
    }

    // v in hex, zero-padded to at least `digits` digits; returns the characters written.
    private static int HexDigits(Span<char> dst, ulong v, int digits, bool lower)
    {
        int len = Math.Max(digits, (64 - System.Numerics.BitOperations.LeadingZeroCount(v | 1) + 3) / 4);
        string table = lower ? "0123456789abcdef" : "0123456789ABCDEF";
        for (int i = len - 1; i >= 0; i--, v >>= 4) dst[i] = table[(int)(v & 0xF)];
        return len;
    }

    // v (>= 0) in decimal, zero-padded to at least `digits` digits; returns the characters written.
    private static int Decimal(Span<char> dst, long v, int digits)
    {
        int len = 1;
        for (long t = v; t >= 10; t /= 10) len++;
        len = Math.Max(len, digits);
        for (int i = len - 1; i >= 0; i--, v /= 10) dst[i] = (char)('0' + (int)(v % 10));
        return len;
    }

    /// <summary>An address in hex, grouped by 4 digits: 0x4000_2000, 0x0001_0000_0000.</summary>
    public static string Addr(ulong a) => Addr(new StringBuilder(20), a).ToString();

    private static StringBuilder Addr(StringBuilder sb, ulong a)
    {
        sb.Append("0x");
        int groups = a > 0xFFFF_FFFF_FFFF ? 4 : a > 0xFFFF_FFFF ? 3 : 2;
        for (int g = groups - 1; g >= 0; g--)
        {
            sb.Append(CultureInfo.InvariantCulture, $"{(a >> (16 * g)) & 0xFFFF:X4}");
            if (g > 0) sb.Append('_');
        }
        return sb;
    }

    private static void Config(StringBuilder sb, ConfigAccessEvent c)
    {
        var ic = CultureInfo.InvariantCulture;
        bool ok = c.Status == AddressSpace.CompletionStatus.Successful;
        sb.Append(c.IsWrite ? "W  " : "R  ");
        if (ok) sb.Append(c.Register.Length > 0 ? c.Register : "?").Append(' ');
        Span<char> off = stackalloc char[8];
        off[0] = '['; off[1] = '0'; off[2] = 'x';
        int n = 3 + HexDigits(off[3..], (ulong)c.Offset, 3, lower: false);
        off[n++] = ']';
        sb.Append(off[..n]).Append(c.IsWrite ? " = " : " -> ");
        Hex(sb, c.Value, c.Width);
        if (!ok) { sb.Append("  UR (no function)"); return; }
        if (!c.IsWrite) return;
        if (c.After != c.Value) Hex(sb.Append(" (reads "), c.After, c.Width).Append(')');
        if (c.Fields.Length > 0) sb.Append(": ").Append(c.Fields);
        else if (c.Old != c.After) Hex(sb.Append("  (was "), c.Old, c.Width).Append(')');
    }

    private static void Mmio(StringBuilder sb, MmioAccessEvent m)
    {
        sb.Append(m.IsWrite ? "W  " : "R  ");
        if (m.Bar < 0) sb.Append("IOMMU ");
        else sb.Append(m.Function).Append(CultureInfo.InvariantCulture, $" BAR{m.Bar} ");
        if (m.Register != null) sb.Append(m.Register);
        else sb.Append(CultureInfo.InvariantCulture, $"+0x{m.Offset:X5}");
        Hex(sb.Append(m.IsWrite ? " = " : " -> "), m.Value, m.Width);
        if (m.Miss != MmioMiss.None)
        {
            sb.Append(m.Miss switch
            {
                MmioMiss.MemorySpaceOff => "  UR: not decoded (Memory Space Enable is clear)",
                MmioMiss.VfMemorySpaceOff => "  UR: not decoded (the PF's VF MSE is clear)",
                _ => "  UR: not decoded (function not in D0)",
            });
            return;
        }
        if (m.IsWrite && m.Register != null) Hex(sb.Append("  (was "), m.Old, Math.Min(m.Width, 4)).Append(')');
    }

    private static void Dma(StringBuilder sb, DmaEvent d)
    {
        var ic = CultureInfo.InvariantCulture;
        Addr(sb.Append(d.IsWrite ? "W  iova " : "R  iova "), d.Iova);
        string note = d.Message is { } k ? $" ({(k == InterruptKind.Msix ? "MSI-X" : "MSI")} vector {d.Vector} outside the MSI window)" : "";
        if (d.Result.Status == DmaStatus.BusMasterDisabled)
        {
            if (d.Message is { } mk) note = $" ({(mk == InterruptKind.Msix ? "MSI-X" : "MSI")} vector {d.Vector})";
            sb.Append(ic, $" {d.Length} B{note}");
            if (d.Purpose.IsKnown) d.Purpose.AppendTo(sb.Append(" ("), d.Length).Append(')');
            sb.Append("  BLOCKED: Bus Master Enable is clear");
            return;
        }
        Addr(sb.Append(" -> "), d.Translated).Append(ic, $" {d.Length} B").Append(note);
        if (d.Purpose.IsKnown) d.Purpose.AppendTo(sb.Append(" ("), d.Length).Append(')');
        switch (d.Result.Status)
        {
            case DmaStatus.Ok: break;
            case DmaStatus.TranslationFault:
                Addr(sb.Append(ic, $"  FAULT after {d.Result.BytesMoved} B at "), d.Result.FaultAddress)
                    .Append(ic, $": reason 0x{d.Result.FaultReason:X2} ").Append(Words(((Iommu.VtdFaultReason)d.Result.FaultReason).ToString()));
                break;
            default:
                Addr(sb.Append(ic, $"  UR after {d.Result.BytesMoved} B at "), d.Result.FaultAddress).Append(": not memory");
                break;
        }
    }

    private static void Interrupt(StringBuilder sb, InterruptEvent i)
    {
        var ic = CultureInfo.InvariantCulture;
        if (i.Kind == InterruptKind.Intx) sb.Append(ic, $"assert INT{(char)('A' + (int)i.Data - 1)}");
        else sb.Append(ic, $"vector {i.Vector} -> 0x{i.Address:X8} data 0x{i.Data:X4} (APIC dest {i.Destination}, CPU vector 0x{i.CpuVector:X2})");
    }

    private static void Frame(StringBuilder sb, FrameEvent f)
    {
        var ic = CultureInfo.InvariantCulture;
        var d = f.Frame.Data;
        switch (f.Direction)
        {
            case FrameDirection.FromWire: sb.Append(ic, $"wire -> port{f.Frame.Port} {d.Length} B "); break;
            case FrameDirection.ToWire: sb.Append(ic, $"port{f.Frame.Port} q{f.Queue} -> wire {d.Length} B "); break;
            default: sb.Append(ic, $"port{f.Frame.Port} q{f.Queue} -> pools 0x{f.Pools:X2} (switched) {d.Length} B "); break;
        }
        if (d.Length < 14) { sb.Append("runt"); return; }
        Mac(sb, d, 0).Append(" <- ");
        Mac(sb, d, 6).Append(ic, $" type 0x{d[12] << 8 | d[13]:X4}");
    }

    private static StringBuilder Mac(StringBuilder sb, byte[] d, int o) => sb.Append(CultureInfo.InvariantCulture,
        $"{d[o]:x2}:{d[o + 1]:x2}:{d[o + 2]:x2}:{d[o + 3]:x2}:{d[o + 4]:x2}:{d[o + 5]:x2}");

    private static string Words(string pascal)
    {
        var sb = new StringBuilder(pascal.Length + 8);
        for (int i = 0; i < pascal.Length; i++)
        {
            if (i > 0 && char.IsUpper(pascal[i]) && !char.IsUpper(pascal[i - 1])) sb.Append(' ');
            sb.Append(i > 0 && char.IsUpper(pascal[i]) && (i + 1 >= pascal.Length || !char.IsUpper(pascal[i + 1])) ? char.ToLowerInvariant(pascal[i]) : pascal[i]);
        }
        return sb.ToString();
    }

    /// <summary>A line split back into its parts; false when it is not a trace line.</summary>
    public static bool TryParseLine(string line, out long timestampNs, out ushort? rid, out string token, out string body)
    {
        timestampNs = 0; rid = null; token = ""; body = "";
        var parts = line.Split(' ', 4, StringSplitOptions.None);
        if (parts.Length < 3) return false;
        var ts = parts[0].Split('.');
        if (ts.Length != 2 || !long.TryParse(ts[0], NumberStyles.None, CultureInfo.InvariantCulture, out long s)
            || ts[1].Length != 6 || !long.TryParse(ts[1], NumberStyles.None, CultureInfo.InvariantCulture, out long us)) return false;
        timestampNs = s * 1_000_000_000 + us * 1000;
        if (parts[1] != "--:--.-")
        {
            if (!Bdf.TryParse(parts[1], out ushort r)) return false;
            rid = r;
        }
        token = parts[2];
        if (KindOf(token) == null) return false;
        body = parts.Length > 3 ? parts[3].TrimStart() : "";
        return true;
    }
}
