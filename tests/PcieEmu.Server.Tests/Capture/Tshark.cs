using System.Diagnostics;

namespace PcieEmu.Server.Tests.Capture;

/// <summary>Reads captures back with tshark (installed by `make deps`; missing is a failure, not a pass).</summary>
internal static class Tshark
{
    public const string Path = "/usr/bin/tshark";

    /// <summary>The fields that name a frame's interface, direction and comment, in that order.</summary>
    public static readonly string[] Fields = ["frame.interface_name", "frame.packet_flags_direction", "frame.comment", "frame.drop_count", "frame.len"];

    public static void AssertInstalled() =>
        Assert.True(File.Exists(Path), $"tshark is not installed ({Path}): run `make deps` or apt-get install tshark");

    public static ProcessStartInfo Start(string file) => new(Path, ["-r", file, "-T", "fields", .. Fields.SelectMany(f => new[] { "-e", f })])
    {
        RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = file == "-",
    };

    /// <summary>One row of <see cref="Fields"/> per frame of <paramref name="file"/>; fails when tshark does.</summary>
    public static async Task<string[][]> ReadAsync(string file)
    {
        AssertInstalled();
        var (code, output, err) = await ProcessRun.RunAsync(Start(file));
        Assert.True(code == 0, $"tshark -r {file} exited {code}: {err}");
        return Rows(output);
    }

    /// <summary>Rows of fields; the direction as a decimal number (tshark 4.0 prints it masked, "0x00000002").</summary>
    public static string[][] Rows(string output) =>
        [.. output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split('\t')).Select(r => { r[1] = Number(r[1]); return r; })];

    private static string Number(string field) =>
        field.StartsWith("0x", StringComparison.Ordinal)
            ? Convert.ToUInt32(field[2..], 16).ToString(System.Globalization.CultureInfo.InvariantCulture)
            : field;
}
