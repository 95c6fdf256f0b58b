using PcieEmu.Core.AddressSpace;
using PcieEmu.Core.Config;
using PcieEmu.Core.Config.Capabilities;
using PcieEmu.Core.Devices.Igb;
using PcieEmu.Core.Events;
using PcieEmu.Core.Interrupts;
using PcieEmu.Core.Iommu;
using PcieEmu.Core.Memory;
using PcieEmu.Core.Topology;

namespace PcieEmu.Core.Platform;

/// <summary>
/// The emulated machine: root complex (host bridge and root port on bus 0), the NIC's
/// functions behind the port, host RAM, the DMA remapping unit and the MSI window.
/// <para>
/// Concurrency: one machine lock (<see cref="SyncRoot"/>) is held for every transaction
/// (config, MMIO, I/O, memory), like a fabric that serialises requests. Device work a
/// transaction starts (a doorbell) runs inline under the same lock. Interrupt events are
/// handed to subscribers through bounded queues that never block.
/// </para>
/// </summary>
public sealed partial class Machine : IDisposable
{
    /// <summary>The MSI window: memory writes that land here are interrupt messages.</summary>
    public const ulong MsiWindowBase = 0xFEE0_0000, MsiWindowSize = 0x10_0000;

    private HostBridge _hostBridge = null!;
    private RootPort _rootPort = null!;
    private List<PhysicalFunction> _pfs = [];

    /// <summary>Builds a machine from <paramref name="options"/> (the default machine when null).
    /// <paramref name="time"/> is the clock every device timer and timestamp uses (EITR
    /// moderation intervals, interrupt event and wire frame timestamps); the system clock when
    /// null. Tests pass a fake clock and advance it instead of sleeping.</summary>
    public Machine(MachineOptions? options = null, TimeProvider? time = null)
    {
        Options = options ?? new MachineOptions();
        Options.Validate();
        Time = time ?? TimeProvider.System;
        Events = new EventBus(Time);
        Interrupts = new InterruptHub(Events);
        Ram = new HostRam(Options.RamFilePath ?? HostRam.DefaultPath(), Options.RamSize, Options.KeepRamFile);
        Iommu = new VtdUnit(this);
        Remapper = Iommu;
        IommuRegisters = Iommu;
        PlatformReset += Iommu.Reset;
        BuildTopology();
        if (Options.FirmwareEnumeration) Firmware.Enumerate(this);
    }

    /// <summary>The VT-d DMA remapping unit (also <see cref="Remapper"/> and <see cref="IommuRegisters"/>).</summary>
    public VtdUnit Iommu { get; }

    /// <summary>The options the machine was built with.</summary>
    public MachineOptions Options { get; }
    /// <summary>The machine's clock: device timers and timestamps (see the constructor).</summary>
    public TimeProvider Time { get; }
    /// <summary>The machine lock: held for each transaction.</summary>
    public Lock SyncRoot { get; } = new();
    /// <summary>Host RAM.</summary>
    public HostRam Ram { get; }
    /// <summary>The event path: every transaction, published to subscribers that never stall the machine.</summary>
    public EventBus Events { get; }
    /// <summary>Interrupt stream (a view of <see cref="Events"/>).</summary>
    public InterruptHub Interrupts { get; }
    /// <summary>The DMA remapping unit every DMA goes through (identity while none is present).</summary>
    public IDmaRemapper Remapper { get; set; } = IdentityRemapper.Instance;
    /// <summary>The remapping unit's register block at <see cref="MachineOptions.IommuBase"/> (reads 0 while none is present).</summary>
    public IMmioRegion IommuRegisters { get; set; } = EmptyRegion.Instance;
    /// <summary>Size of the remapping unit's register block.</summary>
    public const ulong IommuRegisterSize = 0x1000;
    /// <summary>The host bridge (00:00.0).</summary>
    public HostBridge HostBridge => _hostBridge;
    /// <summary>The root port (00:01.0).</summary>
    public RootPort RootPort => _rootPort;
    /// <summary>The NIC's physical functions.</summary>
    public IReadOnlyList<PhysicalFunction> PhysicalFunctions => _pfs;
    /// <summary>Incremented whenever functions appear or vanish (VF enable/disable, reset).</summary>
    public long TopologyVersion { get; private set; }

    /// <summary>Raised after a platform reset, under the machine lock (resets other units: the IOMMU).</summary>
    public event Action? PlatformReset;

