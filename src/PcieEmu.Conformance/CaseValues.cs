using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Grpc.Core;
using PcieEmu.Protocol.V1;

namespace PcieEmu.Conformance;

/// <summary>A step did not match its expectation (the message is the reason printed in the report).</summary>
internal sealed class CaseFailure(string message) : Exception(message);

/// <summary>Case values: numbers, "0x..", decimal strings, "BB:DD.F", "$var", and sums of those.</summary>
internal static partial class CaseValues
{
    [GeneratedRegex(@"^[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")]
    private static partial Regex BdfPattern();

    /// <summary>The proto enum CompletionStatus (for its value names).</summary>
    public static readonly Google.Protobuf.Reflection.EnumDescriptor StatusEnum =
        CommonReflection.Descriptor.FindTypeByName<Google.Protobuf.Reflection.EnumDescriptor>("CompletionStatus");

    /// <summary>The proto enum TransactionKind.</summary>
    public static readonly Google.Protobuf.Reflection.EnumDescriptor KindEnum =
        SessionReflection.Descriptor.FindTypeByName<Google.Protobuf.Reflection.EnumDescriptor>("TransactionKind");

    public static ulong Evaluate(JsonNode? node, IReadOnlyDictionary<string, ulong> env)
    {
        if (node is not JsonValue v) throw new CaseFileException($"expected a number, got {node?.ToJsonString() ?? "nothing"}");
        switch (v.GetValueKind())
        {
            case JsonValueKind.True: return 1;
            case JsonValueKind.False: return 0;
            case JsonValueKind.Number:
                if (v.TryGetValue<ulong>(out var u)) return u;
                if (v.TryGetValue<long>(out var l) && l >= 0) return (ulong)l;
                throw new CaseFileException($"{v.ToJsonString()} is not a non-negative integer");
            case JsonValueKind.String: return Evaluate(v.GetValue<string>(), env);
            default: throw new CaseFileException($"expected a number, got {v.ToJsonString()}");
        }
    }

