using System.Buffers.Binary;
using System.Text;

namespace PcieEmu.Server.Capture;

/// <summary>Direction of a packet as pcapng's epb_flags records it (bits 0-1).</summary>
public enum PacketDirection
{
    /// <summary>Not recorded (no epb_flags option).</summary>
    Unknown = 0,
    /// <summary>Inbound: from the wire into the port.</summary>
    Inbound = 1,
    /// <summary>Outbound: from the port onto the wire.</summary>
    Outbound = 2,
}

/// <summary>
/// Writes a pcapng stream (little-endian, one section): a Section Header Block at once, an
/// Interface Description Block per <see cref="AddInterface"/> (LINKTYPE_ETHERNET, nanosecond
/// timestamps), and an Enhanced Packet Block per <see cref="WritePacket"/> with the direction in
/// epb_flags, an opt_comment and, after a loss, epb_dropcount. Options are padded to 32 bits.
/// Writes go to the stream as whole blocks; <see cref="Flush"/> pushes them out. Not thread-safe.
/// Lives in the server because all of its users do (serve --pcap, pcie-emu capture); it needs
/// nothing but a <see cref="Stream"/>.
/// </summary>
public sealed class PcapNgWriter : IDisposable
{
    /// <summary>Block types.</summary>
    public const uint SectionHeaderType = 0x0A0D_0D0A, InterfaceDescriptionType = 1, EnhancedPacketType = 6;
    /// <summary>Byte-order magic of the section header.</summary>
    public const uint ByteOrderMagic = 0x1A2B_3C4D;
    /// <summary>LINKTYPE_ETHERNET.</summary>
    public const ushort LinkTypeEthernet = 1;
    /// <summary>Snapshot length of every interface (longer frames are cut to it).</summary>
    public const int SnapLength = 65535;

    // Option codes (pcapng: opt_endofopt, opt_comment; shb_userappl; if_name, if_description,
    // if_tsresol; epb_flags, epb_dropcount).
    private const ushort OptEnd = 0, OptComment = 1, ShbUserAppl = 4, IfName = 2, IfDescription = 3, IfTsResol = 9,
        EpbFlags = 2, EpbDropCount = 4;

    private readonly Stream _stream;
    private readonly bool _leaveOpen;
    private byte[] _block = new byte[256];
    private int _length;
    private int _interfaces;

