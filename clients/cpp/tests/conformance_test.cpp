// The core subset of the language-neutral conformance suite (tests/Conformance/cases/*.json), run
// through this client's API: every case whose steps use only platform, config, MMIO and memory
// operations and waits (the Session, interrupt, Ethernet and IOMMU cases run in the C# and Python
// runners). One parameterized test per case; a failure names the step and the reason. The
// virtio-net suite (tests/Conformance/virtio-net/cases) runs the same way against a server started
// here with its machine.
#include <gtest/gtest.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <thread>
#include <variant>

#include "pcieemu/pcieemu.hpp"
#include "test_server.h"

extern std::string g_tcp, g_unix, g_token_file;

namespace {

namespace fs = std::filesystem;
namespace gp = google::protobuf;
using namespace pcieemu;

struct ConfCase {
  std::string name, spec, test_name;
  std::vector<gp::Value> steps;
};

// gtest prints a failing parameter with this: the case name, not its bytes.
void PrintTo(const ConfCase& c, std::ostream* os) { *os << c.name; }

struct CaseFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

const std::set<std::string> kCoreOps = {"reset", "get_platform", "list_functions", "read_config", "write_config",
                                        "read_mmio", "write_mmio", "read_memory", "write_memory", "wait"};
constexpr uint64_t kMaxWaitMs = 10000;  // the longest pause a "wait" step may ask for

fs::path CasesDir() {
  if (const char* d = std::getenv("PCIEEMU_CONFORMANCE_CASES")) return d;
  return fs::path(PCIEEMU_REPO_ROOT) / "tests/Conformance/cases";
}

const gp::Value* Get(const gp::Value& v, const std::string& key) {
  if (!v.has_struct_value()) return nullptr;
  auto& f = v.struct_value().fields();
  auto it = f.find(key);
  return it == f.end() ? nullptr : &it->second;
}

fs::path VirtioCasesDir() { return fs::path(PCIEEMU_REPO_ROOT) / "tests/Conformance/virtio-net/cases"; }

std::vector<ConfCase> LoadCoreCases(const fs::path& dir) {
  std::vector<ConfCase> out;
  std::vector<fs::path> files;
  if (fs::is_directory(dir))
    for (auto& e : fs::directory_iterator(dir))
      if (e.path().extension() == ".json") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::set<std::string> names;
  for (auto& f : files) {
    std::ifstream in(f);
    std::stringstream ss;
    ss << in.rdbuf();
    gp::Value doc;
    if (!gp::util::JsonStringToMessage(ss.str(), &doc).ok()) continue;  // reported by the count check
    const gp::Value* cases = Get(doc, "cases");
    if (!cases) continue;
    for (auto& c : cases->list_value().values()) {
      ConfCase k;
      k.name = Get(c, "name") ? Get(c, "name")->string_value() : "";
      k.spec = Get(c, "spec") ? Get(c, "spec")->string_value() : "";
      bool core = Get(c, "steps") != nullptr;
      if (core)
        for (auto& s : Get(c, "steps")->list_value().values()) {
          k.steps.push_back(s);
          if (!Get(s, "op") || !kCoreOps.count(Get(s, "op")->string_value()) || Get(s, "while")) core = false;
        }
      if (!core) continue;
      for (char ch : k.name) k.test_name += std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
      while (names.count(k.test_name)) k.test_name += "_";
      names.insert(k.test_name);
      out.push_back(std::move(k));
    }
  }
  return out;
}

const std::vector<ConfCase>& CoreCases() {
  static const std::vector<ConfCase> cases = LoadCoreCases(CasesDir());
  return cases;
}

// The virtio-net suite's core cases; none when PCIEEMU_CONFORMANCE_CASES points the Core tests at a directory.
const std::vector<ConfCase>& VirtioCoreCases() {
  static const std::vector<ConfCase> cases =
      std::getenv("PCIEEMU_CONFORMANCE_CASES") ? std::vector<ConfCase>{} : LoadCoreCases(VirtioCasesDir());
  return cases;
}

std::string Hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

const char* CodeName(grpc::StatusCode c) {
  static const char* names[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
                                "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
                                "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
                                "UNAUTHENTICATED"};
  int i = static_cast<int>(c);
  return i >= 0 && i < 17 ? names[i] : "?";
}

using Field = std::variant<uint64_t, bool, std::string>;

class Runner {
 public:
  explicit Runner(Client& c) : c_(c) {}

