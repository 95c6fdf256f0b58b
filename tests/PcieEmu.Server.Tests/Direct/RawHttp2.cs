using System.Buffers.Binary;
using System.Net.Sockets;
using Google.Protobuf;
using PcieEmu.Server.Direct;

namespace PcieEmu.Server.Tests.Direct;

/// <summary>A raw HTTP/2 peer over a Unix socket: writes any bytes, reads frames (every read times out, so a hang fails).</summary>
internal sealed class RawHttp2 : IDisposable
{
    private readonly Socket _socket;
    private readonly List<byte> _in = [];

    public RawHttp2(string socketPath)
    {
        _socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = 10_000, SendTimeout = 10_000 };
        _socket.Connect(new UnixDomainSocketEndPoint(socketPath));
    }

    public readonly record struct Frame(FrameType Type, byte Flags, int Stream, byte[] Payload)
    {
        public bool EndStream => (Flags & Http2.FlagEndStream) != 0;
        public uint ErrorCode => BinaryPrimitives.ReadUInt32BigEndian(Type == FrameType.GoAway ? Payload.AsSpan(4) : Payload);
    }

    /// <summary>Preface and an empty SETTINGS (optionally with settings), and reads the server's SETTINGS, WINDOW_UPDATE and ACK.</summary>
    public static RawHttp2 Open(string socketPath, params (ushort Id, uint Value)[] settings)
    {
        var h = new RawHttp2(socketPath);
        h.Send(Http2.Preface);
        h.SendSettings(settings);
        return h;
    }

    public void SendSettings(params (ushort Id, uint Value)[] settings)
    {
        var p = new byte[settings.Length * 6];
        for (int i = 0; i < settings.Length; i++)
        {
            BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(i * 6), settings[i].Id);
            BinaryPrimitives.WriteUInt32BigEndian(p.AsSpan(i * 6 + 2), settings[i].Value);
        }
        SendFrame(FrameType.Settings, 0, 0, p);
    }

    public void Send(ReadOnlySpan<byte> bytes)
    {
        while (bytes.Length > 0) bytes = bytes[_socket.Send(bytes)..];
    }

    public void SendFrame(FrameType type, byte flags, int stream, ReadOnlySpan<byte> payload, int? lengthField = null)
    {
        var header = new byte[Http2.FrameHeaderSize];
        Http2.WriteFrameHeader(header, lengthField ?? payload.Length, type, flags, stream);
        Send(header);
        Send(payload);
    }

    public static byte[] Block(params (string Name, string Value)[] fields)
    {
        var b = new List<byte>();
        foreach (var (n, v) in fields) HpackEncoder.WriteLiteral(b, n, v);
        return [.. b];
    }

    public static byte[] RequestBlock(string path, params (string Name, string Value)[] extra) =>
        Block([(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "localhost"), ("content-type", "application/grpc"), ("te", "trailers"), .. extra]);

    public static byte[] Message(IMessage m) => Message(m.ToByteArray());

    public static byte[] Message(byte[] body, byte flag = 0)
    {
        var b = new byte[5 + body.Length];
        b[0] = flag;
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(1), (uint)body.Length);
        body.CopyTo(b, 5);
        return b;
    }

    /// <summary>A unary request: HEADERS (END_HEADERS), DATA with the message (END_STREAM).</summary>
    public void Unary(int stream, string path, byte[] framedMessage, params (string Name, string Value)[] extra)
    {
        SendFrame(FrameType.Headers, Http2.FlagEndHeaders, stream, RequestBlock(path, extra));
        SendFrame(FrameType.Data, Http2.FlagEndStream, stream, framedMessage);
    }

    /// <summary>The next frame, or null when the server closed the connection.</summary>
    public Frame? Read()
    {
        if (!Fill(9)) return null;
        var h = _in.Take(9).ToArray();
        var (len, type, flags, stream) = Http2.ReadFrameHeader(h);
        if (!Fill(9 + len)) return null;
        var payload = _in.Skip(9).Take(len).ToArray();
        _in.RemoveRange(0, 9 + len);
        return new Frame(type, flags, stream, payload);
    }

    /// <summary>Frames up to and including the first that <paramref name="last"/> accepts (skipping connection housekeeping is the caller's business).</summary>
    public List<Frame> ReadUntil(Func<Frame, bool> last)
    {
        var frames = new List<Frame>();
        while (true)
        {
            var f = Read() ?? throw new InvalidOperationException("connection closed; got " + string.Join(", ", frames.Select(x => $"{x.Type}/{x.Stream}")));
            frames.Add(f);
            if (last(f)) return frames;
        }
    }

    /// <summary>Reads to the end of the connection: the GOAWAY it sent (if any) and whether it then closed.</summary>
    public Frame? ReadGoAwayAndClose()
    {
        Frame? goAway = null;
        while (Read() is { } f) if (f.Type == FrameType.GoAway) goAway = f;
        return goAway;
    }

    public static List<HeaderField> Headers(Frame f, HpackDecoder decoder)
    {
        var fields = new List<HeaderField>();
        decoder.Decode(Http2.Unpad(f.Payload, f.Flags, f.Type), fields);
        return fields;
    }

    private bool Fill(int n)
    {
        var buffer = new byte[65536];
        while (_in.Count < n)
        {
            int got = _socket.Receive(buffer);
            if (got == 0) return false;
            _in.AddRange(buffer.AsSpan(0, got));
        }
        return true;
    }

    public void Dispose() => _socket.Dispose();
}
