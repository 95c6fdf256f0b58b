using PcieEmu.Core.AddressSpace;
using PcieEmu.Core.Config;
using PcieEmu.Core.Config.Capabilities;
using PcieEmu.Core.Interrupts;
using PcieEmu.Core.Memory;
using PcieEmu.Core.Platform;

namespace PcieEmu.Core.Topology;

/// <summary>
/// A PCI function: its config space, capabilities, BARs and register files, its DMA port and
/// its interrupt logic (MSI-X, MSI, INTx). Subclasses are the host bridge, the root port,
/// physical functions and virtual functions.
/// </summary>
public abstract class PciFunction
{
    /// <summary>Creates a function attached to <paramref name="machine"/>.</summary>
    protected PciFunction(Machine machine, string name)
    {
        Machine = machine;
        Name = name;
        Dma = new DmaPort(machine, () => Rid, () => BusMasterEnabled, () => SetStatusBits(ConfigRegs.StatusReceivedMasterAbort));
    }

    /// <summary>The machine this function belongs to.</summary>
    public Machine Machine { get; }
    /// <summary>A short human-readable name (e.g. "PF0", "PF0.VF3").</summary>
    public string Name { get; }
    /// <summary>Config space.</summary>
    public ConfigSpace Config { get; protected set; } = new();
    /// <summary>Routing ID the function answers at now.</summary>
    public abstract ushort Rid { get; }
    /// <summary>What the device model calls the function, lspci style ("Intel Corporation 82576 Virtual
    /// Function"); empty when the model gives no name.</summary>
    public virtual string Description => "";
    /// <summary>True for SR-IOV virtual functions.</summary>
    public virtual bool IsVirtual => false;
    /// <summary>Capabilities in list order (standard then extended).</summary>
    public IReadOnlyList<Capability> Capabilities { get; protected set; } = [];
    /// <summary>Implemented BARs (index 6 is the expansion ROM).</summary>
    public IReadOnlyList<BarDefinition> Bars { get; protected set; } = [];
    /// <summary>The function's DMA port: its only way to reach memory.</summary>
    public DmaPort Dma { get; }
    /// <summary>MSI-X table and PBA, when the function has MSI-X.</summary>
    public MsixTable? MsixTable { get; protected set; }

    /// <summary>First capability of type <typeparamref name="T"/>, or null.</summary>
    public T? Find<T>() where T : Capability
    {
        // Indexed loop: this is on the decode and interrupt paths and must not allocate.
        var caps = Capabilities;
        for (int i = 0; i < caps.Count; i++) if (caps[i] is T t) return t;
        return null;
    }

    /// <summary>Vendor ID as software reads it.</summary>
    public virtual ushort VendorId => (ushort)Config.ReadRaw(ConfigRegs.VendorId, 2);
    /// <summary>Device ID as software reads it.</summary>
    public virtual ushort DeviceId => (ushort)Config.ReadRaw(ConfigRegs.DeviceId, 2);
    /// <summary>Class code (base class, subclass, prog-if).</summary>
    public uint ClassCode => Config.ReadRaw(ConfigRegs.RevisionId, 4) >> 8;
    /// <summary>Command register.</summary>
    public ushort Command => (ushort)Config.ReadRaw(ConfigRegs.Command, 2);
    /// <summary>Bus Master Enable: the function may issue memory requests (DMA and MSI).</summary>
    public bool BusMasterEnabled => (Command & ConfigRegs.CmdBusMaster) != 0;
    /// <summary>Power state D0..D3hot (0 without a PM capability).</summary>
    public int PowerState => Find<PowerManagementCapability>()?.PowerState ?? 0;
    /// <summary>Whether memory BARs decode now (Memory Space Enable, D0).</summary>
    public virtual bool MemoryDecodeEnabled => (Command & ConfigRegs.CmdMemorySpace) != 0 && PowerState == 0;
    /// <summary>Whether I/O BARs decode now.</summary>
    public virtual bool IoDecodeEnabled => (Command & ConfigRegs.CmdIoSpace) != 0 && PowerState == 0;

    /// <summary>The address window of BAR <paramref name="bar"/> now: (base, size).</summary>
    public virtual (ulong Base, ulong Size) BarWindow(BarDefinition bar) => (bar.ReadAddress(Config), bar.Size);

    /// <summary>The register file behind BAR <paramref name="index"/>.</summary>
    public virtual IMmioRegion GetBarRegion(int index) => EmptyRegion.Instance;

