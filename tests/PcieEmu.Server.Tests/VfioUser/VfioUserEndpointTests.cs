using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using PcieEmu.Core.Interrupts;
using static PcieEmu.Core.Devices.Igb.IgbRegs;
using static PcieEmu.Server.Tests.VfioUser.VfioUserTestClient;

namespace PcieEmu.Server.Tests.VfioUser;

/// <summary>The vfio-user endpoint through the real socket: a test client plays QEMU, the PF driver runs in process.</summary>
public class VfioUserEndpointTests
{
    private const uint Bar0 = 0, Bar3 = 3;
    private const ulong Iova = 0x4000_0000;

    private static async Task<VfioUserTestClient> Attach(VfioUserRig rig)
    {
        var c = await rig.ConnectAsync();
        c.Ok(VersionCmd, VersionPayload());
        return c;
    }

    [Fact]
    public async Task Version_device_info_regions_and_irqs_describe_the_vf()
    {
        await using var rig = await VfioUserRig.StartAsync();
        using var c = await rig.ConnectAsync();

        var v = c.Ok(VersionCmd, VersionPayload());
        Assert.Equal(0u, BinaryPrimitives.ReadUInt16LittleEndian(v.Payload));       // major
        Assert.Equal(0u, BinaryPrimitives.ReadUInt16LittleEndian(v.Payload.AsSpan(2)));
        Assert.Equal(0, v.Payload[^1]);                                              // NUL-terminated JSON
        using var json = JsonDocument.Parse(Encoding.UTF8.GetString(v.Payload.AsSpan(4, v.Payload.Length - 5)));
        var caps = json.RootElement.GetProperty("capabilities");
        Assert.Equal(16, caps.GetProperty("max_msg_fds").GetInt32());
        Assert.True(caps.GetProperty("max_data_xfer_size").GetInt32() >= 4096);
        Assert.False(caps.TryGetProperty("migration", out _));
        Assert.False(caps.TryGetProperty("write_multiple", out _));

        var info = c.Ok(DeviceGetInfo, U32s(16, 0, 0, 0));
        Assert.Equal(new uint[] { 16, 3, 9, 5 }, Enumerable.Range(0, 4).Select(i => info.U32(4 * i)));   // RESET|PCI, 9 regions, 5 IRQ types

        var expected = new (ulong Size, uint Flags)[] { (0x4000, 3), (0, 0), (0, 0), (0x4000, 3), (0, 0), (0, 0), (0, 0), (4096, 3), (0, 0) };
        for (uint i = 0; i < 9; i++)
        {
            var r = c.Ok(GetRegionInfo, U32s(32, 0, i, 0, 0, 0, 0, 0));
            Assert.Equal(32u, r.U32(0));
            Assert.Equal(expected[i].Flags, r.U32(4));                          // never MMAP, no capabilities
            Assert.Equal(i, r.U32(8));
            Assert.Equal(expected[i].Size, r.U64(16));
            if (r.U64(16) != 0) Assert.Equal(0UL, r.U64(16) & (r.U64(16) - 1));   // powers of two
        }
        Assert.Equal(22u, c.Request(GetRegionInfo, U32s(32, 0, 9, 0, 0, 0, 0, 0)).Error);

        var irqs = new (uint Flags, uint Count)[] { (0x7, 0), (0x9, 0), (0x9, 3), (0x1, 1), (0x1, 1) };
        for (uint i = 0; i < 5; i++)
        {
            var r = c.Ok(GetIrqInfo, U32s(16, 0, i, 0));
            Assert.Equal((irqs[i].Flags, irqs[i].Count), (r.U32(4), r.U32(12)));
        }
        Assert.Equal(22u, c.Request(GetIrqInfo, U32s(16, 0, 5, 0)).Error);
        rig.Server.AssertNoErrors();
    }

