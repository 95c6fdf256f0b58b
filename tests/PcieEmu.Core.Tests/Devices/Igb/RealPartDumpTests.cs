using PcieEmu.Core.Config;
using PcieEmu.Core.Tests.Facts;

namespace PcieEmu.Core.Tests.Devices.Igb;

/// <summary>PF0 must equal the real 82576's config dump in every read-only bit.</summary>
public class RealPartDumpTests
{
    private static byte[] RealDump() =>
        LspciDump.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Data", "82576-pf-config.lspci-x.txt")));

    [Fact]
    public void DumpParsesToTheKnownIds()
    {
        var d = RealDump();
        Assert.Equal(0x86, d[0]); Assert.Equal(0x80, d[1]); Assert.Equal(0xC9, d[2]); Assert.Equal(0x10, d[3]);
        Assert.Equal(0x10, d[0x160]); Assert.Equal(0xCA, d[0x17A]);
    }

    [Fact]
    public void Pf0MatchesTheRealPartInEveryBitTheSpecsMakeReadOnly()
    {
        // The read-only bits come from the hand-written spec table (Facts/ConfigSpaceFacts), not
        // from our masks: a bit we wrongly made writable is still compared. Read through the
        // machine's config path.
        using var m = TestMachine.Create();
        var spec = ConfigSpaceFacts.For("PF0");
        var real = RealDump();
        var diffs = new List<string>();
        int compared = 0;
        for (int i = 0; i < ConfigSpace.Size; i++)
        {
            byte ro = spec.ReadOnly(i);
            byte ours = (byte)m.Read(TestMachine.Pf0, i, 1);
            if (ro == 0xFF) compared++;
            if (((ours ^ real[i]) & ro) != 0)
                diffs.Add($"0x{i:X3} ({spec.Field[i] ?? "read-only"}): ours {ours:X2} real {real[i]:X2} (RO mask {ro:X2})");
        }
        Assert.True(diffs.Count == 0, string.Join("\n", diffs));
        Assert.True(compared > 3900, $"only {compared} bytes compared in full");
    }

    [Fact]
    public void Pf0WithTheDumpsStateProgrammedReadsTheDumpExactly()
    {
        // Program what the dump's driver had programmed (BARs, command, NumVFs = 1, VF Enable|VF MSE,
        // VF BARs, device/link control ...) through ordinary config writes; then every byte except
        // live error/status bits must equal the real part.
        using var m = TestMachine.Create(new PcieEmu.Core.Platform.MachineOptions { FirmwareEnumeration = false });
        var real = RealDump();
        m.WriteConfig(0x0008, 0x18, 4, 0x00020100);   // root port buses so PF0 answers at 01:00.0
        foreach (int off in new[] { 0x10, 0x14, 0x18, 0x1C, 0x30, 0x3C, 0x0C, 0x54, 0x58, 0x5C, 0xA8, 0xB0, 0x184, 0x188, 0x190, 0x194, 0x170 })
            m.WriteConfig(0x0100, off, off == 0x0C || off == 0x3C ? 1 : (off is 0xA8 or 0xB0 or 0x170 ? 2 : 4),
                off == 0x0C || off == 0x3C ? real[off] : off is 0xA8 or 0xB0 or 0x170 ? (uint)(real[off] | real[off + 1] << 8) : BitConverter.ToUInt32(real, off));
        m.WriteConfig(0x0100, 0x04, 2, 0x0407);
        m.WriteConfig(0x0100, 0x72, 2, 0x8009 & 0xC000);
        m.WriteConfig(0x0100, 0x168, 2, 0x0009);
        var spec = ConfigSpaceFacts.For("PF0");
        var diffs = new List<string>();
        for (int i = 0; i < ConfigSpace.Size; i++)
        {
            byte ours = (byte)m.Read(TestMachine.Pf0, i, 1);
            if (((ours ^ real[i]) & ~spec.Rw1c[i]) != 0) diffs.Add($"0x{i:X3}: ours {ours:X2} real {real[i]:X2}");
        }
        // PMCSR Data_Select/PME state and DevCtl are left as reset; they are RW and compared above only as RO.
        Assert.True(diffs.Count == 0, string.Join("\n", diffs));
    }
}
