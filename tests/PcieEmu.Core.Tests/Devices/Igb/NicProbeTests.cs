using PcieEmu.Core.Devices.Igb;

namespace PcieEmu.Core.Tests.Devices.Igb;

/// <summary>
/// The PF probe path of the Linux igb driver over the machine's MMIO path: semaphores, NVM reads
/// and checksum, PHY ID and link through MDIC, GIO master disable, reset, link up with the NVM's
/// MAC in RAL0/RAH0 (issue 12, item 1).
/// </summary>
public class NicProbeTests
{
    private static IgbProbeReplay Driver(NicRig rig, int port)
    {
        var pf = (IgbPhysicalFunction)rig.M.PhysicalFunctions[port];
        ulong bar = pf.BarWindow(pf.Bars[0]).Base;
        return new IgbProbeReplay(off => rig.R(bar + off), (off, v) => rig.W(bar + off, v), port);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    public void LinuxIgbProbeReachesLinkUpWithTheNvmMac(int port)
    {
        using var rig = new NicRig();
        var drv = Driver(rig, port);
        var (nvmMac, rarMac, phyId) = drv.Probe();

        // IGP03E1000_E_PHY_ID with the revision masked off (igb_get_phy_id: id2 & 0xFFF0).
        Assert.Equal(0x02A8_0390u, phyId & 0xFFFF_FFF0);
        // Words 0-2 hold LAN0's address; LAN1 uses it with bit 0 of the last byte inverted.
        var expected = (byte[])nvmMac.Clone();
        if (port == 1) expected[5] ^= 1;
        Assert.Equal(expected, rarMac);
        var pf = (IgbPhysicalFunction)rig.M.PhysicalFunctions[port];
        Assert.Equal(expected, pf.Nic.MacAddress.ToArray());
        // The NVM's LAN0 address is the one the DSN of PF0 encodes (EUI-64 with FF-FE... FF-FF inserted).
        ulong dsn = pf.Options.SerialNumber;
        Assert.Equal([(byte)(dsn >> 56), (byte)(dsn >> 48), (byte)(dsn >> 40), (byte)(dsn >> 16), (byte)(dsn >> 8), (byte)dsn], nvmMac);
    }

    [Fact]
    public void AfterProbeIgbConfigureSpreadsTcpFlowsByRetaAndFiltersVlans()
    {
        using var rig = new NicRig();
        var drv = Driver(rig, 0);
        drv.Probe();
        byte[] key = Convert.FromHexString("6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa");
        drv.Configure(queues: 4, key);
        var rx = new NicRig.Ring[4];
        for (int q = 0; q < 4; q++) rx[q] = rig.PfRx(q);
        var mac = rig.Nic.MacAddress.ToArray();
        // Microsoft's first IPv4/TCP vector: 66.9.149.187:2794 → 161.142.100.80:1766, hash 0x51ccc178 → RETA entry 0x78 → queue 0.
        var f = new byte[60];   // 14 + 20 + 20, padded to the minimum frame
        mac.CopyTo(f, 0);
        f[6] = 0x02; f[12] = 0x08;
        f[14] = 0x45; f[17] = 40; f[22] = 64; f[23] = 6;
        new byte[] { 66, 9, 149, 187, 161, 142, 100, 80 }.CopyTo(f, 26);
        f[34] = 2794 >> 8; f[35] = 2794 & 0xFF; f[36] = 1766 >> 8; f[37] = 1766 & 0xFF; f[46] = 0x50;
        Assert.Equal(1, rig.Nic.InjectFrame(f));
        Assert.Equal(1u, rx[0x78 % 4].Head);
        Assert.Equal(0x51ccc178u, System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(rig.ReadRam(rx[0].DescAddr(0) + 4, 4)));
        // The second vector (hash 0xc626b0ea → entry 0x6A → queue 2).
        new byte[] { 199, 92, 111, 2, 65, 69, 140, 83 }.CopyTo(f, 26);
        f[34] = 14230 >> 8; f[35] = 14230 & 0xFF; f[36] = 4739 >> 8; f[37] = 4739 & 0xFF;
        Assert.Equal(1, rig.Nic.InjectFrame(f));
        Assert.Equal(1u, rx[0x6A % 4].Head);
        // VFE with only VID 0 in the table: a frame tagged with VID 5 is dropped.
        byte[] tagged = [.. f[..12], 0x81, 0x00, 0x00, 0x05, .. f[12..]];
        Assert.Equal(0, rig.Nic.InjectFrame(tagged));
    }

    [Fact]
    public void NvmWordsSumToBabaAndTheSizeComesFromEecd()
    {
        using var rig = new NicRig();
        var drv = Driver(rig, 0);
        Assert.Equal(256, drv.NvmWords());
        Assert.Equal((ushort)0xBABA, drv.ValidateChecksum());
        Assert.Equal((ushort)0x10C9, drv.ReadNvm(0x0D));   // device ID word
        Assert.Equal((ushort)0x8086, drv.ReadNvm(0x0E));   // vendor ID word
        Assert.Equal((ushort)0xFFFF, drv.ReadNvm(0x37));   // no alternate MAC address block
    }

    [Fact]
    public void EerdReadLeavesDoneAndDataUntilTheNextStart()
    {
        using var rig = new NicRig();
        Assert.Equal(0u, rig.PfRead(IgbProbeReplay.EERD) & 2);       // nothing read yet
        rig.PfWrite(IgbProbeReplay.EERD, 0x0D << 2 | 1);
        uint v = rig.PfRead(IgbProbeReplay.EERD);
        Assert.Equal(0x10C9_0000u | 0x0D << 2 | 2, v);               // DATA, ADDR, DONE; START self-cleared
    }

    [Fact]
    public void SmbiLatchesOnTheFirstReadUntilSoftwareClearsIt()
    {
        using var rig = new NicRig();
        Assert.Equal(0u, rig.PfRead(IgbProbeReplay.SWSM) & 1);       // first reader gets the semaphore
        Assert.Equal(1u, rig.PfRead(IgbProbeReplay.SWSM) & 1);       // everyone else sees it taken
        rig.PfWrite(IgbProbeReplay.SWSM, 3);                          // SWESMBI, keeping SMBI (as igb writes swsm | SWESMBI)
        Assert.Equal(3u, rig.PfRead(IgbProbeReplay.SWSM) & 3);
        rig.PfWrite(IgbProbeReplay.SWSM, 0);                          // igb_put_hw_semaphore
        Assert.Equal(0u, rig.PfRead(IgbProbeReplay.SWSM) & 3);
        Assert.Equal(1u, rig.PfRead(IgbProbeReplay.SWSM) & 3);
        // The two ports have their own semaphores.
        var pf1 = (IgbPhysicalFunction)rig.M.PhysicalFunctions[1];
        Assert.Equal(0u, rig.R(pf1.BarWindow(pf1.Bars[0]).Base + IgbProbeReplay.SWSM) & 1);
    }

    [Fact]
    public void SwFwSyncKeepsSoftwareBitsAndFirmwareBitsStayClear()
    {
        using var rig = new NicRig();
        var drv = Driver(rig, 0);
        drv.AcquireSwFw(1);
        Assert.Equal(1u, rig.PfRead(IgbProbeReplay.SW_FW_SYNC));
        rig.PfWrite(IgbProbeReplay.SW_FW_SYNC, 0xFFFF_FFFF);
        Assert.Equal(0xFu, rig.PfRead(IgbProbeReplay.SW_FW_SYNC));   // firmware bits 19:16 read-only 0
        drv.ReleaseSwFw(0xF);
        Assert.Equal(0u, rig.PfRead(IgbProbeReplay.SW_FW_SYNC));
    }

    [Fact]
    public void GioMasterDisableClearsStatusBit19AndResetRestoresIt()
    {
        using var rig = new NicRig();
        Assert.NotEqual(0u, rig.PfRead(IgbProbeReplay.STATUS) & 1u << 19);
        var drv = Driver(rig, 0);
        drv.DisablePcieMaster();
        Assert.Equal(0u, rig.PfRead(IgbProbeReplay.STATUS) & 1u << 19);
        rig.PfWrite(IgbProbeReplay.CTRL, rig.PfRead(IgbProbeReplay.CTRL) | 1u << 26);
        Assert.NotEqual(0u, rig.PfRead(IgbProbeReplay.STATUS) & 1u << 19);
        Assert.NotEqual(0u, rig.PfRead(IgbProbeReplay.EECD) & 1u << 9);   // auto-read done again
    }

    [Fact]
    public void GioMasterDisableStopsQueueDmaUntilCleared()
    {
        var (rig, tx, rx) = NicTrafficTests.ThreeVfs();
        using var _ = rig;
        uint ctrl = rig.PfRead(IgbProbeReplay.CTRL);
        rig.PfWrite(IgbProbeReplay.CTRL, ctrl | 1u << 2);
        rig.PostAdv(tx[0], NicRig.Frame(NicRig.Mac(1), NicRig.Mac(0)));
        Assert.Equal(0u, tx[0].Head);                                      // not fetched
        Assert.Equal(0, rig.Nic.InjectFrame(NicRig.Frame(NicRig.Mac(1), [2, 0, 0, 0, 0, 0x99])));
        Assert.Equal(1u, rig.PfRead(0x4010));                              // MPC: missed for want of DMA
        rig.PfWrite(IgbProbeReplay.CTRL, ctrl);                            // master enabled again: the queue runs
        Assert.Equal(1u, tx[0].Head);
        Assert.Equal(1u, rx[1].Head);
    }

    [Fact]
    public void MdicToAnotherPhyAddressSetsErrorAndMdicIRaisesMdac()
    {
        using var rig = new NicRig();
        var drv = Driver(rig, 0);
        Assert.Throws<InvalidOperationException>(() => drv.ReadPhy(2, phyAddr: 2));
        Assert.NotEqual(0u, rig.PfRead(IgbProbeReplay.MDIC) & 1u << 28);  // READY with ERROR
        rig.PfRead(IgbProbeReplay.ICR);
        rig.PfWrite(IgbProbeReplay.MDIC, 2u << 16 | 1u << 21 | 2u << 26 | 1u << 29);
        Assert.Equal(0x02A8u | 1u << 28 | 1u << 29 | 2u << 26 | 1u << 21 | 2u << 16, rig.PfRead(IgbProbeReplay.MDIC));
        Assert.NotEqual(0u, rig.PfRead(IgbProbeReplay.ICR) & IgbPhy.IcrMdac);
    }

    [Fact]
    public void PhyPowerDownTakesTheLinkDownWithLscAndPowerUpBringsItBack()
    {
        using var rig = new NicRig();
        var drv = Driver(rig, 0);
        rig.PfRead(IgbProbeReplay.ICR);
        ushort bmcr = drv.ReadPhy(0);
        Assert.Equal((ushort)0x1140, bmcr);                                 // 1000 Mb/s, full duplex, autoneg on
        Assert.Equal((ushort)0x796D, drv.ReadPhy(1));                       // link, autoneg complete, abilities
        drv.WritePhy(0, (ushort)(bmcr | 0x0800));
        Assert.Equal(0, drv.ReadPhy(1) & 0x4);
        Assert.Equal(0u, rig.PfRead(IgbProbeReplay.STATUS) & 2);            // STATUS.LU follows the PHY
        Assert.NotEqual(0u, rig.PfRead(IgbProbeReplay.ICR) & 1u << 2);      // LSC
        drv.WritePhy(0, bmcr);
        Assert.NotEqual(0u, rig.PfRead(IgbProbeReplay.STATUS) & 2);
        Assert.NotEqual(0u, rig.PfRead(IgbProbeReplay.ICR) & 1u << 2);
    }

    [Fact]
    public void PhyHardwareResetRestoresDefaultsAndFailsMdioWhileHeld()
    {
        using var rig = new NicRig();
        var drv = Driver(rig, 0);
        drv.WritePhy(4, 0x0001);
        rig.PfWrite(IgbProbeReplay.CTRL, rig.PfRead(IgbProbeReplay.CTRL) | 1u << 31);
        Assert.Throws<InvalidOperationException>(() => drv.ReadPhy(4));
        Assert.Equal(0u, rig.PfRead(IgbProbeReplay.STATUS) & 2);
        rig.PfWrite(IgbProbeReplay.CTRL, rig.PfRead(IgbProbeReplay.CTRL) & ~(1u << 31));
        Assert.Equal((ushort)0x0DE1, drv.ReadPhy(4));
        Assert.NotEqual(0u, rig.PfRead(IgbProbeReplay.STATUS) & 2);
    }
}
