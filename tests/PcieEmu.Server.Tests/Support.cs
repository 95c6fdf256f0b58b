using System.Collections.Concurrent;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using PcieEmu.Client;
using PcieEmu.Core.Platform;
using PcieEmu.Server.Hosting;

namespace PcieEmu.Server.Tests;

/// <summary>Timeouts: every await in these tests goes through one of these.</summary>
internal static class T
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    public static Task<TResult> W<TResult>(this Task<TResult> task) => task.WaitAsync(Timeout);
    public static Task W(this Task task) => task.WaitAsync(Timeout);
    public static Task<TResult> W<TResult>(this AsyncUnaryCall<TResult> call) => call.ResponseAsync.WaitAsync(Timeout);
    public static DateTime Deadline => DateTime.UtcNow + Timeout;

    /// <summary>
    /// Reads a stuck subscriber's stream to its end: it must end with RESOURCE_EXHAUSTED whose detail
    /// names the missed count ("{n} {unit}(s) were missed") and whose "pcieemu-missed" trailer
    /// carries it. Returns (messages received, missed).
    /// </summary>
    public static async Task<(long Received, long Missed)> DrainCutOff<TMsg>(IAsyncStreamReader<TMsg> stream, string unit, CancellationToken ct)
    {
        long got = 0;
        var ex = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            while (await stream.MoveNext(ct)) got++;
        }).W();
        Assert.Equal(StatusCode.ResourceExhausted, ex.StatusCode);
        long missed = long.Parse(ex.Trailers.GetValue("pcieemu-missed")!, System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(missed > 0);
        Assert.Contains($"{missed} {unit}(s) were missed", ex.Status.Detail);
        return (got, missed);
    }

    public static RpcException Rpc(Func<Task> action) => Assert.ThrowsAsync<RpcException>(action).WaitAsync(Timeout).GetAwaiter().GetResult();
}

/// <summary>Collects log entries at Warning and above so tests can fail on unexpected server errors.</summary>
internal sealed class CapturingLoggerProvider : ILoggerProvider
{
    public ConcurrentQueue<(LogLevel Level, string Category, string Message)> Entries { get; } = new();

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);
    public void Dispose() { }

    public IEnumerable<string> Errors => Entries.Where(e => e.Level >= LogLevel.Error).Select(e => $"{e.Category}: {e.Message}");

    /// <summary>Removes the entries a test expected (their message contains <paramref name="text"/>), so
    /// <see cref="TestServer.AssertNoErrors"/> judges only the rest; returns how many were removed.</summary>
    public int Forget(string text)
    {
        int removed = 0, n = Entries.Count;
        for (int i = 0; i < n && Entries.TryDequeue(out var e); i++)
        {
            if (e.Message.Contains(text, StringComparison.Ordinal)) removed++;
            else Entries.Enqueue(e);
        }
        return removed;
    }

    private sealed class Logger(CapturingLoggerProvider owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel)) owner.Entries.Enqueue((logLevel, category, formatter(state, exception) + (exception == null ? "" : " " + exception)));
        }
    }
}

/// <summary>A real server (Kestrel) on a free loopback TCP port or a Unix socket in a temp directory.</summary>
internal sealed class TestServer : IAsyncDisposable
{
    private readonly string _dir;

    private TestServer(WebApplication app, string target, string dir, CapturingLoggerProvider logs)
    {
        App = app;
        Target = target;
        _dir = dir;
        Logs = logs;
        Client = NewClient();
    }

    public WebApplication App { get; }
    public string Target { get; }
    public PcieEmuClient Client { get; }
    public CapturingLoggerProvider Logs { get; }
    public Machine Machine => App.Services.GetRequiredService<Machine>();
    public string SocketPath => Path.Combine(_dir, "emu.sock");
    /// <summary>Where the server writes its TCP token (in the test's own directory).</summary>
    public string TokenFile => Path.Combine(_dir, "token");
    public string Directory => _dir;
    /// <summary>The web view's address (http://127.0.0.1:PORT) when started with one.</summary>
    public string? WebAddress => ServerHost.WebAddress(App);

    public static async Task<TestServer> StartAsync(string transport, IDictionary<string, string?>? overrides = null, string? pcapDirectory = null,
        TcpAuthMode tcpAuth = TcpAuthMode.Token, Func<string, IList<string>>? vfioUser = null, string? traceFile = null, bool check = true,
        string? machineJson = null,
        string? web = null)
    {
        string dir = System.IO.Directory.CreateTempSubdirectory("pcie-emu-test-").FullName;
        var all = new Dictionary<string, string?>
        {
            ["Machine:RamSize"] = (16 << 20).ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Machine:RamFilePath"] = Path.Combine(dir, "ram.bin"),
        };
        // "direct": a Unix socket served by the direct loop (issue 16; also what "unix" gets by default);
        // "kestrel-unix": a Unix socket served by Kestrel (--unix-server kestrel). PCIEEMU_Server__UnixServer
        // switches every "unix" server of a run (the servers here read no environment otherwise).
        if (transport is "direct" or "kestrel-unix")
        {
            all["Server:UnixServer"] = transport == "direct" ? "direct" : "kestrel";
            transport = "unix";
        }
        else if (Environment.GetEnvironmentVariable("PCIEEMU_Server__UnixServer") is { Length: > 0 } unixServer)
            all["Server:UnixServer"] = unixServer;
        if (overrides != null) foreach (var kv in overrides) all[kv.Key] = kv.Value;
        var logs = new CapturingLoggerProvider();
        string? machineFile = null;
        if (machineJson != null) await File.WriteAllTextAsync(machineFile = Path.Combine(dir, "machine.json"), machineJson).WaitAsync(T.Timeout);
        var app = ServerHost.Build(new ServeSettings
        {
            MachineFile = machineFile,
            Listen = [transport == "unix" ? $"unix://{dir}/emu.sock" : "tcp://127.0.0.1:0"],
            Overrides = all,
            PcapDirectory = pcapDirectory,
            TraceFile = traceFile,
            Check = check,
            Web = web,
            TokenFile = Path.Combine(dir, "token"),
            RuntimeDirectory = dir,
            TcpAuth = tcpAuth,
            VfioUser = vfioUser?.Invoke(dir) ?? [],
            UseAppSettings = false,
            UseEnvironment = false,
        }, l => l.AddProvider(logs));
        await app.StartAsync().WaitAsync(T.Timeout);
        return new TestServer(app, ServerHost.BoundEndpoints(app).Single(), dir, logs);
    }

    /// <summary>A client of this server, with its token when it wrote one (TCP with auth on).</summary>
    public PcieEmuClient NewClient() => PcieEmuClient.Connect(Target, tokenFile: File.Exists(TokenFile) ? TokenFile : null);

    public void AssertNoErrors() => Assert.True(!Logs.Errors.Any(), string.Join("\n", Logs.Errors));

    private bool _disposed;

    public async ValueTask DisposeAsync()
    {
        if (_disposed) return;
        _disposed = true;
        Client.Dispose();
        await App.StopAsync().WaitAsync(T.Timeout);
        await App.DisposeAsync().AsTask().W();
        try { System.IO.Directory.Delete(_dir, recursive: true); } catch (IOException) { }
        // Every test fails on an error the server logged that it did not expect (a test that
        // expects one clears Logs.Entries of it first), including errors logged while stopping.
        AssertNoErrors();
    }
}
