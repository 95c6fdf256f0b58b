using System.Net.Sockets;
using PcieEmu.Server.VfioUser;

namespace PcieEmu.Server.Tests.VfioUser;

/// <summary>The sendmsg/recvmsg interop: descriptors really cross a Unix socket.</summary>
public class UnixFdTests
{
    private static (Socket A, Socket B, string Dir) Pair()
    {
        string dir = Directory.CreateTempSubdirectory("pcie-emu-fd-").FullName;
        string path = Path.Combine(dir, "s");
        using var l = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        l.Bind(new UnixDomainSocketEndPoint(path));
        l.Listen(1);
        var a = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        a.Connect(new UnixDomainSocketEndPoint(path));
        var b = l.Accept();
        return (a, b, dir);
    }

    [Fact]
    public void An_eventfd_sent_with_data_arrives_as_a_descriptor_of_the_same_eventfd()
    {
        var (a, b, dir) = Pair();
        using var _a = a;
        using var _b = b;
        using var ev = OwnedFd.EventFd();
        Assert.True(UnixFd.SendAll((int)a.SafeHandle.DangerousGetHandle(), "hello"u8, [ev.Fd, ev.Fd], out _));
        var fds = new List<int>();
        var buf = new byte[16];
        int n = UnixFd.Receive((int)b.SafeHandle.DangerousGetHandle(), buf, fds, 4, out bool truncated, out _);
        Assert.Equal(5, n);
        Assert.False(truncated);
        Assert.Equal(2, fds.Count);
        Assert.NotEqual(ev.Fd, fds[0]);
        Assert.True(UnixFd.SignalEventFd(fds[0], out _));
        Assert.True(UnixFd.SignalEventFd(fds[1], out _));
        Assert.Equal(2, UnixFd.ReadEventFd(ev.Fd, out _));
        foreach (int fd in fds) UnixFd.Close(fd);
        Directory.Delete(dir, true);
    }

    [Fact]
    public void Descriptors_beyond_the_limit_are_closed_and_reported()
    {
        var (a, b, dir) = Pair();
        using var _a = a;
        using var _b = b;
        using var ev = OwnedFd.EventFd();
        Assert.True(UnixFd.SendAll((int)a.SafeHandle.DangerousGetHandle(), "x"u8, [ev.Fd, ev.Fd, ev.Fd], out _));
        var fds = new List<int>();
        int n = UnixFd.Receive((int)b.SafeHandle.DangerousGetHandle(), new byte[4], fds, 1, out bool truncated, out _);
        Assert.Equal(1, n);
        Assert.True(truncated);
        Assert.Single(fds);
        UnixFd.Close(fds[0]);
        Directory.Delete(dir, true);
    }

    [Fact]
    public void A_memfd_mapped_twice_shares_its_bytes()
    {
        using var fd = new OwnedFd(UnixFd.CreateMemFd("t", 8192));
        nint a = UnixFd.MapShared(fd.Fd, 8192, 0, true, out _), b = UnixFd.MapShared(fd.Fd, 4096, 4096, false, out _);
        Assert.NotEqual(0, a);
        Assert.NotEqual(0, b);
        System.Runtime.InteropServices.Marshal.WriteInt32(a + 4096, 0x5EED);
        Assert.Equal(0x5EED, System.Runtime.InteropServices.Marshal.ReadInt32(b));
        UnixFd.Unmap(a, 8192);
        UnixFd.Unmap(b, 4096);
    }
}
