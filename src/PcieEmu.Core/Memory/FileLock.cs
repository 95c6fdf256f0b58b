using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace PcieEmu.Core.Memory;

/// <summary>
/// An exclusive whole-file lock held by an open file (Linux open-file-description lock,
/// <c>fcntl(F_OFD_SETLK)</c>): released when the file is closed or the process dies. It does not
/// conflict with the shared <c>flock</c> .NET takes when a client opens the file to map it, only
/// with another holder of this lock (a second server on the same RAM file).
/// </summary>
internal static partial class FileLock
{
    private const int F_OFD_GETLK = 36, F_OFD_SETLK = 37;
    private const short F_WRLCK = 1, F_UNLCK = 2;

    [StructLayout(LayoutKind.Sequential)]
    private struct Flock
    {
        public short Type;
        public short Whence;
        public long Start;
        public long Length;
        public int Pid;
    }

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    private static partial int Fcntl(SafeFileHandle fd, int cmd, ref Flock lk);

    /// <summary>True when the lock was taken; false when another open file holds it. Not supported off Linux: true.</summary>
    public static bool TryLock(SafeFileHandle file)
    {
        if (!OperatingSystem.IsLinux()) return true;
        var lk = new Flock { Type = F_WRLCK };
        if (Fcntl(file, F_OFD_SETLK, ref lk) == 0) return true;
        int errno = Marshal.GetLastPInvokeError();
        if (errno is 11 or 13) return false;   // EAGAIN / EACCES: held by someone else
        throw new IOException($"cannot lock the file: errno {errno}");
    }

    /// <summary>True when some open file (of any process) holds the lock on <paramref name="file"/>.</summary>
    public static bool IsLockedByOther(SafeFileHandle file)
    {
        if (!OperatingSystem.IsLinux()) return false;
        var lk = new Flock { Type = F_WRLCK };
        if (Fcntl(file, F_OFD_GETLK, ref lk) != 0) throw new IOException($"cannot query the file's lock: errno {Marshal.GetLastPInvokeError()}");
        return lk.Type != F_UNLCK;
    }
}
