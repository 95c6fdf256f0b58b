using PcieEmu.Core.AddressSpace;
using PcieEmu.Core.Config;
using PcieEmu.Core.Config.Capabilities;
using PcieEmu.Core.Memory;
using PcieEmu.Core.Topology;

namespace PcieEmu.Core.Platform;

/// <summary>One implemented BAR of a function as software sizes it.</summary>
/// <param name="Index">BAR index (0-5, 6 = expansion ROM).</param>
/// <param name="Kind">Memory32, Memory64, I/O or ROM.</param>
/// <param name="Size">Size of the function's own window (for a VF: the per-VF size, System Page Size included).</param>
/// <param name="Prefetchable">Prefetchable memory.</param>
public readonly record struct FunctionBar(int Index, BarKind Kind, ulong Size, bool Prefetchable)
{
    /// <summary>The low type bits the BAR register reads back.</summary>
    public uint TypeBits => Kind switch
    {
        BarKind.Io => 0x1,
        BarKind.Memory64 => 0x4u | (Prefetchable ? 0x8u : 0),
        BarKind.Memory32 => Prefetchable ? 0x8u : 0,
        _ => 0,
    };
}

/// <summary>A consistent snapshot of what a function is, taken under the machine lock.</summary>
/// <param name="Rid">Routing ID now.</param>
/// <param name="Name">Short name (PF0, PF0.VF1 ...).</param>
/// <param name="VendorId">Vendor ID as software sees it (a VF: its PF's).</param>
/// <param name="DeviceId">Device ID as software sees it (a VF: the SR-IOV VF Device ID).</param>
/// <param name="IsVirtual">An SR-IOV VF (its BARs and Memory Space Enable live in the PF).</param>
/// <param name="Bars">Implemented BARs in index order.</param>
/// <param name="InterruptPin">Interrupt Pin (0 = no INTx).</param>
/// <param name="MsixVectors">MSI-X table size (0 = no MSI-X).</param>
/// <param name="MsixOffset">Offset of the MSI-X capability (0 = none).</param>
/// <param name="MsixTableBar">BAR holding the MSI-X table.</param>
/// <param name="MsixTableOffset">Offset of the table in that BAR.</param>
/// <param name="PcieOffset">Offset of the PCI Express capability, 0 when none.</param>
/// <param name="FlrCapable">Device Capabilities advertises Function Level Reset.</param>
public sealed record FunctionDescription(ushort Rid, string Name, ushort VendorId, ushort DeviceId, bool IsVirtual,
    IReadOnlyList<FunctionBar> Bars, byte InterruptPin, int MsixVectors, int MsixOffset, int MsixTableBar, uint MsixTableOffset,
    int PcieOffset, bool FlrCapable)
{
    /// <summary>Size of config space software may address: 4 KiB for PCI Express functions, 256 B otherwise.</summary>
    public int ConfigSize => PcieOffset != 0 ? ConfigSpace.Size : 256;

    /// <summary>The BAR with <paramref name="index"/>, or null.</summary>
    public FunctionBar? Bar(int index)
    {
        foreach (var b in Bars) if (b.Index == index) return b;
        return null;
    }
}

public sealed partial class Machine
{
    private KeyValuePair<ushort, IDmaMemory>[] _dmaMemories = [];

    /// <summary>
    /// Chooses the memory DMA from routing ID <paramref name="rid"/> reaches: <paramref name="memory"/>
    /// (for example the memory of a virtual machine the function is assigned to) instead of RAM
    /// through the remapping unit; null restores RAM. The choice follows the routing ID, so a VF
    /// that is disabled and enabled again keeps it.
    /// </summary>
    public void SetDmaMemory(ushort rid, IDmaMemory? memory)
    {
        lock (SyncRoot)
        {
            var list = _dmaMemories.Where(kv => kv.Key != rid).ToList();
            if (memory != null) list.Add(new(rid, memory));
            Volatile.Write(ref _dmaMemories, [.. list]);
        }
    }