  void Run(const ConfCase& k) {
    env_.clear();
    c_.ResetPlatform();
    for (size_t i = 0; i < k.steps.size(); i++) {
      const auto& s = k.steps[i];
      try {
        Step(s);
      } catch (const std::exception& e) {
        throw CaseFailure(k.name + " [" + k.spec + "]: step " + std::to_string(i + 1) + " (" + Str(s, "op") + "): " + e.what());
      }
    }
  }

 private:
  static std::string Str(const gp::Value& s, const std::string& k) {
    auto* v = Get(s, k);
    return v ? v->string_value() : "";
  }

  uint64_t Eval(const gp::Value& v) {
    if (v.has_bool_value()) return v.bool_value();
    if (v.has_number_value()) return static_cast<uint64_t>(v.number_value());
    if (!v.has_string_value()) throw CaseFailure("bad case data: expected a number");
    static const std::regex bdf("^[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\\.[0-7]$");
    std::string text = v.string_value();
    text.erase(std::remove(text.begin(), text.end(), ' '), text.end());
    uint64_t total = 0;
    std::stringstream ss(text);
    for (std::string term; std::getline(ss, term, '+');) {
      if (!term.empty() && term[0] == '$') {
        auto it = env_.find(term.substr(1));
        if (it == env_.end()) throw CaseFailure("bad case data: variable " + term + " is not set by an earlier step");
        total += it->second;
      } else if (std::regex_match(term, bdf)) {
        total += ParseBdf(term);
      } else {
        size_t used = 0;
        uint64_t n = std::stoull(term, &used, 0);
        if (used != term.size()) throw CaseFailure("bad case data: cannot read '" + term + "' as a number");
        total += n;
      }
    }
    return total;
  }
  uint64_t Num(const gp::Value& s, const std::string& k) {
    auto* v = Get(s, k);
    if (!v) throw CaseFailure("bad case data: missing '" + k + "'");
    return Eval(*v);
  }
  static const gp::Value& Expect(const gp::Value& s) {
    static const gp::Value empty;
    auto* e = Get(s, "expect");
    return e ? *e : empty;
  }

  // Runs fn; returns false when the step expected (and got) a gRPC error.
  template <typename F>
  bool Call(const gp::Value& s, F&& fn) {
    const gp::Value* want = Get(Expect(s), "error");
    try {
      fn();
    } catch (const RpcError& e) {
      if (!want) throw CaseFailure(std::string("unexpected gRPC error ") + CodeName(e.code()) + ": " + e.message());
      if (Str(*want, "code") != CodeName(e.code()))
        throw CaseFailure(std::string("gRPC error ") + CodeName(e.code()) + " (" + e.message() + "), expected " + Str(*want, "code"));
      std::string needle = Str(*want, "message_contains"), msg = e.message();
      auto lower = [](std::string x) { std::transform(x.begin(), x.end(), x.begin(), ::tolower); return x; };
      if (!needle.empty() && lower(msg).find(lower(needle)) == std::string::npos)
        throw CaseFailure("error message '" + msg + "' does not name '" + needle + "'");
      return false;
    }
    if (want) throw CaseFailure("expected gRPC error " + Str(*want, "code") + ", the call succeeded");
    return true;
  }

