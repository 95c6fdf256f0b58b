using System.Buffers.Binary;
using PcieEmu.Core.Devices.VirtioNet;
using PcieEmu.Core.Platform;
using static PcieEmu.Core.Devices.VirtioNet.VirtioRegs;

namespace PcieEmu.Lab;

/// <summary>
/// The paravirtual guest's driver: virtio-net over the modern PCI transport with split rings and
/// VIRTIO_F_EVENT_IDX, as Linux's virtio_net uses them. Receive queue 0 (vector 0) and transmit
/// queue 1 (no vector: completions are reclaimed at the next send). A batch of frames is made
/// available and the device is notified only when its avail_event asks for it (one notify per
/// batch); the receive interrupt is re-armed after each poll by moving used_event to the last used
/// entry, so a batch of arrivals raises one interrupt. Its register accesses are MMIO on the
/// device's BAR, which the VMM traps.
/// </summary>
internal sealed class VirtioGuestDriver : IGuestDriver
{
    public const int QueueSize = 256, BufferSize = 2048;
    private const ulong RxDesc = 0x0000, RxAvail = 0x1000, RxUsed = 0x2000, TxDesc = 0x4000, TxAvail = 0x5000, TxUsed = 0x6000;
    private const ulong TxBuffers = 0x1_0000, RxBuffers = 0x10_0000;
    private readonly Machine _m;
    private readonly Guest _g;
    private readonly ulong _common, _notify;
    private uint _rxNotifyOff, _txNotifyOff;
    private ushort _txAvail, _txKicked, _rxAvail, _rxKicked, _rxLastUsed;

    public VirtioGuestDriver(Machine machine, Guest guest, ulong virtioBar)
    {
        _m = machine; _g = guest;
        _common = virtioBar + VirtioNetFunction.CommonOffset;
        _notify = virtioBar + VirtioNetFunction.NotifyOffset;
    }

    private ulong Common(int off, int width) => _m.ReadMmio(_common + (ulong)off, width).Value;
    private void Common(int off, int width, ulong v) => _m.WriteMmio(_common + (ulong)off, width, v);

    /// <summary>Reset, negotiation, both queues, DRIVER_OK, every receive buffer posted.</summary>
    public void Setup()
    {
        Common(DeviceStatus, 1, 0);
        Common(DeviceStatus, 1, StatusAcknowledge);
        Common(DeviceStatus, 1, StatusAcknowledge | StatusDriver);
        ulong want = 1UL << FVersion1 | 1UL << FMac | 1UL << FEventIdx;
        Common(DeviceFeatureSelect, 4, 0); ulong offered = Common(DeviceFeature, 4);
        Common(DeviceFeatureSelect, 4, 1); offered |= Common(DeviceFeature, 4) << 32;
        if ((offered & want) != want) throw new InvalidOperationException($"virtio-net does not offer features 0x{want & ~offered:X}");
        Common(DriverFeatureSelect, 4, 0); Common(DriverFeature, 4, (uint)want);
        Common(DriverFeatureSelect, 4, 1); Common(DriverFeature, 4, (uint)(want >> 32));
        Common(DeviceStatus, 1, StatusAcknowledge | StatusDriver | StatusFeaturesOk);
        if ((Common(DeviceStatus, 1) & StatusFeaturesOk) == 0) throw new InvalidOperationException("virtio-net refused FEATURES_OK");
        _rxNotifyOff = Queue(0, RxDesc, RxAvail, RxUsed, 0);
        _txNotifyOff = Queue(1, TxDesc, TxAvail, TxUsed, NoVector);
        Common(DeviceStatus, 1, StatusAcknowledge | StatusDriver | StatusFeaturesOk | StatusDriverOk);
        for (ushort i = 0; i < QueueSize; i++)
        {
            var d = _g.Memory(RxDesc + i * 16UL, 16);
            BinaryPrimitives.WriteUInt64LittleEndian(d, RxBuffers + i * (ulong)BufferSize);
            BinaryPrimitives.WriteUInt32LittleEndian(d[8..], BufferSize);
            BinaryPrimitives.WriteUInt16LittleEndian(d[12..], DescWrite);
            BinaryPrimitives.WriteUInt16LittleEndian(d[14..], 0);
            W16(RxAvail + 4 + i * 2UL, i);
        }
        _rxAvail = QueueSize;
        W16(RxAvail + 4 + QueueSize * 2, 0);    // used_event: interrupt at the first used entry
        W16(RxAvail + 2, _rxAvail);
        _rxKicked = _rxAvail;
        Kick(_rxNotifyOff, 0);
    }

