using System.Buffers;
using System.Globalization;
using System.Text;
using Grpc.Core;

namespace PcieEmu.Server.Direct;

/// <summary>
/// One gRPC call (one HTTP/2 stream) of the direct loop, and its <see cref="ServerCallContext"/>. Its
/// request messages arrive on the connection's thread; its replies leave through the connection's
/// write lock from whichever thread the handler runs on.
/// </summary>
internal sealed class DirectCall : ServerCallContext
{
    private readonly DirectConnection _connection;
    private readonly CancellationTokenSource _cts = new();
    private readonly Queue<byte[]> _messages = new();
    private Timer? _deadlineTimer;
    private TaskCompletionSource<bool>? _pendingRead;
    private Func<byte[], object>? _pendingParse;
    private byte[] _partial = new byte[64];
    private int _partialLength;
    private Metadata? _responseTrailers;

    public DirectCall(DirectConnection connection, int streamId, string path, DirectMethod? method, Metadata requestHeaders, DateTime deadline, string? encoding)
    {
        _connection = connection;
        StreamId = streamId;
        Path = path;
        Bound = method;
        RequestHeadersValue = requestHeaders;
        DeadlineValue = deadline;
        Encoding = encoding;
    }

    /// <summary>The HTTP/2 stream id.</summary>
    public int StreamId { get; }
    /// <summary>The :path (/package.Service/Method).</summary>
    public string Path { get; }
    /// <summary>The bound method, or null (UNIMPLEMENTED).</summary>
    public DirectMethod? Bound { get; }
    /// <summary>grpc-encoding of the request, or null.</summary>
    public string? Encoding { get; }
    private Metadata RequestHeadersValue { get; }
    private DateTime DeadlineValue { get; }

    // Flow control and stream state: guarded by the connection's write lock.
    /// <summary>What this side may still send on the stream (the peer's window).</summary>
    public long SendWindow;
    /// <summary>What the peer may still send on the stream before this side's next WINDOW_UPDATE.</summary>
    public long ReceiveWindow;
    /// <summary>Bytes received on the stream and not yet given back with a WINDOW_UPDATE.</summary>
    public int PendingCredit;
    /// <summary>Bytes of complete request messages not yet read by the handler.</summary>
    public int QueuedBytes;
    /// <summary>The response HEADERS went out.</summary>
    public bool HeadersSent;
    /// <summary>The stream is done on this side: trailers sent, reset, or the connection lost.</summary>
    public bool Finished;
    /// <summary>The peer ended its side (END_STREAM).</summary>
    public bool RequestComplete;
    /// <summary>Request messages received so far.</summary>
    public int MessagesReceived;
    /// <summary>A reply message is partly sent (waiting for window): trailers cannot follow until it is complete.</summary>
    public bool MidMessage;
    /// <summary>Reused buffer for serializing replies (writes to one call are sequential).</summary>
    public ArrayBufferWriter<byte> Scratch { get; private set; } = new(256);

    /// <summary>Drops a large scratch buffer after a large reply.</summary>
    public void ShrinkScratch() => Scratch = new ArrayBufferWriter<byte>(256);

    /// <summary>The connection the call arrived on.</summary>
    public DirectConnection Connection => _connection;

    /// <summary>Whether the call ended by a reset, a lost connection or its deadline (its handler's results are dropped).</summary>
    public bool Aborted => Volatile.Read(ref _aborted) || _cts.IsCancellationRequested;

    private bool _aborted;

    /// <summary>Starts the deadline timer (grpc-timeout).</summary>
    public void StartDeadline(TimeSpan timeout) =>
        _deadlineTimer = new Timer(static s => ((DirectCall)s!).OnDeadline(), this, timeout, Timeout.InfiniteTimeSpan);

    private void OnDeadline() => _connection.Finish(this, new Status(StatusCode.DeadlineExceeded, "Deadline Exceeded"), null, cancel: true);

    /// <summary>Cancels the call's token (reset, connection lost, deadline); the token's callbacks run on the thread pool, never on the connection's thread.</summary>
    public void Cancel()
    {
        _deadlineTimer?.Dispose();
        if (_cts.IsCancellationRequested || Interlocked.Exchange(ref _aborted, true)) return;
        TaskCompletionSource<bool>? pending;
        lock (_messages)
        {
            pending = _pendingRead;
            _pendingRead = null;
            _pendingParse = null;
        }
        ThreadPool.UnsafeQueueUserWorkItem(static s =>
        {
            var (cts, read) = ((CancellationTokenSource, TaskCompletionSource<bool>?))s!;
            try { cts.Cancel(); } catch (AggregateException) { }
            read?.TrySetException(new IOException("the client reset the request stream or closed the connection"));
        }, (_cts, pending));
    }

    /// <summary>The call finished normally: the deadline timer is no longer needed.</summary>
    public void Completed() => _deadlineTimer?.Dispose();

