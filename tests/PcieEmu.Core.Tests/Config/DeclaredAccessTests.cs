using PcieEmu.Core.Config;
using PcieEmu.Core.Topology;

namespace PcieEmu.Core.Tests.Config;

/// <summary>
/// Hand-written access tables from the specifications (pcie-config.md §1, §2, §3, §5, §6),
/// checked by behaviour. Registers with side effects (FLR, VF Enable) are covered by their own
/// tests and probed here on a machine that is thrown away.
/// </summary>
public class DeclaredAccessTests
{
    // (offset, width, RW bits, RW1C bits)
    public static TheoryData<int, int, uint, uint> Type0Pf => new()
    {
        { 0x00, 4, 0, 0 },                 // Vendor / Device ID
        { 0x04, 2, 0x0547, 0 },            // Command: I/O, MSE, BME, PER, SERR, INTx Disable
        { 0x06, 2, 0, 0xF900 },            // Status RW1C error bits
        { 0x08, 4, 0, 0 },                 // Revision / class
        { 0x0C, 1, 0xFF, 0 },              // Cache Line Size
        { 0x0D, 1, 0, 0 },                 // Latency Timer RO 0
        { 0x0E, 1, 0, 0 },                 // Header Type
        { 0x0F, 1, 0, 0 },                 // BIST
        { 0x10, 4, 0xFFFE_0000, 0 },       // BAR0 128 KiB
        { 0x14, 4, 0xFFC0_0000, 0 },       // BAR1 4 MiB
        { 0x18, 4, 0xFFFF_FFE0, 0 },       // BAR2 32 B I/O
        { 0x1C, 4, 0xFFFF_C000, 0 },       // BAR3 16 KiB
        { 0x20, 4, 0, 0 }, { 0x24, 4, 0, 0 }, // unimplemented BARs
        { 0x28, 4, 0, 0 },                 // CardBus CIS
        { 0x2C, 4, 0, 0 },                 // Subsystem IDs
        { 0x30, 4, 0xFFC0_0001, 0 },       // ROM 4 MiB + enable
        { 0x34, 1, 0, 0 },
        { 0x3C, 1, 0xFF, 0 },              // Interrupt Line
        { 0x3D, 1, 0, 0 }, { 0x3E, 2, 0, 0 },
        { 0x40, 4, 0, 0 },                 // PM header + PMC
        { 0x44, 2, 0x1F03, 0x8000 },       // PMCSR: power state, PME_En, Data_Select; PME Status RW1C
        { 0x52, 2, 0x0071, 0 },            // MSI control: enable, MME
        { 0x54, 4, 0xFFFF_FFFC, 0 },       // MSI address low
        { 0x58, 4, 0xFFFF_FFFF, 0 },       // MSI address high
        { 0x5C, 2, 0xFFFF, 0 },            // MSI data
        { 0x60, 4, 0x1, 0 },               // MSI mask (1 vector)
        { 0x64, 4, 0, 0 },                 // MSI pending RO
        { 0x72, 2, 0xC000, 0 },            // MSI-X control
        { 0x74, 4, 0, 0 }, { 0x78, 4, 0, 0 },
        { 0xA2, 2, 0, 0 }, { 0xA4, 4, 0, 0 },
        { 0xA8, 2, 0x7DFF, 0 },            // DevCtl (bit 15 Initiate FLR tested separately)
        { 0xAA, 2, 0, 0x000F },            // DevSta
        { 0xAC, 4, 0, 0 },
        { 0xB0, 2, 0x02CB, 0 },            // LinkCtl
        { 0xB2, 2, 0, 0 },
        { 0xC4, 4, 0, 0 },
        { 0xC8, 2, 0x001F, 0 },            // DevCtl2: timeout value/disable; no ARI forwarding on an endpoint
        { 0x104, 4, 0, 0x001F_F030 },      // AER uncorrectable status
        { 0x108, 4, 0x001F_F030, 0 },
        { 0x10C, 4, 0x001F_F030, 0 },
        { 0x110, 4, 0, 0x0000_31C1 },
        { 0x114, 4, 0x0000_31C1, 0 },
        { 0x118, 4, 0, 0 },
        { 0x144, 4, 0, 0 }, { 0x148, 4, 0, 0 }, // DSN
        { 0x154, 4, 0, 0 },                // ARI capability/control
        { 0x164, 4, 0, 0 },                // SR-IOV capabilities
        { 0x16A, 2, 0, 0 },                // SR-IOV status (no migration)
        { 0x16C, 4, 0, 0 },                // Initial/Total VFs
        { 0x174, 4, 0, 0 }, { 0x178, 4, 0, 0 }, { 0x17C, 4, 0, 0 },
        { 0x184, 4, 0xFFFF_C000, 0 },      // VF BAR0 low (16 KiB per VF)
        { 0x188, 4, 0xFFFF_FFFF, 0 },      // VF BAR0 high
        { 0x18C, 4, 0, 0 },
        { 0x190, 4, 0xFFFF_C000, 0 },      // VF BAR3
        { 0x194, 4, 0xFFFF_FFFF, 0 },
        { 0x198, 4, 0, 0 }, { 0x19C, 4, 0, 0 },
        { 0xE0, 4, 0, 0 },                 // unlinked VPD header
        { 0x200, 4, 0, 0 }, { 0xFFC, 4, 0, 0 },
    };

