using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace PcieEmu.Server.Web;

/// <summary>The web view's JSON: camelCase; unsigned 64-bit values (addresses) as "0x..." strings (a JavaScript number loses bits above 2^53); counts and sequence numbers are signed.</summary>
internal static class WebJson
{
    public static readonly JsonSerializerOptions Options = new(JsonSerializerDefaults.Web)
    {
        Converters = { new HexUInt64Converter(), new JsonStringEnumConverter() },
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        // Served as application/json and text/event-stream, never inlined into HTML: quotes stay readable in messages.
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public static string Serialize<T>(T value) => JsonSerializer.Serialize(value, Options);

    private sealed class HexUInt64Converter : JsonConverter<ulong>
    {
        public override ulong Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
        {
            string s = reader.GetString() ?? throw new JsonException("expected a hex string");
            return ulong.Parse(s.StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? s[2..] : s, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        }

        public override void Write(Utf8JsonWriter writer, ulong value, JsonSerializerOptions options) =>
            writer.WriteStringValue("0x" + value.ToString("X", CultureInfo.InvariantCulture));
    }
}

/// <summary>A driver-conduct violation as the page shows it.</summary>
internal sealed record WebViolation(long Sequence, string Rule, string Severity, string Spec, string Text, string Hint, string Bdf,
    long TimestampNs, string Event, string Outcome);

/// <summary>Counters of one function.</summary>
internal sealed record WebCounters(string Bdf, long Frames, long FrameBytes, long Interrupts, long DmaBytes, long Faults);

/// <summary>One trace line (the trace's own text) with its parts for filtering.</summary>
internal sealed record WebTraceLine(long Sequence, string Kind, string? Bdf, string Line);

/// <summary>The trace tail: lines that pass the filter, and how many events were seen and lost.</summary>
internal sealed record WebTrace(IReadOnlyList<WebTraceLine> Lines, long Seen, long Missed);

/// <summary>The violations: null list when the checker is off.</summary>
internal sealed record WebViolations(bool CheckerOn, IReadOnlyList<WebViolation> Violations);
