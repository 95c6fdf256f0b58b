using System.Text.RegularExpressions;
using PcieEmu.Protocol.V1;

namespace PcieEmu.Drivers.Tests;

/// <summary>
/// The example virtio-net driver (clients/dotnet/VirtioNetDriver) as a separate process against a
/// machine with an 82576 and a virtio-net on a second root port: it resets and negotiates, sets up
/// its queues in the mapped RAM, sends frames the test captures on the device's port (2) and
/// receives a frame the test injects there.
/// </summary>
public sealed class VirtioNetDriverTests
{
    private const string Machine = """
        { "rootPorts": [
            { "device": { "type": "intel-82576" } },
            { "device": { "type": "virtio-net", "mac": "02:00:00:00:77:01" } } ] }
        """;
    private const string Peer = "02:00:00:00:77:09";

    [Fact]
    public async Task The_driver_sends_and_receives_through_the_devices_port()
    {
        await using var server = await Server.StartAsync(Machine);
        using var stop = new CancellationTokenSource(T.Timeout);
        var capture = server.Client.Ethernet.CaptureFrames(new CaptureFramesRequest { Port = 2 }, cancellationToken: stop.Token);
        await capture.ResponseHeadersAsync.W();

        using var driver = new DriverProcess("VirtioNetDriver", server.Target, "run", "--count", "2", "--to", Peer, "--size", "80", "--receive", "1");
        string ready = await driver.WaitForLineAsync("READY");
        Assert.Equal("READY bdf=03:00.0 mac=02:00:00:00:77:01 features=0x100010020 queues=256", ready);   // VERSION_1 | STATUS | MAC
        await driver.WaitForLineAsync("TX done frames=2");
        for (int i = 0; i < 2; i++)
        {
            Assert.True(await capture.ResponseStream.MoveNext(stop.Token).W());
            var f = capture.ResponseStream.Current;
            Assert.Equal((2u, CaptureDirection.ToWire, "03:00.0", 80), (f.Port, f.Direction, f.Function, f.Data.Length));
            Assert.Equal("02000000770902000000770108", Convert.ToHexString(f.Data.Span[..13]).ToLowerInvariant());
        }

        var frame = new byte[60];
        new byte[] { 0x02, 0, 0, 0, 0x77, 0x01, 0x02, 0, 0, 0, 0x77, 0x09, 0x88, 0xB5 }.CopyTo(frame, 0);
        Assert.Equal(1, await server.Client.InjectFrameAsync(2, frame).W());
        Assert.Equal($"RX len=60 dst=02:00:00:00:77:01 src={Peer} type=0x88B5", await driver.WaitForLineAsync("RX "));
        Assert.True(await driver.WaitForExitAsync() == 0, driver.Output);
        Assert.Matches(new Regex("^DONE sent=2 received=1 grpc_calls=[0-9]+$"), await driver.WaitForLineAsync("DONE"));
        await server.Client.AssertNoViolationsAsync().W();
    }

    [Fact]
    public async Task Bench_prints_its_table_and_a_same_run_baseline()
    {
        await using var server = await Server.StartAsync(Machine);
        using var driver = new DriverProcess("VirtioNetDriver", server.Target, "bench", "--frames", "5000", "--batch", "256");
        Assert.True(await driver.WaitForExitAsync() == 0, driver.Output);
        Assert.Contains("| run | frames | bytes | batch | seconds | frames/s | gRPC calls | µs/call |", driver.Lines);
        Assert.Contains(driver.Lines, l => l.StartsWith("| guest->wire | 5000 | 64 | 256 |", StringComparison.Ordinal));
        Assert.Contains(driver.Lines, l => l.StartsWith("| empty doorbell (baseline) | 0 |", StringComparison.Ordinal));
        // 5000 frames in batches of 256: 20 doorbell writes, one gRPC call each.
        Assert.Matches(new Regex("^BENCH frames=5000 pps=[0-9]+ calls=20 "), driver.Lines.Single(l => l.StartsWith("BENCH", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task Without_a_virtio_net_device_the_driver_says_so()
    {
        await using var server = await Server.StartAsync();
        using var driver = new DriverProcess("VirtioNetDriver", server.Target, "run");
        Assert.Equal(1, await driver.WaitForExitAsync());
        Assert.Contains("no virtio-net function (1af4:1041)", driver.Stderr, StringComparison.Ordinal);

        using var bad = new DriverProcess("VirtioNetDriver", server.Target, "run", "--queue-size", "100");
        Assert.Equal(2, await bad.WaitForExitAsync());
        Assert.Contains("--queue-size: 100 is not a power of two", bad.Stderr, StringComparison.Ordinal);
    }
}
