using System.Buffers;
using System.Buffers.Binary;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace PcieEmu.Server.Direct;

/// <summary>
/// One HTTP/2 connection of the direct loop (RFC 9113, gRPC's PROTOCOL-HTTP2). Its thread reads frames
/// with blocking reads and runs each call's handler inline: a unary call whose handler completes
/// synchronously has its reply (HEADERS, DATA, trailers) leave in one send, from this thread. Writes
/// from other threads (server streams) take <see cref="_writeLock"/>; a write short of flow-control
/// window awaits the peer's WINDOW_UPDATE asynchronously, never blocking this thread.
/// </summary>
internal sealed class DirectConnection
{
    /// <summary>Stream receive window this side grants (SETTINGS_INITIAL_WINDOW_SIZE), as Kestrel is configured.</summary>
    public const int StreamWindow = 2 << 20;
    /// <summary>Connection receive window this side grants (a WINDOW_UPDATE after the preface).</summary>
    public const int ConnectionWindow = 4 << 20;
    /// <summary>Most concurrent streams (SETTINGS_MAX_CONCURRENT_STREAMS).</summary>
    public const int MaxStreams = 1024;
    /// <summary>Largest header block (HEADERS + CONTINUATION payloads) accepted before decoding.</summary>
    public const int MaxHeaderBlock = 64 * 1024;

    private static DatedBlock? s_responseHeaders;
    private static readonly byte[] OkTrailers = BuildOkTrailers();

    private readonly Socket _socket;
    private readonly DirectServer _server;
    private readonly object _writeLock = new();
    private readonly Dictionary<int, DirectCall> _streams = [];
    private readonly HpackDecoder _decoder = new();
    private readonly List<HeaderField> _fields = [];
    private readonly byte[] _in = new byte[64 * 1024];
    private readonly byte[] _frame = new byte[Http2.DefaultMaxFrameSize];
    private readonly byte[] _frameHeader = new byte[Http2.FrameHeaderSize];
    private byte[] _block = new byte[4096];
    private int _blockLength;
    private int _headersStream;
    private byte _headersFlags;
    private int _inStart, _inEnd;
    private ArrayBufferWriter<byte> _out = new(4096);
    private long _sendWindow = Http2.DefaultWindow;
    private int _peerInitialWindow = Http2.DefaultWindow;
    private int _peerMaxFrame = Http2.DefaultMaxFrameSize;
    private long _receiveWindow = ConnectionWindow;
    private int _connectionCredit;
    private int _lastStreamId;
    private bool _goAwaySent;
    private bool _closed;
    private TaskCompletionSource? _windowWaiter;

    public DirectConnection(Socket socket, DirectServer server, string peer)
    {
        _socket = socket;
        _server = server;
        Peer = peer;
    }

    /// <summary>The peer as ServerCallContext.Peer shows it (<c>unix:PATH</c>).</summary>
    public string Peer { get; }
    /// <summary>ServerCallContext.Host.</summary>
    public string Host => "localhost";
    /// <summary>Streams open now.</summary>
    public int OpenStreams
    {
        get { lock (_streams) return _streams.Count; }
    }

    /// <summary>Runs the connection on a thread of its own.</summary>
    public void Start() => new Thread(Run) { IsBackground = true, Name = "pcie-emu direct " + Peer }.Start();

    private void Run()
    {
        try
        {
            Span<byte> preface = stackalloc byte[Http2.Preface.Length];
            ReadExactly(preface);
            if (!preface.SequenceEqual(Http2.Preface)) throw new Http2ConnectionException(Http2Error.ProtocolError, "not an HTTP/2 connection preface (this endpoint speaks gRPC over HTTP/2 only)");
            SendInitialSettings();
            bool first = true;
            while (true)
            {
                ReadExactly(_frameHeader);
                var (length, type, flags, streamId) = Http2.ReadFrameHeader(_frameHeader);
                if (length > Http2.DefaultMaxFrameSize)
                    throw new Http2ConnectionException(Http2Error.FrameSizeError, $"{type} frame of {length} bytes exceeds SETTINGS_MAX_FRAME_SIZE {Http2.DefaultMaxFrameSize}");
                var payload = _frame.AsSpan(0, length);
                ReadExactly(payload);
                if (first && (type != FrameType.Settings || (flags & Http2.FlagAck) != 0))
                    throw new Http2ConnectionException(Http2Error.ProtocolError, "the first frame after the preface must be SETTINGS");
                first = false;
                if (_headersStream != 0 && (type != FrameType.Continuation || streamId != _headersStream))
                    throw new Http2ConnectionException(Http2Error.ProtocolError, $"expected CONTINUATION of stream {_headersStream}, got {type} on stream {streamId}");
                Dispatch(type, flags, streamId, payload);
            }
        }
        catch (Http2ConnectionException ex)
        {
            DirectLog.ProtocolError(_server.Logger, Peer, ex.Code, ex.Message);
            GoAway(ex.Code, ex.Message);
        }
        catch (Exception ex) when (ex is EndOfStreamException or SocketException or ObjectDisposedException or IOException)
        {
            // The peer closed the connection (or the server did, stopping).
        }
        catch (Exception ex)
        {
            DirectLog.ConnectionFailed(_server.Logger, Peer, ex);
            GoAway(Http2Error.InternalError, "internal error");
        }
        finally
        {
            Close();
        }
    }

