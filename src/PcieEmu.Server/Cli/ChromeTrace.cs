using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using PcieEmu.Core.Events;
using PcieEmu.Core.Topology;

namespace PcieEmu.Server.Cli;

/// <summary>
/// Converts a trace recording (<c>serve --trace FILE</c>: one <see cref="TraceFormat"/> line per
/// event) to the Trace Event format that Perfetto and chrome://tracing open: one track (thread)
/// per function named by its BDF, plus a "machine" track for gap lines; config, MMIO, interrupts,
/// faults and lifecycle as instants; DMA and frames as slices whose length is the transfer time
/// (PCIe 2.0 x4 ≈ 2 GB/s for DMA, 1 Gb/s with preamble and FCS for frames).
/// </summary>
public static partial class ChromeTrace
{
    /// <summary>The track of gap lines (and lines without a function).</summary>
    public const int MachineTrack = 0;

    [GeneratedRegex(@" (\d+) B\b")]
    private static partial Regex Bytes();

    // The DMA purpose after the length: "16 B (TX q0 desc 7)" (docs/trace.md).
    [GeneratedRegex(@" \d+ B \(((?:TX|RX|vq)[^)]*)\)")]
    private static partial Regex Purpose();

    /// <summary>Writes the export of <paramref name="lines"/> to <paramref name="output"/>;
    /// returns (events, lines that were not trace lines).</summary>
    public static (int Events, int Skipped) Export(IEnumerable<string> lines, Stream output)
    {
        ArgumentNullException.ThrowIfNull(lines);
        using var w = new Utf8JsonWriter(output, new JsonWriterOptions { Indented = false });
        var tracks = new SortedSet<int>();
        int events = 0, skipped = 0;
        w.WriteStartObject();
        w.WriteString("displayTimeUnit", "ns");
        w.WriteStartArray("traceEvents");
        foreach (var line in lines)
        {
            if (line.Length == 0) continue;
            if (!TraceFormat.TryParseLine(line, out long ns, out ushort? rid, out string token, out string body)) { skipped++; continue; }
            int tid = rid is { } r ? r + 1 : MachineTrack;
            tracks.Add(tid);
            var kind = TraceFormat.KindOf(token)!.Value;
            w.WriteStartObject();
            w.WriteString("name", Name(token, body));
            w.WriteString("cat", kind.ToString().ToLowerInvariant());
            w.WriteNumber("ts", ns / 1000.0);
            w.WriteNumber("pid", 1);
            w.WriteNumber("tid", tid);
            double? dur = kind switch
            {
                EventKind.Dma when Bytes().Match(body) is { Success: true } m => Math.Max(0.001, int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) / 2000.0),
                EventKind.Frame when Bytes().Match(body) is { Success: true } m => (int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) + 24) * 0.008,
                _ => null,
            };
            if (dur is { } d)
            {
                w.WriteString("ph", "X");
                w.WriteNumber("dur", d);
            }
            else
            {
                w.WriteString("ph", "i");
                w.WriteString("s", "t");
            }
            w.WriteStartObject("args");
            w.WriteString("line", body);
            w.WriteEndObject();
            w.WriteEndObject();
            events++;
        }
        w.WriteStartObject();
        w.WriteString("name", "process_name");
        w.WriteString("ph", "M");
        w.WriteNumber("pid", 1);
        w.WriteNumber("tid", MachineTrack);
        w.WriteStartObject("args");
        w.WriteString("name", "pcie-emu");
        w.WriteEndObject();
        w.WriteEndObject();
        foreach (int tid in tracks)
        {
            w.WriteStartObject();
            w.WriteString("name", "thread_name");
            w.WriteString("ph", "M");
            w.WriteNumber("pid", 1);
            w.WriteNumber("tid", tid);
            w.WriteStartObject("args");
            w.WriteString("name", tid == MachineTrack ? "machine" : Bdf.Format((ushort)(tid - 1)));
            w.WriteEndObject();
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
        w.Flush();
        return (events, skipped);
    }

    // Short slice names: the token and the start of the body (direction and register / address);
    // a DMA that says what it is for is named by it ("DMA R TX q0 desc 7").
    private static string Name(string token, string body)
    {
        if (token == "DMA" && Purpose().Match(body) is { Success: true } p) return $"DMA {body[0]} {p.Groups[1].Value}";
        string s = $"{token} {body}";
        int cut = s.IndexOf(" = ", StringComparison.Ordinal);
        if (cut < 0) cut = s.IndexOf(" -> ", StringComparison.Ordinal);
        if (cut > 0) s = s[..cut];
        return s.Length > 60 ? s[..60] : s;
    }
}
