using PcieEmu.Core.Devices;
using System.Text;
using PcieEmu.Core.Config;
using PcieEmu.Core.Devices.VirtioNet;
using PcieEmu.Core.Tests.Config;
using static PcieEmu.Core.Devices.VirtioNet.VirtioRegs;

namespace PcieEmu.Core.Tests.Devices.VirtioNet;

/// <summary>The PCI transport: identity, capabilities, PCI_CFG access, MSI-X vectors, ISR/INTx, status
/// machine and feature negotiation, queue configuration, and the negative cases.</summary>
public class VirtioNetTransportTests
{
    private static readonly ulong Std = VirtioNetDataPathTests.Std;
    private static readonly byte[] DevMac = VirtioTestDriver.Mac(1), Peer = VirtioTestDriver.Mac(9);

    [Fact]
    public void IdentityAndVendorCapabilities()
    {
        using var d = new VirtioTestDriver();
        Assert.Equal(0x1041_1AF4u, d.Cfg(0x00));
        Assert.Equal(0x0200_0001u, d.Cfg(0x08));                 // class 02 00 00, revision 1
        Assert.Equal(0x1100_1AF4u, d.Cfg(0x2C));
        Assert.Equal(0x0010u, d.Cfg(0x06, 2) & 0x0010);           // capabilities list
        var caps = d.FindCapabilities();
        Assert.Equal([CfgCommon, CfgNotify, CfgIsr, CfgDevice, CfgPci], caps.Keys.Order().ToArray());
        Assert.Equal((4, VirtioNetFunction.CommonOffset), (caps[CfgCommon].Bar, caps[CfgCommon].Offset));
        Assert.Equal((4, VirtioNetFunction.NotifyOffset), (caps[CfgNotify].Bar, caps[CfgNotify].Offset));
        Assert.Equal((4, VirtioNetFunction.IsrOffset), (caps[CfgIsr].Bar, caps[CfgIsr].Offset));
        Assert.Equal((4, VirtioNetFunction.DeviceOffset), (caps[CfgDevice].Bar, caps[CfgDevice].Offset));
        Assert.Equal(4u, d.NotifyMultiplier);
        Assert.Equal(20u, d.Cfg(caps[CfgNotify].CapOffset + 2, 1));   // cap_len with notify_off_multiplier
        Assert.Equal(16u, d.Cfg(caps[CfgCommon].CapOffset + 2, 1));
        // The trace names the capability's registers.
        var found = ConfigLayout.Find(d.Dev.Config.Bytes, d.Dev.Capabilities, caps[CfgCommon].CapOffset + 4);
        Assert.Equal("Vendor Specific+0x04", found!.Value.Register.Name);
        // Vendor capability fields are read-only.
        d.SetCfg(caps[CfgCommon].CapOffset + 8, 4, 0x1234);
        Assert.Equal(0u, d.Cfg(caps[CfgCommon].CapOffset + 8));
        // BAR4: 64-bit prefetchable, 16 KiB; BAR1: 32-bit, 4 KiB (sizing by all ones).
        d.SetCfg(0x20, 4, 0xFFFF_FFFF);
        d.SetCfg(0x24, 4, 0xFFFF_FFFF);
        Assert.Equal(0xFFFF_C00Cu, d.Cfg(0x20));
        Assert.Equal(0xFFFF_FFFFu, d.Cfg(0x24));
        d.SetCfg(0x14, 4, 0xFFFF_FFFF);
        Assert.Equal(0xFFFF_F000u, d.Cfg(0x14));
        Assert.Equal(0u, d.Cfg(0x10));
        // MSI-X: 2 * pairs + control + config vectors, table and PBA in BAR1.
        int msix = d.FindCap(0x11);
        Assert.Equal(3, (int)(d.Cfg(msix + 2, 2) & 0x7FF));    // 4 vectors
        Assert.Equal(1u, d.Cfg(msix + 4));
        Assert.Equal(0x801u, d.Cfg(msix + 8));
        // Common config before any driver: 3 queues, queue_size max, NO_VECTOR.
        Assert.Equal(3, (int)d.Common(NumQueues, 2));
        Assert.Equal(256, (int)d.Common(QueueSize, 2));
        Assert.Equal(NoVector, (ushort)d.Common(QueueMsixVector, 2));
        Assert.Equal(NoVector, (ushort)d.Common(ConfigMsixVector, 2));
        d.SetCommon(QueueSelect, 2, 3);
        Assert.Equal(0, (int)d.Common(QueueSize, 2));           // no such queue
    }

