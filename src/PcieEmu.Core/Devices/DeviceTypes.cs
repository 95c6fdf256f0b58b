using PcieEmu.Core.Devices.Igb;
using PcieEmu.Core.Devices.VirtioNet;

namespace PcieEmu.Core.Devices;

/// <summary>The built-in device types. To add a device type, add one line here:
/// <c>registry.Register&lt;MyOptions&gt;("my-device", MyDevice.Create);</c> (see docs/machine.md).</summary>
public static class DeviceTypes
{
    /// <summary>Registers every built-in device type on <paramref name="registry"/>.</summary>
    public static void RegisterBuiltIns(DeviceRegistry registry)
    {
        ArgumentNullException.ThrowIfNull(registry);
        registry.Register<IgbOptions>(IgbDevice.TypeName, IgbDevice.Create);
        registry.Register<VirtioNetOptions>(VirtioNetDevice.TypeName, VirtioNetDevice.Create);
    }
}
