using PcieEmu.Core.Config;

namespace PcieEmu.Core.Topology;

/// <summary>Identity fields of a function's header.</summary>
public sealed record HeaderIds(ushort VendorId, ushort DeviceId, byte Revision, uint ClassCode,
    ushort SubsystemVendorId = 0, ushort SubsystemId = 0);

/// <summary>Installs type 0 and type 1 headers with the access type of every register
/// (PCI 3.0 §6.1-6.2, PCI-to-PCI Bridge 1.2 §3.2, PCIe Base §7.5.1).</summary>
public static class Header
{
    /// <summary>Installs a type 0 header.</summary>
    public static void InstallType0(ConfigSpace cs, HeaderIds ids, bool multiFunction, byte interruptPin,
        IEnumerable<BarDefinition> bars)
    {
        InstallCommon(cs, ids, headerType: (byte)(multiFunction ? 0x80 : 0x00), interruptPin);
        cs.SetWritable(ConfigRegs.CacheLineSize, 1, 0xFF);   // RW, no effect on PCIe
        cs.Init(ConfigRegs.SubsystemVendorId, 2, ids.SubsystemVendorId);
        cs.Init(ConfigRegs.SubsystemId, 2, ids.SubsystemId);
        foreach (var bar in bars) bar.Install(cs);
    }

    /// <summary>Installs a type 1 (bridge / root port) header with 32-bit I/O and 64-bit prefetchable windows.</summary>
    public static void InstallType1(ConfigSpace cs, HeaderIds ids, byte interruptPin)
    {
        InstallCommon(cs, ids, headerType: 0x01, interruptPin);
        cs.SetWritable(ConfigRegs.CacheLineSize, 1, 0xFF);
        cs.SetWritable(ConfigRegs.PrimaryBus, 1, 0xFF);
        cs.SetWritable(ConfigRegs.SecondaryBus, 1, 0xFF);
        cs.SetWritable(ConfigRegs.SubordinateBus, 1, 0xFF);
        // Secondary Latency Timer: RO 0 on PCIe.
        cs.Init(ConfigRegs.IoBase, 1, 0x01);                 // 32-bit I/O addressing
        cs.Init(ConfigRegs.IoLimit, 1, 0x01);
        cs.SetWritable(ConfigRegs.IoBase, 1, 0xF0);
        cs.SetWritable(ConfigRegs.IoLimit, 1, 0xF0);
        cs.SetW1c(ConfigRegs.SecondaryStatus, 2, ConfigRegs.StatusW1c);
        cs.SetWritable(ConfigRegs.MemoryBase, 2, 0xFFF0);
        cs.SetWritable(ConfigRegs.MemoryLimit, 2, 0xFFF0);
        cs.Init(ConfigRegs.PrefMemoryBase, 2, 0x0001);        // 64-bit prefetchable
        cs.Init(ConfigRegs.PrefMemoryLimit, 2, 0x0001);
        cs.SetWritable(ConfigRegs.PrefMemoryBase, 2, 0xFFF0);
        cs.SetWritable(ConfigRegs.PrefMemoryLimit, 2, 0xFFF0);
        cs.SetWritable(ConfigRegs.PrefBaseUpper, 4, 0xFFFF_FFFF);
        cs.SetWritable(ConfigRegs.PrefLimitUpper, 4, 0xFFFF_FFFF);
        cs.SetWritable(ConfigRegs.IoBaseUpper, 2, 0xFFFF);
        cs.SetWritable(ConfigRegs.IoLimitUpper, 2, 0xFFFF);
        cs.SetWritable(ConfigRegs.BridgeControl, 2, ConfigRegs.BridgeControlWritable);
    }

    private static void InstallCommon(ConfigSpace cs, HeaderIds ids, byte headerType, byte interruptPin)
    {
        cs.Init(ConfigRegs.VendorId, 2, ids.VendorId);
        cs.Init(ConfigRegs.DeviceId, 2, ids.DeviceId);
        cs.SetWritable(ConfigRegs.Command, 2, ConfigRegs.CommandWritable);
        cs.SetW1c(ConfigRegs.Status, 2, ConfigRegs.StatusW1c);
        cs.Init(ConfigRegs.RevisionId, 4, ids.Revision | ids.ClassCode << 8);
        cs.Init(ConfigRegs.HeaderType, 1, headerType);
        cs.SetWritable(ConfigRegs.InterruptLine, 1, 0xFF);   // RW scratch for software
        cs.Init(ConfigRegs.InterruptPin, 1, interruptPin);
    }
}
