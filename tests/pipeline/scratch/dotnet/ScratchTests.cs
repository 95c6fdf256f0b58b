namespace Scratch;

/// <summary>The pipeline test's scratch .NET suite: healthy unless SCRATCH_MODE=crash, when the
/// test host dies mid-run (Environment.FailFast) after another test has passed.</summary>
public class ScratchTests
{
    [Xunit.Fact]
    public void Passes() => Xunit.Assert.True(true);

    [Xunit.Fact(Skip = "scratch: proves skipped tests are listed by name")]
    public void Skipped() => Xunit.Assert.Fail("never runs");

    [Xunit.Fact]
    public void CrashesTheHostWhenAsked()
    {
        if (Environment.GetEnvironmentVariable("SCRATCH_MODE") == "crash")
            Environment.FailFast("scratch: the test host crashes on purpose");
    }
}
