using static PcieEmu.Core.Devices.VirtioNet.VirtioRegs;

namespace PcieEmu.Core.Devices.VirtioNet;

/// <summary>Options of a virtio-net device: its MAC address, queue pairs, offered features, queue size.</summary>
public sealed record VirtioNetOptions : IDeviceOptions
{
    /// <summary>Every feature this model implements; <see cref="Features"/> must be a subset.</summary>
    public static readonly ulong SupportedFeatures =
        Bit(FVersion1) | Bit(FMac) | Bit(FStatus) | Bit(FMrgRxbuf) | Bit(FCsum) | Bit(FCtrlVq) | Bit(FCtrlRx)
        | Bit(FCtrlMacAddr) | Bit(FMq) | Bit(FEventIdx) | Bit(FIndirectDesc) | Bit(FRingPacked);

    /// <summary>The MAC address in device config (and the unicast filter), "02:00:00:00:77:01" form.</summary>
    public string Mac { get; init; } = "02:00:00:00:77:01";
    /// <summary>Receive/transmit queue pairs (max_virtqueue_pairs), 1..16. With more than one the device offers MQ.</summary>
    public int QueuePairs { get; init; } = 1;
    /// <summary>Features the device offers (a subset of <see cref="SupportedFeatures"/>; VERSION_1 is required).
    /// MQ is dropped from the offer when <see cref="QueuePairs"/> is 1.</summary>
    public ulong Features { get; init; } = SupportedFeatures;
    /// <summary>Maximum queue size the device reports in queue_size (a power of two, 2..32768).</summary>
    public int MaxQueueSize { get; init; } = 256;
    /// <summary>The MAC as bytes.</summary>
    public byte[] MacBytes() => ParseMac();

    /// <summary>Features actually offered (MQ only with more than one pair; CTRL_VQ dependants only with CTRL_VQ).</summary>
    public ulong OfferedFeatures
    {
        get
        {
            ulong f = Features;
            if (QueuePairs == 1) f &= ~Bit(FMq);
            if ((f & Bit(FCtrlVq)) == 0) f &= ~(Bit(FCtrlRx) | Bit(FCtrlMacAddr) | Bit(FMq));
            return f;
        }
    }

    /// <summary>Checks the options; throws <see cref="ArgumentException"/> naming the bad field.</summary>
    public void Validate()
    {
        ParseMac();
        if (QueuePairs is < 1 or > 16)
            throw new ArgumentException($"QueuePairs must be 1..16 (was {QueuePairs})", nameof(QueuePairs));
        if ((Features & ~SupportedFeatures) != 0)
            throw new ArgumentException($"Features has bits this model does not implement: 0x{Features & ~SupportedFeatures:X}", nameof(Features));
        if ((Features & Bit(FVersion1)) == 0)
            throw new ArgumentException("Features must include VERSION_1 (bit 32): this is a modern-only device", nameof(Features));
        if (QueuePairs > 1 && (Features & (Bit(FMq) | Bit(FCtrlVq))) != (Bit(FMq) | Bit(FCtrlVq)))
            throw new ArgumentException("QueuePairs > 1 needs MQ and CTRL_VQ in Features", nameof(QueuePairs));
        if (MaxQueueSize is < 2 or > VirtioRegs.MaxQueueSize || (MaxQueueSize & (MaxQueueSize - 1)) != 0)
            throw new ArgumentException($"MaxQueueSize must be a power of two in 2..32768 (was {MaxQueueSize})", nameof(MaxQueueSize));
    }

    private byte[] ParseMac()
    {
        string mac = Mac;
        var parts = (mac ?? "").Split(':');
        var b = new byte[6];
        if (parts.Length != 6) throw new ArgumentException($"Mac must be six hex bytes separated by ':' (was '{mac}')", nameof(Mac));
        for (int i = 0; i < 6; i++)
            if (parts[i].Length != 2 || !byte.TryParse(parts[i], System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture, out b[i]))
                throw new ArgumentException($"Mac must be six hex bytes separated by ':' (was '{mac}')", nameof(Mac));
        if ((b[0] & 1) != 0) throw new ArgumentException($"Mac must be a unicast address (was '{mac}')", nameof(Mac));
        return b;
    }
}
