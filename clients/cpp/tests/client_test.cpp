// Tests of the C++ client against a real server: $PCIEEMU_TEST_TARGET, or one started here from
// $PCIEEMU_SERVER_DLL / src/PcieEmu.Server/bin/Release/net10.0/pcie-emu.dll.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "pcieemu/pcieemu.h"
#include "pcieemu/pcieemu.hpp"
#include "test_server.h"

namespace fs = std::filesystem;
using namespace pcieemu;
using namespace std::chrono_literals;

// Targets of the test server and its TCP token file (also used by conformance_test.cpp).
std::string g_tcp, g_unix, g_token_file;

namespace {
constexpr uint32_t kPf0 = 0x0100, kPort = 0x0008;
constexpr auto OK = v1::COMPLETION_STATUS_SUCCESSFUL;
constexpr auto UR = v1::COMPLETION_STATUS_UNSUPPORTED_REQUEST;

class ServerEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (const char* t = std::getenv("PCIEEMU_TEST_TARGET")) {
      g_tcp = t;
      if (const char* u = std::getenv("PCIEEMU_TEST_UNIX")) g_unix = u;
      if (const char* f = std::getenv("PCIEEMU_TEST_TOKEN_FILE")) g_token_file = f;
      ASSERT_TRUE(WaitServing(g_tcp, 60s, {"", g_token_file})) << g_tcp << " not SERVING";
      return;
    }
    ASSERT_TRUE(server_.Start()) << server_.error;
    g_tcp = server_.tcp, g_unix = server_.unix_target, g_token_file = server_.token_file;
  }
  void TearDown() override { server_.Stop(); }

 private:
  pcieemu_test::TestServer server_;
};

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    c = Client::Connect(g_tcp, 10s, {"", g_token_file});
    c->timeout = 30s;
    c->ResetPlatform();
  }
  std::unique_ptr<Client> c;
};

// Every wait on a future is bounded.
Completion Get(std::future<Completion>& f) {
  if (f.wait_for(10s) != std::future_status::ready) throw std::runtime_error("completion timed out");
  return f.get();
}

TEST(Bdf, FormatAndParse) {
  EXPECT_EQ(FormatBdf(0x0280), "02:10.0");
  EXPECT_EQ(ParseBdf("0000:01:00.1"), 0x0101);
  EXPECT_EQ(ParseBdf("02:10.0"), Rid(2, 0x10, 0));
  EXPECT_THROW(ParseBdf("01:20.0"), std::invalid_argument);
  EXPECT_THROW(ParseBdf("nonsense"), std::invalid_argument);
  uint32_t r = 0;
  EXPECT_EQ(pcieemu_parse_bdf("01:10.0", &r), 0);
  EXPECT_EQ(r, 0x0180);
  EXPECT_EQ(pcieemu_parse_bdf("zz", &r), -1);
  EXPECT_NE(std::string(pcieemu_last_error()).find("not a BDF"), std::string::npos);
}

TEST_F(ClientTest, Enumerate) {
  auto fns = c->ListFunctions();
  std::map<std::string, v1::Function> by;
  for (auto& f : fns) by[f.bdf()] = f;
  for (auto b : {"00:00.0", "00:01.0", "01:00.0", "01:00.1"}) ASSERT_TRUE(by.count(b)) << b;
  auto& pf = by["01:00.0"];
  EXPECT_EQ(pf.rid(), kPf0);
  EXPECT_EQ(pf.vendor_id(), 0x8086u);
  EXPECT_EQ(pf.device_id(), 0x10c9u);
  EXPECT_EQ(pf.class_code(), 0x020000u);
  EXPECT_FALSE(pf.is_virtual());
  EXPECT_GT(pf.bars_size(), 0);
  auto p = c->GetPlatform();
  ASSERT_GT(p.root_ports_size(), 0);
  EXPECT_EQ(p.root_ports(0).rid(), kPort);
  EXPECT_EQ(p.root_ports(0).secondary_bus(), 1u);
}

