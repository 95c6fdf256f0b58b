using Google.Protobuf;
using Microsoft.Extensions.Logging.Abstractions;
using PcieEmu.Core.Devices.Igb;
using PcieEmu.Core.Platform;
using PcieEmu.Protocol.V1;
using PcieEmu.Server.Capture;
using PcieEmu.Server.Tests.Kestrel;

namespace PcieEmu.Server.Tests.Capture;

/// <summary>Issue 17: <c>serve --pcap DIR</c> writes pcapng that tshark reads while the server runs.</summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class PcapRecordingTests
{
    private static byte[] Broadcast(int length, byte seed)
    {
        var f = new byte[length];
        Array.Fill(f, (byte)0xFF, 0, 6);
        f[6] = 0x02;
        f[11] = seed;
        f[12] = 0x08;
        for (int i = 14; i < length; i++) f[i] = (byte)(seed + i);
        return f;
    }

    /// <summary>Reads <paramref name="file"/> with tshark until it holds <paramref name="frames"/> frames (bounded: the writer flushes within 100 ms).</summary>
    private static async Task<string[][]> WaitForFrames(string file, int frames)
    {
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            var rows = await Tshark.ReadAsync(file);
            if (rows.Length >= frames || DateTime.UtcNow > until) return rows;
            await Task.Delay(50);
        }
    }

    [Fact]
    public async Task Tshark_reads_the_files_while_the_server_runs_with_names_directions_and_comments()
    {
        Tshark.AssertInstalled();
        string dir = Directory.CreateTempSubdirectory("pcie-emu-pcapng-").FullName;
        try
        {
            await using var s = await TestServer.StartAsync("unix", pcapDirectory: dir);
            string port0 = Path.Combine(dir, "pcie-emu-port0.pcapng"), port1 = Path.Combine(dir, "pcie-emu-port1.pcapng");
            // The headers are there at once (tshark reads an empty capture), the files are owner-only from the start.
            Assert.Empty(await Tshark.ReadAsync(port0));
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(port0));
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(port1));

            var sent = await WireTests.TransmitAndCapture(s.Client, 1);
            var rows0 = await WaitForFrames(port0, 1);
            Assert.Equal([["port0 (01:00.0 82576)", "2", "tx by 01:00.0 queue 0", "", sent[0].Length.ToString(System.Globalization.CultureInfo.InvariantCulture)]], rows0);

            var inj = await s.Client.Ethernet.InjectFrameAsync(new InjectFrameRequest { Port = 1, Data = ByteString.CopyFrom(Broadcast(60, 9)) }, deadline: T.Deadline).W();
            Assert.False(inj.Accepted);   // receiver off: dropped by the NIC, still seen on the wire
            var rows1 = await WaitForFrames(port1, 1);
            Assert.Equal([["port1 (01:00.1 82576)", "1", "rx from wire", "", "60"]], rows1);
            s.AssertNoErrors();
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>A stream whose writes block until released (a stalled disk), after letting the headers through.</summary>
    private sealed class StalledStream(int passBytes) : MemoryStream
    {
        public readonly ManualResetEventSlim Gate = new(false);
        public override void Write(byte[] buffer, int offset, int count)
        {
            if (Length + count > passBytes && !Gate.Wait(T.Timeout)) throw new IOException("stalled stream never released");
            base.Write(buffer, offset, count);
        }
        public override void Write(ReadOnlySpan<byte> buffer)
        {
            if (Length + buffer.Length > passBytes && !Gate.Wait(T.Timeout)) throw new IOException("stalled stream never released");
            base.Write(buffer);
        }
        protected override void Dispose(bool disposing)
        {
            if (disposing) Gate.Dispose();
            base.Dispose(disposing);
        }
    }

    [Fact]
    public async Task A_stalled_writer_drops_and_counts_frames_and_never_stalls_the_machine()
    {
        Tshark.AssertInstalled();
        var m = new Machine(new MachineOptions { RamSize = 1 << 20 });
        var stalled = new StalledStream(passBytes: 256);
        var copy = new MemoryStream();
        const int Sent = 50, Capacity = 4;
        var nic = ((IgbPhysicalFunction)m.PhysicalFunctions[0]).Nic;
        using (var rec = new PcapRecording(m, [(stalled, "port0"), (new MemoryStream(), "port1")], Capacity, NullLogger.Instance))
        {
            // The writer blocks in its first frame; every injection still returns at once.
            var inject = Task.Run(() => { for (int i = 0; i < Sent; i++) nic.InjectFrame(Broadcast(60, (byte)i)); });
            await inject.W();
            stalled.Gate.Set();
            var until = DateTime.UtcNow + T.Timeout;
            while (rec.Written(0) + rec.Dropped(0) < Sent && DateTime.UtcNow < until) await Task.Delay(20);
            Assert.Equal(Sent, rec.Written(0) + rec.Dropped(0));   // the writer caught up and counted its loss
            nic.InjectFrame(Broadcast(64, 0xEE));   // the next frame carries the count
            while (rec.Written(0) + rec.Dropped(0) < Sent + 1 && DateTime.UtcNow < until) await Task.Delay(20);
            Assert.Equal(Sent + 1, rec.Written(0) + rec.Dropped(0));
            Assert.InRange(rec.Dropped(0), 1, Sent - Capacity);
            stalled.Position = 0;
            await stalled.CopyToAsync(copy).W();
        }
        string file = Path.Combine(Path.GetTempPath(), $"pcie-emu-stall-{Guid.NewGuid():N}.pcapng");
        try
        {
            await File.WriteAllBytesAsync(file, copy.ToArray()).W();
            var rows = await Tshark.ReadAsync(file);
            // Each loss is reported on the frame after it (more than one when the writer caught up in between).
            var lossRows = rows.Where(r => r[3] is not ("" or "0")).ToArray();
            Assert.NotEmpty(lossRows);
            Assert.All(lossRows, r => Assert.EndsWith($"{r[3]} frame(s) dropped before this one: the capture writer fell behind", r[2], StringComparison.Ordinal));
            Assert.Equal(Sent + 1, rows.Length + lossRows.Sum(r => long.Parse(r[3], System.Globalization.CultureInfo.InvariantCulture)));
            Assert.Equal("64", rows[^1][4]);   // the last frame came through
        }
        finally
        {
            File.Delete(file);
        }
    }
}
