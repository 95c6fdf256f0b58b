using System.Text.Json;
using PcieEmu.Server.Cli;

namespace PcieEmu.Server.Tests.Cli;

[CollectionDefinition("Console", DisableParallelization = true)]
public sealed class ConsoleCollection;

/// <summary><c>pcie-emu trace</c> run in-process with the console captured.</summary>
[Collection("Console")]
public sealed class TraceCliTests
{
    internal static async Task<(int Exit, string Out, string Err)> RunAsync(params string[] args)
    {
        var (oldOut, oldErr) = (Console.Out, Console.Error);
        using var o = new StringWriter();
        using var e = new StringWriter();
        Console.SetOut(o);
        Console.SetError(e);
        try
        {
            int exit = await Commands.Build().Parse(args).InvokeAsync().WaitAsync(T.Timeout);
            return (exit, o.ToString(), e.ToString());
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldErr);
        }
    }

    [Fact]
    public async Task Trace_prints_one_decoded_line_per_event_of_the_filter()
    {
        await using var s = await TestServer.StartAsync("unix");
        int before = s.Machine.Events.SubscriberCount;   // the checker's subscription
        var run = RunAsync("trace", "--target", s.Target, "--rid", "01:00.0", "--kind", "config,lifecycle", "--duration", "3");
        // Wait until the subscription is live, then act.
        var deadline = T.Deadline;
        while (s.Machine.Events.SubscriberCount == before && DateTime.UtcNow < deadline) await Task.Delay(20);
        await s.Client.WriteConfigAsync(0x101, 0x04, 2, 0x6).W();   // PF1: filtered out
        await s.Client.WriteConfigAsync(0x100, 0x04, 2, 0x6).W();
        await s.Client.ReadConfigAsync(0x100, 0x00, 2).W();
        var (exit, output, err) = await run;
        Assert.True(exit == 0, err);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);
        Assert.Matches(@"^\d+\.\d{6} 01:00\.0 CFG   W  Command \[0x004\] = 0x0006", lines[0]);
        Assert.Matches(@"^\d+\.\d{6} 01:00\.0 CFG   R  Vendor ID \[0x000\] -> 0x8086$", lines[1]);
    }

    [Theory]
    [InlineData("--kind", "config,bogus", "kinds[1]")]
    [InlineData("--rid", "01:00", "rids[0]")]
    public async Task Bad_filters_exit_2_naming_the_field(string option, string value, string field)
    {
        await using var s = await TestServer.StartAsync("unix");
        var (exit, _, err) = await RunAsync("trace", "--target", s.Target, option, value);
        Assert.Equal(2, exit);
        Assert.Contains(field, err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Export_chrome_converts_a_recording()
    {
        string dir = Directory.CreateTempSubdirectory("pcie-emu-trace-cli-").FullName;
        try
        {
            string rec = Path.Combine(dir, "rec.trace"), json = Path.Combine(dir, "out.json");
            await File.WriteAllLinesAsync(rec,
            [
                "1.000001 01:00.0 CFG   W  Command [0x004] = 0x0006: Memory Space 0->1, Bus Master 0->1",
                "1.000500 01:00.0 DMA   R  iova 0x0010_0000 -> 0x0010_0000 32 B (TX q0 desc 0-1)",
                "1.000900 01:00.0 FRAME port0 q0 -> wire 64 B 02:00:00:00:10:01 <- 02:00:00:00:10:00 type 0x0800",
                "1.001000 --:--.- GAP   12 event(s) lost: this subscriber fell behind",
            ]);
            var (exit, _, err) = await RunAsync("trace", "--export", "chrome", json, "--input", rec);
            Assert.True(exit == 0, err);
            using var doc = JsonDocument.Parse(await File.ReadAllBytesAsync(json));
            var ev = doc.RootElement.GetProperty("traceEvents").EnumerateArray().ToList();
            var dma = ev.Single(e => e.TryGetProperty("cat", out var c) && c.GetString() == "dma");
            Assert.Equal("X", dma.GetProperty("ph").GetString());
            Assert.Equal(1000500.0, dma.GetProperty("ts").GetDouble(), 3);
            Assert.Equal("DMA R TX q0 desc 0-1", dma.GetProperty("name").GetString());   // named by its purpose
            Assert.Equal(0.016, dma.GetProperty("dur").GetDouble(), 6);                    // 32 B at 2 GB/s
            Assert.Equal("X", ev.Single(e => e.TryGetProperty("cat", out var c) && c.GetString() == "frame").GetProperty("ph").GetString());
            Assert.Equal("i", ev.Single(e => e.TryGetProperty("cat", out var c) && c.GetString() == "config").GetProperty("ph").GetString());
            var names = ev.Where(e => e.GetProperty("name").GetString() == "thread_name").Select(e => e.GetProperty("args").GetProperty("name").GetString()).ToList();
            Assert.Equal(["machine", "01:00.0"], names);

            var (missing, _, err2) = await RunAsync("trace", "--export", "chrome", json);
            Assert.Equal(2, missing);
            Assert.Contains("--input", err2, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
