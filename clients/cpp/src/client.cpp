#include "pcieemu/pcieemu.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <regex>
#include <set>

#include <grpcpp/support/client_interceptor.h>

#include "grpc/health/v1/health.grpc.pb.h"

namespace pcieemu {

uint32_t Rid(int bus, int device, int function) {
  if (bus < 0 || bus > 255) throw std::invalid_argument("bus must be 0-255 (was " + std::to_string(bus) + ")");
  if (device < 0 || device > 31) throw std::invalid_argument("device must be 0-31 (was " + std::to_string(device) + ")");
  if (function < 0 || function > 7) throw std::invalid_argument("function must be 0-7 (was " + std::to_string(function) + ")");
  return static_cast<uint32_t>(bus << 8 | device << 3 | function);
}

std::string FormatBdf(uint32_t rid) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%02x:%02x.%u", (rid >> 8) & 0xff, (rid >> 3) & 0x1f, rid & 7);
  return buf;
}

uint32_t ParseBdf(const std::string& text) {
  static const std::regex re("^(?:([0-9a-fA-F]{1,4}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\\.([0-7])$");
  std::smatch m;
  if (!std::regex_match(text, m, re)) throw std::invalid_argument("'" + text + "' is not a BDF (expected bb:dd.f, e.g. 01:00.0)");
  if (m[1].matched && std::stoul(m[1].str(), nullptr, 16) != 0) throw std::invalid_argument("'" + text + "': only segment 0 exists");
  int dev = static_cast<int>(std::stoul(m[3].str(), nullptr, 16));
  if (dev > 31) throw std::invalid_argument("'" + text + "': device must be 00-1f");
  return Rid(static_cast<int>(std::stoul(m[2].str(), nullptr, 16)), dev, std::stoi(m[4].str()));
}

std::string DefaultRuntimeDir() {
  struct stat st {};
  const char* xdg = std::getenv("XDG_RUNTIME_DIR");
  if (xdg && *xdg && ::stat(xdg, &st) == 0 && S_ISDIR(st.st_mode)) return std::string(xdg) + "/pcie-emu";
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = tmp && *tmp ? tmp : "/tmp";
  if (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  std::string name;
  if (const passwd* pw = ::getpwuid(::geteuid())) name = pw->pw_name;
  if (name.empty())
    if (const char* user = std::getenv("USER")) name = user;
  return dir + "/pcie-emu-" + name;
}

std::string DefaultUnixSocketPath() { return DefaultRuntimeDir() + "/pcie-emu.sock"; }

std::string DefaultTokenPath() { return DefaultRuntimeDir() + "/token"; }

namespace {

std::string Trim(std::string s) {
  const char* ws = " \t\r\n";
  s.erase(s.find_last_not_of(ws) + 1);
  s.erase(0, s.find_first_not_of(ws) == std::string::npos ? s.size() : s.find_first_not_of(ws));
  return s;
}

bool ReadFile(const std::string& path, std::string& out) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (!f) return false;
  char buf[256];
  size_t n = std::fread(buf, 1, sizeof buf, f);
  std::fclose(f);
  out = Trim(std::string(buf, n));
  return true;
}

}  // namespace

std::string ResolveToken(const std::string& token, const std::string& token_file) {
  if (!Trim(token).empty()) return Trim(token);
  std::string text;
  if (!token_file.empty()) {
    if (!ReadFile(token_file, text))
      throw std::runtime_error("token file '" + token_file + "': " + std::strerror(errno));
    if (text.empty()) throw std::runtime_error("token file '" + token_file + "' is empty");
    return text;
  }
  if (const char* env = std::getenv(kTokenVariable); env && !Trim(env).empty()) return Trim(env);
  if (ReadFile(DefaultTokenPath(), text)) return text;
  return "";
}

