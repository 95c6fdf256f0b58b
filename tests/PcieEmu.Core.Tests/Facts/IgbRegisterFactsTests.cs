using System.Globalization;
using PcieEmu.Core.Tests.Devices.Igb;
using static PcieEmu.Core.Devices.Igb.IgbRegs;

namespace PcieEmu.Core.Tests.Facts;

/// <summary>
/// The 82576 registers the Linux igb/igbvf drivers touch, checked against a hand-written table of
/// access types and reset values (Data/igb-82576-registers.tsv, from the datasheet facts and the
/// Linux register headers, not from the emulator's declarations). Every access goes through the
/// machine's MMIO path at the function's BAR0; nothing reads or sets a register object directly,
/// and bits the device sets are set through the device (ICS, EICS, VF mailbox requests, VF resets).
/// </summary>
public class IgbRegisterFactsTests
{
    internal sealed record Row(string Fn, string Name, uint Offset, int Count, uint Stride, string Access,
        uint Rw, uint Ro, uint Zero, uint Reset, uint ResetMask, uint? Pair, string Source)
    {
        public IEnumerable<(string Label, uint Offset)> Instances()
        {
            int open = Name.IndexOf('[', StringComparison.Ordinal);
            int first = open < 0 ? 0 : int.Parse(Name[(open + 1)..^1], CultureInfo.InvariantCulture);
            for (int i = 0; i < Count; i++)
                yield return (open < 0 ? Name : $"{Name[..open]}[{first + i}]", Offset + (uint)i * Stride);
        }

        public override string ToString() => $"{Fn} {Name}";
    }

    private static uint Hex(string s) => uint.Parse(s, NumberStyles.HexNumber, CultureInfo.InvariantCulture);

    internal static readonly IReadOnlyList<Row> Table = Load();

    private static List<Row> Load()
    {
        var rows = new List<Row>();
        foreach (var line in File.ReadAllLines(Path.Combine(AppContext.BaseDirectory, "Data", "igb-82576-registers.tsv")))
        {
            if (line.Length == 0 || line[0] == '#') continue;
            var c = line.Split('\t');
            Assert.True(c.Length >= 12, $"malformed table line: {line}");
            rows.Add(new Row(c[0], c[1], Hex(c[2]), int.Parse(c[3], CultureInfo.InvariantCulture), Hex(c[4]), c[5],
                Hex(c[6]), Hex(c[7]), Hex(c[8]), Hex(c[9]), Hex(c[10]), c[11] == "-" ? null : Hex(c[11]), c.Length > 12 ? c[12] : ""));
        }
        return rows;
    }

    public static TheoryData<string, string> Rows()
    {
        var d = new TheoryData<string, string>();
        foreach (var r in Table) d.Add(r.Fn, r.Name);
        return d;
    }

    private const int CheckedVf = 1;

