using System.Buffers.Binary;
using PcieEmu.Core.AddressSpace;
using PcieEmu.Core.Config;
using PcieEmu.Core.Config.Capabilities;
using PcieEmu.Core.Interrupts;
using PcieEmu.Core.Platform;
using PcieEmu.Core.Topology;
using static PcieEmu.Core.Devices.VirtioNet.VirtioRegs;

namespace PcieEmu.Core.Devices.VirtioNet;

/// <summary>
/// A modern virtio 1.x network device on PCI (1AF4:1041, virtio 1.2 §4.1 and §5.1): type 0
/// header, PM, MSI-X (BAR1) and PCI Express capabilities, and the virtio vendor capabilities
/// (COMMON, NOTIFY, ISR, DEVICE in BAR4; PCI_CFG in config space). Feature negotiation, the
/// device status state machine, split and packed virtqueues in guest memory through the
/// function's DMA port, MSI-X per queue, and an Ethernet backend: frames the driver transmits
/// leave through <see cref="FrameTransmitted"/> and the frame event path; <see cref="InjectFrame"/>
/// delivers a received frame. docs/virtio.md lists every choice where the spec leaves room.
/// <para>
/// Threading: BAR and config accesses run under <see cref="Machine.SyncRoot"/> (held by the MMIO
/// path); a notify processes the queue inline. <see cref="InjectFrame"/> takes the lock itself.
/// </para>
/// </summary>
public sealed partial class VirtioNetFunction : PhysicalFunction, IEthernetPort
{
    /// <summary>BAR layout: BAR1 (32-bit, 4 KiB) holds the MSI-X table and PBA; BAR4 (64-bit prefetchable, 16 KiB)
    /// holds the common, ISR, device and notify structures, 4 KiB apart.</summary>
    public const int MsixBar = 1, VirtioBar = 4;
    /// <summary>Structure offsets in BAR4.</summary>
    public const uint CommonOffset = 0x0000, IsrOffset = 0x1000, DeviceOffset = 0x2000, NotifyOffset = 0x3000;
    /// <summary>notify_off_multiplier: queue n's doorbell is at NotifyOffset + 4 n.</summary>
    public const uint NotifyMultiplier = 4;
    /// <summary>MSI-X PBA offset in BAR1.</summary>
    public const uint MsixPbaOffset = 0x800;

    private static readonly IReadOnlyList<BarDefinition> BarList =
    [
        new(MsixBar, BarKind.Memory32, 0x1000),
        new(VirtioBar, BarKind.Memory64, 0x4000, Prefetchable: true),
    ];

    private readonly Virtqueue[] _queues;
    private readonly VirtioPciCfgCapability _pciCfg;
    private readonly MsixBarRegion _msixRegion;
    private readonly VirtioBarRegion _virtioRegion;
    private readonly byte[] _defaultMac;
    private readonly ulong _offered;

    // Transport state (reset by writing 0 to device_status).
    private uint _deviceFeatureSelect, _driverFeatureSelect;
    private ulong _driverFeatures;
    private ushort _configVector = NoVector, _queueSelect;
    private byte _status, _isr, _configGeneration;

