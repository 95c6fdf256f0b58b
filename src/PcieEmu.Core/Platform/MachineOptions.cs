using PcieEmu.Core.Devices;

namespace PcieEmu.Core.Platform;

/// <summary>Everything that describes a machine. The defaults are the embedded default machine.</summary>
public sealed record MachineOptions
{
    /// <summary>RAM size in bytes (multiple of 4 KiB, at most 3 GiB so it stays below the MMIO hole). Default 256 MiB.</summary>
    public ulong RamSize { get; init; } = 256UL << 20;
    /// <summary>Path of the RAM file; null picks one under $XDG_RUNTIME_DIR or /tmp.</summary>
    public string? RamFilePath { get; init; }
    /// <summary>Keep the RAM file when the machine is disposed.</summary>
    public bool KeepRamFile { get; init; }
    /// <summary>Run firmware enumeration at start and after a platform reset.</summary>
    public bool FirmwareEnumeration { get; init; } = true;
    /// <summary>Root ports, switches and devices (docs/machine.md); null is <see cref="MachineDescription.Default"/>.</summary>
    public MachineDescription? Description { get; init; }
    /// <summary>Device types the description may name; null is <see cref="DeviceRegistry.Default"/>.</summary>
    public DeviceRegistry? Devices { get; init; }
    /// <summary>Base of the VT-d register block.</summary>
    public ulong IommuBase { get; init; } = 0xFED9_0000;
    /// <summary>Start of the window firmware assigns 32-bit MMIO BARs from.</summary>
    public ulong MmioWindowBase { get; init; } = 0xE000_0000;

    /// <summary>Largest RAM size accepted.</summary>
    public const ulong MaxRamSize = 3UL << 30;

    /// <summary>The description the machine is built from.</summary>
    public MachineDescription EffectiveDescription => Description ?? MachineDescription.Default;
    /// <summary>The device registry the machine is built with.</summary>
    public DeviceRegistry EffectiveDevices => Devices ?? DeviceRegistry.Default;

    /// <summary>Checks every value; throws <see cref="ArgumentException"/> naming the bad one, or
    /// <see cref="MachineDescriptionException"/> naming the description's offending entry.</summary>
    public void Validate()
    {
        if (RamSize == 0 || RamSize % 4096 != 0 || RamSize > MaxRamSize)
            throw new ArgumentException($"RamSize must be a non-zero multiple of 4096 up to {MaxRamSize} (was {RamSize})", nameof(RamSize));
        if (MmioWindowBase < RamSize || MmioWindowBase >= 0xFE00_0000 || MmioWindowBase % (1 << 20) != 0)
            throw new ArgumentException("MmioWindowBase must be 1 MiB aligned, above RAM and below 0xFE000000", nameof(MmioWindowBase));
        if (IommuBase % 4096 != 0 || IommuBase < MmioWindowBase)
            throw new ArgumentException("IommuBase must be 4 KiB aligned and above the MMIO window base", nameof(IommuBase));
        EffectiveDescription.Validate(EffectiveDevices);
    }
}
