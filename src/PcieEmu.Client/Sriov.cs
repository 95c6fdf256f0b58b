using PcieEmu.Protocol.V1;

namespace PcieEmu.Client;

/// <summary>Register offsets used by the SR-IOV helpers (PCIe Base §7.5.3, SR-IOV 1.1 §3.3).</summary>
public static class PciRegs
{
    /// <summary>Capability IDs.</summary>
    public const byte CapIdPcie = 0x10, CapIdMsi = 0x05, CapIdMsix = 0x11, CapIdPm = 0x01;
    /// <summary>Extended capability IDs.</summary>
    public const ushort ExtCapIdAer = 0x0001, ExtCapIdDsn = 0x0003, ExtCapIdAri = 0x000E, ExtCapIdSriov = 0x0010;
    /// <summary>PCIe capability: Device Capabilities 2 and Device Control 2 offsets.</summary>
    public const int PcieDevCap2 = 0x24, PcieDevCtl2 = 0x28;
    /// <summary>DevCap2 ARI Forwarding Supported / DevCtl2 ARI Forwarding Enable (bit 5).</summary>
    public const uint AriForwarding = 1u << 5;
    /// <summary>SR-IOV capability register offsets.</summary>
    public const int SriovControl = 0x08, SriovStatus = 0x0A, SriovInitialVfs = 0x0C, SriovTotalVfs = 0x0E,
        SriovNumVfs = 0x10, SriovFirstVfOffset = 0x14, SriovVfStride = 0x16, SriovVfDeviceId = 0x1A;
    /// <summary>SR-IOV Control bits.</summary>
    public const ushort SriovCtlVfEnable = 1 << 0, SriovCtlVfMse = 1 << 3, SriovCtlAriHierarchy = 1 << 4;
}

public sealed partial class PcieEmuClient
{
    /// <summary>
    /// Enables <paramref name="numVfs"/> VFs on the PF at <paramref name="pfRid"/> the way Linux's
    /// sriov_enable does: checks TotalVFs and that VF Enable is clear; when the upstream port
    /// supports ARI Forwarding and the PF has an ARI capability, sets ARI Forwarding Enable in the
    /// port and ARI Capable Hierarchy in function 0's SR-IOV capability (only legal while VF Enable
    /// is clear); writes NumVFs, rereads First VF Offset and VF Stride (they depend on both),
    /// checks that the VF buses fit under the port's subordinate bus, then sets VF Enable and VF
    /// MSE in one write and waits <paramref name="settle"/> (the spec's 100 ms before VFs must
    /// answer). Returns the VFs' routing IDs. <paramref name="ari"/>: null (the default) uses ARI
    /// when the hierarchy supports it, true requires it (an error when it does not), false leaves
    /// ARI off.
    /// </summary>
    public async Task<IReadOnlyList<uint>> EnableSriovAsync(uint pfRid, int numVfs, bool? ari = null,
        TimeSpan? settle = null, CancellationToken cancellationToken = default)
    {
        if (pfRid > 0xFFFF) throw new ArgumentOutOfRangeException(nameof(pfRid), $"pfRid 0x{pfRid:X} is not a 16-bit routing ID");
        int sriov = await FindExtendedCapabilityAsync(pfRid, PciRegs.ExtCapIdSriov, cancellationToken).ConfigureAwait(false);
        if (sriov == 0) throw new InvalidOperationException($"{PciAddress.Format(pfRid)} has no SR-IOV capability");
        ushort total = await ReadConfig16Async(pfRid, sriov + PciRegs.SriovTotalVfs, cancellationToken).ConfigureAwait(false);
        if (numVfs < 1 || numVfs > total) throw new ArgumentOutOfRangeException(nameof(numVfs), $"numVfs must be 1..{total} (TotalVFs)");
        ushort ctl = await ReadConfig16Async(pfRid, sriov + PciRegs.SriovControl, cancellationToken).ConfigureAwait(false);
        if ((ctl & PciRegs.SriovCtlVfEnable) != 0) throw new InvalidOperationException($"{PciAddress.Format(pfRid)}: VF Enable is already set");

        var port = (await GetPlatformAsync(cancellationToken).ConfigureAwait(false)).RootPorts
            .FirstOrDefault(p => p.SecondaryBus == (uint)(pfRid >> 8));
        bool ariPossible = port != null && port.AriForwardingSupported
            && await FindExtendedCapabilityAsync(pfRid, PciRegs.ExtCapIdAri, cancellationToken).ConfigureAwait(false) != 0;
        if (ari == true && !ariPossible)
            throw new InvalidOperationException($"ari: {PciAddress.Format(pfRid)} or its upstream port does not support ARI");
        if (ari != false && ariPossible && port != null)
        {
            int pcie = await FindCapabilityAsync(port.Rid, PciRegs.CapIdPcie, cancellationToken).ConfigureAwait(false);
            ushort devCtl2 = await ReadConfig16Async(port.Rid, pcie + PciRegs.PcieDevCtl2, cancellationToken).ConfigureAwait(false);
            if ((devCtl2 & PciRegs.AriForwarding) == 0)
                await WriteConfig16Async(port.Rid, pcie + PciRegs.PcieDevCtl2, (ushort)(devCtl2 | PciRegs.AriForwarding), cancellationToken).ConfigureAwait(false);
            // ARI Capable Hierarchy lives in the lowest-numbered PF (RsvdP elsewhere).
            uint fn0 = pfRid & 0xFF00;
            int fn0Sriov = await FindExtendedCapabilityAsync(fn0, PciRegs.ExtCapIdSriov, cancellationToken).ConfigureAwait(false);
            if (fn0Sriov != 0)
            {
                ushort c0 = await ReadConfig16Async(fn0, fn0Sriov + PciRegs.SriovControl, cancellationToken).ConfigureAwait(false);
                if ((c0 & PciRegs.SriovCtlAriHierarchy) == 0 && (c0 & PciRegs.SriovCtlVfEnable) == 0)
                    await WriteConfig16Async(fn0, fn0Sriov + PciRegs.SriovControl, (ushort)(c0 | PciRegs.SriovCtlAriHierarchy), cancellationToken).ConfigureAwait(false);
            }
        }

        await WriteConfig16Async(pfRid, sriov + PciRegs.SriovNumVfs, (ushort)numVfs, cancellationToken).ConfigureAwait(false);
        ushort offset = await ReadConfig16Async(pfRid, sriov + PciRegs.SriovFirstVfOffset, cancellationToken).ConfigureAwait(false);
        ushort stride = await ReadConfig16Async(pfRid, sriov + PciRegs.SriovVfStride, cancellationToken).ConfigureAwait(false);
        var rids = new uint[numVfs];
        for (int i = 0; i < numVfs; i++) rids[i] = (uint)(pfRid + offset + i * stride) & 0xFFFF;
        if (port != null && rids.Any(r => r >> 8 > port.SubordinateBus))
        {
            await WriteConfig16Async(pfRid, sriov + PciRegs.SriovNumVfs, 0, cancellationToken).ConfigureAwait(false);
            throw new InvalidOperationException($"VFs would need bus {rids.Max() >> 8:x2}, beyond the port's subordinate bus {port.SubordinateBus:x2}");
        }

        ctl = await ReadConfig16Async(pfRid, sriov + PciRegs.SriovControl, cancellationToken).ConfigureAwait(false);
        await WriteConfig16Async(pfRid, sriov + PciRegs.SriovControl, (ushort)(ctl | PciRegs.SriovCtlVfEnable | PciRegs.SriovCtlVfMse), cancellationToken).ConfigureAwait(false);
        await SleepAtLeastAsync(settle ?? TimeSpan.FromMilliseconds(100), cancellationToken).ConfigureAwait(false);
        return rids;
    }