    [Theory, MemberData(nameof(Type0Pf))]
    public void Pf0RegisterHasDeclaredAccess(int off, int width, uint rw, uint w1c)
    {
        using var m = TestMachine.Create();
        var cs = m.PhysicalFunctions[0].Config;
        uint avoid = off == 0xA8 ? PcieEmu.Core.Config.Capabilities.PcieCapability.DevCtlInitiateFlr : 0u;
        Assert.Equal(rw, AccessProbe.Writable(cs, off, width, avoid));
        Assert.Equal(w1c, AccessProbe.WriteOneToClear(cs, off, width, avoid));
    }

    public static TheoryData<int, int, uint, uint> Type1RootPort => new()
    {
        { 0x04, 2, 0x0547, 0 }, { 0x06, 2, 0, 0xF900 }, { 0x0E, 1, 0, 0 },
        { 0x10, 4, 0, 0 }, { 0x14, 4, 0, 0 },                // no BARs
        { 0x18, 1, 0xFF, 0 }, { 0x19, 1, 0xFF, 0 }, { 0x1A, 1, 0xFF, 0 }, { 0x1B, 1, 0, 0 },
        { 0x1C, 1, 0xF0, 0 }, { 0x1D, 1, 0xF0, 0 },         // I/O base/limit (32-bit I/O, RO low nibble)
        { 0x1E, 2, 0, 0xF900 },                              // Secondary Status
        { 0x20, 2, 0xFFF0, 0 }, { 0x22, 2, 0xFFF0, 0 },     // Memory base/limit
        { 0x24, 2, 0xFFF0, 0 }, { 0x26, 2, 0xFFF0, 0 },     // Prefetchable base/limit
        { 0x28, 4, 0xFFFF_FFFF, 0 }, { 0x2C, 4, 0xFFFF_FFFF, 0 },
        { 0x30, 2, 0xFFFF, 0 }, { 0x32, 2, 0xFFFF, 0 },
        { 0x38, 4, 0, 0 },                                   // no expansion ROM
        { 0x3C, 1, 0xFF, 0 }, { 0x3D, 1, 0, 0 },
        { 0x3E, 2, 0x005F, 0 },                              // Bridge Control
        { 0x48, 2, 0x7CFF & ~0x0300, 0 },                    // DevCtl
        { 0x64, 4, 0, 0 },                                   // DevCap2 (ARI forwarding supported)
        { 0x68, 2, 0x003F, 0 },                              // DevCtl2 incl. ARI Forwarding Enable
    };

    [Theory, MemberData(nameof(Type1RootPort))]
    public void RootPortRegisterHasDeclaredAccess(int off, int width, uint rw, uint w1c)
    {
        using var m = TestMachine.Create();
        var cs = m.RootPort.Config;
        uint avoid = off == 0xA8 ? PcieEmu.Core.Config.Capabilities.PcieCapability.DevCtlInitiateFlr : 0u;
        Assert.Equal(rw, AccessProbe.Writable(cs, off, width, avoid));
        Assert.Equal(w1c, AccessProbe.WriteOneToClear(cs, off, width, avoid));
    }

    public static TheoryData<int, int, uint, uint> VfHeader => new()
    {
        { 0x00, 4, 0, 0 }, { 0x04, 2, 0x0004, 0 }, { 0x06, 2, 0, 0xF900 },
        { 0x0C, 1, 0, 0 }, { 0x0E, 1, 0, 0 },
        { 0x10, 4, 0, 0 }, { 0x14, 4, 0, 0 }, { 0x18, 4, 0, 0 }, { 0x1C, 4, 0, 0 }, { 0x20, 4, 0, 0 }, { 0x24, 4, 0, 0 },
        { 0x30, 4, 0, 0 }, { 0x3C, 2, 0, 0 },
        { 0x72, 2, 0xC000, 0 }, { 0xA8, 2, 0, 0 }, { 0xAA, 2, 0, 0x000F },
        { 0x104, 4, 0, 0x001F_F030 },
    };

    [Theory, MemberData(nameof(VfHeader))]
    public void VfRegisterHasDeclaredAccess(int off, int width, uint rw, uint w1c)
    {
        using var m = TestMachine.Create();
        m.EnableVfs(0x0100, 2);
        var cs = m.PhysicalFunctions[0].VirtualFunctions[1].Config;
        uint avoid = off == 0xA8 ? PcieEmu.Core.Config.Capabilities.PcieCapability.DevCtlInitiateFlr : 0u;
        Assert.Equal(rw, AccessProbe.Writable(cs, off, width, avoid));
        Assert.Equal(w1c, AccessProbe.WriteOneToClear(cs, off, width, avoid));
    }

    [Fact]
    public void VfHeaderReadsAsSrIovSpecifies()
    {
        using var m = TestMachine.Create();
        m.EnableVfs(0x0100, 1);
        ushort vf = 0x0280;
        Assert.Equal(0xFFFF_FFFFu, m.Read(vf, 0x00));
        Assert.Equal(m.Read(0x0100, 0x08), m.Read(vf, 0x08));   // revision + class as the PF
        Assert.Equal(m.Read(0x0100, 0x2C), m.Read(vf, 0x2C));   // subsystem as the PF
        Assert.Equal(0x0010u, m.Read(vf, 0x06, 2));              // capabilities list
        Assert.Equal(0u, m.Read(vf, 0x0E, 1));                   // header type 0, single function
        Assert.Equal(0u, m.Read(vf, 0x3C, 2));                   // no INTx
        Assert.Equal(0x70u, m.Read(vf, 0x34, 1));
        m.Write(vf, 0x04, 2, 0xFFFF);
        Assert.Equal(0x0004u, m.Read(vf, 0x04, 2));              // only Bus Master sticks
    }
}
