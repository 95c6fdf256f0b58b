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

    /// <summary>The runtime's switch (read once, at the first asynchronous socket operation) that runs socket completions on its epoll thread.</summary>
    internal const string InlineSocketCompletionsVariable = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    /// <summary>
    /// Issue 16: completes socket operations on the runtime's epoll thread instead of handing each
    /// readiness event to a thread-pool worker first: one thread wake fewer per request (about half the
    /// server's voluntary context switches per unary call, measured in docs/performance.md). Kestrel still
    /// queues its own work (HTTP/2 framing, the handlers) to its I/O queues and the thread pool, so no
    /// handler runs on the epoll thread; the only other asynchronous socket user is the vfio-user accept
    /// loop, which hands each session to its own thread. Must run before the first asynchronous socket
    /// operation of the process (<c>serve</c> calls it first); a value the user set is left alone, so
    /// <c>DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=0</c> restores the runtime's default.
    /// </summary>
    public static void PreferInlineSocketCompletions()
    {
        if (InlineSocketCompletionsSetting(Environment.GetEnvironmentVariable(InlineSocketCompletionsVariable)) is { } value)
            Environment.SetEnvironmentVariable(InlineSocketCompletionsVariable, value);
    }

    /// <summary>The value <see cref="PreferInlineSocketCompletions"/> sets given the current one: "1" when unset, null (leave it) otherwise.</summary>
    internal static string? InlineSocketCompletionsSetting(string? current) => current == null ? "1" : null;

    /// <summary>
    /// Whether Kestrel schedules its transport and application pipes inline (SocketTransportOptions.
    /// UnsafePreferInlineScheduling): exactly when socket completions are inline, the pairing the option asks
    /// for, so the one switch <c>DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=0</c> turns both off. Inline is
    /// safe here because no code of the server blocks a thread on another socket operation: handlers block only
    /// on the machine lock, the ring waits on its own thread and the vfio-user sessions on theirs.
    /// </summary>
    internal static bool InlineScheduling(string? inlineSocketCompletions) => inlineSocketCompletions == "1";

    /// <summary>ASP.NET Core's per-request hosting log category (request start/finish); off by default, see <see cref="Build"/>.</summary>
    internal const string HostingDiagnosticsCategory = "Microsoft.AspNetCore.Hosting.Diagnostics";

    /// <summary>
    /// Builds (does not start) the server for <paramref name="settings"/>. Configuration layers, lowest
    /// first: appsettings.json beside the executable, the --config file, PCIEEMU_* environment variables,
    /// command-line overrides. Throws <see cref="ServeConfigurationException"/> on bad settings.
    /// </summary>
    public static WebApplication Build(ServeSettings settings, Action<ILoggingBuilder>? configureLogging = null)
    {
        var endpoints = ResolveEndpoints(settings);
        var web = PcieEmu.Server.Web.WebSettings.Parse(settings.Web, settings.AllowRemote);
        var tokenGuard = TokenGuard.Create(settings, endpoints, webView: web != null);
        var vfioUser = PcieEmu.Server.VfioUser.VfioUserBinding.ParseAll(settings.VfioUser);
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

        // Devices are described in the machine description now, not in the configuration.
        if (cfg.GetSection("Machine:Nic").Exists())
            throw new ServeConfigurationException("configuration: Machine:Nic: devices are set in a machine description now: serve --machine FILE (docs/machine.md)");
        var machineOptions = Bind<MachineOptions>(cfg, "Machine", o => o.Validate(), _ => "Machine:");
        machineOptions = machineOptions with { Description = LoadDescription(settings.MachineFile) };
        var limits = Bind<LimitsOptions>(cfg, "Limits", o => o.Validate(), _ => "Limits:");
        machineOptions = RamFiles.Resolve(machineOptions, settings.RuntimeDirectory ?? Endpoints.DefaultRuntimeDirectory(), out var staleRamFiles);
        // Bus numbers and BAR space are known only once the topology exists: refuse a description that does not fit now, not at first use.
        try { Machine.Check(machineOptions); }
        catch (MachineDescriptionException ex) { throw new ServeConfigurationException($"--machine: {ex.Message}"); }

        builder.Logging.ClearProviders();
        if (configureLogging != null) configureLogging(builder.Logging);
        else builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; });
        // A failed start (port in use) is reported by `serve` in one line; the host's own error log of it is a stack trace.
        builder.Logging.AddFilter("Microsoft.Extensions.Hosting.Internal.Host", LogLevel.Critical);
        // Issue 16: ASP.NET Core's hosting diagnostics start an Activity and a logging scope for every request
        // whenever this category is enabled at any level, though all it logs per request is start and finish at
        // Information (hidden by appsettings.json anyway). Off unless the configuration names the category: it
        // was ~950 of the ~2,260 bytes the server allocated per unary call (docs/performance.md).
        if (cfg[$"Logging:LogLevel:{HostingDiagnosticsCategory}"] == null) builder.Logging.AddFilter(HostingDiagnosticsCategory, LogLevel.None);

        builder.Services.AddSingleton(Options.Create(limits));
        builder.Services.AddSingleton(limits);
        builder.Services.AddSingleton(settings);
        builder.Services.AddSingleton(_ => new Machine(machineOptions));
        builder.Services.AddSingleton<InterruptSubscribers>();
        builder.Services.AddSingleton<ServerShutdown>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<ServerShutdown>());
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = ServerShutdown.Timeout);
        builder.Services.AddSingleton<WireTap>();
        builder.Services.AddSingleton<PcieEmu.Server.Capture.PcapRecording>();
        if (vfioUser.Count > 0)
            builder.Services.AddHostedService(sp => new PcieEmu.Server.VfioUser.VfioUserHost(sp.GetRequiredService<Machine>(), vfioUser, sp.GetRequiredService<ILoggerFactory>()));
        builder.Services.AddSingleton<TraceSubscribers>();
        builder.Services.AddSingleton<TraceRecording>();
        builder.Services.AddSingleton<ServerChecker>();
        builder.Services.AddSingleton<PcieEmu.Server.Ring.SharedRings>();
        builder.Services.AddSingleton(sp => new PcieEmu.Server.Web.WebActivity(sp.GetRequiredService<Machine>()));
        builder.Services.AddGrpc(o =>
        {
            // A maximal WriteMemory (or a Transact message of writes) plus its envelope must fit; anything larger is malformed.
            o.MaxReceiveMessageSize = LimitsOptions.MessageLimit + 64 * 1024;
            // Replies are bounded up front (SessionGrpcService) so that a default client can receive every one.
            o.MaxSendMessageSize = LimitsOptions.MessageLimit;
            o.EnableDetailedErrors = false;
        });
        builder.Services.AddCheckedRequestParsing();
        builder.Services.AddGrpcHealthChecks().AddCheck("machine", () => Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckResult.Healthy());
        builder.Services.AddGrpcReflection();

        // Issue 16: with socket completions inline (above), Kestrel's own pipes run inline too: the HTTP/2
        // connection loop parses on the socket thread and a stream's continuations (a Transact message, a
        // reply's flush to the socket) run where the data arrives instead of hopping through the thread pool.
        builder.WebHost.UseSockets(o => o.UnsafePreferInlineScheduling = InlineScheduling(Environment.GetEnvironmentVariable(InlineSocketCompletionsVariable)));
        // Issue 16: Unix sockets served by the direct loop (Server:UnixServer=direct) instead of Kestrel.
        bool direct = PcieEmu.Server.Direct.DirectServer.Configure(builder.Services, cfg, endpoints, kestrelListens: web != null || endpoints.Any(e => e.Kind == EndpointKind.Tcp));

        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.Http2.MaxStreamsPerConnection = 1024;
            k.Limits.Http2.InitialConnectionWindowSize = 4 << 20;
            k.Limits.Http2.InitialStreamWindowSize = 2 << 20;
            foreach (var ep in endpoints)
            {
                if (ep.Kind == EndpointKind.Unix && direct) continue;
                if (ep.Kind == EndpointKind.Unix)
                    k.ListenUnixSocket(ep.Path, l => { l.Protocols = HttpProtocols.Http2; TokenGuard.MarkUnixListener(l); });
                else
                    k.Listen(ResolveAddress(ep.Host), ep.Port, l => l.Protocols = HttpProtocols.Http2);
            }
            // The web view: HTTP/1.1 for browsers, on its own listener; nothing else is served there.
            if (web != null)
                k.Listen(web, l =>
                {
                    l.Protocols = HttpProtocols.Http1;
                    PcieEmu.Server.Web.WebView.MarkListener(l);
                    k.ApplicationServices.GetRequiredService<PcieEmu.Server.Web.WebActivity>().Listener = l;
                });
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
        PcieEmu.Server.Direct.DirectServer.Attach(app);

        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("PcieEmu.Server");
        if (web != null)
        {
            // In front of everything (the token check of gRPC included): the web listener answers only the view.
            var view = new PcieEmu.Server.Web.WebView(app.Services.GetRequiredService<Machine>(), app.Services.GetRequiredService<ServerChecker>(),
                app.Services.GetRequiredService<PcieEmu.Server.Web.WebActivity>(), tokenGuard, app.Services.GetRequiredService<ServerShutdown>());
            app.Use((context, next) => PcieEmu.Server.Web.WebView.IsWebRequest(context) ? view.HandleAsync(context) : next(context));
        }
        var lifetime = app.Services.GetRequiredService<IHostApplicationLifetime>();
        foreach (var (file, bytes) in staleRamFiles) Log.StaleRamFile(logger, file, bytes);
        foreach (var ep in endpoints.Where(e => e.Kind == EndpointKind.Unix)) RuntimeDirectory.PrepareSocket(ep.Path, logger);
        lifetime.ApplicationStarted.Register(() =>
        {
            foreach (var ep in endpoints.Where(e => e.Kind == EndpointKind.Unix))
                if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(ep.Path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            foreach (var a in BoundEndpoints(app)) Log.Listening(logger, a);
            if (WebAddress(app) is { } webAddress)
            {
                Log.WebView(logger, webAddress + "/" + (tokenGuard.Token is { } t ? "?token=" + t : ""));
                if (!IPAddress.IsLoopback(web!.Address)) Log.WebViewRemote(logger, webAddress);
            }
            foreach (var ep in endpoints.Where(e => e.Kind == EndpointKind.Tcp && !IPAddress.IsLoopback(ResolveAddress(e.Host))))
                Log.RemoteListen(logger, ep.ToString());
        });
        lifetime.ApplicationStopped.Register(() =>
        {
            foreach (var ep in endpoints.Where(e => e.Kind == EndpointKind.Unix)) RuntimeDirectory.RemoveSocket(ep.Path);
        });

        // Build the machine now so a bad RAM path fails at start, not at the first request.
        var machine = app.Services.GetRequiredService<Machine>();
        int functionCount = machine.EnumerateFunctions().Count;
        Log.MachineReady(logger, machine.Ram.Size, machine.Ram.Path, machineOptions.KeepRamFile, functionCount);
        app.Services.GetRequiredService<PcieEmu.Server.Capture.PcapRecording>();   // open the --pcap files now
        app.Services.GetRequiredService<TraceRecording>();   // start --trace recording now
        app.Services.GetRequiredService<ServerChecker>();    // the checker sees everything from the start
        lifetime.ApplicationStopped.Register(() =>
            Log.ShutDown(logger, machine.Ram.Path, machineOptions.KeepRamFile ? "kept" : "removed"));
        tokenGuard.Attach(app, logger, lifetime);   // writes the token file; its check runs before every endpoint
        return app;
    }

    private static MachineDescription? LoadDescription(string? file)
    {
        if (file == null) return null;
        if (!File.Exists(file)) throw new ServeConfigurationException($"--machine: file '{file}' not found");
        try { return MachineDescription.Load(file); }
        catch (MachineDescriptionException ex) { throw new ServeConfigurationException($"--machine: {file}: {ex.Message}"); }
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

    /// <summary>The web view's address (<c>http://127.0.0.1:50552</c>, the real port) once started, or null when it is off.</summary>
    public static string? WebAddress(WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        var view = app.Services.GetRequiredService<PcieEmu.Server.Web.WebActivity>();
        return view.BoundAddress;
    }

    /// <summary>The gRPC endpoints the started server listens on, as targets (<c>unix:///p</c>, <c>tcp://h:p</c>) with real ports (the web view's is <see cref="WebAddress"/>).</summary>
    public static IReadOnlyList<string> BoundEndpoints(WebApplication app)
    {
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
        string? webAddress = WebAddress(app);
        var direct = app.Services.GetService<PcieEmu.Server.Direct.DirectServer>()?.Endpoints ?? [];
        return [.. direct, .. addresses.Where(a => a.TrimEnd('/') != webAddress).Select(a => a.StartsWith("http://unix:", StringComparison.Ordinal)
            ? "unix://" + a["http://unix:".Length..]
            : "tcp://" + a["http://".Length..].TrimEnd('/'))];
    }

    /// <summary>The listen endpoints: the defaults, or the --listen ones (checked).</summary>
    public static IReadOnlyList<Endpoint> ResolveEndpoints(ServeSettings settings)
    {
        var list = new List<Endpoint>();
        string defaultSocket = settings.RuntimeDirectory is { } rd ? Path.Combine(rd, "pcie-emu.sock") : Endpoints.DefaultUnixSocketPath();
        var targets = settings.Listen.Count > 0 ? settings.Listen : ["unix://" + defaultSocket, Endpoints.DefaultTcpTarget];
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
        // An IPv4-mapped IPv6 address (::ffff:127.0.0.1) is the IPv4 address; sockets cannot bind the mapped form.
        if (IPAddress.TryParse(host, out var a)) return a.IsIPv4MappedToIPv6 ? a.MapToIPv4() : a;
        throw new ServeConfigurationException($"--listen: '{host}' must be an IP address or localhost");
    }
}