std::string DefaultTarget() {
  if (const char* env = std::getenv("PCIEEMU_TARGET"); env && *env) return env;
  std::string sock = DefaultUnixSocketPath();
  struct stat st {};
  return ::stat(sock.c_str(), &st) == 0 ? "unix://" + sock : kDefaultTarget;
}

namespace {

std::string GrpcTarget(const std::string& target) {
  if (target.rfind("unix:", 0) == 0) {
    std::string path = target.substr(5);
    if (path.rfind("//", 0) == 0) path = path.substr(2);
    if (path.empty() || path[0] != '/')
      throw std::invalid_argument("'" + target + "': a unix target needs an absolute path (unix:///run/x.sock)");
    return "unix://" + path;
  }
  for (const char* scheme : {"tcp://", "http://"}) {
    if (target.rfind(scheme, 0) == 0) {
      std::string rest = target.substr(std::strlen(scheme));
      if (!rest.empty() && rest.back() == '/') rest.pop_back();
      return rest;
    }
  }
  if (target.find(':') != std::string::npos && target.find('/') == std::string::npos) return target;
  throw std::invalid_argument("'" + target + "': expected unix:///path or tcp://host:port");
}

void Check(const grpc::Status& s, const char* what) {
  if (!s.ok()) throw RpcError(what, s);
}

// Adds "authorization: Bearer <token>" to the initial metadata of every call of a channel (the
// token is the guard on plain TCP; insecure channel credentials cannot carry call credentials).
class BearerInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit BearerInterceptor(const std::string& value) : value_(value) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA))
      methods->GetSendInitialMetadata()->emplace("authorization", value_);
    methods->Proceed();
  }

 private:
  std::string value_;
};

class BearerFactory : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerFactory(std::string token) : value_("Bearer " + std::move(token)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(grpc::experimental::ClientRpcInfo*) override {
    return new BearerInterceptor(value_);
  }

 private:
  std::string value_;
};

}  // namespace

std::shared_ptr<grpc::Channel> CreateChannel(const std::string& target, const std::string& token,
                                             const grpc::ChannelArguments& args) {
  if (token.empty()) return grpc::CreateCustomChannel(GrpcTarget(target), grpc::InsecureChannelCredentials(), args);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> factories;
  factories.push_back(std::make_unique<BearerFactory>(token));
  return grpc::experimental::CreateCustomChannelWithInterceptors(GrpcTarget(target), grpc::InsecureChannelCredentials(),
                                                                  args, std::move(factories));
}

std::unique_ptr<Client> Client::Connect(const std::string& target_in, std::chrono::milliseconds timeout,
                                        const ConnectOptions& options) {
  std::string target = target_in.empty() ? DefaultTarget() : target_in;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  auto c = std::unique_ptr<Client>(new Client());
  // The Unix socket needs no token (its mode is the guard); TCP sends the server's token.
  std::string token = GrpcTarget(target).rfind("unix:", 0) == 0 ? "" : ResolveToken(options.token, options.token_file);
  c->has_token_ = !token.empty();
  c->channel_ = CreateChannel(target, token, args);
  if (!c->channel_->WaitForConnected(std::chrono::system_clock::now() + timeout))
    throw std::runtime_error("cannot connect to " + target);
  c->platform_ = v1::PlatformService::NewStub(c->channel_);
  c->config_ = v1::ConfigService::NewStub(c->channel_);
  c->mmio_ = v1::MmioService::NewStub(c->channel_);
  c->memory_ = v1::MemoryService::NewStub(c->channel_);
  c->interrupts_ = v1::InterruptService::NewStub(c->channel_);
  c->sessions_ = v1::SessionService::NewStub(c->channel_);
  c->ethernet_ = v1::EthernetService::NewStub(c->channel_);
  c->iommu_ = v1::IommuService::NewStub(c->channel_);
  c->trace_ = v1::TraceService::NewStub(c->channel_);
  return c;
}

namespace {
thread_local CallTimeout* call_timeouts = nullptr;  // innermost first
}  // namespace

