using System.Globalization;
using System.Text;
using OxyPlot;
using OxyPlot.Axes;
using OxyPlot.Legends;
using OxyPlot.Series;

namespace PcieEmu.Lab;

/// <summary>The seed paper's four I/O models.</summary>
public enum IoModel
{
    /// <summary>The guest's NIC is emulated by the VMM: every register access traps, the VMM copies every frame.</summary>
    Emulation,
    /// <summary>The guest drives virtio-net; the VMM's back end moves frames between the virtqueues and the host PF.</summary>
    Paravirtual,
    /// <summary>One guest owns the PF behind VT-d.</summary>
    DirectAssignment,
    /// <summary>Each guest owns a VF behind VT-d; the PF driver answers mailbox requests only.</summary>
    Sriov,
}

/// <summary>One measured run: a model, a guest count and a frame size; totals over the run and per frame.</summary>
/// <param name="Model">The I/O model.</param>
/// <param name="Guests">Guests (1..8).</param>
/// <param name="FrameSize">Frame length in bytes (no FCS).</param>
/// <param name="Frames">Frames delivered (to the wire, from the wire, guest to guest).</param>
/// <param name="Traps">VM exits: trapped MMIO accesses plus interrupt exits.</param>
/// <param name="InterruptExits">The part of <paramref name="Traps"/> that is interrupt exits.</param>
/// <param name="BytesCopied">Frame bytes copied by software.</param>
/// <param name="HostInterrupts">Interrupt messages from functions the host owns.</param>
/// <param name="GuestInterrupts">Interrupts the guests took: messages from assigned or VMM-emulated functions, plus the VMM's injections for the emulated NIC.</param>
/// <param name="CpuMicroseconds">Process CPU time of the run.</param>
/// <param name="WallSeconds">Wall-clock time of the run.</param>
public sealed record LabRow(IoModel Model, int Guests, int FrameSize, long Frames, long Traps, long InterruptExits, long BytesCopied,
    long HostInterrupts, long GuestInterrupts, double CpuMicroseconds, double WallSeconds)
{
    /// <summary>Traps per frame.</summary>
    public double TrapsPerFrame => (double)Traps / Frames;
    /// <summary>Bytes copied per frame.</summary>
    public double CopiedPerFrame => (double)BytesCopied / Frames;
    /// <summary>Host interrupts per frame.</summary>
    public double HostInterruptsPerFrame => (double)HostInterrupts / Frames;
    /// <summary>Guest interrupts per frame.</summary>
    public double GuestInterruptsPerFrame => (double)GuestInterrupts / Frames;
    /// <summary>Host CPU microseconds per frame.</summary>
    public double CpuPerFrame => CpuMicroseconds / Frames;
    /// <summary>Frames per second (wall clock).</summary>
    public double FramesPerSecond => Frames / WallSeconds;
}

/// <summary>What to run.</summary>
public sealed record LabOptions
{
    /// <summary>Guest counts (1..8); direct assignment runs only with 1.</summary>
    public IReadOnlyList<int> Guests { get; init; } = [1, 2, 4, 8];
    /// <summary>Frames per flow per guest.</summary>
    public int Frames { get; init; } = 2000;
    /// <summary>Frame sizes (60..1514).</summary>
    public IReadOnlyList<int> Sizes { get; init; } = [64, 1514];
    /// <summary>Frames per tail write / notify and per receive poll (1: every frame on its own, as a
    /// driver without batching; 32: the default).</summary>
    public int Batch { get; init; } = ModelRun.DefaultBatch;
    /// <summary>Runs per combination; the row with the median CPU time is reported.</summary>
    public int Repeat { get; init; } = 3;
    /// <summary>Models to run (null: every model built).</summary>
    public IReadOnlyList<IoModel>? Models { get; init; }

    /// <summary>Checks the values; throws <see cref="ArgumentException"/> naming the bad one.</summary>
    public void Validate()
    {
        if (Guests.Count == 0 || Guests.Any(g => g < 1 || g > 8)) throw new ArgumentException("guests must be 1..8", nameof(Guests));
        if (Frames < 1 || Frames > 1_000_000) throw new ArgumentException("frames must be 1..1000000", nameof(Frames));
        if (Sizes.Count == 0 || Sizes.Any(s => s < 60 || s > 1514)) throw new ArgumentException("size must be 60..1514 bytes", nameof(Sizes));
        if (Batch < 1 || Batch > ModelRun.MaxBatch) throw new ArgumentException($"batch must be 1..{ModelRun.MaxBatch}", nameof(Batch));
        if (Repeat < 1 || Repeat > 15) throw new ArgumentException("repeat must be 1..15", nameof(Repeat));
    }
}

/// <summary>The I/O-model lab: runs the workload under each model and guest count, prints the table, draws the chart.</summary>
public static class IoModelLab
{
    /// <summary>The models the lab builds.</summary>
    public static IReadOnlyList<IoModel> BuiltModels { get; } = [IoModel.Emulation, IoModel.Paravirtual, IoModel.DirectAssignment, IoModel.Sriov];

    /// <summary>True when <paramref name="model"/> runs with <paramref name="guests"/> guests.</summary>
    public static bool Supports(IoModel model, int guests) => model != IoModel.DirectAssignment || guests == 1;

