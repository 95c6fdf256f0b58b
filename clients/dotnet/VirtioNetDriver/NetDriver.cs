using System.Buffers.Binary;
using PcieEmu.Client;
using static PcieEmu.Drivers.Virtio.VirtioPci;

namespace PcieEmu.Drivers.Virtio;

/// <summary>
/// A virtio-net driver over gRPC, in the order virtio 1.2 §3.1.1 gives (and Linux's virtio_pci_modern
/// and virtio_net follow): reset, ACKNOWLEDGE, DRIVER, features (VERSION_1, MAC, STATUS of what is
/// offered), FEATURES_OK read back, receiveq1 and transmitq1 set up in the mapped RAM, DRIVER_OK,
/// receive buffers posted. Frames go out with a zeroed 12-byte virtio_net_hdr; received frames
/// come back without it. Completion is seen by polling the used rings (no interrupts).
/// </summary>
public sealed class NetDriver
{
    public const int HeaderSize = 12;
    private readonly VirtioPci _pci;
    private int _txNext;

    private NetDriver(VirtioPci pci, SplitQueue rx, SplitQueue tx, ulong features, byte[] mac)
    {
        _pci = pci;
        Rx = rx;
        Tx = tx;
        Features = features;
        MacAddress = mac;
    }

    public SplitQueue Rx { get; }
    public SplitQueue Tx { get; }
    public ulong Features { get; }
    public byte[] MacAddress { get; }
    public string Bdf => _pci.Function.Bdf;

    /// <summary>The first virtio-net function (1AF4:1041), or the one at <paramref name="rid"/>.</summary>
    public static async Task<Protocol.V1.Function> FindAsync(PcieEmuClient client, uint? rid, CancellationToken ct)
    {
        GrpcCounter.Count();
        var all = await client.ListFunctionsAsync(ct);
        return rid is { } r
            ? all.FirstOrDefault(f => f.Rid == r) ?? throw new InvalidOperationException($"no function answers at {PciAddress.Format(r)}")
            : all.FirstOrDefault(f => f.VendorId == VendorId && f.DeviceId == NetDeviceId)
                ?? throw new InvalidOperationException("no virtio-net function (1af4:1041): start the server with a machine that has one, e.g. --machine docs/machines/virtio-net.json");
    }