    /// <summary>Starts a section on <paramref name="stream"/>: writes the Section Header Block now.</summary>
    /// <param name="stream">Writable stream (owned unless <paramref name="leaveOpen"/>).</param>
    /// <param name="application">shb_userappl text (null: none).</param>
    /// <param name="leaveOpen">Leave the stream open on dispose.</param>
    public PcapNgWriter(Stream stream, string? application = null, bool leaveOpen = false)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (!stream.CanWrite) throw new ArgumentException("stream must be writable", nameof(stream));
        _stream = stream;
        _leaveOpen = leaveOpen;
        Begin(SectionHeaderType);
        U32(ByteOrderMagic);
        U16(1);                 // major version
        U16(0);                 // minor version
        U64(ulong.MaxValue);    // section length: not given
        if (application != null) Option(ShbUserAppl, application);
        End();
    }

    /// <summary>Interfaces described so far.</summary>
    public int Interfaces => _interfaces;

    /// <summary>Packets written so far.</summary>
    public long Packets { get; private set; }

    /// <summary>Writes an Interface Description Block (Ethernet, ns timestamps) and returns its interface id.</summary>
    public int AddInterface(string name, string? description = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        Begin(InterfaceDescriptionType);
        U16(LinkTypeEthernet);
        U16(0);                 // reserved
        U32(SnapLength);
        Option(IfName, name);
        if (description != null) Option(IfDescription, description);
        Span<byte> res = [9];   // if_tsresol: 10^-9 s
        Option(IfTsResol, res);
        End();
        return _interfaces++;
    }

    /// <summary>Writes an Enhanced Packet Block.</summary>
    /// <param name="interfaceId">An id from <see cref="AddInterface"/>.</param>
    /// <param name="timestampUnixNs">Nanoseconds since the Unix epoch.</param>
    /// <param name="data">The frame (destination MAC first, no FCS).</param>
    /// <param name="direction">epb_flags direction (Unknown: no epb_flags).</param>
    /// <param name="comment">opt_comment (null: none).</param>
    /// <param name="dropped">Packets lost since the previous one (epb_dropcount when non-zero).</param>
    public void WritePacket(int interfaceId, long timestampUnixNs, ReadOnlySpan<byte> data, PacketDirection direction = PacketDirection.Unknown,
        string? comment = null, long dropped = 0)
    {
        if ((uint)interfaceId >= (uint)_interfaces) throw new ArgumentOutOfRangeException(nameof(interfaceId), $"interface {interfaceId} was not described (interfaces 0..{_interfaces - 1})");
        if (timestampUnixNs < 0) throw new ArgumentOutOfRangeException(nameof(timestampUnixNs), "timestamp must not be before 1970");
        if (dropped < 0) throw new ArgumentOutOfRangeException(nameof(dropped), "drop count must not be negative");
        int caplen = Math.Min(data.Length, SnapLength);
        Begin(EnhancedPacketType);
        U32((uint)interfaceId);
        U32((uint)((ulong)timestampUnixNs >> 32));
        U32((uint)timestampUnixNs);
        U32((uint)caplen);
        U32((uint)data.Length);
        Bytes(data[..caplen]);
        Pad();
        if (comment != null) Option(OptComment, comment);
        if (direction != PacketDirection.Unknown)
        {
            Span<byte> flags = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(flags, (uint)direction);
            Option(EpbFlags, flags);
        }
        if (dropped != 0)
        {
            Span<byte> count = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(count, (ulong)dropped);
            Option(EpbDropCount, count);
        }
        End();
        Packets++;
    }

    /// <summary>Flushes written blocks to the stream's device.</summary>
    public void Flush() => _stream.Flush();

    /// <inheritdoc/>
    public void Dispose()
    {
        try
        {
            _stream.Flush();
        }
        finally
        {
            if (!_leaveOpen) _stream.Dispose();
        }
    }

    // Block building: type, total length (patched), body, options, end of options, total length again.
    private void Begin(uint type)
    {
        _length = 0;
        U32(type);
        U32(0);
        _hasOptions = false;
    }

    private bool _hasOptions;

    private void End()
    {
        if (_hasOptions) { U16(OptEnd); U16(0); }
        int total = _length + 4;
        U32((uint)total);
        BinaryPrimitives.WriteUInt32LittleEndian(_block.AsSpan(4), (uint)total);
        _stream.Write(_block, 0, _length);
    }

    private void Option(ushort code, string text)
    {
        int n = Encoding.UTF8.GetByteCount(text);
        if (n > ushort.MaxValue) throw new ArgumentException($"option text is {n} bytes (at most {ushort.MaxValue})", nameof(text));
        Span<byte> buf = n <= 512 ? stackalloc byte[n] : new byte[n];
        Encoding.UTF8.GetBytes(text, buf);
        Option(code, buf);
    }

    private void Option(ushort code, ReadOnlySpan<byte> value)
    {
        _hasOptions = true;
        U16(code);
        U16((ushort)value.Length);
        Bytes(value);
        Pad();
    }

    private void Pad()
    {
        while ((_length & 3) != 0) Bytes([0]);
    }

    private Span<byte> Take(int n)
    {
        if (_length + n > _block.Length) Array.Resize(ref _block, Math.Max(_block.Length * 2, _length + n));
        var s = _block.AsSpan(_length, n);
        _length += n;
        return s;
    }

    private void U16(ushort v) => BinaryPrimitives.WriteUInt16LittleEndian(Take(2), v);
    private void U32(uint v) => BinaryPrimitives.WriteUInt32LittleEndian(Take(4), v);
    private void U64(ulong v) => BinaryPrimitives.WriteUInt64LittleEndian(Take(8), v);
    private void Bytes(ReadOnlySpan<byte> b) => b.CopyTo(Take(b.Length));
}
