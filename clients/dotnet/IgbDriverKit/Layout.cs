namespace PcieEmu.Drivers;

/// <summary>
/// Where the example drivers put things in the machine's RAM, known to both programs.
/// VF n's rings and buffers live in an 8 MiB area at <see cref="DefaultRamBase"/>(n). With
/// <c>--iommu</c> the PF driver (the host, which owns the VT-d unit) maps that area for VF n's
/// routing ID at IOVA [<see cref="DefaultIovaBase"/>, + <see cref="RamAreaSize"/>), like a VM's
/// guest-physical space (every VF sees its area at the same IOVA); the VF driver is told the same
/// window with its own <c>--iommu</c> (and <c>--iova-base</c> if not the default).
/// </summary>
public static class Layout
{
    /// <summary>Size of each VF's RAM area (and of its IOVA window).</summary>
    public const ulong RamAreaSize = 0x0080_0000;
    /// <summary>IOVA of the start of a VF's area when the IOMMU translates (4 GiB: not a physical RAM address here, and TDBAH/RDBAH are not 0).</summary>
    public const ulong DefaultIovaBase = 0x1_0000_0000;
    /// <summary>The PF driver's VT-d tables (root, context and page tables): [8 MiB, 12 MiB).</summary>
    public const ulong IommuTableBase = 0x0080_0000, IommuTableSize = 0x0040_0000;

    /// <summary>Physical start of VF <paramref name="vf"/>'s area: 16 MiB + n · 8 MiB.</summary>
    public static ulong DefaultRamBase(int vf) => 0x0100_0000UL + (ulong)vf * RamAreaSize;
}