    public static ulong Evaluate(string text, IReadOnlyDictionary<string, ulong> env)
    {
        ulong total = 0;
        foreach (var raw in text.Replace(" ", "", StringComparison.Ordinal).Split('+'))
        {
            string term = raw;
            if (term.StartsWith('$'))
            {
                if (!env.TryGetValue(term[1..], out var val)) throw new CaseFileException($"variable {term} is not set by an earlier step");
                total += val;
            }
            else if (BdfPattern().IsMatch(term))
            {
                uint bus = uint.Parse(term[..2], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                uint dev = uint.Parse(term[3..5], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                uint fn = (uint)(term[6] - '0');
                if (dev > 31) throw new CaseFileException($"'{term}': device must be 00-1f");
                total += bus << 8 | dev << 3 | fn;
            }
            else if (term.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
                     && ulong.TryParse(term[2..], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var hex))
                total += hex;
            else if (ulong.TryParse(term, NumberStyles.None, CultureInfo.InvariantCulture, out var dec))
                total += dec;
            else throw new CaseFileException($"cannot read '{term}' as a number");
        }
        return total;
    }

    /// <summary>Bytes from hex text or {"fill": byte, "length": n}.</summary>
    public static byte[] Data(JsonNode? node, IReadOnlyDictionary<string, ulong> env)
    {
        if (node is null) return [];
        if (node is JsonObject o)
        {
            var b = new byte[(int)Evaluate(o["length"], env)];
            Array.Fill(b, (byte)(o["fill"] is null ? 0 : Evaluate(o["fill"], env)));
            return b;
        }
        string hex = node.GetValue<string>().Replace(" ", "", StringComparison.Ordinal);
        try { return Convert.FromHexString(hex); }
        catch (FormatException) { throw new CaseFileException($"'{hex}' is not hex data"); }
    }

    public static string Hex(ulong v) => "0x" + v.ToString("x", CultureInfo.InvariantCulture);

    public static string Bdf(ulong rid) =>
        rid > 0xFFFF ? Hex(rid) : $"{rid >> 8:x2}:{(rid >> 3) & 0x1F:x2}.{rid & 7}";

    /// <summary>"SUCCESSFUL" or "COMPLETION_STATUS_SUCCESSFUL" to the enum.</summary>
    public static CompletionStatus Status(string name)
    {
        string full = name.StartsWith("COMPLETION_STATUS_", StringComparison.Ordinal) ? name : "COMPLETION_STATUS_" + name;
        var field = StatusEnum.FindValueByName(full) ?? throw new CaseFileException($"unknown completion status '{name}'");
        return (CompletionStatus)field.Number;
    }

    public static string StatusName(CompletionStatus s) =>
        StatusEnum.FindValueByNumber((int)s)?.Name.Replace("COMPLETION_STATUS_", "", StringComparison.Ordinal) ?? $"UNKNOWN({(int)s})";

    /// <summary>StatusCode.InvalidArgument -> "INVALID_ARGUMENT" (the gRPC canonical name).</summary>
    public static string CodeName(StatusCode code) => code switch
    {
        StatusCode.OK => "OK",
        _ => string.Concat(code.ToString().Select((ch, i) => i > 0 && char.IsUpper(ch) ? "_" + ch : char.ToUpperInvariant(ch).ToString())),
    };

    public static void CheckStatus(string what, CompletionStatus actual, JsonObject expect)
    {
        string want = expect["status"]?.GetValue<string>() ?? "SUCCESSFUL";
        if (actual != Status(want)) throw new CaseFailure($"{what}: status {StatusName(actual)}, expected {want}");
    }

    public static void CheckValue(string what, ulong actual, JsonObject expect, IReadOnlyDictionary<string, ulong> env)
    {
        if (expect["value"] is null) return;
        ulong mask = expect["mask"] is null ? ulong.MaxValue : Evaluate(expect["mask"], env);
        ulong want = Evaluate(expect["value"], env);
        if ((actual & mask) != (want & mask))
            throw new CaseFailure($"{what}: value {Hex(actual & mask)}, expected {Hex(want & mask)}{(expect["mask"] is null ? "" : $" (mask {Hex(mask)})")}; raw {Hex(actual)}");
    }

    /// <summary>Checks an expected gRPC error; returns true when the step expected one.</summary>
    public static bool CheckError(string what, RpcException? error, JsonObject expect)
    {
        if (expect["error"] is not JsonObject want)
        {
            if (error != null) throw new CaseFailure($"{what}: unexpected gRPC error {CodeName(error.StatusCode)}: {error.Status.Detail}");
            return false;
        }
        string code = want["code"]!.GetValue<string>();
        if (error == null) throw new CaseFailure($"{what}: expected gRPC error {code}, the call succeeded");
        if (CodeName(error.StatusCode) != code)
            throw new CaseFailure($"{what}: gRPC error {CodeName(error.StatusCode)} ({error.Status.Detail}), expected {code}");
        if (want["message_contains"]?.GetValue<string>() is { } needle && !error.Status.Detail.Contains(needle, StringComparison.OrdinalIgnoreCase))
            throw new CaseFailure($"{what}: error message '{error.Status.Detail}' does not name '{needle}'");
        return true;
    }

    /// <summary>Compares a protobuf field value (uint, ulong, bool, string, enum) with a case value.</summary>
    public static void CompareField(string path, object? actual, JsonNode? want, IReadOnlyDictionary<string, ulong> env)
    {
        switch (actual)
        {
            case bool b:
                bool wb = want is JsonValue jv && jv.GetValueKind() is JsonValueKind.True or JsonValueKind.False ? jv.GetValue<bool>() : Evaluate(want, env) != 0;
                if (b != wb) throw new CaseFailure($"{path}: {b.ToString().ToLowerInvariant()}, expected {wb.ToString().ToLowerInvariant()}");
                break;
            case string s:
                string ws = want!.GetValue<string>();
                if (s != ws) throw new CaseFailure($"{path}: '{s}', expected '{ws}'");
                break;
            case uint or ulong or int or long or Enum:
                ulong a = Convert.ToUInt64(actual, CultureInfo.InvariantCulture), w = Evaluate(want, env);
                if (a != w) throw new CaseFailure($"{path}: {Hex(a)}, expected {Hex(w)}");
                break;
            default:
                throw new CaseFailure($"{path}: cannot compare a {actual?.GetType().Name ?? "null"}");
        }
    }
}
