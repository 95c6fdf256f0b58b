namespace PcieEmu.Core.Snapshots;

/// <summary>One function of the topology tree.</summary>
/// <param name="Rid">Routing ID now.</param>
/// <param name="Bdf">Bus:device.function.</param>
/// <param name="Name">Short name (PF0, PF0.VF1, root-port1 ...).</param>
/// <param name="Kind">host-bridge, root-port, pf or vf.</param>
/// <param name="Parent">The routing ID of the function above it in the tree (the root port for a PF, the PF for a VF), or null.</param>
/// <param name="VendorId">Vendor ID as software reads it (a VF: its PF's).</param>
/// <param name="DeviceId">Device ID as software reads it.</param>
/// <param name="ClassCode">Class code (24 bits).</param>
public sealed record TopologyNode(ushort Rid, string Bdf, string Name, string Kind, ushort? Parent, ushort VendorId, ushort DeviceId, uint ClassCode);

/// <summary>The functions that answer config requests now.</summary>
/// <param name="Version">The machine's topology version (changes when VFs appear or vanish).</param>
/// <param name="AriForwarding">The root port's ARI Forwarding Enable.</param>
/// <param name="SecondaryBus">The root port's secondary bus number.</param>
/// <param name="Functions">Every function in routing-ID order.</param>
public sealed record TopologySnapshot(long Version, bool AriForwarding, int SecondaryBus, IReadOnlyList<TopologyNode> Functions);

/// <summary>A named bit field and its value (shifted down).</summary>
/// <param name="Name">Spec name.</param>
/// <param name="Mask">The field's bits in its register.</param>
/// <param name="Value">The field's value.</param>
public sealed record FieldValue(string Name, uint Mask, uint Value);

/// <summary>A named config register and its value.</summary>
/// <param name="Offset">Absolute offset in config space.</param>
/// <param name="Width">Bytes.</param>
/// <param name="Name">The name the trace prints.</param>
/// <param name="Value">The value software reads.</param>
/// <param name="Fields">Decoded named fields.</param>
public sealed record ConfigRegisterValue(int Offset, int Width, string Name, uint Value, IReadOnlyList<FieldValue> Fields);

/// <summary>The header or one capability, decoded.</summary>
/// <param name="Name">"Type 0 Header", "SR-IOV", "MSI-X" ...</param>
/// <param name="Offset">Offset of the structure.</param>
/// <param name="Length">Bytes.</param>
/// <param name="Extended">An extended capability (at 0x100 and above).</param>
/// <param name="Id">Capability ID (0 for the header).</param>
/// <param name="Registers">Its named registers in offset order.</param>
public sealed record ConfigGroup(string Name, int Offset, int Length, bool Extended, int Id, IReadOnlyList<ConfigRegisterValue> Registers);

/// <summary>A BAR register by name.</summary>
/// <param name="Offset">Offset in the BAR.</param>
/// <param name="Name">Register name (the trace's).</param>
/// <param name="Value">Stored value (a register whose read is computed shows its stored value; <paramref name="Computed"/> says so).</param>
/// <param name="Alias">The entry is another name for a register stored elsewhere (a VF's queue registers are the PF's).</param>
/// <param name="Computed">Reads of it are computed by the device.</param>
/// <param name="Fields">Declared fields and their values.</param>
public sealed record BarRegisterValue(uint Offset, string Name, uint Value, bool Alias, bool Computed, IReadOnlyList<FieldValue> Fields);

/// <summary>One MSI-X table entry.</summary>
/// <param name="Vector">Entry index.</param>
/// <param name="Address">Message Address.</param>
/// <param name="Data">Message Data.</param>
/// <param name="Masked">Vector Control Mask bit.</param>
/// <param name="Pending">The PBA bit.</param>
public sealed record MsixEntryValue(int Vector, ulong Address, uint Data, bool Masked, bool Pending);

/// <summary>One descriptor of a ring.</summary>
/// <param name="Index">Index in the ring.</param>
/// <param name="Iova">Its address as the device fetches it.</param>
/// <param name="Low">Bytes 0-7.</param>
/// <param name="High">Bytes 8-15.</param>
/// <param name="Owner">hw (between head and tail) or sw.</param>
/// <param name="Decoded">The fields, decoded.</param>
public sealed record DescriptorValue(int Index, ulong Iova, ulong Low, ulong High, string Owner, string Decoded);

/// <summary>A TX or RX descriptor ring of a queue.</summary>
/// <param name="Direction">tx or rx.</param>
/// <param name="Queue">Queue number in the function's own register file.</param>
/// <param name="Base">Ring base (IOVA).</param>
/// <param name="Length">Ring length in bytes.</param>
/// <param name="Head">Head index.</param>
/// <param name="Tail">Tail index.</param>
/// <param name="Enabled">The queue's enable bit (RXDCTL/TXDCTL bit 25).</param>
/// <param name="Descriptors">A window of descriptors around the head.</param>
/// <param name="Note">Why descriptors are missing, or null.</param>
public sealed record RingValue(string Direction, int Queue, ulong Base, uint Length, uint Head, uint Tail, bool Enabled,
    IReadOnlyList<DescriptorValue> Descriptors, string? Note);

