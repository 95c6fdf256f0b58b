using System.Buffers.Binary;
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;
using PcieEmu.Client;
using PcieEmu.Core.Topology;
using PcieEmu.Server.Hosting;
using PcieEmu.Server.VfioUser;

namespace PcieEmu.Server.Cli;

/// <summary>
/// <c>pcie-emu bench-vfio-user</c>: a load generator for any vfio-user server. It negotiates VERSION,
/// then times REGION_READ round trips of 4 bytes of config space (region 7, offset 0), one at a time.
/// With <c>--grpc</c> it also times ReadConfig over gRPC for comparison. Without <c>--socket</c> it
/// starts this server in-process (PF0 01:00.0 served over vfio-user, gRPC on a Unix socket) and
/// measures both. Prints one table.
/// </summary>
public static class BenchVfioUserCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var socket = new Option<string?>("--socket") { Description = "vfio-user server socket to measure (any server, e.g. libvfio-user's samples); default: start one in this process" };
        var count = new Option<int>("--count") { Description = "Round trips per workload", DefaultValueFactory = _ => 20000 };
        var grpc = new Option<string?>("--grpc") { Description = "Also measure ReadConfig over gRPC at this target (unix:///path or tcp://host:port)" };
        var rid = new Option<string>("--rid") { Description = "Function whose config ReadConfig reads (with --grpc)", DefaultValueFactory = _ => "01:00.0" };
        var cmd = new Command("bench-vfio-user", "Load generator: vfio-user REGION_READ round trips (and gRPC ReadConfig for comparison)") { socket, count, grpc, rid };
        cmd.SetAction(async (parse, ct) =>
        {
            int n = Math.Max(100, parse.GetValue(count));
            if (!Bdf.TryParse(parse.GetValue(rid), out ushort r))
            {
                await Console.Error.WriteLineAsync($"pcie-emu bench-vfio-user: --rid: '{parse.GetValue(rid)}' is not a bus:device.function").ConfigureAwait(false);
                return 2;
            }
            string? path = parse.GetValue(socket), target = parse.GetValue(grpc);
            Microsoft.AspNetCore.Builder.WebApplication? app = null;
            string? dir = null;
            try
            {
                if (path == null)
                {
                    dir = Directory.CreateTempSubdirectory("pcie-emu-bench-vfio-").FullName;
                    path = Path.Combine(dir, "pf0.sock");
                    app = ServerHost.Build(new ServeSettings
                    {
                        Listen = [$"unix://{dir}/grpc.sock"],
                        VfioUser = [$"{Bdf.Format(r)}={path}"],
                        Overrides = new Dictionary<string, string?> { ["Machine:RamSize"] = (64 << 20).ToString(CultureInfo.InvariantCulture) },
                        UseAppSettings = false,
                    }, l => l.SetMinimumLevel(LogLevel.Warning).AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace));
                    await app.StartAsync(ct).ConfigureAwait(false);
                    target ??= $"unix://{dir}/grpc.sock";
                }
                var rows = new List<BenchCommand.Row>();
                await Console.Error.WriteLineAsync($"bench-vfio-user: {path}").ConfigureAwait(false);
                try
                {
                    rows.Add(MeasureRegionRead(path, n));
                }
                catch (Exception ex) when (ex is SocketException or IOException)
                {
                    await Console.Error.WriteLineAsync($"pcie-emu bench-vfio-user: --socket {path}: {ex.Message}").ConfigureAwait(false);
                    return 1;
                }
                if (target != null)
                {
                    await Console.Error.WriteLineAsync($"bench-vfio-user: gRPC {target}").ConfigureAwait(false);
                    rows.Add(await MeasureReadConfigAsync(target, r, n, ct).ConfigureAwait(false));
                }
                await Console.Out.WriteAsync(FormatTable(rows)).ConfigureAwait(false);
                return 0;
            }
            finally
            {
                if (app != null) { await app.StopAsync(CancellationToken.None).ConfigureAwait(false); await app.DisposeAsync().ConfigureAwait(false); }
                if (dir != null) Directory.Delete(dir, recursive: true);
            }
        });
        return cmd;
    }

    /// <summary>Times <paramref name="n"/> REGION_READs of 4 bytes of config space against the server at <paramref name="path"/>.</summary>
    public static BenchCommand.Row MeasureRegionRead(string path, int n)
    {
        using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        s.Connect(new UnixDomainSocketEndPoint(path));   // synchronous: the descriptor stays blocking
        int fd = (int)s.SafeHandle.DangerousGetHandle();
        var buf = new byte[4096];
        var fds = new List<int>();

        // VERSION 0.0 with our capabilities; the server answers with its own.
        var caps = Encoding.UTF8.GetBytes("{\"capabilities\":{\"max_msg_fds\":8,\"max_data_xfer_size\":1048576}}");
        var version = new byte[16 + 4 + caps.Length + 1];
        new VfioUserHeader(0, (ushort)VfioUserCommand.Version, (uint)version.Length, 0, 0).Write(version);
        caps.CopyTo(version, 20);
        if (!UnixFd.SendAll(fd, version, default, out int se)) throw new IOException($"send failed (errno {se})");
        if (!s.Poll(TimeSpan.FromSeconds(10), SelectMode.SelectRead))
            throw new IOException("no answer to VERSION within 10 s (a VF served before the PF driver set VF Enable waits until it exists)");
        ReadReply(fd, buf, fds);

        var read = new byte[32];
        BinaryPrimitives.WriteUInt64LittleEndian(read.AsSpan(16), 0);
        BinaryPrimitives.WriteUInt32LittleEndian(read.AsSpan(24), VfioUserWire.RegionConfig);
        BinaryPrimitives.WriteUInt32LittleEndian(read.AsSpan(28), 4);
        var lat = new List<double>(n);
        for (int i = 0; i < Math.Min(1000, n / 10); i++) RoundTrip(fd, Stamp(read, (ushort)i), buf, fds);   // warm-up
        var total = Stopwatch.StartNew();
        for (int i = 0; i < n; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            RoundTrip(fd, Stamp(read, (ushort)i), buf, fds);
            lat.Add(Stopwatch.GetElapsedTime(t0).TotalMicroseconds);
        }
        return Summarize("vfio-user", "REGION_READ config 4 B", lat, total.Elapsed.TotalSeconds);
    }

    private static byte[] Stamp(byte[] msg, ushort id)
    {
        new VfioUserHeader(id, (ushort)VfioUserCommand.RegionRead, (uint)msg.Length, 0, 0).Write(msg);
        return msg;
    }

    private static void RoundTrip(int fd, byte[] request, byte[] buf, List<int> fds)
    {
        if (!UnixFd.SendAll(fd, request, default, out int e)) throw new IOException($"send failed (errno {e})");
        ReadReply(fd, buf, fds);
    }

    private static void ReadReply(int fd, byte[] buf, List<int> fds)
    {
        Read(fd, buf.AsSpan(0, 16), fds);
        var h = VfioUserHeader.Read(buf);
        if (h.Size < 16 || h.Size > buf.Length) throw new IOException($"bad reply size {h.Size}");
        Read(fd, buf.AsSpan(16, (int)h.Size - 16), fds);
        foreach (int f in fds) UnixFd.Close(f);
        fds.Clear();
        if ((h.Flags & VfioUserWire.Error) != 0) throw new IOException($"the server answered command {h.Command} with errno {h.Error}");
    }

    private static void Read(int fd, Span<byte> buffer, List<int> fds)
    {
        int done = 0;
        while (done < buffer.Length)
        {
            int got = UnixFd.Receive(fd, buffer[done..], fds, 16, out _, out int e);
            if (got < 0 && e == UnixFd.EAGAIN) { UnixFd.WaitReadable(fd); continue; }
            if (got <= 0) throw new IOException(got == 0 ? "the server closed the connection" : $"receive failed (errno {e})");
            done += got;
        }
    }

    private static async Task<BenchCommand.Row> MeasureReadConfigAsync(string target, ushort rid, int n, CancellationToken ct)
    {
        using var client = PcieEmuClient.Connect(target);
        for (int i = 0; i < Math.Min(1000, n / 10); i++) await client.ReadConfigAsync(rid, 0, 4, ct).ConfigureAwait(false);
        var lat = new List<double>(n);
        var total = Stopwatch.StartNew();
        for (int i = 0; i < n; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            await client.ReadConfigAsync(rid, 0, 4, ct).ConfigureAwait(false);
            lat.Add(Stopwatch.GetElapsedTime(t0).TotalMicroseconds);
        }
        return Summarize(target.StartsWith("unix", StringComparison.Ordinal) ? "gRPC unix" : "gRPC tcp", "ReadConfig 4 B", lat, total.Elapsed.TotalSeconds);
    }

    private static BenchCommand.Row Summarize(string transport, string workload, List<double> lat, double seconds)
    {
        lat.Sort();
        double P(double q) => lat[Math.Min(lat.Count - 1, (int)(q * lat.Count))];
        return new BenchCommand.Row(transport, workload, lat.Count, seconds, P(0.50), P(0.99));
    }

    /// <summary>The table printed at the end.</summary>
    public static string FormatTable(IEnumerable<BenchCommand.Row> rows)
    {
        var sb = new StringBuilder();
        sb.AppendLine("| transport | workload | ops | ops/s | p50 µs | p99 µs |");
        sb.AppendLine("|---|---|---:|---:|---:|---:|");
        foreach (var r in rows)
            sb.AppendLine(CultureInfo.InvariantCulture, $"| {r.Transport} | {r.Workload} | {r.Operations} | {r.Rate:F0} | {r.P50Us:F1} | {r.P99Us:F1} |");
        return sb.ToString();
    }
}
