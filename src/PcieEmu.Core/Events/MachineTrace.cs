using PcieEmu.Core.AddressSpace;
using PcieEmu.Core.Config;
using PcieEmu.Core.Platform;
using PcieEmu.Core.Registers;
using PcieEmu.Core.Topology;

namespace PcieEmu.Core.Events;

/// <summary>Builds the machine's config and MMIO events. Called only after <see cref="EventBus.Wants"/>
/// said yes, so the decoding (names, old values) costs nothing while nobody listens.</summary>
internal static class MachineTrace
{
    public static void Config(Machine m, PciFunction? f, ushort rid, bool write, int offset, int width, uint value, CompletionStatus status)
    {
        string reg = "", fields = "";
        uint old = 0, after = 0, before;
        if (f != null)
        {
            before = f.Config.ReadRaw(offset & ~3, 4);
            after = write ? Predict(f.Config, offset, width, value, before) : before;
            (reg, fields) = ConfigLayout.Describe(f.Config.Bytes, f.Capabilities, offset, before, after);
            int shift = 8 * (offset & 3);
            uint mask = width == 4 ? uint.MaxValue : (1u << (8 * width)) - 1;
            old = before >> shift & mask;
            after = after >> shift & mask;
        }
        m.Events.Publish(new ConfigAccessEvent(rid, write, offset, width, value, old, after, status)
        {
            Register = reg, Fields = fields, IsRoutine = !write && status == CompletionStatus.Successful,
        });
    }

    // What the single write path will store (masks applied); hooks may act further.
    private static uint Predict(ConfigSpace cs, int offset, int width, uint value, uint dword)
    {
        int at = offset & ~3;
        uint result = dword;
        for (int i = 0; i < width; i++)
        {
            int b = (offset & 3) + i;
            byte nv = cs.Merge(at + b, (byte)(dword >> (8 * b)), (byte)(value >> (8 * i)));
            result = (result & ~(0xFFu << (8 * b))) | (uint)nv << (8 * b);
        }
        return result;
    }

    /// <summary>The stored value of the register a write is about to change (no read side effects).</summary>
    public static ulong StoredValue(in Machine.Decoded d) => d.Region is RegisterFile rf ? rf.At((uint)d.Offset)?.Value ?? 0 : 0;

    public static void Mmio(Machine m, bool write, ulong address, int width, ulong value, ulong old, in Machine.Decoded d)
    {
        string? name = (d.Region as INamedRegion)?.RegisterNameAt(d.Offset);
        var f = d.Function;
        m.Events.Publish(new MmioAccessEvent(f?.Rid ?? 0, write, address, d.Bar, d.Offset, width, value, old, name)
        {
            Function = f?.Name ?? "IOMMU", IsRoutine = !write,
        });
    }

    /// <summary>A memory request nothing decoded: if it falls in a BAR of a function that is not
    /// decoding (Memory Space off, VF MSE off, not in D0), an event of that function saying why.</summary>
    public static void NotDecoded(Machine m, bool write, ulong address, int width, ulong value)
    {
        // Only a function that is itself not decoding is named; a miss upstream of it (the root
        // port's Memory Space Enable or window) is the bridge's, not the function's.
        foreach (var pf in m.PhysicalFunctions)
        {
            var why = pf.PowerState != 0 ? MmioMiss.PowerState : MmioMiss.MemorySpaceOff;
            foreach (var bar in pf.MemoryDecodeEnabled ? [] : pf.Bars)
            {
                if (bar.IsIo || bar.Kind == BarKind.Rom) continue;
                var (b, size) = pf.BarWindow(bar);
                if (b != 0 && address >= b && address - b + (ulong)width <= size) { Publish(pf, bar.Index, address - b, why); return; }
            }
            if (pf.Sriov is not { VfEnabled: true } sriov || (sriov.VfMemorySpaceEnabled && pf.PowerState == 0)) continue;
            why = pf.PowerState != 0 ? MmioMiss.PowerState : MmioMiss.VfMemorySpaceOff;
            foreach (var bar in sriov.Parameters.VfBars)
            {
                ulong b = sriov.VfBarBase(bar), per = sriov.PerVfBarSize(bar);
                if (b == 0 || address < b) continue;
                ulong index = (address - b) / per;
                if (index >= (ulong)pf.VirtualFunctions.Count) continue;
                ulong off = address - b - index * per;
                if (off + (ulong)width <= per) { Publish(pf.VirtualFunctions[(int)index], bar.Index, off, why); return; }
            }
        }

        void Publish(PciFunction f, int bar, ulong offset, MmioMiss why) =>
            m.Events.Publish(new MmioAccessEvent(f.Rid, write, address, bar, offset, width, value, 0,
                (f.GetBarRegion(bar) as INamedRegion)?.RegisterNameAt(offset)) { Function = f.Name, Miss = why });
    }
}
