namespace PcieEmu.Core.Devices.VirtioNet;

/// <summary>
/// Constants of the virtio 1.2 specification (OASIS) that the modern PCI transport and the
/// network device use: feature bits (§6, §5.1.3), device status bits (§2.1), the PCI vendor
/// capability layout (§4.1.4), the common configuration structure (§4.1.4.3), ring layouts
/// (§2.7 split, §2.8 packed) and the network header and control queue (§5.1.6).
/// </summary>
public static class VirtioRegs
{
    /// <summary>PCI identity of a modern (non-transitional) network device (§4.1.2: 0x1040 + device ID 1).</summary>
    public const ushort VendorId = 0x1AF4, DeviceId = 0x1041, SubsystemId = 0x1100;
    /// <summary>Revision ID of a modern device (§4.1.2.1: 1 or higher).</summary>
    public const byte Revision = 1;
    /// <summary>Class code: network controller, Ethernet.</summary>
    public const uint ClassEthernet = 0x020000;

    // ---- Feature bits (§5.1.3 device-specific, §6 reserved) ----
    /// <summary>VIRTIO_NET_F_CSUM: the device handles packets with partial checksum.</summary>
    public const int FCsum = 0;
    /// <summary>VIRTIO_NET_F_GUEST_CSUM: the driver handles packets with partial checksum.</summary>
    public const int FGuestCsum = 1;
    /// <summary>VIRTIO_NET_F_MTU: device config mtu is valid.</summary>
    public const int FMtu = 3;
    /// <summary>VIRTIO_NET_F_MAC: device config mac is valid.</summary>
    public const int FMac = 5;
    /// <summary>VIRTIO_NET_F_GUEST_TSO4 (first of the guest offloads 7..10).</summary>
    public const int FGuestTso4 = 7;
    /// <summary>VIRTIO_NET_F_HOST_TSO4 (first of the host offloads 11..14).</summary>
    public const int FHostTso4 = 11;
    /// <summary>VIRTIO_NET_F_MRG_RXBUF: the driver can merge receive buffers.</summary>
    public const int FMrgRxbuf = 15;
    /// <summary>VIRTIO_NET_F_STATUS: device config status is valid.</summary>
    public const int FStatus = 16;
    /// <summary>VIRTIO_NET_F_CTRL_VQ: a control virtqueue exists.</summary>
    public const int FCtrlVq = 17;
    /// <summary>VIRTIO_NET_F_CTRL_RX: RX mode (promiscuous, all-multicast) and MAC table via the control queue.</summary>
    public const int FCtrlRx = 18;
    /// <summary>VIRTIO_NET_F_CTRL_VLAN.</summary>
    public const int FCtrlVlan = 19;
    /// <summary>VIRTIO_NET_F_CTRL_RX_EXTRA.</summary>
    public const int FCtrlRxExtra = 20;
    /// <summary>VIRTIO_NET_F_GUEST_ANNOUNCE.</summary>
    public const int FGuestAnnounce = 21;
    /// <summary>VIRTIO_NET_F_MQ: multiqueue with automatic receive steering.</summary>
    public const int FMq = 22;
    /// <summary>VIRTIO_NET_F_CTRL_MAC_ADDR: MAC_ADDR_SET via the control queue.</summary>
    public const int FCtrlMacAddr = 23;
    /// <summary>VIRTIO_F_INDIRECT_DESC.</summary>
    public const int FIndirectDesc = 28;
    /// <summary>VIRTIO_F_EVENT_IDX.</summary>
    public const int FEventIdx = 29;
    /// <summary>VIRTIO_F_VERSION_1.</summary>
    public const int FVersion1 = 32;
    /// <summary>VIRTIO_F_ACCESS_PLATFORM.</summary>
    public const int FAccessPlatform = 33;
    /// <summary>VIRTIO_F_RING_PACKED.</summary>
    public const int FRingPacked = 34;

    /// <summary>Bit mask of feature <paramref name="bit"/>.</summary>
    public static ulong Bit(int bit) => 1UL << bit;

    // ---- Device status (§2.1) ----
    /// <summary>Device status bits.</summary>
    public const byte StatusAcknowledge = 1, StatusDriver = 2, StatusDriverOk = 4, StatusFeaturesOk = 8,
        StatusNeedsReset = 0x40, StatusFailed = 0x80;

