using Grpc.Core;
using PcieEmu.Protocol.V1;

namespace PcieEmu.Server.Services;

/// <summary>EthernetService: arguments are checked; the RPCs answer UNIMPLEMENTED until the Core has the NIC data path.</summary>
public sealed class EthernetGrpcService(PcieEmu.Core.Platform.Machine machine) : EthernetService.EthernetServiceBase
{
    /// <inheritdoc/>
    public override Task<InjectFrameResponse> InjectFrame(InjectFrameRequest request, ServerCallContext context)
    {
        CheckPort(request.Port);
        if (request.Data.Length is < 14 or > 16384) throw RpcErrors.Invalid("data", $"a frame is 14..16384 bytes (was {request.Data.Length})");
        throw Unimplemented();
    }

    /// <inheritdoc/>
    public override Task CaptureFrames(CaptureFramesRequest request, IServerStreamWriter<CapturedFrame> responseStream, ServerCallContext context)
    {
        CheckPort(request.Port);
        throw Unimplemented();
    }

    private void CheckPort(uint port)
    {
        if (port >= (uint)machine.PhysicalFunctions.Count) throw RpcErrors.Invalid("port", $"port {port} does not exist (ports 0..{machine.PhysicalFunctions.Count - 1})");
    }

    private static RpcException Unimplemented() =>
        new(new Status(StatusCode.Unimplemented, "the NIC data path is not implemented in this server version"));
}

/// <summary>IommuService: arguments are checked; TranslateAddress answers UNIMPLEMENTED until the Core has the VT-d unit.</summary>
public sealed class IommuGrpcService : IommuService.IommuServiceBase
{
    /// <inheritdoc/>
    public override Task<TranslateAddressResponse> TranslateAddress(TranslateAddressRequest request, ServerCallContext context)
    {
        RpcErrors.Rid(request.Rid);
        throw new RpcException(new Status(StatusCode.Unimplemented, "the DMA remapping unit is not implemented in this server version"));
    }
}
