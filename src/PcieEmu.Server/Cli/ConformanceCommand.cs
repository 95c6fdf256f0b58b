using System.CommandLine;
using PcieEmu.Conformance;

namespace PcieEmu.Server.Cli;

/// <summary>
/// <c>pcie-emu conformance [--target URL] [--filter NAME] [--cases DIR]</c>: runs the language-neutral
/// conformance cases (tests/Conformance/cases, embedded; or DIR/*.json) against a server and prints a per-case
/// report. Exit status 0 when every selected case passed, 1 when one failed or none matched, 2
/// when the target is bad or unreachable.
/// </summary>
public static class ConformanceCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var filter = new Option<string?>("--filter") { Description = "Run only cases whose name contains this text" };
        var cases = new Option<string?>("--cases")
        {
            Description = "Run the case files in this directory instead of the embedded suite (e.g. tests/Conformance/virtio-net/cases, against a server started with --machine tests/Conformance/virtio-net/machine.json)",
        };
        var cmd = new Command("conformance", "Run the protocol conformance suite against a server") { filter, cases };
        cmd.SetAction((parse, ct) => ConformanceRunner.RunAsync(Commands.ResolveTarget(parse), parse.GetValue(filter), parse.GetValue(Commands.TokenFile),
            parse.GetValue(cases), Console.Out, ct));
        return cmd;
    }
}
