using System.Globalization;
using PcieEmu.Core.Memory;

namespace PcieEmu.Server.Hosting;

/// <summary>
/// Where the RAM file goes: by default <c>ram-PID.bin</c> in the private runtime directory (created
/// 0600 and locked by <see cref="HostRam"/>), and what is left of servers that died without
/// cleaning up is removed at start. An existing <c>--ram-file</c> must be a private file of ours.
/// </summary>
internal static class RamFiles
{
    private const string Prefix = "ram-", Suffix = ".bin";

    /// <summary>The default RAM file of this process in <paramref name="runtimeDirectory"/> (a kept one gets its own name so start-up cleanup leaves it).</summary>
    public static string DefaultPath(string runtimeDirectory, bool keep) =>
        Path.Combine(runtimeDirectory, $"{Prefix}{Environment.ProcessId}{(keep ? "-kept" : "")}{Suffix}");

    /// <summary>
    /// Deletes the <c>ram-PID.bin</c> files in <paramref name="runtimeDirectory"/> whose process is
    /// gone (or is us, before our own file exists) and that no server holds locked. Returns what it deleted.
    /// </summary>
    public static IReadOnlyList<(string Path, long Bytes)> RemoveStale(string runtimeDirectory)
    {
        var removed = new List<(string, long)>();
        if (!OperatingSystem.IsLinux()) return removed;
        uint me = Posix.EffectiveUid;
        foreach (string file in Directory.EnumerateFiles(runtimeDirectory, Prefix + "*" + Suffix))
        {
            string name = Path.GetFileName(file);
            string digits = name[Prefix.Length..^Suffix.Length];
            if (!int.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out int pid)) continue;
            if (pid != Environment.ProcessId && Directory.Exists($"/proc/{pid}")) continue;
            if (Posix.LStat(file) is not { IsRegularFile: true } st || st.Uid != me) continue;
            try
            {
                if (HostRam.IsInUse(file)) continue;
                long bytes = new FileInfo(file).Length;
                File.Delete(file);
                removed.Add((file, bytes));
            }
            catch (IOException)
            {
                // Gone meanwhile or unreadable: not ours to worry about.
            }
            catch (UnauthorizedAccessException)
            {
            }
        }
        return removed;
    }

    /// <summary>
    /// The machine options with the RAM file settled: the default path in the (private) runtime
    /// directory after removing stale files there, or the given path after <see cref="CheckExisting"/>.
    /// </summary>
    public static PcieEmu.Core.Platform.MachineOptions Resolve(PcieEmu.Core.Platform.MachineOptions options, string runtimeDirectory,
        out IReadOnlyList<(string Path, long Bytes)> removed)
    {
        removed = [];
        if (options.RamFilePath is { } given)
        {
            CheckExisting(Path.GetFullPath(given));
            return options;
        }
        RuntimeDirectory.EnsurePrivate(runtimeDirectory, "runtime directory");
        removed = RemoveStale(runtimeDirectory);
        return options with { RamFilePath = DefaultPath(runtimeDirectory, options.KeepRamFile) };
    }

    /// <summary>An existing <c>--ram-file</c> must be a regular file we own that no other user can read or write.</summary>
    public static void CheckExisting(string path)
    {
        if (!OperatingSystem.IsLinux() || Posix.LStat(path) is not { } st) return;
        string what = $"--ram-file {path}";
        if (!st.IsRegularFile) throw new ServeConfigurationException($"{what}: it is {st.Describe()}, not a regular file");
        uint me = Posix.EffectiveUid;
        if (st.Uid != me) throw new ServeConfigurationException($"{what}: it belongs to uid {st.Uid}, not to you (uid {me}); give another path");
        if ((st.Permissions & 0x3F) != 0)
            throw new ServeConfigurationException($"{what}: its mode {RuntimeDirectory.Octal(st.Permissions)} lets other users read or write guest RAM; chmod 600 it or give another path");
    }
}
