using System.Buffers.Binary;

namespace PcieEmu.Server.Direct;

/// <summary>HTTP/2 frame types (RFC 9113 section 6).</summary>
internal enum FrameType : byte
{
    Data = 0x0,
    Headers = 0x1,
    Priority = 0x2,
    RstStream = 0x3,
    Settings = 0x4,
    PushPromise = 0x5,
    Ping = 0x6,
    GoAway = 0x7,
    WindowUpdate = 0x8,
    Continuation = 0x9,
}

/// <summary>HTTP/2 error codes (RFC 9113 section 7).</summary>
internal enum Http2Error : uint
{
    NoError = 0x0,
    ProtocolError = 0x1,
    InternalError = 0x2,
    FlowControlError = 0x3,
    SettingsTimeout = 0x4,
    StreamClosed = 0x5,
    FrameSizeError = 0x6,
    RefusedStream = 0x7,
    Cancel = 0x8,
    CompressionError = 0x9,
    ConnectError = 0xa,
    EnhanceYourCalm = 0xb,
    InadequateSecurity = 0xc,
    Http11Required = 0xd,
}

/// <summary>A connection error (RFC 9113 section 5.4.1): GOAWAY with <see cref="Code"/>, then the connection closes.</summary>
internal sealed class Http2ConnectionException(Http2Error code, string message) : Exception(message)
{
    /// <summary>The GOAWAY error code.</summary>
    public Http2Error Code { get; } = code;
}

/// <summary>Frame layout facts and helpers (RFC 9113 sections 3.4, 4.1, 6).</summary>
internal static class Http2
{
    /// <summary>The 24-octet client connection preface.</summary>
    public static ReadOnlySpan<byte> Preface => "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8;

    /// <summary>Frame header size.</summary>
    public const int FrameHeaderSize = 9;
    /// <summary>SETTINGS_MAX_FRAME_SIZE's initial value: the largest payload either side may send until told otherwise (this side never raises it).</summary>
    public const int DefaultMaxFrameSize = 16384;
    /// <summary>Largest allowed SETTINGS_MAX_FRAME_SIZE.</summary>
    public const int MaxAllowedFrameSize = (1 << 24) - 1;
    /// <summary>Initial flow-control window of a connection and (by default) of a stream.</summary>
    public const int DefaultWindow = 65535;
    /// <summary>Largest flow-control window.</summary>
    public const int MaxWindow = int.MaxValue;

    /// <summary>END_STREAM (DATA, HEADERS).</summary>
    public const byte FlagEndStream = 0x1;
    /// <summary>ACK (SETTINGS, PING).</summary>
    public const byte FlagAck = 0x1;
    /// <summary>END_HEADERS (HEADERS, CONTINUATION).</summary>
    public const byte FlagEndHeaders = 0x4;
    /// <summary>PADDED (DATA, HEADERS).</summary>
    public const byte FlagPadded = 0x8;
    /// <summary>PRIORITY (HEADERS).</summary>
    public const byte FlagPriority = 0x20;

    /// <summary>SETTINGS identifiers (section 6.5.2).</summary>
    public const ushort SettingsHeaderTableSize = 0x1, SettingsEnablePush = 0x2, SettingsMaxConcurrentStreams = 0x3,
        SettingsInitialWindowSize = 0x4, SettingsMaxFrameSize = 0x5, SettingsMaxHeaderListSize = 0x6;

    /// <summary>Writes a 9-octet frame header.</summary>
    /// <summary>A GOAWAY payload: last stream id, error code, and <paramref name="debug"/> as ASCII debug data (at most 256 bytes).</summary>
    public static byte[] GoAwayPayload(int lastStreamId, Http2Error code, string debug)
    {
        var payload = new byte[8 + Math.Min(debug.Length, 256)];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(payload, lastStreamId);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(payload.AsSpan(4), (uint)code);
        System.Text.Encoding.ASCII.GetBytes(debug.AsSpan(0, payload.Length - 8), payload.AsSpan(8));
        return payload;
    }

    public static void WriteFrameHeader(Span<byte> destination, int length, FrameType type, byte flags, int streamId)
    {
        destination[0] = (byte)(length >> 16);
        destination[1] = (byte)(length >> 8);
        destination[2] = (byte)length;
        destination[3] = (byte)type;
        destination[4] = flags;
        BinaryPrimitives.WriteInt32BigEndian(destination[5..], streamId & int.MaxValue);
    }

    /// <summary>Reads a frame header: payload length, type, flags, stream id (the reserved bit ignored).</summary>
    public static (int Length, FrameType Type, byte Flags, int StreamId) ReadFrameHeader(ReadOnlySpan<byte> source) =>
        ((source[0] << 16) | (source[1] << 8) | source[2], (FrameType)source[3], source[4],
         BinaryPrimitives.ReadInt32BigEndian(source[5..]) & int.MaxValue);

    /// <summary>Strips padding (section 6.1): the payload without the pad-length octet and the padding.</summary>
    public static ReadOnlySpan<byte> Unpad(ReadOnlySpan<byte> payload, byte flags, FrameType type)
    {
        if ((flags & FlagPadded) == 0) return payload;
        if (payload.Length < 1) throw new Http2ConnectionException(Http2Error.FrameSizeError, $"{type} frame: PADDED with no pad length");
        int pad = payload[0];
        if (pad >= payload.Length) throw new Http2ConnectionException(Http2Error.ProtocolError, $"{type} frame: padding ({pad}) not smaller than the payload ({payload.Length})");
        return payload[1..^pad];
    }
}
