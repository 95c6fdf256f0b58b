using System.Collections;
using System.Diagnostics;
using System.Text.Json.Nodes;
using Google.Protobuf;
using Google.Protobuf.Reflection;
using Grpc.Core;
using PcieEmu.Client;
using PcieEmu.Protocol.V1;
using static PcieEmu.Conformance.CaseValues;

namespace PcieEmu.Conformance;

/// <summary>Runs the steps of cases against one server through the generated stubs.</summary>
internal sealed class CaseExecutor(PcieEmuClient client, TimeSpan rpcTimeout)
{
    private readonly Dictionary<string, ulong> _env = new(StringComparer.Ordinal);
    private static readonly JsonParser Parser = new(JsonParser.Settings.Default.WithIgnoreUnknownFields(false));
    private CancellationToken _ct;

    private DateTime Deadline => DateTime.UtcNow + rpcTimeout;

    public async Task<CaseResult> RunAsync(ConformanceCase c, CancellationToken ct)
    {
        _ct = ct;
        _env.Clear();
        var sw = Stopwatch.StartNew();
        try
        {
            await client.Platform.ResetPlatformAsync(new ResetPlatformRequest(), deadline: Deadline, cancellationToken: ct);
            for (int i = 0; i < c.Steps.Count; i++)
            {
                var step = c.Steps[i];
                string op = step["op"]!.GetValue<string>();
                try
                {
                    await StepAsync(op, step);
                }
                catch (CaseFailure ex)
                {
                    throw new CaseFailure($"step {i + 1} ({op}): {ex.Message}");
                }
                catch (CaseFileException ex)
                {
                    throw new CaseFailure($"step {i + 1} ({op}): bad case data: {ex.Message}");
                }
            }
            return new CaseResult(c.Name, c.Spec, true, "", sw.Elapsed);
        }
        catch (CaseFailure ex)
        {
            return new CaseResult(c.Name, c.Spec, false, ex.Message, sw.Elapsed);
        }
        catch (RpcException ex)
        {
            return new CaseResult(c.Name, c.Spec, false, $"gRPC error {CodeName(ex.StatusCode)}: {ex.Status.Detail}", sw.Elapsed);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            return new CaseResult(c.Name, c.Spec, false, $"{ex.GetType().Name}: {ex.Message}", sw.Elapsed);
        }
    }

    private Task StepAsync(string op, JsonObject s) => op switch
    {
        "reset" => ResetAsync(s),
        "get_platform" => GetPlatformAsync(s),
        "list_functions" => ListFunctionsAsync(s),
        "read_config" => ReadConfigAsync(s),
        "write_config" => WriteConfigAsync(s),
        "read_mmio" => ReadMmioAsync(s),
        "write_mmio" => WriteMmioAsync(s),
        "read_memory" => ReadMemoryAsync(s),
        "write_memory" => WriteMemoryAsync(s),
        "transact" => TransactAsync(s),
        "wait" => WaitAsync(s),
        "subscribe_interrupts" when s["while"] != null || Expect(s)["events"] != null => SubscribeAndCollectAsync(s),
        "subscribe_interrupts" => OpenStreamAsync(s, "subscribe", () => client.Interrupts.SubscribeInterrupts(Subscription(s), deadline: Deadline, cancellationToken: _ct), mustStayOpen: true),
        "capture_frames" when s["while"] != null || Expect(s)["frames"] != null => CaptureAndCollectAsync(s),
        "capture_frames" => OpenStreamAsync(s, "capture", () => client.Ethernet.CaptureFrames(
            new CaptureFramesRequest { Port = (uint)E(s, "port") }, deadline: Deadline, cancellationToken: _ct), mustStayOpen: false),
        "inject_frame" => UnaryFieldsAsync(s, async () => await client.Ethernet.InjectFrameAsync(
            new InjectFrameRequest { Port = (uint)E(s, "port"), Data = ByteString.CopyFrom(Data(s["data"], _env)) }, deadline: Deadline, cancellationToken: _ct)),
        "translate_address" => UnaryFieldsAsync(s, async () => await client.Iommu.TranslateAddressAsync(
            new TranslateAddressRequest
            {
                Rid = (uint)E(s, "rid"),
                Address = s["address"] is null ? 0 : E(s, "address"),
                Write = s["write"] is { } w && w.GetValue<bool>(),
                DryRun = s["dry_run"] is not { } d || d.GetValue<bool>(),
            }, deadline: Deadline, cancellationToken: _ct)),
        _ => throw new CaseFileException($"unknown op '{op}'"),
    };

