namespace PcieEmu.Core.Config.Capabilities;

/// <summary>Advanced Error Reporting extended capability (ID 0x0001, v1, PCIe Base §7.8.4).
/// Endpoints have 0x2C bytes (through the header log); root ports add the root error
/// registers (0x38 bytes).</summary>
/// <param name="isRootPort">Adds Root Error Command/Status and Error Source ID.</param>
/// <param name="uncorrectableImplemented">Implemented uncorrectable error bits (status RW1C, mask and severity RW).</param>
/// <param name="severityReset">Uncorrectable Error Severity at reset.</param>
/// <param name="correctableImplemented">Implemented correctable error bits (status RW1C, mask RW).</param>
/// <param name="correctableMaskReset">Correctable Error Mask at reset (Advisory Non-Fatal masked).</param>
public sealed class AerCapability(
    bool isRootPort = false,
    uint uncorrectableImplemented = 0x001F_F030,
    uint severityReset = 0x0006_2011,
    uint correctableImplemented = 0x0000_31C1,
    uint correctableMaskReset = 0x0000_2000) : Capability
{
    /// <summary>Register offsets inside the capability.</summary>
    public const int UncorStatus = 0x04, UncorMask = 0x08, UncorSeverity = 0x0C, CorStatus = 0x10, CorMask = 0x14,
        CapControl = 0x18, HeaderLog = 0x1C, RootCommand = 0x2C, RootStatus = 0x30, ErrorSourceId = 0x34;

    /// <inheritdoc/>
    public override int Length => isRootPort ? 0x38 : 0x2C;
    /// <inheritdoc/>
    public override bool IsExtended => true;
    /// <inheritdoc/>
    public override ushort Id => 0x0001;

    /// <inheritdoc/>
    protected internal override void Install(ConfigSpace cs)
    {
        int o = Offset;
        cs.SetW1c(o + UncorStatus, 4, uncorrectableImplemented);
        cs.SetWritable(o + UncorMask, 4, uncorrectableImplemented);
        cs.Init(o + UncorSeverity, 4, severityReset);
        cs.SetWritable(o + UncorSeverity, 4, uncorrectableImplemented);
        cs.SetW1c(o + CorStatus, 4, correctableImplemented);
        cs.Init(o + CorMask, 4, correctableMaskReset);
        cs.SetWritable(o + CorMask, 4, correctableImplemented);
        // Capabilities and Control: First Error Pointer (ROS); ECRC generation/check not capable.
        // Status (RW1CS), mask and severity (RWS), First Error Pointer and the header log (ROS)
        // survive FLR and hot reset (PCIe Base §7.8.4).
        cs.SetSticky(o + UncorStatus, 4, uncorrectableImplemented);
        cs.SetSticky(o + UncorMask, 4, uncorrectableImplemented);
        cs.SetSticky(o + UncorSeverity, 4, uncorrectableImplemented);
        cs.SetSticky(o + CorStatus, 4, correctableImplemented);
        cs.SetSticky(o + CorMask, 4, correctableImplemented);
        cs.SetSticky(o + CapControl, 4, 0x1F);
        for (int i = 0; i < 16; i += 4) cs.SetSticky(o + HeaderLog + i, 4, 0xFFFF_FFFF);
        if (isRootPort)
        {
            cs.SetWritable(o + RootCommand, 4, 0x7);
            cs.SetW1c(o + RootStatus, 4, 0x7F);
        }
    }
}

/// <summary>Device Serial Number extended capability (ID 0x0003, PCIe Base §7.9.3), 12 bytes, RO.</summary>
/// <param name="serial">The 64-bit serial (an EUI-64, e.g. derived from the MAC address).</param>
public sealed class DsnCapability(ulong serial) : Capability
{
    /// <inheritdoc/>
    public override int Length => 12;
    /// <inheritdoc/>
    public override bool IsExtended => true;
    /// <inheritdoc/>
    public override ushort Id => 0x0003;

    /// <summary>The serial number.</summary>
    public ulong Serial => serial;

    /// <inheritdoc/>
    protected internal override void Install(ConfigSpace cs)
    {
        cs.Init(Offset + 4, 4, (uint)serial);
        cs.Init(Offset + 8, 4, (uint)(serial >> 32));
    }
}

/// <summary>Alternative Routing-ID Interpretation extended capability (ID 0x000E, PCIe Base §7.8.7), 8 bytes.
/// Neither MFVC nor ACS function groups are supported, so ARI Control is hardwired to 0.</summary>
/// <param name="nextFunction">Next Function Number (0 ends the list).</param>
public sealed class AriCapability(byte nextFunction) : Capability
{
    /// <inheritdoc/>
    public override int Length => 8;
    /// <inheritdoc/>
    public override bool IsExtended => true;
    /// <inheritdoc/>
    public override ushort Id => 0x000E;

    /// <summary>Next Function Number.</summary>
    public byte NextFunction => nextFunction;

    /// <inheritdoc/>
    protected internal override void Install(ConfigSpace cs)
    {
        cs.Init(Offset + 4, 2, (uint)nextFunction << 8);
        cs.Init(Offset + 6, 2, 0);
    }
}

/// <summary>Bytes a part keeps at a fixed offset outside any capability list (e.g. the 82576's
/// unlinked VPD header at 0xE0). Read-only; not chained.</summary>
public static class OrphanBytes
{
    /// <summary>Writes read-only bytes at <paramref name="offset"/>.</summary>
    public static void Install(ConfigSpace cs, int offset, ReadOnlySpan<byte> bytes)
    {
        for (int i = 0; i < bytes.Length; i++) cs.Init(offset + i, 1, bytes[i]);
    }
}