    /// <summary>Reads config space (already routed to this function).</summary>
    public virtual uint ReadConfig(int offset, int width) => Config.Read(offset, width);

    /// <summary>Writes config space through the single write path.</summary>
    public virtual void WriteConfig(int offset, int width, uint value) => Config.Write(offset, width, value);

    /// <summary>Function Level Reset: config space and function state back to reset values.</summary>
    public virtual void FunctionLevelReset()
    {
        if (Machine.Events.Wants(Events.EventKind.Lifecycle))
            Machine.Events.Publish(new Events.LifecycleEvent(Rid, Events.LifecycleChange.FunctionLevelReset, Name));
        Config.RestoreReset();
        foreach (var c in Capabilities) c.OnReset();
        MsixTable?.Reset();
        OnDeviceReset();
    }

    /// <summary>Device-specific state reset (register files) on FLR or reset.</summary>
    protected virtual void OnDeviceReset() { }

    /// <summary>Wires FLR and MSI behaviour of installed capabilities; call once capabilities exist.</summary>
    protected void WireCapabilities()
    {
        if (Find<PcieCapability>() is { } pcie) pcie.FlrRequested += FunctionLevelReset;
        if (Find<MsixCapability>() is { } msix)
            MsixTable = new MsixTable(msix, (addr, data, v) => Machine.SendMessage(this, InterruptKind.Msix, addr, data, (uint)v));
        if (Find<MsiCapability>() is { } msi) msi.Changed += () => DeliverPendingMsi(msi);
    }

    /// <summary>Raises interrupt <paramref name="vector"/> the way the function is configured:
    /// MSI-X if enabled, else MSI, else INTx (if the function has a pin and INTx is not disabled).</summary>
    public void RaiseInterrupt(int vector)
    {
        if (MsixTable != null && Find<MsixCapability>()!.Enabled) { MsixTable.Signal(Math.Min(vector, MsixTable.Vectors - 1)); return; }
        if (Find<MsiCapability>() is { Enabled: true } msi)
        {
            int v = Math.Min(vector, msi.EnabledVectors - 1);
            if (msi.IsMasked(v)) { msi.SetPending(v, true); return; }
            SendMsi(msi, v);
            return;
        }
        AssertIntx();
    }

    private void SendMsi(MsiCapability msi, int v)
    {
        // With n vectors enabled the function replaces the low log2(n) data bits with the vector number.
        uint data = (uint)(msi.Data & ~(msi.EnabledVectors - 1) | v);
        Machine.SendMessage(this, InterruptKind.Msi, msi.Address, data, (uint)v);
    }

    private void DeliverPendingMsi(MsiCapability msi)
    {
        if (!msi.Enabled) return;
        for (int v = 0; v < msi.EnabledVectors; v++)
        {
            if ((msi.Pending & (1u << v)) == 0 || msi.IsMasked(v)) continue;
            msi.SetPending(v, false);
            SendMsi(msi, v);
        }
    }

    /// <summary>Asserts INTx: sets Status.Interrupt Status and, unless Command.Interrupt Disable is
    /// set, reports the assertion on the interrupt stream.</summary>
    public void AssertIntx()
    {
        uint pin = Config.ReadRaw(ConfigRegs.InterruptPin, 1);
        if (pin == 0) return;
        uint status = Config.ReadRaw(ConfigRegs.Status, 2);
        Config.SetRaw(ConfigRegs.Status, 2, status | ConfigRegs.StatusInterrupt);
        if ((Command & ConfigRegs.CmdInterruptDisable) == 0)
            Machine.Interrupts.Publish(Rid, InterruptKind.Intx, 0, pin, 0);
    }

    /// <summary>Records an error event in the Status register's RW1C bits (e.g. Received Master
    /// Abort when a non-posted request of this function completed Unsupported Request).</summary>
    public void SetStatusBits(ushort bits)
    {
        uint status = Config.ReadRaw(ConfigRegs.Status, 2);
        Config.SetRaw(ConfigRegs.Status, 2, status | (uint)(bits & ConfigRegs.StatusW1c));
    }

    /// <summary>Deasserts INTx (clears Status.Interrupt Status).</summary>
    public void DeassertIntx()
    {
        uint status = Config.ReadRaw(ConfigRegs.Status, 2);
        Config.SetRaw(ConfigRegs.Status, 2, status & ~(uint)ConfigRegs.StatusInterrupt);
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Bdf.Format(Rid)} {Name}";
}
