namespace PcieEmu.Core.Checker;

/// <summary>How bad a breach is.</summary>
public enum RuleSeverity
{
    /// <summary>Worth knowing; not a breach of a "must".</summary>
    Info = 0,
    /// <summary>Likely a bug, or a loss of checking.</summary>
    Warning = 1,
    /// <summary>The driver broke a rule the specification states as a requirement.</summary>
    Error = 2,
}

/// <summary>One rule of the driver-conduct checker.</summary>
/// <param name="Id">Stable id (e.g. SRIOV.NUMVFS_WHILE_ENABLED).</param>
/// <param name="Severity">How bad a breach is.</param>
/// <param name="Spec">Specification and section that define the rule.</param>
/// <param name="Text">What the rule says.</param>
/// <param name="Hint">One line for the driver author.</param>
/// <param name="Trigger">What the checker sees that triggers it.</param>
public sealed record Rule(string Id, RuleSeverity Severity, string Spec, string Text, string Hint, string Trigger);

/// <summary>The rule catalogue: the one table of rules (docs/checker.md is checked against it).</summary>
public static class Rules
{
    /// <summary>NumVFs written while VF Enable is set.</summary>
    public static readonly Rule NumVfsWhileEnabled = new("SRIOV.NUMVFS_WHILE_ENABLED", RuleSeverity.Error,
        "SR-IOV 1.1 §3.3.7 (NumVFs) = PCIe Base 6.3 §9.3.3.7",
        "NumVFs may only be written while VF Enable is clear.",
        "Clear VF Enable (and wait for the VFs to go) before changing NumVFs.",
        "A config write that covers NumVFs of a PF whose SR-IOV Control has VF Enable = 1.");

    /// <summary>Config request to a VF less than 100 ms after VF Enable.</summary>
    public static readonly Rule VfAccessBefore100Ms = new("SRIOV.VF_ACCESS_BEFORE_100MS", RuleSeverity.Error,
        "SR-IOV 1.1 §3.3.3.1 (VF Enable) = PCIe Base 6.3 §9.3.3.3.1",
        "Software must wait 100 ms after setting VF Enable before it issues config requests to the VFs.",
        "Sleep 100 ms after setting VF Enable (as Linux's sriov_enable does) before touching VF config space.",
        "A config request to a VF whose VF Enable 0->1 happened less than 100 ms earlier (machine clock).");

    /// <summary>Request to a function less than 100 ms after its FLR.</summary>
    public static readonly Rule AccessAfterFlrBefore100Ms = new("PCI.ACCESS_AFTER_FLR_BEFORE_100MS", RuleSeverity.Error,
        "PCIe Base 6.3 §6.6.2 (Function Level Reset (FLR))",
        "A function has up to 100 ms to complete an FLR; software must not access it before then.",
        "Wait 100 ms after writing Initiate Function Level Reset before the next config or MMIO access to the function.",
        "A config or MMIO request to a function less than 100 ms after its FLR (machine clock).");

    /// <summary>Device DMA attempted while Bus Master Enable is clear.</summary>
    public static readonly Rule BusMasterOff = new("DMA.BUS_MASTER_OFF", RuleSeverity.Error,
        "PCIe Base 6.3 §7.5.1.1.3 (Command Register, Bus Master Enable)",
        "A function with Bus Master Enable clear may not issue memory requests; work given to it is lost.",
        "Set Bus Master Enable in the Command register before enabling rings or interrupts.",
        "A DMA of the function that its DMA port blocked because Bus Master Enable is 0.");

    /// <summary>Device DMA to an address that is not memory.</summary>
    public static readonly Rule DmaUnsupportedRequest = new("DMA.UNSUPPORTED_REQUEST", RuleSeverity.Error,
        "PCIe Base 6.3 §2.3.1 (Request Handling Rules)",
        "A memory request to an address nobody claims completes as Unsupported Request.",
        "The driver programmed a DMA address (ring base, buffer) outside RAM; check the addresses it hands the device.",
        "A DMA whose (translated) address is not RAM.");

