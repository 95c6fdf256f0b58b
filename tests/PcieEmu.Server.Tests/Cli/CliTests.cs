using System.Diagnostics;
using PcieEmu.Client;
using PcieEmu.Server.Cli;
using PcieEmu.Server.Hosting;

namespace PcieEmu.Server.Tests.Cli;

public sealed class CliTests
{
    [Theory]
    [InlineData("unix:///run/x.sock", EndpointKind.Unix, "/run/x.sock", "", 0)]
    [InlineData("unix:/tmp/a", EndpointKind.Unix, "/tmp/a", "", 0)]
    [InlineData("tcp://127.0.0.1:50551", EndpointKind.Tcp, "", "127.0.0.1", 50551)]
    [InlineData("tcp://[::1]:9", EndpointKind.Tcp, "", "::1", 9)]
    [InlineData("http://localhost:80/", EndpointKind.Tcp, "", "localhost", 80)]
    public void Targets_parse(string text, EndpointKind kind, string path, string host, int port) =>
        Assert.Equal(new Endpoint(kind, path, host, port), Endpoints.Parse(text));

    [Theory]
    [InlineData("")]
    [InlineData("unix://relative.sock")]
    [InlineData("tcp://host")]
    [InlineData("tcp://host:99999")]
    [InlineData("udp://1.2.3.4:5")]
    public void Bad_targets_are_refused(string text) => Assert.Throws<FormatException>(() => Endpoints.Parse(text));

    [Theory]
    [InlineData("01:00.0", 0x0100)]
    [InlineData("0000:02:10.2", 0x0282)]
    [InlineData("ff:1f.7", 0xFFFF)]
    [InlineData("1:0.1", 0x0101)]
    public void Pci_addresses_parse_and_format(string text, int rid)
    {
        Assert.True(PciAddress.TryParse(text, out ushort r));
        Assert.Equal(rid, r);
        Assert.Equal(rid, PciAddress.Parse(PciAddress.Format(r)));
    }

    [Theory]
    [InlineData("01:20.0")]
    [InlineData("01:00.8")]
    [InlineData("0001:01:00.0")]
    [InlineData("100:00.0")]
    [InlineData("01.00.0")]
    public void Bad_pci_addresses_are_refused(string text) => Assert.False(PciAddress.TryParse(text, out _));

    [Theory]
    [InlineData("256M", 256ul << 20)]
    [InlineData("1G", 1ul << 30)]
    [InlineData("0x1000", 0x1000ul)]
    [InlineData("4096", 4096ul)]
    public void Sizes_parse(string text, ulong bytes) => Assert.Equal(bytes, Commands.ParseSize(text));

    [Fact]
    public void Non_loopback_listen_needs_allow_remote()
    {
        var ex = Assert.Throws<ServeConfigurationException>(() => ServerHost.ResolveEndpoints(new ServeSettings { Listen = ["tcp://0.0.0.0:5000"] }));
        Assert.Contains("--allow-remote", ex.Message);
        Assert.Single(ServerHost.ResolveEndpoints(new ServeSettings { Listen = ["tcp://0.0.0.0:5000"], AllowRemote = true }));
        Assert.Equal(2, ServerHost.ResolveEndpoints(new ServeSettings()).Count);
        Assert.Throws<ServeConfigurationException>(() => ServerHost.ResolveEndpoints(new ServeSettings { Listen = ["tcp://example.org:1"] }));
    }

