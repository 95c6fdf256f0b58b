using System.Globalization;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using PcieEmu.Core.Events;
using PcieEmu.Core.Topology;
using PcieEmu.Protocol.V1;
using PcieEmu.Server.Hosting;

namespace PcieEmu.Server.Services;

/// <summary>EthernetService: the ports' wire, through the <see cref="WireTap"/>.</summary>
internal sealed class EthernetGrpcService(WireTap tap, LimitsOptions limits, ServerShutdown shutdown, ILogger<EthernetGrpcService> logger) : EthernetService.EthernetServiceBase
{
    /// <inheritdoc/>
    public override Task<InjectFrameResponse> InjectFrame(InjectFrameRequest request, ServerCallContext context)
    {
        int port = Port(request.Port);
        try
        {
            int queues = tap.Inject(port, request.Data.Span);
            return Task.FromResult(new InjectFrameResponse { Accepted = queues > 0, Queues = (uint)queues });
        }
        catch (ArgumentException ex)
        {
            throw RpcErrors.Invalid(ex);
        }
    }

    /// <inheritdoc/>
    public override async Task CaptureFrames(CaptureFramesRequest request, IServerStreamWriter<CapturedFrame> responseStream, ServerCallContext context)
    {
        int port = Port(request.Port);
        using var sub = tap.TrySubscribe(port, limits.CaptureQueueCapacity, limits.MaxCaptureSubscribers, request.IncludeReceived, request.IncludeSwitched)
            ?? throw new RpcException(new Status(StatusCode.ResourceExhausted, $"subscribers: already {limits.MaxCaptureSubscribers} capture subscribers (the limit)"));
        await context.WriteResponseHeadersAsync([]).ConfigureAwait(false);
        var reader = sub.Reader;
        string portName = tap.PortName(port);
        using var call = shutdown.Link(context);
        try
        {
            while (await reader.WaitToReadAsync(call.Token).ConfigureAwait(false))
            {
                while (reader.TryRead(out var f))
                {
                    await responseStream.WriteAsync(new CapturedFrame
                    {
                        Port = (uint)f.Frame.Port, Data = UnsafeByteOperations.UnsafeWrap(f.Frame.Data), TimestampNs = f.Frame.TimestampUnixNs,
                        Direction = f.Direction switch
                        {
                            FrameDirection.FromWire => CaptureDirection.FromWire,
                            FrameDirection.Switched => CaptureDirection.Switched,
                            _ => CaptureDirection.ToWire,
                        },
                        Function = Bdf.Format(f.Rid), Queue = f.Queue, Pools = f.Pools, PortName = portName,
                    }, call.Token).ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException) when (shutdown.IsStopping)
        {
            throw ServerShutdown.Unavailable();
        }
        catch (CaptureOverflowException)
        {
            long missed = sub.Missed;
            Log.CaptureOverflow(logger, context.Peer, port, missed);
            throw new RpcException(new Status(StatusCode.ResourceExhausted,
                    $"capture subscriber fell behind: its queue of {limits.CaptureQueueCapacity} overflowed and {missed} frame(s) were missed"),
                new Metadata { { InterruptGrpcService.MissedTrailer, missed.ToString(CultureInfo.InvariantCulture) } });
        }
    }

    private int Port(uint port) =>
        port < (uint)tap.Ports ? (int)port : throw RpcErrors.Invalid("port", $"port {port} does not exist (ports 0..{tap.Ports - 1})");
}
