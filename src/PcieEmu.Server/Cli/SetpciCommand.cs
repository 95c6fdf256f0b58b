using System.CommandLine;
using System.Globalization;
using Grpc.Core;
using PcieEmu.Client;
using PcieEmu.Protocol.V1;

namespace PcieEmu.Server.Cli;

/// <summary>
/// <c>pcie-emu setpci -s BDF REG[+OFFSET][.B|.W|.L][@N][=VALUE[:MASK][,VALUE...]] ...</c>: config reads
/// (printed in hex) and writes, in order, with pciutils' setpci syntax. REG is a hex address, one of
/// setpci's register names (VENDOR_ID, COMMAND, BASE_ADDRESS_0, SECONDARY_BUS, ...; their width is the
/// default), or a capability: CAP_EXP, ECAP_SRIOV, ... or CAPnn / ECAPnnn by id, @N picking the N-th
/// (from 0) of that id. A hex address without a width is read as .L (setpci insists on a width).
/// </summary>
public static partial class SetpciCommand
{
    /// <summary>A value to write: the bits, and the mask of the bits to change (all ones: the whole register).</summary>
    public readonly record struct Value(uint Bits, uint Mask);

    /// <summary>A capability a register is relative to: its id, extended or not, and which instance of that id (from 0).</summary>
    public readonly record struct Capability(bool Extended, int Id, int Instance);

    /// <summary>One parsed operation: an offset (relative to <see cref="Cap"/> when given), its width, the values to
    /// write at consecutive offsets (none: a read), and the header types (bit 0 type 0, bit 1 type 1, bit 2 CardBus)
    /// a named register exists in (0: any).</summary>
    public sealed record Op(string Text, int Offset, int Width, IReadOnlyList<Value> Values, Capability? Cap = null, int HeaderTypes = 0, string? Name = null);