    // ---- PCI capability (§4.1.4) ----
    /// <summary>Vendor-specific capability ID.</summary>
    public const byte CapVendor = 0x09;
    /// <summary>cfg_type values.</summary>
    public const byte CfgCommon = 1, CfgNotify = 2, CfgIsr = 3, CfgDevice = 4, CfgPci = 5;
    /// <summary>Offsets inside struct virtio_pci_cap (and its notify and pci_cfg extensions).</summary>
    public const int CapLen = 2, CapCfgType = 3, CapBar = 4, CapId = 5, CapOffset = 8, CapLength = 12,
        CapNotifyOffMultiplier = 16, CapPciCfgData = 16;

    // ---- Common configuration structure (§4.1.4.3) ----
    /// <summary>Offsets in struct virtio_pci_common_cfg.</summary>
    public const int DeviceFeatureSelect = 0, DeviceFeature = 4, DriverFeatureSelect = 8, DriverFeature = 12,
        ConfigMsixVector = 16, NumQueues = 18, DeviceStatus = 20, ConfigGeneration = 21, QueueSelect = 22,
        QueueSize = 24, QueueMsixVector = 26, QueueEnable = 28, QueueNotifyOff = 30, QueueDesc = 32,
        QueueDriver = 40, QueueDevice = 48, QueueNotifyData = 56, QueueReset = 58, CommonCfgSize = 60;
    /// <summary>VIRTIO_MSI_NO_VECTOR.</summary>
    public const ushort NoVector = 0xFFFF;
    /// <summary>ISR status bits (§4.1.4.5).</summary>
    public const byte IsrQueue = 1, IsrConfig = 2;

    // ---- Device configuration (§5.1.4) ----
    /// <summary>Offsets in struct virtio_net_config.</summary>
    public const int NetCfgMac = 0, NetCfgStatus = 6, NetCfgMaxPairs = 8, NetCfgMtu = 10, NetCfgSize = 12;
    /// <summary>VIRTIO_NET_S_LINK_UP.</summary>
    public const ushort NetStatusLinkUp = 1;

    // ---- Rings (§2.7, §2.8) ----
    /// <summary>Descriptor flags (split and packed).</summary>
    public const ushort DescNext = 1, DescWrite = 2, DescIndirect = 4;
    /// <summary>Packed descriptor AVAIL and USED flags.</summary>
    public const ushort DescAvail = 1 << 7, DescUsed = 1 << 15;
    /// <summary>VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_USED_F_NO_NOTIFY.</summary>
    public const ushort AvailNoInterrupt = 1, UsedNoNotify = 1;
    /// <summary>Packed event suppression flags (RING_EVENT_FLAGS_*).</summary>
    public const ushort EventFlagsEnable = 0, EventFlagsDisable = 1, EventFlagsDesc = 2;
    /// <summary>Largest queue size (§2.6: 32768).</summary>
    public const int MaxQueueSize = 32768;

    // ---- virtio_net_hdr (§5.1.6) ----
    /// <summary>Size of struct virtio_net_hdr with VERSION_1 (num_buffers always present).</summary>
    public const int NetHdrSize = 12;
    /// <summary>Offsets in the header.</summary>
    public const int HdrFlags = 0, HdrGsoType = 1, HdrHdrLen = 2, HdrGsoSize = 4, HdrCsumStart = 6, HdrCsumOffset = 8, HdrNumBuffers = 10;
    /// <summary>VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_F_DATA_VALID.</summary>
    public const byte HdrFNeedsCsum = 1, HdrFDataValid = 2;
    /// <summary>VIRTIO_NET_HDR_GSO_NONE.</summary>
    public const byte GsoNone = 0;

    // ---- Control queue (§5.1.6.5) ----
    /// <summary>Classes.</summary>
    public const byte CtrlRx = 0, CtrlMac = 1, CtrlVlan = 2, CtrlAnnounce = 3, CtrlMq = 4;
    /// <summary>VIRTIO_NET_CTRL_RX commands.</summary>
    public const byte CtrlRxPromisc = 0, CtrlRxAllmulti = 1;
    /// <summary>VIRTIO_NET_CTRL_MAC commands.</summary>
    public const byte CtrlMacTableSet = 0, CtrlMacAddrSet = 1;
    /// <summary>VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET.</summary>
    public const byte CtrlMqVqPairsSet = 0;
    /// <summary>Acks.</summary>
    public const byte CtrlOk = 0, CtrlErr = 1;
    /// <summary>VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX.</summary>
    public const int MaxQueuePairs = 0x8000;
}
