using System.Collections.Concurrent;
using System.Diagnostics;
using System.Reflection;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using PcieEmu.Client;
using PcieEmu.Server.Hosting;

namespace PcieEmu.Drivers.Tests;

internal static class T
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    public static Task<TResult> W<TResult>(this Task<TResult> task) => task.WaitAsync(Timeout);
    public static Task W(this Task task) => task.WaitAsync(Timeout);
}

/// <summary>A real pcie-emu server (Kestrel, in this process) on a free loopback port with its own RAM file.</summary>
internal sealed class Server : IAsyncDisposable
{
    private readonly string _dir;
    private readonly WebApplication _app;

    private Server(WebApplication app, string dir)
    {
        _app = app;
        _dir = dir;
        Target = ServerHost.BoundEndpoints(app).Single();
        Client = PcieEmuClient.Connect(Target, tokenFile: TokenFile);
        Tokens[Target] = File.ReadAllText(TokenFile).Trim();
    }

    /// <summary>Each running server's token by target: driver processes get it in $PCIEEMU_TOKEN.</summary>
    public static ConcurrentDictionary<string, string> Tokens { get; } = new(StringComparer.Ordinal);

    /// <summary>The server's token file (TCP needs its token).</summary>
    public string TokenFile => Path.Combine(_dir, "token");

    public string Target { get; }
    public PcieEmuClient Client { get; }

    /// <summary>The server's machine (in this process), for observers of its event path.</summary>
    public Core.Platform.Machine Machine => _app.Services.GetRequiredService<Core.Platform.Machine>();

    /// <summary>A server of the default machine, or of the description in <paramref name="machineJson"/>.</summary>
    public static async Task<Server> StartAsync(string? machineJson = null)
    {
        string dir = Directory.CreateTempSubdirectory("pcie-emu-drivers-").FullName;
        string? machineFile = null;
        if (machineJson != null) await File.WriteAllTextAsync(machineFile = Path.Combine(dir, "machine.json"), machineJson).W();
        var app = ServerHost.Build(new ServeSettings
        {
            MachineFile = machineFile,
            Listen = ["tcp://127.0.0.1:0"],
            TokenFile = Path.Combine(dir, "token"),
            Overrides = new Dictionary<string, string?>
            {
                ["Machine:RamSize"] = (64 << 20).ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["Machine:RamFilePath"] = Path.Combine(dir, "ram.bin"),
            },
            UseAppSettings = false,
            UseEnvironment = false,
        });
        await app.StartAsync().W();
        return new Server(app, dir);
    }

    public async ValueTask DisposeAsync()
    {
        Tokens.TryRemove(Target, out _);
        Client.Dispose();
        await _app.StopAsync().W();
        await _app.DisposeAsync().AsTask().W();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}

/// <summary>A driver program run as its own process (<c>dotnet Driver.dll args</c>), its output collected line by line.</summary>
internal sealed class DriverProcess : IDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _lines = new();
    private readonly SemaphoreSlim _lineAdded = new(0);
    private readonly System.Text.StringBuilder _stderr = new();

    public DriverProcess(string name, string target, params string[] args) : this(name, target, false, args) { }

    /// <summary><paramref name="stdin"/>: the test writes the process's standard input (<see cref="SendLineAsync"/>).</summary>
    public DriverProcess(string name, string target, bool stdin, params string[] args)
    {
        Name = name;
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = stdin, UseShellExecute = false };
        psi.ArgumentList.Add(DllPath(name));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.ArgumentList.Add("--target");
        psi.ArgumentList.Add(target);
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        // The drivers find the TCP token the way every client does: $PCIEEMU_TOKEN here.
        if (Server.Tokens.TryGetValue(target, out var token)) psi.Environment["PCIEEMU_TOKEN"] = token;
        else psi.Environment.Remove("PCIEEMU_TOKEN");
        _process = new Process { StartInfo = psi };
        _process.OutputDataReceived += (_, e) => { if (e.Data != null) { _lines.Enqueue(e.Data); _lineAdded.Release(); } };
        _process.ErrorDataReceived += (_, e) => { if (e.Data != null) lock (_stderr) _stderr.AppendLine(e.Data); };
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public string Name { get; }
    public IReadOnlyList<string> Lines => [.. _lines];
    public string Output => string.Join('\n', _lines) + "\nstderr:\n" + Stderr;
    public string Stderr { get { lock (_stderr) return _stderr.ToString(); } }

    /// <summary>Waits for a line starting with <paramref name="prefix"/>; fails with the output so far if the process exits or time runs out.</summary>
    public async Task<string> WaitForLineAsync(string prefix)
    {
        var deadline = DateTime.UtcNow + T.Timeout;
        while (true)
        {
            var hit = _lines.FirstOrDefault(l => l.StartsWith(prefix, StringComparison.Ordinal));
            if (hit != null) return hit;
            if (_process.HasExited && !await _lineAdded.WaitAsync(200))
                Assert.Fail($"{Name} exited ({_process.ExitCode}) before printing '{prefix}':\n{Output}");
            if (DateTime.UtcNow > deadline) Assert.Fail($"{Name}: no '{prefix}' within {T.Timeout}:\n{Output}");
            await _lineAdded.WaitAsync(TimeSpan.FromMilliseconds(200));
        }
    }

    /// <summary>Waits until <paramref name="count"/> lines start with <paramref name="prefix"/>; returns them.</summary>
    public async Task<List<string>> WaitForLinesAsync(string prefix, int count)
    {
        var deadline = DateTime.UtcNow + T.Timeout;
        while (true)
        {
            var hits = _lines.Where(l => l.StartsWith(prefix, StringComparison.Ordinal)).ToList();
            if (hits.Count >= count) return hits;
            if (_process.HasExited && !await _lineAdded.WaitAsync(200))
                Assert.Fail($"{Name} exited ({_process.ExitCode}) after {hits.Count} of {count} '{prefix}' lines:\n{Output}");
            if (DateTime.UtcNow > deadline) Assert.Fail($"{Name}: {hits.Count} of {count} '{prefix}' lines within {T.Timeout}:\n{Output}");
            await _lineAdded.WaitAsync(TimeSpan.FromMilliseconds(200));
        }
    }

    /// <summary>Writes one line to the process's standard input (started with stdin redirected).</summary>
    public async Task SendLineAsync(string line)
    {
        await _process.StandardInput.WriteLineAsync(line).W();
        await _process.StandardInput.FlushAsync().W();
    }

    public async Task<int> WaitForExitAsync()
    {
        using var cts = new CancellationTokenSource(T.Timeout);
        try { await _process.WaitForExitAsync(cts.Token); }
        catch (OperationCanceledException) { Assert.Fail($"{Name} did not exit within {T.Timeout}:\n{Output}"); }
        _process.WaitForExit();   // drains the redirected output
        return _process.ExitCode;
    }

    public static string DllPath(string name)
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir != null && !File.Exists(Path.Combine(dir.FullName, "PcieEmu.sln"))) dir = dir.Parent;
        Assert.NotNull(dir);
        string config = typeof(DriverProcess).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Debug";
        string path = Path.Combine(dir.FullName, "clients", "dotnet", name, "bin", config, "net10.0", name + ".dll");
        Assert.True(File.Exists(path), $"{path} is missing (build clients/dotnet/{name})");
        return path;
    }

    public void Dispose()
    {
        try { if (!_process.HasExited) _process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
        _process.WaitForExit(10_000);
        _process.Dispose();
        _lineAdded.Dispose();
    }
}
