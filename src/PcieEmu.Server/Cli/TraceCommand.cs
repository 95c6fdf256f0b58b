using System.CommandLine;
using Grpc.Core;
using PcieEmu.Core.Events;

namespace PcieEmu.Server.Cli;

/// <summary>
/// <c>pcie-emu trace</c>: prints the decoded transactions of a running server, one line each
/// (docs/trace.md); <c>--export chrome OUT.json --input RECORDING</c> converts a recording made
/// with <c>serve --trace</c> to the Trace Event format.
/// </summary>
public static class TraceCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var rid = new Option<string[]>("--rid") { Description = "Only these functions (bus:device.function, e.g. 01:10.0); repeatable or comma-separated", AllowMultipleArgumentsPerToken = false };
        var kind = new Option<string[]>("--kind") { Description = "Only these kinds: config, mmio, dma, msi, iommu, frame, lifecycle; repeatable or comma-separated" };
        var follow = new Option<bool>("--follow") { Description = "Keep printing until interrupted (default: print for --duration seconds)" };
        var duration = new Option<double>("--duration") { Description = "Seconds to print for without --follow (default 1)", DefaultValueFactory = _ => 1.0 };
        var export = new Option<string?>("--export") { Description = "Convert a recording instead: 'chrome' (Trace Event format JSON for Perfetto / chrome://tracing) to the OUTPUT file" };
        export.AcceptOnlyFromAmong("chrome");
        var input = new Option<string?>("--input") { Description = "With --export: the recording made by `pcie-emu serve --trace FILE`" };
        var output = new Argument<string?>("OUTPUT") { Description = "With --export: the file to write", Arity = ArgumentArity.ZeroOrOne };
        var cmd = new Command("trace", "Print every transaction of a running server, decoded (or export a recording)") { rid, kind, follow, duration, export, input, output };
        cmd.SetAction(async (parse, ct) =>
        {
            if (parse.GetValue(export) != null) return await ExportAsync(parse.GetValue(input), parse.GetValue(output)).ConfigureAwait(false);
            var rids = Split(parse.GetValue(rid));
            var kinds = Split(parse.GetValue(kind));
            double seconds = parse.GetValue(duration);
            if (!parse.GetValue(follow) && seconds is <= 0 or > 86400)
            {
                await Console.Error.WriteLineAsync("pcie-emu trace: --duration: must be in (0, 86400] seconds").ConfigureAwait(false);
                return 2;
            }
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            if (!parse.GetValue(follow)) cts.CancelAfter(TimeSpan.FromSeconds(seconds));
            try
            {
                using var client = Commands.Connect(parse);
                var stdout = Console.Out;
                await foreach (var e in client.SubscribeTraceAsync(rids, kinds, cts.Token).ConfigureAwait(false))
                    await stdout.WriteLineAsync(TraceFormat.Line(e.TimestampNs, e.Kind == Protocol.V1.TraceKind.Gap ? null : (ushort)e.Rid, e.Token, e.Text)).ConfigureAwait(false);
                return 0;
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
                await Console.Error.WriteLineAsync(Commands.DescribeRpcError("trace", ex, Commands.ResolveTarget(parse))).ConfigureAwait(false);
                return ex.StatusCode == StatusCode.InvalidArgument ? 2 : 1;
            }
            catch (FormatException ex)
            {
                await Console.Error.WriteLineAsync($"pcie-emu trace: --target: {ex.Message}").ConfigureAwait(false);
                return 2;
            }
            catch (IOException ex)
            {
                await Console.Error.WriteLineAsync($"pcie-emu trace: --token-file: {ex.Message}").ConfigureAwait(false);
                return 2;
            }
        });
        return cmd;
    }

    private static string[] Split(string[]? values) =>
        values == null ? [] : [.. values.SelectMany(v => v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))];

    private static async Task<int> ExportAsync(string? input, string? output)
    {
        if (input == null) { await Console.Error.WriteLineAsync("pcie-emu trace: --input: --export needs the recording to convert (--input FILE)").ConfigureAwait(false); return 2; }
        if (output == null) { await Console.Error.WriteLineAsync("pcie-emu trace: OUTPUT: --export chrome needs the file to write (pcie-emu trace --export chrome OUT.json --input REC)").ConfigureAwait(false); return 2; }
        try
        {
            await using var o = File.Create(output);
            var (events, skipped) = ChromeTrace.Export(File.ReadLines(input), o);
            await Console.Error.WriteLineAsync($"pcie-emu trace: {events} event(s) written to {output}{(skipped > 0 ? $" ({skipped} line(s) that are not trace lines skipped)" : "")}").ConfigureAwait(false);
            return 0;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            await Console.Error.WriteLineAsync($"pcie-emu trace: {ex.Message}").ConfigureAwait(false);
            return 1;
        }
    }
}
