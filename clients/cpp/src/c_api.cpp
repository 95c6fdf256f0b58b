#include "pcieemu/pcieemu.h"

#include <algorithm>
#include <cstring>

#include "pcieemu/pcieemu.hpp"

using pcieemu::v1::CompletionStatus;

extern "C" {
const int PCIEEMU_STATUS_SUCCESSFUL = pcieemu::v1::COMPLETION_STATUS_SUCCESSFUL;
const int PCIEEMU_STATUS_UNSUPPORTED_REQUEST = pcieemu::v1::COMPLETION_STATUS_UNSUPPORTED_REQUEST;
const int PCIEEMU_STATUS_COMPLETER_ABORT = pcieemu::v1::COMPLETION_STATUS_COMPLETER_ABORT;
const int PCIEEMU_STATUS_CONFIGURATION_RETRY = pcieemu::v1::COMPLETION_STATUS_CONFIGURATION_RETRY;
}

struct pcieemu_handle {
  std::unique_ptr<pcieemu::Client> client;
  std::unique_ptr<pcieemu::Ram> ram;  // opened on first use
  pcieemu::Ram& Ram() {
    if (!ram) ram = client->OpenRam();
    return *ram;
  }
};

struct pcieemu_capture {
  std::unique_ptr<pcieemu::FrameCapture> capture;
};

struct pcieemu_trace {
  std::unique_ptr<pcieemu::TraceSubscription> sub;
};

namespace {
thread_local std::string last_error;

// "a,b,c" -> {"a", "b", "c"}; NULL or "" -> {}.
std::vector<std::string> SplitList(const char* text) {
  std::vector<std::string> out;
  if (!text || !*text) return out;
  std::string s(text);
  size_t start = 0;
  for (;;) {
    size_t comma = s.find(',', start);
    out.push_back(s.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) return out;
    start = comma + 1;
  }
}

template <typename F>
int Guard(F&& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    last_error = e.what();
    return -1;
  }
}
}  // namespace