    private void Dispatch(FrameType type, byte flags, int streamId, ReadOnlySpan<byte> payload)
    {
        switch (type)
        {
            case FrameType.Data: OnData(flags, streamId, payload); break;
            case FrameType.Headers: OnHeaders(flags, streamId, payload); break;
            case FrameType.Continuation:
                if (_headersStream == 0) throw new Http2ConnectionException(Http2Error.ProtocolError, "CONTINUATION without HEADERS");
                AppendBlock(payload);
                if ((flags & Http2.FlagEndHeaders) != 0) OnHeaderBlock();
                break;
            case FrameType.Priority:
                if (streamId == 0) throw new Http2ConnectionException(Http2Error.ProtocolError, "PRIORITY on stream 0");
                if (payload.Length != 5) throw new Http2ConnectionException(Http2Error.FrameSizeError, $"PRIORITY frame of {payload.Length} bytes (must be 5)");
                break;
            case FrameType.RstStream: OnRstStream(streamId, payload); break;
            case FrameType.Settings: OnSettings(flags, streamId, payload); break;
            case FrameType.PushPromise: throw new Http2ConnectionException(Http2Error.ProtocolError, "PUSH_PROMISE from a client");
            case FrameType.Ping:
                if (streamId != 0) throw new Http2ConnectionException(Http2Error.ProtocolError, "PING on a stream");
                if (payload.Length != 8) throw new Http2ConnectionException(Http2Error.FrameSizeError, $"PING frame of {payload.Length} bytes (must be 8)");
                if ((flags & Http2.FlagAck) == 0)
                    lock (_writeLock)
                    {
                        AppendFrame(FrameType.Ping, Http2.FlagAck, 0, payload);
                        Flush();
                    }
                break;
            case FrameType.GoAway:
                if (streamId != 0) throw new Http2ConnectionException(Http2Error.ProtocolError, "GOAWAY on a stream");
                if (payload.Length < 8) throw new Http2ConnectionException(Http2Error.FrameSizeError, "GOAWAY frame shorter than 8 bytes");
                break;
            case FrameType.WindowUpdate: OnWindowUpdate(streamId, payload); break;
            default: break;   // unknown frame types are ignored (section 4.1)
        }
    }

