// PcieEmu C++ client: a thin layer over the gRPC stubs generated from proto/pcieemu/v1.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "pcieemu/v1/config.grpc.pb.h"
#include "pcieemu/v1/ethernet.grpc.pb.h"
#include "pcieemu/v1/interrupt.grpc.pb.h"
#include "pcieemu/v1/iommu.grpc.pb.h"
#include "pcieemu/v1/memory.grpc.pb.h"
#include "pcieemu/v1/mmio.grpc.pb.h"
#include "pcieemu/v1/platform.grpc.pb.h"
#include "pcieemu/v1/session.grpc.pb.h"
#include "pcieemu/v1/trace.grpc.pb.h"

namespace pcieemu {

using Status = v1::CompletionStatus;

// Default server endpoint (TCP).
inline constexpr const char* kDefaultTarget = "tcp://127.0.0.1:50551";

// Environment variable a client reads the TCP token from.
inline constexpr const char* kTokenVariable = "PCIEEMU_TOKEN";

// The server's private runtime directory: $XDG_RUNTIME_DIR/pcie-emu when XDG_RUNTIME_DIR is an
// existing directory, else $TMPDIR (or /tmp)/pcie-emu-USER. It holds the default socket and token file.
std::string DefaultRuntimeDir();
// The server's default Unix socket: pcie-emu.sock in DefaultRuntimeDir().
std::string DefaultUnixSocketPath();
// Where the server writes its TCP token by default: token in DefaultRuntimeDir().
std::string DefaultTokenPath();
// The TCP token a client sends, first found of: `token`; the file `token_file` (throws
// std::runtime_error when it cannot be read); $PCIEEMU_TOKEN; the default token file when
// readable. Empty when there is none (the server then answers UNAUTHENTICATED on TCP).
std::string ResolveToken(const std::string& token = "", const std::string& token_file = "");

// How a client authenticates on TCP (a Unix socket needs nothing): the server's token, given or
// read from a file; both empty: $PCIEEMU_TOKEN, else the default token file.
struct ConnectOptions {
  std::string token;
  std::string token_file;
};
// $PCIEEMU_TARGET, else the default Unix socket when it exists, else kDefaultTarget.
std::string DefaultTarget();

// A gRPC error (the request was malformed, out of range, ...): code() is the gRPC status code.
class RpcError : public std::runtime_error {
 public:
  RpcError(const std::string& what, const grpc::Status& status)
      : std::runtime_error(what + ": " + status.error_message()), status_(status) {}
  grpc::StatusCode code() const { return status_.error_code(); }
  std::string message() const { return status_.error_message(); }

 private:
  grpc::Status status_;
};

// Thrown by Client::AssertNoViolations: the driver-conduct checker (docs/checker.md) recorded
// violations. what() lists each one's requester, rule id, spec, event, outcome and hint.
class ViolationsError : public std::runtime_error {
 public:
  ViolationsError(std::vector<v1::Violation> violations, uint64_t dropped);
  const std::vector<v1::Violation>& violations() const { return violations_; }
  uint64_t dropped() const { return dropped_; }  // violations the server did not keep (over its limit)