TEST_F(ClientTest, UnixSocketAndCApi) {
  if (g_unix.empty()) GTEST_SKIP() << "no Unix socket target";
  auto u = Client::Connect(g_unix);
  EXPECT_EQ(u->ReadConfig32(kPf0, 0), 0x10c98086u);
  pcieemu_t* emu = pcieemu_connect(g_unix.c_str());
  ASSERT_NE(emu, nullptr) << pcieemu_last_error();
  uint32_t v = 0;
  EXPECT_EQ(pcieemu_cfg_read(emu, kPf0, 0, 4, &v), PCIEEMU_STATUS_SUCCESSFUL);
  EXPECT_EQ(v, 0x10c98086u);
  EXPECT_EQ(pcieemu_cfg_read(emu, 0x0900, 0, 4, &v), PCIEEMU_STATUS_UNSUPPORTED_REQUEST);
  EXPECT_EQ(pcieemu_cfg_read(emu, kPf0, 0, 3, &v), -1);
  EXPECT_NE(std::string(pcieemu_last_error()).find("width"), std::string::npos);
  pcieemu_close(emu);
}

TEST_F(ClientTest, DefaultTargetFindsUnixSocket) {
  if (g_unix.empty()) GTEST_SKIP() << "no Unix socket target";
  char tmpl[] = "/tmp/pcieemu-xdg-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl, sock = dir + "/pcie-emu/pcie-emu.sock";
  fs::create_directory(dir + "/pcie-emu");
  fs::create_symlink(g_unix.substr(std::strlen("unix://")), sock);
  const char* old_xdg = std::getenv("XDG_RUNTIME_DIR");
  std::string saved = old_xdg ? old_xdg : "";
  ::setenv("XDG_RUNTIME_DIR", dir.c_str(), 1);
  ::unsetenv("PCIEEMU_TARGET");
  EXPECT_EQ(DefaultTarget(), "unix://" + sock);
  EXPECT_EQ(Client::Connect()->ReadConfig32(kPf0, 0), 0x10c98086u);
  if (old_xdg) ::setenv("XDG_RUNTIME_DIR", saved.c_str(), 1); else ::unsetenv("XDG_RUNTIME_DIR");
  fs::remove_all(dir);
}

TEST_F(ClientTest, ConfigWidths) {
  auto r = c->ReadConfig(kPf0, 0, 4);
  EXPECT_EQ(r.status, OK);
  EXPECT_EQ(r.value, 0x10c98086u);
  EXPECT_EQ(c->ReadConfig16(kPf0, 2), 0x10c9);
  EXPECT_EQ(c->ReadConfig8(kPf0, 1), 0x80);
  EXPECT_EQ(c->ReadConfig8(kPf0, 0x0b), 0x02);
  EXPECT_EQ(c->WriteConfig8(kPf0, 0x3c, 0x5a), OK);  // Interrupt Line: read/write
  EXPECT_EQ(c->ReadConfig32(kPf0, 0x3c) & 0xff, 0x5au);
  c->WriteConfig16(kPf0, 0, 0x1234);  // Vendor ID: read-only
  EXPECT_EQ(c->ReadConfig16(kPf0, 0), 0x8086);
}

TEST_F(ClientTest, UnsupportedRequestReadsAllOnes) {
  auto a = c->ReadConfig(Rid(1, 1, 0), 0, 4);
  EXPECT_EQ(a.status, UR);
  EXPECT_EQ(a.value, 0xffffffffu);
  auto b = c->ReadConfig(Rid(9, 0, 0), 0, 2);
  EXPECT_EQ(b.status, UR);
  EXPECT_EQ(b.value, 0xffffu);
  auto d = c->ReadConfig(Rid(9, 0, 0), 3, 1);
  EXPECT_EQ(d.status, UR);
  EXPECT_EQ(d.value, 0xffu);
  EXPECT_EQ(c->WriteConfig8(Rid(9, 0, 0), 0x3c, 1), UR);
}

TEST_F(ClientTest, CapabilityWalk) {
  auto caps = c->Capabilities(kPf0);
  ASSERT_EQ(caps.size(), 4u);
  const std::pair<int, int> want[] = {{regs::kCapIdPm, 0x40}, {regs::kCapIdMsi, 0x50}, {regs::kCapIdMsix, 0x70}, {regs::kCapIdPcie, 0xa0}};
  for (size_t i = 0; i < 4; i++) {
    EXPECT_EQ(caps[i].id, want[i].first);
    EXPECT_EQ(caps[i].offset, want[i].second);
  }
  auto ext = c->ExtendedCapabilities(kPf0);
  ASSERT_EQ(ext.size(), 4u);
  const std::pair<int, int> wantExt[] = {{regs::kExtCapIdAer, 0x100}, {regs::kExtCapIdDsn, 0x140}, {regs::kExtCapIdAri, 0x150}, {regs::kExtCapIdSriov, 0x160}};
  for (size_t i = 0; i < 4; i++) {
    EXPECT_EQ(ext[i].id, wantExt[i].first);
    EXPECT_EQ(ext[i].offset, wantExt[i].second);
  }
  EXPECT_EQ(c->FindCapability(kPort, regs::kCapIdPcie), 0x40);
  EXPECT_TRUE(c->Capabilities(Rid(9, 0, 0)).empty());
}

