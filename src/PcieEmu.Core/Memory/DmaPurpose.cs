using System.Globalization;
using System.Text;

namespace PcieEmu.Core.Memory;

/// <summary>What a device reads or writes with a DMA (the structure in memory it touches).</summary>
public enum DmaUse : byte
{
    /// <summary>Not said (a DMA engine's plain transfer).</summary>
    None,
    /// <summary>82576: transmit descriptor fetch.</summary>
    TxDescriptor,
    /// <summary>82576: transmit packet buffer read.</summary>
    TxBuffer,
    /// <summary>82576: transmit descriptor write-back (DD).</summary>
    TxWriteBack,
    /// <summary>82576: transmit head write-back (TDWBAL/TDWBAH).</summary>
    TxHeadWriteBack,
    /// <summary>82576: receive descriptor fetch.</summary>
    RxDescriptor,
    /// <summary>82576: receive packet buffer write.</summary>
    RxBuffer,
    /// <summary>82576: receive descriptor write-back.</summary>
    RxWriteBack,
    /// <summary>virtio: descriptor table (split) or descriptor ring (packed) read.</summary>
    VirtqDescriptor,
    /// <summary>virtio: indirect descriptor table read.</summary>
    VirtqIndirect,
    /// <summary>virtio: available ring (split: flags, idx, ring entries, used_event).</summary>
    VirtqAvail,
    /// <summary>virtio: used ring (split: elements, idx, avail_event) or used descriptors (packed).</summary>
    VirtqUsed,
    /// <summary>virtio: packed ring event suppression area (driver or device).</summary>
    VirtqEventSuppression,
    /// <summary>virtio: buffer a descriptor points to.</summary>
    VirtqBuffer,
}

/// <summary>
/// Why a device made a DMA: the structure (<see cref="Use"/>), the queue and the descriptor or
/// ring index. A small value passed down to the DMA port and kept on the DMA event; it is turned
/// into text only when a trace line is printed (<see cref="AppendTo"/>).
/// </summary>
/// <param name="Use">The structure.</param>
/// <param name="Queue">Queue number (82576: the PF queue index; virtio: the virtqueue index).</param>
/// <param name="Index">Descriptor or ring index, or <see cref="NoIndex"/>.</param>
public readonly record struct DmaPurpose(DmaUse Use, ushort Queue, uint Index = DmaPurpose.NoIndex)
{
    /// <summary>No descriptor or ring index.</summary>
    public const uint NoIndex = uint.MaxValue;

    /// <summary>True when the purpose was given.</summary>
    public bool IsKnown => Use != DmaUse.None;

    /// <summary>Appends the purpose (e.g. "TX q0 desc 7", "RX q1 buffer, desc 3", "vq0 used ring [5]");
    /// <paramref name="length"/> (bytes of the DMA) turns a descriptor fetch of several descriptors into a range.</summary>
    public StringBuilder AppendTo(StringBuilder sb, int length)
    {
        ArgumentNullException.ThrowIfNull(sb);
        var ic = CultureInfo.InvariantCulture;
        switch (Use)
        {
            case DmaUse.TxDescriptor: return Descriptors(sb.Append(ic, $"TX q{Queue} desc "), length);
            case DmaUse.TxBuffer: return sb.Append(ic, $"TX q{Queue} buffer, desc {Index}");
            case DmaUse.TxWriteBack: return sb.Append(ic, $"TX q{Queue} desc {Index} write-back");
            case DmaUse.TxHeadWriteBack: return sb.Append(ic, $"TX q{Queue} head write-back");
            case DmaUse.RxDescriptor: return Descriptors(sb.Append(ic, $"RX q{Queue} desc "), length);
            case DmaUse.RxBuffer: return sb.Append(ic, $"RX q{Queue} buffer, desc {Index}");
            case DmaUse.RxWriteBack: return sb.Append(ic, $"RX q{Queue} desc {Index} write-back");
            case DmaUse.VirtqDescriptor: return Index == NoIndex ? sb.Append(ic, $"vq{Queue} desc") : sb.Append(ic, $"vq{Queue} desc {Index}");
            case DmaUse.VirtqIndirect: return sb.Append(ic, $"vq{Queue} indirect table");
            case DmaUse.VirtqAvail: return Indexed(sb.Append(ic, $"vq{Queue} avail ring"));
            case DmaUse.VirtqUsed: return Indexed(sb.Append(ic, $"vq{Queue} used ring"));
            case DmaUse.VirtqEventSuppression: return sb.Append(ic, $"vq{Queue} event suppression");
            case DmaUse.VirtqBuffer: return sb.Append(ic, $"vq{Queue} buffer");
            default: return sb;
        }
    }

    /// <inheritdoc/>
    public override string ToString() => AppendTo(new StringBuilder(), 0).ToString();

    // A fetch of n 16-byte descriptors from Index: "7" or "7-10".
    private StringBuilder Descriptors(StringBuilder sb, int length)
    {
        sb.Append(Index.ToString(CultureInfo.InvariantCulture));
        int n = length / 16;
        if (n > 1) sb.Append('-').Append((Index + (uint)n - 1).ToString(CultureInfo.InvariantCulture));
        return sb;
    }

    private StringBuilder Indexed(StringBuilder sb) =>
        Index == NoIndex ? sb : sb.Append(' ').Append('[').Append(Index.ToString(CultureInfo.InvariantCulture)).Append(']');
}