CallTimeout::CallTimeout(const Client& client, std::chrono::milliseconds deadline)
    : client_(&client), deadline_(deadline), outer_(call_timeouts) {
  call_timeouts = this;
}

CallTimeout::~CallTimeout() { call_timeouts = outer_; }

void Client::Deadline(grpc::ClientContext& ctx) const {
  auto d = timeout;
  for (auto* t = call_timeouts; t; t = t->outer_)
    if (t->client_ == this) {
      d = t->deadline_;
      break;
    }
  ctx.set_deadline(std::chrono::system_clock::now() + d);
}

v1::GetPlatformResponse Client::GetPlatform() {
  grpc::ClientContext ctx;
  Deadline(ctx);
  v1::GetPlatformResponse r;
  Check(platform_->GetPlatform(&ctx, v1::GetPlatformRequest(), &r), "GetPlatform");
  return r;
}

std::vector<v1::Function> Client::ListFunctions() {
  grpc::ClientContext ctx;
  Deadline(ctx);
  v1::ListFunctionsResponse r;
  Check(platform_->ListFunctions(&ctx, v1::ListFunctionsRequest(), &r), "ListFunctions");
  return {r.functions().begin(), r.functions().end()};
}

v1::GetViolationsResponse Client::GetViolations(const std::vector<std::string>& rule_ids,
                                                const std::vector<std::string>& rids, uint64_t after_sequence) {
  grpc::ClientContext ctx;
  Deadline(ctx);
  v1::GetViolationsRequest q;
  for (const auto& id : rule_ids) q.add_rule_ids(id);
  for (const auto& r : rids) q.add_rids(r);
  q.set_after_sequence(after_sequence);
  v1::GetViolationsResponse r;
  Check(trace_->GetViolations(&ctx, q, &r), "GetViolations");
  return r;
}

uint32_t Client::ClearViolations() {
  grpc::ClientContext ctx;
  Deadline(ctx);
  v1::ClearViolationsResponse r;
  Check(trace_->ClearViolations(&ctx, v1::ClearViolationsRequest(), &r), "ClearViolations");
  return r.cleared();
}

void Client::AssertNoViolations() {
  auto r = GetViolations();
  if (r.violations_size() > 0 || r.dropped() > 0)
    throw ViolationsError({r.violations().begin(), r.violations().end()}, r.dropped());
}

std::string DescribeViolations(const std::vector<v1::Violation>& violations, uint64_t dropped) {
  std::string s = std::to_string(violations.size()) + " driver-conduct violation(s)";
  if (dropped > 0) s += " (and " + std::to_string(dropped) + " not kept)";
  for (const auto& v : violations)
    s += "\n" + v.requester() + " " + v.rule().id() + " (" + v.rule().spec() + "): " + v.event() + " -> " +
         v.outcome() + ". Hint: " + v.rule().hint();
  return s;
}

ViolationsError::ViolationsError(std::vector<v1::Violation> violations, uint64_t dropped)
    : std::runtime_error(DescribeViolations(violations, dropped)), violations_(std::move(violations)), dropped_(dropped) {}

uint32_t Client::ResetPlatform() {
  grpc::ClientContext ctx;
  Deadline(ctx);
  v1::ResetPlatformResponse r;
  Check(platform_->ResetPlatform(&ctx, v1::ResetPlatformRequest(), &r), "ResetPlatform");
  return r.functions();
}

ConfigRead Client::ReadConfig(uint32_t rid, int offset, int width) {
  grpc::ClientContext ctx;
  Deadline(ctx);
  v1::ReadConfigRequest q;
  q.set_rid(rid);
  q.set_offset(static_cast<uint32_t>(offset));
  q.set_width(static_cast<uint32_t>(width));
  v1::ReadConfigResponse r;
  Check(config_->ReadConfig(&ctx, q, &r), "ReadConfig");
  return {r.status(), r.value()};
}

