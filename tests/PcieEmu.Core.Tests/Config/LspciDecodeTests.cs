using System.Diagnostics;
using System.Text;
using PcieEmu.Core.Config;

namespace PcieEmu.Core.Tests.Config;

/// <summary>pciutils as an outside judge: `lspci -F dump -vvv` decodes every function with nothing malformed.</summary>
public class LspciDecodeTests
{
    internal static string RunLspci(string dump)
    {
        string file = Path.Combine(Path.GetTempPath(), $"pcieemu-lspci-{Guid.NewGuid():N}.txt");
        File.WriteAllText(file, dump);
        try
        {
            var psi = new ProcessStartInfo("lspci", ["-F", file, "-vvv"]) { RedirectStandardOutput = true, RedirectStandardError = true };
            using var p = Process.Start(psi) ?? throw new InvalidOperationException("lspci did not start (install pciutils)");
            string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
            Assert.True(p.WaitForExit(30_000), "lspci hung");
            Assert.Equal(0, p.ExitCode);
            return output;
        }
        finally { File.Delete(file); }
    }

    /// <summary>Runs lspci and asserts nothing in its decode is malformed, broken or unknown.</summary>
    internal static string RunLspciClean(string dump)
    {
        string text = RunLspci(dump);
        foreach (var bad in new[] { "<chain broken>", "<chain looped>", "<unreadable>", "Malformed", "malformed", "<?>", "Unknown" })
            Assert.DoesNotContain(bad, text);
        return text;
    }

    [Fact]
    public void LspciDecodesEveryFunctionCleanly()
    {
        using var m = TestMachine.Create();
        m.EnableVfs(0x0100, 2);
        m.EnableVfs(0x0101, 1);
        var sb = new StringBuilder();
        foreach (var f in m.EnumerateFunctions())
        {
            var bytes = new byte[ConfigSpace.Size];
            for (int off = 0; off < ConfigSpace.Size; off += 4)
                BitConverter.TryWriteBytes(bytes.AsSpan(off), m.Read(f.Rid, off));
            LspciDump.Append(sb, f.Rid, bytes);
        }
        string text = RunLspciClean(sb.ToString());
        Assert.Contains("01:00.0 Ethernet controller: Intel Corporation 82576", text);
        Assert.Contains("Single Root I/O Virtualization (SR-IOV)", text);
        Assert.Contains("Initial VFs: 8, Total VFs: 8, Number of VFs: 2, Function Dependency Link: 00", text);
        Assert.Contains("VF offset: 384, stride: 2, Device ID: 10ca", text);
        Assert.Contains("ARICap:\tMFVC- ACS-, Next Function: 1", text);
        Assert.Contains("Device Serial Number 00-1b-21-ff-ff-2b-46-e0", text);
        Assert.Contains("MSI-X: Enable- Count=10 Masked-", text);
        Assert.Contains("MSI-X: Enable- Count=3 Masked-", text);
        Assert.Contains("Root Port (Slot+)", text);
        Assert.Contains("ARIFwd-", text);
        Assert.Contains("Bus: primary=00, secondary=01, subordinate=02", text);
        Assert.Contains("FLReset+", text);
        Assert.Contains("Region 0: Memory at", text);
        Assert.Contains("Region 2: I/O ports at 1000", text);
    }
}
