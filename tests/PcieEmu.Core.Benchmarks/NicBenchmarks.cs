using System.Buffers.Binary;
using BenchmarkDotNet.Attributes;
using PcieEmu.Core.Devices.Igb;
using PcieEmu.Core.Platform;
using static PcieEmu.Core.Devices.Igb.IgbRegs;
using Iommu_ = PcieEmu.Core.Iommu;

namespace PcieEmu.Core.Benchmarks;

/// <summary>
/// In-process NIC throughput: 64-byte IPv4/UDP frames VF0 → VF1 through the TX ring, the VMDq switch and
/// the RX ring (descriptor fetch, buffer gather, write-backs, MSI-X with auto-mask re-armed per
/// batch as a NAPI driver does), all through the DMA ports. One op = one frame. Baseline: copying
/// the same 64 bytes twice (gather + scatter) with memcpy.
/// </summary>
[MemoryDiagnoser]
public class NicBenchmarks
{
    private const int Batch = 256, Ring = 1024, FrameLen = 64;
    private Machine _m = null!;
    private IgbPort _nic = null!;
    private ulong _vf0, _vf1, _rxRing, _rxBufs;
    private uint _txTail, _rxTail;
    private readonly byte[] _src = new byte[Batch * FrameLen], _dst = new byte[Batch * FrameLen];
    private byte[] _wireFrame = null!;

    /// <summary>With the VT-d unit translating every NIC DMA (4 KiB identity mappings in one domain per VF).</summary>
    [Params(false, true)]
    public bool Iommu { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _m = new Machine(new MachineOptions { RamSize = 64UL << 20 });
        var pf = (IgbPhysicalFunction)_m.PhysicalFunctions[0];
        _nic = pf.Nic;
        _m.WriteConfig(0x0100, 0x170, 2, 2);
        _m.WriteConfig(0x0100, 0x168, 2, 9);
        for (int i = 0; i < 2; i++) _m.WriteConfig(pf.VfRid(i), 0x04, 2, 4);
        ulong pfBar = pf.BarWindow(pf.Bars[0]).Base;
        var vfBar0 = pf.Sriov!.Parameters.VfBars[0];
        var vfBar3 = pf.Sriov!.Parameters.VfBars[1];
        _vf0 = pf.VfBarWindow(vfBar0, 0).Base;
        _vf1 = pf.VfBarWindow(vfBar0, 1).Base;
        void Pf(uint o, uint v) => _m.WriteMmio(pfBar + o, 4, v);
        Pf(CtrlExt, CtrlExtPfrstd); Pf(Mrqc, MrqcVmdq); Pf(Dtxswc, DtxswcLoopback); Pf(Rctl, RctlEn | RctlSecrc); Pf(Tctl, TctlEn);
        Pf(Vfre, 3); Pf(Vfte, 3); Pf(Vmolr + 4, VmolrAupe | VmolrBam);
        byte[] mac1 = [0x02, 0, 0, 0, 0x10, 1];
        Pf(Ral0 + 8, BinaryPrimitives.ReadUInt32LittleEndian(mac1));
        Pf(Ral0 + 12, BinaryPrimitives.ReadUInt16LittleEndian(mac1.AsSpan(4)) | 2u << RahPoolShift | RahAv);

        // VF0 TX ring: descriptors written once (the device only sets DD in them).
        ulong txRing = 0x10_0000, txBufs = 0x20_0000;
        _rxRing = 0x40_0000; _rxBufs = 0x50_0000;
        var frame = new byte[FrameLen];
        mac1.CopyTo(frame, 0);
        frame[6] = 0x02; frame[11] = 0x01; frame[12] = 0x08;
        // A real IPv4/UDP frame (20-byte IP header, 30-byte UDP datagram) so the receive checksum
        // offload and packet-type parsing run on every frame, as with real traffic.
        frame[14] = 0x45; frame[17] = 50; frame[22] = 64; frame[23] = 17;
        frame[26] = 10; frame[29] = 1; frame[30] = 10; frame[33] = 2;
        frame[34] = 0x13; frame[35] = 0x88; frame[36] = 0x13; frame[37] = 0x89; frame[39] = 30;
        for (int i = 0; i < Ring; i++)
        {
            _m.WriteMemory(txBufs + (ulong)i * 2048, frame);
            var d = new byte[16];
            BinaryPrimitives.WriteUInt64LittleEndian(d, txBufs + (ulong)i * 2048);
            BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(8), FrameLen | 0x2B30_0000u);   // DEXT|RS|IFCS|EOP|DTYP data
            _m.WriteMemory(txRing + (ulong)i * 16, d);
        }
        void Vf(ulong bar, uint o, uint v) => _m.WriteMmio(bar + o, 4, v);
        Vf(_vf0, TxLegacy + Tdbal, (uint)txRing); Vf(_vf0, TxLegacy + Tdlen, Ring * 16); Vf(_vf0, TxLegacy + Txdctl, QueueEnable);
        Vf(_vf1, RxLegacy + Rdbal, (uint)_rxRing); Vf(_vf1, RxLegacy + Rdlen, Ring * 16);
        Vf(_vf1, RxLegacy + Srrctl, 2 | 1u << 25); Vf(_vf1, RxLegacy + Rxdctl, QueueEnable);
        Rearm(0, Ring - 1);
        _rxTail = Ring - 1;
        Vf(_vf1, RxLegacy + Rdt, _rxTail);

