// Example virtio-net driver (virtio 1.2, modern PCI transport, split virtqueues) on the C++ API:
// find the 1AF4:1041 function, enable it, find its common/notify/ISR/device structures through
// the vendor capabilities, reset, negotiate VERSION_1 and MAC, set up receiveq0 and transmitq0 in
// RAM, DRIVER_OK, send one frame (seen on CaptureFrames) and receive one injected with
// InjectFrame, polling the used rings. The same steps, in the same order and with the same names,
// as the Python, Go and TypeScript examples. Needs a machine with a virtio-net device:
//
//   pcie-emu serve --machine docs/machines/virtio-net.json
//   virtio_net
//
// Usage: virtio_net [target] [token-file]; on TCP the token comes from token-file, else
// $PCIEEMU_TOKEN, else the server's default token file.
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>

#include "pcieemu/pcieemu.hpp"

namespace {
namespace v1 = pcieemu::v1;
using namespace std::chrono_literals;

// Identity and register layout, from the virtio 1.2 specification (section numbers in comments).
constexpr uint16_t kVirtioVendor = 0x1AF4, kVirtioNetDevice = 0x1041;  // §4.1.2: 0x1040 + device ID 1
constexpr uint8_t kCapVendor = 0x09;
// virtio_pci_cap.cfg_type (§4.1.4)
constexpr uint8_t kCommonCfg = 1, kNotifyCfg = 2, kIsrCfg = 3, kDeviceCfg = 4;
// virtio_pci_common_cfg field offsets (§4.1.4.3)
constexpr uint64_t kDeviceFeatureSelect = 0x00, kDeviceFeature = 0x04, kDriverFeatureSelect = 0x08, kDriverFeature = 0x0C;
constexpr uint64_t kNumQueues = 0x12, kDeviceStatus = 0x14, kQueueSelect = 0x16, kQueueSize = 0x18;
constexpr uint64_t kQueueMsixVector = 0x1A, kQueueEnable = 0x1C, kQueueNotifyOff = 0x1E;
constexpr uint64_t kQueueDesc = 0x20, kQueueDriver = 0x28, kQueueDevice = 0x30;
// device status (§2.1)
constexpr uint64_t kAcknowledge = 1, kDriver = 2, kDriverOk = 4, kFeaturesOk = 8, kNeedsReset = 64, kFailed = 128;
// feature bits (§5.1.3, §6)
constexpr uint64_t kFMac = 1ull << 5, kFVersion1 = 1ull << 32;
constexpr uint64_t kNoVector = 0xFFFF;
constexpr uint16_t kDescFWrite = 2;  // §2.7.5
constexpr uint32_t kNetHdrLen = 12;  // virtio_net_hdr with VERSION_1 (§5.1.6)
constexpr int kReceiveq = 0, kTransmitq = 1;  // receiveq1, transmitq1 (§5.1.2)
constexpr uint16_t kQueueEntries = 8;
constexpr uint32_t kBufSize = 2048;
constexpr uint64_t kRamOffset = 0x200000;  // where the driver puts its rings and buffers, from the RAM base
const std::string kPeerMac("\x02\x00\x00\x00\x99\x99", 6);  // a station on the wire

// dst, src, EtherType 0x88B5 (local experimental), payload; padded to 60 bytes.
std::string EthernetFrame(const std::string& dst, const std::string& src, const std::string& payload) {
  std::string f = dst + src + "\x88\xb5" + payload;
  if (f.size() < 60) f.resize(60, '\0');
  return f;
}

std::string FormatMac(const std::string& m) {
  char b[18];
  std::snprintf(b, sizeof b, "%02x:%02x:%02x:%02x:%02x:%02x", (uint8_t)m[0], (uint8_t)m[1], (uint8_t)m[2],
                (uint8_t)m[3], (uint8_t)m[4], (uint8_t)m[5]);
  return b;
}

void Put16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }  // little-endian hosts only, as the RAM file
void Put32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
void Put64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }

struct Virtqueue {
  uint64_t desc = 0, avail = 0, used = 0, buf = 0, notify = 0;
  uint16_t last_used = 0, next_avail = 0;
};