    [Fact]
    public void LspciDecodesTheDeviceCleanly()
    {
        using var d = new VirtioTestDriver(new VirtioNetOptions { QueuePairs = 4 });
        d.SetCfg(0x14, 4, 0xE010_0000);
        d.SetCfg(0x20, 4, 0xE020_000C);
        var bytes = new byte[ConfigSpace.Size];
        for (int off = 0; off < ConfigSpace.Size; off += 4) BitConverter.TryWriteBytes(bytes.AsSpan(off), d.Cfg(off));
        var sb = new StringBuilder();
        LspciDump.Append(sb, d.Rid, bytes);
        string text = LspciDecodeTests.RunLspci(sb.ToString());
        foreach (var bad in new[] { "<chain broken>", "<chain looped>", "<unreadable>", "Malformed", "malformed", "<?>" })
            Assert.DoesNotContain(bad, text);
        Assert.Contains("05:00.0 Ethernet controller: Red Hat, Inc. Virtio 1.0 network device (rev 01)", text);
        Assert.Contains("MSI-X: Enable- Count=10 Masked-", text);
        Assert.Contains("Express (v2) Endpoint", text);
        Assert.Contains("FLReset+", text);
        Assert.Contains("Region 1: Memory at e0100000 (32-bit, non-prefetchable)", text);
        Assert.Contains("Region 4: Memory at e0200000 (64-bit, prefetchable)", text);
        Assert.Equal(5, text.Split("Vendor Specific Information").Length - 1);
        Assert.Contains("VirtIO: CommonCfg\n\t\tBAR=4 offset=00000000 size=00001000", text);
        Assert.Contains("VirtIO: Notify\n\t\tBAR=4 offset=00003000 size=00001000 multiplier=00000004", text);
        Assert.Contains("VirtIO: ISR\n\t\tBAR=4 offset=00001000 size=00001000", text);
        Assert.Contains("VirtIO: DeviceCfg\n\t\tBAR=4 offset=00002000 size=00001000", text);
        // pciutils 3.9 names cfg_type 5 (PCI_CFG) "<unknown>" but decodes its fields.
        Assert.Contains("Capabilities: [98] Vendor Specific Information: VirtIO:", text);
    }

    [Fact]
    public void PciCfgCapabilityReachesTheBar()
    {
        using var d = new VirtioTestDriver();
        var caps = d.FindCapabilities();
        int cap = caps[CfgPci].CapOffset;
        // Read num_queues (common + 18, 2 bytes) through pci_cfg_data.
        d.SetCfg(cap + CapBar, 1, 4);
        d.SetCfg(cap + CapOffset, 4, VirtioNetFunction.CommonOffset + NumQueues);
        d.SetCfg(cap + CapLength, 4, 2);
        Assert.Equal(3u, d.Cfg(cap + CapPciCfgData, 2));
        // Write device_status = ACKNOWLEDGE through it.
        d.SetCfg(cap + CapOffset, 4, VirtioNetFunction.CommonOffset + DeviceStatus);
        d.SetCfg(cap + CapLength, 4, 1);
        d.SetCfg(cap + CapPciCfgData, 1, StatusAcknowledge);
        Assert.Equal(StatusAcknowledge, d.Status);
        Assert.Equal(StatusAcknowledge, d.Cfg(cap + CapPciCfgData, 1));
        // The device config MAC, a dword at a time.
        d.SetCfg(cap + CapOffset, 4, VirtioNetFunction.DeviceOffset);
        d.SetCfg(cap + CapLength, 4, 4);
        Assert.Equal(0x0000_0002u, d.Cfg(cap + CapPciCfgData));
        // A misaligned or out-of-BAR access does nothing (data keeps its last value).
        d.SetCfg(cap + CapOffset, 4, VirtioNetFunction.CommonOffset + 1);
        d.SetCfg(cap + CapPciCfgData, 4, 0xFFFF_FFFF);
        Assert.Equal(StatusAcknowledge, d.Status);
        d.SetCfg(cap + CapBar, 1, 2);
        d.SetCfg(cap + CapOffset, 4, 0);
        Assert.Equal(0xFFFF_FFFFu, d.Cfg(cap + CapPciCfgData));
    }