  void CheckStatus(const std::string& what, Status actual, const gp::Value& s) {
    std::string want = Str(Expect(s), "status");
    if (want.empty()) want = "SUCCESSFUL";
    std::string full = want.rfind("COMPLETION_STATUS_", 0) == 0 ? want : "COMPLETION_STATUS_" + want;
    Status w;
    if (!v1::CompletionStatus_Parse(full, &w)) throw CaseFailure("bad case data: unknown status " + want);
    if (actual != w) throw CaseFailure(what + ": status " + v1::CompletionStatus_Name(actual) + ", expected " + want);
  }
  void CheckValue(const std::string& what, uint64_t actual, const gp::Value& s) {
    auto* want = Get(Expect(s), "value");
    if (!want) return;
    auto* m = Get(Expect(s), "mask");
    uint64_t mask = m ? Eval(*m) : ~0ull, w = Eval(*want);
    if ((actual & mask) != (w & mask))
      throw CaseFailure(what + ": value " + Hex(actual & mask) + ", expected " + Hex(w & mask) + "; raw " + Hex(actual));
  }
  void Save(const gp::Value& s, uint64_t v) {
    auto* name = Get(s, "save");
    if (!name) return;
    auto* m = Get(s, "save_mask");
    env_[name->string_value()] = v & (m ? Eval(*m) : ~0ull);
  }
  void Compare(const std::string& path, const Field& actual, const gp::Value& want) {
    if (want.has_bool_value() || std::holds_alternative<bool>(actual)) {
      if (!std::holds_alternative<bool>(actual) || std::get<bool>(actual) != want.bool_value())
        throw CaseFailure(path + ": expected " + (want.bool_value() ? "true" : "false"));
    } else if (std::holds_alternative<std::string>(actual)) {
      if (std::get<std::string>(actual) != want.string_value())
        throw CaseFailure(path + ": '" + std::get<std::string>(actual) + "', expected '" + want.string_value() + "'");
    } else if (std::get<uint64_t>(actual) != Eval(want)) {
      throw CaseFailure(path + ": " + Hex(std::get<uint64_t>(actual)) + ", expected " + Hex(Eval(want)));
    }
  }

  // A field of a message by proto name (index for repeated fields), via reflection.
  static Field Scalar(const gp::Message& m, const gp::FieldDescriptor* f, int index) {
    auto* r = m.GetReflection();
    using T = gp::FieldDescriptor;
    bool rep = f->is_repeated();
    switch (f->cpp_type()) {
      case T::CPPTYPE_UINT32: return uint64_t{rep ? r->GetRepeatedUInt32(m, f, index) : r->GetUInt32(m, f)};
      case T::CPPTYPE_UINT64: return uint64_t{rep ? r->GetRepeatedUInt64(m, f, index) : r->GetUInt64(m, f)};
      case T::CPPTYPE_INT32: return static_cast<uint64_t>(rep ? r->GetRepeatedInt32(m, f, index) : r->GetInt32(m, f));
      case T::CPPTYPE_INT64: return static_cast<uint64_t>(rep ? r->GetRepeatedInt64(m, f, index) : r->GetInt64(m, f));
      case T::CPPTYPE_BOOL: return rep ? r->GetRepeatedBool(m, f, index) : r->GetBool(m, f);
      case T::CPPTYPE_STRING: return rep ? r->GetRepeatedString(m, f, index) : r->GetString(m, f);
      case T::CPPTYPE_ENUM: return (rep ? r->GetRepeatedEnum(m, f, index) : r->GetEnum(m, f))->name();
      default: throw CaseFailure(f->name() + ": cannot compare a message");
    }
  }
  static Field Path(const gp::Message& root, const std::string& path) {
    const gp::Message* m = &root;
    std::vector<std::string> parts;
    std::stringstream ss(path);
    for (std::string p; std::getline(ss, p, '.');) parts.push_back(p);
    for (size_t i = 0; i < parts.size(); i++) {
      const gp::FieldDescriptor* f = m->GetDescriptor()->FindFieldByName(parts[i]);
      if (!f) throw CaseFailure(path + ": no field '" + parts[i] + "'");
      int index = -1;
      if (f->is_repeated()) {
        if (i + 1 >= parts.size()) throw CaseFailure(path + ": a repeated field needs an index");
        index = std::stoi(parts[++i]);
        if (index >= m->GetReflection()->FieldSize(*m, f))
          throw CaseFailure(path + ": index " + std::to_string(index) + " out of range");
      }
      if (f->cpp_type() == gp::FieldDescriptor::CPPTYPE_MESSAGE) {
        m = index >= 0 ? &m->GetReflection()->GetRepeatedMessage(*m, f, index) : &m->GetReflection()->GetMessage(*m, f);
        continue;
      }
      if (i + 1 != parts.size()) throw CaseFailure(path + ": '" + parts[i] + "' is not a message");
      return Scalar(*m, f, index);
    }
    throw CaseFailure(path + ": names a message, not a field");
  }

