using System.Buffers.Binary;
using System.Net.Sockets;
using PcieEmu.Server.VfioUser;

namespace PcieEmu.Server.Tests.VfioUser;

/// <summary>A reply as the test client decoded it (layouts written out here, not taken from the server).</summary>
internal sealed record Reply(ushort Id, ushort Command, uint Size, uint Flags, uint Error, byte[] Payload, int[] Fds)
{
    public bool IsError => (Flags & 0x20) != 0;
    public uint U32(int at) => BinaryPrimitives.ReadUInt32LittleEndian(Payload.AsSpan(at));
    public ulong U64(int at) => BinaryPrimitives.ReadUInt64LittleEndian(Payload.AsSpan(at));
}

/// <summary>
/// A vfio-user client for tests: builds every message byte by byte from the protocol's layouts
/// (header: id u16, command u16, size u32, flags u32, error u32) and talks to the real server over
/// the real socket, passing descriptors with SCM_RIGHTS. Every receive has a timeout.
/// </summary>
internal sealed class VfioUserTestClient : IDisposable
{
    public const ushort VersionCmd = 1, DmaMap = 2, DmaUnmap = 3, DeviceGetInfo = 4, GetRegionInfo = 5, GetIrqInfo = 7, SetIrqs = 8,
        RegionRead = 9, RegionWrite = 10, DeviceReset = 13;
    public const uint Config = 7;

    private readonly Socket _socket;
    private readonly int _fd;
    private ushort _nextId = 1;

    private VfioUserTestClient(Socket socket)
    {
        _socket = socket;
        _fd = (int)socket.SafeHandle.DangerousGetHandle();
    }