    private void BuildTopology()
    {
        _hostBridge = new HostBridge(this, new HeaderIds(0x8086, 0x29C0, 0x02, 0x060000, 0x8086, 0x5044));
        _rootPort = new RootPort(this, Bdf.Rid(0, 1, 0), new HeaderIds(0x8086, 0x3C02, 0x07, 0x060400), portNumber: 1);
        var group = new SriovGroup();
        _pfs = [];
        for (int fn = 0; fn < Options.Nic.PhysicalFunctions; fn++)
        {
            var pf = new IgbPhysicalFunction(this, _rootPort, (byte)fn, Options.Nic, group);
            _pfs.Add(pf);
            _rootPort.Connect(pf);
        }
        TopologyVersion++;
    }

    internal void OnTopologyChanged() => TopologyVersion++;

    // ---------------- Configuration requests ----------------

    /// <summary>Routes a config request to the function at <paramref name="rid"/>, or null (Unsupported Request).</summary>
    public PciFunction? RouteConfig(ushort rid)
    {
        if (rid >> 8 == 0)
        {
            if (rid == _hostBridge.Rid) return _hostBridge;
            if (rid == _rootPort.Rid) return _rootPort;
            return null;
        }
        return _rootPort.RouteConfig(rid);
    }

    /// <summary>A config read. Invalid width/offset throw <see cref="ArgumentException"/>; a missing function completes UR with all ones.</summary>
    public ReadResult ReadConfig(ushort rid, int offset, int width)
    {
        ConfigSpace.ValidateAccess(offset, width);
        lock (SyncRoot)
        {
            var f = RouteConfig(rid);
            var r = f != null ? new ReadResult(CompletionStatus.Successful, f.ReadConfig(offset, width)) : ReadResult.Unsupported(width);
            if (f == null) NoteConfigUnsupported(rid);
            if (Events.Wants(EventKind.Config)) MachineTrace.Config(this, f, rid, write: false, offset, width, (uint)r.Value, r.Status);
            return r;
        }
    }

    /// <summary>A config write. A missing function completes UR and the write is dropped.</summary>
    public CompletionStatus WriteConfig(ushort rid, int offset, int width, uint value)
    {
        ConfigSpace.ValidateAccess(offset, width);
        if (width < 4 && value >> (8 * width) != 0)
            throw new ArgumentException($"value 0x{value:X} does not fit in {width} byte(s)", nameof(value));
        lock (SyncRoot)
        {
            var f = RouteConfig(rid);
            bool trace = Events.Wants(EventKind.Config);
            if (f == null)
            {
                NoteConfigUnsupported(rid);
                if (trace) MachineTrace.Config(this, null, rid, write: true, offset, width, value, CompletionStatus.UnsupportedRequest);
                return CompletionStatus.UnsupportedRequest;
            }
            // Published before the write takes effect, so its consequences (VFs appearing, an FLR) follow it.
            if (trace) MachineTrace.Config(this, f, rid, write: true, offset, width, value, CompletionStatus.Successful);
            f.WriteConfig(offset, width, value);
            return CompletionStatus.Successful;
        }
    }

    // A config request the port forwarded that nobody claimed comes back to it as UR.
    private void NoteConfigUnsupported(ushort rid)
    {
        if (_rootPort.ForwardsConfig(rid)) _rootPort.RecordSecondaryMasterAbort();
    }

    /// <summary>Every function that answers config requests now, in routing-ID order.</summary>
    public IReadOnlyList<PciFunction> EnumerateFunctions()
    {
        lock (SyncRoot)
        {
            var list = new List<PciFunction> { _hostBridge, _rootPort };
            foreach (var f in _rootPort.Downstream)
            {
                if (RouteConfig(f.Rid) == f) list.Add(f);
                if (f is PhysicalFunction pf)
                    list.AddRange(pf.VirtualFunctions.Where(vf => RouteConfig(vf.Rid) == vf));
            }
            return [.. list.OrderBy(f => f.Rid)];
        }
    }

    /// <summary>Every function that exists (reachable by config or not), PFs' VFs included.</summary>
    public IEnumerable<PciFunction> AllFunctions()
    {
        yield return _hostBridge;
        yield return _rootPort;
        foreach (var pf in _pfs)
        {
            yield return pf;
            foreach (var vf in pf.VirtualFunctions) yield return vf;
        }
    }

    // ---------------- Memory and I/O requests from the CPU ----------------

    /// <summary>Checks an MMIO access: width 1, 2, 4 or 8, naturally aligned.</summary>
    public static void ValidateMmio(ulong address, int width)
    {
        if (width is not (1 or 2 or 4 or 8))
            throw new ArgumentException($"width must be 1, 2, 4 or 8 (was {width})", nameof(width));
        if ((address & (ulong)(width - 1)) != 0)
            throw new ArgumentException($"address 0x{address:X} is not aligned to {width} bytes", nameof(address));
    }

    /// <summary>What a memory address decodes to now.</summary>
    public readonly record struct Decoded(IMmioRegion Region, ulong Offset, PciFunction? Function, int Bar);

