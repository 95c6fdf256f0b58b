using System.Buffers.Binary;
using PcieEmu.Core.Platform;
using static PcieEmu.Core.Devices.Igb.IgbRegs;

namespace PcieEmu.Lab;

/// <summary>A guest's network driver as the workload uses it.</summary>
internal interface IGuestDriver
{
    /// <summary>The buffer of the next frame to send (sent at <see cref="Flush"/>).</summary>
    Span<byte> Queue(int length);
    /// <summary>Hands the queued frames to the device.</summary>
    void Flush();
    /// <summary>Reaps received frames and re-arms; returns how many.</summary>
    int Poll();
}

/// <summary>Where a driver's register accesses go.</summary>
internal interface INicRegisters
{
    uint Read(uint offset);
    void Write(uint offset, uint value);
}

/// <summary>A BAR the guest reaches without the VMM (mapped into it by the second-level page tables):
/// each access is one MMIO transaction on the machine.</summary>
internal sealed class MappedBar(Machine machine, ulong baseAddress) : INicRegisters
{
    public uint Read(uint offset) => (uint)machine.ReadMmio(baseAddress + offset, 4).Value;
    public void Write(uint offset, uint value) => machine.WriteMmio(baseAddress + offset, 4, value);
}

/// <summary>
/// An igb-style queue driver (one TX and one RX ring of advanced descriptors, 2 KiB buffers),
/// NAPI-like: a batch of frames per tail write, received frames reaped in one poll that moves RDT
/// once and re-enables the vector once. The same code drives the PF (direct assignment, the
/// host's driver), a VF (SR-IOV) and the VMM's emulated NIC (emulation); only where its register
/// accesses and DMA land differs. <c>memory</c> is the ring owner's memory view.
/// </summary>
internal sealed class RingDriver(INicRegisters regs, RingMemory memory, bool readsCause, int ring = RingDriver.DefaultRing) : IGuestDriver
{
    /// <summary>Descriptors per ring: the guests' default, and the most the layout holds.</summary>
    public const int DefaultRing = 256, MaxRing = 512, BufferSize = 2048;
    public const ulong TxRing = 0x0000, RxRing = 0x2000, TxBuffers = 0x1_0000, RxBuffers = 0x20_0000;
    private readonly uint _ring = ring is >= 8 and <= MaxRing ? (uint)ring : throw new ArgumentOutOfRangeException(nameof(ring));
    private uint _txTail, _rxNext, _rxTail;

    /// <summary>Rings, queue enables and the receive buffers; the interrupt wiring is the caller's
    /// (it differs between PF, VF and the emulated NIC).</summary>
    public void Setup()
    {
        regs.Write(TxLegacy + Tdbal, (uint)memory.Dma(TxRing)); regs.Write(TxLegacy + Tdbah, (uint)(memory.Dma(TxRing) >> 32));
        regs.Write(TxLegacy + Tdlen, _ring * 16);
        regs.Write(TxLegacy + Txdctl, QueueEnable);
        regs.Write(RxLegacy + Rdbal, (uint)memory.Dma(RxRing)); regs.Write(RxLegacy + Rdbah, (uint)(memory.Dma(RxRing) >> 32));
        regs.Write(RxLegacy + Rdlen, _ring * 16);
        regs.Write(RxLegacy + Srrctl, BufferSize / 1024 | 1u << 25);   // 2 KiB buffers, advanced one-buffer descriptors
        regs.Write(RxLegacy + Rxdctl, QueueEnable);
        for (uint i = 0; i < _ring; i++) Arm(i);
        _rxTail = _ring - 1;
        regs.Write(RxLegacy + Rdt, _rxTail);
    }

    /// <summary>Builds a frame in TX buffer slot and its descriptor (no register access).</summary>
    public Span<byte> Queue(int length)
    {
        uint slot = _txTail;
        ulong buf = TxBuffers + slot * (ulong)BufferSize;
        var d = memory.Cpu(TxRing + slot * 16UL, 16);
        BinaryPrimitives.WriteUInt64LittleEndian(d, memory.Dma(buf));
        BinaryPrimitives.WriteUInt32LittleEndian(d[8..], (uint)length | 0x2B30_0000u);   // advanced data: DEXT|RS|IFCS|EOP
        BinaryPrimitives.WriteUInt32LittleEndian(d[12..], (uint)length << 14);            // PAYLEN
        _txTail = (_txTail + 1) % _ring;
        return memory.Cpu(buf, length);
    }

    /// <summary>One TDT write hands every queued frame to the NIC.</summary>
    public void Flush() => regs.Write(TxLegacy + Tdt, _txTail);

    /// <summary>Reaps received frames (DD set); re-arms them, moves RDT once and re-enables vector 0
    /// (reading the cause register first when the NIC needs it).</summary>
    public int Poll() => Poll(null);

    /// <summary><see cref="Poll()"/>, passing each frame to <paramref name="deliver"/>.</summary>
    public int Poll(Action<ReadOnlySpan<byte>>? deliver)
    {
        int n = 0;
        while (true)
        {
            var d = memory.Cpu(RxRing + _rxNext * 16UL, 16);
            uint status = BinaryPrimitives.ReadUInt32LittleEndian(d[8..]);
            if ((status & 1) == 0) break;
            int len = BinaryPrimitives.ReadUInt16LittleEndian(d[12..]);
            deliver?.Invoke(memory.Cpu(RxBuffers + _rxNext * (ulong)BufferSize, len));
            Arm(_rxNext);
            _rxNext = (_rxNext + 1) % _ring;
            n++;
        }
        if (n == 0) return 0;
        _rxTail = (_rxNext + _ring - 1) % _ring;
        regs.Write(RxLegacy + Rdt, _rxTail);
        if (readsCause) regs.Read(Eicr);
        regs.Write(Eims, 1);
        return n;
    }

    private void Arm(uint i)
    {
        var d = memory.Cpu(RxRing + i * 16UL, 16);
        BinaryPrimitives.WriteUInt64LittleEndian(d, memory.Dma(RxBuffers + i * (ulong)BufferSize));
        BinaryPrimitives.WriteUInt64LittleEndian(d[8..], 0);
    }
}

/// <summary>A driver's memory: the CPU's view of an offset and the address its device DMAs to.</summary>
internal sealed class RingMemory(Func<ulong, int, Span<byte>> cpu, Func<ulong, ulong> dma)
{
    public Span<byte> Cpu(ulong offset, int length) => cpu(offset, length);
    public ulong Dma(ulong offset) => dma(offset);

    /// <summary>A guest's RAM: offsets are guest-physical and so are DMA addresses (VT-d maps them).</summary>
    public static RingMemory OfGuest(Guest g) => new(g.Memory, static o => o);

    /// <summary>The host's region: identity-mapped.</summary>
    public static RingMemory OfHost(Machine m) => new((o, n) => m.Ram.GetSpan(Vmm.HostRegionBase + o, n), static o => Vmm.HostRegionBase + o);
}
