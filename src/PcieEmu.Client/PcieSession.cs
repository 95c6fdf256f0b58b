using System.Collections.Concurrent;
using System.Threading.Channels;
using Google.Protobuf;
using Grpc.Core;
using PcieEmu.Protocol.V1;

namespace PcieEmu.Client;

/// <summary>One completion from a session: its tag, status, value (reads) or data (memory reads).</summary>
/// <param name="Tag">The transaction's tag.</param>
/// <param name="Status">Completion status.</param>
/// <param name="Value">Value read (config/MMIO reads).</param>
/// <param name="Data">Bytes read (memory reads).</param>
/// <param name="Kind">Operation it completes.</param>
public readonly record struct SessionCompletion(ulong Tag, CompletionStatus Status, ulong Value, ByteString Data, TransactionKind Kind);

/// <summary>
/// An ordered transaction stream (SessionService.Transact). Operations are queued and sent in
/// batches (one TransactRequest carries up to <see cref="BatchSize"/> of them) when the batch is
/// full or on <see cref="FlushAsync"/>; <c>Read*Async</c> methods flush. Writes are posted; a write
/// that fails (non-SUCCESSFUL) is reported on <see cref="UnsolicitedCompletions"/>. Tags are
/// assigned by the session. Not meant for concurrent use from several threads without awaiting.
/// </summary>
public sealed class PcieSession : IAsyncDisposable
{
    private readonly AsyncDuplexStreamingCall<TransactRequest, TransactResponse> _call;
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly ConcurrentDictionary<ulong, TaskCompletionSource<SessionCompletion>> _waiters = new();
    private readonly Channel<SessionCompletion> _unsolicited = Channel.CreateBounded<SessionCompletion>(
        new BoundedChannelOptions(4096) { FullMode = BoundedChannelFullMode.DropOldest });
    private readonly Task _reader;
    private TransactRequest _pending = new();
    private ulong _nextTag;
    private long _failedWrites;
    private volatile Exception? _fault;

    internal PcieSession(AsyncDuplexStreamingCall<TransactRequest, TransactResponse> call)
    {
        _call = call;
        _reader = Task.Run(ReadLoop);
    }

    /// <summary>The default <see cref="BatchSize"/> (the same in every PcieEmu client).</summary>
    public const int DefaultBatchSize = 256;

    /// <summary>Transactions per TransactRequest before an automatic flush (1-1024; default 256).</summary>
    public int BatchSize
    {
        get => _batchSize;
        set => _batchSize = value is >= 1 and <= 1024 ? value : throw new ArgumentOutOfRangeException(nameof(BatchSize), "BatchSize must be 1-1024");
    }

    private int _batchSize = DefaultBatchSize;

    /// <summary>Completions nobody waits for: failed posted writes (and acks of writes queued without a waiter).</summary>
    public ChannelReader<SessionCompletion> UnsolicitedCompletions => _unsolicited.Reader;

    /// <summary>Posted writes that completed with a status other than SUCCESSFUL.</summary>
    public long FailedWrites => Interlocked.Read(ref _failedWrites);

    /// <summary>Queues a posted config write.</summary>
    public ValueTask PostConfigWriteAsync(uint rid, int offset, int width, uint value, CancellationToken cancellationToken = default) =>
        EnqueueAsync(new Transaction { ConfigWrite = new ConfigWriteOp { Rid = rid, Offset = (uint)offset, Width = (uint)width, Value = value } }, null, cancellationToken);

    /// <summary>Queues a posted memory-space write.</summary>
    public ValueTask PostMmioWriteAsync(ulong address, int width, ulong value, CancellationToken cancellationToken = default) =>
        EnqueueAsync(new Transaction { MmioWrite = new MmioWriteOp { Address = address, Width = (uint)width, Value = value } }, null, cancellationToken);

    /// <summary>Queues a posted RAM block write.</summary>
    public ValueTask PostMemoryWriteAsync(ulong address, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default) =>
        EnqueueAsync(new Transaction { MemoryWrite = new MemoryWriteOp { Address = address, Data = ByteString.CopyFrom(data.Span) } }, null, cancellationToken);

