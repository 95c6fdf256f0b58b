// TCP authentication: the server's per-start token ("authorization: Bearer"), found by the client
// in ConnectOptions (token, token_file), $PCIEEMU_TOKEN or the default token file; the Unix socket
// needs none. Uses the server started by client_test.cpp.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "pcieemu/pcieemu.h"
#include "pcieemu/pcieemu.hpp"

extern std::string g_tcp, g_unix, g_token_file;

namespace {
namespace fs = std::filesystem;
using namespace pcieemu;
using namespace std::chrono_literals;
constexpr uint32_t kPf0 = 0x0100;

std::string ReadToken() {
  std::ifstream f(g_token_file);
  std::string t;
  f >> t;
  return t;
}

// No $PCIEEMU_TOKEN and a runtime directory without a token file while the test runs.
class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (g_token_file.empty()) GTEST_SKIP() << "the test server's token file is unknown (PCIEEMU_TEST_TOKEN_FILE)";
    char tmpl[] = "/tmp/pcieemu-auth-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    Save("XDG_RUNTIME_DIR", saved_xdg_, had_xdg_);
    Save(kTokenVariable, saved_token_, had_token_);
    ::setenv("XDG_RUNTIME_DIR", dir_.c_str(), 1);
    ::unsetenv(kTokenVariable);
  }
  void TearDown() override {
    if (dir_.empty()) return;
    Restore("XDG_RUNTIME_DIR", saved_xdg_, had_xdg_);
    Restore(kTokenVariable, saved_token_, had_token_);
    fs::remove_all(dir_);
  }
  static void Save(const char* name, std::string& value, bool& had) {
    const char* v = std::getenv(name);
    had = v != nullptr;
    value = v ? v : "";
  }
  static void Restore(const char* name, const std::string& value, bool had) {
    if (had) ::setenv(name, value.c_str(), 1); else ::unsetenv(name);
  }
  std::string dir_, saved_xdg_, saved_token_;
  bool had_xdg_ = false, had_token_ = false;
};

TEST_F(AuthTest, TokenFileIsPrivate) {
  struct stat st {};
  ASSERT_EQ(::stat(g_token_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(ReadToken().size(), 64u);
}

TEST_F(AuthTest, TcpWithoutTokenIsUnauthenticatedAndHasNoEffect) {
  EXPECT_EQ(ResolveToken(), "");
  auto bare = Client::Connect(g_tcp);
  EXPECT_FALSE(bare->has_token());
  try {
    bare->ReadConfig32(kPf0, 0);
    FAIL() << "a TCP call without a token was answered";
  } catch (const RpcError& e) {
    EXPECT_EQ(e.code(), grpc::StatusCode::UNAUTHENTICATED) << e.what();
  }
  auto good = Client::Connect(g_tcp, 10s, {"", g_token_file});
  uint8_t before = good->ReadConfig8(kPf0, 0x3c);
  auto wrong = Client::Connect(g_tcp, 10s, {std::string(64, '0'), ""});
  try {
    wrong->WriteConfig8(kPf0, 0x3c, static_cast<uint8_t>(before ^ 0xff));
    FAIL() << "a TCP write with a wrong token was answered";
  } catch (const RpcError& e) {
    EXPECT_EQ(e.code(), grpc::StatusCode::UNAUTHENTICATED) << e.what();
  }
  EXPECT_EQ(good->ReadConfig8(kPf0, 0x3c), before);
  // The C API without a token: connected, but every call is refused.
  pcieemu_t* emu = pcieemu_connect(g_tcp.c_str());
  ASSERT_NE(emu, nullptr) << pcieemu_last_error();
  uint32_t v = 0;
  EXPECT_EQ(pcieemu_cfg_read(emu, kPf0, 0, 4, &v), -1);
  EXPECT_NE(std::string(pcieemu_last_error()).find("token"), std::string::npos) << pcieemu_last_error();
  pcieemu_close(emu);
}

TEST_F(AuthTest, TcpWithTokenWorksForCallsAndStreams) {
  for (const ConnectOptions& o : {ConnectOptions{ReadToken(), ""}, ConnectOptions{"", g_token_file}}) {
    auto c = Client::Connect(g_tcp, 10s, o);
    EXPECT_TRUE(c->has_token());
    EXPECT_EQ(c->ReadConfig32(kPf0, 0), 0x10c98086u);
    auto s = c->OpenSession();
    auto f = s->ConfigRead(kPf0, 0, 4);
    s->Flush();
    ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
    EXPECT_EQ(f.get().value, 0x10c98086u);
    s->Close();
  }
  pcieemu_t* emu = pcieemu_connect_token_file(g_tcp.c_str(), g_token_file.c_str());
  ASSERT_NE(emu, nullptr) << pcieemu_last_error();
  uint32_t v = 0;
  EXPECT_EQ(pcieemu_cfg_read(emu, kPf0, 0, 4, &v), PCIEEMU_STATUS_SUCCESSFUL);
  EXPECT_EQ(v, 0x10c98086u);
  pcieemu_close(emu);
  EXPECT_EQ(pcieemu_connect_token_file(g_tcp.c_str(), "/nonexistent/token"), nullptr);
  EXPECT_NE(std::string(pcieemu_last_error()).find("token file"), std::string::npos);
}

TEST_F(AuthTest, TokenFromEnvironmentAndDefaultFile) {
  std::string token = ReadToken();
  ::setenv(kTokenVariable, token.c_str(), 1);
  EXPECT_EQ(Client::Connect(g_tcp)->ReadConfig32(kPf0, 0), 0x10c98086u);
  ::unsetenv(kTokenVariable);
  fs::create_directory(dir_ + "/pcie-emu");
  EXPECT_EQ(DefaultTokenPath(), dir_ + "/pcie-emu/token");
  std::ofstream(DefaultTokenPath()) << token << "\n";
  EXPECT_EQ(Client::Connect(g_tcp)->ReadConfig32(kPf0, 0), 0x10c98086u);
}

TEST_F(AuthTest, UnixSocketNeedsNoToken) {
  if (g_unix.empty()) GTEST_SKIP() << "no Unix socket target";
  auto u = Client::Connect(g_unix);
  EXPECT_FALSE(u->has_token());
  EXPECT_EQ(u->ReadConfig32(kPf0, 0), 0x10c98086u);
}

}  // namespace
