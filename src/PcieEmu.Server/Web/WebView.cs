using System.Globalization;
using System.Net;
using System.Reflection;
using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using PcieEmu.Core.Events;
using PcieEmu.Core.Platform;
using PcieEmu.Core.Snapshots;
using PcieEmu.Core.Topology;
using PcieEmu.Server.Hosting;

namespace PcieEmu.Server.Web;

/// <summary>
/// The live machine view (issue 14): static files (the bundled page) and read-only JSON and
/// server-sent-event endpoints on the web listener. Every answer comes from a Core snapshot
/// (<see cref="MachineSnapshots"/>: one machine lock per snapshot, taken in Core). Only GET and
/// HEAD are served: nothing a page sends changes the machine. With auth on, a request needs the
/// token: <c>?token=</c> in the URL (answered with an HttpOnly SameSite=Strict cookie and a
/// redirect to the clean URL), the cookie, or <c>authorization: Bearer</c>.
/// </summary>
public sealed class WebView
{
    /// <summary>Server push: at most one update per this period per stream (about 10/s).</summary>
    public static readonly TimeSpan PushPeriod = TimeSpan.FromMilliseconds(100);

    /// <summary>A comment line keeps idle streams open through proxies this often.</summary>
    public static readonly TimeSpan KeepAlive = TimeSpan.FromSeconds(15);

    /// <summary>Trace lines an answer carries at most.</summary>
    public const int MaxTraceLines = 1000;

    private static readonly object WebKey = new();
    private static readonly Dictionary<string, (byte[] Body, string Type)> Files = LoadFiles();

    private readonly Machine _machine;
    private readonly ServerChecker _checker;
    private readonly WebActivity _activity;
    private readonly TokenGuard _guard;
    private readonly ServerShutdown _shutdown;

    internal WebView(Machine machine, ServerChecker checker, WebActivity activity, TokenGuard guard, ServerShutdown shutdown)
    {
        _shutdown = shutdown;
        _machine = machine;
        _checker = checker;
        _activity = activity;
        _guard = guard;
    }

    /// <summary>Marks every connection of <paramref name="listener"/> as the web view's (nothing else is served there).</summary>
    public static void MarkListener(ListenOptions listener) => ListenerMark.Mark(listener, WebKey);

    /// <summary>Whether the request arrived on the web listener.</summary>
    public static bool IsWebRequest(HttpContext context) => ListenerMark.Has(context, WebKey);

    /// <summary>The cookie that carries the token: per port, since browsers share cookies between ports of a host.</summary>
    public static string CookieName(int port) => $"pcieemu-web-{port.ToString(CultureInfo.InvariantCulture)}";

    /// <summary>Answers one request on the web listener.</summary>
    public async Task HandleAsync(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var req = context.Request;
        var res = context.Response;
        res.Headers["X-Content-Type-Options"] = "nosniff";
        res.Headers["X-Frame-Options"] = "DENY";
        res.Headers["Referrer-Policy"] = "no-referrer";
        res.Headers["Content-Security-Policy"] = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'";
        res.Headers.CacheControl = "no-store";
        if (!HttpMethods.IsGet(req.Method) && !HttpMethods.IsHead(req.Method))
        {
            res.Headers.Allow = "GET, HEAD";
            await Text(context, 405, $"{req.Method} is not allowed: the web view is read-only (GET and HEAD only)").ConfigureAwait(false);
            return;
        }
        if (_guard.Enabled && !await AuthorizeAsync(context).ConfigureAwait(false)) return;

        string path = req.Path.Value ?? "/";
        try
        {
            if (path.StartsWith("/api/", StringComparison.Ordinal)) await ApiAsync(context, path["/api/".Length..]).ConfigureAwait(false);
            else await StaticAsync(context, path).ConfigureAwait(false);
        }
        catch (BadQueryException ex)
        {
            await Json(context, 400, new { error = ex.Message }).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested || _shutdown.IsStopping)
        {
            // the page went away, or the server is stopping
        }
    }

