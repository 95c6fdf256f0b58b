// PcieEmu's side of `make bench-peer` (tests/bench-peer/run.sh): one workload per run, one access
// at a time, printing the same RESULT line as tests/bench-peer/peer.c:
//   RESULT <p50 us> <p99 us> <ops/s> <client CPU us/op>
// Usage: pcieemu_peer_bench TARGET MODE N
//   unary        ConfigService.ReadConfig, 4 bytes of PF0's config, one call at a time
//   transact     SessionService.Transact ping-pong: one config read per message, wait, repeat
//   transact-1t  the same ping-pong on the raw gRPC stream from one thread (Write, then Read): the
//                server's side without the Session API's receiver thread (a diagnostic row)
//   ring-read    shared-memory ring: config read round trip
//   ring-write   shared-memory ring: N posted (unbatched) 4-byte RAM writes, then one read as a fence
//   ring-idle    opens a ring, makes one read, then holds it open and idle for N ms (the caller
//                measures the server's CPU meanwhile); prints a RESULT line of zeros
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "pcieemu/pcieemu.hpp"

namespace {
double CpuMicros() {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  return (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e6 + r.ru_utime.tv_usec + r.ru_stime.tv_usec;
}

// `finish` runs inside the timed span after the last op (a fence for posted writes).
template <typename F>
void Measure(int n, F op, const std::function<void()>& finish = nullptr) {
  using clk = std::chrono::steady_clock;
  for (int i = 0; i < n / 10 + 1; i++) op(i);  // warm-up
  std::vector<double> lat(n);
  double cpu0 = CpuMicros();
  auto start = clk::now();
  for (int i = 0; i < n; i++) {
    auto s = clk::now();
    op(i);
    lat[i] = std::chrono::duration<double, std::micro>(clk::now() - s).count();
  }
  if (finish) finish();
  double secs = std::chrono::duration<double>(clk::now() - start).count();
  double cpu = CpuMicros() - cpu0;
  std::sort(lat.begin(), lat.end());
  std::printf("RESULT %.2f %.2f %.0f %.2f\n", lat[n / 2], lat[static_cast<size_t>(n * 0.99)], n / secs, cpu / n);
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: pcieemu_peer_bench TARGET unary|transact|transact-1t|ring-read|ring-write|ring-idle N\n");
    return 2;
  }
  std::string mode = argv[2];
  int n = std::stoi(argv[3]);
  constexpr uint32_t kPf0 = 0x100;
  try {
    auto c = pcieemu::Client::Connect(argv[1]);
    // Ring wait tuning for experiments: BENCH_RING_SERVER_SPIN_US (the server's poll before it
    // sleeps; 0 = its default) and BENCH_RING_CLIENT_SPIN_US (ours; default 20).
    pcieemu::v1::OpenRingRequest ring_request;
    if (const char* v = std::getenv("BENCH_RING_SERVER_SPIN_US")) ring_request.set_spin_microseconds(std::stoul(v));
    auto open_ring = [&] {
      auto r = c->OpenRing(ring_request);
      if (const char* v = std::getenv("BENCH_RING_CLIENT_SPIN_US")) r->client_spin = std::chrono::microseconds(std::stoi(v));
      return r;
    };
    if (mode == "unary") {
      Measure(n, [&](int) {
        if (c->ReadConfig(kPf0, 0, 4).value != 0x10C98086u) throw std::runtime_error("unexpected ID");
      });
    } else if (mode == "transact") {
      auto s = c->OpenSession();
      Measure(n, [&](int) {
        auto f = s->ConfigRead(kPf0, 0, 4);
        if (s->Wait(f).value != 0x10C98086u) throw std::runtime_error("unexpected ID");
      });
      s->Close();
    } else if (mode == "transact-1t") {
      // TARGET is unix:///path here (bench-peer's servers); the Session API's receiver thread is left out.
      auto channel = grpc::CreateChannel(std::string(argv[1]), grpc::InsecureChannelCredentials());
      auto stub = pcieemu::v1::SessionService::NewStub(channel);
      grpc::ClientContext ctx;
      auto stream = stub->Transact(&ctx);
      pcieemu::v1::TransactRequest req;
      auto* read = req.mutable_config_read();
      read->set_rid(kPf0);
      read->set_offset(0);
      read->set_width(4);
      pcieemu::v1::TransactResponse resp;
      uint64_t tag = 0;
      Measure(n, [&](int) {
        req.set_tag(++tag);
        if (!stream->Write(req) || !stream->Read(&resp) || resp.tag() != tag || resp.value() != 0x10C98086u)
          throw std::runtime_error("Transact ping-pong failed");
      });
      stream->WritesDone();
      stream->Finish();
    } else if (mode == "ring-read") {
      auto r = open_ring();
      Measure(n, [&](int) {
        if (r->ConfigRead(kPf0, 0, 4).value != 0x10C98086u) throw std::runtime_error("unexpected ID");
      });
    } else if (mode == "ring-write") {
      auto r = open_ring();
      uint64_t ram = c->GetPlatform().ram_regions(0).base() + 0x100000;
      // Ops/s counts the fence too: every write has executed when the read returns.
      Measure(n, [&](int i) { r->MmioWrite(ram + (i & 1023) * 4, 4, static_cast<uint32_t>(i)); }, [&] {
        if (r->MmioRead(ram, 4).status != pcieemu::v1::COMPLETION_STATUS_SUCCESSFUL) throw std::runtime_error("fence failed");
      });
      if (!r->PostedErrors().empty()) throw std::runtime_error("a posted write failed");
    } else if (mode == "ring-idle") {
      auto r = open_ring();
      r->ConfigRead(kPf0, 0, 4);
      std::printf("READY\n");
      std::fflush(stdout);
      std::this_thread::sleep_for(std::chrono::milliseconds(n));
      std::printf("RESULT 0 0 0 0\n");
    } else {
      std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
      return 2;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pcieemu_peer_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
