// The shared-memory ring (SessionService.OpenRing): layout and protocol in docs/protocol.md.
#include <fcntl.h>
#include <sched.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cstring>

#include "pcieemu/pcieemu.hpp"

namespace pcieemu {

namespace {
// Header offsets (layout version 1).
constexpr uint64_t kMagic = 0x474E495245494350ull;  // "PCIERING"
constexpr size_t kState = 0x24, kSqTail = 0x40, kServerSleeping = 0x44, kSqHead = 0x80, kCqTail = 0xC0,
                 kClientSleeping = 0xC4, kCqHead = 0x100;
constexpr uint32_t kVersion = 1, kSqEntrySize = 64, kCqEntrySize = 32;
constexpr uint8_t kAck = 1;

struct Submission {  // 64 bytes
  uint64_t tag;
  uint8_t op, flags;
  uint16_t rid, offset;
  uint8_t width, reserved0;
  uint64_t address, value;
  uint32_t data_offset, length;
  uint64_t reserved[3];
};
static_assert(sizeof(Submission) == kSqEntrySize, "submission entry is 64 bytes");

struct CompletionEntry {  // 32 bytes
  uint64_t tag, value;
  uint8_t kind, field;
  uint16_t status;
  uint32_t length;
  uint64_t reserved;
};
static_assert(sizeof(CompletionEntry) == kCqEntrySize, "completion entry is 32 bytes");

uint32_t Load(const uint32_t* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
void StoreRelease(uint32_t* p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
void StoreFull(uint32_t* p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }

// Shared (not FUTEX_PRIVATE): the server is another process mapping the same file.
void FutexWait(uint32_t* p, uint32_t expected, int timeout_ms) {
  timespec ts{timeout_ms / 1000, (timeout_ms % 1000) * 1000000L};
  syscall(SYS_futex, p, FUTEX_WAIT, expected, &ts, nullptr, 0);
}
void FutexWake(uint32_t* p) { syscall(SYS_futex, p, FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0); }

// Polling that lets the other side run: a few pause instructions, then sched_yield, so on a busy
// (or single) CPU a spinning client does not keep the server's ring thread off the processor.
struct Backoff {
  int n = 0;
  void Pause();
};

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

void Backoff::Pause() {
  if (++n <= 32) CpuRelax();
  else sched_yield();
}

uint16_t CheckRid(uint32_t rid) {
  if (rid > 0xFFFF) throw std::invalid_argument("rid: routing ID over 0xFFFF");
  return static_cast<uint16_t>(rid);
}
uint16_t CheckOffset(int offset) {
  if (offset < 0 || offset >= 4096) throw std::invalid_argument("offset: must be in [0, 4096)");
  return static_cast<uint16_t>(offset);
}
uint8_t CheckWidth(int width) {
  if (width != 1 && width != 2 && width != 4 && width != 8) throw std::invalid_argument("width: must be 1, 2, 4 or 8");
  return static_cast<uint8_t>(width);
}
}  // namespace

std::unique_ptr<Ring> Client::OpenRing(const v1::OpenRingRequest& request) {
  auto r = std::unique_ptr<Ring>(new Ring());
  r->reader_ = sessions_->OpenRing(&r->ctx_, request);
  if (!r->reader_->Read(&r->layout_)) {
    r->finished_ = true;
    r->status_ = r->reader_->Finish();
    throw RpcError("OpenRing", r->status_.ok() ? grpc::Status(grpc::StatusCode::INTERNAL, "OpenRing ended without describing the ring") : r->status_);
  }
  const auto& l = r->layout_;
  if (l.version() != kVersion || l.submission_entry_size() != kSqEntrySize || l.completion_entry_size() != kCqEntrySize) {
    r->Close();
    throw std::runtime_error("OpenRing: the server's ring layout version " + std::to_string(l.version()) + " is not 1");
  }
  int fd = ::open(l.path().c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    r->Close();
    throw std::runtime_error("OpenRing: cannot open " + l.path() + ": " + std::strerror(errno));
  }
  void* p = ::mmap(nullptr, l.size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) {
    r->Close();
    throw std::runtime_error("OpenRing: cannot map " + l.path() + ": " + std::strerror(errno));
  }
  r->base_ = static_cast<uint8_t*>(p);
  r->size_ = l.size();
  uint64_t magic;
  std::memcpy(&magic, r->base_, 8);
  if (magic != kMagic) {
    r->Close();
    throw std::runtime_error("OpenRing: " + l.path() + " is not a ring file");
  }
  return r;
}

Ring::~Ring() { Close(); }

void Ring::Close() {
  if (!finished_ && reader_) {
    ctx_.TryCancel();
    status_ = reader_->Finish();
    finished_ = true;
  }
  if (base_) {
    ::munmap(base_, size_);
    base_ = nullptr;
  }
}

bool Ring::closed() const { return base_ == nullptr || Load(Word(kState)) != 0; }

void Ring::ThrowClosed() {
  if (!finished_ && reader_) {
    // The server ends the call right after it closes the ring: its status says why.
    status_ = reader_->Finish();
    finished_ = true;
  }
  throw RpcError("OpenRing", status_.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server closed the ring") : status_);
}

uint32_t Ring::Reserve(uint32_t length) {
  uint32_t size = layout_.data_size();
  if (length > size) throw std::invalid_argument("length: over the ring's data area (" + std::to_string(size) + " bytes)");
  if (data_used_ + length > size) {
    // Wait until the server consumed the entries whose data lies in the area.
    Backoff b;
    while (static_cast<int32_t>(Load(Word(kSqHead)) - data_mark_) < 0) {
      if (closed()) ThrowClosed();
      b.Pause();
    }
    data_used_ = 0;
  }
  uint32_t at = data_used_;
  data_used_ += (length + 63) & ~63u;
  data_mark_ = sq_tail_ + 1;
  return at;
}

uint64_t Ring::Submit(uint8_t op, uint8_t flags, uint16_t rid, uint16_t offset, uint8_t width, uint64_t address,
                      uint64_t value, uint32_t data_offset, uint32_t length) {
  if (!base_) throw std::logic_error("ring closed");
  uint32_t n = layout_.submission_entries();
  Backoff b;
  while (sq_tail_ - Load(Word(kSqHead)) >= n) {
    if (closed()) ThrowClosed();
    b.Pause();
  }
  Submission e{};
  e.tag = next_tag_++;
  e.op = op;
  e.flags = flags;
  e.rid = rid;
  e.offset = offset;
  e.width = width;
  e.address = address;
  e.value = value;
  e.data_offset = data_offset;
  e.length = length;
  std::memcpy(base_ + layout_.submission_offset() + size_t(sq_tail_ & (n - 1)) * kSqEntrySize, &e, sizeof e);
  ++sq_tail_;
  // Full barrier: the tail must be visible before we look at the server's sleeping flag.
  StoreFull(Word(kSqTail), sq_tail_);
  if (Load(Word(kServerSleeping)) != 0) FutexWake(Word(kSqTail));
  return e.tag;
}

RingCompletion Ring::Wait(uint64_t tag) {
  uint32_t n = layout_.completion_entries();
  for (;;) {
    auto start = std::chrono::steady_clock::now();
    Backoff b;
    while (Load(Word(kCqTail)) == cq_head_) {
      if (std::chrono::steady_clock::now() - start < client_spin) {
        b.Pause();
        continue;
      }
      if (closed()) ThrowClosed();
      StoreFull(Word(kClientSleeping), 1);
      if (Load(Word(kCqTail)) == cq_head_ && !closed()) FutexWait(Word(kCqTail), cq_head_, 100);
      StoreRelease(Word(kClientSleeping), 0);
    }
    CompletionEntry raw;
    std::memcpy(&raw, base_ + layout_.completion_offset() + size_t(cq_head_ & (n - 1)) * kCqEntrySize, sizeof raw);
    ++cq_head_;
    StoreRelease(Word(kCqHead), cq_head_);
    RingCompletion c{raw.tag, raw.kind, raw.status, raw.field, raw.value, raw.length};
    if (c.tag == tag) return c;
    posted_.push_back(c);
  }
}

RingCompletion Ring::ConfigRead(uint32_t rid, int offset, int width) {
  return Wait(Submit(1, 0, CheckRid(rid), CheckOffset(offset), CheckWidth(width), 0, 0, 0, 0));
}
void Ring::ConfigWrite(uint32_t rid, int offset, int width, uint32_t value) {
  Submit(2, 0, CheckRid(rid), CheckOffset(offset), CheckWidth(width), 0, value, 0, 0);
}
RingCompletion Ring::ConfigWriteAck(uint32_t rid, int offset, int width, uint32_t value) {
  return Wait(Submit(2, kAck, CheckRid(rid), CheckOffset(offset), CheckWidth(width), 0, value, 0, 0));
}
RingCompletion Ring::MmioRead(uint64_t address, int width) { return Wait(Submit(3, 0, 0, 0, CheckWidth(width), address, 0, 0, 0)); }
void Ring::MmioWrite(uint64_t address, int width, uint64_t value) { Submit(4, 0, 0, 0, CheckWidth(width), address, value, 0, 0); }
RingCompletion Ring::MmioWriteAck(uint64_t address, int width, uint64_t value) {
  return Wait(Submit(4, kAck, 0, 0, CheckWidth(width), address, value, 0, 0));
}

RingCompletion Ring::MemoryRead(uint64_t address, void* dst, uint32_t length) {
  uint32_t at = Reserve(length);
  auto c = Wait(Submit(5, 0, 0, 0, 0, address, 0, at, length));
  if (c.status == v1::COMPLETION_STATUS_SUCCESSFUL && length > 0) std::memcpy(dst, base_ + layout_.data_offset() + at, length);
  return c;
}

void Ring::MemoryWrite(uint64_t address, const void* src, uint32_t length) {
  uint32_t at = Reserve(length);
  if (length > 0) std::memcpy(base_ + layout_.data_offset() + at, src, length);
  Submit(6, 0, 0, 0, 0, address, 0, at, length);
}

std::vector<RingCompletion> Ring::PostedErrors() {
  std::vector<RingCompletion> out;
  out.swap(posted_);
  return out;
}

}  // namespace pcieemu