    [Fact]
    public void FeaturesOkIsRefusedForFeaturesNotOfferedOrInconsistent()
    {
        using var d = new VirtioTestDriver(new VirtioNetOptions { QueuePairs = 2, Features = VirtioNetOptions.SupportedFeatures & ~Bit(FRingPacked) });
        Assert.False(d.Negotiate(Std | Bit(FGuestTso4)));
        Assert.Contains("not offered", d.Dev.LastFeaturesRefusal);
        Assert.Equal(StatusAcknowledge | StatusDriver, d.Status);
        Assert.False(d.Negotiate(Std | Bit(FRingPacked)));      // this device does not offer the packed layout
        Assert.False(d.Negotiate(Std & ~Bit(FVersion1)));
        Assert.Contains("VERSION_1", d.Dev.LastFeaturesRefusal);
        Assert.False(d.Negotiate(Bit(FVersion1) | Bit(FMq)));
        Assert.Contains("CTRL_VQ", d.Dev.LastFeaturesRefusal);
        // FEATURES_OK without ACKNOWLEDGE | DRIVER.
        d.Reset();
        d.WriteDriverFeatures(Std);
        d.SetCommon(DeviceStatus, 1, StatusFeaturesOk);
        Assert.Equal(0, d.Status & StatusFeaturesOk);
        // A good set sticks; afterwards driver_feature writes are ignored.
        Assert.True(d.Negotiate(Std | Bit(FMq)));
        d.WriteDriverFeatures(Std | Bit(FGuestTso4));
        Assert.Equal(Std | Bit(FMq), d.Dev.DriverFeatures);
        // Only offered bits read back from device_feature; MQ with one pair is not offered.
        using var one = new VirtioTestDriver();
        one.FindCapabilities();
        Assert.Equal(0UL, one.DeviceFeatures() & Bit(FMq));
        Assert.Equal(VirtioNetOptions.SupportedFeatures & ~Bit(FMq), one.DeviceFeatures());
    }

    [Fact]
    public void StatusBitsAreNeverClearedByTheDriverAndDriverOkNeedsFeaturesOk()
    {
        using var d = new VirtioTestDriver();
        d.FindCapabilities();
        d.Reset();
        d.AddStatus(StatusAcknowledge);
        d.AddStatus(StatusDriver);
        d.SetCommon(DeviceStatus, 1, StatusDriver);              // tries to clear ACKNOWLEDGE
        Assert.Equal(StatusAcknowledge | StatusDriver, d.Status);
        d.AddStatus(StatusNeedsReset);                          // the device's bit: ignored
        Assert.Equal(StatusAcknowledge | StatusDriver, d.Status);
        d.AddStatus(StatusDriverOk);                            // without FEATURES_OK
        Assert.Equal(StatusAcknowledge | StatusDriver | StatusNeedsReset, d.Status);
        d.Reset();
        Assert.Equal(0, d.Status);
        Assert.True(d.Negotiate(Std));
        d.AddStatus(StatusFailed);
        Assert.NotEqual(0, d.Status & StatusFailed);
        Assert.False(d.Dev.Live);
    }

