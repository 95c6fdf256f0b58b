using Grpc.Core;
using PcieEmu.Protocol.V1;

namespace PcieEmu.Server.Tests.Hosting;

/// <summary>Issue 9, defect 7: stopping the server ends open streams at once with UNAVAILABLE "server shutting down".</summary>
public sealed class ShutdownTests
{
    [Fact]
    public async Task Stopping_with_every_kind_of_stream_open_ends_them_with_UNAVAILABLE_and_does_not_wait()
    {
        var s = await TestServer.StartAsync("unix");
        try
        {
            using var cts = new CancellationTokenSource(T.Timeout);
            using var session = s.Client.Session.Transact(cancellationToken: cts.Token);
            await session.RequestStream.WriteAsync(new TransactRequest { Tag = 1, ConfigRead = new ConfigReadOp { Rid = 0x100, Width = 4 } }).W();
            Assert.True(await session.ResponseStream.MoveNext(cts.Token).W());
            using var interrupts = s.Client.Interrupts.SubscribeInterrupts(new SubscribeInterruptsRequest(), cancellationToken: cts.Token);
            await interrupts.ResponseHeadersAsync.W();
            using var frames = s.Client.Ethernet.CaptureFrames(new CaptureFramesRequest { Port = 0 }, cancellationToken: cts.Token);
            await frames.ResponseHeadersAsync.W();

            var stop = s.App.StopAsync();
            foreach (var (name, next) in new (string, Func<Task>)[] { ("Transact", () => session.ResponseStream.MoveNext(cts.Token)), ("SubscribeInterrupts", () => interrupts.ResponseStream.MoveNext(cts.Token)), ("CaptureFrames", () => frames.ResponseStream.MoveNext(cts.Token)) })
            {
                var ex = await Assert.ThrowsAsync<RpcException>(next).W();
                Assert.True((StatusCode.Unavailable, "server shutting down") == (ex.StatusCode, ex.Status.Detail), name + ": " + ex);
            }
            // The host does not sit out a shutdown timeout: a hang here is the old 30 s wait.
            await stop.WaitAsync(TimeSpan.FromSeconds(5));
            s.AssertNoErrors();
        }
        finally
        {
            await s.DisposeAsync();
        }
    }
}
