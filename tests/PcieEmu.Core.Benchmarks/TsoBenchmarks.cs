using System.Buffers.Binary;
using BenchmarkDotNet.Attributes;
using PcieEmu.Core.Devices.Igb;
using PcieEmu.Core.Platform;
using static PcieEmu.Core.Devices.Igb.IgbRegs;

namespace PcieEmu.Core.Benchmarks;

/// <summary>
/// TCP segmentation offload in-process: PF queue 0 sends 64 KiB IPv4/TCP packets (one context
/// descriptor, 32 data descriptors of 2 KiB, TSE|IXSM|TXSM) with MSS 1448, so each packet leaves as
/// 46 frames with rewritten headers and checksums; frames go to the wire (no capture attached).
/// One op = one segment on the wire. Baseline: the same bytes copied twice (gather + segment copy).
/// </summary>
[MemoryDiagnoser]
public class TsoBenchmarks
{
    private const int Mss = 1448, Headers = 14 + 20 + 20, PacketBytes = 64 * 1024, DataDescs = PacketBytes / 2048;
    private const int DescsPerPacket = DataDescs + 1, Ring = DescsPerPacket * 8, PacketsPerInvoke = 4;
    private const int Segments = (PacketBytes - Headers + Mss - 1) / Mss;
    private Machine _m = null!;
    private ulong _pfBar;
    private uint _tail;
    private readonly byte[] _src = new byte[PacketBytes], _dst = new byte[PacketBytes + Segments * Headers];

    [GlobalSetup]
    public void Setup()
    {
        _m = new Machine(new MachineOptions { RamSize = 64UL << 20 });
        var pf = (IgbPhysicalFunction)_m.PhysicalFunctions[0];
        _m.WriteConfig(0x0100, 0x04, 2, 6);   // memory space, bus master
        _pfBar = pf.BarWindow(pf.Bars[0]).Base;
        void Pf(uint o, uint v) => _m.WriteMmio(_pfBar + o, 4, v);
        Pf(Tctl, TctlEn);

        var packet = new byte[PacketBytes];
        packet.AsSpan(0, 6).Fill(0xFF);
        packet[6] = 0x02; packet[11] = 0x01; packet[12] = 0x08;
        packet[14] = 0x45; packet[22] = 64; packet[23] = 6;
        packet[26] = 192; packet[29] = 1; packet[30] = 198; packet[33] = 7;
        packet[34] = 0x9C; packet[35] = 0x40; packet[36] = 0x14; packet[37] = 0x51; packet[46] = 0x50; packet[47] = 0x10;
        ulong txRing = 0x10_0000, txBufs = 0x20_0000;
        _m.WriteMemory(txBufs, packet);
        var d = new byte[16];
        for (int p = 0; p < Ring / DescsPerPacket; p++)
        {
            ulong at = txRing + (ulong)(p * DescsPerPacket) * 16;
            // Context: MACLEN 14, IPLEN 20, TUCMD IPv4 + TCP, MSS, L4LEN 20.
            d.AsSpan().Clear();
            BinaryPrimitives.WriteUInt32LittleEndian(d, 14u << 9 | 20);
            BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(8), 0x2020_0000u | 0x400 | 0x800);
            BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(12), (uint)Mss << 16 | 20u << 8);
            _m.WriteMemory(at, d);
            for (int i = 0; i < DataDescs; i++)
            {
                bool first = i == 0, last = i == DataDescs - 1;
                d.AsSpan().Clear();
                BinaryPrimitives.WriteUInt64LittleEndian(d, txBufs + (ulong)i * 2048);
                BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(8), 2048u | 0x2230_0000 | (first ? 0x8000_0000 : 0) | (last ? 0x0900_0000u : 0));
                if (first) BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(12), (uint)(PacketBytes - Headers) << 14 | 0x300);
                _m.WriteMemory(at + (ulong)(i + 1) * 16, d);
            }
        }
        Pf(TxQueues + Tdbal, (uint)txRing); Pf(TxQueues + Tdlen, Ring * 16); Pf(TxQueues + Txdctl, QueueEnable);

        // Sanity: one invocation sends every segment, nothing dropped.
        Tso64K();
        long gptc = (long)_m.ReadMmio(_pfBar + Gptc, 4).Value;
        if (gptc != PacketsPerInvoke * Segments || pf.Nic.TxDropped != 0)
            throw new InvalidOperationException($"setup broken: GPTC {gptc}, dropped {pf.Nic.TxDropped}");
    }

    [GlobalCleanup]
    public void Cleanup() => _m.Dispose();

    /// <summary>Baseline: the payload gathered into one buffer and copied out once per segment with its headers.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = PacketsPerInvoke * Segments)]
    public void MemcpySegments()
    {
        for (int p = 0; p < PacketsPerInvoke; p++)
        {
            _src.CopyTo(_dst, 0);
            for (int s = 0, off = Headers; off < PacketBytes; s++, off += Mss)
            {
                _src.AsSpan(0, Headers).CopyTo(_dst.AsSpan(s * (Headers + Mss)));
                _src.AsSpan(off, Math.Min(Mss, PacketBytes - off)).CopyTo(_dst.AsSpan(s * (Headers + Mss) + Headers));
            }
        }
    }

    /// <summary>Four 64 KiB TSO packets per TDT write (46 segments each).</summary>
    [Benchmark(OperationsPerInvoke = PacketsPerInvoke * Segments)]
    public void Tso64K()
    {
        _tail = (_tail + PacketsPerInvoke * DescsPerPacket) % Ring;
        _m.WriteMmio(_pfBar + TxQueues + Tdt, 4, _tail);
    }
}
