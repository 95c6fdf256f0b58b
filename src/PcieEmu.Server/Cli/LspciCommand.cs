using System.CommandLine;
using System.Text;
using Grpc.Core;
using PcieEmu.Client;
using PcieEmu.Protocol.V1;

namespace PcieEmu.Server.Cli;

/// <summary>
/// <c>pcie-emu lspci</c>: lists functions like lspci; <c>-x/-xxx/-xxxx</c> dump 64/256/4096 bytes in
/// lspci's dump format (so <c>lspci -F file -vvv</c> decodes it); <c>-v/-vv/-vvv</c> decode the
/// capabilities by running pciutils' lspci on that dump; <c>-t</c> prints the tree.
/// </summary>
public static class LspciCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var slot = new Option<string?>("-s") { Description = "Only this function: [0000:]bb:dd.f" };
        var x = new Option<bool>("-x") { Description = "Dump the standard header (64 bytes)" };
        var xxx = new Option<bool>("-xxx") { Description = "Dump the whole PCI config space (256 bytes)" };
        var xxxx = new Option<bool>("-xxxx") { Description = "Dump the extended config space (4096 bytes)" };
        var tree = new Option<bool>("-t") { Description = "Show the topology as a tree" };
        var verbose = new Option<bool>("-v") { Description = "Decode the header and capabilities (needs pciutils' lspci); with -t: names beside the functions" };
        var vv = new Option<bool>("-vv") { Description = "Decode more (needs pciutils' lspci)" };
        var vvv = new Option<bool>("-vvv") { Description = "Decode everything lspci can (needs pciutils' lspci)" };
        var tv = new Option<bool>("-tv") { Description = "Same as -t -v" };
        var cmd = new Command("lspci", "List the machine's PCI functions (talks to a running server)") { slot, x, xxx, xxxx, tree, verbose, vv, vvv, tv };
        cmd.TreatUnmatchedTokensAsErrors = false;
        cmd.SetAction(async (parse, ct) =>
        {
            if (parse.UnmatchedTokens.Count > 0)
            {
                await Console.Error.WriteLineAsync($"pcie-emu lspci: unknown option '{parse.UnmatchedTokens[0]}' (options: -s, -x, -xxx, -xxxx, -v, -vv, -vvv, -t, -tv, --target)").ConfigureAwait(false);
                return 2;
            }
            ushort? only = null;
            if (parse.GetValue(slot) is { } s)
            {
                if (!PciAddress.TryParse(s, out ushort rid)) { await Console.Error.WriteLineAsync($"pcie-emu lspci: -s: '{s}' is not bb:dd.f").ConfigureAwait(false); return 2; }
                only = rid;
            }
            int dump = parse.GetValue(xxxx) ? 4096 : parse.GetValue(xxx) ? 256 : parse.GetValue(x) ? 64 : 0;
            bool showTree = parse.GetValue(tree) || parse.GetValue(tv);
            int verbosity = parse.GetValue(vvv) ? 3 : parse.GetValue(vv) ? 2 : parse.GetValue(verbose) ? 1 : 0;
            if (verbosity > 0 && !showTree && FindLspci() == null)
            {
                await Console.Error.WriteLineAsync($"pcie-emu lspci: -{new string('v', verbosity)}: decoding capabilities needs pciutils' lspci, which is not installed (apt-get install pciutils); -xxxx prints the raw config space").ConfigureAwait(false);
                return 1;
            }
            try
            {
                using var client = Commands.Connect(parse);
                var functions = await client.ListFunctionsAsync(ct).ConfigureAwait(false);
                string text = showTree
                    ? Tree(functions, await client.GetPlatformAsync(ct).ConfigureAwait(false), parse.GetValue(verbose) || parse.GetValue(tv))
                    : verbosity > 0
                        ? await DecodeAsync(await ListAsync(client, functions, only, 4096, ct).ConfigureAwait(false), verbosity, dump, ct).ConfigureAwait(false)
                        : await ListAsync(client, functions, only, dump, ct).ConfigureAwait(false);
                await Console.Out.WriteAsync(text).ConfigureAwait(false);
                return 0;
            }
            catch (RpcException ex)
            {
                await Console.Error.WriteLineAsync(Commands.DescribeRpcError("lspci", ex, Commands.ResolveTarget(parse))).ConfigureAwait(false);
                return 1;
            }
            catch (FormatException ex)
            {
                await Console.Error.WriteLineAsync($"pcie-emu lspci: --target: {ex.Message}").ConfigureAwait(false);
                return 2;
            }
            catch (IOException ex)
            {
                await Console.Error.WriteLineAsync($"pcie-emu lspci: --token-file: {ex.Message}").ConfigureAwait(false);
                return 2;
            }
            catch (InvalidOperationException ex)
            {
                // pciutils' lspci could not decode the dump.
                await Console.Error.WriteLineAsync($"pcie-emu lspci: {ex.Message}").ConfigureAwait(false);
                return 1;
            }
        });
        return cmd;
    }

    /// <summary>pciutils' lspci, or null when it is not installed.</summary>
    public static string? FindLspci()
    {
        var dirs = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Concat(["/usr/bin", "/usr/sbin", "/sbin", "/bin"]);
        return dirs.Select(d => Path.Combine(d, "lspci")).FirstOrDefault(File.Exists);
    }

    /// <summary>
    /// Runs pciutils' lspci on <paramref name="dump4096"/> (the <see cref="ListAsync"/> text with
    /// 4096-byte dumps) at <paramref name="verbosity"/> 1..3 (-v..-vvv), adding the hex dump of
    /// <paramref name="dumpBytes"/> (0, 64, 256, 4096) as lspci prints it. Throws
    /// <see cref="FileNotFoundException"/> when lspci is not installed.
    /// </summary>
    public static async Task<string> DecodeAsync(string dump4096, int verbosity, int dumpBytes, CancellationToken ct)
    {
        string lspci = FindLspci() ?? throw new FileNotFoundException("pciutils' lspci is not installed", "lspci");
        string file = Path.GetTempFileName();
        try
        {
            await File.WriteAllTextAsync(file, dump4096, ct).ConfigureAwait(false);
            var psi = new System.Diagnostics.ProcessStartInfo(lspci) { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in new[] { "-F", file, "-" + new string('v', verbosity) }) psi.ArgumentList.Add(a);
            if (dumpBytes > 0) psi.ArgumentList.Add(dumpBytes switch { 64 => "-x", 256 => "-xxx", _ => "-xxxx" });
            using var p = System.Diagnostics.Process.Start(psi)!;
            var stdout = p.StandardOutput.ReadToEndAsync(ct);
            var stderr = p.StandardError.ReadToEndAsync(ct);
            await p.WaitForExitAsync(ct).ConfigureAwait(false);
            if (p.ExitCode != 0) throw new InvalidOperationException($"lspci -F failed ({p.ExitCode}): {(await stderr.ConfigureAwait(false)).Trim()}");
            return await stdout.ConfigureAwait(false);
        }
        finally
        {
            File.Delete(file);
        }
    }

    /// <summary>The listing (and dumps) of <paramref name="functions"/>.</summary>
    public static async Task<string> ListAsync(PcieEmuClient client, IReadOnlyList<Function> functions, ushort? only, int dump, CancellationToken ct)
    {
        var sb = new StringBuilder();
        foreach (var f in functions)
        {
            if (only is { } o && f.Rid != o) continue;
            sb.Append(Describe(f)).Append('\n');
            if (dump > 0)
            {
                byte[] bytes = await client.DumpConfigAsync(f.Rid, dump, ct).ConfigureAwait(false);
                Core.Config.LspciDump.AppendRows(sb, bytes);
                sb.Append('\n');
            }
        }
        return sb.ToString();
    }

    /// <summary>One lspci-style line: "bb:dd.f Class name [cccc]: Vendor Device [vvvv:dddd]".</summary>
    public static string Describe(Function f) =>
        $"{f.Bdf} {ClassName(f.ClassCode >> 8)} [{f.ClassCode >> 8:x4}]: {Name(f)} [{f.VendorId:x4}:{f.DeviceId:x4}]";

    private static string ClassName(uint cls) => cls switch
    {
        0x0600 => "Host bridge",
        0x0604 => "PCI bridge",
        0x0200 => "Ethernet controller",
        _ => "Class",
    };

    // The device model's own name when it gives one, else the vendor's (lspci prints "Device" for ids it does not know).
    private static string Name(Function f) => f.Description is { Length: > 0 } d ? d : f.VendorId switch
    {
        0x8086 => "Intel Corporation Device",
        _ => "Device",
    };

    /// <summary>The topology in the spirit of <c>lspci -tv</c> with root ports only (see the other overload).</summary>
    public static string Tree(IReadOnlyList<Function> functions, IReadOnlyList<RootPort> ports, bool verbose) =>
        Tree(functions, [.. ports.Select(p => (p.Rid, p.SecondaryBus, p.SubordinateBus))], verbose);

    /// <summary>The topology in the spirit of <c>lspci -tv</c>: bus 0, then below each root port its buses,
    /// through switch ports, with functions on buses no bridge below claims (SR-IOV VFs) shown as <c>[bb]-dd.f</c>.</summary>
    public static string Tree(IReadOnlyList<Function> functions, GetPlatformResponse platform, bool verbose)
    {
        ArgumentNullException.ThrowIfNull(platform);
        return Tree(functions, [.. platform.RootPorts.Select(p => (p.Rid, p.SecondaryBus, p.SubordinateBus)),
            .. platform.SwitchPorts.Select(p => (p.Rid, p.SecondaryBus, p.SubordinateBus))], verbose);
    }

    private static string Tree(IReadOnlyList<Function> functions, IReadOnlyList<(uint Rid, uint Secondary, uint Subordinate)> bridges, bool verbose)
    {
        ArgumentNullException.ThrowIfNull(functions);
        var byRid = bridges.Where(b => b.Secondary != 0).GroupBy(b => b.Rid).ToDictionary(g => g.Key, g => g.First());
        const string top = "-[0000:00]-";
        var lines = Siblings([.. functions.Where(f => f.Rid >> 8 == 0).Select(f => Node(f, 0))]);
        var sb = new StringBuilder();
        for (int i = 0; i < lines.Count; i++) sb.Append(i == 0 ? top : new string(' ', top.Length)).Append(lines[i]).Append('\n');
        if (lines.Count == 0) sb.Append(top).Append('\n');
        return sb.ToString();

        // A function's lines: its label, and for a bridge everything below it.
        List<string> Node(Function f, uint bus)
        {
            string label = f.Rid >> 8 == bus ? f.Bdf[3..] : $"[{f.Bdf[..2]}]-{f.Bdf[3..]}";
            if (!byRid.TryGetValue(f.Rid, out var b)) return [verbose ? label + "  " + Name(f) : label];
            // As lspci: one bus number when the bridge's range is a single bus.
            string buses = b.Secondary == b.Subordinate ? $"{b.Secondary:x2}" : $"{b.Secondary:x2}-{b.Subordinate:x2}";
            string head = $"{label}-[{buses}]--";
            // Below: functions on the secondary bus, and on the buses up to the subordinate that no bridge below claims.
            var inner = functions.Where(c => byRid.TryGetValue(c.Rid, out var cb) && c.Rid >> 8 == b.Secondary).Select(c => byRid[c.Rid]).ToList();
            var children = functions.Where(c => c.Rid >> 8 >= b.Secondary && c.Rid >> 8 <= b.Subordinate
                && (c.Rid >> 8 == b.Secondary || !inner.Any(ib => c.Rid >> 8 >= ib.Secondary && c.Rid >> 8 <= ib.Subordinate)))
                .Select(c => Node(c, b.Secondary)).ToList();
            if (children.Count == 0) return [head];
            var below = Siblings(children);
            return [head + below[0], .. below.Skip(1).Select(l => new string(' ', head.Length) + l)];
        }
    }

    // Sibling entries joined the lspci way: +- for each, \- for the last, | carrying on past entries not yet done.
    private static List<string> Siblings(List<List<string>> entries)
    {
        var lines = new List<string>();
        for (int i = 0; i < entries.Count; i++)
        {
            bool first = i == 0, last = i == entries.Count - 1;
            lines.Add((first ? (last ? "-" : "+") : (last ? "\\" : "+")) + "-" + entries[i][0]);
            foreach (var more in entries[i].Skip(1)) lines.Add((last ? " " : "|") + " " + more);
        }
        return lines;
    }
}