    private void OnSettings(byte flags, int streamId, ReadOnlySpan<byte> payload)
    {
        if (streamId != 0) throw new Http2ConnectionException(Http2Error.ProtocolError, "SETTINGS on a stream");
        if ((flags & Http2.FlagAck) != 0)
        {
            if (payload.Length != 0) throw new Http2ConnectionException(Http2Error.FrameSizeError, "SETTINGS ACK with a payload");
            return;
        }
        if (payload.Length % 6 != 0) throw new Http2ConnectionException(Http2Error.FrameSizeError, $"SETTINGS frame of {payload.Length} bytes (a multiple of 6)");
        for (int i = 0; i < payload.Length; i += 6)
        {
            ushort id = BinaryPrimitives.ReadUInt16BigEndian(payload[i..]);
            uint value = BinaryPrimitives.ReadUInt32BigEndian(payload[(i + 2)..]);
            switch (id)
            {
                case Http2.SettingsEnablePush when value > 1:
                    throw new Http2ConnectionException(Http2Error.ProtocolError, $"SETTINGS_ENABLE_PUSH {value} (must be 0 or 1)");
                case Http2.SettingsInitialWindowSize:
                    if (value > Http2.MaxWindow) throw new Http2ConnectionException(Http2Error.FlowControlError, $"SETTINGS_INITIAL_WINDOW_SIZE {value} exceeds 2^31-1");
                    lock (_writeLock)
                    {
                        long delta = (long)value - _peerInitialWindow;
                        _peerInitialWindow = (int)value;
                        lock (_streams)
                            foreach (var call in _streams.Values)
                            {
                                call.SendWindow += delta;
                                if (call.SendWindow > Http2.MaxWindow) throw new Http2ConnectionException(Http2Error.FlowControlError, "SETTINGS_INITIAL_WINDOW_SIZE overflows a stream window");
                            }
                        WakeWriters();
                    }
                    break;
                case Http2.SettingsMaxFrameSize:
                    if (value < Http2.DefaultMaxFrameSize || value > Http2.MaxAllowedFrameSize)
                        throw new Http2ConnectionException(Http2Error.ProtocolError, $"SETTINGS_MAX_FRAME_SIZE {value} outside 16384..16777215");
                    lock (_writeLock) _peerMaxFrame = (int)value;
                    break;
                default: break;   // header table size (this side's encoder never indexes), concurrency, list size, unknown: nothing to do
            }
        }
        lock (_writeLock)
        {
            AppendFrame(FrameType.Settings, Http2.FlagAck, 0, []);
            Flush();
        }
    }

    private void OnWindowUpdate(int streamId, ReadOnlySpan<byte> payload)
    {
        if (payload.Length != 4) throw new Http2ConnectionException(Http2Error.FrameSizeError, $"WINDOW_UPDATE frame of {payload.Length} bytes (must be 4)");
        int increment = BinaryPrimitives.ReadInt32BigEndian(payload) & int.MaxValue;
        if (streamId == 0)
        {
            if (increment == 0) throw new Http2ConnectionException(Http2Error.ProtocolError, "WINDOW_UPDATE with increment 0");
            lock (_writeLock)
            {
                _sendWindow += increment;
                if (_sendWindow > Http2.MaxWindow) throw new Http2ConnectionException(Http2Error.FlowControlError, "WINDOW_UPDATE overflows the connection window");
                WakeWriters();
            }
            return;
        }
        var call = Find(streamId);
        if (call == null)
        {
            if (streamId > _lastStreamId) throw new Http2ConnectionException(Http2Error.ProtocolError, $"WINDOW_UPDATE on idle stream {streamId}");
            return;
        }
        if (increment == 0)
        {
            Reset(call, Http2Error.ProtocolError);
            return;
        }
        bool overflow;
        lock (_writeLock)
        {
            call.SendWindow += increment;
            overflow = call.SendWindow > Http2.MaxWindow;
            WakeWriters();
        }
        if (overflow) Reset(call, Http2Error.FlowControlError);
    }

    private void OnRstStream(int streamId, ReadOnlySpan<byte> payload)
    {
        if (streamId == 0) throw new Http2ConnectionException(Http2Error.ProtocolError, "RST_STREAM on stream 0");
        if (payload.Length != 4) throw new Http2ConnectionException(Http2Error.FrameSizeError, $"RST_STREAM frame of {payload.Length} bytes (must be 4)");
        if (streamId > _lastStreamId) throw new Http2ConnectionException(Http2Error.ProtocolError, $"RST_STREAM on idle stream {streamId}");
        if (Find(streamId) is { } call) Abort(call);
    }

    private void OnHeaders(byte flags, int streamId, ReadOnlySpan<byte> payload)
    {
        if (streamId == 0 || (streamId & 1) == 0) throw new Http2ConnectionException(Http2Error.ProtocolError, $"HEADERS on stream {streamId} (client streams are odd)");
        var p = Http2.Unpad(payload, flags, FrameType.Headers);
        if ((flags & Http2.FlagPriority) != 0)
        {
            if (p.Length < 5) throw new Http2ConnectionException(Http2Error.FrameSizeError, "HEADERS with PRIORITY shorter than 5 bytes");
            if ((BinaryPrimitives.ReadInt32BigEndian(p) & int.MaxValue) == streamId) throw new Http2ConnectionException(Http2Error.ProtocolError, $"stream {streamId} depends on itself");
            p = p[5..];
        }
        _headersStream = streamId;
        _headersFlags = flags;
        _blockLength = 0;
        AppendBlock(p);
        if ((flags & Http2.FlagEndHeaders) != 0) OnHeaderBlock();
    }

