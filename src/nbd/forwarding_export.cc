#include "nbd/forwarding_export.h"

namespace ferry::nbd {

ForwardingExport::ForwardingExport(std::shared_ptr<Export> backend)
    : size_(backend->size()),
      read_only_(backend->read_only()),
      block_size_(backend->preferred_block_size()),
      multi_conn_(backend->multi_conn()),
      description_(backend->description()),
      backend_(std::move(backend)) {}

namespace {

// Shared access for one call, after the gate (so a waiting Hold goes first).
std::shared_lock<std::shared_mutex> Enter(std::mutex& gate, std::shared_mutex& mu) {
  { std::lock_guard g(gate); }
  return std::shared_lock(mu);
}

}  // namespace

ForwardingExport::Held ForwardingExport::Hold() {
  Held h;
  h.gate_ = std::unique_lock(gate_);
  h.exclusive_ = std::unique_lock(mu_);
  return h;
}

Status ForwardingExport::Replace(std::shared_ptr<Export> backend, const Held& held) {
  if (held.exclusive_.mutex() != &mu_ || !held.exclusive_.owns_lock()) {
    return Internal("ForwardingExport::Replace without holding the export");
  }
  if (backend->size() != size_ || backend->read_only() != read_only_) {
    return InvalidArgument("the new backend of a forwarded export must keep its size (" +
                           std::to_string(size_) + " bytes) and writability");
  }
  backend_ = std::move(backend);
  return Status::Ok();
}

std::shared_ptr<Export> ForwardingExport::backend() const {
  auto l = Enter(gate_, mu_);
  return backend_;
}

Status ForwardingExport::Read(uint64_t offset, size_t n, void* dst) {
  auto l = Enter(gate_, mu_);
  return backend_->Read(offset, n, dst);
}

Status ForwardingExport::Write(uint64_t offset, std::string_view data, bool fua) {
  auto l = Enter(gate_, mu_);
  return backend_->Write(offset, data, fua);
}

void ForwardingExport::WriteMany(std::span<const WriteOp> ops, std::span<Status> results) {
  auto l = Enter(gate_, mu_);
  backend_->WriteMany(ops, results);
}

Status ForwardingExport::WriteZeroes(uint64_t offset, uint64_t n, bool fua, bool no_hole) {
  auto l = Enter(gate_, mu_);
  return backend_->WriteZeroes(offset, n, fua, no_hole);
}

Status ForwardingExport::Trim(uint64_t offset, uint64_t n, bool fua) {
  auto l = Enter(gate_, mu_);
  return backend_->Trim(offset, n, fua);
}

Status ForwardingExport::Flush() {
  auto l = Enter(gate_, mu_);
  return backend_->Flush();
}

Result<std::vector<Extent>> ForwardingExport::BlockStatus(uint64_t offset, uint64_t n) {
  auto l = Enter(gate_, mu_);
  return backend_->BlockStatus(offset, n);
}

}  // namespace ferry::nbd
