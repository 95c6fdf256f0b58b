using PcieEmu.Core.Config;
using PcieEmu.Core.Config.Capabilities;
using PcieEmu.Core.Platform;

namespace PcieEmu.Core.Topology;

/// <summary>
/// A physical function on a port's link (a root port or a switch downstream port), optionally with SR-IOV. Its routing ID follows
/// the port's secondary bus (the function captures its bus number from the link, as hardware
/// does from type 0 config requests). VF Enable 0→1 creates NumVFs virtual functions; 1→0 and
/// PF FLR remove them.
/// </summary>
public abstract class PhysicalFunction : PciFunction, ISriovOwner
{
    private readonly List<VirtualFunction> _vfs = [];

    /// <summary>Creates a PF with function number <paramref name="functionNumber"/> behind <paramref name="port"/>.</summary>
    protected PhysicalFunction(Machine machine, PciBridge port, byte functionNumber, string name) : base(machine, name)
    {
        Port = port;
        FunctionNumber = functionNumber;
    }

    /// <summary>The port whose link this function sits on.</summary>
    public PciBridge Port { get; }
    /// <summary>Function number on the link (device 0; 0-255 with ARI).</summary>
    public byte FunctionNumber { get; }
    /// <inheritdoc/>
    public override ushort Rid => (ushort)(Port.SecondaryBus << 8 | FunctionNumber);
    /// <summary>The SR-IOV capability, or null.</summary>
    public SriovCapability? Sriov { get; protected set; }
    /// <summary>Enabled VFs, in VF number order (VF 1 first).</summary>
    public IReadOnlyList<VirtualFunction> VirtualFunctions => _vfs;

    /// <summary>Routing ID of VF <paramref name="index"/> (0-based): PF RID + First VF Offset + index × VF Stride, modulo 2^16.</summary>
    public ushort VfRid(int index) => (ushort)(Rid + Sriov!.FirstVfOffset + index * Sriov.VfStride);

    /// <summary>The enabled VF at <paramref name="rid"/>, if any.</summary>
    public VirtualFunction? FindVf(ushort rid)
    {
        if (_vfs.Count == 0) return null;
        int delta = (ushort)(rid - Rid - Sriov!.FirstVfOffset);
        int stride = Sriov.VfStride;
        if (delta % stride != 0) return null;
        int index = delta / stride;
        return index < _vfs.Count ? _vfs[index] : null;
    }

    /// <summary>Builds VF number <paramref name="index"/> (0-based).</summary>
    protected abstract VirtualFunction CreateVf(int index);

    void ISriovOwner.CreateVfs(int numVfs)
    {
        _vfs.Clear();
        for (int i = 0; i < numVfs; i++) _vfs.Add(CreateVf(i));
        Machine.OnTopologyChanged();
        if (Machine.Events.Wants(Events.EventKind.Lifecycle))
            foreach (var vf in _vfs) Machine.Events.Publish(new Events.LifecycleEvent(vf.Rid, Events.LifecycleChange.VfAppeared, vf.Name));
    }

    void ISriovOwner.RemoveVfs()
    {
        foreach (var vf in _vfs) vf.OnRemoved();
        if (Machine.Events.Wants(Events.EventKind.Lifecycle))
            foreach (var vf in _vfs) Machine.Events.Publish(new Events.LifecycleEvent(vf.Rid, Events.LifecycleChange.VfVanished, vf.Name));
        _vfs.Clear();
        Machine.OnTopologyChanged();
    }

    /// <inheritdoc/>
    public override void FunctionLevelReset()
    {
        // A PF FLR clears VF Enable: the VFs vanish (SR-IOV 1.1 §3.3.3.1).
        if (_vfs.Count > 0) ((ISriovOwner)this).RemoveVfs();
        base.FunctionLevelReset();
    }

    /// <summary>Window of VF BAR <paramref name="bar"/> of VF <paramref name="index"/>: aperture base + index × per-VF size.</summary>
    public (ulong Base, ulong Size) VfBarWindow(BarDefinition bar, int index)
    {
        ulong size = Sriov!.PerVfBarSize(bar);
        return (Sriov.VfBarBase(bar) + (ulong)index * size, size);
    }
}

/// <summary>
/// An SR-IOV virtual function (SR-IOV 1.1 §3.4-§3.5): Vendor and Device ID read FFFFh, Memory
/// Space Enable is RO 0 (the PF's VF MSE gates decoding), BARs read 0 (VF BARs live in the PF's
/// SR-IOV capability), no INTx.
/// </summary>
public abstract class VirtualFunction : PciFunction
{
    /// <summary>Creates VF <paramref name="index"/> of <paramref name="pf"/>.</summary>
    protected VirtualFunction(PhysicalFunction pf, int index) : base(pf.Machine, $"{pf.Name}.VF{index}")
    {
        PhysicalFunction = pf;
        Index = index;
    }

    /// <summary>The owning PF.</summary>
    public PhysicalFunction PhysicalFunction { get; }
    /// <summary>VF number − 1 (0-based index).</summary>
    public int Index { get; }
    /// <inheritdoc/>
    public override bool IsVirtual => true;
    /// <inheritdoc/>
    public override ushort Rid => PhysicalFunction.VfRid(Index);
    /// <summary>Vendor ID as software sees it: the PF's.</summary>
    public override ushort VendorId => PhysicalFunction.VendorId;
    /// <summary>Device ID as software sees it: the PF's VF Device ID.</summary>
    public override ushort DeviceId => PhysicalFunction.Sriov!.Parameters.VfDeviceId;
    /// <inheritdoc/>
    public override bool MemoryDecodeEnabled => PhysicalFunction.Sriov is { VfEnabled: true, VfMemorySpaceEnabled: true }
                                              && PhysicalFunction.PowerState == 0;
    /// <inheritdoc/>
    public override bool IoDecodeEnabled => false;
    /// <summary>VF BARs (from the PF's SR-IOV capability).</summary>
    public IReadOnlyList<BarDefinition> VfBars => PhysicalFunction.Sriov!.Parameters.VfBars;
    /// <inheritdoc/>
    public override (ulong Base, ulong Size) BarWindow(BarDefinition bar) => PhysicalFunction.VfBarWindow(bar, Index);

    /// <summary>Called when VF Enable clears: the VF stops existing.</summary>
    protected internal virtual void OnRemoved() { }

    /// <summary>Installs the VF header: IDs FFFFh, Bus Master the only writable Command bit.</summary>
    protected static void InstallVfHeader(ConfigSpace cs, PhysicalFunction pf)
    {
        cs.Init(ConfigRegs.VendorId, 4, 0xFFFF_FFFF);
        cs.SetWritable(ConfigRegs.Command, 2, ConfigRegs.CmdBusMaster);
        cs.SetW1c(ConfigRegs.Status, 2, ConfigRegs.StatusW1c);
        cs.Init(ConfigRegs.RevisionId, 4, pf.Config.ReadRaw(ConfigRegs.RevisionId, 4));
        cs.Init(ConfigRegs.SubsystemVendorId, 4, pf.Config.ReadRaw(ConfigRegs.SubsystemVendorId, 4));
    }
}
