namespace PcieEmu.Core.Config.Capabilities;

/// <summary>
/// Access Control Services extended capability (ID 0x000D, v1, PCIe Base §7.7.8), 8 bytes: no
/// Egress Control, so no egress control vector. ACS Capability (offset 4) is read-only; each ACS
/// Control bit (offset 6) is read/write when its capability is implemented and hardwired to 0
/// otherwise; Control is 0 at reset (software enables what it wants, as Linux's pci_enable_acs does).
/// </summary>
public sealed class AcsCapability : Capability
{
    private readonly ushort _capabilities;

    /// <summary>An ACS capability advertising <paramref name="capabilities"/> (<see cref="SourceValidation"/> ...).</summary>
    public AcsCapability(ushort capabilities)
    {
        if ((capabilities & EgressControl) != 0)
            throw new ArgumentException("Egress Control needs an egress control vector, which this capability does not model", nameof(capabilities));
        if ((capabilities & ~0x7F) != 0)
            throw new ArgumentException($"ACS Capability 0x{capabilities:X4} sets bits above Direct Translated P2P (6)", nameof(capabilities));
        _capabilities = capabilities;
    }

    /// <summary>Register offsets inside the capability.</summary>
    public const int CapabilityRegister = 0x04, ControlRegister = 0x06;
    /// <summary>ACS Capability / Control bits.</summary>
    public const ushort SourceValidation = 1 << 0, TranslationBlocking = 1 << 1, P2pRequestRedirect = 1 << 2,
        P2pCompletionRedirect = 1 << 3, UpstreamForwarding = 1 << 4, EgressControl = 1 << 5, DirectTranslatedP2p = 1 << 6;
    /// <summary>What a root port of the emulated Intel IIO family advertises: SV, TB, RR, CR, UF (no egress control, no direct translated P2P).</summary>
    public const ushort IntelRootPort = SourceValidation | TranslationBlocking | P2pRequestRedirect | P2pCompletionRedirect | UpstreamForwarding;

    /// <inheritdoc/>
    public override int Length => 8;
    /// <inheritdoc/>
    public override bool IsExtended => true;
    /// <inheritdoc/>
    public override ushort Id => 0x000D;

    /// <summary>The advertised ACS Capability bits.</summary>
    public ushort Capabilities => _capabilities;

    /// <inheritdoc/>
    protected internal override void Install(ConfigSpace cs)
    {
        cs.Init(Offset + CapabilityRegister, 2, _capabilities);
        cs.Init(Offset + ControlRegister, 2, 0);
        cs.SetWritable(Offset + ControlRegister, 2, _capabilities);
    }
}
