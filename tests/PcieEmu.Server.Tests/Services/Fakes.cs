using Grpc.Core;

namespace PcieEmu.Server.Tests.Services;

/// <summary>A minimal server call context for calling service methods directly.</summary>
internal sealed class FakeContext(CancellationToken ct = default) : ServerCallContext
{
    private readonly Metadata _trailers = [];
    public int HeadersWritten { get; private set; }
    protected override string MethodCore => "test";
    protected override string HostCore => "localhost";
    protected override string PeerCore => "test-peer";
    protected override DateTime DeadlineCore => DateTime.MaxValue;
    protected override Metadata RequestHeadersCore => [];
    protected override CancellationToken CancellationTokenCore => ct;
    protected override Metadata ResponseTrailersCore => _trailers;
    protected override Status StatusCore { get; set; }
    protected override WriteOptions? WriteOptionsCore { get; set; }
    protected override AuthContext AuthContextCore => new("test", []);
    protected override ContextPropagationToken CreatePropagationTokenCore(ContextPropagationOptions? options) => throw new NotSupportedException();
    protected override Task WriteResponseHeadersAsyncCore(Metadata responseHeaders) { HeadersWritten++; return Task.CompletedTask; }
}

/// <summary>A request stream over a fixed list.</summary>
internal sealed class ListReader<TMsg>(IEnumerable<TMsg> items) : IAsyncStreamReader<TMsg>
{
    private readonly IEnumerator<TMsg> _e = items.GetEnumerator();
    public TMsg Current => _e.Current;
    public Task<bool> MoveNext(CancellationToken cancellationToken) => Task.FromResult(_e.MoveNext());
}

/// <summary>A response stream that records what was written.</summary>
internal sealed class ListWriter<TMsg> : IServerStreamWriter<TMsg>
{
    public List<TMsg> Written { get; } = [];
    public WriteOptions? WriteOptions { get; set; }
    public Task WriteAsync(TMsg message) { Written.Add(message); return Task.CompletedTask; }
    public Task WriteAsync(TMsg message, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return WriteAsync(message);
    }
}

/// <summary>A host lifetime that never stops (unit tests of the stream handlers).</summary>
internal sealed class RunningLifetime : Microsoft.Extensions.Hosting.IHostApplicationLifetime
{
    public static readonly PcieEmu.Server.Hosting.ServerShutdown Shutdown = new(new RunningLifetime());
    public CancellationToken ApplicationStarted => CancellationToken.None;
    public CancellationToken ApplicationStopping => CancellationToken.None;
    public CancellationToken ApplicationStopped => CancellationToken.None;
    public void StopApplication() { }
}
