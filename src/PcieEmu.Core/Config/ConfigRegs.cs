#pragma warning disable CS1591 // register offset constants: names are the spec names

namespace PcieEmu.Core.Config;

/// <summary>Header register offsets and bits (PCI Local Bus 3.0 §6.1, PCIe Base §7.5.1).</summary>
public static class ConfigRegs
{
    public const int VendorId = 0x00, DeviceId = 0x02, Command = 0x04, Status = 0x06;
    public const int RevisionId = 0x08, ClassCode = 0x09, CacheLineSize = 0x0C, LatencyTimer = 0x0D;
    public const int HeaderType = 0x0E, Bist = 0x0F, Bar0 = 0x10;
    public const int CardbusCis = 0x28, SubsystemVendorId = 0x2C, SubsystemId = 0x2E;
    public const int ExpansionRom = 0x30, CapabilitiesPointer = 0x34;
    public const int InterruptLine = 0x3C, InterruptPin = 0x3D, MinGnt = 0x3E, MaxLat = 0x3F;

    // Type 1 (bridge) header.
    public const int PrimaryBus = 0x18, SecondaryBus = 0x19, SubordinateBus = 0x1A, SecondaryLatency = 0x1B;
    public const int IoBase = 0x1C, IoLimit = 0x1D, SecondaryStatus = 0x1E;
    public const int MemoryBase = 0x20, MemoryLimit = 0x22;
    public const int PrefMemoryBase = 0x24, PrefMemoryLimit = 0x26, PrefBaseUpper = 0x28, PrefLimitUpper = 0x2C;
    public const int IoBaseUpper = 0x30, IoLimitUpper = 0x32, BridgeRom = 0x38, BridgeControl = 0x3E;

    public const ushort CmdIoSpace = 1 << 0, CmdMemorySpace = 1 << 1, CmdBusMaster = 1 << 2;
    public const ushort CmdParityErrorResponse = 1 << 6, CmdSerrEnable = 1 << 8, CmdInterruptDisable = 1 << 10;
    /// <summary>Command bits that are RW on a PCIe function (bits 3, 4, 5, 7, 9 are RO 0 on PCIe).</summary>
    public const ushort CommandWritable = CmdIoSpace | CmdMemorySpace | CmdBusMaster | CmdParityErrorResponse | CmdSerrEnable | CmdInterruptDisable;

    public const ushort StatusInterrupt = 1 << 3, StatusCapList = 1 << 4;
    /// <summary>Status RW1C bits: 8 Master Data Parity Error, 11 Signaled Target Abort,
    /// 12 Received Target Abort, 13 Received Master Abort, 14 Signaled System Error, 15 Detected Parity Error.</summary>
    public const ushort StatusW1c = 0xF900;
    public const ushort StatusReceivedMasterAbort = 1 << 13, StatusReceivedTargetAbort = 1 << 12, StatusSignaledTargetAbort = 1 << 11;

    /// <summary>Bridge Control RW bits on a PCIe port: 0 Parity Error Response, 1 SERR#, 2 ISA, 3 VGA, 4 VGA 16-bit, 6 Secondary Bus Reset.</summary>
    public const ushort BridgeControlWritable = 0x005F;
    public const ushort BridgeControlSecondaryBusReset = 1 << 6;
}