    /// <summary>
    /// Disables SR-IOV on the PF as Linux's sriov_disable does: clears VF Enable and VF MSE in one
    /// write, waits <paramref name="settle"/> (100 ms by default), then sets NumVFs to 0.
    /// </summary>
    public async Task DisableSriovAsync(uint pfRid, TimeSpan? settle = null, CancellationToken cancellationToken = default)
    {
        int sriov = await FindExtendedCapabilityAsync(pfRid, PciRegs.ExtCapIdSriov, cancellationToken).ConfigureAwait(false);
        if (sriov == 0) throw new InvalidOperationException($"{PciAddress.Format(pfRid)} has no SR-IOV capability");
        ushort ctl = await ReadConfig16Async(pfRid, sriov + PciRegs.SriovControl, cancellationToken).ConfigureAwait(false);
        await WriteConfig16Async(pfRid, sriov + PciRegs.SriovControl, (ushort)(ctl & ~(PciRegs.SriovCtlVfEnable | PciRegs.SriovCtlVfMse)), cancellationToken).ConfigureAwait(false);
        await SleepAtLeastAsync(settle ?? TimeSpan.FromMilliseconds(100), cancellationToken).ConfigureAwait(false);
        await WriteConfig16Async(pfRid, sriov + PciRegs.SriovNumVfs, 0, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Sleeps at least <paramref name="time"/> by the monotonic clock: a timer may fire up to a
    /// millisecond early, and a driver's 100 ms settle time must never be 99.x ms.</summary>
    private static async Task SleepAtLeastAsync(TimeSpan time, CancellationToken cancellationToken)
    {
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        for (var left = time; left > TimeSpan.Zero; left = time - System.Diagnostics.Stopwatch.GetElapsedTime(start))
            await Task.Delay(left < TimeSpan.FromMilliseconds(1) ? TimeSpan.FromMilliseconds(1) : left, cancellationToken).ConfigureAwait(false);
    }
}
