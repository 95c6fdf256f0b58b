using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;
using PcieEmu.Client.Vtd;
using PcieEmu.Core.Topology;
using PcieEmu.Server.Tests;

namespace PcieEmu.Browser.Tests;

/// <summary>
/// The live machine view in a real browser: Debian's headless Chromium driven through its
/// chromedriver (Selenium), against an in-process server. The page is loaded once; everything
/// after that must arrive by server push. Screenshots of every view go to
/// $PCIEEMU_WEB_SCREENSHOTS (make web-screenshots: docs/web), else artifacts/web-screenshots.
/// </summary>
public sealed class WebViewBrowserTests : IAsyncLifetime
{
    private const string Chromium = "/usr/bin/chromium", ChromeDriver = "/usr/bin/chromedriver";
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(20);

    private TestServer _server = null!;
    private ChromeDriver _driver = null!;
    private ChromeDriverService? _service;
    private string _profile = "";

    public async Task InitializeAsync()
    {
        Assert.True(File.Exists(Chromium) && File.Exists(ChromeDriver),
            $"{Chromium} and {ChromeDriver} are needed (Debian packages chromium and chromium-driver: make deps installs them)");
        _server = await TestServer.StartAsync("unix", web: "tcp://127.0.0.1:0");
        _profile = Directory.CreateTempSubdirectory("pcie-emu-chromium-").FullName;
        var service = ChromeDriverService.CreateDefaultService(Path.GetDirectoryName(ChromeDriver)!, Path.GetFileName(ChromeDriver));
        service.SuppressInitialDiagnosticInformation = true;
        service.HideCommandPromptWindow = true;
        _service = service;
        var options = new ChromeOptions { BinaryLocation = Chromium };
        options.AddArguments("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
            "--no-first-run", "--disable-extensions", "--disable-background-networking", $"--user-data-dir={_profile}");
        _driver = new ChromeDriver(service, options, TimeSpan.FromSeconds(60));
        _driver.Manage().Timeouts().PageLoad = TimeSpan.FromSeconds(30);
        _driver.Manage().Timeouts().AsynchronousJavaScript = TimeSpan.FromSeconds(30);
    }

