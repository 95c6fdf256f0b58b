using Grpc.Core;
using Microsoft.Extensions.Logging;
using PcieEmu.Core.Config.Capabilities;
using PcieEmu.Core.Platform;
using PcieEmu.Core.Topology;
using PcieEmu.Protocol.V1;
using PcieEmu.Server.Hosting;

namespace PcieEmu.Server.Services;

/// <summary>PlatformService: machine description, function list, cold reset.</summary>
internal sealed class PlatformGrpcService(Machine machine, LimitsOptions limits, ILogger<PlatformGrpcService> logger)
    : PlatformService.PlatformServiceBase
{
    /// <summary>Server version reported by GetPlatform.</summary>
    public static string ServerVersion { get; } = typeof(PlatformGrpcService).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";

    /// <inheritdoc/>
    public override Task<GetPlatformResponse> GetPlatform(GetPlatformRequest request, ServerCallContext context)
    {
        var r = new GetPlatformResponse
        {
            ServerVersion = ServerVersion,
            ProtocolVersion = "pcieemu.v1",
            IommuBase = machine.Options.IommuBase,
            IommuSize = Machine.IommuRegisterSize,
            MsiWindowBase = Machine.MsiWindowBase,
            MsiWindowSize = Machine.MsiWindowSize,
            Limits = new ServerLimits
            {
                MaxMemoryTransfer = (uint)limits.MaxMemoryTransfer,
                MaxTransactionsPerMessage = (uint)limits.MaxTransactionsPerMessage,
                InterruptQueueCapacity = (uint)limits.InterruptQueueCapacity,
                MaxInterruptSubscribers = (uint)limits.MaxInterruptSubscribers,
                CaptureQueueCapacity = (uint)limits.CaptureQueueCapacity,
                MaxCaptureSubscribers = (uint)limits.MaxCaptureSubscribers,
            },
        };
        r.RamRegions.Add(new RamRegion { Base = machine.Ram.Base, Size = machine.Ram.Size, SharedFilePath = machine.Ram.Path });
        lock (machine.SyncRoot)
        {
            var port = machine.RootPort;
            r.RootPorts.Add(new Protocol.V1.RootPort
            {
                Rid = port.Rid,
                SecondaryBus = port.SecondaryBus,
                SubordinateBus = port.SubordinateBus,
                AriForwardingEnabled = port.AriForwardingEnabled,
                AriForwardingSupported = (port.Pcie.Values.DevCap2 & PcieCapability.AriForwarding) != 0,
            });
            var device = new Device { Model = "Intel 82576", RootPortRid = port.Rid };
            foreach (var pf in machine.PhysicalFunctions)
            {
                device.PhysicalFunctionRids.Add(pf.Rid);
                device.TotalVfs.Add(pf.Sriov?.Parameters.TotalVfs ?? 0u);
            }
            r.Devices.Add(device);
        }
        return Task.FromResult(r);
    }

    /// <inheritdoc/>
    public override Task<ListFunctionsResponse> ListFunctions(ListFunctionsRequest request, ServerCallContext context)
    {
        var r = new ListFunctionsResponse();
        var functions = machine.EnumerateFunctions();
        lock (machine.SyncRoot)
        {
            foreach (var f in functions)
            {
                var fn = new Function
                {
                    Rid = f.Rid,
                    VendorId = f.VendorId,
                    DeviceId = f.DeviceId,
                    ClassCode = f.ClassCode,
                    IsVirtual = f.IsVirtual,
                    Name = f.Name,
                    Bdf = Bdf.Format(f.Rid),
                };
                var bars = f.Bars;
                if (f is VirtualFunction vf)
                {
                    fn.PhysicalFunctionRid = vf.PhysicalFunction.Rid;
                    bars = vf.VfBars;
                }
                foreach (var bar in bars)
                {
                    var (address, size) = f.BarWindow(bar);
                    fn.Bars.Add(new Bar
                    {
                        Index = (uint)bar.Index,
                        Address = address,
                        Size = size,
                        Is64Bit = bar.Is64Bit,
                        IsPrefetchable = bar.Prefetchable,
                        IsIo = bar.IsIo,
                        IsRom = bar.Kind == Core.Config.BarKind.Rom,
                    });
                }
                r.Functions.Add(fn);
            }
        }
        return Task.FromResult(r);
    }

    /// <inheritdoc/>
    public override Task<ResetPlatformResponse> ResetPlatform(ResetPlatformRequest request, ServerCallContext context)
    {
        machine.Reset();
        Log.PlatformReset(logger);
        return Task.FromResult(new ResetPlatformResponse { Functions = (uint)machine.EnumerateFunctions().Count });
    }
}