    private void AppendBlock(ReadOnlySpan<byte> fragment)
    {
        if (_blockLength + fragment.Length > MaxHeaderBlock)
            throw new Http2ConnectionException(Http2Error.EnhanceYourCalm, $"header block larger than {MaxHeaderBlock} bytes");
        if (_block.Length < _blockLength + fragment.Length) Array.Resize(ref _block, Math.Max(_block.Length * 2, _blockLength + fragment.Length));
        fragment.CopyTo(_block.AsSpan(_blockLength));
        _blockLength += fragment.Length;
    }

    private void OnHeaderBlock()
    {
        int streamId = _headersStream;
        bool endStream = (_headersFlags & Http2.FlagEndStream) != 0;
        _headersStream = 0;
        try
        {
            _decoder.Decode(_block.AsSpan(0, _blockLength), _fields);
        }
        catch (HpackException ex)
        {
            throw new Http2ConnectionException(Http2Error.CompressionError, "HPACK: " + ex.Message);
        }
        if (_block.Length > 16384) _block = new byte[4096];
        if (Find(streamId) is { } existing)
        {
            // Trailers of the request: they must end the stream.
            if (!endStream) Reset(existing, Http2Error.ProtocolError);
            else OnEndStream(existing);
            return;
        }
        if (streamId <= _lastStreamId) return;   // a stream this side already closed: ignored
        _lastStreamId = streamId;
        if (_goAwaySent || _server.Stopping || OpenStreams >= MaxStreams)
        {
            SendReset(streamId, Http2Error.RefusedStream);
            return;
        }
        string? method = null, path = null, scheme = null, contentType = null, timeout = null, encoding = null;
        var headers = new Metadata();
        foreach (var f in _fields)
        {
            if (f.Name.Length > 0 && f.Name[0] == ':')
            {
                switch (f.Name)
                {
                    case ":method": method = f.Value; break;
                    case ":path": path = f.Value; break;
                    case ":scheme": scheme = f.Value; break;
                    case ":authority": break;
                    default: SendReset(streamId, Http2Error.ProtocolError); return;
                }
                continue;
            }
            switch (f.Name)
            {
                case "content-type": contentType = f.Value; break;
                case "grpc-timeout": timeout = f.Value; break;
                case "grpc-encoding": encoding = f.Value; break;
                default: break;
            }
            AddMetadata(headers, f);
        }
        if (method == null || path == null || scheme == null)
        {
            SendReset(streamId, Http2Error.ProtocolError);   // malformed request (RFC 9113 section 8.3.1)
            return;
        }
        var bound = _server.Methods.Find(path);
        var span = timeout != null ? DirectCall.ParseTimeout(timeout) : null;
        var call = new DirectCall(this, streamId, path, bound, headers, span is { } t ? DateTime.UtcNow + t : DateTime.MaxValue, encoding)
        {
            SendWindow = _peerInitialWindow,
            ReceiveWindow = StreamWindow,
            RequestComplete = endStream,
        };
        lock (_streams) _streams[streamId] = call;
        if (_decoder.ListTooLarge)
            Finish(call, new Status(StatusCode.ResourceExhausted, $"request: headers exceed {_decoder.MaxHeaderListSize} bytes"), null, cancel: false);
        else if (bound == null)
            Finish(call, new Status(StatusCode.Unimplemented, _server.Methods.HasService(ServiceOf(path)) ? $"Method is unimplemented: {path}" : $"Service is unimplemented: {path}"), null, cancel: false);
        else if (method != "POST")
            Finish(call, new Status(StatusCode.Internal, $"request: :method {method} (gRPC requests are POST)"), null, cancel: false);
        else if (contentType == null || !(contentType == "application/grpc" || contentType.StartsWith("application/grpc+proto", StringComparison.Ordinal) || contentType.StartsWith("application/grpc;", StringComparison.Ordinal)))
            Finish(call, new Status(StatusCode.Internal, $"request: content-type '{contentType}' is not supported (application/grpc or application/grpc+proto)"), null, cancel: false);
        else
        {
            if (span is { } s) call.StartDeadline(s);
            if (bound.StartsOnHeaders || endStream) _ = bound.RunAsync(call);
        }
    }

    private static string ServiceOf(string path)
    {
        int slash = path.IndexOf('/', 1);
        return slash > 1 ? path[1..slash] : "";
    }