  void Step(const gp::Value& s) {
    const std::string op = Str(s, "op");
    const gp::Value& x = Expect(s);
    if (op == "reset") {
      uint32_t n = 0;
      if (!Call(s, [&] { n = c_.ResetPlatform(); })) return;
      if (auto* want = Get(x, "functions")) Compare("functions", uint64_t{n}, *want);
    } else if (op == "get_platform") {
      v1::GetPlatformResponse p;
      if (!Call(s, [&] { p = c_.GetPlatform(); })) return;
      if (auto* fields = Get(x, "fields"))
        for (auto& [path, want] : fields->struct_value().fields()) Compare(path, Path(p, path), want);
    } else if (op == "list_functions") {
      std::vector<v1::Function> fns;
      if (!Call(s, [&] { fns = c_.ListFunctions(); })) return;
      std::map<uint64_t, const v1::Function*> by;
      std::string got;
      for (auto& f : fns) {
        by[f.rid()] = &f;
        got += (got.empty() ? "" : ", ") + FormatBdf(static_cast<uint32_t>(f.rid()));
      }
      if (auto* rids = Get(x, "rids")) {
        std::string want;
        for (auto& r : rids->list_value().values()) want += (want.empty() ? "" : ", ") + FormatBdf(static_cast<uint32_t>(Eval(r)));
        if (got != want) throw CaseFailure("functions " + got + "; expected " + want);
      }
      if (auto* funcs = Get(x, "functions"))
        for (auto& [ridText, fv] : funcs->struct_value().fields()) {
          gp::Value rv;
          rv.set_string_value(ridText);
          uint64_t rid = Eval(rv);
          std::string name = FormatBdf(static_cast<uint32_t>(rid));
          auto it = by.find(rid);
          if (it == by.end()) throw CaseFailure("function " + name + " is not listed");
          const v1::Function& f = *it->second;
          for (auto& [key, want] : fv.struct_value().fields()) {
            if (key == "bars") {
              for (auto& [idx, bf] : want.struct_value().fields()) {
                const v1::Bar* bar = nullptr;
                for (auto& b : f.bars())
                  if (std::to_string(b.index()) == idx) bar = &b;
                if (!bar) throw CaseFailure(name + ": BAR " + idx + " not listed");
                for (auto& [bk, bv] : bf.struct_value().fields()) Compare(name + " bars[" + idx + "]." + bk, Path(*bar, bk), bv);
              }
            } else if (key == "bar_count") {
              Compare(name + " bar count", uint64_t(f.bars_size()), want);
            } else {
              Compare(name + "." + key, Path(f, key), want);
            }
          }
        }
      if (auto* absent = Get(x, "absent"))
        for (auto& r : absent->list_value().values())
          if (by.count(Eval(r))) throw CaseFailure("function " + FormatBdf(static_cast<uint32_t>(Eval(r))) + " is listed but should not be");
    } else if (op == "read_config" || op == "write_config") {
      uint64_t rid = Num(s, "rid"), off = Num(s, "offset"), w = Num(s, "width");
      std::string what = op.substr(0, op.size() - 7) + " config " + FormatBdf(static_cast<uint32_t>(rid)) + " +" + Hex(off) + "/" + std::to_string(w);
      // The client's rid is 16 bits: a case that sends a wider one goes through the raw stub.
      if (op == "read_config") {
        ConfigRead r{};
        if (!Call(s, [&] { r = RawReadConfig(rid, off, w); })) return;
        CheckStatus(what, r.status, s);
        CheckValue(what, r.value, s);
        Save(s, r.value);
      } else {
        uint64_t v = Num(s, "value");
        Status st{};
        if (!Call(s, [&] { st = RawWriteConfig(rid, off, w, v); })) return;
        CheckStatus(what, st, s);
      }
    } else if (op == "read_mmio") {
      uint64_t a = Num(s, "address"), w = Num(s, "width");
      MmioRead r{};
      if (!Call(s, [&] { r = c_.ReadMmio(a, static_cast<int>(w)); })) return;
      std::string what = "mmio read " + Hex(a) + "/" + std::to_string(w);
      CheckStatus(what, r.status, s);
      CheckValue(what, r.value, s);
      Save(s, r.value);
    } else if (op == "write_mmio") {
      uint64_t a = Num(s, "address"), w = Num(s, "width"), v = Num(s, "value");
      Status st{};
      if (!Call(s, [&] { st = c_.WriteMmio(a, static_cast<int>(w), v); })) return;
      CheckStatus("mmio write " + Hex(a) + "/" + std::to_string(w), st, s);
    } else if (op == "read_memory") {
      uint64_t a = Num(s, "address"), n = Num(s, "length");
      std::string d;
      if (!Call(s, [&] { d = c_.ReadMemory(a, static_cast<uint32_t>(n)); })) return;
      if (d.size() != n) throw CaseFailure("read " + std::to_string(d.size()) + " bytes, expected " + std::to_string(n));
      if (auto* want = Get(x, "data"))
        if (d != Data(*want)) throw CaseFailure("data differs from the expected bytes");
    } else if (op == "write_memory") {
      uint64_t a = Num(s, "address");
      const gp::Value* dv = Get(s, "data");
      if (!dv) throw CaseFailure("bad case data: missing 'data'");
      std::string d = Data(*dv);
      if (!Call(s, [&] { c_.WriteMemory(a, d); })) return;
      if (auto* want = Get(x, "length")) Compare("length", uint64_t{d.size()}, *want);
    } else if (op == "wait") {
      // Time on the machine's clock, as a driver waits (100 ms after VF Enable or an FLR): the
      // server's clock is the wall clock, so a sleep here is that wait.
      uint64_t ms = Num(s, "ms");
      if (ms == 0 || ms > kMaxWaitMs)
        throw CaseFailure("bad case data: 'ms' must be 1.." + std::to_string(kMaxWaitMs) + ", got " + std::to_string(ms));
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    } else {
      throw CaseFailure("op " + op + " is not in the core subset");
    }
  }

