// Measures the ReadConfig round trip (p50/p99) and pipelined Session throughput.
// Usage: bench [target] [unaryCount] [sessionCount]
// On TCP the token comes from $PCIEEMU_TOKEN, else the server's default token file.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "pcieemu/pcieemu.hpp"

int main(int argc, char** argv) {
  using clk = std::chrono::steady_clock;
  try {
    auto c = pcieemu::Client::Connect(argc > 1 ? argv[1] : "");
    int unary = argc > 2 ? std::stoi(argv[2]) : 5000, pipelined = argc > 3 ? std::stoi(argv[3]) : 200000;
    for (int i = 0; i < 500; i++) c->ReadConfig(0x100, 0, 4);  // warm-up
    std::vector<double> t;
    for (int i = 0; i < unary; i++) {
      auto s = clk::now();
      c->ReadConfig(0x100, 0, 4);
      t.push_back(std::chrono::duration<double, std::micro>(clk::now() - s).count());
    }
    std::sort(t.begin(), t.end());
    auto s = c->OpenSession();
    const int window = 4096;
    auto start = clk::now();
    std::vector<std::future<pcieemu::Completion>> fs;
    for (int done = 0; done < pipelined; done += window) {
      fs.clear();
      for (int i = 0; i < window; i++) fs.push_back(s->ConfigRead(0x100, 0, 4));
      s->Flush();
      for (auto& f : fs) f.get();
    }
    double secs = std::chrono::duration<double>(clk::now() - start).count();
    s->Close();
    std::printf("| client | ReadConfig p50 (us) | p99 (us) | Session reads/s |\n| --- | --- | --- | --- |\n");
    std::printf("| cpp | %.0f | %.0f | %.0f |\n", t[t.size() / 2], t[t.size() * 99 / 100], pipelined / secs);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
