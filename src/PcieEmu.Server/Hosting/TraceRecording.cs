using Microsoft.Extensions.Logging;
using PcieEmu.Core.Events;
using PcieEmu.Core.Platform;

namespace PcieEmu.Server.Hosting;

/// <summary>
/// <c>serve --trace FILE</c>: records the event path to FILE (owner-only) for the server's life.
/// A file that cannot be opened or written stops the recording with a logged error; the machine
/// and the server go on.
/// </summary>
public sealed class TraceRecording : IDisposable
{
    private readonly TraceRecorder? _recorder;

    /// <summary>Starts recording when <see cref="ServeSettings.TraceFile"/> is set.</summary>
    public TraceRecording(Machine machine, ServeSettings settings, ILogger<TraceRecording> logger)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentNullException.ThrowIfNull(settings);
        if (settings.TraceFile is not { } path) return;
        try
        {
            _recorder = TraceRecorder.ToFile(machine.Events, path, ex => Log.TraceRecordingFailed(logger, path, ex.Message));
            Log.TraceRecording(logger, path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            Log.TraceRecordingFailed(logger, path, ex.Message);
        }
    }

    /// <summary>True while recording (not failed).</summary>
    public bool Recording => _recorder is { Failed: false };

    /// <summary>Flushes and closes the file.</summary>
    public void Dispose() => _recorder?.Dispose();
}
