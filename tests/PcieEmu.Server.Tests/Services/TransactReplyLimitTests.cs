extern alias client;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using PcieEmu.Protocol.V1;
using MemoryService = client::PcieEmu.Protocol.V1.MemoryService;
using SessionService = client::PcieEmu.Protocol.V1.SessionService;
using PcieEmu.Server.Hosting;

namespace PcieEmu.Server.Tests.Services;

/// <summary>Issue 9, defects 1 and 8: one Transact message cannot ask for an unbounded reply; the documented maximum fits a default client.</summary>
/// Alone (no other test runs meanwhile): one test measures the process's allocations while the server refuses.
[Collection("allocations")]
public sealed class TransactReplyLimitTests
{
    private static GrpcChannel DefaultChannel(TestServer s) =>
        // A default-configured client: 4 MiB receive limit, nothing raised; only the server's token added.
        GrpcChannel.ForAddress("http://" + s.Target["tcp://".Length..], new GrpcChannelOptions
        {
            Credentials = ChannelCredentials.Create(ChannelCredentials.Insecure, CallCredentials.FromInterceptor((_, metadata) =>
            {
                metadata.Add("authorization", "Bearer " + File.ReadAllText(s.TokenFile).Trim());
                return Task.CompletedTask;
            })),
            UnsafeUseInsecureChannelCallCredentials = true,
        });

    [Fact]
    public async Task Reads_totalling_more_than_one_reply_may_carry_are_refused_up_front_naming_the_tag()
    {
        await using var s = await TestServer.StartAsync("tcp", new Dictionary<string, string?> { ["Machine:RamSize"] = (32 << 20).ToString(System.Globalization.CultureInfo.InvariantCulture) });
        var limit = (await s.Client.GetPlatformAsync().W()).Limits.MaxMemoryTransfer;
        using var call = s.Client.Session.Transact(deadline: T.Deadline);
        // Three maximal reads in one message: the reply would be three times what a message may carry.
        var request = new TransactRequest { Tag = 1, MemoryWrite = new MemoryWriteOp { Address = 0, Data = ByteString.CopyFrom(0xAB), Ack = true } };
        for (int i = 0; i < 3; i++) request.Batch.Add(new Transaction { Tag = 10UL + (ulong)i, MemoryRead = new MemoryReadOp { Address = 0, Length = limit } });
        long before = GC.GetTotalAllocatedBytes(precise: false);
        await call.RequestStream.WriteAsync(request).W();
        var ex = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(CancellationToken.None)).W();
        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        Assert.StartsWith("tag 11: batch[1].memory_read.length: the memory reads of one message may total at most", ex.Status.Detail);
        // Nothing in the message executed (the write before the reads included), and no reply buffer was built.
        Assert.Equal(0, (await s.Client.Memory.ReadMemoryAsync(new ReadMemoryRequest { Address = 0, Length = 1 }, deadline: T.Deadline).W()).Data[0]);
        Assert.True(GC.GetTotalAllocatedBytes(precise: false) - before < 2L * limit, "the server allocated the replies it refused");
        s.AssertNoErrors();
    }

    [Fact]
    public async Task Many_small_completions_over_the_message_limit_are_refused_when_the_limits_allow_that_many()
    {
        await using var s = await TestServer.StartAsync("tcp", new Dictionary<string, string?> { ["Limits:MaxTransactionsPerMessage"] = "65536" });
        var request = new TransactRequest { Tag = 1, ConfigRead = new ConfigReadOp { Rid = 0x100, Width = 4 } };
        for (int i = 0; i < 1023; i++) request.Batch.Add(new Transaction { Tag = 2, MemoryRead = new MemoryReadOp { Address = 0, Length = 4000 } });
        for (int i = 0; i < 60000; i++) request.Batch.Add(new Transaction { Tag = 3, ConfigRead = new ConfigReadOp { Rid = 0x100, Width = 4 } });
        var (status, replies) = await RawCalls.TransactAsync(s.Client.Channel, [request.ToByteArray()]);
        Assert.Equal(StatusCode.InvalidArgument, status.StatusCode);
        Assert.Contains("over the 4194304-byte message limit", status.Detail);
        Assert.Equal(0, replies);
        s.AssertNoErrors();
    }

    [Fact]
    public async Task A_default_client_receives_a_maximal_ReadMemory_and_a_maximal_Transact_reply()
    {
        await using var s = await TestServer.StartAsync("tcp");
        var limits = (await s.Client.GetPlatformAsync().W()).Limits;
        Assert.Equal((uint)LimitsOptions.MemoryTransferCeiling, limits.MaxMemoryTransfer);
        Assert.Equal(4_128_768u, limits.MaxMemoryTransfer);   // the maximum docs/protocol.md states
        using var channel = DefaultChannel(s);
        var memory = new MemoryService.MemoryServiceClient(channel);
        var read = await memory.ReadMemoryAsync(new ReadMemoryRequest { Address = 0, Length = limits.MaxMemoryTransfer }, deadline: T.Deadline).W();
        Assert.Equal((int)limits.MaxMemoryTransfer, read.Data.Length);
        var write = await memory.WriteMemoryAsync(new WriteMemoryRequest { Address = 0, Data = ByteString.CopyFrom(new byte[limits.MaxMemoryTransfer]) }, deadline: T.Deadline).W();
        Assert.Equal(limits.MaxMemoryTransfer, write.Length);

        // The largest Transact reply: a maximal read and as many other completions as a message may hold.
        var request = new TransactRequest { Tag = ulong.MaxValue, MemoryRead = new MemoryReadOp { Address = 0, Length = limits.MaxMemoryTransfer } };
        for (uint i = 1; i < limits.MaxTransactionsPerMessage; i++)
            request.Batch.Add(new Transaction { Tag = ulong.MaxValue - i, MmioRead = new MmioReadOp { Address = 0x8000_0000, Width = 8 } });
        using var call = new SessionService.SessionServiceClient(channel).Transact(deadline: T.Deadline);
        await call.RequestStream.WriteAsync(request).W();
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None).W());
        Assert.Equal((int)limits.MaxMemoryTransfer, call.ResponseStream.Current.Data.Length);
        Assert.Equal((int)limits.MaxTransactionsPerMessage - 1, call.ResponseStream.Current.More.Count);
        await call.RequestStream.CompleteAsync().W();
        Assert.False(await call.ResponseStream.MoveNext(CancellationToken.None).W());
        s.AssertNoErrors();
    }
}

[CollectionDefinition("allocations", DisableParallelization = true)]
public sealed class AllocationsCollection;
