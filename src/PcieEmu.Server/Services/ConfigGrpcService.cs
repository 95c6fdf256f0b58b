using Grpc.Core;
using PcieEmu.Core.Platform;
using PcieEmu.Protocol.V1;

namespace PcieEmu.Server.Services;

/// <summary>ConfigService: config reads and writes, routed by the Core.</summary>
internal sealed class ConfigGrpcService(Machine machine) : ConfigService.ConfigServiceBase
{
    /// <inheritdoc/>
    public override Task<ReadConfigResponse> ReadConfig(ReadConfigRequest request, ServerCallContext context)
    {
        try
        {
            var r = machine.ReadConfig(RpcErrors.Rid(request.Rid), RpcErrors.Offset(request.Offset), RpcErrors.Width(request.Width));
            return Task.FromResult(new ReadConfigResponse { Status = RpcErrors.ToProto(r.Status), Value = (uint)r.Value });
        }
        catch (ArgumentException ex)
        {
            throw RpcErrors.Invalid(ex);
        }
    }

    /// <inheritdoc/>
    public override Task<WriteConfigResponse> WriteConfig(WriteConfigRequest request, ServerCallContext context)
    {
        try
        {
            var s = machine.WriteConfig(RpcErrors.Rid(request.Rid), RpcErrors.Offset(request.Offset), RpcErrors.Width(request.Width), request.Value);
            return Task.FromResult(new WriteConfigResponse { Status = RpcErrors.ToProto(s) });
        }
        catch (ArgumentException ex)
        {
            throw RpcErrors.Invalid(ex);
        }
    }
}

/// <summary>MmioService: CPU memory reads and writes (RAM, IOMMU registers, BARs).</summary>
internal sealed class MmioGrpcService(Machine machine) : MmioService.MmioServiceBase
{
    /// <inheritdoc/>
    public override Task<ReadMmioResponse> ReadMmio(ReadMmioRequest request, ServerCallContext context)
    {
        try
        {
            var r = machine.ReadMmio(request.Address, RpcErrors.Width(request.Width));
            return Task.FromResult(new ReadMmioResponse { Status = RpcErrors.ToProto(r.Status), Value = r.Value });
        }
        catch (ArgumentException ex)
        {
            throw RpcErrors.Invalid(ex);
        }
    }

    /// <inheritdoc/>
    public override Task<WriteMmioResponse> WriteMmio(WriteMmioRequest request, ServerCallContext context)
    {
        try
        {
            var s = machine.WriteMmio(request.Address, RpcErrors.Width(request.Width), request.Value);
            return Task.FromResult(new WriteMmioResponse { Status = RpcErrors.ToProto(s) });
        }
        catch (ArgumentException ex)
        {
            throw RpcErrors.Invalid(ex);
        }
    }
}
