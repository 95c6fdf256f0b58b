using System.Diagnostics;
using System.Runtime.Versioning;
using Google.Protobuf;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging;
using PcieEmu.Client;
using PcieEmu.Protocol.V1;
using PcieEmu.Server.Hosting;

namespace PcieEmu.Server.Tests.Hosting;

/// <summary>Issue 9, defects 3, 6 and 8: the RAM file and the socket are private, locked, and only ever ours to delete.</summary>
[UnsupportedOSPlatform("windows")]
public sealed class RuntimeFileTests : IDisposable
{
    private const UnixFileMode Private = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    private readonly string _dir = Directory.CreateTempSubdirectory("pcie-emu-rt-").FullName;
    private readonly CapturingLoggerProvider _logs = new();

    public void Dispose()
    {
        foreach (var d in Directory.EnumerateDirectories(_dir, "*", SearchOption.AllDirectories)) File.SetUnixFileMode(d, Private);
        Directory.Delete(_dir, recursive: true);
    }

    private WebApplication Build(string socket, string? ramFile = null, string? runtimeDirectory = null, bool keep = false)
    {
        var overrides = new Dictionary<string, string?> { ["Machine:RamSize"] = (8 << 20).ToString(System.Globalization.CultureInfo.InvariantCulture) };
        if (ramFile != null) overrides["Machine:RamFilePath"] = ramFile;
        if (keep) overrides["Machine:KeepRamFile"] = "true";
        return ServerHost.Build(new ServeSettings
        {
            Listen = ["unix://" + socket], RuntimeDirectory = runtimeDirectory, Overrides = overrides, UseAppSettings = false, UseEnvironment = false,
        }, l => l.AddProvider(_logs));
    }

    private static async Task Stop(WebApplication app)
    {
        await app.StopAsync().W();
        await app.DisposeAsync().AsTask().W();
    }

    private static string Sub(string parent, string name)
    {
        string d = Path.Combine(parent, name);
        Directory.CreateDirectory(d, Private);
        return d;
    }