    public static async Task<VfioUserTestClient> ConnectAsync(string path)
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await s.ConnectAsync(new UnixDomainSocketEndPoint(path)).W();
        s.Blocking = true;
        return new VfioUserTestClient(s);
    }

    public static byte[] Header(ushort id, ushort command, uint size, uint flags = 0, uint error = 0)
    {
        var h = new byte[16];
        BinaryPrimitives.WriteUInt16LittleEndian(h, id);
        BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(2), command);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(4), size);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(8), flags);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(12), error);
        return h;
    }

    /// <summary>Sends raw bytes (a whole or broken message) with optional descriptors.</summary>
    public void SendRaw(ReadOnlySpan<byte> bytes, params int[] fds) =>
        Assert.True(UnixFd.SendAll(_fd, bytes, fds, out int e), $"sendmsg failed: errno {e}");

    /// <summary>Sends a request; returns its id.</summary>
    public ushort Send(ushort command, ReadOnlySpan<byte> payload, uint flags = 0, params int[] fds)
    {
        ushort id = _nextId++;
        var msg = new byte[16 + payload.Length];
        Header(id, command, (uint)msg.Length, flags).CopyTo(msg, 0);
        payload.CopyTo(msg.AsSpan(16));
        SendRaw(msg, fds);
        return id;
    }

    /// <summary>Receives one message (timeout: fails the test).</summary>
    public Reply Receive(TimeSpan? timeout = null)
    {
        Assert.True(Readable(timeout ?? T.Timeout), "no reply from the server within the timeout");
        var fds = new List<int>();
        var h = new byte[16];
        ReadExact(h, fds);
        uint size = BinaryPrimitives.ReadUInt32LittleEndian(h.AsSpan(4));
        var payload = new byte[size - 16];
        ReadExact(payload, fds);
        return new Reply(BinaryPrimitives.ReadUInt16LittleEndian(h), BinaryPrimitives.ReadUInt16LittleEndian(h.AsSpan(2)), size,
            BinaryPrimitives.ReadUInt32LittleEndian(h.AsSpan(8)), BinaryPrimitives.ReadUInt32LittleEndian(h.AsSpan(12)), payload, [.. fds]);
    }

    /// <summary>True when something arrives within <paramref name="timeout"/>.</summary>
    public bool Readable(TimeSpan timeout) => _socket.Poll(timeout, SelectMode.SelectRead);

    private void ReadExact(Span<byte> buffer, List<int> fds)
    {
        int done = 0;
        while (done < buffer.Length)
        {
            int n = UnixFd.Receive(_fd, buffer[done..], fds, 16, out _, out int e);
            if (n < 0 && e == UnixFd.EAGAIN) { UnixFd.WaitReadable(_fd); continue; }
            Assert.True(n > 0, $"connection closed or failed (n={n}, errno {e})");
            done += n;
        }
    }

    /// <summary>Sends a request and returns its reply, checking id, command and reply type.</summary>
    public Reply Request(ushort command, ReadOnlySpan<byte> payload, params int[] fds)
    {
        ushort id = Send(command, payload, 0, fds);
        var r = Receive();
        Assert.Equal(id, r.Id);
        Assert.Equal(command, r.Command);
        Assert.Equal(1u, r.Flags & 0xF);
        Assert.Empty(r.Fds);
        return r;
    }

    public Reply Ok(ushort command, ReadOnlySpan<byte> payload, params int[] fds)
    {
        var r = Request(command, payload, fds);
        Assert.False(r.IsError, $"command {command} failed with errno {r.Error}");
        return r;
    }

    // ---- message builders

    public static byte[] U32s(params uint[] values)
    {
        var b = new byte[4 * values.Length];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4 * i), values[i]);
        return b;
    }

    public static byte[] RegionAccess(uint region, ulong offset, uint count, ReadOnlySpan<byte> data = default)
    {
        var b = new byte[16 + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(b, offset);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(8), region);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(12), count);
        data.CopyTo(b.AsSpan(16));
        return b;
    }

    public byte[] Read(uint region, ulong offset, uint count)
    {
        var r = Ok(RegionRead, RegionAccess(region, offset, count));
        Assert.Equal(16 + (int)count, r.Payload.Length);
        return r.Payload[16..];
    }

    public uint Read32(uint region, ulong offset) => BinaryPrimitives.ReadUInt32LittleEndian(Read(region, offset, 4));

    public void Write(uint region, ulong offset, ReadOnlySpan<byte> data)
    {
        var r = Ok(RegionWrite, RegionAccess(region, offset, (uint)data.Length, data));
        Assert.Equal(16, r.Payload.Length);
    }

    public void Write32(uint region, ulong offset, uint value) => Write(region, offset, U32s(value));

    public void Write16(uint region, ulong offset, ushort value)
    {
        var b = new byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(b, value);
        Write(region, offset, b);
    }

    public static byte[] DmaMapPayload(uint flags, ulong offset, ulong iova, ulong size)
    {
        var b = new byte[32];
        BinaryPrimitives.WriteUInt32LittleEndian(b, 32);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(8), offset);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(16), iova);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(24), size);
        return b;
    }

    public static byte[] DmaUnmapPayload(uint flags, ulong iova, ulong size)
    {
        var b = new byte[24];
        BinaryPrimitives.WriteUInt32LittleEndian(b, 24);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(8), iova);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(16), size);
        return b;
    }

    public static byte[] VersionPayload(string json = "{\"capabilities\":{\"max_msg_fds\":16,\"write_multiple\":true}}")
    {
        var j = System.Text.Encoding.UTF8.GetBytes(json);
        var b = new byte[4 + j.Length + 1];
        j.CopyTo(b, 4);
        return b;
    }

    public void Dispose() => _socket.Dispose();
}

/// <summary>An eventfd or memfd the test owns (closed on dispose).</summary>
internal sealed class OwnedFd(int fd) : IDisposable
{
    public int Fd { get; } = fd >= 0 ? fd : throw new InvalidOperationException("could not create the descriptor");
    public static OwnedFd EventFd() => new(UnixFd.CreateEventFd(nonBlocking: true));

    /// <summary>Waits until the eventfd's counter is non-zero and returns it (reset), or 0 after the timeout.</summary>
    public long WaitSignalled(TimeSpan timeout)
    {
        var until = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < until)
        {
            long v = UnixFd.ReadEventFd(Fd, out _);
            if (v > 0) return v;
            Thread.Sleep(5);
        }
        return 0;
    }

    public void Dispose() => UnixFd.Close(Fd);
}
