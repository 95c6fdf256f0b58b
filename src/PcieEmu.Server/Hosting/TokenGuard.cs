using System.Net;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using PcieEmu.Client;
using Endpoint = PcieEmu.Client.Endpoint;

namespace PcieEmu.Server.Hosting;

/// <summary>
/// TCP authentication of the server: a random token per start, written 0600 to the token file,
/// and a middleware in front of every gRPC method (health and reflection included) that answers
/// UNAUTHENTICATED to a TCP request without <c>authorization: Bearer &lt;token&gt;</c>. Requests on
/// a Unix socket pass (the socket's mode is the guard). The token never comes from the command
/// line or the environment: it is random at each start, and clients read it from the file.
/// </summary>
public sealed class TokenGuard
{
    /// <summary>Bytes of randomness in a token (written as 64 lowercase hex digits).</summary>
    public const int TokenBytes = 32;

    private readonly byte[]? _expected;   // "Bearer <token>" in UTF-8; null = TCP auth off

    private readonly bool _disabled;      // --tcp-auth none
    private readonly bool _createDirectory;   // the default runtime directory may not exist yet

    private TokenGuard(string? token, string? tokenFile, bool disabled, bool createDirectory = false)
    {
        _createDirectory = createDirectory;
        _expected = token == null ? null : Encoding.UTF8.GetBytes($"{TokenAuth.Scheme} {token}");
        TokenFile = tokenFile;
        _disabled = disabled;
    }

    /// <summary>Where the token was written (null when no file was written: no TCP endpoint, or auth off).</summary>
    public string? TokenFile { get; }

    /// <summary>Whether TCP requests need the token.</summary>
    public bool Enabled => _expected != null;

    /// <summary>The token (null when auth is off): the web view prints it in its URL, as the token file holds it.</summary>
    internal string? Token => _expected == null ? null : Encoding.ASCII.GetString(_expected.AsSpan(TokenAuth.Scheme.Length + 1));

