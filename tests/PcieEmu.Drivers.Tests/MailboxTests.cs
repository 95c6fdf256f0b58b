using PcieEmu.Protocol.V1;

namespace PcieEmu.Drivers.Tests;

/// <summary>
/// The example PF driver answers each message Linux igbvf sends the way Linux igb does (reply
/// word and payload) and programs what igb programs (MTA, VMOLR, RAR); multicast filtering in the
/// NIC then lets a joined group through to the VF and keeps others out.
/// </summary>
public sealed class MailboxTests
{
    private const string Vf0Mac = "02:1b:21:2b:46:10";

    /// <summary>The VF driver in mailbox mode: one command a line, one "MBX" answer line each.</summary>
    private sealed class Mailbox(DriverProcess vf)
    {
        private int _answers;

        public async Task<string> SendAsync(string command)
        {
            await vf.SendLineAsync(command);
            var lines = await vf.WaitForLinesAsync("MBX ", ++_answers + 1);   // + "MBX READY"
            string last = lines[^1];
            Assert.StartsWith($"MBX {command} -> ", last);
            return last[$"MBX {command} -> ".Length..];
        }
    }

    private static async Task<uint> ReadPfAsync(Server server, uint offset)
    {
        var pf0 = (await server.Client.ListFunctionsAsync().W()).Single(f => f.Rid == 0x0100);
        ulong bar0 = pf0.Bars.Single(b => b.Index == 0).Address;
        return (uint)(await server.Client.Mmio.ReadMmioAsync(new ReadMmioRequest { Address = bar0 + offset, Width = 4 }).ResponseAsync.W()).Value;
    }

    private static uint Vmolr(int pool) => Regs.Vmolr + 4u * (uint)pool;

    [Fact]
    public async Task EveryIgbvfMessage_GetsIgbsAnswer_AndProgramsThePfsFilters()
    {
        await using var server = await Server.StartAsync();
        using var pf = new DriverProcess("PfDriver", server.Target, "--vfs", "2");
        await pf.WaitForLineAsync("PF READY vfs=2");
        using var vf = new DriverProcess("VfDriver", server.Target, stdin: true, "mailbox", "--vf", "0");
        await vf.WaitForLineAsync("MBX READY vf=0");
        var mbx = new Mailbox(vf);

        // Not clear to send before VF_RESET: NACK without CTS.
        Assert.Equal("0x40010003", await mbx.SendAsync("mc 01:00:5e:00:00:01"));
        // VF_RESET: exactly VF_RESET|ACK, then the MAC in words 1-2.
        Assert.Equal("0x80000001 0x2B211B02 0x00001046", await mbx.SendAsync("reset"));
        Assert.Equal("0xA0000002", await mbx.SendAsync($"mac {Vf0Mac}"));
        Assert.Equal("0x60000002", await mbx.SendAsync("mac 01:00:5e:00:00:01"));   // not unicast: NACK|CTS

        // Two groups: hashes 0x010 (MTA[0] bit 16) and 0x341 (MTA[26] bit 1); the pool gets ROMPE.
        Assert.Equal("0xA0020003", await mbx.SendAsync("mc 01:00:5e:00:00:01 33:33:ff:00:12:34"));
        Assert.Equal(1u << 16, await ReadPfAsync(server, Regs.Mta));
        Assert.Equal(1u << 1, await ReadPfAsync(server, Regs.Mta + 4 * 26));
        uint vmolr = await ReadPfAsync(server, Vmolr(0));
        Assert.Equal(Regs.VmolrRompe, vmolr & (Regs.VmolrRompe | Regs.VmolrMpme));
        // More than 30 groups: multicast promiscuous instead.
        Assert.Equal("0xA01F0003", await mbx.SendAsync("raw 0x001F0003"));
        Assert.Equal(Regs.VmolrMpme, await ReadPfAsync(server, Vmolr(0)) & (Regs.VmolrRompe | Regs.VmolrMpme));
        Assert.Equal(0u, await ReadPfAsync(server, Regs.Mta));
        Assert.Equal("0xA0010003", await mbx.SendAsync("mc 01:00:5e:00:00:01"));
        Assert.Equal(Regs.VmolrRompe, await ReadPfAsync(server, Vmolr(0)) & (Regs.VmolrRompe | Regs.VmolrMpme));

        // VF_SET_PROMISC: multicast promiscuous on and off; an unknown flag is NACKed.
        Assert.Equal("0xA0020006", await mbx.SendAsync("promisc mc"));
        Assert.Equal(Regs.VmolrMpme, await ReadPfAsync(server, Vmolr(0)) & (Regs.VmolrRompe | Regs.VmolrMpme));
        Assert.Equal("0xA0000006", await mbx.SendAsync("promisc none"));
        Assert.Equal(Regs.VmolrRompe, await ReadPfAsync(server, Vmolr(0)) & (Regs.VmolrRompe | Regs.VmolrMpme));
        Assert.Equal("0x60030006", await mbx.SendAsync("raw 0x00030006"));

        // VF_SET_LPE: RLPML and LPE of the pool; igb clamps to 0x2600.
        Assert.Equal("0xA0000005", await mbx.SendAsync("lpe 1522"));
        vmolr = await ReadPfAsync(server, Vmolr(0));
        Assert.Equal(1522u, vmolr & Regs.VmolrRlpmlMask);
        Assert.NotEqual(0u, vmolr & Regs.VmolrLpe);
        Assert.Equal("0xA0000005", await mbx.SendAsync("lpe 20000"));
        Assert.Equal(0x2600u, await ReadPfAsync(server, Vmolr(0)) & Regs.VmolrRlpmlMask);

        // Additional unicast filters: CLR (igbvf sends it without an address), ADD into the first
        // free RAR entry with the VF's pool, a multicast address refused, and no more than the
        // 18 entries the VFs share (24 - PF default - 3 PF filters - 2 VF entries).
        Assert.Equal("0xA0010002", await mbx.SendAsync("uc-clear"));
        Assert.Equal("0xA0020002", await mbx.SendAsync("uc-add 02:00:00:00:aa:01"));
        Assert.Equal(0x0000_0002u, await ReadPfAsync(server, Regs.Ral(1)));
        Assert.Equal(0x01AAu | Regs.RahAv | 1u << Regs.RahPoolShift, await ReadPfAsync(server, Regs.Ral(1) + 4));
        Assert.Equal("0x60020002", await mbx.SendAsync("uc-add 01:00:5e:00:00:09"));
        for (int i = 2; i <= 18; i++)
            Assert.Equal("0xA0020002", await mbx.SendAsync($"uc-add 02:00:00:00:aa:{i:x2}"));
        Assert.Equal("0x60020002", await mbx.SendAsync("uc-add 02:00:00:00:aa:13"));
        Assert.Equal("0xA0010002", await mbx.SendAsync("uc-clear"));
        Assert.Equal(0u, await ReadPfAsync(server, Regs.Ral(1) + 4) & Regs.RahAv);
        Assert.Equal("0x60040002", await mbx.SendAsync("raw 0x00040002"));   // unknown sub-command

        // VF_SET_VLAN: add (tag stripping on), removing VLAN 0 is accepted and ignored.
        Assert.Equal("0xA0010004", await mbx.SendAsync("vlan add 100"));
        Assert.NotEqual(0u, await ReadPfAsync(server, Vmolr(0)) & Regs.VmolrStrVlan);
        Assert.Equal("0xA0000004", await mbx.SendAsync("vlan del 0"));
        Assert.Equal("0xA0000004", await mbx.SendAsync("vlan del 100"));

        // An unknown message: NACK|CTS.
        Assert.Equal("0x60000007", await mbx.SendAsync("raw 0x00000007"));

        // A second VF_RESET undoes the VF's filters: no hashes, no ROMPE/MPME, no stripping.
        Assert.Equal("0xA0020002", await mbx.SendAsync("uc-add 02:00:00:00:aa:01"));
        Assert.Equal("0xA0010003", await mbx.SendAsync("mc 01:00:5e:00:00:01"));
        Assert.Equal("0x80000001 0x2B211B02 0x00001046", await mbx.SendAsync("reset"));
        Assert.Equal(0u, await ReadPfAsync(server, Regs.Mta));
        Assert.Equal(0u, await ReadPfAsync(server, Vmolr(0)) & (Regs.VmolrRompe | Regs.VmolrMpme | Regs.VmolrStrVlan));
        Assert.Equal(0u, await ReadPfAsync(server, Regs.Ral(1) + 4) & Regs.RahAv);

        await vf.SendLineAsync("quit");
        Assert.True(await vf.WaitForExitAsync() == 0, vf.Output);

        // The PF's log names what it did; no zero MAC is reported for the address-less CLR.
        await pf.WaitForLineAsync("PF: VF 0 VF_SET_MULTICAST before VF_RESET -> NACK (not clear to send)");
        await pf.WaitForLineAsync("PF: VF 0 VF_SET_MAC_ADDR|MAC_FILTER_CLR (0 removed) -> ACK");
        await pf.WaitForLineAsync("PF: VF 0 VF_SET_MAC_ADDR|MAC_FILTER_ADD 02:00:00:00:aa:01 in RAR[1] pool 0 -> ACK");
        await pf.WaitForLineAsync("PF: VF 0 VF_SET_LPE 1522 VMOLR.LPE -> ACK");
        Assert.DoesNotContain("00:00:00:00:00:00", pf.Output);
    }

