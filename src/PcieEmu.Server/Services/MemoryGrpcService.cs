using Google.Protobuf;
using Grpc.Core;
using PcieEmu.Core.Platform;
using PcieEmu.Protocol.V1;
using PcieEmu.Server.Hosting;

namespace PcieEmu.Server.Services;

/// <summary>MemoryService: RAM block reads and writes (CPU view, no IOMMU), at most 4 MiB per call.</summary>
internal sealed class MemoryGrpcService(Machine machine, LimitsOptions limits) : MemoryService.MemoryServiceBase
{
    /// <inheritdoc/>
    public override Task<ReadMemoryResponse> ReadMemory(ReadMemoryRequest request, ServerCallContext context) =>
        Task.FromResult(new ReadMemoryResponse { Data = Read(machine, limits, request.Address, request.Length) });

    /// <inheritdoc/>
    public override Task<WriteMemoryResponse> WriteMemory(WriteMemoryRequest request, ServerCallContext context)
    {
        Write(machine, limits, request.Address, request.Data);
        return Task.FromResult(new WriteMemoryResponse { Length = (uint)request.Data.Length });
    }

    /// <summary>Checks and performs a RAM read; shared with the session stream.</summary>
    internal static ByteString Read(Machine machine, LimitsOptions limits, ulong address, uint length)
    {
        if (length > (uint)limits.MaxMemoryTransfer) throw RpcErrors.Invalid("length", $"at most {limits.MaxMemoryTransfer} bytes per call (was {length})");
        if (!machine.Ram.Contains(address, length)) throw RpcErrors.OutOfRange("address", $"[0x{address:X}, +{length}) is outside RAM [0x{machine.Ram.Base:X}, +0x{machine.Ram.Size:X})");
        if (length == 0) return ByteString.Empty;
        var buffer = new byte[length];
        machine.ReadMemory(address, buffer);
        return UnsafeByteOperations.UnsafeWrap(buffer);
    }

    /// <summary>Checks and performs a RAM write; shared with the session stream.</summary>
    internal static void Write(Machine machine, LimitsOptions limits, ulong address, ByteString data)
    {
        if (data.Length > limits.MaxMemoryTransfer) throw RpcErrors.Invalid("data", $"at most {limits.MaxMemoryTransfer} bytes per call (was {data.Length})");
        if (!machine.Ram.Contains(address, (ulong)data.Length)) throw RpcErrors.OutOfRange("address", $"[0x{address:X}, +{data.Length}) is outside RAM [0x{machine.Ram.Base:X}, +0x{machine.Ram.Size:X})");
        if (data.Length > 0) machine.WriteMemory(address, data.Span);
    }
}
