using System.CommandLine;
using System.Globalization;
using System.Text.RegularExpressions;
using Grpc.Core;
using PcieEmu.Client;
using PcieEmu.Protocol.V1;

namespace PcieEmu.Server.Cli;

/// <summary>
/// <c>pcie-emu setpci -s BDF REG[.B|.W|.L][=VALUE[:MASK]] ...</c>: config reads (printed in hex)
/// and writes, in order, like pciutils' setpci. REG is a hex offset; width defaults to .L.
/// </summary>
public static partial class SetpciCommand
{
    [GeneratedRegex(@"^(?<off>(?:0x)?[0-9a-fA-F]+)(?:\.(?<w>[BWLbwl]))?(?:=(?<val>(?:0x)?[0-9a-fA-F]+)(?::(?<mask>(?:0x)?[0-9a-fA-F]+))?)?$")]
    private static partial Regex OpPattern();

    /// <summary>One parsed operation.</summary>
    public readonly record struct Op(int Offset, int Width, uint? Value, uint Mask);

    /// <summary>Parses one operation; throws <see cref="FormatException"/>.</summary>
    public static Op Parse(string text)
    {
        var m = OpPattern().Match(text);
        if (!m.Success) throw new FormatException($"'{text}': expected OFFSET[.B|.W|.L][=VALUE[:MASK]] (hex)");
        int width = m.Groups["w"].Success ? char.ToUpperInvariant(m.Groups["w"].Value[0]) switch { 'B' => 1, 'W' => 2, _ => 4 } : 4;
        static uint Hex(string s) => uint.Parse(s.StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? s[2..] : s, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        uint off = Hex(m.Groups["off"].Value);
        if (off >= 4096) throw new FormatException($"'{text}': offset 0x{off:x} is beyond config space");
        if ((off & (uint)(width - 1)) != 0) throw new FormatException($"'{text}': offset 0x{off:x} is not aligned to {width} bytes");
        uint full = width == 4 ? uint.MaxValue : (1u << (8 * width)) - 1;
        uint? value = m.Groups["val"].Success ? Hex(m.Groups["val"].Value) : null;
        uint mask = m.Groups["mask"].Success ? Hex(m.Groups["mask"].Value) : full;
        if (value > full || mask > full) throw new FormatException($"'{text}': value does not fit in {width} byte(s)");
        return new Op((int)off, width, value, mask);
    }

    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var slot = new Option<string>("-s") { Description = "Function: [0000:]bb:dd.f", Required = true };
        var ops = new Argument<string[]>("operations") { Description = "REG[.B|.W|.L][=VALUE[:MASK]] (hex)", Arity = ArgumentArity.OneOrMore };
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
                foreach (var op in parsed)
                {
                    if (op.Value is not { } v)
                    {
                        var r = await client.ReadConfigAsync(rid, op.Offset, op.Width, ct).ConfigureAwait(false);
                        if (r.Status != CompletionStatus.Successful) await Console.Error.WriteLineAsync($"pcie-emu setpci: {PciAddress.Format(rid)}: {r.Status}").ConfigureAwait(false);
                        await Console.Out.WriteLineAsync(r.Value.ToString($"x{2 * op.Width}", CultureInfo.InvariantCulture)).ConfigureAwait(false);
                        continue;
                    }
                    uint value = v;
                    uint full = op.Width == 4 ? uint.MaxValue : (1u << (8 * op.Width)) - 1;
                    if (op.Mask != full)
                    {
                        uint old = (await client.ReadConfigAsync(rid, op.Offset, op.Width, ct).ConfigureAwait(false)).Value;
                        value = (old & ~op.Mask) | (v & op.Mask);
                    }
                    var status = await client.WriteConfigAsync(rid, op.Offset, op.Width, value, ct).ConfigureAwait(false);
                    if (status != CompletionStatus.Successful)
                    {
                        await Console.Error.WriteLineAsync($"pcie-emu setpci: {PciAddress.Format(rid)}: write completed {status}").ConfigureAwait(false);
                        return 1;
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
