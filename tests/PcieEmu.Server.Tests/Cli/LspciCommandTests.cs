namespace PcieEmu.Server.Tests.Cli;

/// <summary>Issue 9 (newcomer): `pcie-emu lspci -v/-vv/-vvv` decode like lspci; unknown options are one-line errors.</summary>
public sealed class LspciCommandTests
{
    private static Task<(int Code, string Out, string Err)> Lspci(params string[] args) => ProcessRun.RunAsync(ProcessRun.PcieEmu(["lspci", .. args]));

    [Fact]
    public async Task Vvv_decodes_the_capabilities_with_pciutils()
    {
        await using var s = await TestServer.StartAsync("unix");   // pciutils is a build requirement (.ci/run installs it)
        var (code, output, err) = await Lspci("--target", s.Target, "-vvv", "-s", "01:00.0");
        Assert.True(code == 0, err);
        Assert.StartsWith("01:00.0 Ethernet controller: Intel Corporation 82576", output);
        Assert.Contains("Capabilities: [40] Power Management version 3", output);
        Assert.Contains("MSI-X: Enable- Count=10 Masked-", output);
        Assert.Contains("Capabilities: [160 v1] Single Root I/O Virtualization (SR-IOV)", output);
        Assert.DoesNotContain("02:10.0", output);   // -s kept

        var (code1, plain, _) = await Lspci("--target", s.Target, "-v", "-x");
        Assert.Equal(0, code1);
        Assert.Contains("00:01.0 PCI bridge: Intel Corporation", plain);
        Assert.Contains("Capabilities: [", plain);
        Assert.Contains("00: 86 80 c9 10", plain);   // -x still dumps the header
        s.AssertNoErrors();
    }

    [Theory]
    [InlineData("-k")]
    [InlineData("--verbose")]
    public async Task Unknown_options_are_a_one_line_error(string option)
    {
        var (code, output, err) = await Lspci("--target", "unix:///nonexistent/pcie-emu.sock", option);
        Assert.Equal(2, code);
        Assert.Equal("", output);
        Assert.Equal($"pcie-emu lspci: unknown option '{option}' (options: -s, -x, -xxx, -xxxx, -v, -vv, -vvv, -t, -tv, --target)\n", err);
    }
}
