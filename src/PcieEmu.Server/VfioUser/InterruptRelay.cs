using Microsoft.Extensions.Logging;
using PcieEmu.Core.Interrupts;

namespace PcieEmu.Server.VfioUser;

/// <summary>
/// Turns the function's interrupt messages into eventfd signals for the client. The function
/// still raises every interrupt as a memory write (its MSI-X entries point into the MSI window with
/// data = vector); this relay is one more subscriber of the machine's interrupt fan-out, filtered by
/// the function's routing ID, and writes eventfd n when MSI-X vector n arrives (the INTx eventfd on
/// an INTx assertion). Descriptors are owned here and closed when replaced or on dispose.
/// </summary>
internal sealed class InterruptRelay : IDisposable
{
    private readonly InterruptHub _hub;
    private readonly ILogger _logger;
    private readonly string _bdf;
    private readonly Lock _lock = new();
    private readonly int[][] _fds = new int[VfioUserWire.IrqCount][];
    private InterruptSubscription? _subscription;
    private Task? _pump;
    private ushort _rid;
    private long _signals;

    public InterruptRelay(InterruptHub hub, ILogger logger, string bdf)
    {
        _hub = hub; _logger = logger; _bdf = bdf;
        for (int i = 0; i < _fds.Length; i++) _fds[i] = [];
    }

    /// <summary>eventfd signals written so far.</summary>
    public long Signals => Interlocked.Read(ref _signals);

    /// <summary>Sizes index <paramref name="index"/> to <paramref name="count"/> vectors (descriptors beyond are closed).</summary>
    public void Resize(int index, int count)
    {
        lock (_lock)
        {
            var old = _fds[index];
            var n = new int[count];
            for (int i = 0; i < count; i++) n[i] = i < old.Length ? old[i] : -1;
            for (int i = count; i < old.Length; i++) UnixFd.Close(old[i]);
            _fds[index] = n;
        }
    }

    /// <summary>The eventfd of vector <paramref name="vector"/> of <paramref name="index"/> (-1 = none); replaces and closes the old one.</summary>
    public void Set(int index, int vector, int fd)
    {
        lock (_lock)
        {
            var a = _fds[index];
            if ((uint)vector >= (uint)a.Length) { UnixFd.Close(fd); return; }
            if (a[vector] != fd) UnixFd.Close(a[vector]);
            a[vector] = fd;
        }
    }

    /// <summary>Whether vector <paramref name="vector"/> of <paramref name="index"/> has an eventfd.</summary>
    public bool IsArmed(int index, int vector)
    {
        lock (_lock) return (uint)vector < (uint)_fds[index].Length && _fds[index][vector] >= 0;
    }

    /// <summary>Closes every descriptor of <paramref name="index"/>.</summary>
    public void Clear(int index)
    {
        lock (_lock)
        {
            var a = _fds[index];
            for (int i = 0; i < a.Length; i++) { UnixFd.Close(a[i]); a[i] = -1; }
        }
    }

    /// <summary>Signals vector <paramref name="vector"/> of <paramref name="index"/> if it has an eventfd.</summary>
    public void Signal(int index, int vector)
    {
        lock (_lock)
        {
            var a = _fds[index];
            if ((uint)vector >= (uint)a.Length || a[vector] < 0) return;
            if (UnixFd.SignalEventFd(a[vector], out int errno)) Interlocked.Increment(ref _signals);
            else VfioUserLog.Problem(_logger, _bdf, $"eventfd of interrupt {index}/{vector} could not be signalled (errno {errno})");
        }
    }

    /// <summary>Starts (or moves) the subscription to the function's interrupt messages.</summary>
    public void Follow(ushort rid)
    {
        lock (_lock)
        {
            if (_subscription != null && _rid == rid) return;
            _subscription?.Dispose();
            _rid = rid;
            var sub = _subscription = _hub.Subscribe([rid], capacity: 4096);
            _pump = PumpAsync(sub);
        }
    }

    private async Task PumpAsync(InterruptSubscription sub)
    {
        try
        {
            await foreach (var ev in sub.Reader.ReadAllAsync().ConfigureAwait(false))
            {
                switch (ev.Kind)
                {
                    case InterruptKind.Msix: Signal(VfioUserWire.IrqMsix, (int)ev.Vector); break;
                    case InterruptKind.Msi: Signal(VfioUserWire.IrqMsi, (int)ev.Vector); break;
                    case InterruptKind.Intx: Signal(VfioUserWire.IrqIntx, 0); break;
                }
            }
        }
        catch (InterruptOverflowException ex)
        {
            // Eventfds count, so a burst that overflowed is still seen as "at least one"; start again.
            VfioUserLog.Problem(_logger, _bdf, $"interrupt relay fell behind ({ex.Missed} message(s) coalesced); resubscribing");
            ushort rid;
            lock (_lock)
            {
                if (_subscription != sub) return;
                _subscription = null;
                rid = _rid;
            }
            sub.Dispose();
            for (int v = 0; v < _fds[VfioUserWire.IrqMsix].Length; v++) Signal(VfioUserWire.IrqMsix, v);
            Follow(rid);
        }
    }

    /// <summary>Ends the subscription and closes every descriptor.</summary>
    public void Dispose()
    {
        InterruptSubscription? sub;
        lock (_lock)
        {
            sub = _subscription;
            _subscription = null;
        }
        sub?.Dispose();
        try { _pump?.Wait(TimeSpan.FromSeconds(5)); } catch (AggregateException) { }
        for (int i = 0; i < _fds.Length; i++) Clear(i);
    }
}
