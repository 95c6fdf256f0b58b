// A consumer of the packed PcieEmu.Client (built by ClientPackageTests outside the repository).
// Usage: Consumer TARGET. Prints "CHECK name value" lines, "OK" at the end; exits 1 on a failed check.
using Grpc.Core;
using PcieEmu.Client;
using PcieEmu.Protocol.V1;

int failures = 0;
void Check(string name, bool ok, object value)
{
    Console.WriteLine($"CHECK {name} {value} {(ok ? "pass" : "FAIL")}");
    if (!ok) failures++;
}

using var emu = PcieEmuClient.Connect(args[0]);   // the token (TCP) is found by the client
Check("timeout", emu.Timeout == TimeSpan.FromSeconds(30), emu.Timeout);
Check("token", emu.HasToken == args[0].StartsWith("tcp://", StringComparison.Ordinal), emu.HasToken);
Check("no-server-bases", typeof(ConfigService).GetNestedTypes().All(t => !t.Name.EndsWith("ServiceBase", StringComparison.Ordinal)),
    string.Join(",", typeof(ConfigService).GetNestedTypes().Select(t => t.Name)));

var functions = await emu.ListFunctionsAsync();
Check("functions", functions.Any(f => f.Rid == 0x100 && f.VendorId == 0x8086), functions.Count);
uint id = await emu.ReadConfig32Async(0x100, 0x00);
Check("config-read", id == 0x10C98086u, $"0x{id:X8}");
var vfs = await emu.EnableSriovAsync(0x100, 2, settle: TimeSpan.Zero);
Check("sriov-enable", vfs.Count == 2 && vfs[0] == 0x180u && vfs[1] == 0x182u, string.Join(",", vfs.Select(r => $"0x{r:X}")));
Check("vf-config", await emu.ReadConfig16Async(vfs[0], 0x00) == 0xFFFF, "vf vendor all ones");

var platform = await emu.GetPlatformAsync();
uint ver = await emu.ReadMmio32Async(platform.IommuBase);
Check("mmio-read", ver == 0x10, $"0x{ver:X}");
ulong ram = platform.RamRegions[0].Base + 0x2000;
byte[] pattern = [0xDE, 0xAD, 0xBE, 0xEF, 1, 2, 3, 4];
int written = await emu.WriteMemoryAsync(ram, pattern);
byte[] back = await emu.ReadMemoryAsync(ram, pattern.Length);
Check("memory", written == pattern.Length && back.SequenceEqual(pattern), Convert.ToHexString(back));
using (var mem = await emu.OpenRamAsync())
using (var rpc = await emu.OpenRamAsync(preferRpc: true))
{
    byte[] viaMap = await mem.ReadAsync(ram, pattern.Length);
    await rpc.WriteAsync(ram + 8, pattern);
    byte[] mapped = await mem.ReadAsync(ram + 8, pattern.Length);
    Check("ram-map", mem.Mapped && !rpc.Mapped && viaMap.SequenceEqual(pattern) && mapped.SequenceEqual(pattern), Convert.ToHexString(mapped));
}
var t = await emu.TranslateAddressAsync(vfs[0], 0x1000, dryRun: true);
Check("translate", t.Status == TranslationStatus.TranslationDisabled && t.TranslatedAddress == 0x1000, t.Status);
int queues = await emu.InjectFrameAsync(0, new byte[64]);
Check("inject", queues >= 0, queues);
using (var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(300)))
{
    int frames = 0;
    try { await foreach (var _ in emu.CaptureFramesAsync(0, cts.Token)) frames++; }
    catch (Exception ex) when (ex is OperationCanceledException or RpcException { StatusCode: StatusCode.Cancelled }) { }
    Check("capture", frames == 0, frames);
}
try
{
    await emu.WithTimeout(TimeSpan.FromTicks(1)).ListFunctionsAsync();
    Check("deadline", false, "no DeadlineExceeded");
}
catch (RpcException ex)
{
    Check("deadline", ex.StatusCode == StatusCode.DeadlineExceeded, ex.StatusCode);
}
await emu.DisableSriovAsync(0x100, settle: TimeSpan.Zero);
Check("sriov-disable", (await emu.ListFunctionsAsync()).All(f => !f.IsVirtual), "no VFs");
Console.WriteLine(failures == 0 ? "OK" : $"{failures} FAILED");
return failures == 0 ? 0 : 1;
