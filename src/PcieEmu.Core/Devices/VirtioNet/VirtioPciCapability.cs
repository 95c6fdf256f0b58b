using PcieEmu.Core.Config;
using static PcieEmu.Core.Devices.VirtioNet.VirtioRegs;

namespace PcieEmu.Core.Devices.VirtioNet;

/// <summary>
/// A virtio vendor-specific capability (ID 0x09, struct virtio_pci_cap, virtio 1.2 §4.1.4):
/// cap_len, cfg_type, bar, id, offset and length of the structure inside the BAR; the notify
/// capability adds notify_off_multiplier (§4.1.4.4). All fields are read-only.
/// </summary>
/// <param name="cfgType">COMMON, NOTIFY, ISR or DEVICE.</param>
/// <param name="bar">BAR holding the structure.</param>
/// <param name="offset">Offset of the structure in the BAR.</param>
/// <param name="length">Length of the structure.</param>
/// <param name="notifyOffMultiplier">notify_off_multiplier (NOTIFY only).</param>
public sealed class VirtioPciCapability(byte cfgType, byte bar, uint offset, uint length, uint notifyOffMultiplier = 0) : Capability
{
    /// <summary>The cfg_type.</summary>
    public byte CfgType => cfgType;
    /// <inheritdoc/>
    public override int Length => cfgType == CfgNotify ? 20 : 16;
    /// <inheritdoc/>
    public override bool IsExtended => false;
    /// <inheritdoc/>
    public override ushort Id => CapVendor;

    /// <inheritdoc/>
    protected internal override void Install(ConfigSpace cs)
    {
        cs.Init(Offset + CapLen, 1, (uint)Length);
        cs.Init(Offset + CapCfgType, 1, cfgType);
        cs.Init(Offset + CapBar, 1, bar);
        cs.Init(Offset + CapId, 1, 0);
        cs.Init(Offset + CapOffset, 4, offset);
        cs.Init(Offset + CapLength, 4, length);
        if (cfgType == CfgNotify) cs.Init(Offset + CapNotifyOffMultiplier, 4, notifyOffMultiplier);
    }
}

/// <summary>
/// The PCI configuration access capability (cfg_type 5, struct virtio_pci_cfg_cap, §4.1.4.9):
/// software writes bar, offset and length, then reads or writes pci_cfg_data, and the device
/// performs that access on the BAR. bar, offset, length and pci_cfg_data are read-write.
/// </summary>
public sealed class VirtioPciCfgCapability : Capability
{
    private ConfigSpace? _cs;

    /// <summary>Raised after software wrote pci_cfg_data: (bar, offset, length, data).</summary>
    public event Action<int, uint, int, uint>? DataWritten;

    /// <inheritdoc/>
    public override int Length => 20;
    /// <inheritdoc/>
    public override bool IsExtended => false;
    /// <inheritdoc/>
    public override ushort Id => CapVendor;

    /// <summary>The access software set up: BAR, offset, length.</summary>
    public (int Bar, uint Offset, int Length) Window =>
        _cs == null ? (0, 0u, 0) : ((int)_cs.ReadRaw(Offset + CapBar, 1), _cs.ReadRaw(Offset + CapOffset, 4), (int)_cs.ReadRaw(Offset + CapLength, 4));

    /// <summary>Stores what a BAR read returned into pci_cfg_data (device side, no hooks).</summary>
    public void SetData(uint value) => _cs?.SetRaw(Offset + CapPciCfgData, 4, value);

    /// <inheritdoc/>
    protected internal override void Install(ConfigSpace cs)
    {
        cs.Init(Offset + CapLen, 1, (uint)Length);
        cs.Init(Offset + CapCfgType, 1, CfgPci);
        cs.Init(Offset + CapBar, 1, 0);
        cs.Init(Offset + CapId, 1, 0);
        cs.Init(Offset + CapOffset, 4, 0);
        cs.Init(Offset + CapLength, 4, 0);
        cs.Init(Offset + CapPciCfgData, 4, 0);
        cs.SetWritable(Offset + CapBar, 1, 0xFF);
        cs.SetWritable(Offset + CapOffset, 4, 0xFFFF_FFFF);
        cs.SetWritable(Offset + CapLength, 4, 0xFFFF_FFFF);
        cs.SetWritable(Offset + CapPciCfgData, 4, 0xFFFF_FFFF);
    }

    /// <inheritdoc/>
    protected internal override void Attach(ConfigSpace cs)
    {
        _cs = cs;
        cs.AddHook(Offset + CapPciCfgData, 4, (_, _, n) =>
        {
            var (bar, off, len) = Window;
            DataWritten?.Invoke(bar, off, len, n);
        });
    }
}
