using System.Diagnostics;
using System.IO.MemoryMappedFiles;
using Grpc.Core;
using PcieEmu.Protocol.V1;

namespace PcieEmu.Client.Ring;

/// <summary>One completion read from the ring.</summary>
/// <param name="Tag">The tag of the entry it completes.</param>
/// <param name="Kind">The entry's op.</param>
/// <param name="Status">PCIe status, or InvalidArgument/OutOfRange for a rejected entry.</param>
/// <param name="Field">For a rejected entry, the field at fault.</param>
/// <param name="Value">Value read (config and MMIO reads; all ones on UR).</param>
/// <param name="Length">Bytes a memory read placed in the data area.</param>
public readonly record struct RingCompletion(ulong Tag, RingOp Kind, RingStatus Status, RingField Field, ulong Value, uint Length);

/// <summary>
/// A shared-memory ring (SessionService.OpenRing) for single accesses at memory speed: config, MMIO
/// and RAM transactions go into a submission ring in a file both processes map, completions come
/// back in a completion ring; no socket, no syscall while both sides are busy. Ordering is the
/// Session stream's: entries execute in submission order, writes are posted (they complete only on
/// failure or when acked; failures land in <see cref="Unsolicited"/>), a read sees every earlier write.
/// Not thread-safe: one thread drives a ring. Same host only (the server names a file to map).
/// </summary>
public sealed unsafe partial class PcieRing : IDisposable
{
    private readonly AsyncServerStreamingCall<OpenRingResponse> _call;
    private readonly CancellationTokenSource _cancel;
    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _base;
    private readonly byte* _sq, _cq, _data;
    private readonly uint _sqEntries, _cqEntries, _dataSize;
    private readonly long _spinTicks;
    private readonly Task<Status> _ended;
    private readonly Queue<RingCompletion> _unsolicited = new();
    private uint _sqTail, _cqHead, _dataUsed, _dataMark;
    private ulong _nextTag = 1;
    private bool _disposed;

    private PcieRing(AsyncServerStreamingCall<OpenRingResponse> call, CancellationTokenSource cancel, OpenRingResponse layout, TimeSpan spin)
    {
        _call = call;
        _cancel = cancel;
        Layout = layout;
        if (layout.Version != RingLayout.Version || layout.SubmissionEntrySize != RingLayout.SubmissionEntrySize || layout.CompletionEntrySize != RingLayout.CompletionEntrySize)
            throw new InvalidOperationException($"the server's ring layout (version {layout.Version}) is not the one this client knows (version {RingLayout.Version})");
        _file = MemoryMappedFile.CreateFromFile(new FileStream(layout.Path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite),
            null, (long)layout.Size, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, leaveOpen: false);
        _view = _file.CreateViewAccessor(0, (long)layout.Size, MemoryMappedFileAccess.ReadWrite);
        byte* p = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        _base = p + _view.PointerOffset;
        if (*(ulong*)_base != RingLayout.Magic) throw new InvalidOperationException($"{layout.Path} is not a ring file (bad magic)");
        _sq = _base + layout.SubmissionOffset;
        _cq = _base + layout.CompletionOffset;
        _data = _base + layout.DataOffset;
        _sqEntries = layout.SubmissionEntries;
        _cqEntries = layout.CompletionEntries;
        _dataSize = layout.DataSize;
        _spinTicks = (long)(spin.TotalSeconds * Stopwatch.Frequency);
        _ended = DrainAsync();
    }

    /// <summary>The file and layout the server sent.</summary>
    public OpenRingResponse Layout { get; }

    /// <summary>Completions nobody waited for: posted writes that failed, in order. Read them to learn of failed writes.</summary>
    public IReadOnlyCollection<RingCompletion> Unsolicited => _unsolicited;

    /// <summary>True once the server closed the ring (it stopped, or the ring broke).</summary>
    public bool IsClosed => Volatile.Read(ref U32(RingLayout.StateOffset)) != 0;

    /// <summary>Config read; waits for its completion.</summary>
    public RingCompletion ReadConfig(uint rid, int offset, int width) =>
        Wait(Submit(RingOp.ConfigRead, 0, Rid(rid), Offset(offset), Width(width), 0, 0, 0, 0));

    /// <summary>Posted config write (a failure shows up in <see cref="Unsolicited"/>).</summary>
    public void PostConfigWrite(uint rid, int offset, int width, uint value) =>
        Submit(RingOp.ConfigWrite, 0, Rid(rid), Offset(offset), Width(width), 0, value, 0, 0);