// The driver's state: the function, its BAR4 structures, the two split virtqueues.
class VirtioNetDriver {
 public:
  pcieemu::Client& c;
  uint32_t rid = 0, port = 0;
  std::unique_ptr<pcieemu::Ram> ram;
  uint64_t common = 0, notify = 0, isr = 0, device = 0, features = 0;
  uint32_t notify_multiplier = 0;
  std::map<int, Virtqueue> queues;

  // Step 1: the first 1AF4:1041 function (ListFunctions) and its Ethernet port (GetPlatform).
  static VirtioNetDriver Find(pcieemu::Client& c) {
    for (const v1::Function& f : c.ListFunctions()) {
      if (f.vendor_id() != kVirtioVendor || f.device_id() != kVirtioNetDevice) continue;
      const v1::GetPlatformResponse platform = c.GetPlatform();
      for (const v1::Device& d : platform.devices())
        for (const v1::EthernetPort& p : d.ethernet_ports())
          if (p.function_rid() == f.rid()) return VirtioNetDriver(c, f.rid(), p.number());
      throw std::runtime_error("GetPlatform lists no Ethernet port for " + pcieemu::FormatBdf(f.rid()));
    }
    throw std::runtime_error("no virtio-net function (1af4:1041): start the server with a --machine description "
                             "that has a virtio-net device (docs/machines/virtio-net.json)");
  }

  // Step 2: memory decoding and bus mastering.
  void Enable() { c.WriteConfig16(rid, 0x04, c.ReadConfig16(rid, 0x04) | 0x6); }

  // The address programmed in BAR index (64-bit BARs combined).
  uint64_t BarAddress(int index) {
    uint32_t lo = c.ReadConfig32(rid, 0x10 + 4 * index);
    uint64_t addr = lo & ~0xFu;
    if ((lo & 0x6) == 0x4) addr |= uint64_t(c.ReadConfig32(rid, 0x10 + 4 * index + 4)) << 32;
    return addr;
  }

  // Step 3: the vendor capabilities (virtio_pci_cap, §4.1.4).
  void FindStructures() {
    std::map<uint8_t, uint64_t> found;
    for (const pcieemu::Capability& cap : c.Capabilities(rid)) {
      if (cap.id != kCapVendor) continue;
      uint8_t cfg_type = c.ReadConfig8(rid, cap.offset + 3);
      // the first of each type is the one to use (§4.1.4.1); PCI_CFG is not used here
      if (found.count(cfg_type) || cfg_type < kCommonCfg || cfg_type > kDeviceCfg) continue;
      uint8_t bar = c.ReadConfig8(rid, cap.offset + 4);
      found[cfg_type] = BarAddress(bar) + c.ReadConfig32(rid, cap.offset + 8);
      if (cfg_type == kNotifyCfg) notify_multiplier = c.ReadConfig32(rid, cap.offset + 16);
    }
    for (auto [t, name] : {std::pair{kCommonCfg, "common"}, {kNotifyCfg, "notify"}, {kIsrCfg, "isr"}, {kDeviceCfg, "device"}})
      if (!found.count(t)) throw std::runtime_error(std::string("virtio capability missing: ") + name);
    common = found[kCommonCfg], notify = found[kNotifyCfg], isr = found[kIsrCfg], device = found[kDeviceCfg];
  }

  // Common configuration accesses, each field at its own width.
  uint64_t CcRead(uint64_t off, int width) {
    pcieemu::MmioRead r = c.ReadMmio(common + off, width);
    if (r.status != v1::COMPLETION_STATUS_SUCCESSFUL) throw std::runtime_error("MMIO read of common config failed");
    return r.value;
  }
  void CcWrite(uint64_t off, int width, uint64_t value) {
    if (c.WriteMmio(common + off, width, value) != v1::COMPLETION_STATUS_SUCCESSFUL)
      throw std::runtime_error("MMIO write of common config failed");
  }
  uint64_t Status() { return CcRead(kDeviceStatus, 1); }

  // Step 4: reset, then ACKNOWLEDGE | DRIVER (§3.1.1).
  void Reset() {
    CcWrite(kDeviceStatus, 1, 0);
    if (Status() != 0) throw std::runtime_error("device_status did not read 0 after reset");
    CcWrite(kDeviceStatus, 1, kAcknowledge);
    CcWrite(kDeviceStatus, 1, kAcknowledge | kDriver);
  }

