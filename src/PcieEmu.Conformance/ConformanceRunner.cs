using PcieEmu.Client;

namespace PcieEmu.Conformance;

/// <summary>
/// Runs the PcieEmu conformance cases (tests/Conformance/cases/*.json, embedded in this assembly)
/// against a server of the pcieemu.v1 protocol. Each case starts with ResetPlatform. The report has
/// one line per case, <c>PASS name</c> or <c>FAIL name [spec]: reason</c>, then a summary line.
/// </summary>
public sealed class ConformanceRunner
{
    /// <summary>A runner over <paramref name="cases"/> (null = the embedded cases).</summary>
    public ConformanceRunner(IReadOnlyList<ConformanceCase>? cases = null) => Cases = cases ?? CaseLoader.LoadEmbedded();

    /// <summary>The cases this runner knows.</summary>
    public IReadOnlyList<ConformanceCase> Cases { get; }

    /// <summary>Timeout of each RPC and stream (default 10 s).</summary>
    public TimeSpan RpcTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Runs the cases whose name contains <paramref name="filter"/> (null = all; '*' wildcards) against
    /// <paramref name="target"/> (<c>tcp://host:port</c> or <c>unix:///path</c>). <paramref name="onResult"/>
    /// sees each result as it is known. Throws <see cref="FormatException"/> for a bad target.
    /// </summary>
    public async Task<IReadOnlyList<CaseResult>> RunCasesAsync(string target, string? filter, Action<CaseResult>? onResult = null, CancellationToken ct = default)
    {
        var selected = CaseLoader.Select(Cases, filter);
        using var client = PcieEmuClient.Connect(target);
        var executor = new CaseExecutor(client, RpcTimeout);
        var results = new List<CaseResult>(selected.Count);
        foreach (var c in selected)
        {
            ct.ThrowIfCancellationRequested();
            var r = await executor.RunAsync(c, ct);
            results.Add(r);
            onResult?.Invoke(r);
        }
        return results;
    }

    /// <summary>Formats one report line.</summary>
    public static string FormatLine(CaseResult r) => r.Passed ? $"PASS {r.Name}" : $"FAIL {r.Name} [{r.Spec}]: {r.Reason}";

    /// <summary>
    /// The <c>pcie-emu conformance --target URL [--filter NAME]</c> entry point: runs the embedded cases,
    /// writes the report to <paramref name="output"/>. Returns 0 when every selected case passed, 1 when
    /// any failed or none matched, 2 when the target is malformed or does not answer.
    /// </summary>
    public static async Task<int> RunAsync(string target, string? filter, TextWriter output, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(output);
        IReadOnlyList<CaseResult> results;
        try
        {
            var runner = new ConformanceRunner();
            if (!await ReachableAsync(target, runner.RpcTimeout, ct))
            {
                await output.WriteLineAsync($"conformance: no server answered at {target}");
                return 2;
            }
            results = await runner.RunCasesAsync(target, filter, r => output.WriteLine(FormatLine(r)), ct);
        }
        catch (FormatException ex)
        {
            await output.WriteLineAsync($"conformance: --target: {ex.Message}");
            return 2;
        }
        catch (CaseFileException ex)
        {
            await output.WriteLineAsync($"conformance: {ex.Message}");
            return 2;
        }
        if (results.Count == 0)
        {
            await output.WriteLineAsync($"conformance: no case matches '{filter}'");
            return 1;
        }
        int passed = results.Count(r => r.Passed);
        await output.WriteLineAsync($"conformance: {passed} passed, {results.Count - passed} failed");
        return passed == results.Count ? 0 : 1;
    }

    private static async Task<bool> ReachableAsync(string target, TimeSpan timeout, CancellationToken ct)
    {
        using var client = PcieEmuClient.Connect(target);
        try
        {
            await client.Platform.GetPlatformAsync(new Protocol.V1.GetPlatformRequest(), deadline: DateTime.UtcNow + timeout, cancellationToken: ct);
            return true;
        }
        catch (Grpc.Core.RpcException ex) when (ex.StatusCode is Grpc.Core.StatusCode.Unavailable or Grpc.Core.StatusCode.DeadlineExceeded)
        {
            return false;
        }
    }
}