    // pciutils' setpci register names: (name, offset, width (0: give one), header types, capability: 0x1xxxx PCI, 0x2xxxx extended).
    private static readonly (string Name, int Offset, int Width, int HeaderTypes, int Cap)[] Names =
    [
        ("VENDOR_ID", 0x00, 2, 0, 0), ("DEVICE_ID", 0x02, 2, 0, 0), ("COMMAND", 0x04, 2, 0, 0), ("STATUS", 0x06, 2, 0, 0),
        ("REVISION", 0x08, 1, 0, 0), ("CLASS_PROG", 0x09, 1, 0, 0), ("CLASS_DEVICE", 0x0A, 2, 0, 0),
        ("CACHE_LINE_SIZE", 0x0C, 1, 0, 0), ("LATENCY_TIMER", 0x0D, 1, 0, 0), ("HEADER_TYPE", 0x0E, 1, 0, 0), ("BIST", 0x0F, 1, 0, 0),
        ("BASE_ADDRESS_0", 0x10, 4, 3, 0), ("BASE_ADDRESS_1", 0x14, 4, 3, 0), ("BASE_ADDRESS_2", 0x18, 4, 1, 0),
        ("BASE_ADDRESS_3", 0x1C, 4, 1, 0), ("BASE_ADDRESS_4", 0x20, 4, 1, 0), ("BASE_ADDRESS_5", 0x24, 4, 1, 0),
        ("CARDBUS_CIS", 0x28, 4, 1, 0), ("SUBSYSTEM_VENDOR_ID", 0x2C, 2, 1, 0), ("SUBSYSTEM_ID", 0x2E, 2, 1, 0),
        ("ROM_ADDRESS", 0x30, 4, 1, 0), ("CAPABILITIES", 0x34, 1, 3, 0), ("INTERRUPT_LINE", 0x3C, 1, 3, 0),
        ("INTERRUPT_PIN", 0x3D, 1, 3, 0), ("MIN_GNT", 0x3E, 1, 1, 0), ("MAX_LAT", 0x3F, 1, 1, 0),
        ("PRIMARY_BUS", 0x18, 1, 2, 0), ("SECONDARY_BUS", 0x19, 1, 2, 0), ("SUBORDINATE_BUS", 0x1A, 1, 2, 0),
        ("SEC_LATENCY_TIMER", 0x1B, 1, 2, 0), ("IO_BASE", 0x1C, 1, 2, 0), ("IO_LIMIT", 0x1D, 1, 2, 0), ("SEC_STATUS", 0x1E, 2, 2, 0),
        ("MEMORY_BASE", 0x20, 2, 2, 0), ("MEMORY_LIMIT", 0x22, 2, 2, 0), ("PREF_MEMORY_BASE", 0x24, 2, 2, 0),
        ("PREF_MEMORY_LIMIT", 0x26, 2, 2, 0), ("PREF_BASE_UPPER32", 0x28, 4, 2, 0), ("PREF_LIMIT_UPPER32", 0x2C, 4, 2, 0),
        ("IO_BASE_UPPER16", 0x30, 2, 2, 0), ("IO_LIMIT_UPPER16", 0x32, 2, 2, 0), ("BRIDGE_ROM_ADDRESS", 0x38, 4, 2, 0),
        ("BRIDGE_CONTROL", 0x3E, 2, 2, 0),
        ("CB_CARDBUS_BASE", 0x10, 4, 4, 0), ("CB_CAPABILITIES", 0x14, 2, 4, 0), ("CB_SEC_STATUS", 0x16, 2, 4, 0),
        ("CB_BUS_NUMBER", 0x18, 1, 4, 0), ("CB_CARDBUS_NUMBER", 0x19, 1, 4, 0), ("CB_SUBORDINATE_BUS", 0x1A, 1, 4, 0),
        ("CB_CARDBUS_LATENCY", 0x1B, 1, 4, 0), ("CB_MEMORY_BASE_0", 0x1C, 4, 4, 0), ("CB_MEMORY_LIMIT_0", 0x20, 4, 4, 0),
        ("CB_MEMORY_BASE_1", 0x24, 4, 4, 0), ("CB_MEMORY_LIMIT_1", 0x28, 4, 4, 0), ("CB_IO_BASE_0", 0x2C, 2, 4, 0),
        ("CB_IO_BASE_0_HI", 0x2E, 2, 4, 0), ("CB_IO_LIMIT_0", 0x30, 2, 4, 0), ("CB_IO_LIMIT_0_HI", 0x32, 2, 4, 0),
        ("CB_IO_BASE_1", 0x34, 2, 4, 0), ("CB_IO_BASE_1_HI", 0x36, 2, 4, 0), ("CB_IO_LIMIT_1", 0x38, 2, 4, 0),
        ("CB_IO_LIMIT_1_HI", 0x3A, 2, 4, 0), ("CB_SUBSYSTEM_VENDOR_ID", 0x40, 2, 4, 0), ("CB_SUBSYSTEM_ID", 0x42, 2, 4, 0),
        ("CB_LEGACY_MODE_BASE", 0x44, 4, 4, 0),
        ("CAP_PM", 0, 0, 0, 0x10001), ("CAP_AGP", 0, 0, 0, 0x10002), ("CAP_VPD", 0, 0, 0, 0x10003), ("CAP_SLOTID", 0, 0, 0, 0x10004),
        ("CAP_MSI", 0, 0, 0, 0x10005), ("CAP_CHSWP", 0, 0, 0, 0x10006), ("CAP_PCIX", 0, 0, 0, 0x10007), ("CAP_HT", 0, 0, 0, 0x10008),
        ("CAP_VNDR", 0, 0, 0, 0x10009), ("CAP_DBG", 0, 0, 0, 0x1000A), ("CAP_CCRC", 0, 0, 0, 0x1000B), ("CAP_HOTPLUG", 0, 0, 0, 0x1000C),
        ("CAP_SSVID", 0, 0, 0, 0x1000D), ("CAP_AGP3", 0, 0, 0, 0x1000E), ("CAP_SECURE", 0, 0, 0, 0x1000F), ("CAP_EXP", 0, 0, 0, 0x10010),
        ("CAP_MSIX", 0, 0, 0, 0x10011), ("CAP_SATA", 0, 0, 0, 0x10012), ("CAP_AF", 0, 0, 0, 0x10013), ("CAP_EA", 0, 0, 0, 0x10014),
        ("ECAP_AER", 0, 0, 0, 0x20001), ("ECAP_VC", 0, 0, 0, 0x20002), ("ECAP_DSN", 0, 0, 0, 0x20003), ("ECAP_PB", 0, 0, 0, 0x20004),
        ("ECAP_RCLINK", 0, 0, 0, 0x20005), ("ECAP_RCILINK", 0, 0, 0, 0x20006), ("ECAP_RCEC", 0, 0, 0, 0x20007), ("ECAP_MFVC", 0, 0, 0, 0x20008),
        ("ECAP_VC2", 0, 0, 0, 0x20009), ("ECAP_RBCB", 0, 0, 0, 0x2000A), ("ECAP_VNDR", 0, 0, 0, 0x2000B), ("ECAP_ACS", 0, 0, 0, 0x2000D),
        ("ECAP_ARI", 0, 0, 0, 0x2000E), ("ECAP_ATS", 0, 0, 0, 0x2000F), ("ECAP_SRIOV", 0, 0, 0, 0x20010), ("ECAP_MRIOV", 0, 0, 0, 0x20011),
        ("ECAP_MCAST", 0, 0, 0, 0x20012), ("ECAP_PRI", 0, 0, 0, 0x20013), ("ECAP_REBAR", 0, 0, 0, 0x20015), ("ECAP_DPA", 0, 0, 0, 0x20016),
        ("ECAP_TPH", 0, 0, 0, 0x20017), ("ECAP_LTR", 0, 0, 0, 0x20018), ("ECAP_SECPCI", 0, 0, 0, 0x20019), ("ECAP_PMUX", 0, 0, 0, 0x2001A),
        ("ECAP_PASID", 0, 0, 0, 0x2001B), ("ECAP_LNR", 0, 0, 0, 0x2001C), ("ECAP_DPC", 0, 0, 0, 0x2001D), ("ECAP_L1PM", 0, 0, 0, 0x2001E),
        ("ECAP_PTM", 0, 0, 0, 0x2001F), ("ECAP_M_PCIE", 0, 0, 0, 0x20020), ("ECAP_FRS", 0, 0, 0, 0x20021), ("ECAP_RTR", 0, 0, 0, 0x20022),
        ("ECAP_DVSEC", 0, 0, 0, 0x20023), ("ECAP_VF_REBAR", 0, 0, 0, 0x20024), ("ECAP_DLNK", 0, 0, 0, 0x20025), ("ECAP_16GT", 0, 0, 0, 0x20026),
        ("ECAP_LMR", 0, 0, 0, 0x20027), ("ECAP_HIER_ID", 0, 0, 0, 0x20028), ("ECAP_NPEM", 0, 0, 0, 0x20029), ("ECAP_32GT", 0, 0, 0, 0x2002A),
        ("ECAP_IDE", 0, 0, 0, 0x20030), ("ECAP_64GT", 0, 0, 0, 0x20031),
    ];