    /// <summary>A DMA remapping fault.</summary>
    public static readonly Rule VtdFault = new("VTD.FAULT", RuleSeverity.Error,
        "VT-d Rev. 5.10 §7.1 (Remapping Hardware Behavior on Faults), §7.2.1 (Primary Fault Logging)",
        "The remapping unit refused a DMA of the function: the driver used an address its domain does not map for that access.",
        "Map the buffer for the device (dma_map_*) with the right direction before handing its address to the device.",
        "Every remapping fault the VT-d unit records or collapses.");

    /// <summary>MSI-X table entry changed while unmasked.</summary>
    public static readonly Rule MsixTableWriteWhileUnmasked = new("MSIX.TABLE_WRITE_WHILE_UNMASKED", RuleSeverity.Warning,
        "PCIe Base 6.3 §6.1.4.5 (Per-vector Masking and Function Masking)",
        "Changing the Message Address or Data of an MSI-X entry while it is unmasked gives undefined results.",
        "Set the entry's Mask bit (or the Function Mask) before rewriting its address or data, then unmask.",
        "An MMIO write to an entry's Message Address / Upper Address / Data while MSI-X is enabled, the Function Mask is clear and the entry's Mask bit is clear.");

    // ---------------- Config space and SR-IOV ----------------

    /// <summary>NumVFs written with more than TotalVFs.</summary>
    public static readonly Rule NumVfsAboveTotalVfs = new("SRIOV.NUMVFS_ABOVE_TOTALVFS", RuleSeverity.Error,
        "SR-IOV 1.1 §3.3.7 (NumVFs) = PCIe Base 6.3 §9.3.3.7",
        "NumVFs may not exceed TotalVFs; the result of a larger value is undefined.",
        "Read TotalVFs (SR-IOV capability +0x0E) and never ask for more VFs than it.",
        "A config write to NumVFs whose value is greater than the PF's TotalVFs.");

    /// <summary>System Page Size written while VF Enable is set.</summary>
    public static readonly Rule SystemPageSizeWhileEnabled = new("SRIOV.SYSTEM_PAGE_SIZE_WHILE_ENABLED", RuleSeverity.Error,
        "SR-IOV 1.1 §3.3.13 (System Page Size) = PCIe Base 6.3 §9.3.3.13",
        "System Page Size sets the VF BAR spacing and may only be changed while VF Enable is clear.",
        "Program System Page Size before setting VF Enable.",
        "A config write that covers System Page Size of a PF whose VF Enable is 1.");

    /// <summary>A VF BAR written while the VFs decode memory.</summary>
    public static readonly Rule VfBarWriteWhileVfMse = new("SRIOV.VF_BAR_WRITE_WHILE_VF_MSE", RuleSeverity.Error,
        "SR-IOV 1.1 §3.3.14 (VF BAR0-5) = PCIe Base 6.3 §9.3.3.14",
        "A VF BAR must not be changed while the VFs decode it (VF Enable and VF MSE set): the VFs' registers move under the driver.",
        "Clear VF MSE in SR-IOV Control before sizing or moving a VF BAR, then set it again.",
        "A config write that covers a VF BAR of a PF whose SR-IOV Control has VF Enable = 1 and VF MSE = 1.");

    /// <summary>ARI Capable Hierarchy changed while VF Enable is set.</summary>
    public static readonly Rule AriChangedWhileEnabled = new("SRIOV.ARI_CAPABLE_CHANGED_WHILE_ENABLED", RuleSeverity.Error,
        "SR-IOV 1.1 §3.3.3.5 (ARI Capable Hierarchy) = PCIe Base 6.3 §9.3.3.3.5",
        "ARI Capable Hierarchy decides the VFs' routing IDs and must not change while VF Enable is set.",
        "Set ARI Capable Hierarchy (from the port's ARI Forwarding Enable) before VF Enable.",
        "A write to SR-IOV Control that changes ARI Capable Hierarchy while VF Enable is 1.");