    /// <summary>Whether <paramref name="candidate"/> is the token (constant time for a given length); false when auth is off.</summary>
    internal bool Matches(string? candidate)
    {
        if (_expected == null || candidate == null) return false;
        return CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(candidate.Trim()), _expected.AsSpan(TokenAuth.Scheme.Length + 1));
    }

    /// <summary>Whether <paramref name="header"/> is "Bearer &lt;token&gt;".</summary>
    internal bool MatchesHeader(Microsoft.Extensions.Primitives.StringValues header) => _expected != null && Authorized(header);

    /// <summary>
    /// Creates the guard for <paramref name="endpoints"/>: with auth on and at least one TCP
    /// endpoint, makes a token (written to the token file by <see cref="Attach"/>); with auth off
    /// or no TCP endpoint, no token and no file. Checks the token file's directory now.
    /// </summary>
    public static TokenGuard Create(ServeSettings settings, IReadOnlyList<Endpoint> endpoints, bool webView = false)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(endpoints);
        if (settings.TcpAuth == TcpAuthMode.None) return new TokenGuard(null, null, disabled: true);
        if (!webView && !endpoints.Any(e => e.Kind == EndpointKind.Tcp)) return new TokenGuard(null, null, disabled: false);
        string token = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(TokenBytes));
        string path = Path.GetFullPath(settings.TokenFile ?? Endpoints.DefaultTokenPath());
        if (settings.TokenFile != null && !Directory.Exists(Path.GetDirectoryName(path)))
            throw new ServeConfigurationException($"--token-file: directory '{Path.GetDirectoryName(path)}' does not exist");
        if (Directory.Exists(path)) throw new ServeConfigurationException($"--token-file: '{path}' is a directory");
        return new TokenGuard(token, path, disabled: false, createDirectory: settings.TokenFile == null);
    }

    /// <summary>
    /// Writes <paramref name="token"/> to <paramref name="path"/> atomically: a new temp file in the
    /// same directory created 0600 (never wider, not even for an instant), then renamed over the path.
    /// </summary>
    internal static void WriteTokenFile(string path, string token, bool createDirectory)
    {
        string dir = Path.GetDirectoryName(path) ?? throw new ServeConfigurationException($"--token-file: '{path}' has no directory");
        if (!Directory.Exists(dir))
        {
            if (!createDirectory) throw new ServeConfigurationException($"--token-file: directory '{dir}' does not exist");
            if (OperatingSystem.IsWindows()) Directory.CreateDirectory(dir);
            else Directory.CreateDirectory(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
        if (Directory.Exists(path)) throw new ServeConfigurationException($"--token-file: '{path}' is a directory");
        string temp = Path.Combine(dir, $".{Path.GetFileName(path)}.{Environment.ProcessId}.{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6))}.tmp");
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        try
        {
            using (var stream = new FileStream(temp, options))
            {
                stream.Write(Encoding.ASCII.GetBytes(token + "\n"));
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, path, overwrite: true);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            try { File.Delete(temp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw new ServeConfigurationException($"--token-file: cannot write '{path}': {ex.Message}");
        }
    }

    /// <summary>
    /// Writes the token file, logs the posture, puts the check in front of every endpoint of
    /// <paramref name="app"/> (middleware runs before endpoint execution wherever it is added)
    /// and removes the token file at exit (only while it still holds this start's token).
    /// Call it last in building the server so a failed build leaves no token file.
    /// </summary>
    public void Attach(WebApplication app, ILogger logger, IHostApplicationLifetime lifetime)
    {
        if (_expected == null)
        {
            if (_disabled) AuthLog.TcpAuthDisabled(logger);
            return;
        }
        string token = Encoding.ASCII.GetString(_expected.AsSpan(TokenAuth.Scheme.Length + 1));
        WriteTokenFile(TokenFile!, token, _createDirectory);
        AuthLog.TcpAuthEnabled(logger, TokenFile!);
        app.Use(async (context, next) =>
        {
            if (IsUnixSocket(context) || Authorized(context.Request.Headers.Authorization))
            {
                await next(context).ConfigureAwait(false);
                return;
            }
            if (logger.IsEnabled(LogLevel.Debug))
            {
                string peer = context.Connection.RemoteIpAddress?.ToString() ?? "?";
                AuthLog.Unauthenticated(logger, context.Request.Path.Value ?? "", peer);
            }
            Reject(context);
        });
        lifetime.ApplicationStopped.Register(RemoveTokenFile);
    }

    private static readonly object UnixKey = new();

    /// <summary>
    /// Marks every connection accepted by <paramref name="listener"/> (a Unix socket listener) as
    /// needing no token. Only marked connections pass without one: anything else is treated as TCP.
    /// </summary>
    public static void MarkUnixListener(ListenOptions listener) => ListenerMark.Mark(listener, UnixKey);

    private static bool IsUnixSocket(HttpContext context) => ListenerMark.Has(context, UnixKey);

    /// <summary>Compares the header with "Bearer &lt;token&gt;" in constant time (for a given length).</summary>
    private bool Authorized(Microsoft.Extensions.Primitives.StringValues header)
    {
        if (header.Count != 1 || header[0] is not { } value) return false;
        byte[] got = Encoding.UTF8.GetBytes(value.Trim());
        return CryptographicOperations.FixedTimeEquals(got, _expected);
    }

    /// <summary>A gRPC trailers-only answer UNAUTHENTICATED (HTTP 401 for a non-gRPC request); nothing is read or run.</summary>
    private static void Reject(HttpContext context)
    {
        var response = context.Response;
        string? contentType = context.Request.ContentType;
        if (contentType != null && contentType.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase))
        {
            response.StatusCode = (int)HttpStatusCode.OK;
            response.ContentType = "application/grpc";
            response.Headers["grpc-status"] = "16";
            // Printable ASCII without '%': nothing to percent-encode.
            response.Headers["grpc-message"] =
                $"missing or wrong token: TCP needs metadata '{TokenAuth.MetadataKey}: {TokenAuth.Scheme} <token>' (the token is in the server's token file; ${Endpoints.TokenVariable} or the token file on the client)";
        }
        else
        {
            response.StatusCode = (int)HttpStatusCode.Unauthorized;
            response.Headers.WWWAuthenticate = TokenAuth.Scheme;
        }
    }

    private void RemoveTokenFile()
    {
        if (TokenFile == null) return;
        try
        {
            // Another server may have been started with the same token file since: leave its token.
            byte[] ours = _expected.AsSpan(TokenAuth.Scheme.Length + 1).ToArray();
            byte[] there = Encoding.ASCII.GetBytes(File.ReadAllText(TokenFile).Trim());
            if (CryptographicOperations.FixedTimeEquals(ours, there)) File.Delete(TokenFile);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}

/// <summary>Whether TCP endpoints need the token (<c>--tcp-auth</c>).</summary>
public enum TcpAuthMode
{
    /// <summary>Every TCP request needs <c>authorization: Bearer &lt;token&gt;</c> (the default).</summary>
    Token,
    /// <summary>No authentication on TCP (explicit <c>--tcp-auth none</c>; logged as a warning).</summary>
    None,
}

internal static partial class AuthLog
{
    [LoggerMessage(EventId = 40, Level = LogLevel.Information, Message = "TCP needs a token (authorization: Bearer); token file: {TokenFile}")]
    public static partial void TcpAuthEnabled(ILogger logger, string tokenFile);

    [LoggerMessage(EventId = 41, Level = LogLevel.Warning, Message = "TCP authentication is OFF (--tcp-auth none): anyone who can reach a TCP endpoint can read and write guest RAM and drive the machine")]
    public static partial void TcpAuthDisabled(ILogger logger);

    [LoggerMessage(EventId = 42, Level = LogLevel.Debug, Message = "Rejected {Path} from {Peer}: missing or wrong token")]
    public static partial void Unauthenticated(ILogger logger, string path, string peer);
}
