using System.CommandLine;
using System.Globalization;
using PcieEmu.Client;
using PcieEmu.Server.Hosting;

namespace PcieEmu.Server.Cli;

/// <summary>The command tree: serve, lspci, setpci, bench, conformance, trace, check, capture, iomodels.</summary>
public static class Commands
{
    /// <summary>Global option of the tools: the server to talk to.</summary>
    public static readonly Option<string?> Target = new("--target")
    {
        Description = "Server to talk to: unix:///path or tcp://host:port (default: $PCIEEMU_TARGET, the default Unix socket if present, else tcp://127.0.0.1:50551)",
        Recursive = true,
    };

    /// <summary>
    /// Global option: the TCP token file. <c>serve</c> writes its token there; the tools read it
    /// (before $PCIEEMU_TOKEN and the default file). Never give the token itself on a command line.
    /// </summary>
    public static readonly Option<string?> TokenFile = new("--token-file")
    {
        Description = "TCP token file: serve writes its per-start token there, the tools read it (default: $PCIEEMU_TOKEN for the tools, else 'token' in the runtime directory beside the default socket)",
        Recursive = true,
    };

    /// <summary>Builds the root command.</summary>
    public static RootCommand Build()
    {
        var root = new RootCommand("PcieEmu: a byte-level PCIe machine emulator (root ports, switches and SR-IOV devices from a machine description) with a gRPC wire protocol");
        root.Options.Add(Target);
        root.Options.Add(TokenFile);
        root.Subcommands.Add(Serve());
        root.Subcommands.Add(LspciCommand.Create());
        root.Subcommands.Add(SetpciCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        root.Subcommands.Add(BenchVfioUserCommand.Create());
        root.Subcommands.Add(ConformanceCommand.Create());
        root.Subcommands.Add(TraceCommand.Create());
        root.Subcommands.Add(CheckCommand.Create());
        root.Subcommands.Add(CaptureCommand.Create());
        root.Subcommands.Add(IoModelsCommand.Create());
        return root;
    }

    /// <summary>The target the tools use.</summary>
    public static string ResolveTarget(ParseResult parse) => parse.GetValue(Target) ?? Endpoints.DefaultTarget();

    /// <summary>Connects the tools to their target with the token from --token-file, $PCIEEMU_TOKEN or the default token file (TCP only).</summary>
    public static PcieEmuClient Connect(ParseResult parse) => PcieEmuClient.Connect(ResolveTarget(parse), tokenFile: parse.GetValue(TokenFile));

    /// <summary>One line for a failed call of a tool: unreachable server, missing token, or the status.</summary>
    public static string DescribeRpcError(string tool, Grpc.Core.RpcException ex, string target) => ex.StatusCode switch
    {
        Grpc.Core.StatusCode.Unavailable => $"pcie-emu {tool}: cannot reach a server at {target} (is `pcie-emu serve` running?): {ex.Status.Detail}",
        Grpc.Core.StatusCode.Unauthenticated => $"pcie-emu {tool}: {target}: UNAUTHENTICATED: {TokenAuth.Hint()}",
        _ => $"pcie-emu {tool}: {ex.Status.StatusCode}: {ex.Status.Detail}",
    };

    private static Command Serve()
    {
        var listen = new Option<string[]>("--listen") { Description = "Endpoint to listen on, repeatable: unix:///path or tcp://host:port (replaces the defaults)", AllowMultipleArgumentsPerToken = false };
        var allowRemote = new Option<bool>("--allow-remote") { Description = "Allow listening on non-loopback TCP addresses (token-protected, but not encrypted: use on trusted networks only)" };
        var tcpAuth = new Option<string>("--tcp-auth") { Description = "TCP authentication: 'token' (default: every call needs the per-start token from --token-file) or 'none' (anyone who reaches the port drives the machine)", DefaultValueFactory = _ => "token" };
        tcpAuth.AcceptOnlyFromAmong("token", "none");
        var config = new Option<string?>("--config") { Description = "JSON file with \"Machine\" and \"Limits\" sections (see docs/protocol.md)" };
        var ramSize = new Option<string?>("--ram-size") { Description = "RAM size in bytes, or with a K/M/G suffix (default 256M)" };
        var ramFile = new Option<string?>("--ram-file") { Description = "Path of the shared RAM file (default under $XDG_RUNTIME_DIR or /tmp)" };
        var keepRam = new Option<bool>("--keep-ram-file") { Description = "Keep the RAM file after shutdown" };
        var machine = new Option<string?>("--machine") { Description = "JSON machine description: root ports, switches, devices by type (docs/machine.md; default: the embedded description there)" };
        var noFirmware = new Option<bool>("--no-firmware") { Description = "Skip firmware enumeration (bus numbers, BARs left for the client)" };
        var pcap = new Option<string?>("--pcap") { Description = "Directory for packet captures: both directions of each Ethernet port's wire go to pcie-emu-port<N>.pcapng (written live, owner-only)" };
        var vfioUser = new Option<string[]>("--vfio-user") { Description = "Serve a function over vfio-user, repeatable: BDF=SOCKET (e.g. 02:10.0=/tmp/pcie-emu/vf0.sock); see docs/vfio-user.md", AllowMultipleArgumentsPerToken = false };
        var trace = new Option<string?>("--trace") { Description = "Record every transaction, decoded, to this file (see `pcie-emu trace --export`)" };
        var check = new Option<string?>("--check") { Description = "The driver-conduct checker (docs/checker.md): 'on' (default) or 'off'", Arity = ArgumentArity.ZeroOrOne };
        check.AcceptOnlyFromAmong("on", "off");
        var web = new Option<string>("--web")
        {
            Description = $"The live machine view in the browser (docs/web.md): tcp://HOST:PORT, or 'off' (default: {PcieEmu.Server.Web.WebSettings.DefaultTarget} with the default endpoints, off with --listen; needs the token like TCP gRPC: the URL printed at start carries it)",
        };
        var unixServer = new Option<string?>("--unix-server") { Description = "Server of the Unix-socket endpoints: 'direct' (default: PcieEmu's own HTTP/2 loop, a thread per connection running each call's handler, docs/performance.md) or 'kestrel' (ASP.NET Core, as TCP); configuration key Server:UnixServer" };
        unixServer.AcceptOnlyFromAmong("kestrel", "direct");
        var cmd = new Command("serve", "Start the emulator and serve the gRPC API") { listen, allowRemote, tcpAuth, config, machine, ramSize, ramFile, keepRam, noFirmware, pcap, vfioUser, trace, check, web, unixServer };
        cmd.SetAction(async (parse, ct) =>
        {
            ServerHost.PreferInlineSocketCompletions();   // before any asynchronous socket operation (docs/performance.md)
            var overrides = new Dictionary<string, string?>();
            try
            {
                if (parse.GetValue(ramSize) is { } rs) overrides["Machine:RamSize"] = ParseSize(rs).ToString(CultureInfo.InvariantCulture);
            }
            catch (FormatException ex)
            {
                await Console.Error.WriteLineAsync($"pcie-emu serve: --ram-size: {ex.Message}").ConfigureAwait(false);
                return 2;
            }
            if (parse.GetValue(ramFile) is { } rf) overrides["Machine:RamFilePath"] = Path.GetFullPath(rf);
            if (parse.GetValue(keepRam)) overrides["Machine:KeepRamFile"] = "true";
            if (parse.GetValue(noFirmware)) overrides["Machine:FirmwareEnumeration"] = "false";
            if (parse.GetValue(unixServer) is { } us) overrides["Server:UnixServer"] = us;
            var settings = new ServeSettings
            {
                Listen = parse.GetValue(listen) ?? [],
                AllowRemote = parse.GetValue(allowRemote),
                TcpAuth = parse.GetValue(tcpAuth) == "none" ? TcpAuthMode.None : TcpAuthMode.Token,
                TokenFile = parse.GetValue(TokenFile) is { } tf ? Path.GetFullPath(tf) : null,
                ConfigFile = parse.GetValue(config),
                MachineFile = parse.GetValue(machine) is { } mf ? Path.GetFullPath(mf) : null,
                PcapDirectory = parse.GetValue(pcap),
                VfioUser = parse.GetValue(vfioUser) ?? [],
                TraceFile = parse.GetValue(trace) is { } tr ? Path.GetFullPath(tr) : null,
                Check = parse.GetValue(check) != "off",
                // With the default endpoints the view is on at its default port; whoever picks --listen picks --web too.
                Web = parse.GetValue(web) ?? ((parse.GetValue(listen) ?? []).Length == 0 ? PcieEmu.Server.Web.WebSettings.DefaultTarget : null),
                Overrides = overrides,
            };
            Microsoft.AspNetCore.Builder.WebApplication app;
            try
            {
                app = ServerHost.Build(settings);
            }
            catch (ServeConfigurationException ex)
            {
                await Console.Error.WriteLineAsync($"pcie-emu serve: {ex.Message}").ConfigureAwait(false);
                return 2;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                await Console.Error.WriteLineAsync($"pcie-emu serve: {ex.Message}").ConfigureAwait(false);
                return 1;
            }
            try
            {
                await app.RunAsync().ConfigureAwait(false);
            }
            catch (ServeConfigurationException ex)
            {
                // Raised while starting (e.g. a --vfio-user socket another server listens on).
                await Console.Error.WriteLineAsync($"pcie-emu serve: {ex.Message}").ConfigureAwait(false);
                await app.DisposeAsync().ConfigureAwait(false);
                return 2;
            }
            catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException)
            {
                // Binding failed (port in use, address not available): one line, no stack trace.
                await Console.Error.WriteLineAsync($"pcie-emu serve: cannot listen: {ex.Message}").ConfigureAwait(false);
                await app.DisposeAsync().ConfigureAwait(false);
                return 1;
            }
            return 0;
        });
        return cmd;
    }

    /// <summary>Parses a byte count with an optional K/M/G suffix (binary units).</summary>
    public static ulong ParseSize(string text)
    {
        text = text.Trim();
        int shift = 0;
        if (text.Length > 0)
        {
            switch (char.ToUpperInvariant(text[^1]))
            {
                case 'K': shift = 10; break;
                case 'M': shift = 20; break;
                case 'G': shift = 30; break;
            }
        }
        if (shift != 0) text = text[..^1];
        bool hex = text.StartsWith("0x", StringComparison.OrdinalIgnoreCase);
        if (!ulong.TryParse(hex ? text[2..] : text, hex ? NumberStyles.HexNumber : NumberStyles.None, CultureInfo.InvariantCulture, out ulong v) || v > ulong.MaxValue >> shift)
            throw new FormatException($"'{text}' is not a size (e.g. 256M, 1G, 0x1000000)");
        return v << shift;
    }
}