    [Theory]
    [InlineData(3, false, "power of two")]
    [InlineData(0, false, "outside")]
    [InlineData(512, false, "outside")]
    [InlineData(0, true, "outside")]
    public void QueueEnableWithABadSizeIsRefused(int size, bool packed, string why)
    {
        using var d = new VirtioTestDriver();
        Assert.True(d.Negotiate(Std | (packed ? Bit(FRingPacked) : 0)));
        d.SetCommon(QueueSelect, 2, 0);
        d.SetCommon(QueueSize, 2, (ulong)size);
        d.SetCommon(QueueDesc, 8, d.Alloc(4096));
        d.SetCommon(QueueDriver, 8, d.Alloc(4096));
        d.SetCommon(QueueDevice, 8, d.Alloc(4096));
        d.SetCommon(QueueEnable, 2, 1);
        Assert.Equal(0, (int)d.Common(QueueEnable, 2));
        Assert.NotEqual(0, d.Status & StatusNeedsReset);
        Assert.Contains(why, d.Dev.LastRefusal);
    }

    [Fact]
    public void PackedRingsAcceptSizesThatAreNotPowersOfTwoAndMisalignedRingsAreRefused()
    {
        using var d = new VirtioTestDriver();
        Assert.True(d.Negotiate(Std | Bit(FRingPacked)));
        d.SetCommon(QueueSelect, 2, 1);
        d.SetCommon(QueueSize, 2, 100);
        d.SetCommon(QueueDesc, 8, d.Alloc(4096));
        d.SetCommon(QueueDriver, 8, d.Alloc(4096));
        d.SetCommon(QueueDevice, 8, d.Alloc(4096));
        d.SetCommon(QueueEnable, 2, 1);
        Assert.Equal(1, (int)d.Common(QueueEnable, 2));
        // Enabled: its configuration no longer changes.
        d.SetCommon(QueueSize, 2, 8);
        Assert.Equal(100, (int)d.Common(QueueSize, 2));
        d.SetCommon(QueueSelect, 2, 0);
        d.SetCommon(QueueDesc, 8, d.Alloc(4096) + 8);
        d.SetCommon(QueueDriver, 8, d.Alloc(4096));
        d.SetCommon(QueueDevice, 8, d.Alloc(4096));
        d.SetCommon(QueueEnable, 2, 1);
        Assert.Equal(0, (int)d.Common(QueueEnable, 2));
        Assert.Contains("aligned", d.Dev.LastRefusal);
    }

    [Fact]
    public void QueueEnableBeforeFeaturesOkIsRefused()
    {
        using var d = new VirtioTestDriver();
        d.FindCapabilities();
        d.Reset();
        d.AddStatus(StatusAcknowledge | StatusDriver);
        d.SetCommon(QueueDesc, 8, d.Alloc(4096));
        d.SetCommon(QueueEnable, 2, 1);
        Assert.Equal(0, (int)d.Common(QueueEnable, 2));
        Assert.Contains("FEATURES_OK", d.Dev.LastRefusal);
    }

    [Fact]
    public void NotifyBeforeDriverOkIsIgnoredAndTheBufferWaitsForTheNextNotify()
    {
        using var d = new VirtioTestDriver();
        Assert.True(d.Negotiate(Std));
        d.EnableMsix();
        var rx = d.SetupQueue(0, 16, false, 1);
        var tx = d.SetupQueue(1, 16, false, 2);
        d.EnableQueue(0);
        d.EnableQueue(1);
        d.Send(tx, VirtioTestDriver.Frame(Peer, DevMac));
        Assert.Empty(d.Sent);
        Assert.Equal(1, d.Dev.NotifiesIgnored);
        Assert.Equal(0, tx.UsedIdx);
        // A frame from the wire before DRIVER_OK is dropped too.
        d.PostRx(rx, 1);
        Assert.Equal(0, d.Dev.InjectFrame(VirtioTestDriver.Frame(DevMac, Peer)));
        d.AddStatus(StatusDriverOk);
        Assert.Equal(0, d.Status & StatusNeedsReset);
        d.Kick(tx);
        Assert.Single(d.Sent);
        Assert.Single(tx.Used());
        // A notify for a queue that does not exist, or off the doorbell stride, is ignored.
        long ignored = d.Dev.NotifiesIgnored;
        lock (d.M.SyncRoot)
        {
            d.Dev.GetBarRegion(4).Write(VirtioNetFunction.NotifyOffset + 4 * 7, 2, 7);
            d.Dev.GetBarRegion(4).Write(VirtioNetFunction.NotifyOffset + 2, 2, 0);
        }
        Assert.Equal(ignored + 2, d.Dev.NotifiesIgnored);
    }