    /// <summary>The memory chosen for <paramref name="rid"/>'s DMA, or null for RAM behind the remapping unit.</summary>
    internal IDmaMemory? DmaMemoryFor(ushort rid)
    {
        var all = Volatile.Read(ref _dmaMemories);
        for (int i = 0; i < all.Length; i++) if (all[i].Key == rid) return all[i].Value;
        return null;
    }

    /// <summary>Describes the function that answers config requests at <paramref name="rid"/> now, or null.</summary>
    public FunctionDescription? DescribeFunction(ushort rid)
    {
        lock (SyncRoot)
        {
            var f = RouteConfig(rid);
            if (f == null) return null;
            var bars = new List<FunctionBar>();
            var defs = f is VirtualFunction vf ? vf.VfBars : f.Bars;
            foreach (var d in defs) bars.Add(new FunctionBar(d.Index, d.Kind, f.BarWindow(d).Size, d.Prefetchable));
            bars.Sort((a, b) => a.Index.CompareTo(b.Index));
            var msix = f.Find<MsixCapability>();
            var pcie = f.Find<PcieCapability>();
            bool flr = pcie != null && (f.Config.ReadRaw(pcie.Offset + PcieCapability.DevCap, 4) & PcieCapability.DevCapFlr) != 0;
            return new FunctionDescription(f.Rid, f.Name, f.VendorId, f.DeviceId, f.IsVirtual, bars,
                (byte)f.Config.ReadRaw(ConfigRegs.InterruptPin, 1), msix?.Vectors ?? 0, msix?.Offset ?? 0, msix?.TableBar ?? 0, msix?.TableOffset ?? 0,
                pcie?.Offset ?? 0, flr);
        }
    }

    /// <summary>
    /// A CPU read at <paramref name="offset"/> inside BAR <paramref name="bar"/> of the function at
    /// <paramref name="rid"/>: the address is the BAR's current base plus the offset, decoded as any other
    /// memory request (so Memory Space Enable, VF MSE and power state apply), or as an I/O request for an
    /// I/O BAR (1, 2 or 4 bytes). Unsupported Request when the function, the BAR or an assigned window is
    /// missing or the access leaves the BAR.
    /// </summary>
    public ReadResult ReadBar(ushort rid, int bar, ulong offset, int width)
    {
        lock (SyncRoot)
        {
            if (!TryBarAddress(rid, bar, offset, width, out ulong address, out bool io)) return ReadResult.Unsupported(width);
            return io ? ReadIo(address, width) : ReadMmio(address, width);
        }
    }

    /// <summary>A CPU memory write inside a function's BAR (see <see cref="ReadBar"/>). Posted.</summary>
    public CompletionStatus WriteBar(ushort rid, int bar, ulong offset, int width, ulong value)
    {
        lock (SyncRoot)
        {
            if (!TryBarAddress(rid, bar, offset, width, out ulong address, out bool io)) return CompletionStatus.UnsupportedRequest;
            return io ? WriteIo(address, width, (uint)value) : WriteMmio(address, width, value);
        }
    }

    // The address of [offset, +width) inside the function's BAR now; an I/O BAR gives a port (width at most 4).
    private bool TryBarAddress(ushort rid, int bar, ulong offset, int width, out ulong address, out bool io)
    {
        address = 0;
        io = false;
        var f = RouteConfig(rid);
        if (f == null) return false;
        var defs = f is VirtualFunction vf ? vf.VfBars : f.Bars;
        foreach (var d in defs)
        {
            if (d.Index != bar || (d.IsIo && width > 4)) continue;
            var (b, s) = f.BarWindow(d);
            if (b == 0 || offset >= s || s - offset < (ulong)width) return false;
            address = b + offset;
            io = d.IsIo;
            return true;
        }
        return false;
    }
}
