using PcieEmu.Server.Cli;

namespace PcieEmu.Server.Tests.Cli;

/// <summary>
/// <c>pcie-emu setpci</c> with pciutils' setpci syntax: hex offsets, setpci's register names (their width by
/// default, refused on a header type without them), capability-relative registers (CAP_x / ECAP_x by name,
/// CAPnn / ECAPnnn by id, @N for the N-th), +offset, several values and value:mask.
/// </summary>
public sealed class SetpciTests
{
    [Theory]
    [InlineData("4.W", 4, 2, 0)]
    [InlineData("0x168.w=9", 0x168, 2, 1)]
    [InlineData("3c.B=ff", 0x3C, 1, 1)]
    [InlineData("10=fee00000:ffff0000", 0x10, 4, 1)]
    [InlineData("10=1,2,3", 0x10, 4, 3)]
    [InlineData("COMMAND", 0x04, 2, 0)]
    [InlineData("command.b", 0x04, 1, 0)]
    [InlineData("BASE_ADDRESS_1+2.w", 0x16, 2, 0)]
    [InlineData("SECONDARY_BUS=5", 0x19, 1, 1)]
    [InlineData("SUBSYSTEM_ID", 0x2E, 2, 0)]
    public void Offsets_and_names_parse(string text, int offset, int width, int values)
    {
        var op = SetpciCommand.Parse(text);
        Assert.Equal((offset, width, values, (SetpciCommand.Capability?)null), (op.Offset, op.Width, op.Values.Count, op.Cap));
    }

    [Fact]
    public void A_mask_keeps_only_its_bits_of_the_value_and_a_plain_value_the_whole_register()
    {
        Assert.Equal([new SetpciCommand.Value(0xFEE00000, 0xFFFF0000)], SetpciCommand.Parse("10=fee0abcd:ffff0000").Values);
        Assert.Equal([new SetpciCommand.Value(0x12, 0xFF), new SetpciCommand.Value(0x04, 0x0F)], SetpciCommand.Parse("3c.b=12,f4:0f").Values);
    }

    [Fact]
    public void Named_registers_carry_the_header_types_that_have_them()
    {
        Assert.Equal(("SECONDARY_BUS", 2), (SetpciCommand.Parse("secondary_bus").Name, SetpciCommand.Parse("secondary_bus").HeaderTypes));
        Assert.Equal(1, SetpciCommand.Parse("BASE_ADDRESS_2").HeaderTypes);   // type 0 only
        Assert.Equal(3, SetpciCommand.Parse("BASE_ADDRESS_0").HeaderTypes);   // types 0 and 1
        Assert.Equal(0, SetpciCommand.Parse("VENDOR_ID").HeaderTypes);        // every header
    }

    [Theory]
    [InlineData("CAP_EXP+8.w", false, 0x10, 0, 8, 2)]
    [InlineData("CAP_MSIX.l", false, 0x11, 0, 0, 4)]
    [InlineData("ECAP_SRIOV+10.w", true, 0x10, 0, 0x10, 2)]
    [InlineData("ecap_ari+4.w", true, 0x0E, 0, 4, 2)]
    [InlineData("CAP5.l@1", false, 5, 1, 0, 4)]
    [InlineData("ECAP0001+8.l@2", true, 1, 2, 8, 4)]
    public void Capability_registers_parse(string text, bool extended, int id, int instance, int offset, int width)
    {
        var op = SetpciCommand.Parse(text);
        Assert.Equal((new SetpciCommand.Capability(extended, id, instance), offset, width), (op.Cap!.Value, op.Offset, op.Width));
    }

    [Theory]
    [InlineData("5.W", "not aligned")]
    [InlineData("1000.B", "beyond config space")]
    [InlineData("ffc.l=1,2", "beyond config space")]
    [InlineData("4.B=100", "does not fit")]
    [InlineData("4.B=1:100", "does not fit")]
    [InlineData("4.Q", "invalid width")]
    [InlineData("zz", "unknown register 'zz'")]
    [InlineData("CAP100.b", "unknown register")]
    [InlineData("CAP_EXP", "missing width")]
    [InlineData("ECAP_SRIOV+10", "missing width")]
    [InlineData("4.w@1", "capability only")]
    [InlineData("CAP_PM.w@x", "invalid capability instance")]
    [InlineData("CAP_EXP+zz.w", "invalid offset")]
    [InlineData("4.w=", "missing value")]
    [InlineData("4.w=1,,2", "invalid value")]
    [InlineData("4.w=1:", "invalid mask")]
    public void Bad_operations_are_refused_naming_what_is_wrong(string text, string why) =>
        Assert.Contains(why, Assert.Throws<FormatException>(() => SetpciCommand.Parse(text)).Message, StringComparison.Ordinal);

    // A config space with PM at 0x40, MSI at 0x50, a second PM at 0x60 and PCIe at 0x70; AER at 0x100, SR-IOV at 0x140.
    private static readonly Dictionary<int, uint> Space = new()
    {
        [0x04] = 0x0010_0000, [0x34] = 0x40,
        [0x40] = 0x0000_5001, [0x50] = 0x0000_6005, [0x60] = 0x0000_7001, [0x70] = 0x0000_0010,
        [0x100] = 0x1401_0001, [0x140] = 0x0001_0010,
    };

