using System.Diagnostics;
using Microsoft.Extensions.Logging;
using PcieEmu.Core.Events;
using PcieEmu.Core.Platform;
using PcieEmu.Core.Topology;
using PcieEmu.Server.Hosting;

namespace PcieEmu.Server.Capture;

/// <summary>
/// <c>serve --pcap DIR</c>: writes both directions of each port's wire to DIR/pcie-emu-port&lt;N&gt;.pcapng
/// (created owner-only). Each port's writer is a subscriber of the machine's event path with a
/// bounded queue and a thread of its own: the section and interface headers are written and
/// flushed at once, each frame within <see cref="FlushInterval"/>; a writer that falls behind
/// loses frames (counted: logged, and the next frame carries epb_dropcount and a comment), and the
/// machine never waits for the disk. A write that fails stops that port's file with a logged error.
/// </summary>
public sealed class PcapRecording : IDisposable
{
    /// <summary>Longest time a written frame stays in the writer's buffer.</summary>
    public static readonly TimeSpan FlushInterval = TimeSpan.FromMilliseconds(100);

    private readonly Port[] _ports;

    /// <summary>Starts writing when <see cref="ServeSettings.PcapDirectory"/> is set.</summary>
    public PcapRecording(Machine machine, ServeSettings settings, ILogger<PcapRecording> logger)
        : this(machine, Open(machine, settings, logger), 1 << 14, logger)
    {
    }

    /// <summary>Writes port <c>i</c>'s frames to <paramref name="outputs"/>[i] (owned), each with a queue of <paramref name="capacity"/> frames.</summary>
    internal PcapRecording(Machine machine, IReadOnlyList<(Stream Stream, string Name)> outputs, int capacity, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentNullException.ThrowIfNull(outputs);
        _ports = new Port[outputs.Count];
        var names = FrameLabels.PortNames(machine);
        for (int p = 0; p < outputs.Count; p++)
            _ports[p] = new Port(machine, p, names[p], outputs[p].Stream, outputs[p].Name, capacity, logger);
    }

    private static (Stream, string)[] Open(Machine machine, ServeSettings settings, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(settings);
        if (settings.PcapDirectory is not { } dir) return [];
        Directory.CreateDirectory(dir);
        var outputs = new (Stream, string)[machine.EthernetPorts.Count];
        for (int p = 0; p < outputs.Length; p++)
        {
            string path = Path.Combine(dir, $"pcie-emu-port{p}.pcapng");
            var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write, Share = FileShare.Read, BufferSize = 1 << 16 };
            if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            outputs[p] = (new FileStream(path, options), path);
            Log.PcapFile(logger, p, path);
        }
        return outputs;
    }

    /// <summary>Frames written to port <paramref name="port"/>'s file.</summary>
    public long Written(int port) => _ports[port].Written;

    /// <summary>Frames port <paramref name="port"/>'s writer lost because it fell behind.</summary>
    public long Dropped(int port) => _ports[port].Dropped;

    /// <summary>Writes what is queued, then closes the files.</summary>
    public void Dispose()
    {
        foreach (var p in _ports) p.Dispose();
    }

    private sealed class Gap(long missed)
    {
        public long Missed => missed;
    }

    private sealed class Port : IDisposable
    {
        private readonly EventSubscription<object> _sub;
        private readonly PcapNgWriter? _writer;
        private readonly string _name;
        private readonly ILogger _logger;
        private readonly Task _pump;
        private long _written, _dropped;

        public Port(Machine machine, int port, string portName, Stream stream, string name, int capacity, ILogger logger)
        {
            _name = name;
            _logger = logger;
            _sub = machine.Events.Subscribe<object>(EventKinds.Frame,
                e => e is FrameEvent { Direction: FrameDirection.FromWire or FrameDirection.ToWire } f && f.Frame.Port == port ? f : null,
                capacity, OverflowPolicy.Gap, static n => new Gap(n));
            try
            {
                _writer = new PcapNgWriter(stream, "pcie-emu serve --pcap");
                _writer.AddInterface(portName, "wire of the port, both directions");
                _writer.Flush();
            }
            catch (IOException ex)
            {
                Fail(ex);
                stream.Dispose();
            }
            _pump = Task.Factory.StartNew(Pump, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();
        }

        public long Written => Interlocked.Read(ref _written);
        public long Dropped => Interlocked.Read(ref _dropped);

        private void Fail(Exception ex)
        {
            _sub.Dispose();
            Log.PcapFailed(_logger, _name, ex.Message);
        }

        private async Task Pump()
        {
            if (_writer == null) return;
            var reader = _sub.Reader;
            long pendingDrop = 0;
            var sinceFlush = Stopwatch.StartNew();
            bool dirty = false;
            try
            {
                while (await reader.WaitToReadAsync().ConfigureAwait(false))
                {
                    while (reader.TryRead(out var item))
                    {
                        if (item is Gap g)
                        {
                            pendingDrop += g.Missed;
                            Interlocked.Add(ref _dropped, g.Missed);
                            Log.PcapDropped(_logger, _name, g.Missed, Dropped);
                            continue;
                        }
                        var f = (FrameEvent)item;
                        string comment = FrameLabels.Comment(f.Direction, Bdf.Format(f.Rid), f.Queue, f.Pools);
                        if (pendingDrop != 0) comment += "; " + FrameLabels.Dropped(pendingDrop);
                        _writer.WritePacket(0, f.Frame.TimestampUnixNs, f.Frame.Data, FrameLabels.Direction(f.Direction), comment, pendingDrop);
                        pendingDrop = 0;
                        Interlocked.Increment(ref _written);
                        dirty = true;
                        if (sinceFlush.Elapsed >= FlushInterval) { _writer.Flush(); dirty = false; sinceFlush.Restart(); }
                    }
                    if (dirty) { _writer.Flush(); dirty = false; sinceFlush.Restart(); }
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ObjectDisposedException or NotSupportedException)
            {
                Fail(ex);
            }
        }

        public void Dispose()
        {
            _sub.Dispose();
            _pump.Wait(TimeSpan.FromSeconds(10));
            try
            {
                _writer?.Dispose();
            }
            catch (IOException ex)
            {
                Log.PcapFailed(_logger, _name, ex.Message);
            }
        }
    }
}
