using PcieEmu.Core.Config;

namespace PcieEmu.Core.Tests.Config;

/// <summary>Finds a register's access type by behaviour, through ConfigSpace.Write only.</summary>
internal static class AccessProbe
{
    // 'avoid': bits never written as 1 because a 1 triggers an action (Initiate FLR, VF Enable).

    /// <summary>Bits that software can set and clear (RW).</summary>
    public static uint Writable(ConfigSpace cs, int off, int width, uint avoid = 0)
    {
        uint saved = cs.ReadRaw(off, width);
        cs.SetRaw(off, width, 0);
        cs.Write(off, width, Ones(width) & ~avoid);
        uint set = cs.ReadRaw(off, width);
        cs.SetRaw(off, width, Ones(width));
        cs.Write(off, width, 0);
        uint cleared = ~cs.ReadRaw(off, width) & Ones(width);
        cs.SetRaw(off, width, saved);
        return set & cleared;
    }

    /// <summary>Bits that a written 1 clears and a written 0 leaves alone (RW1C).</summary>
    public static uint WriteOneToClear(ConfigSpace cs, int off, int width, uint avoid = 0)
    {
        uint saved = cs.ReadRaw(off, width);
        cs.SetRaw(off, width, Ones(width));
        cs.Write(off, width, 0);
        uint keptOnZero = cs.ReadRaw(off, width);
        cs.SetRaw(off, width, Ones(width));
        cs.Write(off, width, Ones(width) & ~avoid);
        uint clearedOnOne = ~cs.ReadRaw(off, width) & Ones(width);
        cs.SetRaw(off, width, saved);
        return keptOnZero & clearedOnOne;
    }

    public static uint Ones(int width) => width == 4 ? 0xFFFF_FFFF : (1u << (8 * width)) - 1;
}
