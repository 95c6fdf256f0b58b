using System.CommandLine;
using PcieEmu.Server.Cli;

namespace PcieEmu.Server;

/// <summary>Entry point of <c>pcie-emu</c>: <c>serve</c>, and the tools that talk to a running server.</summary>
public static class Program
{
    /// <summary>Runs the command line.</summary>
    public static async Task<int> Main(string[] args)
    {
        var root = Commands.Build();
        // The host handles SIGTERM/Ctrl-C itself for `serve`; the tools cancel through their own token.
        return await root.Parse(args).InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null }).ConfigureAwait(false);
    }
}
