using System.Diagnostics;
using Google.Protobuf;
using PcieEmu.Core.Devices;
using PcieEmu.Core.Devices.Igb;
using PcieEmu.Core.Events;
using PcieEmu.Protocol.V1;
using PcieEmu.Server.Tests.Capture;
using PcieEmu.Server.Tests.Kestrel;

namespace PcieEmu.Server.Tests.Cli;

/// <summary>Issue 17: <c>pcie-emu capture</c> as a process, its pcapng read by tshark through a pipe or a file.</summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class CaptureCliTests
{
    private static string Dll => Path.Combine(AppContext.BaseDirectory, "pcie-emu.dll");

    private static byte[] Broadcast(int length, byte seed)
    {
        var f = new byte[length];
        Array.Fill(f, (byte)0xFF, 0, 6);
        f[6] = 0x02;
        f[11] = seed;
        f[12] = 0x08;
        return f;
    }

    private static string Quote(string s) => "'" + s.Replace("'", "'\\''", StringComparison.Ordinal) + "'";

    /// <summary>Runs <paramref name="script"/> in bash (pipefail), output collected.</summary>
    private static Process Bash(string script) =>
        Process.Start(new ProcessStartInfo("bash", ["-c", "set -o pipefail; " + script]) { RedirectStandardOutput = true, RedirectStandardError = true })!;

    private static string Capture(TestServer s, string args) =>
        $"dotnet {Quote(Dll)} capture --target {Quote(s.Target)} --token-file {Quote(s.TokenFile)} {args}";

    /// <summary>Waits until <paramref name="n"/> more subscribers than <paramref name="before"/> are on the event path.</summary>
    private static async Task WaitForSubscribers(TestServer s, int before, int n, Task<(int Code, string Out, string Err)> run)
    {
        var deadline = T.Deadline;
        while (s.Machine.Events.SubscriberCount < before + n)
        {
            if (run.IsCompleted) Assert.Fail($"capture ended before it subscribed: {(await run).Err}");
            Assert.True(DateTime.UtcNow < deadline, "capture never subscribed");
            await Task.Delay(20);
        }
    }

    [Fact]
    public async Task Capture_to_stdout_piped_into_tshark_shows_both_directions_named_and_commented()
    {
        Tshark.AssertInstalled();
        await using var s = await TestServer.StartAsync("tcp");
        int before = s.Machine.Events.SubscriberCount;
        using var p = Bash($"{Capture(s, "-w - --count 2")} | {Tshark.Path} -r - -T fields {string.Join(' ', Tshark.Fields.Select(f => "-e " + f))}");
        var run = ProcessRun.FinishAsync(p);
        await WaitForSubscribers(s, before, 2, run);   // one stream per port
        var sent = await WireTests.TransmitAndCapture(s.Client, 1);
        await s.Client.Ethernet.InjectFrameAsync(new InjectFrameRequest { Port = 1, Data = ByteString.CopyFrom(Broadcast(60, 7)) }, deadline: T.Deadline).W();
        var (code, output, err) = await run;
        Assert.True(code == 0, $"exit {code}: {err}");
        var rows = Tshark.Rows(output).Select(r => string.Join('|', r)).Order(StringComparer.Ordinal);
        Assert.Equal([$"port0 (01:00.0 82576)|2|tx by 01:00.0 queue 0||{sent[0].Length}", "port1 (01:00.1 82576)|1|rx from wire||60"], rows);
    }

    [Fact]
    public async Task Internal_shows_switched_frames_on_their_own_interface_and_a_file_is_owner_only()
    {
        Tshark.AssertInstalled();
        await using var s = await TestServer.StartAsync("unix");
        string file = Path.Combine(s.Directory, "cap.pcapng");
        int before = s.Machine.Events.SubscriberCount;
        using var p = Bash($"{Capture(s, $"--port 0 --internal --count 1 -w {Quote(file)}")}");
        var run = ProcessRun.FinishAsync(p);
        await WaitForSubscribers(s, before, 1, run);
        // A frame VF0 (02:10.0, queue 0) switched to pool 1 inside port 0, as the NIC's VMDq switch publishes it.
        var frame = Broadcast(64, 3);
        s.Machine.Events.Publish(new FrameEvent(0x0280, FrameDirection.Switched, new WireFrame(0, frame, 1_700_000_000_000_000_000), 0, 0x02));
        var (code, _, err) = await run;
        Assert.True(code == 0, $"exit {code}: {err}");
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));
        var rows = await Tshark.ReadAsync(file);
        Assert.Equal([["port0 (01:00.0 82576) internal switch", "", "switched by 02:10.0 queue 0 to pools 0x02 (inside the NIC)", "", "64"]], rows);
    }

    [Fact]
    public async Task A_closed_pipe_ends_capture_quietly_with_exit_0()
    {
        await using var s = await TestServer.StartAsync("tcp");
        int before = s.Machine.Events.SubscriberCount;
        // head takes the first bytes and exits; the next frame meets a closed pipe.
        using var p = Bash($"{Capture(s, "--port 1 -w -")} | head -c 8 >/dev/null; echo \"capture=${{PIPESTATUS[0]}}\"");
        var run = ProcessRun.FinishAsync(p);
        await WaitForSubscribers(s, before, 1, run);
        var deadline = T.Deadline;
        while (!p.HasExited && DateTime.UtcNow < deadline)
        {
            await s.Client.Ethernet.InjectFrameAsync(new InjectFrameRequest { Port = 1, Data = ByteString.CopyFrom(Broadcast(60, 1)) }, deadline: T.Deadline).W();
            await Task.Delay(50);
        }
        var (code, output, err) = await run;
        Assert.Equal(0, code);
        Assert.Equal("capture=0\n", output);
        Assert.Equal("", err);
    }

    [Fact]
    public async Task An_unknown_port_exits_2_naming_the_field()
    {
        await using var s = await TestServer.StartAsync("unix");
        using var p = Bash($"{Capture(s, "--port 7 -w /dev/null")}");
        var (code, _, err) = await ProcessRun.FinishAsync(p);
        Assert.Equal(2, code);
        Assert.Contains("port", err, StringComparison.Ordinal);
        Assert.Contains("does not exist", err, StringComparison.Ordinal);
    }
}
