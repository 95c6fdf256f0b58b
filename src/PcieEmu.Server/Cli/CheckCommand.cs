using System.CommandLine;
using System.Globalization;
using Grpc.Core;
using Rules = PcieEmu.Core.Checker.Rules;
using PcieEmu.Protocol.V1;

namespace PcieEmu.Server.Cli;

/// <summary>
/// <c>pcie-emu check</c>: prints the driver-conduct checker's violations of a running server
/// (docs/checker.md); exits 1 when any is an error. <c>--follow</c> keeps printing new ones,
/// <c>--rules</c> prints the rule catalogue.
/// </summary>
public static class CheckCommand
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(250);

    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var rules = new Option<bool>("--rules") { Description = "Print the rule catalogue (id, severity, specification, text, hint) and exit" };
        var rule = new Option<string[]>("--rule") { Description = "Only these rule ids; repeatable or comma-separated" };
        var rid = new Option<string[]>("--rid") { Description = "Only these requesters (bus:device.function); repeatable or comma-separated" };
        var follow = new Option<bool>("--follow") { Description = "Keep printing new violations until interrupted" };
        var clear = new Option<bool>("--clear") { Description = "Forget the recorded violations after printing them" };
        var cmd = new Command("check", "Print the driver-conduct violations of a running server (exit 1 when any is an error)") { rules, rule, rid, follow, clear };
        cmd.SetAction(async (parse, ct) =>
        {
            var stdout = Console.Out;
            if (parse.GetValue(rules))
            {
                await stdout.WriteAsync(Catalogue()).ConfigureAwait(false);
                return 0;
            }
            var ruleIds = Split(parse.GetValue(rule));
            var rids = Split(parse.GetValue(rid));
            try
            {
                using var client = Commands.Connect(parse);
                ulong after = 0;
                int errors = 0, warnings = 0, infos = 0;
                bool following = parse.GetValue(follow);
                while (true)
                {
                    GetViolationsResponse reply;
                    try
                    {
                        reply = await client.GetViolationsAsync(ruleIds, rids, after, ct).ConfigureAwait(false);
                    }
                    catch (RpcException ex) when (following && ex.StatusCode == StatusCode.Cancelled && ct.IsCancellationRequested)
                    {
                        break;
                    }
                    foreach (var v in reply.Violations)
                    {
                        await stdout.WriteAsync(Format(v)).ConfigureAwait(false);
                        after = v.Sequence;
                        switch (v.Rule.Severity)
                        {
                            case ViolationSeverity.Error: errors++; break;
                            case ViolationSeverity.Warning: warnings++; break;
                            default: infos++; break;
                        }
                    }
                    if (!following)
                    {
                        await stdout.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                            $"{errors + warnings + infos} violation(s): {errors} error(s), {warnings} warning(s), {infos} info{(reply.Dropped > 0 ? $"; {reply.Dropped} more not kept" : "")}")).ConfigureAwait(false);
                        break;
                    }
                    await stdout.FlushAsync(ct).ConfigureAwait(false);
                    try { await Task.Delay(PollInterval, ct).ConfigureAwait(false); }
                    catch (OperationCanceledException) { break; }
                }
                if (parse.GetValue(clear)) await client.ClearViolationsAsync(CancellationToken.None).ConfigureAwait(false);
                return errors > 0 ? 1 : 0;
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return 0;
            }
            catch (RpcException ex)
            {
                await Console.Error.WriteLineAsync(Commands.DescribeRpcError("check", ex, Commands.ResolveTarget(parse))).ConfigureAwait(false);
                return 2;
            }
            catch (FormatException ex)
            {
                await Console.Error.WriteLineAsync($"pcie-emu check: --target: {ex.Message}").ConfigureAwait(false);
                return 2;
            }
            catch (IOException ex)
            {
                await Console.Error.WriteLineAsync($"pcie-emu check: --token-file: {ex.Message}").ConfigureAwait(false);
                return 2;
            }
        });
        return cmd;
    }

    private static string[] Split(string[]? values) =>
        values == null ? [] : [.. values.SelectMany(v => v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))];

    private static string Severity(ViolationSeverity s) => s switch
    {
        ViolationSeverity.Error => "error",
        ViolationSeverity.Warning => "warning",
        _ => "info",
    };

    /// <summary>One violation: a heading line, then the event, what the hardware did and the hint.</summary>
    public static string Format(Violation v)
    {
        ArgumentNullException.ThrowIfNull(v);
        return string.Create(CultureInfo.InvariantCulture,
            $"{v.TimestampNs / 1_000_000_000}.{v.TimestampNs / 1000 % 1_000_000:D6} {v.Requester} {Severity(v.Rule.Severity),-7} {v.Rule.Id}  {v.Rule.Spec}\n" +
            $"    event:    {v.Event}\n    hardware: {v.Outcome}\n    hint:     {v.Rule.Hint}\n");
    }

    /// <summary>The rule catalogue as <c>--rules</c> prints it.</summary>
    public static string Catalogue()
    {
        var sb = new System.Text.StringBuilder();
        foreach (var r in Rules.All)
        {
            sb.Append(CultureInfo.InvariantCulture, $"{r.Id}  {r.Severity.ToString().ToLowerInvariant()}  {r.Spec}\n");
            sb.Append(CultureInfo.InvariantCulture, $"    {r.Text}\n    trigger: {r.Trigger}\n    hint:    {r.Hint}\n");
        }
        return sb.ToString();
    }
}