  std::string Data(const gp::Value& spec) {
    if (spec.has_struct_value()) {
      auto* fill = Get(spec, "fill");
      auto* len = Get(spec, "length");
      if (!len) throw CaseFailure("bad case data: data needs 'length'");
      return std::string(Eval(*len), static_cast<char>(fill ? Eval(*fill) : 0));
    }
    std::string hex = spec.string_value(), out;
    hex.erase(std::remove(hex.begin(), hex.end(), ' '), hex.end());
    for (size_t i = 0; i + 1 < hex.size(); i += 2) out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
    return out;
  }

  // Sends a raw config request through the generated stub (for rids the 16-bit API cannot carry).
  template <typename Req, typename Res, typename Fn>
  Res Raw(const char* what, uint64_t rid, uint64_t off, uint64_t w, Fn call) {
    auto stub = v1::ConfigService::NewStub(c_.channel());
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    Req q;
    q.set_rid(static_cast<uint32_t>(rid));
    q.set_offset(static_cast<uint32_t>(off));
    q.set_width(static_cast<uint32_t>(w));
    Res r;
    grpc::Status st = call(*stub, ctx, q, r);
    if (!st.ok()) throw RpcError(what, st);
    return r;
  }
  ConfigRead RawReadConfig(uint64_t rid, uint64_t off, uint64_t w) {
    if (rid <= 0xffff) return c_.ReadConfig(static_cast<uint16_t>(rid), static_cast<int>(off), static_cast<int>(w));
    auto r = Raw<v1::ReadConfigRequest, v1::ReadConfigResponse>("ReadConfig", rid, off, w, [](auto& s, auto& ctx, auto& q, auto& r) {
      return s.ReadConfig(&ctx, q, &r);
    });
    return {r.status(), r.value()};
  }
  Status RawWriteConfig(uint64_t rid, uint64_t off, uint64_t w, uint64_t v) {
    if (rid <= 0xffff && v <= 0xffffffffu)
      return c_.WriteConfig(static_cast<uint16_t>(rid), static_cast<int>(off), static_cast<int>(w), static_cast<uint32_t>(v));
    return Raw<v1::WriteConfigRequest, v1::WriteConfigResponse>("WriteConfig", rid, off, w, [v](auto& s, auto& ctx, auto& q, auto& r) {
      q.set_value(static_cast<uint32_t>(v));
      return s.WriteConfig(&ctx, q, &r);
    }).status();
  }

