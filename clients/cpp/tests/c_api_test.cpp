// The C API's failing pcieemu_connect frees what it allocated (run under LeakSanitizer), and the
// installed client works from consumer projects outside the tree (find_package and pkg-config),
// and a parent project can add_subdirectory the client without target clashes.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <string>
#include <sys/wait.h>

extern std::string g_tcp, g_token_file;

namespace {

struct Run {
  int status;
  std::string output;
};

// Runs a shell command, its stdout and stderr captured; the exit status (-1: killed).
Run Shell(const std::string& command) {
  Run r{-1, ""};
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

std::string Quote(const std::string& s) { return "'" + s + "'"; }

}  // namespace

TEST(CApi, LeakCheckerSeesALeak) {
  // The checker itself must fail on a leak, or the next test could not fail.
  auto r = Shell("timeout 120 " + Quote(PCIEEMU_LEAK_CHECK) + " --leak");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("LeakSanitizer"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("4242 byte"), std::string::npos) << r.output;
}

TEST(CApi, FailedConnectLeaksNothing) {
  auto r = Shell("timeout 120 " + Quote(PCIEEMU_LEAK_CHECK));
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("4 failed connects, no handle"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("LeakSanitizer"), std::string::npos) << r.output;
}

class ConsumerProject : public ::testing::TestWithParam<const char*> {};

TEST_P(ConsumerProject, InstalledClientTalksToTheServer) {
  std::string mode = GetParam();
  char tmpl[] = "/tmp/pcieemu-consumer-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string work = std::string(tmpl) + "/" + mode;
  auto r = Shell("timeout 300 bash " + Quote(std::string(PCIEEMU_SOURCE_DIR) + "/tests/consumer.sh") + " " + mode + " " +
                 Quote(PCIEEMU_BINARY_DIR) + " " + Quote(work) + " " + Quote(g_tcp) + " " + Quote(g_token_file));
  EXPECT_EQ(r.status, 0) << r.output;
  const char* want = mode == "add-subdirectory" ? "add_subdirectory: configured, pcieemu::pcieemu linked, no tests or examples"
                                                 : "01:00.0 id 10c98086, C API 10c98086 status 1";
  EXPECT_NE(r.output.find(want), std::string::npos) << r.output;
  if (r.status == 0) Shell("rm -rf " + Quote(tmpl));
}

INSTANTIATE_TEST_SUITE_P(Install, ConsumerProject, ::testing::Values("cmake", "pkg-config", "add-subdirectory"),
                         [](const auto& info) {
                           std::string p = info.param;
                           return p == "cmake" ? "FindPackage" : p == "pkg-config" ? "PkgConfig" : "AddSubdirectory";
                         });
