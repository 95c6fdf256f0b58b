using System.Net.Sockets;
using Grpc.AspNetCore.Server;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using PcieEmu.Server.Hosting;

namespace PcieEmu.Server.Direct;

/// <summary>
/// PcieEmu's own gRPC server for Unix-socket endpoints (<c>serve --unix-server direct</c>, issue 16):
/// one thread per connection doing blocking reads, each call's handler run on that thread, a unary
/// reply sent with one send, like libvfio-user's server. It serves the same service instances (DI
/// singletons, one machine) as Kestrel, which keeps the TCP endpoints.
/// </summary>
internal sealed class DirectServer : IHostedService, IDisposable
{
    private readonly IServiceProvider _services;
    private readonly IReadOnlyList<string> _paths;
    private readonly List<Socket> _listeners = [];
    private readonly HashSet<DirectConnection> _connections = [];
    private volatile bool _stopping;
    private readonly int _maxConnections;

    public DirectServer(IServiceProvider services, IReadOnlyList<string> paths, ILogger<DirectServer> logger)
    {
        _services = services;
        _paths = paths;
        _maxConnections = services.GetService<LimitsOptions>()?.MaxDirectConnections ?? new LimitsOptions().MaxDirectConnections;
        Logger = logger;
        Methods = new DirectMethods(services.GetService<MalformedRequestLog>());
    }

    /// <summary>The configuration value that selects this server for Unix sockets.</summary>
    public const string Name = "direct";

    /// <summary>The server's log.</summary>
    public ILogger Logger { get; }
    /// <summary>The bound methods.</summary>
    public DirectMethods Methods { get; }
    /// <summary>Largest request message (as AddGrpc's MaxReceiveMessageSize in ServerHost).</summary>
    public int MaxReceiveMessageSize => LimitsOptions.MessageLimit + 64 * 1024;
    /// <summary>Largest reply message (as AddGrpc's MaxSendMessageSize).</summary>
    public int MaxSendMessageSize => LimitsOptions.MessageLimit;
    /// <summary>True once the server began to stop: new streams are refused.</summary>
    public bool Stopping => _stopping;
    /// <summary>The endpoints it listens on, as targets (<c>unix:///path</c>).</summary>
    public IEnumerable<string> Endpoints => _paths.Select(p => "unix://" + p);
    private long _sends;

    /// <summary>Sends (socket writes) of all connections so far: what "one send per reply" is measured by.</summary>
    public long Sends => Interlocked.Read(ref _sends);

    internal void CountSend() => Interlocked.Increment(ref _sends);

    /// <summary>Connections open now.</summary>
    public int ConnectionCount
    {
        get { lock (_connections) return _connections.Count; }
    }

    /// <summary>
    /// Registers the direct server unless the configuration (<c>Server:UnixServer</c>) asks for Kestrel, when
    /// there are Unix endpoints; returns whether it takes them (Kestrel then must not listen on them).
    /// </summary>
    public static bool Configure(IServiceCollection services, IConfiguration configuration, IReadOnlyList<PcieEmu.Client.Endpoint> endpoints, bool kestrelListens)
    {
        string value = configuration["Server:UnixServer"] ?? Name;   // the default since issue 16
        if (value is not ("kestrel" or Name))
            throw new ServeConfigurationException($"configuration: Server:UnixServer: '{value}' is not 'kestrel' or 'direct' (--unix-server, PCIEEMU_Server__UnixServer)");
        var paths = endpoints.Where(e => e.Kind == PcieEmu.Client.EndpointKind.Unix).Select(e => e.Path).ToList();
        if (value != Name || paths.Count == 0) return false;
        services.AddSingleton(sp => new DirectServer(sp, paths, sp.GetRequiredService<ILogger<DirectServer>>()));
        services.AddHostedService(sp => sp.GetRequiredService<DirectServer>());
        // Kestrel with no endpoint at all would listen on its default localhost:5000: then no Kestrel.
        if (!kestrelListens) services.AddSingleton<IServer, NoListenerServer>();
        return true;
    }