    public async Task DisposeAsync()
    {
        // Quit returns before Chromium's helper processes are gone: wait for the driver's whole process tree to end.
        var tree = _service == null ? [] : Descendants(_service.ProcessId);
        _driver?.Quit();
        _driver?.Dispose();
        _service?.Dispose();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (tree.Any(pid => Directory.Exists($"/proc/{pid}")) && DateTime.UtcNow < deadline) await Task.Delay(50);
        await _server.DisposeAsync();
        try { Directory.Delete(_profile, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    /// <summary><paramref name="root"/> and every process below it now (from /proc/PID/stat's parent field).</summary>
    private static List<int> Descendants(int root)
    {
        var parents = new Dictionary<int, int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid)) continue;
            try
            {
                string stat = File.ReadAllText(Path.Combine(dir, "stat"));
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                parents[pid] = int.Parse(fields[1], System.Globalization.CultureInfo.InvariantCulture);
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        var tree = new List<int> { root };
        for (int i = 0; i < tree.Count; i++) tree.AddRange(parents.Where(kv => kv.Value == tree[i]).Select(kv => kv.Key));
        return tree;
    }

    private static string ScreenshotDirectory()
    {
        if (Environment.GetEnvironmentVariable("PCIEEMU_WEB_SCREENSHOTS") is { Length: > 0 } d) return Directory.CreateDirectory(d).FullName;
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir != null && !File.Exists(Path.Combine(dir.FullName, "PcieEmu.sln"))) dir = dir.Parent;
        return Directory.CreateDirectory(Path.Combine(dir?.FullName ?? Path.GetTempPath(), "artifacts", "web-screenshots")).FullName;
    }

    private void Screenshot(string name) =>
        ((ITakesScreenshot)_driver).GetScreenshot().SaveAsFile(Path.Combine(ScreenshotDirectory(), name + ".png"));

    /// <summary>Polls until <paramref name="condition"/> holds (a failure names <paramref name="what"/> and shows the page's text).</summary>
    private void Until(string what, Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + Wait;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                if (condition()) return;
            }
            catch (WebDriverException) { }   // an element re-rendered under us: try again
            Thread.Sleep(50);
        }
        string text;
        try { text = _driver.FindElement(By.TagName("body")).Text; } catch (WebDriverException ex) { text = ex.Message; }
        Assert.Fail($"timed out waiting for {what}; the page shows:\n{text[..Math.Min(text.Length, 3000)]}");
    }

    private string FieldValue(string field) =>
        _driver.FindElement(By.CssSelector($"#decoded tr[data-field='{field}'] b")).Text;

    private void Tab(string tab)
    {
        _driver.FindElement(By.Id("tab-" + tab)).Click();
        Until($"tab {tab} active", () => _driver.FindElement(By.Id("tab-" + tab)).GetAttribute("class")!.Contains("active", StringComparison.Ordinal));
    }

    private void Open()
    {
        string token = File.ReadAllText(_server.TokenFile).Trim();
        _driver.Navigate().GoToUrl($"{_server.WebAddress}/?token={token}");
        // The token URL set the cookie and redirected to the clean URL.
        Until("the clean URL", () => !_driver.Url.Contains("token=", StringComparison.Ordinal));
        Until("the live status", () => _driver.FindElement(By.Id("status")).Text == "live");
        Until("the tree", () => _driver.FindElements(By.CssSelector(".tree-node")).Count == 4);
        ((IJavaScriptExecutor)_driver).ExecuteScript("window.__noReload = 42;");
    }

    private bool NotReloaded() => Equals(((IJavaScriptExecutor)_driver).ExecuteScript("return window.__noReload;"), 42L);

    [Fact]
    public async Task The_tree_follows_VFs_live_and_a_selected_VF_shows_decoded_fields()
    {
        Open();
        var vfs = await _server.Client.EnableSriovAsync(0x100, 2, ari: false, settle: TimeSpan.Zero).W();
        string vf0 = Bdf.Format((ushort)vfs[0]), vf1 = Bdf.Format((ushort)vfs[1]);
        Until("the two VFs in the tree", () => _driver.FindElements(By.CssSelector(".tree-node[data-kind='vf']")).Count == 2);
        Assert.True(NotReloaded(), "the page was reloaded");
        Assert.Single(_driver.FindElements(By.CssSelector($".tree-node[data-bdf='{vf1}']")));

        // The PF: its SR-IOV capability decoded field by field, with the trace's names.
        _driver.FindElement(By.CssSelector(".tree-node[data-bdf='01:00.0']")).Click();
        Until("the PF's SR-IOV fields", () => FieldValue("SR-IOV Control: VF Enable") == "1");
        Assert.Equal("1", FieldValue("SR-IOV Control: VF MSE"));

        // A VF: its MSI-X capability decoded, its table in the MSI-X view.
        _driver.FindElement(By.CssSelector($".tree-node[data-bdf='{vf0}']")).Click();
        Until("the VF's MSI-X fields", () => _driver.FindElements(By.CssSelector("#decoded [data-group='MSI-X']")).Count == 1);
        Assert.Equal("0", FieldValue("MSI-X Message Control: MSI-X Enable"));
        Assert.Equal("0", FieldValue("MSI-X Message Control: Function Mask"));
        Assert.Empty(_driver.FindElements(By.CssSelector("#decoded [data-group='SR-IOV']")));   // a VF has no SR-IOV capability

        // A config write shows up live: MSI-X Enable set by a "driver".
        await _server.Client.WriteConfig16Async(vfs[0], 0x70 + 2, 0x8000).W();
        Until("MSI-X Enable 1 pushed", () => FieldValue("MSI-X Message Control: MSI-X Enable") == "1");
        Until("the changed byte highlighted", () => _driver.FindElements(By.CssSelector("#hexgrid td.changed")).Count > 0);
        Screenshot("config");
        Tab("msix");
        Until("3 MSI-X vectors", () => _driver.FindElements(By.CssSelector("#msix tr[data-vector]")).Count == 3);
        Screenshot("msix");
        Tab("registers");
        Until("the VF's registers", () => _driver.FindElements(By.CssSelector("#registers tr[data-register='VFMAILBOX']")).Count == 1);
        Screenshot("registers");

        // The VFs vanish again without a reload.
        await _server.Client.DisableSriovAsync(0x100, settle: TimeSpan.Zero).W();
        Until("the VFs gone", () => _driver.FindElements(By.CssSelector(".tree-node[data-kind='vf']")).Count == 0);
        Assert.True(NotReloaded(), "the page was reloaded");
    }

    [Fact]
    public async Task A_VTd_fault_appears_decoded_and_the_trace_counters_and_violations_views_fill()
    {
        Open();
        var c = _server.Client;
        await TransmitOneFrameFromPf0Async();
        _driver.FindElement(By.CssSelector(".tree-node[data-bdf='01:00.0']")).Click();
        Tab("rings");
        // Written back: the device stored STA.DD in the upper dword (PAYLEN with it: 0).
        Until("the TX ring's written-back descriptor", () => _driver.FindElement(By.Id("rings")).Text.Contains("adv data buf 0x0011_0000 len 60 DCMD 0x2B (EOP IFCS RS DEXT) PAYLEN 0 POPTS 0x00 STA DD=1", StringComparison.Ordinal));
        Assert.Contains("base 0x100000 length 128 (8 descriptors) head 1 tail 1", _driver.FindElement(By.Id("rings")).Text, StringComparison.Ordinal);
        Screenshot("rings");
        var vfs = await c.EnableSriovAsync(0x100, 2, ari: false, settle: TimeSpan.Zero).W();
        Tab("vtd");
        Until("translation disabled", () => _driver.FindElement(By.Id("vtd-enabled")).Text == "disabled");
        var vtd = await VtdDriver.CreateAsync(c, 0x80_0000, 0x10_0000).W();
        var domain = await vtd.CreateDomainAsync(1).W();
        await vtd.AttachAsync(0x100, domain).W();
        await vtd.MapAsync(domain, 0x4000_0000, 0x20_0000, 0x1000).W();
        await vtd.EnableAsync().W();
        Until("translation enabled", () => _driver.FindElement(By.Id("vtd-enabled")).Text == "enabled");
        // The VF (on bus 2) has no root entry: its DMA faults and the fault is recorded.
        await c.TranslateAddressAsync(vfs[0], 0x1234_5000, write: true).W();
        string vf0 = Bdf.Format((ushort)vfs[0]);
        Until("the fault record", () => _driver.FindElements(By.CssSelector("#faults tr[data-fault]")).Count == 1);
        string row = _driver.FindElement(By.CssSelector("#faults tr[data-fault]")).Text;
        Assert.Contains(vf0, row, StringComparison.Ordinal);
        Assert.Contains("write", row, StringComparison.Ordinal);
        Assert.Contains("0x01 root not present", row, StringComparison.Ordinal);
        Assert.Contains("0x12345000", row, StringComparison.Ordinal);
        // The page walk of the PF's mapped IOVA.
        var bdf = _driver.FindElement(By.Id("walk-bdf"));
        bdf.Clear();
        bdf.SendKeys("01:00.0");
        var iova = _driver.FindElement(By.Id("walk-iova"));
        iova.Clear();
        iova.SendKeys("0x40000010" + Keys.Enter);
        Until("the walk", () => _driver.FindElements(By.Id("walk")).Count == 1 && _driver.FindElement(By.Id("walk")).Text.Contains("translated", StringComparison.Ordinal));
        Assert.Contains("0x200010", _driver.FindElement(By.Id("walk")).Text, StringComparison.Ordinal);
        Screenshot("vtd");

        Tab("trace");
        Until("config lines in the trace", () => _driver.FindElement(By.Id("trace")).Text.Contains("VF Enable 0->1", StringComparison.Ordinal));
        Until("the VT-d fault in the trace", () => _driver.FindElement(By.Id("trace")).Text.Contains(" VTD ", StringComparison.Ordinal));
        Screenshot("trace");
        Tab("counters");
        Until("the VF's fault counted", () => _driver.FindElements(By.CssSelector($"#counters tr[data-bdf='{vf0}']")).Count == 1);
        Until("the PF's frame counted", () => _driver.FindElement(By.CssSelector("#counters tr[data-bdf='01:00.0']")).Text.StartsWith("01:00.0 1 60 ", StringComparison.Ordinal));
        Assert.Single(_driver.FindElements(By.CssSelector("#rate-chart canvas")));
        Screenshot("counters");
        // A driver breaks a rule: NumVFs written while VF Enable is set.
        await c.WriteConfig16Async(0x100, 0x170, 1).W();
        Tab("violations");
        // Two: the VF's remapping fault (VTD.FAULT), then NumVFs.
        Until("the NumVFs violation", () => _driver.FindElements(By.CssSelector("#violations tr.bad")).Count == 2);
        var rows = _driver.FindElements(By.CssSelector("#violations tr.bad")).Select(r => r.Text).ToList();
        Assert.Contains("VTD.FAULT", rows[0], StringComparison.Ordinal);
        string violation = rows[1];
        Assert.Contains("SRIOV.NUMVFS_WHILE_ENABLED", violation, StringComparison.Ordinal);
        Assert.Contains("SR-IOV 1.1 §3.3.7 (NumVFs)", violation, StringComparison.Ordinal);
        Assert.Contains("01:00.0", violation, StringComparison.Ordinal);
        Screenshot("violations");
        Assert.True(NotReloaded(), "the page was reloaded");
    }

    /// <summary>PF0 queue 0 (a "driver" over gRPC): an 8-descriptor TX ring at 0x10_0000 with one advanced data descriptor of a 60-byte frame at 0x11_0000, then TDT = 1.</summary>
    private async Task TransmitOneFrameFromPf0Async()
    {
        var c = _server.Client;
        ulong bar0 = await c.ReadConfig32Async(0x100, 0x10).W() & ~0xFu;   // the 82576's BAR0 is 32-bit (firmware placed it)
        await c.WriteConfig16Async(0x100, 0x04, 0x0006).W();   // Memory Space, Bus Master
        byte[] frame = new byte[60];
        for (int i = 0; i < 6; i++) frame[i] = 0xFF;
        frame[6] = 0x02; frame[12] = 0x08; frame[13] = 0x00;
        await c.WriteMemoryAsync(0x11_0000, frame).W();
        byte[] desc = new byte[16];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(desc, 0x11_0000);
        ulong hi = 60 | 3u << 20 | (1u << 24 | 1u << 25 | 1u << 27 | 1u << 29) | 60UL << 46;
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(desc.AsSpan(8), hi);
        await c.WriteMemoryAsync(0x10_0000, new byte[128]).W();
        await c.WriteMemoryAsync(0x10_0000, desc).W();
        await c.WriteMmio32Async(bar0 + 0xE000, 0x10_0000).W();   // TDBAL[0]
        await c.WriteMmio32Async(bar0 + 0xE004, 0).W();           // TDBAH[0]
        await c.WriteMmio32Async(bar0 + 0xE008, 128).W();         // TDLEN[0]
        await c.WriteMmio32Async(bar0 + 0x0400, await c.ReadMmio32Async(bar0 + 0x0400).W() | 2).W();   // TCTL.EN
        await c.WriteMmio32Async(bar0 + 0xE018, 1).W();           // TDT[0]
    }

    [Fact]
    public void Without_the_token_the_browser_gets_the_401_message_not_the_page()
    {
        _driver.Navigate().GoToUrl(_server.WebAddress + "/");
        Until("the 401 message", () => _driver.FindElement(By.TagName("body")).Text.Contains("needs the server's token", StringComparison.Ordinal));
        Assert.Empty(_driver.FindElements(By.Id("app")));
    }
}