    /// <summary>
    /// Decodes a CPU memory address: RAM, the IOMMU block, then the root port's windows and
    /// behind them PF BARs (Command.MSE, D0) and VF BAR apertures (VF Enable and VF MSE).
    /// Returns false when nothing claims it (Unsupported Request).
    /// </summary>
    public bool TryDecodeMemory(ulong address, int width, out Decoded decoded)
    {
        decoded = default;
        if (address >= Options.IommuBase && address + (ulong)width <= Options.IommuBase + IommuRegisterSize)
        {
            decoded = new Decoded(IommuRegisters, address - Options.IommuBase, null, -1);
            return true;
        }
        if (!_rootPort.ForwardsMemory(address)) return false;
        // Indexed loops: this runs for every MMIO access and must not allocate.
        var downstream = _rootPort.Downstream;
        for (int fi = 0; fi < downstream.Count; fi++)
        {
            var f = downstream[fi];
            if (f.MemoryDecodeEnabled)
            {
                var bars = f.Bars;
                for (int bi = 0; bi < bars.Count; bi++)
                {
                    var bar = bars[bi];
                    if (bar.IsIo) continue;
                    if (bar.Kind == BarKind.Rom && (f.Config.ReadRaw(ConfigRegs.ExpansionRom, 4) & 1) == 0) continue;
                    var (b, s) = f.BarWindow(bar);
                    if (b != 0 && address >= b && address - b + (ulong)width <= s)
                    {
                        decoded = new Decoded(f.GetBarRegion(bar.Index), address - b, f, bar.Index);
                        return true;
                    }
                }
            }
            if (f is PhysicalFunction { Sriov: { VfEnabled: true, VfMemorySpaceEnabled: true } sriov } pf && pf.PowerState == 0)
            {
                var vfBars = sriov.Parameters.VfBars;
                for (int bi = 0; bi < vfBars.Count; bi++)
                {
                    var bar = vfBars[bi];
                    ulong b = sriov.VfBarBase(bar), per = sriov.PerVfBarSize(bar);
                    if (b == 0 || address < b) continue;
                    ulong index = (address - b) / per;
                    if (index >= (ulong)pf.VirtualFunctions.Count) continue;
                    var vf = pf.VirtualFunctions[(int)index];
                    ulong off = address - b - index * per;
                    if (off + (ulong)width > per) continue;
                    decoded = new Decoded(vf.GetBarRegion(bar.Index), off, vf, bar.Index);
                    return true;
                }
            }
        }
        return false;
    }

    /// <summary>A CPU memory read (MMIO or RAM).</summary>
    public ReadResult ReadMmio(ulong address, int width)
    {
        ValidateMmio(address, width);
        lock (SyncRoot)
        {
            if (Ram.Contains(address, (ulong)width))
                return new ReadResult(CompletionStatus.Successful, ReadLe(Ram.GetSpan(address, width)));
            if (TryDecodeMemory(address, width, out var d))
            {
                ulong v = d.Region.Read(d.Offset, width);
                if (Events.Wants(EventKind.Mmio)) MachineTrace.Mmio(this, write: false, address, width, v, 0, d);
                return new ReadResult(CompletionStatus.Successful, v);
            }
            // A read the port forwarded that no function claimed completes UR on its secondary side.
            if (_rootPort.ForwardsMemory(address)) _rootPort.RecordSecondaryMasterAbort();
            return ReadResult.Unsupported(width);
        }
    }

    /// <summary>A CPU memory write (MMIO or RAM). Posted: an undecoded address is dropped (reported UR).</summary>
    public CompletionStatus WriteMmio(ulong address, int width, ulong value)
    {
        ValidateMmio(address, width);
        if (width < 8 && value >> (8 * width) != 0)
            throw new ArgumentException($"value 0x{value:X} does not fit in {width} byte(s)", nameof(value));
        lock (SyncRoot)
        {
            if (Ram.Contains(address, (ulong)width))
            {
                WriteLe(Ram.GetSpan(address, width), value);
                return CompletionStatus.Successful;
            }
            if (!TryDecodeMemory(address, width, out var d)) return CompletionStatus.UnsupportedRequest;
            // Published before the write takes effect, so what it starts (a doorbell's DMA) follows it.
            if (Events.Wants(EventKind.Mmio)) MachineTrace.Mmio(this, write: true, address, width, value, MachineTrace.StoredValue(d), d);
            d.Region.Write(d.Offset, width, value);
            return CompletionStatus.Successful;
        }
    }

    /// <summary>A CPU I/O read (1, 2 or 4 bytes) through the root port's I/O window to I/O BARs.</summary>
    public ReadResult ReadIo(ulong port, int width)
    {
        ValidateIo(port, width);
        lock (SyncRoot)
            return TryDecodeIo(port, width, out var d) ? new ReadResult(CompletionStatus.Successful, d.Region.Read(d.Offset, width)) : ReadResult.Unsupported(width);
    }