    [Fact]
    public async Task Config_view_has_real_ids_sizable_bars_and_emulated_memory_enable()
    {
        await using var rig = await VfioUserRig.StartAsync();
        using var c = await Attach(rig);

        Assert.Equal(0x10CA_8086u, c.Read32(Config, 0));                                 // hardware reads FFFF_FFFF
        Assert.Equal(0xFFFF_FFFFu, (uint)rig.M.ReadConfig(VfioUserRig.Vf0, 0, 4).Value);
        var all = c.Read(Config, 0, 256);
        Assert.Equal(0x10CA_8086u, BinaryPrimitives.ReadUInt32LittleEndian(all));
        Assert.Equal(0x11, all[0x70]);                                                   // MSI-X capability presented

        // BAR sizing: VF BAR0 and BAR3 are 16 KiB, 64-bit, non-prefetchable; BAR2 is absent.
        c.Write32(Config, 0x10, 0xFFFF_FFFF);
        c.Write32(Config, 0x14, 0xFFFF_FFFF);
        c.Write32(Config, 0x18, 0xFFFF_FFFF);
        Assert.Equal(0xFFFF_C004u, c.Read32(Config, 0x10));
        Assert.Equal(0xFFFF_FFFFu, c.Read32(Config, 0x14));
        Assert.Equal(0u, c.Read32(Config, 0x18));
        c.Write32(Config, 0x10, 0xFEB0_0000);
        c.Write32(Config, 0x14, 0);
        Assert.Equal(0xFEB0_0004u, c.Read32(Config, 0x10));
        Assert.Equal(0u, (uint)rig.M.ReadConfig(VfioUserRig.Vf0, 0x10, 4).Value);       // the machine's VF BAR is untouched
        c.Write32(Config, 0x30, 0xFFFF_F800);
        Assert.Equal(0u, c.Read32(Config, 0x30));                                        // no ROM

        // Memory Space Enable is emulated; Bus Master goes to the function.
        c.Write16(Config, 0x04, 0x0006);
        Assert.Equal(0x0006u, c.Read32(Config, 0x04) & 0xFFFF);
        Assert.Equal(0x0004u, (uint)rig.M.ReadConfig(VfioUserRig.Vf0, 0x04, 2).Value);
        c.Write16(Config, 0x04, 0x0000);
        Assert.Equal(0u, (uint)rig.M.ReadConfig(VfioUserRig.Vf0, 0x04, 2).Value);

        // An odd-sized, unaligned read matches the aligned one.
        Assert.Equal(all.AsSpan(0x71, 7).ToArray(), c.Read(Config, 0x71, 7));
        rig.Server.AssertNoErrors();
    }

    [Fact]
    public async Task Bar_accesses_reach_the_vf_registers_while_memory_is_enabled_and_posted_writes_are_honoured()
    {
        await using var rig = await VfioUserRig.StartAsync();
        using var c = await Attach(rig);
        Assert.Equal(0xFFFF_FFFFu, c.Read32(Bar0, TxLegacy + Tdlen));                    // memory disabled: master abort
        c.Write16(Config, 0x04, 0x0006);
        c.Write32(Bar0, TxLegacy + Tdlen, 0x400);
        Assert.Equal(0x400u, c.Read32(Bar0, TxLegacy + Tdlen));
        // The same register as the machine sees it at the VF's real BAR.
        var vf = rig.M.PhysicalFunctions[0];
        Assert.Equal(0x400UL, rig.M.ReadBar(VfioUserRig.Vf0, 0, TxLegacy + Tdlen, 4).Value);

        // A NO_REPLY write gets no reply; the next read sees it.
        c.Send(RegionWrite, RegionAccess(Bar0, TxLegacy + Tdlen, 4, U32s(0x800)), flags: 0x10);
        Assert.Equal(0x800u, c.Read32(Bar0, TxLegacy + Tdlen));
        // 8-byte access, and a read past the end of the BAR is refused.
        c.Write(Bar0, TxLegacy + Tdbal, BitConverter.GetBytes(0x1_2345_6000UL));
        Assert.Equal(0x1_2345_6000UL, BinaryPrimitives.ReadUInt64LittleEndian(c.Read(Bar0, TxLegacy + Tdbal, 8)));
        Assert.Equal(22u, c.Request(RegionRead, RegionAccess(Bar0, 0x3FFE, 4)).Error);
        rig.Server.AssertNoErrors();
    }

