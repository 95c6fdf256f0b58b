using System.Diagnostics;
using System.IO.Compression;
using System.Xml.Linq;

namespace PcieEmu.Server.Tests.Packaging;

/// <summary>
/// Issue 19: PcieEmu.Client installs and works as a NuGet package outside the repository. The
/// client is packed into a temporary feed; a console project in a temporary directory references
/// it from there (dependencies from the machine's NuGet caches / source), is built, and runs
/// against a real server on TCP (its token found by the client in the default runtime directory)
/// and on a Unix socket.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class ClientPackageTests
{
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromMinutes(5);

    [Fact]
    public async Task Packed_client_builds_in_a_consumer_project_and_talks_to_a_server_over_tcp_and_unix()
    {
        string repo = Repo.Root;
        string version = File.ReadAllText(Path.Combine(repo, "clients", "VERSION")).Trim();
        string work = Directory.CreateTempSubdirectory("pcie-emu-consumer-").FullName;
        try
        {
            string feed = Path.Combine(work, "feed");
            string config = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Release" : "Debug";
            await Run(repo, "dotnet", "pack", Path.Combine(repo, "src", "PcieEmu.Client"), "-c", config, "--no-build", "-o", feed, "-nologo");

            // The package: full metadata, the readme, the version of clients/VERSION.
            string nupkg = Path.Combine(feed, $"PcieEmu.Client.{version}.nupkg");
            Assert.True(File.Exists(nupkg), $"{nupkg} missing: {string.Join(", ", Directory.GetFiles(feed))}");
            using (var zip = ZipFile.OpenRead(nupkg))
            {
                var nuspecEntry = zip.Entries.Single(e => e.FullName.EndsWith(".nuspec", StringComparison.Ordinal));
                XDocument nuspec;
                using (var s = nuspecEntry.Open()) nuspec = XDocument.Load(s);
                string Get(string name) => nuspec.Descendants().FirstOrDefault(e => e.Name.LocalName == name)?.Value ?? "";
                Assert.Equal(version, Get("version"));
                Assert.NotEqual("PcieEmu.Client", Get("authors"));
                Assert.NotEmpty(Get("authors"));
                Assert.Equal("MIT", Get("license"));
                Assert.Equal("README.md", Get("readme"));
                Assert.Contains("sr-iov", Get("tags"), StringComparison.Ordinal);
                Assert.NotNull(nuspec.Descendants().FirstOrDefault(e => e.Name.LocalName == "repository"));
                Assert.Contains(zip.Entries, e => e.FullName == "README.md");
                Assert.Contains(zip.Entries, e => e.FullName == "lib/net10.0/PcieEmu.Client.dll");
                Assert.Contains(zip.Entries, e => e.FullName == "lib/net10.0/PcieEmu.Client.xml");
                Assert.Contains(zip.Entries, e => e.FullName == "lib/net8.0/PcieEmu.Client.dll");
            }

            // The consumer: its own directory, no repository props, the package from the feed.
            string app = Path.Combine(work, "consumer");
            Directory.CreateDirectory(app);
            File.Copy(Path.Combine(repo, "tests", "PcieEmu.Server.Tests", "Packaging", "Consumer", "Program.cs"), Path.Combine(app, "Program.cs"));
            File.WriteAllText(Path.Combine(app, "Consumer.csproj"), $"""
                <Project Sdk="Microsoft.NET.Sdk">
                  <PropertyGroup>
                    <OutputType>Exe</OutputType>
                    <TargetFramework>net10.0</TargetFramework>
                    <Nullable>enable</Nullable>
                    <ImplicitUsings>enable</ImplicitUsings>
                    <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
                  </PropertyGroup>
                  <ItemGroup>
                    <PackageReference Include="PcieEmu.Client" Version="{version}" />
                  </ItemGroup>
                </Project>
                """);
            // A fresh packages folder (so no stale PcieEmu.Client is ever used); the dependencies
            // resolve from the machine's package caches as fallback folders, else its NuGet source.
            string userPackages = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } np ? np
                : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
            var fallbacks = new[] { userPackages, "/opt/nuget/packages" }.Where(Directory.Exists)
                .Select((d, i) => $"""    <add key="f{i}" value="{d}" />""");
            File.WriteAllText(Path.Combine(app, "NuGet.config"), $"""
                <?xml version="1.0" encoding="utf-8"?>
                <configuration>
                  <config>
                    <add key="globalPackagesFolder" value="{Path.Combine(work, "packages")}" />
                  </config>
                  <packageSources>
                    <clear />
                    <add key="local" value="{feed}" />
                    <add key="nuget.org" value="https://api.nuget.org/v3/index.json" protocolVersion="3" />
                  </packageSources>
                  <fallbackPackageFolders>
                {string.Join("\n", fallbacks)}
                  </fallbackPackageFolders>
                </configuration>
                """);
            await Run(app, "dotnet", "build", "-c", "Release", "-nologo", "-clp:ErrorsOnly");
            string dll = Path.Combine(app, "bin", "Release", "net10.0", "Consumer.dll");
            Assert.True(File.Exists(dll));

            foreach (string transport in new[] { "tcp", "unix" })
            {
                await using var server = await TestServer.StartAsync(transport);
                // The client finds the token where the server's default token file lives:
                // $XDG_RUNTIME_DIR/pcie-emu/token (no token or token file is passed).
                string runtime = Path.Combine(work, "xdg-" + transport);
                Directory.CreateDirectory(Path.Combine(runtime, "pcie-emu"));
                if (File.Exists(server.TokenFile)) File.Copy(server.TokenFile, Path.Combine(runtime, "pcie-emu", "token"));
                Assert.Equal(transport == "tcp", File.Exists(server.TokenFile));
                string output = await Run(app, "dotnet", [dll, server.Target], new Dictionary<string, string?> { ["XDG_RUNTIME_DIR"] = runtime });
                Assert.Contains("CHECK config-read 0x10C98086 pass", output, StringComparison.Ordinal);
                Assert.Contains("CHECK sriov-enable 0x180,0x182 pass", output, StringComparison.Ordinal);
                Assert.Contains("CHECK mmio-read 0x10 pass", output, StringComparison.Ordinal);
                Assert.Contains("CHECK memory DEADBEEF01020304 pass", output, StringComparison.Ordinal);
                Assert.Contains("CHECK ram-map DEADBEEF01020304 pass", output, StringComparison.Ordinal);
                Assert.Contains("CHECK deadline DeadlineExceeded pass", output, StringComparison.Ordinal);
                Assert.Contains($"CHECK token {(transport == "tcp" ? "True" : "False")} pass", output, StringComparison.Ordinal);
                Assert.DoesNotContain("FAIL", output, StringComparison.Ordinal);
                Assert.EndsWith("OK", output.TrimEnd(), StringComparison.Ordinal);
                server.AssertNoErrors();
            }
        }
        finally
        {
            try { Directory.Delete(work, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    private static Task<string> Run(string dir, string file, params string[] args) => Run(dir, file, args, null);

    /// <summary>Runs a process to its end (killed after <see cref="ProcessTimeout"/>); fails with its output unless it exits 0.</summary>
    private static async Task<string> Run(string dir, string file, string[] args, IDictionary<string, string?>? env)
    {
        var psi = new ProcessStartInfo(file) { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args) psi.ArgumentList.Add(a);
        // Nothing of this test host's MSBuild or client settings leaks into the child.
        foreach (string key in psi.Environment.Keys.ToList())
            if (key.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase) || key.StartsWith("PCIEEMU_", StringComparison.Ordinal))
                psi.Environment.Remove(key);
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        if (env != null) foreach (var kv in env) psi.Environment[kv.Key] = kv.Value;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        try
        {
            await p.WaitForExitAsync().WaitAsync(ProcessTimeout);
        }
        catch (TimeoutException)
        {
            p.Kill(entireProcessTree: true);
            throw;
        }
        string output = await stdout.WaitAsync(T.Timeout) + await stderr.WaitAsync(T.Timeout);
        Assert.True(p.ExitCode == 0, $"{file} {string.Join(' ', args)} exited {p.ExitCode}:\n{output}");
        return output;
    }
}

/// <summary>The repository this test assembly was built from.</summary>
internal static class Repo
{
    public static string Root { get; } = Find();

    private static string Find()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "PcieEmu.sln"))) return d.FullName;
        throw new InvalidOperationException($"no PcieEmu.sln above {AppContext.BaseDirectory}");
    }
}