Status Client::WriteConfig(uint32_t rid, int offset, int width, uint32_t value) {
  grpc::ClientContext ctx;
  Deadline(ctx);
  v1::WriteConfigRequest q;
  q.set_rid(rid);
  q.set_offset(static_cast<uint32_t>(offset));
  q.set_width(static_cast<uint32_t>(width));
  q.set_value(value);
  v1::WriteConfigResponse r;
  Check(config_->WriteConfig(&ctx, q, &r), "WriteConfig");
  return r.status();
}

MmioRead Client::ReadMmio(uint64_t address, int width) {
  grpc::ClientContext ctx;
  Deadline(ctx);
  v1::ReadMmioRequest q;
  q.set_address(address);
  q.set_width(static_cast<uint32_t>(width));
  v1::ReadMmioResponse r;
  Check(mmio_->ReadMmio(&ctx, q, &r), "ReadMmio");
  return {r.status(), r.value()};
}

Status Client::WriteMmio(uint64_t address, int width, uint64_t value) {
  grpc::ClientContext ctx;
  Deadline(ctx);
  v1::WriteMmioRequest q;
  q.set_address(address);
  q.set_width(static_cast<uint32_t>(width));
  q.set_value(value);
  v1::WriteMmioResponse r;
  Check(mmio_->WriteMmio(&ctx, q, &r), "WriteMmio");
  return r.status();
}

std::string Client::ReadMemory(uint64_t address, uint32_t length) {
  grpc::ClientContext ctx;
  Deadline(ctx);
  v1::ReadMemoryRequest q;
  q.set_address(address);
  q.set_length(length);
  v1::ReadMemoryResponse r;
  Check(memory_->ReadMemory(&ctx, q, &r), "ReadMemory");
  return r.data();
}

void Client::WriteMemory(uint64_t address, const std::string& data) {
  grpc::ClientContext ctx;
  Deadline(ctx);
  v1::WriteMemoryRequest q;
  q.set_address(address);
  q.set_data(data);
  v1::WriteMemoryResponse r;
  Check(memory_->WriteMemory(&ctx, q, &r), "WriteMemory");
}

// ---- capability walks (PCI 3.0 §6.7, PCIe Base §7.6) ----

std::vector<Capability> Client::Capabilities(uint32_t rid) {
  std::vector<Capability> caps;
  auto st = ReadConfig(rid, regs::kStatus, 2);
  if (st.status != v1::COMPLETION_STATUS_SUCCESSFUL || !(st.value & regs::kStatusCapList)) return caps;
  std::set<int> seen;
  for (int ptr = ReadConfig8(rid, regs::kCapPtr) & 0xfc; ptr >= 0x40 && !seen.count(ptr) && caps.size() < 48;) {
    seen.insert(ptr);
    uint16_t hdr = ReadConfig16(rid, ptr);
    caps.push_back({static_cast<uint8_t>(hdr & 0xff), ptr});
    ptr = (hdr >> 8) & 0xfc;
  }
  return caps;
}

std::vector<ExtendedCapability> Client::ExtendedCapabilities(uint32_t rid) {
  std::vector<ExtendedCapability> caps;
  std::set<int> seen;
  for (int off = regs::kExtCapStart; off >= regs::kExtCapStart && off < 0x1000 && !seen.count(off);) {
    seen.insert(off);
    auto r = ReadConfig(rid, off, 4);
    if (r.status != v1::COMPLETION_STATUS_SUCCESSFUL || r.value == 0 || r.value == 0xffffffffu) break;
    caps.push_back({static_cast<uint16_t>(r.value & 0xffff), static_cast<uint8_t>((r.value >> 16) & 0xf), off});
    off = static_cast<int>((r.value >> 20) & 0xffc);
  }
  return caps;
}

int Client::FindCapability(uint32_t rid, uint8_t id) {
  for (auto& c : Capabilities(rid))
    if (c.id == id) return c.offset;
  return 0;
}