    /// <inheritdoc/>
    public Task StartAsync(CancellationToken cancellationToken)
    {
        // Bound and listening now (a socket in use fails the start; a client that connects early waits in
        // the backlog); accepted once the host has started, when the routing Kestrel serves is complete
        // (reflection lists the services from it).
        foreach (var path in _paths)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                socket.Bind(new UnixDomainSocketEndPoint(path));
                if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
                socket.Listen(512);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
            _listeners.Add(socket);
        }
        _services.GetRequiredService<IHostApplicationLifetime>().ApplicationStarted.Register(StartAccepting);
        return Task.CompletedTask;
    }

    private void StartAccepting()
    {
        BindServices();
        for (int i = 0; i < _paths.Count; i++)
        {
            var (socket, path) = (_listeners[i], _paths[i]);
            new Thread(() => Accept(socket, path)) { IsBackground = true, Name = "pcie-emu direct accept " + path }.Start();
        }
    }

    /// <summary>Serves on the Unix sockets what <paramref name="app"/> maps for Kestrel (call after the MapGrpcService calls); no-op when the direct server is off.</summary>
    public static void Attach(Microsoft.AspNetCore.Builder.WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        if (app.Services.GetService<DirectServer>() is { } server) server._sources = [.. ((IEndpointRouteBuilder)app).DataSources];
    }

    private List<EndpointDataSource> _sources = [];

    // The services Kestrel maps (MapGrpcService, health, reflection), found in the routing endpoints' gRPC metadata.
    private void BindServices()
    {
        var sources = _sources;
        var types = sources.SelectMany(s => s.Endpoints).Select(e => e.Metadata.GetMetadata<GrpcMethodMetadata>()?.ServiceType)
            .OfType<Type>().Distinct().ToList();
        foreach (var type in types)
        {
            var instance = ActivatorUtilities.GetServiceOrCreateInstance(_services, type);
            if (!Methods.Bind(instance)) DirectLog.NotBound(Logger, type.Name);
        }
    }

    private void Accept(Socket listener, string path)
    {
        while (!_stopping)
        {
            Socket client;
            try
            {
                client = listener.Accept();
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                if (_stopping) return;
                DirectLog.AcceptFailed(Logger, path, ex.Message);
                Thread.Sleep(10);
                continue;
            }
            var connection = new DirectConnection(client, this, "unix:" + path);
            bool refused;
            lock (_connections)
            {
                if (_stopping)
                {
                    client.Dispose();
                    return;
                }
                refused = _connections.Count >= _maxConnections;
                if (!refused) _connections.Add(connection);
            }
            if (refused) Refuse(client, path);
            else connection.Start();
        }
    }

    // Beyond Limits:MaxDirectConnections (each connection is a thread): the server's SETTINGS and a GOAWAY
    // (ENHANCE_YOUR_CALM, last stream 0, the reason as debug data), then close; a client sees UNAVAILABLE with
    // the reason. Logged at most once a second.
    private void Refuse(Socket client, string path)
    {
        string reason = $"pcie-emu: more than {_maxConnections} connections on the Unix sockets (Limits:MaxDirectConnections)";
        var payload = Http2.GoAwayPayload(0, Http2Error.EnhanceYourCalm, reason);
        var frames = new byte[2 * Http2.FrameHeaderSize + payload.Length];
        Http2.WriteFrameHeader(frames, 0, FrameType.Settings, 0, 0);
        Http2.WriteFrameHeader(frames.AsSpan(Http2.FrameHeaderSize), payload.Length, FrameType.GoAway, 0, 0);
        payload.CopyTo(frames.AsSpan(2 * Http2.FrameHeaderSize));
        try
        {
            client.SendTimeout = 1000;
            client.Send(frames);
            client.Shutdown(SocketShutdown.Send);
        }
        catch (SocketException) { }
        finally { client.Dispose(); }
        long now = Environment.TickCount64;
        if (now - Interlocked.Read(ref _lastRefusalLog) >= 1000)
        {
            Interlocked.Exchange(ref _lastRefusalLog, now);
            DirectLog.Refused(Logger, path, _maxConnections);
        }
    }

    private long _lastRefusalLog = long.MinValue / 2;

    /// <summary>A connection ended.</summary>
    public void Closed(DirectConnection connection)
    {
        lock (_connections) _connections.Remove(connection);
    }

    /// <inheritdoc/>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        // ServerShutdown (a lifecycle service) already told the open streams in its StoppingAsync step; they end with UNAVAILABLE.
        _stopping = true;
        foreach (var l in _listeners) l.Dispose();
        List<DirectConnection> open;
        lock (_connections) open = [.. _connections];
        foreach (var c in open) c.GoAway(Http2Error.NoError, "server stopping");
        var deadline = DateTime.UtcNow + ServerShutdown.DrainTimeout;
        while (open.Any(c => c.OpenStreams > 0) && DateTime.UtcNow < deadline)
            await Task.Delay(5, CancellationToken.None).ConfigureAwait(false);
        foreach (var c in open) c.Shutdown();
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var l in _listeners) l.Dispose();
    }

    /// <summary>The IServer when Kestrel has nothing to listen on (only direct Unix endpoints, no web view).</summary>
    private sealed class NoListenerServer : IServer
    {
        public IFeatureCollection Features { get; } = CreateFeatures();

        private static FeatureCollection CreateFeatures()
        {
            var f = new FeatureCollection();
            f.Set<Microsoft.AspNetCore.Hosting.Server.Features.IServerAddressesFeature>(new AddressList());
            return f;
        }

        public Task StartAsync<TContext>(IHttpApplication<TContext> application, CancellationToken cancellationToken) where TContext : notnull => Task.CompletedTask;
        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public void Dispose() { }

        private sealed class AddressList : Microsoft.AspNetCore.Hosting.Server.Features.IServerAddressesFeature
        {
            public ICollection<string> Addresses { get; } = [];
            public bool PreferHostingUrls { get; set; }
        }
    }
}

/// <summary>Log messages of the direct loop (event ids 120-129).</summary>
internal static partial class DirectLog
{
    [LoggerMessage(EventId = 120, Level = LogLevel.Debug, Message = "direct {Peer}: HTTP/2 connection error {Code}: {Reason}")]
    public static partial void ProtocolError(ILogger logger, string peer, Http2Error code, string reason);

    [LoggerMessage(EventId = 121, Level = LogLevel.Error, Message = "direct {Peer}: connection failed")]
    public static partial void ConnectionFailed(ILogger logger, string peer, Exception ex);

    [LoggerMessage(EventId = 122, Level = LogLevel.Error, Message = "Error when executing service method '{Method}'")]
    public static partial void HandlerFailed(ILogger logger, string method, Exception ex);

    [LoggerMessage(EventId = 123, Level = LogLevel.Warning, Message = "direct: service {Service} has no generated BindService: not served on Unix sockets")]
    public static partial void NotBound(ILogger logger, string service);

    [LoggerMessage(EventId = 125, Level = LogLevel.Warning, Message = "direct {Path}: connection refused: more than {Max} connections (Limits:MaxDirectConnections)")]
    public static partial void Refused(ILogger logger, string path, int max);

    [LoggerMessage(EventId = 124, Level = LogLevel.Warning, Message = "direct {Path}: accept failed: {Reason}")]
    public static partial void AcceptFailed(ILogger logger, string path, string reason);
}
