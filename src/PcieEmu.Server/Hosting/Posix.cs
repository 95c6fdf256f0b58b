using System.Runtime.InteropServices;

namespace PcieEmu.Server.Hosting;

/// <summary>What <c>lstat</c> says of a path (through <c>statx</c>, whose layout is the same on every Linux architecture).</summary>
/// <param name="Uid">Owner.</param>
/// <param name="Mode">Type and permission bits (st_mode).</param>
internal readonly record struct PathStatus(uint Uid, uint Mode)
{
    private const uint TypeMask = 0xF000, Directory = 0x4000, Regular = 0x8000, Socket = 0xC000, Link = 0xA000;

    public bool IsDirectory => (Mode & TypeMask) == Directory;
    public bool IsRegularFile => (Mode & TypeMask) == Regular;
    public bool IsSocket => (Mode & TypeMask) == Socket;
    public bool IsSymbolicLink => (Mode & TypeMask) == Link;
    /// <summary>Permission bits (0777 part).</summary>
    public uint Permissions => Mode & 0x1FF;

    public string Describe() =>
        IsDirectory ? "a directory" : IsRegularFile ? "a regular file" : IsSocket ? "a socket" : IsSymbolicLink ? "a symbolic link" : "a special file";
}

/// <summary>The few POSIX calls the hosting code needs that .NET does not expose (owner of a path, our uid).</summary>
internal static unsafe partial class Posix
{
    private const int AtFdCwd = -100, AtSymlinkNoFollow = 0x100, StatxBasicStats = 0x7FF, Enoent = 2, Enotdir = 20;

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Statx(int dirfd, string path, int flags, uint mask, byte* buffer);

    [LibraryImport("libc", EntryPoint = "geteuid")]
    private static partial uint GetEuid();

    /// <summary>Our effective uid.</summary>
    public static uint EffectiveUid => OperatingSystem.IsLinux() ? GetEuid() : 0;

    /// <summary><c>lstat</c> of <paramref name="path"/> (a symbolic link is reported as itself); null when nothing is there.</summary>
    public static PathStatus? LStat(string path)
    {
        if (!OperatingSystem.IsLinux()) throw new PlatformNotSupportedException("runtime files are checked on Linux only");
        byte* buf = stackalloc byte[256];
        if (Statx(AtFdCwd, path, AtSymlinkNoFollow, StatxBasicStats, buf) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno is Enoent or Enotdir) return null;
            throw new IOException($"{path}: cannot stat (errno {errno})");
        }
        // struct statx: stx_uid at offset 20 (u32), stx_mode at offset 28 (u16).
        return new PathStatus(*(uint*)(buf + 20), *(ushort*)(buf + 28));
    }
}
