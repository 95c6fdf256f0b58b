using System.Diagnostics;
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using PcieEmu.Client.Ring;
using PcieEmu.Core.AddressSpace;
using PcieEmu.Core.Platform;
using OpenRingRequest = PcieEmu.Protocol.V1.OpenRingRequest;
using PcieEmu.Server.Hosting;
using PcieEmu.Server.Services;

namespace PcieEmu.Server.Ring;

/// <summary>A ring's sizes, checked (OpenRingRequest; zero means the default).</summary>
internal readonly record struct RingGeometry(int SubmissionEntries, int CompletionEntries, int DataSize, int SpinMicroseconds)
{
    public const int MaxEntries = 4096, MaxDataSize = 4 << 20, MaxSpinMicroseconds = 10_000;
    /// <summary>
    /// Default poll before the ring thread sleeps: long enough to catch a client's next entry when
    /// both run on their own cores (sub-µs round trips), short enough not to keep a client off the
    /// processor on a busy machine, where a long poll made round trips 3-5x slower (docs/performance.md).
    /// </summary>
    public const int DefaultSpinMicroseconds = 5;

    public int SubmissionOffset => RingLayout.HeaderSize;
    public int CompletionOffset => SubmissionOffset + SubmissionEntries * RingLayout.SubmissionEntrySize;
    public int DataOffset => CompletionOffset + CompletionEntries * RingLayout.CompletionEntrySize;
    /// <summary>File size: everything, rounded up to 4 KiB pages.</summary>
    public long FileSize => (DataOffset + (long)DataSize + 4095) & ~4095L;

    /// <summary>The geometry a request asks for; INVALID_ARGUMENT naming the field when a size is out of range.</summary>
    public static RingGeometry From(OpenRingRequest r) => new(
        Entries(r.SubmissionEntries, "submission_entries"),
        Entries(r.CompletionEntries, "completion_entries"),
        r.DataSize == 0 ? 65536
            : r.DataSize <= MaxDataSize && r.DataSize % 64 == 0 ? (int)r.DataSize
            : throw RpcErrors.Invalid("data_size", $"must be a multiple of 64 up to {MaxDataSize} (was {r.DataSize})"),
        r.SpinMicroseconds == 0 ? DefaultSpinMicroseconds
            : r.SpinMicroseconds <= MaxSpinMicroseconds ? (int)r.SpinMicroseconds
            : throw RpcErrors.Invalid("spin_microseconds", $"at most {MaxSpinMicroseconds} (was {r.SpinMicroseconds})"));

    private static int Entries(uint n, string field) =>
        n == 0 ? 256
        : n is >= 2 and <= MaxEntries && (n & (n - 1)) == 0 ? (int)n
        : throw RpcErrors.Invalid(field, $"must be a power of two in [2, {MaxEntries}] (was {n})");
}

/// <summary>
/// One shared-memory ring: a private file mapped by the server and one client, and the thread that
/// serves it. The thread copies each submission out of shared memory once, validates every field
/// of the copy, executes it through the same Machine entry points the Session stream uses (each
/// takes the machine lock itself) and posts a completion when the Transact rules ask for one (reads,
/// acked writes, failures) or the entry was malformed. When the ring is empty it polls for the
/// spin time (yielding the processor between polls) and then sleeps on the submission tail's
/// futex, so an idle ring costs no CPU.
/// </summary>
internal sealed unsafe class SharedRing : IDisposable
{
    private const int SleepTimeoutMs = 1000;
    private readonly Machine _machine;
    private readonly LimitsOptions _limits;
    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _base;
    private readonly uint _sqMask, _cqMask;
    private readonly long _spinTicks;
    private readonly TaskCompletionSource<string?> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Thread? _thread;
    private CancellationTokenRegistration _registration;
    private volatile bool _stop;
    private bool _disposed;
    private uint _cqTail;

    private SharedRing(string path, RingGeometry geometry, Machine machine, LimitsOptions limits, FileStream stream)
    {
        Path = path;
        Geometry = geometry;
        _machine = machine;
        _limits = limits;
        _sqMask = (uint)geometry.SubmissionEntries - 1;
        _cqMask = (uint)geometry.CompletionEntries - 1;
        _spinTicks = geometry.SpinMicroseconds * Stopwatch.Frequency / 1_000_000;
        _file = MemoryMappedFile.CreateFromFile(stream, null, geometry.FileSize, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, leaveOpen: false);
        _view = _file.CreateViewAccessor(0, geometry.FileSize, MemoryMappedFileAccess.ReadWrite);
        byte* p = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        _base = p + _view.PointerOffset;
        *(ulong*)_base = RingLayout.Magic;
        U32(RingLayout.VersionOffset) = RingLayout.Version;
        U32(RingLayout.SubmissionEntriesOffset) = (uint)geometry.SubmissionEntries;
        U32(RingLayout.CompletionEntriesOffset) = (uint)geometry.CompletionEntries;
        U32(RingLayout.DataSizeOffset) = (uint)geometry.DataSize;
        U32(RingLayout.SubmissionOffsetOffset) = (uint)geometry.SubmissionOffset;
        U32(RingLayout.CompletionOffsetOffset) = (uint)geometry.CompletionOffset;
        U32(RingLayout.DataOffsetOffset) = (uint)geometry.DataOffset;
    }