    [Theory, MemberData(nameof(Rows))]
    public void RegisterHasTheDatasheetResetValueAndAccess(string fn, string name)
    {
        var row = Table.Single(r => r.Fn == fn && r.Name == name);
        using var rig = new NicRig(vfs: 2);
        ulong bar = fn == "PF" ? rig.PfBar0 : rig.VfBar0(CheckedVf);
        uint R(uint off) => rig.R(bar + off);
        void W(uint off, uint v) => rig.W(bar + off, v);
        var failures = new List<string>();
        void Expect(string label, string what, uint expected, uint actual, uint mask)
        {
            if ((expected & mask) != (actual & mask))
                failures.Add($"{fn} {label}: {what}: expected 0x{expected & mask:X8} in mask 0x{mask:X8}, read 0x{actual & mask:X8}");
        }

        // Reset values first, before anything is written.
        foreach (var (label, off) in row.Instances()) Expect(label, "reset value", row.Reset, R(off), row.ResetMask);

        foreach (var (label, off) in row.Instances())
        {
            switch (row.Access)
            {
                case "RW":
                {
                    uint before = R(off);
                    W(off, row.Rw | row.Ro);
                    uint v = R(off);
                    Expect(label, "RW bits after writing ones", row.Rw, v, row.Rw);
                    Expect(label, "RO bits ignore a write of ones", before, v, row.Ro);
                    Expect(label, "bits that read 0", 0, v, row.Zero);
                    W(off, 0);
                    v = R(off);
                    Expect(label, "RW bits after writing zeros", 0, v, row.Rw);
                    Expect(label, "RO bits ignore a write of zeros", before, v, row.Ro);
                    Expect(label, "bits that read 0", 0, v, row.Zero);
                    W(off, before & row.Rw);
                    break;
                }
                case "RO":
                case "RC":
                {
                    uint before = R(off);
                    W(off, row.Ro);
                    Expect(label, "read-only bits ignore a write of ones", before, R(off), row.Ro);
                    W(off, 0);
                    Expect(label, "read-only bits ignore a write of zeros", before, R(off), row.Ro);
                    break;
                }
                case "WO":
                    W(off, 0);
                    Expect(label, "write-only register reads 0", 0, R(off), 0xFFFF_FFFF);
                    break;
                case "W1S":
                    W(off, row.Rw);
                    Expect(label, "write 1 sets", row.Rw, R(off), row.Rw);
                    W(off, 0);
                    Expect(label, "write 0 leaves set bits", row.Rw, R(off), row.Rw);
                    W(row.Pair!.Value, row.Rw);
                    Expect(label, "its clear register clears", 0, R(off), row.Rw);
                    break;
                case "RCW1C":
                {
                    uint set = row.Pair!.Value;
                    W(set, row.Rw);
                    Expect(label, "set through its set register", row.Rw, R(off), row.Rw);
                    Expect(label, "cleared by the read", 0, R(off), row.Rw);
                    W(set, row.Rw);
                    W(off, 0);
                    Expect(label, "write 0 leaves causes", row.Rw, R(off), row.Rw);
                    W(set, row.Rw);
                    W(off, row.Rw);
                    Expect(label, "write 1 clears", 0, R(off), row.Rw);
                    break;
                }
                case "W1C":
                {
                    uint events = TriggerEvents(rig, row.Name);
                    Assert.True(events != 0 && (events & ~row.Rw) == 0, $"{row}: trigger outside the table's bits");
                    Expect(label, "events set by the device", events, R(off), row.Rw);
                    W(off, 0);
                    Expect(label, "write 0 leaves events", events, R(off), row.Rw);
                    W(off, events);
                    Expect(label, "write 1 clears", 0, R(off), row.Rw);
                    break;
                }
                default:
                    Assert.Fail($"{row}: unknown access type {row.Access}");
                    break;
            }
        }
        Assert.True(failures.Count == 0, $"{row} ({row.Source}) disagrees with the table:\n" + string.Join("\n", failures));
    }

    // The device sets these: a VF's mailbox REQ/ACK (MBVFICR bits n / 16+n), a VF's CTRL.RST (VFLRE bit n).
    private static uint TriggerEvents(NicRig rig, string name)
    {
        uint bits = 0;
        for (int vf = 0; vf < 2; vf++)
        {
            if (name == "MBVFICR")
            {
                rig.VfWrite(vf, VfMailbox, VfmbReq);
                rig.VfWrite(vf, VfMailbox, VfmbAck);
                bits |= 1u << vf | 1u << (16 + vf);
            }
            else
            {
                rig.VfWrite(vf, Ctrl, CtrlRst);
                bits |= 1u << vf;
            }
        }
        return bits;
    }

    [Fact]
    public void QueueZeroIsEnabledAtPowerOnAndAVfResetDisablesItsQueues()
    {
        using var rig = new NicRig(vfs: 1);
        Assert.Equal(0x0201_0000u, rig.PfRead(RxQueues + Rxdctl));   // datasheet power-on value
        Assert.Equal(0x0200_0000u, rig.PfRead(TxQueues + Txdctl));
        rig.VfWrite(0, RxLegacy + Rxdctl, QueueEnable);
        rig.VfWrite(0, RxLegacy + 0x100 + Rxdctl, QueueEnable);
        rig.VfWrite(0, Ctrl, CtrlRst);                               // VF 0 owns PF queues 0 and 8
        Assert.Equal(0u, rig.PfRead(RxQueues + Rxdctl) & QueueEnable);
        Assert.Equal(0u, rig.PfRead(TxQueues + Txdctl) & QueueEnable);
        Assert.Equal(0u, rig.PfRead(RxQueues + 0x40 * 8 + Rxdctl) & QueueEnable);
        Assert.Equal(0x0001_0000u, rig.VfRead(0, RxLegacy + Rxdctl));
    }

    [Fact]
    public void TableCoversEveryQueueAndMailboxInstance()
    {
        // A guard against a table that quietly shrinks: 16 queues, 8 pools, 24 receive addresses.
        int Instances(string fn, string prefix) => Table.Where(r => r.Fn == fn && r.Name.StartsWith(prefix, StringComparison.Ordinal)).Sum(r => r.Count);
        Assert.Equal(16, Instances("PF", "RXDCTL"));
        Assert.Equal(16, Instances("PF", "TXDCTL"));
        Assert.Equal(8, Instances("PF", "P2VMAILBOX"));
        Assert.Equal(24, Instances("PF", "RAH"));
        Assert.Equal(10, Instances("PF", "EITR"));
        Assert.Equal(3, Instances("VF", "EITR"));
        Assert.True(Table.Count >= 100);
    }
}
