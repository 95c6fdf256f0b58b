// Example PF driver for the emulated 82576, a separate process talking to pcie-emu over gRPC.
// It follows the Linux igb driver's order of events (reset, SR-IOV, VMDq/loopback, mailbox
// interrupt, PFRSTD) and then serves its VFs' mailbox requests until stopped (Ctrl+C, SIGTERM or
// --duration). See docs/nic.md "Example drivers".
using PcieEmu.Client;
using PcieEmu.Drivers;
using PcieEmu.Protocol.V1;

const string Usage = """
usage: PfDriver [--target URL] [--pf bb:dd.f] [--vfs N] [--no-ari] [--poll] [--duration SECONDS] [--timeout SECONDS]
  --pf        the PF (default 01:00.0)
  --vfs       VFs to enable (default 2; at most 7: the PF keeps the pool after its VFs)
  --poll      wait for mailbox events by polling MBVFICR/VFLRE instead of the MSI-X interrupt stream
  --duration  stop after this many seconds (default: run until Ctrl+C / SIGTERM)
""";

Args a;
try { a = new Args(args, ["--no-ari", "--poll", "--help"]); }
catch (ArgumentException e) { Console.Error.WriteLine(e.Message); Console.Error.WriteLine(Usage); return 2; }
if (a.Flag("--help")) { Console.WriteLine(Usage); return 0; }

return await DriverMain.RunAsync("PfDriver", async () =>
{
    string? target = a.String("--target");
    ushort pfRid = PciAddress.Parse(a.String("--pf") ?? "01:00.0");
    int numVfs = a.Int("--vfs", 2, 1, 7);
    bool ari = !a.Flag("--no-ari"), poll = a.Flag("--poll");
    int duration = a.Int("--duration", 0, 0);
    var timeout = TimeSpan.FromSeconds(a.Int("--timeout", 10, 1));
    a.CheckUnknown();

    using var stop = new CancellationTokenSource();
    Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
    using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
    if (duration > 0) stop.CancelAfter(TimeSpan.FromSeconds(duration));

    using var client = PcieEmuClient.Connect(target);
    var driver = new PfFunctionDriver(client, pfRid, numVfs, ari, poll, timeout);
    await driver.ProbeAsync(stop.Token);
    await driver.ServeAsync(stop.Token);
    driver.PrintSummary();
    return 0;
});

