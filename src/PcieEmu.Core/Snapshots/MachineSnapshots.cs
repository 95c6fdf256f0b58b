using System.Buffers.Binary;
using System.Globalization;
using PcieEmu.Core.Config;
using PcieEmu.Core.Config.Capabilities;
using PcieEmu.Core.Devices.Igb;
using PcieEmu.Core.Iommu;
using PcieEmu.Core.Platform;
using PcieEmu.Core.Registers;
using PcieEmu.Core.Topology;

namespace PcieEmu.Core.Snapshots;

/// <summary>
/// Consistent read-only views of the machine for live displays (the server's web view): each
/// method takes the machine lock once and copies what it shows. Nothing here changes machine
/// state: config and BAR registers are read from their stored values (no read side effects),
/// translations are dry runs that leave the IOTLB and the fault registers alone.
/// </summary>
public static class MachineSnapshots
{
    private static readonly CultureInfo Ic = CultureInfo.InvariantCulture;

    /// <summary>Descriptors shown per ring (a window starting a few entries before the head).</summary>
    public const int DescriptorWindow = 16;

    /// <summary>The functions that answer config requests now, as a tree.</summary>
    public static TopologySnapshot Topology(Machine machine)
    {
        ArgumentNullException.ThrowIfNull(machine);
        lock (machine.SyncRoot)
        {
            var nodes = new List<TopologyNode>();
            foreach (var f in machine.EnumerateFunctions())
            {
                (string kind, ushort? parent) = f switch
                {
                    HostBridge => ("host-bridge", (ushort?)null),
                    RootPort => ("root-port", machine.HostBridge.Rid),
                    VirtualFunction vf => ("vf", vf.PhysicalFunction.Rid),
                    _ => ("pf", machine.RootPort.Rid),
                };
                nodes.Add(new TopologyNode(f.Rid, Bdf.Format(f.Rid), f.Name, kind, parent, f.VendorId, f.DeviceId, f.ClassCode));
            }
            return new TopologySnapshot(machine.TopologyVersion, machine.RootPort.AriForwardingEnabled, machine.RootPort.SecondaryBus, nodes);
        }
    }

    /// <summary>The function at <paramref name="rid"/> now (config decoded, BAR0 registers, MSI-X, rings), or null when none answers there.</summary>
    public static FunctionSnapshot? Function(Machine machine, ushort rid)
    {
        ArgumentNullException.ThrowIfNull(machine);
        lock (machine.SyncRoot)
        {
            var f = machine.RouteConfig(rid);
            if (f == null) return null;
            int size = f.Find<PcieCapability>() != null ? ConfigSpace.Size : 256;
            var config = new byte[size];
            for (int o = 0; o < size; o += 4) BinaryPrimitives.WriteUInt32LittleEndian(config.AsSpan(o), f.ReadConfig(o, 4));

            var msixCap = f.Find<MsixCapability>();
            var msix = new List<MsixEntryValue>();
            if (f.MsixTable is { } table)
                for (int v = 0; v < table.Vectors; v++)
                    msix.Add(new MsixEntryValue(v, table.Address(v), table.Data(v), table.EntryMasked(v), table.IsPending(v)));

            var bar0 = f.GetBarRegion(0) as RegisterFile;
            return new FunctionSnapshot(f.Rid, Bdf.Format(f.Rid), f.Name, f.IsVirtual, config, Decode(config, f.Capabilities),
                bar0 == null ? [] : BarRegisters(bar0), msixCap?.Enabled ?? false, msixCap?.FunctionMasked ?? false, msix,
                bar0 == null ? [] : Rings(machine, f, bar0));
        }
    }

