using System.Globalization;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using PcieEmu.Core.Interrupts;
using PcieEmu.Core.Platform;
using PcieEmu.Protocol.V1;
using PcieEmu.Server.Hosting;
using CoreEvent = PcieEmu.Core.Interrupts.InterruptEvent;

namespace PcieEmu.Server.Services;

/// <summary>Counts live interrupt subscribers against <see cref="LimitsOptions.MaxInterruptSubscribers"/>.</summary>
public sealed class InterruptSubscribers
{
    private int _count;

    /// <summary>Live subscribers.</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>Takes a slot if fewer than <paramref name="max"/> are taken.</summary>
    public bool TryEnter(int max)
    {
        while (true)
        {
            int n = Volatile.Read(ref _count);
            if (n >= max) return false;
            if (Interlocked.CompareExchange(ref _count, n + 1, n) == n) return true;
        }
    }

    /// <summary>Releases a slot.</summary>
    public void Exit() => Interlocked.Decrement(ref _count);
}

/// <summary>
/// InterruptService: each subscriber gets its own bounded queue from the Core's hub (publishing
/// never blocks the machine). A subscriber whose queue overflows gets its queued events, then its
/// stream ends with RESOURCE_EXHAUSTED and the count it missed (message and "pcieemu-missed" trailer).
/// </summary>
internal sealed class InterruptGrpcService(Machine machine, LimitsOptions limits, InterruptSubscribers subscribers, ServerShutdown shutdown, ILogger<InterruptGrpcService> logger)
    : InterruptService.InterruptServiceBase
{
    /// <summary>Trailer carrying the number of events a cut-off subscriber missed.</summary>
    public const string MissedTrailer = "pcieemu-missed";

    /// <inheritdoc/>
    public override async Task SubscribeInterrupts(SubscribeInterruptsRequest request, IServerStreamWriter<Protocol.V1.InterruptEvent> responseStream, ServerCallContext context)
    {
        var rids = new List<ushort>(request.Rids.Count);
        for (int i = 0; i < request.Rids.Count; i++) rids.Add(RpcErrors.Rid(request.Rids[i], $"rids[{i}]"));
        if (!subscribers.TryEnter(limits.MaxInterruptSubscribers))
            throw new RpcException(new Status(StatusCode.ResourceExhausted, $"subscribers: already {limits.MaxInterruptSubscribers} interrupt subscribers (the limit)"));
        try
        {
            using var sub = machine.Interrupts.Subscribe(rids, limits.InterruptQueueCapacity);
            Log.SubscriberJoined(logger, context.Peer, rids.Count == 0 ? "all" : string.Join(',', rids.Select(r => Core.Topology.Bdf.Format(r))));
            // Headers tell the client the subscription is live (events from now on reach it).
            await context.WriteResponseHeadersAsync([]).ConfigureAwait(false);
            var reader = sub.Reader;
            using var call = shutdown.Link(context);
            try
            {
                while (await reader.WaitToReadAsync(call.Token).ConfigureAwait(false))
                {
                    while (reader.TryRead(out var ev))
                        await responseStream.WriteAsync(ToProto(ev), call.Token).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (shutdown.IsStopping)
            {
                throw ServerShutdown.Unavailable();
            }
            catch (InterruptOverflowException)
            {
                long missed = sub.Missed;
                Log.SubscriberOverflow(logger, context.Peer, missed);
                var trailers = new Metadata { { MissedTrailer, missed.ToString(CultureInfo.InvariantCulture) } };
                throw new RpcException(new Status(StatusCode.ResourceExhausted,
                    $"interrupt subscriber fell behind: its queue of {limits.InterruptQueueCapacity} overflowed and {missed} event(s) were missed"), trailers);
            }
        }
        finally
        {
            subscribers.Exit();
        }
    }

    /// <summary>Core event to proto.</summary>
    public static Protocol.V1.InterruptEvent ToProto(CoreEvent ev) => new()
    {
        Sequence = ev.Sequence,
        Rid = ev.Rid,
        Kind = (Protocol.V1.InterruptKind)(int)ev.Kind,
        Address = ev.Address,
        Data = ev.Data,
        Vector = ev.Vector,
        TimestampNs = ev.TimestampNs,
        Destination = ev.Destination,
        CpuVector = ev.CpuVector,
    };
}
