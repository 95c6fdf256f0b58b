using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using PcieEmu.Core.Platform;
using PcieEmu.Protocol.V1;
using PcieEmu.Server.Hosting;
using PcieEmu.Server.Ring;

namespace PcieEmu.Server.Services;

/// <summary>
/// SessionService.Transact: an ordered stream. One request message is executed at a time, its
/// transactions in order, each under the machine lock; its completions are coalesced into one
/// response that is written before the next request is read (so HTTP/2 flow control bounds what a
/// client can queue here). Writes are posted: only failures and acked writes produce completions.
/// </summary>
internal sealed class SessionGrpcService(Machine machine, LimitsOptions limits, ServerShutdown shutdown, SharedRings rings, ILogger<SessionGrpcService> logger)
    : SessionService.SessionServiceBase
{
    /// <inheritdoc/>
    public override async Task OpenRing(OpenRingRequest request, IServerStreamWriter<OpenRingResponse> responseStream, ServerCallContext context)
    {
        var geometry = RingGeometry.From(request);
        using var call = shutdown.Link(context);
        var ring = rings.Create(geometry);
        string? broken;
        try
        {
            var g = ring.Geometry;
            var running = ring.Run(call.Token);
            await responseStream.WriteAsync(new OpenRingResponse
            {
                Path = ring.Path,
                Size = (ulong)g.FileSize,
                SubmissionEntries = (uint)g.SubmissionEntries,
                SubmissionOffset = (uint)g.SubmissionOffset,
                SubmissionEntrySize = Client.Ring.RingLayout.SubmissionEntrySize,
                CompletionEntries = (uint)g.CompletionEntries,
                CompletionOffset = (uint)g.CompletionOffset,
                CompletionEntrySize = Client.Ring.RingLayout.CompletionEntrySize,
                DataOffset = (uint)g.DataOffset,
                DataSize = (uint)g.DataSize,
                Version = Client.Ring.RingLayout.Version,
            }, call.Token).ConfigureAwait(false);
            Log.RingOpened(logger, context.Peer, ring.Path);
            broken = await running.ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException)
        {
            broken = null;
        }
        finally
        {
            Log.RingClosed(logger, context.Peer, ring.Consumed);
            rings.Close(ring);
        }
        if (broken != null)
        {
            Log.Rejected(logger, "OpenRing", broken, "FailedPrecondition");
            throw new RpcException(new Status(StatusCode.FailedPrecondition, broken));
        }
        if (shutdown.IsStopping) throw ServerShutdown.Unavailable();
    }

    /// <inheritdoc/>
    public override async Task Transact(IAsyncStreamReader<TransactRequest> requestStream, IServerStreamWriter<TransactResponse> responseStream, ServerCallContext context)
    {
        using var call = shutdown.Link(context);
        try
        {
            await Run(requestStream, responseStream, context, call.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (shutdown.IsStopping && ex is OperationCanceledException or IOException)
        {
            throw ServerShutdown.Unavailable();
        }
    }

    private async Task Run(IAsyncStreamReader<TransactRequest> requestStream, IServerStreamWriter<TransactResponse> responseStream, ServerCallContext context, CancellationToken ct)
    {
        long executed = 0;
        while (true)
        {
            try
            {
                if (!await requestStream.MoveNext(ct).ConfigureAwait(false)) break;
            }
            catch (IOException) when (!shutdown.IsStopping)
            {
                // The client reset or abandoned the stream: nothing left to answer.
                Log.SessionAborted(logger, context.Peer, executed);
                return;
            }
            var request = requestStream.Current;
            TransactResponse? response = null;
            RpcException? error = null;
            try
            {
                int count = request.Batch.Count + (request.OpCase == TransactRequest.OpOneofCase.None ? 0 : 1);
                if (count > limits.MaxTransactionsPerMessage)
                    throw RpcErrors.Invalid("batch", $"at most {limits.MaxTransactionsPerMessage} transactions per message (was {count})");
                CheckReplySize(request);
                if (request.OpCase == TransactRequest.OpOneofCase.None)
                {
                    if (request.Batch.Count == 0) throw RpcErrors.Invalid("op", $"tag {request.Tag}: no operation set and batch is empty");
                }
                else
                {
                    Execute(request, ref response);
                    executed++;
                }
                for (int i = 0; i < request.Batch.Count; i++)
                {
                    Execute(request.Batch[i], i, ref response);
                    executed++;
                }
            }
            catch (RpcException ex)
            {
                error = ex;
            }
            if (response != null) await responseStream.WriteAsync(response, ct).ConfigureAwait(false);
            if (error != null)
            {
                string code = error.StatusCode.ToString();
                Log.Rejected(logger, "Transact", error.Status.Detail, code);
                throw error;
            }
        }
        Log.SessionEnded(logger, context.Peer, executed);
    }

    /// <summary>Upper bound of one completion's encoding without its data (tag, status, value, kind, length prefixes).</summary>
    internal const int CompletionOverhead = 48;

    /// <summary>
    /// Refuses, before anything executes, a message whose completions could exceed what one reply may
    /// carry: memory reads of more than MaxMemoryTransfer bytes in total, or a reply over the message limit.
    /// </summary>
    private void CheckReplySize(TransactRequest request)
    {
        long data = 0, reply = 0;
        if (request.OpCase == TransactRequest.OpOneofCase.MemoryRead) Account(request.Tag, request.MemoryRead.Length, "memory_read.length");
        else if (request.OpCase != TransactRequest.OpOneofCase.None) Account(request.Tag, 0, request.OpCase.ToSnakeCase());
        for (int i = 0; i < request.Batch.Count; i++)
        {
            var t = request.Batch[i];
            if (t.OpCase == Transaction.OpOneofCase.MemoryRead) Account(t.Tag, t.MemoryRead.Length, $"batch[{i}].memory_read.length");
            else Account(t.Tag, 0, $"batch[{i}]");
        }

        void Account(ulong tag, uint length, string field)
        {
            data += length;
            reply += CompletionOverhead + length;
            if (data > limits.MaxMemoryTransfer)
                throw RpcErrors.Invalid($"tag {tag}: {field}", $"the memory reads of one message may total at most {limits.MaxMemoryTransfer} bytes (this one reaches {data}); split them over several messages");
            if (reply > LimitsOptions.MessageLimit)
                throw RpcErrors.Invalid($"tag {tag}: {field}", $"the completions of one message could need {reply} bytes, over the {LimitsOptions.MessageLimit}-byte message limit; split it over several messages");
        }
    }

    private void Execute(TransactRequest r, ref TransactResponse? response)
    {
        try
        {
            switch (r.OpCase)
            {
                case TransactRequest.OpOneofCase.ConfigRead: ConfigRead(r.Tag, r.ConfigRead, ref response); break;
                case TransactRequest.OpOneofCase.ConfigWrite: ConfigWrite(r.Tag, r.ConfigWrite, ref response); break;
                case TransactRequest.OpOneofCase.MmioRead: MmioRead(r.Tag, r.MmioRead, ref response); break;
                case TransactRequest.OpOneofCase.MmioWrite: MmioWrite(r.Tag, r.MmioWrite, ref response); break;
                case TransactRequest.OpOneofCase.MemoryRead: MemoryRead(r.Tag, r.MemoryRead, ref response); break;
                case TransactRequest.OpOneofCase.MemoryWrite: MemoryWrite(r.Tag, r.MemoryWrite, ref response); break;
            }
        }
        catch (ArgumentException ex)
        {
            throw RpcErrors.Invalid(ex, $"tag {r.Tag}: {r.OpCase.ToSnakeCase()}.");
        }
        catch (RpcException ex)
        {
            throw Prefix(ex, $"tag {r.Tag}: {r.OpCase.ToSnakeCase()}.");
        }
    }

    private void Execute(Transaction t, int index, ref TransactResponse? response)
    {
        string where = $"tag {t.Tag}: batch[{index}].";
        try
        {
            switch (t.OpCase)
            {
                case Transaction.OpOneofCase.ConfigRead: ConfigRead(t.Tag, t.ConfigRead, ref response); break;
                case Transaction.OpOneofCase.ConfigWrite: ConfigWrite(t.Tag, t.ConfigWrite, ref response); break;
                case Transaction.OpOneofCase.MmioRead: MmioRead(t.Tag, t.MmioRead, ref response); break;
                case Transaction.OpOneofCase.MmioWrite: MmioWrite(t.Tag, t.MmioWrite, ref response); break;
                case Transaction.OpOneofCase.MemoryRead: MemoryRead(t.Tag, t.MemoryRead, ref response); break;
                case Transaction.OpOneofCase.MemoryWrite: MemoryWrite(t.Tag, t.MemoryWrite, ref response); break;
                default: throw RpcErrors.Invalid("op", "no operation set");
            }
        }
        catch (ArgumentException ex)
        {
            throw RpcErrors.Invalid(ex, where + t.OpCase.ToSnakeCase() + ".");
        }
        catch (RpcException ex)
        {
            throw Prefix(ex, where + (t.OpCase == Transaction.OpOneofCase.None ? "" : t.OpCase.ToSnakeCase() + "."));
        }
    }

    private static RpcException Prefix(RpcException ex, string prefix) =>
        new(new Status(ex.StatusCode, prefix + ex.Status.Detail));

    private void ConfigRead(ulong tag, ConfigReadOp op, ref TransactResponse? response)
    {
        var r = machine.ReadConfig(RpcErrors.Rid(op.Rid), RpcErrors.Offset(op.Offset), RpcErrors.Width(op.Width));
        Complete(ref response, tag, r.Status, r.Value, ByteString.Empty, TransactionKind.ConfigRead);
    }

    private void ConfigWrite(ulong tag, ConfigWriteOp op, ref TransactResponse? response)
    {
        var s = machine.WriteConfig(RpcErrors.Rid(op.Rid), RpcErrors.Offset(op.Offset), RpcErrors.Width(op.Width), op.Value);
        if (op.Ack || s != Core.AddressSpace.CompletionStatus.Successful)
            Complete(ref response, tag, s, 0, ByteString.Empty, TransactionKind.ConfigWrite);
    }

    private void MmioRead(ulong tag, MmioReadOp op, ref TransactResponse? response)
    {
        var r = machine.ReadMmio(op.Address, RpcErrors.Width(op.Width));
        Complete(ref response, tag, r.Status, r.Value, ByteString.Empty, TransactionKind.MmioRead);
    }

    private void MmioWrite(ulong tag, MmioWriteOp op, ref TransactResponse? response)
    {
        var s = machine.WriteMmio(op.Address, RpcErrors.Width(op.Width), op.Value);
        if (op.Ack || s != Core.AddressSpace.CompletionStatus.Successful)
            Complete(ref response, tag, s, 0, ByteString.Empty, TransactionKind.MmioWrite);
    }

    private void MemoryRead(ulong tag, MemoryReadOp op, ref TransactResponse? response)
    {
        var data = MemoryGrpcService.Read(machine, limits, op.Address, op.Length);
        Complete(ref response, tag, Core.AddressSpace.CompletionStatus.Successful, 0, data, TransactionKind.MemoryRead);
    }

    private void MemoryWrite(ulong tag, MemoryWriteOp op, ref TransactResponse? response)
    {
        MemoryGrpcService.Write(machine, limits, op.Address, op.Data);
        if (op.Ack) Complete(ref response, tag, Core.AddressSpace.CompletionStatus.Successful, 0, ByteString.Empty, TransactionKind.MemoryWrite);
    }

    private static void Complete(ref TransactResponse? response, ulong tag, Core.AddressSpace.CompletionStatus status, ulong value, ByteString data, TransactionKind kind)
    {
        if (response == null)
        {
            response = new TransactResponse { Tag = tag, Status = RpcErrors.ToProto(status), Value = value, Data = data, Kind = kind };
            return;
        }
        response.More.Add(new Completion { Tag = tag, Status = RpcErrors.ToProto(status), Value = value, Data = data, Kind = kind });
    }
}

/// <summary>Proto field names of the op cases.</summary>
internal static class OpCaseNames
{
    public static string ToSnakeCase(this TransactRequest.OpOneofCase c) => Snake(c.ToString());
    public static string ToSnakeCase(this Transaction.OpOneofCase c) => Snake(c.ToString());

    private static string Snake(string pascal)
    {
        var sb = new System.Text.StringBuilder();
        foreach (char ch in pascal)
        {
            if (char.IsUpper(ch) && sb.Length > 0) sb.Append('_');
            sb.Append(char.ToLowerInvariant(ch));
        }
        return sb.ToString();
    }
}