    private static void AddMetadata(Metadata headers, HeaderField f)
    {
        try
        {
            if (f.Name.EndsWith(Metadata.BinaryHeaderSuffix, StringComparison.Ordinal))
            {
                string v = f.Value;
                int pad = (4 - v.Length % 4) % 4;
                headers.Add(f.Name, Convert.FromBase64String(pad == 0 ? v : v + new string('=', pad)));
            }
            else headers.Add(f.Name, f.Value);
        }
        catch (Exception ex) when (ex is ArgumentException or FormatException)
        {
            // A header name gRPC metadata cannot hold (or bad base64): not passed to the handler.
        }
    }

    private void OnData(byte flags, int streamId, ReadOnlySpan<byte> payload)
    {
        if (streamId == 0) throw new Http2ConnectionException(Http2Error.ProtocolError, "DATA on stream 0");
        int flowLength = payload.Length;
        _receiveWindow -= flowLength;
        if (_receiveWindow < 0) throw new Http2ConnectionException(Http2Error.FlowControlError, "DATA beyond the connection's flow-control window");
        var data = Http2.Unpad(payload, flags, FrameType.Data);
        var call = Find(streamId);
        if (call == null)
        {
            if (streamId > _lastStreamId) throw new Http2ConnectionException(Http2Error.ProtocolError, $"DATA on idle stream {streamId}");
            Credit(null, flowLength);   // a stream this side closed: dropped, but the connection window is given back
            return;
        }
        if (call.RequestComplete)
        {
            Credit(null, flowLength);
            Reset(call, Http2Error.StreamClosed);
            return;
        }
        call.ReceiveWindow -= flowLength;
        if (call.ReceiveWindow < 0)
        {
            Credit(null, flowLength);
            Reset(call, Http2Error.FlowControlError);
            return;
        }
        Credit(call, flowLength);
        if (call.Bound != null && call.Receive(data, _server.MaxReceiveMessageSize) is { } refused)
        {
            Finish(call, refused, null, cancel: true);
            return;
        }
        if ((flags & Http2.FlagEndStream) != 0) OnEndStream(call);
    }

    private void OnEndStream(DirectCall call)
    {
        bool finished;
        lock (_writeLock)
        {
            call.RequestComplete = true;
            finished = call.Finished;
        }
        if (finished)
        {
            Remove(call);
            return;
        }
        if (call.Bound is not { } method) return;
        if (method.StartsOnHeaders) call.EndRequest();
        else _ = method.RunAsync(call);
    }

    private DirectCall? Find(int streamId)
    {
        lock (_streams) return _streams.GetValueOrDefault(streamId);
    }

    private void Remove(DirectCall call)
    {
        lock (_streams)
            if (_streams.TryGetValue(call.StreamId, out var c) && c == call) _streams.Remove(call.StreamId);
    }

    // ---- flow control of what the peer sends ----

    private void Credit(DirectCall? call, int bytes)
    {
        lock (_writeLock)
        {
            _connectionCredit += bytes;
            if (call != null) call.PendingCredit += bytes;
            bool sent = false;
            if (_connectionCredit >= ConnectionWindow / 4)
            {
                AppendWindowUpdate(0, _connectionCredit);
                _receiveWindow += _connectionCredit;
                _connectionCredit = 0;
                sent = true;
            }
            if (call != null) sent |= CreditStream(call);
            if (sent) Flush();
        }
    }

    /// <summary>A request message was read by the handler: its stream's window may be given back.</summary>
    public void Consumed(DirectCall call, int bytes)
    {
        _ = bytes;
        lock (_writeLock)
            if (CreditStream(call)) Flush();
    }

    // Gives the stream's window back once half of it was received, unless the handler has that much unread.
    private bool CreditStream(DirectCall call)
    {
        if (call.Finished || call.RequestComplete || call.PendingCredit < StreamWindow / 4 || Volatile.Read(ref call.QueuedBytes) >= StreamWindow) return false;
        AppendWindowUpdate(call.StreamId, call.PendingCredit);
        call.ReceiveWindow += call.PendingCredit;
        call.PendingCredit = 0;
        return true;
    }

    // ---- replies ----