    private static Task<uint> Read(int at) => Task.FromResult(Space.GetValueOrDefault(at));

    [Theory]
    [InlineData(false, 0x01, 0, 0x40)]
    [InlineData(false, 0x01, 1, 0x60)]
    [InlineData(false, 0x05, 0, 0x50)]
    [InlineData(false, 0x10, 0, 0x70)]
    [InlineData(true, 0x0001, 0, 0x100)]
    [InlineData(true, 0x0010, 0, 0x140)]
    public async Task Capabilities_are_found_by_walking_the_lists(bool extended, int id, int instance, int address)
    {
        var (at, error) = await SetpciCommand.FindCapabilityAsync(Read, new SetpciCommand.Capability(extended, id, instance)).WaitAsync(T.Timeout);
        Assert.Equal((address, (string?)null), (at, error));
    }

    [Fact]
    public async Task A_missing_capability_or_instance_is_named()
    {
        Assert.Equal("no capability 0x11", (await SetpciCommand.FindCapabilityAsync(Read, new SetpciCommand.Capability(false, 0x11, 0)).WaitAsync(T.Timeout)).Error);
        Assert.Equal("capability 0x01 #2 not found: there are 2", (await SetpciCommand.FindCapabilityAsync(Read, new SetpciCommand.Capability(false, 1, 2)).WaitAsync(T.Timeout)).Error);
        Assert.Equal("extended capability 0x0010 #1 not found: there is 1", (await SetpciCommand.FindCapabilityAsync(Read, new SetpciCommand.Capability(true, 0x10, 1)).WaitAsync(T.Timeout)).Error);
        // No capability list bit in Status: no PCI capabilities at all.
        Task<uint> NoList(int at) => Task.FromResult(at == 0x04 ? 0u : Space.GetValueOrDefault(at));
        Assert.Equal("no capability 0x01", (await SetpciCommand.FindCapabilityAsync(NoList, new SetpciCommand.Capability(false, 1, 0)).WaitAsync(T.Timeout)).Error);
    }

    [Fact]
    public async Task Against_the_82576_names_and_capabilities_read_and_write_what_offsets_do()
    {
        await using var s = await TestServer.StartAsync("unix");
        string target = "unix://" + s.SocketPath;
        async Task<string> Setpci(params string[] ops)
        {
            var (code, stdout, stderr) = await ProcessRun.RunAsync(ProcessRun.PcieEmu(["setpci", "--target", target, "-s", "01:00.0", .. ops]));
            Assert.True(code == 0, $"setpci {string.Join(' ', ops)}: exit {code}: {stderr}");
            return stdout;
        }
        // VENDOR_ID and DEVICE_ID by name; the PCIe capability's Device Control (CAP_EXP+8.w) as the client reads
        // it: the 82576's PCIe capability is at 0xA0 and its SR-IOV capability at 0x160 (the 82576 datasheet's layout).
        var c = s.Client;
        const int Pcie = 0xA0, Sriov = 0x160;
        uint devctl = (await c.ReadConfigAsync(0x100, Pcie + 8, 2).W()).Value;
        Assert.Equal($"8086\n10c9\n{devctl:x4}\n", await Setpci("VENDOR_ID", "DEVICE_ID", "CAP_EXP+8.w"));
        // SR-IOV: TotalVFs (+0x0E) is 8; NumVFs (+0x10) written by name reads back through the client.
        Assert.Equal("0008\n", await Setpci("ECAP_SRIOV+0e.w"));
        Assert.Equal("", await Setpci("ECAP_SRIOV+10.w=3"));
        Assert.Equal(3u, (await c.ReadConfigAsync(0x100, Sriov + 0x10, 2).W()).Value);
        // A masked write changes only the masked bits of Interrupt Line; two values land at consecutive offsets.
        Assert.Equal("", await Setpci("INTERRUPT_LINE=a5", "INTERRUPT_LINE=0f:0f"));
        Assert.Equal(0xAFu, (await c.ReadConfigAsync(0x100, 0x3C, 1).W()).Value);
        // A register the header type lacks, and a capability the function lacks, are refused.
        var (code, _, err) = await ProcessRun.RunAsync(ProcessRun.PcieEmu(["setpci", "--target", target, "-s", "01:00.0", "SECONDARY_BUS"]));
        Assert.Equal(1, code);
        Assert.Contains("has no register SECONDARY_BUS (header type 0)", err, StringComparison.Ordinal);
        (code, _, err) = await ProcessRun.RunAsync(ProcessRun.PcieEmu(["setpci", "--target", target, "-s", "01:00.0", "CAP_AGP.w"]));
        Assert.Equal(1, code);
        Assert.Contains("no capability 0x02", err, StringComparison.Ordinal);
        // The root port is type 1: SECONDARY_BUS is 1.
        (code, var output, _) = await ProcessRun.RunAsync(ProcessRun.PcieEmu(["setpci", "--target", target, "-s", "00:01.0", "SECONDARY_BUS", "HEADER_TYPE"]));
        Assert.Equal((0, "01\n01\n"), (code, output));
        s.AssertNoErrors();
    }
}
