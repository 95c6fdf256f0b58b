using System.Security.Cryptography;
using System.Text;

namespace PcieEmu.Server.Tests.Web;

/// <summary>The committed bundle (src/PcieEmu.Server/Web/wwwroot) was built from the committed sources (web/).</summary>
public sealed class WebBundleTests
{
    private static string Root()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir != null && !File.Exists(Path.Combine(dir.FullName, "PcieEmu.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("repository root (PcieEmu.sln) not found above " + AppContext.BaseDirectory);
    }

    [Fact]
    public void The_bundle_is_up_to_date_with_web_src_and_the_lock_file()
    {
        string web = Path.Combine(Root(), "web");
        var files = new List<string> { "package-lock.json" };
        files.AddRange(Directory.GetFiles(Path.Combine(web, "src")).Select(f => "src/" + Path.GetFileName(f)).Order(StringComparer.Ordinal));
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var f in files)
        {
            sha.AppendData(Encoding.UTF8.GetBytes(f + "\n"));
            sha.AppendData(File.ReadAllBytes(Path.Combine(web, f)));
        }
        string stamp = File.ReadAllText(Path.Combine(Root(), "src/PcieEmu.Server/Web/bundle-source.sha256")).Trim();
        Assert.True(Convert.ToHexStringLower(sha.GetHashAndReset()) == stamp,
            "web/src or web/package-lock.json changed since the bundle was built: run `make web` and commit src/PcieEmu.Server/Web");
    }
}
