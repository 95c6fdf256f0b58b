using System.Diagnostics;
using System.Reflection;
using Google.Protobuf;
using Grpc.AspNetCore.Server.Model;
using Grpc.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace PcieEmu.Server.Hosting;

/// <summary>
/// Turns a request body that does not parse as its protobuf message into INVALID_ARGUMENT on every
/// method (unary, streaming and each message of the Transact stream) instead of grpc-dotnet's
/// UNKNOWN "Exception was thrown by handler" with a stack trace at error level. It binds the
/// generated services itself (in place of grpc-dotnet's binder) with request marshallers whose
/// parse errors become an <see cref="RpcException"/>; each is logged as one rate-limited line.
/// </summary>
internal static class MalformedRequests
{
    /// <summary>Replaces grpc-dotnet's default method provider with <see cref="CheckedMethodProvider{TService}"/>.</summary>
    public static void AddCheckedRequestParsing(this IServiceCollection services)
    {
        var defaults = services.Where(d => d.ServiceType == typeof(IServiceMethodProvider<>)
            && d.ImplementationType?.Name.StartsWith("BinderServiceMethodProvider", StringComparison.Ordinal) == true).ToList();
        if (defaults.Count == 0) throw new InvalidOperationException("grpc-dotnet's BinderServiceMethodProvider is not registered: call AddGrpc first");
        foreach (var d in defaults) services.Remove(d);
        services.AddSingleton<MalformedRequestLog>();
        services.AddSingleton(typeof(IServiceMethodProvider<>), typeof(CheckedMethodProvider<>));
    }

    /// <summary><paramref name="method"/> with a request marshaller whose parse errors become INVALID_ARGUMENT (logged through <paramref name="log"/>); the direct loop binds with it too.</summary>
    public static Method<TRequest, TResponse> Checked<TRequest, TResponse>(Method<TRequest, TResponse> method, MalformedRequestLog log)
        where TRequest : class where TResponse : class
    {
        var inner = method.RequestMarshaller;
        string name = method.FullName;
        var marshaller = Marshallers.Create<TRequest>(inner.ContextualSerializer, ctx =>
        {
            try
            {
                return inner.ContextualDeserializer(ctx);
            }
            catch (InvalidProtocolBufferException ex)
            {
                log.Report(name, ex.Message);
                throw new RpcException(new Status(StatusCode.InvalidArgument,
                    $"request: the message is not a valid {typeof(TRequest).Name}: {ex.Message}"));
            }
        });
        return new Method<TRequest, TResponse>(method.Type, method.ServiceName, method.Name, marshaller, method.ResponseMarshaller);
    }
}

/// <summary>One log line per malformed request, at most one a second (the rest are counted into the next line).</summary>
internal sealed class MalformedRequestLog(ILogger<MalformedRequestLog> logger)
{
    private long _nextTimestamp;
    private long _suppressed;

    /// <summary>Logs (or counts, when a line was written less than a second ago) one malformed request.</summary>
    public void Report(string method, string reason)
    {
        long now = Stopwatch.GetTimestamp();
        long next = Interlocked.Read(ref _nextTimestamp);
        if (now < next || Interlocked.CompareExchange(ref _nextTimestamp, now + Stopwatch.Frequency, next) != next)
        {
            Interlocked.Increment(ref _suppressed);
            return;
        }
        Log.MalformedRequest(logger, method, reason, Interlocked.Exchange(ref _suppressed, 0));
    }
}

/// <summary>Binds a generated service's methods with request marshallers that report parse errors as INVALID_ARGUMENT.</summary>
internal sealed class CheckedMethodProvider<TService>(MalformedRequestLog log) : IServiceMethodProvider<TService>
    where TService : class
{
    /// <inheritdoc/>
    public void OnServiceMethodDiscovery(ServiceMethodProviderContext<TService> context)
    {
        var bind = typeof(TService).GetCustomAttribute<BindServiceMethodAttribute>(inherit: true);
        if (bind == null) return;
        var method = bind.BindType.GetMethods(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static)
            .Single(m => m.Name == bind.BindMethodName && m.GetParameters() is [var b, _] && b.ParameterType == typeof(ServiceBinderBase));
        method.Invoke(null, [new Binder(context, log), null]);
    }

    private sealed class Binder(ServiceMethodProviderContext<TService> context, MalformedRequestLog log) : ServiceBinderBase
    {
        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, UnaryServerMethod<TRequest, TResponse>? handler) =>
            context.AddUnaryMethod(Checked(method), Metadata(method, typeof(TRequest), typeof(ServerCallContext)),
                Invoker<Grpc.AspNetCore.Server.Model.UnaryServerMethod<TService, TRequest, TResponse>>(method));

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, ServerStreamingServerMethod<TRequest, TResponse>? handler) =>
            context.AddServerStreamingMethod(Checked(method), Metadata(method, typeof(TRequest), typeof(IServerStreamWriter<TResponse>), typeof(ServerCallContext)),
                Invoker<Grpc.AspNetCore.Server.Model.ServerStreamingServerMethod<TService, TRequest, TResponse>>(method));

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, ClientStreamingServerMethod<TRequest, TResponse>? handler) =>
            context.AddClientStreamingMethod(Checked(method), Metadata(method, typeof(IAsyncStreamReader<TRequest>), typeof(ServerCallContext)),
                Invoker<Grpc.AspNetCore.Server.Model.ClientStreamingServerMethod<TService, TRequest, TResponse>>(method));

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, DuplexStreamingServerMethod<TRequest, TResponse>? handler) =>
            context.AddDuplexStreamingMethod(Checked(method), Metadata(method, typeof(IAsyncStreamReader<TRequest>), typeof(IServerStreamWriter<TResponse>), typeof(ServerCallContext)),
                Invoker<Grpc.AspNetCore.Server.Model.DuplexStreamingServerMethod<TService, TRequest, TResponse>>(method));

        private static MethodInfo Handler(IMethod method, params Type[] parameters) =>
            typeof(TService).GetMethod(method.Name, BindingFlags.Public | BindingFlags.Instance, parameters)
            ?? throw new InvalidOperationException($"{typeof(TService).Name} has no method {method.Name}");

        private static List<object> Metadata(IMethod method, params Type[] parameters)
        {
            var metadata = new List<object>();
            metadata.AddRange(typeof(TService).GetCustomAttributes(inherit: true));
            metadata.AddRange(Handler(method, parameters).GetCustomAttributes(inherit: true));
            return metadata;
        }

        private static TDelegate Invoker<TDelegate>(IMethod method) where TDelegate : Delegate
        {
            var parameters = typeof(TDelegate).GetMethod("Invoke")!.GetParameters().Skip(1).Select(p => p.ParameterType).ToArray();
            return Handler(method, parameters).CreateDelegate<TDelegate>();
        }

        private Method<TRequest, TResponse> Checked<TRequest, TResponse>(Method<TRequest, TResponse> method)
            where TRequest : class where TResponse : class => MalformedRequests.Checked(method, log);
    }
}