extern "C" {

pcieemu_t* pcieemu_connect(const char* target) { return pcieemu_connect_token_file(target, nullptr); }

pcieemu_t* pcieemu_connect_token_file(const char* target, const char* token_file) {
  try {
    pcieemu::ConnectOptions options;
    if (token_file) options.token_file = token_file;
    // The handle is owned until it is handed out: a Connect that throws frees it.
    auto emu = std::make_unique<pcieemu_t>();
    emu->client = pcieemu::Client::Connect(target ? target : "", std::chrono::seconds(10), options);
    return emu.release();
  } catch (const std::exception& e) {
    last_error = e.what();
    return nullptr;
  }
}

void pcieemu_close(pcieemu_t* emu) { delete emu; }

const char* pcieemu_last_error(void) { return last_error.c_str(); }

const char* pcieemu_status_name(int status) {
  if (!pcieemu::v1::CompletionStatus_IsValid(status)) return "?";
  return pcieemu::v1::CompletionStatus_Name(static_cast<CompletionStatus>(status)).c_str();
}

int pcieemu_reset(pcieemu_t* emu) {
  return Guard([&] { emu->client->ResetPlatform(); return 0; });
}

int pcieemu_list_functions(pcieemu_t* emu, pcieemu_function_t* out, int max) {
  return Guard([&] {
    auto fns = emu->client->ListFunctions();
    for (int i = 0; i < max && i < static_cast<int>(fns.size()); i++) {
      const auto& f = fns[i];
      pcieemu_function_t& o = out[i];
      std::memset(&o, 0, sizeof o);
      o.rid = f.rid();
      o.vendor_id = static_cast<uint16_t>(f.vendor_id());
      o.device_id = static_cast<uint16_t>(f.device_id());
      o.class_code = f.class_code();
      o.is_virtual = f.is_virtual();
      o.physical_function_rid = f.physical_function_rid();
      std::strncpy(o.bdf, f.bdf().c_str(), sizeof o.bdf - 1);
      std::strncpy(o.name, f.name().c_str(), sizeof o.name - 1);
      for (const auto& b : f.bars())
        if (b.index() < 7) o.bar[b.index()] = b.address();
    }
    return static_cast<int>(fns.size());
  });
}

int pcieemu_cfg_read(pcieemu_t* emu, uint32_t rid, int offset, int width, uint32_t* value) {
  return Guard([&] {
    auto r = emu->client->ReadConfig(rid, offset, width);
    *value = r.value;
    return static_cast<int>(r.status);
  });
}

int pcieemu_cfg_write(pcieemu_t* emu, uint32_t rid, int offset, int width, uint32_t value) {
  return Guard([&] { return static_cast<int>(emu->client->WriteConfig(rid, offset, width, value)); });
}

int pcieemu_mmio_read(pcieemu_t* emu, uint64_t address, int width, uint64_t* value) {
  return Guard([&] {
    auto r = emu->client->ReadMmio(address, width);
    *value = r.value;
    return static_cast<int>(r.status);
  });
}

int pcieemu_mmio_write(pcieemu_t* emu, uint64_t address, int width, uint64_t value) {
  return Guard([&] { return static_cast<int>(emu->client->WriteMmio(address, width, value)); });
}

int pcieemu_mem_read(pcieemu_t* emu, uint64_t address, void* dst, size_t length) {
  return Guard([&] { emu->Ram().Read(address, dst, length); return 0; });
}

int pcieemu_mem_write(pcieemu_t* emu, uint64_t address, const void* src, size_t length) {
  return Guard([&] { emu->Ram().Write(address, src, length); return 0; });
}

uint8_t* pcieemu_ram_map(pcieemu_t* emu, uint64_t* base, uint64_t* size) {
  uint8_t* p = nullptr;
  Guard([&] {
    auto& r = emu->Ram();
    *base = r.base();
    *size = r.size();
    p = r.data();
    return 0;
  });
  return p;
}

pcieemu_capture_t* pcieemu_capture_open(pcieemu_t* emu, uint32_t port, int timeout_ms) {
  try {
    auto cap = std::make_unique<pcieemu_capture_t>();
    cap->capture = emu->client->CaptureFrames(port, std::chrono::milliseconds(timeout_ms > 0 ? timeout_ms : 0));
    cap->capture->WaitOpened();
    return cap.release();
  } catch (const std::exception& e) {
    last_error = e.what();
    return nullptr;
  }
}

int pcieemu_capture_next(pcieemu_capture_t* cap, uint8_t* buf, int max) {
  pcieemu::v1::CapturedFrame f;
  if (!cap->capture->Next(&f)) {
    auto st = cap->capture->Finish();
    last_error = st.ok() ? "capture ended" : "CaptureFrames: " + st.error_message();
    return -1;
  }
  const std::string& d = f.data();
  std::memcpy(buf, d.data(), std::min(d.size(), static_cast<size_t>(max > 0 ? max : 0)));
  return static_cast<int>(d.size());
}

void pcieemu_capture_close(pcieemu_capture_t* cap) { delete cap; }

pcieemu_trace_t* pcieemu_trace_open(pcieemu_t* emu, const char* rids, const char* kinds) {
  try {
    auto tr = std::make_unique<pcieemu_trace_t>();
    tr->sub = emu->client->SubscribeTrace(SplitList(rids), SplitList(kinds));
    tr->sub->WaitOpened();
    return tr.release();
  } catch (const std::exception& e) {
    last_error = e.what();
    return nullptr;
  }
}

int pcieemu_trace_next(pcieemu_trace_t* trace, pcieemu_trace_event_t* ev, char* text, int max) {
  pcieemu::v1::TraceEvent e;
  if (!trace->sub->Next(&e)) {
    auto st = trace->sub->Finish();
    last_error = st.ok() ? "trace ended" : "Subscribe: " + st.error_message();
    return -1;
  }
  *ev = pcieemu_trace_event_t{};
  ev->sequence = e.sequence();
  ev->timestamp_ns = e.timestamp_ns();
  ev->rid = e.rid();
  ev->kind = static_cast<int>(e.kind());
  ev->write = e.write() ? 1 : 0;
  ev->address = e.address();
  ev->value = e.value();
  ev->translated = e.translated();
  ev->length = e.length();
  ev->missed = e.missed();
  std::memcpy(ev->token, e.token().data(), std::min(e.token().size(), sizeof ev->token - 1));
  if (text && max > 0) {
    size_t n = std::min(e.text().size(), static_cast<size_t>(max - 1));
    std::memcpy(text, e.text().data(), n);
    text[n] = '\0';
  }
  return static_cast<int>(e.text().size());
}

void pcieemu_trace_cancel(pcieemu_trace_t* trace) { trace->sub->Cancel(); }

void pcieemu_trace_close(pcieemu_trace_t* trace) { delete trace; }

int pcieemu_find_cap(pcieemu_t* emu, uint32_t rid, uint8_t id) {
  return Guard([&] { return emu->client->FindCapability(rid, id); });
}

int pcieemu_find_ext_cap(pcieemu_t* emu, uint32_t rid, uint16_t id) {
  return Guard([&] { return emu->client->FindExtendedCapability(rid, id); });
}

int pcieemu_sriov_enable(pcieemu_t* emu, uint32_t pf, int num_vfs, int ari, uint32_t* vf_rids) {
  return Guard([&] {
    pcieemu::SriovOptions opt;
    if (ari >= 0) opt.ari = ari != 0;  // negative: automatic
    auto rids = emu->client->EnableSriov(pf, num_vfs, opt);
    for (size_t i = 0; i < rids.size(); i++) vf_rids[i] = rids[i];
    return static_cast<int>(rids.size());
  });
}

int pcieemu_sriov_disable(pcieemu_t* emu, uint32_t pf) {
  return Guard([&] { emu->client->DisableSriov(pf); return 0; });
}

int pcieemu_parse_bdf(const char* text, uint32_t* rid) {
  return Guard([&] { *rid = pcieemu::ParseBdf(text ? text : ""); return 0; });
}

void pcieemu_format_bdf(uint32_t rid, char* buf) {
  std::string s = pcieemu::FormatBdf(rid);
  std::memcpy(buf, s.c_str(), s.size() + 1);
}

}  // extern "C"
