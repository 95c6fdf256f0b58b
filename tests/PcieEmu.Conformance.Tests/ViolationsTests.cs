using PcieEmu.Client;

namespace PcieEmu.Conformance.Tests;

/// <summary>The driver-conduct checker (on by default in the server) against the conformance
/// cases: a case that behaves as a driver must ends with no violation; a case that probes a misuse
/// on purpose ends with exactly the rules it declares in "violations" (tests/Conformance/README.md).</summary>
[Collection("server")]
public sealed class ConformanceViolations(RealServer server)
{
    [Fact]
    public async Task EveryCaseEndsWithExactlyTheViolationsItDeclares()
    {
        using var client = PcieEmuClient.Connect(server.TcpTarget, tokenFile: server.TokenFile);
        var runner = new ConformanceRunner { TokenFile = server.TokenFile };
        var wrong = new List<string>();
        int normal = 0;
        foreach (var c in CaseLoader.LoadEmbedded())
        {
            await client.ClearViolationsAsync().W();
            var r = Assert.Single(await runner.RunCasesAsync(server.TcpTarget, "*" + c.Name.Replace("*", "", StringComparison.Ordinal)).W(), x => x.Name == c.Name);
            Assert.True(r.Passed, $"{r.Name}: {r.Reason}");
            var got = (await client.GetViolationsAsync().W()).Violations.Select(v => v.Rule.Id).Distinct().Order(StringComparer.Ordinal).ToList();
            var declared = c.Violations.Distinct().Order(StringComparer.Ordinal).ToList();
            if (!got.SequenceEqual(declared)) wrong.Add($"{c.Name}: reported [{string.Join(", ", got)}], declared [{string.Join(", ", declared)}]");
            if (declared.Count == 0) normal++;
        }
        Assert.True(wrong.Count == 0, string.Join("\n", wrong));
        Assert.True(normal >= 179, $"{normal} cases without declared violations");
    }

    /// <summary>A case that touches a VF after VF Enable or a function after its FLR waits the 100 ms
    /// a driver waits ("wait" step, or "wait_ms" in a transact stream) instead of declaring the rule.</summary>
    [Fact]
    public void NoCaseDeclaresATimingRule()
    {
        string[] timing = [PcieEmu.Core.Checker.Rules.VfAccessBefore100Ms.Id, PcieEmu.Core.Checker.Rules.AccessAfterFlrBefore100Ms.Id];
        var bad = CaseLoader.LoadEmbedded().Where(c => c.Violations.Intersect(timing).Any()).Select(c => c.Name).ToList();
        Assert.True(bad.Count == 0, "cases that should wait 100 ms instead: " + string.Join(", ", bad));
    }

    [Fact]
    public void DeclaredViolationsNameRulesOfTheCatalogue()
    {
        foreach (var c in CaseLoader.LoadEmbedded())
            foreach (var id in c.Violations)
                Assert.True(PcieEmu.Core.Checker.Rules.Find(id) != null, $"{c.Name}: unknown rule {id}");
    }
}
