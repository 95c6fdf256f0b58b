using System.Globalization;

namespace PcieEmu.Core.Devices.Igb;

/// <summary>Options of the emulated Intel 82576 dual-port SR-IOV NIC (device type "intel-82576").</summary>
public sealed record IgbOptions : IDeviceOptions
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
    /// <summary>The NVM's LAN0 MAC address ("02:00:00:00:10:00"), port 0's; port 1 has bit 0 of the last
    /// byte inverted. When set it replaces <see cref="SerialNumber"/> (the DSN is its EUI-64 form).</summary>
    public string? Mac { get; init; }

    /// <summary>The device serial number of PF0: from <see cref="Mac"/> when set, else <see cref="SerialNumber"/>.</summary>
    public ulong EffectiveSerialNumber
    {
        get
        {
            if (Mac is null) return SerialNumber;
            ulong mac = ParseMac(Mac) ?? throw new InvalidOperationException($"Mac '{Mac}' is not a unicast MAC address");
            return (mac & 0xFFFF_FF00_0000UL) << 16 | 0xFF_FF00_0000UL | (mac & 0xFF_FFFF);
        }
    }

    /// <summary>Parses six colon-separated hex bytes of a unicast MAC; null when <paramref name="text"/> is not one.</summary>
    public static ulong? ParseMac(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var parts = text.Split(':');
        ulong v = 0;
        if (parts.Length != 6) return null;
        foreach (var p in parts)
        {
            if (p.Length != 2 || !byte.TryParse(p, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out byte b)) return null;
            v = v << 8 | b;
        }
        return (v >> 40 & 1) != 0 ? null : v;
    }

    /// <summary>Checks the values; throws naming the bad one.</summary>
    public void Validate()
    {
        if (PhysicalFunctions is < 1 or > 2) throw new ArgumentException("PhysicalFunctions must be 1 or 2", nameof(PhysicalFunctions));
        if (TotalVfs is < 1 or > 128) throw new ArgumentException("TotalVfs must be in 1..128", nameof(TotalVfs));
        if (FirstVfOffset is < 1 or > 0xFFFF) throw new ArgumentException("FirstVfOffset must be in 1..0xFFFF", nameof(FirstVfOffset));
        if (FirstVfOffsetAri is < 1 or > 0xFFFF) throw new ArgumentException("FirstVfOffsetAri must be in 1..0xFFFF", nameof(FirstVfOffsetAri));
        if (VfStride is < 1 or > 0xFF) throw new ArgumentException("VfStride must be in 1..255", nameof(VfStride));
        if (Mac is not null && ParseMac(Mac) is null)
            throw new ArgumentException($"Mac must be six colon-separated hex bytes of a unicast address, e.g. 02:00:00:00:10:00 (was '{Mac}')", nameof(Mac));
    }
}
