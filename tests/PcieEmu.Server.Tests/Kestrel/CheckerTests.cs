using System.CommandLine;
using Grpc.Core;
using PcieEmu.Client;
using PcieEmu.Core.Checker;
using PcieEmu.Protocol.V1;
using PcieEmu.Server.Cli;
using PcieEmu.Server.Tests.Cli;

namespace PcieEmu.Server.Tests.Kestrel;

/// <summary>The driver-conduct checker over the wire: GetViolations / ClearViolations, the .NET
/// client's AssertNoViolationsAsync, <c>serve --check off</c> and <c>pcie-emu check</c>.</summary>
[Collection("Console")]
public sealed class CheckerTests
{
    private const uint Pf0 = 0x0100;

    // NumVFs changed under enabled VFs: SRIOV.NUMVFS_WHILE_ENABLED (no timing involved).
    private static async Task MisbehaveAsync(PcieEmuClient c)
    {
        await c.WriteConfigAsync(Pf0, 0x170, 2, 2).W();    // NumVFs
        await c.WriteConfigAsync(Pf0, 0x168, 2, 0x9).W();  // VF Enable | VF MSE
        await c.WriteConfigAsync(Pf0, 0x170, 2, 1).W();    // NumVFs again: forbidden
    }

    [Fact]
    public async Task GetViolations_reports_a_misbehaving_driver_and_ClearViolations_forgets_it()
    {
        await using var s = await TestServer.StartAsync("unix");
        var c = s.Client;
        await c.AssertNoViolationsAsync().W();
        await MisbehaveAsync(c);
        var reply = await c.GetViolationsAsync().W();
        var v = Assert.Single(reply.Violations);
        Assert.Equal(Rules.NumVfsWhileEnabled.Id, v.Rule.Id);
        Assert.Equal(ViolationSeverity.Error, v.Rule.Severity);
        Assert.Equal(Rules.NumVfsWhileEnabled.Spec, v.Rule.Spec);
        Assert.Equal("01:00.0", v.Requester);
        Assert.Equal(Pf0, v.Rid);
        Assert.Contains("NumVFs", v.Event, StringComparison.Ordinal);
        Assert.NotEmpty(v.Outcome);
        Assert.NotEqual(0ul, v.EventSequence);

        // Filters.
        Assert.Empty((await c.GetViolationsAsync(ruleIds: ["VTD.FAULT"]).W()).Violations);
        Assert.Empty((await c.GetViolationsAsync(rids: ["01:00.1"]).W()).Violations);
        Assert.Single((await c.GetViolationsAsync(rids: ["01:00.0"]).W()).Violations);
        Assert.Empty((await c.GetViolationsAsync(afterSequence: v.Sequence).W()).Violations);

        var ex = await Assert.ThrowsAsync<ViolationsException>(() => c.AssertNoViolationsAsync()).W();
        Assert.Contains("SRIOV.NUMVFS_WHILE_ENABLED", ex.Message, StringComparison.Ordinal);
        Assert.Single(ex.Violations);

        Assert.Equal(1, await c.ClearViolationsAsync().W());
        await c.AssertNoViolationsAsync().W();
        s.AssertNoErrors();
    }

