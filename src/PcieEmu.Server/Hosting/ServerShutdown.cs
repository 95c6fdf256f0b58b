using Grpc.Core;
using Microsoft.Extensions.Hosting;

namespace PcieEmu.Server.Hosting;

/// <summary>
/// Ends open streams as soon as the server begins to stop (SIGTERM, Ctrl-C, StopAsync): each
/// stream handler watches the token of its <see cref="Link(ServerCallContext)"/> and ends with UNAVAILABLE "server
/// shutting down". The signal is given in the host's first stopping step (before Kestrel stops),
/// which then waits (at most <see cref="DrainTimeout"/>) for those streams to end and gives their
/// final status a moment to reach the clients, so they read the status rather than a closed connection.
/// </summary>
public sealed class ServerShutdown(IHostApplicationLifetime lifetime) : IHostedLifecycleService
{
    /// <summary>The status detail streams end with when the server stops.</summary>
    public const string Detail = "server shutting down";

    /// <summary>How long the host waits for calls still running once the streams are told (a backstop; streams end at once).</summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(1);

    /// <summary>Longest wait for open streams to end before the connections close.</summary>
    public static readonly TimeSpan DrainTimeout = TimeSpan.FromMilliseconds(500);

    private static readonly TimeSpan Grace = TimeSpan.FromMilliseconds(50);
    private readonly CancellationTokenSource _stopping = new();
    private int _open;

    /// <summary>True once the server has begun to stop.</summary>
    public bool IsStopping => _stopping.IsCancellationRequested || lifetime.ApplicationStopping.IsCancellationRequested;

    /// <summary>Streams open now.</summary>
    public int OpenStreams => Volatile.Read(ref _open);

    /// <summary>A token cancelled when the call ends or the server begins to stop; dispose it when the stream handler ends.</summary>
    public StreamLink Link(ServerCallContext context) => Link(context?.CancellationToken ?? throw new ArgumentNullException(nameof(context)));

    /// <summary>The same for a stream that is not a gRPC call (the web view's server push): cancelled when <paramref name="requestAborted"/> is or the server begins to stop.</summary>
    public StreamLink Link(CancellationToken requestAborted)
    {
        Interlocked.Increment(ref _open);
        return new StreamLink(this, CancellationTokenSource.CreateLinkedTokenSource(requestAborted, _stopping.Token, lifetime.ApplicationStopping));
    }

    /// <summary>UNAVAILABLE "server shutting down".</summary>
    public static RpcException Unavailable() => new(new Status(StatusCode.Unavailable, Detail));

    /// <inheritdoc/>
    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        var deadline = DateTime.UtcNow + DrainTimeout;
        while (OpenStreams > 0 && DateTime.UtcNow < deadline) await Task.Delay(5, cancellationToken).ConfigureAwait(false);
        await Task.Delay(Grace, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc/>
    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    /// <inheritdoc/>
    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    /// <inheritdoc/>
    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    /// <inheritdoc/>
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    /// <inheritdoc/>
    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>One open stream's cancellation (call ended or server stopping).</summary>
    public sealed class StreamLink : IDisposable
    {
        private readonly ServerShutdown _owner;
        private readonly CancellationTokenSource _cts;
        private int _disposed;

        internal StreamLink(ServerShutdown owner, CancellationTokenSource cts)
        {
            _owner = owner;
            _cts = cts;
        }

        /// <summary>Cancelled when the call ends or the server begins to stop.</summary>
        public CancellationToken Token => _cts.Token;

        /// <inheritdoc/>
        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
            _cts.Dispose();
            Interlocked.Decrement(ref _owner._open);
        }
    }
}
