using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Grpc.Core;
using PcieEmu.Client;

namespace PcieEmu.Server.Tests.Kestrel;

/// <summary>
/// Issue 19: a unary call to a server that never answers ends with DEADLINE_EXCEEDED after the
/// client's timeout (30 s unless set), overridable per client and per call.
/// </summary>
public sealed class ClientDeadlineTests
{
    /// <summary>A TCP listener that accepts connections and never says a word.</summary>
    private sealed class HungServer : IDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly List<Socket> _accepted = [];
        private readonly CancellationTokenSource _stop = new();

        public HungServer()
        {
            _listener.Start();
            _ = Task.Run(async () =>
            {
                try
                {
                    while (true)
                    {
                        var s = await _listener.AcceptSocketAsync(_stop.Token);
                        lock (_accepted) _accepted.Add(s);
                    }
                }
                catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException) { }
            });
        }

        public string Target => $"tcp://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}";

        public void Dispose()
        {
            _stop.Cancel();
            _listener.Stop();
            lock (_accepted) foreach (var s in _accepted) s.Dispose();
            _stop.Dispose();
        }
    }

    [Fact]
    public void Default_timeout_is_30_seconds()
    {
        using var c = PcieEmuClient.Connect("tcp://127.0.0.1:1", token: "x");
        Assert.Equal(TimeSpan.FromSeconds(30), c.Timeout);
        Assert.Equal(TimeSpan.FromSeconds(2), c.WithTimeout(TimeSpan.FromSeconds(2)).Timeout);
        Assert.Throws<ArgumentOutOfRangeException>(() => c.WithTimeout(TimeSpan.Zero));
    }

    [Fact]
    public async Task A_hung_server_gives_DeadlineExceeded_after_the_client_timeout()
    {
        using var hung = new HungServer();
        using var c = PcieEmuClient.Connect(hung.Target, token: "x", timeout: TimeSpan.FromMilliseconds(500));
        var sw = Stopwatch.StartNew();
        var ex = await Assert.ThrowsAsync<RpcException>(() => c.ListFunctionsAsync()).W();
        Assert.Equal(StatusCode.DeadlineExceeded, ex.StatusCode);
        Assert.True(sw.Elapsed >= TimeSpan.FromMilliseconds(400), $"ended after {sw.Elapsed}");
        ex = await Assert.ThrowsAsync<RpcException>(() => c.ReadMmio32Async(0x1000)).W();
        Assert.Equal(StatusCode.DeadlineExceeded, ex.StatusCode);
    }

    [Fact]
    public async Task WithTimeout_and_a_stub_deadline_override_the_default_per_call()
    {
        using var hung = new HungServer();
        using var c = PcieEmuClient.Connect(hung.Target, token: "x", timeout: TimeSpan.FromMinutes(10));
        // Per call: a shorter timeout on the same connection...
        var ex = await Assert.ThrowsAsync<RpcException>(() => c.WithTimeout(TimeSpan.FromMilliseconds(300)).ReadConfig32Async(0x100, 0)).W();
        Assert.Equal(StatusCode.DeadlineExceeded, ex.StatusCode);
        // ...or a deadline on a raw stub call, which the default never replaces.
        ex = await Assert.ThrowsAsync<RpcException>(() => c.Platform.GetPlatformAsync(new PcieEmu.Protocol.V1.GetPlatformRequest(),
            deadline: DateTime.UtcNow.AddMilliseconds(300)).ResponseAsync).W();
        Assert.Equal(StatusCode.DeadlineExceeded, ex.StatusCode);
        // Without either, the 10-minute default holds: still pending after a second.
        var pending = c.ListFunctionsAsync();
        await Task.Delay(1000);
        Assert.False(pending.IsCompleted);
    }
}