    private async Task<bool> AuthorizeAsync(HttpContext context)
    {
        var req = context.Request;
        string cookie = CookieName(context.Connection.LocalPort);
        if (req.Query.TryGetValue("token", out var given))
        {
            if (given.Count != 1 || !_guard.Matches(given[0]))
            {
                await Text(context, 403, "wrong token: use the URL `pcie-emu serve` printed (Web view: http://HOST:PORT/?token=...), or the token in its token file").ConfigureAwait(false);
                return false;
            }
            context.Response.Cookies.Append(cookie, given[0]!.Trim(), new CookieOptions
            {
                HttpOnly = true, SameSite = SameSiteMode.Strict, Path = "/", Secure = false, IsEssential = true,
            });
            var rest = req.Query.Where(kv => kv.Key != "token").SelectMany(kv => kv.Value.Select(v => $"{Uri.EscapeDataString(kv.Key)}={Uri.EscapeDataString(v ?? "")}"));
            string q = string.Join('&', rest);
            context.Response.StatusCode = 303;
            context.Response.Headers.Location = (req.PathBase + req.Path).Value + (q.Length > 0 ? "?" + q : "");
            return false;
        }
        if (_guard.Matches(req.Cookies[cookie]) || _guard.MatchesHeader(req.Headers.Authorization)) return true;
        await Text(context, 401, "the web view needs the server's token: open the URL `pcie-emu serve` printed (Web view: http://HOST:PORT/?token=...), send 'authorization: Bearer <token>', or start the server with --tcp-auth none").ConfigureAwait(false);
        return false;
    }

    private static async Task StaticAsync(HttpContext context, string path)
    {
        if (context.Request.QueryString.HasValue && path != "/")
            throw new BadQueryException($"{path} takes no query parameters");
        string name = path == "/" ? "index.html" : path.TrimStart('/');
        if (!Files.TryGetValue(name, out var file))
        {
            await Text(context, 404, $"no such page: {path}").ConfigureAwait(false);
            return;
        }
        context.Response.StatusCode = 200;
        context.Response.ContentType = file.Type;
        context.Response.ContentLength = file.Body.Length;
        if (!HttpMethods.IsHead(context.Request.Method)) await context.Response.Body.WriteAsync(file.Body, context.RequestAborted).ConfigureAwait(false);
    }

    private async Task ApiAsync(HttpContext context, string api)
    {
        var q = context.Request.Query;
        switch (api)
        {
            case "topology":
                Allow(q);
                await Json(context, 200, MachineSnapshots.Topology(_machine)).ConfigureAwait(false);
                return;
            case "iommu":
            {
                Allow(q, "bdf", "iova");
                var (rid, iova) = WalkParameters(q);
                await Json(context, 200, MachineSnapshots.Iommu(_machine, rid, iova)).ConfigureAwait(false);
                return;
            }
            case "trace":
            {
                Allow(q, "kinds", "bdf", "q", "limit");
                var filter = TraceFilter.Parse(q);
                using var lease = _activity.Acquire();
                await Json(context, 200, Trace(lease.Live, filter)).ConfigureAwait(false);
                return;
            }
            case "counters":
            {
                Allow(q);
                using var lease = _activity.Acquire();
                await Json(context, 200, Counters(lease.Live)).ConfigureAwait(false);
                return;
            }
            case "violations":
                Allow(q);
                await Json(context, 200, Violations()).ConfigureAwait(false);
                return;
            case "events":
                await EventsAsync(context).ConfigureAwait(false);
                return;
        }
        if (api.StartsWith("functions/", StringComparison.Ordinal))
        {
            Allow(q);
            string text = Uri.UnescapeDataString(api["functions/".Length..]);
            if (!Bdf.TryParse(text, out ushort rid))
                throw new BadQueryException($"'{text}' is not a BDF (bb:dd.f, hex, e.g. 02:00.0)");
            var snap = MachineSnapshots.Function(_machine, rid);
            if (snap == null) await Json(context, 404, new { error = $"no function answers at {Bdf.Format(rid)} now" }).ConfigureAwait(false);
            else await Json(context, 200, snap).ConfigureAwait(false);
            return;
        }
        await Json(context, 404, new { error = $"no such endpoint: /api/{api} (topology, functions/BDF, iommu, trace, counters, violations, events)" }).ConfigureAwait(false);
    }

