using System.Text;

namespace PcieEmu.Core.Events;

/// <summary>
/// Records the event path to a file, one <see cref="TraceFormat.Line(MachineEvent)"/> per line,
/// from a thread of its own: a subscriber like any other (bounded queue, gap lines when the disk
/// falls behind), so recording never stalls the machine. A write that fails stops the recording
/// (the error goes to the callback); the machine goes on.
/// </summary>
public sealed class TraceRecorder : IDisposable
{
    private readonly EventSubscription<MachineEvent> _sub;
    private readonly TextWriter _writer;
    private readonly Action<Exception>? _onError;
    private readonly Task _pump;
    private long _written;
    private int _failed;

    /// <summary>Starts recording events of <paramref name="kinds"/> from <paramref name="bus"/> to <paramref name="output"/>
    /// (owned: closed on dispose).</summary>
    public TraceRecorder(EventBus bus, Stream output, EventKinds kinds = EventKinds.All, Action<Exception>? onError = null, int capacity = 1 << 16)
    {
        ArgumentNullException.ThrowIfNull(bus);
        ArgumentNullException.ThrowIfNull(output);
        _writer = new StreamWriter(output, new UTF8Encoding(false), 1 << 16) { NewLine = "\n", AutoFlush = false };
        _onError = onError;
        _sub = bus.Subscribe(kinds, null, capacity);
        _pump = Task.Factory.StartNew(Pump, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();
    }

    /// <summary>Opens <paramref name="path"/> (created or truncated; owner-only on Unix) and records to it.
    /// Throws <see cref="IOException"/> / <see cref="UnauthorizedAccessException"/> when it cannot be opened.</summary>
    public static TraceRecorder ToFile(EventBus bus, string path, Action<Exception>? onError = null)
    {
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write, Share = FileShare.Read, BufferSize = 0 };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        return new TraceRecorder(bus, new FileStream(path, options), EventKinds.All, onError);
    }

    /// <summary>Lines written so far.</summary>
    public long Written => Interlocked.Read(ref _written);

    /// <summary>Events the recorder lost because the writer fell behind.</summary>
    public long Missed => _sub.Missed;

    /// <summary>True once a write failed and the recording stopped.</summary>
    public bool Failed => Volatile.Read(ref _failed) != 0;

    private readonly StringBuilder _line = new(64 * 1024);

    private void Flush(ref int n)
    {
        if (n == 0) return;
        _writer.Write(_line);
        _line.Clear();
        Interlocked.Add(ref _written, n);
        n = 0;
    }

    private async Task Pump()
    {
        var reader = _sub.Reader;
        try
        {
            while (await reader.WaitToReadAsync().ConfigureAwait(false))
            {
                // Lines are built in one reused buffer and handed to the writer in batches.
                int n = 0;
                while (reader.TryRead(out var e))
                {
                    TraceFormat.AppendLine(_line, e);
                    if (++n == 256 || _line.Length > 32 * 1024) Flush(ref n);
                }
                Flush(ref n);
                if (reader.Count == 0) await _writer.FlushAsync().ConfigureAwait(false);
            }
            await _writer.FlushAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ObjectDisposedException or NotSupportedException)
        {
            Volatile.Write(ref _failed, 1);
            _sub.Dispose();
            _onError?.Invoke(ex);
        }
    }

    /// <summary>Stops, writes what is queued, then closes the file.</summary>
    public void Dispose()
    {
        _sub.Dispose();
        _pump.Wait(TimeSpan.FromSeconds(10));
        try
        {
            _writer.Dispose();
        }
        catch (IOException ex)
        {
            if (Interlocked.Exchange(ref _failed, 1) == 0) _onError?.Invoke(ex);
        }
    }
}