    /// <summary>A memory BAR written while the function decodes memory.</summary>
    public static readonly Rule BarWriteWhileDecodeOn = new("PCI.BAR_WRITE_WHILE_DECODE_ON", RuleSeverity.Warning,
        "PCI Local Bus 3.0 §6.2.5.1 (Address Maps, sizing a BAR); PCIe Base 6.3 §7.5.1.2.1 (Base Address Registers)",
        "While Memory Space Enable is set, a BAR being sized or moved decodes addresses that belong to others.",
        "Clear Memory Space Enable in the Command register before sizing or moving a BAR (as Linux's __pci_read_base does).",
        "A config write to a memory BAR (0x10-0x24) of a function whose last Command write set Memory Space Enable.");

    /// <summary>MSI and MSI-X both enabled.</summary>
    public static readonly Rule MsiAndMsixEnabled = new("MSI.MSI_AND_MSIX_ENABLED", RuleSeverity.Error,
        "PCIe Base 6.3 §6.1.4 (MSI and MSI-X Operation)",
        "System software must not enable MSI and MSI-X at the same time; the result is undefined.",
        "Disable MSI (MSI Control bit 0) before enabling MSI-X, and the other way round.",
        "A config write that leaves both MSI Enable and MSI-X Enable set on a function.");

    // ---------------- MMIO decode and power ----------------

    /// <summary>MMIO to a BAR that is not decoded because memory decode is off.</summary>
    public static readonly Rule MmioWithMemorySpaceOff = new("PCI.MMIO_WITH_MEMORY_SPACE_OFF", RuleSeverity.Error,
        "PCIe Base 6.3 §7.5.1.1.3 (Command Register, Memory Space Enable); SR-IOV 1.1 §3.3.3.4 (VF MSE) = PCIe Base 6.3 §9.3.3.3.4",
        "A function decodes its memory BARs only while Memory Space Enable (a VF: its PF's VF MSE) is set.",
        "Set Memory Space Enable (pci_enable_device) - for a VF, VF MSE in the PF's SR-IOV Control - before touching the BAR.",
        "A memory request to a BAR of a function whose Command.MSE is 0, or of a VF whose PF has VF MSE = 0: not decoded.");

    /// <summary>MMIO to a function in D3hot.</summary>
    public static readonly Rule MmioInD3Hot = new("PM.MMIO_IN_D3HOT", RuleSeverity.Error,
        "PCIe Base 6.3 §5.3.1.4.1 (D3Hot State)",
        "A function in D3hot answers configuration requests only; its memory space is not decoded.",
        "Put the function back in D0 (PMCSR PowerState = 0, then wait 10 ms) before MMIO.",
        "A memory request to a BAR of a function (or a VF of a PF) whose PowerState is not D0.");

    /// <summary>MSI-X table or PBA written with a partial DWORD.</summary>
    public static readonly Rule MsixPartialAccess = new("MSIX.TABLE_ACCESS_NOT_DWORD", RuleSeverity.Error,
        "PCIe Base 6.3 §6.1.4.2 (MSI-X Configuration)",
        "Software must access the MSI-X Table and PBA with aligned full DWORD or QWORD requests; smaller ones give undefined results.",
        "Write MSI-X entries with 32- or 64-bit accesses (writel/writeq), never bytes or words.",
        "A 1- or 2-byte MMIO write to a function's MSI-X Table or PBA.");

    /// <summary>A write to the read-only PBA.</summary>
    public static readonly Rule MsixPbaWrite = new("MSIX.PBA_WRITE", RuleSeverity.Warning,
        "PCIe Base 6.3 §7.7.2.9 (Pending Bits Register for MSI-X PBA Entries)",
        "The Pending Bit Array is read-only; software should never write it (the write is ignored).",
        "Read pending bits from the PBA; clear a pending vector by unmasking it and servicing the interrupt.",
        "An MMIO write to a function's MSI-X PBA.");

    // ---------------- Interrupt messages ----------------

    /// <summary>An MSI-X vector whose address is not in the MSI window.</summary>
    public static readonly Rule MsixAddressOutsideMsiWindow = new("MSIX.VECTOR_ADDRESS_OUTSIDE_MSI_WINDOW", RuleSeverity.Error,
        "PCIe Base 6.3 §7.7.2.5 (Message Address Register for MSI-X Table Entries); Intel SDM Vol. 3A §10.11.1 (Message Address Register Format; renumbered in later editions)",
        "An MSI-X message is a memory write; only one to 0xFEE00000-0xFEEFFFFF is an interrupt - anything else is an ordinary write to memory.",
        "Program the entry's Message Address from the platform (0xFEE0_0000 | dest << 12) before unmasking it.",
        "An MSI-X message the function sent to an address outside 0xFEE00000-0xFEEFFFFF (it went out as a DMA write).");

