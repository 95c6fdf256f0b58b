#include "pcieemu/pcieemu.hpp"

namespace pcieemu {

std::unique_ptr<Session> Client::OpenSession() {
  auto s = std::unique_ptr<Session>(new Session());
  s->stream_ = sessions_->Transact(&s->ctx_);
  s->Start();
  return s;
}

void Session::Start() {
  receiver_ = std::thread([this] { ReceiveLoop(); });
}

namespace {
Completion FromResponse(const v1::TransactResponse& r) { return {r.tag(), r.status(), r.value(), r.data(), r.kind()}; }
Completion FromCompletion(const v1::Completion& r) { return {r.tag(), r.status(), r.value(), r.data(), r.kind()}; }
}  // namespace

void Session::ReceiveLoop() {
  v1::TransactResponse r;
  auto complete = [this](Completion c) {
    auto it = pending_.find(c.tag);
    if (it != pending_.end()) {
      it->second.set_value(std::move(c));
      pending_.erase(it);
    } else {
      posted_.push_back(std::move(c));  // an unsolicited completion: a posted write that failed
    }
  };
  while (stream_->Read(&r)) {
    std::lock_guard<std::mutex> lock(mu_);
    complete(FromResponse(r));
    for (const auto& m : r.more()) complete(FromCompletion(m));
  }
  grpc::Status st = stream_->Finish();
  std::lock_guard<std::mutex> lock(mu_);
  ended_ = true;
  status_ = st;
  for (auto& [tag, p] : pending_) {
    grpc::Status err = st.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "session stream ended") : st;
    p.set_exception(std::make_exception_ptr(RpcError("Transact", err)));
  }
  pending_.clear();
}

std::future<Completion> Session::Issue(v1::Transaction t, bool wants) {
  std::future<Completion> f;
  bool full;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ended_) throw RpcError("Transact", status_.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "session stream ended") : status_);
    t.set_tag(next_tag_++);
    if (wants) f = pending_[t.tag()].get_future();
    queue_.push_back(std::move(t));
    full = queue_.size() >= max_per_message;
  }
  if (full) Flush();
  return f;
}

void Session::Flush() {
  std::lock_guard<std::mutex> send(send_mu_);
  for (;;) {
    std::vector<v1::Transaction> chunk;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (queue_.empty() || closed_) return;
      size_t n = std::min(queue_.size(), max_per_message);
      chunk.assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.begin() + n));
      queue_.erase(queue_.begin(), queue_.begin() + n);
    }
    v1::TransactRequest req;
    const v1::Transaction& first = chunk[0];
    req.set_tag(first.tag());
    switch (first.op_case()) {
      case v1::Transaction::kConfigRead: *req.mutable_config_read() = first.config_read(); break;
      case v1::Transaction::kConfigWrite: *req.mutable_config_write() = first.config_write(); break;
      case v1::Transaction::kMmioRead: *req.mutable_mmio_read() = first.mmio_read(); break;
      case v1::Transaction::kMmioWrite: *req.mutable_mmio_write() = first.mmio_write(); break;
      case v1::Transaction::kMemoryRead: *req.mutable_memory_read() = first.memory_read(); break;
      case v1::Transaction::kMemoryWrite: *req.mutable_memory_write() = first.memory_write(); break;
      default: break;
    }
    for (size_t i = 1; i < chunk.size(); i++) *req.add_batch() = std::move(chunk[i]);
    if (!stream_->Write(req)) return;  // the stream has ended; ReceiveLoop reports its status
  }
}

Completion Session::Wait(std::future<Completion>& f) {
  Flush();
  return f.get();
}

std::future<Completion> Session::ConfigRead(uint32_t rid, int offset, int width) {
  v1::Transaction t;
  auto* op = t.mutable_config_read();
  op->set_rid(rid);
  op->set_offset(static_cast<uint32_t>(offset));
  op->set_width(static_cast<uint32_t>(width));
  return Issue(std::move(t), true);
}

static v1::Transaction ConfigWriteOp(uint32_t rid, int offset, int width, uint32_t value, bool ack) {
  v1::Transaction t;
  auto* op = t.mutable_config_write();
  op->set_rid(rid);
  op->set_offset(static_cast<uint32_t>(offset));
  op->set_width(static_cast<uint32_t>(width));
  op->set_value(value);
  op->set_ack(ack);
  return t;
}

void Session::ConfigWrite(uint32_t rid, int offset, int width, uint32_t value) {
  Issue(ConfigWriteOp(rid, offset, width, value, false), false);
}

std::future<Completion> Session::ConfigWriteAck(uint32_t rid, int offset, int width, uint32_t value) {
  return Issue(ConfigWriteOp(rid, offset, width, value, true), true);
}

std::future<Completion> Session::MmioRead(uint64_t address, int width) {
  v1::Transaction t;
  auto* op = t.mutable_mmio_read();
  op->set_address(address);
  op->set_width(static_cast<uint32_t>(width));
  return Issue(std::move(t), true);
}

void Session::MmioWrite(uint64_t address, int width, uint64_t value) {
  v1::Transaction t;
  auto* op = t.mutable_mmio_write();
  op->set_address(address);
  op->set_width(static_cast<uint32_t>(width));
  op->set_value(value);
  Issue(std::move(t), false);
}

std::future<Completion> Session::MemoryRead(uint64_t address, uint32_t length) {
  v1::Transaction t;
  auto* op = t.mutable_memory_read();
  op->set_address(address);
  op->set_length(length);
  return Issue(std::move(t), true);
}

void Session::MemoryWrite(uint64_t address, const std::string& data) {
  v1::Transaction t;
  auto* op = t.mutable_memory_write();
  op->set_address(address);
  op->set_data(data);
  Issue(std::move(t), false);
}

std::vector<Completion> Session::PostedErrors() {
  std::lock_guard<std::mutex> lock(mu_);
  return posted_;
}

void Session::Close() {
  Flush();
  {
    std::lock_guard<std::mutex> send(send_mu_);
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    closed_ = true;
  }
  stream_->WritesDone();
  if (receiver_.joinable()) receiver_.join();
  std::lock_guard<std::mutex> lock(mu_);
  if (!status_.ok()) throw RpcError("Transact", status_);
}

void Session::Cancel() {
  ctx_.TryCancel();
  if (receiver_.joinable()) receiver_.join();
}

Session::~Session() {
  bool closed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed = closed_;
  }
  if (!closed) ctx_.TryCancel();
  if (receiver_.joinable()) receiver_.join();
}

}  // namespace pcieemu
