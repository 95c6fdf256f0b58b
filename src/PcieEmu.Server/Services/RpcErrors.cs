using Grpc.Core;
using PcieEmu.Core.AddressSpace;
using Proto = PcieEmu.Protocol.V1;

namespace PcieEmu.Server.Services;

/// <summary>Maps malformed requests to gRPC statuses that name the field, and Core values to proto.</summary>
internal static class RpcErrors
{
    /// <summary>INVALID_ARGUMENT "field: reason".</summary>
    public static RpcException Invalid(string field, string reason) =>
        new(new Status(StatusCode.InvalidArgument, $"{field}: {reason}"));

    /// <summary>INVALID_ARGUMENT from a Core <see cref="ArgumentException"/>, naming its parameter (the proto field).</summary>
    public static RpcException Invalid(ArgumentException ex, string prefix = "") =>
        Invalid(prefix + (ex.ParamName ?? "request"), Reason(ex));

    /// <summary>OUT_OF_RANGE "field: reason".</summary>
    public static RpcException OutOfRange(string field, string reason) =>
        new(new Status(StatusCode.OutOfRange, $"{field}: {reason}"));

    /// <summary>The message of an ArgumentException without the " (Parameter 'x')" suffix.</summary>
    public static string Reason(ArgumentException ex)
    {
        string m = ex.Message;
        int i = ex.ParamName == null ? -1 : m.LastIndexOf(" (Parameter '", StringComparison.Ordinal);
        return i >= 0 ? m[..i] : m;
    }

    /// <summary>A routing ID field: at most 0xFFFF.</summary>
    public static ushort Rid(uint rid, string field = "rid") =>
        rid <= 0xFFFF ? (ushort)rid : throw Invalid(field, $"routing ID 0x{rid:X} is over 0xFFFF");

    /// <summary>A config offset: 0..4095 (the dword-crossing rule is Core's).</summary>
    public static int Offset(uint offset, string field = "offset") =>
        offset < 4096 ? (int)offset : throw Invalid(field, $"offset must be in [0, 4096) (was {offset})");

    /// <summary>A width field: small enough for Core to judge (Core names the accepted widths).</summary>
    public static int Width(uint width, string field = "width") =>
        width <= 64 ? (int)width : throw Invalid(field, $"width must be 1, 2, 4 or 8 (was {width})");

    /// <summary>Core status to proto.</summary>
    public static Proto.CompletionStatus ToProto(CompletionStatus s) => (Proto.CompletionStatus)(int)s;
}
