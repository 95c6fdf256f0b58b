using PcieEmu.Core.Registers;
using static PcieEmu.Core.Registers.FieldSpec;

namespace PcieEmu.Core.Tests.Registers;

public class RegisterFileTests
{
    private static RegisterFile Sample() => new("T", 0x100, new RegisterMapBuilder()
        .Reg("CTL", 0x00, 0x0000_0005, Rw("EN", 0), Ro("ID", 1, 3), Sc("RST", 4), Rw("MODE", 8, 8), Rw("HI", 16, 16))
        .Reg("CAUSE", 0x04, 0, RcW1c("C", 0, 8))
        .Reg("STAT", 0x08, 0, W1c("ERR", 0, 4), Rc("CNT", 8, 8))
        .Reg("MASK", 0x0C, 0, W1s("M", 0, 8))
        .RegOn("MASKCLR", 0x10, "MASK", ClearOf("M", 0, 8))
        .RegOn("CAUSESET", 0x14, "CAUSE", SetOf("C", 0, 8))
        .Reg("DOOR", 0x18, 0, Wo("VAL", 0, 16))
        .Array("Q", 0x20, 4, 8, 0x11, Rw("V", 0, 8))
        .Specs);

    [Fact]
    public void ResetValuesAndReservedBits()
    {
        var f = Sample();
        Assert.Equal(0x5u, (uint)f.Read(0x00, 4));
        f.Write(0x00, 4, 0xFFFF_FFFF);
        // EN, MODE, HI writable; ID RO (keeps 0b010); RST self-clears; bits 5-7 reserved.
        Assert.Equal(0xFFFF_FF05u, (uint)f.Read(0x00, 4));
        Assert.Equal(0x11u, (uint)f.Read(0x30, 4));
    }

    [Fact]
    public void ByteAndWordAccessesTouchOnlyTheirLanes()
    {
        var f = Sample();
        f.Write(0x01, 1, 0xAB);
        Assert.Equal(0xAB05u, (uint)f.Read(0x00, 4));
        Assert.Equal(0xABu, (uint)f.Read(0x01, 1));
        f.Write(0x02, 2, 0x1234);
        Assert.Equal(0x1234_AB05u, (uint)f.Read(0x00, 4));
        Assert.Equal(0x1234u, (uint)f.Read(0x02, 2));
    }

    [Fact]
    public void EightByteAccessesAreTwoDwordsLowFirst()
    {
        var f = Sample();
        f.Write(0x20, 8, 0x0000_0077_0000_0066);
        Assert.Equal(0x66u, (uint)f.Read(0x20, 4));
        Assert.Equal(0UL, f.Read(0x24, 4));   // hole between array entries
        Assert.Equal(0x0000_0000_0000_0066UL, f.Read(0x20, 8));
    }

    [Fact]
    public void ClearOnReadAndWriteOneToClear()
    {
        var f = Sample();
        f["CAUSE"].HardwareSet(0x81);
        f.Write(0x04, 4, 0x01);                       // W1C part
        Assert.Equal(0x80u, f["CAUSE"].Value);
        Assert.Equal(0x80u, (uint)f.Read(0x04, 4));   // RC part
        Assert.Equal(0u, (uint)f.Read(0x04, 4));

        f["STAT"].HardwareSet(0x0F0F);
        Assert.Equal(0x0F0Fu, (uint)f.Read(0x08, 4));
        Assert.Equal(0x000Fu, (uint)f.Read(0x08, 4));   // CNT cleared by the read, ERR is W1C only
        f.Write(0x08, 4, 0x0F00);                        // writes to RC bits are ignored
        f.Write(0x08, 4, 0x0003);
        Assert.Equal(0x000Cu, (uint)f.Read(0x08, 4));
    }

    [Fact]
    public void SetClearPairs()
    {
        var f = Sample();
        f.Write(0x0C, 4, 0x03);
        f.Write(0x0C, 4, 0x00);
        Assert.Equal(0x03u, (uint)f.Read(0x0C, 4));
        f.Write(0x10, 4, 0x01);
        Assert.Equal(0x02u, (uint)f.Read(0x0C, 4));
        Assert.Equal(0u, (uint)f.Read(0x10, 4));
        f.Write(0x14, 4, 0x40);
        Assert.Equal(0x40u, f["CAUSE"].Value);
        Assert.Equal(0u, (uint)f.Read(0x14, 4));
    }

