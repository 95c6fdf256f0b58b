namespace PcieEmu.Core.AddressSpace;

/// <summary>
/// Something that completes memory (or I/O) requests at offsets inside a decoded window:
/// a BAR's register file, the IOMMU's registers, an MSI-X table. Accesses are 1, 2, 4 or 8
/// bytes, naturally aligned, already validated by the caller. Offsets the file does not
/// implement read 0 and ignore writes.
/// </summary>
public interface IMmioRegion
{
    /// <summary>Reads <paramref name="width"/> bytes (little-endian) at <paramref name="offset"/>.</summary>
    ulong Read(ulong offset, int width);

    /// <summary>Writes <paramref name="width"/> bytes (little-endian) at <paramref name="offset"/>.</summary>
    void Write(ulong offset, int width, ulong value);
}

/// <summary>A region whose offsets have register names (for decoding transactions).</summary>
public interface INamedRegion
{
    /// <summary>Name of the register at <paramref name="offset"/>, or null.</summary>
    string? RegisterNameAt(ulong offset);
}

/// <summary>A register file with nothing implemented: reads 0, ignores writes.</summary>
public sealed class EmptyRegion : IMmioRegion
{
    /// <summary>The shared instance.</summary>
    public static readonly EmptyRegion Instance = new();
    private EmptyRegion() { }
    /// <inheritdoc/>
    public ulong Read(ulong offset, int width) => 0;
    /// <inheritdoc/>
    public void Write(ulong offset, int width, ulong value) { }
}

/// <summary>Outcome of a request on the fabric (PCIe Base §2.2.9 completion status).</summary>
public enum CompletionStatus
{
    /// <summary>Not set.</summary>
    Unspecified = 0,
    /// <summary>Successful Completion (SC).</summary>
    Successful = 1,
    /// <summary>Unsupported Request (UR): nothing claimed it; reads return all ones.</summary>
    UnsupportedRequest = 2,
    /// <summary>Completer Abort (CA).</summary>
    CompleterAbort = 3,
    /// <summary>Configuration Request Retry Status (CRS).</summary>
    ConfigurationRetry = 4,
}

/// <summary>A completed read: its status and value (all ones on UR, per width).</summary>
public readonly record struct ReadResult(CompletionStatus Status, ulong Value)
{
    /// <summary>An Unsupported Request completion of the given width.</summary>
    public static ReadResult Unsupported(int width) =>
        new(CompletionStatus.UnsupportedRequest, width == 8 ? ulong.MaxValue : (1UL << (8 * width)) - 1);
}
