using System.Text.Json;
using Json.Schema;
using PcieEmu.Core.Platform;

namespace PcieEmu.Core.Tests.Platform;

/// <summary>docs/machine.schema.json (the schema editors use) accepts the embedded default and every example in
/// docs/machines/, which PcieEmu also builds; it refuses what PcieEmu refuses by shape.</summary>
public class MachineSchemaTests
{
    private static readonly string Docs = Path.Combine(AppContext.BaseDirectory, "Docs");
    private static readonly Lazy<JsonSchema> Schema = new(() => JsonSchema.FromText(File.ReadAllText(Path.Combine(Docs, "machine.schema.json"))));

    private static EvaluationResults Evaluate(string json)
    {
        using var doc = JsonDocument.Parse(json);
        return Schema.Value.Evaluate(doc.RootElement, new EvaluationOptions { OutputFormat = OutputFormat.List });
    }

    private static string Errors(EvaluationResults r) =>
        string.Join("; ", (r.Details ?? []).Where(d => d.Errors != null).SelectMany(d => d.Errors!.Select(e => $"{d.InstanceLocation}: {e.Value}")));

    public static TheoryData<string> Examples()
    {
        var data = new TheoryData<string>();
        foreach (var f in Directory.GetFiles(Path.Combine(Docs, "machines"), "*.json").Order(StringComparer.Ordinal)) data.Add(Path.GetFileName(f));
        return data;
    }

    [Fact]
    public void TheSchemaAcceptsTheEmbeddedDefault()
    {
        var r = Evaluate(MachineDescription.DefaultJson);
        Assert.True(r.IsValid, Errors(r));
    }

    [Theory]
    [MemberData(nameof(Examples))]
    public void TheSchemaAcceptsEveryExampleAndPcieEmuBuildsIt(string file)
    {
        string json = File.ReadAllText(Path.Combine(Docs, "machines", file));
        var r = Evaluate(json);
        Assert.True(r.IsValid, Errors(r));
        using var m = TestMachine.Create(new MachineOptions { Description = MachineDescription.Parse(json) });
        Assert.NotEmpty(m.Devices);
    }

    [Fact]
    public void ThereAreExamples() => Assert.True(Examples().Count >= 2);

    [Theory]
    [InlineData("""{ "rootPorts": [] }""")]
    [InlineData("""{ "rootports": [ { } ] }""")]
    [InlineData("""{ "rootPorts": [ { "slot": 0 } ] }""")]
    [InlineData("""{ "rootPorts": [ { "bus": 3 } ] }""")]
    [InlineData("""{ "rootPorts": [ { "device": { "type": "intel-82576" }, "switch": { "downstreamPorts": [ { } ] } } ] }""")]
    [InlineData("""{ "rootPorts": [ { "device": { "type": "intel-82576", "totlaVfs": 4 } } ] }""")]
    [InlineData("""{ "rootPorts": [ { "device": { "type": "intel-82576", "totalVfs": 0 } } ] }""")]
    [InlineData("""{ "rootPorts": [ { "device": { "type": "intel-82576", "mac": "01:00:00:00:00:01" } } ] }""")]
    [InlineData("""{ "rootPorts": [ { "device": { "totalVfs": 4 } } ] }""")]
    [InlineData("""{ "rootPorts": [ { "device": { "type": "virtio-net", "queuePairs": 0 } } ] }""")]
    [InlineData("""{ "rootPorts": [ { "device": { "type": "virtio-net", "portNumber": 2 } } ] }""")]
    [InlineData("""{ "rootPorts": [ { "device": { "type": "virtio-net", "segment": "bad name" } } ] }""")]
    [InlineData("""{ "rootPorts": [ { "device": { "type": "intel-82576", "segment": [3] } } ] }""")]
    [InlineData("""{ "rootPorts": [ { "switch": { "downstreamPorts": [] } } ] }""")]
    public void TheSchemaRefusesWhatPcieEmuRefusesByShape(string json)
    {
        Assert.False(Evaluate(json).IsValid);
        Assert.Throws<MachineDescriptionException>(() => MachineDescription.Parse(json));
    }
}