int Client::FindExtendedCapability(uint32_t rid, uint16_t id) {
  for (auto& c : ExtendedCapabilities(rid))
    if (c.id == id) return c.offset;
  return 0;
}

// ---- SR-IOV, the way Linux's sriov_enable / sriov_disable do it ----

std::vector<uint32_t> Client::EnableSriov(uint32_t pf, int num_vfs, const SriovOptions& opt) {
  int sriov = FindExtendedCapability(pf, regs::kExtCapIdSriov);
  if (!sriov) throw std::runtime_error(FormatBdf(pf) + " has no SR-IOV capability");
  int total = ReadConfig16(pf, sriov + regs::kSriovTotalVfs);
  if (num_vfs < 1 || num_vfs > total)
    throw std::invalid_argument("num_vfs must be 1.." + std::to_string(total) + " (TotalVFs), was " + std::to_string(num_vfs));
  if (ReadConfig16(pf, sriov + regs::kSriovCtrl) & regs::kSriovCtrlVfe)
    throw std::runtime_error(FormatBdf(pf) + ": VF Enable is already set");

  auto platform = GetPlatform();
  const v1::RootPort* port = nullptr;
  for (auto& p : platform.root_ports())
    if (p.secondary_bus() == static_cast<uint32_t>(pf >> 8)) port = &p;
  // ARI: automatic (nullopt) uses it when the hierarchy supports it; true requires it.
  bool ari_possible = port && port->ari_forwarding_supported() && FindExtendedCapability(pf, regs::kExtCapIdAri);
  if (!ari_possible && opt.ari.value_or(false))
    throw std::invalid_argument(FormatBdf(pf) + ": ARI requested but the hierarchy does not support it "
                                "(port ARI Forwarding and a PF ARI capability needed)");
  if (ari_possible) SetAri(port->rid(), pf & 0xff00, opt.ari.value_or(true));

  WriteConfig16(pf, sriov + regs::kSriovNumVfs, static_cast<uint16_t>(num_vfs));
  // First VF Offset and VF Stride depend on NumVFs and ARI Capable Hierarchy: reread them.
  uint16_t offset = ReadConfig16(pf, sriov + regs::kSriovVfOffset);
  uint16_t stride = ReadConfig16(pf, sriov + regs::kSriovVfStride);
  std::vector<uint32_t> rids;
  for (int i = 0; i < num_vfs; i++) {
    uint32_t r = pf + offset + static_cast<uint32_t>(i) * stride;
    if (port && static_cast<uint32_t>(r >> 8) > port->subordinate_bus()) {
      WriteConfig16(pf, sriov + regs::kSriovNumVfs, 0);
      throw std::runtime_error("VF " + FormatBdf(r) + " would be beyond the port's subordinate bus");
    }
    rids.push_back(r);
  }
  uint16_t ctl = ReadConfig16(pf, sriov + regs::kSriovCtrl);
  WriteConfig16(pf, sriov + regs::kSriovCtrl, ctl | regs::kSriovCtrlVfe | regs::kSriovCtrlMse);  // one write
  std::this_thread::sleep_for(opt.settle);
  return rids;
}

void Client::SetAri(uint32_t port, uint32_t fn0, bool on) {
  if (int pcie = FindCapability(port, regs::kCapIdPcie)) {
    uint16_t v = ReadConfig16(port, pcie + regs::kPcieDevCtl2);
    uint16_t want = on ? (v | regs::kAriForwarding) : (v & ~regs::kAriForwarding);
    if (want != v) WriteConfig16(port, pcie + regs::kPcieDevCtl2, want);
  }
  // ARI Capable Hierarchy lives in the lowest-numbered PF; it may change only while VF Enable is clear.
  if (int s0 = FindExtendedCapability(fn0, regs::kExtCapIdSriov)) {
    uint16_t c0 = ReadConfig16(fn0, s0 + regs::kSriovCtrl);
    if (c0 & regs::kSriovCtrlVfe) return;
    uint16_t want = on ? (c0 | regs::kSriovCtrlAri) : (c0 & ~regs::kSriovCtrlAri);
    if (want != c0) WriteConfig16(fn0, s0 + regs::kSriovCtrl, want);
  }
}