    /// <summary>Serializes <paramref name="message"/> and sends it (with the response headers first, and the trailers when <paramref name="finish"/>), in one send when the windows allow.</summary>
    public ValueTask SendMessageAsync<T>(DirectCall call, T message, Marshaller<T> marshaller, bool finish)
    {
        var scratch = call.Scratch;
        scratch.ResetWrittenCount();
        scratch.GetSpan(5)[..5].Clear();
        scratch.Advance(5);
        marshaller.ContextualSerializer(message, new DirectSerializationContext(scratch));
        int length = scratch.WrittenCount - 5;
        if (length > _server.MaxSendMessageSize)
            throw new RpcException(new Status(StatusCode.ResourceExhausted, $"reply: message of {length} bytes exceeds the maximum of {_server.MaxSendMessageSize}"));
        var framed = MemoryMarshal.AsMemory(scratch.WrittenMemory);
        BinaryPrimitives.WriteUInt32BigEndian(framed.Span[1..], (uint)length);
        return SendAsync(call, framed, finish);
    }

    private async ValueTask SendAsync(DirectCall call, ReadOnlyMemory<byte> data, bool finish)
    {
        int offset = 0;
        while (true)
        {
            Task wait;
            lock (_writeLock)
            {
                if (call.Finished || _closed)
                {
                    if (call.Aborted || _closed) throw new OperationCanceledException("the call was cancelled (reset, deadline or connection closed)");
                    throw new InvalidOperationException("the call is already complete");
                }
                if (!call.HeadersSent) AppendHeaders(call, ResponseHeaders, endStream: false);
                int n = (int)Math.Max(0, Math.Min(data.Length - offset, Math.Min(_sendWindow, call.SendWindow)));
                if (n > 0)
                {
                    AppendData(call.StreamId, data.Span.Slice(offset, n));
                    offset += n;
                    _sendWindow -= n;
                    call.SendWindow -= n;
                }
                bool done = offset == data.Length;
                call.MidMessage = !done;
                if (done && finish) AppendTrailers(call, call.Status, call.ResponseTrailersIfAny);
                Flush();
                if (_closed) throw new IOException("the connection closed");
                if (done)
                {
                    if (finish)
                    {
                        Remove(call);
                        call.Completed();
                    }
                    if (data.Length > 1 << 20) call.ShrinkScratch();
                    return;
                }
                wait = (_windowWaiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
            }
            await wait.WaitAsync(call.CancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>WriteResponseHeadersAsync: the response HEADERS now.</summary>
    public Task SendHeadersAsync(DirectCall call, Metadata headers)
    {
        lock (_writeLock)
        {
            if (call.HeadersSent) return Task.FromException(new InvalidOperationException("Response headers can only be sent once per call."));
            if (call.Finished || _closed) return Task.FromException(new OperationCanceledException("the call is complete"));
            var block = new List<byte>(ResponseHeaders);
            foreach (var entry in headers) AppendEntry(block, entry);
            AppendHeaders(call, [.. block], endStream: false);
            Flush();
        }
        return Task.CompletedTask;
    }

    /// <summary>Ends the call with <paramref name="status"/> (trailers, or trailers-only before any reply), unless it already ended; <paramref name="cancel"/> also cancels its token.</summary>
    public void Finish(DirectCall call, Status status, Metadata? trailers, bool cancel)
    {
        if (cancel) call.Cancel();   // first: a write racing with this sees the call aborted
        lock (_writeLock)
        {
            if (call.Finished) return;
            if (!_closed)
            {
                if (call.MidMessage)
                {
                    AppendRst(call.StreamId, Http2Error.Cancel);   // a message was half sent: trailers cannot follow it
                    call.Finished = true;
                }
                else AppendTrailers(call, status, trailers);
                Flush();
            }
            call.Finished = true;
        }
        Remove(call);
        call.Completed();
    }

    /// <summary>The handler failed (or its reply could not be sent): the call ends with the matching status.</summary>
    public void Fail(DirectCall call, Exception ex)
    {
        if (call.Aborted || Volatile.Read(ref call.Finished)) return;   // reset, deadline or already answered: nobody to tell
        Status status;
        var trailers = call.ResponseTrailersIfAny;
        if (ex is RpcException rpc)
        {
            status = rpc.Status;
            if (rpc.Trailers.Count > 0)
            {
                trailers ??= [];
                foreach (var e in rpc.Trailers) trailers.Add(e);
            }
        }
        else if (ex is OperationCanceledException && (call.CancellationToken.IsCancellationRequested || _closed))
            status = new Status(StatusCode.Cancelled, "call cancelled");
        else
        {
            DirectLog.HandlerFailed(_server.Logger, call.Path, ex);
            status = new Status(StatusCode.Unknown, "Exception was thrown by handler.");
        }
        Finish(call, status, trailers, cancel: false);
    }

    private void Abort(DirectCall call)
    {
        call.Cancel();   // first: a write racing with this sees the call aborted, not complete
        lock (_writeLock) call.Finished = true;
        Remove(call);
    }

    private void Reset(DirectCall call, Http2Error code)
    {
        call.Cancel();
        lock (_writeLock)
        {
            if (!call.Finished)
            {
                AppendRst(call.StreamId, code);
                Flush();
            }
            call.Finished = true;
        }
        Remove(call);
    }

    private void SendReset(int streamId, Http2Error code)
    {
        lock (_writeLock)
        {
            AppendRst(streamId, code);
            Flush();
        }
    }

    /// <summary>Sends GOAWAY (no new streams; the open ones finish).</summary>
    public void GoAway(Http2Error code, string debug)
    {
        lock (_writeLock)
        {
            if (_closed) return;
            AppendFrame(FrameType.GoAway, 0, 0, Http2.GoAwayPayload(_lastStreamId, code, debug));
            Flush();
            _goAwaySent = true;
        }
    }

    /// <summary>Closes the socket: the connection's thread ends, every open call is cancelled.</summary>
    public void Shutdown()
    {
        try { _socket.Shutdown(SocketShutdown.Both); }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException) { }
    }

    private void Close()
    {
        List<DirectCall> open;
        lock (_writeLock)
        {
            _closed = true;
            WakeWriters();
        }
        lock (_streams)
        {
            open = [.. _streams.Values];
            _streams.Clear();
        }
        foreach (var call in open)
        {
            call.Cancel();
            lock (_writeLock) call.Finished = true;
        }
        _socket.Dispose();
        _server.Closed(this);
    }

    private void WakeWriters()
    {
        var w = _windowWaiter;
        _windowWaiter = null;
        w?.TrySetResult();
    }

    // ---- framing (under _writeLock) ----

    private void SendInitialSettings()
    {
        lock (_writeLock)
        {
            Span<byte> settings = stackalloc byte[18];
            WriteSetting(settings, Http2.SettingsMaxConcurrentStreams, MaxStreams);
            WriteSetting(settings[6..], Http2.SettingsInitialWindowSize, StreamWindow);
            WriteSetting(settings[12..], Http2.SettingsMaxHeaderListSize, HpackDecoder.DefaultMaxHeaderListSize);
            AppendFrame(FrameType.Settings, 0, 0, settings);
            AppendWindowUpdate(0, ConnectionWindow - Http2.DefaultWindow);
            Flush();
        }

        static void WriteSetting(Span<byte> s, ushort id, int value)
        {
            BinaryPrimitives.WriteUInt16BigEndian(s, id);
            BinaryPrimitives.WriteInt32BigEndian(s[2..], value);
        }
    }

    private void AppendFrame(FrameType type, byte flags, int streamId, ReadOnlySpan<byte> payload)
    {
        var span = _out.GetSpan(Http2.FrameHeaderSize + payload.Length);
        Http2.WriteFrameHeader(span, payload.Length, type, flags, streamId);
        payload.CopyTo(span[Http2.FrameHeaderSize..]);
        _out.Advance(Http2.FrameHeaderSize + payload.Length);
    }

    private void AppendWindowUpdate(int streamId, int increment)
    {
        Span<byte> p = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(p, increment);
        AppendFrame(FrameType.WindowUpdate, 0, streamId, p);
    }

    private void AppendRst(int streamId, Http2Error code)
    {
        Span<byte> p = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(p, (uint)code);
        AppendFrame(FrameType.RstStream, 0, streamId, p);
    }

    private void AppendData(int streamId, ReadOnlySpan<byte> data)
    {
        while (data.Length > 0)
        {
            int n = Math.Min(data.Length, _peerMaxFrame);
            AppendFrame(FrameType.Data, 0, streamId, data[..n]);
            data = data[n..];
        }
    }

    private void AppendHeaders(DirectCall call, ReadOnlySpan<byte> block, bool endStream)
    {
        int n = Math.Min(block.Length, _peerMaxFrame);
        byte flags = (byte)((endStream ? Http2.FlagEndStream : 0) | (n == block.Length ? Http2.FlagEndHeaders : 0));
        AppendFrame(FrameType.Headers, flags, call.StreamId, block[..n]);
        block = block[n..];
        while (block.Length > 0)
        {
            n = Math.Min(block.Length, _peerMaxFrame);
            AppendFrame(FrameType.Continuation, n == block.Length ? Http2.FlagEndHeaders : (byte)0, call.StreamId, block[..n]);
            block = block[n..];
        }
        call.HeadersSent = true;
    }

    private void AppendTrailers(DirectCall call, Status status, Metadata? trailers)
    {
        if (call.HeadersSent && status.StatusCode == StatusCode.OK && string.IsNullOrEmpty(status.Detail) && (trailers == null || trailers.Count == 0))
            AppendHeaders(call, OkTrailers, endStream: true);
        else
        {
            var block = new List<byte>(64);
            if (!call.HeadersSent) block.AddRange(ResponseHeaders);   // trailers-only
            HpackEncoder.WriteLiteral(block, "grpc-status", ((int)status.StatusCode).ToString(System.Globalization.CultureInfo.InvariantCulture));
            if (!string.IsNullOrEmpty(status.Detail)) HpackEncoder.WriteLiteral(block, "grpc-message", DirectCall.PercentEncode(status.Detail));
            if (trailers != null)
                foreach (var entry in trailers)
                    if (!entry.Key.StartsWith("grpc-", StringComparison.Ordinal)) AppendEntry(block, entry);
            AppendHeaders(call, [.. block], endStream: true);
        }
        if (!call.RequestComplete) AppendRst(call.StreamId, Http2Error.NoError);   // the reply is complete: the peer may stop sending
        call.Finished = true;
    }

    private static void AppendEntry(List<byte> block, Metadata.Entry entry) =>
        HpackEncoder.WriteLiteral(block, entry.Key, entry.IsBinary ? Convert.ToBase64String(entry.ValueBytes) : entry.Value);

    private void Flush()
    {
        var span = _out.WrittenSpan;
        if (span.Length == 0) return;
        _server.CountSend();
        try
        {
            while (span.Length > 0 && !_closed)
            {
                int n = _socket.Send(span);
                span = span[n..];
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            _closed = true;
        }
        if (_out.Capacity > 1 << 20) _out = new ArrayBufferWriter<byte>(4096);
        else _out.ResetWrittenCount();
    }

    private void ReadExactly(Span<byte> destination)
    {
        while (destination.Length > 0)
        {
            if (_inStart == _inEnd)
            {
                int n = _socket.Receive(_in);
                if (n == 0) throw new EndOfStreamException();
                _inStart = 0;
                _inEnd = n;
            }
            int take = Math.Min(destination.Length, _inEnd - _inStart);
            _in.AsSpan(_inStart, take).CopyTo(destination);
            _inStart += take;
            destination = destination[take..];
        }
    }

    /// <summary>
    /// The response HEADERS block: <c>:status 200</c>, <c>content-type application/grpc</c> and <c>date</c>
    /// (RFC 9110 section 6.6.1: an origin server with a clock sends it; Kestrel does, and gRPC C++
    /// clients tell a stream's opening headers from a trailers-only refusal by it). Rebuilt once a second.
    /// </summary>
    private static byte[] ResponseHeaders
    {
        get
        {
            long second = DateTime.UtcNow.Ticks / TimeSpan.TicksPerSecond;
            var cached = Volatile.Read(ref s_responseHeaders);
            if (cached != null && cached.Second == second) return cached.Block;
            var block = new List<byte>();
            HpackEncoder.WriteIndexed(block, HpackEncoder.Status200);
            HpackEncoder.WriteLiteral(block, HpackEncoder.ContentType, "application/grpc");
            HpackEncoder.WriteLiteral(block, HpackEncoder.Date, new DateTime(second * TimeSpan.TicksPerSecond, DateTimeKind.Utc).ToString("R", System.Globalization.CultureInfo.InvariantCulture));
            var built = new DatedBlock(second, [.. block]);
            Volatile.Write(ref s_responseHeaders, built);
            return built.Block;
        }
    }

    private sealed record DatedBlock(long Second, byte[] Block);

    private static byte[] BuildOkTrailers()
    {
        var block = new List<byte>();
        HpackEncoder.WriteLiteral(block, "grpc-status", "0");
        return [.. block];
    }
}
