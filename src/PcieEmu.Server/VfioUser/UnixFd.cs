using System.Runtime.InteropServices;

namespace PcieEmu.Server.VfioUser;

/// <summary>
/// The few Linux calls .NET does not offer: sendmsg/recvmsg with SCM_RIGHTS (file descriptors
/// passed over a Unix socket), and what the descriptors are for (eventfd, memfd, mmap). Layouts
/// are those of LP64 Linux (x86_64, aarch64): <c>struct msghdr</c> is 56 bytes, a control message
/// header 16. Every call returns -1 with the errno from <see cref="Marshal.GetLastPInvokeError"/>
/// on failure; nothing here throws except for programming errors.
/// </summary>
internal static unsafe partial class UnixFd
{
    private const int SolSocket = 1, ScmRights = 1;
    /// <summary>recvmsg flag: received descriptors are close-on-exec.</summary>
    private const int MsgCmsgCloexec = 0x4000_0000;
    /// <summary>msg_flags bit: control data was truncated (descriptors were dropped by the kernel).</summary>
    public const int MsgCtrunc = 0x8;
    /// <summary>sendmsg flag: no SIGPIPE when the peer is gone.</summary>
    private const int MsgNosignal = 0x4000;
    /// <summary>errno values used by callers.</summary>
    public const int EINTR = 4, EAGAIN = 11;

    [StructLayout(LayoutKind.Sequential)]
    private struct IoVec
    {
        public void* Base;
        public nuint Length;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct MsgHdr
    {
        public void* Name;
        public uint NameLength;
        public IoVec* Iov;
        public nuint IovLength;
        public void* Control;
        public nuint ControlLength;
        public int Flags;
    }