    private ulong E(JsonObject s, string key) =>
        s[key] is { } n ? Evaluate(n, _env) : throw new CaseFileException($"missing '{key}'");

    private static JsonObject Expect(JsonObject s) => s["expect"] as JsonObject ?? [];

    /// <summary>Runs a unary call; returns null when it failed as the step expected.</summary>
    private async Task<T?> UnaryAsync<T>(JsonObject s, Func<Task<T>> call) where T : class
    {
        RpcException? error = null;
        T? response = null;
        try { response = await call(); }
        catch (RpcException ex) when (ex.StatusCode != StatusCode.Cancelled || !_ct.IsCancellationRequested) { error = ex; }
        return CheckError(s["op"]!.GetValue<string>(), error, Expect(s)) ? null : response;
    }

    private async Task UnaryFieldsAsync<T>(JsonObject s, Func<Task<T>> call) where T : class, IMessage =>
        CheckFields(await UnaryAsync(s, call), s);

    private void Save(JsonObject s, ulong value)
    {
        if (s["save"]?.GetValue<string>() is not { } name) return;
        ulong mask = s["save_mask"] is null ? ulong.MaxValue : Evaluate(s["save_mask"], _env);
        _env[name] = value & mask;
    }

    /// <summary>The longest pause a case may ask for (a typo such as 100000 fails instead of hanging).</summary>
    internal const ulong MaxWaitMs = 10_000;

    /// <summary>Milliseconds of a "wait" step's "ms" or a transact entry's "wait_ms", 1..MaxWaitMs.</summary>
    private ulong WaitMs(JsonObject s, string key)
    {
        ulong ms = E(s, key);
        if (ms == 0 || ms > MaxWaitMs) throw new CaseFileException($"'{key}' must be 1..{MaxWaitMs}, got {ms}");
        return ms;
    }

    /// <summary>Lets time pass on the machine's clock, as a driver waits (100 ms after VF Enable or an
    /// FLR): the server's clock is the wall clock, so a sleep here is that wait.</summary>
    private Task WaitAsync(JsonObject s) => SleepAsync(WaitMs(s, "ms"));