    /// <summary>The ring's file.</summary>
    public string Path { get; }
    /// <summary>Its sizes.</summary>
    public RingGeometry Geometry { get; }
    /// <summary>Entries consumed so far.</summary>
    public long Consumed { get; private set; }

    /// <summary>Creates the file (0600, new) at <paramref name="path"/> and maps it.</summary>
    public static SharedRing Create(string path, RingGeometry geometry, Machine machine, LimitsOptions limits)
    {
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.ReadWrite, Share = FileShare.ReadWrite };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        var stream = new FileStream(path, options);
        try
        {
            stream.SetLength(geometry.FileSize);
            return new SharedRing(path, geometry, machine, limits, stream);
        }
        catch
        {
            stream.Dispose();
            File.Delete(path);
            throw;
        }
    }

    /// <summary>
    /// Serves the ring on its own thread until <paramref name="ct"/> is cancelled (result null) or the
    /// client breaks the index protocol (result: what it broke).
    /// </summary>
    public Task<string?> Run(CancellationToken ct)
    {
        // Named after the file's number (ring-PID-N.bin: "ring-N"), so its CPU time can be found in /proc/PID/task/*/comm.
        string file = System.IO.Path.GetFileNameWithoutExtension(Path);
        _thread = new Thread(Loop) { IsBackground = true, Name = "ring-" + file[(file.LastIndexOf('-') + 1)..] };
        _thread.Start();
        _registration = ct.Register(Stop);
        return _done.Task;
    }

    private void Stop()
    {
        _stop = true;
        Futex.Wake(Word(RingLayout.SubmissionTailOffset));
    }

    private ref uint U32(int offset) => ref *(uint*)(_base + offset);
    private uint* Word(int offset) => (uint*)(_base + offset);

    private void Loop()
    {
        string? broken = null;
        try
        {
            broken = Serve();
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            broken = "ring thread failed: " + ex.Message;
        }
        finally
        {
            // Closed: the client sees state 1 and stops waiting.
            Volatile.Write(ref U32(RingLayout.StateOffset), 1);
            Futex.Wake(Word(RingLayout.CompletionTailOffset));
            _done.TrySetResult(broken);
        }
    }

    private string? Serve()
    {
        uint head = 0;
        uint sqEntries = (uint)Geometry.SubmissionEntries;
        byte* sq = _base + Geometry.SubmissionOffset;
        while (!_stop)
        {
            uint tail = Volatile.Read(ref U32(RingLayout.SubmissionTailOffset));
            if (tail == head)
            {
                Idle(head);
                continue;
            }
            if (tail - head > sqEntries)
                return $"sq_tail: {tail} is more than {sqEntries} entries ahead of sq_head {head}";
            while (head != tail)
            {
                // Copied out once: the client may change the slot at any time; only the copy is judged.
                RingSubmission e = *(RingSubmission*)(sq + (head & _sqMask) * RingLayout.SubmissionEntrySize);
                if (!Execute(in e, out string? error)) return error;
                head++;
                Consumed++;
                Volatile.Write(ref U32(RingLayout.SubmissionHeadOffset), head);
                if (_stop) return null;
            }
        }
        return null;
    }

    // Poll for the spin time, then sleep on the submission tail until the client bumps it (and sees the flag) or a timeout.
    private void Idle(uint head)
    {
        long start = Stopwatch.GetTimestamp();
        ref uint tail = ref U32(RingLayout.SubmissionTailOffset);
        // A few pause loops, then sched_yield: on a busy (or single) CPU a polling server must not keep the client off the processor
        // (32 pause loops first made a round trip with both sides on one CPU 10 µs instead of 5.9: docs/performance.md).
        for (int n = 0; Stopwatch.GetTimestamp() - start < _spinTicks; n++)
        {
            if (Volatile.Read(ref tail) != head || _stop) return;
            if (n < 4) Thread.SpinWait(8);
            else Thread.Yield();
        }
        ref uint sleeping = ref U32(RingLayout.ServerSleepingOffset);
        Interlocked.Exchange(ref sleeping, 1);
        if (Volatile.Read(ref tail) == head && !_stop) Futex.Wait(Word(RingLayout.SubmissionTailOffset), head, SleepTimeoutMs);
        Volatile.Write(ref sleeping, 0);
    }

    // Executes one copied entry; false when the ring must close (stopping while waiting for completion space, or a broken cq_head).
    private bool Execute(in RingSubmission e, out string? error)
    {
        error = null;
        RingCompletionEntry c = default;
        c.Tag = e.Tag;
        c.Kind = e.Op is >= 1 and <= 6 ? e.Op : (byte)0;
        bool complete = Validate(in e, ref c);
        if (c.Status == 0)
        {
            try
            {
                complete = Perform(in e, ref c);
            }
            catch (ArgumentException ex)
            {
                Reject(ref c, RingStatus.InvalidArgument, ex.ParamName switch
                {
                    "width" => RingField.Width,
                    "offset" => RingField.Offset,
                    "value" => RingField.Value,
                    "address" => RingField.Address,
                    _ => RingField.Op,
                });
                complete = true;
            }
        }
        return !complete || Post(in c, out error);
    }

    private static void Reject(ref RingCompletionEntry c, RingStatus status, RingField field)
    {
        c.Status = (ushort)status;
        c.Field = (byte)field;
        c.Value = 0;
        c.Length = 0;
    }

    // Field checks that do not need the machine; sets an error status (and returns true) on the first bad field.
    private bool Validate(in RingSubmission e, ref RingCompletionEntry c)
    {
        RingField bad = RingField.None;
        bool write = e.Op is (byte)RingOp.ConfigWrite or (byte)RingOp.MmioWrite or (byte)RingOp.MemoryWrite;
        bool config = e.Op is (byte)RingOp.ConfigRead or (byte)RingOp.ConfigWrite;
        bool memory = e.Op is (byte)RingOp.MemoryRead or (byte)RingOp.MemoryWrite;
        bool mmio = e.Op is (byte)RingOp.MmioRead or (byte)RingOp.MmioWrite;
        if (!config && !memory && !mmio) bad = RingField.Op;
        else if ((e.Flags & ~(write ? RingLayout.FlagAck : 0)) != 0) bad = RingField.Flags;
        else if (e.Reserved0 != 0 || e.Reserved1 != 0 || e.Reserved2 != 0 || e.Reserved3 != 0) bad = RingField.Reserved;
        else if (!config && e.Rid != 0) bad = RingField.Rid;
        else if (!config && e.Offset != 0) bad = RingField.Offset;
        else if (config && e.Offset >= 4096) bad = RingField.Offset;
        else if (memory && e.Width != 0) bad = RingField.Width;
        else if (config && e.Address != 0) bad = RingField.Address;
        else if ((memory || e.Op is (byte)RingOp.ConfigRead or (byte)RingOp.MmioRead) && e.Value != 0) bad = RingField.Value;
        else if (e.Op == (byte)RingOp.ConfigWrite && e.Value > uint.MaxValue) bad = RingField.Value;
        else if (!memory && e.DataOffset != 0) bad = RingField.DataOffset;
        else if (!memory && e.Length != 0) bad = RingField.Length;
        else if (memory && e.Length > (uint)_limits.MaxMemoryTransfer) bad = RingField.Length;
        else if (memory && (e.DataOffset > (uint)Geometry.DataSize || e.Length > (uint)Geometry.DataSize - e.DataOffset)) bad = RingField.DataOffset;
        else if (memory && !_machine.Ram.Contains(e.Address, e.Length))
        {
            Reject(ref c, RingStatus.OutOfRange, RingField.Address);
            return true;
        }
        if (bad == RingField.None) return false;
        Reject(ref c, RingStatus.InvalidArgument, bad);
        return true;
    }

    // Runs a validated entry; returns whether it produces a completion.
    private bool Perform(in RingSubmission e, ref RingCompletionEntry c)
    {
        bool ack = (e.Flags & RingLayout.FlagAck) != 0;
        CompletionStatus s;
        switch ((RingOp)e.Op)
        {
            case RingOp.ConfigRead:
                var cr = _machine.ReadConfig(e.Rid, e.Offset, e.Width);
                c.Status = (ushort)cr.Status;
                c.Value = cr.Value;
                return true;
            case RingOp.ConfigWrite:
                s = _machine.WriteConfig(e.Rid, e.Offset, e.Width, (uint)e.Value);
                c.Status = (ushort)s;
                return ack || s != CompletionStatus.Successful;
            case RingOp.MmioRead:
                var mr = _machine.ReadMmio(e.Address, e.Width);
                c.Status = (ushort)mr.Status;
                c.Value = mr.Value;
                return true;
            case RingOp.MmioWrite:
                s = _machine.WriteMmio(e.Address, e.Width, e.Value);
                c.Status = (ushort)s;
                return ack || s != CompletionStatus.Successful;
            case RingOp.MemoryRead:
                if (e.Length > 0) _machine.ReadMemory(e.Address, new Span<byte>(_base + Geometry.DataOffset + e.DataOffset, (int)e.Length));
                c.Status = (ushort)RingStatus.Successful;
                c.Length = e.Length;
                return true;
            default:
                if (e.Length > 0) _machine.WriteMemory(e.Address, new ReadOnlySpan<byte>(_base + Geometry.DataOffset + e.DataOffset, (int)e.Length));
                c.Status = (ushort)RingStatus.Successful;
                return ack;
        }
    }

    // Publishes a completion, waiting for a free slot; false when the ring must close instead.
    private bool Post(in RingCompletionEntry c, out string? error)
    {
        error = null;
        uint entries = (uint)Geometry.CompletionEntries;
        ref uint cqHead = ref U32(RingLayout.CompletionHeadOffset);
        int waits = 0;
        while (true)
        {
            uint used = _cqTail - Volatile.Read(ref cqHead);
            if (used < entries) break;
            if (used > entries)
            {
                error = $"cq_head: {Volatile.Read(ref cqHead)} is not within {entries} entries behind cq_tail {_cqTail}";
                return false;
            }
            if (_stop) return false;
            // Full: the client is not reading completions. Back off (yield, then 1 ms sleeps) until it does.
            if (++waits < 64) Thread.Yield();
            else Thread.Sleep(1);
        }
        *(RingCompletionEntry*)(_base + Geometry.CompletionOffset + (_cqTail & _cqMask) * RingLayout.CompletionEntrySize) = c;
        _cqTail++;
        Interlocked.Exchange(ref U32(RingLayout.CompletionTailOffset), _cqTail);
        if (Volatile.Read(ref U32(RingLayout.ClientSleepingOffset)) != 0 && Interlocked.Exchange(ref U32(RingLayout.ClientSleepingOffset), 0) != 0)
            Futex.Wake(Word(RingLayout.CompletionTailOffset));
        return true;
    }

    /// <summary>Stops the thread, marks the ring closed, unmaps and deletes the file.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _registration.Dispose();
        Stop();
        _thread?.Join();
        if (_thread == null)
        {
            Volatile.Write(ref U32(RingLayout.StateOffset), 1);
            Futex.Wake(Word(RingLayout.CompletionTailOffset));
        }
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _file.Dispose();
        try
        {
            File.Delete(Path);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}

