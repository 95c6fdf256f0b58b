using System.CommandLine;
using System.Globalization;
using Grpc.Core;
using PcieEmu.Client;
using PcieEmu.Core.Events;
using PcieEmu.Protocol.V1;
using PcieEmu.Server.Capture;

namespace PcieEmu.Server.Cli;

/// <summary>
/// <c>pcie-emu capture</c>: streams the wire of a running server's ports (CaptureFrames, both
/// directions; with --internal also the frames switched between pools inside the NIC) as pcapng
/// to a file or stdout, one flushed block per frame (docs/capture.md).
/// </summary>
public static class CaptureCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var port = new Option<int[]>("--port") { Description = "Capture these ports (repeatable; default: every port)" };
        var write = new Option<string>("-w") { Description = "Write pcapng to FILE (created owner-only) or '-' for stdout (default; not to a terminal)", DefaultValueFactory = _ => "-" };
        var @internal = new Option<bool>("--internal") { Description = "Also show frames switched VF to VF inside the NIC (interface '<port> internal switch', comment 'switched by ...')" };
        var count = new Option<long?>("--count") { Description = "Stop after N frames" };
        var duration = new Option<double?>("--duration") { Description = "Stop after S seconds" };
        var cmd = new Command("capture", "Stream the NIC ports' wire of a running server as pcapng (| wireshark -k -i -)") { port, write, @internal, count, duration };
        cmd.SetAction(async (parse, ct) =>
        {
            long? max = parse.GetValue(count);
            double? seconds = parse.GetValue(duration);
            if (max is <= 0) return await Fail("--count: must be at least 1", 2).ConfigureAwait(false);
            if (seconds is <= 0 or > 86400) return await Fail("--duration: must be in (0, 86400] seconds", 2).ConfigureAwait(false);
            int[] chosen = parse.GetValue(port) ?? [];
            if (chosen.Any(n => n < 0)) return await Fail("--port: a port number is 0 or more", 2).ConfigureAwait(false);
            string target = parse.GetValue(write)!;
            bool toStdout = target == "-";
            if (toStdout && !Console.IsOutputRedirected)
                return await Fail("-w: refusing to write pcapng to a terminal; use -w FILE or a pipe (pcie-emu capture | wireshark -k -i -)", 2).ConfigureAwait(false);
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            if (seconds is { } s) cts.CancelAfter(TimeSpan.FromSeconds(s));
            Stream output;
            try
            {
                output = toStdout ? StandardOutput() : OpenFile(target);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
            {
                return await Fail($"-w: {ex.Message}", 2).ConfigureAwait(false);
            }
            PcapNgWriter? writer = null;
            try
            {
                Session.Output(() => writer = new PcapNgWriter(output, "pcie-emu capture"));
                Session.Output(writer!.Flush);
                var session = new Session(writer, max, cts);
                using var client = Commands.Connect(parse);
                int[] ports = chosen.Length > 0 ? chosen : await AllPorts(client, cts.Token).ConfigureAwait(false);
                var request = ports.Distinct().Select(n => new CaptureFramesRequest { Port = (uint)n, IncludeReceived = true, IncludeSwitched = parse.GetValue(@internal) });
                var streams = request.Select(r => session.RunAsync(client, r)).ToArray();
                try
                {
                    await Task.WhenAll(streams).ConfigureAwait(false);
                }
                catch (Exception) when (streams.Select(t => t.Exception?.InnerException).FirstOrDefault(e => e != null && !Stopped(e, cts)) is { } first)
                {
                    System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(first);
                }
                return 0;
            }
            catch (OutputException) when (toStdout)
            {
                return 0;   // the reader of the pipe went away (| head, a closed Wireshark): a normal end
            }
            catch (OutputException ex)
            {
                return await Fail($"-w: {ex.InnerException!.Message}", 1).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cts.IsCancellationRequested)
            {
                return 0;
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.Cancelled && cts.IsCancellationRequested)
            {
                return 0;
            }
            catch (RpcException ex)
            {
                await Console.Error.WriteLineAsync(Commands.DescribeRpcError("capture", ex, Commands.ResolveTarget(parse))).ConfigureAwait(false);
                return ex.StatusCode == StatusCode.InvalidArgument ? 2 : 1;
            }
            catch (FormatException ex)
            {
                return await Fail($"--target: {ex.Message}", 2).ConfigureAwait(false);
            }
            catch (IOException ex)
            {
                return await Fail($"--token-file: {ex.Message}", 2).ConfigureAwait(false);
            }
            finally
            {
                try
                {
                    if (writer != null) writer.Dispose();
                    else await output.DisposeAsync().ConfigureAwait(false);
                }
                catch (IOException)
                {
                    // Every frame was flushed when written; a pipe closed by now loses nothing.
                }
            }
        });
        return cmd;
    }

    private static bool Stopped(Exception e, CancellationTokenSource cts) =>
        cts.IsCancellationRequested && e is OperationCanceledException or RpcException { StatusCode: StatusCode.Cancelled };

    private static async Task<int> Fail(string message, int code)
    {
        await Console.Error.WriteLineAsync("pcie-emu capture: " + message).ConfigureAwait(false);
        return code;
    }

    // Console.OpenStandardOutput() ignores a closed pipe (writes "succeed"); fd 1 as a FileStream reports it.
    private static Stream StandardOutput() =>
        OperatingSystem.IsWindows()
            ? Console.OpenStandardOutput()
            : new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(1, ownsHandle: false), FileAccess.Write, 1 << 16);

    private static FileStream OpenFile(string path)
    {
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write, Share = FileShare.Read };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        return new FileStream(path, options);
    }

    private static async Task<int[]> AllPorts(PcieEmuClient client, CancellationToken ct)
    {
        var platform = await client.Platform.GetPlatformAsync(new GetPlatformRequest(), cancellationToken: ct).ConfigureAwait(false);
        return [.. Enumerable.Range(0, platform.Devices.Sum(d => d.PhysicalFunctionRids.Count))];
    }

    /// <summary>The streams of one capture feeding one writer: interfaces described on a port's first frame.</summary>
    private sealed class Session(PcapNgWriter writer, long? max, CancellationTokenSource stop)
    {
        private readonly SemaphoreSlim _lock = new(1, 1);
        private readonly Dictionary<(uint Port, bool Switch), int> _interfaces = [];
        private long _frames;

        /// <summary>Runs a write to the output; its I/O error becomes an <see cref="OutputException"/>.</summary>
        public static void Output(Action write)
        {
            try
            {
                write();
            }
            catch (IOException ex)
            {
                throw new OutputException(ex);
            }
        }

        public async Task RunAsync(PcieEmuClient client, CaptureFramesRequest request)
        {
            try
            {
                await StreamAsync(client, request).ConfigureAwait(false);
            }
            catch
            {
                await stop.CancelAsync().ConfigureAwait(false);   // one stream's end (an error) ends the capture
                throw;
            }
        }

        private async Task StreamAsync(PcieEmuClient client, CaptureFramesRequest request)
        {
            using var call = client.Ethernet.CaptureFrames(request, cancellationToken: stop.Token);
            while (true)
            {
                bool more;
                try
                {
                    more = await call.ResponseStream.MoveNext(stop.Token).ConfigureAwait(false);
                }
                catch (RpcException ex) when (ex.StatusCode == StatusCode.ResourceExhausted && ex.Trailers.GetValue(Services.InterruptGrpcService.MissedTrailer) is { } missed)
                {
                    throw new RpcException(new Status(StatusCode.ResourceExhausted,
                        $"port {request.Port}: this capture fell behind and the server cut it off after {missed} missed frame(s)"));
                }
                if (!more) return;
                await WriteAsync(call.ResponseStream.Current).ConfigureAwait(false);
            }
        }

        private async Task WriteAsync(CapturedFrame f)
        {
            await _lock.WaitAsync(stop.Token).ConfigureAwait(false);
            try
            {
                if (max is { } m && _frames >= m) return;
                bool switched = f.Direction == CaptureDirection.Switched;
                if (!_interfaces.TryGetValue((f.Port, switched), out int id))
                {
                    string name = f.PortName.Length > 0 ? f.PortName : string.Create(CultureInfo.InvariantCulture, $"port{f.Port}");
                    Output(() => id = switched
                        ? writer.AddInterface(FrameLabels.SwitchName(name), "frames switched between pools inside the NIC (never on the wire)")
                        : writer.AddInterface(name, "wire of the port, both directions"));
                    _interfaces[(f.Port, switched)] = id;
                }
                var direction = f.Direction switch
                {
                    CaptureDirection.FromWire => FrameDirection.FromWire,
                    CaptureDirection.Switched => FrameDirection.Switched,
                    _ => FrameDirection.ToWire,
                };
                Output(() =>
                {
                    writer.WritePacket(id, f.TimestampNs, f.Data.Span, FrameLabels.Direction(direction),
                        FrameLabels.Comment(direction, f.Function, f.Queue, f.Pools));
                    writer.Flush();
                });
                if (max is { } limit && ++_frames >= limit) await stop.CancelAsync().ConfigureAwait(false);
            }
            finally
            {
                _lock.Release();
            }
        }
    }

    /// <summary>Writing the capture failed (a closed pipe, a full disk).</summary>
    private sealed class OutputException(IOException inner) : Exception(inner.Message, inner);
}
