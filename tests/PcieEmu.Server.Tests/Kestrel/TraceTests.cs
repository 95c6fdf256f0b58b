using System.Text.Json;
using Grpc.Core;
using PcieEmu.Protocol.V1;
using PcieEmu.Server.Cli;

namespace PcieEmu.Server.Tests.Kestrel;

/// <summary>TraceService over the wire, serve --trace recording and the Chrome export.</summary>
public sealed class TraceTests
{
    private const uint Pf0 = 0x0100, Pf1 = 0x0101;

    [Fact]
    public void Frame_drops_travel_as_frame_events_and_the_frame_filter_selects_them()
    {
        var drop = new PcieEmu.Core.Events.FrameDropEvent(0x0210, PcieEmu.Core.Events.FrameDropReason.NoRxDescriptors, 0, 1, 60);
        var p = PcieEmu.Server.Services.TraceGrpcService.ToProto(drop);
        Assert.Equal(TraceKind.Frame, p.Kind);
        Assert.Equal("FRAME", p.Token);
        Assert.Equal("port0 q1 DROPPED 60 B: no free receive descriptors", p.Text);
        Assert.Equal(60u, p.Length);
        var (kinds, _) = PcieEmu.Server.Services.TraceGrpcService.ParseFilter(new TraceFilter { Kinds = { "frame" } });
        Assert.True(kinds.HasFlag(PcieEmu.Core.Events.EventKinds.FrameDrop));
        Assert.True(kinds.HasFlag(PcieEmu.Core.Events.EventKinds.Frame));
    }

    [Fact]
    public async Task Filtered_subscriber_sees_only_its_requesters_events_in_order()
    {
        await using var s = await TestServer.StartAsync("unix");
        var c = s.Client;
        using var cts = new CancellationTokenSource(T.Timeout);
        using var call = c.Trace.Subscribe(new TraceFilter { Rids = { "01:00.0" }, Kinds = { "config" } }, cancellationToken: cts.Token);
        await call.ResponseHeadersAsync.W();
        await c.WriteConfigAsync(Pf1, 0x04, 2, 0x6).W();                 // another function: not seen
        await c.WriteConfigAsync(Pf0, 0x170, 2, 2).W();                  // NumVFs
        await c.ReadConfigAsync(Pf1, 0x00, 4).W();
        await c.WriteConfigAsync(Pf0, 0x168, 2, 0x9).W();                // VF Enable | VF MSE
        await c.ReadConfigAsync(Pf0, 0x00, 2).W();                       // Vendor ID
        var got = new List<TraceEvent>();
        while (got.Count < 3 && await call.ResponseStream.MoveNext(cts.Token).W()) got.Add(call.ResponseStream.Current);
        Assert.All(got, e => Assert.Equal(Pf0, e.Rid));
        Assert.All(got, e => Assert.Equal(TraceKind.Config, e.Kind));
        Assert.Equal(["SR-IOV NumVFs", "SR-IOV Control", "Vendor ID"], got.Select(e => e.Register));
        Assert.Contains("VF Enable 0->1", got[1].Text, StringComparison.Ordinal);
        Assert.True(got[0].Sequence < got[1].Sequence && got[1].Sequence < got[2].Sequence);
        Assert.Equal(0x8086ul, got[2].Value);
        s.AssertNoErrors();
    }

    [Theory]
    [InlineData("kinds", "config,bogus")]
    [InlineData("rids", "01:10")]
    [InlineData("rids", "zz:00.0")]
    public async Task Bad_filters_get_invalid_argument_naming_the_field(string field, string value)
    {
        await using var s = await TestServer.StartAsync("unix");
        var filter = new TraceFilter();
        if (field == "kinds") filter.Kinds.AddRange(value.Split(','));
        else filter.Rids.Add(value);
        var ex = T.Rpc(async () =>
        {
            using var call = s.Client.Trace.Subscribe(filter, deadline: T.Deadline);
            await call.ResponseStream.MoveNext();
        });
        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        Assert.StartsWith(field == "kinds" ? "kinds[1]:" : "rids[0]:", ex.Status.Detail, StringComparison.Ordinal);
        // The server goes on.
        Assert.Equal(0x8086u, await s.Client.ReadConfig16Async(Pf0, 0).W());
    }

