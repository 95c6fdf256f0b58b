using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using PcieEmu.Protocol.V1;

namespace PcieEmu.Server.Tests.Hosting;

/// <summary>Issue 9, defects 2 and 5: bodies that do not parse get INVALID_ARGUMENT and at most one log line.</summary>
public sealed class MalformedRequestTests
{
    // Field 1, length-delimited, claims 5 bytes but only 1 follows: no message parses this.
    private static readonly byte[] Truncated = [0x0A, 0x05, 0x01];

    [Fact]
    public async Task A_malformed_body_on_every_unary_and_streaming_method_is_INVALID_ARGUMENT_and_logged_once()
    {
        await using var s = await TestServer.StartAsync("unix");
        foreach (var (service, method, type) in RawCalls.AllMethods)
        {
            var status = type switch
            {
                MethodType.Unary => await RawCalls.UnaryAsync(s.Client.Channel, service, method, Truncated),
                MethodType.ServerStreaming => await RawCalls.ServerStreamingAsync(s.Client.Channel, service, method, Truncated, wait: T.Timeout),
                _ => (await RawCalls.TransactAsync(s.Client.Channel, [Truncated])).Status,
            };
            Assert.True(status.StatusCode == StatusCode.InvalidArgument, $"{service}/{method}: {status}");
            Assert.Contains("request: the message is not a valid", status.Detail);
        }
        // One line per malformed request at most, rate-limited: not one per call, and no stack traces.
        var lines = s.Logs.Entries.Where(e => e.Message.Contains("Malformed request", StringComparison.Ordinal)).ToList();
        Assert.InRange(lines.Count, 1, 2);
        Assert.All(lines, l => Assert.Equal(LogLevel.Warning, l.Level));
        Assert.DoesNotContain(s.Logs.Entries, e => e.Message.Contains("   at ", StringComparison.Ordinal));
        s.AssertNoErrors();
        // The server is fine afterwards.
        Assert.Equal(0x10C98086u, (await s.Client.ReadConfigAsync(0x100, 0, 4).W()).Value);
    }

    [Fact]
    public async Task An_unparsable_message_ends_the_Transact_stream_with_INVALID_ARGUMENT_after_the_good_ones()
    {
        await using var s = await TestServer.StartAsync("tcp");
        var good = new TransactRequest { Tag = 1, ConfigRead = new ConfigReadOp { Rid = 0x100, Offset = 0, Width = 4 } }.ToByteArray();
        var (status, replies) = await RawCalls.TransactAsync(s.Client.Channel, [good, Truncated, good]);
        Assert.Equal(StatusCode.InvalidArgument, status.StatusCode);
        Assert.Contains("TransactRequest", status.Detail);
        Assert.Equal(1, replies);
        Assert.Single(s.Logs.Entries, e => e.Message.Contains("Malformed request to /pcieemu.v1.SessionService/Transact", StringComparison.Ordinal));
        s.AssertNoErrors();
    }
}