    private const int CmsgHeader = 16;
    private static int CmsgSpace(int fds) => CmsgHeader + ((fds * 4 + 7) & ~7);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint sendmsg(int fd, MsgHdr* msg, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint recvmsg(int fd, MsgHdr* msg, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint write(int fd, void* buf, nuint count);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint read(int fd, void* buf, nuint count);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int close_(int fd);

    [LibraryImport("libc", EntryPoint = "eventfd", SetLastError = true)]
    private static partial int eventfd_(uint initval, int flags);

    [LibraryImport("libc", EntryPoint = "memfd_create", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int memfd_create_(string name, uint flags);

    [LibraryImport("libc", EntryPoint = "ftruncate", SetLastError = true)]
    private static partial int ftruncate_(int fd, long length);

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    private static partial nint mmap_(nint addr, nuint length, int prot, int flags, int fd, long offset);

    [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
    private static partial int munmap_(nint addr, nuint length);

    /// <summary>Sends <paramref name="data"/> with <paramref name="fds"/> attached (SCM_RIGHTS) in one call;
    /// loops over partial sends (descriptors go with the first piece). Returns false with errno on failure.</summary>
    public static bool SendAll(int socket, ReadOnlySpan<byte> data, ReadOnlySpan<int> fds, out int errno)
    {
        errno = 0;
        int space = fds.Length > 0 ? CmsgSpace(fds.Length) : 0;
        byte* control = stackalloc byte[Math.Max(space, 1)];
        fixed (byte* p = data)
        {
            int sent = 0;
            while (sent < data.Length || (sent == 0 && data.Length == 0))
            {
                var iov = new IoVec { Base = p + sent, Length = (nuint)(data.Length - sent) };
                var msg = new MsgHdr { Iov = &iov, IovLength = 1 };
                if (sent == 0 && fds.Length > 0)
                {
                    new Span<byte>(control, space).Clear();
                    *(nuint*)control = (nuint)(CmsgHeader + fds.Length * 4);
                    *(int*)(control + 8) = SolSocket;
                    *(int*)(control + 12) = ScmRights;
                    fds.CopyTo(new Span<int>(control + CmsgHeader, fds.Length));
                    msg.Control = control;
                    msg.ControlLength = (nuint)space;
                }
                nint n = sendmsg(socket, &msg, MsgNosignal);
                if (n < 0)
                {
                    errno = Marshal.GetLastPInvokeError();
                    if (errno == EINTR) continue;
                    if (errno == EAGAIN) { Wait(socket, 4 /* POLLOUT */); continue; }
                    return false;
                }
                sent += (int)n;
                if (data.Length == 0) break;
            }
        }
        return true;
    }

    /// <summary>
    /// Receives up to <paramref name="buffer"/>.Length bytes (blocking), collecting descriptors that
    /// arrive with them into <paramref name="fds"/> (which receives at most its capacity; more are
    /// closed and reported through <paramref name="truncated"/>). Returns bytes read (0 = peer closed),
    /// or -1 with errno.
    /// </summary>
    public static int Receive(int socket, Span<byte> buffer, List<int> fds, int maxFds, out bool truncated, out int errno)
    {
        truncated = false;
        errno = 0;
        int space = CmsgSpace(maxFds + 1);
        byte* control = stackalloc byte[space];
        fixed (byte* p = buffer)
        {
            while (true)
            {
                var iov = new IoVec { Base = p, Length = (nuint)buffer.Length };
                var msg = new MsgHdr { Iov = &iov, IovLength = 1, Control = control, ControlLength = (nuint)space };
                nint n = recvmsg(socket, &msg, MsgCmsgCloexec);
                if (n < 0)
                {
                    errno = Marshal.GetLastPInvokeError();
                    if (errno == EINTR) continue;
                    return -1;
                }
                if ((msg.Flags & MsgCtrunc) != 0) truncated = true;
                // Walk the control messages (only SCM_RIGHTS is expected on a Unix stream socket).
                nuint off = 0;
                while (off + CmsgHeader <= msg.ControlLength)
                {
                    nuint len = *(nuint*)(control + off);
                    if (len < CmsgHeader || off + len > msg.ControlLength) break;
                    int level = *(int*)(control + off + 8), type = *(int*)(control + off + 12);
                    if (level == SolSocket && type == ScmRights)
                    {
                        int count = (int)(len - CmsgHeader) / 4;
                        for (int i = 0; i < count; i++)
                        {
                            int fd = *(int*)(control + off + CmsgHeader + 4 * (nuint)i);
                            if (fds.Count < maxFds) fds.Add(fd);
                            else { Close(fd); truncated = true; }
                        }
                    }
                    off += (len + 7) & ~(nuint)7;
                }
                return (int)n;
            }
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int poll(PollFd* fds, nuint count, int timeout);

    /// <summary>Waits until <paramref name="fd"/> is readable (or hung up), for a socket that turned out non-blocking.</summary>
    public static void WaitReadable(int fd) => Wait(fd, 1 /* POLLIN */);

    private static void Wait(int fd, short events)
    {
        var p = new PollFd { Fd = fd, Events = events };
        poll(&p, 1, -1);
    }

    /// <summary>Closes a descriptor (errors ignored: nothing useful can be done about them).</summary>
    public static void Close(int fd)
    {
        if (fd >= 0) close_(fd);
    }

    /// <summary>Adds 1 to an eventfd's counter (signals it). Returns false with errno on failure.</summary>
    public static bool SignalEventFd(int fd, out int errno)
    {
        ulong one = 1;
        errno = 0;
        while (write(fd, &one, 8) != 8)
        {
            errno = Marshal.GetLastPInvokeError();
            if (errno != EINTR) return false;
        }
        return true;
    }

    /// <summary>Reads an eventfd's counter (resets it); blocks unless the eventfd is non-blocking.
    /// Returns the counter, or -1 with errno (EAGAIN when a non-blocking eventfd is zero).</summary>
    public static long ReadEventFd(int fd, out int errno)
    {
        ulong v = 0;
        errno = 0;
        while (read(fd, &v, 8) != 8)
        {
            errno = Marshal.GetLastPInvokeError();
            if (errno != EINTR) return -1;
        }
        return (long)v;
    }

    /// <summary>Creates an eventfd (non-blocking when asked). Returns the fd or -1.</summary>
    public static int CreateEventFd(bool nonBlocking) => eventfd_(0, 0x80000 /* EFD_CLOEXEC */ | (nonBlocking ? 0x800 /* EFD_NONBLOCK */ : 0));

    /// <summary>Creates an anonymous memory file of <paramref name="size"/> bytes. Returns the fd or -1.</summary>
    public static int CreateMemFd(string name, long size)
    {
        int fd = memfd_create_(name, 1 /* MFD_CLOEXEC */);
        if (fd < 0) return -1;
        if (ftruncate_(fd, size) != 0) { Close(fd); return -1; }
        return fd;
    }

    /// <summary>Maps <paramref name="length"/> bytes of <paramref name="fd"/> at <paramref name="offset"/> shared,
    /// readable and (when <paramref name="writable"/>) writable. Returns the address or 0 with errno.</summary>
    public static nint MapShared(int fd, ulong length, long offset, bool writable, out int errno)
    {
        errno = 0;
        const int ProtRead = 1, ProtWrite = 2, MapSharedFlag = 1;
        nint a = mmap_(0, (nuint)length, ProtRead | (writable ? ProtWrite : 0), MapSharedFlag, fd, offset);
        if (a == -1) { errno = Marshal.GetLastPInvokeError(); return 0; }
        return a;
    }

    /// <summary>Unmaps a mapping made by <see cref="MapShared"/>.</summary>
    public static void Unmap(nint address, ulong length)
    {
        if (address != 0) munmap_(address, (nuint)length);
    }
}