    /// <summary>Config write that asks for a completion and waits for it.</summary>
    public RingCompletion WriteConfigAcked(uint rid, int offset, int width, uint value) =>
        Wait(Submit(RingOp.ConfigWrite, RingLayout.FlagAck, Rid(rid), Offset(offset), Width(width), 0, value, 0, 0));

    /// <summary>Memory-space read (MMIO or RAM); waits for its completion.</summary>
    public RingCompletion ReadMmio(ulong address, int width) =>
        Wait(Submit(RingOp.MmioRead, 0, 0, 0, Width(width), address, 0, 0, 0));

    /// <summary>Posted memory-space write.</summary>
    public void PostMmioWrite(ulong address, int width, ulong value) =>
        Submit(RingOp.MmioWrite, 0, 0, 0, Width(width), address, value, 0, 0);

    /// <summary>Memory-space write that asks for a completion and waits for it.</summary>
    public RingCompletion WriteMmioAcked(ulong address, int width, ulong value) =>
        Wait(Submit(RingOp.MmioWrite, RingLayout.FlagAck, 0, 0, Width(width), address, value, 0, 0));

    /// <summary>Reads RAM into <paramref name="destination"/> (at most the data area's size) and returns the completion.</summary>
    public RingCompletion ReadMemory(ulong address, Span<byte> destination)
    {
        uint at = Reserve(destination.Length);
        var c = Wait(Submit(RingOp.MemoryRead, 0, 0, 0, 0, address, 0, at, (uint)destination.Length));
        if (c.Status == RingStatus.Successful) new ReadOnlySpan<byte>(_data + at, destination.Length).CopyTo(destination);
        return c;
    }

    /// <summary>Posted RAM write of <paramref name="data"/> (copied into the data area first).</summary>
    public void PostMemoryWrite(ulong address, ReadOnlySpan<byte> data)
    {
        uint at = Reserve(data.Length);
        data.CopyTo(new Span<byte>(_data + at, data.Length));
        Submit(RingOp.MemoryWrite, 0, 0, 0, 0, address, 0, at, (uint)data.Length);
    }

    /// <summary>Removes and returns the oldest unsolicited completion, if any.</summary>
    public bool TryTakeUnsolicited(out RingCompletion completion) => _unsolicited.TryDequeue(out completion);

    private static ushort Rid(uint rid) => rid <= 0xFFFF ? (ushort)rid : throw new ArgumentOutOfRangeException(nameof(rid), $"routing ID 0x{rid:X} is over 0xFFFF");
    private static ushort Offset(int offset) => offset is >= 0 and < 4096 ? (ushort)offset : throw new ArgumentOutOfRangeException(nameof(offset), $"offset must be in [0, 4096) (was {offset})");
    private static byte Width(int width) => width is 1 or 2 or 4 or 8 ? (byte)width : throw new ArgumentOutOfRangeException(nameof(width), $"width must be 1, 2, 4 or 8 (was {width})");

    private ref uint U32(int offset) => ref *(uint*)(_base + offset);

    // A place in the data area for one memory entry: bump allocation, restarting at 0 once the server has consumed every entry.
    private uint Reserve(int length)
    {
        if ((uint)length > _dataSize) throw new ArgumentOutOfRangeException(nameof(length), $"at most {_dataSize} bytes (the ring's data area) per memory entry (was {length})");
        if (_dataUsed + (uint)length > _dataSize)
        {
            // Wait until the server has consumed the entries whose data lies there.
            SpinUntil(() => (int)(Volatile.Read(ref U32(RingLayout.SubmissionHeadOffset)) - _dataMark) >= 0);
            _dataUsed = 0;
        }
        uint at = _dataUsed;
        _dataUsed += ((uint)length + 63) & ~63u;
        _dataMark = _sqTail + 1;
        return at;
    }