    /// <summary>Arms MSI-X with three eventfds the way QEMU does: MSI-X Enable and Bus Master in config, then SET_IRQS.</summary>
    private static OwnedFd[] ArmMsix(VfioUserTestClient c, bool guestWritesEnable = true)
    {
        c.Write16(Config, 0x04, 0x0006);
        if (guestWritesEnable) c.Write16(Config, 0x72, 0x8000);
        var fds = new[] { OwnedFd.EventFd(), OwnedFd.EventFd(), OwnedFd.EventFd() };
        c.Ok(SetIrqs, U32s(20, 0x24, 2, 0, 3), [.. fds.Select(f => f.Fd)]);      // DATA_EVENTFD | ACTION_TRIGGER
        return fds;
    }

    [Fact]
    public async Task Msix_vector_signals_its_eventfd_when_the_pf_sends_a_mailbox_message()
    {
        await using var rig = await VfioUserRig.StartAsync();
        using var c = await Attach(rig);
        var fds = ArmMsix(c);
        using var sub = rig.M.Interrupts.Subscribe([VfioUserRig.Vf0]);
        try
        {
            // igbvf: mailbox ("other") cause → vector 2, enabled.
            c.Write32(Bar0, IvarMisc, 0x80 | 2);
            c.Write32(Bar0, Eims, 1u << 2);
            rig.PfWrite(Vmbmem, 0x1234);
            rig.PfWrite(P2vMailbox, P2vSts);
            Assert.Equal(1, fds[2].WaitSignalled(T.Timeout));
            Assert.Equal(0, fds[0].WaitSignalled(TimeSpan.FromMilliseconds(50)));
            // It was a memory write into the MSI window, seen by every subscriber of the fan-out.
            Assert.True(sub.Reader.TryRead(out var ev));
            Assert.Equal((InterruptKind.Msix, 0xFEE0_0000UL, 2u, 2u), (ev.Kind, ev.Address, ev.Data, ev.Vector));

            // Disarm (DATA_NONE | ACTION_TRIGGER, count 0): the entries are masked again, nothing is signalled.
            c.Ok(SetIrqs, U32s(20, 0x21, 2, 0, 0));
            rig.PfWrite(P2vMailbox, P2vSts);
            Assert.Equal(0, fds[2].WaitSignalled(TimeSpan.FromMilliseconds(100)));
            Assert.Equal(1u, (uint)rig.M.ReadBar(VfioUserRig.Vf0, 3, 2 * 16 + 12, 4).Value);   // masked in the VF's own table
            Assert.Equal(0u, (uint)rig.M.ReadConfig(VfioUserRig.Vf0, 0x72, 2).Value & 0x8000);   // and MSI-X is off
        }
        finally
        {
            foreach (var f in fds) f.Dispose();
        }
        rig.Server.AssertNoErrors();
    }

    [Fact]
    public async Task Msix_arming_in_runs_of_fds_and_no_fds_programs_the_vf_table_like_a_host_driver()
    {
        await using var rig = await VfioUserRig.StartAsync();
        using var c = await Attach(rig);
        c.Write16(Config, 0x04, 0x0006);
        using var e0 = OwnedFd.EventFd();
        using var e2 = OwnedFd.EventFd();
        // QEMU splits {fd, -1, fd} into three messages: a run with descriptors, a run without, a run with.
        c.Ok(SetIrqs, U32s(20, 0x24, 2, 0, 1), e0.Fd);
        c.Ok(SetIrqs, U32s(20, 0x24, 2, 1, 1));
        c.Ok(SetIrqs, U32s(20, 0x24, 2, 2, 1), e2.Fd);
        uint Entry(int v, int dw) => (uint)rig.M.ReadBar(VfioUserRig.Vf0, 3, (ulong)(16 * v + 4 * dw), 4).Value;
        Assert.Equal(new uint[] { 0xFEE0_0000, 0, 0, 0 }, Enumerable.Range(0, 4).Select(dw => Entry(0, dw)));
        Assert.Equal(1u, Entry(1, 3));                                                   // masked
        Assert.Equal(new uint[] { 0xFEE0_0000, 0, 2, 0 }, Enumerable.Range(0, 4).Select(dw => Entry(2, dw)));
        Assert.Equal(0x8000u, (uint)rig.M.ReadConfig(VfioUserRig.Vf0, 0x72, 2).Value & 0x8000);
        // Mask and unmask through SET_IRQS act on the VF's own Mask bits.
        c.Ok(SetIrqs, U32s(20, 0x09, 2, 2, 1));                                          // DATA_NONE | ACTION_MASK
        Assert.Equal(1u, Entry(2, 3));
        c.Ok(SetIrqs, U32s(20, 0x11, 2, 2, 1));                                          // DATA_NONE | ACTION_UNMASK
        Assert.Equal(0u, Entry(2, 3));
        // Loopback trigger: DATA_BOOL | ACTION_TRIGGER signals the chosen eventfds.
        c.Ok(SetIrqs, [.. U32s(23, 0x22, 2, 0, 3), 1, 0, 1]);
        Assert.Equal(1, e0.WaitSignalled(T.Timeout));
        Assert.Equal(1, e2.WaitSignalled(T.Timeout));
        rig.Server.AssertNoErrors();
    }

