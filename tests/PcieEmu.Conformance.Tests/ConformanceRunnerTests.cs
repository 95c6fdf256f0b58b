using System.Text.Json.Nodes;

namespace PcieEmu.Conformance.Tests;

[CollectionDefinition("server")]
public sealed class ServerCollection : ICollectionFixture<RealServer>;

/// <summary>Every case of the suite against the real server: one test per case.</summary>
[Collection("server")]
public sealed class CasesAgainstPcieEmu(RealServer server)
{
    private ConformanceRunner Runner => new() { TokenFile = server.TokenFile };

    public static TheoryData<string> CaseNames()
    {
        var data = new TheoryData<string>();
        foreach (var c in CaseLoader.LoadEmbedded()) data.Add(c.Name);
        return data;
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public async Task CasePasses(string name)
    {
        var results = await Runner.RunCasesAsync(server.TcpTarget, "*" + name.Replace("*", "", StringComparison.Ordinal)).W();
        var r = Assert.Single(results, x => x.Name == name);
        Assert.True(r.Passed, $"{r.Name} [{r.Spec}]: {r.Reason}");
    }
}

[Collection("server")]
public sealed class RunnerBehaviour(RealServer server)
{
    private static string RepoCasesDir()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "PcieEmu.sln"))) return Path.Combine(d.FullName, "tests", "Conformance", "cases");
        throw new InvalidOperationException("repository root not found");
    }

    [Fact]
    public void EmbeddedCasesAreTheRepositoryCases()
    {
        var embedded = CaseLoader.LoadEmbedded();
        var onDisk = CaseLoader.LoadDirectory(RepoCasesDir());
        Assert.Equal(onDisk.Select(c => c.Name), embedded.Select(c => c.Name));
        Assert.True(embedded.Count >= 80, $"only {embedded.Count} cases");
        Assert.All(embedded, c => Assert.False(string.IsNullOrWhiteSpace(c.Spec)));
    }

    [Fact]
    public void EveryRpcIsCoveredIncludingMalformedRequests()
    {
        var cases = CaseLoader.LoadEmbedded();
        var ops = cases.SelectMany(c => c.Steps).Select(s => s["op"]!.GetValue<string>()).ToHashSet();
        Assert.Subset(ops, CaseLoader.KnownOps.ToHashSet());
        var errored = cases.SelectMany(c => c.Steps).Where(s => s["expect"]?["error"] != null).Select(s => s["op"]!.GetValue<string>()).ToHashSet();
        foreach (var op in new[] { "read_config", "write_config", "read_mmio", "write_mmio", "read_memory", "write_memory", "transact", "subscribe_interrupts", "inject_frame", "capture_frames", "translate_address" })
            Assert.Contains(op, errored);
    }

    [Theory]
    [InlineData("""{"cases": [{"name": "a", "spec": "s"}]}""", "missing 'steps'")]
    [InlineData("""{"cases": [{"name": "a", "spec": "s", "steps": [{"op": "frobnicate"}]}]}""", "unknown op")]
    [InlineData("""{"cases": [{"name": "a", "spec": "s", "steps": [{"op": "reset"}]}, {"name": "a", "spec": "s", "steps": [{"op": "reset"}]}]}""", "duplicate")]
    [InlineData("""{"x": 1}""", "'cases' list")]
    [InlineData("""{"cases": [""", "not JSON")]
    [InlineData("""{"cases": [{"name": "a", "spec": "s", "steps": [{"op": "subscribe_interrupts", "while": [{"op": "nope"}]}]}]}""", "while")]
    public void MalformedCaseFilesAreRejected(string json, string message)
    {
        var ex = Assert.Throws<CaseFileException>(() => CaseLoader.Parse([("bad.json", json)]));
        Assert.Contains(message, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void FilterBySubstringAndWildcard()
    {
        var cases = CaseLoader.LoadEmbedded();
        Assert.Equal(["sriov.enable-without-ari", "sriov.enable-with-ari"], CaseLoader.Select(cases, "SRIOV.ENABLE").Select(c => c.Name));
        Assert.All(CaseLoader.Select(cases, "error.*"), c => Assert.StartsWith("error.", c.Name, StringComparison.Ordinal));
        Assert.Same(cases, CaseLoader.Select(cases, null));
    }

    private static ConformanceRunner Inline(string stepsJson) =>
        new(CaseLoader.Parse([("inline.json", $$"""{"cases": [{"name": "negative", "spec": "test", "steps": {{stepsJson}} }]}""")]));

    [Theory]
    [InlineData("""[{"op": "read_config", "rid": "01:00.0", "offset": 0, "width": 4, "expect": {"value": "0x12345678"}}]""", "value 0x10c98086, expected 0x12345678")]
    [InlineData("""[{"op": "read_config", "rid": "01:00.2", "offset": 0, "width": 4}]""", "status UNSUPPORTED_REQUEST, expected SUCCESSFUL")]
    [InlineData("""[{"op": "read_config", "rid": "01:00.0", "offset": 0, "width": 4, "expect": {"error": {"code": "INVALID_ARGUMENT"}}}]""", "expected gRPC error INVALID_ARGUMENT")]
    [InlineData("""[{"op": "read_config", "rid": "01:00.0", "offset": 0, "width": 3, "expect": {"error": {"code": "OUT_OF_RANGE"}}}]""", "expected OUT_OF_RANGE")]
    [InlineData("""[{"op": "read_config", "rid": "01:00.0", "offset": 0, "width": 3, "expect": {"error": {"code": "INVALID_ARGUMENT", "message_contains": "offset"}}}]""", "does not name 'offset'")]
    [InlineData("""[{"op": "list_functions", "expect": {"rids": ["00:00.0"]}}]""", "expected 00:00.0")]
    [InlineData("""[{"op": "transact", "requests": [{"tag": 1, "config_write": {"rid": "01:00.0", "offset": "0x3c", "width": 1, "value": 1}}], "expect": {"completions": [{"tag": 1}]}}]""", "0 completion(s)")]
    [InlineData("""[{"op": "get_platform", "expect": {"fields": {"iommu_base": "0x1"}}}]""", "iommu_base")]
    [InlineData("""[{"op": "read_memory", "address": 0, "length": 2, "expect": {"data": "0102"}}]""", "data 0000, expected 0102")]
    [InlineData("""[{"op": "read_config", "rid": "$nothing", "offset": 0, "width": 4}]""", "bad case data")]
    [InlineData("""[{"op": "wait", "ms": 0}]""", "bad case data: 'ms' must be 1..10000, got 0")]
    [InlineData("""[{"op": "wait"}]""", "bad case data: missing 'ms'")]
    [InlineData("""[{"op": "transact", "requests": [{"wait_ms": 20000}]}]""", "bad case data: 'wait_ms' must be 1..10000, got 20000")]
    public async Task WrongExpectationsFailWithAReason(string steps, string reason)
    {
        var r = Assert.Single(await Inline(steps).WithToken(server).RunCasesAsync(server.TcpTarget, null).W());
        Assert.False(r.Passed);
        Assert.Contains(reason, r.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task InterruptExpectationsAreChecked()
    {
        var fire = (JsonObject)CaseLoader.LoadEmbedded().Single(c => c.Name == "interrupts.msix-message-delivered").Steps[0].DeepClone();
        fire["expect"]!["events"]![0]!["data"] = "0x99";
        var runner = new ConformanceRunner(CaseLoader.Parse([("i.json", new JsonObject { ["cases"] = new JsonArray(
            new JsonObject { ["name"] = "negative", ["spec"] = "test", ["steps"] = new JsonArray(fire) }) }.ToJsonString())]));
        var r = Assert.Single(await runner.WithToken(server).RunCasesAsync(server.TcpTarget, null).W());
        Assert.False(r.Passed);
        Assert.Contains("event 0.data: 0x41, expected 0x99", r.Reason, StringComparison.Ordinal);

        var silent = (JsonObject)fire.DeepClone();
        ((JsonArray)silent["while"]!).RemoveAt(((JsonArray)silent["while"]!).Count - 1); // never writes EICS
        runner = new ConformanceRunner(CaseLoader.Parse([("i.json", new JsonObject { ["cases"] = new JsonArray(
            new JsonObject { ["name"] = "negative", ["spec"] = "test", ["steps"] = new JsonArray(silent) }) }.ToJsonString())])) { RpcTimeout = TimeSpan.FromSeconds(2) };
        r = Assert.Single(await runner.WithToken(server).RunCasesAsync(server.TcpTarget, null).W());
        Assert.False(r.Passed);
        Assert.Contains("none arrived", r.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task FrameExpectationsAreChecked()
    {
        var steps = new JsonArray([.. CaseLoader.LoadEmbedded().Single(c => c.Name == "ethernet.capture-sees-frame-from-vf").Steps.Select(x => x.DeepClone())]);
        int at = steps.Select((x, i) => (x, i)).First(p => p.x!["op"]!.GetValue<string>() == "capture_frames").i;
        static ConformanceRunner Runner(JsonArray st, TimeSpan? timeout = null)
        {
            var cases = CaseLoader.Parse([("f.json", new JsonObject { ["cases"] = new JsonArray(
                new JsonObject { ["name"] = "negative", ["spec"] = "test", ["steps"] = st.DeepClone() }) }.ToJsonString())]);
            return timeout is { } t ? new ConformanceRunner(cases) { RpcTimeout = t } : new ConformanceRunner(cases);
        }

        var wrong = (JsonArray)steps.DeepClone();
        wrong[at]!["expect"]!["frames"]![0]!["data"] = "ffffffffffff";
        var r = Assert.Single(await Runner(wrong).WithToken(server).RunCasesAsync(server.TcpTarget, null).W());
        Assert.False(r.Passed);
        Assert.Contains($"step {at + 1} (capture_frames): frame 0: data ", r.Reason, StringComparison.Ordinal);
        Assert.Contains("expected ffffffffffff", r.Reason, StringComparison.Ordinal);

        var silent = (JsonArray)steps.DeepClone();
        silent[at]!["while"] = new JsonArray(); // TDT never written: no frame may be invented
        r = Assert.Single(await Runner(silent, TimeSpan.FromSeconds(2)).WithToken(server).RunCasesAsync(server.TcpTarget, null).W());
        Assert.False(r.Passed);
        Assert.Contains("frame 0: none arrived", r.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task RunAsyncWritesOneLinePerCaseAndASummary()
    {
        var output = new StringWriter();
        int rc = await ConformanceRunner.RunAsync(server.TcpTarget, "sriov.enable", server.TokenFile, output, CancellationToken.None).W();
        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal(0, rc);
        Assert.Equal(["PASS sriov.enable-without-ari", "PASS sriov.enable-with-ari", "conformance: 2 passed, 0 failed"], lines);
    }

    [Fact]
    public async Task RunsOverTheUnixSocket()
    {
        var output = new StringWriter();
        Assert.Equal(0, await ConformanceRunner.RunAsync(server.UnixTarget, "session.read-sees", output, CancellationToken.None).W());
        Assert.Contains("PASS session.read-sees-posted-config-write", output.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ExitCodes()
    {
        var output = new StringWriter();
        Assert.Equal(1, await ConformanceRunner.RunAsync(server.TcpTarget, "no-such-case", server.TokenFile, output, CancellationToken.None).W());
        Assert.Contains("no case matches", output.ToString(), StringComparison.Ordinal);
        Assert.Equal(2, await ConformanceRunner.RunAsync("ftp://nowhere", null, output, CancellationToken.None).W());
        Assert.Contains("--target", output.ToString(), StringComparison.Ordinal);
        var closed = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        closed.Start();
        int port = ((System.Net.IPEndPoint)closed.LocalEndpoint).Port;
        closed.Stop();
        Assert.Equal(2, await ConformanceRunner.RunAsync($"tcp://127.0.0.1:{port}", null, output, CancellationToken.None).W());
        Assert.Contains("no server answered", output.ToString(), StringComparison.Ordinal);
        string wrongToken = Path.Combine(Path.GetDirectoryName(server.TokenFile)!, "wrong-token");
        await File.WriteAllTextAsync(wrongToken, new string('0', 64));
        Assert.Equal(2, await ConformanceRunner.RunAsync(server.TcpTarget, null, wrongToken, output, CancellationToken.None).W());
        Assert.Contains("UNAUTHENTICATED", output.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task AFailingCaseMakesTheExitCodeNonZero()
    {
        var runner = Inline("""[{"op": "read_config", "rid": "00:00.0", "offset": 0, "width": 2, "expect": {"value": "0x1"}}]""");
        var results = await runner.WithToken(server).RunCasesAsync(server.TcpTarget, null).W();
        Assert.Equal("FAIL negative [test]: step 1 (read_config): config read 00:00.0 +0x0/2: value 0x8086, expected 0x1; raw 0x8086",
            ConformanceRunner.FormatLine(Assert.Single(results)));
    }

    private static readonly string[] OrderingCases =
    [
        "session.read-sees-posted-config-write", "session.read-sees-many-posted-writes", "session.reads-between-writes",
        "session.sriov-enable-in-stream", "session.mmio-read-sees-posted-mmio-write", "session.memory-ops-ordered",
        "session.bar-write-then-mmio-read", "session.batch-executes-in-order", "session.ordering-across-messages-and-batches",
    ];

    [Fact]
    public async Task SuiteCatchesAServerThatDropsPostedWriteOrdering()
    {
        await using var fake = await BrokenFakeServer.StartAsync(server.TcpTarget, server.TokenFile).W();
        var results = (await new ConformanceRunner().RunCasesAsync(fake.Target, "session.").W()).ToDictionary(r => r.Name);
        foreach (var name in OrderingCases)
            Assert.False(results[name].Passed, $"{name} passed against a server without posted-write ordering");
        Assert.Contains("value 0xb, expected 0x5a", results["session.read-sees-posted-config-write"].Reason, StringComparison.Ordinal);
        // The fake is otherwise faithful, so the failures are about ordering and nothing else.
        foreach (var name in new[] { "session.tags-echoed-in-order", "session.posted-writes-no-completion", "session.acked-writes-complete", "session.invalid-width-ends-stream" })
            Assert.True(results[name].Passed, $"{name}: {results[name].Reason}");

        var output = new StringWriter();
        Assert.Equal(1, await ConformanceRunner.RunAsync(fake.Target, "session.read-sees-posted", output, CancellationToken.None).W());
        Assert.StartsWith("FAIL session.read-sees-posted-config-write [", output.ToString(), StringComparison.Ordinal);
    }
}
