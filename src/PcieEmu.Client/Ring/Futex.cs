using System.Runtime.InteropServices;

namespace PcieEmu.Client.Ring;

/// <summary>
/// futex(2) on a word of a shared file mapping (not FUTEX_PRIVATE: the other side is another
/// process). Linux only; elsewhere Wait sleeps briefly and Wake does nothing, so waiters poll.
/// </summary>
internal static unsafe partial class Futex
{
    private const int FutexWait = 0, FutexWake = 1;

    private static readonly long SysFutex = RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 => 202,
        Architecture.Arm64 => 98,
        _ => -1,
    };

    private static bool Available => OperatingSystem.IsLinux() && SysFutex >= 0;

    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    // syscall(2) is variadic; on x86-64 and arm64 Linux its integer arguments travel in the same registers as a fixed signature's.
    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long Syscall(long number, uint* address, int op, uint value, Timespec* timeout, nint address2, uint value3);

    /// <summary>Sleeps while *<paramref name="address"/> == <paramref name="expected"/>, at most <paramref name="timeoutMs"/> ms (or until woken).</summary>
    public static void Wait(uint* address, uint expected, int timeoutMs)
    {
        if (!Available)
        {
            Thread.Sleep(1);
            return;
        }
        var ts = new Timespec { Seconds = timeoutMs / 1000, Nanoseconds = (timeoutMs % 1000) * 1_000_000L };
        Syscall(SysFutex, address, FutexWait, expected, &ts, 0, 0);
    }

    /// <summary>Wakes every sleeper on <paramref name="address"/>.</summary>
    public static void Wake(uint* address)
    {
        if (Available) Syscall(SysFutex, address, FutexWake, int.MaxValue, null, 0, 0);
    }
}
