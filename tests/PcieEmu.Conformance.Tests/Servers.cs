using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using PcieEmu.Client;
using PcieEmu.Protocol.V1;
using PcieEmu.Server.Hosting;

namespace PcieEmu.Conformance.Tests;

internal static class RunnerExtensions
{
    /// <summary>The same runner, sending <paramref name="server"/>'s token on TCP.</summary>
    public static ConformanceRunner WithToken(this ConformanceRunner runner, RealServer server) =>
        new(runner.Cases) { RpcTimeout = runner.RpcTimeout, TokenFile = server.TokenFile };
}

internal static class T
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    public static Task<TResult> W<TResult>(this Task<TResult> task) => task.WaitAsync(Timeout);
    public static Task W(this Task task) => task.WaitAsync(Timeout);
}

/// <summary>Paths in the repository the tests run from.</summary>
internal static class Repo
{
    public static string Root { get; } = FindRoot();

    private static string FindRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "PcieEmu.sln"))) return d.FullName;
        throw new InvalidOperationException("repository root not found");
    }

    /// <summary>The virtio-net suite: its case directory and the machine it runs on.</summary>
    public static string VirtioCases => Path.Combine(Root, "tests", "Conformance", "virtio-net", "cases");
    public static string VirtioMachine => Path.Combine(Root, "tests", "Conformance", "virtio-net", "machine.json");
}

/// <summary>The real PcieEmu server, in process, on a free loopback port and a Unix socket (the default machine,
/// or the machine description <c>machineFile</c>).</summary>
public class RealServer : IAsyncLifetime
{
    private readonly string _dir = Directory.CreateTempSubdirectory("pcie-emu-conf-").FullName;
    private readonly string? _machineFile;
    private WebApplication? _app;

    public RealServer() { }

    protected RealServer(string machineFile) => _machineFile = machineFile;

    public string TcpTarget { get; private set; } = "";
    public string UnixTarget => $"unix://{_dir}/emu.sock";
    /// <summary>The server's token file (TCP needs its token).</summary>
    public string TokenFile => Path.Combine(_dir, "token");

    public async Task InitializeAsync()
    {
        _app = ServerHost.Build(new ServeSettings
        {
            MachineFile = _machineFile,
            Listen = ["tcp://127.0.0.1:0", UnixTarget],
            TokenFile = TokenFile,
            Overrides = new Dictionary<string, string?>
            {
                ["Machine:RamFilePath"] = Path.Combine(_dir, "ram.bin"),
                // Issue 16: PCIEEMU_Server__UnixServer=direct runs the Unix target on the direct loop (no other environment is read).
                ["Server:UnixServer"] = Environment.GetEnvironmentVariable("PCIEEMU_Server__UnixServer") is { Length: > 0 } u ? u : null,
            },
            UseAppSettings = false,
            UseEnvironment = false,
        }, l => l.ClearProviders());
        await _app.StartAsync().W();
        TcpTarget = ServerHost.BoundEndpoints(_app).Single(e => e.StartsWith("tcp://", StringComparison.Ordinal));
    }

    public async Task DisposeAsync()
    {
        if (_app != null)
        {
            await _app.StopAsync().W();
            await _app.DisposeAsync();
        }
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}

/// <summary>The server of the virtio-net suite: tests/Conformance/virtio-net/machine.json (two virtio-net devices on one segment).</summary>
public sealed class VirtioNetServer : RealServer
{
    public VirtioNetServer() : base(Repo.VirtioMachine) { }
}

/// <summary>
/// A deliberately broken server: it forwards to a real one but drops posted-write ordering in
/// SessionService.Transact (posted writes are held back until after the next read, and inside a
/// batch reads run before writes). Everything else it forwards faithfully.
/// </summary>
internal sealed class BrokenFakeServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly PcieEmuClient _upstream;

    private BrokenFakeServer(WebApplication app, PcieEmuClient upstream, string target)
    {
        _app = app;
        _upstream = upstream;
        Target = target;
    }

    public string Target { get; }