    /// <summary>All ones in <paramref name="width"/> bytes: a value (or mask) that covers the whole register.</summary>
    private static uint FullMask(int width) => width == 4 ? uint.MaxValue : (1u << (8 * width)) - 1;

    private static bool TryHex(string s, out uint value)
    {
        if (s.StartsWith("0x", StringComparison.OrdinalIgnoreCase)) s = s[2..];
        return uint.TryParse(s, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value) && s.Length > 0;
    }

    /// <summary>Parses one operation; throws <see cref="FormatException"/> naming what is wrong.</summary>
    public static Op Parse(string text)
    {
        string rest = text;
        string? values = null, number = null, width = null, offset = null;
        int at = rest.IndexOf('=', StringComparison.Ordinal);
        if (at >= 0) { values = rest[(at + 1)..]; rest = rest[..at]; }
        if ((at = rest.IndexOf('@', StringComparison.Ordinal)) >= 0) { number = rest[(at + 1)..]; rest = rest[..at]; }
        if ((at = rest.IndexOf('.', StringComparison.Ordinal)) >= 0) { width = rest[(at + 1)..]; rest = rest[..at]; }
        if ((at = rest.IndexOf('+', StringComparison.Ordinal)) >= 0) { offset = rest[(at + 1)..]; rest = rest[..at]; }

        int w = 0;
        if (width != null)
            w = width.ToUpperInvariant() switch { "B" => 1, "W" => 2, "L" => 4, _ => throw new FormatException($"'{text}': invalid width '{width}' (B, W or L)") };
        int instance = 0;
        if (number != null)
        {
            if (!TryHex(number, out uint n) || n > 0xFF) throw new FormatException($"'{text}': invalid capability instance '{number}' (@N, hex)");
            instance = (int)n;
        }

        uint addr;
        Capability? cap = null;
        int headerTypes = 0;
        string? name = null;
        if (TryHex(rest, out addr))
        {
            if (w == 0) w = 4;   // setpci insists on a width; .L here
        }
        else if (Array.FindIndex(Names, n => string.Equals(n.Name, rest, StringComparison.OrdinalIgnoreCase)) is var i and >= 0)
        {
            var r = Names[i];
            name = r.Name;
            addr = (uint)r.Offset;
            headerTypes = r.HeaderTypes;
            if (r.Cap != 0) cap = new Capability(r.Cap >= 0x20000, r.Cap & 0xFFFF, instance);
            if (w == 0) w = r.Width;
        }
        else if (rest.StartsWith("ECAP", StringComparison.OrdinalIgnoreCase) && TryHex(rest[4..], out uint eid) && eid < 0x1000)
            cap = new Capability(true, (int)eid, instance);
        else if (rest.StartsWith("CAP", StringComparison.OrdinalIgnoreCase) && TryHex(rest[3..], out uint id) && id < 0x100)
            cap = new Capability(false, (int)id, instance);
        else
            throw new FormatException($"'{text}': unknown register '{rest}' (a hex offset, a setpci register name, CAP_x/ECAP_x or CAPnn/ECAPnnn)");
        if (number != null && cap == null) throw new FormatException($"'{text}': @{number} applies to a capability only");
        if (w == 0) throw new FormatException($"'{text}': missing width (.B, .W or .L)");
        if (offset != null)
        {
            if (!TryHex(offset, out uint off) || off >= 0x1000) throw new FormatException($"'{text}': invalid offset '{offset}'");
            addr += off;
        }

        var parsed = new List<Value>();
        uint full = FullMask(w);
        if (values != null)
        {
            if (values.Length == 0) throw new FormatException($"'{text}': missing value after '='");
            foreach (string one in values.Split(','))
            {
                string bits = one;
                string? mask = null;
                if (one.IndexOf(':', StringComparison.Ordinal) is var colon and >= 0) { bits = one[..colon]; mask = one[(colon + 1)..]; }
                if (!TryHex(bits, out uint v)) throw new FormatException($"'{text}': invalid value '{one}'");
                if (v > full) throw new FormatException($"'{text}': value '{bits}' does not fit in {w} byte(s)");
                uint m = full;
                if (mask != null)
                {
                    if (!TryHex(mask, out m)) throw new FormatException($"'{text}': invalid mask '{mask}'");
                    if (m > full) throw new FormatException($"'{text}': mask '{mask}' does not fit in {w} byte(s)");
                }
                parsed.Add(new Value(v & m, m));
            }
        }
        int count = Math.Max(parsed.Count, 1);
        if (addr >= 0x1000 || addr + (uint)(w * count) > 0x1000) throw new FormatException($"'{text}': offset 0x{addr:x} is beyond config space");
        if ((addr & (uint)(w - 1)) != 0) throw new FormatException($"'{text}': offset 0x{addr:x} is not aligned to {w} bytes");
        return new Op(text, (int)addr, w, parsed, cap, headerTypes, name);
    }