 private:
  std::vector<v1::Violation> violations_;
  uint64_t dropped_;
};
// One line per violation after a count (the text of ViolationsError).
std::string DescribeViolations(const std::vector<v1::Violation>& violations, uint64_t dropped = 0);

// PCI / PCIe register layout used by the helpers (PCIe Base 4.0 §7.5, SR-IOV §9.3.3). Hardware
// facts; wire constants come from the generated code.
namespace regs {
inline constexpr int kStatus = 0x06, kStatusCapList = 1 << 4, kClassRevision = 0x08, kCapPtr = 0x34,
                     kExtCapStart = 0x100;
inline constexpr uint8_t kCapIdPm = 0x01, kCapIdMsi = 0x05, kCapIdPcie = 0x10, kCapIdMsix = 0x11;
inline constexpr uint16_t kExtCapIdAer = 0x1, kExtCapIdDsn = 0x3, kExtCapIdAri = 0xe, kExtCapIdSriov = 0x10;
inline constexpr int kPcieDevCap2 = 0x24, kPcieDevCtl2 = 0x28;
inline constexpr uint16_t kAriForwarding = 1 << 5;
inline constexpr int kSriovCtrl = 0x08, kSriovTotalVfs = 0x0e, kSriovNumVfs = 0x10, kSriovVfOffset = 0x14,
                     kSriovVfStride = 0x16, kSriovVfDeviceId = 0x1a;
inline constexpr uint16_t kSriovCtrlVfe = 1 << 0, kSriovCtrlMse = 1 << 3, kSriovCtrlAri = 1 << 4;
}  // namespace regs

// Routing IDs: bus << 8 | device << 3 | function (ARI: bus << 8 | function).
uint32_t Rid(int bus, int device, int function);  // throws std::invalid_argument
std::string FormatBdf(uint32_t rid);              // "bb:dd.f"
uint32_t ParseBdf(const std::string& text);       // throws std::invalid_argument naming the problem

struct ConfigRead {
  Status status;
  uint32_t value;  // all ones for the width on UNSUPPORTED_REQUEST
};
struct MmioRead {
  Status status;
  uint64_t value;
};
struct Capability {
  uint8_t id;
  int offset;
};
struct ExtendedCapability {
  uint16_t id;
  uint8_t version;
  int offset;
};
struct SriovOptions {
  // ARI Forwarding Enable + ARI Capable Hierarchy: unset (default) = automatic, set when the
  // hierarchy supports ARI (as Linux does); true = required (error if unsupported); false = cleared.
  std::optional<bool> ari;
  std::chrono::milliseconds settle{100};
};

// Optional settings of Client::TranslateAddress.
struct TranslateOptions {
  bool write = false;    // translate for a write (checks write permission); false: a read
  bool dry_run = false;  // do not fill the context cache / IOTLB or record a fault
};

class Client;

// Host RAM by physical address: the shared RAM file mapped into this process, or RPC.
class Ram {
 public:
  ~Ram();
  bool mapped() const { return data_ != nullptr; }
  uint64_t base() const { return base_; }
  uint64_t size() const { return size_; }
  uint8_t* data() { return data_; }  // index = address - base(); nullptr when not mapped
  void Read(uint64_t address, void* dst, size_t length);
  void Write(uint64_t address, const void* src, size_t length);

 private:
  friend class Client;
  Ram(Client* c, uint64_t base, uint64_t size) : client_(c), base_(base), size_(size) {}
  uint64_t Check(uint64_t address, size_t length) const;
  Client* client_;
  uint64_t base_, size_;
  uint8_t* data_ = nullptr;
};

// A server-streaming subscription (interrupt events, frames captured on the wire, trace events): Next() blocks
// for the next item (false when the stream ended).
template <typename Event>
class StreamSubscription {
 public:
  ~StreamSubscription();
  // Waits until the server accepted the subscription; throws RpcError if it refused it.
  void WaitOpened();
  bool Next(Event* event);
  void Cancel();
  // Status of the ended stream (OK after Cancel or a clean end).
  grpc::Status Finish();

 private:
  friend class Client;
  explicit StreamSubscription(const char* rpc) : rpc_(rpc) {}
  const char* rpc_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<Event>> reader_;
  bool finished_ = false;
  std::atomic<bool> cancelled_{false};  // Cancel() may come from another thread than Next()
  grpc::Status status_;
};
using InterruptSubscription = StreamSubscription<v1::InterruptEvent>;
using FrameCapture = StreamSubscription<v1::CapturedFrame>;
using TraceSubscription = StreamSubscription<v1::TraceEvent>;

struct Completion {
  uint64_t tag = 0;
  Status status = v1::COMPLETION_STATUS_UNSPECIFIED;
  uint64_t value = 0;
  std::string data;
  v1::TransactionKind kind = v1::TRANSACTION_KIND_UNSPECIFIED;
};

// The ordered transaction stream. Transactions execute in the order they are issued; writes are
// posted (reported only on failure: PostedErrors()) unless acked; reads return a future and see
// every earlier write. Transactions are queued and sent in one message (up to max_per_message)
// on Flush(), when the queue is full, or by Get() on a read's future via Wait helpers.
inline constexpr size_t kDefaultBatch = 256;

class Session {
 public:
  ~Session();
  std::future<Completion> ConfigRead(uint32_t rid, int offset, int width);
  void ConfigWrite(uint32_t rid, int offset, int width, uint32_t value);
  std::future<Completion> ConfigWriteAck(uint32_t rid, int offset, int width, uint32_t value);
  std::future<Completion> MmioRead(uint64_t address, int width);
  void MmioWrite(uint64_t address, int width, uint64_t value);
  std::future<Completion> MemoryRead(uint64_t address, uint32_t length);
  void MemoryWrite(uint64_t address, const std::string& data);
  // Sends queued transactions now.
  void Flush();
  // Flushes and waits for a future (sugar for the common issue-then-wait case).
  Completion Wait(std::future<Completion>& f);
  std::vector<Completion> PostedErrors();
  // Flushes, half-closes and waits for the server; throws RpcError if the stream failed.
  void Close();
  void Cancel();
  size_t max_per_message = kDefaultBatch;  // transactions per message (the same default in every client)

