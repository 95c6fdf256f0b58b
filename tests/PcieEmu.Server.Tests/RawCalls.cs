using Google.Protobuf.Reflection;
using Grpc.Core;
using Grpc.Net.Client;
using PcieEmu.Protocol.V1;

namespace PcieEmu.Server.Tests;

/// <summary>Calls with raw request bytes (what a hostile or broken client can send), framed correctly by gRPC.</summary>
internal static class RawCalls
{
    private static readonly Marshaller<byte[]> Bytes = Marshallers.Create(b => b, b => b);

    /// <summary>Every method of the PcieEmu services and the health check, with its request message.</summary>
    public static IReadOnlyList<(string Service, string Method, MethodType Type, MessageDescriptor Input)> AllMethodsWithInput { get; } =
    [
        .. new[]
        {
            PlatformReflection.Descriptor, ConfigReflection.Descriptor, MmioReflection.Descriptor, MemoryReflection.Descriptor,
            SessionReflection.Descriptor, InterruptReflection.Descriptor, EthernetReflection.Descriptor, IommuReflection.Descriptor,
        }.SelectMany(f => f.Services).SelectMany(s => s.Methods).Select(m => (m.Service.FullName, m.Name, TypeOf(m), m.InputType)),
        ("grpc.health.v1.Health", "Check", MethodType.Unary, Grpc.Health.V1.HealthCheckRequest.Descriptor),
    ];

    /// <summary>Every method of the PcieEmu services and the health check: (service full name, method name, kind).</summary>
    public static IReadOnlyList<(string Service, string Method, MethodType Type)> AllMethods { get; } =
        [.. AllMethodsWithInput.Select(m => (m.Service, m.Method, m.Type))];

    private static MethodType TypeOf(MethodDescriptor m) => (m.IsClientStreaming, m.IsServerStreaming) switch
    {
        (false, false) => MethodType.Unary,
        (false, true) => MethodType.ServerStreaming,
        (true, false) => MethodType.ClientStreaming,
        _ => MethodType.DuplexStreaming,
    };

    public static Method<byte[], byte[]> Method(MethodType type, string service, string name) => new(type, service, name, Bytes, Bytes);

    /// <summary>A unary call with <paramref name="body"/> as the request; returns the status.</summary>
    public static async Task<Status> UnaryAsync(GrpcChannel channel, string service, string name, byte[] body, CancellationToken ct = default)
    {
        try
        {
            await channel.CreateCallInvoker().AsyncUnaryCall(Method(MethodType.Unary, service, name), null, new CallOptions(cancellationToken: ct, deadline: T.Deadline), body).ResponseAsync.W();
            return Status.DefaultSuccess;
        }
        catch (RpcException ex)
        {
            return ex.Status;
        }
    }

    /// <summary>
    /// A server-streaming call: the status it ends with, or OK when it is still open (waiting for
    /// events) after <paramref name="wait"/>, at which point it is cancelled.
    /// </summary>
    public static async Task<Status> ServerStreamingAsync(GrpcChannel channel, string service, string name, byte[] body, TimeSpan? wait = null)
    {
        using var cts = new CancellationTokenSource(T.Timeout);
        using var call = channel.CreateCallInvoker().AsyncServerStreamingCall(Method(MethodType.ServerStreaming, service, name), null, new CallOptions(cancellationToken: cts.Token), body);
        try
        {
            // Headers first: the server has read the request (an open subscription sends them at once,
            // a refused one sends its status with them), so stopping after that is a plain hang-up.
            await call.ResponseHeadersAsync.W();
        }
        catch (RpcException ex)
        {
            return ex.Status;
        }
        using var open = new CancellationTokenSource(wait ?? TimeSpan.FromMilliseconds(300));
        try
        {
            while (await call.ResponseStream.MoveNext(open.Token).W()) { }
            return call.GetStatus();
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.Cancelled && open.IsCancellationRequested)
        {
            return Status.DefaultSuccess;
        }
        catch (RpcException ex)
        {
            return ex.Status;
        }
    }

    /// <summary>A Transact stream fed <paramref name="messages"/>; reads replies until the stream ends and returns its status.</summary>
    public static async Task<(Status Status, int Replies)> TransactAsync(GrpcChannel channel, IEnumerable<byte[]> messages)
    {
        using var cts = new CancellationTokenSource(T.Timeout);
        using var call = channel.CreateCallInvoker().AsyncDuplexStreamingCall(Method(MethodType.DuplexStreaming, "pcieemu.v1.SessionService", "Transact"), null, new CallOptions(cancellationToken: cts.Token));
        int replies = 0;
        var reader = Task.Run(async () =>
        {
            while (await call.ResponseStream.MoveNext(cts.Token)) replies++;
        });
        try
        {
            foreach (var m in messages) await call.RequestStream.WriteAsync(m).W();
            await call.RequestStream.CompleteAsync().W();
        }
        catch (RpcException)
        {
            // The server ended the stream early; its status is read below.
        }
        catch (InvalidOperationException)
        {
            // Writing after the call completed.
        }
        try
        {
            await reader.W();
            return (call.GetStatus(), replies);
        }
        catch (RpcException ex)
        {
            return (ex.Status, replies);
        }
    }
}