    /// <summary>Creates the device as function 0 on <paramref name="port"/>'s link.</summary>
    /// <param name="machine">The machine.</param>
    /// <param name="port">The port (root or switch downstream port) whose link the device sits on.</param>
    /// <param name="options">The device's options.</param>
    /// <param name="ethernetPort">Machine-wide Ethernet port number of the device's wire (<see cref="PortNumber"/>).</param>
    /// <param name="namePrefix">Prefix of the function's name ("PF0"), so names stay unique with several devices.</param>
    public VirtioNetFunction(Machine machine, PciBridge port, VirtioNetOptions options, int ethernetPort, string namePrefix = "")
        : base(machine, port, 0, $"{namePrefix}PF0")
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfNegative(ethernetPort);
        options.Validate();
        Options = options;
        PortNumber = ethernetPort;
        _offered = options.OfferedFeatures;
        _defaultMac = options.MacBytes();
        Bars = BarList;
        Header.InstallType0(Config, new HeaderIds(VendorId_, DeviceId_, Revision, ClassEthernet, VirtioRegs.VendorId, VirtioRegs.SubsystemId),
            multiFunction: false, interruptPin: 1, Bars);
        int queues = NumQueuesFor(options);
        _pciCfg = new VirtioPciCfgCapability();
        Capabilities = new CapabilityBuilder()
            .Add(new PowerManagementCapability(0x0003, 0x0008), 0x40)
            .Add(new MsixCapability(queues + 1, MsixBar, 0, MsixBar, MsixPbaOffset), 0x48)
            .Add(new VirtioPciCapability(CfgCommon, VirtioBar, CommonOffset, 0x1000), 0x54)
            .Add(new VirtioPciCapability(CfgNotify, VirtioBar, NotifyOffset, 0x1000, NotifyMultiplier), 0x64)
            .Add(new VirtioPciCapability(CfgIsr, VirtioBar, IsrOffset, 0x1000), 0x78)
            .Add(new VirtioPciCapability(CfgDevice, VirtioBar, DeviceOffset, 0x1000), 0x88)
            .Add(_pciCfg, 0x98)
            .Add(new PcieCapability(new PcieCapabilityValues
            {
                PortType = PciePortType.Endpoint,
                DevCap = PcieCapability.DevCapFlr | 0x8000,   // FLR, role-based error reporting, MPS 128 B
                DevCtl = 0x2810,
                LinkCap = 0x0000_0011,                         // 2.5 GT/s x1
                LinkSta = 0x0011,
            }), 0xAC)
            .Build(Config);
        Config.CaptureResetImage();
        WireCapabilities();
        _pciCfg.DataWritten += PciCfgWrite;
        _queues = new Virtqueue[queues];
        for (int i = 0; i < queues; i++) _queues[i] = new Virtqueue(i, options.MaxQueueSize, Dma, OnQueueError);
        _msixRegion = new MsixBarRegion(MsixTable!, 0, MsixPbaOffset);
        _virtioRegion = new VirtioBarRegion(this);
        ResetDevice();
    }

    private const ushort VendorId_ = VirtioRegs.VendorId, DeviceId_ = VirtioRegs.DeviceId;

    /// <summary>Options the device was built with.</summary>
    public VirtioNetOptions Options { get; }

    /// <inheritdoc/>
    public override string Description => "Red Hat, Inc. Virtio 1.0 network device";

    /// <summary>Ethernet port number of this device's wire (in frame events and <see cref="WireFrame"/>).</summary>
    public int PortNumber { get; }

    int IEthernetPort.Number => PortNumber;
    PciFunction IEthernetPort.Function => this;
    /// <summary>The permanent MAC (device config <c>mac</c> after a reset; <see cref="Mac"/> is the current one).</summary>
    public ReadOnlySpan<byte> MacAddress => _defaultMac;

    /// <summary>Number of virtqueues: a receive and a transmit queue per pair, and the control queue when CTRL_VQ is offered.</summary>
    public int QueueCount => _queues.Length;

    private static int NumQueuesFor(VirtioNetOptions o) => 2 * o.QueuePairs + ((o.OfferedFeatures & Bit(FCtrlVq)) != 0 ? 1 : 0);

    /// <summary>Index of the control queue, or -1.</summary>
    public int ControlQueue => (_offered & Bit(FCtrlVq)) != 0 ? 2 * Options.QueuePairs : -1;

    /// <summary>Features the device offers.</summary>
    public ulong DeviceFeatures => _offered;
    /// <summary>Features the driver accepted (valid once FEATURES_OK reads back set).</summary>
    public ulong DriverFeatures => _driverFeatures;
    /// <summary>device_status as the driver reads it.</summary>
    public byte Status => _status;
    /// <summary>Whether the device processes queues: DRIVER_OK set, NEEDS_RESET and FAILED clear.</summary>
    public bool Live => (_status & (StatusDriverOk | StatusNeedsReset | StatusFailed)) == StatusDriverOk;
    /// <summary>Notifications the device ignored (before DRIVER_OK, for a disabled or unknown queue, after NEEDS_RESET).</summary>
    public long NotifiesIgnored { get; private set; }
    /// <summary>The error that put the device in NEEDS_RESET, if any since the last reset.</summary>
    public VirtqError? LastError { get; private set; }
    /// <summary>Why the last queue_enable was refused, if one was.</summary>
    public string? LastRefusal { get; private set; }

    private bool Negotiated(int bit) => (_driverFeatures & Bit(bit)) != 0;

    /// <inheritdoc/>
    public override IMmioRegion GetBarRegion(int index) => index switch
    {
        MsixBar => _msixRegion,
        VirtioBar => _virtioRegion,
        _ => EmptyRegion.Instance,
    };

    /// <inheritdoc/>
    protected override VirtualFunction CreateVf(int index) => throw new InvalidOperationException("virtio-net has no SR-IOV capability");

    /// <inheritdoc/>
    protected override void OnDeviceReset() => ResetDevice();

    /// <summary>A config read: pci_cfg_data first performs the BAR read the PCI_CFG capability describes (§4.1.4.9.1).</summary>
    public override uint ReadConfig(int offset, int width)
    {
        ConfigSpace.ValidateAccess(offset, width);
        int data = _pciCfg.Offset + CapPciCfgData;
        if (offset < data + 4 && offset + width > data)
        {
            var (bar, off, len) = _pciCfg.Window;
            if (len is 1 or 2 or 4 && (off & (uint)(len - 1)) == 0 && BarAccessible(bar, off, len))
                _pciCfg.SetData((uint)GetBarRegion(bar).Read(off, len));
        }
        return Config.Read(offset, width);
    }

    private bool BarAccessible(int bar, uint off, int len)
    {
        foreach (var b in Bars)
            if (b.Index == bar) return (ulong)off + (ulong)len <= b.Size;
        return false;
    }

    private void PciCfgWrite(int bar, uint off, int len, uint data)
    {
        // The driver writes pci_cfg_data with the width in length; other lengths or a misaligned offset do nothing.
        if (len is not (1 or 2 or 4) || (off & (uint)(len - 1)) != 0 || !BarAccessible(bar, off, len)) return;
        GetBarRegion(bar).Write(off, len, len == 4 ? data : data & ((1u << (8 * len)) - 1));
    }

    // ---------------- Reset and status (§2.1, §2.4, §3.1) ----------------

    private void ResetDevice()
    {
        _deviceFeatureSelect = _driverFeatureSelect = 0;
        _driverFeatures = 0;
        _configVector = NoVector;
        _queueSelect = 0;
        _status = 0;
        _isr = 0;
        foreach (var q in _queues) q.Reset();
        LastError = null;
        ResetNet();
        DeassertIntx();
    }

    /// <summary>Puts the device in NEEDS_RESET and tells a live driver with a configuration change notification (§2.1.2).</summary>
    private void NeedsReset()
    {
        if ((_status & StatusNeedsReset) != 0) return;
        bool driverOk = (_status & StatusDriverOk) != 0;
        _status |= StatusNeedsReset;
        if (driverOk) ConfigChanged();
    }

    private void OnQueueError(VirtqError e)
    {
        LastError ??= e;
        QueueErrors++;
        NeedsReset();
    }

    /// <summary>Queue errors (DMA faults, malformed chains) since the machine started.</summary>
    public long QueueErrors { get; private set; }

    private void WriteStatus(byte value)
    {
        if (value == 0) { ResetDevice(); return; }
        // The driver never clears a bit (only a write of 0 resets) and never sets NEEDS_RESET.
        byte old = _status;
        byte set = (byte)(value & ~old & ~StatusNeedsReset);
        byte next = (byte)(old | set);
        if ((set & StatusFeaturesOk) != 0 && (LastFeaturesRefusal = FeaturesRefusal(next)) != null) next &= unchecked((byte)~StatusFeaturesOk);
        if ((set & StatusDriverOk) != 0 && (next & StatusFeaturesOk) == 0)
        {
            // DRIVER_OK without FEATURES_OK: the device cannot know the ring layout. It refuses and asks for a reset.
            _status = (byte)(next & ~StatusDriverOk);
            NeedsReset();
            return;
        }
        _status = next;
    }

    /// <summary>Why the device last refused FEATURES_OK, or null.</summary>
    public string? LastFeaturesRefusal { get; private set; }

    /// <summary>Why the driver's features cannot be accepted with status <paramref name="status"/>, or null (§2.2.1, §3.1.1, §5.1.3.1).</summary>
    private string? FeaturesRefusal(byte status)
    {
        ulong f = _driverFeatures;
        if ((status & (StatusAcknowledge | StatusDriver)) != (StatusAcknowledge | StatusDriver))
            return "FEATURES_OK without ACKNOWLEDGE and DRIVER";
        if ((f & ~_offered) != 0) return $"features not offered: 0x{f & ~_offered:X}";
        if ((f & Bit(FVersion1)) == 0) return "VERSION_1 not accepted (modern-only device)";
        ulong needCtrl = Bit(FCtrlRx) | Bit(FCtrlMacAddr) | Bit(FMq);
        if ((f & needCtrl) != 0 && (f & Bit(FCtrlVq)) == 0) return "CTRL_RX, CTRL_MAC_ADDR and MQ require CTRL_VQ";
        return null;
    }

    private void ConfigChanged()
    {
        if (MsixTable != null && Find<MsixCapability>()!.Enabled)
        {
            if (_configVector != NoVector) MsixTable.Signal(_configVector);
            return;
        }
        _isr |= IsrConfig;
        AssertIntx();
    }

    private void QueueInterrupt(Virtqueue q)
    {
        if (MsixTable != null && Find<MsixCapability>()!.Enabled)
        {
            if (q.MsixVector != NoVector) MsixTable.Signal(q.MsixVector);
            return;
        }
        _isr |= IsrQueue;
        AssertIntx();
    }

    private ushort CheckVector(ushort v) => v != NoVector && v >= MsixTable!.Vectors ? NoVector : v;

    // ---------------- Common configuration (§4.1.4.3) ----------------

    private Virtqueue? Selected => _queueSelect < _queues.Length ? _queues[_queueSelect] : null;

    private static (int Start, int Size) CommonField(int o) => o switch
    {
        < 4 => (DeviceFeatureSelect, 4), < 8 => (DeviceFeature, 4), < 12 => (DriverFeatureSelect, 4), < 16 => (DriverFeature, 4),
        < 18 => (ConfigMsixVector, 2), < 20 => (NumQueues, 2), 20 => (DeviceStatus, 1), 21 => (ConfigGeneration, 1),
        < 24 => (QueueSelect, 2), < 26 => (QueueSize, 2), < 28 => (QueueMsixVector, 2), < 30 => (QueueEnable, 2),
        < 32 => (QueueNotifyOff, 2), < 40 => (QueueDesc, 8), < 48 => (QueueDriver, 8), < 56 => (QueueDevice, 8),
        < 58 => (QueueNotifyData, 2), < 60 => (QueueReset, 2), _ => (-1, 0),
    };

    private ulong CommonValue(int start)
    {
        var q = Selected;
        return start switch
        {
            DeviceFeatureSelect => _deviceFeatureSelect,
            DeviceFeature => _deviceFeatureSelect switch { 0 => (uint)_offered, 1 => (uint)(_offered >> 32), _ => 0 },
            DriverFeatureSelect => _driverFeatureSelect,
            DriverFeature => _driverFeatureSelect switch { 0 => (uint)_driverFeatures, 1 => (uint)(_driverFeatures >> 32), _ => 0 },
            ConfigMsixVector => _configVector,
            NumQueues => (ulong)_queues.Length,
            DeviceStatus => _status,
            ConfigGeneration => _configGeneration,
            QueueSelect => _queueSelect,
            QueueSize => q?.Size ?? 0,
            QueueMsixVector => q?.MsixVector ?? NoVector,
            QueueEnable => q is { Enabled: true } ? 1u : 0,
            QueueNotifyOff => q != null ? (ulong)q.Index : 0,
            QueueDesc => q?.DescAddr ?? 0,
            QueueDriver => q?.DriverAddr ?? 0,
            QueueDevice => q?.DeviceAddr ?? 0,
            QueueNotifyData => q != null ? (ulong)q.Index : 0,
            _ => 0,
        };
    }

    internal ulong ReadCommon(ulong offset, int width)
    {
        ulong v = 0;
        for (int i = 0; i < width; i++)
        {
            int o = (int)offset + i;
            var (start, _) = CommonField(o);
            if (start < 0) continue;
            v |= ((CommonValue(start) >> (8 * (o - start))) & 0xFF) << (8 * i);
        }
        return v;
    }

    internal void WriteCommon(ulong offset, int width, ulong value)
    {
        var (start, size) = CommonField((int)offset);
        if (start < 0) return;
        // A whole field, or one 32-bit half of a 64-bit address field (§4.1.3.1); anything else is ignored.
        bool half = size == 8 && width == 4 && ((int)offset - start) % 4 == 0;
        if ((int)offset != start && !half) return;
        if (width != size && !half) return;
        var q = Selected;
        switch (start)
        {
            case DeviceFeatureSelect: _deviceFeatureSelect = (uint)value; break;
            case DriverFeatureSelect: _driverFeatureSelect = (uint)value; break;
            case DriverFeature:
                // Feature bits are the driver's until FEATURES_OK (§3.1.1 step 5).
                if ((_status & StatusFeaturesOk) != 0 || _driverFeatureSelect > 1) break;
                int shift = 32 * (int)_driverFeatureSelect;
                _driverFeatures = (_driverFeatures & ~(0xFFFF_FFFFUL << shift)) | (value & 0xFFFF_FFFF) << shift;
                break;
            case ConfigMsixVector: _configVector = CheckVector((ushort)value); break;
            case DeviceStatus: WriteStatus((byte)value); break;
            case QueueSelect: _queueSelect = (ushort)value; break;
            case QueueSize: if (q is { Enabled: false }) q.Size = (ushort)value; break;
            case QueueMsixVector: if (q != null) q.MsixVector = CheckVector((ushort)value); break;
            case QueueEnable: if (q != null && (value & 1) != 0 && !q.Enabled) EnableQueue(q); break;
            case QueueDesc: if (q is { Enabled: false }) q.DescAddr = Merge(q.DescAddr, offset - (ulong)start, width, value); break;
            case QueueDriver: if (q is { Enabled: false }) q.DriverAddr = Merge(q.DriverAddr, offset - (ulong)start, width, value); break;
            case QueueDevice: if (q is { Enabled: false }) q.DeviceAddr = Merge(q.DeviceAddr, offset - (ulong)start, width, value); break;
            default: break;   // read-only fields; queue_reset (RING_RESET not offered) ignores writes
        }
    }

    private static ulong Merge(ulong old, ulong rel, int width, ulong value) => width == 8 ? value
        : rel == 0 ? (old & 0xFFFF_FFFF_0000_0000UL) | (value & 0xFFFF_FFFF) : (old & 0xFFFF_FFFFUL) | (value << 32);

    private void EnableQueue(Virtqueue q)
    {
        if ((_status & StatusFeaturesOk) == 0) { Refuse(q, "queue_enable before FEATURES_OK (ring layout not negotiated)"); return; }
        bool packed = Negotiated(FRingPacked);
        if (q.CheckLayout(packed) is { } why) { Refuse(q, why); return; }
        q.TryEnable(packed, Negotiated(FEventIdx), Negotiated(FIndirectDesc));
        if (packed) q.PublishAvailEvent();
    }

    private void Refuse(Virtqueue q, string why)
    {
        // queue_enable keeps reading 0 and the device asks for a reset: a driver that goes on would
        // otherwise wait for a queue that never runs.
        LastRefusal = $"queue {q.Index}: {why}";
        NeedsReset();
    }

    // ---------------- ISR, device config, notify ----------------

    internal byte ReadIsr()
    {
        // Reading the ISR status clears it and deasserts INTx (§4.1.4.5).
        byte v = _isr;
        _isr = 0;
        DeassertIntx();
        return v;
    }

    internal void Notify(ulong offset, int width)
    {
        _ = width;
        ulong qi = offset / NotifyMultiplier;
        if (offset % NotifyMultiplier != 0 || qi >= (ulong)_queues.Length || !_queues[(int)qi].Enabled || !Live)
        {
            NotifiesIgnored++;
            return;
        }
        var q = _queues[(int)qi];
        if (q.Index == ControlQueue) ProcessControl(q);
        else if ((q.Index & 1) == 1) ProcessTransmit(q);
        // A receive queue's notify says buffers were added: they are used when frames arrive.

    }

    /// <summary>BAR4: common, ISR, device and notify structures, 4 KiB apart.</summary>
    private sealed class VirtioBarRegion(VirtioNetFunction f) : IMmioRegion, INamedRegion
    {
        public ulong Read(ulong offset, int width) => offset switch
        {
            < IsrOffset => offset < CommonCfgSize ? f.ReadCommon(offset, width) : 0UL,
            < DeviceOffset => offset == IsrOffset ? f.ReadIsr() : 0UL,
            < NotifyOffset => f.ReadDeviceConfig(offset - DeviceOffset, width),
            _ => 0,
        };

        public void Write(ulong offset, int width, ulong value)
        {
            if (offset < IsrOffset) { if (offset < CommonCfgSize) f.WriteCommon(offset, width, value); }
            else if (offset >= NotifyOffset && offset < NotifyOffset + 0x1000) f.Notify(offset - NotifyOffset, width);
        }

        public string? RegisterNameAt(ulong offset) => offset switch
        {
            < IsrOffset => offset < CommonCfgSize ? $"virtio common+0x{offset:X2}" : null,
            < DeviceOffset => offset == IsrOffset ? "virtio ISR" : null,
            < NotifyOffset => $"virtio-net config+0x{offset - DeviceOffset:X2}",
            _ => $"virtio notify queue {(offset - NotifyOffset) / NotifyMultiplier}",
        };
    }

    internal static ushort Le16(ReadOnlySpan<byte> b, int o) => BinaryPrimitives.ReadUInt16LittleEndian(b[o..]);
}