 private:
  friend class Client;
  Session() = default;
  void Start();
  void ReceiveLoop();
  std::future<Completion> Issue(v1::Transaction t, bool wants);
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::TransactRequest, v1::TransactResponse>> stream_;
  std::thread receiver_;
  std::mutex mu_, send_mu_;
  std::vector<v1::Transaction> queue_;
  uint64_t next_tag_ = 1;
  std::unordered_map<uint64_t, std::promise<Completion>> pending_;
  std::vector<Completion> posted_;
  bool ended_ = false, closed_ = false;
  grpc::Status status_;
};

// A completion from a shared-memory ring (docs/protocol.md, "Shared-memory ring").
struct RingCompletion {
  uint64_t tag = 0;
  uint8_t kind = 0;     // the entry's op: 1 config_read ... 6 memory_write (TransactionKind numbers)
  uint16_t status = 0;  // 1-4: CompletionStatus; kRingInvalidArgument / kRingOutOfRange: rejected
  uint8_t field = 0;    // for a rejected entry, the field at fault (1 op ... 10 reserved)
  uint64_t value = 0;   // config and MMIO reads (all ones on UR)
  uint32_t length = 0;  // bytes a memory read returned
};
inline constexpr uint16_t kRingInvalidArgument = 0x100, kRingOutOfRange = 0x101;

// A shared-memory ring (SessionService.OpenRing; same host only): single accesses without a
// socket round trip. Same ordering as Session: entries execute in order, writes are posted
// (failures: PostedErrors()), a read sees every earlier write. Not thread-safe: one thread drives
// it. Reads block (spin `client_spin`, then sleep on the shared futex) until their completion.
// Throws RpcError when the server closed the ring (stopped, or the ring was broken).
class Ring {
 public:
  ~Ring();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;
  RingCompletion ConfigRead(uint32_t rid, int offset, int width);
  void ConfigWrite(uint32_t rid, int offset, int width, uint32_t value);
  RingCompletion ConfigWriteAck(uint32_t rid, int offset, int width, uint32_t value);
  RingCompletion MmioRead(uint64_t address, int width);
  void MmioWrite(uint64_t address, int width, uint64_t value);
  RingCompletion MmioWriteAck(uint64_t address, int width, uint64_t value);
  // Reads `length` bytes of RAM into dst (at most the data area's size).
  RingCompletion MemoryRead(uint64_t address, void* dst, uint32_t length);
  void MemoryWrite(uint64_t address, const void* src, uint32_t length);
  // Completions nobody waited for (posted writes that failed), oldest first; clears them.
  std::vector<RingCompletion> PostedErrors();
  bool closed() const;
  // Cancels the OpenRing call (the server closes the ring and deletes its file) and unmaps it.
  void Close();
  const v1::OpenRingResponse& layout() const { return layout_; }
  std::chrono::microseconds client_spin{20};