    /// <summary>Runs one model on a fresh machine.</summary>
    public static LabRow RunOne(IoModel model, int guests, int frames, int size, int batch = ModelRun.DefaultBatch)
    {
        using var run = new ModelRun(model, guests);
        return run.Run(frames, size, batch);
    }

    /// <summary>Runs every combination of <paramref name="options"/> (each <see cref="LabOptions.Repeat"/> times on a fresh
    /// machine, keeping the median by CPU time), after a short warm-up run of each model (so JIT compilation is not
    /// charged to the first row); <paramref name="progress"/> sees each row.</summary>
    public static IReadOnlyList<LabRow> Run(LabOptions options, Action<LabRow>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var models = options.Models ?? BuiltModels;
        var rows = new List<LabRow>();
        foreach (var model in models)
        {
            if (!BuiltModels.Contains(model)) throw new NotSupportedException($"model {model} is not built yet");
            // Warm-up: enough calls for the tiered JIT to promote the hot paths before anything is timed.
            for (int i = 0; i < 3; i++) RunOne(model, Supports(model, 2) ? 2 : 1, 2000, 64);
            foreach (int size in options.Sizes)
                foreach (int k in options.Guests.Distinct().Order())
                {
                    if (!Supports(model, k)) continue;
                    var runs = Enumerable.Range(0, options.Repeat).Select(_ => RunOne(model, k, options.Frames, size, options.Batch)).OrderBy(r => r.CpuMicroseconds).ToList();
                    var row = runs[runs.Count / 2];
                    rows.Add(row);
                    progress?.Invoke(row);
                }
        }
        return rows;
    }

    /// <summary>Short column name of a model.</summary>
    public static string Name(IoModel model) => model switch
    {
        IoModel.Emulation => "emulation",
        IoModel.Paravirtual => "paravirtual",
        IoModel.DirectAssignment => "direct",
        IoModel.Sriov => "sr-iov",
        _ => model.ToString(),
    };

    /// <summary>The table: one line per row.</summary>
    public static string FormatTable(IEnumerable<LabRow> rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"{"model",-12} {"guests",6} {"size",5} {"frames",8} {"traps/f",8} {"irq-exits/f",11} {"copied B/f",10} {"host irq/f",10} {"guest irq/f",11} {"cpu us/f",9} {"kframes/s",10}");
        foreach (var r in rows)
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"{Name(r.Model),-12} {r.Guests,6} {r.FrameSize,5} {r.Frames,8} {r.TrapsPerFrame,8:F3} {(double)r.InterruptExits / r.Frames,11:F3} {r.CopiedPerFrame,10:F1} {r.HostInterruptsPerFrame,10:F3} {r.GuestInterruptsPerFrame,11:F3} {r.CpuPerFrame,9:F2} {r.FramesPerSecond / 1000,10:F1}");
        return sb.ToString();
    }

    /// <summary>Draws the chart (SVG): per model, host CPU µs per frame and traps per frame against the
    /// guest count, for the smallest frame size in <paramref name="rows"/>.</summary>
    public static void WriteChart(IReadOnlyList<LabRow> rows, string path)
    {
        ArgumentNullException.ThrowIfNull(rows);
        if (rows.Count == 0) throw new ArgumentException("no rows to draw", nameof(rows));
        int size = rows.Min(r => r.FrameSize);
        var plot = new PlotModel { Title = $"I/O models: cost per frame ({size}-byte frames)", Background = OxyColors.White };
        plot.Legends.Add(new Legend { LegendPosition = LegendPosition.TopLeft });
        plot.Axes.Add(new LinearAxis { Position = AxisPosition.Bottom, Title = "guests", Minimum = 0.5, Maximum = 8.5, MajorStep = 1 });
        plot.Axes.Add(new LinearAxis { Position = AxisPosition.Left, Title = "host CPU µs per frame (solid)", Key = "cpu", Minimum = 0 });
        plot.Axes.Add(new LinearAxis { Position = AxisPosition.Right, Title = "traps per frame (dashed)", Key = "traps", Minimum = 0 });
        var colors = new Dictionary<IoModel, OxyColor>
        {
            [IoModel.Emulation] = OxyColors.Firebrick, [IoModel.Paravirtual] = OxyColors.DarkOrange,
            [IoModel.DirectAssignment] = OxyColors.SteelBlue, [IoModel.Sriov] = OxyColors.SeaGreen,
        };
        foreach (var group in rows.Where(r => r.FrameSize == size).GroupBy(r => r.Model))
        {
            var cpu = new LineSeries { Title = $"{Name(group.Key)} CPU", YAxisKey = "cpu", Color = colors[group.Key], MarkerType = MarkerType.Circle };
            var traps = new LineSeries { Title = $"{Name(group.Key)} traps", YAxisKey = "traps", Color = colors[group.Key], LineStyle = LineStyle.Dash, MarkerType = MarkerType.Square };
            foreach (var r in group.OrderBy(r => r.Guests))
            {
                cpu.Points.Add(new DataPoint(r.Guests, r.CpuPerFrame));
                traps.Points.Add(new DataPoint(r.Guests, r.TrapsPerFrame));
            }
            plot.Series.Add(cpu);
            plot.Series.Add(traps);
        }
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir != null) Directory.CreateDirectory(dir);
        using var stream = File.Create(path);
        new SvgExporter { Width = 900, Height = 500 }.Export(plot, stream);
    }
}