    /// <summary>
    /// Server push (text/event-stream): an <c>update</c> event with everything the page shows,
    /// sent when it changed, at most once per <see cref="PushPeriod"/>. Parameters: bdf (the
    /// selected function), walk + iova (a VT-d walk), kinds, tbdf, q, limit (the trace filter).
    /// </summary>
    private async Task EventsAsync(HttpContext context)
    {
        var q = context.Request.Query;
        Allow(q, "bdf", "walk", "iova", "kinds", "tbdf", "q", "limit");
        ushort? selected = null;
        if (q.TryGetValue("bdf", out var b) && b.Count > 0 && !string.IsNullOrEmpty(b[0]))
            selected = Bdf.TryParse(b[0], out ushort r) ? r : throw new BadQueryException($"bdf: '{b[0]}' is not a BDF (bb:dd.f, hex)");
        var (walkRid, walkIova) = WalkParameters(q, "walk");
        var filter = TraceFilter.Parse(q, "tbdf");
        var res = context.Response;
        res.StatusCode = 200;
        res.ContentType = "text/event-stream";
        context.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpResponseBodyFeature>()?.DisableBuffering();
        if (HttpMethods.IsHead(context.Request.Method)) return;
        // Ends when the page goes away or the server begins to stop (an open page does not hold up Ctrl-C).
        using var link = _shutdown.Link(context.RequestAborted);
        var ct = link.Token;
        using var lease = _activity.Acquire();
        string? last = null;
        var idleSince = DateTime.UtcNow;
        await res.WriteAsync("retry: 1000\n\n", ct).ConfigureAwait(false);
        await res.Body.FlushAsync(ct).ConfigureAwait(false);
        using var timer = new PeriodicTimer(PushPeriod);
        do
        {
            lease.Live.Drain();
            var fn = selected is { } rid ? MachineSnapshots.Function(_machine, rid) : null;
            var update = new
            {
                topology = MachineSnapshots.Topology(_machine),
                selected = selected is { } s ? Bdf.Format(s) : null,
                function = fn,
                iommu = MachineSnapshots.Iommu(_machine, walkRid, walkIova),
                counters = Counters(lease.Live),
                trace = Trace(lease.Live, filter),
                violations = Violations(),
            };
            string json = WebJson.Serialize(update);
            if (json != last)
            {
                await res.WriteAsync("event: update\ndata: " + json + "\n\n", ct).ConfigureAwait(false);
                await res.Body.FlushAsync(ct).ConfigureAwait(false);
                last = json;
                idleSince = DateTime.UtcNow;
            }
            else if (DateTime.UtcNow - idleSince > KeepAlive)
            {
                await res.WriteAsync(": keep-alive\n\n", ct).ConfigureAwait(false);
                await res.Body.FlushAsync(ct).ConfigureAwait(false);
                idleSince = DateTime.UtcNow;
            }
        }
        while (await timer.WaitForNextTickAsync(ct).ConfigureAwait(false));
    }

    private static (ushort?, ulong?) WalkParameters(IQueryCollection q, string bdfName = "bdf")
    {
        string? bdf = Single(q, bdfName), iova = Single(q, "iova");
        if (string.IsNullOrEmpty(bdf) && string.IsNullOrEmpty(iova)) return (null, null);
        if (string.IsNullOrEmpty(bdf) || string.IsNullOrEmpty(iova)) throw new BadQueryException($"a page walk needs both {bdfName} and iova");
        if (!Bdf.TryParse(bdf, out ushort rid)) throw new BadQueryException($"{bdfName}: '{bdf}' is not a BDF (bb:dd.f, hex)");
        string digits = iova.StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? iova[2..] : iova;
        if (!ulong.TryParse(digits.Replace("_", "", StringComparison.Ordinal), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong v))
            throw new BadQueryException($"iova: '{iova}' is not a hex address (e.g. 0x10000)");
        return (rid, v);
    }

    private static string? Single(IQueryCollection q, string name)
    {
        if (!q.TryGetValue(name, out var v)) return null;
        if (v.Count > 1) throw new BadQueryException($"{name}: given {v.Count} times");
        return v[0];
    }

    private static void Allow(IQueryCollection q, params string[] names)
    {
        foreach (var key in q.Keys)
        {
            if (!names.Contains(key))
                throw new BadQueryException(names.Length == 0
                    ? $"unknown query parameter '{key}': this endpoint takes none"
                    : $"unknown query parameter '{key}' (this endpoint takes: {string.Join(", ", names)})");
            if (q[key].Count > 1) throw new BadQueryException($"{key}: given {q[key].Count} times");
        }
    }

    private static List<WebCounters> Counters(LiveActivity live)
    {
        live.Drain();
        return [.. live.Counters().Select(c => new WebCounters(Bdf.Format(c.Rid), c.Frames, c.FrameBytes, c.Interrupts, c.DmaBytes, c.Faults))];
    }

