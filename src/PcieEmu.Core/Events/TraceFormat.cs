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
        FrameEvent => "FRAME",
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
    public static string Line(MachineEvent e) => Line(e.TimestampNs, e is GapEvent ? null : e.Rid, Token(e), Body(e));

    /// <summary>A line from its parts (the server's translation prints received events with it).</summary>
    public static string Line(long timestampNs, ushort? rid, string token, string body) =>
        string.Create(CultureInfo.InvariantCulture, $"{timestampNs / 1_000_000_000}.{timestampNs % 1_000_000_000 / 1000:D6} {(rid is { } r ? Bdf.Format(r) : "--:--.-")} {token,-5} {body}");

    /// <summary>Everything after the kind token.</summary>
    public static string Body(MachineEvent e) => e switch
    {
        ConfigAccessEvent c => Config(c),
        MmioAccessEvent m => Mmio(m),
        DmaEvent d => Dma(d),
        InterruptMessageEvent i => Interrupt(i.Interrupt),
        IommuFaultEvent f => string.Create(CultureInfo.InvariantCulture,
            $"fault {(f.IsWrite ? "W" : "R")} iova {Addr(f.Iova)} reason 0x{(byte)f.Reason:X2} {Words(f.Reason.ToString())}"),
        FrameEvent f => Frame(f),
        LifecycleEvent l => l.Change switch
        {
            LifecycleChange.VfAppeared => $"VF appeared {l.Function}",
            LifecycleChange.VfVanished => $"VF vanished {l.Function}",
            LifecycleChange.FunctionLevelReset => $"FLR {l.Function}",
            _ => "platform reset",
        },
        GapEvent g => string.Create(CultureInfo.InvariantCulture, $"{g.Missed} event(s) lost: this subscriber fell behind"),
        _ => e.GetType().Name,
    };

    private static string Hex(ulong v, int bytes) => "0x" + v.ToString("X" + (2 * bytes).ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);

    /// <summary>An address in hex, grouped by 4 digits: 0x4000_2000, 0x0001_0000_0000.</summary>
    public static string Addr(ulong a)
    {
        string h = a.ToString(a > 0xFFFF_FFFF ? "X12" : "X8", CultureInfo.InvariantCulture);
        if (h.Length % 4 != 0) h = h.PadLeft(h.Length + 4 - h.Length % 4, '0');
        var sb = new StringBuilder("0x", h.Length + h.Length / 4 + 2);
        for (int i = 0; i < h.Length; i += 4)
        {
            if (i > 0) sb.Append('_');
            sb.Append(h, i, 4);
        }
        return sb.ToString();
    }

    private static string Config(ConfigAccessEvent c)
    {
        string reg = c.Register.Length > 0 ? c.Register : $"0x{c.Offset:X3}";
        string at = string.Create(CultureInfo.InvariantCulture, $"[0x{c.Offset:X3}]");
        if (c.Status != AddressSpace.CompletionStatus.Successful)
            return c.IsWrite ? $"W  {at} = {Hex(c.Value, c.Width)}  UR (no function)" : $"R  {at} -> {Hex(c.Value, c.Width)}  UR (no function)";
        if (!c.IsWrite) return $"R  {reg} {at} -> {Hex(c.Value, c.Width)}";
        string changes = c.Fields.Length > 0 ? $": {c.Fields}" : c.Old != c.After ? $"  (was {Hex(c.Old, c.Width)})" : "";
        string stored = c.After != c.Value ? $" (reads {Hex(c.After, c.Width)})" : "";
        return $"W  {reg} {at} = {Hex(c.Value, c.Width)}{stored}{changes}";
    }

    private static string Mmio(MmioAccessEvent m)
    {
        string where = m.Bar < 0 ? "IOMMU" : string.Create(CultureInfo.InvariantCulture, $"{m.Function} BAR{m.Bar}");
        string reg = m.Register ?? string.Create(CultureInfo.InvariantCulture, $"+0x{m.Offset:X5}");
        return m.IsWrite
            ? $"W  {where} {reg} = {Hex(m.Value, m.Width)}{(m.Register != null ? $"  (was {Hex(m.Old, Math.Min(m.Width, 4))})" : "")}"
            : $"R  {where} {reg} -> {Hex(m.Value, m.Width)}";
    }

    private static string Dma(DmaEvent d)
    {
        string dir = d.IsWrite ? "W" : "R";
        string head = string.Create(CultureInfo.InvariantCulture, $"{dir}  iova {Addr(d.Iova)} -> {Addr(d.Translated)} {d.Length} B");
        return d.Result.Status switch
        {
            DmaStatus.Ok => head,
            DmaStatus.BusMasterDisabled => string.Create(CultureInfo.InvariantCulture, $"{dir}  iova {Addr(d.Iova)} {d.Length} B  BLOCKED: Bus Master Enable is clear"),
            DmaStatus.TranslationFault => string.Create(CultureInfo.InvariantCulture,
                $"{head}  FAULT after {d.Result.BytesMoved} B at {Addr(d.Result.FaultAddress)}: reason 0x{d.Result.FaultReason:X2} {Words(((Iommu.VtdFaultReason)d.Result.FaultReason).ToString())}"),
            _ => string.Create(CultureInfo.InvariantCulture, $"{head}  UR after {d.Result.BytesMoved} B at {Addr(d.Result.FaultAddress)}: not memory"),
        };
    }

    private static string Interrupt(InterruptEvent i) => i.Kind switch
    {
        InterruptKind.Intx => string.Create(CultureInfo.InvariantCulture, $"assert INT{(char)('A' + (int)i.Data - 1)}"),
        _ => string.Create(CultureInfo.InvariantCulture, $"vector {i.Vector} -> 0x{i.Address:X8} data 0x{i.Data:X4} (APIC dest {i.Destination}, CPU vector 0x{i.CpuVector:X2})"),
    };

    private static string Frame(FrameEvent f)
    {
        var d = f.Frame.Data;
        string hdr = d.Length >= 14
            ? string.Create(CultureInfo.InvariantCulture, $"{Mac(d, 0)} <- {Mac(d, 6)} type 0x{d[12] << 8 | d[13]:X4}")
            : "runt";
        return f.Direction switch
        {
            FrameDirection.FromWire => string.Create(CultureInfo.InvariantCulture, $"wire -> port{f.Frame.Port} {d.Length} B {hdr}"),
            FrameDirection.ToWire => string.Create(CultureInfo.InvariantCulture, $"port{f.Frame.Port} q{f.Queue} -> wire {d.Length} B {hdr}"),
            _ => string.Create(CultureInfo.InvariantCulture, $"port{f.Frame.Port} q{f.Queue} -> pools 0x{f.Pools:X2} (switched) {d.Length} B {hdr}"),
        };
    }

    private static string Mac(byte[] d, int o) => string.Create(CultureInfo.InvariantCulture,
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