    /// <summary>Brings the device at <paramref name="rid"/> (null: the first virtio-net) up with queues of
    /// <paramref name="queueSize"/> entries in RAM from <paramref name="ramBase"/>.</summary>
    public static async Task<NetDriver> ProbeAsync(PcieEmuClient client, RamMapping ram, uint? rid, ulong ramBase, int queueSize, TimeSpan timeout, CancellationToken ct)
    {
        var pci = await VirtioPci.OpenAsync(client, await FindAsync(client, rid, ct), ct);
        // Reset, and wait until device_status reads 0 (§4.1.4.3.2).
        await pci.WriteAsync(DeviceStatus, 1, 0, ct);
        var deadline = DateTime.UtcNow + timeout;
        while (await pci.StatusAsync(ct) != 0)
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"{pci.Function.Bdf}: reset did not complete");
            await Task.Delay(1, ct);
        }
        await pci.WriteAsync(DeviceStatus, 1, StatusAcknowledge, ct);
        await pci.WriteAsync(DeviceStatus, 1, StatusAcknowledge | StatusDriver, ct);
        ulong offered = 0;
        for (uint sel = 0; sel < 2; sel++)
        {
            await pci.WriteAsync(DeviceFeatureSelect, 4, sel, ct);
            offered |= await pci.ReadAsync(DeviceFeature, 4, ct) << (int)(32 * sel);
        }
        if ((offered & (1UL << FeatureVersion1)) == 0) throw new InvalidOperationException($"{pci.Function.Bdf}: VERSION_1 not offered (a legacy device)");
        ulong features = offered & ((1UL << FeatureVersion1) | (1UL << FeatureMac) | (1UL << FeatureStatus));
        for (uint sel = 0; sel < 2; sel++)
        {
            await pci.WriteAsync(DriverFeatureSelect, 4, sel, ct);
            await pci.WriteAsync(DriverFeature, 4, (uint)(features >> (int)(32 * sel)), ct);
        }
        await pci.WriteAsync(DeviceStatus, 1, StatusAcknowledge | StatusDriver | StatusFeaturesOk, ct);
        if ((await pci.StatusAsync(ct) & StatusFeaturesOk) == 0)
            throw new InvalidOperationException($"{pci.Function.Bdf}: the device refused features 0x{features:X}");

        var mac = new byte[6];
        for (int i = 0; i < 6; i++) mac[i] = (byte)await pci.ReadDeviceConfigAsync(i, 1, ct);
        var rx = await SetUpQueueAsync(pci, ram, 0, queueSize, ramBase, ct);
        var tx = await SetUpQueueAsync(pci, ram, 1, queueSize, rx.End, ct);
        await pci.WriteAsync(DeviceStatus, 1, StatusAcknowledge | StatusDriver | StatusFeaturesOk | StatusDriverOk, ct);
        byte status = await pci.StatusAsync(ct);
        if ((status & StatusDriverOk) == 0 || (status & StatusNeedsReset) != 0)
            throw new InvalidOperationException($"{pci.Function.Bdf}: device status 0x{status:X2} after DRIVER_OK");

        var driver = new NetDriver(pci, rx, tx, features, mac);
        for (int slot = 0; slot < rx.Size; slot++) rx.Add(slot, SplitQueue.BufferSize, deviceWritable: true);
        rx.Publish();
        await pci.NotifyAsync(rx.NotifyOff, rx.Index, ct);
        return driver;
    }

    // Linux's setup order: select, size (read the maximum first), addresses, vector, then enable (§4.1.5.1.3).
    private static async Task<SplitQueue> SetUpQueueAsync(VirtioPci pci, RamMapping ram, ushort index, int size, ulong area, CancellationToken ct)
    {
        await pci.WriteAsync(QueueSelect, 2, index, ct);
        int max = (int)await pci.ReadAsync(QueueSize, 2, ct);
        if (max == 0) throw new InvalidOperationException($"{pci.Function.Bdf}: queue {index} does not exist");
        var q = new SplitQueue(ram, index, Math.Min(size, max), area);
        await pci.WriteAsync(QueueSize, 2, (ulong)q.Size, ct);
        foreach (var (field, address) in new[] { (QueueDesc, q.Desc), (QueueDriver, q.Avail), (QueueDevice, q.Used) })
        {
            await pci.WriteAsync(field, 4, address & 0xFFFF_FFFF, ct);
            await pci.WriteAsync(field + 4, 4, address >> 32, ct);
        }
        await pci.WriteAsync(QueueMsixVector, 2, 0xFFFF, ct);   // NO_VECTOR: this driver polls
        q.NotifyOff = (uint)await pci.ReadAsync(QueueNotifyOff, 2, ct);
        await pci.WriteAsync(QueueEnable, 2, 1, ct);
        if (await pci.ReadAsync(QueueEnable, 2, ct) != 1) throw new InvalidOperationException($"{pci.Function.Bdf}: queue {index} was not enabled");
        return q;
    }

    /// <summary>Writes header + frame into the next transmit buffers without telling the device (see <see cref="KickTxAsync"/>).</summary>
    public void Queue(ReadOnlySpan<byte> frame)
    {
        if (frame.Length > SplitQueue.BufferSize - HeaderSize) throw new ArgumentException($"frame of {frame.Length} bytes does not fit a buffer", nameof(frame));
        if (Tx.InFlight >= Tx.Size) Tx.Reap();
        if (Tx.InFlight >= Tx.Size) throw new InvalidOperationException("transmit queue full: the device has not used the previous frames");
        int slot = _txNext;
        _txNext = (_txNext + 1) % Tx.Size;
        var buf = Tx.Buffer(slot);
        buf[..HeaderSize].Clear();
        frame.CopyTo(buf[HeaderSize..]);
        Tx.Add(slot, HeaderSize + frame.Length, deviceWritable: false);
    }

    /// <summary>Publishes what <see cref="Queue"/> added and rings transmitq1's doorbell (one MMIO write).</summary>
    public Task KickTxAsync(CancellationToken ct)
    {
        Tx.Publish();
        return _pci.NotifyAsync(Tx.NotifyOff, Tx.Index, ct);
    }

    /// <summary>Waits until the device has used every transmit chain.</summary>
    public async Task WaitTxDoneAsync(TimeSpan timeout, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            Tx.Reap();
            if (Tx.InFlight == 0) return;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"{Tx.InFlight} transmit chain(s) not used (device status 0x{await _pci.StatusAsync(ct):X2})");
            await Task.Delay(1, ct);
        }
    }

    /// <summary>The next received frame (without its virtio_net_hdr), or null; its buffer goes back to the device.</summary>
    public byte[]? TryReceive()
    {
        if (Rx.NextUsed() is not { } used) return null;
        var frame = Rx.Buffer(used.Id)[HeaderSize..used.Length].ToArray();
        Rx.Add(used.Id, SplitQueue.BufferSize, deviceWritable: true);
        Rx.Publish();
        return frame;
    }

    public Task NotifyRxAsync(CancellationToken ct) => _pci.NotifyAsync(Rx.NotifyOff, Rx.Index, ct);

    public static string Describe(byte[] f) =>
        $"len={f.Length} dst={Mac.Format(f.AsSpan(0, 6))} src={Mac.Format(f.AsSpan(6, 6))} type=0x{BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(12)):X4}";
}
