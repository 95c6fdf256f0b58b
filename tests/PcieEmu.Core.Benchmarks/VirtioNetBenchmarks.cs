using System.Buffers.Binary;
using BenchmarkDotNet.Attributes;
using PcieEmu.Core.AddressSpace;
using PcieEmu.Core.Devices.Igb;
using PcieEmu.Core.Devices.VirtioNet;
using PcieEmu.Core.Platform;
using PcieEmu.Core.Topology;
using static PcieEmu.Core.Devices.VirtioNet.VirtioRegs;

namespace PcieEmu.Core.Benchmarks;

/// <summary>
/// In-process virtio-net guest → wire: 64-byte frames (12-byte virtio_net_hdr in front) on a
/// 256-entry split (or packed) transmit ring, 256 buffers made available per notify; the device
/// pops each chain, gathers it through the DMA port, hands the frame to the wire (a
/// FrameTransmitted handler, so each frame is copied out as WireFrame), writes the used ring and
/// signals MSI-X once per batch. One op = one frame. Baseline: the payload copies alone (the
/// gather and the copy out).
/// </summary>
[MemoryDiagnoser]
public class VirtioNetBenchmarks
{
    private const int Batch = 256, FrameLen = 64, Pkt = NetHdrSize + FrameLen;
    private Machine _m = null!;
    private VirtioNetFunction _dev = null!;
    private IMmioRegion _bar = null!;
    private ulong _txDesc, _txDriver;
    private ushort _availIdx;
    private bool _packedWrap = true;
    private long _frames;
    private readonly byte[] _src = new byte[Batch * Pkt], _dst = new byte[Batch * Pkt];

    /// <summary>Ring layout: split or packed.</summary>
    [Params(false, true)]
    public bool Packed { get; set; }

    private void Common(int off, int width, ulong v) => _bar.Write(VirtioNetFunction.CommonOffset + (ulong)off, width, v);