    /// <summary>The header and every capability of <paramref name="config"/> decoded with the names of the trace (<see cref="ConfigLayout"/>).</summary>
    public static IReadOnlyList<ConfigGroup> Decode(ReadOnlySpan<byte> config, IReadOnlyList<Capability> capabilities)
    {
        ArgumentNullException.ThrowIfNull(capabilities);
        var groups = new List<ConfigGroup>();
        bool type1 = (config[ConfigRegs.HeaderType] & 0x7F) == 1;
        var header = new List<ConfigRegisterValue>();
        foreach (var r in ConfigLayout.HeaderRegisters(type1).OrderBy(r => r.Offset))
            header.Add(Value(config, r, r.Offset, r.Name));
        groups.Add(new ConfigGroup(type1 ? "Type 1 Header" : "Type 0 Header", 0, 0x40, false, 0, header));
        foreach (var cap in capabilities.OrderBy(c => c.Offset))
        {
            if (cap.Offset + cap.Length > config.Length) continue;
            string name = ConfigLayout.NameOf(cap);
            var regs = new List<ConfigRegisterValue>
            {
                Value(config, new ConfigRegister(0, cap.IsExtended ? 4 : 2, "Capability Header",
                    cap.IsExtended
                        ? [new ConfigField("Capability ID", 0xFFFF), new ConfigField("Capability Version", 0xF_0000), new ConfigField("Next Capability Offset", 0xFFF0_0000)]
                        : [new ConfigField("Capability ID", 0xFF), new ConfigField("Next Capability Pointer", 0xFF00)]),
                    cap.Offset, $"{name} Capability Header"),
            };
            foreach (var r in ConfigLayout.RegistersOf(cap).OrderBy(r => r.Offset))
                if (r.Offset + r.Width <= cap.Length) regs.Add(Value(config, r, cap.Offset + r.Offset, ConfigLayout.QualifiedName(cap, r)));
            groups.Add(new ConfigGroup(name, cap.Offset, cap.Length, cap.IsExtended, cap.Id, regs));
        }
        return groups;
    }

    private static ConfigRegisterValue Value(ReadOnlySpan<byte> config, ConfigRegister r, int offset, string name)
    {
        uint v = 0;
        for (int i = 0; i < r.Width; i++) v |= (uint)config[offset + i] << (8 * i);
        return new ConfigRegisterValue(offset, r.Width, name, v, [.. r.Fields.Select(f => Field(f.Name, f.Mask, v))]);
    }

    private static FieldValue Field(string name, uint mask, uint value) =>
        new(name, mask, mask == 0 ? 0 : (value & mask) >> System.Numerics.BitOperations.TrailingZeroCount(mask));

    private static List<BarRegisterValue> BarRegisters(RegisterFile file)
    {
        var list = new List<BarRegisterValue>(file.Entries.Count);
        foreach (var e in file.Entries.OrderBy(e => e.Offset))
        {
            var reg = e.Register;
            uint v = reg.Value;
            list.Add(new BarRegisterValue(e.Offset, e.Name, v, e.IsAlias, reg.ReadHandler != null,
                [.. reg.Spec.Fields.Where(f => f.Width < 32).Select(f => Field(f.Name, f.Mask, v))]));
        }
        return list;
    }

    private static uint Stored(RegisterFile file, string name) => file.Contains(name) ? file[name].Value : 0;

    private static List<RingValue> Rings(Machine machine, PciFunction f, RegisterFile file)
    {
        var rings = new List<RingValue>();
        for (int q = 0; file.Contains(IgbRegisterMaps.Q("RDBAL", q)); q++)
        {
            foreach (bool rx in (bool[])[false, true])
            {
                string p = rx ? "R" : "T";
                ulong baseAddr = (ulong)Stored(file, IgbRegisterMaps.Q(p + "DBAH", q)) << 32 | Stored(file, IgbRegisterMaps.Q(p + "DBAL", q));
                uint len = Stored(file, IgbRegisterMaps.Q(p + "DLEN", q));
                uint head = Stored(file, IgbRegisterMaps.Q(p + "DH", q)), tail = Stored(file, IgbRegisterMaps.Q(p + "DT", q));
                bool enabled = (Stored(file, IgbRegisterMaps.Q(rx ? "RXDCTL" : "TXDCTL", q)) & (1u << 25)) != 0;
                bool advancedRx = ((Stored(file, IgbRegisterMaps.Q("SRRCTL", q)) >> 25) & 7) != 0;
                if (len == 0 && baseAddr == 0 && !enabled) continue;
                var (descs, note) = Descriptors(machine, f.Rid, baseAddr, len, head, tail, rx, advancedRx);
                rings.Add(new RingValue(rx ? "rx" : "tx", q, baseAddr, len, head, tail, enabled, descs, note));
            }
        }
        return rings;
    }

