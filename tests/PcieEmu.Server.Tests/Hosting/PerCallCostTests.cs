using Microsoft.Extensions.DependencyInjection;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using PcieEmu.Server.Hosting;

namespace PcieEmu.Server.Tests.Hosting;

/// <summary>
/// Issue 16, per-call cost of the server: ASP.NET Core's hosting diagnostics cost an Activity and a
/// logging scope per request whenever their category is enabled at any level, so the server turns the
/// category off unless the configuration names it; <c>serve</c> prefers inline socket completions
/// unless the user set the runtime's variable.
/// </summary>
public sealed class PerCallCostTests
{
    [Fact]
    public async Task Per_request_hosting_diagnostics_are_off_by_default()
    {
        await using var server = await TestServer.StartAsync("unix");
        var logger = server.App.Services.GetRequiredService<ILoggerFactory>().CreateLogger(ServerHost.HostingDiagnosticsCategory);
        // Critical is the level ASP.NET Core asks about before it starts the per-request Activity.
        Assert.False(logger.IsEnabled(LogLevel.Critical));
        // The server's own categories still log.
        Assert.True(server.App.Services.GetRequiredService<ILoggerFactory>().CreateLogger("PcieEmu.Server").IsEnabled(LogLevel.Critical));
        Assert.Equal(0x10C98086u, (uint)(await server.Client.ReadConfigAsync(0x100, 0, 4).WaitAsync(T.Timeout)).Value);
    }

    [Fact]
    public async Task The_configuration_can_turn_request_logging_back_on()
    {
        await using var server = await TestServer.StartAsync("unix", new Dictionary<string, string?>
        {
            [$"Logging:LogLevel:{ServerHost.HostingDiagnosticsCategory}"] = "Information",
        });
        var logger = server.App.Services.GetRequiredService<ILoggerFactory>().CreateLogger(ServerHost.HostingDiagnosticsCategory);
        // (The tests' capturing provider itself takes Warning and above.)
        Assert.True(logger.IsEnabled(LogLevel.Critical));
        Assert.Equal(0x10C98086u, (uint)(await server.Client.ReadConfigAsync(0x100, 0, 4).WaitAsync(T.Timeout)).Value);
    }

    [Theory]
    [InlineData(null, "1")]
    [InlineData("0", null)]
    [InlineData("1", null)]
    public void Serve_prefers_inline_socket_completions_unless_the_user_chose(string? current, string? set) =>
        Assert.Equal(set, ServerHost.InlineSocketCompletionsSetting(current));

    [Theory]
    [InlineData(null, false)]
    [InlineData("0", false)]
    [InlineData("1", true)]
    public void Kestrel_schedules_inline_exactly_when_socket_completions_are_inline(string? completions, bool inline) =>
        Assert.Equal(inline, ServerHost.InlineScheduling(completions));

    [Fact]
    public async Task The_built_server_follows_the_process_switch()
    {
        await using var server = await TestServer.StartAsync("unix");
        var options = server.App.Services.GetRequiredService<IOptions<SocketTransportOptions>>().Value;
        Assert.Equal(ServerHost.InlineScheduling(Environment.GetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS")), options.UnsafePreferInlineScheduling);
        Assert.Equal(0x10C98086u, (uint)(await server.Client.ReadConfigAsync(0x100, 0, 4).WaitAsync(T.Timeout)).Value);
    }
}