    private static WebTrace Trace(LiveActivity live, TraceFilter filter)
    {
        live.Drain();
        var events = live.Tail(filter.Limit, filter.Matches);
        return new WebTrace([.. events.Select(e => new WebTraceLine((long)e.Sequence, TraceFormat.Token(e), e is GapEvent ? null : Bdf.Format(e.Rid), TraceFormat.Line(e)))],
            live.Seen, live.Missed);
    }

    private WebViolations Violations()
    {
        var c = _checker.Checker;
        if (c == null) return new WebViolations(false, []);
        return new WebViolations(true, [.. c.Violations().Select(v => new WebViolation((long)v.Sequence, v.Rule.Id, v.Rule.Severity.ToString(), v.Rule.Spec,
            v.Rule.Text, v.Rule.Hint, Bdf.Format(v.Rid), v.TimestampNs, v.Event, v.Outcome))]);
    }

    private static Task Json<T>(HttpContext context, int status, T value)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json; charset=utf-8";
        if (HttpMethods.IsHead(context.Request.Method)) return Task.CompletedTask;
        return context.Response.WriteAsync(WebJson.Serialize(value), context.RequestAborted);
    }

    private static Task Text(HttpContext context, int status, string message)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "text/plain; charset=utf-8";
        if (status == 401) context.Response.Headers.WWWAuthenticate = "Bearer";
        return context.Response.WriteAsync(message + "\n", context.RequestAborted);
    }

    private static Dictionary<string, (byte[], string)> LoadFiles()
    {
        var asm = typeof(WebView).Assembly;
        var files = new Dictionary<string, (byte[], string)>(StringComparer.Ordinal);
        foreach (string res in asm.GetManifestResourceNames())
        {
            if (!res.StartsWith("wwwroot/", StringComparison.Ordinal)) continue;
            using var s = asm.GetManifestResourceStream(res)!;
            using var ms = new MemoryStream();
            s.CopyTo(ms);
            string name = res["wwwroot/".Length..];
            string type = Path.GetExtension(name) switch
            {
                ".html" => "text/html; charset=utf-8",
                ".js" => "text/javascript; charset=utf-8",
                ".css" => "text/css; charset=utf-8",
                ".svg" => "image/svg+xml",
                _ => "application/octet-stream",
            };
            files[name] = (ms.ToArray(), type);
        }
        return files;
    }

    /// <summary>A malformed query: answered 400 with the message.</summary>
    private sealed class BadQueryException(string message) : Exception(message);

    /// <summary>The trace filter: kinds (trace tokens), one function, a text, a line limit.</summary>
    private sealed class TraceFilter
    {
        public HashSet<string>? Kinds { get; private init; }
        public ushort? Rid { get; private init; }
        public string? Text { get; private init; }
        public int Limit { get; private init; } = 200;

        // A gap always passes: it says events are missing from what is shown.
        public bool Matches(MachineEvent e) => e is GapEvent
            || ((Kinds == null || Kinds.Contains(TraceFormat.Token(e)))
                && (Rid == null || e.Rid == Rid)
                && (Text == null || TraceFormat.Line(e).Contains(Text, StringComparison.OrdinalIgnoreCase)));

        public static TraceFilter Parse(IQueryCollection q, string bdfName = "bdf")
        {
            HashSet<string>? kinds = null;
            if (Single(q, "kinds") is { Length: > 0 } k)
            {
                kinds = new HashSet<string>(StringComparer.Ordinal);
                foreach (var t in k.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                {
                    if (TraceFormat.KindOf(t) == null) throw new BadQueryException($"kinds: '{t}' is not a trace kind (CFG, MMIO, DMA, MSI, MSI-X, INTx, VTD-EVT, VTD, FRAME, LIFE)");
                    kinds.Add(t);
                }
            }
            ushort? rid = null;
            if (Single(q, bdfName) is { Length: > 0 } b)
                rid = Bdf.TryParse(b, out ushort r) ? r : throw new BadQueryException($"{bdfName}: '{b}' is not a BDF (bb:dd.f, hex)");
            int limit = 200;
            if (Single(q, "limit") is { } l && (!int.TryParse(l, NumberStyles.None, CultureInfo.InvariantCulture, out limit) || limit < 1 || limit > MaxTraceLines))
                throw new BadQueryException($"limit: '{l}' must be a number 1..{MaxTraceLines}");
            string? text = Single(q, "q") is { Length: > 0 } t2 ? (t2.Length > 200 ? throw new BadQueryException("q: at most 200 characters") : t2) : null;
            return new TraceFilter { Kinds = kinds, Rid = rid, Text = text, Limit = limit };
        }
    }
}
