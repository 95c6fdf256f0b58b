using System.Runtime.Versioning;
using PcieEmu.Core.Memory;

namespace PcieEmu.Core.Tests.Memory;

[UnsupportedOSPlatform("windows")]
public sealed class HostRamTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("pcie-emu-ram-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void A_new_file_is_0600_locked_and_deleted_on_dispose()
    {
        string path = Path.Combine(_dir, "ram.bin");
        using (var ram = new HostRam(path, 1 << 20))
        {
            Assert.True(ram.Created);
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
            Assert.True(HostRam.IsInUse(path));
            Assert.Throws<IOException>(() => new HostRam(path, 1 << 20));
            Assert.True(File.Exists(path));   // the refused second instance did not delete it
        }
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void An_existing_file_is_not_truncated_and_survives_dispose()
    {
        string path = Path.Combine(_dir, "mine.bin");
        File.WriteAllBytes(path, [1, 2, 3, 4]);
        using (var ram = new HostRam(path, 8192))
        {
            Assert.False(ram.Created);
            var head = new byte[5];
            ram.Read(0, head);
            Assert.Equal(new byte[] { 1, 2, 3, 4, 0 }, head);   // grown, not truncated
            ram.Write(0, [9]);
        }
        Assert.False(HostRam.IsInUse(path));
        Assert.Equal(new byte[] { 9, 2, 3, 4 }, File.ReadAllBytes(path)[..4]);
    }
}
