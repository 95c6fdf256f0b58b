// The virtio-net example driver (examples/virtio_net.cpp) against a server started here with
// docs/machines/virtio-net.json (an 82576 and a virtio-net device), and against the default
// machine (no virtio-net device: it fails saying what to do).
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "test_server.h"

extern std::string g_tcp, g_token_file;

namespace {

// Runs the example with target and token file; returns its exit status and output.
std::pair<int, std::string> RunExample(const std::string& target, const std::string& token_file) {
  std::string cmd = std::string("timeout 60 ") + PCIEEMU_VIRTIO_NET + " " + target + " " + token_file + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return {-1, "popen failed"};
  std::string out;
  char buf[512];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  return {::pclose(p), out};
}

TEST(VirtioNet, ExampleDriverSendsAndReceivesAFrame) {
  pcieemu_test::TestServer server;
  ASSERT_TRUE(server.Start({"--machine", std::string(PCIEEMU_REPO_ROOT) + "/docs/machines/virtio-net.json"})) << server.error;
  auto [status, out] = RunExample(server.tcp, server.token_file);
  EXPECT_EQ(status, 0) << out;
  for (const char* want : {"virtio-net 03:00.0 (1af4:1041) on Ethernet port 2\n",
                           "features 0x100000020 accepted (FEATURES_OK); mac 02:00:00:00:77:01\n",
                           "DRIVER_OK: device_status 0xf,",
                           "TX: used len 0, CaptureFrames saw 60 bytes on port 2, identical\n",
                           "RX: InjectFrame accepted=true, received 60 bytes, identical\n"})
    EXPECT_NE(out.find(want), std::string::npos) << "virtio_net output lacks '" << want << "':\n" << out;
}

TEST(VirtioNet, ExampleDriverWithoutTheDeviceSaysWhatToDo) {
  if (g_token_file.empty()) GTEST_SKIP() << "the test server's token file is unknown (PCIEEMU_TEST_TOKEN_FILE)";
  auto [status, out] = RunExample(g_tcp, g_token_file);
  EXPECT_NE(status, 0) << out;
  EXPECT_NE(out.find("no virtio-net function (1af4:1041)"), std::string::npos) << out;
  EXPECT_NE(out.find("--machine"), std::string::npos) << out;
}

}  // namespace