    [GlobalSetup]
    public void Setup()
    {
        _m = new Machine(new MachineOptions { RamSize = 64UL << 20 });
        var port = new RootPort(_m, Bdf.Rid(0, 2, 0), new HeaderIds(0x8086, 0x3C04, 0x07, 0x060400), portNumber: 2);
        port.WriteConfig(0x18, 4, 0x00_05_05_00);
        _dev = new VirtioNetFunction(_m, port, new VirtioNetOptions(), ethernetPort: 2);
        _dev.FrameTransmitted += f => _frames += f.Data.Length > 0 ? 1 : 0;
        _bar = _dev.GetBarRegion(VirtioNetFunction.VirtioBar);
        var msix = _dev.GetBarRegion(VirtioNetFunction.MsixBar);
        _dev.WriteConfig(0x04, 2, 0x0006);
        for (int v = 0; v < 4; v++) { msix.Write((ulong)v * 16, 4, 0xFEE0_0000); msix.Write((ulong)v * 16 + 8, 4, 0x40u + (uint)v); msix.Write((ulong)v * 16 + 12, 4, 0); }
        _dev.WriteConfig(0x48 + 2, 2, 0x8000);

        ulong features = Bit(FVersion1) | Bit(FMac) | Bit(FEventIdx) | (Packed ? Bit(FRingPacked) : 0);
        Common(DeviceStatus, 1, 0);
        Common(DeviceStatus, 1, StatusAcknowledge);
        Common(DeviceStatus, 1, StatusAcknowledge | StatusDriver);
        Common(DriverFeatureSelect, 4, 0); Common(DriverFeature, 4, (uint)features);
        Common(DriverFeatureSelect, 4, 1); Common(DriverFeature, 4, (uint)(features >> 32));
        Common(DeviceStatus, 1, StatusAcknowledge | StatusDriver | StatusFeaturesOk);
        _txDesc = 0x10_0000; _txDriver = 0x11_0000;
        ulong txDevice = 0x12_0000, bufs = 0x20_0000;
        Common(QueueSelect, 2, 1);
        Common(QueueSize, 2, Batch);
        Common(QueueDesc, 8, _txDesc); Common(QueueDriver, 8, _txDriver); Common(QueueDevice, 8, txDevice);
        Common(QueueMsixVector, 2, 2);
        Common(QueueEnable, 2, 1);
        Common(DeviceStatus, 1, StatusAcknowledge | StatusDriver | StatusFeaturesOk | StatusDriverOk);
        if (!_dev.Live) throw new InvalidOperationException($"setup broken: status {_dev.Status:X2} {_dev.LastRefusal}");

        // One buffer per descriptor slot, written once: header + a 64-byte frame.
        var pkt = new byte[Pkt];
        byte[] dst = [0x02, 0, 0, 0, 0x77, 9];
        dst.CopyTo(pkt, NetHdrSize);
        pkt[NetHdrSize + 6] = 0x02; pkt[NetHdrSize + 11] = 1; pkt[NetHdrSize + 12] = 0x08;
        var d = new byte[16];
        for (int i = 0; i < Batch; i++)
        {
            _m.WriteMemory(bufs + (ulong)i * 128, pkt);
            BinaryPrimitives.WriteUInt64LittleEndian(d, bufs + (ulong)i * 128);
            BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(8), Pkt);
            BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(12), 0);
            _m.WriteMemory(_txDesc + (ulong)i * 16, d);
            if (!Packed) { BinaryPrimitives.WriteUInt16LittleEndian(d, (ushort)i); _m.WriteMemory(_txDriver + 4 + (ulong)i * 2, d.AsSpan(0, 2)); }
        }
        // Interrupt once per batch: used_event at the batch's last entry.
        GuestToWire64();
        if (_frames != Batch) throw new InvalidOperationException($"setup broken: {_frames} frames sent, errors {_dev.LastError}");
    }

    [GlobalCleanup]
    public void Cleanup() => _m.Dispose();

    /// <summary>Baseline: the payload copies alone (gather into the device, copy out to the wire).</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Batch)]
    public void MemcpyTwice()
    {
        for (int i = 0; i < Batch; i++)
        {
            _src.AsSpan(i * Pkt, Pkt).CopyTo(_dst.AsSpan(i * Pkt));
            _dst.AsSpan(i * Pkt + NetHdrSize, FrameLen).ToArray().CopyTo(_src.AsSpan(((i + 1) % Batch) * Pkt));
        }
    }

    /// <summary>256 frames made available, one notify (under the machine lock, as the MMIO path takes it).</summary>
    [Benchmark(OperationsPerInvoke = Batch)]
    public void GuestToWire64()
    {
        Span<byte> b = stackalloc byte[2];
        if (!Packed)
        {
            // The avail ring entries are fixed (slot i holds descriptor i): publish 256 more and ask
            // for one interrupt at the end of the batch (used_event).
            _availIdx += Batch;
            BinaryPrimitives.WriteUInt16LittleEndian(b, (ushort)(_availIdx - 1));
            _m.Ram.Write(_txDriver + 4 + Batch * 2, b);
            BinaryPrimitives.WriteUInt16LittleEndian(b, _availIdx);
            _m.Ram.Write(_txDriver + 2, b);
        }
        else
        {
            // Packed: the device wrote used descriptors over len, id and flags; make each available
            // again for the current wrap counter (id = slot). Descriptor 0's flags last.
            Span<byte> tail = stackalloc byte[8];
            ushort flags = (ushort)(_packedWrap ? DescAvail : DescUsed);
            for (int i = Batch - 1; i >= 0; i--)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(tail, Pkt);
                BinaryPrimitives.WriteUInt16LittleEndian(tail[4..], (ushort)i);
                BinaryPrimitives.WriteUInt16LittleEndian(tail[6..], flags);
                _m.Ram.Write(_txDesc + (ulong)i * 16 + 8, tail);
            }
            _packedWrap = !_packedWrap;
        }
        lock (_m.SyncRoot) _bar.Write(VirtioNetFunction.NotifyOffset + VirtioNetFunction.NotifyMultiplier, 2, 1);
    }
}