    /// <summary>
    /// Adds request bytes (DATA payload). Each complete message goes to a pending read (whose
    /// continuation, the handler, runs here, inline) or to the queue. Returns an error status when a
    /// message is refused (too large, compressed). Connection thread only.
    /// </summary>
    public Status? Receive(ReadOnlySpan<byte> data, int maxMessageSize)
    {
        while (data.Length > 0)
        {
            if (_partialLength < 5)
            {
                int n = Math.Min(5 - _partialLength, data.Length);
                data[..n].CopyTo(_partial.AsSpan(_partialLength));
                _partialLength += n;
                data = data[n..];
                if (_partialLength < 5) break;
                if (CheckPrefix(maxMessageSize) is { } error) return error;
            }
            int length = (int)System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(_partial.AsSpan(1));
            int need = 5 + length - _partialLength;
            int take = Math.Min(need, data.Length);
            // Grown with what arrived (at most doubling), never to the length the prefix declares: a peer that
            // declares 4 MiB and sends a few bytes on each of many streams costs what it sent, not 4 MiB each.
            int want = _partialLength + take;
            if (_partial.Length < want) Array.Resize(ref _partial, Math.Min(5 + length, Math.Max(want, _partial.Length * 2)));
            data[..take].CopyTo(_partial.AsSpan(_partialLength));
            _partialLength += take;
            data = data[take..];
            if (_partialLength == 5 + length)
            {
                var message = _partial.AsSpan(5, length).ToArray();
                _partialLength = 0;
                if (_partial.Length > 64 * 1024) _partial = new byte[64];
                MessagesReceived++;
                Deliver(message);
            }
        }
        return null;
    }

    private Status? CheckPrefix(int maxMessageSize)
    {
        byte flag = _partial[0];
        uint length = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(_partial.AsSpan(1));
        if (flag == 1)
            return Encoding is null or "identity"
                ? new Status(StatusCode.Internal, "request: a message is flagged compressed but the call has no grpc-encoding")
                : new Status(StatusCode.Unimplemented, $"request: compressed messages (grpc-encoding {Encoding}) are not supported on this endpoint; send them uncompressed");
        if (flag != 0) return new Status(StatusCode.Internal, $"request: message flag {flag} is not 0 or 1");
        if (length > maxMessageSize)
            return new Status(StatusCode.ResourceExhausted, $"request: received message of {length} bytes exceeds the maximum of {maxMessageSize}");
        return null;
    }

    /// <summary>Unary and server-streaming calls: the one request message (null when there was not exactly one).</summary>
    public byte[]? TakeSingleMessage()
    {
        lock (_messages)
        {
            if (_messages.Count != 1 || _partialLength != 0) return null;
            var m = _messages.Dequeue();
            QueuedBytesDelta(-m.Length);
            return m;
        }
    }

    private void QueuedBytesDelta(int delta) => Interlocked.Add(ref QueuedBytes, delta);

    private void Deliver(byte[] message)
    {
        TaskCompletionSource<bool>? pending;
        Func<byte[], object>? parse;
        lock (_messages)
        {
            pending = _pendingRead;
            parse = _pendingParse;
            _pendingRead = null;
            _pendingParse = null;
            if (pending == null)
            {
                _messages.Enqueue(message);
                QueuedBytesDelta(message.Length);
                return;
            }
        }
        try
        {
            CurrentRequest = parse!(message);
        }
        catch (RpcException ex)
        {
            pending.TrySetException(ex);
            return;
        }
        _connection.Consumed(this, message.Length);
        pending.TrySetResult(true);   // the handler's continuation runs now, on this thread
    }

    /// <summary>The peer ended the request: a pending read completes with false.</summary>
    public void EndRequest()
    {
        TaskCompletionSource<bool>? pending;
        lock (_messages)
        {
            pending = _pendingRead;
            _pendingRead = null;
            _pendingParse = null;
        }
        if (pending == null) return;
        if (_partialLength == 0) pending.TrySetResult(false);
        else pending.TrySetException(new RpcException(new Status(StatusCode.Internal, "request: the stream ended inside a message")));
    }

    /// <summary>The last message <see cref="ReadAsync"/> returned (typed by the method's reader).</summary>
    public object? CurrentRequest;

    /// <summary>The next request message: true with <see cref="CurrentRequest"/> set, false at the end of the request stream.</summary>
    public Task<bool> ReadAsync(Func<byte[], object> parse, CancellationToken cancellationToken)
    {
        byte[]? message = null;
        lock (_messages)
        {
            if (_messages.Count > 0) message = _messages.Dequeue();
            else if (Aborted) return Task.FromException<bool>(new IOException("the client reset the request stream or closed the connection"));
            else if (RequestComplete) return _partialLength == 0 ? Task.FromResult(false)
                : Task.FromException<bool>(new RpcException(new Status(StatusCode.Internal, "request: the stream ended inside a message")));
            else
            {
                if (_pendingRead != null) throw new InvalidOperationException("a read is already pending on this call");
                var tcs = new TaskCompletionSource<bool>();   // not RunContinuationsAsynchronously: the handler continues on the connection's thread
                _pendingRead = tcs;
                _pendingParse = parse;
                if (cancellationToken.CanBeCanceled) RegisterCancel(tcs, cancellationToken);
                return tcs.Task;
            }
            QueuedBytesDelta(-message.Length);
        }
        try
        {
            CurrentRequest = parse(message);
        }
        catch (RpcException ex)
        {
            return Task.FromException<bool>(ex);
        }
        _connection.Consumed(this, message.Length);
        return Task.FromResult(true);
    }