 private:
  friend class Client;
  Ring() = default;
  uint64_t Submit(uint8_t op, uint8_t flags, uint16_t rid, uint16_t offset, uint8_t width, uint64_t address,
                  uint64_t value, uint32_t data_offset, uint32_t length);
  RingCompletion Wait(uint64_t tag);
  uint32_t Reserve(uint32_t length);
  uint32_t* Word(size_t offset) const { return reinterpret_cast<uint32_t*>(base_ + offset); }
  [[noreturn]] void ThrowClosed();
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<v1::OpenRingResponse>> reader_;
  v1::OpenRingResponse layout_;
  uint8_t* base_ = nullptr;
  size_t size_ = 0;
  uint32_t sq_tail_ = 0, cq_head_ = 0, data_used_ = 0, data_mark_ = 0;
  uint64_t next_tag_ = 1;
  std::vector<RingCompletion> posted_;
  bool finished_ = false;
  grpc::Status status_;
};

class Client {
 public:
  // "tcp://host:port", "host:port" or "unix:///path"; empty: DefaultTarget().
  // Waits up to `timeout` for the connection; throws std::runtime_error when it fails. On TCP
  // every call carries "authorization: Bearer <token>" with the token found by
  // ResolveToken(options.token, options.token_file).
  static std::unique_ptr<Client> Connect(const std::string& target = "",
                                         std::chrono::milliseconds timeout = std::chrono::seconds(10),
                                         const ConnectOptions& options = {});
  // Whether calls carry a token (TCP with a token found).
  bool has_token() const { return has_token_; }

  v1::GetPlatformResponse GetPlatform();
  std::vector<v1::Function> ListFunctions();
  uint32_t ResetPlatform();  // returns how many functions answer after the reset

  ConfigRead ReadConfig(uint32_t rid, int offset, int width);
  Status WriteConfig(uint32_t rid, int offset, int width, uint32_t value);
  uint8_t ReadConfig8(uint32_t rid, int offset) { return static_cast<uint8_t>(ReadConfig(rid, offset, 1).value); }
  uint16_t ReadConfig16(uint32_t rid, int offset) { return static_cast<uint16_t>(ReadConfig(rid, offset, 2).value); }
  uint32_t ReadConfig32(uint32_t rid, int offset) { return ReadConfig(rid, offset, 4).value; }
  Status WriteConfig8(uint32_t rid, int offset, uint8_t v) { return WriteConfig(rid, offset, 1, v); }
  Status WriteConfig16(uint32_t rid, int offset, uint16_t v) { return WriteConfig(rid, offset, 2, v); }
  Status WriteConfig32(uint32_t rid, int offset, uint32_t v) { return WriteConfig(rid, offset, 4, v); }

  MmioRead ReadMmio(uint64_t address, int width);
  Status WriteMmio(uint64_t address, int width, uint64_t value);
  std::string ReadMemory(uint64_t address, uint32_t length);
  void WriteMemory(uint64_t address, const std::string& data);

  std::vector<Capability> Capabilities(uint32_t rid);
  std::vector<ExtendedCapability> ExtendedCapabilities(uint32_t rid);
  int FindCapability(uint32_t rid, uint8_t id);           // 0 if absent
  int FindExtendedCapability(uint32_t rid, uint16_t id);  // 0 if absent

  // Linux-style SR-IOV enable: returns the VFs' routing IDs. Throws std::runtime_error /
  // std::invalid_argument on a refused request (no SR-IOV, numVfs out of range, VF Enable set).
  std::vector<uint32_t> EnableSriov(uint32_t pf, int num_vfs, const SriovOptions& opt = {});
  void DisableSriov(uint32_t pf, std::chrono::milliseconds settle = std::chrono::milliseconds(100));

  // Maps the RAM file (GetPlatform ram_regions[0].shared_file_path) or falls back to RPC.
  std::unique_ptr<Ram> OpenRam(bool prefer_rpc = false);
  std::unique_ptr<InterruptSubscription> SubscribeInterrupts(const std::vector<uint32_t>& rids = {});
  // Frames NIC port `port` sends onto the wire from now on (EthernetService.CaptureFrames); with a
  // non-zero `deadline` the stream ends (DEADLINE_EXCEEDED) that long after it opened.
  // Delivers `frame` (destination MAC first) to port `port`'s receive side as if the link
  // partner sent it (EthernetService.InjectFrame): accepted() when a receive queue took it,
  // queues() how many did.
  v1::InjectFrameResponse InjectFrame(uint32_t port, const std::string& frame);
  // How the remapping unit (VT-d) would translate a DMA from `rid` to `address` now
  // (IommuService.TranslateAddress): status(), translated_address(), fault_reason(), fault_recorded().
  v1::TranslateAddressResponse TranslateAddress(uint32_t rid, uint64_t address, const TranslateOptions& opt = {});
  std::unique_ptr<FrameCapture> CaptureFrames(uint32_t port, std::chrono::milliseconds deadline = std::chrono::milliseconds(0));
  std::unique_ptr<Session> OpenSession();
  // Opens a shared-memory ring (SessionService.OpenRing): maps the file the server names.
  // Throws RpcError if the server refuses (INVALID_ARGUMENT naming a size, RESOURCE_EXHAUSTED).
  std::unique_ptr<Ring> OpenRing(const v1::OpenRingRequest& request = {});
  // Decoded transactions (TraceService.Subscribe, docs/trace.md) of the functions in `rids`
  // ("01:10.0"; FormatBdf(rid)) and the kinds named in `kinds` ("config", "mmio", "dma", "msi",
  // "iommu", "frame", "lifecycle"); empty = all; in the machine's order. A subscriber that falls
  // behind gets one TRACE_KIND_GAP event whose missed() is the count it lost, and the stream goes
  // on. No deadline; Cancel() ends it. WaitOpened() throws RpcError (INVALID_ARGUMENT naming
  // rids[i] / kinds[i]) for a bad filter.
  std::unique_ptr<TraceSubscription> SubscribeTrace(const std::vector<std::string>& rids = {},
                                                    const std::vector<std::string>& kinds = {});

