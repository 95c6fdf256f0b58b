using PcieEmu.Server.Cli;

namespace PcieEmu.Server.Tests.Cli;

/// <summary>Issue 13: <c>serve --machine FILE</c> builds the described machine; GetPlatform and ListFunctions describe
/// devices generically; <c>lspci -tv</c> shows any topology; a bad description stops <c>serve</c> with the entry named.</summary>
public sealed class MachineServeTests
{
    private const string TwoNicsBehindSwitch = """
        { "rootPorts": [
            { "switch": { "downstreamPorts": [
                { "device": { "type": "intel-82576" } },
                { "device": { "type": "intel-82576", "totalVfs": 4, "mac": "02:00:00:00:10:00" } } ] } } ] }
        """;

    [Fact]
    public async Task Serve_machine_builds_the_switch_and_GetPlatform_describes_it_generically()
    {
        await using var s = await TestServer.StartAsync("unix", machineJson: TwoNicsBehindSwitch);
        var p = await s.Client.GetPlatformAsync().W();
        var rp = Assert.Single(p.RootPorts);
        Assert.Equal((0x0008u, 1u, 6u, true), (rp.Rid, rp.SecondaryBus, rp.SubordinateBus, rp.AriForwardingSupported));
        Assert.Equal(
            [("switch0-upstream", true, 0x0100u, 0x0008u, 2u, 6u, false), ("switch0-downstream0", false, 0x0200u, 0x0100u, 3u, 4u, true), ("switch0-downstream1", false, 0x0208u, 0x0100u, 5u, 6u, true)],
            p.SwitchPorts.Select(x => (x.Name, x.Upstream, x.Rid, x.ParentRid, x.SecondaryBus, x.SubordinateBus, x.AriForwardingSupported)));
        Assert.Equal(2, p.Devices.Count);
        var d1 = p.Devices[1];
        Assert.Equal(("intel-82576", "Intel 82576", "rootPorts[0].switch.downstreamPorts[1].device", 0x0208u, 0x0008u),
            (d1.Type, d1.Model, d1.Path, d1.PortRid, d1.RootPortRid));
        Assert.Equal([0x0500u, 0x0501u], d1.PhysicalFunctionRids);
        Assert.Equal([4u, 4u], d1.TotalVfs);
        Assert.Equal([(2u, "02:00:00:00:10:00", 0x0500u, "port2 (05:00.0 82576)"), (3u, "02:00:00:00:10:01", 0x0501u, "port3 (05:00.1 82576)")],
            d1.EthernetPorts.Select(e => (e.Number, e.Mac, e.FunctionRid, e.Name)));

        var functions = await s.Client.ListFunctionsAsync().W();
        Assert.Equal([0x0000u, 0x0008u, 0x0100u, 0x0200u, 0x0208u, 0x0300u, 0x0301u, 0x0500u, 0x0501u], functions.Select(f => f.Rid));
        Assert.Equal("PLX Technology, Inc. PEX 8747 48-Lane, 5-Port PCI Express Gen 3 (8.0 GT/s) Switch", functions[2].Description);
        Assert.Equal("dev1.PF0", functions[7].Name);
        Assert.All(functions.Where(f => f.Rid >= 0x0300), f => Assert.All(f.Bars.Where(b => !b.IsIo), b => Assert.InRange(b.Address, 0xE000_0000ul, 0xFED8_FFFFul)));

        // Injection reaches the second NIC's port through the generic port number.
        var reply = await s.Client.InjectFrameAsync(3, new byte[60]).W();
        s.AssertNoErrors();

        string tree = LspciCommand.Tree(functions, p, verbose: true);
        Assert.Equal("""
            -[0000:00]-+-00.0  Intel Corporation 82G33/G31/P35/P31 Express DRAM Controller
                       \-01.0-[01-06]----00.0-[02-06]--+-00.0-[03-04]--+-00.0  Intel Corporation 82576 Gigabit Network Connection
                                                       |               \-00.1  Intel Corporation 82576 Gigabit Network Connection
                                                       \-01.0-[05-06]--+-00.0  Intel Corporation 82576 Gigabit Network Connection
                                                                       \-00.1  Intel Corporation 82576 Gigabit Network Connection

            """.Replace("\r", "", StringComparison.Ordinal), tree);
    }

    [Fact]
    public async Task Serve_with_a_bad_machine_description_exits_non_zero_naming_the_entry()
    {
        string dir = Directory.CreateTempSubdirectory("pcie-emu-machine-").FullName;
        try
        {
            string bad = Path.Combine(dir, "bad.json");
            await File.WriteAllTextAsync(bad, """{ "rootPorts": [ { "slot": 3, "device": { "type": "intel-82576" } }, { "slot": 3 } ] }""").W();
            var (code, _, err) = await ProcessRun.RunAsync(ProcessRun.PcieEmu("serve", "--machine", bad, "--listen", $"unix://{dir}/s.sock",
                "--ram-file", Path.Combine(dir, "ram.bin"))).W();
            Assert.Equal(2, code);
            Assert.Equal($"pcie-emu serve: --machine: {bad}: rootPorts[1].slot: duplicate slot 3: rootPorts[0] has it\n", err);

            // A description that parses but does not fit is refused at start too (not at first use).
            string tooBig = Path.Combine(dir, "big.json");
            await File.WriteAllTextAsync(tooBig, """{ "rootPorts": [ { "device": { "type": "intel-82576", "totalVfs": 128, "firstVfOffset": 65535 } } ] }""").W();
            (code, _, err) = await ProcessRun.RunAsync(ProcessRun.PcieEmu("serve", "--machine", tooBig, "--listen", $"unix://{dir}/s.sock",
                "--ram-file", Path.Combine(dir, "ram.bin"))).W();
            Assert.Equal(2, code);
            Assert.StartsWith("pcie-emu serve: --machine: rootPorts[0].device: bus numbers do not fit", err);

            (code, _, err) = await ProcessRun.RunAsync(ProcessRun.PcieEmu("serve", "--machine", Path.Combine(dir, "missing.json"), "--listen", $"unix://{dir}/s.sock")).W();
            Assert.Equal(2, code);
            Assert.Contains("--machine: file", err);
            Assert.False(File.Exists(Path.Combine(dir, "s.sock")));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
