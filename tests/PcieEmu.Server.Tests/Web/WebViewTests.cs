using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using PcieEmu.Core.Snapshots;
using PcieEmu.Server.Hosting;
using PcieEmu.Server.Web;

namespace PcieEmu.Server.Tests.Web;

/// <summary>The web view's endpoints without a browser: auth, every JSON endpoint, server push, bad input.</summary>
public sealed class WebViewTests : IAsyncLifetime
{
    private TestServer _server = null!;
    private HttpClient _http = null!;
    private string _token = "";

    public async Task InitializeAsync()
    {
        _server = await TestServer.StartAsync("unix", web: "tcp://127.0.0.1:0");
        _token = (await File.ReadAllTextAsync(_server.TokenFile).W()).Trim();
        _http = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false, UseCookies = false }) { BaseAddress = new Uri(_server.WebAddress!), Timeout = T.Timeout };
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", _token);
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await _server.DisposeAsync();
    }

    private async Task<(HttpStatusCode Status, string Body)> Get(string path, HttpClient? client = null)
    {
        using var r = await (client ?? _http).GetAsync(new Uri(path, UriKind.Relative)).W();
        return (r.StatusCode, await r.Content.ReadAsStringAsync().W());
    }

    private async Task<JsonElement> GetJson(string path)
    {
        var (status, body) = await Get(path);
        Assert.True(status == HttpStatusCode.OK, $"{path}: {status} {body}");
        return JsonDocument.Parse(body).RootElement.Clone();
    }

    [Fact]
    public async Task The_web_view_is_its_own_listener_and_is_logged_with_its_token_url()
    {
        Assert.StartsWith("http://127.0.0.1:", _server.WebAddress);
        Assert.StartsWith("unix://", _server.Target);   // BoundEndpoints lists gRPC endpoints only
        var (status, body) = await Get("/");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Contains("<script src=\"app.js\">", body);
        Assert.Equal(HttpStatusCode.OK, (await Get("/app.js")).Status);
        Assert.Equal(HttpStatusCode.OK, (await Get("/app.css")).Status);
        Assert.Equal(HttpStatusCode.NotFound, (await Get("/nothing.js")).Status);
    }

    [Fact]
    public async Task Without_the_token_every_path_is_401_with_a_message_and_a_wrong_token_is_403()
    {
        using var anon = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false, UseCookies = false }) { BaseAddress = new Uri(_server.WebAddress!), Timeout = T.Timeout };
        foreach (var path in new[] { "/", "/app.js", "/api/topology", "/api/functions/01:00.0", "/api/events", "/grpc.health.v1.Health/Check" })
        {
            var (status, body) = await Get(path, anon);
            Assert.Equal(HttpStatusCode.Unauthorized, status);
            Assert.Contains("needs the server's token", body);
        }
        var (s403, b403) = await Get("/?token=" + new string('0', 64), anon);
        Assert.Equal(HttpStatusCode.Forbidden, s403);
        Assert.Contains("wrong token", b403);
        using var wrongCookie = new HttpRequestMessage(HttpMethod.Get, "/api/topology");
        wrongCookie.Headers.Add("Cookie", WebView.CookieName(new Uri(_server.WebAddress!).Port) + "=" + new string('1', 64));
        using var r = await anon.SendAsync(wrongCookie).W();
        Assert.Equal(HttpStatusCode.Unauthorized, r.StatusCode);
    }

    [Fact]
    public async Task A_token_url_sets_an_HttpOnly_SameSite_Strict_cookie_and_redirects_to_the_clean_url()
    {
        using var anon = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false, UseCookies = false }) { BaseAddress = new Uri(_server.WebAddress!), Timeout = T.Timeout };
        using var r = await anon.GetAsync(new Uri($"/?token={_token}#x", UriKind.Relative)).W();
        Assert.Equal(HttpStatusCode.SeeOther, r.StatusCode);
        Assert.Equal("/", r.Headers.Location!.OriginalString);
        string cookie = Assert.Single(r.Headers.GetValues("Set-Cookie"));
        Assert.Contains("httponly", cookie, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("samesite=strict", cookie, StringComparison.OrdinalIgnoreCase);
        string pair = cookie.Split(';')[0];
        using var req = new HttpRequestMessage(HttpMethod.Get, "/api/topology");
        req.Headers.Add("Cookie", pair);
        using var ok = await anon.SendAsync(req).W();
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
    }

    [Fact]
    public async Task The_view_is_read_only_and_serves_nothing_but_itself()
    {
        using var post = await _http.PostAsync(new Uri("/api/topology", UriKind.Relative), new StringContent("{}")).W();
        Assert.Equal(HttpStatusCode.MethodNotAllowed, post.StatusCode);
        Assert.Contains("read-only", await post.Content.ReadAsStringAsync().W());
        var (status, body) = await Get("/api/setpci");
        Assert.Equal(HttpStatusCode.NotFound, status);
        Assert.Contains("no such endpoint", body);
    }

    [Fact]
    public async Task Topology_shows_VFs_as_they_appear_and_vanish()
    {
        var t = await GetJson("/api/topology");
        Assert.Equal(4, t.GetProperty("functions").GetArrayLength());
        var vfs = await _server.Client.EnableSriovAsync(0x100, 2, ari: false, settle: TimeSpan.Zero).W();
        t = await GetJson("/api/topology");
        var nodes = t.GetProperty("functions").EnumerateArray().ToList();
        Assert.Equal(6, nodes.Count);
        var vf = nodes.Single(n => n.GetProperty("rid").GetInt32() == (int)vfs[0]);
        Assert.Equal("vf", vf.GetProperty("kind").GetString());
        Assert.Equal(0x100, vf.GetProperty("parent").GetInt32());
        await _server.Client.DisableSriovAsync(0x100, settle: TimeSpan.Zero).W();
        Assert.Equal(4, (await GetJson("/api/topology")).GetProperty("functions").GetArrayLength());
    }

    [Fact]
    public async Task With_ARI_the_VFs_move_to_the_PFs_bus_in_the_tree()
    {
        var vfs = await _server.Client.EnableSriovAsync(0x100, 2, ari: true, settle: TimeSpan.Zero).W();
        var t = await GetJson("/api/topology");
        Assert.True(t.GetProperty("ariForwarding").GetBoolean());
        var vfNodes = t.GetProperty("functions").EnumerateArray().Where(n => n.GetProperty("kind").GetString() == "vf").ToList();
        Assert.Equal(2, vfNodes.Count);
        Assert.All(vfNodes, n => Assert.StartsWith("01:", n.GetProperty("bdf").GetString(), StringComparison.Ordinal));
        Assert.Equal((int)vfs[0], vfNodes[0].GetProperty("rid").GetInt32());
    }

    [Fact]
    public async Task Reading_every_endpoint_changes_nothing_in_the_machine()
    {
        var m = _server.Machine;
        await _server.Client.EnableSriovAsync(0x100, 2, ari: false, settle: TimeSpan.Zero).W();
        string Snap() => WebJson.Serialize(new object?[]
        {
            MachineSnapshots.Topology(m), MachineSnapshots.Function(m, 0x100), MachineSnapshots.Function(m, 0x280), MachineSnapshots.Iommu(m),
        });
        string before = Snap();
        foreach (var path in new[] { "/", "/api/topology", "/api/functions/01:00.0", "/api/functions/02:10.0", "/api/iommu?bdf=02:10.0&iova=0x1000",
            "/api/trace", "/api/counters", "/api/violations" })
            Assert.Equal(HttpStatusCode.OK, (await Get(path)).Status);
        Assert.Equal(before, Snap());
    }

    [Fact]
    public async Task A_function_snapshot_decodes_config_space_with_the_trace_names_and_lists_BAR_registers_and_MSIX()
    {
        var vfs = await _server.Client.EnableSriovAsync(0x100, 2, ari: false, settle: TimeSpan.Zero).W();
        var pf = await GetJson("/api/functions/01:00.0");
        Assert.Equal(4096, Convert.FromBase64String(pf.GetProperty("config").GetString()!).Length);
        var groups = pf.GetProperty("groups").EnumerateArray().ToList();
        Assert.Equal("Type 0 Header", groups[0].GetProperty("name").GetString());
        var sriov = groups.Single(g => g.GetProperty("name").GetString() == "SR-IOV");
        var control = sriov.GetProperty("registers").EnumerateArray().Single(r => r.GetProperty("name").GetString() == "SR-IOV Control");
        Assert.Equal(1u, control.GetProperty("fields").EnumerateArray().Single(f => f.GetProperty("name").GetString() == "VF Enable").GetProperty("value").GetUInt32());
        var numVfs = sriov.GetProperty("registers").EnumerateArray().Single(r => r.GetProperty("name").GetString() == "SR-IOV NumVFs");
        Assert.Equal(2u, numVfs.GetProperty("value").GetUInt32());
        Assert.Contains(pf.GetProperty("barRegisters").EnumerateArray(), r => r.GetProperty("name").GetString() == "TDT[0]");
        Assert.Equal(10, pf.GetProperty("msix").GetArrayLength());

        var vf = await GetJson($"/api/functions/{PcieEmu.Core.Topology.Bdf.Format((ushort)vfs[1])}");
        Assert.True(vf.GetProperty("isVirtual").GetBoolean());
        Assert.Equal(3, vf.GetProperty("msix").GetArrayLength());
        Assert.Contains(vf.GetProperty("groups").EnumerateArray(), g => g.GetProperty("name").GetString() == "MSI-X");
        Assert.Contains(vf.GetProperty("barRegisters").EnumerateArray(), r => r.GetProperty("name").GetString() == "VFMAILBOX");
    }

    [Fact]
    public async Task Unknown_and_malformed_BDFs_get_404_and_400_with_a_message()
    {
        var (s1, b1) = await Get("/api/functions/07:00.0");
        Assert.Equal(HttpStatusCode.NotFound, s1);
        Assert.Contains("no function answers at 07:00.0", b1);
        var (s2, b2) = await Get("/api/functions/zz:1");
        Assert.Equal(HttpStatusCode.BadRequest, s2);
        Assert.Contains("is not a BDF", b2);
        var (s3, b3) = await Get("/api/functions/01:00.0?x=1");
        Assert.Equal(HttpStatusCode.BadRequest, s3);
        Assert.Contains("unknown query parameter 'x'", b3);
    }

    [Theory]
    [InlineData("/api/topology?bdf=01:00.0", "unknown query parameter 'bdf'")]
    [InlineData("/api/iommu?bdf=01:00.0", "needs both bdf and iova")]
    [InlineData("/api/iommu?bdf=01:00.0&iova=zz", "iova: 'zz' is not a hex address")]
    [InlineData("/api/iommu?bdf=1:2:3:4&iova=0x1000", "is not a BDF")]
    [InlineData("/api/trace?limit=0", "limit: '0' must be a number 1..1000")]
    [InlineData("/api/trace?limit=abc", "limit: 'abc'")]
    [InlineData("/api/trace?kinds=CFG,BOGUS", "kinds: 'BOGUS' is not a trace kind")]
    [InlineData("/api/trace?bdf=1&bdf=2", "bdf: given 2 times")]
    [InlineData("/api/counters?limit=1", "unknown query parameter 'limit'")]
    [InlineData("/api/violations?all=1", "unknown query parameter 'all'")]
    [InlineData("/api/events?bdf=nope", "bdf: 'nope' is not a BDF")]
    [InlineData("/api/events?walk=01:00.0", "needs both walk and iova")]
    [InlineData("/app.js?x=1", "takes no query parameters")]
    public async Task Malformed_queries_get_400_with_a_message_naming_the_field(string path, string message)
    {
        var (status, body) = await Get(path);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains(message, body);
    }

    [Fact]
    public async Task Iommu_shows_state_faults_and_a_page_walk()
    {
        var idle = await GetJson("/api/iommu");
        Assert.False(idle.GetProperty("translationEnabled").GetBoolean());
        Assert.Equal(JsonValueKind.Null, idle.GetProperty("walk").ValueKind);
        var c = _server.Client;
        var vtd = await PcieEmu.Client.Vtd.VtdDriver.CreateAsync(c, 0x80_0000, 0x10_0000).W();
        var domain = await vtd.CreateDomainAsync(1).W();
        await vtd.AttachAsync(0x100, domain).W();
        await vtd.MapAsync(domain, 0x4000_0000, 0x20_0000, 0x1000).W();
        await vtd.EnableAsync().W();
        await c.TranslateAddressAsync(0x101, 0x1234_5000, write: true).W();   // no context entry: a recorded fault
        var j = await GetJson("/api/iommu?bdf=01:00.0&iova=0x4000_0010");
        Assert.True(j.GetProperty("translationEnabled").GetBoolean());
        var fault = j.GetProperty("faultRecords").EnumerateArray().Single(f => f.GetProperty("fault").GetBoolean());
        Assert.Equal("01:00.1", fault.GetProperty("sourceId").GetString());
        Assert.Equal("context not present", fault.GetProperty("reasonText").GetString());
        Assert.True(fault.GetProperty("write").GetBoolean());
        Assert.Equal("0x12345000", fault.GetProperty("pageAddress").GetString());
        var walk = j.GetProperty("walk");
        Assert.Equal("translated", walk.GetProperty("result").GetString());
        Assert.Equal("0x200010", walk.GetProperty("translated").GetString());
        var steps = walk.GetProperty("steps").EnumerateArray().Select(s => s.GetProperty("step").GetString()!).ToList();
        Assert.Equal("root", steps[0]);
        Assert.Equal("context", steps[1]);
        Assert.StartsWith("SL-PTE", steps[^1]);
        // The walk is a dry run: it fills no IOTLB entry and records no fault.
        var again = await GetJson("/api/iommu?bdf=01:00.1&iova=0x9000");
        Assert.Equal("fault", again.GetProperty("walk").GetProperty("result").GetString());
        Assert.Single(again.GetProperty("faultRecords").EnumerateArray(), f => f.GetProperty("fault").GetBoolean());
        Assert.Equal(0, again.GetProperty("iotlb").GetArrayLength());
    }

    [Fact]
    public async Task Trace_counters_and_violations_come_from_the_event_path_while_someone_looks()
    {
        var activity = (WebActivity)_server.App.Services.GetService(typeof(WebActivity))!;
        Assert.False(activity.Active);   // nobody looked yet: no subscription
        var first = await GetJson("/api/trace");
        Assert.True(activity.Active);
        Assert.Equal(0, first.GetProperty("lines").GetArrayLength());
        await _server.Client.ReadConfig32Async(0x100, 0).W();
        await _server.Client.EnableSriovAsync(0x100, 1, ari: false, settle: TimeSpan.Zero).W();
        var cfg = await GetJson("/api/trace?kinds=CFG&bdf=01:00.0&limit=5");
        var lines = cfg.GetProperty("lines").EnumerateArray().Select(l => l.GetProperty("line").GetString()!).ToList();
        Assert.InRange(lines.Count, 1, 5);
        Assert.All(lines, l => Assert.Contains(" 01:00.0 CFG ", l));
        var text = await GetJson("/api/trace?q=VF%20Enable");
        Assert.Contains(text.GetProperty("lines").EnumerateArray(), l => l.GetProperty("line").GetString()!.Contains("VF Enable 0->1", StringComparison.Ordinal));
        var life = await GetJson("/api/trace?kinds=LIFE");
        Assert.Contains(life.GetProperty("lines").EnumerateArray(), l => l.GetProperty("line").GetString()!.Contains("VF appeared", StringComparison.Ordinal));
        await GetJson("/api/counters");
        var v = await GetJson("/api/violations");
        Assert.True(v.GetProperty("checkerOn").GetBoolean());
        Assert.Equal(JsonValueKind.Array, v.GetProperty("violations").ValueKind);
    }

    [Fact]
    public async Task Server_push_sends_an_update_at_once_and_again_when_the_machine_changes()
    {
        using var req = new HttpRequestMessage(HttpMethod.Get, "/api/events?bdf=01:00.0");
        using var r = await _http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead).W();
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Equal("text/event-stream", r.Content.Headers.ContentType!.MediaType);
        using var reader = new StreamReader(await r.Content.ReadAsStreamAsync().W());
        async Task<JsonElement> NextUpdate()
        {
            while (true)
            {
                string? line = await reader.ReadLineAsync().W();
                Assert.NotNull(line);
                if (line.StartsWith("data: ", StringComparison.Ordinal)) return JsonDocument.Parse(line[6..]).RootElement.Clone();
            }
        }
        var u1 = await NextUpdate();
        Assert.Equal(4, u1.GetProperty("topology").GetProperty("functions").GetArrayLength());
        Assert.Equal("01:00.0", u1.GetProperty("function").GetProperty("bdf").GetString());
        await _server.Client.EnableSriovAsync(0x100, 2, ari: false, settle: TimeSpan.Zero).W();
        var deadline = T.Deadline;
        JsonElement u;
        do u = await NextUpdate();
        while (u.GetProperty("topology").GetProperty("functions").GetArrayLength() != 6 && DateTime.UtcNow < deadline);
        Assert.Equal(6, u.GetProperty("topology").GetProperty("functions").GetArrayLength());
    }

    [Fact]
    public async Task An_open_page_does_not_hold_up_the_server_stopping()
    {
        using var req = new HttpRequestMessage(HttpMethod.Get, "/api/events");
        using var r = await _http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead).W();
        using var reader = new StreamReader(await r.Content.ReadAsStreamAsync().W());
        while (await reader.ReadLineAsync().W() is { } line && !line.StartsWith("data: ", StringComparison.Ordinal)) { }
        var sw = System.Diagnostics.Stopwatch.StartNew();
        await _server.App.StopAsync().W();
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(3), $"stopping took {sw.Elapsed} with a page open");
        // The stream ended (the page's EventSource reconnects to the next server).
        var deadline = T.Deadline;
        while (await reader.ReadLineAsync().W() != null && DateTime.UtcNow < deadline) { }
    }

    [Fact]
    public async Task Server_push_is_coalesced_to_about_ten_updates_a_second_under_load()
    {
        using var req = new HttpRequestMessage(HttpMethod.Get, "/api/events");
        using var r = await _http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead).W();
        using var reader = new StreamReader(await r.Content.ReadAsStreamAsync().W());
        using var stop = new CancellationTokenSource();
        var load = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested) await _server.Client.ReadConfig32Async(0x100, 0).W();
        });
        int updates = 0;
        var sw = System.Diagnostics.Stopwatch.StartNew();
        while (sw.Elapsed < TimeSpan.FromSeconds(2))
        {
            string? line = await reader.ReadLineAsync().W();
            if (line != null && line.StartsWith("event: update", StringComparison.Ordinal)) updates++;
        }
        await stop.CancelAsync();
        await load.W();
        // Every config read changes the trace tail, yet the stream carries at most one update per period.
        Assert.InRange(updates, 2, (int)(sw.Elapsed / WebView.PushPeriod) + 2);
    }

    [Fact]
    public void The_web_option_parses_off_tcp_and_refuses_the_rest_naming_it()
    {
        Assert.Null(WebSettings.Parse(null, false));
        Assert.Null(WebSettings.Parse("off", false));
        Assert.Equal(50552, WebSettings.Parse(WebSettings.DefaultTarget, false)!.Port);
        Assert.Contains("--web", Assert.Throws<ServeConfigurationException>(() => WebSettings.Parse("unix:///tmp/x.sock", false)).Message);
        Assert.Contains("--allow-remote", Assert.Throws<ServeConfigurationException>(() => WebSettings.Parse("tcp://0.0.0.0:8080", false)).Message);
        Assert.Equal(8080, WebSettings.Parse("tcp://0.0.0.0:8080", true)!.Port);
        Assert.Contains("--web", Assert.Throws<ServeConfigurationException>(() => WebSettings.Parse("http://x", false)).Message);
    }

    [Fact]
    public void Descriptors_decode_the_82576_formats()
    {
        // Advanced TX data: buffer, 60 bytes, DCMD EOP|IFCS|RS|DEXT, DTYP data (3), DD set.
        ulong hi = 60 | 3u << 20 | (1u << 24 | 1u << 25 | 1u << 27 | 1u << 29) | 1UL << 32;
        Assert.Equal("adv data buf 0x0010_2000 len 60 DCMD 0x2B (EOP IFCS RS DEXT) PAYLEN 0 POPTS 0x00 STA DD=1", MachineSnapshots.DecodeTx(0x10_2000, hi));
        Assert.StartsWith("adv read pkt 0x0020_0000", MachineSnapshots.DecodeRx(0x20_0000, 0, advanced: true));
        Assert.StartsWith("adv write-back PKT_LEN 64", MachineSnapshots.DecodeRx(0, 64UL << 32 | 3, advanced: true));
    }
}

/// <summary>The web view is off unless asked for, and takes no extra listener then.</summary>
public sealed class WebViewOffTests
{
    [Fact]
    public async Task Without_web_there_is_no_web_listener()
    {
        await using var s = await TestServer.StartAsync("tcp");
        Assert.Null(s.WebAddress);
        Assert.Single(PcieEmu.Server.Hosting.ServerHost.BoundEndpoints(s.App));
    }

    [Fact]
    public async Task With_tcp_auth_none_the_view_needs_no_token()
    {
        await using var s = await TestServer.StartAsync("unix", tcpAuth: TcpAuthMode.None, web: "tcp://127.0.0.1:0");
        s.Logs.Forget("TCP authentication is OFF");
        using var http = new HttpClient { BaseAddress = new Uri(s.WebAddress!), Timeout = T.Timeout };
        using var r = await http.GetAsync(new Uri("/api/topology", UriKind.Relative)).W();
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
    }
}
