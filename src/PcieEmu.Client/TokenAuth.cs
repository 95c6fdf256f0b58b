namespace PcieEmu.Client;

/// <summary>
/// The TCP bearer token on the client side: where a client finds it and how it is sent
/// (gRPC metadata <c>authorization: Bearer &lt;token&gt;</c>, on TCP only; a Unix socket needs none).
/// </summary>
public static class TokenAuth
{
    /// <summary>The metadata key the token travels in.</summary>
    public const string MetadataKey = "authorization";

    /// <summary>The scheme before the token in the metadata value.</summary>
    public const string Scheme = "Bearer";

    /// <summary>
    /// The token a client sends, first found of: <paramref name="token"/>, the file
    /// <paramref name="tokenFile"/> (an error when it cannot be read), $PCIEEMU_TOKEN, the default
    /// token file (<see cref="Endpoints.DefaultTokenPath"/>) when it exists and is readable.
    /// Null when there is none (the server then answers UNAUTHENTICATED on TCP).
    /// </summary>
    public static string? Resolve(string? token = null, string? tokenFile = null)
    {
        if (!string.IsNullOrWhiteSpace(token)) return token.Trim();
        if (!string.IsNullOrEmpty(tokenFile))
        {
            string text;
            try
            {
                text = File.ReadAllText(tokenFile).Trim();
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new IOException($"token file '{tokenFile}': {ex.Message}", ex);
            }
            if (text.Length == 0) throw new IOException($"token file '{tokenFile}' is empty");
            return text;
        }
        if (Environment.GetEnvironmentVariable(Endpoints.TokenVariable) is { } env && !string.IsNullOrWhiteSpace(env)) return env.Trim();
        try
        {
            string text = File.ReadAllText(Endpoints.DefaultTokenPath()).Trim();
            return text.Length > 0 ? text : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>
    /// A one-line hint for an UNAUTHENTICATED answer: where this client looked for a token.
    /// </summary>
    public static string Hint() =>
        $"the server wants a token on TCP: set ${Endpoints.TokenVariable}, pass a token file, or make {Endpoints.DefaultTokenPath()} (written by the server) readable; a Unix socket needs none";
}
