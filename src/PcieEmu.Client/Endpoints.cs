namespace PcieEmu.Client;

/// <summary>Where a PcieEmu server listens: parsing of <c>unix:///path</c> and <c>tcp://host:port</c> targets and the defaults.</summary>
public static class Endpoints
{
    /// <summary>The default TCP port.</summary>
    public const int DefaultTcpPort = 50551;

    /// <summary>The default TCP target: <c>tcp://127.0.0.1:50551</c>.</summary>
    public const string DefaultTcpTarget = "tcp://127.0.0.1:50551";

    /// <summary>Environment variable a client reads its default target from.</summary>
    public const string TargetVariable = "PCIEEMU_TARGET";

    /// <summary>Environment variable a client reads the TCP bearer token from (before the token file).</summary>
    public const string TokenVariable = "PCIEEMU_TOKEN";

    /// <summary>
    /// The server's private runtime directory (created 0700 by the server, owned by its user):
    /// <c>$XDG_RUNTIME_DIR/pcie-emu</c> when XDG_RUNTIME_DIR names an existing directory, else
    /// <c>$TMPDIR/pcie-emu-USER</c>. It holds the default socket, the token file and the RAM file.
    /// </summary>
    public static string DefaultRuntimeDirectory()
    {
        string? xdg = Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR");
        if (!string.IsNullOrEmpty(xdg) && Directory.Exists(xdg)) return Path.Combine(xdg, "pcie-emu");
        return Path.Combine(Path.GetTempPath(), $"pcie-emu-{Environment.UserName}");
    }

    /// <summary>Default Unix socket path: <c>pcie-emu.sock</c> in <see cref="DefaultRuntimeDirectory"/>.</summary>
    public static string DefaultUnixSocketPath() => Path.Combine(DefaultRuntimeDirectory(), "pcie-emu.sock");

    /// <summary>Default token file (TCP authentication): <c>token</c> in <see cref="DefaultRuntimeDirectory"/>.</summary>
    public static string DefaultTokenPath() => Path.Combine(DefaultRuntimeDirectory(), "token");

    /// <summary>
    /// The target a client uses when none is given: $PCIEEMU_TARGET, else the default Unix socket
    /// when it exists, else <see cref="DefaultTcpTarget"/>.
    /// </summary>
    public static string DefaultTarget()
    {
        if (Environment.GetEnvironmentVariable(TargetVariable) is { Length: > 0 } t) return t;
        string sock = DefaultUnixSocketPath();
        return File.Exists(sock) ? "unix://" + sock : DefaultTcpTarget;
    }

    /// <summary>Parses a target; throws <see cref="FormatException"/> with the reason.</summary>
    public static Endpoint Parse(string target)
    {
        if (TryParse(target, out var ep, out var error)) return ep;
        throw new FormatException(error);
    }

    /// <summary>
    /// Parses <c>unix:///absolute/path</c> (also <c>unix:/path</c>), <c>tcp://host:port</c> or
    /// <c>http://host:port</c>. IPv6 hosts go in brackets.
    /// </summary>
    public static bool TryParse(string? target, out Endpoint endpoint, out string error)
    {
        endpoint = default;
        error = "";
        if (string.IsNullOrWhiteSpace(target)) { error = "target is empty"; return false; }
        target = target.Trim();
        if (target.StartsWith("unix:", StringComparison.Ordinal))
        {
            string path = target["unix:".Length..];
            if (path.StartsWith("//", StringComparison.Ordinal)) path = path[2..];
            if (!path.StartsWith('/')) { error = $"'{target}': a unix target needs an absolute path (unix:///run/x.sock)"; return false; }
            endpoint = new Endpoint(EndpointKind.Unix, path, "", 0);
            return true;
        }
        string rest;
        if (target.StartsWith("tcp://", StringComparison.Ordinal)) rest = target[6..];
        else if (target.StartsWith("http://", StringComparison.Ordinal)) rest = target[7..];
        else { error = $"'{target}': expected unix:///path or tcp://host:port"; return false; }
        rest = rest.TrimEnd('/');
        int colon = rest.LastIndexOf(':');
        if (colon <= 0 || colon == rest.Length - 1) { error = $"'{target}': expected tcp://host:port"; return false; }
        string host = rest[..colon];
        if (host.StartsWith('[') && host.EndsWith(']')) host = host[1..^1];
        if (!int.TryParse(rest[(colon + 1)..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int port) || port > 65535)
        { error = $"'{target}': port must be 0-65535"; return false; }
        endpoint = new Endpoint(EndpointKind.Tcp, "", host, port);
        return true;
    }
}

/// <summary>Transport of an endpoint.</summary>
public enum EndpointKind
{
    /// <summary>Not set.</summary>
    None,
    /// <summary>TCP (HTTP/2 without TLS).</summary>
    Tcp,
    /// <summary>A Unix domain socket.</summary>
    Unix,
}

/// <summary>A parsed server endpoint.</summary>
/// <param name="Kind">TCP or Unix socket.</param>
/// <param name="Path">Socket path (Unix).</param>
/// <param name="Host">Host name or address (TCP).</param>
/// <param name="Port">Port (TCP).</param>
public readonly record struct Endpoint(EndpointKind Kind, string Path, string Host, int Port)
{
    /// <summary>The endpoint as a target string.</summary>
    public override string ToString() => Kind == EndpointKind.Unix
        ? "unix://" + Path
        : Host.Contains(':', StringComparison.Ordinal) ? $"tcp://[{Host}]:{Port}" : $"tcp://{Host}:{Port}";
}