    [Fact]
    public void ResetReturnsEveryRegisterToItsInitialValue()
    {
        using var d = new VirtioTestDriver();
        d.BringUp(Std | Bit(FEventIdx));
        d.Send(d.Queues[1], VirtioTestDriver.Frame(Peer, DevMac));
        d.Reset();
        Assert.Equal(0, d.Status);
        Assert.Equal(0UL, d.Dev.DriverFeatures);
        Assert.Equal(NoVector, (ushort)d.Common(ConfigMsixVector, 2));
        for (int q = 0; q < 3; q++)
        {
            d.SetCommon(QueueSelect, 2, (ulong)q);
            Assert.Equal(0, (int)d.Common(QueueEnable, 2));
            Assert.Equal(NoVector, (ushort)d.Common(QueueMsixVector, 2));
            Assert.Equal(256, (int)d.Common(QueueSize, 2));
            Assert.Equal(0UL, d.Common(QueueDesc, 8));
        }
        // And the device works again after a fresh bring-up.
        d.BringUp(Std);
        d.Send(d.Queues[1], VirtioTestDriver.Frame(Peer, DevMac));
        Assert.Equal(2, d.Sent.Count);
    }

    [Fact]
    public void FunctionLevelResetResetsTheDevice()
    {
        using var d = new VirtioTestDriver();
        d.BringUp(Std);
        int pcie = d.FindCap(0x10);
        d.SetCfg(pcie + 8, 2, 0x8000);
        Assert.Equal(0, d.Status);
        Assert.Equal(0u, d.Cfg(0x04, 2));
    }

    [Fact]
    public void MsixVectorsOutOfRangeReadNoVectorAndNoVectorMeansNoInterrupt()
    {
        using var d = new VirtioTestDriver();
        Assert.True(d.Negotiate(Std));
        d.EnableMsix();
        d.SetCommon(ConfigMsixVector, 2, 4);                      // 4 vectors: 0..3
        Assert.Equal(NoVector, (ushort)d.Common(ConfigMsixVector, 2));
        d.SetCommon(ConfigMsixVector, 2, 3);
        Assert.Equal(3, (int)d.Common(ConfigMsixVector, 2));
        d.SetupQueue(0, 16, false, 1);
        var tx = d.SetupQueue(1, 16, false, NoVector);
        d.SetCommon(QueueSelect, 2, 1);
        d.SetCommon(QueueMsixVector, 2, 99);
        Assert.Equal(NoVector, (ushort)d.Common(QueueMsixVector, 2));
        d.EnableQueue(0);
        d.EnableQueue(1);
        d.AddStatus(StatusDriverOk);
        d.Vectors();
        d.Send(tx, VirtioTestDriver.Frame(Peer, DevMac));
        Assert.Single(d.Sent);
        Assert.Empty(d.Vectors());
        Assert.Equal(0, d.ReadIsr());                            // MSI-X on: the ISR is not used
        // Link down: configuration change on vector 3, generation moves, status reads 0.
        byte gen = (byte)d.Common(ConfigGeneration, 1);
        d.Dev.SetLink(false);
        Assert.Equal([3], d.Vectors());
        Assert.NotEqual(gen, (byte)d.Common(ConfigGeneration, 1));
        Assert.Equal(0, (int)d.DeviceCfg(NetCfgStatus, 2));
    }