void ExpectVf(Client& c, uint32_t vf) {
  auto r = c.ReadConfig(vf, regs::kClassRevision, 4);
  EXPECT_EQ(r.status, OK) << FormatBdf(vf);
  EXPECT_EQ(r.value >> 8, 0x020000u) << FormatBdf(vf);
}

TEST_F(ClientTest, SriovWithoutAri) {
  SriovOptions opt;
  opt.ari = false;
  auto vfs = c->EnableSriov(kPf0, 2, opt);
  ASSERT_EQ(vfs.size(), 2u);
  EXPECT_EQ(FormatBdf(vfs[0]), "02:10.0");
  EXPECT_EQ(FormatBdf(vfs[1]), "02:10.2");
  ExpectVf(*c, ParseBdf("02:10.0"));
  EXPECT_EQ(c->ReadConfig(ParseBdf("01:10.0"), 0, 4).status, UR);
  bool listed = false;
  for (auto& f : c->ListFunctions())
    if (f.rid() == 0x0280) listed = f.is_virtual() && f.physical_function_rid() == kPf0 && f.device_id() == 0x10ca;
  EXPECT_TRUE(listed);
  c->DisableSriov(kPf0);
  EXPECT_EQ(c->ReadConfig(0x0280, 8, 4).status, UR);
  EXPECT_EQ(c->ReadConfig16(kPf0, 0x160 + regs::kSriovNumVfs), 0);
}

TEST_F(ClientTest, SriovWithAri) {
  auto vfs = c->EnableSriov(kPf0, 2);
  ASSERT_EQ(vfs.size(), 2u);
  EXPECT_EQ(FormatBdf(vfs[0]), "01:10.0");
  EXPECT_EQ(FormatBdf(vfs[1]), "01:10.2");
  ExpectVf(*c, ParseBdf("01:10.0"));
  EXPECT_TRUE(c->ReadConfig16(kPort, 0x40 + regs::kPcieDevCtl2) & regs::kAriForwarding);
  uint16_t want = regs::kSriovCtrlVfe | regs::kSriovCtrlMse | regs::kSriovCtrlAri;
  EXPECT_EQ(c->ReadConfig16(kPf0, 0x160 + regs::kSriovCtrl) & want, want);
  EXPECT_EQ(c->ReadConfig(0x0280, 0, 4).status, UR);
  c->DisableSriov(kPf0);
  EXPECT_EQ(c->ReadConfig(0x0180, 8, 4).status, UR);
  EXPECT_THROW(c->EnableSriov(kPf0, 99), std::invalid_argument);
}

TEST_F(ClientTest, MemoryMappedAndRpc) {
  auto mapped = c->OpenRam();
  auto rpc = c->OpenRam(true);
  ASSERT_TRUE(mapped->mapped()) << "the server runs on this host: the RAM file should map";
  ASSERT_FALSE(rpc->mapped());
  uint64_t a = mapped->base() + 0x10000;
  const uint8_t bytes[] = {1, 2, 3, 4, 5};
  std::memcpy(mapped->data() + (a - mapped->base()), bytes, 5);
  uint8_t got[5] = {};
  rpc->Read(a, got, 5);
  EXPECT_EQ(std::memcmp(got, bytes, 5), 0);
  rpc->Write(a + 8, "hello", 5);
  mapped->Read(a + 8, got, 5);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(got), 5), "hello");
  auto m = c->ReadMmio(a, 4);
  EXPECT_EQ(m.status, OK);
  EXPECT_EQ(m.value, 0x04030201u);
  EXPECT_THROW(mapped->Read(mapped->base() + mapped->size(), got, 1), std::out_of_range);
  try {
    c->ReadMemory(mapped->base() + mapped->size(), 16);
    ADD_FAILURE() << "ReadMemory past RAM succeeded";
  } catch (const RpcError& e) {
    EXPECT_EQ(e.code(), grpc::StatusCode::OUT_OF_RANGE);
  }
}

