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
    /// Token file for a TCP target (null: $PCIEEMU_TOKEN, else the default token file; see
    /// <see cref="TokenAuth.Resolve"/>). A Unix socket target needs no token.
    /// </summary>
    public string? TokenFile { get; init; }

    /// <summary>
    /// Runs the cases whose name contains <paramref name="filter"/> (null = all; '*' wildcards) against
    /// <paramref name="target"/> (<c>tcp://host:port</c> or <c>unix:///path</c>). <paramref name="onResult"/>
    /// sees each result as it is known. Throws <see cref="FormatException"/> for a bad target.
    /// </summary>
    public async Task<IReadOnlyList<CaseResult>> RunCasesAsync(string target, string? filter, Action<CaseResult>? onResult = null, CancellationToken ct = default)
    {
        var selected = CaseLoader.Select(Cases, filter);
        using var client = PcieEmuClient.Connect(target, tokenFile: TokenFile);
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
    /// The <c>pcie-emu conformance --target URL [--filter NAME] [--token-file PATH]</c> entry point: runs
    /// the embedded cases, writes the report to <paramref name="output"/>. Returns 0 when every selected
    /// case passed, 1 when any failed or none matched, 2 when the target is malformed, does not answer
    /// or refuses the token.
    /// </summary>
    public static Task<int> RunAsync(string target, string? filter, TextWriter output, CancellationToken ct) =>
        RunAsync(target, filter, null, output, ct);

    /// <summary>
    /// <see cref="RunAsync(string, string?, TextWriter, CancellationToken)"/> with the token of
    /// <paramref name="tokenFile"/> (null: $PCIEEMU_TOKEN, else the default token file) on TCP.
    /// </summary>
    public static Task<int> RunAsync(string target, string? filter, string? tokenFile, TextWriter output, CancellationToken ct) =>
        RunAsync(target, filter, tokenFile, null, output, ct);

    /// <summary>
    /// <see cref="RunAsync(string, string?, string?, TextWriter, CancellationToken)"/> with the cases of
    /// <paramref name="casesDirectory"/>/*.json instead of the embedded ones (null: embedded), e.g.
    /// tests/Conformance/virtio-net/cases against a server started with that suite's machine.json.
    /// </summary>
    public static async Task<int> RunAsync(string target, string? filter, string? tokenFile, string? casesDirectory, TextWriter output, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(output);
        IReadOnlyList<CaseResult> results;
        try
        {
            var runner = new ConformanceRunner(casesDirectory is null ? null : CaseLoader.LoadDirectory(casesDirectory)) { TokenFile = tokenFile };
            if (await ReachableAsync(target, tokenFile, runner.RpcTimeout, ct) is { } problem)
            {
                await output.WriteLineAsync($"conformance: {problem}");
                return 2;
            }
            results = await runner.RunCasesAsync(target, filter, r => output.WriteLine(FormatLine(r)), ct);
        }
        catch (FormatException ex)
        {
            await output.WriteLineAsync($"conformance: --target: {ex.Message}");
            return 2;
        }
        catch (IOException ex)
        {
            await output.WriteLineAsync($"conformance: --token-file: {ex.Message}");
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

    /// <summary>Null when the target answers; else why not (unreachable, or the token is missing or wrong).</summary>
    private static async Task<string?> ReachableAsync(string target, string? tokenFile, TimeSpan timeout, CancellationToken ct)
    {
        using var client = PcieEmuClient.Connect(target, tokenFile: tokenFile);
        try
        {
            await client.Platform.GetPlatformAsync(new Protocol.V1.GetPlatformRequest(), deadline: DateTime.UtcNow + timeout, cancellationToken: ct);
            return null;
        }
        catch (Grpc.Core.RpcException ex) when (ex.StatusCode is Grpc.Core.StatusCode.Unavailable or Grpc.Core.StatusCode.DeadlineExceeded)
        {
            return $"no server answered at {target}";
        }
        catch (Grpc.Core.RpcException ex) when (ex.StatusCode is Grpc.Core.StatusCode.Unauthenticated)
        {
            return $"{target}: UNAUTHENTICATED: {TokenAuth.Hint()}";
        }
    }
}