    private static (List<DescriptorValue>, string?) Descriptors(Machine machine, ushort rid, ulong baseAddr, uint len, uint head, uint tail, bool rx, bool advancedRx)
    {
        var list = new List<DescriptorValue>();
        int count = (int)(len / 16);
        if (count == 0) return (list, "ring length is 0");
        if (machine.DmaMemoryFor(rid) != null) return (list, "the function's DMA goes to a VM's memory (vfio-user): descriptors not shown");
        int shown = Math.Min(count, DescriptorWindow);
        // The whole ring when it fits, else a window starting 4 entries before the head.
        int start = shown == count ? 0 : (int)((head + (uint)count - 4) % (uint)count);
        Span<byte> d = stackalloc byte[16];
        for (int i = 0; i < shown; i++)
        {
            int index = (start + i) % count;
            ulong iova = baseAddr + (ulong)index * 16;
            ulong? pa = DeviceToHost(machine, rid, iova, out string? why);
            if (pa is not { } a || !machine.Ram.Contains(a, 16))
                return (list, why ?? $"descriptor {index} at {Events.TraceFormat.Addr(iova)} is outside RAM");
            machine.Ram.Read(a, d);
            ulong lo = BinaryPrimitives.ReadUInt64LittleEndian(d), hi = BinaryPrimitives.ReadUInt64LittleEndian(d[8..]);
            bool hw = head <= tail ? index >= head && index < tail : index >= head || index < tail;
            list.Add(new DescriptorValue(index, iova, lo, hi, hw ? "hw" : "sw", rx ? DecodeRx(lo, hi, advancedRx) : DecodeTx(lo, hi)));
        }
        return (list, null);
    }

    /// <summary>Where a device read of <paramref name="iova"/> lands now (a dry run: no cache fill, no fault recorded).</summary>
    private static ulong? DeviceToHost(Machine machine, ushort rid, ulong iova, out string? why)
    {
        why = null;
        if (!machine.Iommu.TranslationEnabled) return iova;
        var r = machine.Iommu.Probe(rid, iova, write: false, dryRun: true);
        if (r.Status == VtdProbeStatus.Fault)
        {
            why = $"the ring at {Events.TraceFormat.Addr(iova)} does not translate (fault reason 0x{(byte)r.FaultReason:X2} {r.FaultReason})";
            return null;
        }
        return r.TranslatedAddress;
    }

    /// <summary>An 82576 TX descriptor: advanced data/context (DEXT) or legacy.</summary>
    public static string DecodeTx(ulong lo, ulong hi)
    {
        uint cmdTypeLen = (uint)hi, status = (uint)(hi >> 32);
        bool dext = (cmdTypeLen & (1u << 29)) != 0;
        bool dd = (status & 1) != 0;
        if (!dext)
        {
            return string.Create(Ic, $"legacy buf {Events.TraceFormat.Addr(lo)} len {cmdTypeLen & 0xFFFF} CMD 0x{cmdTypeLen >> 24:X2}{Flags(cmdTypeLen >> 24, (0, "EOP"), (1, "IFCS"), (3, "RS"), (6, "VLE"))} STA DD={(dd ? 1 : 0)}");
        }
        uint dtyp = (cmdTypeLen >> 20) & 0xF;
        if (dtyp == 2)
            return string.Create(Ic, $"adv context MACLEN {(lo >> 9) & 0x7F} IPLEN {lo & 0x1FF} VLAN 0x{(lo >> 16) & 0xFFFF:X4} TUCMD 0x{(cmdTypeLen >> 9) & 0x7FF:X3} MSS {hi >> 48} L4LEN {(hi >> 40) & 0xFF}");
        return string.Create(Ic, $"adv data buf {Events.TraceFormat.Addr(lo)} len {cmdTypeLen & 0xFFFF} DCMD 0x{cmdTypeLen >> 24:X2}{Flags(cmdTypeLen >> 24, (0, "EOP"), (1, "IFCS"), (3, "RS"), (5, "DEXT"), (6, "VLE"), (7, "TSE"))} PAYLEN {status >> 14} POPTS 0x{(status >> 8) & 0x3F:X2} STA DD={(dd ? 1 : 0)}");
    }