    [Fact]
    public async Task The_default_RAM_file_is_created_0600_in_the_0700_runtime_directory_and_removed_at_exit()
    {
        string runtime = Path.Combine(_dir, "run");   // created by the server
        var app = Build(Path.Combine(runtime, "emu.sock"), runtimeDirectory: runtime);
        await app.StartAsync().W();
        string ram;
        using (var c = PcieEmuClient.Connect("unix://" + Path.Combine(runtime, "emu.sock")))
            ram = (await c.GetPlatformAsync().W()).RamRegions[0].SharedFilePath;
        Assert.Equal(Path.Combine(runtime, $"ram-{Environment.ProcessId}.bin"), ram);
        Assert.Equal(Private, File.GetUnixFileMode(runtime));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(ram));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(runtime, "emu.sock")));
        await Stop(app);
        Assert.False(File.Exists(ram));
        Assert.False(File.Exists(Path.Combine(runtime, "emu.sock")));
        Assert.Empty(_logs.Errors);
    }

    [Fact]
    public void A_regular_file_at_the_socket_path_is_refused_and_left_alone()
    {
        string sock = Path.Combine(_dir, "emu.sock");
        File.WriteAllText(sock, "precious");
        var ex = Assert.Throws<ServeConfigurationException>(() => Build(sock, Path.Combine(_dir, "ram.bin")));
        Assert.Equal($"--listen unix://{sock}: {sock} exists and is a regular file, not a socket; it is left alone: remove it or choose another path", ex.Message);
        Assert.Equal("precious", File.ReadAllText(sock));
    }

    [Fact]
    public void A_socket_directory_others_can_enter_or_that_another_user_owns_is_refused()
    {
        string open = Sub(_dir, "open");
        File.SetUnixFileMode(open, Private | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        var ex = Assert.Throws<ServeConfigurationException>(() => Build(Path.Combine(open, "emu.sock"), Path.Combine(_dir, "ram.bin")));
        Assert.Contains($"directory {open} has mode 0755", ex.Message);

        if (Posix.EffectiveUid != 0) return;   // chown needs root; the mode case above still ran
        string theirs = Sub(_dir, "theirs");
        Run("chown", "65534:65534", theirs);
        var ex2 = Assert.Throws<ServeConfigurationException>(() => Build(Path.Combine(theirs, "emu.sock"), Path.Combine(_dir, "ram.bin")));
        Assert.Contains($"directory {theirs} belongs to uid 65534, not to you", ex2.Message);
        Assert.False(File.Exists(Path.Combine(_dir, "ram.bin")));
    }

    [Fact]
    public async Task An_existing_ram_file_is_used_as_it_is_and_kept_and_a_second_instance_on_it_is_refused()
    {
        string ram = Path.Combine(_dir, "mine.bin");
        var content = new byte[8 << 20];
        new Random(5).NextBytes(content);
        File.WriteAllBytes(ram, content);
        File.SetUnixFileMode(ram, UnixFileMode.UserRead | UnixFileMode.UserWrite);

        string sockA = Path.Combine(Sub(_dir, "a"), "emu.sock");
        var a = Build(sockA, ram);
        await a.StartAsync().W();
        using (var c = PcieEmuClient.Connect("unix://" + sockA))
        {
            var read = await c.Memory.ReadMemoryAsync(new ReadMemoryRequest { Address = 0x1000, Length = 4096 }, deadline: T.Deadline).W();
            Assert.Equal(content.AsSpan(0x1000, 4096).ToArray(), read.Data.ToByteArray());   // not truncated
            await c.Memory.WriteMemoryAsync(new WriteMemoryRequest { Address = 0, Data = ByteString.CopyFrom(1, 2, 3) }, deadline: T.Deadline).W();

            // A second server on the same file refuses and leaves the first's RAM alone.
            var ex = Assert.Throws<IOException>(() => Build(Path.Combine(Sub(_dir, "b"), "emu.sock"), ram));
            Assert.Equal($"RAM file {ram} is in use by another pcie-emu (it holds the file's lock); give another --ram-file", ex.Message);
            var after = await c.Memory.ReadMemoryAsync(new ReadMemoryRequest { Address = 0, Length = 8 }, deadline: T.Deadline).W();
            Assert.Equal(new byte[] { 1, 2, 3, content[3], content[4], content[5], content[6], content[7] }, after.Data.ToByteArray());
        }
        await Stop(a);
        var kept = File.ReadAllBytes(ram);   // not deleted: we did not create it
        Assert.Equal(content.Length, kept.Length);
        Assert.Equal(content.AsSpan(3).ToArray(), kept.AsSpan(3).ToArray());
        Assert.Empty(_logs.Errors);
    }

    [Fact]
    public void An_existing_ram_file_other_users_can_read_is_refused()
    {
        string ram = Path.Combine(_dir, "open.bin");
        File.WriteAllBytes(ram, new byte[4096]);
        File.SetUnixFileMode(ram, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead);
        var ex = Assert.Throws<ServeConfigurationException>(() => Build(Path.Combine(_dir, "emu.sock"), ram));
        Assert.Contains("its mode 0604 lets other users read or write guest RAM", ex.Message);
    }

    [Fact]
    public async Task RAM_files_of_dead_servers_are_removed_at_start_and_live_or_kept_ones_stay()
    {
        string runtime = Sub(_dir, "run");
        int dead = DeadPid();
        string stale = Path.Combine(runtime, $"ram-{dead}.bin"), live = Path.Combine(runtime, "ram-1.bin"), kept = Path.Combine(runtime, $"ram-{dead}-kept.bin");
        foreach (var f in new[] { stale, live, kept }) File.WriteAllBytes(f, new byte[4096]);
        var app = Build(Path.Combine(runtime, "emu.sock"), runtimeDirectory: runtime);
        Assert.False(File.Exists(stale));
        Assert.True(File.Exists(live));    // pid 1 is alive
        Assert.True(File.Exists(kept));    // asked to be kept
        Assert.Contains(_logs.Entries, e => e.Message == $"Removed the RAM file {stale} (4096 bytes) of a server that is gone");
        await app.DisposeAsync().AsTask().W();
    }

    [AsRootFact]
    public async Task Another_local_user_cannot_open_the_RAM_file_or_reach_the_socket()
    {
        File.SetUnixFileMode(_dir, Private | UnixFileMode.OtherExecute);   // nobody may walk to the runtime directory...
        string runtime = Path.Combine(_dir, "run");                          // ...but not into it
        string sock = Path.Combine(runtime, "emu.sock");
        var app = Build(sock, runtimeDirectory: runtime);
        await app.StartAsync().W();
        try
        {
            string ram = Path.Combine(runtime, $"ram-{Environment.ProcessId}.bin");
            Assert.True(File.Exists(ram));
            // Even with the directory opened up, the file itself is 0600.
            File.SetUnixFileMode(runtime, Private | UnixFileMode.OtherExecute);
            var (code, err) = AsNobody("/bin/cat", ram);
            Assert.NotEqual(0, code);
            Assert.Contains("Permission denied", err);
            File.SetUnixFileMode(runtime, Private);
            (code, err) = AsNobody("/bin/cat", ram);
            Assert.NotEqual(0, code);
            Assert.Contains("Permission denied", err);
            (code, err) = AsNobody("/bin/ls", runtime);
            Assert.NotEqual(0, code);
            Assert.Contains("Permission denied", err);
            (code, err) = AsNobody("/usr/bin/perl", "-MSocket", "-e",
                "socket(S, PF_UNIX, SOCK_STREAM, 0) or die qq(socket: $!\\n); connect(S, pack_sockaddr_un($ARGV[0])) or die qq(connect: $!\\n); print qq(connected\\n)", sock);
            Assert.NotEqual(0, code);
            Assert.Contains("connect: Permission denied", err);
            // The same probe as ourselves connects: the probe works, the user is what differs.
            var self = Run("/usr/bin/perl", "-MSocket", "-e",
                "socket(S, PF_UNIX, SOCK_STREAM, 0) or die; connect(S, pack_sockaddr_un($ARGV[0])) or die qq(connect: $!\\n); print qq(connected\\n)", sock);
            Assert.Equal((0, "connected\n"), (self.Code, self.Out));
        }
        finally
        {
            await Stop(app);
        }
    }

    private static (int Code, string Err) AsNobody(params string[] command)
    {
        var r = Run("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "--", .. command]);
        return (r.Code, r.Err);
    }

    private static (int Code, string Out, string Err) Run(string file, params string[] args) =>
        ProcessRun.RunAsync(file, args).GetAwaiter().GetResult();

    private static int DeadPid()
    {
        using var p = Process.Start(new ProcessStartInfo("/bin/true"))!;
        Assert.True(p.WaitForExit(T.Timeout));
        Assert.False(Directory.Exists($"/proc/{p.Id}"));
        return p.Id;
    }
}

/// <summary>A test that switches to another user: skipped, with the reason, unless the suite runs as root.</summary>
public sealed class AsRootFactAttribute : FactAttribute
{
    public AsRootFactAttribute()
    {
        if (OperatingSystem.IsLinux() && Posix.EffectiveUid != 0) Skip = "needs root to run a command as the user nobody (setpriv); run the suite as root to cover this";
        else if (!OperatingSystem.IsLinux()) Skip = "Linux only";
    }
}
