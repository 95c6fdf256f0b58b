using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using PcieEmu.Client;
using Endpoint = PcieEmu.Client.Endpoint;
using PcieEmu.Core.Platform;
using PcieEmu.Server.Services;

namespace PcieEmu.Server.Hosting;

/// <summary>Builds the server: configuration, the machine, Kestrel endpoints and the gRPC services.</summary>
public static class ServerHost
{
    /// <summary>Environment variable prefix: PCIEEMU_Machine__RamSize=... sets Machine:RamSize.</summary>
    public const string EnvironmentPrefix = "PCIEEMU_";

    /// <summary>
    /// Builds (does not start) the server for <paramref name="settings"/>. Configuration layers, lowest
    /// first: appsettings.json beside the executable, the --config file, PCIEEMU_* environment variables,
    /// command-line overrides. Throws <see cref="ServeConfigurationException"/> on bad settings.
    /// </summary>
    public static WebApplication Build(ServeSettings settings, Action<ILoggingBuilder>? configureLogging = null)
    {
        var endpoints = ResolveEndpoints(settings);
        var tokenGuard = TokenGuard.Create(settings, endpoints);
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            Args = [],
            ContentRootPath = AppContext.BaseDirectory,
            ApplicationName = "pcie-emu",
        });
        var cfg = builder.Configuration;
        cfg.Sources.Clear();
        if (settings.UseAppSettings) cfg.AddJsonFile(Path.Combine(AppContext.BaseDirectory, "appsettings.json"), optional: true);
        if (settings.ConfigFile != null)
        {
            if (!File.Exists(settings.ConfigFile)) throw new ServeConfigurationException($"--config: file '{settings.ConfigFile}' not found");
            cfg.AddJsonFile(Path.GetFullPath(settings.ConfigFile), optional: false);
        }
        if (settings.UseEnvironment) cfg.AddEnvironmentVariables(EnvironmentPrefix);
        cfg.AddInMemoryCollection(settings.Overrides);

        var machineOptions = Bind<MachineOptions>(cfg, "Machine", o => o.Validate(),
            p => typeof(PcieEmu.Core.Devices.Igb.IgbOptions).GetProperty(p) != null ? "Machine:Nic:" : "Machine:");
        var limits = Bind<LimitsOptions>(cfg, "Limits", o => o.Validate(), _ => "Limits:");

        builder.Logging.ClearProviders();
        if (configureLogging != null) configureLogging(builder.Logging);
        else builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; });

        builder.Services.AddSingleton(Options.Create(limits));
        builder.Services.AddSingleton(limits);
        builder.Services.AddSingleton(settings);
        builder.Services.AddSingleton(_ => new Machine(machineOptions));
        builder.Services.AddSingleton<InterruptSubscribers>();
        builder.Services.AddSingleton<WireTap>();
        builder.Services.AddSingleton<TraceSubscribers>();
        builder.Services.AddSingleton<TraceRecording>();
        builder.Services.AddGrpc(o =>
        {
            // A WriteMemory of 4 MiB plus its envelope must fit; anything larger is malformed.
            o.MaxReceiveMessageSize = LimitsOptions.MemoryTransferCeiling + 64 * 1024;
            o.MaxSendMessageSize = LimitsOptions.MemoryTransferCeiling + 64 * 1024;
            o.EnableDetailedErrors = false;
        });
        builder.Services.AddGrpcHealthChecks().AddCheck("machine", () => Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckResult.Healthy());
        builder.Services.AddGrpcReflection();

        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.Http2.MaxStreamsPerConnection = 1024;
            k.Limits.Http2.InitialConnectionWindowSize = 4 << 20;
            k.Limits.Http2.InitialStreamWindowSize = 2 << 20;
            foreach (var ep in endpoints)
            {
                if (ep.Kind == EndpointKind.Unix)
                    k.ListenUnixSocket(ep.Path, l => { l.Protocols = HttpProtocols.Http2; TokenGuard.MarkUnixListener(l); });
                else
                    k.Listen(ResolveAddress(ep.Host), ep.Port, l => l.Protocols = HttpProtocols.Http2);
            }
        });

        var app = builder.Build();
        app.MapGrpcService<PlatformGrpcService>();
        app.MapGrpcService<ConfigGrpcService>();
        app.MapGrpcService<MmioGrpcService>();
        app.MapGrpcService<MemoryGrpcService>();
        app.MapGrpcService<SessionGrpcService>();
        app.MapGrpcService<InterruptGrpcService>();
        app.MapGrpcService<EthernetGrpcService>();
        app.MapGrpcService<IommuGrpcService>();
        app.MapGrpcService<TraceGrpcService>();
        app.MapGrpcHealthChecksService();
        app.MapGrpcReflectionService();

        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("PcieEmu.Server");
        var lifetime = app.Services.GetRequiredService<IHostApplicationLifetime>();
        foreach (var ep in endpoints.Where(e => e.Kind == EndpointKind.Unix)) PrepareSocketPath(ep.Path, logger);
        lifetime.ApplicationStarted.Register(() =>
        {
            foreach (var ep in endpoints.Where(e => e.Kind == EndpointKind.Unix))
                if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(ep.Path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            foreach (var a in BoundEndpoints(app)) Log.Listening(logger, a);
        });
        lifetime.ApplicationStopped.Register(() =>
        {
            foreach (var ep in endpoints.Where(e => e.Kind == EndpointKind.Unix))
            {
                try { File.Delete(ep.Path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            }
        });

        // Build the machine now so a bad RAM path fails at start, not at the first request.
        var machine = app.Services.GetRequiredService<Machine>();
        int functionCount = machine.EnumerateFunctions().Count;
        Log.MachineReady(logger, machine.Ram.Size, machine.Ram.Path, machineOptions.KeepRamFile, functionCount);
        app.Services.GetRequiredService<WireTap>();   // attach to the ports (and open pcap files) now
        app.Services.GetRequiredService<TraceRecording>();   // start --trace recording now
        lifetime.ApplicationStopped.Register(() =>
            Log.ShutDown(logger, machine.Ram.Path, machineOptions.KeepRamFile ? "kept" : "removed"));
        tokenGuard.Attach(app, logger, lifetime);   // writes the token file; its check runs before every endpoint
        return app;
    }

    private static TOptions Bind<TOptions>(IConfiguration cfg, string section, Action<TOptions> validate, Func<string, string> prefix)
        where TOptions : class, new()
    {
        try
        {
            var options = cfg.GetSection(section).Get<TOptions>() ?? new TOptions();
            validate(options);
            return options;
        }
        catch (InvalidOperationException ex)
        {
            throw new ServeConfigurationException($"configuration: {section}: {ex.Message}");
        }
        catch (ArgumentException ex)
        {
            string name = ex.ParamName ?? "?";
            throw new ServeConfigurationException($"configuration: {prefix(name)}{name}: {RpcErrors.Reason(ex)}");
        }
    }

    /// <summary>The endpoints the started server listens on, as targets (<c>unix:///p</c>, <c>tcp://h:p</c>) with real ports.</summary>
    public static IReadOnlyList<string> BoundEndpoints(WebApplication app)
    {
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
        return [.. addresses.Select(a => a.StartsWith("http://unix:", StringComparison.Ordinal)
            ? "unix://" + a["http://unix:".Length..]
            : "tcp://" + a["http://".Length..].TrimEnd('/'))];
    }

    /// <summary>The listen endpoints: the defaults, or the --listen ones (checked).</summary>
    public static IReadOnlyList<Endpoint> ResolveEndpoints(ServeSettings settings)
    {
        var list = new List<Endpoint>();
        var targets = settings.Listen.Count > 0 ? settings.Listen : ["unix://" + Endpoints.DefaultUnixSocketPath(), Endpoints.DefaultTcpTarget];
        foreach (var t in targets)
        {
            if (!Endpoints.TryParse(t, out var ep, out var error)) throw new ServeConfigurationException($"--listen: {error}");
            if (ep.Kind == EndpointKind.Tcp)
            {
                var addr = ResolveAddress(ep.Host);
                if (!IPAddress.IsLoopback(addr) && !settings.AllowRemote)
                    throw new ServeConfigurationException($"--listen {t}: {ep.Host} is not a loopback address; add --allow-remote to listen on it (then anyone on the network who has the token drives the machine; the traffic is not encrypted)");
            }
            list.Add(ep);
        }
        return list;
    }

    private static IPAddress ResolveAddress(string host)
    {
        if (host.Equals("localhost", StringComparison.OrdinalIgnoreCase)) return IPAddress.Loopback;
        if (IPAddress.TryParse(host, out var a)) return a;
        throw new ServeConfigurationException($"--listen: '{host}' must be an IP address or localhost");
    }

    private static void PrepareSocketPath(string path, ILogger logger)
    {
        string? dir = Path.GetDirectoryName(path);
        if (dir != null && !Directory.Exists(dir))
        {
            if (OperatingSystem.IsWindows()) Directory.CreateDirectory(dir);
            else Directory.CreateDirectory(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
        if (!File.Exists(path)) return;
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
        }
        catch (SocketException)
        {
            File.Delete(path);
            Log.StaleSocket(logger, path);
            return;
        }
        throw new ServeConfigurationException($"--listen unix://{path}: another server is listening there");
    }
}
