using Grpc.Core;
using PcieEmu.Core.Iommu;
using PcieEmu.Core.Platform;
using PcieEmu.Protocol.V1;

namespace PcieEmu.Server.Services;

/// <summary>IommuService: translation probes answered by the Core's VT-d unit.</summary>
internal sealed class IommuGrpcService(Machine machine) : IommuService.IommuServiceBase
{
    /// <inheritdoc/>
    public override Task<TranslateAddressResponse> TranslateAddress(TranslateAddressRequest request, ServerCallContext context)
    {
        var r = machine.Iommu.Probe(RpcErrors.Rid(request.Rid), request.Address, request.Write, request.DryRun);
        return Task.FromResult(new TranslateAddressResponse
        {
            Status = r.Status switch
            {
                VtdProbeStatus.Translated => TranslationStatus.Ok,
                VtdProbeStatus.TranslationDisabled => TranslationStatus.TranslationDisabled,
                VtdProbeStatus.PassThrough => TranslationStatus.PassThrough,
                VtdProbeStatus.Fault => TranslationStatus.Fault,
                _ => TranslationStatus.Unspecified,
            },
            TranslatedAddress = r.Status == VtdProbeStatus.Fault ? 0 : r.TranslatedAddress,
            FaultReason = (uint)r.FaultReason,
            FaultRecorded = r.Recorded,
        });
    }
}