        // VF1 MSI-X vector 0 for RX, auto-clear and auto-mask.
        ulong bar3 = pf.VfBarWindow(vfBar3, 1).Base;
        _m.WriteMmio(bar3, 4, 0xFEE0_0000); _m.WriteMmio(bar3 + 8, 4, 0x41); _m.WriteMmio(bar3 + 12, 4, 0);
        _m.WriteConfig(pf.VfRid(1), 0x72, 2, 0x8000);
        Vf(_vf1, Ivar0, 0x80); Vf(_vf1, Eiac, 1); Vf(_vf1, Eiam, 1); Vf(_vf1, Eims, 1);

        _wireFrame = frame;
        if (Iommu) EnableIommu([pf.VfRid(0), pf.VfRid(1)], 0x10_0000, 0x90_0000);

        // Sanity: one batch must move 256 frames into VF1's ring, none dropped.
        VfToVf64();
        uint rdh = (uint)_m.ReadMmio(_vf1 + RxLegacy + Rdh, 4).Value;
        uint tdh = (uint)_m.ReadMmio(_vf0 + TxLegacy + Tdh, 4).Value;
        if (rdh != Batch || tdh != Batch) throw new InvalidOperationException($"setup broken: RDH {rdh}, TDH {tdh}");
    }

    /// <summary>A minimal VT-d driver: root and context tables, 4-level second-level tables
    /// identity-mapping [lo, hi) in 4 KiB pages for each of <paramref name="rids"/>, then TE on.</summary>
    private void EnableIommu(ushort[] rids, ulong lo, ulong hi)
    {
        ulong next = 0x300_0000;
        ulong Page() { ulong p = next; next += 4096; _m.WriteMemory(p, new byte[4096]); return p; }
        ulong ReadQ(ulong a) { Span<byte> b = stackalloc byte[8]; _m.ReadMemory(a, b); return BinaryPrimitives.ReadUInt64LittleEndian(b); }
        void WriteQ(ulong a, ulong v) { Span<byte> b = stackalloc byte[8]; BinaryPrimitives.WriteUInt64LittleEndian(b, v); _m.WriteMemory(a, b); }
        ulong root = Page();
        var contexts = new Dictionary<int, ulong>();
        ushort did = 1;
        foreach (ushort rid in rids)
        {
            if (!contexts.TryGetValue(rid >> 8, out ulong ct)) { ct = Page(); contexts[rid >> 8] = ct; WriteQ(root + (ulong)(rid >> 8) * 16, ct | 1); }
            ulong top = Page();
            WriteQ(ct + (ulong)(rid & 0xFF) * 16, top | 1);
            WriteQ(ct + (ulong)(rid & 0xFF) * 16 + 8, 2UL | (ulong)did++ << 8);
            for (ulong iova = lo; iova < hi; iova += 4096)
            {
                ulong table = top;
                for (int level = 4; level > 1; level--)
                {
                    ulong pteAddr = table + ((iova >> (3 + 9 * level)) & 511) * 8;
                    ulong pte = ReadQ(pteAddr);
                    if ((pte & 3) == 0) { pte = Page() | 3; WriteQ(pteAddr, pte); }
                    table = pte & 0x000F_FFFF_FFFF_F000;
                }
                WriteQ(table + ((iova >> 12) & 511) * 8, iova | 3);
            }
        }
        ulong b = _m.Options.IommuBase;
        _m.WriteMmio(b + (ulong)Iommu_.VtdRegs.Rtaddr, 8, root);
        _m.WriteMmio(b + (ulong)Iommu_.VtdRegs.Gcmd, 4, Iommu_.VtdRegs.GcmdSrtp);
        _m.WriteMmio(b + (ulong)Iommu_.VtdRegs.Gcmd, 4, Iommu_.VtdRegs.GcmdTe);
        if (!_m.Iommu.TranslationEnabled) throw new InvalidOperationException("VT-d translation did not turn on");
    }

    private void Rearm(uint from, uint to)
    {
        Span<byte> d = stackalloc byte[16];
        for (uint i = from; i != to; i = (i + 1) % Ring)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(d, _rxBufs + i * 2048UL);
            BinaryPrimitives.WriteUInt64LittleEndian(d[8..], 0);
            _m.Ram.Write(_rxRing + i * 16UL, d);
        }
    }

    [GlobalCleanup]
    public void Cleanup() => _m.Dispose();

    /// <summary>The machine (for benchmarks that reuse this setup).</summary>
    internal Machine Machine => _m;

    /// <summary>Baseline: the payload copies alone (64 bytes gathered, 64 bytes scattered per frame).</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Batch)]
    public void MemcpyTwice()
    {
        for (int i = 0; i < Batch; i++)
        {
            _src.AsSpan(i * FrameLen, FrameLen).CopyTo(_dst.AsSpan(i * FrameLen));
            _dst.AsSpan(i * FrameLen, FrameLen).CopyTo(_src.AsSpan(((i + 1) % Batch) * FrameLen));
        }
    }

    /// <summary>VF0 → VF1, 64-byte frames, 256 descriptors per TDT write; the receiver re-arms and
    /// moves RDT and re-enables its vector once per batch.</summary>
    [Benchmark(OperationsPerInvoke = Batch)]
    public void VfToVf64()
    {
        _txTail = (_txTail + Batch) % Ring;
        _m.WriteMmio(_vf0 + TxLegacy + Tdt, 4, _txTail);
        uint newTail = (_rxTail + Batch) % Ring;
        Rearm(_rxTail, newTail);
        _rxTail = newTail;
        _m.WriteMmio(_vf1 + RxLegacy + Rdt, 4, _rxTail);
        _m.WriteMmio(_vf1 + Eims, 4, 1);
    }

    /// <summary>Wire → VF1: InjectFrame of 64-byte frames (takes the machine lock per frame).</summary>
    [Benchmark(OperationsPerInvoke = Batch)]
    public void WireToVf64()
    {
        for (int i = 0; i < Batch; i++) _nic.InjectFrame(_wireFrame);
        uint newTail = (_rxTail + Batch) % Ring;
        Rearm(_rxTail, newTail);
        _rxTail = newTail;
        _m.WriteMmio(_vf1 + RxLegacy + Rdt, 4, _rxTail);
        _m.WriteMmio(_vf1 + Eims, 4, 1);
    }

    /// <summary>One 4-byte register read through the MMIO path (VF STATUS).</summary>
    [Benchmark(OperationsPerInvoke = 1)]
    public ulong RegisterRead() => _m.ReadMmio(_vf0 + Status, 4).Value;
}