    [Fact]
    public void SideEffectsAreWiredByNameAndSeeOldAndWritten()
    {
        var f = Sample();
        var seen = new List<(uint Old, uint New, uint Written, uint Bytes)>();
        f.OnWrite("DOOR", (r, old, w, bytes) => seen.Add((old, r.Value, w, bytes)));
        f.Write(0x18, 2, 0xBEEF);
        Assert.Equal([(0u, 0u, 0xBEEFu, 0xFFFFu)], seen);
        Assert.Equal(0u, (uint)f.Read(0x18, 4));   // write-only
        uint counter = 7;
        f.OnRead("CTL", () => counter);
        Assert.Equal(0x7u, (uint)f.Read(0x00, 4) & 0xF);
        Assert.Throws<KeyNotFoundException>(() => f.OnWrite("NOPE", (_, _, _, _) => { }));
    }

    [Fact]
    public void UnknownOffsetsReadZeroAndIgnoreWrites()
    {
        var f = Sample();
        f.Write(0x1C, 4, 0xFFFF_FFFF);
        Assert.Equal(0UL, f.Read(0x1C, 4));
        f.Write(0x1000, 4, 1);   // outside the file
        Assert.Equal(0UL, f.Read(0x1000, 4));
    }

    [Fact]
    public void AliasesShareStorage()
    {
        var f = Sample();
        f.Alias(0x80, "CTL_ALIAS", f["CTL"]);
        f.Write(0x80, 4, 0x100);
        Assert.Equal(0x104u, (uint)f.Read(0x00, 4));   // EN written 0, MODE 1, ID unchanged
        Assert.Contains(f.Entries, e => e.Name == "CTL_ALIAS" && e.IsAlias);
    }

    [Fact]
    public void BadDeclarationsAreRejectedNamingTheProblem()
    {
        var e1 = Assert.Throws<ArgumentException>(() => new RegisterFile("T", 0x10, [new RegisterSpec("A", 2, 0, [Rw("X", 0)])]));
        Assert.Contains("aligned", e1.Message);
        var e2 = Assert.Throws<ArgumentException>(() => new RegisterFile("T", 0x10, [new RegisterSpec("A", 0, 0, [Rw("X", 0, 4), Rw("Y", 2, 4)])]));
        Assert.Contains("overlaps", e2.Message);
        var e3 = Assert.Throws<ArgumentException>(() => new RegisterFile("T", 0x10, [new RegisterSpec("A", 0, 0x100, [Rw("X", 0, 4)])]));
        Assert.Contains("reset value", e3.Message);
        var e4 = Assert.Throws<ArgumentException>(() => new RegisterFile("T", 0x10, [new RegisterSpec("A", 0, 0, [SetOf("X", 0)], "B")]));
        Assert.Contains("target", e4.Message);
        var e5 = Assert.Throws<ArgumentException>(() => new RegisterFile("T", 0x10,
            [new RegisterSpec("A", 0, 0, [Rw("X", 0)]), new RegisterSpec("B", 0, 0, [Rw("X", 0)])]));
        Assert.Contains("collides", e5.Message);
    }

    [Fact]
    public void SweepProvesTheSampleFile()
    {
        var f = Sample();
        int n = RegisterSweep.Sweep(f, (o, w) => f.Read(o, w), (o, w, v) => f.Write(o, w, v));
        Assert.Equal(f.Entries.Count, n);
        Assert.True(RegisterSweep.SweepHoles(f, (o, w) => f.Read(o, w), (o, w, v) => f.Write(o, w, v)) > 0);
    }

    [Fact]
    public void SweepCatchesAMisdeclaredRegister()
    {
        // The file says RW but the "hardware" (a side effect) undoes writes: the sweep must fail.
        var f = Sample();
        f.OnWrite("Q[0]", (r, _, _, _) => r.Value = 0x11);
        Assert.ThrowsAny<Xunit.Sdk.XunitException>(() =>
            RegisterSweep.Sweep(f, (o, w) => f.Read(o, w), (o, w, v) => f.Write(o, w, v)));
    }
}
