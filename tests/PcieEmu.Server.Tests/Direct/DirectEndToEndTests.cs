using Grpc.Core;
using Microsoft.Extensions.DependencyInjection;
using PcieEmu.Client;
using PcieEmu.Protocol.V1;
using PcieEmu.Server.Direct;
using PcieEmu.Server.Hosting;
using PcieEmu.Server.Ring;
using PcieEmu.Server.Services;

namespace PcieEmu.Server.Tests.Direct;

/// <summary>The .NET client (Grpc.Net.Client) over a Unix socket against <c>serve --unix-server direct</c>.</summary>
public sealed class DirectEndToEndTests
{
    private const uint Nic = 0x100;

    private static async Task WaitUntil(Func<bool> condition, string what)
    {
        var deadline = T.Deadline;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "timed out waiting until " + what);
            await Task.Delay(10).W();
        }
    }

    [Fact]
    public async Task The_unix_socket_is_served_by_the_direct_loop_with_the_same_machine_as_TCP()
    {
        string dir = Directory.CreateTempSubdirectory("pcie-emu-direct-").FullName;
        var app = ServerHost.Build(new ServeSettings
        {
            Listen = [$"unix://{dir}/emu.sock", "tcp://127.0.0.1:0"],
            Overrides = new Dictionary<string, string?> { ["Machine:RamSize"] = "16777216", ["Machine:RamFilePath"] = Path.Combine(dir, "ram.bin"), ["Server:UnixServer"] = "direct" },
            TokenFile = Path.Combine(dir, "token"),
            RuntimeDirectory = dir,
            UseAppSettings = false,
            UseEnvironment = false,
        }, l => { });
        await app.StartAsync().W();
        try
        {
            var endpoints = ServerHost.BoundEndpoints(app);
            Assert.Equal($"unix://{dir}/emu.sock", endpoints[0]);
            Assert.StartsWith("tcp://127.0.0.1:", endpoints[1], StringComparison.Ordinal);
            if (!OperatingSystem.IsWindows()) Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(dir, "emu.sock")));
            Assert.NotNull(app.Services.GetService<DirectServer>());
            using var unix = PcieEmuClient.Connect(endpoints[0]);
            using var tcp = PcieEmuClient.Connect(endpoints[1], tokenFile: Path.Combine(dir, "token"));
            ulong ram = app.Services.GetRequiredService<PcieEmu.Core.Platform.Machine>().Ram.Base;
            await unix.WriteMemoryAsync(ram, new byte[] { 1, 2, 3, 4 }).W();
            Assert.Equal(new byte[] { 1, 2, 3, 4 }, await tcp.ReadMemoryAsync(ram, 4).W());
        }
        finally
        {
            await app.StopAsync().W();
            await app.DisposeAsync();
        }
        Assert.False(File.Exists(Path.Combine(dir, "emu.sock")));
        Directory.Delete(dir, recursive: true);
    }

    [Fact]
    public async Task A_bad_UnixServer_value_is_refused_naming_the_key()
    {
        var ex = Assert.Throws<ServeConfigurationException>(() => ServerHost.Build(new ServeSettings
        {
            Listen = ["unix:///tmp/never.sock"],
            Overrides = new Dictionary<string, string?> { ["Server:UnixServer"] = "fast" },
            UseAppSettings = false,
            UseEnvironment = false,
        }, l => { }));
        Assert.Contains("Server:UnixServer", ex.Message, StringComparison.Ordinal);
        await Task.CompletedTask;
    }

    [Fact]
    public async Task Unary_calls_health_and_reflection_are_served()
    {
        await using var s = await TestServer.StartAsync("direct");
        Assert.Equal(0x10C98086u, await s.Client.ReadConfig32Async(Nic, 0).W());
        Assert.Equal(4, (await s.Client.ListFunctionsAsync().W()).Count);
        var health = new Grpc.Health.V1.Health.HealthClient(s.Client.Channel);
        var status = await health.CheckAsync(new Grpc.Health.V1.HealthCheckRequest(), deadline: T.Deadline).ResponseAsync.W();
        Assert.Equal(Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.Serving, status.Status);
        var reflection = new Grpc.Reflection.V1Alpha.ServerReflection.ServerReflectionClient(s.Client.Channel);
        using var call = reflection.ServerReflectionInfo(deadline: T.Deadline);
        await call.RequestStream.WriteAsync(new Grpc.Reflection.V1Alpha.ServerReflectionRequest { ListServices = "" }).W();
        await call.RequestStream.CompleteAsync().W();
        Assert.True(await call.ResponseStream.MoveNext().W());
        Assert.Contains(call.ResponseStream.Current.ListServicesResponse.Service, x => x.Name == "pcieemu.v1.SessionService");
    }

    [Fact]
    public async Task Concurrent_unary_calls_on_one_connection_all_complete()
    {
        await using var s = await TestServer.StartAsync("direct");
        var calls = Enumerable.Range(0, 200).Select(i => s.Client.ReadConfig32Async(Nic, (i % 16) * 4)).ToList();
        var values = await Task.WhenAll(calls).W();
        Assert.Equal(0x10C98086u, values[0]);
        Assert.All(Enumerable.Range(0, 200), i => Assert.Equal(values[i % 16], values[i]));
    }

    [Fact]
    public async Task Transact_keeps_order_posted_writes_then_a_read_observe_the_writes()
    {
        await using var s = await TestServer.StartAsync("direct");
        ulong ram = s.Machine.Ram.Base + 0x1000;
        await using var session = s.Client.OpenSession();
        for (uint i = 0; i < 300; i++) await session.PostMmioWriteAsync(ram + i * 4, 4, 0x5000 + i).AsTask().W();
        for (uint i = 0; i < 300; i += 37) Assert.Equal(0x5000ul + i, (await session.ReadMmioAsync(ram + i * 4, 4).W()).Value);
    }

    [Fact]
    public async Task Four_MiB_writes_and_reads_cross_the_flow_control_windows_intact()
    {
        await using var s = await TestServer.StartAsync("direct");
        var data = new byte[LimitsOptions.MemoryTransferCeiling];
        new Random(16).NextBytes(data);
        ulong ram = s.Machine.Ram.Base + 0x10000;
        Assert.Equal(data.Length, await s.Client.WriteMemoryAsync(ram, data).W());
        Assert.Equal(data, await s.Client.ReadMemoryAsync(ram, data.Length).W());
        // And again on the same connection (windows given back), two at once.
        var a = s.Client.ReadMemoryAsync(ram, data.Length);
        var b = s.Client.ReadMemoryAsync(ram, data.Length);
        Assert.Equal(data, await a.W());
        Assert.Equal(data, await b.W());
    }

    [Fact]
    public async Task A_message_over_the_limit_is_RESOURCE_EXHAUSTED()
    {
        await using var s = await TestServer.StartAsync("direct");
        var ex = await Assert.ThrowsAsync<RpcException>(() => s.Client.WriteMemoryAsync(s.Machine.Ram.Base, new byte[5 << 20])).W();
        Assert.Equal(StatusCode.ResourceExhausted, ex.StatusCode);
        Assert.Equal(0x10C98086u, await s.Client.ReadConfig32Async(Nic, 0).W());
    }

    [Fact]
    public async Task A_server_stream_sends_its_headers_at_once_and_a_cancelled_one_frees_its_subscription()
    {
        await using var s = await TestServer.StartAsync("direct");
        var subscribers = s.App.Services.GetRequiredService<InterruptSubscribers>();
        using var cts = new CancellationTokenSource();
        using var stream = await s.Client.OpenInterruptStreamAsync(cancellationToken: cts.Token).W();
        Assert.Equal(1, subscribers.Count);
        cts.Cancel();
        await WaitUntil(() => subscribers.Count == 0, "the cancelled subscription ends on the server");
        Assert.Equal(0x10C98086u, await s.Client.ReadConfig32Async(Nic, 0).W());
    }

    [Fact]
    public async Task A_deadline_ends_a_server_stream_with_DEADLINE_EXCEEDED_and_cancels_the_handler()
    {
        await using var s = await TestServer.StartAsync("direct");
        var subscribers = s.App.Services.GetRequiredService<InterruptSubscribers>();
        using var call = s.Client.Interrupts.SubscribeInterrupts(new SubscribeInterruptsRequest(), deadline: DateTime.UtcNow.AddMilliseconds(300));
        var ex = await Assert.ThrowsAsync<RpcException>(async () => { while (await call.ResponseStream.MoveNext()) { } }).W();
        Assert.Equal(StatusCode.DeadlineExceeded, ex.StatusCode);
        await WaitUntil(() => subscribers.Count == 0, "the handler sees its token cancelled");
    }

    [Fact]
    public async Task OpenRing_is_closed_when_its_client_dies()
    {
        await using var s = await TestServer.StartAsync("direct");
        var rings = s.App.Services.GetRequiredService<SharedRings>();
        var dying = s.NewClient();
        var ring = await dying.OpenRingAsync().W();
        Assert.Equal(PcieEmu.Client.Ring.RingStatus.Successful, ring.ReadConfig(Nic, 0, 4).Status);
        Assert.Equal(1, rings.Open);
        string path = ring.Layout.Path;
        dying.Dispose();   // the connection closes without the ring being closed: what the server sees when a client dies
        await WaitUntil(() => rings.Open == 0, "the server closes the dead client's ring");
        Assert.False(File.Exists(path));
        ring.Dispose();
        Assert.Equal(0x10C98086u, await s.Client.ReadConfig32Async(Nic, 0).W());
    }

    [Fact]
    public async Task Stopping_ends_open_streams_with_UNAVAILABLE_and_removes_the_socket()
    {
        var s = await TestServer.StartAsync("direct");
        using var transact = s.Client.Session.Transact();
        await transact.RequestStream.WriteAsync(new TransactRequest { Tag = 1, ConfigRead = new ConfigReadOp { Rid = Nic, Width = 4 } }).W();
        Assert.True(await transact.ResponseStream.MoveNext().W());
        using var interrupts = await s.Client.OpenInterruptStreamAsync().W();
        var stopping = s.App.StopAsync();
        var ex = await Assert.ThrowsAsync<RpcException>(async () => await transact.ResponseStream.MoveNext()).W();
        Assert.Equal(StatusCode.Unavailable, ex.StatusCode);
        Assert.Contains(ServerShutdown.Detail, ex.Status.Detail, StringComparison.Ordinal);
        await stopping.W();
        Assert.False(File.Exists(s.SocketPath));
        await s.DisposeAsync();
    }
}
