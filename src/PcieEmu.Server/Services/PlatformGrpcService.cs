using Grpc.Core;
using Microsoft.Extensions.Logging;
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
        var topology = machine.SnapshotTopology();
        foreach (var port in topology.Ports)
        {
            if (port.Kind == PortKind.RootPort)
            {
                r.RootPorts.Add(new Protocol.V1.RootPort
                {
                    Rid = port.Rid,
                    SecondaryBus = port.SecondaryBus,
                    SubordinateBus = port.SubordinateBus,
                    AriForwardingEnabled = port.AriForwardingEnabled,
                    AriForwardingSupported = port.AriForwardingSupported,
                });
                continue;
            }
            r.SwitchPorts.Add(new SwitchPort
            {
                Rid = port.Rid,
                Upstream = port.Kind == PortKind.SwitchUpstream,
                ParentRid = port.ParentRid ?? 0,
                SecondaryBus = port.SecondaryBus,
                SubordinateBus = port.SubordinateBus,
                AriForwardingSupported = port.AriForwardingSupported,
                AriForwardingEnabled = port.AriForwardingEnabled,
                Name = port.Name,
            });
        }
        foreach (var d in topology.Devices)
        {
            var device = new Device { Model = d.Model, Type = d.Type, Path = d.Path, RootPortRid = d.RootPortRid, PortRid = d.PortRid };
            foreach (var rid in d.FunctionRids) device.PhysicalFunctionRids.Add(rid);
            foreach (var total in d.TotalVfs) device.TotalVfs.Add((uint)total);
            foreach (var e in d.EthernetPorts)
                device.EthernetPorts.Add(new EthernetPort { Number = (uint)e.Number, Mac = e.Mac, FunctionRid = e.FunctionRid, Name = Capture.FrameLabels.PortName(e, d), Segment = e.Segment ?? "" });
            r.Devices.Add(device);
        }
        return Task.FromResult(r);
    }

    /// <inheritdoc/>
    public override Task<ListFunctionsResponse> ListFunctions(ListFunctionsRequest request, ServerCallContext context)
    {
        var r = new ListFunctionsResponse();
        foreach (var f in machine.SnapshotFunctions())
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
                PhysicalFunctionRid = f.PhysicalFunctionRid ?? 0,
                Description = f.Description,
            };
            foreach (var bar in f.Bars)
            {
                fn.Bars.Add(new Bar
                {
                    Index = (uint)bar.Index,
                    Address = bar.Address,
                    Size = bar.Size,
                    Is64Bit = bar.Is64Bit,
                    IsPrefetchable = bar.Prefetchable,
                    IsIo = bar.IsIo,
                    IsRom = bar.IsRom,
                });
            }
            r.Functions.Add(fn);
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
