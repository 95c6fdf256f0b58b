namespace PcieEmu.Lab.Tests;

/// <summary>The lab end to end with a tiny frame count: every model and guest count, the table, the chart.</summary>
public class LabTests
{
    [Fact]
    public void RunsEveryModel_PrintsOneLinePerRow_AndDrawsTheChart()
    {
        var rows = IoModelLab.Run(new LabOptions { Guests = [1, 2], Frames = 8, Sizes = [64, 1514] });
        // Emulation, paravirtual and SR-IOV with 1 and 2 guests, direct assignment with 1; two sizes.
        Assert.Equal(14, rows.Count);
        Assert.Equal(2, rows.Count(r => r.Model == IoModel.DirectAssignment));
        foreach (var r in rows)
        {
            Assert.Equal(r.Guests * 8L * (r.Guests > 1 ? 3 : 2), r.Frames);
            Assert.True(r.CpuMicroseconds >= 0 && r.WallSeconds > 0, $"{r}");
        }
        string table = IoModelLab.FormatTable(rows);
        var lines = table.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(15, lines.Length);
        Assert.StartsWith("model", lines[0]);
        Assert.Contains(lines, l => l.StartsWith("sr-iov ", StringComparison.Ordinal) && l.Contains(" 1514 ", StringComparison.Ordinal));

        string dir = Directory.CreateTempSubdirectory("pcie-emu-lab-chart-").FullName;
        try
        {
            string path = Path.Combine(dir, "sub", "chart.svg");
            IoModelLab.WriteChart(rows, path);
            string svg = File.ReadAllText(path);
            Assert.True(svg.Length > 1000, $"chart is {svg.Length} bytes");
            Assert.Contains("<svg", svg, StringComparison.Ordinal);
            Assert.Contains("sr-iov CPU", svg, StringComparison.Ordinal);
            Assert.Contains("emulation traps", svg, StringComparison.Ordinal);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Theory]
    [InlineData("Guests")]
    [InlineData("Frames")]
    [InlineData("Sizes")]
    public void BadOptions_AreRefusedByName(string field)
    {
        var o = field switch
        {
            "Guests" => new LabOptions { Guests = [0] },
            "Frames" => new LabOptions { Frames = 0 },
            _ => new LabOptions { Sizes = [59] },
        };
        var e = Assert.Throws<ArgumentException>(() => IoModelLab.Run(o));
        Assert.Equal(field, e.ParamName);
    }

    [Fact]
    public void AChartNeedsRows() =>
        Assert.Throws<ArgumentException>(() => IoModelLab.WriteChart([], Path.Combine(Path.GetTempPath(), "never.svg")));
}