TEST_F(ClientTest, SessionOrderingWithPostedWrites) {
  auto s = c->OpenSession();
  std::vector<std::future<Completion>> cfg, mem;
  for (int i = 0; i < 200; i++) {
    s->ConfigWrite(kPf0, 0x3c, 1, i & 0xff);
    cfg.push_back(s->ConfigRead(kPf0, 0x3c, 1));
    s->MmioWrite(0x2000, 4, static_cast<uint64_t>(i * 7));
    mem.push_back(s->MmioRead(0x2000, 4));
  }
  s->Flush();
  for (int i = 0; i < 200; i++) {
    auto a = Get(cfg[i]);
    auto b = Get(mem[i]);
    ASSERT_EQ(a.status, OK);
    ASSERT_EQ(a.value, static_cast<uint64_t>(i & 0xff)) << i;
    ASSERT_EQ(b.value, static_cast<uint64_t>(i * 7)) << i;
  }
  s->ConfigWrite(Rid(9, 0, 0), 0x3c, 1, 1);  // to nothing: reported by tag
  auto ack = s->ConfigWriteAck(kPf0, 0x3c, 1, 0x11);
  s->Flush();
  EXPECT_EQ(Get(ack).status, OK);
  auto pe = s->PostedErrors();
  ASSERT_EQ(pe.size(), 1u);
  EXPECT_EQ(pe[0].status, UR);
  auto mr = s->MemoryRead(0x2000, 4);
  s->Flush();
  auto m = Get(mr);
  ASSERT_EQ(m.data.size(), 4u);
  uint32_t v;
  std::memcpy(&v, m.data.data(), 4);
  EXPECT_EQ(v, 199u * 7);
  s->Close();
}