    [Fact]
    public async Task AJoinedGroupReachesTheVf_AnotherGroupDoesNot()
    {
        await using var server = await Server.StartAsync();
        using var pf = new DriverProcess("PfDriver", server.Target, "--vfs", "2");
        await pf.WaitForLineAsync("PF READY vfs=2");
        using var vf = new DriverProcess("VfDriver", server.Target, "--vf", "1", "--multicast", "01:00:5e:00:00:01", "--lpe", "1522", "--receive", "1", "--timeout", "50");
        await vf.WaitForLineAsync("READY vf=1");
        Assert.Contains("VF_SET_MULTICAST -> 0xA0010003", vf.Output);
        Assert.Contains("VF_SET_LPE 1522 -> 0xA0000005", vf.Output);

        static byte[] Frame(string dst, uint seq)
        {
            var f = new byte[64];
            Drivers.Mac.Parse(dst).CopyTo(f, 0);
            Drivers.Mac.Parse("02:00:00:00:00:77").CopyTo(f, 6);
            f[12] = 0x08;
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(f.AsSpan(14), seq);
            return f;
        }
        // 01:00:5e:00:00:02 hashes to 0x020, a bit no pool joined: no queue takes it.
        Assert.Equal(0, await server.Client.InjectFrameAsync(0, Frame("01:00:5e:00:00:02", 1)).W());
        Assert.Equal(1, await server.Client.InjectFrameAsync(0, Frame("01:00:5e:00:00:01", 2)).W());
        Assert.True(await vf.WaitForExitAsync() == 0, vf.Output);
        var rx = Assert.Single(vf.Lines, l => l.StartsWith("RX ", StringComparison.Ordinal));
        Assert.Contains("dst=01:00:5e:00:00:01 src=02:00:00:00:00:77 seq=2", rx);
        Assert.Contains("mprc=1", vf.Output);
    }
}
