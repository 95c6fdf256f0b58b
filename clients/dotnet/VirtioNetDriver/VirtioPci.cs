using PcieEmu.Client;
using PcieEmu.Protocol.V1;

namespace PcieEmu.Drivers.Virtio;

/// <summary>
/// The virtio PCI modern transport (virtio 1.2 §4.1) of one function, reached over gRPC: the
/// vendor capabilities found by walking the capability list, the common configuration
/// structure, device configuration and the notification doorbells. Every access is one unary
/// MMIO or config call.
/// </summary>
public sealed class VirtioPci
{
    // Common configuration layout (§4.1.4.3).
    public const int DeviceFeatureSelect = 0x00, DeviceFeature = 0x04, DriverFeatureSelect = 0x08, DriverFeature = 0x0C,
        ConfigMsixVector = 0x10, NumQueues = 0x12, DeviceStatus = 0x14, QueueSelect = 0x16, QueueSize = 0x18,
        QueueMsixVector = 0x1A, QueueEnable = 0x1C, QueueNotifyOff = 0x1E, QueueDesc = 0x20, QueueDriver = 0x28, QueueDevice = 0x30;
    public const byte StatusAcknowledge = 1, StatusDriver = 2, StatusDriverOk = 4, StatusFeaturesOk = 8, StatusNeedsReset = 0x40;
    public const int FeatureMac = 5, FeatureStatus = 16, FeatureVersion1 = 32;
    public const ushort VendorId = 0x1AF4, NetDeviceId = 0x1041;

    private readonly PcieEmuClient _client;
    private ulong _common, _notify, _device;
    private uint _notifyMultiplier;

    private VirtioPci(PcieEmuClient client, Function function)
    {
        _client = client;
        Function = function;
    }

    public Function Function { get; }
    public uint Rid => Function.Rid;

    /// <summary>Finds the capabilities of <paramref name="function"/> and the BAR addresses they point into.</summary>
    public static async Task<VirtioPci> OpenAsync(PcieEmuClient client, Function function, CancellationToken ct)
    {
        if (function.VendorId != VendorId || function.DeviceId < 0x1040)
            throw new InvalidOperationException($"{function.Bdf} is {function.VendorId:x4}:{function.DeviceId:x4}, not a modern virtio device");
        var t = new VirtioPci(client, function);
        await Functions.SetCommandBitsAsync(client, function.Rid, 0x0006, ct);   // Memory Space, Bus Master
        int p = await client.ReadConfig8Async(function.Rid, 0x34, ct);
        for (int guard = 0; p != 0 && guard < 48; guard++)
        {
            if (await client.ReadConfig8Async(function.Rid, p, ct) == 0x09)   // vendor-specific: virtio_pci_cap
            {
                byte type = await client.ReadConfig8Async(function.Rid, p + 3, ct);
                // The first structure of each type is the one to use (§4.1.4); PCI_CFG (5) points at no BAR of its own.
                if (type is 1 or 2 or 4)
                {
                    uint bar = await client.ReadConfig8Async(function.Rid, p + 4, ct);
                    uint offset = await client.ReadConfig32Async(function.Rid, p + 8, ct);
                    ulong at = Functions.BarAddress(function, bar) + offset;
                    switch (type)
                    {
                        case 1 when t._common == 0: t._common = at; break;
                        case 2 when t._notify == 0:
                            t._notify = at;
                            t._notifyMultiplier = await client.ReadConfig32Async(function.Rid, p + 16, ct);
                            break;
                        case 4 when t._device == 0: t._device = at; break;
                        default: break;
                    }
                }
            }
            p = await client.ReadConfig8Async(function.Rid, p + 1, ct);
        }
        if (t._common == 0 || t._notify == 0 || t._device == 0)
            throw new InvalidOperationException($"{function.Bdf}: COMMON, NOTIFY or DEVICE capability missing");
        return t;
    }

    public async Task<ulong> ReadAsync(int offset, int width, CancellationToken ct) => await ReadAtAsync(_common + (ulong)offset, width, ct);
    public Task WriteAsync(int offset, int width, ulong value, CancellationToken ct) => WriteAtAsync(_common + (ulong)offset, width, value, ct);
    public Task<ulong> ReadDeviceConfigAsync(int offset, int width, CancellationToken ct) => ReadAtAsync(_device + (ulong)offset, width, ct);
    public async Task<byte> StatusAsync(CancellationToken ct) => (byte)await ReadAsync(DeviceStatus, 1, ct);

    /// <summary>The doorbell of a queue whose queue_notify_off is <paramref name="notifyOff"/>.</summary>
    public ulong DoorbellAddress(uint notifyOff) => _notify + notifyOff * _notifyMultiplier;

    public Task NotifyAsync(uint notifyOff, ushort queue, CancellationToken ct) => WriteAtAsync(DoorbellAddress(notifyOff), 2, queue, ct);

    private async Task<ulong> ReadAtAsync(ulong address, int width, CancellationToken ct)
    {
        GrpcCounter.Count();
        var r = await _client.ReadMmioAsync(address, width, ct);
        if (r.Status != CompletionStatus.Successful) throw new InvalidOperationException($"{Function.Bdf}: read at 0x{address:X} completed with {r.Status}");
        return r.Value;
    }

    private async Task WriteAtAsync(ulong address, int width, ulong value, CancellationToken ct)
    {
        GrpcCounter.Count();
        var s = await _client.WriteMmioAsync(address, width, value, ct);
        if (s != CompletionStatus.Successful) throw new InvalidOperationException($"{Function.Bdf}: write at 0x{address:X} completed with {s}");
    }
}