    [Fact]
    public async Task A_slow_subscriber_gets_gap_events_with_the_count_and_the_stream_goes_on()
    {
        await using var s = await TestServer.StartAsync("unix", new Dictionary<string, string?> { ["Limits:TraceQueueCapacity"] = "16" });
        using var cts = new CancellationTokenSource(T.Timeout);
        using var call = s.Client.Trace.Subscribe(new TraceFilter { Kinds = { "config" }, Rids = { "01:00.0" } }, cancellationToken: cts.Token);
        await call.ResponseHeadersAsync.W();
        const int Total = 50_000;
        for (int i = 0; i < Total; i++) s.Machine.ReadConfig((ushort)Pf0, 0x00, 4);   // far faster than the stream drains
        await s.Client.WriteConfigAsync(Pf0, 0x0C, 1, 0x10).W();                         // one more event: the gap is reported before it
        long seen = 0, missed = 0, gaps = 0;
        while (seen + missed < Total + 1 && await call.ResponseStream.MoveNext(cts.Token).W())
        {
            var e = call.ResponseStream.Current;
            if (e.Kind == TraceKind.Gap) { gaps++; missed += (long)e.Missed; }
            else seen++;
        }
        Assert.True(gaps > 0, "the subscriber never fell behind");
        Assert.Equal(Total + 1, seen + missed);                                           // every event accounted for
        Assert.Equal(0x10u, await s.Client.ReadConfig8Async(Pf0, 0x0C).W());               // the machine went on
    }

    [Fact]
    public async Task Serve_trace_records_to_a_file_and_the_chrome_export_has_one_track_per_function()
    {
        string dir = Directory.CreateTempSubdirectory("pcie-emu-trace-").FullName;
        try
        {
            string rec = Path.Combine(dir, "rec.trace");
            await using (var s = await TestServer.StartAsync("unix", traceFile: rec))
            {
                await s.Client.WriteConfigAsync(Pf0, 0x170, 2, 2).W();
                await s.Client.WriteConfigAsync(Pf0, 0x168, 2, 0x9).W();
                var vf = (await s.Client.ListFunctionsAsync().W()).First(f => f.Rid == 0x0280);   // VF0: First VF Offset 0x180 without ARI
                await s.Client.WriteConfigAsync(vf.Rid, 0x04, 2, 0x6).W();
                s.AssertNoErrors();
            }
            var lines = await File.ReadAllLinesAsync(rec);
            Assert.Contains(lines, l => l.Contains("01:00.0 CFG   W  SR-IOV Control [0x168] = 0x0009: VF Enable 0->1, VF MSE 0->1", StringComparison.Ordinal));
            Assert.Contains(lines, l => l.Contains(" LIFE  VF appeared PF0.VF0", StringComparison.Ordinal));
            if (!OperatingSystem.IsWindows()) Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(rec));

            using var json = new MemoryStream();
            var (events, skipped) = ChromeTrace.Export(lines, json);
            Assert.Equal(lines.Length, events);
            Assert.Equal(0, skipped);
            using var doc = JsonDocument.Parse(json.ToArray());
            var all = doc.RootElement.GetProperty("traceEvents").EnumerateArray().ToList();
            var tracks = all.Where(e => e.GetProperty("ph").GetString() == "M" && e.GetProperty("name").GetString() == "thread_name")
                .ToDictionary(e => e.GetProperty("tid").GetInt32(), e => e.GetProperty("args").GetProperty("name").GetString());
            Assert.Equal("01:00.0", tracks[0x100 + 1]);
            Assert.Equal("02:10.0", tracks[0x280 + 1]);
            var instants = all.Where(e => e.GetProperty("ph").GetString() == "i").ToList();
            Assert.Equal(events, instants.Count);                       // config and lifecycle only: instants
            Assert.All(instants, e => Assert.True(tracks.ContainsKey(e.GetProperty("tid").GetInt32())));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task A_trace_file_that_cannot_be_written_is_a_logged_error_and_the_machine_goes_on()
    {
        await using var s = await TestServer.StartAsync("unix", traceFile: "/proc/pcie-emu-no-such-dir/rec.trace");
        Assert.Contains(s.Logs.Errors, e => e.Contains("Trace recording", StringComparison.Ordinal));
        Assert.Equal(0x8086u, await s.Client.ReadConfig16Async(Pf0, 0).W());
        Assert.Equal(1, s.Logs.Forget("Trace recording"));   // the one error this test expects
    }
}
