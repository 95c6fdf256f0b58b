using PcieEmu.Core.Config;

namespace PcieEmu.Core.Tests.Config;

/// <summary>BAR sizing as software does it: save, write all ones, read back, restore.</summary>
public class BarSizingTests
{
    private static ulong Size(uint readBack, uint mask) => (~(readBack & mask) + 1) & mask;

    [Theory]
    [InlineData(0x10, 0xFFFF_FFF0u, 128 * 1024, 0x0u)]   // BAR0 32-bit memory
    [InlineData(0x14, 0xFFFF_FFF0u, 4 * 1024 * 1024, 0x0u)]
    [InlineData(0x18, 0xFFFF_FFFCu, 32, 0x1u)]           // BAR2 I/O
    [InlineData(0x1C, 0xFFFF_FFF0u, 16 * 1024, 0x0u)]
    [InlineData(0x30, 0xFFFF_F800u, 4 * 1024 * 1024, 0x0u)]   // expansion ROM (enable stays clear)
    public void PfBarsSizeAsTheRealPart(int off, uint mask, ulong size, uint typeBits)
    {
        using var m = TestMachine.Create();
        uint saved = m.Read(0x0100, off);
        m.Write(0x0100, off, 4, off == 0x30 ? 0xFFFF_F800u : 0xFFFF_FFFFu);
        uint rb = m.Read(0x0100, off);
        Assert.Equal(size, Size(rb, mask));
        Assert.Equal(typeBits, rb & (off == 0x18 ? 0x3u : off == 0x30 ? 0x7FFu : 0xFu));
        m.Write(0x0100, off, 4, saved);
        Assert.Equal(saved, m.Read(0x0100, off));
    }

    [Fact]
    public void UnimplementedBarsReadZeroAndIgnoreWrites()
    {
        using var m = TestMachine.Create();
        foreach (int off in new[] { 0x20, 0x24 })
        {
            m.Write(0x0100, off, 4, 0xFFFF_FFFF);
            Assert.Equal(0u, m.Read(0x0100, off));
        }
    }

    [Theory]
    [InlineData(BarKind.Memory64, true, 1UL << 33)]     // 8 GiB prefetchable 64-bit pair
    [InlineData(BarKind.Memory64, false, 16UL)]
    [InlineData(BarKind.Memory32, true, 1UL << 20)]
    [InlineData(BarKind.Io, false, 4UL)]
    public void EveryBarKindSizesByItsMask(BarKind kind, bool prefetch, ulong size)
    {
        var cs = new ConfigSpace();
        var bar = new BarDefinition(2, kind, size, prefetch);
        bar.Install(cs);
        cs.Write(0x18, 4, 0xFFFF_FFFF);
        if (kind == BarKind.Memory64) cs.Write(0x1C, 4, 0xFFFF_FFFF);
        ulong lo = cs.Read(0x18, 4);
        Assert.Equal(bar.TypeBits, (uint)lo & (kind == BarKind.Io ? 3u : 0xFu));
        ulong value = kind == BarKind.Memory64 ? (lo | (ulong)cs.Read(0x1C, 4) << 32) & ~0xFUL : lo & (kind == BarKind.Io ? 0xFFFF_FFFCUL : 0xFFFF_FFF0UL);
        ulong full = kind == BarKind.Memory64 ? ulong.MaxValue & ~0xFUL : kind == BarKind.Io ? 0xFFFF_FFFCUL : 0xFFFF_FFF0UL;
        Assert.Equal(size, (~value + 1) & full);
        Assert.Equal(prefetch, (lo & 0x8) != 0 && kind != BarKind.Io);
    }

    [Fact]
    public void BadBarDefinitionsAreRejected()
    {
        Assert.Throws<ArgumentException>(() => new BarDefinition(0, BarKind.Memory32, 24).Validate());
        Assert.Throws<ArgumentException>(() => new BarDefinition(5, BarKind.Memory64, 4096).Validate());
        Assert.Throws<ArgumentException>(() => new BarDefinition(0, BarKind.Io, 512).Validate());
        Assert.Throws<ArgumentException>(() => new BarDefinition(0, BarKind.Rom, 1024).Validate());
    }
}
