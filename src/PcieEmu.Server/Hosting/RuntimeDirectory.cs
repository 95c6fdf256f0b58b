using System.Globalization;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace PcieEmu.Server.Hosting;

/// <summary>
/// The server's runtime files: the private directory (0700, ours) that holds the Unix socket and
/// the RAM file, and the socket itself. Nothing is created in, or deleted from, a directory that
/// another user owns or can enter; only sockets are ever deleted at a socket path.
/// </summary>
internal static class RuntimeDirectory
{
    private const uint PrivateMode = 0x1C0;   // 0700

    /// <summary>
    /// Makes sure <paramref name="dir"/> is a directory we own with mode 0700: creates it so when
    /// missing, and refuses (a one-line <see cref="ServeConfigurationException"/> starting with
    /// <paramref name="what"/>) when it is anything else. Off Linux it only creates the directory.
    /// </summary>
    public static void EnsurePrivate(string dir, string what)
    {
        if (!OperatingSystem.IsLinux())
        {
            Directory.CreateDirectory(dir);
            return;
        }
        var st = Posix.LStat(dir);
        if (st == null)
        {
            Directory.CreateDirectory(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            st = Posix.LStat(dir);
        }
        var s = st!.Value;
        if (!s.IsDirectory)
            throw new ServeConfigurationException($"{what}: {dir} is {s.Describe()}, not a directory; remove it or choose another path");
        uint me = Posix.EffectiveUid;
        if (s.Uid != me)
            throw new ServeConfigurationException($"{what}: directory {dir} belongs to uid {s.Uid}, not to you (uid {me}); it must be yours with mode 0700: remove it or choose another path");
        if (s.Permissions != PrivateMode)
            throw new ServeConfigurationException($"{what}: directory {dir} has mode {Octal(s.Permissions)}, so other users can reach what is in it; it must be 0700 (chmod 700 {dir})");
    }

    /// <summary>
    /// Readies a Unix socket path: its directory must be private (see <see cref="EnsurePrivate"/>);
    /// a stale socket there (nobody listening) is removed; anything that is not a socket is left
    /// alone and refused, as is a socket a live server listens on.
    /// </summary>
    public static void PrepareSocket(string path, ILogger logger)
    {
        string what = $"--listen unix://{path}";
        EnsurePrivate(Path.GetDirectoryName(path) ?? "/", what);
        if (!OperatingSystem.IsLinux())
        {
            if (File.Exists(path)) throw new ServeConfigurationException($"{what}: {path} exists; remove it or choose another path");
            return;
        }
        if (Posix.LStat(path) is not { } st) return;
        if (!st.IsSocket)
            throw new ServeConfigurationException($"{what}: {path} exists and is {st.Describe()}, not a socket; it is left alone: remove it or choose another path");
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
        }
        catch (SocketException)
        {
            File.Delete(path);
            Log.StaleSocket(logger, path);
            return;
        }
        throw new ServeConfigurationException($"{what}: another server is listening there");
    }

    /// <summary>Removes our socket at shutdown: only if a socket is still what is there.</summary>
    public static void RemoveSocket(string path)
    {
        try
        {
            if (!OperatingSystem.IsLinux() || Posix.LStat(path) is { IsSocket: true }) File.Delete(path);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    /// <summary>Permission bits as octal text (0755).</summary>
    public static string Octal(uint permissions) => "0" + Convert.ToString(permissions, 8).PadLeft(3, '0').ToString(CultureInfo.InvariantCulture);
}
