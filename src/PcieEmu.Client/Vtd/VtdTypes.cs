namespace PcieEmu.Client.Vtd;

/// <summary>Access a mapping grants to the device (second-level PTE bits R and W).</summary>
[Flags]
public enum VtdAccess
{
    /// <summary>No access (not a valid mapping).</summary>
    None = 0,
    /// <summary>DMA reads allowed (R).</summary>
    Read = 1,
    /// <summary>DMA writes allowed (W).</summary>
    Write = 2,
    /// <summary>Both.</summary>
    ReadWrite = Read | Write,
}

/// <summary>How the driver invalidates the unit's caches.</summary>
public enum VtdInvalidationMode
{
    /// <summary>Register-based: CCMD and the IOTLB register, polled until the hardware clears ICC / IVT.</summary>
    Register,
    /// <summary>Queued: descriptors in the invalidation queue, each batch followed by a wait descriptor whose status write is polled.</summary>
    Queued,
}

/// <summary>Context-cache invalidation granularity (CCMD.CIRG / descriptor bits 5:4).</summary>
public enum VtdContextGranularity
{
    /// <summary>Every context entry.</summary>
    Global = 1,
    /// <summary>Entries of one domain.</summary>
    Domain = 2,
    /// <summary>Entries of one source id (with function mask).</summary>
    Device = 3,
}

/// <summary>IOTLB invalidation granularity (IOTLB.IIRG / descriptor bits 5:4).</summary>
public enum VtdIotlbGranularity
{
    /// <summary>Every entry.</summary>
    Global = 1,
    /// <summary>Entries of one domain.</summary>
    Domain = 2,
    /// <summary>Entries of one domain in a 2^AM-page aligned range.</summary>
    Page = 3,
}

/// <summary>One pending fault as read from a fault recording register.</summary>
/// <param name="Index">Fault recording register index.</param>
/// <param name="SourceId">Requester id (bus:dev.fn) of the faulting request.</param>
/// <param name="Reason">VT-d fault reason code (e.g. 6 = read not permitted).</param>
/// <param name="IsRead">True for a read request (FRCD.T = 1), false for a write.</param>
/// <param name="Address">Faulting page address (bits 63:12).</param>
public readonly record struct VtdFault(int Index, ushort SourceId, byte Reason, bool IsRead, ulong Address)
{
    /// <inheritdoc/>
    public override string ToString() =>
        $"FRCD{Index}: {PciAddress.Format(SourceId)} {(IsRead ? "read" : "write")} 0x{Address:X} reason 0x{Reason:X}";
}

/// <summary>Fault status register and the pending fault records.</summary>
/// <param name="Status">FSTS as read.</param>
/// <param name="Records">Records with F = 1, in register order.</param>
public sealed record VtdFaultState(uint Status, IReadOnlyList<VtdFault> Records)
{
    /// <summary>FSTS.PFO: a fault was lost because every record was full.</summary>
    public bool Overflow => (Status & VtdRegisters.FstsPfo) != 0;
    /// <summary>FSTS.PPF: at least one record holds a fault.</summary>
    public bool Pending => (Status & VtdRegisters.FstsPpf) != 0;
    /// <summary>FSTS.IQE: the invalidation queue stopped on a bad descriptor.</summary>
    public bool QueueError => (Status & VtdRegisters.FstsIqe) != 0;
    /// <summary>FSTS.FRI: index of the first pending record.</summary>
    public int FaultRecordIndex => (int)(Status >> VtdRegisters.FstsFriShift) & 0xFF;
}

/// <summary>
/// A DMA remapping domain: one second-level page-table tree and a domain id. Every device
/// attached to it sees the same I/O virtual address space.
/// </summary>
public sealed class VtdDomain
{
    internal VtdDomain(ushort id, int addressWidth, ulong root)
    {
        Id = id;
        AddressWidth = addressWidth;
        RootTable = root;
    }

    /// <summary>Domain id (context entry DID).</summary>
    public ushort Id { get; }
    /// <summary>Address width in bits: 39 (3-level tables) or 48 (4-level).</summary>
    public int AddressWidth { get; }
    /// <summary>Levels of the page-table tree.</summary>
    public int Levels => AddressWidth == 39 ? 3 : 4;
    /// <summary>Context entry AW encoding: 1 (39-bit) or 2 (48-bit).</summary>
    internal ulong AwCode => AddressWidth == 39 ? 1UL : 2UL;
    /// <summary>Physical address of the top-level table (SLPTPTR).</summary>
    public ulong RootTable { get; }
    /// <summary>Routing ids attached to the domain.</summary>
    public IReadOnlyCollection<ushort> Devices => DeviceSet;
    internal HashSet<ushort> DeviceSet { get; } = [];
    /// <summary>Bytes currently mapped.</summary>
    public ulong MappedBytes { get; internal set; }
}
