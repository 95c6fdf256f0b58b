namespace PcieEmu.Core.Memory;

/// <summary>
/// A memory that a function's DMA targets instead of the machine's RAM behind the remapping unit,
/// for example the memory of a virtual machine the function is assigned to (its addresses are that
/// machine's guest-physical addresses). <see cref="DmaPort"/> still checks Bus Master Enable and
/// records completions; the memory only moves bytes.
/// <para>
/// Implementations are called under the machine lock (device work runs there) and must not call
/// back into the machine. An address the memory does not back completes as
/// <see cref="DmaStatus.UnsupportedRequest"/> with the bytes moved before it; a fault never throws.
/// </para>
/// </summary>
public interface IDmaMemory
{
    /// <summary>Reads <paramref name="destination"/>.Length bytes at device address <paramref name="address"/>.</summary>
    DmaResult Read(ulong address, Span<byte> destination);

    /// <summary>Writes <paramref name="source"/> at device address <paramref name="address"/>.</summary>
    DmaResult Write(ulong address, ReadOnlySpan<byte> source);
}