    private uint Queue(int index, ulong desc, ulong avail, ulong used, ushort vector)
    {
        Common(QueueSelect, 2, (ulong)index);
        Common(VirtioRegs.QueueSize, 2, QueueSize);
        Common(QueueDesc, 8, desc); Common(QueueDriver, 8, avail); Common(QueueDevice, 8, used);
        Common(QueueMsixVector, 2, vector);
        Common(QueueEnable, 2, 1);
        return (uint)Common(QueueNotifyOff, 2);
    }

    /// <summary>Builds a frame (virtio_net_hdr, all zero, then the frame) in the next TX slot.</summary>
    public Span<byte> Queue(int length)
    {
        ushort slot = (ushort)(_txAvail % QueueSize);
        ulong buf = TxBuffers + slot * (ulong)BufferSize;
        _g.Memory(buf, NetHdrSize).Clear();
        var d = _g.Memory(TxDesc + slot * 16UL, 16);
        BinaryPrimitives.WriteUInt64LittleEndian(d, buf);
        BinaryPrimitives.WriteUInt32LittleEndian(d[8..], (uint)(NetHdrSize + length));
        BinaryPrimitives.WriteUInt32LittleEndian(d[12..], 0);
        W16(TxAvail + 4 + slot * 2UL, slot);
        _txAvail++;
        return _g.Memory(buf + NetHdrSize, length);
    }

    /// <summary>Publishes the queued frames; notifies when the device's avail_event asks for it.</summary>
    public void Flush()
    {
        W16(TxAvail + 2, _txAvail);
        if (NeedEvent(R16(TxUsed + 4 + QueueSize * 8), _txAvail, _txKicked)) Kick(_txNotifyOff, 1);
        _txKicked = _txAvail;
    }

    /// <summary>Reaps the used receive buffers, gives them back, re-arms the interrupt (used_event).</summary>
    public int Poll()
    {
        ushort usedIdx = R16(RxUsed + 2);
        int n = 0;
        while (_rxLastUsed != usedIdx)
        {
            var e = _g.Memory(RxUsed + 4 + (ulong)(_rxLastUsed % QueueSize) * 8, 8);
            ushort id = (ushort)BinaryPrimitives.ReadUInt32LittleEndian(e);
            W16(RxAvail + 4 + (ulong)(_rxAvail % QueueSize) * 2, id);
            _rxAvail++;
            _rxLastUsed++;
            n++;
        }
        if (n == 0) return 0;
        W16(RxAvail + 2, _rxAvail);
        W16(RxAvail + 4 + QueueSize * 2, _rxLastUsed);   // used_event
        if (NeedEvent(R16(RxUsed + 4 + QueueSize * 8), _rxAvail, _rxKicked)) Kick(_rxNotifyOff, 0);
        _rxKicked = _rxAvail;
        return n;
    }

    // vring_need_event: notify when the new entries cross the index the other side asked for.
    private static bool NeedEvent(ushort eventIdx, ushort newIdx, ushort oldIdx) => (ushort)(newIdx - eventIdx - 1) < (ushort)(newIdx - oldIdx);

    private void Kick(uint notifyOff, int queue) => _m.WriteMmio(_notify + notifyOff * VirtioNetFunction.NotifyMultiplier, 2, (ulong)queue);

    private ushort R16(ulong gpa) => BinaryPrimitives.ReadUInt16LittleEndian(_g.Memory(gpa, 2));
    private void W16(ulong gpa, ushort v) => BinaryPrimitives.WriteUInt16LittleEndian(_g.Memory(gpa, 2), v);
}