    /// <summary>A CPU I/O write.</summary>
    public CompletionStatus WriteIo(ulong port, int width, uint value)
    {
        ValidateIo(port, width);
        lock (SyncRoot)
        {
            if (!TryDecodeIo(port, width, out var d)) return CompletionStatus.UnsupportedRequest;
            d.Region.Write(d.Offset, width, value);
            return CompletionStatus.Successful;
        }
    }

    private static void ValidateIo(ulong port, int width)
    {
        if (width is not (1 or 2 or 4)) throw new ArgumentException($"width must be 1, 2 or 4 (was {width})", nameof(width));
        if (port > 0xFFFF_FFFF || (port & (ulong)(width - 1)) != 0) throw new ArgumentException($"port 0x{port:X} is out of range or misaligned", nameof(port));
    }

    private bool TryDecodeIo(ulong port, int width, out Decoded decoded)
    {
        decoded = default;
        if (!_rootPort.ForwardsIo(port)) return false;
        foreach (var f in _rootPort.Downstream)
        {
            if (!f.IoDecodeEnabled) continue;
            foreach (var bar in f.Bars)
            {
                if (!bar.IsIo) continue;
                var (b, s) = f.BarWindow(bar);
                if (b != 0 && port >= b && port - b + (ulong)width <= s)
                {
                    decoded = new Decoded(f.GetBarRegion(bar.Index), port - b, f, bar.Index);
                    return true;
                }
            }
        }
        return false;
    }

    // ---------------- Memory from the CPU side (no IOMMU) ----------------

    /// <summary>Reads RAM as the CPU sees it. Throws <see cref="ArgumentOutOfRangeException"/> outside RAM.</summary>
    public void ReadMemory(ulong address, Span<byte> destination)
    {
        if (!Ram.Contains(address, (ulong)destination.Length)) throw new ArgumentOutOfRangeException(nameof(address), $"[0x{address:X}, +{destination.Length}) is outside RAM");
        lock (SyncRoot) Ram.Read(address, destination);
    }

    /// <summary>Writes RAM as the CPU sees it. Throws <see cref="ArgumentOutOfRangeException"/> outside RAM.</summary>
    public void WriteMemory(ulong address, ReadOnlySpan<byte> source)
    {
        if (!Ram.Contains(address, (ulong)source.Length)) throw new ArgumentOutOfRangeException(nameof(address), $"[0x{address:X}, +{source.Length}) is outside RAM");
        lock (SyncRoot) Ram.Write(address, source);
    }

    // ---------------- Interrupt messages ----------------

    /// <summary>
    /// A message (MSI / MSI-X) written by <paramref name="source"/>: a 4-byte memory write of
    /// <paramref name="data"/> to <paramref name="address"/>. It needs Bus Master Enable; if it
    /// lands in the MSI window it becomes an interrupt event, otherwise it is an ordinary DMA
    /// write through the function's DMA port (and so through the remapping unit).
    /// </summary>
    public void SendMessage(PciFunction source, InterruptKind kind, ulong address, uint data, uint vector)
    {
        if (!source.BusMasterEnabled) return;
        if (address >= MsiWindowBase && address < MsiWindowBase + MsiWindowSize)
        {
            Interrupts.Publish(source.Rid, kind, address, data, vector);
            return;
        }
        Span<byte> bytes = stackalloc byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(bytes, data);
        source.Dma.Write(address, bytes);
    }

    // ---------------- Reset ----------------

    /// <summary>Cold reset: every function back to power-on state, VFs gone, RAM zeroed, the
    /// remapping unit reset, and firmware enumeration run again if enabled.</summary>
    public void Reset()
    {
        lock (SyncRoot)
        {
            foreach (var pf in _pfs) pf.FunctionLevelReset();
            _rootPort.DisconnectAll();
            BuildTopology();
            Ram.Clear();
            PlatformReset?.Invoke();
            if (Events.Wants(EventKind.Lifecycle)) Events.Publish(new LifecycleEvent(0, LifecycleChange.PlatformReset, "machine"));
            if (Options.FirmwareEnumeration) Firmware.Enumerate(this);
        }
    }

    internal static ulong ReadLe(ReadOnlySpan<byte> s) => s.Length switch
    {
        1 => s[0],
        2 => System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(s),
        4 => System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(s),
        _ => System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(s),
    };

    internal static void WriteLe(Span<byte> s, ulong v)
    {
        for (int i = 0; i < s.Length; i++) s[i] = (byte)(v >> (8 * i));
    }

    /// <inheritdoc/>
    public void Dispose() => Ram.Dispose();
}