void Client::DisableSriov(uint32_t pf, std::chrono::milliseconds settle) {
  int sriov = FindExtendedCapability(pf, regs::kExtCapIdSriov);
  if (!sriov) throw std::runtime_error(FormatBdf(pf) + " has no SR-IOV capability");
  uint16_t ctl = ReadConfig16(pf, sriov + regs::kSriovCtrl);
  WriteConfig16(pf, sriov + regs::kSriovCtrl, ctl & ~(regs::kSriovCtrlVfe | regs::kSriovCtrlMse));
  std::this_thread::sleep_for(settle);
  WriteConfig16(pf, sriov + regs::kSriovNumVfs, 0);
}

// ---- RAM ----

std::unique_ptr<Ram> Client::OpenRam(bool prefer_rpc) {
  auto p = GetPlatform();
  if (p.ram_regions_size() == 0) throw std::runtime_error("the server reports no RAM region");
  const auto& reg = p.ram_regions(0);
  auto ram = std::unique_ptr<Ram>(new Ram(this, reg.base(), reg.size()));
  if (prefer_rpc || reg.shared_file_path().empty()) return ram;
  int fd = ::open(reg.shared_file_path().c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return ram;  // not on this host: RPC fallback
  struct stat st {};
  if (::fstat(fd, &st) == 0 && static_cast<uint64_t>(st.st_size) >= reg.size()) {
    void* m = ::mmap(nullptr, reg.size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m != MAP_FAILED) ram->data_ = static_cast<uint8_t*>(m);
  }
  ::close(fd);
  return ram;
}

Ram::~Ram() {
  if (data_) ::munmap(data_, size_);
}

uint64_t Ram::Check(uint64_t address, size_t length) const {
  if (address < base_ || address - base_ + length > size_) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "[0x%llx, +%zu) is outside RAM", static_cast<unsigned long long>(address), length);
    throw std::out_of_range(buf);
  }
  return address - base_;
}

void Ram::Read(uint64_t address, void* dst, size_t length) {
  uint64_t off = Check(address, length);
  if (data_) {
    std::memcpy(dst, data_ + off, length);
    return;
  }
  auto d = client_->ReadMemory(address, static_cast<uint32_t>(length));
  std::memcpy(dst, d.data(), std::min(length, d.size()));
}

void Ram::Write(uint64_t address, const void* src, size_t length) {
  uint64_t off = Check(address, length);
  if (data_) {
    std::memcpy(data_ + off, src, length);
    return;
  }
  client_->WriteMemory(address, std::string(static_cast<const char*>(src), length));
}

// ---- interrupts ----

std::unique_ptr<InterruptSubscription> Client::SubscribeInterrupts(const std::vector<uint32_t>& rids) {
  auto s = std::unique_ptr<InterruptSubscription>(new InterruptSubscription("SubscribeInterrupts"));
  v1::SubscribeInterruptsRequest q;
  for (auto r : rids) q.add_rids(r);
  s->reader_ = interrupts_->SubscribeInterrupts(&s->ctx_, q);
  return s;
}

v1::InjectFrameResponse Client::InjectFrame(uint32_t port, const std::string& frame) {
  grpc::ClientContext ctx;
  Deadline(ctx);
  v1::InjectFrameRequest q;
  q.set_port(port);
  q.set_data(frame);
  v1::InjectFrameResponse r;
  Check(ethernet_->InjectFrame(&ctx, q, &r), "InjectFrame");
  return r;
}

