using System.Reflection;
using Grpc.Core;
using PcieEmu.Server.Hosting;

namespace PcieEmu.Server.Direct;

/// <summary>A bound method of the direct loop: runs one call of it and ends the call with its status.</summary>
internal abstract class DirectMethod
{
    /// <summary>Unary, server/client streaming or duplex.</summary>
    public abstract MethodType Type { get; }

    /// <summary>Whether the handler starts when the request headers arrive (it reads a stream) rather than once the request is complete.</summary>
    public bool StartsOnHeaders => Type is MethodType.ClientStreaming or MethodType.DuplexStreaming;

    /// <summary>Runs the call to its end; never throws (a failure ends the call with a status).</summary>
    public abstract Task RunAsync(DirectCall call);
}

/// <summary>The typed adapter between a generated handler and a <see cref="DirectCall"/>.</summary>
internal sealed class DirectMethod<TRequest, TResponse> : DirectMethod
    where TRequest : class where TResponse : class
{
    private readonly Method<TRequest, TResponse> _method;
    private readonly Delegate _handler;
    private readonly Func<byte[], object> _parse;

    public DirectMethod(Method<TRequest, TResponse> method, Delegate handler)
    {
        _method = method;
        _handler = handler;
        var deserializer = method.RequestMarshaller.ContextualDeserializer;
        _parse = bytes => deserializer(new DirectDeserializationContext(bytes));
    }

    /// <inheritdoc/>
    public override MethodType Type => _method.Type;

    /// <inheritdoc/>
    public override async Task RunAsync(DirectCall call)
    {
        var connection = call.Connection;
        try
        {
            switch (_handler)
            {
                case UnaryServerMethod<TRequest, TResponse> unary:
                {
                    var response = await unary(SingleRequest(call), call).ConfigureAwait(false);
                    await connection.SendMessageAsync(call, response, _method.ResponseMarshaller, finish: true).ConfigureAwait(false);
                    break;
                }
                case ServerStreamingServerMethod<TRequest, TResponse> serverStreaming:
                    await serverStreaming(SingleRequest(call), new Writer(call, _method.ResponseMarshaller), call).ConfigureAwait(false);
                    connection.Finish(call, call.Status, call.ResponseTrailersIfAny, cancel: false);
                    break;
                case ClientStreamingServerMethod<TRequest, TResponse> clientStreaming:
                {
                    var response = await clientStreaming(new Reader(call, _parse), call).ConfigureAwait(false);
                    await connection.SendMessageAsync(call, response, _method.ResponseMarshaller, finish: true).ConfigureAwait(false);
                    break;
                }
                case DuplexStreamingServerMethod<TRequest, TResponse> duplex:
                    await duplex(new Reader(call, _parse), new Writer(call, _method.ResponseMarshaller), call).ConfigureAwait(false);
                    connection.Finish(call, call.Status, call.ResponseTrailersIfAny, cancel: false);
                    break;
            }
        }
        catch (Exception ex)
        {
            connection.Fail(call, ex);
        }
    }

    private TRequest SingleRequest(DirectCall call)
    {
        var message = call.TakeSingleMessage()
            ?? throw new RpcException(new Status(StatusCode.Internal, $"request: {_method.Name} takes exactly one request message (got {call.MessagesReceived})"));
        var request = (TRequest)_parse(message);
        call.Connection.Consumed(call, message.Length);
        return request;
    }

    private sealed class Reader(DirectCall call, Func<byte[], object> parse) : IAsyncStreamReader<TRequest>
    {
        public TRequest Current { get; private set; } = null!;

        public async Task<bool> MoveNext(CancellationToken cancellationToken)
        {
            var read = call.ReadAsync(parse, cancellationToken);
            bool more = read.IsCompletedSuccessfully ? read.Result : await read.ConfigureAwait(false);
            if (more) Current = (TRequest)call.CurrentRequest!;
            return more;
        }
    }

    private sealed class Writer(DirectCall call, Marshaller<TResponse> marshaller) : IServerStreamWriter<TResponse>
    {
        public WriteOptions? WriteOptions { get; set; }

        public Task WriteAsync(TResponse message) => WriteAsync(message, CancellationToken.None);

        public Task WriteAsync(TResponse message, CancellationToken cancellationToken)
        {
            if (cancellationToken.IsCancellationRequested) return Task.FromCanceled(cancellationToken);
            var sending = call.Connection.SendMessageAsync(call, message, marshaller, finish: false);
            return sending.IsCompletedSuccessfully ? Task.CompletedTask : sending.AsTask();
        }
    }
}

/// <summary>
/// Binds generated services for the direct loop: the same service instances (DI singletons) and the
/// same checked request marshallers (<see cref="MalformedRequests"/>) as the Kestrel path.
/// </summary>
internal sealed class DirectMethods : ServiceBinderBase
{
    private readonly Dictionary<string, DirectMethod> _byPath = new(StringComparer.Ordinal);
    private readonly HashSet<string> _services = new(StringComparer.Ordinal);
    private readonly MalformedRequestLog? _log;

    public DirectMethods(MalformedRequestLog? log) => _log = log;

    /// <summary>The method served at <paramref name="path"/> (<c>/package.Service/Method</c>), or null.</summary>
    public DirectMethod? Find(string path) => _byPath.GetValueOrDefault(path);

    /// <summary>Whether a service of that name (<c>package.Service</c>) is bound.</summary>
    public bool HasService(string name) => _services.Contains(name);

    /// <summary>Number of bound methods.</summary>
    public int Count => _byPath.Count;

    /// <summary>Binds <paramref name="instance"/> through its generated <c>BindService(ServiceBinderBase, TServiceBase)</c>; false when the type has none.</summary>
    public bool Bind(object instance)
    {
        var type = instance.GetType();
        var attribute = type.GetCustomAttribute<BindServiceMethodAttribute>(inherit: true);
        if (attribute == null) return false;
        var method = attribute.BindType.GetMethods(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static)
            .SingleOrDefault(m => m.Name == attribute.BindMethodName && m.GetParameters() is [var b, var impl]
                && b.ParameterType == typeof(ServiceBinderBase) && impl.ParameterType.IsAssignableFrom(type));
        if (method == null) return false;
        method.Invoke(null, [this, instance]);
        return true;
    }

    private void Add<TRequest, TResponse>(Method<TRequest, TResponse> method, Delegate? handler)
        where TRequest : class where TResponse : class
    {
        if (handler == null) return;
        var checkedMethod = _log != null ? MalformedRequests.Checked(method, _log) : method;
        _byPath[method.FullName] = new DirectMethod<TRequest, TResponse>(checkedMethod, handler);
        _services.Add(method.ServiceName);
    }

    /// <inheritdoc/>
    public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, UnaryServerMethod<TRequest, TResponse>? handler) => Add(method, handler);
    /// <inheritdoc/>
    public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, ClientStreamingServerMethod<TRequest, TResponse>? handler) => Add(method, handler);
    /// <inheritdoc/>
    public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, ServerStreamingServerMethod<TRequest, TResponse>? handler) => Add(method, handler);
    /// <inheritdoc/>
    public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, DuplexStreamingServerMethod<TRequest, TResponse>? handler) => Add(method, handler);
}