  Client& c_;
  std::map<std::string, uint64_t> env_;
};

class Conformance : public ::testing::TestWithParam<ConfCase> {};

TEST(ConformanceSuite, CoreSubsetLoads) {
  if (std::getenv("PCIEEMU_CONFORMANCE_CASES")) GTEST_SKIP() << "custom case directory";
  EXPECT_GE(CoreCases().size(), 100u) << "core cases found in " << CasesDir();
}

// Runs one case against target; a failure names the step and the reason.
void RunCase(const std::string& target, const std::string& token_file, const ConfCase& k) {
  auto c = Client::Connect(target, std::chrono::seconds(10), {"", token_file});
  Runner r(*c);
  try {
    r.Run(k);
  } catch (const std::exception& e) {
    FAIL() << e.what();
  }
}

const auto kCaseName = [](const ::testing::TestParamInfo<ConfCase>& info) { return info.param.test_name; };

// Over the Unix socket: the server's direct gRPC loop (issue 16); the client tests cover TCP.
TEST_P(Conformance, Case) { g_unix.empty() ? RunCase(g_tcp, g_token_file, GetParam()) : RunCase(g_unix, "", GetParam()); }

INSTANTIATE_TEST_SUITE_P(Core, Conformance, ::testing::ValuesIn(CoreCases()), kCaseName);

// A "wait" step lets the time pass and refuses a pause outside 1..kMaxWaitMs as bad case data.
TEST(ConformanceSuite, WaitStep) {
  auto c = Client::Connect(g_tcp, std::chrono::seconds(10), {"", g_token_file});
  Runner r(*c);
  auto one = [](const std::string& json) {
    ConfCase k{"wait", "test", "wait", {}};
    k.steps.emplace_back();
    EXPECT_TRUE(gp::util::JsonStringToMessage(json, &k.steps.back()).ok()) << json;
    return k;
  };
  auto start = std::chrono::steady_clock::now();
  r.Run(one(R"({"op": "wait", "ms": 100})"));
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(100));
  for (const char* bad : {R"({"op": "wait", "ms": 0})", R"({"op": "wait", "ms": "20000"})", R"({"op": "wait"})"}) {
    try {
      r.Run(one(bad));
      ADD_FAILURE() << bad << " was accepted";
    } catch (const CaseFailure& e) {
      EXPECT_NE(std::string(e.what()).find("'ms'"), std::string::npos) << e.what();
    }
  }
}

// The virtio-net suite against one server started with its machine for all its cases.
class ConformanceVirtio : public ::testing::TestWithParam<ConfCase> {
 protected:
  static void SetUpTestSuite() {
    server_ = new pcieemu_test::TestServer();
    if (!server_->Start({"--machine", std::string(PCIEEMU_REPO_ROOT) + "/tests/Conformance/virtio-net/machine.json"}))
      start_error_ = server_->error.empty() ? "server did not start" : server_->error;
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static pcieemu_test::TestServer* server_;
  static std::string start_error_;
};
pcieemu_test::TestServer* ConformanceVirtio::server_ = nullptr;
std::string ConformanceVirtio::start_error_;

TEST(ConformanceSuite, VirtioSubsetLoads) {
  if (std::getenv("PCIEEMU_CONFORMANCE_CASES")) GTEST_SKIP() << "custom case directory";
  EXPECT_GE(VirtioCoreCases().size(), 18u) << "core cases found in " << VirtioCasesDir();
}

TEST_P(ConformanceVirtio, Case) {
  ASSERT_TRUE(start_error_.empty()) << start_error_;
  RunCase(server_->tcp, server_->token_file, GetParam());
}

INSTANTIATE_TEST_SUITE_P(VirtioNet, ConformanceVirtio, ::testing::ValuesIn(VirtioCoreCases()), kCaseName);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(ConformanceVirtio);

}  // namespace