    /// <summary>An MSI whose address is not in the MSI window.</summary>
    public static readonly Rule MsiAddressOutsideMsiWindow = new("MSI.ADDRESS_OUTSIDE_MSI_WINDOW", RuleSeverity.Error,
        "PCIe Base 6.3 §7.7.1.3 (Message Address Register for MSI); Intel SDM Vol. 3A §10.11.1 (Message Address Register Format; renumbered in later editions)",
        "An MSI is a memory write; only one to 0xFEE00000-0xFEEFFFFF is an interrupt - anything else is an ordinary write to memory.",
        "Program MSI Message Address before setting MSI Enable.",
        "An MSI the function sent to an address outside 0xFEE00000-0xFEEFFFFF (it went out as a DMA write).");

    /// <summary>An interrupt message lost because Bus Master Enable is clear.</summary>
    public static readonly Rule MessageWithBusMasterOff = new("MSI.MESSAGE_WITH_BUS_MASTER_OFF", RuleSeverity.Error,
        "PCIe Base 6.3 §7.5.1.1.3 (Command Register, Bus Master Enable)",
        "MSI and MSI-X messages are memory writes: with Bus Master Enable clear the function cannot send them and the interrupt is lost.",
        "Set Bus Master Enable (pci_set_master) before enabling MSI/MSI-X vectors.",
        "An MSI or MSI-X message the function had to send while its Bus Master Enable was 0.");

    // ---------------- VT-d ----------------

    /// <summary>Translation enabled before a root table was set.</summary>
    public static readonly Rule VtdTranslationWithoutRootTable = new("VTD.TRANSLATION_ENABLE_WITHOUT_ROOT_TABLE", RuleSeverity.Error,
        "VT-d 3.x §10.4.4 (Global Command Register: TE, SRTP; §11.4.4.1 in Rev. 5.x)",
        "Software must program RTADDR and latch it with Set Root Table Pointer before it sets Translation Enable.",
        "Write RTADDR, set GCMD.SRTP and wait for GSTS.RTPS, then set GCMD.TE.",
        "A GCMD write that sets TE while no SRTP command was seen since reset.");

    /// <summary>GCMD written with more than one command.</summary>
    public static readonly Rule VtdGcmdMoreThanOneCommand = new("VTD.GCMD_MORE_THAN_ONE_COMMAND", RuleSeverity.Error,
        "VT-d 3.x §10.4.4 (Global Command Register, general description; §11.4.4.1 in Rev. 5.x)",
        "GCMD carries one command per write: software reads GSTS, changes one bit and writes the result.",
        "Write GCMD once per command: (GSTS persistent bits) with exactly one bit set or cleared.",
        "A GCMD write that changes more than one of TE/EAFL/QIE/IRE/CFI against the commanded state, or adds a one-shot command (SRTP, SFL, WBF, SIRTP) to such a change or to another one-shot.");

    // ---------------- 82576 rings ----------------

    /// <summary>TDT written beyond the ring.</summary>
    public static readonly Rule IgbTdtBeyondRing = new("IGB.TDT_BEYOND_RING", RuleSeverity.Error,
        "82576 datasheet, TDT (Transmit Descriptor Tail) and TDLEN register descriptions",
        "The tail must index a descriptor of the ring: 0 <= TDT < TDLEN / 16.",
        "Wrap the tail: next = (tail + 1) % count, with count = TDLEN / 16.",
        "An MMIO write of TDT with a value not below TDLEN / 16 of the queue (as last written).");

    /// <summary>RDT written beyond the ring.</summary>
    public static readonly Rule IgbRdtBeyondRing = new("IGB.RDT_BEYOND_RING", RuleSeverity.Error,
        "82576 datasheet, RDT (Receive Descriptor Tail) and RDLEN register descriptions",
        "The tail must index a descriptor of the ring: 0 <= RDT < RDLEN / 16.",
        "Wrap the tail: next = (tail + 1) % count, with count = RDLEN / 16.",
        "An MMIO write of RDT with a value not below RDLEN / 16 of the queue (as last written).");

