using PcieEmu.Core.AddressSpace;
using PcieEmu.Core.Platform;

namespace PcieEmu.Core.Tests.Facts;

/// <summary>
/// Every byte of every function type's config space behaves as the hand-written spec table
/// (Data/config-space-access.tsv) says, through the machine's config read/write path only:
/// RW bits take ones and zeros, RW1C bits are never set by a write, keep their value on a write
/// of 0 and clear on a write of 1, every other bit (read-only by the specs, reserved bytes
/// included) ignores writes, and spec-fixed read-only values read as the spec says.
/// </summary>
public class ConfigSpaceFactsTests
{
    public static TheoryData<string> Functions => new() { "HB", "RP", "PF0", "PF1", "VF" };

    private static (Machine M, ushort Rid) Build(string fn)
    {
        var m = TestMachine.Create();
        if (fn != "VF") return (m, fn switch { "HB" => (ushort)0x0000, "RP" => TestMachine.RootPort, "PF0" => TestMachine.Pf0, _ => TestMachine.Pf1 });
        m.EnableVfs(TestMachine.Pf0, 3);
        return (m, m.PhysicalFunctions[0].VirtualFunctions[1].Rid);
    }

    private static byte Rd(Machine m, ushort rid, int off)
    {
        var r = m.ReadConfig(rid, off, 1);
        Assert.Equal(CompletionStatus.Successful, r.Status);
        return (byte)r.Value;
    }

    private static void Wr(Machine m, ushort rid, int off, byte v) =>
        Assert.Equal(CompletionStatus.Successful, m.WriteConfig(rid, off, 1, v));

    [Theory, MemberData(nameof(Functions))]
    public void EveryByteHasTheSpecsAccess(string fn)
    {
        var t = ConfigSpaceFacts.For(fn);
        var (m, rid) = Build(fn);
        using var _ = m;
        var failures = new List<string>();
        void Check(int off, string what, byte expected, byte actual, byte mask)
        {
            if (((expected ^ actual) & mask) != 0)
                failures.Add($"{fn} 0x{off:X3} ({t.Field[off] ?? "read-only"}): {what}: expected {expected & mask:X2} in mask {mask:X2}, read {actual & mask:X2}");
        }

        // Spec-fixed values first, at power-on (after firmware enumeration).
        for (int off = 0; off < ConfigSpaceFacts.Size; off++)
            if (t.ValueMask[off] != 0) Check(off, "value", t.Value[off], Rd(m, rid, off), t.ValueMask[off]);

        for (int off = 0; off < ConfigSpaceFacts.Size; off++)
        {
            byte rw = t.Rw[off], w1c = t.Rw1c[off], avoid = t.Avoid[off], ro = t.ReadOnly(off);
            byte before = Rd(m, rid, off);
            byte keep = (byte)(before & avoid);          // avoided bits are written back as they were
            Wr(m, rid, off, keep);
            byte zero = Rd(m, rid, off);
            Check(off, "RW bits after writing 00", 0, zero, rw);
            Check(off, "RW1C bits keep their value on a write of 0", before, zero, w1c);
            Check(off, "read-only bits ignore a write of 00", before, zero, ro);
            Wr(m, rid, off, (byte)((0xFF & ~avoid) | keep));
            byte ones = Rd(m, rid, off);
            Check(off, "RW bits after writing FF", 0xFF, ones, rw);
            Check(off, "RW1C bits clear on (and are not set by) a write of 1", 0, ones, w1c);
            Check(off, "read-only bits ignore a write of FF", before, ones, ro);
            Wr(m, rid, off, (byte)(before & ~w1c));       // put the byte back (RW1C bits stay clear)
        }
        Assert.True(failures.Count == 0, $"{failures.Count} bit group(s) disagree with the spec table:\n" + string.Join("\n", failures.Take(60)));
    }

    [Fact]
    public void RootPortSecondaryStatusReceivedMasterAbortIsSetByHardwareAndClearedByWriteOne()
    {
        // A config read the port forwards (secondary bus, device 0) that no function claims: the
        // port records a Received Master Abort on its secondary side (Secondary Status bit 13), RW1C.
        using var m = TestMachine.Create();
        m.Write(TestMachine.RootPort, 0x1E, 2, 0xF900);                  // clear anything firmware left
        Assert.Equal(0u, m.Read(TestMachine.RootPort, 0x1E, 2) & 0x2000);
        Assert.Equal(CompletionStatus.UnsupportedRequest, m.ReadConfig(0x0107, 0, 4).Status);   // 01:00.7: nobody
        Assert.Equal(0x2000u, m.Read(TestMachine.RootPort, 0x1E, 2) & 0x2000);
        m.Write(TestMachine.RootPort, 0x1E, 2, 0);
        Assert.Equal(0x2000u, m.Read(TestMachine.RootPort, 0x1E, 2) & 0x2000);   // a 0 leaves it
        m.Write(TestMachine.RootPort, 0x1E, 2, 0x2000);
        Assert.Equal(0u, m.Read(TestMachine.RootPort, 0x1E, 2) & 0x2000);        // a 1 clears it
    }

    [Fact]
    public void PfStatusReceivedMasterAbortIsSetByAnUnsupportedDmaReadAndClearedByWriteOne()
    {
        // The PF's transmit queue fetches descriptors from an address no RAM backs: the read
        // completes Unsupported Request, and the requester records Received Master Abort
        // (Status bit 13, RW1C). Driven through MMIO, observed and cleared through config.
        using var rig = new Devices.Igb.NicRig();
        const uint Tx0 = PcieEmu.Core.Devices.Igb.IgbRegs.TxQueues;
        Assert.Equal(0u, rig.M.Read(TestMachine.Pf0, 0x06, 2) & 0x2000);
        rig.PfWrite(Tx0 + 0x00, 0x2000_0000);         // TDBAL: above the 16 MiB of RAM, below the MMIO window
        rig.PfWrite(Tx0 + 0x08, 1024);                // TDLEN
        rig.PfWrite(Tx0 + 0x28, 1u << 25);            // TXDCTL.ENABLE
        rig.PfWrite(0x400, 0x2);                      // TCTL.EN
        rig.PfWrite(Tx0 + 0x18, 1);                   // TDT: one descriptor to fetch
        Assert.Equal(0x2000u, rig.M.Read(TestMachine.Pf0, 0x06, 2) & 0x2000);
        rig.M.Write(TestMachine.Pf0, 0x06, 2, 0);
        Assert.Equal(0x2000u, rig.M.Read(TestMachine.Pf0, 0x06, 2) & 0x2000);   // a 0 leaves it
        rig.M.Write(TestMachine.Pf0, 0x06, 2, 0x2000);
        Assert.Equal(0u, rig.M.Read(TestMachine.Pf0, 0x06, 2) & 0x2000);        // a 1 clears it
    }
}
