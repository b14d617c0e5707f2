// Test helpers for the link's end-to-end tests: a target node's listener (ReplicaStore and
// LinkReceiver on loopback TCP, optionally TLS), a source volume (pending log, splitter, a
// disk image with data and holes) in a fixture, and a capture of the log lines written while
// a test runs. Test-only (header-only, never in the library).
#pragma once

#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <list>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "capture/dirty_map.h"
#include "capture/splitter.h"
#include "env/scratch_dir_test_util.h"
#include "env/socket.h"
#include "env/stream.h"
#include "journal/replica.h"
#include "journal/view.h"
#include "link/receiver.h"
#include "link/replica_store.h"
#include "link/sender.h"
#include "link/tls.h"

namespace ferry::link::e2e {

using journal::MarkerKind;
using journal::Replica;

constexpr uint64_t kSize = 16ull << 20;
constexpr uint32_t kBs = 4096;

// Polls cond every 10 ms for up to 30 s (a deadline, not a timing assertion).
template <typename F>
bool Eventually(F cond) {
  for (int i = 0; i < 3000; ++i) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return cond();
}

inline std::string Block(uint64_t seed) {
  std::string b(kBs, '\0');
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < kBs; i += 8) {
    uint64_t v = rng();
    memcpy(&b[i], &v, 8);
  }
  return b;
}

// A stream that keeps what is written and serves it back to reads.
class BufferStream final : public Stream {
 public:
  Status ReadFull(void* dst, size_t n) override {
    if (bytes.size() - pos < n) return Aborted("end of buffer");
    std::memcpy(dst, bytes.data() + pos, n);
    pos += n;
    return Status::Ok();
  }
  Status WriteAll(std::string_view data) override {
    bytes.append(data);
    return Status::Ok();
  }
  Status WriteAllV(std::span<const std::string_view> pieces) override {
    for (std::string_view p : pieces) bytes.append(p);
    return Status::Ok();
  }
  void Shutdown() override {}
  std::string PeerName() const override { return "buffer"; }
  std::string bytes;
  size_t pos = 0;
};

// A target node's link listener: accepts and serves connections until destroyed.
class Target {
 public:
  explicit Target(const std::string& root, std::shared_ptr<TlsContext> tls = nullptr,
                  journal::ReplicaOptions options = {})
      : store_(root, options), receiver_(&store_), tls_(std::move(tls)) {
    EXPECT_TRUE(store_.OpenAll().ok());
    listener_ = std::move(Listener::Tcp("127.0.0.1", 0)).value();
    accept_ = std::thread([this] {
      for (;;) {
        auto sock = listener_->Accept();
        if (!sock.ok()) return;
        std::lock_guard l(mu_);
        conns_.emplace_back([this, s = std::move(sock).value()]() mutable {
          std::unique_ptr<Stream> stream;
          if (tls_) {
            auto t = TlsStream::Accept(tls_, std::move(s));
            if (!t.ok()) return;
            stream = std::move(t).value();
          } else {
            stream = std::move(s);
          }
          (void)receiver_.Serve(std::move(stream));
        });
      }
    });
  }
  ~Target() {
    listener_->Shutdown();
    accept_.join();
    receiver_.Stop();
    std::lock_guard l(mu_);
    for (auto& t : conns_) t.join();
  }
  uint16_t port() const { return listener_->port(); }
  ReplicaStore& store() { return store_; }
  LinkReceiver& receiver() { return receiver_; }

 private:
  ReplicaStore store_;
  LinkReceiver receiver_;
  std::shared_ptr<TlsContext> tls_;
  std::unique_ptr<Listener> listener_;
  std::thread accept_;
  std::mutex mu_;
  std::list<std::thread> conns_;
};

class LinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch_.path();
    ASSERT_FALSE(dir_.empty());
    disk_path_ = dir_ + "/disk.img";
    // Existing content before protection: data in the first quarter, holes elsewhere.
    {
      auto f = std::move(Env::Posix()->OpenFile(disk_path_, OpenMode::kCreate)).value();
      ASSERT_TRUE(f->Truncate(kSize).ok());
      for (uint64_t b = 0; b < kSize / kBs / 4; b += 3) {
        ASSERT_TRUE(f->WriteAt(b * kBs, Block(1000 + b)).ok());
      }
    }
    journal::CreateParams p;
    p.size = kSize;
    p.pending_log = true;
    journal::ReplicaOptions o;
    o.segment_target_bytes = 1 << 20;  // small segments, so trimming shows
    log_ = std::move(Replica::Create(dir_ + "/log", p, o)).value();
    splitter_ = std::move(capture::Splitter::Open(Env::Posix(), disk_path_, log_)).value();
  }
  SenderConfig Config(uint16_t port) {
    SenderConfig c;
    c.volume = "disk0";
    c.source_node = "node-a";
    c.connect = [port]() -> Result<std::unique_ptr<Stream>> {
      ASSIGN_OR_RETURN(auto s, ConnectTcp("127.0.0.1", port));
      return std::unique_ptr<Stream>(std::move(s));
    };
    c.disk_path = disk_path_;
    c.mark = [this](const std::string& label) {
      return splitter_->Mark(MarkerKind::kCrashConsistent, label);
    };
    c.checkpoint = [this] { return splitter_->Checkpoint(); };
    c.sync_chunk_bytes = 256 << 10;
    c.min_backoff_ms = 20;
    return c;
  }

  // Starts a sender with a changed-block map (resync and verify need one); returns the map.
  std::shared_ptr<capture::DirtyMap> StartWithDirtyMap(Target& target) {
    auto dirty = std::shared_ptr<capture::DirtyMap>(
        std::move(capture::DirtyMap::Open(Env::Posix(), dir_ + "/dirty.map", kSize)).value());
    SenderConfig c = Config(target.port());
    c.dirty = dirty;
    c.rewrite = [this](uint64_t off, uint64_t len) { return splitter_->Rewrite(off, len); };
    sender_ = std::make_unique<LinkSender>(c, log_);
    sender_->Start();
    return dirty;
  }

  // The target's replica, once it exists.
  std::shared_ptr<Replica> TargetReplica(Target& t) {
    std::shared_ptr<Replica> r;
    Eventually([&] {
      auto f = t.store().Find("disk0");
      if (f.ok()) r = *f;
      return f.ok();
    });
    return r;
  }

  // The target's replica of log_'s volume, its base seeded from `seed` (the older copy a
  // seeded sync compares with); nullptr, with a test failure, if it cannot be prepared.
  std::shared_ptr<Replica> PrepareSeeded(Target& target, const std::string& seed) {
    journal::CreateParams p;
    p.size = log_->size();
    p.volume_id = log_->volume_id();
    p.history_id = log_->history_id();
    p.first_seq = log_->last_seq() + 1;
    p.seed_path = seed;
    auto prepared = target.store().Prepare("disk0", p);
    EXPECT_TRUE(prepared.ok()) << prepared.status().ToString();
    return prepared.ok() ? *prepared : nullptr;
  }

  // The target's view at seq equals the source disk now (no writes since seq).
  void ExpectSame(Replica& target, uint64_t seq) {
    auto view = target.OpenView(seq);
    ASSERT_TRUE(view.ok()) << view.status().ToString();
    auto disk = std::move(Env::Posix()->OpenFile(disk_path_, OpenMode::kRead)).value();
    std::string a(1 << 20, '\0'), b(1 << 20, '\0');
    for (uint64_t off = 0; off < kSize; off += a.size()) {
      ASSERT_TRUE((*view)->Read(off, a.size(), a.data()).ok());
      ASSERT_TRUE(disk->ReadAt(off, b.size(), b.data()).ok());
      ASSERT_TRUE(a == b) << "target view at seq " << seq << " differs from the source at "
                          << off;
    }
  }

  test::ScratchDir scratch_{"ferry-link"};  // removed after every member below
  std::string dir_, disk_path_;
  std::shared_ptr<Replica> log_;
  std::unique_ptr<capture::Splitter> splitter_;
  std::unique_ptr<LinkSender> sender_;
};

// Copies what is logged (spdlog's default logger) while it lives, for tests that check what
// an operator would read. Make it before the threads that log, and let it go after them.
class LogCapture {
 public:
  LogCapture() : old_(spdlog::default_logger()), sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(1000)) {
    auto logger = std::make_shared<spdlog::logger>("capture", sink_);
    for (const auto& s : old_->sinks()) logger->sinks().push_back(s);
    logger->set_level(old_->level());
    spdlog::set_default_logger(logger);
  }
  ~LogCapture() { spdlog::set_default_logger(old_); }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  // Whether a line holding every one of parts was logged.
  bool Has(std::initializer_list<std::string_view> parts) const {
    for (const std::string& line : sink_->last_formatted()) {
      bool all = true;
      for (std::string_view p : parts) all = all && line.find(p) != std::string::npos;
      if (all) return true;
    }
    return false;
  }
  std::string Lines() const {
    std::string out;
    for (const std::string& line : sink_->last_formatted()) out += line;
    return out;
  }

 private:
  std::shared_ptr<spdlog::logger> old_;
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
};

}  // namespace ferry::link::e2e
