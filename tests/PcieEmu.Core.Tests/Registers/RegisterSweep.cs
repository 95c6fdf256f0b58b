using PcieEmu.Core.Registers;

namespace PcieEmu.Core.Tests.Registers;

/// <summary>
/// The register engine's self-test: every declared register of a file behaves as its declaration
/// says, through the file's read/write path, with device-side bits set through the engine's
/// hardware API (HardwareSet). Driven by the declarations, so it proves the engine (RegisterFile,
/// Register) applies access types correctly, on synthetic files in RegisterFileTests; it says
/// nothing about whether a device's declarations match its datasheet. Device facts are checked
/// by Facts/IgbRegisterFactsTests against a hand-written table, through MMIO only.
/// </summary>
internal static class RegisterSweep
{
    public delegate ulong ReadFn(uint offset, int width);
    public delegate void WriteFn(uint offset, int width, ulong value);

    /// <summary>Sweeps <paramref name="file"/>; returns the number of registers checked.</summary>
    public static int Sweep(RegisterFile file, ReadFn read, WriteFn write)
    {
        int n = 0;
        foreach (var e in file.Entries)
        {
            Check(e, read, write);
            n++;
        }
        return n;
    }

    private static void Fail(RegisterEntry e, string what, uint expected, uint actual) =>
        Assert.Fail($"{e.Name} @0x{e.Offset:X}: {what}: expected 0x{expected:X8}, got 0x{actual:X8}");

    private static void Expect(RegisterEntry e, string what, uint expected, uint actual)
    {
        if (expected != actual) Fail(e, what, expected, actual);
    }

