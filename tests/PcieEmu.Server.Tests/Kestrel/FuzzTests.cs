using System.Collections;
using System.Diagnostics;
using Google.Protobuf;
using Google.Protobuf.Reflection;
using Grpc.Core;
using Grpc.Health.V1;
using Xunit.Abstractions;

namespace PcieEmu.Server.Tests.Kestrel;

/// <summary>
/// Issue 9: a seeded, bounded fuzz of every RPC and the Transact stream with random, mutated and
/// malformed bodies. No call may end INTERNAL/UNKNOWN (or UNAVAILABLE: the server went away), the
/// server logs no error, answers health checks SERVING afterwards, and its memory stays bounded.
/// </summary>
public sealed class FuzzTests(ITestOutputHelper output)
{
    private const int Seed = 20261130;
    private const int Workers = 6;
    private const int UnaryPerWorker = 3000;      // 18,000 unary calls
    private const int StreamsPerWorker = 350;     // 2,100 Transact streams of 1..8 messages (~9,500 messages)

    private static readonly StatusCode[] Forbidden = [StatusCode.Internal, StatusCode.Unknown, StatusCode.Unavailable, StatusCode.DataLoss];

    [Fact]
    public async Task Every_RPC_survives_tens_of_thousands_of_random_and_malformed_requests()
    {
        await using var s = await TestServer.StartAsync("unix");
        var functions = await s.Client.ListFunctionsAsync().W();
        ulong[] addresses = [0, 0x1000, 0xFF_F000, 16UL << 20, 0xFEE0_0000, 0xFED9_0000, 0xE000_0000, ulong.MaxValue - 3,
            .. functions.SelectMany(f => f.Bars).SelectMany(b => new[] { b.Address, b.Address + 0x10, b.Address + 0x2800 })];
        var methods = RawCalls.AllMethodsWithInput;
        var unary = methods.Where(m => m.Type == MethodType.Unary).ToArray();
        var streaming = methods.Where(m => m.Type == MethodType.ServerStreaming).ToArray();
        var transactInput = methods.Single(m => m.Method == "Transact").Input;

        GC.Collect();
        long heapBefore = GC.GetTotalMemory(forceFullCollection: true);
        var clock = Stopwatch.StartNew();
        var counts = new System.Collections.Concurrent.ConcurrentDictionary<StatusCode, int>();
        long messages = 0;

        await Task.WhenAll(Enumerable.Range(0, Workers).Select(w => Task.Run(async () =>
        {
            var rng = new Random(Seed + w);
            var gen = new Generator(rng, addresses);
            using var client = s.NewClient();
            var channel = client.Channel;
            for (int i = 0; i < UnaryPerWorker; i++)
            {
                var (service, method, _, input) = unary[rng.Next(unary.Length)];
                var status = await RawCalls.UnaryAsync(channel, service, method, gen.Body(input));
                Check(status, $"{service}/{method} (worker {w}, call {i}, seed {Seed})", counts);
                if (i % 200 == 0)
                {
                    var (ss, sm, _, si) = streaming[rng.Next(streaming.Length)];
                    Check(await RawCalls.ServerStreamingAsync(channel, ss, sm, gen.Body(si), TimeSpan.FromMilliseconds(20)), $"{ss}/{sm} (worker {w})", counts);
                }
            }
            for (int i = 0; i < StreamsPerWorker; i++)
            {
                var batch = Enumerable.Range(0, rng.Next(1, 9)).Select(_ => gen.Body(transactInput)).ToList();
                Interlocked.Add(ref messages, batch.Count);
                var (status, _) = await RawCalls.TransactAsync(channel, batch);
                Check(status, $"Transact (worker {w}, stream {i}, seed {Seed})", counts);
            }
        }))).WaitAsync(TimeSpan.FromMinutes(2));

        clock.Stop();
        output.WriteLine($"{Workers * UnaryPerWorker} unary calls, {Workers * StreamsPerWorker} Transact streams ({messages} messages) in {clock.Elapsed.TotalSeconds:F1} s");
        output.WriteLine(string.Join(", ", counts.OrderBy(kv => kv.Key).Select(kv => $"{kv.Key}: {kv.Value}")));

        // Still serving, and no error logged along the way.
        var health = await s.Client.Health.CheckAsync(new HealthCheckRequest(), deadline: T.Deadline).W();
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, health.Status);
        Assert.Equal(0x10C98086u, (await s.Client.ReadConfigAsync(0x100, 0, 4).W()).Value);
        foreach (var e in s.Logs.Errors.Take(3)) output.WriteLine(e);
        s.AssertNoErrors();
        // Memory bounded: nothing a request asked for stayed allocated (the RAM file is not on the heap).
        long heapAfter = GC.GetTotalMemory(forceFullCollection: true);
        output.WriteLine($"managed heap {heapBefore >> 20} MiB before, {heapAfter >> 20} MiB after; working set {Environment.WorkingSet >> 20} MiB");
        Assert.True(heapAfter - heapBefore < 64L << 20, $"managed heap grew by {(heapAfter - heapBefore) >> 20} MiB");
        Assert.True(Environment.WorkingSet < 2L << 30, $"working set {Environment.WorkingSet >> 20} MiB");
    }

    private static void Check(Status status, string what, System.Collections.Concurrent.ConcurrentDictionary<StatusCode, int> counts)
    {
        counts.AddOrUpdate(status.StatusCode, 1, (_, n) => n + 1);
        Assert.False(Forbidden.Contains(status.StatusCode), $"{what}: {status}");
    }

    /// <summary>Request bodies: random valid messages, random wire-format fields, mutations of valid ones, and plain noise.</summary>
    private sealed class Generator(Random rng, ulong[] addresses)
    {
        public byte[] Body(MessageDescriptor type)
        {
            int kind = rng.Next(10);
            if (kind < 5) return Message(type, 0).ToByteArray();
            if (kind < 7) return WireNoise();
            if (kind < 9) return Mutate(Message(type, 0).ToByteArray());
            var noise = new byte[rng.Next(0, 48)];
            rng.NextBytes(noise);
            return noise;
        }

        private IMessage Message(MessageDescriptor type, int depth)
        {
            var msg = type.Parser.ParseFrom(ByteString.Empty);
            foreach (var field in type.Fields.InFieldNumberOrder())
            {
                if (rng.Next(3) == 0) continue;
                if (field.IsRepeated)
                {
                    var list = (IList)field.Accessor.GetValue(msg);
                    int n = field.FieldType == FieldType.Message ? rng.Next(0, depth == 0 ? 12 : 3) : rng.Next(0, 5);
                    for (int i = 0; i < n; i++) if (Value(field, depth) is { } v) list.Add(v);
                }
                else if (Value(field, depth) is { } v)
                {
                    field.Accessor.SetValue(msg, v);
                }
            }
            return msg;
        }

        private object? Value(FieldDescriptor f, int depth) => f.FieldType switch
        {
            FieldType.UInt32 or FieldType.Fixed32 => (uint)Number(f.Name),
            FieldType.Int32 or FieldType.SInt32 or FieldType.SFixed32 => (int)Number(f.Name),
            FieldType.UInt64 or FieldType.Fixed64 => Number(f.Name),
            FieldType.Int64 or FieldType.SInt64 or FieldType.SFixed64 => (long)Number(f.Name),
            FieldType.Bool => rng.Next(2) == 0,
            FieldType.String => new string('x', rng.Next(0, 8)),
            FieldType.Bytes => ByteString.CopyFrom(Bytes(rng.Next(8) == 0 ? rng.Next(0, 9000) : rng.Next(0, 65))),
            FieldType.Enum => Enum.ToObject(f.EnumType.ClrType, rng.Next(-1, f.EnumType.Values.Count + 2)),
            FieldType.Message => depth < 3 ? Message(f.MessageType, depth + 1) : null,
            _ => null,
        };

        private ulong Number(string name)
        {
            switch (rng.Next(6))
            {
                case 0: return (ulong)rng.Next(0, 5);
                case 1: return name.Contains("address", StringComparison.Ordinal) ? addresses[rng.Next(addresses.Length)] : (ulong)rng.Next(0, 0x1_0000);
                case 2: return name switch { "width" => new ulong[] { 1, 2, 4, 8, 3, 16 }[rng.Next(6)], "offset" => (ulong)rng.Next(0, 0x1100), "rid" or "rids" => new ulong[] { 0, 8, 0x100, 0x101, 0x180, 0x280, 0x10000 }[rng.Next(7)], _ => (ulong)rng.Next(0, 4096) };
                case 3: return (ulong)rng.NextInt64();
                case 4: return new ulong[] { uint.MaxValue, ulong.MaxValue, 4 << 20, (4 << 20) + 1, 1UL << 32 }[rng.Next(5)];
                default: return (ulong)rng.Next(0, 256);
            }
        }

        private byte[] Bytes(int n)
        {
            var b = new byte[n];
            rng.NextBytes(b);
            return b;
        }

        private byte[] WireNoise()
        {
            using var ms = new MemoryStream();
            var cos = new CodedOutputStream(ms);
            for (int i = rng.Next(0, 8); i > 0; i--)
            {
                int number = rng.Next(1, 12);
                switch (rng.Next(4))
                {
                    case 0: cos.WriteTag(number, WireFormat.WireType.Varint); cos.WriteUInt64((ulong)rng.NextInt64()); break;
                    case 1: cos.WriteTag(number, WireFormat.WireType.Fixed64); cos.WriteFixed64((ulong)rng.NextInt64()); break;
                    case 2: cos.WriteTag(number, WireFormat.WireType.Fixed32); cos.WriteFixed32((uint)rng.Next()); break;
                    default: cos.WriteTag(number, WireFormat.WireType.LengthDelimited); cos.WriteBytes(ByteString.CopyFrom(Bytes(rng.Next(0, 24)))); break;
                }
            }
            cos.Flush();
            return ms.ToArray();
        }

        private byte[] Mutate(byte[] body)
        {
            if (body.Length == 0) return [0x0A, 0x7F];
            var b = (byte[])body.Clone();
            switch (rng.Next(3))
            {
                case 0: return b[..rng.Next(0, b.Length)];                               // truncated
                case 1: for (int i = rng.Next(1, 4); i > 0; i--) b[rng.Next(b.Length)] = (byte)rng.Next(256); return b;   // bytes flipped
                default: return [.. b, .. Bytes(rng.Next(1, 6))];                          // junk appended
            }
        }
    }
}