  // The driver-conduct checker's violations so far, oldest first (TraceService.GetViolations,
  // docs/checker.md): only those of `rule_ids` and of the functions in `rids` ("01:10.0") when
  // given, only those whose sequence() is greater than `after_sequence`. Throws RpcError:
  // FAILED_PRECONDITION when the server runs with --check off, INVALID_ARGUMENT naming
  // rule_ids[i] / rids[i] for a bad filter.
  v1::GetViolationsResponse GetViolations(const std::vector<std::string>& rule_ids = {},
                                          const std::vector<std::string>& rids = {}, uint64_t after_sequence = 0);
  uint32_t ClearViolations();  // forgets the recorded violations; returns how many
  // The end of a driver test: throws ViolationsError listing every violation recorded (of any
  // severity); returns when there is none.
  void AssertNoViolations();

  std::shared_ptr<grpc::Channel> channel() const { return channel_; }
  std::chrono::milliseconds timeout{30000};  // deadline of each unary call (CallTimeout overrides it)

 private:
  void SetAri(uint32_t port, uint32_t fn0, bool on);
  void Deadline(grpc::ClientContext& ctx) const;
  bool has_token_ = false;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::PlatformService::Stub> platform_;
  std::unique_ptr<v1::ConfigService::Stub> config_;
  std::unique_ptr<v1::MmioService::Stub> mmio_;
  std::unique_ptr<v1::MemoryService::Stub> memory_;
  std::unique_ptr<v1::InterruptService::Stub> interrupts_;
  std::unique_ptr<v1::SessionService::Stub> sessions_;
  std::unique_ptr<v1::EthernetService::Stub> ethernet_;
  std::unique_ptr<v1::IommuService::Stub> iommu_;
  std::unique_ptr<v1::TraceService::Stub> trace_;
};

// Per-call deadline override: while a CallTimeout lives, the unary calls this thread makes
// through `client` have `deadline` instead of client.timeout (the 30 s default); nested ones
// stack. Streams (sessions, subscriptions, captures) have no default deadline.
//   { pcieemu::CallTimeout t(*c, std::chrono::seconds(2)); c->ReadConfig32(rid, 0); }
class CallTimeout {
 public:
  CallTimeout(const Client& client, std::chrono::milliseconds deadline);
  ~CallTimeout();
  CallTimeout(const CallTimeout&) = delete;
  CallTimeout& operator=(const CallTimeout&) = delete;

 private:
  friend class Client;
  const Client* client_;
  std::chrono::milliseconds deadline_;
  CallTimeout* outer_;
};

// Waits until grpc.health.v1.Health/Check("") answers SERVING or the timeout passes. On TCP it
// sends the token of `options` (re-read each try: the token file may not exist yet).
bool WaitServing(const std::string& target, std::chrono::milliseconds timeout, const ConnectOptions& options = {});

// A channel to `target` ("tcp://...", "unix://...") that sends "authorization: Bearer <token>"
// with every call when `token` is not empty.
std::shared_ptr<grpc::Channel> CreateChannel(const std::string& target, const std::string& token,
                                             const grpc::ChannelArguments& args = {});

}  // namespace pcieemu