/// <summary>Everything the view shows of one function.</summary>
/// <param name="Rid">Routing ID.</param>
/// <param name="Bdf">Bus:device.function.</param>
/// <param name="Name">Short name.</param>
/// <param name="IsVirtual">An SR-IOV VF.</param>
/// <param name="Config">Config space as software reads it (256 or 4096 bytes).</param>
/// <param name="Groups">The header and every capability, decoded.</param>
/// <param name="BarRegisters">BAR0's register file, or empty.</param>
/// <param name="MsixEnabled">MSI-X Enable.</param>
/// <param name="MsixFunctionMask">MSI-X Function Mask.</param>
/// <param name="Msix">MSI-X table and PBA.</param>
/// <param name="Rings">TX/RX rings of the function's queues.</param>
public sealed record FunctionSnapshot(ushort Rid, string Bdf, string Name, bool IsVirtual, byte[] Config,
    IReadOnlyList<ConfigGroup> Groups, IReadOnlyList<BarRegisterValue> BarRegisters, bool MsixEnabled, bool MsixFunctionMask,
    IReadOnlyList<MsixEntryValue> Msix, IReadOnlyList<RingValue> Rings);

/// <summary>One fault recording register, decoded.</summary>
/// <param name="Index">Record index.</param>
/// <param name="Fault">F bit.</param>
/// <param name="SourceId">Requester as BDF.</param>
/// <param name="Reason">Fault reason code.</param>
/// <param name="ReasonText">Fault reason name.</param>
/// <param name="Write">The request was a write (T = 0).</param>
/// <param name="PageAddress">Faulting page address.</param>
public sealed record FaultRecordValue(int Index, bool Fault, string SourceId, int Reason, string ReasonText, bool Write, ulong PageAddress);

/// <summary>One valid IOTLB entry.</summary>
/// <param name="SourceId">Requester as BDF.</param>
/// <param name="DomainId">Domain id.</param>
/// <param name="Iova">Page IOVA.</param>
/// <param name="PageSize">Page size in bytes.</param>
/// <param name="PageBase">Host physical page base.</param>
/// <param name="Read">Read permitted.</param>
/// <param name="Write">Write permitted.</param>
public sealed record IotlbEntryValue(string SourceId, int DomainId, ulong Iova, ulong PageSize, ulong PageBase, bool Read, bool Write);

/// <summary>One step of a table walk.</summary>
/// <param name="Step">root, context, or the paging level (PML4E, PDPE, PDE, PTE).</param>
/// <param name="Address">Where the entry was read.</param>
/// <param name="Value">The entry's low 64 bits.</param>
/// <param name="High">The entry's high 64 bits (root and context entries), else 0.</param>
/// <param name="Decoded">The entry's fields.</param>
public sealed record WalkStep(string Step, ulong Address, ulong Value, ulong High, string Decoded);

/// <summary>The walk of one requester and IOVA through the tables in memory, and the translation a DMA would get now.</summary>
/// <param name="Rid">Requester as BDF.</param>
/// <param name="Iova">The IOVA.</param>
/// <param name="Steps">Entries read, in order.</param>
/// <param name="Result">translated, pass-through, translation disabled or fault.</param>
/// <param name="Translated">Host physical address when not a fault.</param>
/// <param name="FaultReason">The fault reason name, or null.</param>
public sealed record PageWalk(string Rid, ulong Iova, IReadOnlyList<WalkStep> Steps, string Result, ulong Translated, string? FaultReason);

/// <summary>The remapping unit's state.</summary>
/// <param name="TranslationEnabled">GSTS.TES.</param>
/// <param name="QueuedInvalidationEnabled">GSTS.QIES.</param>
/// <param name="RootTable">The active root table address.</param>
/// <param name="FaultStatus">FSTS.</param>
/// <param name="IotlbHits">IOTLB hits so far.</param>
/// <param name="IotlbMisses">IOTLB misses so far.</param>
/// <param name="ContextFetches">Context entries fetched so far.</param>
/// <param name="IotlbCapacity">IOTLB entries in all.</param>
/// <param name="Iotlb">The IOTLB's valid entries.</param>
/// <param name="FaultRecords">The fault recording registers.</param>
/// <param name="Walk">The walk asked for, or null.</param>
public sealed record IommuSnapshot(bool TranslationEnabled, bool QueuedInvalidationEnabled, ulong RootTable, uint FaultStatus,
    long IotlbHits, long IotlbMisses, long ContextFetches, int IotlbCapacity, IReadOnlyList<IotlbEntryValue> Iotlb,
    IReadOnlyList<FaultRecordValue> FaultRecords, PageWalk? Walk);
