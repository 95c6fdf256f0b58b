using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using Grpc.Core;
using Microsoft.Extensions.DependencyInjection;
using PcieEmu.Client;
using PcieEmu.Client.Ring;
using PcieEmu.Protocol.V1;
using PcieEmu.Server.Ring;

namespace PcieEmu.Server.Tests.Kestrel;

/// <summary>Issue 16: the shared-memory ring (SessionService.OpenRing) against a real server.</summary>
public sealed class RingTests
{
    private const uint Nic = 0x100;

    private static SharedRings Rings(TestServer s) => s.App.Services.GetRequiredService<SharedRings>();

    private static async Task<PcieRing> Open(PcieEmuClient c, OpenRingRequest? r = null) => await c.OpenRingAsync(r).W();

    private static async Task WaitUntil(Func<bool> condition, string what)
    {
        var deadline = T.Deadline;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "timed out waiting until " + what);
            await Task.Delay(10).W();
        }
    }

    [Theory]
    [InlineData("unix")]
    [InlineData("tcp")]
    public async Task Posted_writes_then_a_read_observe_the_writes_in_order(string transport)
    {
        await using var s = await TestServer.StartAsync(transport);
        using var ring = await Open(s.Client);
        Assert.StartsWith(s.Directory, ring.Layout.Path);
        if (OperatingSystem.IsLinux()) Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(ring.Layout.Path));

        // Config: posted writes of the Command register, then a read sees the last.
        ring.PostConfigWrite(Nic, 4, 2, 0x0002);
        ring.PostConfigWrite(Nic, 4, 2, 0x0006);
        var c = ring.ReadConfig(Nic, 4, 2);
        Assert.Equal(RingStatus.Successful, c.Status);
        Assert.Equal(RingOp.ConfigRead, c.Kind);
        Assert.Equal(0x0006ul, c.Value & 0xFFFF);
        Assert.Equal(0x0006u, (await s.Client.ReadConfig16Async(Nic, 4).W()) & 0xFFFFu);

        // RAM through memory-space writes: 1000 posted writes (more than the ring holds), then reads of each.
        ulong ram = s.Machine.Ram.Base + 0x10000;
        for (uint i = 0; i < 1000; i++) ring.PostMmioWrite(ram + i * 8, 8, 0x1_0000_0000ul * i + i);
        for (uint i = 0; i < 1000; i += 111) Assert.Equal(0x1_0000_0000ul * i + i, ring.ReadMmio(ram + i * 8, 8).Value);

        // Block writes through the data area, then a block read.
        var block = Enumerable.Range(0, 3000).Select(i => (byte)(i * 7)).ToArray();
        ring.PostMemoryWrite(ram + 0x20000, block);
        var back = new byte[block.Length];
        var mr = ring.ReadMemory(ram + 0x20000, back);
        Assert.Equal(RingStatus.Successful, mr.Status);
        Assert.Equal((uint)block.Length, mr.Length);
        Assert.Equal(block, back);
        // More data than the area holds over time: the client reuses it once the server consumed it.
        for (int k = 0; k < 100; k++)
        {
            ring.PostMemoryWrite(ram + 0x40000 + (ulong)k * 4096, block);
            ring.PostMmioWrite(ram + 0x40000 + (ulong)k * 4096 + 3000, 4, (uint)k);   // entries without data in between
        }
        Assert.Equal((ulong)99, ring.ReadMmio(ram + 0x40000 + 99 * 4096 + 3000, 4).Value);   // a read fences the writes before it
        for (int k = 0; k < 100; k += 9)
            Assert.Equal(block, (await s.Client.Memory.ReadMemoryAsync(new ReadMemoryRequest { Address = ram + 0x40000 + (ulong)k * 4096, Length = 3000 })).Data.ToByteArray());

        // An acked write completes even when it succeeds.
        var ack = ring.WriteConfigAcked(Nic, 4, 2, 0x0002);
        Assert.Equal((RingOp.ConfigWrite, RingStatus.Successful), (ack.Kind, ack.Status));
        Assert.Empty(ring.Unsolicited);
    }

    [Fact]
    public async Task Completion_statuses_are_the_machines_and_failed_posted_writes_are_reported()
    {
        await using var s = await TestServer.StartAsync("unix");
        using var ring = await Open(s.Client);
        // UR: no function at that RID; the read returns all ones.
        var ur = ring.ReadConfig(0x7F00, 0, 4);
        Assert.Equal((RingStatus.UnsupportedRequest, 0xFFFF_FFFFul), (ur.Status, ur.Value));
        // UR for an undecoded address; a posted write there completes unsolicited with UR.
        Assert.Equal(RingStatus.UnsupportedRequest, ring.ReadMmio(0xFFF0_0000_0000, 4).Status);
        ring.PostMmioWrite(0xFFF0_0000_0000, 4, 1);
        ring.PostConfigWrite(0x7F00, 4, 2, 1);
        Assert.Equal(RingStatus.Successful, ring.ReadConfig(Nic, 0, 4).Status);
        Assert.Equal(2, ring.Unsolicited.Count);
        Assert.True(ring.TryTakeUnsolicited(out var w1));
        Assert.Equal((RingOp.MmioWrite, RingStatus.UnsupportedRequest), (w1.Kind, w1.Status));
        Assert.True(ring.TryTakeUnsolicited(out var w2));
        Assert.Equal((RingOp.ConfigWrite, RingStatus.UnsupportedRequest), (w2.Kind, w2.Status));
        // OUT_OF_RANGE: a block read outside RAM executes nothing.
        var oor = ring.ReadMemory(s.Machine.Ram.Base + s.Machine.Ram.Size - 4, new byte[8]);
        Assert.Equal((RingStatus.OutOfRange, RingField.Address), (oor.Status, oor.Field));
        // INVALID_ARGUMENT from Core's checks: a config access crossing a dword, a misaligned MMIO access, a value too wide.
        Assert.Equal((RingStatus.InvalidArgument, RingField.Offset), Pair(ring.ReadConfig(Nic, 3, 2)));
        Assert.Equal((RingStatus.InvalidArgument, RingField.Address), Pair(ring.ReadMmio(s.Machine.Ram.Base + 2, 4)));
        Assert.Equal((RingStatus.InvalidArgument, RingField.Width), Pair(ring.ReadConfig(Nic, 0, 8)));
        Assert.Equal((RingStatus.InvalidArgument, RingField.Value), Pair(ring.WriteConfigAcked(Nic, 4, 1, 0x1FF)));
        // The ring goes on after rejections.
        Assert.Equal(RingStatus.Successful, ring.ReadConfig(Nic, 0, 4).Status);
        Assert.False(ring.IsClosed);

        static (RingStatus, RingField) Pair(RingCompletion c) => (c.Status, c.Field);
    }

    /// <summary>The test's own view of a ring file: it writes raw submission slots as a hostile client would.</summary>
    private sealed class RawRing : IDisposable
    {
        private readonly MemoryMappedFile _file;
        private readonly MemoryMappedViewAccessor _view;
        private readonly OpenRingResponse _l;
        private uint _tail, _head;

        public RawRing(OpenRingResponse layout)
        {
            _l = layout;
            _file = MemoryMappedFile.CreateFromFile(layout.Path, FileMode.Open, null, (long)layout.Size, MemoryMappedFileAccess.ReadWrite);
            _view = _file.CreateViewAccessor(0, (long)layout.Size);
            // Carries on where another client of the same ring left off.
            _tail = _view.ReadUInt32(RingLayout.SubmissionTailOffset);
            _head = _view.ReadUInt32(RingLayout.CompletionHeadOffset);
        }

        public void Submit(byte[] slot)
        {
            long at = _l.SubmissionOffset + (_tail & (_l.SubmissionEntries - 1)) * 64L;
            _view.WriteArray(at, slot, 0, 64);
            _tail++;
            SetTail(_tail);
        }

        public void SetTail(uint tail)
        {
            Interlocked.MemoryBarrier();
            _view.Write(RingLayout.SubmissionTailOffset, tail);
            Interlocked.MemoryBarrier();
            // No futex wake: a server asleep re-checks the tail at its 1 s timeout (the tests ask for a long spin instead).
        }

        public uint State => _view.ReadUInt32(RingLayout.StateOffset);

        public async Task<(ulong Tag, ushort Status, byte Field, ulong Value)> NextCompletion()
        {
            var deadline = T.Deadline;
            while (_view.ReadUInt32(RingLayout.CompletionTailOffset) == _head)
            {
                Assert.True(DateTime.UtcNow < deadline, "no completion");
                await Task.Delay(1);
            }
            long at = _l.CompletionOffset + (_head & (_l.CompletionEntries - 1)) * 32L;
            var r = (_view.ReadUInt64(at), _view.ReadUInt16(at + 0x12), _view.ReadByte(at + 0x11), _view.ReadUInt64(at + 8));
            _head++;
            _view.Write(RingLayout.CompletionHeadOffset, _head);
            return r;
        }

        public void Dispose()
        {
            _view.Dispose();
            _file.Dispose();
        }
    }

    private static byte[] Slot(ulong tag, byte op, byte flags = 0, ushort rid = 0, ushort offset = 0, byte width = 0, ulong address = 0, ulong value = 0,
        uint dataOffset = 0, uint length = 0, int reservedAt = -1)
    {
        var b = new byte[64];
        BinaryPrimitives.WriteUInt64LittleEndian(b, tag);
        b[8] = op;
        b[9] = flags;
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(10), rid);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(12), offset);
        b[14] = width;
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(16), address);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(24), value);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(32), dataOffset);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(36), length);
        if (reservedAt >= 0) b[reservedAt] = 0xA5;
        return b;
    }

    [Fact]
    public async Task Malformed_entries_complete_with_a_status_naming_the_field_and_the_ring_goes_on()
    {
        await using var s = await TestServer.StartAsync("unix");
        using var ring = await Open(s.Client, new OpenRingRequest { SubmissionEntries = 64, DataSize = 4096, SpinMicroseconds = 10_000 });
        using var raw = new RawRing(ring.Layout);
        ulong ram = s.Machine.Ram.Base;
        const ushort Invalid = (ushort)RingStatus.InvalidArgument, Oor = (ushort)RingStatus.OutOfRange;
        var cases = new (byte[] Slot, ushort Status, RingField Field)[]
        {
            (Slot(1, 0), Invalid, RingField.Op),
            (Slot(2, 7), Invalid, RingField.Op),
            (Slot(3, 0xFF, width: 4), Invalid, RingField.Op),
            (Slot(4, 1, flags: 1, rid: 0x100, width: 4), Invalid, RingField.Flags),           // ack on a read
            (Slot(5, 2, flags: 2, rid: 0x100, width: 4), Invalid, RingField.Flags),           // unknown flag
            (Slot(6, 1, rid: 0x100, width: 4, reservedAt: 15), Invalid, RingField.Reserved),
            (Slot(7, 1, rid: 0x100, width: 4, reservedAt: 63), Invalid, RingField.Reserved),
            (Slot(8, 1, rid: 0x100, width: 3), Invalid, RingField.Width),
            (Slot(9, 1, rid: 0x100, offset: 4096, width: 4), Invalid, RingField.Offset),
            (Slot(10, 1, rid: 0x100, offset: 0xFFFF, width: 4), Invalid, RingField.Offset),
            (Slot(11, 1, rid: 0x100, width: 4, address: 8), Invalid, RingField.Address),        // config with an address
            (Slot(12, 2, rid: 0x100, offset: 4, width: 4, value: 1ul << 32), Invalid, RingField.Value),
            (Slot(13, 3, rid: 1, width: 4, address: ram), Invalid, RingField.Rid),              // MMIO with a rid
            (Slot(14, 3, width: 16, address: ram), Invalid, RingField.Width),
            (Slot(15, 4, width: 2, address: ram, value: 0x10000), Invalid, RingField.Value),
            (Slot(16, 3, width: 4, address: ram, length: 4), Invalid, RingField.Length),
            (Slot(17, 5, address: ram, dataOffset: 4000, length: 200), Invalid, RingField.DataOffset),
            (Slot(18, 5, address: ram, dataOffset: 0xFFFF_FFF0, length: 0x20), Invalid, RingField.DataOffset),
            (Slot(19, 5, address: ram, length: 0xFFFF_FFFF), Invalid, RingField.Length),
            (Slot(20, 6, width: 4, address: ram, length: 4), Invalid, RingField.Width),
            (Slot(21, 6, address: ulong.MaxValue - 2, length: 4), Oor, RingField.Address),
            (Slot(22, 5, address: ram + s.Machine.Ram.Size - 8, length: 16), Oor, RingField.Address),
        };
        foreach (var (slot, status, field) in cases)
        {
            raw.Submit(slot);
            var c = await raw.NextCompletion();
            ulong tag = BinaryPrimitives.ReadUInt64LittleEndian(slot);
            Assert.True((tag, status, (byte)field) == (c.Tag, c.Status, c.Field), $"tag {tag}: got status 0x{c.Status:X} field {c.Field}");
        }
        // Still open and serving, and the posted write in the middle of the garbage did not run.
        raw.Submit(Slot(100, 1, rid: 0x100, width: 4));
        var ok = await raw.NextCompletion();
        Assert.Equal((100ul, (ushort)1), (ok.Tag, ok.Status));
        Assert.Equal(0u, raw.State);
        s.AssertNoErrors();
    }

    [Fact]
    public async Task A_submission_tail_out_of_range_closes_the_ring_with_failed_precondition_and_frees_it()
    {
        await using var s = await TestServer.StartAsync("unix");
        var call = s.Client.Session.OpenRing(new OpenRingRequest());
        Assert.True(await call.ResponseStream.MoveNext().W());
        var layout = call.ResponseStream.Current;
        using (var raw = new RawRing(layout))
        {
            raw.SetTail(100_000);
            var ex = await Assert.ThrowsAsync<RpcException>(async () => await call.ResponseStream.MoveNext()).W();
            Assert.Equal(StatusCode.FailedPrecondition, ex.StatusCode);
            Assert.Contains("sq_tail", ex.Status.Detail);
            Assert.Equal(1u, raw.State);
        }
        call.Dispose();
        await WaitUntil(() => Rings(s).Open == 0, "the ring is freed");
        Assert.False(File.Exists(layout.Path));
        s.Logs.Forget("sq_tail");
    }

    [Fact]
    public async Task A_client_that_dies_mid_ring_leaves_the_machine_consistent_and_the_ring_freed()
    {
        await using var s = await TestServer.StartAsync("unix");
        ulong ram = s.Machine.Ram.Base + 0x3000;
        string path;
        // The dying client: its own connection, a ring with writes submitted and a read never collected,
        // then the connection drops without closing the ring (what the server sees when the process dies).
        var dying = s.NewClient();
        var ring = await Open(dying);
        path = ring.Layout.Path;
        for (ulong i = 0; i < 5; i++) ring.PostMmioWrite(ram + i * 4, 4, 0xA0 + i);
        Assert.Equal(RingStatus.Successful, ring.ReadConfig(Nic, 0, 4).Status); // the first five have executed
        using (var raw = new RawRing(ring.Layout))
        {
            for (ulong i = 5; i < 10; i++) ring.PostMmioWrite(ram + i * 4, 4, 0xA0 + i);
            raw.Submit(Slot(999, 1, rid: 0x100, width: 4)); // never read
            raw.Submit(Slot(1000, 0));                       // garbage, never read
        }
        dying.Dispose();
        await WaitUntil(() => Rings(s).Open == 0, "the server closes the dead client's ring");
        Assert.False(File.Exists(path));
        // Each entry executed whole or not at all, in order: what ran is a prefix of what was submitted
        // (entries the server had not consumed when the ring closed are dropped).
        var values = new List<ulong>();
        for (ulong i = 0; i < 10; i++) values.Add((await s.Client.ReadMmioAsync(ram + i * 4, 4).W()).Value);
        int ran = values.TakeWhile((v, i) => v == 0xA0 + (ulong)i).Count();
        Assert.True(ran >= 5, $"only {ran} writes ran");
        Assert.All(values.Skip(ran), v => Assert.Equal(0ul, v));
        Assert.Equal(0x10C98086u, await s.Client.ReadConfig32Async(Nic, 0).W());
        using var again = await Open(s.Client);
        Assert.Equal(RingStatus.Successful, again.ReadConfig(Nic, 0, 4).Status);
        ring.Dispose();
    }

    [Fact]
    public async Task Two_rings_at_once_each_keep_their_own_order_and_see_each_others_writes()
    {
        await using var s = await TestServer.StartAsync("unix");
        using var a = await Open(s.Client);
        using var b = await Open(s.NewClient());
        Assert.NotEqual(a.Layout.Path, b.Layout.Path);
        Assert.Equal(2, Rings(s).Open);
        ulong ram = s.Machine.Ram.Base + 0x8000;
        for (uint i = 0; i < 500; i++)
        {
            a.PostMmioWrite(ram + i * 8, 4, i);
            b.PostMmioWrite(ram + i * 8 + 4, 4, ~i);
        }
        Assert.Equal(499ul, a.ReadMmio(ram + 499 * 8, 4).Value);
        Assert.Equal((ulong)~499u, b.ReadMmio(ram + 499 * 8 + 4, 4).Value);
        // a's writes are complete (a's read returned), so b sees them.
        for (uint i = 0; i < 500; i += 50) Assert.Equal(i, (uint)b.ReadMmio(ram + i * 8, 4).Value);
        a.Dispose();
        await WaitUntil(() => Rings(s).Open == 1, "the first ring closes");
        Assert.Equal(RingStatus.Successful, b.ReadConfig(Nic, 0, 4).Status);
    }

    [Fact]
    public async Task A_stopping_server_closes_its_rings_with_unavailable()
    {
        await using var s = await TestServer.StartAsync("unix");
        var call = s.Client.Session.OpenRing(new OpenRingRequest());
        Assert.True(await call.ResponseStream.MoveNext().W());
        string path = call.ResponseStream.Current.Path;
        using var raw = new RawRing(call.ResponseStream.Current);
        var stopping = s.App.StopAsync();
        var ex = await Assert.ThrowsAsync<RpcException>(async () => await call.ResponseStream.MoveNext()).W();
        Assert.Equal(StatusCode.Unavailable, ex.StatusCode);
        await stopping.W();
        Assert.Equal(1u, raw.State);
        Assert.Equal(0, Rings(s).Open);
        Assert.False(File.Exists(path));
        call.Dispose();
    }

    [Fact]
    public async Task Too_many_rings_and_bad_sizes_are_refused_naming_the_field()
    {
        await using var s = await TestServer.StartAsync("unix", new Dictionary<string, string?> { ["Limits:MaxRings"] = "1" });
        async Task<RpcException> Refused(OpenRingRequest r) =>
            await Assert.ThrowsAsync<RpcException>(async () =>
            {
                using var call = s.Client.Session.OpenRing(r);
                await call.ResponseStream.MoveNext();
            }).W();
        Assert.Contains("submission_entries", (await Refused(new OpenRingRequest { SubmissionEntries = 3 })).Status.Detail);
        Assert.Contains("completion_entries", (await Refused(new OpenRingRequest { CompletionEntries = 8192 })).Status.Detail);
        Assert.Contains("data_size", (await Refused(new OpenRingRequest { DataSize = 100 })).Status.Detail);
        Assert.Contains("spin_microseconds", (await Refused(new OpenRingRequest { SpinMicroseconds = 1_000_000 })).Status.Detail);
        using var one = await Open(s.Client);
        var ex = await Refused(new OpenRingRequest());
        Assert.Equal(StatusCode.ResourceExhausted, ex.StatusCode);
        Assert.Contains("MaxRings", ex.Status.Detail);
    }

    [Fact]
    public async Task An_idle_ring_thread_sleeps()
    {
        if (!OperatingSystem.IsLinux()) return;
        await using var s = await TestServer.StartAsync("unix");
        using var ring = await Open(s.Client, new OpenRingRequest { SpinMicroseconds = 50 });
        Assert.Equal(RingStatus.Successful, ring.ReadConfig(Nic, 0, 4).Status);
        string file = Path.GetFileNameWithoutExtension(ring.Layout.Path);
        string name = "ring-" + file[(file.LastIndexOf('-') + 1)..];
        string task = System.IO.Directory.EnumerateDirectories("/proc/self/task").Single(t => Comm(t) == name);
        static string? Comm(string t)
        {
            try
            {
                return File.ReadAllText(Path.Combine(t, "comm")).Trim();
            }
            catch (IOException)
            {
                return null; // a thread that ended meanwhile
            }
        }
        // CPU time (utime + stime, clock ticks of 10 ms) the ring thread uses over one idle second.
        long Ticks()
        {
            string stat = File.ReadAllText(Path.Combine(task, "stat"));
            string[] f = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return long.Parse(f[11], System.Globalization.CultureInfo.InvariantCulture) + long.Parse(f[12], System.Globalization.CultureInfo.InvariantCulture);
        }
        await Task.Delay(100).W();
        long before = Ticks();
        await Task.Delay(1000).W();
        long used = Ticks() - before;
        // A spinning thread would use ~100 ticks; a sleeping one wakes once (its 1 s futex timeout) and uses ~0.
        Assert.True(used <= 3, $"the idle ring thread used {used * 10} ms of CPU in 1 s");
        // And it wakes for the next entry.
        Assert.Equal(RingStatus.Successful, ring.ReadConfig(Nic, 0, 4).Status);
    }
}
