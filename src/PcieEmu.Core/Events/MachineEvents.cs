using PcieEmu.Core.Devices;
using PcieEmu.Core.Interrupts;
using PcieEmu.Core.Memory;

namespace PcieEmu.Core.Events;

/// <summary>The classes of transaction on the event path (one bit each in <see cref="EventKinds"/>).</summary>
public enum EventKind : byte
{
    /// <summary>A configuration read or write.</summary>
    Config = 0,
    /// <summary>A CPU memory read or write that decoded to a BAR or the IOMMU block.</summary>
    Mmio = 1,
    /// <summary>A device DMA through its DMA port.</summary>
    Dma = 2,
    /// <summary>An interrupt message (MSI, MSI-X, the IOMMU's event messages) or an INTx assertion.</summary>
    Msi = 3,
    /// <summary>A DMA remapping fault.</summary>
    Iommu = 4,
    /// <summary>An Ethernet frame: from the wire, to the wire, or switched between pools.</summary>
    Frame = 5,
    /// <summary>A function appeared or vanished, an FLR, a platform reset.</summary>
    Lifecycle = 6,
    /// <summary>Events this subscriber lost because it fell behind.</summary>
    Gap = 7,
    /// <summary>A frame the device dropped because of how the driver set it up (no free receive
    /// descriptors, anti-spoofing). Traced with the frames (token FRAME, filter name "frame").</summary>
    FrameDrop = 8,
}

/// <summary>A set of <see cref="EventKind"/>s.</summary>
[Flags]
public enum EventKinds : ushort
{
    /// <summary>None.</summary>
    None = 0,
    /// <summary><see cref="EventKind.Config"/>.</summary>
    Config = 1 << EventKind.Config,
    /// <summary><see cref="EventKind.Mmio"/>.</summary>
    Mmio = 1 << EventKind.Mmio,
    /// <summary><see cref="EventKind.Dma"/>.</summary>
    Dma = 1 << EventKind.Dma,
    /// <summary><see cref="EventKind.Msi"/>.</summary>
    Msi = 1 << EventKind.Msi,
    /// <summary><see cref="EventKind.Iommu"/>.</summary>
    Iommu = 1 << EventKind.Iommu,
    /// <summary><see cref="EventKind.Frame"/>.</summary>
    Frame = 1 << EventKind.Frame,
    /// <summary><see cref="EventKind.Lifecycle"/>.</summary>
    Lifecycle = 1 << EventKind.Lifecycle,
    /// <summary><see cref="EventKind.FrameDrop"/>.</summary>
    FrameDrop = 1 << EventKind.FrameDrop,
    /// <summary>Every transaction kind (gap events reach every subscriber regardless).</summary>
    All = Config | Mmio | Dma | Msi | Iommu | Frame | Lifecycle | FrameDrop,
}

/// <summary>
/// One transaction the machine saw. Built only when some subscriber wants its kind; the bus
/// stamps <see cref="Sequence"/> and <see cref="TimestampNs"/> when it is published.
/// </summary>
public abstract class MachineEvent
{
    /// <summary>Creates an event of <paramref name="rid"/>.</summary>
    protected MachineEvent(ushort rid) => Rid = rid;

    /// <summary>1-based position on the event path (strictly increasing; gaps are events a filter skipped).</summary>
    public ulong Sequence { get; internal set; }
    /// <summary>Nanoseconds since the machine started.</summary>
    public long TimestampNs { get; internal set; }
    /// <summary>The requester (config/MMIO: the target function; DMA, MSI, frames: the function that issued it).</summary>
    public ushort Rid { get; }
    /// <summary>Its kind.</summary>
    public abstract EventKind Kind { get; }
    /// <summary>A routine event: a successful config or MMIO read, or a successful DMA. Only
    /// subscribers that asked for the routine events of its kind get it (<see cref="EventBus.WantsRoutine"/>).</summary>
    public bool IsRoutine { get; init; }
}

/// <summary>A configuration request to <see cref="MachineEvent.Rid"/>.</summary>
/// <param name="rid">Target function.</param>
/// <param name="write">True for a write.</param>
/// <param name="offset">Config offset.</param>
/// <param name="width">1, 2 or 4.</param>
/// <param name="value">Value read, or value written.</param>
/// <param name="old">For a write: the bytes before the write.</param>
/// <param name="after">For a write: the bytes after the write (masks applied).</param>
/// <param name="status">Completion (UR when no function answered).</param>
public sealed class ConfigAccessEvent(ushort rid, bool write, int offset, int width, uint value, uint old, uint after,
    AddressSpace.CompletionStatus status) : MachineEvent(rid)
{
    /// <inheritdoc/>
    public override EventKind Kind => EventKind.Config;
    /// <summary>True for a write.</summary>
    public bool IsWrite => write;
    /// <summary>Config offset.</summary>
    public int Offset => offset;
    /// <summary>Access width in bytes.</summary>
    public int Width => width;
    /// <summary>Value read or written.</summary>
    public uint Value => value;
    /// <summary>Bytes before a write.</summary>
    public uint Old => old;
    /// <summary>Bytes after a write.</summary>
    public uint After => after;
    /// <summary>Completion status.</summary>
    public AddressSpace.CompletionStatus Status => status;
    /// <summary>Register name (from the header and capability definitions), e.g. "SR-IOV Control".</summary>
    public string Register { get; init; } = "";
    /// <summary>Fields that changed, e.g. "VF Enable 0->1" (empty for reads and unchanged writes).</summary>
    public string Fields { get; init; } = "";
}

