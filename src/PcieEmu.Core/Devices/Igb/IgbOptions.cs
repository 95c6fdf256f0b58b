namespace PcieEmu.Core.Devices.Igb;

/// <summary>Options of the emulated Intel 82576 dual-port SR-IOV NIC.</summary>
public sealed record IgbOptions
{
    /// <summary>Physical functions (ports), 1 or 2.</summary>
    public int PhysicalFunctions { get; init; } = 2;
    /// <summary>TotalVFs (and InitialVFs) per PF, 1-128. The real part has 8.</summary>
    public int TotalVfs { get; init; } = 8;
    /// <summary>First VF Offset with ARI Capable Hierarchy clear (real part: 0x180).</summary>
    public int FirstVfOffset { get; init; } = 0x180;
    /// <summary>First VF Offset with ARI Capable Hierarchy set (real part: 0x80).</summary>
    public int FirstVfOffsetAri { get; init; } = 0x80;
    /// <summary>VF Stride (real part: 2, so the two PFs' VFs interleave).</summary>
    public int VfStride { get; init; } = 2;
    /// <summary>Device serial number of PF0 (an EUI-64 from the MAC); PF n uses this + n.</summary>
    public ulong SerialNumber { get; init; } = 0x001B_21FF_FF2B_46E0;

    /// <summary>Checks the values; throws naming the bad one.</summary>
    public void Validate()
    {
        if (PhysicalFunctions is < 1 or > 2) throw new ArgumentException("PhysicalFunctions must be 1 or 2", nameof(PhysicalFunctions));
        if (TotalVfs is < 1 or > 128) throw new ArgumentException("TotalVfs must be in 1..128", nameof(TotalVfs));
        if (FirstVfOffset is < 1 or > 0xFFFF) throw new ArgumentException("FirstVfOffset must be in 1..0xFFFF", nameof(FirstVfOffset));
        if (FirstVfOffsetAri is < 1 or > 0xFFFF) throw new ArgumentException("FirstVfOffsetAri must be in 1..0xFFFF", nameof(FirstVfOffsetAri));
        if (VfStride is < 1 or > 0xFF) throw new ArgumentException("VfStride must be in 1..255", nameof(VfStride));
    }
}
