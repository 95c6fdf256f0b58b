using System.Buffers.Binary;
using PcieEmu.Core.AddressSpace;
using PcieEmu.Core.Iommu;
using PcieEmu.Core.Memory;
using PcieEmu.Core.Topology;

namespace PcieEmu.Core.Devices;

/// <summary>What the DMA test engine does when started.</summary>
public enum DmaTestOp
{
    /// <summary>Nothing.</summary>
    None = 0,
    /// <summary>DMA read: memory at SRC → the engine's buffer.</summary>
    Read = 1,
    /// <summary>DMA write: the engine's buffer → memory at DST.</summary>
    Write = 2,
    /// <summary>DMA read from SRC into the buffer, then DMA write of the buffer to DST.</summary>
    Copy = 3,
}

/// <summary>
/// A tiny documented DMA engine that lets tests (and, once wired, remote clients) make a
/// function issue DMA without a NIC. It is a register block (<see cref="IMmioRegion"/>) that
/// can sit in an otherwise unused BAR of a function, or be driven directly. Every transfer goes
/// through the function's <see cref="DmaPort"/>: Bus Master Enable, the remapping unit, fault
/// recording, page splitting. It never touches RAM any other way.
/// <para>Registers (offsets in the block; 4- or 8-byte accesses, the buffer any width):</para>
/// <list type="table">
/// <item><term>0x00 SRC (64, RW)</term><description>device address read by Read/Copy.</description></item>
/// <item><term>0x08 DST (64, RW)</term><description>device address written by Write/Copy.</description></item>
/// <item><term>0x10 LEN (32, RW)</term><description>bytes to move, 0 to <see cref="BufferSize"/> (larger values are clamped).</description></item>
/// <item><term>0x14 CMD (32)</term><description>a write starts an operation: 1:0 op (<see cref="DmaTestOp"/>), 8 AT: issue
/// the requests as ATS-translated requests. Reads back the last command.</description></item>
/// <item><term>0x18 STATUS (32, RO)</term><description>31 DONE, 15:8 VT-d fault reason, 2:0 <see cref="DmaStatus"/> of the last operation.</description></item>
/// <item><term>0x1C BYTES (32, RO)</term><description>bytes the last operation moved (for Copy: bytes written).</description></item>
/// <item><term>0x20 FAULTADDR (64, RO)</term><description>device address where the last operation stopped.</description></item>
/// <item><term>0x28 OPS (32, RO)</term><description>operations completed.</description></item>
/// <item><term>0x1000 + n</term><description>the data buffer (<see cref="BufferSize"/> bytes, RW).</description></item>
/// </list>
/// </summary>
public sealed class DmaTestEngine : IMmioRegion
{
    /// <summary>Register offsets.</summary>
    public const int RegSrc = 0x00, RegDst = 0x08, RegLen = 0x10, RegCmd = 0x14, RegStatus = 0x18, RegBytes = 0x1C, RegFaultAddr = 0x20, RegOps = 0x28;
    /// <summary>Offset of the data buffer.</summary>
    public const int BufferOffset = 0x1000;
    /// <summary>Size of the data buffer.</summary>
    public const int BufferSize = 64 * 1024;
    /// <summary>CMD bit: issue ATS-translated requests (AT = 10b).</summary>
    public const uint CmdTranslated = 1u << 8;
    /// <summary>STATUS bit: an operation has completed.</summary>
    public const uint StatusDone = 1u << 31;

    private readonly PciFunction _function;
    private readonly byte[] _buffer = new byte[BufferSize];
    private ulong _src, _dst, _faultAddr;
    private uint _len, _cmd, _status, _bytes, _ops;

    /// <summary>Creates an engine that DMAs as <paramref name="function"/>.</summary>
    public DmaTestEngine(PciFunction function)
    {
        ArgumentNullException.ThrowIfNull(function);
        _function = function;
    }

    /// <summary>The function whose DMA port the engine uses.</summary>
    public PciFunction Function => _function;
    /// <summary>The data buffer.</summary>
    public Span<byte> Buffer => _buffer;
    /// <summary>Result of the last operation.</summary>
    public DmaResult LastResult { get; private set; }