    /// <summary>A doorbell on a disabled queue.</summary>
    public static readonly Rule IgbDoorbellQueueDisabled = new("IGB.DOORBELL_QUEUE_DISABLED", RuleSeverity.Error,
        "82576 datasheet, TXDCTL / RXDCTL register descriptions (bit 25, queue enable)",
        "A tail write hands descriptors to a queue; a disabled queue does not fetch them and the work is silently lost.",
        "Set TXDCTL/RXDCTL.ENABLE (and poll it until it reads 1) before moving TDT/RDT.",
        "An MMIO write that moves TDT or RDT of a queue whose last TXDCTL/RXDCTL write left ENABLE = 0.");

    /// <summary>A ring base not 128-byte aligned.</summary>
    public static readonly Rule IgbRingBaseUnaligned = new("IGB.RING_BASE_UNALIGNED", RuleSeverity.Error,
        "82576 datasheet, TDBAL / RDBAL register descriptions (bits 6:0 ignored)",
        "Descriptor ring bases are 128-byte aligned: the device ignores bits 6:0 of TDBAL/RDBAL and uses another address than the driver's.",
        "Allocate descriptor rings 128-byte aligned (dma_alloc_coherent gives page alignment).",
        "An MMIO write of TDBAL or RDBAL with any of bits 6:0 set.");

    /// <summary>A ring length not a multiple of 128.</summary>
    public static readonly Rule IgbRingLenUnaligned = new("IGB.RING_LEN_UNALIGNED", RuleSeverity.Error,
        "82576 datasheet, TDLEN / RDLEN register descriptions (multiple of 128 bytes)",
        "Ring length must be a multiple of 128 bytes (8 descriptors); the device ignores bits 6:0.",
        "Size rings in multiples of 8 descriptors.",
        "An MMIO write of TDLEN or RDLEN with any of bits 6:0 set.");

    /// <summary>A queue enabled with no ring.</summary>
    public static readonly Rule IgbQueueEnableWithoutRing = new("IGB.QUEUE_ENABLE_WITHOUT_RING", RuleSeverity.Error,
        "82576 datasheet, TXDCTL / RXDCTL register descriptions (queue enable after TDBAL/TDLEN, RDBAL/RDLEN)",
        "A queue must have its ring (base and length) programmed before it is enabled.",
        "Write TDBAL/TDBAH/TDLEN (RDBAL/RDBAH/RDLEN) before setting TXDCTL/RXDCTL.ENABLE.",
        "A TXDCTL/RXDCTL write that sets ENABLE while the queue's length is 0 since the function's reset.");

    /// <summary>Ring registers changed while the queue is enabled.</summary>
    public static readonly Rule IgbRingChangedWhileEnabled = new("IGB.RING_CHANGED_WHILE_ENABLED", RuleSeverity.Error,
        "82576 datasheet, TXDCTL / RXDCTL register descriptions (queue enable after TDBAL/TDLEN, RDBAL/RDLEN)",
        "Ring base and length are read when the queue is enabled; changing them under an enabled queue gives undefined fetches.",
        "Clear TXDCTL/RXDCTL.ENABLE (and wait for it to read 0) before moving or resizing a ring.",
        "An MMIO write that changes TDBAL/TDBAH/TDLEN or RDBAL/RDBAH/RDLEN of a queue whose ENABLE was last written 1.");

    /// <summary>A frame dropped for lack of receive descriptors.</summary>
    public static readonly Rule IgbRxNoFreeDescriptors = new("IGB.RX_NO_FREE_DESCRIPTORS", RuleSeverity.Warning,
        "82576 datasheet, RQDPC (Receive Queue Drop Packet Count) and MPC register descriptions",
        "A frame arrived for a queue with fewer free descriptors than it needs and was dropped (counted in RQDPC).",
        "Give the device buffers (advance RDT) faster, or grow the ring; check that RDT is moved after refilling.",
        "The device dropped a frame on a receive queue for lack of free descriptors.");