v1::TranslateAddressResponse Client::TranslateAddress(uint32_t rid, uint64_t address, const TranslateOptions& opt) {
  grpc::ClientContext ctx;
  Deadline(ctx);
  v1::TranslateAddressRequest q;
  q.set_rid(rid);
  q.set_address(address);
  q.set_write(opt.write);
  q.set_dry_run(opt.dry_run);
  v1::TranslateAddressResponse r;
  Check(iommu_->TranslateAddress(&ctx, q, &r), "TranslateAddress");
  return r;
}

std::unique_ptr<FrameCapture> Client::CaptureFrames(uint32_t port, std::chrono::milliseconds deadline) {
  auto s = std::unique_ptr<FrameCapture>(new FrameCapture("CaptureFrames"));
  if (deadline.count() > 0) s->ctx_.set_deadline(std::chrono::system_clock::now() + deadline);
  v1::CaptureFramesRequest q;
  q.set_port(port);
  s->reader_ = ethernet_->CaptureFrames(&s->ctx_, q);
  return s;
}

std::unique_ptr<TraceSubscription> Client::SubscribeTrace(const std::vector<std::string>& rids,
                                                          const std::vector<std::string>& kinds) {
  auto s = std::unique_ptr<TraceSubscription>(new TraceSubscription("Subscribe"));
  v1::TraceFilter q;
  for (auto& r : rids) q.add_rids(r);
  for (auto& k : kinds) q.add_kinds(k);
  s->reader_ = trace_->Subscribe(&s->ctx_, q);
  return s;
}

template <typename Event>
StreamSubscription<Event>::~StreamSubscription() {
  if (!finished_) {
    Cancel();
    Finish();
  }
}

template <typename Event>
void StreamSubscription<Event>::WaitOpened() {
  reader_->WaitForInitialMetadata();
  // A refusal comes as a trailers-only response: no initial metadata (not even content-type).
  if (ctx_.GetServerInitialMetadata().empty()) {
    auto s = Finish();
    if (!s.ok()) throw RpcError(rpc_, s);
  }
}

template <typename Event>
bool StreamSubscription<Event>::Next(Event* event) { return !finished_ && reader_->Read(event); }

template <typename Event>
void StreamSubscription<Event>::Cancel() {
  cancelled_ = true;
  ctx_.TryCancel();
}

template <typename Event>
grpc::Status StreamSubscription<Event>::Finish() {
  if (!finished_) {
    Event ignored;
    while (reader_->Read(&ignored)) {
    }
    status_ = reader_->Finish();
    finished_ = true;
    if (cancelled_ && status_.error_code() == grpc::StatusCode::CANCELLED) status_ = grpc::Status::OK;
  }
  return status_;
}

template class StreamSubscription<v1::InterruptEvent>;
template class StreamSubscription<v1::CapturedFrame>;
template class StreamSubscription<v1::TraceEvent>;

// ---- health ----

bool WaitServing(const std::string& target, std::chrono::milliseconds timeout, const ConnectOptions& options) {
  // grpc.health.v1.Health/Check for the whole server (service ""), through the stubs generated
  // from clients/cpp/proto/grpc/health/v1/health.proto.
  auto until = std::chrono::system_clock::now() + timeout;
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(GrpcTarget(target), grpc::InsecureChannelCredentials()));
  bool unix_socket = GrpcTarget(target).rfind("unix:", 0) == 0;
  while (std::chrono::system_clock::now() < until) {
    grpc::ClientContext ctx;
    if (!unix_socket) {
      std::string token;
      try {
        token = ResolveToken(options.token, options.token_file);
      } catch (const std::runtime_error&) {  // the server has not written its token file yet
      }
      if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    }
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    grpc::health::v1::HealthCheckResponse r;
    if (stub->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &r).ok() &&
        r.status() == grpc::health::v1::HealthCheckResponse::SERVING)
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return false;
}

}  // namespace pcieemu
