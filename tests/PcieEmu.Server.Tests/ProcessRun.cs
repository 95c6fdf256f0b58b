using System.Diagnostics;

namespace PcieEmu.Server.Tests;

/// <summary>Runs a program (or waits for a started one) to its end, collecting its output; a hang fails the test.</summary>
internal static class ProcessRun
{
    /// <summary>The built <c>pcie-emu</c> with <paramref name="args"/>, through <c>dotnet</c>.</summary>
    public static ProcessStartInfo PcieEmu(params string[] args) =>
        new("dotnet", [Path.Combine(AppContext.BaseDirectory, "pcie-emu.dll"), .. args]) { RedirectStandardOutput = true, RedirectStandardError = true };

    public static Task<(int Code, string Out, string Err)> RunAsync(string file, params string[] args) =>
        RunAsync(new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true });

    public static async Task<(int Code, string Out, string Err)> RunAsync(ProcessStartInfo psi)
    {
        using var p = Process.Start(psi)!;
        return await FinishAsync(p);
    }

    public static async Task<(int Code, string Out, string Err)> FinishAsync(Process p)
    {
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync().W();
        return (p.ExitCode, await stdout.W(), await stderr.W());
    }
}
