namespace PcieEmu.Lab.Tests;

/// <summary>
/// Each model's counters on a 10-frame run (64-byte frames: one round of the workload), against
/// values computed by hand from the accounting rules (docs/iomodels.md, "Accounting"):
/// <list type="bullet">
/// <item>Frames: k guests × 10 × (wire out, wire in, and guest to guest when k &gt; 1).</item>
/// <item>Emulation: per guest one trapped TDT write, then the poll's RDT write, EICR read and EIMS
/// write (4 traps); every frame copied once (64 B); one injected interrupt per guest; the host PF's
/// vector fires at the first frame from the wire and again at the host's EIMS write (frames came in
/// while it was auto-masked): 2 host interrupts.</item>
/// <item>Paravirtual: per guest one notify (the device's avail_event asks for one per batch; the
/// receive refill needs none); every frame copied once; used_event gives one interrupt per guest;
/// the host PF as in emulation.</item>
/// <item>Direct assignment and SR-IOV: no trapped MMIO, no copy; each guest function's vector fires
/// at its first received frame and again at the guest's EIMS write, each an interrupt exit.</item>
/// </list>
/// </summary>
public class CounterTests
{
    [Theory]
    //            model                  k  frames traps exits copied host guest
    [InlineData(IoModel.Emulation,        1, 20,    4,    0,    1280,  2,   1)]
    [InlineData(IoModel.Emulation,        2, 60,    8,    0,    3840,  2,   2)]
    [InlineData(IoModel.Paravirtual,      1, 20,    1,    0,    1280,  2,   1)]
    [InlineData(IoModel.Paravirtual,      2, 60,    2,    0,    3840,  2,   2)]
    [InlineData(IoModel.DirectAssignment, 1, 20,    2,    2,    0,     0,   2)]
    [InlineData(IoModel.Sriov,            1, 20,    2,    2,    0,     0,   2)]
    [InlineData(IoModel.Sriov,            2, 60,    4,    4,    0,     0,   4)]
    public void TenFrameRun_CountsWhatTheRulesSay(IoModel model, int guests, long frames, long traps, long exits, long copied, long host, long guest)
    {
        var row = IoModelLab.RunOne(model, guests, 10, 64);
        Assert.Equal((model, guests, 64), (row.Model, row.Guests, row.FrameSize));
        Assert.Equal(frames, row.Frames);
        Assert.Equal(new { traps, exits, copied, host, guest },
            new { traps = row.Traps, exits = row.InterruptExits, copied = row.BytesCopied, host = row.HostInterrupts, guest = row.GuestInterrupts });
    }

    [Fact]
    public void Emulation_TrapsAreTheEmulatedNicsAccesses_AndNothingElse()
    {
        using var run = new ModelRun(IoModel.Emulation, 1);
        run.Run(10, 64);
        // 4 trapped accesses; the host driver's own accesses to the PF (TDT, then RDT and EIMS) are not traps.
        Assert.Equal((4L, 3L), (run.Accounting.MmioTraps, run.Accounting.UntrappedMmio));
    }

    [Fact]
    public void TwoRounds_DoubleThePerRoundCounts_ButTheAutoMaskedVectorFiresOncePerRound()
    {
        // 40 frames = rounds of 32 and 8: traps, copies and injections double. The host PF's vector
        // does not: the message its EIMS write released in round 1 left it auto-masked, so round 2's
        // frames arrive masked and only its EIMS write fires it (1 + rounds).
        var row = IoModelLab.RunOne(IoModel.Emulation, 1, 40, 64);
        Assert.Equal((80L, 8L, 80L * 64, 3L, 2L), (row.Frames, row.Traps, row.BytesCopied, row.HostInterrupts, row.GuestInterrupts));
    }

    [Fact]
    public void LargeFrames_AreCopiedWhole()
    {
        var row = IoModelLab.RunOne(IoModel.Paravirtual, 2, 10, 1514);
        Assert.Equal(60L * 1514, row.BytesCopied);
    }

    [Fact]
    public void DirectAssignment_RefusesASecondGuest()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => IoModelLab.RunOne(IoModel.DirectAssignment, 2, 10, 64));
        Assert.Equal("guests", e.ParamName);
    }
}