TEST_F(ClientTest, SessionMalformedEndsStream) {
  auto s = c->OpenSession();
  auto f = s->ConfigRead(kPf0, 0, 3);
  s->Flush();
  try {
    Get(f);
    ADD_FAILURE() << "width 3 completed";
  } catch (const RpcError& e) {
    EXPECT_EQ(e.code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(e.message().find("width"), std::string::npos) << e.message();
  }
  s->Cancel();
}

TEST_F(ClientTest, RingOrderingStatusesAndRejectedEntries) {
  auto r = c->OpenRing();
  ASSERT_FALSE(r->layout().path().empty());
  for (int i = 0; i < 600; i++) {  // more than the ring's 256 slots: posted writes, then each read sees them
    r->ConfigWrite(kPf0, 0x3c, 1, i & 0xff);
    r->MmioWrite(0x2000, 4, static_cast<uint64_t>(i * 7));
    if (i % 50 == 49) {
      auto a = r->ConfigRead(kPf0, 0x3c, 1);
      ASSERT_EQ(a.status, OK);
      ASSERT_EQ(a.value, static_cast<uint64_t>(i & 0xff)) << i;
      ASSERT_EQ(r->MmioRead(0x2000, 4).value, static_cast<uint64_t>(i * 7)) << i;
    }
  }
  r->ConfigWrite(Rid(9, 0, 0), 0x3c, 1, 1);  // to nothing: reported as a posted error
  EXPECT_EQ(r->ConfigWriteAck(kPf0, 0x3c, 1, 0x11).status, OK);
  auto pe = r->PostedErrors();
  ASSERT_EQ(pe.size(), 1u);
  EXPECT_EQ(pe[0].status, UR);
  EXPECT_EQ(pe[0].kind, 2);
  auto ur = r->ConfigRead(Rid(9, 0, 0), 0, 4);
  EXPECT_EQ(ur.status, UR);
  EXPECT_EQ(ur.value, 0xFFFFFFFFull);
  uint8_t block[100];
  for (int i = 0; i < 100; i++) block[i] = static_cast<uint8_t>(i * 3);
  r->MemoryWrite(0x3000, block, sizeof block);
  uint8_t back[100] = {};
  auto m = r->MemoryRead(0x3000, back, sizeof back);
  EXPECT_EQ(m.status, OK);
  EXPECT_EQ(m.length, 100u);
  EXPECT_EQ(std::memcmp(block, back, sizeof block), 0);
  // More data than the 64 KiB area holds over time, with data-less entries in between: the area is reused.
  std::vector<uint8_t> big(3000);
  for (int k = 0; k < 100; k++) {
    std::fill(big.begin(), big.end(), static_cast<uint8_t>(k));
    r->MemoryWrite(0x10000 + k * 4096, big.data(), 3000);
    r->MmioWrite(0x10000 + k * 4096 + 3000, 4, k);
  }
  std::vector<uint8_t> got(3004);
  ASSERT_EQ(r->MemoryRead(0x10000 + 99 * 4096, got.data(), 3004).status, OK);
  EXPECT_EQ(got[0], 99);
  EXPECT_EQ(got[2999], 99);
  EXPECT_EQ(got[3000], 99);
  // Rejected entries complete with a status naming the field; the ring goes on.
  auto bad = r->ConfigRead(kPf0, 3, 2);  // crosses a dword
  EXPECT_EQ(bad.status, kRingInvalidArgument);
  EXPECT_EQ(bad.field, 4);  // offset
  auto oor = r->MemoryRead(~0ull - 16, back, 8);
  EXPECT_EQ(oor.status, kRingOutOfRange);
  EXPECT_EQ(oor.field, 6);  // address
  EXPECT_EQ(r->ConfigRead(kPf0, 0, 4).value, 0x10C98086u);
  EXPECT_FALSE(r->closed());
  r->Close();
  try {
    v1::OpenRingRequest req;
    req.set_submission_entries(3);
    c->OpenRing(req);
    ADD_FAILURE() << "3 entries accepted";
  } catch (const RpcError& e) {
    EXPECT_EQ(e.code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(e.message().find("submission_entries"), std::string::npos) << e.message();
  }
}

TEST_F(ClientTest, InterruptStreamOpens) {
  auto sub = c->SubscribeInterrupts({kPf0});
  EXPECT_NO_THROW(sub->WaitOpened());
  sub->Cancel();
  EXPECT_TRUE(sub->Finish().ok()) << sub->Finish().error_message();
  auto bad = c->SubscribeInterrupts({0x10000});
  try {
    bad->WaitOpened();
    ADD_FAILURE() << "rid 0x10000 accepted";
  } catch (const RpcError& e) {
    EXPECT_EQ(e.code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
}

// Makes the 82576 PF0 send MSI-X vector 0 (address 0xFEE00000, data 0x41): Memory Space + Bus
// Master, MSI-X table entry 0 programmed and unmasked, MSI-X enabled, GPIE multiple-MSI-X mode,
// EIMS bit 0, then EICS bit 0 sets the cause.
void RaiseMsix(Client& c) {
  std::map<uint32_t, uint64_t> bars;
  for (auto& f : c.ListFunctions())
    if (f.rid() == kPf0)
      for (auto& b : f.bars()) bars[b.index()] = b.address();
  uint32_t table = c.ReadConfig32(kPf0, 0x70 + 4);
  uint64_t entry = bars[table & 7] + (table & ~7u);
  c.WriteConfig16(kPf0, 0x04, c.ReadConfig16(kPf0, 0x04) | 0x6);
  const std::pair<uint64_t, uint64_t> writes[] = {{0, 0xfee00000}, {4, 0}, {8, 0x41}, {12, 0}};
  for (auto& w : writes) ASSERT_EQ(c.WriteMmio(entry + w.first, 4, w.second), OK);
  c.WriteConfig16(kPf0, 0x72, (c.ReadConfig16(kPf0, 0x72) | 0x8000) & ~0x4000);
  c.WriteMmio(bars[0] + 0x1514, 4, 1 << 4);  // GPIE.Multiple_MSIX
  c.WriteMmio(bars[0] + 0x1524, 4, 1);       // EIMS
  c.WriteMmio(bars[0] + 0x1520, 4, 1);       // EICS
}

TEST_F(ClientTest, InterruptDelivered) {
  auto sub = c->SubscribeInterrupts({kPf0});
  sub->WaitOpened();
  // Next() blocks: read on a helper thread so the wait is bounded.
  auto next = std::async(std::launch::async, [&] {
    v1::InterruptEvent ev;
    bool got = sub->Next(&ev);
    return std::make_pair(got, ev);
  });
  RaiseMsix(*c);
  if (next.wait_for(10s) != std::future_status::ready) {
    sub->Cancel();
    next.wait();
    FAIL() << "no interrupt event within 10 s";
  }
  auto [got, ev] = next.get();
  ASSERT_TRUE(got) << sub->Finish().error_message();
  EXPECT_EQ(ev.rid(), kPf0);
  EXPECT_EQ(ev.kind(), v1::INTERRUPT_KIND_MSIX);
  EXPECT_EQ(ev.address(), 0xfee00000u);
  EXPECT_EQ(ev.data(), 0x41u);
  EXPECT_EQ(ev.vector(), 0u);
}

uint64_t Pf0Bar0(Client& c) {
  for (auto& f : c.ListFunctions())
    if (f.rid() == kPf0)
      for (auto& b : f.bars())
        if (b.index() == 0) return b.address();
  throw std::runtime_error("PF0 has no BAR0");
}

// The config write, MMIO write (and marker read) the trace tests expect on PF0, with a config
// write to PF1 first that a PF0 filter leaves out.
struct TraceLine {
  v1::TraceKind kind;
  const char* token;
  const char* text;
};
const TraceLine kTraceExpected[] = {
    {v1::TRACE_KIND_CONFIG, "CFG", "W  Command [0x004] = 0x0006: I/O Space 1->0"},
    {v1::TRACE_KIND_MMIO, "MMIO", "W  PF0 BAR0 EIMS = 0x00000001  (was 0x00000000)"},
    {v1::TRACE_KIND_CONFIG, "CFG", "R  Vendor ID [0x000] -> 0x8086"},
};
void DoTracedAccesses(Client& c, uint64_t bar0) {
  c.WriteConfig16(0x0101, 0x04, 0x6);  // another function: filtered out
  c.WriteConfig16(kPf0, 0x04, 0x6);
  c.WriteMmio(bar0 + 0x1524, 4, 1);  // EIMS
  c.ReadConfig16(kPf0, 0);           // the marker: nothing came in between
}

TEST_F(ClientTest, TraceSubscriptionSeesTheFunctionsEventsInOrder) {
  uint64_t bar0 = Pf0Bar0(*c);
  c->timeout = 500ms;  // the unary default deadline: the stream must not inherit it
  auto sub = c->SubscribeTrace({"01:00.0"});
  sub->WaitOpened();
  std::this_thread::sleep_for(1s);
  // Next() blocks: read on a helper thread so the wait is bounded.
  auto reader = std::async(std::launch::async, [&] {
    std::vector<v1::TraceEvent> got;
    v1::TraceEvent ev;
    while (got.size() < 3 && sub->Next(&ev)) got.push_back(ev);
    return got;
  });
  DoTracedAccesses(*c, bar0);
  if (reader.wait_for(10s) != std::future_status::ready) {
    sub->Cancel();
    reader.wait();
    FAIL() << "three trace events not received within 10 s";
  }
  auto got = reader.get();
  ASSERT_EQ(got.size(), 3u) << sub->Finish().error_message();
  for (size_t i = 0; i < 3; i++) {
    EXPECT_EQ(got[i].kind(), kTraceExpected[i].kind) << i;
    EXPECT_EQ(got[i].token(), kTraceExpected[i].token) << i;
    EXPECT_EQ(got[i].text(), kTraceExpected[i].text) << i;
    EXPECT_EQ(got[i].rid(), kPf0) << i;
  }
  EXPECT_LT(got[0].sequence(), got[1].sequence());
  EXPECT_LT(got[1].sequence(), got[2].sequence());
  EXPECT_EQ(got[1].address(), bar0 + 0x1524);
  sub->Cancel();
  EXPECT_TRUE(sub->Finish().ok()) << sub->Finish().error_message();
}

TEST_F(ClientTest, TraceBadKindIsInvalidArgumentNamingTheField) {
  auto bad = c->SubscribeTrace({"01:00.0"}, {"bogus"});
  try {
    bad->WaitOpened();
    ADD_FAILURE() << "kind bogus accepted";
  } catch (const RpcError& e) {
    EXPECT_EQ(e.code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(e.message().rfind("kinds[0]:", 0), 0u) << e.message();
  }
  EXPECT_EQ(c->ReadConfig16(kPf0, 0), 0x8086);
}

// NumVFs written while VF Enable is set (SRIOV.NUMVFS_WHILE_ENABLED): AssertNoViolations throws
// naming the rule; after ClearViolations it returns.
TEST_F(ClientTest, AssertNoViolationsNamesTheRuleAndPassesAfterClear) {
  c->ClearViolations();
  EXPECT_NO_THROW(c->AssertNoViolations());
  // PF0's SR-IOV capability is at 0x160: NumVFs at +0x10, SR-IOV Control at +0x08.
  c->WriteConfig16(kPf0, 0x170, 2);    // NumVFs
  c->WriteConfig16(kPf0, 0x168, 0x9);  // VF Enable | VF MSE
  c->WriteConfig16(kPf0, 0x170, 1);    // NumVFs while VF Enable is set
  try {
    c->AssertNoViolations();
    ADD_FAILURE() << "AssertNoViolations did not throw";
  } catch (const ViolationsError& e) {
    ASSERT_EQ(e.violations().size(), 1u);
    EXPECT_EQ(e.violations()[0].rule().id(), "SRIOV.NUMVFS_WHILE_ENABLED");
    EXPECT_EQ(e.violations()[0].requester(), "01:00.0");
    std::string what = e.what();
    EXPECT_NE(what.find("01:00.0 SRIOV.NUMVFS_WHILE_ENABLED"), std::string::npos) << what;
    EXPECT_NE(what.find("Hint: Clear VF Enable"), std::string::npos) << what;
  }
  EXPECT_EQ(c->GetViolations({"VTD.FAULT"}).violations_size(), 0);
  EXPECT_EQ(c->GetViolations({}, {"01:00.0"}).violations_size(), 1);
  try {
    c->GetViolations({"NO.SUCH_RULE"});
    ADD_FAILURE() << "unknown rule accepted";
  } catch (const RpcError& e) {
    EXPECT_EQ(e.code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(e.message().rfind("rule_ids[0]", 0), 0u) << e.message();
  }
  EXPECT_EQ(c->ClearViolations(), 1u);
  EXPECT_NO_THROW(c->AssertNoViolations());
}

TEST_F(ClientTest, TraceThroughTheCApi) {
  uint64_t bar0 = Pf0Bar0(*c);
  pcieemu_t* emu = pcieemu_connect_token_file(g_tcp.c_str(), g_token_file.c_str());
  ASSERT_NE(emu, nullptr) << pcieemu_last_error();
  EXPECT_EQ(pcieemu_trace_open(emu, "01:00.0", "config,bogus"), nullptr);
  EXPECT_NE(std::string(pcieemu_last_error()).find("kinds[1]"), std::string::npos) << pcieemu_last_error();
  pcieemu_trace_t* tr = pcieemu_trace_open(emu, "01:00.0", "config,mmio");
  ASSERT_NE(tr, nullptr) << pcieemu_last_error();
  auto reader = std::async(std::launch::async, [&] {
    std::vector<std::pair<pcieemu_trace_event_t, std::string>> got;
    pcieemu_trace_event_t ev;
    char text[256];
    while (got.size() < 3 && pcieemu_trace_next(tr, &ev, text, sizeof text) >= 0) got.emplace_back(ev, text);
    return got;
  });
  DoTracedAccesses(*c, bar0);
  if (reader.wait_for(10s) != std::future_status::ready) {
    pcieemu_trace_cancel(tr);
    reader.wait();
    pcieemu_trace_close(tr);
    pcieemu_close(emu);
    FAIL() << "three trace events not received within 10 s";
  }
  auto got = reader.get();
  ASSERT_EQ(got.size(), 3u) << pcieemu_last_error();
  for (size_t i = 0; i < 3; i++) {
    EXPECT_EQ(got[i].first.kind, static_cast<int>(kTraceExpected[i].kind)) << i;
    EXPECT_STREQ(got[i].first.token, kTraceExpected[i].token) << i;
    EXPECT_EQ(got[i].second, kTraceExpected[i].text) << i;
    EXPECT_EQ(got[i].first.rid, kPf0) << i;
  }
  EXPECT_EQ(got[1].first.write, 1);
  EXPECT_EQ(got[1].first.value, 1u);
  // A short buffer gets the text cut and NUL-terminated; the return value is the full length.
  auto next = std::async(std::launch::async, [&] {
    pcieemu_trace_event_t ev;
    char small[4];
    int n = pcieemu_trace_next(tr, &ev, small, sizeof small);
    return std::make_pair(n, std::string(small));
  });
  c->ReadConfig16(kPf0, 0);
  ASSERT_EQ(next.wait_for(10s), std::future_status::ready);
  auto [n, cut] = next.get();
  EXPECT_EQ(n, static_cast<int>(std::strlen(kTraceExpected[2].text)));
  EXPECT_EQ(cut, "R  ");
  // Cancel from another thread ends a blocked next.
  auto blocked = std::async(std::launch::async, [&] {
    pcieemu_trace_event_t ev;
    return pcieemu_trace_next(tr, &ev, nullptr, 0);
  });
  std::this_thread::sleep_for(200ms);
  pcieemu_trace_cancel(tr);
  ASSERT_EQ(blocked.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(blocked.get(), -1);
  pcieemu_trace_close(tr);
  pcieemu_close(emu);
}

TEST_F(ClientTest, ExampleDriver) {
  std::string cmd = std::string("timeout 60 ") + PCIEEMU_DRIVER + " " + g_tcp + " " + g_token_file + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[512];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  EXPECT_EQ(::pclose(p), 0) << out;
  for (const char* want : {"01:00.0 8086:10c9 class 020000", "ARI off: VFs at 02:10.0, 02:10.2\n  02:10.0 class/rev = 0x020000",
                           "ARI on : VFs at 01:10.0, 01:10.2\n  01:10.0 class/rev = 0x020000", "(COMPLETION_STATUS_SUCCESSFUL)",
                           "VF0 -> VF1 loopback: 64-byte frame received intact (RX status 0x3)\n",
                           "VF0 -> wire: 64-byte frame captured on port 0\n"})
    EXPECT_NE(out.find(want), std::string::npos) << "driver output lacks '" << want << "':\n" << out;
}

TEST_F(ClientTest, InvalidArgument) {
  try {
    c->ReadConfig(kPf0, 0, 3);
    ADD_FAILURE() << "width 3 accepted";
  } catch (const RpcError& e) {
    EXPECT_EQ(e.code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(e.message().find("width"), std::string::npos) << e.message();
  }
  try {
    c->ReadConfig(kPf0, 4096, 4);
    ADD_FAILURE() << "offset 4096 accepted";
  } catch (const RpcError& e) {
    EXPECT_EQ(e.code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(e.message().find("offset"), std::string::npos) << e.message();
  }
  EXPECT_EQ(c->ReadConfig16(kPf0, 0), 0x8086);
}

std::string FrameTo(const std::string& dst) {
  std::string f(60, '\0');
  f.replace(0, 6, dst);
  f.replace(6, 6, std::string("\x02\x00\x00\x00\x99\x01", 6));
  f[12] = '\x88';
  f[13] = '\xb5';
  return f;
}

TEST_F(ClientTest, InjectFrameToUnknownMacIsNotAccepted) {
  auto r = c->InjectFrame(0, FrameTo(std::string("\x02\x00\x00\x00\x55\x55", 6)));
  EXPECT_FALSE(r.accepted());
  EXPECT_EQ(r.queues(), 0u);
}

TEST_F(ClientTest, InjectFrameErrorsNameTheField) {
  struct {
    uint32_t port;
    std::string frame, field;
  } cases[] = {{5, FrameTo(std::string("\x02\x00\x00\x00\x00\x01", 6)), "port"}, {0, "\x01\x02", "data"}};
  for (const auto& k : cases) {
    try {
      c->InjectFrame(k.port, k.frame);
      ADD_FAILURE() << "port " << k.port << ", " << k.frame.size() << " bytes accepted";
    } catch (const RpcError& e) {
      EXPECT_EQ(e.code(), grpc::StatusCode::INVALID_ARGUMENT);
      EXPECT_NE(e.message().find(k.field), std::string::npos) << e.message();
    }
  }
}

TEST_F(ClientTest, TranslateAddressAtResetIsDisabled) {
  auto r = c->TranslateAddress(kPf0, 0x12345000, {true, false});
  EXPECT_EQ(r.status(), v1::TRANSLATION_STATUS_TRANSLATION_DISABLED);
  EXPECT_EQ(r.translated_address(), 0x12345000u);
  EXPECT_EQ(r.fault_reason(), 0u);
}

TEST_F(ClientTest, CallTimeoutOverridesTheDeadlinePerCall) {
  EXPECT_EQ(c->timeout, 30s);  // the default of every client
  {
    CallTimeout expired(*c, -1s);  // a deadline already passed
    try {
      c->ReadConfig16(kPf0, 0);
      ADD_FAILURE() << "a call with an expired deadline answered";
    } catch (const RpcError& e) {
      EXPECT_EQ(e.code(), grpc::StatusCode::DEADLINE_EXCEEDED);
    }
    auto other = Client::Connect(g_tcp, 10s, {"", g_token_file});
    EXPECT_EQ(other->ReadConfig16(kPf0, 0), 0x8086);  // another client keeps its own deadline
    {
      CallTimeout inner(*c, 10s);
      EXPECT_EQ(c->ReadConfig16(kPf0, 0), 0x8086);
    }
  }
  EXPECT_EQ(c->ReadConfig16(kPf0, 0), 0x8086);
}

TEST(Health, WaitServingAnswersOnBothTransports) {
  EXPECT_TRUE(WaitServing(g_tcp, 10s, {"", g_token_file}));
  EXPECT_TRUE(WaitServing(g_unix, 10s));
  // Nothing listens there: false once the timeout passed.
  EXPECT_FALSE(WaitServing("unix:///nonexistent/pcieemu-health.sock", 500ms));
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new ServerEnvironment);
  return RUN_ALL_TESTS();
}