    /// <summary>Runs one operation (the CMD register does the same). Call with the machine lock
    /// held, as the MMIO path does.</summary>
    public DmaResult Run(DmaTestOp op, ulong src, ulong dst, int length, bool translatedRequest = false)
    {
        if ((uint)length > BufferSize) throw new ArgumentOutOfRangeException(nameof(length), $"length must be 0-{BufferSize} (was {length})");
        var buf = _buffer.AsSpan(0, length);
        DmaResult r = op switch
        {
            DmaTestOp.Read => Transfer(src, buf, write: false, translatedRequest),
            DmaTestOp.Write => Transfer(dst, buf, write: true, translatedRequest),
            DmaTestOp.Copy => Transfer(src, buf, write: false, translatedRequest) is { Ok: true }
                ? Transfer(dst, buf, write: true, translatedRequest)
                : LastResult,
            _ => throw new ArgumentOutOfRangeException(nameof(op), $"unknown operation {op}"),
        };
        LastResult = r;
        _status = StatusDone | (uint)r.FaultReason << 8 | (uint)r.Status;
        _bytes = (uint)r.BytesMoved;
        _faultAddr = r.Ok ? 0 : r.FaultAddress;
        _ops++;
        return r;
    }

    private DmaResult Transfer(ulong address, Span<byte> buf, bool write, bool translatedRequest)
    {
        if (translatedRequest)
        {
            // An ATS-translated request: the remapping unit decides whether it may pass at all
            // (this unit has no device-TLB support, so with translation on it never does).
            if (!_function.BusMasterEnabled) return LastResult = new DmaResult(DmaStatus.BusMasterDisabled, 0);
            if (_function.Machine.Remapper is VtdUnit vtd)
            {
                var t = vtd.TranslateRequest(_function.Rid, address, write, VtdAddressType.Translated);
                if (!t.Ok) return LastResult = new DmaResult(DmaStatus.TranslationFault, 0, t.FaultReason, address);
            }
        }
        return LastResult = write ? _function.Dma.Write(address, buf) : _function.Dma.Read(address, buf);
    }

    /// <inheritdoc/>
    public ulong Read(ulong offset, int width)
    {
        if (offset >= BufferOffset)
        {
            ulong o = offset - BufferOffset;
            if (o + (ulong)width > BufferSize) return 0;
            var s = _buffer.AsSpan((int)o, width);
            return width switch { 1 => s[0], 2 => BinaryPrimitives.ReadUInt16LittleEndian(s), 4 => BinaryPrimitives.ReadUInt32LittleEndian(s), _ => BinaryPrimitives.ReadUInt64LittleEndian(s) };
        }
        if (width < 4) return 0;
        ulong v = RegDword((int)offset);
        if (width == 8) v |= (ulong)RegDword((int)offset + 4) << 32;
        return v;
    }

    private uint RegDword(int off) => off switch
    {
        RegSrc => (uint)_src, RegSrc + 4 => (uint)(_src >> 32),
        RegDst => (uint)_dst, RegDst + 4 => (uint)(_dst >> 32),
        RegLen => _len, RegCmd => _cmd, RegStatus => _status, RegBytes => _bytes,
        RegFaultAddr => (uint)_faultAddr, RegFaultAddr + 4 => (uint)(_faultAddr >> 32),
        RegOps => _ops,
        _ => 0,
    };

    /// <inheritdoc/>
    public void Write(ulong offset, int width, ulong value)
    {
        if (offset >= BufferOffset)
        {
            ulong o = offset - BufferOffset;
            if (o + (ulong)width > BufferSize) return;
            for (int i = 0; i < width; i++) _buffer[(int)o + i] = (byte)(value >> (8 * i));
            return;
        }
        if (width < 4) return;
        WriteDword((int)offset, (uint)value);
        if (width == 8) WriteDword((int)offset + 4, (uint)(value >> 32));
    }

    private void WriteDword(int off, uint v)
    {
        switch (off)
        {
            case RegSrc: _src = (_src & ~0xFFFF_FFFFUL) | v; break;
            case RegSrc + 4: _src = (_src & 0xFFFF_FFFFUL) | (ulong)v << 32; break;
            case RegDst: _dst = (_dst & ~0xFFFF_FFFFUL) | v; break;
            case RegDst + 4: _dst = (_dst & 0xFFFF_FFFFUL) | (ulong)v << 32; break;
            case RegLen: _len = Math.Min(v, BufferSize); break;
            case RegCmd:
                _cmd = v & (CmdTranslated | 3);
                var op = (DmaTestOp)(v & 3);
                if (op != DmaTestOp.None) Run(op, _src, _dst, (int)_len, (v & CmdTranslated) != 0);
                break;
        }
    }
}
