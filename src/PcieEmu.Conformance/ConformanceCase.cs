using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace PcieEmu.Conformance;

/// <summary>One named case: a sequence of steps with expected results and the spec section it checks.</summary>
/// <param name="Name">Unique name, e.g. <c>sriov.enable-with-ari</c>.</param>
/// <param name="Spec">The specification section the case checks.</param>
/// <param name="Description">What the case does (may be empty).</param>
/// <param name="File">The case file it came from.</param>
/// <param name="Steps">The steps, as JSON objects (see tests/Conformance/README.md).</param>
public sealed record ConformanceCase(string Name, string Spec, string Description, string File, IReadOnlyList<JsonObject> Steps)
{
    /// <summary>Driver-conduct rule ids the case breaks on purpose (it probes the hardware's answer to
    /// that misuse, or probes a VF or an FLRed function at once instead of waiting 100 ms); a server's
    /// checker reports exactly these for the case. Empty for a case that behaves as a driver must.</summary>
    public IReadOnlyList<string> Violations { get; init; } = [];
}

/// <summary>The outcome of one case.</summary>
/// <param name="Name">Case name.</param>
/// <param name="Spec">The spec section the case checks.</param>
/// <param name="Passed">Whether every step matched.</param>
/// <param name="Reason">Why it failed (empty when it passed).</param>
/// <param name="Elapsed">How long it took.</param>
public sealed record CaseResult(string Name, string Spec, bool Passed, string Reason, TimeSpan Elapsed);

/// <summary>A case file that is not well formed (the message names the file and case).</summary>
public sealed class CaseFileException(string message) : Exception(message);

/// <summary>Loads case files.</summary>
public static partial class CaseLoader
{
    [GeneratedRegex("^[A-Z][A-Z0-9]*\\.[A-Z0-9_]+$")]
    private static partial Regex RuleId();

    /// <summary>Every step op a case may use.</summary>
    public static readonly IReadOnlySet<string> KnownOps = new HashSet<string>(StringComparer.Ordinal)
    {
        "reset", "get_platform", "list_functions", "read_config", "write_config", "read_mmio", "write_mmio",
        "read_memory", "write_memory", "transact", "subscribe_interrupts", "inject_frame", "capture_frames", "translate_address", "wait",
    };

    /// <summary>The cases embedded in this assembly (a copy of tests/Conformance/cases at build time).</summary>
    public static IReadOnlyList<ConformanceCase> LoadEmbedded()
    {
        var asm = typeof(CaseLoader).Assembly;
        var files = asm.GetManifestResourceNames().Where(n => n.StartsWith("cases/", StringComparison.Ordinal) && n.EndsWith(".json", StringComparison.Ordinal))
            .OrderBy(n => n, StringComparer.Ordinal)
            .Select(n => (n["cases/".Length..], Read(asm, n)));
        return Parse(files);
    }

    /// <summary>The cases in <paramref name="directory"/>/*.json, files in name order.</summary>
    public static IReadOnlyList<ConformanceCase> LoadDirectory(string directory)
    {
        if (!Directory.Exists(directory)) throw new CaseFileException($"case directory '{directory}' does not exist");
        var files = Directory.GetFiles(directory, "*.json").OrderBy(f => Path.GetFileName(f), StringComparer.Ordinal)
            .Select(f => (Path.GetFileName(f), File.ReadAllText(f)));
        return Parse(files);
    }

    /// <summary>Cases whose name contains <paramref name="filter"/> (case-insensitive; '*' is a wildcard).</summary>
    public static IReadOnlyList<ConformanceCase> Select(IReadOnlyList<ConformanceCase> cases, string? filter)
    {
        if (string.IsNullOrEmpty(filter)) return cases;
        if (filter.Contains('*', StringComparison.Ordinal))
        {
            var rx = new System.Text.RegularExpressions.Regex(
                "^" + string.Join(".*", filter.Split('*').Select(System.Text.RegularExpressions.Regex.Escape)) + "$",
                System.Text.RegularExpressions.RegexOptions.IgnoreCase | System.Text.RegularExpressions.RegexOptions.CultureInvariant);
            return [.. cases.Where(c => rx.IsMatch(c.Name))];
        }
        return [.. cases.Where(c => c.Name.Contains(filter, StringComparison.OrdinalIgnoreCase))];
    }

    private static bool IsKnown(JsonObject step) => step["op"] is JsonValue v && v.TryGetValue<string>(out var op) && KnownOps.Contains(op);

    private static string Read(Assembly asm, string name)
    {
        using var s = asm.GetManifestResourceStream(name)!;
        using var r = new StreamReader(s);
        return r.ReadToEnd();
    }

    /// <summary>Parses and checks (file name, JSON text) pairs.</summary>
    public static IReadOnlyList<ConformanceCase> Parse(IEnumerable<(string File, string Json)> files)
    {
        var cases = new List<ConformanceCase>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (file, json) in files)
        {
            JsonNode? doc;
            try { doc = JsonNode.Parse(json); }
            catch (JsonException ex) { throw new CaseFileException($"{file}: not JSON: {ex.Message}"); }
            if (doc is not JsonObject root || root["cases"] is not JsonArray list)
                throw new CaseFileException($"{file}: top level must be an object with a 'cases' list");
            for (int i = 0; i < list.Count; i++)
            {
                string where = $"{file}: cases[{i}]";
                if (list[i] is not JsonObject c) throw new CaseFileException($"{where}: not an object");
                foreach (var key in new[] { "name", "spec", "steps" })
                    if (c[key] is null) throw new CaseFileException($"{where}: missing '{key}'");
                string name = c["name"]!.GetValue<string>();
                if (!names.Add(name)) throw new CaseFileException($"{where}: duplicate case name '{name}'");
                if (c["steps"] is not JsonArray steps || steps.Count == 0) throw new CaseFileException($"{where} ({name}): 'steps' must be a non-empty list");
                var stepList = new List<JsonObject>();
                for (int j = 0; j < steps.Count; j++)
                {
                    if (steps[j] is not JsonObject s || !IsKnown(s))
                        throw new CaseFileException($"{where} ({name}): steps[{j}]: unknown op {steps[j]?["op"]?.ToJsonString() ?? "(none)"}");
                    if (s["while"] is JsonArray inner && inner.FirstOrDefault(x => x is not JsonObject o || !IsKnown(o)) is { } bad)
                        throw new CaseFileException($"{where} ({name}): steps[{j}].while: unknown op {bad?["op"]?.ToJsonString() ?? "(none)"}");
                    stepList.Add(s);
                }
                var violations = new List<string>();
                if (c["violations"] is { } vs)
                {
                    if (vs is not JsonArray va || va.Any(x => x is not JsonValue v || !v.TryGetValue<string>(out var id) || !RuleId().IsMatch(id)))
                        throw new CaseFileException($"{where} ({name}): 'violations' must be a list of rule ids such as \"SRIOV.VF_ACCESS_BEFORE_100MS\"");
                    violations.AddRange(va.Select(x => x!.GetValue<string>()));
                }
                cases.Add(new ConformanceCase(name, c["spec"]!.GetValue<string>(), c["description"]?.GetValue<string>() ?? "", file, stepList) { Violations = violations });
            }
        }
        if (cases.Count == 0) throw new CaseFileException("no cases found");
        return cases;
    }
}