    /// <summary>An 82576 RX descriptor: written back (DD set) or as software posted it (advanced one-buffer or legacy).</summary>
    public static string DecodeRx(ulong lo, ulong hi, bool advanced)
    {
        if (!advanced)
        {
            bool ldd = (hi & (1UL << 32)) != 0;
            return ldd
                ? string.Create(Ic, $"legacy write-back len {hi & 0xFFFF} STATUS 0x{(hi >> 32) & 0xFF:X2}{Flags((uint)(hi >> 32) & 0xFF, (0, "DD"), (1, "EOP"), (3, "VP"))} ERRORS 0x{(hi >> 40) & 0xFF:X2} VLAN 0x{hi >> 48:X4}")
                : $"legacy read buf {Events.TraceFormat.Addr(lo)} DD=0";
        }
        if ((hi & 1) == 0) return $"adv read pkt {Events.TraceFormat.Addr(lo)} hdr {Events.TraceFormat.Addr(hi)} DD=0";
        uint staterr = (uint)hi & 0xF_FFFF;
        return string.Create(Ic, $"adv write-back PKT_LEN {(hi >> 32) & 0xFFFF} VLAN 0x{hi >> 48:X4} STATUS 0x{staterr:X5}{Flags(staterr, (0, "DD"), (1, "EOP"), (3, "VP"), (5, "L4I"), (6, "IPCS"))} RSS 0x{lo >> 32:X8} PKTTYPE 0x{(lo >> 4) & 0x1FFF:X4}");
    }

    private static string Flags(uint value, params (int Bit, string Name)[] names)
    {
        var set = names.Where(n => (value & (1u << n.Bit)) != 0).Select(n => n.Name).ToList();
        return set.Count == 0 ? "" : " (" + string.Join(' ', set) + ")";
    }

    /// <summary>The remapping unit now; with <paramref name="walkRid"/> and <paramref name="walkIova"/>, the walk of that request through the tables.</summary>
    public static IommuSnapshot Iommu(Machine machine, ushort? walkRid = null, ulong? walkIova = null)
    {
        ArgumentNullException.ThrowIfNull(machine);
        lock (machine.SyncRoot)
        {
            var u = machine.Iommu;
            var faults = new List<FaultRecordValue>();
            for (int i = 0; i < VtdRegs.FaultRecordCount; i++)
            {
                var r = u.ReadFaultRecord(i);
                faults.Add(new FaultRecordValue(i, r.Fault, Bdf.Format(r.SourceId), (int)r.Reason, Words(r.Reason.ToString()), !r.IsRead, r.PageAddress));
            }
            var iotlb = u.IotlbEntries()
                .OrderBy(e => e.SourceId).ThenBy(e => e.Iova)
                .Select(e => new IotlbEntryValue(Bdf.Format(e.SourceId), e.DomainId, e.Iova, 1UL << (3 + 9 * e.Level), e.PageBase, e.Read, e.Write))
                .ToList();
            PageWalk? walk = walkRid is { } rid && walkIova is { } iova ? Walk(machine, rid, iova) : null;
            return new IommuSnapshot(u.TranslationEnabled, u.QueuedInvalidationEnabled, u.ActiveRootTable, (uint)u.Read(VtdRegs.Fsts, 4),
                u.IotlbHits, u.IotlbMisses, u.ContextFetches, u.IotlbCapacity, iotlb, faults, walk);
        }
    }