    /// <summary>A VF frame dropped by anti-spoofing.</summary>
    public static readonly Rule IgbSpoofedSource = new("IGB.SPOOFED_SOURCE_MAC", RuleSeverity.Error,
        "82576 datasheet, DTXSWC (DMA Tx Switch Control: MAC/VLAN anti-spoof) register description",
        "With anti-spoofing on, a VF may only send from the MAC address (and VLAN) the PF gave its pool; other frames are dropped.",
        "Send from the MAC the PF assigned (the VF mailbox's VF_RESET reply), or have the PF set the one you want.",
        "The device dropped a VF's frame as spoofed (WVBR set).");

    /// <summary>Mailbox memory written without owning it.</summary>
    public static readonly Rule IgbMailboxWriteWithoutOwnership = new("IGB.MAILBOX_WRITE_WITHOUT_OWNERSHIP", RuleSeverity.Error,
        "82576 datasheet, PF/VF mailbox: P2VMAILBOX, V2PMAILBOX (VFU/PFU) and VMBMEM register descriptions",
        "The side that writes the mailbox buffer (VMBMEM) must own it: VFU for the VF, PFU for the PF, set and granted first.",
        "Set VFU (VFMAILBOX) or PFU (P2VMAILBOX) and read it back set before writing the message; release with REQ/STS.",
        "A VF write to VMBMEM while its VFU is not granted, or a PF write to VMBMEM[pool] while the pool's PFU is not granted (state from the mailbox writes).");

    /// <summary>The checker itself lost events.</summary>
    public static readonly Rule CheckerEventsLost = new("CHECKER.EVENTS_LOST", RuleSeverity.Warning,
        "docs/checker.md (checker queue)",
        "The checker fell behind and lost events: violations among them were not checked.",
        "Not a driver fault: raise Limits:CheckerQueueCapacity or slow the load.",
        "A gap on the checker's subscription to the event path.");

    /// <summary>Every rule, in catalogue order.</summary>
    public static readonly IReadOnlyList<Rule> All =
    [
        NumVfsWhileEnabled, VfAccessBefore100Ms, AccessAfterFlrBefore100Ms, BusMasterOff, DmaUnsupportedRequest,
        VtdFault, MsixTableWriteWhileUnmasked,
        NumVfsAboveTotalVfs, SystemPageSizeWhileEnabled, VfBarWriteWhileVfMse, AriChangedWhileEnabled, BarWriteWhileDecodeOn,
        MsiAndMsixEnabled, MmioWithMemorySpaceOff, MmioInD3Hot, MsixPartialAccess, MsixPbaWrite,
        MsixAddressOutsideMsiWindow, MsiAddressOutsideMsiWindow, MessageWithBusMasterOff,
        VtdTranslationWithoutRootTable, VtdGcmdMoreThanOneCommand,
        IgbTdtBeyondRing, IgbRdtBeyondRing, IgbDoorbellQueueDisabled, IgbRingBaseUnaligned, IgbRingLenUnaligned,
        IgbQueueEnableWithoutRing, IgbRingChangedWhileEnabled, IgbRxNoFreeDescriptors, IgbSpoofedSource,
        IgbMailboxWriteWithoutOwnership,
        CheckerEventsLost,
    ];

    /// <summary>The rule with <paramref name="id"/>, or null.</summary>
    public static Rule? Find(string id)
    {
        foreach (var r in All) if (r.Id == id) return r;
        return null;
    }
}

/// <summary>One breach of a rule.</summary>
/// <param name="Sequence">1-based position among this checker's violations.</param>
/// <param name="Rule">The rule.</param>
/// <param name="Rid">Requester.</param>
/// <param name="TimestampNs">When (the triggering event's timestamp).</param>
/// <param name="EventSequence">The triggering event's sequence on the event path (0 for checker notices).</param>
/// <param name="Event">The triggering event, decoded (its trace line).</param>
/// <param name="Outcome">What the hardware did about it.</param>
public sealed record Violation(ulong Sequence, Rule Rule, ushort Rid, long TimestampNs, ulong EventSequence, string Event, string Outcome);