    /// <summary>Writes one entry and publishes it; returns its tag.</summary>
    private ulong Submit(RingOp op, byte flags, ushort rid, ushort offset, byte width, ulong address, ulong value, uint dataOffset, uint length)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_sqTail - Volatile.Read(ref U32(RingLayout.SubmissionHeadOffset)) >= _sqEntries)
            SpinUntil(() => _sqTail - Volatile.Read(ref U32(RingLayout.SubmissionHeadOffset)) < _sqEntries);
        ulong tag = _nextTag++;
        var e = (RingSubmission*)(_sq + (_sqTail & (_sqEntries - 1)) * RingLayout.SubmissionEntrySize);
        *e = new RingSubmission { Tag = tag, Op = (byte)op, Flags = flags, Rid = rid, Offset = offset, Width = width, Address = address, Value = value, DataOffset = dataOffset, Length = length };
        _sqTail++;
        // Full barrier: the tail store must be visible before we look at the server's sleeping flag (it sets the flag, then re-reads the tail).
        Interlocked.Exchange(ref U32(RingLayout.SubmissionTailOffset), _sqTail);
        if (Volatile.Read(ref U32(RingLayout.ServerSleepingOffset)) != 0) Futex.Wake((uint*)(_base + RingLayout.SubmissionTailOffset));
        return tag;
    }

    /// <summary>Reads completions until the one for <paramref name="tag"/>; others go to <see cref="Unsolicited"/>.</summary>
    private RingCompletion Wait(ulong tag)
    {
        ref uint cqTail = ref U32(RingLayout.CompletionTailOffset);
        while (true)
        {
            long start = Stopwatch.GetTimestamp();
            int polls = 0;
            while (_cqHead == Volatile.Read(ref cqTail))
            {
                if (Stopwatch.GetTimestamp() - start < _spinTicks)
                {
                    // A few pause loops, then sched_yield, so a busy CPU still runs the server's ring thread.
                    if (++polls <= 32) Thread.SpinWait(8);
                    else Thread.Yield();
                    continue;
                }
                if (IsClosed) throw Closed();
                Interlocked.Exchange(ref U32(RingLayout.ClientSleepingOffset), 1);
                uint seen = _cqHead;
                if (Volatile.Read(ref cqTail) == seen && !IsClosed) Futex.Wait((uint*)(_base + RingLayout.CompletionTailOffset), seen, 100);
                Volatile.Write(ref U32(RingLayout.ClientSleepingOffset), 0);
            }
            var raw = *(RingCompletionEntry*)(_cq + (_cqHead & (_cqEntries - 1)) * RingLayout.CompletionEntrySize);
            _cqHead++;
            Volatile.Write(ref U32(RingLayout.CompletionHeadOffset), _cqHead);
            var c = new RingCompletion(raw.Tag, (RingOp)raw.Kind, (RingStatus)raw.Status, (RingField)raw.Field, raw.Value, raw.Length);
            if (c.Tag == tag) return c;
            _unsolicited.Enqueue(c);
        }
    }

    private void SpinUntil(Func<bool> done)
    {
        for (int polls = 0; !done(); polls++)
        {
            if (IsClosed) throw Closed();
            if (polls < 32) Thread.SpinWait(8);
            else Thread.Yield();
        }
    }

    private IOException Closed()
    {
        string why = _ended.Wait(TimeSpan.FromSeconds(1)) ? $"{_ended.Result.StatusCode}: {_ended.Result.Detail}" : "no status";
        return new IOException($"the server closed the ring ({why})");
    }

    /// <summary>Closes the ring: cancels the OpenRing call (the server then deletes the file) and unmaps it.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _cancel.Cancel();
        _ended.Wait(TimeSpan.FromSeconds(5));
        _call.Dispose();
        _cancel.Dispose();
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _file.Dispose();
    }
}

// The async parts (no pointers: await is not allowed in an unsafe context).
public sealed partial class PcieRing
{
    /// <summary>
    /// Opens a ring through <paramref name="session"/>. <paramref name="clientSpin"/> is how long a
    /// wait for a completion polls before it sleeps on the futex (default 20 µs).
    /// </summary>
    public static async Task<PcieRing> OpenAsync(SessionService.SessionServiceClient session, OpenRingRequest? request = null,
        TimeSpan? clientSpin = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(session);
        var cancel = new CancellationTokenSource();
        var call = session.OpenRing(request ?? new OpenRingRequest(), cancellationToken: cancel.Token);
        try
        {
            if (!await call.ResponseStream.MoveNext(cancellationToken).ConfigureAwait(false))
                throw new InvalidOperationException("OpenRing ended without describing the ring");
            return new PcieRing(call, cancel, call.ResponseStream.Current, clientSpin ?? TimeSpan.FromMicroseconds(20));
        }
        catch
        {
            await cancel.CancelAsync().ConfigureAwait(false);
            call.Dispose();
            cancel.Dispose();
            throw;
        }
    }

    // Reads the call to its end: its status says why the ring closed.
    private async Task<Status> DrainAsync()
    {
        try
        {
            while (await _call.ResponseStream.MoveNext(CancellationToken.None).ConfigureAwait(false)) { }
            return _call.GetStatus();
        }
        catch (RpcException ex)
        {
            return ex.Status;
        }
    }
}
