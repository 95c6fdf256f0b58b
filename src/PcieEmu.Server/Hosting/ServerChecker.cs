using PcieEmu.Core.Checker;
using PcieEmu.Core.Platform;

namespace PcieEmu.Server.Hosting;

/// <summary>
/// <c>serve --check</c> (the default): the Core driver-conduct checker, fed from the event path
/// by a loop of its own for the server's life. With <c>--check off</c> there is no checker.
/// </summary>
public sealed class ServerChecker : IDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop = Task.CompletedTask;

    /// <summary>Starts checking when <see cref="ServeSettings.Check"/> is set.</summary>
    public ServerChecker(Machine machine, ServeSettings settings, LimitsOptions limits)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(limits);
        if (!settings.Check) return;
        Checker = new DriverChecker(machine, limits.CheckerQueueCapacity, limits.MaxViolations);
        var c = Checker;
        _loop = Task.Run(() => c.RunAsync(_stop.Token));
    }

    /// <summary>The checker, or null when the server runs with <c>--check off</c>.</summary>
    public DriverChecker? Checker { get; }

    /// <summary>Stops the loop and the subscription.</summary>
    public void Dispose()
    {
        _stop.Cancel();
        _loop.Wait(TimeSpan.FromSeconds(5));
        Checker?.Dispose();
        _stop.Dispose();
    }
}