    [Fact]
    public async Task Vf_rings_in_guest_memory_send_to_the_wire_and_receive_from_it()
    {
        await using var rig = await VfioUserRig.StartAsync();
        using var c = await Attach(rig);
        using var ram = new GuestRam(1 << 20);
        c.Ok(DmaMap, DmaMapPayload(3, 0, Iova, 1 << 20), ram.Fd.Fd);
        var fds = ArmMsix(c, guestWritesEnable: false);   // SET_IRQS turns MSI-X on by itself, as vfio-pci does
        Assert.Equal(0x8000u, (uint)rig.M.ReadConfig(VfioUserRig.Vf0, 0x72, 2).Value & 0x8000);
        using var cts = new CancellationTokenSource(T.Timeout);
        using var capture = rig.Server.Client.Ethernet.CaptureFrames(new PcieEmu.Protocol.V1.CaptureFramesRequest { Port = 0 }, cancellationToken: cts.Token);
        await capture.ResponseHeadersAsync.W();
        try
        {
            // TX ring at IOVA+0 (4 descriptors), frame buffer at IOVA+0x1000.
            var frame = VfioUserRig.Frame([0x00, 0x11, 0x22, 0x33, 0x44, 0x55], VfioUserRig.Mac(0), 96);
            ram.Write(0x1000, frame);
            var d = new byte[16];
            BinaryPrimitives.WriteUInt64LittleEndian(d, Iova + 0x1000);
            BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(8), (uint)frame.Length | 0x2B30_0000);   // DEXT|RS|IFCS|EOP, advanced data
            BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(12), (uint)frame.Length << 14);
            ram.Write(0, d);
            c.Write32(Bar0, TxLegacy + Tdbal, (uint)Iova);
            c.Write32(Bar0, TxLegacy + Tdbah, 0);
            c.Write32(Bar0, TxLegacy + Tdlen, 128);
            c.Write32(Bar0, TxLegacy + Txdctl, QueueEnable);
            c.Write32(Bar0, TxLegacy + Tdt, 1);
            var nic = ((PcieEmu.Core.Devices.Igb.IgbPhysicalFunction)rig.M.PhysicalFunctions[0]).Nic;
            Assert.True(c.Read32(Bar0, TxLegacy + Tdh) == 1, $"TDH did not move; last DMA fault {nic.LastDmaFault}");
            Assert.True(await capture.ResponseStream.MoveNext(cts.Token).W());
            Assert.Equal(frame, capture.ResponseStream.Current.Data.ToByteArray());
            Assert.Equal(1u, c.Read32(Bar0, TxLegacy + Tdh));
            Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(ram.Read(12, 4)) & 1);         // DD written back into guest memory

            // RX ring at IOVA+0x2000 with a buffer at IOVA+0x3000; RX queue 0 → vector 0.
            var rd = new byte[16];
            BinaryPrimitives.WriteUInt64LittleEndian(rd, Iova + 0x3000);
            ram.Write(0x2000, rd);
            c.Write32(Bar0, RxLegacy + Rdbal, (uint)Iova + 0x2000);
            c.Write32(Bar0, RxLegacy + Rdbah, 0);
            c.Write32(Bar0, RxLegacy + Rdlen, 128);
            c.Write32(Bar0, RxLegacy + Srrctl, 2 | 1u << 25);
            c.Write32(Bar0, RxLegacy + Rxdctl, QueueEnable);
            c.Write32(Bar0, RxLegacy + Rdt, 1);
            c.Write32(Bar0, Ivar0, 0x80);
            c.Write32(Bar0, Eims, 1);
            var incoming = VfioUserRig.Frame(VfioUserRig.Mac(0), [0x00, 0x11, 0x22, 0x33, 0x44, 0x55], 128);
            Assert.Equal(1, await rig.Server.Client.InjectFrameAsync(0, incoming).W());
            Assert.Equal(incoming, ram.Read(0x3000, incoming.Length));
            Assert.Equal(1, fds[0].WaitSignalled(T.Timeout));
        }
        finally
        {
            await cts.CancelAsync();
            foreach (var f in fds) f.Dispose();
        }
        rig.Server.AssertNoErrors();
    }

    [Fact]
    public async Task Dma_outside_the_mapped_regions_is_an_unsupported_request_and_unmap_follows_vfio_rules()
    {
        await using var rig = await VfioUserRig.StartAsync();
        using var c = await Attach(rig);
        using var ram = new GuestRam(1 << 20);
        c.Ok(DmaMap, DmaMapPayload(3, 0, Iova, 1 << 20), ram.Fd.Fd);
        c.Ok(DmaMap, DmaMapPayload(1, 0, 0xFFFC_0000, 0x4_0000));                        // a region without fd (BIOS)
        Assert.Equal(17u, c.Request(DmaMap, DmaMapPayload(3, 0, Iova + 0x1000, 0x1000)).Error);   // overlaps: EEXIST
        Assert.Equal(22u, c.Request(DmaMap, DmaMapPayload(3, 0, Iova, 0)).Error);            // empty

        c.Write16(Config, 0x04, 0x0006);
        // A TX ring at an unmapped IOVA: the fetch completes UR (Received Master Abort), nothing goes out.
        c.Write32(Bar0, TxLegacy + Tdbal, 0x8000_0000);
        c.Write32(Bar0, TxLegacy + Tdlen, 128);
        c.Write32(Bar0, TxLegacy + Txdctl, QueueEnable);
        c.Write32(Bar0, TxLegacy + Tdt, 1);
        Assert.Equal(0u, c.Read32(Bar0, TxLegacy + Tdh));
        var nic = ((PcieEmu.Core.Devices.Igb.IgbPhysicalFunction)rig.M.PhysicalFunctions[0]).Nic;
        Assert.True(nic.LastDmaFault != null, $"txdctl {rig.M.ReadBar(VfioUserRig.Vf0, 0, TxLegacy + Txdctl, 4).Value:X} tdt {rig.M.ReadBar(VfioUserRig.Vf0, 0, TxLegacy + Tdt, 4).Value:X} tdlen {rig.M.ReadBar(VfioUserRig.Vf0, 0, TxLegacy + Tdlen, 4).Value:X} tctl {rig.PfRead(Tctl):X} vfte {rig.PfRead(Vfte):X} mrqc {rig.PfRead(Mrqc):X} faults {nic.DmaFaults}");
        var fault = nic.LastDmaFault!.Value;
        Assert.Equal((VfioUserRig.Vf0, PcieEmu.Core.Memory.DmaStatus.UnsupportedRequest, 0x8000_0000UL), (fault.Rid, fault.Status, fault.Address));
        Assert.True((c.Read32(Config, 0x04) & 0x2000_0000) != 0, $"Status.Received Master Abort (config dword 4: 0x{c.Read32(Config, 0x04):X8}, machine 0x{rig.M.ReadConfig(VfioUserRig.Vf0, 4, 4).Value:X8})");

        // A ring in a region mapped without a descriptor: DMA by message is not supported; UR, and the log says why.
        c.Write32(Bar0, TxLegacy + Txdctl, 0);
        c.Write32(Bar0, TxLegacy + Tdbal, 0xFFFC_0000);
        c.Write32(Bar0, TxLegacy + Txdctl, QueueEnable);
        c.Write32(Bar0, TxLegacy + Tdt, 1);
        Assert.Equal((PcieEmu.Core.Memory.DmaStatus.UnsupportedRequest, 0xFFFC_0000UL), (nic.LastDmaFault!.Value.Status, nic.LastDmaFault!.Value.Address));
        Assert.Contains(rig.Server.Logs.Entries, e => e.Message.Contains("without a file descriptor", StringComparison.Ordinal));

        // Unmap: a range cutting a region in two is refused; the exact range works and echoes the request.
        Assert.Equal(22u, c.Request(DmaUnmap, DmaUnmapPayload(0, Iova, 0x1000)).Error);
        var r = c.Ok(DmaUnmap, DmaUnmapPayload(0, Iova, 1 << 20));
        Assert.Equal(DmaUnmapPayload(0, Iova, 1 << 20), r.Payload);
        Assert.Equal(95u, c.Request(DmaUnmap, DmaUnmapPayload(1, 0xFFFC_0000, 0x4_0000)).Error);   // dirty bitmap: ENOTSUP
        c.Ok(DmaUnmap, DmaUnmapPayload(2, 0, 0));                                            // ALL
        rig.Server.AssertNoErrors();
    }

    [Fact]
    public async Task Unmapping_while_the_device_does_dma_is_safe()
    {
        await using var rig = await VfioUserRig.StartAsync();
        using var c = await Attach(rig);
        using var ram = new GuestRam(1 << 16);
        c.Write16(Config, 0x04, 0x0006);
        // RX ring with 32 buffers in guest memory; frames injected from another thread while the client maps and unmaps.
        for (int i = 0; i < 32; i++)
        {
            var rd = new byte[16];
            BinaryPrimitives.WriteUInt64LittleEndian(rd, Iova + 0x1000 + (ulong)i * 0x800);
            ram.Write((ulong)i * 16, rd);
        }
        c.Ok(DmaMap, DmaMapPayload(3, 0, Iova, 1 << 16), ram.Fd.Fd);
        c.Write32(Bar0, RxLegacy + Rdbal, (uint)Iova);
        c.Write32(Bar0, RxLegacy + Rdlen, 32 * 16);
        c.Write32(Bar0, RxLegacy + Srrctl, 2 | 1u << 25);
        c.Write32(Bar0, RxLegacy + Rxdctl, QueueEnable);
        c.Write32(Bar0, RxLegacy + Rdt, 31);
        var frame = VfioUserRig.Frame(VfioUserRig.Mac(0), [0x00, 0x11, 0x22, 0x33, 0x44, 0x55], 1000);
        using var stop = new CancellationTokenSource();
        var nic = ((PcieEmu.Core.Devices.Igb.IgbPhysicalFunction)rig.M.PhysicalFunctions[0]).Nic;
        var injector = Task.Run(() => { while (!stop.IsCancellationRequested) nic.InjectFrame(frame); });
        for (int i = 0; i < 200; i++)
        {
            c.Ok(DmaUnmap, DmaUnmapPayload(0, Iova, 1 << 16));
            c.Ok(DmaMap, DmaMapPayload(3, 0, Iova, 1 << 16), ram.Fd.Fd);
        }
        await stop.CancelAsync();
        await injector.W();
        c.Ok(VersionCmd, VersionPayload());
        rig.Server.AssertNoErrors();
    }

    [Fact]
    public async Task Device_reset_is_a_function_level_reset_the_pf_driver_sees()
    {
        await using var rig = await VfioUserRig.StartAsync();
        using var c = await Attach(rig);
        c.Write16(Config, 0x04, 0x0006);
        c.Write32(Bar0, TxLegacy + Tdlen, 0x400);
        Assert.Equal(0u, rig.PfRead(Vflre) & 1);
        var r = c.Ok(DeviceReset, []);
        Assert.Empty(r.Payload);
        Assert.Equal(1u, rig.PfRead(Vflre) & 1);                                         // VFLRE for VF0
        Assert.Equal(0u, c.Read32(Config, 0x04) & 0x0006);                               // Command back to 0 (MSE emulated, BME real)
        c.Write16(Config, 0x04, 0x0006);
        Assert.Equal(0u, c.Read32(Bar0, TxLegacy + Tdlen));                              // queue registers reset
        Assert.Equal(0x10CA_8086u, c.Read32(Config, 0));
        rig.Server.AssertNoErrors();
    }

    [Fact]
    public async Task Malformed_messages_get_error_replies_and_the_session_goes_on()
    {
        await using var rig = await VfioUserRig.StartAsync();
        using var c = await Attach(rig);

        // Size smaller than the header.
        c.SendRaw(Header(500, VersionCmd, 8));
        var r = c.Receive();
        Assert.Equal((500, 22u, 0x21u), (r.Id, r.Error, r.Flags));
        // Size mismatch for the command.
        Assert.Equal(22u, c.Request(RegionRead, [.. RegionAccess(Config, 0, 4), 0, 0]).Error);
        Assert.Equal(22u, c.Request(DeviceGetInfo, U32s(16, 0, 0)).Error);
        Assert.Equal(22u, c.Request(RegionWrite, RegionAccess(Config, 0, 8, U32s(1))).Error);
        // Bad region, bad offset, bad count.
        Assert.Equal(22u, c.Request(RegionRead, RegionAccess(9, 0, 4)).Error);
        Assert.Equal(22u, c.Request(RegionRead, RegionAccess(8, 0, 4)).Error);             // VGA: absent
        Assert.Equal(22u, c.Request(RegionRead, RegionAccess(Config, 4094, 4)).Error);
        Assert.Equal(22u, c.Request(RegionRead, RegionAccess(Config, ulong.MaxValue, 4)).Error);
        Assert.Equal(22u, c.Request(RegionRead, RegionAccess(Config, 0, 0)).Error);
        Assert.Equal(22u, c.Request(RegionRead, RegionAccess(Config, 0, 64 << 20)).Error);
        // Unknown and unsupported commands.
        Assert.Equal(38u, c.Request(99, []).Error);
        Assert.Equal(38u, c.Request(6, U32s(16, 0, 0, 0)).Error);                           // GET_REGION_IO_FDS
        Assert.Equal(38u, c.Request(15, U32s(0, 0)).Error);                                 // REGION_WRITE_MULTI (not announced)
        // Unexpected descriptors.
        using (var e = OwnedFd.EventFd()) Assert.Equal(22u, c.Request(DeviceGetInfo, U32s(16, 0, 0, 0), e.Fd).Error);
        using (var e = OwnedFd.EventFd()) Assert.Equal(22u, c.Request(SetIrqs, U32s(20, 0x24, 2, 0, 3), [.. Enumerable.Repeat(e.Fd, 20)]).Error);   // over max_msg_fds
        // SET_IRQS with bad flags, index or range.
        Assert.Equal(22u, c.Request(SetIrqs, U32s(20, 0x25, 2, 0, 1)).Error);
        Assert.Equal(22u, c.Request(SetIrqs, U32s(20, 0x24, 7, 0, 1)).Error);
        Assert.Equal(22u, c.Request(SetIrqs, U32s(20, 0x21, 2, 2, 5)).Error);
        // An unsolicited reply gets an error reply.
        c.SendRaw(Header(600, VersionCmd, 16, flags: 1));
        r = c.Receive();
        Assert.Equal((600, 22u), (r.Id, r.Error));
        // A message larger than the largest allowed: its body is skipped, the reply says E2BIG.
        var big = new byte[(2 << 20) + 16];
        Header(700, RegionWrite, (uint)big.Length).CopyTo(big, 0);
        var send = Task.Run(() => c.SendRaw(big));
        Assert.True(c.Readable(TimeSpan.FromSeconds(10)), string.Join("\n", rig.Server.Logs.Entries.Select(e => e.Message)));
        r = c.Receive();
        await send.W();
        Assert.Equal((700, 7u), (r.Id, r.Error));
        // Bad VERSION.
        Assert.Equal(22u, c.Request(VersionCmd, VersionPayload("{not json")).Error);
        Assert.Equal(95u, c.Request(VersionCmd, [1, 0, 0, 0]).Error);

        // Still serving.
        Assert.Equal(0x10CA_8086u, c.Read32(Config, 0));
        rig.Server.AssertNoErrors();
    }

    [Fact]
    public async Task A_client_that_vanishes_mid_message_leaves_the_endpoint_serving_the_next()
    {
        await using var rig = await VfioUserRig.StartAsync();
        using (var c = await Attach(rig))
        {
            c.SendRaw(Header(1, RegionWrite, 64).AsSpan(0, 16));                                  // promises 48 more bytes, then goes away
        }
        using (var c = await Attach(rig))
        {
            c.SendRaw(Header(1, VersionCmd, 16).AsSpan(0, 10));                                      // half a header
        }
        using var next = await Attach(rig);
        Assert.Equal(0x10CA_8086u, next.Read32(Config, 0));
        rig.Server.AssertNoErrors();
    }

    [Fact]
    public async Task A_client_of_a_vf_that_does_not_exist_yet_is_answered_once_the_pf_driver_enables_it()
    {
        await using var rig = await VfioUserRig.StartAsync(enableVfs: false);
        using var c = await rig.ConnectAsync();
        ushort id = c.Send(VersionCmd, VersionPayload());
        Assert.False(c.Readable(TimeSpan.FromMilliseconds(300)));
        rig.EnableVfs(2);
        var r = c.Receive();
        Assert.Equal(id, r.Id);
        Assert.False(r.IsError);
        Assert.Equal(0x10CA_8086u, c.Read32(Config, 0));
        rig.Server.AssertNoErrors();
    }

    [Fact]
    public async Task The_client_is_asked_to_release_a_vf_that_goes_away()
    {
        await using var rig = await VfioUserRig.StartAsync();
        using var c = await Attach(rig);
        using var req = OwnedFd.EventFd();
        c.Ok(SetIrqs, U32s(20, 0x24, 4, 0, 1), req.Fd);
        Assert.Equal(0, req.WaitSignalled(TimeSpan.FromMilliseconds(300)));
        rig.M.WriteConfig(VfioUserRig.Pf0, VfioUserRig.SriovCap + 0x08, 2, 0);           // the PF driver clears VF Enable
        Assert.Equal(1, req.WaitSignalled(T.Timeout));
        // The session stays: config reads complete as Unsupported Request (all ones) except the emulated bytes.
        Assert.Equal(0xFFFF_FFFFu, c.Read32(Config, 0x08));
        Assert.Equal(19u, c.Request(DeviceReset, []).Error);                             // ENODEV
        rig.M.WriteConfig(VfioUserRig.Pf0, VfioUserRig.SriovCap + 0x08, 2, 0x9);         // back
        Assert.Equal(0x0200_0001u, c.Read32(Config, 0x08));                             // class 020000, revision 01
        rig.Server.AssertNoErrors();
    }

    [Fact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public async Task The_socket_is_private_to_the_user()
    {
        await using var rig = await VfioUserRig.StartAsync();
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(rig.SocketPath));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(Path.GetDirectoryName(rig.SocketPath)!));
    }

    [Theory]
    [InlineData("02:10.0", "expected BDF=SOCKET")]
    [InlineData("=/tmp/x.sock", "expected BDF=SOCKET")]
    [InlineData("2:99.0=/tmp/x.sock", "is not a bus:device.function")]
    public void Bad_option_values_name_the_option(string value, string message)
    {
        var ex = Assert.Throws<PcieEmu.Server.Hosting.ServeConfigurationException>(() => PcieEmu.Server.VfioUser.VfioUserBinding.ParseAll([value]));
        Assert.StartsWith("--vfio-user", ex.Message);
        Assert.Contains(message, ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void A_socket_in_a_directory_others_can_write_is_refused()
    {
        var ex = Assert.Throws<PcieEmu.Server.Hosting.ServeConfigurationException>(() => PcieEmu.Server.VfioUser.VfioUserBinding.ParseAll(["02:10.0=/tmp/vf0.sock"]));
        Assert.StartsWith("--vfio-user 02:10.0=/tmp/vf0.sock: the directory /tmp is writable by other users", ex.Message);
    }

    [Fact]
    public void The_same_function_twice_is_refused()
    {
        var ex = Assert.Throws<PcieEmu.Server.Hosting.ServeConfigurationException>(() =>
            PcieEmu.Server.VfioUser.VfioUserBinding.ParseAll(["02:10.0=/tmp/a.sock", "02:10.0=/tmp/b.sock"]));
        Assert.Contains("02:10.0", ex.Message);
    }
}