  // Step 5: features, FEATURES_OK and re-read it.
  uint64_t Negotiate(uint64_t wanted = kFVersion1 | kFMac) {
    uint64_t offered = 0;
    for (uint64_t sel = 0; sel < 2; sel++) {
      CcWrite(kDeviceFeatureSelect, 4, sel);
      offered |= CcRead(kDeviceFeature, 4) << (32 * sel);
    }
    if (!(offered & kFVersion1)) throw std::runtime_error("device does not offer VERSION_1");
    features = offered & wanted;
    for (uint64_t sel = 0; sel < 2; sel++) {
      CcWrite(kDriverFeatureSelect, 4, sel);
      CcWrite(kDriverFeature, 4, (features >> (32 * sel)) & 0xFFFFFFFF);
    }
    CcWrite(kDeviceStatus, 1, kAcknowledge | kDriver | kFeaturesOk);
    if (!(Status() & kFeaturesOk)) {
      CcWrite(kDeviceStatus, 1, kAcknowledge | kDriver | kFailed);
      throw std::runtime_error("device refused FEATURES_OK");
    }
    return features;
  }

  // The device config `mac` (§5.1.4), present with VIRTIO_NET_F_MAC.
  std::string Mac() {
    std::string m(6, '\0');
    for (int i = 0; i < 6; i++) m[i] = static_cast<char>(c.ReadMmio(device + i, 1).value);
    return m;
  }

  // Step 6: a split virtqueue (§2.7) in RAM.
  void SetupQueue(int index) {
    CcWrite(kQueueSelect, 2, index);
    if (CcRead(kQueueSize, 2) < kQueueEntries) throw std::runtime_error("queue_size below " + std::to_string(kQueueEntries));
    uint64_t base = ram->base() + kRamOffset + uint64_t(index) * 0x10000;
    Virtqueue q;
    q.desc = base, q.avail = base + 0x1000, q.used = base + 0x2000, q.buf = base + 0x4000;
    std::string zeros(0x4000 + kQueueEntries * kBufSize, '\0');  // rings and buffers zeroed
    ram->Write(base, zeros.data(), zeros.size());
    CcWrite(kQueueSize, 2, kQueueEntries);
    CcWrite(kQueueMsixVector, 2, kNoVector);  // polled: no interrupt
    for (auto [field, addr] : {std::pair{kQueueDesc, q.desc}, {kQueueDriver, q.avail}, {kQueueDevice, q.used}}) {
      CcWrite(field, 4, addr & 0xFFFFFFFF);  // 64-bit fields as two halves
      CcWrite(field + 4, 4, addr >> 32);
    }
    q.notify = notify + CcRead(kQueueNotifyOff, 2) * notify_multiplier;
    CcWrite(kQueueEnable, 2, 1);
    if (CcRead(kQueueEnable, 2) != 1) throw std::runtime_error("queue " + std::to_string(index) + ": queue_enable refused");
    queues[index] = q;
  }

  // Step 7: DRIVER_OK.
  void DriverOk() {
    CcWrite(kDeviceStatus, 1, kAcknowledge | kDriver | kFeaturesOk | kDriverOk);
    if ((Status() & (kNeedsReset | kDriverOk)) != kDriverOk) throw std::runtime_error("DRIVER_OK not taken");
  }

  // Puts one buffer (one descriptor) on the available ring and notifies the device.
  void Post(int index, const std::string& data, bool writable) {
    Virtqueue& q = queues.at(index);
    uint16_t slot = q.next_avail % kQueueEntries;
    uint64_t addr = q.buf + uint64_t(slot) * kBufSize;
    if (!writable) ram->Write(addr, data.data(), data.size());
    uint8_t desc[16] = {};
    Put64(desc, addr);
    Put32(desc + 8, writable ? kBufSize : static_cast<uint32_t>(data.size()));
    Put16(desc + 12, writable ? kDescFWrite : 0);
    ram->Write(q.desc + 16 * slot, desc, sizeof desc);
    uint8_t v[2];
    Put16(v, slot);
    ram->Write(q.avail + 4 + 2 * slot, v, 2);
    Put16(v, ++q.next_avail);
    ram->Write(q.avail + 2, v, 2);  // avail.idx after the entry
    if (c.WriteMmio(q.notify, 2, index) != v1::COMPLETION_STATUS_SUCCESSFUL) throw std::runtime_error("notify failed");
  }