    private static void Check(RegisterEntry e, ReadFn read, WriteFn write)
    {
        var s = e.Register.Spec;
        var reg = e.Register;
        uint o = e.Offset;
        uint R() => (uint)read(o, 4);
        uint rw = s.MaskOf(Access.RW), ro = s.MaskOf(Access.RO), w1c = s.MaskOf(Access.W1C), rc = s.MaskOf(Access.RC),
             rcw1c = s.MaskOf(Access.RCW1C), w1s = s.MaskOf(Access.W1S), wo = s.MaskOf(Access.WO), sc = s.MaskOf(Access.SC),
             setOf = s.MaskOf(Access.SetOf), clearOf = s.MaskOf(Access.ClearOf), rsvd = s.ReservedMask;

        // Bits that never read back: reserved, write-only, self-clearing, set/clear-of-target.
        uint never = rsvd | wo | sc | setOf | clearOf;

        if (rw != 0)
        {
            write(o, 4, rw);
            Expect(e, "RW bits read back after writing ones", rw, R() & rw);
            write(o, 4, 0);
            Expect(e, "RW bits read back after writing zeros", 0, R() & rw);
            // Byte and word accesses touch only their lanes.
            for (int b = 0; b < 4; b++)
            {
                uint lane = rw & (0xFFu << (8 * b));
                if (lane == 0) continue;
                write(o + (uint)b, 1, lane >> (8 * b));
                Expect(e, $"byte {b} write", lane, R() & rw);
                Expect(e, $"byte {b} read", lane >> (8 * b), (uint)read(o + (uint)b, 1) & (rw >> (8 * b)) & 0xFF);
                write(o + (uint)b, 1, 0);
            }
            uint hi = rw & 0xFFFF_0000;
            if (hi != 0)
            {
                write(o + 2, 2, hi >> 16);
                Expect(e, "word write at +2", hi, R() & rw);
                write(o + 2, 2, 0);
            }
        }
        if (ro != 0)
        {
            uint before = R() & ro;
            write(o, 4, ro);
            Expect(e, "RO bits ignore a write of ones", before, R() & ro);
            write(o, 4, 0);
            Expect(e, "RO bits ignore a write of zeros", before, R() & ro);
            if (reg.ReadHandler == null)
            {
                uint saved = reg.Value;
                reg.HardwareSet(ro);
                write(o, 4, 0);
                Expect(e, "RO bits set by the device read back", ro, R() & ro);
                reg.Value = saved;
            }
        }
        if (never != 0)
        {
            // Writing reserved bits must not make them readable (SC bits are written below on their own).
            write(o, 4, rsvd);
            Expect(e, "reserved/WO/SC bits read 0", 0, R() & never);
        }
        if (w1c != 0)
        {
            reg.HardwareSet(w1c);
            Expect(e, "W1C bits read back", w1c, R() & w1c);
            write(o, 4, 0);
            Expect(e, "W1C bits survive writing 0", w1c, R() & w1c);
            write(o, 4, w1c);
            Expect(e, "W1C bits clear on writing 1", 0, R() & w1c);
        }
        if (rc != 0 || rcw1c != 0)
        {
            uint m = rc | rcw1c;
            reg.HardwareSet(m);
            Expect(e, "RC bits read back", m, R() & m);
            Expect(e, "RC bits clear on read", 0, R() & m);
            // A 1-byte read clears only its byte.
            reg.HardwareSet(m);
            int lane = System.Numerics.BitOperations.TrailingZeroCount(m) / 8;
            read(o + (uint)lane, 1);
            Expect(e, "1-byte read clears only its lane", m & ~(0xFFu << (8 * lane)), reg.Value & m);
            reg.HardwareClear(m);
            if (rc != 0)
            {
                reg.HardwareSet(rc);
                write(o, 4, rc);
                Expect(e, "RC (not W1C) bits ignore writes", rc, reg.Value & rc);
                reg.HardwareClear(rc);
            }
        }
        if (rcw1c != 0)
        {
            reg.HardwareSet(rcw1c);
            write(o, 4, 0);
            Expect(e, "RC/W1C bits survive writing 0", rcw1c, reg.Value & rcw1c);
            write(o, 4, rcw1c);
            Expect(e, "RC/W1C bits clear on writing 1", 0, reg.Value & rcw1c);
        }
        if (w1s != 0)
        {
            reg.HardwareClear(w1s);
            write(o, 4, w1s);
            Expect(e, "W1S bits set by writing 1", w1s, R() & w1s);
            write(o, 4, 0);
            Expect(e, "W1S bits survive writing 0", w1s, R() & w1s);
            reg.HardwareClear(w1s);
        }
        if (setOf != 0)
        {
            var t = reg.Target!;
            t.HardwareClear(setOf);
            write(o, 4, setOf);
            Expect(e, $"writing 1s sets {t.Name}", setOf, t.Value & setOf);
            Expect(e, "SetOf register reads 0", 0, R() & setOf);
            t.HardwareClear(setOf);
        }
        if (clearOf != 0)
        {
            var t = reg.Target!;
            t.HardwareSet(clearOf);
            write(o, 4, clearOf);
            Expect(e, $"writing 1s clears {t.Name}", 0, t.Value & clearOf);
            Expect(e, "ClearOf register reads 0", 0, R() & clearOf);
        }
        if (wo != 0)
        {
            write(o, 4, wo);
            Expect(e, "WO bits read 0", 0, R() & wo);
        }
        if (sc != 0)
        {
            write(o, 4, sc);
            Expect(e, "SC bits read 0 after writing 1", 0, R() & sc);
        }
    }

    /// <summary>Every dword offset with no register reads 0 and ignores writes.</summary>
    public static int SweepHoles(RegisterFile file, ReadFn read, WriteFn write)
    {
        int n = 0;
        for (uint o = 0; o < file.Size; o += 4)
        {
            if (file.At(o) != null) continue;
            write(o, 4, 0xFFFF_FFFF);
            uint v = (uint)read(o, 4);
            if (v != 0) Assert.Fail($"{file.Name}: unmapped offset 0x{o:X} read 0x{v:X8} after a write");
            n++;
        }
        return n;
    }
}