    /// <summary>A config write that asks for a completion (acts as a fence); flushes.</summary>
    public async Task<SessionCompletion> WriteConfigAckedAsync(uint rid, int offset, int width, uint value, CancellationToken cancellationToken = default)
    {
        var t = Queue(new Transaction { ConfigWrite = new ConfigWriteOp { Rid = rid, Offset = (uint)offset, Width = (uint)width, Value = value, Ack = true } });
        await FlushAsync(cancellationToken).ConfigureAwait(false);
        return await t.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Queues a config read without flushing; the task completes when its completion arrives.</summary>
    public Task<SessionCompletion> QueueConfigRead(uint rid, int offset, int width) =>
        Queue(new Transaction { ConfigRead = new ConfigReadOp { Rid = rid, Offset = (uint)offset, Width = (uint)width } });

    /// <summary>Queues a memory-space read without flushing.</summary>
    public Task<SessionCompletion> QueueMmioRead(ulong address, int width) =>
        Queue(new Transaction { MmioRead = new MmioReadOp { Address = address, Width = (uint)width } });

    /// <summary>Queues a RAM block read without flushing.</summary>
    public Task<SessionCompletion> QueueMemoryRead(ulong address, int length) =>
        Queue(new Transaction { MemoryRead = new MemoryReadOp { Address = address, Length = (uint)length } });

    /// <summary>A config read: queued after everything queued before it, then flushed.</summary>
    public async Task<SessionCompletion> ReadConfigAsync(uint rid, int offset, int width, CancellationToken cancellationToken = default)
    {
        var t = QueueConfigRead(rid, offset, width);
        await FlushAsync(cancellationToken).ConfigureAwait(false);
        return await t.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>A memory-space read: queued after everything before it, then flushed.</summary>
    public async Task<SessionCompletion> ReadMmioAsync(ulong address, int width, CancellationToken cancellationToken = default)
    {
        var t = QueueMmioRead(address, width);
        await FlushAsync(cancellationToken).ConfigureAwait(false);
        return await t.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>A RAM block read: queued after everything before it, then flushed.</summary>
    public async Task<SessionCompletion> ReadMemoryAsync(ulong address, int length, CancellationToken cancellationToken = default)
    {
        var t = QueueMemoryRead(address, length);
        await FlushAsync(cancellationToken).ConfigureAwait(false);
        return await t.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    private Task<SessionCompletion> Queue(Transaction t)
    {
        if (_fault is { } f) return Task.FromException<SessionCompletion>(f);
        var tcs = new TaskCompletionSource<SessionCompletion>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_waiters)
        {
            t.Tag = ++_nextTag;
            _waiters[t.Tag] = tcs;
            _pending.Batch.Add(t);
        }
        return tcs.Task;
    }

    private ValueTask EnqueueAsync(Transaction t, TaskCompletionSource<SessionCompletion>? waiter, CancellationToken cancellationToken)
    {
        if (_fault is { } f) return ValueTask.FromException(f);
        int count;
        lock (_waiters)
        {
            t.Tag = ++_nextTag;
            if (waiter != null) _waiters[t.Tag] = waiter;
            _pending.Batch.Add(t);
            count = _pending.Batch.Count;
        }
        return count >= BatchSize ? new ValueTask(FlushAsync(cancellationToken)) : ValueTask.CompletedTask;
    }

    /// <summary>Sends everything queued.</summary>
    public async Task FlushAsync(CancellationToken cancellationToken = default)
    {
        await _sendLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            while (true)
            {
                TransactRequest request;
                lock (_waiters)
                {
                    if (_pending.Batch.Count == 0) return;
                    request = _pending;
                    _pending = new TransactRequest();
                }
                // Stay under the server's per-message limit.
                const int Max = 1024;
                if (request.Batch.Count <= Max)
                {
                    await _call.RequestStream.WriteAsync(request, cancellationToken).ConfigureAwait(false);
                    continue;
                }
                for (int i = 0; i < request.Batch.Count; i += Max)
                {
                    var part = new TransactRequest();
                    part.Batch.AddRange(request.Batch.Skip(i).Take(Max));
                    await _call.RequestStream.WriteAsync(part, cancellationToken).ConfigureAwait(false);
                }
            }
        }
        finally
        {
            _sendLock.Release();
        }
    }

    private async Task ReadLoop()
    {
        try
        {
            while (await _call.ResponseStream.MoveNext(CancellationToken.None).ConfigureAwait(false))
            {
                var r = _call.ResponseStream.Current;
                Dispatch(new SessionCompletion(r.Tag, r.Status, r.Value, r.Data, r.Kind));
                foreach (var c in r.More) Dispatch(new SessionCompletion(c.Tag, c.Status, c.Value, c.Data, c.Kind));
            }
            Fail(new RpcException(new Status(StatusCode.Unavailable, "session stream ended")));
        }
        catch (Exception ex)
        {
            Fail(ex);
        }
    }

    private void Dispatch(SessionCompletion c)
    {
        if (_waiters.TryRemove(c.Tag, out var tcs)) { tcs.TrySetResult(c); return; }
        if (c.Status != CompletionStatus.Successful) Interlocked.Increment(ref _failedWrites);
        _unsolicited.Writer.TryWrite(c);
    }

    private void Fail(Exception ex)
    {
        _fault ??= ex;
        foreach (var key in _waiters.Keys)
            if (_waiters.TryRemove(key, out var tcs)) tcs.TrySetException(ex);
        _unsolicited.Writer.TryComplete(ex is RpcException { StatusCode: StatusCode.Unavailable } ? null : ex);
    }

    /// <summary>Flushes, half-closes the stream and waits for the server to finish it.</summary>
    public async Task CompleteAsync(CancellationToken cancellationToken = default)
    {
        await FlushAsync(cancellationToken).ConfigureAwait(false);
        await _call.RequestStream.CompleteAsync().ConfigureAwait(false);
        await _reader.WaitAsync(cancellationToken).ConfigureAwait(false);
        if (_fault is RpcException { StatusCode: not StatusCode.Unavailable } e) throw e;
    }

    /// <summary>Ends the stream (cancelling it if still open).</summary>
    public async ValueTask DisposeAsync()
    {
        try
        {
            if (_fault == null)
            {
                await _call.RequestStream.CompleteAsync().ConfigureAwait(false);
                await _reader.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is RpcException or InvalidOperationException or TimeoutException or ObjectDisposedException)
        {
        }
        finally
        {
            _call.Dispose();
            _sendLock.Dispose();
        }
    }
}
