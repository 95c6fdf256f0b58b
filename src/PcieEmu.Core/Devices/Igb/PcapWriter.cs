using System.Buffers.Binary;

namespace PcieEmu.Core.Devices.Igb;

/// <summary>
/// Writes frames in the classic pcap file format (little-endian, magic 0xA1B2C3D4, version 2.4,
/// microsecond timestamps, snap length 65535, LINKTYPE_ETHERNET = 1), which Wireshark and tshark
/// open. Each record: seconds, microseconds, captured length, original length, then the bytes.
/// Not thread-safe: give each port its own writer, or serialise calls.
/// </summary>
public sealed class PcapWriter : IDisposable
{
    /// <summary>Classic pcap magic (microsecond resolution).</summary>
    public const uint Magic = 0xA1B2_C3D4;
    /// <summary>Snapshot length written in the header; longer frames are truncated to it.</summary>
    public const int SnapLength = 65535;
    /// <summary>LINKTYPE_ETHERNET.</summary>
    public const uint LinkTypeEthernet = 1;
    /// <summary>Size of the global header and of a record header.</summary>
    public const int FileHeaderSize = 24, RecordHeaderSize = 16;

    private readonly Stream _stream;
    private readonly bool _leaveOpen;
    private readonly byte[] _header = new byte[RecordHeaderSize];

    /// <summary>Starts a capture on <paramref name="stream"/> (writes the global header now).</summary>
    public PcapWriter(Stream stream, bool leaveOpen = false)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (!stream.CanWrite) throw new ArgumentException("stream must be writable", nameof(stream));
        _stream = stream;
        _leaveOpen = leaveOpen;
        Span<byte> h = stackalloc byte[FileHeaderSize];
        BinaryPrimitives.WriteUInt32LittleEndian(h, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(h[4..], 2);      // version major
        BinaryPrimitives.WriteUInt16LittleEndian(h[6..], 4);      // version minor
        BinaryPrimitives.WriteInt32LittleEndian(h[8..], 0);       // thiszone (GMT)
        BinaryPrimitives.WriteUInt32LittleEndian(h[12..], 0);     // sigfigs
        BinaryPrimitives.WriteUInt32LittleEndian(h[16..], SnapLength);
        BinaryPrimitives.WriteUInt32LittleEndian(h[20..], LinkTypeEthernet);
        _stream.Write(h);
    }

    /// <summary>Creates (or truncates) <paramref name="path"/> and starts a capture in it.</summary>
    public static PcapWriter Create(string path) =>
        new(new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read));

    /// <summary>Frames written so far.</summary>
    public long Frames { get; private set; }

    /// <summary>Appends one frame captured at <paramref name="timestampUnixNs"/> (ns since the Unix epoch).</summary>
    public void Write(ReadOnlySpan<byte> frame, long timestampUnixNs)
    {
        if (timestampUnixNs < 0) throw new ArgumentOutOfRangeException(nameof(timestampUnixNs), "timestamp must not be before 1970");
        int caplen = Math.Min(frame.Length, SnapLength);
        long us = timestampUnixNs / 1000;
        BinaryPrimitives.WriteUInt32LittleEndian(_header, (uint)(us / 1_000_000));
        BinaryPrimitives.WriteUInt32LittleEndian(_header.AsSpan(4), (uint)(us % 1_000_000));
        BinaryPrimitives.WriteUInt32LittleEndian(_header.AsSpan(8), (uint)caplen);
        BinaryPrimitives.WriteUInt32LittleEndian(_header.AsSpan(12), (uint)frame.Length);
        _stream.Write(_header);
        _stream.Write(frame[..caplen]);
        Frames++;
    }

    /// <summary>Appends a frame the port transmitted.</summary>
    public void Write(WireFrame frame)
    {
        ArgumentNullException.ThrowIfNull(frame);
        Write(frame.Data, frame.TimestampUnixNs);
    }

    /// <summary>Flushes buffered records to the stream.</summary>
    public void Flush() => _stream.Flush();

    /// <inheritdoc/>
    public void Dispose()
    {
        _stream.Flush();
        if (!_leaveOpen) _stream.Dispose();
    }
}