    private void RegisterCancel(TaskCompletionSource<bool> tcs, CancellationToken ct)
    {
        var registration = ct.UnsafeRegister(static (s, token) =>
        {
            var (call, t) = ((DirectCall, TaskCompletionSource<bool>))s!;
            lock (call._messages)
            {
                if (call._pendingRead == t)
                {
                    call._pendingRead = null;
                    call._pendingParse = null;
                }
            }
            t.TrySetCanceled(token);
        }, (this, tcs));
        _ = tcs.Task.ContinueWith(static (_, r) => ((CancellationTokenRegistration)r!).Dispose(), registration,
            CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>Trailers the handler added (and those of the RpcException it threw), or null.</summary>
    public Metadata? ResponseTrailersIfAny => _responseTrailers;

    /// <inheritdoc/>
    protected override string MethodCore => Path;
    /// <inheritdoc/>
    protected override string HostCore => _connection.Host;
    /// <inheritdoc/>
    protected override string PeerCore => _connection.Peer;
    /// <inheritdoc/>
    protected override DateTime DeadlineCore => DeadlineValue;
    /// <inheritdoc/>
    protected override Metadata RequestHeadersCore => RequestHeadersValue;
    /// <inheritdoc/>
    protected override CancellationToken CancellationTokenCore => _cts.Token;
    /// <inheritdoc/>
    protected override Metadata ResponseTrailersCore => _responseTrailers ??= [];
    /// <inheritdoc/>
    protected override Status StatusCore { get; set; }
    /// <inheritdoc/>
    protected override WriteOptions? WriteOptionsCore { get; set; }
    /// <inheritdoc/>
    protected override AuthContext AuthContextCore => new(null, new Dictionary<string, List<AuthProperty>>());
    /// <inheritdoc/>
    protected override ContextPropagationToken CreatePropagationTokenCore(ContextPropagationOptions? options) =>
        throw new NotSupportedException("context propagation is not supported by the direct server");
    /// <inheritdoc/>
    protected override Task WriteResponseHeadersAsyncCore(Metadata responseHeaders) => _connection.SendHeadersAsync(this, responseHeaders);

    /// <summary>Parses grpc-timeout (section "Requests" of gRPC's PROTOCOL-HTTP2): 1-8 digits and a unit H M S m u n.</summary>
    public static TimeSpan? ParseTimeout(string? value)
    {
        if (value is null || value.Length < 2 || value.Length > 9) return null;
        if (!long.TryParse(value.AsSpan(0, value.Length - 1), NumberStyles.None, CultureInfo.InvariantCulture, out long n)) return null;
        double ticks = value[^1] switch
        {
            'H' => n * (double)TimeSpan.TicksPerHour,
            'M' => n * (double)TimeSpan.TicksPerMinute,
            'S' => n * (double)TimeSpan.TicksPerSecond,
            'm' => n * (double)TimeSpan.TicksPerMillisecond,
            'u' => n * 10.0,
            'n' => n / 100.0,
            _ => -1,
        };
        if (ticks < 0) return null;
        // Timers take at most ~49 days; a longer deadline is as good as none.
        return ticks > TimeSpan.FromDays(49).Ticks ? null : TimeSpan.FromTicks(Math.Max(1, (long)ticks));
    }

    /// <summary>Percent-encodes grpc-message: bytes outside 0x20..0x7E and '%' as %XX of the UTF-8 encoding.</summary>
    public static string PercentEncode(string message)
    {
        var sb = new StringBuilder(message.Length);
        foreach (byte b in System.Text.Encoding.UTF8.GetBytes(message))
        {
            if (b is >= 0x20 and <= 0x7E and not (byte)'%') sb.Append((char)b);
            else sb.Append('%').Append(b.ToString("X2", CultureInfo.InvariantCulture));
        }
        return sb.ToString();
    }
}

/// <summary>A request body handed to a generated marshaller.</summary>
internal sealed class DirectDeserializationContext(byte[] payload) : DeserializationContext
{
    /// <inheritdoc/>
    public override int PayloadLength => payload.Length;
    /// <inheritdoc/>
    public override byte[] PayloadAsNewBuffer() => (byte[])payload.Clone();
    /// <inheritdoc/>
    public override ReadOnlySequence<byte> PayloadAsReadOnlySequence() => new(payload);
}

/// <summary>Serializes a reply straight into the call's scratch buffer.</summary>
internal sealed class DirectSerializationContext(ArrayBufferWriter<byte> buffer) : SerializationContext
{
    /// <inheritdoc/>
    public override void Complete(byte[] payload) => buffer.Write(payload);
    /// <inheritdoc/>
    public override IBufferWriter<byte> GetBufferWriter() => buffer;
    /// <inheritdoc/>
    public override void SetPayloadLength(int payloadLength) { }
    /// <inheritdoc/>
    public override void Complete() { }
}