    [Fact]
    public void WithoutMsixTheIsrAndIntxSignal()
    {
        using var d = new VirtioTestDriver();
        Assert.True(d.Negotiate(Std));
        d.SetCfg(0x04, 2, 0x0006);
        d.SetupQueue(0, 16, false, NoVector);
        var tx = d.SetupQueue(1, 16, false, NoVector);
        d.EnableQueue(0);
        d.EnableQueue(1);
        d.AddStatus(StatusDriverOk);
        d.Send(tx, VirtioTestDriver.Frame(Peer, DevMac));
        Assert.Equal(0x08u, d.Cfg(0x06, 2) & 0x08);              // Status.Interrupt Status
        Assert.Equal(IsrQueue, d.ReadIsr());
        Assert.Equal(0, d.ReadIsr());                            // read clears
        Assert.Equal(0u, d.Cfg(0x06, 2) & 0x08);
        d.Dev.SetLink(false);
        Assert.Equal(IsrConfig, d.ReadIsr());
    }

    [Fact]
    public void ALoopingChainIsMalformedAndNeedsReset()
    {
        using var d = new VirtioTestDriver();
        d.BringUp(Std);
        var tx = d.Queues[1];
        ulong buf = d.Alloc(76, 16);
        ushort id = tx.Add([(buf, 38u, false), (buf + 38, 38u, false)], indirect: false);
        // Point the second descriptor back at the first.
        ulong second = tx.Desc + (ulong)d.R16(tx.Desc + (ulong)id * 16 + 14) * 16;
        d.W16(second + 12, DescNext);
        d.W16(second + 14, id);
        d.Kick(tx);
        Assert.Empty(d.Sent);
        Assert.Equal(VirtqErrorKind.MalformedChain, d.Dev.LastError!.Value.Kind);
        Assert.NotEqual(0, d.Status & StatusNeedsReset);
        // Needs reset: further notifies are ignored.
        long ignored = d.Dev.NotifiesIgnored;
        d.Kick(tx);
        Assert.Equal(ignored + 1, d.Dev.NotifiesIgnored);
    }

    [Fact]
    public void BadInputIsRefusedNamingTheField()
    {
        using var d = new VirtioTestDriver();
        Assert.Equal("frame", Assert.Throws<ArgumentException>(() => d.Dev.InjectFrame(new byte[13])).ParamName);
        Assert.Equal("frame", Assert.Throws<ArgumentException>(() => d.Dev.InjectFrame(new byte[EthernetFrame.MaxSize + 1])).ParamName);
        long dropped = d.Dev.RxDropped;
        Assert.Equal(0, d.Dev.InjectFrame(new byte[1519]));   // any Ethernet port takes it from the wire; over the MTU, dropped
        Assert.Equal(dropped + 1, d.Dev.RxDropped);
        Assert.Equal("Mac", Assert.Throws<ArgumentException>(() => new VirtioNetOptions { Mac = "02:00:00:00:77" }.Validate()).ParamName);
        Assert.Equal("Mac", Assert.Throws<ArgumentException>(() => new VirtioNetOptions { Mac = "03:00:00:00:77:01" }.Validate()).ParamName);
        Assert.Equal("QueuePairs", Assert.Throws<ArgumentException>(() => new VirtioNetOptions { QueuePairs = 0 }.Validate()).ParamName);
        Assert.Equal("QueuePairs", Assert.Throws<ArgumentException>(() => new VirtioNetOptions { QueuePairs = 17 }.Validate()).ParamName);
        Assert.Equal("Features", Assert.Throws<ArgumentException>(() => new VirtioNetOptions { Features = Bit(FMac) }.Validate()).ParamName);
        Assert.Equal("Features", Assert.Throws<ArgumentException>(() => new VirtioNetOptions { Features = Bit(FVersion1) | Bit(FGuestTso4) }.Validate()).ParamName);
        Assert.Equal("QueuePairs", Assert.Throws<ArgumentException>(() => new VirtioNetOptions { QueuePairs = 2, Features = Bit(FVersion1) }.Validate()).ParamName);
        Assert.Equal("MaxQueueSize", Assert.Throws<ArgumentException>(() => new VirtioNetOptions { MaxQueueSize = 100 }.Validate()).ParamName);
        // Accesses the common structure does not define are harmless.
        d.FindCapabilities();
        d.SetCommon(DeviceStatus - 1, 2, 0xFFFF);                // straddles two fields: ignored
        Assert.Equal(0, d.Status);
        Assert.Equal(0UL, d.Common(0x100, 4));
    }
}
