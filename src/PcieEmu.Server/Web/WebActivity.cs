using PcieEmu.Core.Platform;
using PcieEmu.Core.Snapshots;

namespace PcieEmu.Server.Web;

/// <summary>
/// The web view's one <see cref="LiveActivity"/> (counters and trace tail), alive only while
/// someone looks: an open page (its event stream holds a lease) or a JSON request of the last
/// <see cref="Linger"/>. With nobody looking there is no subscription on the event path.
/// </summary>
public sealed class WebActivity : IDisposable
{
    /// <summary>How long the activity outlives its last lease (a page reload does not restart the counters).</summary>
    public static readonly TimeSpan Linger = TimeSpan.FromSeconds(10);

    private readonly Machine _machine;
    private readonly Lock _lock = new();
    private readonly Timer _timer;
    private LiveActivity? _live;
    private int _leases;
    private bool _disposed;

    /// <summary>Creates the holder; nothing subscribes until the first lease.</summary>
    public WebActivity(Machine machine)
    {
        _machine = machine;
        _timer = new Timer(_ => Expire(), null, Timeout.Infinite, Timeout.Infinite);
    }

    /// <summary>The web listener (set while the server is built; its endpoint carries the real port once started).</summary>
    internal Microsoft.AspNetCore.Server.Kestrel.Core.ListenOptions? Listener { get; set; }

    /// <summary>The web view's address (<c>http://127.0.0.1:50552</c>), or null when it is off.</summary>
    public string? BoundAddress => Listener?.IPEndPoint is { } ep
        ? $"http://{(ep.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{ep.Address}]" : ep.Address.ToString())}:{ep.Port.ToString(System.Globalization.CultureInfo.InvariantCulture)}"
        : null;

    /// <summary>Whether the activity is subscribed now.</summary>
    public bool Active { get { lock (_lock) return _live != null; } }

    /// <summary>Starts (or keeps) the activity until the lease is disposed (plus <see cref="Linger"/>).</summary>
    public Lease Acquire()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _leases++;
            _timer.Change(Timeout.Infinite, Timeout.Infinite);
            _live ??= new LiveActivity(_machine);
            return new Lease(this, _live);
        }
    }

    private void Release()
    {
        lock (_lock)
        {
            if (--_leases == 0 && !_disposed) _timer.Change(Linger, Timeout.InfiniteTimeSpan);
        }
    }

    private void Expire()
    {
        lock (_lock)
        {
            if (_leases > 0) return;
            _live?.Dispose();
            _live = null;
        }
    }

    /// <summary>Stops everything.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            _disposed = true;
            _timer.Dispose();
            _live?.Dispose();
            _live = null;
        }
    }

    /// <summary>A hold on the activity.</summary>
    public sealed class Lease : IDisposable
    {
        private WebActivity? _owner;

        internal Lease(WebActivity owner, LiveActivity live) { _owner = owner; Live = live; }

        /// <summary>The activity (drain it before reading).</summary>
        public LiveActivity Live { get; }

        /// <summary>Gives the hold back.</summary>
        public void Dispose() => Interlocked.Exchange(ref _owner, null)?.Release();
    }
}
