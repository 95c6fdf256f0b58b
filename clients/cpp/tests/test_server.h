// A `pcie-emu serve` the tests start: a free TCP port, a Unix socket and a token file in a
// temporary directory, extra arguments (e.g. --machine FILE); Stop() ends it (SIGTERM, then
// SIGKILL after 5 s) and removes the directory.
#ifndef PCIEEMU_TESTS_TEST_SERVER_H
#define PCIEEMU_TESTS_TEST_SERVER_H
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "pcieemu/pcieemu.hpp"

namespace pcieemu_test {

inline int FreePort() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

// $PCIEEMU_SERVER_DLL, else the Release build under PCIEEMU_REPO_ROOT; empty when not built.
inline std::string ServerDll() {
  if (const char* d = std::getenv("PCIEEMU_SERVER_DLL")) return d;
  std::filesystem::path dir = std::filesystem::path(PCIEEMU_REPO_ROOT) / "src/PcieEmu.Server/bin/Release/net10.0";
  for (const char* n : {"pcie-emu.dll", "PcieEmu.Server.dll"})
    if (std::filesystem::exists(dir / n)) return (dir / n).string();
  return "";
}

class TestServer {
 public:
  std::string tcp, unix_target, token_file, error;

  // Starts the server and waits up to 60 s for SERVING; false (with `error` set) when it did not.
  bool Start(const std::vector<std::string>& extra = {}) {
    std::string dll = ServerDll();
    if (dll.empty()) {
      error = "server not built: run 'dotnet build src/PcieEmu.Server -c Release'";
      return false;
    }
    char tmpl[] = "/tmp/pcieemu-cpp-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) {
      error = "mkdtemp failed";
      return false;
    }
    dir_ = tmpl;
    tcp = "tcp://127.0.0.1:" + std::to_string(FreePort());
    unix_target = "unix://" + dir_ + "/pcie-emu.sock";
    token_file = dir_ + "/token";
    std::string ram = dir_ + "/ram.bin";
    std::vector<std::string> args = {"dotnet", dll, "serve", "--listen", tcp, "--listen", unix_target,
                                     "--token-file", token_file, "--ram-file", ram};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) {
      error = "fork failed";
      return false;
    }
    if (pid_ == 0) {
      ::execvp("dotnet", argv.data());
      std::perror("exec dotnet");
      ::_exit(127);
    }
    if (!pcieemu::WaitServing(tcp, std::chrono::seconds(60), {"", token_file})) {
      error = "server at " + tcp + " not SERVING";
      return false;
    }
    return true;
  }

  void Stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int st;
      for (int i = 0; i < 50 && ::waitpid(pid_, &st, WNOHANG) == 0; i++)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (::waitpid(pid_, &st, WNOHANG) == 0) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &st, 0);
      }
      pid_ = -1;
    }
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
    dir_.clear();
  }

  ~TestServer() { Stop(); }

 private:
  pid_t pid_ = -1;
  std::string dir_;
};

}  // namespace pcieemu_test
#endif
