using System.Buffers.Binary;
using PcieEmu.Core.AddressSpace;
using PcieEmu.Core.Platform;
using PcieEmu.Server.VfioUser;
using static PcieEmu.Core.Devices.Igb.IgbRegs;

namespace PcieEmu.Server.Tests.VfioUser;

/// <summary>
/// A real server with VF0 of PF0 (02:10.0) exposed over vfio-user, and a PF driver's setup done in
/// process through the machine's config and MMIO paths (as the example PF driver does over gRPC).
/// </summary>
internal sealed class VfioUserRig : IAsyncDisposable
{
    public const ushort Pf0 = 0x0100, Vf0 = 0x0280, Vf1 = 0x0282;
    public const int SriovCap = 0x160;

    private VfioUserRig(TestServer server, string socket)
    {
        Server = server;
        SocketPath = socket;
    }

    public TestServer Server { get; }
    public string SocketPath { get; }
    public Machine M => Server.Machine;

    public static async Task<VfioUserRig> StartAsync(bool enableVfs = true, string bdf = "02:10.0")
    {
        string? socket = null;
        var server = await TestServer.StartAsync("unix", vfioUser: dir => [$"{bdf}={socket = Path.Combine(dir, "vfio", "fn.sock")}"]);
        var rig = new VfioUserRig(server, socket!);
        if (enableVfs) rig.EnableVfs(2);
        return rig;
    }

    public Task<VfioUserTestClient> ConnectAsync() => VfioUserTestClient.ConnectAsync(SocketPath);

    public ulong PfBar0 => M.PhysicalFunctions[0].BarWindow(M.PhysicalFunctions[0].Bars[0]).Base;

    public void PfWrite(uint off, uint v) => Assert.Equal(CompletionStatus.Successful, M.WriteMmio(PfBar0 + off, 4, v));
    public uint PfRead(uint off) => (uint)M.ReadMmio(PfBar0 + off, 4).Value;

    /// <summary>PF driver: NumVFs, VF Enable + VF MSE, then VMDq with VF i's MAC 02:00:00:00:10:0i in its pool.</summary>
    public void EnableVfs(int n)
    {
        M.WriteConfig(Pf0, SriovCap + 0x10, 2, (uint)n);
        M.WriteConfig(Pf0, SriovCap + 0x08, 2, 0x9);
        PfWrite(CtrlExt, CtrlExtPfrstd);
        PfWrite(Mrqc, MrqcVmdq);
        PfWrite(Dtxswc, DtxswcLoopback);
        PfWrite(Rctl, RctlEn | RctlBam | RctlSecrc);
        PfWrite(Tctl, TctlEn);
        PfWrite(Mbvfimr, 0xFF);
        uint pools = 0;
        for (int i = 0; i <= n; i++)
        {
            PfWrite(Vmolr + 4u * (uint)i, VmolrAupe | VmolrBam);
            pools |= 1u << i;
        }
        PfWrite(Vfre, pools);
        PfWrite(Vfte, pools);
        for (int i = 0; i < n; i++)
        {
            var mac = Mac(i);
            uint off = Ral0 + 8u * (uint)(i + 1);
            PfWrite(off, BinaryPrimitives.ReadUInt32LittleEndian(mac));
            PfWrite(off + 4, BinaryPrimitives.ReadUInt16LittleEndian(mac.AsSpan(4)) | 1u << (RahPoolShift + i) | RahAv);
        }
    }

    public static byte[] Mac(int i) => [0x02, 0x00, 0x00, 0x00, 0x10, (byte)i];

    public static byte[] Frame(byte[] dst, byte[] src, int length = 64)
    {
        var f = new byte[length];
        dst.CopyTo(f, 0);
        src.CopyTo(f, 6);
        f[12] = 0x08;
        for (int i = 14; i < length; i++) f[i] = (byte)(0x5A + i);
        return f;
    }

    public async ValueTask DisposeAsync()
    {
        await Server.DisposeAsync();
    }
}

/// <summary>A memfd the test maps too: the VM's RAM as QEMU shares it.</summary>
internal sealed class GuestRam : IDisposable
{
    public GuestRam(long size)
    {
        Size = size;
        Fd = new OwnedFd(UnixFd.CreateMemFd("guest-ram", size));
        Address = UnixFd.MapShared(Fd.Fd, (ulong)size, 0, writable: true, out int e);
        Assert.True(Address != 0, $"mmap failed: errno {e}");
    }

    public long Size { get; }
    public OwnedFd Fd { get; }
    public nint Address { get; }
    public byte[] Read(ulong offset, int length)
    {
        var b = new byte[length];
        System.Runtime.InteropServices.Marshal.Copy(Address + (nint)offset, b, 0, length);
        return b;
    }

    public void Write(ulong offset, byte[] data) => System.Runtime.InteropServices.Marshal.Copy(data, 0, Address + (nint)offset, data.Length);

    public void Dispose()
    {
        UnixFd.Unmap(Address, (ulong)Size);
        Fd.Dispose();
    }
}
