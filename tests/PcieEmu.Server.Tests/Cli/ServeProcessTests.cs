using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using PcieEmu.Client;
using PcieEmu.Protocol.V1;
using PcieEmu.Server.Hosting;

namespace PcieEmu.Server.Tests.Cli;

/// <summary>Issue 9, defects 7 and 8: `pcie-emu serve` as a process: SIGTERM, bind errors in one line, --allow-remote warns.</summary>
public sealed class ServeProcessTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("pcie-emu-proc-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private Process Serve(params string[] args) =>
        Process.Start(ProcessRun.PcieEmu(["serve", "--ram-size", "16M", "--ram-file", Path.Combine(_dir, "ram.bin"), .. args]))!;

    [Fact]
    public async Task SIGTERM_with_a_stream_open_ends_it_with_UNAVAILABLE_and_the_process_exits_at_once()
    {
        string sock = Path.Combine(_dir, "emu.sock");
        using var p = Serve("--listen", "unix://" + sock);
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        try
        {
            while (!File.Exists(sock))
            {
                if (p.HasExited) Assert.Fail("server exited: " + await stderr.W());
                await Task.Delay(50);
            }
            using var c = PcieEmuClient.Connect("unix://" + sock);
            using var cts = new CancellationTokenSource(T.Timeout);
            using var sub = c.Interrupts.SubscribeInterrupts(new SubscribeInterruptsRequest(), cancellationToken: cts.Token);
            await sub.ResponseHeadersAsync.W();

            using (var kill = Process.Start("kill", ["-TERM", p.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])) await kill.WaitForExitAsync().W();
            var ex = await Assert.ThrowsAsync<RpcException>(() => sub.ResponseStream.MoveNext(cts.Token)).W();
            Assert.True((StatusCode.Unavailable, "server shutting down") == (ex.StatusCode, ex.Status.Detail), ex.ToString());
            // Not the 30 s host shutdown timeout: a hang here fails the test.
            await p.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(5));
            Assert.Equal(0, p.ExitCode);
            Assert.Contains("Shut down; RAM file", await stdout.W());
            Assert.False(File.Exists(sock));
        }
        finally
        {
            if (!p.HasExited) p.Kill();
        }
    }

    [Fact]
    public async Task A_TCP_port_in_use_is_a_one_line_error()
    {
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        int port = ((IPEndPoint)taken.LocalEndpoint).Port;
        using var p = Serve("--listen", $"tcp://127.0.0.1:{port}");
        var (code, output, err) = await ProcessRun.FinishAsync(p);
        Assert.Equal(1, code);
        Assert.DoesNotContain("Exception", output);   // no stack trace in the log either
        Assert.Equal($"pcie-emu serve: cannot listen: Failed to bind to address http://127.0.0.1:{port}: address already in use.\n", err);
    }

    [Fact]
    public async Task An_IPv4_mapped_loopback_address_listens_on_the_IPv4_address()
    {
        await using var s = await StartInProcess(new ServeSettings { Listen = ["tcp://[::ffff:127.0.0.1]:0"] });
        Assert.StartsWith("tcp://127.0.0.1:", ServerHost.BoundEndpoints(s.App).Single());
    }

    [Fact]
    public async Task Allow_remote_warns_in_the_log()
    {
        await using var s = await StartInProcess(new ServeSettings { Listen = ["tcp://0.0.0.0:0"], AllowRemote = true });
        Assert.Contains(s.Logs.Entries, e => e.Level == LogLevel.Warning && e.Message.StartsWith("Listening on tcp://0.0.0.0:0, which is not a loopback address (--allow-remote)", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Serve_prints_the_web_view_url_with_the_token_of_its_token_file()
    {
        string sock = Path.Combine(_dir, "emu.sock"), tokenFile = Path.Combine(_dir, "token");
        using var p = Serve("--listen", "unix://" + sock, "--web", "tcp://127.0.0.1:0", "--token-file", tokenFile);
        try
        {
            var deadline = T.Deadline;
            string? line = null;
            while (line == null && DateTime.UtcNow < deadline)
            {
                string? l = await p.StandardOutput.ReadLineAsync().W();
                if (l == null) break;
                if (l.Contains("Web view: ", StringComparison.Ordinal)) line = l;
            }
            Assert.NotNull(line);
            var m = System.Text.RegularExpressions.Regex.Match(line, @"Web view: http://127\.0\.0\.1:(\d+)/\?token=([0-9a-f]{64})$");
            Assert.True(m.Success, line);
            Assert.Equal((await File.ReadAllTextAsync(tokenFile).W()).Trim(), m.Groups[2].Value);
        }
        finally
        {
            if (!p.HasExited) p.Kill();
            await p.WaitForExitAsync().W();
        }
    }

    [Fact]
    public async Task A_bad_web_option_is_a_one_line_error_naming_it()
    {
        using var p = Serve("--listen", "unix://" + Path.Combine(_dir, "emu.sock"), "--web", "unix:///tmp/x.sock");
        var (code, _, err) = await ProcessRun.FinishAsync(p);
        Assert.Equal(2, code);
        Assert.Equal("pcie-emu serve: --web unix:///tmp/x.sock: the web view listens on TCP only (tcp://HOST:PORT, or 'off')\n", err);
    }

    [Fact]
    public async Task A_non_loopback_web_view_warns_in_the_log()
    {
        await using var s = await StartInProcess(new ServeSettings { Listen = ["unix://" + Path.Combine(_dir, "emu.sock")], AllowRemote = true, Web = "tcp://0.0.0.0:0" });
        Assert.Contains(s.Logs.Entries, e => e.Level == LogLevel.Warning && e.Message.StartsWith("The web view listens on http://0.0.0.0:", StringComparison.Ordinal));
    }

    private async Task<Started> StartInProcess(ServeSettings settings)
    {
        var logs = new CapturingLoggerProvider();
        var app = ServerHost.Build(new ServeSettings
        {
            Listen = settings.Listen, AllowRemote = settings.AllowRemote, Web = settings.Web, UseAppSettings = false, UseEnvironment = false,
            TokenFile = Path.Combine(_dir, "token"),
            Overrides = new Dictionary<string, string?> { ["Machine:RamSize"] = "8388608", ["Machine:RamFilePath"] = Path.Combine(_dir, "ram.bin") },
        }, l => l.AddProvider(logs));
        await app.StartAsync().W();
        return new Started(app, logs);
    }

    private sealed record Started(Microsoft.AspNetCore.Builder.WebApplication App, CapturingLoggerProvider Logs) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            await App.StopAsync().W();
            await App.DisposeAsync().AsTask().W();
        }
    }
}
