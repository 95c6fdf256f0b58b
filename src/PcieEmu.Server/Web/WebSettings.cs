using System.Net;
using PcieEmu.Client;
using PcieEmu.Server.Hosting;

namespace PcieEmu.Server.Web;

/// <summary>Where the web view listens (<c>serve --web</c>).</summary>
public static class WebSettings
{
    /// <summary>The default of <c>serve --web</c>: loopback, the port after gRPC's.</summary>
    public const string DefaultTarget = "tcp://127.0.0.1:50552";

    /// <summary>
    /// Parses <c>--web</c>: <c>off</c> (null) or <c>tcp://HOST:PORT</c> (HOST an IP address or
    /// localhost; a non-loopback one needs <paramref name="allowRemote"/>). Throws
    /// <see cref="ServeConfigurationException"/> naming the option.
    /// </summary>
    public static IPEndPoint? Parse(string? target, bool allowRemote)
    {
        if (target == null || target.Equals("off", StringComparison.OrdinalIgnoreCase)) return null;
        if (!Endpoints.TryParse(target, out var ep, out var error)) throw new ServeConfigurationException($"--web: {error} (or 'off')");
        if (ep.Kind != EndpointKind.Tcp) throw new ServeConfigurationException($"--web {target}: the web view listens on TCP only (tcp://HOST:PORT, or 'off')");
        IPAddress addr;
        if (ep.Host.Equals("localhost", StringComparison.OrdinalIgnoreCase)) addr = IPAddress.Loopback;
        else if (IPAddress.TryParse(ep.Host, out var a)) addr = a.IsIPv4MappedToIPv6 ? a.MapToIPv4() : a;
        else throw new ServeConfigurationException($"--web: '{ep.Host}' must be an IP address or localhost");
        if (!IPAddress.IsLoopback(addr) && !allowRemote)
            throw new ServeConfigurationException($"--web {target}: {ep.Host} is not a loopback address; add --allow-remote to serve the web view on it (anyone on the network who has the token sees the machine; the traffic is not encrypted)");
        return new IPEndPoint(addr, ep.Port);
    }
}