/// <summary>A CPU memory request that decoded to a function's BAR (or the IOMMU block: rid 0).</summary>
/// <param name="rid">Function that claimed it (0 for the IOMMU block).</param>
/// <param name="write">True for a write.</param>
/// <param name="address">CPU address.</param>
/// <param name="bar">BAR index (-1: the IOMMU block).</param>
/// <param name="offset">Offset inside the BAR.</param>
/// <param name="width">1, 2, 4 or 8.</param>
/// <param name="value">Value read or written.</param>
/// <param name="old">For a write to a named register: its stored value before (else 0).</param>
/// <param name="register">Register name from the register map (null when none is mapped there).</param>
public sealed class MmioAccessEvent(ushort rid, bool write, ulong address, int bar, ulong offset, int width, ulong value,
    ulong old, string? register) : MachineEvent(rid)
{
    /// <inheritdoc/>
    public override EventKind Kind => EventKind.Mmio;
    /// <summary>True for a write.</summary>
    public bool IsWrite => write;
    /// <summary>CPU address.</summary>
    public ulong Address => address;
    /// <summary>BAR index (-1 for the IOMMU block).</summary>
    public int Bar => bar;
    /// <summary>Offset in the BAR.</summary>
    public ulong Offset => offset;
    /// <summary>Access width.</summary>
    public int Width => width;
    /// <summary>Value read or written.</summary>
    public ulong Value => value;
    /// <summary>Stored value before a write (0 when unknown).</summary>
    public ulong Old => old;
    /// <summary>Register name, or null.</summary>
    public string? Register => register;
    /// <summary>"PF0", "PF0.VF3", "IOMMU": whose BAR.</summary>
    public string Function { get; init; } = "";
    /// <summary>Why the function did not decode the access (<see cref="MmioMiss.None"/>: it did).
    /// A request that is not decoded completes Unsupported Request: a read returns all ones, a
    /// write is dropped.</summary>
    public MmioMiss Miss { get; init; }
}

/// <summary>Why a function's BAR did not claim a memory request aimed at it.</summary>
public enum MmioMiss : byte
{
    /// <summary>It was decoded.</summary>
    None = 0,
    /// <summary>The function's Command register has Memory Space Enable clear.</summary>
    MemorySpaceOff = 1,
    /// <summary>A VF whose PF has VF MSE clear in its SR-IOV Control.</summary>
    VfMemorySpaceOff = 2,
    /// <summary>The function (or, for a VF, its PF) is not in D0.</summary>
    PowerState = 3,
}

/// <summary>One DMA of a function through its DMA port.</summary>
/// <param name="rid">Requester.</param>
/// <param name="write">True for a write to memory.</param>
/// <param name="iova">Device address.</param>
/// <param name="translated">Host address of the first byte (0 when it did not translate).</param>
/// <param name="length">Bytes requested.</param>
/// <param name="result">Outcome.</param>
public sealed class DmaEvent(ushort rid, bool write, ulong iova, ulong translated, int length, DmaResult result) : MachineEvent(rid)
{
    /// <inheritdoc/>
    public override EventKind Kind => EventKind.Dma;
    /// <summary>True for a write to memory.</summary>
    public bool IsWrite => write;
    /// <summary>Device address.</summary>
    public ulong Iova => iova;
    /// <summary>Host address of the first byte.</summary>
    public ulong Translated => translated;
    /// <summary>Bytes requested.</summary>
    public int Length => length;
    /// <summary>Outcome (status, bytes moved, fault reason).</summary>
    public DmaResult Result => result;
    /// <summary>For an interrupt message written outside the MSI window (or blocked by Bus Master
    /// Enable): MSI or MSI-X; null for data DMA.</summary>
    public InterruptKind? Message { get; init; }
    /// <summary>The message's vector (with <see cref="Message"/>).</summary>
    public uint Vector { get; init; }
    /// <summary>What the device read or wrote (descriptor fetch, buffer, write-back...); default when not said.</summary>
    public DmaPurpose Purpose { get; init; }
}

/// <summary>An interrupt message that reached the MSI window (or an INTx assertion).</summary>
public sealed class InterruptMessageEvent(InterruptEvent interrupt) : MachineEvent(interrupt.Rid)
{
    /// <inheritdoc/>
    public override EventKind Kind => EventKind.Msi;
    /// <summary>The interrupt as the interrupt stream reports it.</summary>
    public InterruptEvent Interrupt => interrupt;
}