  // Polls used.idx; returns the next used element's id and len.
  std::pair<uint32_t, uint32_t> WaitUsed(int index, std::chrono::milliseconds timeout = 5000ms) {
    Virtqueue& q = queues.at(index);
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      uint16_t idx;
      ram->Read(q.used + 2, &idx, 2);
      if (idx != q.last_used) break;
      if (std::chrono::steady_clock::now() > deadline)
        throw std::runtime_error("queue " + std::to_string(index) + ": nothing used (device_status " +
                                 std::to_string(Status()) + ")");
      std::this_thread::sleep_for(2ms);
    }
    uint32_t elem[2];
    ram->Read(q.used + 4 + 8 * (q.last_used % kQueueEntries), elem, 8);
    q.last_used++;
    return {elem[0], elem[1]};
  }

  // Step 8: one frame behind a zeroed virtio_net_hdr; returns the used length.
  uint32_t Send(const std::string& frame) {
    Post(kTransmitq, std::string(kNetHdrLen, '\0') + frame, false);
    return WaitUsed(kTransmitq).second;
  }

  // Step 9: one receive buffer, then the frame the device put in it.
  void PostReceiveBuffer() { Post(kReceiveq, "", true); }
  std::string Receive(std::chrono::milliseconds timeout = 5000ms) {
    auto [id, len] = WaitUsed(kReceiveq, timeout);
    if (len < kNetHdrLen || len > kBufSize) throw std::runtime_error("receive: used len " + std::to_string(len));
    std::string got(len - kNetHdrLen, '\0');
    ram->Read(queues.at(kReceiveq).buf + uint64_t(id) * kBufSize + kNetHdrLen, got.data(), got.size());
    return got;
  }

 private:
  VirtioNetDriver(pcieemu::Client& client, uint32_t r, uint32_t p) : c(client), rid(r), port(p), ram(client.OpenRam()) {}
};

int Run(pcieemu::Client& c) {
  c.ResetPlatform();
  VirtioNetDriver drv = VirtioNetDriver::Find(c);
  std::printf("virtio-net %s (1af4:1041) on Ethernet port %u\n", pcieemu::FormatBdf(drv.rid).c_str(), drv.port);
  drv.Enable();
  drv.FindStructures();
  std::printf("BAR4 structures: common 0x%" PRIx64 ", notify 0x%" PRIx64 " (multiplier %u), isr 0x%" PRIx64
              ", device 0x%" PRIx64 "\n", drv.common, drv.notify, drv.notify_multiplier, drv.isr, drv.device);
  drv.Reset();
  uint64_t features = drv.Negotiate();
  std::string mac = drv.Mac();
  std::printf("features 0x%" PRIx64 " accepted (FEATURES_OK); mac %s\n", features, FormatMac(mac).c_str());
  drv.SetupQueue(kReceiveq);
  drv.SetupQueue(kTransmitq);
  drv.DriverOk();
  std::printf("DRIVER_OK: device_status 0x%" PRIx64 ", %" PRIu64 " queues, RAM %s\n", drv.Status(),
              drv.CcRead(kNumQueues, 2), drv.ram->mapped() ? "mapped" : "through Read/WriteMemory");

  std::string frame = EthernetFrame(kPeerMac, mac, "hello from the virtio-net driver");
  auto capture = c.CaptureFrames(drv.port, 10000ms);
  capture->WaitOpened();
  uint32_t used_len = drv.Send(frame);
  v1::CapturedFrame seen;
  if (!capture->Next(&seen)) throw std::runtime_error("no frame on CaptureFrames within 10 s");
  capture->Cancel();
  std::printf("TX: used len %u, CaptureFrames saw %zu bytes on port %u, %s\n", used_len, seen.data().size(), seen.port(),
              seen.data() == frame ? "identical" : "DIFFERENT");

  drv.PostReceiveBuffer();
  std::string back = EthernetFrame(mac, kPeerMac, "hello from the wire");
  v1::InjectFrameResponse r = c.InjectFrame(drv.port, back);
  std::string got = drv.Receive();
  std::printf("RX: InjectFrame accepted=%s, received %zu bytes, %s\n", r.accepted() ? "true" : "false", got.size(),
              got == back ? "identical" : "DIFFERENT");
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  try {
    auto c = pcieemu::Client::Connect(argc > 1 ? argv[1] : "", std::chrono::seconds(10),
                                      {"", argc > 2 ? argv[2] : ""});
    return Run(*c);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