    /// <summary>
    /// Where <paramref name="cap"/> sits in the config space <paramref name="read"/> reads (dword reads), or an error:
    /// the PCI list from 0x34 when Status says there is one, the extended list from 0x100.
    /// </summary>
    public static async Task<(int Address, string? Error)> FindCapabilityAsync(Func<int, Task<uint>> read, Capability cap)
    {
        ArgumentNullException.ThrowIfNull(read);
        int found = 0;
        if (!cap.Extended)
        {
            if ((await read(0x04).ConfigureAwait(false) >> 16 & 0x10) != 0)
            {
                int at = (int)(await read(0x34).ConfigureAwait(false) & 0xFC);
                for (int guard = 0; at >= 0x40 && guard < 48; guard++)
                {
                    uint header = await read(at).ConfigureAwait(false);
                    if ((header & 0xFF) == cap.Id && found++ == cap.Instance) return (at, null);
                    at = (int)(header >> 8 & 0xFC);
                }
            }
        }
        else
        {
            int at = 0x100;
            for (int guard = 0; at >= 0x100 && guard < 960; guard++)
            {
                uint header = await read(at).ConfigureAwait(false);
                if (header == 0 || header == uint.MaxValue) break;
                if ((header & 0xFFFF) == cap.Id && found++ == cap.Instance) return (at, null);
                at = (int)(header >> 20 & 0xFFC);
            }
        }
        string what = cap.Extended ? $"extended capability 0x{cap.Id:x4}" : $"capability 0x{cap.Id:x2}";
        return (0, found == 0 ? $"no {what}" : $"{what} #{cap.Instance} not found: there {(found == 1 ? "is 1" : $"are {found}")}");
    }

    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var slot = new Option<string>("-s") { Description = "Function: [0000:]bb:dd.f", Required = true };
        var ops = new Argument<string[]>("operations") { Description = "REG[+OFFSET][.B|.W|.L][@N][=VALUE[:MASK][,VALUE...]] (hex); REG: an offset, a setpci register name (COMMAND, ...), CAP_EXP/ECAP_SRIOV/... or CAPnn/ECAPnnn", Arity = ArgumentArity.OneOrMore };
        var cmd = new Command("setpci", "Read or write config registers (talks to a running server)") { slot, ops };
        cmd.SetAction(async (parse, ct) =>
        {
            string s = parse.GetValue(slot)!;
            if (!PciAddress.TryParse(s, out ushort rid)) { await Console.Error.WriteLineAsync($"pcie-emu setpci: -s: '{s}' is not bb:dd.f").ConfigureAwait(false); return 2; }
            Op[] parsed;
            try
            {
                parsed = [.. parse.GetValue(ops)!.Select(Parse)];
            }
            catch (FormatException ex)
            {
                await Console.Error.WriteLineAsync($"pcie-emu setpci: {ex.Message}").ConfigureAwait(false);
                return 2;
            }
            try
            {
                using var client = Commands.Connect(parse);
                async Task<uint> Dword(int at) => (await client.ReadConfigAsync(rid, at, 4, ct).ConfigureAwait(false)).Value;
                foreach (var op in parsed)
                {
                    int addr = op.Offset;
                    if (op.HeaderTypes != 0)
                    {
                        uint type = (await client.ReadConfigAsync(rid, 0x0E, 1, ct).ConfigureAwait(false)).Value & 0x7F;
                        if (type > 2 || (op.HeaderTypes & (1 << (int)type)) == 0)
                        {
                            await Console.Error.WriteLineAsync($"pcie-emu setpci: {PciAddress.Format(rid)}: has no register {op.Name} (header type {type})").ConfigureAwait(false);
                            return 1;
                        }
                    }
                    if (op.Cap is { } cap)
                    {
                        var (at, error) = await FindCapabilityAsync(Dword, cap).ConfigureAwait(false);
                        if (error != null)
                        {
                            await Console.Error.WriteLineAsync($"pcie-emu setpci: {PciAddress.Format(rid)}: {op.Text}: {error}").ConfigureAwait(false);
                            return 1;
                        }
                        addr += at;
                        if ((addr & (op.Width - 1)) != 0 || addr + op.Width * Math.Max(op.Values.Count, 1) > 0x1000)
                        {
                            await Console.Error.WriteLineAsync($"pcie-emu setpci: {PciAddress.Format(rid)}: {op.Text}: offset 0x{addr:x} (capability at 0x{at:x}) is unaligned or beyond config space").ConfigureAwait(false);
                            return 1;
                        }
                    }
                    if (op.Values.Count == 0)
                    {
                        var r = await client.ReadConfigAsync(rid, addr, op.Width, ct).ConfigureAwait(false);
                        if (r.Status != CompletionStatus.Successful) await Console.Error.WriteLineAsync($"pcie-emu setpci: {PciAddress.Format(rid)}: {r.Status}").ConfigureAwait(false);
                        await Console.Out.WriteLineAsync(r.Value.ToString($"x{2 * op.Width}", CultureInfo.InvariantCulture)).ConfigureAwait(false);
                        continue;
                    }
                    foreach (var v in op.Values)
                    {
                        uint value = v.Bits;
                        if (v.Mask != FullMask(op.Width))
                        {
                            uint old = (await client.ReadConfigAsync(rid, addr, op.Width, ct).ConfigureAwait(false)).Value;
                            value = (old & ~v.Mask) | v.Bits;
                        }
                        var status = await client.WriteConfigAsync(rid, addr, op.Width, value, ct).ConfigureAwait(false);
                        if (status != CompletionStatus.Successful)
                        {
                            await Console.Error.WriteLineAsync($"pcie-emu setpci: {PciAddress.Format(rid)}: write completed {status}").ConfigureAwait(false);
                            return 1;
                        }
                        addr += op.Width;
                    }
                }
                return 0;
            }
            catch (RpcException ex)
            {
                await Console.Error.WriteLineAsync(Commands.DescribeRpcError("setpci", ex, Commands.ResolveTarget(parse))).ConfigureAwait(false);
                return 1;
            }
            catch (FormatException ex)
            {
                await Console.Error.WriteLineAsync($"pcie-emu setpci: --target: {ex.Message}").ConfigureAwait(false);
                return 2;
            }
            catch (IOException ex)
            {
                await Console.Error.WriteLineAsync($"pcie-emu setpci: --token-file: {ex.Message}").ConfigureAwait(false);
                return 2;
            }
        });
        return cmd;
    }
}
