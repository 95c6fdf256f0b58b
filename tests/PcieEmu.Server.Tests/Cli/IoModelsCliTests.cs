namespace PcieEmu.Server.Tests.Cli;

/// <summary>Issue 15: `pcie-emu iomodels` prints the lab's table and writes its chart; bad options are one-line errors naming the option.</summary>
public sealed class IoModelsCliTests
{
    private static Task<(int Code, string Out, string Err)> IoModels(params string[] args) => ProcessRun.RunAsync(ProcessRun.PcieEmu(["iomodels", .. args]));

    [Fact]
    public async Task Prints_the_table_and_writes_the_chart()
    {
        string dir = Directory.CreateTempSubdirectory("pcie-emu-iomodels-").FullName;
        try
        {
            string chart = Path.Combine(dir, "chart.svg");
            var (code, output, err) = await IoModels("--guests", "1,2", "--frames", "4", "--size", "64", "--repeat", "1", "--chart", chart);
            Assert.True(code == 0, err);
            var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.StartsWith("model", lines[0]);
            // emulation, paravirtual, sr-iov with 1 and 2 guests; direct with 1.
            Assert.Equal(7, lines.Length - 1);
            Assert.Contains(lines, l => l.StartsWith("paravirtual       2    64       24 ", StringComparison.Ordinal));
            Assert.Contains($"chart: {chart}", err);
            Assert.True(new FileInfo(chart).Length > 1000);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Theory]
    [InlineData("--guests", "0", "pcie-emu iomodels: --guests: guests must be 1..8")]
    [InlineData("--guests", "1,x", "pcie-emu iomodels: --guests: 'x' is not a number")]
    [InlineData("--size", "2000", "pcie-emu iomodels: --size: size must be 60..1514 bytes")]
    [InlineData("--frames", "0", "pcie-emu iomodels: --frames: frames must be 1..1000000")]
    [InlineData("--batch", "65", "pcie-emu iomodels: --batch: batch must be 1..64")]
    [InlineData("--models", "emulation,xen", "pcie-emu iomodels: --models: 'xen' is not one of emulation, paravirtual, direct, sr-iov")]
    public async Task Bad_options_are_a_one_line_error_naming_the_option(string option, string value, string expected)
    {
        var (code, output, err) = await IoModels(option, value);
        Assert.Equal(2, code);
        Assert.Equal("", output);
        Assert.Equal(expected + "\n", err);
    }
}
