using PcieEmu.Server.Hosting;
using static PcieEmu.Core.Devices.Igb.IgbRegs;
using static PcieEmu.Server.Tests.VfioUser.VfioUserTestClient;

namespace PcieEmu.Server.Tests.VfioUser;

/// <summary>Any function can be served: a PF keeps its own IDs and Memory Space Enable, has INTx, and its real BARs stay put.</summary>
public class VfioUserPfTests
{
    [Fact]
    public async Task A_pf_is_served_with_its_bars_and_intx()
    {
        await using var rig = await VfioUserRig.StartAsync(enableVfs: false, bdf: "01:00.0");
        using var c = await rig.ConnectAsync();
        c.Ok(VersionCmd, VersionPayload());
        Assert.Equal(0x10C9_8086u, c.Read32(Config, 0));

        var sizes = new ulong[] { 128 << 10, 4 << 20, 32, 16 << 10, 0, 0 };
        for (uint i = 0; i < 6; i++) Assert.Equal(sizes[i], c.Ok(GetRegionInfo, U32s(32, 0, i, 0, 0, 0, 0, 0)).U64(16));
        Assert.Equal((1u, 7u), (c.Ok(GetIrqInfo, U32s(16, 0, 0, 0)).U32(12), c.Ok(GetIrqInfo, U32s(16, 0, 0, 0)).U32(4)));
        Assert.Equal(10u, c.Ok(GetIrqInfo, U32s(16, 0, 2, 0)).U32(12));

        // Virtual BARs: sizing a 32-bit BAR and the I/O BAR, while the real BAR0 keeps the firmware's address.
        ulong realBar0 = rig.PfBar0;
        c.Write32(Config, 0x10, 0xFFFF_FFFF);
        c.Write32(Config, 0x18, 0xFFFF_FFFF);
        Assert.Equal(0xFFFE_0000u, c.Read32(Config, 0x10));
        Assert.Equal(0xFFFF_FFE1u, c.Read32(Config, 0x18));
        Assert.Equal(realBar0, rig.PfBar0);

        // The PF's own Memory Space Enable (set by firmware) lets BAR0 through: STATUS reads as the machine's.
        Assert.Equal(rig.PfRead(Status), c.Read32(0, Status));
        // The I/O BAR goes to the machine's I/O decode (4 bytes at most per access; here the firmware left I/O decoding as it is).
        Assert.Equal((uint)rig.M.ReadBar(VfioUserRig.Pf0, 2, 4, 4).Value, c.Read32(2, 4));
        Assert.Equal(8, c.Read(2, 0, 8).Length);

        // INTx: the PF asserts it on a link-status cause; the INTx eventfd is signalled.
        using var intx = OwnedFd.EventFd();
        c.Ok(SetIrqs, U32s(20, 0x24, 0, 0, 1), intx.Fd);
        rig.PfWrite(Ims, IcrLsc);
        rig.PfWrite(Ics, IcrLsc);
        Assert.Equal(1, intx.WaitSignalled(T.Timeout));
        c.Ok(SetIrqs, U32s(20, 0x11, 0, 0, 1));          // the client's unmask after an INTx
        rig.Server.AssertNoErrors();
    }

    [Fact]
    public void Serve_refuses_a_bad_vfio_user_value_naming_the_option()
    {
        var ex = Assert.Throws<ServeConfigurationException>(() => ServerHost.Build(new ServeSettings
        {
            Listen = ["tcp://127.0.0.1:0"],
            VfioUser = ["02:10.0"],
            UseAppSettings = false,
            UseEnvironment = false,
        }));
        Assert.StartsWith("--vfio-user '02:10.0'", ex.Message);
    }
}