/// <summary>The open rings: where their files go, how many may be open, and stale files of dead servers.</summary>
internal sealed class SharedRings(Machine machine, LimitsOptions limits, ServeSettings settings)
{
    private const string Prefix = "ring-", Suffix = ".bin";
    private readonly Lock _lock = new();
    private readonly string _directory = settings.RuntimeDirectory ?? PcieEmu.Client.Endpoints.DefaultRuntimeDirectory();
    private int _open, _next;
    private bool _swept;

    /// <summary>Rings open now.</summary>
    public int Open => Volatile.Read(ref _open);

    /// <summary>A new ring; RESOURCE_EXHAUSTED when <see cref="LimitsOptions.MaxRings"/> are open. Dispose it through <see cref="Close"/>.</summary>
    public SharedRing Create(RingGeometry geometry)
    {
        int id;
        lock (_lock)
        {
            if (_open >= limits.MaxRings)
                throw new Grpc.Core.RpcException(new Grpc.Core.Status(Grpc.Core.StatusCode.ResourceExhausted, $"at most {limits.MaxRings} rings may be open at once (Limits:MaxRings)"));
            _open++;
            id = ++_next;
        }
        try
        {
            RuntimeDirectory.EnsurePrivate(_directory, "runtime directory");
            SweepOnce();
            return SharedRing.Create(System.IO.Path.Combine(_directory, $"{Prefix}{Environment.ProcessId}-{id}{Suffix}"), geometry, machine, limits);
        }
        catch
        {
            lock (_lock) _open--;
            throw;
        }
    }

    /// <summary>Closes a ring from <see cref="Create"/>.</summary>
    public void Close(SharedRing ring)
    {
        ring.Dispose();
        lock (_lock) _open--;
    }

    // Ring files of servers that are gone (killed before they could delete them).
    private void SweepOnce()
    {
        lock (_lock)
        {
            if (_swept) return;
            _swept = true;
        }
        foreach (string file in Directory.EnumerateFiles(_directory, Prefix + "*" + Suffix))
        {
            string name = System.IO.Path.GetFileName(file);
            int dash = name.IndexOf('-', Prefix.Length);
            if (dash < 0 || !int.TryParse(name.AsSpan(Prefix.Length, dash - Prefix.Length), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int pid)) continue;
            if (pid == Environment.ProcessId || Directory.Exists($"/proc/{pid}")) continue;
            try
            {
                File.Delete(file);
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }
    }
}
