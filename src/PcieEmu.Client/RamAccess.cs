namespace PcieEmu.Client;

/// <summary>
/// RAM access that uses the mapped RAM file when client and server share a host and the memory
/// RPCs otherwise (see <see cref="PcieEmuClient.OpenRamAsync"/>). Addresses are physical;
/// an access outside the mapped region goes over RPC too.
/// </summary>
public sealed class RamAccess : IDisposable
{
    private readonly PcieEmuClient _client;

    internal RamAccess(PcieEmuClient client, RamMapping? mapping)
    {
        _client = client;
        Mapping = mapping;
    }

    /// <summary>The mapping in use, or null when every access goes over RPC.</summary>
    public RamMapping? Mapping { get; }

    /// <summary>Whether accesses go to the mapped RAM file (true) or over RPC (false).</summary>
    public bool Mapped => Mapping != null;

    /// <summary>Reads <paramref name="length"/> bytes at physical <paramref name="address"/>.</summary>
    public async Task<byte[]> ReadAsync(ulong address, int length, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (Covers(address, length)) return Mapping!.GetSpan(address, length).ToArray();
        return await _client.ReadMemoryAsync(address, length, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Writes <paramref name="data"/> at physical <paramref name="address"/>.</summary>
    public async Task WriteAsync(ulong address, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
    {
        if (Covers(address, data.Length))
        {
            data.Span.CopyTo(Mapping!.GetSpan(address, data.Length));
            return;
        }
        await _client.WriteMemoryAsync(address, data, cancellationToken).ConfigureAwait(false);
    }

    private bool Covers(ulong address, int length) =>
        Mapping is { } m && address >= m.Base && (ulong)length <= m.Size && address - m.Base <= m.Size - (ulong)length;

    /// <summary>Unmaps the RAM file (if mapped).</summary>
    public void Dispose() => Mapping?.Dispose();
}

public sealed partial class PcieEmuClient
{
    /// <summary>
    /// RAM access with RPC fallback: maps the machine's RAM file when it is reachable from this
    /// process (same host, readable), else uses <see cref="ReadMemoryAsync"/> /
    /// <see cref="WriteMemoryAsync"/>. <paramref name="preferRpc"/> skips the mapping.
    /// </summary>
    public async Task<RamAccess> OpenRamAsync(bool preferRpc = false, CancellationToken cancellationToken = default)
    {
        if (preferRpc) return new RamAccess(this, null);
        var platform = await GetPlatformAsync(cancellationToken).ConfigureAwait(false);
        var region = platform.RamRegions.FirstOrDefault(r => r.SharedFilePath.Length > 0);
        if (region == null || !File.Exists(region.SharedFilePath)) return new RamAccess(this, null);
        try
        {
            return new RamAccess(this, new RamMapping(region.SharedFilePath, region.Base, region.Size));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return new RamAccess(this, null);
        }
    }
}
