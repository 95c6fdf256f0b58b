using System.Diagnostics;
using Grpc.Core;
using PcieEmu.Client;
using PcieEmu.Protocol.V1;

namespace PcieEmu.Server.Tests.Direct;

/// <summary><c>pcie-emu serve --unix-server direct</c> as a process: the direct loop serves the socket, SIGTERM ends it cleanly.</summary>
public sealed class DirectProcessTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("pcie-emu-direct-proc-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task Serve_with_unix_server_direct_serves_the_socket_on_its_own_threads_and_SIGTERM_ends_a_stream_with_UNAVAILABLE()
    {
        string sock = Path.Combine(_dir, "emu.sock");
        var psi = ProcessRun.PcieEmu(["serve", "--ram-size", "16M", "--ram-file", Path.Combine(_dir, "ram.bin"), "--listen", "unix://" + sock, "--unix-server", "direct"]);
        psi.Environment.Remove("PCIEEMU_Server__UnixServer");
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        try
        {
            var deadline = T.Deadline;
            while (!File.Exists(sock))
            {
                if (p.HasExited) Assert.Fail("server exited: " + await stderr.W());
                Assert.True(DateTime.UtcNow < deadline, "the socket never appeared");
                await Task.Delay(50);
            }
            using var c = PcieEmuClient.Connect("unix://" + sock);
            Assert.Equal(0x10C98086u, await c.ReadConfig32Async(0x100, 0).W());
            // The direct loop's threads (accept and connection) are in the process: Kestrel would serve this socket on pool threads.
            var names = Directory.GetDirectories($"/proc/{p.Id}/task").Select(t => File.ReadAllText(Path.Combine(t, "comm")).Trim()).ToList();
            Assert.True(names.Count(n => n == "pcie-emu direct") >= 2, "thread names: " + string.Join(", ", names));

            using var cts = new CancellationTokenSource(T.Timeout);
            using var sub = c.Interrupts.SubscribeInterrupts(new SubscribeInterruptsRequest(), cancellationToken: cts.Token);
            await sub.ResponseHeadersAsync.W();
            using (var kill = Process.Start("kill", ["-TERM", p.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])) await kill.WaitForExitAsync().W();
            var ex = await Assert.ThrowsAsync<RpcException>(() => sub.ResponseStream.MoveNext(cts.Token)).W();
            Assert.True((StatusCode.Unavailable, "server shutting down") == (ex.StatusCode, ex.Status.Detail), ex.ToString());
            await p.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(5));
            Assert.Equal(0, p.ExitCode);
            string output = await stdout.W();
            Assert.Contains("Listening on unix://" + sock, output, StringComparison.Ordinal);
            Assert.Contains("Shut down; RAM file", output, StringComparison.Ordinal);
            Assert.False(File.Exists(sock));
        }
        finally
        {
            if (!p.HasExited) p.Kill();
        }
    }
}
