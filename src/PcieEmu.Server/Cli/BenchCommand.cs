using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Grpc.Health.V1;
using Microsoft.Extensions.Logging;
using PcieEmu.Client;
using PcieEmu.Protocol.V1;
using PcieEmu.Server.Hosting;

namespace PcieEmu.Server.Cli;

/// <summary>
/// <c>pcie-emu bench</c>: a load generator. Without --target it starts a server in this process on a
/// free loopback TCP port and a temporary Unix socket and measures both. Prints one table.
/// </summary>
public static class BenchCommand
{
    /// <summary>One measured row.</summary>
    public sealed record Row(string Transport, string Workload, long Operations, double Seconds, double P50Us, double P99Us)
    {
        /// <summary>Operations per second.</summary>
        public double Rate => Operations / Seconds;
    }

    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var count = new Option<int>("--count") { Description = "Round trips per latency workload", DefaultValueFactory = _ => 20000 };
        var batch = new Option<int>("--batch") { Description = "Transactions per TransactRequest in the pipelined workloads", DefaultValueFactory = _ => 256 };
        var total = new Option<int>("--pipelined") { Description = "Transactions per pipelined workload", DefaultValueFactory = _ => 1_000_000 };
        var cmd = new Command("bench", "Load generator: unary and streamed latency and throughput over TCP and the Unix socket") { count, batch, total };
        cmd.SetAction(async (parse, ct) =>
        {
            int n = Math.Max(100, parse.GetValue(count));
            int b = Math.Clamp(parse.GetValue(batch), 1, 1024);
            int p = Math.Max(b, parse.GetValue(total));
            var targets = new List<string>();
            string? tokenFile = parse.GetValue(Commands.TokenFile);
            Microsoft.AspNetCore.Builder.WebApplication? app = null;
            string? sockDir = null;
            if (parse.GetValue(Commands.Target) is { } t) targets.Add(t);
            else
            {
                sockDir = Directory.CreateTempSubdirectory("pcie-emu-bench-").FullName;
                app = ServerHost.Build(new ServeSettings
                {
                    Listen = ["tcp://127.0.0.1:0", $"unix://{sockDir}/bench.sock"],
                    TokenFile = Path.Combine(sockDir, "token"),
                    Overrides = new Dictionary<string, string?> { ["Machine:RamSize"] = (64 << 20).ToString(CultureInfo.InvariantCulture) },
                    UseAppSettings = false,
                }, l => l.SetMinimumLevel(LogLevel.Warning).AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace));
                await app.StartAsync(ct).ConfigureAwait(false);
                tokenFile = Path.Combine(sockDir, "token");
                targets.AddRange(ServerHost.BoundEndpoints(app).OrderBy(e => e.StartsWith("unix", StringComparison.Ordinal) ? 1 : 0));
            }
            try
            {
                var rows = new List<Row>();
                foreach (var target in targets)
                {
                    string transport = target.StartsWith("unix", StringComparison.Ordinal) ? "unix" : "tcp";
                    await Console.Error.WriteLineAsync($"bench: {target}").ConfigureAwait(false);
                    rows.AddRange(await RunAsync(target, transport, n, b, p, tokenFile, ct).ConfigureAwait(false));
                }
                await Console.Out.WriteAsync(FormatTable(rows, b)).ConfigureAwait(false);
                return 0;
            }
            finally
            {
                if (app != null) { await app.StopAsync(CancellationToken.None).ConfigureAwait(false); await app.DisposeAsync().ConfigureAwait(false); }
                if (sockDir != null) Directory.Delete(sockDir, recursive: true);
            }
        });
        return cmd;
    }

    /// <summary>Runs every workload against one target (on TCP with the token of <paramref name="tokenFile"/> or found as usual).</summary>
    public static async Task<IReadOnlyList<Row>> RunAsync(string target, string transport, int n, int batch, int pipelined, string? tokenFile, CancellationToken ct)
    {
        using var client = PcieEmuClient.Connect(target, tokenFile: tokenFile);
        var rows = new List<Row>();
        var health = new HealthCheckRequest();
        var read = new ReadConfigRequest { Rid = 0x0100, Offset = 0, Width = 4 };

        // Warm up both paths (JIT, connection), then interleave the two unary workloads in rounds so
        // machine noise hits them alike.
        for (int i = 0; i < 2000; i++)
        {
            await client.Health.CheckAsync(health, cancellationToken: ct).ConfigureAwait(false);
            await client.Config.ReadConfigAsync(read, cancellationToken: ct).ConfigureAwait(false);
        }
        var healthLat = new List<double>(n);
        var readLat = new List<double>(n);
        double healthSec = 0, readSec = 0;
        const int Rounds = 10;
        for (int round = 0; round < Rounds; round++)
        {
            healthSec += await Unary(() => client.Health.CheckAsync(health, cancellationToken: ct).ResponseAsync, n / Rounds, healthLat).ConfigureAwait(false);
            readSec += await Unary(() => client.Config.ReadConfigAsync(read, cancellationToken: ct).ResponseAsync, n / Rounds, readLat).ConfigureAwait(false);
        }
        rows.Add(Summarize(transport, "health check (unary baseline)", healthLat, healthSec));
        rows.Add(Summarize(transport, "ReadConfig (unary)", readLat, readSec));

        // Transact ping-pong: one read per message, wait for its completion.
        using (var call = client.Session.Transact(cancellationToken: ct))
        {
            var lat = new List<double>(n);
            var req = new TransactRequest { Tag = 0, ConfigRead = new ConfigReadOp { Rid = 0x0100, Offset = 0, Width = 4 } };
            for (int i = 0; i < 1000; i++) { await call.RequestStream.WriteAsync(req, ct).ConfigureAwait(false); await call.ResponseStream.MoveNext(ct).ConfigureAwait(false); }
            var total = Stopwatch.StartNew();
            for (int i = 0; i < n; i++)
            {
                long t0 = Stopwatch.GetTimestamp();
                req.Tag = (ulong)i;
                await call.RequestStream.WriteAsync(req, ct).ConfigureAwait(false);
                if (!await call.ResponseStream.MoveNext(ct).ConfigureAwait(false) || call.ResponseStream.Current.Tag != (ulong)i) throw new InvalidOperationException("bad completion");
                lat.Add(Stopwatch.GetElapsedTime(t0).TotalMicroseconds);
            }
            rows.Add(Summarize(transport, "Transact read ping-pong", lat, total.Elapsed.TotalSeconds));
            await call.RequestStream.CompleteAsync().ConfigureAwait(false);
            while (await call.ResponseStream.MoveNext(ct).ConfigureAwait(false)) { }
        }

        rows.Add(await Pipelined(client, transport, reads: true, batch, pipelined, ct).ConfigureAwait(false));
        rows.Add(await Pipelined(client, transport, reads: false, batch, pipelined, ct).ConfigureAwait(false));
        if (batch > 1) rows.Add(await Pipelined(client, transport, reads: true, 1, Math.Min(pipelined, 100_000), ct).ConfigureAwait(false));
        if (batch > 1) rows.Add(await Pipelined(client, transport, reads: false, 1, Math.Min(pipelined, 100_000), ct).ConfigureAwait(false));
        return rows;
    }

    private static async Task<double> Unary<T>(Func<Task<T>> call, int n, List<double> lat)
    {
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < n; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            await call().ConfigureAwait(false);
            lat.Add(Stopwatch.GetElapsedTime(t0).TotalMicroseconds);
        }
        return sw.Elapsed.TotalSeconds;
    }

    /// <summary>
    /// Pipelined reads (each message: <paramref name="batch"/> config reads; a writer task sends while a
    /// reader task counts completions) or posted writes (config writes to PF0's MSI Message Address,
    /// ended by one read that completes after all of them). Latency = per-message round trip (reads).
    /// </summary>
    private static async Task<Row> Pipelined(PcieEmuClient client, string transport, bool reads, int batch, int total, CancellationToken ct)
    {
        int messages = total / batch;
        using var call = client.Session.Transact(cancellationToken: ct);
        var template = new TransactRequest();
        for (int i = 0; i < batch; i++)
        {
            template.Batch.Add(reads
                ? new Transaction { Tag = (ulong)i, ConfigRead = new ConfigReadOp { Rid = 0x0100, Offset = 0x54, Width = 4 } }
                : new Transaction { Tag = (ulong)i, ConfigWrite = new ConfigWriteOp { Rid = 0x0100, Offset = 0x54, Width = 4, Value = 0xFEE0_0000u + (uint)(4 * i) } });
        }
        var sent = new long[messages];
        var lat = new List<double>(messages);
        long completions = 0;
        // Reads: a bounded window (about 4096 reads, at least 16 messages) in flight, so the latency
        // column is a round trip rather than queueing behind the whole run.
        int inFlight = Math.Max(16, 4096 / batch);
        using var window = new SemaphoreSlim(inFlight, inFlight);
        var sw = Stopwatch.StartNew();
        var readerTask = Task.Run(async () =>
        {
            int m = 0;
            while (await call.ResponseStream.MoveNext(ct).ConfigureAwait(false))
            {
                var r = call.ResponseStream.Current;
                completions += 1 + r.More.Count;
                if (r.Kind == TransactionKind.ConfigRead && r.Tag == ulong.MaxValue) break;   // the fence
                if (reads && m < messages) { lat.Add(Stopwatch.GetElapsedTime(Volatile.Read(ref sent[m])).TotalMicroseconds); m++; window.Release(); }
            }
        }, ct);
        for (int i = 0; i < messages; i++)
        {
            if (reads) await window.WaitAsync(ct).ConfigureAwait(false);
            Volatile.Write(ref sent[i], Stopwatch.GetTimestamp());
            await call.RequestStream.WriteAsync(template, ct).ConfigureAwait(false);
        }
        // A final read: it completes after every earlier transaction of the stream.
        await call.RequestStream.WriteAsync(new TransactRequest { Tag = ulong.MaxValue, ConfigRead = new ConfigReadOp { Rid = 0x0100, Offset = 0, Width = 4 } }, ct).ConfigureAwait(false);
        await readerTask.WaitAsync(TimeSpan.FromMinutes(5), ct).ConfigureAwait(false);
        double sec = sw.Elapsed.TotalSeconds;
        await call.RequestStream.CompleteAsync().ConfigureAwait(false);
        while (await call.ResponseStream.MoveNext(ct).ConfigureAwait(false)) { }
        if (reads && completions != (long)messages * batch + 1) throw new InvalidOperationException($"expected {messages * batch + 1} completions, got {completions}");
        if (!reads && completions != 1) throw new InvalidOperationException($"posted writes produced {completions - 1} unexpected completions");
        var row = Summarize(transport, reads ? $"Transact pipelined reads (batch {batch})" : $"Transact posted writes (batch {batch})", lat, sec);
        return row with { Operations = (long)messages * batch };
    }

    private static Row Summarize(string transport, string workload, List<double> lat, double seconds)
    {
        lat.Sort();
        double P(double q) => lat.Count == 0 ? double.NaN : lat[Math.Min(lat.Count - 1, (int)(q * lat.Count))];
        return new Row(transport, workload, lat.Count, seconds, P(0.50), P(0.99));
    }

    /// <summary>The table printed at the end.</summary>
    public static string FormatTable(IEnumerable<Row> rows, int batch)
    {
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"| transport | workload | ops | ops/s | p50 µs | p99 µs |");
        sb.AppendLine("|---|---|---:|---:|---:|---:|");
        foreach (var r in rows)
        {
            string p50 = double.IsNaN(r.P50Us) ? "-" : r.P50Us.ToString("F1", CultureInfo.InvariantCulture);
            string p99 = double.IsNaN(r.P99Us) ? "-" : r.P99Us.ToString("F1", CultureInfo.InvariantCulture);
            sb.AppendLine(CultureInfo.InvariantCulture, $"| {r.Transport} | {r.Workload} | {r.Operations} | {r.Rate:F0} | {p50} | {p99} |");
        }
        foreach (var g in rows.GroupBy(r => r.Transport))
        {
            var h = g.FirstOrDefault(r => r.Workload.StartsWith("health", StringComparison.Ordinal));
            var rc = g.FirstOrDefault(r => r.Workload.StartsWith("ReadConfig", StringComparison.Ordinal));
            if (h != null && rc != null)
                sb.AppendLine(CultureInfo.InvariantCulture, $"{g.Key}: ReadConfig p50 / health p50 = {rc.P50Us / h.P50Us:F2} (target ≤ 1.15)");
        }
        sb.AppendLine(CultureInfo.InvariantCulture, $"pipelined reads: about 4096 reads (at least 16 messages) in flight, latency = round trip of one message of N reads; posted writes: no completions (p50/p99 '-'), rate measured until a final read completes.");
        return sb.ToString();
    }
}