    public static async Task<BrokenFakeServer> StartAsync(string upstreamTarget, string upstreamTokenFile)
    {
        var upstream = PcieEmuClient.Connect(upstreamTarget, tokenFile: upstreamTokenFile);
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(System.Net.IPAddress.Loopback, 0, o => o.Protocols = HttpProtocols.Http2));
        builder.Services.AddGrpc();
        builder.Services.AddSingleton(upstream);
        var app = builder.Build();
        app.MapGrpcService<ForwardingPlatform>();
        app.MapGrpcService<ForwardingConfig>();
        app.MapGrpcService<ReorderingSession>();
        await app.StartAsync().W();
        string address = app.Urls.Single().Replace("http://", "tcp://", StringComparison.Ordinal);
        return new BrokenFakeServer(app, upstream, address);
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().W();
        await _app.DisposeAsync();
        _upstream.Dispose();
    }

    private static bool Posted(TransactRequest r) => r.OpCase switch
    {
        TransactRequest.OpOneofCase.ConfigWrite => !r.ConfigWrite.Ack,
        TransactRequest.OpOneofCase.MmioWrite => !r.MmioWrite.Ack,
        TransactRequest.OpOneofCase.MemoryWrite => !r.MemoryWrite.Ack,
        _ => false,
    };

    private static bool Posted(Transaction t) => t.OpCase switch
    {
        Transaction.OpOneofCase.ConfigWrite => !t.ConfigWrite.Ack,
        Transaction.OpOneofCase.MmioWrite => !t.MmioWrite.Ack,
        Transaction.OpOneofCase.MemoryWrite => !t.MemoryWrite.Ack,
        _ => false,
    };

    private sealed class ReorderingSession(PcieEmuClient up) : SessionService.SessionServiceBase
    {
        public override async Task Transact(IAsyncStreamReader<TransactRequest> requestStream, IServerStreamWriter<TransactResponse> responseStream, ServerCallContext context)
        {
            using var call = up.Session.Transact(cancellationToken: context.CancellationToken);
            var pump = Task.Run(async () =>
            {
                while (await call.ResponseStream.MoveNext(context.CancellationToken))
                    await responseStream.WriteAsync(call.ResponseStream.Current);
            });
            var held = new List<TransactRequest>();
            try
            {
                while (await requestStream.MoveNext(context.CancellationToken))
                {
                    var r = requestStream.Current;
                    var reordered = r.Batch.Where(t => !Posted(t)).Concat(r.Batch.Where(Posted)).ToList();
                    r.Batch.Clear();
                    r.Batch.AddRange(reordered);
                    bool allPosted = (r.OpCase == TransactRequest.OpOneofCase.None || Posted(r)) && r.Batch.All(Posted)
                                     && (r.OpCase != TransactRequest.OpOneofCase.None || r.Batch.Count > 0);
                    if (allPosted) { held.Add(r); continue; }
                    await call.RequestStream.WriteAsync(r);
                    foreach (var h in held) await call.RequestStream.WriteAsync(h);
                    held.Clear();
                }
                foreach (var h in held) await call.RequestStream.WriteAsync(h);
                await call.RequestStream.CompleteAsync();
            }
            catch (RpcException) { /* upstream ended the call; the pump reports its status */ }
            catch (InvalidOperationException) { /* writing after upstream ended */ }
            await pump; // an upstream error propagates to our caller as the same status
        }
    }

    private sealed class ForwardingPlatform(PcieEmuClient up) : PlatformService.PlatformServiceBase
    {
        public override async Task<GetPlatformResponse> GetPlatform(GetPlatformRequest request, ServerCallContext context) =>
            await up.Platform.GetPlatformAsync(request, cancellationToken: context.CancellationToken);
        public override async Task<ListFunctionsResponse> ListFunctions(ListFunctionsRequest request, ServerCallContext context) =>
            await up.Platform.ListFunctionsAsync(request, cancellationToken: context.CancellationToken);
        public override async Task<ResetPlatformResponse> ResetPlatform(ResetPlatformRequest request, ServerCallContext context) =>
            await up.Platform.ResetPlatformAsync(request, cancellationToken: context.CancellationToken);
    }

    private sealed class ForwardingConfig(PcieEmuClient up) : ConfigService.ConfigServiceBase
    {
        public override async Task<ReadConfigResponse> ReadConfig(ReadConfigRequest request, ServerCallContext context) =>
            await up.Config.ReadConfigAsync(request, cancellationToken: context.CancellationToken);
        public override async Task<WriteConfigResponse> WriteConfig(WriteConfigRequest request, ServerCallContext context) =>
            await up.Config.WriteConfigAsync(request, cancellationToken: context.CancellationToken);
    }
}
