// Example PF driver for the emulated 82576, a separate process talking to pcie-emu over gRPC.
// It follows the Linux igb driver's order of events (reset, SR-IOV, VMDq/loopback, mailbox
// interrupt, PFRSTD) and then serves its VFs' mailbox requests until stopped (Ctrl+C, SIGTERM or
// --duration). See docs/nic.md "Example drivers".
using PcieEmu.Client;
using PcieEmu.Drivers;
using PcieEmu.Protocol.V1;

const string Usage = """
usage: PfDriver [--target URL] [--token-file PATH] [--pf bb:dd.f] [--vfs N] [--no-ari] [--poll] [--duration SECONDS] [--timeout SECONDS]
                [--iommu] [--iova-base ADDR] [--iommu-unmapped N]... [--iommu-readonly N]...
  --target, --token-file  the server (default: $PCIEEMU_TARGET, the default socket, tcp://127.0.0.1:50551)
              and on TCP its token (default: $PCIEEMU_TOKEN, else the default token file)
  --pf        the PF (default 01:00.0)
  --vfs       VFs to enable (default 2; at most 7: the PF keeps the pool after its VFs)
  --poll      wait for mailbox events by polling MBVFICR/VFLRE instead of the MSI-X interrupt stream
  --duration  stop after this many seconds (default: run until Ctrl+C / SIGTERM)
  --iommu     enable VT-d: each VF in its own domain, its RAM area (0x1000000 + n * 0x800000,
              8 MiB) mapped at IOVA --iova-base (default 0x100000000); tables at 0x800000..0xC00000
  --iommu-unmapped N  attach VF N but map nothing (its DMA faults); repeatable
  --iommu-readonly N  map VF N's window read-only (the device's writes to it fault); repeatable
  With --iommu, stdin lines: "map N" maps VF N's window read/write (replacing a read-only
  mapping), "faults" prints and clears the fault records.
""";

Args a;
try { a = new Args(args, ["--no-ari", "--poll", "--iommu", "--help"]); }
catch (ArgumentException e) { Console.Error.WriteLine(e.Message); Console.Error.WriteLine(Usage); return 2; }
if (a.Flag("--help")) { Console.WriteLine(Usage); return 0; }

return await DriverMain.RunAsync("PfDriver", async () =>
{
    string? target = a.String("--target");
    string? tokenFile = a.String("--token-file");
    ushort pfRid = PciAddress.Parse(a.String("--pf") ?? "01:00.0");
    int numVfs = a.Int("--vfs", 2, 1, 7);
    bool ari = !a.Flag("--no-ari"), poll = a.Flag("--poll");
    int duration = a.Int("--duration", 0, 0);
    var timeout = TimeSpan.FromSeconds(a.Int("--timeout", 10, 1));
    bool iommu = a.Flag("--iommu");
    ulong iovaBase = a.Address("--iova-base", Layout.DefaultIovaBase);
    HashSet<int> VfList(string option) => a.All(option).Select(v => int.TryParse(v, out int n) && n >= 0 && n < numVfs ? n
        : throw new ArgumentException($"{option}: '{v}' is not a VF index in [0, {numVfs - 1}]")).ToHashSet();
    var unmapped = VfList("--iommu-unmapped");
    var readOnly = VfList("--iommu-readonly");
    if (!iommu && (unmapped.Count > 0 || readOnly.Count > 0 || a.String("--iova-base") != null))
        throw new ArgumentException("--iova-base, --iommu-unmapped and --iommu-readonly need --iommu");
    if (unmapped.Overlaps(readOnly)) throw new ArgumentException("--iommu-readonly: a VF is also in --iommu-unmapped");
    if ((iovaBase & 0x1F_FFFF) != 0) throw new ArgumentException($"--iova-base: 0x{iovaBase:X} is not 2 MiB aligned");
    a.CheckUnknown();

    using var stop = new CancellationTokenSource();
    Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
    using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
    if (duration > 0) stop.CancelAfter(TimeSpan.FromSeconds(duration));

    using var client = PcieEmuClient.Connect(target, tokenFile: tokenFile);
    using var ram = iommu ? await client.MapRamAsync(stop.Token) : null;
    var driver = new PfFunctionDriver(client, pfRid, numVfs, ari, poll, timeout) { Iommu = iommu ? new IommuOptions(iovaBase, ram, unmapped, readOnly) : null };
    await driver.ProbeAsync(stop.Token);
    if (iommu) _ = Task.Run(() => HostCommandsAsync(driver, stop.Token), stop.Token);
    await driver.ServeAsync(stop.Token);
    driver.PrintSummary();
    return 0;
});


// The host's console: commands on stdin while the driver serves (one at a time, so the VT-d
// driver is never used concurrently).
static async Task HostCommandsAsync(PfFunctionDriver driver, CancellationToken ct)
{
    while (await Console.In.ReadLineAsync(ct) is { } line)
    {
        var words = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        try
        {
            if (words is ["map", var n] && int.TryParse(n, out int vf)) await driver.MapVfWindowAsync(vf, PcieEmu.Client.Vtd.VtdAccess.ReadWrite, ct);
            else if (words is ["faults"]) await driver.ReportFaultsAsync(ct);
            else if (words.Length > 0) Log.Line($"PF: unknown command '{line}' (map N, faults)");
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException) { Log.Line($"PF: {line}: {e.Message}"); }
    }
}