    private static PageWalk Walk(Machine machine, ushort rid, ulong iova)
    {
        var u = machine.Iommu;
        var steps = new List<WalkStep>();
        var probe = u.Probe(rid, iova, write: false, dryRun: true);
        string result = probe.Status switch
        {
            VtdProbeStatus.Translated => "translated",
            VtdProbeStatus.PassThrough => "pass-through",
            VtdProbeStatus.TranslationDisabled => "translation disabled",
            _ => "fault",
        };
        string? reason = probe.Status == VtdProbeStatus.Fault ? $"0x{(byte)probe.FaultReason:X2} {Words(probe.FaultReason.ToString())}" : null;
        var done = new PageWalk(Bdf.Format(rid), iova, steps, result, probe.TranslatedAddress, reason);
        ulong rootAddr = u.ActiveRootTable + (ulong)(rid >> 8) * 16;
        if (!TryRead16(machine, rootAddr, out ulong rlo, out ulong rhi)) return done;
        bool rp = (rlo & 1) != 0;
        ulong ctp = rlo & ~0xFFFUL & ((1UL << 52) - 1);
        steps.Add(new WalkStep("root", rootAddr, rlo, rhi, string.Create(Ic, $"P={(rp ? 1 : 0)} CTP {Events.TraceFormat.Addr(ctp)}")));
        if (!rp) return done;
        ulong ctxAddr = ctp + (ulong)(rid & 0xFF) * 16;
        if (!TryRead16(machine, ctxAddr, out ulong clo, out ulong chi)) return done;
        bool cp = (clo & 1) != 0;
        int tt = (int)((clo >> 2) & 3), aw = (int)(chi & 7);
        ulong slpt = clo & ~0xFFFUL & ((1UL << 52) - 1);
        steps.Add(new WalkStep("context", ctxAddr, clo, chi, string.Create(Ic,
            $"P={(cp ? 1 : 0)} FPD={(clo >> 1) & 1} TT={tt}{(tt == 2 ? " (pass-through)" : "")} SLPTPTR {Events.TraceFormat.Addr(slpt)} AW={aw} ({30 + 9 * aw}-bit) DID {(chi >> 8) & 0xFFFF}")));
        if (!cp || tt == 2 || aw is < 1 or > 3) return done;
        int levels = aw + 2;
        ulong table = slpt;
        string[] names = ["PTE", "PDE", "PDPE", "PML4E", "PML5E"];
        Span<byte> b = stackalloc byte[8];
        for (int level = levels; level >= 1; level--)
        {
            ulong idx = (iova >> (12 + 9 * (level - 1))) & 0x1FF;
            ulong at = table + idx * 8;
            if (!machine.Ram.Contains(at, 8)) break;
            machine.Ram.Read(at, b);
            ulong e = BinaryPrimitives.ReadUInt64LittleEndian(b);
            bool large = level > 1 && (e & (1UL << 7)) != 0;
            ulong addr = e & ~0xFFFUL & ((1UL << 52) - 1);
            steps.Add(new WalkStep($"SL-{names[level - 1]}[{idx}]", at, e, 0, string.Create(Ic,
                $"R={e & 1} W={(e >> 1) & 1}{(level > 1 ? $" PS={(large ? 1 : 0)}" : "")} {(level == 1 || large ? "page" : "next")} {Events.TraceFormat.Addr(addr)}")));
            if ((e & 3) == 0 || level == 1 || large) break;
            table = addr;
        }
        return done;
    }

    private static bool TryRead16(Machine machine, ulong address, out ulong lo, out ulong hi)
    {
        lo = hi = 0;
        if (!machine.Ram.Contains(address, 16)) return false;
        Span<byte> b = stackalloc byte[16];
        machine.Ram.Read(address, b);
        lo = BinaryPrimitives.ReadUInt64LittleEndian(b);
        hi = BinaryPrimitives.ReadUInt64LittleEndian(b[8..]);
        return true;
    }

    /// <summary>"ContextNotPresent" as "context not present".</summary>
    private static string Words(string pascal) =>
        string.Concat(pascal.Select((c, i) => i > 0 && char.IsUpper(c) ? " " + char.ToLowerInvariant(c) : c.ToString())).ToLowerInvariant();
}
