namespace PcieEmu.Conformance.Tests;

[CollectionDefinition("virtio-net server")]
public sealed class VirtioNetServerCollection : ICollectionFixture<VirtioNetServer>;

/// <summary>The virtio-net suite (tests/Conformance/virtio-net/cases) against the server built from its machine.json:
/// one test per case, and the <c>pcie-emu conformance --cases DIR</c> entry point.</summary>
[Collection("virtio-net server")]
public sealed class VirtioNetCases(VirtioNetServer server)
{
    public static TheoryData<string> CaseNames()
    {
        var data = new TheoryData<string>();
        foreach (var c in CaseLoader.LoadDirectory(Repo.VirtioCases)) data.Add(c.Name);
        return data;
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public async Task CasePasses(string name)
    {
        var runner = new ConformanceRunner(CaseLoader.LoadDirectory(Repo.VirtioCases)) { TokenFile = server.TokenFile };
        var results = await runner.RunCasesAsync(server.TcpTarget, "*" + name).W();
        var r = Assert.Single(results, x => x.Name == name);
        Assert.True(r.Passed, $"{r.Name} [{r.Spec}]: {r.Reason}");
    }

    [Fact]
    public void TheSuiteCoversIdentityNegotiationStatusQueuesAndFrames()
    {
        var names = CaseLoader.LoadDirectory(Repo.VirtioCases).Select(c => c.Name).ToList();
        Assert.True(names.Count >= 15, $"only {names.Count} cases");
        foreach (var want in new[] { "virtio.identity", "virtio.capabilities", "virtio.features-ok-refused", "virtio.status-and-reset", "virtio.queue-size", "virtio.split-ring-frame" })
            Assert.Contains(names, n => n.StartsWith(want, StringComparison.Ordinal));
        // Every case but the capture/inject ones uses only config, MMIO and memory operations, so the Go, C++ and
        // TypeScript runners (which run that core subset) run them too.
        var core = new HashSet<string>(StringComparer.Ordinal) { "reset", "get_platform", "list_functions", "read_config", "write_config", "read_mmio", "write_mmio", "read_memory", "write_memory" };
        var nonCore = CaseLoader.LoadDirectory(Repo.VirtioCases).Where(c => c.Steps.Any(s => !core.Contains(s["op"]!.GetValue<string>()))).Select(c => c.Name);
        Assert.Equal(["virtio.capture-transmitted-frame", "virtio.inject-received-frame"], nonCore);
    }

    [Fact]
    public async Task TheCliEntryPointRunsADirectoryOfCases()
    {
        using var output = new StringWriter();
        int code = await ConformanceRunner.RunAsync(server.TcpTarget, null, server.TokenFile, Repo.VirtioCases, output, CancellationToken.None).W();
        Assert.True(code == 0, output.ToString());
        Assert.EndsWith($"conformance: {CaseNames().Count} passed, 0 failed{Environment.NewLine}", output.ToString(), StringComparison.Ordinal);

        // The default suite's cases fail on this machine (no 82576): the suites are not interchangeable.
        using var wrong = new StringWriter();
        Assert.Equal(1, await ConformanceRunner.RunAsync(server.TcpTarget, "config.pf0.ids", server.TokenFile, null, wrong, CancellationToken.None).W());
        using var missing = new StringWriter();
        Assert.Equal(2, await ConformanceRunner.RunAsync(server.TcpTarget, null, server.TokenFile, "/nonexistent-cases", missing, CancellationToken.None).W());
        Assert.Contains("does not exist", missing.ToString(), StringComparison.Ordinal);
    }
}
