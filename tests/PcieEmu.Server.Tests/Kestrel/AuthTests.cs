extern alias client;
using System.Diagnostics;
using Google.Protobuf;
using Google.Protobuf.Reflection;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging;
using PcieEmu.Client;
using PcieEmu.Protocol.V1;
using PcieEmu.Server.Hosting;
// The server has internal service classes of the same names (its service bases).
using ConfigService = client::PcieEmu.Protocol.V1.ConfigService;
using MemoryService = client::PcieEmu.Protocol.V1.MemoryService;
using PlatformService = client::PcieEmu.Protocol.V1.PlatformService;
using SessionService = client::PcieEmu.Protocol.V1.SessionService;

namespace PcieEmu.Server.Tests.Kestrel;

/// <summary>
/// TCP authentication (issue 9, defect 4): the per-start token, where it is written, what a TCP
/// caller without it gets (UNAUTHENTICATED and no effect), the Unix socket without it, and
/// <c>--tcp-auth none</c>.
/// </summary>
[Collection("environment")]   // some tests set PCIEEMU_TOKEN for the process
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class AuthTests
{
    private static readonly Marshaller<byte[]> Raw = Marshallers.Create(b => b, b => b);

    /// <summary>Every method of every service the server maps, as (service, method, type).</summary>
    private static IEnumerable<(string Service, string Method, MethodType Type)> AllMethods()
    {
        FileDescriptor[] files =
        [
            PlatformReflection.Descriptor, ConfigReflection.Descriptor, MmioReflection.Descriptor, MemoryReflection.Descriptor,
            SessionReflection.Descriptor, InterruptReflection.Descriptor, EthernetReflection.Descriptor, IommuReflection.Descriptor,
            Grpc.Health.V1.HealthReflection.Descriptor, Grpc.Reflection.V1Alpha.ReflectionReflection.Descriptor,
        ];
        foreach (var service in files.SelectMany(f => f.Services))
            foreach (var m in service.Methods)
                yield return (service.FullName, m.Name, (m.IsClientStreaming, m.IsServerStreaming) switch
                {
                    (false, false) => MethodType.Unary,
                    (false, true) => MethodType.ServerStreaming,
                    (true, false) => MethodType.ClientStreaming,
                    _ => MethodType.DuplexStreaming,
                });
    }

    /// <summary>Calls one method with an empty message (and ends the request stream); returns the status.</summary>
    private static async Task<Status> CallAsync(CallInvoker invoker, string service, string method, MethodType type, byte[]? body = null, Metadata? headers = null)
    {
        var m = new Method<byte[], byte[]>(type, service, method, Raw, Raw);
        var options = new CallOptions(headers, DateTime.UtcNow + T.Timeout);
        body ??= [];
        try
        {
            switch (type)
            {
                case MethodType.Unary:
                    await invoker.AsyncUnaryCall(m, null, options, body).ResponseAsync.WaitAsync(T.Timeout);
                    return Status.DefaultSuccess;
                case MethodType.ServerStreaming:
                {
                    using var call = invoker.AsyncServerStreamingCall(m, null, options, body);
                    while (await call.ResponseStream.MoveNext().WaitAsync(T.Timeout)) { }
                    return call.GetStatus();
                }
                case MethodType.ClientStreaming:
                {
                    using var call = invoker.AsyncClientStreamingCall(m, null, options);
                    await call.RequestStream.WriteAsync(body).WaitAsync(T.Timeout);
                    await call.RequestStream.CompleteAsync().WaitAsync(T.Timeout);
                    await call.ResponseAsync.WaitAsync(T.Timeout);
                    return Status.DefaultSuccess;
                }
                default:
                {
                    using var call = invoker.AsyncDuplexStreamingCall(m, null, options);
                    try
                    {
                        await call.RequestStream.WriteAsync(body).WaitAsync(T.Timeout);
                        await call.RequestStream.CompleteAsync().WaitAsync(T.Timeout);
                    }
                    catch (RpcException) { }           // the answer may already have ended the call
                    catch (InvalidOperationException) { }
                    while (await call.ResponseStream.MoveNext().WaitAsync(T.Timeout)) { }
                    return call.GetStatus();
                }
            }
        }
        catch (RpcException ex)
        {
            return ex.Status;
        }
    }

    private static GrpcChannel BareChannel(string target)
    {
        var ep = Endpoints.Parse(target);
        return GrpcChannel.ForAddress($"http://{ep.Host}:{ep.Port}");
    }

    private static Metadata Bearer(string token) => new() { { "authorization", "Bearer " + token } };

    [Fact]
    public async Task Every_method_on_TCP_without_or_with_a_wrong_token_is_UNAUTHENTICATED()
    {
        await using var s = await TestServer.StartAsync("tcp");
        using var bare = BareChannel(s.Target);
        string token = (await File.ReadAllTextAsync(s.TokenFile).W()).Trim();
        var methods = AllMethods().ToList();
        Assert.True(methods.Count >= 17, $"only {methods.Count} methods found");
        Assert.Contains(methods, m => m.Service == "grpc.health.v1.Health");
        Assert.Contains(methods, m => m.Service == "grpc.reflection.v1alpha.ServerReflection");
        Metadata?[] wrong =
        [
            null,
            Bearer(new string('0', token.Length)),                    // same length, other value
            Bearer(token[..^1]),                                       // a prefix
            Bearer(token + "0"),
            new() { { "authorization", token } },                     // no scheme
            new() { { "authorization", "Basic " + token } },
            new() { { "x-token", token } },
        ];
        foreach (var (service, method, type) in methods.Append(("pcieemu.v1.NoSuchService", "Nothing", MethodType.Unary)))
            foreach (var headers in wrong)
            {
                var status = await CallAsync(bare.CreateCallInvoker(), service, method, type, headers: headers);
                Assert.True(status.StatusCode == StatusCode.Unauthenticated, $"{service}/{method} with {headers?.FirstOrDefault()?.Key ?? "no"} metadata: {status}");
                Assert.Contains("token", status.Detail, StringComparison.Ordinal);
            }
        // The same raw calls with the token are answered by the services (not UNAUTHENTICATED).
        var health = await CallAsync(bare.CreateCallInvoker(), "grpc.health.v1.Health", "Check", MethodType.Unary, headers: Bearer(token));
        Assert.Equal(StatusCode.OK, health.StatusCode);
        var reflection = await CallAsync(bare.CreateCallInvoker(), "grpc.reflection.v1alpha.ServerReflection", "ServerReflectionInfo", MethodType.DuplexStreaming,
            new Grpc.Reflection.V1Alpha.ServerReflectionRequest { ListServices = "" }.ToByteArray(), Bearer(token));
        Assert.Equal(StatusCode.OK, reflection.StatusCode);
        s.AssertNoErrors();
    }

    [Fact]
    public async Task Unauthenticated_writes_have_no_effect()
    {
        await using var s = await TestServer.StartAsync("tcp");
        using var bare = BareChannel(s.Target);
        const uint Nic = 0x0100;
        uint before = await s.Client.ReadConfig32Async(Nic, 0x3C).W();
        var ram = new byte[16];
        Array.Fill(ram, (byte)0xA5);

        var config = new ConfigService.ConfigServiceClient(bare);
        var memory = new MemoryService.MemoryServiceClient(bare);
        var platform = new PlatformService.PlatformServiceClient(bare);
        var wrong = Bearer(new string('f', 64));
        foreach (var headers in new Metadata?[] { null, wrong })
        {
            Assert.Equal(StatusCode.Unauthenticated, T.Rpc(() => config.WriteConfigAsync(new WriteConfigRequest { Rid = Nic, Offset = 0x3C, Width = 1, Value = 0x5A }, headers).ResponseAsync).StatusCode);
            Assert.Equal(StatusCode.Unauthenticated, T.Rpc(() => memory.WriteMemoryAsync(new WriteMemoryRequest { Address = 0x1000, Data = ByteString.CopyFrom(ram) }, headers).ResponseAsync).StatusCode);
            Assert.Equal(StatusCode.Unauthenticated, T.Rpc(() => platform.ResetPlatformAsync(new ResetPlatformRequest(), headers).ResponseAsync).StatusCode);
            // A session: posted writes in a batch, then the stream ends.
            using var session = new SessionService.SessionServiceClient(bare).Transact(headers);
            var batch = new TransactRequest { Tag = 1, ConfigWrite = new ConfigWriteOp { Rid = Nic, Offset = 0x3C, Width = 1, Value = 0x33 } };
            try
            {
                await session.RequestStream.WriteAsync(batch).W();
                await session.RequestStream.CompleteAsync().W();
            }
            catch (RpcException) { }
            catch (InvalidOperationException) { }
            var ex = await Assert.ThrowsAsync<RpcException>(async () => { while (await session.ResponseStream.MoveNext().W()) { } }).W();
            Assert.Equal(StatusCode.Unauthenticated, ex.StatusCode);
        }
        Assert.Equal(before, await s.Client.ReadConfig32Async(Nic, 0x3C).W());
        var readBack = await s.Client.Memory.ReadMemoryAsync(new ReadMemoryRequest { Address = 0x1000, Length = 16 }).W();
        Assert.Equal(new byte[16], readBack.Data.ToByteArray());
        s.AssertNoErrors();
    }

    [Fact]
    public async Task The_token_file_is_0600_fresh_atomic_and_removed_at_exit()
    {
        string dir = Directory.CreateTempSubdirectory("pcie-emu-auth-").FullName;
        try
        {
            string path = Path.Combine(dir, "token");
            string victim = Path.Combine(dir, "victim");
            await File.WriteAllTextAsync(victim, "not yours\n").W();
            File.CreateSymbolicLink(path, victim);      // a planted link is replaced, never followed
            var app = Build(dir, ["tcp://127.0.0.1:0"], path);
            await app.StartAsync().W();
            try
            {
                var info = new FileInfo(path);
                Assert.Null(info.LinkTarget);
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
                string token = (await File.ReadAllTextAsync(path).W()).Trim();
                Assert.Matches("^[0-9a-f]{64}$", token);
                Assert.Equal("not yours\n", await File.ReadAllTextAsync(victim).W());
                Assert.Equal(["token", "victim"], Directory.GetFileSystemEntries(dir).Select(Path.GetFileName).Where(n => !n!.StartsWith("ram-", StringComparison.Ordinal)).Order());   // no temp file left
                using var c = PcieEmuClient.Connect(ServerHost.BoundEndpoints(app).Single(), token: token);
                Assert.Equal(Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.Serving, (await c.Health.CheckAsync(new Grpc.Health.V1.HealthCheckRequest()).W()).Status);
            }
            finally
            {
                await app.StopAsync().W();
                await app.DisposeAsync().AsTask().W();
            }
            Assert.False(File.Exists(path));

            // A second start: a new token. If another server has replaced the file since, it is left alone.
            var first = Build(dir, ["tcp://127.0.0.1:0"], path);
            await first.StartAsync().W();
            string firstToken = (await File.ReadAllTextAsync(path).W()).Trim();
            var second = Build(dir, ["tcp://127.0.0.1:0"], path);
            await second.StartAsync().W();
            string secondToken = (await File.ReadAllTextAsync(path).W()).Trim();
            Assert.NotEqual(firstToken, secondToken);
            await first.StopAsync().W();
            await first.DisposeAsync().AsTask().W();
            Assert.Equal(secondToken, (await File.ReadAllTextAsync(path).W()).Trim());
            await second.StopAsync().W();
            await second.DisposeAsync().AsTask().W();
            Assert.False(File.Exists(path));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task Without_TCP_no_token_file_is_written_and_bad_token_paths_are_refused()
    {
        string dir = Directory.CreateTempSubdirectory("pcie-emu-auth-").FullName;
        try
        {
            var app = Build(dir, [$"unix://{dir}/s.sock"], Path.Combine(dir, "token"));
            await app.StartAsync().W();
            Assert.False(File.Exists(Path.Combine(dir, "token")));
            await app.StopAsync().W();
            await app.DisposeAsync().AsTask().W();

            var ex = Assert.Throws<ServeConfigurationException>(() => Build(dir, ["tcp://127.0.0.1:0"], Path.Combine(dir, "no-such-dir", "token")));
            Assert.Contains("--token-file", ex.Message, StringComparison.Ordinal);
            Directory.CreateDirectory(Path.Combine(dir, "adir"));
            ex = Assert.Throws<ServeConfigurationException>(() => Build(dir, ["tcp://127.0.0.1:0"], Path.Combine(dir, "adir")));
            Assert.Contains("is a directory", ex.Message, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task The_Unix_socket_needs_no_token_while_TCP_does()
    {
        string dir = Directory.CreateTempSubdirectory("pcie-emu-auth-").FullName;
        var logs = new AllLogs();
        var app = Build(dir, ["tcp://127.0.0.1:0", $"unix://{dir}/s.sock"], Path.Combine(dir, "token"), logs: logs);
        await app.StartAsync().W();
        try
        {
            string tcp = ServerHost.BoundEndpoints(app).Single(e => e.StartsWith("tcp:", StringComparison.Ordinal));
            using (var unix = PcieEmuClient.Connect($"unix://{dir}/s.sock"))
            {
                Assert.False(unix.HasToken);
                Assert.NotEmpty(await unix.ListFunctionsAsync().W());
                Assert.Equal(CompletionStatus.Successful, await unix.WriteConfig8Async(0x0100, 0x3C, 0x0B).W());
            }
            using (var bare = BareChannel(tcp))
            {
                var ex = T.Rpc(() => new PlatformService.PlatformServiceClient(bare).ListFunctionsAsync(new ListFunctionsRequest()).ResponseAsync);
                Assert.Equal(StatusCode.Unauthenticated, ex.StatusCode);
            }
            using (var withFile = PcieEmuClient.Connect(tcp, tokenFile: Path.Combine(dir, "token")))
            {
                Assert.True(withFile.HasToken);
                Assert.Equal(0x0Bu, await withFile.ReadConfig8Async(0x0100, 0x3C).W());
                // Stubs made on the client's channel carry the token too.
                Assert.NotEmpty((await new PlatformService.PlatformServiceClient(withFile.Channel).ListFunctionsAsync(new ListFunctionsRequest()).W()).Functions);
            }
            Assert.Contains(logs.Messages, m => m.Contains(Path.Combine(dir, "token"), StringComparison.Ordinal) && m.Contains("token file", StringComparison.Ordinal));
            string token = (await File.ReadAllTextAsync(Path.Combine(dir, "token")).W()).Trim();
            Assert.DoesNotContain(logs.Messages, m => m.Contains(token, StringComparison.Ordinal));
        }
        finally
        {
            await app.StopAsync().W();
            await app.DisposeAsync().AsTask().W();
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task The_client_finds_the_token_in_PCIEEMU_TOKEN_and_an_explicit_one_wins()
    {
        await using var s = await TestServer.StartAsync("tcp");
        string token = (await File.ReadAllTextAsync(s.TokenFile).W()).Trim();
        string? saved = Environment.GetEnvironmentVariable(Endpoints.TokenVariable);
        try
        {
            Environment.SetEnvironmentVariable(Endpoints.TokenVariable, token);
            using (var c = PcieEmuClient.Connect(s.Target))
                Assert.NotEmpty(await c.ListFunctionsAsync().W());
            Environment.SetEnvironmentVariable(Endpoints.TokenVariable, new string('1', 64));
            using (var c = PcieEmuClient.Connect(s.Target))
                Assert.Equal(StatusCode.Unauthenticated, T.Rpc(() => c.ListFunctionsAsync()).StatusCode);
            using (var c = PcieEmuClient.Connect(s.Target, tokenFile: s.TokenFile))   // the explicit file beats the variable
                Assert.NotEmpty(await c.ListFunctionsAsync().W());
            using (var c = PcieEmuClient.Connect(s.Target, token: token))
                Assert.NotEmpty(await c.ListFunctionsAsync().W());
        }
        finally
        {
            Environment.SetEnvironmentVariable(Endpoints.TokenVariable, saved);
        }
        var missing = Assert.Throws<IOException>(() => PcieEmuClient.Connect(s.Target, tokenFile: Path.Combine(s.Directory, "nope")));
        Assert.Contains("nope", missing.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Tcp_auth_none_serves_TCP_without_a_token_and_warns()
    {
        await using var s = await TestServer.StartAsync("tcp", tcpAuth: TcpAuthMode.None);
        Assert.False(File.Exists(s.TokenFile));
        using var bare = BareChannel(s.Target);
        Assert.NotEmpty((await new PlatformService.PlatformServiceClient(bare).ListFunctionsAsync(new ListFunctionsRequest()).W()).Functions);
        Assert.Contains(s.Logs.Entries, e => e.Level == LogLevel.Warning && e.Message.Contains("--tcp-auth none", StringComparison.Ordinal));
    }

    [Fact]
    public async Task The_CLI_reads_the_token_file_or_the_variable_and_explains_a_refusal()
    {
        await using var s = await TestServer.StartAsync("tcp");
        string token = (await File.ReadAllTextAsync(s.TokenFile).W()).Trim();
        string empty = Path.Combine(s.Directory, "elsewhere");
        Directory.CreateDirectory(empty);
        var (rc, output) = await RunCliAsync(null, empty, "lspci", "--target", s.Target, "--token-file", s.TokenFile);
        Assert.True(rc == 0, output);
        Assert.Contains("01:00.0", output, StringComparison.Ordinal);
        (rc, output) = await RunCliAsync(token, empty, "setpci", "--target", s.Target, "-s", "01:00.0", "0.W");
        Assert.True(rc == 0, output);
        Assert.Contains("8086", output, StringComparison.Ordinal);
        (rc, output) = await RunCliAsync(null, empty, "lspci", "--target", s.Target);
        Assert.Equal(1, rc);
        Assert.Contains("UNAUTHENTICATED", output, StringComparison.Ordinal);
        Assert.Contains(Endpoints.TokenVariable, output, StringComparison.Ordinal);
        (rc, output) = await RunCliAsync(null, empty, "conformance", "--target", s.Target, "--filter", "sriov.enable-without-ari", "--token-file", s.TokenFile);
        Assert.True(rc == 0, output);
    }

    [AsRootFact]
    public async Task Another_local_user_can_neither_read_the_token_nor_call_over_TCP()
    {
        await using var s = await TestServer.StartAsync("tcp");
        // Let the other user into the directory: only the token file's own mode guards it now.
        File.SetUnixFileMode(s.Directory, (UnixFileMode)0b111_101_101);
        var (rc, output) = await RunAsNobodyAsync("/bin/cat", s.TokenFile);
        Assert.NotEqual(0, rc);
        Assert.Contains("Permission denied", output, StringComparison.Ordinal);

        (rc, output) = await RunAsNobodyAsync("dotnet", CliDll, "lspci", "--target", s.Target, "--token-file", s.TokenFile);
        Assert.Equal(2, rc);
        Assert.Contains("--token-file", output, StringComparison.Ordinal);
        (rc, output) = await RunAsNobodyAsync("dotnet", CliDll, "lspci", "--target", s.Target);
        Assert.Equal(1, rc);
        Assert.Contains("UNAUTHENTICATED", output, StringComparison.Ordinal);
        (rc, output) = await RunAsNobodyAsync("dotnet", CliDll, "setpci", "--target", s.Target, "-s", "01:00.0", "3c.b=77");
        Assert.Equal(1, rc);
        Assert.Contains("UNAUTHENTICATED", output, StringComparison.Ordinal);
        Assert.NotEqual((byte)0x77, await s.Client.ReadConfig8Async(0x0100, 0x3C).W());
    }

    private static string CliDll => Path.Combine(AppContext.BaseDirectory, "pcie-emu.dll");

    /// <summary>Every log message at every level (the startup line is Information).</summary>
    private sealed class AllLogs : ILoggerProvider, ILogger
    {
        public System.Collections.Concurrent.ConcurrentQueue<string> Messages { get; } = new();
        public ILogger CreateLogger(string categoryName) => this;
        public void Dispose() { }
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Messages.Enqueue(formatter(state, exception));
    }

    private static WebApplication Build(string dir, string[] listen, string tokenFile, TcpAuthMode auth = TcpAuthMode.Token, ILoggerProvider? logs = null) =>
        ServerHost.Build(new ServeSettings
        {
            Listen = listen,
            TokenFile = tokenFile,
            TcpAuth = auth,
            Overrides = new Dictionary<string, string?>
            {
                ["Machine:RamSize"] = (16 << 20).ToString(System.Globalization.CultureInfo.InvariantCulture),
                // Each server its own RAM file: a RAM file is locked by the server that holds it.
                ["Machine:RamFilePath"] = Path.Combine(dir, $"ram-{Guid.NewGuid():N}.bin"),
            },
            UseAppSettings = false,
            UseEnvironment = false,
        }, l => { if (logs != null) l.AddProvider(logs).SetMinimumLevel(LogLevel.Trace); });

    /// <summary>Runs <c>pcie-emu</c> as a child with a clean token environment: $PCIEEMU_TOKEN = <paramref name="token"/>, runtime directory elsewhere.</summary>
    private static Task<(int, string)> RunCliAsync(string? token, string runtimeDir, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(CliDll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment.Remove(Endpoints.TokenVariable);
        psi.Environment.Remove(Endpoints.TargetVariable);
        if (token != null) psi.Environment[Endpoints.TokenVariable] = token;
        psi.Environment["XDG_RUNTIME_DIR"] = runtimeDir;   // no default token file there
        return RunAsync(psi);
    }

    private static Task<(int, string)> RunAsNobodyAsync(string program, params string[] args)
    {
        var psi = new ProcessStartInfo("/usr/bin/setpriv") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", program }.Concat(args)) psi.ArgumentList.Add(a);
        psi.Environment.Remove(Endpoints.TokenVariable);
        psi.Environment.Remove("XDG_RUNTIME_DIR");
        psi.Environment["HOME"] = "/tmp";
        psi.Environment["DOTNET_CLI_HOME"] = "/tmp";
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        return RunAsync(psi);
    }

    private static async Task<(int, string)> RunAsync(ProcessStartInfo psi)
    {
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        try
        {
            await p.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        }
        catch (TimeoutException)
        {
            p.Kill(entireProcessTree: true);
            throw;
        }
        return (p.ExitCode, await stdout + await stderr);
    }
}

/// <summary>A fact that runs only as root with setpriv present (to become another user); skipped with the reason otherwise.</summary>
public sealed class AsRootFactAttribute : FactAttribute
{
    public AsRootFactAttribute()
    {
        if (Environment.UserName != "root") Skip = "needs root to run a client as user nobody (setpriv)";
        else if (!File.Exists("/usr/bin/setpriv")) Skip = "needs /usr/bin/setpriv (util-linux) to run a client as user nobody";
    }
}

[CollectionDefinition("environment", DisableParallelization = true)]
public sealed class EnvironmentCollection;
