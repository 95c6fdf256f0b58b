using System.CommandLine;
using System.Globalization;
using PcieEmu.Lab;

namespace PcieEmu.Server.Cli;

/// <summary>
/// <c>pcie-emu iomodels</c>: the I/O-model lab (docs/iomodels.md). Runs the same guest workload under
/// emulation, paravirtual, direct assignment and SR-IOV in this process, prints one table and draws
/// the chart.
/// </summary>
public static class IoModelsCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var guests = new Option<string>("--guests") { Description = "Guest counts, comma-separated (1..8; direct assignment runs with 1 only)", DefaultValueFactory = _ => "1,2,4,8" };
        var frames = new Option<int>("--frames") { Description = "Frames per flow per guest (each guest sends this many to the wire and to the next guest, and receives this many from the wire)", DefaultValueFactory = _ => 2000 };
        var size = new Option<string>("--size") { Description = "Frame sizes in bytes without FCS, comma-separated (60..1514)", DefaultValueFactory = _ => "64,1514" };
        var models = new Option<string?>("--models") { Description = "Models, comma-separated: emulation, paravirtual, direct, sr-iov (default: all)" };
        var batch = new Option<int>("--batch") { Description = "Frames per tail write or notify and per receive poll (1..64; 1 = no batching)", DefaultValueFactory = _ => 32 };
        var repeat = new Option<int>("--repeat") { Description = "Runs per combination; the median by CPU time is printed", DefaultValueFactory = _ => 3 };
        var chart = new Option<string>("--chart") { Description = "Where to write the chart (SVG)", DefaultValueFactory = _ => "iomodels.svg" };
        var cmd = new Command("iomodels", "The I/O-model lab: emulation, paravirtual (virtio-net), direct assignment and SR-IOV under one workload; traps, copies, interrupts and CPU per frame") { guests, frames, size, batch, repeat, models, chart };
        cmd.SetAction(async (parse, ct) =>
        {
            LabOptions options;
            try
            {
                options = new LabOptions
                {
                    Guests = Ints(parse.GetValue(guests)!, "--guests"),
                    Frames = parse.GetValue(frames),
                    Sizes = Ints(parse.GetValue(size)!, "--size"),
                    Batch = parse.GetValue(batch),
                    Repeat = parse.GetValue(repeat),
                    Models = parse.GetValue(models) is { } m ? Models(m) : null,
                };
                options.Validate();
            }
            catch (FormatException e)
            {
                await Console.Error.WriteLineAsync($"pcie-emu iomodels: {e.Message}").ConfigureAwait(false);
                return 2;
            }
            catch (ArgumentException e)
            {
                await Console.Error.WriteLineAsync($"pcie-emu iomodels: {OptionName(e)}: {e.Message.Split(" (Parameter")[0]}").ConfigureAwait(false);
                return 2;
            }
            var rows = await Task.Run(() => IoModelLab.Run(options, r =>
                Console.Error.WriteLine($"iomodels: {IoModelLab.Name(r.Model)}, {r.Guests} guests, {r.FrameSize} B: done")), ct).ConfigureAwait(false);
            await Console.Out.WriteAsync(IoModelLab.FormatTable(rows)).ConfigureAwait(false);
            string path = parse.GetValue(chart)!;
            IoModelLab.WriteChart(rows, path);
            await Console.Error.WriteLineAsync($"chart: {path}").ConfigureAwait(false);
            return 0;
        });
        return cmd;
    }

    private static string OptionName(ArgumentException e) => e.ParamName switch
    {
        "Guests" => "--guests",
        "Frames" => "--frames",
        "Sizes" => "--size",
        "Batch" => "--batch",
        "Repeat" => "--repeat",
        { } p => p,
        null => "iomodels",
    };

    private static int[] Ints(string text, string option)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 0) throw new FormatException($"{option}: needs at least one value");
        return [.. parts.Select(p => int.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out int v) ? v
            : throw new FormatException($"{option}: '{p}' is not a number"))];
    }

    private static IoModel[] Models(string text) =>
        [.. text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(p =>
            IoModelLab.BuiltModels.FirstOrDefault(m => string.Equals(IoModelLab.Name(m), p, StringComparison.OrdinalIgnoreCase), (IoModel)(-1)) is var m && m >= 0 ? m
            : throw new FormatException($"--models: '{p}' is not one of {string.Join(", ", IoModelLab.BuiltModels.Select(IoModelLab.Name))}"))];
}