    [Fact]
    public async Task Config_file_describes_the_machine_and_bad_values_name_the_option()
    {
        string dir = Directory.CreateTempSubdirectory("pcie-emu-cfg-").FullName;
        try
        {
            string file = Path.Combine(dir, "machine.json");
            await File.WriteAllTextAsync(file, """{ "Machine": { "RamSize": 8388608 }, "Limits": { "MaxInterruptSubscribers": 3 } }""").W();
            // Devices come from the machine description (--machine), RAM and limits from the configuration.
            string description = Path.Combine(dir, "description.json");
            await File.WriteAllTextAsync(description, """{ "rootPorts": [ { "device": { "type": "intel-82576", "totalVfs": 4 } } ] }""").W();
            var app = ServerHost.Build(new ServeSettings
            {
                Listen = [$"unix://{dir}/s.sock"], ConfigFile = file, MachineFile = description, UseAppSettings = false, UseEnvironment = false,
                Overrides = new Dictionary<string, string?> { ["Machine:RamFilePath"] = Path.Combine(dir, "ram.bin"), ["Machine:KeepRamFile"] = "true" },
            }, _ => { });
            await app.StartAsync().W();
            using (var c = PcieEmuClient.Connect($"unix://{dir}/s.sock"))
            {
                var p = await c.GetPlatformAsync().W();
                Assert.Equal(8ul << 20, p.RamRegions[0].Size);
                Assert.Equal(Path.Combine(dir, "ram.bin"), p.RamRegions[0].SharedFilePath);
                Assert.Equal(new uint[] { 4, 4 }, p.Devices[0].TotalVfs);
                Assert.Equal(3u, p.Limits.MaxInterruptSubscribers);
            }
            await app.StopAsync().W();
            await app.DisposeAsync().AsTask().W();
            Assert.True(File.Exists(Path.Combine(dir, "ram.bin")));   // KeepRamFile
            Assert.False(File.Exists(Path.Combine(dir, "s.sock")));   // socket removed on shutdown

            await File.WriteAllTextAsync(file, """{ "Machine": { "RamSize": 1000 } }""").W();
            var ex = Assert.Throws<ServeConfigurationException>(() => ServerHost.Build(new ServeSettings { Listen = [$"unix://{dir}/t.sock"], ConfigFile = file, UseAppSettings = false, UseEnvironment = false }, _ => { }));
            Assert.Contains("Machine:RamSize", ex.Message);
            var ex2 = Assert.Throws<ServeConfigurationException>(() => ServerHost.Build(new ServeSettings
            {
                Listen = [$"unix://{dir}/t.sock"], UseAppSettings = false, UseEnvironment = false,
                Overrides = new Dictionary<string, string?> { ["Limits:MaxTransactionsPerMessage"] = "0" },
            }, _ => { }));
            Assert.Contains("Limits:MaxTransactionsPerMessage", ex2.Message);
            await File.WriteAllTextAsync(file, """{ "Machine": { "Nic": { "TotalVfs": 0 } } }""").W();
            var ex3 = Assert.Throws<ServeConfigurationException>(() => ServerHost.Build(new ServeSettings { Listen = [$"unix://{dir}/t.sock"], ConfigFile = file, UseAppSettings = false, UseEnvironment = false }, _ => { }));
            Assert.Contains("Machine:Nic: devices are set in a machine description now: serve --machine FILE", ex3.Message);
            await File.WriteAllTextAsync(file, """{ "Machine": { "RamSize": "lots" } }""").W();
            var ex4 = Assert.Throws<ServeConfigurationException>(() => ServerHost.Build(new ServeSettings { Listen = [$"unix://{dir}/t.sock"], ConfigFile = file, UseAppSettings = false, UseEnvironment = false }, _ => { }));
            Assert.Contains("Machine", ex4.Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task Machine_is_disposed_on_shutdown_and_the_RAM_file_removed()
    {
        var s = await TestServer.StartAsync("unix");
        string ram = (await s.Client.GetPlatformAsync().W()).RamRegions[0].SharedFilePath;
        Assert.True(File.Exists(ram));
        await s.DisposeAsync().AsTask().W();
        Assert.False(File.Exists(ram));
    }

    [Fact]
    public async Task Lspci_dump_is_decoded_by_pciutils()
    {
        await using var s = await TestServer.StartAsync("tcp");
        var functions = await s.Client.ListFunctionsAsync().W();
        string text = await LspciCommand.ListAsync(s.Client, functions, 0x0100, 4096, CancellationToken.None).W();
        var lines = text.Split('\n');
        Assert.StartsWith("01:00.0 Ethernet controller [0200]", lines[0]);
        Assert.Equal("00: 86 80 c9 10", lines[1][..15]);
        Assert.StartsWith("ff0:", lines[256]);
        Assert.Equal("", lines[257]);

        string file = Path.GetTempFileName();
        try
        {
            await File.WriteAllTextAsync(file, text).W();
            var psi = new ProcessStartInfo("lspci", ["-F", file, "-vvv"]) { RedirectStandardOutput = true, RedirectStandardError = true };
            using var p = Process.Start(psi)!;   // pciutils is a build requirement (.ci/run installs it)
            string output = await p.StandardOutput.ReadToEndAsync().W();
            await p.WaitForExitAsync().W();
            Assert.Contains("01:00.0 Ethernet controller: Intel Corporation 82576", output);
            Assert.Contains("Single Root I/O Virtualization (SR-IOV)", output);
            Assert.Contains("Total VFs: 8", output);
            Assert.Contains("Device Serial Number 00-1b-21-ff-ff-2b-46-e0", output);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task Lspci_tree_shows_the_port_and_its_buses()
    {
        await using var s = await TestServer.StartAsync("tcp");
        await s.Client.EnableSriovAsync(0x100, 2, ari: false, settle: TimeSpan.Zero).W();
        var tree = LspciCommand.Tree(await s.Client.ListFunctionsAsync().W(), (await s.Client.GetPlatformAsync().W()).RootPorts, verbose: true);
        Assert.StartsWith("-[0000:00]-+-00.0", tree);
        Assert.Contains("\\-01.0-[01-02]--+-00.0  Intel Corporation 82576 Gigabit Network Connection", tree);
        Assert.Contains("[02]-10.2  Intel Corporation 82576 Virtual Function", tree);
    }
}
