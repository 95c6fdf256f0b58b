using System.Runtime.CompilerServices;
using Grpc.Core;
using PcieEmu.Protocol.V1;

namespace PcieEmu.Client;

/// <summary>A live interrupt subscription (see <see cref="PcieEmuClient.OpenInterruptStreamAsync"/>).</summary>
public sealed class InterruptStream : IDisposable
{
    private readonly AsyncServerStreamingCall<InterruptEvent> _call;

    internal InterruptStream(AsyncServerStreamingCall<InterruptEvent> call) => _call = call;

    /// <summary>
    /// Events in the order the platform saw them. Ends with an <see cref="RpcException"/>
    /// (RESOURCE_EXHAUSTED, trailer "pcieemu-missed") if this subscriber fell behind.
    /// </summary>
    public async IAsyncEnumerable<InterruptEvent> Events([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        while (await _call.ResponseStream.MoveNext(cancellationToken).ConfigureAwait(false))
            yield return _call.ResponseStream.Current;
    }

    /// <summary>Ends the subscription.</summary>
    public void Dispose() => _call.Dispose();
}
