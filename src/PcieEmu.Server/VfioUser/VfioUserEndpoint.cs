using System.Globalization;
using System.Net.Sockets;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using PcieEmu.Core.Platform;
using PcieEmu.Core.Topology;
using PcieEmu.Server.Hosting;

namespace PcieEmu.Server.VfioUser;

/// <summary>One <c>--vfio-user BDF=SOCKET</c> request: the function's routing ID and the socket path.</summary>
public sealed record VfioUserBinding(ushort Rid, string SocketPath)
{
    /// <summary>
    /// Parses <c>BDF=PATH</c> (e.g. <c>02:10.0=/run/user/1000/pcie-emu/vf0.sock</c>). Throws
    /// <see cref="ServeConfigurationException"/> naming the option on a bad value.
    /// </summary>
    public static VfioUserBinding Parse(string text)
    {
        int eq = text.IndexOf('=', StringComparison.Ordinal);
        if (eq <= 0 || eq == text.Length - 1)
            throw new ServeConfigurationException($"--vfio-user '{text}': expected BDF=SOCKET, e.g. 02:10.0=/tmp/pcie-emu/vf0.sock");
        string bdf = text[..eq].Trim(), path = text[(eq + 1)..].Trim();
        if (!Bdf.TryParse(bdf, out ushort rid))
            throw new ServeConfigurationException($"--vfio-user '{text}': '{bdf}' is not a bus:device.function (e.g. 02:10.0)");
        if (path.Length > 107)
            throw new ServeConfigurationException($"--vfio-user '{text}': the socket path is longer than a Unix socket allows (107 bytes)");
        return new VfioUserBinding(rid, Path.GetFullPath(path));
    }

    /// <summary>Parses every binding and rejects two for one function or one socket.</summary>
    public static IReadOnlyList<VfioUserBinding> ParseAll(IEnumerable<string> texts)
    {
        var list = texts.Select(Parse).ToList();
        foreach (var g in list.GroupBy(b => b.Rid).Where(g => g.Count() > 1))
            throw new ServeConfigurationException($"--vfio-user: function {Bdf.Format(g.Key)} is given more than once");
        foreach (var g in list.GroupBy(b => b.SocketPath).Where(g => g.Count() > 1))
            throw new ServeConfigurationException($"--vfio-user: socket {g.Key} is given more than once");
        foreach (var b in list) CheckDirectory(b);
        return list;
    }

    // The socket must be private: in a directory other users cannot write to (they could replace the
    // socket). A missing directory is created mode 0700 at start.
    private static void CheckDirectory(VfioUserBinding b)
    {
        string dir = Path.GetDirectoryName(b.SocketPath)!;
        if (OperatingSystem.IsWindows() || !Directory.Exists(dir)) return;
        var mode = File.GetUnixFileMode(dir);
        if ((mode & (UnixFileMode.GroupWrite | UnixFileMode.OtherWrite)) != 0)
            throw new ServeConfigurationException($"--vfio-user {Bdf.Format(b.Rid)}={b.SocketPath}: the directory {dir} is writable by other users; put the socket in a directory of your own (a missing one is created with mode 0700)");
    }
}

/// <summary>
/// Serves one function over vfio-user on a Unix socket. The socket exists from start (mode 0600 in a
/// directory created 0700 when missing); one client is served at a time, on its own thread; a second
/// client waits in the listen queue until the first disconnects. A client of a function that does not
/// exist yet (a VF before VF Enable) is accepted and waits, with a log line, until the function appears.
/// </summary>
internal sealed class VfioUserEndpoint : IDisposable
{
    private readonly Machine _machine;
    private readonly VfioUserBinding _binding;
    private readonly ILogger _logger;
    private readonly string _bdf;
    private readonly CancellationTokenSource _stop = new();
    private Socket? _listener;
    private Task? _acceptLoop;
    private VfioUserSession? _session;

    public VfioUserEndpoint(Machine machine, VfioUserBinding binding, ILogger logger)
    {
        _machine = machine;
        _binding = binding;
        _logger = logger;
        _bdf = Bdf.Format(binding.Rid);
    }

    /// <summary>Creates the socket and starts accepting.</summary>
    public void Start()
    {
        if (!OperatingSystem.IsLinux()) throw new ServeConfigurationException("--vfio-user: vfio-user needs Linux (file descriptor passing, eventfd, memfd)");
        string path = _binding.SocketPath;
        string dir = Path.GetDirectoryName(path)!;
        if (!Directory.Exists(dir))
            Directory.CreateDirectory(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        if (File.Exists(path))
        {
            using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                probe.Connect(new UnixDomainSocketEndPoint(path));
                throw new ServeConfigurationException($"--vfio-user {_bdf}={path}: another server is listening there");
            }
            catch (SocketException)
            {
                File.Delete(path);
            }
        }
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            listener.Bind(new UnixDomainSocketEndPoint(path));
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            listener.Listen(4);
        }
        catch (SocketException ex)
        {
            listener.Dispose();
            throw new ServeConfigurationException($"--vfio-user {_bdf}={path}: {ex.Message}");
        }
        _listener = listener;
        VfioUserLog.Listening(_logger, _bdf, path);
        _acceptLoop = AcceptLoopAsync(_stop.Token);
    }

    private async Task AcceptLoopAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener!.AcceptAsync(ct).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }
            client.Blocking = true;
            var session = new VfioUserSession(_machine, _binding.Rid, client, _logger);
            _session = session;
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var thread = new Thread(() =>
            {
                try { session.Run(); }
                finally { session.Dispose(); done.SetResult(); }
            })
            { IsBackground = true, Name = $"vfio-user {_bdf}" };
            thread.Start();
            await done.Task.ConfigureAwait(false);
            _session = null;
        }
    }

    /// <summary>Stops accepting, ends the session, removes the socket.</summary>
    public void Dispose()
    {
        _stop.Cancel();
        _session?.Stop();
        _listener?.Dispose();
        try { _acceptLoop?.Wait(TimeSpan.FromSeconds(10)); } catch (AggregateException) { }
        try { File.Delete(_binding.SocketPath); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        _stop.Dispose();
    }
}

/// <summary>Starts the vfio-user endpoints with the host and stops them with it.</summary>
internal sealed class VfioUserHost(Machine machine, IReadOnlyList<VfioUserBinding> bindings, ILoggerFactory loggers) : IHostedService, IDisposable
{
    private readonly List<VfioUserEndpoint> _endpoints = [];

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var logger = loggers.CreateLogger("PcieEmu.Server.VfioUser");
        foreach (var b in bindings)
        {
            var ep = new VfioUserEndpoint(machine, b, logger);
            ep.Start();
            _endpoints.Add(ep);
        }
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        Dispose();
        return Task.CompletedTask;
    }

    public void Dispose()
    {
        foreach (var ep in _endpoints) ep.Dispose();
        _endpoints.Clear();
    }

    /// <summary>Formats a binding for messages.</summary>
    public static string Describe(VfioUserBinding b) => string.Create(CultureInfo.InvariantCulture, $"{Bdf.Format(b.Rid)}={b.SocketPath}");
}
