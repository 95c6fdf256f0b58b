using PcieEmu.Client;
using PcieEmu.Core.Tests.Devices.Igb;
using PcieEmu.Protocol.V1;

namespace PcieEmu.Server.Tests.Kestrel;

/// <summary>The Linux igb probe, bring-up and receive configuration replayed over the wire (MmioService), as an out-of-process driver does it.</summary>
public sealed class IgbProbeWireTests
{
    [Theory]
    [InlineData("tcp")]
    [InlineData("unix")]
    public async Task Igb_probe_over_the_wire_reaches_link_up_with_the_nvm_mac(string transport)
    {
        await using var s = await TestServer.StartAsync(transport, new Dictionary<string, string?>());
        PcieEmuClient c = s.Client;
        ulong bar0 = (await c.ListFunctionsAsync().W()).Single(f => f.Rid == 0x100).Bars.Single(b => b.Index == 0).Address;
        // The replay is the synchronous driver loop; each access is one unary call with a deadline.
        uint Read(uint off)
        {
            var r = c.Mmio.ReadMmio(new ReadMmioRequest { Address = bar0 + off, Width = 4 }, deadline: T.Deadline);
            Assert.Equal(CompletionStatus.Successful, r.Status);
            return (uint)r.Value;
        }
        void Write(uint off, uint v)
        {
            var r = c.Mmio.WriteMmio(new WriteMmioRequest { Address = bar0 + off, Width = 4, Value = v }, deadline: T.Deadline);
            Assert.Equal(CompletionStatus.Successful, r.Status);
        }
        var driver = new IgbProbeReplay(Read, Write, port: 0);
        var (nvmMac, rarMac, phyId) = await Task.Run(driver.Probe).W();
        // igb_configure's VLAN, RSS and RCTL programming, every register read back over the wire.
        await Task.Run(() => driver.Configure(4, Convert.FromHexString("6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa"))).W();
        Assert.Equal(0x02A8_0390u, phyId & 0xFFFF_FFF0);
        Assert.Equal(nvmMac, rarMac);
        s.AssertNoErrors();
    }
}