/// <summary>A DMA remapping fault (every faulting translation, recorded or collapsed).</summary>
/// <param name="rid">Source ID of the request.</param>
/// <param name="iova">Faulting address.</param>
/// <param name="write">True for a write request.</param>
/// <param name="reason">VT-d fault reason.</param>
public sealed class IommuFaultEvent(ushort rid, ulong iova, bool write, Iommu.VtdFaultReason reason) : MachineEvent(rid)
{
    /// <inheritdoc/>
    public override EventKind Kind => EventKind.Iommu;
    /// <summary>Faulting address.</summary>
    public ulong Iova => iova;
    /// <summary>True for a write.</summary>
    public bool IsWrite => write;
    /// <summary>Fault reason.</summary>
    public Iommu.VtdFaultReason Reason => reason;
}

/// <summary>What happened to a function.</summary>
public enum LifecycleChange : byte
{
    /// <summary>A VF appeared (VF Enable 0→1).</summary>
    VfAppeared = 1,
    /// <summary>A VF vanished (VF Enable 1→0, PF FLR, reset).</summary>
    VfVanished = 2,
    /// <summary>A Function Level Reset.</summary>
    FunctionLevelReset = 3,
    /// <summary>A platform (cold) reset.</summary>
    PlatformReset = 4,
}

/// <summary>A function appeared, vanished or was reset.</summary>
/// <param name="rid">The function (0 for a platform reset).</param>
/// <param name="change">What happened.</param>
/// <param name="function">The function's name ("PF0.VF3").</param>
public sealed class LifecycleEvent(ushort rid, LifecycleChange change, string function) : MachineEvent(rid)
{
    /// <inheritdoc/>
    public override EventKind Kind => EventKind.Lifecycle;
    /// <summary>What happened.</summary>
    public LifecycleChange Change => change;
    /// <summary>The function's name.</summary>
    public string Function => function;
}

/// <summary>Where a frame went.</summary>
public enum FrameDirection : byte
{
    /// <summary>From the link partner to the port.</summary>
    FromWire = 1,
    /// <summary>Transmitted onto the wire.</summary>
    ToWire = 2,
    /// <summary>Looped back by the port's VMDq switch to other pools.</summary>
    Switched = 3,
}

/// <summary>An Ethernet frame seen by a port.</summary>
/// <param name="rid">Transmitting function (for <see cref="FrameDirection.FromWire"/>: the port's PF).</param>
/// <param name="direction">Where it went.</param>
/// <param name="frame">Port, bytes (no FCS), wall-clock timestamp.</param>
/// <param name="queue">Transmit queue (-1 from the wire).</param>
/// <param name="pools">For switched frames: the pools that took it (bit per pool).</param>
public sealed class FrameEvent(ushort rid, FrameDirection direction, WireFrame frame, int queue, uint pools) : MachineEvent(rid)
{
    /// <inheritdoc/>
    public override EventKind Kind => EventKind.Frame;
    /// <summary>Where it went.</summary>
    public FrameDirection Direction => direction;
    /// <summary>The frame.</summary>
    public WireFrame Frame => frame;
    /// <summary>Transmit queue, or -1.</summary>
    public int Queue => queue;
    /// <summary>Receiving pools of a switched frame.</summary>
    public uint Pools => pools;
}

/// <summary>The subscriber fell behind: <see cref="Missed"/> events were dropped before the next one.</summary>
public sealed class GapEvent(long missed) : MachineEvent(0)
{
    /// <inheritdoc/>
    public override EventKind Kind => EventKind.Gap;
    /// <summary>Events lost.</summary>
    public long Missed => missed;
}

/// <summary>Why a device dropped a frame.</summary>
public enum FrameDropReason : byte
{
    /// <summary>The receive queue had fewer free descriptors than the frame needs (RQDPC counted it).</summary>
    NoRxDescriptors = 1,
    /// <summary>MAC or VLAN anti-spoofing: a VF sent from an address or VLAN its pool does not own.</summary>
    AntiSpoof = 2,
}

/// <summary>A frame the device dropped (<see cref="EventKind.FrameDrop"/>).</summary>
/// <param name="rid">The function that owns the queue.</param>
/// <param name="reason">Why.</param>
/// <param name="port">Port number.</param>
/// <param name="queue">Receive queue (<see cref="FrameDropReason.NoRxDescriptors"/>) or transmit queue.</param>
/// <param name="length">Frame length in bytes.</param>
public sealed class FrameDropEvent(ushort rid, FrameDropReason reason, int port, int queue, int length) : MachineEvent(rid)
{
    /// <inheritdoc/>
    public override EventKind Kind => EventKind.FrameDrop;
    /// <summary>Why.</summary>
    public FrameDropReason Reason => reason;
    /// <summary>Port number.</summary>
    public int Port => port;
    /// <summary>The queue (device numbering).</summary>
    public int Queue => queue;
    /// <summary>Frame length.</summary>
    public int Length => length;
}
