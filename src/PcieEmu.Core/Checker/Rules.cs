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
        "SR-IOV 1.1 §3.3.10 (NumVFs)",
        "NumVFs may only be written while VF Enable is clear.",
        "Clear VF Enable (and wait for the VFs to go) before changing NumVFs.",
        "A config write that covers NumVFs of a PF whose SR-IOV Control has VF Enable = 1.");

    /// <summary>Config request to a VF less than 100 ms after VF Enable.</summary>
    public static readonly Rule VfAccessBefore100Ms = new("SRIOV.VF_ACCESS_BEFORE_100MS", RuleSeverity.Error,
        "SR-IOV 1.1 §3.3.3.1 (VF Enable)",
        "Software must wait 100 ms after setting VF Enable before it issues config requests to the VFs.",
        "Sleep 100 ms after setting VF Enable (as Linux's sriov_enable does) before touching VF config space.",
        "A config request to a VF whose VF Enable 0->1 happened less than 100 ms earlier (machine clock).");

    /// <summary>Request to a function less than 100 ms after its FLR.</summary>
    public static readonly Rule AccessAfterFlrBefore100Ms = new("PCI.ACCESS_AFTER_FLR_BEFORE_100MS", RuleSeverity.Error,
        "PCIe Base 3.0 §6.6.2 (Function Level Reset)",
        "A function has up to 100 ms to complete an FLR; software must not access it before then.",
        "Wait 100 ms after writing Initiate Function Level Reset before the next config or MMIO access to the function.",
        "A config or MMIO request to a function less than 100 ms after its FLR (machine clock).");

    /// <summary>Device DMA attempted while Bus Master Enable is clear.</summary>
    public static readonly Rule BusMasterOff = new("DMA.BUS_MASTER_OFF", RuleSeverity.Error,
        "PCIe Base 3.0 §7.5.1.1 (Command register, Bus Master Enable)",
        "A function with Bus Master Enable clear may not issue memory requests; work given to it is lost.",
        "Set Bus Master Enable in the Command register before enabling rings or interrupts.",
        "A DMA of the function that its DMA port blocked because Bus Master Enable is 0.");

    /// <summary>Device DMA to an address that is not memory.</summary>
    public static readonly Rule DmaUnsupportedRequest = new("DMA.UNSUPPORTED_REQUEST", RuleSeverity.Error,
        "PCIe Base 3.0 §2.3.1 (Request Handling Rules)",
        "A memory request to an address nobody claims completes as Unsupported Request.",
        "The driver programmed a DMA address (ring base, buffer) outside RAM; check the addresses it hands the device.",
        "A DMA whose (translated) address is not RAM.");

    /// <summary>A DMA remapping fault.</summary>
    public static readonly Rule VtdFault = new("VTD.FAULT", RuleSeverity.Error,
        "VT-d 3.x §7.1 (remapping fault conditions and reasons)",
        "The remapping unit refused a DMA of the function: the driver used an address its domain does not map for that access.",
        "Map the buffer for the device (dma_map_*) with the right direction before handing its address to the device.",
        "Every remapping fault the VT-d unit records or collapses.");

    /// <summary>MSI-X table entry changed while unmasked.</summary>
    public static readonly Rule MsixTableWriteWhileUnmasked = new("MSIX.TABLE_WRITE_WHILE_UNMASKED", RuleSeverity.Warning,
        "PCIe Base 3.0 §6.1.4.5 (per-vector masking)",
        "Changing the Message Address or Data of an MSI-X entry while it is unmasked gives undefined results.",
        "Set the entry's Mask bit (or the Function Mask) before rewriting its address or data, then unmask.",
        "An MMIO write to an entry's Message Address / Upper Address / Data while MSI-X is enabled, the Function Mask is clear and the entry's Mask bit is clear.");

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
        VtdFault, MsixTableWriteWhileUnmasked, CheckerEventsLost,
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