    /// <summary>Sleeps at least <paramref name="ms"/> ms by the Stopwatch: a timer may fire up to a
    /// tick early, and a driver's 100 ms must not come out as 99.5.</summary>
    private async Task SleepAsync(ulong ms)
    {
        var want = TimeSpan.FromMilliseconds(ms);
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < want) await Task.Delay(want - sw.Elapsed + TimeSpan.FromMilliseconds(1), _ct);
    }

    // -------- PlatformService

    private async Task ResetAsync(JsonObject s)
    {
        var r = await UnaryAsync(s, async () => await client.Platform.ResetPlatformAsync(new ResetPlatformRequest(), deadline: Deadline, cancellationToken: _ct));
        if (r != null && Expect(s)["functions"] is { } want) CompareField("functions", r.Functions, want, _env);
    }

    private async Task GetPlatformAsync(JsonObject s)
    {
        CheckFields(await UnaryAsync(s, async () => await client.Platform.GetPlatformAsync(new GetPlatformRequest(), deadline: Deadline, cancellationToken: _ct)), s);
    }

    private static object? GetPath(IMessage message, string path)
    {
        object? cur = message;
        foreach (var part in path.Split('.'))
        {
            if (int.TryParse(part, out int index))
            {
                if (cur is not IList list) throw new CaseFailure($"{path}: '{part}' indexes a field that is not repeated");
                if (index >= list.Count) throw new CaseFailure($"{path}: index {index} out of range (length {list.Count})");
                cur = list[index];
            }
            else
            {
                if (cur is not IMessage m || m.Descriptor.FindFieldByName(part) is not FieldDescriptor f) throw new CaseFailure($"{path}: no field '{part}'");
                cur = Value(f, m);
            }
        }
        return cur;
    }

    private async Task ListFunctionsAsync(JsonObject s)
    {
        var r = await UnaryAsync(s, async () => await client.Platform.ListFunctionsAsync(new ListFunctionsRequest(), deadline: Deadline, cancellationToken: _ct));
        if (r == null) return;
        var expect = Expect(s);
        var byRid = r.Functions.GroupBy(f => f.Rid).ToDictionary(g => g.Key, g => g.First());
        if (expect["rids"] is JsonArray rids)
        {
            var want = rids.Select(x => Evaluate(x, _env)).ToList();
            var got = r.Functions.Select(f => (ulong)f.Rid).ToList();
            if (!want.SequenceEqual(got))
                throw new CaseFailure($"functions {string.Join(", ", got.Select(Bdf))}; expected {string.Join(", ", want.Select(Bdf))}");
        }
        if (expect["functions"] is JsonObject functions)
        {
            foreach (var (ridText, fieldsNode) in functions)
            {
                ulong rid = Evaluate(ridText, _env);
                if (!byRid.TryGetValue((uint)rid, out var f)) throw new CaseFailure($"function {Bdf(rid)} is not listed");
                foreach (var (key, want) in (JsonObject)fieldsNode!)
                {
                    if (key == "bars")
                    {
                        foreach (var (idx, barFields) in (JsonObject)want!)
                        {
                            var bar = f.Bars.FirstOrDefault(b => b.Index == uint.Parse(idx, System.Globalization.CultureInfo.InvariantCulture))
                                ?? throw new CaseFailure($"{Bdf(rid)}: BAR {idx} not listed");
                            foreach (var (bk, bv) in (JsonObject)barFields!) CompareField($"{Bdf(rid)} bars[{idx}].{bk}", Field(bar, bk), bv, _env);
                        }
                    }
                    else if (key == "bar_count") CompareField($"{Bdf(rid)} bar count", (ulong)f.Bars.Count, want, _env);
                    else CompareField($"{Bdf(rid)}.{key}", Field(f, key), want, _env);
                }
            }
        }
        if (expect["absent"] is JsonArray absent)
            foreach (var x in absent)
                if (byRid.ContainsKey((uint)Evaluate(x, _env))) throw new CaseFailure($"function {Bdf(Evaluate(x, _env))} is listed but should not be");
    }

    private static object? Field(IMessage m, string name) =>
        m.Descriptor.FindFieldByName(name) is { } f ? Value(f, m) : throw new CaseFailure($"no field '{name}' in {m.Descriptor.Name}");

    /// <summary>A field's value; a singular enum as its proto value name (e.g. TRANSLATION_STATUS_OK).</summary>
    private static object? Value(FieldDescriptor f, IMessage m)
    {
        object? v = f.Accessor.GetValue(m);
        if (f.FieldType == FieldType.Enum && !f.IsRepeated && v != null)
        {
            int n = Convert.ToInt32(v, System.Globalization.CultureInfo.InvariantCulture);
            return f.EnumType.FindValueByNumber(n)?.Name ?? n.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        return v;
    }

    private void CheckFields(IMessage? response, JsonObject s)
    {
        if (response == null || Expect(s)["fields"] is not JsonObject fields) return;
        foreach (var (path, want) in fields) CompareField(path, GetPath(response, path), want, _env);
    }

    // -------- ConfigService / MmioService

    private async Task ReadConfigAsync(JsonObject s)
    {
        var req = new ReadConfigRequest { Rid = (uint)E(s, "rid"), Offset = (uint)E(s, "offset"), Width = (uint)E(s, "width") };
        var r = await UnaryAsync(s, async () => await client.Config.ReadConfigAsync(req, deadline: Deadline, cancellationToken: _ct));
        if (r == null) return;
        string what = $"config read {Bdf(req.Rid)} +{Hex(req.Offset)}/{req.Width}";
        CheckStatus(what, r.Status, Expect(s));
        CheckValue(what, r.Value, Expect(s), _env);
        Save(s, r.Value);
    }

    private async Task WriteConfigAsync(JsonObject s)
    {
        var req = new WriteConfigRequest { Rid = (uint)E(s, "rid"), Offset = (uint)E(s, "offset"), Width = (uint)E(s, "width"), Value = (uint)E(s, "value") };
        var r = await UnaryAsync(s, async () => await client.Config.WriteConfigAsync(req, deadline: Deadline, cancellationToken: _ct));
        if (r != null) CheckStatus($"config write {Bdf(req.Rid)} +{Hex(req.Offset)}/{req.Width}", r.Status, Expect(s));
    }

    private async Task ReadMmioAsync(JsonObject s)
    {
        var req = new ReadMmioRequest { Address = E(s, "address"), Width = (uint)E(s, "width") };
        var r = await UnaryAsync(s, async () => await client.Mmio.ReadMmioAsync(req, deadline: Deadline, cancellationToken: _ct));
        if (r == null) return;
        string what = $"mmio read {Hex(req.Address)}/{req.Width}";
        CheckStatus(what, r.Status, Expect(s));
        CheckValue(what, r.Value, Expect(s), _env);
        Save(s, r.Value);
    }

    private async Task WriteMmioAsync(JsonObject s)
    {
        var req = new WriteMmioRequest { Address = E(s, "address"), Width = (uint)E(s, "width"), Value = E(s, "value") };
        var r = await UnaryAsync(s, async () => await client.Mmio.WriteMmioAsync(req, deadline: Deadline, cancellationToken: _ct));
        if (r != null) CheckStatus($"mmio write {Hex(req.Address)}/{req.Width}", r.Status, Expect(s));
    }

    // -------- MemoryService

    private async Task ReadMemoryAsync(JsonObject s)
    {
        var req = new ReadMemoryRequest { Address = E(s, "address"), Length = (uint)E(s, "length") };
        var r = await UnaryAsync(s, async () => await client.Memory.ReadMemoryAsync(req, deadline: Deadline, cancellationToken: _ct));
        if (r == null) return;
        if (r.Data.Length != req.Length) throw new CaseFailure($"read {r.Data.Length} bytes, expected {req.Length}");
        if (Expect(s)["data"] is { } want)
        {
            var bytes = Data(want, _env);
            if (!r.Data.Span.SequenceEqual(bytes)) throw new CaseFailure($"data {HexPrefix(r.Data.Span)}, expected {HexPrefix(bytes)}");
        }
    }

    private static string HexPrefix(ReadOnlySpan<byte> b) => Convert.ToHexString(b[..Math.Min(64, b.Length)]).ToLowerInvariant();

    private async Task WriteMemoryAsync(JsonObject s)
    {
        var req = new WriteMemoryRequest { Address = E(s, "address"), Data = ByteString.CopyFrom(Data(s["data"], _env)) };
        var r = await UnaryAsync(s, async () => await client.Memory.WriteMemoryAsync(req, deadline: Deadline, cancellationToken: _ct));
        if (r != null && Expect(s)["length"] is { } want) CompareField("length", r.Length, want, _env);
    }

    // -------- SessionService

    /// <summary>Turns every scalar written as text ("0x..", "$var", "BB:DD.F") into a number and hex data into base64 (proto JSON).</summary>
    private JsonNode? Resolve(JsonNode? node, string? key = null)
    {
        switch (node)
        {
            case JsonObject o:
                var copy = new JsonObject();
                foreach (var (k, v) in o) copy[k] = Resolve(v, k);
                return copy;
            case JsonArray a:
                return new JsonArray([.. a.Select(x => Resolve(x))]);
            case JsonValue v when key == "data":
                return JsonValue.Create(Convert.ToBase64String(Data(v, _env)));
            case JsonValue v when v.GetValueKind() == System.Text.Json.JsonValueKind.String:
                return JsonValue.Create(Evaluate(v, _env).ToString(System.Globalization.CultureInfo.InvariantCulture));
            default:
                return node?.DeepClone();
        }
    }

    private TransactRequest Request(JsonObject item)
    {
        var copy = (JsonObject)item.DeepClone();
        var fill = copy["batch_fill"] as JsonObject;
        copy.Remove("batch_fill");
        var msg = Parser.Parse<TransactRequest>(Resolve(copy)!.ToJsonString());
        if (fill != null)
        {
            var template = Parser.Parse<Transaction>(Resolve(fill["template"])!.ToJsonString());
            ulong first = fill["first_tag"] is null ? 1 : Evaluate(fill["first_tag"], _env);
            ulong count = Evaluate(fill["count"], _env);
            for (ulong k = 0; k < count; k++)
            {
                var t = template.Clone();
                t.Tag = first + k;
                msg.Batch.Add(t);
            }
        }
        return msg;
    }

    private async Task TransactAsync(JsonObject s)
    {
        // An entry {"wait_ms": N} is no request: the runner pauses the stream there. Like a driver whose
        // non-posted request has completed before it starts to wait, it first waits for the completions
        // of every read sent before the entry, then N ms.
        var requests = ((JsonArray)s["requests"]!).Select(x => (JsonObject)x!)
            .Select(o => o["wait_ms"] != null
                ? (Req: (TransactRequest?)null, Wait: WaitMs(o, "wait_ms"), Read: false)
                : (Req: Request(o), Wait: 0UL, Read: o.Any(kv => kv.Key.EndsWith("_read", StringComparison.Ordinal)))).ToList();
        var got = new List<Completion>();
        using var arrived = new SemaphoreSlim(0);
        int Count() { lock (got) return got.Count; }
        RpcException? error = null;
        using var call = client.Session.Transact(deadline: Deadline, cancellationToken: _ct);
        try
        {
            var reading = Task.Run(async () =>
            {
                while (await call.ResponseStream.MoveNext(_ct))
                {
                    var r = call.ResponseStream.Current;
                    lock (got)
                    {
                        got.Add(new Completion { Tag = r.Tag, Status = r.Status, Value = r.Value, Data = r.Data, Kind = r.Kind });
                        got.AddRange(r.More);
                    }
                    arrived.Release();
                }
            }, _ct);
            try
            {
                int reads = 0;
                foreach (var (req, wait, read) in requests)
                {
                    if (req is null)
                    {
                        while (Count() < reads && !reading.IsCompleted)
                            await arrived.WaitAsync(TimeSpan.FromMilliseconds(50), _ct);
                        await SleepAsync(wait);
                    }
                    else
                    {
                        if (read) reads++;
                        await call.RequestStream.WriteAsync(req, _ct);
                    }
                }
                await call.RequestStream.CompleteAsync();
            }
            catch (RpcException) { /* the stream ended early (an expected error); the reader reports it */ }
            catch (InvalidOperationException) { /* writing after the server ended the call */ }
            await reading;
        }
        catch (RpcException ex) { error = ex; }

        var expect = Expect(s);
        string StreamError() => error == null ? "" : $" (stream error {CodeName(error.StatusCode)}: {error.Status.Detail})";
        if (expect["completions"] is JsonArray wantList)
        {
            var tags = string.Join(", ", got.Select(c => c.Tag));
            if (got.Count != wantList.Count) throw new CaseFailure($"{got.Count} completion(s) with tags [{tags}], expected {wantList.Count}{StreamError()}");
            for (int k = 0; k < got.Count; k++)
            {
                var c = got[k];
                var w = (JsonObject)wantList[k]!;
                string what = $"completion {k} (tag {c.Tag})";
                if (w["tag"] is { } wt && c.Tag != Evaluate(wt, _env))
                    throw new CaseFailure($"{what}: tag {c.Tag}, expected {Evaluate(wt, _env)} (completions out of order or tags not echoed: [{tags}])");
                if (w["status"] != null) CheckStatus(what, c.Status, w);
                CheckValue(what, c.Value, w, _env);
                if (w["kind"]?.GetValue<string>() is { } kind)
                {
                    var want = KindEnum.FindValueByName("TRANSACTION_KIND_" + kind) ?? throw new CaseFileException($"unknown kind '{kind}'");
                    if ((int)c.Kind != want.Number)
                        throw new CaseFailure($"{what}: kind {KindEnum.FindValueByNumber((int)c.Kind)?.Name}, expected {want.Name}");
                }
                if (w["data"] is { } wd && !c.Data.Span.SequenceEqual(Data(wd, _env)))
                    throw new CaseFailure($"{what}: data {HexPrefix(c.Data.Span)}, expected {HexPrefix(Data(wd, _env))}");
                if (w["save"]?.GetValue<string>() is { } name) _env[name] = c.Value;
            }
        }
        if (expect["count"] is { } count && (ulong)got.Count != Evaluate(count, _env))
            throw new CaseFailure($"{got.Count} completion(s), expected {Evaluate(count, _env)}{StreamError()}");
        if (expect["first_tag"] is { } ft)
        {
            ulong first = Evaluate(ft, _env);
            for (int k = 0; k < got.Count; k++)
                if (got[k].Tag != first + (ulong)k) throw new CaseFailure($"completion {k}: tag {got[k].Tag}, expected {first + (ulong)k} (completions out of order)");
        }
        if (expect["all"] is JsonObject all)
        {
            for (int k = 0; k < got.Count; k++)
            {
                string what = $"completion {k} (tag {got[k].Tag})";
                if (all["status"] != null) CheckStatus(what, got[k].Status, all);
                CheckValue(what, got[k].Value, all, _env);
            }
        }
        CheckError("stream", error, expect);
    }

    // -------- server streams (InterruptService, EthernetService.CaptureFrames)

    private SubscribeInterruptsRequest Subscription(JsonObject s) =>
        new() { Rids = { ((s["rids"] as JsonArray) ?? []).Select(r => (uint)Evaluate(r, _env)) } };

    /// <summary>Subscribes, runs the nested 'while' steps, then expects the listed events in order.</summary>
    private Task SubscribeAndCollectAsync(JsonObject s) =>
        CollectAsync(s, ct => client.Interrupts.SubscribeInterrupts(Subscription(s), cancellationToken: ct), "events", "event", CheckEvent);

    /// <summary>Opens CaptureFrames, runs the nested 'while' steps, then expects the listed frames in order.</summary>
    private Task CaptureAndCollectAsync(JsonObject s) =>
        CollectAsync(s, ct => client.Ethernet.CaptureFrames(new CaptureFramesRequest { Port = (uint)E(s, "port") }, cancellationToken: ct),
            "frames", "frame", CheckFrame);

    private void CheckEvent(string what, InterruptEvent ev, JsonObject want)
    {
        foreach (var (key, w) in want)
        {
            if (key == "kind")
            {
                string name = InterruptEvent.Descriptor.FindFieldByName("kind").EnumType.FindValueByNumber((int)ev.Kind)?.Name.Replace("INTERRUPT_KIND_", "", StringComparison.Ordinal) ?? ev.Kind.ToString();
                if (name != w!.GetValue<string>()) throw new CaseFailure($"{what}: kind {name}, expected {w.GetValue<string>()}");
            }
            else CompareField($"{what}.{key}", Field(ev, key), w, _env);
        }
    }

    private void CheckFrame(string what, CapturedFrame frame, JsonObject want)
    {
        foreach (var (key, w) in want)
        {
            if (key == "data")
            {
                var bytes = Data(w, _env);
                if (!frame.Data.Span.SequenceEqual(bytes)) throw new CaseFailure($"{what}: data {HexPrefix(frame.Data.Span)}, expected {HexPrefix(bytes)}");
            }
            else CompareField($"{what}.{key}", Field(frame, key), w, _env);
        }
    }

    /// <summary>With a live server stream: runs the nested 'while' steps, then expects the first messages to
    /// match the list under <paramref name="listKey"/> of the step's expect, in order.</summary>
    private async Task CollectAsync<T>(JsonObject s, Func<CancellationToken, AsyncServerStreamingCall<T>> open, string listKey, string noun,
        Action<string, T, JsonObject> check)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(_ct);
        using var call = open(cts.Token);
        try
        {
            await call.ResponseHeadersAsync.WaitAsync(rpcTimeout, _ct); // live from here on
            var inner = (s["while"] as JsonArray) ?? [];
            for (int j = 0; j < inner.Count; j++)
            {
                var step = (JsonObject)inner[j]!;
                string op = step["op"]!.GetValue<string>();
                try { await StepAsync(op, step); }
                catch (CaseFailure ex) { throw new CaseFailure($"while[{j + 1}] ({op}): {ex.Message}"); }
            }
            var wanted = (Expect(s)[listKey] as JsonArray) ?? [];
            for (int k = 0; k < wanted.Count; k++)
            {
                bool more;
                try
                {
                    more = await call.ResponseStream.MoveNext(cts.Token).WaitAsync(rpcTimeout, _ct);
                }
                catch (TimeoutException) { throw new CaseFailure($"{noun} {k}: none arrived within {rpcTimeout.TotalSeconds:0} s"); }
                catch (RpcException ex) { throw new CaseFailure($"{noun} {k}: stream error {CodeName(ex.StatusCode)}: {ex.Status.Detail}"); }
                if (!more) throw new CaseFailure($"{noun} {k}: the stream ended");
                check($"{noun} {k}", call.ResponseStream.Current, (JsonObject)wanted[k]!);
            }
        }
        finally
        {
            await cts.CancelAsync();
        }
    }

    /// <summary>How long a server stream must stay open, after its headers, to count as live.</summary>
    public static readonly TimeSpan StreamGrace = TimeSpan.FromMilliseconds(300);

    private async Task OpenStreamAsync<T>(JsonObject s, string what, Func<AsyncServerStreamingCall<T>> open, bool mustStayOpen)
    {
        RpcException? error = null;
        bool live = false;
        using (var cts = CancellationTokenSource.CreateLinkedTokenSource(_ct))
        using (var call = open())
        {
            try
            {
                await call.ResponseHeadersAsync.WaitAsync(rpcTimeout, _ct);
                // A rejected call may answer with trailers only: its first read then fails at once.
                var move = call.ResponseStream.MoveNext(cts.Token);
                // When the step expects an error, wait for it as long as for any RPC (no heuristic).
                var grace = Expect(s)["error"] != null ? rpcTimeout : StreamGrace;
                var first = await Task.WhenAny(move, Task.Delay(grace, _ct));
                if (first == move) live = await move; // an event arrived: live; false: the stream ended
                else
                {
                    live = true;
                    _ = move.ContinueWith(t => t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
                }
            }
            catch (RpcException ex) { error = ex; }
            await cts.CancelAsync();
        }
        if (!CheckError(what, error, Expect(s)) && mustStayOpen && !live)
            throw new CaseFailure("the subscription ended at once");
    }
}
