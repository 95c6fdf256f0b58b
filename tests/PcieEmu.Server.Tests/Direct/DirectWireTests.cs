using System.Buffers.Binary;
using Grpc.Core;
using PcieEmu.Protocol.V1;
using PcieEmu.Server.Direct;

namespace PcieEmu.Server.Tests.Direct;

/// <summary>
/// The direct loop's HTTP/2 on the wire (RFC 9113 and gRPC's PROTOCOL-HTTP2), with a raw socket:
/// settings, flow control, padding and CONTINUATION, trailers-only errors, and malformed peers that
/// lose their connection (GOAWAY with the right code) while the server goes on serving.
/// </summary>
public sealed class DirectWireTests
{
    private const string GetPlatform = "/pcieemu.v1.PlatformService/GetPlatform";
    private const string ReadMemory = "/pcieemu.v1.MemoryService/ReadMemory";

    private static async Task<TestServer> Start() => await TestServer.StartAsync("direct");

    private static List<RawHttp2.Frame> ResponseOf(RawHttp2 h, int stream) =>
        h.ReadUntil(f => f.Stream == stream && (f.EndStream || f.Type == FrameType.RstStream)).Where(f => f.Stream == stream).ToList();

    private static string? Field(List<HeaderField> fields, string name) => fields.LastOrDefault(f => f.Name == name).Value;

    [Fact]
    public async Task The_server_announces_its_settings_and_connection_window_and_acknowledges_the_peers()
    {
        await using var s = await Start();
        using var h = RawHttp2.Open(s.SocketPath);
        var settings = h.Read()!.Value;
        Assert.Equal(FrameType.Settings, settings.Type);
        var values = Enumerable.Range(0, settings.Payload.Length / 6).ToDictionary(
            i => BinaryPrimitives.ReadUInt16BigEndian(settings.Payload.AsSpan(i * 6)), i => BinaryPrimitives.ReadUInt32BigEndian(settings.Payload.AsSpan(i * 6 + 2)));
        Assert.Equal(1024u, values[Http2.SettingsMaxConcurrentStreams]);
        Assert.Equal(2u << 20, values[Http2.SettingsInitialWindowSize]);
        var window = h.Read()!.Value;
        Assert.Equal((FrameType.WindowUpdate, 0), (window.Type, window.Stream));
        Assert.Equal((4u << 20) - 65535, BinaryPrimitives.ReadUInt32BigEndian(window.Payload));
        var ack = h.Read()!.Value;
        Assert.Equal((FrameType.Settings, Http2.FlagAck), (ack.Type, ack.Flags));
        h.SendFrame(FrameType.Ping, 0, 0, "pcie-emu"u8);
        var pong = h.Read()!.Value;
        Assert.Equal((FrameType.Ping, Http2.FlagAck), (pong.Type, pong.Flags));
        Assert.Equal("pcie-emu"u8.ToArray(), pong.Payload);
    }