    [Theory]
    [InlineData("rule_ids[1]")]
    [InlineData("rids[0]")]
    public async Task Bad_violation_filters_get_invalid_argument_naming_the_field(string field)
    {
        await using var s = await TestServer.StartAsync("unix");
        var ex = T.Rpc(() => field == "rids[0]"
            ? s.Client.GetViolationsAsync(rids: ["01:00"])
            : s.Client.GetViolationsAsync(ruleIds: ["VTD.FAULT", "NO.SUCH_RULE"]));
        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        Assert.StartsWith(field + ":", ex.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(0x8086u, await s.Client.ReadConfig16Async(Pf0, 0).W());   // the server goes on
    }

    [Fact]
    public async Task With_check_off_there_is_no_checker()
    {
        await using var s = await TestServer.StartAsync("unix", check: false);
        Assert.Equal(0, s.Machine.Events.SubscriberCount);
        await MisbehaveAsync(s.Client);
        var ex = T.Rpc(() => s.Client.GetViolationsAsync());
        Assert.Equal(StatusCode.FailedPrecondition, ex.StatusCode);
        Assert.Contains("--check off", ex.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void Serve_parses_check_on_and_off()
    {
        foreach (var (args, ok) in new[] { (new[] { "serve", "--check", "off" }, true), (["serve", "--check=off"], true), (["serve", "--check"], true),
                     (["serve", "--check", "maybe"], false) })
            Assert.Equal(ok, Commands.Build().Parse(args).Errors.Count == 0);
    }

    [Fact]
    public async Task Check_exits_0_when_clean_and_1_with_an_error()
    {
        await using var s = await TestServer.StartAsync("unix");
        var (exit, output, err) = await TraceCliTests.RunAsync("check", "--target", s.Target);
        Assert.True(exit == 0, err);
        Assert.Contains("0 violation(s)", output, StringComparison.Ordinal);

        await MisbehaveAsync(s.Client);
        (exit, output, _) = await TraceCliTests.RunAsync("check", "--target", s.Target, "--clear");
        Assert.Equal(1, exit);
        Assert.Matches(@"\d+\.\d{6} 01:00\.0 error   SRIOV\.NUMVFS_WHILE_ENABLED  SR-IOV 1\.1 §3\.3\.7 ", output);
        Assert.Contains("    hint:     Clear VF Enable", output, StringComparison.Ordinal);
        Assert.Contains("1 violation(s): 1 error(s)", output, StringComparison.Ordinal);

        // --clear forgot it.
        (exit, _, _) = await TraceCliTests.RunAsync("check", "--target", s.Target);
        Assert.Equal(0, exit);

        (exit, _, err) = await TraceCliTests.RunAsync("check", "--target", s.Target, "--rule", "NO.SUCH_RULE");
        Assert.Equal(2, exit);
        Assert.Contains("rule_ids[0]", err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Check_rules_prints_the_catalogue()
    {
        var (exit, output, _) = await TraceCliTests.RunAsync("check", "--rules");
        Assert.Equal(0, exit);
        foreach (var r in Rules.All) Assert.Contains($"{r.Id}  {r.Severity.ToString().ToLowerInvariant()}  {r.Spec}", output, StringComparison.Ordinal);
    }

    // A synchronized writer locks itself while it writes.
    private static string Printed(TextWriter sync, StringWriter o)
    {
        lock (sync) return o.ToString();
    }

    [Fact]
    public async Task Check_follow_prints_violations_as_they_happen()
    {
        await using var s = await TestServer.StartAsync("unix");
        var (oldOut, oldErr) = (Console.Out, Console.Error);
        using var o = new StringWriter();
        var sync = TextWriter.Synchronized(o);
        Console.SetOut(sync);
        Console.SetError(TextWriter.Null);
        try
        {
            using var cts = new CancellationTokenSource(T.Timeout);
            var run = Commands.Build().Parse(["check", "--target", s.Target, "--follow"]).InvokeAsync(new InvocationConfiguration(), cts.Token);
            await MisbehaveAsync(s.Client);
            var deadline = T.Deadline;
            while (!Printed(sync, o).Contains("SRIOV.NUMVFS_WHILE_ENABLED", StringComparison.Ordinal) && DateTime.UtcNow < deadline) await Task.Delay(20);
            Assert.Contains("SRIOV.NUMVFS_WHILE_ENABLED", Printed(sync, o), StringComparison.Ordinal);   // printed while following
            await cts.CancelAsync();
            int exit = await run.WaitAsync(T.Timeout);
            Assert.Equal(1, exit);
            Assert.Contains("SRIOV.NUMVFS_WHILE_ENABLED", o.ToString(), StringComparison.Ordinal);
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldErr);
        }
    }
}