    [Fact]
    public async Task Connections_beyond_the_limit_get_GOAWAY_ENHANCE_YOUR_CALM_naming_it_and_a_freed_slot_serves_again()
    {
        await using var s = await TestServer.StartAsync("direct", new Dictionary<string, string?> { ["Limits:MaxDirectConnections"] = "2" });
        static void Pings(RawHttp2 h)
        {
            h.SendFrame(FrameType.Ping, 0, 0, "pcie-emu"u8);
            h.ReadUntil(f => f.Type == FrameType.Ping && f.Flags == Http2.FlagAck);
        }
        var a = RawHttp2.Open(s.SocketPath);
        using var b = RawHttp2.Open(s.SocketPath);
        Pings(a);
        Pings(b);
        // What a refused connection gets before the server closes it (closing with our preface unread may reset it).
        static List<RawHttp2.Frame> UntilClosed(RawHttp2 h, Func<RawHttp2.Frame, bool>? stop = null)
        {
            var frames = new List<RawHttp2.Frame>();
            try
            {
                while (h.Read() is { } f && !(stop?.Invoke(f) ?? false)) frames.Add(f);
            }
            catch (System.Net.Sockets.SocketException) { }
            return frames;
        }
        using (var third = new RawHttp2(s.SocketPath))   // the server speaks first; nothing sent that it would leave unread
        {
            var goAway = UntilClosed(third).Single(f => f.Type == FrameType.GoAway);
            Assert.Equal((uint)Http2Error.EnhanceYourCalm, goAway.ErrorCode);
            Assert.Equal(0, BinaryPrimitives.ReadInt32BigEndian(goAway.Payload));   // last stream: none was processed
            Assert.Contains("Limits:MaxDirectConnections", System.Text.Encoding.UTF8.GetString(goAway.Payload.AsSpan(8)), StringComparison.Ordinal);
        }
        Pings(b);   // the two served connections go on
        a.Dispose();
        // Once the server has seen the first one close, a new connection is served.
        var deadline = DateTime.UtcNow + T.Timeout;
        while (true)
        {
            using var again = new RawHttp2(s.SocketPath);
            try
            {
                again.Send(Http2.Preface);
                again.SendSettings();
                again.SendFrame(FrameType.Ping, 0, 0, "pcie-emu"u8);
            }
            catch (System.Net.Sockets.SocketException) { }   // refused and closed already
            if (!UntilClosed(again, f => f.Type == FrameType.Ping && f.Flags == Http2.FlagAck).Any(f => f.Type == FrameType.GoAway)) break;
            Assert.True(DateTime.UtcNow < deadline, "a freed connection slot was never reused");
            await Task.Delay(20);
        }
        Assert.Contains(s.Logs.Entries, e => e.Message.Contains("more than 2 connections", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_unary_call_with_padding_priority_and_CONTINUATION_gets_headers_message_and_trailers()
    {
        await using var s = await Start();
        using var h = RawHttp2.Open(s.SocketPath);
        var block = RawHttp2.RequestBlock(GetPlatform);
        // HEADERS: PADDED (3 bytes) + PRIORITY, first 10 bytes of the block; CONTINUATION with the rest.
        var first = new List<byte> { 3, 0, 0, 0, 0, 16 };
        first.AddRange(block.Take(10));
        first.AddRange(new byte[3]);
        h.SendFrame(FrameType.Headers, Http2.FlagPadded | Http2.FlagPriority, 1, first.ToArray());
        h.SendFrame(FrameType.Continuation, Http2.FlagEndHeaders, 1, block.AsSpan(10));
        h.SendFrame(FrameType.Priority, 0, 3, new byte[5]);   // ignored
        var data = new List<byte> { 4 };
        data.AddRange(RawHttp2.Message(new GetPlatformRequest()));
        data.AddRange(new byte[4]);
        h.SendFrame(FrameType.Data, Http2.FlagPadded | Http2.FlagEndStream, 1, data.ToArray());
        var frames = ResponseOf(h, 1);
        Assert.Equal([FrameType.Headers, FrameType.Data, FrameType.Headers], frames.Select(f => f.Type));
        var decoder = new HpackDecoder();
        var headers = RawHttp2.Headers(frames[0], decoder);
        Assert.Equal("200", Field(headers, ":status"));
        Assert.Equal("application/grpc", Field(headers, "content-type"));
        // Date, as Kestrel sends it (RFC 9110 section 6.6.1): gRPC C++ clients tell opening headers from a refusal by it.
        var date = DateTime.Parse(Field(headers, "date")!, System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.AdjustToUniversal);
        Assert.InRange(date, DateTime.UtcNow.AddMinutes(-1), DateTime.UtcNow.AddMinutes(1));
        var reply = GetPlatformResponse.Parser.ParseFrom(frames[1].Payload.AsSpan(5));
        Assert.Equal((ulong)s.Machine.Ram.Size, reply.RamRegions[0].Size);
        Assert.Equal("0", Field(RawHttp2.Headers(frames[2], decoder), "grpc-status"));
        Assert.True(frames[2].EndStream);
    }

    [Theory]
    [InlineData("/pcieemu.v1.PlatformService/NoSuchMethod", "Method is unimplemented")]
    [InlineData("/no.Such/Method", "Service is unimplemented")]
    public async Task An_unknown_method_gets_a_trailers_only_UNIMPLEMENTED(string path, string message)
    {
        await using var s = await Start();
        using var h = RawHttp2.Open(s.SocketPath);
        h.Unary(1, path, RawHttp2.Message([]));
        var frames = ResponseOf(h, 1);
        var only = frames[0];
        Assert.Equal(FrameType.Headers, only.Type);
        Assert.True(only.EndStream);
        var fields = RawHttp2.Headers(only, new HpackDecoder());
        Assert.Equal("200", Field(fields, ":status"));
        Assert.Equal(((int)StatusCode.Unimplemented).ToString(System.Globalization.CultureInfo.InvariantCulture), Field(fields, "grpc-status"));
        Assert.Contains(message, Field(fields, "grpc-message"), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(1, "gzip", StatusCode.Unimplemented, "not supported")]
    [InlineData(1, null, StatusCode.Internal, "no grpc-encoding")]
    [InlineData(0, null, StatusCode.InvalidArgument, "not a valid GetPlatformRequest")]
    public async Task Compressed_and_unparsable_messages_are_refused_with_a_status(byte flag, string? encoding, StatusCode code, string message)
    {
        await using var s = await Start();
        using var h = RawHttp2.Open(s.SocketPath);
        (string, string)[] extra = encoding == null ? [] : [("grpc-encoding", encoding)];
        h.Unary(1, GetPlatform, RawHttp2.Message([0xFF, 0xFF, 0xFF], flag), extra);
        var frames = ResponseOf(h, 1);
        var fields = RawHttp2.Headers(frames[^1], new HpackDecoder());
        Assert.Equal(((int)code).ToString(System.Globalization.CultureInfo.InvariantCulture), Field(fields, "grpc-status"));
        Assert.Contains(message, Uri.UnescapeDataString(Field(fields, "grpc-message")!), StringComparison.Ordinal);
        s.Logs.Forget("Malformed");
        s.Logs.Forget("not a valid");
    }

    [Fact]
    public async Task A_message_over_the_receive_limit_is_RESOURCE_EXHAUSTED_before_its_body_arrives()
    {
        await using var s = await Start();
        using var h = RawHttp2.Open(s.SocketPath);
        h.SendFrame(FrameType.Headers, Http2.FlagEndHeaders, 1, RawHttp2.RequestBlock("/pcieemu.v1.MemoryService/WriteMemory"));
        var prefix = new byte[5];
        BinaryPrimitives.WriteUInt32BigEndian(prefix.AsSpan(1), 5u << 20);
        h.SendFrame(FrameType.Data, 0, 1, prefix);
        var frames = ResponseOf(h, 1);
        var fields = RawHttp2.Headers(frames.First(f => f.Type == FrameType.Headers), new HpackDecoder());
        Assert.Equal(((int)StatusCode.ResourceExhausted).ToString(System.Globalization.CultureInfo.InvariantCulture), Field(fields, "grpc-status"));
        Assert.Contains("exceeds the maximum", Uri.UnescapeDataString(Field(fields, "grpc-message")!), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_reply_larger_than_the_peers_window_waits_for_WINDOW_UPDATE_and_then_completes()
    {
        await using var s = await Start();
        using var h = RawHttp2.Open(s.SocketPath, (Http2.SettingsInitialWindowSize, 100));
        h.Unary(1, ReadMemory, RawHttp2.Message(new ReadMemoryRequest { Address = s.Machine.Ram.Base, Length = 1000 }));
        // HEADERS and 100 bytes of DATA, then nothing until the window grows: a PING answered proves the connection is not stuck.
        var got = h.ReadUntil(f => f.Type == FrameType.Data && f.Stream == 1);
        int data = got.Last().Payload.Length;
        Assert.Equal(100, data);
        h.SendFrame(FrameType.Ping, 0, 0, new byte[8]);
        var next = h.ReadUntil(f => f.Type == FrameType.Ping);
        Assert.DoesNotContain(next, f => f.Stream == 1);
        h.SendFrame(FrameType.WindowUpdate, 0, 1, [0, 0, 0x10, 0]);
        var rest = ResponseOf(h, 1);
        data += rest.Where(f => f.Type == FrameType.Data).Sum(f => f.Payload.Length);
        Assert.Equal(5 + 1000 + 3, data);   // prefix, 1000 bytes, the field's tag and length
        Assert.Equal("0", Field(RawHttp2.Headers(rest[^1], new HpackDecoder()), "grpc-status"));
    }

    [Fact]
    public async Task A_reply_is_split_to_the_peers_max_frame_size()
    {
        await using var s = await Start();
        using var h = RawHttp2.Open(s.SocketPath);
        h.Unary(1, ReadMemory, RawHttp2.Message(new ReadMemoryRequest { Address = s.Machine.Ram.Base, Length = 40000 }));
        var frames = ResponseOf(h, 1).Where(f => f.Type == FrameType.Data).ToList();
        Assert.True(frames.Count >= 3);
        Assert.All(frames, f => Assert.True(f.Payload.Length <= 16384));
    }

    public static TheoryData<string, uint> MalformedPeers => new()
    {
        { "garbage preface", (uint)Http2Error.ProtocolError },
        { "first frame not SETTINGS", (uint)Http2Error.ProtocolError },
        { "oversized frame", (uint)Http2Error.FrameSizeError },
        { "bad HPACK", (uint)Http2Error.CompressionError },
        { "bad Huffman", (uint)Http2Error.CompressionError },
        { "DATA on an idle stream", (uint)Http2Error.ProtocolError },
        { "HEADERS on an even stream", (uint)Http2Error.ProtocolError },
        { "WINDOW_UPDATE of 0", (uint)Http2Error.ProtocolError },
        { "PING of 7 bytes", (uint)Http2Error.FrameSizeError },
        { "SETTINGS of 5 bytes", (uint)Http2Error.FrameSizeError },
        { "CONTINUATION without HEADERS", (uint)Http2Error.ProtocolError },
        { "interleaved frame in a header block", (uint)Http2Error.ProtocolError },
        { "PUSH_PROMISE", (uint)Http2Error.ProtocolError },
        { "bad padding", (uint)Http2Error.ProtocolError },
        { "header block over 64 KiB", (uint)Http2Error.EnhanceYourCalm },
        { "RST_STREAM on an idle stream", (uint)Http2Error.ProtocolError },
        { "bad MAX_FRAME_SIZE", (uint)Http2Error.ProtocolError },
    };

    [Theory]
    [MemberData(nameof(MalformedPeers))]
    public async Task A_malformed_peer_gets_GOAWAY_with_the_right_code_and_the_server_serves_on(string what, uint code)
    {
        await using var s = await Start();
        using (var h = what == "garbage preface" ? new RawHttp2(s.SocketPath) : RawHttp2.Open(s.SocketPath))
        {
            try
            {
                Misbehave(h, s, what, ref code);
            }
            catch (System.Net.Sockets.SocketException)
            {
                // The server may close the connection before the rest of the bad input is written.
            }
            var goAway = h.ReadGoAwayAndClose();
            Assert.True(goAway != null, $"{what}: no GOAWAY before the connection closed");
            Assert.Equal(code, goAway.Value.ErrorCode);
        }
        // The server goes on: a real client on a new connection.
        using var c = s.NewClient();
        Assert.Equal(0x10C98086u, await c.ReadConfig32Async(0x100, 0).W());
    }

    private static void Misbehave(RawHttp2 h, TestServer s, string what, ref uint code)
    {
        switch (what)
        {
            case "garbage preface": h.Send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"u8); break;
            case "first frame not SETTINGS":
                using (var raw = new RawHttp2(s.SocketPath))
                {
                    raw.Send(Http2.Preface);
                    raw.SendFrame(FrameType.Ping, 0, 0, new byte[8]);
                    Assert.Equal(code, raw.ReadGoAwayAndClose()!.Value.ErrorCode);
                }
                h.SendFrame(FrameType.Ping, 0, 0, [], lengthField: 16385);   // the outer connection: an oversized frame (its header) too
                code = (uint)Http2Error.FrameSizeError;
                break;
            case "oversized frame": h.SendFrame(FrameType.Data, 0, 1, new byte[16385]); break;
            case "bad HPACK": h.SendFrame(FrameType.Headers, Http2.FlagEndHeaders, 1, [0x80]); break;
            case "bad Huffman": h.SendFrame(FrameType.Headers, Http2.FlagEndHeaders, 1, [0x04, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]); break;
            case "DATA on an idle stream": h.SendFrame(FrameType.Data, 0, 7, RawHttp2.Message([])); break;
            case "HEADERS on an even stream": h.SendFrame(FrameType.Headers, Http2.FlagEndHeaders, 2, RawHttp2.RequestBlock(GetPlatform)); break;
            case "WINDOW_UPDATE of 0": h.SendFrame(FrameType.WindowUpdate, 0, 0, new byte[4]); break;
            case "PING of 7 bytes": h.SendFrame(FrameType.Ping, 0, 0, new byte[7]); break;
            case "SETTINGS of 5 bytes": h.SendFrame(FrameType.Settings, 0, 0, new byte[5]); break;
            case "CONTINUATION without HEADERS": h.SendFrame(FrameType.Continuation, Http2.FlagEndHeaders, 1, RawHttp2.RequestBlock(GetPlatform)); break;
            case "interleaved frame in a header block":
                h.SendFrame(FrameType.Headers, 0, 1, RawHttp2.RequestBlock(GetPlatform));
                h.SendFrame(FrameType.Ping, 0, 0, new byte[8]);
                break;
            case "PUSH_PROMISE": h.SendFrame(FrameType.PushPromise, Http2.FlagEndHeaders, 1, new byte[8]); break;
            case "bad padding": h.SendFrame(FrameType.Headers, Http2.FlagEndHeaders | Http2.FlagPadded, 1, [200, 0x82]); break;
            case "header block over 64 KiB":
                h.SendFrame(FrameType.Headers, 0, 1, new byte[16384]);
                for (int i = 0; i < 4; i++) h.SendFrame(FrameType.Continuation, 0, 1, new byte[16384]);
                break;
            case "RST_STREAM on an idle stream": h.SendFrame(FrameType.RstStream, 0, 9, new byte[4]); break;
            case "bad MAX_FRAME_SIZE": h.SendSettings((Http2.SettingsMaxFrameSize, 100)); break;
            default: throw new ArgumentException(what);
        }
    }

    [Fact]
    public async Task A_stream_that_overruns_its_window_is_reset_with_FLOW_CONTROL_ERROR_and_its_memory_stays_bounded()
    {
        await using var s = await Start();
        using var h = RawHttp2.Open(s.SocketPath);
        // A unary call whose messages are never read (it has not ended): the server stops giving the window
        // back once 2 MiB are queued, so a peer that ignores the window overruns it.
        h.SendFrame(FrameType.Headers, Http2.FlagEndHeaders, 1, RawHttp2.RequestBlock(GetPlatform));
        var frame = RawHttp2.Message(new byte[16384 - 5]);
        var reader = Task.Run(() => h.ReadUntil(f => f.Type == FrameType.RstStream && f.Stream == 1).Last());
        try
        {
            for (int i = 0; i < (6 << 20) / 16384 && !reader.IsCompleted; i++) h.SendFrame(FrameType.Data, 0, 1, frame);
        }
        catch (System.Net.Sockets.SocketException)
        {
        }
        var rst = await reader.W();
        Assert.Equal((uint)Http2Error.FlowControlError, rst.ErrorCode);
        h.Unary(3, GetPlatform, RawHttp2.Message(new GetPlatformRequest()));
        Assert.Equal("0", Field(RawHttp2.Headers(ResponseOf(h, 3)[^1], new HpackDecoder()), "grpc-status"));
    }

    [Fact]
    public async Task A_unary_reply_and_a_Transact_reply_each_leave_in_one_send()
    {
        await using var s = await Start();
        var server = (DirectServer)s.App.Services.GetService(typeof(DirectServer))!;
        using var h = RawHttp2.Open(s.SocketPath);
        h.ReadUntil(f => f.Type == FrameType.Settings && (f.Flags & Http2.FlagAck) != 0);
        // The server's first reply on a connection may include a window update; measure warm calls.
        h.Unary(1, GetPlatform, RawHttp2.Message(new GetPlatformRequest()));
        ResponseOf(h, 1);
        long before = server.Sends;
        h.Unary(3, GetPlatform, RawHttp2.Message(new GetPlatformRequest()));
        var frames = ResponseOf(h, 3);
        Assert.Equal([FrameType.Headers, FrameType.Data, FrameType.Headers], frames.Select(f => f.Type));
        Assert.Equal(before + 1, server.Sends);

        h.SendFrame(FrameType.Headers, Http2.FlagEndHeaders, 5, RawHttp2.RequestBlock("/pcieemu.v1.SessionService/Transact"));
        for (ulong tag = 1; tag <= 3; tag++)
        {
            long at = server.Sends;
            h.SendFrame(FrameType.Data, 0, 5, RawHttp2.Message(new TransactRequest { Tag = tag, ConfigRead = new ConfigReadOp { Rid = 0x100, Width = 4 } }));
            var reply = h.ReadUntil(f => f.Type == FrameType.Data && f.Stream == 5).Last();
            Assert.Equal(tag, TransactResponse.Parser.ParseFrom(reply.Payload.AsSpan(5)).Tag);
            // The first reply carries the response HEADERS in the same send.
            Assert.Equal(at + 1, server.Sends);
        }
        h.SendFrame(FrameType.Data, Http2.FlagEndStream, 5, []);
        Assert.Equal("0", Field(RawHttp2.Headers(ResponseOf(h, 5)[^1], new HpackDecoder()), "grpc-status"));
    }

    [Fact]
    public async Task Streams_beyond_MAX_CONCURRENT_STREAMS_are_refused_and_the_open_ones_go_on()
    {
        await using var s = await Start();
        using var h = RawHttp2.Open(s.SocketPath);
        var block = RawHttp2.RequestBlock("/pcieemu.v1.SessionService/Transact");
        for (int i = 0; i <= 1024; i++) h.SendFrame(FrameType.Headers, Http2.FlagEndHeaders, 1 + 2 * i, block);
        var rst = h.ReadUntil(f => f.Type == FrameType.RstStream).Last();
        Assert.Equal((1 + 2 * 1024, (uint)Http2Error.RefusedStream), (rst.Stream, rst.ErrorCode));
        h.SendFrame(FrameType.Data, Http2.FlagEndStream, 1, RawHttp2.Message(new TransactRequest { Tag = 9, ConfigRead = new ConfigReadOp { Rid = 0x100, Width = 4 } }));
        var frames = ResponseOf(h, 1);
        Assert.Equal(9ul, TransactResponse.Parser.ParseFrom(frames.First(f => f.Type == FrameType.Data).Payload.AsSpan(5)).Tag);
    }

    [Fact]
    public async Task Stopping_sends_GOAWAY_and_closes_the_connection()
    {
        var s = await Start();
        using var h = RawHttp2.Open(s.SocketPath);
        h.ReadUntil(f => f.Type == FrameType.Settings && (f.Flags & Http2.FlagAck) != 0);
        h.Unary(1, GetPlatform, RawHttp2.Message(new GetPlatformRequest()));
        ResponseOf(h, 1);
        var stopping = s.App.StopAsync();
        var goAway = h.ReadGoAwayAndClose();
        Assert.NotNull(goAway);
        Assert.Equal((uint)Http2Error.NoError, goAway.Value.ErrorCode);
        Assert.Equal(1, BinaryPrimitives.ReadInt32BigEndian(goAway.Value.Payload));   // the last stream it processed
        await stopping.W();
        await s.DisposeAsync();
    }

    [Fact]
    public async Task A_request_without_pseudo_headers_is_reset_and_the_connection_goes_on()
    {
        await using var s = await Start();
        using var h = RawHttp2.Open(s.SocketPath);
        h.SendFrame(FrameType.Headers, Http2.FlagEndHeaders | Http2.FlagEndStream, 1, RawHttp2.Block(("content-type", "application/grpc")));
        var rst = h.ReadUntil(f => f.Type == FrameType.RstStream).Last();
        Assert.Equal((uint)Http2Error.ProtocolError, rst.ErrorCode);
        h.Unary(3, GetPlatform, RawHttp2.Message(new GetPlatformRequest()));
        Assert.Equal("0", Field(RawHttp2.Headers(ResponseOf(h, 3)[^1], new HpackDecoder()), "grpc-status"));
    }
}
